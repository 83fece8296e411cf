//! Typed identifiers: interrupt numbers, hardware interrupt numbers, CPU ids,
//! and the ids of registered domains and hotplug callbacks.
//!
//! Each is a newtype so that an irq number can never be passed where a hwirq
//! or a CPU id is expected (a classic source of bugs in C interrupt code).
//!
//! # Ranges
//!
//! - [`IrqNumber`] and [`HwIrq`]: every value is a valid id. Which numbers
//!   exist is decided at run time (the store's capacity, a domain's size),
//!   and calls with one that does not exist return
//!   [`IrqError::UnknownIrq`](crate::IrqError::UnknownIrq),
//!   [`IrqError::OutOfRange`](crate::IrqError::OutOfRange) or
//!   [`IrqError::BadHwIrq`](crate::IrqError::BadHwIrq).
//! - [`CpuId`]: ids run from 0 to [`MAX_CPUS`](crate::MAX_CPUS) - 1 (what a
//!   [`CpuMask`](crate::CpuMask) can hold). [`CpuId::new`] is the checked
//!   constructor; a core refuses ids at or above its own `nr_cpus` with
//!   [`IrqError::BadCpu`](crate::IrqError::BadCpu) at run time.
//!   The field is private, so every `CpuId` in existence is below
//!   `MAX_CPUS`: build ids with [`CpuId::new`] / [`CpuId::from_index`] /
//!   `TryFrom` (run-time numbers), [`CpuId::of`] / [`CpuId::BOOT`]
//!   (constants, checked at compile time) or [`CpuId::all`] (loops), and
//!   read them with [`CpuId::get`] / [`CpuId::index`].

use core::fmt;

/// A Linux-style "virtual" interrupt number: the key of the descriptor store.
/// Any value is a valid number; whether it is allocated is the store's
/// business.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct IrqNumber(pub u32);

/// A hardware interrupt number, meaningful only within one interrupt domain
/// (an IOAPIC pin, a GIC INTID, a Xen event-channel port, ...). Any value is
/// valid here; each domain checks its own range.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HwIrq(pub u64);

/// A logical CPU index, dense from 0 up to [`crate::MAX_CPUS`] - 1: build
/// one with [`CpuId::new`], which refuses larger numbers, or with
/// [`CpuId::of`] for a constant. The field is private, so a `CpuId` is always
/// in range (the default is [`CpuId::BOOT`]).
///
/// This is the kernel's CPU number, not an APIC id or an MPIDR: backends
/// translate.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct CpuId(u32);

/// A number refused as a [`CpuId`] by `TryFrom`: it is not below
/// [`MAX_CPUS`](crate::MAX_CPUS). Holds the refused number.
///
/// ```
/// use irqcore::{CpuId, CpuIdOutOfRange, MAX_CPUS};
/// assert_eq!(CpuId::try_from(5u32), Ok(CpuId::of::<5>()));
/// assert_eq!(CpuId::try_from(MAX_CPUS - 1).map(CpuId::index), Ok(MAX_CPUS - 1));
/// assert_eq!(CpuId::try_from(MAX_CPUS), Err(CpuIdOutOfRange(MAX_CPUS as u64)));
/// assert_eq!(CpuId::try_from(u32::MAX), Err(CpuIdOutOfRange(u64::from(u32::MAX))));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CpuIdOutOfRange(pub u64);

impl fmt::Display for CpuIdOutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CPU number {} is not below MAX_CPUS ({})",
            self.0,
            crate::cpumask::MAX_CPUS
        )
    }
}

impl IrqNumber {
    /// The number as a `usize`, for indexing.
    #[inline]
    pub const fn as_usize(self) -> usize {
        self.0 as usize
    }
}

impl CpuId {
    /// CPU 0, the CPU that boots (and the default id).
    pub const BOOT: CpuId = CpuId(0);

    /// CPU `N`, checked at compile time: `CpuId::of::<3>()` (a value at or
    /// above [`MAX_CPUS`](crate::MAX_CPUS) does not compile).
    ///
    /// ```
    /// use irqcore::CpuId;
    /// const SECOND: CpuId = CpuId::of::<1>();
    /// assert_eq!(SECOND.get(), 1);
    /// ```
    ///
    /// ```compile_fail
    /// let _ = irqcore::CpuId::of::<{ irqcore::MAX_CPUS as u32 }>();
    /// ```
    #[inline]
    pub const fn of<const N: u32>() -> CpuId {
        const {
            assert!(
                (N as usize) < crate::cpumask::MAX_CPUS,
                "CPU ids run from 0 to MAX_CPUS - 1"
            )
        };
        CpuId(N)
    }

    /// CPUs `0..n` in ascending order, stopping at
    /// [`MAX_CPUS`](crate::MAX_CPUS) (the ids of a core built for `n` CPUs).
    ///
    /// ```
    /// use irqcore::{CpuId, MAX_CPUS};
    /// assert_eq!(CpuId::all(3).map(CpuId::get).collect::<Vec<_>>(), [0, 1, 2]);
    /// assert_eq!(CpuId::all(usize::MAX).count(), MAX_CPUS);
    /// ```
    #[inline]
    pub fn all(n: usize) -> impl DoubleEndedIterator<Item = CpuId> + ExactSizeIterator + Clone {
        let end = if n < crate::cpumask::MAX_CPUS {
            n
        } else {
            crate::cpumask::MAX_CPUS
        };
        // `end` <= MAX_CPUS, which fits a u32, so the cast keeps the value.
        (0..end as u32).map(CpuId)
    }

    /// CPU `n`, if `n` is below [`MAX_CPUS`](crate::MAX_CPUS).
    ///
    /// ```
    /// use irqcore::{CpuId, MAX_CPUS};
    /// assert_eq!(CpuId::new(3).map(CpuId::get), Some(3));
    /// assert_eq!(CpuId::new(MAX_CPUS as u32), None);
    /// ```
    #[inline]
    pub const fn new(n: u32) -> Option<CpuId> {
        if (n as usize) < crate::cpumask::MAX_CPUS {
            Some(CpuId(n))
        } else {
            None
        }
    }

    /// CPU `index`, if it is below [`MAX_CPUS`](crate::MAX_CPUS).
    #[inline]
    pub const fn from_index(index: usize) -> Option<CpuId> {
        if index < crate::cpumask::MAX_CPUS {
            Some(CpuId(index as u32))
        } else {
            None
        }
    }

    /// The CPU number.
    #[inline]
    pub const fn get(self) -> u32 {
        self.0
    }

    /// The CPU index as a `usize`, for indexing per-CPU arrays.
    #[inline]
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl TryFrom<u32> for CpuId {
    type Error = CpuIdOutOfRange;
    #[inline]
    fn try_from(n: u32) -> Result<CpuId, CpuIdOutOfRange> {
        CpuId::new(n).ok_or(CpuIdOutOfRange(n as u64))
    }
}

impl TryFrom<usize> for CpuId {
    type Error = CpuIdOutOfRange;
    #[inline]
    fn try_from(index: usize) -> Result<CpuId, CpuIdOutOfRange> {
        CpuId::from_index(index).ok_or(CpuIdOutOfRange(index as u64))
    }
}

impl From<CpuId> for u32 {
    #[inline]
    fn from(cpu: CpuId) -> u32 {
        cpu.get()
    }
}

impl From<CpuId> for usize {
    #[inline]
    fn from(cpu: CpuId) -> usize {
        cpu.index()
    }
}

/// Names a domain inside one [`DomainRegistry`](crate::DomainRegistry).
/// Ids are never reused, so a stale id is refused rather than aliased.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DomainId(pub u32);

/// Names one callback registered through
/// [`IrqCore::hotplug_callback`](crate::IrqCore::hotplug_callback), for
/// [`IrqCore::unregister_hotplug`](crate::IrqCore::unregister_hotplug) (see
/// [`HotplugRegistration::leak`](crate::HotplugRegistration::leak)). Only the
/// core makes them.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct HotplugId(pub(crate) u64);

macro_rules! id_fmt {
    ($t:ty, $prefix:literal) => {
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}
id_fmt!(IrqNumber, "irq");
id_fmt!(HwIrq, "hwirq");
id_fmt!(CpuId, "cpu");
id_fmt!(DomainId, "domain");
id_fmt!(HotplugId, "hotplug");
