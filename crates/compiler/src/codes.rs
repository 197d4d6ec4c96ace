//! The diagnostic codes the compiler reports. The registry itself is
//! [`ivr_syntax::Code`] (the parser reports syntax errors with it too); each
//! variant is one rule with its code and title, never reused.

pub use ivr_syntax::{Code, CODES};

/// The title of a code (`E0101` → "undefined name").
pub fn explain(code: &str) -> Option<&'static str> {
    Code::from_code(code).map(Code::title)
}
