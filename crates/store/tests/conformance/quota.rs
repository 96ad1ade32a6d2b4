//! Quotas on both backends: limits set and cleared on users and groups, what counts as use
//! (template sizes, the default size, hibernated but not terminated sessions), and that
//! concurrent creations by one user never overshoot a limit.

use anyhow::{Context, Result, ensure};
use streamspace_proto::api::{
    CreateTemplate, QuotaLimits, QuotaUsage, Role, SessionState, SetQuota, TemplateResources,
};
use streamspace_store::{NewGroup, NewSession, QuotaDimension, SessionSize, StoreError};
use uuid::Uuid;

use super::identity::user;
use super::support::{DEFAULT_SIZE, Db, audit, new_session_for, register};

fn limited(owner: &str, owner_id: Uuid, quota: QuotaLimits, size: SessionSize) -> NewSession {
    NewSession {
        quota,
        size,
        ..new_session_for(owner, owner_id)
    }
}

fn sessions(n: u32) -> QuotaLimits {
    QuotaLimits {
        max_sessions: Some(n),
        ..QuotaLimits::default()
    }
}

pub async fn concurrent_creates_stop_at_the_quota(db: &Db) -> Result<()> {
    let store = db.store().await?;
    register(&*store, "a1", 20).await?;
    let alice = user(&*store, "alice", Role::User).await?;
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let store = store.clone();
            let new = limited("alice", alice.id, sessions(3), DEFAULT_SIZE);
            tokio::spawn(async move { store.create_session(&new, &audit()).await })
        })
        .collect();
    let (mut ok, mut refused) = (0, 0);
    for task in tasks {
        match task.await? {
            Ok(_) => ok += 1,
            Err(StoreError::QuotaExceeded {
                dimension: QuotaDimension::Sessions,
                limit: 3,
                used: 3,
                needed: 1,
            }) => refused += 1,
            Err(e) => return Err(e).context("unexpected error creating a session"),
        }
    }
    ensure!(
        ok == 3 && refused == 7,
        "10 concurrent creates against a quota of 3: {ok} created, {refused} refused"
    );
    let usage = store.quota_usage(alice.id, DEFAULT_SIZE).await?;
    ensure!(usage.sessions == 3, "{usage:?}");
    Ok(())
}

pub async fn usage_sums_sizes_and_counts_hibernated_not_terminated(db: &Db) -> Result<()> {
    let store = db.store().await?;
    register(&*store, "a1", 20).await?;
    let alice = user(&*store, "alice", Role::User).await?;
    store
        .create_template(
            &CreateTemplate {
                name: "big".into(),
                command: vec!["xterm".into()],
                resources: TemplateResources {
                    cpu_millis: Some(1500),
                    memory_mib: Some(1024),
                },
                ..CreateTemplate::default()
            },
            &audit(),
        )
        .await?;
    let big = SessionSize {
        cpu_millis: 1500,
        memory_mib: 1024,
    };
    let unlimited = QuotaLimits::default();
    let mut on_big = limited("alice", alice.id, unlimited, big);
    on_big.template = "big".into();
    let (hibernated, _) = store.create_session(&on_big, &audit()).await?;
    // "xterm" is no template in this database: it counts with the default size.
    let (terminated, _) = store
        .create_session(
            &limited("alice", alice.id, unlimited, DEFAULT_SIZE),
            &audit(),
        )
        .await?;
    let usage = store.quota_usage(alice.id, DEFAULT_SIZE).await?;
    let both = QuotaUsage {
        sessions: 2,
        cpu_millis: 2500,
        memory_mib: 3072,
    };
    ensure!(usage == both, "two sessions: {usage:?}");
    for state in [SessionState::Running, SessionState::Hibernated] {
        store
            .set_session_state(hibernated.id, state, None, None)
            .await?;
    }
    store
        .set_session_state(terminated.id, SessionState::Terminated, None, None)
        .await?;
    let usage = store.quota_usage(alice.id, DEFAULT_SIZE).await?;
    let one = QuotaUsage {
        sessions: 1,
        cpu_millis: 1500,
        memory_mib: 1024,
    };
    ensure!(
        usage == one,
        "a hibernated session counts, a terminated one does not: {usage:?}"
    );

    let cpu = QuotaLimits {
        max_cpu_millis: Some(2000),
        ..QuotaLimits::default()
    };
    let r = store
        .create_session(&limited("alice", alice.id, cpu, big), &audit())
        .await;
    ensure!(
        matches!(
            r,
            Err(StoreError::QuotaExceeded {
                dimension: QuotaDimension::CpuMillis,
                limit: 2000,
                used: 1500,
                needed: 1500,
            })
        ),
        "1500 + 1500 CPU millis over a limit of 2000: {r:?}"
    );
    let memory = QuotaLimits {
        max_memory_mib: Some(3072),
        ..QuotaLimits::default()
    };
    store
        .create_session(&limited("alice", alice.id, memory, DEFAULT_SIZE), &audit())
        .await
        .context("1024 + 2048 MiB fit a limit of 3072 exactly")?;
    let r = store
        .create_session(&limited("alice", alice.id, memory, big), &audit())
        .await;
    ensure!(
        matches!(
            r,
            Err(StoreError::QuotaExceeded {
                dimension: QuotaDimension::MemoryMib,
                limit: 3072,
                used: 3072,
                needed: 1024,
            })
        ),
        "memory over its limit: {r:?}"
    );
    let message = r.err().map(|e| e.to_string()).unwrap_or_default();
    ensure!(
        message.contains("3072") && message.contains("1024"),
        "the message names the numbers: {message}"
    );
    let bob = user(&*store, "bob", Role::User).await?;
    store
        .create_session(&limited("bob", bob.id, sessions(1), big), &audit())
        .await
        .context("another user's use does not count against bob")?;
    Ok(())
}

pub async fn quota_limits_are_set_cleared_and_inherited(db: &Db) -> Result<()> {
    let store = db.store().await?;
    let alice = user(&*store, "alice", Role::User).await?;
    ensure!(store.user_quota("alice").await? == QuotaLimits::default());
    let set = store
        .set_user_quota(
            "alice",
            &SetQuota {
                max_sessions: Some(Some(2)),
                max_cpu_millis: Some(Some(4000)),
                ..SetQuota::default()
            },
            &audit(),
        )
        .await?;
    let expected = QuotaLimits {
        max_sessions: Some(2),
        max_cpu_millis: Some(4000),
        max_memory_mib: None,
    };
    ensure!(set == expected, "{set:?}");
    let cleared = store
        .set_user_quota(
            "alice",
            &SetQuota {
                max_sessions: Some(None),
                max_memory_mib: Some(Some(512)),
                ..SetQuota::default()
            },
            &audit(),
        )
        .await?;
    let expected = QuotaLimits {
        max_sessions: None,
        max_cpu_millis: Some(4000),
        max_memory_mib: Some(512),
    };
    ensure!(
        cleared == expected && store.user_quota("alice").await? == expected,
        "null clears, omitted stays: {cleared:?}"
    );

    for name in ["staff", "power"] {
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
    store.add_group_member("staff", "alice", &audit()).await?;
    store.add_group_member("power", "alice", &audit()).await?;
    store
        .set_group_quota(
            "staff",
            &SetQuota {
                max_sessions: Some(Some(3)),
                ..SetQuota::default()
            },
            &audit(),
        )
        .await?;
    let power = store
        .set_group_quota(
            "power",
            &SetQuota {
                max_sessions: Some(Some(5)),
                ..SetQuota::default()
            },
            &audit(),
        )
        .await?;
    ensure!(power == sessions(5) && store.group_quota("power").await? == power);
    let sources = store.quota_sources(alice.id).await?;
    ensure!(sources.own == expected, "{sources:?}");
    let mut groups = sources.groups.clone();
    groups.sort_by_key(|g| g.max_sessions);
    ensure!(groups == [sessions(3), sessions(5)], "{sources:?}");

    let missing = [
        store.user_quota("nobody").await.err(),
        store
            .set_user_quota("nobody", &SetQuota::default(), &audit())
            .await
            .err(),
        store.group_quota("nobody").await.err(),
        store
            .set_group_quota("nobody", &SetQuota::default(), &audit())
            .await
            .err(),
        store.quota_sources(Uuid::now_v7()).await.err(),
    ];
    for e in missing {
        ensure!(
            matches!(e, Some(StoreError::NotFound { .. })),
            "an unknown user or group is not found: {e:?}"
        );
    }
    Ok(())
}
