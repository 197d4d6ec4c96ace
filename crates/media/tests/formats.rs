//! Prompt recordings in every format the catalogue may name decode to 8 kHz
//! G.711: a 440 Hz tone of 0.5 s as FLAC (22.05 kHz stereo), Ogg/Vorbis
//! (16 kHz) and MP3 (32 kbit/s, which lame stores at 22.05 kHz), made with sox and lame.

use std::path::Path;

use ivr_media::audio::{decode_file, resample, EncodedPrompt, RATE_HZ};

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// The dominant frequency of 8 kHz audio, by counting zero crossings.
fn frequency(pcm: &[f32]) -> f32 {
    let crossings = pcm.windows(2).filter(|w| (w[0] < 0.0) != (w[1] < 0.0)).count();
    crossings as f32 / 2.0 / (pcm.len() as f32 / RATE_HZ as f32)
}

#[test]
fn flac_ogg_and_mp3_decode_to_the_same_tone() {
    for (name, rate) in [("tone.flac", 22_050), ("tone.ogg", 16_000), ("tone.mp3", 22_050)] {
        let (samples, got_rate) = decode_file(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got_rate, rate, "{name}");
        let at8k = resample(&samples, got_rate, RATE_HZ);
        let secs = at8k.len() as f32 / RATE_HZ as f32;
        assert!((0.45..0.6).contains(&secs), "{name}: {secs} s");
        let f = frequency(&at8k[400..at8k.len() - 400]);
        assert!((420.0..460.0).contains(&f), "{name}: {f} Hz");
        let p = EncodedPrompt::load(&fixture(name)).unwrap();
        assert_eq!(p.pcmu.len() % 160, 0);
    }
}
