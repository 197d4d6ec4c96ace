//! Calls we place (the agent legs of a back-to-back call): the INVITE client
//! transaction (RFC 3261 §17.1.1: Timer A retransmission over UDP, Timer B
//! giving up), ACK for every final response, CANCEL before the answer, and
//! the dialog the 2xx creates.

use std::net::SocketAddr;

use super::{CallKey, ClientTx, Endpoint, Event, Millis, State, T1_MS, T2_MS};
use crate::message::{addr_uri, Message, StartLine};

#[derive(Debug)]
pub(super) struct Uac {
    data: Vec<u8>,
    branch: String,
    /// Timer A: the next retransmission and its interval (until a provisional answer).
    next: Option<(Millis, Millis)>,
    /// Timer B: give up when nothing at all answered by then.
    give_up: Option<Millis>,
    answered: bool,
    cancelled: bool,
    /// The far end's tag, once a response carried one.
    remote_tag: Option<String>,
}

impl Uac {
    pub(super) fn deadline(&self) -> Option<Millis> {
        [self.next.map(|n| n.0), self.give_up].into_iter().flatten().min()
    }

    pub(super) fn answered(&self) -> bool {
        self.answered
    }
}

impl Endpoint {
    /// Places a call: INVITE `target` (a SIP URI) at `dest`, from `caller`
    /// (shown to the agent) with `extra` headers and our SDP offer. Progress,
    /// answer or failure come as events; [`Endpoint::hangup`] cancels it
    /// before the answer and ends it after.
    pub fn call(&mut self, now: Millis, target: &str, dest: SocketAddr, caller: &str, extra: &[(&str, &str)], sdp: &str) -> CallKey {
        let call = CallKey(self.next_call);
        self.next_call += 1;
        let local_tag = self.token();
        let local = self.local_for(dest);
        let call_id = format!("{}@{}", self.token(), local.ip());
        let branch = format!("z9hG4bK{}", self.token());
        let caller_user: String = caller.chars().filter(|c| c.is_ascii_alphanumeric() || "+-_.".contains(*c)).collect();
        let caller_user = if caller_user.is_empty() { "anonymous".to_string() } else { caller_user };
        let local_header = format!("<sip:{caller_user}@{local}>;tag={local_tag}");
        let remote_header = format!("<{}>", addr_uri(target));
        let mut headers = vec![
            ("Via".to_string(), format!("SIP/2.0/UDP {local};branch={branch};rport")),
            ("Max-Forwards".into(), "70".into()),
            ("From".into(), local_header.clone()),
            ("To".into(), remote_header.clone()),
            ("Call-ID".into(), call_id.clone()),
            ("CSeq".into(), "1 INVITE".into()),
            ("Contact".into(), format!("<sip:ivr@{local}>")),
            ("Allow".into(), super::ALLOW.into()),
            ("Content-Type".into(), "application/sdp".into()),
        ];
        headers.extend(self.product("User-Agent"));
        for (n, v) in extra {
            headers.push((n.to_string(), v.to_string()));
        }
        let invite = Message { start: StartLine::Request { method: "INVITE".into(), uri: addr_uri(target).to_string() }, headers, body: sdp.as_bytes().to_vec() };
        let data = self.send(dest, &invite);
        self.by_dialog.insert((call_id.clone(), local_tag.clone()), call);
        self.placed.insert(call);
        self.calls.insert(
            call,
            super::Call {
                call_id,
                local_tag,
                peer: dest,
                invite,
                reinvite: None,
                uac: Some(Uac {
                    data,
                    branch,
                    next: Some((now + T1_MS, T1_MS)),
                    give_up: Some(now + 64 * T1_MS),
                    answered: false,
                    cancelled: false,
                    remote_tag: None,
                }),
                state: State::Early,
                ok: None,
                remote_target: addr_uri(target).to_string(),
                route_set: Vec::new(),
                remote_header,
                local_header,
                local_cseq: 1,
            },
        );
        call
    }

    /// CANCEL our INVITE (RFC 3261 §9.1): only once something answered it
    /// provisionally; before that, it is sent when the first 1xx comes.
    pub(super) fn cancel_invite(&mut self, now: Millis, call: CallKey) {
        let Some(c) = self.calls.get_mut(&call) else { return };
        let Some(u) = c.uac.as_mut() else { return };
        if u.cancelled || u.answered {
            return;
        }
        u.cancelled = true;
        if u.next.is_some() {
            // Nothing heard yet: stop retransmitting; the CANCEL follows the first 1xx,
            // and Timer B ends the attempt otherwise.
            u.next = None;
            return;
        }
        self.send_cancel(now, call);
    }

    fn send_cancel(&mut self, now: Millis, call: CallKey) {
        let Some(c) = self.calls.get(&call) else { return };
        let Some(u) = c.uac.as_ref() else { return };
        let inv = &c.invite;
        let mut headers = Vec::new();
        for name in ["Via", "From", "To", "Call-ID"] {
            if let Some(v) = inv.header(name) {
                headers.push((name.to_string(), v.to_string()));
            }
        }
        headers.push(("CSeq".into(), "1 CANCEL".into()));
        headers.push(("Max-Forwards".into(), "70".into()));
        let StartLine::Request { uri, .. } = &inv.start else { return };
        let cancel = Message { start: StartLine::Request { method: "CANCEL".into(), uri: uri.clone() }, headers, body: Vec::new() };
        let (peer, branch) = (c.peer, u.branch.clone());
        let data = self.send(peer, &cancel);
        // If the 487 never comes, the attempt ends anyway.
        if let Some(u) = self.calls.get_mut(&call).and_then(|c| c.uac.as_mut()) {
            u.give_up = Some(now + 64 * T1_MS);
            self.placed.insert(call);
        }
        self.client_txs.insert((branch, "CANCEL".into()), ClientTx { data, peer, next: now + T1_MS, interval: T1_MS, give_up: now + 64 * T1_MS });
    }

    /// A response to an INVITE we sent.
    pub(super) fn invite_response(&mut self, now: Millis, from: SocketAddr, code: u16, msg: Message) {
        let Some(branch) = msg.branch() else { return };
        let Some((&call, _)) = self.calls.iter().find(|(_, c)| c.uac.as_ref().is_some_and(|u| u.branch == branch)) else {
            // A 2xx retransmitted after the call ended, or for someone else: ACK
            // a 2xx so the far end stops (its dialog ends by our BYE).
            return;
        };
        let c = self.calls.get_mut(&call).unwrap();
        let u = c.uac.as_mut().unwrap();
        if let Some(tag) = msg.to_tag() {
            u.remote_tag = Some(tag.to_string());
        }
        match code {
            100..=199 => {
                let first = u.next.is_some() || u.give_up.is_some();
                u.next = None;
                u.give_up = None;
                let cancel = u.cancelled && first;
                if cancel {
                    self.send_cancel(now, call);
                } else if code > 100 && !u.cancelled {
                    self.events.push_back(Event::Progress { call, code });
                }
            }
            200..=299 => {
                let again = u.answered;
                u.answered = true;
                u.next = None;
                u.give_up = None;
                let cancelled = u.cancelled;
                if !again {
                    c.remote_header = msg.header("To").unwrap_or("").to_string();
                    if let Some(contact) = msg.header("Contact") {
                        c.remote_target = addr_uri(contact).to_string();
                    }
                    c.route_set = msg.headers_named("Record-Route").map(str::to_string).collect::<Vec<_>>().into_iter().rev().collect();
                    c.state = State::Confirmed;
                    c.peer = from;
                }
                self.send_ack(call, None);
                if again {
                    return;
                }
                if cancelled {
                    // Answered as we cancelled: end it properly.
                    self.hangup(now, call);
                    self.events.push_back(Event::Failed { call, code: 487 });
                } else {
                    self.events.push_back(Event::Answered { call, sdp: msg.body });
                }
            }
            _ => {
                // Non-2xx final: ACK in the same transaction, and the attempt is over.
                let to = msg.header("To").unwrap_or("").to_string();
                self.send_ack(call, Some(to));
                self.events.push_back(Event::Failed { call, code });
                self.end(call);
            }
        }
    }

    /// ACK a final response: for a 2xx a new transaction along the dialog's
    /// route to its remote target; for others the INVITE's own branch.
    fn send_ack(&mut self, call: CallKey, failure_to: Option<String>) {
        let Some(c) = self.calls.get(&call) else { return };
        let Some(u) = c.uac.as_ref() else { return };
        let inv = &c.invite;
        let failure = failure_to.is_some();
        let branch = if failure { u.branch.clone() } else { format!("z9hG4bK{}", u.branch.chars().rev().collect::<String>()) };
        let mut headers = vec![
            ("Via".to_string(), format!("SIP/2.0/UDP {};branch={branch};rport", self.local_for(c.peer))),
            ("Max-Forwards".into(), "70".into()),
            ("From".into(), inv.header("From").unwrap_or("").to_string()),
            ("To".into(), failure_to.unwrap_or_else(|| c.remote_header.clone())),
            ("Call-ID".into(), c.call_id.clone()),
            ("CSeq".into(), "1 ACK".into()),
        ];
        if !failure {
            for r in &c.route_set {
                headers.push(("Route".into(), r.clone()));
            }
        }
        let uri = if failure {
            match &inv.start {
                StartLine::Request { uri, .. } => uri.clone(),
                _ => return,
            }
        } else {
            c.remote_target.clone()
        };
        let ack = Message { start: StartLine::Request { method: "ACK".into(), uri }, headers, body: Vec::new() };
        let peer = c.peer;
        self.send(peer, &ack);
    }

    /// Timer A and Timer B of our INVITEs.
    pub(super) fn invite_timers(&mut self, now: Millis) {
        let mut failed = Vec::new();
        let mut done = Vec::new();
        for &call in &self.placed {
            let Some(c) = self.calls.get_mut(&call) else {
                done.push(call);
                continue;
            };
            let Some(u) = c.uac.as_mut() else { continue };
            if u.deadline().is_none() {
                done.push(call); // answered, or waiting for the final answer: no timer
                continue;
            }
            if u.give_up.is_some_and(|g| g <= now) {
                failed.push(call);
                continue;
            }
            if let Some((next, interval)) = u.next {
                if next <= now {
                    self.transmits.push_back((c.peer, u.data.clone()));
                    let interval = (interval * 2).min(T2_MS * 8);
                    u.next = Some((now + interval, interval));
                }
            }
        }
        for call in done {
            self.placed.remove(&call);
        }
        for call in failed {
            let cancelled = self.calls.get(&call).and_then(|c| c.uac.as_ref()).is_some_and(|u| u.cancelled);
            self.events.push_back(Event::Failed { call, code: if cancelled { 487 } else { 408 } });
            self.end(call);
        }
    }
}
