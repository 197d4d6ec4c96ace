//! `ivr report`: a day's KPIs from the records `ivr serve` writes (a fixture
//! day in tests/report: seven IVR calls, three queued, one abandoned, two
//! agents, two survey answers, two callers who call again within 24 h (one
//! of them the next day), an anonymous caller, and a call from the day before
//! that must not count).

mod common;
use common::*;

#[test]
fn a_days_report_from_the_records() {
    let out = ivr(&["report", "--data", "tests/report", "--date", "2026-11-23"]);
    assert!(out.status.success(), "{}", stderr(&out));
    insta::assert_snapshot!("report_day", stdout(&out));
    let json = ivr(&["report", "--data", "tests/report", "--date", "2026-11-23", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(v["ivr"]["calls"], 7, "the day before and the day after are not counted");
    assert!((v["all_queues"]["service_level"].as_f64().unwrap() - 200.0 / 3.0).abs() < 1e-9, "2 of 3 within 20 s");
    assert_eq!(v["all_queues"]["abandoned"], 1);
    assert_eq!(v["survey"]["satisfied"], 50.0);
    // A week from the day before holds the sixth call too.
    let week = ivr(&["report", "--data", "tests/report", "--date", "2026-11-22", "--days", "7", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&week)).unwrap();
    assert_eq!(v["ivr"]["calls"], 9);
    // No records yet: an empty report, not an error.
    let empty = ivr(&["report", "--data", "tests/no-such-dir", "--date", "2026-11-23"]);
    assert!(empty.status.success());
    assert!(stdout(&empty).contains("IVR: 0 calls"));
    assert_eq!(ivr(&["report", "--date", "23/11/2026"]).status.code(), Some(2));
    assert!(!ivr(&["report", "--data", "tests/report", "--by", "fortnight"]).status.success());
}

#[test]
fn the_funnel_containment_and_first_contact_resolution() {
    let json = ivr(&["report", "--data", "tests/report", "--date", "2026-11-23", "--format", "json"]);
    assert!(json.status.success(), "{}", stderr(&json));
    let v: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    // Four of seven calls never asked for an agent.
    assert_eq!(v["ivr"]["contained"], 4);
    assert_eq!(v["ivr"]["containment"], 57.1);
    // Six callers can be told apart (one is anonymous); two of them call
    // again within 24 h, one of them the next day, after the report's span.
    assert_eq!(v["first_contact"]["identified"], 6);
    assert_eq!(v["first_contact"]["repeated"], 2);
    assert_eq!(v["first_contact"]["rate"], 66.7);
    let nodes = v["funnel"]["securities_hotline"]["nodes"].as_array().unwrap();
    let node = |n: &str| nodes.iter().find(|x| x["node"] == n).unwrap_or_else(|| panic!("{n} in the funnel"));
    assert_eq!(node("main_menu")["reached"], 7);
    assert_eq!(node("main_menu")["keys"]["1"], 2);
    assert_eq!(node("main_menu")["hung_up"], 1, "the anonymous caller hung up at the menu");
    assert_eq!(node("quotes")["hung_up"], 2);
    assert_eq!(node("to_agent")["hung_up"], 1, "the caller who abandoned the queue; not the ones served");
    // A canary's calls beside the current release's.
    assert_eq!(v["releases"]["a1b2c3d4e5f6"]["calls"], 5);
    assert_eq!(v["releases"]["b2c3d4e5f6a7"]["calls"], 2);
    assert_eq!(v["releases"]["b2c3d4e5f6a7"]["hung_up_in_ivr"], 1, "the anonymous caller");
    let csv = stdout(&ivr(&["report", "--data", "tests/report", "--date", "2026-11-23", "--format", "csv", "--section", "releases"]));
    assert!(csv.contains("b2c3d4e5f6a7,2,100.0,1,"), "{csv}");
    // Queued: two of three callers waited for an agent to be free.
    assert_eq!(v["all_queues"]["queued"], 2);
    assert_eq!(v["all_queues"]["answer_rate"].as_f64().unwrap().round(), 67.0);
}

#[test]
fn reports_by_hour_week_and_month_and_as_csv() {
    let hourly = ivr(&["report", "--data", "tests/report", "--date", "2026-11-23", "--by", "hour", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&hourly)).unwrap();
    let periods = v["periods"].as_array().unwrap();
    assert_eq!(periods.len(), 24);
    assert_eq!(periods[9]["period"], "2026-11-23 09:00");
    assert_eq!(periods[9]["ivr_calls"], 2);
    assert_eq!(periods[10]["all_queues"]["abandoned"], 1);
    assert_eq!(periods.iter().map(|p| p["ivr_calls"].as_u64().unwrap()).sum::<u64>(), 7, "every call in one period");
    assert_eq!(v["hours"][10]["offered"], 2);
    // Agents' utilisation hour by hour: the peak hour (员工利用率最高) is read off it.
    assert_eq!(periods[10]["utilisation"], 8.1);
    assert_eq!(periods[3]["logged_in_s"], 0, "nobody logged in at 03:00");
    // Weeks run Monday to Sunday, clipped to the span: Sun 22nd, then Mon 23rd–Sat 28th.
    let weekly = ivr(&["report", "--data", "tests/report", "--date", "2026-11-22", "--days", "7", "--by", "week", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&weekly)).unwrap();
    let weeks: Vec<(String, u64)> = v["periods"].as_array().unwrap().iter().map(|p| (p["period"].as_str().unwrap().to_string(), p["ivr_calls"].as_u64().unwrap())).collect();
    assert_eq!(weeks, [("week of 2026-11-16".to_string(), 1), ("week of 2026-11-23".to_string(), 8)]);
    let monthly = ivr(&["report", "--data", "tests/report", "--date", "2026-11-20", "--days", "20", "--by", "month", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&monthly)).unwrap();
    let months: Vec<&str> = v["periods"].as_array().unwrap().iter().map(|p| p["period"].as_str().unwrap()).collect();
    assert_eq!(months, ["2026-11", "2026-12"]);
    let csv = ivr(&["report", "--data", "tests/report", "--date", "2026-11-22", "--days", "3", "--format", "csv"]);
    assert!(csv.status.success(), "{}", stderr(&csv));
    insta::assert_snapshot!("report_csv_periods", stdout(&csv));
    let funnel = ivr(&["report", "--data", "tests/report", "--date", "2026-11-23", "--format", "csv", "--section", "funnel"]);
    insta::assert_snapshot!("report_csv_funnel", stdout(&funnel));
    let hourly_table = ivr(&["report", "--data", "tests/report", "--date", "2026-11-23", "--by", "hour"]);
    insta::assert_snapshot!("report_by_hour", stdout(&hourly_table));
}

#[test]
fn charts_and_an_html_page() {
    let charts = std::env::temp_dir().join(format!("ivr-report-charts-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&charts);
    let out = ivr(&["report", "--data", "tests/report", "--date", "2026-11-23", "--format", "html", "--charts", charts.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    for name in ["calls_by_hour.svg", "queue_waits.svg", "abandon_curve.svg", "funnel_securities_hotline.svg"] {
        let svg = std::fs::read_to_string(charts.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{name} is a whole SVG");
        assert!(svg.len() > 3_000 && svg.matches("<rect").count() + svg.matches("<polyline").count() > 5, "{name} has something drawn: {} bytes", svg.len());
    }
    let funnel = std::fs::read_to_string(charts.join("funnel_securities_hotline.svg")).unwrap();
    assert!(funnel.contains("main_menu") && funnel.contains("vip_welcome"), "nodes named on the funnel");
    let hours = std::fs::read_to_string(charts.join("calls_by_hour.svg")).unwrap();
    assert!(hours.contains("service level %"));
    let page = stdout(&out);
    assert!(page.starts_with("<!doctype html>") && page.trim_end().ends_with("</html>"));
    assert_eq!(page.matches("<figure").count(), 4, "every chart inline");
    assert!(page.contains("接通率") && page.contains("一次解决率") && page.contains("66.7%"));
    let _ = std::fs::remove_dir_all(&charts);
}

#[test]
fn a_staffing_plan_from_the_records() {
    let out = ivr(&["plan", "--data", "tests/report", "--date", "2026-11-23", "--days", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    insta::assert_snapshot!("plan_day", stdout(&out));
    let json = ivr(&["plan", "--data", "tests/report", "--date", "2026-11-23", "--days", "1", "--roster", "9-10:0", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(v["hours"][0]["agents"], 0, "the roster given, not the one needed");
    assert_eq!(v["hours"][0]["sim_sl"], 0.0, "nobody answers with nobody there");
    assert_eq!(ivr(&["plan", "--data", "tests/report", "--roster", "25:1"]).status.code(), Some(2));
}

#[test]
fn damaged_and_hostile_records_neither_panic_nor_reach_the_terminal() {
    let dir = std::env::temp_dir().join(format!("ivr-report-hostile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let call = |id: &str, dialed: &str, end: i64| serde_json::json!({"call_id": id, "start_ms": 1795397400000i64, "end_ms": end, "dialed": dialed, "caller": "1", "flow": "a", "nodes": ["m"], "outcome": "caller_hung_up"}).to_string();
    let mut calls = format!("{}\n{}\n", call("x1", "\u{1b}[2J\u{1b}]0;pwned\u{7}", i64::MAX), call("x2", "=cmd|' /C calc'!A0", i64::MAX)).into_bytes();
    calls.extend_from_slice(b"{\"call_id\":\"torn\",\"dialed\":\"\xe9\x93");
    std::fs::write(dir.join("calls.jsonl"), calls).unwrap();
    // Only the documented fields, and sums that would overflow.
    let q = serde_json::json!({"joined_at_ms": 1795397400000i64, "queue": "general", "waited_ms": u64::MAX, "result": "answered", "talk_ms": u64::MAX, "wrap_up_ms": 5, "agent": "1"});
    std::fs::write(dir.join("queue.jsonl"), format!("{q}\n{q}\n")).unwrap();
    std::fs::write(dir.join("agents.jsonl"), serde_json::json!({"agent": "1", "state": "ready", "from_at_ms": i64::MIN, "to_at_ms": 1795397400000i64}).to_string() + "\n").unwrap();
    let data = dir.to_str().unwrap();
    for format in ["table", "csv", "json", "html"] {
        let out = ivr(&["report", "--data", data, "--date", "2026-11-23", "--format", format, "--sl", "18446744073709552"]);
        assert!(out.status.success(), "{format}: {}", stderr(&out));
        assert!(!stdout(&out).contains('\u{1b}'), "{format}: a control sequence reached the terminal");
    }
    let table = stdout(&ivr(&["report", "--data", data, "--date", "2026-11-23"]));
    assert!(table.contains("IVR: 2 calls") && table.contains("offered") && table.contains("general"), "{table}");
    let json: serde_json::Value = serde_json::from_str(&stdout(&ivr(&["report", "--data", data, "--date", "2026-11-23", "--format", "json"]))).unwrap();
    assert_eq!(json["all_queues"]["offered"], 2, "queue records with only the documented fields count");
    let _ = std::fs::remove_dir_all(&dir);
}
