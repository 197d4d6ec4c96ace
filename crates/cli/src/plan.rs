//! `ivr plan`: how many agents each hour needs for a service level (e.g. 90%
//! answered within 20 s), from what the records say callers do — arrivals by
//! hour, handle time (talk + wrap-up), and patience measured from those who
//! gave up — by Erlang C, and checked by simulating the day through the real
//! queue core (`ivr-acd`) in simulated time, callers abandoning as patiently
//! as the records say. A roster can be given instead, to see what it would do.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use ivr_acd::erlang::{agents_needed, asa_s, service_level};
use ivr_acd::{Acd, AcdConfig, AgentConfig, CallId, Command, QueueConfig, Record};
use serde::Serialize;

const S: u64 = 1_000;
const HOUR: u64 = 3_600 * S;

/// What callers do, by hour of the day (local time).
#[derive(Debug, Clone, Serialize)]
pub struct Demand {
    /// Calls offered to agents in each hour, per day on average.
    pub calls: [f64; 24],
    /// Mean handle time (talk + wrap-up) of answered calls, per hour (ms);
    /// hours without answered calls take the day's mean.
    pub handle_ms: [f64; 24],
    /// Mean patience (ms): how long callers wait before giving up, estimated
    /// as all the waiting done divided by the number who gave up (exponential
    /// patience, with answered callers' waits as censored observations).
    pub patience_ms: f64,
    pub days: u32,
    /// Days in the span with any queued call: what calls per hour are averaged over.
    pub open_days: u32,
}

impl Demand {
    /// From `queue.jsonl` lines over `days` days; `when` gives a record's
    /// local day (any day number) and hour, or `None` outside the span.
    /// Calls per hour are averaged over the days the centre took calls (a
    /// closed Sunday or holiday does not dilute a weekday); direct dials of a
    /// work number are left out, as in the queue KPIs.
    pub fn from_records(lines: &[serde_json::Value], days: u32, when: impl Fn(i64) -> Option<(i64, usize)>) -> Demand {
        let mut calls = [0.0; 24];
        let (mut handle_sum, mut handled) = ([0.0; 24], [0.0; 24]);
        let (mut waited, mut gave_up) = (0.0, 0.0);
        let mut open_days = std::collections::BTreeSet::new();
        for l in lines.iter().filter(|l| l["queue"].is_string()) {
            let Some((day, hour)) = l["joined_at_ms"].as_i64().and_then(&when) else { continue };
            open_days.insert(day);
            calls[hour] += 1.0;
            // Exponential patience: every caller's wait is time they did not
            // give up in (answered and sent-on callers' waits are censored
            // observations); those who hung up are the events.
            waited += l["waited_ms"].as_f64().unwrap_or(0.0);
            match l["result"].as_str() {
                Some("answered") => {
                    handle_sum[hour] += l["talk_ms"].as_f64().unwrap_or(0.0) + l["wrap_up_ms"].as_f64().unwrap_or(0.0);
                    handled[hour] += 1.0;
                }
                Some("abandoned") => gave_up += 1.0,
                _ => {}
            }
        }
        let days_f = open_days.len().clamp(1, days.max(1) as usize) as f64;
        let mean_all = if handled.iter().sum::<f64>() > 0.0 { handle_sum.iter().sum::<f64>() / handled.iter().sum::<f64>() } else { 180_000.0 };
        let handle_ms = std::array::from_fn(|h| if handled[h] > 0.0 { handle_sum[h] / handled[h] } else { mean_all });
        Demand { calls: calls.map(|c| c / days_f), handle_ms, patience_ms: if gave_up > 0.0 { waited / gave_up } else { f64::INFINITY }, days, open_days: open_days.len() as u32 }
    }
}

/// One hour's prediction.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HourPlan {
    pub hour: usize,
    pub calls: f64,
    pub aht_s: f64,
    pub erlangs: f64,
    /// Agents Erlang C says the target needs.
    pub needed: usize,
    /// Agents planned (the roster, or `needed`).
    pub agents: usize,
    pub erlang_sl: f64,
    pub erlang_asa_s: f64,
    /// What the simulation through the queue core gave with `agents`.
    pub sim_offered: u64,
    pub sim_sl: f64,
    pub sim_asa_s: f64,
    pub sim_abandon: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Arrive,
    Answer(CallId, ivr_acd::AgentId),
    TalkEnd(CallId),
    GiveUp(CallId),
    Staff(usize),
}

/// Simulates `days` days of `demand` through the queue core with `roster`
/// agents each hour; returns (offered, within target, answered wait sum ms,
/// abandoned) per hour of arrival.
pub fn simulate(demand: &Demand, roster: &[usize; 24], within_ms: u64, days: u32, seed: u64) -> [(u64, u64, u64, u64, u64); 24] {
    let most = roster.iter().copied().max().unwrap_or(0);
    let agents: Vec<AgentConfig> = (0..most)
        .map(|i| {
            let mut a = AgentConfig::new(&format!("{}", 1000 + i), &[]);
            a.skills = vec![("plan".to_string(), 5)];
            a.address = Some(format!("sip:{}@127.0.0.1", 1000 + i));
            a
        })
        .collect();
    let mut queue = QueueConfig::new("plan");
    queue.wrap_up_ms = 0; // handle time already holds the wrap-up
    queue.join_empty = true;
    queue.leave_empty = false;
    let mut acd = Acd::new(AcdConfig { agents, queues: vec![queue], ..AcdConfig::default() }, 0);
    let mut rng = ivr_acd::erlang::Rng::new(seed);
    let mut events: BinaryHeap<Reverse<(u64, u64, Ev)>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut push = |events: &mut BinaryHeap<Reverse<(u64, u64, Ev)>>, t: u64, ev: Ev| {
        seq += 1;
        events.push(Reverse((t, seq, ev)));
    };
    for day in 0..days as u64 {
        for hour in 0..24usize {
            let start = day * 24 * HOUR + hour as u64 * HOUR;
            push(&mut events, start, Ev::Staff(roster[hour]));
            // Poisson arrivals at the hour's rate.
            let rate = demand.calls[hour] / HOUR as f64;
            if rate <= 0.0 {
                continue;
            }
            let mut t = start as f64;
            loop {
                t += -(1.0 - rng.next()).ln() / rate;
                if t >= (start + HOUR) as f64 {
                    break;
                }
                push(&mut events, t as u64, Ev::Arrive);
            }
        }
    }
    let mut joined_hour: HashMap<CallId, usize> = HashMap::new();
    let mut waiting: HashMap<CallId, ()> = HashMap::new();
    let mut out = [(0u64, 0u64, 0u64, 0u64, 0u64); 24];
    let (mut next_call, mut now) = (CallId(0), 0u64);
    while let Some((t, next)) = acd.next_in_simulation(events.peek().map(|Reverse((t, _, _))| *t)) {
        now = now.max(t);
        if next == ivr_acd::Next::Timer {
            acd.handle_timeout(now);
        } else if let Some(Reverse((_, _, ev))) = events.pop() {
            match ev {
                Ev::Arrive => {
                    next_call = CallId(next_call.0 + 1);
                    let hour = ((now / HOUR) % 24) as usize;
                    joined_hour.insert(next_call, hour);
                    waiting.insert(next_call, ());
                    acd.enqueue(now, next_call, "plan", 0, 0);
                    let patience = rng.exp(demand.patience_ms);
                    push(&mut events, now.saturating_add(patience), Ev::GiveUp(next_call));
                }
                Ev::Answer(call, agent) => {
                    if acd.answered(now, call, &agent) {
                        waiting.remove(&call);
                        let hour = joined_hour.get(&call).copied().unwrap_or(0);
                        let talk = rng.exp(demand.handle_ms[hour]).max(S);
                        push(&mut events, now + talk, Ev::TalkEnd(call));
                    }
                }
                Ev::TalkEnd(call) => acd.talk_ended(now, call, false),
                Ev::GiveUp(call) => {
                    if waiting.remove(&call).is_some() {
                        acd.caller_left(now, call, false);
                    }
                }
                Ev::Staff(want) => {
                    for i in 0..most {
                        let id = format!("{}", 1000 + i);
                        let on = acd.agent_state(&id).is_some_and(|s| s.name() != "logged_out");
                        if i < want && !on {
                            let _ = acd.login(now, &id, None);
                        } else if i >= want && on {
                            // An agent on a call finishes it first (the queue core logs them out after).
                            let _ = acd.logout(now, &id);
                        }
                    }
                }
            }
        }
        while let Some(c) = acd.poll_command() {
            if let Command::Offer { call, agent, .. } = c {
                // Phones answer at once in the plan: ringing is not staffing.
                push(&mut events, now, Ev::Answer(call, agent));
            }
        }
        while let Some(r) = acd.poll_record() {
            if let Record::Call(c) = r {
                let hour = joined_hour.remove(&c.call).unwrap_or(0);
                let o = &mut out[hour];
                o.0 += 1;
                match c.result.as_str() {
                    "answered" => {
                        o.2 += c.waited_ms;
                        o.4 += 1;
                        if c.waited_ms <= within_ms {
                            o.1 += 1;
                        }
                    }
                    _ => o.3 += 1,
                }
            }
        }
    }
    out
}

/// The plan for each hour with calls: Erlang C's staffing for `target`
/// within `within_s` (or `roster`), and what the simulation gave.
pub fn plan(demand: &Demand, target: f64, within_s: f64, roster: Option<&[usize; 24]>, sim_days: u32) -> Vec<HourPlan> {
    let mut hours: Vec<HourPlan> = (0..24)
        .filter(|&h| demand.calls[h] > 0.0)
        .map(|h| {
            let aht_s = demand.handle_ms[h] / 1e3;
            let erlangs = demand.calls[h] * aht_s / 3_600.0;
            let needed = agents_needed(erlangs, aht_s, within_s, target);
            let agents = roster.map_or(needed, |r| r[h]);
            HourPlan {
                hour: h,
                calls: demand.calls[h],
                aht_s,
                erlangs,
                needed,
                agents,
                erlang_sl: service_level(erlangs, agents, aht_s, within_s),
                erlang_asa_s: asa_s(erlangs, agents, aht_s),
                ..HourPlan::default()
            }
        })
        .collect();
    let mut r = [0usize; 24];
    for h in &hours {
        r[h.hour] = h.agents;
    }
    let sim = simulate(demand, &r, (within_s * 1e3) as u64, sim_days, 0x9e37_79b9_7f4a_7c15);
    for h in &mut hours {
        let (offered, within, wait_sum, abandoned, answered) = sim[h.hour];
        h.sim_offered = offered;
        h.sim_sl = if offered > 0 { within as f64 / offered as f64 } else { 1.0 };
        h.sim_asa_s = if answered > 0 { wait_sum as f64 / answered as f64 / 1e3 } else { 0.0 };
        h.sim_abandon = if offered > 0 { abandoned as f64 / offered as f64 } else { 0.0 };
    }
    hours
}

/// `HH:N,HH-HH:N,…` (local hours, agents) → agents per hour.
pub fn parse_roster(s: &str) -> Result<[usize; 24], String> {
    let mut r = [0usize; 24];
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (hours, n) = part.split_once(':').ok_or_else(|| format!("`{part}`: write HOUR:AGENTS or FROM-TO:AGENTS, e.g. 9-11:25"))?;
        let n: usize = n.trim().parse().map_err(|_| format!("`{part}`: {n} is not a number of agents"))?;
        let (a, b) = hours.split_once('-').unwrap_or((hours, hours));
        let (a, b): (usize, usize) = (a.trim().parse().map_err(|_| format!("`{part}`: bad hour"))?, b.trim().parse().map_err(|_| format!("`{part}`: bad hour"))?);
        if a > 23 || b > 23 || a > b {
            return Err(format!("`{part}`: hours run 0-23, earliest first"));
        }
        for h in r.iter_mut().take(b + 1).skip(a) {
            *h = n;
        }
    }
    Ok(r)
}

pub fn render(hours: &[HourPlan], target: f64, within_s: f64, demand: &Demand) -> String {
    use std::fmt::Write;
    let mut s = format!(
        "staffing for {:.0}% answered within {within_s:.0} s (from {} day{} of records, {} with calls; patience {})\n\n",
        target * 100.0,
        demand.days,
        if demand.days == 1 { "" } else { "s" },
        demand.open_days,
        if demand.patience_ms.is_finite() { format!("{:.0} s", demand.patience_ms / 1e3) } else { "unknown: nobody gave up".into() }
    );
    let _ = writeln!(s, "hour   calls/h    AHT  erlangs  needed  agents │ Erlang C: SL    ASA │ simulated: SL    ASA  abandon");
    for h in hours {
        let _ = writeln!(
            s,
            "{:02}:00 {:>8.1} {:>5.0}s {:>8.2} {:>7} {:>7} │ {:>11.1}% {:>5.1}s │ {:>12.1}% {:>5.1}s {:>7.1}%",
            h.hour,
            h.calls,
            h.aht_s,
            h.erlangs,
            h.needed,
            h.agents,
            h.erlang_sl * 100.0,
            h.erlang_asa_s.min(9_999.0),
            h.sim_sl * 100.0,
            h.sim_asa_s,
            h.sim_abandon * 100.0
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use ivr_acd::erlang::erlang_c;

    #[test]
    fn erlang_c_matches_the_textbook() {
        // 10 erlangs (calls of 180 s at 200/h), 12 agents: P(wait) ≈ 0.449.
        assert!((erlang_c(10.0, 12) - 0.4494).abs() < 1e-3, "{}", erlang_c(10.0, 12));
        // The classic example: 100 calls per 30 min, AHT 180 s → 10 erlangs;
        // 13 agents answer 79.6% within 20 s, so 80% needs 14 (88.8%).
        assert!((service_level(10.0, 13, 180.0, 20.0) - 0.7956).abs() < 1e-3);
        assert_eq!(agents_needed(10.0, 180.0, 20.0, 0.8), 14);
        assert!((asa_s(10.0, 13, 180.0) - 17.1).abs() < 0.1, "ASA = C × AHT / (N − A)");
        assert_eq!(service_level(5.0, 5, 180.0, 20.0), 0.0, "as many agents as erlangs never keeps up");
    }

    #[test]
    fn demand_averages_over_open_days_leaves_out_direct_dials_and_counts_every_wait_toward_patience() {
        let rec = |day: i64, result: &str, waited_s: u64, queue: bool| {
            serde_json::json!({"joined_at_ms": day * 86_400_000 + 10 * 3_600_000, "queue": if queue { serde_json::json!("general") } else { serde_json::Value::Null },
                "result": result, "waited_ms": waited_s * 1000, "talk_ms": 100_000, "wrap_up_ms": 20_000})
        };
        // A week with calls on two days only (a weekend and holidays closed).
        let lines = [rec(0, "answered", 10, true), rec(0, "abandoned", 30, true), rec(3, "timeout", 60, true), rec(3, "answered", 0, true), rec(3, "answered", 5, false)];
        let d = Demand::from_records(&lines, 7, |ms| Some((ms / 86_400_000, ((ms / 3_600_000) % 24) as usize)));
        assert_eq!(d.open_days, 2);
        assert_eq!(d.calls[10], 2.0, "4 queued calls over the 2 days with calls; the direct dial left out");
        // 100 s of waiting in all, one caller gave up.
        assert_eq!(d.patience_ms, 100_000.0);
        assert_eq!(d.handle_ms[10], 120_000.0);
    }

    #[test]
    fn the_simulation_through_the_queue_core_agrees_with_erlang_c_when_nobody_gives_up() {
        // A steady day: 200 calls an hour of 180 s (10 erlangs) from 08 to 20.
        let mut calls = [0.0; 24];
        for c in calls.iter_mut().take(20).skip(8) {
            *c = 200.0;
        }
        let demand = Demand { calls, handle_ms: [180_000.0; 24], patience_ms: f64::INFINITY, days: 1, open_days: 1 };
        let hours = plan(&demand, 0.8, 20.0, None, 30);
        let (offered, within): (u64, f64) = hours.iter().map(|h| (h.sim_offered, h.sim_sl * h.sim_offered as f64)).fold((0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
        let sim_sl = within / offered as f64;
        let erlang = hours[4].erlang_sl;
        assert!(offered > 60_000, "a simulated month: {offered} calls");
        assert!((sim_sl - erlang).abs() < 0.04, "simulated {sim_sl:.3} vs Erlang C {erlang:.3}");
    }

    #[test]
    fn impatient_callers_abandon_and_rosters_parse() {
        let mut calls = [0.0; 24];
        calls[10] = 300.0;
        let demand = Demand { calls, handle_ms: [180_000.0; 24], patience_ms: 30_000.0, days: 1, open_days: 1 };
        let mut roster = [0usize; 24];
        roster[10] = 14;
        let h = &plan(&demand, 0.9, 20.0, Some(&roster), 20)[0];
        assert!(h.erlang_sl < 0.5, "15 erlangs on 14 agents: {}", h.erlang_sl);
        assert!(h.sim_abandon > 0.05, "callers give up: {}", h.sim_abandon);
        assert_eq!(parse_roster("9-11:20, 14:18").unwrap()[10], 20);
        assert!(parse_roster("25:3").is_err());
        assert!(parse_roster("9:x").is_err());
    }
}
