//! The bytecode loader never panics: arbitrary bytes, and real programs with
//! bytes flipped, truncated or spliced, are either refused with an error or load
//! as a program that passes the verifier (and then runs without panicking).

use std::sync::Arc;

use proptest::prelude::*;

fn shipped_program() -> Vec<u8> {
    struct Fs;
    impl ivr_compiler::World for Fs {
        fn read(&self, path: &str) -> Result<String, String> {
            std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("flows").join(path))
                .map_err(|e| e.to_string())
        }
    }
    let c = ivr_compiler::compile(&Fs, "securities_hotline.ivr");
    ivr_bytecode::encode(c.program.as_ref().expect("shipped flow compiles"), false)
}

/// A loaded program must also be safe to run: drive a call with some keys.
fn exercise(bytes: &[u8]) {
    if let Ok(p) = ivr_bytecode::decode(bytes) {
        let p = Arc::new(p);
        let _ = ivr_bytecode::disassemble(&p);
        for e in p.entries.clone() {
            let info = ivr_vm::CallInfo { dialed: e.number, caller: "1".into(), language: None, wall_clock_ms: 0 };
            if let Ok(mut s) = ivr_vm::Session::start(p.clone(), info, 0) {
                for (i, k) in "1600000#2*9#0".chars().enumerate() {
                    s.handle_event(i as u64 * 100, ivr_vm::Event::Digit(k));
                    s.handle_timeout(i as u64 * 10_000);
                    while s.poll_action().is_some() {}
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        exercise(&bytes);
        let mut with_magic = ivr_bytecode::MAGIC.to_vec();
        with_magic.extend_from_slice(&1u16.to_le_bytes());
        with_magic.extend_from_slice(&bytes);
        exercise(&with_magic);
    }

    #[test]
    fn mutated_real_programs(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8), cut in any::<prop::sample::Index>()) {
        let original = shipped_program();
        let mut bytes = original.clone();
        for (at, b) in &flips {
            let i = at.index(bytes.len());
            bytes[i] = *b;
        }
        exercise(&bytes);
        exercise(&original[..cut.index(original.len())]);
    }
}

#[test]
fn the_real_program_loads() {
    assert!(ivr_bytecode::decode(&shipped_program()).is_ok());
}
