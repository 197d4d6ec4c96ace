//! SIP messages (RFC 3261 §7, §25): a tolerant parser and a builder.
//!
//! Tolerant where the RFC allows (RFC 4475's valid torture messages): LF or CRLF
//! line ends, folded header lines, any whitespace around `:`, compact header
//! names, case-insensitive names, unknown methods and URI schemes, escaped URIs.
//! Strict where it matters: a start line that is not SIP, a header line without a
//! name, a body shorter than Content-Length, or a missing mandatory header is an
//! error that still carries whatever Via/Call-ID/CSeq/From/To could be read, so
//! the server can answer 400 to the right place.

use std::fmt::Write;

/// Compact header forms (RFC 3261 §7.3.3 and extensions).
const COMPACT: &[(&str, &str)] = &[
    ("v", "Via"),
    ("i", "Call-ID"),
    ("f", "From"),
    ("t", "To"),
    ("m", "Contact"),
    ("l", "Content-Length"),
    ("c", "Content-Type"),
    ("k", "Supported"),
    ("s", "Subject"),
    ("e", "Content-Encoding"),
    ("o", "Event"),
    ("r", "Refer-To"),
];

/// Headers whose values may be comma-separated lists that we split.
const LIST_HEADERS: &[&str] = &["via", "contact", "route", "record-route", "allow", "supported", "require", "proxy-require"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    Request { method: String, uri: String },
    Response { code: u16, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub start: StartLine,
    /// Canonical name and value, in order; list headers are split into one entry each.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed SIP message: {reason}")]
pub struct ParseError {
    pub reason: String,
    /// Headers that could be read before the problem (to address a 400).
    pub partial: Option<Message>,
}

fn canonical(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    if let Some((_, full)) = COMPACT.iter().find(|(c, _)| *c == lower) {
        return full.to_string();
    }
    match lower.as_str() {
        "call-id" => "Call-ID".into(),
        "cseq" => "CSeq".into(),
        "www-authenticate" => "WWW-Authenticate".into(),
        _ => lower
            .split('-')
            .map(|p| {
                let mut c = p.chars();
                c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("-"),
    }
}

/// Splits a header value on commas that are not inside quotes or angle brackets.
fn split_list(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut quoted, mut angle, mut start) = (false, false, 0);
    let bytes = v.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b'<' if !quoted => angle = true,
            b'>' if !quoted => angle = false,
            b',' if !quoted && !angle => {
                out.push(v[start..i].trim().to_string());
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.push(v[start..].trim().to_string());
    out.retain(|s| !s.is_empty());
    out
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
}

impl Message {
    /// Parses one message. `datagram`: over UDP a missing Content-Length means
    /// "the rest of the datagram"; over a stream it means no body.
    pub fn parse(data: &[u8], datagram: bool) -> Result<Message, ParseError> {
        // Leading CRLFs (keep-alives) are skipped.
        let data = &data[data.iter().position(|b| *b != b'\r' && *b != b'\n').unwrap_or(data.len())..];
        let head_end = find_head_end(data);
        let (head, body_start) = match head_end {
            Some((h, b)) => (&data[..h], b),
            None => (data, data.len()),
        };
        let head = String::from_utf8_lossy(head);
        let mut lines: Vec<String> = Vec::new();
        for raw in head.split('\n') {
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            if (line.starts_with(' ') || line.starts_with('\t')) && !lines.is_empty() {
                let last = lines.last_mut().unwrap();
                last.push(' ');
                last.push_str(line.trim());
            } else {
                lines.push(line.to_string());
            }
        }
        let fail = |reason: &str, partial: Option<Message>| ParseError { reason: reason.to_string(), partial };
        let first = lines.first().map(String::as_str).unwrap_or("");
        let start = parse_start(first).ok_or_else(|| fail("the first line is not a SIP request or status line", None))?;
        let mut msg = Message { start, headers: Vec::new(), body: Vec::new() };
        for line in lines.iter().skip(1) {
            if line.trim().is_empty() {
                continue;
            }
            let Some((name, value)) = line.split_once(':') else {
                return Err(fail(&format!("header line without a name: {line:.40}"), Some(msg)));
            };
            let name = name.trim();
            if !is_token(name) {
                return Err(fail(&format!("bad header name {name:.40}"), Some(msg)));
            }
            let canon = canonical(name);
            let value = value.trim();
            if LIST_HEADERS.contains(&canon.to_ascii_lowercase().as_str()) {
                for v in split_list(value) {
                    msg.headers.push((canon.clone(), v));
                }
            } else {
                msg.headers.push((canon, value.to_string()));
            }
        }
        let rest = &data[body_start.min(data.len())..];
        match msg.header("Content-Length") {
            Some(cl) => {
                let Ok(len) = cl.trim().parse::<usize>() else {
                    return Err(fail("Content-Length is not a number", Some(msg)));
                };
                if rest.len() < len {
                    return Err(fail("the body is shorter than Content-Length", Some(msg)));
                }
                msg.body = rest[..len].to_vec();
            }
            None if datagram => msg.body = rest.to_vec(),
            None => {}
        }
        for h in ["Via", "Call-ID", "CSeq", "From", "To"] {
            if msg.header(h).is_none() {
                return Err(fail(&format!("missing {h}"), Some(msg)));
            }
        }
        let cseq = msg.cseq();
        if cseq.is_none() {
            return Err(fail("malformed CSeq", Some(msg)));
        }
        if let (StartLine::Request { method, .. }, Some((_, m))) = (&msg.start, &cseq) {
            if m != method {
                return Err(fail("CSeq method does not match the request method", Some(msg)));
            }
        }
        Ok(msg)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn method(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            _ => None,
        }
    }

    pub fn call_id(&self) -> Option<&str> {
        self.header("Call-ID")
    }

    /// (sequence number, method)
    pub fn cseq(&self) -> Option<(u32, String)> {
        let v = self.header("CSeq")?;
        let mut parts = v.split_whitespace();
        let n = parts.next()?.parse().ok()?;
        let m = parts.next()?.to_string();
        parts.next().is_none().then_some((n, m))
    }

    /// The `branch` of the top Via.
    pub fn branch(&self) -> Option<&str> {
        param(self.header("Via")?, "branch")
    }

    pub fn from_tag(&self) -> Option<&str> {
        param(self.header("From")?, "tag")
    }

    pub fn to_tag(&self) -> Option<&str> {
        param(self.header("To")?, "tag")
    }

    /// Serialises the message with a correct Content-Length.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = String::with_capacity(512 + self.body.len());
        match &self.start {
            StartLine::Request { method, uri } => {
                let _ = write!(s, "{method} {uri} SIP/2.0\r\n");
            }
            StartLine::Response { code, reason } => {
                let _ = write!(s, "SIP/2.0 {code} {reason}\r\n");
            }
        }
        for (n, v) in &self.headers {
            if !n.eq_ignore_ascii_case("Content-Length") {
                let _ = write!(s, "{n}: {v}\r\n");
            }
        }
        let _ = write!(s, "Content-Length: {}\r\n\r\n", self.body.len());
        let mut out = s.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

fn find_head_end(data: &[u8]) -> Option<(usize, usize)> {
    for i in 0..data.len() {
        if data[i..].starts_with(b"\r\n\r\n") {
            return Some((i, i + 4));
        }
        if data[i..].starts_with(b"\n\n") {
            return Some((i, i + 2));
        }
    }
    None
}

fn parse_start(line: &str) -> Option<StartLine> {
    let mut parts = line.split_whitespace();
    let a = parts.next()?;
    if a.eq_ignore_ascii_case("SIP/2.0") {
        let code: u16 = parts.next()?.parse().ok().filter(|c| (100..700).contains(c))?;
        let reason = parts.collect::<Vec<_>>().join(" ");
        return Some(StartLine::Response { code, reason });
    }
    let uri = parts.next()?;
    let version = parts.next()?;
    if !version.eq_ignore_ascii_case("SIP/2.0") || parts.next().is_some() || !is_token(a) || !uri.contains(':') {
        return None;
    }
    Some(StartLine::Request { method: a.to_string(), uri: uri.to_string() })
}

/// A `;name=value` parameter of a header value (outside any `<…>` URI).
pub fn param<'a>(value: &'a str, name: &str) -> Option<&'a str> {
    let after = match value.rfind('>') {
        Some(i) => &value[i + 1..],
        None => value,
    };
    after.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The user part of a SIP or tel URI, percent-decoded: `sip:962588@host` → `962588`.
pub fn uri_user(uri: &str) -> Option<String> {
    let uri = uri.trim().trim_start_matches('<');
    let uri = uri.split('>').next()?;
    let rest = if let Some(r) = uri.strip_prefix("sip:").or_else(|| uri.strip_prefix("sips:")) {
        r.split_once('@').map(|(u, _)| u)?
    } else if let Some(r) = uri.strip_prefix("tel:") {
        r
    } else {
        return None;
    };
    let user = rest.split(';').next()?.split(':').next()?;
    let mut out = String::new();
    let b = user.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()? as char);
            i += 3;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    Some(out)
}

/// The URI inside a name-addr (`"Bob" <sip:bob@h>;tag=1` → `sip:bob@h`).
pub fn addr_uri(value: &str) -> &str {
    match (value.find('<'), value.find('>')) {
        (Some(a), Some(b)) if a < b => &value[a + 1..b],
        _ => value.split(';').next().unwrap_or(value).trim(),
    }
}

/// Builds a response to `req`, copying Via, From, To, Call-ID and CSeq
/// (RFC 3261 §8.2.6); `to_tag` is added to To when it has none.
pub fn response(req: &Message, code: u16, reason: &str, to_tag: Option<&str>) -> Message {
    let mut headers = Vec::new();
    for (n, v) in &req.headers {
        match n.as_str() {
            "Via" | "From" | "Call-ID" | "CSeq" | "Record-Route" => headers.push((n.clone(), v.clone())),
            "To" => {
                let mut v = v.clone();
                if let (Some(t), None) = (to_tag, param(&v, "tag")) {
                    if code != 100 {
                        v.push_str(";tag=");
                        v.push_str(t);
                    }
                }
                headers.push((n.clone(), v));
            }
            _ => {}
        }
    }
    Message { start: StartLine::Response { code, reason: reason.to_string() }, headers, body: Vec::new() }
}

#[cfg(test)]
mod tests;
