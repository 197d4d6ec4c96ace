#![no_main]
// RTP packets and the RFC 4733 events they carry.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some(p) = ivr_media::rtp::parse(data) {
        let _ = ivr_media::dtmf::DtmfReceiver::default().packet(p.timestamp, p.payload);
    }
    let _ = ivr_media::dtmf::parse_event(data);
});
