//! The operations listener (`ops_listen`, default 127.0.0.1:8089): health,
//! readiness and metrics for whatever runs the server, and the admin API
//! (live queue and agent state, KPIs, agent state changes: what `ivr agents`
//! and `ivr agent …` call). HTTP/1.1, one request per connection, parsed
//! with httparse; every answer comes from the main loop, which owns the
//! call core, so `/healthz` also shows that the loop is turning.
//!
//! | request | answer |
//! |---|---|
//! | `GET /healthz` | 200 `ok` when the main loop answers within 2 s, else 503 |
//! | `GET /readyz` | 200 while taking calls; 503 with `{"ready": false, "reasons": […]}` while draining, overloaded, without flows, or when call records cannot be written |
//! | `GET /metrics` | the Prometheus text format (see `exposition`) |
//! | `GET /wallboard` | the wall screen (大屏幕): a page that updates itself from `/wallboard/events` |
//! | `GET /wallboard/events` | server-sent events: the wallboard's figures every second |
//! | `GET /state` | queues (waiting callers, longest wait, agents by state) and agents |
//! | `GET /agents`, `GET /queues` | either half of it |
//! | `GET /kpi` | service level, ASA, abandon rate, AHT over the last 24 hours, per queue and in all |
//! | `POST /agents/ID/login` `…/ready` `…/pause` `…/logout` | the agent's new state; `pause` takes `{"reason": "…"}` |
//! | `POST /calls/ID/priority` `{"priority": N}` | re-ranks a waiting caller |
//! | `GET /releases` | the releases kept, the current one and any canary, the deploy history |
//! | `POST /releases` `{"by", "note", "canary_percent", "canary_callers"}` | deploys the flows on disk (checked first; refused with 422 and the reason), or tries them as a canary |
//! | `POST /releases/promote` | the canary becomes the current release |
//! | `POST /releases/rollback` `{"release"}` | back to that release, or (without one) the canary ended or the release before |
//!
//! The admin routes need `Authorization: Bearer <admin_token>` when one is
//! set; `/metrics` and the wallboard need `Bearer <metrics_token>` (or
//! `?token=` for a browser on a wall) when that is set;
//! `/healthz` and `/readyz` are open (they tell nothing but up or not).

use std::net::SocketAddr;
use std::time::Duration;

use ivr_call::AdminRequest as Request;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use crate::exposition::{self, Scrape};
use crate::{Internal, ServerError};

const MAX_REQUEST: usize = 64 * 1024;
/// How long `/healthz` waits for the main loop.
const LOOP_DEADLINE: Duration = Duration::from_secs(2);

/// What the listener asks the main loop.
#[derive(Debug, Clone, Copy)]
pub enum Query {
    Health,
    Ready,
    Metrics,
}

/// The main loop's answer.
#[derive(Debug)]
pub enum Reply {
    Alive,
    /// Why new calls would be refused (empty: ready).
    Ready(Vec<&'static str>),
    Metrics(Box<Scrape>),
}

/// Answers a query in the main loop: copies, no rendering.
pub fn answer(core: &ivr_call::Core, records: &crate::records::Writer, q: Query) -> Reply {
    match q {
        Query::Health => Reply::Alive,
        Query::Ready => {
            let mut why: Vec<&'static str> = core.not_ready().into_iter().map(|r| r.name()).collect();
            if !records.status().writable {
                why.push("records_not_writable");
            }
            Reply::Ready(why)
        }
        Query::Metrics => Reply::Metrics(Box::new(Scrape { core: core.metrics(), records: records.status() })),
    }
}

/// Who may ask for what.
#[derive(Clone)]
pub struct Tokens {
    pub admin: Option<String>,
    pub metrics: Option<String>,
    /// The listener is on a loopback address: only an address (or
    /// `localhost`) may name it in `Host` (see [`foreign`]).
    pub loopback: bool,
}

/// Binds the listener (when configured) and serves it; returns its address.
pub async fn listen(addr: Option<SocketAddr>, tokens: Tokens, tx: &mpsc::UnboundedSender<Internal>) -> Result<Option<SocketAddr>, ServerError> {
    let Some(addr) = addr else { return Ok(None) };
    let listener = TcpListener::bind(addr).await.map_err(|source| ServerError::Bind { addr, source })?;
    let local = listener.local_addr()?;
    let tokens = Tokens { loopback: local.ip().is_loopback(), ..tokens };
    if !local.ip().is_loopback() && tokens.admin.is_none() {
        warn!(addr = %local, "the operations listener is reachable from other hosts and the admin API has no admin_token: anyone who reaches it can change agents' states");
    }
    info!(addr = %local, "operations listening: /healthz, /readyz, /metrics and the admin API");
    tokio::spawn(serve(listener, tokens, tx.clone()));
    Ok(Some(local))
}

async fn serve(listener: TcpListener, tokens: Tokens, tx: mpsc::UnboundedSender<Internal>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let (tx, tokens) = (tx.clone(), tokens.clone());
        tokio::spawn(async move {
            let _ = connection(stream, tokens, tx).await;
        });
    }
}

/// The wall screen's page: no build step, no outside resources.
const WALLBOARD_PAGE: &str = include_str!("wallboard/index.html");
/// How often the wallboard's figures are sent.
const WALLBOARD_EVERY: Duration = Duration::from_secs(1);
/// Wallboards open at once (each holds a connection).
const WALLBOARDS_MAX: usize = 64;
static WALLBOARDS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Streams the wallboard's figures as server-sent events until the page goes.
async fn wallboard_events(mut stream: TcpStream, tx: mpsc::UnboundedSender<Internal>) -> std::io::Result<()> {
    use std::sync::atomic::Ordering;
    if WALLBOARDS.fetch_add(1, Ordering::Relaxed) >= WALLBOARDS_MAX {
        WALLBOARDS.fetch_sub(1, Ordering::Relaxed);
        let body = "too many wallboards open\n";
        let head = format!("HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
        stream.write_all(head.as_bytes()).await?;
        return stream.write_all(body.as_bytes()).await;
    }
    struct Open;
    impl Drop for Open {
        fn drop(&mut self) {
            WALLBOARDS.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    let _open = Open;
    stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: keep-alive\r\n\r\nretry: 2000\n\n").await?;
    loop {
        let (reply, answer) = oneshot::channel();
        let req = Request { method: "GET".into(), path: "/wallboard.json".into(), body: Vec::new() };
        if tx.send(Internal::Admin(req, reply)).is_err() {
            return Ok(());
        }
        let Ok(Ok((200, figures))) = tokio::time::timeout(LOOP_DEADLINE, answer).await else { return Ok(()) };
        stream.write_all(format!("data: {figures}\n\n").as_bytes()).await?;
        tokio::time::sleep(WALLBOARD_EVERY).await;
    }
}

/// An answer: status, content type, body.
struct Answer {
    code: u16,
    content_type: &'static str,
    body: Vec<u8>,
}

impl Answer {
    fn json(code: u16, body: &serde_json::Value) -> Answer {
        Answer { code, content_type: "application/json", body: serde_json::to_vec_pretty(body).unwrap_or_default() }
    }

    fn text(code: u16, body: &str) -> Answer {
        Answer { code, content_type: "text/plain; charset=utf-8", body: format!("{body}\n").into_bytes() }
    }
}

async fn connection(mut stream: TcpStream, tokens: Tokens, tx: mpsc::UnboundedSender<Internal>) -> std::io::Result<()> {
    // A whole request, and its answer, within 10 s; only the wallboard's
    // event stream stays open.
    let deadline = Duration::from_secs(10);
    let answer = match tokio::time::timeout(deadline, read_request(&mut stream, &tokens)).await {
        Ok(Ok(Some(Ok(req)))) if req.method == "GET" && req.path.split('?').next() == Some("/wallboard/events") => return wallboard_events(stream, tx).await,
        Ok(Ok(Some(Ok(req)))) => match tokio::time::timeout(deadline, route(req, &tx)).await {
            Ok(a) => a,
            Err(_) => return Ok(()),
        },
        Ok(Ok(Some(Err(refused)))) => refused,
        Ok(Ok(None)) | Err(_) => return Ok(()),
        Ok(Err(e)) => return Err(e),
    };
    let reason = match answer.code {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        _ => "Service Unavailable",
    };
    let head = format!("HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", answer.code, answer.content_type, answer.body.len());
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&answer.body).await?;
    stream.shutdown().await
}

/// Reads one request and checks its token; `None`: the peer left.
async fn read_request(stream: &mut TcpStream, tokens: &Tokens) -> std::io::Result<Option<Result<Request, Answer>>> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        let too_large = || Ok(Some(Err(Answer::json(413, &json!({"error": "request too large"})))));
        if buf.len() > MAX_REQUEST {
            return too_large();
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(&buf) {
            Ok(httparse::Status::Complete(head)) => {
                let bad = |why: &str| Ok(Some(Err(Answer::json(400, &json!({"error": why})))));
                // One body length only: a chunked body or two lengths that disagree
                // are how requests get smuggled past a proxy in front of us.
                if parsed.headers.iter().any(|h| h.name.eq_ignore_ascii_case("transfer-encoding")) {
                    return bad("Transfer-Encoding is not taken: send the body with a Content-Length");
                }
                let mut lengths = parsed.headers.iter().filter(|h| h.name.eq_ignore_ascii_case("content-length")).map(|h| h.value);
                let first = lengths.next();
                if lengths.any(|other| Some(other) != first) {
                    return bad("conflicting Content-Length headers");
                }
                let length = first.map(|v| std::str::from_utf8(v).ok().and_then(|v| v.trim().parse::<u64>().ok()));
                let length = match length {
                    None => 0,
                    Some(Some(n)) if n <= MAX_REQUEST as u64 => n as usize,
                    // Unreadable, or larger than anything we take (no overflow on huge values).
                    Some(Some(_)) => return too_large(),
                    Some(None) => return bad("bad Content-Length"),
                };
                if head.saturating_add(length) > MAX_REQUEST {
                    return too_large();
                }
                if buf.len() < head + length {
                    continue;
                }
                let path = parsed.path.unwrap_or("");
                let probe = matches!(path.split('?').next(), Some("/healthz" | "/readyz"));
                if let Some(why) = foreign(&parsed, tokens.loopback).filter(|_| !probe) {
                    return Ok(Some(Err(Answer::json(403, &json!({"error": why})))));
                }
                let token = match path.split('?').next().unwrap_or("") {
                    "/healthz" | "/readyz" => None,
                    "/metrics" | "/wallboard" | "/wallboard/events" => tokens.metrics.as_ref(),
                    _ => tokens.admin.as_ref(),
                };
                // A wall screen's browser cannot send headers: `?token=` does for it.
                let in_query = |t: &str| path.split_once('?').is_some_and(|(_, q)| q.split('&').any(|kv| kv == format!("token={t}")));
                let authorized = token.is_none_or(|t| {
                    in_query(t) || parsed.headers.iter().any(|h| h.name.eq_ignore_ascii_case("authorization") && h.value == format!("Bearer {t}").as_bytes())
                });
                if !authorized {
                    return Ok(Some(Err(Answer::json(401, &json!({"error": "a bearer token is required"})))));
                }
                let req = Request { method: parsed.method.unwrap_or("").to_string(), path: path.to_string(), body: buf[head..head + length].to_vec() };
                return Ok(Some(Ok(req)));
            }
            Ok(httparse::Status::Partial) => continue,
            Err(e) => return Ok(Some(Err(Answer::json(400, &json!({"error": format!("bad request: {e}")}))))),
        }
    }
}

/// A browser request from another site (its `Origin` is not this listener)
/// or reaching us through a DNS name (a rebinding: some page's name made to
/// point at 127.0.0.1): refused, so a web page in an operator's browser
/// cannot change agents' states or read the figures.
fn foreign(req: &httparse::Request, loopback: bool) -> Option<&'static str> {
    let header = |name: &str| req.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).and_then(|h| std::str::from_utf8(h.value).ok());
    let host = header("host");
    if let Some(origin) = header("origin") {
        if host.is_none_or(|h| origin != format!("http://{h}") && origin != format!("https://{h}")) {
            return Some("requests from another site's page are refused");
        }
    }
    let name = host.map(|h| h.rsplit_once(':').filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit())).map_or(h, |(n, _)| n));
    let literal = name.is_none_or(|n| n == "localhost" || n.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>().is_ok());
    (loopback && !literal).then_some("reach the operations listener by its address (a DNS name could be a rebinding attack)")
}

/// Health, readiness and metrics here; the rest is the admin API, answered by the core.
async fn route(req: Request, tx: &mpsc::UnboundedSender<Internal>) -> Answer {
    let stopping = || Answer::json(503, &json!({"error": "the server is stopping"}));
    let query = match (req.method.as_str(), req.path.split('?').next().unwrap_or("")) {
        ("GET", "/healthz") => Query::Health,
        ("GET", "/readyz") => Query::Ready,
        ("GET", "/metrics") => Query::Metrics,
        ("GET", "/wallboard") => {
            // The page carries the figures of the moment; the event stream keeps them current.
            let (reply, answer) = oneshot::channel();
            let req = Request { method: "GET".into(), path: "/wallboard.json".into(), body: Vec::new() };
            let figures = match tx.send(Internal::Admin(req, reply)) {
                Ok(()) => match tokio::time::timeout(LOOP_DEADLINE, answer).await {
                    Ok(Ok((200, v))) => v.to_string().replace("</", "<\\/"),
                    _ => "null".into(),
                },
                Err(_) => "null".into(),
            };
            let page = WALLBOARD_PAGE.replacen("/*INITIAL*/null", &figures, 1);
            return Answer { code: 200, content_type: "text/html; charset=utf-8", body: page.into_bytes() };
        }
        (_, "/healthz" | "/readyz" | "/metrics" | "/wallboard") => return Answer::json(405, &json!({"error": "use GET"})),
        (_, p) if p == "/releases" || p.starts_with("/releases/") => {
            let (reply, answer) = oneshot::channel();
            if tx.send(Internal::Releases(req, reply)).is_err() {
                return stopping();
            }
            return match answer.await {
                Ok((code, body)) => Answer::json(code, &body),
                Err(_) => stopping(),
            };
        }
        _ => {
            let (reply, answer) = oneshot::channel();
            if tx.send(Internal::Admin(req, reply)).is_err() {
                return stopping();
            }
            return match answer.await {
                Ok((code, body)) => Answer::json(code, &body),
                Err(_) => stopping(),
            };
        }
    };
    let (reply, answer) = oneshot::channel();
    if tx.send(Internal::Ops(query, reply)).is_err() {
        return stopping();
    }
    match tokio::time::timeout(LOOP_DEADLINE, answer).await {
        Ok(Ok(Reply::Alive)) => Answer::text(200, "ok"),
        Ok(Ok(Reply::Ready(why))) if why.is_empty() => Answer::json(200, &json!({"ready": true})),
        Ok(Ok(Reply::Ready(why))) => Answer::json(503, &json!({"ready": false, "reasons": why})),
        Ok(Ok(Reply::Metrics(scrape))) => {
            // Rendering happens here, off the main loop.
            let text = exposition::render(*scrape);
            Answer { code: 200, content_type: exposition::CONTENT_TYPE, body: text.into_bytes() }
        }
        Ok(Err(_)) => stopping(),
        Err(_) => Answer::text(503, &format!("the main loop did not answer within {} s", LOOP_DEADLINE.as_secs())),
    }
}
