//! What a scenario's call did, read from its transcript, and how it compares
//! with what the scenario expects: a list of [`Failure`]s, each with a diff
//! and the place in the transcript where the call went another way.

use serde_json::{json, Value as Json};

use crate::scenario::{parse_request, EndExpect, Expect};
use crate::sim::Record;

/// The wildcard of expectation lists: any number of items, none included.
pub const ANY: &str = "...";

/// Lines of transcript shown before and after a mismatch.
const CONTEXT: usize = 4;

/// Lines of a diff shown at most.
const MAX_DIFF: usize = 24;

/// One thing the call did, where the transcript shows it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// As a failure shows it.
    pub shown: String,
    /// The transcript line (index into the records).
    pub at: usize,
    /// What an expectation entry may name it by.
    names: Vec<String>,
    /// A request's arguments, as shown (secrets masked).
    args: Vec<(String, String)>,
}

/// What one call did.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub path: Vec<Seen>,
    pub heard: Vec<Seen>,
    pub said: Vec<Seen>,
    pub requests: Vec<Seen>,
    /// How the call ended (`hangup`, `caller hangup`, `transfer +86…`, …), and where.
    pub end: Option<(String, usize)>,
    /// Operations no stub answered.
    pub unanswered: Vec<Seen>,
}

fn field(r: &Record, k: &str) -> String {
    r.data.get(k).map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string)).unwrap_or_default()
}

/// Removes the coverage probes from a transcript (returning their numbers) and
/// masks keys typed ahead into a secret `collect`: the caller's PIN never
/// appears in test output, however early it was typed.
pub fn clean(records: Vec<Record>) -> (Vec<Record>, Vec<u32>) {
    let mut probes = Vec::new();
    let mut out: Vec<Record> = Vec::with_capacity(records.len());
    for r in records {
        if field(&r, "event") == "probe" {
            probes.push(r.data.get("probe").and_then(Json::as_u64).unwrap_or(0) as u32);
        } else {
            out.push(r);
        }
    }
    // Keys pressed back to back read as one line: `☎ caller presses 600000`.
    let mut merged: Vec<Record> = Vec::with_capacity(out.len());
    for r in out {
        if let Some(last) = merged.last_mut() {
            let same = field(last, "event") == "key" && field(&r, "event") == "key" && last.t_ms == r.t_ms && last.data.get("ahead") == r.data.get("ahead");
            if same {
                let keys = field(last, "key") + &field(&r, "key");
                last.data.insert("key".into(), json!(keys));
                continue;
            }
        }
        merged.push(r);
    }
    let mut out = merged;
    let mut next_secret = false;
    for r in out.iter_mut().rev() {
        match field(r, "event").as_str() {
            "collect" => next_secret = r.data.get("secret") == Some(&json!(true)),
            "key" if next_secret && r.data.get("ahead") == Some(&json!(true)) => {
                let n = field(r, "key").chars().count();
                r.data.insert("key".into(), json!(crate::sim::SECRET_KEY.repeat(n)));
            }
            _ => {}
        }
    }
    (out, probes)
}

/// Reads what the call did from its (cleaned) transcript.
pub fn observe(records: &[Record]) -> Observed {
    let mut o = Observed::default();
    for (at, r) in records.iter().enumerate() {
        let seen = |shown: String, names: Vec<String>| Seen { shown, at, names, args: Vec::new() };
        match field(r, "event").as_str() {
            "node" => {
                let name = field(r, "name");
                o.path.push(seen(name.clone(), vec![name]));
            }
            "play" => {
                let (id, text) = (field(r, "prompt"), field(r, "text"));
                o.heard.push(seen(format!("{id} · {text}"), vec![id, text]));
            }
            "say" => {
                let (kind, value, text) = (field(r, "as"), field(r, "value"), field(r, "text"));
                o.said.push(seen(format!("{kind} {value} · {text}"), vec![format!("{kind} {value}"), value, text]));
            }
            "service" | "enqueue" | "dial_agent" | "record" => {
                let (name, args) = request_of(r);
                let shown = format!("{name}({})", args.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", "));
                o.requests.push(Seen { shown, at, names: vec![name], args });
            }
            "unanswered" => o.unanswered.push(seen(field(r, "op"), Vec::new())),
            "hangup" => {
                let how = match field(r, "reason").as_str() {
                    "caller" => "caller hangup",
                    "retries_exhausted" => "retries exhausted",
                    "fault" => "fault",
                    _ => "hangup",
                };
                o.end = Some((how.to_string(), at));
            }
            "transfer" => o.end = Some((format!("transfer {}", field(r, "target")), at)),
            _ => {}
        }
    }
    o
}

/// A request line's name and arguments, as the transcript shows them.
fn request_of(r: &Record) -> (String, Vec<(String, String)>) {
    match field(r, "event").as_str() {
        "service" => {
            let args = r.data.get("args").and_then(Json::as_object).map(|a| a.iter().map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_string))).collect()).unwrap_or_default();
            (field(r, "service"), args)
        }
        "enqueue" => ("enqueue".into(), vec![("queue".into(), field(r, "queue")), ("priority".into(), field(r, "priority"))]),
        "dial_agent" => ("dial_agent".into(), vec![("work_number".into(), field(r, "work_number"))]),
        _ => ("record".into(), vec![("category".into(), field(r, "category"))]),
    }
}

/// A way the call differed from its scenario.
#[derive(Debug, Clone)]
pub struct Failure {
    /// What differed: `path`, `heard`, `said`, `requests`, `outcome`, `fault`, `stubs`, `keys`, `call`.
    pub what: String,
    pub message: String,
    /// `  same`, `- expected`, `+ actual` lines.
    pub diff: Vec<String>,
    /// The transcript line where the call went another way.
    pub at: Option<usize>,
}

impl Failure {
    pub fn new(what: &str, message: impl Into<String>) -> Failure {
        Failure { what: what.into(), message: message.into(), diff: Vec::new(), at: None }
    }

    /// The transcript lines around the mismatch, the line itself marked `→`.
    pub fn context(&self, transcript: &[String]) -> Vec<String> {
        let Some(at) = self.at else { return Vec::new() };
        let at = at.min(transcript.len().saturating_sub(1));
        let from = at.saturating_sub(CONTEXT);
        let to = (at + CONTEXT + 1).min(transcript.len());
        (from..to).map(|i| format!("{} {}", if i == at { "→" } else { " " }, transcript[i])).collect()
    }

    pub fn to_json(&self, transcript: &[String]) -> Json {
        json!({"what": self.what, "message": self.message, "diff": self.diff, "transcript": self.context(transcript)})
    }
}

/// An expected request as a failure shows it: a value given for a secret
/// argument (`secret(service, arg)`) shows as `****`, like the call's own.
pub fn mask_request(entry: &str, secret: &dyn Fn(&str, &str) -> bool) -> String {
    match parse_request(entry) {
        Ok((name, args)) if args.iter().any(|(k, _)| secret(&name, k)) => {
            let shown: Vec<String> = args.iter().map(|(k, v)| format!("{k}={}", if secret(&name, k) { "****" } else { v })).collect();
            format!("{name}({})", shown.join(", "))
        }
        _ => entry.to_string(),
    }
}

/// Compares a call with its scenario's expectations. `secret` says which
/// request arguments are secret (their expected values are never shown).
pub fn check(expect: &Expect, o: &Observed, transcript_len: usize, secret: &dyn Fn(&str, &str) -> bool) -> Vec<Failure> {
    let mut out = Vec::new();
    let lists = [
        ("path", &expect.path, &o.path[..], "steps and menus entered"),
        ("heard", &expect.heard, &o.heard, "prompts heard"),
        ("said", &expect.said, &o.said, "values read out"),
        ("requests", &expect.requests, &o.requests, "requests"),
    ];
    for (what, want, seen, title) in lists {
        let Some(want) = want else { continue };
        let eq = |e: &str, s: &Seen| -> bool {
            if what == "requests" {
                let Ok((name, args)) = parse_request(e) else { return false };
                s.names.first() == Some(&name) && args.iter().all(|(k, v)| s.args.iter().any(|(n, a)| n == k && a == v))
            } else {
                s.names.iter().any(|n| n == e.trim())
            }
        };
        let shown: Vec<String> = want.iter().map(|w| if what == "requests" { mask_request(w, secret) } else { w.clone() }).collect();
        if let Some(f) = compare(what, title, want, &shown, seen, eq, transcript_len) {
            out.push(f);
        }
    }
    if let Some(want) = &expect.outcome {
        let got = o.end.as_ref().map(|(s, _)| s.as_str()).unwrap_or("the call did not end");
        let ok = match want {
            EndExpect::Transfer(None) => got.starts_with("transfer "),
            other => got == other.to_string(),
        };
        if !ok {
            let mut f = Failure::new("outcome", format!("expected the call to end with `{want}`, it ended with `{got}`"));
            f.diff = vec![format!("- {want}"), format!("+ {got}")];
            f.at = o.end.as_ref().map(|(_, at)| *at).or(transcript_len.checked_sub(1));
            out.push(f);
        }
    }
    out
}

/// Aligns expected entries with what the call did; `None` when they agree.
/// `shown` is `want` as failures may show it.
fn compare(what: &str, title: &str, want: &[String], shown: &[String], seen: &[Seen], eq: impl Fn(&str, &Seen) -> bool, transcript_len: usize) -> Option<Failure> {
    let lines = align(want, seen, &eq);
    if lines.iter().all(|l| !matches!(l, Line::Missing(_) | Line::Extra(_))) {
        return None;
    }
    // The first difference, and where in the transcript it is.
    let mut at = None;
    let mut first = String::new();
    for (k, l) in lines.iter().enumerate() {
        match l {
            Line::Extra(j) => {
                at = Some(seen[*j].at);
                let missing_before = k > 0 && matches!(lines[k - 1], Line::Missing(_));
                if !missing_before {
                    first = format!("`{}` was not expected here", seen[*j].shown);
                }
                break;
            }
            Line::Missing(i) => {
                let next = lines[k..].iter().find_map(|l| match l {
                    Line::Same(_, j) | Line::Extra(j) | Line::Skipped(j) => Some(*j),
                    Line::Missing(_) | Line::Wild => None,
                });
                at = next.map(|j| seen[j].at).or(transcript_len.checked_sub(1));
                first = match lines.get(k + 1) {
                    Some(Line::Extra(j)) => format!("expected `{}`, got `{}`", shown[*i], seen[*j].shown),
                    _ => format!("expected `{}`, which never came", shown[*i]),
                };
                break;
            }
            _ => {}
        }
    }
    let mut diff = Vec::new();
    let mut skipped = 0;
    let flush = |diff: &mut Vec<String>, skipped: &mut usize| {
        if *skipped > 0 {
            diff.push(format!("  {ANY} ({} more)", skipped));
            *skipped = 0;
        }
    };
    for l in &lines {
        match l {
            Line::Skipped(_) => skipped += 1,
            Line::Same(i, _) => {
                flush(&mut diff, &mut skipped);
                diff.push(format!("  {}", shown[*i]));
            }
            Line::Missing(i) => {
                flush(&mut diff, &mut skipped);
                diff.push(format!("- {}", shown[*i]));
            }
            Line::Extra(j) => {
                flush(&mut diff, &mut skipped);
                diff.push(format!("+ {}", seen[*j].shown));
            }
            Line::Wild => {}
        }
    }
    flush(&mut diff, &mut skipped);
    // A call that went far astray: its first differences tell the story.
    if diff.len() > MAX_DIFF {
        let more = diff.len() - MAX_DIFF;
        diff.truncate(MAX_DIFF);
        diff.push(format!("  … {more} more line{}", if more == 1 { "" } else { "s" }));
    }
    Some(Failure { what: what.into(), message: format!("{title} differ: {first}"), diff, at })
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    /// Expected entry `i` is actual item `j`.
    Same(usize, usize),
    /// Actual item `j`, taken by a `...`.
    Skipped(usize),
    /// A `...` that took nothing more.
    Wild,
    /// Expected entry `i` did not happen.
    Missing(usize),
    /// Actual item `j` was not expected.
    Extra(usize),
}

/// The cheapest alignment (fewest missing and unexpected items, then the
/// most matches) of the expected entries with the actual items; `...` takes
/// any run for free.
fn align(want: &[String], seen: &[Seen], eq: &impl Fn(&str, &Seen) -> bool) -> Vec<Line> {
    const MISS: i64 = 1000;
    const MATCH: i64 = -1;
    let (n, m) = (want.len(), seen.len());
    let wild = |i: usize| want[i].trim() == ANY;
    // cost[i][j]: aligning want[i..] with seen[j..].
    let mut cost = vec![vec![0i64; m + 1]; n + 1];
    for i in (0..=n).rev() {
        for j in (0..=m).rev() {
            cost[i][j] = if i == n {
                (m - j) as i64 * MISS
            } else if wild(i) {
                let end = cost[i + 1][j];
                if j < m { end.min(cost[i][j + 1]) } else { end }
            } else {
                let mut c = cost[i + 1][j] + MISS;
                if j < m {
                    c = c.min(cost[i][j + 1] + MISS);
                    if eq(&want[i], &seen[j]) {
                        c = c.min(cost[i + 1][j + 1] + MATCH);
                    }
                }
                c
            };
        }
    }
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i == n {
            out.push(Line::Extra(j));
            j += 1;
        } else if wild(i) {
            // End the run as soon as the rest still aligns as well.
            if cost[i + 1][j] == cost[i][j] {
                out.push(Line::Wild);
                i += 1;
            } else {
                out.push(Line::Skipped(j));
                j += 1;
            }
        } else if j < m && eq(&want[i], &seen[j]) && cost[i + 1][j + 1] + MATCH == cost[i][j] {
            out.push(Line::Same(i, j));
            i += 1;
            j += 1;
        } else if cost[i + 1][j] + MISS == cost[i][j] {
            out.push(Line::Missing(i));
            i += 1;
        } else {
            out.push(Line::Extra(j));
            j += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(names: &[&str]) -> Vec<Seen> {
        names.iter().enumerate().map(|(at, n)| Seen { shown: n.to_string(), at, names: vec![n.to_string()], args: Vec::new() }).collect()
    }

    fn run(want: &[&str], got: &[&str]) -> Option<Failure> {
        let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        compare("path", "steps", &want, &want, &seen(got), |e, s| s.names[0] == e, got.len())
    }

    #[test]
    fn of_equally_short_diffs_the_one_matching_most_is_shown() {
        let f = run(&["d", "m1", "p", "...", "p", "m2"], &["d", "x1", "p", "y", "z", "d", "x1", "p", "y2", "z2"]).unwrap();
        assert_eq!(f.diff[..4], ["  d", "- m1", "+ x1", "  p"]);
    }

    fn rec(t_ms: u64, v: Json) -> Record {
        let Json::Object(data) = v else { unreachable!() };
        Record { t_ms, data }
    }

    #[test]
    fn keys_typed_ahead_into_a_secret_are_masked_and_keys_read_as_one_line() {
        let records = vec![
            rec(0, json!({"event": "key", "key": "2", "ahead": true})),
            rec(0, json!({"event": "key", "key": "4", "ahead": true})),
            rec(0, json!({"event": "probe", "probe": 3})),
            rec(5, json!({"event": "collect", "var": "pin", "secret": true})),
            rec(6, json!({"event": "key", "key": "1", "ahead": true})),
            rec(7, json!({"event": "collect", "var": "menu", "secret": false})),
        ];
        let (out, probes) = clean(records);
        assert_eq!(probes, [3]);
        let keys: Vec<String> = out.iter().filter(|r| field(r, "event") == "key").map(|r| field(r, "key")).collect();
        assert_eq!(keys, ["••", "1"]);
    }

    #[test]
    fn secret_values_written_in_an_expectation_are_never_shown() {
        let secret = |service: &str, arg: &str| service == "card_auth" && arg == "pin";
        assert_eq!(mask_request("card_auth(card=1, pin=246810)", &secret), "card_auth(card=1, pin=****)");
        assert_eq!(mask_request("balance(card=1)", &secret), "balance(card=1)");
    }

    #[test]
    fn exact_lists_and_wildcards() {
        assert!(run(&["a", "b", "c"], &["a", "b", "c"]).is_none());
        assert!(run(&["a", "...", "c"], &["a", "x", "y", "c"]).is_none());
        assert!(run(&["...", "c", "..."], &["a", "c", "d"]).is_none());
        assert!(run(&["..."], &[]).is_none());
        assert!(run(&["a", "..."], &["b"]).is_some());
        assert!(run(&["a", "b"], &["a", "b", "c"]).is_some());
    }

    #[test]
    fn a_difference_is_a_diff_at_its_place_in_the_transcript() {
        let f = run(&["a", "b", "c", "d"], &["a", "x", "c", "d"]).unwrap();
        assert_eq!(f.diff, vec!["  a", "- b", "+ x", "  c", "  d"]);
        assert_eq!(f.at, Some(1));
        assert!(f.message.contains("expected `b`, got `x`"), "{}", f.message);
        let f = run(&["a", "...", "z"], &["a", "b", "c"]).unwrap();
        assert_eq!(f.diff, vec!["  a", "  ... (2 more)", "- z"]);
        assert!(f.message.contains("`z`, which never came"), "{}", f.message);
    }
}
