//! The queue and agent configuration (the `[[agents]]`, `[[queues]]` and
//! `[[tiers]]` tables of `ivr.toml`), with defaults and validation.

use serde::{Deserialize, Serialize};

use crate::Millis;

/// How a queue picks among the agents able to take its next caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The agent ready for longest (the fairest, and the usual default).
    #[default]
    LongestIdle,
    /// Each member in turn, after the one offered last.
    RoundRobin,
    /// The agent who has taken fewest calls since logging in.
    FewestCalls,
    /// Every eligible agent rings; the first to answer takes the call.
    RingAll,
    /// The most skilled agent (highest level in the queue's skill), then longest idle.
    Skills,
}

impl Strategy {
    pub fn name(self) -> &'static str {
        match self {
            Strategy::LongestIdle => "longest_idle",
            Strategy::RoundRobin => "round_robin",
            Strategy::FewestCalls => "fewest_calls",
            Strategy::RingAll => "ring_all",
            Strategy::Skills => "skills",
        }
    }
}

/// One agent (坐席), known by work number (工号).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// The work number callers dial and supervisors use.
    pub id: crate::AgentId,
    #[serde(default)]
    pub name: String,
    /// Skill name and level (1 = basic … 10 = expert).
    #[serde(default)]
    pub skills: Vec<(String, u8)>,
    /// A fixed SIP address for the agent's phone (`sip:1001@127.0.0.1:5070`);
    /// without one the agent's phone registers (SIP REGISTER with digest).
    #[serde(default)]
    pub address: Option<String>,
    /// The digest password for REGISTER. Never logged.
    #[serde(default)]
    pub password: Option<String>,
    /// Log in at start-up, ready (agents with a fixed address only).
    #[serde(default)]
    pub auto_login: bool,
}

/// A step of skills widening: after `after_ms` of waiting, agents with at
/// least `min_level` in the queue's skill may take the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Widen {
    #[serde(default)]
    pub after_ms: Millis,
    pub min_level: u8,
}

/// One queue (技能组): the callers waiting for agents with its skill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// The name flows use in `enqueue NAME`.
    pub name: crate::QueueId,
    /// The skill agents need; defaults to the queue's name.
    #[serde(default)]
    pub skill: Option<String>,
    #[serde(default)]
    pub strategy: Strategy,
    /// How long an offered agent's phone rings before the next agent is tried
    /// (and the agent is made not ready: ring-no-answer).
    #[serde(default = "default_ring_ms")]
    pub ring_ms: Millis,
    /// After-call work before the agent is offered another call.
    #[serde(default = "default_wrap_up_ms")]
    pub wrap_up_ms: Millis,
    /// Callers waiting at most; a caller beyond it hears `full`.
    #[serde(default)]
    pub max_len: Option<usize>,
    /// Let callers join when no agent of the queue is logged in (else `no_agents`).
    #[serde(default)]
    pub join_empty: bool,
    /// Send waiting callers out (`no_agents`) when the last agent logs out.
    #[serde(default = "yes")]
    pub leave_empty: bool,
    /// Skills widening, in order of `after_ms`; default: any level at once.
    #[serde(default)]
    pub widen: Vec<Widen>,
    /// Every this often a waiting caller hears their position (when it has
    /// improved) or the periodic announcement. 0: never.
    #[serde(default = "default_announce_ms")]
    pub announce_every_ms: Millis,
    /// The key that takes a waiting caller out of the queue (outcome `left`).
    #[serde(default)]
    pub leave_key: Option<char>,
    /// Handle time assumed for estimates until calls have been measured.
    #[serde(default = "default_handle_ms")]
    pub assumed_handle_ms: Millis,
}

/// A named caller priority; flows may only set priorities that are tiers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    pub name: String,
    pub priority: i64,
}

fn default_ring_ms() -> Millis {
    15_000
}
fn default_wrap_up_ms() -> Millis {
    10_000
}
fn default_announce_ms() -> Millis {
    30_000
}
fn default_handle_ms() -> Millis {
    180_000
}
fn yes() -> bool {
    true
}

impl QueueConfig {
    /// A queue with every default, for tests and examples.
    pub fn new(name: &str) -> QueueConfig {
        QueueConfig {
            name: name.into(),
            skill: None,
            strategy: Strategy::default(),
            ring_ms: default_ring_ms(),
            wrap_up_ms: default_wrap_up_ms(),
            max_len: None,
            join_empty: false,
            leave_empty: true,
            widen: Vec::new(),
            announce_every_ms: default_announce_ms(),
            leave_key: None,
            assumed_handle_ms: default_handle_ms(),
        }
    }

    pub fn skill(&self) -> &str {
        self.skill.as_deref().unwrap_or(&self.name)
    }

    /// The lowest skill level that may take a caller who has waited `waited`.
    pub fn min_level(&self, waited: Millis) -> u8 {
        self.widen.iter().rev().find(|w| w.after_ms <= waited).map_or(1, |w| w.min_level)
    }

    /// When the next widening after `waited` happens, as a wait.
    pub fn next_widening(&self, waited: Millis) -> Option<Millis> {
        self.widen.iter().map(|w| w.after_ms).filter(|&a| a > waited).min()
    }
}

impl AgentConfig {
    pub fn new(id: &str, skills: &[(&str, u8)]) -> AgentConfig {
        AgentConfig {
            id: id.into(),
            name: String::new(),
            skills: skills.iter().map(|(s, l)| (s.to_string(), *l)).collect(),
            address: None,
            password: None,
            auto_login: false,
        }
    }

    pub fn level(&self, skill: &str) -> Option<u8> {
        self.skills.iter().find(|(s, _)| s == skill).map(|(_, l)| *l)
    }
}

/// Everything the ACD is configured with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcdConfig {
    #[serde(default)]
    pub agents: Vec<AgentConfig>,
    #[serde(default)]
    pub queues: Vec<QueueConfig>,
    #[serde(default)]
    pub tiers: Vec<Tier>,
    /// After-call work for direct-dialled calls.
    #[serde(default = "default_wrap_up_ms")]
    pub direct_wrap_up_ms: Millis,
}

impl AcdConfig {
    /// Mistakes that would make routing wrong: duplicate names, queues whose
    /// skill no agent has, widening out of order, levels outside 1–10.
    pub fn validate(&self) -> Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for a in &self.agents {
            if a.id.is_empty() || !a.id.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(format!("agent work number {:?} must be letters and digits", a.id));
            }
            if !seen.insert(&a.id) {
                return Err(format!("agent {} is defined twice", a.id));
            }
            if let Some((s, l)) = a.skills.iter().find(|(_, l)| !(1..=10).contains(l)) {
                return Err(format!("agent {}: skill {s} has level {l}; levels are 1 to 10", a.id));
            }
        }
        let mut names = std::collections::HashSet::new();
        for q in &self.queues {
            if !names.insert(&q.name) {
                return Err(format!("queue {} is defined twice", q.name));
            }
            if !q.widen.windows(2).all(|w| w[0].after_ms < w[1].after_ms) {
                return Err(format!("queue {}: widen steps must be in order of after_ms", q.name));
            }
            if !self.agents.iter().any(|a| a.level(q.skill()).is_some()) {
                return Err(format!("queue {}: no agent has the skill {:?}", q.name, q.skill()));
            }
            if q.leave_key.is_some_and(|k| !"0123456789*#".contains(k)) {
                return Err(format!("queue {}: leave_key must be a phone key", q.name));
            }
        }
        let mut tiers = std::collections::HashSet::new();
        for t in &self.tiers {
            if !tiers.insert(t.priority) {
                return Err(format!("two tiers have priority {}", t.priority));
            }
        }
        Ok(())
    }
}

impl Default for AcdConfig {
    fn default() -> AcdConfig {
        AcdConfig { agents: Vec::new(), queues: Vec::new(), tiers: Vec::new(), direct_wrap_up_ms: default_wrap_up_ms() }
    }
}
