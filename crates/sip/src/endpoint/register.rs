//! REGISTER (RFC 3261 §10), reported to the host, which authenticates and
//! binds: agents' phones log in this way.

use std::net::SocketAddr;

use super::{Endpoint, Event, Millis, ServerTx, T1_MS};
use crate::message::{addr_uri, param, uri_user, Message};

/// A REGISTER waiting for the host's answer.
#[derive(Clone, PartialEq, Eq)]
pub struct Registration {
    /// Answer with this in [`Endpoint::answer`].
    pub id: u64,
    pub source: SocketAddr,
    /// The user of the To URI (the agent's work number).
    pub user: String,
    /// The Contact URI to bind (`None`: a query; `Some("*")`: remove all).
    pub contact: Option<String>,
    /// Seconds; 0 removes the binding.
    pub expires: u32,
    /// The `Authorization` header, if the phone sent one.
    pub authorization: Option<String>,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("id", &self.id)
            .field("source", &self.source)
            .field("user", &self.user)
            .field("contact", &self.contact)
            .field("expires", &self.expires)
            .field("authorization", &self.authorization.as_ref().map(|_| "…"))
            .finish()
    }
}

impl Endpoint {
    pub(super) fn register(&mut self, now: Millis, from: SocketAddr, msg: Message) {
        let contact_h = msg.header("Contact");
        let contact = contact_h.map(|c| if c.trim() == "*" { "*".to_string() } else { addr_uri(c).to_string() });
        let expires = contact_h
            .and_then(|c| param(c, "expires"))
            .or(msg.header("Expires"))
            .and_then(|e| e.trim().parse::<u32>().ok())
            .unwrap_or(3600);
        let user = uri_user(addr_uri(msg.header("To").unwrap_or(""))).unwrap_or_default();
        let id = self.next_pending;
        self.next_pending += 1;
        // Retransmissions of this REGISTER are absorbed until it is answered.
        if let Some(b) = msg.transaction_key() {
            self.server_txs.insert((b, "REGISTER".into()), ServerTx { response: None, peer: from, expires: now + 64 * T1_MS });
        }
        let authorization = msg.header("Authorization").map(str::to_string);
        self.pending.insert(id, (msg, from));
        self.events.push_back(Event::Register(Registration { id, source: from, user, contact, expires, authorization }));
    }

    /// Answers a pending request (a REGISTER) with `code` and extra headers.
    pub fn answer(&mut self, now: Millis, id: u64, code: u16, reason: &str, extra: &[(&str, &str)]) {
        let Some((msg, from)) = self.pending.remove(&id) else { return };
        let tag = if code >= 200 { Some(self.token()) } else { None };
        self.respond(now, &msg, from, code, reason, tag.as_deref(), extra);
    }
}
