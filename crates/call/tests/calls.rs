//! Whole calls through the call core in simulated time: phones, the core and
//! agents joined by a lossy, reordering network (see `sim`). Every behaviour
//! the end-to-end tests check with real sockets is checked here exactly, in
//! milliseconds, and replays from its seed.

mod sim;

use ivr_call::{CallKey, CallLimits, Log, Value};
use sim::*;

const CATALOGUE: &str = r#"
[welcome]
zh = "欢迎。"
[main_menu]
zh = "查询请按1，人工请按0，留言请按3，工号请按8，转总行请按9。"
[quote_is]
zh = "价格是"
[sorry]
zh = "抱歉。"
[survey]
zh = "请评分。"
[after_beep]
zh = "请在提示音后留言。"
[saved]
zh = "已保存。"
[goodbye]
zh = "再见。"
[queue_next]
zh = "您是下一位。"
"#;

const FLOW: &str = r#"
entry 100 -> welcome
var score = 0

service quote(code: text) {
    ok(last: number)
}
service survey_score(caller: text, score: number) {
    ok
}
service flaky(code: text) {
    ok
}
service check_pin(password: text) {
    ok
}

step welcome {
    play welcome
    goto main_menu
}

menu main_menu {
    prompt main_menu
    timeout 5s
    key 1 -> get_quote
    key 0 -> to_agent
    key 3 -> message
    key 8 -> direct
    key 9 -> head_office
    key 7 -> retry_forever
    key 6 -> pin
    on exhausted -> goodbye
}

step pin {
    collect password {
        prompt sorry
        length 4
        secret
        on exhausted -> goodbye
    }
    request check_pin(password) timeout 2s {
        ok -> goodbye
        failed -> goodbye
    }
}

step get_quote {
    request quote("600000") as q timeout 3s {
        ok {
            play quote_is
            say money q.last
            goto main_menu
        }
        failed {
            play sorry
            goto main_menu
        }
    }
}

step to_agent {
    enqueue general max-wait 60s {
        served -> survey
        timeout -> goodbye
        full -> goodbye
        no_agents -> goodbye
        left -> goodbye
        failed -> goodbye
    }
}

step direct {
    dial agent "1002" timeout 10s {
        served -> survey
        busy -> goodbye
        absent -> goodbye
        no_answer -> goodbye
        failed -> goodbye
    }
}

step head_office {
    transfer "02195588"
}

step retry_forever {
    request flaky("1") timeout 1s {
        ok -> still_there
        failed -> still_there
    }
}

menu still_there {
    prompt sorry
    timeout 2s
    key 1 -> goodbye
    on exhausted -> retry_forever
}

step message {
    play after_beep
    record "message" max 60s {
        saved {
            play saved
            goto goodbye
        }
        failed -> goodbye
    }
}

menu survey {
    prompt survey
    timeout 8s
    key 1 {
        set score = 1
        goto survey_done
    }
    key 4 {
        set score = 4
        goto survey_done
    }
    on exhausted -> goodbye
}

step survey_done {
    request survey_score(caller, score) timeout 3s {
        else -> goodbye
    }
}

step goodbye {
    play goodbye
    hangup
}
"#;

fn acd(agents: &[(&str, &str)], queue_ring_ms: u64) -> ivr_acd::AcdConfig {
    let agents: Vec<serde_json::Value> = agents
        .iter()
        .map(|(id, at)| serde_json::json!({"id": id, "skills": [["general", 5]], "address": format!("sip:{id}@{at}"), "auto_login": true}))
        .collect();
    serde_json::from_value(serde_json::json!({
        "agents": agents,
        "queues": [{"name": "general", "ring_ms": queue_ring_ms, "wrap_up_ms": 0}],
    }))
    .expect("an ACD configuration")
}

fn quotes() -> Services {
    Box::new(|service, _args| match service {
        "quote" => (50, "ok".into(), vec![("last".into(), Value::Num("10.52".parse().unwrap()))]),
        "survey_score" => (10, "ok".into(), vec![]),
        _ => (1_000, "failed".into(), vec![]),
    })
}

fn world(cfg: ivr_call::CoreConfig, acd: ivr_acd::AcdConfig, link: Link, seed: u64) -> World {
    World::new(cfg, vec![flow(FLOW, CATALOGUE)], acd, link, seed).with_services(quotes())
}

fn lossy() -> Link {
    Link { delay_ms: 20, jitter_ms: 30, loss_per_mille: 100, dup_per_mille: 100 }
}

/// Dials 100 from a new caller phone; returns its index once the call is up.
fn dial(w: &mut World, name: &str, ip_last: u8) -> usize {
    dial_from(w, Phone::new(name, &format!("127.0.1.{ip_last}:5060"), &format!("127.0.1.{ip_last}:4000")))
}

/// Dials 100 from `phone`; returns its index once the call is up.
fn dial_from(w: &mut World, phone: Phone) -> usize {
    let p = w.phone(phone);
    let out = w.phones[p].dial(w.now, "100");
    send(w, p, out);
    assert!(w.run_while(10_000, |w| w.phones[p].state != State::Talking), "{} got no answer: {:?}", w.phones[p].name, w.phones[p].got);
    p
}

fn press(w: &mut World, p: usize, keys: &str) {
    for k in keys.chars() {
        let to = call_media(w, p);
        let from = w.phones[p].rtp;
        let packets = w.phones[p].rfc4733(k, to);
        send_rtp(w, from, to, packets);
        w.run_for(300);
    }
}

/// The only call's key in the core (calls are keyed by the endpoint).
fn first_call(w: &World) -> CallKey {
    w.heard.first().expect("something was played").call
}

fn record_of<'a>(w: &'a World, caller: &str) -> &'a serde_json::Value {
    w.closed().into_iter().find(|r| r["caller"].as_str().is_some_and(|c| c.contains(caller))).unwrap_or_else(|| panic!("no closed record for {caller}: {:#?}", w.records))
}

#[test]
fn a_call_is_answered_hears_its_prompts_and_the_callers_bye_closes_its_record() {
    let mut w = world(config(), Default::default(), Link { delay_ms: 10, ..Default::default() }, 1);
    let p = dial(&mut w, "alice", 1);
    w.run_for(2_500);
    let call = first_call(&w);
    assert_eq!(w.heard_by(call), ["welcome", "main_menu"]);
    assert_eq!(w.heard[1].at - w.heard[0].at, 1_000, "the menu follows the one-second welcome");
    // The record was written at the start, before anything ended.
    let open: Vec<_> = w.records.iter().filter(|(l, r)| *l == Log::Calls && r["state"] == "open").collect();
    assert!(!open.is_empty(), "a record when the call starts");
    let out = w.phones[p].hangup(w.now);
    send(&mut w, p, out);
    w.run_for(1_000);
    assert!(w.phones[p].got.contains(&"200 BYE".to_string()), "{:?}", w.phones[p].got);
    let r = record_of(&w, "alice");
    assert_eq!(r["outcome"], "caller_hung_up");
    assert_eq!(r["nodes"], serde_json::json!(["welcome", "main_menu"]));
    assert_eq!(w.core.calls(), 0);
    assert_eq!(w.media_open(), 0, "its RTP is closed");
}

#[test]
fn rfc_4733_keys_walk_the_menu_through_loss_duplicates_and_reordering() {
    for seed in 1..=20 {
        let mut w = world(config(), Default::default(), lossy(), seed);
        let p = dial(&mut w, "bob", 2);
        w.run_for(2_200);
        press(&mut w, p, "1");
        w.run_for(3_000);
        let call = first_call(&w);
        let heard = w.heard_by(call);
        assert!(heard.starts_with(&["welcome", "main_menu", "quote_is"]), "seed {seed}: {heard:?}");
        assert_eq!(w.requests.iter().filter(|r| r.0 == "quote").count(), 1, "seed {seed}: one key, one request");
        let out = w.phones[p].hangup(w.now);
        send(&mut w, p, out);
        w.run_for(10_000);
        assert_eq!(w.core.calls(), 0, "seed {seed}: the BYE got through retransmissions");
        assert_eq!(record_of(&w, "bob")["keys"], "1", "seed {seed}");
    }
}

#[test]
fn keys_by_sip_info_count_once_despite_duplicates() {
    let mut w = world(config(), Default::default(), Link { delay_ms: 5, dup_per_mille: 1000, ..Default::default() }, 3);
    let p = dial(&mut w, "carol", 3);
    w.run_for(2_200);
    let out = w.phones[p].info(w.now, '1');
    send(&mut w, p, out);
    w.run_for(2_000);
    assert_eq!(w.requests.iter().filter(|r| r.0 == "quote").count(), 1, "a duplicated INFO is one key");
    assert!(w.heard_by(first_call(&w)).contains(&"quote_is"));
}

#[test]
fn keys_from_anyone_but_the_caller_are_not_key_presses() {
    let mut w = world(config(), Default::default(), Link { delay_ms: 5, ..Default::default() }, 4);
    let p = dial(&mut w, "dave", 4);
    w.run_for(2_200);
    let media = call_media(&w, p);
    // A third party: the same host's other port, and another host.
    for stranger in ["127.0.1.4:4002", "127.0.9.9:4000"] {
        let packets = w.phones[p].rfc4733('1', media);
        send_rtp(&mut w, addr(stranger), media, packets);
        w.run_for(500);
    }
    assert!(w.requests.is_empty(), "injected keys did nothing: {:?}", w.requests);
    press(&mut w, p, "1");
    w.run_for(500);
    assert_eq!(w.requests.len(), 1, "the caller's own key works");
}

#[test]
fn cancel_before_answer_ends_the_call_without_a_record_of_talk() {
    let cfg = ivr_call::CoreConfig { ring_ms: 4_000, ..config() };
    let mut w = world(cfg, Default::default(), Link { delay_ms: 10, ..Default::default() }, 5);
    let p = w.phone(Phone::new("erin", "127.0.1.5:5060", "127.0.1.5:4000"));
    let out = w.phones[p].dial(w.now, "100");
    send(&mut w, p, out);
    w.run_for(1_000);
    assert_eq!(w.phones[p].state, State::Ringing, "{:?}", w.phones[p].got);
    let out = w.phones[p].cancel(w.now);
    send(&mut w, p, out);
    w.run_for(2_000);
    assert!(w.phones[p].got.contains(&"487 INVITE".to_string()), "{:?}", w.phones[p].got);
    assert_eq!(w.core.calls(), 0);
    assert_eq!(w.media_open(), 0);
    w.run_for(10_000);
    assert!(!w.phones[p].got.iter().any(|g| g == "200 INVITE"), "never answered after the CANCEL");
}

#[test]
fn the_flow_hangs_up_with_bye_after_its_last_prompt() {
    let mut w = world(config(), Default::default(), Link { delay_ms: 10, ..Default::default() }, 6);
    let p = dial(&mut w, "frank", 6);
    // Silence: three timeouts of the main menu, then goodbye and BYE.
    assert!(w.run_while(60_000, |w| w.phones[p].state == State::Talking));
    assert_eq!(w.phones[p].state, State::Ended("they hung up".into()));
    let call = first_call(&w);
    assert_eq!(w.heard_by(call).last(), Some(&"goodbye"));
    let bye_at = w.now;
    let goodbye_at = w.heard.iter().rfind(|h| h.label == "goodbye").unwrap().at;
    assert!(bye_at >= goodbye_at + 1_000, "BYE only once the goodbye has played");
    assert_eq!(record_of(&w, "frank")["outcome"], "hangup:normal");
}

#[test]
fn a_hold_reinvite_is_answered_and_the_call_goes_on() {
    let mut w = world(config(), Default::default(), Link { delay_ms: 10, ..Default::default() }, 7);
    let p = dial(&mut w, "gina", 7);
    w.run_for(1_500);
    let out = w.phones[p].reinvite(w.now, "sendonly");
    send(&mut w, p, out);
    w.run_for(500);
    assert_eq!(w.phones[p].got.iter().filter(|g| *g == "200 INVITE").count(), 2, "{:?}", w.phones[p].got);
    let out = w.phones[p].reinvite(w.now, "sendrecv");
    send(&mut w, p, out);
    w.run_for(1_000);
    press(&mut w, p, "1");
    w.run_for(1_000);
    assert_eq!(w.requests.len(), 1, "keys still work after hold and unhold");
}

#[test]
fn a_queued_caller_is_bridged_to_an_agent_comes_back_for_the_survey() {
    let mut w = world(config(), acd(&[("1001", "127.0.2.1:5060")], 10_000), lossy(), 8);
    let agent = w.phone(Phone::new("1001", "127.0.2.1:5060", "127.0.2.1:4000").answering(Answer::After(1_500)));
    let p = dial(&mut w, "hank", 8);
    w.run_for(2_200);
    press(&mut w, p, "0");
    assert!(w.run_while(20_000, |w| w.bridges.is_empty()), "never bridged: agent got {:?}", w.phones[agent].got);
    assert_eq!(w.phones[agent].state, State::Talking);
    // They talk for 30 s; the agent hangs up; the caller is back in the flow.
    w.run_for(30_000);
    let out = w.phones[agent].hangup(w.now);
    send(&mut w, agent, out);
    assert!(w.run_while(10_000, |w| !w.heard.iter().any(|h| h.label == "survey")), "no survey after the agent's BYE");
    press(&mut w, p, "4");
    assert!(w.run_while(30_000, |w| w.phones[p].state == State::Talking), "the caller was not hung up on");
    let r = record_of(&w, "hank");
    assert_eq!(r["survey_score"], "4");
    let h = &r["handoffs"][0];
    assert_eq!((h["kind"].as_str(), h["outcome"].as_str(), h["agent"].as_str()), (Some("queue"), Some("served"), Some("1001")), "{r}");
    assert!(h["talk_ms"].as_u64().unwrap() >= 29_000, "{h}");
    // What a replay needs: keys with their times, answers, hand-off outcomes, in order.
    let tl = r["timeline"].as_array().expect("a timeline");
    let at = |pred: &dyn Fn(&serde_json::Value) -> bool| tl.iter().position(|m| pred(m)).unwrap_or_else(|| panic!("{tl:#?}"));
    let key0 = at(&|m| m["event"] == "key" && m["key"] == "0");
    let served = at(&|m| m["event"] == "done" && m["op"] == "queue" && m["outcome"] == "served");
    let key4 = at(&|m| m["event"] == "key" && m["key"] == "4");
    let answer = at(&|m| m["event"] == "answer" && m["service"] == "survey_score" && m["outcome"] == "ok");
    assert!(key0 < served && served < key4 && key4 < answer, "{tl:#?}");
    assert!(tl[served]["t_ms"].as_u64() > tl[key0]["t_ms"].as_u64());
    let q: Vec<_> = w.records.iter().filter(|(l, _)| *l == Log::Queue).map(|(_, r)| r).collect();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0]["call_id"], r["call_id"], "the queue record names the call");
}

#[test]
fn a_caller_who_hangs_up_while_bridged_ends_the_agents_leg() {
    let mut w = world(config(), acd(&[("1001", "127.0.2.1:5060")], 10_000), Link { delay_ms: 10, ..Default::default() }, 9);
    let agent = w.phone(Phone::new("1001", "127.0.2.1:5060", "127.0.2.1:4000").answering(Answer::After(500)));
    let p = dial(&mut w, "ivy", 9);
    w.run_for(2_200);
    press(&mut w, p, "0");
    assert!(w.run_while(10_000, |w| w.bridges.is_empty()));
    w.run_for(5_000);
    let out = w.phones[p].hangup(w.now);
    send(&mut w, p, out);
    w.run_for(2_000);
    assert_eq!(w.phones[agent].state, State::Ended("they hung up".into()));
    assert_eq!(w.media_open(), 0, "both legs' RTP closed");
    assert_eq!(record_of(&w, "ivy")["handoffs"][0]["outcome"], "served");
}

#[test]
fn ring_no_answer_moves_on_to_the_next_agent() {
    let mut w = world(config(), acd(&[("1001", "127.0.2.1:5060"), ("1002", "127.0.2.2:5060")], 4_000), Link { delay_ms: 10, ..Default::default() }, 10);
    let silent = w.phone(Phone::new("1001", "127.0.2.1:5060", "127.0.2.1:4000").answering(Answer::Never));
    let good = w.phone(Phone::new("1002", "127.0.2.2:5060", "127.0.2.2:4000").answering(Answer::After(500)));
    let p = dial(&mut w, "jack", 10);
    w.run_for(2_200);
    press(&mut w, p, "0");
    assert!(w.run_while(20_000, |w| w.bridges.is_empty()));
    assert_eq!(w.phones[silent].state, State::Ended("cancelled".into()), "the silent phone was cancelled");
    assert_eq!(w.phones[good].state, State::Talking);
    let _ = p;
}

#[test]
fn a_direct_dial_of_an_absent_agent_goes_on_in_the_flow() {
    let mut w = world(config(), acd(&[("1001", "127.0.2.1:5060")], 4_000), Link { delay_ms: 10, ..Default::default() }, 11);
    let p = dial(&mut w, "kate", 11);
    w.run_for(2_200);
    press(&mut w, p, "8");
    assert!(w.run_while(10_000, |w| !w.heard.iter().any(|h| h.label == "goodbye")));
    w.run_for(3_000);
    assert_eq!(record_of(&w, "kate")["handoffs"][0]["outcome"], "absent");
    assert_eq!(w.phones[p].state, State::Ended("they hung up".into()));
}

#[test]
fn transfer_calls_the_gateway_and_bridges_until_the_far_end_hangs_up() {
    let cfg = ivr_call::CoreConfig { transfer_gateway: Some("sip:{number}@127.0.3.1:5060".into()), ..config() };
    let mut w = world(cfg, Default::default(), Link { delay_ms: 10, ..Default::default() }, 12);
    let gw = w.phone(Phone::new("gw", "127.0.3.1:5060", "127.0.3.1:4000").answering(Answer::After(1_000)));
    let p = dial(&mut w, "leo", 12);
    w.run_for(2_200);
    press(&mut w, p, "9");
    assert!(w.run_while(10_000, |w| w.bridges.is_empty()), "the gateway got {:?}", w.phones[gw].got);
    w.run_for(10_000);
    let out = w.phones[gw].hangup(w.now);
    send(&mut w, gw, out);
    assert!(w.run_while(5_000, |w| w.phones[p].state == State::Talking));
    let r = record_of(&w, "leo");
    assert_eq!(r["outcome"], "transferred:02195588");
    assert_eq!(r["handoffs"][0]["kind"], "transfer");
}

#[test]
fn a_message_is_recorded_after_the_beep_until_the_hash_key() {
    let mut w = world(config(), Default::default(), Link { delay_ms: 10, ..Default::default() }, 13);
    let p = dial(&mut w, "mia", 13);
    w.run_for(2_200);
    press(&mut w, p, "3");
    w.run_for(3_000);
    let call = first_call(&w);
    assert!(w.heard_by(call).ends_with(&["after_beep", "beep"]), "{:?}", w.heard_by(call));
    press(&mut w, p, "#");
    assert!(w.run_while(10_000, |w| !w.heard.iter().any(|h| h.label == "saved")));
}

#[test]
fn a_call_never_outlives_its_maximum_duration() {
    let cfg = ivr_call::CoreConfig { limits: CallLimits { max_call_ms: 90_000, ..Default::default() }, ..config() };
    let mut w = world(cfg, acd(&[("1001", "127.0.2.1:5060")], 10_000), Link { delay_ms: 10, ..Default::default() }, 14);
    // The agent answers and talks for ever: only the limit ends the call.
    let agent = w.phone(Phone::new("1001", "127.0.2.1:5060", "127.0.2.1:4000").answering(Answer::After(500)));
    let p = dial(&mut w, "ned", 14);
    w.run_for(2_200);
    press(&mut w, p, "0");
    assert!(w.run_while(200_000, |w| w.phones[p].state == State::Talking));
    assert!((90_000..92_000).contains(&w.now), "ended at {}", w.now);
    assert_eq!(w.phones[agent].state, State::Ended("they hung up".into()), "the agent's leg ended too");
    assert_eq!(record_of(&w, "ned")["outcome"], "max_duration");
    assert_eq!(w.media_open(), 0);
}

#[test]
fn a_flow_looping_through_a_failing_service_is_ended_by_the_guard() {
    let mut w = world(config(), Default::default(), Link { delay_ms: 10, ..Default::default() }, 15);
    let p = dial(&mut w, "olga", 15);
    w.run_for(2_200);
    press(&mut w, p, "7");
    assert!(w.run_while(3_600_000, |w| w.phones[p].state == State::Talking));
    assert_eq!(record_of(&w, "olga")["outcome"], "fault");
    // Two steps a round (the lookup, the menu that times out): 50 rounds.
    let flaky = w.requests.iter().filter(|r| r.0 == "flaky").count();
    assert_eq!(flaky, 50, "rounds before the guard");
}

#[test]
fn a_bug_in_one_calls_handling_ends_that_call_and_no_other() {
    let mut w = world(config(), Default::default(), Link { delay_ms: 10, ..Default::default() }, 16);
    let a = dial(&mut w, "pat", 16);
    let b = dial(&mut w, "quinn", 17);
    w.run_for(2_200);
    let victim = w.heard.iter().find(|h| w.heard.iter().filter(|x| x.call == h.call).count() > 0).unwrap().call;
    w.core.inject_bug(victim);
    press(&mut w, a, "1");
    w.run_for(3_000);
    // Pat's call ended with an internal error; Quinn's goes on.
    assert!(matches!(w.phones[a].state, State::Ended(_)), "{:?}", w.phones[a].state);
    assert_eq!(record_of(&w, "pat")["outcome"], "internal_error");
    press(&mut w, b, "1");
    w.run_for(2_000);
    assert_eq!(w.phones[b].state, State::Talking);
    assert_eq!(w.requests.iter().filter(|r| r.0 == "quote").count(), 1, "quinn's key worked");
}

#[test]
fn rtp_ports_another_process_holds_are_skipped() {
    let mut w = world(config(), Default::default(), Link { delay_ms: 10, ..Default::default() }, 23);
    w.unbindable = vec![20000, 20002, 20004];
    let p = dial(&mut w, "ursula", 22);
    assert_eq!(call_media(&w, p).port(), 20006, "the answer names the port that opened");
}

#[test]
fn an_rtp_port_the_host_cannot_open_refuses_the_call_and_frees_the_port() {
    let mut w = world(config(), Default::default(), Link { delay_ms: 10, ..Default::default() }, 18);
    // Every port of the first sixteen tried is held by someone else.
    w.unbindable = (0..16).map(|i| 20000 + 2 * i).collect();
    let p = w.phone(Phone::new("rita", "127.0.1.20:5060", "127.0.1.20:4000"));
    let out = w.phones[p].dial(w.now, "100");
    send(&mut w, p, out);
    w.run_for(2_000);
    assert_eq!(w.phones[p].state, State::Ended("refused 503".into()));
    // The next call gets the next port and is answered.
    let q = dial(&mut w, "sam", 21);
    assert_eq!(w.phones[q].state, State::Talking);
}

/// An INVITE from `from` with its own Call-ID and branch, never to be ACKed.
fn flood_invite(from: &str, i: u32) -> Vec<u8> {
    let body = "v=0\r\no=- 1 1 IN IP4 127.0.9.9\r\ns=-\r\nc=IN IP4 127.0.9.9\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    format!(
        "INVITE sip:100@{SERVER} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK-flood{i};rport\r\nMax-Forwards: 70\r\nFrom: <sip:flood@{from}>;tag=f{i}\r\nTo: <sip:100@{SERVER}>\r\nCall-ID: flood-{i}\r\nCSeq: 1 INVITE\r\nContact: <sip:flood@{from}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[test]
fn a_flood_of_invites_from_one_source_does_not_deny_service_to_others() {
    let cfg = ivr_call::CoreConfig { max_calls: 500, rtp_ports: (20000, 29999), ..config() };
    let mut w = world(cfg, Default::default(), Link { delay_ms: 5, ..Default::default() }, 19);
    let flood = addr("127.0.9.9:5060");
    let mut callers = Vec::new();
    // 3,000 INVITEs a second for 10 s from one address, never acknowledged;
    // meanwhile a new ordinary caller every 100 ms from 100 other addresses.
    for slice in 0..100u32 {
        for i in 0..300 {
            w.net.send_raw(w.now, flood, addr(SERVER), flood_invite("127.0.9.9:5060", slice * 300 + i));
        }
        let n = slice as u8;
        let p = w.phone(Phone::new(&format!("c{n}"), &format!("127.0.4.{n}:5060"), &format!("127.0.4.{n}:4000")));
        let out = w.phones[p].dial(w.now, "100");
        send(&mut w, p, out);
        callers.push(p);
        w.run_for(100);
        assert!(w.core.calls() <= 16 + callers.len(), "at {} ms the server holds {} calls", w.now, w.core.calls());
    }
    w.run_for(3_000);
    let up = callers.iter().filter(|&&p| w.phones[p].state == State::Talking).count();
    assert!(up * 100 >= callers.len() * 99, "{up} of {} ordinary calls answered", callers.len());
    let shed = w.core.shed();
    assert!(shed.new_call_rate > 25_000, "the flood was shed before parsing: {shed:?}");
    assert!(shed.awaiting_ack > 0, "and what got through was capped: {shed:?}");
    assert!(w.media_open() <= 16 + callers.len(), "RTP ports held: {}", w.media_open());
}

fn ticks(w: &mut World, n: usize, late_ms: f64, work_ms: f64) {
    for _ in 0..n {
        w.core.handle(w.now, ivr_call::Input::MediaTick { late_ms, work_ms });
    }
    w.pump();
}

#[test]
fn an_overloaded_media_clock_refuses_new_calls_and_keeps_those_in_progress() {
    let mut w = world(config(), Default::default(), Link { delay_ms: 5, ..Default::default() }, 20);
    let p = dial(&mut w, "tom", 30);
    w.run_for(2_200);
    ticks(&mut w, 200, 12.0, 6.0);
    assert!(w.core.is_overloaded());
    let q = w.phone(Phone::new("una", "127.0.1.31:5060", "127.0.1.31:4000"));
    let out = w.phones[q].dial(w.now, "100");
    send(&mut w, q, out);
    w.run_for(1_000);
    assert_eq!(w.phones[q].state, State::Ended("refused 503".into()));
    assert_eq!(w.core.shed().overload, 1);
    // The call in progress goes on.
    press(&mut w, p, "1");
    w.run_for(500);
    assert_eq!(w.requests.len(), 1);
    // Recovered: new calls are taken again.
    ticks(&mut w, 300, 0.0, 2.0);
    assert!(!w.core.is_overloaded());
    let r = dial(&mut w, "vic", 32);
    assert_eq!(w.phones[r].state, State::Talking);
}

#[test]
fn a_long_call_with_many_keys_does_not_pile_up_wake_ups() {
    let mut w = world(config(), Default::default(), Link { delay_ms: 5, ..Default::default() }, 21);
    let p = dial(&mut w, "wes", 33);
    w.run_for(2_200);
    for _ in 0..100 {
        // A quote, back to the menu, again: many turns of one call.
        press(&mut w, p, "1");
        w.run_for(3_000);
    }
    assert_eq!(w.requests.len(), 100, "the call went round");
    assert_eq!(w.phones[p].state, State::Talking);
    assert!(w.core.timers_held() < 50, "{} wake-ups held for one call", w.core.timers_held());
}

#[test]
fn a_secret_never_reaches_the_record_nor_its_timeline() {
    let mut w = world(config(), Default::default(), Link { delay_ms: 5, ..Default::default() }, 22);
    let p = dial(&mut w, "xia", 34);
    w.run_for(2_200);
    press(&mut w, p, "6");
    w.run_for(1_500);
    press(&mut w, p, "9137");
    assert!(w.run_while(20_000, |w| w.phones[p].state == State::Talking));
    assert_eq!(w.requests.iter().find(|r| r.0 == "check_pin").map(|r| r.1[0].1.as_str()), Some("****"));
    let r = record_of(&w, "xia");
    assert_eq!(r["keys"], "6****");
    for (_, line) in &w.records {
        assert!(!line.to_string().contains("9137"), "{line}");
    }
}

#[test]
fn the_counts_operators_scrape_follow_each_call_on_the_cores_clock() {
    use ivr_call::metrics::{EndClass, METHODS, STATUS_CLASSES};
    use ivr_call::KeySource;
    let cfg = ivr_call::CoreConfig { ring_ms: 300, ..config() };
    let mut w = world(cfg, Default::default(), Link { delay_ms: 10, ..Default::default() }, 21);
    let p = dial(&mut w, "rita", 21);
    w.run_for(2_200);
    press(&mut w, p, "1");
    w.run_for(3_000);
    let out = w.phones[p].info(w.now, '1');
    send(&mut w, p, out);
    w.run_for(3_000);
    let out = w.phones[p].hangup(w.now);
    send(&mut w, p, out);
    w.run_for(1_000);
    let m = w.core.metrics();
    let s = &m.stats;
    assert_eq!((m.calls_active, s.calls_started.get("main").copied()), (0, Some(1)));
    assert_eq!(s.calls_ended[EndClass::CallerHungUp as usize], 1);
    assert_eq!(s.calls_ended.iter().sum::<u64>(), 1);
    // Set-up is the ring time (the INVITE reached the core 10 ms after it was sent).
    assert_eq!((s.setup.count(), s.setup.sum_ms()), (1, 300));
    assert_eq!(s.setup.buckets().find(|(b, _)| *b == 500), Some((500, 1)));
    assert_eq!(s.duration.count(), 1);
    assert_eq!(s.keys[KeySource::Rfc4733 as usize], 1);
    assert_eq!(s.keys[KeySource::Info as usize], 1);
    assert_eq!(s.keys[KeySource::Inband as usize], 0);
    let quote = &s.services["quote"];
    assert_eq!(quote.outcomes.get("ok"), Some(&2));
    assert_eq!((quote.latency.count(), quote.latency.sum_ms()), (2, 100), "the stub answers in 50 ms");
    assert_eq!(s.requests_in_flight(), 0);
    let method = |name: &str| METHODS.iter().position(|m| *m == name).unwrap();
    for (name, n) in [("INVITE", 1), ("ACK", 1), ("INFO", 1), ("BYE", 1), ("other", 0)] {
        assert_eq!(s.sip_received.requests[method(name)], n, "{name} received");
    }
    let class = |c: &str| STATUS_CLASSES.iter().position(|x| *x == c).unwrap();
    assert_eq!(s.sip_sent.responses[class("2xx")], 3, "200 to the INVITE, the INFO and the BYE");
    assert!(s.sip_sent.responses[class("1xx")] >= 1, "ringing");
    assert_eq!(m.flows.len(), 1);
    assert!(w.core.not_ready().is_empty());
    w.core.handle(w.now, ivr_call::Input::Drain);
    assert_eq!(w.core.not_ready(), [ivr_call::metrics::NotReady::Draining]);
}

#[test]
fn one_address_cannot_fill_the_node_with_calls_it_keeps_up() {
    let mut cfg = config();
    cfg.per_source.calls = 3;
    let mut w = world(cfg, Default::default(), Link { delay_ms: 5, ..Default::default() }, 24);
    // Four phones behind one address (127.0.5.1, different ports): the fourth is refused.
    let mut held = Vec::new();
    for i in 0..4u8 {
        let p = w.phone(Phone::new(&format!("h{i}"), &format!("127.0.5.1:{}", 5060 + i as u16), &format!("127.0.5.1:{}", 4000 + 2 * i as u16)));
        let out = w.phones[p].dial(w.now, "100");
        send(&mut w, p, out);
        w.run_for(500);
        held.push(p);
    }
    let states: Vec<State> = held.iter().map(|&p| w.phones[p].state.clone()).collect();
    assert_eq!(states[..3], [State::Talking, State::Talking, State::Talking]);
    assert_eq!(states[3], State::Ended("refused 503".into()));
    assert_eq!(w.core.shed().source_calls, 1);
    // Another address is not affected; and when one of the three hangs up, the address may call again.
    let other = dial(&mut w, "other", 40);
    assert_eq!(w.phones[other].state, State::Talking);
    let out = w.phones[held[0]].hangup(w.now);
    send(&mut w, held[0], out);
    w.run_for(500);
    let again = w.phone(Phone::new("h9", "127.0.5.1:5099", "127.0.5.1:4090"));
    let out = w.phones[again].dial(w.now, "100");
    send(&mut w, again, out);
    w.run_for(500);
    assert_eq!(w.phones[again].state, State::Talking);
}

#[test]
fn a_stranger_who_knows_the_call_id_and_our_tag_cannot_end_or_move_the_call() {
    let mut w = world(config(), Default::default(), Link { delay_ms: 5, ..Default::default() }, 25);
    let p = dial(&mut w, "yan", 41);
    w.run_for(2_200);
    // The caller's own BYE, re-written with another From tag and sent from elsewhere.
    let forged: Vec<Vec<u8>> = w.phones[p]
        .hangup(w.now)
        .into_iter()
        .map(|(_, d)| String::from_utf8_lossy(&d).replace(";tag=yan-tag", ";tag=stranger").replace("z9hG4bK-yan-", "z9hG4bK-stranger-").into_bytes())
        .collect();
    // The caller itself never sent it.
    w.phones[p].forget();
    w.phones[p].state = State::Talking;
    for d in forged {
        w.net.send_raw(w.now, addr("127.0.9.66:5060"), addr(SERVER), d);
    }
    w.run_for(1_000);
    assert_eq!(w.core.calls(), 1, "the call goes on");
    assert!(w.closed().is_empty());
    press(&mut w, p, "1");
    w.run_for(500);
    assert_eq!(w.requests.len(), 1, "and its keys still work");
}

#[test]
fn keys_typed_ahead_are_recorded_only_as_stars() {
    // A caller typing ahead may be typing the password the next collect takes.
    let mut w = world(config(), Default::default(), Link { delay_ms: 5, ..Default::default() }, 26);
    let p = dial(&mut w, "zoe", 42);
    w.run_for(2_200);
    let (from, to) = (w.phones[p].rtp, call_media(&w, p));
    let one = w.phones[p].rfc4733('1', to);
    send_rtp(&mut w, from, to, one);
    w.run_for(20); // the quote lookup is under way (it takes 50 ms): nobody listens
    let eight = w.phones[p].rfc4733('8', to);
    send_rtp(&mut w, from, to, eight);
    assert!(w.run_while(30_000, |w| w.phones[p].state == State::Talking));
    let r = record_of(&w, "zoe");
    assert_eq!(r["keys"], "1*", "{r}");
    assert!(!r["timeline"].to_string().contains("\"key\":\"8\""), "{}", r["timeline"]);
}

#[test]
fn a_reinvite_without_an_offer_gets_our_media_as_the_offer() {
    let mut w = world(config(), Default::default(), Link { delay_ms: 5, ..Default::default() }, 27);
    let p = dial(&mut w, "abe", 43);
    w.run_for(1_500);
    let out = w.phones[p].in_dialog_request(w.now, "INVITE", "", "");
    send(&mut w, p, out);
    w.run_for(500);
    assert_eq!(w.phones[p].got.iter().filter(|g| *g == "200 INVITE").count(), 2, "{:?}", w.phones[p].got);
    press(&mut w, p, "1");
    w.run_for(500);
    assert_eq!(w.requests.len(), 1, "the call goes on");
}

/// A flow that plays `prompt` and hangs up, answering 100.
fn one_prompt(prompt: &str, release: &str) -> ivr_call::Flow {
    flow(&format!("entry 100 -> hello\nstep hello {{\n    play {prompt}\n    hangup\n}}\n"), CATALOGUE).in_release(release)
}

#[test]
fn a_canary_takes_its_callers_and_its_share_and_calls_in_progress_keep_their_release() {
    let mut w = World::new(config(), vec![one_prompt("welcome", "aaaa")], Default::default(), Link { delay_ms: 5, ..Default::default() }, 7);
    // A call in progress on release aaaa …
    let first = dial(&mut w, "first", 1);
    // … while a canary (release bbbb) takes one listed caller and none of the rest.
    let canary = ivr_call::Canary { flows: vec![one_prompt("main_menu", "bbbb")], percent: 0, callers: vec!["vip".into()] };
    w.core.handle(w.now, ivr_call::Input::Reload { flows: vec![one_prompt("welcome", "aaaa")], canary: Some(canary), acd: Default::default() });
    let vip = dial(&mut w, "vip", 2);
    let other = dial(&mut w, "other", 3);
    w.run_for(3_000);
    let _ = (first, vip, other);
    assert_eq!(record_of(&w, "first")["release"], "aaaa", "the call in progress kept its release");
    assert_eq!(record_of(&w, "vip")["release"], "bbbb");
    assert_eq!(record_of(&w, "other")["release"], "aaaa");
    // With a 100% share every new call gets it; the counts are per release.
    let canary = ivr_call::Canary { flows: vec![one_prompt("main_menu", "bbbb")], percent: 100, callers: vec![] };
    w.core.handle(w.now, ivr_call::Input::Reload { flows: vec![one_prompt("welcome", "aaaa")], canary: Some(canary), acd: Default::default() });
    dial(&mut w, "anyone", 4);
    w.run_for(3_000);
    assert_eq!(record_of(&w, "anyone")["release"], "bbbb");
    let m = w.core.metrics();
    assert_eq!(m.stats.releases["aaaa"].started, 2);
    assert_eq!(m.stats.releases["bbbb"].started, 2);
    assert_eq!(m.releases, [("aaaa".to_string(), "current", 0), ("bbbb".to_string(), "canary", 100)]);
}

#[test]
fn a_canary_share_is_about_its_percentage_of_call_ids() {
    let c = ivr_call::Canary { flows: vec![], percent: 10, callers: vec![] };
    let taken = (0..10_000).filter(|i| c.takes("13800000000", &format!("{i:x}-a84b4c76e66710@192.0.2.4"))).count();
    assert!((800..1200).contains(&taken), "{taken} of 10000");
    assert!(c.takes("x", "same-id") == c.takes("y", "same-id"), "decided by the Call-ID alone");
}

#[test]
fn an_agent_legs_port_held_by_another_process_is_not_the_agents_fault() {
    let mut w = world(config(), acd(&[("1001", "127.0.2.1:5060")], 10_000), Link { delay_ms: 10, ..Default::default() }, 31);
    let agent = w.phone(Phone::new("1001", "127.0.2.1:5060", "127.0.2.1:4000").answering(Answer::After(500)));
    let p = dial(&mut w, "oscar", 31);
    w.run_for(2_200);
    // The next port, the leg's, is taken by someone else by now.
    let next = call_media(&w, p).port() + 2;
    w.unbindable = vec![next];
    press(&mut w, p, "0");
    // The one agent is offered again on another port (not made not-ready for
    // our fault) and the caller is bridged.
    assert!(w.run_while(20_000, |w| w.bridges.is_empty()), "never bridged: agent got {:?}", w.phones[agent].got);
    assert_eq!(w.phones[agent].state, State::Talking);
    let out = w.phones[p].hangup(w.now);
    send(&mut w, p, out);
    w.run_for(2_000);
    assert_eq!(record_of(&w, "oscar")["handoffs"][0]["outcome"], "served");
    let agents: Vec<_> = w.records.iter().filter(|(l, r)| *l == Log::Agents && r["state"] == "not_ready").collect();
    assert!(agents.is_empty(), "the agent was never made not ready: {agents:?}");
}

#[test]
fn calls_on_one_shared_rtp_port_are_told_apart_by_their_media_address() {
    let cfg = ivr_call::CoreConfig { rtp_shared_port: Some(30000), ..config() };
    let mut w = world(cfg, Default::default(), Link { delay_ms: 5, ..Default::default() }, 11);
    let erin = dial(&mut w, "erin", 11);
    let fred = dial(&mut w, "fred", 12);
    assert_eq!(call_media(&w, erin).port(), 30000, "answered on the shared port");
    assert_eq!(call_media(&w, fred).port(), 30000);
    // A caller whose media address is erin's could not be told apart from
    // her on the shared port: it gets a port of its own.
    let gus = dial_from(&mut w, Phone::new("gus", "127.0.1.13:5060", "127.0.1.11:4000"));
    assert_ne!(call_media(&w, gus).port(), 30000);
    w.run_for(2_200);
    let (e, f) = (w.call_keys()[0], w.call_keys()[1]);
    // Nobody's key: a stranger's packets to the shared port.
    let shared = call_media(&w, erin);
    let packets = w.phones[erin].rfc4733('1', shared);
    send_rtp(&mut w, addr("127.0.9.9:4000"), shared, packets);
    w.run_for(500);
    assert!(w.requests.is_empty(), "a stranger's key did nothing: {:?}", w.requests);
    // Erin's key is hers alone.
    press(&mut w, erin, "1");
    w.run_for(1_000);
    assert_eq!(w.requests.len(), 1);
    assert!(w.heard_by(e).contains(&"quote_is"), "{:?}", w.heard_by(e));
    assert!(!w.heard_by(f).contains(&"quote_is"), "{:?}", w.heard_by(f));
    // Fred moves his media onto erin's address: refused, his call goes on
    // from where it was.
    w.phones[fred].rtp = addr("127.0.1.11:4000");
    let out = w.phones[fred].reinvite(w.now, "sendrecv");
    send(&mut w, fred, out);
    w.run_for(500);
    assert!(w.phones[fred].got.contains(&"488 INVITE".to_string()), "{:?}", w.phones[fred].got);
    w.phones[fred].rtp = addr("127.0.1.12:4000");
    press(&mut w, fred, "1");
    w.run_for(1_000);
    assert_eq!(w.requests.len(), 2, "fred's keys still come from his address");
    // A move to an address of his own is taken, and his keys follow it.
    w.phones[fred].rtp = addr("127.0.1.12:4002");
    let out = w.phones[fred].reinvite(w.now, "sendrecv");
    send(&mut w, fred, out);
    w.run_for(500);
    assert_eq!(w.phones[fred].got.iter().filter(|g| *g == "200 INVITE").count(), 2, "{:?}", w.phones[fred].got);
    w.run_for(3_000);
    press(&mut w, fred, "1");
    w.run_for(1_000);
    assert_eq!(w.requests.len(), 3, "fred's key from his new address");
    // When erin hangs up, her address is free on the shared port again.
    let out = w.phones[erin].hangup(w.now);
    send(&mut w, erin, out);
    w.run_for(1_000);
    let hal = dial_from(&mut w, Phone::new("hal", "127.0.1.14:5060", "127.0.1.11:4000"));
    assert_eq!(call_media(&w, hal).port(), 30000);
}

#[test]
fn an_offer_naming_one_of_our_own_addresses_as_its_media_is_refused() {
    let cfg = ivr_call::CoreConfig { rtp_shared_port: Some(30000), ..config() };
    let mut w = world(cfg, Default::default(), Link { delay_ms: 5, ..Default::default() }, 12);
    // Our shared RTP port, and our SIP listener: our own packets would come back as the caller's.
    for (i, media) in ["127.0.0.1:30000", SERVER].into_iter().enumerate() {
        let p = w.phone(Phone::new(&format!("mirror{i}"), &format!("127.0.1.{}:5060", 30 + i), media));
        let out = w.phones[p].dial(w.now, "100");
        send(&mut w, p, out);
        w.run_for(1_000);
        assert!(w.phones[p].got.contains(&"488 INVITE".to_string()), "{media}: {:?}", w.phones[p].got);
    }
    assert_eq!(w.core.calls(), 0);
    // A call in progress cannot move its media there either.
    let ok = dial(&mut w, "olga", 33);
    w.phones[ok].rtp = addr("127.0.0.1:30000");
    let out = w.phones[ok].reinvite(w.now, "sendrecv");
    send(&mut w, ok, out);
    w.run_for(500);
    assert!(w.phones[ok].got.contains(&"488 INVITE".to_string()), "{:?}", w.phones[ok].got);
    assert_eq!(w.core.calls(), 1, "the call goes on");
}
