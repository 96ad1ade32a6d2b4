//! The audit log is written in the same transaction as the change it records, on both
//! backends: a change whose entry cannot be written is rolled back, and the entries a change
//! writes carry what only its transaction knows.

use anyhow::{Context, Result, ensure};
use serde_json::json;
use streamspace_proto::api::{CreateTemplate, Role, SetQuota};
use streamspace_store::{
    AuditEntry, AuditQuery, NewApiKey, NewGroup, NewUser, Store, StoreError, UserChange,
};
use uuid::Uuid;

use super::support::{Db, audit, new_session, register};

/// Makes every insert into `audit_log` fail, as a full disk or a broken table would.
async fn refuse_audit(db: &Db) -> Result<()> {
    if db.is_sqlite() {
        db.exec(
            "CREATE TRIGGER audit_refused BEFORE INSERT ON audit_log \
             BEGIN SELECT RAISE(ABORT, 'audit refused'); END",
        )
        .await
    } else {
        db.exec(
            "CREATE FUNCTION audit_refused() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'audit refused'; END $$",
        )
        .await?;
        db.exec(
            "CREATE TRIGGER audit_refused BEFORE INSERT ON audit_log \
             FOR EACH ROW EXECUTE FUNCTION audit_refused()",
        )
        .await
    }
}

async fn allow_audit(db: &Db) -> Result<()> {
    if db.is_sqlite() {
        db.exec("DROP TRIGGER audit_refused").await
    } else {
        db.exec("DROP TRIGGER audit_refused ON audit_log").await
    }
}

fn failed<T: std::fmt::Debug>(what: &str, result: Result<T, StoreError>) -> Result<()> {
    ensure!(
        matches!(result, Err(StoreError::Database(_))),
        "{what} must fail when its audit entry cannot be written: {result:?}"
    );
    Ok(())
}

fn template(name: &str) -> CreateTemplate {
    CreateTemplate {
        name: name.into(),
        command: vec!["xterm".into()],
        ..CreateTemplate::default()
    }
}

fn new_user(username: &str) -> NewUser {
    NewUser {
        id: Uuid::now_v7(),
        username: username.into(),
        display_name: String::new(),
        email: None,
        role: Role::User,
        password_hash: None,
    }
}

fn entry(action: &str) -> AuditEntry {
    AuditEntry {
        actor: "user:admin".into(),
        actor_id: Some(streamspace_store::BOOTSTRAP_ADMIN_ID),
        client_addr: Some("192.0.2.7".into()),
        action: action.into(),
        target: "t".into(),
        detail: json!({ "kept": true }),
    }
}

async fn entries(
    store: &dyn Store,
    action: &str,
) -> Result<Vec<streamspace_proto::api::AuditRecord>> {
    Ok(store
        .list_audit(&AuditQuery {
            action: Some(action.into()),
            limit: 100,
            ..AuditQuery::default()
        })
        .await?)
}

pub async fn changes_roll_back_when_their_audit_entry_fails(db: &Db) -> Result<()> {
    let store = db.store().await?;
    register(&*store, "a1", 10).await?;
    store.create_template(&template("xterm"), &audit()).await?;
    store.create_user(&new_user("bob"), &audit()).await?;
    store
        .create_group(
            &NewGroup {
                id: Uuid::now_v7(),
                name: "staff".into(),
                description: String::new(),
            },
            &audit(),
        )
        .await?;
    refuse_audit(db).await?;

    failed(
        "create_template",
        store.create_template(&template("firefox"), &audit()).await,
    )?;
    ensure!(matches!(
        store.get_template("firefox").await,
        Err(StoreError::NotFound { .. })
    ));
    failed(
        "delete_template",
        store.delete_template("xterm", &audit()).await,
    )?;
    store.get_template("xterm").await.context("kept")?;
    let describe = streamspace_proto::api::UpdateTemplate {
        description: Some(Some("changed".into())),
        ..Default::default()
    };
    let accept = |_: &CreateTemplate| Ok(());
    failed(
        "update_template",
        store
            .update_template("xterm", &describe, &accept, &audit())
            .await,
    )?;
    ensure!(store.get_template("xterm").await?.description.is_empty());

    failed(
        "create_user",
        store.create_user(&new_user("carol"), &audit()).await,
    )?;
    ensure!(matches!(
        store.get_user("carol").await,
        Err(StoreError::NotFound { .. })
    ));
    let disable = UserChange {
        disabled: Some(true),
        ..UserChange::default()
    };
    failed(
        "update_user",
        store.update_user("bob", &disable, &audit()).await,
    )?;
    ensure!(
        !store.get_user("bob").await?.user.disabled,
        "bob stays enabled"
    );
    failed("delete_user", store.delete_user("bob", &audit()).await)?;
    store.get_user("bob").await.context("bob is kept")?;

    failed(
        "add_group_member",
        store.add_group_member("staff", "bob", &audit()).await,
    )?;
    ensure!(store.get_group("staff").await?.members.is_empty());
    failed("delete_group", store.delete_group("staff", &audit()).await)?;
    store.get_group("staff").await.context("staff is kept")?;
    let limit = SetQuota {
        max_sessions: Some(Some(1)),
        ..SetQuota::default()
    };
    failed(
        "set_user_quota",
        store.set_user_quota("bob", &limit, &audit()).await,
    )?;
    ensure!(store.user_quota("bob").await?.max_sessions.is_none());

    failed(
        "create_session",
        store.create_session(&new_session("admin"), &audit()).await,
    )?;
    ensure!(
        store
            .list_sessions(&streamspace_store::SessionQuery::default())
            .await?
            .is_empty()
    );
    let key = NewApiKey {
        id: Uuid::now_v7(),
        user_id: Some(streamspace_store::BOOTSTRAP_ADMIN_ID),
        prefix: "ssp_x".into(),
        key_hash: "h-refused".into(),
        ..NewApiKey::default()
    };
    failed(
        "create_api_key",
        store.create_api_key(key.clone(), &audit()).await,
    )?;
    ensure!(store.find_api_key("h-refused").await?.is_none());
    failed("delete_agent", store.delete_agent("a1", &audit()).await)?;
    store.get_agent("a1").await.context("a1 is kept")?;
    failed("an event", store.audit_event(&audit()).await)?;

    // With the audit log writable again, the same changes go through, each with its entry.
    allow_audit(db).await?;
    store
        .create_template(&template("firefox"), &audit())
        .await?;
    let created = store.create_api_key(key, &audit()).await?;
    store.revoke_api_key(created.id, &audit()).await?;
    let logged = entries(&*store, "test.change").await?;
    ensure!(
        logged.len() == 6,
        "three setup changes and three after: {logged:?}"
    );
    Ok(())
}

pub async fn audit_entries_carry_what_the_transaction_knows(db: &Db) -> Result<()> {
    let store = db.store().await?;
    register(&*store, "a1", 10).await?;
    let (session, _) = store
        .create_session(&new_session("admin"), &entry("session.create"))
        .await?;
    let created = entries(&*store, "session.create").await?;
    let first = created.first().context("a session.create entry")?;
    ensure!(
        first.detail == json!({ "kept": true, "agent_id": "a1" })
            && first.actor == "user:admin"
            && first.actor_id == Some(streamspace_store::BOOTSTRAP_ADMIN_ID)
            && first.client_addr.as_deref() == Some("192.0.2.7")
            && first.target == "t",
        "the chosen agent is added to the entry: {first:?} (session {})",
        session.id
    );

    let bob = store.create_user(&new_user("bob"), &audit()).await?;
    store.clear_totp(bob.id, &entry("user.totp_reset")).await?;
    let reset = entries(&*store, "user.totp_reset").await?;
    ensure!(
        reset.first().map(|e| &e.detail) == Some(&json!({ "kept": true, "was_enabled": false })),
        "{reset:?}"
    );

    store
        .start_totp(bob.id, "JBSWY3DPEHPK3PXP", &audit())
        .await?;
    let codes = ["c1".to_owned(), "c2".to_owned()];
    store.enable_totp(bob.id, 1, &codes, &audit()).await?;
    ensure!(
        !store
            .use_recovery_code(bob.id, "nope", &entry("auth.recovery_code_use"))
            .await?,
        "an unknown code is refused"
    );
    ensure!(entries(&*store, "auth.recovery_code_use").await?.is_empty());
    ensure!(
        store
            .use_recovery_code(bob.id, "c1", &entry("auth.recovery_code_use"))
            .await?
    );
    let used = entries(&*store, "auth.recovery_code_use").await?;
    ensure!(
        used.len() == 1 && used[0].detail == json!({ "kept": true, "left": 1 }),
        "{used:?}"
    );
    Ok(())
}
