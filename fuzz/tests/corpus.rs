//! Replays the committed corpus (`corpus/TARGET/`) through each target with plain
//! `cargo test`: what the fuzzer once found stays fixed, without AFL installed.

use std::path::Path;

#[test]
fn every_corpus_input_passes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for &(name, target) in hookcast_fuzz::TARGETS {
        let dir = root.join(name);
        let mut inputs = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("a corpus entry").path();
            let data = std::fs::read(&path).expect("a corpus file");
            eprintln!("{}", path.display());
            target(&data);
            inputs += 1;
        }
        assert!(inputs > 0, "{} is empty", dir.display());
    }
}
