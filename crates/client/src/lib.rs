//! A typed client for the StreamSpace REST API.
//!
//! Used by the `streamspace` command line, the end-to-end tests and the benchmark harness. It
//! speaks in `streamspace_proto::api` types, the same ones the server serialises, so the client
//! never drifts from the server. API errors come back as [`ClientError::Api`] with the server's
//! error code and message.

pub mod raw_stream;
pub mod tls;
mod wait;

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use streamspace_proto::api::{
    Agent, AgentKey, Command, CommandFilter, CommandWait, CreateAgentKey, CreateSession,
    CreateTemplate, CreatedAgentKey, ErrorBody, Page, Readiness, Session, SessionFilter, Template,
    UpdateTemplate,
};
use streamspace_proto::transfer::{FileListing, UploadResult};

/// The largest page the API serves.
const MAX_PAGE: usize = 1000;
use url::Url;
use uuid::Uuid;

mod identity;
mod shares;
pub use wait::WaitError;

/// How often [`Client::wait_for_session`] asks, unless [`Client::with_poll_interval`] says.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(200);

/// What went wrong talking to the control plane.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid server URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("{message} (HTTP {status}, {code})")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    #[error("could not reach the control plane at {url}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// A transfer path the server would refuse (and that a URL could not even carry: `..`).
    #[error("`path` {path:?}: {source}")]
    InvalidPath {
        path: String,
        #[source]
        source: streamspace_proto::transfer::PathError,
    },
    #[error("{what}")]
    Local {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("unexpected answer from {url} (HTTP {status}): {detail}")]
    Decode {
        url: String,
        status: u16,
        detail: String,
    },
}

impl ClientError {
    /// The API error code, when the server answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } | Self::Decode { status, .. } => Some(*status),
            _ => None,
        }
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// A client for one control plane, authenticated with one bearer token.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: String,
    poll: Duration,
}

impl Client {
    /// `base` is the control plane's address, e.g. `http://127.0.0.1:8080`; an https address
    /// is verified against the system's and the Mozilla roots.
    pub fn new(base: &str, token: &str) -> Result<Self> {
        let tls = tls::client_config(&tls::TlsOptions::default()).map_err(|e| {
            ClientError::InvalidUrl {
                url: base.to_owned(),
                reason: format!("cannot set up TLS: {e}"),
            }
        })?;
        Self::with_tls(base, token, tls)
    }

    /// [`Client::new`] verifying the server with `tls` (see [`tls::client_config`]: e.g. a
    /// private CA from `--ca-cert`).
    pub fn with_tls(base: &str, token: &str, tls: Arc<rustls::ClientConfig>) -> Result<Self> {
        // reqwest is built without a bundled crypto provider; the first client installs ring's.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let invalid = |reason: String| ClientError::InvalidUrl {
            url: base.to_owned(),
            reason,
        };
        let mut base_url = Url::parse(base).map_err(|e| invalid(e.to_string()))?;
        if !matches!(base_url.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https".into()));
        }
        if !base_url.path().ends_with('/') {
            let path = format!("{}/", base_url.path());
            base_url.set_path(&path);
        }
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(rustls::ClientConfig::clone(&tls))
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| invalid(format!("cannot build an HTTP client: {e}")))?;
        Ok(Self {
            http,
            base: base_url,
            token: token.to_owned(),
            poll: DEFAULT_POLL_INTERVAL,
        })
    }

    /// How often waits such as [`Client::wait_for_session`] ask the control plane.
    pub fn with_poll_interval(mut self, every: Duration) -> Self {
        self.poll = every;
        self
    }

    pub fn base_url(&self) -> &Url {
        &self.base
    }

    // --- health ---------------------------------------------------------------------------

    pub async fn healthz(&self) -> Result<()> {
        self.send_unit(self.request(Method::GET, "healthz")?).await
    }

    /// `GET /readyz`; a 503 with a readiness body is returned as `Ok` with `ready: false`.
    pub async fn readyz(&self) -> Result<Readiness> {
        let url = self.url("readyz")?;
        let response = self
            .http
            .get(url.clone())
            .send()
            .await
            .map_err(|source| transport(&url, source))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|source| transport(&url, source))?;
        serde_json::from_slice(&body).map_err(|_| api_error(&url, status, &body))
    }

    // --- sessions -------------------------------------------------------------------------

    pub async fn create_session(&self, template: &str) -> Result<Session> {
        let body = CreateSession {
            template: template.to_owned(),
        };
        self.send(self.request(Method::POST, "api/v1/sessions")?.json(&body))
            .await
    }

    /// The sessions `filter` selects, newest first, following every page; at most
    /// `filter.limit` when given (all otherwise).
    pub async fn list_sessions(&self, filter: &SessionFilter) -> Result<Vec<Session>> {
        let cap = filter.limit.map(|n| n as usize);
        self.pages(cap, |cursor, limit| {
            let page = SessionFilter {
                limit: Some(limit),
                cursor: cursor.map(str::to_owned),
                ..filter.clone()
            };
            Ok(self.request(Method::GET, "api/v1/sessions")?.query(&page))
        })
        .await
    }

    pub async fn get_session(&self, id: Uuid) -> Result<Session> {
        self.send(self.request(Method::GET, &format!("api/v1/sessions/{id}"))?)
            .await
    }

    /// The clipboard, file-transfer and recording rules that apply to the caller on a session.
    pub async fn session_rules(&self, id: Uuid) -> Result<streamspace_proto::api::EffectiveRules> {
        self.send(self.request(Method::GET, &format!("api/v1/sessions/{id}/rules"))?)
            .await
    }

    /// Asks the agent to stop the session; it reaches `terminated` when the agent confirms.
    pub async fn stop_session(&self, id: Uuid) -> Result<Session> {
        self.send(self.request(Method::DELETE, &format!("api/v1/sessions/{id}"))?)
            .await
    }

    pub async fn hibernate_session(&self, id: Uuid) -> Result<Session> {
        self.send(self.request(Method::POST, &format!("api/v1/sessions/{id}/hibernate"))?)
            .await
    }

    pub async fn wake_session(&self, id: Uuid) -> Result<Session> {
        self.send(self.request(Method::POST, &format!("api/v1/sessions/{id}/wake"))?)
            .await
    }

    /// A short-lived viewer token for a running session and the WebSocket URL to open with it.
    pub async fn connect_session(
        &self,
        id: Uuid,
    ) -> Result<streamspace_proto::tunnel::ConnectInfo> {
        self.send(self.request(Method::POST, &format!("api/v1/sessions/{id}/connect"))?)
            .await
    }

    /// A viewer token, asking for the viewing to be recorded when `record` (honoured under
    /// the `on_request` policy); the answer says whether it will be.
    pub async fn connect_session_recorded(
        &self,
        id: Uuid,
        record: bool,
    ) -> Result<streamspace_proto::tunnel::ConnectInfo> {
        let body = streamspace_proto::tunnel::ConnectRequest { record };
        self.send(
            self.request(Method::POST, &format!("api/v1/sessions/{id}/connect"))?
                .json(&body),
        )
        .await
    }

    // --- recordings -----------------------------------------------------------------------

    /// The recordings of a session's viewings, newest first.
    pub async fn list_recordings(
        &self,
        session_id: Uuid,
    ) -> Result<Vec<streamspace_proto::api::Recording>> {
        self.all(&format!("api/v1/sessions/{session_id}/recordings"), &[])
            .await
    }

    pub async fn get_recording(&self, id: Uuid) -> Result<streamspace_proto::api::Recording> {
        self.send(self.request(Method::GET, &format!("api/v1/recordings/{id}"))?)
            .await
    }

    /// A finished recording's stream (`streamspace_proto::recording`'s format).
    pub async fn recording_data(&self, id: Uuid) -> Result<Vec<u8>> {
        let request = self.request(Method::GET, &format!("api/v1/recordings/{id}/data"))?;
        self.execute(request).await.map(|(_, _, body)| body)
    }

    pub async fn delete_recording(&self, id: Uuid) -> Result<()> {
        self.send_unit(self.request(Method::DELETE, &format!("api/v1/recordings/{id}"))?)
            .await
    }

    // --- files ----------------------------------------------------------------------------

    /// The session's transfer folder.
    pub async fn list_files(&self, id: Uuid) -> Result<FileListing> {
        self.send(self.request(Method::GET, &format!("api/v1/sessions/{id}/files"))?)
            .await
    }

    /// Uploads `size` bytes of `file` to `path` in the session's transfer folder, streamed.
    pub async fn upload_file(
        &self,
        id: Uuid,
        path: &str,
        file: tokio::fs::File,
        size: u64,
    ) -> Result<UploadResult> {
        let (mut tx, body) =
            http_body_util::channel::Channel::<bytes::Bytes, std::io::Error>::new(4);
        let feed = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut file = file;
            loop {
                let mut buf = Vec::with_capacity(CHUNK_BYTES);
                match (&mut file)
                    .take(CHUNK_BYTES as u64)
                    .read_to_end(&mut buf)
                    .await
                {
                    Ok(0) => break,
                    Ok(_) => {
                        if tx.send_data(bytes::Bytes::from(buf)).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        tx.abort(e);
                        break;
                    }
                }
            }
        });
        let request = self
            .request(Method::PUT, &files_path(id, path)?)?
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, size)
            .body(reqwest::Body::wrap(body));
        let answer = self.send(request).await;
        feed.abort();
        answer
    }

    /// Downloads `path` from the session's transfer folder into `out`; the bytes written.
    pub async fn download_file(
        &self,
        id: Uuid,
        path: &str,
        out: &mut (impl tokio::io::AsyncWrite + Unpin),
    ) -> Result<u64> {
        use tokio::io::AsyncWriteExt;
        let (client, request) = self
            .request(Method::GET, &files_path(id, path)?)?
            .build_split();
        let request = request.map_err(|source| transport(&self.base, source))?;
        let url = request.url().clone();
        let mut response = client
            .execute(request)
            .await
            .map_err(|source| transport(&url, source))?;
        let status = response.status();
        if !status.is_success() {
            let body = response
                .bytes()
                .await
                .map_err(|source| transport(&url, source))?;
            return Err(api_error(&url, status, &body));
        }
        let mut written = 0u64;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|source| transport(&url, source))?
        {
            out.write_all(&chunk)
                .await
                .map_err(|source| ClientError::Local {
                    what: "writing the downloaded file".into(),
                    source,
                })?;
            written += chunk.len() as u64;
        }
        out.flush().await.map_err(|source| ClientError::Local {
            what: "writing the downloaded file".into(),
            source,
        })?;
        Ok(written)
    }

    // --- agents ---------------------------------------------------------------------------

    pub async fn list_agents(&self) -> Result<Vec<Agent>> {
        self.all("api/v1/agents", &[]).await
    }

    pub async fn get_agent(&self, agent_id: &str) -> Result<Agent> {
        let path = format!("api/v1/agents/{}", encode_segment(agent_id));
        self.send(self.request(Method::GET, &path)?).await
    }

    pub async fn delete_agent(&self, agent_id: &str) -> Result<()> {
        let path = format!("api/v1/agents/{}", encode_segment(agent_id));
        self.send_unit(self.request(Method::DELETE, &path)?).await
    }

    /// `POST /api/v1/agents/{id}/ping`: queues a `ping` command; the agent answers at once.
    pub async fn ping_agent(&self, agent_id: &str) -> Result<Command> {
        let path = format!("api/v1/agents/{}/ping", encode_segment(agent_id));
        self.send(self.request(Method::POST, &path)?).await
    }

    /// `POST /api/v1/agents/{id}/ping?wait=…`: queues a `ping` and answers once the agent has
    /// answered it, or when `wait` (at most 60 s) runs out (check the status).
    pub async fn ping_agent_and_wait(&self, agent_id: &str, wait: Duration) -> Result<Command> {
        let path = format!("api/v1/agents/{}/ping", encode_segment(agent_id));
        let request = self
            .request(Method::POST, &path)?
            .query(&CommandWait {
                wait: Some(wait.as_secs_f64()),
            })
            .timeout(wait + Duration::from_secs(30));
        self.send(request).await
    }

    /// `GET /api/v1/overview?hours=`: the whole system over the last `hours` (operators).
    pub async fn overview(&self, hours: u32) -> Result<streamspace_proto::api::Overview> {
        let request = self
            .request(Method::GET, "api/v1/overview")?
            .query(&[("hours", hours)]);
        self.send(request).await
    }

    /// `GET /api/v1/replicas`, every page, each replica as raw JSON.
    pub async fn list_replicas(&self) -> Result<Vec<serde_json::Value>> {
        self.all("api/v1/replicas", &[]).await
    }

    // --- commands -------------------------------------------------------------------------

    /// The newest commands `filter` selects, following pages: at most `filter.limit`
    /// (100 when not given).
    pub async fn list_commands(&self, filter: &CommandFilter) -> Result<Vec<Command>> {
        let cap = filter.limit.unwrap_or(100) as usize;
        self.pages(Some(cap), |cursor, limit| {
            let page = CommandFilter {
                limit: Some(limit),
                cursor: cursor.map(str::to_owned),
                ..filter.clone()
            };
            Ok(self.request(Method::GET, "api/v1/commands")?.query(&page))
        })
        .await
    }

    pub async fn get_command(&self, command_id: Uuid) -> Result<Command> {
        self.send(self.request(Method::GET, &format!("api/v1/commands/{command_id}"))?)
            .await
    }

    /// `GET /api/v1/commands/{id}?wait=…`: the command once it is `completed` or `failed`, or
    /// as it is when `wait` runs out (at most 60 s; check its status).
    pub async fn wait_for_command(&self, command_id: Uuid, wait: Duration) -> Result<Command> {
        let request = self
            .request(Method::GET, &format!("api/v1/commands/{command_id}"))?
            .query(&CommandWait {
                wait: Some(wait.as_secs_f64()),
            })
            .timeout(wait + Duration::from_secs(30));
        self.send(request).await
    }

    // --- templates ------------------------------------------------------------------------

    pub async fn list_templates(&self) -> Result<Vec<Template>> {
        self.all("api/v1/templates", &[]).await
    }

    pub async fn create_template(&self, template: &CreateTemplate) -> Result<Template> {
        self.send(
            self.request(Method::POST, "api/v1/templates")?
                .json(template),
        )
        .await
    }

    pub async fn get_template(&self, name: &str) -> Result<Template> {
        let path = format!("api/v1/templates/{}", encode_segment(name));
        self.send(self.request(Method::GET, &path)?).await
    }

    /// `PATCH /api/v1/templates/{name}`: changes the fields `change` names.
    pub async fn update_template(&self, name: &str, change: &UpdateTemplate) -> Result<Template> {
        let path = format!("api/v1/templates/{}", encode_segment(name));
        self.send(self.request(Method::PATCH, &path)?.json(change))
            .await
    }

    pub async fn delete_template(&self, name: &str) -> Result<()> {
        let path = format!("api/v1/templates/{}", encode_segment(name));
        self.send_unit(self.request(Method::DELETE, &path)?).await
    }

    // --- agent keys -----------------------------------------------------------------------

    pub async fn create_agent_key(&self, agent_id: &str) -> Result<CreatedAgentKey> {
        let body = CreateAgentKey {
            agent_id: agent_id.to_owned(),
        };
        self.send(self.request(Method::POST, "api/v1/agent-keys")?.json(&body))
            .await
    }

    pub async fn list_agent_keys(&self) -> Result<Vec<AgentKey>> {
        self.all("api/v1/agent-keys", &[]).await
    }

    pub async fn revoke_agent_key(&self, id: Uuid) -> Result<()> {
        self.send_unit(self.request(Method::DELETE, &format!("api/v1/agent-keys/{id}"))?)
            .await
    }

    // --- plumbing -------------------------------------------------------------------------

    /// Every item of a listing without filters but `query`, following its pages.
    pub(crate) async fn all<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<Vec<T>> {
        self.pages(None, |cursor, limit| {
            let limit = limit.to_string();
            let mut request = self
                .request(Method::GET, path)?
                .query(query)
                .query(&[("limit", limit.as_str())]);
            if let Some(cursor) = cursor {
                request = request.query(&[("cursor", cursor)]);
            }
            Ok(request)
        })
        .await
    }

    /// Follows a listing's pages (`{items, next_cursor}`) until the last one, or until `cap`
    /// items are read. `page(cursor, limit)` builds the request for one page.
    async fn pages<T: DeserializeOwned>(
        &self,
        cap: Option<usize>,
        page: impl Fn(Option<&str>, u32) -> Result<RequestBuilder>,
    ) -> Result<Vec<T>> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let left = cap.map_or(usize::MAX, |cap| cap - items.len());
            let limit = u32::try_from(left.min(MAX_PAGE)).unwrap_or(1).max(1);
            let next: Page<T> = self.send(page(cursor.as_deref(), limit)?).await?;
            items.extend(next.items);
            if cap.is_some_and(|cap| items.len() >= cap) {
                break;
            }
            match next.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        if let Some(cap) = cap {
            items.truncate(cap);
        }
        Ok(items)
    }

    fn url(&self, path: &str) -> Result<Url> {
        self.base.join(path).map_err(|e| ClientError::InvalidUrl {
            url: format!("{}{path}", self.base),
            reason: e.to_string(),
        })
    }

    fn request(&self, method: Method, path: &str) -> Result<RequestBuilder> {
        Ok(self
            .http
            .request(method, self.url(path)?)
            .bearer_auth(&self.token))
    }

    async fn send<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T> {
        let (url, status, body) = self.execute(request).await?;
        serde_json::from_slice(&body).map_err(|e| ClientError::Decode {
            url: url.to_string(),
            status: status.as_u16(),
            detail: e.to_string(),
        })
    }

    async fn send_unit(&self, request: RequestBuilder) -> Result<()> {
        self.execute(request).await.map(|_| ())
    }

    async fn execute(&self, request: RequestBuilder) -> Result<(Url, StatusCode, Vec<u8>)> {
        let (client, request) = request.build_split();
        let request = request.map_err(|source| transport(&self.base, source))?;
        let url = request.url().clone();
        let response = client
            .execute(request)
            .await
            .map_err(|source| transport(&url, source))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|source| transport(&url, source))?;
        if !status.is_success() {
            return Err(api_error(&url, status, &body));
        }
        Ok((url, status, body.to_vec()))
    }
}

fn transport(url: &Url, source: reqwest::Error) -> ClientError {
    ClientError::Transport {
        url: url.to_string(),
        source,
    }
}

fn api_error(url: &Url, status: StatusCode, body: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(err) => ClientError::Api {
            status: status.as_u16(),
            code: err.error.code,
            message: err.error.message,
        },
        Err(_) => ClientError::Decode {
            url: url.to_string(),
            status: status.as_u16(),
            detail: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        },
    }
}

/// How much of a file one piece of an upload's body holds.
const CHUNK_BYTES: usize = 256 * 1024;

/// `api/v1/sessions/{id}/files/{path}`, each segment of `path` percent-encoded; a path the
/// transfer rules refuse is refused here (a `..` segment would be resolved away by the URL).
fn files_path(id: Uuid, path: &str) -> Result<String> {
    let parts = streamspace_proto::transfer::check_path(path).map_err(|source| {
        ClientError::InvalidPath {
            path: path.to_owned(),
            source,
        }
    })?;
    let encoded: Vec<String> = parts.into_iter().map(encode_segment).collect();
    Ok(format!("api/v1/sessions/{id}/files/{}", encoded.join("/")))
}

/// Percent-encodes one path segment (agent ids and template names are user-chosen).
fn encode_segment(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_gets_a_trailing_slash_and_joins_paths() {
        let client = Client::new("http://127.0.0.1:8080/prefix", "t").expect("valid URL");
        assert_eq!(
            client.url("api/v1/sessions").expect("joins").as_str(),
            "http://127.0.0.1:8080/prefix/api/v1/sessions"
        );
    }

    #[test]
    fn refuses_non_http_urls() {
        assert!(matches!(
            Client::new("ws://127.0.0.1:8080", "t"),
            Err(ClientError::InvalidUrl { .. })
        ));
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(encode_segment("a b/c"), "a%20b%2Fc");
    }
}
