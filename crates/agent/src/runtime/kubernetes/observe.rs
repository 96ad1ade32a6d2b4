//! What a session's Deployment and pods say about it: readiness comes from the pod's `Ready`
//! condition, failure from the few container states that never fix themselves.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;

/// Container waiting reasons that mean the session will not come up without someone changing
/// the template or the cluster.
const FATAL_WAITING: [&str; 6] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// The observed condition of one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// Scaled to zero.
    Hibernated,
    /// A pod of the session is Ready: its VNC port accepts connections.
    Ready,
    /// Wanted up, not Ready yet (scheduling, pulling, starting, or restarting after a node
    /// went away). Not a failure.
    NotReady,
    /// Will not come up; the message says why.
    Failed(String),
}

/// The desired replica count of a session's Deployment (a Deployment without one has one).
pub fn replicas(deployment: &Deployment) -> i32 {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
}

/// Whether an object is on its way out (deleted with a finalizer or a grace period pending).
pub fn is_deleting(deployment: &Deployment) -> bool {
    deployment.metadata.deletion_timestamp.is_some()
}

/// Combines the Deployment and the session's pods into one observation.
pub fn observe(deployment: &Deployment, pods: &[Pod]) -> Observed {
    if replicas(deployment) == 0 {
        return Observed::Hibernated;
    }
    let live: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    if live.iter().any(|p| pod_ready(p)) {
        return Observed::Ready;
    }
    match live.iter().find_map(|p| pod_failure(p)) {
        Some(why) => Observed::Failed(why),
        None => Observed::NotReady,
    }
}

/// The pod's `Ready` condition is `True`.
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conds| {
            conds
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

/// Why the pod will never become Ready, if it will not.
pub fn pod_failure(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() == Some("Failed") {
        let why = status
            .message
            .clone()
            .or_else(|| status.reason.clone())
            .unwrap_or_else(|| "the pod failed".to_owned());
        return Some(format!("pod failed: {why}"));
    }
    status.container_statuses.iter().flatten().find_map(|c| {
        let waiting = c.state.as_ref()?.waiting.as_ref()?;
        let reason = waiting.reason.as_deref()?;
        FATAL_WAITING
            .contains(&reason)
            .then(|| match &waiting.message {
                Some(message) => format!("container {}: {reason}: {message}", c.name),
                None => format!("container {}: {reason}", c.name),
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "status": status}))
            .expect("a valid pod")
    }

    fn deployment(replicas: i32) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "d"},
            "spec": {"replicas": replicas, "selector": {}, "template": {}}
        }))
        .expect("a valid deployment")
    }

    #[test]
    fn readiness_follows_the_ready_condition() {
        let ready = pod(json!({"phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}]}));
        let running_not_ready = pod(json!({"phase": "Running",
            "conditions": [{"type": "Ready", "status": "False"}]}));
        let pending = pod(json!({"phase": "Pending"}));
        assert_eq!(
            observe(&deployment(1), std::slice::from_ref(&ready)),
            Observed::Ready
        );
        assert_eq!(
            observe(&deployment(1), &[running_not_ready]),
            Observed::NotReady
        );
        assert_eq!(observe(&deployment(1), &[pending]), Observed::NotReady);
        assert_eq!(observe(&deployment(1), &[]), Observed::NotReady);
        assert_eq!(observe(&deployment(0), &[ready]), Observed::Hibernated);
    }

    #[test]
    fn failures_that_never_heal_are_reported() {
        let pull = pod(json!({"phase": "Pending", "containerStatuses": [{
            "name": "session", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ImagePullBackOff", "message": "no such image"}}}]}));
        assert_eq!(
            observe(&deployment(1), &[pull]),
            Observed::Failed("container session: ImagePullBackOff: no such image".into())
        );
        let creating = pod(json!({"phase": "Pending", "containerStatuses": [{
            "name": "session", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ContainerCreating"}}}]}));
        assert_eq!(observe(&deployment(1), &[creating]), Observed::NotReady);
        let failed = pod(json!({"phase": "Failed", "reason": "Evicted"}));
        assert_eq!(
            observe(&deployment(1), &[failed]),
            Observed::Failed("pod failed: Evicted".into())
        );
    }
}
