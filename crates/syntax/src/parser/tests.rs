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

#[test]
fn a_key_range_is_one_binding_per_key_each_storing_its_key() {
    let (file, diags) = check("menu m {\n    key 1-3 into n -> a\n    key A-B into t { goto a }\n    key *-# -> a\n    anywhere_not_here -> a\n}\nanywhere {\n    key 7-8 -> a\n}\n");
    assert_eq!(diags.iter().filter(|d| d.code == Code::InvalidKeyRange.as_str()).count(), 1, "{diags:?}");
    let Item::Menu(MenuDecl { options, .. }) = &file.items[0] else { panic!("{:?}", file.items[0]) };
    let keys: Vec<(char, String)> = options
        .iter()
        .filter_map(|o| match &o.kind {
            OptKind::Key(k) => Some((k.key, match &k.body.stmts[0].kind {
                StmtKind::Set(v, e) => format!("{} = {:?}", v.name, e.kind),
                other => format!("{other:?}").chars().take(4).collect(),
            })),
            _ => None,
        })
        .collect();
    assert_eq!(keys[..5].iter().map(|k| k.0).collect::<String>(), "123AB");
    assert_eq!(keys[0].1, "n = Num(\"1\")");
    assert_eq!(keys[4].1, "t = Str(\"B\")");
    let Item::Anywhere { bindings, .. } = &file.items[1] else { panic!() };
    assert_eq!(bindings.iter().map(|b| b.key).collect::<String>(), "78");
}
