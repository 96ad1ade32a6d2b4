//! The HTTP server's own defences: security headers, the header-read timeout (slow and idle
//! connections), the connection limit, `/metrics` protection and the limiter on bad
//! credentials. Every test waits for the event itself (a closed socket, an answer), never for
//! a length of time.

use std::time::Duration;

use reqwest::StatusCode;
use streamspace_server::ServerConfig;
use streamspace_server::{HttpConfig, MetricsToken};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

fn with_http(http: HttpConfig) -> ServerConfig {
    ServerConfig {
        http,
        ..fast_config()
    }
}

fn addr(s: &TestServer) -> String {
    s.base.trim_start_matches("http://").to_owned()
}

/// Reads until the server closes the connection; what it sent.
async fn read_to_close(stream: &mut TcpStream) -> anyhow::Result<String> {
    let mut seen = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut seen))
        .await
        .map_err(|_| anyhow::anyhow!("the server kept the connection open"))??;
    Ok(String::from_utf8_lossy(&seen).into_owned())
}

#[tokio::test]
async fn every_answer_carries_the_security_headers() -> anyhow::Result<()> {
    let s = TestServer::sqlite(fast_config()).await?;
    for path in ["/", "/api/v1/sessions", "/api/v1/nope"] {
        let response = s.http.get(format!("{}{path}", s.base)).send().await?;
        let h = response.headers();
        let csp = h
            .get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(csp.contains("default-src 'self'"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert_eq!(
            h.get("x-content-type-options").map(|v| v.as_bytes()),
            Some(&b"nosniff"[..])
        );
        assert_eq!(
            h.get("referrer-policy").map(|v| v.as_bytes()),
            Some(&b"no-referrer"[..])
        );
        assert!(
            h.get("strict-transport-security").is_none(),
            "no HSTS over plain http"
        );
    }
    let https = TestServer::sqlite(with_http(HttpConfig {
        https: true,
        ..HttpConfig::default()
    }))
    .await?;
    let response = https.http.get(format!("{}/", https.base)).send().await?;
    assert!(
        response.headers().contains_key("strict-transport-security"),
        "HSTS when served over https"
    );
    Ok(())
}

#[tokio::test]
async fn slow_and_idle_connections_are_closed() -> anyhow::Result<()> {
    let s = TestServer::sqlite(with_http(HttpConfig {
        header_read_timeout: Duration::from_millis(300),
        ..HttpConfig::default()
    }))
    .await?;
    // Half a header, never finished: the server hangs up.
    let mut slow = TcpStream::connect(addr(&s)).await?;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await?;
    let seen = read_to_close(&mut slow).await?;
    assert!(!seen.contains("200 OK"), "{seen}");

    // A kept-alive connection is answered, then closed once idle.
    let mut idle = TcpStream::connect(addr(&s)).await?;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await?;
    let seen = read_to_close(&mut idle).await?;
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    Ok(())
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_for_a_free_slot() -> anyhow::Result<()> {
    // The readiness check's kept-alive connection holds the one slot until it is idle for
    // the header-read timeout.
    let s = TestServer::sqlite(with_http(HttpConfig {
        max_connections: 1,
        header_read_timeout: Duration::from_secs(1),
        ..HttpConfig::default()
    }))
    .await?;
    let mut first = TcpStream::connect(addr(&s)).await?;
    first
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await?;
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(WAIT, first.read(&mut buf)).await??;
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // A second connection is accepted by the kernel but served only after the first ends.
    let mut second = TcpStream::connect(addr(&s)).await?;
    second
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await?;
    drop(first);
    let seen = read_to_close(&mut second).await?;
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    Ok(())
}

#[tokio::test]
async fn metrics_can_require_a_token_or_a_listener_of_their_own() -> anyhow::Result<()> {
    let s = TestServer::sqlite(with_http(HttpConfig {
        metrics_token: Some(MetricsToken("scrape-me".into())),
        ..HttpConfig::default()
    }))
    .await?;
    let metrics = format!("{}/metrics", s.base);
    let (status, body) = read(s.http.get(&metrics).send().await?).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&body, "unauthorized");
    let wrong = s.http.get(&metrics).bearer_auth("scrape-you");
    assert_eq!(wrong.send().await?.status(), StatusCode::UNAUTHORIZED);
    let right = s.http.get(&metrics).bearer_auth("scrape-me").send().await?;
    assert_eq!(right.status(), StatusCode::OK);
    assert!(right.text().await?.contains("streamspace_"));

    let port = streamspace_testkit::free_port()?;
    let apart = TestServer::sqlite(with_http(HttpConfig {
        metrics_listen: Some(format!("127.0.0.1:{port}")),
        ..HttpConfig::default()
    }))
    .await?;
    let (status, _) = read(
        apart
            .http
            .get(format!("{}/metrics", apart.base))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, StatusCode::NOT_FOUND, "not beside the API");
    let own = format!("http://127.0.0.1:{port}/metrics");
    let text = streamspace_testkit::wait_until("the metrics listener", WAIT, || async {
        let response = apart.http.get(&own).send().await.ok()?;
        (response.status() == StatusCode::OK).then_some(response.text().await.ok()?)
    })
    .await?;
    assert!(text.contains("streamspace_"), "{text}");
    Ok(())
}

#[tokio::test]
async fn a_flood_of_bad_tokens_is_slowed_down() -> anyhow::Result<()> {
    let s = TestServer::sqlite(fast_config()).await?;
    let sessions = format!("{}/api/v1/sessions", s.base);
    let mut refused = None;
    for n in 0..100 {
        let request = s
            .http
            .get(&sessions)
            .bearer_auth(format!("ssp_made-up-{n}"));
        let response = request.send().await?;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            let retry = response.headers().get("retry-after").cloned();
            let (_, body) = read(response).await?;
            assert_error(&body, "too_many_attempts");
            assert!(retry.is_some(), "429 says when to retry");
            refused = Some(n);
            break;
        }
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let refused = refused.ok_or_else(|| anyhow::anyhow!("100 bad tokens were all looked up"))?;
    assert!(refused >= 10, "refused after only {refused} bad tokens");
    // Signing in from the same address still works: the two allowances are separate.
    let (status, body) = read(
        s.http
            .post(format!("{}/api/v1/auth/login", s.base))
            .json(&serde_json::json!({"username": "nobody", "password": "wrong password"}))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    Ok(())
}
