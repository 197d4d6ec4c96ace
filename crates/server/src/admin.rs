//! The admin HTTP/JSON API: live queue and agent state, KPIs, and agent state
//! changes (what `ivr agents` and `ivr agent …` call). HTTP/1.1, one request
//! per connection, parsed with httparse; requests are answered by the main
//! loop, which owns the ACD.
//!
//! | request | answer |
//! |---|---|
//! | `GET /state` | queues (waiting callers, longest wait, agents by state) and agents |
//! | `GET /agents`, `GET /queues` | either half of it |
//! | `GET /kpi` | service level, ASA, abandon rate, AHT over the last 24 hours, per queue and in all |
//! | `POST /agents/ID/login` `…/ready` `…/pause` `…/logout` | the agent's new state; `pause` takes `{"reason": "…"}` |
//! | `POST /calls/ID/priority` `{"priority": N}` | re-ranks a waiting caller |

use std::collections::HashMap;
use std::time::Duration;

use ivr_sip::endpoint::CallKey;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use crate::handoff::Agents;
use crate::{Call, Internal};

const MAX_REQUEST: usize = 64 * 1024;

pub struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
}

pub type Response = (u16, Value);

pub async fn serve(listener: TcpListener, token: Option<String>, tx: mpsc::UnboundedSender<Internal>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let (tx, token) = (tx.clone(), token.clone());
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(10), connection(stream, token, tx)).await;
        });
    }
}

async fn connection(mut stream: TcpStream, token: Option<String>, tx: mpsc::UnboundedSender<Internal>) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let (req, status) = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_REQUEST {
            break (None, Some((413, json!({"error": "request too large"}))));
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(&buf) {
            Ok(httparse::Status::Complete(head)) => {
                let length = parsed.headers.iter().find(|h| h.name.eq_ignore_ascii_case("content-length")).and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse::<usize>().ok()).unwrap_or(0);
                if head + length > MAX_REQUEST {
                    break (None, Some((413, json!({"error": "request too large"}))));
                }
                if buf.len() < head + length {
                    continue;
                }
                let authorized = token.as_ref().is_none_or(|t| {
                    parsed.headers.iter().any(|h| h.name.eq_ignore_ascii_case("authorization") && h.value == format!("Bearer {t}").as_bytes())
                });
                if !authorized {
                    break (None, Some((401, json!({"error": "a bearer token is required"}))));
                }
                let req = Request { method: parsed.method.unwrap_or("").to_string(), path: parsed.path.unwrap_or("").to_string(), body: buf[head..head + length].to_vec() };
                break (Some(req), None);
            }
            Ok(httparse::Status::Partial) => continue,
            Err(e) => break (None, Some((400, json!({"error": format!("bad request: {e}")})))),
        }
    };
    let (code, body) = match (req, status) {
        (Some(req), _) => {
            let (reply, answer) = oneshot::channel();
            if tx.send(Internal::Admin(req, reply)).is_err() {
                (503, json!({"error": "the server is stopping"}))
            } else {
                answer.await.unwrap_or((503, json!({"error": "the server is stopping"})))
            }
        }
        (None, Some(s)) => s,
        (None, None) => return Ok(()),
    };
    let body = serde_json::to_vec_pretty(&body).unwrap_or_default();
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        _ => "Service Unavailable",
    };
    let head = format!("HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&body).await?;
    stream.shutdown().await
}

/// Answers one request against the live state (in the main loop).
pub fn handle(agents: &mut Agents, calls: &HashMap<CallKey, Call>, req: Request, now: u64) -> Response {
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
            match key.map(|k| agents.acd.set_priority(now, k.0, p)) {
                Some(Ok(())) => (200, json!({"call": id, "priority": p})),
                _ => (404, json!({"error": format!("no call {id} is waiting")})),
            }
        }
        (_, ["state" | "agents" | "queues" | "kpi"]) => (405, json!({"error": "use GET"})),
        _ => (404, json!({"error": "not found: GET /state, /agents, /queues, /kpi; POST /agents/ID/{login,ready,pause,logout}, /calls/ID/priority"})),
    }
}
