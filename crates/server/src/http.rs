//! The HTTP server around the router: connection limits, timeouts and the headers every
//! answer carries.
//!
//! - At most `HttpConfig::max_connections` connections are served at once; beyond that the
//!   replica stops accepting and new connections wait in the kernel's backlog.
//! - A client must send a request's whole header within `HttpConfig::header_read_timeout`,
//!   counted from the moment the connection is waiting for it: this bounds both a slow header
//!   (slowloris) and an idle keep-alive connection.
//! - A request must be answered within `HttpConfig::request_timeout` (408 `request_timeout`),
//!   except long polls (`?wait=`) and WebSocket upgrades, which bound themselves.
//! - Every answer carries the security headers of [`security_headers`].
//! - With TLS (see `crate::tls`), each connection's handshake runs in its own task, bounded by
//!   the header-read timeout, so a client that stalls it holds only its own slot.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::serve::Listener;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::config::HttpConfig;
use crate::error::ApiError;
use crate::tls::ClientCert;

/// The policy for the UI's pages: its own scripts, styles, images and fonts only; API calls
/// and WebSockets (viewers) to this origin only; never framed by another site.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data: blob:; font-src 'self'; connect-src 'self'; \
     object-src 'none'; base-uri 'none'; frame-ancestors 'none'";
/// A year, with subdomains, when served over https.
const HSTS: &str = "max-age=31536000; includeSubDomains";

/// Middleware adding the security headers to every answer (a handler's own values win).
pub(crate) async fn security_headers(
    State(https): State<bool>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let mut set = |name, value: &'static str| {
        headers
            .entry(name)
            .or_insert_with(|| HeaderValue::from_static(value));
    };
    set(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY);
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(header::REFERRER_POLICY, "no-referrer");
    set(header::X_FRAME_OPTIONS, "DENY");
    if https {
        set(header::STRICT_TRANSPORT_SECURITY, HSTS);
    }
    response
}

/// Middleware answering 408 when a request takes longer than the timeout; long polls
/// (`?wait=`), WebSocket upgrades and file transfers are left to bound themselves.
pub(crate) async fn request_timeout(
    State(limit): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    if exempt(&request) {
        return next.run(request).await;
    }
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!("the request took longer than {} s", limit.as_secs_f64()),
        )
        .into_response(),
    }
}

fn exempt(request: &Request) -> bool {
    let upgrade = request.headers().contains_key(header::UPGRADE);
    let waits = request
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|pair| pair.starts_with("wait=")));
    // Uploads and downloads bound themselves (each frame has its own timeout).
    let transfer = request.uri().path().starts_with("/api/v1/sessions/")
        && request.uri().path().contains("/files/");
    upgrade || waits || transfer
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then lets the open
/// connections finish their requests (WebSockets are closed by their owners). With `tls`, each
/// connection first completes a TLS handshake (within the header-read timeout); its requests
/// then carry a [`ClientCert`].
pub(crate) async fn serve<L>(
    mut listener: L,
    router: Router,
    config: &HttpConfig,
    tls: Option<TlsAcceptor>,
    shutdown: CancellationToken,
) where
    L: Listener<Addr = SocketAddr>,
    L::Io: Unpin,
{
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .keep_alive(true);
    let handshake_timeout = config.header_read_timeout;
    // Each connection holds a receiver; when all are dropped, every connection has ended.
    let (closed_tx, closed_rx) = watch::channel(());
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            _ = shutdown.cancelled() => break,
        };
        let Ok(slot) = slot else { break };
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.cancelled() => break,
        };
        let connection = Connection {
            router: router.clone(),
            builder: builder.clone(),
            peer,
            shutdown: shutdown.clone(),
        };
        let (closed, tls) = (closed_rx.clone(), tls.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let _closed = closed;
            let Some(tls) = tls else {
                return connection.serve(io, None).await;
            };
            let accepted = tokio::select! {
                accepted = tokio::time::timeout(handshake_timeout, tls.accept(io)) => accepted,
                _ = connection.shutdown.cancelled() => return,
            };
            match accepted {
                Ok(Ok(stream)) => {
                    let verified = stream.get_ref().1.peer_certificates().is_some();
                    connection.serve(stream, Some(ClientCert(verified))).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
    drop(closed_rx);
    drop(listener);
    closed_tx.closed().await;
}

/// What serving one accepted connection needs.
struct Connection {
    router: Router,
    builder: hyper::server::conn::http1::Builder,
    peer: SocketAddr,
    shutdown: CancellationToken,
}

impl Connection {
    /// Serves requests on `io` until the client leaves or, after `shutdown`, the request in
    /// flight is answered.
    async fn serve<I>(self, io: I, cert: Option<ClientCert>)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let Self {
            router,
            builder,
            peer,
            shutdown,
        } = self;
        let service = hyper::service::service_fn(move |request: hyper::Request<_>| {
            let mut request = request.map(Body::new);
            request.extensions_mut().insert(ConnectInfo(peer));
            if let Some(cert) = cert {
                request.extensions_mut().insert(cert);
            }
            let router = router.clone();
            async move { Ok::<_, Infallible>(router.oneshot(request).await.into_response()) }
        });
        let connection = builder
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        let mut connection = std::pin::pin!(connection);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::trace!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = shutdown.cancelled() => connection.as_mut().graceful_shutdown(),
        }
        if let Err(e) = connection.await {
            tracing::trace!(%peer, error = %e, "connection ended with an error");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::middleware::from_fn_with_state;
    use axum::routing::get;

    /// With paused time, a handler that takes an hour is cut off at the limit, unless the
    /// request is a long poll.
    #[tokio::test(start_paused = true)]
    async fn slow_requests_are_answered_408() {
        let app = Router::new()
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    "done"
                }),
            )
            .layer(from_fn_with_state(Duration::from_secs(5), request_timeout));
        let get = |uri: &str| {
            axum::http::Request::builder()
                .uri(uri)
                .body(Body::empty())
                .expect("a request")
        };
        let response = app.clone().oneshot(get("/slow")).await.expect("answered");
        assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .expect("a body");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(body["error"]["code"], "request_timeout");
        let response = app.oneshot(get("/slow?wait=1h")).await.expect("answered");
        assert_eq!(response.status(), StatusCode::OK, "long polls are exempt");
    }

    #[test]
    fn long_polls_and_upgrades_are_exempt_from_the_request_timeout() {
        let request = |uri: &str| {
            axum::http::Request::builder()
                .uri(uri)
                .body(Body::empty())
                .expect("a request")
        };
        assert!(!exempt(&request("/api/v1/sessions")));
        assert!(!exempt(&request("/api/v1/commands/x?waiting=1")));
        assert!(exempt(&request("/api/v1/commands/x?wait=30s")));
        assert!(exempt(&request("/api/v1/agents/a/ping?x=1&wait=5")));
        let mut upgrade = request("/api/v1/agents/connect");
        upgrade
            .headers_mut()
            .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(exempt(&upgrade));
    }
}
