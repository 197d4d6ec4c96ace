//! What becomes of each RTP packet a call receives, in one place for every
//! host: the [`SourceGuard`] decides whether it is the caller's at all; the
//! caller's RFC 4733 events become keys, their audio is decoded when it is
//! wanted (in-band DTMF, recording), and while bridged the packet is relayed.
//! Pure: the host reads the socket and carries out what comes back; the
//! decoded audio lives in a buffer reused for every packet.

use std::net::SocketAddr;

use crate::dtmf::{DtmfReceiver, KeySource};
use crate::inband::InbandDetector;
use crate::rtp::{self, RtpPacket};
use crate::sdp::Codec;
use crate::source::{LatchPolicy, SourceGuard, Verdict};

/// What the host wants from the caller's media right now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wants {
    /// Bridged: pass every packet of the caller's on (keys included).
    pub relay: bool,
    /// Recording: hand over the decoded audio.
    pub audio: bool,
}

/// One thing a packet brought.
#[derive(Debug)]
pub enum Received<'a> {
    /// The guard latched to this source (NAT): send our RTP there from now on.
    Latched(SocketAddr),
    /// A key press (RFC 4733, or a tone when listening in-band).
    Key(char, KeySource),
    /// Decoded audio, when [`Wants::audio`].
    Audio(&'a [i16]),
    /// The packet to relay, when [`Wants::relay`].
    Relay(&'a RtpPacket<'a>),
}

pub struct Receiver {
    guard: SourceGuard,
    dtmf: DtmfReceiver,
    tones: Option<InbandDetector>,
    codec: Codec,
    dtmf_pt: Option<u8>,
    pcm: Vec<i16>,
}

impl Receiver {
    /// For media negotiated with `remote` at `now_ms` (the host's clock).
    pub fn new(now_ms: u64, remote: SocketAddr, codec: Codec, dtmf_pt: Option<u8>, policy: LatchPolicy, inband_dtmf: bool) -> Receiver {
        Receiver {
            guard: SourceGuard::new(now_ms, remote, codec.payload_type(), dtmf_pt, policy),
            dtmf: DtmfReceiver::default(),
            tones: inband_dtmf.then(InbandDetector::new),
            codec,
            dtmf_pt,
            pcm: Vec::with_capacity(480),
        }
    }

    /// The media moved (a re-INVITE).
    pub fn renegotiate(&mut self, now_ms: u64, remote: SocketAddr, codec: Codec, dtmf_pt: Option<u8>) {
        self.guard.renegotiate(now_ms, remote, codec.payload_type(), dtmf_pt);
        self.codec = codec;
        self.dtmf_pt = dtmf_pt;
    }

    pub fn guard(&self) -> &SourceGuard {
        &self.guard
    }

    /// Takes one datagram from `from`; `out` hears what it brought.
    pub fn packet(&mut self, now_ms: u64, from: SocketAddr, data: &[u8], wants: Wants, mut out: impl FnMut(Received)) {
        let Some(p) = rtp::parse(data) else { return };
        let verdict = self.guard.accept(now_ms, from, &p);
        match verdict {
            Verdict::Dropped(_) => return,
            Verdict::Audio { latched: true } => out(Received::Latched(from)),
            _ => {}
        }
        if wants.relay {
            return out(Received::Relay(&p));
        }
        if let Verdict::Event = verdict {
            if self.dtmf_pt == Some(p.payload_type) {
                if let Some(key) = self.dtmf.packet(p.timestamp, p.payload) {
                    out(Received::Key(key, KeySource::Rfc4733));
                }
            }
            return;
        }
        if !wants.audio && self.tones.is_none() {
            return;
        }
        self.pcm.clear();
        match self.codec {
            Codec::Pcmu => self.pcm.extend(p.payload.iter().map(|&b| crate::g711::ulaw_decode(b))),
            Codec::Pcma => self.pcm.extend(p.payload.iter().map(|&b| crate::g711::alaw_decode(b))),
        }
        if let Some(tones) = self.tones.as_mut() {
            for key in tones.push(&self.pcm) {
                out(Received::Key(key, KeySource::Inband));
            }
        }
        if wants.audio {
            out(Received::Audio(&self.pcm));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(pt: u8, seq: u16, ts: u32, ssrc: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0x80, pt | if marker { 0x80 } else { 0 }];
        v.extend_from_slice(&seq.to_be_bytes());
        v.extend_from_slice(&ts.to_be_bytes());
        v.extend_from_slice(&ssrc.to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    /// An RFC 4733 key: start, two updates, three end packets (one timestamp).
    fn key(event: u8, seq: u16, ts: u32, ssrc: u32) -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        for (i, (end, dur)) in [(false, 160u16), (false, 320), (false, 480), (true, 640), (true, 640), (true, 640)].into_iter().enumerate() {
            let payload = [event, if end { 0x80 } else { 0 } | 10, (dur >> 8) as u8, dur as u8];
            v.push(packet(101, seq + i as u16, ts, ssrc, i == 0, &payload));
        }
        v
    }

    fn keys(r: &mut Receiver, from: SocketAddr, packets: &[Vec<u8>]) -> String {
        let mut got = String::new();
        for p in packets {
            r.packet(0, from, p, Wants::default(), |x| {
                if let Received::Key(k, _) = x {
                    got.push(k)
                }
            });
        }
        got
    }

    #[test]
    fn keys_come_once_from_the_caller_and_never_from_anyone_else() {
        let caller: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        let stranger: SocketAddr = "192.0.2.1:4002".parse().unwrap();
        let mut r = Receiver::new(0, caller, Codec::Pcmu, Some(101), LatchPolicy::Strict, false);
        assert_eq!(keys(&mut r, stranger, &key(5, 1, 8000, 7)), "", "another port of the same host");
        assert_eq!(keys(&mut r, caller, &key(1, 10, 16000, 9)), "1");
        // Duplicated and reordered end packets are one key.
        let mut dup = key(2, 20, 24000, 9);
        dup.extend(key(2, 20, 24000, 9));
        dup.swap(1, 4);
        assert_eq!(keys(&mut r, caller, &dup), "2");
        // Only the end packets (the start was lost) still make the key.
        let lossy: Vec<Vec<u8>> = key(3, 30, 32000, 9).into_iter().skip(3).collect();
        assert_eq!(keys(&mut r, caller, &lossy), "3");
    }

    #[test]
    fn a_bridged_callers_packets_are_relayed_not_taken_as_keys() {
        let caller: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        let mut r = Receiver::new(0, caller, Codec::Pcmu, Some(101), LatchPolicy::Strict, false);
        let mut relayed = 0;
        for p in key(4, 1, 8000, 9) {
            r.packet(0, caller, &p, Wants { relay: true, audio: false }, |x| match x {
                Received::Relay(_) => relayed += 1,
                other => panic!("{other:?}"),
            });
        }
        assert_eq!(relayed, 6);
    }

    #[test]
    fn each_key_says_whether_it_came_as_an_event_or_a_tone() {
        let caller: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        let mut r = Receiver::new(0, caller, Codec::Pcmu, Some(101), LatchPolicy::Strict, true);
        let mut got = Vec::new();
        let mut take = |r: &mut Receiver, p: &[u8]| {
            r.packet(0, caller, p, Wants::default(), |x| {
                if let Received::Key(k, from) = x {
                    got.push((k, from));
                }
            })
        };
        for p in key(7, 1, 8000, 9) {
            take(&mut r, &p);
        }
        // A 100 ms "1" (697 + 1209 Hz) between silences, as PCMU packets of 20 ms.
        let tone = (0..800).map(|i| {
            let t = i as f32 / 8000.0;
            let v = (2.0 * std::f32::consts::PI * 697.0 * t).sin() + (2.0 * std::f32::consts::PI * 1209.0 * t).sin();
            (v * 8000.0) as i16
        });
        let pcm: Vec<i16> = [0; 400].into_iter().chain(tone).chain([0; 800]).collect();
        for (n, frame) in pcm.chunks(160).enumerate() {
            let payload: Vec<u8> = frame.iter().map(|&s| crate::g711::ulaw_encode(s)).collect();
            take(&mut r, &packet(0, 100 + n as u16, 16000 + 160 * n as u32, 9, false, &payload));
        }
        assert_eq!(got, [('7', KeySource::Rfc4733), ('1', KeySource::Inband)]);
    }
}
