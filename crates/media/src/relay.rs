//! Relaying RTP between the two legs of a bridged call: header rewriting so
//! each side sees one continuous stream of ours. Pure: the host sends the bytes.

use crate::rtp::RtpPacket;

/// One direction's RTP header rewriting: our SSRC, continuous sequence
/// numbers, timestamps offset once; the bridged codec and telephone-event
/// (mapped to the payload type the receiving side negotiated) pass, anything
/// else the two sides did not agree on is dropped.
pub struct Rewriter {
    ssrc: u32,
    seq: u16,
    /// Added to incoming timestamps (set by the first packet).
    ts_offset: Option<u32>,
    ts_base: u32,
    audio_pt: u8,
    dtmf: Option<(u8, u8)>,
    out: Vec<u8>,
}

impl Rewriter {
    pub fn new(seed: u64, audio_pt: u8, dtmf: Option<(u8, u8)>) -> Rewriter {
        Rewriter { ssrc: seed as u32 ^ 0x5eed_0000, seq: (seed >> 20) as u16, ts_offset: None, ts_base: (seed >> 8) as u32, audio_pt, dtmf, out: Vec::with_capacity(256) }
    }

    /// The packet to send for `p`, if it is to be relayed.
    pub fn packet(&mut self, p: &RtpPacket) -> Option<&[u8]> {
        let pt = match self.dtmf {
            Some((from, to)) if p.payload_type == from => to,
            _ if p.payload_type == self.audio_pt => p.payload_type,
            _ => return None,
        };
        let offset = *self.ts_offset.get_or_insert(self.ts_base.wrapping_sub(p.timestamp));
        self.seq = self.seq.wrapping_add(1);
        self.out.clear();
        self.out.extend_from_slice(&[0x80, pt | if p.marker { 0x80 } else { 0 }]);
        self.out.extend_from_slice(&self.seq.to_be_bytes());
        self.out.extend_from_slice(&p.timestamp.wrapping_add(offset).to_be_bytes());
        self.out.extend_from_slice(&self.ssrc.to_be_bytes());
        self.out.extend_from_slice(p.payload);
        Some(&self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::parse;

    fn pkt(pt: u8, seq: u16, ts: u32, ssrc: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0x80, pt | if marker { 0x80 } else { 0 }];
        v.extend_from_slice(&seq.to_be_bytes());
        v.extend_from_slice(&ts.to_be_bytes());
        v.extend_from_slice(&ssrc.to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn relayed_packets_are_ours_continuous_and_only_what_was_agreed() {
        let mut r = Rewriter::new(42, 0, Some((101, 96)));
        let mut out = Vec::new();
        for (pt, seq, ts, marker) in [(0u8, 7000u16, 160_000u32, true), (0, 7001, 160_160, false), (8, 7002, 160_320, false), (101, 7003, 160_320, true), (13, 7004, 160_480, false), (0, 7005, 160_640, false)] {
            let raw = pkt(pt, seq, ts, 0xdead_beef, marker, &[1, 2, 3]);
            if let Some(p) = r.packet(&parse(&raw).unwrap()) {
                let q = parse(p).unwrap();
                out.push((q.payload_type, q.sequence, q.timestamp, q.ssrc, q.marker, q.payload.to_vec()));
            }
        }
        assert_eq!(out.len(), 4, "PCMA (8) and comfort noise (13) were not agreed: dropped");
        assert!(out.iter().all(|p| p.3 != 0xdead_beef && p.3 == out[0].3), "one SSRC of ours");
        assert!(out.windows(2).all(|w| w[1].1 == w[0].1.wrapping_add(1)), "sequence numbers without gaps");
        assert_eq!(out[1].2.wrapping_sub(out[0].2), 160, "timestamps keep their spacing");
        assert_eq!(out[3].2.wrapping_sub(out[0].2), 640);
        assert_eq!((out[2].0, out[2].4), (96, true), "telephone-event mapped to the receiver's payload type, marker kept");
        assert_eq!(out[0].5, [1, 2, 3], "payload as it came");
    }
}

