use super::*;

pub(crate) const CATALOGUE: &str = r#"
[welcome]
zh = "欢迎致电。"
en = "Welcome."
[main_menu]
zh = "查询请按1。"
en = "For quotes press 1."
[bye]
zh = "再见。"
en = "Goodbye."
"#;

fn compile_src(src: &str) -> Compiled {
    let world = MemoryWorld::new().with("main.ivr", src).with("prompts.toml", CATALOGUE);
    compile(&world, "main.ivr")
}

fn codes(c: &Compiled) -> Vec<Code> {
    c.diagnostics.iter().map(Diagnostic::rule).collect()
}

#[test]
fn a_clean_flow_compiles() {
    let c = compile_src(
        "languages zh, en\nentry 1 -> start\nstep start {\n play welcome\n goto main\n}\nmenu main {\n prompt main_menu\n key 1 -> start\n on exhausted { play bye hangup }\n}\n",
    );
    assert_eq!(codes(&c), vec![], "{:#?}", c.diagnostics);
    assert!(c.program.is_some());
}

#[test]
fn dead_end_and_loop() {
    let c = compile_src("entry 1 -> a\nstep a { play welcome }\nstep b { goto c }\nstep c { goto b }\n");
    let cs = codes(&c);
    assert!(cs.contains(&Code::DeadEnd), "{cs:?}");
    assert!(cs.contains(&Code::LoopWithoutInput), "{cs:?}");
    assert!(cs.contains(&Code::Unreachable), "{cs:?}");
    assert!(c.program.is_none());
}
