//! Type-checks statements and expressions while lowering them to bytecode.

use std::collections::HashMap;

use ivr_bytecode::{
    self as bc, BinOp as Op, CollectSpec, Entry, HangupReason, Instr, OpKind, OpSpec, OutcomeSpec, Program,
    SpanTable, SwitchTable, Value,
};
use ivr_syntax::ast::*;
use ivr_syntax::{closest, Code, Diagnostic, Span};
use rust_decimal::Decimal;

use crate::load::Loaded;
use crate::resolve::{NodeKind, Symbols, VarKind};

const DEFAULT_TIMEOUT_MS: u64 = 5_000;
const DEFAULT_INTER_KEY_MS: u64 = 3_000;
const DEFAULT_RETRIES: u32 = 2;
const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 5_000;
const DEFAULT_RING_MS: u64 = 20_000;
const DEFAULT_RECORD_MS: u64 = 60_000;
const MAX_DIGITS: u32 = 64;

pub const REQUEST_OUTCOMES: &[&str] = &["timeout", "failed"];
/// The outcomes of hand-offs and recordings: the runtime's, from the one contract.
pub const ENQUEUE_OUTCOMES: &[&str] = &bc::contract::ENQUEUE_NAMES;
pub const DIAL_OUTCOMES: &[&str] = &bc::contract::DIAL_NAMES;
pub const RECORD_OUTCOMES: &[&str] = &bc::contract::RECORD_NAMES;

fn bc_type(t: Type) -> bc::Type {
    match t {
        Type::Text => bc::Type::Text,
        Type::Number => bc::Type::Number,
        Type::Bool => bc::Type::Bool,
    }
}

fn type_error(span: Span, expected: &str, found: Type) -> Diagnostic {
    Diagnostic::new(Code::TypeMismatch, format!("expected {expected}, found {}", found.name()), span, format!("this is {}", found.name()))
}

fn bc_say_kind(kind: SayKind) -> bc::SayKind {
    match kind {
        SayKind::Number => bc::SayKind::Number,
        SayKind::Digits => bc::SayKind::Digits,
        SayKind::Phone => bc::SayKind::Phone,
        SayKind::Money => bc::SayKind::Money,
        SayKind::Percent => bc::SayKind::Percent,
        SayKind::Date => bc::SayKind::Date,
        SayKind::Time => bc::SayKind::Time,
    }
}

/// Whether a computed sum can carry fractions of a fen: a `*` or `/`
/// outside a `round(…, 0|1|2)`.
fn may_have_fractions_of_a_fen(e: &Expr) -> bool {
    match &e.kind {
        ExprKind::Call(f, args) if f.name == "round" => !matches!(args.get(1).map(|a| &a.kind), Some(ExprKind::Num(n)) if n.parse::<u32>().is_ok_and(|n| n <= 2)),
        ExprKind::Binary(BinOp::Mul | BinOp::Div, ..) => true,
        ExprKind::Binary(_, a, b) => may_have_fractions_of_a_fen(a) || may_have_fractions_of_a_fen(b),
        ExprKind::Unary(_, a) => may_have_fractions_of_a_fen(a),
        _ => false,
    }
}

/// The value of a literal (`"2026-10-01"`, `12.5`, `-3`), as the VM would hold it.
fn literal_value(e: &Expr) -> Option<Value> {
    match &e.kind {
        ExprKind::Str(s) => Some(Value::text(s)),
        ExprKind::Num(n) => n.parse::<Decimal>().ok().map(Value::Num),
        ExprKind::Unary(UnOp::Neg, inner) => match literal_value(inner)? {
            Value::Num(d) => Some(Value::Num(-d)),
            _ => None,
        },
        _ => None,
    }
}

/// A value as written in a flow.
fn quoted(v: &Value) -> String {
    match v {
        Value::Text(t) => format!("{t:?}"),
        other => other.to_string(),
    }
}

/// What kind of name a statement needs.
#[derive(Clone, Copy)]
enum Wanted {
    Node,
    Sub,
    Variable,
}

impl Wanted {
    fn name(self) -> &'static str {
        match self {
            Wanted::Node => "step or menu",
            Wanted::Sub => "sub-flow",
            Wanted::Variable => "variable",
        }
    }
}

#[derive(Clone, Copy)]
struct MenuCtx {
    start: u32,
}

#[derive(Clone, Default)]
struct Ctx<'a> {
    sub: Option<&'a SubDecl>,
    menu: Option<MenuCtx>,
    /// Sub-flow parameters: name → (slot, type).
    locals: HashMap<String, (u32, Type)>,
}

struct Lowerer<'a, 'd> {
    loaded: &'a Loaded,
    sym: &'a Symbols<'a>,
    diags: &'d mut Vec<Diagnostic>,
    p: Program,
    slots: HashMap<String, u32>,
    prompts: HashMap<String, Option<u32>>,
    consts: HashMap<Value, u32>,
    node_fixups: Vec<(usize, usize)>,
    node_pcs: Vec<u32>,
    sub_index: HashMap<String, u32>,
    line: (u32, u32),
    lines: Vec<(u32, u32)>,
    file_index: HashMap<u32, u32>,
}

/// Catalogue prompts a host plays during hand-offs, by id: `hold_music`;
/// `queue_next` (position 1); `queue_position` + the callers ahead;
/// `queue_wait` + minutes + `queue_minutes`; `queue_hold` (periodic).
pub const HANDOFF_PROMPTS: &[&str] = &bc::contract::prompts::ALL;

pub fn lower(loaded: &Loaded, sym: &Symbols, diags: &mut Vec<Diagnostic>) -> Option<Program> {
    let mut l = Lowerer {
        loaded,
        sym,
        diags,
        p: Program { languages: sym.languages.clone(), ..Program::default() },
        slots: HashMap::new(),
        prompts: HashMap::new(),
        consts: HashMap::new(),
        node_fixups: Vec::new(),
        node_pcs: vec![0; sym.nodes.len()],
        sub_index: HashMap::new(),
        line: (0, 0),
        lines: Vec::new(),
        file_index: HashMap::new(),
    };
    l.p.hours = sym.hours.clone();
    l.declare_slots();
    let mut subs: Vec<&SubDecl> = sym.subs.values().copied().collect();
    subs.sort_by_key(|s| (s.name.span.file, s.name.span.start));
    for (i, s) in subs.iter().enumerate() {
        l.sub_index.insert(s.name.name.clone(), i as u32);
        l.p.subs.push(bc::Sub { name: s.name.name.clone(), pc: 0 });
    }
    if sym.entries.is_empty() && sym.broken.is_empty() && !loaded.files.is_empty() {
        let span = loaded.files.first().map_or(Span::default(), |(f, _)| Span::new(*f, 0, 0));
        l.diags.push(
            Diagnostic::new(Code::NoEntry, "the project answers no number", span, "no `entry` in this project")
                .with_help("bind a dialed number to a step or menu, e.g. `entry 962588 -> welcome`"),
        );
    }
    for &(number, target) in &sym.entries {
        l.at(number.span);
        let pc = l.here();
        l.p.entries.push(Entry { number: number.value.clone(), pc });
        for name in &sym.var_order {
            let info = &sym.vars[name];
            if let Some(init) = &info.init {
                l.at(init.span);
                if let (Some((t, _)), VarKind::Value(want)) = (l.expr(init, &Ctx::default()), &info.kind) {
                    if t != *want {
                        l.diags.push(type_error(init.span, want.name(), t));
                    }
                }
                let slot = l.slots[name];
                l.emit(Instr::Store(slot));
            }
        }
        l.at(target.span);
        l.goto(target);
    }
    for (i, n) in sym.nodes.iter().enumerate() {
        l.at(n.name.span);
        l.node_pcs[i] = l.here();
        l.p.nodes.push(bc::Node {
            name: n.name.name.clone(),
            kind: if n.kind == NodeKind::Menu { bc::NodeKind::Menu } else { bc::NodeKind::Step },
            pc: l.here(),
        });
        l.emit(Instr::Node(i as u32));
        match (n.step, n.menu) {
            (Some(body), _) => {
                l.block(body, &Ctx::default());
                // Unreachable in a checked flow (dead ends are errors); a guard, not a path.
                l.emit(Instr::Hangup(HangupReason::Fault));
            }
            (_, Some(m)) => l.menu(m),
            _ => {}
        }
    }
    for (i, s) in subs.iter().enumerate() {
        l.at(s.name.span);
        l.p.subs[i].pc = l.here();
        let mut ctx = Ctx { sub: Some(s), ..Ctx::default() };
        for prm in &s.params {
            let slot = l.hidden_slot(&format!("{}.{}", s.name.name, prm.name.name), bc_type(prm.ty), false);
            ctx.locals.insert(prm.name.name.clone(), (slot, prm.ty));
        }
        for prm in s.params.iter().rev() {
            let slot = ctx.locals[&prm.name.name].0;
            l.emit(Instr::Store(slot));
        }
        l.block(&s.body, &ctx);
        l.emit(Instr::Ret);
    }
    for (pc, node) in std::mem::take(&mut l.node_fixups) {
        l.p.code[pc] = Instr::Jump(l.node_pcs[node]);
    }
    let mut files: Vec<(u32, u32)> = l.file_index.iter().map(|(a, b)| (*a, *b)).collect();
    files.sort_by_key(|(_, i)| *i);
    l.p.spans = Some(SpanTable {
        files: files.iter().map(|(f, _)| loaded.sources.get(ivr_syntax::FileId(*f)).name.clone()).collect(),
        lines: std::mem::take(&mut l.lines),
    });
    if l.p.code.is_empty() {
        return None;
    }
    Some(l.p)
}

impl<'a, 'd> Lowerer<'a, 'd> {
    fn here(&self) -> u32 {
        self.p.code.len() as u32
    }

    fn at(&mut self, span: Span) {
        let file = span.file.0;
        let next = self.file_index.len() as u32;
        let fi = *self.file_index.entry(file).or_insert(next);
        let line = if (file as usize) < self.loaded.sources.files().count() {
            self.loaded.sources.get(span.file).line_col(span.start).0
        } else {
            0
        };
        self.line = (fi, line);
    }

    fn emit(&mut self, ins: Instr) -> usize {
        self.p.code.push(ins);
        self.lines.push(self.line);
        self.p.code.len() - 1
    }

    fn patch(&mut self, at: usize, target: u32) {
        self.p.code[at] = match self.p.code[at] {
            Instr::Jump(_) => Instr::Jump(target),
            Instr::JumpIfNot(_) => Instr::JumpIfNot(target),
            other => other,
        };
    }

    fn konst(&mut self, v: Value) -> u32 {
        if let Some(&k) = self.consts.get(&v) {
            return k;
        }
        let k = self.p.consts.len() as u32;
        self.p.consts.push(v.clone());
        self.consts.insert(v, k);
        k
    }

    fn push_num(&mut self, n: u32) {
        let k = self.konst(Value::Num(n.into()));
        self.emit(Instr::Const(k));
    }

    /// Emits `e` for `say KIND`, with its checks (a secret is never spoken,
    /// the type fits the reading, a literal can be read, money is rounded).
    fn say_value(&mut self, kind: SayKind, e: &Expr, ctx: &Ctx) -> bc::SayKind {
        if let Some((t, secret)) = self.expr(e, ctx) {
            if secret {
                self.diags.push(
                    Diagnostic::new(Code::SecretExposed, "a secret would be spoken back to the caller", e.span, "secret input")
                        .with_help("secret fields (PINs, passwords) are never echoed; remove this `say`"),
                );
            }
            let ok = match kind {
                SayKind::Number | SayKind::Money | SayKind::Percent => t == Type::Number,
                SayKind::Digits | SayKind::Phone => t != Type::Bool,
                SayKind::Date | SayKind::Time => t == Type::Text,
            };
            if !ok {
                let want = match kind {
                    SayKind::Digits | SayKind::Phone => "text or a number",
                    SayKind::Date | SayKind::Time => "text",
                    _ => "number",
                };
                self.diags.push(type_error(e.span, want, t).with_help(format!("`say {}` speaks {want}", kind.name())));
            } else if let Some(value) = literal_value(e) {
                self.speakable(kind, &value, e.span);
            } else if kind == SayKind::Money && may_have_fractions_of_a_fen(e) {
                self.diags.push(
                    Diagnostic::new(Code::MoneyRounded, "this sum may have more than two decimals: `say money` would round it to the fen", e.span, "computed with * or /")
                        .with_help("say how it is rounded: `say money round(…, 2)` (half away from zero), so the caller hears what the records keep"),
                );
            }
        }
        bc_say_kind(kind)
    }

    /// The `say` lines of a menu or collection: each value computed into a
    /// slot of its own now (so `repeat`, which comes back here, reads it
    /// afresh), and read out among the prompts where it stands.
    fn prompt_reads(&mut self, options: &[Opt], owner: &str, ctx: &Ctx) -> Vec<bc::PromptRead> {
        let mut reads = Vec::new();
        let mut at = 0u32;
        for o in options {
            match &o.kind {
                OptKind::Prompt(_) => at += 1,
                OptKind::Say(kind, e) => {
                    let k = self.say_value(*kind, e, ctx);
                    let slot = self.hidden_slot(&format!("{owner}.say{}", reads.len()), bc::Type::Text, false);
                    self.emit(Instr::Store(slot));
                    reads.push(bc::PromptRead { at, kind: k, slot });
                }
                _ => {}
            }
        }
        reads
    }

    fn hidden_slot(&mut self, name: &str, ty: bc::Type, secret: bool) -> u32 {
        if let Some(&s) = self.slots.get(name) {
            return s;
        }
        let s = self.p.slots.len() as u32;
        self.p.slots.push(bc::Slot { name: name.to_string(), ty, secret });
        self.slots.insert(name.to_string(), s);
        s
    }

    /// A slot for a name that could not be bound (it names something else, or
    /// holds another kind of value): resolving has reported why, so no program
    /// is produced, but lowering carries on to find the flow's other mistakes.
    fn unbound_slot(&mut self, name: &Ident) -> u32 {
        if !self.diags.iter().any(|d| d.severity == ivr_syntax::Severity::Error) {
            self.diags.push(Diagnostic::new(Code::InternalError, format!("internal error: `{}` has no storage", name.name), name.span, "here"));
        }
        self.hidden_slot(&format!("{}!unbound", name.name), bc::Type::Text, false)
    }

    fn declare_slots(&mut self) {
        for name in &self.sym.var_order {
            let info = &self.sym.vars[name];
            match &info.kind {
                VarKind::Value(t) => {
                    self.hidden_slot(name, bc_type(*t), info.secret);
                }
                VarKind::Result(service) => {
                    if let Some(svc) = self.sym.services.get(service) {
                        for v in &svc.variants {
                            for f in &v.fields {
                                self.hidden_slot(&format!("{name}.{}", f.name.name), bc_type(f.ty), false);
                            }
                        }
                    }
                }
            }
        }
    }

    fn goto(&mut self, target: &Ident) {
        match self.sym.node_index.get(&target.name) {
            Some(&n) => {
                let at = self.emit(Instr::Jump(0));
                self.node_fixups.push((at, n));
            }
            None => {
                self.undefined(target, Wanted::Node, &Ctx::default());
                self.emit(Instr::Hangup(HangupReason::Fault));
            }
        }
    }

    fn undefined(&mut self, name: &Ident, wanted: Wanted, ctx: &Ctx) {
        self.undefined_or(name, wanted, ctx, None);
    }

    /// Reports a name that is not a `wanted`: says what it is if it names
    /// something else, else suggests the closest name of the right kind, else
    /// gives `fallback` as help.
    fn undefined_or(&mut self, name: &Ident, wanted: Wanted, ctx: &Ctx, fallback: Option<String>) {
        if self.sym.broken.contains(&name.name) {
            return;
        }
        let n = &name.name;
        let node = self.sym.node_index.get(n).map(|&i| if self.sym.nodes[i].kind == NodeKind::Menu { "a menu" } else { "a step" });
        let other = match wanted {
            Wanted::Node if self.sym.subs.contains_key(n) => Some(format!("`{n}` is a sub-flow: run it with `run {n}(…)`")),
            Wanted::Node if self.sym.services.contains_key(n) => Some(format!("`{n}` is a service: call it with `request {n}(…) {{ … }}`")),
            Wanted::Node if self.sym.vars.contains_key(n) || ctx.locals.contains_key(n) => Some(format!("`{n}` is a variable, not a step or menu")),
            Wanted::Node if self.sym.hours_index.contains_key(n) => Some(format!("`{n}` are opening hours: `if open({n}) {{ goto … }}` goes by them")),
            Wanted::Sub => match node {
                Some(kind) => Some(format!("`{n}` is {kind}: continue there with `goto {n}`")),
                None if self.sym.services.contains_key(n) => Some(format!("`{n}` is a service: call it with `request {n}(…) {{ … }}`")),
                None => None,
            },
            Wanted::Variable => match node {
                Some(kind) => Some(format!("`{n}` is {kind}, not a variable")),
                None if self.sym.subs.contains_key(n) => Some(format!("`{n}` is a sub-flow: `run {n}(…) into VARIABLE` stores its result")),
                None if self.sym.hours_index.contains_key(n) => Some(format!("`{n}` are opening hours: `open({n})` says whether they are open now")),
                None if self.sym.services.contains_key(n) => {
                    Some(format!("`{n}` is a service: after `request {n}(…)` its result's fields are read as `{n}.field`"))
                }
                None => None,
            },
            _ => None,
        };
        let mut candidates: Vec<&str> = match wanted {
            Wanted::Node => self.sym.node_index.keys().map(String::as_str).collect(),
            Wanted::Sub => self.sym.subs.keys().map(String::as_str).collect(),
            Wanted::Variable => self.sym.vars.keys().chain(ctx.locals.keys()).map(String::as_str).collect(),
        };
        candidates.sort();
        let mut d = Diagnostic::new(Code::UndefinedName, format!("no {} named `{n}`", wanted.name()), name.span, "not defined");
        if let Some(other) = other {
            d = d.with_help(other);
        } else if let Some(best) = closest(n, &candidates) {
            d = d.with_help(format!("did you mean `{best}`?"));
        } else if let Some(help) = fallback {
            d = d.with_help(help);
        }
        self.diags.push(d);
    }

    /// The program index of a catalogue prompt, reporting unknown ids and missing
    /// languages once each.
    fn prompt(&mut self, id: &Ident) -> Option<u32> {
        if let Some(&known) = self.prompts.get(&id.name) {
            if known.is_none() {
                self.unknown_prompt(id);
            }
            return known;
        }
        let cat = self.loaded.catalogue.as_ref();
        let Some((def, def_span)) = cat.and_then(|c| c.prompts.get(&id.name)) else {
            self.prompts.insert(id.name.clone(), None);
            self.unknown_prompt(id);
            return None;
        };
        let mut text = Vec::new();
        let mut audio = Vec::new();
        for lang in &self.sym.languages {
            match def.text.get(lang) {
                Some(t) => text.push(t.clone()),
                None => {
                    self.diags.push(
                        Diagnostic::new(Code::MissingPromptText, format!("prompt `{}` has no {lang} text", id.name), *def_span, format!("no `{lang} = \"…\"` here"))
                            .with_related(id.span, "used here")
                            .with_help(format!("the flow speaks {}; give every prompt a text in each", self.sym.languages.join(", "))),
                    );
                    text.push(String::new());
                }
            }
            audio.push(Some(def.audio.get(lang).cloned().unwrap_or_else(|| format!("audio/{lang}/{}.wav", id.name))));
        }
        let idx = self.p.prompts.len() as u32;
        self.p.prompts.push(bc::Prompt { id: id.name.clone(), text, audio });
        self.prompts.insert(id.name.clone(), Some(idx));
        Some(idx)
    }

    /// Carries the catalogue's hand-off prompts (music on hold, queue
    /// announcements) in a program that hands callers to agents: the host
    /// plays them while the caller waits. Those the catalogue lacks are skipped.
    fn handoff_prompts(&mut self, span: Span) {
        for id in HANDOFF_PROMPTS {
            if self.loaded.catalogue.as_ref().is_some_and(|c| c.prompts.contains_key(*id)) {
                self.prompt(&Ident { name: id.to_string(), span });
            }
        }
    }

    fn unknown_prompt(&mut self, id: &Ident) {
        if self.loaded.catalogue_broken {
            return; // the catalogue's own error says why no prompt is found
        }
        let mut d = Diagnostic::new(Code::UnknownPrompt, format!("prompt `{}` is not in the catalogue", id.name), id.span, "unknown prompt");
        if let Some(c) = &self.loaded.catalogue {
            let names: Vec<&str> = c.prompts.keys().map(String::as_str).collect();
            d = match closest(&id.name, &names) {
                Some(best) => d.with_help(format!("did you mean `{best}`?")),
                None => d.with_help(format!("add `[{}]` with its text in each language to {}", id.name, self.loaded.sources.get(c.file).name)),
            };
        } else {
            d = d.with_help("declare the prompt catalogue with `prompts \"prompts.toml\"`");
        }
        self.diags.push(d);
    }

    // ------------------------------------------------------------ expressions

    /// Emits code that pushes the value of `e`; returns its type and whether it
    /// carries a secret, or `None` after reporting an error.
    fn expr(&mut self, e: &Expr, ctx: &Ctx) -> Option<(Type, bool)> {
        match &e.kind {
            ExprKind::Num(n) => {
                let d: Decimal = match n.parse() {
                    Ok(d) => d,
                    Err(_) => {
                        self.diags.push(
                            Diagnostic::new(Code::NumberTooLarge, "number out of range", e.span, "too large")
                                .with_help("numbers have at most 28 significant digits"),
                        );
                        return None;
                    }
                };
                let k = self.konst(Value::Num(d));
                self.emit(Instr::Const(k));
                Some((Type::Number, false))
            }
            ExprKind::Str(s) => {
                let k = self.konst(Value::text(s));
                self.emit(Instr::Const(k));
                Some((Type::Text, false))
            }
            ExprKind::Bool(b) => {
                let k = self.konst(Value::Bool(*b));
                self.emit(Instr::Const(k));
                Some((Type::Bool, false))
            }
            ExprKind::Path(name, None) => {
                if let Some(&(slot, t)) = ctx.locals.get(&name.name) {
                    self.emit(Instr::Load(slot));
                    return Some((t, false));
                }
                match self.sym.vars.get(&name.name).map(|v| (v.kind.clone(), v.secret)) {
                    Some((VarKind::Value(t), secret)) => {
                        let slot = self.slots[&name.name];
                        self.emit(Instr::Load(slot));
                        Some((t, secret))
                    }
                    Some((VarKind::Result(service), _)) => {
                        self.diags.push(
                            Diagnostic::new(Code::ResultAsValue, format!("`{}` holds the result of `{service}`, not a value", name.name), name.span, "a service result")
                                .with_help(format!("use one of its fields, e.g. `{}.<field>`", name.name)),
                        );
                        None
                    }
                    None => {
                        self.undefined(name, Wanted::Variable, ctx);
                        None
                    }
                }
            }
            ExprKind::Path(name, Some(field)) => {
                let result = self.sym.vars.get(&name.name).filter(|_| !ctx.locals.contains_key(&name.name)).map(|v| v.kind.clone());
                let Some(VarKind::Result(service)) = result else {
                    if self.sym.vars.contains_key(&name.name) || ctx.locals.contains_key(&name.name) {
                        self.diags.push(
                            Diagnostic::new(Code::UnknownField, format!("`{}` has no fields", name.name), field.span, "no such field")
                                .with_help("only a service result (`request … as NAME`) has fields"),
                        );
                    } else {
                        self.undefined(name, Wanted::Variable, ctx);
                    }
                    return None;
                };
                let svc = self.sym.services.get(&service)?;
                let found = svc.variants.iter().flat_map(|v| &v.fields).find(|f| f.name.name == field.name);
                match found {
                    Some(f) => {
                        let slot = self.slots[&format!("{}.{}", name.name, field.name)];
                        self.emit(Instr::Load(slot));
                        Some((f.ty, false))
                    }
                    None => {
                        let names: Vec<&str> = svc.variants.iter().flat_map(|v| &v.fields).map(|f| f.name.name.as_str()).collect();
                        let help = match closest(&field.name, &names) {
                            Some(best) => format!("did you mean `{best}`? (its fields are: {})", names.join(", ")),
                            None if names.is_empty() => format!("`{service}` results have no fields"),
                            None => format!("its fields are: {}", names.join(", ")),
                        };
                        self.diags.push(
                            Diagnostic::new(Code::UnknownField, format!("`{service}` results have no field `{}`", field.name), field.span, "no such field")
                                .with_help(help),
                        );
                        None
                    }
                }
            }
            ExprKind::Call(f, args) => self.call(f, args, e.span, ctx),
            ExprKind::Unary(op, inner) => {
                let (t, secret) = self.expr(inner, ctx)?;
                let (want, ins) = match op {
                    UnOp::Neg => (Type::Number, Instr::Neg),
                    UnOp::Not => (Type::Bool, Instr::Not),
                };
                if t != want {
                    self.diags.push(type_error(inner.span, want.name(), t));
                    return None;
                }
                self.emit(ins);
                Some((want, secret))
            }
            ExprKind::Binary(op, a, b) => {
                let ta = self.expr(a, ctx);
                let tb = self.expr(b, ctx);
                let ((ta, sa), (tb, sb)) = (ta?, tb?);
                let secret = sa || sb;
                let (bop, result) = match op {
                    BinOp::Add if ta == Type::Text && tb == Type::Text => (Op::Add, Type::Text),
                    BinOp::Add => (Op::Add, Type::Number),
                    BinOp::Sub => (Op::Sub, Type::Number),
                    BinOp::Mul => (Op::Mul, Type::Number),
                    BinOp::Div => (Op::Div, Type::Number),
                    BinOp::Eq => (Op::Eq, Type::Bool),
                    BinOp::Ne => (Op::Ne, Type::Bool),
                    BinOp::Lt => (Op::Lt, Type::Bool),
                    BinOp::Le => (Op::Le, Type::Bool),
                    BinOp::Gt => (Op::Gt, Type::Bool),
                    BinOp::Ge => (Op::Ge, Type::Bool),
                    BinOp::And => (Op::And, Type::Bool),
                    BinOp::Or => (Op::Or, Type::Bool),
                };
                let operand = match op {
                    BinOp::Add if ta == Type::Text => Some(Type::Text),
                    BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div => Some(Type::Number),
                    BinOp::And | BinOp::Or => Some(Type::Bool),
                    BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge if ta == Type::Bool => {
                        self.diags.push(type_error(a.span, "a number or text", ta));
                        return None;
                    }
                    _ => None,
                };
                let want = operand.unwrap_or(ta);
                for (t, side) in [(ta, a), (tb, b)] {
                    if t != want {
                        self.diags.push(
                            type_error(side.span, want.name(), t)
                                .with_help(format!("both sides of `{}` must be {}", op.symbol(), want.name())),
                        );
                        return None;
                    }
                }
                self.emit(Instr::Bin(bop));
                Some((result, secret))
            }
        }
    }

    fn call(&mut self, f: &Ident, args: &[Expr], span: Span, ctx: &Ctx) -> Option<(Type, bool)> {
        let (params, ret, builtin): (&[Type], Type, Option<bc::Builtin>) = match f.name.as_str() {
            "open" => {
                if args.len() != 1 {
                    self.arity(f, span, 1, args.len());
                    return None;
                }
                let ExprKind::Path(h, None) = &args[0].kind else {
                    self.diags.push(Diagnostic::new(Code::UnknownHours, "`open` takes the name of opening hours", args[0].span, "not an hours name"));
                    return None;
                };
                let Some(&i) = self.sym.hours_index.get(&h.name) else {
                    let names: Vec<&str> = self.sym.hours_index.keys().map(String::as_str).collect();
                    let mut d = Diagnostic::new(Code::UnknownHours, format!("no hours named `{}`", h.name), h.span, "not defined");
                    if let Some(best) = closest(&h.name, &names) {
                        d = d.with_help(format!("did you mean `{best}`?"));
                    } else {
                        d = d.with_help("declare them with `hours NAME { zone \"Asia/Shanghai\"  mon-fri 09:00-16:30 }`");
                    }
                    self.diags.push(d);
                    return None;
                };
                self.emit(Instr::IsOpen(i as u32));
                return Some((Type::Bool, false));
            }
            "len" => (&[Type::Text], Type::Number, Some(bc::Builtin::Len)),
            "round" => (&[Type::Number, Type::Number], Type::Number, Some(bc::Builtin::Round)),
            "starts_with" => (&[Type::Text, Type::Text], Type::Bool, Some(bc::Builtin::StartsWith)),
            "text" => (&[], Type::Text, Some(bc::Builtin::Text)),
            _ => {
                const FUNCTIONS: &[&str] = &["open", "len", "round", "starts_with", "text"];
                let mut d = Diagnostic::new(Code::UndefinedName, format!("no function named `{}`", f.name), f.span, "unknown function");
                d = if self.sym.subs.contains_key(&f.name) {
                    d.with_help(format!("`{}` is a sub-flow: call it with `run {}(…)`", f.name, f.name))
                } else if let Some(best) = closest(&f.name, FUNCTIONS) {
                    d.with_help(format!("did you mean `{best}`?"))
                } else {
                    d.with_help("the functions are open, len, round, starts_with and text")
                };
                self.diags.push(d);
                return None;
            }
        };
        let want = if f.name == "text" { 1 } else { params.len() };
        if args.len() != want {
            self.arity(f, span, want, args.len());
            return None;
        }
        let mut secret = false;
        for (i, a) in args.iter().enumerate() {
            let (t, s) = self.expr(a, ctx)?;
            secret |= s;
            if let Some(&p) = params.get(i) {
                if t != p {
                    self.diags.push(type_error(a.span, p.name(), t));
                    return None;
                }
            }
        }
        self.emit(Instr::Builtin(builtin?, args.len() as u8));
        Some((ret, secret))
    }

    fn arity(&mut self, f: &Ident, span: Span, want: usize, got: usize) {
        self.diags.push(Diagnostic::new(
            Code::WrongArgumentCount,
            format!("`{}` takes {want} argument{}, but {got} {} given", f.name, if want == 1 { "" } else { "s" }, if got == 1 { "was" } else { "were" }),
            span,
            "wrong number of arguments",
        ));
    }

    fn expect(&mut self, e: &Expr, want: Type, ctx: &Ctx) -> bool {
        match self.expr(e, ctx) {
            Some((t, _)) if t == want => true,
            Some((t, _)) => {
                self.diags.push(type_error(e.span, want.name(), t));
                false
            }
            None => false,
        }
    }

    // ------------------------------------------------------------ statements

    fn block(&mut self, b: &Block, ctx: &Ctx) {
        for s in &b.stmts {
            self.stmt(s, ctx);
        }
    }

    fn stmt(&mut self, s: &Stmt, ctx: &Ctx) {
        self.at(s.span);
        let limit = match &s.kind {
            StmtKind::Request { timeout: Some(d), .. } => Some((d, "timeout", "the request would give up before the service could answer (the default is 5s)")),
            StmtKind::Dial { timeout: Some(d), .. } => Some((d, "timeout", "the agent's phone would not ring at all (the default is 20s)")),
            StmtKind::Enqueue { max_wait: Some(d), .. } => {
                Some((d, "max-wait", "a zero `max-wait` is no limit at all: leave it out to wait without one, or give the longest wait"))
            }
            StmtKind::Record { max: Some(d), .. } => Some((d, "max", "nothing would be recorded (the default is 60s)")),
            _ => None,
        };
        if let Some((d, what, help)) = limit {
            self.zero_duration(d, what, help);
        }
        match &s.kind {
            StmtKind::Play(id) => {
                if let Some(x) = self.prompt(id) {
                    self.emit(Instr::Play(x));
                }
            }
            StmtKind::Say(kind, e) => {
                let k = self.say_value(*kind, e, ctx);
                self.emit(Instr::Say(k));
            }
            StmtKind::Set(name, e) => self.set(name, e, ctx),
            StmtKind::If { arms, otherwise } => {
                let mut ends = Vec::new();
                for (cond, body) in arms {
                    self.at(cond.span);
                    match self.expr(cond, ctx) {
                        Some((Type::Bool, secret)) => {
                            // What the caller hears next would tell whether the
                            // PIN starts with 1: secrets only go to services.
                            if secret {
                                self.diags.push(
                                    Diagnostic::new(Code::SecretExposed, "a secret would decide what the flow does next", cond.span, "secret input")
                                        .with_help("pass secret input straight to a service and branch on its answer; a branch on the secret itself gives it away"),
                                );
                            }
                        }
                        Some((t, _)) => self.diags.push(type_error(cond.span, Type::Bool.name(), t)),
                        None => {}
                    }
                    let skip = self.emit(Instr::JumpIfNot(0));
                    self.block(body, ctx);
                    ends.push(self.emit(Instr::Jump(0)));
                    let here = self.here();
                    self.patch(skip, here);
                }
                if let Some(b) = otherwise {
                    self.block(b, ctx);
                }
                let here = self.here();
                for e in ends {
                    self.patch(e, here);
                }
            }
            StmtKind::Goto(target) => self.goto(target),
            StmtKind::Back => {
                self.emit(Instr::Back);
            }
            StmtKind::Repeat => match ctx.menu {
                Some(m) => {
                    self.emit(Instr::Jump(m.start));
                }
                None => self.diags.push(
                    Diagnostic::new(Code::MisplacedStatement, "`repeat` outside a menu", s.span, "not in a menu")
                        .with_help("`repeat` replays the menu it is bound in; use `goto` to go elsewhere"),
                ),
            },
            StmtKind::Run { sub, args, into } => self.run(sub, args, into.as_ref(), s.span, ctx),
            StmtKind::Return(value) => self.ret(value.as_ref(), s.span, ctx),
            StmtKind::Collect { var, options } => self.collect(var, options, ctx),
            StmtKind::Request { service, args, bind, timeout, hold, outcomes } => {
                self.request(service, args, bind.as_ref().unwrap_or(service), *timeout, hold.as_ref(), outcomes, ctx)
            }
            StmtKind::Enqueue { queue, priority, max_wait, outcomes } => {
                let mut params = Vec::new();
                if let Some(p) = priority {
                    self.expect(p, Type::Number, ctx);
                    params.push(("priority".to_string(), false));
                }
                let kind = OpKind::Enqueue { queue: queue.name.clone() };
                self.handoff_prompts(s.span);
                self.operation(kind, params, max_wait.map_or(0, |d| d.ms), ENQUEUE_OUTCOMES, Vec::new(), outcomes, s.span, ctx);
            }
            StmtKind::Dial { agent, timeout, outcomes } => {
                let secret = match self.expr(agent, ctx) {
                    Some((Type::Bool, _)) => {
                        self.diags.push(type_error(agent.span, "a work number", Type::Bool));
                        false
                    }
                    Some((_, s)) => s,
                    None => false,
                };
                let t = timeout.map_or(DEFAULT_RING_MS, |d| d.ms);
                self.handoff_prompts(s.span);
                self.operation(OpKind::DialAgent, vec![("work_number".into(), secret)], t, DIAL_OUTCOMES, Vec::new(), outcomes, s.span, ctx);
            }
            StmtKind::Record { category, max, outcomes } => {
                let kind = OpKind::Record { category: category.value.clone(), max_ms: max.map_or(DEFAULT_RECORD_MS, |d| d.ms) };
                self.operation(kind, Vec::new(), 0, RECORD_OUTCOMES, Vec::new(), outcomes, s.span, ctx);
            }
            StmtKind::Transfer(target) => {
                let t = target.value.trim();
                // The runtime's own rule: what compiles can be dialled.
                if !bc::contract::is_transfer_target(t) {
                    self.diags.push(
                        Diagnostic::new(Code::NotDialable, format!("`{t}` is not a number to transfer to"), target.span, "not dialable")
                            .with_help("write a phone number (digits, optionally starting with +, and * or #); the server calls it through its transfer gateway"),
                    );
                }
                let k = self.konst(Value::text(t));
                self.emit(Instr::Transfer(k));
            }
            StmtKind::Hangup => {
                self.emit(Instr::Hangup(HangupReason::Normal));
            }
            StmtKind::Language(l) => match self.sym.languages.iter().position(|x| *x == l.name) {
                Some(i) => {
                    self.emit(Instr::SetLanguage(i as u32));
                }
                None => {
                    let langs: Vec<&str> = self.sym.languages.iter().map(String::as_str).collect();
                    let help = match closest(&l.name, &langs) {
                        Some(best) => format!("did you mean `{best}`? (the flow speaks {})", langs.join(", ")),
                        None => format!("the flow speaks {}; add others to `languages`", langs.join(", ")),
                    };
                    self.diags.push(Diagnostic::new(Code::UnknownLanguage, format!("the flow does not speak `{}`", l.name), l.span, "unknown language").with_help(help));
                }
            },
            StmtKind::Flush => {
                self.emit(Instr::Flush);
            }
            StmtKind::Broken => {}
        }
    }

    /// Reports a literal that `say KIND` cannot read (the caller would hear
    /// nothing): the readers are the ones the hosts speak with.
    fn speakable(&mut self, kind: SayKind, value: &Value, span: Span) {
        let Some(k) = ivr_speech::Kind::parse(kind.name()) else { return };
        let text = value.to_string();
        for lang in self.sym.languages.iter().filter_map(|l| ivr_speech::Lang::parse(l)) {
            if let Err(why) = ivr_speech::read(k, &text, lang) {
                let example = match kind {
                    SayKind::Date => "dates are read as YYYY-MM-DD, e.g. \"2026-10-01\"",
                    SayKind::Time => "times are read as HH:MM, e.g. \"09:30\"",
                    SayKind::Digits | SayKind::Phone => "digits are read from 0-9 (a leading - and a . are read too)",
                    _ => "numbers are read up to sixteen digits before the point",
                };
                self.diags.push(
                    Diagnostic::new(Code::UnspeakableLiteral, format!("`say {}` cannot read {}", kind.name(), quoted(value)), span, why.to_string())
                        .with_help(format!("the caller would hear nothing here: {example}")),
                );
                return;
            }
        }
    }

    fn set(&mut self, name: &Ident, e: &Expr, ctx: &Ctx) {
        let target = if let Some(&(slot, t)) = ctx.locals.get(&name.name) {
            Some((slot, t, false))
        } else {
            match self.sym.vars.get(&name.name) {
                Some(info) if !info.user => {
                    self.diags.push(crate::resolve::read_only(name));
                    None
                }
                Some(info) => match info.kind {
                    VarKind::Value(t) => Some((self.slots[&name.name], t, info.secret)),
                    VarKind::Result(_) => {
                        self.diags.push(Diagnostic::new(Code::ResultAsValue, format!("`{}` holds a service result", name.name), name.span, "cannot assign"));
                        None
                    }
                },
                None => {
                    self.undefined_or(name, Wanted::Variable, ctx, Some(format!("declare it first: `var {} = …`", name.name)));
                    None
                }
            }
        };
        let value = self.expr(e, ctx);
        if let (Some((slot, t, secret_var)), Some((vt, secret))) = (target, value) {
            if vt != t {
                self.diags.push(type_error(e.span, t.name(), vt).with_related(name.span, format!("`{}` holds {}", name.name, t.name())));
            }
            if secret && !secret_var {
                self.diags.push(
                    Diagnostic::new(Code::SecretExposed, "a secret would be copied into an ordinary variable", e.span, "secret input")
                        .with_help("pass secret input straight to a service; it must not be stored where it could be logged"),
                );
            }
            self.emit(Instr::Store(slot));
        } else {
            self.emit(Instr::Pop);
        }
    }

    fn run(&mut self, sub: &Ident, args: &[Expr], into: Option<&Ident>, span: Span, ctx: &Ctx) {
        let Some(decl) = self.sym.subs.get(&sub.name).copied() else {
            self.undefined(sub, Wanted::Sub, ctx);
            return;
        };
        if args.len() != decl.params.len() {
            self.arity(sub, span, decl.params.len(), args.len());
            return;
        }
        for (a, prm) in args.iter().zip(&decl.params) {
            if let Some((t, secret)) = self.expr(a, ctx) {
                if t != prm.ty {
                    self.diags.push(type_error(a.span, prm.ty.name(), t).with_related(prm.name.span, "parameter declared here"));
                }
                if secret {
                    self.diags.push(Diagnostic::new(Code::SecretExposed, "a secret would be passed to a sub-flow", a.span, "secret input")
                        .with_help("pass secret input straight to a service"));
                }
            }
        }
        self.emit(Instr::Call(self.sub_index[&sub.name]));
        match (decl.ret, into) {
            (Some((t, _)), Some(var)) => {
                let target = ctx.locals.get(&var.name).map(|&(s, t)| (s, t)).or_else(|| {
                    match self.sym.vars.get(&var.name) {
                        Some(info) if info.user => match info.kind {
                            VarKind::Value(t) => Some((self.slots[&var.name], t)),
                            _ => None,
                        },
                        _ => None,
                    }
                });
                match target {
                    Some((slot, vt)) => {
                        if vt != t {
                            self.diags.push(type_error(var.span, vt.name(), t).with_help(format!("`{}` returns {}", sub.name, t.name())));
                        }
                        self.emit(Instr::Store(slot));
                    }
                    None => {
                        match self.sym.vars.get(&var.name) {
                            Some(info) if !info.user => self.diags.push(crate::resolve::read_only(var)),
                            Some(_) => self.diags.push(
                                Diagnostic::new(Code::ResultAsValue, format!("`{}` holds a service result", var.name), var.span, "cannot store a value here")
                                    .with_help(format!("store the result of `{}` in a variable of its own", sub.name)),
                            ),
                            None => self.undefined(var, Wanted::Variable, ctx),
                        }
                        self.emit(Instr::Pop);
                    }
                }
            }
            (Some(_), None) => {
                self.emit(Instr::Pop);
            }
            (None, Some(var)) => self.diags.push(Diagnostic::new(
                Code::SubResultMismatch,
                format!("`{}` returns nothing", sub.name),
                var.span,
                "nothing to store",
            ).with_help(format!("declare a result type: `sub {}(…) -> number {{ … }}`", sub.name))),
            (None, None) => {}
        }
    }

    fn ret(&mut self, value: Option<&Expr>, span: Span, ctx: &Ctx) {
        let Some(sub) = ctx.sub else {
            self.diags.push(
                Diagnostic::new(Code::MisplacedStatement, "`return` outside a sub-flow", span, "not in a sub-flow")
                    .with_help("steps end with goto, hangup, transfer or a hand-off"),
            );
            return;
        };
        match (sub.ret, value) {
            (Some((t, _)), Some(e)) => {
                if let Some((vt, secret)) = self.expr(e, ctx) {
                    if vt != t {
                        self.diags.push(type_error(e.span, t.name(), vt));
                    }
                    if secret {
                        self.diags.push(Diagnostic::new(Code::SecretExposed, "a secret would be returned from a sub-flow", e.span, "secret input"));
                    }
                }
            }
            (Some((t, _)), None) => self.diags.push(Diagnostic::new(Code::SubResultMismatch, format!("`{}` must return {}", sub.name.name, t.name()), span, "no value returned")),
            (None, Some(e)) => self.diags.push(
                Diagnostic::new(Code::SubResultMismatch, format!("`{}` returns nothing", sub.name.name), e.span, "unexpected value")
                    .with_help(format!("declare a result type: `sub {}(…) -> number {{ … }}`", sub.name.name)),
            ),
            (None, None) => {}
        }
        self.emit(Instr::Ret);
    }

    // ------------------------------------------------------------ menus & input

    fn check_opts<'o>(&mut self, options: &'o [Opt], allowed: &[&str], context: &str) -> HashMap<&'static str, &'o Opt> {
        let mut seen: HashMap<&'static str, &'o Opt> = HashMap::new();
        for o in options {
            let kw = o.kind.keyword();
            if matches!(o.kind, OptKind::Broken) {
                continue;
            }
            if !allowed.contains(&kw) {
                self.diags.push(
                    Diagnostic::new(Code::OptionNotAllowed, format!("`{kw}` is not an option of {context}"), o.span, "not allowed here")
                        .with_help(format!("{context} takes: {}", allowed.join(", "))),
                );
                continue;
            }
            match &o.kind {
                OptKind::Timeout(d) => self.zero_duration(d, "timeout", "the caller would have no time to press a key (the default is 5s)"),
                OptKind::InterKey(d) => self.zero_duration(d, "inter-key", "input would end at the first key (the default is 3s)"),
                _ => {}
            }
            let repeatable = matches!(o.kind, OptKind::Prompt(_) | OptKind::Reprompt(_) | OptKind::Say(..) | OptKind::Key(_) | OptKind::On(..));
            if !repeatable {
                if let Some(first) = seen.get(kw) {
                    self.diags.push(
                        Diagnostic::new(Code::DuplicateOption, format!("`{kw}` is given twice"), o.span, "given again here")
                            .with_related(first.span, "first given here"),
                    );
                    continue;
                }
                seen.insert(kw, o);
            }
        }
        seen
    }

    /// Reports a duration of zero (unless it was too large to read at all).
    fn zero_duration(&mut self, d: &Duration, what: &str, help: &str) {
        let unreadable = self.diags.iter().any(|x| x.span == d.span && x.code == Code::NumberTooLarge.as_str());
        if d.ms == 0 && !unreadable {
            self.diags.push(Diagnostic::new(Code::ZeroTimeout, format!("`{what}` is zero"), d.span, "zero").with_help(help.to_string()));
        }
    }

    fn prompt_list(&mut self, options: &[Opt], re: bool) -> Vec<u32> {
        options
            .iter()
            .filter_map(|o| match (&o.kind, re) {
                (OptKind::Prompt(p), false) | (OptKind::Reprompt(p), true) => Some(p),
                _ => None,
            })
            .collect::<Vec<_>>()
            .into_iter()
            .filter_map(|p| self.prompt(p))
            .collect()
    }

    fn handler<'o>(options: &'o [Opt], kind: HandlerKind) -> Option<&'o Block> {
        options.iter().find_map(|o| match &o.kind {
            OptKind::On(k, b) if *k == kind => Some(b),
            _ => None,
        })
    }

    /// Emits the shared retry skeleton of menus and collections:
    /// `R = 0; try: load R; collect; switch status`. Returns (try pc, switch table index).
    fn collect_loop(&mut self, spec: CollectSpec, retry_slot: u32) -> (u32, usize) {
        self.push_num(0);
        self.emit(Instr::Store(retry_slot));
        let try_pc = self.here();
        let c = self.p.collects.len() as u32;
        self.p.collects.push(spec);
        self.emit(Instr::Load(retry_slot));
        self.emit(Instr::Collect(c));
        let t = self.p.tables.len();
        self.p.tables.push(SwitchTable { cases: Vec::new(), default: 0 });
        self.emit(Instr::Switch(t as u32));
        (try_pc, t)
    }

    /// Emits the timeout / invalid handlers, the retry count and the exhausted
    /// handler; fills the status cases 1 and 2 of `table`.
    fn retry_tail(&mut self, options: &[Opt], table: usize, retry_slot: u32, retries: u32, try_pc: u32, ctx: &Ctx) -> u32 {
        let mut to_retry = Vec::new();
        for (status, kind) in [(1u32, HandlerKind::Timeout), (2, HandlerKind::Invalid)] {
            let pc = self.here();
            self.p.tables[table].cases.push((Value::Num(status.into()), pc));
            if let Some(b) = Self::handler(options, kind) {
                self.block(b, ctx);
            }
            to_retry.push(self.emit(Instr::Jump(0)));
        }
        let retry_pc = self.here();
        for j in to_retry {
            self.patch(j, retry_pc);
        }
        self.p.tables[table].default = retry_pc;
        self.emit(Instr::Load(retry_slot));
        self.push_num(1);
        self.emit(Instr::Bin(Op::Add));
        self.emit(Instr::Store(retry_slot));
        self.emit(Instr::Load(retry_slot));
        self.push_num(retries);
        self.emit(Instr::Bin(Op::Gt));
        self.emit(Instr::JumpIfNot(try_pc));
        match Self::handler(options, HandlerKind::Exhausted) {
            Some(b) => {
                self.block(b, ctx);
                self.emit(Instr::Hangup(HangupReason::RetriesExhausted));
            }
            None => {
                self.emit(Instr::Hangup(HangupReason::RetriesExhausted));
            }
        }
        retry_pc
    }

    fn menu(&mut self, m: &MenuDecl) {
        const ALLOWED: &[&str] = &["prompt", "reprompt", "say", "timeout", "retries", "barge-in", "key", "on"];
        let seen = self.check_opts(&m.options, ALLOWED, "a menu");
        let start = self.here();
        let ctx = Ctx { menu: Some(MenuCtx { start }), ..Ctx::default() };
        let reads = self.prompt_reads(&m.options, &m.name.name, &ctx);
        // Local bindings override anywhere bindings with the same key.
        let mut bindings: Vec<&KeyBinding> = Vec::new();
        for o in &m.options {
            if let OptKind::Key(k) = &o.kind {
                if let Some(first) = bindings.iter().find(|b| b.key == k.key) {
                    self.diags.push(
                        Diagnostic::new(Code::DuplicateKey, format!("key {} is bound twice in menu `{}`", k.key, m.name.name), k.key_span, "bound again here")
                            .with_related(first.key_span, "first bound here")
                            .with_help("each key does one thing in a menu; remove or change one binding"),
                    );
                } else {
                    bindings.push(k);
                }
            }
        }
        if bindings.is_empty() && !m.options.iter().any(|o| matches!(o.kind, OptKind::Broken)) {
            let mut d = Diagnostic::new(Code::MenuWithoutKeys, format!("menu `{}` has no keys", m.name.name), m.name.span, "no `key` lines")
                .with_help("a menu waits for one of its keys; add `key 1 -> …` lines, or use a step to play prompts and move on");
            if !self.sym.anywhere.is_empty() {
                d = d.with_help("a menu waits for one of its keys; `anywhere` keys alone are not a menu's choices: add `key 1 -> …` lines, or use a step");
            }
            self.diags.push(d);
        }
        let local: Vec<char> = bindings.iter().map(|b| b.key).collect();
        let mut any_keys: Vec<char> = Vec::new();
        for b in &self.sym.anywhere {
            if any_keys.contains(&b.key) {
                self.diags.push(Diagnostic::new(Code::DuplicateKey, format!("key {} is bound twice in `anywhere`", b.key), b.key_span, "bound again here"));
                continue;
            }
            any_keys.push(b.key);
            if !local.contains(&b.key) {
                bindings.push(b);
            }
        }
        let keys: String = bindings.iter().map(|b| b.key).collect();
        let retries = match seen.get("retries").map(|o| &o.kind) {
            Some(OptKind::Retries(n)) => *n,
            _ => DEFAULT_RETRIES,
        };
        let key_slot = self.hidden_slot(&format!("{}.key", m.name.name), bc::Type::Text, false);
        let retry_slot = self.hidden_slot(&format!("{}.retry", m.name.name), bc::Type::Number, false);
        let spec = CollectSpec {
            slot: key_slot,
            prompts: self.prompt_list(&m.options, false),
            reprompts: self.prompt_list(&m.options, true),
            min_digits: 1,
            max_digits: 1,
            terminator: None,
            first_timeout_ms: match seen.get("timeout").map(|o| &o.kind) {
                Some(OptKind::Timeout(d)) => d.ms,
                _ => DEFAULT_TIMEOUT_MS,
            },
            inter_key_timeout_ms: 0,
            barge_in: !matches!(seen.get("barge-in").map(|o| &o.kind), Some(OptKind::BargeIn(false))),
            secret: false,
            decimal: false,
            patterns: Vec::new(),
            range: None,
            date: false,
            matches: None,
            reads,
            keys,
        };
        let (try_pc, table) = self.collect_loop(spec, retry_slot);
        // Status 0: dispatch on the key.
        let key_pc = self.here();
        self.p.tables[table].cases.push((Value::Num(0.into()), key_pc));
        self.emit(Instr::Load(key_slot));
        let keytable = self.p.tables.len();
        self.p.tables.push(SwitchTable { cases: Vec::new(), default: 0 });
        self.emit(Instr::Switch(keytable as u32));
        for b in &bindings {
            let pc = self.here();
            self.p.tables[keytable].cases.push((Value::text(&b.key.to_string()), pc));
            self.at(b.body.span);
            self.block(&b.body, &ctx);
            // A key handler that runs to its end returns to the menu.
            self.emit(Instr::Jump(start));
        }
        let retry_pc = self.retry_tail(&m.options, table, retry_slot, retries, try_pc, &ctx);
        // Cannot happen (the VM only accepts listed keys), but keep the table total.
        self.p.tables[keytable].default = retry_pc;
    }

    fn collect(&mut self, var: &Ident, options: &[Opt], ctx: &Ctx) {
        const ALLOWED: &[&str] = &[
            "prompt", "reprompt", "timeout", "inter-key", "retries", "barge-in", "length", "terminator", "secret",
            "decimal", "pattern", "range", "date", "matches", "confirm", "say", "on",
        ];
        let seen = self.check_opts(options, ALLOWED, "`collect`");
        let get = |k: &str| seen.get(k).map(|o| (&o.kind, o.span));
        let (min, max) = match get("length") {
            Some((OptKind::Length(a, b), span)) => {
                if a > b || *b == 0 || *b > MAX_DIGITS {
                    self.diags.push(
                        Diagnostic::new(Code::InvalidInputRules, format!("length {a}..{b} cannot be typed"), span, "invalid length")
                            .with_help(format!("lengths run from 1 to {MAX_DIGITS}, the shorter first")),
                    );
                }
                (*a.min(b), (*b).clamp(1, MAX_DIGITS))
            }
            _ => (1, 20),
        };
        let decimal = get("decimal").is_some();
        let secret = get("secret").is_some();
        let terminator = match get("terminator") {
            Some((OptKind::Terminator(t), span)) => {
                if decimal && *t == '*' {
                    self.diags.push(Diagnostic::new(Code::InvalidInputRules, "`*` cannot end input that uses it as the decimal point", span, "conflicts with `decimal`"));
                }
                Some(*t)
            }
            _ => Some('#'),
        };
        let mut patterns = Vec::new();
        if let Some((OptKind::Pattern(ps), _)) = get("pattern") {
            for p in ps {
                let n = p.value.chars().count() as u32;
                if p.value.is_empty() || !p.value.chars().all(|c| c.is_ascii_digit() || c == 'X') {
                    self.diags.push(
                        Diagnostic::new(Code::InvalidInputRules, format!("pattern \"{}\" is not a digit pattern", p.value), p.span, "invalid pattern")
                            .with_help("write digits, with X for any digit, e.g. \"6XXXXX\""),
                    );
                } else if n < min || n > max {
                    self.diags.push(Diagnostic::new(Code::InvalidInputRules, format!("pattern \"{}\" can never match input of length {min}..{max}", p.value), p.span, "wrong length"));
                } else {
                    patterns.push(p.value.clone());
                }
            }
        }
        let range = match get("range") {
            Some((OptKind::Range(a, b), span)) => match (a.parse::<Decimal>(), b.parse::<Decimal>()) {
                (Ok(x), Ok(y)) if x <= y => Some((Value::Num(x), Value::Num(y))),
                _ => {
                    self.diags.push(Diagnostic::new(Code::InvalidInputRules, "range is empty", span, "the low end must not exceed the high end"));
                    None
                }
            },
            _ => None,
        };
        // A date typed as YYYYMMDD: eight digits, a day the calendar has.
        let date = get("date").is_some();
        if let Some((_, span)) = get("date") {
            let clash = ["decimal", "range", "pattern"].into_iter().find(|o| get(o).is_some());
            if let Some(o) = clash {
                self.diags.push(Diagnostic::new(Code::InvalidInputRules, format!("`date` input cannot also be `{o}`"), span, "a date").with_help("a date is eight digits, YYYYMMDD; check it with `date` alone"));
            } else if get("length").is_some() && (min, max) != (8, 8) {
                self.diags.push(Diagnostic::new(Code::InvalidInputRules, "a date is typed as eight digits (YYYYMMDD)", span, "a date").with_help("remove `length`, or make it `length 8`"));
            }
        }
        let (min, max) = if date { (8, 8) } else { (min, max) };
        let matches = match get("matches") {
            Some((OptKind::Matches(re), _)) => match regex_lite::Regex::new(&format!("^(?:{})$", re.value)) {
                Ok(_) => Some(re.value.clone()),
                Err(e) => {
                    let first = e.to_string().lines().last().unwrap_or("").trim().to_string();
                    self.diags.push(
                        Diagnostic::new(Code::InvalidInputRules, format!("`matches \"{}\"` is not a regular expression: {first}", re.value), re.span, "invalid regular expression")
                            .with_help("the whole input must match, e.g. `matches \"1[3-9][0-9]{9}\"` for a mobile number"),
                    );
                    None
                }
            },
            _ => None,
        };
        let numeric = decimal || get("range").is_some();
        let confirm = match get("confirm") {
            Some((OptKind::Confirm(p, kind), span)) => {
                if secret {
                    self.diags.push(
                        Diagnostic::new(Code::SecretExposed, "secret input cannot be read back", span, "read-back of a secret")
                            .with_help("remove `confirm`: a PIN or password is never echoed"),
                    );
                }
                // How the input is read back: as asked, else a date, a number or digits.
                let as_kind = match kind {
                    None if date => bc::SayKind::Date,
                    None if numeric => bc::SayKind::Number,
                    None => bc::SayKind::Digits,
                    Some(k) => {
                        let allowed: &[(&str, bc::SayKind, bool)] = &[
                            ("number", bc::SayKind::Number, true),
                            ("money", bc::SayKind::Money, true),
                            ("percent", bc::SayKind::Percent, true),
                            ("digits", bc::SayKind::Digits, false),
                            ("date", bc::SayKind::Date, false),
                        ];
                        match allowed.iter().find(|a| a.0 == k.name) {
                            Some(&(_, sk, needs_number)) if needs_number && !numeric => {
                                self.diags.push(
                                    Diagnostic::new(Code::InvalidInputRules, format!("`confirm … as {}` reads a number, and this input is text", k.name), k.span, "not a number")
                                        .with_help("add `decimal` or a `range` to make the input a number, or read it back `as digits`"),
                                );
                                sk
                            }
                            Some(&(_, bc::SayKind::Date, _)) if !date => {
                                self.diags.push(Diagnostic::new(Code::InvalidInputRules, "`confirm … as date` needs `date` input", k.span, "not a date").with_help("add `date`: the caller types YYYYMMDD"));
                                bc::SayKind::Date
                            }
                            Some(&(_, sk, _)) => sk,
                            None => {
                                self.diags.push(Diagnostic::new(Code::InvalidInputRules, format!("cannot read input back as `{}`", k.name), k.span, "unknown reading").with_help("write `as number`, `as money`, `as percent`, `as digits` or `as date`"));
                                bc::SayKind::Digits
                            }
                        }
                    }
                };
                Some((p, as_kind))
            }
            _ => None,
        };
        let retries = match get("retries") {
            Some((OptKind::Retries(n), _)) => *n,
            _ => DEFAULT_RETRIES,
        };
        let slot = match ctx.locals.get(&var.name) {
            Some(&(s, t)) => {
                let got = if decimal || get("range").is_some() { Type::Number } else { Type::Text };
                if t != got {
                    self.diags.push(
                        type_error(var.span, t.name(), got)
                            .with_help(format!("parameter `{}` holds {}; this input is {}", var.name, t.name(), got.name())),
                    );
                }
                if secret {
                    self.diags.push(
                        Diagnostic::new(Code::SecretExposed, "secret input would be kept in a parameter", var.span, "a parameter")
                            .with_help("collect a secret into a variable of the flow; parameters can be spoken and passed on"),
                    );
                }
                s
            }
            None => match self.sym.vars.get(&var.name).map(|v| &v.kind) {
                Some(VarKind::Value(_)) => self.slots[&var.name],
                _ => self.unbound_slot(var),
            },
        };
        let retry_slot = self.hidden_slot(&format!("{}.retry", var.name), bc::Type::Number, false);
        let reads = self.prompt_reads(options, &var.name, ctx);
        let spec = CollectSpec {
            slot,
            prompts: self.prompt_list(options, false),
            reprompts: self.prompt_list(options, true),
            min_digits: min,
            max_digits: max,
            terminator,
            first_timeout_ms: match get("timeout") {
                Some((OptKind::Timeout(d), _)) => d.ms,
                _ => DEFAULT_TIMEOUT_MS,
            },
            inter_key_timeout_ms: match get("inter-key") {
                Some((OptKind::InterKey(d), _)) => d.ms,
                _ => DEFAULT_INTER_KEY_MS,
            },
            barge_in: !matches!(get("barge-in"), Some((OptKind::BargeIn(false), _))),
            secret,
            decimal,
            patterns,
            range,
            date,
            matches,
            reads,
            keys: String::new(),
        };
        let first_timeout_ms = spec.first_timeout_ms;
        let (try_pc, table) = self.collect_loop(spec, retry_slot);
        let ok_jump = self.emit(Instr::Jump(0));
        self.p.tables[table].cases.push((Value::Num(0.into()), ok_jump as u32));
        let retry_pc = self.retry_tail(options, table, retry_slot, retries, try_pc, ctx);
        let ok_pc = self.here();
        self.patch(ok_jump, ok_pc);
        if let Some((p, as_kind)) = confirm {
            // Read back, then "1 to confirm, 2 to re-enter".
            self.emit(Instr::Load(slot));
            self.emit(Instr::Say(as_kind));
            let key_slot = self.hidden_slot(&format!("{}.confirm", var.name), bc::Type::Text, false);
            let prompt = self.prompt(p).into_iter().collect();
            let c = self.p.collects.len() as u32;
            self.p.collects.push(CollectSpec {
                slot: key_slot,
                prompts: prompt,
                reprompts: Vec::new(),
                min_digits: 1,
                max_digits: 1,
                terminator: None,
                first_timeout_ms,
                inter_key_timeout_ms: 0,
                barge_in: true,
                secret: false,
                decimal: false,
                patterns: Vec::new(),
                range: None,
                date: false,
                matches: None,
                reads: Vec::new(),
                keys: "12".into(),
            });
            self.push_num(0);
            self.emit(Instr::Collect(c));
            let t = self.p.tables.len() as u32;
            self.emit(Instr::Switch(t));
            let key_pc = self.here();
            self.p.tables.push(SwitchTable { cases: vec![(Value::Num(0.into()), key_pc)], default: retry_pc });
            self.emit(Instr::Load(key_slot));
            let t2 = self.p.tables.len() as u32;
            self.emit(Instr::Switch(t2));
            let done = self.here();
            self.p.tables.push(SwitchTable {
                cases: vec![(Value::text("1"), done), (Value::text("2"), try_pc)],
                default: retry_pc,
            });
        }
    }

    // ------------------------------------------------------------ operations

    #[allow(clippy::too_many_arguments)]
    fn request(&mut self, service: &Ident, args: &[Expr], bind: &Ident, timeout: Option<Duration>, hold: Option<&Ident>, outcomes: &[Outcome], ctx: &Ctx) {
        let Some(svc) = self.sym.services.get(&service.name).copied() else {
            let names: Vec<&str> = self.sym.services.keys().map(String::as_str).collect();
            let mut d = Diagnostic::new(Code::UnknownService, format!("no service named `{}`", service.name), service.span, "unknown service");
            d = match closest(&service.name, &names) {
                Some(best) => d.with_help(format!("did you mean `{best}`?")),
                None => d.with_help(format!("declare it: `service {}(code: text) {{ ok(…) }}`", service.name)),
            };
            self.diags.push(d);
            return;
        };
        let mut params = Vec::new();
        if args.len() != svc.params.len() {
            self.arity(service, service.span, svc.params.len(), args.len());
            return;
        }
        for (a, prm) in args.iter().zip(&svc.params) {
            let secret = match self.expr(a, ctx) {
                Some((t, s)) => {
                    if t != prm.ty {
                        self.diags.push(type_error(a.span, prm.ty.name(), t).with_related(prm.name.span, "parameter declared here"));
                    }
                    s
                }
                None => false,
            };
            params.push((prm.name.name.clone(), secret));
        }
        let hold = hold.and_then(|h| self.prompt(h));
        let mut names: Vec<&str> = svc.variants.iter().map(|v| v.name.name.as_str()).collect();
        names.extend(REQUEST_OUTCOMES);
        let fields = svc
            .variants
            .iter()
            .map(|v| {
                v.fields
                    .iter()
                    .map(|f| {
                        let slot = match self.slots.get(&format!("{}.{}", bind.name, f.name.name)) {
                            Some(&slot) => slot,
                            None => self.unbound_slot(bind),
                        };
                        (f.name.name.clone(), bc_type(f.ty), slot)
                    })
                    .collect()
            })
            .collect();
        let kind = OpKind::Request { service: service.name.clone(), hold };
        let t = timeout.map_or(DEFAULT_REQUEST_TIMEOUT_MS, |d| d.ms);
        self.operation(kind, params, t, &names, fields, outcomes, service.span, ctx);
    }

    /// Emits `await` and the outcome dispatch. Unhandled outcomes continue after
    /// the statement, except a request's `timeout`, which goes to its `failed`.
    #[allow(clippy::too_many_arguments)]
    fn operation(&mut self, kind: OpKind, params: Vec<(String, bool)>, timeout_ms: u64, names: &[&str], fields: Vec<Vec<(String, bc::Type, u32)>>, outcomes: &[Outcome], span: Span, ctx: &Ctx) {
        let is_request = matches!(kind, OpKind::Request { .. });
        let op = OpSpec {
            kind,
            params: params.iter().map(|(n, _)| n.clone()).collect(),
            secret_params: params.iter().map(|(_, s)| *s).collect(),
            outcomes: names
                .iter()
                .enumerate()
                .map(|(i, n)| OutcomeSpec { name: n.to_string(), fields: fields.get(i).cloned().unwrap_or_default() })
                .collect(),
            timeout_ms,
        };
        let what = op.kind.name();
        let o = self.p.ops.len() as u32;
        self.p.ops.push(op);
        self.emit(Instr::Await(o));
        let t = self.p.tables.len();
        self.p.tables.push(SwitchTable { cases: Vec::new(), default: 0 });
        self.emit(Instr::Switch(t as u32));
        let mut handled: Vec<(&str, u32)> = Vec::new();
        let mut ends = Vec::new();
        let mut otherwise = None;
        for oc in outcomes {
            match &oc.name {
                Some(n) if !names.contains(&n.name.as_str()) => {
                    let mut d = Diagnostic::new(Code::UnknownOutcome, format!("`{}` is not an outcome of this {what}", n.name), n.span, "unknown outcome")
                        .with_help(format!("its outcomes are: {}", names.join(", ")));
                    if let Some(best) = closest(&n.name, names) {
                        d = d.with_help(format!("did you mean `{best}`? (outcomes: {})", names.join(", ")));
                    }
                    self.diags.push(d);
                    continue;
                }
                Some(n) if handled.iter().any(|(h, _)| *h == n.name) => {
                    self.diags.push(Diagnostic::new(Code::DuplicateDefinition, format!("outcome `{}` is handled twice", n.name), n.span, "handled again"));
                    continue;
                }
                _ => {}
            }
            let pc = self.here();
            match &oc.name {
                Some(n) => handled.push((names.iter().find(|x| **x == n.name).unwrap(), pc)),
                None => otherwise = Some(pc),
            }
            self.at(oc.span);
            self.block(&oc.body, ctx);
            ends.push(self.emit(Instr::Jump(0)));
        }
        let after = self.here();
        for e in ends {
            self.patch(e, after);
        }
        let failed_pc = handled.iter().find(|(n, _)| *n == "failed").map(|(_, pc)| *pc);
        let mut missing = Vec::new();
        for (i, n) in names.iter().enumerate() {
            let pc = match handled.iter().find(|(h, _)| h == n) {
                Some((_, pc)) => *pc,
                None => {
                    let fallback = if is_request && *n == "timeout" { failed_pc } else { None };
                    match fallback.or(otherwise) {
                        Some(pc) => pc,
                        None => {
                            if !(is_request && *n == "timeout") && *n != "served" && *n != "saved" {
                                missing.push(*n);
                            }
                            after
                        }
                    }
                }
            };
            self.p.tables[t].cases.push((Value::Num((i as u32).into()), pc));
        }
        self.p.tables[t].default = otherwise.or(failed_pc).unwrap_or(after);
        if !missing.is_empty() {
            let list = missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", ");
            let d = if is_request {
                Diagnostic::new(Code::UnhandledServiceOutcome, format!("this request does not say what happens on {list}"), span, "unhandled outcomes")
                    .with_help("handle each outcome (or add `else -> …`): the flow decides what the caller hears when a service fails")
            } else {
                Diagnostic::new(Code::UnhandledOutcome, format!("this {what} does not handle {list}; the flow continues after it"), span, "unhandled outcomes")
                    .with_help("handle them, or add `else -> …`")
            };
            self.diags.push(d);
        }
    }
}
