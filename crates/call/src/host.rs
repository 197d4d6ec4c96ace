//! What every host does the same way with a flow's requests: the request as
//! data ([`ServiceCall`]: service, arguments, idempotency key, and the
//! outcomes and field types the flow declared), answers typed against that
//! declaration, and the conventions both the compiler and the runtime follow.
//! Calling a backend is the host's (`ivr_server::services`, used by `ivr sim`
//! and `ivr serve` alike); the core never touches one.

use ivr_bytecode::{OpKind, Program, Type};
use ivr_vm::{Arg, Value};

pub use ivr_bytecode::contract::{is_transfer_target, SURVEY_SCORE_ARG};

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

    /// For hosts that hold plain (name, value) arguments.
    pub fn with_values(program: &Program, service: &str, args: &[(String, Value)], key: String) -> ServiceCall {
        let args = args.iter().map(|(name, value)| Arg { name: name.clone(), value: value.clone(), secret: false }).collect();
        ServiceCall::new(program, service, args, key)
    }

    /// The declared fields of `outcome` that `field` gives as their declared
    /// types (`field` converts; the VM treats a missing field as a failed answer).
    pub fn typed(&self, outcome: &str, field: impl Fn(&str, Type) -> Option<Value>) -> Vec<(String, Value)> {
        let types = self.declared.iter().find(|(n, _)| n == outcome).map(|(_, f)| f.as_slice()).unwrap_or_default();
        types.iter().filter_map(|(n, ty)| field(n, *ty).map(|v| (n.clone(), v))).collect()
    }
}

/// The caller's survey score, when a request carries one (see
/// [`SURVEY_SCORE_ARG`]); secret arguments never count.
pub fn survey_score(args: &[Arg]) -> Option<String> {
    args.iter().find(|a| a.name == SURVEY_SCORE_ARG && !a.secret).map(|a| a.value.to_string())
}
