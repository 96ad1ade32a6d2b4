//! First-start setup: the master secret, the admin token, the default templates, and the
//! bootstrap admin's password (set by `streamspace up` so the admin can sign in to the web UI).
//!
//! Safe to run on every start and on several replicas at once: each step only creates what is
//! missing. What it creates is audited as done by `system`.

use std::collections::BTreeMap;

use serde_json::json;
use streamspace_proto::api::CreateTemplate;
use streamspace_store::{
    ApiKeyKind, AuditEntry, BOOTSTRAP_ADMIN_ID, Store, StoreError, UserChange,
};

use crate::error::ServerError;
use crate::keyring::{CredentialHashing, Keyring, Keys, SecretsConfig};
use crate::keys::{self, ADMIN_PREFIX};
use crate::signin::{check_new_password, hash_password};

/// Templates seeded into an empty templates table.
fn default_templates() -> Vec<CreateTemplate> {
    vec![CreateTemplate {
        name: "xterm".into(),
        description: "A terminal (xterm)".into(),
        command: vec!["xterm".into()],
        env: BTreeMap::new(),
        ..CreateTemplate::default()
    }]
}

/// See the crate-level [`crate::bootstrap_saving`].
pub(crate) async fn run(
    store: &dyn Store,
    secrets: &SecretsConfig,
    admin_token: Option<&str>,
    save_generated: impl FnOnce(&str) -> std::io::Result<()> + Send,
) -> Result<Option<String>, ServerError> {
    let keys = Keys::load(store, secrets).await?;
    let generated = ensure_admin(store, &keys.credentials, admin_token, save_generated).await?;
    seed_templates(store).await?;
    Ok(generated)
}

async fn ensure_admin(
    store: &dyn Store,
    keyring: &Keyring<CredentialHashing>,
    admin_token: Option<&str>,
    save_generated: impl FnOnce(&str) -> std::io::Result<()> + Send,
) -> Result<Option<String>, ServerError> {
    if let Some(token) = admin_token {
        if token.is_empty() || token.chars().any(char::is_whitespace) {
            return Err(ServerError::InvalidInput(
                "the admin token must be non-empty and contain no whitespace".into(),
            ));
        }
        if token.len() < 16 {
            tracing::warn!("the configured admin token is shorter than 16 characters");
        }
        if keys::is_revoked(store, keyring, token).await? {
            return Err(ServerError::InvalidConfig(
                "the configured admin token (STREAMSPACE_ADMIN_TOKEN) was revoked; \
                 configure a new one, or none to keep using the tokens that exist"
                    .into(),
            ));
        }
        if keys::find(store, keyring, token).await?.is_none() {
            keys::store_key(
                store,
                keyring,
                ApiKeyKind::Admin,
                None,
                token,
                admin_token_entry,
            )
            .await?;
            tracing::info!("stored the configured admin token");
        }
        return Ok(None);
    }
    if store.has_admin_key().await? {
        return Ok(None);
    }
    let token = keys::generate_secret(ADMIN_PREFIX);
    // Saved before it is stored, so that no admin token ever exists that nobody can read.
    save_generated(&token).map_err(ServerError::SaveAdminToken)?;
    keys::store_key(
        store,
        keyring,
        ApiKeyKind::Admin,
        None,
        &token,
        admin_token_entry,
    )
    .await?;
    tracing::info!("generated the first admin token");
    Ok(Some(token))
}

/// The audit entry of storing the bootstrap admin token with id `id`.
fn admin_token_entry(id: uuid::Uuid) -> AuditEntry {
    AuditEntry::system(
        "token.create",
        id.to_string(),
        json!({ "name": "bootstrap", "user_id": BOOTSTRAP_ADMIN_ID, "expires_at": null }),
    )
}

async fn seed_templates(store: &dyn Store) -> Result<(), ServerError> {
    if !store.list_templates().await?.is_empty() {
        return Ok(());
    }
    for template in default_templates() {
        let entry = AuditEntry::system(
            "template.create",
            template.name.clone(),
            json!({ "command": template.command, "allowed_groups": template.allowed_groups }),
        );
        match store.create_template(&template, &entry).await {
            // Another replica seeded it at the same moment.
            Ok(_) | Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    tracing::info!("seeded the default templates");
    Ok(())
}

/// See the crate-level [`crate::set_bootstrap_admin_password`].
pub(crate) async fn set_admin_password(
    store: &dyn Store,
    password: &str,
) -> Result<bool, ServerError> {
    let admin = store.get_user_by_id(BOOTSTRAP_ADMIN_ID).await?;
    if admin.password_hash.is_some() {
        return Ok(false);
    }
    check_new_password("the admin password", password)
        .map_err(|e| ServerError::InvalidInput(e.message))?;
    let hash = hash_password(password.to_owned())
        .await
        .map_err(|_| ServerError::PasswordHash)?;
    let change = UserChange {
        password_hash: Some(hash),
        ..UserChange::default()
    };
    let entry = AuditEntry::system(
        "user.update",
        admin.user.username.clone(),
        json!({ "role": null, "disabled": null, "password_changed": true }),
    );
    store
        .update_user(&admin.user.username, &change, &entry)
        .await?;
    tracing::info!("set the bootstrap admin's password");
    Ok(true)
}
