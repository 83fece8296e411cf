//! Replays every committed corpus file (`fuzz/corpus/<target>/*`) through
//! the same harness functions the fuzz targets call, on stable Rust. A
//! crashing input added to the corpus stays covered by `cargo test`.

use std::path::{Path, PathBuf};

fn corpus_files(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../corpus")
        .join(target);
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect(),
        Err(e) => panic!("corpus directory {}: {e}", dir.display()),
    };
    files.sort();
    files
}

fn replay(target: &str, f: fn(&[u8])) {
    let files = corpus_files(target);
    assert!(!files.is_empty(), "no corpus for {target}");
    for path in &files {
        let data = std::fs::read(path).expect("read corpus file");
        // Name the input that fails, then let the panic propagate.
        let r = std::panic::catch_unwind(|| f(&data));
        if let Err(p) = r {
            eprintln!("{target}: corpus input {} fails", path.display());
            std::panic::resume_unwind(p);
        }
    }
    eprintln!("{target}: replayed {} inputs", files.len());
}

#[test]
fn descriptor_lifecycle_corpus() {
    replay(
        "descriptor_lifecycle",
        irqcore_fuzz_harness::descriptor_lifecycle,
    );
}

#[test]
fn flow_handlers_corpus() {
    replay("flow_handlers", irqcore_fuzz_harness::flow_handlers);
}

#[test]
fn domain_mappings_corpus() {
    replay("domain_mappings", irqcore_fuzz_harness::domain_mappings);
}

#[test]
fn xen_upcall_corpus() {
    replay("xen_upcall", irqcore_fuzz_harness::xen_upcall);
}

/// Replays one input given as `IRQCORE_FUZZ_INPUT=<target>:<path>` (for
/// example a fresh crash from `fuzz/artifacts/`); does nothing otherwise.
#[test]
fn replay_one_input_from_env() {
    let Ok(spec) = std::env::var("IRQCORE_FUZZ_INPUT") else {
        return;
    };
    let (target, path) = spec
        .split_once(':')
        .expect("IRQCORE_FUZZ_INPUT=<target>:<path>");
    let f: fn(&[u8]) = match target {
        "descriptor_lifecycle" => irqcore_fuzz_harness::descriptor_lifecycle,
        "flow_handlers" => irqcore_fuzz_harness::flow_handlers,
        "domain_mappings" => irqcore_fuzz_harness::domain_mappings,
        "xen_upcall" => irqcore_fuzz_harness::xen_upcall,
        t => panic!("unknown target {t}"),
    };
    f(&std::fs::read(path).expect("read input"));
}
