//! What the server's integration tests share: a real server on 127.0.0.1:0 over a fresh SQLite
//! or PostgreSQL database, an HTTP client with the admin token, and the fake agent (from the
//! testkit, as are the fresh databases).

#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use streamspace_client::Client;
use streamspace_proto::api::Action;
use streamspace_proto::api::{Agent, AgentStatus, Command, CommandStatus, Session, SessionState};
use streamspace_server::ServerConfig;
use streamspace_store::Store;
use streamspace_testkit::{PgCluster, TestDatabase, wait_until};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use streamspace_testkit::FakeAgent;
pub use streamspace_testkit::fake_agent;

/// How long tests wait for the server to reach a state.
pub const WAIT: Duration = Duration::from_secs(15);

pub const ADMIN_TOKEN: &str = "ssa_test-admin-token-0123456789abcdef";

pub struct TestServer {
    pub addr: std::net::SocketAddr,
    pub base: String,
    pub ws_url: String,
    pub store: Arc<dyn Store>,
    pub http: reqwest::Client,
    /// The typed client, with the admin token (the waits use it).
    pub api: Client,
    shutdown: CancellationToken,
    handle: Option<JoinHandle<Result<(), streamspace_server::ServerError>>>,
    _db: TestDatabase,
}

pub fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "streamspace_server=debug".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A config with short timings, so tests do not wait long.
pub fn fast_config() -> ServerConfig {
    ServerConfig {
        replica_id: "test".into(),
        sweep_interval: Duration::from_millis(100),
        ..ServerConfig::default()
    }
}

impl TestServer {
    /// A server over a fresh SQLite database.
    pub async fn sqlite(config: ServerConfig) -> anyhow::Result<Self> {
        init();
        Self::start(TestDatabase::sqlite()?, config).await
    }

    /// A server over a fresh database in `cluster`.
    pub async fn postgres(cluster: &PgCluster, config: ServerConfig) -> anyhow::Result<Self> {
        init();
        Self::start(TestDatabase::postgres(cluster)?, config).await
    }

    async fn start(db: TestDatabase, config: ServerConfig) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        Self::start_on(listener, db, config).await
    }

    /// A server over a fresh SQLite database serving TLS (`config.tls`), its clients trusting
    /// the CA certificate `ca`.
    pub async fn sqlite_tls(config: ServerConfig, ca: &std::path::Path) -> anyhow::Result<Self> {
        init();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        Self::start_tls(listener, TestDatabase::sqlite()?, config, Some(ca)).await
    }

    /// Starts on `listener`, bound by the caller (who needed to know the address first, e.g.
    /// for `public_url`).
    async fn start_on(
        listener: tokio::net::TcpListener,
        db: TestDatabase,
        config: ServerConfig,
    ) -> anyhow::Result<Self> {
        Self::start_tls(listener, db, config, None).await
    }

    async fn start_tls(
        listener: tokio::net::TcpListener,
        db: TestDatabase,
        config: ServerConfig,
        ca: Option<&std::path::Path>,
    ) -> anyhow::Result<Self> {
        let (http_scheme, ws_scheme) = match config.tls {
            Some(_) => ("https", "wss"),
            None => ("http", "ws"),
        };
        let tls = streamspace_client::tls::client_config(&streamspace_client::tls::TlsOptions {
            ca_cert: ca.map(ToOwned::to_owned),
            ..Default::default()
        })?;
        let url = db.url();
        streamspace_store::migrate::up(url)
            .await
            .with_context(|| format!("migrating {url}"))?;
        let store = streamspace_store::open(url)
            .await
            .context("opening the store")?;
        let generated = streamspace_server::bootstrap(store.as_ref(), Some(ADMIN_TOKEN))
            .await
            .context("bootstrap")?;
        assert_eq!(generated, None, "a configured admin token is not generated");
        let addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(streamspace_server::serve(
            listener,
            store.clone(),
            config,
            shutdown.clone(),
        ));
        let base = format!("{http_scheme}://{addr}");
        let server = Self {
            api: Client::with_tls(&base, ADMIN_TOKEN, tls.clone())?
                .with_poll_interval(Duration::from_millis(50)),
            addr,
            base,
            ws_url: format!("{ws_scheme}://{addr}/api/v1/agents/connect"),
            store,
            http: reqwest::Client::builder()
                .tls_backend_preconfigured(rustls::ClientConfig::clone(&tls))
                .build()?,
            shutdown,
            handle: Some(handle),
            _db: db,
        };
        let ready = format!("{}/readyz", server.base);
        wait_until("the server to be ready", WAIT, || async {
            let response = server.http.get(&ready).send().await.ok()?;
            response.status().is_success().then_some(())
        })
        .await?;
        Ok(server)
    }

    /// The URL of the server's database, for tests that reach into it.
    pub fn database_url(&self) -> &str {
        self._db.url()
    }

    /// Runs one raw SQL statement against the server's database.
    pub async fn exec_sql(&self, statement: &str) -> anyhow::Result<()> {
        let url = self.database_url();
        let statement = sqlx::AssertSqlSafe(statement.to_owned());
        if url.starts_with("sqlite:") {
            let pool = sqlx::SqlitePool::connect(url).await?;
            sqlx::query(statement).execute(&pool).await?;
            pool.close().await;
        } else {
            let pool = sqlx::PgPool::connect(url).await?;
            sqlx::query(statement).execute(&pool).await?;
            pool.close().await;
        }
        Ok(())
    }

    /// Sends a request with the admin token; returns the status and the JSON body (Null if none).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        read(request.send().await?).await
    }

    /// [`Self::call`] without a body, running in its own task (for requests that wait).
    pub fn spawn_call(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> tokio::task::JoinHandle<anyhow::Result<(StatusCode, Value)>> {
        let request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(ADMIN_TOKEN);
        tokio::spawn(async move { read(request.send().await?).await })
    }

    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let (status, body) = self.call(reqwest::Method::GET, path, None).await?;
        if status != StatusCode::OK {
            bail!("GET {path} answered {status}: {body}");
        }
        Ok(serde_json::from_value(body)?)
    }

    /// The items of the first page of a listing (`{items, next_cursor}`).
    pub async fn list<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<Vec<T>> {
        let page: streamspace_proto::api::Page<T> = self.get_json(path).await?;
        Ok(page.items)
    }

    /// Creates an agent key through the API; returns its secret.
    pub async fn agent_key(&self, agent_id: &str) -> anyhow::Result<String> {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                "/api/v1/agent-keys",
                Some(json!({ "agent_id": agent_id })),
            )
            .await?;
        if status != StatusCode::CREATED {
            bail!("creating an agent key answered {status}: {body}");
        }
        body["secret"]
            .as_str()
            .map(str::to_owned)
            .context("no secret in the created key")
    }

    /// Creates a key and connects a registered fake agent.
    pub async fn agent(&self, agent_id: &str, max_sessions: u32) -> anyhow::Result<FakeAgent> {
        let key = self.agent_key(agent_id).await?;
        FakeAgent::connect(&self.ws_url, &key, agent_id, max_sessions, vec![]).await
    }

    pub async fn create_session(&self, template: &str) -> anyhow::Result<Session> {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                "/api/v1/sessions",
                Some(json!({ "template": template })),
            )
            .await?;
        if status != StatusCode::CREATED {
            bail!("creating a session answered {status}: {body}");
        }
        Ok(serde_json::from_value(body)?)
    }

    pub async fn session(&self, id: Uuid) -> anyhow::Result<Session> {
        self.get_json(&format!("/api/v1/sessions/{id}")).await
    }

    pub async fn command(&self, id: Uuid) -> anyhow::Result<Command> {
        self.get_json(&format!("/api/v1/commands/{id}")).await
    }

    pub async fn agent_info(&self, id: &str) -> anyhow::Result<Agent> {
        self.get_json(&format!("/api/v1/agents/{id}")).await
    }

    pub async fn wait_session_state(
        &self,
        id: Uuid,
        state: SessionState,
    ) -> anyhow::Result<Session> {
        let deadline = Instant::now() + WAIT;
        Ok(self.api.wait_for_session(id, state, deadline).await?)
    }

    /// Returns once the server has finished registering `agent` (counts start afresh then).
    ///
    /// A registration ends with a redelivery pass that sends again every command of the agent
    /// that is `sent` and not finished, since the new connection may not have received it. A
    /// command created within the moment before that pass runs can therefore arrive twice —
    /// allowed (delivery is at least once), but not what "each command exactly once" tests want
    /// to see. The server handles a connection's messages in order, so once a ping answered
    /// after the welcome is recorded, the pass has been queued ahead of any later command.
    pub async fn settle(&self, agent: &mut FakeAgent) -> anyhow::Result<()> {
        let ping = self.api.ping_agent(&agent.agent_id).await?;
        let answered = agent.run_next(Action::Ping).await?;
        if answered.command_id != ping.command_id {
            bail!("expected the settling ping, got {answered:?}");
        }
        self.wait_command_status(ping.command_id, CommandStatus::Completed)
            .await?;
        agent.forget_deliveries();
        Ok(())
    }

    /// Fails if `agent` received any command more than once. A ping sent through the API and
    /// answered first flushes the connection: a resend of anything earlier would have arrived
    /// before it, on the same socket.
    pub async fn assert_no_repeats(&self, agent: &mut FakeAgent) -> anyhow::Result<()> {
        self.api.ping_agent(&agent.agent_id).await?;
        agent.run_next(Action::Ping).await?;
        let repeated = agent.repeated();
        if !repeated.is_empty() {
            bail!(
                "agent {} received commands more than once (id: times): {repeated:?}",
                agent.agent_id
            );
        }
        Ok(())
    }

    pub async fn wait_command_status(
        &self,
        id: Uuid,
        status: CommandStatus,
    ) -> anyhow::Result<Command> {
        let what = format!("command {id} to be {status}");
        wait_until(&what, WAIT, || async {
            self.command(id).await.ok().filter(|c| c.status == status)
        })
        .await
    }

    pub async fn wait_agent_status(&self, id: &str, status: AgentStatus) -> anyhow::Result<Agent> {
        let what = format!("agent {id} to be {status}");
        wait_until(&what, WAIT, || async {
            self.agent_info(id)
                .await
                .ok()
                .filter(|a| a.status == status)
        })
        .await
    }

    /// Cancels the server and waits for `serve` to return.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            tokio::time::timeout(WAIT, handle)
                .await
                .context("server did not stop in time")??
                .context("serve returned an error")?;
        }
        Ok(())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Status and JSON body (Null when the body is empty).
pub async fn read(response: reqwest::Response) -> anyhow::Result<(StatusCode, Value)> {
    let status = response.status();
    let bytes = response.bytes().await?;
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{status} body is not JSON: {}",
                String::from_utf8_lossy(&bytes)
            )
        })?
    };
    Ok((status, body))
}

/// Asserts `body` is an API error with `code`.
pub fn assert_error(body: &Value, code: &str) {
    assert_eq!(
        body["error"]["code"].as_str(),
        Some(code),
        "expected an error with code {code:?}, got {body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "error without a message: {body}"
    );
}

/// The database a scenario runs on. A PostgreSQL backend owns its throwaway cluster.
pub enum Backend {
    Sqlite,
    Postgres(PgCluster),
}

impl Backend {
    /// Starts a PostgreSQL cluster; fails (never skips) when it cannot.
    pub fn postgres() -> anyhow::Result<Self> {
        Ok(Self::Postgres(
            PgCluster::start().context("the PostgreSQL tests need a local PostgreSQL")?,
        ))
    }

    pub async fn server(&self, config: ServerConfig) -> anyhow::Result<TestServer> {
        match self {
            Self::Sqlite => TestServer::sqlite(config).await,
            Self::Postgres(cluster) => TestServer::postgres(cluster, config).await,
        }
    }

    /// [`Self::server`] on a listener the caller bound.
    pub async fn server_on(
        &self,
        listener: tokio::net::TcpListener,
        config: ServerConfig,
    ) -> anyhow::Result<TestServer> {
        init();
        let db = match self {
            Self::Sqlite => TestDatabase::sqlite()?,
            Self::Postgres(cluster) => TestDatabase::postgres(cluster)?,
        };
        TestServer::start_on(listener, db, config).await
    }
}

/// Runs each named `async fn(Backend) -> anyhow::Result<()>` scenario as two tests,
/// `<name>::sqlite` and `<name>::postgres`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn sqlite() -> anyhow::Result<()> {
                    super::$name($crate::common::Backend::Sqlite).await
                }

                #[tokio::test]
                async fn postgres() -> anyhow::Result<()> {
                    super::$name($crate::common::Backend::postgres()?).await
                }
            }
        )*
    };
}
