//! Flows calling services over HTTP (ivr.toml `[services.NAME] http = …`):
//! the example backend answers; a slow, failing or garbled backend sends the
//! call down the flow's timeout/failure branch, never a crash.

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};

const AT: &str = "2026-11-23T10:00:00+08:00";

fn sim_with(url: &str, timeout_ms: u64, name: &str) -> Vec<serde_json::Value> {
    let dir = std::env::temp_dir().join(format!("ivr-http-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("ivr.toml");
    std::fs::write(&config, format!("[services.quote]\nhttp = \"{url}\"\ntimeout_ms = {timeout_ms}\n")).unwrap();
    let out = ivr(&[
        "sim", "flows/securities_hotline.ivr", "--json", "--keys", "1 600000 h", "--at", AT,
        "--config", config.to_str().unwrap(), "--data", dir.to_str().unwrap(),
    ]);
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn events<'a>(t: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    t.iter().filter(|v| v["event"] == kind).collect()
}

/// Serves one request with `status`/`body` after `delay_ms`.
fn one_shot(status: u16, body: &'static str, delay_ms: u64) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/ivr", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        if let Ok((mut c, _)) = listener.accept() {
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf);
            std::thread::sleep(std::time::Duration::from_millis(delay_ms));
            let _ = write!(c, "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        }
    });
    url
}

#[test]
fn the_example_backend_answers_quotes() {
    let exe = ivr_path().parent().unwrap().join("examples").join("http_backend");
    let mut child = Command::new(&exe)
        .args(["127.0.0.1:0", "flows/data/quotes.csv"])
        .current_dir(root())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e} (cargo test builds examples)", exe.display()));
    let mut first = String::new();
    let mut out = child.stdout.take().unwrap();
    let mut byte = [0u8; 1];
    while out.read(&mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
        first.push(byte[0] as char);
    }
    let url = first.trim().strip_prefix("listening on ").expect("the backend prints its address").to_string();
    let t = sim_with(&url, 2_000, "example");
    let _ = child.kill();
    let result = events(&t, "result")[0];
    assert_eq!(result["outcome"], "ok");
    assert_eq!(result["fields"]["name"], "浦发银行");
    assert!(events(&t, "say").iter().any(|s| s["text"] == "十元五角二分"));
}

#[test]
fn a_backend_error_status_takes_the_failed_branch() {
    let t = sim_with(&one_shot(503, "busy", 0), 2_000, "error");
    assert_eq!(events(&t, "result")[0]["outcome"], "failed");
    assert!(events(&t, "error")[0]["message"].as_str().unwrap().contains("503"));
    assert!(events(&t, "play").iter().any(|p| p["prompt"] == "service_unavailable"));
}

#[test]
fn malformed_json_takes_the_failed_branch() {
    let t = sim_with(&one_shot(200, "{\"outcome\": ", 0), 2_000, "garbage");
    assert_eq!(events(&t, "result")[0]["outcome"], "failed");
    assert!(events(&t, "error")[0]["message"].as_str().unwrap().contains("malformed"));
}

#[test]
fn a_slow_backend_gets_the_hold_prompt_then_the_timeout() {
    // The flow waits 3 s for quotes, playing `please_wait` after 1.5 s.
    let t = sim_with(&one_shot(200, "{\"outcome\":\"ok\"}", 3_500), 10_000, "slow");
    assert!(events(&t, "play").iter().any(|p| p["prompt"] == "please_wait"));
    assert_eq!(events(&t, "cancel").len(), 1);
    assert!(events(&t, "result").is_empty(), "the late answer is dropped");
    assert!(events(&t, "play").iter().any(|p| p["prompt"] == "service_unavailable"));
}
