//! What every runtime needs to know about a session's VNC server: how its address is written,
//! where a new loopback one can listen, and when one is ready to serve a viewer.
//!
//! A session's address is `host:port` as seen from the agent (the tunnel dials it): a loopback
//! port for the `process` and `docker` runtimes, the Service's cluster DNS name for
//! `kubernetes`. A VNC server is ready when it greets a new connection with the RFB protocol
//! banner (`RFB 003.008\n`), which every RFB server sends first; that is cheaper and more
//! telling than "the port accepts connections", which a container engine's port proxy does
//! before the server inside has started.

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The loopback host a local session's VNC server listens on.
pub const LOOPBACK: &str = "127.0.0.1";

/// How long one readiness probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// `host:port`, the form a session's VNC address takes.
pub fn address(host: &str, port: u16) -> String {
    format!("{host}:{port}")
}

/// A loopback port that was free a moment ago (another process may take it before the VNC
/// server binds it; callers retry on another port when the server cannot start).
pub fn free_loopback_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind((LOOPBACK, 0))?;
    Ok(listener.local_addr()?.port())
}

/// Whether a VNC server answers at `address` with its `RFB ` banner within a short timeout.
pub async fn banner_ok(address: &str) -> bool {
    let probe = async {
        let mut stream = TcpStream::connect(address).await.ok()?;
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
}
