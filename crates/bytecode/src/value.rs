//! Runtime values: text, exact decimal numbers and booleans.

use std::fmt;
use std::sync::Arc;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// A value a flow computes with. Numbers are exact decimals, so prices such as
/// `10.05` never pick up binary rounding.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "Repr", into = "Repr")]
pub enum Value {
    Text(Arc<str>),
    Num(Decimal),
    Bool(bool),
}

/// The encoded form: numbers travel as their exact decimal text.
#[derive(Serialize, Deserialize)]
enum Repr {
    Text(String),
    Num(String),
    Bool(bool),
}

impl From<Repr> for Value {
    fn from(r: Repr) -> Value {
        match r {
            Repr::Text(s) => Value::Text(s.into()),
            // An unparseable number decodes as text; the verifier rejects constant
            // tables whose types do not match their use.
            Repr::Num(s) => s.parse().map(Value::Num).unwrap_or_else(|_| Value::Text(s.into())),
            Repr::Bool(b) => Value::Bool(b),
        }
    }
}

impl From<Value> for Repr {
    fn from(v: Value) -> Repr {
        match v {
            Value::Text(s) => Repr::Text(s.to_string()),
            Value::Num(n) => Repr::Num(n.to_string()),
            Value::Bool(b) => Repr::Bool(b),
        }
    }
}

impl Value {
    pub fn text(s: &str) -> Value {
        Value::Text(Arc::from(s))
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Text(_) => "text",
            Value::Num(_) => "number",
            Value::Bool(_) => "bool",
        }
    }

    pub fn as_num(&self) -> Option<Decimal> {
        match self {
            Value::Num(n) => Some(*n),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Text(s) => f.write_str(s),
            Value::Num(n) => write!(f, "{n}"),
            Value::Bool(b) => write!(f, "{b}"),
        }
    }
}
