//! An HTTP/JSON service backend, as a broker or bank would write one for their
//! own systems (contract: docs/services.md). This one answers `quote` from a CSV
//! file and `balance` from a small table, on loopback.
//!
//! Run: `cargo run --example http_backend -- 127.0.0.1:8700 flows/data/quotes.csv`
//! then point a service at it in ivr.toml:
//!
//! ```toml
//! [services.quote]
//! http = "http://127.0.0.1:8700/ivr"
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;

use serde_json::{json, Value};

fn answer(body: &Value, quotes: &ivr_services::QuoteBook) -> (u16, Value) {
    let arg = |name: &str| body["args"][name].as_str().unwrap_or_default().to_string();
    match body["service"].as_str() {
        Some("quote") => match quotes.get(&arg("code")) {
            Ok(Some(q)) => (200, json!({"outcome": "ok", "fields": {
                "name": q.name, "last": q.last.to_string(), "prev_close": q.prev_close.to_string(),
                "high": q.high.to_string(), "low": q.low.to_string(),
            }})),
            Ok(None) => (200, json!({"outcome": "not_found"})),
            Err(e) => (500, json!({"error": e.to_string()})),
        },
        Some("balance") => match arg("card").as_str() {
            "6222020200112233445" => (200, json!({"outcome": "ok", "fields": {"available": "12345.67", "ledger": "12500.00"}})),
            _ => (200, json!({"outcome": "failed"})),
        },
        _ => (404, json!({"error": "no such service"})),
    }
}

fn handle(conn: TcpStream, quotes: &ivr_services::QuoteBook) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0).min(64 * 1024);
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let (status, reply) = match serde_json::from_slice::<Value>(&body) {
        Ok(v) if line.starts_with("POST ") => answer(&v, quotes),
        _ => (400, json!({"error": "POST a JSON request"})),
    };
    let text = reply.to_string();
    let mut conn = conn;
    write!(conn, "HTTP/1.1 {status} OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}", text.len())
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8700".into());
    let csv = args.next().unwrap_or_else(|| "flows/data/quotes.csv".into());
    let quotes = ivr_services::QuoteBook::new(Path::new(&csv));
    let listener = TcpListener::bind(&addr)?;
    println!("listening on http://{}/ivr", listener.local_addr()?);
    std::io::stdout().flush()?;
    for conn in listener.incoming() {
        if let Err(e) = conn.and_then(|c| handle(c, &quotes)) {
            eprintln!("connection: {e}");
        }
    }
    Ok(())
}
