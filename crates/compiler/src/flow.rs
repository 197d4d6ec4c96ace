//! Whole-flow checks on the tree: dead ends, loops that wait for no input,
//! unreachable nodes, recursive sub-flows, menus with no way out.

use std::collections::{HashMap, HashSet};

use ivr_syntax::ast::*;
use ivr_syntax::{Code, Diagnostic, Span};

use crate::load::Loaded;
use crate::resolve::{NodeDecl, NodeKind, Symbols};

/// Whether control can run off the end of `block` (reach the statement
/// after it), knowing which sub-flows never come back to where they are run
/// (`never_back(name)`: every path of theirs ends in a goto, a hang-up, …).
fn falls_through_in(block: &Block, never_back: &dyn Fn(&str) -> bool) -> bool {
    block.stmts.iter().all(|s| stmt_falls_through_in(s, never_back))
}

fn stmt_falls_through(s: &Stmt) -> bool {
    stmt_falls_through_in(s, &|_| false)
}

/// The sub-flows that never come back to where they are run: no `return`,
/// and every path ends elsewhere (a goto, a hang-up, a sub-flow that never
/// comes back itself: found round by round, a few dozen rounds at most —
/// past that a sub-flow is taken to come back).
fn never_coming_back<'a>(sym: &'a Symbols<'a>) -> HashSet<&'a str> {
    let returns = |sub: &SubDecl| {
        let mut r = false;
        crate::resolve::visit_stmts(&sub.body, &mut |s| r |= matches!(s.kind, StmtKind::Return(_)));
        r
    };
    let candidates: Vec<(&'a str, &'a SubDecl)> = sym.subs.iter().filter(|(_, s)| !returns(s)).map(|(n, s)| (n.as_str(), *s)).collect();
    let mut never: HashSet<&str> = HashSet::new();
    for _ in 0..64 {
        let next: HashSet<&str> = candidates.iter().filter(|(_, s)| !falls_through_in(&s.body, &|n| never.contains(n))).map(|(n, _)| *n).collect();
        if next == never {
            break;
        }
        never = next;
    }
    never
}

fn stmt_falls_through_in(s: &Stmt, never_back: &dyn Fn(&str) -> bool) -> bool {
    let falls_through = |b: &Block| falls_through_in(b, never_back);
    match &s.kind {
        StmtKind::Goto(_) | StmtKind::Back | StmtKind::Repeat | StmtKind::Return(_) | StmtKind::Transfer(_)
        | StmtKind::Hangup | StmtKind::Broken => false,
        StmtKind::Run { sub, .. } => !never_back(&sub.name),
        StmtKind::If { arms, otherwise } => {
            arms.iter().any(|(_, b)| falls_through(b)) || otherwise.as_ref().is_none_or(|b| falls_through(b))
        }
        StmtKind::Request { outcomes, .. } => {
            // Requests must handle every outcome (checked elsewhere), so they fall
            // through only when a handler does.
            outcomes.is_empty() || outcomes.iter().any(|o| falls_through(&o.body))
        }
        StmtKind::Enqueue { outcomes, .. } | StmtKind::Dial { outcomes, .. } | StmtKind::Record { outcomes, .. } => {
            let has_else = outcomes.iter().any(|o| o.name.is_none());
            let all = |names: &[&str]| names.iter().all(|n| outcomes.iter().any(|o| o.name.as_ref().is_some_and(|x| x.name == *n)));
            let covered = has_else
                || match &s.kind {
                    StmtKind::Enqueue { .. } => all(crate::lower::ENQUEUE_OUTCOMES),
                    StmtKind::Dial { .. } => all(crate::lower::DIAL_OUTCOMES),
                    _ => all(crate::lower::RECORD_OUTCOMES),
                };
            !covered || outcomes.iter().any(|o| falls_through(&o.body))
        }
        _ => true,
    }
}

fn end_of(block: &Block) -> Span {
    let e = block.span.end.max(1);
    Span { file: block.span.file, start: e - 1, end: e }
}

/// Statements that wait for the caller or the outside world.
fn waits(s: &Stmt) -> bool {
    matches!(
        s.kind,
        StmtKind::Collect { .. } | StmtKind::Request { .. } | StmtKind::Enqueue { .. } | StmtKind::Dial { .. } | StmtKind::Record { .. }
    )
}

/// Outcomes of an operation that come with nothing from the caller: every
/// answer of a service, and hand-offs and recordings that did not reach the
/// caller (`served`, `left` and `saved` mean the caller talked or pressed a
/// key). `else` counts when it covers any outcome of the second kind.
fn without_caller(s: &Stmt) -> Vec<&Block> {
    use ivr_bytecode::contract::{DIAL_NAMES, ENQUEUE_NAMES, RECORD_NAMES};
    let (outcomes, all): (&[Outcome], &[&str]) = match &s.kind {
        StmtKind::Request { outcomes, .. } => return outcomes.iter().map(|o| &o.body).collect(),
        StmtKind::Enqueue { outcomes, .. } => (outcomes, &ENQUEUE_NAMES),
        StmtKind::Dial { outcomes, .. } => (outcomes, &DIAL_NAMES),
        StmtKind::Record { outcomes, .. } => (outcomes, &RECORD_NAMES),
        _ => return Vec::new(),
    };
    let acted = |n: &str| matches!(n, "served" | "left" | "saved");
    let named = |n: &str| outcomes.iter().any(|o| o.name.as_ref().is_some_and(|x| x.name == n));
    let else_without_caller = all.iter().any(|n| !acted(n) && !named(n));
    outcomes
        .iter()
        .filter(|o| match &o.name {
            Some(n) => !acted(&n.name),
            None => else_without_caller,
        })
        .map(|o| &o.body)
        .collect()
}

/// Whether every path through `block` asks the caller something (a
/// `collect`) before it can end: a sub-flow like that is a wait.
fn always_waits(block: &Block, waiting: &HashSet<&str>) -> bool {
    for s in &block.stmts {
        match &s.kind {
            StmtKind::Collect { .. } => return true,
            StmtKind::Run { sub, .. } if waiting.contains(sub.name.as_str()) => return true,
            StmtKind::If { arms, otherwise: Some(other) } => {
                if arms.iter().all(|(_, b)| always_waits(b, waiting)) && always_waits(other, waiting) {
                    return true;
                }
            }
            _ if !stmt_falls_through(s) => return false,
            _ => {}
        }
    }
    false
}

/// Gotos (and sub-flow calls) reachable from the start of `block` before the
/// caller does anything: a key (menu, collect) stops the search; a service
/// or a failed hand-off does not (a loop through a failing service waits,
/// but for no caller).
fn immediate<'a>(block: &'a Block, gotos: &mut Vec<&'a Ident>, runs: &mut Vec<&'a Ident>, waiting: &HashSet<&str>) -> bool {
    for s in &block.stmts {
        if waits(s) {
            for body in without_caller(s) {
                immediate(body, gotos, runs, waiting);
            }
            return true;
        }
        match &s.kind {
            StmtKind::Goto(t) => {
                gotos.push(t);
                return true;
            }
            StmtKind::Run { sub, .. } => {
                runs.push(sub);
                if waiting.contains(sub.name.as_str()) {
                    return true; // the sub-flow asks the caller before it returns
                }
            }
            StmtKind::If { arms, otherwise } => {
                let mut all_stop = otherwise.is_some();
                for (_, b) in arms {
                    all_stop &= immediate(b, gotos, runs, waiting);
                }
                if let Some(b) = otherwise {
                    all_stop &= immediate(b, gotos, runs, waiting);
                }
                if all_stop {
                    return true;
                }
            }
            _ if !stmt_falls_through(s) => return true,
            _ => {}
        }
    }
    false
}

/// The strongly connected components of a graph (Tarjan's algorithm,
/// without recursion: a long chain of sub-flows must not exhaust a stack).
fn strongly_connected(edges: &[Vec<(usize, &Ident)>]) -> Vec<Vec<usize>> {
    let n = edges.len();
    let (mut index, mut low, mut on_stack) = (vec![usize::MAX; n], vec![0; n], vec![false; n]);
    let (mut stack, mut out, mut next) = (Vec::new(), Vec::new(), 0);
    for root in 0..n {
        if index[root] != usize::MAX {
            continue;
        }
        // (node, the next of its edges to follow)
        let mut work = vec![(root, 0usize)];
        while let Some(&mut (v, ref mut i)) = work.last_mut() {
            if *i == 0 && index[v] == usize::MAX {
                index[v] = next;
                low[v] = next;
                next += 1;
                stack.push(v);
                on_stack[v] = true;
            }
            if let Some(&(w, _)) = edges[v].get(*i) {
                *i += 1;
                if index[w] == usize::MAX {
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                let mut component = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                out.push(component);
            }
        }
    }
    out
}

/// Every node, sub-flow and hours name a block refers to.
fn references<'a>(block: &'a Block, out: &mut Vec<&'a Ident>) {
    crate::resolve::visit_stmts(block, &mut |s| match &s.kind {
        StmtKind::Goto(t) => out.push(t),
        StmtKind::Run { sub, .. } => out.push(sub),
        _ => {}
    });
}

pub fn check(loaded: &Loaded, sym: &Symbols, diags: &mut Vec<Diagnostic>) {
    // `say` reads values in the languages the speech crate knows; in another
    // a caller would hear nothing where the number should be.
    let mut says = false;
    crate::resolve::all_blocks(loaded, |b| {
        crate::resolve::visit_stmts(b, &mut |s| says |= matches!(s.kind, StmtKind::Say(..)));
    });
    if says {
        for (_, f) in &loaded.files {
            for item in &f.items {
                if let Item::Languages(ls) = item {
                    for l in ls.iter().filter(|l| ivr_speech::Lang::parse(&l.name).is_none()) {
                        diags.push(
                            Diagnostic::new(Code::UnspokenLanguage, format!("`say` cannot read values in `{}`", l.name), l.span, "no readings in this language")
                                .with_help("numbers, money, dates and times are read in zh and en; in this language callers would hear nothing where a value is said"),
                        );
                    }
                }
            }
        }
    }
    // Dead ends. A sub-flow that never comes back ends the path where it runs.
    let never = never_coming_back(sym);
    let never_back = |name: &str| never.contains(name);
    for n in &sym.nodes {
        if let Some(body) = n.step {
            if falls_through_in(body, &never_back) {
                diags.push(
                    Diagnostic::new(Code::DeadEnd, format!("step `{}` can end with nothing left to do", n.name.name), end_of(body), "the call can reach here")
                        .with_related(n.name.span, "in this step")
                        .with_help("end every path with goto, hangup, transfer or a hand-off (enqueue, dial agent)"),
                );
            }
        }
    }
    let exhausted_check = |options: &[Opt], what: String, span: Span, diags: &mut Vec<Diagnostic>| {
        match options.iter().find_map(|o| match &o.kind {
            OptKind::On(HandlerKind::Exhausted, b) => Some(b),
            _ => None,
        }) {
            Some(b) if falls_through_in(b, &never_back) => diags.push(
                Diagnostic::new(Code::DeadEnd, format!("the `on exhausted` handler of {what} can end with nothing left to do"), end_of(b), "the call can reach here")
                    .with_help("end it with goto, hangup, transfer or a hand-off"),
            ),
            Some(_) => {}
            None => diags.push(
                Diagnostic::new(Code::NoWayOut, format!("{what} has no `on exhausted` handler"), span, "no way out when retries run out")
                    .with_help("add `on exhausted -> …` (e.g. an agent or a goodbye); without it the call is hung up"),
            ),
        }
    };
    for n in &sym.nodes {
        if let Some(m) = n.menu {
            exhausted_check(&m.options, format!("menu `{}`", m.name.name), m.name.span, diags);
        }
    }
    crate::resolve::all_blocks(loaded, |b| {
        crate::resolve::visit_stmts(b, &mut |s| {
            if let StmtKind::Collect { var, options } = &s.kind {
                exhausted_check(options, format!("`collect {}`", var.name), var.span, diags);
            }
        })
    });
    for sub in sym.subs.values() {
        if sub.ret.is_some() && falls_through_in(&sub.body, &never_back) {
            diags.push(
                Diagnostic::new(Code::DeadEnd, format!("sub-flow `{}` can end without returning a value", sub.name.name), end_of(&sub.body), "no `return` on this path")
                    .with_help("end every path with `return VALUE`"),
            );
        }
    }

    // Loops that wait for no input: edges between nodes taken before any wait.
    // Sub-flows that always ask the caller something are waits themselves.
    let mut waiting: HashSet<&str> = HashSet::new();
    loop {
        let before = waiting.len();
        for (name, sub) in &sym.subs {
            if !waiting.contains(name.as_str()) && always_waits(&sub.body, &waiting) {
                waiting.insert(name.as_str());
            }
        }
        if waiting.len() == before {
            break;
        }
    }
    let mut sub_edges: HashMap<&str, (Vec<&Ident>, Vec<&Ident>)> = HashMap::new();
    for (name, sub) in &sym.subs {
        let (mut g, mut r) = (Vec::new(), Vec::new());
        immediate(&sub.body, &mut g, &mut r, &waiting);
        sub_edges.insert(name.as_str(), (g, r));
    }
    let mut edges: Vec<Vec<(usize, Span)>> = vec![Vec::new(); sym.nodes.len()];
    for (i, n) in sym.nodes.iter().enumerate() {
        let Some(body) = n.step else { continue }; // a menu always waits for a key
        let (mut gotos, mut runs) = (Vec::new(), Vec::new());
        immediate(body, &mut gotos, &mut runs, &waiting);
        let mut seen_subs = HashSet::new();
        while let Some(r) = runs.pop() {
            if seen_subs.insert(r.name.as_str()) {
                if let Some((g, rr)) = sub_edges.get(r.name.as_str()) {
                    gotos.extend(g.iter().copied());
                    runs.extend(rr.iter().copied());
                }
            }
        }
        for g in gotos {
            if let Some(&t) = sym.node_index.get(&g.name) {
                edges[i].push((t, g.span));
            }
        }
    }
    let mut state = vec![0u8; sym.nodes.len()]; // 0 new, 1 on stack, 2 done
    let mut stack: Vec<(usize, Span)> = Vec::new();
    fn dfs(v: usize, edges: &[Vec<(usize, Span)>], state: &mut [u8], stack: &mut Vec<(usize, Span)>, sym: &Symbols, diags: &mut Vec<Diagnostic>) {
        state[v] = 1;
        for &(w, span) in &edges[v] {
            if state[w] == 1 {
                let from = stack.iter().position(|(n, _)| *n == w).unwrap_or(0);
                let mut names: Vec<&str> = stack[from..].iter().map(|(n, _)| sym.nodes[*n].name.name.as_str()).collect();
                names.push(sym.nodes[v].name.name.as_str());
                names.dedup();
                names.push(sym.nodes[w].name.name.as_str());
                diags.push(
                    Diagnostic::new(Code::LoopWithoutInput, format!("loop that waits for no input: {}", names.join(" → ")), span, "this goes round again with nothing from the caller")
                        .with_help("a caller would hear this forever (retrying a failing service counts: it waits for no caller); wait for a key (menu, collect) or end the call somewhere in the loop"),
                );
            } else if state[w] == 0 {
                stack.push((w, span));
                dfs(w, edges, state, stack, sym, diags);
                stack.pop();
            }
        }
        state[v] = 2;
    }
    for v in 0..sym.nodes.len() {
        if state[v] == 0 {
            stack.push((v, Span::default()));
            dfs(v, &edges, &mut state, &mut stack, sym, diags);
            stack.pop();
        }
    }

    // Recursive sub-flows: those on a cycle of the call graph (its strongly
    // connected components, found once: walking from every sub-flow was
    // quadratic, 64 s for a chain of 10,000).
    let mut subs: Vec<(&str, &SubDecl)> = sym.subs.iter().map(|(n, s)| (n.as_str(), *s)).collect();
    subs.sort_unstable_by_key(|(n, _)| *n);
    let index: HashMap<&str, usize> = subs.iter().enumerate().map(|(i, (n, _))| (*n, i)).collect();
    let calls: Vec<Vec<(usize, &Ident)>> = subs
        .iter()
        .map(|(_, s)| {
            let mut refs = Vec::new();
            references(&s.body, &mut refs);
            refs.into_iter().filter_map(|r| index.get(r.name.as_str()).map(|&j| (j, r))).collect()
        })
        .collect();
    for component in strongly_connected(&calls) {
        let cyclic = component.len() > 1 || calls[component[0]].iter().any(|(j, _)| *j == component[0]);
        if !cyclic {
            continue;
        }
        for &v in &component {
            // A call to it from within the cycle.
            let at = component.iter().flat_map(|&u| calls[u].iter()).find(|(j, _)| *j == v).map(|(_, r)| *r);
            let (name, sub) = subs[v];
            if let Some(r) = at {
                diags.push(
                    Diagnostic::new(Code::RecursiveSub, format!("sub-flow `{name}` calls itself"), r.span, "recursive call")
                        .with_related(sub.name.span, "sub-flow defined here")
                        .with_help("sub-flows cannot recurse; use a step and `goto` to repeat"),
                );
            }
        }
    }

    back_without_menu(sym, diags);

    // Unreachable nodes and sub-flows.
    let mut reached: HashSet<&str> = HashSet::new();
    let mut todo: Vec<&str> = sym.entries.iter().map(|(_, t)| t.name.as_str()).collect();
    let mut anywhere_refs = Vec::new();
    for b in &sym.anywhere {
        references(&b.body, &mut anywhere_refs);
    }
    let any_menu = sym.nodes.iter().any(|n| n.menu.is_some());
    while let Some(name) = todo.pop() {
        if !reached.insert(name) {
            continue;
        }
        let mut refs = Vec::new();
        if let Some(&i) = sym.node_index.get(name) {
            let n = &sym.nodes[i];
            if let Some(b) = n.step {
                references(b, &mut refs);
            }
            if let Some(m) = n.menu {
                for o in &m.options {
                    match &o.kind {
                        OptKind::Key(k) => references(&k.body, &mut refs),
                        OptKind::On(_, b) => references(b, &mut refs),
                        _ => {}
                    }
                }
                if any_menu {
                    refs.extend(anywhere_refs.iter().copied());
                }
            }
        }
        if let Some(s) = sym.subs.get(name) {
            references(&s.body, &mut refs);
        }
        todo.extend(refs.iter().map(|r| r.name.as_str()));
    }
    // Without an entry nothing is reached; a broken item may hold the way in.
    if sym.entries.is_empty() || !sym.broken.is_empty() {
        return;
    }
    for n in &sym.nodes {
        if !reached.contains(n.name.name.as_str()) {
            let what = if n.menu.is_some() { "menu" } else { "step" };
            diags.push(
                Diagnostic::new(Code::Unreachable, format!("{what} `{}` is never reached", n.name.name), n.name.span, "no entry, goto or key leads here")
                    .with_help("remove it, or send callers to it"),
            );
        }
    }
    for (name, s) in &sym.subs {
        if !reached.contains(name.as_str()) {
            diags.push(Diagnostic::new(Code::Unreachable, format!("sub-flow `{name}` is never run"), s.name.span, "never run").with_help("remove it, or `run` it"));
        }
    }
}

/// The blocks of a node a caller runs while in it (a step's body; a menu's
/// keys and handlers, not `anywhere` keys).
fn node_blocks<'a>(n: &NodeDecl<'a>) -> Vec<&'a Block> {
    let mut out: Vec<&Block> = n.step.into_iter().collect();
    if let Some(m) = n.menu {
        for o in &m.options {
            match &o.kind {
                OptKind::Key(k) => out.push(&k.body),
                OptKind::On(_, b) => out.push(b),
                _ => {}
            }
        }
    }
    out
}

/// `back` returns to the previous menu. Where the caller can arrive from an
/// entry through steps alone, there is none: in a step the call would start
/// again from its entry, and in that first menu `back` only replays it.
fn back_without_menu(sym: &Symbols, diags: &mut Vec<Diagnostic>) {
    // Every sub-flow the blocks run, directly or through other sub-flows.
    fn subs_run<'a>(sym: &Symbols<'a>, blocks: &[&'a Block]) -> Vec<&'a SubDecl> {
        let mut refs = Vec::new();
        for b in blocks {
            references(b, &mut refs);
        }
        let mut subs: Vec<&SubDecl> = Vec::new();
        while let Some(r) = refs.pop() {
            let Some(&s) = sym.subs.get(&r.name) else { continue };
            if !subs.iter().any(|x| std::ptr::eq(*x, s)) {
                subs.push(s);
                references(&s.body, &mut refs);
            }
        }
        subs
    }
    // Nodes reached from an entry through steps alone.
    let mut first: Vec<usize> = Vec::new();
    let mut todo: Vec<usize> = sym.entries.iter().filter_map(|(_, t)| sym.node_index.get(&t.name).copied()).collect();
    while let Some(i) = todo.pop() {
        if first.contains(&i) {
            continue;
        }
        first.push(i);
        let n = &sym.nodes[i];
        let Some(body) = n.step else { continue };
        let mut refs = Vec::new();
        references(body, &mut refs);
        for s in subs_run(sym, &[body]) {
            references(&s.body, &mut refs);
        }
        todo.extend(refs.iter().filter_map(|r| sym.node_index.get(&r.name).copied()));
    }
    first.sort_unstable();
    let mut reported: HashSet<Span> = HashSet::new();
    for i in first {
        let n = &sym.nodes[i];
        let blocks = node_blocks(n);
        let mut backs: Vec<(Span, Option<&Ident>)> = Vec::new();
        for b in &blocks {
            crate::resolve::visit_stmts(b, &mut |s| {
                if matches!(s.kind, StmtKind::Back) {
                    backs.push((s.span, None));
                }
            });
        }
        for decl in subs_run(sym, &blocks) {
            crate::resolve::visit_stmts(&decl.body, &mut |s| {
                if matches!(s.kind, StmtKind::Back) {
                    backs.push((s.span, Some(&decl.name)));
                }
            });
        }
        for (span, in_sub) in backs {
            if !reported.insert(span) {
                continue;
            }
            let (message, help) = match n.kind {
                NodeKind::Step => (
                    format!("`back` can run in step `{}` before the caller has been in any menu", n.name.name),
                    "`back` returns to the previous menu; on this path there is none, so the call would start again from its entry: use `goto` to a menu",
                ),
                NodeKind::Menu => (
                    format!("`back` in menu `{}`, which callers can reach before any other menu", n.name.name),
                    "on this path there is no earlier menu, so `back` only replays this one: use `repeat` for that, or `goto` to where the caller should go",
                ),
            };
            let mut d = Diagnostic::new(Code::BackWithoutMenu, message, span, "no earlier menu to go back to")
                .with_related(n.name.span, match n.kind {
                    NodeKind::Step => "reached from an entry through steps alone",
                    NodeKind::Menu => "the first menu on a path from an entry",
                })
                .with_help(help);
            if let Some(sub) = in_sub {
                d = d.with_related(sub.span, "in this sub-flow");
            }
            diags.push(d);
        }
    }
}
