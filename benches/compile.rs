//! Compile throughput on a large generated flow (about 100,000 lines).
//! Run: `cargo bench --bench compile`. Results go in docs/PERFORMANCE.md.

use std::time::Instant;

use ivr_compiler::{compile, MemoryWorld};

/// A project of `n` menus and `n` steps, about 11 lines per pair.
fn generate(n: usize) -> String {
    let mut s = String::from("languages zh, en\nentry 962588 -> m0\nvar x = 0\n");
    for i in 0..n {
        let next = (i + 1) % n;
        s.push_str(&format!(
            "menu m{i} {{\n    prompt p\n    timeout 5s\n    key 1 -> m{next}\n    key 2 -> s{i}\n    on exhausted -> bye\n}}\n\
             step s{i} {{\n    set x = x + {i}\n    if x > 100 {{\n        play p\n    }}\n    goto m{i}\n}}\n"
        ));
    }
    s.push_str("step bye {\n    hangup\n}\n");
    s
}

/// The same with services: each step asks one of 20 results, and each menu
/// says one of them — the worst the W0408 pass meets (every result's
/// answers flow round the whole cycle of menus).
fn generate_with_services(n: usize) -> String {
    let mut s = String::from("languages zh, en\nentry 962588 -> m0\nservice q(code: text) {\n    ok(v: number)\n    none\n}\n");
    for i in 0..n {
        let next = (i + 1) % n;
        let r = i % 20;
        s.push_str(&format!(
            "menu m{i} {{\n    prompt p\n    say number r{r}.v\n    timeout 5s\n    key 1 -> m{next}\n    key 2 -> s{i}\n    on exhausted -> bye\n}}\n\
             step s{i} {{\n    request q(\"{i}\") as r{r} {{\n        ok -> m{i}\n        none -> m{next}\n        failed -> bye\n    }}\n}}\n"
        ));
    }
    s.push_str("step bye {\n    hangup\n}\n");
    s
}

fn main() {
    for (what, src) in [("", generate(7_700)), (" (with services)", generate_with_services(7_700))] {
        measure(what, &src);
    }
}

fn measure(what: &str, src: &str) {
    let lines = src.lines().count();
    let world = MemoryWorld::new().with("main.ivr", src).with("prompts.toml", "[p]\nzh = \"提示\"\nen = \"prompt\"\n");
    let mut best = f64::MAX;
    let mut instructions = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let c = compile(&world, "main.ivr");
        let secs = t.elapsed().as_secs_f64();
        assert!(!c.has_errors(), "{:?}", &c.diagnostics[..c.diagnostics.len().min(3)]);
        instructions = c.program.map_or(0, |p| p.code.len());
        best = best.min(secs);
    }
    println!(
        "compile{what}: {lines} lines, {} bytes -> {instructions} instructions: best of 5 {:.3} s ({:.0} lines/s)",
        src.len(),
        best,
        lines as f64 / best
    );
}
