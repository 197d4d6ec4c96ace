//! A SIP/RTP load generator for `ivr serve` on loopback (not run in CI).
//!
//! Holds CALLS concurrent calls (their audio goes to one shared port that only
//! counts packets, 64 at a time with recvmmsg) plus PROBES probe calls, each with its own socket and thread,
//! that time every RTP packet they receive. Reports call failures, the packets
//! received, and the probes' inter-packet gaps (p50/p99/max).
//!
//!   cargo bench --bench loadgen -- 127.0.0.1:5090 CALLS SECONDS [PROBES] [RATE]
//!
//! bench/loadgen.sh starts a release server and runs this against it.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Call {
    to_tag: Option<String>,
    done: bool,
}

/// The socket bulk audio goes to, with a deep receive buffer so bursts while
/// this process waits for a core are not lost in the kernel (SO_RCVBUFFORCE
/// needs root; else the sysctl cap applies).
fn sink() -> (UdpSocket, u16) {
    use std::os::fd::AsRawFd;
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sink.local_addr().unwrap().port();
    let size: libc::c_int = 64 << 20;
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: setsockopt with a valid fd and an int option value.
        let r = unsafe { libc::setsockopt(sink.as_raw_fd(), libc::SOL_SOCKET, opt, (&size as *const libc::c_int).cast(), std::mem::size_of::<libc::c_int>() as u32) };
        if r == 0 {
            break;
        }
    }
    (sink, port)
}

/// Up to 64 datagrams per system call (recvmmsg), into buffers allocated once.
struct RecvBatch {
    bufs: Vec<[u8; 256]>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
}

impl RecvBatch {
    const N: usize = 64;

    fn new() -> RecvBatch {
        let mut bufs = vec![[0u8; 256]; Self::N];
        let mut iovecs: Vec<libc::iovec> = bufs.iter_mut().map(|b| libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: b.len() }).collect();
        let headers = iovecs
            .iter_mut()
            .map(|iov| {
                // SAFETY: an all-zero msghdr is valid (no name, no control data).
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_iov = iov;
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();
        RecvBatch { bufs, iovecs, headers }
    }

    /// Waits for at least one datagram (up to the socket's read timeout) and
    /// returns how many arrived.
    fn recv(&mut self, socket: &UdpSocket) -> usize {
        use std::os::fd::AsRawFd;
        debug_assert_eq!(self.bufs.len(), self.iovecs.len());
        // SAFETY: headers point at iovecs that point at bufs, all owned by self
        // and alive for the call; the kernel writes at most N entries.
        let n = unsafe { libc::recvmmsg(socket.as_raw_fd(), self.headers.as_mut_ptr(), Self::N as u32, libc::MSG_WAITFORONE, std::ptr::null_mut()) };
        n.max(0) as usize
    }
}

fn invite(server: SocketAddr, me: SocketAddr, id: &str, rtp_port: u16, cseq: u32) -> String {
    let sdp = format!(
        "v=0\r\no=lg 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {rtp_port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    );
    format!(
        "INVITE sip:962588@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{id}-{cseq}\r\nMax-Forwards: 70\r\n\
From: <sip:load@127.0.0.1>;tag={id}\r\nTo: <sip:962588@127.0.0.1>\r\nCall-ID: {id}\r\nCSeq: {cseq} INVITE\r\n\
Contact: <sip:load@{me}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

fn in_dialog(method: &str, server: SocketAddr, me: SocketAddr, id: &str, tag: &str, cseq: u32) -> String {
    format!(
        "{method} sip:962588@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{id}-{method}-{cseq}\r\nMax-Forwards: 70\r\n\
From: <sip:load@127.0.0.1>;tag={id}\r\nTo: <sip:962588@127.0.0.1>;tag={tag}\r\nCall-ID: {id}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
    )
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Churn: CALLS calls arrive at RATE a second, each hanging up `hold` after it
/// is answered, as on a live trunk. Reports the set-up rate held and failures.
fn churn(server: SocketAddr, calls: usize, hold: Duration, rate: f64) {
    // Audio goes to a port that is bound (no ICMP back to the server) and never read.
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sink_port = sink.local_addr().unwrap().port();
    let sip = UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = sip.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = sip.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok((n, _)) = reader.recv_from(&mut buf) {
            if tx.send(String::from_utf8_lossy(&buf[..n]).into_owned()).is_err() {
                return;
            }
        }
    });
    #[derive(PartialEq)]
    enum St {
        Inviting(Instant, Instant, Duration),
        Up(String, Instant),
        Hanging(String, Instant, Duration),
        Done,
        Failed,
    }
    let mut st: Vec<(String, St)> = Vec::with_capacity(calls);
    let index = |id: &str| id.rsplit('-').next().and_then(|n| n.parse::<usize>().ok());
    let started = Instant::now();
    loop {
        let now = Instant::now();
        let due = ((now - started).as_secs_f64() * rate) as usize;
        while st.len() < calls.min(due + 1) {
            let id = format!("ch-{}-{}", std::process::id(), st.len());
            sip.send_to(invite(server, me, &id, sink_port, 1).as_bytes(), server).unwrap();
            st.push((id, St::Inviting(now, now + Duration::from_millis(500), Duration::from_millis(500))));
        }
        while let Ok(msg) = rx.recv_timeout(Duration::from_millis(1)) {
            let Some(i) = header(&msg, "Call-ID").and_then(index) else { continue };
            let Some((id, state)) = st.get_mut(i) else { continue };
            let is_invite = header(&msg, "CSeq").is_some_and(|c| c.ends_with("INVITE"));
            if msg.starts_with("SIP/2.0 200") && is_invite {
                let tag = header(&msg, "To").and_then(|t| t.split("tag=").nth(1)).unwrap_or("").to_string();
                sip.send_to(in_dialog("ACK", server, me, id, &tag, 1).as_bytes(), server).unwrap();
                if matches!(state, St::Inviting(..)) {
                    *state = St::Up(tag, Instant::now());
                }
            } else if msg.starts_with("SIP/2.0 200") {
                if matches!(state, St::Hanging(..)) {
                    *state = St::Done;
                }
            } else if msg.starts_with("SIP/2.0 ") && !msg.starts_with("SIP/2.0 1") && is_invite {
                *state = St::Failed;
            }
        }
        let now = Instant::now();
        for (id, state) in st.iter_mut() {
            match state {
                St::Inviting(at, next, interval) if now >= *next => {
                    if now - *at > Duration::from_secs(32) {
                        *state = St::Failed;
                    } else {
                        sip.send_to(invite(server, me, id, sink_port, 1).as_bytes(), server).unwrap();
                        *interval = (*interval * 2).min(Duration::from_secs(4));
                        *next = now + *interval;
                    }
                }
                St::Up(tag, at) if now - *at >= hold => {
                    sip.send_to(in_dialog("BYE", server, me, id, tag, 2).as_bytes(), server).unwrap();
                    *state = St::Hanging(tag.clone(), now, Duration::from_millis(500));
                }
                St::Hanging(tag, next, interval) if now >= *next + *interval => {
                    sip.send_to(in_dialog("BYE", server, me, id, tag, 2).as_bytes(), server).unwrap();
                    *interval = (*interval * 2).min(Duration::from_secs(4));
                    *next = now;
                }
                _ => {}
            }
        }
        if st.len() == calls && st.iter().all(|(_, s)| matches!(s, St::Done | St::Failed)) {
            break;
        }
        if started.elapsed() > Duration::from_secs(calls as u64 / rate.max(1.0) as u64 + 120) {
            break;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let done = st.iter().filter(|(_, s)| *s == St::Done).count();
    let failed = calls - done;
    println!(
        "churn: {calls} calls offered at {rate:.0}/s, each {:.1} s long: {done} completed, {failed} failed ({:.3}%), in {secs:.1} s",
        hold.as_secs_f64(),
        failed as f64 * 100.0 / calls as f64
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    if args.len() < 3 {
        eprintln!("usage: loadgen SERVER CALLS SECONDS [PROBES] [RATE] [churn]");
        std::process::exit(2);
    }
    if args.get(5).is_some_and(|m| m == "churn") {
        let rate = args.get(4).and_then(|r| r.parse().ok()).unwrap_or(500.0);
        churn(args[0].parse().expect("server address"), args[1].parse().expect("calls"), Duration::from_secs(args[2].parse().expect("seconds")), rate);
        return;
    }
    let server: SocketAddr = args[0].parse().expect("server address");
    let calls: usize = args[1].parse().expect("calls");
    let hold = Duration::from_secs(args[2].parse().expect("seconds"));
    let probes: usize = args.get(3).and_then(|p| p.parse().ok()).unwrap_or(3);
    let rate: f64 = args.get(4).and_then(|r| r.parse().ok()).unwrap_or(500.0);

    // Bulk audio goes to one port that only counts what arrives.
    let (sink, sink_port) = sink();
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    {
        let (received, stop) = (received.clone(), stop.clone());
        sink.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        std::thread::spawn(move || {
            let mut batch = RecvBatch::new();
            while !stop.load(Ordering::Relaxed) {
                received.fetch_add(batch.recv(&sink) as u64, Ordering::Relaxed);
            }
        });
    }
    // Probes: their own sockets, timing every packet.
    let mut probe_ports = Vec::new();
    let mut probe_threads = Vec::new();
    for _ in 0..probes {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        probe_ports.push(s.local_addr().unwrap().port());
        let stop = stop.clone();
        probe_threads.push(std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let mut last: Option<Instant> = None;
            let mut gaps = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if s.recv_from(&mut buf).is_ok() {
                    let now = Instant::now();
                    if let Some(l) = last {
                        gaps.push(now.duration_since(l).as_secs_f64() * 1000.0);
                    }
                    last = Some(now);
                }
            }
            gaps
        }));
    }

    let sip = UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = sip.local_addr().unwrap();
    // A thread of its own drains the SIP socket, so bursts of answers are not
    // lost in the kernel's buffer while the main loop is busy sending.
    let (msg_tx, msg_rx) = std::sync::mpsc::channel::<String>();
    {
        let reader = sip.try_clone().unwrap();
        let stop = stop.clone();
        reader.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, _)) = reader.recv_from(&mut buf) {
                    if msg_tx.send(String::from_utf8_lossy(&buf[..n]).into_owned()).is_err() {
                        return;
                    }
                }
            }
        });
    }
    let recv = || msg_rx.recv_timeout(Duration::from_millis(5)).ok();
    let total = calls + probes;
    let mut state: HashMap<String, Call> = HashMap::new();
    let mut failures = 0usize;
    let started = Instant::now();
    let mut sent = 0usize;
    // (call, its RTP port, when sent, next retransmission, interval): RFC 3261 timer A.
    let mut sent_at: Vec<(String, u16, Instant, Instant, Duration)> = Vec::new();
    // Set up every call at RATE calls/s; probes go last, once the load is on.
    while state.values().filter(|c| c.to_tag.is_some()).count() + failures < total {
        let due = (started.elapsed().as_secs_f64() * rate) as usize;
        while sent < total.min(due + 1) {
            let id = format!("lg-{}-{sent}", std::process::id());
            let port = if sent >= calls { probe_ports[sent - calls] } else { sink_port };
            sip.send_to(invite(server, me, &id, port, 1).as_bytes(), server).unwrap();
            sent_at.push((id.clone(), port, Instant::now(), Instant::now() + Duration::from_millis(500), Duration::from_millis(500)));
            state.insert(id, Call { to_tag: None, done: false });
            sent += 1;
        }
        if let Some(msg) = recv() {
            let Some(id) = header(&msg, "Call-ID").map(str::to_string) else { continue };
            if msg.starts_with("SIP/2.0 200") && header(&msg, "CSeq").is_some_and(|c| c.ends_with("INVITE")) {
                let tag = header(&msg, "To").and_then(|t| t.split("tag=").nth(1)).unwrap_or("").to_string();
                sip.send_to(in_dialog("ACK", server, me, &id, &tag, 1).as_bytes(), server).unwrap();
                if let Some(c) = state.get_mut(&id) {
                    c.to_tag.get_or_insert(tag);
                }
            } else if msg.starts_with("SIP/2.0 ") && !msg.starts_with("SIP/2.0 1") && state.get(&id).is_some_and(|c| c.to_tag.is_none() && !c.done) {
                failures += 1;
                state.get_mut(&id).unwrap().done = true;
            }
        }
        // Unanswered INVITEs are retransmitted (500 ms, doubling to 4 s) like any
        // UAC's; one unanswered for 32 s (64 × T1) has failed.
        let now = Instant::now();
        for (id, port, at, next, interval) in sent_at.iter_mut() {
            let c = state.get_mut(id.as_str()).unwrap();
            if c.to_tag.is_some() || c.done {
                continue;
            }
            if at.elapsed() > Duration::from_secs(32) {
                c.done = true;
                failures += 1;
            } else if now >= *next {
                sip.send_to(invite(server, me, id, *port, 1).as_bytes(), server).unwrap();
                *interval = (*interval * 2).min(Duration::from_secs(4));
                *next = now + *interval;
            }
        }
    }
    let setup = started.elapsed();
    let established = state.values().filter(|c| c.to_tag.is_some()).count();
    eprintln!("{established} calls up in {:.1} s ({failures} failed)", setup.as_secs_f64());
    let load_start = Instant::now();
    let before = received.load(Ordering::Relaxed);
    std::thread::sleep(hold);
    let packets = received.load(Ordering::Relaxed) - before;
    let pps = packets as f64 / load_start.elapsed().as_secs_f64();
    // Hang up everything, retransmitting unanswered BYEs (timer E) like any UA.
    let mut pending: HashMap<String, (String, Instant, Duration)> = state
        .iter()
        .filter_map(|(id, c)| c.to_tag.clone().map(|t| (id.clone(), (t, Instant::now(), Duration::from_millis(500)))))
        .collect();
    let byes = pending.len();
    for (i, (id, (tag, _, _))) in pending.iter().enumerate() {
        sip.send_to(in_dialog("BYE", server, me, id, tag, 2).as_bytes(), server).unwrap();
        if i % 50 == 49 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(32);
    while !pending.is_empty() && Instant::now() < deadline {
        if let Some(msg) = recv() {
            if msg.starts_with("SIP/2.0 200") && header(&msg, "CSeq").is_some_and(|c| c.ends_with("BYE")) {
                if let Some(id) = header(&msg, "Call-ID") {
                    pending.remove(id);
                }
            } else if msg.starts_with("SIP/2.0 200") {
                // A retransmitted 200 to an INVITE: our ACK was lost; send it again.
                if let (Some(id), Some(tag)) = (header(&msg, "Call-ID"), header(&msg, "To").and_then(|t| t.split("tag=").nth(1))) {
                    sip.send_to(in_dialog("ACK", server, me, id, tag, 1).as_bytes(), server).unwrap();
                }
            }
            continue;
        }
        let now = Instant::now();
        for (id, (tag, next, interval)) in pending.iter_mut() {
            if now >= *next + *interval {
                sip.send_to(in_dialog("BYE", server, me, id, tag, 2).as_bytes(), server).unwrap();
                *interval = (*interval * 2).min(Duration::from_secs(4));
                *next = now;
            }
        }
    }
    let ok_byes = byes - pending.len();
    stop.store(true, Ordering::Relaxed);
    let mut gaps: Vec<f64> = probe_threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    // Only the steady part: drop the gaps around setup and hang-up.
    gaps.retain(|g| *g < 1000.0);
    gaps.sort_by(f64::total_cmp);
    println!("calls: {established} established, {failures} failed, {ok_byes}/{byes} hung up cleanly");
    println!("bulk audio received: {pps:.0} packets/s over {:.0} s (expected {} × 50 = {})", hold.as_secs_f64(), calls, calls * 50);
    println!(
        "probe inter-packet gaps over {} packets: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        gaps.len(),
        percentile(&gaps, 0.5),
        percentile(&gaps, 0.99),
        gaps.last().copied().unwrap_or(f64::NAN)
    );
}
