//! CPU hotplug: ordered phases with backend callbacks, the sparse lock, and
//! migration of interrupts off a dying CPU.
//!
//! # Phases
//!
//! Bringing CPU `n` up runs, in order (callbacks of one phase in
//! registration order):
//!
//! | phase      | runs on      | sparse lock | typical work |
//! |------------|--------------|-------------|--------------|
//! | `Prepare`  | control CPU  | free        | allocate per-CPU resources, **including descriptors** (Xen per-vCPU VIRQs and IPIs) |
//! | `BringUp`  | control CPU  | **held**    | walk all descriptors: set up the new CPU's vector space (x86) |
//! | `Starting` | the new CPU, interrupts off | held (by the control CPU) | per-CPU controller init (GIC redistributor wake, LAPIC) |
//! | `Online`   | control CPU  | free        | anything that allocates or sleeps |
//!
//! Taking it down runs the `down` callbacks in the reverse order:
//! `Online` ("pre-down"), `Starting` ("dying": on the outgoing CPU inside
//! stop-machine, after the core migrated every interrupt away), `BringUp`
//! ("dead": after the CPU stopped), `Prepare` ("post-dead").
//!
//! # Why the sparse lock is held, and why that cannot deadlock
//!
//! The bring-up and dying phases walk every descriptor (vector tables,
//! migration). The sparse lock guarantees none appears or vanishes under the
//! walk (the reason Linux keeps `irq_lock_sparse()` across these steps).
//! Seed 000 is the failure this causes when a backend *also* needs to
//! allocate a descriptor for the new CPU from inside those steps: Xen's
//! per-vCPU VIRQ/IPI binding deadlocked on the sparse lock. Here the phases
//! say where each kind of work belongs: allocation goes in `Prepare` or
//! `Online`, which run with the lock free. An allocation attempted while the
//! lock is held for the transition (from the control CPU or from the CPU in
//! transition) returns [`IrqError::SparseLockHeldByCaller`] at once instead
//! of deadlocking, so a misplaced callback is a visible error.

mod callbacks;

pub use crate::ids::HotplugId;
use callbacks::Registered;
pub use callbacks::{Direction, HotplugCallback, HotplugCtx, HotplugRegistration};

use crate::cpumask::CpuMask;
use crate::desc::{DeliveryFlags, DescInner, LineState};
use crate::error::IrqError;
use crate::ids::{CpuId, IrqNumber};
use crate::instance::IrqCore;
use crate::lockdep::LockClass;
use crate::platform::{IrqEvent, Platform};
use crate::stop_machine::CpuDownError;
use crate::store::SparseGuard;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

/// A hotplug phase (see the module docs for what runs where).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CpuPhase {
    /// Before the CPU starts; control CPU; sparse lock free.
    Prepare,
    /// Control CPU, sparse lock held.
    BringUp,
    /// On the new (or, going down, the dying) CPU with interrupts off.
    Starting,
    /// After the CPU is online; control CPU; sparse lock free.
    Online,
}

/// What the kernel does to start and stop a CPU.
pub trait CpuControl {
    /// Starts `cpu` (INIT-SIPI-SIPI, PSCI CPU_ON, ...). The new CPU must call
    /// [`IrqCore::cpu_starting`] on itself with interrupts off; this returns
    /// that call's result once it has returned.
    fn boot_cpu(&self, cpu: CpuId) -> Result<(), IrqError>;

    /// `cpu` has left stop-machine marked offline with interrupts off:
    /// return once it no longer executes kernel code (parked or powered off).
    fn kill_cpu(&self, cpu: CpuId) -> Result<(), IrqError>;
}

/// Hotplug state kept in the core.
pub(crate) struct HotplugState<P: Platform> {
    callbacks: spin::Mutex<Vec<Registered<P>>>,
    /// Serialises transitions.
    busy: spin::Mutex<()>,
    /// CPU (index + 1) whose `Starting` up-phase is expected.
    starting: core::sync::atomic::AtomicU32,
    /// The next [`HotplugId`].
    next_id: core::sync::atomic::AtomicU64,
}

impl<P: Platform> HotplugState<P> {
    pub(crate) const fn new() -> Self {
        Self {
            callbacks: spin::Mutex::new(Vec::new()),
            busy: spin::Mutex::new(()),
            starting: core::sync::atomic::AtomicU32::new(0),
            next_id: core::sync::atomic::AtomicU64::new(1),
        }
    }
}

impl<P: Platform> IrqCore<P> {
    /// Runs the `up` callbacks of `phase`; on failure runs the `down` of the
    /// ones that succeeded (reverse) and returns the error.
    fn run_up(&self, cpu: CpuId, phase: CpuPhase) -> Result<(), IrqError> {
        let cbs = self.callbacks_of(phase);
        let ctx = HotplugCtx {
            core: self,
            cpu,
            phase,
            direction: Direction::Up,
        };
        for (i, cb) in cbs.iter().enumerate() {
            if let Err(e) = cb.up(&ctx) {
                let down = HotplugCtx {
                    direction: Direction::Down,
                    ..ctx
                };
                for done in cbs[..i].iter().rev() {
                    done.down(&down);
                }
                return Err(e);
            }
        }
        Ok(())
    }

    fn run_down(&self, cpu: CpuId, phase: CpuPhase) {
        let ctx = HotplugCtx {
            core: self,
            cpu,
            phase,
            direction: Direction::Down,
        };
        for cb in self.callbacks_of(phase).iter().rev() {
            cb.down(&ctx);
        }
    }

    /// Brings `cpu` online through every phase (see the module docs).
    /// Call from process context on an online CPU.
    pub fn cpu_up(&self, cpu: CpuId, control: &dyn CpuControl) -> Result<(), IrqError> {
        if cpu.get() >= self.nr_cpus {
            return Err(IrqError::BadCpu(cpu));
        }
        self.check_may_wait()?;
        let me = self.platform.current_cpu();
        // Busy first: a nested call from a hotplug callback is refused the
        // same way in every build, before the lock-order record (which
        // would flag the nesting as an inversion).
        let _busy = self.hotplug.busy.try_lock().ok_or(IrqError::Busy)?;
        let _order = self.lock_order.acquire(me, LockClass::Hotplug);
        if self.cpu_online(cpu) {
            return Err(IrqError::CpuAlreadyOnline(cpu));
        }
        self.run_up(cpu, CpuPhase::Prepare)?;
        let sparse = match self.lock_sparse() {
            Ok(g) => g,
            Err(e) => {
                self.run_down(cpu, CpuPhase::Prepare);
                return Err(e);
            }
        };
        self.store
            .hotplug_cpu
            .store(cpu.get() + 1, Ordering::Release);
        let r = self.run_up(cpu, CpuPhase::BringUp).and_then(|()| {
            self.hotplug
                .starting
                .store(cpu.get() + 1, Ordering::Release);
            let r = control.boot_cpu(cpu);
            self.hotplug.starting.store(0, Ordering::Release);
            if r.is_err() {
                self.run_down(cpu, CpuPhase::BringUp);
            }
            r
        });
        self.store.hotplug_cpu.store(0, Ordering::Release);
        drop(sparse);
        if let Err(e) = r {
            self.run_down(cpu, CpuPhase::Prepare);
            return Err(e);
        }
        if !self.cpu_online(cpu) {
            // The platform returned Ok without the CPU running cpu_starting.
            self.run_down(cpu, CpuPhase::BringUp);
            self.run_down(cpu, CpuPhase::Prepare);
            return Err(IrqError::CpuDidNotStart(cpu));
        }
        self.restore_managed_irqs(cpu);
        self.kick_resends();
        self.run_up(cpu, CpuPhase::Online)
    }

    /// Called by the new CPU itself, with interrupts off, from the kernel's
    /// secondary entry during [`CpuControl::boot_cpu`]: runs the `Starting`
    /// callbacks and marks the CPU online.
    pub fn cpu_starting(&self) -> Result<(), IrqError> {
        let cpu = self.platform.current_cpu();
        if self.hotplug.starting.load(Ordering::Acquire) != cpu.get() + 1 {
            return Err(IrqError::UnexpectedCpuStarting(cpu));
        }
        self.run_up(cpu, CpuPhase::Starting)?;
        self.set_cpu_online(cpu, true)
    }

    /// Takes `cpu` offline through every phase; its interrupts move to other
    /// online CPUs inside stop-machine. Call from process context on another
    /// online CPU.
    ///
    /// The sparse lock is never held while this waits for other CPUs to
    /// reach stop-machine (a CPU spinning for it could never get there): the
    /// dying CPU takes it itself once every online CPU is in stop-machine
    /// with interrupts off. A CPU enters its stopper between pieces of work,
    /// never in the middle of an irqcore call, so no CPU holds the lock
    /// then, and it is taken with a try-lock. Should it be held anyway (a
    /// kernel whose stopper preempts a task inside `alloc_descs`, or a
    /// platform thread that is not a CPU), the call fails with
    /// [`IrqError::Busy`], the CPU still online, instead of deadlocking.
    pub fn cpu_down(&self, cpu: CpuId, control: &dyn CpuControl) -> Result<(), IrqError> {
        self.check_may_wait()?;
        let me = self.platform.current_cpu();
        if cpu.get() >= self.nr_cpus {
            return Err(IrqError::BadCpu(cpu));
        }
        if me == cpu {
            return Err(IrqError::CpuDownSelf(cpu));
        }
        let _busy = self.hotplug.busy.try_lock().ok_or(IrqError::Busy)?;
        let _order = self.lock_order.acquire(me, LockClass::Hotplug);
        let online = self.online_cpus();
        if !online.contains(cpu) {
            return Err(IrqError::CpuNotOnline(cpu));
        }
        if online.weight() < 2 {
            return Err(IrqError::LastOnlineCpu(cpu));
        }
        self.run_down(cpu, CpuPhase::Online);
        let dying = || -> Result<(), IrqError> {
            let sparse = self.try_lock_sparse_dying(cpu)?;
            // Offline for the core before anything moves (as Linux clears
            // the online bit before migrating): an affinity change racing
            // with us either sees the CPU offline or is migrated below.
            self.set_cpu_online(cpu, false)?;
            self.migrate_irqs_off(cpu);
            self.run_down(cpu, CpuPhase::Starting);
            drop(sparse);
            Ok(())
        };
        let mark_offline = || {
            let _ = self.set_cpu_online(cpu, false);
        };
        let r = self
            .stop
            .take_cpu_down(&self.platform, &online, cpu, &dying, &mark_offline);
        if let Err(e) = r {
            let _ = self.run_up(cpu, CpuPhase::Online);
            return Err(match e {
                CpuDownError::Dying(e) => e,
                CpuDownError::Stop(e) => IrqError::StopMachine(e),
            });
        }
        // Replays queued by the migration: the kernel may hear now.
        self.kick_resends();
        let killed = control.kill_cpu(cpu);
        // The "dead" phase walks descriptors too: sparse lock held, taken
        // normally (no CPU waits for us now).
        let sparse = self.lock_sparse();
        self.store
            .hotplug_cpu
            .store(cpu.get() + 1, Ordering::Release);
        self.run_down(cpu, CpuPhase::BringUp);
        self.store.hotplug_cpu.store(0, Ordering::Release);
        drop(sparse);
        self.run_down(cpu, CpuPhase::Prepare);
        killed
    }

    /// The sparse lock for the dying step, on the dying CPU inside
    /// stop-machine: a try-lock, because a holder could only be something
    /// that is not a stopped CPU and waiting for it there would hang the
    /// machine.
    fn try_lock_sparse_dying(&self, cpu: CpuId) -> Result<SparseGuard<'_>, IrqError> {
        let mut g = self
            .store
            .try_lock_sparse(cpu.index())
            .ok_or(IrqError::Busy)?;
        g.held = Some(self.lock_order.acquire(cpu, LockClass::Sparse));
        Ok(g)
    }

    /// Walks all irqs; the caller guarantees the sparse lock is held.
    pub(crate) fn walk_irqs_unlocked(&self, f: &mut dyn FnMut(IrqNumber)) {
        let mut irqs = Vec::new();
        if let Ok(_s) = self.section() {
            self.store.for_each_unlocked(&mut |d| irqs.push(d.irq));
        }
        for irq in irqs {
            f(irq);
        }
    }

    /// Moves every interrupt targeting `cpu` to an online CPU of its
    /// affinity (or any online CPU: "broken affinity", reported), shuts down
    /// managed irqs left without an online CPU, replays pending ones on their
    /// new CPU, and disables per-CPU irqs on `cpu`. Runs on the dying CPU
    /// inside stop-machine with the sparse lock held.
    pub(crate) fn migrate_irqs_off(&self, cpu: CpuId) {
        let mut after = self.online_cpus();
        after.clear(cpu);
        let Ok(s) = self.section() else { return };
        self.store.for_each_unlocked(&mut |desc| {
            let mut g = self.lock_desc(desc);
            let broken = self.migrate_one(desc.irq, &mut g, cpu, &after);
            drop(g);
            if broken {
                self.platform.report(IrqEvent::AffinityBroken(desc.irq));
            }
        });
        drop(s);
    }

    /// Moves one irq off `cpu`; returns whether its affinity was broken.
    fn migrate_one(&self, irq: IrqNumber, g: &mut DescInner, cpu: CpuId, after: &CpuMask) -> bool {
        if g.line.contains(LineState::PER_CPU) {
            if g.percpu_enabled().contains(cpu) {
                if let Some(d) = g.data(irq) {
                    let chip = &g.levels[0].chip;
                    if !chip.disable(&d) {
                        chip.mask(&d);
                    }
                }
                g.masks.update(crate::desc::MaskKind::PercpuEnabled, |m| {
                    m.clear(cpu);
                });
            }
            return false;
        }
        let targets = if g.effective().is_empty() {
            g.affinity()
        } else {
            g.effective()
        };
        if !g.line.contains(LineState::STARTED) || !targets.contains(cpu) {
            if g.line.contains(LineState::MOVE_PENDING) && g.pending_mask().and(after).is_empty() {
                g.line.remove(LineState::MOVE_PENDING);
            }
            return false;
        }
        let mut wanted = g.affinity();
        if g.line.contains(LineState::MOVE_PENDING) && g.pending_mask().intersects(after) {
            wanted = g.pending_mask();
        }
        g.line.remove(LineState::MOVE_PENDING);
        let mut target = wanted.and(after);
        let mut broken = false;
        if target.is_empty() {
            if g.line.contains(LineState::AFFINITY_MANAGED) {
                self.managed_shutdown(irq, g);
                return false;
            }
            target = *after;
            wanted = *after;
            broken = true;
        }
        let Some(d) = g.data(irq) else { return broken };
        let masked_here = !g.line.contains(LineState::MASKED);
        let chip = g.levels[0].chip.clone();
        if masked_here {
            chip.mask(&d);
        }
        let r = match chip.set_affinity(&d, &target, true) {
            // No room on the CPUs it should go to: any online CPU rather
            // than a line left on a dead one. That breaks the affinity as
            // surely as no CPU of it being online (Linux reports both).
            Err(crate::error::ChipError::NoSpace) if target != *after => {
                wanted = *after;
                broken = true;
                chip.set_affinity(&d, after, true)
            }
            r => r,
        };
        if let Ok(r) = r {
            g.masks.set(crate::desc::MaskKind::Affinity, wanted);
            g.masks.set(crate::desc::MaskKind::Effective, r.effective());
        }
        if masked_here {
            chip.unmask(&IrqData::new(irq, &g.levels));
        }
        if g.delivery.contains(DeliveryFlags::PENDING) {
            self.check_irq_resend(irq, g, false);
        }
        broken
    }

    /// Shuts a managed irq down because no CPU of its mask is online; the
    /// disable depth is incremented so a driver's own disable survives the
    /// offline/online cycle (Linux 6.16's rule).
    fn managed_shutdown(&self, irq: IrqNumber, g: &mut DescInner) {
        if g.line.contains(LineState::MANAGED_SHUTDOWN) {
            return;
        }
        if g.line.contains(LineState::STARTED) {
            if let Some(d) = g.data(irq) {
                g.levels[0].chip.shutdown(&d);
            }
            g.line.remove(LineState::STARTED);
        }
        g.line
            .insert(LineState::MANAGED_SHUTDOWN | LineState::DISABLED | LineState::MASKED);
        g.depth = g.depth.saturating_add(1);
    }

    /// Restarts managed irqs whose mask contains the CPU that came online,
    /// exactly once per shutdown (whatever number of CPUs of the mask come
    /// back), and only if no driver disable is outstanding.
    fn restore_managed_irqs(&self, cpu: CpuId) {
        let Ok(g) = self.lock_sparse() else { return };
        let mut irqs = Vec::new();
        if let Ok(_s) = self.section() {
            self.store.for_each_unlocked(&mut |d| irqs.push(d.irq));
        }
        drop(g);
        for irq in irqs {
            let Ok(s) = self.section() else { return };
            let Ok(desc) = self.desc(&s, irq) else {
                continue;
            };
            let mut g = self.lock_desc(desc);
            if g.line.contains(LineState::MANAGED_SHUTDOWN) && g.affinity().contains(cpu) {
                g.line.remove(LineState::MANAGED_SHUTDOWN);
                g.depth = g.depth.saturating_sub(1);
                if g.depth == 0 && !g.actions.is_empty() {
                    self.startup(irq, &mut g, true);
                }
            }
        }
    }

    /// Marks `irq` as having an event to deliver and replays it on its
    /// current target (hardware retrigger or software resend). For arch code
    /// that finds interrupts latched on a dying CPU (x86: vectors set in the
    /// local APIC's IRR) after they were moved away.
    pub fn inject_pending(&self, irq: IrqNumber) -> Result<(), IrqError> {
        let s = self.section()?;
        let desc = self.desc(&s, irq)?;
        let mut g = self.lock_desc(desc);
        g.delivery.insert(DeliveryFlags::PENDING);
        g.delivery.remove(DeliveryFlags::REPLAY);
        self.check_irq_resend(irq, &mut g, false);
        drop(g);
        drop(s);
        self.kick_resends();
        Ok(())
    }
}

use crate::chip::IrqData;
