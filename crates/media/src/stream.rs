//! One call's outgoing audio: a queue of pre-encoded prompts (each tagged by
//! the host, so it can tell when one finished), music on hold between them,
//! packetised at the negotiated ptime. Pure: [`Stream::tick`] is driven by the
//! host's media clock, every 20 ms for each stream, and hands each packet to
//! a closure; a prompt started on an idle stream goes out at once
//! ([`Stream::queue_now`]) and the host ticks the stream from that moment.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::audio::{EncodedPrompt, SAMPLES_PER_20MS};
use crate::rtp::Packetizer;
use crate::sdp::Codec;

/// One call's outgoing audio.
pub struct Stream {
    codec: Codec,
    remote: SocketAddr,
    send: bool,
    pk: Packetizer,
    queue: VecDeque<(u32, Vec<Arc<EncodedPrompt>>)>,
    seg: usize,
    pos: usize,
    /// Bytes per packet: the negotiated ptime × 8.
    packet_bytes: usize,
    /// Audio produced by ticks and not yet sent (less than one packet).
    pending: Vec<u8>,
    packet: [u8; 12 + 480],
    /// Played in a loop whenever nothing is queued (music on hold).
    hold: Option<(Arc<EncodedPrompt>, usize)>,
    /// Bridged to an agent: the relay carries the audio, this stream is silent.
    muted: bool,
}

/// What [`Stream::queue_now`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    /// Queued behind audio already playing (or nothing may be sent yet):
    /// it plays at the stream's ticks.
    Behind,
    /// A new talkspurt began: its first 20 ms went out now, so the host
    /// ticks the stream from this moment (its next tick 20 ms from now).
    /// `done`: a play so short it has already finished.
    Started { done: Option<u32> },
}

impl Stream {
    pub fn new(codec: Codec, remote: SocketAddr, send: bool, ptime_ms: u32, seed: u64) -> Stream {
        let ssrc = (seed as u32) ^ (seed >> 32) as u32;
        Stream {
            codec,
            remote,
            send,
            pk: Packetizer::new(ssrc, codec.payload_type(), (seed >> 16) as u16, (seed >> 24) as u32),
            queue: VecDeque::new(),
            seg: 0,
            pos: 0,
            packet_bytes: Self::packet_bytes(ptime_ms),
            pending: Vec::with_capacity(480 + SAMPLES_PER_20MS),
            packet: [0; 12 + 480],
            hold: None,
            muted: false,
        }
    }

    fn packet_bytes(ptime_ms: u32) -> usize {
        (ptime_ms.clamp(10, 60) / 10 * 80) as usize
    }

    pub fn renegotiate(&mut self, codec: Codec, remote: SocketAddr, send: bool, ptime_ms: u32) {
        self.packet_bytes = Self::packet_bytes(ptime_ms);
        self.codec = codec;
        self.remote = remote;
        self.send = send;
        self.pk.payload_type = codec.payload_type();
        self.pk.talkspurt();
    }

    /// Sends from now on to `addr` (symmetric RTP).
    pub fn latch(&mut self, addr: SocketAddr) {
        self.remote = addr;
    }

    /// Where this stream's packets go.
    pub fn remote(&self) -> SocketAddr {
        self.remote
    }

    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Music on hold between queued audio (`None`: comfort silence).
    pub fn set_hold(&mut self, hold: Option<Arc<EncodedPrompt>>) {
        self.hold = hold.map(|h| (h, 0));
    }

    /// Sends nothing while muted (the call is bridged).
    pub fn set_muted(&mut self, muted: bool) {
        self.muted = muted;
        self.pk.talkspurt();
    }

    pub fn queue(&mut self, id: u32, audio: Vec<Arc<EncodedPrompt>>) {
        if self.queue.is_empty() {
            self.pk.talkspurt();
        }
        self.queue.push_back((id, audio));
    }

    /// Queues audio and, when nothing was playing, sends its first 20 ms at
    /// once instead of at the stream's next tick: a key's answer is heard
    /// as soon as it is known. `early_ms`: how long before the stream's next
    /// tick this is (0–20). The new talkspurt is marked — a receiver anchors
    /// its playout on that packet — and its timestamp is set back by as
    /// much, so timestamps keep to real time (the stream never runs ahead,
    /// however many prompts start early); the host then ticks the stream
    /// 20 ms after this moment, so the talkspurt runs evenly spaced from its
    /// first packet.
    pub fn queue_now(&mut self, id: u32, audio: Vec<Arc<EncodedPrompt>>, confirmed: bool, early_ms: u32, send: impl FnMut(&[u8], SocketAddr)) -> Queued {
        let was_idle = self.queue.is_empty();
        self.queue(id, audio);
        if !was_idle || !confirmed || self.muted {
            return Queued::Behind;
        }
        if self.packet_bytes <= SAMPLES_PER_20MS && self.pending.is_empty() {
            // Still after the last packet's start (a timestamp never repeats).
            let samples = early_ms.min(20) * (SAMPLES_PER_20MS as u32 / 20);
            self.pk.set_back(samples.min(self.packet_bytes as u32 - 1));
        }
        Queued::Started { done: self.produce(send) }
    }

    pub fn stop(&mut self) {
        self.queue.clear();
        self.seg = 0;
        self.pos = 0;
        self.pk.talkspurt();
    }

    pub fn is_idle(&self) -> bool {
        self.queue.is_empty()
    }

    /// Produces the next 20 ms (prompt audio, or silence) and hands `send` every
    /// packet now complete (one per tick at 20 ms ptime; two at 10 ms; one every
    /// other tick at 40 ms); returns the play that just finished, if one did.
    pub fn tick(&mut self, confirmed: bool, send: impl FnMut(&[u8], SocketAddr)) -> Option<u32> {
        if !confirmed || self.muted {
            return None;
        }
        self.produce(send)
    }

    /// The next 20 ms, sent.
    fn produce(&mut self, mut send: impl FnMut(&[u8], SocketAddr)) -> Option<u32> {
        let silence = match self.codec {
            Codec::Pcmu => 0xff,
            Codec::Pcma => 0xd5,
        };
        let mut payload = [silence; SAMPLES_PER_20MS];
        let mut finished = None;
        // Skip empty segments, then copy one frame.
        while let Some((id, segs)) = self.queue.front() {
            match segs.get(self.seg) {
                Some(seg) => {
                    let bytes = seg.bytes(self.codec);
                    if self.pos + SAMPLES_PER_20MS <= bytes.len() {
                        payload.copy_from_slice(&bytes[self.pos..self.pos + SAMPLES_PER_20MS]);
                        self.pos += SAMPLES_PER_20MS;
                        if self.pos >= bytes.len() {
                            self.seg += 1;
                            self.pos = 0;
                            if self.seg >= segs.len() {
                                finished = Some(*id);
                                self.queue.pop_front();
                                self.seg = 0;
                            }
                        }
                        break;
                    }
                    self.seg += 1;
                    self.pos = 0;
                }
                None => {
                    finished = Some(*id);
                    self.queue.pop_front();
                    self.seg = 0;
                    self.pos = 0;
                }
            }
        }
        if self.queue.is_empty() && finished.is_none() {
            if let Some((hold, pos)) = self.hold.as_mut() {
                let bytes = hold.bytes(self.codec);
                if bytes.len() >= SAMPLES_PER_20MS {
                    if *pos + SAMPLES_PER_20MS > bytes.len() {
                        *pos = 0;
                    }
                    payload.copy_from_slice(&bytes[*pos..*pos + SAMPLES_PER_20MS]);
                    *pos += SAMPLES_PER_20MS;
                }
            }
        }
        self.pending.extend_from_slice(&payload);
        while self.pending.len() >= self.packet_bytes {
            let size = self.packet_bytes;
            let n = self.pk.write(&self.pending[..size], size as u32, &mut self.packet);
            if self.send {
                send(&self.packet[..n], self.remote);
            }
            self.pending.drain(..size);
        }
        finished
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp;

    fn sent(ptime: u32, ticks: usize) -> Vec<(usize, u32)> {
        let mut s = Stream::new(Codec::Pcmu, "127.0.0.1:9".parse().unwrap(), true, ptime, 5);
        s.queue(1, vec![Arc::new(EncodedPrompt::from_pcm(&[100; 1600]))]);
        let mut out = Vec::new();
        for _ in 0..ticks {
            s.tick(true, |p, _| {
                let r = rtp::parse(p).unwrap();
                out.push((r.payload.len(), r.timestamp));
            });
        }
        out
    }

    #[test]
    fn audio_queued_while_idle_starts_at_once_as_a_new_talkspurt() {
        let mut s = Stream::new(Codec::Pcmu, "127.0.0.1:9".parse().unwrap(), true, 20, 5);
        let out: std::cell::RefCell<Vec<(u32, u8, bool)>> = Default::default();
        let take = |p: &[u8], _: SocketAddr| {
            let r = rtp::parse(p).unwrap();
            out.borrow_mut().push((r.timestamp, r.payload[0], r.marker));
        };
        // Silence for two ticks, then a key 5 ms after the last tick (15 ms
        // before the next): the prompt's first frame goes now, marked, its
        // timestamp 5 ms (40 samples) after the last packet's: real time.
        s.tick(true, &take);
        s.tick(true, &take);
        assert_eq!(s.queue_now(1, vec![Arc::new(EncodedPrompt::from_pcm(&[3000; 480]))], true, 15, &take), Queued::Started { done: None });
        assert_eq!(out.borrow().len(), 3, "sent when queued, not at the next tick");
        assert!(out.borrow()[2].2, "a new talkspurt");
        assert_eq!(out.borrow()[2].0.wrapping_sub(out.borrow()[1].0), 40);
        // The rest follows at the stream's ticks (the host ticks it from now on).
        s.tick(true, &take);
        assert_eq!(s.tick(true, &take), Some(1), "three frames: the play ends");
        // Idle again: silence, a frame a tick, nothing owed.
        s.tick(true, &take);
        assert_eq!(out.borrow().len(), 6);
        assert!(out.borrow()[2..].windows(2).all(|w| w[1].0.wrapping_sub(w[0].0) == 160), "timestamps one frame apart: {out:?}");
        // A prompt started right after a tick: its timestamp still moves on.
        let mut at_once = Stream::new(Codec::Pcmu, "127.0.0.1:9".parse().unwrap(), true, 20, 5);
        let ts: std::cell::RefCell<Vec<u32>> = Default::default();
        at_once.tick(true, |p, _| ts.borrow_mut().push(rtp::parse(p).unwrap().timestamp));
        at_once.queue_now(9, vec![Arc::new(EncodedPrompt::from_pcm(&[3000; 480]))], true, 20, |p, _| ts.borrow_mut().push(rtp::parse(p).unwrap().timestamp));
        assert_eq!(ts.borrow()[1].wrapping_sub(ts.borrow()[0]), 1);
        // Queued behind audio already playing: nothing extra is sent.
        s.queue(2, vec![Arc::new(EncodedPrompt::from_pcm(&[3000; 1600]))]);
        let before = out.borrow().len();
        s.tick(true, &take);
        assert_eq!(s.queue_now(3, vec![Arc::new(EncodedPrompt::from_pcm(&[3000; 160]))], true, 10, &take), Queued::Behind);
        assert_eq!(out.borrow().len(), before + 1);
        // Before the ACK nothing goes, and a play of one frame is done at once.
        let mut quiet = Stream::new(Codec::Pcmu, "127.0.0.1:9".parse().unwrap(), true, 20, 5);
        assert_eq!(quiet.queue_now(4, vec![Arc::new(EncodedPrompt::from_pcm(&[3000; 160]))], false, 10, |_, _| panic!("nothing before the ACK")), Queued::Behind);
        let mut short = Stream::new(Codec::Pcmu, "127.0.0.1:9".parse().unwrap(), true, 20, 5);
        assert_eq!(short.queue_now(5, vec![Arc::new(EncodedPrompt::from_pcm(&[3000; 160]))], true, 0, |_, _| {}), Queued::Started { done: Some(5) });
    }

    #[test]
    fn packets_follow_the_negotiated_ptime() {
        let p20 = sent(20, 5);
        assert_eq!(p20.len(), 5);
        assert!(p20.windows(2).all(|w| w[0].0 == 160 && w[1].1.wrapping_sub(w[0].1) == 160));
        let p10 = sent(10, 5);
        assert_eq!(p10.len(), 10);
        assert!(p10.windows(2).all(|w| w[0].0 == 80 && w[1].1.wrapping_sub(w[0].1) == 80));
        let p40 = sent(40, 6);
        assert_eq!(p40.len(), 3);
        assert!(p40.windows(2).all(|w| w[0].0 == 320 && w[1].1.wrapping_sub(w[0].1) == 320));
        let p30 = sent(30, 6);
        assert_eq!(p30.len(), 4, "960 bytes in 240-byte packets");
    }

    #[test]
    fn a_play_finishes_when_its_audio_has_gone() {
        let mut s = Stream::new(Codec::Pcma, "127.0.0.1:9".parse().unwrap(), true, 20, 5);
        s.queue(7, vec![Arc::new(EncodedPrompt::from_pcm(&[0; 320]))]);
        assert_eq!(s.tick(true, |_, _| {}), None);
        assert_eq!(s.tick(true, |_, _| {}), Some(7));
        assert!(s.is_idle());
        assert_eq!(s.tick(false, |_, _| panic!("nothing is sent before the ACK")), None);
    }
}

