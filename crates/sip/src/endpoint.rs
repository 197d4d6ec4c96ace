//! The user agent server, sans-IO: transactions (RFC 3261 §17), dialogs (§12)
//! and their timers, driven by datagrams and a clock the host passes in.
//!
//! The host feeds [`Endpoint::handle`] with each datagram and calls
//! [`Endpoint::handle_timeout`] at [`Endpoint::poll_timeout`]; it drains
//! [`Endpoint::poll_transmit`] (datagrams to send) and [`Endpoint::poll_event`]
//! (calls arriving, answered, cancelled, ended, DTMF by INFO), and answers calls
//! with [`Endpoint::accept`], [`Endpoint::reject`] and [`Endpoint::hangup`].
//! Retransmitted requests are absorbed by their transaction and never reported
//! twice.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

use crate::message::{addr_uri, response, uri_user, Message, StartLine};

pub type Millis = u64;

/// RFC 3261 timer T1 (RTT estimate) and T2 (maximum retransmit interval).
pub const T1_MS: Millis = 500;
pub const T2_MS: Millis = 4_000;
/// Largest message accepted; larger ones get 513.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024;

const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO";
/// Methods defined by SIP extensions we know of but do not serve (405, not 501).
const KNOWN: &[&str] = &["REGISTER", "SUBSCRIBE", "NOTIFY", "PUBLISH", "MESSAGE", "REFER", "UPDATE", "PRACK"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallKey(pub u64);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new call. Answer with `accept` or `reject`.
    /// `local`: our address the caller reached (media is offered on its IP).
    Invite { call: CallKey, dialed: String, caller: String, sdp: Vec<u8>, peer: SocketAddr, local: SocketAddr, call_id: String },
    /// A re-INVITE (hold, unhold, codec change): answer with `accept` again.
    Reinvite { call: CallKey, sdp: Vec<u8> },
    /// The caller acknowledged our answer: media may flow.
    Confirmed { call: CallKey },
    /// The caller gave up before we answered.
    Cancelled { call: CallKey },
    /// The caller hung up.
    Bye { call: CallKey },
    /// Our answer was never acknowledged: we sent BYE and the call is over.
    AckTimeout { call: CallKey },
    /// A key sent by SIP INFO.
    Dtmf { call: CallKey, key: char },
    /// Our INVITE (see [`Endpoint::call`]) got a provisional answer (180, 183).
    Progress { call: CallKey, code: u16 },
    /// Our INVITE was answered; the ACK has been sent. `sdp` is the answer.
    Answered { call: CallKey, sdp: Vec<u8> },
    /// Our INVITE ended without a call: its final response (408 when nothing
    /// answered, 487 once cancelled).
    Failed { call: CallKey, code: u16 },
    /// A REGISTER (with [`Endpoint::set_registrar`]): answer it with [`Endpoint::answer`].
    Register(register::Registration),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// INVITE received, no final answer yet.
    Early,
    /// 200 OK sent, waiting for ACK.
    Answered,
    Confirmed,
    Ended,
}

#[derive(Debug)]
struct Call {
    call_id: String,
    local_tag: String,
    peer: SocketAddr,
    /// The INVITE that made the call (theirs, or ours for calls we place).
    invite: Message,
    /// A re-INVITE from the far end waiting for `accept` or `reject`.
    reinvite: Option<Message>,
    /// For calls we place: the INVITE client transaction.
    uac: Option<uac::Uac>,
    state: State,
    /// The 2xx being retransmitted until ACK, with its schedule.
    ok: Option<Retransmit>,
    remote_target: String,
    route_set: Vec<String>,
    /// The far end's From/To value (with its tag once known).
    remote_header: String,
    /// Our From/To value, with our tag.
    local_header: String,
    local_cseq: u32,
}

/// Our 2xx to an INVITE, resent until the ACK comes (RFC 3261 §13.3.1.4).
#[derive(Debug)]
struct Retransmit {
    data: Vec<u8>,
    /// Where the INVITE's responses go ([`Message::response_addr`]).
    to: SocketAddr,
    next: Millis,
    interval: Millis,
    deadline: Millis,
}

/// A server transaction's last response, resent for retransmitted requests.
#[derive(Debug)]
struct ServerTx {
    response: Option<Vec<u8>>,
    /// Where its responses go.
    peer: SocketAddr,
    expires: Millis,
}

/// A request we sent (BYE, CANCEL, INVITE), retransmitted until answered.
#[derive(Debug)]
struct ClientTx {
    data: Vec<u8>,
    peer: SocketAddr,
    next: Millis,
    interval: Millis,
    give_up: Millis,
}

pub struct Endpoint {
    /// Our addresses; the first is the primary.
    locals: Vec<SocketAddr>,
    /// With several addresses: which of ours each peer last reached.
    routes: HashMap<SocketAddr, SocketAddr>,
    routes_pruned: Millis,
    /// Our Server / User-Agent value; none at all when `None`.
    user_agent: Option<String>,
    rng: u64,
    next_call: u64,
    calls: HashMap<CallKey, Call>,
    by_dialog: HashMap<(String, String), CallKey>,
    /// By ([`Message::transaction_key`], method): branch and sent-by, so a
    /// request is a retransmission only if all three match (RFC 3261 §17.2.3).
    server_txs: HashMap<(String, String), ServerTx>,
    /// INVITE server transactions by key, for CANCEL to find (§9.2).
    invite_txs: HashMap<String, CallKey>,
    /// By (branch, method).
    client_txs: HashMap<(String, String), ClientTx>,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
    events: VecDeque<Event>,
    registrar: bool,
    /// Answer UDP requests at their source port even without `rport`.
    force_rport: bool,
    pending: HashMap<u64, (Message, SocketAddr)>,
    /// Calls we placed that are still in the INVITE transaction (few; the
    /// timers look only at these).
    placed: std::collections::HashSet<CallKey>,
    next_pending: u64,
}

impl Endpoint {
    /// `local`: the address in our Contact; `user_agent`: our Server and
    /// User-Agent value (`""` for none, see [`Endpoint::set_user_agent`]);
    /// `seed`: randomness for tags and branches.
    pub fn new(local: SocketAddr, user_agent: &str, seed: u64) -> Endpoint {
        Endpoint {
            locals: vec![local],
            routes: HashMap::new(),
            routes_pruned: 0,
            user_agent: clean_user_agent(user_agent),
            rng: seed | 1,
            next_call: 1,
            calls: HashMap::new(),
            by_dialog: HashMap::new(),
            server_txs: HashMap::new(),
            invite_txs: HashMap::new(),
            client_txs: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            registrar: false,
            force_rport: false,
            pending: HashMap::new(),
            placed: std::collections::HashSet::new(),
            next_pending: 1,
        }
    }

    /// What we call ourselves in the Server header of responses and the
    /// User-Agent header of requests; `None` sends neither, so a scanner
    /// probing with OPTIONS learns no product or version to look up known
    /// flaws for (RFC 3261 §20.35 and §20.41 warn of exactly this). Control
    /// characters are dropped (they would start a header of their own).
    pub fn set_user_agent(&mut self, user_agent: Option<String>) {
        self.user_agent = user_agent.as_deref().and_then(clean_user_agent);
    }

    /// The headers naming us: `name` (Server or User-Agent), if we say.
    fn product(&self, name: &str) -> Option<(String, String)> {
        self.user_agent.as_ref().map(|ua| (name.to_string(), ua.clone()))
    }

    /// Accept REGISTER (agents' phones logging in), reported as [`Event::Register`].
    pub fn set_registrar(&mut self, on: bool) {
        self.registrar = on;
    }

    /// Answer every UDP request at the address and port it came from, as if it
    /// carried `rport` (and say so in its Via). Off by default, as RFC 3261
    /// §18.2.2 has it: without `rport` a response goes to the source IP at the
    /// port the Via names. On for sites whose phones sit behind NATs but do
    /// not ask for `rport` (what other servers call `force_rport`).
    pub fn set_force_rport(&mut self, on: bool) {
        self.force_rport = on;
    }

    /// The primary address.
    pub fn local(&self) -> SocketAddr {
        self.locals[0]
    }

    /// Another address we listen on (another interface, IPv6 beside IPv4):
    /// datagrams arriving there are given with [`Endpoint::handle_at`].
    pub fn add_local(&mut self, addr: SocketAddr) {
        if !self.locals.contains(&addr) {
            self.locals.push(addr);
        }
    }

    /// Which of our addresses to use with `peer`: the one it reached us at,
    /// else the first of its address family. Send `peer`'s datagrams from it;
    /// our Via and Contact name it.
    pub fn local_for(&self, peer: SocketAddr) -> SocketAddr {
        if let Some(l) = self.routes.get(&peer) {
            return *l;
        }
        self.locals.iter().copied().find(|l| l.is_ipv4() == peer.is_ipv4()).unwrap_or(self.locals[0])
    }

    fn token(&mut self) -> String {
        // xorshift64*: unpredictable enough for tags and branches, no I/O.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        format!("{:016x}", self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D))
    }

    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Calls not yet ended.
    pub fn active_calls(&self) -> usize {
        self.calls.values().filter(|c| c.state != State::Ended).count()
    }

    pub fn poll_timeout(&self) -> Option<Millis> {
        let oks = self.calls.values().filter_map(|c| c.ok.as_ref().map(|o| o.next.min(o.deadline)));
        let invites = self.placed.iter().filter_map(|k| self.calls.get(k)?.uac.as_ref()?.deadline());
        let byes = self.client_txs.values().map(|t| t.next.min(t.give_up));
        let txs = self.server_txs.values().map(|t| t.expires);
        oks.chain(byes).chain(txs).chain(invites).min()
    }

    fn send(&mut self, to: SocketAddr, msg: &Message) -> Vec<u8> {
        let bytes = msg.to_bytes();
        self.transmits.push_back((to, bytes.clone()));
        bytes
    }

    /// Where the responses to `req` (from `from`) go; with several addresses
    /// of ours, they leave from the one `from` reached.
    fn reply_to(&mut self, req: &Message, from: SocketAddr) -> SocketAddr {
        let to = req.response_addr(from);
        if to != from {
            if let Some(l) = self.routes.get(&from).copied() {
                self.routes.insert(to, l);
            }
        }
        to
    }

    /// Answers `req`, which came from `from`: the response goes where
    /// [`Message::response_addr`] says, and a final one (or any to an INVITE)
    /// is kept to answer retransmissions (so they get the same To tag).
    /// Every response but 100 carries a To tag (RFC 3261 §8.2.6.2): `tag`, or
    /// a fresh one when the request had none, so that a client can tell our
    /// answer from another fork's and an ACK can name it.
    fn respond(&mut self, now: Millis, req: &Message, from: SocketAddr, code: u16, reason: &str, tag: Option<&str>, extra: &[(&str, &str)]) {
        let from = self.reply_to(req, from);
        let fresh;
        let tag = match tag {
            None if code > 100 && req.to_tag().is_none() => {
                fresh = self.token();
                Some(fresh.as_str())
            }
            t => t,
        };
        let mut r = response(req, code, reason, tag);
        r.headers.extend(self.product("Server"));
        for (n, v) in extra {
            r.headers.push((n.to_string(), v.to_string()));
        }
        let bytes = self.send(from, &r);
        if let (Some(branch), Some(method)) = (req.transaction_key(), req.method()) {
            if code >= 200 || method == "INVITE" {
                self.server_txs.insert(
                    (branch.to_string(), method.to_string()),
                    ServerTx { response: Some(bytes), peer: from, expires: now + 64 * T1_MS },
                );
            }
        }
    }

    /// One datagram from the network, to the primary address.
    pub fn handle(&mut self, now: Millis, from: SocketAddr, data: &[u8]) {
        let local = self.locals[0];
        self.handle_at(now, local, from, data)
    }

    /// One datagram from the network, to our address `local`.
    pub fn handle_at(&mut self, now: Millis, local: SocketAddr, from: SocketAddr, data: &[u8]) {
        if self.locals.len() > 1 {
            self.routes.insert(from, local);
        }
        if data.iter().all(|b| b.is_ascii_whitespace()) {
            return; // keep-alive
        }
        if data.len() > MAX_MESSAGE_BYTES {
            return self.too_large(now, from, &data[..MAX_MESSAGE_BYTES]);
        }
        let mut msg = match Message::parse(data, true) {
            Ok(m) => m,
            Err(e) => {
                // Answer 400 (505 for another SIP version) when we can tell
                // where to; drop responses and noise.
                if let Some(mut p) = e.partial.filter(|p| p.header("Via").is_some() && p.method().is_some() && p.method() != Some("ACK")) {
                    p.stamp_via(from, self.force_rport);
                    let why: String = e.reason.chars().filter(|c| !c.is_control()).take(60).collect();
                    let reason = if e.status == 505 { "Version Not Supported".to_string() } else { format!("Bad Request ({why})") };
                    self.respond(now, &p, from, e.status, &reason, None, &[]);
                }
                return;
            }
        };
        match &msg.start {
            StartLine::Response { code, .. } => {
                let code = *code;
                let method = msg.cseq().map(|c| c.1).unwrap_or_default();
                if code >= 200 {
                    if let Some(b) = msg.branch() {
                        self.client_txs.remove(&(b.to_string(), method.clone()));
                    }
                }
                if method == "INVITE" {
                    self.invite_response(now, from, code, msg);
                }
            }
            StartLine::Request { method, .. } => {
                let method = method.clone();
                msg.stamp_via(from, self.force_rport);
                // A Call-ID is printable (RFC 3261 §25.1 `word`s): one with
                // control characters would forge lines in logs and records.
                if msg.call_id().is_some_and(|id| id.chars().any(char::is_control)) {
                    if method != "ACK" {
                        self.respond(now, &msg, from, 400, "Bad Request (Call-ID)", None, &[]);
                    }
                    return;
                }
                self.request(now, from, msg, &method);
            }
        }
    }

    /// A request too large to accept, of which `head` could be read: 513 when
    /// it says where to answer.
    pub fn too_large(&mut self, now: Millis, from: SocketAddr, head: &[u8]) {
        let head = match Message::parse(head, true) {
            Ok(m) => Some(m),
            Err(e) => e.partial,
        };
        if let Some(mut p) = head.filter(|p| p.header("Via").is_some() && p.method().is_some_and(|m| m != "ACK")) {
            p.stamp_via(from, self.force_rport);
            self.respond(now, &p, from, 513, "Message Too Large", None, &[]);
        }
    }

    fn request(&mut self, now: Millis, from: SocketAddr, msg: Message, method: &str) {
        // A retransmission: resend the answer, report nothing.
        if method != "ACK" {
            if let Some(tx) = msg.transaction_key().and_then(|b| self.server_txs.get(&(b, method.to_string()))) {
                if let Some(r) = tx.response.clone() {
                    self.transmits.push_back((tx.peer, r));
                }
                return;
            }
        }
        // Max-Forwards is a proxy's to check (RFC 3261 §16.3); as the endpoint a
        // request is for, we process it even at 0 (RFC 4475 3.3.9).
        if method != "ACK" && method != "CANCEL" {
            if let StartLine::Request { uri, .. } = &msg.start {
                let scheme = uri.split(':').next().unwrap_or("").to_ascii_lowercase();
                if !matches!(scheme.as_str(), "sip" | "sips" | "tel") {
                    return self.respond(now, &msg, from, 416, "Unsupported URI Scheme", None, &[]);
                }
            }
        }
        if let Some(req) = msg.header("Require").filter(|_| method != "ACK" && method != "CANCEL") {
            let unsupported = req.trim().to_string();
            return self.respond(now, &msg, from, 420, "Bad Extension", None, &[("Unsupported", &unsupported)]);
        }
        match method {
            "INVITE" => self.incoming_invite(now, from, msg),
            "ACK" => self.ack(msg),
            "BYE" => self.in_dialog(now, from, msg, |ep, call, _| {
                ep.events.push_back(Event::Bye { call });
                ep.end(call);
                Ok(())
            }),
            "INFO" => self.in_dialog(now, from, msg, |ep, call, m| match dtmf_from_info(m) {
                Some(Ok(key)) => {
                    ep.events.push_back(Event::Dtmf { call, key });
                    Ok(())
                }
                Some(Err(())) => Err((400, "Bad DTMF")),
                None => Err((415, "Unsupported Media Type")),
            }),
            "CANCEL" => self.cancel(now, from, msg),
            "REGISTER" if self.registrar => self.register(now, from, msg),
            "OPTIONS" => self.respond(now, &msg, from, 200, "OK", None, &[("Allow", ALLOW), ("Accept", "application/sdp")]),
            m if KNOWN.contains(&m) => self.respond(now, &msg, from, 405, "Method Not Allowed", None, &[("Allow", ALLOW)]),
            _ => self.respond(now, &msg, from, 501, "Not Implemented", None, &[("Allow", ALLOW)]),
        }
    }

    fn dialog_key(msg: &Message) -> Option<(String, String)> {
        Some((msg.call_id()?.to_string(), msg.to_tag()?.to_string()))
    }

    /// The call a request within a dialog belongs to: its Call-ID and our tag
    /// (To) name the dialog, and its From tag must be the far end's — a
    /// stranger who learnt the Call-ID and our tag still cannot end the call,
    /// move its media or send keys into it.
    fn dialog(&self, msg: &Message) -> Option<CallKey> {
        let call = *self.by_dialog.get(&Self::dialog_key(msg)?)?;
        let remote = self.calls.get(&call)?;
        let theirs = crate::message::param(&remote.remote_header, "tag");
        (theirs.is_none() || msg.from_tag() == theirs).then_some(call)
    }

    fn incoming_invite(&mut self, now: Millis, from: SocketAddr, msg: Message) {
        if Self::dialog_key(&msg).is_some() {
            // re-INVITE
            let Some(call) = self.dialog(&msg) else {
                return self.respond(now, &msg, from, 481, "Call/Transaction Does Not Exist", None, &[]);
            };
            if let Some(c) = self.calls.get_mut(&call) {
                c.reinvite = Some(msg.clone());
                c.peer = from;
            }
            self.events.push_back(Event::Reinvite { call, sdp: msg.body.clone() });
            return;
        }
        let ctype = msg.header("Content-Type").unwrap_or("application/sdp").to_ascii_lowercase();
        if !msg.body.is_empty() && !ctype.starts_with("application/sdp") {
            return self.respond(now, &msg, from, 415, "Unsupported Media Type", None, &[("Accept", "application/sdp")]);
        }
        // Our answer carries SDP: a caller that accepts none cannot have it.
        let accept: Vec<String> = msg.headers_named("Accept").flat_map(|a| a.split(',')).map(|t| t.split(';').next().unwrap_or("").trim().to_ascii_lowercase()).collect();
        if !accept.is_empty() && !accept.iter().any(|t| matches!(t.as_str(), "application/sdp" | "application/*" | "*/*" | "")) {
            return self.respond(now, &msg, from, 406, "Not Acceptable", None, &[("Accept", "application/sdp")]);
        }
        let StartLine::Request { uri, .. } = &msg.start else { return };
        // The dialed number: the Request-URI user, falling back to To.
        let dialed = uri_user(uri).or_else(|| uri_user(addr_uri(msg.header("To").unwrap_or("")))).unwrap_or_default();
        let caller = uri_user(addr_uri(msg.header("From").unwrap_or(""))).unwrap_or_default();
        let call = CallKey(self.next_call);
        self.next_call += 1;
        let local_tag = self.token();
        let call_id = msg.call_id().unwrap_or_default().to_string();
        let remote_target = msg.header("Contact").map(addr_uri).unwrap_or("").to_string();
        let route_set: Vec<String> = msg.headers_named("Record-Route").map(str::to_string).collect();
        let remote_header = msg.header("From").unwrap_or("").to_string();
        let local_header = format!("{};tag={local_tag}", msg.header("To").unwrap_or(""));
        self.respond(now, &msg, from, 100, "Trying", None, &[]);
        if let Some(b) = msg.transaction_key() {
            self.invite_txs.insert(b, call);
        }
        self.by_dialog.insert((call_id.clone(), local_tag.clone()), call);
        let local = self.local_for(from);
        self.events.push_back(Event::Invite { call, dialed, caller, sdp: msg.body.clone(), peer: from, local, call_id: call_id.clone() });
        self.calls.insert(
            call,
            Call {
                call_id,
                local_tag,
                peer: from,
                invite: msg,
                reinvite: None,
                uac: None,
                state: State::Early,
                ok: None,
                remote_target,
                route_set,
                remote_header,
                local_header,
                local_cseq: 0,
            },
        );
    }

    /// Answers the call (or a re-INVITE) with 200 OK carrying `sdp`; the answer is
    /// retransmitted until the ACK comes.
    pub fn accept(&mut self, now: Millis, call: CallKey, sdp: &str) {
        let Some(c) = self.calls.get(&call) else { return };
        // The pending re-INVITE, else the INVITE itself (never our own).
        let Some(req) = c.reinvite.as_ref().or((c.uac.is_none()).then_some(&c.invite)) else { return };
        if c.state == State::Ended {
            return;
        }
        let (req, peer, tag) = (req.clone(), c.peer, c.local_tag.clone());
        let contact = format!("<sip:ivr@{}>", self.local_for(peer));
        let mut r = response(&req, 200, "OK", Some(&tag));
        r.headers.push(("Contact".into(), contact));
        r.headers.extend(self.product("Server"));
        r.headers.push(("Allow".into(), ALLOW.into()));
        r.headers.push(("Content-Type".into(), "application/sdp".into()));
        r.body = sdp.as_bytes().to_vec();
        let to = self.reply_to(&req, peer);
        let bytes = self.send(to, &r);
        if let Some(b) = req.transaction_key() {
            self.server_txs.insert((b, "INVITE".into()), ServerTx { response: Some(bytes.clone()), peer: to, expires: now + 64 * T1_MS });
        }
        let Some(c) = self.calls.get_mut(&call) else { return };
        c.reinvite = None;
        c.state = State::Answered;
        c.ok = Some(Retransmit { data: bytes, to, next: now + T1_MS, interval: T1_MS, deadline: now + 64 * T1_MS });
    }

    /// Tells the caller it is ringing (180), before `accept`.
    pub fn ringing(&mut self, now: Millis, call: CallKey) {
        let Some(c) = self.calls.get(&call).filter(|c| c.state == State::Early) else { return };
        let (invite, peer, tag) = (c.invite.clone(), c.peer, c.local_tag.clone());
        self.respond(now, &invite, peer, 180, "Ringing", Some(&tag), &[]);
    }

    /// Refuses the call with a final response (e.g. 404, 486, 488, 503).
    pub fn reject(&mut self, now: Millis, call: CallKey, code: u16, reason: &str, extra: &[(&str, &str)]) {
        let Some(c) = self.calls.get_mut(&call) else { return };
        // A refused re-INVITE leaves the call as it was (RFC 3261 §14.2).
        if let Some(re) = c.reinvite.take() {
            let (peer, tag) = (c.peer, c.local_tag.clone());
            return self.respond(now, &re, peer, code, reason, Some(&tag), extra);
        }
        if c.state != State::Early {
            return;
        }
        let (invite, peer, tag) = (c.invite.clone(), c.peer, c.local_tag.clone());
        self.respond(now, &invite, peer, code, reason, Some(&tag), extra);
        self.end(call);
    }

    /// Hangs up an established call with BYE (retransmitted until answered).
    pub fn hangup(&mut self, now: Millis, call: CallKey) {
        let Some(c) = self.calls.get_mut(&call) else { return };
        if c.uac.as_ref().is_some_and(|u| !u.answered()) {
            return self.cancel_invite(now, call);
        }
        if !matches!(c.state, State::Answered | State::Confirmed) {
            return;
        }
        self.request_in_dialog(now, call, "BYE", None);
        self.end(call);
    }

    /// Sends a key to the far end of an established call as SIP INFO
    /// (`application/dtmf-relay`), e.g. to an agent's phone that takes no RFC 4733.
    pub fn send_dtmf(&mut self, now: Millis, call: CallKey, key: char) {
        if self.calls.get(&call).is_some_and(|c| matches!(c.state, State::Answered | State::Confirmed)) {
            let body = format!("Signal={key}\r\nDuration=160\r\n");
            self.request_in_dialog(now, call, "INFO", Some(("application/dtmf-relay", body.into_bytes())));
        }
    }

    /// A request within the call's dialog, retransmitted until answered.
    fn request_in_dialog(&mut self, now: Millis, call: CallKey, method: &str, body: Option<(&str, Vec<u8>)>) {
        let Some(c) = self.calls.get_mut(&call) else { return };
        c.local_cseq += 1;
        let cseq = c.local_cseq + 1_000;
        let target = if c.remote_target.is_empty() { format!("sip:{}", c.peer) } else { c.remote_target.clone() };
        let mut headers = Vec::new();
        let (call_id, from_h, to_h, peer, routes) = (c.call_id.clone(), c.local_header.clone(), c.remote_header.clone(), c.peer, c.route_set.clone());
        let branch = format!("z9hG4bK{}", self.token());
        headers.push(("Via".to_string(), format!("SIP/2.0/UDP {};branch={branch};rport", self.local_for(peer))));
        headers.push(("Max-Forwards".into(), "70".into()));
        headers.push(("From".into(), from_h));
        headers.push(("To".into(), to_h));
        headers.push(("Call-ID".into(), call_id));
        headers.push(("CSeq".into(), format!("{cseq} {method}")));
        for r in routes {
            headers.push(("Route".into(), r));
        }
        headers.extend(self.product("User-Agent"));
        let body = match body {
            Some((ctype, bytes)) => {
                headers.push(("Content-Type".into(), ctype.to_string()));
                bytes
            }
            None => Vec::new(),
        };
        let req = Message { start: StartLine::Request { method: method.into(), uri: target }, headers, body };
        let data = self.send(peer, &req);
        self.client_txs.insert((branch, method.into()), ClientTx { data, peer, next: now + T1_MS, interval: T1_MS, give_up: now + 64 * T1_MS });
    }

    fn end(&mut self, call: CallKey) {
        self.placed.remove(&call);
        if let Some(c) = self.calls.get_mut(&call) {
            c.state = State::Ended;
            c.ok = None;
            let key = (c.call_id.clone(), c.local_tag.clone());
            self.by_dialog.remove(&key);
        }
        self.calls.remove(&call);
    }

    fn ack(&mut self, msg: Message) {
        let Some(call) = self.dialog(&msg) else { return };
        if let Some(c) = self.calls.get_mut(&call) {
            if c.ok.take().is_some() {
                let first = c.state == State::Answered;
                c.state = State::Confirmed;
                if first {
                    self.events.push_back(Event::Confirmed { call });
                }
            }
        }
    }

    fn in_dialog(&mut self, now: Millis, from: SocketAddr, msg: Message, f: impl FnOnce(&mut Self, CallKey, &Message) -> Result<(), (u16, &'static str)>) {
        let Some(call) = self.dialog(&msg) else {
            return self.respond(now, &msg, from, 481, "Call/Transaction Does Not Exist", None, &[]);
        };
        match f(self, call, &msg) {
            Ok(()) => self.respond(now, &msg, from, 200, "OK", None, &[]),
            Err((code, reason)) => self.respond(now, &msg, from, code, reason, None, &[]),
        }
    }

    fn cancel(&mut self, now: Millis, from: SocketAddr, msg: Message) {
        let call = msg.transaction_key().and_then(|b| self.invite_txs.get(&b).copied());
        let Some(call) = call.filter(|c| self.calls.contains_key(c)) else {
            return self.respond(now, &msg, from, 481, "Call/Transaction Does Not Exist", None, &[]);
        };
        // The CANCEL's answer has the tag of the INVITE's (RFC 3261 §9.2).
        let Some(c) = self.calls.get(&call) else { return };
        let (invite, peer, tag, early) = (c.invite.clone(), c.peer, c.local_tag.clone(), c.state == State::Early);
        self.respond(now, &msg, from, 200, "OK", Some(&tag), &[]);
        if early {
            self.respond(now, &invite, peer, 487, "Request Terminated", Some(&tag), &[]);
            self.events.push_back(Event::Cancelled { call });
            self.end(call);
        }
    }

    pub fn handle_timeout(&mut self, now: Millis) {
        let mut give_up = Vec::new();
        for (&call, c) in self.calls.iter_mut() {
            if let Some(ok) = c.ok.as_mut() {
                if ok.deadline <= now {
                    give_up.push(call);
                } else if ok.next <= now {
                    self.transmits.push_back((ok.to, ok.data.clone()));
                    ok.interval = (ok.interval * 2).min(T2_MS);
                    ok.next = now + ok.interval;
                }
            }
        }
        for call in give_up {
            if let Some(c) = self.calls.get_mut(&call) {
                c.ok = None;
            }
            self.events.push_back(Event::AckTimeout { call });
            self.hangup(now, call);
        }
        self.invite_timers(now);
        self.client_txs.retain(|_, t| t.give_up > now);
        for t in self.client_txs.values_mut() {
            if t.next <= now {
                self.transmits.push_back((t.peer, t.data.clone()));
                t.interval = (t.interval * 2).min(T2_MS);
                t.next = now + t.interval;
            }
        }
        self.server_txs.retain(|_, t| t.expires > now);
        let calls = &self.calls;
        self.invite_txs.retain(|_, c| calls.contains_key(c));
        // Forget the routes of peers we no longer deal with (every 32 s).
        if !self.routes.is_empty() && now >= self.routes_pruned + 64 * T1_MS {
            self.routes_pruned = now;
            let live: std::collections::HashSet<SocketAddr> =
                self.calls.values().flat_map(|c| [Some(c.peer), c.ok.as_ref().map(|o| o.to)]).flatten().chain(self.server_txs.values().map(|t| t.peer)).chain(self.client_txs.values().map(|t| t.peer)).collect();
            self.routes.retain(|p, _| live.contains(p));
        }
    }
}

/// A Server/User-Agent value without control characters; `None` when empty.
fn clean_user_agent(ua: &str) -> Option<String> {
    let ua: String = ua.chars().filter(|c| !c.is_control()).collect();
    let ua = ua.trim();
    (!ua.is_empty()).then(|| ua.to_string())
}

/// A key from an INFO body: `application/dtmf-relay` (`Signal=5`) or
/// `application/dtmf` (`5`). `None` for other content types.
fn dtmf_from_info(m: &Message) -> Option<Result<char, ()>> {
    let ctype = m.header("Content-Type")?.to_ascii_lowercase();
    let body = String::from_utf8_lossy(&m.body);
    let signal = if ctype.starts_with("application/dtmf-relay") {
        body.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            k.trim().eq_ignore_ascii_case("signal").then(|| v.trim().to_string())
        })
    } else if ctype.starts_with("application/dtmf") {
        Some(body.trim().to_string())
    } else {
        return None;
    };
    let key = match signal.as_deref() {
        Some(s) if s.len() == 1 => s.chars().next().filter(|c| c.is_ascii_digit() || "*#ABCDabcd".contains(*c)).map(|c| c.to_ascii_uppercase()),
        Some("10") => Some('*'),
        Some("11") => Some('#'),
        _ => None,
    };
    Some(key.ok_or(()))
}

mod register;
mod uac;

pub use register::Registration;

#[cfg(test)]
mod tests;
