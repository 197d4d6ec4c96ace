//! The segment catalogue in flows/ covers every segment a reading can use, and
//! `ivr say` prints the reading then its segments.

mod common;
use common::*;

#[test]
fn segments_file_matches_the_inventory() {
    let text = std::fs::read_to_string(root().join("flows/segments.toml")).unwrap();
    for (id, spoken) in ivr_speech::SEGMENTS {
        let line = format!("{id} = \"{spoken}\"");
        assert!(text.lines().any(|l| l.trim() == line), "flows/segments.toml lacks `{line}`");
    }
}

#[test]
fn ivr_say_prints_text_then_segments() {
    let out = ivr(&["say", "--lang", "zh", "--as", "money", "10.05"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), "十元零五分\nzh_shi\nzh_yuan\nzh_0\nzh_5\nzh_fen\n");
    let out = ivr(&["say", "--lang", "en", "--as", "number", "-2.50"]);
    assert_eq!(stdout(&out).lines().next(), Some("minus two point five zero"));
    let bad = ivr(&["say", "--as", "date", "2026-02-30x"]);
    assert_eq!(bad.status.code(), Some(1));
}
