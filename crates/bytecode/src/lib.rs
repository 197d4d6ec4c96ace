//! The compiled form of a flow: a [`Program`], its instruction set, its binary file
//! format, the verifier every load runs, and the disassembler.
//!
//! A `Program` is immutable once built and is shared by every call that runs it.
//! This crate performs no I/O: it turns bytes into a verified program and back.
//! The format is documented in `docs/bytecode.md`.

pub mod contract;
mod disasm;
mod format;
mod value;
mod verify;

use serde::{Deserialize, Serialize};

pub use disasm::disassemble;
pub use format::{decode, encode, DecodeError, FORMAT_VERSION, MAGIC};
pub use value::Value;
pub use verify::{verify, VerifyError};

/// One instruction. Operands index the program's tables; the verifier checks every
/// index and jump target before a program is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Instr {
    /// Push `consts[k]`.
    Const(u32),
    /// Push the value of slot `s`.
    Load(u32),
    /// Pop into slot `s`.
    Store(u32),
    /// Discard the top of the stack.
    Pop,
    Neg,
    Not,
    /// Pop b, pop a, push `a op b`.
    Bin(BinOp),
    /// Pop `argc` arguments, push the builtin's result.
    Builtin(Builtin, u8),
    /// Push whether `hours[h]` is open now.
    IsOpen(u32),
    Jump(u32),
    /// Pop a bool; jump when false.
    JumpIfNot(u32),
    /// Pop a value and jump to the matching case of `tables[t]`, else its default.
    Switch(u32),
    /// Call sub-flow `subs[s]`: push the return address, jump to its entry.
    Call(u32),
    /// Return from a sub-flow.
    Ret,
    /// Entering node `nodes[n]` (a step or a menu): reported to the host; menus are
    /// remembered for `back`.
    Node(u32),
    /// Go back to the previous menu.
    Back,
    /// Play prompt `prompts[p]` in the current language.
    Play(u32),
    /// Pop a value and speak it.
    Say(SayKind),
    /// Pop the attempt number, run collection `collects[c]`, store the input in the
    /// collection's slot and push its status: 0 ok, 1 no input, 2 invalid.
    Collect(u32),
    /// Pop the operation's arguments, hand `ops[o]` to the host, wait for its
    /// outcome, store the outcome's fields and push the outcome's index.
    Await(u32),
    /// Switch the call's language to `languages[l]`.
    SetLanguage(u32),
    /// Drop keys typed ahead.
    Flush,
    /// Hand the call to the number in `consts[k]` (always a constant: a target is
    /// never taken from caller input). Ends the flow.
    Transfer(u32),
    /// End the call.
    Hangup(HangupReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Builtin {
    /// `len(text)`: number of characters.
    Len,
    /// `round(number, places)`: half away from zero.
    Round,
    /// `text(value)`: the value as text.
    Text,
    /// `starts_with(text, prefix)`.
    StartsWith,
}

impl Builtin {
    pub fn name(self) -> &'static str {
        match self {
            Builtin::Len => "len",
            Builtin::Round => "round",
            Builtin::Text => "text",
            Builtin::StartsWith => "starts_with",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SayKind {
    Number,
    Digits,
    /// Digits as a telephone or account number is read: 幺 for 1 in Mandarin.
    Phone,
    Money,
    Percent,
    Date,
    Time,
}

impl SayKind {
    pub fn name(self) -> &'static str {
        match self {
            SayKind::Number => "number",
            SayKind::Digits => "digits",
            SayKind::Phone => "phone",
            SayKind::Money => "money",
            SayKind::Percent => "percent",
            SayKind::Date => "date",
            SayKind::Time => "time",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HangupReason {
    /// The flow said `hangup`.
    Normal,
    /// A menu or collection ran out of retries with no handler.
    RetriesExhausted,
    /// A runtime fault (a bug in the flow or the program) ended the call.
    Fault,
}

impl HangupReason {
    pub fn name(self) -> &'static str {
        match self {
            HangupReason::Normal => "normal",
            HangupReason::RetriesExhausted => "retries_exhausted",
            HangupReason::Fault => "fault",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Type {
    Text,
    Number,
    Bool,
}

impl Type {
    pub fn name(self) -> &'static str {
        match self {
            Type::Text => "text",
            Type::Number => "number",
            Type::Bool => "bool",
        }
    }

    /// The value a slot of this type holds before anything is stored in it.
    pub fn zero(self) -> Value {
        match self {
            Type::Text => Value::text(""),
            Type::Number => Value::Num(Default::default()),
            Type::Bool => Value::Bool(false),
        }
    }
}

/// A compiled flow project: every entry number, node, prompt and table it needs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Program {
    /// Languages the flow speaks; the first is the default.
    pub languages: Vec<String>,
    /// Dialed numbers and where their calls start.
    pub entries: Vec<Entry>,
    pub consts: Vec<Value>,
    pub code: Vec<Instr>,
    pub slots: Vec<Slot>,
    pub nodes: Vec<Node>,
    pub subs: Vec<Sub>,
    pub prompts: Vec<Prompt>,
    pub collects: Vec<CollectSpec>,
    pub ops: Vec<OpSpec>,
    pub tables: Vec<SwitchTable>,
    pub hours: Vec<Hours>,
    /// Source positions per instruction; optional (stripped programs lack it).
    pub spans: Option<SpanTable>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub number: String,
    pub pc: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    pub name: String,
    pub ty: Type,
    /// Holds a secret (a PIN, a password): never logged, echoed or stored.
    pub secret: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeKind {
    Step,
    Menu,
    Sub,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    pub kind: NodeKind,
    /// The node's `Node` marker, where `back` lands.
    pub pc: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sub {
    pub name: String,
    pub pc: u32,
}

/// A prompt from the catalogue: its text per language (indexed like
/// `Program::languages`) and the audio file that speaks it, if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prompt {
    pub id: String,
    pub text: Vec<String>,
    pub audio: Vec<Option<String>>,
}

/// How one `collect` (or one menu's key) gathers digits. See `docs/language.md`,
/// "Input timing".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectSpec {
    /// Where the input goes.
    pub slot: u32,
    pub prompts: Vec<u32>,
    /// Played instead of `prompts` on a retry; empty means replay `prompts`.
    pub reprompts: Vec<u32>,
    pub min_digits: u32,
    pub max_digits: u32,
    pub terminator: Option<char>,
    pub first_timeout_ms: u64,
    pub inter_key_timeout_ms: u64,
    pub barge_in: bool,
    pub secret: bool,
    /// `*` types the decimal point and the input is a number.
    pub decimal: bool,
    /// Digit patterns (`X` any digit); empty means any digits.
    pub patterns: Vec<String>,
    /// Inclusive numeric range the input must fall in.
    pub range: Option<(Value, Value)>,
    /// The input is a date typed as YYYYMMDD: a day the calendar has.
    pub date: bool,
    /// A regular expression (regex-lite syntax) the whole input must match.
    pub matches: Option<String>,
    /// Values read out among `prompts` (before the prompt at `at`; at the end
    /// when `at` is the number of prompts), whenever `prompts` play.
    pub reads: Vec<PromptRead>,
    /// Keys accepted (menus); empty means digits (and `*` when decimal).
    pub keys: String,
}

/// A value read out among a menu's or collection's prompts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptRead {
    pub at: u32,
    pub kind: SayKind,
    /// Where the value is: set just before the menu or collection starts.
    pub slot: u32,
}

/// An operation the host carries out and answers with a named outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpSpec {
    pub kind: OpKind,
    /// Names of the argument values popped from the stack, in order.
    pub params: Vec<String>,
    /// Which arguments carry secrets.
    pub secret_params: Vec<bool>,
    /// Possible outcomes; the VM pushes the index of the one that happened.
    /// An outcome the host names that is not here counts as `failed`.
    pub outcomes: Vec<OutcomeSpec>,
    /// How long the VM waits before it gives the `timeout` outcome; 0 = forever.
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpKind {
    /// A named service; `hold` plays while the answer is late.
    Request { service: String, hold: Option<u32> },
    Enqueue { queue: String },
    DialAgent,
    Record { category: String, max_ms: u64 },
}

impl OpKind {
    pub fn name(&self) -> &'static str {
        match self {
            OpKind::Request { .. } => "request",
            OpKind::Enqueue { .. } => "enqueue",
            OpKind::DialAgent => "dial_agent",
            OpKind::Record { .. } => "record",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeSpec {
    pub name: String,
    /// The outcome's fields, with their types and the slots they are stored in.
    pub fields: Vec<(String, Type, u32)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchTable {
    pub cases: Vec<(Value, u32)>,
    pub default: u32,
}

/// Opening hours in a named time zone, with a holiday calendar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hours {
    pub name: String,
    /// IANA time zone name, e.g. `Asia/Shanghai`.
    pub zone: String,
    /// Opening ranges per weekday (0 = Monday), minutes since local midnight.
    pub weekly: [Vec<(u16, u16)>; 7],
    /// Closed all day, as `yyyymmdd`, sorted.
    pub holidays: Vec<u32>,
    /// Make-up working days (调休) as `yyyymmdd`, sorted; open with Monday's hours.
    pub makeup_days: Vec<u32>,
}

/// Per-instruction source lines, for the disassembler and fault reports.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SpanTable {
    pub files: Vec<String>,
    /// For each instruction: (index into `files`, 1-based line).
    pub lines: Vec<(u32, u32)>,
}

impl Program {
    pub fn language_index(&self, lang: &str) -> Option<usize> {
        self.languages.iter().position(|l| l == lang)
    }

    /// The source line of an instruction, when the span table is present.
    pub fn line_of(&self, pc: usize) -> Option<(&str, u32)> {
        let t = self.spans.as_ref()?;
        let (f, l) = *t.lines.get(pc)?;
        Some((t.files.get(f as usize)?.as_str(), l))
    }
}
