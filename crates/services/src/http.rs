//! The HTTP/JSON backend: a broker's or bank's own systems answer the flows'
//! requests. The contract is in `docs/services.md`:
//!
//! ```text
//! POST <url>   Content-Type: application/json
//! {"service": "quote", "args": {"code": "600000"}, "key": "call-17:3", "now_ms": 1795399200000}
//!
//! 200 OK       {"outcome": "ok", "fields": {"name": "浦发银行", "last": "10.52"}}
//! ```
//!
//! Any other status, a body that is not that JSON, or no answer within the
//! timeout is an error: the flow takes its `failed` branch (or `timeout`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Map, Value as Json};

use crate::{Backend, Reply, Request, ServiceError, Val};

/// One service answered over HTTP.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HttpService {
    /// The URL requests are POSTed to.
    pub http: String,
    /// How long to wait for an answer (default 5000 ms; the flow's own timeout
    /// applies too).
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
}

fn default_timeout() -> u64 {
    5_000
}

/// Services answered by HTTP backends, by service name.
pub struct Http {
    services: BTreeMap<String, HttpService>,
    agent: ureq::Agent,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Answer {
    outcome: String,
    #[serde(default)]
    fields: Map<String, Json>,
}

impl Http {
    pub fn new(services: BTreeMap<String, HttpService>) -> Http {
        let agent = ureq::AgentBuilder::new().redirects(0).build();
        Http { services, agent }
    }

    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }
}

fn to_json(v: &Val) -> Json {
    match v {
        Val::Text(s) => json!(s),
        // Exact decimals travel as strings.
        Val::Num(n) => json!(n.to_string()),
        Val::Bool(b) => json!(b),
    }
}

fn from_json(v: &Json) -> Option<Val> {
    Some(match v {
        Json::String(s) => Val::Text(s.clone()),
        Json::Number(n) => Val::Num(n.to_string().parse().ok()?),
        Json::Bool(b) => Val::Bool(*b),
        _ => return None,
    })
}

impl Backend for Http {
    fn provides(&self, service: &str) -> bool {
        self.services.contains_key(service)
    }

    fn call(&self, req: &Request) -> Result<Reply, ServiceError> {
        let svc = self.services.get(req.service).ok_or_else(|| ServiceError::Unknown(req.service.to_string()))?;
        let args: Map<String, Json> = req.args.iter().map(|(k, v)| (k.clone(), to_json(v))).collect();
        let body = json!({"service": req.service, "args": args, "key": req.key, "now_ms": req.now_ms});
        let response = self
            .agent
            .post(&svc.http)
            .timeout(Duration::from_millis(svc.timeout_ms))
            .send_json(body)
            .map_err(|e| match e {
                ureq::Error::Status(code, _) => ServiceError::Http(format!("{} answered HTTP {code}", svc.http)),
                ureq::Error::Transport(t) => ServiceError::Http(format!("{}: {}", svc.http, t.kind())),
            })?;
        let text = response.into_string().map_err(|e| ServiceError::Http(format!("{}: {e}", svc.http)))?;
        let answer: Answer =
            serde_json::from_str(&text).map_err(|e| ServiceError::Http(format!("{} sent a malformed answer: {e}", svc.http)))?;
        let mut reply = Reply::new(&answer.outcome);
        for (k, v) in &answer.fields {
            let v = from_json(v).ok_or_else(|| ServiceError::Http(format!("{}: field `{k}` is not text, a number or a bool", svc.http)))?;
            reply.fields.push((k.clone(), v));
        }
        Ok(reply)
    }
}
