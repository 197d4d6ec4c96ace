use super::*;

fn check(src: &str) -> (File, Vec<Diagnostic>) {
    parse(FileId(0), src)
}

#[test]
fn parses_a_small_flow() {
    let (file, diags) = check(
        r#"
languages zh, en
entry 962588 -> welcome
step welcome {
    play welcome  // 欢迎
    set n = 1 + 2 * 3
    goto main
}
menu main {
    prompt main_menu
    timeout 5s
    key 1 -> welcome
    key # -> repeat
    on exhausted { hangup }
}
"#,
    );
    assert!(diags.is_empty(), "{diags:?}");
    assert_eq!(file.items.len(), 4);
}

#[test]
fn reports_every_broken_statement_and_keeps_going() {
    let (file, diags) = check("step a {\n  plya x\n  goto b\n  say numbr 5\n}\nstep b { hangup }\n");
    assert_eq!(diags.len(), 2, "{diags:?}");
    assert_eq!(file.items.len(), 2);
}

#[test]
fn broken_item_keeps_its_name() {
    let (file, diags) = check("step a {\n  goto b\n\nstep b { hangup }\n");
    assert!(!diags.is_empty());
    assert!(file.items.iter().any(|i| matches!(i, Item::Step { name, .. } if name.name == "b")
        || matches!(i, Item::Broken { name: Some(n), .. } if n.name == "a")));
}

#[test]
fn precedence() {
    let (file, diags) = check("var x = not 1 + 2 * 3 == 7 and true");
    assert!(diags.is_empty(), "{diags:?}");
    let Item::Var { init: Some(e), .. } = &file.items[0] else { panic!() };
    let ExprKind::Binary(BinOp::And, l, _) = &e.kind else { panic!("{e:?}") };
    assert!(matches!(l.kind, ExprKind::Unary(UnOp::Not, _)));
}

#[test]
fn durations() {
    assert_eq!(duration_ms("5s"), Some(5000));
    assert_eq!(duration_ms("1.5s"), Some(1500));
    assert_eq!(duration_ms("250ms"), Some(250));
    assert_eq!(duration_ms("2min"), Some(120_000));
}

proptest::proptest! {
    #[test]
    fn never_panics(src in "\\PC{0,200}") {
        let _ = parse(FileId(0), &src);
    }

    #[test]
    fn never_panics_on_flowlike_input(src in "(step|menu|key|collect|play|goto|\\{|\\}|->|[a-z]{1,5}|[0-9#*]|\"|\\.|\n| ){0,60}") {
        let _ = parse(FileId(0), &src);
    }
}
