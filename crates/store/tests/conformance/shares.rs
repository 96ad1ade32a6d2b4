//! Share links (migration 0009), on both backends: created with an expiry from the database's
//! clock, listed per session, revoked once (the first time stays), gone with their session's
//! row; and 0009 reverted and applied again.

use anyhow::{Result, ensure};
use streamspace_proto::api::ShareMode;
use streamspace_store::{BOOTSTRAP_ADMIN_ID, NewShare, StoreError, migrate};
use uuid::Uuid;

use super::support::{Db, audit, new_session, register};

fn share(session_id: Uuid, mode: ShareMode, users: &[&str]) -> NewShare {
    NewShare {
        id: Uuid::now_v7(),
        session_id,
        created_by: BOOTSTRAP_ADMIN_ID,
        mode,
        expires_in_secs: 3600,
        users: users.iter().map(|u| u.to_string()).collect(),
        groups: vec!["staff".into()],
    }
}

pub async fn shares_are_made_listed_and_revoked(db: &Db) -> Result<()> {
    let store = db.store().await?;
    register(store.as_ref(), "a1", 5).await?;
    let (session, _) = store
        .create_session(&new_session("admin"), &audit())
        .await?;
    let before = chrono::Utc::now() - chrono::TimeDelta::seconds(5);
    let watch = store
        .create_share(&share(session.id, ShareMode::ViewOnly, &["bob"]), &audit())
        .await?;
    let control = store
        .create_share(&share(session.id, ShareMode::Control, &[]), &audit())
        .await?;
    ensure!(watch.mode == ShareMode::ViewOnly && control.mode == ShareMode::Control);
    ensure!(watch.users == ["bob"] && watch.groups == ["staff"] && control.users.is_empty());
    ensure!(watch.created_by.as_deref() == Some("admin"), "{watch:?}");
    ensure!(watch.link == format!("/shared/{}", watch.id));
    let lifetime = watch.expires_at - watch.created_at;
    ensure!(
        (3599..=3601).contains(&lifetime.num_seconds()) && watch.created_at > before,
        "the expiry is an hour after creation: {watch:?}"
    );
    ensure!(watch.is_active(chrono::Utc::now()));
    let listed = store.list_shares(session.id).await?;
    ensure!(listed == [watch.clone(), control.clone()], "{listed:?}");

    let revoked = store.revoke_share(watch.id, &audit()).await?;
    let first = revoked.revoked_at;
    ensure!(first.is_some() && !revoked.is_active(chrono::Utc::now()));
    let again = store.revoke_share(watch.id, &audit()).await?;
    ensure!(
        again.revoked_at == first,
        "a second revocation keeps the first time"
    );
    ensure!(store.get_share(control.id).await?.revoked_at.is_none());
    ensure!(matches!(
        store.revoke_share(Uuid::now_v7(), &audit()).await,
        Err(StoreError::NotFound { .. })
    ));
    ensure!(matches!(
        store.get_share(Uuid::now_v7()).await,
        Err(StoreError::NotFound { .. })
    ));
    ensure!(store.list_shares(Uuid::now_v7()).await?.is_empty());
    Ok(())
}

pub async fn down_0009_drops_the_shares(db: &Db) -> Result<()> {
    let applied = migrate::up(&db.url).await?;
    let after_eighth = applied.iter().filter(|v| **v > 8).count();
    migrate::down(&db.url, u32::try_from(after_eighth)?).await?;
    ensure!(
        !db.schema()
            .await?
            .iter()
            .any(|t| t.contains("session_shares")),
        "0009 down drops session_shares"
    );
    migrate::up(&db.url).await?;
    ensure!(
        db.schema()
            .await?
            .iter()
            .any(|t| t.contains("session_shares"))
    );
    Ok(())
}
