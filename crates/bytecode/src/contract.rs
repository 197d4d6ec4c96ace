//! The contract between flows and every host, defined once: the outcomes an
//! operation can end with, what a transfer may dial, and the conventions the
//! runtime reads from a flow. The compiler checks flows against these; the
//! VM, the queue core, the call core and the simulator produce them; a
//! mismatch fails to compile rather than on a live call.

use std::fmt;

/// How a hand-off (`enqueue`, `dial agent`) or a recording ended, as the flow
/// names it in its outcome branches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// An agent talked with the caller and hung up; the caller is back in the flow.
    Served,
    /// The queue's maximum wait passed.
    Timeout,
    /// The queue was at its maximum length.
    Full,
    /// No agent of the queue is logged in (or no agents are configured).
    NoAgents,
    /// The caller pressed the queue's leave key.
    Left,
    /// The dialled agent is logged in but not ready.
    Busy,
    /// The dialled agent is not logged in, or there is no such work number.
    Absent,
    /// The dialled agent's phone rang out.
    NoAnswer,
    /// A message was recorded and stored.
    Saved,
    /// Something went wrong (an unknown queue, an unreachable phone, storage).
    Failed,
}

impl Outcome {
    pub const ALL: [Outcome; 10] = [
        Outcome::Served,
        Outcome::Timeout,
        Outcome::Full,
        Outcome::NoAgents,
        Outcome::Left,
        Outcome::Busy,
        Outcome::Absent,
        Outcome::NoAnswer,
        Outcome::Saved,
        Outcome::Failed,
    ];

    /// The outcome's name in flows (`served`, `no_agents`, …).
    pub const fn name(self) -> &'static str {
        match self {
            Outcome::Served => "served",
            Outcome::Timeout => "timeout",
            Outcome::Full => "full",
            Outcome::NoAgents => "no_agents",
            Outcome::Left => "left",
            Outcome::Busy => "busy",
            Outcome::Absent => "absent",
            Outcome::NoAnswer => "no_answer",
            Outcome::Saved => "saved",
            Outcome::Failed => "failed",
        }
    }

    pub fn parse(name: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.name() == name)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The outcomes of `enqueue`.
pub const ENQUEUE_OUTCOMES: [Outcome; 6] = [Outcome::Served, Outcome::Timeout, Outcome::Full, Outcome::NoAgents, Outcome::Left, Outcome::Failed];
/// The outcomes of `dial agent`.
pub const DIAL_OUTCOMES: [Outcome; 5] = [Outcome::Served, Outcome::Busy, Outcome::Absent, Outcome::NoAnswer, Outcome::Failed];
/// The outcomes of `record`.
pub const RECORD_OUTCOMES: [Outcome; 2] = [Outcome::Saved, Outcome::Failed];

/// Their names, as the compiler checks a flow's outcome branches against
/// them: derived from the same arrays, so the compiler accepts exactly the
/// outcomes the runtime produces.
pub const ENQUEUE_NAMES: [&str; 6] = names(ENQUEUE_OUTCOMES);
pub const DIAL_NAMES: [&str; 5] = names(DIAL_OUTCOMES);
pub const RECORD_NAMES: [&str; 2] = names(RECORD_OUTCOMES);

const fn names<const N: usize>(outcomes: [Outcome; N]) -> [&'static str; N] {
    let mut out = [""; N];
    let mut i = 0;
    while i < N {
        out[i] = outcomes[i].name();
        i += 1;
    }
    out
}

/// What a host answers a hand-off with when no agents or queues are
/// configured: the path each flow defines for nobody being there.
pub const NOBODY_FOR_ENQUEUE: Outcome = Outcome::NoAgents;
pub const NOBODY_FOR_DIAL: Outcome = Outcome::Absent;

/// Whether `transfer TARGET` can be dialled: a telephone number (digits, an
/// optional leading `+`, and `*`/`#`), which the runtime places through its
/// transfer gateway. SIP URIs and names are not numbers.
pub fn is_transfer_target(target: &str) -> bool {
    let digits = target.strip_prefix('+').unwrap_or(target);
    !digits.is_empty() && digits.len() <= 32 && digits.chars().all(|c| c.is_ascii_digit() || c == '*' || c == '#')
}

/// A service argument with this name carries the caller's satisfaction score;
/// call records keep it (`survey_score`).
pub const SURVEY_SCORE_ARG: &str = "score";

/// Prompt ids the runtime plays on its own, from the flow's catalogue when it
/// has them: music on hold and the queue's announcements.
pub mod prompts {
    pub const HOLD_MUSIC: &str = "hold_music";
    pub const QUEUE_NEXT: &str = "queue_next";
    pub const QUEUE_POSITION: &str = "queue_position";
    pub const QUEUE_HOLD: &str = "queue_hold";
    pub const QUEUE_WAIT: &str = "queue_wait";
    pub const QUEUE_MINUTES: &str = "queue_minutes";
    pub const ALL: [&str; 6] = [HOLD_MUSIC, QUEUE_NEXT, QUEUE_POSITION, QUEUE_HOLD, QUEUE_WAIT, QUEUE_MINUTES];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_distinct() {
        for o in Outcome::ALL {
            assert_eq!(Outcome::parse(o.name()), Some(o));
        }
        let mut names: Vec<_> = Outcome::ALL.iter().map(|o| o.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Outcome::ALL.len());
    }

    #[test]
    fn every_outcome_belongs_to_an_operation_and_the_nobody_answers_are_allowed() {
        for o in Outcome::ALL {
            assert!(ENQUEUE_OUTCOMES.contains(&o) || DIAL_OUTCOMES.contains(&o) || RECORD_OUTCOMES.contains(&o), "{o} is produced by nothing");
        }
        assert!(ENQUEUE_OUTCOMES.contains(&NOBODY_FOR_ENQUEUE));
        assert!(DIAL_OUTCOMES.contains(&NOBODY_FOR_DIAL));
        assert_eq!(ENQUEUE_NAMES.len(), ENQUEUE_OUTCOMES.len());
    }

    #[test]
    fn transfer_targets_are_numbers() {
        for ok in ["95588", "+8621962588", "*72#", "0"] {
            assert!(is_transfer_target(ok), "{ok}");
        }
        for bad in ["", "+", "sip:1001@127.0.0.1", "agent", "1 2", "１２３", &"9".repeat(33)] {
            assert!(!is_transfer_target(bad), "{bad}");
        }
    }
}
