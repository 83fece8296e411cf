//! The vector domain: the root of every x86 interrupt hierarchy.
//!
//! Each irq that reaches a CPU through the local APIC (IOAPIC pins, MSIs)
//! owns one (CPU, vector) pair, handed out by the [`VectorMatrix`]. This
//! level's chip:
//!
//! * `ack`/`eoi`: completes a pending move (see below), then signals EOI to
//!   the executing CPU's local APIC;
//! * `set_affinity`: keeps the current vector if its CPU is still online and
//!   in the new mask, else allocates a new one and remembers the old;
//!   refuses with [`ChipError::Busy`] while a previous move is unfinished
//!   (the core then defers the request), except when forced (the core
//!   migrating interrupts off a dying CPU): the unfinished move's old vector
//!   is then queued for its CPU's cleanup, as on a first arrival;
//! * `retrigger`: sends the vector to its CPU as a fixed IPI;
//! * `compose_msi_msg`: the message that targets the (CPU, vector); the
//!   IOAPIC and MSI levels above build their entries from it.
//!
//! **Moves are cleaned up on first arrival.** After a move, both the old and
//! the new vector map to the irq. The first interrupt that arrives on the new
//! CPU proves the hardware was reprogrammed; only then is the old vector
//! queued for release on its CPU ([`ApicOps::request_cleanup`]), and that CPU
//! frees it in [`VectorDomain::run_cleanup`] once it is no longer pending in
//! its IRR. An interrupt already in flight to the old vector is therefore
//! never lost. If the old CPU is offline the old vector is released at once.
//!
//! **Lock order**: the domain's lock is a leaf. It is taken under irqcore's
//! descriptor lock (chip callbacks) or its mapping lock (domain callbacks),
//! with local interrupts off ([`IrqControl`]), and nothing else is locked
//! while it is held (the IOAPIC and MSI levels release their own lock
//! before asking this level). The domain never calls into the core, except
//! from the hotplug callbacks, which hold no lock of this crate.

use crate::ids::{ApicId, Vector};
use crate::irqsafe::{IrqControl, IrqSafeMutex};
use crate::matrix::{VectorError, VectorMatrix};
use crate::msi::{MsiDestFormat, compose_msi};
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};
use irqcore::{
    AffinitySet, ChipError, ChipLevel, CpuId, CpuMask, HwIrq, IrqChip, IrqData, IrqNumber, MsiMsg,
};

/// What the vector domain needs from the executing CPU's local APIC. A
/// kernel implements it over its [`Lapic`](crate::lapic::Lapic) and its
/// per-CPU id; the model provides one too.
pub trait ApicOps: Send + Sync {
    /// The executing CPU.
    fn current_cpu(&self) -> CpuId;
    /// EOI to the executing CPU's local APIC.
    fn eoi(&self);
    /// Sends fixed `vector` to the CPU with `apic_id`.
    fn send_ipi(&self, apic_id: ApicId, vector: Vector);
    /// Whether `vector` is set in the executing CPU's IRR.
    fn vector_pending(&self, vector: Vector) -> bool;
    /// Asks `cpu` to call [`VectorDomain::run_cleanup`] soon (an IPI or a
    /// timer on that CPU). The default does nothing: the kernel then calls
    /// `run_cleanup` periodically.
    fn request_cleanup(&self, cpu: CpuId) {
        let _ = cpu;
    }
}

/// [`ApicOps`] over this crate's [`Lapic`](crate::lapic::Lapic) driver: what a
/// kernel uses with the real accessors.
///
/// `current_cpu` returns the executing CPU's logical id (from the kernel's
/// per-CPU area). With a `cleanup_vector`, [`ApicOps::request_cleanup`]
/// sends that vector to the old CPU; the kernel's handler for it calls
/// [`VectorDomain::run_cleanup`] for the executing CPU. Without one, the
/// kernel calls `run_cleanup` from its periodic timer.
pub struct LapicOps<M, R, F> {
    lapic: crate::lapic::Lapic<M, R>,
    current_cpu: F,
    apic_ids: Vec<ApicId>,
    cleanup_vector: Option<Vector>,
}

impl<M, R, F> LapicOps<M, R, F> {
    /// Ops over `lapic` for the CPUs with `apic_ids` (index = logical CPU).
    pub fn new(
        lapic: crate::lapic::Lapic<M, R>,
        current_cpu: F,
        apic_ids: &[ApicId],
        cleanup_vector: Option<Vector>,
    ) -> Self {
        Self {
            lapic,
            current_cpu,
            apic_ids: apic_ids.to_vec(),
            cleanup_vector,
        }
    }

    /// The LAPIC driver.
    pub fn lapic(&self) -> &crate::lapic::Lapic<M, R> {
        &self.lapic
    }
}

impl<M, R, F> ApicOps for LapicOps<M, R, F>
where
    M: crate::regs::Mmio32,
    R: crate::regs::Msr,
    F: Fn() -> CpuId + Send + Sync,
{
    fn current_cpu(&self) -> CpuId {
        (self.current_cpu)()
    }

    fn eoi(&self) {
        self.lapic.eoi();
    }

    fn send_ipi(&self, apic_id: ApicId, vector: Vector) {
        use crate::lapic::{IpiDest, IpiKind};
        // Errors (an id too large for xAPIC) cannot happen for targets the
        // domain composed; nothing useful to do with one here.
        let _ = self
            .lapic
            .send_ipi(IpiKind::Fixed(vector), IpiDest::Apic(apic_id));
    }

    fn vector_pending(&self, vector: Vector) -> bool {
        self.lapic.is_pending(vector)
    }

    fn request_cleanup(&self, cpu: CpuId) {
        if let (Some(v), Some(id)) = (self.cleanup_vector, self.apic_ids.get(cpu.index())) {
            self.send_ipi(*id, v);
        }
    }
}

/// The (CPU, vector) an irq is delivered on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VectorTarget {
    /// Logical CPU.
    pub cpu: CpuId,
    /// APIC id of that CPU.
    pub apic_id: ApicId,
    /// Vector.
    pub vector: Vector,
}

#[derive(Clone, Copy, Debug)]
struct IrqVector {
    /// Current target; `None` for a managed irq with no online CPU (managed
    /// shutdown).
    cur: Option<(CpuId, Vector)>,
    /// Old target of an unfinished move.
    prev: Option<(CpuId, Vector)>,
    managed: Option<CpuMask>,
}

struct State {
    matrix: VectorMatrix,
    irqs: BTreeMap<IrqNumber, IrqVector>,
    /// Per CPU: (irq, vector) released once no longer pending there.
    cleanup: Vec<Vec<(IrqNumber, Vector)>>,
}

const NO_IRQ: u32 = u32::MAX;

/// The vector domain and its chip. Create one per system, wrap it in an
/// `Arc`, and use [`VectorDomain::alloc`] to obtain the root
/// [`ChipLevel`] of each irq.
pub struct VectorDomain<O> {
    ops: O,
    apic_ids: Vec<ApicId>,
    msi_format: MsiDestFormat,
    state: IrqSafeMutex<State>,
    /// Per CPU, vector -> irq number: read lock-free by the interrupt entry.
    vector_irq: Vec<[AtomicU32; 256]>,
}

impl<O: ApicOps> VectorDomain<O> {
    /// A domain for the CPUs whose APIC ids are `apic_ids` (index = logical
    /// CPU), all offline, allocating from `matrix`'s window. `msi_format`
    /// says how to encode destinations in composed messages.
    pub fn new(
        ops: O,
        apic_ids: &[ApicId],
        msi_format: MsiDestFormat,
    ) -> Result<Self, VectorError> {
        let matrix = VectorMatrix::with_default_window(apic_ids.len())?;
        Self::with_matrix(ops, apic_ids, msi_format, matrix)
    }

    /// Like [`VectorDomain::new`] with a custom matrix (window, system
    /// vectors already assigned).
    pub fn with_matrix(
        ops: O,
        apic_ids: &[ApicId],
        msi_format: MsiDestFormat,
        matrix: VectorMatrix,
    ) -> Result<Self, VectorError> {
        if matrix.nr_cpus() != apic_ids.len() {
            return Err(VectorError::CpuCountMismatch);
        }
        let n = apic_ids.len();
        Ok(Self {
            ops,
            apic_ids: apic_ids.to_vec(),
            msi_format,
            state: IrqSafeMutex::new(State {
                matrix,
                irqs: BTreeMap::new(),
                cleanup: (0..n).map(|_| Vec::new()).collect(),
            }),
            vector_irq: (0..n)
                .map(|_| core::array::from_fn(|_| AtomicU32::new(NO_IRQ)))
                .collect(),
        })
    }

    /// Sets how the domain disables local interrupts around its lock (which
    /// interrupt-context acks also take). Kernels pass
    /// `arch_x86::hw::IRQ_CONTROL`; the default is
    /// [`IrqControl::DEFAULT`] (`cli`/`sti` on bare-metal x86_64).
    pub fn with_irq_control(mut self, ctl: IrqControl) -> Self {
        self.state.set_control(ctl);
        self
    }

    /// The APIC ops.
    pub fn ops(&self) -> &O {
        &self.ops
    }

    /// The APIC id of `cpu`.
    pub fn apic_id(&self, cpu: CpuId) -> Option<ApicId> {
        self.apic_ids.get(cpu.index()).copied()
    }

    /// Reserves a system vector on all CPUs (see [`VectorMatrix::assign_system`]).
    pub fn assign_system_vector(&self, vector: Vector) -> Result<(), VectorError> {
        self.state.lock().matrix.assign_system(vector)
    }

    /// Reserves a range of system vectors on all CPUs, all or nothing (see
    /// [`VectorMatrix::reserve_range`]); for an 8259, pass
    /// [`PIC8259_VECTORS`](crate::matrix::PIC8259_VECTORS) or the chip's
    /// [`Pic8259Chip::vectors`](crate::Pic8259Chip::vectors), before the
    /// first allocation.
    pub fn reserve_system_vectors(&self, range: core::ops::Range<u8>) -> Result<(), VectorError> {
        self.state.lock().matrix.reserve_range(range)
    }

    /// Runs `f` on the matrix (statistics, tests).
    pub fn with_matrix_ref<R>(&self, f: impl FnOnce(&VectorMatrix) -> R) -> R {
        f(&self.state.lock().matrix)
    }

    /// Sets up `cpu`'s vector space: it becomes eligible for allocations.
    /// Call in the CPU bring-up phase (irqcore holds the sparse lock there, so
    /// no irq can be allocated or freed concurrently). Stale vector-table
    /// entries of the CPU (left from before it went offline) are cleared.
    pub fn cpu_online(&self, cpu: CpuId) -> Result<(), VectorError> {
        let mut st = self.state.lock();
        st.matrix.cpu_online(cpu)?;
        let table = &self.vector_irq[cpu.index()];
        for v in Vector::all() {
            if !st.matrix.is_allocated(cpu, v) {
                table[v.index()].store(NO_IRQ, Ordering::Release);
            }
        }
        Ok(())
    }

    /// Takes `cpu`'s vector space down: no new allocations there, and its
    /// pending cleanups run without the IRR check (the kernel has forwarded
    /// what was pending). Call in the dying phase, after interrupts were
    /// moved off the CPU.
    pub fn cpu_offline(&self, cpu: CpuId) -> Result<(), VectorError> {
        let mut st = self.state.lock();
        st.matrix.cpu_offline(cpu)?;
        let work = core::mem::take(&mut st.cleanup[cpu.index()]);
        for (irq, v) in work {
            self.release(&mut st, irq, cpu, v);
        }
        // Unfinished moves away from this CPU: nothing can arrive on the old
        // vector any more, release it now.
        let stale: Vec<(IrqNumber, Vector)> = st
            .irqs
            .iter()
            .filter_map(|(irq, e)| match e.prev {
                Some((c, v)) if c == cpu => Some((*irq, v)),
                _ => None,
            })
            .collect();
        for (irq, v) in stale {
            self.release(&mut st, irq, cpu, v);
            if let Some(e) = st.irqs.get_mut(&irq) {
                e.prev = None;
            }
        }
        Ok(())
    }

    /// The irqs whose vectors are latched in the executing CPU's IRR (`cpu`
    /// must be the executing CPU). On a dying CPU, after its interrupts were
    /// moved away, the kernel replays these on their new targets
    /// (`IrqCore::inject_pending`); [`VectorHotplug`] does it.
    pub fn pending_irqs(&self, cpu: CpuId) -> Vec<IrqNumber> {
        Vector::all()
            .filter_map(|v| {
                self.irq_for_vector(cpu, v)
                    .filter(|_| self.ops.vector_pending(v))
            })
            .collect()
    }

    fn release(&self, st: &mut State, irq: IrqNumber, cpu: CpuId, vector: Vector) {
        // Cannot fail for a pair we recorded; a failure would mean the
        // bookkeeping is already consistent with "free".
        let _ = st.matrix.free(cpu, vector);
        if let Some(slot) = self.vector_irq.get(cpu.index()).map(|t| &t[vector.index()]) {
            let _ = slot.compare_exchange(irq.0, NO_IRQ, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    fn install(&self, irq: IrqNumber, cpu: CpuId, vector: Vector) {
        self.vector_irq[cpu.index()][vector.index()].store(irq.0, Ordering::Release);
    }

    /// The irq delivered on `vector` of `cpu`: what the interrupt entry
    /// calls before `IrqCore::handle_irq`. Lock-free.
    pub fn irq_for_vector(&self, cpu: CpuId, vector: Vector) -> Option<IrqNumber> {
        let v = self.vector_irq.get(cpu.index())?[vector.index()].load(Ordering::Acquire);
        (v != NO_IRQ).then_some(IrqNumber(v))
    }

    /// Allocates the root level of `irq`: a vector on an online CPU of
    /// `mask` (unmanaged), or, with `managed`, one reserved vector on every
    /// CPU of `mask` plus an allocation on an online one (if none is online
    /// the irq stays in managed shutdown until [`VectorDomain::activate`]).
    pub fn alloc(
        self: &Arc<Self>,
        irq: IrqNumber,
        mask: &CpuMask,
        managed: bool,
    ) -> Result<ChipLevel, VectorError>
    where
        O: 'static,
    {
        let mut st = self.state.lock();
        if st.irqs.contains_key(&irq) {
            return Err(VectorError::IrqExists(irq));
        }
        let entry = if managed {
            st.matrix.reserve_managed(mask)?;
            let cur = match st.matrix.alloc_managed(mask) {
                Ok(t) => Some(t),
                Err(VectorError::NoOnlineCpu) => None,
                Err(e) => {
                    let _ = st.matrix.remove_managed(mask);
                    return Err(e);
                }
            };
            IrqVector {
                cur,
                prev: None,
                managed: Some(*mask),
            }
        } else {
            let t = st.matrix.alloc(mask)?;
            IrqVector {
                cur: Some(t),
                prev: None,
                managed: None,
            }
        };
        if let Some((cpu, v)) = entry.cur {
            self.install(irq, cpu, v);
        }
        st.irqs.insert(irq, entry);
        Ok(ChipLevel::new(
            self.clone() as Arc<dyn IrqChip>,
            HwIrq(irq.0 as u64),
        ))
    }

    /// Gives a managed irq in shutdown a vector on an online CPU of its mask
    /// (after one came online).
    pub fn activate(&self, irq: IrqNumber) -> Result<VectorTarget, VectorError> {
        let mut st = self.state.lock();
        let e = *st.irqs.get(&irq).ok_or(VectorError::UnknownIrq(irq))?;
        if let (None, Some(mask)) = (e.cur, e.managed) {
            let (cpu, v) = st.matrix.alloc_managed(&mask)?;
            self.install(irq, cpu, v);
            if let Some(e) = st.irqs.get_mut(&irq) {
                e.cur = Some((cpu, v));
            }
        }
        drop(st);
        self.target(irq).ok_or(VectorError::NoOnlineCpu)
    }

    /// Releases every vector and reservation of `irq`.
    pub fn free(&self, irq: IrqNumber) -> Result<(), VectorError> {
        let mut st = self.state.lock();
        let e = st.irqs.remove(&irq).ok_or(VectorError::UnknownIrq(irq))?;
        for (cpu, v) in e.cur.into_iter().chain(e.prev) {
            self.release(&mut st, irq, cpu, v);
        }
        self.release_queued(&mut st, irq);
        if let Some(mask) = e.managed {
            let _ = st.matrix.remove_managed(&mask);
        }
        Ok(())
    }

    /// Where `irq` is delivered now.
    pub fn target(&self, irq: IrqNumber) -> Option<VectorTarget> {
        let st = self.state.lock();
        let (cpu, vector) = st.irqs.get(&irq)?.cur?;
        Some(VectorTarget {
            cpu,
            apic_id: self.apic_id(cpu)?,
            vector,
        })
    }

    /// The MSI message that targets `irq`'s current (CPU, vector), in the
    /// domain's destination format.
    pub fn msi_msg(&self, irq: IrqNumber) -> Option<MsiMsg> {
        let t = self.target(irq)?;
        compose_msi(t.apic_id, t.vector, self.msi_format).ok()
    }

    /// Whether `irq` has an unfinished move (old vector not yet released).
    pub fn move_in_progress(&self, irq: IrqNumber) -> bool {
        let st = self.state.lock();
        st.irqs.get(&irq).is_some_and(|e| e.prev.is_some())
            || st.cleanup.iter().any(|q| q.iter().any(|(i, _)| *i == irq))
    }

    /// Releases the old vectors of `irq` still queued for cleanup: the irq
    /// is going away (or shutting down), so nothing will be delivered
    /// through them on purpose any more (Linux's `clear_irq_vector` frees
    /// a move's previous vector the same way). Dropping the queue entries
    /// without releasing them would leak the vectors.
    fn release_queued(&self, st: &mut State, irq: IrqNumber) {
        // One queue per CPU of the matrix, whose size is at most MAX_CPUS.
        for cpu in CpuId::all(st.cleanup.len()) {
            let ci = cpu.index();
            let queue = core::mem::take(&mut st.cleanup[ci]);
            let (mine, rest): (Vec<_>, Vec<_>) = queue.into_iter().partition(|(i, _)| *i == irq);
            st.cleanup[ci] = rest;
            for (i, v) in mine {
                self.release(st, i, cpu, v);
            }
        }
    }

    /// Runs `cpu`'s queued cleanups (call on `cpu`, e.g. from the IPI or
    /// timer that [`ApicOps::request_cleanup`] arranged). A vector still
    /// pending in this CPU's IRR is kept for a later run: its interrupt has
    /// yet to be handled through the old mapping. Returns how many remain.
    pub fn run_cleanup(&self, cpu: CpuId) -> usize {
        let mut st = self.state.lock();
        let Some(q) = st.cleanup.get_mut(cpu.index()) else {
            return 0;
        };
        let work = core::mem::take(q);
        let mut keep = Vec::new();
        for (irq, v) in work {
            if self.ops.vector_pending(v) {
                keep.push((irq, v));
            } else {
                self.release(&mut st, irq, cpu, v);
            }
        }
        let left = keep.len();
        st.cleanup[cpu.index()] = keep;
        drop(st);
        if left > 0 {
            self.ops.request_cleanup(cpu);
        }
        left
    }

    /// Completes a move of `irq` if this interrupt arrived on its new CPU.
    fn complete_move(&self, irq: IrqNumber) {
        let mut st = self.state.lock();
        let Some(e) = st.irqs.get_mut(&irq) else {
            return;
        };
        let (Some((new_cpu, _)), Some((old_cpu, old_v))) = (e.cur, e.prev) else {
            return;
        };
        if self.ops.current_cpu() != new_cpu {
            // Still arriving through the old vector: keep both.
            return;
        }
        e.prev = None;
        if st.matrix.is_online(old_cpu) {
            st.cleanup[old_cpu.index()].push((irq, old_v));
            drop(st);
            self.ops.request_cleanup(old_cpu);
        } else {
            self.release(&mut st, irq, old_cpu, old_v);
        }
    }

    fn do_set_affinity(
        &self,
        irq: IrqNumber,
        mask: &CpuMask,
        force: bool,
    ) -> Result<CpuMask, ChipError> {
        let mut st = self.state.lock();
        let mut cleanup_on = None;
        let e = *st.irqs.get(&irq).ok_or(ChipError::Invalid)?;
        let online = st.matrix.online_mask();
        let wanted = mask.and(&online);
        if wanted.is_empty() {
            return Err(ChipError::Invalid);
        }
        if let Some((cpu, _)) = e.cur
            && wanted.contains(cpu)
        {
            return Ok(CpuMask::of(cpu));
        }
        if let Some((old_cpu, old_v)) = e.prev {
            if st.matrix.is_online(old_cpu) {
                if !force {
                    return Err(ChipError::Busy);
                }
                // Forced (the core moves interrupts off a dying CPU, which
                // cannot wait for the first arrival): finish the unfinished
                // move as if it had arrived. The old vector stays mapped
                // until its CPU's cleanup sees it no longer pending, so an
                // interrupt in flight to it is still handled.
                st.cleanup[old_cpu.index()].push((irq, old_v));
                cleanup_on = Some(old_cpu);
            } else {
                // The old CPU is gone: nothing can arrive there any more.
                self.release(&mut st, irq, old_cpu, old_v);
            }
        }
        let new = match e.managed {
            Some(m) => st.matrix.alloc_managed(&wanted.and(&m))?,
            None => st.matrix.alloc(&wanted)?,
        };
        self.install(irq, new.0, new.1);
        let mut prev = e.cur;
        if let Some((old_cpu, old_v)) = prev
            && !st.matrix.is_online(old_cpu)
        {
            self.release(&mut st, irq, old_cpu, old_v);
            prev = None;
        }
        if let Some(e) = st.irqs.get_mut(&irq) {
            e.cur = Some(new);
            e.prev = prev;
        }
        drop(st);
        if let Some(cpu) = cleanup_on {
            self.ops.request_cleanup(cpu);
        }
        Ok(CpuMask::of(new.0))
    }
}

impl<O: ApicOps> IrqChip for VectorDomain<O> {
    fn name(&self) -> &str {
        "APIC"
    }

    // The local APIC has no per-vector mask: masking happens at the levels
    // above (IOAPIC entry, MSI mask bit).
    fn mask(&self, _d: &IrqData<'_>) {}
    fn unmask(&self, _d: &IrqData<'_>) {}

    fn ack(&self, d: &IrqData<'_>) {
        self.complete_move(d.irq());
        self.ops.eoi();
    }

    fn eoi(&self, d: &IrqData<'_>) {
        self.complete_move(d.irq());
        self.ops.eoi();
    }

    fn startup(&self, d: &IrqData<'_>) {
        // A managed irq in shutdown gets a vector from its reservation.
        let _ = self.activate(d.irq());
    }

    fn shutdown(&self, d: &IrqData<'_>) {
        // A managed irq gives its vector back to its reservation (the
        // reservation itself stays, so it can start again on any CPU of its
        // mask); unmanaged irqs keep their vector.
        let irq = d.irq();
        let mut st = self.state.lock();
        let Some(e) = st.irqs.get(&irq).copied() else {
            return;
        };
        if e.managed.is_none() {
            return;
        }
        for (cpu, v) in e.cur.into_iter().chain(e.prev) {
            self.release(&mut st, irq, cpu, v);
        }
        self.release_queued(&mut st, irq);
        if let Some(e) = st.irqs.get_mut(&irq) {
            e.cur = None;
            e.prev = None;
        }
    }

    fn set_affinity(
        &self,
        d: &IrqData<'_>,
        mask: &CpuMask,
        force: bool,
    ) -> Result<AffinitySet, ChipError> {
        let effective = self.do_set_affinity(d.irq(), mask, force)?;
        Ok(AffinitySet::Applied { effective })
    }

    fn retrigger(&self, d: &IrqData<'_>) -> bool {
        match self.target(d.irq()) {
            Some(t) => {
                self.ops.send_ipi(t.apic_id, t.vector);
                true
            }
            None => false,
        }
    }

    fn compose_msi_msg(&self, d: &IrqData<'_>) -> Option<MsiMsg> {
        self.msi_msg(d.irq())
    }
}

/// The vector domain's CPU hotplug work, registered with
/// [`VectorDomain::register_hotplug`]:
///
/// * `BringUp` (control CPU, sparse lock held): [`VectorDomain::cpu_online`];
///   refuses to run without the sparse lock;
/// * dying (`Starting` down, on the outgoing CPU inside stop-machine, after
///   the core moved its interrupts away): replays vectors still latched in
///   the CPU's IRR on their new targets, then [`VectorDomain::cpu_offline`];
/// * `BringUp` down (CPU dead, or a failed bring-up rolled back):
///   [`VectorDomain::cpu_offline`] (idempotent).
///
/// **Level IOAPIC lines are not replayed by the dying callback**: irqcore
/// does not resend level irqs, so a level vector latched in the dying CPU's
/// IRR, which that CPU will never EOI, leaves the pin's remote IRR set. A
/// kernel with level lines registers only the `BringUp` phase
/// ([`VectorHotplug::from_domain`]) and does the dying work itself: for each
/// latched vector ([`VectorDomain::irq_for_vector`] on the dying CPU), a
/// level line gets [`IoApic::eoi_vector`](crate::IoApic::eoi_vector), an
/// edge one `IrqCore::inject_pending`; then [`VectorDomain::cpu_offline`]
/// (the reference kernel's `hotplug.rs` does this).
pub struct VectorHotplug<O> {
    domain: Arc<VectorDomain<O>>,
}

impl<O> VectorHotplug<O> {
    /// The callbacks of `domain` (to register by hand; prefer
    /// [`VectorDomain::register_hotplug`]).
    pub fn from_domain(domain: Arc<VectorDomain<O>>) -> Self {
        Self { domain }
    }
}

impl<O: ApicOps + 'static> VectorDomain<O> {
    /// Registers the domain's hotplug callbacks with `core` (see
    /// [`VectorHotplug`]).
    pub fn register_hotplug<P: irqcore::Platform>(
        self: &Arc<Self>,
        core: &irqcore::IrqCore<P>,
    ) -> Result<(), irqcore::IrqError> {
        let cb: Arc<dyn irqcore::HotplugCallback<P>> = Arc::new(VectorHotplug {
            domain: self.clone(),
        });
        core.register_hotplug(irqcore::CpuPhase::BringUp, cb.clone())?;
        core.register_hotplug(irqcore::CpuPhase::Starting, cb)
    }
}

impl<O: ApicOps, P: irqcore::Platform> irqcore::HotplugCallback<P> for VectorHotplug<O> {
    fn name(&self) -> &str {
        "x86/vector"
    }

    fn up(&self, ctx: &irqcore::hotplug::HotplugCtx<'_, P>) -> Result<(), irqcore::IrqError> {
        if ctx.phase != irqcore::CpuPhase::BringUp {
            return Ok(());
        }
        // The vector tables are rebuilt from the descriptors' state: that is
        // only sound while no descriptor can come or go.
        if !ctx.core.sparse_lock_held() {
            return Err(irqcore::IrqError::Busy);
        }
        self.domain
            .cpu_online(ctx.cpu)
            .map_err(|_| irqcore::IrqError::BadCpu(ctx.cpu))
    }

    fn down(&self, ctx: &irqcore::hotplug::HotplugCtx<'_, P>) {
        if ctx.phase == irqcore::CpuPhase::Starting {
            let latched = self.domain.pending_irqs(ctx.cpu);
            let _ = self.domain.cpu_offline(ctx.cpu);
            for irq in latched {
                let _ = ctx.core.inject_pending(irq);
            }
        } else {
            let _ = self.domain.cpu_offline(ctx.cpu);
        }
    }
}
