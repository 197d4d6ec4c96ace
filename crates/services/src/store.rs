//! Embedded storage in SQLite: accounts with salted password hashes, positions,
//! orders (exactly once per idempotency key), subscriptions, survey scores.
//! WAL journal with synchronous commits: an acknowledged order survives a crash.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

use crate::{Quote, Reply, ServiceError, Val};

/// Failed password attempts that lock an account, and the window they count in.
pub const LOCKOUT_FAILURES: i64 = 3;
pub const LOCKOUT_WINDOW_MS: i64 = 15 * 60 * 1000;
const PBKDF2_ROUNDS: u32 = 10_000;

/// Demo accounts created with a new database (documented in the README).
pub const DEMO_ACCOUNTS: &[(&str, &str, &str, &[(&str, i64)])] = &[
    ("88001234", "135790", "1000000.00", &[("600000", 10_000), ("000001", 5_000)]),
    ("88005678", "246810", "50000.00", &[("601398", 2_000)]),
];

pub struct Store {
    db: Connection,
}

/// An order as submitted by a flow.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub account: String,
    pub code: String,
    pub side: String,
    pub price: Decimal,
    pub shares: Decimal,
    pub key: String,
}

/// An order as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderRow {
    pub order_no: String,
    pub key: String,
    pub account: String,
    pub code: String,
    pub side: String,
    pub price: String,
    pub shares: i64,
    pub state: String,
    pub placed_ms: i64,
}

fn hash(password: &str, salt: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, PBKDF2_ROUNDS, &mut out);
    out
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The trading day (Beijing time) of a timestamp, as yyyymmdd.
pub(crate) fn trading_day(now_ms: i64) -> i64 {
    let tz = jiff::tz::TimeZone::get("Asia/Shanghai").unwrap_or(jiff::tz::TimeZone::UTC);
    let z = jiff::Timestamp::from_millisecond(now_ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH).to_zoned(tz);
    z.year() as i64 * 10_000 + z.month() as i64 * 100 + z.day() as i64
}

fn dec(s: &str) -> Decimal {
    s.parse().unwrap_or_default()
}

fn rejected(reason: &str) -> Result<Reply, ServiceError> {
    Ok(Reply::new("rejected").with("reason", Val::Text(reason.to_string())))
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, ServiceError> {
        let db = Connection::open(path)?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "FULL")?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS accounts (account TEXT PRIMARY KEY, salt BLOB NOT NULL, pw_hash BLOB NOT NULL, cash TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS positions (account TEXT NOT NULL, code TEXT NOT NULL, shares INTEGER NOT NULL, PRIMARY KEY (account, code));
             CREATE TABLE IF NOT EXISTS auth_failures (account TEXT NOT NULL, at_ms INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS orders (order_no TEXT PRIMARY KEY, idem_key TEXT NOT NULL UNIQUE, account TEXT NOT NULL,
                 code TEXT NOT NULL, side TEXT NOT NULL, price TEXT NOT NULL, shares INTEGER NOT NULL, state TEXT NOT NULL,
                 placed_ms INTEGER NOT NULL, day INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS subscriptions (caller TEXT NOT NULL, topic TEXT NOT NULL, channel TEXT NOT NULL,
                 since_ms INTEGER NOT NULL, PRIMARY KEY (caller, topic));
             CREATE TABLE IF NOT EXISTS survey (idem_key TEXT PRIMARY KEY, caller TEXT NOT NULL, score INTEGER NOT NULL, at_ms INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS messages (id TEXT PRIMARY KEY, caller TEXT NOT NULL, category TEXT NOT NULL,
                 at_ms INTEGER NOT NULL, duration_ms INTEGER NOT NULL, file TEXT NOT NULL);",
        )?;
        let mut store = Store { db };
        store.seed()?;
        Ok(store)
    }

    pub(crate) fn db(&self) -> &Connection {
        &self.db
    }

    fn seed(&mut self) -> Result<(), ServiceError> {
        let tx = self.db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let empty: i64 = tx.query_row("SELECT COUNT(*) FROM accounts", [], |r| r.get(0))?;
        if empty == 0 {
            for (account, password, cash, positions) in DEMO_ACCOUNTS {
                let salt: [u8; 16] = Sha256::digest(format!("ivr demo account {account}")).as_slice()[..16].try_into().unwrap();
                tx.execute(
                    "INSERT INTO accounts (account, salt, pw_hash, cash) VALUES (?1, ?2, ?3, ?4)",
                    params![account, &salt[..], &hash(password, &salt)[..], cash],
                )?;
                for (code, shares) in *positions {
                    tx.execute("INSERT INTO positions (account, code, shares) VALUES (?1, ?2, ?3)", params![account, code, shares])?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// `ok`, `denied` (wrong account or password: the caller is not told which),
    /// or `locked` after [`LOCKOUT_FAILURES`] failures within the window.
    pub fn authenticate(&mut self, account: &str, password: &str, now_ms: i64) -> Result<Reply, ServiceError> {
        let tx = self.db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let since = now_ms - LOCKOUT_WINDOW_MS;
        let failures: i64 =
            tx.query_row("SELECT COUNT(*) FROM auth_failures WHERE account = ?1 AND at_ms > ?2", params![account, since], |r| r.get(0))?;
        if failures >= LOCKOUT_FAILURES {
            return Ok(Reply::new("locked"));
        }
        let row: Option<(Vec<u8>, Vec<u8>)> = tx
            .query_row("SELECT salt, pw_hash FROM accounts WHERE account = ?1", params![account], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let ok = row.is_some_and(|(salt, stored)| same(&hash(password, &salt), &stored));
        let reply = if ok {
            tx.execute("DELETE FROM auth_failures WHERE account = ?1", params![account])?;
            Reply::new("ok")
        } else {
            tx.execute("INSERT INTO auth_failures (account, at_ms) VALUES (?1, ?2)", params![account, now_ms])?;
            Reply::new(if failures + 1 >= LOCKOUT_FAILURES { "locked" } else { "denied" })
        };
        tx.commit()?;
        Ok(reply)
    }

    /// Places an order once per idempotency key: a repeated key answers with the
    /// order already recorded. Checks the code, the tick (0.01), the daily price
    /// band (±10%, ±20% for ChiNext 30xxxx and STAR 68xxxx), lots of 100 for buys,
    /// cash for buys and position for sells. A marketable order fills at once.
    pub fn place_order(&mut self, o: &NewOrder, quote: Option<&Quote>, now_ms: i64) -> Result<Reply, ServiceError> {
        let tx = self.db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let existing: Option<String> =
            tx.query_row("SELECT order_no FROM orders WHERE idem_key = ?1", params![o.key], |r| r.get(0)).optional()?;
        if let Some(no) = existing {
            return Ok(Reply::new("ok").with("order_no", Val::Text(no)));
        }
        let cash: Option<String> =
            tx.query_row("SELECT cash FROM accounts WHERE account = ?1", params![o.account], |r| r.get(0)).optional()?;
        let Some(cash) = cash.map(|c| dec(&c)) else { return rejected("unknown account") };
        let Some(q) = quote else { return rejected("unknown stock code") };
        if o.side != "buy" && o.side != "sell" {
            return rejected("side must be buy or sell");
        }
        if o.price <= Decimal::ZERO || (o.price * Decimal::from(100)).fract() != Decimal::ZERO {
            return rejected("price must be positive, in steps of 0.01");
        }
        let band = if o.code.starts_with("30") || o.code.starts_with("68") { Decimal::new(20, 2) } else { Decimal::new(10, 2) };
        let up = (q.prev_close * (Decimal::ONE + band)).round_dp(2);
        let down = (q.prev_close * (Decimal::ONE - band)).round_dp(2);
        if o.price > up || o.price < down {
            return rejected("price outside the daily limit");
        }
        if o.shares <= Decimal::ZERO || o.shares.fract() != Decimal::ZERO || o.shares > Decimal::from(100_000_000) {
            return rejected("invalid quantity");
        }
        let shares = i64::try_from(o.shares.mantissa() / 10i128.pow(o.shares.scale())).unwrap_or(0);
        if o.side == "buy" && shares % 100 != 0 {
            return rejected("buy in lots of 100 shares");
        }
        let held: i64 = tx
            .query_row("SELECT shares FROM positions WHERE account = ?1 AND code = ?2", params![o.account, o.code], |r| r.get(0))
            .optional()?
            .unwrap_or(0);
        let amount = o.price * o.shares;
        let filled = if o.side == "buy" { o.price >= q.last } else { o.price <= q.last };
        match o.side.as_str() {
            "buy" => {
                if amount > cash {
                    return rejected("not enough cash");
                }
                tx.execute("UPDATE accounts SET cash = ?2 WHERE account = ?1", params![o.account, (cash - amount).to_string()])?;
                if filled {
                    tx.execute(
                        "INSERT INTO positions (account, code, shares) VALUES (?1, ?2, ?3)
                         ON CONFLICT (account, code) DO UPDATE SET shares = shares + ?3",
                        params![o.account, o.code, shares],
                    )?;
                }
            }
            _ => {
                if shares > held {
                    return rejected("not enough shares");
                }
                tx.execute("UPDATE positions SET shares = shares - ?3 WHERE account = ?1 AND code = ?2", params![o.account, o.code, shares])?;
                if filled {
                    tx.execute("UPDATE accounts SET cash = ?2 WHERE account = ?1", params![o.account, (cash + amount).to_string()])?;
                }
            }
        }
        let day = trading_day(now_ms);
        let seq: i64 = tx.query_row("SELECT COUNT(*) FROM orders WHERE day = ?1", params![day], |r| r.get(0))?;
        let order_no = format!("{day}{:06}", seq + 1);
        tx.execute(
            "INSERT INTO orders (order_no, idem_key, account, code, side, price, shares, state, placed_ms, day)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![order_no, o.key, o.account, o.code, o.side, o.price.to_string(), shares, if filled { "filled" } else { "pending" }, now_ms, day],
        )?;
        tx.commit()?;
        Ok(Reply::new("ok").with("order_no", Val::Text(order_no)))
    }

    /// Today's orders of an account: how many, and the latest one's number and state.
    pub fn order_status(&mut self, account: &str, now_ms: i64) -> Result<Reply, ServiceError> {
        let day = trading_day(now_ms);
        let count: i64 =
            self.db.query_row("SELECT COUNT(*) FROM orders WHERE account = ?1 AND day = ?2", params![account, day], |r| r.get(0))?;
        let last: Option<(String, String)> = self
            .db
            .query_row(
                "SELECT order_no, state FROM orders WHERE account = ?1 AND day = ?2 ORDER BY order_no DESC LIMIT 1",
                params![account, day],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let (no, state) = last.unwrap_or_default();
        Ok(Reply::new("ok")
            .with("count", Val::Num(count.into()))
            .with("last_order", Val::Text(no))
            .with("last_state", Val::Text(state)))
    }

    /// Cancels a pending order of this account and releases its cash or shares.
    pub fn cancel_order(&mut self, account: &str, order_no: &str) -> Result<Reply, ServiceError> {
        let tx = self.db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let row: Option<(String, String, String, i64)> = tx
            .query_row(
                "SELECT side, price, code, shares FROM orders WHERE order_no = ?1 AND account = ?2 AND state = 'pending'",
                params![order_no, account],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        let Some((side, price, code, shares)) = row else { return Ok(Reply::new("not_found")) };
        if side == "buy" {
            let cash: String = tx.query_row("SELECT cash FROM accounts WHERE account = ?1", params![account], |r| r.get(0))?;
            let refund = dec(&price) * Decimal::from(shares);
            tx.execute("UPDATE accounts SET cash = ?2 WHERE account = ?1", params![account, (dec(&cash) + refund).to_string()])?;
        } else {
            tx.execute("UPDATE positions SET shares = shares + ?3 WHERE account = ?1 AND code = ?2", params![account, code, shares])?;
        }
        tx.execute("UPDATE orders SET state = 'cancelled' WHERE order_no = ?1", params![order_no])?;
        tx.commit()?;
        Ok(Reply::new("ok"))
    }

    pub fn subscribe(&mut self, caller: &str, topic: &str, channel: &str, now_ms: i64) -> Result<Reply, ServiceError> {
        if !["sms", "email", "voice"].contains(&channel) {
            return Err(ServiceError::BadArgs(format!("unknown channel `{channel}`")));
        }
        self.db.execute(
            "INSERT INTO subscriptions (caller, topic, channel, since_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (caller, topic) DO UPDATE SET channel = ?3",
            params![caller, topic, channel, now_ms],
        )?;
        Ok(Reply::new("ok"))
    }

    pub fn unsubscribe_all(&mut self, caller: &str) -> Result<Reply, ServiceError> {
        let n = self.db.execute("DELETE FROM subscriptions WHERE caller = ?1", params![caller])?;
        Ok(Reply::new("ok").with("removed", Val::Num((n as i64).into())))
    }

    /// Subscriptions as (caller, topic, channel).
    pub fn subscriptions(&self) -> Result<Vec<(String, String, String)>, ServiceError> {
        let mut st = self.db.prepare("SELECT caller, topic, channel FROM subscriptions ORDER BY caller, topic")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn survey_score(&mut self, caller: &str, score: Decimal, key: &str, now_ms: i64) -> Result<Reply, ServiceError> {
        let s = i64::try_from(score.trunc().mantissa()).unwrap_or(0);
        if !(1..=5).contains(&s) {
            return Err(ServiceError::BadArgs(format!("a survey score is 1 to 5, not {score}")));
        }
        self.db.execute(
            "INSERT OR IGNORE INTO survey (idem_key, caller, score, at_ms) VALUES (?1, ?2, ?3, ?4)",
            params![key, caller, s, now_ms],
        )?;
        Ok(Reply::new("ok"))
    }

    /// Every order, oldest first.
    pub fn orders(&self) -> Result<Vec<OrderRow>, ServiceError> {
        let mut st = self.db.prepare(
            "SELECT order_no, idem_key, account, code, side, price, shares, state, placed_ms FROM orders ORDER BY placed_ms, order_no",
        )?;
        let rows = st.query_map([], |r| {
            Ok(OrderRow {
                order_no: r.get(0)?,
                key: r.get(1)?,
                account: r.get(2)?,
                code: r.get(3)?,
                side: r.get(4)?,
                price: r.get(5)?,
                shares: r.get(6)?,
                state: r.get(7)?,
                placed_ms: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
