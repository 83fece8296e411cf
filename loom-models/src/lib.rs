//! irqcore's lock-free and multi-CPU protocols, compiled from irqcore's own
//! source files with loom's atomics, for the loom models in `tests/`.
//!
//! irqcore's manifest has no loom dependency (a kernel depending on irqcore
//! must not get loom and its ~40 dependencies in its `Cargo.lock`). Instead,
//! this crate includes the protocol modules by path, unchanged, so the
//! models check exactly the code irqcore ships:
//!
//! | module | what the models check |
//! |---|---|
//! | `grace` | the read-side sections and grace periods behind lock-free lookup (`tests/loom_store.rs`) |
//! | `stop_machine` | the two-phase stop-machine rendezvous (`tests/loom_stop_machine.rs`) |
//! | `cpumask`, `ids`, `platform`, `error` | what `stop_machine` needs, as in irqcore |
//! | `sync` | irqcore's atomics shim: loom's atomics under `cfg(irqcore_loom)`, which `build.rs` sets |
//!
//! Everything is behind `cfg(loom)`: a normal build (`cargo test
//! --workspace`, clippy, rustdoc) sees an empty crate and does not build
//! loom. Run the models with `scripts/loom-all`, or one of them with
//! `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p
//! irqcore-loom-models --release --test loom_store`.
//!
//! A module added here must be one of irqcore's files; if an included file
//! starts using another `crate::` module, include that one too (the loom
//! build then fails to compile, loudly, until it is).
#![cfg(loom)]
// The included files are irqcore's: items only irqcore uses are unused
// here, and `feature = "sim"` is one of irqcore's features.
#![allow(dead_code, unused_imports, unexpected_cfgs)]

extern crate alloc;

#[path = "../../irqcore/src/cpumask.rs"]
pub mod cpumask;
#[path = "../../irqcore/src/error.rs"]
pub mod error;
#[path = "../../irqcore/src/grace.rs"]
pub mod grace;
#[path = "../../irqcore/src/ids.rs"]
pub mod ids;
#[path = "../../irqcore/src/platform.rs"]
pub mod platform;
#[path = "../../irqcore/src/stop_machine.rs"]
pub mod stop_machine;
#[path = "../../irqcore/src/sync.rs"]
pub(crate) mod sync;

pub use cpumask::{CpuMask, MAX_CPUS};
pub use ids::{CpuId, HwIrq, IrqNumber};
pub use platform::{ActionId, IrqFlags, Platform, ThreadWake};
