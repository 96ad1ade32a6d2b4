//! An in-memory stand-in for the Kubernetes API server, plugged into kube's `Client` as a
//! `tower` service (no API server can run here). It is written from the API conventions, not
//! recorded from a real server, and behaves like one where the agent's code depends on it:
//!
//! - it records every request (method, path, query, JSON body) so tests assert the exact
//!   interactions;
//! - create answers 409 `AlreadyExists`, get 404 `NotFound`, list filters by label selector,
//!   replace checks the resourceVersion (409 `Conflict`), merge-patch merges;
//! - **server-side defaulting**: created objects come back with a uid, resourceVersion,
//!   creationTimestamp and generation, and the defaults the API server fills in (a
//!   Deployment's revision history and progress deadline, a pod template's restart and DNS
//!   policy, a container's pull policy and termination message path, a Service's cluster IP,
//!   a claim's volume mode and `Pending` phase);
//! - **validation** (422 `Invalid`, with the field in the message): names, label values,
//!   a Deployment's selector against its template's labels, containers, images, env names,
//!   ports;
//! - **pods with a life cycle** (standing in for the ReplicaSet controller, scheduler and
//!   kubelet): one pod per Deployment scaled above zero, reporting the status the test sets;
//!   scaling to zero or deleting the Deployment makes the pod `Terminating` (a
//!   `deletionTimestamp`, its last status — still `Ready` — kept) until the test lets the
//!   kubelet finish ([`FakeApi::finish_terminating`]); scaling up again makes a new pod;
//! - **asynchronous garbage collection**: deleting an owner with background propagation removes
//!   it at once and its dependents only when the garbage collector runs
//!   ([`FakeApi::collect_garbage`]); foreground propagation keeps the owner, with a
//!   `deletionTimestamp` and the `foregroundDeletion` finalizer, until its dependents are gone;
//! - **claims in use are protected**: a claim gets the `kubernetes.io/pvc-protection`
//!   finalizer when it is created; deleting it while a pod (even a terminating one) mounts it
//!   only marks it (`deletionTimestamp`) until no pod does, and a create of the same name
//!   meanwhile answers 409 `AlreadyExists` (claims deleted by the garbage collector go at once:
//!   a simplification no test relies on); a claim without access modes or a storage request is
//!   422 `Invalid`;
//! - **refusals**: 403 `Forbidden` for a (resource, verb) the agent's Role does not grant
//!   ([`FakeApi::forbid`]), 429 `TooManyRequests` with `Retry-After` as API priority and
//!   fairness answers under load ([`FakeApi::throttle`]), 503 when the server is down, and a
//!   409 `Conflict` for the next replace ([`FakeApi::conflict_next_put`]).

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::client::Body;
use serde_json::{Value, json};

/// One request as the agent sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub method: Method,
    /// Path without the query (`/apis/apps/v1/namespaces/ns/deployments/x`).
    pub path: String,
    pub query: BTreeMap<String, String>,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    pub body: Option<Value>,
}

impl Recorded {
    /// `"POST /apis/apps/v1/namespaces/ns/deployments"`.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// The fixed time every object is created and deleted at (tests never read the clock).
const NOW: &str = "2026-12-03T12:00:00Z";

#[derive(Default)]
struct State {
    /// (resource, name) → object. Pods are stored here too, made by [`State::reconcile`].
    objects: BTreeMap<(String, String), Value>,
    log: Vec<Recorded>,
    next_version: u64,
    /// The status every pod that is not terminating reports.
    pod_status: Value,
    /// Answer every request with 503 (the API server is unreachable).
    down: bool,
    /// Answer the next PUT with 409 Conflict, as if another client wrote first.
    conflict_next_put: bool,
    /// (resource, verb) pairs the agent's Role does not grant.
    forbidden: BTreeSet<(String, String)>,
    /// How many of the next requests are throttled with 429.
    throttled: u32,
    /// The verb, resource and status of the next request to refuse so.
    reject_next: Option<(String, String, StatusCode, String)>,
}

/// The fake API; cheap to clone (all clones share one state).
#[derive(Clone, Default)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
}

fn status(code: StatusCode, reason: &str, message: String) -> (StatusCode, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": message, "reason": reason, "code": code.as_u16()}),
    )
}

fn labels_match(obj: &Value, selector: Option<&String>) -> bool {
    let Some(selector) = selector else {
        return true;
    };
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        let (k, v) = term.split_once('=').unwrap_or((term, ""));
        obj["metadata"]["labels"][k].as_str() == Some(v)
    })
}

/// The API group of a resource, as RBAC names it.
fn group_of(resource: &str) -> &'static str {
    match resource {
        "deployments" | "replicasets" => "apps",
        "leases" => "coordination.k8s.io",
        _ => "",
    }
}

/// The RBAC verb of a request.
fn verb_of(method: &Method, named: bool) -> &'static str {
    match (method.as_str(), named) {
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", _) => "delete",
        _ => "unknown",
    }
}

/// A DNS-1123 subdomain (object names).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric())
}

/// A label value: at most 63 of `[A-Za-z0-9._-]`, alphanumeric at both ends, or empty.
fn valid_label_value(value: &str) -> bool {
    value.is_empty()
        || (value.len() <= 63
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && value
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric())
            && value
                .bytes()
                .last()
                .is_some_and(|b| b.is_ascii_alphanumeric()))
}

/// What the API server's validation says about an object, as `field: problem` lines.
fn validate(resource: &str, obj: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let name = obj["metadata"]["name"].as_str().unwrap_or("");
    if !valid_name(name) {
        problems.push(format!(
            "metadata.name: Invalid value: {name:?}: a lowercase RFC 1123 subdomain must \
             consist of lower case alphanumeric characters, '-' or '.'"
        ));
    }
    if let Some(labels) = obj["metadata"]["labels"].as_object() {
        for (k, v) in labels {
            let v = v.as_str().unwrap_or("");
            if !valid_label_value(v) {
                problems.push(format!(
                    "metadata.labels: Invalid value: {v:?}: a valid label must be an empty \
                     string or consist of alphanumeric characters, '-', '_' or '.' (label {k})"
                ));
            }
        }
    }
    let pod_spec = match resource {
        "deployments" => {
            let selector = &obj["spec"]["selector"]["matchLabels"];
            let labels = &obj["spec"]["template"]["metadata"]["labels"];
            let matches = selector
                .as_object()
                .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| labels[k.as_str()] == *v));
            if !matches {
                problems.push(
                    "spec.template.metadata.labels: Invalid value: `selector` does not match \
                     template `labels`"
                        .to_owned(),
                );
            }
            Some(&obj["spec"]["template"]["spec"])
        }
        "pods" => Some(&obj["spec"]),
        "persistentvolumeclaims" => {
            let modes = obj["spec"]["accessModes"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if modes.is_empty() {
                problems.push(
                    "spec.accessModes: Required value: at least 1 access mode is required"
                        .to_owned(),
                );
            }
            for mode in &modes {
                let mode = mode.as_str().unwrap_or("");
                if ![
                    "ReadWriteOnce",
                    "ReadOnlyMany",
                    "ReadWriteMany",
                    "ReadWriteOncePod",
                ]
                .contains(&mode)
                {
                    problems.push(format!("spec.accessModes: Unsupported value: {mode:?}"));
                }
            }
            if obj["spec"]["resources"]["requests"]["storage"]
                .as_str()
                .is_none()
            {
                problems.push("spec.resources[storage]: Required value".to_owned());
            }
            None
        }
        _ => None,
    };
    if let Some(spec) = pod_spec {
        let containers = spec["containers"].as_array().cloned().unwrap_or_default();
        if containers.is_empty() {
            problems.push("spec.template.spec.containers: Required value".to_owned());
        }
        let volumes: BTreeSet<&str> = spec["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v["name"].as_str())
            .collect();
        let mut names = BTreeSet::new();
        for (i, c) in containers.iter().enumerate() {
            let at = format!("spec.template.spec.containers[{i}]");
            let name = c["name"].as_str().unwrap_or("");
            if !names.insert(name) {
                problems.push(format!("{at}.name: Duplicate value: {name:?}"));
            }
            for (j, m) in c["volumeMounts"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                let volume = m["name"].as_str().unwrap_or("");
                if !volumes.contains(volume) {
                    problems.push(format!(
                        "{at}.volumeMounts[{j}].name: Not found: {volume:?}"
                    ));
                }
            }
            let image = c["image"].as_str().unwrap_or("");
            if image.is_empty() {
                problems.push(format!("{at}.image: Required value"));
            } else if image.trim() != image {
                problems.push(format!(
                    "{at}.image: Invalid value: {image:?}: must not have leading or trailing \
                     whitespace"
                ));
            }
            for (j, e) in c["env"].as_array().into_iter().flatten().enumerate() {
                let env = e["name"].as_str().unwrap_or("");
                if env.is_empty() || env.contains('=') {
                    problems.push(format!(
                        "{at}.env[{j}].name: Invalid value: {env:?}: a valid environment \
                         variable name must consist only of printable ASCII characters other \
                         than '='"
                    ));
                }
            }
            for (j, p) in c["ports"].as_array().into_iter().flatten().enumerate() {
                let port = p["containerPort"].as_i64().unwrap_or(0);
                if !(1..=65535).contains(&port) {
                    problems.push(format!(
                        "{at}.ports[{j}].containerPort: Invalid value: {port}: must be between \
                         1 and 65535, inclusive"
                    ));
                }
            }
        }
    }
    problems
}

/// The image pull policy the API server defaults: `Always` for `:latest` or no tag.
fn default_pull_policy(image: &str) -> &'static str {
    let last = image.rsplit('/').next().unwrap_or(image);
    let tag = last.split('@').next().unwrap_or(last).split_once(':');
    match tag {
        Some((_, "latest")) | None if !image.contains('@') => "Always",
        _ => "IfNotPresent",
    }
}

/// Fills `value[key]` with `default` when it is absent.
fn or_default(value: &mut Value, key: &str, default: Value) {
    if value.get(key).is_none_or(Value::is_null) {
        value[key] = default;
    }
}

/// The defaults the API server writes into a pod spec.
fn default_pod_spec(spec: &mut Value) {
    or_default(spec, "restartPolicy", json!("Always"));
    or_default(spec, "terminationGracePeriodSeconds", json!(30));
    or_default(spec, "dnsPolicy", json!("ClusterFirst"));
    or_default(spec, "schedulerName", json!("default-scheduler"));
    or_default(spec, "securityContext", json!({}));
    if let Some(containers) = spec["containers"].as_array_mut() {
        for c in containers {
            let image = c["image"].as_str().unwrap_or("").to_owned();
            or_default(c, "imagePullPolicy", json!(default_pull_policy(&image)));
            or_default(c, "terminationMessagePath", json!("/dev/termination-log"));
            or_default(c, "terminationMessagePolicy", json!("File"));
            or_default(c, "resources", json!({}));
            if let Some(probe) = c.get_mut("readinessProbe").filter(|p| p.is_object()) {
                or_default(probe, "timeoutSeconds", json!(1));
                or_default(probe, "successThreshold", json!(1));
                or_default(probe, "failureThreshold", json!(3));
            }
        }
    }
}

/// Server-side defaulting of a newly created object.
fn default_object(resource: &str, obj: &mut Value, version: u64) {
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_owned();
    obj["metadata"]["uid"] = json!(format!("uid-{name}-{version}"));
    obj["metadata"]["resourceVersion"] = json!(version.to_string());
    obj["metadata"]["creationTimestamp"] = json!(NOW);
    match resource {
        "deployments" => {
            obj["metadata"]["generation"] = json!(1);
            let spec = &mut obj["spec"];
            or_default(spec, "replicas", json!(1));
            or_default(spec, "revisionHistoryLimit", json!(10));
            or_default(spec, "progressDeadlineSeconds", json!(600));
            or_default(
                spec,
                "strategy",
                json!({"type": "RollingUpdate",
                       "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}),
            );
            default_pod_spec(&mut spec["template"]["spec"]);
            obj["status"] = json!({});
        }
        "services" => {
            let spec = &mut obj["spec"];
            let ip = format!("10.96.{}.{}", (version / 250) % 250, version % 250 + 1);
            or_default(spec, "type", json!("ClusterIP"));
            or_default(spec, "clusterIP", json!(ip));
            spec["clusterIPs"] = json!([spec["clusterIP"].clone()]);
            or_default(spec, "sessionAffinity", json!("None"));
            or_default(spec, "ipFamilies", json!(["IPv4"]));
            or_default(spec, "ipFamilyPolicy", json!("SingleStack"));
            or_default(spec, "internalTrafficPolicy", json!("Cluster"));
            if let Some(ports) = spec["ports"].as_array_mut() {
                for p in ports {
                    or_default(p, "protocol", json!("TCP"));
                    let port = p["port"].clone();
                    or_default(p, "targetPort", port);
                }
            }
            obj["status"] = json!({"loadBalancer": {}});
        }
        "persistentvolumeclaims" => {
            or_default(&mut obj["spec"], "volumeMode", json!("Filesystem"));
            obj["metadata"]["finalizers"] = json!([PVC_PROTECTION]);
            obj["status"] = json!({"phase": "Pending"});
        }
        _ => {}
    }
}

impl FakeApi {
    pub fn new() -> Self {
        let api = Self::default();
        api.set_pod_status(json!({"phase": "Pending"}));
        api
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A kube client whose every request is answered by this fake, with nothing between them.
    pub fn client(&self, namespace: &str) -> kube::Client {
        let api = self.clone();
        let service = tower::service_fn(move |req: Request<Body>| {
            let api = api.clone();
            async move { Ok::<_, Infallible>(api.serve(req).await) }
        });
        kube::Client::new(service, namespace)
    }

    /// A kube client with the retry layer a client made from a `kube::Config` has by default
    /// (`default_retry`: 429, 503 and 504 retried with backoff, honouring `Retry-After`), as
    /// the agent's own client is made.
    pub fn client_with_retries(&self, namespace: &str) -> kube::Client {
        use kube::client::retry::RetryPolicy;
        use tower::ServiceBuilder;
        use tower::retry::RetryLayer;
        let api = self.clone();
        let service = ServiceBuilder::new()
            .layer(RetryLayer::new(RetryPolicy::server_retry()))
            .service(tower::service_fn(move |req: Request<Body>| {
                let api = api.clone();
                async move { Ok::<_, tower::BoxError>(api.serve(req).await) }
            }));
        kube::Client::new(service, namespace)
    }

    /// Every request so far.
    pub fn log(&self) -> Vec<Recorded> {
        self.lock().log.clone()
    }

    /// Forgets the recorded requests (not the objects).
    pub fn clear_log(&self) {
        self.lock().log.clear();
    }

    /// The requests other than reads (GET), as `"METHOD path"` lines.
    pub fn writes(&self) -> Vec<String> {
        self.log()
            .iter()
            .filter(|r| r.method != Method::GET)
            .map(Recorded::line)
            .collect()
    }

    /// The stored object, if any (a pod with the status it would report).
    pub fn object(&self, resource: &str, name: &str) -> Option<Value> {
        let st = self.lock();
        st.objects
            .get(&(resource.to_owned(), name.to_owned()))
            .map(|o| st.as_served(resource, o))
    }

    /// The names of the stored objects of a resource.
    pub fn names(&self, resource: &str) -> Vec<String> {
        self.lock()
            .objects
            .keys()
            .filter(|(r, _)| r == resource)
            .map(|(_, n)| n.clone())
            .collect()
    }

    /// Stores an object as if someone else had created it.
    pub fn insert(&self, resource: &str, mut object: Value) {
        let mut st = self.lock();
        st.next_version += 1;
        let version = st.next_version;
        let uid = object["metadata"]["uid"].clone();
        default_object(resource, &mut object, version);
        if !uid.is_null() {
            object["metadata"]["uid"] = uid;
        }
        let name = object["metadata"]["name"].as_str().unwrap_or("").to_owned();
        st.objects.insert((resource.to_owned(), name), object);
        st.reconcile();
    }

    /// The status every pod that is not terminating reports from now on.
    pub fn set_pod_status(&self, status: Value) {
        self.lock().pod_status = status;
    }

    /// Makes every pod that is not terminating Ready.
    pub fn make_pods_ready(&self) {
        self.set_pod_status(json!({"phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}]}));
    }

    /// Makes the next PUT lose a race: 409 Conflict, nothing written.
    pub fn conflict_next_put(&self) {
        self.lock().conflict_next_put = true;
    }

    /// Takes the API server down (every request answers 503) or brings it back.
    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
    }

    /// Refuses `verb` (`create`, `get`, `list`, `patch`, `delete`, ...) on `resource` with 403,
    /// as an API server whose RBAC does not grant it.
    pub fn forbid(&self, resource: &str, verb: &str) {
        self.lock()
            .forbidden
            .insert((resource.to_owned(), verb.to_owned()));
    }

    /// Answers the next `count` requests with 429 Too Many Requests and `Retry-After: 1`.
    pub fn throttle(&self, count: u32) {
        self.lock().throttled = count;
    }

    /// Answers the next `verb` on `resource` with `code` (e.g. 422 from an admission webhook).
    pub fn reject_next(&self, verb: &str, resource: &str, code: StatusCode, reason: &str) {
        self.lock().reject_next = Some((
            verb.to_owned(),
            resource.to_owned(),
            code,
            reason.to_owned(),
        ));
    }

    /// The garbage collector's pass: objects whose owners are gone are deleted (pods start
    /// terminating), and owners deleted in the foreground go once nothing depends on them.
    pub fn collect_garbage(&self) {
        let mut st = self.lock();
        st.collect_garbage();
    }

    /// The kubelet's part: terminating pods are gone (and claims deleted while they mounted
    /// them with them).
    pub fn finish_terminating(&self) {
        let mut st = self.lock();
        st.objects
            .retain(|(r, _), o| r != "pods" || o["metadata"]["deletionTimestamp"].is_null());
        st.collect_garbage();
        st.release_claims();
    }

    async fn serve(&self, req: Request<Body>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let bytes = match body.collect().await {
            Ok(collected) => collected.to_bytes().to_vec(),
            Err(_) => Vec::new(),
        };
        let body: Option<Value> = serde_json::from_slice(&bytes).ok();
        let query: BTreeMap<String, String> = parts
            .uri
            .query()
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        let recorded = Recorded {
            method: parts.method.clone(),
            path: parts.uri.path().to_owned(),
            query,
            content_type: parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            body,
        };
        let (code, value) = self.answer(&recorded);
        self.lock().log.push(recorded);
        let mut response =
            Response::new(Body::from(serde_json::to_vec(&value).unwrap_or_default()));
        *response.status_mut() = code;
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        if code == StatusCode::TOO_MANY_REQUESTS {
            response.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("1"),
            );
        }
        response
    }

    fn answer(&self, req: &Recorded) -> (StatusCode, Value) {
        let mut st = self.lock();
        if st.down {
            return status(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "the API server is down".into(),
            );
        }
        if st.throttled > 0 {
            st.throttled -= 1;
            let (code, mut value) = status(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                "too many requests, please try again later".into(),
            );
            value["details"] = json!({"retryAfterSeconds": 1});
            return (code, value);
        }
        let segments: Vec<&str> = req.path.split('/').collect();
        let Some(ns_at) = segments.iter().position(|s| *s == "namespaces") else {
            return status(StatusCode::NOT_FOUND, "NotFound", "no such path".into());
        };
        let namespace = segments.get(ns_at + 1).copied().unwrap_or("").to_owned();
        let resource = segments.get(ns_at + 2).copied().unwrap_or("").to_owned();
        let name = segments.get(ns_at + 3).map(|s| (*s).to_owned());
        let sub = segments.get(ns_at + 4).copied();
        let verb = verb_of(&req.method, name.is_some());
        if st.forbidden.contains(&(resource.clone(), verb.to_owned())) {
            let group = group_of(&resource);
            let kind = if group.is_empty() {
                resource.clone()
            } else {
                format!("{resource}.{group}")
            };
            return status(
                StatusCode::FORBIDDEN,
                "Forbidden",
                format!(
                    "{kind} {:?} is forbidden: User \"system:serviceaccount:{namespace}:agent\" \
                     cannot {verb} resource {resource:?} in API group {group:?} in the \
                     namespace {namespace:?}",
                    name.clone().unwrap_or_default()
                ),
            );
        }
        if st
            .reject_next
            .as_ref()
            .is_some_and(|(v, r, _, _)| v == verb && *r == resource)
            && let Some((_, _, code, reason)) = st.reject_next.take()
        {
            return status(
                code,
                &reason,
                format!("{verb} {resource} refused: {reason}"),
            );
        }
        let key = |n: &str| (resource.clone(), n.to_owned());
        let missing = |n: &str| {
            status(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("{resource} \"{n}\" not found"),
            )
        };
        let answer = match (&req.method, name.as_deref(), sub) {
            (&Method::GET, None, None) => {
                let items: Vec<Value> = st
                    .objects
                    .iter()
                    .filter(|((r, _), o)| {
                        *r == resource && labels_match(o, req.query.get("labelSelector"))
                    })
                    .map(|((r, _), o)| st.as_served(r, o))
                    .collect();
                (
                    StatusCode::OK,
                    json!({"metadata": {"resourceVersion": st.next_version.to_string()},
                           "items": items}),
                )
            }
            (&Method::GET, Some(n), None) => match st.objects.get(&key(n)) {
                Some(o) => (StatusCode::OK, st.as_served(&resource, o)),
                None => missing(n),
            },
            (&Method::POST, None, None) => {
                let mut obj = req.body.clone().unwrap_or(Value::Null);
                let n = obj["metadata"]["name"].as_str().unwrap_or("").to_owned();
                let problems = validate(&resource, &obj);
                if !problems.is_empty() {
                    return invalid(&resource, &n, &problems);
                }
                if st.objects.contains_key(&key(&n)) {
                    return status(
                        StatusCode::CONFLICT,
                        "AlreadyExists",
                        format!("{resource} \"{n}\" already exists"),
                    );
                }
                st.next_version += 1;
                default_object(&resource, &mut obj, st.next_version);
                st.objects.insert(key(&n), obj.clone());
                (StatusCode::CREATED, obj)
            }
            (&Method::PUT, Some(n), None) if std::mem::take(&mut st.conflict_next_put) => status(
                StatusCode::CONFLICT,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {resource} \"{n}\": the object has been modified"
                ),
            ),
            (&Method::PUT, Some(n), None) => {
                let mut obj = req.body.clone().unwrap_or(Value::Null);
                let Some(current) = st.objects.get(&key(n)) else {
                    return missing(n);
                };
                if obj["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] {
                    return status(
                        StatusCode::CONFLICT,
                        "Conflict",
                        format!(
                            "Operation cannot be fulfilled on {resource} \"{n}\": the object has been modified"
                        ),
                    );
                }
                let problems = validate(&resource, &obj);
                if !problems.is_empty() {
                    return invalid(&resource, n, &problems);
                }
                // Identity and creation stay the server's.
                for field in ["uid", "creationTimestamp"] {
                    obj["metadata"][field] = current["metadata"][field].clone();
                }
                st.next_version += 1;
                obj["metadata"]["resourceVersion"] = json!(st.next_version.to_string());
                st.objects.insert(key(n), obj.clone());
                (StatusCode::OK, obj)
            }
            (&Method::PATCH, Some(n), None) => {
                let version = st.next_version + 1;
                let Some(current) = st.objects.get(&key(n)) else {
                    return missing(n);
                };
                let mut obj = current.clone();
                let patch = req.body.as_ref().unwrap_or(&Value::Null);
                merge(&mut obj, patch);
                let problems = validate(&resource, &obj);
                if !problems.is_empty() {
                    return invalid(&resource, n, &problems);
                }
                if resource == "deployments" && obj["spec"] != current["spec"] {
                    let generation = current["metadata"]["generation"].as_i64().unwrap_or(1);
                    obj["metadata"]["generation"] = json!(generation + 1);
                }
                obj["metadata"]["resourceVersion"] = json!(version.to_string());
                st.objects.insert(key(n), obj.clone());
                st.next_version = version;
                (StatusCode::OK, obj)
            }
            (&Method::DELETE, Some(n), None) if resource == "persistentvolumeclaims" => {
                let Some(obj) = st.objects.get(&key(n)).cloned() else {
                    return missing(n);
                };
                let marked = st.objects.get_mut(&key(n)).map(|o| {
                    if o["metadata"]["deletionTimestamp"].is_null() {
                        o["metadata"]["deletionTimestamp"] = json!(NOW);
                    }
                    o.clone()
                });
                st.release_claims();
                match st.objects.get(&key(n)) {
                    // Still mounted: marked, and answered as the object.
                    Some(_) => (StatusCode::OK, marked.unwrap_or(obj)),
                    None => (
                        StatusCode::OK,
                        json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                               "status": "Success",
                               "details": {"name": n, "kind": resource,
                                           "uid": obj["metadata"]["uid"].clone()}}),
                    ),
                }
            }
            (&Method::DELETE, Some(n), None) => {
                let Some(obj) = st.objects.get(&key(n)).cloned() else {
                    return missing(n);
                };
                let policy = req
                    .body
                    .as_ref()
                    .and_then(|b| b["propagationPolicy"].as_str());
                if policy == Some("Foreground") {
                    // Stays, marked, until the garbage collector has removed its dependents.
                    let marked = st.objects.get_mut(&key(n)).map(|o| {
                        o["metadata"]["deletionTimestamp"] = json!(NOW);
                        o["metadata"]["finalizers"] = json!(["foregroundDeletion"]);
                        o.clone()
                    });
                    (StatusCode::OK, marked.unwrap_or(obj))
                } else {
                    st.objects.remove(&key(n));
                    (
                        StatusCode::OK,
                        json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                               "status": "Success",
                               "details": {"name": n, "kind": resource,
                                           "uid": obj["metadata"]["uid"].clone()}}),
                    )
                }
            }
            _ => status(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "unsupported".into(),
            ),
        };
        if req.method != Method::GET {
            st.reconcile();
        }
        answer
    }
}

/// A 422 as the API server words it: the object, then every problem.
fn invalid(resource: &str, name: &str, problems: &[String]) -> (StatusCode, Value) {
    status(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Invalid",
        format!("{resource} {name:?} is invalid: {}", problems.join(", ")),
    )
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

impl State {
    /// An object as the API server would return it now: a pod that is not terminating reports
    /// the current pod status.
    fn as_served(&self, resource: &str, obj: &Value) -> Value {
        let mut obj = obj.clone();
        if resource == "pods" && obj["metadata"]["deletionTimestamp"].is_null() {
            obj["status"] = self.pod_status.clone();
        }
        obj
    }

    /// The controllers' part after every write: a Deployment scaled above zero gets a pod if
    /// it has no live one; a Deployment scaled to zero (or being deleted) has its pods
    /// terminate.
    fn reconcile(&mut self) {
        let deployments: Vec<(String, Value)> = self
            .objects
            .iter()
            .filter(|((r, _), _)| r == "deployments")
            .map(|((_, n), d)| (n.clone(), d.clone()))
            .collect();
        for (name, d) in deployments {
            let uid = d["metadata"]["uid"].clone();
            let wanted = d["metadata"]["deletionTimestamp"].is_null()
                && d["spec"]["replicas"].as_i64().unwrap_or(1) > 0;
            let owned: Vec<String> = self
                .objects
                .iter()
                .filter(|((r, _), p)| r == "pods" && owned_by(p, &uid))
                .filter(|(_, p)| p["metadata"]["deletionTimestamp"].is_null())
                .map(|((_, n), _)| n.clone())
                .collect();
            if wanted && owned.is_empty() {
                self.next_version += 1;
                let pod_name = format!("{name}-{}", self.next_version);
                let mut pod = json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {
                        "name": pod_name,
                        "namespace": d["metadata"]["namespace"].clone(),
                        "labels": d["spec"]["template"]["metadata"]["labels"].clone(),
                        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": name, "uid": uid,
                                             "controller": true, "blockOwnerDeletion": true}]
                    },
                    "spec": d["spec"]["template"]["spec"].clone(),
                });
                default_object("pods", &mut pod, self.next_version);
                self.objects.insert(("pods".to_owned(), pod_name), pod);
            } else if !wanted {
                for pod_name in owned {
                    self.terminate_pod(&pod_name);
                }
            }
        }
    }

    /// Marks a pod as terminating, freezing the status it reports (a terminating pod's
    /// containers keep running, and it can stay Ready, until the kubelet has stopped them).
    fn terminate_pod(&mut self, name: &str) {
        let status = self.pod_status.clone();
        if let Some(pod) = self.objects.get_mut(&("pods".to_owned(), name.to_owned()))
            && pod["metadata"]["deletionTimestamp"].is_null()
        {
            pod["metadata"]["deletionTimestamp"] = json!(NOW);
            pod["status"] = status;
        }
    }

    /// The claim protection controller: a claim marked for deletion goes once no pod (even a
    /// terminating one) mounts it.
    fn release_claims(&mut self) {
        let mounted: BTreeSet<String> = self
            .objects
            .iter()
            .filter(|((r, _), _)| r == "pods")
            .flat_map(|(_, p)| {
                p["spec"]["volumes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v["persistentVolumeClaim"]["claimName"].as_str())
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect();
        self.objects.retain(|(r, n), o| {
            r != "persistentvolumeclaims"
                || o["metadata"]["deletionTimestamp"].is_null()
                || mounted.contains(n)
        });
    }

    fn collect_garbage(&mut self) {
        loop {
            let uids: BTreeSet<String> = self
                .objects
                .values()
                .filter_map(|o| o["metadata"]["uid"].as_str().map(str::to_owned))
                .collect();
            let orphans: Vec<(String, String)> = self
                .objects
                .iter()
                .filter(|(_, o)| {
                    o["metadata"]["ownerReferences"]
                        .as_array()
                        .is_some_and(|refs| {
                            refs.iter()
                                .any(|r| !r["uid"].as_str().is_some_and(|u| uids.contains(u)))
                        })
                })
                .map(|(k, _)| k.clone())
                .collect();
            let mut changed = false;
            for (resource, name) in orphans {
                if resource == "pods" {
                    let live = self
                        .objects
                        .get(&(resource.clone(), name.clone()))
                        .is_some_and(|p| p["metadata"]["deletionTimestamp"].is_null());
                    if live {
                        self.terminate_pod(&name);
                        changed = true;
                    }
                } else {
                    self.objects.remove(&(resource, name));
                    changed = true;
                }
            }
            // Foreground deletions complete once nothing depends on the owner.
            let done: Vec<(String, String)> = self
                .objects
                .iter()
                .filter(|(_, o)| {
                    o["metadata"]["finalizers"]
                        .as_array()
                        .is_some_and(|f| f.iter().any(|f| f == "foregroundDeletion"))
                })
                .filter(|(_, o)| {
                    let uid = &o["metadata"]["uid"];
                    !self.objects.values().any(|d| owned_by(d, uid))
                })
                .map(|(k, _)| k.clone())
                .collect();
            for key in done {
                self.objects.remove(&key);
                changed = true;
            }
            if !changed {
                return;
            }
        }
    }
}

/// The finalizer the API server's admission gives every claim.
const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";

fn owned_by(obj: &Value, uid: &Value) -> bool {
    obj["metadata"]["ownerReferences"]
        .as_array()
        .is_some_and(|refs| refs.iter().any(|r| r["uid"] == *uid))
}
