//! `ivr report`: the numbers a contact centre is run by, for a day (or any
//! span of days), from the records `ivr serve` writes: `calls.jsonl` (IVR
//! calls: menu hits, outcomes, survey scores), `queue.jsonl` (waits, answers,
//! abandons, talk, wrap-up) and `agents.jsonl` (agents' time in each state).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

/// The report over `[from, to)` (wall-clock milliseconds).
#[derive(Debug, Serialize)]
pub struct Report {
    pub from: String,
    pub to: String,
    pub ivr: Ivr,
    pub queues: BTreeMap<String, ivr_acd::Kpi>,
    pub all_queues: ivr_acd::Kpi,
    pub agents: Vec<AgentLine>,
    pub survey: Survey,
}

#[derive(Debug, Default, Serialize)]
pub struct Ivr {
    pub calls: u64,
    /// By dialed number.
    pub by_number: BTreeMap<String, u64>,
    /// How calls ended (hang-up by the caller, by the flow, transferred, …).
    pub outcomes: BTreeMap<String, u64>,
    /// Menu-hit ranking (自动语音资讯点击率排名): nodes by calls that reached them.
    pub menu_hits: Vec<(String, u64)>,
    pub average_duration_s: f64,
    /// Calls that asked for an agent (queue or direct dial).
    pub to_agents: u64,
}

#[derive(Debug, Serialize)]
pub struct AgentLine {
    pub agent: String,
    pub calls: u64,
    pub talk_s: u64,
    pub wrap_up_s: u64,
    /// Seconds in each state.
    pub states_s: BTreeMap<String, u64>,
    /// Ringing + talking + wrap-up, of logged-in time (%). Centres aim at ≤ 80.
    pub utilisation: f64,
}

#[derive(Debug, Default, Serialize)]
pub struct Survey {
    pub answers: u64,
    /// Score 1 (best) … 5: how many gave each.
    pub scores: BTreeMap<String, u64>,
    /// Scores 1 and 2, of answers (%).
    pub satisfied: f64,
}

fn lines(path: &Path) -> Result<Vec<Value>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read `{}`: {e}", path.display())),
    };
    // A line cut short by a crash is skipped, not fatal.
    Ok(text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
}

/// Each call's record: `ivr serve` writes a call's line when it starts, again
/// as it goes and when it ends; the last line of each call is its record (a
/// crash leaves it open, and the next start closes it). In order of start.
fn call_records(lines: Vec<Value>) -> Vec<Value> {
    let mut order: Vec<String> = Vec::new();
    let mut last: std::collections::HashMap<String, Value> = std::collections::HashMap::new();
    for l in lines {
        let id = l["call_id"].as_str().unwrap_or("").to_string();
        if !last.contains_key(&id) {
            order.push(id.clone());
        }
        last.insert(id, l);
    }
    order.into_iter().filter_map(|id| last.remove(&id)).collect()
}

/// Builds the report from the records in `data` over `[from, to)`.
pub fn build(data: &Path, from_ms: i64, to_ms: i64, labels: (String, String), sl_threshold_ms: u64) -> Result<Report, String> {
    let within = |t: Option<i64>| t.is_some_and(|t| t >= from_ms && t < to_ms);
    // IVR calls and the survey.
    let mut ivr = Ivr::default();
    let mut survey = Survey::default();
    let mut hits: BTreeMap<String, u64> = BTreeMap::new();
    let mut duration_ms = 0i64;
    for c in call_records(lines(&data.join("calls.jsonl"))?).iter().filter(|c| within(c["start_ms"].as_i64())) {
        ivr.calls += 1;
        *ivr.by_number.entry(c["dialed"].as_str().unwrap_or("").to_string()).or_default() += 1;
        let outcome = c["outcome"].as_str().unwrap_or("unknown");
        let outcome = outcome.split(':').take(if outcome.starts_with("hangup") { 2 } else { 1 }).collect::<Vec<_>>().join(":");
        *ivr.outcomes.entry(outcome).or_default() += 1;
        let mut seen = std::collections::BTreeSet::new();
        for n in c["nodes"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            if seen.insert(n) {
                *hits.entry(n.to_string()).or_default() += 1;
            }
        }
        duration_ms += (c["end_ms"].as_i64().unwrap_or(0) - c["start_ms"].as_i64().unwrap_or(0)).max(0);
        if c["handoffs"].as_array().is_some_and(|h| h.iter().any(|h| h["kind"] != "transfer")) {
            ivr.to_agents += 1;
        }
        if let Some(score) = c["survey_score"].as_str().filter(|s| !s.is_empty() && *s != "0") {
            survey.answers += 1;
            *survey.scores.entry(score.to_string()).or_default() += 1;
        }
    }
    let mut ranking: Vec<(String, u64)> = hits.into_iter().collect();
    ranking.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    ivr.menu_hits = ranking;
    ivr.average_duration_s = if ivr.calls == 0 { 0.0 } else { (duration_ms as f64 / ivr.calls as f64 / 100.0).round() / 10.0 };
    let good = survey.scores.iter().filter(|(s, _)| *s == "1" || *s == "2").map(|(_, n)| n).sum::<u64>();
    survey.satisfied = if survey.answers == 0 { 0.0 } else { (good as f64 * 1000.0 / survey.answers as f64).round() / 10.0 };

    // Queues.
    let records: Vec<ivr_acd::CallRecord> = lines(&data.join("queue.jsonl"))?
        .into_iter()
        .filter(|r| within(r["joined_at_ms"].as_i64()))
        .filter_map(|r| serde_json::from_value(r).ok())
        .collect();
    let mut queues = BTreeMap::new();
    let mut names: Vec<&str> = records.iter().filter_map(|r| r.queue.as_deref()).collect();
    names.sort_unstable();
    names.dedup();
    for q in names {
        queues.insert(q.to_string(), ivr_acd::Kpi::from_records(records.iter().filter(|r| r.queue.as_deref() == Some(q)), sl_threshold_ms));
    }
    let all_queues = ivr_acd::Kpi::from_records(&records, sl_threshold_ms);

    // Agents: calls and talk from the queue records, states from agents.jsonl
    // (each state's time clipped to the span).
    let mut agents: BTreeMap<String, AgentLine> = BTreeMap::new();
    let line = |a: &str| AgentLine { agent: a.to_string(), calls: 0, talk_s: 0, wrap_up_s: 0, states_s: BTreeMap::new(), utilisation: 0.0 };
    for r in records.iter().filter(|r| r.result == "answered") {
        let Some(a) = r.agent.as_deref() else { continue };
        let e = agents.entry(a.to_string()).or_insert_with(|| line(a));
        e.calls += 1;
        e.talk_s += r.talk_ms / 1000;
        e.wrap_up_s += r.wrap_up_ms / 1000;
    }
    let mut state_ms: BTreeMap<(String, String), i64> = BTreeMap::new();
    for s in lines(&data.join("agents.jsonl"))? {
        let (Some(a), Some(st), Some(f), Some(t)) = (s["agent"].as_str(), s["state"].as_str(), s["from_at_ms"].as_i64(), s["to_at_ms"].as_i64()) else { continue };
        let ms = t.min(to_ms) - f.max(from_ms);
        if ms > 0 {
            *state_ms.entry((a.to_string(), st.to_string())).or_default() += ms;
        }
    }
    for ((a, st), ms) in state_ms {
        let e = agents.entry(a.clone()).or_insert_with(|| line(&a));
        e.states_s.insert(st, (ms / 1000) as u64);
    }
    for e in agents.values_mut() {
        let get = |k: &str| e.states_s.get(k).copied().unwrap_or(0) as f64;
        let busy = get("ringing") + get("talking") + get("wrap_up");
        let on = busy + get("ready") + get("not_ready");
        e.utilisation = if on == 0.0 { 0.0 } else { (busy * 1000.0 / on).round() / 10.0 };
    }
    let agents = agents.into_values().filter(|a| a.calls > 0 || a.states_s.keys().any(|k| k != "logged_out")).collect();
    Ok(Report { from: labels.0, to: labels.1, ivr, queues, all_queues, agents, survey })
}

fn secs(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

fn hms(s: u64) -> String {
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// The report as text, for a terminal or a mail.
pub fn render(r: &Report) -> String {
    let mut o = String::new();
    let mut w = |s: String| {
        o.push_str(&s);
        o.push('\n');
    };
    w(format!("report {} to {}", r.from, r.to));
    w(String::new());
    w(format!("IVR: {} calls, average {:.1} s; {} asked for an agent", r.ivr.calls, r.ivr.average_duration_s, r.ivr.to_agents));
    for (n, c) in &r.ivr.by_number {
        w(format!("  dialed {n}: {c}"));
    }
    w(format!("  ended: {}", r.ivr.outcomes.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")));
    w("  menu hits (calls reaching each):".into());
    for (node, n) in r.ivr.menu_hits.iter().take(10) {
        w(format!("    {n:>6}  {node}"));
    }
    w(String::new());
    w(format!(
        "{:<14} {:>7} {:>8} {:>9} {:>8}  {:>8} {:>9} {:>8} {:>9}",
        "queue", "offered", "answered", "abandoned", "sent on", format!("SL {}s", r.all_queues.service_level_threshold_ms / 1000), "ASA", "abandon", "AHT"
    ));
    for (name, k) in r.queues.iter().chain(std::iter::once((&"(all)".to_string(), &r.all_queues))) {
        w(format!(
            "{:<14} {:>7} {:>8} {:>9} {:>8}  {:>7.1}% {:>9} {:>7.2}% {:>9}",
            name,
            k.offered,
            k.answered,
            k.abandoned,
            k.overflowed,
            k.service_level,
            secs(k.asa_ms),
            k.abandon_rate,
            secs(k.aht_ms)
        ));
    }
    w(String::new());
    w(format!("{:<8} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9}  utilisation", "agent", "calls", "talk", "wrap-up", "ready", "not ready", "logged in"));
    for a in &r.agents {
        let get = |k: &str| a.states_s.get(k).copied().unwrap_or(0);
        let on: u64 = ["ready", "not_ready", "ringing", "talking", "wrap_up"].iter().map(|k| get(k)).sum();
        w(format!(
            "{:<8} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9}  {:.1}%",
            a.agent,
            a.calls,
            hms(a.talk_s),
            hms(a.wrap_up_s),
            hms(get("ready")),
            hms(get("not_ready")),
            hms(on),
            a.utilisation
        ));
    }
    w(String::new());
    w(format!(
        "survey: {} answers, {:.1}% satisfied (1–2); {}",
        r.survey.answers,
        r.survey.satisfied,
        r.survey.scores.iter().map(|(s, n)| format!("{s}: {n}")).collect::<Vec<_>>().join(", ")
    ));
    o
}
