//! SIP for the IVR runtime: messages ([`message`]) and the sans-IO user agent
//! server ([`endpoint`]): transactions, dialogs and timers driven by the host's
//! clock; the host owns the sockets.
//!
//! Why our own parser: rsip 0.4 (the design card's first choice, unreleased since
//! 2022) refuses 7 of RFC 4475's 27 valid torture messages; a tolerant parser of
//! our own (folding, compact forms, escapes, unknown methods) that still reports
//! what it could read of a broken message is smaller than a compatibility layer.

pub mod digest;
pub mod endpoint;
pub mod framing;
pub mod limit;
pub mod message;
pub mod uri;
