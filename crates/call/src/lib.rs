//! The call core: every call's state, sans-IO.
//!
//! [`Core`] owns the SIP user agent ([`ivr_sip::endpoint::Endpoint`]), each
//! call's flow [`Session`], what its media should be doing, its hand-off to
//! agents (the queue core [`ivr_acd::Acd`] and the agent legs of the
//! back-to-back user agent), message recording, agents' registrations and
//! the call records. The host drives it the quinn-proto way:
//!
//! ```text
//! core.handle(now, Input::…)          a datagram, a key, a finished prompt, a service answer
//! core.handle_timeout(now)            at core.poll_timeout()
//! while let Some(out) = core.poll_output() { … }   Transmit, Media, Request, SaveMessage, Record
//! ```
//!
//! It reads no clock (time is `now`, milliseconds since the host started, and
//! wall-clock facts arrive in [`CoreConfig::wall_clock_at_zero_ms`]), opens
//! no socket or file, spawns nothing. Polling is total: after `handle`, every
//! consequence is already queued as outputs. Its order never depends on
//! hash-map iteration, so a test replays exactly. What operators watch
//! (calls, SIP messages, keys, service latency) it counts as plain numbers
//! in [`metrics`]; the host renders them.

mod admin;
pub mod admission;
mod handoff;
pub mod host;
pub mod metrics;
mod ports;
pub mod prompts;
pub mod records;

use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::cmp::Reverse;
use std::net::SocketAddr;
use std::sync::Arc;

use ivr_bytecode::Program;
use ivr_media::audio::EncodedPrompt;
use ivr_media::sdp::{self, Codec};
use ivr_sip::endpoint::{Endpoint, Event as SipEvent};
use ivr_vm::{Action, CallInfo, Event, Session};
use tracing::{info, warn};

pub use admin::AdminRequest;
pub use ivr_media::dtmf::KeySource;
pub use ivr_sip::endpoint::CallKey;
pub use ivr_vm::{OpId, PlayId, Value};
pub use prompts::PromptAudio;
pub use records::{CallRecord, Log};

use handoff::Agents;
use ports::Ports;

/// A flow the core serves: its program, its prompts (decoded once), the
/// fingerprint call records carry, and the release (deployed version of the
/// whole flow set) it belongs to.
#[derive(Clone)]
pub struct Flow {
    pub name: String,
    pub program: Arc<Program>,
    pub prompts: Arc<PromptAudio>,
    pub version: String,
    /// The deployed version of the flow set this flow came in (empty: none).
    pub release: String,
}

/// A new release tried on some new calls before it serves them all: the
/// callers listed, and this share of the others.
#[derive(Debug, Clone)]
pub struct Canary {
    pub flows: Vec<Flow>,
    /// Of new calls, 0–100.
    pub percent: u8,
    /// Callers' numbers that always get the canary.
    pub callers: Vec<String>,
}

impl Canary {
    /// Whether a new call goes to the canary: a listed caller, or its Call-ID
    /// in the canary's share (a hash, so the same call always lands the same way).
    pub fn takes(&self, caller: &str, call_id: &str) -> bool {
        if self.callers.iter().any(|c| c == caller) {
            return true;
        }
        let h = call_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
        h % 100 < u64::from(self.percent.min(100))
    }
}

impl std::fmt::Debug for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flow").field("name", &self.name).field("version", &self.version).finish()
    }
}

impl Flow {
    pub fn new(name: &str, program: Arc<Program>, prompts: Arc<PromptAudio>) -> Flow {
        let version = records::fingerprint(&program);
        Flow { name: name.to_string(), program, prompts, version, release: String::new() }
    }

    /// The same flow, as part of `release`.
    pub fn in_release(mut self, release: &str) -> Flow {
        self.release = release.to_string();
        self
    }
}

/// What limits a call's life.
#[derive(Debug, Clone, Copy)]
pub struct CallLimits {
    /// A call is ended (BYE, outcome `max_duration`) this long after it began.
    pub max_call_ms: u64,
    /// The flow's loop guard (see [`ivr_vm::Limits`]).
    pub flow: ivr_vm::Limits,
}

impl Default for CallLimits {
    fn default() -> CallLimits {
        CallLimits { max_call_ms: 2 * 3_600_000, flow: ivr_vm::Limits::default() }
    }
}

/// What one source address may ask of us before it is shed, so a flood from
/// one place cannot deny service to the others. Trusted sources (the SIP
/// proxies in front, which carry everyone's calls) are exempt.
#[derive(Debug, Clone)]
pub struct SourceLimits {
    /// New calls (INVITEs) a second from one address, in bursts of twice
    /// that; over it, INVITEs are dropped unanswered (cheapest for us, no
    /// help to a flood; a real phone retransmits).
    pub new_calls_per_s: u32,
    /// Calls answered and not yet acknowledged (ACK) from one address; over
    /// it, new calls get 503 with Retry-After. A flood that never ACKs holds
    /// at most this many calls (and RTP ports).
    pub awaiting_ack: u32,
    /// Calls in progress from one address (acknowledged or not); over it,
    /// new calls get 503. One address cannot fill the node's call slots and
    /// RTP ports with calls it keeps up in silence.
    pub calls: u32,
    /// Addresses exempt from these limits.
    pub trusted: Vec<std::net::IpAddr>,
}

impl Default for SourceLimits {
    fn default() -> SourceLimits {
        SourceLimits { new_calls_per_s: 50, awaiting_ack: 16, calls: 64, trusted: Vec::new() }
    }
}

/// What the core has shed or refused, by protection (for metrics and tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shed {
    /// Requests dropped by the per-source request rate.
    pub rate: u64,
    /// INVITEs dropped by the per-source new-call rate.
    pub new_call_rate: u64,
    /// Calls refused (503) for too many unacknowledged calls from one source,
    /// or in all (a spray of sources that never acknowledge).
    pub awaiting_ack: u64,
    /// Calls refused (503) for too many calls in progress from one source.
    pub source_calls: u64,
    /// Calls refused (503) at `max_calls`, while draining, or with no RTP port.
    pub capacity: u64,
    /// Calls refused (503) while the media clock was overloaded.
    pub overload: u64,
}

/// How the core runs; everything the host resolved from the configuration.
pub struct CoreConfig {
    /// Our SIP addresses (the first is the default; see [`Endpoint::add_local`]).
    pub listen: Vec<SocketAddr>,
    /// RTP ports to use, inclusive (even ports only).
    pub rtp_ports: (u16, u16),
    /// One RTP port shared by the calls that do not latch, told apart by
    /// their negotiated media address (see [`Media::Open`]); `None`: every
    /// call has a port of its own.
    pub rtp_shared_port: Option<u16>,
    pub max_calls: usize,
    /// Let the phone ring this long before answering (0: answer at once).
    pub ring_ms: u64,
    /// SIP requests a second allowed from one source address (bursts of twice that).
    pub rate_per_source: u32,
    /// Detect DTMF tones in the caller's audio too.
    pub inband_dtmf: bool,
    /// Symmetric RTP: send to where the caller's RTP comes from (NAT).
    pub latch_rtp: bool,
    /// Messages can be stored (`record` answers `failed` otherwise).
    pub can_record: bool,
    /// The digest realm agents' phones authenticate in.
    pub realm: String,
    /// Where `transfer NUMBER` calls go: a SIP URI with `{number}`.
    pub transfer_gateway: Option<String>,
    pub limits: CallLimits,
    /// Limits per source address on new calls (see [`SourceLimits`]).
    pub per_source: SourceLimits,
    /// When load refuses new calls (see [`admission`]).
    pub admission: admission::Admission,
    /// The `Server` / `User-Agent` we send (`None`: neither header).
    pub user_agent: Option<String>,
    /// Answer requests at their source port even without `rport` (phones
    /// behind NAT that do not ask for it); RFC 3261 says the Via's port.
    pub force_rport: bool,
    /// Wall-clock Unix milliseconds at the host's time 0.
    pub wall_clock_at_zero_ms: i64,
    /// Seeds tags, SSRCs and nonces.
    pub seed: u64,
}

/// What happened, as the host tells it.
#[derive(Debug)]
pub enum Input<'a> {
    /// A SIP message from `from`, received at our address `local`.
    Sip { local: SocketAddr, from: SocketAddr, data: &'a [u8] },
    /// The head of a SIP message too large to take (over TCP): answered 513.
    SipTooLarge { from: SocketAddr, head: &'a [u8] },
    /// The host opened (or could not open) the RTP port of [`Media::Open`].
    MediaOpened { call: CallKey, ok: bool },
    /// A [`Media::Play`] finished playing.
    PlayDone { call: CallKey, id: PlayId },
    /// A key from the caller's media (RFC 4733 or in-band).
    Digit { call: CallKey, key: char, source: KeySource },
    /// Caller audio while [`Media::Capture`] is on.
    Audio { call: CallKey, pcm: &'a [i16] },
    /// A [`Output::Request`] or [`Output::SaveMessage`] finished.
    Completed { call: CallKey, op: OpId, outcome: String, fields: Vec<(String, Value)> },
    /// One media tick of the host: how late it started after it was due and
    /// how long its work took (milliseconds). Sustained load refuses new calls
    /// (503) before the calls in progress suffer (see [`admission`]).
    MediaTick { late_ms: f64, work_ms: f64 },
    /// The caller has sent no RTP for the host's media timeout: gone, or
    /// the offer pointed our audio somewhere else. The call is ended.
    MediaTimeout { call: CallKey },
    /// New flows for new calls (and a canary release for some of them, or
    /// none), and agents and queues read again. Calls in progress keep theirs.
    Reload { flows: Vec<Flow>, canary: Option<Canary>, acd: ivr_acd::AcdConfig },
    /// Stop taking calls: new ones get 503, calls in progress finish.
    Drain,
}

/// What the host's media plane should do. Ports are the core's to choose;
/// audio is pre-encoded and shared.
#[derive(Debug, Clone)]
pub enum Media {
    /// Open RTP on `local` for a call (or an agent leg), and answer
    /// [`Input::MediaOpened`]. A caller's stream sends to `remote`; a leg's
    /// only relays once bridged. `shared`: `local` is the port shared by
    /// many calls (`rtp_shared_port`): this call gets what comes to it from
    /// `stream.remote` (no other call there has that address), and keeps
    /// getting it from the new address after a [`Media::Renegotiate`].
    Open { call: CallKey, local: SocketAddr, stream: StreamSpec, leg: bool, shared: bool },
    /// The caller acknowledged our answer: audio may flow.
    Confirmed { call: CallKey },
    /// Queue audio; report [`Input::PlayDone`] with `id` when it has played.
    /// `label` says what it is (a prompt id, `say money 10.52`, `beep`), for
    /// logs and transcripts.
    Play { call: CallKey, id: PlayId, audio: Vec<Arc<EncodedPrompt>>, label: String },
    /// Drop what is playing and queued (no `PlayDone` for it).
    Stop { call: CallKey },
    /// Music on hold between queued audio (`None`: silence).
    Hold { call: CallKey, music: Option<Arc<EncodedPrompt>> },
    /// The caller's media changed (a re-INVITE).
    Renegotiate { call: CallKey, stream: StreamSpec },
    /// Forward the caller's audio as [`Input::Audio`] (recording), or stop.
    Capture { call: CallKey, on: bool },
    /// Connect a caller and a leg: each side's RTP is relayed to the other
    /// (`to_leg`: the caller's packets, rewritten, to the leg's far end;
    /// `to_caller`: the leg's packets to wherever the caller's stream sends).
    /// The caller's own stream falls silent.
    Bridge { caller: CallKey, leg: CallKey, to_leg: RelaySpec, to_caller: RelaySpec },
    /// Disconnect them; the caller's stream speaks again.
    Unbridge { caller: CallKey, leg: CallKey },
    /// A relay's far end moved: `call`'s relay now sends to `to`.
    Retarget { call: CallKey, to: SocketAddr },
    /// Close the call's (or leg's) RTP.
    Close { call: CallKey },
}

/// A call's media as negotiated.
#[derive(Debug, Clone, Copy)]
pub struct StreamSpec {
    pub codec: Codec,
    pub remote: SocketAddr,
    /// Whether we send (a held call: `sendonly` from them means we do not).
    pub send: bool,
    pub ptime_ms: u32,
    pub dtmf_payload_type: Option<u8>,
    pub inband_dtmf: bool,
    pub latch: bool,
    pub ssrc_seed: u64,
}

/// One direction of a bridge.
#[derive(Debug, Clone, Copy)]
pub struct RelaySpec {
    /// Where to send (`None`: wherever the caller's stream sends).
    pub to: Option<SocketAddr>,
    pub seed: u64,
    pub audio_pt: u8,
    /// (telephone-event payload type in, payload type out).
    pub dtmf: Option<(u8, u8)>,
}

/// A message to store: the caller's audio, for [`Input::Completed`].
#[derive(Debug)]
pub struct SaveMessage {
    pub call: CallKey,
    pub op: OpId,
    pub caller: String,
    pub category: String,
    pub pcm: Vec<i16>,
    pub rate_hz: u32,
    /// The idempotency key of the message.
    pub key: String,
}

/// What the host must do.
#[derive(Debug)]
pub enum Output {
    /// Send a SIP message from our address `from` to `to`.
    Transmit { from: SocketAddr, to: SocketAddr, data: Vec<u8> },
    Media(Media),
    /// Run a service request off the signalling thread; answer with
    /// [`Input::Completed`].
    Request { call: CallKey, op: OpId, request: host::ServiceCall },
    /// Store a recorded message; answer with [`Input::Completed`]
    /// (`saved` with `duration_ms`, or `failed`).
    SaveMessage(SaveMessage),
    /// Append `line` (JSON, newline-terminated) to a record file.
    Record { log: Log, line: Vec<u8> },
}

/// RTP ports tried for a call before it is refused (others' ports are skipped).
const MEDIA_ATTEMPTS: u8 = 16;

/// Silence after speech that ends a message.
const RECORD_SILENCE_MS: u64 = 5_000;
/// Sample level (of 32767) that counts as speech.
const RECORD_VOICE_LEVEL: i16 = 600;

pub(crate) struct Recording {
    op: OpId,
    category: String,
    recorder: ivr_media::record::Recorder,
}

fn is_ours(cfg: &CoreConfig, a: SocketAddr) -> bool {
    let a = ivr_media::source::source_key(a);
    cfg.listen.iter().any(|l| {
        let l = ivr_media::source::source_key(*l);
        l.ip() == a.ip() && (l.port() == a.port() || cfg.rtp_shared_port == Some(a.port()))
    })
}

/// One caller's call.
pub(crate) struct Call {
    pub(crate) session: Session,
    pub(crate) program: Arc<Program>,
    pub(crate) prompts: Arc<PromptAudio>,
    pub(crate) local_rtp: SocketAddr,
    pub(crate) rtp: ports::Rtp,
    pub(crate) stream: StreamSpec,
    pub(crate) media_ready: bool,
    pub(crate) confirmed: bool,
    /// The answer to send: when the RTP port is open, after ringing.
    pub(crate) answer: Option<(u64, String)>,
    /// The offer and what was negotiated, until the RTP port is open (a port
    /// another process holds is replaced, and the answer with it).
    pub(crate) offer: Option<(sdp::Offer, sdp::Negotiated)>,
    pub(crate) media_attempts: u8,
    pub(crate) hangup_when_quiet: bool,
    /// Plays queued and not yet reported done.
    pub(crate) playing: u32,
    pub(crate) record: CallRecord,
    pub(crate) secret_listen: bool,
    pub(crate) recording: Option<Recording>,
    pub(crate) handoff: Option<handoff::Pending>,
    pub(crate) started: u64,
    /// A fault in the core's handling of this call (not the flow's): ends it.
    pub(crate) broken: Option<String>,
    /// See [`Core::inject_bug`].
    pub(crate) bug: bool,
    /// Where the INVITE came from (per-source limits).
    pub(crate) peer: std::net::IpAddr,
    /// Services asked and not yet answered, by operation (for the record).
    /// Service requests awaiting their answer: the service, and when it was asked.
    pub(crate) ops: BTreeMap<OpId, (String, u64)>,
}

pub struct Core {
    cfg: CoreConfig,
    endpoint: Endpoint,
    flows: Vec<Flow>,
    canary: Option<Canary>,
    calls: BTreeMap<CallKey, Call>,
    agents: Agents,
    ports: Ports,
    limiter: ivr_sip::limit::RateLimiter,
    invite_limiter: ivr_sip::limit::RateLimiter,
    /// Calls answered and not yet acknowledged, by source address.
    unconfirmed: BTreeMap<std::net::IpAddr, u32>,
    /// Calls in progress, by source address.
    by_source: BTreeMap<std::net::IpAddr, u32>,
    shed: Shed,
    /// What operators see (see [`metrics`]).
    stats: metrics::Stats,
    admission: admission::Admission,
    /// Calls' wake-ups, earliest first; stale entries cost one check.
    timers: BinaryHeap<Reverse<(u64, CallKey)>>,
    /// Calls that had an event since their actions were last drained.
    dirty: BTreeSet<CallKey>,
    outputs: VecDeque<Output>,
    draining: bool,
    now: u64,
}

impl Core {
    pub fn new(cfg: CoreConfig, flows: Vec<Flow>, acd: ivr_acd::AcdConfig, now: u64) -> Core {
        let local = cfg.listen.first().copied().unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 5060)));
        let mut endpoint = Endpoint::new(local, "ivr/0.1", cfg.seed);
        for l in cfg.listen.iter().skip(1) {
            endpoint.add_local(*l);
        }
        endpoint.set_registrar(!acd.agents.is_empty());
        endpoint.set_user_agent(cfg.user_agent.clone());
        endpoint.set_force_rport(cfg.force_rport);
        let agents = Agents::new(acd, cfg.realm.clone(), cfg.transfer_gateway.clone(), cfg.seed, now, cfg.wall_clock_at_zero_ms);
        let limiter = ivr_sip::limit::RateLimiter::new(cfg.rate_per_source, cfg.rate_per_source.saturating_mul(2));
        let rate = cfg.per_source.new_calls_per_s;
        let invite_limiter = ivr_sip::limit::RateLimiter::new(rate, rate.saturating_mul(2));
        let admission = cfg.admission;
        Core {
            ports: Ports::new(cfg.rtp_ports, cfg.rtp_shared_port),
            cfg,
            endpoint,
            flows,
            canary: None,
            calls: BTreeMap::new(),
            agents,
            limiter,
            invite_limiter,
            unconfirmed: BTreeMap::new(),
            by_source: BTreeMap::new(),
            shed: Shed::default(),
            stats: metrics::Stats::default(),
            admission,
            timers: BinaryHeap::new(),
            dirty: BTreeSet::new(),
            outputs: VecDeque::new(),
            draining: false,
            now,
        }
    }

    /// Calls in progress (callers, not agent legs).
    pub fn calls(&self) -> usize {
        self.calls.len()
    }

    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// The SIP Call-ID of a call, for logs and the admin API.
    pub fn call_id(&self, call: CallKey) -> Option<&str> {
        self.calls.get(&call).map(|c| c.record.call_id.as_str())
    }

    /// Whether new calls are being refused for load.
    pub fn is_overloaded(&self) -> bool {
        self.admission.is_overloaded()
    }

    /// What was shed so far, by protection.
    pub fn shed(&self) -> Shed {
        self.shed
    }

    /// Wake-ups held (some stale), for tests that they stay bounded.
    #[doc(hidden)]
    pub fn timers_held(&self) -> usize {
        self.timers.len()
    }

    /// When [`Core::handle_timeout`] must run next.
    pub fn poll_timeout(&self) -> Option<u64> {
        let call = self.timers.peek().map(|Reverse((t, _))| *t);
        [self.endpoint.poll_timeout(), call, self.agents.poll_timeout()].into_iter().flatten().min()
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        if let Some(o) = self.outputs.pop_front() {
            return Some(o);
        }
        let (to, data) = self.endpoint.poll_transmit()?;
        self.stats.sip_sent(&data);
        Some(Output::Transmit { from: self.endpoint.local_for(to), to, data })
    }

    pub fn handle(&mut self, now: u64, input: Input) {
        self.now = self.now.max(now);
        let now = self.now;
        match input {
            Input::Sip { local, from, data } => {
                self.stats.sip_received(data);
                let ip = from.ip();
                let trusted = self.cfg.per_source.trusted.contains(&ip);
                if !trusted && !self.limiter.allow(now, ip) {
                    self.shed.rate += 1;
                } else if !trusted && data.starts_with(b"INVITE ") && !self.invite_limiter.allow(now, ip) {
                    // Shed before parsing: the cheapest answer to a flood is none.
                    self.shed.new_call_rate += 1;
                } else {
                    self.endpoint.handle_at(now, local, from, data);
                }
            }
            Input::SipTooLarge { from, head } => self.endpoint.too_large(now, from, head),
            Input::MediaOpened { call, ok } => self.media_opened(now, call, ok),
            Input::PlayDone { call, id } => {
                if let Some(c) = self.calls.get_mut(&call) {
                    c.playing = c.playing.saturating_sub(1);
                    c.session.handle_event(now, Event::PlayDone(id));
                    self.dirty.insert(call);
                }
            }
            Input::Digit { call, key, source } => {
                self.stats.key(source);
                self.key_pressed(now, call, key)
            }
            Input::Audio { call, pcm } => {
                let end = self.calls.get_mut(&call).and_then(|c| c.recording.as_mut()).and_then(|r| r.recorder.push_audio(pcm));
                if let Some(end) = end {
                    self.finish_recording(call, end);
                }
            }
            Input::Completed { call, op, outcome, fields } => {
                self.stats.completed(now, call, op, &outcome);
                if let Some(c) = self.calls.get_mut(&call) {
                    let t_ms = now.saturating_sub(c.started);
                    let what = match c.ops.remove(&op) {
                        Some((service, asked)) => records::MomentKind::Answer { service, outcome: outcome.clone(), fields: fields.iter().map(|(k, v)| (k.clone(), v.to_string())).collect(), took_ms: now.saturating_sub(asked) },
                        None => records::MomentKind::Done { op: "record".into(), outcome: outcome.clone() },
                    };
                    c.record.timeline.push(records::Moment { t_ms, what });
                    c.session.handle_event(now, Event::Completed { op, outcome, fields });
                    self.dirty.insert(call);
                    self.write_record(call);
                }
            }
            Input::Reload { flows, canary, acd } => {
                info!(flows = flows.len(), canary = canary.as_ref().map_or(0, |c| c.percent), agents = acd.agents.len(), queues = acd.queues.len(), "reloaded the flows for new calls, and the agents and queues");
                self.flows = flows;
                self.canary = canary;
                self.endpoint.set_registrar(!acd.agents.is_empty());
                self.agents.reconfigure(now, acd);
            }
            Input::MediaTick { late_ms, work_ms } => {
                if self.admission.tick(late_ms, work_ms) {
                    if self.admission.is_overloaded() {
                        warn!(load_ms = self.admission.load_ms(), calls = self.calls.len(), "the media clock is overloaded: refusing new calls until it recovers");
                    } else {
                        info!(load_ms = self.admission.load_ms(), "the media clock has recovered: taking new calls");
                    }
                }
            }
            Input::MediaTimeout { call } => {
                if self.calls.contains_key(&call) {
                    self.end_call(now, call, "no_media", true);
                }
            }
            Input::Drain => {
                info!(calls = self.calls.len(), "stopping: new calls get 503, calls in progress may finish");
                self.draining = true;
            }
        }
        self.settle(now);
    }

    pub fn handle_timeout(&mut self, now: u64) {
        self.now = self.now.max(now);
        let now = self.now;
        self.endpoint.handle_timeout(now);
        self.agents.handle_timeout(now);
        while let Some(Reverse((when, key))) = self.timers.peek().copied() {
            if when > now {
                break;
            }
            self.timers.pop();
            let Some(c) = self.calls.get_mut(&key) else { continue };
            if now >= c.started.saturating_add(self.cfg.limits.max_call_ms) {
                warn!(call_id = %c.record.call_id, max_call_ms = self.cfg.limits.max_call_ms, "the call reached its maximum duration; ending it");
                c.broken = Some("max_duration".into());
            }
            c.session.handle_timeout(now);
            if c.answer.as_ref().is_some_and(|a| a.0 <= now) && c.media_ready {
                let (_, answer) = c.answer.take().unwrap_or_default();
                self.stats.answered(now.saturating_sub(c.started));
                self.endpoint.accept(now, key, &answer);
            }
            self.dirty.insert(key);
        }
        self.settle(now);
    }

    /// The admin API's request, answered against the live state.
    pub fn admin(&mut self, now: u64, req: &AdminRequest) -> (u16, serde_json::Value) {
        self.now = self.now.max(now);
        let r = admin::handle(&mut self.agents, &self.calls, req, self.now);
        self.settle(self.now);
        r
    }

    fn push(&mut self, o: Output) {
        self.outputs.push_back(o);
    }

    // ------------------------------------------------------------ the loop

    /// Everything that follows from what happened: SIP events, VM actions,
    /// what the queues decided (which may resume flows), calls that ended, and
    /// each call's next wake-up.
    fn settle(&mut self, now: u64) {
        for _ in 0..64 {
            while let Some(ev) = self.endpoint.poll_event() {
                self.sip_event(now, ev);
            }
            self.agents_drain(now);
            if self.dirty.is_empty() {
                break;
            }
            for key in std::mem::take(&mut self.dirty) {
                self.run_call_isolated(now, key);
            }
        }
    }

    /// Runs one call's turn; a bug in it (a panic) ends that call with a
    /// logged fault and leaves every other call as it was.
    fn run_call_isolated(&mut self, now: u64, key: CallKey) {
        let turn = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run_call(now, key)));
        if let Err(panic) = turn {
            let what = panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned()).unwrap_or_default();
            tracing::error!(call = key.0, "a bug in this call's handling ended it: {what}");
            // Its state may be half-changed: end it without running its flow again.
            if let Some(c) = self.calls.get_mut(&key) {
                c.bug = false;
                c.hangup_when_quiet = false;
            }
            self.end_call(now, key, "internal_error", true);
        }
    }

    /// Makes the next turn of `call` fail as a bug would (a panic in its
    /// handling), to test that a bug in one call ends that call only.
    #[doc(hidden)]
    pub fn inject_bug(&mut self, call: CallKey) {
        if let Some(c) = self.calls.get_mut(&call) {
            c.bug = true;
        }
    }

    fn run_call(&mut self, now: u64, key: CallKey) {
        if self.calls.get(&key).is_some_and(|c| c.bug) {
            panic!("injected bug in call {}", key.0);
        }
        while let Some(a) = self.calls.get_mut(&key).and_then(|c| c.session.poll_action()) {
            self.perform(now, key, a);
        }
        let Some(c) = self.calls.get_mut(&key) else { return };
        if let Some(why) = c.broken.take() {
            return self.end_call(now, key, &why, true);
        }
        if c.hangup_when_quiet && c.confirmed && c.playing == 0 && c.handoff.is_none() {
            c.hangup_when_quiet = false;
            self.endpoint.hangup(now, key);
            c.session.handle_event(now, Event::Hangup);
            c.record.outcome.get_or_insert_with(|| "flow_ended".into());
        }
        let c = &self.calls[&key];
        if c.session.is_finished() && !c.hangup_when_quiet && c.record.outcome.is_some() && c.playing == 0 && c.handoff.is_none() {
            return self.finish(now, key);
        }
        // (The call's maximum duration is on the heap once, from its start:
        // pushed here on every turn, hours-away deadlines would pile up.)
        for when in [c.session.poll_timeout(), c.answer.as_ref().map(|a| a.0)].into_iter().flatten() {
            self.timers.push(Reverse((when, key)));
        }
    }

    /// Ends a call from our side: BYE (or a final answer if unanswered), the
    /// flow told the caller is gone, hand-offs unwound, the record closed.
    fn end_call(&mut self, now: u64, key: CallKey, outcome: &str, fault: bool) {
        let Some(c) = self.calls.get_mut(&key) else { return };
        if fault {
            warn!(call_id = %c.record.call_id, %outcome, "ending the call");
        }
        c.record.outcome = Some(outcome.to_string());
        if c.answer.is_some() {
            self.endpoint.reject(now, key, 500, "Server Internal Error", &[]);
        } else {
            self.endpoint.hangup(now, key);
        }
        self.caller_gone(now, key);
        if let Some(c) = self.calls.get_mut(&key) {
            c.session.handle_event(now, Event::Hangup);
        }
        self.finish(now, key);
    }

    fn left_source(&mut self, ip: std::net::IpAddr) {
        if let Some(n) = self.by_source.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.by_source.remove(&ip);
            }
        }
    }

    fn unconfirm(&mut self, ip: std::net::IpAddr) {
        if let Some(n) = self.unconfirmed.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.unconfirmed.remove(&ip);
            }
        }
    }

    fn finish(&mut self, now: u64, key: CallKey) {
        let Some(mut c) = self.calls.remove(&key) else { return };
        if !c.confirmed {
            self.unconfirm(c.peer);
        }
        self.left_source(c.peer);
        c.record.close(self.wall(now));
        self.stats.call_ended(c.record.outcome.as_deref(), now.saturating_sub(c.started), &c.record.release);
        self.record_line(&c.record);
        info!(call_id = %c.record.call_id, outcome = c.record.outcome.as_deref().unwrap_or(""), "call ended");
        self.push(Output::Media(Media::Close { call: key }));
        self.ports.give_back(key, c.rtp);
    }

    fn wall(&self, now: u64) -> i64 {
        self.cfg.wall_clock_at_zero_ms.saturating_add(now as i64)
    }

    fn record_line(&mut self, r: &CallRecord) {
        if let Ok(mut line) = serde_json::to_vec(r) {
            line.push(b'\n');
            self.push(Output::Record { log: Log::Calls, line });
        }
    }

    /// The call's record as it stands (the call is still open).
    fn write_record(&mut self, key: CallKey) {
        if let Some(r) = self.calls.get(&key).map(|c| c.record.clone()) {
            self.record_line(&r);
        }
    }

    // ------------------------------------------------------------ SIP

    fn sip_event(&mut self, now: u64, ev: SipEvent) {
        if let SipEvent::Dtmf { .. } = ev {
            self.stats.key(KeySource::Info);
        }
        match ev {
            SipEvent::Invite { call, dialed, caller, sdp, peer, local, call_id } => self.invite(now, call, dialed, caller, &sdp, peer, local, call_id),
            SipEvent::Confirmed { call } => {
                if let Some(c) = self.calls.get_mut(&call) {
                    if !c.confirmed {
                        c.confirmed = true;
                        let peer = c.peer;
                        self.unconfirm(peer);
                        self.outputs.push_back(Output::Media(Media::Confirmed { call }));
                        self.dirty.insert(call);
                    }
                }
            }
            SipEvent::Reinvite { call, sdp } if self.agents.is_leg(call) => self.leg_reinvite(now, call, &sdp),
            SipEvent::Reinvite { call, sdp } => self.reinvite(now, call, &sdp),
            SipEvent::Dtmf { call, key } if self.agents.is_leg(call) => self.agents.leg_key(call, key),
            SipEvent::Dtmf { call, key } => self.key_pressed(now, call, key),
            SipEvent::Progress { .. } => {}
            SipEvent::Answered { call, sdp } => self.leg_answered(now, call, &sdp),
            SipEvent::Failed { call, code } => self.leg_failed(now, call, code),
            SipEvent::Register(r) => self.agents.register(now, r, &mut self.endpoint),
            SipEvent::Bye { call } | SipEvent::AckTimeout { call } if self.agents.is_leg(call) => self.leg_ended(now, call),
            SipEvent::Cancelled { call } | SipEvent::Bye { call } | SipEvent::AckTimeout { call } => {
                if !self.calls.contains_key(&call) {
                    return;
                }
                self.caller_gone(now, call);
                // Hanging up ends a message being recorded: it is kept.
                if self.calls.get(&call).is_some_and(|c| c.recording.is_some()) {
                    self.finish_recording(call, ivr_media::record::RecordEnd::Terminator);
                }
                let why = match ev {
                    SipEvent::Cancelled { .. } => "caller_cancelled",
                    SipEvent::Bye { .. } => "caller_hung_up",
                    _ => "no_ack",
                };
                if let Some(c) = self.calls.get_mut(&call) {
                    c.session.handle_event(now, Event::Hangup);
                    c.record.outcome.get_or_insert_with(|| why.into());
                }
                self.finish(now, call);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn invite(&mut self, now: u64, call: CallKey, dialed: String, caller: String, sdp: &[u8], peer: SocketAddr, reached: SocketAddr, call_id: String) {
        if self.draining || self.calls.len() >= self.cfg.max_calls {
            self.shed.capacity += 1;
            return self.endpoint.reject(now, call, 503, "Service Unavailable", &[("Retry-After", "5")]);
        }
        if self.admission.is_overloaded() {
            self.shed.overload += 1;
            return self.endpoint.reject(now, call, 503, "Service Unavailable", &[("Retry-After", "5")]);
        }
        let ip = peer.ip();
        let trusted = self.cfg.per_source.trusted.contains(&ip);
        let waiting = self.unconfirmed.get(&ip).copied().unwrap_or(0);
        if waiting >= self.cfg.per_source.awaiting_ack && !trusted {
            self.shed.awaiting_ack += 1;
            return self.endpoint.reject(now, call, 503, "Service Unavailable", &[("Retry-After", "10")]);
        }
        // Unacknowledged calls in all: a spray of addresses that never ACK
        // holds at most a quarter of the node (real phones ACK at once).
        let unacked: u32 = self.unconfirmed.values().sum();
        if unacked as usize >= (self.cfg.max_calls / 4).max(16) && !trusted {
            self.shed.awaiting_ack += 1;
            return self.endpoint.reject(now, call, 503, "Service Unavailable", &[("Retry-After", "10")]);
        }
        if self.by_source.get(&ip).copied().unwrap_or(0) >= self.cfg.per_source.calls && !trusted {
            self.shed.source_calls += 1;
            return self.endpoint.reject(now, call, 503, "Service Unavailable", &[("Retry-After", "30")]);
        }
        let offer = sdp::parse_offer(&String::from_utf8_lossy(sdp));
        let negotiated = offer.as_ref().map_err(Clone::clone).and_then(|o| o.negotiate().map(|n| (o, n)));
        let (offer, neg) = match negotiated {
            Ok(n) if self.is_ours(n.1.remote) => {
                info!(%call_id, remote = %n.1.remote, "refused: the offer's media address is one of ours");
                return self.endpoint.reject(now, call, 488, "Not Acceptable Here", &[]);
            }
            Ok(n) => n,
            Err(e) => {
                info!(%call_id, "refused: {e}");
                return self.endpoint.reject(now, call, 488, "Not Acceptable Here", &[]);
            }
        };
        let Some(rtp) = self.ports.take_for(call, neg.remote, !self.cfg.latch_rtp) else {
            self.shed.capacity += 1;
            return self.endpoint.reject(now, call, 503, "Service Unavailable", &[("Retry-After", "5")]);
        };
        // A number we do not serve is answered like any other and then hung
        // up: the signalling does not tell a prober which numbers exist.
        let answers = |flows: &[Flow]| flows.iter().find(|f| f.program.entries.iter().any(|e| e.number == dialed)).cloned();
        let canary = self.canary.as_ref().filter(|c| c.takes(&caller, &call_id));
        let flow = canary.and_then(|c| answers(&c.flows)).or_else(|| answers(&self.flows));
        let flow = flow.unwrap_or_else(|| {
            let p = not_in_service(&dialed);
            Flow::new("not_in_service", p, Arc::new(PromptAudio::empty()))
        });
        let info = CallInfo { dialed: dialed.clone(), caller: caller.clone(), language: None, wall_clock_ms: self.wall(now) };
        let session = match Session::start_with(flow.program.clone(), info, now, self.cfg.limits.flow) {
            Ok(s) => s,
            Err(e) => {
                warn!(%call_id, "{e}");
                self.ports.give_back(call, rtp);
                return self.endpoint.reject(now, call, 404, "Not Found", &[]);
            }
        };
        let port = rtp.port();
        let local_rtp = SocketAddr::new(reached.ip(), port);
        // One m= line per offered one (RFC 3264 §6): the audio we take, the rest declined.
        let answer = offer.answer(&neg, local_rtp, call.0, 1);
        info!(%call_id, %peer, %dialed, flow = %flow.name, codec = neg.codec.name(), rtp = port, "call answered");
        let stream = StreamSpec {
            codec: neg.codec,
            remote: neg.remote,
            send: neg.send,
            ptime_ms: neg.ptime_ms,
            dtmf_payload_type: neg.dtmf_payload_type,
            inband_dtmf: self.cfg.inband_dtmf,
            latch: self.cfg.latch_rtp,
            ssrc_seed: self.cfg.seed ^ call.0,
        };
        let mut record = CallRecord::new(&call_id, &dialed, &caller, &flow.name, &flow.version, self.wall(now));
        record.release = flow.release.clone();
        self.stats.call_started(&flow.name, &flow.release);
        self.calls.insert(
            call,
            Call {
                session,
                program: flow.program,
                prompts: flow.prompts,
                local_rtp,
                rtp,
                stream,
                media_ready: false,
                confirmed: false,
                answer: Some((now + self.cfg.ring_ms, answer)),
                offer: Some((offer.clone(), neg)),
                media_attempts: 1,
                hangup_when_quiet: false,
                playing: 0,
                record,
                secret_listen: false,
                recording: None,
                handoff: None,
                started: now,
                broken: None,
                bug: false,
                peer: ip,
                ops: BTreeMap::new(),
            },
        );
        *self.unconfirmed.entry(ip).or_default() += 1;
        *self.by_source.entry(ip).or_default() += 1;
        self.timers.push(Reverse((now.saturating_add(self.cfg.limits.max_call_ms), call)));
        self.push(Output::Media(Media::Open { call, local: local_rtp, stream, leg: false, shared: rtp.shared() }));
    }

    /// Whether `a` is one of our own addresses that a caller's media cannot
    /// be: a SIP listener, or the RTP port shared by calls (our own packets
    /// would come back to us as that caller's).
    fn is_ours(&self, a: SocketAddr) -> bool {
        is_ours(&self.cfg, a)
    }

    fn media_opened(&mut self, now: u64, call: CallKey, ok: bool) {
        if self.agents.is_leg(call) {
            if !ok {
                self.leg_media_failed(now, call);
            }
            return;
        }
        let Some(c) = self.calls.get_mut(&call) else { return };
        if !ok && c.media_attempts < MEDIA_ATTEMPTS {
            // The port is held by another process: it goes to the back of the
            // line, and the call tries the next one (the answer names it).
            if let (Some(port), Some((offer, neg))) = (self.ports.take(), c.offer.as_ref()) {
                self.ports.give_back(call, c.rtp);
                c.rtp = ports::Rtp::Own(port);
                c.local_rtp = SocketAddr::new(c.local_rtp.ip(), port);
                c.media_attempts += 1;
                let answer = offer.answer(neg, c.local_rtp, call.0, 1);
                if let Some(a) = c.answer.as_mut() {
                    a.1 = answer;
                }
                let (local, stream) = (c.local_rtp, c.stream);
                self.push(Output::Media(Media::Open { call, local, stream, leg: false, shared: false }));
                return;
            }
        }
        if !ok {
            // No port could be opened: refused, the ports freed for later.
            let Some(c) = self.calls.remove(&call) else { return };
            self.stats.call_ended(None, now.saturating_sub(c.started), &c.record.release);
            self.unconfirm(c.peer);
            self.left_source(c.peer);
            self.ports.give_back(call, c.rtp);
            return self.endpoint.reject(now, call, 503, "Service Unavailable", &[("Retry-After", "5")]);
        }
        c.media_ready = true;
        c.offer = None;
        if self.cfg.ring_ms > 0 {
            self.endpoint.ringing(now, call);
        } else if let Some((_, answer)) = c.answer.take() {
            self.stats.answered(now.saturating_sub(c.started));
            self.endpoint.accept(now, call, &answer);
        }
        self.write_record(call);
        self.dirty.insert(call);
    }

    fn reinvite(&mut self, now: u64, call: CallKey, offer: &[u8]) {
        let Some(c) = self.calls.get_mut(&call) else { return };
        if offer.iter().all(u8::is_ascii_whitespace) {
            // A re-INVITE without an offer (a session refresh): our 200 carries
            // the media as it is as the offer (RFC 3261 §14.2); it goes on unchanged.
            let s = c.stream;
            let current = sdp::Negotiated { remote: s.remote, codec: s.codec, dtmf_payload_type: s.dtmf_payload_type, ptime_ms: s.ptime_ms, send: s.send };
            return self.endpoint.accept(now, call, &sdp::answer(&current, c.local_rtp, call.0, 2));
        }
        // Bridged audio is relayed as it is: keep its codec if offered.
        let bridged = self.agents.bridged_leg(c).is_some();
        let keep = bridged.then_some(c.stream.codec);
        let offer = sdp::parse_offer(&String::from_utf8_lossy(offer));
        match offer.as_ref().map_err(Clone::clone).and_then(|o| o.negotiate_keeping(keep).map(|n| (o, n))) {
            // On the shared port, a move onto another call's media address is
            // refused (their packets could not be told apart); the call goes on
            // as it was (RFC 3261 §14.2).
            Ok((offer, neg)) if keep.is_none_or(|k| k == neg.codec) && !is_ours(&self.cfg, neg.remote) && self.ports.moved(call, &mut c.rtp, neg.remote) => {
                c.stream = StreamSpec { codec: neg.codec, remote: neg.remote, send: neg.send, ptime_ms: neg.ptime_ms, dtmf_payload_type: neg.dtmf_payload_type, ..c.stream };
                let stream = c.stream;
                self.endpoint.accept(now, call, &offer.answer(&neg, c.local_rtp, call.0, 2));
                self.outputs.push_back(Output::Media(Media::Renegotiate { call, stream }));
                if let Some(leg) = self.agents.bridged_leg(&self.calls[&call]) {
                    self.outputs.push_back(Output::Media(Media::Retarget { call: leg, to: neg.remote }));
                }
            }
            _ => self.endpoint.reject(now, call, 488, "Not Acceptable Here", &[]),
        }
    }

    // ------------------------------------------------------------ the flow

    fn perform(&mut self, now: u64, key: CallKey, action: Action) {
        let Some(c) = self.calls.get_mut(&key) else { return };
        match action {
            Action::EnterNode { name, .. } => c.record.nodes.push(name),
            Action::Play { id, prompt, lang, .. } => {
                let audio = c.prompts.prompt(prompt as usize, lang as usize);
                let label = c.program.prompts.get(prompt as usize).map_or_else(String::new, |p| p.id.clone());
                c.playing += 1;
                self.outputs.push_back(Output::Media(Media::Play { call: key, id, audio: vec![audio], label }));
            }
            Action::Say { id, kind, value, lang } => {
                let audio = c.prompts.say(&c.program, kind, &value, lang as usize);
                // A secret is never spoken (the compiler refuses it); the label shows the kind only then.
                let label = format!("say {} {value}", kind.name());
                c.playing += 1;
                self.outputs.push_back(Output::Media(Media::Play { call: key, id, audio, label }));
            }
            Action::StopPlayback => {
                c.playing = 0;
                self.outputs.push_back(Output::Media(Media::Stop { call: key }));
            }
            Action::Listen { secret, .. } => c.secret_listen = secret,
            Action::Request { op, service, args, timeout_ms: _ } => {
                if let Some(score) = host::survey_score(&args) {
                    c.record.survey_score = Some(score);
                }
                c.ops.insert(op, (service.clone(), now));
                let request = host::ServiceCall::new(&c.program, &service, args, format!("{}:{}", c.record.call_id, op.0));
                self.stats.request_sent(now, key, op, &request);
                self.outputs.push_back(Output::Request { call: key, op, request });
            }
            Action::Enqueue { .. } | Action::DialAgent { .. } => self.start_handoff(now, key, action),
            Action::Record { op, category, max_ms } => {
                if !self.cfg.can_record {
                    c.session.handle_event(now, Event::Completed { op, outcome: ivr_bytecode::contract::Outcome::Failed.name().into(), fields: vec![] });
                    return;
                }
                // A beep, then the caller's audio until #, silence or the maximum.
                c.playing += 1;
                self.outputs.push_back(Output::Media(Media::Play { call: key, id: PlayId(0), audio: vec![c.prompts.beep()], label: "beep".into() }));
                let recorder = ivr_media::record::Recorder::new(8_000, max_ms, RECORD_SILENCE_MS, RECORD_VOICE_LEVEL);
                info!(call_id = %c.record.call_id, %category, max_ms, "recording a message");
                c.recording = Some(Recording { op, category, recorder });
                self.outputs.push_back(Output::Media(Media::Capture { call: key, on: true }));
            }
            Action::Cancel { .. } | Action::SetLanguage { .. } => {}
            Action::Transfer { target } => {
                c.record.outcome = Some(format!("transfer:{target}"));
                if !self.transfer(now, key, target.clone()) {
                    let Some(c) = self.calls.get_mut(&key) else { return };
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

    /// A key from the caller: it ends a recording on `#`, may take a caller out
    /// of a queue, else goes to the flow.
    fn key_pressed(&mut self, now: u64, key: CallKey, d: char) {
        let Some(c) = self.calls.get_mut(&key) else { return };
        if c.recording.is_some() {
            if let Some(end) = c.recording.as_mut().and_then(|r| r.recorder.digit(d)) {
                self.finish_recording(key, end);
            }
            return;
        }
        if c.handoff.is_some() {
            return self.handoff_key(now, key, d);
        }
        // A key typed ahead (the flow not listening yet) may be the first digit
        // of a password the next `collect` takes: recorded only as `*`.
        let masked = c.secret_listen || !c.session.is_collecting();
        c.record.key(d, masked);
        let shown = if masked { '*' } else { d };
        c.record.timeline.push(records::Moment { t_ms: now.saturating_sub(c.started), what: records::MomentKind::Key { key: shown, node: c.record.nodes.last().cloned().unwrap_or_default(), hidden: masked } });
        c.session.handle_event(now, Event::Digit(d));
        self.dirty.insert(key);
    }

    /// Stops capturing and asks the host to store the message; the flow hears
    /// `saved` only once the recording is safely stored.
    fn finish_recording(&mut self, key: CallKey, end: ivr_media::record::RecordEnd) {
        let Some(c) = self.calls.get_mut(&key) else { return };
        let Some(rec) = c.recording.take() else { return };
        let (pcm, rate_hz) = rec.recorder.finish(end);
        let save = SaveMessage { call: key, op: rec.op, caller: c.record.caller.clone(), category: rec.category, pcm, rate_hz, key: format!("{}:{}", c.record.call_id, rec.op.0) };
        self.push(Output::Media(Media::Capture { call: key, on: false }));
        self.push(Output::SaveMessage(save));
    }
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
