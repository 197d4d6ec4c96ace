//! A simulated day of a national bank's agent calls through the queue core,
//! in simulated time: 580,000 agent calls a month (≈19,300 a day) over 300
//! agents, arriving by the hour as a hotline's do (peaks 09–11 and 14–16),
//! staffed by the hour, with ring-no-answer, callers who give up, VIPs and a
//! lost-card queue served first. Reports service level, average speed of
//! answer and abandon rate, and how long the simulation took.
//!
//! cargo bench --bench acd_day            (or: -- --days 30 for a month)

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Instant;

use ivr_acd::{Acd, AcdConfig, AgentConfig, CallId, Command, Kpi, QueueConfig, Record, Strategy, Widen};

const S: u64 = 1_000;
const HOUR: u64 = 3_600 * S;
const DAY: u64 = 24 * HOUR;
/// Share of the day's calls in each hour from 08:00 to 21:00 (%).
const PROFILE: [(u64, u64); 14] = [(8, 3), (9, 9), (10, 11), (11, 10), (12, 6), (13, 8), (14, 10), (15, 9), (16, 8), (17, 7), (18, 6), (19, 5), (20, 4), (21, 4)];
const CALLS_PER_DAY: u64 = 580_000 / 30;
const AGENTS: usize = 300;
const MEAN_TALK_MS: f64 = 150_000.0;
const WRAP_MS: u64 = 15_000;
const MEAN_PATIENCE_MS: f64 = 120_000.0;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Arrive(u64),
    Answer(CallId, ivr_acd::AgentId),
    TalkEnd(CallId),
    GiveUp(CallId),
    Ready(ivr_acd::AgentId),
    Staff(u64),
}

fn main() {
    let days: u64 = std::env::args().skip_while(|a| a != "--days").nth(1).and_then(|d| d.parse().ok()).unwrap_or(1);
    let mut agents = Vec::new();
    for i in 0..AGENTS {
        let mut skills = vec![("general".to_string(), 1 + (i % 10) as u8)];
        if i % 5 == 0 {
            skills.push(("lost_card".to_string(), 8));
        }
        let mut a = AgentConfig::new(&format!("{}", 1000 + i), &[]);
        a.skills = skills;
        a.address = Some(format!("sip:{}@127.0.0.1", 1000 + i));
        agents.push(a);
    }
    let mut general = QueueConfig::new("general");
    general.strategy = Strategy::Skills;
    general.wrap_up_ms = WRAP_MS;
    general.widen = vec![Widen { after_ms: 0, min_level: 3 }, Widen { after_ms: 10 * S, min_level: 1 }];
    general.announce_every_ms = 30 * S;
    let mut lost = QueueConfig::new("lost_card");
    lost.wrap_up_ms = WRAP_MS;
    lost.join_empty = true;
    let cfg = AcdConfig { agents, queues: vec![general, lost], ..AcdConfig::default() };
    let mut acd = Acd::new(cfg, 0);
    let mut rng = ivr_acd::erlang::Rng::new(0x9e37_79b9_7f4a_7c15);
    let mut events: BinaryHeap<Reverse<(u64, Ev)>> = BinaryHeap::new();
    for day in 0..days {
        for (hour, share) in PROFILE {
            let calls = CALLS_PER_DAY * share / 100;
            for _ in 0..calls {
                let t = day * DAY + hour * HOUR + (rng.next() * HOUR as f64) as u64;
                events.push(Reverse((t, Ev::Arrive(0))));
            }
        }
        for hour in 7..23 {
            events.push(Reverse((day * DAY + hour * HOUR - 10 * 60 * S, Ev::Staff(hour))));
        }
    }
    let mut next_call = 0u64;
    let mut patience: HashMap<CallId, u64> = HashMap::new();
    let mut records = Vec::new();
    let mut handled = 0u64;
    let started = Instant::now();
    let mut now = 0;
    while let Some((t, next)) = acd.next_in_simulation(events.peek().map(|Reverse((t, _))| *t)) {
        now = now.max(t);
        if next == ivr_acd::Next::Timer {
            acd.handle_timeout(now);
        } else {
            let Reverse((_, ev)) = events.pop().unwrap();
            handled += 1;
            match ev {
                Ev::Arrive(_) => {
                    next_call += 1;
                    let call = CallId(next_call);
                    let lost_card = rng.next() < 0.03;
                    let vip = rng.next() < 0.1;
                    let (queue, priority) = if lost_card { ("lost_card", 100) } else { ("general", if vip { 10 } else { 0 }) };
                    acd.enqueue(now, call, queue, priority, 300 * S);
                    let give_up = now + rng.exp(MEAN_PATIENCE_MS);
                    patience.insert(call, give_up);
                    events.push(Reverse((give_up, Ev::GiveUp(call))));
                }
                Ev::Answer(call, agent) => {
                    if acd.answered(now, call, &agent) {
                        patience.remove(&call);
                        events.push(Reverse((now + rng.exp(MEAN_TALK_MS).max(10 * S), Ev::TalkEnd(call))));
                    }
                }
                Ev::TalkEnd(call) => acd.talk_ended(now, call, rng.next() < 0.7),
                Ev::GiveUp(call) => {
                    if patience.remove(&call).is_some() {
                        acd.caller_left(now, call, false);
                    }
                }
                Ev::Ready(agent) => {
                    let _ = acd.ready(now, &agent);
                }
                Ev::Staff(hour) => {
                    // Staff the coming hour by Erlang C for 90% answered in 20 s.
                    let share = PROFILE.iter().find(|(h, _)| *h == hour).map_or(0, |(_, s)| *s);
                    let erlangs = (CALLS_PER_DAY * share / 100) as f64 * (MEAN_TALK_MS + WRAP_MS as f64) / HOUR as f64;
                    let want = if share == 0 { 0 } else { staff(erlangs, (MEAN_TALK_MS + WRAP_MS as f64) / 1e3, 20.0, 0.9).min(AGENTS) };
                    for i in 0..AGENTS {
                        let id = format!("{}", 1000 + i);
                        let on = acd.agent_state(&id).is_some_and(|s| s.name() != "logged_out");
                        if i < want && !on {
                            acd.login(now, &id, None).unwrap();
                        } else if i >= want && on {
                            acd.logout(now, &id).unwrap();
                        }
                    }
                }
            }
        }
        while let Some(c) = acd.poll_command() {
            match c {
                Command::Offer { call, agent, .. } => {
                    // 2% of rings go unanswered (the agent stepped away).
                    if rng.next() >= 0.02 {
                        events.push(Reverse((now + 2 * S + rng.exp(2_000.0).min(10 * S), Ev::Answer(call, agent))));
                    } else {
                        events.push(Reverse((now + 60 * S, Ev::Ready(agent))));
                    }
                }
                Command::Finish { call, .. } => {
                    patience.remove(&call);
                }
                Command::Withdraw { .. } | Command::Announce { .. } => {}
            }
        }
        while let Some(r) = acd.poll_record() {
            if let Record::Call(c) = r {
                records.push(c);
            }
        }
    }
    let took = started.elapsed();
    let kpi = Kpi::from_records(&records, 20 * S);
    println!("simulated {days} day(s): {} calls offered to the queues, {AGENTS} agents, {handled} host events", kpi.offered);
    println!("  answered {} · abandoned {} · sent on by the flow {}", kpi.answered, kpi.abandoned, kpi.overflowed);
    println!("  service level {:.1}% within 20 s · ASA {:.1} s · abandon rate {:.2}% · AHT {:.0} s · longest wait {:.0} s", kpi.service_level, kpi.asa_ms as f64 / 1e3, kpi.abandon_rate, kpi.aht_ms as f64 / 1e3, kpi.longest_wait_ms as f64 / 1e3);
    println!("  simulation took {:.2} s", took.as_secs_f64());
}

/// The fewest agents for which Erlang C expects `target` of calls answered
/// within `within_s`, at `erlangs` offered with handle time `aht_s`.
fn staff(erlangs: f64, aht_s: f64, within_s: f64, target: f64) -> usize {
    ivr_acd::erlang::agents_needed(erlangs, aht_s, within_s, target)
}
