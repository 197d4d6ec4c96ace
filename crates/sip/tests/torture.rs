//! Torture messages in the spirit of RFC 4475 (SIP) and RFC 5118 (IPv6): each
//! one written for this project to exercise what a section of those RFCs
//! exercises, and answered as the RFCs require — valid requests answered,
//! unknown methods 501, malformed ones 400 (with what Via/Call-ID/CSeq could be
//! recovered) or dropped, never a crash.

use ivr_sip::endpoint::Endpoint;
use ivr_sip::message::Message;

fn answer(raw: &str) -> Option<String> {
    let mut ep = Endpoint::new("127.0.0.1:5060".parse().unwrap(), "torture", 3);
    ep.handle(0, "192.0.2.1:5060".parse().unwrap(), raw.replace('\n', "\r\n").replace("\r\r\n", "\r\n").as_bytes());
    ep.poll_transmit().map(|(_, d)| String::from_utf8_lossy(&d).lines().next().unwrap_or("").to_string())
}

fn sdp_body() -> &'static str {
    "v=0\no=t 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=audio 4000 RTP/AVP 0\n"
}

/// Like RFC 4475 3.1.1.1: folding everywhere, odd spacing and case, an empty
/// header, an unknown header with an unusual value, leading zeros, params
/// without values, compact and long forms mixed.
#[test]
fn short_tortuous_options() {
    let raw = "OPTIONS sip:ivr@svc.example.com;oddparam SIP/2.0\n\
TO :\n sip:ivr@svc.example.com ;   tag    = 77xq\n\
from   : \"A \\\"quoted\\\" name\"  <sip:caller@example.com>\n  ;\n  tag = 11ab\n\
mAx-ForWaRdS: 0069\n\
Call-ID: tort.1@192.0.2.1\n\
cseq: 0007\n  OPTIONS\n\
Via  : SIP  /   2.0\n /UDP\n    192.0.2.1;rport;branch=z9hG4bKtort1\n\
s :\n\
StrangeHeader: ;;,,;;,;\n\
v:  SIP/2.0/TCP relay.example.com ;\n  branch  =   z9hG4bKrelay  ,\n SIP / 2.0 / UDP 192.0.2.9 ; branch=\n z9hG4bKlast\n\
l: 0\n\n";
    let m = Message::parse(raw.as_bytes(), true).expect("valid");
    assert_eq!(m.headers_named("Via").count(), 3);
    assert_eq!(m.cseq(), Some((7, "OPTIONS".into())));
    assert_eq!(m.to_tag(), Some("77xq"));
    assert_eq!(m.from_tag(), Some("11ab"));
    // The To tag makes it in-dialog-looking, but OPTIONS is answered anyway.
    assert_eq!(answer(raw).as_deref(), Some("SIP/2.0 200 OK"));
}

/// Like 3.1.1.2: an unusual but legal method token and Request-URI characters.
#[test]
fn unusual_method_token_is_not_implemented() {
    let raw = "!odd-Method0123_*+`.%~ sip:1_odd.URI~(x!y)&z+w$/q?,/;;*@example.com SIP/2.0\n\
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK-.!%66*_+`'~\n\
To: <sip:a@example.com>\nFrom: <sip:b@example.com>;tag=_x~1'+`*%!-.\n\
Call-ID: odd.1\nCSeq: 139122385 !odd-Method0123_*+`.%~\nMax-Forwards: 255\nContent-Length: 0\n\n";
    assert_eq!(answer(raw).as_deref(), Some("SIP/2.0 501 Not Implemented"));
}

/// Like 3.1.1.3 and 3.1.1.4: % escapes in the Request-URI user and a NUL in a body.
#[test]
fn escapes_and_binary_bodies() {
    let body = "v=0\0x";
    let raw = format!(
        "INVITE sip:%39%36%32%35%38%38@example.net SIP/2.0\nTo: sip:%39%36%32588@example.net\nFrom: <sip:I%20have%20spaces@example.net>;tag=9\n\
Max-Forwards: 87\ni: esc.2\nCSeq: 1 INVITE\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKesc\nc: application/sdp\nContent-Length: {}\n\n{body}",
        body.len()
    );
    let mut ep = Endpoint::new("127.0.0.1:5060".parse().unwrap(), "t", 1);
    ep.handle(0, "192.0.2.1:5060".parse().unwrap(), raw.replace('\n', "\r\n").replace("\r\n\r\nv=0", "\r\n\r\nv=0").as_bytes());
    match ep.poll_event() {
        Some(ivr_sip::endpoint::Event::Invite { dialed, .. }) => assert_eq!(dialed, "962588"),
        other => panic!("{other:?}"),
    }
}

/// Like 3.1.1.7 / 3.3.2: long values and an unknown scheme in To are fine;
/// an unknown scheme in the Request-URI is 416.
#[test]
fn long_values_and_unknown_schemes() {
    let long = "x".repeat(3000);
    let raw = format!(
        "OPTIONS sip:ivr@example.com SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKlong\nTo: <name:ivr>\nFrom: <sip:a@b>;tag=1\nCall-ID: long.1\nCSeq: 1 OPTIONS\nX-Long: {long}\nContent-Length: 0\n\n"
    );
    assert_eq!(answer(&raw).as_deref(), Some("SIP/2.0 200 OK"));
    let unknown = raw.replace("OPTIONS sip:ivr@example.com SIP/2.0", "OPTIONS name:ivr SIP/2.0");
    assert_eq!(answer(&unknown).as_deref(), Some("SIP/2.0 416 Unsupported URI Scheme"));
}

/// Like RFC 5118: IPv6 references in Via and URIs.
#[test]
fn ipv6_references() {
    let raw = "OPTIONS sip:ivr@[2001:db8::10] SIP/2.0\nVia: SIP/2.0/UDP [2001:db8::9:1]:5060;branch=z9hG4bKv6;received=[2001:db8::9:255]\n\
To: <sip:ivr@[2001:db8::10]>\nFrom: <sip:a@[2001:db8::9:1]>;tag=1\nCall-ID: v6.1\nCSeq: 1 OPTIONS\nContent-Length: 0\n\n";
    assert_eq!(answer(raw).as_deref(), Some("SIP/2.0 200 OK"));
}

/// Like 3.1.2: messages that must be refused. A 400 names what was wrong and
/// carries the Call-ID; a message without a usable Via is dropped.
#[test]
fn invalid_messages() {
    let base = "INVITE sip:962588@example.com SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKbad\nTo: <sip:962588@example.com>\n\
From: <sip:a@example.com>;tag=1\nCall-ID: bad.1\nCSeq: 1 INVITE\nContent-Type: application/sdp\n";
    let cases = [
        // Content-Length larger than the body (3.1.2.1-like).
        format!("{base}Content-Length: 9999\n\n{}", sdp_body()),
        // Negative Content-Length.
        format!("{base}Content-Length: -5\n\n{}", sdp_body()),
        // CSeq method not matching the request method.
        base.replace("CSeq: 1 INVITE", "CSeq: 1 REGISTER") + "Content-Length: 0\n\n",
        // Non-numeric CSeq.
        base.replace("CSeq: 1 INVITE", "CSeq: one INVITE") + "Content-Length: 0\n\n",
        // No Call-ID.
        base.replace("Call-ID: bad.1\n", "") + "Content-Length: 0\n\n",
        // No From.
        base.replace("From: <sip:a@example.com>;tag=1\n", "") + "Content-Length: 0\n\n",
    ];
    for (i, raw) in cases.iter().enumerate() {
        let reply = answer(raw);
        assert!(reply.as_deref().is_some_and(|r| r.starts_with("SIP/2.0 400")), "case {i}: {reply:?}");
    }
    // Another SIP version: 505; an unparseable start line: nothing to answer.
    assert_eq!(answer(&(base.replace("SIP/2.0\nVia", "SIP/7.0\nVia") + "Content-Length: 0\n\n")).as_deref(), Some("SIP/2.0 505 Version Not Supported"));
    assert_eq!(answer("INVITE\n\n"), None);
    // No Via at all: dropped.
    assert_eq!(answer(&(base.replace("Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKbad\n", "") + "Content-Length: 0\n\n")), None);
    // Max-Forwards 0 at the endpoint the request is for: processed as usual
    // (RFC 4475 3.3.9; 483 is a proxy's answer). Unsupported required extension: 420.
    let mf = base.replace("CSeq: 1 INVITE\n", "CSeq: 1 INVITE\nMax-Forwards: 0\n") + "Content-Length: 0\n\n";
    assert_eq!(answer(&mf).as_deref(), Some("SIP/2.0 100 Trying"));
    let req = base.replace("CSeq: 1 INVITE\n", "CSeq: 1 INVITE\nRequire: nothingwesupport\n") + "Content-Length: 0\n\n";
    assert_eq!(answer(&req).as_deref(), Some("SIP/2.0 420 Bad Extension"));
}

/// A body that is not SDP in an INVITE: 415; an INVITE to a dialog we do not
/// have: 481.
#[test]
fn media_type_and_unknown_dialogs() {
    let raw = "INVITE sip:962588@example.com SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKct\nTo: <sip:962588@example.com>\n\
From: <sip:a@example.com>;tag=1\nCall-ID: ct.1\nCSeq: 1 INVITE\nContent-Type: text/plain\nContent-Length: 2\n\nhi";
    assert_eq!(answer(raw).as_deref(), Some("SIP/2.0 415 Unsupported Media Type"));
    let re = raw.replace("To: <sip:962588@example.com>", "To: <sip:962588@example.com>;tag=nosuch").replace("text/plain", "application/sdp");
    assert_eq!(answer(&re).as_deref(), Some("SIP/2.0 481 Call/Transaction Does Not Exist"));
}
