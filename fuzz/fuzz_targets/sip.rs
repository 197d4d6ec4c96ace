#![no_main]
// SIP messages: the parser, and the user agent server that answers them.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = ivr_sip::message::Message::parse(data, true);
    let mut ep = ivr_sip::endpoint::Endpoint::new("127.0.0.1:5060".parse().unwrap(), "fuzz", 1);
    ep.handle(0, "127.0.0.1:5061".parse().unwrap(), data);
    ep.handle_timeout(100_000);
    let mut f = ivr_sip::framing::Framer::new(16 * 1024);
    let _ = f.push(data);
});
