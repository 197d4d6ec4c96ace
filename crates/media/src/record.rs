//! Recording a caller: [`Recorder`] decides when a message ends — `#`,
//! trailing silence, or the maximum length — from the audio and keys a host
//! feeds it (sans-IO: the host's clock is the audio itself). Storing it is
//! the services' job (`ivr_services::Store::save_message`).

/// Why a recording ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordEnd {
    /// The caller pressed `#`.
    Terminator,
    /// The caller stopped talking.
    Silence,
    /// The maximum length was reached.
    MaxLength,
}

/// Collects a caller's audio until `#`, silence or the maximum length.
#[derive(Debug)]
pub struct Recorder {
    rate_hz: u32,
    max_samples: usize,
    silence_samples: usize,
    threshold: i32,
    samples: Vec<i16>,
    silent_run: usize,
    heard_voice: bool,
}

impl Recorder {
    /// `silence_ms` of audio below `threshold` (absolute sample value) after the
    /// caller has spoken ends the recording; before they speak, only `max_ms` does.
    pub fn new(rate_hz: u32, max_ms: u64, silence_ms: u64, threshold: i16) -> Recorder {
        let per_ms = rate_hz as u64 / 1000;
        Recorder {
            rate_hz,
            max_samples: (max_ms * per_ms) as usize,
            silence_samples: (silence_ms * per_ms) as usize,
            threshold: threshold as i32,
            samples: Vec::new(),
            silent_run: 0,
            heard_voice: false,
        }
    }

    /// Adds audio; returns how the recording ended, if it did.
    pub fn push_audio(&mut self, pcm: &[i16]) -> Option<RecordEnd> {
        for &s in pcm {
            if self.samples.len() >= self.max_samples {
                return Some(RecordEnd::MaxLength);
            }
            self.samples.push(s);
            if (s as i32).abs() >= self.threshold {
                self.heard_voice = true;
                self.silent_run = 0;
            } else {
                self.silent_run += 1;
                if self.heard_voice && self.silent_run >= self.silence_samples {
                    return Some(RecordEnd::Silence);
                }
            }
        }
        (self.samples.len() >= self.max_samples).then_some(RecordEnd::MaxLength)
    }

    /// A key: `#` ends the recording.
    pub fn digit(&mut self, key: char) -> Option<RecordEnd> {
        (key == '#').then_some(RecordEnd::Terminator)
    }

    /// The recorded audio, without the trailing silence that ended it.
    pub fn finish(mut self, end: RecordEnd) -> (Vec<i16>, u32) {
        if end == RecordEnd::Silence {
            let keep = self.samples.len().saturating_sub(self.silent_run);
            self.samples.truncate(keep);
        }
        (self.samples, self.rate_hz)
    }
}
