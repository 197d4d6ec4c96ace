//! Call records: what the core writes about each call, and how a crash is
//! recovered from. A call's record is written when it starts (`"state":
//! "open"`), again after each operation its flow completes (a service answer,
//! a hand-off, a recording), and a last time when it ends (`"closed"`); the
//! last line of a call is its record. Readers take the last line per
//! `call_id` and skip lines they cannot parse.

use ivr_bytecode::Program;
use serde::{Deserialize, Serialize};

/// Whether a record line is the call's last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordState {
    /// The call is in progress: more lines follow.
    Open,
    /// The call has ended.
    Closed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    pub call_id: String,
    pub state: RecordState,
    pub start_ms: i64,
    pub end_ms: i64,
    pub dialed: String,
    pub caller: String,
    pub flow: String,
    /// A fingerprint of the program the call ran (calls keep the version they started with).
    pub flow_version: String,
    /// The deployed version of the flow set the call started on (`ivr versions`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub release: String,
    pub nodes: Vec<String>,
    /// Keys pressed; secret input is recorded as `*`.
    pub keys: String,
    pub outcome: Option<String>,
    /// Queues joined and agents dialled, with what came of each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub handoffs: Vec<Handoff>,
    /// The survey score the caller gave (see [`crate::host::SURVEY_SCORE_ARG`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub survey_score: Option<String>,
    /// What the call needs to be replayed: each key with its time, each
    /// service's answer, each hand-off's outcome, in order (milliseconds
    /// since the call began). Secret keys are `*`; secret arguments are never here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<Moment>,
}

/// One thing that happened to a call, for replaying it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Moment {
    pub t_ms: u64,
    #[serde(flatten)]
    pub what: MomentKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum MomentKind {
    /// The caller pressed a key (`*` stands for a secret one).
    /// `node`: where the flow was when the key was pressed (the menu it answered).
    /// `hidden`: a secret's digit, or one typed before the flow listened
    /// (it may be the first of a password): shown as `*`.
    Key {
        key: char,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        node: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        hidden: bool,
    },
    /// A service answered.
    Answer {
        service: String,
        outcome: String,
        fields: std::collections::BTreeMap<String, String>,
        /// How long the answer took.
        #[serde(default)]
        took_ms: u64,
    },
    /// A queue, an agent or a recording finished.
    Done { op: String, outcome: String },
}

/// One `enqueue`, `dial agent` or transfer of a call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Handoff {
    /// `queue`, `agent` or `transfer`.
    pub kind: String,
    /// The queue's name, the work number dialled or the number transferred to.
    pub target: String,
    pub priority: i64,
    /// The flow's outcome (`served`, `timeout`, …; `abandoned` when the caller hung up).
    pub outcome: String,
    pub waited_ms: u64,
    /// Who answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    pub talk_ms: u64,
}

impl CallRecord {
    pub fn new(call_id: &str, dialed: &str, caller: &str, flow: &str, flow_version: &str, start_ms: i64) -> CallRecord {
        CallRecord {
            call_id: call_id.to_string(),
            state: RecordState::Open,
            start_ms,
            end_ms: 0,
            dialed: dialed.to_string(),
            caller: caller.to_string(),
            flow: flow.to_string(),
            flow_version: flow_version.to_string(),
            release: String::new(),
            nodes: Vec::new(),
            keys: String::new(),
            outcome: None,
            handoffs: Vec::new(),
            survey_score: None,
            timeline: Vec::new(),
        }
    }

    pub fn key(&mut self, key: char, secret: bool) {
        self.keys.push(if secret { '*' } else { key });
    }

    pub fn close(&mut self, at_ms: i64) {
        self.state = RecordState::Closed;
        self.end_ms = at_ms;
    }
}

/// A fingerprint of a compiled flow (FNV-1a of its stripped encoding), computed
/// once per flow when it is loaded.
pub fn fingerprint(program: &Program) -> String {
    let bytes = ivr_bytecode::encode(program, true);
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3));
    format!("{hash:016x}")
}

/// The record files, each one JSON object per line in the data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Log {
    /// `calls.jsonl`: [`CallRecord`]s (the last line of a call is its record).
    Calls = 0,
    /// `queue.jsonl`: one ACD record per queued or direct-dialled call (wait,
    /// answer or abandon, agent, talk, wrap-up).
    Queue = 1,
    /// `agents.jsonl`: one record per agent state, with its duration.
    Agents = 2,
}

impl Log {
    pub const ALL: [Log; 3] = [Log::Calls, Log::Queue, Log::Agents];

    pub fn file_name(self) -> &'static str {
        ["calls.jsonl", "queue.jsonl", "agents.jsonl"][self as usize]
    }
}

/// The outcome given to calls that a crash left open.
pub const CRASHED: &str = "server_crashed";

/// What a record file needs after a crash, found from its tail: whether the
/// last line is torn (it must not be appended to: a newline goes first), and
/// a closing line for every call whose last line is still open (ended by the
/// crash at the time of its last line).
#[derive(Debug, Default, PartialEq)]
pub struct Recovery {
    pub torn: bool,
    pub closing: Vec<CallRecord>,
}

/// Finds what [`Recovery`] `tail` (the end of `calls.jsonl`, starting at a
/// line boundary or not) needs. Lines that do not parse are skipped; a first
/// line that may be cut by where the tail starts is too.
pub fn recover(tail: &[u8], tail_is_whole_file: bool) -> Recovery {
    let torn = !tail.is_empty() && !tail.ends_with(b"\n");
    let mut lines = tail.split(|b| *b == b'\n');
    if !tail_is_whole_file {
        lines.next();
    }
    // The last line of each call, in order of first appearance.
    let mut order: Vec<String> = Vec::new();
    let mut last: std::collections::HashMap<String, CallRecord> = std::collections::HashMap::new();
    for line in lines {
        let Ok(r) = serde_json::from_slice::<CallRecord>(line) else { continue };
        if !last.contains_key(&r.call_id) {
            order.push(r.call_id.clone());
        }
        last.insert(r.call_id.clone(), r);
    }
    let closing = order
        .into_iter()
        .filter_map(|id| last.remove(&id))
        .filter(|r| r.state == RecordState::Open)
        .map(|mut r| {
            let at = r.start_ms.max(r.end_ms);
            r.outcome = Some(CRASHED.to_string());
            r.close(at);
            r
        })
        .collect();
    Recovery { torn, closing }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(r: &CallRecord) -> String {
        serde_json::to_string(r).unwrap() + "\n"
    }

    #[test]
    fn calls_left_open_are_closed_as_crashed_and_a_torn_line_is_not_appended_to() {
        let mut a = CallRecord::new("a", "1", "2", "f", "v", 1_000);
        let b = CallRecord::new("b", "1", "2", "f", "v", 2_000);
        let mut text = line(&a) + &line(&b);
        a.outcome = Some("hangup:normal".into());
        a.close(3_000);
        text += &line(&a);
        let c = CallRecord::new("c", "1", "2", "f", "v", 4_000);
        let torn = &line(&c)[..20];
        text += torn;
        let r = recover(text.as_bytes(), true);
        assert!(r.torn);
        let ids: Vec<&str> = r.closing.iter().map(|c| c.call_id.as_str()).collect();
        assert_eq!(ids, ["b"], "a closed itself; c's only line is torn (nothing to recover)");
        assert_eq!(r.closing[0].outcome.as_deref(), Some(CRASHED));
        assert_eq!((r.closing[0].state, r.closing[0].end_ms), (RecordState::Closed, 2_000));
    }

    #[test]
    fn a_tail_that_starts_mid_line_skips_its_first_line() {
        let a = CallRecord::new("a", "1", "2", "f", "v", 1_000);
        let text = line(&a) + &line(&a);
        let r = recover(&text.as_bytes()[5..], false);
        assert!(!r.torn);
        assert_eq!(r.closing.len(), 1);
        assert_eq!(recover(b"", true), Recovery::default());
    }
}
