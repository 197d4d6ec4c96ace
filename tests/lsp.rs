//! `ivr lsp` driven by a small LSP client over stdio: initialize, open a
//! broken flow and get its diagnostics with their codes, fix it and see them
//! go, go to a step's definition, hover a prompt for its text in every
//! language, complete names, shut down.

mod common;
use common::*;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{ChildStdin, ChildStdout, Command, Stdio};

use serde_json::{json, Value};

struct Client {
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    next: u64,
}

impl Client {
    fn send(&mut self, msg: Value) {
        let body = msg.to_string();
        write!(self.stdin, "Content-Length: {}\r\n\r\n{body}", body.len()).unwrap();
        self.stdin.flush().unwrap();
    }

    fn read(&mut self) -> Value {
        let mut len = 0;
        loop {
            let mut line = String::new();
            assert!(self.stdout.read_line(&mut line).unwrap() > 0, "the server closed stdout");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some(v) = line.strip_prefix("Content-Length: ") {
                len = v.parse().unwrap();
            }
        }
        let mut body = vec![0; len];
        self.stdout.read_exact(&mut body).unwrap();
        serde_json::from_slice(&body).unwrap()
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        loop {
            let m = self.read();
            if m["id"] == id {
                return m;
            }
        }
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// The next diagnostics published.
    fn diagnostics(&mut self) -> Vec<Value> {
        loop {
            let m = self.read();
            if m["method"] == "textDocument/publishDiagnostics" {
                return m["params"]["diagnostics"].as_array().cloned().unwrap_or_default();
            }
        }
    }
}

#[test]
fn an_editor_gets_diagnostics_definitions_hover_and_completion() {
    let dir = std::env::temp_dir().join(format!("ivr-lsp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("prompts.toml"), "[welcome]\nzh = \"欢迎致电。\"\nen = \"Welcome.\"\naudio.zh = \"audio/welcome.wav\"\n").unwrap();
    let flow = dir.join("main.ivr");
    let broken = "entry 1 -> start\nstep start {\n    play welcome\n    goto nowhere\n}\n";
    std::fs::write(&flow, broken).unwrap();
    let uri = format!("file://{}", flow.display());

    let mut child = Command::new(ivr_path()).arg("lsp").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut c = Client { stdin: child.stdin.take().unwrap(), stdout: BufReader::new(child.stdout.take().unwrap()), next: 0 };
    let init = c.request("initialize", json!({"processId": null, "rootUri": null, "capabilities": {}}));
    assert_eq!(init["result"]["capabilities"]["definitionProvider"], true, "{init}");
    c.notify("initialized", json!({}));

    // A broken file: E0101 where the undefined step is named.
    c.notify("textDocument/didOpen", json!({"textDocument": {"uri": uri, "languageId": "ivr", "version": 1, "text": broken}}));
    let d = c.diagnostics();
    let e = d.iter().find(|d| d["code"] == "E0101").unwrap_or_else(|| panic!("{d:#?}"));
    assert_eq!(e["range"]["start"], json!({"line": 3, "character": 9}));
    assert_eq!(e["severity"], 1);

    // Fixed as you type (the buffer, not the file on disk).
    let fixed = "entry 1 -> start\nstep start {\n    play welcome\n    goto start\n}\n";
    c.notify("textDocument/didChange", json!({"textDocument": {"uri": uri, "version": 2}, "contentChanges": [{"text": fixed}]}));
    let d = c.diagnostics();
    assert!(d.iter().all(|d| d["code"] != "E0101"), "{d:#?}");

    // Go to definition of `start` in `goto start`.
    let def = c.request("textDocument/definition", json!({"textDocument": {"uri": uri}, "position": {"line": 3, "character": 11}}));
    assert_eq!(def["result"]["range"]["start"], json!({"line": 1, "character": 5}), "{def}");
    let refs = c.request("textDocument/references", json!({"textDocument": {"uri": uri}, "position": {"line": 1, "character": 6}, "context": {"includeDeclaration": true}}));
    assert_eq!(refs["result"].as_array().unwrap().len(), 3, "entry, goto and the declaration: {refs}");

    // Hover a prompt: its text in every language, and the recording's state.
    let hover = c.request("textDocument/hover", json!({"textDocument": {"uri": uri}, "position": {"line": 2, "character": 10}}));
    let text = hover["result"]["contents"]["value"].as_str().unwrap_or_default().to_string();
    assert!(text.contains("欢迎致电。") && text.contains("Welcome."), "{hover}");
    assert!(text.contains("missing"), "no audio/welcome.wav on disk: {text}");

    // Completion offers the project's names and keywords.
    let comp = c.request("textDocument/completion", json!({"textDocument": {"uri": uri}, "position": {"line": 3, "character": 9}}));
    let labels: Vec<&str> = comp["result"].as_array().unwrap().iter().map(|i| i["label"].as_str().unwrap()).collect();
    for want in ["start", "welcome", "goto", "enqueue"] {
        assert!(labels.contains(&want), "{want} not offered: {labels:?}");
    }

    let bye = c.request("shutdown", json!(null));
    assert!(bye["error"].is_null());
    c.notify("exit", json!(null));
    assert!(child.wait().unwrap().success());
    let _ = std::fs::remove_dir_all(&dir);
}
