//! The shared [`crate::Identity`] implementation (see the parent module for why it is a macro),
//! expanded once per backend.

macro_rules! impl_identity {
    ($store:ty, $conn:ty, $stmts:expr) => {
        impl $store {
            async fn user_groups(conn: &mut $conn, id: uuid::Uuid) -> $crate::Result<Vec<String>> {
                Ok(sqlx::query_scalar($crate::identity::sql::USER_GROUPS)
                    .bind($crate::rows::DbUuid(id))
                    .fetch_all(&mut *conn)
                    .await?)
            }

            async fn user_record(
                conn: &mut $conn,
                row: Option<$crate::rows::UserRow>,
            ) -> $crate::Result<$crate::UserRecord> {
                let row = row.ok_or($crate::StoreError::NotFound { what: "user" })?;
                let groups = Self::user_groups(conn, row.id.0).await?;
                row.into_record(groups)
            }

            async fn group_with_members(
                conn: &mut $conn,
                row: Option<$crate::rows::GroupRow>,
            ) -> $crate::Result<streamspace_proto::api::Group> {
                let row = row.ok_or($crate::StoreError::NotFound { what: "group" })?;
                let members = sqlx::query_scalar($crate::identity::sql::GROUP_MEMBERS)
                    .bind(row.id)
                    .fetch_all(&mut *conn)
                    .await?;
                Ok(row.into_group(members))
            }

            /// Locks the user and every enabled admin, and refuses if `removes_admin` says the
            /// change takes admin power from the last enabled admin.
            async fn guard_last_admin(
                conn: &mut $conn,
                username: &str,
                removes_admin: impl Fn(&streamspace_proto::api::User) -> bool,
                doing: &str,
            ) -> $crate::Result<$crate::UserRecord> {
                let admins: Vec<$crate::rows::DbUuid> = sqlx::query_scalar($stmts.admins_lock)
                    .fetch_all(&mut *conn)
                    .await?;
                let row = sqlx::query_as::<_, $crate::rows::UserRow>($stmts.user_lock)
                    .bind(username)
                    .fetch_optional(&mut *conn)
                    .await?;
                let record = Self::user_record(conn, row).await?;
                if removes_admin(&record.user) && admins.len() <= 1 {
                    return Err($crate::StoreError::Conflict(format!(
                        "{username:?} is the last enabled admin and cannot be {doing}"
                    )));
                }
                Ok(record)
            }
        }

        #[async_trait::async_trait]
        impl $crate::Identity for $store {
            async fn create_user(
                &self,
                new: &$crate::NewUser,
                audit: &$crate::AuditEntry,
            ) -> $crate::Result<streamspace_proto::api::User> {
                let mut tx = self.write_tx().await?;
                let row =
                    sqlx::query_as::<_, $crate::rows::UserRow>($crate::identity::sql::USER_INSERT)
                        .bind($crate::rows::DbUuid(new.id))
                        .bind(&new.username)
                        .bind(&new.display_name)
                        .bind(&new.email)
                        .bind(new.role.as_str())
                        .bind(&new.password_hash)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(|e| {
                            $crate::sql::conflict_on_unique(e, || {
                                format!("a user named {:?} already exists", new.username)
                            })
                        })?;
                let user = row.into_record(Vec::new())?.user;
                Self::insert_audit(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(user)
            }

            async fn get_user(&self, username: &str) -> $crate::Result<$crate::UserRecord> {
                let mut conn = self.pool.acquire().await?;
                let row =
                    sqlx::query_as::<_, $crate::rows::UserRow>($crate::identity::sql::USER_GET)
                        .bind(username)
                        .fetch_optional(&mut *conn)
                        .await?;
                Self::user_record(&mut conn, row).await
            }

            async fn get_user_by_id(&self, id: uuid::Uuid) -> $crate::Result<$crate::UserRecord> {
                let mut conn = self.pool.acquire().await?;
                let row =
                    sqlx::query_as::<_, $crate::rows::UserRow>($crate::identity::sql::USER_BY_ID)
                        .bind($crate::rows::DbUuid(id))
                        .fetch_optional(&mut *conn)
                        .await?;
                Self::user_record(&mut conn, row).await
            }

            async fn list_users(&self) -> $crate::Result<Vec<streamspace_proto::api::User>> {
                let mut conn = self.pool.acquire().await?;
                let rows =
                    sqlx::query_as::<_, $crate::rows::UserRow>($crate::identity::sql::USER_LIST)
                        .fetch_all(&mut *conn)
                        .await?;
                let memberships: Vec<($crate::rows::DbUuid, String)> =
                    sqlx::query_as($crate::identity::sql::ALL_MEMBERSHIPS)
                        .fetch_all(&mut *conn)
                        .await?;
                let mut groups: std::collections::HashMap<uuid::Uuid, Vec<String>> =
                    std::collections::HashMap::new();
                for (user, group) in memberships {
                    groups.entry(user.0).or_default().push(group);
                }
                rows.into_iter()
                    .map(|row| {
                        let of_user = groups.remove(&row.id.0).unwrap_or_default();
                        Ok(row.into_record(of_user)?.user)
                    })
                    .collect()
            }

            async fn update_user(
                &self,
                username: &str,
                change: &$crate::UserChange,
                audit: &$crate::AuditEntry,
            ) -> $crate::Result<streamspace_proto::api::User> {
                let mut tx = self.write_tx().await?;
                let record = Self::guard_last_admin(
                    &mut tx,
                    username,
                    |u| change.removes_admin(u),
                    if change.disabled == Some(true) {
                        "disabled"
                    } else {
                        "demoted"
                    },
                )
                .await?;
                sqlx::query($crate::identity::sql::USER_UPDATE)
                    .bind($crate::rows::DbUuid(record.user.id))
                    .bind(change.role.map(|r| r.as_str()))
                    .bind(change.disabled)
                    .bind(&change.display_name)
                    .bind(change.email.is_some())
                    .bind(change.email.clone().flatten())
                    .bind(&change.password_hash)
                    .execute(&mut *tx)
                    .await?;
                let row =
                    sqlx::query_as::<_, $crate::rows::UserRow>($crate::identity::sql::USER_BY_ID)
                        .bind($crate::rows::DbUuid(record.user.id))
                        .fetch_optional(&mut *tx)
                        .await?;
                let user = Self::user_record(&mut tx, row).await?.user;
                Self::insert_audit(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(user)
            }

            async fn delete_user(
                &self,
                username: &str,
                audit: &$crate::AuditEntry,
            ) -> $crate::Result<streamspace_proto::api::User> {
                let (user, _) = self
                    .delete_user_and_home(username, $crate::HomeChoice::Ask, audit)
                    .await?;
                Ok(user)
            }

            async fn delete_user_and_home(
                &self,
                username: &str,
                home: $crate::HomeChoice,
                audit: &$crate::AuditEntry,
            ) -> $crate::Result<(
                streamspace_proto::api::User,
                Option<streamspace_proto::api::Command>,
            )> {
                let mut tx = self.write_tx().await?;
                let record = Self::guard_last_admin(
                    &mut tx,
                    username,
                    |u| u.role == streamspace_proto::api::Role::Admin && !u.disabled,
                    "deleted",
                )
                .await?;
                let command = Self::dispose_user_home(&mut tx, record.user.id, home).await?;
                sqlx::query($crate::identity::sql::USER_DELETE)
                    .bind($crate::rows::DbUuid(record.user.id))
                    .execute(&mut *tx)
                    .await?;
                Self::insert_audit(&mut tx, audit).await?;
                tx.commit().await?;
                Ok((record.user, command))
            }

            async fn record_login(&self, id: uuid::Uuid) -> $crate::Result<()> {
                sqlx::query($stmts.user_login)
                    .bind($crate::rows::DbUuid(id))
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn start_totp(
                &self,
                id: uuid::Uuid,
                secret: &str,
                audit: &$crate::AuditEntry,
            ) -> $crate::Result<()> {
                let mut tx = self.write_tx().await?;
                let done = sqlx::query($crate::identity::sql::TOTP_START)
                    .bind($crate::rows::DbUuid(id))
                    .bind(secret)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() == 0 {
                    drop(tx);
                    self.get_user_by_id(id).await?;
                    return Err($crate::StoreError::Conflict(
                        "one-time codes are on already; turn them off first".into(),
                    ));
                }
                Self::insert_audit(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn enable_totp(
                &self,
                id: uuid::Uuid,
                step: i64,
                code_hashes: &[String],
                audit: &$crate::AuditEntry,
            ) -> $crate::Result<()> {
                let mut tx = self.write_tx().await?;
                let done = sqlx::query($crate::identity::sql::TOTP_ENABLE)
                    .bind($crate::rows::DbUuid(id))
                    .bind(step)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::Conflict(
                        "no one-time-code enrolment is pending".into(),
                    ));
                }
                sqlx::query($crate::identity::sql::RECOVERY_DELETE)
                    .bind($crate::rows::DbUuid(id))
                    .execute(&mut *tx)
                    .await?;
                for hash in code_hashes {
                    sqlx::query($crate::identity::sql::RECOVERY_INSERT)
                        .bind($crate::rows::DbUuid(id))
                        .bind(hash)
                        .execute(&mut *tx)
                        .await?;
                }
                Self::insert_audit(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn clear_totp(
                &self,
                id: uuid::Uuid,
                audit: &$crate::AuditEntry,
            ) -> $crate::Result<bool> {
                let mut tx = self.write_tx().await?;
                let enabled: Option<bool> =
                    sqlx::query_scalar($crate::identity::sql::TOTP_WAS_ENABLED)
                        .bind($crate::rows::DbUuid(id))
                        .fetch_optional(&mut *tx)
                        .await?;
                let enabled = enabled.ok_or($crate::StoreError::NotFound { what: "user" })?;
                sqlx::query($crate::identity::sql::TOTP_CLEAR)
                    .bind($crate::rows::DbUuid(id))
                    .execute(&mut *tx)
                    .await?;
                sqlx::query($crate::identity::sql::RECOVERY_DELETE)
                    .bind($crate::rows::DbUuid(id))
                    .execute(&mut *tx)
                    .await?;
                let audit = audit.with_detail("was_enabled", enabled.into());
                Self::insert_audit(&mut tx, &audit).await?;
                tx.commit().await?;
                Ok(enabled)
            }

            async fn totp_secrets(&self) -> $crate::Result<Vec<(uuid::Uuid, String)>> {
                let rows: Vec<($crate::rows::DbUuid, String)> =
                    sqlx::query_as($crate::identity::sql::TOTP_SECRETS)
                        .fetch_all(&self.pool)
                        .await?;
                Ok(rows
                    .into_iter()
                    .map(|(id, secret)| (id.0, secret))
                    .collect())
            }

            async fn reseal_totp_secret(
                &self,
                id: uuid::Uuid,
                old: &str,
                new: &str,
            ) -> $crate::Result<bool> {
                let done = sqlx::query($crate::identity::sql::TOTP_RESEAL)
                    .bind($crate::rows::DbUuid(id))
                    .bind(old)
                    .bind(new)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn use_totp_step(&self, id: uuid::Uuid, step: i64) -> $crate::Result<bool> {
                let done = sqlx::query($crate::identity::sql::TOTP_USE_STEP)
                    .bind($crate::rows::DbUuid(id))
                    .bind(step)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn use_recovery_code(
                &self,
                id: uuid::Uuid,
                code_hash: &str,
                audit: &$crate::AuditEntry,
            ) -> $crate::Result<bool> {
                let mut tx = self.write_tx().await?;
                let done = sqlx::query($stmts.recovery_use)
                    .bind($crate::rows::DbUuid(id))
                    .bind(code_hash)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() != 1 {
                    return Ok(false);
                }
                let left: i64 = sqlx::query_scalar($crate::identity::sql::RECOVERY_LEFT)
                    .bind($crate::rows::DbUuid(id))
                    .fetch_one(&mut *tx)
                    .await?;
                let audit = audit.with_detail("left", left.into());
                Self::insert_audit(&mut tx, &audit).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn recovery_codes_left(&self, id: uuid::Uuid) -> $crate::Result<i64> {
                Ok(sqlx::query_scalar($crate::identity::sql::RECOVERY_LEFT)
                    .bind($crate::rows::DbUuid(id))
                    .fetch_one(&self.pool)
                    .await?)
            }

            async fn create_group(
                &self,
                new: &$crate::NewGroup,
                audit: &$crate::AuditEntry,
            ) -> $crate::Result<streamspace_proto::api::Group> {
                let mut tx = self.write_tx().await?;
                let row = sqlx::query_as::<_, $crate::rows::GroupRow>(
                    $crate::identity::sql::GROUP_INSERT,
                )
                .bind($crate::rows::DbUuid(new.id))
                .bind(&new.name)
                .bind(&new.description)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| {
                    $crate::sql::conflict_on_unique(e, || {
                        format!("a group named {:?} already exists", new.name)
                    })
                })?;
                Self::insert_audit(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(row.into_group(Vec::new()))
            }

            async fn get_group(&self, name: &str) -> $crate::Result<streamspace_proto::api::Group> {
                let mut conn = self.pool.acquire().await?;
                let row =
                    sqlx::query_as::<_, $crate::rows::GroupRow>($crate::identity::sql::GROUP_GET)
                        .bind(name)
                        .fetch_optional(&mut *conn)
                        .await?;
                Self::group_with_members(&mut conn, row).await
            }

            async fn list_groups(&self) -> $crate::Result<Vec<streamspace_proto::api::Group>> {
                let mut conn = self.pool.acquire().await?;
                let rows =
                    sqlx::query_as::<_, $crate::rows::GroupRow>($crate::identity::sql::GROUP_LIST)
                        .fetch_all(&mut *conn)
                        .await?;
                let members: Vec<($crate::rows::DbUuid, String)> =
                    sqlx::query_as($crate::identity::sql::ALL_MEMBERS)
                        .fetch_all(&mut *conn)
                        .await?;
                let mut by_group: std::collections::HashMap<uuid::Uuid, Vec<String>> =
                    std::collections::HashMap::new();
                for (group, user) in members {
                    by_group.entry(group.0).or_default().push(user);
                }
                Ok(rows
                    .into_iter()
                    .map(|row| {
                        let of_group = by_group.remove(&row.id.0).unwrap_or_default();
                        row.into_group(of_group)
                    })
                    .collect())
            }

            async fn update_group(
                &self,
                name: &str,
                description: Option<&str>,
                audit: &$crate::AuditEntry,
            ) -> $crate::Result<streamspace_proto::api::Group> {
                let mut tx = self.write_tx().await?;
                sqlx::query($crate::identity::sql::GROUP_UPDATE)
                    .bind(name)
                    .bind(description)
                    .execute(&mut *tx)
                    .await?;
                let row =
                    sqlx::query_as::<_, $crate::rows::GroupRow>($crate::identity::sql::GROUP_GET)
                        .bind(name)
                        .fetch_optional(&mut *tx)
                        .await?;
                let group = Self::group_with_members(&mut tx, row).await?;
                Self::insert_audit(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(group)
            }

            async fn delete_group(
                &self,
                name: &str,
                audit: &$crate::AuditEntry,
            ) -> $crate::Result<()> {
                let mut tx = self.write_tx().await?;
                let done = sqlx::query($crate::identity::sql::GROUP_DELETE)
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound { what: "group" });
                }
                Self::insert_audit(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn add_group_member(
                &self,
                group: &str,
                username: &str,
                audit: &$crate::AuditEntry,
            ) -> $crate::Result<()> {
                let mut tx = self.write_tx().await?;
                sqlx::query($crate::identity::sql::MEMBER_ADD)
                    .bind(group)
                    .bind(username)
                    .execute(&mut *tx)
                    .await?;
                for (what, sql, name) in [
                    ("group", $crate::identity::sql::GROUP_EXISTS, group),
                    ("user", $crate::identity::sql::USER_EXISTS, username),
                ] {
                    let exists: bool = sqlx::query_scalar(sql)
                        .bind(name)
                        .fetch_one(&mut *tx)
                        .await?;
                    if !exists {
                        return Err($crate::StoreError::NotFound { what });
                    }
                }
                Self::insert_audit(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn remove_group_member(
                &self,
                group: &str,
                username: &str,
                audit: &$crate::AuditEntry,
            ) -> $crate::Result<()> {
                let mut tx = self.write_tx().await?;
                let done = sqlx::query($crate::identity::sql::MEMBER_REMOVE)
                    .bind(group)
                    .bind(username)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound {
                        what: "group membership",
                    });
                }
                Self::insert_audit(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn list_tokens(
                &self,
                user_id: Option<uuid::Uuid>,
            ) -> $crate::Result<Vec<streamspace_proto::api::ApiToken>> {
                let rows = sqlx::query_as::<_, $crate::rows::TokenRow>($stmts.token_list)
                    .bind(user_id.map($crate::rows::DbUuid))
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn list_audit(
                &self,
                q: &$crate::AuditQuery,
            ) -> $crate::Result<Vec<streamspace_proto::api::AuditRecord>> {
                let time = |t: &Option<chrono::DateTime<chrono::Utc>>| {
                    t.map(|t| t.format($stmts.time_format).to_string())
                };
                let rows = sqlx::query_as::<_, $crate::rows::AuditRow>($stmts.audit_list)
                    .bind(q.actor_id.map($crate::rows::DbUuid))
                    .bind(&q.action)
                    .bind(&q.target)
                    .bind(time(&q.since))
                    .bind(time(&q.until))
                    .bind(q.before_id)
                    .bind(q.limit)
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }
        }
    };
}

pub(crate) use impl_identity;
