//! The flow VM: one [`Session`] per call, sans-IO.
//!
//! A session performs no I/O and reads no clock. The host feeds it timestamped
//! [`Event`]s (a key, the end of a prompt, an operation's outcome, the caller
//! hanging up) and calls [`Session::handle_timeout`] at [`Session::poll_timeout`];
//! the session answers with [`Action`]s drained by [`Session::poll_action`] (play,
//! say, listen, request a service, enqueue, dial an agent, record, transfer, hang
//! up). The same program therefore behaves the same at the terminal, in a test and
//! on a live call. Input timing is specified in `docs/language.md` ("Input timing").
//!
//! A bad program can never spin a host: each event runs at most
//! [`STEP_BUDGET`] instructions, and any runtime fault ends that call politely
//! with [`Action::Fault`] followed by a hang-up.

mod exec;
mod hours;

use std::collections::VecDeque;
use std::sync::Arc;

pub use ivr_bytecode::{HangupReason, Program, SayKind, Value};

/// Milliseconds on the host's monotonic clock. The epoch is the host's choice.
pub type Millis = u64;

/// Instructions one event may run before the session is declared faulty.
pub const STEP_BUDGET: u32 = 100_000;
/// Keys kept while the flow is not collecting; older keys are dropped first.
pub const TYPEAHEAD_MAX: usize = 32;
/// How long a service may take before the flow's hold prompt starts.
pub const HOLD_AFTER_MS: Millis = 1_500;
/// Menus remembered for `back`.
pub const MENU_HISTORY_MAX: usize = 16;

/// The guard against calls that outlive their purpose: a flow that goes
/// round (through failing services, hand-offs or `goto`s) without the caller
/// doing anything ends with [`Action::Fault`] when it enters a step past
/// either limit. A key press resets both; a finished hand-off (the caller
/// waited for or talked to an agent) resets the idle time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Steps and menus entered in a row without a key from the caller.
    pub max_nodes_without_input: u32,
    /// Milliseconds without a key (or a finished hand-off) after which
    /// entering a step ends the call.
    pub max_idle_ms: Millis,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_nodes_without_input: 100, max_idle_ms: 20 * 60_000 }
    }
}

/// What the host knows about a call when it starts.
#[derive(Debug, Clone)]
pub struct CallInfo {
    /// The dialed number (DNIS); picks the flow's entry.
    pub dialed: String,
    /// The caller's number (ANI). Personal data: hosts redact it in logs.
    pub caller: String,
    /// A language to start in, when the host knows one (e.g. from the trunk).
    pub language: Option<String>,
    /// Wall-clock time at `now` when the session starts, in Unix milliseconds; used
    /// for opening hours only.
    pub wall_clock_ms: i64,
}

/// Identifies one Play or Say action, so the host can report when it finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PlayId(pub u32);

/// Identifies one operation (request, enqueue, dial, record) handed to the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpId(pub u32);

/// One argument of a service request.
#[derive(Debug, Clone, PartialEq)]
pub struct Arg {
    pub name: String,
    pub value: Value,
    /// The value came from a secret field: never log, echo or store it.
    pub secret: bool,
}

/// What the host must do. Media actions (Play, Say) queue behind each other; the
/// host reports each finished one with [`Event::PlayDone`].
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// The call entered a step or menu (for transcripts and call records).
    EnterNode { name: String, menu: bool },
    /// Play prompt `prompt` (an index into `Program::prompts`) in language `lang`.
    Play { id: PlayId, prompt: u32, lang: u32, barge_in: bool },
    /// Speak a value (number, digits, money, percent, date, time) in language `lang`.
    Say { id: PlayId, kind: SayKind, value: Value, lang: u32 },
    /// Stop what is playing and drop what is queued (barge-in, or the end of hold).
    StopPlayback,
    /// The flow now listens for keys. `secret` input must not be logged or echoed.
    Listen { var: String, max_digits: u32, secret: bool },
    /// Ask a named service. Answer with [`Event::Completed`]; the VM enforces the
    /// timeout itself and sends [`Action::Cancel`] when it gives up.
    Request { op: OpId, service: String, args: Vec<Arg>, timeout_ms: u64 },
    /// Put the caller in a queue. Outcomes: `served` (the agent leg ended and the
    /// caller is back in the flow), `timeout`, `full`, `no_agents`, `left`, `failed`.
    Enqueue { op: OpId, queue: String, priority: i64, max_wait_ms: u64 },
    /// Ring an agent by work number. Outcomes: `served`, `busy`, `absent`,
    /// `no_answer`, `failed`.
    DialAgent { op: OpId, work_number: String, timeout_ms: u64 },
    /// Record the caller. Outcomes: `saved`, `failed`.
    Record { op: OpId, category: String, max_ms: u64 },
    /// The flow no longer waits for this operation.
    Cancel { op: OpId },
    /// The caller's language changed.
    SetLanguage { lang: u32 },
    /// Hand the call to an external number; the flow has ended.
    Transfer { target: String },
    /// A runtime fault: logged by the host; a `Hangup { reason: Fault }` follows.
    Fault { message: String, pc: u32 },
    /// End the call; the flow has ended.
    Hangup { reason: HangupReason },
}

/// What happened on the call.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The caller pressed a key (`0`-`9`, `*`, `#`, `A`-`D`).
    Digit(char),
    /// A Play or Say action finished playing (not sent for stopped ones).
    PlayDone(PlayId),
    /// An operation finished with a named outcome and its fields.
    Completed { op: OpId, outcome: String, fields: Vec<(String, Value)> },
    /// The caller hung up.
    Hangup,
}

/// Why `Session::start` refused a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    #[error("no flow is bound to number {0}")]
    NoEntry(String),
}

#[derive(Debug)]
enum Phase {
    /// Prompts are playing; the first-key timer has not started.
    Prompting { until: PlayId },
    /// Listening; `deadline` is the first-key or inter-key timeout.
    Waiting { deadline: Millis },
}

#[derive(Debug)]
struct Collecting {
    spec: u32,
    digits: String,
    phase: Phase,
}

#[derive(Debug)]
struct Awaiting {
    op: u32,
    id: OpId,
    deadline: Option<Millis>,
    hold_at: Option<Millis>,
    hold_playing: Option<PlayId>,
}

#[derive(Debug)]
enum Wait {
    Running,
    Collecting(Collecting),
    Awaiting(Awaiting),
    Done,
}

/// One call running one program.
#[derive(Debug)]
pub struct Session {
    program: Arc<Program>,
    pc: usize,
    entry_pc: usize,
    stack: Vec<Value>,
    slots: Vec<Value>,
    frames: Vec<u32>,
    menus: Vec<u32>,
    current_node: Option<u32>,
    lang: u32,
    typeahead: VecDeque<char>,
    wait: Wait,
    actions: VecDeque<Action>,
    /// The last Play/Say handed out and not yet reported done.
    playing: Option<PlayId>,
    next_play: u32,
    next_op: u32,
    start: Millis,
    wall_at_start: i64,
    now: Millis,
    executed: u64,
    limits: Limits,
    nodes_without_input: u32,
    last_input_ms: Millis,
}

impl Session {
    /// Starts the flow bound to `info.dialed` and runs it to its first wait.
    pub fn start(program: Arc<Program>, info: CallInfo, now: Millis) -> Result<Session, StartError> {
        Session::start_with(program, info, now, Limits::default())
    }

    /// [`Session::start`] with other limits than the defaults.
    pub fn start_with(program: Arc<Program>, info: CallInfo, now: Millis, limits: Limits) -> Result<Session, StartError> {
        let entry = program
            .entries
            .iter()
            .find(|e| e.number == info.dialed)
            .ok_or_else(|| StartError::NoEntry(info.dialed.clone()))?;
        let slots = program
            .slots
            .iter()
            .map(|s| match s.name.as_str() {
                "caller" => Value::text(&info.caller),
                "dialed" => Value::text(&info.dialed),
                _ => s.ty.zero(),
            })
            .collect();
        let lang = info.language.as_deref().and_then(|l| program.language_index(l)).unwrap_or(0) as u32;
        let mut s = Session {
            pc: entry.pc as usize,
            entry_pc: entry.pc as usize,
            program,
            stack: Vec::with_capacity(16),
            slots,
            frames: Vec::new(),
            menus: Vec::new(),
            current_node: None,
            lang,
            typeahead: VecDeque::new(),
            wait: Wait::Running,
            actions: VecDeque::new(),
            playing: None,
            next_play: 0,
            next_op: 0,
            start: now,
            wall_at_start: info.wall_clock_ms,
            now,
            executed: 0,
            limits,
            nodes_without_input: 0,
            last_input_ms: now,
        };
        s.run();
        Ok(s)
    }

    /// The next thing the host must do, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When the host must call [`Session::handle_timeout`] next, if ever.
    pub fn poll_timeout(&self) -> Option<Millis> {
        match &self.wait {
            Wait::Collecting(Collecting { phase: Phase::Waiting { deadline }, .. }) => Some(*deadline),
            Wait::Awaiting(a) => match (a.deadline, a.hold_at) {
                (Some(d), Some(h)) => Some(d.min(h)),
                (d, h) => d.or(h),
            },
            _ => None,
        }
    }

    /// Whether the flow is listening for keys (a menu or a `collect` is active).
    pub fn is_collecting(&self) -> bool {
        matches!(self.wait, Wait::Collecting(_))
    }

    /// Whether the flow has ended (hang-up, transfer, fault or the caller leaving).
    pub fn is_finished(&self) -> bool {
        matches!(self.wait, Wait::Done)
    }

    /// The program this call runs (calls keep the version they started with).
    pub fn program(&self) -> &Arc<Program> {
        &self.program
    }

    /// The current language, as an index into `Program::languages`.
    pub fn language(&self) -> u32 {
        self.lang
    }

    /// Instructions executed so far (for benchmarks and budgets).
    pub fn instructions_executed(&self) -> u64 {
        self.executed
    }

    /// The value of a flow variable, for hosts and tests. Secret variables (PINs,
    /// passwords) are never returned.
    pub fn value(&self, name: &str) -> Option<&Value> {
        let i = self.program.slots.iter().position(|s| s.name == name)?;
        (!self.program.slots[i].secret).then(|| &self.slots[i])
    }

    /// The name of the step or menu the call is in.
    pub fn current_node(&self) -> Option<&str> {
        self.current_node.map(|n| self.program.nodes[n as usize].name.as_str())
    }

    /// Milliseconds since the call started.
    pub fn elapsed_ms(&self) -> Millis {
        self.now - self.start
    }

    pub fn handle_event(&mut self, now: Millis, event: Event) {
        self.now = self.now.max(now);
        if self.is_finished() {
            return;
        }
        match event {
            Event::Hangup => {
                if let Wait::Awaiting(a) = &self.wait {
                    self.actions.push_back(Action::Cancel { op: a.id });
                }
                self.wait = Wait::Done;
            }
            Event::PlayDone(id) => self.play_done(id),
            Event::Digit(key) => self.digit(key),
            Event::Completed { op, outcome, fields } => self.completed(op, &outcome, fields),
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Millis) {
        self.now = self.now.max(now);
        while let Some(t) = self.poll_timeout() {
            if t > self.now || self.is_finished() {
                break;
            }
            self.fire_timer();
        }
    }

    fn play_id(&mut self) -> PlayId {
        self.next_play += 1;
        let id = PlayId(self.next_play);
        self.playing = Some(id);
        id
    }
}
