//! `ivr report`: a day's KPIs from the records `ivr serve` writes (a fixture
//! day in tests/report: five IVR calls, three queued, one abandoned, two
//! agents, two survey answers, and a call from the day before that must not count).

mod common;
use common::*;

#[test]
fn a_days_report_from_the_records() {
    let out = ivr(&["report", "--data", "tests/report", "--date", "2026-11-23"]);
    assert!(out.status.success(), "{}", stderr(&out));
    insta::assert_snapshot!("report_day", stdout(&out));
    let json = ivr(&["report", "--data", "tests/report", "--date", "2026-11-23", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(v["ivr"]["calls"], 5, "the day before is not counted");
    assert!((v["all_queues"]["service_level"].as_f64().unwrap() - 200.0 / 3.0).abs() < 1e-9, "2 of 3 within 20 s");
    assert_eq!(v["all_queues"]["abandoned"], 1);
    assert_eq!(v["survey"]["satisfied"], 50.0);
    // A week from the day before holds the sixth call too.
    let week = ivr(&["report", "--data", "tests/report", "--date", "2026-11-22", "--days", "7", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&week)).unwrap();
    assert_eq!(v["ivr"]["calls"], 6);
    // No records yet: an empty report, not an error.
    let empty = ivr(&["report", "--data", "tests/no-such-dir", "--date", "2026-11-23"]);
    assert!(empty.status.success());
    assert!(stdout(&empty).contains("IVR: 0 calls"));
    assert_eq!(ivr(&["report", "--date", "23/11/2026"]).status.code(), Some(2));
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
