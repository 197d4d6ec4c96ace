use super::*;

const INVITE: &str = "INVITE sip:962588@127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1;rport\r\n\
Max-Forwards: 70\r\n\
From: \"Caller\" <sip:13800138000@127.0.0.1:5061>;tag=abc\r\n\
To: <sip:962588@127.0.0.1:5060>\r\n\
Call-ID: call-1@127.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:13800138000@127.0.0.1:5061>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

#[test]
fn parses_an_invite() {
    let m = Message::parse(INVITE.as_bytes(), true).unwrap();
    assert_eq!(m.method(), Some("INVITE"));
    assert_eq!(m.branch(), Some("z9hG4bK-1"));
    assert_eq!(m.from_tag(), Some("abc"));
    assert_eq!(m.to_tag(), None);
    assert_eq!(m.cseq(), Some((1, "INVITE".into())));
    assert_eq!(m.body, b"v=0\n");
    let StartLine::Request { uri, .. } = &m.start else { panic!() };
    assert_eq!(uri_user(uri).as_deref(), Some("962588"));
    // Round trip.
    assert_eq!(Message::parse(&m.to_bytes(), true).unwrap(), m);
}

#[test]
fn tolerates_what_rfc_4475_says_is_valid() {
    // Whitespace and line folding (wsinv), compact forms, mixed case, LF only,
    // an unknown method, escaped URI user part.
    let m = "NEWMETHOD sip:%39%36%32588@example.com SIP/2.0\n\
v:  SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK-x ,\n  SIP/2.0/TCP 192.0.2.2;branch=z9hG4bK-y\n\
i : folded-\n  call-id\n\
f: <sip:a@example.com>;tag=1\n\
t:sip:b@example.com\n\
cSeQ:   8   NEWMETHOD\n\
l: 0\n\n";
    let m = Message::parse(m.as_bytes(), true).unwrap();
    assert_eq!(m.method(), Some("NEWMETHOD"));
    assert_eq!(m.headers_named("Via").count(), 2);
    assert_eq!(m.call_id(), Some("folded- call-id"));
    assert_eq!(m.cseq(), Some((8, "NEWMETHOD".into())));
    let StartLine::Request { uri, .. } = &m.start else { panic!() };
    assert_eq!(uri_user(uri).as_deref(), Some("962588"));
    assert_eq!(uri_user("tel:+8621962588;phone-context=x").as_deref(), Some("+8621962588"));
}

#[test]
fn malformed_messages_keep_what_can_address_a_400() {
    let no_cseq = INVITE.replace("CSeq: 1 INVITE\r\n", "");
    let e = Message::parse(no_cseq.as_bytes(), true).unwrap_err();
    let partial = e.partial.unwrap();
    assert_eq!(partial.call_id(), Some("call-1@127.0.0.1"));
    assert!(partial.header("Via").is_some());
    let short = INVITE.replace("Content-Length: 4", "Content-Length: 400");
    assert!(Message::parse(short.as_bytes(), true).unwrap_err().reason.contains("shorter"));
    let mismatch = INVITE.replace("CSeq: 1 INVITE", "CSeq: 1 BYE");
    assert!(Message::parse(mismatch.as_bytes(), true).is_err());
    for garbage in ["", "hello", "INVITE sip:x SIP/3.0\r\n\r\n", "SIP/2.0 99 X\r\n\r\n", "\u{0}\u{1}\u{2}"] {
        assert!(Message::parse(garbage.as_bytes(), true).is_err(), "{garbage:?}");
    }
}

#[test]
fn responses_copy_the_transaction_headers_and_add_a_tag() {
    let m = Message::parse(INVITE.as_bytes(), true).unwrap();
    let r = response(&m, 200, "OK", Some("srv"));
    let text = String::from_utf8(r.to_bytes()).unwrap();
    assert!(text.starts_with("SIP/2.0 200 OK\r\n"));
    assert!(text.contains("To: <sip:962588@127.0.0.1:5060>;tag=srv\r\n"));
    assert!(text.contains("Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1;rport\r\n"));
    assert!(text.ends_with("Content-Length: 0\r\n\r\n"));
    let trying = String::from_utf8(response(&m, 100, "Trying", Some("srv")).to_bytes()).unwrap();
    assert!(!trying.contains("tag=srv"), "100 Trying carries no To tag");
}

proptest::proptest! {
    #[test]
    fn parse_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
        let _ = Message::parse(&bytes, true);
        let _ = Message::parse(&bytes, false);
    }

    #[test]
    fn mutated_invites_never_panic(at in 0usize..400, byte in proptest::prelude::any::<u8>(), cut in 0usize..420) {
        let mut b = INVITE.as_bytes().to_vec();
        let i = at % b.len();
        b[i] = byte;
        let _ = Message::parse(&b, true);
        let _ = Message::parse(&b[..cut.min(b.len())], true);
    }
}

#[test]
fn via_sent_by_and_transport() {
    let v = Via::parse("SIP  /   2.0 /udp  Phone.Example.com : 5062 ;branch=z9hG4bK-1").unwrap();
    assert_eq!((v.transport.as_str(), v.host.as_str(), v.port), ("UDP", "phone.example.com", Some(5062)));
    assert_eq!(v.sent_by(), "phone.example.com:5062");
    let v = Via::parse("SIP/2.0/TCP [2001:db8::9:1]:5060;branch=x").unwrap();
    assert_eq!((v.host.as_str(), v.port, v.is_reliable()), ("[2001:db8::9:1]", Some(5060), true));
    assert_eq!(v.ip(), Some("2001:db8::9:1".parse().unwrap()));
    assert_eq!(Via::parse("SIP/2.0/UDP 192.0.2.1").unwrap().port, None);
    for bad in ["", "SIP/2.0/UDP", "HTTP/1.1/UDP h", "SIP/2.0/UDP h:99999", "SIP/2.0/UDP h:x", "SIP/2.0/UDP [::1"] {
        assert_eq!(Via::parse(bad), None, "{bad:?}");
    }
}

#[test]
fn stamping_the_via_with_the_source() {
    let src: std::net::SocketAddr = "[2001:db8::7]:40000".parse().unwrap();
    let mut m = Message::parse(INVITE.as_bytes(), true).unwrap();
    m.stamp_via(src, false);
    assert_eq!(m.header("Via"), Some("SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1;received=2001:db8::7;rport=40000"));
    assert_eq!(m.response_addr(src), src);
    // Stamping twice (a stored request answered again) changes nothing.
    let once = m.clone();
    m.stamp_via(src, false);
    assert_eq!(m, once);
}

#[test]
fn transaction_keys_name_the_branch_and_the_sent_by() {
    let m = Message::parse(INVITE.as_bytes(), true).unwrap();
    let other = INVITE.replace("127.0.0.1:5061;branch", "192.0.2.99:5061;branch");
    let other = Message::parse(other.as_bytes(), true).unwrap();
    assert_eq!(m.branch(), other.branch());
    assert_ne!(m.transaction_key(), other.transaction_key(), "same branch, another sent-by");
    let spaced = INVITE.replace("SIP/2.0/UDP 127.0.0.1:5061;", "SIP / 2.0 / UDP 127.0.0.1 : 5061 ;");
    assert_eq!(Message::parse(spaced.as_bytes(), true).unwrap().transaction_key(), m.transaction_key());
    let ack = INVITE.replacen("INVITE sip", "ACK sip", 1).replace("CSeq: 1 INVITE", "CSeq: 1 ACK");
    assert_eq!(Message::parse(ack.as_bytes(), true).unwrap().transaction_key(), m.transaction_key(), "ACK and CANCEL name their INVITE");
}

#[test]
fn content_length_edges_are_clean_errors() {
    // INVITE's body is 4 bytes.
    let with = |cl: &str| Message::parse(INVITE.replace("Content-Length: 4", &format!("Content-Length: {cl}")).as_bytes(), true).map_err(Box::new);
    assert_eq!(with("4").unwrap().body, b"v=0\n", "exactly the body");
    assert_eq!(with("0004").unwrap().body, b"v=0\n", "leading zeros are digits");
    assert_eq!(with("3").unwrap().body, b"v=0", "a datagram's octets past Content-Length are not body (RFC 3261 §18.3)");
    let reason = |cl: &str| {
        let e = with(cl).unwrap_err();
        assert_eq!(e.status, 400, "{cl}");
        assert!(e.partial.is_some_and(|p| p.header("Via").is_some()), "{cl}: still answerable");
        e.reason
    };
    assert!(reason("5").contains("shorter"), "one over");
    assert!(reason(&usize::MAX.to_string()).contains("shorter"));
    for bad in ["99999999999999999999", "18446744073709551616", "-1", "+4", "4 4", "0x4", "", "four"] {
        assert!(reason(bad).contains("not a number"), "{bad:?}");
    }
    let two = INVITE.replace("Content-Length: 4", "Content-Length: 4\r\nl: 2");
    assert!(Message::parse(two.as_bytes(), true).unwrap_err().reason.contains("more than one Content-Length"));
    assert_eq!(content_length(" 12 "), Some(12));
    assert_eq!(content_length(&format!("{}1", "0".repeat(100))), Some(1));
}

#[test]
fn a_non_ascii_user_stays_what_it_was() {
    assert_eq!(uri_user("sip:九五五八八@127.0.0.1").as_deref(), Some("九五五八八"));
    assert_eq!(uri_user("sip:%E4%B9%9D@127.0.0.1").as_deref(), Some("九"));
    assert_eq!(uri_user("sip:96%32588@127.0.0.1").as_deref(), Some("962588"));
}
