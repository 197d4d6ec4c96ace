//! `ivr serve` driven from outside by real SIP clients on loopback: sipp
//! (Debian's sip-tester, with its RFC 2833 DTMF pcaps) and a small Rust user
//! agent that checks the RTP it receives.

mod common;
use common::server::*;
use common::*;

use std::net::UdpSocket;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn a_call_is_answered_and_the_caller_hangs_up() {
    let s = serve("hangup", "");
    let out = sipp(&s, "uac_hangup.xml", "962588", &["-m", "1"]);
    assert!(out.status.success(), "sipp failed: {}", String::from_utf8_lossy(&out.stdout));
    let recs = records(&s, 1);
    assert_eq!(recs[0]["outcome"], "caller_hung_up");
    assert_eq!(recs[0]["dialed"], "962588");
    assert_eq!(recs[0]["nodes"][0], "welcome");
}

#[test]
fn rfc_4733_dtmf_walks_the_menu() {
    let s = serve("dtmf", "");
    let out = sipp(&s, "uac_dtmf.xml", "962588", &["-m", "1"]);
    assert!(out.status.success(), "sipp failed: {}", String::from_utf8_lossy(&out.stdout));
    let recs = records(&s, 1);
    assert_eq!(recs[0]["keys"], "1", "{:?}", recs[0]);
    let nodes: Vec<&str> = recs[0]["nodes"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
    assert_eq!(nodes, ["welcome", "main_menu", "quotes"], "key 1 in the main menu leads to quotes");

    // The production call, turned into a scenario, replays the same way.
    let scenario = s.data.join("replay.test.toml");
    let calls = s.data.join("calls.jsonl");
    let id = recs[0]["call_id"].as_str().unwrap();
    let out = ivr(&["test", "--from-record", calls.to_str().unwrap(), id, "--flow", "flows/securities_hotline.ivr", "-o", scenario.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&scenario).unwrap();
    assert!(text.contains("path = [\"welcome\", \"main_menu\", \"quotes\"]") && text.contains("outcome = \"caller hangup\""), "{text}");
    let replay = ivr(&["test", scenario.to_str().unwrap()]);
    assert!(replay.status.success(), "the replay passes on the version it ran:\n{text}\n{}{}", stdout(&replay), stderr(&replay));
    // The same call against a changed flow (key 1 now leads elsewhere) fails:
    // the regression the scenario is there to catch.
    let copy = s.data.join("flows-copy");
    std::fs::create_dir_all(&copy).unwrap();
    for f in ["securities_hotline.ivr", "prompts.toml", "segments.toml"] {
        std::fs::copy(root().join("flows").join(f), copy.join(f)).unwrap();
    }
    for d in ["lib", "securities", "calendars"] {
        assert!(std::process::Command::new("cp").arg("-r").arg(root().join("flows").join(d)).arg(&copy).status().unwrap().success());
    }
    let flow = copy.join("securities_hotline.ivr");
    let scenario2 = copy.join("replay.test.toml");
    let out = ivr(&["test", "--from-record", calls.to_str().unwrap(), id, "--flow", flow.to_str().unwrap(), "-o", scenario2.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(ivr(&["test", scenario2.to_str().unwrap()]).status.success(), "passes on the copy as it was");
    let text = std::fs::read_to_string(&flow).unwrap();
    assert!(text.contains("key 1 -> quotes"));
    std::fs::write(&flow, text.replacen("key 1 -> quotes", "key 1 -> subscriptions", 1)).unwrap();
    let changed = ivr(&["test", scenario2.to_str().unwrap()]);
    assert!(!changed.status.success(), "fails once the flow changed:\n{}", stdout(&changed));
    assert!(stdout(&changed).contains("subscriptions"), "{}", stdout(&changed));
    let unknown = ivr(&["test", "--from-record", calls.to_str().unwrap(), "no-such-call"]);
    assert!(!unknown.status.success() && stderr(&unknown).contains("no call"), "{}", stderr(&unknown));
}

#[test]
fn cancel_before_answer() {
    let s = serve("cancel", "ring_ms = 3000\n");
    let out = sipp(&s, "uac_cancel.xml", "962588", &["-m", "1"]);
    assert!(out.status.success(), "sipp failed: {}", String::from_utf8_lossy(&out.stdout));
    let recs = records(&s, 1);
    assert_eq!(recs[0]["outcome"], "caller_cancelled");
}

#[test]
fn the_flow_hangs_up_with_bye() {
    let s = serve("server-bye", "flows = [\"tests/e2e/short.ivr\"]\n");
    let out = sipp(&s, "uac_server_bye.xml", "1000", &["-m", "1"]);
    assert!(out.status.success(), "sipp failed: {}", String::from_utf8_lossy(&out.stdout));
    let recs = records(&s, 1);
    assert_eq!(recs[0]["outcome"], "hangup:normal");
}

#[test]
fn twenty_concurrent_calls() {
    let s = serve("twenty", "");
    let out = sipp(&s, "uac_hangup.xml", "962588", &["-m", "20", "-l", "20", "-r", "20"]);
    assert!(out.status.success(), "sipp failed: {}", String::from_utf8_lossy(&out.stdout));
    let recs = records(&s, 20);
    assert_eq!(recs.len(), 20);
    assert!(recs.iter().all(|r| r["outcome"] == "caller_hung_up"));
}

#[test]
fn unknown_numbers_are_not_revealed_and_the_server_keeps_serving_after_garbage() {
    let s = serve("garbage", "");
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut buf = [0u8; 4096];
    // Garbage and a truncated request: dropped or 400.
    sock.send_to(b"\x00\x01\x02 not sip at all", s.sip).unwrap();
    sock.send_to(b"INVITE sip:962588@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:1;rport;branch=z9hG4bK-t\r\nCall-ID: t1\r\n\r\n", s.sip).unwrap();
    let (n, _) = sock.recv_from(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 400"), "{}", String::from_utf8_lossy(&buf[..n]));
    // Oversized: 513.
    let mut big = b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:1;rport;branch=z9hG4bK-big\r\nCall-ID: b\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:x@y>\r\nCSeq: 1 OPTIONS\r\nX-Pad: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 20_000));
    big.extend_from_slice(b"\r\n\r\n");
    sock.send_to(&big, s.sip).unwrap();
    let (n, _) = sock.recv_from(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 513"));
    // Bad SDP: 488.
    let ua = TestUa::new(s.sip);
    let reply = ua.invite("962588", "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 9 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n", "bad-sdp");
    assert!(reply.starts_with("SIP/2.0 488"), "{reply}");
    // A number nobody serves is answered like a real one (no enumeration of
    // numbers), then hung up.
    ua.establish("12345", "unknown-number");
    let bye = ua.final_response();
    assert!(bye.starts_with("BYE "), "{bye}");
    // And a normal call still works.
    let out = sipp(&s, "uac_hangup.xml", "962588", &["-m", "1"]);
    assert!(out.status.success());
}

#[test]
fn rtp_carries_the_welcome_prompt_bit_exact_and_info_dtmf_works() {
    let s = serve("rtp", "");
    let ua = TestUa::new(s.sip);
    let to_tag = ua.establish("962588", "rtp-1");
    // The welcome prompt, as the server encodes it (PCMU), is what arrives.
    let expected = ivr_media::audio::EncodedPrompt::load(&root().join("flows/audio/zh/welcome.wav")).expect("prompt audio (scripts/render-prompts.sh)");
    let mut got = Vec::new();
    let mut stamps = Vec::new();
    let mut buf = [0u8; 2048];
    while got.len() < 50 * 160 {
        let (n, _) = ua.rtp.recv_from(&mut buf).expect("RTP arrives");
        let p = ivr_media::rtp::parse(&buf[..n]).unwrap();
        assert_eq!(p.payload_type, 0);
        assert_eq!(p.payload.len(), 160, "20 ms per packet");
        stamps.push(p.timestamp);
        got.extend_from_slice(p.payload);
    }
    assert_eq!(&got[..], &expected.pcmu[..got.len()], "the first second of audio is the welcome prompt, bit-exact");
    assert!(stamps.windows(2).all(|w| w[1].wrapping_sub(w[0]) == 160), "timestamps advance by 160");
    // Key 1 by SIP INFO reaches the quotes step.
    ua.info("rtp-1", &to_tag, "Signal=1\r\nDuration=160\r\n");
    ua.hears("enter_stock_code");
    ua.bye("rtp-1", &to_tag);
    let recs = records(&s, 1);
    assert_eq!(recs[0]["nodes"][2], "quotes", "{:?}", recs[0]);
}

#[test]
fn a_caller_leaves_a_message_after_the_beep() {
    let s = serve("message", "");
    let ua = TestUa::new(s.sip);
    let to_tag = ua.establish("962588", "msg-1");
    // 4 (messages), then 1 (leave a message), typed over the prompts.
    ua.info("msg-1", &to_tag, "Signal=4\r\n");
    ua.hears("messages_menu");
    ua.info("msg-1", &to_tag, "Signal=1\r\n");
    ua.hears("record_after_beep");
    // Two seconds of "speech" (a 400 Hz tone, PCMU), then # to finish.
    let server_rtp = {
        let mut buf = [0u8; 2048];
        let (_, from) = ua.rtp.recv_from(&mut buf).unwrap();
        from
    };
    let mut pk = ivr_media::rtp::Packetizer::new(42, 0, 1, 1000);
    let mut packet = [0u8; 200];
    paced(Duration::from_millis(20), |f| {
        let frame: Vec<u8> = (0..160)
            .map(|i| ivr_media::g711::ulaw_encode(((f * 160 + i) as f64 * 2.0 * std::f64::consts::PI * 400.0 / 8000.0).sin().mul_add(9000.0, 0.0) as i16))
            .collect();
        let n = pk.write(&frame, 160, &mut packet);
        ua.rtp.send_to(&packet[..n], server_rtp).unwrap();
        f + 1 < 100
    });
    ua.info("msg-1", &to_tag, "Signal=#\r\n");
    // The flow thanks the caller and hangs up.
    let mut buf = [0u8; 8192];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "no BYE from the flow");
        let Ok((n, _)) = ua.sip.recv_from(&mut buf) else { continue };
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        if text.starts_with("BYE ") {
            break;
        }
    }
    let out = ivr(&["messages", "list", "--json", "--data", s.data.to_str().unwrap()]);
    let list: Vec<serde_json::Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(list.len(), 1, "{}", stderr(&out));
    assert_eq!(list[0]["category"], "message");
    assert_eq!(list[0]["caller"], "13800138000");
    let ms = list[0]["duration_ms"].as_i64().unwrap();
    assert!((1_500..=3_500).contains(&ms), "about two seconds recorded, got {ms} ms");
    assert!(s.data.join(list[0]["file"].as_str().unwrap()).is_file());
    let recs = records(&s, 1);
    assert!(recs[0]["nodes"].as_array().unwrap().iter().any(|n| n == "message_saved"), "{:?}", recs[0]);
}

#[test]
fn reload_swaps_flows_for_new_calls_and_refuses_broken_ones() {
    let dir = std::env::temp_dir().join(format!("ivr-reload-flows-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let flow = dir.join("short.ivr");
    std::fs::copy(root().join("tests/e2e/prompts.toml"), dir.join("prompts.toml")).unwrap();
    std::fs::copy(root().join("tests/e2e/short.ivr"), &flow).unwrap();
    let s = serve("reload", &format!("flows = [\"{}\"]\n", flow.display()));
    let data = s.data.to_str().unwrap().to_string();
    let call = |n: usize| {
        let out = sipp(&s, "uac_server_bye.xml", "1000", &["-m", "1"]);
        assert!(out.status.success(), "call {n}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        records(&s, n)[n - 1]["nodes"][0].as_str().unwrap().to_string()
    };
    assert_eq!(call(1), "hello");
    std::fs::write(&flow, std::fs::read_to_string(&flow).unwrap().replace("hello {", "hello_again {").replace("-> hello", "-> hello_again")).unwrap();
    // `ivr reload` returns once the server has answered.
    let ok = ivr(&["reload", "--data", &data]);
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    assert!(stderr(&ok).contains("reloaded its flows"), "{}", stderr(&ok));
    assert_eq!(call(2), "hello_again", "new calls run the reloaded flow");
    std::fs::write(&flow, "step broken {").unwrap();
    let refused = ivr(&["reload", "--data", &data]);
    assert!(!refused.status.success(), "a refused reload fails the command: {}", stderr(&refused));
    assert!(stderr(&refused).contains("refused the reload"), "{}", stderr(&refused));
    assert_eq!(call(3), "hello_again", "a flow that does not compile is refused; the old one stays");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn sip_over_tcp() {
    use std::io::{Read, Write};
    let s = serve("tcp", "");
    let out = sipp(&s, "uac_hangup.xml", "962588", &["-m", "1", "-t", "t1"]);
    assert!(out.status.success(), "sipp over TCP failed: {}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(records(&s, 1)[0]["outcome"], "caller_hung_up");
    // A message announcing a body past the limit: 513, and the connection closes.
    let mut c = std::net::TcpStream::connect(s.sip).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bK-big\r\nCall-ID: big\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:x@y>\r\nCSeq: 1 OPTIONS\r\nContent-Length: 100000\r\n\r\n").unwrap();
    let mut reply = String::new();
    let _ = c.read_to_string(&mut reply);
    assert!(reply.starts_with("SIP/2.0 513"), "{reply}");
    // OPTIONS over TCP, for health checks.
    let mut c = std::net::TcpStream::connect(s.sip).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bK-o\r\nCall-ID: o\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:x@y>\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").unwrap();
    let mut buf = [0u8; 2048];
    let n = c.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 200 OK"));
}

#[test]
fn ipv6_calls() {
    let s = serve_on("::1", "ipv6", "");
    let ua = TestUa::new(s.sip);
    let reply = ua.invite("95588", &ua.sdp(), "v6-1");
    assert!(reply.starts_with("SIP/2.0 200"), "{reply}");
    assert!(reply.contains("c=IN IP6 ::1"), "{reply}");
    let to_tag = to_tag(&reply);
    ua.ack("v6-1", &to_tag);
    let mut buf = [0u8; 2048];
    let (n, from) = ua.rtp.recv_from(&mut buf).expect("RTP over IPv6");
    assert!(from.is_ipv6());
    assert_eq!(ivr_media::rtp::parse(&buf[..n]).unwrap().payload.len(), 160);
    ua.bye("v6-1", &to_tag);
    assert_eq!(records(&s, 1)[0]["dialed"], "95588");
}

#[test]
fn one_server_on_an_ipv4_and_an_ipv6_address() {
    let s = serve_dual("dual");
    let v6: std::net::SocketAddr = format!("[::1]:{}", s.sip.port()).parse().unwrap();
    for (server, call_id, family) in [(s.sip, "dual-4", "IP4 127.0.0.1"), (v6, "dual-6", "IP6 ::1")] {
        let ua = TestUa::new(server);
        let reply = ua.invite("962588", &ua.sdp(), call_id);
        assert!(reply.starts_with("SIP/2.0 200"), "{reply}");
        assert!(reply.contains(&format!("c=IN {family}")), "media on the address family called: {reply}");
        assert!(reply.contains(&format!("Contact: <sip:ivr@{server}>")), "Contact names the address called: {reply}");
        let to_tag = to_tag(&reply);
        ua.ack(call_id, &to_tag);
        let mut buf = [0u8; 2048];
        let (_, from) = ua.rtp.recv_from(&mut buf).expect("RTP");
        assert_eq!(from.is_ipv6(), server.is_ipv6());
        ua.bye(call_id, &to_tag);
    }
    assert_eq!(records(&s, 2).len(), 2);
}

#[test]
fn in_band_dtmf_and_symmetric_rtp_latching() {
    let s = serve("inband", "inband_dtmf = true\nlatch_rtp = true\n");
    let ua = TestUa::new(s.sip);
    let to_tag = ua.establish("962588", "inband-1");
    let mut buf = [0u8; 2048];
    let (_, server_rtp) = ua.rtp.recv_from(&mut buf).unwrap();
    // The caller's RTP comes from another port than its SDP said (a NAT): the
    // server latches onto it. The audio carries the tones of key 1.
    let natted = UdpSocket::bind("127.0.0.1:0").unwrap();
    natted.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut pk = ivr_media::rtp::Packetizer::new(7, 0, 1, 1);
    let mut packet = [0u8; 200];
    paced(Duration::from_millis(20), |f| {
        let frame: Vec<u8> = (0..160)
            .map(|i| {
                let t = (f * 160 + i) as f64 / 8000.0;
                let v = (2.0 * std::f64::consts::PI * 697.0 * t).sin() + (2.0 * std::f64::consts::PI * 1209.0 * t).sin();
                ivr_media::g711::ulaw_encode((v * 8000.0) as i16)
            })
            .collect();
        let n = pk.write(&frame, 160, &mut packet);
        natted.send_to(&packet[..n], server_rtp).unwrap();
        f + 1 < 15
    });
    let (_, from) = natted.recv_from(&mut buf).expect("RTP now comes to the latched address");
    assert_eq!(from, server_rtp);
    // The tone was key 1: the quotes menu answers, at the latched address.
    hears_on(&natted, "enter_stock_code");
    ua.bye("inband-1", &to_tag);
    let recs = records(&s, 1);
    assert_eq!(recs[0]["keys"], "1", "{:?}", recs[0]);
    assert_eq!(recs[0]["nodes"][2], "quotes");
}

#[test]
fn hold_and_unhold_by_reinvite() {
    let s = serve("hold", "");
    let ua = TestUa::new(s.sip);
    let to_tag = ua.establish("962588", "hold-1");
    let mut buf = [0u8; 2048];
    ua.rtp.recv_from(&mut buf).expect("audio before hold");
    // Hold: the caller will only send.
    let cseq = ua.next_cseq();
    ua.request("INVITE", "962588", "hold-1", Some(&to_tag), cseq, Some("application/sdp"), &(ua.sdp() + "a=sendonly\r\n"));
    let ok = ua.final_response();
    assert!(ok.starts_with("SIP/2.0 200") && ok.contains("a=recvonly"), "{ok}");
    ua.request("ACK", "962588", "hold-1", Some(&to_tag), cseq, None, "");
    ua.rtp.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    while ua.rtp.recv_from(&mut buf).is_ok() {} // what was already in flight
    ua.rtp.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    assert!(ua.rtp.recv_from(&mut buf).is_err(), "no audio while on hold");
    // Unhold.
    let cseq = ua.next_cseq();
    ua.request("INVITE", "962588", "hold-1", Some(&to_tag), cseq, Some("application/sdp"), &ua.sdp());
    let ok = ua.final_response();
    assert!(ok.starts_with("SIP/2.0 200") && ok.contains("a=sendrecv"), "{ok}");
    ua.request("ACK", "962588", "hold-1", Some(&to_tag), cseq, None, "");
    ua.rtp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    ua.rtp.recv_from(&mut buf).expect("audio again after unhold");
    ua.bye("hold-1", &to_tag);
}

#[test]
fn sigterm_refuses_new_calls_and_lets_calls_finish() {
    let mut s = serve("drain", "");
    let ua = TestUa::new(s.sip);
    let to_tag = ua.establish("962588", "drain-1");
    let pid = s.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    s.await_ready(503);
    let other = TestUa::new(s.sip);
    let refused = other.invite("962588", &other.sdp(), "drain-2");
    assert!(refused.starts_with("SIP/2.0 503") && refused.contains("Retry-After"), "{refused}");
    let mut buf = [0u8; 2048];
    ua.rtp.recv_from(&mut buf).expect("the call in progress keeps its audio");
    ua.bye("drain-1", &to_tag);
    let status = wait_for("the server to stop after its last call", Duration::from_secs(5), || s.child.try_wait().unwrap());
    assert!(status.success(), "{status}");
    assert_eq!(records(&s, 1).len(), 1);
}

