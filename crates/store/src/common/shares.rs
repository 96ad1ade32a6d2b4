//! The shared [`crate::Shares`] implementation (see the parent module for why it is a macro),
//! expanded once per backend.

macro_rules! impl_shares {
    ($store:ty, $conn:ty, $stmts:expr) => {
        impl $store {
            async fn share_by_id(
                conn: &mut $conn,
                id: uuid::Uuid,
            ) -> $crate::Result<streamspace_proto::api::Share> {
                sqlx::query_as::<_, $crate::rows::ShareRow>($crate::shares::sql::SHARE_BY_ID)
                    .bind($crate::rows::DbUuid(id))
                    .fetch_optional(&mut *conn)
                    .await?
                    .ok_or($crate::StoreError::NotFound { what: "share link" })?
                    .try_into()
            }
        }

        #[async_trait::async_trait]
        impl $crate::Shares for $store {
            async fn create_share(
                &self,
                new: &$crate::NewShare,
                audit: &$crate::AuditEntry,
            ) -> $crate::Result<streamspace_proto::api::Share> {
                let mut tx = self.write_tx().await?;
                sqlx::query($stmts.share_insert)
                    .bind($crate::rows::DbUuid(new.id))
                    .bind($crate::rows::DbUuid(new.session_id))
                    .bind($crate::rows::DbUuid(new.created_by))
                    .bind(new.mode.as_str())
                    .bind(sqlx::types::Json(&new.users))
                    .bind(sqlx::types::Json(&new.groups))
                    .bind(new.expires_in_secs as f64)
                    .execute(&mut *tx)
                    .await?;
                let share = Self::share_by_id(&mut tx, new.id).await?;
                Self::insert_audit(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(share)
            }

            async fn get_share(
                &self,
                id: uuid::Uuid,
            ) -> $crate::Result<streamspace_proto::api::Share> {
                let mut conn = self.pool.acquire().await?;
                Self::share_by_id(&mut conn, id).await
            }

            async fn list_shares(
                &self,
                session_id: uuid::Uuid,
            ) -> $crate::Result<Vec<streamspace_proto::api::Share>> {
                let rows = sqlx::query_as::<_, $crate::rows::ShareRow>(
                    $crate::shares::sql::SHARES_OF_SESSION,
                )
                .bind($crate::rows::DbUuid(session_id))
                .fetch_all(&self.pool)
                .await?;
                $crate::rows::convert_all(rows)
            }

            async fn revoke_share(
                &self,
                id: uuid::Uuid,
                audit: &$crate::AuditEntry,
            ) -> $crate::Result<streamspace_proto::api::Share> {
                let mut tx = self.write_tx().await?;
                let done = sqlx::query($stmts.share_revoke)
                    .bind($crate::rows::DbUuid(id))
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound { what: "share link" });
                }
                let share = Self::share_by_id(&mut tx, id).await?;
                Self::insert_audit(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(share)
            }
        }
    };
}

pub(crate) use impl_shares;
