//! Compiles the irqcore modules this crate includes (see `src/lib.rs`) with
//! their model-checking code: `cfg(irqcore_loom)` selects loom's atomics in
//! `irqcore/src/sync.rs`, `grace.rs` and `stop_machine.rs`. The cfg is set
//! for this crate only, so irqcore itself is never built with it (and a
//! kernel that sets `--cfg loom` for its own models does not switch
//! irqcore to loom atomics).
fn main() {
    println!("cargo::rustc-check-cfg=cfg(irqcore_loom)");
    println!("cargo::rustc-cfg=irqcore_loom");
}
