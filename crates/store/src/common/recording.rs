//! The shared [`crate::Recordings`] implementation (see the parent module for why it is a
//! macro), expanded once per backend.

macro_rules! impl_recordings {
    ($store:ty, $conn:ty, $stmts:expr) => {
        #[async_trait::async_trait]
        impl $crate::recording::Recordings for $store {
            async fn create_recording(
                &self,
                new: &$crate::recording::NewRecording,
                audit: &$crate::AuditEntry,
            ) -> $crate::Result<streamspace_proto::api::Recording> {
                let mut tx = self.write_tx().await?;
                let row: $crate::rows::RecordingRow =
                    sqlx::query_as($crate::recording::sql::INSERT)
                        .bind($crate::rows::DbUuid(new.id))
                        .bind($crate::rows::DbUuid(new.session_id))
                        .bind(new.owner_id.map($crate::rows::DbUuid))
                        .bind($crate::rows::DbUuid(new.viewer_id))
                        .bind(&new.viewer)
                        .bind(&new.storage_key)
                        .fetch_one(&mut *tx)
                        .await?;
                Self::insert_audit(&mut tx, audit).await?;
                tx.commit().await?;
                Ok($crate::recording::StoredRecording::try_from(row)?.recording)
            }

            async fn finish_recording(
                &self,
                id: uuid::Uuid,
                bytes: u64,
                complete: bool,
            ) -> $crate::Result<()> {
                let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
                let done = sqlx::query($stmts.recording_finish)
                    .bind($crate::rows::DbUuid(id))
                    .bind(bytes)
                    .bind(complete)
                    .execute(&self.pool)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound { what: "recording" });
                }
                Ok(())
            }

            async fn get_recording(
                &self,
                id: uuid::Uuid,
            ) -> $crate::Result<$crate::recording::StoredRecording> {
                sqlx::query_as::<_, $crate::rows::RecordingRow>($crate::recording::sql::GET)
                    .bind($crate::rows::DbUuid(id))
                    .fetch_optional(&self.pool)
                    .await?
                    .ok_or($crate::StoreError::NotFound { what: "recording" })?
                    .try_into()
            }

            async fn list_recordings(
                &self,
                session_id: uuid::Uuid,
                before: Option<uuid::Uuid>,
                limit: i64,
            ) -> $crate::Result<Vec<streamspace_proto::api::Recording>> {
                let rows =
                    sqlx::query_as::<_, $crate::rows::RecordingRow>($crate::recording::sql::LIST)
                        .bind($crate::rows::DbUuid(session_id))
                        .bind(before.map($crate::rows::DbUuid))
                        .bind(limit.max(0))
                        .fetch_all(&self.pool)
                        .await?;
                rows.into_iter()
                    .map(|r| $crate::recording::StoredRecording::try_from(r).map(|s| s.recording))
                    .collect()
            }

            async fn delete_recording(
                &self,
                id: uuid::Uuid,
                audit: &$crate::AuditEntry,
            ) -> $crate::Result<$crate::recording::StoredRecording> {
                let mut tx = self.write_tx().await?;
                let row: $crate::rows::RecordingRow =
                    sqlx::query_as($crate::recording::sql::DELETE)
                        .bind($crate::rows::DbUuid(id))
                        .fetch_optional(&mut *tx)
                        .await?
                        .ok_or($crate::StoreError::NotFound { what: "recording" })?;
                Self::insert_audit(&mut tx, audit).await?;
                tx.commit().await?;
                row.try_into()
            }

            async fn expired_recordings(
                &self,
                older_than_secs: f64,
                limit: i64,
            ) -> $crate::Result<Vec<$crate::recording::StoredRecording>> {
                let rows =
                    sqlx::query_as::<_, $crate::rows::RecordingRow>($stmts.recording_expired)
                        .bind(older_than_secs)
                        .bind(limit.max(0))
                        .fetch_all(&self.pool)
                        .await?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn forget_recording(&self, id: uuid::Uuid) -> $crate::Result<bool> {
                let done = sqlx::query($crate::recording::sql::FORGET)
                    .bind($crate::rows::DbUuid(id))
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }
        }
    };
}

pub(crate) use impl_recordings;
