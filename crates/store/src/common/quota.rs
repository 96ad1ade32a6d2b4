//! The shared [`crate::Quotas`] implementation and the quota check of session creation (see
//! the parent module for why it is a macro), expanded once per backend.

macro_rules! impl_quotas {
    ($store:ty, $conn:ty, $stmts:expr) => {
        impl $store {
            async fn usage(
                conn: &mut $conn,
                user_id: uuid::Uuid,
                default_size: $crate::SessionSize,
            ) -> $crate::Result<streamspace_proto::api::QuotaUsage> {
                let row: (i64, i64, i64) = sqlx::query_as($crate::quota::sql::USAGE)
                    .bind($crate::rows::DbUuid(user_id))
                    .bind(i64::from(default_size.cpu_millis))
                    .bind(i64::from(default_size.memory_mib))
                    .fetch_one(&mut *conn)
                    .await?;
                Ok($crate::quota::usage_from_row(row))
            }

            /// Refuses `new` if it would take its owner past `new.quota`. Locks the owner's row
            /// first, so a concurrent creation by the same user waits here until this
            /// transaction ends and then counts this session too.
            async fn check_quota(conn: &mut $conn, new: &$crate::NewSession) -> $crate::Result<()> {
                if new.quota == streamspace_proto::api::QuotaLimits::default() {
                    return Ok(());
                }
                let owner: Option<$crate::rows::DbUuid> = sqlx::query_scalar($stmts.user_lock_id)
                    .bind($crate::rows::DbUuid(new.owner_id))
                    .fetch_optional(&mut *conn)
                    .await?;
                if owner.is_none() {
                    return Err($crate::StoreError::NotFound { what: "user" });
                }
                let usage = Self::usage(conn, new.owner_id, new.default_size).await?;
                $crate::quota::check(&new.quota, &usage, new.size)
            }

            async fn limits(
                conn: &mut $conn,
                statement: &'static str,
                key: &str,
                what: &'static str,
            ) -> $crate::Result<streamspace_proto::api::QuotaLimits> {
                let row: $crate::quota::LimitsRow = sqlx::query_as(statement)
                    .bind(key)
                    .fetch_optional(&mut *conn)
                    .await?
                    .ok_or($crate::StoreError::NotFound { what })?;
                $crate::quota::limits_from_row(row)
            }

            async fn set_limits(
                &self,
                set: &'static str,
                get: &'static str,
                key: &str,
                what: &'static str,
                change: &streamspace_proto::api::SetQuota,
                audit: &$crate::AuditEntry,
            ) -> $crate::Result<streamspace_proto::api::QuotaLimits> {
                let bind = |v: Option<Option<u32>>| (v.is_some(), v.flatten().map(i64::from));
                let (s, c, m) = (
                    bind(change.max_sessions),
                    bind(change.max_cpu_millis),
                    bind(change.max_memory_mib),
                );
                let mut tx = self.write_tx().await?;
                let done = sqlx::query(set)
                    .bind(key)
                    .bind(s.0)
                    .bind(s.1)
                    .bind(c.0)
                    .bind(c.1)
                    .bind(m.0)
                    .bind(m.1)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound { what });
                }
                let limits = Self::limits(&mut tx, get, key, what).await?;
                Self::insert_audit(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(limits)
            }
        }

        #[async_trait::async_trait]
        impl $crate::Quotas for $store {
            async fn quota_sources(
                &self,
                user_id: uuid::Uuid,
            ) -> $crate::Result<$crate::QuotaSources> {
                let mut conn = self.pool.acquire().await?;
                let own: $crate::quota::LimitsRow =
                    sqlx::query_as($crate::quota::sql::USER_LIMITS_BY_ID)
                        .bind($crate::rows::DbUuid(user_id))
                        .fetch_optional(&mut *conn)
                        .await?
                        .ok_or($crate::StoreError::NotFound { what: "user" })?;
                let groups: Vec<$crate::quota::LimitsRow> =
                    sqlx::query_as($crate::quota::sql::USER_GROUP_LIMITS)
                        .bind($crate::rows::DbUuid(user_id))
                        .fetch_all(&mut *conn)
                        .await?;
                Ok($crate::QuotaSources {
                    own: $crate::quota::limits_from_row(own)?,
                    groups: groups
                        .into_iter()
                        .map($crate::quota::limits_from_row)
                        .collect::<$crate::Result<_>>()?,
                })
            }

            async fn user_quota(
                &self,
                username: &str,
            ) -> $crate::Result<streamspace_proto::api::QuotaLimits> {
                let mut conn = self.pool.acquire().await?;
                Self::limits(&mut conn, $crate::quota::sql::USER_LIMITS, username, "user").await
            }

            async fn set_user_quota(
                &self,
                username: &str,
                change: &streamspace_proto::api::SetQuota,
                audit: &$crate::AuditEntry,
            ) -> $crate::Result<streamspace_proto::api::QuotaLimits> {
                self.set_limits(
                    $crate::quota::sql::USER_LIMITS_SET,
                    $crate::quota::sql::USER_LIMITS,
                    username,
                    "user",
                    change,
                    audit,
                )
                .await
            }

            async fn group_quota(
                &self,
                name: &str,
            ) -> $crate::Result<streamspace_proto::api::QuotaLimits> {
                let mut conn = self.pool.acquire().await?;
                Self::limits(&mut conn, $crate::quota::sql::GROUP_LIMITS, name, "group").await
            }

            async fn set_group_quota(
                &self,
                name: &str,
                change: &streamspace_proto::api::SetQuota,
                audit: &$crate::AuditEntry,
            ) -> $crate::Result<streamspace_proto::api::QuotaLimits> {
                self.set_limits(
                    $crate::quota::sql::GROUP_LIMITS_SET,
                    $crate::quota::sql::GROUP_LIMITS,
                    name,
                    "group",
                    change,
                    audit,
                )
                .await
            }

            async fn quota_usage(
                &self,
                user_id: uuid::Uuid,
                default_size: $crate::SessionSize,
            ) -> $crate::Result<streamspace_proto::api::QuotaUsage> {
                let mut conn = self.pool.acquire().await?;
                Self::usage(&mut conn, user_id, default_size).await
            }
        }
    };
}

pub(crate) use impl_quotas;
