//! VM speed: instructions per second while a caller presses keys, each key
//! running a block of arithmetic, plus the cost of a whole simulated call.
//! Run: `cargo bench --bench vm`. Results go in docs/PERFORMANCE.md.

use std::sync::Arc;
use std::time::Instant;

use ivr_compiler::{compile, MemoryWorld};
use ivr_vm::{Action, CallInfo, Event, Session};

fn program(src: &str) -> Arc<ivr_bytecode::Program> {
    let world = MemoryWorld::new().with("main.ivr", src).with("prompts.toml", "[p]\nzh = \"提示\"\n");
    let c = compile(&world, "main.ivr");
    assert!(!c.has_errors(), "{:?}", c.diagnostics);
    Arc::new(c.program.unwrap())
}

fn main() {
    // Each key runs 400 statements of exact-decimal arithmetic and comparisons.
    let mut body = String::new();
    for i in 0..200 {
        body.push_str(&format!("    set x = x * 1.5 + {i} - x / 2\n    if x > 1000000 {{\n        set x = 0\n    }}\n"));
    }
    let src = format!(
        "entry 1 -> m\nvar x = 0\nmenu m {{\n    prompt p\n    key 1 -> work\n    on exhausted {{ hangup }}\n}}\nstep work {{\n{body}    goto m\n}}\n"
    );
    let p = program(&src);
    let info = CallInfo { dialed: "1".into(), caller: "1".into(), language: None, wall_clock_ms: 0 };
    let mut s = Session::start(p.clone(), info.clone(), 0).unwrap();
    let keys = 20_000u64;
    let t = Instant::now();
    for k in 0..keys {
        s.handle_event(k, Event::Digit('1'));
        while s.poll_action().is_some() {}
    }
    let secs = t.elapsed().as_secs_f64();
    let n = s.instructions_executed();
    println!("vm: {n} instructions in {secs:.3} s = {:.1} M instructions/s (one core)", n as f64 / secs / 1e6);

    // Whole calls: start, walk a menu, hang up — the per-call cost of the VM.
    let menu = program(
        "entry 1 -> m\nmenu m {\n    prompt p\n    key 1 -> m2\n    on exhausted { hangup }\n}\nmenu m2 {\n    prompt p\n    key 2 -> bye\n    on exhausted { hangup }\n}\nstep bye {\n    play p\n    hangup\n}\n",
    );
    let calls = 200_000;
    let t = Instant::now();
    let mut played = 0;
    for c in 0..calls {
        let mut s = Session::start(menu.clone(), info.clone(), c).unwrap();
        for k in ['1', '2'] {
            s.handle_event(c, Event::Digit(k));
            while let Some(a) = s.poll_action() {
                played += matches!(a, Action::Play { .. }) as u32;
            }
        }
        assert!(s.is_finished());
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "vm: {calls} simulated calls (start, 2 menus, goodbye) in {secs:.3} s = {:.0} calls/s, {:.2} µs per call ({played} plays)",
        calls as f64 / secs,
        secs / calls as f64 * 1e6
    );
    println!("vm: Session size {} bytes (plus its slot and stack vectors)", std::mem::size_of::<Session>());
}
