//! What a session may say to a viewer: a filter on the server → client half of the RFB stream,
//! so cut text the clipboard policy forbids *out of* the session never reaches the viewer.
//!
//! The stream this replica sees from the agent starts with the greeting the agent (or, when the
//! VNC server asks for no password, the VNC server itself) sends: the protocol version, the
//! security types (3.7 and later; 3.3 names one), the security result (3.8 and later), then
//! `ServerInit` with the desktop's name — and then server messages (RFC 6143 §7.6 and the
//! extensions noVNC speaks): FramebufferUpdate, SetColourMapEntries, Bell, ServerCutText (both
//! forms), EndOfContinuousUpdates, ServerFence, xvp and QEMU. Which security phase applies
//! depends on the version the *viewer* chose, and how long a rectangle's pixels are on the pixel
//! format the viewer set: the client filter (`rfb_filter`) tells this one both through a
//! [`Link`].
//!
//! A FramebufferUpdate's length is known only by following each rectangle's encoding, so while
//! this filter runs the viewer may only ask for the encodings it can follow ([`can_follow`]:
//! Raw, CopyRect, RRE, Hextile, Tight, ZRLE and the pseudo-encodings noVNC relies on); the client
//! filter takes every other one out of `SetEncodings`. A viewer that changes the size of its
//! pixels after asking for updates is disconnected: updates already on their way would be in the
//! old format, and the stream could no longer be followed.
//!
//! Nothing is held but a header: the bytes of a message's, a rectangle's or a tile's header are
//! collected to learn what follows (a Tight palette, 1 KiB, at worst), and bodies — pixels, cut
//! text — stream through or are skipped without being held. Every byte passes at once except a
//! ServerCutText header, withheld until its length (and, for the extended clipboard, its flags)
//! is known: the message is then passed whole or dropped whole. Lengths are never trusted beyond
//! counting; an unknown message or encoding ends the viewer's stream with the error as its close
//! reason, never anything else.
//!
//! The filter runs only for a viewer whose rules limit what leaves the session
//! ([`super::rfb_filter::ClientPolicy::filters_session_stream`]): every other stream is copied
//! as it was, unparsed.

use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};

use super::rfb_filter::{
    ClientPolicy, EXTENDED_CLIPBOARD, ViewerMode, could_be_rfb, rfb_minor_version,
};

/// Why the session's stream could not be followed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum StreamError {
    #[error("the session does not speak RFB 3.x")]
    Version,
    #[error("the session's VNC server refused the connection")]
    Refused,
    #[error("the session offered security type {0}; only None can be followed")]
    SecurityType(u32),
    #[error("the session answered before the viewer chose an RFB version")]
    Early,
    #[error("the session sent an unknown RFB message (type {0})")]
    UnknownMessage(u8),
    #[error("the session sent a rectangle in encoding {0}, which the tunnel cannot follow")]
    Encoding(i32),
    #[error("the session sent a malformed RFB message (type {kind}): {why}")]
    Malformed { kind: u8, why: &'static str },
    #[error("the pixel format has {0} bits per pixel; only 8, 16 and 32 can be followed")]
    PixelSize(u8),
}

/// The part of an RFB pixel format that decides how long pixels are on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PixelFormat {
    bits_per_pixel: u8,
    depth: u8,
    true_colour: bool,
    max: [u16; 3],
}

impl PixelFormat {
    /// Reads the 16 bytes of a PIXEL_FORMAT.
    pub fn parse(b: &[u8; 16]) -> Self {
        let u16_at = |at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
        Self {
            bits_per_pixel: b[0],
            depth: b[1],
            true_colour: b[3] != 0,
            max: [u16_at(4), u16_at(6), u16_at(8)],
        }
    }

    /// Bytes per pixel in Raw, RRE, Hextile and Cursor data.
    fn bytes(self) -> Result<u64, StreamError> {
        match self.bits_per_pixel {
            8 | 16 | 32 => Ok(u64::from(self.bits_per_pixel / 8)),
            other => Err(StreamError::PixelSize(other)),
        }
    }

    /// Bytes per pixel in Tight data: three for 24-bit true colour in 32-bit pixels.
    fn tight_bytes(self) -> Result<u64, StreamError> {
        if self.true_colour && self.bits_per_pixel == 32 && self.depth == 24 && self.max == [255; 3]
        {
            Ok(3)
        } else {
            self.bytes()
        }
    }

    /// What framing depends on: two formats with the same sizes frame the same.
    fn sizes(self) -> (Result<u64, StreamError>, Result<u64, StreamError>) {
        (self.bytes(), self.tight_bytes())
    }
}

/// What the two halves of one viewer's stream tell each other.
#[derive(Debug, Default)]
struct Facts {
    /// The RFB minor version the viewer chose.
    client_minor: Option<u32>,
    /// The viewer does not speak RFB (a controlling viewer's stream then passes unfiltered).
    client_opaque: bool,
    /// The pixel format of the viewer's last SetPixelFormat.
    client_format: Option<PixelFormat>,
    /// The pixel format of ServerInit (the default).
    server_format: Option<PixelFormat>,
    /// The viewer has asked for updates (a request or continuous updates).
    updates_requested: bool,
}

/// Shared between the client filter and the server filter of one viewer's stream.
#[derive(Debug, Clone, Default)]
pub(crate) struct Link(Arc<Mutex<Facts>>);

impl Link {
    fn with<R>(&self, f: impl FnOnce(&mut Facts) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The viewer chose RFB 3.`minor`.
    pub fn client_version(&self, minor: u32) {
        self.with(|f| f.client_minor = Some(minor));
    }

    /// The viewer's stream is not RFB.
    pub fn client_opaque(&self) {
        self.with(|f| f.client_opaque = true);
    }

    /// The viewer asked for updates.
    pub fn updates_requested(&self) {
        self.with(|f| f.updates_requested = true);
    }

    /// The viewer sets its pixel format; refused when the stream could no longer be followed
    /// (a size of pixels the parser does not know, or one that changes once updates may be on
    /// their way).
    pub fn set_pixel_format(&self, format: PixelFormat) -> Result<(), &'static str> {
        if format.bytes().is_err() {
            return Err("a pixel format the tunnel cannot follow (8, 16 or 32 bits per pixel)");
        }
        self.with(|f| {
            let current = f.client_format.or(f.server_format);
            if f.updates_requested && current.is_some_and(|c| c.sizes() != format.sizes()) {
                return Err("a change of pixel size after updates were requested, \
                            which the tunnel cannot follow while it filters the clipboard");
            }
            f.client_format = Some(format);
            Ok(())
        })
    }

    fn format(&self) -> Option<PixelFormat> {
        self.with(|f| f.client_format.or(f.server_format))
    }
}

/// Whether the filter can follow rectangles in `encoding` (or, for a pseudo-encoding that is
/// only a capability, whether the messages it enables can be followed).
pub(crate) fn can_follow(encoding: i32) -> bool {
    matches!(
        encoding,
        RAW | COPY_RECT
            | RRE
            | HEXTILE
            | TIGHT
            | ZRLE
            | DESKTOP_SIZE
            | LAST_RECT
            | CURSOR
            | QEMU_KEY
            | QEMU_LED
            | DESKTOP_NAME
            | EXTENDED_DESKTOP_SIZE
            | XVP
            | FENCE
            | CONTINUOUS_UPDATES
            | EXTENDED_MOUSE_BUTTONS
            | EXTENDED_CLIPBOARD
            // JPEG quality and compression levels: hints to the encoder.
            | -32..=-23
            | -256..=-247
    )
}

const RAW: i32 = 0;
const COPY_RECT: i32 = 1;
const RRE: i32 = 2;
const HEXTILE: i32 = 5;
const TIGHT: i32 = 7;
const ZRLE: i32 = 16;
const DESKTOP_SIZE: i32 = -223;
const LAST_RECT: i32 = -224;
const CURSOR: i32 = -239;
const QEMU_KEY: i32 = -258;
const QEMU_LED: i32 = -261;
const DESKTOP_NAME: i32 = -307;
const EXTENDED_DESKTOP_SIZE: i32 = -308;
const XVP: i32 = -309;
const FENCE: i32 = -312;
const CONTINUOUS_UPDATES: i32 = -313;
const EXTENDED_MOUSE_BUTTONS: i32 = -316;

/// The extended clipboard's capabilities message, and the actions that carry (or announce) the
/// session's clipboard.
const CLIPBOARD_CAPS: u32 = 1 << 24;
const CLIPBOARD_NOTIFY: u32 = 1 << 27;
const CLIPBOARD_PROVIDE: u32 = 1 << 28;

/// Longest fence payload the extension allows.
const MAX_FENCE_PAYLOAD: usize = 64;

/// A part of what passes to the viewer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    /// These bytes of the input just fed.
    Input(Range<usize>),
    /// Bytes withheld from earlier input (a cut text header), now passed.
    Held(Vec<u8>),
}

/// Whether `pieces` are the whole of an input of `len` bytes, unchanged.
pub(crate) fn is_whole(pieces: &[Piece], len: usize) -> bool {
    match pieces {
        [] => len == 0,
        [Piece::Input(r)] => *r == (0..len),
        _ => false,
    }
}

/// The bytes `pieces` of `input` make.
pub(crate) fn assemble(input: &[u8], pieces: &[Piece]) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in pieces {
        match piece {
            Piece::Input(r) => out.extend_from_slice(&input[r.clone()]),
            Piece::Held(bytes) => out.extend_from_slice(bytes),
        }
    }
    out
}

fn push_input(out: &mut Vec<Piece>, range: Range<usize>) {
    if range.is_empty() {
        return;
    }
    if let Some(Piece::Input(last)) = out.last_mut()
        && last.end == range.start
    {
        last.end = range.end;
        return;
    }
    out.push(Piece::Input(range));
}

/// Where the filter is in the server's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// `RFB 003.008\n`.
    Version,
    /// The security type (3.3) or the list of types (3.7 and later).
    Security,
    /// The security result (3.8 and later).
    SecurityResult,
    /// ServerInit up to the name's length.
    Init,
    /// The start of a server message.
    Message,
    /// A rectangle's header.
    Rect,
    /// What follows the header of an RRE, ZRLE, DesktopName or ExtendedDesktopSize rectangle
    /// up to its body.
    RectData,
    /// The header of a Hextile tile.
    Tile,
    /// A Tight rectangle up to its data.
    Tight,
    /// Body bytes: passed on or dropped, then `after`.
    Skip { left: u64, pass: bool },
    /// The stream ended in an error; nothing more passes.
    Failed,
    /// A controlling viewer's stream that is not RFB: everything passes.
    Opaque,
}

/// A rectangle's header.
#[derive(Debug, Clone, Copy, Default)]
struct Rect {
    width: u16,
    height: u16,
    encoding: i32,
}

/// Follows one viewer's server → client stream; see the module documentation.
#[derive(Debug)]
pub(crate) struct ServerFilter {
    policy: ClientPolicy,
    link: Link,
    state: State,
    /// Where a Skip goes when it ends.
    after: State,
    head: Vec<u8>,
    /// The unit being collected in `head` is withheld until it is decided.
    withhold: bool,
    /// Rectangles of the current update still to come.
    rects_left: u16,
    rect: Rect,
    /// The current Hextile tile's top left corner, relative to the rectangle.
    tile: (u16, u16),
    /// The pixel format of the current update (read from the link once per update: it cannot
    /// change its sizes while updates are on their way).
    format: Option<PixelFormat>,
}

impl ServerFilter {
    pub fn new(policy: ClientPolicy, link: Link) -> Self {
        Self {
            policy,
            link,
            state: State::Version,
            after: State::Message,
            head: Vec::new(),
            withhold: false,
            rects_left: 0,
            rect: Rect::default(),
            tile: (0, 0),
            format: None,
        }
    }

    /// Appends to `out` what of `input` may reach the viewer (pieces of it, and header bytes
    /// withheld from earlier input). After an error nothing more passes, and every later call
    /// fails too.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<Piece>) -> Result<(), StreamError> {
        let mut at = 0;
        while at < input.len() {
            match self.state {
                State::Failed => return Err(self.failed()),
                State::Opaque => {
                    push_input(out, at..input.len());
                    return Ok(());
                }
                State::Skip { left, pass } => {
                    let n = usize::try_from(left)
                        .map_or(input.len() - at, |left| left.min(input.len() - at));
                    if pass {
                        push_input(out, at..at + n);
                    }
                    at += n;
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        self.after
                    } else {
                        State::Skip { left, pass }
                    };
                    continue;
                }
                _ => {}
            }
            let Some(total) = self.step(out)? else {
                continue;
            };
            if total <= self.head.len() {
                // Each header asks for more than it has; anything else would never end.
                self.state = State::Failed;
                return Err(StreamError::Malformed {
                    kind: self.head.first().copied().unwrap_or(0),
                    why: "a header the filter could not read",
                });
            }
            if self.head.is_empty() && self.state == State::Message && input[at] == 3 {
                self.withhold = true;
            }
            let n = (total - self.head.len()).min(input.len() - at);
            self.head.extend_from_slice(&input[at..at + n]);
            if !self.withhold {
                push_input(out, at..at + n);
            }
            at += n;
        }
        // A header may be complete (one that ends the input exactly).
        if !matches!(
            self.state,
            State::Failed | State::Opaque | State::Skip { .. }
        ) && !self.head.is_empty()
        {
            self.step(out)?;
        }
        Ok(())
    }

    /// Looks at the collected header: `Some(total)` when `total` bytes are needed, `None` once
    /// it has been handled (the state moved on).
    fn step(&mut self, out: &mut Vec<Piece>) -> Result<Option<usize>, StreamError> {
        let result = self.step_inner(out);
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }

    /// The error a failed filter keeps answering.
    fn failed(&self) -> StreamError {
        StreamError::Malformed {
            kind: self.head.first().copied().unwrap_or(0),
            why: "the stream already failed",
        }
    }

    /// Moves on to `state` with an empty header.
    fn to(&mut self, state: State) -> Option<usize> {
        self.head.clear();
        self.state = state;
        None
    }

    /// Passes (or drops) `len` body bytes, then goes to `after`.
    fn skip(&mut self, len: u64, pass: bool, after: State) -> Option<usize> {
        if len == 0 {
            return self.to(after);
        }
        self.after = after;
        self.to(State::Skip { left: len, pass })
    }

    /// Where the stream goes after the current rectangle.
    fn next_rect(&self) -> State {
        if self.rects_left == 0 {
            State::Message
        } else {
            State::Rect
        }
    }

    fn pixel_bytes(&self) -> Result<u64, StreamError> {
        self.format()?.bytes()
    }

    fn format(&self) -> Result<PixelFormat, StreamError> {
        self.format.ok_or(StreamError::Malformed {
            kind: 0,
            why: "an update before ServerInit",
        })
    }

    fn step_inner(&mut self, out: &mut Vec<Piece>) -> Result<Option<usize>, StreamError> {
        match self.state {
            State::Failed => Err(self.failed()),
            State::Version => self.version(),
            State::Security => self.security(),
            State::SecurityResult => {
                let Some(b) = self.head.first_chunk::<4>() else {
                    return Ok(Some(4));
                };
                if u32::from_be_bytes(*b) != 0 {
                    return Err(StreamError::Refused);
                }
                Ok(self.to(State::Init))
            }
            State::Init => {
                let Some(b) = self.head.first_chunk::<24>() else {
                    return Ok(Some(24));
                };
                let format = PixelFormat::parse(&std::array::from_fn(|i| b[4 + i]));
                let name = u32::from_be_bytes([b[20], b[21], b[22], b[23]]);
                self.link.with(|f| f.server_format = Some(format));
                Ok(self.skip(u64::from(name), true, State::Message))
            }
            State::Message => self.message(out),
            State::Rect => self.rect(),
            State::RectData => self.rect_data(),
            State::Tile => self.tile(),
            State::Tight => self.tight(),
            State::Skip { .. } | State::Opaque => Ok(None),
        }
    }

    fn version(&mut self) -> Result<Option<usize>, StreamError> {
        let head = &self.head;
        if !could_be_rfb(head) || (head.len() == 12 && rfb_minor_version(head).is_none()) {
            // Already passed: a stream that is not RFB carries no cut text a viewer reads.
            if self.policy.mode == ViewerMode::Control {
                return Ok(self.to(State::Opaque));
            }
            return Err(StreamError::Version);
        }
        if head.len() < 12 {
            return Ok(Some(12));
        }
        Ok(self.to(State::Security))
    }

    fn security(&mut self) -> Result<Option<usize>, StreamError> {
        let (minor, opaque) = self.link.with(|f| (f.client_minor, f.client_opaque));
        if opaque {
            return Ok(self.to(State::Opaque));
        }
        let minor = minor.ok_or(StreamError::Early)?;
        let head = &self.head;
        if minor < 7 {
            let Some(b) = head.first_chunk::<4>() else {
                return Ok(Some(4));
            };
            return match u32::from_be_bytes(*b) {
                1 => Ok(self.to(State::Init)),
                0 => Err(StreamError::Refused),
                other => Err(StreamError::SecurityType(other)),
            };
        }
        let Some(&count) = head.first() else {
            return Ok(Some(1));
        };
        if count == 0 {
            return Err(StreamError::Refused);
        }
        let total = 1 + usize::from(count);
        if head.len() < total {
            return Ok(Some(total));
        }
        Ok(self.to(if minor >= 8 {
            State::SecurityResult
        } else {
            State::Init
        }))
    }

    fn message(&mut self, out: &mut Vec<Piece>) -> Result<Option<usize>, StreamError> {
        let head = &self.head;
        let Some(&kind) = head.first() else {
            return Ok(Some(1));
        };
        let need = |n: usize| (head.len() < n).then_some(n);
        let u16_at = |at: usize| u16::from_be_bytes([head[at], head[at + 1]]);
        let u32_at =
            |at: usize| u32::from_be_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
        match kind {
            // FramebufferUpdate.
            0 => {
                if let Some(n) = need(4) {
                    return Ok(Some(n));
                }
                self.rects_left = u16_at(2);
                self.format = self.link.format();
                let next = self.next_rect();
                Ok(self.to(next))
            }
            // SetColourMapEntries.
            1 => {
                if let Some(n) = need(6) {
                    return Ok(Some(n));
                }
                let colours = u64::from(u16_at(4));
                Ok(self.skip(colours * 6, true, State::Message))
            }
            // Bell, EndOfContinuousUpdates.
            2 | 150 => Ok(self.to(State::Message)),
            3 => self.cut_text(out),
            // ServerFence.
            248 => {
                if let Some(n) = need(9) {
                    return Ok(Some(n));
                }
                let len = usize::from(head[8]);
                if len > MAX_FENCE_PAYLOAD {
                    return Err(StreamError::Malformed {
                        kind,
                        why: "a fence payload longer than 64 bytes",
                    });
                }
                if let Some(n) = need(9 + len) {
                    return Ok(Some(n));
                }
                Ok(self.to(State::Message))
            }
            // xvp.
            250 => Ok(need(4).or_else(|| self.to(State::Message))),
            // QEMU: only audio has server messages.
            255 => {
                if let Some(n) = need(2) {
                    return Ok(Some(n));
                }
                if head[1] != 1 {
                    return Err(StreamError::Malformed {
                        kind,
                        why: "an unknown QEMU server message",
                    });
                }
                if let Some(n) = need(4) {
                    return Ok(Some(n));
                }
                match u16_at(2) {
                    0 | 1 => Ok(self.to(State::Message)),
                    2 => {
                        if let Some(n) = need(8) {
                            return Ok(Some(n));
                        }
                        let len = u64::from(u32_at(4));
                        Ok(self.skip(len, true, State::Message))
                    }
                    _ => Err(StreamError::Malformed {
                        kind,
                        why: "an unknown QEMU audio operation",
                    }),
                }
            }
            other => Err(StreamError::UnknownMessage(other)),
        }
    }

    /// ServerCutText, classic or extended: passed or dropped whole, as the policy says.
    fn cut_text(&mut self, out: &mut Vec<Piece>) -> Result<Option<usize>, StreamError> {
        let head = &self.head;
        let Some(b) = head.get(4..8) else {
            return Ok(Some(8));
        };
        let len = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let size = len.unsigned_abs();
        let within = self
            .policy
            .clipboard_max_bytes
            .is_none_or(|max| size <= max);
        let from = self.policy.clipboard_from_session;
        let (pass, body) = if len >= 0 {
            (from && within, u64::from(size))
        } else {
            if size < 4 {
                return Err(StreamError::Malformed {
                    kind: 3,
                    why: "an extended clipboard message without flags",
                });
            }
            let Some(f) = head.get(8..12) else {
                return Ok(Some(12));
            };
            let flags = u32::from_be_bytes([f[0], f[1], f[2], f[3]]);
            // Capabilities name actions and sizes, not the clipboard's content.
            let carries =
                flags & CLIPBOARD_CAPS == 0 && flags & (CLIPBOARD_PROVIDE | CLIPBOARD_NOTIFY) != 0;
            let pass = !carries || (from && (flags & CLIPBOARD_PROVIDE == 0 || within));
            (pass, u64::from(size - 4))
        };
        if pass {
            out.push(Piece::Held(self.head.clone()));
        }
        self.withhold = false;
        Ok(self.skip(body, pass, State::Message))
    }

    fn rect(&mut self) -> Result<Option<usize>, StreamError> {
        let Some(b) = self.head.first_chunk::<12>() else {
            return Ok(Some(12));
        };
        let rect = Rect {
            width: u16::from_be_bytes([b[4], b[5]]),
            height: u16::from_be_bytes([b[6], b[7]]),
            encoding: i32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        };
        self.rect = rect;
        self.rects_left = self.rects_left.saturating_sub(1);
        let (w, h) = (u64::from(rect.width), u64::from(rect.height));
        let next = self.next_rect();
        Ok(match rect.encoding {
            RAW => {
                let bytes = self.pixel_bytes()?;
                self.skip(w * h * bytes, true, next)
            }
            COPY_RECT => self.skip(4, true, next),
            RRE | ZRLE | DESKTOP_NAME | EXTENDED_DESKTOP_SIZE => self.to(State::RectData),
            HEXTILE if w == 0 || h == 0 => self.to(next),
            HEXTILE => {
                self.tile = (0, 0);
                self.to(State::Tile)
            }
            TIGHT => self.to(State::Tight),
            CURSOR => {
                let bytes = self.pixel_bytes()?;
                self.skip(w * h * bytes + w.div_ceil(8) * h, true, next)
            }
            QEMU_LED => self.skip(1, true, next),
            DESKTOP_SIZE | QEMU_KEY | EXTENDED_MOUSE_BUTTONS => self.to(next),
            LAST_RECT => {
                self.rects_left = 0;
                self.to(State::Message)
            }
            other => return Err(StreamError::Encoding(other)),
        })
    }

    fn rect_data(&mut self) -> Result<Option<usize>, StreamError> {
        let rect = self.rect;
        let next = self.next_rect();
        let bytes = if rect.encoding == RRE {
            self.pixel_bytes()?
        } else {
            0
        };
        let header = 4 + usize::try_from(bytes).unwrap_or(4);
        let Some(b) = self.head.first_chunk::<4>() else {
            return Ok(Some(4));
        };
        let n = u64::from(u32::from_be_bytes(*b));
        Ok(match rect.encoding {
            RRE if self.head.len() < header => Some(header),
            RRE => self.skip(n * (bytes + 8), true, next),
            EXTENDED_DESKTOP_SIZE => self.skip(u64::from(b[0]) * 16, true, next),
            // ZRLE, DesktopName: a length.
            _ => self.skip(n, true, next),
        })
    }

    /// One Hextile tile.
    fn tile(&mut self) -> Result<Option<usize>, StreamError> {
        let Some(&sub) = self.head.first() else {
            return Ok(Some(1));
        };
        let bytes = self.pixel_bytes()?;
        let (x, y) = self.tile;
        let (w, h) = (
            u64::from((self.rect.width - x).min(16)),
            u64::from((self.rect.height - y).min(16)),
        );
        // The next tile, left to right, top to bottom.
        let (nx, ny) = if u32::from(x) + 16 >= u32::from(self.rect.width) {
            (0, u32::from(y) + 16)
        } else {
            (u32::from(x) + 16, u32::from(y))
        };
        let after = if ny >= u32::from(self.rect.height) {
            self.next_rect()
        } else {
            State::Tile
        };
        let next_tile = (
            u16::try_from(nx).unwrap_or(0),
            u16::try_from(ny).unwrap_or(0),
        );
        if sub & 1 != 0 {
            self.tile = next_tile;
            return Ok(self.skip(w * h * bytes, true, after));
        }
        let b = usize::try_from(bytes).unwrap_or(4);
        let header = 1
            + if sub & 2 != 0 { b } else { 0 }
            + if sub & 4 != 0 { b } else { 0 }
            + usize::from(sub & 8 != 0);
        if self.head.len() < header {
            return Ok(Some(header));
        }
        let count = if sub & 8 != 0 {
            u64::from(self.head[header - 1])
        } else {
            0
        };
        let each = if sub & 16 != 0 { bytes + 2 } else { 2 };
        self.tile = next_tile;
        Ok(self.skip(count * each, true, after))
    }

    /// A Tight rectangle: its control byte, filter, palette and data length.
    fn tight(&mut self) -> Result<Option<usize>, StreamError> {
        let malformed = |why| StreamError::Malformed { kind: 0, why };
        let head = &self.head;
        let Some(&control) = head.first() else {
            return Ok(Some(1));
        };
        let next = self.next_rect();
        let pixel = self.format()?.tight_bytes()?;
        let kind = control >> 4;
        match kind {
            // Fill: one pixel.
            8 => return Ok(self.skip(pixel, true, next)),
            // JPEG: a compact length, then the data.
            9 => {
                return Ok(match compact_length(head, 1) {
                    Err(n) => Some(n),
                    Ok(len) => self.skip(len, true, next),
                });
            }
            _ if kind & 8 != 0 => return Err(malformed("a Tight compression type it cannot be")),
            _ => {}
        }
        let mut at = 1;
        let filter = if kind & 4 != 0 {
            let Some(&filter) = head.get(at) else {
                return Ok(Some(at + 1));
            };
            at += 1;
            filter
        } else {
            0
        };
        let (w, h) = (u64::from(self.rect.width), u64::from(self.rect.height));
        let size = match filter {
            // Copy and gradient: pixels.
            0 | 2 => w * h * pixel,
            // Palette: its colours, then one bit (two colours) or one byte per pixel.
            1 => {
                let Some(&colours) = head.get(at) else {
                    return Ok(Some(at + 1));
                };
                let colours = u64::from(colours) + 1;
                at += 1 + usize::try_from(colours * pixel).unwrap_or(usize::MAX / 2);
                if head.len() < at {
                    return Ok(Some(at));
                }
                if colours <= 2 {
                    w.div_ceil(8) * h
                } else {
                    w * h
                }
            }
            _ => return Err(malformed("an unknown Tight filter")),
        };
        if size < 12 {
            // Small data is sent as it is (none at all for an empty rectangle).
            return Ok(self.skip(size, true, next));
        }
        Ok(match compact_length(head, at) {
            Err(n) => Some(n),
            Ok(len) => self.skip(len, true, next),
        })
    }
}

/// Tight's compact length at `at` (one to three bytes), or `Err(total)` when `total` header
/// bytes are needed to read it.
fn compact_length(head: &[u8], at: usize) -> Result<u64, usize> {
    let byte = |i: usize| head.get(at + i).copied().ok_or(at + i + 1);
    let b0 = byte(0)?;
    let mut len = u64::from(b0 & 0x7f);
    if b0 & 0x80 == 0 {
        return Ok(len);
    }
    let b1 = byte(1)?;
    len |= u64::from(b1 & 0x7f) << 7;
    if b1 & 0x80 == 0 {
        return Ok(len);
    }
    Ok(len | u64::from(byte(2)?) << 14)
}

#[cfg(test)]
#[path = "rfb_server_tests.rs"]
mod tests;
