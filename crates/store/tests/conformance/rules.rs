//! Session rules (migration 0008) on both backends: stored on templates and groups, copied from
//! the template into each session when it is created (later template changes apply to new
//! sessions only), read for a user's groups, and a clean down migration.

use anyhow::{Result, ensure};
use streamspace_proto::api::{
    ClipboardPolicy, CreateTemplate, RecordingPolicy, Role, SessionRules, TransferPolicy,
    UpdateTemplate,
};
use streamspace_store::{NewGroup, StoreError, migrate};
use uuid::Uuid;

use super::identity::user;
use super::support::{Db, audit, new_session_for, register};

pub async fn rules_are_kept_on_templates_groups_and_sessions(db: &Db) -> Result<()> {
    let store = db.store().await?;
    register(&*store, "a1", 10).await?;
    let strict = SessionRules {
        clipboard: Some(ClipboardPolicy::ToSession),
        clipboard_max_bytes: Some(4096),
        file_transfer: Some(TransferPolicy::None),
        recording: Some(RecordingPolicy::Always),
        ..SessionRules::default()
    };
    let created = store
        .create_template(
            &CreateTemplate {
                name: "xterm".into(),
                command: vec!["xterm".into()],
                rules: strict,
                ..CreateTemplate::default()
            },
            &audit(),
        )
        .await?;
    ensure!(created.rules == strict, "{created:?}");
    ensure!(store.get_template("xterm").await?.rules == strict);

    let alice = user(&*store, "alice", Role::User).await?;
    let (first, _) = store
        .create_session(&new_session_for("alice", alice.id), &audit())
        .await?;
    ensure!(store.session_rules(first.id).await? == strict);

    // A change to the template applies to sessions created after it, not to the first one.
    let loose = SessionRules {
        clipboard: Some(ClipboardPolicy::Both),
        ..SessionRules::default()
    };
    store
        .update_template(
            "xterm",
            &UpdateTemplate {
                rules: Some(Some(loose)),
                ..UpdateTemplate::default()
            },
            &|_: &CreateTemplate| Ok(()),
            &audit(),
        )
        .await?;
    let (second, _) = store
        .create_session(&new_session_for("alice", alice.id), &audit())
        .await?;
    ensure!(store.session_rules(first.id).await? == strict);
    ensure!(store.session_rules(second.id).await? == loose);
    let missing = store.session_rules(Uuid::now_v7()).await;
    ensure!(
        matches!(missing, Err(StoreError::NotFound { what: "session" })),
        "{missing:?}"
    );

    // Groups: empty until set, replaced whole, read per member.
    for name in ["staff", "contractors"] {
        store
            .create_group(
                &NewGroup {
                    id: Uuid::now_v7(),
                    name: name.into(),
                    description: String::new(),
                },
                &audit(),
            )
            .await?;
    }
    ensure!(store.group_rules("staff").await?.is_empty());
    store
        .set_group_rules("contractors", &strict, &audit())
        .await?;
    ensure!(store.group_rules("contractors").await? == strict);
    ensure!(store.user_group_rules(alice.id).await?.is_empty());
    store.add_group_member("staff", "alice", &audit()).await?;
    store
        .add_group_member("contractors", "alice", &audit())
        .await?;
    let mut of_alice = store.user_group_rules(alice.id).await?;
    of_alice.sort_by_key(|r| r.is_empty());
    ensure!(
        of_alice == [strict, SessionRules::default()],
        "{of_alice:?}"
    );
    let missing = store.set_group_rules("nope", &strict, &audit()).await;
    ensure!(
        matches!(missing, Err(StoreError::NotFound { what: "group" })),
        "{missing:?}"
    );
    Ok(())
}

pub async fn down_0008_drops_the_rules_columns(db: &Db) -> Result<()> {
    let applied = migrate::up(&db.url).await?;
    let store = db.open().await?;
    store
        .create_template(
            &CreateTemplate {
                name: "xterm".into(),
                command: vec!["xterm".into()],
                rules: SessionRules {
                    recording: Some(RecordingPolicy::OnRequest),
                    ..SessionRules::default()
                },
                ..CreateTemplate::default()
            },
            &audit(),
        )
        .await?;
    drop(store);
    let from_eighth = applied.iter().filter(|v| **v >= 8).count();
    migrate::down(&db.url, u32::try_from(from_eighth)?).await?;
    let schema = db.schema().await?.join("\n");
    ensure!(
        !schema.contains("rules"),
        "0008's columns survived its down migration: {schema}"
    );
    migrate::up(&db.url).await?;
    let store = db.open().await?;
    ensure!(
        store.get_template("xterm").await?.rules.is_empty(),
        "rules come back empty after down and up"
    );
    Ok(())
}
