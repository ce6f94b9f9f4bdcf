//! Replays the committed cargo-fuzz corpus (`fuzz/corpus/ip_packets/`) through the
//! shared harness on stable Rust, so that every seed and every input the fuzzer once
//! found interesting stays a regression test without nightly or libFuzzer.

use std::fs;
use std::path::Path;

#[test]
fn replays_ip_packets_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/ip_packets");
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus files in {}", dir.display());
    for path in &files {
        let data = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let outcome = std::panic::catch_unwind(|| tapnet_wire::fuzzing::run(&data));
        assert!(outcome.is_ok(), "corpus input {} failed", path.display());
    }
}
