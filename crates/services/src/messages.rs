//! The message box (客户留言信箱): capturing a caller's message and storing it.
//!
//! [`Recorder`] decides when a recording ends — `#`, trailing silence, or the
//! maximum length — from the audio and keys a host feeds it (sans-IO, the
//! host's clock is the audio itself). [`Store::save_message`] writes the WAV
//! durably (temporary file, fsync, rename) and only then indexes it, so a full
//! disk or a write error leaves nothing half-written in the index.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use rusqlite::params;

use crate::{ServiceError, Store};

pub use ivr_media::record::{RecordEnd, Recorder};

/// A stored message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub id: String,
    pub caller: String,
    pub category: String,
    pub at_ms: i64,
    pub duration_ms: i64,
    /// Relative to the data directory.
    pub file: String,
}

/// 16-bit mono PCM as a WAV file.
pub fn wav_bytes(pcm: &[i16], rate_hz: u32) -> Vec<u8> {
    let data_len = (pcm.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + data_len as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&rate_hz.to_le_bytes());
    out.extend_from_slice(&(rate_hz * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in pcm {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

fn write_durably(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        let path = dir.join(name);
        std::fs::rename(&tmp, &path)?;
        File::open(dir)?.sync_all()?;
        Ok(path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

impl Store {
    /// Saves a message under `data_dir/messages/YYYYMMDD/ID.wav` and indexes it.
    /// The index row is written only after the file is safely on disk.
    pub fn save_message(&mut self, data_dir: &Path, caller: &str, category: &str, pcm: &[i16], rate_hz: u32, now_ms: i64, key: &str) -> Result<Message, ServiceError> {
        if let Some(m) = self.messages()?.into_iter().find(|m| m.id == key_id(key)) {
            return Ok(m); // the same recording saved again (a retry): once only
        }
        let day = crate::store::trading_day(now_ms);
        let id = key_id(key);
        let rel = format!("messages/{day}/{id}.wav");
        write_durably(&data_dir.join(format!("messages/{day}")), &format!("{id}.wav"), &wav_bytes(pcm, rate_hz))
            ?;
        let duration_ms = (pcm.len() as i64 * 1000) / rate_hz.max(1) as i64;
        self.db().execute(
            "INSERT INTO messages (id, caller, category, at_ms, duration_ms, file) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![id, caller, category, now_ms, duration_ms, rel],
        )?;
        Ok(Message { id, caller: caller.into(), category: category.into(), at_ms: now_ms, duration_ms, file: rel })
    }

    /// Every message, oldest first.
    pub fn messages(&self) -> Result<Vec<Message>, ServiceError> {
        let mut st = self.db().prepare("SELECT id, caller, category, at_ms, duration_ms, file FROM messages ORDER BY at_ms, id")?;
        let rows = st.query_map([], |r| {
            Ok(Message { id: r.get(0)?, caller: r.get(1)?, category: r.get(2)?, at_ms: r.get(3)?, duration_ms: r.get(4)?, file: r.get(5)? })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// A file-name-safe id from an idempotency key.
fn key_id(key: &str) -> String {
    key.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect()
}
