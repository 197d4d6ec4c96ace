use super::*;

const DAY: i64 = 1_795_399_200_000; // 2026-11-23 10:00 Beijing

struct Tmp(std::path::PathBuf);

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tmp(name: &str) -> Tmp {
    let d = std::env::temp_dir().join(format!("ivr-services-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    Tmp(d)
}

fn backend(dir: &Tmp) -> Embedded {
    let csv = dir.0.join("quotes.csv");
    std::fs::write(&csv, "code,name,last,prev_close,high,low,volume,time\n600000,浦发银行,10.52,10.39,10.60,10.35,100,t\n300750,宁德时代,250.10,245.00,251.00,244.50,100,t\n").unwrap();
    Embedded::open(&dir.0, &csv).unwrap()
}

fn call(b: &Embedded, service: &str, args: &[(&str, &str)], key: &str) -> Reply {
    let args: Vec<(String, Val)> = args.iter().map(|(k, v)| (k.to_string(), Val::Text(v.to_string()))).collect();
    b.call(&Request { service, args: &args, key, now_ms: DAY }).unwrap()
}

fn order(b: &Embedded, side: &str, price: &str, shares: &str, key: &str) -> Reply {
    call(b, "place_order", &[("account", "88001234"), ("code", "600000"), ("side", side), ("price", price), ("shares", shares)], key)
}

#[test]
fn quotes_are_read_and_reloaded_when_the_file_changes() {
    let d = tmp("quotes");
    let b = backend(&d);
    let r = call(&b, "quote", &[("code", "600000")], "k");
    assert_eq!(r.outcome, "ok");
    assert!(r.fields.contains(&("last".into(), Val::Num("10.52".parse().unwrap()))));
    assert_eq!(call(&b, "quote", &[("code", "999999")], "k").outcome, "not_found");
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(d.0.join("quotes.csv"), "code,name,last,prev_close,high,low,volume,time\n600000,浦发银行,11.00,10.39,11.00,10.35,100,t\n").unwrap();
    let r = call(&b, "quote", &[("code", "600000")], "k");
    assert!(r.fields.contains(&("last".into(), Val::Num("11.00".parse().unwrap()))), "{r:?}");
}

#[test]
fn a_malformed_quotes_file_is_an_error_not_a_crash() {
    assert!(quotes::parse_csv("h\n600000,x,abc,1,1,1,1,t\n").is_err());
    assert!(quotes::parse_csv("h\n60000,x,1,1,1,1,1,t\n").is_err());
}

#[test]
fn wrong_passwords_lock_the_account() {
    let d = tmp("auth");
    let b = backend(&d);
    let try_pw = |pw: &str| call(&b, "authenticate", &[("account", "88001234"), ("password", pw)], "k").outcome;
    assert_eq!(try_pw("135790"), "ok");
    assert_eq!(try_pw("000000"), "denied");
    assert_eq!(try_pw("111111"), "denied");
    assert_eq!(try_pw("222222"), "locked");
    assert_eq!(try_pw("135790"), "locked", "the right password does not unlock early");
    assert_eq!(call(&b, "authenticate", &[("account", "99999999"), ("password", "1")], "k").outcome, "denied");
}

#[test]
fn orders_are_checked_and_recorded_exactly_once() {
    let d = tmp("orders");
    let b = backend(&d);
    let first = order(&b, "buy", "10.52", "200", "call-1:1");
    assert_eq!(first.outcome, "ok");
    let again = order(&b, "buy", "10.52", "200", "call-1:1");
    assert_eq!(again, first, "a retried submission answers with the same order");
    assert_eq!(b.with_store(|s| s.orders().unwrap().len()), 1);
    for (price, shares, why) in [
        ("11.50", "100", "price outside the daily limit"),
        ("9.30", "100", "price outside the daily limit"),
        ("10.555", "100", "price must be positive, in steps of 0.01"),
        ("10.50", "150", "buy in lots of 100 shares"),
        ("10.50", "100000000", "not enough cash"),
    ] {
        let r = order(&b, "buy", price, shares, &format!("k-{price}-{shares}"));
        assert_eq!(r, Reply::new("rejected").with("reason", Val::Text(why.into())), "{price} × {shares}");
    }
    assert_eq!(order(&b, "sell", "10.60", "20000", "k-sell").fields[0].1, Val::Text("not enough shares".into()));
    // 688/300 boards have a ±20% band.
    let r = call(&b, "place_order", &[("account", "88001234"), ("code", "300750"), ("side", "buy"), ("price", "290.00"), ("shares", "100")], "k-cy");
    assert_eq!(r.outcome, "ok");
}

#[test]
fn pending_orders_can_be_cancelled_once() {
    let d = tmp("cancel");
    let b = backend(&d);
    let r = order(&b, "buy", "10.00", "100", "k1"); // below the last price: stays pending
    let Val::Text(no) = &r.fields[0].1 else { panic!() };
    let status = call(&b, "order_status", &[("account", "88001234")], "k");
    assert_eq!(status.fields[0].1, Val::Num(1.into()));
    assert_eq!(status.fields[2].1, Val::Text("pending".into()));
    assert_eq!(call(&b, "cancel_order", &[("account", "88001234"), ("order_no", no)], "k").outcome, "ok");
    assert_eq!(call(&b, "cancel_order", &[("account", "88001234"), ("order_no", no)], "k").outcome, "not_found");
    assert_eq!(call(&b, "cancel_order", &[("account", "88005678"), ("order_no", no)], "k").outcome, "not_found");
}

#[test]
fn subscriptions_and_survey() {
    let d = tmp("subs");
    let b = backend(&d);
    assert_eq!(call(&b, "subscribe", &[("caller", "138"), ("topic", "price_alert"), ("channel", "sms")], "k").outcome, "ok");
    assert_eq!(call(&b, "subscribe", &[("caller", "138"), ("topic", "daily"), ("channel", "email")], "k").outcome, "ok");
    assert_eq!(b.with_store(|s| s.subscriptions().unwrap().len()), 2);
    let r = call(&b, "unsubscribe_all", &[("caller", "138")], "k");
    assert_eq!(r.fields[0].1, Val::Num(2.into()));
    assert_eq!(call(&b, "survey_score", &[("caller", "138"), ("score", "5")], "s1").outcome, "ok");
    let args = vec![("caller".to_string(), Val::Text("138".into())), ("score".to_string(), Val::Text("9".into()))];
    assert!(b.call(&Request { service: "survey_score", args: &args, key: "s2", now_ms: DAY }).is_err());
}

/// A one-thread HTTP server on loopback answering by path, for the HTTP backend.
fn serve(answers: fn(&str) -> (u16, String, u64)) -> (String, std::thread::JoinHandle<()>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        for _ in 0..4 {
            let Ok((mut conn, _)) = listener.accept() else { return };
            let mut buf = vec![0u8; 8192];
            let mut got = 0;
            // Read the head and the JSON body (Content-Length).
            loop {
                let n = conn.read(&mut buf[got..]).unwrap_or(0);
                got += n;
                let text = String::from_utf8_lossy(&buf[..got]).to_string();
                if let Some(head_end) = text.find("\r\n\r\n") {
                    let len = text
                        .lines()
                        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0)))
                        .unwrap_or(0);
                    if got >= head_end + 4 + len || n == 0 {
                        break;
                    }
                } else if n == 0 {
                    break;
                }
            }
            let text = String::from_utf8_lossy(&buf[..got]).to_string();
            let path = text.split_whitespace().nth(1).unwrap_or("/").to_string();
            assert!(text.contains("\"service\":\"quote\""), "{text}");
            let (status, body, delay) = answers(&path);
            std::thread::sleep(std::time::Duration::from_millis(delay));
            let _ = write!(conn, "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        }
    });
    (base, handle)
}

#[test]
fn http_backend_success_slow_error_and_garbage() {
    let (base, server) = serve(|path| match path {
        "/ok" => (200, r#"{"outcome":"ok","fields":{"name":"浦发银行","last":"10.52","volume":100}}"#.into(), 0),
        "/slow" => (200, r#"{"outcome":"ok"}"#.into(), 1_500),
        "/error" => (503, "busy".into(), 0),
        _ => (200, "{not json".into(), 0),
    });
    let svc = |path: &str, timeout_ms| {
        let mut m = std::collections::BTreeMap::new();
        m.insert("quote".to_string(), HttpService { http: format!("{base}{path}"), timeout_ms });
        Http::new(m)
    };
    let args = vec![("code".to_string(), Val::Text("600000".into()))];
    let req = Request { service: "quote", args: &args, key: "c:1", now_ms: DAY };
    let ok = svc("/ok", 2_000).call(&req).unwrap();
    assert_eq!(ok.outcome, "ok");
    assert!(ok.fields.contains(&("last".into(), Val::Text("10.52".into()))));
    assert!(ok.fields.contains(&("volume".into(), Val::Num(100.into()))));
    let slow = svc("/slow", 300).call(&req).unwrap_err().to_string();
    assert!(slow.contains("HTTP backend"), "{slow}");
    let err = svc("/error", 2_000).call(&req).unwrap_err().to_string();
    assert!(err.contains("503"), "{err}");
    let garbage = svc("/garbage", 2_000).call(&req).unwrap_err().to_string();
    assert!(garbage.contains("malformed"), "{garbage}");
    server.join().unwrap();
}

#[test]
fn a_router_prefers_the_configured_http_backend() {
    let d = tmp("router");
    let embedded: std::sync::Arc<dyn Backend> = std::sync::Arc::new(backend(&d));
    let mut m = std::collections::BTreeMap::new();
    m.insert("balance".to_string(), HttpService { http: "http://127.0.0.1:9/".into(), timeout_ms: 100 });
    let router = Router::new(vec![std::sync::Arc::new(Http::new(m)), embedded]);
    assert!(router.provides("balance") && router.provides("quote") && !router.provides("nope"));
    assert_eq!(call_router(&router, "quote").outcome, "ok");
}

fn call_router(r: &Router, service: &str) -> Reply {
    let args = vec![("code".to_string(), Val::Text("600000".into()))];
    r.call(&Request { service, args: &args, key: "k", now_ms: DAY }).unwrap()
}

#[test]
fn a_recording_ends_on_hash_silence_or_max_length() {
    let voice = vec![3000i16; 800]; // 100 ms of speech at 8 kHz
    let quiet = vec![10i16; 8000]; // 1 s of silence
    let mut r = Recorder::new(8000, 60_000, 2_000, 500);
    assert_eq!(r.push_audio(&quiet), None, "silence before speech does not end it");
    assert_eq!(r.push_audio(&voice), None);
    assert_eq!(r.push_audio(&quiet), None);
    assert_eq!(r.push_audio(&quiet), Some(RecordEnd::Silence));
    let (pcm, rate) = r.finish(RecordEnd::Silence);
    assert_eq!((pcm.len(), rate), (8800, 8000), "trailing silence is trimmed");
    let mut r = Recorder::new(8000, 60_000, 2_000, 500);
    r.push_audio(&voice);
    assert_eq!(r.digit('5'), None);
    assert_eq!(r.digit('#'), Some(RecordEnd::Terminator));
    let mut r = Recorder::new(8000, 1_000, 2_000, 500);
    assert_eq!(r.push_audio(&vec![3000i16; 9000]), Some(RecordEnd::MaxLength));
    assert_eq!(r.finish(RecordEnd::MaxLength).0.len(), 8000);
}

#[test]
fn messages_are_written_then_indexed_once() {
    let d = tmp("messages");
    let b = backend(&d);
    let pcm = vec![1000i16; 16_000];
    let m = b.with_store(|s| s.save_message(&d.0, "13800138000", "complaint", &pcm, 8000, DAY, "call-9:2")).unwrap();
    assert_eq!(m.duration_ms, 2000);
    let bytes = std::fs::read(d.0.join(&m.file)).unwrap();
    assert_eq!(bytes.len(), 44 + 32_000);
    assert_eq!(&bytes[..4], b"RIFF");
    let again = b.with_store(|s| s.save_message(&d.0, "13800138000", "complaint", &pcm, 8000, DAY, "call-9:2")).unwrap();
    assert_eq!(again, m);
    assert_eq!(b.with_store(|s| s.messages().unwrap().len()), 1);
}

#[test]
fn a_failed_write_indexes_nothing() {
    let d = tmp("messages-fail");
    let b = backend(&d);
    // The messages folder cannot be created: a file is in its place.
    std::fs::write(d.0.join("messages"), "not a folder").unwrap();
    let err = b.with_store(|s| s.save_message(&d.0, "1", "message", &[0; 80], 8000, DAY, "k")).unwrap_err();
    assert!(err.to_string().contains("cannot write the recording"), "{err}");
    assert!(b.with_store(|s| s.messages().unwrap()).is_empty());
}
