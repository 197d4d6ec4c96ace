//! Automatic call distribution (ACD), sans-IO.
//!
//! [`Acd`] holds the agents and the queues. The host tells it what happened —
//! a caller joined a queue or dialled a work number, an agent's phone answered
//! or failed, someone hung up, an agent logged in or paused — each with the
//! time, and calls [`Acd::handle_timeout`] at [`Acd::poll_timeout`]. It drains
//! [`Acd::poll_command`] (ring this agent for this call, stop ringing, tell the
//! flow the outcome, announce a position) and [`Acd::poll_record`] (one record
//! per call and per agent state, for the KPIs). No clocks, sockets or threads:
//! routing is tested with a simulated clock, and a whole day of calls runs in
//! simulated time (benches/acd_day.rs).

mod config;
pub mod erlang;
mod ids;
mod kpi;
#[cfg(test)]
mod proptests;

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::Serialize;

pub use config::{AcdConfig, AgentConfig, QueueConfig, Strategy, Tier, Widen};
pub use ids::{AgentId, CallId, QueueId};
pub use kpi::Kpi;

pub type Millis = u64;

/// What comes next in a simulation (see [`Acd::next_in_simulation`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The core's timer: call [`Acd::handle_timeout`].
    Timer,
    /// The simulation's own next event.
    Host,
}

/// An agent's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AgentState {
    LoggedOut,
    Ready,
    NotReady { reason: String },
    /// Offered a call: the phone is ringing.
    Ringing { call: CallId },
    Talking { call: CallId },
    /// After-call work, until `until`.
    WrapUp { until: Millis },
}

impl AgentState {
    pub fn name(&self) -> &'static str {
        match self {
            AgentState::LoggedOut => "logged_out",
            AgentState::Ready => "ready",
            AgentState::NotReady { .. } => "not_ready",
            AgentState::Ringing { .. } => "ringing",
            AgentState::Talking { .. } => "talking",
            AgentState::WrapUp { .. } => "wrap_up",
        }
    }
    /// Every state's name, in order (metrics list each, zeros included).
    pub const NAMES: [&'static str; 6] = ["logged_out", "ready", "not_ready", "ringing", "talking", "wrap_up"];
}

/// What the flow hears back from `enqueue` / `dial agent`: the one outcome
/// type the compiler, the VM, this core and the call core share.
pub use ivr_bytecode::contract::Outcome;

/// What the host must do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Ring `agent` (at `contact`) for `call`; report `answered` or `offer_failed`.
    /// The ACD withdraws the offer itself after `ring_ms`.
    Offer { call: CallId, agent: AgentId, contact: Option<String>, queue: Option<QueueId>, priority: i64 },
    /// Stop ringing `agent` for `call` (another answered, the caller left, it rang out).
    Withdraw { call: CallId, agent: AgentId },
    /// The hand-off is over: resume the caller's flow with this outcome.
    Finish { call: CallId, outcome: Outcome },
    /// Tell the waiting caller their position (only ever when it improved) and
    /// the estimated wait; both `None` is the periodic "please hold".
    Announce { call: CallId, position: Option<u32>, wait_ms: Option<Millis> },
}

/// How an offer failed, other than ringing out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferFailure {
    /// The phone refused (486 Busy Here, 603 Decline).
    Declined,
    /// The phone could not be reached (no registration, timeout, 4xx/5xx).
    Unreachable,
    /// Our side could not place the call (no RTP port could be opened): the
    /// agent is not to blame and stays ready; the caller is offered again.
    Local,
}

/// One call's life in the ACD, for the KPIs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct CallRecord {
    /// The ACD's own number for the call (records read back may lack it).
    #[serde(default)]
    pub call: CallId,
    #[serde(default)]
    pub queue: Option<QueueId>,
    /// The work number dialled, for direct calls.
    #[serde(default)]
    pub dialed_agent: Option<AgentId>,
    #[serde(default)]
    pub priority: i64,
    #[serde(default)]
    pub joined_ms: Millis,
    /// Time from joining to answer or to leaving.
    pub waited_ms: Millis,
    /// `answered`, `abandoned` (hung up while waiting), `left`, `timeout`,
    /// `no_agents`, `full`, `busy`, `absent`, `no_answer`, `failed`.
    pub result: String,
    #[serde(default)]
    pub agent: Option<AgentId>,
    #[serde(default)]
    pub talk_ms: Millis,
    #[serde(default)]
    pub wrap_up_ms: Millis,
    /// Agents offered the call (ring-no-answer moves on to the next).
    #[serde(default)]
    pub offers: u32,
    /// Time from joining until the call was first offered to an agent (until
    /// it left, if it never was): above zero, the caller had to queue (排队).
    #[serde(default)]
    pub queued_ms: Millis,
}

/// An agent's time in one state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentStateRecord {
    pub agent: AgentId,
    pub state: &'static str,
    pub reason: Option<String>,
    pub from_ms: Millis,
    pub to_ms: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum Record {
    Call(CallRecord),
    Agent(AgentStateRecord),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcdError {
    UnknownAgent(String),
    UnknownCall(CallId),
}

impl std::error::Error for AcdError {}

impl std::fmt::Display for AcdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AcdError::UnknownAgent(a) => write!(f, "no agent has work number {a}"),
            AcdError::UnknownCall(c) => write!(f, "no call {c} is queued"),
        }
    }
}

struct Agent {
    cfg: AgentConfig,
    state: AgentState,
    since: Millis,
    /// When the agent last became ready (longest idle).
    ready_since: Millis,
    /// Calls taken since logging in (fewest calls).
    calls: u32,
    /// Where the phone is: the fixed address or the registered contact.
    contact: Option<String>,
    /// Requested while busy; applied when the call and wrap-up end.
    after_call: Option<AgentState>,
    /// The record of the call being wrapped up, completed when wrap-up ends.
    wrapping: Option<CallRecord>,
    time_in: [Millis; 6],
    /// No longer configured (kept only while a call of theirs finishes).
    retired: bool,
}

#[derive(Debug)]
enum Kind {
    Queue { q: usize, deadline: Option<Millis> },
    Direct { agent: usize },
}

struct Entry {
    kind: Kind,
    priority: i64,
    seq: u64,
    joined: Millis,
    /// Agents ringing for this call, with when each offer is withdrawn.
    offers: Vec<(usize, Millis)>,
    offered: u32,
    /// When the call was first offered to an agent.
    first_offer: Option<Millis>,
    last_position: Option<u32>,
    next_announce: Option<Millis>,
    /// The agent talking with the caller, since when.
    talking: Option<(usize, Millis)>,
}

struct Queue {
    cfg: QueueConfig,
    /// No longer configured: takes no callers.
    retired: bool,
    /// Round robin: the member offered last.
    last_offered: Option<usize>,
    handled: u64,
    handle_ms_total: u64,
    /// The agents with the queue's skill and their level in it (not retired),
    /// worked out when agents or queues are configured, not per routing decision.
    members: Vec<(usize, u8)>,
}

impl Agent {
    /// A configured agent: ready at once with a fixed address and `auto_login`.
    fn new(a: AgentConfig, now: Millis) -> Agent {
        let ready = a.auto_login && a.address.is_some();
        Agent {
            contact: a.address.clone(),
            cfg: a,
            state: if ready { AgentState::Ready } else { AgentState::LoggedOut },
            since: now,
            ready_since: now,
            calls: 0,
            after_call: None,
            wrapping: None,
            time_in: [0; 6],
            retired: false,
        }
    }
}

impl Queue {
    fn new(cfg: QueueConfig) -> Queue {
        Queue { cfg, retired: false, last_offered: None, handled: 0, handle_ms_total: 0, members: Vec::new() }
    }
}

pub struct Acd {
    agents: Vec<Agent>,
    by_id: HashMap<AgentId, usize>,
    queues: Vec<Queue>,
    tiers: Vec<Tier>,
    direct_wrap_up_ms: Millis,
    calls: HashMap<CallId, Entry>,
    seq: u64,
    /// The latest time the host told us (widening times before it are past).
    now: Millis,
    commands: VecDeque<Command>,
    records: VecDeque<Record>,
}

impl Acd {
    /// Agents with a fixed address and `auto_login` start ready; others logged out.
    pub fn new(cfg: AcdConfig, now: Millis) -> Acd {
        let agents: Vec<Agent> = cfg.agents.into_iter().map(|a| Agent::new(a, now)).collect();
        let by_id = agents.iter().enumerate().map(|(i, a)| (a.cfg.id.clone(), i)).collect();
        let queues = cfg.queues.into_iter().map(Queue::new).collect();
        let mut acd = Acd {
            agents,
            by_id,
            queues,
            tiers: cfg.tiers,
            direct_wrap_up_ms: cfg.direct_wrap_up_ms,
            calls: HashMap::new(),
            seq: 0,
            now,
            commands: VecDeque::new(),
            records: VecDeque::new(),
        };
        acd.index_members();
        acd
    }

    /// Each queue's members: agents with its skill, and their level in it.
    fn index_members(&mut self) {
        for q in &mut self.queues {
            let skill = q.cfg.skill();
            q.members = self.agents.iter().enumerate().filter(|(_, a)| !a.retired).filter_map(|(i, a)| Some((i, a.cfg.level(skill)?))).collect();
        }
    }

    pub fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    pub fn poll_record(&mut self) -> Option<Record> {
        self.records.pop_front()
    }

    pub fn queue_config(&self, name: &str) -> Option<&QueueConfig> {
        self.queues.iter().find(|q| q.cfg.name == name && !q.retired).map(|q| &q.cfg)
    }

    pub fn agent_config(&self, id: &str) -> Option<&AgentConfig> {
        self.by_id.get(id).map(|&i| &self.agents[i].cfg)
    }

    pub fn agent_state(&self, id: &str) -> Option<&AgentState> {
        self.by_id.get(id).map(|&i| &self.agents[i].state)
    }

    pub fn tiers(&self) -> &[Tier] {
        &self.tiers
    }

    /// Whether `call` is in the ACD (waiting, ringing or talking).
    pub fn has_call(&self, call: CallId) -> bool {
        self.calls.contains_key(&call)
    }

    /// The queue `call` waits in, if it waits in one.
    pub fn queue_of(&self, call: CallId) -> Option<&QueueConfig> {
        match self.calls.get(&call)?.kind {
            Kind::Queue { q, .. } => Some(&self.queues[q].cfg),
            Kind::Direct { .. } => None,
        }
    }

    fn agent(&self, id: &str) -> Result<usize, AcdError> {
        self.by_id.get(id).copied().ok_or_else(|| AcdError::UnknownAgent(id.to_string()))
    }

    fn set_state(&mut self, now: Millis, a: usize, state: AgentState) {
        let agent = &mut self.agents[a];
        if agent.state == state {
            return;
        }
        let old = std::mem::replace(&mut agent.state, state);
        let idx = AgentState::NAMES.iter().position(|n| *n == old.name()).unwrap_or(0);
        agent.time_in[idx] += now.saturating_sub(agent.since);
        let reason = match &old {
            AgentState::NotReady { reason } => Some(reason.clone()),
            _ => None,
        };
        self.records.push_back(Record::Agent(AgentStateRecord { agent: agent.cfg.id.clone(), state: old.name(), reason, from_ms: agent.since, to_ms: now }));
        agent.since = now;
        if agent.state == AgentState::Ready && !matches!(old, AgentState::Ringing { .. }) {
            agent.ready_since = now;
        }
        if old == AgentState::LoggedOut {
            agent.calls = 0;
        }
    }

    // ---------------------------------------------------------------- agents

    /// The agent logs in (at `contact`, or their fixed address) and is ready.
    pub fn login(&mut self, now: Millis, id: &str, contact: Option<String>) -> Result<(), AcdError> {
        self.now = self.now.max(now);
        let a = self.agent(id)?;
        if let Some(c) = contact {
            self.agents[a].contact = Some(c);
        }
        if self.agents[a].state == AgentState::LoggedOut {
            self.set_state(now, a, AgentState::Ready);
            self.dispatch(now);
        }
        Ok(())
    }

    /// Ready for calls (from not ready; after the call when busy).
    pub fn ready(&mut self, now: Millis, id: &str) -> Result<(), AcdError> {
        self.now = self.now.max(now);
        self.change(now, id, AgentState::Ready)
    }

    /// Not ready, with a reason (break, training, …).
    pub fn pause(&mut self, now: Millis, id: &str, reason: &str) -> Result<(), AcdError> {
        self.now = self.now.max(now);
        self.change(now, id, AgentState::NotReady { reason: reason.to_string() })
    }

    pub fn logout(&mut self, now: Millis, id: &str) -> Result<(), AcdError> {
        self.now = self.now.max(now);
        self.change(now, id, AgentState::LoggedOut)
    }

    /// Where the agent's phone is now (a registration came or expired).
    pub fn set_contact(&mut self, id: &str, contact: Option<String>) -> Result<(), AcdError> {
        let a = self.agent(id)?;
        self.agents[a].contact = contact.or_else(|| self.agents[a].cfg.address.clone());
        Ok(())
    }

    fn change(&mut self, now: Millis, id: &str, to: AgentState) -> Result<(), AcdError> {
        let a = self.agent(id)?;
        match self.agents[a].state.clone() {
            AgentState::Talking { .. } | AgentState::WrapUp { .. } if to != AgentState::Ready => {
                // Applies once the call is over.
                self.agents[a].after_call = Some(to);
            }
            AgentState::Talking { .. } => self.agents[a].after_call = None,
            AgentState::WrapUp { .. } => {
                self.agents[a].after_call = None;
                self.end_wrap_up(now, a);
            }
            AgentState::Ringing { call } => {
                if to != AgentState::Ready {
                    self.withdraw(now, call, a);
                    self.set_state(now, a, to);
                    self.requeue(now, call, None);
                }
            }
            AgentState::LoggedOut if to != AgentState::LoggedOut => {
                self.set_state(now, a, AgentState::Ready);
                if to != AgentState::Ready {
                    self.set_state(now, a, to);
                }
            }
            _ => self.set_state(now, a, to),
        }
        self.leave_if_empty(now);
        self.dispatch(now);
        Ok(())
    }

    /// Applies a new configuration without dropping a call. Agents and queues
    /// are matched by work number and name: new ones are added (an agent with
    /// a fixed address and `auto_login` ready at once), changed ones take their
    /// new settings and keep their state; a removed agent is logged out (after
    /// their call, if on one) and a removed queue sends its waiting callers on
    /// with `no_agents`.
    pub fn reconfigure(&mut self, now: Millis, cfg: AcdConfig) {
        self.now = self.now.max(now);
        for i in 0..self.queues.len() {
            if !self.queues[i].retired && !cfg.queues.iter().any(|q| q.name == self.queues[i].cfg.name) {
                self.queues[i].retired = true;
                self.send_on_waiting(now, &[i]);
            }
        }
        for qc in cfg.queues {
            match self.queues.iter_mut().find(|q| q.cfg.name == qc.name) {
                Some(q) => {
                    q.cfg = qc;
                    q.retired = false;
                }
                None => self.queues.push(Queue::new(qc)),
            }
        }
        let removed: Vec<AgentId> = self.by_id.keys().filter(|id| !cfg.agents.iter().any(|a| &a.id == *id)).cloned().collect();
        for id in removed {
            let _ = self.logout(now, &id);
            if let Some(a) = self.by_id.remove(&id) {
                self.agents[a].retired = true;
            }
        }
        for ac in cfg.agents {
            match self.agents.iter().position(|a| a.cfg.id == ac.id) {
                Some(i) => {
                    let a = &mut self.agents[i];
                    // A phone at a fixed address moves with it; a registered one stays.
                    if a.contact == a.cfg.address {
                        a.contact = ac.address.clone();
                    }
                    a.cfg = ac;
                    a.retired = false;
                    self.by_id.insert(a.cfg.id.clone(), i);
                }
                None => {
                    self.by_id.insert(ac.id.clone(), self.agents.len());
                    self.agents.push(Agent::new(ac, now));
                }
            }
        }
        self.tiers = cfg.tiers;
        self.direct_wrap_up_ms = cfg.direct_wrap_up_ms;
        self.index_members();
        self.leave_if_empty(now);
        self.dispatch(now);
    }

    // ---------------------------------------------------------------- callers

    /// A caller joins `queue`. The outcome comes later as [`Command::Finish`]
    /// (at once for `full`, `no_agents` and an unknown queue).
    pub fn enqueue(&mut self, now: Millis, call: CallId, queue: &str, priority: i64, max_wait_ms: Millis) {
        self.now = self.now.max(now);
        let Some(q) = self.queues.iter().position(|x| x.cfg.name == queue && !x.retired) else {
            return self.commands.push_back(Command::Finish { call, outcome: Outcome::Failed });
        };
        let cfg = &self.queues[q].cfg;
        let early = if !cfg.join_empty && self.logged_in_members(q) == 0 {
            Some(Outcome::NoAgents)
        } else if cfg.max_len.is_some_and(|m| self.waiting_in(q) >= m) {
            Some(Outcome::Full)
        } else {
            None
        };
        let announce = (cfg.announce_every_ms > 0).then_some(now);
        let mut entry = self.entry(Kind::Queue { q, deadline: (max_wait_ms > 0).then_some(now + max_wait_ms) }, priority, now);
        entry.next_announce = announce;
        if let Some(outcome) = early {
            self.records.push_back(Record::Call(self.record_of(call, &entry, now, outcome.name())));
            return self.commands.push_back(Command::Finish { call, outcome });
        }
        self.calls.insert(call, entry);
        self.dispatch(now);
        // The first announcement now, or a period from now if an agent is
        // already ringing.
        let every = self.queues[q].cfg.announce_every_ms;
        match self.calls.get_mut(&call) {
            Some(e) if announce.is_some() && e.offers.is_empty() => self.announce(now, call),
            Some(e) if announce.is_some() => e.next_announce = Some(now + every),
            _ => {}
        }
    }

    /// A new hand-off, numbered in arrival order.
    fn entry(&mut self, kind: Kind, priority: i64, now: Millis) -> Entry {
        self.seq += 1;
        Entry { kind, priority, seq: self.seq, joined: now, offers: Vec::new(), offered: 0, first_offer: None, last_position: None, next_announce: None, talking: None }
    }

    /// A caller dials an agent by work number; `ring_ms` 0 means the default 20 s.
    pub fn dial(&mut self, now: Millis, call: CallId, work_number: &str, ring_ms: Millis) {
        self.now = self.now.max(now);
        let Some(&a) = self.by_id.get(work_number) else {
            return self.commands.push_back(Command::Finish { call, outcome: Outcome::Absent });
        };
        let outcome = match self.agents[a].state {
            AgentState::LoggedOut => Some(Outcome::Absent),
            AgentState::Ready if self.agents[a].contact.is_none() => Some(Outcome::Absent),
            AgentState::Ready => None,
            _ => Some(Outcome::Busy),
        };
        let entry = self.entry(Kind::Direct { agent: a }, 0, now);
        if let Some(outcome) = outcome {
            self.records.push_back(Record::Call(self.record_of(call, &entry, now, outcome.name())));
            return self.commands.push_back(Command::Finish { call, outcome });
        }
        self.calls.insert(call, entry);
        let ring = if ring_ms == 0 { 20_000 } else { ring_ms };
        self.offer(now, call, a, ring);
    }

    /// The caller's priority changed: they are re-ranked at once.
    pub fn set_priority(&mut self, now: Millis, call: CallId, priority: i64) -> Result<(), AcdError> {
        self.now = self.now.max(now);
        let e = self.calls.get_mut(&call).ok_or(AcdError::UnknownCall(call))?;
        e.priority = priority;
        self.dispatch(now);
        Ok(())
    }

    /// The agent's phone answered the offer. `false`: the offer is no longer
    /// wanted (the caller left, another agent answered): hang the agent leg up.
    pub fn answered(&mut self, now: Millis, call: CallId, agent: &str) -> bool {
        self.now = self.now.max(now);
        let Ok(a) = self.agent(agent) else { return false };
        let Some(e) = self.calls.get_mut(&call) else { return false };
        if e.talking.is_some() || !e.offers.iter().any(|(x, _)| *x == a) {
            return false;
        }
        let others: Vec<usize> = e.offers.drain(..).map(|(x, _)| x).filter(|&x| x != a).collect();
        e.talking = Some((a, now));
        e.next_announce = None;
        for o in others {
            self.withdraw_agent(now, call, o);
        }
        self.agents[a].calls += 1;
        self.set_state(now, a, AgentState::Talking { call });
        true
    }

    /// The offer failed before an answer: the agent is made not ready and the
    /// next agent is tried (a direct call gets `busy` or `failed`).
    pub fn offer_failed(&mut self, now: Millis, call: CallId, agent: &str, why: OfferFailure) {
        self.now = self.now.max(now);
        let Ok(a) = self.agent(agent) else { return };
        let Some(e) = self.calls.get_mut(&call) else { return };
        let Some(i) = e.offers.iter().position(|(x, _)| *x == a) else { return };
        e.offers.remove(i);
        let reason = match why {
            OfferFailure::Declined => Some("declined"),
            OfferFailure::Unreachable => Some("unreachable"),
            OfferFailure::Local => None,
        };
        match reason {
            Some(reason) => self.set_state(now, a, AgentState::NotReady { reason: reason.into() }),
            None if self.agents[a].state == (AgentState::Ringing { call }) => self.set_state(now, a, AgentState::Ready),
            None => {}
        }
        let direct = match why {
            OfferFailure::Declined => Outcome::Busy,
            OfferFailure::Unreachable | OfferFailure::Local => Outcome::Failed,
        };
        self.requeue(now, call, Some(direct));
        self.dispatch(now);
    }

    /// The caller left the hand-off: `pressed_key` (the queue's leave key,
    /// outcome `left`) or hung up (recorded as abandoned; or, when talking,
    /// the agent leg ends and wrap-up starts).
    pub fn caller_left(&mut self, now: Millis, call: CallId, pressed_key: bool) {
        self.now = self.now.max(now);
        let Some(e) = self.calls.get(&call) else { return };
        if e.talking.is_some() {
            return self.talk_ended(now, call, false);
        }
        if pressed_key {
            self.leave(now, call, "left", Some(Outcome::Left));
        } else {
            self.leave(now, call, "abandoned", None);
        }
        self.dispatch(now);
    }

    /// The conversation ended: `by_agent` (the caller goes back to the flow,
    /// `served`) or by the caller. The agent goes to wrap-up.
    pub fn talk_ended(&mut self, now: Millis, call: CallId, by_agent: bool) {
        self.now = self.now.max(now);
        let Some(e) = self.calls.get(&call) else { return };
        let Some((a, since)) = e.talking else { return };
        let e = self.calls.remove(&call).unwrap();
        let mut rec = self.record_of(call, &e, since, "answered");
        rec.agent = Some(self.agents[a].cfg.id.clone());
        rec.talk_ms = now - since;
        let wrap = match e.kind {
            Kind::Queue { q, .. } => self.queues[q].cfg.wrap_up_ms,
            Kind::Direct { .. } => self.direct_wrap_up_ms,
        };
        self.agents[a].wrapping = Some(rec);
        self.set_state(now, a, AgentState::WrapUp { until: now + wrap });
        if by_agent {
            self.commands.push_back(Command::Finish { call, outcome: Outcome::Served });
        }
        if wrap == 0 {
            self.end_wrap_up(now, a);
        }
        self.dispatch(now);
    }

    fn end_wrap_up(&mut self, now: Millis, a: usize) {
        let AgentState::WrapUp { .. } = self.agents[a].state else { return };
        if let Some(mut rec) = self.agents[a].wrapping.take() {
            rec.wrap_up_ms = now - self.agents[a].since;
            if let Some(q) = rec.queue.as_ref().and_then(|n| self.queues.iter_mut().find(|q| &q.cfg.name == n)) {
                q.handled += 1;
                q.handle_ms_total += rec.talk_ms + rec.wrap_up_ms;
            }
            self.records.push_back(Record::Call(rec));
        }
        let next = self.agents[a].after_call.take().unwrap_or(AgentState::Ready);
        self.set_state(now, a, next);
        self.leave_if_empty(now);
        self.dispatch(now);
    }

    // ---------------------------------------------------------------- time

    /// For a simulation driving the core beside events of its own (the host's
    /// next at `host`): which comes first, the core's timer (on a tie) or the
    /// host's event, and when; `None` when neither has anything left.
    pub fn next_in_simulation(&self, host: Option<Millis>) -> Option<(Millis, Next)> {
        match (host, self.poll_timeout()) {
            (None, None) => None,
            (Some(h), Some(c)) if h < c => Some((h, Next::Host)),
            (Some(h), None) => Some((h, Next::Host)),
            (_, Some(c)) => Some((c, Next::Timer)),
        }
    }

    /// The next time [`Acd::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Millis> {
        let mut next: Option<Millis> = None;
        let mut at = |t: Millis| next = Some(next.map_or(t, |n| n.min(t)));
        for e in self.calls.values() {
            e.offers.iter().for_each(|o| at(o.1));
            e.next_announce.into_iter().for_each(&mut at);
            if let (Kind::Queue { q, deadline }, None) = (&e.kind, e.talking) {
                if let Some(d) = *deadline {
                    at(d);
                }
                // The next widening step still ahead (steps are in order).
                if let Some(w) = self.queues[*q].cfg.widen.iter().map(|w| e.joined + w.after_ms).find(|&t| t > self.now).filter(|_| e.offers.is_empty()) {
                    at(w);
                }
            }
        }
        for a in &self.agents {
            if let AgentState::WrapUp { until } = a.state {
                at(until);
            }
        }
        next
    }

    pub fn handle_timeout(&mut self, now: Millis) {
        self.now = self.now.max(now);
        // Wrap-ups that are over.
        for a in 0..self.agents.len() {
            if matches!(self.agents[a].state, AgentState::WrapUp { until } if until <= now) {
                self.end_wrap_up(now, a);
            }
        }
        let mut ids: Vec<(u64, CallId)> = self.calls.iter().map(|(c, e)| (e.seq, *c)).collect();
        ids.sort_unstable();
        for (_, call) in ids {
            let Some(e) = self.calls.get(&call) else { continue };
            // Offers that rang out: the agent is not ready, the caller goes on.
            let rang_out: Vec<usize> = e.offers.iter().filter(|o| o.1 <= now).map(|o| o.0).collect();
            if !rang_out.is_empty() {
                for a in rang_out {
                    self.withdraw(now, call, a);
                    self.set_state(now, a, AgentState::NotReady { reason: "ring_no_answer".into() });
                }
                self.requeue(now, call, Some(Outcome::NoAnswer));
            }
            let Some(e) = self.calls.get(&call) else { continue };
            if let Kind::Queue { deadline: Some(d), .. } = e.kind {
                if d <= now && e.talking.is_none() {
                    self.leave(now, call, "timeout", Some(Outcome::Timeout));
                    continue;
                }
            }
            if e.next_announce.is_some_and(|t| t <= now) {
                self.announce(now, call);
            }
        }
        self.dispatch(now);
    }

    // ---------------------------------------------------------------- routing

    fn members(&self, q: usize) -> impl Iterator<Item = usize> + '_ {
        self.queues[q].members.iter().map(|&(a, _)| a).filter(move |&a| !self.agents[a].retired)
    }

    fn logged_in_members(&self, q: usize) -> usize {
        self.members(q).filter(|&a| self.agents[a].state != AgentState::LoggedOut).count()
    }

    fn waiting_in(&self, q: usize) -> usize {
        self.calls.values().filter(|e| matches!(e.kind, Kind::Queue { q: x, .. } if x == q) && e.talking.is_none()).count()
    }

    /// 1 + the callers of the same queue ahead (higher priority, or the same
    /// priority and earlier).
    fn position(&self, call: CallId) -> Option<u32> {
        let e = self.calls.get(&call)?;
        let Kind::Queue { q, .. } = e.kind else { return None };
        let ahead = self
            .calls
            .values()
            .filter(|o| matches!(o.kind, Kind::Queue { q: x, .. } if x == q) && o.talking.is_none())
            .filter(|o| (-o.priority, o.seq) < (-e.priority, e.seq))
            .count();
        Some(ahead as u32 + 1)
    }

    /// Estimated wait: the callers up to this one, served by the logged-in
    /// members at the queue's measured handle time.
    fn estimate(&self, q: usize, position: u32) -> Millis {
        let queue = &self.queues[q];
        let aht = queue.handle_ms_total.checked_div(queue.handled).unwrap_or(queue.cfg.assumed_handle_ms);
        let agents = self.logged_in_members(q).max(1) as u64;
        position as u64 * aht / agents
    }

    fn announce(&mut self, now: Millis, call: CallId) {
        let Some(position) = self.position(call) else { return };
        let Some(e) = self.calls.get(&call) else { return };
        let Kind::Queue { q, .. } = e.kind else { return };
        let every = self.queues[q].cfg.announce_every_ms;
        let improved = e.last_position.is_none_or(|l| position < l);
        let wait = self.estimate(q, position);
        let e = self.calls.get_mut(&call).unwrap();
        e.next_announce = (every > 0).then_some(now + every);
        let command = if improved {
            e.last_position = Some(position);
            Command::Announce { call, position: Some(position), wait_ms: Some(wait) }
        } else {
            Command::Announce { call, position: None, wait_ms: None }
        };
        self.commands.push_back(command);
    }

    fn offer(&mut self, now: Millis, call: CallId, a: usize, ring_ms: Millis) {
        let Some(e) = self.calls.get_mut(&call) else { return };
        e.offers.push((a, now + ring_ms));
        e.offered += 1;
        e.first_offer.get_or_insert(now);
        let (priority, queue) = (e.priority, match e.kind {
            Kind::Queue { q, .. } => Some(q),
            Kind::Direct { .. } => None,
        });
        if let Some(q) = queue {
            self.queues[q].last_offered = Some(a);
        }
        self.set_state(now, a, AgentState::Ringing { call });
        self.commands.push_back(Command::Offer {
            call,
            agent: self.agents[a].cfg.id.clone(),
            contact: self.agents[a].contact.clone(),
            queue: queue.map(|q| self.queues[q].cfg.name.clone()),
            priority,
        });
    }

    /// Takes back `a`'s offer of `call` and returns them to ready.
    fn withdraw_agent(&mut self, now: Millis, call: CallId, a: usize) {
        self.commands.push_back(Command::Withdraw { call, agent: self.agents[a].cfg.id.clone() });
        if self.agents[a].state == (AgentState::Ringing { call }) {
            self.set_state(now, a, AgentState::Ready);
        }
    }

    /// Takes back `a`'s offer of `call` (the agent's state is the caller's to set).
    fn withdraw(&mut self, _now: Millis, call: CallId, a: usize) {
        if let Some(e) = self.calls.get_mut(&call) {
            e.offers.retain(|(x, _)| *x != a);
        }
        self.commands.push_back(Command::Withdraw { call, agent: self.agents[a].cfg.id.clone() });
    }

    /// After an offer ended without an answer: a queued caller waits on (and is
    /// offered again by `dispatch`); a direct call is over with `direct`.
    fn requeue(&mut self, now: Millis, call: CallId, direct: Option<Outcome>) {
        let Some(e) = self.calls.get(&call) else { return };
        if !e.offers.is_empty() || e.talking.is_some() {
            return;
        }
        match e.kind {
            Kind::Queue { .. } => {
                if e.next_announce.is_none_or(|t| t < now) && self.queues_announce(call) {
                    self.announce(now, call);
                }
            }
            Kind::Direct { .. } => {
                let outcome = direct.unwrap_or(Outcome::NoAnswer);
                self.leave(now, call, outcome.name(), Some(outcome));
            }
        }
    }

    /// A waiting caller leaves the ACD: any offers withdrawn, the call
    /// recorded with `result`, and the flow told `outcome` (none when the
    /// caller hung up).
    fn leave(&mut self, now: Millis, call: CallId, result: &str, outcome: Option<Outcome>) {
        let Some(e) = self.calls.remove(&call) else { return };
        for (a, _) in &e.offers {
            self.withdraw_agent(now, call, *a);
        }
        self.records.push_back(Record::Call(self.record_of(call, &e, now, result)));
        if let Some(outcome) = outcome {
            self.commands.push_back(Command::Finish { call, outcome });
        }
    }

    /// Every caller waiting in `queues` goes on with `no_agents`, in the order
    /// they joined.
    fn send_on_waiting(&mut self, now: Millis, queues: &[usize]) {
        let mut leaving: Vec<(u64, CallId)> = self
            .calls
            .iter()
            .filter(|(_, e)| e.talking.is_none() && matches!(e.kind, Kind::Queue { q, .. } if queues.contains(&q)))
            .map(|(c, e)| (e.seq, *c))
            .collect();
        leaving.sort_unstable();
        for (_, call) in leaving {
            self.leave(now, call, "no_agents", Some(Outcome::NoAgents));
        }
    }

    fn queues_announce(&self, call: CallId) -> bool {
        matches!(self.calls.get(&call).map(|e| &e.kind), Some(Kind::Queue { q, .. }) if self.queues[*q].cfg.announce_every_ms > 0)
    }

    fn leave_if_empty(&mut self, now: Millis) {
        let empty: Vec<usize> = (0..self.queues.len()).filter(|&q| self.queues[q].cfg.leave_empty && self.logged_in_members(q) == 0).collect();
        if empty.is_empty() {
            return;
        }
        self.send_on_waiting(now, &empty);
    }

    /// Offers waiting callers, best first, to the agents their queues choose.
    fn dispatch(&mut self, now: Millis) {
        if !self.agents.iter().any(|a| a.state == AgentState::Ready && a.contact.is_some()) {
            return;
        }
        let mut waiting: Vec<(i64, Millis, u64, CallId)> = self
            .calls
            .iter()
            .filter(|(_, e)| e.talking.is_none() && e.offers.is_empty() && matches!(e.kind, Kind::Queue { .. }))
            .map(|(c, e)| (-e.priority, e.joined, e.seq, *c))
            .collect();
        waiting.sort_unstable();
        for (_, joined, _, call) in waiting {
            let Kind::Queue { q, .. } = self.calls[&call].kind else { continue };
            let cfg = &self.queues[q].cfg;
            let min_level = cfg.min_level(now - joined);
            let level = |a: usize| self.queues[q].members.iter().find(|m| m.0 == a).map_or(0, |m| m.1);
            let eligible: Vec<usize> = self.queues[q]
                .members
                .iter()
                .filter(|&&(a, l)| l >= min_level && !self.agents[a].retired && self.agents[a].state == AgentState::Ready && self.agents[a].contact.is_some())
                .map(|&(a, _)| a)
                .collect();
            if eligible.is_empty() {
                continue;
            }
            let ring = cfg.ring_ms;
            let idle = |a: &usize| self.agents[*a].ready_since;
            let chosen: Vec<usize> = match cfg.strategy {
                Strategy::RingAll => eligible,
                Strategy::LongestIdle => eligible.iter().copied().min_by_key(|a| (idle(a), *a)).into_iter().collect(),
                Strategy::FewestCalls => eligible.iter().copied().min_by_key(|a| (self.agents[*a].calls, idle(a), *a)).into_iter().collect(),
                Strategy::Skills => {
                    eligible.iter().copied().min_by_key(|a| (std::cmp::Reverse(level(*a)), idle(a), *a)).into_iter().collect()
                }
                Strategy::RoundRobin => {
                    let after = self.queues[q].last_offered;
                    let next = eligible.iter().copied().find(|&a| after.is_none_or(|l| a > l)).or_else(|| eligible.first().copied());
                    next.into_iter().collect()
                }
            };
            for a in chosen {
                self.offer(now, call, a, ring);
            }
            if !self.agents.iter().any(|a| a.state == AgentState::Ready && a.contact.is_some()) {
                return;
            }
        }
    }

    fn record_of(&self, call: CallId, e: &Entry, until: Millis, result: &str) -> CallRecord {
        let (queue, dialed_agent) = match e.kind {
            Kind::Queue { q, .. } => (Some(self.queues[q].cfg.name.clone()), None),
            Kind::Direct { agent } => (None, Some(self.agents[agent].cfg.id.clone())),
        };
        CallRecord {
            call,
            queue,
            dialed_agent,
            priority: e.priority,
            joined_ms: e.joined,
            waited_ms: until.saturating_sub(e.joined),
            result: result.to_string(),
            agent: None,
            talk_ms: 0,
            wrap_up_ms: 0,
            offers: e.offered,
            queued_ms: e.first_offer.unwrap_or(until).min(until).saturating_sub(e.joined),
        }
    }

    // ---------------------------------------------------------------- views

    /// The live state, for the admin API and `ivr agents`.
    pub fn snapshot(&self, now: Millis) -> Snapshot {
        let agents = self
            .agents
            .iter()
            .filter(|a| !a.retired)
            .map(|a| {
                let mut time_in = BTreeMap::new();
                for (i, name) in AgentState::NAMES.iter().enumerate() {
                    let mut t = a.time_in[i];
                    if a.state.name() == *name {
                        t += now.saturating_sub(a.since);
                    }
                    if t > 0 {
                        time_in.insert(name.to_string(), t);
                    }
                }
                AgentView {
                    id: a.cfg.id.clone(),
                    name: a.cfg.name.clone(),
                    state: a.state.name(),
                    reason: match &a.state {
                        AgentState::NotReady { reason } => Some(reason.clone()),
                        _ => None,
                    },
                    for_ms: now.saturating_sub(a.since),
                    call: match a.state {
                        AgentState::Ringing { call } | AgentState::Talking { call } => Some(call),
                        _ => None,
                    },
                    calls: a.calls,
                    registered: a.contact.is_some(),
                    skills: a.cfg.skills.clone(),
                    time_in_ms: time_in,
                }
            })
            .collect();
        let queues = (0..self.queues.len())
            .filter(|&q| !self.queues[q].retired)
            .map(|q| {
                // In queue order (one sort, not a position count per caller).
                let mut waiting: Vec<(&CallId, &Entry)> =
                    self.calls.iter().filter(|(_, e)| e.talking.is_none() && matches!(e.kind, Kind::Queue { q: x, .. } if x == q)).collect();
                waiting.sort_by_key(|(_, e)| (-e.priority, e.seq));
                let callers: Vec<CallerView> = waiting
                    .iter()
                    .enumerate()
                    .map(|(i, (c, e))| CallerView { call: **c, priority: e.priority, waited_ms: now.saturating_sub(e.joined), position: i as u32 + 1, ringing: !e.offers.is_empty() })
                    .collect();
                let mut agents = BTreeMap::new();
                for a in self.members(q) {
                    *agents.entry(self.agents[a].state.name().to_string()).or_insert(0) += 1;
                }
                let talking = self.calls.values().filter(|e| e.talking.is_some() && matches!(e.kind, Kind::Queue { q: x, .. } if x == q)).count();
                QueueView {
                    name: self.queues[q].cfg.name.clone(),
                    strategy: self.queues[q].cfg.strategy.name(),
                    waiting: callers.len(),
                    longest_wait_ms: callers.iter().map(|c| c.waited_ms).max().unwrap_or(0),
                    talking,
                    agents,
                    callers,
                }
            })
            .collect();
        Snapshot { queues, agents }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub queues: Vec<QueueView>,
    pub agents: Vec<AgentView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueueView {
    pub name: QueueId,
    pub strategy: &'static str,
    pub waiting: usize,
    pub longest_wait_ms: Millis,
    pub talking: usize,
    /// Members by state.
    pub agents: BTreeMap<String, usize>,
    pub callers: Vec<CallerView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CallerView {
    pub call: CallId,
    pub priority: i64,
    pub waited_ms: Millis,
    pub position: u32,
    pub ringing: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct AgentView {
    pub id: AgentId,
    pub name: String,
    pub state: &'static str,
    pub reason: Option<String>,
    pub for_ms: Millis,
    pub call: Option<CallId>,
    pub calls: u32,
    pub registered: bool,
    pub skills: Vec<(String, u8)>,
    /// Time in each state since start-up.
    pub time_in_ms: BTreeMap<String, Millis>,
}
