#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(p) = ivr_bytecode::decode(data) {
        let _ = ivr_bytecode::disassemble(&p);
    }
});
