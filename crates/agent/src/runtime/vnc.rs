//! What every runtime needs to know about a session's VNC server: how its address is written,
//! how the agent connects to it, and when one is ready to serve a viewer.
//!
//! A session's address is one string, written the same way by every runtime, as seen from the
//! agent (the tunnel dials it):
//! - `unix:/absolute/path` — a Unix socket on the agent's host: the `process` runtime, whose
//!   Xvnc listens on no TCP port at all;
//! - `host:port` — TCP: a loopback port the `docker` runtime publishes, the Service's cluster DNS
//!   name for `kubernetes`. Anything without the `unix:` prefix is read this way, so addresses
//!   stored before Unix sockets existed (a process session's `127.0.0.1:port`) stay valid.
//!
//! A session's VNC server may ask for a password only the agent knows ([`auth`]); the agent's
//! tunnel answers it and presents no authentication to the viewer.
//!
//! A VNC server is ready when it greets a new connection with the RFB protocol banner
//! (`RFB 003.008\n`), which every RFB server sends first; that is cheaper and more telling than
//! "the port accepts connections", which a container engine's port proxy does before the server
//! inside has started.

pub mod auth;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// The loopback host a local session's VNC server listens on.
pub const LOOPBACK: &str = "127.0.0.1";

/// The prefix of a Unix socket address.
pub const UNIX_PREFIX: &str = "unix:";

/// How long one readiness probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// `host:port`, the form a session's TCP VNC address takes.
pub fn address(host: &str, port: u16) -> String {
    format!("{host}:{port}")
}

/// `unix:/path`, the form a session's Unix socket VNC address takes.
pub fn unix_address(path: &Path) -> String {
    VncAddress::Unix(path.to_owned()).to_string()
}

/// Where a session's VNC server listens, parsed from its address string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VncAddress {
    /// `host:port`.
    Tcp(String),
    /// A Unix socket's path.
    Unix(PathBuf),
}

impl VncAddress {
    /// Reads an address string: `unix:/path`, or else `host:port`.
    pub fn parse(address: &str) -> Self {
        match address.strip_prefix(UNIX_PREFIX) {
            Some(path) => Self::Unix(PathBuf::from(path)),
            None => Self::Tcp(address.to_owned()),
        }
    }

    /// Connects to the VNC server.
    pub async fn connect(&self) -> io::Result<VncStream> {
        match self {
            Self::Tcp(address) => {
                let stream = TcpStream::connect(address).await?;
                stream.set_nodelay(true).ok();
                Ok(VncStream::Tcp(stream))
            }
            Self::Unix(path) => Ok(VncStream::Unix(UnixStream::connect(path).await?)),
        }
    }
}

impl fmt::Display for VncAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(address) => f.write_str(address),
            Self::Unix(path) => write!(f, "{UNIX_PREFIX}{}", path.display()),
        }
    }
}

/// A connection to a session's VNC server, over TCP or a Unix socket.
#[derive(Debug)]
pub enum VncStream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// One direction of a [`VncStream`], for copy loops that read and write at the same time.
pub type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
/// The other direction of a [`VncStream`].
pub type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

impl VncStream {
    /// Splits the connection into halves that can be used from different futures.
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        match self {
            Self::Tcp(s) => {
                let (r, w) = s.into_split();
                (Box::new(r), Box::new(w))
            }
            Self::Unix(s) => {
                let (r, w) = s.into_split();
                (Box::new(r), Box::new(w))
            }
        }
    }
}

impl AsyncRead for VncStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for VncStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_flush(cx),
            Self::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Self::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// A loopback port that was free a moment ago (another process may take it before the VNC
/// server binds it; callers retry on another port when the server cannot start).
pub fn free_loopback_port() -> io::Result<u16> {
    let listener = std::net::TcpListener::bind((LOOPBACK, 0))?;
    Ok(listener.local_addr()?.port())
}

/// Whether a VNC server answers at `address` with its `RFB ` banner within a short timeout.
pub async fn banner_ok(address: &str) -> bool {
    let address = VncAddress::parse(address);
    let probe = async {
        let mut stream = address.connect().await.ok()?;
        let mut banner = [0u8; 4];
        stream.read_exact(&mut banner).await.ok()?;
        Some(&banner == b"RFB ")
    };
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, probe).await,
        Ok(Some(true))
    )
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    async fn server_saying(greeting: &'static [u8]) -> std::io::Result<String> {
        let listener = tokio::net::TcpListener::bind((LOOPBACK, 0)).await?;
        let port = listener.local_addr()?.port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let _ = s.write_all(greeting).await;
            }
        });
        Ok(address(LOOPBACK, port))
    }

    #[tokio::test]
    async fn only_an_rfb_banner_counts_as_ready() -> anyhow::Result<()> {
        assert!(banner_ok(&server_saying(b"RFB 003.008\n").await?).await);
        assert!(!banner_ok(&server_saying(b"SSH-2.0-x\r\n").await?).await);
        let closed = address(LOOPBACK, free_loopback_port()?);
        assert!(!banner_ok(&closed).await, "nothing listens on {closed}");
        Ok(())
    }

    #[tokio::test]
    async fn a_unix_socket_address_is_probed_on_the_socket() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("vnc.sock");
        let listener = tokio::net::UnixListener::bind(&path)?;
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let _ = s.write_all(b"RFB 003.008\n").await;
            }
        });
        let address = unix_address(&path);
        assert_eq!(address, format!("unix:{}", path.display()));
        assert!(banner_ok(&address).await);
        assert!(!banner_ok(&unix_address(&dir.path().join("none"))).await);
        Ok(())
    }

    #[test]
    fn addresses_without_the_unix_prefix_are_tcp() {
        assert_eq!(
            VncAddress::parse("127.0.0.1:5901"),
            VncAddress::Tcp("127.0.0.1:5901".into())
        );
        assert_eq!(
            VncAddress::parse("s-1.ns.svc.cluster.local:5900"),
            VncAddress::Tcp("s-1.ns.svc.cluster.local:5900".into())
        );
        assert_eq!(
            VncAddress::parse("unix:/run/s/21/vnc.sock"),
            VncAddress::Unix("/run/s/21/vnc.sock".into())
        );
        assert_eq!(
            VncAddress::parse("unix:/a b/vnc").to_string(),
            "unix:/a b/vnc"
        );
    }
}
