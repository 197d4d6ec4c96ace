//! Hand-offs to agents: the queue core ([`ivr_acd::Acd`]) wired to calls.
//!
//! The flow's `enqueue` / `dial agent` go to the ACD; its commands become SIP
//! and media here: an offer places a call to the agent's phone (the core is a
//! back-to-back user agent), the answer bridges the two legs (RTP relayed
//! both ways, keys included), a withdrawn offer cancels the agent leg, the
//! outcome resumes the caller's flow. Waiting callers hear music on hold and
//! the queue's announcements in their language. Agents' phones log in by
//! REGISTER with digest authentication. `transfer NUMBER` uses the same legs
//! without the ACD.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use ivr_acd::{Acd, CallId, Command, OfferFailure, Record};
use ivr_bytecode::contract::{self, prompts as ids, Outcome};
use ivr_media::sdp;
use ivr_sip::digest::{AuthGuard, GuardPolicy, Nonces, Verdict};
use ivr_sip::endpoint::{CallKey, Endpoint, Registration};
use ivr_vm::{Event, OpId, PlayId, Value};
use tracing::{info, warn};

use crate::records::Handoff as HandoffRecord;
use crate::{Call, Core, Log, Media, Output, RelaySpec, StreamSpec};

/// The queue core's name for a call: its SIP call key.
pub(crate) fn queued(call: CallKey) -> CallId {
    CallId(call.0)
}

/// The call the queue core names.
fn caller_key(call: CallId) -> CallKey {
    CallKey(call.0)
}

/// Where a caller is handed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum To {
    Queue,
    Agent,
    Transfer,
}

impl To {
    /// The name in call records.
    fn name(self) -> &'static str {
        match self {
            To::Queue => "queue",
            To::Agent => "agent",
            To::Transfer => "transfer",
        }
    }
}

/// A caller's hand-off in progress: to a queue or an agent (the flow waits
/// for `op`), or a transfer (the flow has ended; `op` is `None`).
pub(crate) struct Pending {
    op: Option<OpId>,
    kind: To,
    target: String,
    priority: i64,
    leave_key: Option<char>,
    started: u64,
    /// The agent leg bridged to the caller, and who and since when.
    bridged: Option<(CallKey, String, u64)>,
}

/// A call we placed for a caller: to an agent's phone, or a transfer target.
struct Leg {
    caller: CallKey,
    /// The agent's work number, or the number transferred to.
    agent: String,
    transfer: bool,
    port: u16,
    local: SocketAddr,
}

/// The shortest registration kept, in seconds (shorter ones get 423).
const MIN_EXPIRES: u32 = 60;
/// Nonces are good for this long.
const NONCE_MS: u64 = 300_000;
/// Nonces outstanding at once (the oldest are forgotten first).
const NONCES_MAX: usize = 16_384;

pub(crate) struct Agents {
    pub(crate) acd: Acd,
    /// Queues are configured (else hand-offs answer `no_agents` / `absent`).
    enabled: bool,
    legs: BTreeMap<CallKey, Leg>,
    /// Registered agents: work number → when the registration expires, and
    /// where the REGISTER came from (the phone is reached there, through any
    /// NAT, whatever its Contact says).
    registrations: BTreeMap<String, (u64, SocketAddr)>,
    nonces: Nonces,
    auth_guard: AuthGuard,
    /// The ACD's call records of the last 24 hours, for the live KPIs.
    pub(crate) history: std::collections::VecDeque<ivr_acd::CallRecord>,
    /// SIP Call-IDs of the callers the ACD has records to come for (a
    /// caller's queue record may be written after the caller hung up).
    call_ids: BTreeMap<CallId, String>,
    /// Keys sent by SIP INFO to pass to the other leg of a bridge.
    keys_out: Vec<(CallKey, char)>,
    /// Where `transfer` sends calls: a SIP URI with `{number}` (a gateway).
    transfer_gateway: Option<String>,
    /// Transfers the flows asked for, placed in `drain`.
    transfers: Vec<(CallKey, String)>,
    /// Wall-clock milliseconds at the core's time 0 (records carry both).
    wall_base: i64,
}

impl Agents {
    pub(crate) fn new(cfg: ivr_acd::AcdConfig, realm: String, transfer_gateway: Option<String>, seed: u64, now: u64, wall_base: i64) -> Agents {
        let enabled = !cfg.queues.is_empty() || !cfg.agents.is_empty();
        Agents {
            acd: Acd::new(cfg, now),
            enabled,
            legs: BTreeMap::new(),
            registrations: BTreeMap::new(),
            nonces: Nonces::new(&realm, &format!("{seed:016x}{:016x}", seed.rotate_left(29) ^ 0x9e37_79b9_7f4a_7c15), NONCE_MS, NONCES_MAX),
            auth_guard: AuthGuard::new(GuardPolicy::default()),
            history: std::collections::VecDeque::new(),
            call_ids: BTreeMap::new(),
            keys_out: Vec::new(),
            transfer_gateway,
            transfers: Vec::new(),
            wall_base,
        }
    }

    /// New agents and queues (a reload): see [`Acd::reconfigure`].
    pub(crate) fn reconfigure(&mut self, now: u64, cfg: ivr_acd::AcdConfig) {
        self.enabled = !cfg.queues.is_empty() || !cfg.agents.is_empty();
        self.acd.reconfigure(now, cfg);
    }

    pub(crate) fn is_leg(&self, key: CallKey) -> bool {
        self.legs.contains_key(&key)
    }

    pub(crate) fn bridged_leg(&self, c: &Call) -> Option<CallKey> {
        c.handoff.as_ref().and_then(|h| h.bridged.as_ref()).map(|b| b.0)
    }

    pub(crate) fn poll_timeout(&self) -> Option<u64> {
        let regs = self.registrations.values().map(|r| r.0).min();
        [self.acd.poll_timeout(), regs].into_iter().flatten().min()
    }

    /// A key the agent's phone sent by SIP INFO: on to the caller the same way.
    pub(crate) fn leg_key(&mut self, leg: CallKey, d: char) {
        if let Some(l) = self.legs.get(&leg) {
            self.keys_out.push((l.caller, d));
        }
    }

    fn wall(&self, t: u64) -> i64 {
        self.wall_base.saturating_add(t as i64)
    }

    // ---------------------------------------------------------------- REGISTER

    /// An agent's phone registers: digest-authenticated against the agent's
    /// password with a nonce bound to its address that cannot be replayed
    /// (so a Contact changes only by a fresh authentication); guessing is
    /// locked out per account and per address (see [`AuthGuard`]). A good
    /// registration logs the agent in at that contact.
    pub(crate) fn register(&mut self, now: u64, r: Registration, endpoint: &mut Endpoint) {
        let ip = r.source.ip();
        if let Err(blocked) = self.auth_guard.check(now, ip, &r.user) {
            warn!(source = %r.source, user = %r.user, by = ?blocked.by, "REGISTER refused: locked out after failed logins");
            return endpoint.answer(now, r.id, 403, "Forbidden", &[]);
        }
        let Some(creds) = r.authorization.as_deref().and_then(ivr_sip::digest::parse) else {
            let c = self.nonces.challenge(now, ip, false);
            return endpoint.answer(now, r.id, 401, "Unauthorized", &[("WWW-Authenticate", &c)]);
        };
        let password = self.acd.agent_config(&r.user).and_then(|a| a.password.clone()).filter(|_| creds.username == r.user);
        match self.nonces.verify(now, ip, &creds, "REGISTER", password.as_deref()) {
            Verdict::Ok => self.auth_guard.success(now, ip, &r.user),
            Verdict::Wrong => {
                let blocked = self.auth_guard.failure(now, ip, &r.user);
                warn!(source = %r.source, user = %r.user, locked_out = blocked.is_some(), "REGISTER refused: wrong credentials");
                return endpoint.answer(now, r.id, 403, "Forbidden", &[]);
            }
            verdict => {
                // Nothing was learnt of the password: a fresh challenge, nothing counted.
                let stale = verdict == Verdict::Stale;
                if !stale {
                    info!(source = %r.source, user = %r.user, ?verdict, "REGISTER challenged again");
                }
                let c = self.nonces.challenge(now, ip, stale);
                return endpoint.answer(now, r.id, 401, "Unauthorized", &[("WWW-Authenticate", &c)]);
            }
        }
        match r.contact.as_deref() {
            None => endpoint.answer(now, r.id, 200, "OK", &[]),
            Some(contact) if contact == "*" || r.expires == 0 => {
                self.registrations.remove(&r.user);
                let _ = self.acd.set_contact(&r.user, None);
                let _ = self.acd.logout(now, &r.user);
                info!(agent = %r.user, "agent unregistered; logged out");
                endpoint.answer(now, r.id, 200, "OK", &[]);
            }
            // Shorter than we keep bindings: the phone asks again (RFC 3261 §10.3).
            Some(_) if r.expires < MIN_EXPIRES => {
                endpoint.answer(now, r.id, 423, "Interval Too Brief", &[("Min-Expires", &MIN_EXPIRES.to_string())]);
            }
            Some(contact) => {
                let expires = r.expires.min(3600);
                self.registrations.insert(r.user.clone(), (now + expires as u64 * 1_000, r.source));
                let _ = self.acd.set_contact(&r.user, Some(contact.to_string()));
                let _ = self.acd.login(now, &r.user, None);
                info!(agent = %r.user, %contact, expires, "agent registered; logged in");
                let binding = format!("<{contact}>;expires={expires}");
                endpoint.answer(now, r.id, 200, "OK", &[("Contact", &binding), ("Expires", &expires.to_string())]);
            }
        }
    }

    /// Registrations that ran out log their agents out.
    pub(crate) fn handle_timeout(&mut self, now: u64) {
        let expired: Vec<String> = self.registrations.iter().filter(|(_, r)| r.0 <= now).map(|(a, _)| a.clone()).collect();
        for a in expired {
            self.registrations.remove(&a);
            let _ = self.acd.set_contact(&a, None);
            let _ = self.acd.logout(now, &a);
            info!(agent = %a, "registration expired; logged out");
        }
        self.acd.handle_timeout(now);
    }
}

impl Core {
    /// The flow hands the caller over: `Action::Enqueue` (join a queue) or
    /// `Action::DialAgent` (ring one agent). The caller hears music meanwhile.
    pub(crate) fn start_handoff(&mut self, now: u64, key: CallKey, action: ivr_vm::Action) {
        use ivr_vm::Action::{DialAgent, Enqueue};
        let (op, kind, target, priority, nobody) = match &action {
            Enqueue { op, queue, priority, .. } => (*op, To::Queue, queue.clone(), *priority, contract::NOBODY_FOR_ENQUEUE),
            DialAgent { op, work_number, .. } => (*op, To::Agent, work_number.clone(), 0, contract::NOBODY_FOR_DIAL),
            _ => return,
        };
        let Some(c) = self.calls.get_mut(&key) else { return };
        if !self.agents.enabled {
            c.session.handle_event(now, Event::Completed { op, outcome: nobody.name().into(), fields: vec![] });
            return;
        }
        let leave_key = if kind == To::Queue { self.agents.acd.queue_config(&target).and_then(|q| q.leave_key) } else { None };
        info!(call_id = %c.record.call_id, kind = kind.name(), %target, priority, "handing over to agents");
        c.handoff = Some(Pending { op: Some(op), kind, target, priority, leave_key, started: now, bridged: None });
        self.agents.call_ids.insert(queued(key), c.record.call_id.clone());
        let music = Some(c.prompts.hold());
        self.outputs.push_back(Output::Media(Media::Hold { call: key, music }));
        match action {
            Enqueue { queue, priority, max_wait_ms, .. } => self.agents.acd.enqueue(now, queued(key), &queue, priority, max_wait_ms),
            DialAgent { work_number, timeout_ms, .. } => self.agents.acd.dial(now, queued(key), &work_number, timeout_ms),
            _ => {}
        }
    }

    /// The flow ended with `transfer NUMBER`: with a gateway configured, the
    /// core calls the number through it and bridges the caller (hearing music
    /// while it rings); `false` when there is no gateway.
    pub(crate) fn transfer(&mut self, now: u64, key: CallKey, target: String) -> bool {
        if self.agents.transfer_gateway.is_none() || !contract::is_transfer_target(&target) {
            return false;
        }
        let Some(c) = self.calls.get_mut(&key) else { return false };
        info!(call_id = %c.record.call_id, %target, "transferring");
        c.handoff = Some(Pending { op: None, kind: To::Transfer, target: target.clone(), priority: 0, leave_key: None, started: now, bridged: None });
        let music = Some(c.prompts.hold());
        self.outputs.push_back(Output::Media(Media::Hold { call: key, music }));
        self.agents.transfers.push((key, target));
        true
    }

    /// A key from a caller in a hand-off: the queue's leave key takes them
    /// out; other keys are not the flow's (a bridged caller's keys in RTP go
    /// to the agent through the relay; these came by SIP INFO).
    pub(crate) fn handoff_key(&mut self, now: u64, key: CallKey, d: char) {
        let Some(h) = self.calls.get(&key).and_then(|c| c.handoff.as_ref()) else { return };
        if let Some((leg, _, _)) = h.bridged.as_ref() {
            self.agents.keys_out.push((*leg, d));
            return;
        }
        if h.leave_key == Some(d) {
            info!(queue = %h.target, "the caller left the queue by key");
            self.agents.acd.caller_left(now, queued(key), true);
        }
    }

    /// The caller hung up (or the call ended) during a hand-off.
    pub(crate) fn caller_gone(&mut self, now: u64, key: CallKey) {
        let Some(h) = self.calls.get_mut(&key).and_then(|c| c.handoff.take()) else { return };
        // Every leg placed for this caller ends: bridged (BYE) or ringing (CANCEL).
        let legs: Vec<CallKey> = self.agents.legs.iter().filter(|(_, l)| l.caller == key).map(|(k, _)| *k).collect();
        for leg in legs {
            self.endpoint.hangup(now, leg);
            self.drop_leg(leg);
        }
        let outcome = if h.bridged.is_some() { Outcome::Served.name() } else { "abandoned" };
        if h.kind != To::Transfer {
            self.agents.acd.caller_left(now, queued(key), false);
        }
        if let Some(c) = self.calls.get_mut(&key) {
            c.record.handoffs.push(handoff_record(&h, outcome, now));
        }
    }

    /// Carries out what the ACD decided, and the transfers and keys waiting.
    pub(crate) fn agents_drain(&mut self, now: u64) {
        for (to, d) in std::mem::take(&mut self.agents.keys_out) {
            self.endpoint.send_dtmf(now, to, d);
        }
        for (key, target) in std::mem::take(&mut self.agents.transfers) {
            let uri = self.agents.transfer_gateway.as_deref().unwrap_or("").replace("{number}", &target);
            if let Err(e) = self.place(now, key, &target, Some(&uri), None, 0, true) {
                warn!(%target, "cannot transfer: {e}");
                self.end_transfer(now, key, format!("transfer_failed:{target}"));
            }
        }
        while let Some(cmd) = self.agents.acd.poll_command() {
            match cmd {
                Command::Offer { call, agent, contact, queue, priority } => {
                    let key = caller_key(call);
                    if !self.calls.contains_key(&key) {
                        self.agents.acd.caller_left(now, call, false);
                        continue;
                    }
                    match self.place(now, key, &agent, contact.as_deref(), queue.as_deref(), priority, false) {
                        Ok(leg) => info!(%agent, leg = leg.0, "ringing an agent"),
                        Err(e) => {
                            warn!(%agent, "cannot ring the agent: {e}");
                            self.agents.acd.offer_failed(now, call, &agent, OfferFailure::Unreachable);
                        }
                    }
                }
                Command::Withdraw { call, agent } => {
                    let leg = self.agents.legs.iter().find(|(_, l)| l.caller == caller_key(call) && l.agent == agent.as_str()).map(|(k, _)| *k);
                    if let Some(leg) = leg {
                        self.endpoint.hangup(now, leg);
                        self.drop_leg(leg);
                    }
                }
                Command::Finish { call, outcome } => {
                    let key = caller_key(call);
                    let Some(h) = self.calls.get_mut(&key).and_then(|c| c.handoff.take()) else { continue };
                    if let Some((leg, _, _)) = h.bridged {
                        self.push(Output::Media(Media::Unbridge { caller: key, leg }));
                        self.drop_leg(leg);
                    }
                    let Some(c) = self.calls.get_mut(&key) else { continue };
                    c.playing = 0;
                    info!(call_id = %c.record.call_id, %outcome, "back in the flow");
                    c.record.handoffs.push(handoff_record(&h, outcome.name(), now));
                    if let Some(op) = h.op {
                        let t_ms = now.saturating_sub(c.started);
                        c.record.timeline.push(crate::records::Moment { t_ms, what: crate::records::MomentKind::Done { op: h.kind.name().into(), outcome: outcome.name().into() } });
                        c.session.handle_event(now, Event::Completed { op, outcome: outcome.name().into(), fields: vec![] });
                    }
                    self.push(Output::Media(Media::Hold { call: key, music: None }));
                    self.push(Output::Media(Media::Stop { call: key }));
                    self.dirty.insert(key);
                    self.write_record(key);
                }
                Command::Announce { call, position, wait_ms } => self.announce(caller_key(call), position, wait_ms),
            }
        }
        while let Some(r) = self.agents.acd.poll_record() {
            let line = match &r {
                Record::Call(rec) => {
                    // The live KPIs cover the last 24 hours (`ivr report` reads the files).
                    let horizon = now.saturating_sub(24 * 3_600_000);
                    while self.agents.history.front().is_some_and(|r| r.joined_ms < horizon) {
                        self.agents.history.pop_front();
                    }
                    self.agents.history.push_back(rec.clone());
                    let call_id = self.agents.call_ids.remove(&rec.call);
                    let joined_at_ms = self.agents.wall(rec.joined_ms);
                    serde_json::to_vec(&QueueLine { call_id, joined_at_ms, record: rec }).map(|l| (Log::Queue, l))
                }
                Record::Agent(rec) => {
                    let (from_at_ms, to_at_ms) = (self.agents.wall(rec.from_ms), self.agents.wall(rec.to_ms));
                    serde_json::to_vec(&AgentLine { from_at_ms, to_at_ms, record: rec }).map(|l| (Log::Agents, l))
                }
            };
            if let Ok((log, mut line)) = line {
                line.push(b'\n');
                self.push(Output::Record { log, line });
            }
        }
    }

    /// INVITE the agent's phone (or the transfer target) for `key`, offering
    /// the caller's codec; the leg's RTP port is opened by the host.
    #[allow(clippy::too_many_arguments)]
    fn place(&mut self, now: u64, key: CallKey, agent: &str, contact: Option<&str>, queue: Option<&str>, priority: i64, transfer: bool) -> Result<CallKey, String> {
        let contact = contact.ok_or("the agent's phone is not registered")?;
        let registered = self.agents.registrations.get(agent).filter(|_| !transfer).map(|r| r.1);
        let dest = registered.or_else(|| ivr_sip::uri::host_addr(contact)).ok_or_else(|| format!("{contact} is not a SIP address with an IP host"))?;
        let c = self.calls.get(&key).ok_or("the caller has gone")?;
        let ip = self.endpoint.local_for(dest).ip();
        let port = self.ports.take().ok_or("no free RTP port")?;
        let codec = c.stream.codec;
        let dtmf = c.stream.dtmf_payload_type.unwrap_or(101);
        let offer = sdp::Negotiated { remote: dest, codec, dtmf_payload_type: Some(dtmf), ptime_ms: 20, send: true };
        let local = SocketAddr::new(ip, port);
        let body = sdp::answer(&offer, local, key.0 ^ 0xa6e7, 1);
        let tier = self.agents.acd.tiers().iter().find(|t| t.priority == priority).map(|t| t.name.clone()).unwrap_or_else(|| priority.to_string());
        let path = c.record.nodes.join(">");
        let mut extra: Vec<(&str, &str)> = vec![("X-IVR-Call-ID", &c.record.call_id), ("X-IVR-Tier", &tier), ("X-IVR-Path", &path)];
        if let Some(q) = queue {
            extra.push(("X-IVR-Queue", q));
        }
        let caller = c.record.caller.clone();
        let leg = self.endpoint.call(now, contact, dest, &caller, &extra, &body);
        let stream = StreamSpec { codec, remote: dest, send: false, ptime_ms: 20, dtmf_payload_type: Some(dtmf), inband_dtmf: false, latch: false, ssrc_seed: leg.0 };
        self.agents.legs.insert(leg, Leg { caller: key, agent: agent.to_string(), transfer, port, local });
        self.push(Output::Media(Media::Open { call: leg, local, stream, leg: true, shared: false }));
        Ok(leg)
    }

    /// The host could not open a leg's RTP port (another process holds it):
    /// the leg is cancelled and, the fault being ours, the agent stays ready
    /// and the caller is offered again on another port.
    pub(crate) fn leg_media_failed(&mut self, now: u64, leg: CallKey) {
        self.endpoint.hangup(now, leg);
        let Some(l) = self.agents.legs.get(&leg) else { return };
        let (caller, agent, transfer) = (l.caller, l.agent.clone(), l.transfer);
        self.drop_leg(leg);
        if transfer {
            return self.end_transfer(now, caller, format!("transfer_failed:{agent}:503"));
        }
        warn!(%agent, "the RTP port of the agent's leg could not be opened: offered again on another");
        self.agents.acd.offer_failed(now, queued(caller), &agent, OfferFailure::Local);
    }

    /// The agent's phone answered: bridge, or hang up if the ACD no longer wants it.
    pub(crate) fn leg_answered(&mut self, now: u64, leg: CallKey, answer: &[u8]) {
        let Some(l) = self.agents.legs.get(&leg) else { return };
        let (caller, agent, transfer) = (l.caller, l.agent.clone(), l.transfer);
        let neg = sdp::parse_offer(&String::from_utf8_lossy(answer)).and_then(|o| o.negotiate());
        let Some(c) = self.calls.get_mut(&caller) else {
            self.endpoint.hangup(now, leg);
            return self.drop_leg(leg);
        };
        let neg = match neg {
            Ok(n) if n.codec == c.stream.codec => n,
            other => {
                warn!(call_id = %c.record.call_id, %agent, "the answer has no usable audio ({:?}); hanging up that leg", other.err());
                self.endpoint.hangup(now, leg);
                self.drop_leg(leg);
                if transfer {
                    self.end_transfer(now, caller, format!("transfer_failed:{agent}"));
                } else {
                    self.agents.acd.offer_failed(now, queued(caller), &agent, OfferFailure::Unreachable);
                }
                return;
            }
        };
        if transfer {
            info!(call_id = %c.record.call_id, target = %agent, "transfer answered; bridged");
            c.record.outcome = Some(format!("transferred:{agent}"));
        } else if !self.agents.acd.answered(now, queued(caller), &agent) {
            self.endpoint.hangup(now, leg);
            return self.drop_leg(leg);
        } else {
            info!(call_id = %c.record.call_id, %agent, "agent answered; bridged");
        }
        let caller_dtmf = c.stream.dtmf_payload_type;
        let pt = neg.codec.payload_type();
        let to_leg = RelaySpec { to: Some(neg.remote), seed: leg.0 ^ 0x1234_5678_9abc, audio_pt: pt, dtmf: caller_dtmf.zip(neg.dtmf_payload_type) };
        let to_caller = RelaySpec { to: None, seed: caller.0 ^ 0x0fed_cba9_8765, audio_pt: pt, dtmf: neg.dtmf_payload_type.zip(caller_dtmf) };
        c.playing = 0;
        if let Some(h) = c.handoff.as_mut() {
            h.bridged = Some((leg, agent, now));
        }
        self.push(Output::Media(Media::Stop { call: caller }));
        self.push(Output::Media(Media::Hold { call: caller, music: None }));
        self.push(Output::Media(Media::Bridge { caller, leg, to_leg, to_caller }));
        self.write_record(caller);
    }

    /// The agent's phone (or the transfer target) did not take the call.
    pub(crate) fn leg_failed(&mut self, now: u64, leg: CallKey, code: u16) {
        let Some(l) = self.agents.legs.get(&leg) else { return };
        let (caller, agent, transfer) = (l.caller, l.agent.clone(), l.transfer);
        self.drop_leg(leg);
        if transfer {
            info!(target = %agent, code, "the transfer failed");
            return self.end_transfer(now, caller, format!("transfer_failed:{agent}:{code}"));
        }
        info!(%agent, code, "the agent's phone refused or failed");
        let why = if matches!(code, 486 | 600 | 603) { OfferFailure::Declined } else { OfferFailure::Unreachable };
        self.agents.acd.offer_failed(now, queued(caller), &agent, why);
    }

    /// A re-INVITE from the far end of a leg (the agent puts the caller on
    /// hold, takes them off, or moves media): answered on the leg's own port
    /// in the bridged codec; the caller's audio follows the new address.
    pub(crate) fn leg_reinvite(&mut self, now: u64, leg: CallKey, offer: &[u8]) {
        let Some(l) = self.agents.legs.get(&leg) else { return };
        let (caller, local) = (l.caller, l.local);
        let Some(c) = self.calls.get(&caller) else { return self.endpoint.reject(now, leg, 488, "Not Acceptable Here", &[]) };
        let codec = c.stream.codec;
        match sdp::parse_offer(&String::from_utf8_lossy(offer)).and_then(|o| o.negotiate_keeping(Some(codec))) {
            Ok(neg) if neg.codec == codec => {
                self.push(Output::Media(Media::Retarget { call: caller, to: neg.remote }));
                self.endpoint.accept(now, leg, &sdp::answer(&neg, local, leg.0 ^ 0xa6e7, 2));
            }
            _ => self.endpoint.reject(now, leg, 488, "Not Acceptable Here", &[]),
        }
    }

    /// The agent hung up: the caller goes back to the flow. The transfer
    /// target hung up: so does the caller's call.
    pub(crate) fn leg_ended(&mut self, now: u64, leg: CallKey) {
        let Some(l) = self.agents.legs.get(&leg) else { return };
        let (caller, transfer) = (l.caller, l.transfer);
        if self.calls.contains_key(&caller) {
            self.push(Output::Media(Media::Unbridge { caller, leg }));
            if transfer {
                let outcome = self.calls.get_mut(&caller).and_then(|c| c.record.outcome.take()).unwrap_or_default();
                self.end_transfer(now, caller, outcome);
            }
        }
        self.drop_leg(leg);
        if !transfer {
            self.agents.acd.talk_ended(now, queued(caller), true);
        }
    }

    fn drop_leg(&mut self, leg: CallKey) {
        if let Some(l) = self.agents.legs.remove(&leg) {
            self.push(Output::Media(Media::Close { call: leg }));
            self.ports.release(l.port);
        }
    }

    /// A transfer is over (failed, or the far end hung up): the caller's call
    /// ends once its audio has played out.
    fn end_transfer(&mut self, now: u64, key: CallKey, outcome: String) {
        let Some(c) = self.calls.get_mut(&key) else { return };
        if let Some(h) = c.handoff.take() {
            let result = if h.bridged.is_some() { Outcome::Served.name() } else { Outcome::Failed.name() };
            c.record.handoffs.push(handoff_record(&h, result, now.max(h.started)));
        }
        c.record.outcome = Some(outcome);
        c.hangup_when_quiet = true;
        c.playing = 0;
        self.push(Output::Media(Media::Hold { call: key, music: None }));
        self.push(Output::Media(Media::Stop { call: key }));
        self.dirty.insert(key);
    }

    /// Plays a queue announcement, then the music resumes: position ("you are
    /// next" / callers ahead) and estimated wait in minutes, or the periodic
    /// "please hold", from the flow's catalogue in the caller's language.
    fn announce(&mut self, key: CallKey, position: Option<u32>, wait_ms: Option<u64>) {
        let Some(c) = self.calls.get_mut(&key) else { return };
        let lang = c.session.language() as usize;
        let mut audio = Vec::new();
        let number = |n: u64, audio: &mut Vec<_>| audio.extend(c.prompts.say(&c.program, ivr_bytecode::SayKind::Number, &Value::Num(n.into()), lang));
        match position {
            Some(1) => audio.extend(c.prompts.by_id(ids::QUEUE_NEXT, lang)),
            Some(p) => {
                if let Some(a) = c.prompts.by_id(ids::QUEUE_POSITION, lang) {
                    audio.push(a);
                    number(p.saturating_sub(1) as u64, &mut audio);
                }
            }
            None => audio.extend(c.prompts.by_id(ids::QUEUE_HOLD, lang)),
        }
        if let (Some(w), Some(a)) = (wait_ms, c.prompts.by_id(ids::QUEUE_WAIT, lang)) {
            audio.push(a);
            number(w.div_ceil(60_000).max(1), &mut audio);
            audio.extend(c.prompts.by_id(ids::QUEUE_MINUTES, lang));
        }
        if !audio.is_empty() {
            c.playing = 1;
            self.push(Output::Media(Media::Stop { call: key }));
            let label = match position {
                Some(p) => format!("queue position {p}"),
                None => "queue hold".to_string(),
            };
            self.push(Output::Media(Media::Play { call: key, id: PlayId(0), audio, label }));
        }
    }
}

/// A line of `agents.jsonl`: the state record, with wall-clock times.
#[derive(serde::Serialize)]
struct AgentLine<'a> {
    from_at_ms: i64,
    to_at_ms: i64,
    #[serde(flatten)]
    record: &'a ivr_acd::AgentStateRecord,
}

/// A line of `queue.jsonl`: the ACD's record, with the call's SIP Call-ID and
/// the wall-clock time it joined.
#[derive(serde::Serialize)]
struct QueueLine<'a> {
    call_id: Option<String>,
    joined_at_ms: i64,
    #[serde(flatten)]
    record: &'a ivr_acd::CallRecord,
}

fn handoff_record(h: &Pending, outcome: &str, now: u64) -> HandoffRecord {
    let (agent, talk_ms, waited_ms) = match &h.bridged {
        Some((_, agent, since)) => (Some(agent.clone()), now.saturating_sub(*since), since.saturating_sub(h.started)),
        None => (None, 0, now.saturating_sub(h.started)),
    };
    HandoffRecord { kind: h.kind.name().to_string(), target: h.target.clone(), priority: h.priority, outcome: outcome.to_string(), waited_ms, agent, talk_ms }
}
