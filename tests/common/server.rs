//! Running `ivr serve` for end-to-end tests: a server on its own port, data
//! directory and RTP range; sipp; and a minimal Rust user agent.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{ivr_path, root};

/// A running `ivr serve` on its own port, data directory and RTP range.
pub struct Server {
    pub child: Child,
    pub sip: SocketAddr,
    pub data: PathBuf,
    /// The operations listener (health, readiness, metrics, admin API).
    pub ops: Option<SocketAddr>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

impl Server {
    /// Waits until the operations listener's /readyz answers `code` (503 once
    /// a SIGTERM has been taken): the event, not a guess at how long it takes.
    pub fn await_ready(&self, code: u16) {
        use std::io::{Read, Write};
        let ops = self.ops.expect("the operations listener");
        let want = format!("HTTP/1.1 {code}");
        super::wait_for(&format!("/readyz answering {code}"), Duration::from_secs(10), || {
            let mut answer = String::new();
            if let Ok(mut c) = std::net::TcpStream::connect(ops) {
                let _ = c.write_all(format!("GET /readyz HTTP/1.1\r\nHost: {ops}\r\n\r\n").as_bytes());
                let _ = c.read_to_string(&mut answer);
            }
            answer.starts_with(&want).then_some(())
        })
    }
}

/// One HTTP/1.1 request to an operations listener: (status, head, body).
pub fn ops_request(ops: SocketAddr, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(ops).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {ops}\r\n{auth}Content-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let code = head.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("a status");
    (code, head.to_string(), body.to_string())
}

pub fn serve(name: &str, extra_config: &str) -> Server {
    serve_on("127.0.0.1", name, extra_config)
}

pub fn serve_on(ip: &str, name: &str, extra_config: &str) -> Server {
    let data = std::env::temp_dir().join(format!("ivr-serve-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).unwrap();
    std::fs::copy(root().join("flows/data/quotes.csv"), data.join("quotes.csv")).unwrap();
    let port = UdpSocket::bind(format!("{}:0", if ip.contains(':') { format!("[{ip}]") } else { ip.to_string() }))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let host = if ip.contains(':') { format!("[{ip}]") } else { ip.to_string() };
    // Each server gets an RTP range of its own, below the kernel's ephemeral
    // ports (where the SIP ports of other tests' servers come from) and above
    // sipp's (`sipp_ports`): the servers of one test binary (its tests run at
    // once) take ranges in turn.
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let turn = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let rtp = 14_000 + ((std::process::id() % 7) * 31 + turn) % 180 * 100;
    let config = data.join("ivr.toml");
    // The operations listener on a port of its own, unless the test picks one.
    let picks = extra_config.lines().any(|l| l.starts_with("ops_listen") || l.split('=').next().is_some_and(|k| k.trim() == "admin"));
    let ops = if picks { "" } else { "ops_listen = \"127.0.0.1:0\"\n" };
    let admission = if extra_config.contains("overload_at_ms") { "" } else { "overload_at_ms = 0\n" };
    // `{shared_rtp}` in extra_config: a port of this test's own RTP range.
    let extra_config = extra_config.replace("{shared_rtp}", &(rtp + 98).to_string());
    std::fs::write(
        &config,
        format!(
            // Admission by load is tested in simulated time (crates/call/tests);
            // here a machine busy with other tests must not refuse calls.
            "listen = {}\nrtp_ports = [{rtp}, {}]\ndata = \"{}\"\n{ops}{admission}{extra_config}",
            // `{v6}` in extra_config asks for a second, IPv6 address beside this one.
            if extra_config.contains("{v6}") { format!("[\"{host}:{port}\", \"[::1]:{port}\"]") } else { format!("\"{host}:{port}\"") },
            rtp + 99,
            data.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(ivr_path())
        .args(["serve", "--config", config.to_str().unwrap()])
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(if std::env::var_os("IVR_TEST_LOG").is_some() { Stdio::inherit() } else { Stdio::null() })
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(line.contains("ivr serving on"), "server did not start: {line}");
    let ops = line.split("operations on http://").nth(1).and_then(|r| r.split(';').next()).and_then(|a| a.parse().ok());
    Server { child, sip: format!("{host}:{port}").parse().unwrap(), data, ops }
}

/// A server listening on 127.0.0.1 and [::1] at the same port.
pub fn serve_dual(name: &str) -> Server {
    serve_on("127.0.0.1", name, "# {v6}\n")
}

/// Ports for sipp's signalling and media, below the kernel's ephemeral range and
/// unique within this test run, so parallel tests never collide.
pub fn sipp_ports() -> (u16, u16) {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(12_000);
    let base = NEXT.fetch_add(8, std::sync::atomic::Ordering::Relaxed);
    (base, base + 4)
}

pub fn sipp(server: &Server, scenario: &str, service: &str, extra: &[&str]) -> std::process::Output {
    let (sip_port, media_port) = sipp_ports();
    let sf = root().join("tests/sipp").join(scenario);
    let mut args = vec![
        server.sip.to_string(),
        "-sf".into(),
        sf.to_str().unwrap().to_string(),
        "-s".into(),
        service.into(),
        "-i".into(),
        "127.0.0.1".into(),
        "-p".into(),
        sip_port.to_string(),
        "-mp".into(),
        media_port.to_string(),
        "-nostdin".into(),
        "-timeout".into(),
        "40s".into(),
        "-key".into(),
        "dtmf_pcap".into(),
        "/usr/share/sip-tester/dtmf_2833_1.pcap".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    Command::new("sipp").args(&args).stdin(Stdio::null()).output().expect("sipp (apt-get install sip-tester)")
}

pub fn records(server: &Server, want: usize) -> Vec<serde_json::Value> {
    super::wait_for(&format!("{want} closed call records"), Duration::from_secs(10), || {
        let text = std::fs::read_to_string(server.data.join("calls.jsonl")).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        // Each call's record is its last line; only closed calls count.
        let closed: Vec<&serde_json::Value> = lines.iter().filter(|l| l["state"] == "closed").collect();
        let mut firsts: Vec<&str> = Vec::new();
        for l in lines.iter().filter(|l| l["end_ms"] == 0 && l["state"] == "open") {
            let id = l["call_id"].as_str().unwrap_or("");
            if !firsts.contains(&id) {
                firsts.push(id);
            }
        }
        // In the order the calls started.
        let mut recs: Vec<serde_json::Value> = closed.into_iter().cloned().collect();
        recs.sort_by_key(|r| firsts.iter().position(|id| r["call_id"] == *id).unwrap_or(usize::MAX));
        (recs.len() >= want).then_some(recs)
    })
}

/// Waits until `rtp` receives `prompt` (flows/audio/zh/PROMPT.wav), matched
/// by its first frame that is not silence (see [`TestUa::hears`]).
pub fn hears_on(rtp: &UdpSocket, prompt: &str) {
    let audio = ivr_media::audio::EncodedPrompt::load(&root().join(format!("flows/audio/zh/{prompt}.wav"))).expect("prompt audio (scripts/render-prompts.sh)");
    let frame = audio.pcmu.chunks(160).find(|f| f.len() == 160 && f.iter().any(|&b| b != f[0])).expect("a prompt with sound").to_vec();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        let (n, _) = rtp.recv_from(&mut buf).unwrap_or_else(|e| panic!("no RTP while waiting for `{prompt}`: {e}"));
        if ivr_media::rtp::parse(&buf[..n]).is_some_and(|p| p.payload == &frame[..]) {
            return;
        }
    }
    panic!("the caller never heard `{prompt}`");
}

/// The To tag of a response: the dialog's remote tag.
pub fn to_tag(reply: &str) -> String {
    reply.lines().find(|l| l.starts_with("To:")).and_then(|l| l.split("tag=").nth(1)).expect("a To tag").trim().to_string()
}

/// A minimal SIP caller with its own RTP socket.
pub struct TestUa {
    pub sip: UdpSocket,
    pub rtp: UdpSocket,
    pub server: SocketAddr,
    pub cseq: std::cell::Cell<u32>,
}

impl TestUa {
    pub fn new(server: SocketAddr) -> TestUa {
        let any = if server.is_ipv6() { "[::1]:0" } else { "127.0.0.1:0" };
        let sip = UdpSocket::bind(any).unwrap();
        sip.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let rtp = UdpSocket::bind(any).unwrap();
        rtp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        TestUa { sip, rtp, server, cseq: std::cell::Cell::new(1) }
    }

    pub fn sdp(&self) -> String {
        let (ip, addr) = if self.server.is_ipv6() { ("IP6", "::1") } else { ("IP4", "127.0.0.1") };
        format!(
            "v=0\r\no=ua 1 1 IN {ip} {addr}\r\ns=-\r\nc=IN {ip} {addr}\r\nt=0 0\r\nm=audio {} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
            self.rtp.local_addr().unwrap().port()
        )
    }

    pub fn request(&self, method: &str, user: &str, call_id: &str, to_tag: Option<&str>, cseq: u32, ctype: Option<&str>, body: &str) {
        let me = self.sip.local_addr().unwrap();
        let tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
        let ct = ctype.map(|c| format!("Content-Type: {c}\r\n")).unwrap_or_default();
        let msg = format!(
            "{method} sip:{user}@{} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{call_id}-{cseq}\r\nMax-Forwards: 70\r\n\
From: <sip:13800138000@127.0.0.1>;tag=ua\r\nTo: <sip:{user}@127.0.0.1>{tag}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n\
Contact: <sip:ua@{me}>\r\n{ct}Content-Length: {}\r\n\r\n{body}",
            self.server,
            body.len()
        );
        self.sip.send_to(msg.as_bytes(), self.server).unwrap();
    }

    /// Calls `user`, acknowledges the answer and returns the dialog's To tag.
    pub fn establish(&self, user: &str, call_id: &str) -> String {
        let reply = self.invite(user, &self.sdp(), call_id);
        assert!(reply.starts_with("SIP/2.0 200"), "{reply}");
        let to_tag = to_tag(&reply);
        self.ack(call_id, &to_tag);
        to_tag
    }

    /// Sends an INVITE and returns the final response.
    pub fn invite(&self, user: &str, sdp: &str, call_id: &str) -> String {
        self.request("INVITE", user, call_id, None, 1, Some("application/sdp"), sdp);
        self.final_response()
    }

    pub fn final_response(&self) -> String {
        let mut buf = [0u8; 8192];
        loop {
            let (n, _) = self.sip.recv_from(&mut buf).expect("a SIP response");
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            if !text.starts_with("SIP/2.0 1") {
                return text;
            }
        }
    }

    pub fn ack(&self, call_id: &str, to_tag: &str) {
        self.request("ACK", "962588", call_id, Some(to_tag), 1, None, "");
    }

    /// The next CSeq of this caller's dialog (each new request has its own).
    pub fn next_cseq(&self) -> u32 {
        self.cseq.set(self.cseq.get() + 1);
        self.cseq.get()
    }

    pub fn info(&self, call_id: &str, to_tag: &str, body: &str) {
        let cseq = self.next_cseq();
        self.request("INFO", "962588", call_id, Some(to_tag), cseq, Some("application/dtmf-relay"), body);
        let r = self.final_response();
        assert!(r.starts_with("SIP/2.0 200"), "INFO {body:?} got: {r}");
    }

    /// Waits until the caller hears `prompt` (flows/audio/zh/PROMPT.wav): the
    /// event that shows a key reached the flow, instead of waiting a while.
    /// Matched by its first frame that is not silence, so a prompt that
    /// starts quietly is still told apart.
    pub fn hears(&self, prompt: &str) {
        hears_on(&self.rtp, prompt);
    }

    pub fn bye(&self, call_id: &str, to_tag: &str) {
        let cseq = self.next_cseq();
        self.request("BYE", "962588", call_id, Some(to_tag), cseq, None, "");
        assert!(self.final_response().starts_with("SIP/2.0 200"));
    }
}

/// A key as RFC 4733 packets (payload type 101): a marked start, two
/// updates and three ends, as a phone sends a short press.
pub fn rfc4733_key(key: u8, seq: u16, ts: u32, ssrc: u32) -> Vec<Vec<u8>> {
    (0..6u16)
        .map(|i| {
            let end = i >= 3;
            let mut v = vec![0x80, 101 | if i == 0 { 0x80 } else { 0 }];
            v.extend_from_slice(&seq.wrapping_add(i).to_be_bytes());
            v.extend_from_slice(&ts.to_be_bytes());
            v.extend_from_slice(&ssrc.to_be_bytes());
            v.extend_from_slice(&[key, if end { 0x80 } else { 0 } | 10, 2, 128]);
            v
        })
        .collect()
}
