//! In-band DTMF: tones in the audio itself (for trunks that do not send RFC 4733
//! events), found with Goertzel filters over 205-sample blocks at 8 kHz.

const ROWS: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
const COLS: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
const KEYS: [[char; 4]; 4] = [['1', '2', '3', 'A'], ['4', '5', '6', 'B'], ['7', '8', '9', 'C'], ['*', '0', '#', 'D']];
const BLOCK: usize = 205;

fn coeff(freq: f32) -> f32 {
    2.0 * (2.0 * std::f32::consts::PI * freq / 8000.0).cos()
}

fn power(block: &[f32], c: f32) -> f32 {
    let (mut s1, mut s2) = (0.0f32, 0.0f32);
    for &x in block {
        let s = x + c * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    s1 * s1 + s2 * s2 - c * s1 * s2
}

/// Finds DTMF keys in 8 kHz audio. A key is reported once, when its tone has
/// lasted two blocks (about 50 ms), and again only after a pause.
#[derive(Debug, Default)]
pub struct InbandDetector {
    block: Vec<f32>,
    last: Option<char>,
    run: u32,
    reported: bool,
}

impl InbandDetector {
    pub fn new() -> InbandDetector {
        InbandDetector { block: Vec::with_capacity(BLOCK), ..Default::default() }
    }

    /// Feeds audio; returns the keys that started in it.
    pub fn push(&mut self, pcm: &[i16]) -> Vec<char> {
        let mut keys = Vec::new();
        for &s in pcm {
            self.block.push(s as f32 / 32768.0);
            if self.block.len() == BLOCK {
                let k = self.classify();
                self.block.clear();
                if k.is_some() && k == self.last {
                    self.run += 1;
                } else {
                    self.run = 1;
                    self.reported = false;
                }
                self.last = k;
                if let (Some(key), 2.., false) = (k, self.run, self.reported) {
                    keys.push(key);
                    self.reported = true;
                }
            }
        }
        keys
    }

    fn classify(&self) -> Option<char> {
        let energy: f32 = self.block.iter().map(|x| x * x).sum::<f32>() * BLOCK as f32 / 2.0;
        if energy < 1e-3 {
            return None;
        }
        let rows: Vec<f32> = ROWS.iter().map(|&f| power(&self.block, coeff(f))).collect();
        let cols: Vec<f32> = COLS.iter().map(|&f| power(&self.block, coeff(f))).collect();
        let best = |v: &[f32]| {
            let (i, &m) = v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap();
            let second = v.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, x)| *x).fold(0.0, f32::max);
            (i, m, second)
        };
        let (r, rp, r2) = best(&rows);
        let (c, cp, c2) = best(&cols);
        // The two tones carry most of the energy, each clearly above its
        // neighbours, and neither more than 8 dB stronger than the other.
        let tones = rp + cp;
        let ok = tones > 0.6 * energy
            && rp > 6.0 * r2
            && cp > 6.0 * c2
            && rp < 6.3 * cp
            && cp < 6.3 * rp;
        ok.then_some(KEYS[r][c])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(key: char, ms: usize, level: f32) -> Vec<i16> {
        let (r, c) = (0..4).flat_map(|r| (0..4).map(move |c| (r, c))).find(|&(r, c)| KEYS[r][c] == key).unwrap();
        (0..ms * 8)
            .map(|i| {
                let t = i as f32 / 8000.0;
                let v = (2.0 * std::f32::consts::PI * ROWS[r] * t).sin() + (2.0 * std::f32::consts::PI * COLS[c] * t).sin();
                (v * level * 16000.0) as i16
            })
            .collect()
    }

    #[test]
    fn every_key_is_found_once() {
        for key in "0123456789*#ABCD".chars() {
            let mut d = InbandDetector::new();
            let mut audio = vec![0i16; 400];
            audio.extend(tone(key, 100, 0.5));
            audio.extend(vec![0i16; 800]);
            assert_eq!(d.push(&audio), vec![key], "{key}");
        }
    }

    #[test]
    fn repeated_keys_need_a_pause_and_short_blips_do_not_count() {
        let mut d = InbandDetector::new();
        let mut audio = tone('5', 100, 0.3);
        audio.extend(vec![0i16; 400]);
        audio.extend(tone('5', 100, 0.3));
        assert_eq!(d.push(&audio), vec!['5', '5']);
        let mut d = InbandDetector::new();
        assert!(d.push(&tone('7', 20, 0.5)).is_empty(), "20 ms is too short to be a key");
    }

    #[test]
    fn speech_like_audio_and_single_tones_are_not_keys() {
        let mut d = InbandDetector::new();
        let single: Vec<i16> = (0..8000).map(|i| ((i as f32 * 2.0 * std::f32::consts::PI * 852.0 / 8000.0).sin() * 12000.0) as i16).collect();
        assert!(d.push(&single).is_empty());
        let mut x: u32 = 1;
        let noise: Vec<i16> = (0..16000).map(|_| { x ^= x << 13; x ^= x >> 17; x ^= x << 5; (x as i16) / 4 }).collect();
        assert!(d.push(&noise).is_empty());
    }
}
