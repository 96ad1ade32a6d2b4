//! Statements of user homes (`persistent_home: user`): which agent holds each user's home, and
//! which sessions mount one. The placement rules themselves are in [`crate::Store::create_session`].

pub(crate) mod sql {
    /// The owner's (`$1`) live session that mounts their home, if any.
    pub(crate) const IN_USE: &str = "SELECT id FROM sessions WHERE owner_id = $1 AND user_home \
         AND state NOT IN ('terminated', 'failed') ORDER BY id LIMIT 1";
    /// The agent holding user `$1`'s home.
    pub(crate) const AGENT: &str = "SELECT agent_id FROM user_homes WHERE user_id = $1";
    /// Records that user `$1`'s home is made on agent `$2` (the first session that uses it).
    pub(crate) const RECORD: &str = "INSERT INTO user_homes (user_id, agent_id) VALUES ($1, $2) \
         ON CONFLICT (user_id) DO NOTHING";
    /// Whether agent `$1` is online and keeps user homes (`None`: no such agent).
    pub(crate) const AGENT_STATE: &str =
        "SELECT status = 'online' AND user_homes FROM agents WHERE agent_id = $1";
    pub(crate) const FORGET: &str = "DELETE FROM user_homes WHERE user_id = $1";
    /// Marks user `$1`'s home as left behind by a deleted user (kept for an operator).
    pub(crate) const ORPHAN: &str =
        "UPDATE user_homes SET orphaned_at = CURRENT_TIMESTAMP WHERE user_id = $1";
}

/// Where a new session may go, as far as its owner's home is concerned.
#[derive(Debug, Default)]
pub(crate) struct HomeTarget {
    /// Only agents that keep user homes.
    pub needs_user_homes: bool,
    /// Only this agent (it holds the home).
    pub pinned: Option<String>,
}

macro_rules! impl_user_homes {
    ($store:ty, $conn:ty, $stmts:expr) => {
        impl $store {
            /// The agents `new` may be placed on given its owner's home; refuses it while the
            /// owner's home (not shared) is in use. Locks the owner's row first, so two
            /// concurrent creations of one user cannot both find the home free.
            async fn home_target(
                conn: &mut $conn,
                new: &$crate::NewSession,
            ) -> $crate::Result<$crate::home::HomeTarget> {
                let Some(home) = new.user_home else {
                    return Ok($crate::home::HomeTarget::default());
                };
                let owner = $crate::rows::DbUuid(new.owner_id);
                let found: Option<$crate::rows::DbUuid> = sqlx::query_scalar($stmts.user_lock_id)
                    .bind(owner)
                    .fetch_optional(&mut *conn)
                    .await?;
                if found.is_none() {
                    return Err($crate::StoreError::NotFound { what: "user" });
                }
                if home.shared {
                    return Ok($crate::home::HomeTarget {
                        needs_user_homes: true,
                        pinned: None,
                    });
                }
                let in_use: Option<$crate::rows::DbUuid> =
                    sqlx::query_scalar($crate::home::sql::IN_USE)
                        .bind($crate::rows::DbUuid(new.owner_id))
                        .fetch_optional(&mut *conn)
                        .await?;
                if let Some(other) = in_use {
                    return Err($crate::StoreError::HomeInUse {
                        session_id: other.0,
                    });
                }
                let pinned: Option<String> = sqlx::query_scalar($crate::home::sql::AGENT)
                    .bind($crate::rows::DbUuid(new.owner_id))
                    .fetch_optional(&mut *conn)
                    .await?;
                Ok($crate::home::HomeTarget {
                    needs_user_homes: true,
                    pinned,
                })
            }

            /// Why no agent was found for a session placed by `target`.
            async fn no_agent(
                conn: &mut $conn,
                target: &$crate::home::HomeTarget,
            ) -> $crate::Result<$crate::StoreError> {
                let Some(agent_id) = &target.pinned else {
                    return Ok(if target.needs_user_homes {
                        $crate::StoreError::NoUserHomeAgent
                    } else {
                        $crate::StoreError::NoCapacity
                    });
                };
                let ready: Option<bool> = sqlx::query_scalar($crate::home::sql::AGENT_STATE)
                    .bind(agent_id)
                    .fetch_optional(&mut *conn)
                    .await?;
                let reason = match ready {
                    None => "no longer exists",
                    Some(false) => "is offline (or no longer keeps user homes)",
                    Some(true) => "has no free capacity",
                };
                Ok($crate::StoreError::HomeAgentUnavailable {
                    agent_id: agent_id.clone(),
                    reason,
                })
            }

            /// Carries out `choice` for the home of `user_id` (being deleted): the
            /// `delete_user_home` command to queue, if any.
            async fn dispose_user_home(
                conn: &mut $conn,
                user_id: uuid::Uuid,
                choice: $crate::HomeChoice,
            ) -> $crate::Result<Option<streamspace_proto::api::Command>> {
                let id = $crate::rows::DbUuid(user_id);
                let agent: Option<String> = sqlx::query_scalar($crate::home::sql::AGENT)
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await?;
                let Some(agent_id) = agent else {
                    return Ok(None);
                };
                match choice {
                    $crate::HomeChoice::Ask => {
                        Err($crate::StoreError::HomeChoiceNeeded { agent_id })
                    }
                    $crate::HomeChoice::Keep => {
                        sqlx::query($crate::home::sql::ORPHAN)
                            .bind(id)
                            .execute(&mut *conn)
                            .await?;
                        Ok(None)
                    }
                    $crate::HomeChoice::Delete { command_id } => {
                        sqlx::query($crate::home::sql::FORGET)
                            .bind(id)
                            .execute(&mut *conn)
                            .await?;
                        let command = $crate::NewCommand {
                            command_id,
                            agent_id,
                            session_id: None,
                            action: streamspace_proto::api::Action::DeleteUserHome,
                            payload: serde_json::json!({ "user_id": user_id }),
                            send_now: None,
                        };
                        Ok(Some(Self::insert_command(conn, &command).await?))
                    }
                }
            }

            /// Records where the owner's home is made, if `new` is its first session.
            async fn record_user_home(
                conn: &mut $conn,
                new: &$crate::NewSession,
                agent_id: &str,
            ) -> $crate::Result<()> {
                if new.user_home.is_some() {
                    sqlx::query($crate::home::sql::RECORD)
                        .bind($crate::rows::DbUuid(new.owner_id))
                        .bind(agent_id)
                        .execute(&mut *conn)
                        .await?;
                }
                Ok(())
            }
        }
    };
}

pub(crate) use impl_user_homes;
