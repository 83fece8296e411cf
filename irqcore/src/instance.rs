//! [`IrqCore`]: the instance a kernel places in a `static` and calls into.

use crate::action::{Action, ActionList, DevId, IrqRequest, RequestFlags};
use crate::chip::{ChipFlags, ChipLevel, IrqData, TriggerType};
use crate::cpumask::{CpuMask, MAX_CPUS};
use crate::desc::{DescSnapshot, IrqDesc, IrqState, IrqStatus, MAX_LEVELS};
use crate::error::IrqError;
use crate::flow::FlowKind;
use crate::grace::{self, CpuEpoch};
use crate::ids::{CpuId, IrqNumber};
use crate::lockdep::{HeldLock, LockClass, LockOrder};
use crate::platform::{ActionId, IrqFlags, Platform};
use crate::store::{DEFAULT_CAPACITY, DescStore, SparseGuard};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// Build-time configuration of an [`IrqCore`].
#[derive(Clone, Copy, Debug)]
pub struct CoreConfig {
    /// Number of irq numbers the store can hold (at most 1,048,576).
    pub capacity: u32,
    /// Number of CPU ids the kernel may use (sizes the per-CPU counters of
    /// every descriptor; at most [`MAX_CPUS`]).
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
///     fn current_cpu(&self) -> CpuId { CpuId(0) }
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
/// core.set_cpu_online(CpuId(0), true)?;
/// let irq = core.alloc_descs(IrqNumber(16), 1)?;
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
/// assert_eq!(core.irq_count(irq, CpuId(0)), 1);
/// drop((a, b));                           // frees both handlers
/// core.free_descs(irq, 1)?;
/// # Ok(()) }
/// ```
pub struct IrqCore<P: Platform> {
    pub(crate) platform: P,
    pub(crate) store: DescStore,
    pub(crate) epochs: crate::cell_array::CellArray<CpuEpoch, MAX_CPUS>,
    pub(crate) nr_cpus: u32,
    online: [AtomicU64; MAX_CPUS / 64],
    next_dev_id: AtomicUsize,
    next_action_id: AtomicU32,
    pub(crate) stop: crate::stop_machine::StopMachine,
    pub(crate) lock_order: LockOrder,
    pub(crate) hotplug: crate::hotplug::HotplugState<P>,
    pub(crate) resend: crate::resend::ResendQueue,
    /// Action lists replaced while the replacing CPU was itself inside a
    /// read-side section (so it could not wait for its own): dropped by a
    /// later replacement, after a full grace period.
    retired_actions: spin::Mutex<Vec<Retired>>,
}

/// What a change of a descriptor's actions or chip stack replaced: dropped
/// once no CPU can still be reading it ([`IrqCore::retire`]).
pub(crate) struct Retired {
    _actions: ActionList,
    _view: Option<Arc<crate::desc::View>>,
}

/// Restores the saved local interrupt state on drop.
pub(crate) struct IrqSave<'a, P: Platform> {
    platform: &'a P,
    flags: IrqFlags,
}

impl<P: Platform> Drop for IrqSave<'_, P> {
    fn drop(&mut self) {
        self.platform.local_irq_restore(self.flags);
    }
}

/// A descriptor lock taken from process context: local interrupts saved
/// and disabled, the acquisition recorded for the lock-order check.
pub(crate) struct DescLock<'a, P: Platform> {
    desc: &'a IrqDesc,
    // Field order is drop order: unlock, then record the release, then
    // restore interrupts.
    guard: spin::MutexGuard<'a, crate::desc::DescInner>,
    _held: HeldLock<'a>,
    _irq: IrqSave<'a, P>,
}

impl<P: Platform> Drop for DescLock<'_, P> {
    /// Before the lock is released: a run that is going on (the handlers
    /// with the lock dropped) ends under the lock, where it sees what this
    /// holder changed (a deferred affinity change, a disable, ...) as it
    /// would have before the lock-free exit (see `IrqDesc::run`).
    fn drop(&mut self) {
        self.desc.claim_attention();
    }
}

impl<P: Platform> core::ops::Deref for DescLock<'_, P> {
    type Target = crate::desc::DescInner;
    fn deref(&self) -> &Self::Target {
        &self.guard
    }
}

impl<P: Platform> core::ops::DerefMut for DescLock<'_, P> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.guard
    }
}

/// A read-side section: descriptors looked up inside it stay valid.
pub(crate) struct Section<'a> {
    epoch: &'a CpuEpoch,
}

impl Drop for Section<'_> {
    fn drop(&mut self) {
        self.epoch.exit();
    }
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

    // ----- online CPUs ------------------------------------------------------

    /// The CPUs currently online.
    pub fn online_cpus(&self) -> CpuMask {
        let mut m = CpuMask::new();
        for (w, a) in self.online.iter().enumerate() {
            let bits = a.load(Ordering::Acquire);
            for b in 0..64 {
                if bits & (1 << b) != 0 {
                    m.set(CpuId((w * 64 + b) as u32));
                }
            }
        }
        m
    }

    /// Whether `cpu` is online.
    pub fn cpu_online(&self, cpu: CpuId) -> bool {
        let i = cpu.index();
        i < MAX_CPUS && self.online[i / 64].load(Ordering::Acquire) & (1 << (i % 64)) != 0
    }

    /// Marks `cpu` online or offline without running hotplug phases. Meant
    /// for the boot CPU at early init (and for tests); use the hotplug API
    /// for every later change.
    pub fn set_cpu_online(&self, cpu: CpuId, online: bool) -> Result<(), IrqError> {
        let i = cpu.index();
        if i >= self.nr_cpus as usize {
            return Err(IrqError::BadCpu(cpu));
        }
        if online {
            self.online[i / 64].fetch_or(1 << (i % 64), Ordering::AcqRel);
        } else {
            self.online[i / 64].fetch_and(!(1 << (i % 64)), Ordering::AcqRel);
        }
        Ok(())
    }

    // ----- contexts ---------------------------------------------------------

    pub(crate) fn irq_save(&self) -> IrqSave<'_, P> {
        IrqSave {
            platform: &self.platform,
            flags: self.platform.local_irq_save(),
        }
    }

    /// Locks `desc` from process context (see [`crate::lockdep`]).
    pub(crate) fn lock_desc<'a>(&'a self, desc: &'a IrqDesc) -> DescLock<'a, P> {
        let irq = self.irq_save();
        let held = self
            .lock_order
            .acquire(self.platform.current_cpu(), LockClass::Descriptor);
        DescLock {
            desc,
            guard: desc.inner.lock(),
            _held: held,
            _irq: irq,
        }
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

    pub(crate) fn cpu_index(&self) -> Result<usize, IrqError> {
        let cpu = self.platform.current_cpu();
        if cpu.index() < self.nr_cpus as usize {
            Ok(cpu.index())
        } else {
            Err(IrqError::BadCpu(cpu))
        }
    }

    /// Whether the calling CPU is in interrupt context: inside
    /// [`IrqCore::handle_irq`] (a handler, a flow) or a software resend.
    pub fn in_interrupt(&self) -> bool {
        self.epochs
            .get(self.platform.current_cpu().index())
            .is_some_and(|e| e.in_irq())
    }

    /// Refuses calls that wait for other CPUs, threads or grace periods, or
    /// allocate, where that could deadlock: in interrupt context (the
    /// interrupted code on this CPU may hold what we would wait for, and the
    /// dispatcher up the stack still reads the action list) and inside
    /// stop-machine (every other CPU spins with interrupts off).
    pub(crate) fn check_may_wait(&self) -> Result<(), IrqError> {
        if self.in_interrupt() || self.stop.is_participant(self.platform.current_cpu()) {
            return Err(IrqError::InInterrupt);
        }
        Ok(())
    }

    pub(crate) fn section(&self) -> Result<Section<'_>, IrqError> {
        let epoch = &self.epochs[self.cpu_index()?];
        epoch.enter();
        Ok(Section { epoch })
    }

    /// Looks up `irq` inside `section`.
    pub(crate) fn desc<'s>(
        &'s self,
        _section: &'s Section<'_>,
        irq: IrqNumber,
    ) -> Result<&'s IrqDesc, IrqError> {
        self.store.lookup(irq).ok_or(IrqError::UnknownIrq(irq))
    }

    // ----- store ------------------------------------------------------------

    /// Takes the sparse lock (see [`crate::store`]): while the guard lives,
    /// no descriptor can be allocated or freed. Hotplug holds it across the
    /// bring-up and dying phases.
    pub fn lock_sparse(&self) -> Result<SparseGuard<'_>, IrqError> {
        let cpu = self.cpu_index()?;
        let mut g = self.store.lock_sparse(cpu)?;
        g.held = Some(
            self.lock_order
                .acquire(CpuId(cpu as u32), LockClass::Sparse),
        );
        Ok(g)
    }

    /// Whether the calling CPU holds the sparse lock.
    pub fn sparse_lock_held(&self) -> bool {
        self.cpu_index().is_ok_and(|c| self.store.sparse_held_by(c))
    }

    fn new_desc(irq: IrqNumber, counts: crate::store::CountSlots) -> IrqDesc {
        IrqDesc::new(irq, counts)
    }

    /// Allocates `count` consecutive irq numbers, first fit at or above
    /// `from`, each with a fresh descriptor (bad flow, no chip, disabled).
    pub fn alloc_descs(&self, from: IrqNumber, count: u32) -> Result<IrqNumber, IrqError> {
        Self::check_range(from, count)?;
        self.check_sparse_free()?;
        self.check_may_wait()?;
        let mut g = self.lock_sparse()?;
        let r = self
            .store
            .alloc(&mut g, from.0, count, false, &Self::new_desc);
        drop(g);
        self.reclaim_retired();
        r
    }

    /// Allocates exactly `irq`.
    pub fn alloc_desc_at(&self, irq: IrqNumber) -> Result<(), IrqError> {
        self.check_sparse_free()?;
        self.check_may_wait()?;
        let mut g = self.lock_sparse()?;
        let r = self.store.alloc(&mut g, irq.0, 1, true, &Self::new_desc);
        drop(g);
        r.map(|_| ())
    }

    /// Frees `count` descriptors from `first`. Every one must exist and have
    /// no handler installed; otherwise nothing is freed. Their memory is
    /// reclaimed after a grace period (see [`crate::grace`]).
    pub fn free_descs(&self, first: IrqNumber, count: u32) -> Result<(), IrqError> {
        Self::check_range(first, count)?;
        self.check_sparse_free()?;
        self.check_may_wait()?;
        let mut g = self.lock_sparse()?;
        let descs = {
            let _s = self.section()?;
            self.store.unpublish(&mut g, first.0, count, &|d| {
                if d.inner.lock().actions.is_empty() {
                    Ok(())
                } else {
                    Err(IrqError::HasHandlers(d.irq))
                }
            })?
        };
        drop(g);
        self.reclaim(descs);
        Ok(())
    }

    /// The sparse-lock check comes first for allocation and free, so a
    /// hotplug callback that allocates where the lock is held for its
    /// transition (the dying CPU inside stop-machine included) gets the
    /// error that names the mistake.
    fn check_sparse_free(&self) -> Result<(), IrqError> {
        self.store.check_not_held_by(self.cpu_index()?)
    }

    /// A zero count, or a range running past the last irq number.
    fn check_range(first: IrqNumber, count: u32) -> Result<(), IrqError> {
        if count == 0 || u64::from(first.0) + u64::from(count) > 1 << 32 {
            return Err(IrqError::InvalidRange);
        }
        Ok(())
    }

    /// Frees the memory of `descs` once no CPU can still be dispatching
    /// through them.
    fn reclaim(&self, descs: crate::store::Unpublished) {
        let me = self.cpu_index().ok();
        let self_in_section = me.is_some_and(|c| self.epochs[c].in_section());
        grace::synchronize_for(&self.platform, &self.epochs[..self.nr_cpus as usize], me);
        if self_in_section {
            // We may hold a reference up our own stack: park them.
            self.store.retire(descs);
        } else {
            // SAFETY: they were unpublished before the grace period above,
            // which covered every other CPU, and this CPU is outside any
            // read-side section, so no reference to them is left.
            unsafe { descs.free() };
            self.reclaim_retired();
        }
    }

    fn reclaim_retired(&self) {
        let me = self.cpu_index().ok();
        if me.is_some_and(|c| self.epochs[c].in_section()) {
            return;
        }
        let retired = self.store.take_retired();
        if !retired.is_empty() {
            grace::synchronize_for(&self.platform, &self.epochs[..self.nr_cpus as usize], me);
            // SAFETY: they were unpublished before they were retired, hence
            // before the grace period above, which covered every other CPU;
            // this CPU is outside any read-side section (checked above).
            unsafe { retired.free() };
        }
    }

    /// Memory one allocated descriptor costs: the descriptor itself (and
    /// its CPU masks, kept outside it on a core of more than 64 CPUs), its
    /// per-CPU counters and its lookup slot (chunks are shared by
    /// [`crate::store::CHUNK`] numbers). Not included: what a chip and
    /// handlers add once set (the chip stack, the action list and its
    /// published copy, 32 B per chip level and per handler and a few
    /// words).
    pub fn bytes_per_descriptor(&self) -> usize {
        core::mem::size_of::<IrqDesc>()
            + crate::desc::DescMasks::heap_bytes(self.nr_cpus as usize)
            + self.nr_cpus as usize * core::mem::size_of::<u64>()
            + core::mem::size_of::<usize>()
    }

    /// Number of allocated descriptors.
    pub fn nr_descs(&self) -> usize {
        self.store.live()
    }

    /// Whether `irq` has a descriptor.
    pub fn is_allocated(&self, irq: IrqNumber) -> bool {
        self.section().is_ok_and(|s| self.desc(&s, irq).is_ok())
    }

    /// Calls `f` for every allocated irq, holding the sparse lock (so the
    /// set cannot change during the walk). Returns the sparse-lock error if
    /// the caller already holds it; use [`IrqCore::for_each_irq_locked`]
    /// then.
    pub fn for_each_irq(&self, mut f: impl FnMut(IrqNumber)) -> Result<(), IrqError> {
        let g = self.lock_sparse()?;
        self.for_each_irq_locked(&g, &mut f);
        Ok(())
    }

    /// Like [`IrqCore::for_each_irq`], for a caller holding the sparse lock.
    pub fn for_each_irq_locked(&self, guard: &SparseGuard<'_>, f: &mut dyn FnMut(IrqNumber)) {
        let mut irqs = Vec::new();
        if let Ok(_s) = self.section() {
            self.store.for_each(guard, &mut |d| irqs.push(d.irq));
        }
        for irq in irqs {
            f(irq);
        }
    }

    // ----- chip setup -------------------------------------------------------

    /// Installs the chip stack (outermost level first) and flow handler of
    /// `irq`. Refused while handlers are installed.
    pub fn set_chip(
        &self,
        irq: IrqNumber,
        levels: Vec<ChipLevel>,
        flow: FlowKind,
    ) -> Result<(), IrqError> {
        if levels.len() > MAX_LEVELS {
            return Err(IrqError::InvalidArgument);
        }
        if levels.is_empty() && !matches!(flow, FlowKind::Bad | FlowKind::Simple) {
            return Err(IrqError::NoChip(irq));
        }
        let s = self.section()?;
        let desc = self.desc(&s, irq)?;
        let mut g = self.lock_desc(desc);
        if !g.actions.is_empty() {
            return Err(IrqError::HasHandlers(irq));
        }
        g.chip_flags = levels.first().map(|l| l.chip.flags()).unwrap_or_default();
        g.levels = levels.into();
        let old_view = desc.publish_view(&g);
        desc.set_flow(&mut g, flow);
        g.state.remove(IrqState::PER_CPU | IrqState::PER_CPU_DEVID);
        match flow {
            FlowKind::PerCpu => g.state.insert(IrqState::PER_CPU),
            FlowKind::PerCpuDevId => g
                .state
                .insert(IrqState::PER_CPU | IrqState::PER_CPU_DEVID | IrqState::NO_AUTOEN),
            _ => {}
        }
        drop(g);
        drop(s);
        self.retire(Retired {
            _actions: ActionList::empty(),
            _view: old_view,
        });
        Ok(())
    }

    /// Changes only the flow handler of `irq` (for example edge vs level
    /// after a trigger change). Refused for per-CPU changes while handlers
    /// are installed.
    pub fn set_flow(&self, irq: IrqNumber, flow: FlowKind) -> Result<(), IrqError> {
        let s = self.section()?;
        let desc = self.desc(&s, irq)?;
        let mut g = self.lock_desc(desc);
        let percpu = |f: FlowKind| matches!(f, FlowKind::PerCpu | FlowKind::PerCpuDevId);
        if percpu(flow) != percpu(g.flow) && !g.actions.is_empty() {
            return Err(IrqError::HasHandlers(irq));
        }
        if g.levels.is_empty() && !matches!(flow, FlowKind::Bad | FlowKind::Simple) {
            return Err(IrqError::NoChip(irq));
        }
        desc.set_flow(&mut g, flow);
        Ok(())
    }

    /// Sets line properties (`DISABLE_UNLAZY`, `RESEND_WHEN_IN_PROGRESS`,
    /// `NO_REQUEST`, `NO_AUTOEN`, `AFFINITY_MANAGED`); other bits are
    /// refused.
    pub fn set_irq_settings(
        &self,
        irq: IrqNumber,
        set: IrqState,
        clear: IrqState,
    ) -> Result<(), IrqError> {
        let allowed = IrqState::DISABLE_UNLAZY
            | IrqState::RESEND_WHEN_IN_PROGRESS
            | IrqState::NO_REQUEST
            | IrqState::NO_AUTOEN
            | IrqState::AFFINITY_MANAGED
            | IrqState::MOVE_DEFERRED;
        if !allowed.contains(set | clear) {
            return Err(IrqError::InvalidArgument);
        }
        let s = self.section()?;
        let desc = self.desc(&s, irq)?;
        let mut g = self.lock_desc(desc);
        g.state.insert(set);
        g.state.remove(clear);
        Ok(())
    }

    /// Programs the trigger type of `irq` through its chip.
    pub fn set_trigger(&self, irq: IrqNumber, trigger: TriggerType) -> Result<(), IrqError> {
        let s = self.section()?;
        let desc = self.desc(&s, irq)?;
        self.with_bus_lock(desc, |g| {
            if !g.actions.is_empty()
                && g.trigger != TriggerType::None
                && trigger != g.trigger
                && g.actions.len() > 1
            {
                return Err(IrqError::TriggerMismatch(irq));
            }
            Self::apply_trigger(irq, g, trigger)
        })
    }

    /// Calls the chip's `set_type`, masking around it if the chip asks for it.
    pub(crate) fn apply_trigger(
        irq: IrqNumber,
        g: &mut crate::desc::DescInner,
        trigger: TriggerType,
    ) -> Result<(), IrqError> {
        if trigger == TriggerType::None {
            return Ok(());
        }
        let Some(d) = g.data(irq) else {
            return Err(IrqError::NoChip(irq));
        };
        let Some(chip) = d.chip() else {
            return Err(IrqError::NoChip(irq));
        };
        let masked_around = chip.flags().contains(ChipFlags::SET_TYPE_MASKED)
            && !g.state.contains(IrqState::MASKED);
        if masked_around {
            chip.mask(&d);
        }
        let r = chip.set_type(&d, trigger);
        if masked_around {
            chip.unmask(&d);
        }
        r.map_err(|e| match e {
            crate::error::ChipError::InvalidTrigger => IrqError::InvalidTrigger,
            e => IrqError::Chip(e),
        })?;
        g.trigger = trigger;
        g.state.set(IrqState::LEVEL, trigger.is_level());
        Ok(())
    }

    /// Runs `f` with the chip's bus lock taken (outside the descriptor
    /// lock) and the descriptor lock held inside it.
    pub(crate) fn with_bus_lock<R>(
        &self,
        desc: &IrqDesc,
        f: impl FnOnce(&mut crate::desc::DescInner) -> Result<R, IrqError>,
    ) -> Result<R, IrqError> {
        let levels: Arc<[ChipLevel]> = self.lock_desc(desc).levels.clone();
        let data = IrqData::new(desc.irq, &levels);
        let bus = self
            .lock_order
            .acquire(self.platform.current_cpu(), LockClass::BusLock);
        if let Some(c) = data.chip() {
            c.bus_lock(&data);
        }
        let r = {
            let mut g = self.lock_desc(desc);
            f(&mut g)
        };
        if let Some(c) = data.chip() {
            c.bus_sync_unlock(&data);
        }
        drop(bus);
        r
    }

    // ----- handlers ---------------------------------------------------------

    /// Installs a handler and returns a registration that frees it on drop.
    pub fn request_irq(
        &self,
        irq: IrqNumber,
        req: IrqRequest,
    ) -> Result<Registration<'_, P>, IrqError> {
        let dev_id = req
            .dev_id
            .unwrap_or_else(|| DevId(self.next_dev_id.fetch_add(1, Ordering::Relaxed)));
        self.request_irq_raw(irq, req.dev_id(dev_id))?;
        Ok(Registration {
            core: self,
            irq,
            dev_id,
            live: true,
        })
    }

    /// Installs a handler (C-style: free it with [`IrqCore::free_irq`] and
    /// the same device id, which is required).
    pub fn request_irq_raw(&self, irq: IrqNumber, mut req: IrqRequest) -> Result<(), IrqError> {
        let dev_id = req.dev_id.ok_or(IrqError::InvalidArgument)?;
        self.check_may_wait()?;
        let s = self.section()?;
        let desc = self.desc(&s, irq)?;
        let id = ActionId(self.next_action_id.fetch_add(1, Ordering::Relaxed));
        let old = self.with_bus_lock(desc, |g| {
            if g.state.contains(IrqState::NO_REQUEST) {
                return Err(IrqError::InvalidArgument);
            }
            if g.levels.is_empty() && g.flow != FlowKind::Simple {
                return Err(IrqError::NoChip(irq));
            }
            let percpu = g.state.contains(IrqState::PER_CPU);
            let wants_percpu = req.flags.contains(RequestFlags::PERCPU);
            if wants_percpu && !percpu {
                return Err(IrqError::NotPerCpu(irq));
            }
            if !wants_percpu && percpu {
                return Err(IrqError::IsPerCpu(irq));
            }
            let chip_flags = g.levels.first().map(|l| l.chip.flags()).unwrap_or_default();
            if chip_flags.contains(ChipFlags::ONESHOT_SAFE) {
                req.flags.remove(RequestFlags::ONESHOT);
            } else if req.no_primary && !req.flags.contains(RequestFlags::ONESHOT) {
                return Err(IrqError::OneshotRequired(irq));
            }
            if g.actions.iter().any(|a| a.dev_id == dev_id) {
                return Err(IrqError::InvalidArgument);
            }
            let first = g.actions.is_empty();
            if !first {
                let existing_shared = g
                    .actions
                    .iter()
                    .all(|a| a.flags.contains(RequestFlags::SHARED));
                if !existing_shared || !req.flags.contains(RequestFlags::SHARED) {
                    return Err(IrqError::NotShared(irq));
                }
                if req.trigger != TriggerType::None
                    && g.trigger != TriggerType::None
                    && req.trigger != g.trigger
                {
                    return Err(IrqError::TriggerMismatch(irq));
                }
                let oneshot = g.status.contains(IrqStatus::ONESHOT);
                if oneshot != req.flags.contains(RequestFlags::ONESHOT) {
                    return Err(IrqError::OneshotMismatch(irq));
                }
                if g.state.contains(IrqState::PER_CPU_DEVID) {
                    return Err(IrqError::NotShared(irq));
                }
            }
            let mut thread_mask = 0;
            if req.flags.contains(RequestFlags::ONESHOT) {
                let used = g.actions.iter().fold(0u64, |m, a| m | a.thread_mask);
                if used == u64::MAX {
                    return Err(IrqError::TooManyActions(irq));
                }
                thread_mask = 1u64 << (!used).trailing_zeros();
            }
            if first && req.trigger != TriggerType::None {
                Self::apply_trigger(irq, g, req.trigger)?;
            }
            // Nothing can fail from here on.
            let action = Arc::new(Action::new(id, &req, dev_id, thread_mask));
            let old = core::mem::replace(&mut g.actions, ActionList::empty());
            g.actions = old.with(action);
            let old = Retired {
                _actions: old,
                _view: desc.publish_view(g),
            };
            if first {
                g.status.set(
                    IrqStatus::ONESHOT,
                    req.flags.contains(RequestFlags::ONESHOT),
                );
                g.irq_count = 0;
                g.irqs_unhandled = 0;
                g.status.remove(IrqStatus::SPURIOUS_DISABLED);
                if percpu {
                    // Per-CPU lines are enabled per CPU by enable_percpu_irq.
                    g.state.insert(IrqState::STARTED);
                } else if req.flags.contains(RequestFlags::NO_AUTOEN)
                    || g.state.contains(IrqState::NO_AUTOEN)
                {
                    g.depth = 1;
                    g.state.insert(IrqState::DISABLED);
                } else {
                    self.startup(irq, g, true);
                }
            } else if g.status.contains(IrqStatus::SPURIOUS_DISABLED) {
                // A new handler on a line the detector gave up on: try again.
                g.status.remove(IrqStatus::SPURIOUS_DISABLED);
                g.irq_count = 0;
                g.irqs_unhandled = 0;
                if g.depth > 0 {
                    g.depth -= 1;
                    if g.depth == 0 {
                        self.startup(irq, g, true);
                    }
                }
            }
            Ok(old)
        });
        // Never wait for a grace period inside a section of our own.
        drop(s);
        let old = old?;
        self.retire(old);
        self.kick_resends();
        Ok(())
    }

    /// Frees the handler of `dev_id` on `irq`. Waits until no CPU and no
    /// interrupt thread is still running it: when this returns the handler
    /// is never called again. Called from that handler's own thread
    /// function, it returns without waiting for that one call to end.
    ///
    /// Refused with [`IrqError::InInterrupt`] from interrupt context (a
    /// handler of any irq on this CPU: the dispatcher up the stack may still
    /// be reading the list the handler is in) and inside stop-machine.
    pub fn free_irq(&self, irq: IrqNumber, dev_id: DevId) -> Result<(), IrqError> {
        self.check_may_wait()?;
        let (removed, old) = {
            let s = self.section()?;
            let desc = self.desc(&s, irq)?;
            self.with_bus_lock(desc, |g| {
                let Some(action) = g.actions.iter().find(|a| a.dev_id == dev_id).cloned() else {
                    return Err(IrqError::NoSuchHandler(irq));
                };
                let old = core::mem::replace(&mut g.actions, ActionList::empty());
                g.actions = old.without(action.id);
                let old = Retired {
                    _actions: old,
                    _view: desc.publish_view(g),
                };
                action.removed.store(true, crate::sync::Ordering::Release);
                g.threads_oneshot &= !action.thread_mask;
                if g.actions.is_empty() {
                    self.shutdown(irq, g);
                    g.status
                        .remove(IrqStatus::ONESHOT | IrqStatus::PENDING | IrqStatus::REPLAY);
                    g.masks
                        .set(crate::desc::MaskKind::PercpuEnabled, CpuMask::new());
                }
                Ok((action, old))
            })?
            // The section ends here: never wait for a grace period inside
            // one (two CPUs freeing at once would wait for each other).
        };
        // After the grace period no CPU iterates the old list any more.
        self.retire(old);
        // The remaining clones are held by interrupt threads running it;
        // if this is one of them, it is the caller and is not waited for.
        let me = self.platform.current_cpu().0.wrapping_add(1);
        let own_thread = removed.thread_cpu.load(crate::sync::Ordering::Acquire) == me;
        let others = if own_thread { 2 } else { 1 };
        while Arc::strong_count(&removed) > others {
            self.platform.cpu_relax();
        }
        Ok(())
    }

    /// Drops a replaced action list once no CPU can still be iterating it:
    /// dispatchers read lists without the descriptor lock, inside their
    /// read-side section ([`crate::grace`]). Callers hold no section of
    /// their own; should the CPU still be inside one further up (an API
    /// called from a callback), the list is parked and dropped by a later
    /// call after a full grace period instead.
    pub(crate) fn retire(&self, old: Retired) {
        if old._view.is_none() && old._actions.is_empty() {
            // Nothing any CPU could be reading (a first chip on a fresh
            // descriptor): no grace period to wait for.
            return;
        }
        let me = self.cpu_index().ok();
        grace::synchronize_for(&self.platform, &self.epochs[..self.nr_cpus as usize], me);
        if me.is_some_and(|c| self.epochs[c].in_section()) {
            self.retired_actions.lock().push(old);
            return;
        }
        drop(old);
        let parked = core::mem::take(&mut *self.retired_actions.lock());
        if !parked.is_empty() {
            grace::synchronize_for(&self.platform, &self.epochs[..self.nr_cpus as usize], me);
            drop(parked);
        }
    }

    // ----- enable / disable -------------------------------------------------

    /// Starts the line: depth 0, chip startup (or enable if started), and
    /// replay of an event that arrived while it was off.
    pub(crate) fn startup(&self, irq: IrqNumber, g: &mut crate::desc::DescInner, resend: bool) {
        if !g.state.contains(IrqState::STARTED) {
            let online = self.online_cpus();
            if g.state.contains(IrqState::AFFINITY_MANAGED) && !g.affinity().intersects(&online) {
                // No CPU of a managed irq's mask is online: stay shut down
                // until one comes up (hotplug restarts it).
                g.state
                    .insert(IrqState::MANAGED_SHUTDOWN | IrqState::DISABLED);
                g.depth = 1;
                return;
            }
            self.setup_affinity(irq, g, &online);
        }
        g.depth = 0;
        if let Some(d) = g.data(irq) {
            let chip = &g.levels[0].chip;
            if g.state.contains(IrqState::STARTED) {
                if g.state.contains(IrqState::DISABLED) {
                    chip.enable(&d);
                } else {
                    chip.unmask(&d);
                }
            } else {
                chip.startup(&d);
            }
        }
        g.state.remove(IrqState::DISABLED | IrqState::MASKED);
        g.state.insert(IrqState::STARTED);
        if resend {
            self.check_irq_resend(irq, g, false);
        }
    }

    /// Programs the initial affinity: the requested mask's online CPUs, or
    /// every online CPU if it has none. Chips without affinity support are
    /// left alone.
    fn setup_affinity(&self, irq: IrqNumber, g: &mut crate::desc::DescInner, online: &CpuMask) {
        let mut target = g.affinity().and(online);
        if target.is_empty() {
            target = *online;
        }
        if target.is_empty() {
            return;
        }
        if let Some(d) = g.data(irq) {
            match g.levels[0].chip.set_affinity(&d, &target, false) {
                Ok(r) => {
                    if g.affinity().is_empty() {
                        g.masks.set(crate::desc::MaskKind::Affinity, target);
                    }
                    g.masks.set(crate::desc::MaskKind::Effective, r.effective());
                }
                Err(crate::error::ChipError::Busy) => {
                    // A previous move is still in flight: apply at the
                    // first safe point.
                    g.masks.set(crate::desc::MaskKind::Pending, target);
                    g.state.insert(IrqState::MOVE_PENDING);
                }
                Err(_) => {}
            }
        }
    }

    /// Marks `irq` as managed with affinity `mask` (set up before the first
    /// request): the kernel, not the user, owns its affinity; when no CPU of
    /// `mask` is online it is shut down, and restarted when one returns.
    pub fn set_managed_affinity(&self, irq: IrqNumber, mask: &CpuMask) -> Result<(), IrqError> {
        if mask.is_empty() || !mask.is_subset_of(&CpuMask::first_n(self.nr_cpus as usize)) {
            return Err(IrqError::InvalidArgument);
        }
        let s = self.section()?;
        let desc = self.desc(&s, irq)?;
        let mut g = self.lock_desc(desc);
        if !g.actions.is_empty() {
            return Err(IrqError::HasHandlers(irq));
        }
        g.state.insert(IrqState::AFFINITY_MANAGED);
        g.masks.set(crate::desc::MaskKind::Affinity, *mask);
        Ok(())
    }

    /// Shuts the line down (last handler freed).
    pub(crate) fn shutdown(&self, irq: IrqNumber, g: &mut crate::desc::DescInner) {
        if g.state.contains(IrqState::STARTED)
            && let Some(d) = g.data(irq)
        {
            g.levels[0].chip.shutdown(&d);
        }
        g.depth = 1;
        g.state.insert(IrqState::DISABLED | IrqState::MASKED);
        // A replay queued for the handler being freed must not reach the
        // next owner of the line.
        self.cancel_sw_resend(irq, g);
        // A managed shutdown ends with the last handler: the next request
        // starts afresh (otherwise a CPU coming back would start a line a
        // NO_AUTOEN requester has not enabled yet).
        g.state
            .remove(IrqState::STARTED | IrqState::MANAGED_SHUTDOWN);
    }

    /// The lazy disable: mark DISABLED; mask only if the chip has a real
    /// disable or the line asked not to be lazy.
    fn irq_disable(irq: IrqNumber, g: &mut crate::desc::DescInner) {
        g.state.insert(IrqState::DISABLED);
        if let Some(d) = g.data(irq) {
            let chip = &g.levels[0].chip;
            if chip.disable(&d) {
                g.state.insert(IrqState::MASKED);
            } else if g.state.contains(IrqState::DISABLE_UNLAZY)
                && !g.state.contains(IrqState::MASKED)
            {
                chip.mask(&d);
                g.state.insert(IrqState::MASKED);
            }
        }
    }

    /// Disables `irq` (nesting) without waiting for a running handler.
    pub fn disable_irq_nosync(&self, irq: IrqNumber) -> Result<(), IrqError> {
        let s = self.section()?;
        let desc = self.desc(&s, irq)?;
        self.with_bus_lock(desc, |g| {
            if g.state.contains(IrqState::PER_CPU) {
                return Err(IrqError::IsPerCpu(irq));
            }
            if g.depth == u32::MAX {
                return Err(IrqError::InvalidArgument);
            }
            if g.depth == 0 {
                Self::irq_disable(irq, g);
            }
            g.depth += 1;
            Ok(())
        })
    }

    /// Disables `irq` and waits for a handler running on another CPU.
    ///
    /// Refused with [`IrqError::InInterrupt`] from a handler and with
    /// [`IrqError::InOwnThread`] from the irq's own thread function (it
    /// would wait for itself): use [`IrqCore::disable_irq_nosync`] there.
    pub fn disable_irq(&self, irq: IrqNumber) -> Result<(), IrqError> {
        self.check_may_wait()?;
        self.check_not_own_thread(irq)?;
        self.disable_irq_nosync(irq)?;
        self.wait_for_handlers(irq)
    }

    /// Refuses a wait for the threads of `irq` from one of those threads.
    fn check_not_own_thread(&self, irq: IrqNumber) -> Result<(), IrqError> {
        let me = self.platform.current_cpu().0.wrapping_add(1);
        let s = self.section()?;
        let desc = self.desc(&s, irq)?;
        let g = self.lock_desc(desc);
        if g.actions
            .iter()
            .any(|a| a.thread_cpu.load(crate::sync::Ordering::Acquire) == me)
        {
            return Err(IrqError::InOwnThread(irq));
        }
        Ok(())
    }

    /// Undoes one [`IrqCore::disable_irq`]; at depth zero the line is
    /// started again and an event that arrived meanwhile is replayed.
    pub fn enable_irq(&self, irq: IrqNumber) -> Result<(), IrqError> {
        let s = self.section()?;
        let desc = self.desc(&s, irq)?;
        let r = self.with_bus_lock(desc, |g| {
            if g.state.contains(IrqState::PER_CPU) {
                return Err(IrqError::IsPerCpu(irq));
            }
            // The depth counts the drivers' disables plus one for each
            // disable the core made on its own: a managed shutdown and the
            // spurious detector. Those are undone by a CPU coming back and
            // by `reenable_spurious`, never by a driver's enable.
            let reserved = u32::from(g.state.contains(IrqState::MANAGED_SHUTDOWN))
                + u32::from(g.status.contains(IrqStatus::SPURIOUS_DISABLED));
            if g.depth <= reserved {
                return Err(IrqError::UnbalancedEnable(irq));
            }
            if g.depth > 1 {
                g.depth -= 1;
                return Ok(());
            }
            if g.actions.is_empty() {
                // Nothing to start: Linux warns; we refuse.
                return Err(IrqError::NoSuchHandler(irq));
            }
            self.startup(irq, g, true);
            Ok(())
        });
        drop(s);
        self.kick_resends();
        r
    }

    /// Waits until no CPU runs the handlers of `irq` and no thread of it is
    /// active.
    ///
    /// Refused with [`IrqError::InInterrupt`] from a handler and with
    /// [`IrqError::InOwnThread`] from the irq's own thread function. No
    /// read-side section is held while waiting (a CPU waiting for a grace
    /// period may be the one the awaited thread needs).
    pub fn synchronize_irq(&self, irq: IrqNumber) -> Result<(), IrqError> {
        self.check_may_wait()?;
        self.check_not_own_thread(irq)?;
        self.wait_for_handlers(irq)
    }

    /// The wait of [`IrqCore::synchronize_irq`], for callers that made its
    /// context checks already.
    fn wait_for_handlers(&self, irq: IrqNumber) -> Result<(), IrqError> {
        loop {
            {
                let s = self.section()?;
                let Ok(desc) = self.desc(&s, irq) else {
                    // Freed while we waited: nothing of it runs any more.
                    return Ok(());
                };
                let g = self.lock_desc(desc);
                let threads_busy = g
                    .actions
                    .iter()
                    .any(|a| a.threads_pending.load(crate::sync::Ordering::Acquire) != 0);
                if !desc.in_progress() && !threads_busy {
                    return Ok(());
                }
            }
            self.platform.cpu_relax();
        }
    }

    /// Enables a per-CPU irq on the calling CPU (optionally setting its
    /// trigger type).
    pub fn enable_percpu_irq(&self, irq: IrqNumber, trigger: TriggerType) -> Result<(), IrqError> {
        let cpu = self.platform.current_cpu();
        let s = self.section()?;
        let desc = self.desc(&s, irq)?;
        let mut g = self.lock_desc(desc);
        if !g.state.contains(IrqState::PER_CPU) {
            return Err(IrqError::NotPerCpu(irq));
        }
        if trigger != TriggerType::None {
            Self::apply_trigger(irq, &mut g, trigger)?;
        }
        if let Some(d) = g.data(irq) {
            g.levels[0].chip.enable(&d);
        }
        g.masks.update(crate::desc::MaskKind::PercpuEnabled, |m| {
            m.set(cpu);
        });
        Ok(())
    }

    /// Disables a per-CPU irq on the calling CPU.
    pub fn disable_percpu_irq(&self, irq: IrqNumber) -> Result<(), IrqError> {
        let cpu = self.platform.current_cpu();
        let s = self.section()?;
        let desc = self.desc(&s, irq)?;
        let mut g = self.lock_desc(desc);
        if !g.state.contains(IrqState::PER_CPU) {
            return Err(IrqError::NotPerCpu(irq));
        }
        if let Some(d) = g.data(irq) {
            let chip = &g.levels[0].chip;
            if !chip.disable(&d) {
                chip.mask(&d);
            }
        }
        g.masks.update(crate::desc::MaskKind::PercpuEnabled, |m| {
            m.clear(cpu);
        });
        Ok(())
    }

    /// Re-enables a line the spurious detector disabled (after the cause,
    /// typically a missing or misbehaving handler, has been fixed).
    pub fn reenable_spurious(&self, irq: IrqNumber) -> Result<(), IrqError> {
        let s = self.section()?;
        let desc = self.desc(&s, irq)?;
        let r = self.with_bus_lock(desc, |g| {
            if !g.status.contains(IrqStatus::SPURIOUS_DISABLED) {
                return Err(IrqError::InvalidArgument);
            }
            g.status.remove(IrqStatus::SPURIOUS_DISABLED);
            g.irq_count = 0;
            g.irqs_unhandled = 0;
            g.depth = g.depth.saturating_sub(1);
            if g.depth == 0 && !g.actions.is_empty() {
                self.startup(irq, g, false);
            }
            Ok(())
        });
        drop(s);
        self.kick_resends();
        r
    }

    // ----- queries ----------------------------------------------------------

    /// Interrupts of `irq` handled on `cpu`.
    pub fn irq_count(&self, irq: IrqNumber, cpu: CpuId) -> u64 {
        self.section()
            .ok()
            .and_then(|s| self.desc(&s, irq).ok().map(|d| d.count(cpu)))
            .unwrap_or(0)
    }

    /// A snapshot of the descriptor of `irq`.
    pub fn snapshot(&self, irq: IrqNumber) -> Result<DescSnapshot, IrqError> {
        let s = self.section()?;
        let desc = self.desc(&s, irq)?;
        let _irq = self.irq_save();
        Ok(desc.snapshot())
    }

    /// The affinity the hardware targets for `irq`.
    pub fn effective_affinity(&self, irq: IrqNumber) -> Result<CpuMask, IrqError> {
        Ok(self.snapshot(irq)?.effective_affinity)
    }

    /// Sets the affinity of `irq` to `mask` (CPUs that must all exist; at
    /// least one online). The chip may target a subset (the effective
    /// affinity). If the chip cannot move the irq now (busy with a previous
    /// move, or the line only moves from the interrupt path) the change is
    /// deferred to the next safe point of the flow; a later request replaces
    /// an earlier pending one, so the last request always wins.
    pub fn set_affinity(&self, irq: IrqNumber, mask: &CpuMask) -> Result<(), IrqError> {
        let possible = CpuMask::first_n(self.nr_cpus as usize);
        if mask.is_empty() || !mask.is_subset_of(&possible) {
            return Err(IrqError::InvalidArgument);
        }
        if !mask.intersects(&self.online_cpus()) {
            return Err(IrqError::NoOnlineCpu);
        }
        let s = self.section()?;
        let desc = self.desc(&s, irq)?;
        self.with_bus_lock(desc, |g| {
            // Intersected with the online mask (again) under the descriptor lock: a
            // CPU going down clears its online bit before it migrates each
            // irq under this same lock, so either we see it offline or its
            // migration sees (and moves) what we program.
            let target = mask.and(&self.online_cpus());
            if target.is_empty() {
                return Err(IrqError::NoOnlineCpu);
            }
            if g.state.contains(IrqState::PER_CPU) {
                return Err(IrqError::IsPerCpu(irq));
            }
            if g.state.contains(IrqState::AFFINITY_MANAGED) {
                return Err(IrqError::Managed(irq));
            }
            let Some(d) = g.data(irq) else {
                return Err(IrqError::NoChip(irq));
            };
            if g.state.contains(IrqState::MOVE_DEFERRED) {
                g.masks.set(crate::desc::MaskKind::Pending, *mask);
                g.state.insert(IrqState::MOVE_PENDING);
                return Ok(());
            }
            match g.levels[0].chip.set_affinity(&d, &target, false) {
                Ok(r) => {
                    g.masks.set(crate::desc::MaskKind::Affinity, *mask);
                    g.masks.set(crate::desc::MaskKind::Effective, r.effective());
                    // A direct change supersedes any older deferred one.
                    g.state.remove(IrqState::MOVE_PENDING);
                    Ok(())
                }
                Err(crate::error::ChipError::Busy) => {
                    g.masks.set(crate::desc::MaskKind::Pending, *mask);
                    g.state.insert(IrqState::MOVE_PENDING);
                    Ok(())
                }
                Err(e) => Err(IrqError::Chip(e)),
            }
        })
    }

    /// The requested affinity of `irq`.
    pub fn affinity(&self, irq: IrqNumber) -> Result<CpuMask, IrqError> {
        Ok(self.snapshot(irq)?.affinity)
    }

    /// Whether the spurious detector disabled `irq`.
    pub fn is_spurious_disabled(&self, irq: IrqNumber) -> Result<bool, IrqError> {
        Ok(self
            .snapshot(irq)?
            .status
            .contains(IrqStatus::SPURIOUS_DISABLED))
    }
}

/// An installed handler; dropping it frees the handler (and waits until no
/// CPU still runs it).
#[must_use = "dropping the registration frees the handler at once"]
pub struct Registration<'a, P: Platform> {
    core: &'a IrqCore<P>,
    irq: IrqNumber,
    dev_id: DevId,
    live: bool,
}

impl<P: Platform> Registration<'_, P> {
    /// The irq.
    pub fn irq(&self) -> IrqNumber {
        self.irq
    }

    /// The device id the handler was installed with.
    pub fn dev_id(&self) -> DevId {
        self.dev_id
    }

    /// Frees the handler now, reporting errors (drop ignores them).
    pub fn free(mut self) -> Result<(), IrqError> {
        self.live = false;
        self.core.free_irq(self.irq, self.dev_id)
    }

    /// Gives up ownership: the handler stays installed until
    /// [`IrqCore::free_irq`] is called with [`Registration::dev_id`].
    pub fn leak(mut self) -> DevId {
        self.live = false;
        self.dev_id
    }
}

impl<P: Platform> Drop for Registration<'_, P> {
    fn drop(&mut self) {
        if self.live && self.core.free_irq(self.irq, self.dev_id) == Err(IrqError::InInterrupt) {
            // Freeing from a handler would free what the dispatcher up the
            // stack still reads: the handler stays, and the kernel hears.
            self.core
                .platform
                .report(crate::platform::IrqEvent::FreeRefused(self.irq));
        }
    }
}
