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
//! per-CPU quiescent states; it needs no timer and, in this form, no help
//! from the platform (the light read side below trades one locked
//! instruction per section for the platform's barrier on the writer side).
//!
//! A CPU cannot wait for its own section: a writer that is itself inside a
//! section (for example freeing from a handler) waits for the other CPUs and
//! parks the object on a retire list that a later writer, outside any
//! section, reclaims after a full grace period.
//!
//! # The light read side (an asymmetric barrier)
//!
//! The `SeqCst` read-modify-write on entry is the one locked instruction a
//! section costs, and the dispatcher pays it on every interrupt while
//! writers (freeing descriptors, replacing an action list or a view) are
//! rare. A platform that can make every CPU execute a full barrier
//! ([`Platform::synchronize_cpus`], Linux's `membarrier` /
//! expedited-RCU idea: an IPI to each CPU, or the host's `membarrier`
//! syscall in the simulator) lets the dispatcher enter with a plain store
//! instead ([`CpuEpoch::enter_irq_light`]); every writer then runs that
//! barrier after unpublishing and before it snapshots the slots
//! ([`synchronize_for`]). The argument: the barrier puts a full fence at
//! some point `F` of each reader CPU's program order, ordered after the
//! writer's unpublishing store and before the writer's snapshot. A reader
//! whose entering store precedes `F` is seen odd by the snapshot (and
//! waited for); a reader whose entering store follows `F` also loads the
//! pointer after `F`, hence after the unpublishing store, and cannot find
//! the object. A compiler fence after the entering store keeps the
//! compiler from moving the pointer loads above it (the CPU may, which is
//! what the barrier covers). Without the platform's barrier
//! ([`Platform::SYNCHRONIZE_CPUS`] false, the default) the dispatcher keeps
//! the read-modify-write entry above.
//!
//! The loom model (`loom-models/tests/loom_store.rs`) cannot make another
//! thread execute a fence; it models the barrier as the IPI handshake a
//! kernel implements: the writer raises a request per reader thread and
//! waits for its acknowledgement, and the reader serves the request
//! (a `SeqCst` fence, then a release acknowledgement) at any point between
//! two of its operations, as an interrupt arriving there would.
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

use crate::platform::Platform;
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

/// What a depth that cannot be (more sections left than entered, or a
/// wrapped count) means in practice: a platform bug.
const SHARED_CPU: &str = "irqcore: a CPU's read-side section depth is corrupt: two contexts \
     that run at once claim the same CPU (Platform::current_cpu must be unique to the \
     executing CPU and stable during a call)";

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
        self.begin(1, false);
    }

    /// Enters a section of `unit` (1 or [`IRQ_UNIT`]): the counter becomes
    /// odd with a `SeqCst` read-modify-write, or with a plain store when
    /// `light` (sound only if every writer runs the platform's barrier, see
    /// the module docs).
    #[inline(always)]
    fn begin(&self, unit: u32, light: bool) {
        let d = self.depth.load(Ordering::Relaxed);
        debug_assert!(d.checked_add(unit).is_some(), "{}", SHARED_CPU);
        self.depth.store(d.wrapping_add(unit), Ordering::Relaxed);
        if d == 0 {
            if light {
                // Only this CPU writes `seq`.
                let s = self.seq.load(Ordering::Relaxed);
                self.seq.store(s.wrapping_add(1), Ordering::Relaxed);
                // The pointer loads of the section stay after the store in
                // program order; the writer's barrier orders the rest.
                core::sync::atomic::compiler_fence(Ordering::SeqCst);
            } else {
                self.seq.fetch_add(1, Ordering::SeqCst);
                loom_fence();
            }
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
        self.begin(IRQ_UNIT, false);
    }

    /// [`CpuEpoch::enter_irq`] with a plain store instead of the locked
    /// read-modify-write: only for a platform whose
    /// [`Platform::SYNCHRONIZE_CPUS`] is true, whose writers all wait with
    /// [`synchronize_for`] (see the module docs).
    #[inline]
    pub fn enter_irq_light(&self) {
        self.begin(IRQ_UNIT, true);
    }

    /// [`CpuEpoch::enter_irq_light`] if `P` provides the asymmetric barrier,
    /// [`CpuEpoch::enter_irq`] otherwise (decided at compile time).
    #[inline]
    pub fn enter_irq_for<P: Platform>(&self) {
        self.begin(IRQ_UNIT, P::SYNCHRONIZE_CPUS);
    }

    /// Leaves a section entered with [`CpuEpoch::enter_irq`].
    #[inline]
    pub fn exit_irq(&self) {
        self.leave(IRQ_UNIT);
    }

    /// [`CpuEpoch::exit_irq`] for a section this CPU is known to have
    /// entered with [`CpuEpoch::enter_irq_for`] (the dispatcher's guard,
    /// `IrqSection`, which pairs the two): the depth is at least
    /// [`IRQ_UNIT`], so it needs no saturating subtraction.
    #[inline]
    pub(crate) fn exit_irq_entered(&self) {
        self.leave_entered(IRQ_UNIT, true);
    }

    #[inline]
    fn leave(&self, unit: u32) {
        self.leave_entered(unit, false);
    }

    /// Leaves a section of `unit`; `entered`: the caller knows the depth
    /// is at least `unit` (otherwise it saturates at 0, so that an
    /// unbalanced exit cannot wrap the depth around).
    #[inline(always)]
    fn leave_entered(&self, unit: u32, entered: bool) {
        let d = self.depth.load(Ordering::Relaxed);
        if d == unit {
            // Only this CPU writes `seq`: a release store is enough to end
            // the section (no locked instruction on the dispatch path).
            let s = self.seq.load(Ordering::Relaxed);
            self.seq.store(s.wrapping_add(1), Ordering::Release);
        }
        let rest = if entered {
            debug_assert!(d >= unit, "{}", SHARED_CPU);
            d.wrapping_sub(unit)
        } else {
            d.saturating_sub(unit)
        };
        self.depth.store(rest, Ordering::Relaxed);
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

/// Waits for a grace period over `slots` for a core on `platform`: runs the
/// platform's barrier first when its dispatcher enters sections with the
/// light store ([`Platform::SYNCHRONIZE_CPUS`]), then waits as
/// [`synchronize`] does. Every writer of a core goes through here.
pub fn synchronize_for<P: Platform>(platform: &P, slots: &[CpuEpoch], skip: Option<usize>) {
    if P::SYNCHRONIZE_CPUS {
        platform.synchronize_cpus();
    }
    synchronize(slots, skip, &|| platform.cpu_relax());
}

/// Waits for a grace period over `slots`, skipping the caller's own slot
/// (`skip`), which the caller handles (see the module docs). Enough on its
/// own only when every section was entered with the read-modify-write.
pub fn synchronize(slots: &[CpuEpoch], skip: Option<usize>, relax: &dyn Fn()) {
    loom_fence();
    for (i, s) in slots.iter().enumerate() {
        if Some(i) != skip {
            s.wait_quiescent(relax);
        }
    }
}
