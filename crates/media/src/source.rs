//! Which received RTP packets are the caller's: the guard between a call's RTP
//! socket and everything that acts on its audio or its keys.
//!
//! Plain RTP carries no proof of who sent it (we have no SRTP yet): anyone who
//! finds a call's port can send to it, and an RFC 4733 packet from a stranger
//! would otherwise be a key press in a bank's PIN prompt. The evidence we have
//! is the packet's source address, its payload type, its SSRC and the shape of
//! its stream, and [`SourceGuard`] weighs exactly those. It is a pure state
//! machine: the host passes the time, the source address and the parsed packet
//! and acts on the [`Verdict`]; nothing here reads a clock or a socket.
//!
//! # The rules
//!
//! **Strict** ([`LatchPolicy::Strict`]): only packets from exactly the
//! negotiated IP address *and* port are the caller's. This needs a caller that
//! sends from the port it receives on (symmetric RTP, RFC 4961), as trunks and
//! SBCs do; a caller behind NAT needs [`LatchPolicy::Latch`].
//!
//! **Latch** ([`LatchPolicy::Latch`], symmetric RTP for callers behind NAT):
//! until the caller's source is known, packets from the negotiated address
//! settle it at once. Any other source may be *latched* to, at most once, and
//! only when its packets look like the caller's stream:
//!
//! - only packets of the negotiated audio payload type count: a telephone-event
//!   packet never starts or extends a candidacy, so injected DTMF can neither
//!   latch nor be taken as keys;
//! - the candidate must send a run of [`LATCH_PACKETS`] audio packets under one
//!   SSRC, each sequence number 1 to [`MAX_SEQ_STEP`] past the one before,
//!   spanning at least [`LATCH_MIN_SPAN_MS`] (a burst sent all at once is not a
//!   stream);
//! - nothing at all may have arrived from the negotiated address: its first
//!   packet, whatever it holds, settles the source there and ends latching for
//!   good (the caller is demonstrably there);
//! - sources on the negotiated IP (another port: a port-rewriting NAT or the
//!   caller's own host) are preferred. A run from another IP also has to wait
//!   until [`LATCH_GRACE_MS`] after the answer was sent; a run on the
//!   negotiated IP does not;
//! - a packet from any other source at least as trusted as the candidate (the
//!   negotiated address, then its IP, then any other IP) ends the candidacy. Two
//!   sources sending at once therefore never latch: contention fails closed
//!   (no audio, no keys) rather than guessing. A source on another IP cannot
//!   disturb a candidate on the negotiated IP.
//!
//! Nothing is latched before the answer that gives the caller our address
//! (see [`SourceGuard::unanswered`] for a guard made while the call rings).
//! Once a source is latched it is the only one accepted, until a re-INVITE
//! moves the call to another address ([`SourceGuard::renegotiate`]): there is
//! no re-latching, not even to the negotiated address.
//!
//! **Why a third party that sends first cannot win** while the caller is also
//! sending: a latch completes only on the candidate's run, and every packet of
//! the caller (from the negotiated address, or from the negotiated IP when the
//! candidate is elsewhere) ends that run; a caller at the negotiated address
//! settles the source with its first packet. So the third party wins only if
//! the caller sent nothing at all during its whole run: for a third party on
//! another IP, that means nothing in the first [`LATCH_GRACE_MS`] after our
//! answer (which the caller needs before it can send), plus the run; for one on
//! the caller's own IP, nothing in [`LATCH_PACKETS`] packets over at least
//! [`LATCH_MIN_SPAN_MS`]. A caller behind NAT on another IP has no such
//! priority: while a third party on yet another IP also sends, neither latches.
//!
//! # SSRC pinning
//!
//! The accepted source's audio SSRC is pinned by its first audio packet (or by
//! the run it was latched on). RFC 4733 packets are the caller's only under that
//! SSRC (RFC 4733 events share the audio stream's SSRC), or, while no audio has
//! been accepted yet, from the accepted source under any SSRC. A new audio SSRC
//! from the same source (a B2BUA switching media, a new call leg behind an SBC)
//! is taken as a new stream only after [`SSRC_SWITCH_PACKETS`] consecutive
//! audio packets of it, with no packet of the pinned SSRC between; its packets
//! before that, and its events, are dropped. So one stray packet can never move
//! where keys are taken from.

use std::net::SocketAddr;

use crate::rtp::RtpPacket;
use crate::sdp::Negotiated;

/// Audio packets a latch candidate must send, in one run, before it is latched.
pub const LATCH_PACKETS: u32 = 3;
/// The least time (ms) between the first and the last packet of a latch run:
/// three packets at 20 ms. A burst, however long, never latches.
pub const LATCH_MIN_SPAN_MS: u64 = 40;
/// How long (ms) after the answer a source on an IP other than the negotiated
/// one must wait before it may be latched: the caller's own stream normally
/// begins well within it (the answer's one-way delay plus a packet time), and
/// its first packet then ends any third party's candidacy.
pub const LATCH_GRACE_MS: u64 = 500;
/// The largest sequence number step that still continues a run (up to 15
/// packets lost between two received ones).
pub const MAX_SEQ_STEP: u16 = 16;
/// Consecutive audio packets under a new SSRC, from the accepted source, after
/// which it is taken as the caller's new stream.
pub const SSRC_SWITCH_PACKETS: u32 = 3;

/// Whether the caller's media may come from somewhere other than its SDP address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatchPolicy {
    /// Only from exactly the negotiated address and port.
    Strict,
    /// From the negotiated address, or from one other source latched to once
    /// (symmetric RTP for callers behind NAT).
    Latch,
}

/// What to do with one received packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The caller's audio (the negotiated codec): decode, record or relay it.
    /// `latched`: this packet latched the guard to its source, so our own RTP
    /// should go there from now on (symmetric RTP); it happens at most once per
    /// negotiated address.
    Audio { latched: bool },
    /// The caller's RFC 4733 telephone event: hand it to the
    /// [`DtmfReceiver`](crate::dtmf::DtmfReceiver) (or relay it).
    Event,
    /// Not the caller's: ignore it.
    Dropped(DropReason),
}

impl Verdict {
    /// Whether the packet is the caller's (audio or event).
    pub fn is_accepted(self) -> bool {
        !matches!(self, Verdict::Dropped(_))
    }
}

/// Why a packet was dropped (each has a counter in [`GuardStats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// From a source that is not the caller's.
    WrongSource,
    /// Audio from a source the guard may yet latch to, held back until its run
    /// is complete.
    LatchPending,
    /// From the caller's source, but neither the negotiated codec nor
    /// telephone-event (comfort noise, another codec, multiplexed RTCP).
    BadPayload,
    /// From the caller's source, but under an SSRC other than its audio
    /// stream's (an event of another stream, or a new stream not yet taken).
    WrongSsrc,
}

/// Packet counts for metrics: everything the guard was shown, by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuardStats {
    pub accepted_audio: u64,
    pub accepted_events: u64,
    pub dropped_wrong_source: u64,
    pub dropped_latch_pending: u64,
    pub dropped_bad_payload: u64,
    pub dropped_wrong_ssrc: u64,
    /// Latches made (at most one per negotiated address).
    pub latches: u64,
}

impl GuardStats {
    /// All packets dropped, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_wrong_source
            .saturating_add(self.dropped_latch_pending)
            .saturating_add(self.dropped_bad_payload)
            .saturating_add(self.dropped_wrong_ssrc)
    }
}

/// How far a source is trusted to be the caller, least first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    OtherIp,
    SameIp,
    Negotiated,
}

/// A run of audio packets from one source under one SSRC.
#[derive(Debug, Clone, Copy)]
struct Run {
    from: SocketAddr,
    ssrc: u32,
    last_seq: u16,
    packets: u32,
    first_ms: u64,
    last_ms: u64,
}

impl Run {
    fn start(from: SocketAddr, p: &RtpPacket, now_ms: u64) -> Run {
        Run { from, ssrc: p.ssrc, last_seq: p.sequence, packets: 1, first_ms: now_ms, last_ms: now_ms }
    }

    /// `p` extends the run when it has the same SSRC and its sequence number is
    /// 1 to [`MAX_SEQ_STEP`] ahead (modulo 2^16); anything else starts a new run.
    fn push(self, from: SocketAddr, p: &RtpPacket, now_ms: u64) -> Run {
        let step = p.sequence.wrapping_sub(self.last_seq);
        if same_source(self.from, from) && p.ssrc == self.ssrc && (1..=MAX_SEQ_STEP).contains(&step) {
            Run { last_seq: p.sequence, packets: self.packets.saturating_add(1), last_ms: now_ms.max(self.last_ms), ..self }
        } else {
            Run::start(from, p, now_ms)
        }
    }

    fn span_ms(&self) -> u64 {
        self.last_ms.saturating_sub(self.first_ms)
    }
}

/// Address comparison that ignores how the socket spelled it: an IPv4 peer
/// seen on a dual-stack socket (`::ffff:a.b.c.d`) is the SDP's `a.b.c.d`, and
/// IPv6 flow labels and scope ids are not part of who sent a packet.
fn same_ip(a: SocketAddr, b: SocketAddr) -> bool {
    a.ip().to_canonical() == b.ip().to_canonical()
}

/// The address as a key for "who sent this": canonical IP (an IPv4 peer on a
/// dual-stack socket is its IPv4 address), the port, no flow label or scope
/// id — so a lookup by a packet's source finds the address an SDP named.
pub fn source_key(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

fn same_source(a: SocketAddr, b: SocketAddr) -> bool {
    same_ip(a, b) && a.port() == b.port()
}

/// Decides, packet by packet, which received RTP is the caller's. See the
/// [module documentation](self) for the rules and why they hold.
#[derive(Debug, Clone)]
pub struct SourceGuard {
    policy: LatchPolicy,
    /// The caller's media address from its SDP.
    expected: SocketAddr,
    audio_pt: u8,
    dtmf_pt: Option<u8>,
    /// When the answer went out: the latch grace counts from here. `None`:
    /// not yet, and nothing but the negotiated address can be the caller.
    answered_ms: Option<u64>,
    /// The caller's source once known (from the start under Strict).
    source: Option<SocketAddr>,
    latched: bool,
    candidate: Option<(Rank, Run)>,
    /// The audio SSRC of the accepted stream, once known.
    ssrc: Option<u32>,
    /// A new SSRC from the accepted source, on its way to being taken.
    ssrc_switch: Option<Run>,
    stats: GuardStats,
}

impl SourceGuard {
    /// A guard for a call whose SDP gave `remote`, the audio payload type
    /// `audio_pt` and the telephone-event payload type `dtmf_pt` (`None`: no
    /// events were negotiated, so none are accepted). `now_ms` should be when
    /// our answer (our address) was sent: the caller can send nothing before,
    /// and the latch grace counts from it (see [`SourceGuard::answered`] for a
    /// guard made earlier). If `dtmf_pt` equals `audio_pt`, packets of that
    /// type are audio.
    pub fn new(now_ms: u64, remote: SocketAddr, audio_pt: u8, dtmf_pt: Option<u8>, policy: LatchPolicy) -> SourceGuard {
        SourceGuard {
            policy,
            expected: remote,
            audio_pt,
            dtmf_pt,
            answered_ms: Some(now_ms),
            source: match policy {
                LatchPolicy::Strict => Some(remote),
                LatchPolicy::Latch => None,
            },
            latched: false,
            candidate: None,
            ssrc: None,
            ssrc_switch: None,
            stats: GuardStats::default(),
        }
    }

    /// A guard made before the answer is sent (while the call rings): until
    /// [`SourceGuard::answered`], only the negotiated address can be the
    /// caller, and nothing is latched or even considered for a latch (the
    /// caller cannot send media before it has our address).
    pub fn unanswered(remote: SocketAddr, audio_pt: u8, dtmf_pt: Option<u8>, policy: LatchPolicy) -> SourceGuard {
        SourceGuard { answered_ms: None, ..SourceGuard::new(0, remote, audio_pt, dtmf_pt, policy) }
    }

    /// [`SourceGuard::new`] from the result of SDP negotiation.
    pub fn for_negotiated(now_ms: u64, n: &Negotiated, policy: LatchPolicy) -> SourceGuard {
        SourceGuard::new(now_ms, n.remote, n.codec.payload_type(), n.dtmf_payload_type, policy)
    }

    /// The answer was sent at `now_ms`: latching may begin, and the latch
    /// grace counts from here. Also restarts the grace of a guard made with
    /// [`SourceGuard::new`]; a latch already made stays.
    pub fn answered(&mut self, now_ms: u64) {
        self.answered_ms = Some(now_ms);
        self.candidate = None;
    }

    /// A re-INVITE negotiated `remote`, `audio_pt` and `dtmf_pt`. The payload
    /// types change at once. If the address changed, the guard starts over as
    /// if new (latching is possible again, once, under Latch); if it did not
    /// (a hold, a codec change, a session refresh), the source settled on and
    /// its SSRC are kept, so a re-INVITE never reopens the latch to third
    /// parties. The counters are kept either way.
    pub fn renegotiate(&mut self, now_ms: u64, remote: SocketAddr, audio_pt: u8, dtmf_pt: Option<u8>) {
        self.audio_pt = audio_pt;
        self.dtmf_pt = dtmf_pt;
        if same_source(remote, self.expected) {
            return;
        }
        let stats = self.stats;
        *self = SourceGuard::new(now_ms, remote, audio_pt, dtmf_pt, self.policy);
        self.stats = stats;
    }

    /// The caller's source, once known: where our RTP should go. `None` under
    /// Latch until the negotiated address has sent or a source was latched to.
    pub fn source(&self) -> Option<SocketAddr> {
        self.source
    }

    /// The negotiated address this guard expects media from.
    pub fn expected(&self) -> SocketAddr {
        self.expected
    }

    /// Whether the caller's source was latched to (it is not the negotiated address).
    pub fn is_latched(&self) -> bool {
        self.latched
    }

    /// The SSRC of the caller's audio stream, once known.
    pub fn ssrc(&self) -> Option<u32> {
        self.ssrc
    }

    pub fn policy(&self) -> LatchPolicy {
        self.policy
    }

    pub fn stats(&self) -> GuardStats {
        self.stats
    }

    /// Judges one received packet from `from` at `now_ms`, and counts it.
    pub fn accept(&mut self, now_ms: u64, from: SocketAddr, packet: &RtpPacket) -> Verdict {
        let verdict = self.judge(now_ms, from, packet);
        let s = &mut self.stats;
        let counter = match verdict {
            Verdict::Audio { latched } => {
                if latched {
                    s.latches = s.latches.saturating_add(1);
                }
                &mut s.accepted_audio
            }
            Verdict::Event => &mut s.accepted_events,
            Verdict::Dropped(DropReason::WrongSource) => &mut s.dropped_wrong_source,
            Verdict::Dropped(DropReason::LatchPending) => &mut s.dropped_latch_pending,
            Verdict::Dropped(DropReason::BadPayload) => &mut s.dropped_bad_payload,
            Verdict::Dropped(DropReason::WrongSsrc) => &mut s.dropped_wrong_ssrc,
        };
        *counter = counter.saturating_add(1);
        verdict
    }

    fn rank(&self, from: SocketAddr) -> Rank {
        if same_source(from, self.expected) {
            Rank::Negotiated
        } else if same_ip(from, self.expected) {
            Rank::SameIp
        } else {
            Rank::OtherIp
        }
    }

    fn judge(&mut self, now_ms: u64, from: SocketAddr, p: &RtpPacket) -> Verdict {
        let source = match self.source {
            Some(s) => s,
            None => match self.rank(from) {
                // The caller is demonstrably at its SDP address: no latching, ever.
                Rank::Negotiated => {
                    self.candidate = None;
                    self.source = Some(from);
                    from
                }
                rank => return self.consider_latch(now_ms, from, rank, p),
            },
        };
        if !same_source(from, source) {
            return Verdict::Dropped(DropReason::WrongSource);
        }
        self.judge_caller(now_ms, from, p)
    }

    /// A packet from the accepted source: its payload type and SSRC decide.
    fn judge_caller(&mut self, now_ms: u64, from: SocketAddr, p: &RtpPacket) -> Verdict {
        if p.payload_type == self.audio_pt {
            match self.ssrc {
                None => {
                    self.ssrc = Some(p.ssrc);
                    Verdict::Audio { latched: false }
                }
                Some(s) if s == p.ssrc => {
                    self.ssrc_switch = None;
                    Verdict::Audio { latched: false }
                }
                Some(_) => {
                    let run = match self.ssrc_switch {
                        Some(r) => r.push(from, p, now_ms),
                        None => Run::start(from, p, now_ms),
                    };
                    if run.packets >= SSRC_SWITCH_PACKETS {
                        self.ssrc = Some(p.ssrc);
                        self.ssrc_switch = None;
                        Verdict::Audio { latched: false }
                    } else {
                        self.ssrc_switch = Some(run);
                        Verdict::Dropped(DropReason::WrongSsrc)
                    }
                }
            }
        } else if Some(p.payload_type) == self.dtmf_pt {
            match self.ssrc {
                Some(s) if s != p.ssrc => Verdict::Dropped(DropReason::WrongSsrc),
                _ => Verdict::Event,
            }
        } else {
            Verdict::Dropped(DropReason::BadPayload)
        }
    }

    /// Latch policy, caller's source not yet known, a packet from elsewhere
    /// than the negotiated address.
    fn consider_latch(&mut self, now_ms: u64, from: SocketAddr, rank: Rank, p: &RtpPacket) -> Verdict {
        // Another source, at least as trusted as the candidate, is sending too:
        // the candidate's run is not a lone stream any more.
        if let Some((c_rank, run)) = self.candidate {
            if !same_source(run.from, from) && rank >= c_rank {
                self.candidate = None;
            }
        }
        if p.payload_type != self.audio_pt || self.answered_ms.is_none() {
            // Events (and anything else) never latch, nor extend a run; before
            // the answer nobody but the negotiated address can be the caller.
            return Verdict::Dropped(DropReason::WrongSource);
        }
        let (c_rank, run) = match self.candidate {
            Some((c_rank, run)) if same_source(run.from, from) => (c_rank, run.push(from, p, now_ms)),
            // A less trusted source while a candidate on the negotiated IP runs.
            Some(_) => return Verdict::Dropped(DropReason::WrongSource),
            None => (rank, Run::start(from, p, now_ms)),
        };
        let grace_over = match self.answered_ms {
            Some(at) => c_rank == Rank::SameIp || now_ms.saturating_sub(at) >= LATCH_GRACE_MS,
            None => false,
        };
        if run.packets >= LATCH_PACKETS && run.span_ms() >= LATCH_MIN_SPAN_MS && grace_over {
            self.candidate = None;
            self.source = Some(from);
            self.latched = true;
            self.ssrc = Some(run.ssrc);
            Verdict::Audio { latched: true }
        } else {
            self.candidate = Some((c_rank, run));
            Verdict::Dropped(DropReason::LatchPending)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const AUDIO: u8 = 0;
    const DTMF: u8 = 101;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// The caller's SDP address (public), its IP on another port, and strangers.
    fn caller() -> SocketAddr {
        addr("198.51.100.7:4000")
    }
    fn same_ip_other_port() -> SocketAddr {
        addr("198.51.100.7:4002")
    }
    fn stranger() -> SocketAddr {
        addr("203.0.113.66:5555")
    }
    fn natted() -> SocketAddr {
        addr("192.0.2.44:61234")
    }

    fn pkt(pt: u8, seq: u16, ssrc: u32) -> RtpPacket<'static> {
        RtpPacket { payload_type: pt, marker: false, sequence: seq, timestamp: u32::from(seq) * 160, ssrc, payload: &[0; 4] }
    }

    /// A stream of one source: audio every 20 ms from `t0`.
    struct Stream {
        from: SocketAddr,
        ssrc: u32,
        seq: u16,
    }

    impl Stream {
        fn new(from: SocketAddr, ssrc: u32) -> Stream {
            Stream { from, ssrc, seq: 1000 }
        }
        fn audio(&mut self, g: &mut SourceGuard, t: u64) -> Verdict {
            self.seq = self.seq.wrapping_add(1);
            g.accept(t, self.from, &pkt(AUDIO, self.seq, self.ssrc))
        }
        fn event(&mut self, g: &mut SourceGuard, t: u64) -> Verdict {
            self.seq = self.seq.wrapping_add(1);
            g.accept(t, self.from, &pkt(DTMF, self.seq, self.ssrc))
        }
    }

    fn guard(policy: LatchPolicy) -> SourceGuard {
        SourceGuard::new(0, caller(), AUDIO, Some(DTMF), policy)
    }

    const AUDIO_OK: Verdict = Verdict::Audio { latched: false };
    const LATCHED: Verdict = Verdict::Audio { latched: true };
    const WRONG_SOURCE: Verdict = Verdict::Dropped(DropReason::WrongSource);
    const PENDING: Verdict = Verdict::Dropped(DropReason::LatchPending);
    const WRONG_SSRC: Verdict = Verdict::Dropped(DropReason::WrongSsrc);
    const BAD_PAYLOAD: Verdict = Verdict::Dropped(DropReason::BadPayload);

    #[test]
    fn strict_accepts_exactly_the_negotiated_ip_and_port() {
        let mut g = guard(LatchPolicy::Strict);
        assert_eq!(g.source(), Some(caller()));
        assert_eq!(g.accept(0, same_ip_other_port(), &pkt(AUDIO, 1, 7)), WRONG_SOURCE, "same IP, other port");
        assert_eq!(g.accept(0, addr("198.51.100.8:4000"), &pkt(AUDIO, 1, 7)), WRONG_SOURCE, "same port, other IP");
        assert_eq!(g.accept(0, caller(), &pkt(AUDIO, 1, 7)), AUDIO_OK);
        assert_eq!(g.accept(20, caller(), &pkt(DTMF, 2, 7)), Verdict::Event);
        assert_eq!(g.accept(40, caller(), &pkt(13, 3, 7)), BAD_PAYLOAD, "comfort noise was not negotiated");
        assert_eq!(g.accept(60, caller(), &pkt(8, 4, 7)), BAD_PAYLOAD, "nor PCMA");
        // Nothing ever latches under Strict, however long a stranger streams.
        let mut s = Stream::new(same_ip_other_port(), 9);
        for t in (0..5_000).step_by(20) {
            assert_eq!(s.audio(&mut g, t), WRONG_SOURCE);
        }
        let st = g.stats();
        assert_eq!((st.accepted_audio, st.accepted_events, st.dropped_bad_payload, st.latches), (1, 1, 2, 0));
        assert_eq!(st.dropped_wrong_source, 2 + 250);
        assert_eq!(st.dropped(), 254);
        assert!(!g.is_latched());
    }

    #[test]
    fn strict_knows_an_ipv4_caller_seen_on_a_dual_stack_socket() {
        let mut g = guard(LatchPolicy::Strict);
        assert_eq!(g.accept(0, addr("[::ffff:198.51.100.7]:4000"), &pkt(AUDIO, 1, 7)), AUDIO_OK);
        assert_eq!(g.accept(0, addr("[::ffff:198.51.100.7]:4001"), &pkt(AUDIO, 1, 7)), WRONG_SOURCE);
        let mut g = SourceGuard::new(0, addr("[2001:db8::1]:4000"), AUDIO, Some(DTMF), LatchPolicy::Strict);
        let v6 = std::net::SocketAddrV6::new("2001:db8::1".parse().unwrap(), 4000, 0xabc, 3);
        assert_eq!(g.accept(0, SocketAddr::V6(v6), &pkt(AUDIO, 1, 7)), AUDIO_OK, "flow label and scope id do not matter");
    }

    #[test]
    fn a_third_partys_rfc_4733_from_another_port_of_the_callers_ip_is_refused_in_both_modes() {
        for policy in [LatchPolicy::Strict, LatchPolicy::Latch] {
            let mut g = guard(policy);
            let mut intruder = Stream::new(same_ip_other_port(), 0x1111);
            // Before the caller has sent anything, for long enough to latch on audio.
            for t in (0..2_000).step_by(20) {
                assert_eq!(intruder.event(&mut g, t), WRONG_SOURCE, "{policy:?} at {t}");
            }
            // Under the caller's own SSRC too (the SSRC is no secret).
            let mut spoof = Stream::new(same_ip_other_port(), 0x2222);
            let mut real = Stream::new(caller(), 0x2222);
            assert_eq!(real.audio(&mut g, 2_000), AUDIO_OK);
            for t in (2_020..4_000).step_by(20) {
                assert_eq!(spoof.event(&mut g, t), WRONG_SOURCE, "{policy:?} at {t}");
                assert_eq!(real.audio(&mut g, t), AUDIO_OK);
            }
            assert_eq!(real.event(&mut g, 4_000), Verdict::Event, "the caller's own keys still count");
            assert_eq!(g.source(), Some(caller()));
            let st = g.stats();
            assert_eq!((st.accepted_events, st.latches, st.dropped_wrong_source), (1, 0, 100 + 99));
        }
    }

    #[test]
    fn events_never_latch_however_long_they_come() {
        let mut g = guard(LatchPolicy::Latch);
        let mut s = Stream::new(natted(), 5);
        for t in (0..10_000).step_by(20) {
            assert_eq!(s.event(&mut g, t), WRONG_SOURCE);
        }
        assert_eq!(g.source(), None);
        // Nor do they count towards a run: two audio packets among events are
        // two, not a run of three (the candidate's own events do not end it).
        assert_eq!(s.audio(&mut g, 10_000), PENDING);
        for t in [10_005, 10_010, 10_015] {
            assert_eq!(s.event(&mut g, t), WRONG_SOURCE);
        }
        assert_eq!(s.audio(&mut g, 10_020), PENDING);
        assert_eq!(s.event(&mut g, 10_030), WRONG_SOURCE);
        assert_eq!(s.audio(&mut g, 10_040), LATCHED);
    }

    #[test]
    fn a_third_party_sending_first_loses_to_the_caller_at_its_sdp_address() {
        for intruder_at in [stranger(), same_ip_other_port()] {
            let mut g = guard(LatchPolicy::Latch);
            let mut intruder = Stream::new(intruder_at, 0xbad);
            let mut real = Stream::new(caller(), 0x900d);
            // The intruder starts first: two packets, not yet a run on the caller's IP...
            assert_eq!(intruder.audio(&mut g, 0), PENDING);
            assert_eq!(intruder.audio(&mut g, 20), PENDING);
            // ...then the caller's stream begins, and the source is settled.
            assert_eq!(real.audio(&mut g, 30), AUDIO_OK);
            for t in (40..3_000).step_by(20) {
                assert_eq!(intruder.audio(&mut g, t), WRONG_SOURCE, "{intruder_at} at {t}");
                assert_eq!(intruder.event(&mut g, t), WRONG_SOURCE);
                assert_eq!(real.audio(&mut g, t + 5), AUDIO_OK);
            }
            assert_eq!((g.source(), g.is_latched(), g.stats().latches), (Some(caller()), false, 0));
        }
    }

    #[test]
    fn a_third_party_on_another_ip_cannot_latch_within_the_grace_however_long_its_run() {
        let mut g = guard(LatchPolicy::Latch);
        let mut intruder = Stream::new(stranger(), 0xbad);
        // A perfect stream, but only for the first 480 ms after the answer.
        for t in (0..LATCH_GRACE_MS).step_by(20) {
            assert_eq!(intruder.audio(&mut g, t), PENDING, "at {t}");
        }
        // The caller's first packet (at its SDP address) arrives just before the grace ends.
        let mut real = Stream::new(caller(), 0x900d);
        assert_eq!(real.audio(&mut g, LATCH_GRACE_MS - 1), AUDIO_OK);
        assert_eq!(intruder.audio(&mut g, LATCH_GRACE_MS), WRONG_SOURCE);
        assert!(!g.is_latched());
    }

    #[test]
    fn a_packet_from_the_sdp_address_of_any_kind_ends_latching() {
        for first in [pkt(13, 1, 1), pkt(DTMF, 1, 1), pkt(AUDIO, 1, 1)] {
            let mut g = guard(LatchPolicy::Latch);
            let mut nat = Stream::new(same_ip_other_port(), 0x77);
            assert_eq!(nat.audio(&mut g, 0), PENDING);
            assert!(g.accept(10, caller(), &first) != PENDING);
            assert_eq!(g.source(), Some(caller()));
            for t in (20..2_000).step_by(20) {
                assert_eq!(nat.audio(&mut g, t), WRONG_SOURCE);
            }
            assert_eq!(g.stats().latches, 0);
        }
    }

    #[test]
    fn a_natted_caller_on_another_ip_is_latched_after_the_grace() {
        // The SDP carries the phone's private address; its packets come from the NAT.
        let mut g = SourceGuard::new(1_000, addr("10.0.0.5:4000"), AUDIO, Some(DTMF), LatchPolicy::Latch);
        let mut phone = Stream::new(natted(), 0xcafe);
        let mut t = 1_000;
        while t < 1_000 + LATCH_GRACE_MS {
            assert_eq!(phone.audio(&mut g, t), PENDING, "at {t}");
            assert_eq!(phone.event(&mut g, t + 1), WRONG_SOURCE, "keys before the latch are not yet the caller's");
            t += 20;
        }
        assert_eq!(phone.audio(&mut g, t), LATCHED);
        assert_eq!((g.source(), g.is_latched(), g.ssrc()), (Some(natted()), true, Some(0xcafe)));
        assert_eq!(phone.audio(&mut g, t + 20), AUDIO_OK);
        assert_eq!(phone.event(&mut g, t + 30), Verdict::Event);
        assert_eq!(g.stats().latches, 1);
    }

    #[test]
    fn a_caller_on_its_sdp_ip_but_another_port_is_latched_after_a_short_run() {
        let mut g = guard(LatchPolicy::Latch);
        let mut phone = Stream::new(same_ip_other_port(), 0xcafe);
        assert_eq!(phone.audio(&mut g, 100), PENDING);
        assert_eq!(phone.audio(&mut g, 120), PENDING);
        assert_eq!(phone.audio(&mut g, 140), LATCHED, "three packets over 40 ms, no grace on the negotiated IP");
        assert_eq!(g.source(), Some(same_ip_other_port()));
    }

    #[test]
    fn a_burst_is_not_a_stream() {
        let mut g = guard(LatchPolicy::Latch);
        let mut s = Stream::new(same_ip_other_port(), 1);
        for _ in 0..100 {
            assert_eq!(s.audio(&mut g, 7), PENDING);
        }
        assert_eq!(s.audio(&mut g, 7 + LATCH_MIN_SPAN_MS), LATCHED, "the run now spans the minimum");
    }

    #[test]
    fn a_run_needs_one_ssrc_and_advancing_sequence_numbers() {
        let from = same_ip_other_port();
        let cases = [
            ("consecutive", [(10, 1), (11, 1), (12, 1)], true),
            ("a few lost", [(10, 1), (13, 1), (13 + MAX_SEQ_STEP, 1)], true),
            ("wrapping", [(65534, 1), (65535, 1), (0, 1)], true),
            ("SSRC changes", [(10, 1), (11, 2), (12, 2)], false),
            ("repeated", [(10, 1), (10, 1), (11, 1)], false),
            ("jump too far", [(10, 1), (11, 1), (12 + MAX_SEQ_STEP, 1)], false),
        ];
        for (what, packets, latches) in cases {
            let mut g = guard(LatchPolicy::Latch);
            let mut last = PENDING;
            for (i, (seq, ssrc)) in packets.into_iter().enumerate() {
                last = g.accept(i as u64 * 20, from, &pkt(AUDIO, seq, ssrc));
            }
            assert_eq!(last == LATCHED, latches, "{what}");
        }
    }

    #[test]
    fn two_sources_at_once_never_latch_until_one_stops() {
        // A NATed caller (another IP) and a stranger (yet another IP) both stream.
        let mut g = SourceGuard::new(0, addr("10.0.0.5:4000"), AUDIO, Some(DTMF), LatchPolicy::Latch);
        let mut intruder = Stream::new(stranger(), 0xbad);
        let mut phone = Stream::new(natted(), 0xcafe);
        assert_eq!(intruder.audio(&mut g, 0), PENDING, "the intruder sends first");
        for t in (0..5_000).step_by(20) {
            assert_eq!(intruder.audio(&mut g, t + 1), PENDING);
            assert_eq!(phone.audio(&mut g, t + 2), PENDING);
        }
        assert_eq!(g.source(), None, "contention fails closed");
        // The intruder gives up; the phone's stream is alone for a run.
        assert_eq!(phone.audio(&mut g, 5_000), PENDING);
        assert_eq!(phone.audio(&mut g, 5_020), PENDING);
        assert_eq!(phone.audio(&mut g, 5_040), LATCHED);
        assert_eq!(intruder.audio(&mut g, 5_041), WRONG_SOURCE);
        assert_eq!(g.source(), Some(natted()));
    }

    #[test]
    fn the_negotiated_ip_is_preferred_over_strangers() {
        let mut g = guard(LatchPolicy::Latch);
        let mut sprayer = Stream::new(stranger(), 0xbad);
        let mut phone = Stream::new(same_ip_other_port(), 0xcafe);
        // A stranger's traffic neither ends the run of a source on the caller's IP...
        assert_eq!(phone.audio(&mut g, 600), PENDING);
        assert_eq!(sprayer.audio(&mut g, 601), WRONG_SOURCE);
        assert_eq!(phone.audio(&mut g, 620), PENDING);
        assert_eq!(sprayer.audio(&mut g, 621), WRONG_SOURCE);
        assert_eq!(phone.audio(&mut g, 640), LATCHED);
        // ...and a source on the caller's IP ends a stranger's run.
        let mut g = guard(LatchPolicy::Latch);
        let mut sprayer = Stream::new(stranger(), 0xbad);
        for t in (0..LATCH_GRACE_MS).step_by(20) {
            assert_eq!(sprayer.audio(&mut g, t), PENDING);
        }
        let mut phone = Stream::new(same_ip_other_port(), 0xcafe);
        assert_eq!(phone.audio(&mut g, LATCH_GRACE_MS - 1), PENDING);
        assert_eq!(sprayer.audio(&mut g, LATCH_GRACE_MS), WRONG_SOURCE, "its run was ended");
    }

    #[test]
    fn never_relatched_not_even_to_the_sdp_address() {
        let mut g = guard(LatchPolicy::Latch);
        let mut phone = Stream::new(same_ip_other_port(), 0xcafe);
        for t in [0, 20] {
            phone.audio(&mut g, t);
        }
        assert_eq!(phone.audio(&mut g, 40), LATCHED);
        let mut others = [Stream::new(stranger(), 1), Stream::new(natted(), 2), Stream::new(caller(), 3), Stream::new(addr("198.51.100.7:4004"), 4)];
        for t in (60..10_000).step_by(20) {
            for o in &mut others {
                assert_eq!(o.audio(&mut g, t), WRONG_SOURCE);
                assert_eq!(o.event(&mut g, t), WRONG_SOURCE);
            }
        }
        assert_eq!(phone.audio(&mut g, 10_000), AUDIO_OK);
        assert_eq!((g.source(), g.stats().latches), (Some(same_ip_other_port()), 1));
    }

    #[test]
    fn events_must_carry_the_audio_streams_ssrc() {
        let mut g = guard(LatchPolicy::Strict);
        assert_eq!(g.accept(0, caller(), &pkt(DTMF, 1, 0xaaaa)), Verdict::Event, "no audio yet: any SSRC from the source");
        assert_eq!(g.accept(10, caller(), &pkt(AUDIO, 2, 0xbbbb)), AUDIO_OK);
        assert_eq!(g.ssrc(), Some(0xbbbb));
        assert_eq!(g.accept(20, caller(), &pkt(DTMF, 3, 0xaaaa)), WRONG_SSRC);
        assert_eq!(g.accept(30, caller(), &pkt(DTMF, 4, 0xbbbb)), Verdict::Event);
        assert_eq!(g.stats().dropped_wrong_ssrc, 1);
    }

    #[test]
    fn a_new_ssrc_from_the_source_is_taken_only_after_a_run_of_audio() {
        let mut g = guard(LatchPolicy::Strict);
        let mut old = Stream::new(caller(), 0xaaaa);
        let mut new = Stream::new(caller(), 0xbbbb);
        assert_eq!(old.audio(&mut g, 0), AUDIO_OK);
        assert_eq!(new.event(&mut g, 10), WRONG_SSRC);
        assert_eq!(new.audio(&mut g, 20), WRONG_SSRC);
        assert_eq!(new.audio(&mut g, 40), WRONG_SSRC);
        // The old stream is still going: the new one must start its run again.
        assert_eq!(old.audio(&mut g, 50), AUDIO_OK);
        assert_eq!(new.audio(&mut g, 60), WRONG_SSRC);
        assert_eq!(new.audio(&mut g, 80), WRONG_SSRC);
        assert_eq!(new.audio(&mut g, 100), AUDIO_OK, "three in a row: the caller's new stream");
        assert_eq!(g.ssrc(), Some(0xbbbb));
        assert_eq!(new.event(&mut g, 110), Verdict::Event);
        assert_eq!(old.event(&mut g, 120), WRONG_SSRC);
        assert_eq!(old.audio(&mut g, 130), WRONG_SSRC, "the old stream is now the stranger");
    }

    #[test]
    fn no_telephone_event_negotiated_means_no_events() {
        let mut g = SourceGuard::new(0, caller(), AUDIO, None, LatchPolicy::Strict);
        assert_eq!(g.accept(0, caller(), &pkt(DTMF, 1, 1)), BAD_PAYLOAD);
        // The same payload type for both: it is audio.
        let mut g = SourceGuard::new(0, caller(), AUDIO, Some(AUDIO), LatchPolicy::Strict);
        assert_eq!(g.accept(0, caller(), &pkt(AUDIO, 1, 1)), AUDIO_OK);
    }

    #[test]
    fn renegotiating_another_address_starts_over_and_the_same_address_keeps_the_latch() {
        let mut g = guard(LatchPolicy::Latch);
        let mut phone = Stream::new(same_ip_other_port(), 0xcafe);
        for t in [0, 20] {
            phone.audio(&mut g, t);
        }
        assert_eq!(phone.audio(&mut g, 40), LATCHED);
        // A hold or session refresh: same address, now PCMA and another event type.
        g.renegotiate(1_000, caller(), 8, Some(96));
        assert_eq!((g.source(), g.ssrc()), (Some(same_ip_other_port()), Some(0xcafe)));
        assert_eq!(phone.audio(&mut g, 1_020), BAD_PAYLOAD, "PCMU is no longer the codec");
        assert_eq!(g.accept(1_040, same_ip_other_port(), &pkt(8, 5000, 0xcafe)), AUDIO_OK);
        assert_eq!(g.accept(1_050, same_ip_other_port(), &pkt(96, 5001, 0xcafe)), Verdict::Event);
        let mut intruder = Stream::new(stranger(), 1);
        for t in (1_060..3_000).step_by(20) {
            assert_eq!(intruder.audio(&mut g, t), WRONG_SOURCE, "the latch did not reopen");
        }
        // The caller moved: the new address is expected, the old source is a stranger.
        let moved = addr("198.51.100.99:7000");
        g.renegotiate(3_000, moved, AUDIO, Some(DTMF));
        assert_eq!((g.source(), g.ssrc(), g.is_latched(), g.expected()), (None, None, false, moved));
        assert_eq!(g.accept(3_010, moved, &pkt(AUDIO, 1, 0xdddd)), AUDIO_OK);
        assert_eq!(phone.audio(&mut g, 3_020), WRONG_SOURCE);
        assert_eq!(g.stats().latches, 1, "counters survive");
        // Under Strict the new address is the source at once.
        let mut g = guard(LatchPolicy::Strict);
        g.renegotiate(0, moved, AUDIO, Some(DTMF));
        assert_eq!(g.source(), Some(moved));
        assert_eq!(g.accept(0, caller(), &pkt(AUDIO, 1, 1)), WRONG_SOURCE);
    }

    #[test]
    fn nothing_latches_before_the_answer_and_the_grace_counts_from_it() {
        let mut g = SourceGuard::unanswered(addr("10.0.0.5:4000"), AUDIO, Some(DTMF), LatchPolicy::Latch);
        let mut intruder = Stream::new(stranger(), 0xbad);
        // The call rings for ten seconds; a stranger sprays its port meanwhile.
        for t in (0..10_000).step_by(20) {
            assert_eq!(intruder.audio(&mut g, t), WRONG_SOURCE, "at {t}");
        }
        g.answered(10_000);
        for t in (10_000..10_000 + LATCH_GRACE_MS).step_by(20) {
            assert_eq!(intruder.audio(&mut g, t), PENDING, "at {t}");
        }
        let mut phone = Stream::new(natted(), 0xcafe);
        assert_eq!(phone.audio(&mut g, 10_000 + LATCH_GRACE_MS - 1), PENDING, "the caller's first packet ends the stranger's run");
        assert_eq!(intruder.audio(&mut g, 10_000 + LATCH_GRACE_MS), PENDING, "and the stranger's ends the caller's");
        assert_eq!(g.source(), None);
        // The caller's SDP address is trusted before the answer too.
        let mut g = SourceGuard::unanswered(caller(), AUDIO, Some(DTMF), LatchPolicy::Latch);
        assert_eq!(g.accept(0, caller(), &pkt(AUDIO, 1, 1)), AUDIO_OK);
    }

    #[test]
    fn without_the_caller_a_stranger_streaming_past_the_grace_is_latched() {
        // The limit of what the grace can do (documented): a caller that sends
        // nothing at all for the whole grace cannot be told from a stranger.
        let mut g = SourceGuard::new(0, addr("10.0.0.5:4000"), AUDIO, Some(DTMF), LatchPolicy::Latch);
        let mut s = Stream::new(stranger(), 0xbad);
        for t in (0..LATCH_GRACE_MS).step_by(20) {
            assert_eq!(s.audio(&mut g, t), PENDING);
        }
        assert_eq!(s.audio(&mut g, LATCH_GRACE_MS), LATCHED);
    }

    #[test]
    fn the_clock_may_stand_still_or_go_back_without_harm() {
        let mut g = SourceGuard::new(u64::MAX - 5, addr("10.0.0.5:4000"), AUDIO, Some(DTMF), LatchPolicy::Latch);
        let mut phone = Stream::new(natted(), 1);
        for t in [u64::MAX, 0, 3, u64::MAX, u64::MAX] {
            assert_eq!(phone.audio(&mut g, t), PENDING);
        }
    }

    #[derive(Debug, Clone)]
    struct Rx {
        from: u8,
        pt: u8,
        seq: u16,
        ssrc: u32,
        dt: u16,
    }

    fn rx() -> impl Strategy<Value = Rx> {
        (0u8..5, prop_oneof![Just(AUDIO), Just(DTMF), any::<u8>()], any::<u16>(), 0u32..3, 0u16..300)
            .prop_map(|(from, pt, seq, ssrc, dt)| Rx { from, pt, seq, ssrc, dt })
    }

    proptest! {
        /// Whatever arrives: no panic, at most one latch, a settled source never
        /// changes, nothing is accepted from anywhere else, a DTMF packet is
        /// never accepted under an SSRC other than the pinned audio one, and
        /// every packet is counted once.
        #[test]
        fn invariants_hold_for_any_traffic(strict in any::<bool>(), packets in proptest::collection::vec(rx(), 0..300)) {
            let sources = [caller(), same_ip_other_port(), stranger(), natted(), addr("[::ffff:198.51.100.7]:4002")];
            let policy = if strict { LatchPolicy::Strict } else { LatchPolicy::Latch };
            let mut g = guard(policy);
            let mut now = 0u64;
            let mut settled: Option<SocketAddr> = None;
            for (i, r) in packets.iter().enumerate() {
                now += u64::from(r.dt);
                let from = sources[usize::from(r.from)];
                let pinned = g.ssrc();
                let v = g.accept(now, from, &pkt(r.pt, r.seq, r.ssrc));
                if let Some(s) = settled {
                    prop_assert_eq!(g.source(), Some(s));
                }
                if v.is_accepted() {
                    let s = g.source().expect("accepted from a settled source");
                    prop_assert!(same_source(s, from));
                    settled = Some(s);
                }
                if v == Verdict::Event {
                    prop_assert!(pinned.is_none_or(|p| p == r.ssrc));
                    prop_assert_eq!(r.pt, DTMF);
                }
                if strict {
                    prop_assert!(!v.is_accepted() || same_source(from, caller()));
                }
                let st = g.stats();
                prop_assert!(st.latches <= 1);
                prop_assert_eq!(st.accepted_audio + st.accepted_events + st.dropped(), i as u64 + 1);
            }
        }
    }
}
