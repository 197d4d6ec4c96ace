#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(o) = ivr_media::sdp::parse_offer(&String::from_utf8_lossy(data)) {
        let _ = o.negotiate();
    }
});
