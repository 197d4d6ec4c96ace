//! Crash safety of order submission: `ivr sim` placing an order is killed with
//! SIGKILL at many points and run again with the same call (so the same
//! idempotency key). Every acknowledged order exists exactly once; the retries
//! never record a second one.

mod common;
use common::*;

use std::process::{Command, Stdio};
use std::time::Duration;

const AT: &str = "2026-11-23T10:00:00+08:00";
const BUY: &str = "2 88001234# 135790 1 600000 10*52# 2# 1 h";

fn order_lines(data: &str) -> Vec<serde_json::Value> {
    let out = ivr(&["orders", "--data", data, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn killed_submissions_leave_each_order_exactly_once() {
    let dir = std::env::temp_dir().join(format!("ivr-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data = dir.to_str().unwrap().to_string();
    let args = ["sim", "flows/securities_hotline.ivr", "--json", "--keys", BUY, "--at", AT, "--data", &data];
    // Where the order is placed in a whole call's transcript: the kills land
    // on each event around it (the request, its answer, the confirmation).
    let probe = ivr(&args);
    let events: Vec<serde_json::Value> = stdout(&probe).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let at = events.iter().position(|v| v["op"] == "place_order").expect("the call places an order");
    let mut acknowledged: Vec<String> = events.iter().filter(|v| v["event"] == "result" && v["op"] == "place_order").filter_map(|v| v["fields"]["order_no"].as_str().map(str::to_string)).collect();
    for kill_after in at.saturating_sub(8)..at + 8 {
        let mut child = Command::new(ivr_path())
            .args(args)
            .current_dir(root())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut seen = String::new();
        for _ in 0..kill_after {
            if std::io::BufRead::read_line(&mut out, &mut seen).unwrap_or(0) == 0 {
                break;
            }
        }
        let _ = child.kill(); // SIGKILL on Unix, right after that event
        let _ = std::io::Read::read_to_string(&mut out, &mut seen);
        let _ = child.wait();
        for line in seen.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue }; // a torn last line
            if v["event"] == "result" && v["op"] == "place_order" && v["outcome"] == "ok" {
                acknowledged.push(v["fields"]["order_no"].as_str().unwrap().to_string());
            }
        }
    }
    // One last run to the end: the caller always hears an order number.
    let out = ivr(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let last: Vec<serde_json::Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let final_no = last
        .iter()
        .find(|v| v["event"] == "result" && v["op"] == "place_order")
        .map(|v| v["fields"]["order_no"].as_str().unwrap().to_string())
        .expect("the order is acknowledged");
    acknowledged.push(final_no.clone());

    let orders = order_lines(&data);
    assert_eq!(orders.len(), 1, "exactly one order after 18 runs: {orders:#?}");
    assert_eq!(orders[0]["order_no"], final_no.as_str());
    assert!(acknowledged.iter().all(|n| *n == final_no), "every acknowledgement names the one order: {acknowledged:?}");
    assert_eq!(orders[0]["shares"], 200);
    assert_eq!(orders[0]["price"], "10.52");
    std::fs::remove_dir_all(&dir).ok();
}

/// Each call's record: the last line of each call_id (what `ivr report` reads).
fn last_lines(text: &str) -> Vec<serde_json::Value> {
    let mut order: Vec<String> = Vec::new();
    let mut last = std::collections::HashMap::new();
    for l in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else { continue };
        let id = v["call_id"].as_str().unwrap_or("").to_string();
        if !last.contains_key(&id) {
            order.push(id.clone());
        }
        last.insert(id, v);
    }
    order.into_iter().filter_map(|id| last.remove(&id)).collect()
}

#[test]
fn a_server_killed_mid_call_loses_no_call_record_and_never_glues_a_torn_line() {
    let mut s = common::server::serve("killed", "");
    // One call over, two in progress when the server dies.
    let ua = common::server::TestUa::new(s.sip);
    let done = ua.establish("962588", "finished-call");
    ua.bye("finished-call", &done);
    let a = common::server::TestUa::new(s.sip);
    a.establish("962588", "in-progress-1");
    let b = common::server::TestUa::new(s.sip);
    b.establish("962588", "in-progress-2");
    let calls = s.data.join("calls.jsonl");
    // The records of calls in progress are on disk before anything ends.
    common::wait_for("the open records on disk", Duration::from_secs(5), || std::fs::read_to_string(&calls).unwrap_or_default().contains("in-progress-2").then_some(()));
    // SIGKILL, as a crash would.
    s.child.kill().unwrap();
    s.child.wait().unwrap();
    // A write the crash cut short.
    let mut f = std::fs::OpenOptions::new().append(true).open(&calls).unwrap();
    std::io::Write::write_all(&mut f, br#"{"call_id":"torn-by-the-crash","state":"op"#).unwrap();
    drop(f);
    // The next start recovers.
    let mut again = Command::new(ivr_path())
        .args(["serve", "--config", s.data.join("ivr.toml").to_str().unwrap()])
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(again.stdout.take().unwrap()), &mut line).unwrap();
    assert!(line.contains("ivr serving"), "{line}");
    // A call after the restart is recorded on a line of its own.
    let c = common::server::TestUa::new(s.sip);
    let tag = c.establish("962588", "after-restart");
    c.bye("after-restart", &tag);
    let recs = common::wait_for("the call after the restart closed", Duration::from_secs(5), || {
        let recs = last_lines(&std::fs::read_to_string(&calls).unwrap());
        recs.iter().any(|r| r["call_id"] == "after-restart" && r["state"] == "closed").then_some(recs)
    });
    let _ = again.kill();
    let _ = again.wait();
    let by_id = |id: &str| recs.iter().find(|r| r["call_id"] == id).unwrap_or_else(|| panic!("no record of {id}: {recs:#?}"));
    assert_eq!(by_id("finished-call")["outcome"], "caller_hung_up");
    for id in ["in-progress-1", "in-progress-2"] {
        let r = by_id(id);
        assert_eq!((r["state"].as_str(), r["outcome"].as_str()), (Some("closed"), Some("server_crashed")), "{r}");
    }
    assert_eq!(by_id("after-restart")["outcome"], "caller_hung_up", "not glued to the torn line");
    assert_eq!(recs.len(), 4, "four calls, the torn fragment skipped: {recs:#?}");
}

#[test]
fn logs_can_be_one_json_object_per_line_with_the_call_id() {
    // A server of the harness's making, stopped, then started again with JSON logs.
    let mut s = common::server::serve("json-logs", "");
    s.child.kill().unwrap();
    s.child.wait().unwrap();
    let mut server = Command::new(ivr_path())
        .args(["serve", "--config", s.data.join("ivr.toml").to_str().unwrap(), "--log-format", "json"])
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(server.stdout.take().unwrap()), &mut line).unwrap();
    let ua = common::server::TestUa::new(s.sip);
    let tag = ua.establish("962588", "json-logged-call");
    ua.bye("json-logged-call", &tag);
    let _ = Command::new("kill").args(["-TERM", &server.id().to_string()]).status();
    let out = server.wait_with_output().unwrap();
    let logs = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = logs.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    let ended = lines.iter().find(|l| l["message"] == "call ended").unwrap_or_else(|| panic!("{logs}"));
    assert_eq!(ended["call_id"], "json-logged-call");
    assert_eq!(ended["outcome"], "caller_hung_up");
    assert!(lines.iter().all(|l| l["level"].is_string() && l["timestamp"].is_string()));
    assert!(!logs.contains("13800138000"), "the caller's number is not logged");
}
