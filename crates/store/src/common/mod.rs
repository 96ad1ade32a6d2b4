//! The [`crate::Store`] implementation both backends share.
//!
//! sqlx's executor traits make code generic over the database hard to write (every function
//! would carry a page of bounds), while the statements themselves are shared ([`crate::sql`]).
//! So the shared method bodies live in one macro, expanded once per backend. Each backend
//! provides only what genuinely differs:
//!
//! - `write_tx()`: a transaction that may write (SQLite: `BEGIN IMMEDIATE`, so writers queue
//!   on the busy timeout instead of failing when a reader upgrades);
//! - `place_session()`: choosing and locking an agent for a new session (after the shared
//!   quota check, which locks the owner), and writing its audit entry;
//! - `claim()`: claiming one delivery attempt.

pub(crate) mod identity;
pub(crate) mod quota;
pub(crate) mod recording;
pub(crate) mod rules;
pub(crate) mod shares;
pub(crate) mod sso;
pub(crate) mod stats;
pub(crate) mod tx;

macro_rules! impl_store {
    ($store:ty, $backend:literal, $conn:ty, $stmts:expr) => {
        $crate::common::tx::impl_transactions!($store, $conn, $stmts);
        $crate::common::identity::impl_identity!($store, $conn, $stmts);
        $crate::common::quota::impl_quotas!($store, $conn, $stmts);
        $crate::common::rules::impl_rules!($store);
        $crate::common::sso::impl_single_sign_on!($store, $conn, $stmts);
        $crate::common::recording::impl_recordings!($store, $conn, $stmts);
        $crate::home::impl_user_homes!($store, $conn, $stmts);
        $crate::common::shares::impl_shares!($store, $conn, $stmts);
        $crate::common::stats::impl_stats!($store, $stmts);

        impl $store {
            /// Registers one agent connection on `conn` (see [`crate::Store::register_agent`]).
            pub(crate) async fn register_one(
                conn: &mut $conn,
                reg: &$crate::AgentRegistration,
            ) -> $crate::Result<i64> {
                Ok(sqlx::query_scalar($stmts.agent_register)
                    .bind(&reg.agent_id)
                    .bind(&reg.platform)
                    .bind(&reg.version)
                    .bind(reg.max_sessions.max(0))
                    .bind(sqlx::types::Json(&reg.labels))
                    .bind(&reg.replica_id)
                    .bind(reg.user_homes)
                    .fetch_one(conn)
                    .await?)
            }
        }

        #[async_trait::async_trait]
        impl $crate::Store for $store {
            fn backend(&self) -> &'static str {
                $backend
            }

            async fn ping(&self) -> $crate::Result<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn setting_get_or_init(&self, key: &str, value: &str) -> $crate::Result<String> {
                sqlx::query($crate::sql::SETTING_INSERT)
                    .bind(key)
                    .bind(value)
                    .execute(&self.pool)
                    .await?;
                Ok(sqlx::query_scalar($crate::sql::SETTING_GET)
                    .bind(key)
                    .fetch_one(&self.pool)
                    .await?)
            }

            async fn create_api_key(
                &self,
                key: $crate::NewApiKey,
                audit: &$crate::AuditEntry,
            ) -> $crate::Result<$crate::ApiKeyRecord> {
                let mut tx = self.write_tx().await?;
                let record = sqlx::query_as::<_, $crate::rows::ApiKeyRow>($stmts.key_insert)
                    .bind($crate::rows::DbUuid(key.id))
                    .bind(key.kind.as_str())
                    .bind(&key.agent_id)
                    .bind(key.user_id.map($crate::rows::DbUuid))
                    .bind(&key.name)
                    .bind(&key.prefix)
                    .bind(&key.key_hash)
                    .bind(key.expires_in_secs)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(|e| {
                        $crate::sql::conflict_on_unique(e, || "that API key already exists".into())
                    })?
                    .try_into()?;
                let audit = $crate::with_expiry(audit, &record);
                Self::insert_audit(&mut tx, &audit).await?;
                tx.commit().await?;
                Ok(record)
            }

            async fn find_api_key(
                &self,
                key_hash: &str,
            ) -> $crate::Result<Option<$crate::ApiKeyRecord>> {
                let Some(row) = sqlx::query_as::<_, $crate::rows::ApiKeyRow>($stmts.key_find)
                    .bind(key_hash)
                    .fetch_optional(&self.pool)
                    .await?
                else {
                    return Ok(None);
                };
                let mut record: $crate::ApiKeyRecord = row.try_into()?;
                // Every API request looks its key up; writing `last_used_at` each time would
                // make one admin token's row a point of contention for all of them. It is kept
                // to the minute instead (the statement re-checks with the database's clock).
                let stale = record.last_used_at.is_none_or(|at| {
                    chrono::Utc::now() - at
                        >= chrono::TimeDelta::seconds($crate::KEY_USE_RESOLUTION_SECS)
                });
                if stale {
                    let touched: Option<chrono::DateTime<chrono::Utc>> =
                        sqlx::query_scalar($stmts.key_touch)
                            .bind($crate::rows::DbUuid(record.id))
                            .bind($crate::KEY_USE_RESOLUTION_SECS as f64)
                            .fetch_optional(&self.pool)
                            .await?;
                    if let Some(at) = touched {
                        record.last_used_at = Some(at);
                    }
                }
                Ok(Some(record))
            }

            async fn find_api_keys(
                &self,
                key_hashes: &[String],
            ) -> $crate::Result<Vec<Option<$crate::ApiKeyRecord>>> {
                self.find_keys_batch(key_hashes).await
            }

            async fn list_api_keys(
                &self,
                kind: $crate::ApiKeyKind,
            ) -> $crate::Result<Vec<$crate::ApiKeyRecord>> {
                let rows = sqlx::query_as::<_, $crate::rows::ApiKeyRow>($crate::sql::KEY_LIST)
                    .bind(kind.as_str())
                    .fetch_all(&self.pool)
                    .await?;
                $crate::rows::convert_all(rows)
            }

            async fn revoke_api_key(
                &self,
                id: uuid::Uuid,
                audit: &$crate::AuditEntry,
            ) -> $crate::Result<()> {
                let mut tx = self.write_tx().await?;
                let done = sqlx::query($stmts.key_revoke)
                    .bind($crate::rows::DbUuid(id))
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound { what: "api key" });
                }
                Self::insert_audit(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn get_api_key(&self, id: uuid::Uuid) -> $crate::Result<$crate::ApiKeyRecord> {
                sqlx::query_as::<_, $crate::rows::ApiKeyRow>($crate::sql::KEY_GET)
                    .bind($crate::rows::DbUuid(id))
                    .fetch_optional(&self.pool)
                    .await?
                    .ok_or($crate::StoreError::NotFound { what: "api key" })?
                    .try_into()
            }

            async fn is_key_revoked(&self, key_hash: &str) -> $crate::Result<bool> {
                Ok(sqlx::query_scalar($stmts.key_revoked)
                    .bind(key_hash)
                    .fetch_one(&self.pool)
                    .await?)
            }

            async fn has_admin_key(&self) -> $crate::Result<bool> {
                Ok(sqlx::query_scalar($crate::sql::HAS_ADMIN_KEY)
                    .fetch_one(&self.pool)
                    .await?)
            }

            async fn rehash_api_key(
                &self,
                id: uuid::Uuid,
                old_hash: &str,
                new_hash: &str,
            ) -> $crate::Result<bool> {
                let done = sqlx::query($crate::sql::KEY_REHASH)
                    .bind($crate::rows::DbUuid(id))
                    .bind(old_hash)
                    .bind(new_hash)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn create_template(
                &self,
                t: &streamspace_proto::api::CreateTemplate,
                audit: &$crate::AuditEntry,
            ) -> $crate::Result<streamspace_proto::api::Template> {
                let mut tx = self.write_tx().await?;
                let template =
                    sqlx::query_as::<_, $crate::rows::TemplateRow>($crate::sql::TEMPLATE_INSERT)
                        .bind(&t.name)
                        .bind(&t.description)
                        .bind(sqlx::types::Json(&t.command))
                        .bind(sqlx::types::Json(&t.env))
                        .bind(&t.image)
                        .bind(i32::from(t.ports.vnc))
                        .bind(t.resources.cpu_millis.map(i64::from))
                        .bind(t.resources.memory_mib.map(i64::from))
                        .bind(t.persistent_home.as_str())
                        .bind(t.idle_timeout_secs.map(i64::from))
                        .bind(sqlx::types::Json(&t.allowed_groups))
                        .bind(&t.category)
                        .bind(sqlx::types::Json(&t.tags))
                        .bind(t.icon.map(|i| i.as_str()))
                        .bind(sqlx::types::Json(&t.rules))
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(|e| {
                            $crate::sql::conflict_on_unique(e, || {
                                format!("a template named {:?} already exists", t.name)
                            })
                        })?
                        .try_into()?;
                Self::insert_audit(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(template)
            }

            async fn get_template(
                &self,
                name: &str,
            ) -> $crate::Result<streamspace_proto::api::Template> {
                sqlx::query_as::<_, $crate::rows::TemplateRow>($crate::sql::TEMPLATE_GET)
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?
                    .ok_or($crate::StoreError::NotFound { what: "template" })?
                    .try_into()
            }

            async fn list_templates(
                &self,
            ) -> $crate::Result<Vec<streamspace_proto::api::Template>> {
                let rows =
                    sqlx::query_as::<_, $crate::rows::TemplateRow>($crate::sql::TEMPLATE_LIST)
                        .fetch_all(&self.pool)
                        .await?;
                $crate::rows::convert_all(rows)
            }

            async fn delete_template(
                &self,
                name: &str,
                audit: &$crate::AuditEntry,
            ) -> $crate::Result<()> {
                let mut tx = self.write_tx().await?;
                let done = sqlx::query($crate::sql::TEMPLATE_DELETE)
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound { what: "template" });
                }
                Self::insert_audit(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn update_template(
                &self,
                name: &str,
                change: &streamspace_proto::api::UpdateTemplate,
                check: &$crate::TemplateCheck,
                audit: &$crate::AuditEntry,
            ) -> $crate::Result<streamspace_proto::api::Template> {
                let mut tx = self.write_tx().await?;
                let current: streamspace_proto::api::Template =
                    sqlx::query_as::<_, $crate::rows::TemplateRow>($stmts.template_lock)
                        .bind(name)
                        .fetch_optional(&mut *tx)
                        .await?
                        .ok_or($crate::StoreError::NotFound { what: "template" })?
                        .try_into()?;
                let t = change.apply(current);
                check(&t).map_err($crate::StoreError::Invalid)?;
                sqlx::query($crate::sql::TEMPLATE_UPDATE)
                    .bind(name)
                    .bind(&t.description)
                    .bind(sqlx::types::Json(&t.command))
                    .bind(sqlx::types::Json(&t.env))
                    .bind(&t.image)
                    .bind(i32::from(t.ports.vnc))
                    .bind(t.resources.cpu_millis.map(i64::from))
                    .bind(t.resources.memory_mib.map(i64::from))
                    .bind(t.persistent_home.as_str())
                    .bind(t.idle_timeout_secs.map(i64::from))
                    .bind(sqlx::types::Json(&t.allowed_groups))
                    .bind(&t.category)
                    .bind(sqlx::types::Json(&t.tags))
                    .bind(t.icon.map(|i| i.as_str()))
                    .bind(sqlx::types::Json(&t.rules))
                    .execute(&mut *tx)
                    .await?;
                let updated =
                    sqlx::query_as::<_, $crate::rows::TemplateRow>($crate::sql::TEMPLATE_GET)
                        .bind(name)
                        .fetch_one(&mut *tx)
                        .await?
                        .try_into()?;
                Self::insert_audit(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(updated)
            }

            async fn register_agent(&self, reg: &$crate::AgentRegistration) -> $crate::Result<i64> {
                let mut conn = self.pool.acquire().await?;
                Self::register_one(&mut conn, reg).await
            }

            async fn register_agents(
                &self,
                regs: &[$crate::AgentRegistration],
            ) -> $crate::Result<Vec<i64>> {
                self.register_batch(regs).await
            }

            async fn heartbeat_agents(
                &self,
                beats: &[$crate::AgentHeartbeat],
            ) -> $crate::Result<Vec<$crate::HeartbeatOutcome>> {
                if beats.is_empty() {
                    return Ok(Vec::new());
                }
                self.heartbeat_batch(beats).await
            }

            async fn agent_disconnected(&self, agent_id: &str, epoch: i64) -> $crate::Result<bool> {
                let done = sqlx::query($stmts.agent_disconnected)
                    .bind(agent_id)
                    .bind(epoch)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn expire_agents(&self, older_than_secs: f64) -> $crate::Result<Vec<String>> {
                let mut ids: Vec<String> = sqlx::query_scalar($stmts.agent_expire)
                    .bind(older_than_secs)
                    .fetch_all(&self.pool)
                    .await?;
                ids.sort();
                Ok(ids)
            }

            async fn get_agent(
                &self,
                agent_id: &str,
            ) -> $crate::Result<streamspace_proto::api::Agent> {
                sqlx::query_as::<_, $crate::rows::AgentRow>($crate::sql::AGENT_GET)
                    .bind(agent_id)
                    .fetch_optional(&self.pool)
                    .await?
                    .ok_or($crate::StoreError::NotFound { what: "agent" })?
                    .try_into()
            }

            async fn list_agents(
                &self,
                after: Option<&str>,
                limit: i64,
            ) -> $crate::Result<Vec<streamspace_proto::api::Agent>> {
                let rows = sqlx::query_as::<_, $crate::rows::AgentRow>($crate::sql::AGENT_LIST)
                    .bind(after)
                    .bind(limit.max(0))
                    .fetch_all(&self.pool)
                    .await?;
                $crate::rows::convert_all(rows)
            }

            async fn delete_agent(
                &self,
                agent_id: &str,
                audit: &$crate::AuditEntry,
            ) -> $crate::Result<()> {
                self.delete_agent_tx(agent_id, audit).await
            }

            async fn create_session(
                &self,
                new: &$crate::NewSession,
                audit: &$crate::AuditEntry,
            ) -> $crate::Result<(
                streamspace_proto::api::Session,
                streamspace_proto::api::Command,
            )> {
                self.place_session(new, audit).await
            }

            async fn get_session(
                &self,
                id: uuid::Uuid,
            ) -> $crate::Result<streamspace_proto::api::Session> {
                sqlx::query_as::<_, $crate::rows::SessionRow>($crate::sql::SESSION_GET)
                    .bind($crate::rows::DbUuid(id))
                    .fetch_optional(&self.pool)
                    .await?
                    .ok_or($crate::StoreError::NotFound { what: "session" })?
                    .try_into()
            }

            async fn purge(
                &self,
                what: $crate::Purge,
                older_than_secs: f64,
                batch: i64,
            ) -> $crate::Result<Option<u64>> {
                let mut tx = self.write_tx().await?;
                if let Some(lock) = $stmts.purge_lock {
                    let taken: bool = sqlx::query_scalar(lock).fetch_one(&mut *tx).await?;
                    if !taken {
                        return Ok(None);
                    }
                }
                let statement = match what {
                    $crate::Purge::Commands => $stmts.purge_commands,
                    $crate::Purge::Sessions => $stmts.purge_sessions,
                    $crate::Purge::Audit => $stmts.purge_audit,
                };
                let done = sqlx::query(statement)
                    .bind(older_than_secs)
                    .bind(batch.max(0))
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(Some(done.rows_affected()))
            }

            async fn list_live_sessions(
                &self,
                agent_id: &str,
            ) -> $crate::Result<Vec<streamspace_proto::api::Session>> {
                let rows =
                    sqlx::query_as::<_, $crate::rows::SessionRow>($crate::sql::SESSION_LIST_LIVE)
                        .bind(agent_id)
                        .fetch_all(&self.pool)
                        .await?;
                $crate::rows::convert_all(rows)
            }

            async fn list_live_sessions_of(
                &self,
                agent_ids: &[String],
            ) -> $crate::Result<Vec<Vec<streamspace_proto::api::Session>>> {
                if agent_ids.is_empty() {
                    return Ok(Vec::new());
                }
                self.live_sessions_batch(agent_ids).await
            }

            async fn list_sessions(
                &self,
                query: &$crate::SessionQuery<'_>,
            ) -> $crate::Result<Vec<streamspace_proto::api::Session>> {
                let rows = sqlx::query_as::<_, $crate::rows::SessionRow>($crate::sql::SESSION_LIST)
                    .bind(query.owner_id.map($crate::rows::DbUuid))
                    .bind(query.agent_id)
                    .bind(query.before.map($crate::rows::DbUuid))
                    .bind(query.limit.unwrap_or(i64::MAX).max(0))
                    .fetch_all(&self.pool)
                    .await?;
                $crate::rows::convert_all(rows)
            }

            async fn set_session_state(
                &self,
                id: uuid::Uuid,
                state: streamspace_proto::api::SessionState,
                vnc_address: Option<&str>,
                error_message: Option<&str>,
            ) -> $crate::Result<(streamspace_proto::api::Session, bool)> {
                let mut conn = self.pool.acquire().await?;
                let changed =
                    Self::move_session(&mut conn, id, state, vnc_address, error_message).await?;
                drop(conn);
                Ok((self.get_session(id).await?, changed))
            }

            async fn create_session_command(
                &self,
                session_id: uuid::Uuid,
                allowed_from: &[streamspace_proto::api::SessionState],
                command: &$crate::NewCommand,
                audit: &$crate::AuditEntry,
            ) -> $crate::Result<streamspace_proto::api::Command> {
                self.create_session_command_tx(session_id, allowed_from, command, audit)
                    .await
            }

            async fn create_command(
                &self,
                command: &$crate::NewCommand,
            ) -> $crate::Result<streamspace_proto::api::Command> {
                let mut conn = self.pool.acquire().await?;
                match Self::insert_command(&mut conn, command).await {
                    // The foreign keys check the agent and the session in the same statement;
                    // only a refused insert pays for finding out which one is missing.
                    Err($crate::StoreError::Database(e))
                        if e.as_database_error()
                            .is_some_and(|db| db.is_foreign_key_violation()) =>
                    {
                        drop(conn);
                        self.get_agent(&command.agent_id).await?;
                        Err($crate::StoreError::NotFound { what: "session" })
                    }
                    other => other,
                }
            }

            async fn create_commands(
                &self,
                commands: &[$crate::NewCommand],
            ) -> $crate::Result<Vec<$crate::Result<streamspace_proto::api::Command>>> {
                // One alone takes the plain statement, cheaper to plan than the array one.
                if commands.len() > 1
                    && let Some(created) = self.insert_commands_batch(commands).await?
                {
                    return Ok(created.into_iter().map(Ok).collect());
                }
                let mut answers = Vec::with_capacity(commands.len());
                for command in commands {
                    answers.push($crate::Store::create_command(self, command).await);
                }
                Ok(answers)
            }

            async fn get_command(
                &self,
                command_id: uuid::Uuid,
            ) -> $crate::Result<streamspace_proto::api::Command> {
                sqlx::query_as::<_, $crate::rows::CommandRow>($crate::sql::COMMAND_GET)
                    .bind($crate::rows::DbUuid(command_id))
                    .fetch_optional(&self.pool)
                    .await?
                    .ok_or($crate::StoreError::NotFound { what: "command" })?
                    .try_into()
            }

            async fn list_commands(
                &self,
                filter: &streamspace_proto::api::CommandFilter,
                owner_id: Option<uuid::Uuid>,
                before_id: Option<i64>,
            ) -> $crate::Result<Vec<streamspace_proto::api::Command>> {
                let rows = sqlx::query_as::<_, $crate::rows::CommandRow>($crate::sql::COMMAND_LIST)
                    .bind(filter.session_id.map($crate::rows::DbUuid))
                    .bind(filter.agent_id.as_deref())
                    .bind(filter.status.map(|s| s.as_str()))
                    .bind($crate::sql::command_limit(filter.limit))
                    .bind(owner_id.map($crate::rows::DbUuid))
                    .bind(before_id)
                    .fetch_all(&self.pool)
                    .await?;
                $crate::rows::convert_all(rows)
            }

            async fn deliverable_commands(
                &self,
                agent_id: &str,
                ack_timeout_secs: f64,
                max_attempts: i32,
                include_unfinished: bool,
                limit: i64,
            ) -> $crate::Result<Vec<streamspace_proto::api::Command>> {
                let rows = sqlx::query_as::<_, $crate::rows::CommandRow>($stmts.deliverable)
                    .bind(agent_id)
                    .bind(ack_timeout_secs)
                    .bind(max_attempts)
                    .bind(include_unfinished)
                    .bind(limit.max(0))
                    .fetch_all(&self.pool)
                    .await?;
                $crate::rows::convert_all(rows)
            }

            async fn unfinished_commands_of(
                &self,
                agent_ids: &[String],
                limit: i64,
            ) -> $crate::Result<Vec<Vec<streamspace_proto::api::Command>>> {
                if agent_ids.is_empty() {
                    return Ok(Vec::new());
                }
                self.unfinished_batch(agent_ids, limit.max(0)).await
            }

            async fn agents_with_deliverable_commands(
                &self,
                ack_timeout_secs: f64,
                max_attempts: i32,
            ) -> $crate::Result<Vec<String>> {
                Ok(sqlx::query_scalar($stmts.agents_with_deliverable)
                    .bind(ack_timeout_secs)
                    .bind(max_attempts)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn claim_delivery(
                &self,
                command_id: uuid::Uuid,
                expected_attempts: i32,
            ) -> $crate::Result<Option<streamspace_proto::api::Command>> {
                self.claim(command_id, expected_attempts).await
            }

            async fn unclaim_delivery(&self, command_id: uuid::Uuid) -> $crate::Result<bool> {
                let done = sqlx::query($crate::sql::COMMAND_UNCLAIM)
                    .bind($crate::rows::DbUuid(command_id))
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn claim_due_commands(
                &self,
                agent_id: &str,
                ack_timeout_secs: f64,
                max_attempts: i32,
                limit: i64,
            ) -> $crate::Result<Vec<streamspace_proto::api::Command>> {
                self.claim_due(agent_id, ack_timeout_secs, max_attempts, limit)
                    .await
            }

            async fn claim_due_commands_of(
                &self,
                agent_ids: &[String],
                ack_timeout_secs: f64,
                max_attempts: i32,
                limit: i64,
            ) -> $crate::Result<Vec<Vec<streamspace_proto::api::Command>>> {
                if let [agent_id] = agent_ids {
                    return Ok(vec![
                        self.claim_due(agent_id, ack_timeout_secs, max_attempts, limit)
                            .await?,
                    ]);
                }
                self.claim_due_batch(agent_ids, ack_timeout_secs, max_attempts, limit)
                    .await
            }

            async fn ack_command(
                &self,
                agent_id: &str,
                command_id: uuid::Uuid,
            ) -> $crate::Result<bool> {
                let done = sqlx::query($stmts.command_ack)
                    .bind($crate::rows::DbUuid(command_id))
                    .bind(agent_id)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn finish_command(
                &self,
                agent_id: &str,
                command_id: uuid::Uuid,
                outcome: &$crate::CommandOutcome,
            ) -> $crate::Result<(streamspace_proto::api::Command, bool)> {
                if let Some(done) = self
                    .finish_sessionless(agent_id, command_id, outcome)
                    .await?
                {
                    return Ok((done, true));
                }
                self.finish_command_tx(agent_id, command_id, outcome).await
            }

            async fn finish_commands(
                &self,
                reports: &[$crate::CommandReport],
            ) -> $crate::Result<Vec<$crate::Result<(streamspace_proto::api::Command, bool)>>> {
                if let [report] = reports {
                    return Ok(vec![
                        $crate::Store::finish_command(
                            self,
                            &report.agent_id,
                            report.command_id,
                            &report.outcome,
                        )
                        .await,
                    ]);
                }
                // A batch that fails (two batches in flight can deadlock on rows they both
                // name) leaves every report to the one-report path.
                let finished = match self.finish_sessionless_batch(reports).await {
                    Ok(finished) => finished,
                    Err(_) => vec![None; reports.len()],
                };
                let mut answers = Vec::with_capacity(reports.len());
                for (report, done) in reports.iter().zip(finished) {
                    let answer = match done {
                        Some(command) => Ok((command, true)),
                        None => {
                            self.finish_command_tx(
                                &report.agent_id,
                                report.command_id,
                                &report.outcome,
                            )
                            .await
                        }
                    };
                    answers.push(answer);
                }
                Ok(answers)
            }

            async fn fail_stuck_commands(
                &self,
                stuck_secs: f64,
                pending_secs: f64,
                ack_timeout_secs: f64,
                max_attempts: i32,
            ) -> $crate::Result<Vec<streamspace_proto::api::Command>> {
                self.fail_stuck_commands_tx(
                    stuck_secs,
                    pending_secs,
                    ack_timeout_secs,
                    max_attempts,
                )
                .await
            }

            async fn audit_event(&self, entry: &$crate::AuditEntry) -> $crate::Result<()> {
                let mut conn = self.pool.acquire().await?;
                Self::insert_audit(&mut conn, entry).await
            }
        }
    };
}

pub(crate) use impl_store;
