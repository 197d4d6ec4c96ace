//! A SIP/RTP load generator for `ivr serve` on loopback (not run in CI).
//!
//! Holds CALLS concurrent calls plus PROBES probe calls. The bulk calls' audio
//! from the server goes to one shared port that only counts packets (64 at a
//! time with recvmmsg). In `both` mode (the default) every bulk call also
//! sends its own RTP stream, as callers on a trunk do: PCMU (payload type 0,
//! 160 bytes of silence) every 20 ms, its own SSRC, sequence and timestamp,
//! from that same shared port (the address each call's SDP offer names, the
//! only one the server accepts its RTP from) to the media address of the
//! call's SDP answer. One or two sender threads pace all bulk streams in 1 ms
//! slots spread over the 20 ms period, one sendmmsg per 64 packets.
//!
//! Each probe has its own socket and thread: it times every RTP packet it
//! receives (inter-packet gaps), sends its own 50 packets/s, and once in the
//! main menu presses `#` (RFC 4733, "hear this again") at random moments:
//! the time from the key's first packet to the first packet of the server's
//! next talkspurt (marker bit set: the menu prompt started again) is the
//! key-press latency. Probes are set up first (a server refusing calls at
//! load still has them) and measure only while all calls are up and held.
//!
//! Reports call failures (by status), BYEs answered, the packets sent and
//! received, the kernel's drop counters of the server's and our sockets (from
//! /proc/net/udp: the server's own drops are not otherwise visible), the
//! probes' gaps and key-press latency (p50/p99/max), how late the sender
//! threads were, and the generator's own CPU time.
//!
//!   cargo bench --bench loadgen -- 127.0.0.1:5090 CALLS SECONDS [PROBES] [RATE] [hold|churn] [oneway|both]
//!
//! `oneway`: the old benchmark, the callers send no RTP audio (the probes
//! still press keys: RFC 4733 packets only).
//! `LOADGEN_SOURCES=distinct`: each bulk call's media is its own address
//! (127.1.x.y, same port), as each call on a real trunk comes from its own
//! address and port — what a server sharing one RTP port among calls tells
//! them apart by. The sink then listens on all addresses and the senders
//! pick each packet's source (IP_PKTINFO), so it runs only in a network
//! namespace of its own, with loopback as its only interface
//! (bench/loadgen.sh sees to that).
//! `LOADGEN_SENDERS=2` paces the bulk streams from two threads instead of one.
//! bench/loadgen.sh starts a release server and runs this against it.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// RTP packet time.
const PTIME: Duration = Duration::from_millis(20);
/// Slots (1 ms each) the bulk streams are spread over within the packet time.
const SLOTS: u64 = 20;
/// RFC 4733 event code of `#` (the main menu's "hear this again").
const KEY_HASH: u8 = 11;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Media {
    /// Only the server sends RTP (the benchmark before issue 9).
    OneWay,
    /// Every caller sends 50 packets/s too.
    Both,
}

struct Call {
    to_tag: Option<String>,
    done: bool,
    /// The server hung up first (its flow ended the call: a menu's retries
    /// ran out, then goodbye): our BYE is not sent.
    ended_by_server: bool,
}

/// Answers a request from the server (200 OK); returns the Call-ID of a BYE:
/// the server's flow hung up that call.
fn answer_request(sip: &UdpSocket, server: SocketAddr, msg: &str) -> Option<String> {
    if msg.starts_with("SIP/2.0 ") {
        return None;
    }
    let mut r = String::from("SIP/2.0 200 OK\r\n");
    for l in msg.lines().take_while(|l| !l.is_empty()) {
        let name = l.split(':').next().unwrap_or("").trim().to_ascii_lowercase();
        if matches!(name.as_str(), "via" | "v" | "from" | "f" | "to" | "t" | "call-id" | "i" | "cseq") {
            r.push_str(l);
            r.push_str("\r\n");
        }
    }
    r.push_str("Content-Length: 0\r\n\r\n");
    let _ = sip.send_to(r.as_bytes(), server);
    msg.starts_with("BYE ").then(|| header(msg, "Call-ID").map(str::to_string)).flatten()
}

/// The server hung up this call: its audio stops and we do not BYE it.
fn ended_by_server(id: &str, state: &mut HashMap<String, Call>, senders: Option<&Senders>, calls: usize) {
    if let Some(c) = state.get_mut(id) {
        c.ended_by_server = true;
    }
    if let (Some(i), Some(s)) = (id.rsplit('-').next().and_then(|n| n.parse::<usize>().ok()), senders) {
        if i < calls {
            s.stop_call(i);
        }
    }
}

/// xorshift64*: random enough for SSRCs and the moments keys are pressed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn set_buffer(socket: &UdpSocket, opts: [libc::c_int; 2], bytes: libc::c_int) {
    for opt in opts {
        // SAFETY: setsockopt with a valid fd and an int option value.
        let r = unsafe { libc::setsockopt(socket.as_raw_fd(), libc::SOL_SOCKET, opt, (&bytes as *const libc::c_int).cast(), std::mem::size_of::<libc::c_int>() as u32) };
        if r == 0 {
            break;
        }
    }
}

/// The socket bulk audio goes to (and, in `both` mode, comes from), with a
/// deep receive buffer so bursts while this process waits for a core are not
/// lost in the kernel (SO_RCVBUFFORCE needs root; else the sysctl cap applies).
fn sink() -> (UdpSocket, u16) {
    let sink = UdpSocket::bind(media_bind()).unwrap();
    let port = sink.local_addr().unwrap().port();
    set_buffer(&sink, [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF], 64 << 20);
    set_buffer(&sink, [libc::SO_SNDBUFFORCE, libc::SO_SNDBUF], 8 << 20);
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
        debug_assert_eq!(self.bufs.len(), self.iovecs.len());
        // SAFETY: headers point at iovecs that point at bufs, all owned by self
        // and alive for the call; the kernel writes at most N entries.
        let n = unsafe { libc::recvmmsg(socket.as_raw_fd(), self.headers.as_mut_ptr(), Self::N as u32, libc::MSG_WAITFORONE, std::ptr::null_mut()) };
        n.max(0) as usize
    }

    /// The `i`th datagram of the last batch.
    fn packet(&self, i: usize) -> &[u8] {
        &self.bufs[i][..(self.headers[i].msg_len as usize).min(256)]
    }
}

/// Packets received per RTP stream (SSRC) and the span of their sequence
/// numbers: how many the sender sent in that span, so the packets lost on
/// the way are told from those never sent.
#[derive(Default)]
struct SeqCount {
    /// SSRC → (first extended sequence number, highest, packets received).
    streams: HashMap<u32, (i64, i64, u64)>,
}

impl SeqCount {
    fn packet(&mut self, p: &[u8]) {
        if p.len() < 12 {
            return;
        }
        let seq = i64::from(u16::from_be_bytes([p[2], p[3]]));
        let ssrc = u32::from_be_bytes([p[8], p[9], p[10], p[11]]);
        let e = self.streams.entry(ssrc).or_insert((seq, seq, 0));
        // The extended sequence number closest to the highest seen.
        let mut ext = (e.1 & !0xffff) | seq;
        if ext < e.1 - 0x8000 {
            ext += 0x1_0000;
        } else if ext > e.1 + 0x8000 {
            ext -= 0x1_0000;
        }
        e.0 = e.0.min(ext);
        e.1 = e.1.max(ext);
        e.2 += 1;
    }

    /// (packets the senders sent, by their sequence numbers; packets received).
    fn totals(&self) -> (u64, u64) {
        self.streams.values().fold((0, 0), |(s, r), (first, last, n)| (s + (last - first + 1) as u64, r + n))
    }
}

/// One bulk caller's outgoing RTP stream.
struct Outgoing {
    id: usize,
    to: libc::sockaddr_in,
    /// The source address the packets go out from (`None`: the socket's).
    from: Option<Ipv4Addr>,
    ssrc: u32,
    seq: u16,
    ts: u32,
    first: bool,
}

/// Up to 64 RTP packets per system call (sendmmsg), from buffers allocated
/// once: the headers are written per packet, the payload is always silence.
struct SendBatch {
    bufs: Vec<[u8; 172]>,
    iovecs: Vec<libc::iovec>,
    names: Vec<libc::sockaddr_in>,
    /// Per packet, an IP_PKTINFO control message naming its source address
    /// (used when the stream has one); u64s for the cmsghdr's alignment.
    controls: Vec<[u64; 4]>,
    headers: Vec<libc::mmsghdr>,
}

impl SendBatch {
    const N: usize = 64;

    fn new() -> SendBatch {
        let mut bufs = vec![[0xffu8; 172]; Self::N];
        // SAFETY: sockaddr_in is plain data; all zero is valid.
        let mut names: Vec<libc::sockaddr_in> = vec![unsafe { std::mem::zeroed() }; Self::N];
        let mut iovecs: Vec<libc::iovec> = bufs.iter_mut().map(|b| libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: b.len() }).collect();
        let mut controls = vec![[0u64; 4]; Self::N];
        let headers = iovecs
            .iter_mut()
            .zip(names.iter_mut())
            .zip(controls.iter_mut())
            .map(|((iov, name), control)| {
                // SAFETY: an all-zero msghdr is valid.
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_iov = iov;
                h.msg_hdr.msg_iovlen = 1;
                h.msg_hdr.msg_name = (name as *mut libc::sockaddr_in).cast();
                h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
                h.msg_hdr.msg_control = control.as_mut_ptr().cast();
                h
            })
            .collect();
        SendBatch { bufs, iovecs, names, controls, headers }
    }

    /// Sends the next packet of every stream; returns (sent, failed).
    fn send(&mut self, socket: &UdpSocket, streams: &mut [Outgoing]) -> (u64, u64) {
        debug_assert_eq!(self.bufs.len(), self.iovecs.len());
        let (mut sent, mut failed) = (0u64, 0u64);
        for chunk in streams.chunks_mut(Self::N) {
            for (i, s) in chunk.iter_mut().enumerate() {
                let b = &mut self.bufs[i];
                b[0] = 0x80;
                b[1] = if s.first { 0x80 } else { 0 };
                b[2..4].copy_from_slice(&s.seq.to_be_bytes());
                b[4..8].copy_from_slice(&s.ts.to_be_bytes());
                b[8..12].copy_from_slice(&s.ssrc.to_be_bytes());
                self.names[i] = s.to;
                self.set_source(i, s.from);
                s.first = false;
                s.seq = s.seq.wrapping_add(1);
                s.ts = s.ts.wrapping_add(160);
            }
            let n = chunk.len();
            let mut off = 0;
            while off < n {
                // SAFETY: headers[off..n] point at names, iovecs and bufs owned by
                // self (never reallocated), alive for the call.
                let r = unsafe { libc::sendmmsg(socket.as_raw_fd(), self.headers.as_mut_ptr().add(off), (n - off) as u32, 0) };
                if r <= 0 {
                    failed += 1;
                    off += 1;
                } else {
                    sent += r as u64;
                    off += r as usize;
                }
            }
        }
        (sent, failed)
    }
}

impl SendBatch {
    /// Packet `i` goes out from `from` (an IP_PKTINFO control message), or
    /// from the socket's own address.
    fn set_source(&mut self, i: usize, from: Option<Ipv4Addr>) {
        debug_assert_eq!(self.controls.len(), Self::N);
        let h = &mut self.headers[i].msg_hdr;
        let Some(from) = from else {
            h.msg_controllen = 0;
            return;
        };
        // SAFETY: the control buffer (32 bytes, 8-aligned) holds one cmsghdr
        // and an in_pktinfo (CMSG_SPACE(12) = 32); the CMSG_* functions
        // only compute offsets within it.
        unsafe {
            let space = libc::CMSG_SPACE(std::mem::size_of::<libc::in_pktinfo>() as u32) as usize;
            h.msg_controllen = space;
            let c = libc::CMSG_FIRSTHDR(h);
            (*c).cmsg_level = libc::IPPROTO_IP;
            (*c).cmsg_type = libc::IP_PKTINFO;
            (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::in_pktinfo>() as u32) as usize;
            let info = libc::CMSG_DATA(c).cast::<libc::in_pktinfo>();
            info.write_unaligned(libc::in_pktinfo { ipi_ifindex: 0, ipi_spec_dst: libc::in_addr { s_addr: u32::from(from).to_be() }, ipi_addr: libc::in_addr { s_addr: 0 } });
        }
    }
}

/// Under `LOADGEN_SOURCES=distinct`, the media address of bulk call `n`
/// (127.1.x.y: every address of 127/8 is the loopback's); else 127.0.0.1.
fn media_ip(n: usize) -> Ipv4Addr {
    if distinct_sources() {
        Ipv4Addr::new(127, 1, (n / 250 % 250) as u8, (1 + n % 250) as u8)
    } else {
        Ipv4Addr::LOCALHOST
    }
}

fn distinct_sources() -> bool {
    static DISTINCT: OnceLock<bool> = OnceLock::new();
    *DISTINCT.get_or_init(|| std::env::var("LOADGEN_SOURCES").is_ok_and(|v| v == "distinct"))
}

/// Where the bulk callers' media is: 127.0.0.1, or every address when each
/// call has its own — allowed only where loopback is the only interface (a
/// network namespace of its own), so nothing from a real network reaches it.
fn media_bind() -> &'static str {
    if !distinct_sources() {
        return "127.0.0.1:0";
    }
    // /proc/net is this process's network namespace (/sys/class/net may not be).
    let dev = std::fs::read_to_string("/proc/net/dev").unwrap_or_default();
    let interfaces: Vec<&str> = dev.lines().skip(2).filter_map(|l| l.split(':').next()).map(str::trim).collect();
    if interfaces.is_empty() || interfaces.iter().any(|i| *i != "lo") {
        eprintln!("LOADGEN_SOURCES=distinct listens on all addresses: run it in a network namespace with loopback only (bench/loadgen.sh does); interfaces here: {interfaces:?}");
        std::process::exit(2);
    }
    "0.0.0.0:0"
}

fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain data; all zero is valid.
    let mut s: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    s.sin_family = libc::AF_INET as libc::sa_family_t;
    s.sin_port = a.port().to_be();
    s.sin_addr.s_addr = u32::from(*a.ip()).to_be();
    s
}

fn monotonic_ns() -> u64 {
    // SAFETY: clock_gettime writes a timespec.
    let mut t: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

fn sleep_until_ns(ns: u64) {
    let t = libc::timespec { tv_sec: (ns / 1_000_000_000) as libc::time_t, tv_nsec: (ns % 1_000_000_000) as libc::c_long };
    // SAFETY: an absolute sleep on the monotonic clock; EINTR only ends it early.
    unsafe { libc::clock_nanosleep(libc::CLOCK_MONOTONIC, libc::TIMER_ABSTIME, &t, std::ptr::null_mut()) };
}

/// Millisecond values in 0.01 ms bins up to 2 s (more is counted at 2 s), plus the exact maximum.
#[derive(Clone)]
struct Hist {
    bins: Vec<u64>,
    n: u64,
    max: f64,
}

impl Hist {
    const BINS: usize = 200_000;

    fn new() -> Hist {
        Hist { bins: vec![0; Self::BINS], n: 0, max: 0.0 }
    }
    fn add(&mut self, ms: f64) {
        let i = ((ms.max(0.0) * 100.0) as usize).min(Self::BINS - 1);
        self.bins[i] += 1;
        self.n += 1;
        self.max = self.max.max(ms);
    }
    fn merge(&mut self, o: &Hist) {
        for (a, b) in self.bins.iter_mut().zip(&o.bins) {
            *a += b;
        }
        self.n += o.n;
        self.max = self.max.max(o.max);
    }
    fn quantile(&self, q: f64) -> f64 {
        if self.n == 0 {
            return f64::NAN;
        }
        let rank = ((self.n - 1) as f64 * q).round() as u64;
        let mut seen = 0;
        for (i, c) in self.bins.iter().enumerate() {
            seen += c;
            if seen > rank {
                return i as f64 / 100.0;
            }
        }
        self.max
    }
    fn summary(&self) -> String {
        format!("p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms", self.quantile(0.5), self.quantile(0.99), self.max)
    }
}

enum Cmd {
    Start(usize, SocketAddrV4),
    Stop(usize),
}

/// The bulk callers' RTP: sender threads, each owning its streams in 1 ms slots.
struct Senders {
    txs: Vec<mpsc::Sender<Cmd>>,
    threads: Vec<std::thread::JoinHandle<Hist>>,
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Senders {
    /// `threads` sender threads sending from `socket`.
    /// `measuring`: when given, lateness is recorded only while it is set.
    fn spawn(socket: &UdpSocket, threads: usize, measuring: Option<Arc<AtomicBool>>) -> Senders {
        let (sent, failed, stop) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
        let mut txs = Vec::new();
        let mut handles = Vec::new();
        for _ in 0..threads {
            let (tx, rx) = mpsc::channel::<Cmd>();
            txs.push(tx);
            let socket = socket.try_clone().unwrap();
            let (sent, failed, stop, measuring) = (sent.clone(), failed.clone(), stop.clone(), measuring.clone());
            handles.push(std::thread::spawn(move || sender(socket, rx, threads, &sent, &failed, &stop, measuring.as_deref())));
        }
        Senders { txs, threads: handles, sent, failed, stop }
    }

    fn start(&self, id: usize, to: SocketAddr) {
        let SocketAddr::V4(to) = to else { return };
        let _ = self.txs[id % self.txs.len()].send(Cmd::Start(id, to));
    }

    fn stop_call(&self, id: usize) {
        let _ = self.txs[id % self.txs.len()].send(Cmd::Stop(id));
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Stops every stream; returns how late the threads woke for their slots.
    fn finish(self) -> Hist {
        self.stop.store(true, Ordering::Relaxed);
        let mut late = Hist::new();
        for t in self.threads {
            late.merge(&t.join().unwrap());
        }
        late
    }
}

/// One sender thread: every millisecond, the next packet of every stream in
/// that millisecond's slot (a stream's slot is fixed by its call number, so
/// the calls are spread evenly over the 20 ms). A thread that falls behind
/// sends the slots it missed at once, late (it records by how much).
fn sender(socket: UdpSocket, rx: mpsc::Receiver<Cmd>, threads: usize, sent: &AtomicU64, failed: &AtomicU64, stop: &AtomicBool, measuring: Option<&AtomicBool>) -> Hist {
    let mut slots: Vec<Vec<Outgoing>> = (0..SLOTS).map(|_| Vec::new()).collect();
    let mut batch = SendBatch::new();
    let mut late = Hist::new();
    let start = monotonic_ns();
    let mut slot: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let due = start + slot * 1_000_000;
        sleep_until_ns(due);
        let active = slots.iter().any(|s| !s.is_empty());
        while let Ok(cmd) = rx.try_recv() {
            match cmd {
                Cmd::Start(id, to) => {
                    let mut rng = Rng::new(id as u64 ^ (std::process::id() as u64) << 32);
                    let from = distinct_sources().then(|| media_ip(id));
                    let s = Outgoing { id, to: sockaddr(to), from, ssrc: rng.next() as u32, seq: rng.next() as u16, ts: rng.next() as u32, first: true };
                    slots[((id / threads) as u64 % SLOTS) as usize].push(s);
                }
                Cmd::Stop(id) => slots[((id / threads) as u64 % SLOTS) as usize].retain(|s| s.id != id),
            }
        }
        if active && measuring.is_none_or(|m| m.load(Ordering::Relaxed)) {
            late.add((monotonic_ns().saturating_sub(due)) as f64 / 1e6);
        }
        let streams = &mut slots[(slot % SLOTS) as usize];
        if !streams.is_empty() {
            let (s, f) = batch.send(&socket, streams);
            sent.fetch_add(s, Ordering::Relaxed);
            failed.fetch_add(f, Ordering::Relaxed);
        }
        slot += 1;
    }
    late
}

/// The server's media address and telephone-event payload type, from the SDP of a 200.
fn answer_media(msg: &str) -> Option<(SocketAddr, u8)> {
    let body = msg.split_once("\r\n\r\n")?.1;
    let (mut ip, mut port, mut te) = (None, None, 101u8);
    for l in body.lines() {
        if let Some(c) = l.strip_prefix("c=IN IP4 ") {
            ip = c.trim().parse::<Ipv4Addr>().ok();
        } else if let Some(m) = l.strip_prefix("m=audio ") {
            port = m.split_whitespace().next().and_then(|p| p.parse::<u16>().ok());
        } else if let Some(a) = l.strip_prefix("a=rtpmap:") {
            if a.contains("telephone-event") {
                te = a.split_whitespace().next().and_then(|p| p.parse().ok()).unwrap_or(te);
            }
        }
    }
    Some((SocketAddr::from((ip?, port?)), te))
}

/// Kernel receive-buffer drops of the UDP sockets bound to these ports (any
/// process), from /proc/net/udp: (sockets found, drops).
fn udp_drops(ports: &HashSet<u16>) -> (usize, u64) {
    let text = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    let (mut n, mut drops) = (0, 0);
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let Some(port) = f.get(1).and_then(|l| l.rsplit(':').next()).and_then(|p| u16::from_str_radix(p, 16).ok()) else { continue };
        if ports.contains(&port) {
            n += 1;
            drops += f.last().and_then(|d| d.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    (n, drops)
}

/// The bytes waiting in the receive queues of the UDP sockets bound to these
/// ports (/proc/net/udp rx_queue, which counts each datagram's whole buffer):
/// (sockets with something waiting, total bytes).
fn udp_queued(ports: &HashSet<u16>) -> (usize, u64) {
    let text = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    let (mut n, mut bytes) = (0, 0);
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let Some(port) = f.get(1).and_then(|l| l.rsplit(':').next()).and_then(|p| u16::from_str_radix(p, 16).ok()) else { continue };
        if ports.contains(&port) {
            let q = f.get(4).and_then(|q| q.split(':').nth(1)).and_then(|q| u64::from_str_radix(q, 16).ok()).unwrap_or(0);
            n += usize::from(q > 0);
            bytes += q;
        }
    }
    (n, bytes)
}

/// What one 172-byte RTP datagram takes in a receive queue here, measured
/// once on a socket of our own.
fn queued_bytes_per_packet() -> u64 {
    let (Ok(rx), Ok(tx)) = (UdpSocket::bind("127.0.0.1:0"), UdpSocket::bind("127.0.0.1:0")) else { return 0 };
    let to = rx.local_addr().unwrap();
    for _ in 0..10 {
        let _ = tx.send_to(&[0xffu8; 172], to);
    }
    std::thread::sleep(Duration::from_millis(20));
    udp_queued(&HashSet::from([to.port()])).1 / 10
}

/// Packets the kernel dropped from its per-CPU input queues (loopback
/// traffic goes through them), and the times its receive processing ran out
/// of budget, machine-wide (/proc/net/softnet_stat).
fn softnet() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/net/softnet_stat").unwrap_or_default();
    text.lines().fold((0, 0), |(d, q), l| {
        let f: Vec<u64> = l.split_whitespace().map(|x| u64::from_str_radix(x, 16).unwrap_or(0)).collect();
        (d + f.get(1).copied().unwrap_or(0), q + f.get(2).copied().unwrap_or(0))
    })
}

/// The machine-wide UDP RcvbufErrors counter (/proc/net/snmp).
fn rcvbuf_errors() -> u64 {
    let text = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let udp: Vec<&str> = text.lines().filter(|l| l.starts_with("Udp:")).collect();
    let (Some(names), Some(values)) = (udp.first(), udp.get(1)) else { return 0 };
    let i = names.split_whitespace().position(|n| n == "RcvbufErrors");
    i.and_then(|i| values.split_whitespace().nth(i)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// This process's user + system CPU seconds.
fn own_cpu_s() -> f64 {
    // SAFETY: getrusage writes a rusage.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut r) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(r.ru_utime) + t(r.ru_stime)
}

fn invite(server: SocketAddr, me: SocketAddr, id: &str, rtp: SocketAddrV4, cseq: u32) -> String {
    let (rtp_ip, rtp_port) = (rtp.ip(), rtp.port());
    let sdp = format!(
        "v=0\r\no=lg 1 1 IN IP4 {rtp_ip}\r\ns=-\r\nc=IN IP4 {rtp_ip}\r\nt=0 0\r\nm=audio {rtp_port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
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

fn status(msg: &str) -> Option<u16> {
    msg.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn sender_threads() -> usize {
    std::env::var("LOADGEN_SENDERS").ok().and_then(|v| v.parse().ok()).unwrap_or(1usize).clamp(1, 2)
}

/// Churn: CALLS calls arrive at RATE a second, each hanging up `hold` after it
/// is answered, as on a live trunk. Reports the set-up rate held and failures.
fn churn(server: SocketAddr, calls: usize, hold: Duration, rate: f64, media: Media) {
    // Audio goes to a port that is bound (no ICMP back to the server) and never
    // read; the callers' own audio comes from it.
    let sink = UdpSocket::bind(media_bind()).unwrap();
    let sink_port = sink.local_addr().unwrap().port();
    let senders = (media == Media::Both).then(|| {
        set_buffer(&sink, [libc::SO_SNDBUFFORCE, libc::SO_SNDBUF], 8 << 20);
        Senders::spawn(&sink, sender_threads(), None)
    });
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
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    let index = |id: &str| id.rsplit('-').next().and_then(|n| n.parse::<usize>().ok());
    let started = Instant::now();
    loop {
        let now = Instant::now();
        let due = ((now - started).as_secs_f64() * rate) as usize;
        while st.len() < calls.min(due + 1) {
            let id = format!("ch-{}-{}", std::process::id(), st.len());
            sip.send_to(invite(server, me, &id, SocketAddrV4::new(media_ip(st.len()), sink_port), 1).as_bytes(), server).unwrap();
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
                    if let (Some(s), Some((to, _))) = (senders.as_ref(), answer_media(&msg)) {
                        s.start(i, to);
                    }
                    *state = St::Up(tag, Instant::now());
                }
            } else if msg.starts_with("SIP/2.0 200") {
                if matches!(state, St::Hanging(..)) {
                    *state = St::Done;
                }
            } else if msg.starts_with("SIP/2.0 ") && !msg.starts_with("SIP/2.0 1") && is_invite {
                if matches!(state, St::Inviting(..)) {
                    *statuses.entry(status(&msg).unwrap_or(0)).or_default() += 1;
                }
                *state = St::Failed;
            }
        }
        let now = Instant::now();
        for (i, (id, state)) in st.iter_mut().enumerate() {
            match state {
                St::Inviting(at, next, interval) if now >= *next => {
                    if now - *at > Duration::from_secs(32) {
                        *statuses.entry(408).or_default() += 1;
                        *state = St::Failed;
                    } else {
                        sip.send_to(invite(server, me, id, SocketAddrV4::new(media_ip(i), sink_port), 1).as_bytes(), server).unwrap();
                        *interval = (*interval * 2).min(Duration::from_secs(4));
                        *next = now + *interval;
                    }
                }
                St::Up(tag, at) if now - *at >= hold => {
                    if let Some(s) = senders.as_ref() {
                        s.stop_call(i);
                    }
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
    let mut codes: Vec<String> = statuses.iter().map(|(c, n)| format!("{n} × {c}")).collect();
    codes.sort();
    println!(
        "churn: {calls} calls offered at {rate:.0}/s, each {:.1} s long: {done} completed, {failed} failed ({:.3}%{}), in {secs:.1} s",
        hold.as_secs_f64(),
        failed as f64 * 100.0 / calls as f64,
        if codes.is_empty() { String::new() } else { format!(": {}", codes.join(", ")) }
    );
    if let Some(s) = senders {
        let (sent, failed) = (s.sent(), s.failed.load(Ordering::Relaxed));
        let late = s.finish();
        println!("callers' audio: {sent} packets sent ({failed} sends failed); sender slots late {}", late.summary());
    }
    println!("generator CPU: {:.1} s", own_cpu_s());
}

/// What one probe measured.
struct ProbeReport {
    gaps: Vec<f64>,
    /// Key-press latencies (ms): key's first packet → first packet with the marker bit.
    keys: Vec<f64>,
    keys_pressed: usize,
    keys_unanswered: usize,
    sent: u64,
}

/// A probe call's media: times every packet received; in `both` mode sends
/// 50 packets/s and presses `#` at random moments once the main menu is up.
/// Gaps and key presses count only while `measuring` (all calls are up and
/// held); keys are pressed from the main menu on, keeping the flow there.
fn probe(s: UdpSocket, remote: Arc<OnceLock<(SocketAddr, u8)>>, media: Media, sending: Arc<AtomicBool>, measuring: Arc<AtomicBool>, stop: Arc<AtomicBool>, seed: u64) -> ProbeReport {
    let mut rng = Rng::new(seed);
    let mut buf = [0u8; 2048];
    let mut last: Option<Instant> = None;
    let mut r = ProbeReport { gaps: Vec::new(), keys: Vec::new(), keys_pressed: 0, keys_unanswered: 0, sent: 0 };
    let (ssrc, mut seq, mut ts) = (rng.next() as u32, rng.next() as u16, rng.next() as u32);
    let mut pkt = [0xffu8; 172];
    let mut next_send: Option<Instant> = None;
    let mut first_audio = true;
    // The next key press, the event being sent (its timestamp, packets sent),
    // and when its first packet went (awaiting the server's new talkspurt).
    let mut next_key: Option<Instant> = None;
    let mut event: Option<(u32, u16)> = None;
    let mut awaiting: Option<Instant> = None;
    let mut measured_key = false;
    let mut first_packet = true;
    while !stop.load(Ordering::Relaxed) {
        let measure = measuring.load(Ordering::Relaxed);
        if !measure {
            last = None;
        }
        let target = remote.get().copied().filter(|_| sending.load(Ordering::Relaxed));
        if let Some((to, te)) = target {
            let now = Instant::now();
            if event.is_none() && awaiting.is_none() && next_key.is_some_and(|k| now >= k) {
                // The key's first packet goes now, off the 20 ms cadence, so that
                // keys fall at random moments of the server's media tick.
                event = Some((ts, 0));
                next_key = None;
                next_send = Some(now);
            }
            let due = next_send.get_or_insert(now);
            if now >= *due {
                pkt[2..4].copy_from_slice(&seq.to_be_bytes());
                pkt[8..12].copy_from_slice(&ssrc.to_be_bytes());
                pkt[0] = 0x80;
                let len = match event.as_mut() {
                    // RFC 4733: five updates of growing duration, then three end packets.
                    Some((ets, n)) => {
                        pkt[1] = te | if *n == 0 { 0x80 } else { 0 };
                        pkt[4..8].copy_from_slice(&ets.to_be_bytes());
                        let end = *n >= 5;
                        let duration = 160 * (*n).min(4) + 160;
                        pkt[12] = KEY_HASH;
                        pkt[13] = if end { 0x80 } else { 0 } | 10;
                        pkt[14..16].copy_from_slice(&duration.to_be_bytes());
                        *n += 1;
                        16
                    }
                    None => {
                        pkt[1] = if first_audio { 0x80 } else { 0 };
                        pkt[4..8].copy_from_slice(&ts.to_be_bytes());
                        pkt[12..16].fill(0xff);
                        first_audio = false;
                        172
                    }
                };
                if event.is_some_and(|(_, n)| n == 1) {
                    awaiting = Some(Instant::now());
                    measured_key = measure;
                    r.keys_pressed += usize::from(measure);
                }
                // One-way: no audio from the caller, only its keys.
                if (media == Media::Both || len == 16) && s.send_to(&pkt[..len], to).is_ok() {
                    r.sent += 1;
                }
                if event.is_some_and(|(_, n)| n >= 8) {
                    event = None;
                }
                seq = seq.wrapping_add(1);
                ts = ts.wrapping_add(160);
                *due += PTIME;
                if *due + PTIME * 5 < now {
                    // Stalled (no core for us): carry on from now rather than burst.
                    *due = now + PTIME;
                }
            }
        }
        // Wake for the next packet to send or the next key, whichever is first
        // (not only when the server's packets arrive: a key sent just after one
        // would always fall right after the server's tick).
        let wake = match (target, next_send) {
            (Some(_), Some(due)) => Some(next_key.map_or(due, |k| k.min(due))),
            _ => None,
        };
        let wait = wake.map_or(Duration::from_millis(50), |w| w.saturating_duration_since(Instant::now()).clamp(Duration::from_micros(20), Duration::from_millis(50)));
        s.set_read_timeout(Some(wait)).unwrap();
        if let Ok((n, _)) = s.recv_from(&mut buf) {
            let now = Instant::now();
            if let Some(l) = last {
                r.gaps.push(now.duration_since(l).as_secs_f64() * 1000.0);
            }
            if first_packet {
                // The welcome (and, without recordings, 200 ms prompts) and the
                // main menu are over well within 1.5 s: keys go to the menu.
                next_key = Some(now + Duration::from_micros(1_500_000 + rng.below(1_000_000)));
                first_packet = false;
            }
            last = measure.then_some(now);
            let marker = n >= 2 && buf[1] & 0x80 != 0;
            if let (true, Some(at)) = (marker, awaiting) {
                if measured_key && measure {
                    r.keys.push(now.duration_since(at).as_secs_f64() * 1000.0);
                }
                awaiting = None;
                next_key = Some(now + Duration::from_micros(300_000 + rng.below(700_000)));
            }
        }
        if awaiting.is_some_and(|a| a.elapsed() > Duration::from_secs(2)) {
            r.keys_unanswered += usize::from(measured_key);
            awaiting = None;
            next_key = Some(Instant::now() + Duration::from_micros(300_000 + rng.below(700_000)));
        }
    }
    r
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    if args.len() < 3 {
        eprintln!("usage: loadgen SERVER CALLS SECONDS [PROBES] [RATE] [hold|churn] [oneway|both]");
        std::process::exit(2);
    }
    let media = match args.get(6).map(String::as_str) {
        None | Some("both") => Media::Both,
        Some("oneway") => Media::OneWay,
        Some(m) => {
            eprintln!("media mode {m}: oneway or both");
            std::process::exit(2);
        }
    };
    let server: SocketAddr = args[0].parse().expect("server address");
    let calls: usize = args[1].parse().expect("calls");
    let rate: f64 = args.get(4).and_then(|r| r.parse().ok()).unwrap_or(500.0);
    if args.get(5).is_some_and(|m| m == "churn") {
        churn(server, calls, Duration::from_secs(args[2].parse().expect("seconds")), rate, media);
        return;
    }
    let hold = Duration::from_secs(args[2].parse().expect("seconds"));
    let probes: usize = args.get(3).and_then(|p| p.parse().ok()).unwrap_or(3);
    let rcvbuf_before = rcvbuf_errors();
    let softnet_before = softnet();

    // Bulk audio goes to one port that only counts what arrives; in `both`
    // mode the bulk callers' audio is sent from it.
    let (sink, sink_port) = sink();
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let senders = (media == Media::Both).then(|| Senders::spawn(&sink, sender_threads(), Some(measuring.clone())));
    // The server sends every call's packet in one burst per media tick: how
    // long a burst lasts at the sink (from its first datagram to its last, a
    // burst ending where 5 ms pass without one) approximates the tick's send
    // work, as long as this thread keeps up.
    let bursts = {
        let (received, stop, measuring) = (received.clone(), stop.clone(), measuring.clone());
        sink.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        std::thread::spawn(move || {
            let mut batch = RecvBatch::new();
            let mut spans = Hist::new();
            let mut burst: Option<(Instant, Instant)> = None;
            // Sequence numbers of what arrived while measuring.
            let mut seqs = SeqCount::default();
            while !stop.load(Ordering::Relaxed) {
                let n = batch.recv(&sink);
                received.fetch_add(n as u64, Ordering::Relaxed);
                if n == 0 {
                    continue;
                }
                let measure = measuring.load(Ordering::Relaxed);
                if measure {
                    for i in 0..n {
                        seqs.packet(batch.packet(i));
                    }
                }
                let now = Instant::now();
                match burst.as_mut() {
                    Some((_, last)) if now.duration_since(*last) < Duration::from_millis(5) => *last = now,
                    _ => {
                        if let (Some((first, last)), true) = (burst, measure) {
                            spans.add(last.duration_since(first).as_secs_f64() * 1000.0);
                        }
                        burst = Some((now, now));
                    }
                }
            }
            (spans, seqs.totals())
        })
    };
    // Probes: their own sockets, timing every packet (and sending their own).
    let sending = Arc::new(AtomicBool::new(true));
    let mut probe_ports = Vec::new();
    let mut probe_remotes = Vec::new();
    let mut probe_threads = Vec::new();
    for i in 0..probes {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        probe_ports.push(s.local_addr().unwrap().port());
        let remote = Arc::new(OnceLock::new());
        probe_remotes.push(remote.clone());
        let (stop, sending, measuring) = (stop.clone(), sending.clone(), measuring.clone());
        let seed = (std::process::id() as u64) << 16 | i as u64;
        probe_threads.push(std::thread::spawn(move || probe(s, remote, media, sending, measuring, stop, seed)));
    }

    let sip = UdpSocket::bind("127.0.0.1:0").unwrap();
    set_buffer(&sip, [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF], 8 << 20);
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
    let index = |id: &str| id.rsplit('-').next().and_then(|n| n.parse::<usize>().ok());
    let mut state: HashMap<String, Call> = HashMap::new();
    let mut failures = 0usize;
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    // The server's RTP ports (from its answers), for its sockets' drop counters.
    let mut server_ports: HashSet<u16> = HashSet::new();
    let mut up = 0usize;
    let started = Instant::now();
    let mut sent = 0usize;
    // (call, its RTP address, when sent, next retransmission, interval): RFC 3261 timer A.
    let mut sent_at: Vec<(String, SocketAddrV4, Instant, Instant, Duration)> = Vec::new();
    let mut retransmit_checked = Instant::now();
    // Set up every call at RATE calls/s, the probes first (so that they are in
    // even when the server refuses calls at load); they measure once all are up.
    while up + failures < total {
        let due = (started.elapsed().as_secs_f64() * rate) as usize;
        while sent < total.min(due + 1) {
            let n = if sent < probes { calls + sent } else { sent - probes };
            let id = format!("lg-{}-{n}", std::process::id());
            let port = if n >= calls { probe_ports[n - calls] } else { sink_port };
            let ip = if n >= calls { Ipv4Addr::LOCALHOST } else { media_ip(n) };
            let media = SocketAddrV4::new(ip, port);
            sip.send_to(invite(server, me, &id, media, 1).as_bytes(), server).unwrap();
            sent_at.push((id.clone(), media, Instant::now(), Instant::now() + Duration::from_millis(500), Duration::from_millis(500)));
            state.insert(id, Call { to_tag: None, done: false, ended_by_server: false });
            sent += 1;
        }
        if let Some(msg) = recv() {
            if let Some(id) = answer_request(&sip, server, &msg) {
                ended_by_server(&id, &mut state, senders.as_ref(), calls);
                continue;
            }
            let Some(id) = header(&msg, "Call-ID").map(str::to_string) else { continue };
            if msg.starts_with("SIP/2.0 200") && header(&msg, "CSeq").is_some_and(|c| c.ends_with("INVITE")) {
                let tag = header(&msg, "To").and_then(|t| t.split("tag=").nth(1)).unwrap_or("").to_string();
                sip.send_to(in_dialog("ACK", server, me, &id, &tag, 1).as_bytes(), server).unwrap();
                if let Some(c) = state.get_mut(&id).filter(|c| c.to_tag.is_none() && !c.done) {
                    c.to_tag = Some(tag);
                    up += 1;
                    let answer = answer_media(&msg);
                    if let Some((to, _)) = answer {
                        server_ports.insert(to.port());
                    }
                    match (index(&id), answer) {
                        (Some(i), Some((to, _))) if i < calls => {
                            if let Some(s) = senders.as_ref() {
                                s.start(i, to);
                            }
                        }
                        (Some(i), Some(a)) => {
                            let _ = probe_remotes[i - calls].set(a);
                        }
                        _ => {}
                    }
                }
            } else if msg.starts_with("SIP/2.0 ") && !msg.starts_with("SIP/2.0 1") && state.get(&id).is_some_and(|c| c.to_tag.is_none() && !c.done) {
                failures += 1;
                *statuses.entry(status(&msg).unwrap_or(0)).or_default() += 1;
                state.get_mut(&id).unwrap().done = true;
            }
        }
        // Unanswered INVITEs are retransmitted (500 ms, doubling to 4 s) like any
        // UAC's; one unanswered for 32 s (64 × T1) has failed. (Looked at every
        // 10 ms: scanning every call per message would cost the generator more
        // CPU than it needs, on cores it shares with the server.)
        let now = Instant::now();
        if now < retransmit_checked + Duration::from_millis(10) {
            continue;
        }
        retransmit_checked = now;
        for (id, media, at, next, interval) in sent_at.iter_mut() {
            let c = state.get_mut(id.as_str()).unwrap();
            if c.to_tag.is_some() || c.done {
                continue;
            }
            if at.elapsed() > Duration::from_secs(32) {
                c.done = true;
                failures += 1;
                *statuses.entry(408).or_default() += 1;
            } else if now >= *next {
                sip.send_to(invite(server, me, id, *media, 1).as_bytes(), server).unwrap();
                *interval = (*interval * 2).min(Duration::from_secs(4));
                *next = now + *interval;
            }
        }
    }
    let setup = started.elapsed();
    let established = state.values().filter(|c| c.to_tag.is_some()).count();
    eprintln!("{established} calls up in {:.1} s ({failures} failed)", setup.as_secs_f64());
    let load_start = Instant::now();
    measuring.store(true, Ordering::Relaxed);
    let before = received.load(Ordering::Relaxed);
    let sent_before = senders.as_ref().map_or(0, Senders::sent);
    // Hold, answering what the server asks meanwhile (a BYE when a call's
    // flow ends it) and acknowledging retransmitted 200s.
    // Every second, how much of the callers' audio waits unread in the
    // server's RTP sockets: its receive backlog.
    let hold_end = load_start + hold;
    let per_packet = queued_bytes_per_packet().max(1);
    let mut backlog: Vec<(usize, u64)> = Vec::new();
    let mut next_sample = load_start + Duration::from_secs(1);
    while let Some(left) = hold_end.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) {
        if Instant::now() >= next_sample {
            let (n, bytes) = udp_queued(&server_ports);
            backlog.push((n, bytes / per_packet));
            next_sample += Duration::from_secs(1);
        }
        let Ok(msg) = msg_rx.recv_timeout(left.min(Duration::from_millis(100))) else { continue };
        if let Some(id) = answer_request(&sip, server, &msg) {
            ended_by_server(&id, &mut state, senders.as_ref(), calls);
        } else if msg.starts_with("SIP/2.0 200") && header(&msg, "CSeq").is_some_and(|c| c.ends_with("INVITE")) {
            if let (Some(id), Some(tag)) = (header(&msg, "Call-ID"), header(&msg, "To").and_then(|t| t.split("tag=").nth(1))) {
                sip.send_to(in_dialog("ACK", server, me, id, tag, 1).as_bytes(), server).unwrap();
            }
        }
    }
    let window = load_start.elapsed().as_secs_f64();
    let packets = received.load(Ordering::Relaxed) - before;
    let pps = packets as f64 / window;
    let sent_pps = (senders.as_ref().map_or(0, Senders::sent) - sent_before) as f64 / window;
    // Drops in the kernel at the server's RTP sockets, before they close.
    let (server_rtp_sockets, server_rtp_drops) = udp_drops(&server_ports);
    // Hang up everything: the callers stop sending, then BYE, retransmitting
    // unanswered BYEs (timer E) like any UA.
    measuring.store(false, Ordering::Relaxed);
    sending.store(false, Ordering::Relaxed);
    let (bulk_sent, send_failed, late) = match senders {
        Some(s) => {
            let failed = s.failed.load(Ordering::Relaxed);
            let sent = s.sent();
            (sent, failed, Some(s.finish()))
        }
        None => (0, 0, None),
    };
    let mut pending: HashMap<String, (String, Instant, Duration)> = state
        .iter()
        .filter(|(_, c)| !c.ended_by_server)
        .filter_map(|(id, c)| c.to_tag.clone().map(|t| (id.clone(), (t, Instant::now(), Duration::from_millis(500)))))
        .collect();
    let mut byes = pending.len();
    let mut server_hung_up = state.values().filter(|c| c.ended_by_server).count();
    for (i, (id, (tag, _, _))) in pending.iter().enumerate() {
        sip.send_to(in_dialog("BYE", server, me, id, tag, 2).as_bytes(), server).unwrap();
        if i % 50 == 49 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let mut bye_retransmissions = 0usize;
    // Final answers to our BYEs other than 200 (481: the call was gone), by status.
    let mut bye_refused: HashMap<u16, usize> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(32);
    let mut checked = Instant::now();
    while !pending.is_empty() && Instant::now() < deadline {
        if let Some(msg) = recv() {
            if let Some(id) = answer_request(&sip, server, &msg) {
                // The server's flow hung up as we did: the BYEs crossed.
                if pending.remove(&id).is_some() {
                    byes -= 1;
                    server_hung_up += 1;
                }
            } else if !msg.starts_with("SIP/2.0 1") && header(&msg, "CSeq").is_some_and(|c| c.ends_with("BYE")) {
                if let Some(id) = header(&msg, "Call-ID") {
                    if pending.remove(id).is_some() && !msg.starts_with("SIP/2.0 200") {
                        *bye_refused.entry(status(&msg).unwrap_or(0)).or_default() += 1;
                    }
                }
            } else if msg.starts_with("SIP/2.0 200") {
                // A retransmitted 200 to an INVITE: our ACK was lost; send it again.
                if let (Some(id), Some(tag)) = (header(&msg, "Call-ID"), header(&msg, "To").and_then(|t| t.split("tag=").nth(1))) {
                    sip.send_to(in_dialog("ACK", server, me, id, tag, 1).as_bytes(), server).unwrap();
                }
            }
        }
        let now = Instant::now();
        if now < checked + Duration::from_millis(10) {
            continue;
        }
        checked = now;
        for (id, (tag, next, interval)) in pending.iter_mut() {
            if now >= *next + *interval {
                sip.send_to(in_dialog("BYE", server, me, id, tag, 2).as_bytes(), server).unwrap();
                bye_retransmissions += 1;
                *interval = (*interval * 2).min(Duration::from_secs(4));
                *next = now;
            }
        }
    }
    let refused: usize = bye_refused.values().sum();
    let ok_byes = byes - pending.len() - refused;
    let (_, server_sip_drops) = udp_drops(&HashSet::from([server.port()]));
    let own: HashSet<u16> = HashSet::from([sink_port, me.port()]);
    let (_, own_drops) = udp_drops(&own);
    let (_, probe_drops) = udp_drops(&probe_ports.iter().copied().collect());
    stop.store(true, Ordering::Relaxed);
    let reports: Vec<ProbeReport> = probe_threads.into_iter().map(|t| t.join().unwrap()).collect();
    let (bursts, (server_sent, server_delivered)) = bursts.join().unwrap();
    let mut gaps: Vec<f64> = reports.iter().flat_map(|r| r.gaps.iter().copied()).collect();
    // Only the hold was measured; a gap over a second is a probe call that ended.
    gaps.retain(|g| *g < 1000.0);
    gaps.sort_by(f64::total_cmp);
    let mut keys: Vec<f64> = reports.iter().flat_map(|r| r.keys.iter().copied()).collect();
    keys.sort_by(f64::total_cmp);
    if std::env::var_os("LOADGEN_DUMP_KEYS").is_some() {
        eprintln!("key latencies: {:?}", keys.iter().map(|k| (k * 10.0).round() / 10.0).collect::<Vec<_>>());
    }
    let mut codes: Vec<String> = statuses.iter().map(|(c, n)| format!("{n} × {c}")).collect();
    codes.sort();
    println!(
        "calls: {established} established, {failures} failed{}, {ok_byes}/{byes} hung up cleanly ({bye_retransmissions} BYE retransmissions){}",
        if codes.is_empty() { String::new() } else { format!(" ({})", codes.join(", ")) },
        if server_hung_up == 0 { String::new() } else { format!(", {server_hung_up} hung up by the server's flow first") }
    );
    if !bye_refused.is_empty() {
        let mut codes: Vec<String> = bye_refused.iter().map(|(c, n)| format!("{n} × {c}")).collect();
        codes.sort();
        println!("BYEs answered with an error: {}", codes.join(", "));
    }
    println!("bulk audio received: {pps:.0} packets/s over {window:.0} s (expected {} × 50 = {})", calls, calls * 50);
    println!(
        "bulk audio by sequence numbers over the hold: the server sent {server_sent} ({:.0}/s), {server_delivered} arrived ({:.2}%)",
        server_sent as f64 / window,
        server_delivered as f64 * 100.0 / server_sent.max(1) as f64
    );
    println!("server's tick bursts at our sink ({}): span {}", bursts.n, bursts.summary());
    if !backlog.is_empty() {
        let mean = backlog.iter().map(|b| b.1).sum::<u64>() as f64 / backlog.len() as f64;
        let (worst_sockets, worst) = backlog.iter().copied().max_by_key(|b| b.1).unwrap_or_default();
        let rate = (established * 50).max(1) as f64;
        println!(
            "server's RTP receive backlog (unread packets in its sockets, each second of the hold): mean {mean:.0} (~{:.0} ms of the callers' audio), worst {worst} (~{:.0} ms) in {worst_sockets} sockets ({per_packet} bytes queued per packet)",
            mean * 1000.0 / rate,
            worst as f64 * 1000.0 / rate
        );
    }
    if let Some(late) = late {
        println!(
            "callers' audio sent: {sent_pps:.0} packets/s over {window:.0} s (expected {}), {bulk_sent} in all from {} sender thread(s), {send_failed} sends failed; sender slots late (while held) {}",
            calls * 50,
            sender_threads(),
            late.summary()
        );
    }
    println!(
        "probes' packets sent: {}; key presses while held: {} pressed, {} answered, {} unanswered within 2 s",
        reports.iter().map(|r| r.sent).sum::<u64>(),
        reports.iter().map(|r| r.keys_pressed).sum::<usize>(),
        keys.len(),
        reports.iter().map(|r| r.keys_unanswered).sum::<usize>()
    );
    println!(
        "kernel drops (/proc/net/udp): server RTP sockets {server_rtp_drops} (over {server_rtp_sockets} sockets, before hang-up), server SIP socket {server_sip_drops}; ours: sink + SIP {own_drops}, probes {probe_drops}; machine-wide RcvbufErrors +{}, input-queue drops +{} (receive processing out of budget {} times)",
        rcvbuf_errors().saturating_sub(rcvbuf_before),
        softnet().0.saturating_sub(softnet_before.0),
        softnet().1.saturating_sub(softnet_before.1)
    );
    println!(
        "probe inter-packet gaps over {} packets: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        gaps.len(),
        percentile(&gaps, 0.5),
        percentile(&gaps, 0.99),
        gaps.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "key-press latency (# → first packet of the new prompt) over {} presses: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        keys.len(),
        percentile(&keys, 0.5),
        percentile(&keys, 0.99),
        keys.last().copied().unwrap_or(f64::NAN)
    );
    println!("generator CPU: {:.1} s", own_cpu_s());
}
