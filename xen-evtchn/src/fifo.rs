//! The FIFO ABI: one 32-bit event word per port in an event array the
//! guest grows page by page, and per vCPU a control block with 16 priority
//! queues that Xen links pending events onto (Xen's
//! `docs/misc/xen-fifo-events` design; layouts in [`crate::abi::fifo`]).
//!
//! Event word: P (pending) 31, M (masked) 30, L (linked: on a queue) 29,
//! B (busy: Xen is writing this word's LINK) 28, LINK (next port on the
//! queue, 0 = end) 0..16.
//!
//! Xen raises a port by setting P; if M and L are clear it sets L and
//! appends the port to the queue of (notify vCPU, priority): it writes the
//! port into the tail word's LINK, but only while that word is still L
//! (compare-and-swap); if the tail was unlinked meanwhile (or the queue was
//! empty) it writes the queue's `head` instead and sets the queue's `ready`
//! bit, notifying the vCPU when that bit was clear.
//!
//! Consuming (one event at a time, highest priority first, so a raise on a
//! higher priority pre-empts a long low-priority queue): take the queue's
//! cached head, or `head[q]` from the control block when it is 0; clear L
//! and LINK of that word in one atomic step, which yields the next port
//! (0 = this was the tail: the queue's local ready bit is cleared, and a
//! later append finds the tail unlinked and restarts the queue at `head`
//! with a fresh ready bit); handle the port only if P and not M; merge in
//! `ready` again. The queue order is the fairness: a port raised again
//! while its queue is long goes to the back.
//!
//! Unmask (after XSA-332): clear M with a compare-and-swap that only
//! succeeds while B and P are clear. If P is set, M stays set and
//! `EVTCHNOP_unmask` makes Xen clear it and link the event, so a pending
//! event is never unmasked without being queued, nor twice.
//!
//! Pages: ports are usable only once their event-array page is added
//! ([`PortLayer::setup_port`], `EVTCHNOP_expand_array`); a new page is
//! filled with masked words first. Xen remembers raises of a port whose
//! page is missing and replays them when the page arrives (the port is
//! masked then, so the replay waits for the guest's unmask).

use crate::abi::VcpuEvents;
use crate::abi::fifo::{
    BUSY, ControlBlock, ControlPage, EventPage, LINK_MASK, LINKED, MASKED, MAX_PAGES, MAX_QUEUES,
    NR_CHANNELS, PENDING, WORDS_PER_PAGE,
};
use crate::error::{EvtchnError, XenError};
use crate::ids::{Port, VcpuId};
use crate::ops::EventChannelOps;
use crate::port_layer::{EvtchnAbi, PortLayer};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use spin::{Mutex, Once};

/// Most events one scan handles before it hands the rest back (ready bits
/// restored, upcall flag set) so the upcall returns to its caller between
/// passes even under a flood.
pub const SCAN_BUDGET: u32 = 1024;

/// The `ready` bits of the queues FIFO has. Xen sets no others; a stray
/// one (a corrupted control block) is dropped by the scan instead of
/// naming a queue past the vCPU's 16, which must not panic the upcall.
const QUEUE_BITS: u32 = (1 << MAX_QUEUES) - 1;

/// How often [`PortLayer::unmask`] re-reads a word Xen holds BUSY before it
/// leaves the unmask to Xen (`EVTCHNOP_unmask` is always correct, only
/// slower).
const BUSY_SPINS: u32 = 1 << 16;

/// Guest-private: which vCPU each port of one event-array page is bound to
/// (vCPU + 1; 0 = none), for [`PortLayer::is_deliverable`].
#[repr(C)]
struct OwnerPage([AtomicU32; WORDS_PER_PAGE as usize]);

/// The FIFO port layer.
pub struct Fifo {
    vcpu_info: Vec<&'static VcpuEvents>,
    controls: Vec<&'static ControlPage>,
    /// Whether `EVTCHNOP_init_control` succeeded for the vCPU.
    registered: Vec<AtomicBool>,
    /// Per vCPU and queue: the next port to take (0: read `head[q]`). Only
    /// the vCPU itself touches it (or the dead step when it no longer runs).
    heads: Vec<[AtomicU32; MAX_QUEUES]>,
    /// The event array, page `i` covering ports `1024 i ..`; a page is
    /// published (lock-free for readers) only after Xen accepted it.
    pages: [Once<&'static EventPage>; MAX_PAGES as usize],
    owners: [Once<&'static OwnerPage>; MAX_PAGES as usize],
    nr_pages: AtomicU32,
    /// Serialises growth (pages must be added in order).
    expand: Mutex<()>,
}

impl core::fmt::Debug for Fifo {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Fifo")
            .field("nr_vcpus", &self.vcpu_info.len())
            .field("nr_pages", &self.nr_pages())
            .finish()
    }
}

/// A zeroed, leaked `T` with `T`'s alignment, or `None` when the
/// allocator is out of memory (the global allocator's failure is reported
/// instead of aborting).
fn alloc_zeroed_leaked<T: Send + Sync>() -> Option<&'static T> {
    let layout = core::alloc::Layout::new::<T>();
    // SAFETY: the layout has a non-zero size (only used for the page
    // types below, 4 KiB each).
    let ptr = unsafe { alloc::alloc::alloc_zeroed(layout) }.cast::<T>();
    // SAFETY: a non-null result is valid for `layout` (size and alignment
    // of `T`) and zeroed; `T` is one of this module's page types, made only
    // of atomic integers, for which all-zero bytes are a valid value. The
    // memory is never freed, so the reference may be `'static`.
    (!ptr.is_null()).then(|| unsafe { &*ptr })
}

/// Frees a page allocated by [`alloc_zeroed_leaked`] that was never handed
/// to Xen or published.
///
/// # Safety
///
/// `page` came from `alloc_zeroed_leaked::<EventPage>()` and no other
/// reference to it is used afterwards.
unsafe fn free_unpublished(page: &'static EventPage) {
    let layout = core::alloc::Layout::new::<EventPage>();
    // SAFETY: the caller guarantees the page came from the global
    // allocator with this layout and is no longer referenced.
    unsafe { alloc::alloc::dealloc(page as *const EventPage as *mut u8, layout) }
}

impl Fifo {
    /// The layer for `vcpu_info.len()` vCPUs (`vcpu_info[i]` is vCPU `i`'s
    /// event fields: FIFO uses only its upcall flag). Allocates one control
    /// page per vCPU; no hypercall yet (see [`PortLayer::prepare_vcpu`] and
    /// [`crate::port_layer::select`]).
    pub fn new(vcpu_info: Vec<&'static VcpuEvents>) -> Result<Self, EvtchnError> {
        let n = vcpu_info.len();
        let mut controls = Vec::new();
        controls
            .try_reserve_exact(n)
            .map_err(|_| EvtchnError::OutOfMemory)?;
        for _ in 0..n {
            controls.push(alloc_zeroed_leaked::<ControlPage>().ok_or(EvtchnError::OutOfMemory)?);
        }
        Ok(Self {
            vcpu_info,
            controls,
            registered: (0..n).map(|_| AtomicBool::new(false)).collect(),
            heads: (0..n)
                .map(|_| [const { AtomicU32::new(0) }; MAX_QUEUES])
                .collect(),
            pages: [const { Once::new() }; MAX_PAGES as usize],
            owners: [const { Once::new() }; MAX_PAGES as usize],
            nr_pages: AtomicU32::new(0),
            expand: Mutex::new(()),
        })
    }

    /// Event-array pages added so far (ports below `1024 * nr_pages` are
    /// usable).
    pub fn nr_pages(&self) -> u32 {
        self.nr_pages.load(Ordering::Acquire)
    }

    /// Whether `vcpu`'s control block is registered with Xen.
    pub fn is_registered(&self, vcpu: VcpuId) -> bool {
        self.registered
            .get(vcpu.index())
            .is_some_and(|r| r.load(Ordering::Acquire))
    }

    /// The control block of `vcpu` (for inspection and tests).
    pub fn control_block(&self, vcpu: VcpuId) -> Option<&'static ControlBlock> {
        self.controls.get(vcpu.index()).map(|p| &p.0)
    }

    /// The event word of `port`, if its page exists.
    pub fn word(&self, port: Port) -> Option<&'static AtomicU32> {
        let page = self.pages.get((port.0 / WORDS_PER_PAGE) as usize)?.get()?;
        page.0.get((port.0 % WORDS_PER_PAGE) as usize)
    }

    fn owner(&self, port: Port) -> Option<&'static AtomicU32> {
        let page = self.owners.get((port.0 / WORDS_PER_PAGE) as usize)?.get()?;
        page.0.get((port.0 % WORDS_PER_PAGE) as usize)
    }

    fn control(&self, v: usize) -> Option<&'static ControlBlock> {
        if self.registered.get(v)?.load(Ordering::Acquire) {
            self.controls.get(v).map(|p| &p.0)
        } else {
            None
        }
    }

    /// Takes the head event of queue `q` of vCPU `v`: unlinks it (L and
    /// LINK cleared in one step), advances the cached head, clears the
    /// queue's bit in `ready` at the end of the queue. Returns the port if
    /// the event is to be handled (P and not M).
    fn take_one(&self, v: usize, cb: &ControlBlock, q: usize, ready: &mut u32) -> Option<Port> {
        let cached = &self.heads[v][q];
        let mut head = cached.load(Ordering::Relaxed);
        if head == 0 {
            // Xen writes `head[q]` before it sets the ready bit we saw.
            head = cb.head[q].load(Ordering::Acquire);
        }
        let Some(word) = (head != 0).then(|| self.word(Port(head))).flatten() else {
            cached.store(0, Ordering::Relaxed);
            *ready &= !(1 << q);
            return None;
        };
        let old = word.fetch_and(!(LINKED | LINK_MASK), Ordering::SeqCst);
        let next = old & LINK_MASK;
        cached.store(next, Ordering::Relaxed);
        if next == 0 {
            *ready &= !(1 << q);
        }
        (old & PENDING != 0 && old & MASKED == 0).then_some(Port(head))
    }

    /// Consumes vCPU `v`'s queues, at most `budget` events, calling
    /// `handle` for each deliverable one. Returns the ready bits left when
    /// the budget ran out (0 when the queues are empty).
    fn consume(&self, v: usize, mut ready: u32, budget: u32, handle: &mut dyn FnMut(Port)) -> u32 {
        let Some(cb) = self.control(v) else {
            return 0;
        };
        let mut taken = 0;
        loop {
            // While queues are known non-empty a plain read spares the
            // exchange per event (a bit it misses is seen on a later
            // iteration). Before giving up, always exchange: the
            // read-modify-write sees Xen's latest `ready`, so a bit Xen set
            // before it is taken here, and one set after it is a 0 -> 1
            // change that flags the upcall again (which this vCPU cleared
            // before the scan). A plain read cannot promise that against
            // Xen's two writes (`ready`, then the flag): loom
            // (`loom_fifo_link`) finds the lost event.
            if ready == 0 || cb.ready.load(Ordering::SeqCst) != 0 {
                ready |= cb.ready.swap(0, Ordering::SeqCst) & QUEUE_BITS;
            }
            if ready == 0 {
                return 0;
            }
            if taken == budget {
                return ready;
            }
            let q = ready.trailing_zeros() as usize;
            taken += 1;
            if let Some(port) = self.take_one(v, cb, q, &mut ready) {
                handle(port);
            }
        }
    }
}

impl PortLayer for Fifo {
    fn abi(&self) -> EvtchnAbi {
        EvtchnAbi::Fifo
    }

    fn max_ports(&self) -> u32 {
        NR_CHANNELS
    }

    fn nr_vcpus(&self) -> u32 {
        self.vcpu_info.len() as u32
    }

    fn is_pending(&self, port: Port) -> bool {
        self.word(port)
            .is_some_and(|w| w.load(Ordering::SeqCst) & PENDING != 0)
    }

    fn set_pending(&self, port: Port) {
        if let Some(w) = self.word(port) {
            w.fetch_or(PENDING, Ordering::SeqCst);
        }
    }

    fn clear_pending(&self, port: Port) {
        if let Some(w) = self.word(port) {
            w.fetch_and(!PENDING, Ordering::SeqCst);
        }
    }

    fn is_masked(&self, port: Port) -> bool {
        // A port without a page cannot be delivered: it reads as masked.
        self.word(port)
            .is_none_or(|w| w.load(Ordering::SeqCst) & MASKED != 0)
    }

    fn mask(&self, port: Port) {
        if let Some(w) = self.word(port) {
            w.fetch_or(MASKED, Ordering::SeqCst);
        }
    }

    fn unmask(&self, port: Port, _local: bool, ops: &dyn EventChannelOps) -> Result<(), XenError> {
        let Some(word) = self.word(port) else {
            return Ok(());
        };
        let mut spins = 0;
        let mut w = word.load(Ordering::SeqCst);
        loop {
            if w & PENDING != 0 || spins == BUSY_SPINS {
                // Xen clears M and links the pending event (once).
                return ops.unmask(port);
            }
            if w & BUSY != 0 {
                // Xen is linking onto this word: M must not change under it.
                spins += 1;
                core::hint::spin_loop();
                w = word.load(Ordering::SeqCst);
                continue;
            }
            match word.compare_exchange_weak(w, w & !MASKED, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return Ok(()),
                Err(now) => w = now,
            }
        }
    }

    fn bind_to_vcpu(&self, port: Port, _old: Option<VcpuId>, vcpu: VcpuId) {
        // Xen queues each event on its notify vCPU; the guest only records
        // the binding for `is_deliverable`.
        if let Some(o) = self.owner(port) {
            o.store(vcpu.0.saturating_add(1), Ordering::Release);
        }
    }

    fn remove(&self, port: Port, _vcpu: VcpuId) {
        // Xen's close clears P; a still-linked word is dropped by the
        // consumer (not P), and Xen does not hand the port out again while
        // it is linked.
        if let Some(o) = self.owner(port) {
            o.store(0, Ordering::Release);
        }
    }

    fn is_deliverable(&self, port: Port, vcpu: VcpuId) -> bool {
        self.owner(port)
            .is_some_and(|o| o.load(Ordering::Acquire) == vcpu.0.saturating_add(1))
            && self
                .word(port)
                .is_some_and(|w| w.load(Ordering::SeqCst) & (PENDING | MASKED) == PENDING)
    }

    fn clear_upcall_pending(&self, vcpu: VcpuId) {
        if let Some(vi) = self.vcpu_info.get(vcpu.index()) {
            vi.evtchn_upcall_pending.store(0, Ordering::SeqCst);
        }
    }

    fn upcall_pending(&self, vcpu: VcpuId) -> bool {
        self.vcpu_info
            .get(vcpu.index())
            .is_some_and(|vi| vi.evtchn_upcall_pending.load(Ordering::SeqCst) != 0)
    }

    fn scan(&self, vcpu: VcpuId, handle: &mut dyn FnMut(Port)) {
        let v = vcpu.index();
        let left = self.consume(v, 0, SCAN_BUDGET, handle);
        if left != 0
            && let (Some(cb), Some(vi)) = (self.control(v), self.vcpu_info.get(v))
        {
            // Hand the rest back and ask for another pass.
            cb.ready.fetch_or(left, Ordering::SeqCst);
            vi.evtchn_upcall_pending.store(1, Ordering::SeqCst);
        }
    }

    fn setup_port(&self, port: Port, ops: &dyn EventChannelOps) -> Result<(), EvtchnError> {
        if port.0 >= NR_CHANNELS {
            return Err(EvtchnError::PortOutOfRange(port));
        }
        let needed = port.0 / WORDS_PER_PAGE + 1;
        while self.nr_pages() < needed {
            // Allocate before taking the growth lock: nothing is allocated
            // with any lock held.
            let page = alloc_zeroed_leaked::<EventPage>().ok_or(EvtchnError::OutOfMemory)?;
            let _g = self.expand.lock();
            let n = self.nr_pages();
            if n >= needed {
                // SAFETY: `page` was allocated above and never shared.
                unsafe { free_unpublished(page) };
                break;
            }
            // The guest's owner records for the page: allocated before
            // the page is offered to Xen, kept if Xen refuses it (reused
            // by the next attempt).
            if self.owners[n as usize].get().is_none() {
                let Some(owners) = alloc_zeroed_leaked::<OwnerPage>() else {
                    // SAFETY: as above.
                    unsafe { free_unpublished(page) };
                    return Err(EvtchnError::OutOfMemory);
                };
                self.owners[n as usize].call_once(|| owners);
            }
            // Every port starts masked (Xen may replay a raise into this
            // page as soon as it has it).
            for w in &page.0 {
                w.store(MASKED, Ordering::Relaxed);
            }
            if let Err(e) = ops.expand_array(page) {
                // SAFETY: Xen refused the page, nothing else has it.
                unsafe { free_unpublished(page) };
                return Err(e.into());
            }
            self.pages[n as usize].call_once(|| page);
            self.nr_pages.store(n + 1, Ordering::Release);
        }
        Ok(())
    }

    fn prepare_vcpu(&self, vcpu: VcpuId, ops: &dyn EventChannelOps) -> Result<(), XenError> {
        let v = vcpu.index();
        let (Some(flag), Some(page)) = (self.registered.get(v), self.controls.get(v)) else {
            return Err(XenError::NoSuchVcpu);
        };
        if flag.load(Ordering::Acquire) {
            return Ok(());
        }
        for h in &self.heads[v] {
            h.store(0, Ordering::Relaxed);
        }
        ops.init_control(vcpu, page)?;
        flag.store(true, Ordering::Release);
        Ok(())
    }

    fn vcpu_dead(&self, vcpu: VcpuId, ops: &dyn EventChannelOps) {
        let v = vcpu.index();
        if self.control(v).is_none() {
            return;
        }
        // Events still linked here would stay linked (so Xen would never
        // queue them again) on a queue nobody consumes: unlink them all,
        // then let Xen re-queue the pending ones on their notify vCPU.
        let cached = self.heads[v]
            .iter()
            .enumerate()
            .filter(|(_, h)| h.load(Ordering::Relaxed) != 0)
            .fold(0u32, |r, (q, _)| r | 1 << q);
        let mut requeue = Vec::new();
        let mut ready = cached;
        loop {
            ready = self.consume(v, ready, SCAN_BUDGET, &mut |p| requeue.push(p));
            if ready == 0 {
                break;
            }
        }
        for p in requeue {
            let _ = ops.unmask(p);
        }
    }
}
