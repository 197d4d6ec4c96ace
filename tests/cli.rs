//! `ivr check / compile / disasm` driven from outside, as a CI pipeline would.

mod common;
use common::*;

#[test]
fn shipped_flows_are_clean() {
    let out = ivr(&["check", "flows/"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("checked 2 flows: 0 errors, 0 warnings"), "{}", stderr(&out));
    let strict = ivr(&["check", "--deny-warnings", "flows/"]);
    assert_eq!(strict.status.code(), Some(0), "{}", stderr(&strict));
}

#[test]
fn shipped_flows_match_the_example_deployment() {
    // Every queue the flows name is configured, every priority is a tier.
    let out = ivr(&["check", "--deny-warnings", "--config", "ivr.example.toml", "flows/"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let bad = ivr(&["check", "--config", "tests/ui/site.toml", "flows/"]);
    assert_eq!(bad.status.code(), Some(1), "lost_card and bank_general are not queues there");
}

#[test]
fn a_folder_with_mistakes_fails_with_every_diagnostic() {
    let out = ivr(&["check", "--format", "json", "--config", "tests/ui/site.toml", "tests/ui"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    let codes: std::collections::BTreeSet<&str> =
        v["diagnostics"].as_array().unwrap().iter().map(|d| d["code"].as_str().unwrap()).collect();
    for (code, _) in ivr_compiler::CODES {
        assert!(codes.contains(code), "{code} missing from a check of tests/ui");
    }
}

#[test]
fn json_and_github_formats() {
    let json = ivr(&["check", "--format", "json", "tests/ui/E0107.ivr"]);
    assert_eq!(json.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    insta::assert_json_snapshot!("check_json", v);
    let gh = ivr(&["check", "--format", "github", "tests/ui/E0107.ivr", "tests/ui/W0402.ivr"]);
    assert_eq!(gh.status.code(), Some(1));
    insta::assert_snapshot!("check_github", stdout(&gh));
}

#[test]
fn usage_and_io_errors_exit_2() {
    assert_eq!(ivr(&["check", "no/such/dir"]).status.code(), Some(2));
    assert_eq!(ivr(&["check"]).status.code(), Some(2));
    assert_eq!(ivr(&["check", "--format", "xml", "flows"]).status.code(), Some(2));
    assert_eq!(ivr(&["disasm", "no-such-file.ivrc"]).status.code(), Some(2));
}

#[test]
fn disassembly_of_the_shipped_flows() {
    for flow in ["securities_hotline", "bank_hotline"] {
        let out = ivr(&["disasm", &format!("flows/{flow}.ivr")]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        insta::assert_snapshot!(format!("disasm_{flow}"), stdout(&out));
    }
}

#[test]
fn compiled_programs_round_trip() {
    let dir = std::env::temp_dir().join(format!("ivr-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for flow in ["securities_hotline", "bank_hotline"] {
        let out_path = dir.join(format!("{flow}.ivrc"));
        let out = out_path.to_str().unwrap();
        let c = ivr(&["compile", &format!("flows/{flow}.ivr"), "-o", out]);
        assert_eq!(c.status.code(), Some(0), "{}", stderr(&c));
        let from_file = ivr(&["disasm", out]);
        let from_source = ivr(&["disasm", &format!("flows/{flow}.ivr")]);
        assert_eq!(stdout(&from_file), stdout(&from_source));
        // A stripped program has no line table but runs the same.
        let c = ivr(&["compile", "--strip", &format!("flows/{flow}.ivr"), "-o", out]);
        assert_eq!(c.status.code(), Some(0));
        let stripped = stdout(&ivr(&["disasm", out]));
        assert!(!stripped.contains(" L1"), "stripped program still has lines");
    }
    // A corrupted program is refused with a message, never a crash.
    let bad = dir.join("bad.ivrc");
    let mut bytes = std::fs::read(dir.join("bank_hotline.ivrc")).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&bad, &bytes).unwrap();
    let out = ivr(&["disasm", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("truncated") || stderr(&out).contains("malformed"), "{}", stderr(&out));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_broken_deployment_is_refused_with_the_file_and_the_reason() {
    let dir = std::env::temp_dir().join(format!("ivr-bad-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        ("twice.toml", "[[agents]]\nid = \"1001\"\nskills = [[\"general\", 5]]\n[[agents]]\nid = \"1001\"\nskills = [[\"general\", 5]]\n", "agent 1001 is defined twice"),
        ("strategy.toml", "[[agents]]\nid = \"1001\"\nskills = [[\"general\", 5]]\n[[queues]]\nname = \"general\"\nstrategy = \"fastest\"\n", "unknown variant `fastest`"),
        ("skill.toml", "[[agents]]\nid = \"1001\"\nskills = [[\"general\", 5]]\n[[queues]]\nname = \"vip\"\n", "queue vip: no agent has the skill \"vip\""),
        ("level.toml", "[[agents]]\nid = \"1001\"\nskills = [[\"general\", 11]]\n", "levels are 1 to 10"),
        ("gateway.toml", "transfer_gateway = \"sip:gw.example.com\"\n", "transfer_gateway"),
        ("ops.toml", "ops_listen = \"localhost:8089\"\n", "ops_listen \"localhost:8089\""),
        ("ops_twice.toml", "ops_listen = \"127.0.0.1:8089\"\nadmin = \"127.0.0.1:9000\"\n", "keep ops_listen"),
    ];
    for (name, text, want) in cases {
        let path = dir.join(name);
        std::fs::write(&path, format!("listen = \"127.0.0.1:1\"\n{text}")).unwrap();
        let out = ivr(&["serve", "--config", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{name}");
        let err = stderr(&out);
        assert!(err.contains(want) && err.contains(name), "{name}: {err}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_very_long_expression_is_checked_not_a_crash() {
    // A whitelist of 5,000 VIP numbers in one `if`, and 5,000 nested brackets.
    let dir = std::env::temp_dir().join(format!("ivr-long-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let vips: Vec<String> = (0..5_000).map(|i| format!("caller == \"1380000{i:04}\"")).collect();
    let src = format!("entry 1 -> s\nstep s {{\n    if {} {{\n        hangup\n    }}\n    if {}1{} == 1 {{\n        hangup\n    }}\n    hangup\n}}\n", vips.join(" or "), "(".repeat(5_000), ")".repeat(5_000));
    let flow = dir.join("long.ivr");
    std::fs::write(&flow, src).unwrap();
    let out = ivr(&["check", flow.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_reader_that_goes_away_ends_the_command_quietly() {
    use std::io::Read;
    let mut child = std::process::Command::new(ivr_path())
        .args(["graph", "flows/securities_hotline.ivr", "--format", "mermaid"])
        .current_dir(root())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 8];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap(); // then the pipe closes
    let out = child.wait_with_output().unwrap();
    assert_ne!(out.status.code(), Some(101), "no panic: {}", String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}

#[test]
fn two_flows_answering_one_number_are_refused_at_start() {
    let dir = std::env::temp_dir().join(format!("ivr-two-flows-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(std::process::Command::new("cp").arg("-r").arg(root().join("flows")).arg(&dir).status().unwrap().success());
    std::fs::copy(dir.join("bank_hotline.ivr"), dir.join("bank_copy.ivr")).unwrap();
    let config = dir.join("ivr.toml");
    let flows = format!("[\"{}\", \"{}\"]", dir.join("bank_hotline.ivr").display(), dir.join("bank_copy.ivr").display());
    std::fs::write(&config, format!("listen = \"127.0.0.1:1\"\nops_listen = \"off\"\ndata = \"{}\"\nflows = {flows}\n", dir.join("data").display())).unwrap();
    let out = ivr(&["serve", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("number 95588 is answered by two flows, bank_hotline and bank_copy"), "{}", stderr(&out));
    let _ = std::fs::remove_dir_all(&dir);
}
