//! Users, groups and personal tokens (migration 0004), on both backends: lookups, the
//! last-admin guard (also under concurrent demotions), memberships, token expiry, and what the
//! migration does to rows an older version wrote.

use anyhow::{Context, Result, ensure};
use streamspace_proto::api::{Role, User};
use streamspace_store::{
    ApiKeyKind, BOOTSTRAP_ADMIN_ID, NewApiKey, NewGroup, NewUser, Store, StoreError, UserChange,
    migrate,
};
use uuid::Uuid;

use super::support::{Db, audit};

/// Creates a user with a password hash placeholder.
pub async fn user(store: &dyn Store, username: &str, role: Role) -> Result<User> {
    Ok(store
        .create_user(
            &NewUser {
                id: Uuid::now_v7(),
                username: username.into(),
                display_name: format!("{username} (test)"),
                email: Some(format!("{username}@example.test")),
                role,
                password_hash: Some("$argon2id$placeholder".into()),
            },
            &audit(),
        )
        .await?)
}

pub async fn users_crud_and_lookup(db: &Db) -> Result<()> {
    let store = db.store().await?;
    let admin = store.get_user("admin").await?;
    ensure!(
        admin.user.id == BOOTSTRAP_ADMIN_ID && admin.user.role == Role::Admin,
        "the bootstrap admin exists after migrating: {admin:?}"
    );
    let alice = user(&*store, "alice", Role::User).await?;
    ensure!(alice.has_password && !alice.disabled && alice.groups.is_empty());
    let dup = user(&*store, "alice", Role::Operator).await;
    ensure!(
        matches!(
            dup.as_ref().map_err(|e| e.downcast_ref::<StoreError>()),
            Err(Some(StoreError::Conflict(_)))
        ),
        "a taken username must conflict: {dup:?}"
    );
    let upper = user(&*store, "Bob", Role::User).await;
    ensure!(upper.is_err(), "upper-case usernames are refused");
    let by_id = store.get_user_by_id(alice.id).await?;
    ensure!(by_id.user == alice && by_id.password_hash.is_some());
    db.clock_past(alice.updated_at).await?;
    let changed = store
        .update_user(
            "alice",
            &UserChange {
                role: Some(Role::Operator),
                email: Some(None),
                display_name: Some("Alice".into()),
                ..UserChange::default()
            },
            &audit(),
        )
        .await?;
    ensure!(
        changed.role == Role::Operator
            && changed.email.is_none()
            && changed.display_name == "Alice"
            && changed.updated_at > alice.updated_at,
        "{changed:?}"
    );
    store.record_login(alice.id).await?;
    ensure!(store.get_user("alice").await?.user.last_login_at.is_some());
    let names: Vec<_> = store
        .list_users()
        .await?
        .into_iter()
        .map(|u| u.username)
        .collect();
    ensure!(names == ["admin", "alice"], "{names:?}");
    store.delete_user("alice", &audit()).await?;
    ensure!(matches!(
        store.get_user("alice").await,
        Err(StoreError::NotFound { .. })
    ));
    ensure!(matches!(
        store
            .update_user("nobody", &UserChange::default(), &audit())
            .await,
        Err(StoreError::NotFound { .. })
    ));
    Ok(())
}

pub async fn last_enabled_admin_is_kept(db: &Db) -> Result<()> {
    let store = db.store().await?;
    for change in [
        UserChange {
            disabled: Some(true),
            ..UserChange::default()
        },
        UserChange {
            role: Some(Role::Operator),
            ..UserChange::default()
        },
    ] {
        let r = store.update_user("admin", &change, &audit()).await;
        ensure!(
            matches!(r, Err(StoreError::Conflict(ref m)) if m.contains("last enabled admin")),
            "{change:?} on the only admin: {r:?}"
        );
    }
    ensure!(matches!(
        store.delete_user("admin", &audit()).await,
        Err(StoreError::Conflict(_))
    ));
    user(&*store, "root2", Role::Admin).await?;
    store
        .update_user(
            "admin",
            &UserChange {
                disabled: Some(true),
                ..UserChange::default()
            },
            &audit(),
        )
        .await?;
    let r = store.delete_user("root2", &audit()).await;
    ensure!(
        matches!(r, Err(StoreError::Conflict(_))),
        "a disabled admin does not count: {r:?}"
    );
    Ok(())
}

pub async fn concurrent_demotions_keep_one_admin(db: &Db) -> Result<()> {
    let store = db.store().await?;
    user(&*store, "root2", Role::Admin).await?;
    let demote = UserChange {
        role: Some(Role::User),
        ..UserChange::default()
    };
    let entry = audit();
    let (a, b) = tokio::join!(
        store.update_user("admin", &demote, &entry),
        store.update_user("root2", &demote, &entry)
    );
    ensure!(
        a.is_ok() != b.is_ok(),
        "exactly one of two concurrent demotions may succeed: {a:?} / {b:?}"
    );
    let admins = store
        .list_users()
        .await?
        .into_iter()
        .filter(|u| u.role == Role::Admin && !u.disabled)
        .count();
    ensure!(admins == 1, "{admins} admins left");
    Ok(())
}

pub async fn groups_and_memberships(db: &Db) -> Result<()> {
    let store = db.store().await?;
    let alice = user(&*store, "alice", Role::User).await?;
    user(&*store, "bob", Role::User).await?;
    for name in ["staff", "design"] {
        store
            .create_group(
                &NewGroup {
                    id: Uuid::now_v7(),
                    name: name.into(),
                    description: format!("the {name}"),
                },
                &audit(),
            )
            .await?;
    }
    let dup = store
        .create_group(
            &NewGroup {
                id: Uuid::now_v7(),
                name: "staff".into(),
                description: String::new(),
            },
            &audit(),
        )
        .await;
    ensure!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    store.add_group_member("staff", "alice", &audit()).await?;
    store.add_group_member("staff", "alice", &audit()).await?;
    store.add_group_member("design", "alice", &audit()).await?;
    store.add_group_member("staff", "bob", &audit()).await?;
    let missing = store.add_group_member("staff", "carol", &audit()).await;
    ensure!(
        matches!(missing, Err(StoreError::NotFound { what: "user" })),
        "{missing:?}"
    );
    let missing = store.add_group_member("nope", "bob", &audit()).await;
    ensure!(
        matches!(missing, Err(StoreError::NotFound { what: "group" })),
        "{missing:?}"
    );
    let groups = store.get_user_by_id(alice.id).await?.user.groups;
    ensure!(groups == ["design", "staff"], "{groups:?}");
    let staff = store.get_group("staff").await?;
    ensure!(staff.members == ["alice", "bob"], "{staff:?}");
    let listed = store.list_groups().await?;
    ensure!(listed.len() == 2 && listed[1].members == ["alice", "bob"]);
    let all_users = store.list_users().await?;
    let bob = all_users
        .iter()
        .find(|u| u.username == "bob")
        .context("bob")?;
    ensure!(bob.groups == ["staff"], "{bob:?}");
    let updated = store
        .update_group("staff", Some("everyone"), &audit())
        .await?;
    ensure!(updated.description == "everyone" && updated.members.len() == 2);
    store.remove_group_member("staff", "bob", &audit()).await?;
    ensure!(matches!(
        store.remove_group_member("staff", "bob", &audit()).await,
        Err(StoreError::NotFound { .. })
    ));
    store.delete_group("design", &audit()).await?;
    ensure!(store.get_user("alice").await?.user.groups == ["staff"]);
    ensure!(matches!(
        store.delete_group("design", &audit()).await,
        Err(StoreError::NotFound { .. })
    ));
    Ok(())
}

pub async fn tokens_belong_to_users_and_expire(db: &Db) -> Result<()> {
    let store = db.store().await?;
    let alice = user(&*store, "alice", Role::User).await?;
    let token = |hash: &str, user_id, expires_in_secs| NewApiKey {
        id: Uuid::now_v7(),
        kind: ApiKeyKind::User,
        user_id: Some(user_id),
        name: format!("token {hash}"),
        prefix: "sst_x".into(),
        key_hash: hash.into(),
        expires_in_secs,
        ..NewApiKey::default()
    };
    let lasting = store
        .create_api_key(token("h-lasting", alice.id, None), &audit())
        .await?;
    let short = store
        .create_api_key(token("h-short", alice.id, Some(3600.0)), &audit())
        .await?;
    ensure!(
        lasting.expires_at.is_none() && short.expires_at.is_some_and(|t| t > short.created_at),
        "{short:?}"
    );
    store
        .create_api_key(token("h-gone", alice.id, Some(0.0)), &audit())
        .await?;
    ensure!(
        store.find_api_key("h-gone").await?.is_none(),
        "an expired token must not be found"
    );
    let found = store.find_api_key("h-short").await?.context("h-short")?;
    ensure!(found.user_id == Some(alice.id) && found.kind == ApiKeyKind::User);
    ensure!(
        store
            .rehash_api_key(found.id, "h-short", "h-short-2")
            .await?,
        "a key is re-hashed from its current hash"
    );
    ensure!(
        !store
            .rehash_api_key(found.id, "h-short", "h-short-3")
            .await?,
        "a re-hash from a hash the key no longer has changes nothing"
    );
    ensure!(store.find_api_key("h-short").await?.is_none());
    let found = store
        .find_api_key("h-short-2")
        .await?
        .context("found by its new hash")?;
    ensure!(
        store
            .rehash_api_key(found.id, "h-short-2", "h-short")
            .await?
    );
    let mine = store.list_tokens(Some(alice.id)).await?;
    ensure!(
        mine.len() == 2 && mine.iter().all(|t| t.user == "alice"),
        "{mine:?}"
    );
    ensure!(
        store
            .list_tokens(Some(BOOTSTRAP_ADMIN_ID))
            .await?
            .is_empty()
    );
    store.revoke_api_key(short.id, &audit()).await?;
    ensure!(store.is_key_revoked("h-short").await?);
    ensure!(!store.is_key_revoked("h-lasting").await?);
    ensure!(store.get_api_key(short.id).await?.revoked_at.is_some());
    ensure!(store.list_tokens(None).await?.len() == 1);
    let agentless = store
        .create_api_key(
            NewApiKey {
                id: Uuid::now_v7(),
                kind: ApiKeyKind::User,
                prefix: "x".into(),
                key_hash: "h-orphan".into(),
                ..NewApiKey::default()
            },
            &audit(),
        )
        .await;
    ensure!(agentless.is_err(), "a personal token needs a user");
    store.delete_user("alice", &audit()).await?;
    ensure!(
        store.find_api_key("h-lasting").await?.is_none(),
        "a deleted user's tokens must go with them"
    );
    Ok(())
}

pub async fn migration_0004_assigns_old_rows_to_the_admin(db: &Db) -> Result<()> {
    migrate::up_to(&db.url, 3).await?;
    for statement in [
        "INSERT INTO agents (agent_id, platform) VALUES ('a1', 'process')",
        "INSERT INTO sessions (id, template, agent_id, owner) \
         VALUES ('018f0000-0000-7000-8000-000000000001', 'xterm', 'a1', 'admin')",
        "INSERT INTO api_keys (id, kind, prefix, key_hash) \
         VALUES ('018f0000-0000-7000-8000-000000000002', 'admin', 'ssa_x', 'h-old-admin')",
        "INSERT INTO api_keys (id, kind, agent_id, prefix, key_hash) \
         VALUES ('018f0000-0000-7000-8000-000000000003', 'agent', 'a1', 'ssk_x', 'h-old-agent')",
        "INSERT INTO audit_log (actor, action, target) \
         VALUES ('admin:018f0000-0000-7000-8000-000000000002', 'session.create', 'x')",
    ] {
        db.exec(statement).await?;
    }
    let applied = migrate::up(&db.url).await?;
    ensure!(applied.first() == Some(&4), "up applied {applied:?}");
    let store = db.open().await?;
    let session = store
        .get_session("018f0000-0000-7000-8000-000000000001".parse()?)
        .await?;
    ensure!(
        session.owner_id == Some(BOOTSTRAP_ADMIN_ID),
        "old sessions belong to the bootstrap admin: {session:?}"
    );
    let admin_key = store.find_api_key("h-old-admin").await?.context("admin")?;
    ensure!(
        admin_key.user_id == Some(BOOTSTRAP_ADMIN_ID) && admin_key.kind == ApiKeyKind::Admin,
        "{admin_key:?}"
    );
    let agent_key = store.find_api_key("h-old-agent").await?.context("agent")?;
    ensure!(agent_key.user_id.is_none() && agent_key.agent_id.as_deref() == Some("a1"));
    let audited = db
        .strings("SELECT CAST(actor_id AS TEXT) FROM audit_log")
        .await?;
    ensure!(
        audited == [BOOTSTRAP_ADMIN_ID.to_string()],
        "old audit rows name the admin: {audited:?}"
    );
    migrate::down(&db.url, 1).await?;
    let owners = db.strings("SELECT owner FROM sessions").await?;
    ensure!(owners == ["admin"], "{owners:?}");
    let kinds = db
        .strings("SELECT kind FROM api_keys ORDER BY kind")
        .await?;
    ensure!(
        kinds == ["admin", "agent"],
        "down keeps the old keys: {kinds:?}"
    );
    migrate::up(&db.url).await?;
    Ok(())
}
