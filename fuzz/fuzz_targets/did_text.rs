#![no_main]
// See testing/icn-fuzz-targets: the body is shared with the corpus replay in CI.
libfuzzer_sys::fuzz_target!(|data: &[u8]| icn_fuzz_targets::did_text(data));
