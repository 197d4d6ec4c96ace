//! The services behind the flows, as flows call them: by name, with named
//! arguments, answering with a named outcome and its fields.
//!
//! This crate knows nothing of the flow language or of telephony: a host (the
//! simulator, the server) turns a flow's request into a [`Request`] and the
//! [`Reply`] back into the flow's outcome. The embedded backend ([`Embedded`])
//! needs nothing external: quotes come from a CSV file that is re-read when it
//! changes, and accounts, orders, subscriptions and survey scores live in SQLite
//! (WAL, synchronous commits). Every order carries an idempotency key, so a
//! retried or replayed submission is recorded exactly once.

mod http;
mod messages;
mod quotes;
mod store;

use std::path::Path;
use std::sync::Mutex;

pub use http::{Http, HttpService};
pub use messages::{wav_bytes, Message, RecordEnd, Recorder};
pub use quotes::{Quote, QuoteBook};
pub use rust_decimal::Decimal;
pub use store::{OrderRow, Store};

/// A value passed to or returned by a service.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Text(String),
    Num(Decimal),
    Bool(bool),
}

impl Val {
    pub fn text(&self) -> Option<&str> {
        match self {
            Val::Text(s) => Some(s),
            _ => None,
        }
    }

    pub fn num(&self) -> Option<Decimal> {
        match self {
            Val::Num(n) => Some(*n),
            Val::Text(s) => s.parse().ok(),
            Val::Bool(_) => None,
        }
    }
}

/// One call of a service.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub service: &'a str,
    pub args: &'a [(String, Val)],
    /// Identifies this submission: the same key means the same order (call id +
    /// operation number on a live call).
    pub key: &'a str,
    /// Wall-clock time of the request, Unix milliseconds (for order dates and
    /// lockout windows; the services never read a clock themselves).
    pub now_ms: i64,
}

impl Request<'_> {
    fn arg(&self, name: &str) -> Result<&Val, ServiceError> {
        self.args
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .ok_or_else(|| ServiceError::BadArgs(format!("{} needs `{name}`", self.service)))
    }

    fn text(&self, name: &str) -> Result<&str, ServiceError> {
        self.arg(name)?.text().ok_or_else(|| ServiceError::BadArgs(format!("`{name}` must be text")))
    }

    fn num(&self, name: &str) -> Result<Decimal, ServiceError> {
        self.arg(name)?.num().ok_or_else(|| ServiceError::BadArgs(format!("`{name}` must be a number")))
    }
}

/// A service's answer: an outcome the flow declared, with its fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub outcome: String,
    pub fields: Vec<(String, Val)>,
}

impl Reply {
    pub fn new(outcome: &str) -> Reply {
        Reply { outcome: outcome.to_string(), fields: Vec::new() }
    }

    pub fn with(mut self, name: &str, v: Val) -> Reply {
        self.fields.push((name.to_string(), v));
        self
    }
}

/// Why a service could not answer (the flow takes its `failed` branch).
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("no embedded service named `{0}`")]
    Unknown(String),
    #[error("bad arguments: {0}")]
    BadArgs(String),
    #[error("storage error: {0}")]
    Storage(#[from] rusqlite::Error),
    #[error("quotes file: {0}")]
    Quotes(String),
    #[error("HTTP backend: {0}")]
    Http(String),
    #[error("cannot write the recording: {0}")]
    Write(#[from] std::io::Error),
}

/// Something that answers service requests.
pub trait Backend: Send + Sync {
    /// Whether this backend provides `service`.
    fn provides(&self, service: &str) -> bool;
    fn call(&self, req: &Request) -> Result<Reply, ServiceError>;
}

/// Several backends in order of preference: each request goes to the first
/// that provides its service (HTTP backends configured per service, then the
/// embedded one).
pub struct Router {
    backends: Vec<std::sync::Arc<dyn Backend>>,
}

impl Router {
    pub fn new(backends: Vec<std::sync::Arc<dyn Backend>>) -> Router {
        Router { backends }
    }
}

impl Backend for Router {
    fn provides(&self, service: &str) -> bool {
        self.backends.iter().any(|b| b.provides(service))
    }

    fn call(&self, req: &Request) -> Result<Reply, ServiceError> {
        match self.backends.iter().find(|b| b.provides(req.service)) {
            Some(b) => b.call(req),
            None => Err(ServiceError::Unknown(req.service.to_string())),
        }
    }
}

/// The embedded backend: quotes from a CSV file, everything else in SQLite.
pub struct Embedded {
    quotes: QuoteBook,
    store: Mutex<Store>,
}

/// The services the embedded backend answers.
pub const EMBEDDED_SERVICES: &[&str] = &[
    "quote",
    "authenticate",
    "place_order",
    "order_status",
    "cancel_order",
    "subscribe",
    "unsubscribe_all",
    "survey_score",
];

impl Embedded {
    /// Opens (creating if needed, with demo accounts) `data_dir/ivr.db` and reads
    /// quotes from `quotes_csv`.
    pub fn open(data_dir: &Path, quotes_csv: &Path) -> Result<Embedded, ServiceError> {
        std::fs::create_dir_all(data_dir).map_err(|e| ServiceError::BadArgs(format!("{}: {e}", data_dir.display())))?;
        let store = Store::open(&data_dir.join("ivr.db"))?;
        // The quotes file is read on first use (and again whenever it changes): a
        // missing or broken file makes quote requests fail, not the host.
        Ok(Embedded { quotes: QuoteBook::new(quotes_csv), store: Mutex::new(store) })
    }

    pub fn quotes(&self) -> &QuoteBook {
        &self.quotes
    }

    pub fn with_store<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        let mut guard = self.store.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }
}

impl Backend for Embedded {
    fn provides(&self, service: &str) -> bool {
        EMBEDDED_SERVICES.contains(&service)
    }

    fn call(&self, req: &Request) -> Result<Reply, ServiceError> {
        match req.service {
            "quote" => Ok(match self.quotes.get(req.text("code")?)? {
                Some(q) => Reply::new("ok")
                    .with("name", Val::Text(q.name))
                    .with("last", Val::Num(q.last))
                    .with("prev_close", Val::Num(q.prev_close))
                    .with("high", Val::Num(q.high))
                    .with("low", Val::Num(q.low)),
                None => Reply::new("not_found"),
            }),
            "authenticate" => {
                let (account, password) = (req.text("account")?, req.text("password")?);
                self.with_store(|s| s.authenticate(account, password, req.now_ms))
            }
            "place_order" => {
                let order = store::NewOrder {
                    account: req.text("account")?.to_string(),
                    code: req.text("code")?.to_string(),
                    side: req.text("side")?.to_string(),
                    price: req.num("price")?,
                    shares: req.num("shares")?,
                    key: req.key.to_string(),
                };
                let quote = self.quotes.get(&order.code)?;
                self.with_store(|s| s.place_order(&order, quote.as_ref(), req.now_ms))
            }
            "order_status" => {
                let account = req.text("account")?;
                self.with_store(|s| s.order_status(account, req.now_ms))
            }
            "cancel_order" => {
                let (account, no) = (req.text("account")?, req.text("order_no")?);
                self.with_store(|s| s.cancel_order(account, no))
            }
            "subscribe" => {
                let (caller, topic, channel) = (req.text("caller")?, req.text("topic")?, req.text("channel")?);
                self.with_store(|s| s.subscribe(caller, topic, channel, req.now_ms))
            }
            "unsubscribe_all" => {
                let caller = req.text("caller")?;
                self.with_store(|s| s.unsubscribe_all(caller))
            }
            "survey_score" => {
                let (caller, score) = (req.text("caller")?, req.num("score")?);
                self.with_store(|s| s.survey_score(caller, score, req.key, req.now_ms))
            }
            other => Err(ServiceError::Unknown(other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests;
