//! One-time codes and recovery codes (migration 0005), on both backends: a pending secret that
//! only confirmation turns on, the replay guard on time steps, recovery codes used once, and
//! clearing; and 0005 reverted and applied again.

use anyhow::{Result, ensure};
use streamspace_proto::api::Role;
use streamspace_store::{StoreError, migrate};

use super::identity::user;
use super::support::{Db, audit};

pub async fn totp_is_pending_then_enabled_and_steps_are_used_once(db: &Db) -> Result<()> {
    let store = db.store().await?;
    let alice = user(&*store, "alice", Role::User).await?;
    let id = alice.id;
    ensure!(!alice.totp_enabled);
    let enable = store.enable_totp(id, 10, &[], &audit()).await;
    ensure!(
        matches!(enable, Err(StoreError::Conflict(_))),
        "nothing pending to enable: {enable:?}"
    );
    store.start_totp(id, "SECRETONE", &audit()).await?;
    let record = store.get_user_by_id(id).await?;
    ensure!(
        record.totp_secret.as_deref() == Some("SECRETONE") && !record.user.totp_enabled,
        "a started enrolment is pending: {record:?}"
    );
    ensure!(
        !store.use_totp_step(id, 11).await?,
        "a pending secret signs in no one"
    );
    ensure!(store.totp_secrets().await? == vec![(id, "SECRETONE".to_owned())]);
    ensure!(
        store
            .reseal_totp_secret(id, "SECRETONE", "SEALEDONE")
            .await?
    );
    ensure!(
        !store.reseal_totp_secret(id, "SECRETONE", "SEALEDX").await?,
        "a secret that changed meanwhile is not replaced"
    );
    ensure!(store.totp_secrets().await? == vec![(id, "SEALEDONE".to_owned())]);
    store.start_totp(id, "SECRETTWO", &audit()).await?;
    let hashes = vec!["h1".to_owned(), "h2".to_owned()];
    store.enable_totp(id, 100, &hashes, &audit()).await?;
    let record = store.get_user_by_id(id).await?;
    ensure!(
        record.user.totp_enabled
            && record.totp_secret.as_deref() == Some("SECRETTWO")
            && record.totp_last_step == Some(100),
        "{record:?}"
    );
    let restart = store.start_totp(id, "SECRETTHREE", &audit()).await;
    ensure!(
        matches!(restart, Err(StoreError::Conflict(_))),
        "enrolling again while on: {restart:?}"
    );
    ensure!(
        !store.use_totp_step(id, 100).await?,
        "the confirming step is used"
    );
    ensure!(
        !store.use_totp_step(id, 99).await?,
        "earlier steps are refused"
    );
    ensure!(store.use_totp_step(id, 101).await?);
    ensure!(
        !store.use_totp_step(id, 101).await?,
        "a step is accepted once"
    );

    ensure!(store.recovery_codes_left(id).await? == 2);
    ensure!(store.use_recovery_code(id, "h1", &audit()).await?);
    ensure!(
        !store.use_recovery_code(id, "h1", &audit()).await?,
        "a code is used once"
    );
    ensure!(!store.use_recovery_code(id, "nope", &audit()).await?);
    let bob = user(&*store, "bob", Role::User).await?;
    ensure!(
        !store.use_recovery_code(bob.id, "h2", &audit()).await?,
        "codes belong to their user"
    );
    ensure!(store.recovery_codes_left(id).await? == 1);

    ensure!(store.clear_totp(id, &audit()).await?, "it was on");
    let record = store.get_user_by_id(id).await?;
    ensure!(
        !record.user.totp_enabled
            && record.totp_secret.is_none()
            && record.totp_last_step.is_none(),
        "{record:?}"
    );
    ensure!(store.recovery_codes_left(id).await? == 0);
    ensure!(
        !store.clear_totp(id, &audit()).await?,
        "clearing again: it was off"
    );
    store.delete_user("alice", &audit()).await?;
    let gone = store.clear_totp(id, &audit()).await;
    ensure!(matches!(gone, Err(StoreError::NotFound { .. })), "{gone:?}");
    Ok(())
}

pub async fn down_0005_drops_the_totp_columns(db: &Db) -> Result<()> {
    let applied = migrate::up(&db.url).await?;
    let after_fourth = applied.iter().filter(|v| **v > 4).count();
    migrate::down(&db.url, u32::try_from(after_fourth)?).await?;
    let schema = db.schema().await?.join("\n");
    ensure!(
        !schema.contains("totp_secret") && !schema.contains("recovery_codes"),
        "0005's columns survived its down migration: {schema}"
    );
    migrate::up(&db.url).await?;
    let schema = db.schema().await?.join("\n");
    ensure!(
        schema.contains("totp_last_step") && schema.contains("recovery_codes"),
        "0005 did not come back: {schema}"
    );
    let store = db.open().await?;
    let admin = store.get_user("admin").await?;
    ensure!(!admin.user.totp_enabled && admin.totp_secret.is_none());
    Ok(())
}
