//! The queue core on a simulated clock: every strategy, priorities, skills
//! widening, ring-no-answer, overflow, leave-when-empty, direct dial, wrap-up
//! and announcements.

use ivr_acd::{Acd, AcdConfig, AgentConfig, CallId, Command, OfferFailure, Outcome, QueueConfig, Record, Strategy, Widen};

const S: u64 = 1_000;

fn agent(id: &str, skills: &[(&str, u8)]) -> AgentConfig {
    let mut a = AgentConfig::new(id, skills);
    a.address = Some(format!("sip:{id}@127.0.0.1:5070"));
    a
}

fn queue(strategy: Strategy) -> QueueConfig {
    let mut q = QueueConfig::new("general");
    q.strategy = strategy;
    q.announce_every_ms = 0;
    q
}

/// An ACD with `agents` logged in (in order, a second apart, so the first has
/// been idle longest).
fn acd(q: QueueConfig, agents: &[AgentConfig]) -> Acd {
    let mut acd = Acd::new(AcdConfig { agents: agents.to_vec(), queues: vec![q], ..AcdConfig::default() }, 0);
    for (i, a) in agents.iter().enumerate() {
        acd.login(i as u64, &a.id, None).unwrap();
    }
    drain(&mut acd);
    acd
}

fn drain(acd: &mut Acd) -> Vec<Command> {
    std::iter::from_fn(|| acd.poll_command()).collect()
}

fn offers(cmds: &[Command]) -> Vec<(u64, String)> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::Offer { call, agent, .. } => Some((call.0, agent.to_string())),
            _ => None,
        })
        .collect()
}

fn finished(cmds: &[Command]) -> Vec<(u64, Outcome)> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::Finish { call, outcome } => Some((call.0, *outcome)),
            _ => None,
        })
        .collect()
}

fn call_records(acd: &mut Acd) -> Vec<ivr_acd::CallRecord> {
    std::iter::from_fn(|| acd.poll_record())
        .filter_map(|r| match r {
            Record::Call(c) => Some(c),
            Record::Agent(_) => None,
        })
        .collect()
}

fn state(acd: &Acd, id: &str) -> &'static str {
    acd.agent_state(id).unwrap().name()
}

/// Answers `call` by `agent` at `t`, talks `talk`, the agent hangs up.
fn serve(acd: &mut Acd, call: u64, agent: &str, t: u64, talk: u64) {
    assert!(acd.answered(t, CallId(call), agent));
    acd.talk_ended(t + talk, CallId(call), true);
}

#[test]
fn longest_idle_offers_the_agent_ready_longest() {
    let a = [agent("1001", &[("general", 5)]), agent("1002", &[("general", 5)]), agent("1003", &[("general", 5)])];
    let mut acd = acd(queue(Strategy::LongestIdle), &a);
    acd.enqueue(10 * S, CallId(1), "general", 0, 0);
    assert_eq!(offers(&drain(&mut acd)), vec![(1, "1001".to_string())]);
    // 1001 takes it; after wrap-up they are the most recently idle.
    serve(&mut acd, 1, "1001", 11 * S, 60 * S);
    acd.handle_timeout(81 * S);
    assert_eq!(state(&acd, "1001"), "ready");
    drain(&mut acd);
    acd.enqueue(90 * S, CallId(2), "general", 0, 0);
    acd.enqueue(90 * S, CallId(3), "general", 0, 0);
    acd.enqueue(90 * S, CallId(4), "general", 0, 0);
    assert_eq!(offers(&drain(&mut acd)), vec![(2, "1002".into()), (3, "1003".into()), (4, "1001".into())]);
}

#[test]
fn round_robin_takes_each_member_in_turn() {
    let a = [agent("1001", &[("general", 5)]), agent("1002", &[("general", 5)]), agent("1003", &[("general", 5)])];
    let mut q = queue(Strategy::RoundRobin);
    q.wrap_up_ms = 0;
    let mut acd = acd(q, &a);
    let mut got = Vec::new();
    for call in 1..=5 {
        acd.enqueue(call * 10 * S, CallId(call), "general", 0, 0);
        let o = offers(&drain(&mut acd));
        got.push(o[0].1.clone());
        serve(&mut acd, call, &o[0].1, call * 10 * S, S);
        drain(&mut acd);
    }
    assert_eq!(got, ["1001", "1002", "1003", "1001", "1002"]);
}

#[test]
fn fewest_calls_balances_the_work() {
    let a = [agent("1001", &[("general", 5)]), agent("1002", &[("general", 5)])];
    let mut q = queue(Strategy::FewestCalls);
    q.wrap_up_ms = 0;
    let mut acd = acd(q, &a);
    // 1001 has taken two calls, 1002 one: 1002 is next even though 1001 has
    // been idle longer.
    for (call, who) in [(1, "1001"), (2, "1002"), (3, "1001")] {
        acd.enqueue(call * 10 * S, CallId(call), "general", 0, 0);
        let o = offers(&drain(&mut acd));
        assert_eq!(o[0].1, who, "call {call}");
        serve(&mut acd, call, who, call * 10 * S, S);
        drain(&mut acd);
    }
    acd.enqueue(100 * S, CallId(4), "general", 0, 0);
    assert_eq!(offers(&drain(&mut acd))[0].1, "1002");
}

#[test]
fn ring_all_rings_everyone_and_the_first_answer_wins() {
    let a = [agent("1001", &[("general", 5)]), agent("1002", &[("general", 5)]), agent("1003", &[("general", 5)])];
    let mut acd = acd(queue(Strategy::RingAll), &a);
    acd.enqueue(10 * S, CallId(1), "general", 0, 0);
    assert_eq!(offers(&drain(&mut acd)).len(), 3);
    assert!(acd.answered(12 * S, CallId(1), "1002"));
    let cmds = drain(&mut acd);
    let withdrawn: Vec<&str> = cmds
        .iter()
        .filter_map(|c| match c {
            Command::Withdraw { agent, .. } => Some(agent.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(withdrawn, ["1001", "1003"]);
    assert_eq!((state(&acd, "1001"), state(&acd, "1002"), state(&acd, "1003")), ("ready", "talking", "ready"));
    // A late answer from another phone is refused: the host hangs that leg up.
    assert!(!acd.answered(12 * S, CallId(1), "1001"));
}

#[test]
fn skills_prefers_the_most_skilled_and_widens_after_a_wait() {
    let a = [agent("1001", &[("vip", 3)]), agent("1002", &[("vip", 9)]), agent("1003", &[("vip", 6)])];
    let mut q = queue(Strategy::Skills);
    q.name = "vip".into();
    q.widen = vec![Widen { after_ms: 0, min_level: 8 }, Widen { after_ms: 30 * S, min_level: 5 }, Widen { after_ms: 60 * S, min_level: 1 }];
    let mut acd = acd(q, &a);
    acd.enqueue(10 * S, CallId(1), "vip", 0, 0);
    assert_eq!(offers(&drain(&mut acd)), vec![(1, "1002".into())]);
    assert!(acd.answered(11 * S, CallId(1), "1002"));
    // The expert is busy: the next caller waits for a level-8 agent until 30 s.
    acd.enqueue(20 * S, CallId(2), "vip", 0, 0);
    assert!(offers(&drain(&mut acd)).is_empty());
    assert_eq!(acd.poll_timeout(), Some(50 * S), "the next widening");
    acd.handle_timeout(50 * S);
    assert_eq!(offers(&drain(&mut acd)), vec![(2, "1003".into())], "level 5+ after 30 s");
    assert!(acd.answered(51 * S, CallId(2), "1003"));
    acd.enqueue(60 * S, CallId(3), "vip", 0, 0);
    acd.handle_timeout(90 * S);
    assert!(offers(&drain(&mut acd)).is_empty(), "level 3 not yet");
    acd.handle_timeout(120 * S);
    assert_eq!(offers(&drain(&mut acd)), vec![(3, "1001".into())], "anyone after 60 s");
}

#[test]
fn higher_priority_is_served_first_fifo_within_a_priority() {
    let a = [agent("1001", &[("general", 5)])];
    let mut acd = acd(queue(Strategy::LongestIdle), &a);
    acd.pause(0, "1001", "meeting").unwrap();
    acd.enqueue(10 * S, CallId(1), "general", 0, 0);
    acd.enqueue(11 * S, CallId(2), "general", 10, 0);
    acd.enqueue(12 * S, CallId(3), "general", 0, 0);
    acd.enqueue(13 * S, CallId(4), "general", 10, 0);
    drain(&mut acd);
    let order: Vec<u64> = acd.snapshot(14 * S).queues[0].callers.iter().map(|c| c.call.0).collect();
    assert_eq!(order, [2, 4, 1, 3]);
    // Raising a caller's priority re-ranks them at once.
    acd.set_priority(15 * S, CallId(3), 20).unwrap();
    let order: Vec<u64> = acd.snapshot(15 * S).queues[0].callers.iter().map(|c| c.call.0).collect();
    assert_eq!(order, [3, 2, 4, 1]);
    acd.ready(16 * S, "1001").unwrap();
    assert_eq!(offers(&drain(&mut acd)), vec![(3, "1001".into())]);
}

#[test]
fn ring_no_answer_makes_the_agent_not_ready_and_moves_on() {
    let a = [agent("1001", &[("general", 5)]), agent("1002", &[("general", 5)])];
    let mut q = queue(Strategy::LongestIdle);
    q.ring_ms = 15 * S;
    let mut acd = acd(q, &a);
    acd.enqueue(10 * S, CallId(1), "general", 0, 0);
    assert_eq!(offers(&drain(&mut acd)), vec![(1, "1001".into())]);
    assert_eq!(acd.poll_timeout(), Some(25 * S));
    acd.handle_timeout(25 * S);
    let cmds = drain(&mut acd);
    assert_eq!(cmds[0], Command::Withdraw { call: CallId(1), agent: "1001".into() });
    assert_eq!(offers(&cmds), vec![(1, "1002".into())]);
    assert_eq!(acd.snapshot(25 * S).agents[0].reason.as_deref(), Some("ring_no_answer"));
    // A phone that refuses is not ready too.
    acd.offer_failed(26 * S, CallId(1), "1002", OfferFailure::Declined);
    assert_eq!(state(&acd, "1002"), "not_ready");
    assert!(offers(&drain(&mut acd)).is_empty());
    acd.ready(30 * S, "1001").unwrap();
    assert_eq!(offers(&drain(&mut acd)), vec![(1, "1001".into())]);
    serve(&mut acd, 1, "1001", 31 * S, 10 * S);
    let rec = call_records(&mut acd);
    assert!(rec.is_empty(), "the record is complete after wrap-up");
    acd.handle_timeout(51 * S);
    let rec = call_records(&mut acd);
    assert_eq!(rec[0].offers, 3);
    assert_eq!((rec[0].waited_ms, rec[0].talk_ms, rec[0].wrap_up_ms), (21 * S, 10 * S, 10 * S));
}

#[test]
fn max_wait_and_max_length_overflow_to_the_flow() {
    let a = [agent("1001", &[("general", 5)])];
    let mut q = queue(Strategy::LongestIdle);
    q.max_len = Some(2);
    let mut acd = acd(q, &a);
    acd.pause(0, "1001", "lunch").unwrap();
    acd.enqueue(10 * S, CallId(1), "general", 0, 60 * S);
    acd.enqueue(11 * S, CallId(2), "general", 0, 0);
    acd.enqueue(12 * S, CallId(3), "general", 0, 0);
    assert_eq!(finished(&drain(&mut acd)), vec![(3, Outcome::Full)]);
    assert_eq!(acd.poll_timeout(), Some(70 * S));
    acd.handle_timeout(70 * S);
    assert_eq!(finished(&drain(&mut acd)), vec![(1, Outcome::Timeout)]);
    let rec = call_records(&mut acd);
    assert_eq!(rec.iter().map(|r| r.result.as_str()).collect::<Vec<_>>(), ["full", "timeout"]);
    assert_eq!(rec[1].waited_ms, 60 * S);
}

#[test]
fn joining_and_leaving_an_empty_queue() {
    let a = [agent("1001", &[("general", 5)])];
    let mut acd = Acd::new(AcdConfig { agents: a.to_vec(), queues: vec![queue(Strategy::LongestIdle)], ..AcdConfig::default() }, 0);
    acd.enqueue(S, CallId(1), "general", 0, 0);
    assert_eq!(finished(&drain(&mut acd)), vec![(1, Outcome::NoAgents)], "nobody logged in");
    // Logged in but paused: the caller may wait.
    acd.login(2 * S, "1001", None).unwrap();
    acd.pause(2 * S, "1001", "break").unwrap();
    acd.enqueue(3 * S, CallId(2), "general", 0, 0);
    assert!(finished(&drain(&mut acd)).is_empty());
    // The last agent logs out: waiting callers are sent on.
    acd.logout(4 * S, "1001").unwrap();
    assert_eq!(finished(&drain(&mut acd)), vec![(2, Outcome::NoAgents)]);

    let mut q = queue(Strategy::LongestIdle);
    q.join_empty = true;
    q.leave_empty = false;
    let mut acd = Acd::new(AcdConfig { agents: a.to_vec(), queues: vec![q], ..AcdConfig::default() }, 0);
    acd.enqueue(S, CallId(1), "general", 0, 0);
    assert!(finished(&drain(&mut acd)).is_empty(), "join_empty lets the caller wait");
    acd.login(5 * S, "1001", None).unwrap();
    assert_eq!(offers(&drain(&mut acd)), vec![(1, "1001".into())]);
}

#[test]
fn direct_dial_by_work_number() {
    let a = [agent("1001", &[("general", 5)]), agent("1002", &[("general", 5)]), agent("1003", &[("general", 5)])];
    let mut acd = acd(queue(Strategy::LongestIdle), &a);
    acd.logout(0, "1003").unwrap();
    acd.pause(0, "1002", "training").unwrap();
    drain(&mut acd);
    acd.dial(S, CallId(1), "1003", 20 * S);
    acd.dial(S, CallId(2), "1002", 20 * S);
    acd.dial(S, CallId(3), "9999", 20 * S);
    assert_eq!(finished(&drain(&mut acd)), vec![(1, Outcome::Absent), (2, Outcome::Busy), (3, Outcome::Absent)]);
    // Ready: straight to that agent, not through a queue.
    acd.dial(2 * S, CallId(4), "1001", 20 * S);
    let cmds = drain(&mut acd);
    assert!(matches!(&cmds[0], Command::Offer { call: CallId(4), agent, queue: None, .. } if agent == "1001"));
    serve(&mut acd, 4, "1001", 5 * S, 30 * S);
    assert_eq!(finished(&drain(&mut acd)), vec![(4, Outcome::Served)]);
    // Busy in wrap-up; then a ring-out.
    acd.dial(36 * S, CallId(5), "1001", 20 * S);
    assert_eq!(finished(&drain(&mut acd)), vec![(5, Outcome::Busy)]);
    acd.handle_timeout(45 * S);
    acd.dial(50 * S, CallId(6), "1001", 20 * S);
    acd.handle_timeout(70 * S);
    assert_eq!(finished(&drain(&mut acd)), vec![(6, Outcome::NoAnswer)]);
    assert_eq!(state(&acd, "1001"), "not_ready");
}

#[test]
fn wrap_up_then_ready_or_the_pause_asked_for_during_the_call() {
    let a = [agent("1001", &[("general", 5)])];
    let mut q = queue(Strategy::LongestIdle);
    q.wrap_up_ms = 20 * S;
    let mut acd = acd(q, &a);
    acd.enqueue(S, CallId(1), "general", 0, 0);
    assert!(acd.answered(2 * S, CallId(1), "1001"));
    acd.pause(3 * S, "1001", "break").unwrap();
    assert_eq!(state(&acd, "1001"), "talking", "the pause waits for the call to end");
    // The caller hangs up: no outcome to the flow, wrap-up starts.
    acd.talk_ended(10 * S, CallId(1), false);
    assert!(finished(&drain(&mut acd)).is_empty());
    assert_eq!(state(&acd, "1001"), "wrap_up");
    acd.enqueue(11 * S, CallId(2), "general", 0, 0);
    assert!(offers(&drain(&mut acd)).is_empty(), "no offers during wrap-up");
    assert_eq!(acd.poll_timeout(), Some(30 * S));
    acd.handle_timeout(30 * S);
    assert_eq!(acd.snapshot(30 * S).agents[0].reason.as_deref(), Some("break"));
    acd.ready(40 * S, "1001").unwrap();
    assert_eq!(offers(&drain(&mut acd)), vec![(2, "1001".into())]);
    let states: Vec<(&str, u64)> = std::iter::from_fn(|| acd.poll_record())
        .filter_map(|r| match r {
            Record::Agent(s) => Some((s.state, s.to_ms - s.from_ms)),
            _ => None,
        })
        .collect();
    assert_eq!(states, [("logged_out", 0), ("ready", S), ("ringing", S), ("talking", 8 * S), ("wrap_up", 20 * S), ("not_ready", 10 * S), ("ready", 0)]);
}

#[test]
fn positions_are_announced_only_when_they_improve() {
    let a = [agent("1001", &[("general", 5)])];
    let mut q = queue(Strategy::LongestIdle);
    q.announce_every_ms = 30 * S;
    q.assumed_handle_ms = 120 * S;
    let mut acd = acd(q, &a);
    acd.pause(0, "1001", "break").unwrap();
    acd.enqueue(0, CallId(1), "general", 0, 0);
    acd.enqueue(0, CallId(2), "general", 0, 0);
    let c = drain(&mut acd);
    assert_eq!(c[1], Command::Announce { call: CallId(2), position: Some(2), wait_ms: Some(240 * S) });
    // A VIP joins ahead of caller 2: position 3 is never announced.
    acd.enqueue(10 * S, CallId(3), "general", 10, 0);
    drain(&mut acd);
    acd.handle_timeout(30 * S);
    let c: Vec<Command> = drain(&mut acd).into_iter().filter(|c| matches!(c, Command::Announce { call: CallId(2), .. })).collect();
    assert_eq!(c, [Command::Announce { call: CallId(2), position: None, wait_ms: None }]);
    // Two callers ahead leave: position 1 is news.
    acd.caller_left(40 * S, CallId(3), false);
    acd.caller_left(41 * S, CallId(1), true);
    assert_eq!(finished(&drain(&mut acd)), vec![(1, Outcome::Left)]);
    acd.handle_timeout(60 * S);
    let c: Vec<Command> = drain(&mut acd).into_iter().filter(|c| matches!(c, Command::Announce { call: CallId(2), .. })).collect();
    assert_eq!(c, [Command::Announce { call: CallId(2), position: Some(1), wait_ms: Some(120 * S) }]);
    let rec = call_records(&mut acd);
    assert_eq!(rec.iter().map(|r| (r.call.0, r.result.as_str())).collect::<Vec<_>>(), [(3, "abandoned"), (1, "left")]);
}

#[test]
fn a_caller_who_hangs_up_while_an_agent_rings_withdraws_the_offer() {
    let a = [agent("1001", &[("general", 5)])];
    let mut acd = acd(queue(Strategy::LongestIdle), &a);
    acd.enqueue(S, CallId(1), "general", 0, 0);
    drain(&mut acd);
    acd.caller_left(3 * S, CallId(1), false);
    assert_eq!(drain(&mut acd), vec![Command::Withdraw { call: CallId(1), agent: "1001".into() }]);
    assert_eq!(state(&acd, "1001"), "ready");
    assert!(!acd.answered(4 * S, CallId(1), "1001"));
    let kpi = ivr_acd::Kpi::from_records(&call_records(&mut acd), 20 * S);
    assert_eq!((kpi.offered, kpi.abandoned, kpi.abandon_rate), (1, 1, 100.0));
}

#[test]
fn an_unknown_queue_fails_and_agents_without_a_phone_are_not_offered() {
    let mut a = agent("1001", &[("general", 5)]);
    a.address = None;
    let mut acd = Acd::new(AcdConfig { agents: vec![a], queues: vec![queue(Strategy::LongestIdle)], ..AcdConfig::default() }, 0);
    acd.enqueue(0, CallId(1), "nosuch", 0, 0);
    assert_eq!(finished(&drain(&mut acd)), vec![(1, Outcome::Failed)]);
    acd.login(0, "1001", None).unwrap();
    acd.enqueue(0, CallId(2), "general", 0, 0);
    assert!(offers(&drain(&mut acd)).is_empty(), "not registered yet");
    acd.set_contact("1001", Some("sip:1001@127.0.0.1:5071".into())).unwrap();
    acd.handle_timeout(S);
    let c = drain(&mut acd);
    assert!(matches!(&c[0], Command::Offer { contact: Some(x), .. } if x.ends_with(":5071")));
}

#[test]
fn an_agent_made_not_ready_by_a_ring_out_can_be_ready_again() {
    let a = [agent("1001", &[("general", 5)]), agent("1002", &[("general", 5)])];
    let mut acd = acd(queue(Strategy::Skills), &a);
    acd.enqueue(10 * S, CallId(1), "general", 0, 300 * S);
    acd.enqueue(10 * S, CallId(2), "general", 0, 300 * S);
    acd.enqueue(10 * S, CallId(3), "general", 0, 300 * S);
    drain(&mut acd);
    assert!(acd.answered(12 * S, CallId(2), "1002"));
    acd.handle_timeout(25 * S);
    assert_eq!(state(&acd, "1001"), "not_ready");
    acd.ready(70 * S, "1001").unwrap();
    assert_eq!(state(&acd, "1001"), "ringing");
}

#[test]
fn reconfiguring_keeps_calls_and_states() {
    let a = [agent("1001", &[("general", 5)]), agent("1002", &[("general", 5)])];
    let mut other = queue(Strategy::LongestIdle);
    other.name = "other".into();
    other.skill = Some("general".into());
    let mut acd = Acd::new(AcdConfig { agents: a.to_vec(), queues: vec![queue(Strategy::LongestIdle), other.clone()], ..AcdConfig::default() }, 0);
    acd.login(0, "1001", None).unwrap();
    acd.login(0, "1002", None).unwrap();
    acd.enqueue(S, CallId(1), "general", 0, 0);
    assert!(acd.answered(2 * S, CallId(1), "1001"));
    acd.pause(3 * S, "1002", "meeting").unwrap();
    acd.enqueue(4 * S, CallId(2), "other", 0, 0);
    drain(&mut acd);
    // 1001 (talking) and the queue `other` (with a waiting caller) go; 1003 comes.
    let mut new_agent = agent("1003", &[("general", 7)]);
    new_agent.auto_login = true;
    let mut cfg = AcdConfig { agents: vec![a[1].clone(), new_agent], queues: vec![queue(Strategy::Skills)], ..AcdConfig::default() };
    cfg.queues[0].wrap_up_ms = 0;
    acd.reconfigure(5 * S, cfg);
    let cmds = drain(&mut acd);
    assert_eq!(finished(&cmds), vec![(2, Outcome::NoAgents)], "the removed queue's caller goes on");
    assert_eq!(state(&acd, "1002"), "not_ready", "kept its state");
    assert_eq!(state(&acd, "1003"), "ready");
    assert!(acd.agent_state("1001").is_none(), "gone from the roster");
    assert_eq!(acd.snapshot(5 * S).agents.len(), 2);
    // 1001's call goes on and ends normally; then 1001 is logged out for good.
    acd.talk_ended(6 * S, CallId(1), true);
    assert_eq!(finished(&drain(&mut acd)), vec![(1, Outcome::Served)]);
    acd.enqueue(7 * S, CallId(3), "general", 0, 0);
    assert_eq!(offers(&drain(&mut acd)), vec![(3, "1003".into())], "the new agent takes calls");
    acd.enqueue(8 * S, CallId(4), "other", 0, 0);
    assert_eq!(finished(&drain(&mut acd)), vec![(4, Outcome::Failed)], "no such queue any more");
}

#[test]
fn a_caller_queues_only_when_no_agent_is_free_as_it_joins() {
    let a = [agent("1001", &[("general", 5)])];
    let mut acd = acd(queue(Strategy::LongestIdle), &a);
    // Caller 1 is offered at once; caller 2 waits for the agent to be free.
    acd.enqueue(S, CallId(1), "general", 0, 0);
    acd.enqueue(2 * S, CallId(2), "general", 0, 0);
    drain(&mut acd);
    serve(&mut acd, 1, "1001", 4 * S, 30 * S);
    // Wrap-up over, the agent is offered caller 2.
    acd.handle_timeout(200 * S);
    let offered_2 = drain(&mut acd).iter().any(|c| matches!(c, Command::Offer { call: CallId(2), .. }));
    assert!(offered_2, "caller 2 is offered once the agent is free");
    acd.caller_left(201 * S, CallId(2), false);
    let rec = call_records(&mut acd);
    let queued: Vec<(u64, bool)> = rec.iter().map(|r| (r.call.0, r.queued_ms > 0)).collect();
    assert!(queued.contains(&(1, false)) && queued.contains(&(2, true)), "{rec:?}");
    let kpi = ivr_acd::Kpi::from_records(&rec, 20 * S);
    assert_eq!((kpi.queued, kpi.queue_rate, kpi.answer_rate), (1, 50.0, 50.0));
}
