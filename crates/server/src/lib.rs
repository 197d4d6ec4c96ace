//! `ivr serve`: the thin tokio shell around the sans-IO cores.
//!
//! One task owns the SIP socket, the [`ivr_sip::endpoint::Endpoint`], every
//! call's [`ivr_vm::Session`] and a single 20 ms media tick that sends the next
//! RTP packet of every call (pre-encoded G.711, no per-call transcoding). Each
//! call's RTP socket has a small receive task that turns RFC 4733 packets into
//! keys. Service requests run on the blocking pool, so a slow backend never holds
//! up other calls. A call's fault ends that call, never the server.

mod admin;
mod handoff;
mod media;
mod records;
mod tcp;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ivr_bytecode::Program;
use ivr_media::sdp;
use ivr_services::{Backend, Request, Val};
use ivr_sip::endpoint::{CallKey, Endpoint, Event as SipEvent};
use ivr_vm::{Action, CallInfo, Event, OpId, Session, Value};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{info, warn};

pub use handoff::contact_addr;
pub use media::{reading, PromptAudio};
pub use records::CallRecord;

/// Everything `ivr serve` needs, resolved by the CLI.
pub struct ServerConfig {
    /// SIP addresses, each for UDP and TCP (IPv4 and IPv6 alike).
    pub listen: Vec<SocketAddr>,
    /// RTP ports to use, inclusive.
    pub rtp_ports: (u16, u16),
    /// The flows served (each answers the numbers of its entries).
    pub programs: Vec<(String, Arc<Program>)>,
    /// Directory the prompt audio paths are relative to.
    pub flows_dir: PathBuf,
    pub backend: Option<Arc<dyn Backend>>,
    /// Where recorded messages go (the embedded store); `record` fails without it.
    pub messages: Option<Arc<ivr_services::Embedded>>,
    /// Where call records are appended (`calls.jsonl`).
    pub data_dir: PathBuf,
    pub max_calls: usize,
    /// Let the phone ring this long before answering (0: answer at once).
    pub ring_ms: u64,
    /// SIP requests a second allowed from one source address (bursts of twice that).
    pub rate_per_source: u32,
    /// Detect DTMF tones in the caller's audio as well as RFC 4733 events.
    pub inband_dtmf: bool,
    /// Symmetric RTP: send to where the caller's RTP comes from (NAT).
    pub latch_rtp: bool,
    /// Recompiles the flows (on SIGHUP / `ivr reload`); a failure keeps the old ones.
    pub reload: Option<Reloader>,
    /// Agents and queues. With none, hand-offs answer `no_agents` / `absent`.
    pub acd: ivr_acd::AcdConfig,
    /// The admin HTTP/JSON API's address (agents, queues, KPIs), if any.
    pub admin: Option<SocketAddr>,
    /// When set, admin requests must carry `Authorization: Bearer <token>`.
    pub admin_token: Option<String>,
    /// The digest realm agents' phones authenticate in.
    pub realm: String,
    /// Where `transfer NUMBER` calls go: a SIP URI with `{number}`, e.g.
    /// `sip:{number}@192.0.2.1:5060` (a gateway). Without one a transfer ends the call.
    pub transfer_gateway: Option<String>,
}

/// What a reload produces: the recompiled flows and the agents and queues
/// read again.
pub struct Reloaded {
    pub programs: Vec<(String, Arc<Program>)>,
    pub acd: ivr_acd::AcdConfig,
}

/// Produces a fresh set of compiled flows and agents, or says why not.
pub type Reloader = Box<dyn Fn() -> Result<Reloaded, String>>;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

enum Internal {
    /// A SIP message that arrived over TCP, or UDP at another listen address:
    /// (our address, the sender, the message).
    Sip(SocketAddr, SocketAddr, Vec<u8>),
    TcpOpen(SocketAddr, mpsc::UnboundedSender<Vec<u8>>),
    TcpClosed(SocketAddr),
    /// The caller's RTP comes from here (symmetric RTP latching).
    Latch(CallKey, SocketAddr),
    /// The head of a message too large to take, over TCP.
    TooLarge(SocketAddr, Vec<u8>),
    Digit(CallKey, char),
    /// Caller audio while a message is being recorded.
    Audio(CallKey, Vec<i16>),
    Completed(CallKey, OpId, String, Vec<(String, Value)>),
    /// An admin API request, answered on the channel.
    Admin(admin::Request, tokio::sync::oneshot::Sender<admin::Response>),
}

struct Call {
    session: Session,
    program: Arc<Program>,
    prompts: Arc<PromptAudio>,
    rtp: Arc<UdpSocket>,
    port: u16,
    stream: media::Stream,
    remote: Option<sdp::Negotiated>,
    confirmed: bool,
    hangup_when_quiet: bool,
    /// When to answer (after ringing); `None` once answered.
    answer_at: Option<(u64, String)>,
    record: CallRecord,
    secret_listen: bool,
    receiver: tokio::task::JoinHandle<()>,
    /// Tells the receive task to forward the caller's audio.
    capture: Arc<std::sync::atomic::AtomicBool>,
    recording: Option<Recording>,
    /// A queue or agent hand-off in progress.
    handoff: Option<handoff::Pending>,
    /// Set while bridged: the caller's RTP goes to the agent.
    relay: media::RelaySlot,
}

/// The RTP port range: even ports, bound on the SIP address a call uses.
pub(crate) struct Ports {
    free: VecDeque<u16>,
}

impl Ports {
    /// A bound socket on a free port; ports another process holds are skipped
    /// (and tried again later).
    fn bind(&mut self, ip: IpAddr) -> Option<(u16, Arc<UdpSocket>)> {
        for _ in 0..self.free.len().min(16) {
            let port = self.free.pop_front()?;
            let bound = std::net::UdpSocket::bind(SocketAddr::new(ip, port)).and_then(|s| {
                s.set_nonblocking(true)?;
                UdpSocket::from_std(s)
            });
            match bound {
                Ok(s) => return Some((port, Arc::new(s))),
                Err(e) => {
                    warn!("cannot bind RTP port {port}: {e}");
                    self.free.push_back(port);
                }
            }
        }
        None
    }

    fn release(&mut self, port: u16) {
        self.free.push_back(port);
    }
}

struct Recording {
    op: OpId,
    category: String,
    recorder: ivr_services::Recorder,
}

/// Silence after speech that ends a message.
const RECORD_SILENCE_MS: u64 = 5_000;
/// Sample level (of 32767) that counts as speech.
const RECORD_VOICE_LEVEL: i16 = 600;

/// Runs the server until Ctrl-C / SIGTERM.
pub async fn run(mut cfg: ServerConfig) -> Result<(), ServerError> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Internal>();
    // Each listen address: a UDP socket and a TCP listener. The first socket is
    // read by this loop itself; the others by a task each.
    let mut sockets: Vec<(SocketAddr, Arc<UdpSocket>)> = Vec::new();
    for &addr in &cfg.listen {
        let udp = UdpSocket::bind(addr).await.map_err(|source| ServerError::Bind { addr, source })?;
        let local = udp.local_addr()?;
        let tcp = tokio::net::TcpListener::bind(local).await.map_err(|source| ServerError::Bind { addr: local, source })?;
        tokio::spawn(tcp::accept(tcp, local, tx.clone()));
        sockets.push((local, Arc::new(udp)));
    }
    let Some((local, sip)) = sockets.first().cloned() else {
        return Err(ServerError::Io(std::io::Error::other("no address to listen on")));
    };
    for (l, s) in sockets.iter().skip(1).cloned() {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            while let Ok((n, from)) = s.recv_from(&mut buf).await {
                if tx.send(Internal::Sip(l, from, buf[..n].to_vec())).is_err() {
                    return;
                }
            }
        });
    }
    let started = Instant::now();
    let seed = jiff::Timestamp::now().as_nanosecond() as u64 ^ std::process::id() as u64;
    let mut endpoint = Endpoint::new(local, "ivr/0.1", seed);
    for (l, _) in sockets.iter().skip(1) {
        endpoint.add_local(*l);
    }
    let mut prepared = prepare(&cfg.programs, &cfg.flows_dir);
    let mut limiter = ivr_sip::limit::RateLimiter::new(cfg.rate_per_source, cfg.rate_per_source.saturating_mul(2));
    let pid_file = cfg.data_dir.join("ivr.pid");
    let _ = std::fs::write(&pid_file, std::process::id().to_string());
    let mut hangups = reload_signal();
    let mut calls: HashMap<CallKey, Call> = HashMap::new();
    let mut ports = Ports { free: (cfg.rtp_ports.0..=cfg.rtp_ports.1).filter(|p| p % 2 == 0).collect() };
    let mut agents = handoff::Agents::new(cfg.acd.clone(), cfg.realm.clone(), cfg.transfer_gateway.clone(), seed, 0);
    endpoint.set_registrar(!cfg.acd.agents.is_empty());

    if let Some(addr) = cfg.admin {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| ServerError::Bind { addr, source })?;
        info!(addr = %listener.local_addr()?, "admin API listening");
        tokio::spawn(admin::serve(listener, cfg.admin_token.clone(), tx.clone()));
    }
    let mut tcp_peers: HashMap<SocketAddr, mpsc::UnboundedSender<Vec<u8>>> = HashMap::new();
    let mut records = records::Writer::open(&cfg.data_dir)?;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut buf = vec![0u8; 65_536];
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let mut draining: Option<Instant> = None;
    let names: Vec<String> = sockets.iter().map(|(l, _)| format!("sip:{l}")).collect();
    info!(listen = %names.join(", "), flows = cfg.programs.len(), "listening for SIP over UDP and TCP");
    println!("ivr serving on {} (UDP and TCP); Ctrl-C to stop", names.join(", "));
    // Calls' wake-ups (flow timers, answering after ringing), earliest first; an
    // entry may be stale (the call moved on), which costs one harmless check.
    let mut timers: BinaryHeap<Reverse<(u64, CallKey)>> = BinaryHeap::new();
    // Calls that had an event since their actions were last drained.
    let mut dirty: Vec<CallKey> = Vec::new();
    loop {
        let now_ms = || started.elapsed().as_millis() as u64;
        let sip_deadline = endpoint.poll_timeout();
        let vm_deadline = timers.peek().map(|Reverse((t, _))| *t);
        let next = [sip_deadline, vm_deadline, agents.poll_timeout()].into_iter().flatten().min();
        let sleep = tokio::time::sleep(Duration::from_millis(next.map_or(1_000, |t| t.saturating_sub(now_ms()).max(1))));
        tokio::select! {
            r = sip.recv_from(&mut buf) => {
                if let Ok((n, from)) = r {
                    if limiter.allow(now_ms(), from.ip()) {
                        endpoint.handle(now_ms(), from, &buf[..n]);
                    }
                }
            }
            _ = tick.tick() => {
                let t = now_ms();
                // The tick's sends are the server's biggest cost: with many calls,
                // they are split over two threads (sockets are shared, streams are
                // per call).
                let mut all: Vec<(&CallKey, &mut Call)> = calls.iter_mut().collect();
                let (hangups, played) = if all.len() >= PARALLEL_TICK_CALLS {
                    let mid = all.len() / 2;
                    let (a, b) = all.split_at_mut(mid);
                    std::thread::scope(|scope| {
                        let other = scope.spawn(|| media_tick(a, t));
                        let mine = media_tick(b, t);
                        let theirs = other.join().unwrap_or_default();
                        (mine.0.into_iter().chain(theirs.0).collect::<Vec<_>>(), mine.1.into_iter().chain(theirs.1).collect::<Vec<_>>())
                    })
                } else {
                    media_tick(&mut all, t)
                };
                dirty.extend(played);
                for key in hangups {
                    // BYE only once the caller has acknowledged our answer (RFC 3261 §15).
                    let Some(call) = calls.get_mut(&key) else { continue };
                    dirty.push(key);
                    call.hangup_when_quiet = false;
                    endpoint.hangup(t, key);
                    call.session.handle_event(t, Event::Hangup);
                    call.record.outcome.get_or_insert_with(|| "flow_ended".into());
                }
            }
            Some(msg) = rx.recv() => match msg {
                Internal::Sip(at, from, data) => {
                    if limiter.allow(now_ms(), from.ip()) {
                        endpoint.handle_at(now_ms(), at, from, &data);
                    }
                }
                Internal::TcpOpen(peer, writer) => {
                    tcp_peers.insert(peer, writer);
                }
                Internal::TcpClosed(peer) => {
                    tcp_peers.remove(&peer);
                }
                Internal::TooLarge(peer, head) => endpoint.too_large(now_ms(), peer, &head),
                Internal::Latch(key, addr) => if let Some(c) = calls.get_mut(&key) {
                    info!(call_id = %c.record.call_id, %addr, "RTP latched to the caller's source address");
                    c.stream.latch(addr);
                },
                Internal::Digit(key, d) => if let Some(c) = calls.get_mut(&key) {
                    key_pressed(key, c, d, &cfg, &tx, &mut agents, now_ms());
                    dirty.push(key);
                },
                Internal::Audio(key, pcm) => if let Some(c) = calls.get_mut(&key) {
                    let end = c.recording.as_mut().and_then(|r| r.recorder.push_audio(&pcm));
                    if let Some(end) = end {
                        finish_recording(key, c, end, &cfg, &tx);
                    }
                },
                Internal::Completed(key, op, outcome, fields) => if let Some(c) = calls.get_mut(&key) {
                    c.session.handle_event(now_ms(), Event::Completed { op, outcome, fields });
                    dirty.push(key);
                },
                Internal::Admin(req, reply) => {
                    let _ = reply.send(admin::handle(&mut agents, &calls, req, now_ms()));
                }
            },
            _ = sleep => {
                let t = now_ms();
                endpoint.handle_timeout(t);
                agents.handle_timeout(t);
                while let Some(Reverse((when, key))) = timers.peek().copied() {
                    if when > t {
                        break;
                    }
                    timers.pop();
                    let Some(c) = calls.get_mut(&key) else { continue };
                    c.session.handle_timeout(t);
                    if c.answer_at.as_ref().is_some_and(|a| a.0 <= t) {
                        let (_, answer) = c.answer_at.take().unwrap();
                        endpoint.accept(t, key, &answer);
                    }
                    dirty.push(key);
                }
            }
            _ = hangups.recv() => {
                // New calls get the new flows; calls in progress keep theirs.
                match cfg.reload.as_ref().map(|r| r()) {
                    Some(Ok(Reloaded { programs, acd })) => {
                        prepared = prepare(&programs, &cfg.flows_dir);
                        info!(flows = programs.len(), agents = acd.agents.len(), queues = acd.queues.len(), "reloaded the flows for new calls, and the agents and queues");
                        cfg.programs = programs;
                        endpoint.set_registrar(!acd.agents.is_empty());
                        agents.reconfigure(now_ms(), acd);
                    }
                    Some(Err(e)) => warn!("reload refused, keeping the current flows: {e}"),
                    None => {}
                }
            }
            _ = &mut shutdown, if draining.is_none() => {
                info!(calls = calls.len(), "stopping: new calls get 503, calls in progress may finish");
                draining = Some(Instant::now());
            }
        }
        // SIP events.
        while let Some(ev) = endpoint.poll_event() {
            let t = now_ms();
            match ev {
                SipEvent::Invite { call, dialed, caller, sdp, peer, local: reached, call_id } => {
                    let target = cfg.programs.iter().position(|(_, p)| p.entries.iter().any(|e| e.number == dialed));
                    let offer = sdp::parse_offer(&String::from_utf8_lossy(&sdp)).and_then(|o| o.negotiate());
                    // A number we do not serve is answered like any other and then
                    // hung up: the signalling does not tell a prober which exist.
                    let target = target.map_or(Target::Unknown, Target::Flow);
                    match (target, offer) {
                        _ if draining.is_some() || calls.len() >= cfg.max_calls => {
                            endpoint.reject(t, call, 503, "Service Unavailable", &[("Retry-After", "5")]);
                        }
                        (_, Err(e)) => {
                            info!(%call_id, "refused: {e}");
                            endpoint.reject(t, call, 488, "Not Acceptable Here", &[]);
                        }
                        (target, Ok(neg)) => {
                            let Some((port, rtp)) = ports.bind(reached.ip()) else {
                                endpoint.reject(t, call, 503, "Service Unavailable", &[("Retry-After", "5")]);
                                continue;
                            };
                            let (name, program, (audio, version)) = match target {
                                Target::Flow(i) => (cfg.programs[i].0.clone(), cfg.programs[i].1.clone(), prepared[i].clone()),
                                Target::Unknown => {
                                    let p = not_in_service(&dialed);
                                    let version = records::fingerprint(&p);
                                    ("not_in_service".to_string(), p, (Arc::new(PromptAudio::empty()), version))
                                }
                            };
                            let info = CallInfo { dialed: dialed.clone(), caller: caller.clone(), language: None, wall_clock_ms: jiff::Timestamp::now().as_millisecond() };
                            let session = match Session::start(program.clone(), info, t) {
                                Ok(s) => s,
                                Err(e) => {
                                    warn!(%call_id, "{e}");
                                    endpoint.reject(t, call, 404, "Not Found", &[]);
                                    ports.release(port);
                                    continue;
                                }
                            };
                            let answer = sdp::answer(&neg, SocketAddr::new(reached.ip(), port), call.0, 1);
                            let answer_at = if cfg.ring_ms > 0 {
                                endpoint.ringing(t, call);
                                Some((t + cfg.ring_ms, answer))
                            } else {
                                endpoint.accept(t, call, &answer);
                                None
                            };
                            info!(%call_id, %peer, dialed = %dialed, flow = %name, codec = neg.codec.name(), rtp = port, "call answered");
                            let capture = Arc::new(std::sync::atomic::AtomicBool::new(false));
                            let opts = media::ReceiveOptions { dtmf_pt: neg.dtmf_payload_type, codec: neg.codec, inband_dtmf: cfg.inband_dtmf, latch: cfg.latch_rtp };
                            let relay: media::RelaySlot = Arc::new(std::sync::Mutex::new(None));
                            let receiver = media::spawn_receiver(rtp.clone(), neg.remote, opts, capture.clone(), relay.clone(), call, tx.clone());
                            let record = CallRecord::new(&call_id, &dialed, &caller, &name, &version);
                            dirty.push(call);
                            calls.insert(call, Call {
                                session, program, prompts: audio, rtp, port,
                                stream: media::Stream::new(neg.codec, neg.remote, neg.send, neg.ptime_ms, seed ^ call.0),
                                remote: Some(neg), confirmed: false, hangup_when_quiet: false, answer_at, record, secret_listen: false, receiver, capture, recording: None,
                                handoff: None, relay,
                            });
                        }
                    }
                }
                SipEvent::Confirmed { call } => {
                    if let Some(c) = calls.get_mut(&call) {
                        c.confirmed = true;
                    }
                }
                SipEvent::Reinvite { call, sdp } if agents.is_leg(call) => agents.leg_reinvite(t, call, &sdp, &mut calls, &mut endpoint),
                SipEvent::Reinvite { call, sdp } => {
                    if let Some(c) = calls.get_mut(&call) {
                        // Bridged audio is relayed as it is: keep its codec if offered.
                        let bridged = c.relay.lock().unwrap().is_some();
                        let keep = bridged.then(|| c.stream.codec());
                        match sdp::parse_offer(&String::from_utf8_lossy(&sdp)).and_then(|o| o.negotiate_keeping(keep)) {
                            Ok(neg) if keep.is_none_or(|k| k == neg.codec) => {
                                c.stream.renegotiate(neg.codec, neg.remote, neg.send, neg.ptime_ms);
                                let local_rtp = c.rtp.local_addr().unwrap_or_else(|_| SocketAddr::new(local.ip(), c.port));
                                endpoint.accept(t, call, &sdp::answer(&neg, local_rtp, call.0, 2));
                                if bridged {
                                    agents.caller_moved(call, neg.remote);
                                }
                                c.remote = Some(neg);
                            }
                            _ => endpoint.reject(t, call, 488, "Not Acceptable Here", &[]),
                        }
                    }
                }
                SipEvent::Dtmf { call, key } if agents.is_leg(call) => agents.leg_key(call, key),
                SipEvent::Dtmf { call, key } => {
                    if let Some(c) = calls.get_mut(&call) {
                        key_pressed(call, c, key, &cfg, &tx, &mut agents, t);
                        dirty.push(call);
                    }
                }
                SipEvent::Progress { .. } => {}
                SipEvent::Answered { call, sdp } => agents.leg_answered(t, call, &sdp, &mut calls, &mut endpoint, &mut ports),
                SipEvent::Failed { call, code } => agents.leg_failed(t, call, code, &mut calls, &mut ports),
                SipEvent::Register(r) => agents.register(t, jiff::Timestamp::now().as_millisecond() as u64, r, &mut endpoint),
                SipEvent::Bye { call } | SipEvent::AckTimeout { call } if agents.is_leg(call) => agents.leg_ended(t, call, &mut calls, &mut ports),
                SipEvent::Cancelled { call } | SipEvent::Bye { call } | SipEvent::AckTimeout { call } => {
                    if let Some(mut c) = calls.remove(&call) {
                        agents.caller_gone(t, call, &mut c, &mut endpoint, &mut ports);
                        // Hanging up ends a message being recorded: it is kept.
                        if c.recording.is_some() {
                            finish_recording(call, &mut c, ivr_services::RecordEnd::Terminator, &cfg, &tx);
                        }
                        c.session.handle_event(t, Event::Hangup);
                        let why = match ev {
                            SipEvent::Cancelled { .. } => "caller_cancelled",
                            SipEvent::Bye { .. } => "caller_hung_up",
                            _ => "no_ack",
                        };
                        c.record.outcome.get_or_insert_with(|| why.into());
                        finish(c, &mut records, &mut ports);
                    }
                }
            }
        }
        // VM actions of the calls that had events, and what the queues decided
        // (which may resume flows); then each call's next wake-up.
        loop {
            agents.drain(now_ms(), &mut calls, &mut endpoint, &mut ports, &mut records, &mut dirty);
            if dirty.is_empty() {
                break;
            }
            dirty.sort_unstable();
            dirty.dedup();
            for key in std::mem::take(&mut dirty) {
                let Some(c) = calls.get_mut(&key) else { continue };
                while let Some(a) = c.session.poll_action() {
                    perform(key, c, a, &cfg, &tx, &mut agents, now_ms());
                }
                if c.session.is_finished() && !c.hangup_when_quiet && c.record.outcome.is_some() && c.stream.is_idle() && c.handoff.is_none() {
                    let c = calls.remove(&key).unwrap();
                    finish(c, &mut records, &mut ports);
                    continue;
                }
                for when in [c.session.poll_timeout(), c.answer_at.as_ref().map(|a| a.0)].into_iter().flatten() {
                    timers.push(Reverse((when, key)));
                }
            }
        }
        while let Some((to, data)) = endpoint.poll_transmit() {
            match tcp_peers.get(&to) {
                Some(conn) => {
                    let _ = conn.send(data);
                }
                None => {
                    let from = endpoint.local_for(to);
                    let socket = sockets.iter().find(|(l, _)| *l == from).map_or(&sip, |(_, s)| s);
                    let _ = socket.send_to(&data, to).await;
                }
            }
        }
        if let Some(since) = draining {
            if calls.is_empty() || since.elapsed() > Duration::from_secs(30) {
                let _ = std::fs::remove_file(&pid_file);
                records.close();
                info!("stopped");
                return Ok(());
            }
        }
    }
}

/// What each flow needs once, not per call: its prompt audio, decoded and
/// encoded, and its version fingerprint for call records.
fn prepare(programs: &[(String, Arc<Program>)], flows_dir: &std::path::Path) -> Vec<(Arc<PromptAudio>, String)> {
    programs.iter().map(|(_, p)| (Arc::new(PromptAudio::load(p, flows_dir)), records::fingerprint(p))).collect()
}

/// Which flow a call goes to.
#[derive(Clone, Copy)]
enum Target {
    Flow(usize),
    Unknown,
}

/// The flow for a number nobody serves: answer, then hang up.
fn not_in_service(dialed: &str) -> Arc<Program> {
    Arc::new(Program {
        languages: vec!["zh".into()],
        entries: vec![ivr_bytecode::Entry { number: dialed.to_string(), pc: 0 }],
        code: vec![ivr_bytecode::Instr::Hangup(ivr_bytecode::HangupReason::Normal)],
        ..Program::default()
    })
}

/// Calls at which the media tick splits its work over two threads.
const PARALLEL_TICK_CALLS: usize = 256;

/// Sends the next 20 ms of every call in `calls`; returns the calls that are
/// ready to hang up and those whose prompt finished.
fn media_tick(calls: &mut [(&CallKey, &mut Call)], now: u64) -> (Vec<CallKey>, Vec<CallKey>) {
    let (mut hangups, mut played) = (Vec::new(), Vec::new());
    for (key, call) in calls.iter_mut() {
        let rtp = &call.rtp;
        if let Some(done) = call.stream.tick(call.confirmed, |packet, to| {
            let _ = rtp.try_send_to(packet, to);
        }) {
            call.session.handle_event(now, Event::PlayDone(done));
            played.push(**key);
        }
        if call.hangup_when_quiet && call.confirmed && call.stream.is_idle() {
            hangups.push(**key);
        }
    }
    (hangups, played)
}

fn finish(c: Call, records: &mut records::Writer, ports: &mut Ports) {
    c.receiver.abort();
    let mut rec = c.record;
    rec.end();
    if let Err(e) = records.append(&rec) {
        warn!(call_id = %rec.call_id, "cannot write the call record: {e}");
    }
    info!(call_id = %rec.call_id, outcome = rec.outcome.as_deref().unwrap_or(""), "call ended");
    ports.release(c.port);
}

fn perform(key: CallKey, c: &mut Call, action: Action, cfg: &ServerConfig, tx: &mpsc::UnboundedSender<Internal>, agents: &mut handoff::Agents, now: u64) {
    match action {
        Action::EnterNode { name, .. } => c.record.nodes.push(name),
        Action::Play { id, prompt, lang, .. } => {
            let audio = c.prompts.prompt(prompt as usize, lang as usize);
            c.stream.queue(id, vec![audio]);
        }
        Action::Say { id, kind, value, lang } => {
            let audio = c.prompts.say(&c.program, kind, &value, lang as usize);
            c.stream.queue(id, audio);
        }
        Action::StopPlayback => c.stream.stop(),
        Action::Listen { secret, .. } => c.secret_listen = secret,
        Action::Request { op, service, args, timeout_ms: _ } => {
            // By convention a service argument named `score` is the caller's survey score.
            if let Some(score) = args.iter().find(|a| a.name == "score" && !a.secret) {
                c.record.survey_score = Some(score.value.to_string());
            }
            let backend = cfg.backend.clone();
            let tx = tx.clone();
            let req_key = format!("{}:{}", c.record.call_id, op.0);
            let declared: Vec<(String, Vec<(String, ivr_bytecode::Type)>)> = c
                .program
                .ops
                .iter()
                .find(|o| matches!(&o.kind, ivr_bytecode::OpKind::Request { service: s, .. } if *s == service))
                .map(|o| o.outcomes.iter().map(|oc| (oc.name.clone(), oc.fields.iter().map(|f| (f.0.clone(), f.1)).collect())).collect())
                .unwrap_or_default();
            tokio::task::spawn_blocking(move || {
                let vals: Vec<(String, Val)> = args.iter().map(|a| (a.name.clone(), to_val(&a.value))).collect();
                let now_ms = jiff::Timestamp::now().as_millisecond();
                let result = match backend.filter(|b| b.provides(&service)) {
                    Some(b) => b.call(&Request { service: &service, args: &vals, key: &req_key, now_ms }),
                    None => Err(ivr_services::ServiceError::Unknown(service.clone())),
                };
                let (outcome, fields) = match result {
                    Ok(reply) => {
                        let types = declared.iter().find(|(n, _)| *n == reply.outcome).map(|(_, f)| f.clone()).unwrap_or_default();
                        let fields = types
                            .iter()
                            .filter_map(|(n, ty)| reply.fields.iter().find(|(k, _)| k == n).and_then(|(_, v)| from_val(v, *ty)).map(|v| (n.clone(), v)))
                            .collect();
                        (reply.outcome, fields)
                    }
                    Err(e) => {
                        warn!(service = %service, "service failed: {e}");
                        ("failed".to_string(), Vec::new())
                    }
                };
                let _ = tx.send(Internal::Completed(key, op, outcome, fields));
            });
        }
        Action::Enqueue { .. } | Action::DialAgent { .. } => agents.start(now, key, c, action),
        Action::Record { op, category, max_ms } => {
            if cfg.messages.is_none() {
                c.session.handle_event(now, Event::Completed { op, outcome: "failed".into(), fields: vec![] });
                return;
            }
            // A beep, then the caller's audio until #, silence or the maximum.
            c.stream.queue(ivr_vm::PlayId(0), vec![c.prompts.beep()]);
            let recorder = ivr_services::Recorder::new(8_000, max_ms, RECORD_SILENCE_MS, RECORD_VOICE_LEVEL);
            info!(call_id = %c.record.call_id, %category, max_ms, "recording a message");
            c.recording = Some(Recording { op, category, recorder });
            c.capture.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Action::Cancel { .. } => {}
        Action::SetLanguage { .. } => {}
        Action::Transfer { target } => {
            c.record.outcome = Some(format!("transfer:{target}"));
            if !agents.transfer(now, key, c, target.clone()) {
                warn!(call_id = %c.record.call_id, %target, "no transfer_gateway is configured (or the number is not one); ending the call");
                c.hangup_when_quiet = true;
            }
        }
        Action::Fault { message, pc } => {
            let at = c.program.line_of(pc as usize).map(|(f, l)| format!("{f}:{l}")).unwrap_or_default();
            warn!(call_id = %c.record.call_id, %at, "flow fault: {message}");
            c.record.outcome = Some("fault".into());
        }
        Action::Hangup { reason } => {
            c.record.outcome.get_or_insert_with(|| format!("hangup:{}", reason.name()));
            c.hangup_when_quiet = true;
        }
    }
}

/// A key from the caller: it ends a recording on `#`, may take a caller out of
/// a queue, else goes to the flow.
fn key_pressed(key: CallKey, c: &mut Call, d: char, cfg: &ServerConfig, tx: &mpsc::UnboundedSender<Internal>, agents: &mut handoff::Agents, now: u64) {
    tracing::debug!(call_id = %c.record.call_id, node = c.session.current_node().unwrap_or(""), recording = c.recording.is_some(), "key");
    if c.recording.is_some() {
        if let Some(end) = c.recording.as_mut().and_then(|r| r.recorder.digit(d)) {
            finish_recording(key, c, end, cfg, tx);
        }
        return;
    }
    if c.handoff.is_some() {
        return agents.key(now, key, c, d);
    }
    c.record.key(d, c.secret_listen);
    c.session.handle_event(now, Event::Digit(d));
}

/// Stops capturing and stores the message on the blocking pool; the flow hears
/// `saved` only once the recording is safely on disk.
fn finish_recording(key: CallKey, c: &mut Call, end: ivr_services::RecordEnd, cfg: &ServerConfig, tx: &mpsc::UnboundedSender<Internal>) {
    let Some(rec) = c.recording.take() else { return };
    c.capture.store(false, std::sync::atomic::Ordering::Relaxed);
    let (pcm, rate) = rec.recorder.finish(end);
    let store = cfg.messages.clone();
    let dir = cfg.data_dir.clone();
    let caller = c.record.caller.clone();
    let id_key = format!("{}:{}", c.record.call_id, rec.op.0);
    let (tx, op, category) = (tx.clone(), rec.op, rec.category);
    tokio::task::spawn_blocking(move || {
        let now_ms = jiff::Timestamp::now().as_millisecond();
        let saved = store.map(|s| s.with_store(|st| st.save_message(&dir, &caller, &category, &pcm, rate, now_ms, &id_key)));
        let (outcome, fields) = match saved {
            Some(Ok(m)) => {
                info!(id = %m.id, category = %m.category, duration_ms = m.duration_ms, "message recorded");
                ("saved", vec![("duration_ms".to_string(), Value::Num(m.duration_ms.into()))])
            }
            Some(Err(e)) => {
                warn!("cannot store the message: {e}");
                ("failed", Vec::new())
            }
            None => ("failed", Vec::new()),
        };
        let _ = tx.send(Internal::Completed(key, op, outcome.to_string(), fields));
    });
}

/// A flow value as a service argument.
pub fn to_val(v: &Value) -> Val {
    match v {
        Value::Text(s) => Val::Text(s.to_string()),
        Value::Num(n) => Val::Num(*n),
        Value::Bool(b) => Val::Bool(*b),
    }
}

/// A service's answer field as the type the flow declared, if it converts.
pub fn from_val(v: &Val, ty: ivr_bytecode::Type) -> Option<Value> {
    use ivr_bytecode::Type;
    match (v, ty) {
        (Val::Text(s), Type::Text) => Some(Value::text(s)),
        (Val::Num(n), Type::Number) => Some(Value::Num(*n)),
        (Val::Text(s), Type::Number) => s.parse().ok().map(Value::Num),
        (Val::Num(n), Type::Text) => Some(Value::text(&n.to_string())),
        (Val::Bool(b), Type::Bool) => Some(Value::Bool(*b)),
        _ => None,
    }
}

/// SIGHUP, as a stream (never fires where there is no such signal).
fn reload_signal() -> mpsc::UnboundedReceiver<()> {
    let (tx, rx) = mpsc::unbounded_channel();
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else { return };
        while hup.recv().await.is_some() {
            if tx.send(()).is_err() {
                return;
            }
        }
    });
    #[cfg(not(unix))]
    drop(tx);
    rx
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
