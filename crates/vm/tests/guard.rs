//! The loop guard: a flow that goes round through failing services without the
//! caller doing anything ends with a fault, on a simulated clock.

use std::sync::Arc;

mod common;
use ivr_vm::{Action, CallInfo, Event, HangupReason, Limits, Program, Session};

const CATALOGUE: &str = "[sorry]\nzh = \"抱歉。\"\n[ask]\nzh = \"请输入。\"\n";

/// A caller who put the phone down without hanging up: the menu times out,
/// the flow looks something up, the service fails, back to the menu, for ever.
/// The checker cannot call this wrong (the loop waits for the caller in the
/// menu); only the runtime guard can end it.
const RETRY_FOREVER: &str = r#"
service lookup(code: text) {
    ok
}
entry 1 -> ask
menu ask {
    prompt ask
    timeout 5s
    key 1 -> done
    on exhausted -> try_again
}
step try_again {
    request lookup("1") timeout 2s {
        ok -> ask
        failed {
            play sorry
            goto ask
        }
    }
}
step done {
    hangup
}
"#;

fn program(src: &str) -> Arc<Program> {
    common::compile_flow(src, CATALOGUE)
}

fn info() -> CallInfo {
    CallInfo { dialed: "1".into(), caller: "100".into(), language: None, wall_clock_ms: 0 }
}

/// A silent caller: prompts finish at once, timeouts fire when due, every
/// request fails 100 ms later (a key every `keys_every` requests, if given).
/// Returns how many requests the flow made and how it ended (`None`: still
/// going after 5,000).
fn run(s: &mut Session, keys_every: Option<u32>) -> (u32, Option<Action>) {
    let (mut t, mut requests) = (0, 0);
    loop {
        while let Some(a) = s.poll_action() {
            match a {
                Action::Request { op, .. } => {
                    requests += 1;
                    if requests > 5_000 {
                        return (requests, None);
                    }
                    t += 100;
                    s.handle_event(t, Event::Completed { op, outcome: "failed".into(), fields: vec![] });
                }
                Action::Play { id, .. } => s.handle_event(t, Event::PlayDone(id)),
                Action::Listen { .. } if keys_every.is_some_and(|n| requests > 0 && requests % n == 0) => {
                    // An invalid key in the menu: the caller is there.
                    s.handle_event(t, Event::Digit('5'));
                }
                Action::Hangup { reason: HangupReason::Fault } => {}
                a @ (Action::Fault { .. } | Action::Hangup { .. }) => return (requests, Some(a)),
                _ => {}
            }
        }
        let Some(next) = s.poll_timeout() else { return (requests, None) };
        t = t.max(next);
        s.handle_timeout(t);
    }
}

#[test]
fn a_loop_through_a_failing_service_ends_with_a_fault() {
    let limits = Limits { max_idle_ms: u64::MAX, ..Limits::default() };
    let mut s = Session::start_with(program(RETRY_FOREVER), info(), 0, limits).unwrap();
    let (requests, end) = run(&mut s, None);
    let Some(Action::Fault { message, .. }) = end else { panic!("expected a fault, got {end:?} after {requests} requests") };
    assert!(message.contains("without the caller pressing a key"), "{message}");
    // Two steps a round (the menu, the lookup): the 101st entry is the fault.
    assert_eq!(requests, Limits::default().max_nodes_without_input / 2, "the guard stops the loop at its limit, not before");
    assert!(s.is_finished());
}

#[test]
fn a_caller_who_keeps_pressing_keys_is_not_stopped_by_the_step_count() {
    // Keys reset the count: the same loop with a key every 20 rounds runs on
    // until the test stops it.
    let limits = Limits { max_nodes_without_input: 60, max_idle_ms: u64::MAX };
    let mut s = Session::start_with(program(RETRY_FOREVER), info(), 0, limits).unwrap();
    let (requests, end) = run(&mut s, Some(20));
    assert!(end.is_none(), "{end:?}");
    assert!(requests > 5_000);
}

#[test]
fn a_long_silence_ends_the_loop_even_below_the_step_count() {
    let limits = Limits { max_nodes_without_input: 1_000_000, max_idle_ms: 60_000 };
    let mut s = Session::start_with(program(RETRY_FOREVER), info(), 0, limits).unwrap();
    let (requests, end) = run(&mut s, None);
    let Some(Action::Fault { message, .. }) = end else { panic!("expected a fault, got {end:?}") };
    // A round is the menu's three 5 s timeouts and a 100 ms lookup: the
    // lookup step entered at 60.3 s of silence, before its fourth request,
    // is where the call ends.
    assert!(message.contains("60 s without"), "{message}");
    assert_eq!(requests, 3);
}
