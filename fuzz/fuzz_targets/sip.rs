#![no_main]
// SIP messages: the parser, the user agent (as registrar, and with a call of
// its own placed to the sender), and digest credentials.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = ivr_sip::message::Message::parse(data, true);
    let mut ep = ivr_sip::endpoint::Endpoint::new("127.0.0.1:5060".parse().unwrap(), "fuzz", 1);
    ep.set_registrar(true);
    let _ = ep.call(0, "sip:1001@127.0.0.1:5061", "127.0.0.1:5061".parse().unwrap(), "138", &[], "v=0\r\n");
    ep.handle(0, "127.0.0.1:5061".parse().unwrap(), data);
    ep.handle_timeout(100_000);
    if let Some(c) = ivr_sip::digest::parse(&String::from_utf8_lossy(data)) {
        let _ = c.verify("REGISTER", "pw");
    }
    let mut f = ivr_sip::framing::Framer::new(16 * 1024);
    let _ = f.push(data);
});
