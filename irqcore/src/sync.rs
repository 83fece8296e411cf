//! Atomics shim: `core`'s atomics, or `loom`'s model-checked ones when this
//! file is compiled with `cfg(irqcore_loom)` by the loom models
//! (`loom-models/`, which include irqcore's protocol modules by path), so the
//! lock-free protocols are model-checked unchanged. irqcore itself never sets
//! that cfg and has no loom dependency.

#[cfg(irqcore_loom)]
pub(crate) use loom::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};

#[cfg(not(irqcore_loom))]
pub(crate) use core::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
