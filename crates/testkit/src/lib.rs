//! What StreamSpace's tests (and the benchmark harness) share: a throwaway PostgreSQL cluster and
//! Redis, a fresh database per test, a scripted fake agent, real `streamspace` processes, free
//! ports, polling with a deadline, a VNC banner probe, OpenID Connect providers, and certificate
//! authorities with their certificates.
//!
//! Everything here starts real components and fails loudly (with the command that failed and
//! its output) when it cannot: a test that needs PostgreSQL never silently skips.

pub mod db;
pub mod fake_agent;
pub mod harness;
pub mod moto;
pub mod oidc;
pub mod podman;
pub mod poll;
pub mod postgres;
pub mod pytool;
pub mod redis;
pub mod relay;
pub mod schemathesis;
pub mod tagged;
pub mod tls;
pub mod vnc;

pub use db::{TestDatabase, sqlite_url};
pub use fake_agent::FakeAgent;
pub use harness::{Harness, Proc};
pub use moto::MotoServer;
pub use oidc::{OidcClient, OidcProvider, RogueProvider};
pub use podman::Podman;
pub use poll::wait_until;
pub use postgres::PgCluster;
pub use redis::RedisServer;
pub use tls::{CertFiles, TestCa};

/// A TCP port on 127.0.0.1 that was free a moment ago. Prefer handing servers an already bound
/// listener; use this only for programs that must be told a port (PostgreSQL, Redis, Xvnc).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}
