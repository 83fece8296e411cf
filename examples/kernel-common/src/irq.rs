//! The kernel's irqcore instance: [`CORE`] over [`KernelPlatform`], whose
//! non-architectural parts live here (the resend queue and its self-IPI,
//! the interrupt thread queue, the stopper rendezvous, the event counters
//! the final checks read).

use core::sync::atomic::{AtomicU64, Ordering};

use arrayvec::ArrayVec;
use irqcore::{
    ActionId, CoreConfig, CpuId, CpuMask, IrqCore, IrqEvent, IrqFlags, IrqNumber, Platform,
    ThreadWake,
};

use crate::arch::{Ipi, arch};
use crate::sync::IrqLock;
use crate::{MAX_CPUS, check, smp};

/// The platform irqcore runs on: the installed [`Arch`](crate::Arch) plus
/// this crate's SMP and queues.
pub struct KernelPlatform;

/// The interrupt core of this kernel.
pub static CORE: IrqCore<KernelPlatform> = IrqCore::with_config(
    KernelPlatform,
    CoreConfig {
        capacity: 1024,
        nr_cpus: MAX_CPUS as u32,
    },
);

/// Interrupts that reached no irq (an unmapped vector or INTID; must stay 0).
pub static UNMAPPED: AtomicU64 = AtomicU64::new(0);
/// `IrqEvent`s irqcore reported other than broken affinity (must stay 0).
pub static REPORTED_EVENTS: AtomicU64 = AtomicU64::new(0);
/// `IrqEvent::AffinityBroken` reports (expected when an irq pinned to a
/// CPU loses it to hotplug).
pub static AFFINITY_BROKEN: AtomicU64 = AtomicU64::new(0);
/// Resend requests (informational).
pub static RESENDS: AtomicU64 = AtomicU64::new(0);
/// Spurious interrupts the controller signalled (informational).
pub static SPURIOUS: AtomicU64 = AtomicU64::new(0);
/// Interrupt thread wake-ups (informational).
pub static THREAD_WAKEUPS: AtomicU64 = AtomicU64::new(0);
/// Interrupts taken by a CPU while irqcore had it offline (must stay 0).
pub static IRQS_WHILE_OFFLINE: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Counts an interrupt taken on `cpu` if irqcore has it offline. A CPU is
/// marked online before it enables interrupts and offline only with them
/// off inside stop-machine, after its controller stopped delivering: so
/// nothing may arrive while offline (a device interrupt here is a routing
/// bug, an IPI a stranded cross-call, seeds/001).
pub fn note_arrival(cpu: CpuId) {
    if !CORE.cpu_online(cpu)
        && let Some(c) = IRQS_WHILE_OFFLINE.get(cpu.index())
    {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs `irq`'s flow; counts it in [`UNMAPPED`] if irqcore has no such irq.
/// Returns whether a flow ran.
pub fn dispatch(irq: IrqNumber) -> bool {
    let ran = CORE.handle_irq(irq).is_ok();
    if !ran {
        UNMAPPED.fetch_add(1, Ordering::Relaxed);
    }
    ran
}

/// Irqs irqcore asked to replay (drained by the resend self-IPI).
static RESEND_QUEUE: IrqLock<ArrayVec<IrqNumber, 64>> = IrqLock::new(ArrayVec::new_const());
/// Interrupt threads to run (drained in process context by `run_deferred`).
static THREAD_QUEUE: IrqLock<ArrayVec<(IrqNumber, ActionId), 64>> =
    IrqLock::new(ArrayVec::new_const());

/// The resend IPI's handler: replays every queued irq.
pub fn drain_resends() {
    loop {
        // The lock is dropped before the flow runs (it may queue again).
        let next = RESEND_QUEUE.lock().pop();
        let Some(irq) = next else { break };
        let _ = CORE.handle_sw_resend(irq);
    }
}

/// Runs queued interrupt threads; called from process context (idle loops
/// and the boot CPU's waits) with interrupts enabled.
pub fn run_deferred() {
    loop {
        let next = THREAD_QUEUE.lock().pop();
        let Some((irq, action)) = next else { break };
        let _ = CORE.run_thread(irq, action);
    }
}

/// The checks every boot ends with: no interrupt without an irq, no CPU
/// took one while offline, no event reported by irqcore.
pub fn check_health(nr_cpus: u32) {
    check!(
        UNMAPPED.load(Ordering::Relaxed) == 0,
        "no interrupt without a mapping"
    );
    for (c, n) in IRQS_WHILE_OFFLINE.iter().enumerate().take(nr_cpus as usize) {
        let n = n.load(Ordering::Relaxed);
        check!(n == 0, "cpu{c}: no interrupt taken while offline ({n})");
    }
    check!(
        REPORTED_EVENTS.load(Ordering::Relaxed) == 0,
        "irqcore reported no bad/spurious event"
    );
}

impl Platform for KernelPlatform {
    fn current_cpu(&self) -> CpuId {
        arch().cpu_id()
    }

    fn local_irq_save(&self) -> IrqFlags {
        let a = arch();
        let was = a.irqs_enabled();
        a.disable_irqs();
        IrqFlags(usize::from(was))
    }

    fn local_irq_restore(&self, flags: IrqFlags) {
        if flags.0 != 0 {
            arch().enable_irqs();
        }
    }

    fn local_irq_enabled(&self) -> bool {
        arch().irqs_enabled()
    }

    /// Also serves a pending [`smp::synchronize_cpus`] request: irqcore
    /// spins here with interrupts possibly off (stop-machine, grace
    /// periods), where the barrier's IPI cannot be taken.
    fn cpu_relax(&self) {
        smp::serve_barrier();
        core::hint::spin_loop();
    }

    /// The dispatcher enters its read-side section with a plain store;
    /// writers make every CPU fence through [`smp::synchronize_cpus`].
    const SYNCHRONIZE_CPUS: bool = true;

    fn synchronize_cpus(&self) {
        smp::synchronize_cpus();
    }

    /// Runs end with a plain store; a lock holder that changed a running
    /// irq kicks the running CPU with the resend IPI, whose dispatch
    /// drains irqcore's queue on its way out.
    const KICK_CPU: bool = true;

    fn kick_cpu(&self, cpu: CpuId) {
        // What the caller wrote (the queued irq) must be visible to `cpu`
        // before it takes the IPI: each architecture's `send_ipi` orders
        // normal-memory stores before its interrupt register write.
        arch().send_ipi(Ipi::Resend, &CpuMask::of(cpu));
    }

    fn run_on_cpus(&self, cpus: &CpuMask, work: &(dyn Fn(CpuId) + Sync)) {
        smp::run_on_cpus(cpus, work);
    }

    fn flush_cross_calls(&self) {
        smp::flush_cross_calls();
    }

    fn schedule_resend(&self, irq: IrqNumber) {
        RESENDS.fetch_add(1, Ordering::Relaxed);
        if RESEND_QUEUE.lock().try_push(irq).is_err() {
            REPORTED_EVENTS.fetch_add(1, Ordering::Relaxed);
        }
        let a = arch();
        a.send_ipi(Ipi::Resend, &CpuMask::of(a.cpu_id()));
    }

    fn wake_thread(&self, irq: IrqNumber, action: ActionId) -> ThreadWake {
        THREAD_WAKEUPS.fetch_add(1, Ordering::Relaxed);
        if THREAD_QUEUE.lock().try_push((irq, action)).is_err() {
            REPORTED_EVENTS.fetch_add(1, Ordering::Relaxed);
        }
        ThreadWake::Queued
    }

    fn report(&self, event: IrqEvent) {
        match event {
            IrqEvent::AffinityBroken(_) => AFFINITY_BROKEN.fetch_add(1, Ordering::Relaxed),
            _ => REPORTED_EVENTS.fetch_add(1, Ordering::Relaxed),
        };
        crate::kprintln!("irqcore event: {event:?}");
    }
}
