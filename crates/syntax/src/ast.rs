//! The abstract syntax tree. Every node carries the span of the source it came from.

use crate::Span;

/// A name as written in the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

/// A string literal (escapes resolved) with its span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Str {
    pub value: String,
    pub span: Span,
}

/// A duration literal such as `5s`, `500ms`, `2min`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Duration {
    pub ms: u64,
    pub span: Span,
}

#[derive(Debug, Clone, Default)]
pub struct File {
    pub items: Vec<Item>,
}

#[derive(Debug, Clone)]
pub enum Item {
    Import(Str),
    Languages(Vec<Ident>),
    Catalogue(Str),
    Entry { number: Str, target: Ident },
    Var { name: Ident, ty: Option<(Type, Span)>, init: Option<Expr> },
    Service(ServiceDecl),
    Hours(HoursDecl),
    Anywhere { bindings: Vec<KeyBinding>, span: Span },
    Step { name: Ident, body: Block },
    Menu(MenuDecl),
    Sub(SubDecl),
    /// An item that failed to parse. Its name, when the header was readable, is
    /// still declared so that references to it do not cascade into more errors.
    Broken { kind: &'static str, name: Option<Ident>, span: Span },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
}

#[derive(Debug, Clone)]
pub struct Param {
    pub name: Ident,
    pub ty: Type,
    pub ty_span: Span,
}

#[derive(Debug, Clone)]
pub struct ServiceDecl {
    pub name: Ident,
    pub params: Vec<Param>,
    pub variants: Vec<Variant>,
}

#[derive(Debug, Clone)]
pub struct Variant {
    pub name: Ident,
    pub fields: Vec<Param>,
}

#[derive(Debug, Clone)]
pub struct HoursDecl {
    pub name: Ident,
    pub lines: Vec<HoursLine>,
}

#[derive(Debug, Clone)]
pub enum HoursLine {
    Zone(Str),
    /// Days (0 = Monday … 6 = Sunday) and opening ranges in minutes since midnight.
    Days { days: Vec<u8>, ranges: Vec<(u16, u16)>, span: Span },
    Holidays(Str),
    MakeupDays { open: bool, span: Span },
}

#[derive(Debug, Clone)]
pub struct SubDecl {
    pub name: Ident,
    pub params: Vec<Param>,
    pub ret: Option<(Type, Span)>,
    pub body: Block,
}

#[derive(Debug, Clone)]
pub struct MenuDecl {
    pub name: Ident,
    pub options: Vec<Opt>,
    pub span: Span,
}

/// A block of statements with the span of its braces.
#[derive(Debug, Clone, Default)]
pub struct Block {
    pub stmts: Vec<Stmt>,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub struct Stmt {
    pub kind: StmtKind,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

#[derive(Debug, Clone)]
pub enum StmtKind {
    Play(Ident),
    Say(SayKind, Expr),
    Set(Ident, Expr),
    If { arms: Vec<(Expr, Block)>, otherwise: Option<Block> },
    Goto(Ident),
    Back,
    Repeat,
    Run { sub: Ident, args: Vec<Expr>, into: Option<Ident> },
    Return(Option<Expr>),
    Collect { var: Ident, options: Vec<Opt> },
    Request { service: Ident, args: Vec<Expr>, bind: Option<Ident>, timeout: Option<Duration>, hold: Option<Ident>, outcomes: Vec<Outcome> },
    Enqueue { queue: Ident, priority: Option<Expr>, max_wait: Option<Duration>, outcomes: Vec<Outcome> },
    Dial { agent: Expr, timeout: Option<Duration>, outcomes: Vec<Outcome> },
    Record { category: Str, max: Option<Duration>, outcomes: Vec<Outcome> },
    Transfer(Str),
    Hangup,
    Language(Ident),
    Flush,
    /// A statement that failed to parse (already reported).
    Broken,
}

/// `NAME -> target` or `NAME { ... }` inside a request/enqueue/dial/record block.
/// `name` is `None` for `else`.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub name: Option<Ident>,
    pub span: Span,
    pub body: Block,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandlerKind {
    Timeout,
    Invalid,
    Exhausted,
}

impl HandlerKind {
    pub fn name(self) -> &'static str {
        match self {
            HandlerKind::Timeout => "timeout",
            HandlerKind::Invalid => "invalid",
            HandlerKind::Exhausted => "exhausted",
        }
    }
}

#[derive(Debug, Clone)]
pub struct KeyBinding {
    pub key: char,
    pub key_span: Span,
    pub body: Block,
}

/// One option line inside a `menu { }` or `collect { }`.
#[derive(Debug, Clone)]
pub struct Opt {
    pub kind: OptKind,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub enum OptKind {
    Prompt(Ident),
    Reprompt(Ident),
    Timeout(Duration),
    InterKey(Duration),
    Retries(u32),
    BargeIn(bool),
    Length(u32, u32),
    Terminator(char),
    Secret,
    Decimal,
    Pattern(Vec<Str>),
    Range(String, String),
    /// The input is a date typed as YYYYMMDD.
    Date,
    /// A regular expression the whole input must match.
    Matches(Str),
    /// Read the input back with this prompt, as this kind (`as money`).
    Confirm(Ident, Option<Ident>),
    /// A value read out in the prompt's place among the `prompt` lines.
    Say(SayKind, Expr),
    Key(KeyBinding),
    On(HandlerKind, Block),
    /// An option line that failed to parse (already reported).
    Broken,
}

impl OptKind {
    /// The option's keyword, for diagnostics.
    pub fn keyword(&self) -> &'static str {
        match self {
            OptKind::Prompt(_) => "prompt",
            OptKind::Reprompt(_) => "reprompt",
            OptKind::Timeout(_) => "timeout",
            OptKind::InterKey(_) => "inter-key",
            OptKind::Retries(_) => "retries",
            OptKind::BargeIn(_) => "barge-in",
            OptKind::Length(..) => "length",
            OptKind::Terminator(_) => "terminator",
            OptKind::Secret => "secret",
            OptKind::Decimal => "decimal",
            OptKind::Pattern(_) => "pattern",
            OptKind::Range(..) => "range",
            OptKind::Date => "date",
            OptKind::Matches(_) => "matches",
            OptKind::Confirm(..) => "confirm",
            OptKind::Say(..) => "say",
            OptKind::Key(_) => "key",
            OptKind::On(..) => "on",
            OptKind::Broken => "?",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnOp {
    Neg,
    Not,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Or => "or",
            BinOp::And => "and",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
        }
    }
}

#[derive(Debug, Clone)]
pub enum ExprKind {
    /// A decimal literal, kept as written so no precision is lost.
    Num(String),
    Str(String),
    Bool(bool),
    /// `name` or `name.field`.
    Path(Ident, Option<Ident>),
    Call(Ident, Vec<Expr>),
    Unary(UnOp, Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
}
