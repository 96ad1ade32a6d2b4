//! Two users on two replicas (one PostgreSQL, one Redis, the agent held by the first replica):
//! a user can neither see nor touch another user's session through either replica, while its
//! owner can do everything with it through either; and a user an admin disables on one replica
//! is cut off on both at once — API token, browser cookie and open viewer.
//!
//! The replicas trust resolved credentials for an hour here, so only the announcement of the
//! disable over Redis can make the second replica refuse them.

use std::time::Instant;

use anyhow::{Context, ensure};
use reqwest::Method;
use serde_json::{Value, json};
use streamspace_client::Client;
use streamspace_proto::api::{
    CommandFilter, CreateUser, LoginRequest, LoginResponse, Role, SessionFilter, SessionState,
    UpdateUser,
};
use streamspace_testkit::redis::RedisServer;
use streamspace_testkit::{PgCluster, wait_until};
use uuid::Uuid;

use super::replicas::Pair;
use super::viewer::{self, Rfb};
use super::{START_TIMEOUT, targets};

const AGENT: &str = "users-agent";

/// How a signed-in user reaches the API: a personal API token, or a browser's session cookie.
#[derive(Debug, Clone)]
enum Credential {
    Token(String),
    /// `streamspace_session=…`, as the browser sends it back.
    Cookie(String),
}

impl Credential {
    /// `request` to the replica at `base` carrying this credential the way the CLI or a page
    /// of StreamSpace's own (same origin) sends it.
    fn attach(&self, request: reqwest::RequestBuilder, base: &str) -> reqwest::RequestBuilder {
        match self {
            Self::Token(token) => request.bearer_auth(token),
            Self::Cookie(cookie) => request.header("cookie", cookie).header("origin", base),
        }
    }

    /// The same as a header of the viewer's WebSocket request.
    fn header(&self) -> (&'static str, String) {
        match self {
            Self::Token(token) => ("authorization", format!("Bearer {token}")),
            Self::Cookie(cookie) => ("cookie", cookie.clone()),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Token(_) => "token",
            Self::Cookie(_) => "cookie",
        }
    }
}

/// `METHOD base+path` with `who`'s credential: the status and the JSON body (`null` if none).
async fn call(
    http: &reqwest::Client,
    base: &str,
    who: &Credential,
    method: Method,
    path: &str,
) -> anyhow::Result<(u16, Value)> {
    let request = who.attach(http.request(method.clone(), format!("{base}{path}")), base);
    let response = request
        .send()
        .await
        .with_context(|| format!("{method} {base}{path}"))?;
    let status = response.status().as_u16();
    let body = response.bytes().await?;
    if body.is_empty() {
        return Ok((status, Value::Null));
    }
    let json = serde_json::from_slice(&body)
        .with_context(|| format!("{method} {path} answered {status} without JSON"))?;
    Ok((status, json))
}

/// Signs `username` in at `base` with a password: the session cookie and, with `token_name`,
/// a new API token.
async fn sign_in(
    http: &reqwest::Client,
    base: &str,
    username: &str,
    token_name: Option<&str>,
) -> anyhow::Result<(Credential, Option<Credential>)> {
    let request = LoginRequest {
        username: username.to_owned(),
        password: password(username),
        token_name: token_name.map(str::to_owned),
        ..Default::default()
    };
    let response = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&request)
        .send()
        .await?;
    ensure!(
        response.status().is_success(),
        "{username} signing in at {base}: HTTP {}",
        response.status()
    );
    let cookie = response
        .headers()
        .get("set-cookie")
        .context("signing in set no cookie")?
        .to_str()?
        .split(';')
        .next()
        .context("a cookie pair")?
        .to_owned();
    let answer: LoginResponse = response.json().await?;
    let token = answer.token.map(|t| Credential::Token(t.token));
    Ok((Credential::Cookie(cookie), token))
}

fn password(username: &str) -> String {
    format!("{username}-password-1")
}

/// `ws://…/api/v1/sessions/{session}/vnc`, with `?token=` when one is given.
fn vnc_url(base: &str, session: Uuid, token: Option<&str>) -> String {
    let ws = base.replacen("http://", "ws://", 1);
    let query = token.map(|t| format!("?token={t}")).unwrap_or_default();
    format!("{ws}/api/v1/sessions/{session}/vnc{query}")
}

/// The two replicas, an HTTP client and an admin.
struct World {
    urls: [String; 2],
    http: reqwest::Client,
    admin: Client,
}

impl World {
    fn name(i: usize) -> String {
        format!("replica {}", i + 1)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_reach_only_their_own_sessions_on_every_replica_until_disabled() -> anyhow::Result<()>
{
    let pg = PgCluster::start()?;
    let redis = RedisServer::start()?;
    let mut h = super::common::harness()?;
    let db = pg.create_database()?;
    // The agent is held by replica 1; its sessions are echo servers.
    let runtime = targets::TargetRuntime::new(vec![targets::echo().await?; 3]);
    let extra = ["--credential-cache-ttl", "1h"];
    let pair = Pair::start(&mut h, &db, &redis.url(), &extra, AGENT, runtime).await?;
    let logs = || pair.logs();
    let [url1, url2] = pair.urls.clone();
    let world = World {
        admin: pair.admins[0].clone(),
        urls: pair.urls.clone(),
        http: reqwest::Client::new(),
    };

    // The admin creates both users, with passwords, through the API.
    for username in ["alice", "bob"] {
        let user = CreateUser {
            username: username.into(),
            role: Role::User,
            password: Some(password(username)),
            ..Default::default()
        };
        world.admin.create_user(&user).await?;
    }
    // Alice signs in on replica 1 (cookie and token) and starts a session there.
    let (alice_cookie, alice_token) = sign_in(&world.http, &url1, "alice", Some("cli")).await?;
    let Some(Credential::Token(alice_token)) = alice_token else {
        anyhow::bail!("signing in with token_name answered no token");
    };
    let alice = [
        Client::new(&url1, &alice_token)?,
        Client::new(&url2, &alice_token)?,
    ];
    let theirs = alice[0].create_session("xterm").await?;
    alice[0]
        .wait_for_session(
            theirs.id,
            SessionState::Running,
            Instant::now() + START_TIMEOUT,
        )
        .await
        .with_context(logs)?;

    // Her viewer, through replica 2, stays open while bob tries everything.
    let info = alice[1].connect_session(theirs.id).await?;
    ensure!(
        info.url.starts_with(&vnc_url(&url2, theirs.id, None)),
        "the viewer URL points at the replica asked: {}",
        info.url
    );
    let (ws, _) = viewer::open(&info.url, None).await.with_context(logs)?;
    let mut view = Rfb::new(ws);
    view.echo("before bob").await.with_context(logs)?;
    let commands = command_ids(&alice[0], theirs.id).await?;

    others_cannot_reach(&world, theirs.id, commands[0])
        .await
        .with_context(logs)?;

    // Alice's session is unharmed: still running, no command added, her viewer still works.
    for api in &alice {
        let state = api.get_session(theirs.id).await?.state;
        ensure!(state == SessionState::Running, "after bob: {state}");
    }
    ensure!(
        command_ids(&alice[0], theirs.id).await? == commands,
        "bob's attempts queued commands for alice's session"
    );
    view.echo("after bob").await.with_context(logs)?;
    view.ws.close(None).await?;

    owner_can_do_everything(&world, &alice[1], theirs.id, &alice_cookie)
        .await
        .with_context(logs)?;
    disabled_everywhere(
        &world,
        &alice[1],
        [alice_cookie, Credential::Token(alice_token)],
    )
    .await
    .with_context(logs)?;

    pair.stop_agent().await
}

/// Ids of the commands of `session`, as its owner sees them.
async fn command_ids(api: &Client, session: Uuid) -> anyhow::Result<Vec<Uuid>> {
    let filter = CommandFilter {
        session_id: Some(session),
        ..Default::default()
    };
    let ids: Vec<Uuid> = api
        .list_commands(&filter)
        .await?
        .iter()
        .map(|c| c.command_id)
        .collect();
    ensure!(!ids.is_empty(), "session {session} has no commands");
    Ok(ids)
}

/// Bob, signed in with a token and with a cookie on each replica, finds nothing of `theirs`
/// (alice's session) and its command `command`: every route answers as for a session that does
/// not exist.
async fn others_cannot_reach(world: &World, theirs: Uuid, command: Uuid) -> anyhow::Result<()> {
    let (_, token) = sign_in(&world.http, &world.urls[0], "bob", Some("cli")).await?;
    let token = token.context("bob's token")?;
    let Credential::Token(secret) = &token else {
        anyhow::bail!("a token is a token");
    };
    let bob = Client::new(&world.urls[0], secret)?;
    // Bob's own session: his lists are not empty, and his viewer token is a real one.
    let mine = bob.create_session("xterm").await?;
    bob.wait_for_session(
        mine.id,
        SessionState::Running,
        Instant::now() + START_TIMEOUT,
    )
    .await?;

    let probes = [
        (Method::GET, format!("/api/v1/sessions/{theirs}")),
        (Method::DELETE, format!("/api/v1/sessions/{theirs}")),
        (Method::POST, format!("/api/v1/sessions/{theirs}/hibernate")),
        (Method::POST, format!("/api/v1/sessions/{theirs}/wake")),
        (Method::POST, format!("/api/v1/sessions/{theirs}/connect")),
        (Method::GET, format!("/api/v1/commands/{command}")),
        (Method::GET, format!("/api/v1/commands/{command}?wait=1")),
    ];
    for (i, base) in world.urls.iter().enumerate() {
        let (cookie, _) = sign_in(&world.http, base, "bob", None).await?;
        for who in [&token, &cookie] {
            let on = || format!("bob with a {} on {}", who.kind(), World::name(i));
            for (method, path) in &probes {
                let (status, body) = call(&world.http, base, who, method.clone(), path).await?;
                ensure!(
                    status == 404 && body["error"]["code"] == "not_found",
                    "{}: {method} {path} answered {status} {body}",
                    on()
                );
            }
            let (status, list) =
                call(&world.http, base, who, Method::GET, "/api/v1/sessions").await?;
            ensure!(
                status == 200 && list["items"].as_array().map(Vec::len) == Some(1),
                "{}: lists {status} {list}",
                on()
            );
            ensure!(
                list["items"][0]["id"] == mine.id.to_string(),
                "{}: lists {list}",
                on()
            );
            let (status, all) =
                call(&world.http, base, who, Method::GET, "/api/v1/commands").await?;
            let own = all["items"].as_array().is_some_and(|cs| {
                !cs.is_empty() && cs.iter().all(|c| c["session_id"] == mine.id.to_string())
            });
            ensure!(
                status == 200 && own,
                "{}: the command log shows {all}",
                on()
            );
            let path = format!("/api/v1/commands?session_id={theirs}");
            let (status, filtered) = call(&world.http, base, who, Method::GET, &path).await?;
            ensure!(
                status == 200 && filtered == json!({"items": []}),
                "{}: {path} answered {status} {filtered}",
                on()
            );
            stream_route_refuses(world, i, who, theirs, mine.id).await?;
        }
    }
    Ok(())
}

/// The stream route of `theirs` on replica `i` refuses bob exactly as it refuses a session that
/// does not exist: with his own session's viewer token, and with only his credential.
async fn stream_route_refuses(
    world: &World,
    i: usize,
    who: &Credential,
    theirs: Uuid,
    mine: Uuid,
) -> anyhow::Result<()> {
    let base = &world.urls[i];
    let (name, value) = who.header();
    let headers = [(name, value.as_str())];
    let issued = call(
        &world.http,
        base,
        who,
        Method::POST,
        &format!("/api/v1/sessions/{mine}/connect"),
    )
    .await?;
    ensure!(issued.0 == 200, "bob's own viewer token: {issued:?}");
    let token = issued.1["token"].as_str().context("a viewer token")?;
    let nowhere = Uuid::now_v7();
    for (token, want) in [
        (Some(token), (403, "wrong_session")),
        (None, (401, "unauthorized")),
    ] {
        let refused = viewer::refusal_with(&vnc_url(base, theirs, token), &headers).await?;
        let missing = viewer::refusal_with(&vnc_url(base, nowhere, token), &headers).await?;
        ensure!(
            refused == (want.0, want.1.to_owned()) && refused == missing,
            "bob with a {} on {}, viewer token {}: alice's stream answered {refused:?}, a \
             missing session's {missing:?}",
            who.kind(),
            World::name(i),
            token.is_some()
        );
    }
    Ok(())
}

/// Through replica 2 (`api`, the agent being on replica 1) the owner lists, shows, reads the
/// commands of, watches, hibernates, wakes and stops `id`; her cookie from replica 1 works there.
async fn owner_can_do_everything(
    world: &World,
    api: &Client,
    id: Uuid,
    cookie: &Credential,
) -> anyhow::Result<()> {
    let listed = api.list_sessions(&SessionFilter::default()).await?;
    ensure!(
        listed.iter().map(|s| s.id).collect::<Vec<_>>() == [id],
        "alice lists {listed:?}"
    );
    let (status, shown) = call(
        &world.http,
        &world.urls[1],
        cookie,
        Method::GET,
        &format!("/api/v1/sessions/{id}"),
    )
    .await?;
    ensure!(status == 200 && shown["id"] == id.to_string(), "{shown}");
    let commands = command_ids(api, id).await?;
    api.get_command(commands[0]).await?;

    let until = |state| api.wait_for_session(id, state, Instant::now() + START_TIMEOUT);
    api.hibernate_session(id).await?;
    until(SessionState::Hibernated).await?;
    api.wake_session(id).await?;
    until(SessionState::Running).await?;
    let info = api.connect_session(id).await?;
    let (ws, _) = viewer::open(&info.url, None).await?;
    let mut view = Rfb::new(ws);
    view.echo("woken").await?;
    view.ws.close(None).await?;
    api.stop_session(id).await?;
    until(SessionState::Terminated).await?;
    Ok(())
}

/// The admin disables alice on replica 1 while she watches a new session through replica 2:
/// her token and cookie are refused on both replicas, and the viewer is closed with a reason.
/// Her session keeps running (an admin may stop it).
async fn disabled_everywhere(
    world: &World,
    api: &Client,
    credentials: [Credential; 2],
) -> anyhow::Result<()> {
    let session = api.create_session("xterm").await?;
    api.wait_for_session(
        session.id,
        SessionState::Running,
        Instant::now() + START_TIMEOUT,
    )
    .await?;
    let (ws, _) = viewer::open(&api.connect_session(session.id).await?.url, None).await?;
    let mut view = Rfb::new(ws);
    view.echo("before the disable").await?;
    let unused = api.connect_session(session.id).await?;

    let disable = UpdateUser {
        disabled: Some(true),
        ..Default::default()
    };
    world.admin.update_user("alice", &disable).await?;
    for (i, base) in world.urls.iter().enumerate() {
        for who in &credentials {
            let what = format!("alice's {} to be refused on {}", who.kind(), World::name(i));
            wait_until(&what, START_TIMEOUT, || async move {
                let (status, _) = call(&world.http, base, who, Method::GET, "/api/v1/auth/me")
                    .await
                    .ok()?;
                (status == 401).then_some(())
            })
            .await?;
        }
    }
    let closed = viewer::close_frame(&mut view.ws, START_TIMEOUT)
        .await
        .context("alice's viewer on replica 2 after the disable")?;
    ensure!(
        closed == (1008, "your access was revoked".to_owned()),
        "closed with {closed:?}"
    );
    ensure!(
        viewer::refusal(&unused.url).await? == (401, "unauthorized".to_owned()),
        "a viewer token issued before the disable still opens a stream"
    );
    let state = world.admin.get_session(session.id).await?.state;
    ensure!(
        state == SessionState::Running,
        "a disabled user's session: {state}"
    );
    Ok(())
}
