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

/// What every compilation must be, whatever the flow: each diagnostic's span,
/// and each related span, lies inside its file on character boundaries, and
/// there is no program when there are errors.
pub(crate) fn well_formed(c: &Compiled) -> Result<(), String> {
    let files: Vec<_> = c.sources.files().collect();
    let inside = |s: Span| {
        let Some((_, f)) = files.iter().find(|(id, _)| *id == s.file) else { return false };
        s.start <= s.end && (s.end as usize) <= f.text.len() && f.text.is_char_boundary(s.start as usize) && f.text.is_char_boundary(s.end as usize)
    };
    for d in &c.diagnostics {
        if !inside(d.span) {
            return Err(format!("[{}] {} at {:?}", d.code, d.message, d.span));
        }
        if let Some((s, l)) = d.related.iter().find(|(s, _)| !inside(*s)) {
            return Err(format!("[{}] {}: related `{l}` at {s:?}", d.code, d.message));
        }
    }
    if c.program.is_some() && c.has_errors() {
        return Err("a program despite errors".into());
    }
    Ok(())
}

/// Compiles `src` and checks the result is [`well_formed`].
fn check_src(src: &str) -> Result<Compiled, String> {
    let c = compile_src(src);
    well_formed(&c)?;
    Ok(c)
}

fn codes(c: &Compiled) -> Vec<Code> {
    c.diagnostics.iter().map(Diagnostic::rule).collect()
}

fn errors(c: &Compiled) -> Vec<Code> {
    codes(c).into_iter().filter(|c| c.severity() == Severity::Error).collect()
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

/// Names given to two things, in every statement that binds a name: each is
/// reported (with the code given), none crashes the checker.
#[test]
fn name_clashes_are_reported_not_crashed() {
    let svc = "service svc() { ok(a: text) }\nservice other() { ok(b: number) }\n";
    let cases: &[(&str, Code)] = &[
        // A step, menu or sub-flow named like the variable a collect fills.
        ("step s { collect s { prompt welcome on exhausted { hangup } } hangup }", Code::DuplicateDefinition),
        ("menu m { prompt welcome key 1 -> s on exhausted { hangup } }\nstep s { collect m { prompt welcome on exhausted { hangup } } goto m }", Code::DuplicateDefinition),
        ("menu m { prompt welcome key 1 { collect m { prompt welcome on exhausted -> m } goto m } on exhausted { hangup } }\nstep s { goto m }", Code::DuplicateDefinition),
        ("sub f() { hangup }\nstep s { collect f { prompt welcome on exhausted { hangup } } run f() }", Code::DuplicateDefinition),
        // A request result named like a step, sub-flow, hours, another service or a variable.
        ("step s { request svc() as s { ok -> s failed -> s } }", Code::DuplicateDefinition),
        ("sub f() { hangup }\nstep s { request svc() as f { ok -> s failed -> s } }", Code::DuplicateDefinition),
        ("hours h { zone \"Asia/Shanghai\" mon 09:00-10:00 }\nstep s { request svc() as h { ok -> s failed -> s } }", Code::DuplicateDefinition),
        ("step s { request svc() as other { ok -> s failed -> s } }", Code::DuplicateDefinition),
        ("var q = 1\nstep s { request svc() as q { ok -> s failed -> s } }", Code::TypeMismatch),
        // One result name for two services; a result collected into.
        ("step s { request svc() as q { ok -> t failed -> t } }\nstep t { request other() as q { ok -> s failed -> s } }", Code::TypeMismatch),
        ("step s { request svc() as q { ok -> t failed -> t } }\nstep t { collect q { prompt welcome on exhausted { hangup } } hangup }", Code::TypeMismatch),
        ("step s { collect svc { prompt welcome on exhausted { hangup } } request svc() { ok -> s failed -> s } }", Code::DuplicateDefinition),
        // Parameters: twice in one list, or a request result named like one.
        ("sub f(x: text, x: number) { return }\nstep s { run f(\"1\", 2) hangup }", Code::DuplicateDefinition),
        ("sub f(q: text) { request svc() as q { ok { return } failed { return } } }\nstep s { run f(\"1\") hangup }", Code::DuplicateDefinition),
        ("sub f(x: text) { collect x { decimal prompt welcome on exhausted { return } } return }\nstep s { run f(\"1\") hangup }", Code::TypeMismatch),
        ("sub f(x: text) { collect x { secret prompt welcome on exhausted { return } } return }\nstep s { run f(\"1\") hangup }", Code::SecretExposed),
        // Declarations named alike.
        ("var v = 1\nhours v { zone \"Asia/Shanghai\" mon 09:00-10:00 }\nstep s { hangup }", Code::DuplicateDefinition),
        ("sub s() { hangup }\nstep s { hangup }", Code::DuplicateDefinition),
        ("service svc2(a: text, a: text) { ok(x: text, x: text) ok }\nstep s { hangup }", Code::DuplicateDefinition),
        ("service svc2() { ok(x: text) no(x: number) }\nstep s { hangup }", Code::TypeMismatch),
    ];
    for (body, code) in cases {
        let src = format!("entry 1 -> s\n{svc}{body}\n");
        let c = check_src(&src).unwrap_or_else(|e| panic!("{e}\n{src}"));
        assert!(codes(&c).contains(code), "{code} not reported for\n{src}\n{:#?}", c.diagnostics);
        assert!(c.program.is_none(), "{src}");
    }
}

/// `caller` and `dialed` are the call's: no statement may change them.
#[test]
fn read_only_variables_cannot_be_filled() {
    let svc = "service svc() { ok(a: text) }\nsub g() -> text { return \"1\" }\n";
    for stmt in [
        "set caller = \"1\"",
        "collect caller { prompt welcome on exhausted { hangup } }",
        "collect dialed { decimal prompt welcome on exhausted { hangup } }",
        "request svc() as caller { ok -> end failed -> end }",
        "run g() into dialed",
    ] {
        let src = format!("entry 1 -> s\n{svc}step s {{ {stmt}\n hangup }}\nstep end {{ hangup }}\n");
        let c = check_src(&src).unwrap_or_else(|e| panic!("{e}\n{src}"));
        assert_eq!(errors(&c), vec![Code::ReadOnlyVariable], "{src}\n{:#?}", c.diagnostics);
    }
}

#[test]
fn opening_hours_say_each_thing_once() {
    let hours = |lines: &str| {
        let src = format!("entry 1 -> s\nhours h {{\n zone \"Asia/Shanghai\"\n {lines}\n}}\nstep s {{ if open(h) {{ hangup }} hangup }}\n");
        errors(&check_src(&src).unwrap_or_else(|e| panic!("{e}\n{src}")))
    };
    assert_eq!(hours("mon-fri 09:30-11:30 13:00-15:00\n sat 09:00-12:00"), vec![], "a split day, and days apart");
    assert_eq!(hours("mon-fri 09:00-12:00\n mon 12:00-13:00"), vec![], "ranges that touch do not overlap");
    assert_eq!(hours("mon-fri, wed 09:00-10:00"), vec![Code::OverlappingHours], "a day twice in one line");
    assert_eq!(hours("mon 09:00-12:00 11:00-13:00"), vec![Code::OverlappingHours]);
    assert_eq!(hours("mon-fri 09:00-17:00\n sat-mon 10:00-11:00"), vec![Code::OverlappingHours], "one report for the pair of lines");
    assert_eq!(hours("mon 09:00-10:00\n zone \"Asia/Hong_Kong\""), vec![Code::DuplicateOption]);
    assert_eq!(hours("mon 09:00-10:00\n makeup-days open\n makeup-days closed"), vec![Code::DuplicateOption]);
}

/// Where `back` has no earlier menu: steps reached from an entry through steps
/// alone (and the sub-flows they run), and the first menu on such a path.
#[test]
fn back_needs_an_earlier_menu() {
    let flow = |rest: &str| {
        let src = format!("entry 1 -> s\nstep s {{ play welcome goto t }}\n{rest}\n");
        errors(&check_src(&src).unwrap_or_else(|e| panic!("{e}\n{src}")))
    };
    assert_eq!(flow("step t { back }"), vec![Code::BackWithoutMenu]);
    assert_eq!(flow("sub f() { back }\nstep t { run f() hangup }"), vec![Code::BackWithoutMenu]);
    assert_eq!(flow("menu t { prompt welcome key * -> back on exhausted { hangup } }"), vec![Code::BackWithoutMenu]);
    // After a menu, `back` has somewhere to go.
    assert_eq!(flow("menu t { prompt welcome key 1 -> u on exhausted { hangup } }\nstep u { back }"), vec![]);
    assert_eq!(flow("menu t { prompt welcome key 1 -> u on exhausted { hangup } }\nmenu u { prompt welcome key * -> back on exhausted { hangup } }"), vec![]);
    // `anywhere` keys work in every menu; `* -> back` there is a house style.
    assert_eq!(flow("anywhere { key * -> back }\nmenu t { prompt welcome key 1 -> t on exhausted { hangup } }"), vec![]);
}

#[test]
fn zero_time_limits_and_keyless_menus() {
    let step = |stmt: &str| {
        let src = format!("entry 1 -> s\nservice svc() {{ ok }}\nstep s {{ {stmt}\n hangup }}\nstep end {{ hangup }}\n");
        errors(&check_src(&src).unwrap_or_else(|e| panic!("{e}\n{src}")))
    };
    for stmt in [
        "collect c { prompt welcome timeout 0s on exhausted { hangup } }",
        "collect c { prompt welcome inter-key 0ms on exhausted { hangup } }",
        "request svc() timeout 0s { else -> end }",
        "dial agent \"1001\" timeout 0s { else -> end }",
        "enqueue general max-wait 0min { else -> end }",
        "record \"x\" max 0s { else -> end }",
    ] {
        assert_eq!(step(stmt), vec![Code::ZeroTimeout], "{stmt}");
    }
    assert_eq!(step("request svc() timeout 99999999999999s { else -> end }"), vec![Code::NumberTooLarge], "not also zero");
    let c = check_src("entry 1 -> m\nmenu m { prompt welcome on exhausted { hangup } }\n").unwrap();
    assert_eq!(errors(&c), vec![Code::MenuWithoutKeys]);
}

#[test]
fn an_unreadable_main_file_is_reported_against_itself() {
    let world = MemoryWorld::new().with("prompts.toml", CATALOGUE);
    let c = compile(&world, "main.ivr");
    assert_eq!(codes(&c), vec![Code::UnreadableFile], "{:#?}", c.diagnostics);
    assert_eq!(c.sources.get(c.diagnostics[0].span.file).name, "main.ivr");
}

/// Every kind of statement, including ones naming the wrong kind of thing, in
/// every place a statement can stand: reported or accepted, never a crash.
#[test]
fn every_statement_in_every_context() {
    let base = "languages zh, en\nentry 1 -> s\nvar v = 0\nservice svc() { ok(a: text) }\nstep s { goto m }\n\
        menu m { prompt welcome key 1 -> s on exhausted { hangup } }\nsub f() { hangup }\nsub g() -> number { return 1 }\n";
    let statements = [
        "play welcome", "play v", "say number 5", "say digits caller", "say date \"2026-01-01\"", "say money v", "say number q",
        "set v = 1", "set caller = \"1\"", "set s = 1", "set q = 1", "if v > 0 { hangup } else { goto s }", "goto s", "goto m", "goto f", "goto v",
        "back", "repeat", "run f()", "run g() into v", "run g() into s", "run s()", "run g() into caller", "return", "return 1",
        "collect v { prompt welcome on exhausted { hangup } }", "collect s { prompt welcome on exhausted { hangup } }",
        "collect caller { prompt welcome on exhausted { hangup } }", "collect q { prompt welcome on exhausted { hangup } }",
        "request svc() as q { ok -> s failed -> s }", "request svc() as s { ok -> s failed -> s }", "request svc() { ok -> s failed -> s }",
        "request svc() as v { ok -> s failed -> s }", "request f() { ok -> s }", "enqueue general { else -> s }", "enqueue m { else -> s }",
        "dial agent \"1001\" { else -> s }", "dial agent v { else -> s }", "record \"x\" { else -> s }", "transfer \"+8610086\"",
        "hangup", "language en", "language s", "flush", "say time q.a", "say digits q.b", "say digits v.a",
    ];
    let contexts = [
        "step t { X }",
        "step t { X\n hangup }",
        "menu mm { prompt welcome key 1 { X } on exhausted { hangup } }",
        "menu mm { prompt welcome key 1 -> s on timeout { X } on exhausted { X } }",
        "sub h() { X }",
        "sub h(v: number, s: text) -> number { X\n return 1 }",
        "anywhere { key 9 { X } }",
        "step t { collect c { prompt welcome on invalid { X } on exhausted { X } } hangup }",
        "step t { request svc() as q2 { ok { X } failed { X } } }",
        "step t { if true { X } else { X } }",
        "step t { enqueue general { served { X } else { X } } }",
        "sub h() { collect c { prompt welcome on exhausted { X } } X }",
    ];
    for ctx in contexts {
        for stmt in statements {
            let src = format!("{base}{}\n", ctx.replace('X', stmt));
            if let Err(e) = check_src(&src) {
                panic!("{e}\n{src}");
            }
        }
    }
}

mod plausible;

#[test]
fn a_loop_through_a_failing_service_or_hand_off_is_a_loop_without_input() {
    let codes = |src: &str| -> Vec<Code> {
        let world = MemoryWorld::new().with("main.ivr", src).with("prompts.toml", "[sorry]\nzh = \"抱歉。\"\n[ask]\nzh = \"请输入。\"\n");
        compile(&world, "main.ivr").diagnostics.iter().map(Diagnostic::rule).collect()
    };
    let service = "service lookup(code: text) {\n    ok\n}\nentry 1 -> retry\n";
    let retry = format!("{service}step retry {{\n    request lookup(\"1\") timeout 2s {{\n        ok -> done\n        failed {{\n            play sorry\n            goto retry\n        }}\n    }}\n}}\nstep done {{\n    hangup\n}}\n");
    assert!(codes(&retry).contains(&Code::LoopWithoutInput), "{:?}", codes(&retry));
    let queue = "entry 1 -> wait\nstep wait {\n    enqueue general {\n        served -> done\n        no_agents -> wait\n        else -> done\n    }\n}\nstep done {\n    hangup\n}\n";
    assert!(codes(queue).contains(&Code::LoopWithoutInput), "{:?}", codes(queue));
    // Asking the caller again breaks the loop; so does a served hand-off.
    let asks = format!("{service}step retry {{\n    collect code {{\n        prompt ask\n        length 6\n        on exhausted -> done\n    }}\n    request lookup(code) timeout 2s {{\n        ok -> done\n        failed -> retry\n    }}\n}}\nstep done {{\n    hangup\n}}\n");
    assert!(!codes(&asks).contains(&Code::LoopWithoutInput), "{:?}", codes(&asks));
    let served = "entry 1 -> wait\nstep wait {\n    enqueue general {\n        served -> wait\n        else -> done\n    }\n}\nstep done {\n    hangup\n}\n";
    assert!(!codes(served).contains(&Code::LoopWithoutInput), "{:?}", codes(served));
}

#[test]
fn a_sub_flow_that_asks_the_caller_is_a_wait_and_else_can_be_a_failure() {
    let codes = |src: &str| -> Vec<Code> {
        let world = MemoryWorld::new().with("main.ivr", src).with("prompts.toml", "[p]\nzh = \"请输入。\"\n");
        compile(&world, "main.ivr").diagnostics.iter().map(Diagnostic::rule).collect()
    };
    // The sub-flow collects every time round: the caller is asked (no E0302).
    let asks = "entry 1 -> a\nservice s(x: text) {\n    ok\n    not_found\n}\nvar got = false\nsub get() -> bool {\n    collect x {\n        prompt p\n        length 4\n        on exhausted {\n            return false\n        }\n    }\n    return true\n}\nstep a {\n    run get() into got\n    request s(x) {\n        ok {\n            hangup\n        }\n        not_found -> a\n        failed {\n            hangup\n        }\n    }\n}\n";
    assert!(!codes(asks).contains(&Code::LoopWithoutInput), "{:?}", codes(asks));
    // `else` after `served` covers no_agents, full, timeout…: a loop without the caller.
    let queue = "entry 1 -> a\nstep a {\n    play p\n    enqueue general max-wait 60s {\n        served {\n            hangup\n        }\n        else -> a\n    }\n}\n";
    assert!(codes(queue).contains(&Code::LoopWithoutInput), "{:?}", codes(queue));
}

#[test]
fn a_broken_catalogue_is_reported_once_not_as_every_prompt_missing() {
    let world = MemoryWorld::new().with("main.ivr", "entry 1 -> s\nstep s {\n    play welcome\n    play bye\n    hangup\n}\n").with("prompts.toml", "[欢迎]\nzh = \"x\"\n");
    let c = compile(&world, "main.ivr");
    assert_eq!(codes(&c), vec![Code::MalformedData], "{:#?}", c.diagnostics);
}

#[test]
fn a_secret_cannot_decide_a_branch() {
    let world = MemoryWorld::new()
        .with("main.ivr", "entry 1 -> s\nstep s {\n    collect pin {\n        prompt p\n        length 6\n        secret\n        on exhausted {\n            hangup\n        }\n    }\n    if pin == \"123456\" {\n        play p\n    }\n    hangup\n}\n")
        .with("prompts.toml", "[p]\nzh = \"请输入。\"\n");
    let c = compile(&world, "main.ivr");
    assert_eq!(codes(&c), vec![Code::SecretExposed], "{:#?}", c.diagnostics);
}

#[test]
fn dates_regular_expressions_and_read_backs_of_collected_input() {
    let flow = |opts: &str| format!("entry 1 -> s\nstep s {{\n    collect x {{\n        prompt welcome\n{opts}\n        on exhausted {{ hangup }}\n    }}\n    hangup\n}}\n");
    let ok = |opts: &str| {
        let c = check_src(&flow(opts)).unwrap();
        assert!(errors(&c).is_empty(), "{opts}: {:#?}", c.diagnostics);
        c
    };
    let bad = |opts: &str, says: &str| {
        let c = check_src(&flow(opts)).unwrap();
        let d = c.diagnostics.iter().find(|d| d.rule() == Code::InvalidInputRules).unwrap_or_else(|| panic!("{opts}: {:#?}", c.diagnostics));
        assert!(d.message.contains(says), "{opts}: {}", d.message);
    };
    let c = ok("        date\n        confirm bye");
    let spec = &c.program.unwrap().collects[0];
    assert!(spec.date && (spec.min_digits, spec.max_digits) == (8, 8));
    ok("        matches \"1[3-9][0-9]{9}\"");
    ok("        decimal\n        confirm bye as money");
    ok("        date\n        confirm bye as date");
    bad("        matches \"1[3-9\"", "not a regular expression");
    bad("        date\n        decimal", "cannot also be `decimal`");
    bad("        date\n        length 6", "eight digits");
    bad("        confirm bye as money", "reads a number");
    bad("        confirm bye as date", "needs `date` input");
    bad("        decimal\n        confirm bye as euros", "cannot read input back as `euros`");
    // `say date` reads what a caller types.
    let c = check_src("entry 1 -> s\nstep s {\n    say date \"20261123\"\n    say date \"2026-11-23\"\n    hangup\n}\n").unwrap();
    assert!(errors(&c).is_empty(), "{:#?}", c.diagnostics);
}

/// The W0408 messages of a flow built around `balance` (`ok(amount)`, `locked`).
fn field_warnings(body: &str) -> Vec<String> {
    let src = format!(
        "prompts \"prompts.toml\"\nentry 1 -> start\nservice balance(account: text) {{\n    ok(amount: number)\n    locked\n}}\n{body}\nstep bye {{\n    hangup\n}}\n"
    );
    let c = check_src(&src).unwrap();
    assert!(errors(&c).is_empty(), "{:?}", c.diagnostics);
    c.diagnostics.iter().filter(|d| d.rule() == Code::FieldMaybeUnset).map(|d| d.message.clone()).collect()
}

#[test]
fn a_field_read_only_where_its_answer_leads_is_not_warned() {
    let w = field_warnings(
        "step start {\n    request balance(\"1\") as b {\n        ok -> read\n        locked -> bye\n        failed -> bye\n    }\n}\nstep read {\n    say money b.amount\n    if b.amount > 0 {\n        goto bye\n    }\n    goto bye\n}",
    );
    assert!(w.is_empty(), "{w:?}");
}

#[test]
fn a_timeout_sent_to_the_failed_handler_and_an_else_are_answers_without_the_field() {
    let w = field_warnings("step start {\n    request balance(\"1\") as b {\n        ok -> read\n        locked -> bye\n        failed -> read\n    }\n}\nstep read {\n    say money b.amount\n    goto bye\n}");
    assert_eq!(w, ["`b.amount` may be read here after `failed` or `timeout`, which do not set it"]);
    let w = field_warnings("step start {\n    request balance(\"1\") as b {\n        ok -> read\n        else -> read\n    }\n}\nstep read {\n    say money b.amount\n    goto bye\n}");
    assert_eq!(w, ["`b.amount` may be read here after `failed` or `locked` or `timeout`, which do not set it"]);
}

#[test]
fn a_menu_reached_before_the_request_and_a_key_anywhere_can_read_before_any_answer() {
    let w = field_warnings(
        "menu start {\n    prompt main_menu\n    key 1 -> ask\n    key 2 -> read\n    on exhausted -> bye\n}\nstep ask {\n    request balance(\"1\") as b {\n        ok -> read\n        locked -> bye\n        failed -> bye\n    }\n}\nstep read {\n    say money b.amount\n    goto start\n}",
    );
    assert_eq!(w, ["`b.amount` may be read here before any `balance` answer in `b` has set it"]);
    // The same read in a key that works anywhere.
    let w = field_warnings(
        "anywhere {\n    key 9 {\n        say money b.amount\n        goto start\n    }\n}\nmenu start {\n    prompt main_menu\n    key 1 -> ask\n    on exhausted -> bye\n}\nstep ask {\n    request balance(\"1\") as b {\n        ok {\n            say money b.amount\n            goto start\n        }\n        locked -> start\n        failed -> bye\n    }\n}",
    );
    assert_eq!(w, ["`b.amount` may be read here after `locked`, which does not set it, or before any `balance` answer in `b`"]);
}

#[test]
fn a_later_answer_without_the_field_reaches_a_read_around_a_loop() {
    // `read` first follows `ok`; then the menu asks again, and `locked` goes back to `read`.
    let w = field_warnings(
        "step start {\n    request balance(\"1\") as b {\n        ok -> read\n        locked -> bye\n        failed -> bye\n    }\n}\nstep read {\n    say money b.amount\n    goto again\n}\nmenu again {\n    prompt main_menu\n    key 1 {\n        request balance(\"2\") as b {\n            ok -> read\n            locked -> read\n            failed -> bye\n        }\n    }\n    on exhausted -> bye\n}",
    );
    assert_eq!(w, ["`b.amount` may be read here after `locked`, which does not set it"]);
}

#[test]
fn sub_flows_are_followed_where_they_run() {
    // A read inside a sub-flow run before any answer.
    let w = field_warnings(
        "sub speak() {\n    say money b.amount\n}\nstep start {\n    run speak()\n    request balance(\"1\") as b {\n        ok -> bye\n        locked -> bye\n        failed -> bye\n    }\n}",
    );
    assert_eq!(w, ["`b.amount` may be read here before any `balance` answer in `b` has set it"]);
    // A sub-flow that returns only after `ok`: what it returns with is read safely after it.
    let w = field_warnings(
        "sub fetch() {\n    request balance(\"1\") as b {\n        ok {\n            return\n        }\n        locked -> bye\n        failed -> bye\n    }\n}\nstep start {\n    run fetch()\n    say money b.amount\n    goto bye\n}",
    );
    assert!(w.is_empty(), "{w:?}");
    // A request inside a sub-flow whose handler goes to a step that reads the field.
    let w = field_warnings(
        "sub fetch() {\n    request balance(\"1\") as b {\n        ok -> show\n        locked -> show\n        failed -> bye\n    }\n}\nstep start {\n    run fetch()\n    goto bye\n}\nstep show {\n    say money b.amount\n    goto bye\n}",
    );
    assert_eq!(w, ["`b.amount` may be read here after `locked`, which does not set it"]);
}

#[test]
fn a_key_anywhere_that_a_menu_binds_itself_is_not_pressed_there() {
    let w = field_warnings(
        "anywhere {\n    key 8 -> read\n}\nmenu start {\n    prompt main_menu\n    key 1 -> ask\n    key 8 -> bye\n    on exhausted -> bye\n}\nstep ask {\n    request balance(\"1\") as b {\n        ok -> after\n        locked -> bye\n        failed -> bye\n    }\n}\nmenu after {\n    prompt main_menu\n    key 1 -> bye\n    on exhausted -> bye\n}\nstep read {\n    say money b.amount\n    goto bye\n}",
    );
    assert!(w.is_empty(), "{w:?}");
}

#[test]
fn a_step_that_ends_by_running_a_sub_flow_that_never_comes_back_is_no_dead_end() {
    let flow = |sub_body: &str| {
        format!(
            "prompts \"prompts.toml\"\nentry 1 -> start\nsub leave(code: text) {{\n{sub_body}\n}}\nstep start {{\n    play welcome\n    run leave(\"1\")\n}}\nstep bye {{\n    hangup\n}}\n"
        )
    };
    // Every path of the sub-flow goes elsewhere: the step does not end here.
    let c = check_src(&flow("    if code == \"1\" {\n        goto bye\n    }\n    hangup")).unwrap();
    assert!(!codes(&c).contains(&Code::DeadEnd), "{:?}", c.diagnostics);
    // Nor through another sub-flow that never comes back.
    let c = check_src(&flow("    play bye\n    run leave2(code)\n}\nsub leave2(code: text) {\n    hangup")).unwrap();
    assert!(!codes(&c).contains(&Code::DeadEnd), "{:?}", c.diagnostics);
    // One that can come back (its end, or a `return`) leaves the step with nothing to do.
    for body in ["    play bye", "    if code == \"1\" {\n        return\n    }\n    goto bye"] {
        let c = check_src(&flow(body)).unwrap();
        assert!(codes(&c).contains(&Code::DeadEnd), "{body}: {:?}", c.diagnostics);
    }
}

#[test]
fn a_key_that_runs_off_its_end_takes_its_answers_back_into_the_menu() {
    // Key 1 asks again and falls back into the menu; key 2 then reads what `locked` left.
    let w = field_warnings(
        "step start {\n    request balance(\"1\") as b {\n        ok -> main\n        locked -> bye\n        failed -> bye\n    }\n}\nmenu main {\n    prompt main_menu\n    key 1 {\n        request balance(\"2\") as b {\n            ok {\n                play welcome\n            }\n            locked {\n                play bye\n            }\n            failed {\n                play bye\n            }\n        }\n    }\n    key 2 -> show\n    on exhausted -> bye\n}\nstep show {\n    say money b.amount\n    goto bye\n}",
    );
    assert_eq!(w, ["`b.amount` may be read here after `failed` or `locked` or `timeout`, which do not set it"]);
}

#[test]
fn sub_flows_running_each_other_many_times_are_followed_once_per_state() {
    // Each sub-flow runs the next twice: followed afresh at every call, 2^40 walks.
    let mut body = String::from("step start {\n    run s0()\n    request balance(\"1\") as b {\n        ok -> bye\n        locked -> bye\n        failed -> bye\n    }\n}\n");
    for i in 0..40 {
        body.push_str(&format!("sub s{i}() {{\n    run s{n}()\n    run s{n}()\n}}\n", n = i + 1));
    }
    body.push_str("sub s40() {\n    say money b.amount\n}");
    let w = field_warnings(&body);
    assert_eq!(w, ["`b.amount` may be read here before any `balance` answer in `b` has set it"]);
}

#[test]
fn sub_flows_on_a_cycle_of_calls_are_recursive_and_a_long_chain_is_not() {
    let flow = |subs: &str| format!("prompts \"prompts.toml\"\nentry 1 -> start\nstep start {{\n    run a()\n    hangup\n}}\n{subs}");
    let recursive = |c: &Compiled| {
        let mut v: Vec<String> = c.diagnostics.iter().filter(|d| d.rule() == Code::RecursiveSub).map(|d| d.message.clone()).collect();
        v.sort();
        v
    };
    // a → b → a, and c (which runs a) is on no cycle.
    let c = compile_src(&flow("sub a() {\n    run b()\n}\nsub b() {\n    run c()\n    run a()\n}\nsub c() {\n    play welcome\n}\nsub d() {\n    run a()\n}"));
    assert_eq!(recursive(&c), ["sub-flow `a` calls itself", "sub-flow `b` calls itself"]);
    // A chain of 3,000 sub-flows, each running the next: no cycle, and checked at once.
    let mut chain = String::new();
    for i in 0..3_000 {
        chain.push_str(&format!("sub s{i}() {{\n    run s{}()\n}}\n", i + 1));
    }
    chain.push_str("sub s3000() {\n    play welcome\n}\nsub a() {\n    run s0()\n}\n");
    let c = compile_src(&flow(&chain));
    assert!(recursive(&c).is_empty());
}
