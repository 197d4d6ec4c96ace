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

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = parse(&bytes);
        }
    }
}
