//! `ivr report`: the numbers a contact centre is run by, for a day (or any
//! span of days), from the records `ivr serve` writes: `calls.jsonl` (IVR
//! calls: menu hits, outcomes, survey scores), `queue.jsonl` (waits, answers,
//! abandons, talk, wrap-up) and `agents.jsonl` (agents' time in each state).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

/// The span a report covers, cut into periods, in the centre's time zone.
pub struct Window {
    pub from_ms: i64,
    pub to_ms: i64,
    pub labels: (String, String),
    /// `hour`, `day`, `week` or `month`.
    pub by: String,
    /// Each period: its label and `[from, to)`, in order, covering the span.
    pub periods: Vec<(String, i64, i64)>,
    /// Now (wall clock): a period still going on is as long as it has lasted.
    pub now_ms: i64,
    /// The local hour of day (0–23) of an instant.
    pub hour_of: Box<dyn Fn(i64) -> u8>,
}

/// The report over `[from, to)` (wall-clock milliseconds).
#[derive(Debug, Serialize)]
pub struct Report {
    pub from: String,
    pub to: String,
    pub ivr: Ivr,
    pub queues: BTreeMap<String, ivr_acd::Kpi>,
    pub all_queues: ivr_acd::Kpi,
    /// Callers waiting on average over the span (排队均长).
    pub average_waiting: f64,
    pub agents: Vec<AgentLine>,
    /// Every agent's busy time over every agent's logged-in time (%).
    pub agents_utilisation: f64,
    pub survey: Survey,
    /// The same numbers period by period (`--by`).
    pub by: String,
    pub periods: Vec<Period>,
    /// Calls and service level by hour of day, over the whole span.
    pub hours: Vec<HourLine>,
    /// Where callers went in each flow, and where they hung up.
    pub funnel: BTreeMap<String, Funnel>,
    pub first_contact: FirstContact,
    /// Calls by the release (deployed version of the flows) they ran on: a
    /// canary beside the current release.
    pub releases: BTreeMap<String, ReleaseLine>,
    /// Queue waits: answered and abandoned callers by how long they waited.
    pub waits: Vec<WaitBand>,
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
    /// Calls finished in the IVR without asking for an agent, and their share (%).
    pub contained: u64,
    pub containment: f64,
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

/// One period's numbers.
#[derive(Debug, Serialize)]
pub struct Period {
    pub period: String,
    pub ivr_calls: u64,
    pub contained: u64,
    pub containment: f64,
    pub queues: BTreeMap<String, ivr_acd::Kpi>,
    pub all_queues: ivr_acd::Kpi,
    pub average_waiting: f64,
    /// All agents' busy time (ringing, talking, wrap-up) of their logged-in
    /// time in the period (%), and that logged-in time (s): the peak hour
    /// of 员工利用率 is read off `--by hour`.
    pub utilisation: f64,
    pub logged_in_s: u64,
}

/// The calls one release took.
#[derive(Debug, Default, Serialize)]
pub struct ReleaseLine {
    pub calls: u64,
    pub contained: u64,
    pub containment: f64,
    /// Callers who hung up in the IVR, before any agent answered.
    pub hung_up_in_ivr: u64,
    /// How calls ended (as in `ivr.outcomes`).
    pub outcomes: BTreeMap<String, u64>,
}

/// One hour of the day (local), over every day of the span.
#[derive(Debug, Default, Serialize)]
pub struct HourLine {
    pub hour: u8,
    pub ivr_calls: u64,
    /// Answered or abandoned: what the service level is taken over.
    pub decided: u64,
    pub offered: u64,
    pub service_level: f64,
}

/// A flow's funnel: each node with the calls that reached it.
#[derive(Debug, Default, Serialize)]
pub struct Funnel {
    pub calls: u64,
    pub contained: u64,
    /// By calls reaching them, most first.
    pub nodes: Vec<FunnelNode>,
}

#[derive(Debug, Default, Serialize)]
pub struct FunnelNode {
    pub node: String,
    /// Calls that reached it at least once.
    pub reached: u64,
    /// Calls whose caller hung up here, before any agent answered.
    pub hung_up: u64,
    /// Keys pressed here (secret ones as `*`).
    pub keys: BTreeMap<String, u64>,
}

/// First-contact resolution (一次解决率), approximated: a call from a known
/// number is taken as resolved when the number does not call again within 24 h.
#[derive(Debug, Default, Serialize)]
pub struct FirstContact {
    /// Calls from a number we can tell (not withheld).
    pub identified: u64,
    /// Of those, followed by another call from the number within 24 h.
    pub repeated: u64,
    pub rate: f64,
}

/// Queued callers who waited up to `up_to_s` (and more than the band before).
#[derive(Debug, Serialize)]
pub struct WaitBand {
    /// `None`: longer than every band.
    pub up_to_s: Option<u64>,
    pub answered: u64,
    pub abandoned: u64,
}

/// The upper edges of the wait bands, seconds.
const WAIT_BANDS_S: [u64; 8] = [5, 10, 20, 30, 60, 120, 300, 600];

/// Repeat calls within this long count against first-contact resolution.
const REPEAT_WITHIN_MS: i64 = 24 * 3_600_000;

fn pct(n: u64, of: u64) -> f64 {
    if of == 0 { 0.0 } else { (n as f64 * 1000.0 / of as f64).round() / 10.0 }
}

/// Whether the caller asked for an agent (a queue or a work number; a transfer out does not count).
fn asked_for_agent(c: &Value) -> bool {
    c["handoffs"].as_array().is_some_and(|h| h.iter().any(|h| h["kind"] != "transfer"))
}

/// Whether the caller hung up on the IVR (not the flow, and not after an agent answered).
fn caller_left_in_ivr(c: &Value) -> bool {
    let o = c["outcome"].as_str().unwrap_or("");
    let by_caller = o.starts_with("caller_hung_up");
    by_caller && !c["handoffs"].as_array().is_some_and(|h| h.iter().any(|h| h["outcome"] == "served"))
}

/// An outcome without the numbers in it (`transferred:1001` → `transferred`;
/// a `hangup:` keeps its reason).
fn outcome_class(outcome: &str) -> String {
    outcome.split(':').take(if outcome.starts_with("hangup") { 2 } else { 1 }).collect::<Vec<_>>().join(":")
}

/// A number that identifies a caller (not withheld or anonymous).
fn identified(caller: &str) -> bool {
    let c = caller.trim();
    !c.is_empty() && !matches!(c.to_ascii_lowercase().as_str(), "anonymous" | "unknown" | "restricted" | "private" | "unavailable")
}

fn lines(path: &Path) -> Result<Vec<Value>, String> {
    let bytes = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read `{}`: {e}", path.display())),
    };
    // A line cut short by a crash (even mid-character) is skipped, not fatal.
    Ok(bytes.split(|&b| b == b'\n').filter_map(|l| serde_json::from_slice(l).ok()).collect())
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

/// A flow's node in its funnel, added when first seen.
fn step<'a>(steps: &'a mut BTreeMap<String, FunnelNode>, n: &str) -> &'a mut FunnelNode {
    steps.entry(n.to_string()).or_insert_with(|| FunnelNode { node: n.to_string(), ..FunnelNode::default() })
}

/// Builds the report from the records in `data` over the window.
pub fn build(data: &Path, w: &Window, sl_threshold_ms: u64) -> Result<Report, String> {
    let within = |t: Option<i64>| t.is_some_and(|t| t >= w.from_ms && t < w.to_ms);
    let period_of = |t: i64| w.periods.iter().position(|p| t >= p.1 && t < p.2);
    let all_calls = call_records(lines(&data.join("calls.jsonl"))?);
    let calls: Vec<&Value> = all_calls.iter().filter(|c| within(c["start_ms"].as_i64())).collect();
    // IVR calls and the survey.
    let mut ivr = Ivr::default();
    let mut survey = Survey::default();
    let mut hits: BTreeMap<(String, String), u64> = BTreeMap::new();
    let (mut duration_ms, mut ended) = (0i64, 0u64);
    let mut period_calls = vec![(0u64, 0u64); w.periods.len()];
    let mut hours: Vec<HourLine> = (0..24).map(|hour| HourLine { hour, ..HourLine::default() }).collect();
    let mut funnels: BTreeMap<String, (Funnel, BTreeMap<String, FunnelNode>)> = BTreeMap::new();
    let mut releases: BTreeMap<String, ReleaseLine> = BTreeMap::new();
    for c in &calls {
        let start = c["start_ms"].as_i64().unwrap_or(0);
        ivr.calls += 1;
        *ivr.by_number.entry(c["dialed"].as_str().unwrap_or("").to_string()).or_default() += 1;
        *ivr.outcomes.entry(outcome_class(c["outcome"].as_str().unwrap_or("unknown"))).or_default() += 1;
        let nodes: Vec<&str> = c["nodes"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let mut seen = std::collections::BTreeSet::new();
        let (funnel, steps) = funnels.entry(c["flow"].as_str().unwrap_or("").to_string()).or_default();
        funnel.calls += 1;
        for n in &nodes {
            if seen.insert(*n) {
                *hits.entry((c["flow"].as_str().unwrap_or("").to_string(), n.to_string())).or_default() += 1;
                step(steps, n).reached += 1;
            }
        }
        if caller_left_in_ivr(c) {
            if let Some(last) = nodes.last() {
                step(steps, last).hung_up += 1;
            }
        }
        for m in c["timeline"].as_array().into_iter().flatten().filter(|m| m["event"] == "key") {
            let (Some(k), Some(n)) = (m["key"].as_str(), m["node"].as_str()) else { continue };
            // A secret's digit (or a key typed before the flow listened) is not the star key.
            let k = if m["hidden"] == true { "hidden" } else { k };
            *step(steps, n).keys.entry(k.to_string()).or_default() += 1;
        }
        // Calls still open, or closed by a crash, have no known end.
        let end = c["end_ms"].as_i64().unwrap_or(0);
        // A duration beyond a week is a damaged record, not a call.
        if end > 0 && c["state"] != "open" && c["outcome"] != "server_crashed" && (0..=7 * 86_400_000).contains(&end.saturating_sub(start)) {
            duration_ms = duration_ms.saturating_add(end - start);
            ended += 1;
        }
        let contained = !asked_for_agent(c);
        let release = c["release"].as_str().filter(|r| !r.is_empty()).unwrap_or("(none)").to_string();
        let rl = releases.entry(release).or_insert_with(ReleaseLine::default);
        rl.calls += 1;
        rl.contained += u64::from(contained);
        rl.hung_up_in_ivr += u64::from(caller_left_in_ivr(c));
        *rl.outcomes.entry(outcome_class(c["outcome"].as_str().unwrap_or("unknown"))).or_default() += 1;
        if contained {
            funnel.contained += 1;
            ivr.contained += 1;
        } else {
            ivr.to_agents += 1;
        }
        if let Some(p) = period_of(start) {
            period_calls[p].0 += 1;
            period_calls[p].1 += u64::from(contained);
        }
        hours[usize::from((w.hour_of)(start)) % 24].ivr_calls += 1;
        if let Some(score) = c["survey_score"].as_str().filter(|s| !s.is_empty() && *s != "0") {
            survey.answers += 1;
            *survey.scores.entry(score.to_string()).or_default() += 1;
        }
    }
    // Nodes are named within their flow: with several flows, the flow says whose.
    let flows: std::collections::BTreeSet<&String> = hits.keys().map(|(f, _)| f).collect();
    let several = flows.len() > 1;
    let mut ranking: Vec<(String, u64)> = hits.iter().map(|((f, n), c)| (if several { format!("{f}: {n}") } else { n.clone() }, *c)).collect();
    ranking.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    ivr.menu_hits = ranking;
    ivr.average_duration_s = if ended == 0 { 0.0 } else { (duration_ms as f64 / ended as f64 / 100.0).round() / 10.0 };
    ivr.containment = pct(ivr.contained, ivr.calls);
    let good = survey.scores.iter().filter(|(s, _)| *s == "1" || *s == "2").map(|(_, n)| n).sum::<u64>();
    survey.satisfied = pct(good, survey.answers);
    let funnel = funnels
        .into_iter()
        .map(|(flow, (mut f, steps))| {
            f.nodes = steps.into_values().collect();
            f.nodes.sort_by(|a, b| b.reached.cmp(&a.reached).then(a.node.cmp(&b.node)));
            (flow, f)
        })
        .collect();

    // First-contact resolution: the next call from the same number, from
    // every record (a call late in the span is judged by the ones after it).
    let mut by_caller: std::collections::HashMap<&str, Vec<i64>> = std::collections::HashMap::new();
    for c in &all_calls {
        if let (Some(n), Some(t)) = (c["caller"].as_str().filter(|n| identified(n)), c["start_ms"].as_i64()) {
            by_caller.entry(n).or_default().push(t);
        }
    }
    by_caller.values_mut().for_each(|v| v.sort_unstable());
    let mut first_contact = FirstContact::default();
    for c in &calls {
        let (Some(n), Some(t)) = (c["caller"].as_str().filter(|n| identified(n)), c["start_ms"].as_i64()) else { continue };
        first_contact.identified += 1;
        let times = &by_caller[n];
        let after = times.partition_point(|&x| x <= t);
        if times.get(after).is_some_and(|&next| next - t <= REPEAT_WITHIN_MS) {
            first_contact.repeated += 1;
        }
    }
    first_contact.rate = pct(first_contact.identified - first_contact.repeated, first_contact.identified);

    // Queues.
    let records: Vec<(i64, ivr_acd::CallRecord)> = lines(&data.join("queue.jsonl"))?
        .into_iter()
        .filter_map(|r| Some((r["joined_at_ms"].as_i64().filter(|t| within(Some(*t)))?, serde_json::from_value::<ivr_acd::CallRecord>(r).ok()?)))
        .collect();
    let by_queue = |rs: &[&ivr_acd::CallRecord]| -> (BTreeMap<String, ivr_acd::Kpi>, ivr_acd::Kpi) {
        let mut names: Vec<&str> = rs.iter().filter_map(|r| r.queue.as_deref()).collect();
        names.sort_unstable();
        names.dedup();
        let queues = names.into_iter().map(|q| (q.to_string(), ivr_acd::Kpi::from_records(rs.iter().copied().filter(|r| r.queue.as_deref() == Some(q)), sl_threshold_ms))).collect();
        (queues, ivr_acd::Kpi::from_records(rs.iter().copied(), sl_threshold_ms))
    };
    let all: Vec<&ivr_acd::CallRecord> = records.iter().map(|(_, r)| r).collect();
    let (queues, all_queues) = by_queue(&all);
    let span = |a: i64, b: i64| (b.min(w.now_ms) - a).max(0) as u64;
    let average_waiting = all_queues.average_waiting(span(w.from_ms, w.to_ms));
    // Agents' states, for each period's utilisation.
    let states: Vec<(String, i64, i64)> = lines(&data.join("agents.jsonl"))?
        .iter()
        .filter_map(|s| Some((s["state"].as_str()?.to_string(), s["from_at_ms"].as_i64()?, s["to_at_ms"].as_i64()?)))
        .collect();
    let utilisation_in = |a: i64, b: i64| {
        let (mut busy, mut on) = (0i64, 0i64);
        for (st, f, t) in &states {
            let ms = (*t).min(b).saturating_sub((*f).max(a));
            if ms <= 0 || st == "logged_out" {
                continue;
            }
            on = on.saturating_add(ms);
            if matches!(st.as_str(), "ringing" | "talking" | "wrap_up") {
                busy = busy.saturating_add(ms);
            }
        }
        (pct(busy as u64, on as u64), (on / 1000) as u64)
    };
    let periods = w
        .periods
        .iter()
        .enumerate()
        .map(|(i, (label, a, b))| {
            let rs: Vec<&ivr_acd::CallRecord> = records.iter().filter(|(t, _)| t >= a && t < b).map(|(_, r)| r).collect();
            let (queues, all_queues) = by_queue(&rs);
            let (calls, contained) = period_calls[i];
            let (utilisation, logged_in_s) = utilisation_in(*a, *b);
            Period { period: label.clone(), ivr_calls: calls, contained, containment: pct(contained, calls), average_waiting: all_queues.average_waiting(span(*a, *b)), queues, all_queues, utilisation, logged_in_s }
        })
        .collect();
    for h in 0..24u8 {
        let rs: Vec<&ivr_acd::CallRecord> = records.iter().filter(|(t, _)| (w.hour_of)(*t) == h).map(|(_, r)| r).collect();
        let k = ivr_acd::Kpi::from_records(rs, sl_threshold_ms);
        hours[usize::from(h)].offered = k.offered;
        hours[usize::from(h)].decided = k.answered + k.abandoned;
        hours[usize::from(h)].service_level = if k.answered + k.abandoned == 0 { 0.0 } else { k.service_level };
    }
    let mut waits: Vec<WaitBand> = WAIT_BANDS_S.iter().map(|&s| Some(s)).chain([None]).map(|up_to_s| WaitBand { up_to_s, answered: 0, abandoned: 0 }).collect();
    for (_, r) in records.iter().filter(|(_, r)| r.queue.is_some()) {
        let band = WAIT_BANDS_S.iter().position(|&s| r.waited_ms <= s * 1000).unwrap_or(WAIT_BANDS_S.len());
        match r.result.as_str() {
            "answered" => waits[band].answered += 1,
            "abandoned" => waits[band].abandoned += 1,
            _ => {}
        }
    }

    // Agents: calls and talk from the queue records, states from agents.jsonl
    // (each state's time clipped to the span).
    let mut agents: BTreeMap<String, AgentLine> = BTreeMap::new();
    let line = |a: &str| AgentLine { agent: a.to_string(), calls: 0, talk_s: 0, wrap_up_s: 0, states_s: BTreeMap::new(), utilisation: 0.0 };
    for (_, r) in records.iter().filter(|(_, r)| r.result == "answered") {
        let Some(a) = r.agent.as_deref() else { continue };
        let e = agents.entry(a.to_string()).or_insert_with(|| line(a));
        e.calls += 1;
        e.talk_s = e.talk_s.saturating_add(r.talk_ms / 1000);
        e.wrap_up_s = e.wrap_up_s.saturating_add(r.wrap_up_ms / 1000);
    }
    let mut state_ms: BTreeMap<(String, String), i64> = BTreeMap::new();
    for s in lines(&data.join("agents.jsonl"))? {
        let (Some(a), Some(st), Some(f), Some(t)) = (s["agent"].as_str(), s["state"].as_str(), s["from_at_ms"].as_i64(), s["to_at_ms"].as_i64()) else { continue };
        let ms = t.min(w.to_ms).saturating_sub(f.max(w.from_ms));
        if ms > 0 {
            let e = state_ms.entry((a.to_string(), st.to_string())).or_default();
            *e = e.saturating_add(ms);
        }
    }
    for ((a, st), ms) in state_ms {
        let e = agents.entry(a.clone()).or_insert_with(|| line(&a));
        e.states_s.insert(st, (ms / 1000) as u64);
    }
    let (mut all_busy, mut all_on) = (0, 0);
    for e in agents.values_mut() {
        let get = |k: &str| e.states_s.get(k).copied().unwrap_or(0);
        let busy = get("ringing") + get("talking") + get("wrap_up");
        e.utilisation = pct(busy, busy + get("ready") + get("not_ready"));
        all_busy += busy;
        all_on += busy + get("ready") + get("not_ready");
    }
    let agents_utilisation = pct(all_busy, all_on);
    let agents = agents.into_values().filter(|a| a.calls > 0 || a.states_s.keys().any(|k| k != "logged_out")).collect();
    for r in releases.values_mut() {
        r.containment = pct(r.contained, r.calls);
    }
    Ok(Report { from: w.labels.0.clone(), to: w.labels.1.clone(), ivr, queues, all_queues, average_waiting, agents, agents_utilisation, survey, by: w.by.clone(), periods, hours, funnel, first_contact, releases, waits })
}

fn secs(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

fn hms(s: u64) -> String {
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// A rate for the text, or `–` when there was nothing to divide by.
fn rate(x: f64, over: u64, decimals: usize) -> String {
    if over == 0 { "–".to_string() } else { format!("{x:.decimals$}%") }
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
    w(format!("  contained in the IVR (自助完成): {} ({})", r.ivr.contained, rate(r.ivr.containment, r.ivr.calls, 1)));
    let fc = &r.first_contact;
    w(format!("  first-contact resolution (一次解决率, no repeat call within 24 h): {} of {} identified callers ({} called again)", rate(fc.rate, fc.identified, 1), fc.identified, fc.repeated));
    // The busiest numbers (a scanner dialling at random would list thousands).
    let mut numbers: Vec<(&String, &u64)> = r.ivr.by_number.iter().collect();
    numbers.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    for (n, c) in numbers.iter().take(10) {
        w(format!("  dialed {n}: {c}"));
    }
    if numbers.len() > 10 {
        w(format!("  dialed {} other numbers: {} calls", numbers.len() - 10, numbers[10..].iter().map(|(_, c)| **c).sum::<u64>()));
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
        let decided = k.answered + k.abandoned;
        let or_dash = |over: u64, v: String| if over == 0 { "–".to_string() } else { v };
        w(format!(
            "{:<14} {:>7} {:>8} {:>9} {:>8}  {:>8} {:>9} {:>8} {:>9}",
            name,
            k.offered,
            k.answered,
            k.abandoned,
            k.overflowed,
            rate(k.service_level, decided, 1),
            or_dash(k.answered, secs(k.asa_ms)),
            rate(k.abandon_rate, k.offered, 2),
            or_dash(k.answered, secs(k.aht_ms))
        ));
    }
    let k = &r.all_queues;
    w(format!(
        "answer rate (接通率) {}, queued (排队率) {}, average waiting (排队均长) {:.2}, longest wait {}",
        rate(k.answer_rate, k.offered, 1),
        rate(k.queue_rate, k.offered, 1),
        r.average_waiting,
        secs(k.longest_wait_ms)
    ));
    if r.periods.len() > 1 {
        w(String::new());
        w(format!("{:<17} {:>6} {:>9} {:>7} {:>8} {:>9} {:>8} {:>9} {:>8} {:>8}", format!("by {}", r.by), "calls", "contained", "offered", "answered", "abandoned", format!("SL {}s", k.service_level_threshold_ms / 1000), "ASA", "abandon", "agents"));
        for p in &r.periods {
            let q = &p.all_queues;
            // A period nobody queued in has no service level, not 100%.
            let sl = rate(q.service_level, q.answered + q.abandoned, 1);
            let asa = if q.answered == 0 { "–".to_string() } else { secs(q.asa_ms) };
            let (abandon, contained) = (rate(q.abandon_rate, q.offered, 2), rate(p.containment, p.ivr_calls, 1));
            let busy = rate(p.utilisation, p.logged_in_s, 1);
            w(format!("{:<17} {:>6} {:>9} {:>7} {:>8} {:>9} {:>8} {:>9} {:>8} {:>8}", p.period, p.ivr_calls, contained, q.offered, q.answered, q.abandoned, sl, asa, abandon, busy));
        }
    }
    if r.releases.len() > 1 {
        w(String::new());
        w(format!("{:<14} {:>6} {:>10} {:>13}  ended", "release", "calls", "contained", "hung up (IVR)"));
        for (id, l) in &r.releases {
            let ended = l.outcomes.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ");
            w(format!("{:<14} {:>6} {:>10} {:>13}  {ended}", id, l.calls, rate(l.containment, l.calls, 1), l.hung_up_in_ivr));
        }
    }
    for (flow, f) in &r.funnel {
        w(String::new());
        w(format!("funnel {flow}: {} calls, {} contained", f.calls, f.contained));
        w(format!("  {:<22} {:>7} {:>8}  keys", "node", "reached", "hung up"));
        for n in &f.nodes {
            let keys = n.keys.iter().map(|(k, c)| format!("{k}:{c}")).collect::<Vec<_>>().join(" ");
            w(format!("  {:<22} {:>7} {:>8}  {keys}", n.node, n.reached, n.hung_up).trim_end().to_string());
        }
    }
    w(String::new());
    w(format!("{:<8} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9}  utilisation", "agent", "calls", "talk", "wrap-up", "ready", "not ready", "logged in"));
    for a in &r.agents {
        let get = |k: &str| a.states_s.get(k).copied().unwrap_or(0);
        let on: u64 = ["ready", "not_ready", "ringing", "talking", "wrap_up"].iter().map(|k| get(k)).sum();
        w(format!(
            "{:<8} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9}  {}",
            a.agent,
            a.calls,
            hms(a.talk_s),
            hms(a.wrap_up_s),
            hms(get("ready")),
            hms(get("not_ready")),
            hms(on),
            rate(a.utilisation, on, 1)
        ));
    }
    if r.agents.len() > 1 {
        w(format!("{:<8} {:>64}  {}", "(all)", "", rate(r.agents_utilisation, r.agents.iter().map(|a| a.states_s.values().sum::<u64>()).sum(), 1)));
    }
    w(String::new());
    w(format!(
        "survey: {} answers, {} satisfied (1–2); {}",
        r.survey.answers,
        rate(r.survey.satisfied, r.survey.answers, 1),
        r.survey.scores.iter().map(|(s, n)| format!("{s}: {n}")).collect::<Vec<_>>().join(", ")
    ));
    // Numbers and names come from callers and the network: never a terminal's control sequence.
    o.chars().map(|c| if c.is_control() && c != '\n' { format!("\\u{{{:x}}}", c as u32) } else { c.to_string() }).collect()
}

/// Which table `--format csv` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Section {
    /// One row per period and queue (`(all)`: every queue together).
    Periods,
    /// One row per flow and node: reached, hung up there, keys.
    Funnel,
    /// One row per agent.
    Agents,
    /// One row per hour of the day.
    Hours,
    /// One row per release the calls ran on (a canary beside the current one).
    Releases,
}

fn csv_field(s: &str) -> String {
    // A name a spreadsheet would take for a formula is kept as text.
    let s = &if s.starts_with(['=', '+', '@', '\t', '\r']) || (s.starts_with('-') && s.parse::<f64>().is_err()) { format!("'{s}") } else { s.to_string() };
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

fn csv_row(o: &mut String, fields: &[String]) {
    o.push_str(&fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
    o.push_str("\r\n");
}

/// One table of the report as CSV (RFC 4180), for a spreadsheet.
pub fn csv(r: &Report, section: Section) -> String {
    let mut o = String::new();
    let f1 = |x: f64| format!("{x:.1}");
    match section {
        Section::Periods => {
            csv_row(&mut o, &["period", "queue", "ivr_calls", "contained_pct", "offered", "answered", "abandoned", "sent_on", "answer_rate_pct", "service_level_pct", "asa_s", "abandon_rate_pct", "aht_s", "queue_rate_pct", "average_waiting", "longest_wait_s", "agent_utilisation_pct"].map(String::from));
            for p in &r.periods {
                for (q, k) in p.queues.iter().map(|(q, k)| (q.as_str(), k)).chain([("(all)", &p.all_queues)]) {
                    // The IVR's figures are the period's: on its `(all)` row only, so a column sums right.
                    let all = q == "(all)";
                    let avg = if all { format!("{:.3}", p.average_waiting) } else { String::new() };
                    // Rates over no calls are left empty, not 0 or 100.
                    let over = |n: u64, v: String| if n > 0 { v } else { String::new() };
                    let secs = |n: u64, ms: u64| over(n, format!("{:.1}", ms as f64 / 1000.0));
                    let (ivr_calls, contained) = if all { (p.ivr_calls.to_string(), over(p.ivr_calls, f1(p.containment))) } else { (String::new(), String::new()) };
                    csv_row(&mut o, &[p.period.clone(), q.to_string(), ivr_calls, contained, k.offered.to_string(), k.answered.to_string(), k.abandoned.to_string(), k.overflowed.to_string(), over(k.offered, f1(k.answer_rate)), over(k.answered + k.abandoned, f1(k.service_level)), secs(k.answered, k.asa_ms), over(k.offered, f1(k.abandon_rate)), secs(k.answered, k.aht_ms), over(k.offered, f1(k.queue_rate)), avg, secs(k.offered, k.longest_wait_ms), if all { over(p.logged_in_s, f1(p.utilisation)) } else { String::new() }]);
                }
            }
        }
        Section::Funnel => {
            csv_row(&mut o, &["flow", "node", "reached", "hung_up", "keys"].map(String::from));
            for (flow, f) in &r.funnel {
                for n in &f.nodes {
                    let keys = n.keys.iter().map(|(k, c)| format!("{k}:{c}")).collect::<Vec<_>>().join(" ");
                    csv_row(&mut o, &[flow.clone(), n.node.clone(), n.reached.to_string(), n.hung_up.to_string(), keys]);
                }
            }
        }
        Section::Agents => {
            csv_row(&mut o, &["agent", "calls", "talk_s", "wrap_up_s", "ready_s", "not_ready_s", "utilisation_pct"].map(String::from));
            for a in &r.agents {
                let get = |k: &str| a.states_s.get(k).copied().unwrap_or(0).to_string();
                let on: u64 = a.states_s.iter().filter(|(k, _)| *k != "logged_out").map(|(_, v)| *v).sum();
                let utilisation = if on > 0 { f1(a.utilisation) } else { String::new() };
                csv_row(&mut o, &[a.agent.clone(), a.calls.to_string(), a.talk_s.to_string(), a.wrap_up_s.to_string(), get("ready"), get("not_ready"), utilisation]);
            }
        }
        Section::Releases => {
            csv_row(&mut o, &["release", "calls", "contained_pct", "hung_up_in_ivr", "outcomes"].map(String::from));
            for (id, l) in &r.releases {
                let ended = l.outcomes.iter().map(|(k, v)| format!("{k}:{v}")).collect::<Vec<_>>().join(" ");
                let contained = if l.calls > 0 { f1(l.containment) } else { String::new() };
                csv_row(&mut o, &[id.clone(), l.calls.to_string(), contained, l.hung_up_in_ivr.to_string(), ended]);
            }
        }
        Section::Hours => {
            csv_row(&mut o, &["hour", "ivr_calls", "offered", "service_level_pct"].map(String::from));
            for h in &r.hours {
                let sl = if h.decided > 0 { f1(h.service_level) } else { String::new() };
                csv_row(&mut o, &[format!("{:02}", h.hour), h.ivr_calls.to_string(), h.offered.to_string(), sl]);
            }
        }
    }
    o
}
