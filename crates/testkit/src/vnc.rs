//! Probing a VNC server the way a viewer would: its first bytes are the RFB banner.

use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpStream, UnixStream};

/// Connects to `addr` — `host:port`, or `unix:/path` for a Unix socket, as agents write a
/// session's VNC address — and returns the 12-byte RFB banner (e.g. `RFB 003.008\n`).
pub async fn read_rfb_banner(addr: &str) -> anyhow::Result<String> {
    let read = async {
        let connected: std::io::Result<Box<dyn AsyncRead + Unpin>> =
            match addr.strip_prefix("unix:") {
                Some(path) => UnixStream::connect(path).await.map(|s| Box::new(s) as _),
                None => TcpStream::connect(addr).await.map(|s| Box::new(s) as _),
            };
        let mut stream =
            connected.with_context(|| format!("connecting to VNC server at {addr}"))?;
        let mut banner = [0u8; 12];
        stream
            .read_exact(&mut banner)
            .await
            .with_context(|| format!("reading the RFB banner from {addr}"))?;
        anyhow::Ok(String::from_utf8_lossy(&banner).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .with_context(|| format!("VNC server at {addr} sent no banner within 5 s"))?
}
