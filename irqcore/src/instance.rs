//! [`IrqCore`]: the instance a kernel places in a `static` and calls into.

use crate::cpumask::MAX_CPUS;
use crate::grace::CpuEpoch;
use crate::lockdep::LockOrder;
use crate::platform::Platform;
use crate::reclaim::Retired;
use crate::store::{DEFAULT_CAPACITY, DescStore};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize};

/// Build-time configuration of an [`IrqCore`].
#[derive(Clone, Copy, Debug)]
pub struct CoreConfig {
    /// Number of irq numbers the store can hold (at most 1,048,576).
    pub capacity: u32,
    /// Number of CPU ids the kernel may use (sizes the per-CPU counters of
    /// every descriptor): 0, or more than [`MAX_CPUS`], means [`MAX_CPUS`].
    pub nr_cpus: u32,
}

impl CoreConfig {
    /// 65,536 irq numbers, 64 CPUs.
    pub const DEFAULT: CoreConfig = CoreConfig {
        capacity: DEFAULT_CAPACITY,
        nr_cpus: 64,
    };
}

/// The interrupt core: descriptor store, flows, handlers, affinity.
///
/// Create one per kernel (a `static` works: the constructor is `const`) or
/// many in tests.
///
/// ```
/// use irqcore::*;
/// use std::sync::Arc;
///
/// struct Up; // one CPU, interrupts always off: enough for a doctest
/// impl Platform for Up {
///     fn current_cpu(&self) -> CpuId { CpuId::BOOT }
///     fn local_irq_save(&self) -> IrqFlags { IrqFlags(0) }
///     fn local_irq_restore(&self, _: IrqFlags) {}
///     fn local_irq_enabled(&self) -> bool { false }
/// }
/// struct Line;
/// impl IrqChip for Line {
///     fn name(&self) -> &str { "LINE" }
///     fn mask(&self, _: &IrqData<'_>) {}
///     fn unmask(&self, _: &IrqData<'_>) {}
/// }
///
/// # fn main() -> Result<(), IrqError> {
/// let core = IrqCore::new(Up);
/// core.set_cpu_online(CpuId::BOOT, true)?;
/// let descs = core.alloc_desc_range(IrqNumber(16), 1)?;
/// let irq = descs.first();
/// core.set_chip(irq, vec![ChipLevel::new(Arc::new(Line), HwIrq(3))], FlowKind::Level)?;
///
/// // Two devices share the line; each handler says whether it was its device.
/// let shared = RequestFlags::SHARED;
/// let a = core.request_irq(irq, IrqRequest::new("a", Arc::new(|_| IrqReturn::NONE)).flags(shared))?;
/// let b = core.request_irq(irq, IrqRequest::new("b", Arc::new(|_| IrqReturn::HANDLED)).flags(shared))?;
/// // A third, non-shared request is refused and changes nothing.
/// let c = core.request_irq(irq, IrqRequest::new("c", Arc::new(|_| IrqReturn::HANDLED)));
/// assert_eq!(c.err(), Some(IrqError::NotShared(irq)));
///
/// core.disable_irq(irq)?;                 // nests
/// core.disable_irq(irq)?;
/// core.enable_irq(irq)?;
/// core.enable_irq(irq)?;
/// assert_eq!(core.enable_irq(irq), Err(IrqError::UnbalancedEnable(irq)));
///
/// core.handle_irq(irq)?;
/// assert_eq!(core.irq_count(irq, CpuId::BOOT), 1);
/// drop((a, b));                           // frees both handlers
/// drop(descs);                            // then the descriptor
/// # Ok(()) }
/// ```
pub struct IrqCore<P: Platform> {
    pub(crate) platform: P,
    pub(crate) store: DescStore,
    pub(crate) epochs: crate::cell_array::CellArray<CpuEpoch, MAX_CPUS>,
    pub(crate) nr_cpus: u32,
    pub(crate) online: [AtomicU64; MAX_CPUS / 64],
    pub(crate) next_dev_id: AtomicUsize,
    pub(crate) next_action_id: AtomicU32,
    pub(crate) stop: crate::stop_machine::StopMachine,
    pub(crate) lock_order: LockOrder,
    pub(crate) hotplug: crate::hotplug::HotplugState<P>,
    pub(crate) resend: crate::resend::ResendQueue,
    /// Action lists replaced while the replacing CPU was itself inside a
    /// read-side section (so it could not wait for its own): dropped by a
    /// later replacement, after a full grace period.
    pub(crate) retired_actions: spin::Mutex<Vec<Retired>>,
}

impl<P: Platform> IrqCore<P> {
    /// A core with the default configuration.
    pub const fn new(platform: P) -> Self {
        Self::with_config(platform, CoreConfig::DEFAULT)
    }

    /// A core with `config`.
    pub const fn with_config(platform: P, config: CoreConfig) -> Self {
        let nr = if config.nr_cpus as usize > MAX_CPUS || config.nr_cpus == 0 {
            MAX_CPUS as u32
        } else {
            config.nr_cpus
        };
        Self {
            platform,
            store: DescStore::new(config.capacity, nr as usize),
            epochs: crate::cell_array::CellArray::new([const { CpuEpoch::new() }; MAX_CPUS]),
            nr_cpus: nr,
            online: [const { AtomicU64::new(0) }; MAX_CPUS / 64],
            next_dev_id: AtomicUsize::new(usize::MAX / 2),
            next_action_id: AtomicU32::new(1),
            stop: crate::stop_machine::StopMachine::new(),
            lock_order: LockOrder::new(),
            hotplug: crate::hotplug::HotplugState::new(),
            resend: crate::resend::ResendQueue::new(),
            retired_actions: spin::Mutex::new(Vec::new()),
        }
    }

    /// The platform.
    pub fn platform(&self) -> &P {
        &self.platform
    }

    /// Number of CPU ids (per-CPU counter slots).
    pub fn nr_cpus(&self) -> u32 {
        self.nr_cpus
    }

    /// The stop-machine instance the core uses for CPU down. Kernels use it
    /// for their own machine-wide work (text patching, ...): one instance
    /// per platform, so two stop-machines never wait for each other.
    pub fn stop_machine(&self) -> &crate::stop_machine::StopMachine {
        &self.stop
    }

    /// The lock-order checker (see [`crate::lockdep`]); domains and other
    /// layers built on irqcore record their own locks in it.
    pub fn lock_order(&self) -> &LockOrder {
        &self.lock_order
    }
}
