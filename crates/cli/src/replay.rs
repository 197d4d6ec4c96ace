//! `ivr test --from-record calls.jsonl CALL_ID`: a production call turned into
//! a scenario (`*.test.toml`) that replays it — the caller's keys at the times
//! they were pressed, each service's answers (and how long they took), each
//! hand-off's outcome — and expects what the call did: its path and how it
//! ended. Secrets never reach call records, so they never reach the scenario.

use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};

use serde_json::Value;

/// A call's last record line in `calls.jsonl` (its record).
pub fn find_record(calls: &Path, call_id: &str) -> Result<Value, String> {
    let text = std::fs::read_to_string(calls).map_err(|e| format!("cannot read `{}`: {e}", calls.display()))?;
    let found = text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(|r| r["call_id"] == call_id).last();
    found.ok_or_else(|| format!("no call {call_id:?} in `{}`", calls.display()))
}

/// `to` as seen from the directory `from` (both relative to the same place, or both absolute).
fn relative(to: &Path, from: &Path) -> PathBuf {
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let (to, from) = (abs(to), abs(from));
    let (t, f): (Vec<Component>, Vec<Component>) = (to.components().collect(), from.components().collect());
    let common = t.iter().zip(&f).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..f.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c);
    }
    out
}

fn quote(s: &str) -> String {
    // A TOML basic string (JSON's escapes are TOML's).
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

fn duration(ms: u64) -> String {
    if ms % 1000 == 0 { format!("{}s", ms / 1000) } else { format!("{ms}ms") }
}

/// The scenario replaying `record`, run against `flow`, to be written at `out`
/// (the flow's path is written relative to it). `fingerprint` is the flow's
/// version now, to say when the call ran on another.
pub fn scenario(record: &Value, flow: &Path, out_dir: &Path, fingerprint: &str, zone: &str) -> Result<String, String> {
    let call_id = record["call_id"].as_str().unwrap_or("");
    let start = record["start_ms"].as_i64().ok_or("the record has no start_ms")?;
    let tz = jiff::tz::TimeZone::get(zone).map_err(|e| format!("time zone {zone}: {e}"))?;
    let at = jiff::Timestamp::from_millisecond(start).map_err(|e| e.to_string())?.to_zoned(tz);
    let version = record["flow_version"].as_str().unwrap_or("");
    let mut o = String::new();
    let _ = writeln!(o, "# Replays call {call_id} ({}), written by `ivr test --from-record`.", at.strftime("%Y-%m-%d %H:%M:%S %Z"));
    let release = record["release"].as_str().filter(|r| !r.is_empty()).map(|r| format!("release {r}, ")).unwrap_or_default();
    let _ = writeln!(o, "# It ran on {release}flow version {version}.");
    if !version.is_empty() && version != fingerprint {
        let _ = writeln!(o, "# The flow has changed since (now {fingerprint}): where this scenario fails, the change altered what this caller met.");
    }
    let _ = writeln!(o, "# The caller's number is the recorded one: replace it if your repository must not keep callers' numbers.");
    if record["state"] == "open" || record["outcome"] == "server_crashed" {
        let _ = writeln!(o, "# The call's record was not closed (the server stopped during it): the replay stops where the record does.");
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "flow = {}", quote(&relative(flow, out_dir).to_string_lossy()));
    let _ = writeln!(o, "name = {}", quote(&format!("replay of {call_id}")));
    let _ = writeln!(o, "dialed = {}", quote(record["dialed"].as_str().unwrap_or("")));
    let _ = writeln!(o, "caller = {}", quote(record["caller"].as_str().unwrap_or("")));
    let _ = writeln!(o, "at = {}", quote(&at.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()));

    // The caller's keys, each when it was pressed (a key typed ahead, or one of
    // a secret, was recorded as `*`: replayed as 0).
    let timeline: Vec<&Value> = record["timeline"].as_array().map(|t| t.iter().collect()).unwrap_or_default();
    let mut moves: Vec<String> = Vec::new();
    let mut masked = false;
    let mut t = 0u64;
    for m in timeline.iter().filter(|m| m["event"] == "key") {
        let at_ms = m["t_ms"].as_u64().unwrap_or(t);
        let mut key = m["key"].as_str().unwrap_or("").to_string();
        if key.is_empty() {
            continue;
        }
        if at_ms > t {
            moves.push(format!("wait {}", duration(at_ms - t)));
            t = at_ms;
        }
        if m["hidden"] == true {
            key = "0".into();
            masked = true;
        }
        moves.push(format!("ahead {key}"));
    }
    let end = record["end_ms"].as_i64().filter(|&e| e > 0).map(|e| (e - start).max(0) as u64);
    if record["outcome"] == "caller_hung_up" {
        if let Some(e) = end.filter(|&e| e > t) {
            moves.push(format!("wait {}", duration(e - t)));
        }
        moves.push("hangup now".into());
    }
    if masked {
        let _ = writeln!(o, "# Keys recorded as * (secret, or typed before the flow listened) are replayed as 0.");
    }
    let _ = writeln!(o, "keys = [{}]", moves.iter().map(|m| quote(m)).collect::<Vec<_>>().join(", "));

    // What the services and hand-offs answered, in turn.
    let mut stubs: std::collections::BTreeMap<String, Vec<String>> = std::collections::BTreeMap::new();
    let mut requests: Vec<String> = Vec::new();
    let mut handoffs = record["handoffs"].as_array().map(|h| h.iter().collect::<Vec<_>>()).unwrap_or_default().into_iter();
    for m in &timeline {
        match m["event"].as_str() {
            Some("answer") => {
                let service = m["service"].as_str().unwrap_or("").to_string();
                let mut answer = format!("{{ outcome = {}", quote(m["outcome"].as_str().unwrap_or("failed")));
                if let Some(fields) = m["fields"].as_object().filter(|f| !f.is_empty()) {
                    let fs: Vec<String> = fields.iter().map(|(k, v)| format!("{k} = {}", quote(v.as_str().unwrap_or(&v.to_string())))).collect();
                    let _ = write!(answer, ", fields = {{ {} }}", fs.join(", "));
                }
                if let Some(took) = m["took_ms"].as_u64().filter(|&d| d >= 100) {
                    let _ = write!(answer, ", delay = {}", quote(&duration(took / 100 * 100)));
                }
                answer.push_str(" }");
                requests.push(quote(&service));
                stubs.entry(service).or_default().push(answer);
            }
            Some("done") => {
                let outcome = m["outcome"].as_str().unwrap_or("failed");
                let (stub, what) = match m["op"].as_str() {
                    Some("queue") => ("enqueue", handoffs.find(|h| h["kind"] == "queue").map(|h| format!("enqueue(queue={})", h["target"].as_str().unwrap_or("")))),
                    Some("agent") => ("dial_agent", handoffs.find(|h| h["kind"] == "agent").map(|h| format!("dial_agent(work_number={})", h["target"].as_str().unwrap_or("")))),
                    _ => ("record", Some("record".to_string())),
                };
                requests.push(quote(&what.unwrap_or_else(|| stub.to_string())));
                stubs.entry(stub.to_string()).or_default().push(format!("{{ outcome = {} }}", quote(outcome)));
            }
            _ => {}
        }
    }
    // A hand-off the caller left (hung up while queued) has no answer: it was asked all the same.
    for h in handoffs {
        let what = match h["kind"].as_str() {
            Some("queue") => format!("enqueue(queue={})", h["target"].as_str().unwrap_or("")),
            Some("agent") => format!("dial_agent(work_number={})", h["target"].as_str().unwrap_or("")),
            _ => continue,
        };
        requests.push(quote(&what));
        let stub = if h["kind"] == "queue" { "enqueue" } else { "dial_agent" };
        // Never answered: the caller hung up first (the stub answers later than the call lasts).
        stubs.entry(stub.to_string()).or_default().push(format!("{{ outcome = \"left\", delay = {} }}", quote(&duration(end.unwrap_or(0) + 60_000))));
    }
    if !stubs.is_empty() {
        let _ = writeln!(o, "\n[stubs]");
        for (service, answers) in &stubs {
            if answers.len() == 1 {
                let _ = writeln!(o, "{service} = {}", answers[0]);
            } else {
                let _ = writeln!(o, "{service} = [\n    {},\n]", answers.join(",\n    "));
            }
        }
    }

    // What the call did.
    let _ = writeln!(o, "\n[expect]");
    let path: Vec<String> = record["nodes"].as_array().into_iter().flatten().filter_map(Value::as_str).map(quote).collect();
    let _ = writeln!(o, "path = [{}]", path.join(", "));
    let _ = writeln!(o, "requests = [{}]", requests.join(", "));
    let outcome = record["outcome"].as_str().unwrap_or("");
    let expect = match outcome {
        "caller_hung_up" => Some("caller hangup".to_string()),
        "hangup:retries_exhausted" => Some("retries exhausted".into()),
        o if o.starts_with("hangup") || o == "flow_ended" => Some("hangup".into()),
        o if o.starts_with("transferred") => Some(o.split_once(':').map_or("transfer".to_string(), |(_, n)| format!("transfer {n}"))),
        o if o.starts_with("fault") || o == "loop_guard" => Some("fault".into()),
        _ => None,
    };
    match expect {
        Some(e) => {
            let _ = writeln!(o, "outcome = {}", quote(&e));
        }
        None => {
            let _ = writeln!(o, "# outcome {outcome:?} is the network's or the server's, not the flow's: not expected here");
        }
    }
    Ok(o)
}
