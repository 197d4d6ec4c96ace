//! Whole calls in simulated time, without a socket: caller and agent phones
//! (small SIP user agents of our own) and the call core, joined by a
//! netem-style network (delay, jitter that reorders, loss, duplicates,
//! deterministic from a seed), and a simulated media plane that does what the
//! core's media commands say (prompts take their real duration; keys arrive
//! as RFC 4733 packets through the same per-packet `Receiver` the server
//! runs). Time jumps to the next thing that happens, so a ten-minute call
//! takes microseconds and replays exactly.

#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

use ivr_call::{CallKey, Core, CoreConfig, Flow, Input, Log, Media, OpId, Output, PlayId, PromptAudio, Value};
use ivr_media::receive::{Received, Receiver, Wants};
use ivr_media::source::LatchPolicy;
use ivr_sip::message::{Message, StartLine};

pub const SERVER: &str = "127.0.0.1:5060";

pub fn addr(s: &str) -> SocketAddr {
    s.parse().expect("an address")
}

/// A small deterministic PRNG (xorshift64*).
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// True with probability `per_mille` / 1000.
    pub fn chance(&mut self, per_mille: u32) -> bool {
        (self.next() % 1000) < per_mille as u64
    }
}

/// How the network treats datagrams.
#[derive(Clone, Copy, Debug, Default)]
pub struct Link {
    pub delay_ms: u64,
    /// Extra random delay up to this much (reorders datagrams).
    pub jitter_ms: u64,
    pub loss_per_mille: u32,
    pub dup_per_mille: u32,
}

struct Datagram {
    at: u64,
    seq: u64,
    from: SocketAddr,
    to: SocketAddr,
    data: Vec<u8>,
}

pub struct Net {
    pub link: Link,
    rng: Rng,
    queue: Vec<Datagram>,
    seq: u64,
    pub sent: u64,
    pub lost: u64,
}

impl Net {
    fn send(&mut self, now: u64, from: SocketAddr, to: SocketAddr, data: Vec<u8>) {
        self.sent += 1;
        if self.rng.chance(self.link.loss_per_mille) {
            self.lost += 1;
            return;
        }
        let copies = if self.rng.chance(self.link.dup_per_mille) { 2 } else { 1 };
        for _ in 0..copies {
            let jitter = if self.link.jitter_ms > 0 { self.rng.next() % (self.link.jitter_ms + 1) } else { 0 };
            self.seq += 1;
            self.queue.push(Datagram { at: now + self.link.delay_ms + jitter, seq: self.seq, from, to, data: data.clone() });
        }
    }

    /// Sends a datagram as is (a flood, a stranger).
    pub fn send_raw(&mut self, now: u64, from: SocketAddr, to: SocketAddr, data: Vec<u8>) {
        self.send(now, from, to, data);
    }

    fn next_at(&self) -> Option<u64> {
        self.queue.iter().map(|d| d.at).min()
    }

    fn take_due(&mut self, now: u64) -> Vec<Datagram> {
        let mut due: Vec<Datagram> = Vec::new();
        let mut i = 0;
        while i < self.queue.len() {
            if self.queue[i].at <= now {
                due.push(self.queue.swap_remove(i));
            } else {
                i += 1;
            }
        }
        due.sort_by_key(|d| (d.at, d.seq));
        due
    }
}

/// One call's (or leg's) media in the simulated plane.
struct SimMedia {
    local: SocketAddr,
    /// On the shared port: the only source it takes packets from (the host demultiplexes by it).
    shared_from: Option<SocketAddr>,
    leg: bool,
    confirmed: bool,
    /// Queued plays: id, label, duration.
    queue: VecDeque<(PlayId, String, u64)>,
    /// When the head of the queue started playing.
    head_since: Option<u64>,
    hold: bool,
    bridged_to: Option<CallKey>,
    capture: bool,
    receiver: Option<Receiver>,
}

/// What a test sees of a call: what started playing, and when.
#[derive(Debug, Clone, PartialEq)]
pub struct Heard {
    pub at: u64,
    pub call: CallKey,
    pub label: String,
}

/// How a service request is answered.
pub type Services = Box<dyn FnMut(&str, &[(String, Value)]) -> (u64, String, Vec<(String, Value)>)>;

pub struct World {
    pub now: u64,
    pub core: Core,
    pub net: Net,
    media: BTreeMap<CallKey, SimMedia>,
    pub phones: Vec<Phone>,
    pub heard: Vec<Heard>,
    /// Record lines, parsed.
    pub records: Vec<(Log, serde_json::Value)>,
    pub requests: Vec<(String, Vec<(String, String)>)>,
    services: Services,
    completions: Vec<(u64, CallKey, OpId, String, Vec<(String, Value)>)>,
    /// Media ports the host cannot open (a port held by another process).
    pub unbindable: Vec<u16>,
    pub bridges: Vec<(u64, CallKey, CallKey)>,
}

pub fn config() -> CoreConfig {
    CoreConfig {
        listen: vec![addr(SERVER)],
        rtp_ports: (20000, 20099),
        rtp_shared_port: None,
        max_calls: 100,
        ring_ms: 0,
        rate_per_source: 10_000,
        inband_dtmf: false,
        latch_rtp: false,
        can_record: true,
        realm: "ivr".into(),
        transfer_gateway: None,
        limits: Default::default(),
        per_source: Default::default(),
        admission: Default::default(),
        user_agent: Some("ivr-test".into()),
        force_rport: false,
        wall_clock_at_zero_ms: 1_796_000_000_000,
        seed: 42,
    }
}

/// Compiles `src` (with `catalogue` as prompts.toml) into a flow.
pub fn flow(src: &str, catalogue: &str) -> Flow {
    let world = ivr_compiler::MemoryWorld::new().with("main.ivr", src).with("prompts.toml", catalogue);
    let c = ivr_compiler::compile(&world, "main.ivr");
    assert!(!c.has_errors(), "{:#?}", c.diagnostics);
    let program = Arc::new(c.program.expect("a program"));
    // Every prompt lasts one second (8000 samples); speech segments 300 ms.
    let read = |rel: &str| {
        let samples = if rel.contains("/seg/") { 2_400 } else { 8_000 };
        Ok(ivr_media::audio::EncodedPrompt::from_pcm(&vec![1000i16; samples]))
    };
    let prompts = Arc::new(PromptAudio::build(&program, &read));
    Flow::new("main", program, prompts)
}

impl World {
    pub fn new(cfg: CoreConfig, flows: Vec<Flow>, acd: ivr_acd::AcdConfig, link: Link, seed: u64) -> World {
        World {
            now: 0,
            core: Core::new(cfg, flows, acd, 0),
            net: Net { link, rng: Rng::new(seed), queue: Vec::new(), seq: 0, sent: 0, lost: 0 },
            media: BTreeMap::new(),
            phones: Vec::new(),
            heard: Vec::new(),
            records: Vec::new(),
            requests: Vec::new(),
            services: Box::new(|_, _| (10, "failed".into(), vec![])),
            completions: Vec::new(),
            unbindable: Vec::new(),
            bridges: Vec::new(),
        }
    }

    pub fn with_services(mut self, f: Services) -> World {
        self.services = f;
        self
    }

    /// Adds a phone; returns its index.
    pub fn phone(&mut self, p: Phone) -> usize {
        self.phones.push(p);
        self.phones.len() - 1
    }

    pub fn ph(&mut self, i: usize) -> &mut Phone {
        &mut self.phones[i]
    }

    /// Runs until `t` (absolute, ms).
    pub fn run_until(&mut self, t: u64) {
        self.pump();
        loop {
            match self.next_event() {
                Some(n) if n <= t => {
                    self.now = self.now.max(n);
                    self.step();
                }
                _ => {
                    self.now = self.now.max(t);
                    self.step();
                    return;
                }
            }
        }
    }

    /// When anything happens next: the core's timers, a datagram, a prompt
    /// ending, a service answering, a phone's timer.
    fn next_event(&self) -> Option<u64> {
        [
            self.core.poll_timeout(),
            self.net.next_at(),
            self.media_next(),
            self.completions.iter().map(|c| c.0).min(),
            self.phones.iter().filter_map(Phone::next_timer).min(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs for `ms` more.
    pub fn run_for(&mut self, ms: u64) {
        self.run_until(self.now + ms);
    }

    /// Runs until `cond` holds (checked after every step), at most `limit_ms`.
    pub fn run_while(&mut self, limit_ms: u64, mut cond: impl FnMut(&World) -> bool) -> bool {
        let end = self.now + limit_ms;
        while self.now < end {
            if !cond(self) {
                return true;
            }
            let next = self.next_event().unwrap_or(end).min(end);
            self.now = self.now.max(next);
            self.step();
        }
        !cond(self)
    }

    fn step(&mut self) {
        let now = self.now;
        // The core's timers.
        if self.core.poll_timeout().is_some_and(|t| t <= now) {
            self.core.handle_timeout(now);
        }
        self.pump();
        // Datagrams.
        for d in self.net.take_due(now) {
            if d.to == addr(SERVER) {
                self.core.handle(now, Input::Sip { local: d.to, from: d.from, data: &d.data });
            } else if let Some((&call, _)) = self.media.iter().find(|(_, m)| m.local == d.to && m.shared_from.is_none_or(|f| f == d.from)) {
                self.rtp_in(call, d.from, &d.data);
            } else if let Some(p) = self.phones.iter_mut().find(|p| p.sip == d.to || p.rtp == d.to) {
                let out = p.receive(now, d.from, d.to, &d.data);
                for (to, data) in out {
                    let from = p.sip;
                    self.net.send(now, from, to, data);
                }
            }
            self.pump();
        }
        // Prompts that finished.
        let mut done = Vec::new();
        for (&call, m) in self.media.iter_mut() {
            while let (Some(since), Some(&(id, _, ms))) = (m.head_since, m.queue.front().map(|(i, l, ms)| (i, l, *ms)).as_ref()) {
                if since + ms > now {
                    break;
                }
                done.push((call, *id));
                m.queue.pop_front();
                m.head_since = m.queue.front().map(|_| since + ms);
                if let Some((_, label, _)) = m.queue.front() {
                    self.heard.push(Heard { at: since + ms, call, label: label.clone() });
                }
            }
        }
        for (call, id) in done {
            self.core.handle(now, Input::PlayDone { call, id });
            self.pump();
        }
        // Service answers.
        let due: Vec<_> = self.completions.iter().filter(|c| c.0 <= now).cloned().collect();
        self.completions.retain(|c| c.0 > now);
        for (_, call, op, outcome, fields) in due {
            self.core.handle(now, Input::Completed { call, op, outcome, fields });
            self.pump();
        }
        // Phones' own timers (retransmissions, answering, hanging up).
        for i in 0..self.phones.len() {
            let out = self.phones[i].timers(now);
            let from = self.phones[i].sip;
            for (to, data) in out {
                self.net.send(now, from, to, data);
            }
        }
        self.pump();
    }

    fn rtp_in(&mut self, call: CallKey, from: SocketAddr, data: &[u8]) {
        let now = self.now;
        let Some(m) = self.media.get_mut(&call) else { return };
        let wants = Wants { relay: m.bridged_to.is_some(), audio: m.capture };
        let mut keys = Vec::new();
        if let Some(r) = m.receiver.as_mut() {
            r.packet(now, from, data, wants, |x| {
                if let Received::Key(k, source) = x {
                    keys.push((k, source));
                }
            });
        }
        for (key, source) in keys {
            self.core.handle(now, Input::Digit { call, key, source });
            self.pump();
        }
    }

    fn media_next(&self) -> Option<u64> {
        self.media.values().filter_map(|m| Some(m.head_since? + m.queue.front()?.2)).min()
    }

    /// Carries out the core's outputs.
    pub fn pump(&mut self) {
        let now = self.now;
        while let Some(out) = self.core.poll_output() {
            match out {
                Output::Transmit { from, to, data } => self.net.send(now, from, to, data),
                Output::Media(m) => self.media_command(m),
                Output::Request { call, op, request } => {
                    let args: Vec<(String, Value)> = request.args.iter().map(|a| (a.name.clone(), a.value.clone())).collect();
                    let shown = request.args.iter().map(|a| (a.name.clone(), if a.secret { "****".to_string() } else { a.value.to_string() })).collect();
                    self.requests.push((request.service.clone(), shown));
                    let (delay, outcome, fields) = (self.services)(&request.service, &args);
                    // Fields go through the same typing as a real backend's answer.
                    let fields = request.typed(&outcome, |n, _| fields.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()));
                    self.completions.push((now + delay, call, op, outcome, fields));
                }
                Output::SaveMessage(m) => {
                    let ms = (m.pcm.len() as u64 * 1000) / m.rate_hz.max(1) as u64;
                    self.completions.push((now + 5, m.call, m.op, "saved".into(), vec![("duration_ms".into(), Value::Num(ms.into()))]));
                }
                Output::Record { log, line } => {
                    let v = serde_json::from_slice(&line).expect("a record is JSON");
                    self.records.push((log, v));
                }
            }
        }
    }

    fn media_command(&mut self, m: Media) {
        let now = self.now;
        match m {
            Media::Open { call, local, stream, leg, shared } => {
                let ok = !self.unbindable.contains(&local.port());
                if ok {
                    let policy = if stream.latch { LatchPolicy::Latch } else { LatchPolicy::Strict };
                    let receiver = (!leg).then(|| Receiver::new(now, stream.remote, stream.codec, stream.dtmf_payload_type, policy, stream.inband_dtmf));
                    self.media.insert(call, SimMedia { local, shared_from: shared.then_some(stream.remote), leg, confirmed: false, queue: VecDeque::new(), head_since: None, hold: false, bridged_to: None, capture: false, receiver });
                }
                self.core.handle(now, Input::MediaOpened { call, ok });
            }
            Media::Confirmed { call } => {
                if let Some(m) = self.media.get_mut(&call) {
                    m.confirmed = true;
                    if m.head_since.is_none() {
                        if let Some((_, label, _)) = m.queue.front() {
                            m.head_since = Some(now);
                            self.heard.push(Heard { at: now, call, label: label.clone() });
                        }
                    }
                }
            }
            Media::Play { call, id, audio, label } => {
                let ms: u64 = audio.iter().map(|a| a.duration_ms()).sum();
                if let Some(m) = self.media.get_mut(&call) {
                    if m.queue.is_empty() && m.confirmed {
                        m.head_since = Some(now);
                        self.heard.push(Heard { at: now, call, label: label.clone() });
                    }
                    m.queue.push_back((id, label, ms));
                }
            }
            Media::Stop { call } => {
                if let Some(m) = self.media.get_mut(&call) {
                    m.queue.clear();
                    m.head_since = None;
                }
            }
            Media::Hold { call, music } => {
                if let Some(m) = self.media.get_mut(&call) {
                    m.hold = music.is_some();
                }
            }
            Media::Renegotiate { call, stream } => {
                if let Some(f) = self.media.get_mut(&call).and_then(|m| m.shared_from.as_mut()) {
                    *f = stream.remote;
                }
                if let Some(r) = self.media.get_mut(&call).and_then(|m| m.receiver.as_mut()) {
                    r.renegotiate(now, stream.remote, stream.codec, stream.dtmf_payload_type);
                }
            }
            Media::Capture { call, on } => {
                if let Some(m) = self.media.get_mut(&call) {
                    m.capture = on;
                }
            }
            Media::Bridge { caller, leg, .. } => {
                self.bridges.push((now, caller, leg));
                if let Some(m) = self.media.get_mut(&caller) {
                    m.bridged_to = Some(leg);
                    m.queue.clear();
                    m.head_since = None;
                }
            }
            Media::Unbridge { caller, .. } => {
                if let Some(m) = self.media.get_mut(&caller) {
                    m.bridged_to = None;
                }
            }
            Media::Retarget { .. } => {}
            Media::Close { call } => {
                self.media.remove(&call);
            }
        }
    }

    /// Labels of what `call` was played, in order.
    pub fn heard_by(&self, call: CallKey) -> Vec<&str> {
        self.heard.iter().filter(|h| h.call == call).map(|h| h.label.as_str()).collect()
    }

    /// The calls the core has had, by their first record line.
    pub fn call_keys(&self) -> Vec<CallKey> {
        self.media.keys().copied().collect()
    }

    /// The closed record of every call, in the order they closed.
    pub fn closed(&self) -> Vec<&serde_json::Value> {
        self.records.iter().filter(|(l, r)| *l == Log::Calls && r["state"] == "closed").map(|(_, r)| r).collect()
    }

    pub fn media_calls(&self) -> usize {
        self.media.values().filter(|m| !m.leg).count()
    }

    pub fn media_open(&self) -> usize {
        self.media.len()
    }
}

// ---------------------------------------------------------------- phones

#[derive(Debug, Clone, PartialEq)]
pub enum State {
    Idle,
    Calling,
    Ringing,
    Talking,
    Ended(String),
}

/// How an agent's phone answers.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    After(u64),
    Never,
    Reject(u16),
}

/// A small SIP user agent: a caller that dials, or an agent's phone that
/// answers. Requests are retransmitted every 500 ms until answered.
pub struct Phone {
    pub name: String,
    pub sip: SocketAddr,
    pub rtp: SocketAddr,
    pub state: State,
    pub answer: Answer,
    call_id: String,
    local_tag: String,
    remote_tag: Option<String>,
    cseq: u32,
    invite_branch: String,
    /// Where in-dialog requests go (the far end's Contact).
    target: SocketAddr,
    /// Our requests awaiting a final response: (branch, next retransmit, data).
    pending: Vec<(String, u64, Vec<u8>)>,
    /// Answers to resend until ACKed (an agent's 200).
    ok_resend: Option<(u64, Vec<u8>)>,
    /// An INVITE to answer at a time.
    answer_at: Option<(u64, Message)>,
    pub got: Vec<String>,
    /// Remote media (from the SDP answer or offer).
    pub remote_rtp: Option<SocketAddr>,
    rtp_seq: u16,
    rtp_ts: u32,
    pub invites: u32,
    pub info_keys: Vec<char>,
    next_branch: u64,
}

fn sdp(rtp: SocketAddr, direction: &str) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na={direction}\r\n",
        ip = rtp.ip(),
        port = rtp.port()
    )
}

fn remote_media(body: &[u8]) -> Option<SocketAddr> {
    let text = String::from_utf8_lossy(body);
    let ip = text.lines().find_map(|l| l.strip_prefix("c=IN IP4 "))?.trim().to_string();
    let port = text.lines().find_map(|l| l.strip_prefix("m=audio "))?.split(' ').next()?.to_string();
    format!("{ip}:{port}").parse().ok()
}

impl Phone {
    pub fn new(name: &str, sip: &str, rtp: &str) -> Phone {
        Phone {
            name: name.into(),
            sip: addr(sip),
            rtp: addr(rtp),
            state: State::Idle,
            answer: Answer::After(0),
            call_id: String::new(),
            local_tag: format!("{name}-tag"),
            remote_tag: None,
            cseq: 1,
            invite_branch: String::new(),
            target: addr(SERVER),
            pending: Vec::new(),
            ok_resend: None,
            answer_at: None,
            got: Vec::new(),
            remote_rtp: None,
            rtp_seq: 100,
            rtp_ts: 8_000,
            invites: 0,
            info_keys: Vec::new(),
            next_branch: 0,
        }
    }

    /// Stops retransmitting what this phone sent (as if it never had).
    pub fn forget(&mut self) {
        self.pending.clear();
    }

    pub fn answering(mut self, a: Answer) -> Phone {
        self.answer = a;
        self
    }

    fn branch(&mut self) -> String {
        self.next_branch += 1;
        format!("z9hG4bK-{}-{}", self.name, self.next_branch)
    }

    fn request(&self, method: &str, uri: &str, branch: &str, cseq: u32, extra: &str, body: &str) -> Vec<u8> {
        let to_tag = self.remote_tag.as_ref().map(|t| format!(";tag={t}")).unwrap_or_default();
        format!(
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {sip};branch={branch};rport\r\nMax-Forwards: 70\r\nFrom: <sip:{name}@{sip}>;tag={tag}\r\nTo: <{uri}>{to_tag}\r\nCall-ID: {cid}\r\nCSeq: {cseq} {method}\r\nContact: <sip:{name}@{sip}>\r\n{extra}Content-Length: {len}\r\n\r\n{body}",
            sip = self.sip,
            name = self.name,
            tag = self.local_tag,
            cid = self.call_id,
            len = body.len()
        )
        .into_bytes()
    }

    /// Dials `number` at the server: the INVITE to send.
    pub fn dial(&mut self, now: u64, number: &str) -> Vec<(SocketAddr, Vec<u8>)> {
        self.call_id = format!("{}-call@{}", self.name, self.sip.ip());
        self.invite_branch = self.branch();
        self.state = State::Calling;
        let uri = format!("sip:{number}@{SERVER}");
        let body = sdp(self.rtp, "sendrecv");
        let data = self.request("INVITE", &uri, &self.invite_branch.clone(), 1, "Content-Type: application/sdp\r\n", &body);
        self.pending.push((self.invite_branch.clone(), now + 500, data.clone()));
        vec![(addr(SERVER), data)]
    }

    fn in_dialog(&mut self, now: u64, method: &str, extra: &str, body: &str) -> Vec<(SocketAddr, Vec<u8>)> {
        self.cseq += 1;
        let branch = self.branch();
        let uri = format!("sip:{}", self.target);
        let data = self.request(method, &uri, &branch, self.cseq, extra, body);
        self.pending.push((branch, now + 500, data.clone()));
        vec![(self.target, data)]
    }

    /// Any request within the dialog (e.g. an INVITE without a body).
    pub fn in_dialog_request(&mut self, now: u64, method: &str, extra: &str, body: &str) -> Vec<(SocketAddr, Vec<u8>)> {
        self.in_dialog(now, method, extra, body)
    }

    pub fn hangup(&mut self, now: u64) -> Vec<(SocketAddr, Vec<u8>)> {
        self.state = State::Ended("we hung up".into());
        self.in_dialog(now, "BYE", "", "")
    }

    pub fn cancel(&mut self, now: u64) -> Vec<(SocketAddr, Vec<u8>)> {
        let branch = self.invite_branch.clone();
        let uri = format!("sip:x@{SERVER}");
        let saved = self.remote_tag.take();
        let mut data = self.request("CANCEL", &uri, &branch, 1, "", "");
        self.remote_tag = saved;
        // CANCEL's CSeq method must be CANCEL with the INVITE's number.
        let text = String::from_utf8_lossy(&data).replace("CSeq: 1 CANCEL", "CSeq: 1 CANCEL");
        data = text.into_bytes();
        self.pending.push((format!("{branch}-cancel"), now + 500, data.clone()));
        vec![(addr(SERVER), data)]
    }

    pub fn info(&mut self, now: u64, key: char) -> Vec<(SocketAddr, Vec<u8>)> {
        self.in_dialog(now, "INFO", "Content-Type: application/dtmf-relay\r\n", &format!("Signal={key}\r\nDuration=160\r\n"))
    }

    pub fn reinvite(&mut self, now: u64, direction: &str) -> Vec<(SocketAddr, Vec<u8>)> {
        let body = sdp(self.rtp, direction);
        self.in_dialog(now, "INVITE", "Content-Type: application/sdp\r\n", &body)
    }

    /// A key as RFC 4733 packets (start, updates, three ends) to `to`, under
    /// our SSRC, from `from` (our RTP address unless spoofing).
    pub fn rfc4733(&mut self, key: char, to: SocketAddr) -> Vec<Vec<u8>> {
        let event = match key {
            '0'..='9' => key as u8 - b'0',
            '*' => 10,
            '#' => 11,
            _ => 12,
        };
        self.rtp_ts = self.rtp_ts.wrapping_add(1_600);
        let mut out = Vec::new();
        for (i, (end, dur)) in [(false, 160u16), (false, 320), (false, 480), (true, 640), (true, 640), (true, 640)].into_iter().enumerate() {
            let _ = to;
            self.rtp_seq = self.rtp_seq.wrapping_add(1);
            let mut v = vec![0x80, 101 | if i == 0 { 0x80 } else { 0 }];
            v.extend_from_slice(&self.rtp_seq.to_be_bytes());
            v.extend_from_slice(&self.rtp_ts.to_be_bytes());
            v.extend_from_slice(&0x1234_5678u32.to_be_bytes());
            v.extend_from_slice(&[event, if end { 0x80 } else { 0 } | 10, (dur >> 8) as u8, dur as u8]);
            out.push(v);
        }
        out
    }

    /// An audio packet (PCMU silence) of ours.
    pub fn audio(&mut self) -> Vec<u8> {
        self.rtp_seq = self.rtp_seq.wrapping_add(1);
        self.rtp_ts = self.rtp_ts.wrapping_add(160);
        let mut v = vec![0x80, 0];
        v.extend_from_slice(&self.rtp_seq.to_be_bytes());
        v.extend_from_slice(&self.rtp_ts.to_be_bytes());
        v.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        v.extend(std::iter::repeat_n(0xffu8, 160));
        v
    }

    fn next_timer(&self) -> Option<u64> {
        [self.pending.iter().map(|p| p.1).min(), self.ok_resend.as_ref().map(|o| o.0), self.answer_at.as_ref().map(|a| a.0)].into_iter().flatten().min()
    }

    fn timers(&mut self, now: u64) -> Vec<(SocketAddr, Vec<u8>)> {
        let mut out = Vec::new();
        for p in self.pending.iter_mut().filter(|p| p.1 <= now) {
            p.1 = now + 500;
            let to = if p.0.ends_with("-cancel") || p.0 == self.invite_branch { addr(SERVER) } else { self.target };
            out.push((to, p.2.clone()));
        }
        // Give up after 32 s like Timer B/F.
        if let Some((at, data)) = self.ok_resend.as_mut().filter(|o| o.0 <= now) {
            *at = now + 500;
            out.push((addr(SERVER), data.clone()));
        }
        if let Some((at, _)) = &self.answer_at {
            if *at <= now {
                let (_, invite) = self.answer_at.take().expect("set");
                let ok = self.respond(&invite, 200, "OK", &sdp(self.rtp, "sendrecv"));
                self.state = State::Talking;
                self.ok_resend = Some((now + 500, ok.clone()));
                out.push((addr(SERVER), ok));
            }
        }
        out
    }

    fn respond(&self, req: &Message, code: u16, reason: &str, body: &str) -> Vec<u8> {
        let mut s = format!("SIP/2.0 {code} {reason}\r\n");
        for (n, v) in &req.headers {
            match n.as_str() {
                "Via" | "From" | "Call-ID" | "CSeq" => s.push_str(&format!("{n}: {v}\r\n")),
                "To" if v.contains("tag=") || code == 100 => s.push_str(&format!("To: {v}\r\n")),
                "To" => s.push_str(&format!("To: {v};tag={}\r\n", self.local_tag)),
                _ => {}
            }
        }
        s.push_str(&format!("Contact: <sip:{}@{}>\r\n", self.name, self.sip));
        if !body.is_empty() {
            s.push_str("Content-Type: application/sdp\r\n");
        }
        s.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        s.into_bytes()
    }

    fn receive(&mut self, now: u64, _from: SocketAddr, to: SocketAddr, data: &[u8]) -> Vec<(SocketAddr, Vec<u8>)> {
        if to == self.rtp {
            return Vec::new();
        }
        let Ok(msg) = Message::parse(data, true) else { return Vec::new() };
        match msg.start.clone() {
            StartLine::Response { code, .. } => self.response(now, code, &msg),
            StartLine::Request { method, .. } => self.incoming(now, &method, msg),
        }
    }

    fn response(&mut self, _now: u64, code: u16, msg: &Message) -> Vec<(SocketAddr, Vec<u8>)> {
        let branch = msg.branch().unwrap_or("").to_string();
        let method = msg.cseq().map(|c| c.1).unwrap_or_default();
        self.got.push(format!("{code} {method}"));
        let mut out = Vec::new();
        if method == "INVITE" {
            if code < 200 {
                // A provisional answer: INVITE retransmissions stop (Timer A is over).
                self.pending.retain(|p| p.0 != branch);
                if branch == self.invite_branch && self.state == State::Calling {
                    self.state = State::Ringing;
                }
                return out;
            }
            if let Some(t) = msg.to_tag() {
                self.remote_tag = Some(t.to_string());
            }
            if let Some(c) = msg.header("Contact").and_then(ivr_sip::uri::host_addr) {
                self.target = c;
            }
            self.pending.retain(|p| p.0 != branch);
            if (200..300).contains(&code) {
                if let Some(m) = remote_media(&msg.body) {
                    self.remote_rtp = Some(m);
                }
                if branch == self.invite_branch && matches!(self.state, State::Calling | State::Ringing) {
                    self.state = State::Talking;
                }
                // ACK every 2xx (retransmissions too).
                let ack_branch = self.branch();
                let cseq = msg.cseq().map(|c| c.0).unwrap_or(1);
                let uri = format!("sip:{}", self.target);
                out.push((self.target, self.request("ACK", &uri, &ack_branch, cseq, "", "")));
            } else {
                if branch == self.invite_branch {
                    self.state = State::Ended(format!("refused {code}"));
                }
                let uri = format!("sip:x@{SERVER}");
                let saved = self.remote_tag.clone();
                let mut ack = String::from_utf8_lossy(&self.request("ACK", &uri, &branch, 1, "", "")).to_string();
                if saved.is_none() {
                    if let Some(t) = msg.to_tag() {
                        ack = ack.replace("To: <sip:x@127.0.0.1:5060>", &format!("To: <sip:x@127.0.0.1:5060>;tag={t}"));
                    }
                }
                out.push((addr(SERVER), ack.into_bytes()));
            }
            return out;
        }
        if code >= 200 {
            self.pending.retain(|p| p.0 != branch && p.0 != format!("{branch}-cancel"));
        }
        out
    }

    fn incoming(&mut self, now: u64, method: &str, msg: Message) -> Vec<(SocketAddr, Vec<u8>)> {
        self.got.push(method.to_string());
        match method {
            "INVITE" if msg.to_tag().is_none() => {
                // An agent's phone, rung by the core.
                self.invites += 1;
                self.call_id = msg.call_id().unwrap_or("").to_string();
                self.remote_tag = msg.from_tag().map(str::to_string);
                self.remote_rtp = remote_media(&msg.body);
                let trying = self.respond(&msg, 100, "Trying", "");
                match self.answer {
                    Answer::Reject(code) => {
                        self.state = State::Ended(format!("rejected {code}"));
                        vec![(addr(SERVER), trying), (addr(SERVER), self.respond(&msg, code, "Busy Here", ""))]
                    }
                    Answer::Never => {
                        self.state = State::Ringing;
                        vec![(addr(SERVER), trying), (addr(SERVER), self.respond(&msg, 180, "Ringing", ""))]
                    }
                    Answer::After(ms) => {
                        self.state = State::Ringing;
                        self.answer_at = Some((now + ms, msg.clone()));
                        vec![(addr(SERVER), trying), (addr(SERVER), self.respond(&msg, 180, "Ringing", ""))]
                    }
                }
            }
            "INVITE" => {
                let ok = self.respond(&msg, 200, "OK", &sdp(self.rtp, "sendrecv"));
                vec![(addr(SERVER), ok)]
            }
            "ACK" => {
                self.ok_resend = None;
                Vec::new()
            }
            "CANCEL" => {
                // Of the call ringing now; a CANCEL of an earlier one changes nothing.
                if msg.call_id() == Some(self.call_id.as_str()) {
                    self.answer_at = None;
                    self.state = State::Ended("cancelled".into());
                }
                vec![(addr(SERVER), self.respond(&msg, 200, "OK", ""))]
            }
            "BYE" => {
                self.state = State::Ended("they hung up".into());
                self.ok_resend = None;
                self.pending.clear();
                vec![(addr(SERVER), self.respond(&msg, 200, "OK", ""))]
            }
            "INFO" => {
                if let Some(k) = String::from_utf8_lossy(&msg.body).lines().find_map(|l| l.strip_prefix("Signal=")).and_then(|s| s.trim().chars().next()) {
                    self.info_keys.push(k);
                }
                vec![(addr(SERVER), self.respond(&msg, 200, "OK", ""))]
            }
            _ => vec![(addr(SERVER), self.respond(&msg, 200, "OK", ""))],
        }
    }
}

/// Sends what a phone wants sent.
pub fn send(w: &mut World, phone: usize, out: Vec<(SocketAddr, Vec<u8>)>) {
    let from = w.phones[phone].sip;
    for (to, data) in out {
        w.net.send(w.now, from, to, data);
    }
    w.pump();
}

/// Sends RTP from `from` to `to`.
pub fn send_rtp(w: &mut World, from: SocketAddr, to: SocketAddr, packets: Vec<Vec<u8>>) {
    for p in packets {
        w.net.send(w.now, from, to, p);
    }
}

/// The RTP address the core gave the call of phone `i` (from its 200 OK).
pub fn call_media(w: &World, i: usize) -> SocketAddr {
    w.phones[i].remote_rtp.expect("the call was answered with SDP")
}
