//! Prometheus metrics at `GET /metrics` (text format, no authentication — scrape it from inside
//! the cluster).
//!
//! Names follow `streamspace_<area>_<what>_<unit>`:
//! - `streamspace_agents_connected` (gauge): agents holding a connection to this replica;
//! - `streamspace_commands_total{status}` (counter): commands this replica created (`pending`),
//!   sent (`sent`), and saw finish (`completed`, `failed`);
//! - `streamspace_command_duration_seconds{action, status}` (histogram): from a command's creation
//!   to its end, for the commands this replica saw finish;
//! - `streamspace_deliveries_total{path}` (counter): wake-ups delivered here (`local`) or
//!   forwarded to the owning replica through Redis (`routed`);
//! - `streamspace_command_resends_total` (counter): delivery attempts after the first;
//! - `streamspace_routing_failures_total{reason}` (counter): wake-ups that could not be
//!   forwarded (`redis` unreachable, `no_subscriber` on the owner's channel) — the sweep
//!   delivers those;
//! - `streamspace_tunnel_streams` and `streamspace_tunnel_pending` (gauges): viewer streams
//!   spliced on this replica, and tunnels waiting for their agent's data connection;
//! - `streamspace_tunnel_bytes_total{direction}` (counter): bytes of viewer streams passed on by
//!   the replica holding the viewer, `to_viewer` (what the session showed, after filtering) and
//!   `to_session` (what the viewer sent and the filter let through) — its rate is the relay
//!   throughput;
//! - `streamspace_command_waits_total{answer}` (counter): waiting command reads (`?wait=`) by
//!   how they ended — the outcome `announced` (here or by another replica through Redis), found
//!   by a `read` of the database, or `timeout` with the command unfinished;
//! - `streamspace_replica_hops_total{kind, scheme}` (counter): calls this replica made to
//!   another one for a viewer stream — asking the agent's replica to `open` it, or carrying its
//!   `data` to the viewer's replica — by `scheme` (`https` when the peer serves TLS, else
//!   `http`);
//! - `streamspace_tunnel_data_connections_total{transport}` (counter): agents' data
//!   connections (and hops carrying them) accepted here, `raw` (upgraded to a raw stream) or
//!   `websocket` (the fallback, and file transfers) — a `websocket` share that grows for viewer
//!   streams means something in front of the replicas refuses the raw upgrade;
//! - `streamspace_redis_up` (gauge): 1 while Redis is connected, 0 otherwise (absent without
//!   Redis).
//!
//! The recorder is process-wide: replicas started in one process (tests) share it.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Bucket bounds of `streamspace_command_duration_seconds`: a start that takes milliseconds with
/// the process runtime to one that pulls an image for minutes.
const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder once; `None` if another recorder was installed first.
fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            // Command durations as buckets (not the exporter's default summary), so dashboards
            // can aggregate quantiles over replicas.
            let builder = PrometheusBuilder::new();
            let builder = match builder.set_buckets_for_metric(
                Matcher::Full("streamspace_command_duration_seconds".into()),
                &DURATION_BUCKETS,
            ) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "command duration buckets refused");
                    PrometheusBuilder::new()
                }
            };
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            match metrics::set_global_recorder(recorder) {
                Ok(()) => Some(handle),
                Err(_) => {
                    tracing::warn!("a metrics recorder was already installed; /metrics is empty");
                    None
                }
            }
        })
        .as_ref()
}

/// Makes sure the recorder exists before anything is counted.
pub(crate) fn init() {
    let _ = handle();
}

/// The counter of bytes relayed in one `direction` of viewer streams (`to_viewer` or
/// `to_session`); a stream takes its handle once and adds to it per frame.
pub(crate) fn tunnel_bytes(direction: &'static str) -> metrics::Counter {
    metrics::counter!("streamspace_tunnel_bytes_total", "direction" => direction)
}

pub(crate) fn command(status: &'static str) {
    metrics::counter!("streamspace_commands_total", "status" => status).increment(1);
}

/// A command this replica saw finish: counted by status, and its duration from creation.
pub(crate) fn command_finished(finished: &streamspace_proto::api::Command) {
    command(finished.status.as_str());
    let end = finished.completed_at.unwrap_or(finished.updated_at);
    let seconds = (end - finished.created_at).as_seconds_f64().max(0.0);
    metrics::histogram!(
        "streamspace_command_duration_seconds",
        "action" => finished.action.as_str(),
        "status" => finished.status.as_str(),
    )
    .record(seconds);
}

pub(crate) fn delivery(path: &'static str) {
    metrics::counter!("streamspace_deliveries_total", "path" => path).increment(1);
}

pub(crate) fn resend() {
    metrics::counter!("streamspace_command_resends_total").increment(1);
}

pub(crate) fn routing_failure(reason: &'static str) {
    metrics::counter!("streamspace_routing_failures_total", "reason" => reason).increment(1);
}

pub(crate) fn command_wait(answer: &'static str) {
    metrics::counter!("streamspace_command_waits_total", "answer" => answer).increment(1);
}

pub(crate) fn replica_hop(kind: &'static str, scheme: &'static str) {
    metrics::counter!("streamspace_replica_hops_total", "kind" => kind, "scheme" => scheme)
        .increment(1);
}

pub(crate) fn data_connection(transport: &'static str) {
    metrics::counter!("streamspace_tunnel_data_connections_total", "transport" => transport)
        .increment(1);
}

pub(crate) fn redis_up(up: bool) {
    metrics::gauge!("streamspace_redis_up").set(if up { 1.0 } else { 0.0 });
}

/// The text `GET /metrics` answers, given the agents connected here.
pub(crate) fn render(connected: usize) -> impl IntoResponse {
    metrics::gauge!("streamspace_agents_connected").set(connected as f64);
    let body = handle().map(PrometheusHandle::render).unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}
