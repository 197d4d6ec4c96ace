//! Versioned deploys end to end: `ivr deploy` checks and loads the flows on
//! disk as a new release while a call in progress keeps the release it
//! started on; `ivr rollback` brings the old one back; a broken deploy is
//! refused (here, and by the server) and the running release stays; a canary
//! takes its listed callers; `ivr versions` shows it all.

mod common;
use common::server::*;
use common::*;

use std::path::Path;

/// A flow whose node names say which release a call ran: 1000 waits in a
/// menu, 1001 says goodbye and hangs up.
fn flow(release: &str) -> String {
    format!(
        "// Release {release}.\nlanguages zh\nprompts \"prompts.toml\"\nentry 1000 -> {release}\nentry 1001 -> {release}_done\n\n\
         menu {release} {{\n    prompt welcome\n    timeout 20s\n    key 1 -> {release}_done\n    on exhausted -> {release}_done\n}}\n\n\
         step {release}_done {{\n    play goodbye\n    hangup\n}}\n"
    )
}

fn deploy(s: &Server, dir: &Path, args: &[&str]) -> std::process::Output {
    let ops = s.ops.unwrap().to_string();
    let config = dir.join("deploy.toml");
    let mut all = vec!["deploy", "--config", config.to_str().unwrap(), "--admin", &ops];
    all.extend_from_slice(args);
    ivr(&all)
}

/// Places a call with sipp that the server hangs up: the first node it ran
/// (`RELEASE_done`) and the release it ran on, once `n` calls have ended.
fn call(s: &Server, n: usize) -> (String, String) {
    let out = sipp(s, "uac_server_bye.xml", "1001", &["-m", "1"]);
    assert!(out.status.success(), "call {n}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // The newest call is the last to have started.
    let recs = records(s, n);
    let r = recs.last().unwrap();
    (r["nodes"][0].as_str().unwrap_or("").to_string(), r["release"].as_str().unwrap_or("").to_string())
}

#[test]
fn deploy_keeps_calls_in_progress_rollback_restores_and_a_broken_deploy_is_refused() {
    let dir = std::env::temp_dir().join(format!("ivr-deploy-flows-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("deploy.ivr");
    // The shipped recordings, so the caller can tell the prompts apart.
    let audio = |id: &str| root().join(format!("flows/audio/zh/{id}.wav")).display().to_string();
    let catalogue = format!("[welcome]\nzh = \"欢迎\"\naudio.zh = \"{}\"\n\n[goodbye]\nzh = \"再见\"\naudio.zh = \"{}\"\n", audio("welcome"), audio("goodbye"));
    std::fs::write(dir.join("prompts.toml"), catalogue).unwrap();
    std::fs::write(&file, flow("one")).unwrap();
    std::fs::write(dir.join("deploy.toml"), format!("flows = [\"{}\"]\n", file.display())).unwrap();
    let s = serve("deploy", &format!("flows = [\"{}\"]\n", file.display()));
    let ops = s.ops.unwrap().to_string();
    let http = |method: &str, path: &str, body: &str| {
        let (code, _, body) = ops_request(s.ops.unwrap(), method, path, None, body);
        (code, body)
    };

    // A caller on release one, waiting in its menu.
    let ua = TestUa::new(s.sip);
    let to_tag = ua.establish("1000", "in-progress");
    ua.hears("welcome");

    // Release two is deployed while that call goes on.
    std::fs::write(&file, flow("two")).unwrap();
    let out = deploy(&s, &dir, &["-m", "rename the menu"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("current release"), "{}", stdout(&out));
    let (node, two) = call(&s, 1);
    assert_eq!(node, "two_done", "new calls get the new release");

    // The call in progress still runs release one: its key leads to one_done.
    ua.info("in-progress", &to_tag, "Signal=1\r\nDuration=160\r\n");
    ua.hears("goodbye");
    ua.bye("in-progress", &to_tag);
    let recs = records(&s, 2);
    let first = recs.iter().find(|r| r["call_id"] == "in-progress" && r["state"] == "closed").or_else(|| recs.iter().find(|r| r["call_id"] == "in-progress")).unwrap();
    let one = first["release"].as_str().unwrap().to_string();
    assert_ne!(one, two);
    assert_eq!(first["nodes"], serde_json::json!(["one", "one_done"]), "{first}");

    // A broken flow is refused here, before the server hears of it …
    std::fs::write(&file, "step broken {").unwrap();
    let refused = deploy(&s, &dir, &[]);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("not deployed"), "{}", stderr(&refused));
    // … and by the server, when asked directly: 422 with the reason, release two kept.
    let (code, body) = http("POST", "/releases", r#"{"by": "a script"}"#);
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("does not compile"), "{body}");
    assert_eq!(call(&s, 3), ("two_done".to_string(), two.clone()));

    // Rollback: release one again for new calls.
    let ops_arg = ["--admin", ops.as_str()];
    let back = ivr(&[&["rollback"][..], &ops_arg].concat());
    assert!(back.status.success(), "{}", stderr(&back));
    assert!(stdout(&back).contains(&one), "{}", stdout(&back));
    assert_eq!(call(&s, 4), ("one_done".to_string(), one.clone()));
    // A reload (SIGHUP, as logrotate sends) with the flows on disk unchanged
    // since their last deploy keeps the rollback.
    std::fs::write(&file, flow("two")).unwrap();
    let reload = ivr(&["reload", "--data", s.data.to_str().unwrap()]);
    assert!(reload.status.success(), "{}", stderr(&reload));
    assert!(stderr(&reload).contains("unchanged"), "{}", stderr(&reload));
    assert_eq!(call(&s, 5).1, one, "still rolled back");

    // A canary: release three for listed callers only (sipp calls as 13800138000).
    std::fs::write(&file, flow("three")).unwrap();
    let canary = deploy(&s, &dir, &["--canary", "0", "--canary-callers", "13800138000"]);
    assert!(canary.status.success(), "{}", stderr(&canary));
    assert!(stdout(&canary).contains("canary release"), "{}", stdout(&canary));
    let (node, three) = call(&s, 6);
    assert_eq!(node, "three_done");
    let versions = ivr(&[&["versions"][..], &ops_arg].concat());
    let text = stdout(&versions);
    assert!(text.lines().any(|l| l.starts_with("* ") && l.contains(&one)), "{text}");
    assert!(text.lines().any(|l| l.starts_with("c ") && l.contains(&three)), "{text}");
    for action in ["deploy", "refused", "rollback", "canary"] {
        assert!(text.contains(&format!("  {action} ")), "{action} in the history: {text}");
    }
    // Its calls counted apart, for judging it.
    let (_, metrics) = http("GET", "/metrics", "");
    assert!(metrics.contains(&format!("ivr_release_calls_started_total{{release=\"{three}\"}} 1")), "{metrics}");
    assert!(metrics.contains(&format!("ivr_release_info{{release=\"{three}\",role=\"canary\"")), "{metrics}");
    // Promoted, it serves everyone.
    let promoted = ivr(&[&["promote"][..], &ops_arg].concat());
    assert!(promoted.status.success(), "{}", stderr(&promoted));
    assert_eq!(call(&s, 7).1, three);
    let again = ivr(&[&["promote"][..], &ops_arg].concat());
    assert!(!again.status.success() && stderr(&again).contains("no canary"), "{}", stderr(&again));
    // The releases are kept in the data directory.
    for id in [&one, &two, &three] {
        assert!(s.data.join("releases").join(id).join("release.json").is_file());
    }
    std::fs::remove_dir_all(&dir).ok();
}

