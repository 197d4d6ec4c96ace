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
    let mut acknowledged = Vec::new();
    for attempt in 0..16u64 {
        let mut child = Command::new(ivr_path())
            .args(args)
            .current_dir(root())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(attempt * 1_500));
        let _ = child.kill(); // SIGKILL on Unix
        let out = child.wait_with_output().unwrap();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
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
    assert_eq!(orders.len(), 1, "exactly one order after {} runs: {orders:#?}", 17);
    assert_eq!(orders[0]["order_no"], final_no.as_str());
    assert!(acknowledged.iter().all(|n| *n == final_no), "every acknowledgement names the one order: {acknowledged:?}");
    assert_eq!(orders[0]["shares"], 200);
    assert_eq!(orders[0]["price"], "10.52");
    std::fs::remove_dir_all(&dir).ok();
}
