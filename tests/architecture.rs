//! The architecture's rules, checked: the sans-IO cores depend on no async
//! runtime, socket or metrics library, and their sources reach for no clock,
//! socket, thread or (for the call core) file. `docs/ARCHITECTURE.md` states them.

mod common;
use common::root;

use std::collections::{BTreeMap, BTreeSet};

/// Every package in Cargo.lock with its dependencies' names.
fn lock() -> BTreeMap<String, Vec<String>> {
    let text = std::fs::read_to_string(root().join("Cargo.lock")).unwrap();
    let mut out = BTreeMap::new();
    for block in text.split("[[package]]").skip(1) {
        let name = block.lines().find_map(|l| l.strip_prefix("name = ")).unwrap().trim_matches('"').to_string();
        let mut deps = Vec::new();
        if let Some(d) = block.split("dependencies = [").nth(1) {
            for line in d.split(']').next().unwrap().lines() {
                let dep = line.trim().trim_end_matches(',').trim_matches('"');
                if let Some(n) = dep.split(' ').next().filter(|n| !n.is_empty()) {
                    deps.push(n.to_string());
                }
            }
        }
        out.insert(name, deps);
    }
    out
}

fn closure(lock: &BTreeMap<String, Vec<String>>, root: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![root.to_string()];
    while let Some(p) = todo.pop() {
        if seen.insert(p.clone()) {
            todo.extend(lock.get(&p).into_iter().flatten().cloned());
        }
    }
    seen
}

const CORES: [&str; 8] = ["ivr-call", "ivr-vm", "ivr-acd", "ivr-sip", "ivr-media", "ivr-compiler", "ivr-syntax", "ivr-bytecode"];

#[test]
fn the_cores_depend_on_no_runtime_or_socket_library() {
    let lock = lock();
    for core in CORES {
        let deps = closure(&lock, core);
        // Cores count in plain numbers; only the shell renders metrics.
        for banned in ["tokio", "mio", "socket2", "async-std", "hyper", "ureq", "prometheus-client"] {
            assert!(!deps.contains(banned), "{core} depends on {banned} (through {:?})", deps);
        }
    }
}

/// The Rust sources of a crate, without its tests.
fn sources(dir: &std::path::Path, out: &mut Vec<(std::path::PathBuf, String)>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n != "tests") {
                sources(&p, out);
            }
        } else if p.extension().is_some_and(|x| x == "rs") && p.file_name().is_some_and(|n| n != "tests.rs") {
            out.push((p.clone(), std::fs::read_to_string(&p).unwrap()));
        }
    }
}

#[test]
fn the_cores_read_no_clock_open_no_socket_and_spawn_nothing() {
    let banned = ["Instant::now", "SystemTime::now", "Timestamp::now", "UdpSocket", "TcpStream", "TcpListener", "thread::spawn", "tokio::"];
    for core in CORES {
        let dir = root().join("crates").join(core.trim_start_matches("ivr-")).join("src");
        let mut files = Vec::new();
        sources(&dir, &mut files);
        assert!(!files.is_empty(), "{core} has sources at {}", dir.display());
        for (path, text) in files {
            // Code only: a test module at the end of a file may use what it likes.
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            for b in banned {
                assert!(!code.contains(b), "{} uses {b}", path.display());
            }
            if core == "ivr-call" {
                assert!(!code.contains("std::fs"), "{} touches files", path.display());
            }
        }
    }
}
