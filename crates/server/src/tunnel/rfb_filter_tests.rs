//! The client-message filter on byte streams, split at every position.

use proptest::prelude::*;

use super::*;

/// Version, security type None, and a shared `ClientInit`.
const HELLO: &[u8] = b"RFB 003.008\n\x01\x01";

fn view_only() -> ClientPolicy {
    ClientPolicy {
        mode: ViewerMode::ViewOnly,
        ..ClientPolicy::CONTROL
    }
}

fn set_pixel_format() -> Vec<u8> {
    let mut m = vec![0, 0, 0, 0];
    m.extend_from_slice(&[32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0]);
    m
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

fn update_request() -> Vec<u8> {
    vec![3, 1, 0, 0, 0, 0, 5, 0, 3, 32]
}

fn key(down: bool, keysym: u32) -> Vec<u8> {
    let mut m = vec![4, u8::from(down), 0, 0];
    m.extend_from_slice(&keysym.to_be_bytes());
    m
}

fn pointer(buttons: u8, x: u16, y: u16) -> Vec<u8> {
    let mut m = vec![5, buttons];
    m.extend_from_slice(&x.to_be_bytes());
    m.extend_from_slice(&y.to_be_bytes());
    m
}

fn cut_text(text: &[u8]) -> Vec<u8> {
    let mut m = vec![6, 0, 0, 0];
    let len = u32::try_from(text.len()).expect("short text");
    m.extend_from_slice(&len.to_be_bytes());
    m.extend_from_slice(text);
    m
}

/// The extended form: a negative length, then flags and a payload.
fn extended_cut_text(payload: &[u8]) -> Vec<u8> {
    let mut m = vec![6, 0, 0, 0];
    let len = i32::try_from(payload.len() + 4).expect("short payload");
    m.extend_from_slice(&(-len).to_be_bytes());
    m.extend_from_slice(&0x1000_0001_u32.to_be_bytes());
    m.extend_from_slice(payload);
    m
}

fn continuous_updates() -> Vec<u8> {
    vec![150, 1, 0, 0, 0, 0, 5, 0, 3, 32]
}

fn fence(payload: &[u8]) -> Vec<u8> {
    let mut m = vec![248, 0, 0, 0, 0x80, 0, 0, 1];
    m.push(u8::try_from(payload.len()).expect("short payload"));
    m.extend_from_slice(payload);
    m
}

fn desktop_size(screens: u8) -> Vec<u8> {
    let mut m = vec![251, 0, 7, 128, 4, 56, screens, 0];
    for i in 0..screens {
        m.extend_from_slice(&[0, 0, 0, i, 0, 0, 0, 0, 7, 128, 4, 56, 0, 0, 0, 0]);
    }
    m
}

fn qemu_key() -> Vec<u8> {
    vec![255, 0, 0, 1, 0, 0, 0, 0x61, 0, 0, 0, 30]
}

fn qemu_audio(op: u16) -> Vec<u8> {
    let mut m = vec![255, 1];
    m.extend_from_slice(&op.to_be_bytes());
    if op == 2 {
        m.extend_from_slice(&[3, 2, 0, 0, 0xac, 0x44]);
    }
    m
}

fn xvp() -> Vec<u8> {
    vec![250, 0, 1, 2]
}

fn gii(big_endian: bool, body: &[u8]) -> Vec<u8> {
    let len = u16::try_from(body.len()).expect("short body");
    let mut m = vec![253, if big_endian { 0x81 } else { 0x01 }];
    m.extend_from_slice(&if big_endian {
        len.to_be_bytes()
    } else {
        len.to_le_bytes()
    });
    m.extend_from_slice(body);
    m
}

/// Every kind of client message, each paired with whether a view-only viewer keeps it.
fn every_message() -> Vec<(Vec<u8>, bool)> {
    vec![
        (set_pixel_format(), true),
        (set_encodings(&[7, 16, 0, -223, -239]), true),
        (update_request(), true),
        (key(true, 0x61), false),
        (key(false, 0x61), false),
        (pointer(1, 10, 20), false),
        (cut_text(b"secret"), false),
        (extended_cut_text(b"caps"), false),
        (continuous_updates(), true),
        (fence(b"abc"), true),
        (fence(b""), true),
        (desktop_size(1), false),
        (desktop_size(2), false),
        (qemu_key(), false),
        (qemu_audio(0), false),
        (qemu_audio(2), false),
        (xvp(), false),
        (gii(true, &[1, 2, 3, 4, 5]), false),
        (gii(false, &[9; 300]), false),
    ]
}

/// Feeds `stream` in the given chunks; what passed, or the first error.
fn filter_chunks(policy: ClientPolicy, chunks: &[&[u8]]) -> Result<Vec<u8>, FilterError> {
    let mut filter = ClientFilter::new(policy);
    let mut out = Vec::new();
    for chunk in chunks {
        filter.feed(chunk, &mut out)?;
    }
    Ok(out)
}

/// Filters `stream` whole, then split at every position and byte by byte, and checks that
/// every way of cutting it gives the same answer.
fn filter(policy: ClientPolicy, stream: &[u8]) -> Result<Vec<u8>, FilterError> {
    let whole = filter_chunks(policy, &[stream]);
    for at in 0..=stream.len() {
        let (a, b) = stream.split_at(at);
        assert_eq!(
            filter_chunks(policy, &[a, b]),
            whole,
            "split at {at} of {}",
            stream.len()
        );
    }
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(filter_chunks(policy, &bytes), whole, "byte by byte");
    whole
}

fn stream(messages: &[Vec<u8>]) -> Vec<u8> {
    let mut s = HELLO.to_vec();
    for m in messages {
        s.extend_from_slice(m);
    }
    s
}

#[test]
fn a_controlling_viewer_passes_everything() {
    let messages: Vec<Vec<u8>> = every_message().into_iter().map(|(m, _)| m).collect();
    let s = stream(&messages);
    assert_eq!(filter(ClientPolicy::CONTROL, &s), Ok(s.clone()));
}

#[test]
fn a_view_only_viewer_passes_only_what_it_takes_to_draw() {
    let all = every_message();
    let messages: Vec<Vec<u8>> = all.iter().map(|(m, _)| m.clone()).collect();
    let kept: Vec<Vec<u8>> = all
        .iter()
        .filter(|(_, keep)| *keep)
        .map(|(m, _)| m.clone())
        .collect();
    assert_eq!(filter(view_only(), &stream(&messages)), Ok(stream(&kept)));
}

#[test]
fn each_dropped_message_is_dropped_alone() {
    for (message, keep) in every_message() {
        let s = stream(&[update_request(), message.clone(), update_request()]);
        let expected = if keep {
            s.clone()
        } else {
            stream(&[update_request(), update_request()])
        };
        assert_eq!(filter(view_only(), &s), Ok(expected), "message {message:?}");
    }
}

#[test]
fn the_handshake_of_each_version_passes_and_watchers_always_share() {
    let exclusive_33 = b"RFB 003.003\n\x00".to_vec();
    assert_eq!(
        filter(ClientPolicy::CONTROL, &exclusive_33),
        Ok(exclusive_33.clone())
    );
    assert_eq!(
        filter(view_only(), &exclusive_33),
        Ok(b"RFB 003.003\n\x01".to_vec()),
        "a watcher cannot ask for the desktop alone"
    );
    let mut s = b"RFB 003.007\n\x01\x00".to_vec();
    s.extend_from_slice(&key(true, 1));
    assert_eq!(filter(ClientPolicy::CONTROL, &s), Ok(s.clone()));
    assert_eq!(
        filter(view_only(), &s),
        Ok(b"RFB 003.007\n\x01\x01".to_vec())
    );
}

#[test]
fn a_bad_handshake_ends_the_stream() {
    assert_eq!(
        filter(view_only(), b"HTTP/1.1 200\nanything"),
        Err(FilterError::Version)
    );
    let other = b"HTTP/1.1 200\n\x07\x07anything".to_vec();
    assert_eq!(
        filter(ClientPolicy::CONTROL, &other),
        Ok(other.clone()),
        "a controlling viewer that does not speak RFB passes (the agent ends it)"
    );
    let mut f = ClientFilter::new(ClientPolicy::CONTROL);
    let mut out = Vec::new();
    f.feed(b"ping", &mut out).expect("bytes");
    assert_eq!(
        out, b"ping",
        "short messages of another protocol are not held"
    );
    assert_eq!(
        filter(ClientPolicy::CONTROL, b"RFB 003.008\n\x02"),
        Err(FilterError::SecurityType(2))
    );
}

#[test]
fn unknown_or_malformed_messages_end_the_stream_and_nothing_after_passes() {
    for (bad, error) in [
        (vec![7, 0, 0, 0], FilterError::UnknownMessage(7)),
        (
            vec![255, 9, 0, 0],
            FilterError::Malformed {
                kind: 255,
                why: "an unknown QEMU message",
            },
        ),
        (
            vec![255, 1, 0, 7],
            FilterError::Malformed {
                kind: 255,
                why: "an unknown QEMU audio operation",
            },
        ),
        (
            vec![248, 0, 0, 0, 0, 0, 0, 0, 65],
            FilterError::Malformed {
                kind: 248,
                why: "a fence payload longer than 64 bytes",
            },
        ),
    ] {
        for policy in [ClientPolicy::CONTROL, view_only()] {
            let s = stream(&[update_request(), bad.clone()]);
            assert_eq!(filter(policy, &s), Err(error.clone()), "{bad:?}");
        }
        let mut f = ClientFilter::new(ClientPolicy::CONTROL);
        let mut out = Vec::new();
        assert!(
            f.feed(&stream(std::slice::from_ref(&bad)), &mut out)
                .is_err()
        );
        let before = out.len();
        assert!(f.feed(&update_request(), &mut out).is_err(), "{bad:?}");
        assert_eq!(out.len(), before, "nothing passes after an error");
    }
}

#[test]
fn the_clipboard_policy_filters_cut_text_towards_the_session() {
    let s = stream(&[
        cut_text(b"short"),
        key(true, 1),
        cut_text(&[b'x'; 40]),
        extended_cut_text(b"provide"),
    ]);
    let no_paste = ClientPolicy {
        clipboard_to_session: false,
        ..ClientPolicy::CONTROL
    };
    assert_eq!(filter(no_paste, &s), Ok(stream(&[key(true, 1)])));
    let capped = ClientPolicy {
        clipboard_max_bytes: Some(11),
        ..ClientPolicy::CONTROL
    };
    assert_eq!(
        filter(capped, &s),
        Ok(stream(&[
            cut_text(b"short"),
            key(true, 1),
            extended_cut_text(b"provide")
        ])),
        "text up to the maximum passes, longer text does not"
    );
}

#[test]
fn a_restricted_clipboard_takes_the_extended_clipboard_out_of_the_encodings() {
    let asked = set_encodings(&[7, EXTENDED_CLIPBOARD, 0, -223]);
    let s = stream(std::slice::from_ref(&asked));
    assert_eq!(filter(ClientPolicy::CONTROL, &s), Ok(s.clone()));
    let capped = ClientPolicy {
        clipboard_max_bytes: Some(10),
        ..ClientPolicy::CONTROL
    };
    assert_eq!(
        filter(capped, &s),
        Ok(s.clone()),
        "a size cap alone keeps the extended clipboard (its messages are capped too)"
    );
    for policy in [
        ClientPolicy {
            clipboard_from_session: false,
            ..ClientPolicy::CONTROL
        },
        ClientPolicy {
            clipboard_to_session: false,
            ..view_only()
        },
    ] {
        assert_eq!(
            filter(policy, &s),
            Ok(stream(&[set_encodings(&[7, 0, -223])])),
            "{policy:?}"
        );
    }
}

#[test]
fn only_an_unrestricted_controlling_viewer_goes_unfiltered() {
    assert!(ClientPolicy::CONTROL.passes_everything());
    assert!(!view_only().passes_everything());
    assert!(
        !ClientPolicy {
            clipboard_max_bytes: Some(1),
            ..ClientPolicy::CONTROL
        }
        .passes_everything()
    );
}

#[test]
fn a_huge_cut_text_streams_through_without_being_held() {
    let mut f = ClientFilter::new(ClientPolicy::CONTROL);
    let mut out = Vec::new();
    let mut header = HELLO.to_vec();
    header.extend_from_slice(&[6, 0, 0, 0]);
    header.extend_from_slice(&i32::MAX.to_be_bytes());
    f.feed(&header, &mut out).expect("a header");
    for _ in 0..64 {
        out.clear();
        f.feed(&[b'a'; 4096], &mut out).expect("text");
        assert_eq!(out.len(), 4096, "the text passes as it comes");
        assert!(f.head.capacity() <= 64, "the body is not collected");
    }
}

fn any_message() -> impl Strategy<Value = (Vec<u8>, bool)> {
    prop::sample::select(every_message())
}

proptest! {
    /// However a stream of valid messages is cut into frames, the same bytes pass.
    #[test]
    fn any_cutting_gives_the_same_stream(
        messages in prop::collection::vec(any_message(), 0..20),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        view in any::<bool>(),
    ) {
        let policy = if view { view_only() } else { ClientPolicy::CONTROL };
        let all: Vec<Vec<u8>> = messages.iter().map(|(m, _)| m.clone()).collect();
        let s = stream(&all);
        let mut at: Vec<usize> = cuts.iter().map(|i| i.index(s.len() + 1)).collect();
        at.sort_unstable();
        let mut chunks = Vec::new();
        let mut from = 0;
        for cut in at {
            chunks.push(&s[from..cut]);
            from = cut;
        }
        chunks.push(&s[from..]);
        let expected: Vec<Vec<u8>> = messages
            .iter()
            .filter(|(_, keep)| !view || *keep)
            .map(|(m, _)| m.clone())
            .collect();
        prop_assert_eq!(filter_chunks(policy, &chunks), Ok(stream(&expected)));
    }

    /// Whatever a viewer sends, the filter answers without panicking, and holds little.
    #[test]
    fn any_bytes_are_answered(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        for policy in [ClientPolicy::CONTROL, view_only()] {
            let mut f = ClientFilter::new(policy);
            let mut out = Vec::new();
            let mut s = HELLO.to_vec();
            s.extend_from_slice(&bytes);
            let _ = f.feed(&s, &mut out);
            prop_assert!(out.len() <= s.len() + 1);
            let _ = ClientFilter::new(policy).feed(&bytes, &mut out);
        }
    }
}
