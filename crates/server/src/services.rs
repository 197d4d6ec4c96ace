//! Calling the services behind the flows, the same way for every host
//! (`ivr serve` on its blocking pool, `ivr sim` inline): a core's
//! [`ServiceCall`] sent to a [`Backend`], the answer typed against what the
//! flow declared.

use ivr_call::host::ServiceCall;
use ivr_call::Value;
use ivr_bytecode::Type;
use ivr_services::{Backend, Request, ServiceError, Val};

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

/// Calls `backend` (blocking) at wall-clock `now_ms`: the outcome and the
/// declared fields, typed.
pub fn call(request: &ServiceCall, backend: Option<&dyn Backend>, now_ms: i64) -> Result<(String, Vec<(String, Value)>), ServiceError> {
    let vals: Vec<(String, Val)> = request.args.iter().map(|a| (a.name.clone(), to_val(&a.value))).collect();
    let reply = match backend.filter(|b| b.provides(&request.service)) {
        Some(b) => b.call(&Request { service: &request.service, args: &vals, key: &request.key, now_ms })?,
        None => return Err(ServiceError::Unknown(request.service.clone())),
    };
    let fields = request.typed(&reply.outcome, |name, ty| reply.fields.iter().find(|(k, _)| k == name).and_then(|(_, v)| from_val(v, ty)));
    Ok((reply.outcome, fields))
}

/// [`call`], any error answered `failed` (and logged).
pub fn answer(request: &ServiceCall, backend: Option<&dyn Backend>, now_ms: i64) -> (String, Vec<(String, Value)>) {
    call(request, backend, now_ms).unwrap_or_else(|e| {
        tracing::warn!(service = %request.service, "service failed: {e}");
        ("failed".to_string(), Vec::new())
    })
}
