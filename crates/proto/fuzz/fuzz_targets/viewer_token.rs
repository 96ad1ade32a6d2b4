//! Feeds arbitrary text to the viewer token parser (what arrives as `?token=` on a viewer's
//! WebSocket): it must answer, never panic, and a token it accepts, written back in the form
//! the control plane writes, must read back to the same fields.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamspace_proto::tunnel::{
    MAX_VIEWER_TOKEN_BYTES, VIEWER_TOKEN_PREFIX, parse_viewer_token, viewer_token_signed_part,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for candidate in [text.to_owned(), format!("{VIEWER_TOKEN_PREFIX}{text}")] {
        let Some(parts) = parse_viewer_token(&candidate) else {
            continue;
        };
        assert!(candidate.len() <= MAX_VIEWER_TOKEN_BYTES);
        let signed = viewer_token_signed_part(
            parts.session_id,
            parts.user_id,
            parts.expires_ms,
            parts.grant,
            parts.nonce,
        );
        let rewritten = format!("{VIEWER_TOKEN_PREFIX}{signed}.{}", parts.signature);
        if rewritten.len() <= MAX_VIEWER_TOKEN_BYTES {
            let again = parse_viewer_token(&rewritten).expect("a rewritten token parses");
            assert_eq!(
                (again.session_id, again.user_id, again.expires_ms, again.grant, again.nonce),
                (parts.session_id, parts.user_id, parts.expires_ms, parts.grant, parts.nonce)
            );
        }
    }
});
