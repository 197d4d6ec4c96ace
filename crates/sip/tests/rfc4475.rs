//! RFC 4475 (SIP torture tests) and RFC 5118 (IPv6 torture tests), case by
//! case: for each of their test messages, a message of our own that exercises
//! the same thing (the RFCs' texts are not copied), and the answer the RFC asks
//! of an endpoint. Cases also covered in `torture.rs` are marked there.
//!
//! Valid INVITEs get `100 Trying` first, valid OPTIONS `200 OK`; invalid
//! requests `400` (RFC 4475 §3.1.2), other versions `505`, unknown schemes
//! `416`, bodies we cannot read `415`, an Accept we cannot meet `406`;
//! malformed responses are dropped. Nothing panics.

use std::net::SocketAddr;

use ivr_sip::endpoint::{Endpoint, Event};
use ivr_sip::message::Message;

const SDP: &str = "v=0\r\no=c 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";

fn peer() -> SocketAddr {
    "192.0.2.10:5060".parse().unwrap()
}

/// An INVITE with `start` as its first line and `extra` headers, its other
/// headers from `base_headers()` with the edits `edit` makes, and an SDP body.
fn invite(start: &str, edit: impl Fn(String) -> String) -> String {
    let head = edit(format!(
        "{start}\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-case\r\nMax-Forwards: 70\r\n\
From: \"Caller\" <sip:13800138000@example.com>;tag=c1\r\nTo: <sip:962588@ivr.example.com>\r\n\
Call-ID: case@192.0.2.10\r\nCSeq: 1 INVITE\r\nContact: <sip:13800138000@192.0.2.10>\r\nContent-Type: application/sdp\r\n"
    ));
    format!("{head}Content-Length: {}\r\n\r\n{SDP}", SDP.len())
}

fn std_invite(edit: impl Fn(String) -> String) -> String {
    invite("INVITE sip:962588@ivr.example.com SIP/2.0", edit)
}

fn options(start: &str, edit: impl Fn(String) -> String) -> String {
    edit(format!(
        "{start}\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-opt\r\nMax-Forwards: 70\r\nFrom: <sip:probe@example.com>;tag=p\r\n\
To: <sip:ivr@ivr.example.com>\r\nCall-ID: opt@192.0.2.10\r\nCSeq: 5 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ))
}

/// The first line of the first answer, and the endpoint's events.
fn run(raw: &[u8]) -> (Option<String>, Vec<Event>) {
    let mut ep = Endpoint::new("192.0.2.1:5060".parse().unwrap(), "rfc4475", 9);
    ep.set_registrar(true);
    ep.handle(0, peer(), raw);
    let first = ep.poll_transmit().map(|(_, d)| String::from_utf8_lossy(&d).lines().next().unwrap_or("").to_string());
    (first, std::iter::from_fn(|| ep.poll_event()).collect())
}

fn status(raw: &str) -> Option<String> {
    run(raw.as_bytes()).0.map(|l| l.split(" (").next().unwrap_or(&l).to_string())
}

#[track_caller]
fn expect(section: &str, raw: &str, want: Option<&str>) {
    assert_eq!(status(raw).as_deref(), want, "RFC {section}:\n{raw}");
}

// ------------------------------------------------------------ 3.1.1 valid

#[test]
fn s3_1_1_1_a_short_tortuous_invite() {
    let raw = "INVITE sip:962588@ivr.example.com;unknownparam SIP/2.0\r\n\
TO :\r\n sip:962588@ivr.example.com ;   tag    = 1918181833n\r\n\
from   : \"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>\r\n  ;\r\n  tag = 98asjd8\r\n\
MaX-fOrWaRdS: 0068\r\nCall-ID: wsinv.ndaksdj@192.0.2.10\r\nContent-Length   : 150\r\n\
cseq: 0009\r\n  INVITE\r\nVia  : SIP  /   2.0\r\n /UDP\r\n    192.0.2.10;rport;branch=z9hG4bK-390skdjuw\r\n\
s :\r\nNewFangledHeader:   newfangled value\r\n continued newfangled value\r\nUnknownHeaderWithUnusualValue: ;;,,;;,;\r\n\
Content-Type: application/sdp\r\nRoute:\r\n <sip:services.example.com;lr;unknownwith=value;unknown-no-value>\r\n\
v:  SIP  / 2.0  / TCP     spindle.example.com   ;\r\n  branch  =   z9hG4bK-9ikj8  ,\r\n SIP  /    2.0   / UDP  192.168.255.111   ; branch=\r\n z9hG4bK-30239\r\nm:\"Quoted string \\\"\\\"\" <sip:jdrosen@example.com> ; newparam =\r\n      newvalue ;\r\n  secondparam ; q = 0.33\r\n\r\n";
    let body = format!("{SDP}{}", "a=x\r\n".repeat(150usize.saturating_sub(SDP.len()) / 5));
    let raw = raw.replace("Content-Length   : 150", &format!("Content-Length   : {}", body.len())) + &body;
    let m = Message::parse(raw.as_bytes(), true).expect("valid");
    assert_eq!(m.headers_named("Via").count(), 3);
    assert_eq!(m.cseq(), Some((9, "INVITE".into())));
    assert_eq!(m.to_tag(), Some("1918181833n"));
    // Well-formed; its To tag names a dialog we do not have (RFC 3261 §12.2.2).
    expect("4475 3.1.1.1", &raw, Some("SIP/2.0 481 Call/Transaction Does Not Exist"));
    // The same without the tag is a new call.
    let fresh = raw.replace(";   tag    = 1918181833n", "");
    expect("4475 3.1.1.1", &fresh, Some("SIP/2.0 100 Trying"));
}

#[test]
fn s3_1_1_5_percent_that_is_not_an_escape() {
    let raw = std_invite(|h| h.replace("\"Caller\" <sip:13800138000@example.com>;tag=c1", "\"%Z%zz 100% caller\" <sip:13800138000@example.com>;tag=c%1"));
    expect("4475 3.1.1.5", &raw, Some("SIP/2.0 100 Trying"));
}

#[test]
fn s3_1_1_6_no_space_between_display_name_and_angle() {
    let raw = std_invite(|h| h.replace("\"Caller\" <sip:", "caller<sip:"));
    expect("4475 3.1.1.6", &raw, Some("SIP/2.0 100 Trying"));
}

#[test]
fn s3_1_1_7_long_values_in_header_fields() {
    let long = "x".repeat(1500);
    let raw = std_invite(|h| {
        let vias: String = (0..20).map(|i| format!("Via: SIP/2.0/TCP relay{i}.example.com;branch=z9hG4bK-r{i}\r\n")).collect();
        h.replace("To: <sip:962588@ivr.example.com>", &format!("To: \"{long}\" <sip:962588@ivr.example.com>"))
            .replace("Call-ID: case@192.0.2.10", &format!("Call-ID: {long}@192.0.2.10"))
            .replace("Max-Forwards: 70\r\n", &format!("Max-Forwards: 70\r\n{vias}X-Long-{long}: {long}\r\n"))
    });
    assert!(raw.len() < 16 * 1024);
    expect("4475 3.1.1.7", &raw, Some("SIP/2.0 100 Trying"));
}

#[test]
fn s3_1_1_8_extra_octets_after_the_body_in_a_datagram() {
    let raw = std_invite(|h| h) + "INVITE sip:second@ivr.example.com SIP/2.0\r\nVia: SIP/2.0/UDP x;branch=z9hG4bK-2\r\n\r\n";
    let (first, events) = run(raw.as_bytes());
    assert_eq!(first.as_deref(), Some("SIP/2.0 100 Trying"));
    assert_eq!(events.iter().filter(|e| matches!(e, Event::Invite { .. })).count(), 1, "the trailing octets are not a second request");
}

#[test]
fn s3_1_1_9_semicolons_in_the_user_part() {
    let raw = invite("INVITE sip:962588;par=u%40example.net@ivr.example.com SIP/2.0", |h| h);
    let (first, events) = run(raw.as_bytes());
    assert_eq!(first.as_deref(), Some("SIP/2.0 100 Trying"));
    assert!(matches!(&events[0], Event::Invite { dialed, .. } if dialed == "962588"));
}

#[test]
fn s3_1_1_10_varied_and_unknown_transports() {
    let raw = std_invite(|h| {
        h.replace(
            "Max-Forwards: 70\r\n",
            "Max-Forwards: 70\r\nVia: SIP/2.0/SCTP relay1.example.com;branch=z9hG4bK-s\r\nVia: SIP/2.0/TLS relay2.example.com;branch=z9hG4bK-t\r\n\
Via: SIP/2.0/UNKNOWN relay3.example.com;branch=z9hG4bK-u\r\nVia: SIP/2.0/TCP relay4.example.com;branch=z9hG4bK-c\r\n",
        )
    });
    expect("4475 3.1.1.10", &raw, Some("SIP/2.0 100 Trying"));
}

#[test]
fn s3_1_1_11_multipart_bodies_are_not_understood() {
    let body = "--b1\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n--b1--\r\n";
    let raw = std_invite(|h| h.replace("Content-Type: application/sdp", "Content-Type: multipart/mixed;boundary=b1"));
    let raw = raw.split("Content-Length").next().unwrap().to_string() + &format!("Content-Length: {}\r\n\r\n{body}", body.len());
    expect("4475 3.1.1.11", &raw, Some("SIP/2.0 415 Unsupported Media Type"));
}

#[test]
fn s3_1_1_12_and_13_unusual_and_empty_reason_phrases() {
    for start in ["SIP/2.0 200 = 2**3 * 5**2 но сто девяносто девять - простое", "SIP/2.0 100 "] {
        let raw = format!("{start}\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK-ours\r\nFrom: <sip:a@example.com>;tag=a\r\nTo: <sip:b@example.com>;tag=b\r\nCall-ID: resp\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n");
        assert!(Message::parse(raw.as_bytes(), true).is_ok(), "{start}");
        assert_eq!(run(raw.as_bytes()).0, None, "a response to nothing of ours is dropped");
    }
}

// ------------------------------------------------------------ 3.1.2 invalid

#[test]
fn s3_1_2_1_extraneous_separators() {
    let raw = std_invite(|h| h.replace("branch=z9hG4bK-case", "branch=z9hG4bK-case;;,;,,"));
    expect("4475 3.1.2.1", &raw, Some("SIP/2.0 400 Bad Request"));
}

#[test]
fn s3_1_2_4_overlarge_scalars() {
    for (what, edit) in [
        ("Max-Forwards", ("Max-Forwards: 70", "Max-Forwards: 300")),
        ("CSeq", ("CSeq: 1 INVITE", "CSeq: 36893488147419103232 INVITE")),
        ("Expires", ("Max-Forwards: 70", "Max-Forwards: 70\r\nExpires: 10000000000000000000000")),
    ] {
        let raw = std_invite(|h| h.replace(edit.0, edit.1));
        assert_eq!(status(&raw).as_deref(), Some("SIP/2.0 400 Bad Request"), "{what}");
    }
}

#[test]
fn s3_1_2_5_and_19_malformed_responses_are_dropped() {
    for start in ["SIP/2.0 4294967301 better not crash", "SIP/2.0 99 too small", "SIP/2.0 503 Service Unavailable"] {
        let raw = format!("{start}\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK-x\r\nFrom: <sip:a@example.com>;tag=a\r\nTo: <sip:b@example.com>\r\nCall-ID: big\r\nCSeq: 18446744073709551617 INVITE\r\nRetry-After: 18446744073709551617\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(run(raw.as_bytes()).0, None, "{start}");
    }
}

#[test]
fn s3_1_2_6_unterminated_quoted_display_name() {
    let raw = std_invite(|h| h.replace("\"Caller\" <sip:", "\"Caller <sip:"));
    expect("4475 3.1.2.6", &raw, Some("SIP/2.0 400 Bad Request"));
}

#[test]
fn s3_1_2_7_to_11_malformed_request_lines() {
    for (section, start) in [
        ("3.1.2.7", "INVITE <sip:962588@ivr.example.com> SIP/2.0"),
        ("3.1.2.8", "INVITE sip:962588@ivr.example.com; lr=on SIP/2.0"),
        ("3.1.2.9", "INVITE  sip:962588@ivr.example.com  SIP/2.0"),
        ("3.1.2.10", "INVITE sip:962588@ivr.example.com SIP/2.0 "),
        ("3.1.2.11", "INVITE sip:962588@ivr.example.com?Route=%3Csip:evil.example.com%3E SIP/2.0"),
    ] {
        assert_eq!(status(&invite(start, |h| h)).as_deref(), Some("SIP/2.0 400 Bad Request"), "RFC 4475 {section}: {start:?}");
    }
}

#[test]
fn s3_1_2_13_to_15_malformed_addresses() {
    for (section, from, to) in [
        ("3.1.2.13", "Contact: <sip:13800138000@192.0.2.10>", "Contact: sip:13800138000@192.0.2.10?Route=%3Csip:example.com%3E"),
        ("3.1.2.14", "To: <sip:962588@ivr.example.com>", "To: <sip:962588 @ivr.example.com>"),
        ("3.1.2.15", "\"Caller\" <sip:", "Caller, The <sip:"),
    ] {
        let raw = std_invite(|h| h.replace(from, to));
        assert_eq!(status(&raw).as_deref(), Some("SIP/2.0 400 Bad Request"), "RFC 4475 {section}");
    }
}

#[test]
fn s3_1_2_16_to_18_version_and_method_mismatches() {
    expect("4475 3.1.2.16", &invite("INVITE sip:962588@ivr.example.com SIP/7.0", |h| h), Some("SIP/2.0 505 Version Not Supported"));
    expect("4475 3.1.2.17", &std_invite(|h| h.replace("CSeq: 1 INVITE", "CSeq: 1 ACK")), Some("SIP/2.0 400 Bad Request"));
    let raw = options("NEWMETHOD sip:ivr@ivr.example.com SIP/2.0", |h| h);
    expect("4475 3.1.2.18", &raw, Some("SIP/2.0 400 Bad Request"));
}

// ------------------------------------------------------------ 3.1.3 / 3.4: RFC 2543 peers

#[test]
fn s3_1_3_1_and_3_4_1_requests_without_a_magic_cookie_are_transactions_too() {
    let raw = std_invite(|h| h.replace(";branch=z9hG4bK-case", "").replace(";tag=c1", ""));
    let mut ep = Endpoint::new("192.0.2.1:5060".parse().unwrap(), "rfc2543", 9);
    ep.handle(0, peer(), raw.as_bytes());
    assert!(ep.poll_transmit().is_some_and(|(_, d)| d.starts_with(b"SIP/2.0 100")));
    let Some(Event::Invite { call, .. }) = ep.poll_event() else { panic!("an RFC 2543 INVITE is a call") };
    // Its retransmission is absorbed, not a second call.
    ep.handle(100, peer(), raw.as_bytes());
    assert!(ep.poll_event().is_none());
    // Its CANCEL finds it.
    let cancel = raw.split("\r\n\r\n").next().unwrap().replace("INVITE sip:", "CANCEL sip:").replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    let cancel = cancel.split("Content-Length").next().unwrap().to_string() + "Content-Length: 0\r\n\r\n";
    std::iter::from_fn(|| ep.poll_transmit()).count();
    ep.handle(200, peer(), cancel.as_bytes());
    let sent: Vec<String> = std::iter::from_fn(|| ep.poll_transmit()).map(|(_, d)| String::from_utf8_lossy(&d).lines().next().unwrap().to_string()).collect();
    assert_eq!(sent, ["SIP/2.0 200 OK", "SIP/2.0 487 Request Terminated"]);
    assert_eq!(ep.poll_event(), Some(Event::Cancelled { call }));
}

// ------------------------------------------------------------ 3.3 application layer

#[test]
fn s3_3_1_missing_mandatory_headers() {
    for h in ["Call-ID: case@192.0.2.10\r\n", "From: \"Caller\" <sip:13800138000@example.com>;tag=c1\r\n", "To: <sip:962588@ivr.example.com>\r\n"] {
        assert_eq!(status(&std_invite(|x| x.replace(h, ""))).as_deref(), Some("SIP/2.0 400 Bad Request"), "without {h}");
    }
}

#[test]
fn s3_3_2_and_3_unknown_and_atypical_schemes() {
    expect("4475 3.3.2", &invite("OPTIONS nobodyKnowsThisScheme:totallyopaquecontent SIP/2.0", |h| h.replace("CSeq: 1 INVITE", "CSeq: 1 OPTIONS")), Some("SIP/2.0 416 Unsupported URI Scheme"));
    expect("4475 3.3.3", &invite("INVITE soap.beep://192.0.2.103:3002 SIP/2.0", |h| h), Some("SIP/2.0 416 Unsupported URI Scheme"));
    expect("tel: is ours", &invite("INVITE tel:962588 SIP/2.0", |h| h), Some("SIP/2.0 100 Trying"));
}

#[test]
fn s3_3_5_unknown_authorization_scheme_is_challenged() {
    let raw = options("REGISTER sip:ivr.example.com SIP/2.0", |h| {
        h.replace("CSeq: 5 OPTIONS", "CSeq: 5 REGISTER")
            .replace("To: <sip:ivr@ivr.example.com>", "To: <sip:1001@ivr.example.com>\r\nContact: <sip:1001@192.0.2.10>\r\nAuthorization: NoOneKnowsThisScheme opaque-data=here")
    });
    let (first, events) = run(raw.as_bytes());
    let Some(Event::Register(r)) = events.first() else { panic!("{events:?}") };
    assert_eq!(first, None, "the host answers");
    // Credentials of a scheme nobody knows are no credentials: the host
    // challenges, as it does a REGISTER without any (tests/agents.rs).
    assert!(r.authorization.as_deref().is_some_and(|a| a.starts_with("NoOneKnowsThisScheme")));
    assert!(r.authorization.as_deref().and_then(ivr_sip::digest::parse).is_none());
}

#[test]
fn s3_3_6_and_7_several_values_in_single_value_fields() {
    for (what, edit) in [
        ("Call-ID", ("Call-ID: case@192.0.2.10", "Call-ID: case@192.0.2.10\r\nCall-ID: other@192.0.2.10")),
        ("To", ("To: <sip:962588@ivr.example.com>", "To: <sip:962588@ivr.example.com>\r\nTo: <sip:95588@ivr.example.com>")),
        ("CSeq", ("CSeq: 1 INVITE", "CSeq: 1 INVITE\r\nCSeq: 2 INVITE")),
        ("Content-Length", ("Content-Type: application/sdp", "Content-Type: application/sdp\r\nContent-Length: 3")),
    ] {
        assert_eq!(status(&std_invite(|h| h.replace(edit.0, edit.1))).as_deref(), Some("SIP/2.0 400 Bad Request"), "two {what}");
    }
}

#[test]
fn s3_3_8_a_response_with_a_broadcast_via_is_dropped() {
    let raw = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 255.255.255.255;branch=z9hG4bK-bcast\r\nFrom: <sip:a@example.com>;tag=a\r\nTo: <sip:b@example.com>;tag=b\r\nCall-ID: bcast\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(run(raw.as_bytes()).0, None);
}

#[test]
fn s3_3_9_max_forwards_zero_at_the_endpoint() {
    expect("4475 3.3.9", &options("OPTIONS sip:ivr@ivr.example.com SIP/2.0", |h| h.replace("Max-Forwards: 70", "Max-Forwards: 0")), Some("SIP/2.0 200 OK"));
}

#[test]
fn s3_3_10_and_11_register_contact_parameters() {
    let raw = options("REGISTER sip:ivr.example.com SIP/2.0", |h| {
        h.replace("CSeq: 5 OPTIONS", "CSeq: 5 REGISTER").replace(
            "To: <sip:ivr@ivr.example.com>",
            "To: <sip:1001@ivr.example.com>\r\nContact: <sip:1001@192.0.2.10;transport=udp>;expires=300;q=0.5;unknownparam",
        )
    });
    let (_, events) = run(raw.as_bytes());
    let Some(Event::Register(r)) = events.first() else { panic!("{events:?}") };
    assert_eq!((r.contact.as_deref(), r.expires), (Some("sip:1001@192.0.2.10;transport=udp"), 300));
}

#[test]
fn s3_3_15_an_accept_we_cannot_meet() {
    let raw = std_invite(|h| h.replace("Max-Forwards: 70", "Max-Forwards: 70\r\nAccept: text/nobodyKnowsThis"));
    expect("4475 3.3.15", &raw, Some("SIP/2.0 406 Not Acceptable"));
    let ok = std_invite(|h| h.replace("Max-Forwards: 70", "Max-Forwards: 70\r\nAccept: application/sdp, text/html"));
    expect("Accept with SDP", &ok, Some("SIP/2.0 100 Trying"));
}

// ------------------------------------------------------------ RFC 5118 (IPv6)

#[test]
fn rfc5118_ipv6_addresses() {
    // Valid: bracketed references in the Request-URI, Via (with port) and Contact.
    let good = invite("INVITE sip:962588@[2001:db8::10] SIP/2.0", |h| {
        h.replace("192.0.2.10:5060;branch", "[2001:db8::9:1]:5060;branch").replace("<sip:13800138000@192.0.2.10>", "<sip:13800138000@[2001:db8::9:1]:5060>")
    });
    expect("5118 3.1", &good, Some("SIP/2.0 100 Trying"));
    // A port inside the brackets is part of the address, not a port: still valid.
    let port_in = invite("INVITE sip:962588@[2001:db8::10:5070] SIP/2.0", |h| h);
    expect("5118 3.3", &port_in, Some("SIP/2.0 100 Trying"));
    // IPv4-mapped and mixed IPv4/IPv6 forms.
    let mapped = invite("INVITE sip:962588@[::ffff:192.0.2.128] SIP/2.0", |h| h);
    expect("5118 3.7", &mapped, Some("SIP/2.0 100 Trying"));
    // Invalid: an IPv6 reference without brackets.
    let bad = invite("INVITE sip:962588@2001:db8::10 SIP/2.0", |h| h);
    expect("5118 3.2", &bad, Some("SIP/2.0 400 Bad Request"));
}

#[test]
fn unquoted_display_names_may_be_chinese_but_not_punctuation() {
    let cjk = std_invite(|h| h.replace("\"Caller\" <sip:", "王芳 <sip:"));
    expect("lenient", &cjk, Some("SIP/2.0 100 Trying"));
    let comma = std_invite(|h| h.replace("\"Caller\" <sip:", "王, 芳 <sip:"));
    expect("4475 3.1.2.15", &comma, Some("SIP/2.0 400 Bad Request"));
}
