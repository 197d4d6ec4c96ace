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
use std::net::{IpAddr, SocketAddr};

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
    /// The answer a request deserves: 400, or 505 for another SIP version.
    pub status: u16,
}

/// Headers a request may carry once only (RFC 3261 §7.3.1; RFC 4475 3.3.6/3.3.7).
const SINGLE: &[&str] = &["Call-ID", "CSeq", "From", "To", "Content-Length", "Max-Forwards", "Content-Type", "Expires"];

/// A Content-Length value (RFC 3261 §20.14: `1*DIGIT`, whitespace around it
/// allowed): digits only — no sign, no inner spaces, none of what a number
/// parser would also take — and a size that fits in memory; `None` otherwise.
/// The parser and the TCP framer both read it here, so they cannot disagree
/// on where a message ends (a disagreement is how requests are smuggled).
pub fn content_length(value: &str) -> Option<usize> {
    let v = value.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Leading zeros are legal (and harmless to the parse); too many digits
    // for a usize is an error, not a wrap.
    v.parse().ok()
}

pub(crate) fn canonical(name: &str) -> String {
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
        let fail = |reason: &str, partial: Option<Message>| ParseError { reason: reason.to_string(), partial, status: 400 };
        let first = lines.first().map(String::as_str).unwrap_or("");
        let (start, line_problem) = parse_start(first).ok_or_else(|| fail("the first line is not a SIP request or status line", None))?;
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
        // The request line could be read, but is not acceptable: answer it.
        if let Some((status, reason)) = line_problem {
            return Err(ParseError { reason: reason.to_string(), partial: Some(msg), status });
        }
        for h in SINGLE {
            if msg.headers_named(h).nth(1).is_some() {
                return Err(fail(&format!("more than one {h}"), Some(msg)));
            }
        }
        if let Some(problem) = msg.headers.iter().find_map(|(n, v)| header_problem(n, v)) {
            return Err(fail(&problem, Some(msg)));
        }
        let rest = &data[body_start.min(data.len())..];
        match msg.header("Content-Length") {
            Some(cl) => {
                let Some(len) = content_length(cl) else {
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

    /// What identifies this request's server transaction, together with its
    /// method (RFC 3261 §17.2.3): the branch when it has RFC 3261's magic
    /// cookie, with the sent-by (host:port) of the top Via — a branch is only
    /// unique per client, so another peer reusing it (by accident or to have
    /// its request taken for a retransmission) starts a transaction of its
    /// own. Without the cookie (RFC 2543 peers, RFC 4475 3.1.3.1 and 3.4): the
    /// Request-URI, To tag, From tag, Call-ID, CSeq number and top Via
    /// together. ACK and CANCEL have the key of the INVITE they belong to.
    pub fn transaction_key(&self) -> Option<String> {
        let via = self.header("Via")?;
        let head = || via.split(';').next().unwrap_or("").split_whitespace().collect::<String>();
        if let Some(b) = self.branch().filter(|b| b.starts_with("z9hG4bK")) {
            let sent_by = Via::parse(via).map(|v| v.sent_by()).unwrap_or_else(|| head().to_ascii_lowercase());
            return Some(format!("{b}|{sent_by}"));
        }
        let (n, _) = self.cseq()?;
        let via = head();
        let uri = match &self.start {
            StartLine::Request { uri, .. } => uri.as_str(),
            StartLine::Response { .. } => "",
        };
        Some(format!("2543|{uri}|{}|{}|{}|{n}|{via}|{}", self.from_tag().unwrap_or(""), self.call_id()?, self.to_tag().filter(|_| self.method() != Some("ACK")).unwrap_or(""), self.branch().unwrap_or("")))
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

/// The sent-protocol and sent-by of a Via value (RFC 3261 §20.42): where the
/// sender says it listens for responses, and over what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// Upper case: `UDP`, `TCP`, `TLS`, `SCTP`, …
    pub transport: String,
    /// Lower case; an IPv6 reference keeps its brackets.
    pub host: String,
    pub port: Option<u16>,
}

impl Via {
    /// Reads `SIP/2.0/UDP host:port;params` (any whitespace around `/` and
    /// `:`, as RFC 4475 3.1.1.1 folds it); `None` when it is not one.
    pub fn parse(value: &str) -> Option<Via> {
        let head = split_params(value).into_iter().next()?;
        let mut parts = head.splitn(3, '/');
        if !parts.next()?.trim().eq_ignore_ascii_case("SIP") {
            return None;
        }
        let _version = parts.next()?;
        let (transport, sent_by) = parts.next()?.trim().split_once(char::is_whitespace)?;
        let sent_by: String = sent_by.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_lowercase();
        let (host, port) = if let Some(rest) = sent_by.strip_prefix('[') {
            let (h, after) = rest.split_once(']')?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':')?.parse().ok()?),
            };
            (format!("[{h}]"), port)
        } else {
            match sent_by.split_once(':') {
                Some((h, p)) => (h.to_string(), Some(p.parse().ok()?)),
                None => (sent_by, None),
            }
        };
        if host.is_empty() || host == "[]" || transport.is_empty() {
            return None;
        }
        Some(Via { transport: transport.trim().to_ascii_uppercase(), host, port })
    }

    /// `host[:port]` as sent (lower case): half of what names a server
    /// transaction (RFC 3261 §17.2.3).
    pub fn sent_by(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.clone(),
        }
    }

    /// The sent-by host when it is an IP address.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.trim_start_matches('[').trim_end_matches(']').parse().ok()
    }

    /// Whether responses go back over the connection the request came on
    /// (RFC 3261 §18.2.2: TCP, TLS, SCTP, WebSocket) rather than to an address.
    pub fn is_reliable(&self) -> bool {
        self.transport != "UDP"
    }
}

/// Splits a header value on `;` outside quoted strings.
fn split_params(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut quoted, mut escaped, mut start) = (false, false, 0);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ';' if !quoted => {
                out.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&value[start..]);
    out
}

impl Message {
    /// Records on the top Via where the request really came from, so every
    /// response to it (and every retransmission of those) carries it:
    /// `received=<source IP>` when the sent-by host is not that address
    /// (RFC 3261 §18.2.1), and both `received` and `rport=<source port>` when
    /// the client asked for them with an empty `rport` (RFC 3581 §4), or when
    /// `force_rport` treats every client as if it had (NATed phones that do
    /// not ask). Any `received`/`rport` the request brought is replaced.
    pub fn stamp_via(&mut self, source: SocketAddr, force_rport: bool) {
        let Some(slot) = self.headers.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case("Via")) else { return };
        let ip = source.ip().to_canonical();
        let parts = split_params(&slot.1);
        let name_of = |p: &str| p.split('=').next().unwrap_or("").trim().to_ascii_lowercase();
        let wants_rport = force_rport || parts.iter().skip(1).any(|p| name_of(p) == "rport");
        let differs = Via::parse(&slot.1).and_then(|v| v.ip()).map(|h| h.to_canonical()) != Some(ip);
        let stamp = match (wants_rport, differs) {
            (true, _) => format!(";received={ip};rport={}", source.port()),
            (false, true) => format!(";received={ip}"),
            (false, false) => String::new(),
        };
        let mut out = parts.first().map_or("", |h| h.trim()).to_string();
        let mut stamped = false;
        for p in parts.iter().skip(1) {
            match name_of(p).as_str() {
                "received" => {}
                "rport" => {
                    if !stamped {
                        out.push_str(&stamp);
                        stamped = true;
                    }
                }
                _ => {
                    out.push(';');
                    out.push_str(p.trim());
                }
            }
        }
        if !stamped {
            out.push_str(&stamp);
        }
        slot.1 = out;
    }

    /// Where a response to this request (received from `source`, its Via
    /// stamped by [`Message::stamp_via`]) is sent (RFC 3261 §18.2.2, RFC 3581
    /// §4): over a reliable transport, back on the connection (`source`); with
    /// `rport`, to the source address and port; otherwise (UDP) to the source
    /// IP at the port of the Via's sent-by, 5060 when it names none. A Via we
    /// cannot read gets the answer where the request came from.
    pub fn response_addr(&self, source: SocketAddr) -> SocketAddr {
        let Some(value) = self.header("Via") else { return source };
        let Some(via) = Via::parse(value) else { return source };
        if via.is_reliable() || param(value, "rport").is_some() {
            return source;
        }
        SocketAddr::new(source.ip(), via.port.unwrap_or(5060))
    }
}

/// Where the header section ends: the first empty line, CRLF or LF alone
/// (the end of the head, the start of the body).
pub(crate) fn find_head_end(data: &[u8]) -> Option<(usize, usize)> {
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

/// The start line, and for a request that can be answered but not accepted,
/// the status and why (RFC 4475 3.1.2.7–3.1.2.11, 3.1.2.16).
type Start = (StartLine, Option<(u16, &'static str)>);

fn parse_start(line: &str) -> Option<Start> {
    let mut parts = line.split_whitespace();
    let a = parts.next()?;
    if a.eq_ignore_ascii_case("SIP/2.0") {
        // A status code of three digits, or the response is dropped (3.1.2.19).
        let code: u16 = parts.next().filter(|c| c.len() == 3)?.parse().ok().filter(|c| (100..700).contains(c))?;
        let reason = parts.collect::<Vec<_>>().join(" ");
        return Some((StartLine::Response { code, reason }, None));
    }
    if !is_token(a) {
        return None;
    }
    // Method SP Request-URI SP SIP-Version, single spaces, nothing after.
    let fields: Vec<&str> = line.split(' ').collect();
    let version = *fields.iter().rev().find(|f| !f.is_empty())?;
    let uri = fields.get(1).copied().unwrap_or("");
    let problem = if !version.to_ascii_uppercase().starts_with("SIP/") {
        return None;
    } else if !version.eq_ignore_ascii_case("SIP/2.0") {
        Some((505, "Version Not Supported"))
    } else if line.ends_with(' ') || line.contains('\t') {
        Some((400, "Bad Request (whitespace in the Request-Line)"))
    } else if fields.len() != 3 || fields.iter().any(|f| f.is_empty()) {
        Some((400, "Bad Request (the Request-URI has spaces, or the Request-Line extra ones)"))
    } else if uri.starts_with('<') {
        Some((400, "Bad Request (the Request-URI is enclosed in <>)"))
    } else if !uri.contains(':') {
        Some((400, "Bad Request (the Request-URI has no scheme)"))
    } else if (uri.starts_with("sip:") || uri.starts_with("sips:")) && uri.rsplit('@').next().unwrap_or(uri).contains('?') {
        Some((400, "Bad Request (header fields in the Request-URI)"))
    } else if (uri.starts_with("sip:") || uri.starts_with("sips:")) && {
        // An IPv6 host must be in brackets (RFC 5118 3.2).
        let host = uri.split_once(':').map_or("", |(_, r)| r);
        let host = host.rsplit('@').next().unwrap_or(host).split([';', '?']).next().unwrap_or("");
        !host.starts_with('[') && host.matches(':').count() > 1
    } {
        Some((400, "Bad Request (an IPv6 address in the Request-URI without brackets)"))
    } else {
        None
    };
    let uri = if problem.is_some() { fields.get(1).copied().unwrap_or("").to_string() } else { uri.to_string() };
    Some((StartLine::Request { method: a.to_string(), uri }, problem))
}

/// What is wrong with a header value RFC 4475 calls invalid: extraneous
/// separators in Via (3.1.2.1), an unterminated quoted display name (3.1.2.6),
/// a display name of non-token characters (3.1.2.15), spaces inside a URI
/// (3.1.2.14), a bare addr-spec with parameters or headers that need `<>`
/// (3.1.2.13), overlarge scalars (3.1.2.4).
fn header_problem(name: &str, value: &str) -> Option<String> {
    match name {
        "Via" => {
            let params: Vec<&str> = value.split(';').skip(1).collect();
            (value.is_empty() || value.ends_with(';') || params.iter().any(|p| p.trim().is_empty()))
                .then(|| "extraneous separators in Via".to_string())
        }
        "From" | "To" | "Contact" | "Route" | "Record-Route" | "Reply-To" => {
            if value.trim() == "*" && name == "Contact" {
                return None;
            }
            let unescaped_quotes = value.replace("\\\"", "").matches('"').count();
            if unescaped_quotes % 2 == 1 {
                return Some(format!("unterminated quoted string in {name}"));
            }
            match (value.find('<'), value.find('>')) {
                (Some(a), Some(b)) if a < b => {
                    let display = value[..a].trim();
                    let uri = &value[a + 1..b];
                    if uri.trim() != uri || uri.contains(char::is_whitespace) {
                        return Some(format!("spaces inside the URI in {name}"));
                    }
                    // Unquoted: tokens only (non-ASCII letters allowed: phones send
                    // CJK names unquoted).
                    let token_ish = |w: &str| w.chars().all(|c| !c.is_ascii() || is_token(c.encode_utf8(&mut [0; 4])));
                    if !display.is_empty() && !display.starts_with('"') && !display.split_whitespace().all(token_ish) {
                        return Some(format!("the display name in {name} must be quoted"));
                    }
                    None
                }
                (None, None) => {
                    let uri = value.split(';').next().unwrap_or("").trim();
                    if uri.rsplit('@').next().unwrap_or(uri).contains('?') || uri.contains(char::is_whitespace) {
                        return Some(format!("{name} needs <> around a URI with headers or spaces"));
                    }
                    None
                }
                _ => Some(format!("unbalanced <> in {name}")),
            }
        }
        "Max-Forwards" => value.trim().parse::<u8>().is_err().then(|| "Max-Forwards is not 0 to 255".to_string()),
        "Expires" => value.trim().parse::<u32>().is_err().then(|| "Expires is not a number of seconds".to_string()),
        _ => None,
    }
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
    // Escapes are bytes of UTF-8 (RFC 3986): decoded as bytes, then read as
    // text, so an escaped or raw non-ASCII user stays what it was.
    let mut out = Vec::with_capacity(user.len());
    let b = user.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
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
