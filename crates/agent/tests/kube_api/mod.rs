//! An in-memory stand-in for the Kubernetes API server, plugged into kube's `Client` as a
//! `tower` service (no API server can run here). It records every request (method, path,
//! query, JSON body) so tests assert the exact interactions, and answers them the way the API
//! server does for the few calls the agent makes: create (409 AlreadyExists), get (404
//! NotFound), list by label selector, replace with a resourceVersion check (409 Conflict),
//! merge-patch (a Deployment's replicas), and delete — with the garbage collector's effect of
//! deleting the objects owned by the deleted one. Pods are synthesised for each Deployment
//! scaled above zero, with the status the test sets (standing in for scheduler and kubelet).

#![allow(dead_code)]

use std::collections::BTreeMap;
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

#[derive(Default)]
struct State {
    /// (resource, name) → object.
    objects: BTreeMap<(String, String), Value>,
    log: Vec<Recorded>,
    next_version: u64,
    /// The status of every synthesised pod.
    pod_status: Value,
    /// Answer every request with 503 (the API server is unreachable).
    down: bool,
    /// Answer the next PUT with 409 Conflict, as if another client wrote first.
    conflict_next_put: bool,
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

impl FakeApi {
    pub fn new() -> Self {
        let api = Self::default();
        api.set_pod_status(json!({"phase": "Pending"}));
        api
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A kube client whose every request is answered by this fake.
    pub fn client(&self, namespace: &str) -> kube::Client {
        let api = self.clone();
        let service = tower::service_fn(move |req: Request<Body>| {
            let api = api.clone();
            async move { Ok::<_, Infallible>(api.serve(req).await) }
        });
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

    /// The stored object, if any.
    pub fn object(&self, resource: &str, name: &str) -> Option<Value> {
        self.lock()
            .objects
            .get(&(resource.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Stores an object as if someone else had created it.
    pub fn insert(&self, resource: &str, mut object: Value) {
        let mut st = self.lock();
        st.next_version += 1;
        let version = st.next_version.to_string();
        object["metadata"]["resourceVersion"] = json!(version);
        if object["metadata"]["uid"].is_null() {
            object["metadata"]["uid"] = json!(format!("uid-{version}"));
        }
        let name = object["metadata"]["name"].as_str().unwrap_or("").to_owned();
        st.objects.insert((resource.to_owned(), name), object);
    }

    /// The status every synthesised pod reports from now on.
    pub fn set_pod_status(&self, status: Value) {
        self.lock().pod_status = status;
    }

    /// Makes every synthesised pod Ready.
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
        let segments: Vec<&str> = req.path.split('/').collect();
        let Some(ns_at) = segments.iter().position(|s| *s == "namespaces") else {
            return status(StatusCode::NOT_FOUND, "NotFound", "no such path".into());
        };
        let resource = segments.get(ns_at + 2).copied().unwrap_or("").to_owned();
        let name = segments.get(ns_at + 3).map(|s| (*s).to_owned());
        let sub = segments.get(ns_at + 4).copied();
        let key = |n: &str| (resource.clone(), n.to_owned());
        let missing = |n: &str| {
            status(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("{resource} \"{n}\" not found"),
            )
        };
        match (&req.method, name.as_deref(), sub) {
            (&Method::GET, None, None) if resource == "pods" => {
                let items = st.pods(req.query.get("labelSelector"));
                (
                    StatusCode::OK,
                    json!({"kind": "PodList", "apiVersion": "v1",
                    "metadata": {"resourceVersion": "1"}, "items": items}),
                )
            }
            (&Method::GET, None, None) => {
                let items: Vec<Value> = st
                    .objects
                    .iter()
                    .filter(|((r, _), o)| {
                        *r == resource && labels_match(o, req.query.get("labelSelector"))
                    })
                    .map(|(_, o)| o.clone())
                    .collect();
                (
                    StatusCode::OK,
                    json!({"metadata": {"resourceVersion": "1"}, "items": items}),
                )
            }
            (&Method::GET, Some(n), None) => match st.objects.get(&key(n)) {
                Some(o) => (StatusCode::OK, o.clone()),
                None => missing(n),
            },
            (&Method::POST, None, None) => {
                let mut obj = req.body.clone().unwrap_or(Value::Null);
                let n = obj["metadata"]["name"].as_str().unwrap_or("").to_owned();
                if st.objects.contains_key(&key(&n)) {
                    return status(
                        StatusCode::CONFLICT,
                        "AlreadyExists",
                        format!("{resource} \"{n}\" already exists"),
                    );
                }
                st.next_version += 1;
                obj["metadata"]["uid"] = json!(format!("uid-{n}"));
                obj["metadata"]["resourceVersion"] = json!(st.next_version.to_string());
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
                st.next_version += 1;
                obj["metadata"]["resourceVersion"] = json!(st.next_version.to_string());
                st.objects.insert(key(n), obj.clone());
                (StatusCode::OK, obj)
            }
            (&Method::PATCH, Some(n), None) => {
                let version = st.next_version + 1;
                let Some(obj) = st.objects.get_mut(&key(n)) else {
                    return missing(n);
                };
                merge(obj, req.body.as_ref().unwrap_or(&Value::Null));
                obj["metadata"]["resourceVersion"] = json!(version.to_string());
                let patched = obj.clone();
                st.next_version = version;
                (StatusCode::OK, patched)
            }
            (&Method::DELETE, Some(n), None) => match st.objects.remove(&key(n)) {
                Some(obj) => {
                    // The garbage collector: objects owned by the deleted one go too.
                    let uid = obj["metadata"]["uid"].clone();
                    st.objects.retain(|_, o| {
                        !o["metadata"]["ownerReferences"]
                            .as_array()
                            .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid))
                    });
                    (StatusCode::OK, obj)
                }
                None => missing(n),
            },
            _ => status(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "unsupported".into(),
            ),
        }
    }
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
    /// One pod per Deployment scaled above zero, labelled like its template.
    fn pods(&self, selector: Option<&String>) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|((r, _), d)| {
                r == "deployments" && d["spec"]["replicas"].as_i64().unwrap_or(1) > 0
            })
            .map(|((_, name), d)| {
                json!({"metadata": {"name": format!("{name}-pod"),
                        "labels": d["spec"]["template"]["metadata"]["labels"].clone()},
                       "status": self.pod_status.clone()})
            })
            .filter(|p| labels_match(p, selector))
            .collect()
    }
}
