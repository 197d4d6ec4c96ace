//! DTMF received as RFC 4733 telephone events: each key reported once, however
//! many times its packets are repeated, even when its first packets are lost.

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

/// Turns a stream of telephone-event packets into key presses. An event is
/// identified by its RTP timestamp: the first packet of a new timestamp (start,
/// update or end — the start may be lost) reports the key; repeats and the
/// redundant end packets of the same event are ignored.
#[derive(Debug, Default)]
pub struct DtmfReceiver {
    last: Option<(u32, u8)>,
}

impl DtmfReceiver {
    pub fn packet(&mut self, rtp_timestamp: u32, payload: &[u8]) -> Option<char> {
        let ev = parse_event(payload)?;
        let key = event_key(ev.event)?;
        if self.last == Some((rtp_timestamp, ev.event)) {
            return None;
        }
        self.last = Some((rtp_timestamp, ev.event));
        Some(key)
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
    }
}
