//! The admin API's requests, answered against the live state: queues,
//! agents, KPIs, agent state changes and re-ranking a waiting caller. The
//! host parses HTTP and hands the method, path and body here.

use std::collections::BTreeMap;

use ivr_sip::endpoint::CallKey;
use serde_json::{json, Value};

use crate::handoff::Agents;
use crate::Call;

/// One admin request: `GET /state`, `POST /agents/1001/ready`, …
#[derive(Debug, Clone)]
pub struct AdminRequest {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
}

/// Answers one request against the live state (in the main loop).
pub(crate) fn handle(agents: &mut Agents, calls: &BTreeMap<CallKey, Call>, req: &AdminRequest, now: u64) -> (u16, Value) {
    let path: Vec<&str> = req.path.split('?').next().unwrap_or("").split('/').filter(|s| !s.is_empty()).collect();
    let body: Value = if req.body.is_empty() { json!({}) } else { serde_json::from_slice(&req.body).unwrap_or(Value::Null) };
    if body.is_null() {
        return (400, json!({"error": "the body is not JSON"}));
    }
    let snapshot = |agents: &Agents| {
        let mut s = serde_json::to_value(agents.acd.snapshot(now)).unwrap_or(Value::Null);
        // Callers are shown by their SIP Call-ID, which call records carry too.
        if let Some(queues) = s.get_mut("queues").and_then(Value::as_array_mut) {
            for q in queues {
                for c in q.get_mut("callers").and_then(Value::as_array_mut).into_iter().flatten() {
                    let id = c.get("call").and_then(Value::as_u64).and_then(|k| calls.get(&CallKey(k))).map(|c| c.record.call_id.clone());
                    c["call_id"] = json!(id);
                }
            }
        }
        s
    };
    match (req.method.as_str(), path.as_slice()) {
        ("GET", ["state"]) => (200, snapshot(agents)),
        ("GET", ["agents"]) => (200, snapshot(agents)["agents"].take()),
        ("GET", ["queues"]) => (200, snapshot(agents)["queues"].take()),
        ("GET", ["wallboard.json"]) => (200, wallboard(agents, calls, now)),
        ("GET", ["kpi"]) => {
            let threshold = 20_000;
            let mut per_queue = serde_json::Map::new();
            let mut names: Vec<&str> = agents.history.iter().filter_map(|r| r.queue.as_deref()).collect();
            names.sort_unstable();
            names.dedup();
            for name in names {
                let k = ivr_acd::Kpi::from_records(agents.history.iter().filter(|r| r.queue.as_deref() == Some(name)), threshold);
                per_queue.insert(name.to_string(), json!(k));
            }
            let all = ivr_acd::Kpi::from_records(&agents.history, threshold);
            (200, json!({"all": all, "queues": per_queue}))
        }
        ("POST", ["agents", id, action]) => {
            let result = match *action {
                "login" => agents.acd.login(now, id, None),
                "ready" => agents.acd.ready(now, id),
                "pause" => agents.acd.pause(now, id, body.get("reason").and_then(Value::as_str).unwrap_or("paused")),
                "logout" => agents.acd.logout(now, id),
                _ => return (404, json!({"error": format!("no action {action}: login, ready, pause or logout")})),
            };
            match result {
                Ok(()) => {
                    let a = snapshot(agents)["agents"].as_array().and_then(|a| a.iter().find(|a| a["id"] == *id).cloned()).unwrap_or(Value::Null);
                    (200, a)
                }
                Err(e) => (404, json!({"error": e.to_string()})),
            }
        }
        ("POST", ["calls", id, "priority"]) => {
            let Some(p) = body.get("priority").and_then(Value::as_i64) else {
                return (400, json!({"error": "give {\"priority\": N}"}));
            };
            let key = calls.iter().find(|(k, c)| c.record.call_id == *id || k.0.to_string() == *id).map(|(k, _)| *k);
            match key.map(|k| agents.acd.set_priority(now, crate::handoff::queued(k), p)) {
                Some(Ok(())) => (200, json!({"call": id, "priority": p})),
                _ => (404, json!({"error": format!("no call {id} is waiting")})),
            }
        }
        (_, ["state" | "agents" | "queues" | "kpi"]) => (405, json!({"error": "use GET"})),
        _ => (404, json!({"error": "not found: GET /state, /agents, /queues, /kpi; POST /agents/ID/{login,ready,pause,logout}, /calls/ID/priority"})),
    }
}

/// What the wallboard (大屏幕) shows: per queue the callers waiting, the
/// longest wait, the last 24 hours' service level and abandon rate, agents
/// by state; the calls in the IVR and with agents; the menus and steps with
/// the most callers right now.
fn wallboard(agents: &Agents, calls: &BTreeMap<CallKey, Call>, now: u64) -> Value {
    let threshold_ms = 20_000;
    let snap = agents.acd.snapshot(now);
    let queues: Vec<Value> = snap
        .queues
        .iter()
        .map(|q| {
            let k = ivr_acd::Kpi::from_records(agents.history.iter().filter(|r| r.queue.as_deref() == Some(q.name.as_str())), threshold_ms);
            json!({
                "name": q.name,
                "waiting": q.waiting,
                "longest_wait_s": q.longest_wait_ms / 1_000,
                "talking": q.talking,
                "agents": q.agents,
                "offered": k.offered,
                "answered": k.answered,
                "abandoned": k.abandoned,
                "service_level": k.service_level,
                "abandon_rate": k.abandon_rate,
                "asa_s": k.asa_ms as f64 / 1e3,
                "aht_s": k.aht_ms as f64 / 1e3,
            })
        })
        .collect();
    let mut by_state: BTreeMap<&str, usize> = BTreeMap::new();
    for a in &snap.agents {
        *by_state.entry(a.state).or_default() += 1;
    }
    let with_agents = calls.values().filter(|c| agents.bridged_leg(c).is_some()).count();
    let handed = calls.values().filter(|c| c.handoff.is_some()).count();
    // Where the callers in the IVR are right now.
    let mut hits: BTreeMap<&str, u64> = BTreeMap::new();
    for c in calls.values().filter(|c| c.handoff.is_none()) {
        if let Some(n) = c.session.current_node() {
            *hits.entry(n).or_default() += 1;
        }
    }
    let mut busiest: Vec<(&str, u64)> = hits.into_iter().collect();
    busiest.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    busiest.truncate(8);
    json!({
        "queues": queues,
        "agents": by_state,
        "calls": {"active": calls.len(), "in_ivr": calls.len() - handed, "handed_over": handed, "with_agents": with_agents},
        "menu_items": busiest.iter().map(|(n, c)| json!({"name": n, "callers": c})).collect::<Vec<_>>(),
        "service_level_threshold_s": threshold_ms / 1_000,
    })
}
