//! `ivr serve` on the public network, driven from outside with real sockets
//! on loopback: a flood from one address, a stranger's RTP keys, TCP held
//! open or dripped, offers we cannot take, and what real clients and proxies
//! expect of our answers. Each test asserts the figure the protection is for.

mod common;
use common::server::*;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

/// The RTP port our answer names.
fn media_port(reply: &str) -> u16 {
    reply.lines().find_map(|l| l.strip_prefix("m=audio ")).and_then(|r| r.split(' ').next()).and_then(|p| p.parse().ok()).expect("an m=audio line")
}

/// Calls 962588 as `id`, acknowledges the answer; its To tag and the media
/// address the answer names.
fn answered(ua: &TestUa, id: &str) -> (String, SocketAddr) {
    let reply = ua.invite("962588", &ua.sdp(), id);
    assert!(reply.starts_with("SIP/2.0 200"), "{reply}");
    let tag = to_tag(&reply);
    ua.ack(id, &tag);
    (tag, format!("127.0.0.1:{}", media_port(&reply)).parse().unwrap())
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0)
}

fn options(from: &UdpSocket, server: SocketAddr, branch: &str, rport: bool) -> String {
    let me = from.local_addr().unwrap();
    let rport = if rport { ";rport" } else { "" };
    let msg = format!(
        "OPTIONS sip:x@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{branch}{rport}\r\nMax-Forwards: 70\r\nFrom: <sip:a@{me}>;tag=o\r\nTo: <sip:x@{server}>\r\nCall-ID: {branch}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    from.send_to(msg.as_bytes(), server).unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = from.recv_from(&mut buf).expect("an answer to OPTIONS");
    String::from_utf8_lossy(&buf[..n]).to_string()
}

#[test]
fn a_flood_of_invites_from_one_address_does_not_deny_service_to_others() {
    let s = serve("flood", "");
    let server = s.sip;
    let before = rss_kb(s.child.id());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooder = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            // 127.0.0.2 is another source on loopback; never ACKs, never reads.
            let sock = UdpSocket::bind("127.0.0.2:0").unwrap();
            let me = sock.local_addr().unwrap();
            let body = "v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
            let mut sent = 0u64;
            // About 3,000 a second, for at most a minute.
            common::paced(Duration::from_millis(10), |i| {
                for _ in 0..30 {
                    let m = format!(
                        "INVITE sip:962588@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-f{sent}\r\nMax-Forwards: 70\r\nFrom: <sip:f@{me}>;tag=f{sent}\r\nTo: <sip:962588@{server}>\r\nCall-ID: flood-{sent}\r\nCSeq: 1 INVITE\r\nContact: <sip:f@{me}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.send_to(m.as_bytes(), server);
                    sent += 1;
                }
                !stop.load(std::sync::atomic::Ordering::Relaxed) && i < 6_000
            });
            sent
        })
    };
    // Ordinary calls from elsewhere meanwhile: 100 calls at 20 a second.
    let out = sipp(&s, "uac_hangup.xml", "962588", &["-m", "100", "-r", "20", "-l", "40"]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = flooder.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "ordinary calls failed during the flood ({sent} flood INVITEs):\n{stdout}");
    assert!(sent > 5_000, "the flood was real: {sent} INVITEs");
    let recs = records(&s, 100);
    let answered = recs.iter().filter(|r| r["outcome"] == "caller_hung_up").count();
    assert!(answered >= 99, "{answered} of 100 ordinary calls went through");
    let grown = rss_kb(s.child.id()).saturating_sub(before);
    assert!(grown < 64 * 1024, "memory stays bounded under the flood: grew {grown} kB");
    // The server still answers.
    let ua = TestUa::new(s.sip);
    let tag = ua.establish("962588", "after-flood");
    ua.bye("after-flood", &tag);
}

#[test]
fn rtp_keys_from_a_third_party_are_not_key_presses() {
    // On the port shared by calls (the default) and on a port of the call's own.
    for (name, config) in [("stranger", ""), ("stranger-own-port", "rtp_shared_port = 0\n")] {
        strangers_keys_do_nothing(name, config);
    }
}

fn strangers_keys_do_nothing(name: &str, config: &str) {
    let s = serve(name, config);
    let ua = TestUa::new(s.sip);
    let (tag, media) = answered(&ua, "strange");
    let key = rfc4733_key;
    // A stranger on the same host (another port) and one elsewhere press 1.
    for from in ["127.0.0.1:0", "127.0.0.3:0"] {
        let stranger = UdpSocket::bind(from).unwrap();
        let packets = key(1, 100, 8_000, 0xbad);
        // Two packets every 20 ms, as a phone sends an event.
        common::paced(Duration::from_millis(20), |i| {
            for p in packets.iter().skip(2 * i).take(2) {
                stranger.send_to(p, media).unwrap();
            }
            2 * (i + 1) < packets.len()
        });
    }
    // The caller's own key, from the address its SDP gave: the caller hears
    // phone trading (2), never quotes (the strangers' 1).
    for p in key(2, 200, 16_000, 0x600d) {
        ua.rtp.send_to(&p, media).unwrap();
    }
    ua.hears("enter_account");
    ua.bye("strange", &tag);
    let r = &records(&s, 1)[0];
    assert_eq!(r["keys"], "2", "only the caller's key counted: {r}");
}

#[test]
fn calls_sharing_one_rtp_port_hear_their_own_audio_and_only_their_callers_keys_count() {
    let s = serve("shared-rtp", "rtp_shared_port = {shared_rtp}\n");
    let (alice, bob) = (TestUa::new(s.sip), TestUa::new(s.sip));
    let (tag_a, media) = answered(&alice, "shared-a");
    let (tag_b, media_b) = answered(&bob, "shared-b");
    assert_eq!(media, media_b, "both answered on the shared port");
    let tags = [tag_a, tag_b];
    // Each caller hears the menu on its own address.
    alice.hears("main_menu");
    bob.hears("main_menu");
    let key = |k, seq, ssrc| rfc4733_key(k, seq, 16_000, ssrc);
    // A stranger presses 1 at the shared port: nobody's key.
    let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
    for p in key(1, 100, 0xbad) {
        stranger.send_to(&p, media).unwrap();
    }
    // Alice presses 2: her call goes to phone trading, bob's stays in the menu.
    for p in key(2, 200, 0xa11ce) {
        alice.rtp.send_to(&p, media).unwrap();
    }
    alice.hears("enter_account");
    // Bob's key is his: quotes.
    for p in key(1, 300, 0xb0b) {
        bob.rtp.send_to(&p, media).unwrap();
    }
    bob.hears("enter_stock_code");
    alice.bye("shared-a", &tags[0]);
    bob.bye("shared-b", &tags[1]);
    let recs = records(&s, 2);
    let keys = |id: &str| recs.iter().find(|r| r["call_id"] == id).map(|r| r["keys"].clone()).expect("a record");
    assert_eq!(keys("shared-a"), "2", "{recs:?}");
    assert_eq!(keys("shared-b"), "1", "{recs:?}");
}

#[test]
fn a_caller_whose_media_moves_is_obeyed_only_from_its_new_address_on_the_shared_port() {
    let s = serve("shared-move", "");
    let ua = TestUa::new(s.sip);
    let (tag, media) = answered(&ua, "moving");
    ua.hears("main_menu");
    // The caller's media moves to another port (a re-INVITE).
    let moved = UdpSocket::bind("127.0.0.1:0").unwrap();
    moved.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let sdp = ua.sdp().replace(&format!("m=audio {} ", ua.rtp.local_addr().unwrap().port()), &format!("m=audio {} ", moved.local_addr().unwrap().port()));
    let cseq = ua.next_cseq();
    ua.request("INVITE", "962588", "moving", Some(&tag), cseq, Some("application/sdp"), &sdp);
    let answer = ua.final_response();
    assert!(answer.starts_with("SIP/2.0 200"), "{answer}");
    ua.request("ACK", "962588", "moving", Some(&tag), cseq, None, "");
    // The old address is nobody now: its key does nothing. From the new one,
    // the caller's key is obeyed, and the prompt is heard there.
    for p in rfc4733_key(1, 100, 8_000, 0x01d) {
        ua.rtp.send_to(&p, media).unwrap();
    }
    for p in rfc4733_key(2, 200, 16_000, 0x0e3) {
        moved.send_to(&p, media).unwrap();
    }
    hears_on(&moved, "enter_account");
    ua.bye("moving", &tag);
    assert_eq!(records(&s, 1)[0]["keys"], "2");
}

#[test]
fn a_strangers_flood_at_the_shared_rtp_port_does_not_drown_the_callers_keys() {
    let s = serve("shared-flood", "");
    let ua = TestUa::new(s.sip);
    let (tag, media) = answered(&ua, "flooded");
    ua.hears("main_menu");
    // Another address sends RTP-looking junk (a key press each: the most
    // expensive thing to look at) at 100,000 packets a second for a second.
    let flooding = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let flood = {
        let (flooding, sent) = (flooding.clone(), sent.clone());
        std::thread::spawn(move || {
            let stranger = UdpSocket::bind("127.0.0.3:0").unwrap();
            let junk = rfc4733_key(1, 7, 8_000, 0xbad);
            common::paced(Duration::from_millis(10), |i| {
                for n in 0..1_000 {
                    if stranger.send_to(&junk[n % junk.len()], media).is_ok() {
                        sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                flooding.load(std::sync::atomic::Ordering::Relaxed) && i < 300
            });
        })
    };
    // In the thick of it the caller presses 2, and it is obeyed.
    common::wait_for("the flood under way", Duration::from_secs(10), || (sent.load(std::sync::atomic::Ordering::Relaxed) >= 30_000).then_some(()));
    for p in rfc4733_key(2, 200, 16_000, 0x600d) {
        ua.rtp.send_to(&p, media).unwrap();
    }
    ua.hears("enter_account");
    assert!(!flood.is_finished(), "the key was heard while the flood went on");
    flooding.store(false, std::sync::atomic::Ordering::Relaxed);
    flood.join().unwrap();
    ua.bye("flooded", &tag);
    assert_eq!(records(&s, 1)[0]["keys"], "2", "the stranger's keys never counted");
}

#[test]
fn tcp_is_capped_per_source_and_in_all_and_udp_calls_work_when_it_is_exhausted() {
    let s = serve("tcp-caps", "tcp_max_connections = 6\ntcp_max_per_source = 3\n");
    let works = |c: &mut TcpStream, id: &str| -> bool {
        let me = c.local_addr().unwrap();
        let m = format!("OPTIONS sip:x@{} SIP/2.0\r\nVia: SIP/2.0/TCP {me};branch=z9hG4bK-{id}\r\nMax-Forwards: 70\r\nFrom: <sip:a@{me}>;tag=t\r\nTo: <sip:x@y>\r\nCall-ID: {id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n", s.sip);
        if c.write_all(m.as_bytes()).is_err() {
            return false;
        }
        let mut buf = [0u8; 2048];
        matches!(c.read(&mut buf), Ok(n) if n > 0 && buf.starts_with(b"SIP/2.0 200"))
    };
    let mut held = Vec::new();
    for i in 0..3 {
        let mut c = tcp_from("127.0.0.1", s.sip);
        assert!(works(&mut c, &format!("a{i}")), "connection {i} from one address");
        held.push(c);
    }
    let mut fourth = tcp_from("127.0.0.1", s.sip);
    assert!(!works(&mut fourth, "a3"), "a fourth connection from the same address is closed");
    for i in 0..3 {
        let mut c = tcp_from("127.0.0.5", s.sip);
        assert!(works(&mut c, &format!("b{i}")), "another address has its own share");
        held.push(c);
    }
    let mut seventh = tcp_from("127.0.0.6", s.sip);
    assert!(!works(&mut seventh, "c0"), "past the total, every new connection is closed");
    // TCP is exhausted; calls over UDP go on.
    let ua = TestUa::new(s.sip);
    let tag = ua.establish("962588", "udp-while-tcp-full");
    ua.bye("udp-while-tcp-full", &tag);
    // A held connection closing frees its place.
    drop(held.pop());
    common::wait_for("a freed place taken again", Duration::from_secs(5), || works(&mut tcp_from("127.0.0.6", s.sip), "c1").then_some(()));
}

/// A TCP connection to `server` from the loopback address `ip`.
fn tcp_from(ip: &str, server: SocketAddr) -> TcpStream {
    let c = bind_connect(ip, server);
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    c
}

fn bind_connect(ip: &str, to: SocketAddr) -> TcpStream {
    use std::os::fd::FromRawFd;
    // SAFETY: a plain socket/bind/connect sequence on a descriptor we own.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0);
        let local: std::net::Ipv4Addr = ip.parse().unwrap();
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_addr.s_addr = u32::from_ne_bytes(local.octets());
        assert_eq!(libc::bind(fd, &sa as *const _ as *const libc::sockaddr, std::mem::size_of::<libc::sockaddr_in>() as u32), 0, "bind {ip}");
        let SocketAddr::V4(to) = to else { panic!("IPv4 only") };
        let mut ra: libc::sockaddr_in = std::mem::zeroed();
        ra.sin_family = libc::AF_INET as libc::sa_family_t;
        ra.sin_port = to.port().to_be();
        ra.sin_addr.s_addr = u32::from_ne_bytes(to.ip().octets());
        assert_eq!(libc::connect(fd, &ra as *const _ as *const libc::sockaddr, std::mem::size_of::<libc::sockaddr_in>() as u32), 0, "connect");
        TcpStream::from_raw_fd(fd)
    }
}

#[test]
fn a_message_dripped_a_byte_at_a_time_is_cut_off_at_its_deadline() {
    let s = serve("tcp-drip", "tcp_message_deadline_s = 2\n");
    let mut c = bind_connect("127.0.0.1", s.sip);
    c.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let msg = b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bK-drip\r\nMax-Forwards: 70\r\nCall-ID: drip\r\nCSeq: 1 OPTIONS\r\n\r\n";
    let started = Instant::now();
    let mut closed_after = None;
    // One byte every 50 ms (plus a read's 50 ms): the whole message would take 13 s.
    common::paced(Duration::from_millis(50), |i| {
        let mut buf = [0u8; 64];
        if c.write_all(&msg[i..=i]).is_err() || matches!(c.read(&mut buf), Ok(0)) {
            closed_after = Some(started.elapsed());
            return false;
        }
        i + 1 < msg.len()
    });
    let closed_after = closed_after.expect("the server closed the drip before it finished");
    assert!(closed_after < Duration::from_secs(8), "closed after {closed_after:?}, not when the drip ended");
}

#[test]
fn offers_we_cannot_take_get_488_and_our_answers_follow_the_rfcs() {
    let s = serve("rfc3264", "server_header = \"\"\n");
    let ua = TestUa::new(s.sip);
    // RFC 3264: a declined (port 0) audio stream, and audio over SRTP only.
    let declined = ua.sdp().replace(&format!("m=audio {} ", ua.rtp.local_addr().unwrap().port()), "m=audio 0 ");
    assert!(ua.invite("962588", &declined, "port0").starts_with("SIP/2.0 488"));
    let srtp = ua.sdp().replace("RTP/AVP", "RTP/SAVP");
    assert!(ua.invite("962588", &srtp, "savp").starts_with("SIP/2.0 488"));
    // An offer with video beside audio: one m= line answered per offered line.
    let with_video = format!("{}m=video 5000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n", ua.sdp());
    let reply = ua.invite("962588", &with_video, "video");
    assert!(reply.starts_with("SIP/2.0 200"), "{reply}");
    assert!(reply.contains("m=video 0 "), "video declined in the answer: {reply}");
    let tag = to_tag(&reply);
    ua.ack("video", &tag);
    ua.bye("video", &tag);
    // OPTIONS out of a dialog: 200 with a To tag (RFC 3261 §8.2.6.2), no
    // Server header (configured out), rport filled in (RFC 3581 §4).
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let r = options(&sock, s.sip, "opt1", true);
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    assert!(r.lines().any(|l| l.starts_with("To:") && l.contains("tag=")), "{r}");
    assert!(!r.lines().any(|l| l.starts_with("Server:") || l.starts_with("User-Agent:")), "{r}");
    let port = sock.local_addr().unwrap().port();
    assert!(r.lines().any(|l| l.starts_with("Via:") && l.contains(&format!("rport={port}"))), "{r}");
    // The default server names itself.
    let d = serve("server-header", "");
    assert!(options(&sock, d.sip, "opt2", false).lines().any(|l| l == "Server: ivr/0.1"));
}

#[test]
fn two_callers_using_the_same_branch_each_get_their_own_call() {
    let s = serve("same-branch", "");
    let invite = |sock: &UdpSocket, call_id: &str| -> String {
        let me = sock.local_addr().unwrap();
        let body = format!("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\n", me.port() + 2);
        let m = format!(
            "INVITE sip:962588@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-same\r\nMax-Forwards: 70\r\nFrom: <sip:a@{me}>;tag={call_id}\r\nTo: <sip:962588@{server}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:a@{me}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len(),
            server = s.sip
        );
        sock.send_to(m.as_bytes(), s.sip).unwrap();
        let mut buf = [0u8; 4096];
        loop {
            let (n, _) = sock.recv_from(&mut buf).expect("an answer");
            let r = String::from_utf8_lossy(&buf[..n]).to_string();
            if !r.starts_with("SIP/2.0 1") {
                return r;
            }
        }
    };
    let (a, b) = (UdpSocket::bind("127.0.0.1:0").unwrap(), UdpSocket::bind("127.0.0.7:0").unwrap());
    a.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    b.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    // Two phones whose INVITEs carry the same branch (RFC 3261 §17.2.3:
    // branch, sent-by and method together identify a transaction).
    let ra = invite(&a, "first-call");
    let rb = invite(&b, "second-call");
    assert!(ra.starts_with("SIP/2.0 200"), "{ra}");
    assert!(rb.starts_with("SIP/2.0 200") && rb.contains("Call-ID: second-call"), "the second is its own call, not the first's answer resent:\n{rb}");
}

#[test]
fn a_call_whose_caller_sends_no_media_is_ended_and_one_that_does_is_not() {
    let s = serve("rtp-timeout", "rtp_timeout_s = 2\n");
    // Silent: its SDP could as well have pointed our audio at someone else.
    let quiet = TestUa::new(s.sip);
    quiet.establish("962588", "silent-caller");
    // Talking: PCMU silence every 20 ms from the address its SDP gave.
    let talker = TestUa::new(s.sip);
    let reply = talker.invite("962588", &talker.sdp(), "talking-caller");
    let tag = to_tag(&reply);
    talker.ack("talking-caller", &tag);
    let media: SocketAddr = format!("127.0.0.1:{}", media_port(&reply)).parse().unwrap();
    let mut seq = 0u16;
    common::paced(Duration::from_millis(20), |i| {
        let mut p = vec![0x80, 0];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&(seq as u32 * 160).to_be_bytes());
        p.extend_from_slice(&0x4242u32.to_be_bytes());
        p.extend(std::iter::repeat_n(0xffu8, 160));
        talker.rtp.send_to(&p, media).unwrap();
        seq = seq.wrapping_add(1);
        i < 250 // 5 s
    });
    talker.bye("talking-caller", &tag);
    let recs = records(&s, 2);
    let by = |id: &str| recs.iter().find(|r| r["call_id"] == id).cloned().unwrap_or_else(|| panic!("{recs:#?}"));
    assert_eq!(by("silent-caller")["outcome"], "no_media");
    assert_eq!(by("talking-caller")["outcome"], "caller_hung_up", "a caller who sends audio is kept");
}
