//! Grace periods for lock-free descriptor lookup.
//!
//! # The scheme
//!
//! Every CPU owns one [`CpuEpoch`] slot: a sequence counter that is odd while
//! the CPU is inside a *read-side section* (dispatching an interrupt or
//! running a core API call that dereferences a looked-up descriptor) and even
//! otherwise, plus a nesting depth so that an interrupt arriving during a
//! process-context section nests correctly (interrupts on one CPU strictly
//! nest, so the depth and the counter are only ever touched by their CPU).
//!
//! A writer that wants to reclaim an object first *unpublishes* it (stores
//! null where readers load the pointer), then waits for a grace period:
//! it snapshots every slot and, for each CPU whose counter was odd, spins
//! until the counter changes.
//!
//! # Why it is sound
//!
//! Entering a section (a `SeqCst` read-modify-write of the counter), the
//! unpublishing store and the pointer loads on both sides are `SeqCst`, so
//! they lie in one total order. Leaving a section is a `Release` store of
//! the counter (only its CPU writes it); a writer that reads the new value
//! (a `SeqCst`, hence acquiring, load) therefore sees every access the
//! section made as happened-before. A reader that obtained the
//! object loaded the pointer *before* the unpublishing store in that order
//! (later loads see null). Its section began (counter made odd) before that
//! load. If the section had already ended before the writer's snapshot, the
//! reader no longer holds the pointer. Otherwise the snapshot reads the odd
//! value of this very section (the counter cannot have been even-then-odd
//! again without ending the section), and the writer waits until the counter
//! moves on, i.e. until that section has ended. Either way, when the wait
//! returns no reader can still hold the pointer, and a reader starting later
//! cannot find it. This is quiescent-state based reclamation with explicit
//! per-CPU quiescent states; it needs no timer and no help from the platform.
//!
//! A CPU cannot wait for its own section: a writer that is itself inside a
//! section (for example freeing from a handler) waits for the other CPUs and
//! parks the object on a retire list that a later writer, outside any
//! section, reclaims after a full grace period.
//!
//! # No unique owner before the grace period ends
//!
//! Waiting before the *free* is not enough: until the grace period has
//! ended, readers may hold shared references to the object, so the writer
//! must not even *claim* unique access to it, which is what a `Box` or a
//! `&mut` does (turning the unpublished pointer back into a `Box` is
//! undefined behaviour under Rust's aliasing rules even if the memory is
//! freed only later; Miri reports it). Hence:
//!
//! - descriptors ([`crate::store`]) stay raw `NonNull` pointers on their
//!   unpublished and retired lists, and become a `Box` again only to be
//!   freed, after the grace period;
//! - action lists (`ActionList`, an `Arc<[Arc<Action>]>`) are shared
//!   ownership: moving or parking the `Arc` claims nothing about the list,
//!   and its contents are accessed uniquely only when the last reference is
//!   dropped, which `IrqCore::retire` does after the grace period.
//!
//! The domain registry and the Xen event-channel layer keep no
//! grace-period-protected pointers of their own (their records sit behind
//! locks); they free descriptors through the store.

use crate::sync::{AtomicU32, AtomicU64, Ordering};

// Public so that its loom model (loom-models/tests/loom_store.rs) can drive it and so
// layers built on irqcore (domains' reverse maps) can reuse it.

/// Loom models `SeqCst` accesses as acquire/release, which cannot express
/// the store-load ordering the argument above relies on; under loom the
/// equivalent `SeqCst` fences make it explicit. Real builds rely on the
/// single total order of the `SeqCst` accesses themselves (C++20 \[atomics.order\]),
/// which costs no extra barrier on the dispatch path.
#[inline(always)]
fn loom_fence() {
    #[cfg(irqcore_loom)]
    loom::sync::atomic::fence(Ordering::SeqCst);
}

/// Depth units of one interrupt-context section: process-context sections
/// count 1 each, so the depth says both whether the CPU is in a section and
/// whether it is inside the dispatcher, with the same single load.
const IRQ_UNIT: u32 = 1 << 16;

/// One CPU's read-side state, padded to a cache line so that CPUs never
/// share a line on the dispatch path.
#[repr(align(64))]
pub struct CpuEpoch {
    seq: AtomicU64,
    depth: AtomicU32,
}

impl CpuEpoch {
    /// A fresh slot (outside any section).
    #[cfg(not(irqcore_loom))]
    pub const fn new() -> Self {
        Self {
            seq: AtomicU64::new(0),
            depth: AtomicU32::new(0),
        }
    }

    /// A fresh slot (outside any section).
    #[cfg(irqcore_loom)]
    pub fn new() -> Self {
        Self {
            seq: AtomicU64::new(0),
            depth: AtomicU32::new(0),
        }
    }

    /// Enters a read-side section on the owning CPU.
    #[inline]
    pub fn enter(&self) {
        let d = self.depth.load(Ordering::Relaxed);
        self.depth.store(d + 1, Ordering::Relaxed);
        if d == 0 {
            self.seq.fetch_add(1, Ordering::SeqCst);
            loom_fence();
        }
    }

    /// Leaves a read-side section on the owning CPU.
    #[inline]
    pub fn exit(&self) {
        self.leave(1);
    }

    /// Enters a read-side section that is also *interrupt context*: the
    /// dispatcher's. Counted apart from process-context sections so that an
    /// API call can tell it was made from a handler (see
    /// [`CpuEpoch::in_irq`]).
    #[inline]
    pub fn enter_irq(&self) {
        let d = self.depth.load(Ordering::Relaxed);
        self.depth.store(d + IRQ_UNIT, Ordering::Relaxed);
        if d == 0 {
            self.seq.fetch_add(1, Ordering::SeqCst);
            loom_fence();
        }
    }

    /// Leaves a section entered with [`CpuEpoch::enter_irq`].
    #[inline]
    pub fn exit_irq(&self) {
        self.leave(IRQ_UNIT);
    }

    #[inline]
    fn leave(&self, unit: u32) {
        let d = self.depth.load(Ordering::Relaxed);
        if d == unit {
            // Only this CPU writes `seq`: a release store is enough to end
            // the section (no locked instruction on the dispatch path).
            let s = self.seq.load(Ordering::Relaxed);
            self.seq.store(s.wrapping_add(1), Ordering::Release);
        }
        self.depth.store(d.saturating_sub(unit), Ordering::Relaxed);
    }

    /// Whether the owning CPU is inside a section (only meaningful when
    /// called on the owning CPU).
    #[inline]
    pub fn in_section(&self) -> bool {
        self.depth.load(Ordering::Relaxed) != 0
    }

    /// Whether the owning CPU is inside two or more nested dispatcher
    /// sections (a handler that called the dispatcher again).
    #[inline]
    pub fn in_nested_irq(&self) -> bool {
        self.depth.load(Ordering::Relaxed) >= 2 * IRQ_UNIT
    }

    /// Whether the owning CPU is running the dispatcher (an interrupt
    /// handler, a flow, a chip callback of a flow), however deeply nested
    /// (only meaningful when called on the owning CPU).
    #[inline]
    pub fn in_irq(&self) -> bool {
        self.depth.load(Ordering::Relaxed) >= IRQ_UNIT
    }

    /// Waits until the section that was running at the time of the call (if
    /// any) has ended. `relax` is called while spinning.
    pub fn wait_quiescent(&self, relax: &dyn Fn()) {
        let s = self.seq.load(Ordering::SeqCst);
        if s % 2 == 1 {
            while self.seq.load(Ordering::SeqCst) == s {
                relax();
            }
        }
    }
}

#[cfg(not(irqcore_loom))]
impl Default for CpuEpoch {
    fn default() -> Self {
        Self::new()
    }
}

/// Waits for a grace period over `slots`, skipping the caller's own slot
/// (`skip`), which the caller handles (see the module docs).
pub fn synchronize(slots: &[CpuEpoch], skip: Option<usize>, relax: &dyn Fn()) {
    loom_fence();
    for (i, s) in slots.iter().enumerate() {
        if Some(i) != skip {
            s.wait_quiescent(relax);
        }
    }
}
