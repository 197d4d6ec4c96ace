//! RTP (RFC 3550): parsing received packets and writing ours without allocating.

/// The fixed header of a received packet and where its payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub payload_type: u8,
    pub marker: bool,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload: &'a [u8],
}

/// Parses an RTP packet; `None` for anything that is not well-formed RTP v2.
pub fn parse(buf: &[u8]) -> Option<RtpPacket<'_>> {
    if buf.len() < 12 || buf[0] >> 6 != 2 {
        return None;
    }
    let padding = buf[0] & 0x20 != 0;
    let extension = buf[0] & 0x10 != 0;
    let csrc = (buf[0] & 0x0f) as usize;
    let mut start = 12 + 4 * csrc;
    if extension {
        let ext = buf.get(start..start + 4)?;
        start += 4 + 4 * u16::from_be_bytes([ext[2], ext[3]]) as usize;
    }
    let mut end = buf.len();
    if padding {
        let pad = *buf.last()? as usize;
        if pad == 0 || pad > end.saturating_sub(start) {
            return None;
        }
        end -= pad;
    }
    if start > end {
        return None;
    }
    Some(RtpPacket {
        payload_type: buf[1] & 0x7f,
        marker: buf[1] & 0x80 != 0,
        sequence: u16::from_be_bytes([buf[2], buf[3]]),
        timestamp: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
        ssrc: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
        payload: &buf[start..end],
    })
}

/// The sending side of one RTP stream: sequence, timestamp, SSRC, marker.
#[derive(Debug, Clone)]
pub struct Packetizer {
    pub ssrc: u32,
    pub payload_type: u8,
    sequence: u16,
    timestamp: u32,
    marker: bool,
}

impl Packetizer {
    pub fn new(ssrc: u32, payload_type: u8, first_sequence: u16, first_timestamp: u32) -> Packetizer {
        Packetizer { ssrc, payload_type, sequence: first_sequence, timestamp: first_timestamp, marker: true }
    }

    /// Marks the next packet as the start of a talkspurt (after silence or a new prompt).
    pub fn talkspurt(&mut self) {
        self.marker = true;
    }

    /// Sets the next packet's timestamp back by `samples`: a talkspurt that
    /// starts before its tick keeps its timestamps on real time.
    pub fn set_back(&mut self, samples: u32) {
        self.timestamp = self.timestamp.wrapping_sub(samples);
    }

    /// Writes the next packet (header + `payload`) into `out`, returning its length;
    /// the timestamp then advances by `samples`.
    pub fn write(&mut self, payload: &[u8], samples: u32, out: &mut [u8]) -> usize {
        let n = 12 + payload.len();
        out[0] = 0x80;
        out[1] = self.payload_type | if self.marker { 0x80 } else { 0 };
        out[2..4].copy_from_slice(&self.sequence.to_be_bytes());
        out[4..8].copy_from_slice(&self.timestamp.to_be_bytes());
        out[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        out[12..n].copy_from_slice(payload);
        self.marker = false;
        self.sequence = self.sequence.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(samples);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_parse() {
        let mut p = Packetizer::new(0x1234_5678, 0, 65535, 4_294_967_200);
        let mut buf = [0u8; 200];
        let n = p.write(&[0xff; 160], 160, &mut buf);
        let r = parse(&buf[..n]).unwrap();
        assert_eq!((r.payload_type, r.marker, r.sequence, r.timestamp, r.ssrc), (0, true, 65535, 4_294_967_200, 0x1234_5678));
        assert_eq!(r.payload.len(), 160);
        let n = p.write(&[0xff; 160], 160, &mut buf);
        let r = parse(&buf[..n]).unwrap();
        assert_eq!((r.marker, r.sequence, r.timestamp), (false, 0, 64), "sequence and timestamp wrap");
    }

    #[test]
    fn malformed_packets_are_refused() {
        assert!(parse(&[]).is_none());
        assert!(parse(&[0x80; 11]).is_none());
        assert!(parse(&[0x40; 20]).is_none(), "version 1");
        let mut pad = [0u8; 13];
        pad[0] = 0xa0;
        pad[12] = 9;
        assert!(parse(&pad).is_none(), "padding longer than the payload");
        let mut csrc = [0u8; 14];
        csrc[0] = 0x8f;
        assert!(parse(&csrc).is_none(), "CSRC list past the end");
    }

    fn header(byte0: u8, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        b[0] = byte0;
        b
    }

    #[test]
    fn lengths_that_point_past_the_packet_are_refused() {
        // Header extension: its length word claims 0xffff words.
        let mut ext = header(0x90, 20);
        ext[14..16].copy_from_slice(&[0xff, 0xff]);
        assert!(parse(&ext).is_none(), "extension past the end");
        assert!(parse(&header(0x90, 15)).is_none(), "extension header itself cut short");
        let mut fits = header(0x90, 24);
        fits[15] = 2;
        assert_eq!(parse(&fits).map(|p| p.payload.len()), Some(0), "extension exactly to the end");
        // All fifteen CSRCs, one byte short and exactly there.
        assert!(parse(&header(0x8f, 12 + 59)).is_none());
        assert_eq!(parse(&header(0x8f, 12 + 60)).map(|p| p.payload.len()), Some(0));
        // Padding: a zero count, a count reaching into the header, exactly the payload.
        let mut pad = header(0xa0, 16);
        assert!(parse(&pad).is_none(), "padding count 0");
        pad[15] = 5;
        assert!(parse(&pad).is_none(), "padding into the header");
        pad[15] = 4;
        assert_eq!(parse(&pad).map(|p| p.payload.len()), Some(0));
        // Padding that would fit the packet but not after the CSRCs and extension.
        let mut all = header(0xb1, 12 + 4 + 4 + 8 + 3);
        all[19] = 2;
        let n = all.len();
        all[n - 1] = 4;
        assert!(parse(&all).is_none(), "four bytes of padding after a three-byte payload");
        all[n - 1] = 3;
        assert_eq!(parse(&all).map(|p| p.payload.len()), Some(0));
    }

    /// A packet with the given CSRC count, header extension words, payload
    /// and padding, as a sender would write it.
    fn build(csrc: u8, ext: Option<u16>, payload: &[u8], padding: u8) -> Vec<u8> {
        let mut b = vec![0x80 | csrc | if ext.is_some() { 0x10 } else { 0 } | if padding > 0 { 0x20 } else { 0 }, 0x65, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        b.extend(std::iter::repeat_n(0xcc, 4 * usize::from(csrc)));
        if let Some(words) = ext {
            b.extend_from_slice(&[0xbe, 0xde]);
            b.extend_from_slice(&words.to_be_bytes());
            b.extend(std::iter::repeat_n(0xee, 4 * usize::from(words)));
        }
        b.extend_from_slice(payload);
        if padding > 0 {
            b.extend(std::iter::repeat_n(0, usize::from(padding) - 1));
            b.push(padding);
        }
        b
    }

    proptest::proptest! {
        #[test]
        fn the_payload_is_found_under_any_header(
            csrc in 0u8..16,
            ext in proptest::option::of(0u16..40),
            payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            padding in 0u8..=255,
            cut in 0usize..8,
        ) {
            let b = build(csrc, ext, &payload, padding);
            let p = parse(&b).unwrap();
            proptest::prop_assert_eq!(p.payload, &payload[..]);
            proptest::prop_assert_eq!((p.payload_type, p.ssrc), (0x65, 0x0708_090a));
            // Cut short by a few bytes: refused, or a payload that is all there.
            if cut > 0 && cut <= b.len() {
                if let Some(q) = parse(&b[..b.len() - cut]) {
                    proptest::prop_assert!(q.payload.len() + 12 <= b.len() - cut);
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = parse(&bytes);
        }
    }
}
