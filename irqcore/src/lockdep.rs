//! The lock order, and its check in debug and test builds.
//!
//! Every lock irqcore takes belongs to one class, and a CPU may only take a
//! lock whose class is *greater* than every class it already holds:
//!
//! ```text
//! Hotplug  <  Domain  <  Sparse  <  BusLock  <  Descriptor
//! ```
//!
//! - **Hotplug**: serialises CPU up/down (held across all phases).
//! - **Domain**: a domain's mapping table (map/unmap allocate and free
//!   descriptors, so the domain lock comes before the sparse lock).
//! - **Sparse**: descriptor allocation and free; held by hotplug across the
//!   bring-up and dying phases.
//! - **BusLock**: a slow-bus chip's configuration lock, taken around
//!   configuration changes, outside the descriptor lock.
//! - **Chip**: a backend's leaf lock taken inside chip callbacks.
//! - **Descriptor**: one irq's descriptor lock. Flow handlers take only this
//!   lock (and never two descriptor locks), so interrupt context cannot
//!   invert the order; chip callbacks run under it and must not call back
//!   into irqcore for the same irq.
//!
//! This is the order seed 003 (Xen's vGIC lock inversion between two CPUs
//! changing an interrupt's affinity) lacked. In builds with debug
//! assertions every acquisition through irqcore's API is checked against the
//! locks the calling CPU already holds, and an inversion panics at once with
//! both classes named, instead of deadlocking one run in a million. Release
//! builds compile the check out.

#[cfg(debug_assertions)]
use crate::cpumask::MAX_CPUS;
use crate::ids::CpuId;
#[cfg(debug_assertions)]
use core::sync::atomic::{AtomicU8, Ordering};

/// A lock class, in acquisition order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum LockClass {
    /// CPU hotplug serialisation.
    Hotplug = 0,
    /// An interrupt domain's mapping table.
    Domain = 1,
    /// The sparse (descriptor allocation) lock.
    Sparse = 2,
    /// A slow-bus chip's configuration lock.
    BusLock = 3,
    /// A descriptor lock.
    Descriptor = 4,
    /// A backend's own leaf lock (vector matrix, IOAPIC registers), taken
    /// inside chip callbacks; nothing may be acquired under it.
    Chip = 5,
}

/// Per-CPU record of the lock classes held (debug builds).
pub struct LockOrder {
    #[cfg(debug_assertions)]
    held: crate::cell_array::CellArray<AtomicU8, MAX_CPUS>,
}

impl Default for LockOrder {
    fn default() -> Self {
        Self::new()
    }
}

impl LockOrder {
    /// Nothing held anywhere.
    pub const fn new() -> Self {
        Self {
            #[cfg(debug_assertions)]
            held: crate::cell_array::CellArray::new([const { AtomicU8::new(0) }; MAX_CPUS]),
        }
    }

    /// Records that `cpu` takes a lock of `class`; panics (debug builds) if
    /// it already holds a lock of the same or a later class. The returned
    /// token records the release when dropped.
    #[track_caller]
    pub fn acquire(&self, cpu: CpuId, class: LockClass) -> HeldLock<'_> {
        #[cfg(debug_assertions)]
        if let Some(slot) = self.held.get(cpu.index()) {
            let held = slot.load(Ordering::Relaxed);
            let later = held & !((1u8 << class as u8) - 1);
            if later != 0 {
                let worst = (0..6u8).rev().find(|b| later & (1 << b) != 0).unwrap_or(0);
                panic!(
                    "irqcore lock order violation on {cpu:?}: acquiring {class:?} while holding {:?} \
                     (order: Hotplug < Domain < Sparse < BusLock < Descriptor < Chip)",
                    class_of(worst)
                );
            }
            slot.store(held | (1 << class as u8), Ordering::Relaxed);
        }
        HeldLock {
            order: self,
            cpu,
            class,
        }
    }

    #[cfg_attr(not(debug_assertions), allow(unused_variables))]
    fn release(&self, cpu: CpuId, class: LockClass) {
        #[cfg(debug_assertions)]
        if let Some(slot) = self.held.get(cpu.index()) {
            slot.fetch_and(!(1 << class as u8), Ordering::Relaxed);
        }
    }
}

#[cfg(debug_assertions)]
fn class_of(bit: u8) -> LockClass {
    match bit {
        0 => LockClass::Hotplug,
        1 => LockClass::Domain,
        2 => LockClass::Sparse,
        3 => LockClass::BusLock,
        4 => LockClass::Descriptor,
        _ => LockClass::Chip,
    }
}

/// Proof of a recorded acquisition; records the release on drop.
#[must_use]
pub struct HeldLock<'a> {
    order: &'a LockOrder,
    cpu: CpuId,
    class: LockClass,
}

impl HeldLock<'_> {
    /// Moves the record to another CPU (a lock held across a CPU switch is
    /// not something irqcore does; provided for completeness of the API).
    pub fn class(&self) -> LockClass {
        self.class
    }
}

impl Drop for HeldLock<'_> {
    fn drop(&mut self) {
        self.order.release(self.cpu, self.class);
    }
}
