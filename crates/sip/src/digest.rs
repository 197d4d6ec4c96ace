//! HTTP digest authentication for SIP (RFC 3261 §22, RFC 7616 with MD5, the
//! algorithm SIP phones send): challenges, checking an `Authorization` header
//! against a password, nonces that cannot be replayed ([`Nonces`]) and the
//! lockout of password guessing ([`AuthGuard`]). Nothing here logs or keeps a
//! password. Sans-IO: time is the host's `now`, in milliseconds.
//!
//! # Authenticating a REGISTER
//!
//! A digest answer proves the password only for the nonce it was computed
//! with; a nonce that any source may use, as often as it likes, lets whoever
//! captured one REGISTER (a NAT neighbour, a mirror port) register that phone
//! again — somewhere else. So the registrar keeps one [`Nonces`] and one
//! [`AuthGuard`], and for each REGISTER:
//!
//! 1. [`AuthGuard::check`] the source and the To user: blocked → 403.
//! 2. No Digest credentials → 401 with [`Nonces::challenge`] (a nonce bound
//!    to this source IP, short-lived).
//! 3. [`Nonces::verify`] with the password of the account being registered
//!    (the To user) — `None` when the credentials' username is not that
//!    account, or there is no such account: both fail like a wrong password,
//!    so accounts cannot be told apart — and answer its [`Verdict`]:
//!    `Ok` → [`AuthGuard::success`], register; `Wrong` → 403 and
//!    [`AuthGuard::failure`]; `Stale` → 401 with a new challenge and
//!    `stale=true` (the phone retries by itself); `Replay`, `WrongSource`,
//!    `Unknown` → 401 with a new challenge (nothing was learnt of the
//!    password, so nothing is counted).
//!
//! Only `Wrong` counts as a failure, and it needs a live nonce issued to the
//! request's source: a forged UDP source never receives one, so it cannot get
//! anyone blocked.
//!
//! ```
//! use std::net::IpAddr;
//! use ivr_sip::digest::{self, AuthGuard, GuardPolicy, Nonces, Verdict};
//!
//! let mut nonces = Nonces::new("ivr", "server secret", 30_000, 4_096);
//! let mut guard = AuthGuard::new(GuardPolicy::default());
//! let phone: IpAddr = "192.0.2.7".parse().unwrap();
//! // The REGISTER of agent 1001, first without credentials: challenged.
//! assert!(guard.check(0, phone, "1001").is_ok());
//! let challenge = nonces.challenge(0, phone, false);
//! let nonce = challenge.split("nonce=\"").nth(1).unwrap().split('"').next().unwrap();
//! // Again with them: accepted once, its replay refused.
//! let auth = digest::authorization("1001", "ivr", "pw", "REGISTER", "sip:ivr", nonce, "c1");
//! let creds = digest::parse(&auth).unwrap();
//! assert_eq!(nonces.verify(100, phone, &creds, "REGISTER", Some("pw")), Verdict::Ok);
//! guard.success(100, phone, "1001");
//! assert_eq!(nonces.verify(200, phone, &creds, "REGISTER", Some("pw")), Verdict::Replay);
//! ```

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use md5::{Digest, Md5};

use crate::endpoint::Millis;

fn md5_hex(parts: &[&str]) -> String {
    let mut h = Md5::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update(b":");
        }
        h.update(p.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A nonce that carries its own issue time, signed with `secret`: no server
/// state, and it expires — but until then anyone may use it, any number of
/// times (replay); [`Nonces`] is what a registrar should use.
pub fn nonce(secret: &str, now_ms: u64) -> String {
    format!("{now_ms:x}.{}", &md5_hex(&[secret, &format!("{now_ms:x}")])[..16])
}

/// Whether `nonce` is one of ours and younger than `max_age_ms`.
pub fn nonce_fresh(secret: &str, nonce: &str, now_ms: u64, max_age_ms: u64) -> bool {
    let Some((ts, _)) = nonce.split_once('.') else { return false };
    let Ok(issued) = u64::from_str_radix(ts, 16) else { return false };
    self::nonce(secret, issued) == nonce && issued <= now_ms && now_ms - issued <= max_age_ms
}

/// The `WWW-Authenticate` value of a challenge.
pub fn challenge(realm: &str, nonce: &str, stale: bool) -> String {
    let stale = if stale { ", stale=true" } else { "" };
    format!("Digest realm=\"{realm}\", nonce=\"{nonce}\", algorithm=MD5, qop=\"auth\"{stale}")
}

/// The fields of an `Authorization: Digest …` header.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    response: String,
    pub qop: Option<String>,
    pub nc: Option<String>,
    pub cnonce: Option<String>,
    pub algorithm: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The response is derived from the password: never printed.
        f.debug_struct("Credentials").field("username", &self.username).field("realm", &self.realm).finish_non_exhaustive()
    }
}

/// Parses `Digest username="…", realm="…", …`; `None` for other schemes or
/// when a required field is missing.
pub fn parse(header: &str) -> Option<Credentials> {
    let rest = header.trim();
    let (scheme, params) = rest.split_once(char::is_whitespace)?;
    if !scheme.eq_ignore_ascii_case("digest") {
        return None;
    }
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut chars = params.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let name: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ',')).collect();
        if name.trim().is_empty() {
            break;
        }
        if chars.next() != Some('=') {
            return None;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let value = if chars.peek() == Some(&'"') {
            chars.next();
            let mut v = String::new();
            loop {
                match chars.next()? {
                    '\\' => v.push(chars.next()?),
                    '"' => break,
                    c => v.push(c),
                }
            }
            v
        } else {
            std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect::<String>().trim().to_string()
        };
        fields.push((name.trim().to_ascii_lowercase(), value));
    }
    let get = |n: &str| fields.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    Some(Credentials {
        username: get("username")?,
        realm: get("realm")?,
        nonce: get("nonce")?,
        uri: get("uri")?,
        response: get("response")?,
        qop: get("qop"),
        nc: get("nc"),
        cnonce: get("cnonce"),
        algorithm: get("algorithm"),
    })
}

impl Credentials {
    /// Whether the response proves knowledge of `password` for `method`.
    pub fn verify(&self, method: &str, password: &str) -> bool {
        if self.algorithm.as_deref().is_some_and(|a| !a.eq_ignore_ascii_case("md5")) {
            return false;
        }
        let ha1 = md5_hex(&[&self.username, &self.realm, password]);
        let ha2 = md5_hex(&[method, &self.uri]);
        let expected = match (&self.qop, &self.nc, &self.cnonce) {
            (Some(q), Some(nc), Some(cn)) if q.eq_ignore_ascii_case("auth") => md5_hex(&[&ha1, &self.nonce, nc, cn, q, &ha2]),
            (None, _, _) => md5_hex(&[&ha1, &self.nonce, &ha2]),
            _ => return false,
        };
        // Constant-time comparison: the response must not leak by timing.
        expected.len() == self.response.len() && expected.bytes().zip(self.response.to_ascii_lowercase().bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

/// [`authorization`] with the nonce count `nc` (for tests and tools).
#[allow(clippy::too_many_arguments)]
pub fn authorization_nc(username: &str, realm: &str, password: &str, method: &str, uri: &str, nonce: &str, cnonce: &str, nc: u32) -> String {
    let nc = format!("{nc:08x}");
    let ha1 = md5_hex(&[username, realm, password]);
    let ha2 = md5_hex(&[method, uri]);
    let response = md5_hex(&[&ha1, nonce, &nc, cnonce, "auth", &ha2]);
    format!("Digest username=\"{username}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm=MD5, qop=auth, nc={nc}, cnonce=\"{cnonce}\"")
}

/// The `Authorization` value a phone would send (for tests and tools).
pub fn authorization(username: &str, realm: &str, password: &str, method: &str, uri: &str, nonce: &str, cnonce: &str) -> String {
    let ha1 = md5_hex(&[username, realm, password]);
    let ha2 = md5_hex(&[method, uri]);
    let response = md5_hex(&[&ha1, nonce, "00000001", cnonce, "auth", &ha2]);
    format!("Digest username=\"{username}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"{cnonce}\"")
}

// ---------------------------------------------------------------- nonces

/// What [`Nonces::verify`] made of a request's credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The password is proven, on a live nonce of this source, with a nonce
    /// count never used before: authenticated.
    Ok,
    /// A live nonce of this source, but the answer does not prove the
    /// password (a wrong one, no such account, another realm, a malformed
    /// nonce count): a failed login — count it ([`AuthGuard::failure`]). The
    /// nonce is spent: each guess costs a new challenge.
    Wrong,
    /// One of our nonces for this source, but expired (or forgotten to make
    /// room): challenge again with `stale=true`, and the phone retries without
    /// asking anyone for the password (RFC 7616 §3.3). The password was not
    /// checked.
    Stale,
    /// A nonce count not above the highest already accepted with this nonce
    /// (or a second use of a nonce without `qop`): the request was captured
    /// and sent again. Challenge again; not a password failure.
    Replay,
    /// A live nonce that was given to another source address.
    WrongSource,
    /// Not a nonce of ours: forged, for another realm, or from before a
    /// restart (a new secret).
    Unknown,
}

#[derive(Debug)]
struct Issued {
    source: IpAddr,
    at: Millis,
    /// The highest nonce count accepted so far (0: none yet).
    nc: u32,
}

/// Nonces that cannot be replayed: each is bound to the source IP it was
/// issued to and to the realm, lives `lifetime_ms`, and remembers the highest
/// nonce count (`nc`, RFC 7616 §3.4) accepted with it, so an `Authorization`
/// sent again — by the phone's NAT neighbour, or anyone who saw it — is
/// refused. Sans-IO and bounded: at most `capacity` nonces are outstanding;
/// issuing more forgets the oldest (its phone is then told `stale` and simply
/// asks again).
///
/// A nonce also carries its issue time and a MAC of (secret, realm, source,
/// time), so one that has expired or been forgotten is still recognised as
/// ours and answered `stale=true` rather than as an unknown nonce.
pub struct Nonces {
    realm: String,
    secret: String,
    lifetime_ms: Millis,
    capacity: usize,
    seq: u64,
    issued: HashMap<String, Issued>,
    /// Issue order, for expiry and eviction (may name nonces already gone).
    order: VecDeque<String>,
}

impl std::fmt::Debug for Nonces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret would let anyone make nonces of ours: never printed.
        f.debug_struct("Nonces").field("realm", &self.realm).field("lifetime_ms", &self.lifetime_ms).field("outstanding", &self.issued.len()).finish_non_exhaustive()
    }
}

impl Nonces {
    /// `secret`: unpredictable, the host's (a new one on each start is fine:
    /// older nonces are then `Unknown` and the phones are challenged again).
    /// `lifetime_ms`: how long a nonce is good for (tens of seconds is enough:
    /// a phone answers a challenge at once, and asks for a new one each time).
    pub fn new(realm: &str, secret: &str, lifetime_ms: Millis, capacity: usize) -> Nonces {
        Nonces {
            realm: realm.to_string(),
            secret: secret.to_string(),
            lifetime_ms,
            capacity: capacity.max(1),
            seq: 0,
            issued: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// Nonces outstanding (at most the capacity).
    pub fn len(&self) -> usize {
        self.issued.len()
    }

    pub fn is_empty(&self) -> bool {
        self.issued.is_empty()
    }

    fn mac(&self, source: IpAddr, at: &str, seq: &str) -> String {
        md5_hex(&[&self.secret, &self.realm, &source.to_string(), at, seq])
    }

    /// A new nonce for a challenge sent to `source`.
    pub fn issue(&mut self, now: Millis, source: IpAddr) -> String {
        let source = source.to_canonical();
        self.forget(now);
        while self.issued.len() >= self.capacity {
            let Some(oldest) = self.order.pop_front() else { break };
            self.issued.remove(&oldest);
        }
        self.seq += 1;
        let (at, seq) = (format!("{now:x}"), format!("{:x}", self.seq));
        let nonce = format!("{at}.{seq}.{}", self.mac(source, &at, &seq));
        self.issued.insert(nonce.clone(), Issued { source, at: now, nc: 0 });
        self.order.push_back(nonce.clone());
        nonce
    }

    /// The `WWW-Authenticate` value of a challenge to `source`, with a new nonce.
    pub fn challenge(&mut self, now: Millis, source: IpAddr, stale: bool) -> String {
        let nonce = self.issue(now, source);
        challenge(&self.realm, &nonce, stale)
    }

    /// Drops expired nonces (they are still recognised as ours: `Stale`), and
    /// the names of nonces already gone once they outnumber the live ones.
    fn forget(&mut self, now: Millis) {
        while let Some(front) = self.order.front() {
            match self.issued.get(front) {
                Some(i) if now.saturating_sub(i.at) < self.lifetime_ms => break,
                _ => {
                    if let Some(n) = self.order.pop_front() {
                        self.issued.remove(&n);
                    }
                }
            }
        }
        if self.order.len() > 2 * self.issued.len() + 16 {
            let issued = &self.issued;
            self.order.retain(|n| issued.contains_key(n));
        }
    }

    /// Whether `nonce` was made by us for `source` (whatever its age), and when.
    fn ours(&self, nonce: &str, source: IpAddr) -> Option<Millis> {
        let mut parts = nonce.split('.');
        let (at, seq, mac) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || at.len() > 16 || seq.len() > 16 {
            return None;
        }
        let issued = u64::from_str_radix(at, 16).ok()?;
        // Constant time, like the response check.
        let want = self.mac(source, at, seq);
        (want.len() == mac.len() && want.bytes().zip(mac.bytes()).fold(0u8, |a, (x, y)| a | (x ^ y)) == 0).then_some(issued)
    }

    /// Checks `creds` (of a request with `method`, from `source`) against
    /// `password`: the password of the account the request is about, `None`
    /// when there is no such account or `creds.username` is not it (both are
    /// then `Wrong`, like a wrong password). Only an `Ok` moves the nonce's
    /// count: a refused request never burns a nonce for the phone it was
    /// issued to, except a `Wrong` one from its own address.
    pub fn verify(&mut self, now: Millis, source: IpAddr, creds: &Credentials, method: &str, password: Option<&str>) -> Verdict {
        let source = source.to_canonical();
        self.forget(now);
        let Some(entry) = self.issued.get(&creds.nonce) else {
            // Expired, forgotten, or spent by a wrong answer: stale if ours.
            return if self.ours(&creds.nonce, source).is_some() { Verdict::Stale } else { Verdict::Unknown };
        };
        if entry.source != source {
            return Verdict::WrongSource;
        }
        if now.saturating_sub(entry.at) >= self.lifetime_ms {
            self.issued.remove(&creds.nonce);
            return Verdict::Stale;
        }
        let highest = entry.nc;
        // Without qop the nonce is good once (RFC 2069 has no count).
        let nc = match (&creds.qop, &creds.nc) {
            (None, _) => Some(1),
            (Some(_), Some(nc)) if (1..=8).contains(&nc.len()) => u32::from_str_radix(nc, 16).ok(),
            _ => None,
        };
        let Some(nc) = nc else {
            self.issued.remove(&creds.nonce);
            return Verdict::Wrong;
        };
        if nc <= highest {
            return Verdict::Replay;
        }
        if creds.realm != self.realm || !password.is_some_and(|p| creds.verify(method, p)) {
            self.issued.remove(&creds.nonce);
            return Verdict::Wrong;
        }
        if let Some(e) = self.issued.get_mut(&creds.nonce) {
            e.nc = nc;
        }
        Verdict::Ok
    }
}

// ---------------------------------------------------------------- lockout

/// How [`AuthGuard`] counts failures and blocks. Three counters, so that one
/// phone with a wrong password in an office of fifty behind one NAT address
/// does not keep the other forty-nine out:
///
/// * per (address, account) — one phone, or one guesser of one account;
/// * per address — one source trying many accounts (a spray); its block is
///   short, since a whole office may be behind that address;
/// * per account — many sources guessing one password; this block can be
///   provoked by anyone, so an account keeps working from an address where it
///   recently logged in (`trust_ms`), and the block itself is bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardPolicy {
    /// Failures are counted over a window this long (from the first).
    pub window_ms: Millis,
    pub pair_failures: u32,
    pub pair_block_ms: Millis,
    pub source_failures: u32,
    pub source_block_ms: Millis,
    pub account_failures: u32,
    pub account_block_ms: Millis,
    /// After a success from an address, the account stays usable from there
    /// through source and account blocks for this long.
    pub trust_ms: Millis,
    /// At most this many addresses, accounts, pairs and trusted pairs are
    /// remembered (each): a spray of sources or names costs bounded memory.
    pub max_entries: usize,
}

impl Default for GuardPolicy {
    fn default() -> GuardPolicy {
        GuardPolicy {
            window_ms: 10 * 60_000,
            pair_failures: 5,
            pair_block_ms: 5 * 60_000,
            source_failures: 20,
            source_block_ms: 60_000,
            account_failures: 20,
            account_block_ms: 15 * 60_000,
            trust_ms: 2 * 3_600_000,
            max_entries: 4_096,
        }
    }
}

/// Which counter blocked a login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockedBy {
    /// This account from this address.
    Pair,
    /// This address, for any account not trusted there.
    Source,
    /// This account, from any address where it is not trusted.
    Account,
}

/// A refused login: why, and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocked {
    pub by: BlockedBy,
    pub until: Millis,
}

#[derive(Debug, Clone, Copy)]
struct Count {
    failures: u32,
    since: Millis,
    blocked_until: Millis,
}

impl Count {
    fn live(&self, now: Millis, window: Millis) -> bool {
        self.blocked_until > now || now.saturating_sub(self.since) < window
    }
}

/// Accounts are remembered by a digest of their name: a long made-up name
/// costs no more memory than a short one.
type Account = [u8; 16];

fn account(user: &str) -> Account {
    Md5::digest(user.as_bytes()).into()
}

/// Lockout of password guessing on REGISTER, sans-IO: failed logins counted
/// per address, per account and per (address, account), with blocks as
/// [`GuardPolicy`] says. See the module documentation for where the host
/// calls it.
#[derive(Debug)]
pub struct AuthGuard {
    policy: GuardPolicy,
    pairs: HashMap<(IpAddr, Account), Count>,
    sources: HashMap<IpAddr, Count>,
    accounts: HashMap<Account, Count>,
    /// (address, account) → until when a success there is trusted.
    trusted: HashMap<(IpAddr, Account), Millis>,
}

impl AuthGuard {
    pub fn new(policy: GuardPolicy) -> AuthGuard {
        AuthGuard { policy, pairs: HashMap::new(), sources: HashMap::new(), accounts: HashMap::new(), trusted: HashMap::new() }
    }

    /// Whether `user` may try to log in from `source` now.
    pub fn check(&self, now: Millis, source: IpAddr, user: &str) -> Result<(), Blocked> {
        let source = source.to_canonical();
        let pair = (source, account(user));
        let blocked = |c: Option<&Count>, by| c.filter(|c| c.blocked_until > now).map(|c| Blocked { by, until: c.blocked_until });
        if let Some(b) = blocked(self.pairs.get(&pair), BlockedBy::Pair) {
            return Err(b);
        }
        if self.trusted.get(&pair).is_some_and(|until| *until > now) {
            return Ok(());
        }
        match blocked(self.sources.get(&source), BlockedBy::Source).or(blocked(self.accounts.get(&pair.1), BlockedBy::Account)) {
            Some(b) => Err(b),
            None => Ok(()),
        }
    }

    /// A failed login of `user` from `source`: counts it, and says whether it
    /// started a block (the first that applies to this pair).
    pub fn failure(&mut self, now: Millis, source: IpAddr, user: &str) -> Option<Blocked> {
        let source = source.to_canonical();
        let pair = (source, account(user));
        let p = self.policy.clone();
        let a = count(&mut self.pairs, pair, now, &p, p.pair_failures, p.pair_block_ms).map(|until| Blocked { by: BlockedBy::Pair, until });
        let b = count(&mut self.sources, source, now, &p, p.source_failures, p.source_block_ms).map(|until| Blocked { by: BlockedBy::Source, until });
        let c = count(&mut self.accounts, pair.1, now, &p, p.account_failures, p.account_block_ms).map(|until| Blocked { by: BlockedBy::Account, until });
        a.or(b).or(c)
    }

    /// A successful login: this phone's own failures are forgiven, and the
    /// account stays usable from this address through source and account
    /// blocks for `trust_ms`. (The address's and the account's counts stand:
    /// a guesser who also knows one password gains nothing.)
    pub fn success(&mut self, now: Millis, source: IpAddr, user: &str) {
        let pair = (source.to_canonical(), account(user));
        self.pairs.remove(&pair);
        if !self.trusted.contains_key(&pair) && self.trusted.len() >= self.policy.max_entries.max(1) {
            self.trusted.retain(|_, until| *until > now);
            if self.trusted.len() >= self.policy.max_entries.max(1) {
                if let Some(k) = self.trusted.iter().min_by_key(|(_, until)| **until).map(|(k, _)| *k) {
                    self.trusted.remove(&k);
                }
            }
        }
        self.trusted.insert(pair, now.saturating_add(self.policy.trust_ms));
    }

    /// Entries remembered, all kinds together (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.pairs.len() + self.sources.len() + self.accounts.len() + self.trusted.len()
    }
}

/// Counts one failure for `key`; `Some(until)` when it starts a block. A full
/// map first forgets what is over, then the least harmful entry: one not
/// blocked that was counted longest ago, else the block that ends soonest.
fn count<K: std::hash::Hash + Eq + Copy>(map: &mut HashMap<K, Count>, key: K, now: Millis, p: &GuardPolicy, max: u32, block_ms: Millis) -> Option<Millis> {
    let cap = p.max_entries.max(1);
    if !map.contains_key(&key) && map.len() >= cap {
        map.retain(|_, c| c.live(now, p.window_ms));
        if map.len() >= cap {
            let victim = map
                .iter()
                .min_by_key(|(_, c)| if c.blocked_until > now { (1, c.blocked_until) } else { (0, c.since) })
                .map(|(k, _)| *k);
            if let Some(k) = victim {
                map.remove(&k);
            }
        }
    }
    let c = map.entry(key).or_insert(Count { failures: 0, since: now, blocked_until: 0 });
    if now.saturating_sub(c.since) >= p.window_ms {
        c.failures = 0;
        c.since = now;
    }
    c.failures = c.failures.saturating_add(1);
    if c.failures >= max.max(1) && c.blocked_until <= now {
        c.blocked_until = now.saturating_add(block_ms);
        c.failures = 0;
        c.since = now;
        return Some(c.blocked_until);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_2617_example_response() {
        // RFC 2617 §3.5 (Mufasa / "Circle Of Life"), qop=auth.
        let h = r#"Digest username="Mufasa", realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth, nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", opaque="5ccc069c403ebaf9f0171e9517f40e41""#;
        let c = parse(h).unwrap();
        assert!(c.verify("GET", "Circle Of Life"));
        assert!(!c.verify("GET", "circle of life"));
        assert!(!format!("{c:?}").contains("6629fae4"), "the response is never printed");
    }

    #[test]
    fn nonces_are_ours_and_expire() {
        let n = nonce("s3cret", 1_000_000);
        assert!(nonce_fresh("s3cret", &n, 1_000_500, 300_000));
        assert!(!nonce_fresh("s3cret", &n, 1_400_000, 300_000), "too old");
        assert!(!nonce_fresh("other", &n, 1_000_500, 300_000), "not signed by us");
        assert!(!nonce_fresh("s3cret", "f4240.0000000000000000", 1_000_500, 300_000));
        let a = authorization("1001", "ivr", "pw", "REGISTER", "sip:127.0.0.1", &n, "abc");
        assert!(parse(&a).unwrap().verify("REGISTER", "pw"));
        assert!(parse("Basic xyz").is_none());
        assert!(parse("Digest username=\"a\"").is_none());
    }
}

#[cfg(test)]
mod nonce_tests {
    use super::*;

    const LIFE: Millis = 30_000;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn creds(nonce: &str, nc: u32, password: &str) -> Credentials {
        parse(&authorization_nc("1001", "ivr", password, "REGISTER", "sip:ivr", nonce, "cn", nc)).unwrap()
    }

    #[test]
    fn an_identical_authorization_is_refused_the_second_time() {
        let mut n = Nonces::new("ivr", "s", LIFE, 100);
        let phone = ip("192.0.2.7");
        let nonce = n.issue(0, phone);
        let c = creds(&nonce, 1, "pw");
        assert_eq!(n.verify(10, phone, &c, "REGISTER", Some("pw")), Verdict::Ok);
        assert_eq!(n.verify(20, phone, &c, "REGISTER", Some("pw")), Verdict::Replay, "the same request again");
        // Counts must go up; gaps are fine (a phone may lose a request).
        assert_eq!(n.verify(30, phone, &creds(&nonce, 2, "pw"), "REGISTER", Some("pw")), Verdict::Ok);
        assert_eq!(n.verify(40, phone, &creds(&nonce, 5, "pw"), "REGISTER", Some("pw")), Verdict::Ok);
        for old in [1, 4, 5] {
            assert_eq!(n.verify(50, phone, &creds(&nonce, old, "pw"), "REGISTER", Some("pw")), Verdict::Replay, "nc {old}");
        }
        assert_eq!(n.verify(60, phone, &creds(&nonce, 6, "pw"), "REGISTER", Some("pw")), Verdict::Ok);
    }

    #[test]
    fn a_nonce_is_good_only_from_the_address_it_was_given_to() {
        let mut n = Nonces::new("ivr", "s", LIFE, 100);
        let (phone, other) = (ip("192.0.2.7"), ip("198.51.100.9"));
        let nonce = n.issue(0, phone);
        let c = creds(&nonce, 1, "pw");
        assert_eq!(n.verify(10, other, &c, "REGISTER", Some("pw")), Verdict::WrongSource);
        assert_eq!(n.verify(10, other, &creds(&nonce, 1, "guess"), "REGISTER", Some("pw")), Verdict::WrongSource, "no password oracle");
        assert_eq!(n.verify(20, phone, &c, "REGISTER", Some("pw")), Verdict::Ok, "the phone's nonce was not burnt");
        // The same address written as IPv4-mapped IPv6 (a dual-stack socket) is the same source.
        assert_eq!(n.verify(30, ip("::ffff:192.0.2.7"), &creds(&nonce, 2, "pw"), "REGISTER", Some("pw")), Verdict::Ok);
        // Once forgotten, its MAC is for the phone only: from elsewhere it is unknown.
        let mut small = Nonces::new("ivr", "s", LIFE, 1);
        let first = small.issue(0, phone);
        small.issue(1, phone);
        assert_eq!(small.verify(2, other, &creds(&first, 1, "pw"), "REGISTER", Some("pw")), Verdict::Unknown);
        assert_eq!(small.verify(2, phone, &creds(&first, 1, "pw"), "REGISTER", Some("pw")), Verdict::Stale);
    }

    #[test]
    fn wrong_answers_fail_and_spend_the_nonce() {
        let mut n = Nonces::new("ivr", "s", LIFE, 100);
        let phone = ip("192.0.2.7");
        let nonce = n.issue(0, phone);
        assert_eq!(n.verify(10, phone, &creds(&nonce, 1, "guess"), "REGISTER", Some("pw")), Verdict::Wrong);
        assert_eq!(n.verify(20, phone, &creds(&nonce, 2, "pw"), "REGISTER", Some("pw")), Verdict::Stale, "spent: a new challenge per guess");
        let nonce = n.issue(30, phone);
        assert_eq!(n.verify(40, phone, &creds(&nonce, 1, "pw"), "REGISTER", None), Verdict::Wrong, "no such account fails like a wrong password");
        let nonce = n.issue(50, phone);
        let other_realm = parse(&authorization_nc("1001", "elsewhere", "pw", "REGISTER", "sip:ivr", &nonce, "cn", 1)).unwrap();
        assert_eq!(n.verify(60, phone, &other_realm, "REGISTER", Some("pw")), Verdict::Wrong);
        let nonce = n.issue(70, phone);
        let mut bad_nc = creds(&nonce, 1, "pw");
        for nc in ["zz", "123456789", "", "-1"] {
            bad_nc.nc = Some(nc.into());
            let nonce = n.issue(80, phone);
            bad_nc.nonce = nonce;
            assert_eq!(n.verify(90, phone, &bad_nc, "REGISTER", Some("pw")), Verdict::Wrong, "nc {nc:?}");
        }
        // Without qop (RFC 2069) there is no count: the nonce is good once.
        let nonce = n.issue(100, phone);
        let ha1 = md5_hex(&["1001", "ivr", "pw"]);
        let resp = md5_hex(&[&ha1, &nonce, &md5_hex(&["REGISTER", "sip:ivr"])]);
        let old = parse(&format!("Digest username=\"1001\", realm=\"ivr\", nonce=\"{nonce}\", uri=\"sip:ivr\", response=\"{resp}\"")).unwrap();
        assert_eq!(n.verify(110, phone, &old, "REGISTER", Some("pw")), Verdict::Ok);
        assert_eq!(n.verify(120, phone, &old, "REGISTER", Some("pw")), Verdict::Replay);
    }

    #[test]
    fn expired_nonces_are_stale_and_strangers_unknown() {
        let mut n = Nonces::new("ivr", "s", LIFE, 100);
        let phone = ip("192.0.2.7");
        let nonce = n.issue(1_000, phone);
        assert_eq!(n.verify(1_000 + LIFE - 1, phone, &creds(&nonce, 1, "pw"), "REGISTER", Some("pw")), Verdict::Ok);
        assert_eq!(n.verify(1_000 + LIFE, phone, &creds(&nonce, 2, "pw"), "REGISTER", Some("pw")), Verdict::Stale);
        assert_eq!(n.verify(10_000_000, phone, &creds(&nonce, 3, "pw"), "REGISTER", Some("pw")), Verdict::Stale, "recognised long after");
        assert!(n.is_empty(), "expired nonces are forgotten");
        assert!(n.challenge(0, phone, true).ends_with(", stale=true"));
        let theirs = Nonces::new("ivr", "another secret", LIFE, 100).issue(1_000, phone);
        let other_realm = Nonces::new("sales", "s", LIFE, 100).issue(1_000, phone);
        for forged in [theirs, other_realm, "3e8.1.00000000000000000000000000000000".into(), "".into(), "..".into(), "ffffffffffffffffff.1.x".into(), "a.b.c.d".into()] {
            assert_eq!(n.verify(1_100, phone, &creds(&forged, 1, "pw"), "REGISTER", Some("pw")), Verdict::Unknown, "{forged:?}");
        }
    }

    #[test]
    fn memory_is_bounded_and_the_oldest_nonce_goes_first() {
        let mut n = Nonces::new("ivr", "s", LIFE, 100);
        let phone = ip("192.0.2.7");
        let first = n.issue(0, phone);
        let mut last = String::new();
        for i in 0..10_000u32 {
            last = n.issue(1, IpAddr::from(i.to_be_bytes()));
        }
        assert_eq!(n.len(), 100);
        assert!(n.order.len() <= 2 * 100 + 16);
        assert_eq!(n.verify(2, phone, &creds(&first, 1, "pw"), "REGISTER", Some("pw")), Verdict::Stale, "evicted: the phone is asked again");
        assert_eq!(n.verify(2, IpAddr::from(9_999u32.to_be_bytes()), &creds(&last, 1, "pw"), "REGISTER", Some("pw")), Verdict::Ok);
        // Nonces spent by wrong answers leave no trail.
        for _ in 0..10_000 {
            let nonce = n.issue(3, phone);
            assert_eq!(n.verify(3, phone, &creds(&nonce, 1, "x"), "REGISTER", Some("pw")), Verdict::Wrong);
        }
        assert!(n.len() <= 100 && n.order.len() <= 2 * 100 + 16, "{} {}", n.len(), n.order.len());
    }

    // -------------------------------------------------------------- lockout

    fn policy() -> GuardPolicy {
        GuardPolicy { window_ms: 600_000, pair_failures: 5, pair_block_ms: 300_000, source_failures: 20, source_block_ms: 60_000, account_failures: 20, account_block_ms: 900_000, trust_ms: 7_200_000, max_entries: 1_000 }
    }

    fn nth(i: u32) -> IpAddr {
        IpAddr::from((0xc633_6400 + i).to_be_bytes()) // 198.51.100.0 + i
    }

    #[test]
    fn one_bad_phone_blocks_only_itself() {
        let mut g = AuthGuard::new(policy());
        let office = ip("203.0.113.1");
        for t in 0..4 {
            assert_eq!(g.failure(t, office, "1001"), None);
        }
        assert_eq!(g.failure(4, office, "1001"), Some(Blocked { by: BlockedBy::Pair, until: 300_004 }));
        assert_eq!(g.check(5, office, "1001"), Err(Blocked { by: BlockedBy::Pair, until: 300_004 }));
        assert_eq!(g.check(5, office, "1002"), Ok(()), "the other phones at the office NAT");
        assert_eq!(g.check(5, ip("192.0.2.7"), "1001"), Ok(()), "the agent from elsewhere");
        assert_eq!(g.check(300_003, office, "1001"), Err(Blocked { by: BlockedBy::Pair, until: 300_004 }));
        assert_eq!(g.check(300_004, office, "1001"), Ok(()), "the block ends");
    }

    #[test]
    fn a_spraying_source_is_blocked_briefly_but_not_for_agents_logged_in_there() {
        let mut g = AuthGuard::new(policy());
        let office = ip("203.0.113.1");
        g.success(0, office, "1001");
        let mut blocked = None;
        for i in 0..20 {
            blocked = g.failure(1_000 + i, office, &format!("9{i:03}"));
        }
        assert_eq!(blocked, Some(Blocked { by: BlockedBy::Source, until: 61_019 }));
        assert_eq!(g.check(2_000, office, "1002").map_err(|b| b.by), Err(BlockedBy::Source), "new names from there wait");
        assert_eq!(g.check(2_000, office, "1001"), Ok(()), "the agent who logged in there keeps working");
        assert_eq!(g.check(2_000, ip("192.0.2.7"), "1002"), Ok(()), "other sources are not affected");
        assert_eq!(g.check(61_019, office, "1002"), Ok(()), "60 s, not longer");
    }

    #[test]
    fn an_account_guessed_from_many_sources_is_blocked_except_where_its_agent_is() {
        let mut g = AuthGuard::new(policy());
        let desk = ip("203.0.113.1");
        g.success(0, desk, "1001");
        for i in 0..19 {
            assert_eq!(g.failure(100 + i as u64, nth(i), "1001"), None);
        }
        assert_eq!(g.failure(200, nth(19), "1001"), Some(Blocked { by: BlockedBy::Account, until: 900_200 }));
        assert_eq!(g.check(300, nth(50), "1001").map_err(|b| b.by), Err(BlockedBy::Account));
        assert_eq!(g.check(300, nth(50), "1002"), Ok(()));
        assert_eq!(g.check(300, desk, "1001"), Ok(()), "trusted where it logged in");
        assert_eq!(g.check(900_200, nth(50), "1001"), Ok(()));
        // Trust runs out.
        assert_eq!(g.check(7_200_000, desk, "1001"), Ok(()), "no block any more anyway");
        for i in 0..20 {
            g.failure(7_300_000, nth(100 + i), "1001");
        }
        assert_eq!(g.check(7_300_001, desk, "1001").map_err(|b| b.by), Err(BlockedBy::Account), "trust is for trust_ms");
    }

    #[test]
    fn failures_spread_beyond_the_window_do_not_add_up_and_success_forgives_the_phone() {
        let mut g = AuthGuard::new(policy());
        let phone = ip("192.0.2.7");
        for k in 0..20 {
            for _ in 0..4 {
                assert_eq!(g.failure(k * 600_000, phone, "1001"), None, "window {k}");
            }
        }
        for _ in 0..4 {
            g.failure(20 * 600_000, phone, "1002");
        }
        g.success(20 * 600_000 + 1, phone, "1002");
        assert_eq!(g.failure(20 * 600_000 + 2, phone, "1002"), None, "counting starts again after a success");
    }

    #[test]
    fn memory_is_bounded_under_a_spray_and_blocks_survive_it() {
        let mut g = AuthGuard::new(GuardPolicy { max_entries: 64, ..policy() });
        let guesser = ip("203.0.113.66");
        for _ in 0..5 {
            g.failure(0, guesser, "1001");
        }
        for i in 0..20_000u32 {
            // Long made-up names cost no more than short ones.
            let name = format!("{i}{}", "x".repeat((i % 7) as usize * 300));
            g.failure(1 + (i / 200) as u64, nth(i), &name);
            if i % 3 == 0 {
                g.success(1, nth(i), &name);
            }
        }
        assert!(g.tracked() <= 4 * 64, "{}", g.tracked());
        assert_eq!(g.check(200, guesser, "1001").map_err(|b| b.by), Err(BlockedBy::Pair), "the guesser's block was not pushed out");
    }

    #[test]
    fn the_secret_is_never_printed() {
        let n = Nonces::new("ivr", "hunter2-secret", LIFE, 8);
        assert!(!format!("{n:?}").contains("hunter2"));
    }

    proptest::proptest! {
        #[test]
        fn verify_never_panics(
            header in ".{0,300}",
            field in ".{0,40}",
            nc in proptest::option::of(".{0,12}"),
            qop in proptest::option::of("auth|auth-int|.{0,5}"),
            ours in proptest::prelude::any::<bool>(),
            ipv4 in proptest::prelude::any::<u32>(),
            now in proptest::prelude::any::<u64>(),
        ) {
            let mut n = Nonces::new("ivr", "s", LIFE, 8);
            let source = IpAddr::from(ipv4.to_be_bytes());
            let nonce = n.issue(now / 2, source);
            if let Some(c) = parse(&header) {
                n.verify(now, source, &c, "REGISTER", Some("pw"));
            }
            let nonce = if ours { nonce } else { field.clone() };
            let c = Credentials { username: field.clone(), realm: "ivr".into(), nonce, uri: field.clone(), response: field.clone(), qop, nc, cnonce: Some(field.clone()), algorithm: None };
            n.verify(now, source, &c, "REGISTER", Some("pw"));
            n.verify(now.saturating_add(LIFE), source, &c, "REGISTER", None);
            let mut g = AuthGuard::new(GuardPolicy { max_entries: 2, ..GuardPolicy::default() });
            g.failure(now, source, &header);
            let _ = g.check(now, source, &header);
            g.success(now, source, &header);
        }
    }
}
