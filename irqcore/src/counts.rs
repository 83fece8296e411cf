//! Per-CPU interrupt counters: rows of whole cache lines, one per CPU, so
//! that a CPU counting its interrupts writes only lines no other CPU
//! writes. The descriptor store ([`crate::store`]) allocates them in
//! groups with its chunks and frees them when it is dropped.

use crate::sync::AtomicU64;
use alloc::boxed::Box;
use core::ptr::NonNull;

/// Irq numbers per group of per-CPU counters ([`CountGroup`]): one cache
/// line of counters per CPU, so a sparse set of numbers costs one line per
/// CPU per number used at most.
pub(crate) const COUNT_GROUP: usize = 8;

/// The counters of [`COUNT_GROUP`] consecutive numbers on one CPU: a row of
/// whole cache lines, so that a CPU counting interrupts writes only lines
/// that no other CPU writes (Linux keeps `kstat_irqs` in per-CPU memory for
/// the same reason).
#[repr(align(64))]
// The counters are reached through `CountSlots`' pointer only.
#[allow(dead_code)]
struct CountRow([AtomicU64; COUNT_GROUP]);

// Rows never share a cache line.
static_assertions::const_assert_eq!(core::mem::size_of::<CountRow>() % 64, 0);
// A row is exactly its counters (no padding): `CountSlots::get` steps from
// one CPU's counter to the next by `COUNT_GROUP` counters.
static_assertions::const_assert_eq!(
    core::mem::size_of::<CountRow>(),
    COUNT_GROUP * core::mem::size_of::<AtomicU64>()
);

/// One [`CountRow`] per CPU.
pub(crate) struct CountGroup(Box<[CountRow]>);

impl CountGroup {
    /// Zeroed rows for `nr_cpus` CPUs.
    pub(crate) fn new(nr_cpus: u32) -> Self {
        CountGroup(
            (0..nr_cpus)
                .map(|_| CountRow([const { AtomicU64::new(0) }; COUNT_GROUP]))
                .collect(),
        )
    }

    /// The counters of slot `index` (below [`COUNT_GROUP`]) on every CPU.
    /// The group must outlive the slots: the store frees its groups only
    /// when it is dropped, after every descriptor.
    pub(crate) fn slots(&self, index: usize) -> CountSlots {
        let rows = NonNull::from(&*self.0).cast::<CountRow>();
        CountSlots {
            first: CountSlots::first_of(rows, index),
            nr_cpus: self.0.len() as u32,
        }
    }
}

/// Counter rows of [`CountSlots::detached_for_test`], freed on drop.
#[cfg(test)]
pub(crate) struct DetachedRows(NonNull<[CountRow]>);

#[cfg(test)]
impl Drop for DetachedRows {
    fn drop(&mut self) {
        // SAFETY: the pointer came from `Box::leak` in `detached_for_test`
        // and is freed once, here; the test drops the slots' descriptor
        // first.
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
    }
}

/// A descriptor's per-CPU interrupt counters: slot `index` of each CPU's
/// row of its number's [`CountGroup`], kept as the address of CPU 0's
/// counter so that the dispatcher's count is one bounds check and one
/// indexed increment (CPU `c`'s counter is [`COUNT_GROUP`] counters, one
/// row, further on per CPU).
pub(crate) struct CountSlots {
    first: *const AtomicU64,
    nr_cpus: u32,
}

// SAFETY: `CountSlots` only hands out shared references to atomics that
// live until the store is dropped (see `CountSlots::get`), which is what
// any CPU may hold; no thread affinity is involved.
unsafe impl Send for CountSlots {}
// SAFETY: as above: shared access to atomics only.
unsafe impl Sync for CountSlots {}

impl CountSlots {
    /// The address of slot `index % COUNT_GROUP` in the first of `rows`.
    /// Derived from the pointer to every row (not from a reference to one
    /// counter), so that it may reach the other rows.
    fn first_of(rows: NonNull<CountRow>, index: usize) -> *const AtomicU64 {
        // A counter of the first row: a row is `COUNT_GROUP` counters.
        rows.as_ptr()
            .cast::<AtomicU64>()
            .cast_const()
            .wrapping_add(index % COUNT_GROUP)
    }

    /// The counter of `cpu` (`None` beyond the store's CPUs).
    #[inline]
    pub(crate) fn get(&self, cpu: usize) -> Option<&AtomicU64> {
        if cpu >= self.nr_cpus as usize {
            return None;
        }
        // SAFETY: `first` is slot `index < COUNT_GROUP` of the first of the
        // `nr_cpus` rows of a `CountGroup` (`CountGroup::slots`), which the
        // store allocated before creating this descriptor and frees only
        // when it is dropped, after every descriptor (see
        // `DescStore::drop`). The rows are consecutive `CountRow`s, each
        // exactly `COUNT_GROUP` counters (`repr(align(64))` adds no padding:
        // 8 × 8 bytes), so `cpu * COUNT_GROUP` counters further on is the
        // same slot of row `cpu < nr_cpus`, inside the allocation. Only
        // shared references to the atomics are ever made.
        Some(unsafe { &*self.first.add(cpu * COUNT_GROUP) })
    }

    /// Counters of 4 CPUs outside any store, for unit tests: the rows
    /// (the first value) must outlive the slots.
    #[cfg(test)]
    pub(crate) fn detached_for_test() -> (DetachedRows, Self) {
        let rows: Box<[CountRow]> = (0..4)
            .map(|_| CountRow([const { AtomicU64::new(0) }; COUNT_GROUP]))
            .collect();
        // Owned through a raw pointer, as the store owns its groups.
        let rows = NonNull::from(Box::leak(rows));
        let slots = CountSlots {
            first: CountSlots::first_of(rows.cast::<CountRow>(), 0),
            nr_cpus: 4,
        };
        (DetachedRows(rows), slots)
    }

    /// The number of CPUs counted.
    pub(crate) fn nr_cpus(&self) -> usize {
        self.nr_cpus as usize
    }

    /// Every CPU's counter, in CPU order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &AtomicU64> + '_ {
        (0..self.nr_cpus as usize).filter_map(|c| self.get(c))
    }
}
