//! The recording format, version 1, written by the control plane and read by the web UI's
//! player, the CLI and tests: what one viewer was shown, as the bytes the session sent
//! (the RFB stream from its version string on), each chunk with the time it arrived, plus
//! events (the recording started, who connected and how, a gap, the end).
//!
//! ```text
//! file    = magic "SSREC" (5 bytes) · version (1 byte, = 1) · record*
//! record  = kind (1 byte) · at (u32 BE, ms since the recording started) · length (u32 BE) · payload
//! kind 1  = data: payload is a chunk of the server→viewer stream, as it went to the viewer
//! kind 2  = event: payload is one JSON object, `{"event": "...", ...}` (see [`Event`])
//! ```
//!
//! Writing costs a 9-byte header per chunk: the chunk itself is stored as it is, never decoded.
//! A reader that meets an unknown kind stops with an error (a newer version changes the
//! version byte). A file cut short (a replica that stopped mid-viewing) reads up to its last
//! whole record.

use bytes::{Buf, Bytes, BytesMut};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The first bytes of every recording.
pub const MAGIC: &[u8; 5] = b"SSREC";
/// The version this code writes and reads.
pub const VERSION: u8 = 1;
/// Bytes of a record's header.
pub const RECORD_HEADER: usize = 9;
/// Largest payload a reader accepts: a data chunk is at most one tunnel frame (1 MiB); anything
/// far larger is a corrupt length, not a chunk.
pub const MAX_PAYLOAD: usize = 16 * 1024 * 1024;

/// Record kind of a chunk of the stream.
pub const KIND_DATA: u8 = 1;
/// Record kind of an event.
pub const KIND_EVENT: u8 = 2;

/// Something that happened during the viewing besides the bytes shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The first record: what this is a recording of.
    Started {
        recording_id: Uuid,
        session_id: Uuid,
        started_at: DateTime<Utc>,
    },
    /// A viewer connected: who, and how (`control` or `view_only`).
    Connected {
        user_id: Uuid,
        user: String,
        mode: String,
    },
    /// Bytes were lost from here on (storage did not keep up); the recording stops here.
    Gap { reason: String },
    /// The viewing ended.
    Ended { reason: String },
}

/// One record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Data { at_ms: u32, bytes: Bytes },
    Event { at_ms: u32, event: Event },
}

/// What is wrong with a recording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("not a StreamSpace recording (no SSREC header)")]
    NotARecording,
    #[error("recording format version {0} is not supported (this server reads version 1)")]
    Version(u8),
    #[error("record of unknown kind {0}")]
    UnknownKind(u8),
    #[error("record of {0} bytes is larger than any recording holds")]
    TooLarge(usize),
    #[error("event is not valid: {0}")]
    BadEvent(String),
}

/// The file header.
pub fn header() -> [u8; 6] {
    let mut h = [0; 6];
    h[..5].copy_from_slice(MAGIC);
    h[5] = VERSION;
    h
}

/// A record's header; the payload follows it unchanged.
pub fn record_header(kind: u8, at_ms: u32, len: usize) -> [u8; RECORD_HEADER] {
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    let mut h = [0; RECORD_HEADER];
    h[0] = kind;
    h[1..5].copy_from_slice(&at_ms.to_be_bytes());
    h[5..9].copy_from_slice(&len.to_be_bytes());
    h
}

impl Record {
    /// The record's bytes: header and payload.
    pub fn encode(&self) -> Vec<u8> {
        let (kind, at_ms, payload) = match self {
            Self::Data { at_ms, bytes } => (KIND_DATA, *at_ms, bytes.to_vec()),
            Self::Event { at_ms, event } => (
                KIND_EVENT,
                *at_ms,
                serde_json::to_vec(event).unwrap_or_default(),
            ),
        };
        let mut out = Vec::with_capacity(RECORD_HEADER + payload.len());
        out.extend_from_slice(&record_header(kind, at_ms, payload.len()));
        out.extend_from_slice(&payload);
        out
    }
}

/// Reads records from bytes as they arrive.
#[derive(Debug, Default)]
pub struct Reader {
    buf: BytesMut,
    header_read: bool,
}

impl Reader {
    /// Adds bytes read from the recording.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole record, `None` if more bytes are needed.
    pub fn next_record(&mut self) -> Result<Option<Record>, FormatError> {
        if !self.header_read {
            if self.buf.len() < 6 {
                return if MAGIC.starts_with(&self.buf[..self.buf.len().min(5)]) {
                    Ok(None)
                } else {
                    Err(FormatError::NotARecording)
                };
            }
            if &self.buf[..5] != MAGIC {
                return Err(FormatError::NotARecording);
            }
            if self.buf[5] != VERSION {
                return Err(FormatError::Version(self.buf[5]));
            }
            self.buf.advance(6);
            self.header_read = true;
        }
        if self.buf.len() < RECORD_HEADER {
            return Ok(None);
        }
        let kind = self.buf[0];
        let at_ms = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
        let len = u32::from_be_bytes([self.buf[5], self.buf[6], self.buf[7], self.buf[8]]) as usize;
        if kind != KIND_DATA && kind != KIND_EVENT {
            return Err(FormatError::UnknownKind(kind));
        }
        if len > MAX_PAYLOAD {
            return Err(FormatError::TooLarge(len));
        }
        if self.buf.len() < RECORD_HEADER + len {
            return Ok(None);
        }
        self.buf.advance(RECORD_HEADER);
        let payload = self.buf.split_to(len).freeze();
        Ok(Some(if kind == KIND_DATA {
            Record::Data {
                at_ms,
                bytes: payload,
            }
        } else {
            let event = serde_json::from_slice(&payload)
                .map_err(|e| FormatError::BadEvent(e.to_string()))?;
            Record::Event { at_ms, event }
        }))
    }
}

/// Every whole record of a recording held in memory.
pub fn decode_all(bytes: &[u8]) -> Result<Vec<Record>, FormatError> {
    let mut reader = Reader::default();
    reader.push(bytes);
    let mut records = Vec::new();
    while let Some(record) = reader.next_record()? {
        records.push(record);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Record> {
        vec![
            Record::Event {
                at_ms: 0,
                event: Event::Started {
                    recording_id: Uuid::now_v7(),
                    session_id: Uuid::now_v7(),
                    started_at: Utc::now(),
                },
            },
            Record::Event {
                at_ms: 0,
                event: Event::Connected {
                    user_id: Uuid::now_v7(),
                    user: "alice".into(),
                    mode: "control".into(),
                },
            },
            Record::Data {
                at_ms: 3,
                bytes: Bytes::from_static(b"RFB 003.008\n"),
            },
            Record::Data {
                at_ms: 70_000,
                bytes: Bytes::from(vec![0u8; 70_000]),
            },
            Record::Data {
                at_ms: 70_001,
                bytes: Bytes::new(),
            },
            Record::Event {
                at_ms: u32::MAX,
                event: Event::Ended {
                    reason: "viewer left".into(),
                },
            },
        ]
    }

    fn encoded(records: &[Record]) -> Vec<u8> {
        let mut out = header().to_vec();
        for r in records {
            out.extend(r.encode());
        }
        out
    }

    #[test]
    fn records_read_back_whole_or_split_anywhere() {
        let records = sample();
        let bytes = encoded(&records);
        assert_eq!(decode_all(&bytes), Ok(records.clone()));
        // Fed in two pieces split at every position of the first 200 bytes and at the end,
        // the reader yields the same records.
        for split in (0..200).chain(bytes.len() - 20..bytes.len()) {
            let mut reader = Reader::default();
            let mut got = Vec::new();
            for piece in [&bytes[..split], &bytes[split..]] {
                reader.push(piece);
                while let Some(r) = reader.next_record().expect("a valid recording reads") {
                    got.push(r);
                }
            }
            assert_eq!(got, records, "split at {split}");
        }
    }

    #[test]
    fn a_recording_cut_short_reads_up_to_its_last_whole_record() {
        let records = sample();
        let bytes = encoded(&records);
        let cut = &bytes[..bytes.len() - 3];
        assert_eq!(decode_all(cut), Ok(records[..records.len() - 1].to_vec()));
    }

    #[test]
    fn other_files_and_versions_are_refused() {
        assert_eq!(decode_all(b"GIF89a..."), Err(FormatError::NotARecording));
        assert_eq!(decode_all(b"SSREC\x02"), Err(FormatError::Version(2)));
        let mut unknown = header().to_vec();
        unknown.extend_from_slice(&record_header(9, 0, 0));
        assert_eq!(decode_all(&unknown), Err(FormatError::UnknownKind(9)));
        let mut huge = header().to_vec();
        huge.extend_from_slice(&record_header(KIND_DATA, 0, MAX_PAYLOAD + 1));
        assert_eq!(
            decode_all(&huge),
            Err(FormatError::TooLarge(MAX_PAYLOAD + 1))
        );
        assert_eq!(
            decode_all(b"SSR"),
            Ok(vec![]),
            "a short prefix waits for more"
        );
    }
}
