//! Scenario files for `ivr test`: each call a designer wants to keep working,
//! written down beside the flows (`*.test.toml`, documented in `docs/testing.md`).
//!
//! A file is one call, or several (`[[call]]`) sharing the settings at its top.
//! This module reads them into [`Scenario`]s; it reads no flow and runs nothing.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use crate::sim::{self, Cue, StubRule, When};

/// The suffix that marks a scenario file.
pub const SUFFIX: &str = ".test.toml";

/// When a scenario gives no `at`: a Monday morning, inside the shipped flows'
/// agent and trading hours (the same instant every run).
pub const DEFAULT_AT: &str = "2026-11-23 10:00";

/// The caller's number when a scenario gives none.
pub const DEFAULT_CALLER: &str = "13800138000";

/// One call of a scenario file, with the file's shared settings applied.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The scenario file, as found.
    pub file: PathBuf,
    /// Its place in the file (0 for a one-call file).
    pub index: usize,
    pub name: String,
    /// The flow, relative to the working directory.
    pub flow: PathBuf,
    /// The dialed number (default: the flow's first entry).
    pub dialed: Option<String>,
    pub caller: String,
    pub language: Option<String>,
    /// Wall-clock time of the call, as written (see [`wall_clock_ms`]).
    pub at: String,
    /// The time zone `at` is read in when it has no offset.
    pub zone: Option<String>,
    /// The caller's moves.
    pub keys: VecDeque<Cue>,
    /// Answers per service (and `enqueue`, `dial_agent`, `record`).
    pub stubs: BTreeMap<String, Vec<StubRule>>,
    pub expect: Expect,
}

/// What a scenario checks; each part is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expect {
    /// Steps and menus entered, in order.
    pub path: Option<Vec<String>>,
    /// Prompts played, by id or text, in order.
    pub heard: Option<Vec<String>>,
    /// Values read out (`say`): `KIND VALUE`, the value, or the spoken text.
    pub said: Option<Vec<String>>,
    /// Services and hand-offs asked for: `name` or `name(arg=value, …)`.
    pub requests: Option<Vec<String>>,
    /// How the call ends.
    pub outcome: Option<EndExpect>,
}

/// How a call ends, as a scenario states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndExpect {
    /// The flow said `hangup`.
    Hangup,
    /// The caller hung up.
    CallerHangup,
    /// Retries ran out with no `on exhausted`.
    RetriesExhausted,
    /// `transfer`, to this number when given.
    Transfer(Option<String>),
    /// A runtime fault ended the call.
    Fault,
}

impl EndExpect {
    pub fn parse(s: &str) -> Result<EndExpect, String> {
        let s = s.trim();
        Ok(match s {
            "hangup" => EndExpect::Hangup,
            "caller hangup" => EndExpect::CallerHangup,
            "retries exhausted" => EndExpect::RetriesExhausted,
            "fault" => EndExpect::Fault,
            "transfer" => EndExpect::Transfer(None),
            _ => match s.strip_prefix("transfer ") {
                Some(n) => EndExpect::Transfer(Some(n.trim().to_string())),
                None => {
                    return Err(format!(
                        "outcome `{s}`: write `hangup`, `caller hangup`, `transfer`, `transfer NUMBER`, `retries exhausted` or `fault`"
                    ))
                }
            },
        })
    }
}

impl std::fmt::Display for EndExpect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EndExpect::Hangup => f.write_str("hangup"),
            EndExpect::CallerHangup => f.write_str("caller hangup"),
            EndExpect::RetriesExhausted => f.write_str("retries exhausted"),
            EndExpect::Transfer(None) => f.write_str("transfer"),
            EndExpect::Transfer(Some(n)) => write!(f, "transfer {n}"),
            EndExpect::Fault => f.write_str("fault"),
        }
    }
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct RawCall {
    name: Option<String>,
    flow: Option<String>,
    dialed: Option<String>,
    caller: Option<String>,
    language: Option<String>,
    at: Option<String>,
    zone: Option<String>,
    keys: Option<toml::Value>,
    #[serde(default)]
    stubs: BTreeMap<String, toml::Value>,
    expect: Option<RawExpect>,
    #[serde(default)]
    call: Vec<RawCall>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    path: Option<Vec<String>>,
    heard: Option<Vec<String>>,
    said: Option<Vec<String>>,
    requests: Option<Vec<String>>,
    outcome: Option<String>,
}

/// Reads a scenario file. An error means the file cannot be used at all
/// (unreadable, not TOML, a setting that does not exist, keys that are not keys).
pub fn load(file: &Path) -> Result<Vec<Scenario>, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read `{}`: {e}", file.display()))?;
    parse(file, &text)
}

/// Reads the text of a scenario file found at `file`.
pub fn parse(file: &Path, text: &str) -> Result<Vec<Scenario>, String> {
    let at = |msg: String| format!("{}: {msg}", file.display());
    let raw: RawCall = toml::from_str(text).map_err(|e| at(e.to_string().trim_end().to_string()))?;
    let stem = file.file_name().map(|n| n.to_string_lossy().trim_end_matches(SUFFIX).to_string()).unwrap_or_default();
    if raw.call.is_empty() {
        return Ok(vec![scenario(file, 0, &stem, &raw, &RawCall::default()).map_err(at)?]);
    }
    if raw.expect.is_some() || raw.keys.is_some() {
        return Err(at("with [[call]]s, give `keys` and [expect] in each call (the top of the file holds what they share)".into()));
    }
    raw.call
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if !c.call.is_empty() {
                return Err(at(format!("call {}: a [[call]] cannot hold calls", i + 1)));
            }
            scenario(file, i, &format!("call {}", i + 1), &raw, c).map_err(|e| at(format!("call {}: {e}", i + 1)))
        })
        .collect()
}

/// One call: `call`'s settings over the file's shared ones.
fn scenario(file: &Path, index: usize, default_name: &str, shared: &RawCall, call: &RawCall) -> Result<Scenario, String> {
    let pick = |a: &Option<String>, b: &Option<String>| a.clone().or_else(|| b.clone());
    let flow = pick(&call.flow, &shared.flow).ok_or("no `flow`: name the flow file, relative to this file (flow = \"../hotline.ivr\")")?;
    let dir = file.parent().unwrap_or(Path::new(""));
    let keys = match call.keys.as_ref().or(shared.keys.as_ref()) {
        Some(k) => parse_keys(k)?,
        None => VecDeque::new(),
    };
    // A call's answers for a service replace the shared ones for it.
    let mut stubs = BTreeMap::new();
    for (service, v) in shared.stubs.iter().chain(&call.stubs) {
        stubs.insert(service.clone(), parse_answers(service, v)?);
    }
    let raw = call.expect.clone().or_else(|| shared.expect.clone()).unwrap_or_default();
    let expect = Expect {
        path: raw.path,
        heard: raw.heard,
        said: raw.said,
        requests: raw.requests,
        outcome: raw.outcome.as_deref().map(EndExpect::parse).transpose()?,
    };
    if let Some(reqs) = &expect.requests {
        for r in reqs {
            parse_request(r)?;
        }
    }
    let at = pick(&call.at, &shared.at).unwrap_or_else(|| DEFAULT_AT.to_string());
    let zone = pick(&call.zone, &shared.zone);
    // Catch a wrong time now, rather than after the flow compiled.
    wall_clock_ms(&at, zone.as_deref().unwrap_or("UTC"))?;
    Ok(Scenario {
        file: file.to_path_buf(),
        index,
        name: call.name.clone().or_else(|| shared.call.is_empty().then(|| shared.name.clone()).flatten()).unwrap_or_else(|| default_name.to_string()),
        flow: normalize(&dir.join(flow)),
        dialed: pick(&call.dialed, &shared.dialed),
        caller: pick(&call.caller, &shared.caller).unwrap_or_else(|| DEFAULT_CALLER.to_string()),
        language: pick(&call.language, &shared.language),
        at,
        zone,
        keys,
        stubs,
        expect,
    })
}

/// `a/b/../c` → `a/c`, without touching the file system.
pub fn normalize(p: &Path) -> PathBuf {
    let mut out: Vec<Component> = Vec::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.last(), Some(Component::Normal(_))) => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out.iter().collect()
}

/// Wall-clock milliseconds of `at`: RFC 3339 with an offset
/// (`2026-11-23T10:00:00+08:00`), or a local date and time
/// (`2026-11-23 10:00`) in `zone`.
pub fn wall_clock_ms(at: &str, zone: &str) -> Result<i64, String> {
    if let Ok(ts) = at.parse::<jiff::Timestamp>() {
        return Ok(ts.as_millisecond());
    }
    let civil = at.parse::<jiff::civil::DateTime>().map_err(|_| {
        format!("at = \"{at}\": write a local date and time (\"2026-11-23 10:00\") or one with an offset (\"2026-11-23T10:00:00+08:00\")")
    })?;
    let tz = jiff::tz::TimeZone::get(zone).map_err(|_| format!("zone = \"{zone}\" is not a time zone (an IANA name, e.g. \"Asia/Shanghai\")"))?;
    let z = civil.to_zoned(tz).map_err(|e| format!("at = \"{at}\": {e}"))?;
    Ok(z.timestamp().as_millisecond())
}

/// A duration as flows write it: `500ms`, `2s`, `1.5s`, `2min`.
pub fn duration_ms(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix("min") {
        (n, 60_000.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1_000.0)
    } else {
        return Err(format!("`{s}` is not a duration (write 500ms, 2s, 1.5s or 2min)"));
    };
    match num.trim().parse::<f64>() {
        Ok(v) if v >= 0.0 && v.is_finite() => Ok((v * scale).round() as u64),
        _ => Err(format!("`{s}` is not a duration (write 500ms, 2s, 1.5s or 2min)")),
    }
}

/// The caller's moves: a key script (`"1 600000 . h"`, as `ivr sim --keys`)
/// or a list of moves, one per line (`"during 1"`, `"ahead 88001234#"`,
/// `"wait 2s"`, `"silence"`, `"hangup now"`).
fn parse_keys(v: &toml::Value) -> Result<VecDeque<Cue>, String> {
    let script = |s: &str| -> Result<Vec<Cue>, String> {
        Ok(sim::parse_script(s)
            .map_err(|e| format!("keys: {e}"))?
            .into_iter()
            .map(|step| match step {
                sim::Step::Keys(keys) => Cue::Keys { keys, when: When::Asked },
                sim::Step::Silence => Cue::Silence,
                sim::Step::Hangup => Cue::Hangup { when: When::Asked },
            })
            .collect())
    };
    let keys_of = |rest: &str, word: &str| -> Result<String, String> {
        let k = rest.trim();
        if k.is_empty() || !k.chars().all(|c| matches!(c, '0'..='9' | '*' | '#' | 'A'..='D')) {
            return Err(format!("keys: `{word} {k}`: after `{word}` come keys (0-9 * # A-D), with no spaces"));
        }
        Ok(k.to_string())
    };
    match v {
        toml::Value::String(s) => Ok(script(s)?.into()),
        toml::Value::Array(moves) => {
            let mut out = VecDeque::new();
            for m in moves {
                let toml::Value::String(m) = m else {
                    return Err(format!("keys: each move is a string, found {m}"));
                };
                let m = m.trim();
                let (word, rest) = m.split_once(char::is_whitespace).unwrap_or((m, ""));
                match word {
                    "during" => out.push_back(Cue::Keys { keys: keys_of(rest, word)?, when: When::During }),
                    "ahead" => out.push_back(Cue::Keys { keys: keys_of(rest, word)?, when: When::Now }),
                    "wait" => out.push_back(Cue::Wait(duration_ms(rest).map_err(|e| format!("keys: `{m}`: {e}"))?)),
                    "silence" if rest.is_empty() => out.push_back(Cue::Silence),
                    "hangup" => out.push_back(Cue::Hangup {
                        when: match rest.trim() {
                            "" => When::Asked,
                            "now" => When::Now,
                            "during" => When::During,
                            other => return Err(format!("keys: `hangup {other}`: write `hangup`, `hangup now` or `hangup during`")),
                        },
                    }),
                    _ => out.extend(script(m)?),
                }
            }
            Ok(out)
        }
        other => Err(format!("keys: write a key script (\"1 2 . h\") or a list of moves, found {other}")),
    }
}

/// A service's answers: `"ok"`, `{ outcome = "ok", fields = {…}, delay = "2s", when = {…} }`,
/// or a list of them (taken in turn; one with `when` answers whenever its arguments match).
fn parse_answers(service: &str, v: &toml::Value) -> Result<Vec<StubRule>, String> {
    let one = |v: &toml::Value| -> Result<StubRule, String> {
        match v {
            toml::Value::String(outcome) => Ok(StubRule { when: BTreeMap::new(), outcome: outcome.clone(), fields: BTreeMap::new(), delay_ms: 0 }),
            toml::Value::Table(t) => {
                let mut rule = StubRule { when: BTreeMap::new(), outcome: String::new(), fields: BTreeMap::new(), delay_ms: 0 };
                for (k, v) in t {
                    match (k.as_str(), v) {
                        ("outcome", toml::Value::String(s)) => rule.outcome = s.clone(),
                        ("fields", toml::Value::Table(f)) => rule.fields = f.clone().into_iter().collect(),
                        ("when", toml::Value::Table(w)) => rule.when = w.clone().into_iter().collect(),
                        ("delay", toml::Value::String(d)) => rule.delay_ms = duration_ms(d)?,
                        ("outcome" | "fields" | "when" | "delay", other) => {
                            return Err(format!("`{k}` cannot be {other} (outcome = \"ok\", fields = {{ … }}, when = {{ … }}, delay = \"2s\")"))
                        }
                        _ => return Err(format!("unknown setting `{k}` (an answer has outcome, fields, when and delay)")),
                    }
                }
                if rule.outcome.is_empty() {
                    return Err("an answer needs an `outcome`".into());
                }
                Ok(rule)
            }
            other => Err(format!("write an outcome (\"ok\") or a table ({{ outcome = \"ok\", … }}), found {other}")),
        }
    };
    let rules = match v {
        toml::Value::Array(list) if list.is_empty() => Err("an empty list answers nothing".to_string()),
        toml::Value::Array(list) => list.iter().map(one).collect(),
        other => one(other).map(|r| vec![r]),
    };
    rules.map_err(|e| format!("stubs.{service}: {e}"))
}

/// An expected request: `name` or `name(arg=value, …)`.
pub fn parse_request(s: &str) -> Result<(String, Vec<(String, String)>), String> {
    let s = s.trim();
    let Some((name, rest)) = s.split_once('(') else {
        return Ok((s.to_string(), Vec::new()));
    };
    let inner = rest.trim_end().strip_suffix(')').ok_or_else(|| format!("requests: `{s}` has no closing `)`"))?;
    let mut args = Vec::new();
    for part in inner.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').ok_or_else(|| format!("requests: `{s}`: write arguments as name=value"))?;
        let v = v.trim();
        let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
        args.push((k.trim().to_string(), v.to_string()));
    }
    Ok((name.trim().to_string(), args))
}

/// Every scenario file under `path` (a file is taken as it is).
pub fn find(path: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if path.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    entries.sort();
    for p in entries {
        if p.is_dir() {
            find(&p, out)?;
        } else if p.file_name().is_some_and(|n| n.to_string_lossy().ends_with(SUFFIX)) {
            out.push(p);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Result<Scenario, String> {
        parse(Path::new("flows/tests/x.test.toml"), text).map(|mut v| v.remove(0))
    }

    #[test]
    fn a_file_is_one_call_and_the_flow_is_found_beside_it() {
        let s = one("flow = \"../hotline.ivr\"\nkeys = \"1 600000 . h\"\n").unwrap();
        assert_eq!(s.name, "x");
        assert_eq!(s.flow, PathBuf::from("flows/hotline.ivr"));
        assert_eq!(s.keys.len(), 4);
        assert_eq!(s.caller, DEFAULT_CALLER);
    }

    #[test]
    fn calls_share_the_top_of_the_file_and_replace_answers_per_service() {
        let text = r#"
flow = "../h.ivr"
stubs.quote = "not_found"
stubs.balance = "failed"
[[call]]
name = "found"
keys = "1"
stubs.quote = { outcome = "ok", delay = "2.5s" }
[[call]]
keys = ["during 1", "ahead 12#", "wait 2s", "silence", "hangup now"]
"#;
        let v = parse(Path::new("t/a.test.toml"), text).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].name, "found");
        assert_eq!(v[0].stubs["quote"][0].delay_ms, 2500);
        assert_eq!(v[0].stubs["balance"][0].outcome, "failed");
        assert_eq!(v[1].name, "call 2");
        assert_eq!(v[1].stubs["quote"][0].outcome, "not_found");
        let k: Vec<Cue> = v[1].keys.iter().cloned().collect();
        assert_eq!(
            k,
            vec![
                Cue::Keys { keys: "1".into(), when: When::During },
                Cue::Keys { keys: "12#".into(), when: When::Now },
                Cue::Wait(2000),
                Cue::Silence,
                Cue::Hangup { when: When::Now },
            ]
        );
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            ("keys = \"1\"\n", "no `flow`"),
            ("flow = \"h.ivr\"\nkeyz = \"1\"\n", "unknown field `keyz`"),
            ("flow = \"h.ivr\"\nkeys = \"1x\"\n", "`x` is not a key"),
            ("flow = \"h.ivr\"\nkeys = [\"during 1 2\"]\n", "after `during` come keys"),
            ("flow = \"h.ivr\"\nstubs.quote = { outcome = \"ok\", delay = \"2 seconds\" }\n", "stubs.quote: `2 seconds` is not a duration"),
            ("flow = \"h.ivr\"\nstubs.quote = { fields = {} }\n", "needs an `outcome`"),
            ("flow = \"h.ivr\"\nat = \"monday\"\n", "at = \"monday\""),
            ("flow = \"h.ivr\"\nzone = \"Asia/Beijing\"\n", "not a time zone"),
            ("flow = \"h.ivr\"\nexpect.outcome = \"hung up\"\n", "outcome `hung up`"),
            ("flow = \"h.ivr\"\nexpect.requests = [\"quote(code=1\"]\n", "no closing"),
        ];
        for (text, want) in cases {
            let e = one(text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
            assert!(e.starts_with("flows/tests/x.test.toml"), "{e}");
        }
    }

    #[test]
    fn times_and_durations() {
        let local = wall_clock_ms("2026-11-23 10:00", "Asia/Shanghai").unwrap();
        assert_eq!(local, wall_clock_ms("2026-11-23T10:00:00+08:00", "UTC").unwrap());
        assert_eq!(duration_ms("1.5s").unwrap(), 1500);
        assert_eq!(duration_ms("2min").unwrap(), 120_000);
        assert_eq!(duration_ms("250ms").unwrap(), 250);
        assert_eq!(parse_request("quote( code = \"600000\" )").unwrap(), ("quote".into(), vec![("code".into(), "600000".into())]));
    }
}
