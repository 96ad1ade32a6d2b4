//! Templates' runtime fields (migration 0003): stored and read back on both backends, defaults
//! for templates created before the migration, and a clean down migration; changing a template
//! in one transaction with the caller's check.

use anyhow::{Result, ensure};
use std::collections::BTreeMap;
use streamspace_proto::api::{
    CreateTemplate, DEFAULT_VNC_PORT, HomePolicy, ResourcesChange, TemplateIcon, TemplatePorts,
    TemplateResources, UpdateTemplate,
};
use streamspace_store::{AuditQuery, StoreError, migrate};

use super::support::{Db, audit};

pub async fn templates_change_in_one_checked_transaction(db: &Db) -> Result<()> {
    let store = db.store().await?;
    let t = CreateTemplate {
        name: "desktop".into(),
        command: vec!["xterm".into()],
        image: Some("localhost/desktop:1".into()),
        resources: TemplateResources {
            cpu_millis: Some(1500),
            memory_mib: Some(2048),
        },
        allowed_groups: vec!["staff".into()],
        category: Some("Office".into()),
        tags: vec!["writer".into()],
        icon: Some(TemplateIcon::Office),
        ..CreateTemplate::default()
    };
    let created = store.create_template(&t, &audit()).await?;
    ensure!(
        created.category.as_deref() == Some("Office")
            && created.tags == ["writer"]
            && created.icon == Some(TemplateIcon::Office),
        "the catalog fields are stored: {created:?}"
    );
    let change = UpdateTemplate {
        description: Some(Some("changed".into())),
        image: Some(None),
        resources: Some(Some(ResourcesChange {
            cpu_millis: Some(None),
            memory_mib: None,
        })),
        allowed_groups: Some(Some(vec!["ops".into()])),
        tags: Some(Some(vec!["docs".into(), "pdf".into()])),
        icon: Some(None),
        ..UpdateTemplate::default()
    };
    let accept = |_: &CreateTemplate| Ok(());
    let updated = store
        .update_template("desktop", &change, &accept, &audit())
        .await?;
    ensure!(
        updated.description == "changed"
            && updated.image.is_none()
            && updated.resources
                == TemplateResources {
                    cpu_millis: None,
                    memory_mib: Some(2048)
                }
            && updated.allowed_groups == ["ops"]
            && updated.category.as_deref() == Some("Office")
            && updated.tags == ["docs", "pdf"]
            && updated.icon.is_none()
            && updated.command == ["xterm"]
            && updated.created_at == created.created_at,
        "{updated:?}"
    );
    ensure!(store.get_template("desktop").await? == updated);

    let refuse = |t: &CreateTemplate| Err(format!("no, not {:?}", t.description));
    let wipe = UpdateTemplate {
        description: Some(None),
        ..UpdateTemplate::default()
    };
    let refused = store
        .update_template("desktop", &wipe, &refuse, &audit())
        .await;
    ensure!(
        matches!(&refused, Err(StoreError::Invalid(m)) if m == "no, not \"\""),
        "the check sees the changed template and its message is kept: {refused:?}"
    );
    ensure!(store.get_template("desktop").await?.description == "changed");
    let missing = store
        .update_template("missing", &wipe, &accept, &audit())
        .await;
    ensure!(
        matches!(missing, Err(StoreError::NotFound { .. })),
        "{missing:?}"
    );
    let audited = store
        .list_audit(&AuditQuery {
            action: Some("test.change".into()),
            limit: 10,
            ..AuditQuery::default()
        })
        .await?;
    ensure!(
        audited.len() == 2,
        "the create and the one change made: {audited:?}"
    );
    Ok(())
}

pub async fn runtime_fields_round_trip(db: &Db) -> Result<()> {
    let store = db.store().await?;
    let t = CreateTemplate {
        name: "desktop".into(),
        image: Some("localhost/desktop:1".into()),
        ports: TemplatePorts { vnc: 5999 },
        resources: TemplateResources {
            cpu_millis: Some(1500),
            memory_mib: Some(2048),
        },
        persistent_home: HomePolicy::Retain,
        idle_timeout_secs: Some(900),
        env: BTreeMap::from([("TZ".into(), "UTC".into())]),
        ..CreateTemplate::default()
    };
    let created = store.create_template(&t, &audit()).await?;
    ensure!(
        created.image == t.image
            && created.ports == t.ports
            && created.resources == t.resources
            && created.persistent_home == HomePolicy::Retain
            && created.idle_timeout_secs == Some(900)
            && created.command.is_empty(),
        "stored template differs from what was created: {created:?}"
    );
    ensure!(store.get_template("desktop").await? == created);
    Ok(())
}

pub async fn templates_from_before_0003_get_defaults(db: &Db) -> Result<()> {
    migrate::up_to(&db.url, 2).await?;
    db.exec(
        "INSERT INTO templates (name, description, command, env) \
         VALUES ('old', '', '[\"xterm\"]', '{}')",
    )
    .await?;
    let applied = migrate::up(&db.url).await?;
    ensure!(applied.first() == Some(&3), "up applied {applied:?}");
    let store = db.open().await?;
    let old = store.get_template("old").await?;
    ensure!(
        old.image.is_none()
            && old.ports.vnc == DEFAULT_VNC_PORT
            && old.resources.is_empty()
            && old.persistent_home == HomePolicy::None
            && old.idle_timeout_secs.is_none()
            && old.command == ["xterm"],
        "an old template did not get the defaults: {old:?}"
    );
    Ok(())
}

pub async fn down_0003_drops_the_runtime_columns(db: &Db) -> Result<()> {
    let applied = migrate::up(&db.url).await?;
    let after_second = applied.iter().filter(|v| **v > 2).count();
    migrate::down(&db.url, u32::try_from(after_second)?).await?;
    let schema = db.schema().await?.join("\n");
    ensure!(
        !schema.contains("persistent_home") && !schema.contains("idle_timeout_secs"),
        "0003's columns survived its down migration: {schema}"
    );
    migrate::up(&db.url).await?;
    let schema = db.schema().await?.join("\n");
    ensure!(schema.contains("persistent_home"), "0003 did not come back");
    Ok(())
}
