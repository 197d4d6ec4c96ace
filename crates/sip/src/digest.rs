//! HTTP digest authentication for SIP (RFC 3261 §22, RFC 7616 with MD5, the
//! algorithm SIP phones send): challenges with stateless, time-limited nonces,
//! and checking an `Authorization` header against a password. Nothing here
//! logs or keeps a password.

use md5::{Digest, Md5};

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
/// state, and it expires.
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

/// The `Authorization` value a phone would send (for tests and tools).
pub fn authorization(username: &str, realm: &str, password: &str, method: &str, uri: &str, nonce: &str, cnonce: &str) -> String {
    let ha1 = md5_hex(&[username, realm, password]);
    let ha2 = md5_hex(&[method, uri]);
    let response = md5_hex(&[&ha1, nonce, "00000001", cnonce, "auth", &ha2]);
    format!("Digest username=\"{username}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"{cnonce}\"")
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
