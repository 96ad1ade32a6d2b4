//! The transactional half of the shared [`crate::Store`] implementation (see the parent
//! module): everything that reads and writes in one transaction, expanded once per backend,
//! and the audit insert every change makes inside its transaction.

macro_rules! impl_transactions {
    ($store:ty, $conn:ty, $stmts:expr) => {
        impl $store {
            /// Writes the audit entry of the change the transaction on `conn` makes; the change
            /// commits only if this succeeds (the caller returns the error, dropping the
            /// transaction, which rolls it back).
            async fn insert_audit(
                conn: &mut $conn,
                entry: &$crate::AuditEntry,
            ) -> $crate::Result<()> {
                sqlx::query($crate::sql::AUDIT_INSERT)
                    .bind(&entry.actor)
                    .bind(&entry.action)
                    .bind(&entry.target)
                    .bind(sqlx::types::Json(&entry.detail))
                    .bind(entry.actor_id.map($crate::rows::DbUuid))
                    .bind(&entry.client_addr)
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            }

            /// Guarded session move inside a transaction; true if the state changed.
            async fn move_session(
                conn: &mut $conn,
                id: uuid::Uuid,
                next: streamspace_proto::api::SessionState,
                vnc_address: Option<&str>,
                error_message: Option<&str>,
            ) -> $crate::Result<bool> {
                let done = sqlx::query($stmts.session_move(next))
                    .bind($crate::rows::DbUuid(id))
                    .bind(next.as_str())
                    .bind(vnc_address)
                    .bind(error_message)
                    .execute(&mut *conn)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn command_by_id(
                conn: &mut $conn,
                id: i64,
            ) -> $crate::Result<streamspace_proto::api::Command> {
                sqlx::query_as::<_, $crate::rows::CommandRow>($crate::sql::COMMAND_BY_ID)
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await?
                    .ok_or($crate::StoreError::NotFound { what: "command" })?
                    .try_into()
            }

            async fn insert_command(
                conn: &mut $conn,
                command: &$crate::NewCommand,
            ) -> $crate::Result<streamspace_proto::api::Command> {
                let insert = if command.send_now.is_some() {
                    $stmts.command_insert_sent
                } else {
                    $crate::sql::COMMAND_INSERT
                };
                let mut query = sqlx::query_as::<_, $crate::rows::CommandRow>(insert)
                    .bind($crate::rows::DbUuid(command.command_id))
                    .bind(&command.agent_id)
                    .bind(command.session_id.map($crate::rows::DbUuid))
                    .bind(command.action.as_str())
                    .bind(sqlx::types::Json(&command.payload));
                if let Some(now) = command.send_now {
                    query = query.bind(now.ack_timeout_secs).bind(now.max_attempts);
                }
                query
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(|e| {
                        $crate::sql::conflict_on_unique(e, || {
                            format!("command {} already exists", command.command_id)
                        })
                    })?
                    .try_into()
            }

            /// Inserts a placed session and its `start_session` command.
            async fn insert_session(
                conn: &mut $conn,
                new: &$crate::NewSession,
                agent_id: &str,
            ) -> $crate::Result<(
                streamspace_proto::api::Session,
                streamspace_proto::api::Command,
            )> {
                let session: streamspace_proto::api::Session =
                    sqlx::query_as::<_, $crate::rows::SessionRow>($crate::sql::SESSION_INSERT)
                        .bind($crate::rows::DbUuid(new.id))
                        .bind(&new.template)
                        .bind(agent_id)
                        .bind(&new.owner)
                        .bind($crate::rows::DbUuid(new.owner_id))
                        .bind(new.user_home.is_some())
                        .fetch_one(&mut *conn)
                        .await
                        .map_err(|e| {
                            $crate::sql::conflict_on_unique(e, || {
                                format!("session {} already exists", new.id)
                            })
                        })?
                        .try_into()?;
                let command = $crate::NewCommand {
                    command_id: new.command_id,
                    agent_id: agent_id.to_owned(),
                    session_id: Some(new.id),
                    action: streamspace_proto::api::Action::StartSession,
                    payload: new.payload.clone(),
                    send_now: None,
                };
                let command = Self::insert_command(conn, &command).await?;
                Self::record_user_home(conn, new, agent_id).await?;
                Ok((session, command))
            }

            async fn delete_agent_tx(
                &self,
                agent_id: &str,
                audit: &$crate::AuditEntry,
            ) -> $crate::Result<()> {
                let mut tx = self.write_tx().await?;
                let found: Option<String> = sqlx::query_scalar($stmts.agent_lock)
                    .bind(agent_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                if found.is_none() {
                    return Err($crate::StoreError::NotFound { what: "agent" });
                }
                let active: i64 = sqlx::query_scalar($crate::sql::AGENT_ACTIVE_SESSIONS)
                    .bind(agent_id)
                    .fetch_one(&mut *tx)
                    .await?;
                if active > 0 {
                    return Err($crate::StoreError::Conflict(format!(
                        "agent {agent_id:?} still has {active} active session(s); stop them first"
                    )));
                }
                sqlx::query($stmts.keys_revoke_agent)
                    .bind(agent_id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query($crate::sql::AGENT_DELETE)
                    .bind(agent_id)
                    .execute(&mut *tx)
                    .await?;
                Self::insert_audit(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn create_session_command_tx(
                &self,
                session_id: uuid::Uuid,
                allowed_from: &[streamspace_proto::api::SessionState],
                command: &$crate::NewCommand,
                audit: &$crate::AuditEntry,
            ) -> $crate::Result<streamspace_proto::api::Command> {
                let mut tx = self.write_tx().await?;
                let session: streamspace_proto::api::Session =
                    sqlx::query_as::<_, $crate::rows::SessionRow>($stmts.session_lock)
                        .bind($crate::rows::DbUuid(session_id))
                        .fetch_optional(&mut *tx)
                        .await?
                        .ok_or($crate::StoreError::NotFound { what: "session" })?
                        .try_into()?;
                if session.state.is_terminal() || !allowed_from.contains(&session.state) {
                    return Err($crate::StoreError::Conflict(format!(
                        "session {session_id} is {}",
                        session.state
                    )));
                }
                let command = Self::insert_command(&mut tx, command).await?;
                Self::insert_audit(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(command)
            }

            async fn finish_command_tx(
                &self,
                agent_id: &str,
                command_id: uuid::Uuid,
                outcome: &$crate::CommandOutcome,
            ) -> $crate::Result<(streamspace_proto::api::Command, bool)> {
                use streamspace_proto::api::{Action, SessionState};
                let (status, result, error) = outcome.columns();
                let mut tx = self.write_tx().await?;
                let done = sqlx::query($stmts.command_finish)
                    .bind($crate::rows::DbUuid(command_id))
                    .bind(agent_id)
                    .bind(status)
                    .bind(result)
                    .bind(error)
                    .execute(&mut *tx)
                    .await?;
                let command: streamspace_proto::api::Command =
                    sqlx::query_as::<_, $crate::rows::CommandRow>($crate::sql::COMMAND_GET)
                        .bind($crate::rows::DbUuid(command_id))
                        .fetch_optional(&mut *tx)
                        .await?
                        .ok_or($crate::StoreError::NotFound { what: "command" })?
                        .try_into()?;
                // Another agent's command is not this agent's to see.
                if command.agent_id != agent_id {
                    return Err($crate::StoreError::NotFound { what: "command" });
                }
                let changed = done.rows_affected() > 0;
                if let (true, Some(session_id)) = (changed, command.session_id) {
                    match outcome {
                        $crate::CommandOutcome::Completed(v) => {
                            let Some(next) = command.action.resulting_state() else {
                                tx.commit().await?;
                                return Ok((command, changed));
                            };
                            let vnc = v.get("vnc_address").and_then(serde_json::Value::as_str);
                            let vnc = if next == SessionState::Running {
                                vnc
                            } else {
                                None
                            };
                            Self::move_session(&mut tx, session_id, next, vnc, None).await?;
                        }
                        $crate::CommandOutcome::Failed(e)
                            if command.action == Action::StartSession =>
                        {
                            Self::move_session(
                                &mut tx,
                                session_id,
                                SessionState::Failed,
                                None,
                                Some(e),
                            )
                            .await?;
                        }
                        $crate::CommandOutcome::Failed(_) => {}
                    }
                }
                tx.commit().await?;
                Ok((command, changed))
            }

            async fn fail_stuck_commands_tx(
                &self,
                stuck_secs: f64,
                pending_secs: f64,
                ack_timeout_secs: f64,
                max_attempts: i32,
            ) -> $crate::Result<Vec<streamspace_proto::api::Command>> {
                use streamspace_proto::api::{Action, SessionState};
                let mut tx = self.write_tx().await?;
                let stuck: Vec<(i64, String)> = sqlx::query_as($stmts.stuck)
                    .bind(stuck_secs)
                    .bind(ack_timeout_secs)
                    .bind(max_attempts)
                    .bind(pending_secs)
                    .fetch_all(&mut *tx)
                    .await?;
                let mut failed = Vec::with_capacity(stuck.len());
                for (id, reason) in stuck {
                    let done = sqlx::query($stmts.command_fail)
                        .bind(id)
                        .bind(&reason)
                        .execute(&mut *tx)
                        .await?;
                    if done.rows_affected() == 0 {
                        continue;
                    }
                    let command = Self::command_by_id(&mut tx, id).await?;
                    if let (Action::StartSession, Some(session_id)) =
                        (command.action, command.session_id)
                    {
                        let why = format!("start_session failed: {reason}");
                        Self::move_session(
                            &mut tx,
                            session_id,
                            SessionState::Failed,
                            None,
                            Some(&why),
                        )
                        .await?;
                    }
                    failed.push(command);
                }
                tx.commit().await?;
                Ok(failed)
            }
        }
    };
}

pub(crate) use impl_transactions;
