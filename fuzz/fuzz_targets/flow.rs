#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = ivr_syntax::parse(ivr_syntax::FileId(0), &String::from_utf8_lossy(data));
});
