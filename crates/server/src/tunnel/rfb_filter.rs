//! What a viewer may say to its session: a filter on the client → server half of the RFB stream.
//!
//! The agent answers the session's VNC authentication itself and offers the viewer security
//! type None (see the agent's `tunnel::handshake`), so from the first byte the viewer sends
//! this replica sees a plain RFB client stream: the protocol version, the security type it
//! chose (3.7 and later), `ClientInit`, then client messages (RFC 6143 §7.5 and the extensions
//! noVNC speaks). [`ClientFilter`] follows that stream and passes on only what the viewer's
//! [`ClientPolicy`] allows:
//! - a **view-only** viewer's pixel format, encodings, update requests, continuous updates and
//!   fences pass; keys, pointer, cut text, desktop resizing and every other extension message
//!   are dropped, and its `ClientInit` always asks to share the desktop, so a watcher can never
//!   push the owner off;
//! - a **controlling** viewer's messages pass, except cut text the clipboard policy forbids
//!   (towards the session, or longer than the maximum: for the extended clipboard's form, its
//!   compressed length); when the policy limits a direction, the viewer is not allowed to ask
//!   for the extended clipboard (its pseudo-encoding is taken out of `SetEncodings`), so cut
//!   text stays in the classic form.
//!
//! Lengths are never trusted: a message is held only until its header is complete (at most a
//! `SetEncodings` list, 256 KiB), and bodies — cut text, gii events — stream through or are
//! skipped without being held. An unknown or malformed message is an error: the tunnel ends
//! that viewer's stream with the error as its close reason, and nothing else.
//!
//! When the policy limits what leaves the session, the server's half is filtered too
//! (`rfb_server`), and this filter serves it: it tells it the version the viewer chose and the
//! pixel format it set (through a [`Link`]), refuses a change of pixel size once updates were
//! requested, and takes every encoding the server filter cannot follow out of `SetEncodings`.
//!
//! A viewer the policy lets do everything never gets a filter at all (see
//! [`ClientPolicy::passes_everything`]): the owner's stream costs nothing extra.

use super::rfb_server::{Link, PixelFormat, can_follow};

/// What the viewer may do with the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ViewerMode {
    /// Keyboard, pointer, clipboard and resizing, as the session's owner.
    Control,
    /// Watching only: nothing the viewer sends reaches the session but what it takes to draw.
    ViewOnly,
}

/// The rules one viewer's stream follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientPolicy {
    pub mode: ViewerMode,
    /// Whether cut text from the viewer may reach the session.
    pub clipboard_to_session: bool,
    /// Whether the session's cut text may reach the viewer.
    pub clipboard_from_session: bool,
    /// Longest cut text passed, in bytes (`None`: no limit).
    pub clipboard_max_bytes: Option<u32>,
}

impl ClientPolicy {
    /// Everything allowed.
    #[cfg(test)]
    pub const CONTROL: Self = Self {
        mode: ViewerMode::Control,
        clipboard_to_session: true,
        clipboard_from_session: true,
        clipboard_max_bytes: None,
    };

    /// Whether the viewer's stream can go through unfiltered.
    pub fn passes_everything(&self) -> bool {
        self.mode == ViewerMode::Control
            && !self.limits_clipboard_direction()
            && self.clipboard_max_bytes.is_none()
    }

    /// Whether what the session sends must be filtered too (`rfb_server`): when copying out of
    /// the session is forbidden or limited in size.
    pub fn filters_session_stream(&self) -> bool {
        !self.clipboard_from_session || self.clipboard_max_bytes.is_some()
    }

    fn limits_clipboard_direction(&self) -> bool {
        !self.clipboard_to_session || !self.clipboard_from_session
    }
}

/// Why a viewer's stream was ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FilterError {
    #[error("the viewer does not speak RFB 3.x")]
    Version,
    #[error("the viewer chose security type {0}; only None is offered")]
    SecurityType(u8),
    #[error("the viewer sent an unknown RFB message (type {0})")]
    UnknownMessage(u8),
    #[error("the viewer sent a malformed RFB message (type {kind}): {why}")]
    Malformed { kind: u8, why: &'static str },
}

/// The extended clipboard pseudo-encoding (0xC0A1E5CE as a signed 32-bit number).
pub(crate) const EXTENDED_CLIPBOARD: i32 = 0xC0A1_E5CE_u32 as i32;

/// Longest fence payload the extension allows.
const MAX_FENCE_PAYLOAD: usize = 64;

/// Where the filter is in the client's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// `RFB 003.008\n`.
    Version,
    /// The security type the client chose (3.7 and later).
    Security,
    /// `ClientInit`: the shared flag.
    Init,
    /// The start of a client message (its header is collected in `head`).
    Message,
    /// The rest of a message's body: passed on, or skipped.
    Body { left: u64, pass: bool },
    /// An error ended the stream; nothing more passes.
    Failed,
    /// A controlling viewer that does not speak RFB: everything passes (see `feed`).
    Opaque,
}

/// Client messages, by what they do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    SetPixelFormat,
    SetEncodings,
    UpdateRequest,
    Key,
    Pointer,
    CutText { len: u32 },
    ContinuousUpdates,
    Fence,
    DesktopSize,
    Qemu,
    Xvp,
    Gii,
}

/// How much of a message is known from the bytes collected so far.
enum Frame {
    /// At least this many header bytes are needed.
    More(usize),
    /// The header is `header` bytes long; `body` more bytes follow it.
    Whole {
        header: usize,
        body: u64,
        kind: Kind,
    },
}

/// Follows one viewer's client → server stream; see the module documentation.
#[derive(Debug)]
pub(crate) struct ClientFilter {
    policy: ClientPolicy,
    state: State,
    head: Vec<u8>,
    /// To the filter of the server's half, when there is one.
    link: Option<Link>,
}

impl ClientFilter {
    pub fn new(policy: ClientPolicy) -> Self {
        Self {
            policy,
            state: State::Version,
            head: Vec::new(),
            link: None,
        }
    }

    /// A filter that serves the server's half's filter through `link` (see the module
    /// documentation).
    pub fn linked(policy: ClientPolicy, link: Link) -> Self {
        Self {
            link: Some(link),
            ..Self::new(policy)
        }
    }

    /// Appends to `out` what of `input` may reach the session. After an error nothing more
    /// passes, and every later call fails too.
    ///
    /// A controlling viewer whose first bytes are not an RFB version passes unfiltered: the
    /// agent answers the handshake itself and ends such a stream before anything reaches a
    /// VNC server, so nothing is lost, and streams to other targets (the tunnel's tests and
    /// benchmarks) keep working. A view-only viewer's stream must be RFB.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), FilterError> {
        while !input.is_empty() {
            if self.state == State::Opaque {
                out.extend_from_slice(input);
                return Ok(());
            }
            if let State::Body { left, pass } = self.state {
                let n = usize::try_from(left).map_or(input.len(), |left| left.min(input.len()));
                if pass {
                    out.extend_from_slice(&input[..n]);
                }
                input = &input[n..];
                let left = left - n as u64;
                self.state = if left == 0 {
                    State::Message
                } else {
                    State::Body { left, pass }
                };
                continue;
            }
            match self.step(out)? {
                Some(total) => {
                    let n = (total - self.head.len()).min(input.len());
                    self.head.extend_from_slice(&input[..n]);
                    input = &input[n..];
                }
                None => self.head.clear(),
            }
        }
        // A complete header may be waiting (one with no body, collected exactly).
        if self.state != State::Failed && !self.head.is_empty() && self.step(out)?.is_none() {
            self.head.clear();
        }
        Ok(())
    }

    /// Looks at the collected header: `Some(total)` when `total` bytes are needed, `None` once
    /// it has been handled (passed or dropped, and the state moved on).
    fn step(&mut self, out: &mut Vec<u8>) -> Result<Option<usize>, FilterError> {
        let result = self.step_inner(out);
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }

    fn step_inner(&mut self, out: &mut Vec<u8>) -> Result<Option<usize>, FilterError> {
        let head = &self.head;
        match self.state {
            State::Failed => Err(self.failed()),
            State::Version
                if !could_be_rfb(head)
                    || (head.len() == 12 && rfb_minor_version(head).is_none()) =>
            {
                if self.policy.mode == ViewerMode::Control {
                    out.extend_from_slice(head);
                    self.state = State::Opaque;
                    if let Some(link) = &self.link {
                        link.client_opaque();
                    }
                    return Ok(None);
                }
                Err(FilterError::Version)
            }
            State::Version if head.len() < 12 => Ok(Some(12)),
            State::Version => {
                let minor = rfb_minor_version(head).ok_or(FilterError::Version)?;
                if let Some(link) = &self.link {
                    link.client_version(minor);
                }
                out.extend_from_slice(head);
                self.state = if minor < 7 {
                    State::Init
                } else {
                    State::Security
                };
                Ok(None)
            }
            State::Security | State::Init if head.is_empty() => Ok(Some(1)),
            State::Security => match head[0] {
                1 => {
                    out.push(1);
                    self.state = State::Init;
                    Ok(None)
                }
                other => Err(FilterError::SecurityType(other)),
            },
            State::Init => {
                let shared = if self.policy.mode == ViewerMode::ViewOnly {
                    1
                } else {
                    head[0]
                };
                out.push(shared);
                self.state = State::Message;
                Ok(None)
            }
            State::Message => match frame(head)? {
                Frame::More(total) => Ok(Some(total)),
                Frame::Whole { header, body, kind } => {
                    debug_assert_eq!(header, head.len());
                    let pass = self.allows(kind);
                    if pass {
                        self.tell_link(kind)?;
                        self.emit(kind, out);
                    }
                    self.state = if body == 0 {
                        State::Message
                    } else {
                        State::Body { left: body, pass }
                    };
                    Ok(None)
                }
            },
            State::Body { .. } | State::Opaque => Ok(None),
        }
    }

    /// The error a failed filter keeps answering.
    fn failed(&self) -> FilterError {
        FilterError::Malformed {
            kind: self.head.first().copied().unwrap_or(0),
            why: "the stream already failed",
        }
    }

    fn allows(&self, kind: Kind) -> bool {
        let view = matches!(
            kind,
            Kind::SetPixelFormat
                | Kind::SetEncodings
                | Kind::UpdateRequest
                | Kind::ContinuousUpdates
                | Kind::Fence
        );
        match (self.policy.mode, kind) {
            (ViewerMode::ViewOnly, _) => view,
            (ViewerMode::Control, Kind::CutText { len }) => {
                self.policy.clipboard_to_session
                    && self.policy.clipboard_max_bytes.is_none_or(|max| len <= max)
            }
            (ViewerMode::Control, _) => true,
        }
    }

    /// Tells the server's half's filter what it needs of a message about to pass; a pixel
    /// format it could not follow is an error.
    fn tell_link(&self, kind: Kind) -> Result<(), FilterError> {
        let Some(link) = &self.link else {
            return Ok(());
        };
        match kind {
            Kind::SetPixelFormat => {
                let format = PixelFormat::parse(&std::array::from_fn(|i| self.head[4 + i]));
                link.set_pixel_format(format)
                    .map_err(|why| FilterError::Malformed { kind: 0, why })
            }
            Kind::UpdateRequest | Kind::ContinuousUpdates => {
                link.updates_requested();
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Passes the collected header on, rewritten where the policy says.
    fn emit(&self, kind: Kind, out: &mut Vec<u8>) {
        if kind != Kind::SetEncodings {
            out.extend_from_slice(&self.head);
            return;
        }
        let limited = self.policy.limits_clipboard_direction();
        let followed = self.link.is_some();
        out.extend_from_slice(&keep_encodings(&self.head, |e| {
            !(limited && e == EXTENDED_CLIPBOARD) && (!followed || can_follow(e))
        }));
    }
}

/// How long the message starting `head` is, from what is known so far.
fn frame(head: &[u8]) -> Result<Frame, FilterError> {
    let Some(&kind) = head.first() else {
        return Ok(Frame::More(1));
    };
    let fixed = |len: usize, kind: Kind| {
        if head.len() < len {
            Frame::More(len)
        } else {
            Frame::Whole {
                header: len,
                body: 0,
                kind,
            }
        }
    };
    // Reads a big-endian u16 at `at`, or asks for more.
    let u16_at = |at: usize| -> Option<usize> {
        head.get(at..at + 2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    };
    Ok(match kind {
        0 => fixed(20, Kind::SetPixelFormat),
        2 => match u16_at(2) {
            None => Frame::More(4),
            Some(count) => fixed(4 + 4 * count, Kind::SetEncodings),
        },
        3 => fixed(10, Kind::UpdateRequest),
        4 => fixed(8, Kind::Key),
        5 => fixed(6, Kind::Pointer),
        6 => match head.get(4..8) {
            None => Frame::More(8),
            Some(b) => {
                let len = i32::from_be_bytes([b[0], b[1], b[2], b[3]]).unsigned_abs();
                Frame::Whole {
                    header: 8,
                    body: u64::from(len),
                    kind: Kind::CutText { len },
                }
            }
        },
        150 => fixed(10, Kind::ContinuousUpdates),
        248 => match head.get(8) {
            None => Frame::More(9),
            Some(&len) if usize::from(len) > MAX_FENCE_PAYLOAD => {
                return Err(FilterError::Malformed {
                    kind,
                    why: "a fence payload longer than 64 bytes",
                });
            }
            Some(&len) => fixed(9 + usize::from(len), Kind::Fence),
        },
        250 => fixed(4, Kind::Xvp),
        251 => match head.get(6) {
            None => Frame::More(8),
            Some(&screens) => fixed(8 + 16 * usize::from(screens), Kind::DesktopSize),
        },
        253 => match head.get(1..4) {
            None => Frame::More(4),
            Some(b) => {
                let len = if b[0] & 0x80 != 0 {
                    u16::from_be_bytes([b[1], b[2]])
                } else {
                    u16::from_le_bytes([b[1], b[2]])
                };
                Frame::Whole {
                    header: 4,
                    body: u64::from(len),
                    kind: Kind::Gii,
                }
            }
        },
        255 => match head.get(1) {
            None => Frame::More(2),
            // Extended key event.
            Some(0) => fixed(12, Kind::Qemu),
            // Audio: enable and disable are 4 bytes, set-format 10.
            Some(1) => match u16_at(2) {
                None => Frame::More(4),
                Some(0 | 1) => fixed(4, Kind::Qemu),
                Some(2) => fixed(10, Kind::Qemu),
                Some(_) => {
                    return Err(FilterError::Malformed {
                        kind,
                        why: "an unknown QEMU audio operation",
                    });
                }
            },
            Some(_) => {
                return Err(FilterError::Malformed {
                    kind,
                    why: "an unknown QEMU message",
                });
            }
        },
        other => return Err(FilterError::UnknownMessage(other)),
    })
}

/// A whole `SetEncodings` message with only the encodings `keep` keeps.
fn keep_encodings(message: &[u8], keep: impl Fn(i32) -> bool) -> Vec<u8> {
    let kept: Vec<&[u8]> = message[4..]
        .chunks_exact(4)
        .filter(|e| keep(i32::from_be_bytes([e[0], e[1], e[2], e[3]])))
        .collect();
    let count = u16::try_from(kept.len()).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(4 + 4 * kept.len());
    out.extend_from_slice(&[message[0], message[1]]);
    out.extend_from_slice(&count.to_be_bytes());
    for e in kept {
        out.extend_from_slice(e);
    }
    out
}

/// Whether `head` may still become an RFB 3.x version message.
pub(super) fn could_be_rfb(head: &[u8]) -> bool {
    const PREFIX: &[u8] = b"RFB 003.";
    let n = head.len().min(PREFIX.len());
    head[..n] == PREFIX[..n]
}

/// The minor version of an RFB 3.x version message, as the agent reads it.
pub(super) fn rfb_minor_version(message: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(message).ok()?;
    let version = text.strip_prefix("RFB ")?.strip_suffix('\n')?;
    let (major, minor) = version.split_once('.')?;
    let digits = |s: &str| s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(major) || !digits(minor) || major != "003" {
        return None;
    }
    minor.parse().ok()
}

#[cfg(test)]
#[path = "rfb_filter_tests.rs"]
mod tests;
