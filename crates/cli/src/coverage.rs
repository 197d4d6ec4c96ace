//! `ivr test --coverage`: which parts of a flow its scenarios reached.
//!
//! The parts are what a designer wrote, read from the compiled program: steps,
//! menus and sub-flows; menu options (a key binding; an `anywhere` key counts
//! once for every menu) and `confirm` answers; `on timeout` / `on invalid` /
//! `on exhausted` handlers; each outcome of each request and hand-off; both
//! ways of each `if`.
//!
//! Steps and menus are seen in the transcript (`EnterNode`). The rest cannot
//! be: which key a menu took, which handler ran, which branch an `if` went are
//! decisions inside the VM. So coverage runs an instrumented copy of the
//! program: every edge that decides a part gets a *probe*, a `Play` of a
//! prompt beyond the catalogue that the simulator recognises, never plays and
//! lets take no time. The VM is not changed and cannot tell. `ivr test` runs
//! each call a second time without probes and requires both transcripts to
//! agree, so a probe can never change what a test proves.

use std::collections::BTreeMap;
use std::sync::Arc;

use ivr_bytecode::{HangupReason, Instr, OpKind, Program, Prompt, Value};
use rust_decimal::prelude::ToPrimitive;
use serde_json::{json, Value as Json};

use crate::sim::Record;

/// The kinds of parts, in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Step,
    Option,
    Handler,
    ServiceOutcome,
    HandoffOutcome,
    Branch,
}

impl Kind {
    pub const ALL: [Kind; 6] = [Kind::Step, Kind::Option, Kind::Handler, Kind::ServiceOutcome, Kind::HandoffOutcome, Kind::Branch];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Step => "steps",
            Kind::Option => "options",
            Kind::Handler => "handlers",
            Kind::ServiceOutcome => "service outcomes",
            Kind::HandoffOutcome => "hand-off outcomes",
            Kind::Branch => "branches",
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            Kind::Step => "steps",
            Kind::Option => "options",
            Kind::Handler => "handlers",
            Kind::ServiceOutcome => "service_outcomes",
            Kind::HandoffOutcome => "handoff_outcomes",
            Kind::Branch => "branches",
        }
    }
}

/// One part of a flow a scenario can reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub kind: Kind,
    /// `menu main_menu: key 1`, `request quote: not_found`, `if change > 0: true`.
    pub label: String,
    /// The source file (relative to the flow's folder) and line.
    pub file: String,
    pub line: u32,
}

/// Where a probe sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Edge {
    /// Case `case` of switch table `table`.
    Case { table: u32, case: usize },
    /// The jump of the `JumpIfNot` at this pc.
    Taken(usize),
    /// Falling through the `JumpIfNot` at this pc.
    Fall(usize),
    /// Entering the sub-flow at this pc.
    Entry(usize),
}

/// A flow's parts and the instrumented program that reports them.
pub struct Plan {
    pub items: Vec<Item>,
    /// The program with probes; run it with `SimConfig::probes_from`.
    pub program: Arc<Program>,
    pub probes_from: u32,
    /// The part each probe reaches.
    probe_item: Vec<usize>,
    /// The part each step or menu is, by name.
    node_item: BTreeMap<String, usize>,
}

/// A source line's text, for labels (`if not open(agent_hours)`).
pub type Lines<'a> = &'a dyn Fn(&str, u32) -> Option<String>;

impl Plan {
    /// Reads a program's parts and instruments it. `lines` gives source text;
    /// without it labels name lines instead of conditions.
    pub fn new(p: &Program, lines: Lines) -> Result<Plan, String> {
        let mut b = Builder { p, lines, items: Vec::new(), edges: Vec::new(), node_item: BTreeMap::new() };
        b.read();
        let (program, probes_from) = instrument(p, &b.edges)?;
        Ok(Plan {
            items: b.items,
            program: Arc::new(program),
            probes_from,
            probe_item: b.edges.iter().map(|(_, i)| *i).collect(),
            node_item: b.node_item,
        })
    }

    /// Marks what one call reached: its steps and menus, and its probes.
    pub fn mark(&self, reached: &mut [bool], records: &[Record], probes: &[u32]) {
        for r in records {
            if r.data.get("event").and_then(Json::as_str) == Some("node") {
                if let Some(&i) = r.data.get("name").and_then(Json::as_str).and_then(|n| self.node_item.get(n)) {
                    reached[i] = true;
                }
            }
        }
        for &k in probes {
            if let Some(&i) = self.probe_item.get(k as usize) {
                reached[i] = true;
            }
        }
    }
}

/// Menu key bindings by (key, file, line of what they run): the menus that
/// have each (name, key table, case). One binding in several menus is `anywhere`.
type MenuKeys = BTreeMap<(char, String, u32), Vec<(String, u32, usize)>>;

struct Builder<'a> {
    p: &'a Program,
    lines: Lines<'a>,
    items: Vec<Item>,
    edges: Vec<(Edge, usize)>,
    node_item: BTreeMap<String, usize>,
}

impl Builder<'_> {
    fn loc(&self, pc: usize) -> (String, u32) {
        self.p.line_of(pc).map(|(f, l)| (f.to_string(), l)).unwrap_or_default()
    }

    fn item(&mut self, kind: Kind, label: String, (file, line): (String, u32)) -> usize {
        self.items.push(Item { kind, label, file, line });
        self.items.len() - 1
    }

    /// The line at or up to three lines above `line` that contains `needle`
    /// (a handler's or key's own line, above the statements it runs).
    fn line_with(&self, (file, line): (String, u32), needle: &str) -> (String, u32) {
        for l in (line.saturating_sub(3).max(1)..=line).rev() {
            if (self.lines)(&file, l).is_some_and(|t| t.contains(needle)) {
                return (file, l);
            }
        }
        (file, line)
    }

    fn read(&mut self) {
        let p = self.p;
        for n in &p.nodes {
            let kind = if n.kind == ivr_bytecode::NodeKind::Menu { "menu" } else { "step" };
            let i = self.item(Kind::Step, format!("{kind} {}", n.name), self.loc(n.pc as usize));
            self.node_item.insert(n.name.clone(), i);
        }
        for s in &p.subs {
            let i = self.item(Kind::Step, format!("sub {}", s.name), self.loc(s.pc as usize));
            self.edges.push((Edge::Entry(s.pc as usize), i));
        }
        let mut retry_jumps = Vec::new();
        // Menu keys, gathered first: an `anywhere` key is one part in every menu.
        let mut keys = MenuKeys::new();
        for pc in 0..p.code.len() {
            match (p.code[pc], p.code.get(pc + 1)) {
                (Instr::Collect(c), Some(&Instr::Switch(t))) => self.collect(pc, c, t, &mut retry_jumps, &mut keys),
                (Instr::Await(o), Some(&Instr::Switch(t))) => self.operation(pc, o, t),
                _ => {}
            }
        }
        for ((key, file, line), menus) in keys {
            let label = match menus.as_slice() {
                [(menu, ..)] => format!("menu {menu}: key {key}"),
                _ => format!("anywhere: key {key}"),
            };
            let at = self.line_with((file, line), &format!("key {key}"));
            let i = self.item(Kind::Option, label, at);
            for (_, table, case) in menus {
                self.edges.push((Edge::Case { table, case }, i));
            }
        }
        for pc in 0..p.code.len() {
            if matches!(p.code[pc], Instr::JumpIfNot(_)) && !retry_jumps.contains(&pc) {
                let at = self.loc(pc);
                let cond = (self.lines)(&at.0, at.1).map(|t| condition(&t)).unwrap_or_else(|| format!("if (line {})", at.1));
                let yes = self.item(Kind::Branch, format!("{cond}: true"), at.clone());
                let no = self.item(Kind::Branch, format!("{cond}: false"), at);
                self.edges.push((Edge::Fall(pc), yes));
                self.edges.push((Edge::Taken(pc), no));
            }
        }
    }

    /// A menu or `collect` at `pc` (its status switch uses table `t`).
    fn collect(&mut self, pc: usize, c: u32, t: u32, retry_jumps: &mut Vec<usize>, keys: &mut MenuKeys) {
        let p = self.p;
        let spec = &p.collects[c as usize];
        let slot = p.slots[spec.slot as usize].name.clone();
        let table = &p.tables[t as usize];
        let ok = table.cases.iter().find(|(v, _)| *v == Value::Num(0.into())).map(|(_, to)| *to as usize);
        // The key switch after status 0: `load KEY; switch`.
        let key_table = ok.and_then(|to| match (p.code.get(to), p.code.get(to + 1)) {
            (Some(&Instr::Load(s)), Some(&Instr::Switch(kt))) if s == spec.slot => Some(kt),
            _ => None,
        });
        if let Some(var) = slot.strip_suffix(".confirm") {
            if let Some(kt) = key_table {
                for (j, (v, _)) in p.tables[kt as usize].cases.iter().enumerate() {
                    let what = match v {
                        Value::Text(k) if &**k == "1" => "1 confirms",
                        Value::Text(k) if &**k == "2" => "2 re-enters",
                        _ => continue,
                    };
                    let at = self.line_with(self.loc(pc), "confirm");
                    let i = self.item(Kind::Option, format!("collect {var}: {what}"), at);
                    self.edges.push((Edge::Case { table: kt, case: j }, i));
                }
            }
            return;
        }
        let menu = (!spec.keys.is_empty()).then(|| slot.strip_suffix(".key")).flatten();
        let owner = match menu {
            Some(m) => format!("menu {m}"),
            None => format!("collect {slot}"),
        };
        if let (Some(m), Some(kt)) = (menu, key_table) {
            for (j, (v, to)) in p.tables[kt as usize].cases.iter().enumerate() {
                if let Value::Text(k) = v {
                    let (file, line) = self.loc(*to as usize);
                    let key = k.chars().next().unwrap_or('?');
                    keys.entry((key, file, line)).or_default().push((m.to_string(), kt, j));
                }
            }
        }
        // on timeout / on invalid: statuses 1 and 2; an empty handler jumps straight to the retry.
        for (j, (v, to)) in table.cases.iter().enumerate() {
            let name = match v {
                Value::Num(n) if *n == 1.into() => "timeout",
                Value::Num(n) if *n == 2.into() => "invalid",
                _ => continue,
            };
            if p.code.get(*to as usize) == Some(&Instr::Jump(table.default)) {
                continue;
            }
            let at = self.line_with(self.loc(*to as usize), &format!("on {name}"));
            let i = self.item(Kind::Handler, format!("{owner}: on {name}"), at);
            self.edges.push((Edge::Case { table: t, case: j }, i));
        }
        // on exhausted: falling through the retry count's jump back to the try.
        let try_pc = pc.saturating_sub(1) as u32;
        let retry = (table.default as usize..p.code.len()).take(16).find(|&q| p.code[q] == Instr::JumpIfNot(try_pc));
        if let Some(q) = retry {
            retry_jumps.push(q);
            if p.code.get(q + 1) != Some(&Instr::Hangup(HangupReason::RetriesExhausted)) {
                let at = self.line_with(self.loc(q + 1), "on exhausted");
                let i = self.item(Kind::Handler, format!("{owner}: on exhausted"), at);
                self.edges.push((Edge::Fall(q), i));
            }
        }
    }

    /// A request or hand-off at `pc`: each of its outcomes is a part.
    fn operation(&mut self, pc: usize, o: u32, t: u32) {
        let op = &self.p.ops[o as usize];
        let (kind, what) = match &op.kind {
            OpKind::Request { service, .. } => (Kind::ServiceOutcome, format!("request {service}")),
            OpKind::Enqueue { queue } => (Kind::HandoffOutcome, format!("enqueue {queue}")),
            OpKind::DialAgent => (Kind::HandoffOutcome, "dial agent".to_string()),
            OpKind::Record { category, .. } => (Kind::HandoffOutcome, format!("record \"{category}\"")),
        };
        for (j, (v, _)) in self.p.tables[t as usize].cases.iter().enumerate() {
            let Some(outcome) = v.as_num().and_then(|n| op.outcomes.get(n.to_usize()?)) else { continue };
            let i = self.item(kind, format!("{what}: {}", outcome.name), self.loc(pc));
            self.edges.push((Edge::Case { table: t, case: j }, i));
        }
    }
}

/// `} else if change < 0 {` → `else if change < 0`.
fn condition(line: &str) -> String {
    let t = line.trim().trim_start_matches('}').trim().trim_end_matches('{').trim();
    let t = t.split("//").next().unwrap_or(t).trim();
    if t.starts_with("if ") || t.starts_with("else if ") {
        t.to_string()
    } else {
        format!("if {t}")
    }
}

/// A copy of `p` with a probe on each edge: the probe prompts come after the
/// catalogue's (from the returned index on), one per edge, in edge order.
fn instrument(p: &Program, edges: &[(Edge, usize)]) -> Result<(Program, u32), String> {
    let base = p.prompts.len() as u32;
    let n = p.code.len();
    let line = |pc: usize| p.spans.as_ref().and_then(|s| s.lines.get(pc.min(n - 1)).copied()).unwrap_or((0, 0));
    let mut before = vec![None; n];
    let mut after = vec![None; n];
    for (k, (e, _)) in edges.iter().enumerate() {
        match *e {
            Edge::Entry(pc) => before[pc] = Some(base + k as u32),
            Edge::Fall(pc) => after[pc] = Some(base + k as u32),
            _ => {}
        }
    }
    let mut code = Vec::with_capacity(n + 3 * edges.len());
    let mut lines = Vec::with_capacity(code.capacity());
    let (mut at, mut entry) = (vec![0u32; n], vec![0u32; n]);
    for pc in 0..n {
        entry[pc] = code.len() as u32;
        if let Some(probe) = before[pc] {
            code.push(Instr::Play(probe));
            lines.push(line(pc));
        }
        at[pc] = code.len() as u32;
        code.push(p.code[pc]);
        lines.push(line(pc));
        if let Some(probe) = after[pc] {
            code.push(Instr::Play(probe));
            lines.push(line(pc + 1));
        }
    }
    let mut tables = p.tables.clone();
    for t in &mut tables {
        for (_, to) in &mut t.cases {
            *to = at[*to as usize];
        }
        t.default = at[t.default as usize];
    }
    // Jumps keep their targets (moved); probed ones go through a trampoline.
    let mut taken = BTreeMap::new();
    for (k, (e, _)) in edges.iter().enumerate() {
        let probe = base + k as u32;
        match *e {
            Edge::Case { table, case } => {
                let to = tables[table as usize].cases[case].1;
                tables[table as usize].cases[case].1 = code.len() as u32;
                code.push(Instr::Play(probe));
                code.push(Instr::Jump(to));
                lines.extend([line(0), line(0)]);
            }
            Edge::Taken(pc) => {
                let Instr::JumpIfNot(to) = p.code[pc] else { return Err(format!("no branch at {pc}")) };
                taken.insert(pc, code.len() as u32);
                code.push(Instr::Play(probe));
                code.push(Instr::Jump(at[to as usize]));
                lines.extend([line(pc), line(pc)]);
            }
            _ => {}
        }
    }
    for pc in 0..n {
        let i = at[pc] as usize;
        code[i] = match p.code[pc] {
            Instr::Jump(t) => Instr::Jump(at[t as usize]),
            Instr::JumpIfNot(t) => Instr::JumpIfNot(taken.get(&pc).copied().unwrap_or(at[t as usize])),
            other => other,
        };
    }
    let mut q = p.clone();
    q.code = code;
    q.tables = tables;
    for e in &mut q.entries {
        e.pc = at[e.pc as usize];
    }
    for node in &mut q.nodes {
        node.pc = at[node.pc as usize];
    }
    for s in &mut q.subs {
        s.pc = entry[s.pc as usize];
    }
    let langs = p.languages.len();
    for k in 0..edges.len() {
        q.prompts.push(Prompt { id: format!("probe.{k}"), text: vec![String::new(); langs], audio: vec![None; langs] });
    }
    q.spans = p.spans.as_ref().map(|s| ivr_bytecode::SpanTable { files: s.files.clone(), lines });
    ivr_bytecode::verify(&q).map_err(|e| format!("the instrumented program does not verify: {e}"))?;
    Ok((q, base))
}

/// How much of one flow its scenarios reached.
pub struct Report<'a> {
    pub flow: String,
    pub scenarios: usize,
    /// Per kind: reached, total, and the parts never reached.
    pub kinds: Vec<(Kind, usize, usize, Vec<&'a Item>)>,
}

impl<'a> Report<'a> {
    pub fn new(flow: String, scenarios: usize, items: &'a [Item], reached: &[bool]) -> Report<'a> {
        // Files in the order the flow meets them (the main file first), then lines.
        let mut files: Vec<&str> = Vec::new();
        for i in items {
            if !files.contains(&i.file.as_str()) {
                files.push(&i.file);
            }
        }
        let rank = |i: &Item| (files.iter().position(|f| *f == i.file), i.line);
        let kinds = Kind::ALL
            .iter()
            .map(|&k| {
                let of: Vec<usize> = (0..items.len()).filter(|&i| items[i].kind == k).collect();
                let hit = of.iter().filter(|&&i| reached[i]).count();
                let mut missed: Vec<&Item> = of.iter().filter(|&&i| !reached[i]).map(|&i| &items[i]).collect();
                missed.sort_by_key(|i| rank(i));
                (k, hit, of.len(), missed)
            })
            .collect();
        Report { flow, scenarios, kinds }
    }

    /// Reached of all parts, in percent (100 when there is nothing to reach).
    pub fn percent(&self) -> f64 {
        let (hit, total) = self.kinds.iter().fold((0, 0), |(h, t), (_, kh, kt, _)| (h + kh, t + kt));
        pct(hit, total)
    }

    pub fn to_json(&self, root: &str) -> Json {
        let kinds: serde_json::Map<String, Json> = self
            .kinds
            .iter()
            .map(|(k, hit, total, missed)| {
                let missed: Vec<Json> = missed.iter().map(|i| json!({"label": i.label, "at": at(root, i)})).collect();
                (k.key().to_string(), json!({"reached": hit, "total": total, "percent": round1(pct(*hit, *total)), "missed": missed}))
            })
            .collect();
        json!({"flow": self.flow, "scenarios": self.scenarios, "percent": round1(self.percent()), "kinds": kinds})
    }

    pub fn render(&self, root: &str) -> String {
        let mut o = String::new();
        let (hit, total) = self.kinds.iter().fold((0, 0), |(h, t), (_, kh, kt, _)| (h + kh, t + kt));
        o.push_str(&format!("coverage of {}: {:.1}% ({hit} of {total}, {} scenario{})\n", self.flow, self.percent(), self.scenarios, if self.scenarios == 1 { "" } else { "s" }));
        for (k, hit, total, _) in &self.kinds {
            if *total == 0 {
                o.push_str(&format!("  {:<18}   none\n", k.name()));
            } else {
                o.push_str(&format!("  {:<18} {:>5.1}%  {hit}/{total}\n", k.name(), pct(*hit, *total)));
            }
        }
        let missed: Vec<_> = self.kinds.iter().flat_map(|(k, _, _, m)| m.iter().map(move |i| (k, i))).collect();
        if !missed.is_empty() {
            o.push_str("  never reached:\n");
            for (k, i) in missed {
                o.push_str(&format!("    {:<18} {}  {}\n", k.name(), at(root, i), i.label));
            }
        }
        o
    }
}

fn at(root: &str, i: &Item) -> String {
    let file = if root.is_empty() || root == "." { i.file.clone() } else { format!("{root}/{}", i.file) };
    format!("{file}:{}", i.line)
}

fn pct(hit: usize, total: usize) -> f64 {
    if total == 0 {
        100.0
    } else {
        hit as f64 * 100.0 / total as f64
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(src: &str) -> (Program, ivr_compiler::SourceMap) {
        let prompts = "[a]\nzh = \"甲\"\n[b]\nzh = \"乙\"\n";
        let world = ivr_compiler::MemoryWorld::new().with("main.ivr", src).with("prompts.toml", prompts);
        let c = ivr_compiler::compile(&world, "main.ivr");
        assert!(!c.has_errors(), "{:?}", c.diagnostics);
        (c.program.unwrap(), c.sources)
    }

    const FLOW: &str = "languages zh\nentry 1 -> m\nanywhere {\n    key 0 -> m\n}\nvar n = 0\nmenu m {\n    prompt a\n    key 1 -> s\n    key 2 {\n        play b\n        goto m\n    }\n    on timeout { play b }\n    on exhausted -> s\n}\nmenu m2 {\n    prompt a\n    key 1 -> m\n    on exhausted -> s\n}\nstep s {\n    if n > 0 {\n        play a\n    } else {\n        play b\n    }\n    hangup\n}\n";

    #[test]
    fn the_parts_are_what_the_designer_wrote() {
        let (p, sources) = compile(FLOW);
        let lines = |file: &str, line: u32| {
            sources.files().find(|(_, s)| s.name == file).and_then(|(_, s)| s.text.lines().nth(line as usize - 1).map(str::to_string))
        };
        let plan = Plan::new(&p, &lines).unwrap();
        let labels: Vec<String> = plan.items.iter().map(|i| format!("{}:{} {}", i.kind.key(), i.line, i.label)).collect();
        assert_eq!(
            labels,
            [
                "steps:7 menu m",
                "steps:17 menu m2",
                "steps:22 step s",
                "handlers:14 menu m: on timeout",
                "handlers:15 menu m: on exhausted",
                "handlers:20 menu m2: on exhausted",
                "options:4 anywhere: key 0",
                "options:9 menu m: key 1",
                "options:19 menu m2: key 1",
                "options:10 menu m: key 2",
                "branches:23 if n > 0: true",
                "branches:23 if n > 0: false",
            ]
        );
    }

    #[test]
    fn the_instrumented_program_verifies_and_keeps_the_original_prompts() {
        let (p, _) = compile(FLOW);
        let plan = Plan::new(&p, &|_, _| None).unwrap();
        assert_eq!(plan.probes_from as usize, p.prompts.len());
        assert_eq!(plan.program.prompts[..p.prompts.len()], p.prompts[..]);
        assert_eq!(plan.program.prompts.len() - p.prompts.len(), plan.probe_item.len());
        assert!(plan.items.iter().any(|i| i.label == "if (line 23): true"));
    }
}
