//! Prompt audio: decoded once (WAV, FLAC, MP3, Ogg/Vorbis via symphonia),
//! mixed to mono, resampled to 8 kHz and G.711-encoded, then shared by every call.

use std::path::Path;
use std::sync::Arc;

use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::DecoderOptions;
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

use crate::g711;
use crate::sdp::Codec;

/// Telephone sample rate.
pub const RATE_HZ: u32 = 8_000;
/// Samples (and G.711 bytes) in 20 ms.
pub const SAMPLES_PER_20MS: usize = 160;

#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("cannot open {path}: {source}")]
    Open { path: String, source: std::io::Error },
    #[error("cannot decode {path}: {message}")]
    Decode { path: String, message: String },
}

/// Decodes an audio file to mono samples in -1.0..1.0 and its sample rate.
pub fn decode_file(path: &Path) -> Result<(Vec<f32>, u32), AudioError> {
    let p = path.display().to_string();
    let err = |m: String| AudioError::Decode { path: p.clone(), message: m };
    let file = std::fs::File::open(path).map_err(|source| AudioError::Open { path: p.clone(), source })?;
    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(ext);
    }
    let probed = symphonia::default::get_probe()
        .format(&hint, mss, &FormatOptions::default(), &MetadataOptions::default())
        .map_err(|e| err(e.to_string()))?;
    let mut format = probed.format;
    let track = format.default_track().ok_or_else(|| err("no audio track".into()))?;
    let track_id = track.id;
    let rate = track.codec_params.sample_rate.ok_or_else(|| err("unknown sample rate".into()))?;
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|e| err(e.to_string()))?;
    let mut out = Vec::new();
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(SymError::ResetRequired) => break,
            Err(e) => return Err(err(e.to_string())),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(d) => d,
            Err(SymError::DecodeError(_)) => continue, // a corrupt frame: skip it
            Err(e) => return Err(err(e.to_string())),
        };
        let spec = *decoded.spec();
        let channels = spec.channels.count().max(1);
        let mut buf = SampleBuffer::<f32>::new(decoded.capacity() as u64, spec);
        buf.copy_interleaved_ref(decoded);
        out.extend(buf.samples().chunks(channels).map(|f| f.iter().sum::<f32>() / channels as f32));
    }
    if out.is_empty() {
        return Err(err("no audio in the file".into()));
    }
    Ok((out, rate))
}

/// Band-limited resampling (windowed sinc, Blackman window) to `to_hz`. The
/// kernel is tabulated once per phase (rates with a common divisor have few
/// phases: 22.05 kHz → 8 kHz has 160), so a prompt resamples in milliseconds.
pub fn resample(input: &[f32], from_hz: u32, to_hz: u32) -> Vec<f32> {
    if from_hz == to_hz || input.is_empty() {
        return input.to_vec();
    }
    fn gcd(a: u32, b: u32) -> u32 {
        if b == 0 { a } else { gcd(b, a % b) }
    }
    let g = gcd(from_hz, to_hz);
    let (up, down) = ((to_hz / g) as usize, (from_hz / g) as usize);
    let cutoff = (to_hz as f64 / from_hz as f64).min(1.0) * 0.95;
    let half = (16.0 / cutoff).ceil() as i64;
    let taps = (2 * half) as usize;
    let weight = |x: f64| {
        let r = (x / half as f64 + 1.0) / 2.0;
        if !(0.0..=1.0).contains(&r) {
            return 0.0;
        }
        let w = 0.42 - 0.5 * (2.0 * std::f64::consts::PI * r).cos() + 0.08 * (4.0 * std::f64::consts::PI * r).cos();
        let arg = std::f64::consts::PI * cutoff * x;
        let sinc = if x.abs() < 1e-9 { 1.0 } else { arg.sin() / arg };
        (cutoff * sinc * w) as f32
    };
    // table[phase][j]: weight of input sample (floor(t) - half + 1 + j) when the
    // output falls `phase / up` of the way past floor(t).
    let phases = up.min(4096);
    let table: Vec<f32> = (0..phases)
        .flat_map(|p| {
            let frac = p as f64 / phases as f64;
            (0..taps).map(move |j| (frac, j))
        })
        .map(|(frac, j)| weight(frac - (j as f64 - half as f64 + 1.0)))
        .collect();
    let n_out = (input.len() as u64 * up as u64 / down as u64) as usize;
    let mut out = Vec::with_capacity(n_out);
    for i in 0..n_out {
        let pos = i as u64 * down as u64;
        let center = (pos / up as u64) as i64;
        let phase = ((pos % up as u64) as usize * phases) / up;
        let row = &table[phase * taps..(phase + 1) * taps];
        let first = center - half + 1;
        let mut acc = 0.0f32;
        if first >= 0 && (first as usize + taps) <= input.len() {
            let window = &input[first as usize..first as usize + taps];
            for (w, x) in row.iter().zip(window) {
                acc += w * x;
            }
        } else {
            for (j, w) in row.iter().enumerate() {
                let k = first + j as i64;
                if k >= 0 && (k as usize) < input.len() {
                    acc += w * input[k as usize];
                }
            }
        }
        out.push(acc);
    }
    out
}

pub fn to_i16(samples: &[f32]) -> Vec<i16> {
    samples.iter().map(|s| (s * 32767.0).round().clamp(-32768.0, 32767.0) as i16).collect()
}

pub fn encode(pcm: &[i16], codec: Codec) -> Vec<u8> {
    match codec {
        Codec::Pcmu => pcm.iter().map(|&s| g711::ulaw_encode(s)).collect(),
        Codec::Pcma => pcm.iter().map(|&s| g711::alaw_encode(s)).collect(),
    }
}

/// A prompt ready to send: 8 kHz G.711 in both laws, padded to whole 20 ms frames.
#[derive(Debug, Clone)]
pub struct EncodedPrompt {
    pub pcmu: Arc<[u8]>,
    pub pcma: Arc<[u8]>,
}

impl EncodedPrompt {
    pub fn from_pcm(pcm: &[i16]) -> EncodedPrompt {
        let mut padded = pcm.to_vec();
        let rem = padded.len() % SAMPLES_PER_20MS;
        if rem != 0 {
            padded.resize(padded.len() + SAMPLES_PER_20MS - rem, 0);
        }
        EncodedPrompt { pcmu: encode(&padded, Codec::Pcmu).into(), pcma: encode(&padded, Codec::Pcma).into() }
    }

    /// Decodes, resamples and encodes a file.
    pub fn load(path: &Path) -> Result<EncodedPrompt, AudioError> {
        let (samples, rate) = decode_file(path)?;
        Ok(EncodedPrompt::from_pcm(&to_i16(&resample(&samples, rate, RATE_HZ))))
    }

    pub fn bytes(&self, codec: Codec) -> &Arc<[u8]> {
        match codec {
            Codec::Pcmu => &self.pcmu,
            Codec::Pcma => &self.pcma,
        }
    }

    pub fn duration_ms(&self) -> u64 {
        self.pcmu.len() as u64 / 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f64, rate: u32, secs: f64) -> Vec<f32> {
        (0..(rate as f64 * secs) as usize).map(|i| (2.0 * std::f64::consts::PI * freq * i as f64 / rate as f64).sin() as f32 * 0.5).collect()
    }

    fn rms(x: &[f32]) -> f32 {
        (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt()
    }

    #[test]
    fn resampling_keeps_speech_band_and_removes_what_8khz_cannot_carry() {
        let tone = resample(&sine(1000.0, 22050, 0.5), 22050, 8000);
        assert_eq!(tone.len(), 4000);
        assert!((rms(&tone[200..3800]) - 0.3536).abs() < 0.02, "1 kHz passes: {}", rms(&tone));
        let alias = resample(&sine(6000.0, 22050, 0.5), 22050, 8000);
        assert!(rms(&alias[200..3800]) < 0.02, "6 kHz would alias; it is filtered: {}", rms(&alias));
    }

    #[test]
    fn a_wav_file_decodes_and_encodes_to_whole_frames() {
        let pcm: Vec<i16> = (0..12_345).map(|i| ((i % 100) as i16 - 50) * 300).collect();
        let dir = std::env::temp_dir().join(format!("ivr-media-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.wav");
        let mut wav = Vec::new();
        let len = (pcm.len() * 2) as u32;
        for part in [&b"RIFF"[..], &(36 + len).to_le_bytes(), b"WAVEfmt ", &16u32.to_le_bytes(), &1u16.to_le_bytes(), &1u16.to_le_bytes(),
            &8000u32.to_le_bytes(), &16000u32.to_le_bytes(), &2u16.to_le_bytes(), &16u16.to_le_bytes(), b"data", &len.to_le_bytes()] {
            wav.extend_from_slice(part);
        }
        for s in &pcm {
            wav.extend_from_slice(&s.to_le_bytes());
        }
        std::fs::write(&path, wav).unwrap();
        let p = EncodedPrompt::load(&path).unwrap();
        assert_eq!(p.pcmu.len(), 12_480, "padded to 78 frames of 160");
        assert_eq!(p.pcmu[0], g711::ulaw_encode(pcm[0]), "8 kHz input is not resampled");
        assert!(EncodedPrompt::load(&dir.join("missing.wav")).is_err());
        std::fs::write(dir.join("bad.wav"), b"RIFF....not a wav").unwrap();
        assert!(EncodedPrompt::load(&dir.join("bad.wav")).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
