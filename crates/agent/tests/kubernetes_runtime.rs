//! The `kubernetes` runtime against a hand-written fake of the Kubernetes API server. No API
//! server can run here, so kube's client is driven over an in-memory `tower` service
//! ([`kube_api::FakeApi`]) that records every request and answers as the API conventions say
//! a real server does (defaulting, validation, pods that terminate, asynchronous garbage
//! collection, 403/409/422/429); the tests assert the exact objects sent, the exact
//! hibernate/wake/stop calls, readiness from pod status, recovery, and what the runtime does
//! with each kind of refusal.

mod kube_api;

use std::time::Duration;

use anyhow::{Context, Result};
use chrono::Utc;
use http::Method;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service};
use kube_api::FakeApi;
use serde_json::{Value, json};
use streamspace_agent::Chain;
use streamspace_agent::runtime::kubernetes::TransferSidecar;
use streamspace_agent::runtime::{
    KubernetesRuntime, KubernetesRuntimeConfig, Runtime, RuntimeError,
};
use streamspace_agent::transfer::{LocalFolder, remote};
use streamspace_proto::SessionState;
use streamspace_proto::api::{HomePolicy, Template, TemplatePorts, TemplateResources};
use uuid::Uuid;

const NS: &str = "sessions";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/sessions/deployments";
const SERVICES: &str = "/api/v1/namespaces/sessions/services";
const CLAIMS: &str = "/api/v1/namespaces/sessions/persistentvolumeclaims";
const PODS: &str = "/api/v1/namespaces/sessions/pods";
const SECRETS: &str = "/api/v1/namespaces/sessions/secrets";

fn template(home: HomePolicy) -> Template {
    Template {
        name: "desktop".into(),
        description: String::new(),
        command: vec!["startxfce4".into()],
        env: [("LANG".to_owned(), "C.UTF-8".to_owned())].into(),
        image: Some("registry.example/desktop:1".into()),
        ports: TemplatePorts { vnc: 5901 },
        resources: TemplateResources {
            cpu_millis: Some(500),
            memory_mib: Some(1024),
        },
        persistent_home: home,
        idle_timeout_secs: None,
        allowed_groups: Vec::new(),
        category: None,
        tags: Vec::new(),
        icon: None,
        rules: Default::default(),
        created_at: Utc::now(),
    }
}

fn runtime(api: &FakeApi) -> Result<KubernetesRuntime> {
    let mut config = KubernetesRuntimeConfig::new(NS, "agent-1");
    config.poll_interval = Duration::from_millis(10);
    config.ready_timeout = Duration::from_secs(5);
    config.storage_class = Some("fast".into());
    config.home_size = "5Gi".into();
    KubernetesRuntime::new(api.client(NS), config).map_err(anyhow::Error::msg)
}

fn labels(id: Uuid) -> Value {
    json!({"app.kubernetes.io/managed-by": "streamspace", "app.kubernetes.io/component": "session",
           "streamspace.io/session-id": id.to_string(), "streamspace.io/agent-id": "agent-1"})
}

/// The body of the one request with this method and path.
fn body(api: &FakeApi, method: Method, path: &str) -> Result<Value> {
    api.log()
        .into_iter()
        .find(|r| r.method == method && r.path == path)
        .and_then(|r| r.body)
        .with_context(|| format!("no {method} {path} with a body in {:#?}", api.writes()))
}

/// What the API server would make of `value` as a `K`: it must parse, and nothing may be lost.
fn round_trips<K: serde::de::DeserializeOwned + serde::Serialize>(value: &Value) -> Result<()> {
    let typed: K = serde_json::from_value(value.clone())?;
    assert_eq!(&serde_json::to_value(typed)?, value);
    Ok(())
}

#[tokio::test]
async fn start_creates_the_exact_deployment_service_and_home_claim() -> Result<()> {
    let api = FakeApi::new();
    api.make_pods_ready();
    let rt = runtime(&api)?;
    let id = Uuid::now_v7();
    let name = format!("ss-{id}");

    let info = rt.start(id, &template(HomePolicy::Delete)).await?;
    assert_eq!(info.state, SessionState::Running);
    assert_eq!(
        info.vnc_address,
        format!("{name}.sessions.svc.cluster.local:5901")
    );
    assert_eq!(
        api.writes(),
        [
            format!("POST {DEPLOYMENTS}"),
            format!("POST {SERVICES}"),
            format!("POST {CLAIMS}"),
        ]
    );

    let deployment = body(&api, Method::POST, DEPLOYMENTS)?;
    let selector = json!({"app.kubernetes.io/managed-by": "streamspace",
                          "streamspace.io/session-id": id.to_string()});
    assert_eq!(
        deployment,
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": NS, "labels": labels(id)},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": selector},
                "strategy": {"type": "Recreate"},
                "template": {
                    "metadata": {"labels": labels(id)},
                    "spec": {
                        "automountServiceAccountToken": false,
                        "enableServiceLinks": false,
                        "securityContext": {
                            "runAsNonRoot": true,
                            "seccompProfile": {"type": "RuntimeDefault"},
                            "fsGroup": 1000,
                            "fsGroupChangePolicy": "OnRootMismatch"
                        },
                        "containers": [{
                            "name": "session",
                            "image": "registry.example/desktop:1",
                            "args": ["startxfce4"],
                            "env": [{"name": "LANG", "value": "C.UTF-8"}],
                            "ports": [{"name": "vnc", "containerPort": 5901, "protocol": "TCP"}],
                            "readinessProbe": {"tcpSocket": {"port": "vnc"}, "periodSeconds": 2},
                            "resources": {
                                "limits": {"cpu": "500m", "memory": "1024Mi"},
                                "requests": {"cpu": "500m", "memory": "1024Mi"}
                            },
                            "securityContext": {
                                "allowPrivilegeEscalation": false,
                                "capabilities": {"drop": ["ALL"]}
                            },
                            "volumeMounts": [{"name": "home", "mountPath": "/home"}]
                        }],
                        "volumes": [{"name": "home",
                                     "persistentVolumeClaim": {"claimName": format!("{name}-home")}}]
                    }
                }
            }
        })
    );
    round_trips::<Deployment>(&deployment)?;

    // Children are owned by the Deployment the API server created (its uid).
    let uid =
        api.object("deployments", &name).context("the deployment")?["metadata"]["uid"].clone();
    let owner = json!([{"apiVersion": "apps/v1", "kind": "Deployment", "name": name,
                        "uid": uid, "controller": true,
                        "blockOwnerDeletion": true}]);
    let service = body(&api, Method::POST, SERVICES)?;
    assert_eq!(
        service,
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": NS, "labels": labels(id),
                         "ownerReferences": owner},
            "spec": {"type": "ClusterIP", "selector": selector,
                     "ports": [{"name": "vnc", "port": 5901, "targetPort": "vnc", "protocol": "TCP"}]}
        })
    );
    round_trips::<Service>(&service)?;
    let claim = body(&api, Method::POST, CLAIMS)?;
    assert_eq!(
        claim,
        json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": format!("{name}-home"), "namespace": NS, "labels": labels(id),
                         "ownerReferences": owner},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "fast",
                     "resources": {"requests": {"storage": "5Gi"}}}
        })
    );
    round_trips::<PersistentVolumeClaim>(&claim)?;

    // Readiness was read from the session's pods, selected by its labels.
    let pod_reads: Vec<_> = api.log().into_iter().filter(|r| r.path == PODS).collect();
    assert!(!pod_reads.is_empty());
    assert_eq!(
        pod_reads[0].query.get("labelSelector").map(String::as_str),
        Some(
            format!("app.kubernetes.io/managed-by=streamspace,streamspace.io/session-id={id}")
                .as_str()
        )
    );
    Ok(())
}

#[tokio::test]
async fn a_read_only_root_gets_empty_scratch_directories_and_a_home() -> Result<()> {
    let api = FakeApi::new();
    api.make_pods_ready();
    let mut config = KubernetesRuntimeConfig::new(NS, "agent-1");
    config.poll_interval = Duration::from_millis(10);
    config.confinement.read_only_root = true;
    let rt = KubernetesRuntime::new(api.client(NS), config).map_err(anyhow::Error::msg)?;
    rt.start(Uuid::now_v7(), &template(HomePolicy::None))
        .await?;

    let deployment = body(&api, Method::POST, DEPLOYMENTS)?;
    round_trips::<Deployment>(&deployment)?;
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(
        container["securityContext"],
        json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]},
               "readOnlyRootFilesystem": true})
    );
    assert_eq!(
        container["volumeMounts"],
        json!([{"name": "scratch-0", "mountPath": "/tmp"},
               {"name": "scratch-1", "mountPath": "/var/tmp"},
               {"name": "scratch-2", "mountPath": "/run"},
               {"name": "scratch-3", "mountPath": "/home"}])
    );
    assert_eq!(
        pod["volumes"],
        json!([{"name": "scratch-0", "emptyDir": {}}, {"name": "scratch-1", "emptyDir": {}},
               {"name": "scratch-2", "emptyDir": {}}, {"name": "scratch-3", "emptyDir": {}}])
    );
    // No home volume: nothing for a group to own.
    assert_eq!(
        pod["securityContext"],
        json!({"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}})
    );
    Ok(())
}

#[tokio::test]
async fn home_policy_decides_whether_a_claim_exists_and_who_owns_it() -> Result<()> {
    let api = FakeApi::new();
    api.make_pods_ready();
    let rt = runtime(&api)?;

    let plain = Uuid::now_v7();
    rt.start(plain, &template(HomePolicy::None)).await?;
    assert_eq!(
        api.writes(),
        [format!("POST {DEPLOYMENTS}"), format!("POST {SERVICES}")]
    );
    let d = body(&api, Method::POST, DEPLOYMENTS)?;
    assert!(d["spec"]["template"]["spec"]["volumes"].is_null());
    assert!(d["spec"]["template"]["spec"]["containers"][0]["volumeMounts"].is_null());

    api.clear_log();
    let kept = Uuid::now_v7();
    rt.start(kept, &template(HomePolicy::Retain)).await?;
    let claim = body(&api, Method::POST, CLAIMS)?;
    assert!(claim["metadata"]["ownerReferences"].is_null(), "{claim}");
    assert_eq!(claim["metadata"]["labels"], labels(kept));

    // Stopping deletes the root; once the garbage collector has run, the retained claim
    // outlives it and the Service does not.
    rt.stop(kept).await?;
    let name = format!("ss-{kept}");
    assert!(api.object("deployments", &name).is_none());
    api.collect_garbage();
    assert!(api.object("services", &name).is_none());
    assert!(
        api.object("persistentvolumeclaims", &format!("{name}-home"))
            .is_some()
    );
    Ok(())
}

#[tokio::test]
async fn hibernate_wake_and_stop_are_one_replicas_patch_or_one_delete() -> Result<()> {
    let api = FakeApi::new();
    api.make_pods_ready();
    let rt = runtime(&api)?;
    let id = Uuid::now_v7();
    let name = format!("ss-{id}");
    rt.start(id, &template(HomePolicy::Delete)).await?;

    api.clear_log();
    let info = rt.hibernate(id).await?;
    assert_eq!(info.state, SessionState::Hibernated);
    assert_eq!(api.writes(), [format!("PATCH {DEPLOYMENTS}/{name}")]);
    let patch = api.log().into_iter().find(|r| r.method == Method::PATCH);
    assert_eq!(
        patch.and_then(|r| r.content_type).as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(
        body(&api, Method::PATCH, &format!("{DEPLOYMENTS}/{name}"))?,
        json!({"spec": {"replicas": 0}})
    );
    // The home claim is kept while hibernated; hibernating again changes nothing.
    assert!(
        api.object("persistentvolumeclaims", &format!("{name}-home"))
            .is_some()
    );
    api.clear_log();
    assert_eq!(rt.hibernate(id).await?.state, SessionState::Hibernated);
    assert!(api.writes().is_empty(), "{:?}", api.writes());
    assert_eq!(
        rt.status(id).await?.map(|s| s.state),
        Some(SessionState::Hibernated)
    );

    api.clear_log();
    let info = rt.wake(id).await?;
    assert_eq!(info.state, SessionState::Running);
    assert_eq!(api.writes(), [format!("PATCH {DEPLOYMENTS}/{name}")]);
    assert_eq!(
        body(&api, Method::PATCH, &format!("{DEPLOYMENTS}/{name}"))?,
        json!({"spec": {"replicas": 1}})
    );

    api.clear_log();
    rt.stop(id).await?;
    assert_eq!(api.writes(), [format!("DELETE {DEPLOYMENTS}/{name}")]);
    assert_eq!(
        body(&api, Method::DELETE, &format!("{DEPLOYMENTS}/{name}"))?,
        json!({"propagationPolicy": "Background"})
    );
    // The owner references do the rest, when the garbage collector gets to them.
    assert!(
        api.object("services", &name).is_some(),
        "collected synchronously"
    );
    api.collect_garbage();
    assert!(api.object("services", &name).is_none());
    assert!(
        api.object("persistentvolumeclaims", &format!("{name}-home"))
            .is_none()
    );
    // Stopping again (or an unknown session) succeeds; the others are refused.
    rt.stop(id).await?;
    assert!(rt.status(id).await?.is_none());
    assert!(matches!(rt.hibernate(id).await, Err(RuntimeError::UnknownSession(u)) if u == id));
    assert!(matches!(rt.wake(id).await, Err(RuntimeError::UnknownSession(u)) if u == id));
    Ok(())
}

#[tokio::test]
async fn readiness_follows_the_pod_and_a_start_that_cannot_succeed_leaves_nothing() -> Result<()> {
    let api = FakeApi::new();
    let rt = std::sync::Arc::new(runtime(&api)?);
    let id = Uuid::now_v7();

    // Pending: the start waits; once the pod is Ready it returns.
    let task = {
        let rt = rt.clone();
        tokio::spawn(async move { rt.start(id, &template(HomePolicy::None)).await })
    };
    streamspace_testkit::wait_until(
        "the start to poll the pods",
        Duration::from_secs(10),
        || {
            let n = api.log().iter().filter(|r| r.path == PODS).count();
            async move { (n >= 2).then_some(()) }
        },
    )
    .await?;
    assert!(!task.is_finished());
    assert_eq!(
        rt.status(id).await?.map(|s| s.state),
        Some(SessionState::Running),
        "not Ready yet is not a failure"
    );
    api.make_pods_ready();
    assert_eq!(task.await??.state, SessionState::Running);

    // A pod that cannot pull its image fails the start, and the start cleans up after itself.
    api.set_pod_status(json!({"phase": "Pending", "containerStatuses": [{
        "name": "session", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"waiting": {"reason": "ErrImagePull", "message": "not found"}}}]}));
    let bad = Uuid::now_v7();
    let err = rt.start(bad, &template(HomePolicy::None)).await;
    match err {
        Err(RuntimeError::StartFailed(m)) => {
            assert!(m.contains("ErrImagePull: not found"), "{m}")
        }
        other => panic!("expected StartFailed, got {other:?}"),
    }
    assert!(
        api.writes()
            .contains(&format!("DELETE {DEPLOYMENTS}/ss-{bad}"))
    );
    assert!(api.object("deployments", &format!("ss-{bad}")).is_none());
    // The running session now reports the failure too.
    let info = rt.status(id).await?.context("still there")?;
    assert_eq!(info.state, SessionState::Failed);
    assert!(info.message.unwrap_or_default().contains("ErrImagePull"));
    Ok(())
}

#[tokio::test]
async fn recovery_adopts_this_agents_sessions_by_label() -> Result<()> {
    let api = FakeApi::new();
    api.make_pods_ready();
    let rt = runtime(&api)?;
    let running = Uuid::now_v7();
    let hibernated = Uuid::now_v7();
    rt.start(running, &template(HomePolicy::None)).await?;
    rt.start(hibernated, &template(HomePolicy::Retain)).await?;
    rt.hibernate(hibernated).await?;
    // Another agent's session in the same namespace is not ours to report.
    let other = Uuid::now_v7();
    let mut foreign = body(&api, Method::POST, DEPLOYMENTS)?;
    foreign["metadata"]["name"] = json!(format!("ss-{other}"));
    foreign["metadata"]["labels"]["streamspace.io/agent-id"] = json!("agent-2");
    foreign["metadata"]["labels"]["streamspace.io/session-id"] = json!(other.to_string());
    api.insert("deployments", foreign);

    // A new agent process: nothing local, everything from the cluster.
    api.clear_log();
    let fresh = runtime(&api)?;
    let mut found: Vec<(Uuid, SessionState)> = fresh
        .recover()
        .await?
        .into_iter()
        .map(|s| (s.session_id, s.state))
        .collect();
    found.sort_by_key(|(id, _)| *id);
    let mut expected = vec![
        (running, SessionState::Running),
        (hibernated, SessionState::Hibernated),
    ];
    expected.sort_by_key(|(id, _)| *id);
    assert_eq!(found, expected);
    let selector = "app.kubernetes.io/managed-by=streamspace,streamspace.io/agent-id=agent-1";
    let reads: Vec<_> = api.log();
    assert!(
        reads.iter().all(|r| r.method == Method::GET),
        "recovery only reads"
    );
    for path in [DEPLOYMENTS, PODS] {
        let r = reads.iter().find(|r| r.path == path).context("listed")?;
        assert_eq!(
            r.query.get("labelSelector").map(String::as_str),
            Some(selector)
        );
    }
    // The foreign session is invisible to this agent's commands too.
    assert!(fresh.status(other).await?.is_none());
    Ok(())
}

#[tokio::test]
async fn a_retried_start_completes_a_partial_one_without_duplicates() -> Result<()> {
    let api = FakeApi::new();
    api.make_pods_ready();
    let rt = runtime(&api)?;
    let id = Uuid::now_v7();
    rt.start(id, &template(HomePolicy::Delete)).await?;
    // As if the agent had died right after creating the Deployment.
    let name = format!("ss-{id}");
    let owner_uid =
        api.object("deployments", &name).context("the deployment")?["metadata"]["uid"].clone();
    let svc = api.object("services", &name).context("service")?;
    assert_eq!(svc["metadata"]["ownerReferences"][0]["uid"], owner_uid);
    rt.stop(id).await?;
    api.collect_garbage();
    api.finish_terminating();
    let deployment = body(&api, Method::POST, DEPLOYMENTS)?;
    api.insert("deployments", deployment);

    api.clear_log();
    let info = rt.start(id, &template(HomePolicy::Delete)).await?;
    assert_eq!(info.state, SessionState::Running);
    assert_eq!(
        api.writes(),
        [format!("POST {SERVICES}"), format!("POST {CLAIMS}")]
    );
    // A duplicate start of a complete session writes nothing new that sticks.
    api.clear_log();
    rt.start(id, &template(HomePolicy::Delete)).await?;
    assert!(!api.writes().contains(&format!("POST {DEPLOYMENTS}")));
    Ok(())
}

#[tokio::test]
async fn api_failures_surface_with_the_api_servers_reason() -> Result<()> {
    let api = FakeApi::new();
    let rt = runtime(&api)?;
    api.set_down(true);
    let err = rt.start(Uuid::now_v7(), &template(HomePolicy::None)).await;
    match err {
        Err(e @ RuntimeError::KubernetesApi { code: 503, .. }) => {
            let m = Chain(&e).to_string();
            assert!(m.contains("the API server is down"), "{m}");
            assert!(m.contains("503"), "{m}");
        }
        other => panic!("expected an error status from the API, got {other:?}"),
    }
    assert!(rt.list().await.is_err());
    assert!(
        rt.stop(Uuid::now_v7()).await.is_err(),
        "a stop that did not happen is not ok"
    );
    Ok(())
}

#[tokio::test]
async fn templates_the_runtime_cannot_run_are_refused_before_any_call() -> Result<()> {
    let api = FakeApi::new();
    let rt = runtime(&api)?;
    let mut t = template(HomePolicy::None);
    t.image = None;
    let err = rt.start(Uuid::now_v7(), &t).await;
    assert!(
        matches!(err, Err(RuntimeError::InvalidTemplate(_))),
        "{err:?}"
    );
    assert!(api.log().is_empty());
    let bad_agent = KubernetesRuntime::new(
        api.client(NS),
        KubernetesRuntimeConfig::new(NS, "agent/with/slashes"),
    );
    assert!(bad_agent.is_err());
    Ok(())
}

#[tokio::test]
async fn a_wake_waits_for_the_new_pod_not_the_terminating_one() -> Result<()> {
    let api = FakeApi::new();
    api.make_pods_ready();
    let rt = std::sync::Arc::new(runtime(&api)?);
    let id = Uuid::now_v7();
    rt.start(id, &template(HomePolicy::None)).await?;
    rt.hibernate(id).await?;
    // The old pod is still terminating and still says Ready; the new one is Pending.
    api.set_pod_status(json!({"phase": "Pending"}));
    api.clear_log();
    let wake = {
        let rt = rt.clone();
        tokio::spawn(async move { rt.wake(id).await })
    };
    streamspace_testkit::wait_until("the wake to poll the pods", Duration::from_secs(10), || {
        let n = api.log().iter().filter(|r| r.path == PODS).count();
        async move { (n >= 2).then_some(()) }
    })
    .await?;
    let pods = api.names("pods");
    assert_eq!(pods.len(), 2, "one terminating, one new: {pods:?}");
    assert!(!wake.is_finished(), "a terminating pod counted as Ready");
    api.make_pods_ready();
    assert_eq!(wake.await??.state, SessionState::Running);
    api.finish_terminating();
    assert_eq!(api.names("pods").len(), 1);
    Ok(())
}

#[tokio::test]
async fn a_start_before_the_collector_removed_the_previous_run_fails_and_leaves_nothing()
-> Result<()> {
    let api = FakeApi::new();
    api.make_pods_ready();
    let rt = runtime(&api)?;
    let id = Uuid::now_v7();
    let name = format!("ss-{id}");
    rt.start(id, &template(HomePolicy::Delete)).await?;
    rt.stop(id).await?;
    // The Service and claim of the first run are still there, owned by a deleted Deployment.
    let err = rt.start(id, &template(HomePolicy::Delete)).await;
    match err {
        Err(RuntimeError::StartFailed(m)) => assert!(m.contains("previous run"), "{m}"),
        other => panic!("expected StartFailed, got {other:?}"),
    }
    assert!(
        api.object("deployments", &name).is_none(),
        "the new root was left behind"
    );
    api.collect_garbage();
    assert!(api.object("services", &name).is_none());
    // Once the collector is done, the same start succeeds and keeps its children.
    rt.start(id, &template(HomePolicy::Delete)).await?;
    api.collect_garbage();
    assert!(api.object("services", &name).is_some());
    assert!(
        api.object("persistentvolumeclaims", &format!("{name}-home"))
            .is_some()
    );
    Ok(())
}

#[tokio::test]
async fn a_forbidden_child_fails_the_start_with_the_reason_and_removes_the_root() -> Result<()> {
    let api = FakeApi::new();
    api.make_pods_ready();
    api.forbid("persistentvolumeclaims", "create");
    let rt = runtime(&api)?;
    let id = Uuid::now_v7();
    let err = rt.start(id, &template(HomePolicy::Retain)).await;
    match err {
        Err(RuntimeError::KubernetesApi {
            code, ref source, ..
        }) => {
            assert_eq!(code, 403);
            assert!(
                source.message.contains("cannot create resource"),
                "{source:?}"
            );
        }
        other => panic!("expected a 403, got {other:?}"),
    }
    assert!(
        api.writes()
            .contains(&format!("DELETE {DEPLOYMENTS}/ss-{id}"))
    );
    api.collect_garbage();
    assert!(api.names("deployments").is_empty());
    assert!(api.names("services").is_empty());
    Ok(())
}

#[tokio::test]
async fn an_object_the_api_server_finds_invalid_fails_the_start_with_its_message() -> Result<()> {
    let api = FakeApi::new();
    let rt = runtime(&api)?;
    let mut bad = template(HomePolicy::None);
    bad.env.insert("A=B".to_owned(), "x".to_owned());
    let err = rt.start(Uuid::now_v7(), &bad).await;
    match err {
        Err(RuntimeError::KubernetesApi {
            code, ref source, ..
        }) => {
            assert_eq!(code, 422);
            assert!(source.message.contains("env[0].name"), "{source:?}");
        }
        other => panic!("expected a 422, got {other:?}"),
    }
    assert!(api.names("deployments").is_empty());

    // An admission webhook's refusal of a child: surfaced, and the root removed.
    api.make_pods_ready();
    api.reject_next(
        "create",
        "services",
        http::StatusCode::UNPROCESSABLE_ENTITY,
        "Invalid",
    );
    let id = Uuid::now_v7();
    let err = rt.start(id, &template(HomePolicy::None)).await;
    assert!(
        matches!(err, Err(RuntimeError::KubernetesApi { code: 422, .. })),
        "{err:?}"
    );
    assert!(api.object("deployments", &format!("ss-{id}")).is_none());
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn throttling_is_retried_after_the_servers_delay_and_reported_if_it_persists() -> Result<()> {
    let api = FakeApi::new();
    api.make_pods_ready();
    let mut config = KubernetesRuntimeConfig::new(NS, "agent-1");
    config.poll_interval = Duration::from_millis(10);
    let rt =
        KubernetesRuntime::new(api.client_with_retries(NS), config).map_err(anyhow::Error::msg)?;

    api.throttle(2);
    let info = rt
        .start(Uuid::now_v7(), &template(HomePolicy::None))
        .await?;
    assert_eq!(info.state, SessionState::Running);
    let throttled = api.log().iter().filter(|r| r.method == Method::GET).count();
    assert!(throttled >= 3, "the throttled read was not retried");

    api.clear_log();
    api.throttle(u32::MAX);
    let err = rt.start(Uuid::now_v7(), &template(HomePolicy::None)).await;
    match err {
        Err(RuntimeError::KubernetesApi {
            code, ref source, ..
        }) => {
            assert_eq!(code, 429);
            assert_eq!(source.reason, "TooManyRequests");
        }
        other => panic!("expected a 429, got {other:?}"),
    }
    assert!(api.log().len() > 1, "gave up without retrying");
    api.throttle(0);
    assert_eq!(
        api.names("deployments").len(),
        1,
        "only the first session exists"
    );
    Ok(())
}

#[tokio::test]
async fn a_users_home_is_one_claim_that_outlives_their_sessions() -> Result<()> {
    let api = FakeApi::new();
    api.make_pods_ready();
    let rt = runtime(&api)?;
    assert!(rt.user_homes());
    let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
    let home = template(HomePolicy::User);
    let claim_name = format!("ss-home-{alice}");
    assert!(matches!(
        rt.start(Uuid::now_v7(), &home).await,
        Err(RuntimeError::InvalidTemplate(_))
    ));

    let first = Uuid::now_v7();
    api.clear_log();
    rt.start_with_user_home(first, &home, alice).await?;
    let claim = body(&api, Method::POST, CLAIMS)?;
    assert_eq!(
        claim,
        json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {
                "name": claim_name, "namespace": NS,
                "labels": {"app.kubernetes.io/managed-by": "streamspace",
                           "app.kubernetes.io/component": "user-home",
                           "streamspace.io/user-home": alice.to_string(),
                           "streamspace.io/agent-id": "agent-1"}
            },
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "fast",
                     "resources": {"requests": {"storage": "5Gi"}}}
        })
    );
    round_trips::<PersistentVolumeClaim>(&claim)?;
    let writes = api.writes();
    assert_eq!(
        writes[..2],
        [format!("POST {CLAIMS}"), format!("POST {DEPLOYMENTS}")],
        "the claim is made before the pod that mounts it"
    );
    assert!(
        !writes.contains(&format!("POST {CLAIMS}/ss-{first}-home")),
        "no session claim"
    );
    let d = body(&api, Method::POST, DEPLOYMENTS)?;
    assert_eq!(
        d["spec"]["template"]["spec"]["volumes"],
        json!([{"name": "home", "persistentVolumeClaim": {"claimName": claim_name}}])
    );
    assert_eq!(
        d["metadata"]["labels"]["streamspace.io/user-home"],
        json!(alice.to_string())
    );
    let uid = api
        .object("persistentvolumeclaims", &claim_name)
        .map(|c| c["metadata"]["uid"].clone())
        .context("no claim")?;

    // ReadWriteOnce: one live session at a time, and no deletion while it runs.
    let second = Uuid::now_v7();
    match rt.start_with_user_home(second, &home, alice).await {
        Err(RuntimeError::HomeInUse(m)) => assert!(m.contains(&first.to_string()), "{m}"),
        other => panic!("a second session on a ReadWriteOnce home gave {other:?}"),
    }
    assert!(api.object("deployments", &format!("ss-{second}")).is_none());
    assert!(matches!(
        rt.delete_user_home(alice).await,
        Err(RuntimeError::HomeInUse(_))
    ));
    // A repeated start of the same session is not a second session.
    rt.start_with_user_home(first, &home, alice).await?;

    // Stopping keeps the claim; the next session mounts the same one, another user's its own.
    rt.stop(first).await?;
    api.collect_garbage();
    let next = Uuid::now_v7();
    rt.start_with_user_home(next, &home, alice).await?;
    assert_eq!(
        api.object("persistentvolumeclaims", &claim_name)
            .map(|c| c["metadata"]["uid"].clone()),
        Some(uid),
        "the user's next session got another home"
    );
    let other = Uuid::now_v7();
    rt.start_with_user_home(other, &home, bob).await?;
    let mounted = api.object("deployments", &format!("ss-{other}")).map(|d| {
        d["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"].clone()
    });
    assert_eq!(mounted, Some(json!(format!("ss-home-{bob}"))));

    // Deleting: the claim is marked while the stopped session's pod still terminates (the API
    // server's claim protection), so a new session cannot use it meanwhile; then it is gone.
    rt.stop(next).await?;
    api.collect_garbage();
    rt.delete_user_home(alice).await?;
    let marked = api
        .object("persistentvolumeclaims", &claim_name)
        .context("the claim went while a pod still mounted it")?;
    assert!(!marked["metadata"]["deletionTimestamp"].is_null());
    match rt.start_with_user_home(Uuid::now_v7(), &home, alice).await {
        Err(RuntimeError::StartFailed(m)) => assert!(m.contains("being deleted"), "{m}"),
        other => panic!("a start on a home being deleted gave {other:?}"),
    }
    api.finish_terminating();
    assert!(api.object("persistentvolumeclaims", &claim_name).is_none());
    assert!(
        api.object("persistentvolumeclaims", &format!("ss-home-{bob}"))
            .is_some()
    );
    rt.delete_user_home(alice).await?;
    Ok(())
}

#[tokio::test]
async fn user_homes_follow_the_agents_options_and_are_never_taken_over() -> Result<()> {
    let api = FakeApi::new();
    api.make_pods_ready();
    let mut config = KubernetesRuntimeConfig::new(NS, "agent-1");
    config.poll_interval = Duration::from_millis(10);
    config.user_home_access_mode = "ReadWriteMany".into();
    config.user_home_size = Some("50Gi".into());
    config.user_home_storage_class = Some("shared".into());
    let rt = KubernetesRuntime::new(api.client(NS), config.clone()).map_err(anyhow::Error::msg)?;
    let user = Uuid::now_v7();
    let home = template(HomePolicy::User);
    // ReadWriteMany: the user's sessions may run at once.
    rt.start_with_user_home(Uuid::now_v7(), &home, user).await?;
    rt.start_with_user_home(Uuid::now_v7(), &home, user).await?;
    let claim = body(&api, Method::POST, CLAIMS)?;
    assert_eq!(
        claim["spec"],
        json!({"accessModes": ["ReadWriteMany"], "storageClassName": "shared",
               "resources": {"requests": {"storage": "50Gi"}}})
    );

    // A claim of that name that StreamSpace did not make is neither mounted nor deleted.
    let stranger = Uuid::now_v7();
    api.insert(
        "persistentvolumeclaims",
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
               "metadata": {"name": format!("ss-home-{stranger}"), "namespace": NS},
               "spec": {"accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}}}}),
    );
    let id = Uuid::now_v7();
    match rt.start_with_user_home(id, &home, stranger).await {
        Err(RuntimeError::StartFailed(m)) => assert!(m.contains("not StreamSpace's"), "{m}"),
        other => panic!("a foreign claim gave {other:?}"),
    }
    assert!(api.object("deployments", &format!("ss-{id}")).is_none());
    rt.delete_user_home(stranger).await?;
    assert!(
        api.object("persistentvolumeclaims", &format!("ss-home-{stranger}"))
            .is_some()
    );

    config.user_home_access_mode = "ReadWriteSometimes".into();
    assert!(matches!(
        KubernetesRuntime::new(api.client(NS), config),
        Err(RuntimeError::InvalidConfig(_))
    ));
    Ok(())
}

/// The fake API server's claims, checked directly: what the user-home code relies on.
#[tokio::test]
async fn the_fake_api_treats_claims_like_the_api_server() -> Result<()> {
    use kube::api::{Api, DeleteParams, PostParams};
    let api = FakeApi::new();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(api.client(NS), NS);
    let claim = |name: &str, modes: Value| -> Result<PersistentVolumeClaim> {
        Ok(serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"accessModes": modes, "resources": {"requests": {"storage": "1Gi"}}}
        }))?)
    };
    let code = |e: kube::Error| match e {
        kube::Error::Api(s) => (s.code, s.reason),
        other => (0, other.to_string()),
    };
    let made = claims
        .create(
            &PostParams::default(),
            &claim("c", json!(["ReadWriteOnce"]))?,
        )
        .await?;
    assert_eq!(
        made.metadata.finalizers,
        Some(vec!["kubernetes.io/pvc-protection".to_owned()])
    );
    let again = claims
        .create(
            &PostParams::default(),
            &claim("c", json!(["ReadWriteOnce"]))?,
        )
        .await
        .map_err(code);
    assert_eq!(again.err(), Some((409, "AlreadyExists".to_owned())));
    let invalid = claims
        .create(&PostParams::default(), &claim("d", json!([]))?)
        .await
        .map_err(code);
    assert_eq!(invalid.err(), Some((422, "Invalid".to_owned())));
    let missing = claims.get("d").await.map_err(code);
    assert_eq!(missing.err(), Some((404, "NotFound".to_owned())));
    // Not mounted: a delete removes it at once.
    claims.delete("c", &DeleteParams::default()).await?;
    assert!(claims.get_opt("c").await?.is_none());
    let gone = claims
        .delete("c", &DeleteParams::default())
        .await
        .map_err(code);
    assert_eq!(gone.err().map(|(c, _)| c), Some(404));
    Ok(())
}

/// The transfer sidecar's settings the file-transfer tests use, listening on `port`.
fn with_sidecar(api: &FakeApi, port: u16) -> Result<KubernetesRuntime> {
    let mut config = KubernetesRuntimeConfig::new(NS, "agent-1");
    config.poll_interval = Duration::from_millis(10);
    config.ready_timeout = Duration::from_secs(5);
    config.transfer = Some(TransferSidecar {
        image: "registry.example/streamspace:1".into(),
        port,
        uid: 1000,
    });
    KubernetesRuntime::new(api.client(NS), config).map_err(anyhow::Error::msg)
}

/// The token in the session's Secret, decoded as a client of the API server would.
fn token_in_secret(api: &FakeApi, name: &str) -> Result<String> {
    let secret: k8s_openapi::api::core::v1::Secret =
        serde_json::from_value(api.object("secrets", name).context("no transfer secret")?)?;
    streamspace_agent::runtime::kubernetes::objects::token_of(&secret).context("no token")
}

/// File transfer on Kubernetes: the session's pod runs the transfer sidecar beside the
/// desktop, sharing the transfer folder, and the agent reaches it on the pod's address with
/// the session's token from its Secret. The fake API server runs no containers, so the test
/// plays the kubelet: it runs the sidecar's own code on 127.0.0.1 with the token the Secret
/// holds (as the sidecar's environment would), over a directory standing for the shared
/// volume, and reports the pod's address as 127.0.0.1.
#[tokio::test]
async fn files_reach_a_session_through_its_transfer_sidecar() -> Result<()> {
    let api = FakeApi::new();
    api.set_pod_status(json!({"phase": "Running", "podIP": "127.0.0.1",
        "conditions": [{"type": "Ready", "status": "True"}]}));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let rt = with_sidecar(&api, port)?;
    let id = Uuid::now_v7();
    let name = format!("ss-{id}");
    rt.start(id, &template(HomePolicy::None)).await?;
    // The Secret comes first (a pod whose sidecar finds no Secret fails at once), unowned;
    // the Deployment becomes its owner once it exists.
    let writes = api.writes();
    assert_eq!(
        writes[..2],
        [format!("POST {SECRETS}"), format!("POST {DEPLOYMENTS}"),],
        "{writes:?}"
    );
    assert!(
        writes.contains(&format!("PATCH {SECRETS}/{name}")),
        "{writes:?}"
    );
    assert!(body(&api, Method::POST, SECRETS)?["metadata"]["ownerReferences"].is_null());

    // The pod: the desktop and the sidecar share an emptyDir as the desktop's ~/Transfers;
    // the sidecar runs as the desktop's user, reads its token from the Secret, and listens
    // on its own port, which is not on the Service.
    let deployment = api.object("deployments", &name).context("no deployment")?;
    let pod = &deployment["spec"]["template"]["spec"];
    let containers = pod["containers"].as_array().context("no containers")?;
    assert_eq!(containers.len(), 2, "{containers:#?}");
    assert_eq!(
        containers[0]["volumeMounts"],
        json!([{"name": "transfers", "mountPath": "/home/Transfers"}])
    );
    let sidecar = &containers[1];
    assert_eq!(sidecar["name"], "transfer");
    assert_eq!(sidecar["image"], "registry.example/streamspace:1");
    assert_eq!(
        sidecar["args"],
        json!([
            "transfer-sidecar",
            "--listen",
            format!("0.0.0.0:{port}"),
            "--home",
            "/streamspace/home"
        ])
    );
    assert_eq!(
        sidecar["env"],
        json!([{"name": "STREAMSPACE_TRANSFER_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": name, "key": "token"}}}])
    );
    assert_eq!(
        sidecar["volumeMounts"],
        json!([{"name": "transfers", "mountPath": "/streamspace/home/Transfers"}])
    );
    assert_eq!(sidecar["securityContext"]["runAsUser"], 1000);
    assert_eq!(sidecar["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        sidecar["securityContext"]["capabilities"]["drop"],
        json!(["ALL"])
    );
    assert_eq!(
        pod["volumes"],
        json!([{"name": "transfers", "emptyDir": {}}])
    );
    let service = api.object("services", &name).context("no service")?;
    assert_eq!(
        service["spec"]["ports"].as_array().map(Vec::len),
        Some(1),
        "the sidecar's port stays off the Service"
    );
    let secret = api.object("secrets", &name).context("no secret")?;
    assert_eq!(
        secret["metadata"]["ownerReferences"][0]["uid"],
        deployment["metadata"]["uid"]
    );
    let token = token_in_secret(&api, &name)?;
    assert_eq!(token.len(), 64);

    // The kubelet's part: the sidecar over the shared volume.
    let volume = tempfile::tempdir()?;
    std::fs::create_dir(volume.path().join("Transfers"))?;
    let folder = LocalFolder {
        home: volume.path().to_path_buf(),
        owner: None,
    };
    let served = tokio::spawn(remote::serve(listener, folder, token));

    let files = rt.transfer_folder(id).await?;
    let mut upload = files.upload("notes/today.txt", Uuid::now_v7()).await?;
    upload.write(b"written from the browser").await?;
    upload.commit().await?;
    assert_eq!(
        std::fs::read(volume.path().join("Transfers/notes/today.txt"))?,
        b"written from the browser"
    );
    std::fs::write(
        volume.path().join("Transfers/report.txt"),
        b"made in the session",
    )?;
    let listing = files.list().await?;
    let names: Vec<&str> = listing.entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["notes", "report.txt"]);
    let download = files.download("report.txt").await?;
    assert_eq!(download.size, 19);
    let mut body = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut { download.body }, &mut body).await?;
    assert_eq!(body, b"made in the session");
    let Err(failure) = files.download("../../etc/passwd").await else {
        anyhow::bail!("a path out of the folder was served");
    };
    assert_eq!(failure.code, "invalid_path");

    // A retried start keeps the token the running sidecar holds.
    rt.start(id, &template(HomePolicy::None)).await?;
    assert!(rt.transfer_folder(id).await?.list().await.is_ok());

    // Hibernated, the session has no pod to carry files.
    rt.hibernate(id).await?;
    let err = rt.transfer_folder(id).await.map(drop);
    assert!(
        matches!(&err, Err(RuntimeError::SessionFailed { message, .. }) if message.contains("hibernated")),
        "{err:?}"
    );
    rt.wake(id).await?;

    // Stopping the session removes its Secret with the rest.
    rt.stop(id).await?;
    assert!(api.object("secrets", &name).is_none());
    assert!(matches!(
        rt.transfer_folder(id).await.map(drop),
        Err(RuntimeError::UnknownSession(u)) if u == id
    ));
    served.abort();
    Ok(())
}

/// With a home volume the sidecar mounts the home itself, so ~/Transfers is in the home; and
/// an agent without the sidecar, or a session started before it had one, says transfers are
/// not supported rather than failing some other way.
#[tokio::test]
async fn the_sidecar_shares_the_home_and_sessions_without_it_refuse_transfers() -> Result<()> {
    let api = FakeApi::new();
    api.make_pods_ready();
    let plain = runtime(&api)?;
    let old = Uuid::now_v7();
    plain.start(old, &template(HomePolicy::Delete)).await?;
    let err = plain.transfer_folder(old).await.map(drop);
    assert!(
        matches!(&err, Err(RuntimeError::TransferUnsupported(m)) if m.contains("--transfer-sidecar-image")),
        "{err:?}"
    );

    let rt = with_sidecar(&api, 5990)?;
    let err = rt.transfer_folder(old).await.map(drop);
    assert!(
        matches!(&err, Err(RuntimeError::TransferUnsupported(m)) if m.contains("start it again")),
        "{err:?}"
    );

    let id = Uuid::now_v7();
    rt.start(id, &template(HomePolicy::Delete)).await?;
    let deployment = api
        .object("deployments", &format!("ss-{id}"))
        .context("no deployment")?;
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(
        pod["containers"][0]["volumeMounts"],
        json!([{"name": "home", "mountPath": "/home"}])
    );
    assert_eq!(
        pod["containers"][1]["volumeMounts"],
        json!([{"name": "home", "mountPath": "/streamspace/home"}])
    );
    assert_eq!(pod["volumes"].as_array().map(Vec::len), Some(1));
    // A Deployment the API server refuses leaves no Secret behind.
    let refused = Uuid::now_v7();
    api.reject_next(
        "create",
        "deployments",
        http::StatusCode::UNPROCESSABLE_ENTITY,
        "Invalid",
    );
    assert!(
        rt.start(refused, &template(HomePolicy::None))
            .await
            .is_err()
    );
    assert!(api.object("secrets", &format!("ss-{refused}")).is_none());

    // Ready, but no address reported for the pod yet.
    let err = rt.transfer_folder(id).await.map(drop);
    assert!(
        matches!(&err, Err(RuntimeError::SessionFailed { message, .. }) if message.contains("no address")),
        "{err:?}"
    );
    Ok(())
}
