//! Fuzz harnesses for irqcore and its backends.
//!
//! Each harness decodes a sequence of operations from the fuzzer's bytes
//! (with [`arbitrary`]), drives the crates' **public** API with them, and
//! after every step compares what the library did with a small reference
//! model: return values and typed errors, handler invocations, counters,
//! descriptor and mapping counts, reference counts. Any disagreement, and
//! any panic in library code, is a crash.
//!
//! The same functions run under cargo-fuzz (`fuzz/fuzz_targets/*.rs`, thin
//! wrappers) and on stable Rust in `tests/replay_corpus.rs`, which replays
//! every committed corpus file, so `cargo test` covers the corpus and every
//! crash that was added to it.

pub mod domains;
pub mod flows;
pub mod lifecycle;
pub mod model_chip;
pub mod platform;
pub mod xen;

pub use domains::domain_mappings;
pub use flows::flow_handlers;
pub use lifecycle::descriptor_lifecycle;
pub use xen::xen_upcall;

/// Whether `IRQCORE_FUZZ_TRACE` is set: the harnesses then print every
/// operation (for reading a crash replayed with the corpus test).
pub fn trace_enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("IRQCORE_FUZZ_TRACE").is_some())
}

/// Asserts a harness invariant with a message that says which step failed.
#[macro_export]
macro_rules! check {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            panic!("invariant violated: {}", format_args!($($arg)+));
        }
    };
}
