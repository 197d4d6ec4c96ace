//! Embedding the engine: compile a flow held in memory, start a call, feed it
//! events and carry out its actions — what `ivr sim` and `ivr serve` do.
//!
//! Run: `cargo run --example embed`

use std::sync::Arc;

use ivr_compiler::{compile, MemoryWorld};
use ivr_vm::{Action, CallInfo, Event, Session};

const FLOW: &str = r#"
languages zh
entry 95588 -> menu_top

menu menu_top {
    prompt hello
    key 1 -> bye
    on exhausted -> bye
}

step bye {
    play bye
    hangup
}
"#;

const PROMPTS: &str = r#"
[hello]
zh = "您好，请按1。"
[bye]
zh = "再见。"
"#;

fn main() {
    // The compiler reads files only through a World: here, memory.
    let world = MemoryWorld::new().with("main.ivr", FLOW).with("prompts.toml", PROMPTS);
    let compiled = compile(&world, "main.ivr");
    for d in &compiled.diagnostics {
        eprintln!("{} {}", d.code, d.message);
    }
    let program = Arc::new(compiled.program.expect("the flow compiles"));

    // One Session per call. Time is the host's: milliseconds on any monotonic clock.
    let info = CallInfo { dialed: "95588".into(), caller: "13800138000".into(), language: None, wall_clock_ms: 0 };
    let mut call = Session::start(program.clone(), info, 0).expect("95588 has an entry");
    let mut now = 0;
    let mut keys = vec!['1'];
    loop {
        let mut finished_prompts = Vec::new();
        while let Some(action) = call.poll_action() {
            match action {
                Action::Play { id, prompt, lang, .. } => {
                    println!("t={now}ms play: {}", program.prompts[prompt as usize].text[lang as usize]);
                    finished_prompts.push(id); // a real host reports this when the audio ends
                }
                Action::Hangup { reason } => println!("t={now}ms hang up ({})", reason.name()),
                other => println!("t={now}ms {other:?}"),
            }
        }
        if call.is_finished() {
            break;
        }
        now += 1_000;
        for id in finished_prompts {
            call.handle_event(now, Event::PlayDone(id));
        }
        if call.is_collecting() {
            match keys.pop() {
                Some(k) => call.handle_event(now, Event::Digit(k)),
                None => call.handle_timeout(call.poll_timeout().unwrap_or(now)),
            }
        }
    }
}
