//! Random sequences of everything a host can tell the ACD, on a simulated
//! clock: the core never panics, and after every step the agents' states and
//! the calls agree (a ringing agent has that call's offer, a talking agent is
//! that call's agent, every offer rings its agent) and every hand-off ends with
//! at most one outcome.

use std::collections::HashMap;

use proptest::prelude::{any, prop_assert, prop_assert_eq, prop_oneof, proptest, Just, ProptestConfig, Strategy as Gen};

use super::*;

#[derive(Debug, Clone)]
enum Op {
    Login(usize),
    Ready(usize),
    Pause(usize),
    Logout(usize),
    Enqueue(CallId, usize, i64, u64),
    Dial(CallId, usize),
    Answer(CallId, usize),
    OfferFailed(CallId, usize, bool),
    CallerLeft(CallId, bool),
    TalkEnded(CallId, bool),
    Priority(CallId, i64),
    Advance(u64),
    Reconfigure(usize),
}

fn op() -> impl Gen<Value = Op> {
    let call = (1u64..12).prop_map(CallId);
    let agent = 0usize..5;
    prop_oneof![
        agent.clone().prop_map(Op::Login),
        agent.clone().prop_map(Op::Ready),
        agent.clone().prop_map(Op::Pause),
        agent.clone().prop_map(Op::Logout),
        (call.clone(), 0usize..3, 0i64..3, prop_oneof![Just(0u64), 1_000u64..120_000]).prop_map(|(c, q, p, w)| Op::Enqueue(c, q, p * 10, w)),
        (call.clone(), agent.clone()).prop_map(|(c, a)| Op::Dial(c, a)),
        (call.clone(), agent.clone()).prop_map(|(c, a)| Op::Answer(c, a)),
        (call.clone(), agent.clone(), any::<bool>()).prop_map(|(c, a, d)| Op::OfferFailed(c, a, d)),
        (call.clone(), any::<bool>()).prop_map(|(c, k)| Op::CallerLeft(c, k)),
        (call.clone(), any::<bool>()).prop_map(|(c, b)| Op::TalkEnded(c, b)),
        (call, 0i64..30).prop_map(|(c, p)| Op::Priority(c, p)),
        (0u64..40_000).prop_map(Op::Advance),
        (0usize..5).prop_map(Op::Reconfigure),
    ]
}

fn config(drop_agent: Option<usize>) -> AcdConfig {
    let strategies = [Strategy::LongestIdle, Strategy::RingAll, Strategy::Skills];
    let queues = ["a", "b", "c"]
        .iter()
        .zip(strategies)
        .map(|(n, s)| {
            let mut q = QueueConfig::new(n);
            q.skill = Some("s".into());
            q.strategy = s;
            q.ring_ms = 5_000;
            q.wrap_up_ms = 2_000;
            q.max_len = Some(4);
            q.announce_every_ms = 10_000;
            q.widen = vec![Widen { after_ms: 0, min_level: 5 }, Widen { after_ms: 8_000, min_level: 1 }];
            q.join_empty = n == &"b";
            q
        })
        .collect();
    let agents = (0..5)
        .filter(|i| Some(*i) != drop_agent)
        .map(|i| {
            let mut a = AgentConfig::new(&format!("{}", 1000 + i), &[("s", 1 + 2 * i as u8)]);
            a.address = (i != 4).then(|| format!("sip:{}@127.0.0.1", 1000 + i));
            a
        })
        .collect();
    AcdConfig { agents, queues, ..AcdConfig::default() }
}

fn check(acd: &Acd) -> Result<(), String> {
    for (i, a) in acd.agents.iter().enumerate() {
        match a.state {
            AgentState::Ringing { call } => {
                let e = acd.calls.get(&call).ok_or(format!("{} rings for a call that is gone", a.cfg.id))?;
                if !e.offers.iter().any(|o| o.0 == i) {
                    return Err(format!("{} rings for {call} without an offer", a.cfg.id));
                }
            }
            AgentState::Talking { call } => {
                let e = acd.calls.get(&call).ok_or(format!("{} talks on a call that is gone", a.cfg.id))?;
                if e.talking.map(|t| t.0) != Some(i) {
                    return Err(format!("{} talks on {call}, which is not theirs", a.cfg.id));
                }
            }
            _ => {}
        }
    }
    for (call, e) in &acd.calls {
        for (a, _) in &e.offers {
            if acd.agents[*a].state != (AgentState::Ringing { call: *call }) {
                return Err(format!("call {call} offered to {} who is {:?}", acd.agents[*a].cfg.id, acd.agents[*a].state));
            }
        }
        if e.talking.is_some() && !e.offers.is_empty() {
            return Err(format!("call {call} talks and rings"));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn any_sequence_keeps_agents_and_calls_consistent(ops in proptest::collection::vec(op(), 1..80)) {
        let mut acd = Acd::new(config(None), 0);
        let mut now = 0;
        // Hand-offs in progress, by call: an outcome ends one, at most once.
        let mut open: HashMap<CallId, bool> = HashMap::new();
        let id = |a: usize| format!("{}", 1000 + a);
        for op in ops {
            now += 10;
            match op {
                Op::Login(a) => { let _ = acd.login(now, &id(a), None); }
                Op::Ready(a) => { let _ = acd.ready(now, &id(a)); }
                Op::Pause(a) => { let _ = acd.pause(now, &id(a), "break"); }
                Op::Logout(a) => { let _ = acd.logout(now, &id(a)); }
                Op::Enqueue(c, q, p, w) => if !open.contains_key(&c) && !acd.has_call(c) {
                    open.insert(c, false);
                    acd.enqueue(now, c, ["a", "b", "c"][q], p, w);
                },
                Op::Dial(c, a) => if !open.contains_key(&c) && !acd.has_call(c) {
                    open.insert(c, false);
                    acd.dial(now, c, &id(a), 5_000);
                },
                Op::Answer(c, a) => { acd.answered(now, c, &id(a)); }
                Op::OfferFailed(c, a, d) => acd.offer_failed(now, c, &id(a), if d { OfferFailure::Declined } else { OfferFailure::Unreachable }),
                Op::CallerLeft(c, k) => {
                    let was = acd.has_call(c);
                    acd.caller_left(now, c, k);
                    // Hung up: no outcome will come; the hand-off is over.
                    if was && !k {
                        open.remove(&c);
                    }
                }
                Op::TalkEnded(c, by_agent) => {
                    let talking = acd.calls.get(&c).is_some_and(|e| e.talking.is_some());
                    acd.talk_ended(now, c, by_agent);
                    if talking && !by_agent {
                        open.remove(&c);
                    }
                }
                Op::Priority(c, p) => { let _ = acd.set_priority(now, c, p); }
                Op::Advance(ms) => {
                    now += ms;
                    let mut steps = 0;
                    while let Some(t) = acd.poll_timeout().filter(|t| *t <= now) {
                        acd.handle_timeout(t.max(acd.now));
                        steps += 1;
                        prop_assert!(steps < 10_000, "handle_timeout does not clear a timer (the host would spin)");
                    }
                    acd.handle_timeout(now);
                    prop_assert!(acd.poll_timeout().is_none_or(|t| t > now), "a timer left in the past after handle_timeout");
                }
                Op::Reconfigure(drop) => acd.reconfigure(now, config(Some(drop))),
            }
            while let Some(cmd) = acd.poll_command() {
                if let Command::Finish { call, .. } = cmd {
                    let seen = open.get_mut(&call);
                    prop_assert!(seen.as_ref().is_some_and(|s| !**s), "an outcome for call {} that has none pending", call);
                    open.remove(&call);
                }
            }
            while acd.poll_record().is_some() {}
            prop_assert_eq!(check(&acd), Ok(()));
            // The wallboard's positions are the ones announced.
            for q in acd.snapshot(now).queues {
                for c in q.callers {
                    prop_assert_eq!(Some(c.position), acd.position(c.call));
                }
            }
        }
    }
}
