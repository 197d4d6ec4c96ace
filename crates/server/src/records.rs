//! Call records: one JSON line per call, appended and synced to disk.

use std::fs::{File, OpenOptions};
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
    pub fn new(call_id: &str, dialed: &str, caller: &str, flow: &str, program: &Program) -> CallRecord {
        let bytes = ivr_bytecode::encode(program, true);
        let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3));
        CallRecord {
            call_id: call_id.to_string(),
            start_ms: jiff::Timestamp::now().as_millisecond(),
            end_ms: 0,
            dialed: dialed.to_string(),
            caller: caller.to_string(),
            flow: flow.to_string(),
            flow_version: format!("{hash:016x}"),
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

pub struct Writer {
    file: File,
}

impl Writer {
    pub fn open(dir: &Path) -> std::io::Result<Writer> {
        std::fs::create_dir_all(dir)?;
        let file = OpenOptions::new().create(true).append(true).open(dir.join("calls.jsonl"))?;
        Ok(Writer { file })
    }

    pub fn append(&mut self, r: &CallRecord) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(r).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.file.sync_data()
    }
}
