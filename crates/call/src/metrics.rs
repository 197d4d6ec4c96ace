//! What the core counts for operators: plain integers and histogram buckets
//! ([`Stats`]), updated as calls happen inside `handle` on the core's clock,
//! and read by the host at scrape time ([`Core::metrics`]), which renders
//! them in whatever format it serves. This crate knows no metrics library.
//!
//! Every label is bounded: flows and services are those the deployment
//! compiled, outcomes are classes ([`EndClass`]), SIP methods are a fixed list
//! with `other`. Caller numbers and call ids are never labels.

use std::collections::BTreeMap;

use ivr_media::dtmf::KeySource;
use ivr_sip::endpoint::CallKey;
use ivr_vm::OpId;

use crate::{Core, Shed};

/// Counts in fixed buckets: how many observations were at most each bound
/// (not cumulative: each observation lands in one bucket), the rest over the
/// last bound, and their sum. Milliseconds, the core's unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram {
    bounds_ms: &'static [u64],
    /// One per bound, and one for what is over the last.
    counts: Vec<u64>,
    sum_ms: u64,
}

impl Histogram {
    pub fn new(bounds_ms: &'static [u64]) -> Histogram {
        debug_assert!(bounds_ms.windows(2).all(|w| w[0] < w[1]), "bounds ascend");
        Histogram { bounds_ms, counts: vec![0; bounds_ms.len() + 1], sum_ms: 0 }
    }

    pub fn observe(&mut self, ms: u64) {
        let i = self.bounds_ms.partition_point(|&b| b < ms);
        self.counts[i] += 1;
        self.sum_ms = self.sum_ms.saturating_add(ms);
    }

    /// (upper bound, observations in this bucket), for each bound; what is
    /// over the last bound is `count()` less their sum.
    pub fn buckets(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.bounds_ms.iter().copied().zip(self.counts.iter().copied())
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn sum_ms(&self) -> u64 {
        self.sum_ms
    }
}

/// INVITE received → 200 sent (ringing included).
pub const SETUP_BOUNDS_MS: &[u64] = &[5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000];
/// A caller's call, start to end.
pub const DURATION_BOUNDS_MS: &[u64] = &[5_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000, 1_200_000, 1_800_000, 3_600_000, 7_200_000];
/// A service request, sent to answered.
pub const SERVICE_BOUNDS_MS: &[u64] = &[5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000];

/// How a call ended, as a bounded class of its record's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EndClass {
    /// The flow hung up (`hangup`, the end of the flow, retries exhausted).
    NormalHangup,
    /// The caller's BYE.
    CallerHungUp,
    /// The caller's CANCEL before the answer.
    Cancelled,
    /// Bridged to a transfer target.
    Transferred,
    /// A fault in the flow.
    Fault,
    /// Ended at `max_call_s`.
    MaxDuration,
    /// A bug in the core's handling of the call.
    InternalError,
    /// The caller never acknowledged the answer.
    NoAck,
    /// Left open by a crash; closed when the server started again.
    ServerCrashed,
    /// Anything else (a transfer that failed, media that could not open, …).
    Other,
}

impl EndClass {
    pub const ALL: [EndClass; 10] = [
        EndClass::NormalHangup,
        EndClass::CallerHungUp,
        EndClass::Cancelled,
        EndClass::Transferred,
        EndClass::Fault,
        EndClass::MaxDuration,
        EndClass::InternalError,
        EndClass::NoAck,
        EndClass::ServerCrashed,
        EndClass::Other,
    ];

    pub fn name(self) -> &'static str {
        match self {
            EndClass::NormalHangup => "normal_hangup",
            EndClass::CallerHungUp => "caller_hung_up",
            EndClass::Cancelled => "cancelled",
            EndClass::Transferred => "transferred",
            EndClass::Fault => "fault",
            EndClass::MaxDuration => "max_duration",
            EndClass::InternalError => "internal_error",
            EndClass::NoAck => "no_ack",
            EndClass::ServerCrashed => "server_crashed",
            EndClass::Other => "other",
        }
    }

    /// The class of a call record's outcome.
    pub fn of(outcome: &str) -> EndClass {
        match outcome {
            "hangup:normal" | "hangup:retries_exhausted" | "flow_ended" => EndClass::NormalHangup,
            "caller_hung_up" => EndClass::CallerHungUp,
            "caller_cancelled" => EndClass::Cancelled,
            "fault" | "hangup:fault" => EndClass::Fault,
            "max_duration" => EndClass::MaxDuration,
            "internal_error" => EndClass::InternalError,
            "no_ack" => EndClass::NoAck,
            crate::records::CRASHED => EndClass::ServerCrashed,
            o if o.starts_with("transferred:") => EndClass::Transferred,
            _ => EndClass::Other,
        }
    }
}

/// SIP methods counted by name; the rest are `other`.
pub const METHODS: [&str; 14] = ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "INFO", "UPDATE", "PRACK", "SUBSCRIBE", "NOTIFY", "REFER", "MESSAGE", "other"];
/// Response classes; `other` is a status line we could not read.
pub const STATUS_CLASSES: [&str; 7] = ["1xx", "2xx", "3xx", "4xx", "5xx", "6xx", "other"];

/// SIP messages of one direction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SipCounts {
    /// By [`METHODS`].
    pub requests: [u64; METHODS.len()],
    /// By [`STATUS_CLASSES`].
    pub responses: [u64; STATUS_CLASSES.len()],
}

impl SipCounts {
    /// Counts one message by its first line; keep-alives (blank) are not messages.
    fn count(&mut self, data: &[u8]) {
        let line = data.split(|b| *b == b'\n').next().unwrap_or_default();
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        if let Some(status) = line.strip_prefix(b"SIP/2.0 ") {
            let class = match status.first() {
                Some(d @ b'1'..=b'6') => (d - b'1') as usize,
                _ => STATUS_CLASSES.len() - 1,
            };
            self.responses[class] += 1;
        } else {
            let method = line.split(|b| *b == b' ').next().unwrap_or_default();
            let i = METHODS.iter().position(|m| m.as_bytes() == method).unwrap_or(METHODS.len() - 1);
            self.requests[i] += 1;
        }
    }
}

/// One service's requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceStats {
    /// By outcome: one the flow declared, `timeout`, `failed`, else `other`.
    pub outcomes: BTreeMap<String, u64>,
    pub latency: Histogram,
}

/// A request on its way: which service, when, and the outcomes it may name.
#[derive(Debug, Clone)]
struct InFlight {
    service: String,
    sent: u64,
    declared: Vec<String>,
}

/// Calls on one release.
#[derive(Debug, Clone, Default)]
pub struct ReleaseCounts {
    pub started: u64,
    /// By [`EndClass::ALL`] index.
    pub ended: [u64; EndClass::ALL.len()],
}

/// Everything the core counts, since it started.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Calls taken (a session started), by flow name (`not_in_service` for
    /// numbers no flow serves).
    pub calls_started: BTreeMap<String, u64>,
    /// Calls ended, by [`EndClass::ALL`] index.
    pub calls_ended: [u64; EndClass::ALL.len()],
    /// Calls started and ended on each release (deployed version) this
    /// process has served: a canary's numbers beside the current one's.
    pub releases: BTreeMap<String, ReleaseCounts>,
    pub setup: Histogram,
    pub duration: Histogram,
    /// Every message that reached the core, before any shedding.
    pub sip_received: SipCounts,
    /// Every message sent, retransmissions included.
    pub sip_sent: SipCounts,
    /// Keys received (callers and agent legs), by [`KeySource::ALL`] index.
    pub keys: [u64; KeySource::ALL.len()],
    /// Service requests by service name.
    pub services: BTreeMap<String, ServiceStats>,
    in_flight: BTreeMap<(CallKey, u32), InFlight>,
}

impl Default for Stats {
    fn default() -> Stats {
        Stats {
            calls_started: BTreeMap::new(),
            calls_ended: [0; EndClass::ALL.len()],
            releases: BTreeMap::new(),
            setup: Histogram::new(SETUP_BOUNDS_MS),
            duration: Histogram::new(DURATION_BOUNDS_MS),
            sip_received: SipCounts::default(),
            sip_sent: SipCounts::default(),
            keys: [0; KeySource::ALL.len()],
            services: BTreeMap::new(),
            in_flight: BTreeMap::new(),
        }
    }
}

impl Stats {
    pub(crate) fn sip_received(&mut self, data: &[u8]) {
        self.sip_received.count(data);
    }

    pub(crate) fn sip_sent(&mut self, data: &[u8]) {
        self.sip_sent.count(data);
    }

    pub(crate) fn call_started(&mut self, flow: &str, release: &str) {
        match self.calls_started.get_mut(flow) {
            Some(n) => *n += 1,
            None => {
                self.calls_started.insert(flow.to_string(), 1);
            }
        }
        if !release.is_empty() {
            self.releases.entry(release.to_string()).or_default().started += 1;
        }
    }

    /// The call was answered (200 sent) `setup_ms` after its INVITE.
    pub(crate) fn answered(&mut self, setup_ms: u64) {
        self.setup.observe(setup_ms);
    }

    pub(crate) fn call_ended(&mut self, outcome: Option<&str>, duration_ms: u64, release: &str) {
        let class = EndClass::of(outcome.unwrap_or(""));
        self.calls_ended[class as usize] += 1;
        if !release.is_empty() {
            self.releases.entry(release.to_string()).or_default().ended[class as usize] += 1;
        }
        self.duration.observe(duration_ms);
    }

    pub(crate) fn key(&mut self, from: KeySource) {
        self.keys[from as usize] += 1;
    }

    pub(crate) fn request_sent(&mut self, now: u64, call: CallKey, op: OpId, request: &crate::host::ServiceCall) {
        let declared = request.declared.iter().map(|(n, _)| n.clone()).collect();
        self.in_flight.insert((call, op.0), InFlight { service: request.service.clone(), sent: now, declared });
    }

    /// An operation completed: counted if it was a service request.
    pub(crate) fn completed(&mut self, now: u64, call: CallKey, op: OpId, outcome: &str) {
        let Some(r) = self.in_flight.remove(&(call, op.0)) else { return };
        let known = r.declared.iter().any(|d| d == outcome) || matches!(outcome, "timeout" | "failed");
        let outcome = if known { outcome } else { "other" };
        let s = self.services.entry(r.service).or_insert_with(|| ServiceStats { outcomes: BTreeMap::new(), latency: Histogram::new(SERVICE_BOUNDS_MS) });
        *s.outcomes.entry(outcome.to_string()).or_default() += 1;
        s.latency.observe(now.saturating_sub(r.sent));
    }

    /// Requests sent and not yet answered.
    pub fn requests_in_flight(&self) -> usize {
        self.in_flight.len()
    }
}

/// What the host renders at a scrape: the counts, and the live state they
/// go with.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub stats: Stats,
    pub shed: Shed,
    /// Callers' calls in progress.
    pub calls_active: usize,
    pub draining: bool,
    /// New calls refused for the media clock's load.
    pub overloaded: bool,
    /// The media tick's smoothed lateness plus work.
    pub tick_load_ms: f64,
    /// (name, version) of each flow new calls get.
    pub flows: Vec<(String, String)>,
    /// The releases new calls get: (release, `current` or `canary`, share of new calls %).
    pub releases: Vec<(String, &'static str, u8)>,
    /// Queues and agents as the admin API shows them.
    pub acd: ivr_acd::Snapshot,
}

/// Why the node is not taking new calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady {
    /// Stopping (SIGTERM): calls in progress finish, new ones get 503.
    Draining,
    NoFlows,
    /// The media clock is overloaded: new calls get 503 until it recovers.
    Overloaded,
}

impl NotReady {
    pub fn name(self) -> &'static str {
        match self {
            NotReady::Draining => "draining",
            NotReady::NoFlows => "no_flows",
            NotReady::Overloaded => "overloaded",
        }
    }
}

impl Core {
    /// The counts and the live state, for the host's metrics.
    pub fn metrics(&self) -> Metrics {
        Metrics {
            stats: Stats { in_flight: BTreeMap::new(), ..self.stats.clone() },
            shed: self.shed,
            calls_active: self.calls.len(),
            draining: self.draining,
            overloaded: self.admission.is_overloaded(),
            tick_load_ms: self.admission.load_ms(),
            flows: self.flows.iter().map(|f| (f.name.clone(), f.version.clone())).collect(),
            releases: {
                let canary = self.canary.as_ref().and_then(|c| Some((c.flows.first()?.release.clone(), "canary", c.percent)));
                let current = self.flows.first().map(|f| (f.release.clone(), "current", 100 - canary.as_ref().map_or(0, |c| c.2.min(100))));
                current.into_iter().chain(canary).filter(|r| !r.0.is_empty()).collect()
            },
            acd: self.agents.acd.snapshot(self.now),
        }
    }

    /// The counts alone (tests).
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Why the core would refuse a new call now, if it would (capacity aside:
    /// a full node is still a healthy one).
    pub fn not_ready(&self) -> Vec<NotReady> {
        let mut why = Vec::new();
        if self.draining {
            why.push(NotReady::Draining);
        }
        if self.flows.is_empty() {
            why.push(NotReady::NoFlows);
        }
        if self.admission.is_overloaded() {
            why.push(NotReady::Overloaded);
        }
        why
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_hold_each_observation_once_at_its_bound() {
        let mut h = Histogram::new(&[10, 100]);
        for ms in [0, 10, 11, 100, 101, 5_000] {
            h.observe(ms);
        }
        assert_eq!(h.buckets().collect::<Vec<_>>(), [(10, 2), (100, 2)]);
        assert_eq!((h.count(), h.sum_ms()), (6, 5_222));
    }

    #[test]
    fn sip_messages_are_counted_by_method_and_status_class_with_bounded_labels() {
        let mut c = SipCounts::default();
        for m in ["INVITE sip:1@x SIP/2.0\r\n", "ACK sip:1@x SIP/2.0\r\n", "FROB sip:1@x SIP/2.0\r\n", "\r\n\r\n", "SIP/2.0 200 OK\r\n", "SIP/2.0 180 Ringing\r\n", "SIP/2.0 503 x\r\n", "SIP/2.0 999 x\r\n"] {
            c.count(m.as_bytes());
        }
        let named = |i: usize| METHODS[i];
        let req: Vec<(&str, u64)> = c.requests.iter().enumerate().filter(|(_, n)| **n > 0).map(|(i, n)| (named(i), *n)).collect();
        assert_eq!(req, [("INVITE", 1), ("ACK", 1), ("other", 1)], "the keep-alive is not a message");
        assert_eq!(c.responses, [1, 1, 0, 0, 1, 0, 1]);
    }

    #[test]
    fn outcomes_fall_into_their_classes() {
        let cases = [
            ("hangup:normal", "normal_hangup"),
            ("hangup:retries_exhausted", "normal_hangup"),
            ("caller_hung_up", "caller_hung_up"),
            ("caller_cancelled", "cancelled"),
            ("transferred:95588", "transferred"),
            ("transfer_failed:95588:486", "other"),
            ("hangup:fault", "fault"),
            ("max_duration", "max_duration"),
            ("internal_error", "internal_error"),
            ("no_ack", "no_ack"),
            ("server_crashed", "server_crashed"),
            ("", "other"),
        ];
        for (outcome, class) in cases {
            assert_eq!(EndClass::of(outcome).name(), class, "{outcome}");
        }
        for (i, c) in EndClass::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i, "ALL is in declaration order");
        }
        for (i, s) in KeySource::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i);
        }
    }
}
