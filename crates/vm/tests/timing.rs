//! The input timing rules of `docs/language.md` ("Input timing"), one test per
//! rule, on a simulated clock. Times are milliseconds since the call started.

use std::sync::Arc;

mod common;
use ivr_vm::{Action, CallInfo, Event, Millis, PlayId, Program, Session, Value};

const CATALOGUE: &str = r#"
[ask]
zh = "请输入。"
[got]
zh = "收到。"
[on_timeout]
zh = "超时。"
[on_invalid]
zh = "无效。"
[busy]
zh = "请稍候。"
[intro]
zh = "欢迎。"
"#;

fn program(src: &str) -> Arc<Program> {
    common::compile_flow(src, CATALOGUE)
}

/// A call driven by hand: every action is logged as a short string.
struct Call {
    s: Session,
    log: Vec<String>,
    last_play: Option<PlayId>,
}

impl Call {
    fn new(src: &str) -> Call {
        let info = CallInfo { dialed: "1".into(), caller: "100".into(), language: None, wall_clock_ms: 0 };
        let s = Session::start(program(src), info, 0).unwrap();
        let mut c = Call { s, log: Vec::new(), last_play: None };
        c.drain();
        c
    }

    fn drain(&mut self) {
        while let Some(a) = self.s.poll_action() {
            let line = match a {
                Action::Play { id, prompt, .. } => {
                    self.last_play = Some(id);
                    format!("play {}", self.s.program().prompts[prompt as usize].id)
                }
                Action::StopPlayback => "stop".into(),
                Action::Listen { var, .. } => format!("listen {var}"),
                Action::Request { service, .. } => format!("request {service}"),
                Action::Cancel { .. } => "cancel".into(),
                Action::Hangup { reason } => format!("hangup {}", reason.name()),
                Action::EnterNode { .. } => continue,
                other => format!("{other:?}"),
            };
            self.log.push(line);
        }
    }

    /// The prompts queued so far finish playing at `t`.
    fn played(&mut self, t: Millis) {
        if let Some(id) = self.last_play.take() {
            self.s.handle_event(t, Event::PlayDone(id));
        }
        self.drain();
    }

    fn keys(&mut self, t: Millis, keys: &str) {
        for k in keys.chars() {
            self.s.handle_event(t, Event::Digit(k));
        }
        self.drain();
    }

    fn tick(&mut self, t: Millis) {
        self.s.handle_timeout(t);
        self.drain();
    }

    fn take_log(&mut self) -> Vec<String> {
        std::mem::take(&mut self.log)
    }

    fn value(&self, name: &str) -> String {
        self.s.value(name).map(Value::to_string).unwrap_or_default()
    }
}

/// A flow collecting `x` with the given options, then playing `got`.
fn collect_flow(options: &str) -> String {
    format!(
        "entry 1 -> s\nstep s {{\n collect x {{\n prompt ask\n {options}\n on timeout {{ play on_timeout }}\n on invalid {{ play on_invalid }}\n on exhausted {{ hangup }}\n }}\n play got\n hangup\n}}\n"
    )
}

#[test]
fn t1_first_key_timer_starts_when_the_prompt_ends() {
    let mut c = Call::new(&collect_flow("timeout 5s retries 0"));
    assert_eq!(c.take_log(), ["play ask", "listen x"]);
    assert_eq!(c.s.poll_timeout(), None, "no timer while the prompt plays");
    c.played(4_000);
    assert_eq!(c.s.poll_timeout(), Some(9_000));
    c.tick(8_999);
    assert!(c.take_log().is_empty());
    c.tick(9_000);
    assert_eq!(c.take_log(), ["play on_timeout", "hangup normal"]);
}

#[test]
fn t2_inter_key_timeout_completes_input_of_valid_length() {
    let mut c = Call::new(&collect_flow("length 1..8 inter-key 3s"));
    c.played(1_000);
    c.keys(2_000, "1");
    c.keys(2_500, "2");
    assert_eq!(c.s.poll_timeout(), Some(5_500), "inter-key timer restarts at each key");
    c.tick(5_500);
    assert_eq!(c.value("x"), "12");
    assert!(c.take_log().ends_with(&["play got".to_string(), "hangup normal".to_string()]));
}

#[test]
fn t3_inter_key_timeout_with_too_few_digits_is_invalid() {
    let mut c = Call::new(&collect_flow("length 4 inter-key 3s retries 0"));
    c.played(0);
    c.take_log();
    c.keys(1_000, "12");
    c.tick(4_000);
    assert_eq!(c.take_log(), ["play on_invalid", "hangup normal"]);
}

#[test]
fn t4_terminator_ends_input_and_is_not_part_of_it() {
    let mut c = Call::new(&collect_flow("length 1..8"));
    c.played(0);
    c.keys(1_000, "123#");
    assert_eq!(c.value("x"), "123");
}

#[test]
fn t5_max_length_ends_input_at_once() {
    let mut c = Call::new(&collect_flow("length 6"));
    c.played(0);
    c.take_log();
    c.keys(1_000, "60000");
    assert!(c.take_log().is_empty());
    c.keys(1_100, "0");
    assert_eq!(c.value("x"), "600000");
    assert_eq!(c.take_log()[0], "play got");
}

#[test]
fn t6_terminator_before_the_minimum_is_invalid() {
    let mut c = Call::new(&collect_flow("length 6 retries 1"));
    c.played(0);
    c.take_log();
    c.keys(1_000, "12#");
    assert_eq!(c.take_log(), ["play on_invalid", "play ask", "listen x"], "retry replays the prompt");
}

#[test]
fn t7_silence_is_a_timeout_not_an_invalid_entry() {
    let mut c = Call::new(&collect_flow("timeout 5s retries 1"));
    c.played(0);
    c.take_log();
    c.tick(5_000);
    assert_eq!(c.take_log(), ["play on_timeout", "play ask", "listen x"]);
}

const TYPEAHEAD_FLOW: &str = "
service slow() { ok }
entry 1 -> s
step s {
    request slow() timeout 10s {
        else -> ask_code
    }
}
step ask_code {
    collect x {
        prompt ask
        length 6
        on exhausted { hangup }
    }
    play got
    hangup
}
";

#[test]
fn t8_keys_typed_while_the_flow_is_busy_are_kept_for_the_next_collect() {
    let mut c = Call::new(TYPEAHEAD_FLOW);
    assert_eq!(c.take_log(), ["request slow"]);
    c.keys(500, "600000");
    c.s.handle_event(1_000, Event::Completed { op: ivr_vm::OpId(1), outcome: "ok".into(), fields: vec![] });
    c.drain();
    // The prompt is skipped (the caller already answered it) and input completes.
    assert_eq!(c.take_log(), ["listen x", "play got", "hangup normal"]);
    assert_eq!(c.value("x"), "600000");
}

#[test]
fn t9_flush_drops_keys_typed_ahead() {
    let src = TYPEAHEAD_FLOW.replace("step ask_code {\n", "step ask_code {\n    flush\n");
    let mut c = Call::new(&src);
    c.take_log();
    c.keys(500, "600000");
    c.s.handle_event(1_000, Event::Completed { op: ivr_vm::OpId(1), outcome: "ok".into(), fields: vec![] });
    c.drain();
    assert_eq!(c.take_log(), ["play ask", "listen x"]);
}

#[test]
fn t10_barge_in_stops_the_prompt_and_the_key_counts() {
    let mut c = Call::new(&collect_flow("length 1..4"));
    c.take_log();
    c.keys(700, "5");
    assert_eq!(c.take_log(), ["stop"]);
    c.keys(900, "#");
    assert_eq!(c.value("x"), "5");
}

#[test]
fn t11_without_barge_in_keys_during_the_prompt_are_dropped() {
    let src = TYPEAHEAD_FLOW.replace("length 6\n", "length 6\n        barge-in off\n");
    let mut c = Call::new(&src);
    c.take_log();
    c.keys(500, "111111"); // typed ahead: dropped because the prompt must be heard
    c.s.handle_event(1_000, Event::Completed { op: ivr_vm::OpId(1), outcome: "ok".into(), fields: vec![] });
    c.drain();
    assert_eq!(c.take_log(), ["play ask", "listen x"]);
    c.keys(1_500, "222222"); // during the prompt: dropped too
    assert!(c.take_log().is_empty());
    c.played(3_000);
    c.keys(3_500, "600000");
    assert_eq!(c.value("x"), "600000");
}

#[test]
fn t12_keys_after_a_completed_collect_wait_for_the_next_one() {
    let src = "
entry 1 -> m
menu m {
    prompt intro
    key 1 -> code
    on exhausted { hangup }
}
step code {
    collect x {
        prompt ask
        length 6
        on exhausted { hangup }
    }
    play got
    hangup
}
";
    let mut c = Call::new(src);
    c.take_log();
    // "1" chooses the menu item during its prompt; "600000" follows straight on.
    c.keys(500, "1600000");
    assert_eq!(c.value("x"), "600000");
    assert_eq!(c.take_log(), ["stop", "play ask", "listen x", "stop", "play got", "hangup normal"]);
}

#[test]
fn t13_star_types_the_decimal_point() {
    let mut c = Call::new(&collect_flow("decimal length 1..8 retries 1"));
    c.played(0);
    c.keys(1_000, "10*52#");
    assert_eq!(c.value("x"), "10.52");
    let mut c = Call::new(&collect_flow("decimal length 1..8 retries 1"));
    c.played(0);
    c.take_log();
    c.keys(1_000, "1*0*5#");
    assert_eq!(c.take_log()[0], "play on_invalid");
}

#[test]
fn t14_type_ahead_keeps_the_last_32_keys() {
    let mut c = Call::new(&TYPEAHEAD_FLOW.replace("length 6", "length 1..40"));
    c.take_log();
    c.keys(100, &"1".repeat(10));
    c.keys(200, &"2".repeat(32));
    c.s.handle_event(1_000, Event::Completed { op: ivr_vm::OpId(1), outcome: "ok".into(), fields: vec![] });
    c.drain();
    c.keys(1_100, "#");
    assert_eq!(c.value("x"), "2".repeat(32));
}

#[test]
fn t15_a_late_service_gets_the_hold_prompt_then_times_out() {
    let src = "
service slow() { ok }
entry 1 -> s
step s {
    request slow() timeout 4s hold busy {
        ok { hangup }
        timeout { play on_timeout  hangup }
        failed { hangup }
    }
}
";
    let mut c = Call::new(src);
    assert_eq!(c.take_log(), ["request slow"]);
    assert_eq!(c.s.poll_timeout(), Some(1_500));
    c.tick(1_500);
    assert_eq!(c.take_log(), ["play busy"]);
    c.played(2_500); // the hold prompt loops while waiting
    assert_eq!(c.take_log(), ["play busy"]);
    c.tick(4_000);
    assert_eq!(c.take_log(), ["cancel", "stop", "play on_timeout", "hangup normal"]);
}
