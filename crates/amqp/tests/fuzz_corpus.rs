//! Replays the fuzzer's corpus (`fuzz/corpus/frame_parser`, inputs libFuzzer found
//! interesting, including past crashes) through the fuzz target's check, so every test run
//! covers them without the fuzzing toolchain.

mod support {
    pub mod frame_check;
}

use std::path::PathBuf;

#[test]
fn corpus_replays_without_panics() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/frame_parser");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("fuzz corpus present") {
        let path = entry.unwrap().path();
        support::frame_check::check(&std::fs::read(&path).unwrap());
        n += 1;
    }
    assert!(n > 100, "expected the committed corpus, found {n} inputs");
}
