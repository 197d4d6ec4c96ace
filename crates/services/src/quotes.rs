//! Quotes from a CSV file, re-read whenever the file changes (no restart).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use rust_decimal::Decimal;

use crate::ServiceError;

#[derive(Debug, Clone, PartialEq)]
pub struct Quote {
    pub code: String,
    pub name: String,
    pub last: Decimal,
    pub prev_close: Decimal,
    pub high: Decimal,
    pub low: Decimal,
    pub volume: u64,
    pub time: String,
}

pub struct QuoteBook {
    path: PathBuf,
    cache: Mutex<Option<(SystemTime, u64, Vec<Quote>)>>,
}

/// Parses `code,name,last,prev_close,high,low,volume,time` lines after a header.
pub fn parse_csv(text: &str) -> Result<Vec<Quote>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        let bad = |what: &str| format!("line {}: {what}", i + 1);
        if f.len() != 8 {
            return Err(bad("expected 8 fields: code,name,last,prev_close,high,low,volume,time"));
        }
        if f[0].len() != 6 || !f[0].bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("the code must be 6 digits"));
        }
        let num = |s: &str, what: &str| s.parse::<Decimal>().map_err(|_| bad(&format!("{what} is not a number")));
        out.push(Quote {
            code: f[0].to_string(),
            name: f[1].to_string(),
            last: num(f[2], "last")?,
            prev_close: num(f[3], "prev_close")?,
            high: num(f[4], "high")?,
            low: num(f[5], "low")?,
            volume: f[6].parse().map_err(|_| bad("volume is not a whole number"))?,
            time: f[7].to_string(),
        });
    }
    Ok(out)
}

impl QuoteBook {
    pub fn new(path: &Path) -> QuoteBook {
        QuoteBook { path: path.to_path_buf(), cache: Mutex::new(None) }
    }

    /// The quote for `code`, reading the file again if it changed since last time.
    /// A file that cannot be read or parsed is an error (the flow's `failed`).
    pub fn get(&self, code: &str) -> Result<Option<Quote>, ServiceError> {
        let meta = std::fs::metadata(&self.path).map_err(|e| ServiceError::Quotes(format!("{}: {e}", self.path.display())))?;
        let stamp = (meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), meta.len());
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = matches!(&*cache, Some((t, n, _)) if (*t, *n) == stamp);
        if !fresh {
            let text = std::fs::read_to_string(&self.path).map_err(|e| ServiceError::Quotes(format!("{}: {e}", self.path.display())))?;
            let quotes = parse_csv(&text).map_err(|e| ServiceError::Quotes(format!("{}: {e}", self.path.display())))?;
            *cache = Some((stamp.0, stamp.1, quotes));
        }
        Ok(cache.as_ref().and_then(|(_, _, qs)| qs.iter().find(|q| q.code == code).cloned()))
    }
}
