//! Replays the fuzz corpora (fuzz/corpus/<target>/) through the same code the
//! cargo-fuzz targets exercise, so every input a fuzzer found interesting stays
//! a regression test on the stable toolchain.

mod common;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = common::root().join("fuzz/corpus").join(target);
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert!(!out.is_empty(), "empty corpus {target}");
    out.sort();
    out
}

#[test]
fn sip() {
    for data in corpus("sip") {
        let _ = ivr_sip::message::Message::parse(&data, true);
        let mut ep = ivr_sip::endpoint::Endpoint::new("127.0.0.1:5060".parse().unwrap(), "fuzz", 1);
        ep.set_registrar(true);
        let _ = ep.call(0, "sip:1001@127.0.0.1:5061", "127.0.0.1:5061".parse().unwrap(), "138", &[], "v=0\r\n");
        ep.handle(0, "127.0.0.1:5061".parse().unwrap(), &data);
        ep.handle_timeout(100_000);
        if let Some(c) = ivr_sip::digest::parse(&String::from_utf8_lossy(&data)) {
            let _ = c.verify("REGISTER", "pw");
        }
        let _ = ivr_sip::framing::Framer::new(16 * 1024).push(&data);
    }
}

#[test]
fn sdp() {
    for data in corpus("sdp") {
        if let Ok(o) = ivr_media::sdp::parse_offer(&String::from_utf8_lossy(&data)) {
            let _ = o.negotiate();
        }
    }
}

#[test]
fn rtp_and_rfc_4733() {
    for data in corpus("rtp") {
        if let Some(p) = ivr_media::rtp::parse(&data) {
            let _ = ivr_media::dtmf::DtmfReceiver::default().packet(p.timestamp, p.payload);
        }
        let _ = ivr_media::dtmf::parse_event(&data);
    }
}

#[test]
fn flow_source() {
    for data in corpus("flow") {
        let _ = ivr_syntax::parse(ivr_syntax::FileId(0), &String::from_utf8_lossy(&data));
    }
}

#[test]
fn bytecode() {
    for data in corpus("bytecode") {
        if let Ok(p) = ivr_bytecode::decode(&data) {
            let _ = ivr_bytecode::disassemble(&p);
        }
    }
}
