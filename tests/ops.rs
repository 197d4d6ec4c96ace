//! The operations listener end to end: `/metrics` scraped before and after
//! real calls (sipp and a Rust caller) and read with a strict parser of the
//! Prometheus text format; `/readyz` turning 503 while a SIGTERM drains a call
//! in progress; `/healthz`; and the bearer tokens of the admin API and metrics.

mod common;
use common::server::*;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// A plain HTTP/1.1 request: (status, headers, body).
fn http(ops: SocketAddr, method: &str, path: &str, token: Option<&str>) -> (u16, String, String) {
    common::server::ops_request(ops, method, path, token, "")
}

fn get(ops: SocketAddr, path: &str) -> (u16, String, String) {
    http(ops, "GET", path, None)
}

/// One sample: its metric name and labels (sorted by name).
type Series = (String, Vec<(String, String)>);

/// A scrape, parsed: each series' value, and each family's type.
#[derive(Debug)]
struct Exposition {
    samples: BTreeMap<Series, f64>,
    types: BTreeMap<String, String>,
}

impl Exposition {
    /// The value of `name{labels}`; the series must exist.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut l: Vec<(String, String)> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        l.sort();
        *self.samples.get(&(name.to_string(), l)).unwrap_or_else(|| panic!("no series {name}{labels:?}"))
    }

    /// The sum over every series of `name` whose labels include `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|((n, l), _)| n == name && labels.iter().all(|(k, v)| l.iter().any(|(a, b)| a == k && b == v)))
            .map(|(_, v)| v)
            .sum()
    }
}

fn is_name(s: &str, colons: bool) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || (colons && f == ':'))
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || (colons && x == ':'))
}

fn parse_value(v: &str) -> Option<f64> {
    match v {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ if v.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c)) => v.parse().ok(),
        _ => None,
    }
}

/// `{a="x",b="y\"z"}` → the labels and the rest of the line.
fn parse_labels(s: &str) -> Result<(Vec<(String, String)>, &str), String> {
    let Some(mut rest) = s.strip_prefix('{') else { return Ok((Vec::new(), s)) };
    let mut labels = Vec::new();
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((labels, r));
        }
        let eq = rest.find('=').ok_or("a label without =")?;
        let name = &rest[..eq];
        if !is_name(name, false) || name.starts_with("__") {
            return Err(format!("bad label name {name:?}"));
        }
        rest = rest[eq + 1..].strip_prefix('"').ok_or("a label value without quotes")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next().ok_or("an unterminated label value")? {
                (i, '"') => break i,
                (_, '\\') => match chars.next().ok_or("a dangling escape")?.1 {
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    'n' => value.push('\n'),
                    c => return Err(format!("bad escape \\{c}")),
                },
                (_, '\n') => return Err("a newline in a label value".into()),
                (_, c) => value.push(c),
            }
        };
        if labels.iter().any(|(n, _): &(String, String)| n == name) {
            return Err(format!("label {name} twice"));
        }
        labels.push((name.to_string(), value));
        rest = &rest[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// The family a sample belongs to, given the declared types.
fn family_of<'a>(name: &'a str, types: &BTreeMap<String, String>) -> Option<&'a str> {
    if types.contains_key(name) {
        return Some(name);
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).filter(|f| types.get(*f).is_some_and(|t| t == "histogram" || t == "summary"))
}

/// Fails `parse` with a message unless `cond`.
macro_rules! ensure {
    ($cond:expr, $($why:tt)+) => {
        if !$cond {
            return Err(format!($($why)+));
        }
    };
}

/// A strict reading of the Prometheus text format (0.0.4): every line a
/// HELP, a TYPE or a sample; HELP and TYPE at most once per family and
/// before its samples; a family's samples together; no series twice;
/// histograms with `le` buckets that never decrease, a `+Inf` bucket equal
/// to `_count`, and a `_sum`.
fn parse(text: &str) -> Result<Exposition, String> {
    ensure!(text.ends_with('\n'), "the exposition ends with a newline");
    let mut samples = BTreeMap::new();
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helps = std::collections::BTreeSet::new();
    let mut done = std::collections::BTreeSet::new();
    let mut current: Option<String> = None;
    for (n, line) in text.lines().enumerate() {
        let at = format!("line {}: {line:?}", n + 1);
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kw, name, tail) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            ensure!(is_name(name, true), "{at}: a metric name");
            ensure!(!done.contains(name), "{at}: the family {name} was already closed");
            match kw {
                "HELP" => {
                    ensure!(helps.insert(name.to_string()), "{at}: HELP twice");
                    ensure!(!tail.is_empty(), "{at}: an empty HELP");
                }
                "TYPE" => {
                    ensure!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&tail), "{at}: a type");
                    ensure!(types.insert(name.to_string(), tail.to_string()).is_none(), "{at}: TYPE twice");
                    ensure!(!samples.keys().any(|(s, _): &Series| family_of(s, &types) == Some(name)), "{at}: TYPE after samples");
                }
                _ => return Err(format!("{at}: only HELP and TYPE comments")),
            }
            if current.as_deref() != Some(name) {
                done.extend(current.replace(name.to_string()));
            }
            continue;
        }
        ensure!(!line.is_empty() && !line.starts_with('#'), "{at}: a stray line");
        let split = line.find(['{', ' ']).ok_or_else(|| format!("{at}: a sample"))?;
        let name = &line[..split];
        ensure!(is_name(name, true), "{at}: a metric name");
        let (mut labels, rest) = parse_labels(&line[split..]).map_err(|e| format!("{at}: {e}"))?;
        let mut fields = rest.strip_prefix(' ').ok_or_else(|| format!("{at}: one space before the value"))?.split(' ');
        let value = fields.next().and_then(parse_value).ok_or_else(|| format!("{at}: a value"))?;
        if let Some(ts) = fields.next() {
            ensure!(ts.parse::<i64>().is_ok(), "{at}: a timestamp");
        }
        ensure!(fields.next().is_none(), "{at}: nothing after the timestamp");
        let family = family_of(name, &types).ok_or_else(|| format!("{at}: a sample without a TYPE"))?;
        ensure!(current.as_deref() == Some(family), "{at}: the samples of {family} are together");
        if types[family] == "counter" {
            ensure!(name.ends_with("_total") && value >= 0.0, "{at}: a counter is _total and never negative");
        }
        labels.sort();
        ensure!(samples.insert((name.to_string(), labels), value).is_none(), "{at}: this series twice");
    }
    // Histograms: cumulative buckets ending in +Inf = _count, and a _sum, per label set.
    for (family, _) in types.iter().filter(|(_, t)| *t == "histogram") {
        let mut groups: BTreeMap<Vec<(String, String)>, Vec<(f64, f64)>> = BTreeMap::new();
        for ((name, labels), v) in &samples {
            if name == &format!("{family}_bucket") {
                let le = labels.iter().find(|(k, _)| k == "le").ok_or_else(|| format!("{family}: a bucket without le"))?;
                let le = parse_value(&le.1).ok_or_else(|| format!("{family}: le is a number"))?;
                let rest: Vec<(String, String)> = labels.iter().filter(|(k, _)| k != "le").cloned().collect();
                groups.entry(rest).or_default().push((le, *v));
            }
        }
        ensure!(!groups.is_empty(), "{family}: buckets");
        for (labels, mut buckets) in groups {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            ensure!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{family}{labels:?}: cumulative buckets");
            let inf = buckets.last().filter(|b| b.0 == f64::INFINITY).ok_or_else(|| format!("{family}{labels:?}: a +Inf bucket"))?.1;
            let count = samples.get(&(format!("{family}_count"), labels.clone())).ok_or_else(|| format!("{family}{labels:?}: _count"))?;
            ensure!(inf == *count, "{family}{labels:?}: +Inf ({inf}) is the count ({count})");
            ensure!(samples.contains_key(&(format!("{family}_sum"), labels.clone())), "{family}{labels:?}: _sum");
        }
    }
    Ok(Exposition { samples, types })
}

fn scrape(ops: SocketAddr) -> Exposition {
    let (code, head, body) = get(ops, "/metrics");
    assert_eq!(code, 200, "{body}");
    assert!(head.contains("Content-Type: text/plain; version=0.0.4"), "{head}");
    let e = parse(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
    // The house rules: ivr_ names, and nothing that names a caller or a call.
    for ((name, labels), _) in &e.samples {
        assert!(name.starts_with("ivr_"), "{name}");
        for (k, v) in labels {
            assert!(!["caller", "call", "call_id", "number"].contains(&k.as_str()), "{name}: label {k}");
            assert!(!v.contains("13800138000") && !v.contains("ops-call"), "{name}: {k}={v} names a caller or a call");
        }
    }
    e
}

/// Waits until the server's counts show `done` (the last message of a call
/// and its count may trail the caller's view by a turn of the main loop).
fn scrape_until(ops: SocketAddr, done: impl Fn(&Exposition) -> bool) -> Exposition {
    common::wait_for("the counts to move", Duration::from_secs(5), || Some(scrape(ops)).filter(|e| done(e)))
}

#[test]
fn counters_and_histograms_move_with_the_calls_and_every_line_is_valid_exposition() {
    let s = serve("ops-metrics", "");
    let ops = s.ops.expect("an operations listener");
    let (code, _, body) = get(ops, "/healthz");
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    let (code, _, body) = get(ops, "/readyz");
    assert_eq!((code, body.contains("\"ready\": true")), (200, true), "{body}");

    let before = scrape(ops);
    assert_eq!(before.types["ivr_call_setup_seconds"], "histogram");
    assert_eq!(before.types["ivr_calls_active"], "gauge");
    assert_eq!(before.value("ivr_calls_active", &[]), 0.0);
    let flows = before.sum("ivr_flow_info", &[("flow", "securities_hotline")]);
    assert_eq!(flows, 1.0, "the loaded flow, with its version");

    let out = sipp(&s, "uac_hangup.xml", "962588", &["-m", "5", "-l", "5", "-r", "5"]);
    assert!(out.status.success(), "sipp failed: {}", String::from_utf8_lossy(&out.stdout));
    let started = |e: &Exposition| e.value("ivr_calls_started_total", &[("flow", "securities_hotline")]);
    let ended = |e: &Exposition, outcome| e.value("ivr_calls_ended_total", &[("outcome", outcome)]);
    let after = scrape_until(ops, |e| ended(e, "caller_hung_up") - ended(&before, "caller_hung_up") >= 5.0);
    let moved = |name: &str, labels: &[(&str, &str)]| after.value(name, labels) - before.value(name, labels);

    assert_eq!(started(&after) - started(&before), 5.0);
    assert_eq!(moved("ivr_calls_ended_total", &[("outcome", "caller_hung_up")]), 5.0);
    assert_eq!(after.sum("ivr_calls_ended_total", &[]) - before.sum("ivr_calls_ended_total", &[]), 5.0, "and no other outcome");
    assert_eq!(after.value("ivr_calls_active", &[]), 0.0);
    assert_eq!(moved("ivr_call_setup_seconds_count", &[]), 5.0);
    assert_eq!(moved("ivr_call_setup_seconds_bucket", &[("le", "+Inf")]), 5.0);
    assert_eq!(moved("ivr_call_setup_seconds_bucket", &[("le", "1")]), 5.0, "answered within a second on loopback");
    assert_eq!(moved("ivr_call_duration_seconds_count", &[]), 5.0);
    let talk = moved("ivr_call_duration_seconds_sum", &[]);
    assert!((7.5..60.0).contains(&talk), "five calls of 1.5 s and more: {talk}");
    assert_eq!(moved("ivr_call_duration_seconds_bucket", &[("le", "5")]), 5.0, "each under 5 s");
    for method in ["INVITE", "ACK", "BYE"] {
        assert_eq!(moved("ivr_sip_requests_total", &[("direction", "received"), ("method", method)]), 5.0, "{method}");
    }
    let ok_sent = moved("ivr_sip_responses_total", &[("direction", "sent"), ("class", "2xx")]);
    assert!(ok_sent >= 10.0, "a 200 for each INVITE and each BYE: {ok_sent}");
    assert_eq!(after.sum("ivr_shed_messages_total", &[]), 0.0, "nothing shed");

    // A caller who types 1 (quotes) and a stock code by SIP INFO: seven keys, one quote.
    let ua = TestUa::new(s.sip);
    let tag = ua.establish("962588", "ops-call-1");
    // Typed ahead of the prompts: the menu and the collect take them.
    for key in "1600000".chars() {
        ua.info("ops-call-1", &tag, &format!("Signal={key}\r\nDuration=160\r\n"));
    }
    let quoted = scrape_until(ops, |e| e.sum("ivr_service_requests_total", &[("service", "quote")]) >= 1.0);
    assert_eq!(quoted.value("ivr_calls_active", &[]), 1.0);
    assert_eq!(quoted.value("ivr_dtmf_keys_total", &[("source", "info")]) - before.value("ivr_dtmf_keys_total", &[("source", "info")]), 7.0);
    assert_eq!(quoted.value("ivr_service_requests_total", &[("service", "quote"), ("outcome", "ok")]), 1.0);
    assert_eq!(quoted.value("ivr_service_request_duration_seconds_count", &[("service", "quote")]), 1.0);
    ua.bye("ops-call-1", &tag);
    let last = scrape_until(ops, |e| e.value("ivr_calls_active", &[]) == 0.0);
    assert_eq!(last.value("ivr_calls_ended_total", &[("outcome", "caller_hung_up")]) - ended(&before, "caller_hung_up"), 6.0);
}

#[test]
fn readiness_turns_off_while_a_sigterm_drains_the_call_in_progress() {
    let mut s = serve("ops-drain", "");
    let ops = s.ops.expect("an operations listener");
    assert_eq!(get(ops, "/readyz").0, 200);
    let ua = TestUa::new(s.sip);
    let tag = ua.establish("962588", "drain-1");
    let _ = std::process::Command::new("kill").args(["-TERM", &s.child.id().to_string()]).status();
    let (code, body) = common::wait_for("/readyz to turn off", Duration::from_secs(5), || {
        let (code, _, body) = get(ops, "/readyz");
        (code != 200).then_some((code, body))
    });
    assert_eq!(code, 503, "{body}");
    let why: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(why, serde_json::json!({"ready": false, "reasons": ["draining"]}));
    assert_eq!(get(ops, "/healthz").0, 200, "alive while it drains");
    let m = scrape(ops);
    assert_eq!((m.value("ivr_draining", &[]), m.value("ivr_calls_active", &[])), (1.0, 1.0));
    // A new call is refused; the one in progress goes on until its caller hangs up.
    let refused = TestUa::new(s.sip).invite("962588", &ua.sdp(), "drain-2");
    assert!(refused.starts_with("SIP/2.0 503"), "{refused}");
    ua.bye("drain-1", &tag);
    common::wait_for("the server to stop once its last call ended", Duration::from_secs(10), || s.child.try_wait().unwrap());
    assert!(std::net::TcpStream::connect(ops).is_err(), "and its listener with it");
}

#[test]
fn the_admin_routes_and_metrics_take_their_own_tokens_and_health_is_open() {
    let s = serve("ops-tokens", "admin_token = \"adm-secret\"\nmetrics_token = \"prom-secret\"\n");
    let ops = s.ops.expect("an operations listener");
    assert_eq!(get(ops, "/healthz").0, 200);
    assert_eq!(get(ops, "/readyz").0, 200);
    assert_eq!(get(ops, "/metrics").0, 401);
    assert_eq!(http(ops, "GET", "/metrics", Some("adm-secret")).0, 401, "the admin token is not the metrics token");
    let (code, _, body) = http(ops, "GET", "/metrics", Some("prom-secret"));
    assert_eq!(code, 200);
    assert!(parse(&body).is_ok());
    assert_eq!(get(ops, "/state").0, 401);
    assert_eq!(http(ops, "GET", "/state", Some("prom-secret")).0, 401);
    assert_eq!(http(ops, "GET", "/state", Some("adm-secret")).0, 200);
    assert_eq!(http(ops, "POST", "/healthz", None).0, 405);
}

#[test]
fn the_parser_refuses_what_prometheus_would() {
    let ok = "# HELP a_total x\n# TYPE a_total counter\na_total{k=\"v\\\"q\"} 1\n";
    assert_eq!(parse(ok).unwrap().value("a_total", &[("k", "v\"q")]), 1.0);
    let bad = [
        "a_total 1\n",                                                                 // no TYPE
        "# TYPE a_total counter\na_total 1\na_total 2\n",                              // a series twice
        "# TYPE a_total counter\na_total{k=\"v\",k=\"w\"} 1\n",                        // a label twice
        "# TYPE a_total counter\na_total{k=v} 1\n",                                    // unquoted
        "# TYPE a_total counter\na_total one\n",                                       // not a number
        "# TYPE a gauge\n# TYPE b gauge\na 1\n",                                       // a family's samples apart
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\nh_sum 0\n", // buckets go down
        "# TYPE a gauge\na 1",                                                         // no final newline
    ];
    for text in bad {
        assert!(parse(text).is_err(), "accepted: {text:?}");
    }
}

/// Sends `head` as it is (for requests `http` would not write) and returns the answer.
fn raw(ops: SocketAddr, head: &str) -> String {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(ops).unwrap();
    c.write_all(head.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    out
}

#[test]
fn a_page_from_another_site_or_a_rebound_name_cannot_use_the_admin_api() {
    let s = common::server::serve("ops-foreign", "");
    let ops = s.ops.expect("the operations listener");
    let ask = |head: &str| raw(ops, head);
    let csrf = ask(&format!("POST /agents/1001/pause HTTP/1.1\r\nHost: {ops}\r\nOrigin: http://evil.example\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n"));
    assert!(csrf.starts_with("HTTP/1.1 403"), "{csrf}");
    let rebound = ask("GET /state HTTP/1.1\r\nHost: evil.example:8089\r\n\r\n");
    assert!(rebound.starts_with("HTTP/1.1 403"), "{rebound}");
    let fine = ask(&format!("GET /healthz HTTP/1.1\r\nHost: {ops}\r\nOrigin: http://{ops}\r\n\r\n"));
    assert!(fine.starts_with("HTTP/1.1 200"), "{fine}");
    let local = ask("GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert!(local.starts_with("HTTP/1.1 200"), "{local}");
}

#[test]
fn a_request_with_two_body_lengths_or_a_chunked_body_is_refused_not_guessed_at() {
    let s = common::server::serve("ops-smuggle", "");
    let ops = s.ops.expect("the operations listener");
    let ask = |head: &str| raw(ops, head);
    let two = ask(&format!("POST /agents/1001/pause HTTP/1.1\r\nHost: {ops}\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\nhello"));
    assert!(two.starts_with("HTTP/1.1 400") && two.contains("conflicting"), "{two}");
    let chunked = ask(&format!("POST /agents/1001/pause HTTP/1.1\r\nHost: {ops}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"));
    assert!(chunked.starts_with("HTTP/1.1 400") && chunked.contains("Transfer-Encoding"), "{chunked}");
    // The same length twice is one length, and the listener still serves.
    let same = ask(&format!("GET /healthz HTTP/1.1\r\nHost: {ops}\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n"));
    assert!(same.starts_with("HTTP/1.1 200"), "{same}");
}
