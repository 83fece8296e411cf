//! The kernel's use of irqcore: the [`IrqCore`] instance, the [`Platform`]
//! implementation, the vector -> irq table, and the interrupt entry.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use arrayvec::ArrayVec;
use irqcore::{
    ActionId, CoreConfig, CpuId, CpuMask, IrqCore, IrqEvent, IrqFlags, IrqNumber, Platform,
};

use crate::cpu::percpu;
use crate::hw::{cpu, lapic};
use crate::sync::IrqLock;

/// Vector layout (Intel SDM vol. 3, 10.8.3.1: the upper 4 bits are the
/// priority class; system vectors sit in the top class). Device vectors come
/// from arch-x86's vector domain (`devices::VECTORS`), per CPU, below
/// `arch_x86::matrix::FIRST_SYSTEM_VECTOR` (0xEC) and above the 8259's.
pub mod vectors {
    /// LAPIC timer (per CPU).
    pub const TIMER: u8 = 0xEF;
    /// Cross-CPU function call IPI.
    pub const CALL_FUNCTION: u8 = 0xF1;
    /// Self-IPI that replays interrupts irqcore asked to resend.
    pub const RESEND: u8 = 0xF2;
    /// Spurious vector (no EOI; SDM 10.9).
    pub const SPURIOUS: u8 = 0xFF;
}

/// The platform irqcore runs on.
pub struct KernelPlatform;

/// The interrupt core of this kernel.
pub static CORE: IrqCore<KernelPlatform> = IrqCore::with_config(
    KernelPlatform,
    CoreConfig {
        capacity: 1024,
        nr_cpus: percpu::MAX_CPUS as u32,
    },
);

/// irq number of each system vector (timer, IPIs; the same on every CPU),
/// `u32::MAX` for none.
static VECTOR_IRQ: [AtomicU32; 256] = [const { AtomicU32::new(u32::MAX) }; 256];

/// Interrupts on vectors with no irq (must stay 0).
pub static UNMAPPED_VECTORS: AtomicU64 = AtomicU64::new(0);
/// `IrqEvent`s irqcore reported (must stay 0 in a correct run).
pub static REPORTED_EVENTS: AtomicU64 = AtomicU64::new(0);
/// `IrqEvent::AffinityBroken` reports (expected when an irq pinned to a
/// CPU loses it to hotplug).
pub static AFFINITY_BROKEN: AtomicU64 = AtomicU64::new(0);
/// Spurious-vector interrupts (informational).
pub static SPURIOUS: AtomicU64 = AtomicU64::new(0);

/// Maps system vector `vector` to `irq` for the entry path.
pub fn map_vector(vector: u8, irq: IrqNumber) {
    VECTOR_IRQ[usize::from(vector)].store(irq.0, Ordering::Release);
}

/// The irq `vector` is mapped to on the executing CPU: a system vector's,
/// else the vector domain's (lock-free).
pub fn vector_irq(vector: u8) -> Option<IrqNumber> {
    match VECTOR_IRQ[usize::from(vector)].load(Ordering::Acquire) {
        u32::MAX => crate::devices::VECTORS
            .get()
            .and_then(|v| v.irq_for_vector(percpu::current(), vector)),
        n => Some(IrqNumber(n)),
    }
}

/// Called by the IDT dispatcher for vectors 32..=255, interrupts off.
pub fn entry(vector: u8) {
    if vector == vectors::SPURIOUS {
        SPURIOUS.fetch_add(1, Ordering::Relaxed);
        return; // no EOI for the spurious vector
    }
    let this = percpu::this();
    // A CPU is marked online before it enables interrupts and offline only
    // with interrupts off inside stop-machine, so nothing may reach it while
    // offline: a device vector here is a routing bug, an IPI a stranded
    // cross-call (seeds/001). Exception: a local timer tick latched before
    // the dying phase stopped the timer, taken when stop-machine restores
    // the interrupt flag on the way out.
    if vector != vectors::TIMER && !CORE.cpu_online(percpu::current()) {
        this.irqs_while_offline.fetch_add(1, Ordering::Relaxed);
    }
    // The 8259 (`--pic` boot): its vectors arrive through LINT0 in ExtINT
    // mode, with no LAPIC EOI. A spurious IRQ 7/15 is recognised (and
    // EOIed as the 8259 needs) by the chip, and dispatches nothing.
    if let Some(pic) = crate::devices::PIC.get() {
        match pic.classify(vector) {
            arch_x86::PicVector::Line(line) => {
                if CORE.handle_irq(IrqNumber(u32::from(line))).is_err() {
                    UNMAPPED_VECTORS.fetch_add(1, Ordering::Relaxed);
                }
                return;
            }
            arch_x86::PicVector::Spurious(_) => {
                SPURIOUS.fetch_add(1, Ordering::Relaxed);
                return;
            }
            arch_x86::PicVector::NotPic => {}
        }
    }
    match vector_irq(vector) {
        // The chips (LAPIC, vector domain) send the EOI from the flow.
        Some(irq) => {
            if CORE.handle_irq(irq).is_err() {
                UNMAPPED_VECTORS.fetch_add(1, Ordering::Relaxed);
                lapic::eoi();
            }
        }
        None => {
            UNMAPPED_VECTORS.fetch_add(1, Ordering::Relaxed);
            lapic::eoi();
        }
    }
}

/// Irqs irqcore asked to replay (drained by the RESEND self-IPI).
static RESEND_QUEUE: IrqLock<ArrayVec<IrqNumber, 64>> = IrqLock::new(ArrayVec::new_const());
/// Interrupt threads to run (drained in process context by `run_deferred`).
static THREAD_QUEUE: IrqLock<ArrayVec<(IrqNumber, ActionId), 64>> =
    IrqLock::new(ArrayVec::new_const());
/// Resend requests (informational).
pub static RESENDS: AtomicU64 = AtomicU64::new(0);

/// Handler of the RESEND self-IPI: replays every queued irq.
pub fn drain_resends() {
    loop {
        let next = RESEND_QUEUE.lock().pop();
        match next {
            Some(irq) => {
                let _ = CORE.handle_sw_resend(irq);
            }
            None => break,
        }
    }
}

/// Runs queued interrupt threads; called from process context (idle loops
/// and the BSP's wait loops) with interrupts enabled.
pub fn run_deferred() {
    loop {
        let next = THREAD_QUEUE.lock().pop();
        match next {
            Some((irq, action)) => {
                let _ = CORE.run_thread(irq, action);
            }
            None => break,
        }
    }
}

impl Platform for KernelPlatform {
    fn current_cpu(&self) -> CpuId {
        percpu::current()
    }

    fn local_irq_save(&self) -> IrqFlags {
        IrqFlags(usize::from(cpu::irq_save()))
    }

    fn local_irq_restore(&self, flags: IrqFlags) {
        cpu::irq_restore(flags.0 != 0);
    }

    fn local_irq_enabled(&self) -> bool {
        cpu::interrupts_enabled()
    }

    fn cpu_relax(&self) {
        core::hint::spin_loop();
    }

    fn run_on_cpus(&self, cpus: &CpuMask, work: &(dyn Fn(CpuId) + Sync)) {
        crate::smp::run_on_cpus(cpus, work);
    }

    fn flush_cross_calls(&self) {
        crate::smp::flush_cross_calls();
    }

    fn schedule_resend(&self, irq: IrqNumber) {
        RESENDS.fetch_add(1, Ordering::Relaxed);
        if RESEND_QUEUE.lock().try_push(irq).is_err() {
            REPORTED_EVENTS.fetch_add(1, Ordering::Relaxed);
        }
        lapic::send_self_ipi(vectors::RESEND);
    }

    fn wake_thread(&self, irq: IrqNumber, action: ActionId) -> irqcore::ThreadWake {
        if THREAD_QUEUE.lock().try_push((irq, action)).is_err() {
            REPORTED_EVENTS.fetch_add(1, Ordering::Relaxed);
        }
        irqcore::ThreadWake::Queued
    }

    fn report(&self, event: IrqEvent) {
        match event {
            IrqEvent::AffinityBroken(_) => AFFINITY_BROKEN.fetch_add(1, Ordering::Relaxed),
            _ => REPORTED_EVENTS.fetch_add(1, Ordering::Relaxed),
        };
        crate::serial::print(format_args!("irqcore event: {event:?}\n"));
    }
}
