//! Hand-offs to agents: the host side of the queue core ([`ivr_acd::Acd`]).
//!
//! The flow's `enqueue` / `dial agent` go to the ACD; its commands become SIP
//! and media here: an offer places a call to the agent's phone (the server is
//! a back-to-back user agent), the answer bridges the two legs (RTP relayed
//! both ways, keys included), a withdrawn offer cancels the agent leg, the
//! outcome resumes the caller's flow. Waiting callers hear music on hold and
//! the queue's announcements in their language. Agents' phones log in by
//! REGISTER with digest authentication.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ivr_acd::{Acd, Command, OfferFailure, Record};
use ivr_media::sdp;
use ivr_sip::endpoint::{CallKey, Endpoint, Registration};
use ivr_vm::{Event, OpId, PlayId, Value};
use tokio::net::UdpSocket;
use tracing::{info, warn};

use crate::media::{self, Relay};
use crate::records::{self, Handoff as HandoffRecord, Log};
use crate::{Call, Ports};

/// Where a caller is handed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum To {
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
pub struct Pending {
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
    rtp: Arc<UdpSocket>,
    port: u16,
    receiver: Option<tokio::task::JoinHandle<()>>,
    relay: media::RelaySlot,
}

/// Ten failed logins from one address within this long block it for as long.
const AUTH_WINDOW_MS: u64 = 60_000;
const AUTH_MAX_FAILURES: u32 = 10;
/// The shortest registration kept, in seconds (shorter ones get 423).
const MIN_EXPIRES: u32 = 60;
/// Nonces are good for this long.
const NONCE_MS: u64 = 300_000;

pub struct Agents {
    pub acd: Acd,
    /// Queues are configured (else hand-offs answer `no_agents` / `absent`).
    enabled: bool,
    legs: HashMap<CallKey, Leg>,
    /// Registered agents: work number → when the registration expires, and
    /// where the REGISTER came from (the phone is reached there, through any
    /// NAT, whatever its Contact says).
    registrations: HashMap<String, (u64, SocketAddr)>,
    auth_failures: HashMap<IpAddr, (u32, u64)>,
    nonce_secret: String,
    realm: String,
    /// The ACD's call records of the last 24 hours, for the live KPIs.
    pub history: std::collections::VecDeque<ivr_acd::CallRecord>,
    /// Keys sent by SIP INFO to pass to the other leg of a bridge.
    keys_out: Vec<(CallKey, char)>,
    /// Where `transfer` sends calls: a SIP URI with `{number}` (a gateway).
    transfer_gateway: Option<String>,
    /// Transfers the flows asked for, placed in `drain`.
    transfers: Vec<(CallKey, String)>,
    /// Wall-clock milliseconds at the server's time 0 (records carry both).
    wall_base: i64,
}

impl Agents {
    pub fn new(cfg: ivr_acd::AcdConfig, realm: String, transfer_gateway: Option<String>, seed: u64, now: u64) -> Agents {
        let enabled = !cfg.queues.is_empty() || !cfg.agents.is_empty();
        Agents {
            acd: Acd::new(cfg, now),
            enabled,
            legs: HashMap::new(),
            registrations: HashMap::new(),
            auth_failures: HashMap::new(),
            nonce_secret: format!("{seed:016x}{:016x}", seed.rotate_left(29) ^ 0x9e37_79b9_7f4a_7c15),
            realm,
            history: std::collections::VecDeque::new(),
            keys_out: Vec::new(),
            transfer_gateway,
            transfers: Vec::new(),
            wall_base: jiff::Timestamp::now().as_millisecond() - now as i64,
        }
    }

    /// New agents and queues (a reload): see [`Acd::reconfigure`].
    pub fn reconfigure(&mut self, now: u64, cfg: ivr_acd::AcdConfig) {
        self.enabled = !cfg.queues.is_empty() || !cfg.agents.is_empty();
        self.acd.reconfigure(now, cfg);
    }

    pub fn is_leg(&self, key: CallKey) -> bool {
        self.legs.contains_key(&key)
    }

    pub fn poll_timeout(&self) -> Option<u64> {
        let regs = self.registrations.values().map(|r| r.0).min();
        [self.acd.poll_timeout(), regs].into_iter().flatten().min()
    }

    /// The flow hands the caller over: `Action::Enqueue` (join a queue) or
    /// `Action::DialAgent` (ring one agent). The caller hears music meanwhile.
    pub fn start(&mut self, now: u64, key: CallKey, c: &mut Call, action: ivr_vm::Action) {
        use ivr_vm::Action::{DialAgent, Enqueue};
        let (op, kind, target, priority, nobody) = match &action {
            Enqueue { op, queue, priority, .. } => (*op, To::Queue, queue.clone(), *priority, "no_agents"),
            DialAgent { op, work_number, .. } => (*op, To::Agent, work_number.clone(), 0, "absent"),
            _ => return,
        };
        if !self.enabled {
            c.session.handle_event(now, Event::Completed { op, outcome: nobody.into(), fields: vec![] });
            return;
        }
        let leave_key = if kind == To::Queue { self.acd.queue_config(&target).and_then(|q| q.leave_key) } else { None };
        info!(call_id = %c.record.call_id, kind = kind.name(), %target, priority, "handing over to agents");
        c.handoff = Some(Pending { op: Some(op), kind, target, priority, leave_key, started: now, bridged: None });
        c.stream.set_hold(Some(c.prompts.hold()));
        match action {
            Enqueue { queue, priority, max_wait_ms, .. } => self.acd.enqueue(now, key.0, &queue, priority, max_wait_ms),
            DialAgent { work_number, timeout_ms, .. } => self.acd.dial(now, key.0, &work_number, timeout_ms),
            _ => {}
        }
    }

    /// The flow ended with `transfer NUMBER`: with a gateway configured, the
    /// server calls the number through it and bridges the caller (hearing music
    /// while it rings); `false` when there is no gateway.
    pub fn transfer(&mut self, now: u64, key: CallKey, c: &mut Call, target: String) -> bool {
        if self.transfer_gateway.is_none() || target.is_empty() || !target.chars().all(|ch| ch.is_ascii_digit() || "+*#".contains(ch)) {
            return false;
        }
        info!(call_id = %c.record.call_id, %target, "transferring");
        c.handoff = Some(Pending { op: None, kind: To::Transfer, target: target.clone(), priority: 0, leave_key: None, started: now, bridged: None });
        c.stream.set_hold(Some(c.prompts.hold()));
        self.transfers.push((key, target));
        true
    }

    /// A key from a caller in a hand-off: the queue's leave key takes them
    /// out; other keys are not the flow's (a bridged caller's keys go to the
    /// agent in the RTP relay).
    pub fn key(&mut self, now: u64, key: CallKey, c: &Call, d: char) {
        if let Some((leg, _, _)) = c.handoff.as_ref().and_then(|h| h.bridged.as_ref()) {
            // Keys in RTP are relayed as they are; these came by SIP INFO.
            self.keys_out.push((*leg, d));
            return;
        }
        if let Some(h) = c.handoff.as_ref().filter(|h| h.bridged.is_none() && h.leave_key == Some(d)) {
            info!(call_id = %c.record.call_id, queue = %h.target, "the caller left the queue by key");
            self.acd.caller_left(now, key.0, true);
        }
    }

    /// The caller hung up (or the call failed) during a hand-off.
    pub fn caller_gone(&mut self, now: u64, key: CallKey, c: &mut Call, endpoint: &mut Endpoint, ports: &mut Ports) {
        let Some(h) = c.handoff.take() else { return };
        // Every leg placed for this caller ends: bridged (BYE) or ringing (CANCEL).
        let legs: Vec<CallKey> = self.legs.iter().filter(|(_, l)| l.caller == key).map(|(k, _)| *k).collect();
        for leg in legs {
            endpoint.hangup(now, leg);
            self.drop_leg(leg, ports);
        }
        let outcome = if h.bridged.is_some() { "served" } else { "abandoned" };
        if h.kind != To::Transfer {
            self.acd.caller_left(now, key.0, false);
        }
        c.record.handoffs.push(handoff_record(&h, outcome, now));
    }

    /// A key the agent's phone sent by SIP INFO: on to the caller the same way.
    pub fn leg_key(&mut self, leg: CallKey, d: char) {
        if let Some(l) = self.legs.get(&leg) {
            self.keys_out.push((l.caller, d));
        }
    }

    /// Carries out what the ACD decided.
    pub fn drain(&mut self, now: u64, calls: &mut HashMap<CallKey, Call>, endpoint: &mut Endpoint, ports: &mut Ports, records: &mut records::Writer, dirty: &mut Vec<CallKey>) {
        for (to, d) in self.keys_out.drain(..) {
            endpoint.send_dtmf(now, to, d);
        }
        for (key, target) in std::mem::take(&mut self.transfers) {
            let Some(c) = calls.get_mut(&key) else { continue };
            let uri = self.transfer_gateway.as_deref().unwrap_or("").replace("{number}", &target);
            if let Err(e) = self.place(now, key, c, &target, Some(&uri), None, 0, true, endpoint, ports) {
                warn!(call_id = %c.record.call_id, %target, "cannot transfer: {e}");
                end_transfer(c, format!("transfer_failed:{target}"), now);
            }
        }
        while let Some(cmd) = self.acd.poll_command() {
            match cmd {
                Command::Offer { call, agent, contact, queue, priority } => {
                    let key = CallKey(call);
                    let Some(c) = calls.get_mut(&key) else {
                        self.acd.caller_left(now, call, false);
                        continue;
                    };
                    match self.place(now, key, c, &agent, contact.as_deref(), queue.as_deref(), priority, false, endpoint, ports) {
                        Ok(leg) => info!(call_id = %c.record.call_id, %agent, leg = leg.0, "ringing an agent"),
                        Err(e) => {
                            warn!(call_id = %c.record.call_id, %agent, "cannot ring the agent: {e}");
                            self.acd.offer_failed(now, call, &agent, OfferFailure::Unreachable);
                        }
                    }
                }
                Command::Withdraw { call, agent } => {
                    let leg = self.legs.iter().find(|(_, l)| l.caller == CallKey(call) && l.agent == agent).map(|(k, _)| *k);
                    if let Some(leg) = leg {
                        endpoint.hangup(now, leg);
                        self.drop_leg(leg, ports);
                    }
                }
                Command::Finish { call, outcome } => {
                    let key = CallKey(call);
                    let Some(c) = calls.get_mut(&key) else { continue };
                    let Some(h) = c.handoff.take() else { continue };
                    if let Some((leg, _, _)) = h.bridged {
                        self.unbridge(c);
                        self.drop_leg(leg, ports);
                    }
                    c.stream.set_hold(None);
                    c.stream.stop();
                    info!(call_id = %c.record.call_id, outcome = outcome.name(), "back in the flow");
                    c.record.handoffs.push(handoff_record(&h, outcome.name(), now));
                    if let Some(op) = h.op {
                        c.session.handle_event(now, Event::Completed { op, outcome: outcome.name().into(), fields: vec![] });
                    }
                    dirty.push(key);
                }
                Command::Announce { call, position, wait_ms } => {
                    if let Some(c) = calls.get_mut(&CallKey(call)) {
                        announce(c, position, wait_ms);
                    }
                }
            }
        }
        while let Some(r) = self.acd.poll_record() {
            let written = match &r {
                Record::Call(rec) => {
                    // The live KPIs cover the last 24 hours (`ivr report` reads the files).
                    let horizon = now.saturating_sub(24 * 3_600_000);
                    while self.history.front().is_some_and(|r| r.joined_ms < horizon) {
                        self.history.pop_front();
                    }
                    self.history.push_back(rec.clone());
                    let call_id = calls.get(&CallKey(rec.call)).map(|c| c.record.call_id.clone());
                    let joined_at_ms = self.wall_base + rec.joined_ms as i64;
                    records.write(Log::Queue, &QueueLine { call_id, joined_at_ms, record: rec })
                }
                Record::Agent(rec) => {
                    let (from_at_ms, to_at_ms) = (self.wall_base + rec.from_ms as i64, self.wall_base + rec.to_ms as i64);
                    records.write(Log::Agents, &AgentLine { from_at_ms, to_at_ms, record: rec })
                }
            };
            if let Err(e) = written {
                warn!("cannot write queue records: {e}");
            }
        }
    }

    /// INVITE the agent's phone (or the transfer target) for `key`, offering
    /// the caller's codec.
    #[allow(clippy::too_many_arguments)]
    fn place(
        &mut self,
        now: u64,
        key: CallKey,
        c: &mut Call,
        agent: &str,
        contact: Option<&str>,
        queue: Option<&str>,
        priority: i64,
        transfer: bool,
        endpoint: &mut Endpoint,
        ports: &mut Ports,
    ) -> Result<CallKey, String> {
        let contact = contact.ok_or("the agent's phone is not registered")?;
        let registered = self.registrations.get(agent).filter(|_| !transfer).map(|r| r.1);
        let dest = registered.or_else(|| contact_addr(contact)).ok_or_else(|| format!("{contact} is not a SIP address with an IP host"))?;
        let ip = endpoint.local_for(dest).ip();
        let (port, rtp) = ports.bind(ip).ok_or("no free RTP port")?;
        let codec = c.stream.codec();
        let dtmf = c.remote.as_ref().and_then(|n| n.dtmf_payload_type).unwrap_or(101);
        let offer = sdp::Negotiated { remote: dest, codec, dtmf_payload_type: Some(dtmf), ptime_ms: 20, send: true };
        let local = SocketAddr::new(ip, port);
        let body = sdp::answer(&offer, local, key.0 ^ 0xa6e7, 1);
        let tier = self.acd.tiers().iter().find(|t| t.priority == priority).map(|t| t.name.clone()).unwrap_or_else(|| priority.to_string());
        let path = c.record.nodes.join(">");
        let mut extra: Vec<(&str, &str)> = vec![("X-IVR-Call-ID", &c.record.call_id), ("X-IVR-Tier", &tier), ("X-IVR-Path", &path)];
        if let Some(q) = queue {
            extra.push(("X-IVR-Queue", q));
        }
        let caller = c.record.caller.clone();
        let leg = endpoint.call(now, contact, dest, &caller, &extra, &body);
        self.legs.insert(leg, Leg { caller: key, agent: agent.to_string(), transfer, rtp, port, receiver: None, relay: Arc::new(std::sync::Mutex::new(None)) });
        Ok(leg)
    }

    /// The agent's phone answered: bridge, or hang up if the ACD no longer wants it.
    pub fn leg_answered(&mut self, now: u64, leg: CallKey, answer: &[u8], calls: &mut HashMap<CallKey, Call>, endpoint: &mut Endpoint, ports: &mut Ports) {
        let Some(l) = self.legs.get(&leg) else { return };
        let (caller, agent, transfer) = (l.caller, l.agent.clone(), l.transfer);
        let neg = sdp::parse_offer(&String::from_utf8_lossy(answer)).and_then(|o| o.negotiate());
        let Some(c) = calls.get_mut(&caller) else {
            endpoint.hangup(now, leg);
            return self.drop_leg(leg, ports);
        };
        let neg = match neg {
            Ok(n) if n.codec == c.stream.codec() => n,
            other => {
                warn!(call_id = %c.record.call_id, %agent, "the answer has no usable audio ({:?}); hanging up that leg", other.err());
                endpoint.hangup(now, leg);
                self.drop_leg(leg, ports);
                if transfer {
                    end_transfer(c, format!("transfer_failed:{agent}"), now);
                } else {
                    self.acd.offer_failed(now, caller.0, &agent, OfferFailure::Unreachable);
                }
                return;
            }
        };
        if transfer {
            info!(call_id = %c.record.call_id, target = %agent, "transfer answered; bridged");
            c.record.outcome = Some(format!("transferred:{agent}"));
        } else if !self.acd.answered(now, caller.0, &agent) {
            endpoint.hangup(now, leg);
            return self.drop_leg(leg, ports);
        } else {
            info!(call_id = %c.record.call_id, %agent, "agent answered; bridged");
        }
        // Caller → agent through the caller's receive task; agent → caller through the leg's.
        let caller_dtmf = c.remote.as_ref().and_then(|n| n.dtmf_payload_type);
        let l = self.legs.get_mut(&leg).unwrap();
        let pt = neg.codec.payload_type();
        let to_agent = Relay::new(l.rtp.clone(), neg.remote, leg.0 ^ 0x1234_5678_9abc, pt, caller_dtmf.zip(neg.dtmf_payload_type));
        let to_caller = Relay::new(c.rtp.clone(), c.stream.remote(), caller.0 ^ 0x0fed_cba9_8765, pt, neg.dtmf_payload_type.zip(caller_dtmf));
        *c.relay.lock().unwrap() = Some(to_agent);
        *l.relay.lock().unwrap() = Some(to_caller);
        l.receiver = Some(media::spawn_leg_receiver(l.rtp.clone(), neg.remote, l.relay.clone()));
        c.stream.stop();
        c.stream.set_hold(None);
        c.stream.set_muted(true);
        if let Some(h) = c.handoff.as_mut() {
            h.bridged = Some((leg, agent, now));
        }
    }

    /// The agent's phone (or the transfer target) did not take the call.
    pub fn leg_failed(&mut self, now: u64, leg: CallKey, code: u16, calls: &mut HashMap<CallKey, Call>, ports: &mut Ports) {
        let Some(l) = self.legs.get(&leg) else { return };
        let (caller, agent, transfer) = (l.caller, l.agent.clone(), l.transfer);
        self.drop_leg(leg, ports);
        if transfer {
            info!(target = %agent, code, "the transfer failed");
            if let Some(c) = calls.get_mut(&caller) {
                end_transfer(c, format!("transfer_failed:{agent}:{code}"), now);
            }
            return;
        }
        info!(%agent, code, "the agent's phone refused or failed");
        let why = if matches!(code, 486 | 600 | 603) { OfferFailure::Declined } else { OfferFailure::Unreachable };
        self.acd.offer_failed(now, caller.0, &agent, why);
    }

    /// A re-INVITE from the far end of a leg (the agent puts the caller on
    /// hold, takes them off, or moves media): answered on the leg's own port
    /// in the bridged codec; the caller's audio follows the new address.
    pub fn leg_reinvite(&mut self, now: u64, leg: CallKey, offer: &[u8], calls: &mut HashMap<CallKey, Call>, endpoint: &mut Endpoint) {
        let Some(l) = self.legs.get(&leg) else { return };
        let Some(c) = calls.get_mut(&l.caller) else { return endpoint.reject(now, leg, 488, "Not Acceptable Here", &[]) };
        let codec = c.stream.codec();
        let neg = sdp::parse_offer(&String::from_utf8_lossy(offer)).and_then(|o| o.negotiate_keeping(Some(codec)));
        match (neg, l.rtp.local_addr()) {
            (Ok(neg), Ok(local)) if neg.codec == codec => {
                if let Some(r) = c.relay.lock().unwrap().as_mut() {
                    r.retarget(neg.remote);
                }
                endpoint.accept(now, leg, &sdp::answer(&neg, local, leg.0 ^ 0xa6e7, 2));
            }
            _ => endpoint.reject(now, leg, 488, "Not Acceptable Here", &[]),
        }
    }

    /// The caller's media moved while bridged: the agent's audio follows.
    pub fn caller_moved(&mut self, key: CallKey, to: SocketAddr) {
        for l in self.legs.values().filter(|l| l.caller == key) {
            if let Some(r) = l.relay.lock().unwrap().as_mut() {
                r.retarget(to);
            }
        }
    }

    /// The agent hung up: the caller goes back to the flow. The transfer
    /// target hung up: so does the caller's call.
    pub fn leg_ended(&mut self, now: u64, leg: CallKey, calls: &mut HashMap<CallKey, Call>, ports: &mut Ports) {
        let Some(l) = self.legs.get(&leg) else { return };
        let (caller, transfer) = (l.caller, l.transfer);
        if let Some(c) = calls.get_mut(&caller) {
            self.unbridge(c);
            if transfer {
                let outcome = c.record.outcome.take().unwrap_or_default();
                end_transfer(c, outcome, now);
            }
        }
        self.drop_leg(leg, ports);
        if !transfer {
            self.acd.talk_ended(now, caller.0, true);
        }
    }

    fn unbridge(&mut self, c: &mut Call) {
        *c.relay.lock().unwrap() = None;
        c.stream.set_muted(false);
    }

    fn drop_leg(&mut self, leg: CallKey, ports: &mut Ports) {
        if let Some(l) = self.legs.remove(&leg) {
            *l.relay.lock().unwrap() = None;
            if let Some(r) = l.receiver {
                r.abort();
            }
            ports.release(l.port);
        }
    }

    // ---------------------------------------------------------------- REGISTER

    /// An agent's phone registers: digest-authenticated against the agent's
    /// password; a good registration logs the agent in at that contact.
    pub fn register(&mut self, now: u64, wall_ms: u64, r: Registration, endpoint: &mut Endpoint) {
        let ip = r.source.ip();
        if let Some((n, since)) = self.auth_failures.get(&ip).copied() {
            if now.saturating_sub(since) > AUTH_WINDOW_MS {
                self.auth_failures.remove(&ip);
            } else if n >= AUTH_MAX_FAILURES {
                return endpoint.answer(now, r.id, 403, "Forbidden", &[]);
            }
        }
        let challenge = |stale: bool, secret: &str, realm: &str| ivr_sip::digest::challenge(realm, &ivr_sip::digest::nonce(secret, wall_ms), stale);
        let Some(creds) = r.authorization.as_deref().and_then(ivr_sip::digest::parse) else {
            let c = challenge(false, &self.nonce_secret, &self.realm);
            return endpoint.answer(now, r.id, 401, "Unauthorized", &[("WWW-Authenticate", &c)]);
        };
        if !ivr_sip::digest::nonce_fresh(&self.nonce_secret, &creds.nonce, wall_ms, NONCE_MS) {
            let c = challenge(true, &self.nonce_secret, &self.realm);
            return endpoint.answer(now, r.id, 401, "Unauthorized", &[("WWW-Authenticate", &c)]);
        }
        let password = self.acd.agent_config(&r.user).and_then(|a| a.password.clone());
        let good = creds.username == r.user && creds.realm == self.realm && password.is_some_and(|p| creds.verify("REGISTER", &p));
        if !good {
            // Many sources: forget those whose window has passed.
            if self.auth_failures.len() > 10_000 {
                self.auth_failures.retain(|_, (_, since)| now.saturating_sub(*since) <= AUTH_WINDOW_MS);
            }
            let e = self.auth_failures.entry(ip).or_insert((0, now));
            e.0 += 1;
            warn!(source = %r.source, user = %r.user, "REGISTER refused: wrong credentials");
            return endpoint.answer(now, r.id, 403, "Forbidden", &[]);
        }
        self.auth_failures.remove(&ip);
        match r.contact.as_deref() {
            None => {
                endpoint.answer(now, r.id, 200, "OK", &[]);
            }
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
    pub fn handle_timeout(&mut self, now: u64) {
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

/// A transfer is over (failed, or the far end hung up): the caller's call ends
/// once its audio has played out.
fn end_transfer(c: &mut Call, outcome: String, now: u64) {
    if let Some(h) = c.handoff.take() {
        let result = if h.bridged.is_some() { "served" } else { "failed" };
        c.record.handoffs.push(handoff_record(&h, result, now.max(h.started)));
    }
    c.stream.set_hold(None);
    c.stream.stop();
    c.stream.set_muted(false);
    c.record.outcome = Some(outcome);
    c.hangup_when_quiet = true;
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
        Some((_, agent, since)) => (Some(agent.clone()), now - since, since - h.started),
        None => (None, 0, now - h.started),
    };
    HandoffRecord { kind: h.kind.name(), target: h.target.clone(), priority: h.priority, outcome: outcome.to_string(), waited_ms, agent, talk_ms }
}

/// `sip:1001@127.0.0.1:5070;transport=udp` → 127.0.0.1:5070 (IP hosts only;
/// port 5060 when none is given).
pub fn contact_addr(uri: &str) -> Option<SocketAddr> {
    let rest = uri.trim().trim_start_matches('<').strip_prefix("sip:")?;
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let host = host.split([';', '>', '?']).next()?;
    if let Ok(a) = host.parse::<SocketAddr>() {
        return Some(a);
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 5060))
}

/// Plays a queue announcement, then the music resumes: position ("you are
/// next" / callers ahead) and estimated wait in minutes, or the periodic
/// "please hold", from the flow's catalogue in the caller's language.
fn announce(c: &mut Call, position: Option<u32>, wait_ms: Option<u64>) {
    let lang = c.session.language() as usize;
    let mut audio = Vec::new();
    let number = |n: u64, audio: &mut Vec<_>| audio.extend(c.prompts.say(&c.program, ivr_bytecode::SayKind::Number, &Value::Num(n.into()), lang));
    match position {
        Some(1) => audio.extend(c.prompts.by_id("queue_next", lang)),
        Some(p) => {
            if let Some(a) = c.prompts.by_id("queue_position", lang) {
                audio.push(a);
                number(p as u64 - 1, &mut audio);
            }
        }
        None => audio.extend(c.prompts.by_id("queue_hold", lang)),
    }
    if let (Some(w), Some(a)) = (wait_ms, c.prompts.by_id("queue_wait", lang)) {
        audio.push(a);
        number(w.div_ceil(60_000).max(1), &mut audio);
        audio.extend(c.prompts.by_id("queue_minutes", lang));
    }
    if !audio.is_empty() {
        c.stream.stop();
        c.stream.queue(PlayId(0), audio);
    }
}

#[cfg(test)]
mod tests {
    use super::contact_addr;

    #[test]
    fn contacts_resolve_to_ip_addresses() {
        assert_eq!(contact_addr("sip:1001@127.0.0.1:5070"), Some("127.0.0.1:5070".parse().unwrap()));
        assert_eq!(contact_addr("<sip:1001@127.0.0.1:5070;transport=udp>"), Some("127.0.0.1:5070".parse().unwrap()));
        assert_eq!(contact_addr("sip:1001@127.0.0.1"), Some("127.0.0.1:5060".parse().unwrap()));
        assert_eq!(contact_addr("sip:1001@[::1]:5070"), Some("[::1]:5070".parse().unwrap()));
        assert_eq!(contact_addr("sip:1001@phone.example"), None);
        assert_eq!(contact_addr("tel:1001"), None);
    }
}
