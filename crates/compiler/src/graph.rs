//! The flow as a picture: every step, menu and sub-flow a node, every way
//! between them an edge labelled with what takes the caller there (a key, a
//! timeout/invalid/exhausted handler, a service or hand-off outcome, an
//! opening-hours check, a condition, a sub-flow call), and where calls end
//! (hang up, transfer). Built from the resolved flow, rendered as Graphviz
//! `dot`, Mermaid, or an SVG of our own (no external tool needed).

use std::collections::BTreeMap;
use std::fmt::Write;

use ivr_syntax::ast::*;

use crate::load::Loaded;
use crate::{load, Compiled, World};

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NodeKind {
    /// A dialled number: where calls come in.
    Entry,
    Step,
    Menu,
    Sub,
    /// Keys that work in every menu.
    Anywhere,
    /// Where a call ends: hang up, or a transfer out.
    End,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub id: String,
    pub kind: NodeKind,
    pub label: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    pub from: String,
    pub to: String,
    pub label: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowGraph {
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    /// What each node asks and does, as settings a caller would notice:
    /// (node, what) → how, e.g. (`pin_step`, `collect pin`) → `secret,
    /// length 6, timeout 5s`; (`main_menu`, `menu`) → `timeout 6s, retries 2`.
    pub details: BTreeMap<(String, String), String>,
    /// What scenarios reached, when the graph is drawn with coverage.
    pub coverage: Option<Coverage>,
}

/// The parts of a flow its scenarios never reached (from `ivr test --coverage`):
/// drawn red and dashed, the rest green.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Coverage {
    /// Steps, menus and sub-flows by name.
    pub missed_nodes: std::collections::BTreeSet<String>,
    /// Edges by index in [`FlowGraph::edges`].
    pub missed_edges: std::collections::BTreeSet<usize>,
}

impl FlowGraph {
    /// Marks what `ivr test --coverage` says was never reached. `missed` are
    /// its labels: `step NAME`, `menu NAME`, `sub NAME` (nodes); `menu NAME: key 1`,
    /// `menu NAME: on timeout` (that menu's edges); `request SERVICE: OUTCOME`,
    /// `anywhere: key 0`, `enqueue …: OUTCOME` and the like (edges so labelled).
    pub fn with_coverage<'a>(mut self, missed: impl IntoIterator<Item = &'a str>) -> FlowGraph {
        let mut c = Coverage::default();
        for label in missed {
            if let Some(name) = label.strip_prefix("step ").or_else(|| label.strip_prefix("sub ")).or_else(|| label.strip_prefix("menu ")).filter(|n| !n.contains(':')) {
                c.missed_nodes.insert(name.to_string());
                continue;
            }
            let (scope, what) = label.split_once(": ").unwrap_or(("", label));
            let from = scope.strip_prefix("menu ").or_else(|| scope.strip_prefix("step ")).or_else(|| scope.strip_prefix("sub "));
            let what = match scope.strip_prefix("request ") {
                Some(service) => format!("{service}: {what}"),
                None => what.to_string(),
            };
            for (i, e) in self.edges.iter().enumerate() {
                if from.is_none_or(|f| e.from == f) && (e.label == what || e.label.ends_with(&format!(" · {what}"))) {
                    c.missed_edges.insert(i);
                }
            }
        }
        self.coverage = Some(c);
        self
    }

    /// Whether a node is a part scenarios reach (steps, menus, sub-flows).
    fn reachable_part(n: &Node) -> bool {
        matches!(n.kind, NodeKind::Step | NodeKind::Menu | NodeKind::Sub)
    }

    /// `Some(true)` reached, `Some(false)` never reached, `None` not drawn with coverage.
    fn node_reached(&self, n: &Node) -> Option<bool> {
        let c = self.coverage.as_ref()?;
        Self::reachable_part(n).then(|| !c.missed_nodes.contains(&n.id))
    }

    fn edge_missed(&self, i: usize) -> bool {
        self.coverage.as_ref().is_some_and(|c| c.missed_edges.contains(&i) || c.missed_nodes.contains(&self.edges[i].to))
    }
}

/// The graph of the flow project whose main file is `main`; the compilation
/// (with its diagnostics) when it has errors.
pub fn graph(world: &dyn World, main: &str) -> Result<FlowGraph, Compiled> {
    let compiled = crate::compile(world, main);
    if compiled.has_errors() {
        return Err(compiled);
    }
    Ok(build(&load::load(world, main)))
}

struct Builder {
    g: FlowGraph,
    ends: BTreeMap<String, String>,
}

impl Builder {
    fn node(&mut self, id: String, kind: NodeKind, label: String) {
        if !self.g.nodes.iter().any(|n| n.id == id) {
            self.g.nodes.push(Node { id, kind, label });
        }
    }

    fn edge(&mut self, from: &str, to: String, label: &[String]) {
        let label = label.iter().filter(|l| !l.is_empty()).cloned().collect::<Vec<_>>().join(" · ");
        let e = Edge { from: from.to_string(), to, label };
        if !self.g.edges.contains(&e) {
            self.g.edges.push(e);
        }
    }

    fn detail(&mut self, node: &str, what: String, how: String) {
        let slot = self.g.details.entry((node.to_string(), what)).or_default();
        *slot = join(slot, &how);
    }

    fn end(&mut self, label: &str) -> String {
        if let Some(id) = self.ends.get(label) {
            return id.clone();
        }
        let id = format!("end_{}", self.ends.len());
        self.ends.insert(label.to_string(), id.clone());
        self.node(id.clone(), NodeKind::End, label.to_string());
        id
    }

    /// The ways out of `block` from node `from`, each labelled with the
    /// context that leads there (`path`).
    fn block(&mut self, from: &str, block: &Block, path: &mut Vec<String>) {
        for s in &block.stmts {
            match &s.kind {
                StmtKind::Goto(t) => self.edge(from, t.name.clone(), path),
                StmtKind::Back => {
                    let to = self.end("back to the previous menu");
                    self.edge(from, to, path);
                }
                StmtKind::Repeat => self.edge(from, from.to_string(), &with(path, "repeat")),
                StmtKind::Hangup => {
                    let to = self.end("hang up");
                    self.edge(from, to, path);
                }
                StmtKind::Transfer(n) => {
                    let to = self.end(&format!("transfer {}", n.value));
                    self.edge(from, to, path);
                }
                StmtKind::Run { sub, .. } => self.edge(from, sub.name.clone(), &with(path, "run")),
                StmtKind::If { arms, otherwise } => {
                    for (cond, body) in arms {
                        path.push(format!("if {}", expr(cond)));
                        self.block(from, body, path);
                        path.pop();
                    }
                    if let Some(body) = otherwise {
                        path.push("else".into());
                        self.block(from, body, path);
                        path.pop();
                    }
                }
                StmtKind::Collect { var, options } => {
                    self.detail(from, format!("collect {}", var.name), settings(options));
                    path.push(format!("collect {}", var.name));
                    self.options(from, options, path);
                    path.pop();
                }
                StmtKind::Request { service, outcomes, timeout, hold, .. } => {
                    let mut how = timeout.map(|t| format!("timeout {}", ms(t.ms))).unwrap_or_default();
                    if let Some(h) = hold {
                        how = join(&how, &format!("hold prompt {}", h.name));
                    }
                    self.detail(from, format!("request {}", service.name), how);
                    self.outcomes(from, &service.name, outcomes, path)
                }
                StmtKind::Enqueue { queue, outcomes, priority, max_wait } => {
                    let mut how = priority.as_ref().map(|p| format!("priority {}", expr(p))).unwrap_or_default();
                    if let Some(m) = max_wait {
                        how = join(&how, &format!("max-wait {}", ms(m.ms)));
                    }
                    self.detail(from, format!("queue {}", queue.name), how);
                    self.outcomes(from, &format!("queue {}", queue.name), outcomes, path)
                }
                StmtKind::Dial { agent, outcomes, timeout } => {
                    self.detail(from, format!("agent {}", expr(agent)), timeout.map(|t| format!("timeout {}", ms(t.ms))).unwrap_or_default());
                    self.outcomes(from, &format!("agent {}", expr(agent)), outcomes, path)
                }
                StmtKind::Say(kind, e) => {
                    let key = format!("say {}", expr(e));
                    self.detail(from, key, format!("as {}", kind.name()));
                }
                StmtKind::Record { category, outcomes, .. } => self.outcomes(from, &format!("record {}", category.value), outcomes, path),
                _ => {}
            }
        }
    }

    fn outcomes(&mut self, from: &str, what: &str, outcomes: &[Outcome], path: &mut Vec<String>) {
        for o in outcomes {
            let name = o.name.as_ref().map_or("else", |n| n.name.as_str());
            path.push(format!("{what}: {name}"));
            self.block(from, &o.body, path);
            path.pop();
        }
    }

    fn options(&mut self, from: &str, options: &[Opt], path: &mut Vec<String>) {
        for o in options {
            match &o.kind {
                OptKind::Key(k) => {
                    path.push(format!("key {}", k.key));
                    self.block(from, &k.body, path);
                    path.pop();
                }
                OptKind::On(kind, body) => {
                    path.push(format!("on {}", handler(*kind)));
                    self.block(from, body, path);
                    path.pop();
                }
                _ => {}
            }
        }
    }
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}, {b}"),
    }
}

fn ms(v: u64) -> String {
    if v % 1_000 == 0 {
        format!("{}s", v / 1_000)
    } else {
        format!("{v}ms")
    }
}

/// The settings of a menu or `collect` a caller notices.
fn settings(options: &[Opt]) -> String {
    let mut parts = Vec::new();
    for o in options {
        parts.push(match &o.kind {
            OptKind::Timeout(d) => format!("timeout {}", ms(d.ms)),
            OptKind::InterKey(d) => format!("inter-key {}", ms(d.ms)),
            OptKind::Retries(n) => format!("retries {n}"),
            OptKind::BargeIn(b) => format!("barge-in {}", if *b { "on" } else { "off" }),
            OptKind::Length(a, b) if a == b => format!("length {a}"),
            OptKind::Length(a, b) => format!("length {a}..{b}"),
            OptKind::Terminator(c) => format!("terminator {c}"),
            OptKind::Secret => "secret".into(),
            OptKind::Decimal => "decimal".into(),
            OptKind::Pattern(p) => format!("pattern {}", p.iter().map(|s| format!("\"{}\"", s.value)).collect::<Vec<_>>().join(" | ")),
            OptKind::Range(a, b) => format!("range {a}..{b}"),
            OptKind::Confirm(p, _) => format!("confirm {}", p.name),
            OptKind::Prompt(p) => format!("prompt {}", p.name),
            OptKind::Reprompt(p) => format!("reprompt {}", p.name),
            _ => continue,
        });
    }
    parts.join(", ")
}

fn with(path: &[String], more: &str) -> Vec<String> {
    let mut p = path.to_vec();
    p.push(more.to_string());
    p
}

fn handler(kind: HandlerKind) -> &'static str {
    match kind {
        HandlerKind::Timeout => "timeout",
        HandlerKind::Invalid => "invalid",
        HandlerKind::Exhausted => "exhausted",
    }
}

/// An expression as a designer wrote it (shortened).
fn expr(e: &Expr) -> String {
    match &e.kind {
        ExprKind::Num(n) => n.clone(),
        ExprKind::Str(s) => format!("\"{s}\""),
        ExprKind::Bool(b) => b.to_string(),
        ExprKind::Path(a, Some(b)) => format!("{}.{}", a.name, b.name),
        ExprKind::Path(a, None) => a.name.clone(),
        ExprKind::Call(f, args) => format!("{}({})", f.name, args.iter().map(expr).collect::<Vec<_>>().join(", ")),
        ExprKind::Unary(UnOp::Neg, x) => format!("-{}", expr(x)),
        ExprKind::Unary(UnOp::Not, x) => format!("not {}", expr(x)),
        ExprKind::Binary(op, a, b) => format!("{} {} {}", expr(a), op.symbol(), expr(b)),
    }
}

fn build(loaded: &Loaded) -> FlowGraph {
    let mut b = Builder { g: FlowGraph::default(), ends: BTreeMap::new() };
    let items = || loaded.files.iter().flat_map(|(_, f)| f.items.iter());
    for item in items() {
        match item {
            Item::Entry { number, target } => {
                let id = format!("entry_{}", number.value);
                b.node(id.clone(), NodeKind::Entry, format!("☎ {}", number.value));
                b.edge(&id, target.name.clone(), &[]);
            }
            Item::Step { name, .. } => b.node(name.name.clone(), NodeKind::Step, name.name.clone()),
            Item::Menu(m) => b.node(m.name.name.clone(), NodeKind::Menu, m.name.name.clone()),
            Item::Sub(s) => b.node(s.name.name.clone(), NodeKind::Sub, format!("sub {}", s.name.name)),
            Item::Anywhere { .. } => b.node("anywhere".into(), NodeKind::Anywhere, "in every menu".into()),
            _ => {}
        }
    }
    for item in items() {
        match item {
            Item::Step { name, body } => b.block(&name.name, body, &mut Vec::new()),
            Item::Menu(m) => {
                b.detail(&m.name.name, "menu".into(), settings(&m.options));
                b.options(&m.name.name, &m.options, &mut Vec::new())
            }
            Item::Sub(s) => b.block(&s.name.name, &s.body, &mut Vec::new()),
            Item::Anywhere { bindings, .. } => {
                for k in bindings {
                    b.block("anywhere", &k.body, &mut vec![format!("key {}", k.key)]);
                }
            }
            _ => {}
        }
    }
    b.g
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

impl FlowGraph {
    /// Graphviz `dot`.
    pub fn dot(&self) -> String {
        let mut out = String::from("digraph flow {\n  rankdir=LR;\n  node [fontname=\"Noto Sans CJK SC, sans-serif\"];\n  edge [fontname=\"Noto Sans CJK SC, sans-serif\", fontsize=10];\n");
        for n in &self.nodes {
            let shape = match n.kind {
                NodeKind::Entry => "shape=circle, style=filled, fillcolor=\"#dbeafe\"",
                NodeKind::Step => "shape=box, style=rounded",
                NodeKind::Menu => "shape=box, style=\"rounded,filled\", fillcolor=\"#fef3c7\"",
                NodeKind::Sub => "shape=component",
                NodeKind::Anywhere => "shape=note",
                NodeKind::End => "shape=doublecircle, fontsize=10",
            };
            let cov = match self.node_reached(n) {
                Some(true) => ", color=\"#16a34a\", penwidth=2",
                Some(false) => ", color=\"#dc2626\", fontcolor=\"#dc2626\", penwidth=2, tooltip=\"never reached by the scenarios\"",
                None => "",
            };
            let _ = writeln!(out, "  \"{}\" [label=\"{}\", {shape}{cov}];", dot_escape(&n.id), dot_escape(&n.label));
        }
        for (i, e) in self.edges.iter().enumerate() {
            let cov = if self.edge_missed(i) { ", color=\"#dc2626\", fontcolor=\"#dc2626\", style=dashed" } else { "" };
            let _ = writeln!(out, "  \"{}\" -> \"{}\" [label=\"{}\"{cov}];", dot_escape(&e.from), dot_escape(&e.to), dot_escape(&e.label));
        }
        out.push_str("}\n");
        out
    }

    /// Mermaid (`flowchart LR`), for Markdown pages that render it.
    pub fn mermaid(&self) -> String {
        let ids: BTreeMap<&str, String> = self.nodes.iter().enumerate().map(|(i, n)| (n.id.as_str(), format!("n{i}"))).collect();
        let id = |s: &str| ids.get(s).cloned().unwrap_or_else(|| format!("missing_{}", s.replace(|c: char| !c.is_ascii_alphanumeric(), "_")));
        let text = |s: &str| s.replace('"', "#quot;");
        let mut out = String::from("flowchart LR\n");
        for n in &self.nodes {
            let (open, close) = match n.kind {
                NodeKind::Entry => ("((", "))"),
                NodeKind::Step => ("(", ")"),
                NodeKind::Menu => ("{{", "}}"),
                NodeKind::Sub => ("[[", "]]"),
                NodeKind::Anywhere => ("[/", "/]"),
                NodeKind::End => ("(((", ")))"),
            };
            let _ = writeln!(out, "  {}{open}\"{}\"{close}", id(&n.id), text(&n.label));
        }
        for e in &self.edges {
            if e.label.is_empty() {
                let _ = writeln!(out, "  {} --> {}", id(&e.from), id(&e.to));
            } else {
                let _ = writeln!(out, "  {} -->|\"{}\"| {}", id(&e.from), text(&e.label), id(&e.to));
            }
        }
        if self.coverage.is_some() {
            out.push_str("  classDef reached stroke:#16a34a,stroke-width:2px\n  classDef missed stroke:#dc2626,stroke-width:2px,stroke-dasharray:5 3,color:#dc2626\n");
            for n in &self.nodes {
                if let Some(r) = self.node_reached(n) {
                    let _ = writeln!(out, "  class {} {}", id(&n.id), if r { "reached" } else { "missed" });
                }
            }
            for i in (0..self.edges.len()).filter(|&i| self.edge_missed(i)) {
                let _ = writeln!(out, "  linkStyle {i} stroke:#dc2626,stroke-dasharray:5 3");
            }
        }
        out
    }

    /// An SVG of our own: nodes in columns by distance from the entries (the
    /// way a call goes, left to right), edges as labelled curves. For a
    /// finer layout, render [`FlowGraph::dot`] with Graphviz.
    pub fn svg(&self) -> String {
        // Columns: breadth-first distance from the entries.
        let mut column: BTreeMap<&str, usize> = BTreeMap::new();
        let mut queue: std::collections::VecDeque<&str> = self.nodes.iter().filter(|n| n.kind == NodeKind::Entry).map(|n| n.id.as_str()).collect();
        for q in &queue {
            column.insert(q, 0);
        }
        while let Some(v) = queue.pop_front() {
            let c = column[v];
            for e in self.edges.iter().filter(|e| e.from == v) {
                if !column.contains_key(e.to.as_str()) {
                    column.insert(&e.to, c + 1);
                    queue.push_back(&e.to);
                }
            }
        }
        let last = column.values().copied().max().unwrap_or(0);
        for n in &self.nodes {
            column.entry(&n.id).or_insert(last + 1);
        }
        let mut rows: BTreeMap<usize, usize> = BTreeMap::new();
        let mut pos: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
        let (w, h, gap_x, gap_y) = (170.0, 44.0, 120.0, 34.0);
        for n in &self.nodes {
            let c = column[n.id.as_str()];
            let r = rows.entry(c).or_insert(0);
            pos.insert(&n.id, (20.0 + c as f64 * (w + gap_x), 20.0 + *r as f64 * (h + gap_y)));
            *r += 1;
        }
        let width = pos.values().map(|p| p.0).fold(0.0, f64::max) + w + 40.0;
        let height = pos.values().map(|p| p.1).fold(0.0, f64::max) + h + 40.0;
        let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;");
        let mut out = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\" font-family=\"Noto Sans CJK SC, sans-serif\">\n<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#555\"/></marker></defs>\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        );
        for (i, e) in self.edges.iter().enumerate() {
            let (Some(&(x1, y1)), Some(&(x2, y2))) = (pos.get(e.from.as_str()), pos.get(e.to.as_str())) else { continue };
            let (stroke, dash) = if self.edge_missed(i) { ("#dc2626", " stroke-dasharray=\"6 4\"") } else { ("#555", "") };
            let (sx, sy, tx, ty) = (x1 + w, y1 + h / 2.0, x2, y2 + h / 2.0);
            let path = if e.from == e.to {
                format!("M{:.1},{:.1} C{:.1},{:.1} {:.1},{:.1} {:.1},{:.1}", x1 + w * 0.7, y1, x1 + w * 0.7, y1 - 30.0, x1 + w * 0.3, y1 - 30.0, x1 + w * 0.3, y1)
            } else {
                let mid = (sx + tx) / 2.0;
                format!("M{sx:.1},{sy:.1} C{mid:.1},{sy:.1} {mid:.1},{ty:.1} {tx:.1},{ty:.1}")
            };
            let _ = writeln!(out, "<path d=\"{path}\" fill=\"none\" stroke=\"{stroke}\" stroke-width=\"1.2\"{dash} marker-end=\"url(#arrow)\"/>");
            if !e.label.is_empty() {
                let (lx, ly) = if e.from == e.to { (x1 + w / 2.0, y1 - 33.0) } else { ((sx + tx) / 2.0, (sy + ty) / 2.0 - 4.0) };
                let _ = writeln!(out, "<text x=\"{lx:.1}\" y=\"{ly:.1}\" font-size=\"11\" text-anchor=\"middle\" fill=\"#333\" stroke=\"white\" stroke-width=\"3\" paint-order=\"stroke\">{}</text>", esc(&e.label));
            }
        }
        for n in &self.nodes {
            let (x, y) = pos[n.id.as_str()];
            let (fill, rx) = match n.kind {
                NodeKind::Entry => ("#dbeafe", 22.0),
                NodeKind::Menu => ("#fef3c7", 10.0),
                NodeKind::End => ("#e5e7eb", 22.0),
                NodeKind::Sub => ("#ede9fe", 4.0),
                _ => ("#ffffff", 10.0),
            };
            let (stroke, extra) = match self.node_reached(n) {
                Some(true) => ("#16a34a", " stroke-width=\"2.5\""),
                Some(false) => ("#dc2626", " stroke-width=\"2.5\" stroke-dasharray=\"6 4\""),
                None => ("#333", ""),
            };
            let _ = writeln!(
                out,
                "<g class=\"node {kind:?}\"><rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w}\" height=\"{h}\" rx=\"{rx}\" fill=\"{fill}\" stroke=\"{stroke}\"{extra}/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"14\" text-anchor=\"middle\">{}</text></g>",
                x + w / 2.0,
                y + h / 2.0 + 5.0,
                esc(&n.label),
                kind = n.kind
            );
        }
        out.push_str("</svg>\n");
        out
    }
}

#[cfg(test)]
mod graph_tests {
    use super::*;
    use crate::MemoryWorld;

    #[test]
    fn every_branch_is_an_edge_with_what_leads_there() {
        let src = "service quote(code: text) {\n    ok\n    not_found\n}\nhours office {\n    zone \"Asia/Shanghai\"\n    mon-fri 09:00-17:00\n}\nentry 1 -> start\nstep start {\n    if open(office) {\n        goto menu_main\n    }\n    play welcome\n    hangup\n}\nmenu menu_main {\n    prompt welcome\n    key 1 -> look\n    key 9 {\n        transfer \"95588\"\n    }\n    on exhausted -> start\n}\nstep look {\n    request quote(\"600000\") {\n        ok -> menu_main\n        not_found -> menu_main\n        failed {\n            hangup\n        }\n    }\n}\n";
        let world = MemoryWorld::new().with("main.ivr", src).with("prompts.toml", "[welcome]\nzh = \"欢迎。\"\n");
        let g = graph(&world, "main.ivr").unwrap_or_else(|c| panic!("{:#?}", c.diagnostics));
        let has = |from: &str, to: &str, label: &str| g.edges.iter().any(|e| e.from == from && e.to.starts_with(to) && e.label == label);
        assert!(has("entry_1", "start", ""));
        assert!(has("start", "menu_main", "if open(office)"), "{:#?}", g.edges);
        assert!(has("menu_main", "look", "key 1"));
        assert!(has("menu_main", "start", "on exhausted"));
        assert!(has("look", "menu_main", "quote: not_found"));
        assert!(has("look", "end_", "quote: failed"));
        let transfer = g.nodes.iter().find(|n| n.label == "transfer 95588").expect("a transfer end");
        assert!(has("menu_main", &transfer.id, "key 9"));
        assert!(g.svg().contains(">key 1<"));
        assert!(g.mermaid().contains("-->|\"key 1\"|"));
    }
}
