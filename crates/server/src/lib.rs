//! `ivr serve`: the thin tokio shell around the call core.
//!
//! [`ivr_call::Core`] decides everything about every call; this shell only
//! pumps into it what the outside world does (SIP datagrams and TCP
//! messages, keys and audio from the RTP receive tasks, the media clock's
//! finished prompts, service answers from the blocking pool, requests to
//! the operations listener (health, readiness, metrics, admin), signals) and carries out what it says (SIP sends, media commands, service
//! calls, record lines). A bug in one call's handling ends that call in the
//! core; nothing here can take the process down on a call's input.

mod exposition;
mod media;
mod mmsg;
mod ops;
mod records;
mod deploys;
pub mod releases;
pub mod services;
mod tcp;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ivr_bytecode::Program;
use ivr_call::{CallKey, Core, CoreConfig, Input, OpId, Output, Value};
use ivr_services::Backend;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{info, warn};

pub use services::{from_val, to_val};
pub use ivr_call::prompts::reading;
pub use ivr_call::records::CallRecord;
pub use ivr_call::{CallLimits, SourceLimits};
pub use tcp::TcpLimits;
pub use ivr_sip::uri::host_addr as contact_addr;

/// Everything `ivr serve` needs, resolved by the CLI.
pub struct ServerConfig {
    /// SIP addresses, each for UDP and TCP (IPv4 and IPv6 alike).
    pub listen: Vec<SocketAddr>,
    /// RTP ports to use, inclusive.
    pub rtp_ports: (u16, u16),
    /// One RTP port shared by every call that does not latch (told apart by
    /// the caller's media address); `None`: a port per call.
    pub rtp_shared_port: Option<u16>,
    /// The flows on disk, compiled (each answers the numbers of its entries),
    /// or why they do not compile: the release last served is served instead.
    pub programs: Result<Vec<(String, Arc<Program>)>, String>,
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
    /// The operations listener's address (health, readiness, metrics and
    /// the admin API), if any.
    pub ops_listen: Option<SocketAddr>,
    /// When set, admin requests must carry `Authorization: Bearer <token>`.
    pub admin_token: Option<String>,
    /// When set, `GET /metrics` must carry `Authorization: Bearer <token>`.
    pub metrics_token: Option<String>,
    /// The digest realm agents' phones authenticate in.
    pub realm: String,
    /// Where `transfer NUMBER` calls go: a SIP URI with `{number}`, e.g.
    /// `sip:{number}@192.0.2.1:5060` (a gateway). Without one a transfer ends the call.
    pub transfer_gateway: Option<String>,
    /// How long a call may last, and the flows' loop guard.
    pub limits: ivr_call::CallLimits,
    /// What one source may ask before it is shed (new calls, unacknowledged calls).
    pub per_source: ivr_call::SourceLimits,
    /// A call whose caller sends no RTP for this long is ended (`no_media`; 0: never).
    pub rtp_timeout_ms: u64,
    /// Refuse new calls while the media tick's smoothed lateness plus work
    /// passes this many milliseconds (0: never).
    pub overload_at_ms: f64,
    /// The Server / User-Agent header (`None`: left out).
    pub user_agent: Option<String>,
    /// Answer at the source port even without `rport`.
    pub force_rport: bool,
    /// SIP over TCP: connections at once, from one address, and the time a
    /// whole message may take.
    pub tcp: tcp::TcpLimits,
}

/// What a reload produces: the recompiled flows and the agents and queues
/// read again.
pub struct Reloaded {
    pub programs: Vec<(String, Arc<Program>)>,
    pub acd: ivr_acd::AcdConfig,
}

/// Produces a fresh set of compiled flows and agents, or says why not (run
/// on a blocking thread: compiling takes longer than a media tick).
pub type Reloader = Arc<dyn Fn() -> Result<Reloaded, String> + Send + Sync>;

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
    Digit(CallKey, char, ivr_call::KeySource),
    /// Caller audio while a message is being recorded.
    Audio(CallKey, Vec<i16>),
    Completed(CallKey, OpId, String, Vec<(String, Value)>),
    /// An admin API request, answered on the channel.
    Admin(ivr_call::AdminRequest, tokio::sync::oneshot::Sender<(u16, serde_json::Value)>),
    /// A tick of the media clock (its own thread): plays finished, its load, silent callers.
    Ticked(media::Ticked),
    /// A request about releases (deploy, rollback, promote, list), answered on the channel.
    Releases(ivr_call::AdminRequest, tokio::sync::oneshot::Sender<(u16, serde_json::Value)>),
    /// A deploy's flows compiled on a blocking thread.
    Compiled(Box<deploys::Compiled>),
    /// A release's prompts decoded on a blocking thread, for the core.
    Prepared(Box<deploys::Prepared>),
    /// Health, readiness or metrics, answered on the channel.
    Ops(ops::Query, tokio::sync::oneshot::Sender<ops::Reply>),
}

/// Runs the server until Ctrl-C / SIGTERM.
pub async fn run(cfg: ServerConfig) -> Result<(), ServerError> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Internal>();
    let sockets = listen(&cfg, &tx).await?;
    let Some((local, sip)) = sockets.first().cloned() else {
        return Err(ServerError::Io(std::io::Error::other("no address to listen on")));
    };
    let started = Instant::now();
    let now_ms = || started.elapsed().as_millis() as u64;
    let core_cfg = core_config(&cfg, &sockets);
    std::fs::create_dir_all(&cfg.data_dir)?;
    let releases = releases::Releases::start(&cfg.data_dir, cfg.programs.clone(), deploys::wall_ms()).map_err(std::io::Error::other)?;
    let mut core = Core::new(core_cfg, Vec::new(), cfg.acd.clone(), 0);
    let mut deploys = deploys::Deploys::new(releases, cfg.reload.clone(), cfg.flows_dir.clone(), cfg.data_dir.clone(), cfg.acd.clone(), tx.clone());
    deploys.serve_now(&mut core, 0);
    let pid_file = cfg.data_dir.join("ivr.pid");
    let mut hangups = reload_signal();
    let tokens = ops::Tokens { admin: cfg.admin_token.clone(), metrics: cfg.metrics_token.clone(), loopback: true };
    let ops_at = ops::listen(cfg.ops_listen, tokens, &tx).await?;
    let mut shell = Shell { sockets, sip: sip.clone(), tcp_peers: HashMap::new(), media: media::Plane::new(tx.clone()), records: records::Writer::open(&cfg.data_dir)?, tx: tx.clone(), backend: cfg.backend.clone(), messages: cfg.messages.clone(), data_dir: cfg.data_dir.clone() };
    let _ = std::fs::write(&pid_file, std::process::id().to_string());
    shell.media.start_clock(cfg.rtp_timeout_ms)?;
    let mut buf = vec![0u8; 65_536];
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let mut draining: Option<Instant> = None;
    let names: Vec<String> = shell.sockets.iter().map(|(l, _)| format!("sip:{l}")).collect();
    info!(listen = %names.join(", "), release = %deploys.releases.serving().current.0.id, "listening for SIP over UDP and TCP");
    let ops_at = ops_at.map(|a| format!(", operations on http://{a}")).unwrap_or_default();
    println!("ivr serving on {} (UDP and TCP){ops_at}; Ctrl-C to stop", names.join(", "));
    loop {
        let sleep = tokio::time::sleep(Duration::from_millis(core.poll_timeout().map_or(1_000, |t| t.saturating_sub(now_ms()).max(1))));
        tokio::select! {
            r = sip.recv_from(&mut buf) => if let Ok((n, from)) = r {
                core.handle(now_ms(), Input::Sip { local, from, data: &buf[..n] });
            },
            Some(msg) = rx.recv() => match msg {
                Internal::Ticked(t) => {
                    // The media clock's thread sent calls' next 20 ms (a slot's, or a frame's end).
                    for call in t.silent {
                        core.handle(now_ms(), Input::MediaTimeout { call });
                    }
                    if let Some((late_ms, work_ms)) = t.load {
                        core.handle(now_ms(), Input::MediaTick { late_ms, work_ms });
                    }
                    for (call, id) in t.played {
                        core.handle(now_ms(), Input::PlayDone { call, id });
                    }
                }
                Internal::Sip(at, from, data) => core.handle(now_ms(), Input::Sip { local: at, from, data: &data }),
                Internal::TcpOpen(peer, writer) => { shell.tcp_peers.insert(peer, writer); }
                Internal::TcpClosed(peer) => { shell.tcp_peers.remove(&peer); }
                Internal::TooLarge(from, head) => core.handle(now_ms(), Input::SipTooLarge { from, head: &head }),
                Internal::Latch(call, addr) => shell.media.latch(call, addr),
                Internal::Digit(call, key, source) => core.handle(now_ms(), Input::Digit { call, key, source }),
                Internal::Audio(call, pcm) => core.handle(now_ms(), Input::Audio { call, pcm: &pcm }),
                Internal::Completed(call, op, outcome, fields) => core.handle(now_ms(), Input::Completed { call, op, outcome, fields }),
                Internal::Admin(req, reply) => { let _ = reply.send(core.admin(now_ms(), &req)); }
                Internal::Releases(req, reply) => deploys.request(&req, reply),
                Internal::Compiled(c) => deploys.compiled(*c),
                Internal::Prepared(p) => deploys.prepared(&mut core, now_ms(), *p),
                Internal::Ops(query, reply) => { let _ = reply.send(ops::answer(&core, &shell.records, query)); }
            },
            _ = sleep => core.handle_timeout(now_ms()),
            // A reload deploys the flows on disk if they changed (calls in progress keep theirs).
            _ = hangups.recv() => deploys.signal(),
            _ = &mut shutdown, if draining.is_none() => {
                core.handle(now_ms(), Input::Drain);
                draining = Some(Instant::now());
            }
        }
        shell.perform(&mut core, now_ms).await;
        if let Some(since) = draining {
            if core.calls() == 0 || since.elapsed() > Duration::from_secs(30) {
                let _ = std::fs::remove_file(&pid_file);
                shell.records.close();
                info!("stopped");
                return Ok(());
            }
        }
    }
}

/// Binds each listen address: a UDP socket and a TCP listener (with the
/// file-descriptor limit raised first). The first UDP socket is read by the
/// main loop itself; the others by a task each.
async fn listen(cfg: &ServerConfig, tx: &mpsc::UnboundedSender<Internal>) -> Result<Vec<(SocketAddr, Arc<UdpSocket>)>, ServerError> {
    let fd_limit = tcp::raise_fd_limit();
    info!(fd_limit, "file-descriptor limit");
    let mut sockets: Vec<(SocketAddr, Arc<UdpSocket>)> = Vec::new();
    for &addr in &cfg.listen {
        let udp = UdpSocket::bind(addr).await.map_err(|source| ServerError::Bind { addr, source })?;
        let local = udp.local_addr()?;
        let tcp = tokio::net::TcpListener::bind(local).await.map_err(|source| ServerError::Bind { addr: local, source })?;
        tokio::spawn(tcp::accept(tcp, local, cfg.tcp, fd_limit, tx.clone()));
        sockets.push((local, Arc::new(udp)));
    }
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
    Ok(sockets)
}

/// The call core's configuration: the server's, with the wall clock read once.
fn core_config(cfg: &ServerConfig, sockets: &[(SocketAddr, Arc<UdpSocket>)]) -> CoreConfig {
    let wall_clock_at_zero_ms = jiff::Timestamp::now().as_millisecond();
    CoreConfig {
        listen: sockets.iter().map(|(l, _)| *l).collect(),
        rtp_ports: cfg.rtp_ports,
        rtp_shared_port: cfg.rtp_shared_port.filter(|_| media::shared_port_can_hold(sockets.first().map(|(l, _)| *l))),
        max_calls: cfg.max_calls,
        ring_ms: cfg.ring_ms,
        rate_per_source: cfg.rate_per_source,
        inband_dtmf: cfg.inband_dtmf,
        latch_rtp: cfg.latch_rtp,
        can_record: cfg.messages.is_some(),
        realm: cfg.realm.clone(),
        transfer_gateway: cfg.transfer_gateway.clone(),
        limits: cfg.limits,
        per_source: cfg.per_source.clone(),
        admission: ivr_call::admission::Admission::closing_at(cfg.overload_at_ms),
        user_agent: cfg.user_agent.clone(),
        force_rport: cfg.force_rport,
        wall_clock_at_zero_ms,
        seed: wall_clock_at_zero_ms as u64 ^ (std::process::id() as u64).rotate_left(32),
    }
}

/// What the shell owns: sockets, the media plane, the record writer and the
/// way to the services.
struct Shell {
    sockets: Vec<(SocketAddr, Arc<UdpSocket>)>,
    sip: Arc<UdpSocket>,
    tcp_peers: HashMap<SocketAddr, mpsc::UnboundedSender<Vec<u8>>>,
    media: media::Plane,
    records: records::Writer,
    tx: mpsc::UnboundedSender<Internal>,
    backend: Option<Arc<dyn Backend>>,
    messages: Option<Arc<ivr_services::Embedded>>,
    data_dir: PathBuf,
}

impl Shell {
    /// Carries out everything the core asked for.
    async fn perform(&mut self, core: &mut Core, now_ms: impl Fn() -> u64) {
        while let Some(out) = core.poll_output() {
            match out {
                Output::Transmit { from, to, data } => match self.tcp_peers.get(&to) {
                    Some(conn) => {
                        let _ = conn.send(data);
                    }
                    None => {
                        let socket = self.sockets.iter().find(|(l, _)| *l == from).map_or(&self.sip, |(_, s)| s);
                        let _ = socket.send_to(&data, to).await;
                    }
                },
                Output::Media(m) => {
                    if let Some((call, ok)) = self.media.perform(m) {
                        core.handle(now_ms(), Input::MediaOpened { call, ok });
                    }
                }
                Output::Request { call, op, request } => {
                    let (backend, tx) = (self.backend.clone(), self.tx.clone());
                    tokio::task::spawn_blocking(move || {
                        let (outcome, fields) = services::answer(&request, backend.as_deref(), jiff::Timestamp::now().as_millisecond());
                        let _ = tx.send(Internal::Completed(call, op, outcome, fields));
                    });
                }
                Output::SaveMessage(m) => {
                    let (store, dir, tx) = (self.messages.clone(), self.data_dir.clone(), self.tx.clone());
                    tokio::task::spawn_blocking(move || {
                        let (outcome, fields) = save_message(store.as_deref(), &dir, &m);
                        let _ = tx.send(Internal::Completed(m.call, m.op, outcome.to_string(), fields));
                    });
                }
                Output::Record { log, line } => self.records.write(log, line),
            }
        }
    }
}

/// Stores a recorded message (on the blocking pool): `saved` once it is on disk.
fn save_message(store: Option<&ivr_services::Embedded>, dir: &Path, m: &ivr_call::SaveMessage) -> (&'static str, Vec<(String, Value)>) {
    let now_ms = jiff::Timestamp::now().as_millisecond();
    match store.map(|s| s.with_store(|st| st.save_message(dir, &m.caller, &m.category, &m.pcm, m.rate_hz, now_ms, &m.key))) {
        Some(Ok(saved)) => {
            info!(id = %saved.id, category = %saved.category, duration_ms = saved.duration_ms, "message recorded");
            ("saved", vec![("duration_ms".to_string(), Value::Num(saved.duration_ms.into()))])
        }
        Some(Err(e)) => {
            warn!("cannot store the message: {e}");
            ("failed", Vec::new())
        }
        None => ("failed", Vec::new()),
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
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                warn!("cannot listen for SIGTERM ({e}); Ctrl-C still stops the server");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
