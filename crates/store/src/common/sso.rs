//! The shared [`crate::SingleSignOn`] implementation (see the parent module for why it is a
//! macro), expanded once per backend.

macro_rules! impl_single_sign_on {
    ($store:ty, $conn:ty, $stmts:expr) => {
        impl $store {
            /// The first of `name`, `name-2`, `name-3`, … no user has.
            async fn free_username(conn: &mut $conn, name: &str) -> $crate::Result<String> {
                for n in 1..=$crate::sso::MAX_USERNAME_SUFFIX {
                    let candidate = if n == 1 {
                        name.to_owned()
                    } else {
                        format!("{name}-{n}")
                    };
                    let taken: bool = sqlx::query_scalar($crate::identity::sql::USER_EXISTS)
                        .bind(&candidate)
                        .fetch_one(&mut *conn)
                        .await?;
                    if !taken {
                        return Ok(candidate);
                    }
                }
                Err($crate::StoreError::Conflict(format!(
                    "no free username like {name:?}"
                )))
            }

            /// Replaces the user's provider-managed memberships with `groups` (created if
            /// missing); local memberships stay, also of the same groups.
            async fn set_oidc_groups(
                conn: &mut $conn,
                user: uuid::Uuid,
                groups: &[String],
            ) -> $crate::Result<()> {
                sqlx::query($crate::sso::sql::MEMBERS_CLEAR)
                    .bind($crate::rows::DbUuid(user))
                    .execute(&mut *conn)
                    .await?;
                for group in groups {
                    sqlx::query($crate::sso::sql::GROUP_ENSURE)
                        .bind($crate::rows::DbUuid(uuid::Uuid::now_v7()))
                        .bind(group)
                        .bind("managed by a single sign-on provider")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query($crate::sso::sql::MEMBER_ADD)
                        .bind(group)
                        .bind($crate::rows::DbUuid(user))
                        .execute(&mut *conn)
                        .await?;
                }
                Ok(())
            }

            /// Updates a known, enabled user from what the provider said; keeps the admin role
            /// of the last enabled admin.
            async fn update_oidc_user(
                conn: &mut $conn,
                record: &$crate::UserRecord,
                s: &$crate::OidcSignIn,
            ) -> $crate::Result<()> {
                let mut role = s.role;
                if record.user.role == streamspace_proto::api::Role::Admin
                    && role != record.user.role
                {
                    let others: i64 = sqlx::query_scalar($crate::sso::sql::OTHER_ADMINS)
                        .bind($crate::rows::DbUuid(record.user.id))
                        .fetch_one(&mut *conn)
                        .await?;
                    if others == 0 {
                        role = record.user.role;
                    }
                }
                sqlx::query($crate::sso::sql::USER_UPDATE)
                    .bind($crate::rows::DbUuid(record.user.id))
                    .bind(&s.display_name)
                    .bind(&s.email)
                    .bind(role.as_str())
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl $crate::SingleSignOn for $store {
            async fn start_oidc_flow(
                &self,
                flow: &$crate::NewOidcFlow,
                purge_after_secs: f64,
            ) -> $crate::Result<()> {
                sqlx::query($stmts.oidc_flow_purge)
                    .bind(purge_after_secs)
                    .execute(&self.pool)
                    .await?;
                sqlx::query($crate::sso::sql::FLOW_INSERT)
                    .bind(&flow.state)
                    .bind(&flow.provider)
                    .bind(&flow.nonce)
                    .bind(&flow.pkce_verifier)
                    .bind(&flow.return_to)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| {
                        $crate::sql::conflict_on_unique(e, || "that sign-in state is in use".into())
                    })?;
                Ok(())
            }

            async fn take_oidc_flow(
                &self,
                state: &str,
                max_age_secs: f64,
            ) -> $crate::Result<Option<$crate::OidcFlow>> {
                let row: Option<(String, String, String, String, String, bool)> =
                    sqlx::query_as($stmts.oidc_flow_take)
                        .bind(state)
                        .bind(max_age_secs)
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(row.map(
                    |(state, provider, nonce, pkce_verifier, return_to, expired)| {
                        $crate::OidcFlow {
                            flow: $crate::NewOidcFlow {
                                state,
                                provider,
                                nonce,
                                pkce_verifier,
                                return_to,
                            },
                            expired,
                        }
                    },
                ))
            }

            async fn oidc_sign_in(
                &self,
                s: &$crate::OidcSignIn,
                audit: &$crate::AuditEntry,
            ) -> $crate::Result<$crate::UserRecord> {
                let mut tx = self.write_tx().await?;
                let known: Option<$crate::rows::DbUuid> = sqlx::query_scalar($stmts.oidc_user_lock)
                    .bind(&s.issuer)
                    .bind(&s.subject)
                    .fetch_optional(&mut *tx)
                    .await?;
                let created = known.is_none();
                let id = match known {
                    Some(id) => {
                        let row = sqlx::query_as::<_, $crate::rows::UserRow>(
                            $crate::identity::sql::USER_BY_ID,
                        )
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await?;
                        let record = Self::user_record(&mut tx, row).await?;
                        if record.user.disabled {
                            return Ok(record);
                        }
                        Self::update_oidc_user(&mut tx, &record, s).await?;
                        id.0
                    }
                    None => {
                        let id = uuid::Uuid::now_v7();
                        let username = Self::free_username(&mut tx, &s.username).await?;
                        sqlx::query($crate::sso::sql::USER_INSERT)
                            .bind($crate::rows::DbUuid(id))
                            .bind(&username)
                            .bind(&s.display_name)
                            .bind(&s.email)
                            .bind(s.role.as_str())
                            .bind(&s.issuer)
                            .bind(&s.subject)
                            .execute(&mut *tx)
                            .await
                            .map_err(|e| {
                                $crate::sql::conflict_on_unique(e, || {
                                    "this provider's user signed in twice at once; try again".into()
                                })
                            })?;
                        id
                    }
                };
                Self::set_oidc_groups(&mut tx, id, &s.groups).await?;
                sqlx::query($stmts.user_login)
                    .bind($crate::rows::DbUuid(id))
                    .execute(&mut *tx)
                    .await?;
                let row =
                    sqlx::query_as::<_, $crate::rows::UserRow>($crate::identity::sql::USER_BY_ID)
                        .bind($crate::rows::DbUuid(id))
                        .fetch_optional(&mut *tx)
                        .await?;
                let record = Self::user_record(&mut tx, row).await?;
                let mut detail = audit.detail.clone();
                if let Some(fields) = detail.as_object_mut() {
                    fields.insert("created".into(), created.into());
                }
                sqlx::query($crate::sql::AUDIT_INSERT)
                    .bind(format!("user:{}", record.user.username))
                    .bind(&audit.action)
                    .bind(&record.user.username)
                    .bind(sqlx::types::Json(&detail))
                    .bind(Some($crate::rows::DbUuid(id)))
                    .bind(&audit.client_addr)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(record)
            }
        }
    };
}

pub(crate) use impl_single_sign_on;
