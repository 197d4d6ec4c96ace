//! `ivr sim`: a caller at the terminal (or a key script) driving a flow on a
//! simulated clock. Services are answered from stub files; nothing touches the
//! network. Secret input shows as `****`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use ivr_bytecode::{OpKind, Program, SayKind, Type, Value};
use ivr_call::host::ServiceCall;
use ivr_services::Backend;
use ivr_bytecode::contract::Outcome;
use ivr_vm::{Action, CallInfo, Event, Millis, OpId, PlayId, Session};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{json, Map};

/// A scripted caller's next move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Keys typed back to back when the flow next listens.
    Keys(String),
    /// Stay silent until the flow's next timeout.
    Silence,
    /// Hang up.
    Hangup,
}

/// Parses a key script: groups of keys separated by spaces; `.` is a silence
/// (let the current timeout pass); `h` hangs up.
pub fn parse_script(s: &str) -> Result<Vec<Step>, String> {
    let mut out = Vec::new();
    for tok in s.split_whitespace() {
        let mut keys = String::new();
        for c in tok.chars() {
            match c {
                '0'..='9' | '*' | '#' | 'A'..='D' => keys.push(c),
                '.' | 'h' => {
                    if !keys.is_empty() {
                        out.push(Step::Keys(std::mem::take(&mut keys)));
                    }
                    out.push(if c == '.' { Step::Silence } else { Step::Hangup });
                }
                other => return Err(format!("`{other}` is not a key (use 0-9 * # A-D, `.` for silence, `h` to hang up)")),
            }
        }
        if !keys.is_empty() {
            out.push(Step::Keys(keys));
        }
    }
    Ok(out)
}

/// One stubbed answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StubRule {
    /// Arguments that must match (all of them) for this answer to apply.
    #[serde(default)]
    pub when: BTreeMap<String, toml::Value>,
    pub outcome: String,
    #[serde(default)]
    pub fields: BTreeMap<String, toml::Value>,
    /// How long the service takes to answer.
    #[serde(default)]
    pub delay_ms: u64,
}

/// Stub answers by service name (`enqueue`, `dial_agent` and `record` for hand-offs).
#[derive(Debug, Clone, Default)]
pub struct Stubs {
    pub rules: BTreeMap<String, Vec<StubRule>>,
    pub order: AnswerOrder,
}

/// Which of a service's stub answers a request gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AnswerOrder {
    /// The first whose `when` matches (stub files, `--stub`).
    #[default]
    FirstMatch,
    /// The first whose `when` matches; answers without `when` take turns,
    /// the last one repeating (scenarios: "denied, then ok").
    InTurn,
}

impl Stubs {
    pub fn from_toml(text: &str) -> Result<Stubs, String> {
        let rules: BTreeMap<String, Vec<StubRule>> = toml::from_str(text).map_err(|e| e.to_string())?;
        Ok(Stubs { rules, order: AnswerOrder::FirstMatch })
    }

    /// Adds `SERVICE=OUTCOME[,field=value…][,delay_ms=N]` from the command line.
    pub fn add_arg(&mut self, arg: &str) -> Result<(), String> {
        let (service, rest) = arg.split_once('=').ok_or("expected SERVICE=OUTCOME[,field=value…]")?;
        let mut parts = rest.split(',');
        let outcome = parts.next().unwrap_or_default().trim().to_string();
        let mut fields = BTreeMap::new();
        let mut delay_ms = 0;
        for p in parts {
            let (k, v) = p.split_once('=').ok_or_else(|| format!("expected field=value, found `{p}`"))?;
            if k.trim() == "delay_ms" {
                delay_ms = v.trim().parse().map_err(|_| format!("delay_ms must be a whole number, found `{v}`"))?;
                continue;
            }
            fields.insert(k.trim().to_string(), toml::Value::String(v.trim().to_string()));
        }
        let rule = StubRule { when: BTreeMap::new(), outcome, fields, delay_ms };
        self.rules.entry(service.trim().to_string()).or_default().insert(0, rule);
        Ok(())
    }

    /// The answer to a request; `turns` counts the answers each service gave
    /// so far in this call.
    fn answer(&self, service: &str, args: &[(String, String)], turns: &mut BTreeMap<String, usize>) -> Option<&StubRule> {
        let rules = self.rules.get(service)?;
        let matches = |r: &StubRule| {
            r.when.iter().all(|(k, v)| {
                let want = match v {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                args.iter().any(|(n, a)| n == k && *a == want)
            })
        };
        match self.order {
            AnswerOrder::FirstMatch => rules.iter().find(|r| matches(r)),
            AnswerOrder::InTurn => {
                if let Some(r) = rules.iter().find(|r| !r.when.is_empty() && matches(r)) {
                    return Some(r);
                }
                let plain: Vec<&StubRule> = rules.iter().filter(|r| r.when.is_empty()).collect();
                let turn = turns.entry(service.to_string()).or_default();
                let r = plain.get(*turn).or(plain.last()).copied();
                *turn += 1;
                r
            }
        }
    }
}

fn stub_fields(rule: &StubRule, declared: Option<&ivr_bytecode::OutcomeSpec>) -> Vec<(String, Value)> {
    let Some(oc) = declared else { return Vec::new() };
    oc.fields
        .iter()
        .filter_map(|(name, ty, _)| Some((name.clone(), field_value(rule.fields.get(name)?, *ty)?)))
        .collect()
}

pub(crate) fn field_value(v: &toml::Value, ty: Type) -> Option<Value> {
    let text = match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => return (ty == Type::Bool).then_some(Value::Bool(*b)),
        _ => return None,
    };
    match ty {
        Type::Text => Some(Value::text(&text)),
        Type::Number => text.parse::<Decimal>().ok().map(Value::Num),
        Type::Bool => text.parse().ok().map(Value::Bool),
    }
}

/// How a value is spoken: the text of its segment prompts (what a live call
/// plays), or the value itself when it cannot be read in that language.
pub fn say_text(kind: SayKind, value: &Value, lang: &str) -> String {
    ivr_server::reading(kind, value, lang).map_or_else(|| value.to_string(), |r| r.text())
}

/// How long a prompt takes to speak, estimated from its text: about 4.5 Chinese
/// characters or 16 Latin letters a second, like a recorded announcer.
pub fn speaking_ms(text: &str) -> Millis {
    let ms: Millis = text.chars().map(|c| if c.is_ascii() { 60 } else { 220 }).sum();
    ms.max(300)
}

/// One line of a transcript.
#[derive(Debug, Clone)]
pub struct Record {
    pub t_ms: Millis,
    pub data: Map<String, serde_json::Value>,
}

impl Record {
    /// The JSON form: one object with `t_ms` and `event`.
    pub fn to_json(&self) -> String {
        let mut m = Map::new();
        m.insert("t_ms".into(), json!(self.t_ms));
        m.extend(self.data.clone());
        serde_json::Value::Object(m).to_string()
    }

    /// The human form, one line.
    pub fn to_human(&self) -> String {
        let d = &self.data;
        let s = |k: &str| d.get(k).map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string)).unwrap_or_default();
        let body = match s("event").as_str() {
            "node" => format!("── {} {}", if d.get("menu") == Some(&json!(true)) { "menu" } else { "step" }, s("name")),
            "play" => format!("♪ {}  [{}]", s("text"), s("prompt")),
            "say" => format!("♪ {}  [say {} {}]", s("text"), s("as"), s("value")),
            "collect" => format!("… listening for {} (up to {} key{}{})", s("var"), s("max_digits"), if s("max_digits") == "1" { "" } else { "s" }, if d.get("secret") == Some(&json!(true)) { ", secret" } else { "" }),
            "key" if d.get("ahead") == Some(&json!(true)) => format!("☎ caller presses {} (typed ahead)", s("key")),
            "key" => format!("☎ caller presses {}", s("key")),
            "silence" => "☎ caller stays silent".to_string(),
            "timeout" => "⏱ timeout".to_string(),
            "stop" => "■ prompt stopped".to_string(),
            "language" => format!("language → {}", s("language")),
            "service" => format!("→ request {}({})", s("service"), d.get("args").map(|a| a.to_string()).unwrap_or_default()),
            "result" => format!("← {} {}{}", s("op"), s("outcome"), d.get("fields").filter(|f| f.as_object().is_some_and(|o| !o.is_empty())).map(|f| format!(" {f}")).unwrap_or_default()),
            "cancel" => format!("✕ gave up waiting for {}", s("op")),
            "error" => format!("! {} failed: {}", s("op"), s("message")),
            "enqueue" => format!("→ enqueue {} (priority {})", s("queue"), s("priority")),
            "dial_agent" => format!("→ dial agent {}", s("work_number")),
            "record" => format!("→ record {} (max {} ms)", s("category"), s("max_ms")),
            "transfer" => format!("→ transfer to {}", s("target")),
            "fault" => format!("! fault: {}", s("message")),
            "hangup" => format!("✆ hang up ({})", s("reason")),
            "wait" => format!("☎ caller waits {} ms", s("ms")),
            "unanswered" => format!("! nothing answers {}: answered failed", s("op")),
            "probe" => format!("· probe {}", s("probe")),
            other => other.to_string(),
        };
        format!("[{:>4}.{:03}s] {body}", self.t_ms / 1000, self.t_ms % 1000)
    }
}

/// What a call does with an operation nothing answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unanswered {
    /// The usual answer: `failed` for services, `served` / `saved` for hand-offs (`ivr sim`).
    Default,
    /// Report it (an `unanswered` line) and answer `failed`: a scenario must say (`ivr test`).
    Report,
}

/// Settings of one simulated call.
pub struct SimConfig {
    pub number: String,
    pub caller: String,
    pub language: Option<String>,
    pub wall_clock_ms: i64,
    /// Answers from `--stub`: they win over everything.
    pub overrides: Stubs,
    /// Services configured to an HTTP backend (ivr.toml `[services.NAME]`).
    pub http: Option<Arc<dyn Backend>>,
    /// The embedded services (quotes, trading, subscriptions, survey).
    pub backend: Option<Arc<dyn Backend>>,
    /// Answers from the stub file, for services the backend does not provide.
    pub stubs: Stubs,
    /// Identifies the call: with the operation number it makes each request's
    /// idempotency key, so re-running a simulated call never doubles an order.
    pub call_id: String,
    /// Timeouts the caller sits through after the script ends before hanging up.
    pub max_silences: u32,
    /// What an operation no stub or service answers gets.
    pub unanswered: Unanswered,
    /// Prompts from this index on are coverage probes (see `coverage.rs`): each
    /// becomes a `probe` line, takes no time and is never heard.
    pub probes_from: Option<u32>,
}

/// What the caller can tell of the call when asked for a move.
#[derive(Debug, Clone, Copy)]
pub struct Moment<'a> {
    /// The variable the flow listens for, when a menu or `collect` is active.
    pub listening: Option<&'a str>,
    /// What it listens for is secret (a PIN): not to be echoed.
    pub secret: bool,
    /// A prompt (or hold music) is still playing.
    pub playing: bool,
}

impl Moment<'_> {
    /// The flow listens and has finished speaking: the moment a caller who
    /// hears the whole prompt presses keys.
    pub fn asked(&self) -> bool {
        self.listening.is_some() && !self.playing
    }
}

/// The caller's move at a moment of the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Move {
    /// Press these keys now, back to back.
    Keys(String),
    /// Stay silent until the flow's next timeout.
    Silence,
    /// Hang up now.
    Hangup,
    /// Do nothing for this long (the call goes on; timeouts pass).
    Wait(Millis),
    /// Nothing yet: ask again when something happens.
    NotYet,
    /// No moves left (only said when asked).
    Out,
}

/// Where the next keys come from.
/// How a secret's digit shows in transcripts (a real `*` key shows as `*`).
pub const SECRET_KEY: &str = "•";

pub trait Caller {
    /// The caller's move at this moment of the call.
    fn next(&mut self, moment: &Moment) -> Move;
}

/// A key script (`ivr sim --keys`): each step is taken when the flow asks.
impl Caller for VecDeque<Step> {
    fn next(&mut self, moment: &Moment) -> Move {
        if !moment.asked() {
            return Move::NotYet;
        }
        match self.pop_front() {
            Some(Step::Keys(k)) => Move::Keys(k),
            Some(Step::Silence) => Move::Silence,
            Some(Step::Hangup) => Move::Hangup,
            None => Move::Out,
        }
    }
}

/// When a scripted caller makes a move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// When the flow listens and its prompt has ended (the caller hears it out).
    Asked,
    /// As soon as the flow listens, while its prompt still plays (barge-in).
    During,
    /// At once, whether the flow listens or not (typed ahead).
    Now,
}

/// One move of a timed script (`ivr test` scenarios).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cue {
    Keys { keys: String, when: When },
    /// Stay silent until the flow's timeout passes (when asked).
    Silence,
    Hangup { when: When },
    /// Do nothing for this long.
    Wait(Millis),
}

impl Caller for VecDeque<Cue> {
    fn next(&mut self, moment: &Moment) -> Move {
        let ready = |when: When| match when {
            When::Asked => moment.asked(),
            When::During => moment.listening.is_some(),
            When::Now => true,
        };
        let Some(cue) = self.front() else {
            return if moment.asked() { Move::Out } else { Move::NotYet };
        };
        let go = match cue {
            Cue::Keys { when, .. } | Cue::Hangup { when } => ready(*when),
            Cue::Silence => moment.asked(),
            Cue::Wait(_) => true,
        };
        if !go {
            return Move::NotYet;
        }
        match self.pop_front() {
            Some(Cue::Keys { keys, .. }) => Move::Keys(keys),
            Some(Cue::Hangup { .. }) => Move::Hangup,
            Some(Cue::Silence) => Move::Silence,
            Some(Cue::Wait(ms)) => Move::Wait(ms),
            None => Move::Out,
        }
    }
}

/// One simulated call in progress.
struct Sim<'a> {
    program: Arc<Program>,
    cfg: &'a SimConfig,
    session: Session,
    now: Millis,
    pending: Vec<(Millis, Event)>,
    ops: BTreeMap<u32, String>,
    listening: String,
    secret: bool,
    /// When the prompts queued so far will have finished playing.
    media_free: Millis,
    /// The call ended in a fault (the flow's, or the loop guard's).
    fault: Option<String>,
    /// Answers taken so far per service (stubs answered in turn).
    turns: BTreeMap<String, usize>,
    /// Coverage probes waiting for their turn in the media queue.
    probe_plays: Vec<PlayId>,
    emit: &'a mut dyn FnMut(&Record),
}

impl Sim<'_> {
    fn out(&mut self, v: serde_json::Value) {
        if let serde_json::Value::Object(data) = v {
            (self.emit)(&Record { t_ms: self.now, data });
        }
    }

    fn lang(&self, l: u32) -> String {
        self.program.languages.get(l as usize).cloned().unwrap_or_default()
    }

    fn is_probe(&self, prompt: u32) -> bool {
        self.cfg.probes_from.is_some_and(|p| prompt >= p)
    }

    /// Whether a prompt the caller hears is still playing (probes are not heard).
    fn playing(&self) -> bool {
        self.pending.iter().any(|(_, e)| matches!(e, Event::PlayDone(id) if !self.probe_plays.contains(id)))
    }

    /// Reports and carries out every action the session has queued.
    fn drain(&mut self) {
        while let Some(a) = self.session.poll_action() {
            let now = self.now;
            match a {
                Action::EnterNode { name, menu } => self.out(json!({"event": "node", "name": name, "menu": menu})),
                Action::Play { id, prompt, .. } if self.is_probe(prompt) => {
                    // A probe takes its place in the media queue and no time.
                    let done = self.media_free.max(now);
                    self.media_free = done;
                    self.probe_plays.push(id);
                    let base = self.cfg.probes_from.unwrap_or(0);
                    self.out(json!({"event": "probe", "probe": prompt - base}));
                    self.pending.push((done, Event::PlayDone(id)));
                }
                Action::Play { id, prompt, lang: l, .. } => {
                    let p = &self.program.prompts[prompt as usize];
                    let text = p.text.get(l as usize).cloned().unwrap_or_default();
                    let done = self.media_free.max(now) + speaking_ms(&text);
                    self.media_free = done;
                    self.out(json!({"event": "play", "prompt": p.id, "text": text}));
                    self.pending.push((done, Event::PlayDone(id)));
                }
                Action::Say { id, kind, value, lang: l } => {
                    let text = say_text(kind, &value, &self.lang(l));
                    let done = self.media_free.max(now) + speaking_ms(&text);
                    self.media_free = done;
                    self.out(json!({"event": "say", "as": kind.name(), "value": value.to_string(), "text": text}));
                    self.pending.push((done, Event::PlayDone(id)));
                }
                Action::StopPlayback => {
                    // Stopping nothing but probes is not heard (nor reported).
                    let heard = self.playing() || self.cfg.probes_from.is_none();
                    self.pending.retain(|(_, e)| !matches!(e, Event::PlayDone(_)));
                    self.probe_plays.clear();
                    self.media_free = now;
                    if heard {
                        self.out(json!({"event": "stop"}));
                    }
                }
                Action::Listen { var, max_digits, secret } => {
                    self.out(json!({"event": "collect", "var": var, "max_digits": max_digits, "secret": secret}));
                    self.listening = var;
                    self.secret = secret;
                }
                Action::Request { op, service, args, timeout_ms } => {
                    let plain: Vec<(String, Value)> = args.iter().map(|a| (a.name.clone(), a.value.clone())).collect();
                    let shown: Map<String, serde_json::Value> = args
                        .iter()
                        .map(|a| (a.name.clone(), json!(if a.secret { "****".to_string() } else { a.value.to_string() })))
                        .collect();
                    self.out(json!({"event": "service", "service": service, "args": shown, "timeout_ms": timeout_ms}));
                    self.answer(op, &service, &plain, "failed");
                }
                Action::Enqueue { op, queue, priority, max_wait_ms } => {
                    self.out(json!({"event": "enqueue", "queue": queue, "priority": priority, "max_wait_ms": max_wait_ms}));
                    self.answer(op, "enqueue", &[("queue".into(), Value::text(&queue))], Outcome::Served.name());
                }
                Action::DialAgent { op, work_number, timeout_ms } => {
                    self.out(json!({"event": "dial_agent", "work_number": work_number, "timeout_ms": timeout_ms}));
                    self.answer(op, "dial_agent", &[("work_number".into(), Value::text(&work_number))], Outcome::Served.name());
                }
                Action::Record { op, category, max_ms } => {
                    self.out(json!({"event": "record", "category": category, "max_ms": max_ms}));
                    self.answer(op, "record", &[("category".into(), Value::text(&category))], Outcome::Saved.name());
                }
                Action::Cancel { op } => {
                    self.pending.retain(|(_, e)| !matches!(e, Event::Completed { op: o, .. } if *o == op));
                    let name = self.ops.get(&op.0).cloned().unwrap_or_default();
                    self.out(json!({"event": "cancel", "op": name}));
                }
                Action::SetLanguage { lang: l } => {
                    let l = self.lang(l);
                    self.out(json!({"event": "language", "language": l}));
                }
                Action::Transfer { target } => self.out(json!({"event": "transfer", "target": target})),
                Action::Fault { message, pc } => {
                    let line = self.program.line_of(pc as usize).map(|(f, l)| format!("{f}:{l}"));
                    self.fault = Some(match &line {
                        Some(at) => format!("{message} (at {at})"),
                        None => message.clone(),
                    });
                    self.out(json!({"event": "fault", "message": message, "at": line}));
                }
                Action::Hangup { reason } => self.out(json!({"event": "hangup", "reason": reason.name()})),
            }
        }
    }

    /// Schedules the answer to an operation: a `--stub`, else the embedded
    /// service, else the stub file, else `default`.
    fn answer(&mut self, op: OpId, service: &str, args: &[(String, Value)], default: &str) {
        self.ops.insert(op.0, service.to_string());
        let plain: Vec<(String, String)> = args.iter().map(|(n, v)| (n.clone(), v.to_string())).collect();
        // The flow's declaration of this operation types the answer's fields.
        let spec = self.program.ops.iter().find(|o| match &o.kind {
            OpKind::Request { service: s, .. } => s == service,
            other => other.name() == service,
        });
        let declared = |outcome: &str| spec.and_then(|s| s.outcomes.iter().find(|o| o.name == outcome));
        let (outcome, fields, delay) = if let Some(rule) = self.cfg.overrides.answer(service, &plain, &mut self.turns) {
            (rule.outcome.clone(), stub_fields(rule, declared(&rule.outcome)), rule.delay_ms)
        } else if let Some((backend, remote)) = (self.cfg.http.as_ref().map(|b| (b, true)).into_iter())
            .chain(self.cfg.backend.as_ref().map(|b| (b, false)))
            .find(|(b, _)| b.provides(service))
        {
            // The same request and answer typing as `ivr serve` (ivr_call::host).
            let call = ServiceCall::with_values(&self.program, service, args, format!("{}:{}", self.cfg.call_id, op.0));
            // A remote service's real latency becomes simulated time, so a slow
            // backend meets the flow's hold prompt and timeout as on a live call.
            let started = std::time::Instant::now();
            let result = ivr_server::services::call(&call, Some(backend.as_ref()), self.cfg.wall_clock_ms + self.now as i64);
            let latency = if remote { started.elapsed().as_millis() as Millis } else { 0 };
            match result {
                Ok((outcome, fields)) => (outcome, fields, latency),
                Err(e) => {
                    self.out(json!({"event": "error", "op": service, "message": e.to_string()}));
                    ("failed".to_string(), Vec::new(), latency)
                }
            }
        } else if let Some(rule) = self.cfg.stubs.answer(service, &plain, &mut self.turns) {
            (rule.outcome.clone(), stub_fields(rule, declared(&rule.outcome)), rule.delay_ms)
        } else if self.cfg.unanswered == Unanswered::Report {
            self.out(json!({"event": "unanswered", "op": service}));
            ("failed".to_string(), Vec::new(), 0)
        } else {
            (default.to_string(), Vec::new(), 0)
        };
        self.pending.push((self.now + delay, Event::Completed { op, outcome, fields }));
    }

    /// Delivers one event that is due; false when none is.
    fn deliver_due(&mut self) -> bool {
        self.pending.sort_by_key(|(t, _)| *t);
        let Some(i) = self.pending.iter().position(|(t, _)| *t <= self.now) else { return false };
        let (_, ev) = self.pending.remove(i);
        match &ev {
            Event::Completed { op, outcome, fields } => {
                let shown: Map<String, serde_json::Value> = fields.iter().map(|(k, v)| (k.clone(), json!(v.to_string()))).collect();
                let name = self.ops.get(&op.0).cloned().unwrap_or_default();
                self.out(json!({"event": "result", "op": name, "outcome": outcome, "fields": shown}));
            }
            Event::PlayDone(id) => self.probe_plays.retain(|p| p != id),
            _ => {}
        }
        self.session.handle_event(self.now, ev);
        true
    }

    fn hang_up(&mut self) {
        self.out(json!({"event": "hangup", "reason": "caller"}));
        self.session.handle_event(self.now, Event::Hangup);
        self.drain();
    }

    /// Presses keys back to back: each may stop a prompt (barge-in) or wait
    /// in the type-ahead buffer.
    fn press(&mut self, keys: &str) {
        for k in keys.chars() {
            let listening = self.session.is_collecting();
            // A secret's digit is shown as •, never as a `*` key the caller did not press.
            let shown = if self.secret && listening { SECRET_KEY.to_string() } else { k.to_string() };
            if listening {
                self.out(json!({"event": "key", "key": shown}));
            } else {
                // Typed ahead: the next menu or collect takes it.
                self.out(json!({"event": "key", "key": shown, "ahead": true}));
            }
            self.session.handle_event(self.now, Event::Digit(k));
            self.drain();
        }
    }
}

/// How a simulated call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Hung up, transferred, or the caller left.
    Normally,
    /// A runtime fault ended it (the message says where): a scripted call in
    /// CI should fail on it.
    Fault(String),
}

/// Runs one call to its end, passing each transcript line to `emit` as it happens.
pub fn run(program: Arc<Program>, cfg: &SimConfig, caller: &mut dyn Caller, emit: &mut dyn FnMut(&Record)) -> Result<Ended, String> {
    let info = CallInfo {
        dialed: cfg.number.clone(),
        caller: cfg.caller.clone(),
        language: cfg.language.clone(),
        wall_clock_ms: cfg.wall_clock_ms,
    };
    let session = Session::start(Arc::clone(&program), info, 0).map_err(|e| e.to_string())?;
    let mut sim = Sim {
        program,
        cfg,
        session,
        now: 0,
        pending: Vec::new(),
        ops: BTreeMap::new(),
        listening: String::new(),
        secret: false,
        media_free: 0,
        fault: None,
        turns: BTreeMap::new(),
        probe_plays: Vec::new(),
        emit,
    };
    let ended = |sim: &mut Sim| Ok(sim.fault.take().map_or(Ended::Normally, Ended::Fault));
    let mut silences = 0;
    // The caller does nothing until then (a scripted pause).
    let mut caller_busy_until: Option<Millis> = None;
    for _ in 0..1_000_000 {
        sim.drain();
        if sim.session.is_finished() {
            return ended(&mut sim);
        }
        // Events already due (prompts finished, instant answers) go first.
        if sim.deliver_due() {
            continue;
        }
        if caller_busy_until.is_some_and(|t| t <= sim.now) {
            caller_busy_until = None;
        }
        if caller_busy_until.is_none() {
            let listening = sim.session.is_collecting().then(|| sim.listening.clone());
            let moment = Moment { listening: listening.as_deref(), secret: sim.secret, playing: sim.playing() };
            match caller.next(&moment) {
                Move::Keys(keys) => {
                    sim.press(&keys);
                    continue;
                }
                Move::Hangup => {
                    sim.hang_up();
                    return ended(&mut sim);
                }
                Move::Silence => sim.out(json!({"event": "silence"})),
                Move::Wait(ms) => {
                    sim.out(json!({"event": "wait", "ms": ms}));
                    caller_busy_until = Some(sim.now + ms);
                }
                Move::NotYet => {}
                Move::Out => {
                    silences += 1;
                    if silences > cfg.max_silences {
                        sim.hang_up();
                        return ended(&mut sim);
                    }
                    sim.out(json!({"event": "silence"}));
                }
            }
        }
        let next_pending = sim.pending.iter().map(|(t, _)| *t).min();
        let next = [sim.session.poll_timeout(), next_pending, caller_busy_until].into_iter().flatten().min();
        match next {
            Some(t) => {
                sim.now = sim.now.max(t);
                if sim.session.poll_timeout().is_some_and(|d| d <= sim.now) {
                    sim.out(json!({"event": "timeout"}));
                    let now = sim.now;
                    sim.session.handle_timeout(now);
                }
            }
            None => return Err("the flow is waiting for something the simulator cannot give it".into()),
        }
    }
    Err("the call did not end after a million steps".into())
}
