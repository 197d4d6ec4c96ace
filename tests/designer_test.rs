//! `ivr test`: the shipped scenarios pass and reach every part of both
//! shipped flows; failures read as diffs with the transcript around them;
//! JSON and JUnit XML are what tools expect; secrets never show; a suite of
//! hundreds of calls runs well under a second.

mod common;
use common::*;

/// The run's own timing, the one line that differs between runs.
fn untimed(s: &str) -> String {
    let mut out = String::new();
    for line in s.lines() {
        match (line.rfind(" ("), line.ends_with(" ms)")) {
            (Some(i), true) if line.contains(" passed, ") => {
                out.push_str(&line[..i]);
                out.push_str(" (… ms)");
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// JUnit's `time="…"` attributes, the only part that differs between runs.
fn untimed_xml(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find(" time=\"") {
        out.push_str(&rest[..i]);
        out.push_str(" time=\"…\"");
        let after = &rest[i + 7..];
        rest = &after[after.find('"').map_or(after.len(), |j| j + 1)..];
    }
    out.push_str(rest);
    out
}

/// The in-run milliseconds of the summary line (`144 calls: … (57 ms)`).
fn run_ms(s: &str) -> u64 {
    let line = s.lines().find(|l| l.contains(" passed, ")).expect("a summary line");
    let inner = &line[line.rfind('(').unwrap() + 1..line.len() - " ms)".len()];
    inner.parse().unwrap_or_else(|_| panic!("no time in {line:?}"))
}

#[test]
fn the_shipped_scenarios_pass() {
    let out = ivr(&["test", "flows/"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", stderr(&out));
    let calls = text.lines().filter(|l| l.starts_with("ok   ")).count();
    assert!(calls >= 100, "the shipped suite has {calls} calls");
    assert!(text.contains(&format!("{calls} calls: {calls} passed, 0 failed")), "{text}");
    assert!(text.contains("flows/tests/securities_trading.test.toml · buy 200 shares of 600000 at 10.52"), "{text}");
}

#[test]
fn the_shipped_scenarios_reach_every_option_and_outcome_of_both_flows() {
    let out = ivr(&["test", "flows/", "--coverage", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("one JSON document");
    let flows = v["coverage"].as_array().expect("coverage per flow");
    let names: Vec<&str> = flows.iter().map(|f| f["flow"].as_str().unwrap()).collect();
    assert_eq!(names, ["flows/bank_hotline.ivr", "flows/securities_hotline.ivr"]);
    for f in flows {
        for kind in ["options", "service_outcomes", "handoff_outcomes"] {
            let k = &f["kinds"][kind];
            assert_eq!(k["percent"], 100.0, "{} {kind}: never reached {}", f["flow"], k["missed"]);
            assert!(k["total"].as_u64().unwrap() > 0, "{} has no {kind}", f["flow"]);
        }
        // And everything else the designer wrote: steps, handlers, branches.
        assert_eq!(f["percent"], 100.0, "{}: {}", f["flow"], f["kinds"]);
    }
    let strict = ivr(&["test", "flows/", "--min-coverage", "100"]);
    assert_eq!(strict.status.code(), Some(0), "{}", stdout(&strict));
    assert!(stdout(&strict).contains("coverage of flows/bank_hotline.ivr: 100.0%"), "{}", stdout(&strict));
}

#[test]
fn a_wrong_expectation_fails_with_a_diff_and_the_transcript_around_it() {
    let out = ivr(&["test", "tests/designer/wrong.test.toml"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("- balance_is\n"), "{text}");
    assert!(text.contains("→ [  14.800s] ♪ 对不起，卡号或密码错误。  [wrong_pin]"), "{text}");
    insta::assert_snapshot!("wrong_human", untimed(&text));
}

#[test]
fn json_output() {
    let out = ivr(&["test", "tests/designer/wrong.test.toml", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("one JSON document");
    assert_eq!((v["passed"].as_u64(), v["failed"].as_u64()), (Some(1), Some(2)));
    insta::assert_snapshot!("wrong_json", stdout(&out));
}

#[test]
fn junit_xml_is_well_formed_with_one_testcase_per_call() {
    let file = std::env::temp_dir().join(format!("ivr-junit-{}.xml", std::process::id()));
    let f = file.to_str().unwrap();
    let out = ivr(&["test", "tests/designer/wrong.test.toml", "tests/designer/pin.test.toml", "--junit", f]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let xml = std::fs::read_to_string(&file).expect("the JUnit file");
    let _ = std::fs::remove_file(&file);
    let root = xml::parse(&xml).unwrap_or_else(|e| panic!("not well-formed XML: {e}\n{xml}"));
    assert_eq!(root.name, "testsuites");
    assert_eq!((root.attr("tests"), root.attr("failures")), (Some("5"), Some("3")));
    let suites = root.children("testsuite");
    assert_eq!(suites.len(), 2, "a testsuite per scenario file");
    let cases: Vec<&xml::Element> = suites.iter().flat_map(|s| s.children("testcase")).collect();
    assert_eq!(cases.len(), 5, "a testcase per call");
    let failed: Vec<&&xml::Element> = cases.iter().filter(|c| !c.children("failure").is_empty()).collect();
    assert_eq!(failed.len(), 3);
    // Names with markup characters survive escaping.
    assert!(cases.iter().any(|c| c.attr("name") == Some("the balance &lt;is read out&gt; &amp; &quot;goodbye&quot; (wrong: the PIN is refused)")));
    insta::assert_snapshot!("junit", untimed_xml(&xml));
}

#[test]
fn secret_digits_never_appear_in_any_output() {
    let file = std::env::temp_dir().join(format!("ivr-junit-secret-{}.xml", std::process::id()));
    let f = file.to_str().unwrap();
    let outputs = [
        ivr(&["test", "-v", "tests/designer/pin.test.toml", "tests/designer/wrong.test.toml", "--junit", f]),
        ivr(&["test", "tests/designer/pin.test.toml", "tests/designer/wrong.test.toml", "--format", "json"]),
    ];
    let junit = std::fs::read_to_string(&file).expect("the JUnit file");
    let _ = std::fs::remove_file(&file);
    let mut all = junit;
    for o in &outputs {
        all.push_str(&stdout(o));
        all.push_str(&stderr(o));
    }
    for secret in ["246810", "135790"] {
        assert!(!all.contains(secret), "secret {secret} leaked:\n{all}");
    }
    assert!(all.contains("☎ caller presses •••••• (typed ahead)"), "a PIN typed ahead shows masked:\n{all}");
    assert!(all.contains(r#"→ request check({"pin":"****"})"#), "{all}");

    // A PIN written into an expectation is refused without being echoed.
    let dir = std::env::temp_dir().join(format!("ivr-secret-expect-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = dir.join("pin.test.toml");
    let flow = root().join("flows/bank_hotline.ivr");
    let text = format!(
        "flow = {:?}\nkeys = \"1 6222020200112233445 246810 h\"\nstubs.card_auth = \"denied\"\nexpect.requests = [\"card_auth(pin=246810)\"]\n",
        flow.to_str().unwrap()
    );
    std::fs::write(&scenario, text).unwrap();
    let out = ivr(&["test", scenario.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("`pin` of card_auth is secret and always shows as ****: write `card_auth(pin=****)`"), "{}", stdout(&out));
    assert!(!stdout(&out).contains("246810"), "{}", stdout(&out));
}

#[test]
fn an_unexpected_fault_fails_and_an_expected_one_passes() {
    let out = ivr(&["test", "tests/designer/fault.test.toml"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("FAIL tests/designer/fault.test.toml · an unexpected fault fails"), "{text}");
    assert!(text.contains("ok   tests/designer/fault.test.toml · an expected fault passes"), "{text}");
    assert!(text.contains("fault: the call ended in a fault: 100 steps entered without the caller pressing a key"), "{text}");
}

#[test]
fn scenario_files_that_cannot_be_read_exit_2_and_nothing_runs() {
    let out = ivr(&["test", "tests/designer/unreadable"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("tests/designer/unreadable/bad.test.toml: TOML parse error at line 4"), "{err}");
    assert!(err.contains("unknown field `heared`, expected one of `path`, `heard`, `said`, `requests`, `outcome`"), "{err}");
    assert!(err.contains("keys: `during 1 2`: after `during` come keys"), "{err}");
    assert!(stdout(&out).is_empty(), "nothing ran: {}", stdout(&out));
    assert_eq!(ivr(&["test", "no/such/dir"]).status.code(), Some(2));
    assert_eq!(ivr(&["test", "tests/ui"]).status.code(), Some(2), "no scenario files there");
}

#[test]
fn coverage_lists_what_was_never_reached_and_min_coverage_fails_below() {
    let out = ivr(&["test", "tests/designer/pin.test.toml", "--min-coverage", "95"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "below the minimum: {text}");
    assert!(text.contains("coverage of tests/designer/pin.ivr is 54.5%, below --min-coverage 95"), "{text}");
    let report = &text[text.find("coverage of").unwrap()..];
    insta::assert_snapshot!("pin_coverage", untimed(report));
    let ok = ivr(&["test", "tests/designer/pin.test.toml", "--min-coverage", "50"]);
    assert_eq!(ok.status.code(), Some(1), "one call still fails on purpose");
    assert!(!stdout(&ok).contains("below --min-coverage"), "{}", stdout(&ok));
}

#[test]
fn hundreds_of_calls_run_well_under_a_second() {
    // The shipped suite four times over, in one process.
    let out = ivr(&["test", "flows/tests", "flows/tests", "flows/tests", "flows/tests"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let calls = text.lines().filter(|l| l.starts_with("ok   ")).count();
    assert!(calls >= 400, "{calls} calls");
    let ms = run_ms(&text);
    eprintln!("{calls} calls in {ms} ms (a debug build)");
    assert!(ms < 1000, "{calls} calls took {ms} ms");
}

/// Just enough XML to check JUnit output: well-formedness (one root, every
/// tag closed in order, quoted attributes, known entities, no raw `<` or `&`
/// in text, no characters XML 1.0 forbids) and the element tree.
mod xml {
    #[derive(Debug, Default)]
    pub struct Element {
        pub name: String,
        pub attrs: Vec<(String, String)>,
        pub elements: Vec<Element>,
    }

    impl Element {
        /// An attribute's value as written (entities left escaped).
        pub fn attr(&self, name: &str) -> Option<&str> {
            self.attrs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
        }

        pub fn children(&self, name: &str) -> Vec<&Element> {
            self.elements.iter().filter(|e| e.name == name).collect()
        }
    }

    fn check_text(t: &str) -> Result<(), String> {
        if let Some(c) = t.chars().find(|&c| (c as u32) < 0x20 && !matches!(c, '\n' | '\r' | '\t')) {
            return Err(format!("control character {:?} in text", c));
        }
        let mut rest = t;
        while let Some(i) = rest.find('&') {
            let after = &rest[i + 1..];
            let end = after.find(';').ok_or("`&` without `;`")?;
            let entity = &after[..end];
            let ok = matches!(entity, "amp" | "lt" | "gt" | "quot" | "apos")
                || entity.strip_prefix("#x").is_some_and(|h| u32::from_str_radix(h, 16).is_ok())
                || entity.strip_prefix('#').is_some_and(|d| d.parse::<u32>().is_ok());
            if !ok {
                return Err(format!("unknown entity &{entity};"));
            }
            rest = &after[end + 1..];
        }
        Ok(())
    }

    fn name_ok(n: &str) -> bool {
        !n.is_empty() && n.chars().all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ':' | '.'))
    }

    pub fn parse(doc: &str) -> Result<Element, String> {
        let mut s = doc.trim_start();
        if let Some(rest) = s.strip_prefix("<?xml") {
            s = &rest[rest.find("?>").ok_or("unclosed declaration")? + 2..];
        }
        let mut stack: Vec<Element> = Vec::new();
        let mut root: Option<Element> = None;
        loop {
            let lt = s.find('<');
            let text = &s[..lt.unwrap_or(s.len())];
            check_text(text)?;
            if stack.is_empty() && !text.trim().is_empty() {
                return Err(format!("text outside the root: {text:?}"));
            }
            let Some(lt) = lt else { break };
            s = &s[lt + 1..];
            let gt = s.find('>').ok_or("unclosed tag")?;
            let tag = &s[..gt];
            s = &s[gt + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                let open = stack.pop().ok_or_else(|| format!("</{name}> closes nothing"))?;
                if open.name != name.trim() {
                    return Err(format!("</{name}> closes <{}>", open.name));
                }
                match stack.last_mut() {
                    Some(parent) => parent.elements.push(open),
                    None if root.is_none() => root = Some(open),
                    None => return Err("two roots".into()),
                }
                continue;
            }
            let (tag, empty) = match tag.strip_suffix('/') {
                Some(t) => (t, true),
                None => (tag, false),
            };
            let name_end = tag.find(char::is_whitespace).unwrap_or(tag.len());
            let mut el = Element { name: tag[..name_end].to_string(), ..Element::default() };
            if !name_ok(&el.name) {
                return Err(format!("bad tag name {:?}", el.name));
            }
            let mut attrs = tag[name_end..].trim();
            while !attrs.is_empty() {
                let eq = attrs.find('=').ok_or_else(|| format!("attribute without value in <{}>", el.name))?;
                let name = attrs[..eq].trim();
                if !name_ok(name) {
                    return Err(format!("bad attribute name {name:?}"));
                }
                let rest = attrs[eq + 1..].trim_start();
                let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'').ok_or("unquoted attribute")?;
                let close = rest[1..].find(quote).ok_or("unclosed attribute")?;
                let value = &rest[1..1 + close];
                if value.contains('<') {
                    return Err(format!("`<` in attribute {name}"));
                }
                check_text(value)?;
                if el.attrs.iter().any(|(n, _)| n == name) {
                    return Err(format!("attribute {name} twice"));
                }
                el.attrs.push((name.to_string(), value.to_string()));
                attrs = rest[close + 2..].trim_start();
            }
            if empty {
                match stack.last_mut() {
                    Some(parent) => parent.elements.push(el),
                    None if root.is_none() => root = Some(el),
                    None => return Err("two roots".into()),
                }
            } else {
                stack.push(el);
            }
        }
        if let Some(open) = stack.last() {
            return Err(format!("<{}> is never closed", open.name));
        }
        root.ok_or_else(|| "no root element".into())
    }

    #[test]
    fn the_checker_refuses_what_is_not_xml() {
        assert!(parse("<a x=\"1\"><b/>t &amp; u</a>").is_ok());
        for bad in ["<a><b></a></b>", "<a>x & y</a>", "<a x=1/>", "<a>", "<a/><b/>", "<a>\u{1}</a>", "<a x=\"<\"/>", "<a>&nbsp;</a>"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}

#[test]
fn a_production_record_becomes_a_scenario() {
    let calls = "tests/designer/replay/calls.jsonl";
    let flow = "flows/securities_hotline.ivr";
    // The call's last line is its record; a caller who hung up while queued
    // leaves a hand-off that never answers; secrets replay as 0; a field's
    // quotes and commas stay TOML.
    // The shipped flow's version changes with it: not part of the snapshot.
    let steady = |s: String| match (s.find("(now "), s.find("): where")) {
        (Some(a), Some(b)) => format!("{}(now …{}", &s[..a], &s[b..]),
        _ => s,
    };
    let queued = ivr(&["test", "--from-record", calls, "queued@192.0.2.4", "--flow", flow]);
    assert!(queued.status.success(), "{}", stderr(&queued));
    insta::assert_snapshot!("replay_queued", steady(stdout(&queued)));
    let trade = ivr(&["test", "--from-record", calls, "trade@192.0.2.4", "--flow", flow]);
    assert!(trade.status.success(), "{}", stderr(&trade));
    let text = stdout(&trade);
    insta::assert_snapshot!("replay_trade", steady(text.clone()));
    let parsed: toml::Value = toml::from_str(&text).expect("the scenario is TOML");
    assert_eq!(parsed["stubs"]["authenticate"]["fields"]["name"].as_str(), Some("张三, \"VIP\""));
    assert!(!ivr(&["test", "--from-record", calls, "nobody"]).status.success());
    assert!(!ivr(&["test", "--from-record", "tests/designer/replay/none.jsonl", "x"]).status.success());
}
