use super::*;

fn peer() -> SocketAddr {
    "127.0.0.1:5061".parse().unwrap()
}

fn invite(branch: &str, call_id: &str) -> String {
    let sdp = "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 6000 RTP/AVP 0\r\n";
    format!(
        "INVITE sip:962588@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch={branch}\r\nMax-Forwards: 70\r\n\
From: <sip:13800138000@127.0.0.1>;tag=caller\r\nTo: <sip:962588@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\
Contact: <sip:13800138000@127.0.0.1:5061>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

fn in_dialog(method: &str, branch: &str, call_id: &str, to_tag: &str, cseq: u32, extra: &str, body: &str) -> String {
    format!(
        "{method} sip:ivr@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch={branch}\r\n\
From: <sip:13800138000@127.0.0.1>;tag=caller\r\nTo: <sip:962588@127.0.0.1>;tag={to_tag}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn sent(ep: &mut Endpoint) -> Vec<String> {
    std::iter::from_fn(|| ep.poll_transmit()).map(|(_, d)| String::from_utf8(d).unwrap()).collect()
}

fn status(lines: &[String]) -> Vec<String> {
    lines.iter().map(|m| m.lines().next().unwrap().to_string()).collect()
}

fn new_call(ep: &mut Endpoint, call_id: &str) -> (CallKey, String) {
    ep.handle(0, peer(), invite("z9hG4bK-1", call_id).as_bytes());
    let Some(Event::Invite { call, dialed, .. }) = ep.poll_event() else { panic!("no invite") };
    assert_eq!(dialed, "962588");
    ep.accept(10, call, "v=0\r\n");
    let out = sent(ep);
    let ok = out.iter().find(|m| m.starts_with("SIP/2.0 200")).unwrap();
    let tag = ok.lines().find(|l| l.starts_with("To:")).unwrap().split("tag=").nth(1).unwrap().trim().to_string();
    (call, tag)
}

#[test]
fn answers_and_absorbs_retransmitted_invites() {
    let mut ep = Endpoint::new("127.0.0.1:5060".parse().unwrap(), "ivr-test", 7);
    ep.handle(0, peer(), invite("z9hG4bK-1", "c1").as_bytes());
    assert_eq!(status(&sent(&mut ep)), ["SIP/2.0 100 Trying"]);
    let Some(Event::Invite { call, caller, .. }) = ep.poll_event() else { panic!() };
    assert_eq!(caller, "13800138000");
    ep.accept(5, call, "v=0\r\n");
    assert_eq!(status(&sent(&mut ep)), ["SIP/2.0 200 OK"]);
    ep.handle(100, peer(), invite("z9hG4bK-1", "c1").as_bytes());
    assert_eq!(status(&sent(&mut ep)), ["SIP/2.0 200 OK"], "the retransmitted INVITE gets the 200 again");
    assert_eq!(ep.poll_event(), None, "and is not a new call");
}

#[test]
fn retransmits_200_until_ack_then_confirms() {
    let mut ep = Endpoint::new("127.0.0.1:5060".parse().unwrap(), "ivr-test", 7);
    let (call, tag) = new_call(&mut ep, "c2");
    assert_eq!(ep.poll_timeout(), Some(510));
    ep.handle_timeout(510);
    assert_eq!(status(&sent(&mut ep)), ["SIP/2.0 200 OK"]);
    assert_eq!(ep.poll_timeout(), Some(1510), "T1 doubles");
    ep.handle(600, peer(), in_dialog("ACK", "z9hG4bK-ack", "c2", &tag, 1, "", "").as_bytes());
    assert_eq!(ep.poll_event(), Some(Event::Confirmed { call }));
    ep.handle_timeout(2000);
    assert!(sent(&mut ep).is_empty(), "no retransmission after the ACK");
    // The caller hangs up.
    ep.handle(5000, peer(), in_dialog("BYE", "z9hG4bK-bye", "c2", &tag, 2, "", "").as_bytes());
    assert_eq!(status(&sent(&mut ep)), ["SIP/2.0 200 OK"]);
    assert_eq!(ep.poll_event(), Some(Event::Bye { call }));
    ep.handle(5100, peer(), in_dialog("BYE", "z9hG4bK-bye", "c2", &tag, 2, "", "").as_bytes());
    assert_eq!(status(&sent(&mut ep)), ["SIP/2.0 200 OK"], "a retransmitted BYE is answered again");
    assert_eq!(ep.poll_event(), None);
    ep.handle(5200, peer(), in_dialog("BYE", "z9hG4bK-bye2", "c2", &tag, 3, "", "").as_bytes());
    assert_eq!(status(&sent(&mut ep)), ["SIP/2.0 481 Call/Transaction Does Not Exist"]);
}

#[test]
fn no_ack_means_bye() {
    let mut ep = Endpoint::new("127.0.0.1:5060".parse().unwrap(), "ivr-test", 7);
    let (call, _) = new_call(&mut ep, "c3");
    let mut t = 0;
    while let Some(next) = ep.poll_timeout() {
        if next > 40_000 {
            break;
        }
        t = next;
        ep.handle_timeout(t);
        if let Some(ev) = ep.poll_event() {
            assert_eq!(ev, Event::AckTimeout { call });
            assert!(sent(&mut ep).iter().any(|m| m.starts_with("BYE ")));
            assert_eq!(t, 32_010);
            return;
        }
        sent(&mut ep);
    }
    panic!("no ACK timeout by {t}");
}

#[test]
fn cancel_before_answer() {
    let mut ep = Endpoint::new("127.0.0.1:5060".parse().unwrap(), "ivr-test", 7);
    ep.handle(0, peer(), invite("z9hG4bK-9", "c4").as_bytes());
    let Some(Event::Invite { call, .. }) = ep.poll_event() else { panic!() };
    sent(&mut ep);
    let cancel = invite("z9hG4bK-9", "c4").replacen("INVITE sip", "CANCEL sip", 1).replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    ep.handle(50, peer(), cancel.as_bytes());
    assert_eq!(status(&sent(&mut ep)), ["SIP/2.0 200 OK", "SIP/2.0 487 Request Terminated"]);
    assert_eq!(ep.poll_event(), Some(Event::Cancelled { call }));
    ep.accept(60, call, "v=0\r\n");
    assert!(sent(&mut ep).is_empty(), "a cancelled call cannot be answered");
}

#[test]
fn info_dtmf_options_and_unsupported_methods() {
    let mut ep = Endpoint::new("127.0.0.1:5060".parse().unwrap(), "ivr-test", 7);
    let (call, tag) = new_call(&mut ep, "c5");
    let relay = in_dialog("INFO", "z9hG4bK-i1", "c5", &tag, 2, "Content-Type: application/dtmf-relay\r\n", "Signal=5\r\nDuration=160\r\n");
    ep.handle(100, peer(), relay.as_bytes());
    let plain = in_dialog("INFO", "z9hG4bK-i2", "c5", &tag, 3, "Content-Type: application/dtmf\r\n", "#");
    ep.handle(200, peer(), plain.as_bytes());
    let other = in_dialog("INFO", "z9hG4bK-i3", "c5", &tag, 4, "Content-Type: text/plain\r\n", "hi");
    ep.handle(300, peer(), other.as_bytes());
    assert_eq!(status(&sent(&mut ep)), ["SIP/2.0 200 OK", "SIP/2.0 200 OK", "SIP/2.0 415 Unsupported Media Type"]);
    assert_eq!(ep.poll_event(), Some(Event::Dtmf { call, key: '5' }));
    assert_eq!(ep.poll_event(), Some(Event::Dtmf { call, key: '#' }));
    let options = in_dialog("OPTIONS", "z9hG4bK-o", "x", "t", 1, "", "").replace(";tag=t", "");
    ep.handle(400, peer(), options.as_bytes());
    let register = options.replace("OPTIONS", "REGISTER").replace("z9hG4bK-o", "z9hG4bK-r");
    ep.handle(400, peer(), register.as_bytes());
    let unknown = options.replace("OPTIONS", "FOO").replace("z9hG4bK-o", "z9hG4bK-f");
    ep.handle(400, peer(), unknown.as_bytes());
    assert_eq!(status(&sent(&mut ep)), ["SIP/2.0 200 OK", "SIP/2.0 405 Method Not Allowed", "SIP/2.0 501 Not Implemented"]);
}

#[test]
fn malformed_and_oversized_messages_get_4xx_or_are_dropped() {
    let mut ep = Endpoint::new("127.0.0.1:5060".parse().unwrap(), "ivr-test", 7);
    ep.handle(0, peer(), b"\x00\x01garbage");
    ep.handle(0, peer(), b"SIP/2.0 200 OK\r\n\r\n");
    assert!(sent(&mut ep).is_empty());
    let no_cseq = invite("z9hG4bK-m", "c6").replace("CSeq: 1 INVITE\r\n", "");
    ep.handle(0, peer(), no_cseq.as_bytes());
    let out = sent(&mut ep);
    assert!(out[0].starts_with("SIP/2.0 400 Bad Request"), "{out:?}");
    assert!(out[0].contains("Call-ID: c6"));
    let mut big = invite("z9hG4bK-b", "c7").into_bytes();
    big.extend(std::iter::repeat_n(b'x', MAX_MESSAGE_BYTES));
    ep.handle(0, peer(), &big);
    assert!(sent(&mut ep)[0].starts_with("SIP/2.0 513"));
    assert_eq!(ep.poll_event(), None);
    let ext = invite("z9hG4bK-e", "c8").replace("Max-Forwards: 70\r\n", "Max-Forwards: 70\r\nRequire: 100rel\r\n");
    ep.handle(0, peer(), ext.as_bytes());
    assert!(sent(&mut ep)[0].starts_with("SIP/2.0 420"));
}

proptest::proptest! {
    #[test]
    fn the_endpoint_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
        let mut ep = Endpoint::new("127.0.0.1:5060".parse().unwrap(), "t", 1);
        ep.handle(0, peer(), &data);
        ep.handle_timeout(100_000);
    }
}

fn reply_to(req: &str, code: u16, reason: &str, to_tag: Option<&str>, extra: &str, body: &str) -> String {
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for l in req.lines().take_while(|l| !l.is_empty()) {
        for h in ["Via:", "From:", "Call-ID:", "CSeq:"] {
            if l.starts_with(h) {
                out.push_str(l);
                out.push_str("\r\n");
            }
        }
        if l.starts_with("To:") {
            out.push_str(l);
            if let Some(t) = to_tag {
                out.push_str(&format!(";tag={t}"));
            }
            out.push_str("\r\n");
        }
    }
    out.push_str(&format!("{extra}Content-Length: {}\r\n\r\n{body}", body.len()));
    out
}

fn agent() -> SocketAddr {
    "127.0.0.1:5070".parse().unwrap()
}

/// Places a call to the agent's phone and answers it (tag a1): the call, its
/// Call-ID and our tag.
fn answered_call(ep: &mut Endpoint) -> (CallKey, String, String) {
    let call = ep.call(0, "sip:1001@127.0.0.1:5070", agent(), "138", &[], "v=0\r\n");
    let inv = sent(ep).remove(0);
    ep.handle(10, agent(), reply_to(&inv, 200, "OK", Some("a1"), "Contact: <sip:1001@127.0.0.1:5070>\r\n", "v=0\r\n").as_bytes());
    let _ = ep.poll_event();
    sent(ep);
    let call_id = inv.lines().find_map(|l| l.strip_prefix("Call-ID: ")).unwrap().to_string();
    let our_tag = inv.lines().find(|l| l.starts_with("From:")).unwrap().split("tag=").nth(1).unwrap().to_string();
    (call, call_id, our_tag)
}

#[test]
fn places_a_call_acks_the_answer_and_hangs_up() {
    let mut ep = Endpoint::new("127.0.0.1:5060".parse().unwrap(), "ivr-test", 7);
    let call = ep.call(0, "sip:1001@127.0.0.1:5070", agent(), "13800138000", &[("X-IVR-Queue", "general")], "v=0\r\n");
    let out = sent(&mut ep);
    assert!(out[0].starts_with("INVITE sip:1001@127.0.0.1:5070 SIP/2.0"));
    assert!(out[0].contains("From: <sip:13800138000@127.0.0.1:5060>;tag="), "the caller is shown");
    assert!(out[0].contains("X-IVR-Queue: general"));
    // Timer A: retransmitted until something answers.
    ep.handle_timeout(500);
    assert_eq!(sent(&mut ep).len(), 1);
    ep.handle(600, agent(), reply_to(&out[0], 180, "Ringing", Some("a1"), "", "").as_bytes());
    assert_eq!(ep.poll_event(), Some(Event::Progress { call, code: 180 }));
    ep.handle_timeout(5_000);
    assert!(sent(&mut ep).is_empty(), "no retransmission after a provisional answer");
    let ok = reply_to(&out[0], 200, "OK", Some("a1"), "Contact: <sip:1001@127.0.0.1:5070>\r\nContent-Type: application/sdp\r\n", "v=0\r\n");
    ep.handle(6_000, agent(), ok.as_bytes());
    assert_eq!(ep.poll_event(), Some(Event::Answered { call, sdp: b"v=0\r\n".to_vec() }));
    let ack = sent(&mut ep);
    assert!(ack[0].starts_with("ACK sip:1001@127.0.0.1:5070 SIP/2.0"), "{}", ack[0]);
    assert!(ack[0].contains("tag=a1"));
    // A retransmitted 200 is ACKed again, not reported again.
    ep.handle(6_100, agent(), ok.as_bytes());
    assert_eq!(status(&sent(&mut ep)), ["ACK sip:1001@127.0.0.1:5070 SIP/2.0"]);
    assert_eq!(ep.poll_event(), None);
    ep.hangup(7_000, call);
    let bye = sent(&mut ep);
    assert!(bye[0].starts_with("BYE sip:1001@127.0.0.1:5070"));
    assert!(bye[0].lines().any(|l| l.starts_with("To:") && l.contains("tag=a1")));
}

#[test]
fn the_agent_hanging_up_ends_the_placed_call() {
    let mut ep = Endpoint::new("127.0.0.1:5060".parse().unwrap(), "ivr-test", 7);
    let (call, call_id, our_tag) = answered_call(&mut ep);
    let (call_id, our_tag) = (call_id.as_str(), our_tag.as_str());
    let bye = format!(
        "BYE sip:ivr@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-b\r\nFrom: <sip:1001@127.0.0.1:5070>;tag=a1\r\nTo: <sip:138@127.0.0.1:5060>;tag={our_tag}\r\nCall-ID: {call_id}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    );
    ep.handle(20, agent(), bye.as_bytes());
    assert_eq!(status(&sent(&mut ep)), ["SIP/2.0 200 OK"]);
    assert_eq!(ep.poll_event(), Some(Event::Bye { call }));
}

#[test]
fn cancelling_a_ringing_call_and_giving_up_on_silence() {
    let mut ep = Endpoint::new("127.0.0.1:5060".parse().unwrap(), "ivr-test", 7);
    let call = ep.call(0, "sip:1001@127.0.0.1:5070", agent(), "138", &[], "v=0\r\n");
    let inv = sent(&mut ep).remove(0);
    ep.handle(10, agent(), reply_to(&inv, 180, "Ringing", Some("a1"), "", "").as_bytes());
    let _ = ep.poll_event();
    ep.hangup(15_000, call);
    let cancel = sent(&mut ep);
    assert!(cancel[0].starts_with("CANCEL sip:1001@127.0.0.1:5070"));
    assert_eq!(inv.lines().find(|l| l.starts_with("Via:")), cancel[0].lines().find(|l| l.starts_with("Via:")), "same branch");
    ep.handle(15_005, agent(), reply_to(&cancel[0], 200, "OK", Some("a1"), "", "").as_bytes());
    ep.handle(15_010, agent(), reply_to(&inv, 487, "Request Terminated", Some("a1"), "", "").as_bytes());
    assert_eq!(ep.poll_event(), Some(Event::Failed { call, code: 487 }));
    assert!(sent(&mut ep)[0].starts_with("ACK "), "the 487 is acknowledged");
    assert_eq!(ep.active_calls(), 0);

    // Nothing answers at all: Timer B, 408.
    let call = ep.call(0, "sip:1002@127.0.0.1:5071", "127.0.0.1:5071".parse().unwrap(), "138", &[], "v=0\r\n");
    let mut t = 0;
    while let Some(next) = ep.poll_timeout() {
        t = next;
        ep.handle_timeout(t);
        if ep.active_calls() == 0 {
            break;
        }
    }
    assert_eq!(t, 32_000);
    assert!(std::iter::from_fn(|| ep.poll_event()).any(|e| e == Event::Failed { call, code: 408 }));
    assert_eq!(sent(&mut ep).len(), 7, "the INVITE, then again at 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s");
}

#[test]
fn register_is_reported_when_enabled_and_answered_by_the_host() {
    let reg = "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-r1\r\nFrom: <sip:1001@127.0.0.1>;tag=p\r\nTo: <sip:1001@127.0.0.1>\r\nCall-ID: r1\r\nCSeq: 1 REGISTER\r\nContact: <sip:1001@127.0.0.1:5070>;expires=120\r\nContent-Length: 0\r\n\r\n";
    let mut ep = Endpoint::new("127.0.0.1:5060".parse().unwrap(), "ivr-test", 7);
    ep.handle(0, agent(), reg.as_bytes());
    assert_eq!(status(&sent(&mut ep)), ["SIP/2.0 405 Method Not Allowed"], "not a registrar by default");
    let mut ep = Endpoint::new("127.0.0.1:5060".parse().unwrap(), "ivr-test", 7);
    ep.set_registrar(true);
    ep.handle(0, agent(), reg.as_bytes());
    let Some(Event::Register(r)) = ep.poll_event() else { panic!() };
    assert_eq!((r.user.as_str(), r.contact.as_deref(), r.expires), ("1001", Some("sip:1001@127.0.0.1:5070"), 120));
    ep.handle(100, agent(), reg.as_bytes());
    assert_eq!(ep.poll_event(), None, "a retransmission is absorbed");
    ep.answer(200, r.id, 401, "Unauthorized", &[("WWW-Authenticate", "Digest realm=\"ivr\"")]);
    let out = sent(&mut ep);
    assert!(out[0].starts_with("SIP/2.0 401") && out[0].contains("WWW-Authenticate: Digest"));
    ep.handle(300, agent(), reg.as_bytes());
    assert_eq!(status(&sent(&mut ep)), ["SIP/2.0 401 Unauthorized"], "retransmission gets the same answer");
}

#[test]
fn keys_go_to_the_far_end_of_a_placed_call_by_info() {
    let mut ep = Endpoint::new("127.0.0.1:5060".parse().unwrap(), "ivr-test", 7);
    let call = ep.call(0, "sip:1001@127.0.0.1:5070", agent(), "138", &[], "v=0\r\n");
    let inv = sent(&mut ep).remove(0);
    ep.send_dtmf(5, call, '7');
    assert!(sent(&mut ep).is_empty(), "nothing before the answer");
    ep.handle(10, agent(), reply_to(&inv, 200, "OK", Some("a1"), "Contact: <sip:1001@127.0.0.1:5070>\r\n", "v=0\r\n").as_bytes());
    sent(&mut ep);
    ep.send_dtmf(20, call, '7');
    let info = sent(&mut ep).remove(0);
    assert!(info.starts_with("INFO sip:1001@127.0.0.1:5070 SIP/2.0"), "{info}");
    assert!(info.contains("Content-Type: application/dtmf-relay") && info.ends_with("Signal=7\r\nDuration=160\r\n"));
    assert!(info.lines().any(|l| l.starts_with("CSeq: ") && l.ends_with(" INFO")));
    // Retransmitted until answered, then quiet.
    ep.handle_timeout(520);
    assert_eq!(sent(&mut ep).len(), 1);
    ep.handle(600, agent(), reply_to(&info, 200, "OK", Some("a1"), "", "").as_bytes());
    ep.handle_timeout(2_000);
    assert!(sent(&mut ep).is_empty());
}

#[test]
fn a_reinvite_on_a_placed_call_is_answered_and_a_refused_one_keeps_the_call() {
    let mut ep = Endpoint::new("127.0.0.1:5060".parse().unwrap(), "ivr-test", 7);
    let (call, call_id, our_tag) = answered_call(&mut ep);
    let (call_id, our_tag) = (call_id.as_str(), our_tag.as_str());
    let reinvite = |cseq: u32, branch: &str| {
        format!(
            "INVITE sip:ivr@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch={branch}\r\nFrom: <sip:1001@127.0.0.1:5070>;tag=a1\r\nTo: <sip:138@127.0.0.1:5060>;tag={our_tag}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} INVITE\r\nContact: <sip:1001@127.0.0.1:5070>\r\nContent-Type: application/sdp\r\nContent-Length: 10\r\n\r\na=sendonly"
        )
    };
    // The agent puts the caller on hold: reported, and answered by accept.
    ep.handle(20, agent(), reinvite(2, "z9hG4bK-h1").as_bytes());
    assert_eq!(ep.poll_event(), Some(Event::Reinvite { call, sdp: b"a=sendonly".to_vec() }));
    sent(&mut ep);
    ep.accept(25, call, "v=0\r\n");
    let ok = sent(&mut ep).remove(0);
    assert!(ok.starts_with("SIP/2.0 200 OK") && ok.contains("CSeq: 2 INVITE"), "{ok}");
    // A second one we refuse: 488, and the call goes on (BYE still works).
    ep.handle(30, agent(), reinvite(3, "z9hG4bK-h2").as_bytes());
    let _ = ep.poll_event();
    sent(&mut ep);
    ep.reject(35, call, 488, "Not Acceptable Here", &[]);
    assert!(sent(&mut ep)[0].starts_with("SIP/2.0 488"));
    ep.hangup(40, call);
    assert!(sent(&mut ep)[0].starts_with("BYE sip:1001@127.0.0.1:5070"));
}

// ------------------------------------------------- where responses go (RFC 3261 §18.2.2, RFC 3581)

fn options_via(via: &str, branch: &str) -> String {
    format!(
        "OPTIONS sip:ivr@192.0.2.1 SIP/2.0\r\nVia: {via};branch={branch}\r\nFrom: <sip:probe@example.com>;tag=p\r\nTo: <sip:ivr@192.0.2.1>\r\nCall-ID: {branch}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}

fn top_via(msg: &str) -> String {
    msg.lines().find_map(|l| l.strip_prefix("Via: ")).unwrap().to_string()
}

#[test]
fn an_empty_rport_is_filled_in_and_the_answer_goes_to_the_source_port() {
    let mut ep = Endpoint::new("192.0.2.1:5060".parse().unwrap(), "t", 1);
    let nat: SocketAddr = "203.0.113.7:40000".parse().unwrap();
    ep.handle(0, nat, options_via("SIP/2.0/UDP 192.168.1.10:5060;rport", "z9hG4bK-rp").as_bytes());
    let (to, data) = ep.poll_transmit().unwrap();
    let text = String::from_utf8(data).unwrap();
    assert_eq!(to, nat, "RFC 3581 §4: to the source address and port");
    assert_eq!(top_via(&text), "SIP/2.0/UDP 192.168.1.10:5060;received=203.0.113.7;rport=40000;branch=z9hG4bK-rp");
    // received even when the sent-by is the source (RFC 3581 §4 says always).
    ep.handle(0, nat, options_via("SIP/2.0/UDP 203.0.113.7:5060;rport", "z9hG4bK-rp2").as_bytes());
    let (to, data) = ep.poll_transmit().unwrap();
    assert_eq!(to, nat);
    assert!(top_via(&String::from_utf8(data).unwrap()).contains(";received=203.0.113.7;rport=40000"));
}

#[test]
fn without_rport_a_udp_answer_goes_to_the_source_ip_at_the_via_port() {
    let mut ep = Endpoint::new("192.0.2.1:5060".parse().unwrap(), "t", 1);
    let src: SocketAddr = "203.0.113.7:40000".parse().unwrap();
    ep.handle(0, src, options_via("SIP/2.0/UDP 192.168.1.10:5062", "z9hG4bK-n1").as_bytes());
    let (to, data) = ep.poll_transmit().unwrap();
    assert_eq!(to, "203.0.113.7:5062".parse().unwrap(), "received address, sent-by port");
    let via = top_via(&String::from_utf8(data).unwrap());
    assert_eq!(via, "SIP/2.0/UDP 192.168.1.10:5062;branch=z9hG4bK-n1;received=203.0.113.7");
    // No port in the sent-by: 5060.
    ep.handle(0, src, options_via("SIP/2.0/UDP phone.example.com", "z9hG4bK-n2").as_bytes());
    assert_eq!(ep.poll_transmit().unwrap().0, "203.0.113.7:5060".parse().unwrap());
    // The sent-by is the source IP: no received, still the Via's port.
    ep.handle(0, src, options_via("SIP/2.0/UDP 203.0.113.7:5070", "z9hG4bK-n3").as_bytes());
    let (to, data) = ep.poll_transmit().unwrap();
    assert_eq!(to, "203.0.113.7:5070".parse().unwrap());
    assert_eq!(top_via(&String::from_utf8(data).unwrap()), "SIP/2.0/UDP 203.0.113.7:5070;branch=z9hG4bK-n3");
    // A received the request brought along is not believed.
    ep.handle(0, src, options_via("SIP/2.0/UDP 192.168.1.10;received=198.51.100.1", "z9hG4bK-n4").as_bytes());
    let (to, data) = ep.poll_transmit().unwrap();
    assert_eq!(to, "203.0.113.7:5060".parse().unwrap());
    assert_eq!(top_via(&String::from_utf8(data).unwrap()), "SIP/2.0/UDP 192.168.1.10;branch=z9hG4bK-n4;received=203.0.113.7");
}

#[test]
fn over_tcp_the_answer_goes_back_on_the_connection() {
    let mut ep = Endpoint::new("192.0.2.1:5060".parse().unwrap(), "t", 1);
    let src: SocketAddr = "203.0.113.7:40000".parse().unwrap();
    ep.handle(0, src, options_via("SIP/2.0/TCP 192.168.1.10:5062", "z9hG4bK-t1").as_bytes());
    assert_eq!(ep.poll_transmit().unwrap().0, src);
}

#[test]
fn force_rport_answers_at_the_source_port_without_rport() {
    let mut ep = Endpoint::new("192.0.2.1:5060".parse().unwrap(), "t", 1);
    ep.set_force_rport(true);
    let src: SocketAddr = "203.0.113.7:40000".parse().unwrap();
    ep.handle(0, src, options_via("SIP/2.0/UDP 192.168.1.10:5062", "z9hG4bK-f1").as_bytes());
    let (to, data) = ep.poll_transmit().unwrap();
    assert_eq!(to, src);
    assert!(top_via(&String::from_utf8(data).unwrap()).ends_with(";received=203.0.113.7;rport=40000"));
}

#[test]
fn every_response_to_an_invite_goes_where_its_via_says() {
    // A phone behind a NAT that does not ask for rport: the 100, 180, 200 and
    // the 200's retransmissions all go to the Via's port; a retransmitted
    // INVITE gets its answer there too.
    let mut ep = Endpoint::new("127.0.0.1:5060".parse().unwrap(), "t", 1);
    let src: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let want: SocketAddr = "127.0.0.1:5061".parse().unwrap();
    ep.handle(0, src, invite("z9hG4bK-v1", "via1").as_bytes());
    let Some(Event::Invite { call, peer, .. }) = ep.poll_event() else { panic!() };
    assert_eq!(peer, src, "the host is told the real source");
    ep.ringing(5, call);
    ep.accept(10, call, "v=0\r\n");
    ep.handle(20, src, invite("z9hG4bK-v1", "via1").as_bytes());
    ep.handle_timeout(510);
    let out: Vec<(SocketAddr, String)> = std::iter::from_fn(|| ep.poll_transmit()).map(|(a, d)| (a, String::from_utf8(d).unwrap())).collect();
    let firsts: Vec<&str> = out.iter().map(|(_, d)| d.lines().next().unwrap()).collect();
    assert_eq!(firsts, ["SIP/2.0 100 Trying", "SIP/2.0 180 Ringing", "SIP/2.0 200 OK", "SIP/2.0 200 OK", "SIP/2.0 200 OK"]);
    assert!(out.iter().all(|(a, _)| *a == want), "{out:?}");
}

// ------------------------------------------------- To tags (RFC 3261 §8.2.6.2)

fn to_tag_of(msg: &str) -> Option<String> {
    let to = msg.lines().find(|l| l.starts_with("To:"))?;
    to.split(";tag=").nth(1).map(|t| t.split(';').next().unwrap_or(t).trim().to_string())
}

#[test]
fn every_response_but_100_carries_a_to_tag() {
    let mut ep = Endpoint::new("127.0.0.1:5060".parse().unwrap(), "t", 1);
    ep.set_registrar(true);
    let options = in_dialog("OPTIONS", "z9hG4bK-o", "x", "t", 1, "", "").replace(";tag=t", "");
    let requests = [
        // OPTIONS 200, 405, 501.
        options.clone(),
        options.replace("OPTIONS", "SUBSCRIBE").replace("z9hG4bK-o", "z9hG4bK-s"),
        options.replace("OPTIONS", "FOO").replace("z9hG4bK-o", "z9hG4bK-f"),
        // 416, 420, 415, 406, 400 to out-of-dialog INVITEs.
        invite("z9hG4bK-416", "t416").replace("INVITE sip:962588@", "INVITE xmpp:962588@"),
        invite("z9hG4bK-420", "t420").replace("Max-Forwards: 70\r\n", "Max-Forwards: 70\r\nRequire: 100rel\r\n"),
        invite("z9hG4bK-415", "t415").replace("application/sdp", "text/plain"),
        invite("z9hG4bK-406", "t406").replace("Max-Forwards: 70\r\n", "Max-Forwards: 70\r\nAccept: text/html\r\n"),
        invite("z9hG4bK-400", "t400").replace("CSeq: 1 INVITE", "CSeq: x INVITE"),
        // 481 to a CANCEL of nothing.
        invite("z9hG4bK-nothing", "t481").replacen("INVITE sip", "CANCEL sip", 1).replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL"),
    ];
    for req in &requests {
        ep.handle(0, peer(), req.as_bytes());
    }
    let mut big = options.replace("z9hG4bK-o", "z9hG4bK-big").into_bytes();
    big.extend(std::iter::repeat_n(b'x', MAX_MESSAGE_BYTES));
    ep.handle(0, peer(), &big);
    let out = sent(&mut ep);
    assert_eq!(
        status(&out).iter().map(|s| &s[8..11]).collect::<Vec<_>>(),
        ["200", "405", "501", "416", "420", "415", "406", "400", "481", "513"]
    );
    for r in &out {
        assert!(to_tag_of(r).is_some_and(|t| !t.is_empty()), "no To tag:\n{r}");
    }
    // A retransmission is answered with the same tag.
    ep.handle(100, peer(), requests[0].as_bytes());
    assert_eq!(to_tag_of(&sent(&mut ep)[0]), to_tag_of(&out[0]));
    // An INVITE: the 100 has none, the 487 and the 200 to the CANCEL share one.
    ep.handle(200, peer(), invite("z9hG4bK-c", "tc").as_bytes());
    let cancel = invite("z9hG4bK-c", "tc").replacen("INVITE sip", "CANCEL sip", 1).replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    ep.handle(210, peer(), cancel.as_bytes());
    let out = sent(&mut ep);
    assert_eq!(status(&out), ["SIP/2.0 100 Trying", "SIP/2.0 200 OK", "SIP/2.0 487 Request Terminated"]);
    assert_eq!(to_tag_of(&out[0]), None);
    assert!(to_tag_of(&out[1]).is_some());
    assert_eq!(to_tag_of(&out[1]), to_tag_of(&out[2]));
}

// ------------------------------------------------- transaction matching (RFC 3261 §17.2.3)

/// `invite()` as sent by the phone at `via` (its Via sent-by).
fn invite_from(via: &str, branch: &str, call_id: &str) -> String {
    invite(branch, call_id).replace("Via: SIP/2.0/UDP 127.0.0.1:5061", &format!("Via: SIP/2.0/UDP {via}"))
}

#[test]
fn another_peers_request_with_the_same_branch_is_not_a_retransmission() {
    let mut ep = Endpoint::new("127.0.0.1:5060".parse().unwrap(), "t", 1);
    let a: SocketAddr = "192.0.2.10:5060".parse().unwrap();
    let b: SocketAddr = "192.0.2.20:5060".parse().unwrap();
    ep.handle(0, a, invite_from("192.0.2.10:5060", "z9hG4bK-same", "ca").as_bytes());
    ep.handle(10, b, invite_from("192.0.2.20:5060", "z9hG4bK-same", "cb").as_bytes());
    let calls: Vec<(CallKey, SocketAddr)> = std::iter::from_fn(|| ep.poll_event())
        .map(|e| match e {
            Event::Invite { call, peer, .. } => (call, peer),
            e => panic!("{e:?}"),
        })
        .collect();
    assert_eq!(calls.iter().map(|c| c.1).collect::<Vec<_>>(), [a, b], "both INVITEs are calls");
    let out: Vec<SocketAddr> = std::iter::from_fn(|| ep.poll_transmit()).map(|(to, _)| to).collect();
    assert_eq!(out, [a, b], "each got its own 100");
    // B's CANCEL (same branch, B's Via) cancels B's call only.
    let cancel = invite_from("192.0.2.20:5060", "z9hG4bK-same", "cb").replacen("INVITE sip", "CANCEL sip", 1).replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    ep.handle(20, b, cancel.as_bytes());
    assert_eq!(ep.poll_event(), Some(Event::Cancelled { call: calls[1].0 }));
    assert_eq!(ep.active_calls(), 1);
    // A non-INVITE too: the same branch from two sent-bys is two OPTIONS.
    let opt = |via: &str| in_dialog("OPTIONS", "z9hG4bK-o", "o", "t", 1, "", "").replace(";tag=t", "").replace("127.0.0.1:5061", via);
    ep.handle(30, a, opt("192.0.2.10:5060").as_bytes());
    ep.handle(30, b, opt("192.0.2.20:5060").as_bytes());
    let out: Vec<(SocketAddr, String)> = std::iter::from_fn(|| ep.poll_transmit()).map(|(to, d)| (to, String::from_utf8(d).unwrap())).collect();
    assert_eq!(out.len(), 4, "{out:?}"); // the CANCEL's 200 and 487, then two answers
    assert_eq!((out[2].0, out[3].0), (a, b));
    assert!(out[3].1.contains("Via: SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bK-o"), "B's answer is B's, not A's resent");
}

#[test]
fn a_retransmission_matches_on_branch_sent_by_and_method() {
    let mut ep = Endpoint::new("127.0.0.1:5060".parse().unwrap(), "t", 1);
    let a: SocketAddr = "192.0.2.10:5060".parse().unwrap();
    let opt = in_dialog("OPTIONS", "z9hG4bK-m", "m", "t", 1, "", "").replace(";tag=t", "").replace("127.0.0.1:5061", "192.0.2.10:5060");
    ep.handle(0, a, opt.as_bytes());
    let first = sent(&mut ep);
    // The same branch and sent-by with another method is another transaction.
    let info = opt.replace("OPTIONS", "INFO");
    ep.handle(10, a, info.as_bytes());
    assert_eq!(status(&sent(&mut ep)), ["SIP/2.0 481 Call/Transaction Does Not Exist"]);
    // A true retransmission gets the same answer, to A.
    ep.handle(20, a, opt.as_bytes());
    assert_eq!(sent(&mut ep), first);
    // Someone else copying A's branch and sent-by is taken for A (the RFC's
    // rule) but learns nothing: the stored answer goes to A.
    ep.handle(30, "198.51.100.9:5060".parse().unwrap(), opt.as_bytes());
    assert_eq!(ep.poll_transmit().map(|t| t.0), Some(a));
}

// ------------------------------------------------- sizes and lengths from the network

#[test]
fn datagram_size_and_content_length_edges() {
    let mut ep = Endpoint::new("127.0.0.1:5060".parse().unwrap(), "t", 1);
    // An OPTIONS of exactly `size` bytes.
    let sized = |branch: &str, size: usize| {
        let head = |n: usize| format!("OPTIONS sip:ivr@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch={branch}\r\nFrom: <sip:p@x>;tag=p\r\nTo: <sip:ivr@x>\r\nCall-ID: {branch}\r\nCSeq: 1 OPTIONS\r\nContent-Type: text/plain\r\nContent-Length: {n:05}\r\n\r\n");
        let body = size - head(0).len();
        let mut m = head(body).into_bytes();
        m.extend(std::iter::repeat_n(b'x', body));
        assert_eq!(m.len(), size);
        m
    };
    ep.handle(0, peer(), &sized("z9hG4bK-max", MAX_MESSAGE_BYTES));
    ep.handle(0, peer(), &sized("z9hG4bK-over", MAX_MESSAGE_BYTES + 1));
    assert_eq!(status(&sent(&mut ep)), ["SIP/2.0 200 OK", "SIP/2.0 513 Message Too Large"]);
    for cl in ["99999999999999999999", &usize::MAX.to_string(), &u64::MAX.to_string(), "-1", "1x", "4\r\nContent-Length: 5"] {
        let req = in_dialog("OPTIONS", "z9hG4bK-cl", "cl", "t", 1, "", "body").replace("Content-Length: 4", &format!("Content-Length: {cl}"));
        ep.handle(0, peer(), req.as_bytes());
        let out = sent(&mut ep);
        assert!(out.len() == 1 && out[0].starts_with("SIP/2.0 400 Bad Request"), "{cl:?}: {out:?}");
    }
    assert_eq!(ep.poll_event(), None);
}

// ------------------------------------------------- Server / User-Agent

/// Everything the endpoint sends over a call each way, an OPTIONS, a refusal.
fn all_kinds_of_messages(ep: &mut Endpoint) -> Vec<String> {
    // A call to us: 100, 200, then our INFO and BYE.
    ep.handle(0, peer(), invite("z9hG4bK-ua", "ua1").as_bytes());
    let Some(Event::Invite { call, .. }) = ep.poll_event() else { panic!() };
    ep.accept(10, call, "v=0\r\n");
    let mut out = sent(ep);
    let tag = to_tag_of(&out[1]).unwrap();
    ep.handle(600, peer(), in_dialog("ACK", "z9hG4bK-ua-ack", "ua1", &tag, 1, "", "").as_bytes());
    ep.send_dtmf(700, call, '1');
    ep.hangup(800, call);
    // OPTIONS and a refusal.
    let options = in_dialog("OPTIONS", "z9hG4bK-ua-o", "ua2", "t", 1, "", "").replace(";tag=t", "");
    ep.handle(900, peer(), options.as_bytes());
    ep.handle(900, peer(), options.replace("OPTIONS", "FOO").replace("z9hG4bK-ua-o", "z9hG4bK-ua-f").as_bytes());
    // A call we place: INVITE, ACK, BYE; another: INVITE, CANCEL.
    let placed = ep.call(1_000, "sip:1001@127.0.0.1:5070", agent(), "138", &[], "v=0\r\n");
    out.extend(sent(ep));
    let inv = out.last().unwrap().clone();
    ep.handle(1_010, agent(), reply_to(&inv, 200, "OK", Some("a1"), "Contact: <sip:1001@127.0.0.1:5070>\r\n", "v=0\r\n").as_bytes());
    ep.hangup(1_020, placed);
    let ringing = ep.call(1_100, "sip:1002@127.0.0.1:5071", "127.0.0.1:5071".parse().unwrap(), "138", &[], "v=0\r\n");
    out.extend(sent(ep));
    let inv = out.last().unwrap().clone();
    ep.handle(1_200, "127.0.0.1:5071".parse().unwrap(), reply_to(&inv, 180, "Ringing", Some("b1"), "", "").as_bytes());
    ep.hangup(1_300, ringing);
    out.extend(sent(ep));
    out
}

#[test]
fn the_user_agent_can_be_set_or_left_out() {
    let mut ep = Endpoint::new("127.0.0.1:5060".parse().unwrap(), "ivr/0.1", 7);
    ep.set_user_agent(None);
    let out = all_kinds_of_messages(&mut ep);
    let firsts: Vec<String> = status(&out);
    for kind in ["SIP/2.0 100", "SIP/2.0 200", "SIP/2.0 501", "INVITE ", "ACK ", "BYE ", "INFO ", "CANCEL "] {
        assert!(firsts.iter().any(|f| f.starts_with(kind)), "{kind} not exercised: {firsts:?}");
    }
    for m in &out {
        assert!(!m.lines().any(|l| l.starts_with("Server:") || l.starts_with("User-Agent:")), "{m}");
    }
    let mut ep = Endpoint::new("127.0.0.1:5060".parse().unwrap(), "ivr/0.1", 7);
    ep.set_user_agent(Some("Hotline\r\nX-Injected: 1".into()));
    let out = all_kinds_of_messages(&mut ep);
    assert!(out.iter().any(|m| m.contains("\r\nServer: HotlineX-Injected: 1\r\n")), "control characters are dropped");
    assert!(out.iter().any(|m| m.contains("\r\nUser-Agent: HotlineX-Injected: 1\r\n")));
    assert!(!out.iter().any(|m| m.contains("\r\nX-Injected")));
    // The constructor's value is used until changed; "" means none.
    let mut ep = Endpoint::new("127.0.0.1:5060".parse().unwrap(), "ivr/0.1", 7);
    assert!(all_kinds_of_messages(&mut ep).iter().any(|m| m.contains("\r\nServer: ivr/0.1\r\n")));
    let mut ep = Endpoint::new("127.0.0.1:5060".parse().unwrap(), "", 7);
    assert!(!all_kinds_of_messages(&mut ep).iter().any(|m| m.contains("Server:") || m.contains("User-Agent:")));
}

#[test]
fn a_call_id_with_control_characters_is_refused_before_it_reaches_a_log() {
    let mut ep = Endpoint::new("127.0.0.1:5060".parse().unwrap(), "ivr", 1);
    ep.handle(0, peer(), invite("z9hG4bK-c", "esc\u{1b}[31mRED").as_bytes());
    assert!(ep.poll_event().is_none());
    assert_eq!(status(&sent(&mut ep)), ["SIP/2.0 400 Bad Request (Call-ID)"]);
}

#[test]
fn in_dialog_requests_with_another_from_tag_are_not_the_callers() {
    let mut ep = Endpoint::new("127.0.0.1:5060".parse().unwrap(), "ivr", 1);
    let (call, tag) = new_call(&mut ep, "c-tag");
    ep.handle(20, peer(), in_dialog("ACK", "z9hG4bK-a", "c-tag", &tag, 1, "", "").as_bytes());
    while ep.poll_event().is_some() {}
    let forged = in_dialog("BYE", "z9hG4bK-f", "c-tag", &tag, 2, "", "").replace("tag=caller", "tag=stranger");
    ep.handle(30, peer(), forged.as_bytes());
    assert!(ep.poll_event().is_none(), "no BYE event for a stranger's BYE");
    assert_eq!(status(&sent(&mut ep)), ["SIP/2.0 481 Call/Transaction Does Not Exist"]);
    ep.handle(40, peer(), in_dialog("BYE", "z9hG4bK-b", "c-tag", &tag, 3, "", "").as_bytes());
    assert_eq!(ep.poll_event(), Some(Event::Bye { call }));
}
