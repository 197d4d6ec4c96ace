//! The record files' writer: lines the call core produces, appended and
//! synced on a thread of its own, so a burst of hang-ups never waits on one
//! fsync per call in the signalling loop. On opening, `calls.jsonl` is
//! recovered from a crash (see [`ivr_call::records::recover`]): a torn last
//! line is never appended to, and calls it left open are closed as ended by
//! the crash.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use ivr_call::records::{self, Log};

/// How much of the end of `calls.jsonl` is read for calls left open: far
/// more than the records of every call a node can have in progress.
const RECOVERY_TAIL_BYTES: u64 = 64 << 20;

pub struct Writer {
    tx: std::sync::mpsc::Sender<(Log, Vec<u8>)>,
    thread: std::thread::JoinHandle<()>,
    health: Arc<Health>,
    /// Calls a crash had left open, closed when this writer opened.
    recovered: u64,
}

/// How the writer is doing, shared with its thread.
#[derive(Default)]
struct Health {
    /// Lines queued and not yet written.
    backlog: AtomicU64,
    write_errors: AtomicU64,
    /// The last write failed (storage full, read-only, gone).
    failing: AtomicBool,
}

/// The writer's state for readiness and metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct Status {
    pub backlog_lines: u64,
    pub write_errors: u64,
    /// Whether the last write reached the disk (true before the first).
    pub writable: bool,
    pub recovered_calls: u64,
}

impl Writer {
    pub fn open(dir: &Path) -> std::io::Result<Writer> {
        std::fs::create_dir_all(dir)?;
        let mut files = Vec::new();
        let mut recovered = 0;
        for log in Log::ALL {
            let path = dir.join(log.file_name());
            let mut file = OpenOptions::new().create(true).read(true).append(true).open(&path)?;
            if log == Log::Calls {
                recovered = recover(&mut file)?;
            } else if ends_torn(&mut file)? {
                file.write_all(b"\n")?;
            }
            files.push(file);
        }
        let (tx, rx) = std::sync::mpsc::channel::<(Log, Vec<u8>)>();
        let health = Arc::new(Health::default());
        let shared = health.clone();
        let thread = std::thread::Builder::new().name("call-records".into()).spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut bytes: [Vec<u8>; 3] = Default::default();
                let mut lines = 0;
                for (log, line) in std::iter::once(first).chain(rx.try_iter()) {
                    bytes[log as usize].extend_from_slice(&line);
                    lines += 1;
                }
                let mut failed = false;
                for (file, bytes) in files.iter_mut().zip(&bytes) {
                    if bytes.is_empty() {
                        continue;
                    }
                    if let Err(e) = file.write_all(bytes).and_then(|_| file.sync_data()) {
                        tracing::warn!("cannot write records: {e}");
                        shared.write_errors.fetch_add(1, Ordering::Relaxed);
                        failed = true;
                    }
                }
                shared.failing.store(failed, Ordering::Relaxed);
                shared.backlog.fetch_sub(lines, Ordering::Relaxed);
            }
        })?;
        Ok(Writer { tx, thread, health, recovered })
    }

    /// Queues one line (JSON, newline-terminated) for `log`.
    pub fn write(&mut self, log: Log, line: Vec<u8>) {
        self.health.backlog.fetch_add(1, Ordering::Relaxed);
        if self.tx.send((log, line)).is_err() {
            self.health.backlog.fetch_sub(1, Ordering::Relaxed);
            self.health.failing.store(true, Ordering::Relaxed);
            tracing::warn!("the record writer has stopped");
        }
    }

    pub fn status(&self) -> Status {
        let h = &self.health;
        Status {
            backlog_lines: h.backlog.load(Ordering::Relaxed),
            write_errors: h.write_errors.load(Ordering::Relaxed),
            writable: !h.failing.load(Ordering::Relaxed) && !self.thread.is_finished(),
            recovered_calls: self.recovered,
        }
    }

    /// Writes what is queued and stops.
    pub fn close(self) {
        drop(self.tx);
        let _ = self.thread.join();
    }
}

fn ends_torn(file: &mut File) -> std::io::Result<bool> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(false);
    }
    file.seek(SeekFrom::Start(len - 1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

/// Closes the calls a crash left open and starts a fresh line after a torn
/// one; returns how many calls it closed.
fn recover(file: &mut File) -> std::io::Result<u64> {
    let len = file.metadata()?.len();
    let from = len.saturating_sub(RECOVERY_TAIL_BYTES);
    file.seek(SeekFrom::Start(from))?;
    let mut tail = Vec::new();
    file.take(RECOVERY_TAIL_BYTES).read_to_end(&mut tail)?;
    let found = records::recover(&tail, from == 0);
    let mut out = Vec::new();
    if found.torn {
        out.push(b'\n');
    }
    for r in &found.closing {
        tracing::warn!(call_id = %r.call_id, "the call was in progress when the server stopped; its record is closed as {}", records::CRASHED);
        out.extend(serde_json::to_vec(r).map_err(std::io::Error::other)?);
        out.push(b'\n');
    }
    if !out.is_empty() {
        file.write_all(&out)?;
        file.sync_data()?;
    }
    Ok(found.closing.len() as u64)
}
