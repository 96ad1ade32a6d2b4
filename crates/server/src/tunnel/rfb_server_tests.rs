//! The server-message filter on byte streams, split at every position.

use proptest::prelude::*;

use super::super::rfb_filter::{ClientFilter, FilterError};
use super::*;

/// A 32-bit true-colour pixel format (depth 24), as Xvnc's ServerInit gives.
const TRUE_COLOUR: [u8; 16] = [32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0];

/// A 16-bit one.
const HIGH_COLOUR: [u8; 16] = [16, 16, 0, 1, 0, 31, 0, 63, 0, 31, 11, 5, 0, 0, 0, 0];

fn policy(from_session: bool, max: Option<u32>) -> ClientPolicy {
    ClientPolicy {
        mode: ViewerMode::Control,
        clipboard_to_session: true,
        clipboard_from_session: from_session,
        clipboard_max_bytes: max,
    }
}

/// Version, the security types of 3.8 and its result, ServerInit named "xterm".
fn hello() -> Vec<u8> {
    let mut m = b"RFB 003.008\n".to_vec();
    m.extend_from_slice(&[1, 1, 0, 0, 0, 0]);
    m.extend_from_slice(&server_init(&TRUE_COLOUR));
    m
}

fn server_init(format: &[u8; 16]) -> Vec<u8> {
    let mut m = vec![5, 0, 3, 32];
    m.extend_from_slice(format);
    m.extend_from_slice(&5u32.to_be_bytes());
    m.extend_from_slice(b"xterm");
    m
}

fn update(rects: &[Vec<u8>]) -> Vec<u8> {
    let mut m = vec![0, 0];
    let count = u16::try_from(rects.len()).expect("a few rectangles");
    m.extend_from_slice(&count.to_be_bytes());
    m.extend(rects.iter().flatten());
    m
}

fn rect(w: u16, h: u16, encoding: i32, body: &[u8]) -> Vec<u8> {
    let mut m = vec![0, 1, 0, 2];
    m.extend_from_slice(&w.to_be_bytes());
    m.extend_from_slice(&h.to_be_bytes());
    m.extend_from_slice(&encoding.to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// Bytes counting up, so a misplaced byte shows.
fn bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

fn rre(bpp: usize, subrects: usize) -> Vec<u8> {
    let mut body = u32::try_from(subrects).expect("few").to_be_bytes().to_vec();
    body.extend(bytes(bpp + subrects * (bpp + 8)));
    body
}

/// A 20x18 Hextile rectangle: four tiles (16x16, 4x16, 16x2, 4x2), each of another kind.
fn hextile(bpp: usize) -> Vec<u8> {
    let mut body = vec![1]; // raw
    body.extend(bytes(16 * 4 * 16 * bpp / 4));
    body.push(2 | 4); // background and foreground, no subrectangles
    body.extend(bytes(2 * bpp));
    body.push(8 | 4); // foreground, two plain subrectangles
    body.extend(bytes(bpp));
    body.push(2);
    body.extend(bytes(4));
    body.extend_from_slice(&[8 | 16, 1]); // one coloured subrectangle
    body.extend(bytes(bpp + 2));
    body
}

fn zrle(n: usize) -> Vec<u8> {
    let mut body = u32::try_from(n).expect("short").to_be_bytes().to_vec();
    body.extend(bytes(n));
    body
}

fn compact(len: usize) -> Vec<u8> {
    let mut out = vec![(len & 0x7f) as u8];
    if len > 0x7f {
        out[0] |= 0x80;
        out.push(((len >> 7) & 0x7f) as u8);
        if len > 0x3fff {
            out[1] |= 0x80;
            out.push((len >> 14) as u8);
        }
    }
    out
}

/// Tight rectangles of a 32-bit true-colour format (3-byte pixels) of `w`x`h`: each kind.
fn tight_rects() -> Vec<Vec<u8>> {
    let mut rects = Vec::new();
    // Fill.
    rects.push(rect(40, 30, 7, &[0x80, 1, 2, 3]));
    // JPEG, with a two-byte and a three-byte compact length.
    for len in [300, 20_000] {
        let mut body = vec![0x90];
        body.extend(compact(len));
        body.extend(bytes(len));
        rects.push(rect(40, 30, 7, &body));
    }
    // Basic, copy filter, small enough to be sent as it is (2x1 pixels: 6 bytes).
    let mut body = vec![0x00];
    body.extend(bytes(6));
    rects.push(rect(2, 1, 7, &body));
    // Basic, copy filter named explicitly, compressed, stream 2, resetting stream 0.
    let mut body = vec![0x61, 0];
    body.extend(compact(90));
    body.extend(bytes(90));
    rects.push(rect(40, 30, 7, &body));
    // Palette of two colours: one bit per pixel (16x1: 2 bytes, sent as they are).
    let mut body = vec![0x40, 1, 1];
    body.extend(bytes(6));
    body.extend(bytes(2));
    rects.push(rect(16, 1, 7, &body));
    // Palette of five colours, compressed.
    let mut body = vec![0x50, 1, 4];
    body.extend(bytes(15));
    body.extend(compact(200));
    body.extend(bytes(200));
    rects.push(rect(40, 30, 7, &body));
    // Gradient.
    let mut body = vec![0x40, 2];
    body.extend(compact(129));
    body.extend(bytes(129));
    rects.push(rect(40, 30, 7, &body));
    // An empty rectangle carries no data.
    rects.push(rect(0, 5, 7, &[0x00]));
    rects
}

fn pseudo_rects() -> Vec<Vec<u8>> {
    let mut name = 6u32.to_be_bytes().to_vec();
    name.extend_from_slice(b"xterm2");
    let mut screens = vec![2, 0, 0, 0];
    screens.extend(bytes(32));
    vec![
        rect(1280, 800, -223, &[]),
        rect(1280, 800, -308, &screens),
        rect(0, 0, -307, &name),
        rect(10, 9, -239, &bytes(10 * 9 * 4 + 2 * 9)),
        rect(0, 0, -261, &[3]),
        rect(0, 0, -258, &[]),
        rect(0, 0, -316, &[]),
    ]
}

fn cut_text(text: &[u8]) -> Vec<u8> {
    let mut m = vec![3, 0, 0, 0];
    m.extend_from_slice(&u32::try_from(text.len()).expect("short").to_be_bytes());
    m.extend_from_slice(text);
    m
}

fn extended_cut_text(flags: u32, payload: &[u8]) -> Vec<u8> {
    let mut m = vec![3, 0, 0, 0];
    let len = i32::try_from(payload.len() + 4).expect("short");
    m.extend_from_slice(&(-len).to_be_bytes());
    m.extend_from_slice(&flags.to_be_bytes());
    m.extend_from_slice(payload);
    m
}

const PROVIDE_TEXT: u32 = CLIPBOARD_PROVIDE | 1;
const NOTIFY_TEXT: u32 = CLIPBOARD_NOTIFY | 1;
const CAPS: u32 = CLIPBOARD_CAPS | (1 << 25) | (1 << 26) | CLIPBOARD_NOTIFY | CLIPBOARD_PROVIDE | 1;

/// What a message is, for the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Is {
    /// Drawing and everything else the clipboard policy does not touch.
    Other,
    /// The session's clipboard text, of this size.
    Clipboard(u32),
    /// An announcement that the session's clipboard changed (extended clipboard "notify"): it
    /// carries no text, so only the direction rule applies to it, never the size limit.
    Announcement,
}

/// Every message the filter follows, after `hello()`.
fn every_message() -> Vec<(Vec<u8>, Is)> {
    let mut rects = vec![
        rect(3, 2, 0, &bytes(3 * 2 * 4)),
        rect(8, 8, 1, &[0, 1, 0, 2]),
        rect(20, 10, 2, &rre(4, 3)),
        rect(20, 18, 5, &hextile(4)),
        rect(64, 64, 16, &zrle(1000)),
    ];
    rects.extend(tight_rects());
    rects.extend(pseudo_rects());
    let mut colours = vec![1, 0, 0, 0, 0, 2];
    colours.extend(bytes(12));
    let mut last = vec![0, 0, 0xff, 0xff];
    last.extend(rect(1, 1, 0, &[1, 2, 3, 4]));
    last.extend(rect(0, 0, -224, &[]));
    let mut fence = vec![248, 0, 0, 0, 0x80, 0, 0, 1, 3];
    fence.extend_from_slice(b"abc");
    let mut audio = vec![255, 1, 0, 2];
    audio.extend_from_slice(&5u32.to_be_bytes());
    audio.extend_from_slice(b"sound");
    vec![
        (update(&rects), Is::Other),
        (update(&[]), Is::Other),
        (last, Is::Other),
        (colours, Is::Other),
        (vec![2], Is::Other),
        (cut_text(b"copied out"), Is::Clipboard(10)),
        (
            extended_cut_text(PROVIDE_TEXT, &bytes(40)),
            Is::Clipboard(44),
        ),
        (extended_cut_text(NOTIFY_TEXT, &[]), Is::Announcement),
        (extended_cut_text(CAPS, &bytes(4)), Is::Other),
        (vec![150], Is::Other),
        (fence, Is::Other),
        (vec![250, 0, 1, 2], Is::Other),
        (vec![255, 1, 0, 1], Is::Other),
        (audio, Is::Other),
        (cut_text(&bytes(3000)), Is::Clipboard(3000)),
    ]
}

/// A linked filter whose viewer chose RFB 3.`minor`.
fn server_filter(policy: ClientPolicy, minor: u32) -> (ServerFilter, Link) {
    let link = Link::default();
    link.client_version(minor);
    (ServerFilter::new(policy, link.clone()), link)
}

fn filter_chunks(filter: &mut ServerFilter, chunks: &[&[u8]]) -> Result<Vec<u8>, StreamError> {
    let mut out = Vec::new();
    for chunk in chunks {
        let mut pieces = Vec::new();
        filter.feed(chunk, &mut pieces)?;
        out.extend(assemble(chunk, &pieces));
    }
    Ok(out)
}

/// `stream` through a fresh filter, whole and split at every position (and byte by byte); all
/// must agree.
fn filter(policy: ClientPolicy, stream: &[u8]) -> Result<Vec<u8>, StreamError> {
    let (mut f, _) = server_filter(policy, 8);
    let whole = filter_chunks(&mut f, &[stream]);
    for at in 0..=stream.len() {
        let (mut f, _) = server_filter(policy, 8);
        let split = filter_chunks(&mut f, &[&stream[..at], &stream[at..]]);
        assert_eq!(split, whole, "split at {at}");
    }
    let (mut f, _) = server_filter(policy, 8);
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(filter_chunks(&mut f, &bytes), whole, "byte by byte");
    whole
}

fn stream(messages: &[Vec<u8>]) -> Vec<u8> {
    let mut s = hello();
    s.extend(messages.iter().flatten());
    s
}

/// What passes of every message under `passes`.
fn expected(passes: impl Fn(Is) -> bool) -> Vec<u8> {
    let kept: Vec<Vec<u8>> = every_message()
        .into_iter()
        .filter(|(_, is)| passes(*is))
        .map(|(m, _)| m)
        .collect();
    stream(&kept)
}

fn all() -> Vec<u8> {
    let messages: Vec<Vec<u8>> = every_message().into_iter().map(|(m, _)| m).collect();
    stream(&messages)
}

#[test]
fn a_stream_the_policy_allows_passes_unchanged() {
    assert_eq!(filter(policy(true, None), &all()), Ok(all()));
}

#[test]
fn nothing_of_the_clipboard_leaves_a_session_that_forbids_it() {
    let out = filter(policy(false, None), &all());
    assert_eq!(out, Ok(expected(|is| is == Is::Other)));
}

#[test]
fn cut_text_longer_than_the_maximum_is_dropped() {
    let out = filter(policy(true, Some(44)), &all());
    assert_eq!(
        out,
        Ok(expected(|is| !matches!(is, Is::Clipboard(n) if n > 44)))
    );
    let out = filter(policy(true, Some(43)), &all());
    assert_eq!(
        out,
        Ok(expected(|is| !matches!(is, Is::Clipboard(n) if n > 43)))
    );
}

#[test]
fn a_frame_that_passes_whole_is_one_piece_of_the_input() {
    let (mut f, _) = server_filter(policy(false, Some(10)), 8);
    let mut pieces = Vec::new();
    f.feed(&hello(), &mut pieces).expect("a good hello");
    pieces.clear();
    let s = [update(&[rect(3, 2, 0, &bytes(24))]), vec![2]].concat();
    f.feed(&s, &mut pieces).expect("a good stream");
    assert!(is_whole(&pieces, s.len()), "{pieces:?}");
    // Cut text that spans frames: its header is withheld, then dropped with its body.
    pieces.clear();
    let cut = cut_text(b"secret");
    f.feed(&cut[..5], &mut pieces).expect("a good stream");
    assert!(pieces.is_empty(), "{pieces:?}");
    f.feed(&cut[5..], &mut pieces).expect("a good stream");
    assert!(pieces.is_empty(), "{pieces:?}");
}

#[test]
fn the_handshake_of_each_version_is_followed() {
    let init = server_init(&TRUE_COLOUR);
    for (minor, security) in [
        (3, vec![0, 0, 0, 1]),
        (7, vec![1, 1]),
        (8, vec![1, 1, 0, 0, 0, 0]),
        (8, vec![2, 2, 1, 0, 0, 0, 0]),
    ] {
        let mut s = b"RFB 003.008\n".to_vec();
        s.extend(&security);
        s.extend(&init);
        s.extend(cut_text(b"x"));
        s.push(2);
        let (mut f, _) = server_filter(policy(false, None), minor);
        let mut want = s.clone();
        want.truncate(want.len() - cut_text(b"x").len() - 1);
        want.push(2);
        assert_eq!(filter_chunks(&mut f, &[&s]), Ok(want), "3.{minor}");
    }
}

#[test]
fn a_bad_handshake_ends_the_stream() {
    let refused = |minor, security: &[u8]| {
        let mut s = b"RFB 003.008\n".to_vec();
        s.extend_from_slice(security);
        let (mut f, _) = server_filter(policy(false, None), minor);
        filter_chunks(&mut f, &[&s])
    };
    assert_eq!(refused(8, &[0, 0, 0, 0, 4]), Err(StreamError::Refused));
    assert_eq!(refused(3, &[0, 0, 0, 2]), Err(StreamError::SecurityType(2)));
    assert_eq!(refused(8, &[1, 1, 0, 0, 0, 1]), Err(StreamError::Refused));

    // The session cannot answer before the viewer chose its version.
    let mut f = ServerFilter::new(policy(false, None), Link::default());
    assert_eq!(
        filter_chunks(&mut f, &[b"RFB 003.008\n\x01\x01"]),
        Err(StreamError::Early)
    );

    // Not RFB: a controlling viewer's stream passes; a watcher's ends.
    let mut f = ServerFilter::new(policy(false, None), Link::default());
    assert_eq!(
        filter_chunks(&mut f, &[b"HTTP/1.1 200 OK\r\n", &cut_text(b"x")]),
        Ok([b"HTTP/1.1 200 OK\r\n".as_slice(), &cut_text(b"x")].concat())
    );
    let watcher = ClientPolicy {
        mode: ViewerMode::ViewOnly,
        ..policy(false, None)
    };
    let mut f = ServerFilter::new(watcher, Link::default());
    assert_eq!(
        filter_chunks(&mut f, &[b"HTTP/1.1 200 OK\r\n"]),
        Err(StreamError::Version)
    );
}

#[test]
fn unknown_or_malformed_messages_end_the_stream_and_nothing_after_passes() {
    let mut long_fence = vec![248, 0, 0, 0, 0, 0, 0, 0, 65];
    long_fence.extend(bytes(65));
    for (bad, error) in [
        (vec![7], StreamError::UnknownMessage(7)),
        (update(&[rect(1, 1, 6, &[0; 4])]), StreamError::Encoding(6)),
        (
            update(&[rect(1, 1, 0x574d_5664, &[])]),
            StreamError::Encoding(0x574d_5664),
        ),
        (
            update(&[rect(1, 1, 7, &[0xa0])]),
            StreamError::Malformed {
                kind: 0,
                why: "a Tight compression type it cannot be",
            },
        ),
        (
            update(&[rect(4, 4, 7, &[0x40, 3])]),
            StreamError::Malformed {
                kind: 0,
                why: "an unknown Tight filter",
            },
        ),
        (
            long_fence,
            StreamError::Malformed {
                kind: 248,
                why: "a fence payload longer than 64 bytes",
            },
        ),
        (
            vec![3, 0, 0, 0, 0xff, 0xff, 0xff, 0xfe],
            StreamError::Malformed {
                kind: 3,
                why: "an extended clipboard message without flags",
            },
        ),
        (
            vec![255, 0],
            StreamError::Malformed {
                kind: 255,
                why: "an unknown QEMU server message",
            },
        ),
    ] {
        let (mut f, _) = server_filter(policy(true, None), 8);
        let mut s = hello();
        s.extend(&bad);
        let result = filter_chunks(&mut f, &[&s]);
        assert_eq!(result, Err(error), "{bad:?}");
        let mut pieces = Vec::new();
        assert!(f.feed(&[2], &mut pieces).is_err());
        assert!(pieces.is_empty());
    }
}

#[test]
fn pixel_sizes_follow_the_viewers_pixel_format() {
    // A viewer that asks for 16-bit pixels gets Raw, RRE, Hextile and cursors of 2-byte pixels,
    // and Tight of 2-byte pixels too (not 24-bit true colour).
    let link = Link::default();
    link.client_version(8);
    link.set_pixel_format(PixelFormat::parse(&HIGH_COLOUR))
        .expect("before any update");
    let tight = [0x80, 1, 2];
    let messages = [update(&[
        rect(3, 2, 0, &bytes(12)),
        rect(20, 10, 2, &rre(2, 2)),
        rect(20, 18, 5, &hextile(2)),
        rect(10, 9, -239, &bytes(10 * 9 * 2 + 2 * 9)),
        rect(4, 4, 7, &tight),
    ])];
    let s = stream(&messages);
    let mut f = ServerFilter::new(policy(false, None), link);
    assert_eq!(filter_chunks(&mut f, &[&s]), Ok(s.clone()));
}

#[test]
fn a_server_init_in_16_bits_sets_the_default() {
    let mut s = b"RFB 003.008\n".to_vec();
    s.extend_from_slice(&[1, 1, 0, 0, 0, 0]);
    s.extend(server_init(&HIGH_COLOUR));
    s.extend(update(&[rect(3, 2, 0, &bytes(12))]));
    s.push(2);
    let (mut f, _) = server_filter(policy(false, None), 8);
    assert_eq!(filter_chunks(&mut f, &[&s]), Ok(s.clone()));
}

/// The client filter's side of the link.
fn client_messages(link: &Link, messages: &[Vec<u8>]) -> Result<Vec<u8>, FilterError> {
    let mut f = ClientFilter::linked(policy(true, Some(100)), link.clone());
    let mut out = Vec::new();
    f.feed(b"RFB 003.008\n\x01\x01", &mut out)?;
    out.clear();
    for m in messages {
        f.feed(m, &mut out)?;
    }
    Ok(out)
}

fn set_encodings(encodings: &[i32]) -> Vec<u8> {
    let mut m = vec![2, 0];
    let count = u16::try_from(encodings.len()).expect("a short list");
    m.extend_from_slice(&count.to_be_bytes());
    for e in encodings {
        m.extend_from_slice(&e.to_be_bytes());
    }
    m
}

fn set_pixel_format(format: &[u8; 16]) -> Vec<u8> {
    let mut m = vec![0, 0, 0, 0];
    m.extend_from_slice(format);
    m
}

#[test]
fn the_viewer_may_ask_only_for_encodings_the_filter_follows() {
    // noVNC's list, in its order.
    let novnc = [
        1,
        50,
        7,
        -260,
        16,
        21,
        5,
        2,
        6,
        0,
        -26,
        -254,
        -223,
        -224,
        -258,
        -261,
        -308,
        -309,
        -312,
        -313,
        -307,
        EXTENDED_CLIPBOARD,
        -316,
        0x574d_5664,
        -239,
    ];
    let kept = [
        1,
        7,
        16,
        5,
        2,
        0,
        -26,
        -254,
        -223,
        -224,
        -258,
        -261,
        -308,
        -309,
        -312,
        -313,
        -307,
        EXTENDED_CLIPBOARD,
        -316,
        -239,
    ];
    let link = Link::default();
    let out = client_messages(&link, &[set_encodings(&novnc)]);
    assert_eq!(out, Ok(set_encodings(&kept)));
    assert_eq!(link.with(|f| f.client_minor), Some(8));
}

#[test]
fn the_pixel_size_may_not_change_once_updates_were_asked_for() {
    let request = vec![3, 0, 0, 0, 0, 0, 5, 0, 3, 32];
    let link = Link::default();
    link.with(|f| f.server_format = Some(PixelFormat::parse(&TRUE_COLOUR)));
    // Before any request, and to the same sizes after: fine.
    let fine = [
        set_pixel_format(&HIGH_COLOUR),
        request.clone(),
        set_pixel_format(&HIGH_COLOUR),
    ];
    assert_eq!(client_messages(&link, &fine), Ok(fine.concat()));
    assert_eq!(link.format(), Some(PixelFormat::parse(&HIGH_COLOUR)));
    let changed = client_messages(&link, &[set_pixel_format(&TRUE_COLOUR)]);
    assert!(
        matches!(changed, Err(FilterError::Malformed { kind: 0, .. })),
        "{changed:?}"
    );
    let mut odd = TRUE_COLOUR;
    odd[0] = 24;
    let link = Link::default();
    assert!(client_messages(&link, &[set_pixel_format(&odd)]).is_err());
}

#[test]
fn a_viewer_that_does_not_speak_rfb_makes_the_session_side_pass() {
    let link = Link::default();
    let mut client = ClientFilter::linked(policy(false, Some(1)), link.clone());
    let mut out = Vec::new();
    client
        .feed(b"GET / HTTP/1.1\r\n", &mut out)
        .expect("opaque");
    let mut f = ServerFilter::new(policy(false, Some(1)), link);
    let s = [b"RFB 003.008\n".as_slice(), &cut_text(b"echo")].concat();
    assert_eq!(filter_chunks(&mut f, &[&s]), Ok(s.clone()));
}

#[test]
fn a_huge_cut_text_streams_through_without_being_held() {
    let (mut f, _) = server_filter(policy(true, Some(1 << 20)), 8);
    let mut header = hello();
    header.extend_from_slice(&[3, 0, 0, 0]);
    header.extend_from_slice(&(16u32 << 20).to_be_bytes());
    let mut pieces = Vec::new();
    f.feed(&header, &mut pieces).expect("a good header");
    assert_eq!(assemble(&header, &pieces), hello());
    let chunk = vec![b'a'; 1 << 20];
    for _ in 0..16 {
        pieces.clear();
        f.feed(&chunk, &mut pieces).expect("the body");
        assert!(pieces.is_empty());
        assert!(f.head.capacity() <= 64, "the body is not held");
    }
    pieces.clear();
    f.feed(&[2], &mut pieces).expect("a bell");
    assert_eq!(pieces, [Piece::Input(0..1)]);
}

fn any_message() -> impl Strategy<Value = (Vec<u8>, Is)> {
    prop::sample::select(every_message())
}

proptest! {
    #[test]
    fn any_cutting_gives_the_same_stream(
        messages in prop::collection::vec(any_message(), 0..12),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        from_session in any::<bool>(),
        max in prop::option::of(0u32..5000),
    ) {
        let policy = policy(from_session, max);
        let passes = |is: Is| match is {
            Is::Other => true,
            Is::Clipboard(n) => from_session && max.is_none_or(|max| n <= max),
            Is::Announcement => from_session,
        };
        let mut s = hello();
        let mut want = hello();
        for (m, is) in &messages {
            s.extend(m);
            if passes(*is) {
                want.extend(m);
            }
        }
        let mut at: Vec<usize> = cuts.iter().map(|i| i.index(s.len() + 1)).collect();
        at.sort_unstable();
        let mut chunks = Vec::new();
        let mut from = 0;
        for a in at {
            chunks.push(&s[from..a]);
            from = a;
        }
        chunks.push(&s[from..]);
        let (mut f, _) = server_filter(policy, 8);
        prop_assert_eq!(filter_chunks(&mut f, &chunks), Ok(want));
    }

    #[test]
    fn any_bytes_are_answered(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let (mut f, _) = server_filter(policy(false, Some(10)), 8);
        let mut s = hello();
        s.extend(bytes);
        let _ = filter_chunks(&mut f, &[&s]);
    }
}
