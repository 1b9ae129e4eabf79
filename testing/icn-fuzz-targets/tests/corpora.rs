//! Every input kept in `fuzz/corpus/<target>/` goes through its target again: what a
//! fuzzer once found (and the inputs that reach the decoders' corners) stays handled.
//! A target that panics fails this test with the file that made it.

use std::path::Path;

#[test]
fn every_kept_input_is_handled_without_a_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    for (name, target) in icn_fuzz_targets::TARGETS {
        let dir = root.join(name);
        let mut inputs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("the corpus {} is kept in the repository: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        inputs.sort();
        assert!(inputs.len() >= 10, "{name}: a corpus of {} inputs is no corpus", inputs.len());
        for input in inputs {
            let data = std::fs::read(&input).unwrap();
            let result = std::panic::catch_unwind(|| target(&data));
            assert!(result.is_ok(), "{name} panicked on {}", input.display());
        }
    }
}
