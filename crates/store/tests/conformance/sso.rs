//! Single sign-on (migration 0006), on both backends: flows taken once and refused when old;
//! provider users keyed by (issuer, subject), made unique by name, never the local admin;
//! provider groups replaced at each sign-in while local ones stay; disabled users unchanged;
//! and 0006 reverted and applied again.

use anyhow::{Result, ensure};
use serde_json::json;
use streamspace_proto::api::Role;
use streamspace_store::{
    AuditEntry, AuditQuery, NewOidcFlow, OidcSignIn, Store, UserRecord, migrate,
};

use super::support::{Db, audit};

fn flow(state: &str) -> NewOidcFlow {
    NewOidcFlow {
        state: state.into(),
        provider: "corp".into(),
        nonce: "n".into(),
        pkce_verifier: "v".into(),
        return_to: "/sessions".into(),
    }
}

fn sign_in(subject: &str, username: &str, groups: &[&str]) -> OidcSignIn {
    OidcSignIn {
        issuer: "https://idp.example.test".into(),
        subject: subject.into(),
        username: username.into(),
        display_name: format!("{username} from the provider"),
        email: Some(format!("{username}@idp.example.test")),
        role: Role::User,
        groups: groups.iter().map(|g| g.to_string()).collect(),
    }
}

/// Signs in with an audit entry for the store to complete and write.
async fn signed(store: &dyn Store, s: &OidcSignIn) -> Result<UserRecord> {
    let audit = AuditEntry {
        actor: String::new(),
        actor_id: None,
        client_addr: Some("192.0.2.1".into()),
        action: "auth.oidc_login".into(),
        target: String::new(),
        detail: json!({ "provider": "corp" }),
    };
    Ok(store.oidc_sign_in(s, &audit).await?)
}

async fn sign_in_audit(store: &dyn Store) -> Result<Vec<streamspace_proto::api::AuditRecord>> {
    let query = AuditQuery {
        action: Some("auth.oidc_login".into()),
        limit: 100,
        ..AuditQuery::default()
    };
    Ok(store.list_audit(&query).await?)
}

pub async fn oidc_flows_are_taken_once(db: &Db) -> Result<()> {
    let store = db.store().await?;
    store.start_oidc_flow(&flow("s1"), 3600.0).await?;
    let again = store.start_oidc_flow(&flow("s1"), 3600.0).await;
    ensure!(again.is_err(), "a state is stored once: {again:?}");
    let taken = store.take_oidc_flow("s1", 600.0).await?;
    ensure!(
        taken
            .as_ref()
            .is_some_and(|t| t.flow == flow("s1") && !t.expired),
        "{taken:?}"
    );
    ensure!(
        store.take_oidc_flow("s1", 600.0).await?.is_none(),
        "a flow is taken once"
    );
    ensure!(store.take_oidc_flow("nope", 600.0).await?.is_none());
    // Age zero: anything started up to now is too old, whatever the clock's resolution.
    store.start_oidc_flow(&flow("s2"), 3600.0).await?;
    let old = store.take_oidc_flow("s2", 0.0).await?;
    ensure!(
        old.is_some_and(|t| t.expired),
        "a flow older than allowed is expired"
    );
    store.start_oidc_flow(&flow("s3"), 3600.0).await?;
    store.start_oidc_flow(&flow("s4"), 0.0).await?;
    ensure!(
        store.take_oidc_flow("s3", 600.0).await?.is_none(),
        "starting a flow purges old ones"
    );
    ensure!(store.take_oidc_flow("s4", 600.0).await?.is_some());
    Ok(())
}

pub async fn oidc_users_are_keyed_by_subject(db: &Db) -> Result<()> {
    let store = db.store().await?;
    let admin_before = store.get_user("admin").await?;
    let mut provider_admin = sign_in("sub-admin", "admin", &[]);
    provider_admin.role = Role::Admin;
    let first = signed(&*store, &provider_admin).await?;
    ensure!(
        first.user.username == "admin-2" && first.user.id != admin_before.user.id,
        "a provider's admin is a new user: {first:?}"
    );
    ensure!(first.password_hash.is_none() && first.user.last_login_at.is_some());
    let admin_after = store.get_user("admin").await?;
    ensure!(
        admin_after.user == admin_before.user,
        "the local admin is untouched: {admin_after:?}"
    );
    let again = signed(&*store, &provider_admin).await?;
    ensure!(
        again.user.id == first.user.id,
        "the same subject, the same user"
    );
    let other = signed(&*store, &sign_in("sub-2", "admin", &[])).await?;
    ensure!(other.user.username == "admin-3", "{other:?}");
    let mut elsewhere = sign_in("sub-admin", "admin", &[]);
    elsewhere.issuer = "https://other.example.test".into();
    let elsewhere = signed(&*store, &elsewhere).await?;
    ensure!(
        elsewhere.user.id != first.user.id,
        "a subject belongs to its issuer"
    );
    let audit = sign_in_audit(&*store).await?;
    ensure!(audit.len() == 4, "every sign-in is audited: {audit:?}");
    let oldest = audit.last().expect("four entries");
    ensure!(
        oldest.actor == "user:admin-2"
            && oldest.target == "admin-2"
            && oldest.actor_id == Some(first.user.id)
            && oldest.client_addr.as_deref() == Some("192.0.2.1")
            && oldest.detail == json!({ "provider": "corp", "created": true }),
        "the entry names the new user: {oldest:?}"
    );
    ensure!(audit[2].detail["created"] == json!(false), "{:?}", audit[2]);
    Ok(())
}

pub async fn oidc_groups_are_replaced_and_local_ones_kept(db: &Db) -> Result<()> {
    let store = db.store().await?;
    let alice = signed(&*store, &sign_in("sub-alice", "alice", &["staff", "devs"])).await?;
    ensure!(
        alice.user.groups == ["devs", "staff"],
        "provider groups are created and joined: {:?}",
        alice.user.groups
    );
    store
        .create_group(
            &streamspace_store::NewGroup {
                id: uuid::Uuid::now_v7(),
                name: "local".into(),
                description: String::new(),
            },
            &audit(),
        )
        .await?;
    store.add_group_member("local", "alice", &audit()).await?;
    store.add_group_member("devs", "alice", &audit()).await?;
    let mut changed = sign_in("sub-alice", "alice", &["staff", "ops"]);
    changed.role = Role::Operator;
    changed.email = None;
    let alice = signed(&*store, &changed).await?;
    ensure!(
        alice.user.groups == ["devs", "local", "ops", "staff"],
        "provider groups replaced, local memberships kept: {:?}",
        alice.user.groups
    );
    ensure!(alice.user.role == Role::Operator && alice.user.email.is_none());
    let alice = signed(&*store, &sign_in("sub-alice", "alice", &[])).await?;
    ensure!(
        alice.user.groups == ["devs", "local"],
        "{:?}",
        alice.user.groups
    );
    store
        .update_user(
            "alice",
            &streamspace_store::UserChange {
                disabled: Some(true),
                ..Default::default()
            },
            &audit(),
        )
        .await?;
    let disabled = signed(&*store, &sign_in("sub-alice", "alice", &["staff"])).await?;
    ensure!(
        disabled.user.disabled && disabled.user.groups == ["devs", "local"],
        "a disabled user is reported and left unchanged: {disabled:?}"
    );
    ensure!(
        sign_in_audit(&*store).await?.len() == 3,
        "a disabled user's attempt is no sign-in"
    );
    Ok(())
}

pub async fn down_0006_drops_the_oidc_flows(db: &Db) -> Result<()> {
    let applied = migrate::up(&db.url).await?;
    let after_fifth = applied.iter().filter(|v| **v > 5).count();
    migrate::down(&db.url, u32::try_from(after_fifth)?).await?;
    let schema = db.schema().await?.join("\n");
    ensure!(
        !schema.contains("oidc_flows"),
        "0006's table survived its down migration: {schema}"
    );
    migrate::up(&db.url).await?;
    let schema = db.schema().await?.join("\n");
    ensure!(
        schema.contains("oidc_flows"),
        "0006 did not come back: {schema}"
    );
    let store = db.open().await?;
    store.start_oidc_flow(&flow("after"), 3600.0).await?;
    Ok(())
}
