//! Where a service result's field is read, which answers can it come from?
//! `q.last` holds what the last `quote` answer said — but an outcome that
//! carries no `last` (`not_found`, `failed`, `timeout`) leaves it as it was:
//! 0 before any answer, or an earlier answer's value. A flow that reaches
//! `say money q.last` along such a path reads a wrong number to the caller
//! without any error. This pass follows every path from the entries through
//! steps, menus, keys, handlers and outcomes, keeping for each result the
//! outcomes its last answer may have had, and warns (W0408) at each read
//! where one of them does not carry the field.
//!
//! It over-approximates where a call can go (both branches of an `if`,
//! every key of a menu, an `anywhere` key from any menu that does not bind
//! that key itself, a key or handler that runs off its end back into its
//! menu) and follows sub-flows where they are run (their reads, their
//! requests and gotos, the answers they return with; each sub-flow once per
//! state it is run with). It leaves out `back`: the previous menu is known
//! only when the call runs, and sending what reaches a `back` to every menu
//! it might return to warned falsely where a menu is reached from many
//! (a language menu under an `anywhere` key).

use std::collections::{HashMap, HashSet};

use ivr_syntax::ast::*;
use ivr_syntax::{Code, Diagnostic, Span};

use crate::resolve::{NodeKind, Symbols, VarKind};

/// What a result's last answer may have been, as bits: [`UNSET`] (no
/// answer yet on this path), then one bit per outcome in [`Binding::outcomes`]
/// order. An outcome past the 63rd shares the last bit, taken as carrying
/// every field (no warning rather than a wrong one).
type Answers = u64;
const UNSET: Answers = 1;

/// For each result (by its index), the answers it may hold.
type State = Vec<Answers>;

/// A service result the flow binds (`request SERVICE … as NAME`).
struct Binding<'a> {
    service: &'a ServiceDecl,
    /// The outcomes an answer can have: the declared ones, `timeout`, `failed`.
    outcomes: Vec<String>,
}

impl Binding<'_> {
    fn bit(&self, outcome: &str) -> Answers {
        let i = self.outcomes.iter().position(|o| o == outcome).unwrap_or(usize::MAX);
        1 << (i.saturating_add(1)).min(63)
    }
}

pub fn check(sym: &Symbols, diags: &mut Vec<Diagnostic>) {
    // The results, by binding (sorted, so warnings come out in one order):
    // their service's outcomes and fields.
    let mut bound: Vec<(&str, Binding)> = sym
        .vars
        .iter()
        .filter_map(|(name, v)| match &v.kind {
            VarKind::Result(service) => sym.services.get(service).map(|s| {
                let outcomes = s.variants.iter().map(|v| v.name.name.clone()).chain(["timeout".to_string(), "failed".to_string()]).collect();
                (name.as_str(), Binding { service: s, outcomes })
            }),
            VarKind::Value(_) => None,
        })
        .collect();
    if bound.is_empty() {
        return;
    }
    bound.sort_unstable_by_key(|(n, _)| *n);
    let (names, results): (Vec<&str>, Vec<Binding>) = bound.into_iter().unzip();
    let index: HashMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let start: State = vec![UNSET; results.len()];
    let mut walk = Walk { sym, results: &results, index: &index, entry: vec![None; sym.nodes.len()], queue: Vec::new(), warned: HashSet::new(), report: None, subs: Vec::new(), asked: vec![Vec::new(); results.len()], memo: HashMap::new() };
    for (_, target) in &sym.entries {
        if let Some(&n) = sym.node_index.get(&target.name) {
            walk.reach_node(n, &start);
        }
    }
    // To a fixpoint (states only grow, and are finite), then once more to report.
    while let Some(n) = walk.queue.pop() {
        walk.node(n);
    }
    // Each sub-flow is walked again, once per state, to report its reads.
    walk.memo.clear();
    let mut found = Vec::new();
    walk.report = Some(&mut found);
    for n in 0..sym.nodes.len() {
        walk.node(n);
    }
    diags.append(&mut found);
}

struct Walk<'s, 'a, 'd> {
    sym: &'s Symbols<'a>,
    results: &'s [Binding<'a>],
    index: &'s HashMap<&'s str, usize>,
    /// The join of the states each node is entered with (`None`: never).
    entry: Vec<Option<State>>,
    queue: Vec<usize>,
    warned: HashSet<(u32, u32, u32)>,
    /// The reporting pass: where warnings go.
    report: Option<&'d mut Vec<Diagnostic>>,
    /// The sub-flows being followed (innermost last), with the states their
    /// `return`s leave with.
    subs: Vec<(&'s str, Option<State>)>,
    /// Where each result is asked for (the requests that bind it), for the warnings.
    asked: Vec<Vec<Span>>,
    /// What running a sub-flow with a state ends with (falling off its end,
    /// and its `return`s), walked once per state.
    memo: HashMap<(&'s str, State), (Option<State>, Option<State>)>,
}

fn join(into: &mut State, from: &State) -> bool {
    let mut changed = false;
    for (a, b) in into.iter_mut().zip(from) {
        changed |= *b & !*a != 0;
        *a |= *b;
    }
    changed
}

impl Walk<'_, '_, '_> {
    fn reach(&mut self, target: &str, state: &State) {
        let Some(&n) = self.sym.node_index.get(target) else { return };
        self.reach_node(n, state);
    }

    fn reach_node(&mut self, n: usize, state: &State) {
        match &mut self.entry[n] {
            Some(s) => {
                if join(s, state) && self.report.is_none() {
                    self.queue.push(n);
                }
            }
            slot @ None => {
                *slot = Some(state.clone());
                if self.report.is_none() {
                    self.queue.push(n);
                }
            }
        }
    }

    fn node(&mut self, n: usize) {
        let Some(state) = self.entry[n].clone() else { return };
        let decl = &self.sym.nodes[n];
        match decl.kind {
            NodeKind::Step => {
                if let Some(body) = decl.step {
                    self.block(body, state, n);
                }
            }
            NodeKind::Menu => {
                let mut back_in = Vec::new();
                if let Some(m) = decl.menu {
                    back_in = self.options(&m.options, &state, n);
                }
                // A key that works anywhere can be pressed in this menu,
                // unless the menu binds that key itself.
                let own: Vec<char> = decl.menu.map(|m| m.options.iter().filter_map(|o| if let OptKind::Key(k) = &o.kind { Some(k.key) } else { None }).collect()).unwrap_or_default();
                for k in self.sym.anywhere.clone() {
                    if !own.contains(&k.key) {
                        back_in.extend(self.block(&k.body, state.clone(), n));
                    }
                }
                // A key or handler that runs off its end: the menu again.
                for s in back_in {
                    self.reach_node(n, &s);
                }
            }
        }
    }

    /// A menu's or a collection's options: values said in its prompts, its
    /// keys and handlers. Returns the states its handlers fall through with.
    fn options(&mut self, options: &[Opt], state: &State, node: usize) -> Vec<State> {
        let mut out = Vec::new();
        for o in options {
            match &o.kind {
                OptKind::Say(_, e) => self.expr(e, state),
                OptKind::Key(k) => out.extend(self.block(&k.body, state.clone(), node)),
                OptKind::On(_, b) => out.extend(self.block(b, state.clone(), node)),
                _ => {}
            }
        }
        out
    }

    /// Runs `block` from `state`; the state it falls through with, if it can.
    fn block(&mut self, block: &Block, mut state: State, node: usize) -> Option<State> {
        for s in &block.stmts {
            state = self.stmt(s, state, node)?;
        }
        Some(state)
    }

    fn stmt(&mut self, s: &Stmt, state: State, node: usize) -> Option<State> {
        match &s.kind {
            StmtKind::Say(_, e) | StmtKind::Set(_, e) => self.expr(e, &state),
            StmtKind::Return(value) => {
                if let Some(e) = value {
                    self.expr(e, &state);
                }
                // Out of the sub-flow being followed, with this state.
                if let Some((_, returns)) = self.subs.last_mut() {
                    match returns {
                        Some(r) => {
                            join(r, &state);
                        }
                        None => *returns = Some(state),
                    }
                }
                return None;
            }
            StmtKind::Run { sub, args, .. } => {
                args.iter().for_each(|a| self.expr(a, &state));
                let Some(decl) = self.sym.subs.get(&sub.name).copied() else { return Some(state) };
                // A sub-flow that runs itself is E0303; here it is not followed again.
                if self.subs.iter().any(|(name, _)| *name == sub.name.as_str()) {
                    return Some(state);
                }
                let key = (decl.name.name.as_str(), state);
                let (end, returns) = match self.memo.get(&key) {
                    Some(done) => done.clone(),
                    None => {
                        self.subs.push((key.0, None));
                        let end = self.block(&decl.body, key.1.clone(), node);
                        let (_, returns) = self.subs.pop()?;
                        self.memo.insert(key, (end.clone(), returns.clone()));
                        (end, returns)
                    }
                };
                return match (end, returns) {
                    (Some(mut e), Some(r)) => {
                        join(&mut e, &r);
                        Some(e)
                    }
                    (e, r) => e.or(r),
                };
            }
            StmtKind::If { arms, otherwise } => {
                let mut after: Option<State> = None;
                let mut merge = |s: Option<State>| {
                    if let Some(s) = s {
                        match after.as_mut() {
                            Some(a) => {
                                join(a, &s);
                            }
                            None => after = Some(s),
                        }
                    }
                };
                for (cond, body) in arms {
                    self.expr(cond, &state);
                    merge(self.block(body, state.clone(), node));
                }
                merge(match otherwise {
                    Some(b) => self.block(b, state.clone(), node),
                    None => Some(state.clone()),
                });
                return after;
            }
            StmtKind::Goto(t) => {
                self.reach(&t.name, &state);
                return None;
            }
            StmtKind::Repeat => {
                self.reach_node(node, &state);
                return None;
            }
            StmtKind::Back | StmtKind::Hangup | StmtKind::Transfer(_) => return None,
            StmtKind::Collect { options, .. } => {
                let mut after = state.clone();
                for s in self.options(options, &state, node) {
                    join(&mut after, &s);
                }
                return Some(after);
            }
            StmtKind::Request { service, args, bind, outcomes, .. } => {
                args.iter().for_each(|a| self.expr(a, &state));
                let binding = bind.as_ref().map_or(service.name.as_str(), |b| b.name.as_str());
                let decl = self.sym.services.get(&service.name).copied();
                let mut names: Vec<String> = decl.map(|d| d.variants.iter().map(|v| v.name.name.clone()).collect()).unwrap_or_default();
                names.extend(["timeout".to_string(), "failed".to_string()]);
                let result = self.index.get(binding).map(|i| (*i, &self.results[*i]));
                if let Some((i, _)) = result {
                    if !self.asked[i].contains(&service.span) {
                        self.asked[i].push(service.span);
                    }
                }
                let answered = |a: &str| {
                    let mut s = state.clone();
                    if let Some((i, r)) = result {
                        s[i] = r.bit(a);
                    }
                    s
                };
                let handler = |name: &str| outcomes.iter().find(|o| o.name.as_ref().is_some_and(|n| n.name == name));
                let otherwise = outcomes.iter().find(|o| o.name.is_none());
                let mut after: Option<State> = None;
                for name in &names {
                    // An unhandled timeout goes to `failed`'s handler, then to `else`.
                    let body = handler(name).or_else(|| if name == "timeout" { handler("failed") } else { None }).or(otherwise);
                    let end = match body {
                        Some(o) => self.block(&o.body, answered(name), node),
                        None => Some(answered(name)),
                    };
                    if let Some(e) = end {
                        match after.as_mut() {
                            Some(a) => {
                                join(a, &e);
                            }
                            None => after = Some(e),
                        }
                    }
                }
                return after;
            }
            StmtKind::Enqueue { priority, outcomes, .. } => {
                if let Some(p) = priority {
                    self.expr(p, &state);
                }
                return self.handoff(outcomes, state, node);
            }
            StmtKind::Dial { agent, outcomes, .. } => {
                self.expr(agent, &state);
                return self.handoff(outcomes, state, node);
            }
            StmtKind::Record { outcomes, .. } => return self.handoff(outcomes, state, node),
            StmtKind::Play(_) | StmtKind::Language(_) | StmtKind::Flush | StmtKind::Broken => {}
        }
        Some(state)
    }

    /// A hand-off or a recording: each outcome's handler from the same
    /// state; unhandled ones go on after it.
    fn handoff(&mut self, outcomes: &[Outcome], state: State, node: usize) -> Option<State> {
        let mut after = state.clone();
        for o in outcomes {
            if let Some(s) = self.block(&o.body, state.clone(), node) {
                join(&mut after, &s);
            }
        }
        Some(after)
    }

    fn expr(&mut self, e: &Expr, state: &State) {
        match &e.kind {
            ExprKind::Path(name, Some(field)) => self.read(name, field, state),
            ExprKind::Call(_, args) => args.iter().for_each(|a| self.expr(a, state)),
            ExprKind::Unary(_, a) => self.expr(a, state),
            ExprKind::Binary(_, a, b) => {
                self.expr(a, state);
                self.expr(b, state);
            }
            ExprKind::Num(_) | ExprKind::Str(_) | ExprKind::Bool(_) | ExprKind::Path(_, None) => {}
        }
    }

    fn read(&mut self, name: &Ident, field: &Ident, state: &State) {
        let Some(report) = self.report.as_deref_mut() else { return };
        let Some(&i) = self.index.get(name.name.as_str()) else { return };
        let (result, answers) = (&self.results[i], state[i]);
        let service = result.service;
        let carries = |outcome: &str| service.variants.iter().any(|v| v.name.name == outcome && v.fields.iter().any(|f| f.name.name == field.name));
        // A field no outcome declares is E0211 already.
        if !service.variants.iter().any(|v| v.fields.iter().any(|f| f.name.name == field.name)) {
            return;
        }
        let missing_outcomes: Vec<&String> = result.outcomes.iter().enumerate().filter(|(k, o)| *k < 62 && answers & (1 << (k + 1)) != 0 && !carries(o)).map(|(_, o)| o).collect();
        let unset = answers & UNSET != 0;
        if (missing_outcomes.is_empty() && !unset) || !self.warned.insert(span_key(e_span(name, field))) {
            return;
        }
        let svc = &service.name.name;
        let mut outcomes: Vec<String> = missing_outcomes.iter().map(|a| format!("`{a}`")).collect();
        outcomes.sort();
        let after = match outcomes.len() {
            0 => None,
            1 => Some(format!("after {}, which does not set it", outcomes[0])),
            _ => Some(format!("after {}, which do not set it", outcomes.join(" or "))),
        };
        let b = &name.name;
        let when = match (after, unset) {
            (Some(a), true) => format!("{a}, or before any `{svc}` answer in `{b}`"),
            (Some(a), false) => a,
            (None, _) => format!("before any `{svc}` answer in `{b}` has set it"),
        };
        let carried_by: Vec<&str> = service.variants.iter().filter(|v| v.fields.iter().any(|f| f.name.name == field.name)).map(|v| v.name.name.as_str()).collect();
        let (carry, leads) = if carried_by.len() == 1 { ("carries", "that answer leads (its handler, or a step only it goes to)") } else { ("carry", "those answers lead (their handlers, or a step only they go to)") };
        let mut d = Diagnostic::new(Code::FieldMaybeUnset, format!("`{b}.{}` may be read here {when}", field.name), e_span(name, field), "may be 0 or an earlier answer's value");
        if !outcomes.is_empty() {
            for at in self.asked[i].iter().take(3) {
                d = d.with_related(*at, format!("`{b}` is answered here"));
            }
        }
        report.push(
            d.with_help(format!(
                "only `{}` {carry} `{}`: read it where {leads}; elsewhere the caller would hear 0 or a value from an earlier answer. A path the checker cannot rule out (a flag set by the answer) is one a later change to the flow can open",
                carried_by.join("`, `"),
                field.name
            )),
        );
    }
}

fn e_span(name: &Ident, field: &Ident) -> Span {
    name.span.to(field.span)
}

fn span_key(s: Span) -> (u32, u32, u32) {
    (s.file.0, s.start, s.end)
}
