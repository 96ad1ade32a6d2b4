//! Viewer streams at the server: the browser endpoint and the agent's data endpoint, with a
//! fake agent playing the agent's side of the tunnel over real WebSockets.

use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use streamspace_proto::api::{Action, SessionState};
use streamspace_proto::tunnel::ConnectInfo;
use streamspace_proto::wire::{AgentMessage, ServerMessage, TunnelOpen};
use streamspace_server::{ServerConfig, TunnelConfig};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

use crate::common::fake_agent::{FakeAgent, Refused, open};
use crate::common::{TestServer, fast_config};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn config() -> ServerConfig {
    ServerConfig {
        tunnel: TunnelConfig {
            // Long, so a viewer closed quickly proves the agent's report closed it.
            open_timeout: Duration::from_secs(60),
            ..TunnelConfig::default()
        },
        ..fast_config()
    }
}

/// A server with agent `a1` holding one running session.
async fn running_session() -> anyhow::Result<(TestServer, FakeAgent, Uuid)> {
    running_session_with(config()).await
}

async fn running_session_with(
    config: ServerConfig,
) -> anyhow::Result<(TestServer, FakeAgent, Uuid)> {
    let s = TestServer::sqlite(config).await?;
    let mut agent = s.agent("a1", 4).await?;
    let id = run_a_session(&s, &mut agent).await?;
    Ok((s, agent, id))
}

/// Creates an `xterm` session, which `agent` (the only one) starts and reports running.
async fn run_a_session(s: &TestServer, agent: &mut FakeAgent) -> anyhow::Result<Uuid> {
    let session = s.create_session("xterm").await?;
    agent.run_next(Action::StartSession).await?;
    agent
        .send(&AgentMessage::SessionStatus(FakeAgent::status(
            session.id,
            SessionState::Running,
        )))
        .await?;
    s.wait_session_state(session.id, SessionState::Running)
        .await?;
    Ok(session.id)
}

async fn connect_info(s: &TestServer, id: Uuid) -> anyhow::Result<ConnectInfo> {
    let (status, body) = s
        .call(
            Method::POST,
            &format!("/api/v1/sessions/{id}/connect"),
            None,
        )
        .await?;
    if !status.is_success() {
        bail!("connect answered {status}: {body}");
    }
    Ok(serde_json::from_value(body)?)
}

async fn tunnel_open(agent: &mut FakeAgent) -> anyhow::Result<TunnelOpen> {
    match agent.recv().await? {
        ServerMessage::TunnelOpen(open) => Ok(open),
        other => bail!("expected tunnel_open, got {other:?}"),
    }
}

fn data_url(s: &TestServer, token: &str) -> String {
    format!(
        "{}?token={token}",
        s.ws_url.replace("/agents/connect", "/agents/tunnel")
    )
}

async fn refused(url: &str, key: &str, origin: Option<&str>) -> anyhow::Result<(u16, String)> {
    match open(url, key, origin).await? {
        Ok(_) => bail!("{url} was accepted"),
        Err(Refused { status, body }) => Ok((
            status,
            body["error"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )),
    }
}

/// Opens a viewer URL expecting a refusal before the upgrade.
async fn viewer_refused(url: &str) -> anyhow::Result<(u16, String)> {
    match tokio_tungstenite::connect_async(url).await {
        Ok(_) => bail!("{url} was accepted"),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body: serde_json::Value = response
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or_default();
            let code = body["error"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            Ok((response.status().as_u16(), code))
        }
        Err(e) => bail!("{url}: {e}"),
    }
}

async fn next_binary(ws: &mut Ws) -> anyhow::Result<Vec<u8>> {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .context("no frame in time")?;
        match frame {
            Some(Ok(Message::Binary(b))) => return Ok(b.to_vec()),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => bail!("expected a binary frame, got {other:?}"),
        }
    }
}

async fn close_code(ws: &mut Ws) -> anyhow::Result<u16> {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .context("no close frame in time")?;
        match frame {
            Some(Ok(Message::Close(f))) => return Ok(f.map_or(1005, |f| f.code.into())),
            Some(Ok(_)) => {}
            other => bail!("expected a close frame, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn data_connections_need_the_agents_key_and_a_fresh_token() -> anyhow::Result<()> {
    let (s, mut agent, id) = running_session().await?;
    let key_a1 = s.agent_key("a1").await?;
    let key_a2 = s.agent_key("a2").await?;
    let info = connect_info(&s, id).await?;
    let (mut viewer, _) = tokio_tungstenite::connect_async(info.url.as_str()).await?;
    let open_msg = tunnel_open(&mut agent).await?;
    assert_eq!(open_msg.session_id, id);
    let url = data_url(&s, &open_msg.token);

    assert_eq!(
        refused(&url, "nope", None).await?,
        (401, "unauthorized".into())
    );
    assert_eq!(
        refused(&url, &key_a1, Some("https://evil.example")).await?,
        (403, "forbidden_origin".into())
    );
    assert_eq!(
        refused(&url, &key_a2, None).await?,
        (403, "wrong_agent".into())
    );
    let other = data_url(&s, "sst_not-a-token");
    assert_eq!(
        refused(&other, &key_a1, None).await?,
        (401, "invalid_token".into())
    );

    let mut data = match open(&url, &key_a1, None).await? {
        Ok(ws) => ws,
        Err(r) => bail!("the data connection was refused: {r:?}"),
    };
    assert_eq!(
        refused(&url, &key_a1, None).await?,
        (401, "invalid_token".into()),
        "a stream token works once"
    );

    data.send(Message::binary(b"RFB 003.008\n".to_vec()))
        .await?;
    assert_eq!(next_binary(&mut viewer).await?, b"RFB 003.008\n");
    viewer.send(Message::binary(vec![1, 2, 3])).await?;
    assert_eq!(next_binary(&mut data).await?, [1, 2, 3]);

    viewer.send(Message::text("not vnc")).await?;
    assert_eq!(
        close_code(&mut viewer).await?,
        1003,
        "text frames end the stream"
    );
    assert_eq!(
        close_code(&mut data).await?,
        1003,
        "and the agent's side with it"
    );

    // With its agent gone, a session cannot be viewed: 503 before the upgrade.
    agent.close().await;
    s.wait_agent_status("a1", streamspace_proto::api::AgentStatus::Offline)
        .await?;
    assert_eq!(
        viewer_refused(&info.url).await?,
        (503, "agent_unavailable".into())
    );
    s.stop().await
}

/// Dials the raw data connection at `url` with `key`, as the agent does first.
async fn raw(
    url: &str,
    key: &str,
) -> Result<streamspace_client::raw_stream::RawStream, streamspace_client::raw_stream::RawDialError>
{
    let url = reqwest::Url::parse(url).expect("a data URL");
    let auth = format!("Bearer {key}").parse().expect("a header value");
    let headers = reqwest::header::HeaderMap::from_iter([(reqwest::header::AUTHORIZATION, auth)]);
    streamspace_client::raw_stream::dial(&url, headers, None).await
}

fn refusal(
    result: Result<impl Sized, streamspace_client::raw_stream::RawDialError>,
) -> (u16, bool) {
    match result {
        Err(e @ streamspace_client::raw_stream::RawDialError::Refused { status, .. }) => {
            (status.as_u16(), e.is_refusal())
        }
        Err(e) => panic!("expected an HTTP refusal, got {e:?}"),
        Ok(_) => panic!("the raw data connection was accepted"),
    }
}

#[tokio::test]
async fn a_raw_data_connection_carries_the_bytes_as_they_are() -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (s, mut agent, id) = running_session().await?;
    let key_a1 = s.agent_key("a1").await?;
    let key_a2 = s.agent_key("a2").await?;
    let info = connect_info(&s, id).await?;
    let (mut viewer, _) = tokio_tungstenite::connect_async(info.url.as_str()).await?;
    let url = data_url(&s, &tunnel_open(&mut agent).await?.token);

    // Wrong credentials are answered as on a WebSocket, and are no reason to fall back to one.
    assert_eq!(refusal(raw(&url, "nope").await), (401, false));
    assert_eq!(refusal(raw(&url, &key_a2).await), (403, false));
    let mut data = raw(&url, &key_a1).await?;
    assert_eq!(
        refusal(raw(&url, &key_a1).await),
        (401, false),
        "a stream token works once"
    );

    data.write_all(b"RFB 003.008\n").await?;
    assert_eq!(next_binary(&mut viewer).await?, b"RFB 003.008\n");
    viewer.send(Message::binary(vec![1, 2, 3])).await?;
    let mut three = [0; 3];
    data.read_exact(&mut three).await?;
    assert_eq!(three, [1, 2, 3]);

    // A bulk update larger than any one read arrives whole and in order.
    let bulk: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
    let writing = {
        let bulk = bulk.clone();
        async move {
            data.write_all(&bulk).await?;
            anyhow::Ok(data)
        }
    };
    let reading = async {
        let mut got = Vec::new();
        while got.len() < bulk.len() {
            got.extend(next_binary(&mut viewer).await?);
        }
        anyhow::Ok(got)
    };
    let (data, got) = tokio::try_join!(writing, reading)?;
    assert!(
        got == bulk,
        "the bulk arrived changed ({} bytes)",
        got.len()
    );

    // The agent ending its side ends the viewer's stream cleanly.
    let mut data = data;
    data.shutdown().await?;
    assert_eq!(close_code(&mut viewer).await?, 1000);

    // A viewer leaving ends the agent's side: it reads the end of the stream.
    let (mut viewer, _) = tokio_tungstenite::connect_async(info.url.as_str()).await?;
    let url = data_url(&s, &tunnel_open(&mut agent).await?.token);
    let mut data = raw(&url, &key_a1).await?;
    data.write_all(&[7]).await?;
    assert_eq!(next_binary(&mut viewer).await?, [7]);
    viewer.close(None).await?;
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), data.read_to_end(&mut rest))
        .await
        .context("the agent's side was not ended")??;

    let metrics = s
        .http
        .get(format!("{}/metrics", s.base))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        metrics.contains(r#"streamspace_tunnel_data_connections_total{transport="raw"} 2"#),
        "both streams are counted as raw: {metrics}"
    );
    s.stop().await
}

/// A file transfer's frames carry tags, which a raw stream has not: an agent that answers a
/// transfer with a raw data connection gets its upgrade, and the API client a 502 that says
/// why, not a hang or a garbled file.
#[tokio::test]
async fn a_transfer_opened_as_a_raw_stream_is_refused_with_502() -> anyhow::Result<()> {
    let s = TestServer::sqlite(config()).await?;
    let key = s.agent_key("a1").await?;
    let AgentMessage::Register(register) =
        crate::common::fake_agent::register_message("a1", 4, vec![])
    else {
        bail!("register_message made no register");
    };
    let register = AgentMessage::Register(streamspace_proto::wire::Register {
        file_transfer: true,
        ..register
    });
    let mut agent = FakeAgent::connect_with(&s.ws_url, &key, "a1", register).await?;
    let id = run_a_session(&s, &mut agent).await?;

    let path = format!("/api/v1/sessions/{id}/files");
    let answer_raw = async {
        let open = match agent.recv().await? {
            ServerMessage::TransferOpen(open) => open,
            other => bail!("expected transfer_open, got {other:?}"),
        };
        // Held open until the API has answered: the refusal is the server's, not a hang-up.
        raw(&data_url(&s, &open.token), &key)
            .await
            .context("the raw upgrade itself is accepted")
    };
    let (listed, stream) = tokio::join!(s.call(Method::GET, &path, None), answer_raw);
    let _stream = stream?;
    let (status, body) = listed?;
    assert_eq!(status, reqwest::StatusCode::BAD_GATEWAY, "{body}");
    crate::common::assert_error(&body, "agent_unavailable");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("raw stream")),
        "{body}"
    );
    s.stop().await
}

#[tokio::test]
async fn agent_reports_and_session_changes_close_viewers() -> anyhow::Result<()> {
    let (s, mut agent, id) = running_session().await?;
    let key = s.agent_key("a1").await?;
    let info = connect_info(&s, id).await?;

    // The agent cannot open the stream: the viewer hears at once, not after the open timeout.
    let (mut failed, _) = tokio_tungstenite::connect_async(info.url.as_str()).await?;
    let open_msg = tunnel_open(&mut agent).await?;
    agent
        .send(&AgentMessage::TunnelError {
            tunnel_id: open_msg.tunnel_id,
            session_id: id,
            error: "connection refused".into(),
        })
        .await?;
    assert_eq!(close_code(&mut failed).await?, 1011);

    // A session that leaves `running` closes its viewers cleanly, and the agent's side too.
    let (mut viewer, _) = tokio_tungstenite::connect_async(info.url.as_str()).await?;
    let open_msg = tunnel_open(&mut agent).await?;
    let mut data = match open(&data_url(&s, &open_msg.token), &key, None).await? {
        Ok(ws) => ws,
        Err(r) => bail!("the data connection was refused: {r:?}"),
    };
    data.send(Message::binary(vec![9])).await?;
    assert_eq!(next_binary(&mut viewer).await?, [9]);
    agent
        .send(&AgentMessage::SessionStatus(FakeAgent::status(
            id,
            SessionState::Hibernated,
        )))
        .await?;
    assert_eq!(close_code(&mut viewer).await?, 1000);
    assert_eq!(close_code(&mut data).await?, 1000);

    // Not running: no new token, and the old one opens nothing.
    let (status, _) = s
        .call(
            Method::POST,
            &format!("/api/v1/sessions/{id}/connect"),
            None,
        )
        .await?;
    assert_eq!(status.as_u16(), 409);
    assert_eq!(
        viewer_refused(&info.url).await?,
        (409, "session_not_running".into())
    );
    s.stop().await
}

#[tokio::test]
async fn a_replica_shutting_down_closes_its_viewers_with_going_away() -> anyhow::Result<()> {
    let (s, mut agent, id) = running_session().await?;
    let key = s.agent_key("a1").await?;
    let info = connect_info(&s, id).await?;
    let (mut viewer, _) = tokio_tungstenite::connect_async(info.url.as_str()).await?;
    let open_msg = tunnel_open(&mut agent).await?;
    let mut data = match open(&data_url(&s, &open_msg.token), &key, None).await? {
        Ok(ws) => ws,
        Err(r) => bail!("the data connection was refused: {r:?}"),
    };
    data.send(Message::binary(vec![1])).await?;
    assert_eq!(next_binary(&mut viewer).await?, [1]);
    let stopping = tokio::spawn(s.stop());
    assert_eq!(close_code(&mut viewer).await?, 1001);
    assert_eq!(close_code(&mut data).await?, 1001);
    stopping.await??;
    Ok(())
}

#[tokio::test]
async fn a_replica_refuses_streams_beyond_its_limit() -> anyhow::Result<()> {
    let (s, mut agent, id) = running_session_with(ServerConfig {
        tunnel: TunnelConfig {
            max_streams: 1,
            ..TunnelConfig::default()
        },
        ..fast_config()
    })
    .await?;
    let info = connect_info(&s, id).await?;
    let (_first, _) = tokio_tungstenite::connect_async(info.url.as_str()).await?;
    tunnel_open(&mut agent).await?;
    assert_eq!(
        viewer_refused(&info.url).await?,
        (503, "too_many_streams".into())
    );
    s.stop().await
}

/// Sends a request as `token`.
async fn call_as(
    s: &TestServer,
    token: &str,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<(reqwest::StatusCode, serde_json::Value)> {
    let mut request = s
        .http
        .request(method, format!("{}{path}", s.base))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    crate::common::read(request.send().await?).await
}

#[tokio::test]
async fn a_user_who_loses_access_loses_their_viewers() -> anyhow::Result<()> {
    let s = TestServer::sqlite(config()).await?;
    let mut agent = s.agent("a1", 4).await?;
    let key = s.agent_key("a1").await?;
    let user = serde_json::json!({ "username": "alice", "password": "alice-password-1" });
    let (status, body) = s.call(Method::POST, "/api/v1/users", Some(user)).await?;
    anyhow::ensure!(status.is_success(), "{body}");
    let login = serde_json::json!({
        "username": "alice", "password": "alice-password-1", "token_name": "t"
    });
    let (_, body) = crate::common::read(
        s.http
            .post(format!("{}/api/v1/auth/login", s.base))
            .json(&login)
            .send()
            .await?,
    )
    .await?;
    let token = body["token"]["token"]
        .as_str()
        .context("a token")?
        .to_owned();
    let create = serde_json::json!({ "template": "xterm" });
    let (_, session) = call_as(&s, &token, Method::POST, "/api/v1/sessions", Some(create)).await?;
    let id: Uuid = session["id"].as_str().context("session id")?.parse()?;
    agent.run_next(Action::StartSession).await?;
    agent
        .send(&AgentMessage::SessionStatus(FakeAgent::status(
            id,
            SessionState::Running,
        )))
        .await?;
    s.wait_session_state(id, SessionState::Running).await?;
    let connect = format!("/api/v1/sessions/{id}/connect");
    let (_, info) = call_as(&s, &token, Method::POST, &connect, None).await?;
    let (_, spare) = call_as(&s, &token, Method::POST, &connect, None).await?;
    let (url, spare_url) = (
        info["url"].as_str().context("url")?.to_owned(),
        spare["url"].as_str().context("url")?.to_owned(),
    );

    let (mut viewer, _) = tokio_tungstenite::connect_async(url.as_str()).await?;
    let open_msg = tunnel_open(&mut agent).await?;
    let mut data = match open(&data_url(&s, &open_msg.token), &key, None).await? {
        Ok(ws) => ws,
        Err(r) => bail!("the data connection was refused: {r:?}"),
    };
    data.send(Message::binary(vec![7])).await?;
    assert_eq!(next_binary(&mut viewer).await?, [7]);

    let disable = serde_json::json!({ "disabled": true });
    let (status, _) = s
        .call(Method::PATCH, "/api/v1/users/alice", Some(disable))
        .await?;
    assert!(status.is_success());
    assert_eq!(
        close_code(&mut viewer).await?,
        1008,
        "a disabled user's viewer closes at once, as a policy violation"
    );
    close_code(&mut data).await?;
    assert_eq!(
        viewer_refused(&spare_url).await?,
        (401, "unauthorized".into()),
        "a viewer token issued before the user was disabled opens nothing"
    );
    s.stop().await
}

/// The replica-to-replica routes answer only a request bearing the proof this control plane's
/// secret makes for that purpose and token: not one without it, not one made by another
/// control plane's secret, not one made for another purpose.
#[tokio::test]
async fn internal_routes_need_this_control_planes_replica_proof() -> anyhow::Result<()> {
    let s = TestServer::sqlite(fast_config()).await?;
    let other = TestServer::sqlite(fast_config()).await?;
    let secrets = streamspace_server::SecretsConfig::default();
    let ours = streamspace_server::Keys::load(s.store.as_ref(), &secrets).await?;
    let theirs = streamspace_server::Keys::load(other.store.as_ref(), &secrets).await?;
    let token = "sst_some-stream-token";
    let proof = |keys: &streamspace_server::Keys, purpose: &str| {
        keys.replicas
            .mac(&format!("streamspace replica\n{purpose}\n{token}"))
    };
    let body = serde_json::json!({
        "agent_id": "nowhere",
        "open": { "tunnel_id": Uuid::now_v7(), "session_id": Uuid::now_v7(), "token": token },
    });
    let open = |auth: Option<String>| {
        let mut request = s
            .http
            .post(format!("{}/internal/v1/tunnels/open", s.base))
            .json(&body);
        if let Some(auth) = auth {
            request = request.header("x-streamspace-replica-auth", auth);
        }
        request.send()
    };
    for (auth, why) in [
        (None, "no proof"),
        (
            Some(proof(&theirs, "open")),
            "another control plane's proof",
        ),
        (Some(proof(&ours, "data")), "a proof for another purpose"),
        (Some("x".repeat(64)), "a made-up proof"),
    ] {
        let (status, body) = crate::common::read(open(auth).await?).await?;
        assert_eq!(status, reqwest::StatusCode::UNAUTHORIZED, "{why}: {body}");
    }
    let (status, body) = crate::common::read(open(Some(proof(&ours, "open"))).await?).await?;
    assert_eq!(
        status,
        reqwest::StatusCode::SERVICE_UNAVAILABLE,
        "the right proof is let through (to an agent that is not here): {body}"
    );

    let data = format!(
        "{}/internal/v1/tunnels/data?token={token}&agent_id=nowhere",
        s.ws_url.replace("/api/v1/agents/connect", "")
    );
    for auth in [
        None,
        Some(proof(&theirs, "data")),
        Some(proof(&ours, "open")),
    ] {
        let mut request =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                data.as_str(),
            )?;
        if let Some(auth) = auth {
            request
                .headers_mut()
                .insert("x-streamspace-replica-auth", auth.parse()?);
        }
        match tokio_tungstenite::connect_async(request).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status().as_u16(), 401);
            }
            other => bail!("the data route let a stream in without a valid proof: {other:?}"),
        }
    }
    // A raw hop needs the same proof.
    let raw_data = reqwest::Url::parse(&data.replacen("ws://", "http://", 1))?;
    for auth in [None, Some(proof(&theirs, "data"))] {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(auth) = auth {
            headers.insert("x-streamspace-replica-auth", auth.parse()?);
        }
        let dialled = streamspace_client::raw_stream::dial(&raw_data, headers, None).await;
        assert_eq!(
            refusal(dialled),
            (401, false),
            "a raw hop without a valid proof"
        );
    }
    Ok(())
}

/// The routes other replicas list and disconnect this one's viewers through need this control
/// plane's proof for that purpose and that id; with it they answer what this replica carries.
#[tokio::test]
async fn viewer_routes_between_replicas_need_the_replica_proof() -> anyhow::Result<()> {
    let s = TestServer::sqlite(fast_config()).await?;
    let other = TestServer::sqlite(fast_config()).await?;
    let secrets = streamspace_server::SecretsConfig::default();
    let ours = streamspace_server::Keys::load(s.store.as_ref(), &secrets).await?;
    let theirs = streamspace_server::Keys::load(other.store.as_ref(), &secrets).await?;
    let proof = |keys: &streamspace_server::Keys, purpose: &str, id: Uuid| {
        keys.replicas
            .mac(&format!("streamspace replica\n{purpose}\n{id}"))
    };
    let (session, viewer) = (Uuid::now_v7(), Uuid::now_v7());
    let list = |auth: Option<String>| {
        let mut request = s
            .http
            .get(format!("{}/internal/v1/sessions/{session}/viewers", s.base));
        if let Some(auth) = auth {
            request = request.header("x-streamspace-replica-auth", auth);
        }
        request.send()
    };
    let close = |auth: Option<String>| {
        let body = serde_json::json!({
            "session_id": session, "viewer_id": viewer, "reason": "disconnected by alice",
        });
        let mut request = s
            .http
            .post(format!("{}/internal/v1/viewers/close", s.base))
            .json(&body);
        if let Some(auth) = auth {
            request = request.header("x-streamspace-replica-auth", auth);
        }
        request.send()
    };
    for (auth, why) in [
        (None, "no proof"),
        (
            Some(proof(&theirs, "viewers", session)),
            "another control plane's",
        ),
        (
            Some(proof(&ours, "close-viewer", session)),
            "another purpose",
        ),
        (Some(proof(&ours, "viewers", viewer)), "another id"),
    ] {
        let (status, body) = crate::common::read(list(auth).await?).await?;
        assert_eq!(
            status,
            reqwest::StatusCode::UNAUTHORIZED,
            "list, {why}: {body}"
        );
    }
    let (status, body) =
        crate::common::read(list(Some(proof(&ours, "viewers", session))).await?).await?;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    assert_eq!(body, serde_json::json!([]), "no viewer here");
    for (auth, why) in [
        (None, "no proof"),
        (
            Some(proof(&theirs, "close-viewer", viewer)),
            "another control plane's",
        ),
        (Some(proof(&ours, "viewers", viewer)), "another purpose"),
        (Some(proof(&ours, "close-viewer", session)), "another id"),
    ] {
        let (status, body) = crate::common::read(close(auth).await?).await?;
        assert_eq!(
            status,
            reqwest::StatusCode::UNAUTHORIZED,
            "close, {why}: {body}"
        );
    }
    let (status, body) =
        crate::common::read(close(Some(proof(&ours, "close-viewer", viewer))).await?).await?;
    assert_eq!(
        status,
        reqwest::StatusCode::NOT_FOUND,
        "a viewer this replica does not carry: {body}"
    );
    Ok(())
}
