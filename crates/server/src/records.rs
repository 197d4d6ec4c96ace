//! Call records: one JSON line per call, appended and synced to disk.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use ivr_bytecode::Program;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct CallRecord {
    pub call_id: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub dialed: String,
    pub caller: String,
    pub flow: String,
    /// A fingerprint of the program the call ran (calls keep the version they started with).
    pub flow_version: String,
    pub nodes: Vec<String>,
    /// Keys pressed; secret input is recorded as `*`.
    pub keys: String,
    pub outcome: Option<String>,
}

impl CallRecord {
    pub fn new(call_id: &str, dialed: &str, caller: &str, flow: &str, flow_version: &str) -> CallRecord {
        CallRecord {
            call_id: call_id.to_string(),
            start_ms: jiff::Timestamp::now().as_millisecond(),
            end_ms: 0,
            dialed: dialed.to_string(),
            caller: caller.to_string(),
            flow: flow.to_string(),
            flow_version: flow_version.to_string(),
            nodes: Vec::new(),
            keys: String::new(),
            outcome: None,
        }
    }

    pub fn key(&mut self, key: char, secret: bool) {
        self.keys.push(if secret { '*' } else { key });
    }

    pub fn end(&mut self) {
        self.end_ms = jiff::Timestamp::now().as_millisecond();
    }
}

/// Appends call records on a thread of its own: each batch of records that
/// arrive together is written and synced once, so a burst of hang-ups never
/// waits on one fsync per call in the signalling loop.
/// A fingerprint of a compiled flow (FNV-1a of its stripped encoding), computed
/// once per flow when it is loaded.
pub fn fingerprint(program: &Program) -> String {
    let bytes = ivr_bytecode::encode(program, true);
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3));
    format!("{hash:016x}")
}

pub struct Writer {
    tx: std::sync::mpsc::Sender<CallRecord>,
    thread: std::thread::JoinHandle<()>,
}

impl Writer {
    pub fn open(dir: &Path) -> std::io::Result<Writer> {
        std::fs::create_dir_all(dir)?;
        let mut file = OpenOptions::new().create(true).append(true).open(dir.join("calls.jsonl"))?;
        let (tx, rx) = std::sync::mpsc::channel::<CallRecord>();
        let thread = std::thread::Builder::new().name("call-records".into()).spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut batch = vec![first];
                batch.extend(rx.try_iter());
                let mut bytes = Vec::new();
                for r in &batch {
                    if let Ok(mut line) = serde_json::to_vec(r) {
                        line.push(b'\n');
                        bytes.extend_from_slice(&line);
                    }
                }
                let written = file.write_all(&bytes).and_then(|_| file.sync_data());
                if let Err(e) = written {
                    tracing::warn!(records = batch.len(), "cannot write call records: {e}");
                }
            }
        })?;
        Ok(Writer { tx, thread })
    }

    /// Writes what is queued and stops.
    pub fn close(self) {
        drop(self.tx);
        let _ = self.thread.join();
    }

    pub fn append(&mut self, r: &CallRecord) -> std::io::Result<()> {
        self.tx.send(r.clone()).map_err(|_| std::io::Error::other("the call record writer has stopped"))
    }
}
