//! VNC authentication, as the agent does it for a session whose VNC server asks for a password
//! (the process runtime's Xvnc): the password itself, the `vncpasswd` file Xvnc reads it from,
//! and the server's side of the RFB handshake up to a successful security result.
//!
//! VNC authentication (RFB security type 2, RFC 6143 §7.2.2) is a DES challenge: the server
//! sends 16 random bytes and the client returns them DES-encrypted (ECB) with the password as
//! key, the bits of every key byte reversed. A password is at most 8 bytes; the agent makes
//! each session's from 8 random non-zero bytes (a zero byte would end it early: servers read it
//! as a C string). The `vncpasswd` file is those 8 bytes DES-encrypted with a fixed key every
//! VNC implementation shares — obfuscation, not secrecy: the file's mode protects it.

use std::fmt;
use std::io;

use des::Des;
use des::cipher::generic_array::GenericArray;
use des::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use rand::Rng;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The length of a VNC password, and of its `vncpasswd` file.
pub const PASSWORD_BYTES: usize = 8;

/// The key every VNC implementation obfuscates stored passwords with.
const VNCPASSWD_KEY: [u8; 8] = [23, 82, 107, 6, 35, 78, 88, 7];

/// RFB security types.
pub const SECURITY_NONE: u8 = 1;
pub const SECURITY_VNC_AUTH: u8 = 2;

/// The longest failure reason read from a server; a longer one is cut.
const MAX_REASON_BYTES: u32 = 4096;

/// A session's VNC password. Its `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct VncPassword([u8; PASSWORD_BYTES]);

impl fmt::Debug for VncPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VncPassword(<redacted>)")
    }
}

impl VncPassword {
    /// A fresh random password (8 non-zero bytes, about 64 bits).
    pub fn random() -> Self {
        let mut rng = rand::rng();
        Self(std::array::from_fn(|_| rng.random_range(1..=u8::MAX)))
    }

    /// The password as a `vncpasswd` file holds it (what Xvnc's `-PasswordFile` reads).
    pub fn to_vncpasswd(&self) -> [u8; PASSWORD_BYTES] {
        let mut block = GenericArray::from(self.0);
        des(VNCPASSWD_KEY).encrypt_block(&mut block);
        block.into()
    }

    /// Reads a `vncpasswd` file's contents; `None` if it holds no password.
    pub fn from_vncpasswd(bytes: &[u8]) -> Option<Self> {
        let stored: [u8; PASSWORD_BYTES] = bytes.get(..PASSWORD_BYTES)?.try_into().ok()?;
        let mut block = GenericArray::from(stored);
        des(VNCPASSWD_KEY).decrypt_block(&mut block);
        let password: [u8; PASSWORD_BYTES] = block.into();
        (password[0] != 0).then_some(Self(password))
    }

    /// The answer to a server's VNC authentication challenge.
    pub fn response(&self, challenge: &[u8; 16]) -> [u8; 16] {
        let cipher = des(self.0);
        let mut response = [0u8; 16];
        for (out, chunk) in response.chunks_exact_mut(8).zip(challenge.chunks_exact(8)) {
            let mut block = GenericArray::clone_from_slice(chunk);
            cipher.encrypt_block(&mut block);
            out.copy_from_slice(&block);
        }
        response
    }
}

/// DES keyed the way VNC keys it: the bits of each key byte reversed.
fn des(key: [u8; 8]) -> Des {
    Des::new(&GenericArray::from(key.map(u8::reverse_bits)))
}

/// Why the handshake with a session's VNC server failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the VNC server connection failed during the handshake")]
    Io(#[from] io::Error),
    #[error("the VNC server does not speak RFB 3.8 (it sent {0:?})")]
    Version(String),
    #[error("the VNC server refused the connection: {0}")]
    Refused(String),
    #[error("the VNC server does not offer VNC authentication (it offers {0:?})")]
    NoVncAuth(Vec<u8>),
    #[error("the VNC server refused the session's password: {0}")]
    Failed(String),
}

/// The minor version of an RFB protocol version message (`RFB 003.008\n` is 8), if it is one
/// of version 3.
pub fn rfb_minor_version(message: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(message).ok()?;
    let version = text.strip_prefix("RFB ")?.strip_suffix('\n')?;
    let (major, minor) = version.split_once('.')?;
    let digits = |s: &str| s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(major) || !digits(minor) || major != "003" {
        return None;
    }
    minor.parse().ok()
}

/// Speaks the client's side of the RFB 3.8 handshake with `server` up to a successful VNC
/// authentication: afterwards the server waits for `ClientInit`, as after any security type.
pub async fn authenticate<S>(server: &mut S, password: &VncPassword) -> Result<(), AuthError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut version = [0u8; 12];
    server.read_exact(&mut version).await?;
    if rfb_minor_version(&version).is_none_or(|minor| minor < 8) {
        return Err(AuthError::Version(
            String::from_utf8_lossy(&version).into_owned(),
        ));
    }
    server.write_all(b"RFB 003.008\n").await?;
    let count = server.read_u8().await?;
    if count == 0 {
        return Err(AuthError::Refused(read_reason(server).await?));
    }
    let mut types = vec![0u8; usize::from(count)];
    server.read_exact(&mut types).await?;
    if !types.contains(&SECURITY_VNC_AUTH) {
        return Err(AuthError::NoVncAuth(types));
    }
    server.write_all(&[SECURITY_VNC_AUTH]).await?;
    let mut challenge = [0u8; 16];
    server.read_exact(&mut challenge).await?;
    server.write_all(&password.response(&challenge)).await?;
    match server.read_u32().await? {
        0 => Ok(()),
        _ => Err(AuthError::Failed(read_reason(server).await?)),
    }
}

/// A failure reason: a 32-bit length and that many bytes of text.
async fn read_reason<S: AsyncRead + Unpin>(server: &mut S) -> io::Result<String> {
    let len = server.read_u32().await?.min(MAX_REASON_BYTES);
    let mut reason = vec![0u8; len as usize];
    server.read_exact(&mut reason).await?;
    Ok(String::from_utf8_lossy(&reason).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_round_trip_through_the_vncpasswd_format() {
        for _ in 0..100 {
            let password = VncPassword::random();
            assert!(password.0.iter().all(|b| *b != 0), "no byte ends it early");
            let stored = password.to_vncpasswd();
            assert_ne!(stored, password.0, "the file does not hold it in clear");
            assert_eq!(VncPassword::from_vncpasswd(&stored), Some(password));
        }
        assert_eq!(VncPassword::from_vncpasswd(b"short"), None);
        assert!(!format!("{:?}", VncPassword::random()).contains('['));
    }

    #[test]
    fn the_vncpasswd_format_is_the_one_vnc_tools_write() {
        // What TigerVNC's `vncpasswd -f` writes for the password "password".
        let password = VncPassword(*b"password");
        assert_eq!(
            password.to_vncpasswd(),
            [0xdb, 0xd8, 0x3c, 0xfd, 0x72, 0x7a, 0x14, 0x58]
        );
    }

    #[test]
    fn versions_are_read_as_rfb_3_minor() {
        assert_eq!(rfb_minor_version(b"RFB 003.008\n"), Some(8));
        assert_eq!(rfb_minor_version(b"RFB 003.003\n"), Some(3));
        assert_eq!(rfb_minor_version(b"RFB 003.889\n"), Some(889));
        assert_eq!(rfb_minor_version(b"RFB 004.001\n"), None);
        assert_eq!(rfb_minor_version(b"SSH-2.0-x\r\n\0"), None);
    }
}
