//! The registry of diagnostic codes. A code is never reused for another meaning.

/// Every code the compiler can report, with a one-line title.
pub const CODES: &[(&str, &str)] = &[
    ("E0001", "syntax error"),
    ("E0002", "an imported or referenced file cannot be read"),
    ("E0003", "the prompt catalogue or a calendar file is malformed"),
    ("E0101", "undefined name"),
    ("E0102", "duplicate definition"),
    ("E0103", "unknown prompt"),
    ("E0104", "prompt has no text for a language the flow speaks"),
    ("E0105", "unknown service"),
    ("E0106", "unknown opening hours or calendar"),
    ("E0107", "key bound twice in one menu"),
    ("E0108", "number bound to two entries"),
    ("E0109", "option given twice"),
    ("E0110", "option not allowed here"),
    ("E0111", "unknown language or time zone"),
    ("E0112", "invalid input rules"),
    ("E0113", "no entry: the project answers no number"),
    ("E0201", "type mismatch"),
    ("E0202", "wrong number of arguments"),
    ("E0203", "unknown outcome or field"),
    ("E0204", "service outcome not handled"),
    ("E0205", "secret value would be spoken or copied"),
    ("E0206", "statement used outside the place it belongs"),
    ("E0207", "transfer target is not a dialable number"),
    ("E0301", "dead end: the call can reach a point with nothing left to do"),
    ("E0302", "loop that waits for no input"),
    ("E0303", "sub-flow calls itself"),
    ("W0401", "unreachable step, menu or sub-flow"),
    ("W0402", "menu or collection with no way out when retries run out"),
    ("W0403", "operation outcome not handled"),
    ("E0501", "queue not configured in this deployment"),
    ("E0502", "priority is not a configured caller tier"),
    ("W0501", "priority cannot be checked against the caller tiers"),
];

/// The title of a code.
pub fn explain(code: &str) -> Option<&'static str> {
    CODES.iter().find(|(c, _)| *c == code).map(|(_, t)| *t)
}
