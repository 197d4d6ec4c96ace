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
    /// Queues joined and agents dialled, with what came of each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub handoffs: Vec<Handoff>,
    /// The survey score the caller gave (a service argument named `score`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub survey_score: Option<String>,
}

/// One `enqueue` or `dial agent` of a call.
#[derive(Debug, Clone, Serialize)]
pub struct Handoff {
    /// `queue` or `agent`.
    pub kind: &'static str,
    /// The queue's name or the work number dialled.
    pub target: String,
    pub priority: i64,
    /// The flow's outcome (`served`, `timeout`, …; `abandoned` when the caller hung up).
    pub outcome: String,
    pub waited_ms: u64,
    /// Who answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    pub talk_ms: u64,
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
            handoffs: Vec::new(),
            survey_score: None,
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

/// The record files, each one JSON object per line in the data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Log {
    /// `calls.jsonl`: one [`CallRecord`] per call.
    Calls = 0,
    /// `queue.jsonl`: one ACD record per queued or direct-dialled call (wait,
    /// answer or abandon, agent, talk, wrap-up).
    Queue = 1,
    /// `agents.jsonl`: one record per agent state, with its duration.
    Agents = 2,
}

const LOG_FILES: [&str; 3] = ["calls.jsonl", "queue.jsonl", "agents.jsonl"];

pub struct Writer {
    tx: std::sync::mpsc::Sender<(Log, Vec<u8>)>,
    thread: std::thread::JoinHandle<()>,
}

impl Writer {
    pub fn open(dir: &Path) -> std::io::Result<Writer> {
        std::fs::create_dir_all(dir)?;
        let mut files = Vec::new();
        for name in LOG_FILES {
            files.push(OpenOptions::new().create(true).append(true).open(dir.join(name))?);
        }
        let (tx, rx) = std::sync::mpsc::channel::<(Log, Vec<u8>)>();
        let thread = std::thread::Builder::new().name("call-records".into()).spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut bytes: [Vec<u8>; 3] = Default::default();
                for (log, line) in std::iter::once(first).chain(rx.try_iter()) {
                    bytes[log as usize].extend_from_slice(&line);
                }
                for (file, bytes) in files.iter_mut().zip(&bytes) {
                    if bytes.is_empty() {
                        continue;
                    }
                    if let Err(e) = file.write_all(bytes).and_then(|_| file.sync_data()) {
                        tracing::warn!("cannot write records: {e}");
                    }
                }
            }
        })?;
        Ok(Writer { tx, thread })
    }

    /// Queues one record for `log`.
    pub fn write(&mut self, log: Log, record: &impl Serialize) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.tx.send((log, line)).map_err(|_| std::io::Error::other("the record writer has stopped"))
    }

    /// Writes what is queued and stops.
    pub fn close(self) {
        drop(self.tx);
        let _ = self.thread.join();
    }

    pub fn append(&mut self, r: &CallRecord) -> std::io::Result<()> {
        self.write(Log::Calls, r)
    }
}
