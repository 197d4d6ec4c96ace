//! `ivr sim --json` transcripts that walk every option of every menu of both
//! shipped flows. Monday 2026-11-23 10:00 Beijing time is inside agent and
//! trading hours; Saturday 2026-11-21 is outside both.

mod common;
use common::*;

const OPEN: &str = "2026-11-23T10:00:00+08:00";
const WEEKEND: &str = "2026-11-21T10:00:00+08:00";
const LATE: &str = "2026-11-23T23:00:00+08:00";

/// A fresh data directory for the embedded services of one test.
fn data_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("ivr-sim-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn transcript(name: &str, flow: &str, keys: &str, at: &str, extra: &[&str]) {
    let flow_path = format!("flows/{flow}.ivr");
    let data = data_dir(name);
    let data_arg = data.to_str().unwrap().to_string();
    let mut args = vec!["sim", flow_path.as_str(), "--json", "--keys", keys, "--at", at];
    args.extend_from_slice(extra);
    let shown = args.join(" ");
    args.extend_from_slice(&["--data", &data_arg]);
    let out = ivr(&args);
    let _ = std::fs::remove_dir_all(&data);
    assert_eq!(out.status.code(), Some(0), "{name}: {}", stderr(&out));
    let text = stdout(&out);
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{name}: {e}: {line}"));
        assert!(v["event"].is_string(), "{name}: line without event: {line}");
    }
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert!(
        matches!(last["event"].as_str(), Some("hangup" | "transfer")),
        "{name}: the call must end with a hang-up or transfer, got {last}"
    );
    insta::assert_snapshot!(name, format!("ivr {shown}\n{text}"));
}

macro_rules! sims {
    ($($name:ident: $flow:literal, $keys:literal, $at:expr $(, $extra:literal)*;)*) => {
        $(
            #[test]
            fn $name() {
                transcript(stringify!($name), $flow, $keys, $at, &[$($extra),*]);
            }
        )*
    };
}

sims! {
    // ---- securities hotline 962588: main menu
    sec_main_repeat_invalid_and_silence: "securities_hotline", "# 7 . . .", OPEN;
    sec_quote_read_again_next_and_back: "securities_hotline", "1 600000 2 1 000001 * h", OPEN;
    sec_quote_bad_code_and_not_found: "securities_hotline", "1 12345# 688001 h", OPEN;
    sec_quote_slow_hold_then_answer: "securities_hotline", "1 601398 * h", OPEN, "--stub", "quote=ok,delay_ms=2500,name=工商银行,last=7.21,prev_close=7.21,high=7.25,low=7.18";
    sec_quote_too_slow_times_out: "securities_hotline", "1 601398 h", OPEN, "--stub", "quote=ok,delay_ms=9000";
    sec_quote_service_down: "securities_hotline", "1 600000 h", OPEN, "--quotes", "no/such/quotes.csv";
    sec_quote_next_silence_goodbye: "securities_hotline", "1 600000", OPEN;
    sec_trade_buy_confirmed: "securities_hotline", "2 88001234# 135790 1 600000 10*52# 2# 1 h", OPEN;
    sec_trade_sell_rejected_price: "securities_hotline", "2 88001234# 135790 2 600000 99# 1# 1 h", OPEN;
    sec_trade_readback_again_and_cancel: "securities_hotline", "2 88001234# 135790 1 000001 11*8# 1# # 2 * h", OPEN;
    sec_trade_wrong_password_then_locked: "securities_hotline", "2 88001234# 000000 88001234# 111111 88001234# 222222 5", OPEN;
    sec_trade_query_and_cancel: "securities_hotline", "2 88001234# 135790 1 600000 10# 1# 1 3 4 20261123000001# 1 4 1# 2 7# 1 * h", OPEN;
    sec_trade_buy_fills_sell_pending: "securities_hotline", "2 88005678# 246810 1 601398 7*3# 10# 1 2 601398 7*9# 5# 1 3 * h", OPEN;
    sec_trade_market_closed: "securities_hotline", "2 88001234# 135790 1 2 h", WEEKEND;
    sec_subscriptions: "securities_hotline", "3 1 1 3 2 3 3 3 3 1 * * h", OPEN;
    sec_messages_each_kind: "securities_hotline", "4 1", OPEN;
    sec_messages_complaint: "securities_hotline", "4 2", OPEN;
    sec_messages_suggestion_fails: "securities_hotline", "4 3 *", OPEN, "--stub", "record=failed";
    sec_messages_back: "securities_hotline", "4 * h", OPEN;
    sec_agent_by_number_served_survey: "securities_hotline", "8 1001# 1", OPEN;
    sec_agent_by_number_busy_absent: "securities_hotline", "8 1002# 1 1003# 2 3", OPEN;
    sec_agent_by_number_menu_star: "securities_hotline", "8 1002# * h", OPEN;
    sec_agent_by_number_closed: "securities_hotline", "8 1001# 1", WEEKEND;
    sec_language_english_and_back: "securities_hotline", "9 2 9 1 9 * h", OPEN;
    sec_anywhere_zero_agent_survey: "securities_hotline", "0 2", OPEN;
    sec_survey_zero_goodbye: "securities_hotline", "0 0", OPEN;
    sec_agents_busy_menu: "securities_hotline", "0 2 * h", OPEN, "--stub", "enqueue=timeout";
    sec_agents_busy_leave_message: "securities_hotline", "0 1", OPEN, "--stub", "enqueue=no_agents";
    sec_queue_left_to_messages: "securities_hotline", "0 * h", OPEN, "--stub", "enqueue=left";
    sec_after_hours: "securities_hotline", "0 * 0 0", WEEKEND;
    sec_vip_line_priority: "securities_hotline", "0 4", OPEN, "--number", "962589";
    sec_english_caller: "securities_hotline", "1 000001 * h", OPEN, "--lang", "en";

    // ---- bank hotline 95588
    bank_balance: "bank_hotline", "1 6222020200112233445 246810 1 h", OPEN;
    bank_wrong_pin: "bank_hotline", "1 6222020200112233445 111111 h", OPEN;
    bank_transfer_done: "bank_hotline", "2 6222020200112233445 246810 6222000011112222# 1 500*5# 1 2", OPEN;
    bank_transfer_reenter_readback_cancel: "bank_hotline", "2 6222020200112233445 246810 6222000011112222# 2 6222000011113333# 1 20# # 2 h", OPEN;
    bank_transfer_insufficient: "bank_hotline", "2 6222020200112233445 246810 6222000011112222# 1 50000# 1 h", OPEN;
    bank_lost_card_priority: "bank_hotline", "3 5", OPEN;
    bank_lost_card_busy_records: "bank_hotline", "3", LATE, "--stub", "enqueue=no_agents";
    bank_main_star_repeats_and_english: "bank_hotline", "* 9 h", OPEN;
    bank_agent_and_survey: "bank_hotline", "0 4", OPEN;
    bank_agent_closed: "bank_hotline", "0 h", LATE;
    bank_agents_busy: "bank_hotline", "0 1 2 h", OPEN, "--stub", "enqueue=timeout";
    bank_after_service_back: "bank_hotline", "1 6222020200112233445 246810 * h", OPEN;
    bank_vip_line: "bank_hotline", "0 1", OPEN, "--number", "4008895588";
    bank_silence: "bank_hotline", "", OPEN;
}

#[test]
fn secrets_never_appear_in_transcripts() {
    for flow in ["securities_hotline", "bank_hotline"] {
        let keys = if flow == "bank_hotline" { "1 6222020200112233445 246810 h" } else { "2 88001234# 135790 h" };
        for extra in [&["--json"][..], &[][..]] {
            let path = format!("flows/{flow}.ivr");
            let mut args = vec!["sim", path.as_str(), "--keys", keys, "--at", OPEN];
            args.extend_from_slice(extra);
            let out = stdout(&ivr(&args));
            for secret in ["246810", "135790"] {
                assert!(!out.contains(secret), "{flow}: secret {secret} leaked:\n{out}");
            }
            assert!(out.contains("****"), "{flow}: secret argument not masked:\n{out}");
        }
    }
}

#[test]
fn a_flow_going_round_without_the_caller_is_stopped_and_sim_exits_non_zero() {
    let out = ivr(&["sim", "tests/sim_flows/retry_forever.ivr", "--number", "1", "--json"]);
    assert_eq!(out.status.code(), Some(3), "a fault is exit 3: {}", stderr(&out));
    assert!(stderr(&out).contains("without the caller pressing a key"), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let rounds = lines.iter().filter(|l| l["event"] == "enqueue").count();
    assert_eq!(rounds, 100, "the guard's limit of steps without a key");
    assert_eq!(lines.iter().filter(|l| l["event"] == "fault").count(), 1);
}

#[test]
fn a_flow_that_uses_no_embedded_service_leaves_no_database_beside_it() {
    let dir = std::env::temp_dir().join(format!("ivr-sim-nodb-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["short.ivr", "prompts.toml"] {
        std::fs::copy(root().join("tests/e2e").join(f), dir.join(f)).unwrap();
    }
    let out = ivr(&["sim", dir.join("short.ivr").to_str().unwrap(), "--keys", ""]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!dir.join("data").exists(), "no data directory, no ivr.db");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_value_read_in_a_menu_prompt_is_read_again_on_repeat() {
    let out = ivr(&["sim", "tests/sim_flows/menu_say.ivr", "--no-embedded", "--stub", "balance=ok,available=1234.5", "--keys", "# h"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let heard: Vec<&str> = text.lines().filter(|l| l.contains('♪')).map(|l| l.rsplit('[').next().unwrap_or("").trim_end_matches(']')).collect();
    assert_eq!(heard, ["balance_is", "say money 1234.5", "confirm_it", "balance_is", "say money 1234.5", "confirm_it"], "{text}");
}
