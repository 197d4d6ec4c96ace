//! DTMF received as RFC 4733 telephone events: each key reported once, however
//! many times its packets are repeated, even when its first packets are lost,
//! its last ones arrive after the next key's, or it is held so long that its
//! event comes in several segments. A digit too many in an account number or
//! an amount is worse than a lost one, which the caller hears and repeats.

/// Where a key press came from. The media plane hears RFC 4733 events and
/// in-band tones; SIP INFO (`application/dtmf-relay`) arrives as signalling.
/// Operators watch the mix: a trunk that should send RFC 4733 and sends
/// tones loses keys to codecs and echo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeySource {
    Rfc4733,
    Info,
    Inband,
}

impl KeySource {
    pub const ALL: [KeySource; 3] = [KeySource::Rfc4733, KeySource::Info, KeySource::Inband];

    pub fn name(self) -> &'static str {
        match self {
            KeySource::Rfc4733 => "rfc4733",
            KeySource::Info => "info",
            KeySource::Inband => "inband",
        }
    }
}

/// An RFC 4733 event payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    pub event: u8,
    pub end: bool,
    pub volume: u8,
    pub duration: u16,
}

pub fn parse_event(payload: &[u8]) -> Option<TelephoneEvent> {
    let p = payload.get(..4)?;
    Some(TelephoneEvent {
        event: p[0],
        end: p[1] & 0x80 != 0,
        volume: p[1] & 0x3f,
        duration: u16::from_be_bytes([p[2], p[3]]),
    })
}

/// The key of an event code (0-9, *, #, A-D); other events (flash, tones) are not keys.
pub fn event_key(event: u8) -> Option<char> {
    Some(match event {
        0..=9 => (b'0' + event) as char,
        10 => '*',
        11 => '#',
        12..=15 => (b'A' + event - 12) as char,
        _ => return None,
    })
}

/// Events remembered so that a late packet of an earlier key (reordered in
/// the network, or a redundant end packet arriving after the next key began)
/// is not taken for a new press.
const REMEMBERED: usize = 8;

/// The largest duration an event segment can report; an event held longer is
/// sent as several segments (RFC 4733 section 2.5.1.3).
const MAX_DURATION: u32 = 0xffff;

/// A segment whose duration has come this close to [`MAX_DURATION`] (about
/// 7.7 s at 8 kHz) may be followed by a continuation of the same event.
const LONG_SEGMENT: u16 = 0xf000;

/// The event most recently reported: a new segment of it is not a new press.
#[derive(Debug, Default, Clone, Copy)]
struct Current {
    timestamp: u32,
    event: u8,
    ended: bool,
    duration: u16,
}

/// Turns a stream of telephone-event packets into key presses. An event is
/// identified by its RTP timestamp: the first packet of a new timestamp (start,
/// update or end — the start may be lost) reports the key; repeats and the
/// redundant end packets of the same event are ignored, even when they arrive
/// late, after later keys. A key held so long that its event is split into
/// segments (each with a new timestamp, the previous one's plus its duration)
/// is one press.
#[derive(Debug, Default)]
pub struct DtmfReceiver {
    /// The last [`REMEMBERED`] events (timestamp, event code), as a ring.
    recent: [Option<(u32, u8)>; REMEMBERED],
    next: usize,
    current: Option<Current>,
}

impl DtmfReceiver {
    pub fn packet(&mut self, rtp_timestamp: u32, payload: &[u8]) -> Option<char> {
        let ev = parse_event(payload)?;
        let key = event_key(ev.event)?;
        let id = (rtp_timestamp, ev.event);
        if let Some(c) = self.current.as_mut().filter(|c| (c.timestamp, c.event) == id) {
            c.ended |= ev.end;
            c.duration = c.duration.max(ev.duration);
            return None;
        }
        if self.recent.contains(&Some(id)) {
            return None;
        }
        let continues = self.current.is_some_and(|c| {
            let step = rtp_timestamp.wrapping_sub(c.timestamp);
            c.event == ev.event && !c.ended && c.duration >= LONG_SEGMENT && (u32::from(c.duration)..=MAX_DURATION).contains(&step)
        });
        self.recent[self.next] = Some(id);
        self.next = (self.next + 1) % REMEMBERED;
        self.current = Some(Current { timestamp: rtp_timestamp, event: ev.event, ended: ev.end, duration: ev.duration });
        (!continues).then_some(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: u8, end: bool, duration: u16) -> [u8; 4] {
        let d = duration.to_be_bytes();
        [event, if end { 0x8a } else { 0x0a }, d[0], d[1]]
    }

    #[test]
    fn one_key_per_event_despite_repeats_and_redundant_ends() {
        let mut r = DtmfReceiver::default();
        let mut keys = Vec::new();
        for (ts, p) in [
            (1000, ev(1, false, 160)),
            (1000, ev(1, false, 320)),
            (1000, ev(1, true, 480)),
            (1000, ev(1, true, 480)),
            (1000, ev(1, true, 480)),
            (2000, ev(11, false, 160)),
            (2000, ev(11, true, 320)),
        ] {
            keys.extend(r.packet(ts, &p));
        }
        assert_eq!(keys, ['1', '#']);
    }

    #[test]
    fn a_key_whose_start_was_lost_still_counts() {
        let mut r = DtmfReceiver::default();
        assert_eq!(r.packet(5000, &ev(7, true, 800)), Some('7'));
        assert_eq!(r.packet(5000, &ev(7, true, 800)), None);
        // The same key pressed again is a new event (new timestamp).
        assert_eq!(r.packet(6600, &ev(7, false, 160)), Some('7'));
    }

    #[test]
    fn short_and_unknown_payloads_are_ignored() {
        let mut r = DtmfReceiver::default();
        assert_eq!(r.packet(1, &[1, 2]), None);
        assert_eq!(r.packet(1, &ev(16, false, 100)), None, "flash is not a key");
    }

    #[test]
    fn a_late_packet_of_an_earlier_key_is_not_a_new_press() {
        let mut r = DtmfReceiver::default();
        assert_eq!(r.packet(1000, &ev(1, false, 160)), Some('1'));
        assert_eq!(r.packet(2000, &ev(2, false, 160)), Some('2'));
        // The network reordered: one of 1's end packets arrives now.
        assert_eq!(r.packet(1000, &ev(1, true, 800)), None);
        assert_eq!(r.packet(2000, &ev(2, true, 800)), None);
        // Older still, after several more keys.
        for (i, k) in (3u8..=9).enumerate() {
            assert_eq!(r.packet(3000 + 1000 * i as u32, &ev(k, true, 400)), Some((b'0' + k) as char));
        }
        assert_eq!(r.packet(2000, &ev(2, true, 800)), None);
    }

    #[test]
    fn a_key_held_past_the_largest_duration_is_one_press() {
        for start in [5000u32, u32::MAX - 100] {
            let mut r = DtmfReceiver::default();
            let mut keys = Vec::new();
            // First segment: up to the largest duration, no end.
            for d in (160..=0xffffu32).step_by(160).chain([0xffff]) {
                keys.extend(r.packet(start, &ev(5, false, d as u16)));
            }
            // Second segment, where the first ended (the timestamp wraps for one start).
            let next = start.wrapping_add(0xffff);
            for d in [160, 320, 480] {
                keys.extend(r.packet(next, &ev(5, false, d)));
            }
            for _ in 0..3 {
                keys.extend(r.packet(next, &ev(5, true, 640)));
            }
            assert_eq!(keys, ['5'], "start {start}");
            // And the next press of the same key is one.
            assert_eq!(r.packet(next.wrapping_add(8000), &ev(5, false, 160)), Some('5'));
        }
    }

    #[test]
    fn the_same_key_twice_is_two_presses_even_without_end_packets() {
        let mut r = DtmfReceiver::default();
        assert_eq!(r.packet(1000, &ev(1, false, 800)), Some('1'));
        assert_eq!(r.packet(2200, &ev(1, false, 160)), Some('1'), "the ends of the first were lost");
        // A long press that ended, then the same key at once.
        let mut r = DtmfReceiver::default();
        assert_eq!(r.packet(0, &ev(4, false, 0xffff)), Some('4'));
        assert_eq!(r.packet(0, &ev(4, true, 0xffff)), None);
        assert_eq!(r.packet(0xffff, &ev(4, false, 160)), Some('4'), "the first had ended");
        // Another key where a continuation would be is a new press.
        assert_eq!(r.packet(0x2_0000, &ev(6, false, 0xffff)), Some('6'));
        assert_eq!(r.packet(0x2_0000 + 0xffff, &ev(7, false, 160)), Some('7'));
        // A short press not ended: the same key later is a new press.
        let mut r = DtmfReceiver::default();
        assert_eq!(r.packet(0, &ev(8, false, 4000)), Some('8'));
        assert_eq!(r.packet(0xffff, &ev(8, false, 160)), Some('8'));
    }

    #[test]
    fn every_field_at_its_extremes() {
        assert_eq!(parse_event(&[255, 0xff, 0xff, 0xff]), Some(TelephoneEvent { event: 255, end: true, volume: 63, duration: 0xffff }));
        assert_eq!(parse_event(&[0, 0x40, 0, 0]), Some(TelephoneEvent { event: 0, end: false, volume: 0, duration: 0 }), "the reserved bit is ignored");
        assert_eq!(parse_event(&[11, 0x80, 0, 0, 12, 0x80, 0, 0]).map(|e| e.event), Some(11), "the first of several events");
        assert_eq!(parse_event(&[1, 2, 3]), None);
        let mut r = DtmfReceiver::default();
        assert_eq!(r.packet(u32::MAX, &[15, 0xbf, 0xff, 0xff]), Some('D'));
        assert_eq!(r.packet(u32::MAX, &[15, 0xbf, 0xff, 0xff]), None);
        assert_eq!(r.packet(0, &[255, 0, 0, 0]), None, "not a key");
    }

    proptest::proptest! {
        #[test]
        fn never_panics(ts in 0u32..10, bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..10)) {
            let _ = DtmfReceiver::default().packet(ts, &bytes);
        }

        /// Any stream: no panic, and never more keys than distinct events.
        #[test]
        fn at_most_one_key_per_event(packets in proptest::collection::vec((proptest::prop_oneof![0u32..3, proptest::prelude::Just(0xffff), proptest::prelude::any::<u32>()], 0u8..20, proptest::prelude::any::<bool>(), proptest::prelude::any::<u16>()), 0..60)) {
            let mut r = DtmfReceiver::default();
            let mut ts = 0u32;
            let mut ids = std::collections::HashSet::new();
            let mut keys = 0;
            for (step, event, end, duration) in packets {
                ts = ts.wrapping_add(step);
                ids.insert((ts, event));
                keys += usize::from(r.packet(ts, &ev(event, end, duration)).is_some());
            }
            proptest::prop_assert!(keys <= ids.len());
        }
    }
}
