//! `ivr test`: runs scenario files against their flows on the simulated
//! clock, in this process, and reports as text, JSON or JUnit XML, with
//! coverage when asked.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use ivr_bytecode::{contract, OpKind, Program};
use serde_json::{json, Value as Json};

use crate::coverage::{self, Plan};
use crate::expect::{self, Failure};
use crate::scenario::{self, EndExpect, Scenario};
use crate::sim::{self, AnswerOrder, Cue, Record, Stubs};

/// How `ivr test` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Human,
    Json,
}

/// The settings of one `ivr test` run.
pub struct Options {
    pub output: Output,
    /// Write JUnit XML here as well.
    pub junit: Option<PathBuf>,
    pub coverage: bool,
    /// Fail when a flow's coverage is below this percentage.
    pub min_coverage: Option<f64>,
    /// Show every call's transcript, passed or not (human output).
    pub transcripts: Transcripts,
}

/// Which calls' transcripts the human output shows in full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transcripts {
    /// Failed calls show the lines around each mismatch.
    AroundFailures,
    /// Every call's whole transcript too.
    All,
}

/// A flow, compiled once for all its scenarios.
struct Flow {
    /// As the first scenario (or folder) naming it spelt it.
    path: PathBuf,
    /// The program, or why there is none.
    program: Result<Arc<Program>, String>,
    /// The folder the flow's source names are relative to.
    root: String,
    plan: Option<Plan>,
    reached: Vec<bool>,
    scenarios: usize,
}

/// One scenario's result.
struct Ran<'a> {
    scenario: &'a Scenario,
    failures: Vec<Failure>,
    /// The human transcript, secrets masked.
    transcript: Vec<String>,
    elapsed_s: f64,
}

impl Ran<'_> {
    fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// `ivr test PATH…`.
pub fn run(paths: &[PathBuf], opts: &Options) -> Result<ExitCode, String> {
    let started = Instant::now();
    let mut files = Vec::new();
    // Flows by where they are on disk (one flow however a scenario spells its
    // path), each with the path it is shown by.
    let mut in_scope: BTreeMap<PathBuf, PathBuf> = BTreeMap::new();
    for p in paths {
        if !p.exists() {
            return Err(format!("cannot read `{}`: no such file or directory", p.display()));
        }
        scenario::find(p, &mut files).map_err(|e| format!("cannot read `{}`: {e}", p.display()))?;
        if p.is_dir() && opts.coverage {
            // Flows under a folder count for coverage even without a scenario.
            for f in crate::root_flows(p)? {
                let f = scenario::normalize(&f);
                in_scope.entry(same_file(&f)).or_insert(f);
            }
        }
    }
    if files.is_empty() {
        return Err(format!("no scenario files (*{}) in {}", scenario::SUFFIX, paths.iter().map(|p| format!("`{}`", p.display())).collect::<Vec<_>>().join(", ")));
    }
    let mut scenarios = Vec::new();
    let mut unreadable = Vec::new();
    for f in &files {
        match scenario::load(f) {
            Ok(s) => scenarios.extend(s),
            Err(e) => unreadable.push(e),
        }
    }
    if !unreadable.is_empty() {
        for e in &unreadable {
            eprintln!("error: {e}");
        }
        eprintln!("{} scenario file{} cannot be used; nothing was run", unreadable.len(), if unreadable.len() == 1 { "" } else { "s" });
        return Ok(ExitCode::from(2));
    }
    for s in &scenarios {
        in_scope.entry(same_file(&s.flow)).or_insert_with(|| s.flow.clone());
    }
    let mut flows: BTreeMap<PathBuf, Flow> = BTreeMap::new();
    for (key, path) in &in_scope {
        flows.insert(key.clone(), load_flow(path, opts.coverage));
    }
    let mut results = Vec::with_capacity(scenarios.len());
    for s in &scenarios {
        let flow = flows.get_mut(&same_file(&s.flow)).expect("every scenario's flow is loaded");
        flow.scenarios += 1;
        results.push(run_one(s, flow));
    }
    let elapsed = started.elapsed();
    let reports: Vec<(coverage::Report, String)> = if opts.coverage {
        flows
            .iter()
            .map(|(_, f)| {
                let items = f.plan.as_ref().map_or(&[][..], |p| &p.items[..]);
                (coverage::Report::new(f.path.display().to_string(), f.scenarios, items, &f.reached), f.root.clone())
            })
            .collect()
    } else {
        Vec::new()
    };
    let uncompiled: Vec<String> = flows.values().filter_map(|f| f.program.as_ref().err().cloned()).collect();
    let below: Vec<String> = match opts.min_coverage {
        Some(min) => reports
            .iter()
            .zip(flows.values())
            .filter(|((r, _), f)| r.percent() < min || (f.program.is_err() && min > 0.0))
            .map(|((r, _), _)| format!("coverage of {} is {:.1}%, below --min-coverage {min}", r.flow, r.percent()))
            .collect(),
        None => Vec::new(),
    };
    let failed = results.iter().filter(|r| !r.passed()).count();
    if let Some(path) = &opts.junit {
        std::fs::write(path, junit(&results, elapsed.as_secs_f64())).map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
    }
    let mut out = String::new();
    match opts.output {
        Output::Human => {
            out.push_str(&human(&results, opts.transcripts));
            for (r, root) in &reports {
                out.push('\n');
                out.push_str(&r.render(root));
            }
            for e in &uncompiled {
                out.push_str(&format!("{e}\n"));
            }
            out.push_str(&format!(
                "\n{} call{}: {} passed, {failed} failed ({} ms)\n",
                results.len(),
                if results.len() == 1 { "" } else { "s" },
                results.len() - failed,
                elapsed.as_millis()
            ));
            for b in &below {
                out.push_str(&format!("{b}\n"));
            }
        }
        Output::Json => {
            let mut v = json!({
                "passed": results.len() - failed,
                "failed": failed,
                "scenarios": results.iter().map(ran_json).collect::<Vec<_>>(),
            });
            if opts.coverage {
                v["coverage"] = reports.iter().map(|(r, root)| r.to_json(root)).collect::<Vec<_>>().into();
            }
            if let Some(min) = opts.min_coverage {
                v["min_coverage"] = json!({"percent": min, "below": below});
            }
            out = serde_json::to_string_pretty(&v).map_err(|e| e.to_string())? + "\n";
        }
    }
    // A reader that stops early (`| head`) is not an error of the tests.
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), out.as_bytes());
    Ok(if failed > 0 || !below.is_empty() { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// Where a file is on disk, to tell two spellings of one flow apart from two flows.
fn same_file(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

fn load_flow(path: &Path, coverage: bool) -> Flow {
    let mut flow = Flow { path: path.to_path_buf(), program: Err(String::new()), root: String::new(), plan: None, reached: Vec::new(), scenarios: 0 };
    let (c, root) = match crate::compile_flow(path) {
        Ok(x) => x,
        Err(e) => {
            flow.program = Err(e);
            return flow;
        }
    };
    flow.root = root.clone();
    let Some(program) = c.program.as_ref() else {
        crate::print_human(&c, &root);
        flow.program = Err(format!("{} does not compile (see `ivr check {}`)", path.display(), path.display()));
        return flow;
    };
    if coverage {
        let lines = |file: &str, line: u32| -> Option<String> {
            let id = c.sources.find(file)?;
            c.sources.get(id).text.lines().nth(line.checked_sub(1)? as usize).map(str::to_string)
        };
        match Plan::new(program, &lines) {
            Ok(plan) => {
                flow.reached = vec![false; plan.items.len()];
                flow.plan = Some(plan);
            }
            Err(e) => eprintln!("warning: no coverage for {}: {e}", path.display()),
        }
    }
    flow.program = Ok(Arc::new(c.program.unwrap()));
    flow
}

/// Runs one scenario (twice with coverage: with and without probes).
fn run_one<'a>(s: &'a Scenario, flow: &mut Flow) -> Ran<'a> {
    let started = Instant::now();
    let mut ran = Ran { scenario: s, failures: Vec::new(), transcript: Vec::new(), elapsed_s: 0.0 };
    let program = match &flow.program {
        Ok(p) => Arc::clone(p),
        Err(e) => {
            ran.failures.push(Failure::new("flow", e.clone()));
            return ran;
        }
    };
    ran.failures = problems(s, &program);
    if !ran.failures.is_empty() {
        return ran;
    }
    let call = call(s, &program, None);
    let (records, _) = expect::clean(call.records);
    ran.transcript = records.iter().map(Record::to_human).collect();
    let observed = expect::observe(&records);
    let fault_at = || records.iter().position(|r| r.data.get("event") == Some(&json!("fault")));
    match &call.ended {
        Err(e) => ran.failures.push(Failure { at: records.len().checked_sub(1), ..Failure::new("call", e.clone()) }),
        Ok(sim::Ended::Fault(m)) if s.expect.outcome != Some(EndExpect::Fault) => {
            ran.failures.push(Failure { at: fault_at(), ..Failure::new("fault", format!("the call ended in a fault: {m}")) });
        }
        Ok(_) => {}
    }
    // Once per service, where it was first asked.
    let mut unanswered: Vec<(&str, usize, usize)> = Vec::new();
    for u in &observed.unanswered {
        match unanswered.iter_mut().find(|(s, ..)| *s == u.shown) {
            Some((_, _, n)) => *n += 1,
            None => unanswered.push((&u.shown, u.at, 1)),
        }
    }
    for (service, at, n) in unanswered {
        let times = if n > 1 { format!(" (asked {n} times)") } else { String::new() };
        let f = Failure::new("stubs", format!("nothing answers `{service}`{times}: give it an answer, e.g. stubs.{service} = \"{}\"", example_outcome(&program, service)));
        ran.failures.push(Failure { at: Some(at), ..f });
    }
    let secret = |service: &str, arg: &str| secret_arg(&program, service, arg);
    ran.failures.extend(expect::check(&s.expect, &observed, records.len(), &secret));
    if call.moves_left > 0 && call.ended.is_ok() {
        let f = Failure::new("keys", format!("the call ended with {} of the caller's moves unused", call.moves_left));
        ran.failures.push(Failure { at: records.len().checked_sub(1), ..f });
    }
    if let Some(plan) = &flow.plan {
        let probed = self::call(s, &plan.program, Some(plan.probes_from));
        let (with_probes, probes) = expect::clean(probed.records);
        if with_probes.iter().map(Record::to_json).eq(records.iter().map(Record::to_json)) {
            plan.mark(&mut flow.reached, &with_probes, &probes);
        } else {
            ran.failures.push(Failure::new("coverage", "the call went differently with coverage probes: a bug in `ivr test --coverage`, please report it with this scenario"));
        }
    }
    ran.elapsed_s = started.elapsed().as_secs_f64();
    ran
}

/// A simulated call's transcript and end.
struct Call {
    records: Vec<Record>,
    ended: Result<sim::Ended, String>,
    moves_left: usize,
}

fn call(s: &Scenario, program: &Arc<Program>, probes_from: Option<u32>) -> Call {
    let zone = s.zone.clone().or_else(|| program.hours.first().map(|h| h.zone.clone())).unwrap_or_else(|| "UTC".into());
    let wall_clock_ms = match scenario::wall_clock_ms(&s.at, &zone) {
        Ok(ms) => ms,
        Err(e) => return Call { records: Vec::new(), ended: Err(e), moves_left: 0 },
    };
    let cfg = sim::SimConfig {
        number: s.dialed.clone().or_else(|| program.entries.first().map(|e| e.number.clone())).unwrap_or_default(),
        caller: s.caller.clone(),
        language: s.language.clone(),
        wall_clock_ms,
        overrides: Stubs { rules: s.stubs.clone(), order: AnswerOrder::InTurn },
        http: None,
        backend: None,
        stubs: Stubs::default(),
        call_id: format!("test:{}:{}", s.file.display(), s.index),
        max_silences: 0,
        unanswered: sim::Unanswered::Report,
        probes_from,
    };
    let mut caller: VecDeque<Cue> = s.keys.clone();
    let mut records = Vec::new();
    let ended = sim::run(Arc::clone(program), &cfg, &mut caller, &mut |r: &Record| records.push(r.clone()));
    Call { records, ended, moves_left: caller.len() }
}

/// What a scenario asks that its flow cannot do: a number it does not answer,
/// a language it does not speak, answers that are not its services' outcomes.
fn problems(s: &Scenario, p: &Program) -> Vec<Failure> {
    let mut out = Vec::new();
    if let Some(d) = &s.dialed {
        if !p.entries.iter().any(|e| &e.number == d) {
            let numbers: Vec<&str> = p.entries.iter().map(|e| e.number.as_str()).collect();
            out.push(Failure::new("dialed", format!("the flow answers no number {d} (it answers {})", numbers.join(", "))));
        }
    }
    if let Some(l) = &s.language {
        if p.language_index(l).is_none() {
            out.push(Failure::new("language", format!("the flow does not speak `{l}` (it speaks {})", p.languages.join(", "))));
        }
    }
    for r in s.expect.requests.iter().flatten() {
        if let Ok((name, args)) = scenario::parse_request(r) {
            for (k, v) in args {
                if v != "****" && secret_arg(p, &name, &k) {
                    let shown = expect::mask_request(r, &|n, a| secret_arg(p, n, a));
                    out.push(Failure::new("requests", format!("expect.requests: `{k}` of {name} is secret and always shows as ****: write `{shown}`")));
                }
            }
        }
    }
    for (service, rules) in &s.stubs {
        let specs: Vec<&ivr_bytecode::OpSpec> = p
            .ops
            .iter()
            .filter(|o| match &o.kind {
                OpKind::Request { service: n, .. } => n == service,
                other => other.name() == service,
            })
            .collect();
        let Some(spec) = specs.first() else {
            let mut asked: Vec<String> = p.ops.iter().map(|o| match &o.kind {
                OpKind::Request { service, .. } => service.clone(),
                other => other.name().to_string(),
            }).collect();
            asked.sort();
            asked.dedup();
            let names: Vec<&str> = asked.iter().map(String::as_str).collect();
            let hint = ivr_syntax::closest(service, &names).map(|b| format!(" (did you mean `{b}`?)")).unwrap_or_default();
            out.push(Failure::new("stubs", format!("stubs.{service}: the flow never asks for `{service}`{hint}; it asks for {}", names.join(", "))));
            continue;
        };
        let outcomes: Vec<&str> = match &spec.kind {
            OpKind::Request { .. } => spec.outcomes.iter().map(|o| o.name.as_str()).collect(),
            OpKind::Enqueue { .. } => contract::ENQUEUE_NAMES.to_vec(),
            OpKind::DialAgent => contract::DIAL_NAMES.to_vec(),
            OpKind::Record { .. } => contract::RECORD_NAMES.to_vec(),
        };
        let params: Vec<String> = match &spec.kind {
            OpKind::Request { .. } => spec.params.clone(),
            OpKind::Enqueue { .. } => vec!["queue".into()],
            OpKind::DialAgent => vec!["work_number".into()],
            OpKind::Record { .. } => vec!["category".into()],
        };
        for r in rules {
            if !outcomes.contains(&r.outcome.as_str()) {
                out.push(Failure::new("stubs", format!("stubs.{service}: `{}` is not an outcome of {service} ({})", r.outcome, outcomes.join(", "))));
                continue;
            }
            for k in r.when.keys() {
                if !params.contains(k) {
                    out.push(Failure::new("stubs", format!("stubs.{service}: `when` names `{k}`, not an argument of {service} ({})", params.join(", "))));
                }
            }
            let declared = spec.outcomes.iter().find(|o| o.name == r.outcome).map(|o| &o.fields[..]).unwrap_or(&[]);
            for (name, ty, _) in declared {
                match r.fields.get(name) {
                    None => out.push(Failure::new("stubs", format!("stubs.{service}: outcome `{}` needs field `{name}` ({})", r.outcome, ty.name()))),
                    Some(v) if sim::field_value(v, *ty).is_none() => {
                        out.push(Failure::new("stubs", format!("stubs.{service}: field `{name}` of `{}` must be {}, found {v}", r.outcome, ty.name())))
                    }
                    Some(_) => {}
                }
            }
            for name in r.fields.keys() {
                if !declared.iter().any(|(n, ..)| n == name) {
                    out.push(Failure::new("stubs", format!("stubs.{service}: outcome `{}` has no field `{name}`", r.outcome)));
                }
            }
        }
    }
    out
}

/// Whether a request of `service` can carry a secret in `arg` (a PIN, a password).
fn secret_arg(p: &Program, service: &str, arg: &str) -> bool {
    p.ops.iter().any(|o| {
        matches!(&o.kind, OpKind::Request { service: s, .. } if s == service)
            && o.params.iter().zip(&o.secret_params).any(|(n, &secret)| secret && n == arg)
    })
}

/// The first declared outcome of a service, for a hint.
fn example_outcome(p: &Program, service: &str) -> String {
    p.ops
        .iter()
        .find_map(|o| match &o.kind {
            OpKind::Request { service: s, .. } if s == service => o.outcomes.first().map(|o| o.name.clone()),
            OpKind::Enqueue { .. } if service == "enqueue" => Some("served".into()),
            OpKind::DialAgent if service == "dial_agent" => Some("served".into()),
            OpKind::Record { .. } if service == "record" => Some("saved".into()),
            _ => None,
        })
        .unwrap_or_else(|| "ok".into())
}

fn title(s: &Scenario) -> String {
    format!("{} · {}", s.file.display(), s.name)
}

fn human(results: &[Ran], transcripts: Transcripts) -> String {
    let mut o = String::new();
    for r in results {
        o.push_str(&format!("{} {}\n", if r.passed() { "ok  " } else { "FAIL" }, title(r.scenario)));
        if transcripts == Transcripts::All {
            for l in &r.transcript {
                o.push_str(&format!("      {l}\n"));
            }
        }
    }
    for r in results.iter().filter(|r| !r.passed()) {
        o.push_str(&format!("\n──── FAIL {}  (flow {})\n", title(r.scenario), r.scenario.flow.display()));
        for f in &r.failures {
            o.push_str(&format!("{}: {}\n", f.what, f.message));
            for d in &f.diff {
                o.push_str(&format!("    {d}\n"));
            }
            let context = f.context(&r.transcript);
            if !context.is_empty() {
                o.push_str("  transcript:\n");
                for l in context {
                    o.push_str(&format!("  {l}\n"));
                }
            }
        }
    }
    o
}

fn ran_json(r: &Ran) -> Json {
    json!({
        "file": r.scenario.file.display().to_string(),
        "name": r.scenario.name,
        "flow": r.scenario.flow.display().to_string(),
        "passed": r.passed(),
        "failures": r.failures.iter().map(|f| f.to_json(&r.transcript)).collect::<Vec<_>>(),
    })
}

/// JUnit XML: a `testsuite` per scenario file, a `testcase` per call.
fn junit(results: &[Ran], elapsed_s: f64) -> String {
    let failed = results.iter().filter(|r| !r.passed()).count();
    let mut o = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    o.push_str(&format!("<testsuites name=\"ivr test\" tests=\"{}\" failures=\"{failed}\" errors=\"0\" time=\"{elapsed_s:.3}\">\n", results.len()));
    let mut files: Vec<&Path> = Vec::new();
    for r in results {
        if !files.contains(&r.scenario.file.as_path()) {
            files.push(&r.scenario.file);
        }
    }
    for file in files {
        let cases: Vec<&Ran> = results.iter().filter(|r| r.scenario.file == file).collect();
        let f = cases.iter().filter(|r| !r.passed()).count();
        let time: f64 = cases.iter().map(|r| r.elapsed_s).sum();
        o.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{f}\" errors=\"0\" time=\"{time:.3}\">\n",
            xml(&file.display().to_string()),
            cases.len()
        ));
        for r in cases {
            let class = r.scenario.flow.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let head = format!(
                "    <testcase name=\"{}\" classname=\"{}\" file=\"{}\" time=\"{:.3}\"",
                xml(&r.scenario.name),
                xml(&class),
                xml(&file.display().to_string()),
                r.elapsed_s
            );
            if r.passed() {
                o.push_str(&head);
                o.push_str("/>\n");
                continue;
            }
            o.push_str(&head);
            o.push_str(">\n");
            for f in &r.failures {
                let mut body = format!("{}\n", f.message);
                for d in &f.diff {
                    body.push_str(&format!("  {d}\n"));
                }
                let context = f.context(&r.transcript);
                if !context.is_empty() {
                    body.push_str("transcript:\n");
                    for l in context {
                        body.push_str(&format!("{l}\n"));
                    }
                }
                o.push_str(&format!(
                    "      <failure type=\"{}\" message=\"{}\">{}</failure>\n",
                    xml(&f.what),
                    xml(&format!("{}: {}", f.what, f.message)),
                    xml(&body)
                ));
            }
            o.push_str(&format!("      <system-out>{}</system-out>\n", xml(&r.transcript.join("\n"))));
            o.push_str("    </testcase>\n");
        }
        o.push_str("  </testsuite>\n");
    }
    o.push_str("</testsuites>\n");
    o
}

/// Text for XML content and attributes: the five escapes, and characters
/// XML 1.0 cannot hold left out.
fn xml(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            '\n' | '\t' | '\r' => o.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => o.push(c),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::xml;

    #[test]
    fn xml_text_is_escaped_and_unwritable_characters_dropped() {
        assert_eq!(xml("a<b & \"c\" 'd'>\u{1}\u{7}é ♪"), "a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;é ♪");
    }
}
