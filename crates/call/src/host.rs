//! What every host does the same way with a flow's requests: service
//! arguments and answers converted between flow values and service values,
//! answers checked against the outcomes and field types the flow declared,
//! and the conventions both the compiler and the runtime follow. `ivr sim`
//! and `ivr serve` answer through these functions.

use ivr_bytecode::{OpKind, Program, Type};
use ivr_services::{Backend, Request, ServiceError, Val};
use ivr_vm::{Arg, Value};

pub use ivr_bytecode::contract::{is_transfer_target, SURVEY_SCORE_ARG};

/// A flow value as a service argument.
pub fn to_val(v: &Value) -> Val {
    match v {
        Value::Text(s) => Val::Text(s.to_string()),
        Value::Num(n) => Val::Num(*n),
        Value::Bool(b) => Val::Bool(*b),
    }
}

/// A service's answer field as the type the flow declared, if it converts.
pub fn from_val(v: &Val, ty: Type) -> Option<Value> {
    match (v, ty) {
        (Val::Text(s), Type::Text) => Some(Value::text(s)),
        (Val::Num(n), Type::Number) => Some(Value::Num(*n)),
        (Val::Text(s), Type::Number) => s.parse().ok().map(Value::Num),
        (Val::Num(n), Type::Text) => Some(Value::text(&n.to_string())),
        (Val::Bool(b), Type::Bool) => Some(Value::Bool(*b)),
        _ => None,
    }
}

/// The outcomes `service` may answer with in `program`, each with its
/// declared fields and their types.
pub fn declared_outcomes(program: &Program, service: &str) -> Vec<(String, Vec<(String, Type)>)> {
    program
        .ops
        .iter()
        .find(|o| matches!(&o.kind, OpKind::Request { service: s, .. } if s == service))
        .map(|o| o.outcomes.iter().map(|oc| (oc.name.clone(), oc.fields.iter().map(|f| (f.0.clone(), f.1)).collect())).collect())
        .unwrap_or_default()
}

/// A service request as a host sends it: everything needed to call the
/// backend off the signalling thread and answer the flow.
#[derive(Debug, Clone)]
pub struct ServiceCall {
    pub service: String,
    pub args: Vec<Arg>,
    /// The idempotency key (call id and operation): a retried request with the
    /// same key is answered with the first answer (orders are never doubled).
    pub key: String,
    /// What the flow declared it accepts.
    pub declared: Vec<(String, Vec<(String, Type)>)>,
}

impl ServiceCall {
    pub fn new(program: &Program, service: &str, args: Vec<Arg>, key: String) -> ServiceCall {
        ServiceCall { declared: declared_outcomes(program, service), service: service.to_string(), args, key }
    }

    /// Calls `backend` (blocking) at wall-clock `now_ms` and returns the
    /// outcome and the declared fields, typed; any error is `failed`.
    pub fn answer(&self, backend: Option<&dyn Backend>, now_ms: i64) -> (String, Vec<(String, Value)>) {
        let vals: Vec<(String, Val)> = self.args.iter().map(|a| (a.name.clone(), to_val(&a.value))).collect();
        let result = match backend.filter(|b| b.provides(&self.service)) {
            Some(b) => b.call(&Request { service: &self.service, args: &vals, key: &self.key, now_ms }),
            None => Err(ServiceError::Unknown(self.service.clone())),
        };
        match result {
            Ok(reply) => {
                let fields = self.typed(&reply.outcome, |name| reply.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()));
                (reply.outcome, fields)
            }
            Err(e) => {
                tracing::warn!(service = %self.service, "service failed: {e}");
                ("failed".to_string(), Vec::new())
            }
        }
    }

    /// The declared fields of `outcome` that `field` gives and that convert to
    /// their declared types (the VM treats a missing field as a failed answer).
    pub fn typed(&self, outcome: &str, field: impl Fn(&str) -> Option<Val>) -> Vec<(String, Value)> {
        let types = self.declared.iter().find(|(n, _)| n == outcome).map(|(_, f)| f.as_slice()).unwrap_or_default();
        types.iter().filter_map(|(n, ty)| field(n).and_then(|v| from_val(&v, *ty)).map(|v| (n.clone(), v))).collect()
    }
}

/// The caller's survey score, when a request carries one (see
/// [`SURVEY_SCORE_ARG`]); secret arguments never count.
pub fn survey_score(args: &[Arg]) -> Option<String> {
    args.iter().find(|a| a.name == SURVEY_SCORE_ARG && !a.secret).map(|a| a.value.to_string())
}
