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

use std::time::Duration;

use ivr_call::AdminRequest as Request;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use crate::Internal;

const MAX_REQUEST: usize = 64 * 1024;


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
                let length = parsed.headers.iter().find(|h| h.name.eq_ignore_ascii_case("content-length")).map(|h| std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse::<u64>().ok()));
                let length = match length {
                    None => 0,
                    Some(Some(n)) if n <= MAX_REQUEST as u64 => n as usize,
                    // Unreadable, or larger than anything we take (no overflow on huge values).
                    Some(Some(_)) => break (None, Some((413, json!({"error": "request too large"})))),
                    Some(None) => break (None, Some((400, json!({"error": "bad Content-Length"})))),
                };
                if head.saturating_add(length) > MAX_REQUEST {
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
