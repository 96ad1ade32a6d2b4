//! The shared [`crate::Rules`] implementation (see the parent module for why it is a macro),
//! expanded once per backend.

macro_rules! impl_rules {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::Rules for $store {
            async fn group_rules(
                &self,
                name: &str,
            ) -> $crate::Result<streamspace_proto::api::SessionRules> {
                let value: sqlx::types::Json<serde_json::Value> =
                    sqlx::query_scalar($crate::rules::sql::GROUP_RULES)
                        .bind(name)
                        .fetch_optional(&self.pool)
                        .await?
                        .ok_or($crate::StoreError::NotFound { what: "group" })?;
                $crate::rules::from_column("group", value.0)
            }

            async fn set_group_rules(
                &self,
                name: &str,
                rules: &streamspace_proto::api::SessionRules,
                audit: &$crate::AuditEntry,
            ) -> $crate::Result<streamspace_proto::api::SessionRules> {
                let mut tx = self.write_tx().await?;
                let done = sqlx::query($crate::rules::sql::GROUP_RULES_SET)
                    .bind(name)
                    .bind(sqlx::types::Json(rules))
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound { what: "group" });
                }
                Self::insert_audit(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(*rules)
            }

            async fn user_group_rules(
                &self,
                user_id: uuid::Uuid,
            ) -> $crate::Result<Vec<streamspace_proto::api::SessionRules>> {
                let values: Vec<sqlx::types::Json<serde_json::Value>> =
                    sqlx::query_scalar($crate::rules::sql::USER_GROUP_RULES)
                        .bind($crate::rows::DbUuid(user_id))
                        .fetch_all(&self.pool)
                        .await?;
                values
                    .into_iter()
                    .map(|v| $crate::rules::from_column("group", v.0))
                    .collect()
            }

            async fn session_rules(
                &self,
                session_id: uuid::Uuid,
            ) -> $crate::Result<streamspace_proto::api::SessionRules> {
                let value: sqlx::types::Json<serde_json::Value> =
                    sqlx::query_scalar($crate::rules::sql::SESSION_RULES)
                        .bind($crate::rows::DbUuid(session_id))
                        .fetch_optional(&self.pool)
                        .await?
                        .ok_or($crate::StoreError::NotFound { what: "session" })?;
                $crate::rules::from_column("session", value.0)
            }
        }
    };
}

pub(crate) use impl_rules;
