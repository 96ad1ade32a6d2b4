//! Feeds arbitrary bytes to both control-message decoders: they must return an error, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = streamspace_proto::wire::decode_agent_message(text);
        let _ = streamspace_proto::wire::decode_server_message(text);
    }
});
