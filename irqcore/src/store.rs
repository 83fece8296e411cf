//! The sparse descriptor store.
//!
//! Lookup is two dependent loads from a two-level table of atomic pointers
//! (`TOP` chunk pointers, each chunk `CHUNK` descriptor pointers): O(1), no
//! lock, and memory proportional to the chunks in use (a chunk is allocated
//! the first time a number in it is used; the fixed part is the top array
//! and the first chunk). The first chunk, numbers below `CHUNK`, is inline
//! in the store: the numbers most interrupts use (legacy lines, vectors,
//! GIC SPIs) are one load away.
//!
//! Allocation and free are serialised by the *sparse lock*, which also guards
//! the free-range map (first fit from a hint, contiguous ranges for MSI
//! blocks). CPU hotplug holds the sparse lock across the phases that walk all
//! descriptors (see [`crate::hotplug`]), so no descriptor appears or vanishes
//! under such a walk. A CPU that holds the sparse lock and tries to allocate
//! gets [`IrqError::SparseLockHeldByCaller`] instead of deadlocking.
//!
//! Freed descriptors are unpublished and then reclaimed after a grace period
//! ([`crate::grace`]), so a CPU dispatching through a pointer it loaded just
//! before the free never touches freed memory.
//!
//! # Ownership of a descriptor
//!
//! A descriptor is a `Box` only twice: when `DescStore::alloc` creates it
//! (before it is published) and when `Unpublished::free` destroys it (after
//! the grace period). In between, from publication through
//! unpublishing, retiring and the grace period, it is owned through a raw
//! pointer, because readers may hold `&IrqDesc` all that time: a `Box` (or
//! a `&mut`) asserts that nothing else can access its pointee, so making one
//! while a reader's reference is live is undefined behaviour even if the
//! memory is not freed yet (Miri reports it as a data race between the
//! `Box`'s retag and the reader's). The unpublished and retired lists
//! therefore hold `NonNull`s, and moving them between lists and CPUs never
//! asserts anything about the descriptors.

use crate::cell_array::CellArray;
use crate::counts::{COUNT_GROUP, CountGroup, CountSlots};
use crate::desc::IrqDesc;
use crate::error::IrqError;
use crate::ids::IrqNumber;
use crate::sync::{AtomicPtr, AtomicU32, AtomicUsize, Ordering};
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::ptr::{self, NonNull};

/// An unpublished descriptor, owned but possibly still referenced by a CPU
/// that looked it up before it was unpublished.
struct DescPtr(NonNull<IrqDesc>);

// SAFETY: a `DescPtr` owns its descriptor (it came from `Box::into_raw` and
// is freed at most once, by `Unpublished::free`) and only ever hands out
// shared access to it, which other CPUs have anyway: `IrqDesc` is `Send` and
// `Sync`, so sending the owning pointer to another CPU is sound.
unsafe impl Send for DescPtr {}

// The property the impl above relies on.
static_assertions::assert_impl_all!(IrqDesc: Send, Sync);

/// Descriptors that were unpublished but may still be referenced by a CPU
/// (see the module docs: no `Box` exists for them until the grace period has
/// elapsed). Dropping this value leaks them; they are freed only by
/// [`Unpublished::free`], or parked with [`DescStore::retire`].
#[must_use = "unpublished descriptors leak unless freed after a grace period or retired"]
pub(crate) struct Unpublished(Vec<DescPtr>);

impl Unpublished {
    /// Whether there is nothing to free.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Frees the descriptors.
    ///
    /// # Safety
    ///
    /// A grace period must have elapsed since the descriptors were
    /// unpublished, covering every CPU that may hold a reference to one of
    /// them, the calling CPU included (it must not be inside a read-side
    /// section that began before the unpublishing).
    pub(crate) unsafe fn free(self) {
        for p in self.0 {
            // SAFETY: `p` came from `Box::into_raw` in `DescStore::alloc`, is
            // unpublished and owned by this list alone (freed exactly once,
            // here); by the caller's promise no reference to it is left, so
            // the `Box` is the unique owner it claims to be.
            drop(unsafe { Box::from_raw(p.0.as_ptr()) });
        }
    }
}

/// Descriptor pointers per chunk.
pub const CHUNK: usize = 1024;
/// Chunks in the top-level table.
pub const TOP: usize = 1024;
/// The largest capacity a store can have (1,048,576 irq numbers).
pub const MAX_CAPACITY: u32 = (TOP * CHUNK) as u32;
/// The default capacity (65,536 irq numbers).
pub const DEFAULT_CAPACITY: u32 = 65_536;

/// One chunk of the table: `CHUNK` descriptor pointers and the per-CPU
/// counters of those numbers, allocated a group at a time. (Each array in
/// one cell: see [`crate::cell_array`].)
struct Chunk {
    descs: CellArray<AtomicPtr<IrqDesc>, CHUNK>,
    counts: CellArray<AtomicPtr<CountGroup>, { CHUNK / COUNT_GROUP }>,
}

impl Chunk {
    const fn new() -> Self {
        Chunk {
            descs: CellArray::new([const { AtomicPtr::new(ptr::null_mut()) }; CHUNK]),
            counts: CellArray::new(
                [const { AtomicPtr::new(ptr::null_mut()) }; CHUNK / COUNT_GROUP],
            ),
        }
    }

    /// Frees every descriptor and counter group of the chunk.
    ///
    /// # Safety
    ///
    /// Nothing may reference them any more: the caller owns the store
    /// exclusively (`DescStore::drop`).
    unsafe fn free_contents(&self) {
        for s in self.descs.iter() {
            let d = s.swap(ptr::null_mut(), Ordering::SeqCst);
            if !d.is_null() {
                // SAFETY: by the caller's promise nothing references the
                // descriptor; every pointer was produced by `Box::into_raw`
                // and is freed exactly once (swapped out just now).
                drop(unsafe { Box::from_raw(d) });
            }
        }
        // After every descriptor (their `CountSlots` point here).
        for g in self.counts.iter() {
            let g = g.swap(ptr::null_mut(), Ordering::SeqCst);
            if !g.is_null() {
                // SAFETY: as above.
                drop(unsafe { Box::from_raw(g) });
            }
        }
    }
}

/// Free ranges (start -> length), guarded by the sparse lock.
pub(crate) struct AllocState {
    free: BTreeMap<u32, u32>,
    initialized: bool,
}

impl AllocState {
    const fn new() -> Self {
        Self {
            free: BTreeMap::new(),
            initialized: false,
        }
    }

    fn init(&mut self, capacity: u32) {
        if !self.initialized {
            self.initialized = true;
            if capacity > 0 {
                self.free.insert(0, capacity);
            }
        }
    }

    /// Finds and takes the first free range of `count` at or above `from`.
    fn take_first_fit(&mut self, from: u32, count: u32) -> Option<u32> {
        // The free range containing `from`, if any, then every later one.
        let start_key = self
            .free
            .range(..=from)
            .next_back()
            .filter(|(s, l)| u64::from(**s) + u64::from(**l) > u64::from(from))
            .map(|(s, _)| *s)
            .unwrap_or(from);
        let mut found = None;
        for (&s, &l) in self.free.range(start_key..) {
            let begin = s.max(from);
            let end = u64::from(s) + u64::from(l);
            if u64::from(begin) + u64::from(count) <= end {
                found = Some((s, l, begin));
                break;
            }
        }
        let (s, l, begin) = found?;
        self.carve(s, l, begin, count);
        Some(begin)
    }

    /// Takes exactly `[at, at+count)` if it is free.
    fn take_exact(&mut self, at: u32, count: u32) -> bool {
        let Some((&s, &l)) = self.free.range(..=at).next_back() else {
            return false;
        };
        if u64::from(at) + u64::from(count) > u64::from(s) + u64::from(l) {
            return false;
        }
        self.carve(s, l, at, count);
        true
    }

    fn carve(&mut self, s: u32, l: u32, begin: u32, count: u32) {
        self.free.remove(&s);
        if begin > s {
            self.free.insert(s, begin - s);
        }
        let tail_start = begin + count;
        let tail_len = s + l - tail_start;
        if tail_len > 0 {
            self.free.insert(tail_start, tail_len);
        }
    }

    /// Returns `[at, at+count)` to the free map, merging neighbours.
    fn give_back(&mut self, at: u32, count: u32) {
        let mut start = at;
        let mut len = count;
        if let Some((&ps, &pl)) = self.free.range(..at).next_back()
            && ps + pl == at
        {
            self.free.remove(&ps);
            start = ps;
            len += pl;
        }
        if let Some(&nl) = self.free.get(&(at + count)) {
            self.free.remove(&(at + count));
            len += nl;
        }
        self.free.insert(start, len);
    }

    /// Whether `[at, at+count)` is entirely allocated.
    fn all_allocated(&self, at: u32, count: u32) -> bool {
        let end = u64::from(at) + u64::from(count);
        // A free range overlapping [at, end) means not all allocated.
        if let Some((&s, &l)) = self.free.range(..=at).next_back()
            && u64::from(s) + u64::from(l) > u64::from(at)
        {
            return false;
        }
        self.free
            .range(at..)
            .next()
            .is_none_or(|(&s, _)| u64::from(s) >= end)
    }
}

/// The store: lookup table, sparse lock and allocation map.
pub(crate) struct DescStore {
    /// The chunk of numbers `0..CHUNK`, inline (`top[0]` stays null).
    low: Chunk,
    /// One cell around the table: see [`crate::cell_array`].
    top: CellArray<AtomicPtr<Chunk>, TOP>,
    capacity: u32,
    /// CPUs with a counter row in every [`CountGroup`].
    nr_cpus: usize,
    pub(crate) sparse: spin::Mutex<AllocState>,
    /// CPU index + 1 of the sparse-lock holder, 0 when free.
    sparse_owner: AtomicU32,
    /// CPU index + 1 of the CPU being brought up or taken down while the
    /// sparse lock is held for it (its own allocations would deadlock too).
    pub(crate) hotplug_cpu: AtomicU32,
    retired: spin::Mutex<Unpublished>,
    live: AtomicUsize,
}

/// Proof that the caller holds the sparse lock.
pub struct SparseGuard<'a> {
    pub(crate) state: spin::MutexGuard<'a, AllocState>,
    owner: &'a AtomicU32,
    pub(crate) held: Option<crate::lockdep::HeldLock<'a>>,
}

impl Drop for SparseGuard<'_> {
    fn drop(&mut self) {
        self.owner.store(0, Ordering::Release);
    }
}

impl DescStore {
    pub(crate) const fn new(capacity: u32, nr_cpus: usize) -> Self {
        let capacity = if capacity > MAX_CAPACITY {
            MAX_CAPACITY
        } else {
            capacity
        };
        Self {
            low: Chunk::new(),
            top: CellArray::new([const { AtomicPtr::new(ptr::null_mut()) }; TOP]),
            capacity,
            nr_cpus,
            sparse: spin::Mutex::new(AllocState::new()),
            sparse_owner: AtomicU32::new(0),
            hotplug_cpu: AtomicU32::new(0),
            retired: spin::Mutex::new(Unpublished(Vec::new())),
            live: AtomicUsize::new(0),
        }
    }

    #[allow(dead_code)]
    pub(crate) fn capacity(&self) -> u32 {
        self.capacity
    }

    pub(crate) fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Takes the sparse lock for CPU `cpu`.
    pub(crate) fn lock_sparse(&self, cpu: usize) -> Result<SparseGuard<'_>, IrqError> {
        let me = cpu as u32 + 1;
        self.check_not_held_by(cpu)?;
        let mut state = self.sparse.lock();
        self.sparse_owner.store(me, Ordering::Release);
        state.init(self.capacity);
        Ok(SparseGuard {
            state,
            owner: &self.sparse_owner,
            held: None,
        })
    }

    /// Refuses when CPU `cpu` holds the sparse lock, or it is held on its
    /// behalf (the CPU in a hotplug transition): waiting would deadlock.
    pub(crate) fn check_not_held_by(&self, cpu: usize) -> Result<(), IrqError> {
        let me = cpu as u32 + 1;
        if self.sparse_owner.load(Ordering::Acquire) == me
            || self.hotplug_cpu.load(Ordering::Acquire) == me
        {
            return Err(IrqError::SparseLockHeldByCaller);
        }
        Ok(())
    }

    /// Takes the sparse lock for CPU `cpu` if it is free, without waiting.
    pub(crate) fn try_lock_sparse(&self, cpu: usize) -> Option<SparseGuard<'_>> {
        let mut state = self.sparse.try_lock()?;
        self.sparse_owner.store(cpu as u32 + 1, Ordering::Release);
        state.init(self.capacity);
        Some(SparseGuard {
            state,
            owner: &self.sparse_owner,
            held: None,
        })
    }

    /// Whether CPU `cpu` holds the sparse lock.
    pub(crate) fn sparse_held_by(&self, cpu: usize) -> bool {
        self.sparse_owner.load(Ordering::Acquire) == cpu as u32 + 1
    }

    /// Looks up a descriptor. The caller must be inside a read-side section
    /// ([`crate::grace`]) for as long as it uses the reference.
    #[inline]
    pub(crate) fn lookup(&self, irq: IrqNumber) -> Option<&IrqDesc> {
        let i = irq.as_usize();
        let slot = if i < CHUNK {
            &self.low.descs[i]
        } else {
            let chunk = self.top.get(i / CHUNK)?.load(Ordering::SeqCst);
            if chunk.is_null() {
                return None;
            }
            // SAFETY: chunks are allocated once and freed only when the
            // store is dropped, so a non-null chunk pointer stays valid for
            // `&self`.
            let descs = unsafe { &(*chunk).descs };
            &descs[i % CHUNK]
        };
        let d = slot.load(Ordering::SeqCst);
        // SAFETY: a non-null descriptor pointer was published by `install`
        // from a live `Box`; it is reclaimed only after a grace period that
        // the caller's read-side section holds off (see `crate::grace`).
        unsafe { d.as_ref() }
    }

    fn slot(&self, irq: u32) -> Option<&AtomicPtr<IrqDesc>> {
        self.chunk(irq).map(|c| &c.descs[irq as usize % CHUNK])
    }

    /// The counters of `irq` (allocating its group on first use), zeroed:
    /// a number that was freed and allocated again starts from zero. Called
    /// with the sparse lock held, before the descriptor is published. (A
    /// CPU still dispatching through the previous descriptor of the number,
    /// inside the grace period of its free, may add one count after the
    /// zeroing: the counters are statistics.)
    fn count_slots(&self, irq: u32) -> Option<CountSlots> {
        let chunk = self.chunk(irq)?;
        let i = irq as usize % CHUNK;
        let cell = &chunk.counts[i / COUNT_GROUP];
        let mut group = cell.load(Ordering::Acquire);
        if group.is_null() {
            // Only sparse-lock holders allocate groups, so a plain store
            // suffices; lock-free readers reach a group only through a
            // descriptor published after it.
            group = Box::into_raw(Box::new(CountGroup::new(self.nr_cpus as u32)));
            cell.store(group, Ordering::Release);
        }
        // SAFETY: groups are freed only when the store is dropped.
        let slots = unsafe { &*group }.slots(i % COUNT_GROUP);
        for c in slots.iter() {
            c.store(0, Ordering::Relaxed);
        }
        Some(slots)
    }

    /// The chunk of `irq`, allocated on first use.
    fn chunk(&self, irq: u32) -> Option<&Chunk> {
        let i = irq as usize;
        if i < CHUNK {
            return Some(&self.low);
        }
        let top = self.top.get(i / CHUNK)?;
        let mut chunk = top.load(Ordering::SeqCst);
        if chunk.is_null() {
            let fresh = Box::into_raw(Box::new(Chunk::new()));
            match top.compare_exchange(ptr::null_mut(), fresh, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => chunk = fresh,
                Err(existing) => {
                    // SAFETY: `fresh` came from `Box::into_raw` above and was
                    // never published.
                    drop(unsafe { Box::from_raw(fresh) });
                    chunk = existing;
                }
            }
        }
        // SAFETY: see `lookup`.
        Some(unsafe { &*chunk })
    }

    /// Allocates `count` numbers: exactly at `from` if `exact`, else first
    /// fit at or above `from`; creates their descriptors with `make`.
    pub(crate) fn alloc(
        &self,
        guard: &mut SparseGuard<'_>,
        from: u32,
        count: u32,
        exact: bool,
        make: &dyn Fn(IrqNumber, CountSlots) -> IrqDesc,
    ) -> Result<IrqNumber, IrqError> {
        if count == 0 || u64::from(from) + u64::from(count) > u64::from(self.capacity) {
            return Err(if count == 0 {
                IrqError::InvalidRange
            } else if exact {
                IrqError::OutOfRange(IrqNumber(from))
            } else {
                IrqError::NoSpace
            });
        }
        let start = if exact {
            if !guard.state.take_exact(from, count) {
                return Err(IrqError::AlreadyAllocated(IrqNumber(from)));
            }
            from
        } else {
            guard
                .state
                .take_first_fit(from, count)
                .ok_or(IrqError::NoSpace)?
        };
        for n in start..start + count {
            // Unreachable `None`s: the range is within capacity.
            let (Some(counts), Some(slot)) = (self.count_slots(n), self.slot(n)) else {
                continue;
            };
            let desc = Box::into_raw(Box::new(make(IrqNumber(n), counts)));
            slot.store(desc, Ordering::SeqCst);
        }
        self.live.fetch_add(count as usize, Ordering::Relaxed);
        Ok(IrqNumber(start))
    }

    /// Unpublishes `[first, first+count)` (all must be allocated) and
    /// returns the descriptors for reclamation after a grace period.
    pub(crate) fn unpublish(
        &self,
        guard: &mut SparseGuard<'_>,
        first: u32,
        count: u32,
        check: &dyn Fn(&IrqDesc) -> Result<(), IrqError>,
    ) -> Result<Unpublished, IrqError> {
        if count == 0 {
            return Err(IrqError::InvalidRange);
        }
        if u64::from(first) + u64::from(count) > u64::from(self.capacity) {
            return Err(IrqError::OutOfRange(IrqNumber(first)));
        }
        if !guard.state.all_allocated(first, count) {
            return Err(IrqError::UnknownIrq(IrqNumber(first)));
        }
        for n in first..first + count {
            match self.lookup(IrqNumber(n)) {
                Some(d) => check(d)?,
                None => return Err(IrqError::UnknownIrq(IrqNumber(n))),
            }
        }
        let mut out = Vec::with_capacity(count as usize);
        for n in first..first + count {
            if let Some(slot) = self.slot(n) {
                // Stays a raw pointer: CPUs that loaded it before this swap
                // may still use it (see the module docs).
                if let Some(p) = NonNull::new(slot.swap(ptr::null_mut(), Ordering::SeqCst)) {
                    out.push(DescPtr(p));
                }
            }
        }
        guard.state.give_back(first, count);
        self.live.fetch_sub(count as usize, Ordering::Relaxed);
        Ok(Unpublished(out))
    }

    /// Parks unpublished descriptors until a later [`DescStore::take_retired`]
    /// (a caller inside a read-side section cannot wait for its own section).
    pub(crate) fn retire(&self, mut descs: Unpublished) {
        self.retired.lock().0.append(&mut descs.0);
    }

    /// Takes every parked descriptor; the caller frees them after a grace
    /// period that begins after this call.
    pub(crate) fn take_retired(&self) -> Unpublished {
        Unpublished(core::mem::take(&mut self.retired.lock().0))
    }

    /// Calls `f` for every allocated descriptor in number order. The caller
    /// must hold the sparse lock (so none appears or vanishes) and be in a
    /// read-side section.
    pub(crate) fn for_each(&self, _guard: &SparseGuard<'_>, f: &mut dyn FnMut(&IrqDesc)) {
        self.for_each_unlocked(f)
    }

    /// [`DescStore::for_each`] for callers that know the sparse lock is held
    /// on their behalf (hotplug phases on another CPU).
    pub(crate) fn for_each_unlocked(&self, f: &mut dyn FnMut(&IrqDesc)) {
        for (ci, c) in self.top.iter().enumerate() {
            // Chunk 0 is `low`, always there.
            if ci > 0 && c.load(Ordering::SeqCst).is_null() {
                continue;
            }
            for j in 0..CHUNK {
                if let Some(d) = self.lookup(IrqNumber((ci * CHUNK + j) as u32)) {
                    f(d);
                }
            }
        }
    }
}

impl Drop for DescStore {
    fn drop(&mut self) {
        let retired = core::mem::take(&mut self.retired.get_mut().0);
        // SAFETY: `&mut self` proves no CPU is inside a read-side section of
        // this store's owner any more (every reference came from `lookup`
        // through `&self`), so no reference to a retired descriptor is left.
        unsafe { Unpublished(retired).free() };
        // SAFETY: `&mut self`: see above.
        unsafe { self.low.free_contents() };
        for c in self.top.iter() {
            let chunk = c.swap(ptr::null_mut(), Ordering::SeqCst);
            if chunk.is_null() {
                continue;
            }
            // SAFETY: we own the store exclusively in drop; every pointer
            // was produced by `Box::into_raw` and is freed exactly once.
            let chunk = unsafe { Box::from_raw(chunk) };
            // SAFETY: as for `low`.
            unsafe { chunk.free_contents() };
        }
    }
}
