//! The wallboard (大屏幕) in headless Chromium (Debian's package): the page
//! loads with the configured queues, updates itself from its event stream,
//! and changes when a caller queues. Screenshots are kept as test artefacts
//! (target/wallboard-*.png).

mod common;
use common::server::*;

use std::process::Command;
use std::time::{Duration, Instant};

const CONFIG: &str = "flows = [\"tests/agents/agents.ivr\"]\n\n[[agents]]\nid = \"1003\"\nskills = [[\"general\", 3]]\npassword = \"x\"\n\n[[queues]]\nname = \"general\"\njoin_empty = true\nannounce_every_ms = 0\n";

fn chromium(args: &[&str], url: &str, profile: &std::path::Path) -> std::process::Output {
    let mut cmd = Command::new("chromium");
    cmd.args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"]);
    cmd.arg(format!("--user-data-dir={}", profile.display()));
    cmd.args(args).arg(url);
    cmd.output().expect("headless Chromium (apt-get install chromium); .ci/run installs it")
}

fn artefact(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(|d| d.parent()).unwrap().join(name)
}

#[test]
fn the_wallboard_shows_the_queues_and_changes_when_a_caller_queues() {
    let s = serve("wallboard", CONFIG);
    let ops = s.ops.expect("the operations listener");
    let url = format!("http://{ops}/wallboard");
    let profile = std::env::temp_dir().join(format!("ivr-wallboard-chromium-{}", std::process::id()));

    // The page as a browser builds it: the queue, nobody waiting.
    let dom = chromium(&["--timeout=3000", "--dump-dom"], &url, &profile.join("a"));
    let dom = String::from_utf8_lossy(&dom.stdout).to_string();
    assert!(dom.contains("data-queue=\"general\""), "the configured queue is shown:\n{dom}");
    assert!(dom.contains("id=\"waiting\">0<"), "nobody waiting yet:\n{dom}");
    let before = artefact("wallboard-empty.png");
    chromium(&["--timeout=3000", "--window-size=1600,900", &format!("--screenshot={}", before.display())], &url, &profile.join("b"));

    // A caller presses 0 and waits in the queue (no agent is logged in).
    let ua = TestUa::new(s.sip);
    let tag = ua.establish("7001", "wallboard-caller");
    ua.info("wallboard-caller", &tag, "Signal=0\r\nDuration=160\r\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut dom = String::new();
    while Instant::now() < deadline {
        let out = chromium(&["--timeout=2000", "--dump-dom"], &url, &profile.join("c"));
        dom = String::from_utf8_lossy(&out.stdout).to_string();
        if dom.contains("id=\"waiting\">1<") {
            break;
        }
    }
    assert!(dom.contains("id=\"waiting\">1<"), "the caller shows as waiting:\n{dom}");
    assert!(dom.contains("id=\"with_agents\">0<"), "waiting is not with an agent:\n{dom}");
    let after = artefact("wallboard-waiting.png");
    chromium(&["--timeout=3000", "--window-size=1600,900", &format!("--screenshot={}", after.display())], &url, &profile.join("d"));
    let (a, b) = (std::fs::read(&before).unwrap(), std::fs::read(&after).unwrap());
    assert!(a.len() > 10_000 && b.len() > 10_000, "real screenshots");
    assert_ne!(a, b, "the picture changed when the caller queued");

    // The event stream itself: server-sent events with the figures.
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(ops).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(format!("GET /wallboard/events HTTP/1.1\r\nHost: {ops}\r\n\r\n").as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("\n\ndata: ") {
        let n = c.read(&mut buf).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream"), "{text}");
    ua.bye("wallboard-caller", &tag);
    let _ = std::fs::remove_dir_all(&profile);
}
