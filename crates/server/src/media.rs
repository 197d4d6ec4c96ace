//! Per-call media: the play queue and RTP sender driven by the shared 20 ms
//! tick, the DTMF receive task, and the prompt audio loaded once per flow.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use ivr_bytecode::{Program, SayKind, Value};
use ivr_media::audio::{EncodedPrompt, SAMPLES_PER_20MS};
use ivr_media::dtmf::DtmfReceiver;
use ivr_media::rtp::{self, Packetizer};
use ivr_media::sdp::Codec;
use ivr_sip::endpoint::CallKey;
use ivr_vm::PlayId;
use tokio::net::UdpSocket;
use tokio::sync::mpsc::UnboundedSender;
use tracing::warn;

use crate::Internal;

/// Every prompt of a flow, per language, decoded and G.711-encoded once, plus the
/// speech segments.
pub struct PromptAudio {
    /// Prompt ids, by index (announcements find their prompts by id).
    ids: Vec<String>,
    /// Music on hold: the catalogue's `hold_music`, or a gentle synthesized loop.
    hold: Arc<EncodedPrompt>,
    prompts: Vec<Vec<Arc<EncodedPrompt>>>,
    segments: Vec<(String, Arc<EncodedPrompt>)>,
    silence: Arc<EncodedPrompt>,
    beep: Arc<EncodedPrompt>,
}

impl PromptAudio {
    pub fn load(program: &Program, flows_dir: &Path) -> PromptAudio {
        let silence = Arc::new(EncodedPrompt::from_pcm(&[0; 1600]));
        let missing = std::cell::RefCell::new(Vec::new());
        let load = |rel: &str| match EncodedPrompt::load(&flows_dir.join(rel)) {
            Ok(p) => Arc::new(p),
            Err(e) => {
                missing.borrow_mut().push(e.to_string());
                silence.clone()
            }
        };
        let prompts: Vec<Vec<Arc<EncodedPrompt>>> = program
            .prompts
            .iter()
            .map(|p| p.audio.iter().map(|a| a.as_deref().map_or_else(|| silence.clone(), load)).collect())
            .collect();
        let mut segments = Vec::new();
        for lang in &program.languages {
            for (id, _) in ivr_speech::SEGMENTS.iter().filter(|(id, _)| id.starts_with(&format!("{lang}_"))) {
                segments.push((id.to_string(), load(&format!("audio/{lang}/seg/{id}.wav"))));
            }
        }
        let missing = missing.into_inner();
        if let Some(first) = missing.first() {
            warn!(count = missing.len(), "{first}; these play 200 ms of silence (render prompts with scripts/render-prompts.sh)");
        }
        // The record tone: 400 ms of 1 kHz.
        let tone: Vec<i16> = (0..3200).map(|i| ((i as f64 * 2.0 * std::f64::consts::PI / 8.0).sin() * 8000.0) as i16).collect();
        let ids: Vec<String> = program.prompts.iter().map(|p| p.id.clone()).collect();
        let hold = ids.iter().position(|i| i == "hold_music").and_then(|i| prompts.get(i)).and_then(|p: &Vec<Arc<EncodedPrompt>>| p.first().cloned());
        let hold = hold.unwrap_or_else(|| Arc::new(EncodedPrompt::from_pcm(&hold_music())));
        PromptAudio { ids, hold, prompts, segments, silence, beep: Arc::new(EncodedPrompt::from_pcm(&tone)) }
    }

    /// A prompt by catalogue id, in language `lang`, if the flow has it.
    pub fn by_id(&self, id: &str, lang: usize) -> Option<Arc<EncodedPrompt>> {
        let i = self.ids.iter().position(|x| x == id)?;
        Some(self.prompt(i, lang))
    }

    pub fn hold(&self) -> Arc<EncodedPrompt> {
        self.hold.clone()
    }

    pub fn prompt(&self, index: usize, lang: usize) -> Arc<EncodedPrompt> {
        self.prompts.get(index).and_then(|p| p.get(lang)).cloned().unwrap_or_else(|| self.silence.clone())
    }

    /// No prompts at all (for calls to numbers nobody serves).
    pub fn empty() -> PromptAudio {
        let silence = Arc::new(EncodedPrompt::from_pcm(&[0; 1600]));
        PromptAudio { ids: Vec::new(), hold: silence.clone(), prompts: Vec::new(), segments: Vec::new(), beep: silence.clone(), silence }
    }

    pub fn beep(&self) -> Arc<EncodedPrompt> {
        self.beep.clone()
    }

    pub fn segment(&self, id: &str) -> Arc<EncodedPrompt> {
        self.segments.iter().find(|(s, _)| s == id).map_or_else(|| self.silence.clone(), |(_, p)| p.clone())
    }

    /// `value` read aloud as `kind` in language `lang` (an index into the
    /// program's languages): its segment prompts, in order.
    pub fn say(&self, program: &Program, kind: SayKind, value: &Value, lang: usize) -> Vec<Arc<EncodedPrompt>> {
        let lang = program.languages.get(lang).map(String::as_str).unwrap_or("zh");
        say_segments(kind, value, lang).iter().map(|s| self.segment(s)).collect()
    }

    /// The encoded audio of a prompt in one language (for tests and tools).
    pub fn prompt_bytes(&self, index: usize, lang: usize, codec: Codec) -> Arc<[u8]> {
        self.prompt(index, lang).bytes(codec).clone()
    }
}

/// How a flow's `say` of `value` is read in `lang`: its segment prompts and
/// their text. `None` when the value cannot be read as that kind.
/// Eight seconds of quiet arpeggio (C major, then F, then G, then C), a soft
/// sine with gentle attack and decay: music on hold when a flow ships none.
fn hold_music() -> Vec<i16> {
    let chords: [[f64; 3]; 4] = [[261.63, 329.63, 392.0], [349.23, 440.0, 523.25], [392.0, 493.88, 587.33], [261.63, 329.63, 392.0]];
    let note = 8_000 * 2 / 3;
    let mut out = Vec::with_capacity(8 * 8_000);
    for chord in chords {
        for f in chord {
            for i in 0..note {
                let t = i as f64 / 8_000.0;
                let env = (t / 0.03).min(1.0) * (-(t * 2.5)).exp();
                let v = (2.0 * std::f64::consts::PI * f * t).sin() * env * 5_000.0;
                out.push(v as i16);
            }
        }
    }
    out.resize(8 * 8_000, 0);
    out
}

pub fn reading(kind: SayKind, value: &Value, lang: &str) -> Option<ivr_speech::Reading> {
    let k = ivr_speech::Kind::parse(kind.name())?;
    let l = ivr_speech::Lang::parse(lang)?;
    ivr_speech::read(k, &value.to_string(), l).ok()
}

/// The segment prompts that speak a value.
fn say_segments(kind: SayKind, value: &Value, lang: &str) -> Vec<&'static str> {
    reading(kind, value, lang).map(|r| r.segments).unwrap_or_default()
}

/// One call's outgoing audio.
pub struct Stream {
    codec: Codec,
    remote: SocketAddr,
    send: bool,
    pk: Packetizer,
    queue: VecDeque<(PlayId, Vec<Arc<EncodedPrompt>>)>,
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

    pub fn queue(&mut self, id: PlayId, audio: Vec<Arc<EncodedPrompt>>) {
        if self.queue.is_empty() {
            self.pk.talkspurt();
        }
        self.queue.push_back((id, audio));
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
    pub fn tick(&mut self, confirmed: bool, mut send: impl FnMut(&[u8], SocketAddr)) -> Option<PlayId> {
        if !confirmed || self.muted {
            return None;
        }
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

    fn sent(ptime: u32, ticks: usize) -> Vec<(usize, u32)> {
        let mut s = Stream::new(Codec::Pcmu, "127.0.0.1:9".parse().unwrap(), true, ptime, 5);
        s.queue(PlayId(1), vec![Arc::new(EncodedPrompt::from_pcm(&[100; 1600]))]);
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
        s.queue(PlayId(7), vec![Arc::new(EncodedPrompt::from_pcm(&[0; 320]))]);
        assert_eq!(s.tick(true, |_, _| {}), None);
        assert_eq!(s.tick(true, |_, _| {}), Some(PlayId(7)));
        assert!(s.is_idle());
        assert_eq!(s.tick(false, |_, _| panic!("nothing is sent before the ACK")), None);
    }
}

/// How a call's incoming RTP is treated.
#[derive(Debug, Clone, Copy)]
pub struct ReceiveOptions {
    pub dtmf_pt: Option<u8>,
    pub codec: Codec,
    /// Listen for DTMF tones in the audio too (trunks without RFC 4733).
    pub inband_dtmf: bool,
    /// Send to wherever the caller's RTP comes from (callers behind NAT) instead
    /// of accepting it only from the negotiated address.
    pub latch: bool,
}

/// Forwards one leg's RTP to the other leg of a bridged call: the payload as
/// it came (both legs use the same codec), under this side's own SSRC, with
/// continuous sequence numbers and timestamps, and the telephone-event payload
/// type the receiving side negotiated.
pub struct Relay {
    socket: Arc<UdpSocket>,
    to: SocketAddr,
    rewrite: Rewriter,
}

/// A receive task's relay, set while the call is bridged.
pub type RelaySlot = Arc<std::sync::Mutex<Option<Relay>>>;

impl Relay {
    /// `audio_pt`: the bridged codec's payload type; `dtmf`: (payload type
    /// coming in, payload type to send), when both sides have events.
    pub fn new(socket: Arc<UdpSocket>, to: SocketAddr, seed: u64, audio_pt: u8, dtmf: Option<(u8, u8)>) -> Relay {
        Relay { socket, to, rewrite: Rewriter::new(seed, audio_pt, dtmf) }
    }

    /// The other side's media moved (a re-INVITE).
    pub fn retarget(&mut self, to: SocketAddr) {
        self.to = to;
    }

    pub fn forward(&mut self, p: &rtp::RtpPacket) {
        if let Some(out) = self.rewrite.packet(p) {
            let _ = self.socket.try_send_to(out, self.to);
        }
    }
}

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
    pub fn packet(&mut self, p: &rtp::RtpPacket) -> Option<&[u8]> {
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
mod relay_tests {
    use super::*;

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
            if let Some(p) = r.packet(&rtp::parse(&raw).unwrap()) {
                let q = rtp::parse(p).unwrap();
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

/// Receives an agent leg's RTP (only from the agent's media address) and
/// relays it to the caller.
pub fn spawn_leg_receiver(socket: Arc<UdpSocket>, remote: SocketAddr, relay: RelaySlot) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else { return };
            if from.ip() != remote.ip() {
                continue;
            }
            let Some(p) = rtp::parse(&buf[..n]) else { continue };
            if let Some(r) = relay.lock().ok().as_mut().and_then(|r| r.as_mut()) {
                r.forward(&p);
            }
        }
    })
}

/// Receives the caller's RTP: only from the negotiated address (strict RTP),
/// RFC 4733 events become keys; while bridged, everything is relayed to the agent.
pub fn spawn_receiver(
    socket: Arc<UdpSocket>,
    remote: SocketAddr,
    opts: ReceiveOptions,
    capture: Arc<std::sync::atomic::AtomicBool>,
    relay: RelaySlot,
    call: CallKey,
    tx: UnboundedSender<Internal>,
) -> tokio::task::JoinHandle<()> {
    let ReceiveOptions { dtmf_pt, codec, inband_dtmf, latch } = opts;
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        let mut dtmf = DtmfReceiver::default();
        let mut tones = ivr_media::inband::InbandDetector::new();
        let mut source: Option<SocketAddr> = None;
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else { return };
            let Some(p) = rtp::parse(&buf[..n]) else { continue };
            if latch {
                // Symmetric RTP: the first well-formed packet fixes the source.
                match source {
                    None => {
                        source = Some(from);
                        if from != remote && tx.send(Internal::Latch(call, from)).is_err() {
                            return;
                        }
                    }
                    Some(s) if s != from => continue,
                    Some(_) => {}
                }
            } else if from.ip() != remote.ip() {
                continue; // strict RTP: not from the caller's media address
            }
            if let Some(r) = relay.lock().ok().as_mut().and_then(|r| r.as_mut()) {
                r.forward(&p);
                continue; // bridged: the agent hears it (keys included)
            }
            if Some(p.payload_type) == dtmf_pt {
                if let Some(key) = dtmf.packet(p.timestamp, p.payload) {
                    if tx.send(Internal::Digit(call, key)).is_err() {
                        return;
                    }
                }
            } else if p.payload_type == codec.payload_type() {
                let capturing = capture.load(std::sync::atomic::Ordering::Relaxed);
                if !capturing && !inband_dtmf {
                    continue;
                }
                let pcm: Vec<i16> = match codec {
                    Codec::Pcmu => p.payload.iter().map(|&b| ivr_media::g711::ulaw_decode(b)).collect(),
                    Codec::Pcma => p.payload.iter().map(|&b| ivr_media::g711::alaw_decode(b)).collect(),
                };
                if inband_dtmf {
                    for key in tones.push(&pcm) {
                        if tx.send(Internal::Digit(call, key)).is_err() {
                            return;
                        }
                    }
                }
                if capturing && tx.send(Internal::Audio(call, pcm)).is_err() {
                    return;
                }
            }
        }
    })
}
