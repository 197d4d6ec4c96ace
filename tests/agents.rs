//! Agent queues end to end: `ivr serve` with agents configured, agent phones
//! played by sipp (UAS, echoing the caller's audio back with -rtp_echo),
//! callers played by sipp (UAC, RFC 4733 keys from its pcaps) and by a Rust
//! user agent that checks the audio relayed through the bridge; the admin API
//! through `ivr agents` / `ivr agent`; REGISTER with digest authentication.

mod common;
use common::server::*;
use common::*;

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PCAPS: &str = "/usr/share/sip-tester";

/// A free TCP port on loopback for the admin API.
fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// An agent phone's sipp, killed if the test fails before it finishes.
struct Phone(Option<Child>);

impl Drop for Phone {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// An agent phone: sipp as UAS on its own port, answering one call.
fn agent_phone(scenario: &str, extra: &[&str]) -> (Phone, u16) {
    let (port, media) = sipp_ports();
    let sf = root().join("tests/sipp").join(scenario);
    let child = Command::new("sipp")
        .args(["-sf", sf.to_str().unwrap(), "-i", "127.0.0.1", "-p", &port.to_string(), "-mp", &media.to_string(), "-m", "1", "-nostdin", "-timeout", "40s"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sipp (apt-get install sip-tester)");
    (Phone(Some(child)), port)
}

fn finished(mut phone: Phone) -> std::process::Output {
    phone.0.take().unwrap().wait_with_output().unwrap()
}

fn config(agents: &[(&str, u16)], admin: u16) -> String {
    let mut c = format!("flows = [\"tests/agents/agents.ivr\"]\nadmin = \"127.0.0.1:{admin}\"\n\n");
    for (id, port) in agents {
        c.push_str(&format!(
            "[[agents]]\nid = \"{id}\"\nname = \"Agent {id}\"\nskills = [[\"general\", 5]]\naddress = \"sip:{id}@127.0.0.1:{port}\"\nauto_login = true\n\n"
        ));
    }
    c.push_str("[[agents]]\nid = \"1003\"\nskills = [[\"general\", 3]]\npassword = \"s3cret-1003\"\n\n");
    c.push_str("[[queues]]\nname = \"general\"\nring_ms = 5000\nwrap_up_ms = 1000\nannounce_every_ms = 0\n\n");
    c.push_str("[[tiers]]\nname = \"normal\"\npriority = 0\n\n[[tiers]]\nname = \"vip\"\npriority = 10\n");
    c
}

fn lines(server: &Server, file: &str, want: usize) -> Vec<serde_json::Value> {
    wait_for(&format!("{want} lines in {file}"), Duration::from_secs(10), || {
        let text = std::fs::read_to_string(server.data.join(file)).unwrap_or_default();
        let recs: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        (recs.len() >= want).then_some(recs)
    })
}

/// The admin API's view of the agents, once `agent` is in `state`.
fn agent_in(admin: &str, agent: &str, state: &str) -> serde_json::Value {
    wait_for(&format!("agent {agent} {state}"), Duration::from_secs(10), || {
        let v: serde_json::Value = serde_json::from_str(&stdout(&ivr(&["agents", "--json", "--admin", admin]))).unwrap_or_default();
        v["agents"].as_array()?.iter().any(|a| a["id"] == agent && a["state"] == state).then_some(v)
    })
}

#[test]
fn a_caller_queues_is_bridged_to_an_agent_and_rates_the_call_after() {
    let (phone, phone_port) = agent_phone("uas_agent.xml", &["-rtp_echo"]);
    let admin = free_tcp_port();
    let s = serve("agents-queue", &config(&[("1001", phone_port)], admin));
    let key = |k: &str| format!("{PCAPS}/dtmf_2833_{k}.pcap");
    let out = sipp(&s, "uac_agent.xml", "7001", &["-m", "1", "-key", "key0", &key("0"), "-key", "key4", &key("4")]);
    assert!(out.status.success(), "caller sipp failed: {}", String::from_utf8_lossy(&out.stdout));
    let agent = finished(phone);
    assert!(agent.status.success(), "the agent phone did not get a proper call: {}", String::from_utf8_lossy(&agent.stdout));

    let call = &records(&s, 1)[0];
    let nodes: Vec<&str> = call["nodes"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
    assert_eq!(nodes, ["welcome", "main_menu", "to_agent", "survey", "survey_done", "goodbye"], "{call}");
    let h = &call["handoffs"][0];
    assert_eq!((h["kind"].as_str(), h["target"].as_str(), h["outcome"].as_str(), h["agent"].as_str()), (Some("queue"), Some("general"), Some("served"), Some("1001")), "{call}");
    assert!(h["talk_ms"].as_u64().unwrap() >= 2_500, "the agent talked about 3 s: {h}");
    assert_eq!(call["survey_score"], "4");
    assert_eq!(call["keys"], "04");

    // The ACD's own record, complete once wrap-up is over.
    let q = &lines(&s, "queue.jsonl", 1)[0];
    assert_eq!((q["queue"].as_str(), q["result"].as_str(), q["agent"].as_str()), (Some("general"), Some("answered"), Some("1001")), "{q}");
    assert_eq!(q["call_id"], call["call_id"]);
    assert!(q["waited_ms"].as_u64().unwrap() < 2_000 && q["wrap_up_ms"].as_u64().unwrap() >= 1_000, "{q}");
    let states: Vec<String> = lines(&s, "agents.jsonl", 4).iter().filter(|r| r["agent"] == "1001").map(|r| r["state"].as_str().unwrap().to_string()).collect();
    assert_eq!(states, ["ready", "ringing", "talking", "wrap_up"]);

    // The day's report reads the same records.
    let out = ivr(&["report", "--data", s.data.to_str().unwrap(), "--tz", "UTC", "--date", &utc_date_days_ago(1), "--days", "3", "--json"]);
    let r: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap_or_default();
    assert_eq!((r["ivr"]["calls"].as_u64(), r["all_queues"]["answered"].as_u64(), r["survey"]["answers"].as_u64()), (Some(1), Some(1), Some(1)), "{r}");
    assert_eq!(r["agents"][0]["agent"], "1001");
    assert_eq!(r["agents"][0]["calls"], 1);
}

/// Sends RTP with a recognisable payload and counts what comes back.
fn talk(ua: &TestUa, to: SocketAddr, until_quiet_after: usize, max: Duration) -> usize {
    let mut seq: u16 = 0;
    let mut echoed = 0;
    let mut last_echo = Instant::now();
    let start = Instant::now();
    let mut buf = [0u8; 2048];
    while start.elapsed() < max {
        seq = seq.wrapping_add(1);
        let mut p = vec![0x80, 0, (seq >> 8) as u8, seq as u8, 0, 0, ((seq as u32 * 160) >> 8) as u8, (seq as u32 * 160) as u8, 0, 0, 0x77, 0x77];
        p.extend(std::iter::repeat_n(0x2a, 160));
        ua.rtp.send_to(&p, to).unwrap();
        // Receive for the rest of this 20 ms.
        let tick = Instant::now();
        while let Some(left) = Duration::from_millis(20).checked_sub(tick.elapsed()).filter(|d| !d.is_zero()) {
            ua.rtp.set_read_timeout(Some(left)).unwrap();
            let Ok((n, _)) = ua.rtp.recv_from(&mut buf) else { break };
            if n == 172 && buf[12..n].iter().all(|&b| b == 0x2a) {
                echoed += 1;
                last_echo = Instant::now();
            }
        }
        if echoed >= until_quiet_after && last_echo.elapsed() > Duration::from_millis(500) {
            break;
        }
    }
    echoed
}

#[test]
fn audio_and_keys_cross_the_bridge_and_the_admin_api_sees_it() {
    let (phone, phone_port) = agent_phone("uas_agent.xml", &["-rtp_echo"]);
    let admin = free_tcp_port();
    let s = serve("agents-media", &config(&[("1001", phone_port)], admin));
    let ua = TestUa::new(s.sip);
    let reply = ua.invite("7002", &ua.sdp(), "bridge-1");
    assert!(reply.starts_with("SIP/2.0 200"), "{reply}");
    let tag = to_tag(&reply);
    ua.ack("bridge-1", &tag);
    let port: u16 = reply.lines().find_map(|l| l.strip_prefix("m=audio ")).and_then(|l| l.split(' ').next()).unwrap().parse().unwrap();
    let media: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    ua.info("bridge-1", &tag, "Signal=0\r\nDuration=160\r\n");
    // While bridged, the wallboard shows the agent talking.
    let state = agent_in(&format!("127.0.0.1:{admin}"), "1001", "talking");
    assert_eq!(state["queues"][0]["talking"], 1);
    // What the caller says reaches the agent and (echoed) comes back.
    let echoed = talk(&ua, media, 50, Duration::from_secs(8));
    assert!(echoed >= 50, "only {echoed} packets came back through the bridge");
    // The agent hung up: the flow asks for the score; 5, then goodbye.
    ua.info("bridge-1", &tag, "Signal=5\r\nDuration=160\r\n");
    assert!(finished(phone).status.success());
    let call = &records(&s, 1)[0];
    assert_eq!(call["survey_score"], "5", "{call}");
    assert_eq!(call["handoffs"][0]["priority"], 10, "the VIP number queues at priority 10");
    // The table view, and the wallboard (two screens, a second apart).
    let table = stdout(&ivr(&["agents", "--admin", &format!("127.0.0.1:{admin}")]));
    assert!(table.contains("1001") && table.contains("general") && table.contains("longest_idle"), "{table}");
    let board = stdout(&ivr(&["agents", "--admin", &format!("127.0.0.1:{admin}"), "--watch", "1", "--count", "2"]));
    assert_eq!(board.matches("SL(20s)").count(), 2, "{board}");
    assert!(board.contains("general"), "{board}");
    // The KPIs count the call once the agent's wrap-up (1 s) is over.
    let kpi = wait_for("the answered call in /kpi", Duration::from_secs(5), || Some(admin_get(admin, "/kpi")).filter(|k| k["all"]["answered"] == 1));
    assert_eq!(kpi["queues"]["general"]["service_level"], 100.0, "{kpi}");
}

/// A plain HTTP GET of the admin API.
fn admin_get(admin: u16, path: &str) -> serde_json::Value {
    admin_http(admin, &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{admin}\r\n\r\n"))
}

fn admin_post(admin: u16, path: &str, body: &str) -> serde_json::Value {
    admin_http(admin, &format!("POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{admin}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()))
}

fn admin_http(admin: u16, request: &str) -> serde_json::Value {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", admin)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap()
}

#[test]
fn direct_dial_by_work_number_ready_and_paused() {
    let (phone, phone_port) = agent_phone("uas_agent_direct.xml", &[]);
    let admin = free_tcp_port();
    let s = serve("agents-direct", &config(&[("1002", phone_port)], admin));
    let key8 = format!("{PCAPS}/dtmf_2833_8.pcap");
    let key3 = format!("{PCAPS}/dtmf_2833_3.pcap");
    let out = sipp(&s, "uac_agent.xml", "7001", &["-m", "1", "-key", "key0", &key8, "-key", "key4", &key3]);
    assert!(out.status.success(), "caller sipp failed: {}", String::from_utf8_lossy(&out.stdout));
    assert!(finished(phone).status.success(), "agent 1002's phone was not called");
    let call = &records(&s, 1)[0];
    let h = &call["handoffs"][0];
    assert_eq!((h["kind"].as_str(), h["target"].as_str(), h["outcome"].as_str()), (Some("agent"), Some("1002"), Some("served")), "{call}");
    assert_eq!(call["survey_score"], "3");

    // Paused by the CLI: the flow hears `busy`.
    let o = ivr(&["agent", "pause", "1002", "--reason", "training", "--admin", &format!("127.0.0.1:{admin}")]);
    assert!(stdout(&o).contains("agent 1002: not_ready (training)") || stdout(&o).contains("agent 1002: wrap_up"), "{}{}", stdout(&o), stderr(&o));
    // Wrap-up ends; then the pause applies.
    agent_in(&format!("127.0.0.1:{admin}"), "1002", "not_ready");
    let ua = TestUa::new(s.sip);
    let tag = ua.establish("7001", "direct-busy");
    ua.info("direct-busy", &tag, "Signal=8\r\nDuration=160\r\n");
    let recs = records(&s, 2);
    let h = &recs[1]["handoffs"][0];
    assert_eq!((h["target"].as_str(), h["outcome"].as_str()), (Some("1002"), Some("busy")), "{}", recs[1]);
    // Unknown agents and actions are clear errors.
    let o = ivr(&["agent", "ready", "9999", "--admin", &format!("127.0.0.1:{admin}")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no agent has work number 9999"), "{}", stderr(&o));
}

#[test]
fn agents_log_in_by_register_with_digest_authentication() {
    let admin = free_tcp_port();
    let s = serve("agents-register", &config(&[], admin));
    let phone = UdpSocket::bind("127.0.0.1:0").unwrap();
    phone.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let me = phone.local_addr().unwrap();
    let register_for = |n: u32, auth: Option<String>, expires: u32| {
        let auth = auth.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
        let msg = format!(
            "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-reg{n}\r\nMax-Forwards: 70\r\nFrom: <sip:1003@127.0.0.1>;tag=r\r\n\
To: <sip:1003@127.0.0.1>\r\nCall-ID: reg-1003\r\nCSeq: {n} REGISTER\r\nContact: <sip:1003@phone.invalid:5099>\r\nExpires: {expires}\r\n{auth}Content-Length: 0\r\n\r\n"
        );
        phone.send_to(msg.as_bytes(), s.sip).unwrap();
        let mut buf = [0u8; 4096];
        let (n, _) = phone.recv_from(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).to_string()
    };
    let register = |n: u32, auth: Option<String>| register_for(n, auth, 600);
    let challenge = register(1, None);
    assert!(challenge.starts_with("SIP/2.0 401"), "{challenge}");
    let nonce = challenge.split("nonce=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    // Each use of a nonce counts up (nc): the same Authorization twice is a replay.
    let auth_with = |nonce: &str, password: &str, cnonce: &str, nc: u32| ivr_sip::digest::authorization_nc("1003", "ivr", password, "REGISTER", "sip:127.0.0.1", nonce, cnonce, nc);
    assert!(register(2, Some(auth_with(&nonce, "guess", "c1", 1))).starts_with("SIP/2.0 403"));
    // A wrong password spends the nonce: the phone is challenged again.
    let again = register(6, Some(auth_with(&nonce, "s3cret-1003", "c1", 2)));
    assert!(again.starts_with("SIP/2.0 401"), "{again}");
    let nonce = again.split("nonce=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let auth = |password: &str, cnonce: &str, nc: u32| auth_with(&nonce, password, cnonce, nc);
    let too_brief = register_for(4, Some(auth("s3cret-1003", "c3", 1)), 30);
    assert!(too_brief.starts_with("SIP/2.0 423") && too_brief.contains("Min-Expires: 60"), "{too_brief}");
    let right = auth("s3cret-1003", "c2", 2);
    let ok = register(3, Some(right.clone()));
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    assert!(ok.contains("<sip:1003@phone.invalid:5099>;expires=600"), "{ok}");
    // A captured REGISTER sent again (a new transaction, the same credentials) is refused.
    let replayed = register(5, Some(right));
    assert!(replayed.starts_with("SIP/2.0 401"), "a replay is challenged afresh: {replayed}");
    let state = stdout(&ivr(&["agents", "--admin", &format!("127.0.0.1:{admin}"), "--json"]));
    let v: serde_json::Value = serde_json::from_str(&state).unwrap();
    let a = v["agents"].as_array().unwrap().iter().find(|a| a["id"] == "1003").unwrap();
    assert_eq!((a["state"].as_str(), a["registered"].as_bool()), (Some("ready"), Some(true)), "{a}");
    // A caller queues: the INVITE goes to where the phone registered from
    // (through any NAT), its Request-URI to the registered contact.
    let ua = TestUa::new(s.sip);
    let tag = ua.establish("7001", "to-registered");
    ua.info("to-registered", &tag, "Signal=0\r\nDuration=160\r\n");
    let mut buf = [0u8; 8192];
    let invite = loop {
        let (n, _) = phone.recv_from(&mut buf).expect("the agent's phone is rung");
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        if text.starts_with("INVITE ") {
            break text;
        }
    };
    assert!(invite.starts_with("INVITE sip:1003@phone.invalid:5099 SIP/2.0"), "{invite}");
    // The password never reaches the logs or the records.
    for f in ["calls.jsonl", "queue.jsonl", "agents.jsonl"] {
        assert!(!std::fs::read_to_string(s.data.join(f)).unwrap_or_default().contains("s3cret"));
    }
}

#[test]
fn a_waiting_caller_hears_music_leaves_by_key_and_a_caller_who_hangs_up_ends_the_agent_leg() {
    let (phone, phone_port) = agent_phone("uas_agent_caller_hangs_up.xml", &[]);
    let admin = free_tcp_port();
    let cfg = config(&[("1001", phone_port)], admin).replace("announce_every_ms = 0", "announce_every_ms = 0\nleave_key = \"*\"");
    let s = serve("agents-leave", &cfg);
    let admin_at = format!("127.0.0.1:{admin}");
    assert!(ivr(&["agent", "pause", "1001", "--reason", "lunch", "--admin", &admin_at]).status.success());

    // Nobody ready: the caller waits with music on hold, then presses *.
    let ua = TestUa::new(s.sip);
    let tag = ua.establish("7001", "leave-1");
    ua.info("leave-1", &tag, "Signal=0\r\nDuration=160\r\n");
    // Queued (the event), then listened to.
    wait_for("the caller queued", Duration::from_secs(5), || {
        let state: serde_json::Value = serde_json::from_str(&stdout(&ivr(&["agents", "--json", "--admin", &admin_at]))).unwrap_or_default();
        (state["queues"][0]["waiting"] == 1).then_some(())
    });
    let mut buf = [0u8; 2048];
    let mut loud = 0;
    for _ in 0..100 {
        let (n, _) = ua.rtp.recv_from(&mut buf).unwrap();
        let peak = buf[12..n].iter().map(|&b| ivr_media::g711::ulaw_decode(b).unsigned_abs()).max().unwrap_or(0);
        if peak > 1_000 {
            loud += 1;
        }
    }
    assert!(loud > 25, "music on hold, not silence: {loud} of 100 packets had sound");
    let state: serde_json::Value = serde_json::from_str(&stdout(&ivr(&["agents", "--json", "--admin", &admin_at]))).unwrap();
    assert_eq!(state["queues"][0]["waiting"], 1, "{state}");
    assert_eq!(state["queues"][0]["callers"][0]["call_id"], "leave-1");
    // A supervisor raises the caller's priority; the queue re-ranks at once.
    let raised = admin_post(admin, "/calls/leave-1/priority", r#"{"priority": 10}"#);
    assert_eq!(raised["priority"], 10, "{raised}");
    assert_eq!(admin_get(admin, "/queues")[0]["callers"][0]["priority"], 10);
    ua.info("leave-1", &tag, "Signal=*\r\nDuration=160\r\n");
    let recs = records(&s, 1);
    assert_eq!(recs[0]["handoffs"][0]["outcome"], "left", "{}", recs[0]);

    // Ready again: the next caller is bridged, then hangs up; the agent's
    // phone gets a BYE and the agent goes to wrap-up.
    assert!(ivr(&["agent", "ready", "1001", "--admin", &admin_at]).status.success());
    let ua = TestUa::new(s.sip);
    let tag = ua.establish("7001", "hangup-1");
    ua.info("hangup-1", &tag, "Signal=0\r\nDuration=160\r\n");
    agent_in(&admin_at, "1001", "talking");
    ua.bye("hangup-1", &tag);
    let agent = finished(phone);
    assert!(agent.status.success(), "the agent's phone did not get the BYE: {}", String::from_utf8_lossy(&agent.stdout));
    let recs = records(&s, 2);
    let h = &recs[1]["handoffs"][0];
    assert_eq!((h["outcome"].as_str(), h["agent"].as_str(), recs[1]["outcome"].as_str()), (Some("served"), Some("1001"), Some("caller_hung_up")), "{}", recs[1]);
    let q = lines(&s, "queue.jsonl", 2);
    assert_eq!(q.iter().map(|r| r["result"].as_str().unwrap()).collect::<Vec<_>>(), ["left", "answered"]);
}

#[test]
fn transfer_calls_the_number_through_the_gateway_and_bridges() {
    let (gateway, gw_port) = agent_phone("uas_agent_direct.xml", &["-rtp_echo"]);
    let admin = free_tcp_port();
    // (Top-level keys before the tables.)
    let cfg = format!("transfer_gateway = \"sip:{{number}}@127.0.0.1:{gw_port}\"\n") + &config(&[], admin);
    let s = serve("agents-transfer", &cfg);
    let ua = TestUa::new(s.sip);
    let tag = ua.establish("7001", "xfer-1");
    ua.info("xfer-1", &tag, "Signal=9\r\nDuration=160\r\n");
    // The far end answers, talks 1.5 s and hangs up; then the server hangs up on us.
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    let bye = loop {
        assert!(Instant::now() < deadline, "no BYE after the transfer ended");
        let Ok((n, from)) = ua.sip.recv_from(&mut buf) else { continue };
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        if text.starts_with("BYE ") {
            let ok = text.split("\r\n").filter(|l| ["Via:", "From:", "To:", "Call-ID:", "CSeq:"].iter().any(|h| l.starts_with(h))).collect::<Vec<_>>().join("\r\n");
            ua.sip.send_to(format!("SIP/2.0 200 OK\r\n{ok}\r\nContent-Length: 0\r\n\r\n").as_bytes(), from).unwrap();
            break text;
        }
    };
    assert!(bye.contains("Call-ID: xfer-1"));
    let g = finished(gateway);
    assert!(g.status.success(), "the gateway was not called: {}", String::from_utf8_lossy(&g.stdout));
    let call = &records(&s, 1)[0];
    assert_eq!(call["outcome"], "transferred:02195588", "{call}");
    let h = &call["handoffs"][0];
    assert_eq!((h["kind"].as_str(), h["target"].as_str(), h["outcome"].as_str()), (Some("transfer"), Some("02195588"), Some("served")), "{call}");
}

/// The UTC date `n` days ago, as YYYY-MM-DD (civil-from-days, H. Hinnant).
fn utc_date_days_ago(n: i64) -> String {
    let z = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64 / 86_400 - n + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[test]
fn ring_no_answer_moves_on_to_the_next_agent_and_pauses_the_first() {
    let (silent, silent_port) = agent_phone("uas_no_answer.xml", &[]);
    let (phone, phone_port) = agent_phone("uas_agent_direct.xml", &[]);
    let admin = free_tcp_port();
    let cfg = config(&[("1001", silent_port), ("1002", phone_port)], admin).replace("ring_ms = 5000", "ring_ms = 2000");
    let s = serve("agents-rna", &cfg);
    let ua = TestUa::new(s.sip);
    let tag = ua.establish("7001", "rna-1");
    ua.info("rna-1", &tag, "Signal=0\r\nDuration=160\r\n");
    assert!(finished(silent).status.success(), "1001's phone rang and was cancelled");
    assert!(finished(phone).status.success(), "1002 took the call");
    let v: serde_json::Value = serde_json::from_str(&stdout(&ivr(&["agents", "--json", "--admin", &format!("127.0.0.1:{admin}")]))).unwrap();
    assert_eq!((v["agents"][0]["state"].as_str(), v["agents"][0]["reason"].as_str()), (Some("not_ready"), Some("ring_no_answer")), "{v}");
    ua.bye("rna-1", &tag);
    let q = &lines(&s, "queue.jsonl", 1)[0];
    assert_eq!((q["agent"].as_str(), q["offers"].as_u64()), (Some("1002"), Some(2)), "{q}");
    assert!(q["waited_ms"].as_u64().unwrap() >= 2_000, "{q}");
}

#[test]
fn the_admin_api_can_require_a_token() {
    let admin = free_tcp_port();
    let s = serve("agents-token", &format!("admin_token = \"t0ken-for-tests\"\n{}", config(&[], admin)));
    let at = format!("127.0.0.1:{admin}");
    let refused = ivr(&["agents", "--admin", &at]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr(&refused).contains("a bearer token is required"), "{}", stderr(&refused));
    let ok = Command::new(ivr_path()).args(["agent", "login", "1003", "--admin", &at]).env("IVR_ADMIN_TOKEN", "t0ken-for-tests").current_dir(root()).output().unwrap();
    assert!(stdout(&ok).contains("agent 1003: ready"), "{}{}", stdout(&ok), stderr(&ok));
    drop(s);
}

#[test]
fn reload_reads_the_agents_and_queues_again_and_refuses_a_broken_set() {
    let admin = free_tcp_port();
    let s = serve("agents-reload", &config(&[], admin));
    let at = format!("127.0.0.1:{admin}");
    let ids = || -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(&stdout(&ivr(&["agents", "--json", "--admin", &at]))).unwrap();
        v["agents"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(ids(), ["1003"]);
    let path = s.data.join("ivr.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let added = text.replace("[[queues]]", "[[agents]]\nid = \"1004\"\nname = \"New\"\nskills = [[\"general\", 6]]\n\n[[queues]]");
    std::fs::write(&path, &added).unwrap();
    let data = s.data.to_str().unwrap();
    assert!(ivr(&["reload", "--data", data]).status.success());
    assert_eq!(ids(), ["1003", "1004"]);
    // Two agents with one work number: refused; the running set stays.
    std::fs::write(&path, added.replace("id = \"1004\"", "id = \"1003\"")).unwrap();
    let refused = ivr(&["reload", "--data", data]);
    assert!(!refused.status.success() && stderr(&refused).contains("refused the reload"), "{}", stderr(&refused));
    assert_eq!(ids(), ["1003", "1004"]);
}

#[test]
fn an_agent_putting_the_caller_on_hold_is_answered_and_the_call_goes_on() {
    let (phone, phone_port) = agent_phone("uas_agent_hold.xml", &[]);
    let admin = free_tcp_port();
    let s = serve("agents-hold", &config(&[("1002", phone_port)], admin));
    let ua = TestUa::new(s.sip);
    let tag = ua.establish("7001", "hold-1");
    ua.info("hold-1", &tag, "Signal=8\r\nDuration=160\r\n");
    let agent = finished(phone);
    assert!(agent.status.success(), "the hold re-INVITE was not answered: {}", String::from_utf8_lossy(&agent.stdout));
    ua.info("hold-1", &tag, "Signal=4\r\nDuration=160\r\n");
    let call = &records(&s, 1)[0];
    assert_eq!(call["handoffs"][0]["outcome"], "served", "{call}");
    assert_eq!(call["survey_score"], "4");
}
