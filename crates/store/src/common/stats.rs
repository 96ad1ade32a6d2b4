//! The shared [`crate::Stats`] implementation (see the parent module for why it is a macro),
//! expanded once per backend.

macro_rules! impl_stats {
    ($store:ty, $stmts:expr) => {
        #[async_trait::async_trait]
        impl $crate::Stats for $store {
            async fn record_sample(
                &self,
                end: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<bool> {
                let start = end
                    - chrono::Duration::seconds(i64::from(
                        streamspace_proto::api::OVERVIEW_SAMPLE_SECS,
                    ));
                let done = sqlx::query($stmts.sample_insert)
                    .bind($crate::stats::epoch(end))
                    .bind(start.format($stmts.time_format).to_string())
                    .bind(end.format($stmts.time_format).to_string())
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn samples_since(
                &self,
                since: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<Vec<streamspace_proto::api::OverviewPoint>> {
                let rows: Vec<(i64, i64, i64, i64, i64, i64, i64, i64, i64)> =
                    sqlx::query_as($crate::stats::sql::SAMPLES_SINCE)
                        .bind($crate::stats::epoch(since))
                        .fetch_all(&self.pool)
                        .await?;
                rows.into_iter()
                    .map(|r| {
                        let at = chrono::DateTime::from_timestamp(r.0, 0).ok_or_else(|| {
                            $crate::StoreError::Corrupt(format!("sample time {}", r.0))
                        })?;
                        let c = $crate::stats::count;
                        Ok(streamspace_proto::api::OverviewPoint {
                            at,
                            sessions_pending: c(r.1),
                            sessions_starting: c(r.2),
                            sessions_running: c(r.3),
                            sessions_hibernated: c(r.4),
                            sessions_failed: c(r.5),
                            agents_online: c(r.6),
                            commands_created: c(r.7),
                            commands_failed: c(r.8),
                        })
                    })
                    .collect()
            }

            async fn purge_samples(
                &self,
                before: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<u64> {
                let done = sqlx::query($crate::stats::sql::SAMPLES_PURGE)
                    .bind($crate::stats::epoch(before))
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected())
            }

            async fn live_counts(&self) -> $crate::Result<$crate::LiveCounts> {
                let mut counts = $crate::LiveCounts::default();
                for state in streamspace_proto::api::SessionState::ALL {
                    counts.sessions.insert(state.as_str().to_owned(), 0);
                }
                for status in ["pending", "sent", "acknowledged"] {
                    counts.commands_in_flight.insert(status.to_owned(), 0);
                }
                let sessions: Vec<(String, i64)> =
                    sqlx::query_as($crate::stats::sql::SESSIONS_BY_STATE)
                        .fetch_all(&self.pool)
                        .await?;
                for (state, n) in sessions {
                    counts.sessions.insert(state, $crate::stats::count(n));
                }
                let commands: Vec<(String, i64)> =
                    sqlx::query_as($crate::stats::sql::COMMANDS_IN_FLIGHT)
                        .fetch_all(&self.pool)
                        .await?;
                for (status, n) in commands {
                    counts
                        .commands_in_flight
                        .insert(status, $crate::stats::count(n));
                }
                Ok(counts)
            }
        }
    };
}

pub(crate) use impl_stats;
