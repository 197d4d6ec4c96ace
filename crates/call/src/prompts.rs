//! A flow's prompt audio, decoded and G.711-encoded once and shared by every
//! call (no per-call transcoding), and how values are spoken from it.

use std::sync::Arc;

use ivr_bytecode::{Program, SayKind, Value};
use ivr_media::audio::EncodedPrompt;
use tracing::warn;

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
    /// Decodes every prompt of `program` through `read` (a path relative to
    /// the flows' directory → the decoded, encoded audio): the host does the
    /// file reading. Missing or broken recordings play 200 ms of silence.
    pub fn build(program: &Program, read: &dyn Fn(&str) -> Result<EncodedPrompt, String>) -> PromptAudio {
        let silence = Arc::new(EncodedPrompt::from_pcm(&[0; 1600]));
        let missing = std::cell::RefCell::new(Vec::new());
        let load = |rel: &str| match read(rel) {
            Ok(p) => Arc::new(p),
            Err(e) => {
                missing.borrow_mut().push(e);
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
    pub fn prompt_bytes(&self, index: usize, lang: usize, codec: ivr_media::sdp::Codec) -> Arc<[u8]> {
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

