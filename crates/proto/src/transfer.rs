//! File transfer into and out of a session's transfer folder.
//!
//! A transfer travels like a viewer's stream (see [`crate::tunnel`]): the control plane sends
//! the agent `transfer_open` ([`crate::wire::TransferOpen`]) with a one-time stream token, and
//! the agent dials one data WebSocket for that transfer to the same endpoint viewers use (a
//! viewer's stream may be a raw stream there; a transfer is always a WebSocket). What
//! differs is what the binary frames hold: each starts with a one-byte tag ([`Frame`]), so
//! that the outcome (the file's size, an error naming its cause, the end) travels in the
//! stream itself and survives the replica-to-replica hop, which forwards binary frames only.
//!
//! - upload: the agent answers `ready` (or `error`), the control plane sends `data` frames and
//!   then `end`; the agent answers `done` once the file is in place, or `error`.
//! - download: the agent answers `header` (the size) or `error`, then `data` frames, then `done`.
//! - list: the agent answers `listing` or `error`.
//!
//! Paths are relative to the transfer folder and checked by [`check_path`] on both sides: by the
//! control plane to answer a clear `400`, by the agent because it trusts nobody.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The folder in the session's home that transfers read and write.
pub const TRANSFER_FOLDER: &str = "Transfers";
/// Longest path accepted, in bytes.
pub const MAX_PATH_BYTES: usize = 1024;
/// Longest name of one path component, in bytes (the usual file-system limit).
pub const MAX_NAME_BYTES: usize = 255;
/// Most path components (directories below the folder, plus the file).
pub const MAX_DEPTH: usize = 16;
/// Most entries a listing returns.
pub const MAX_LISTING_ENTRIES: usize = 1000;
/// Most file bytes in one `data` frame.
pub const DATA_CHUNK_BYTES: usize = 256 * 1024;

/// What a transfer does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferDirection {
    /// Into the session.
    Upload,
    /// Out of the session.
    Download,
    /// The folder's entries.
    List,
}

impl std::fmt::Display for TransferDirection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Upload => "upload",
            Self::Download => "download",
            Self::List => "list",
        })
    }
}

/// Why a path is refused; the message is written for the person who typed the path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path is empty")]
    Empty,
    #[error("the path is longer than {MAX_PATH_BYTES} bytes")]
    TooLong,
    #[error("the path must be relative to the transfer folder (it starts with `/`)")]
    Absolute,
    #[error("the path contains a NUL character")]
    Nul,
    #[error("the path must not contain `..` or `.` components")]
    Dots,
    #[error("the path has an empty component (`//`)")]
    EmptyComponent,
    #[error("a name in the path is longer than {MAX_NAME_BYTES} bytes")]
    NameTooLong,
    #[error("the path is deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("the path contains a backslash or a control character")]
    Unusual,
}

/// The components of `path`, a file's place relative to the transfer folder, if it is one the
/// transfer may touch: relative, no `.` or `..`, no NUL, backslash or control characters, no
/// empty component, within the length limits. A trailing `/` is refused too (it names a
/// directory). Pure: whether the components exist or are links is for the agent to see.
pub fn check_path(path: &str) -> Result<Vec<&str>, PathError> {
    if path.is_empty() {
        return Err(PathError::Empty);
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong);
    }
    if path.contains('\0') {
        return Err(PathError::Nul);
    }
    if path.starts_with('/') {
        return Err(PathError::Absolute);
    }
    if path.contains('\\') || path.chars().any(char::is_control) {
        return Err(PathError::Unusual);
    }
    let parts: Vec<&str> = path.split('/').collect();
    if parts.len() > MAX_DEPTH {
        return Err(PathError::TooDeep);
    }
    for part in &parts {
        match *part {
            "" => return Err(PathError::EmptyComponent),
            "." | ".." => return Err(PathError::Dots),
            p if p.len() > MAX_NAME_BYTES => return Err(PathError::NameTooLong),
            _ => {}
        }
    }
    Ok(parts)
}

/// One entry of the transfer folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FileEntry {
    /// The entry's name in the folder.
    pub name: String,
    /// `file` or `directory` (links and other kinds are not listed).
    pub kind: FileKind,
    /// Size in bytes (0 for a directory).
    pub size: u64,
    /// Last modification.
    pub modified: Option<DateTime<Utc>>,
}

/// What a listed entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    File,
    Directory,
}

/// Answer to `GET /api/v1/sessions/{id}/files`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FileListing {
    /// The folder, relative to the session's home.
    pub folder: String,
    /// Its entries, by name.
    pub entries: Vec<FileEntry>,
    /// More entries exist than a listing returns.
    #[serde(default)]
    pub truncated: bool,
}

/// Answer to an upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UploadResult {
    /// Where the file is, relative to the transfer folder.
    pub path: String,
    /// Bytes written.
    pub bytes: u64,
}

/// Why the agent did not carry a transfer. `code` is what the API answers (`not_found`,
/// `invalid_path`, `too_large`, `transfer_unsupported`, `transfer_failed`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct TransferFailure {
    pub code: String,
    pub message: String,
}

impl TransferFailure {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

/// The codes of [`TransferFailure`].
pub mod failure_code {
    pub const INVALID_PATH: &str = "invalid_path";
    pub const NOT_FOUND: &str = "not_found";
    pub const TOO_LARGE: &str = "too_large";
    pub const UNSUPPORTED: &str = "transfer_unsupported";
    pub const FAILED: &str = "transfer_failed";
    pub const NOT_RUNNING: &str = "session_not_running";
}

/// One binary frame of a transfer's data connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The agent is ready for an upload's bytes.
    Ready,
    /// A download's size, before its bytes.
    Header { size: u64 },
    /// File bytes.
    Data(Vec<u8>),
    /// The control plane sent all of an upload's bytes.
    End,
    /// The agent finished: `bytes` written (upload) or sent (download).
    Done { bytes: u64 },
    /// The folder's entries.
    Listing(FileListing),
    /// The transfer failed.
    Error(TransferFailure),
}

const READY: u8 = 1;
const HEADER: u8 = 2;
const DATA: u8 = 3;
const END: u8 = 4;
const DONE: u8 = 5;
const LISTING: u8 = 6;
const ERROR: u8 = 7;

/// Why a frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("empty transfer frame")]
    Empty,
    #[error("unknown transfer frame tag {0}")]
    UnknownTag(u8),
    #[error("malformed transfer frame: {0}")]
    Malformed(String),
}

impl Frame {
    /// The frame's bytes: its tag, then its body.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::Ready => vec![READY],
            Self::End => vec![END],
            Self::Header { size } => tagged(HEADER, &size.to_be_bytes()),
            Self::Done { bytes } => tagged(DONE, &bytes.to_be_bytes()),
            Self::Data(bytes) => tagged(DATA, bytes),
            Self::Listing(listing) => tagged(LISTING, &json(listing)),
            Self::Error(failure) => tagged(ERROR, &json(failure)),
        }
    }

    /// A `data` frame of `bytes`, without building a [`Frame`] first.
    pub fn encode_data(bytes: &[u8]) -> Vec<u8> {
        tagged(DATA, bytes)
    }

    /// Reads a frame; never panics, whatever the bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, FrameError> {
        let (&tag, body) = bytes.split_first().ok_or(FrameError::Empty)?;
        let number = |body: &[u8]| -> Result<u64, FrameError> {
            let array: [u8; 8] = body
                .try_into()
                .map_err(|_| FrameError::Malformed("expected 8 bytes".into()))?;
            Ok(u64::from_be_bytes(array))
        };
        Ok(match tag {
            READY => Self::Ready,
            END => Self::End,
            HEADER => Self::Header {
                size: number(body)?,
            },
            DONE => Self::Done {
                bytes: number(body)?,
            },
            DATA => Self::Data(body.to_vec()),
            LISTING => Self::Listing(parse(body)?),
            ERROR => Self::Error(parse(body)?),
            other => return Err(FrameError::UnknownTag(other)),
        })
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    serde_json::from_slice(body).map_err(|e| FrameError::Malformed(e.to_string()))
}

fn tagged(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 1);
    out.push(tag);
    out.extend_from_slice(body);
    out
}

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("transfer frames hold only JSON-representable values")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn good_paths_split_into_components() {
        assert_eq!(check_path("a.txt"), Ok(vec!["a.txt"]));
        assert_eq!(
            check_path("docs/report 1.pdf"),
            Ok(vec!["docs", "report 1.pdf"])
        );
        assert_eq!(check_path("..hidden"), Ok(vec!["..hidden"]));
        assert_eq!(check_path("ü/ñ"), Ok(vec!["ü", "ñ"]));
    }

    #[test]
    fn paths_that_could_leave_the_folder_are_refused() {
        for (path, error) in [
            ("", PathError::Empty),
            ("/etc/passwd", PathError::Absolute),
            ("../x", PathError::Dots),
            ("a/../../x", PathError::Dots),
            ("a/./b", PathError::Dots),
            (".", PathError::Dots),
            ("a//b", PathError::EmptyComponent),
            ("a/", PathError::EmptyComponent),
            ("a\0b", PathError::Nul),
            ("a\\..\\b", PathError::Unusual),
            ("a\nb", PathError::Unusual),
        ] {
            assert_eq!(check_path(path), Err(error), "{path:?}");
        }
        assert_eq!(check_path(&"x".repeat(256)), Err(PathError::NameTooLong));
        assert_eq!(check_path(&"x".repeat(255)).map(|p| p.len()), Ok(1));
        assert_eq!(
            check_path(&"x/".repeat(600)),
            Err(PathError::TooLong),
            "length is checked before anything else"
        );
        let deep = format!("{}x", "x/".repeat(MAX_DEPTH));
        assert_eq!(check_path(&deep), Err(PathError::TooDeep));
    }

    #[test]
    fn frames_round_trip() {
        let frames = [
            Frame::Ready,
            Frame::End,
            Frame::Header { size: 1 << 40 },
            Frame::Done { bytes: 7 },
            Frame::Data(b"hello".to_vec()),
            Frame::Data(Vec::new()),
            Frame::Listing(FileListing {
                folder: TRANSFER_FOLDER.into(),
                entries: vec![FileEntry {
                    name: "a".into(),
                    kind: FileKind::File,
                    size: 3,
                    modified: DateTime::from_timestamp(1_800_000_000, 0),
                }],
                truncated: false,
            }),
            Frame::Error(TransferFailure::new(
                failure_code::NOT_FOUND,
                "no such file",
            )),
        ];
        for frame in frames {
            assert_eq!(Frame::decode(&frame.encode()), Ok(frame));
        }
        assert_eq!(
            Frame::encode_data(b"x"),
            Frame::Data(b"x".to_vec()).encode()
        );
        assert_eq!(Frame::decode(&[]), Err(FrameError::Empty));
        assert_eq!(Frame::decode(&[99]), Err(FrameError::UnknownTag(99)));
        assert!(matches!(
            Frame::decode(&[HEADER, 1]),
            Err(FrameError::Malformed(_))
        ));
    }

    proptest! {
        #[test]
        fn any_bytes_decode_or_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Frame::decode(&bytes);
        }

        #[test]
        fn accepted_paths_never_escape(path in "[a./\\\\\0-]{0,12}") {
            if let Ok(parts) = check_path(&path) {
                prop_assert!(!path.starts_with('/'));
                prop_assert!(parts.iter().all(|p| !p.is_empty() && *p != "." && *p != ".."));
            }
        }
    }
}
