//! CPU hotplug through irqcore's phases (`IrqCore::cpu_up` / `cpu_down`).
//!
//! The kernel provides [`KernelCpuControl`] (INIT-SIPI-SIPI to start a CPU,
//! wait-and-INIT to stop one) and one `Starting`-phase callback,
//! [`LocalApicHotplug`], the x86 per-CPU work:
//!
//! - up (on the new CPU, interrupts off): start the LAPIC timer and enable
//!   its per-CPU irq.
//! - down ("dying": on the outgoing CPU inside stop-machine, after irqcore
//!   moved every irq away): stop the timer, replay device vectors already
//!   latched in this CPU's IRR on their new targets (what Linux's
//!   `fixup_irqs` does), then software-disable the LAPIC so nothing more is
//!   delivered here once stop-machine restores the interrupt flag.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};

use irqcore::hotplug::HotplugCtx;
use irqcore::{CpuControl, CpuId, CpuPhase, HotplugCallback, IrqError};

use kernel_common::irq::{CORE, KernelPlatform};

use crate::cpu::percpu;
use crate::devices;
use crate::hw::lapic;
use crate::smp;

/// Device vectors found latched on a dying CPU and replayed elsewhere.
pub static REPLAYED_ON_DOWN: AtomicU64 = AtomicU64::new(0);

/// How the kernel starts and stops CPUs for irqcore.
pub struct KernelCpuControl;

impl CpuControl for KernelCpuControl {
    fn boot_cpu(&self, cpu: CpuId) -> Result<(), IrqError> {
        smp::start_ap(cpu)
    }

    fn kill_cpu(&self, cpu: CpuId) -> Result<(), IrqError> {
        smp::wait_dead_and_reset(cpu);
        Ok(())
    }
}

/// The LAPIC's share of the `Starting` phase (see the module docs).
pub struct LocalApicHotplug;

impl HotplugCallback<KernelPlatform> for LocalApicHotplug {
    fn name(&self) -> &str {
        "x86-lapic"
    }

    fn up(&self, _ctx: &HotplugCtx<'_, KernelPlatform>) -> Result<(), IrqError> {
        devices::start_local_timer().map_err(|_| IrqError::InvalidArgument)
    }

    fn down(&self, _ctx: &HotplugCtx<'_, KernelPlatform>) {
        devices::stop_local_timer();
        replay_latched_vectors();
        lapic::disable_this_cpu();
    }
}

/// Replays device vectors latched in this (dying) CPU's IRR: irqcore already
/// retargeted their irqs, so an edge is re-raised on the new target
/// (`inject_pending`, hardware retrigger through the vector domain), and a
/// level IOAPIC line gets a directed EOI so the IOAPIC, whose Remote IRR
/// still waits for this CPU's EOI, delivers it again to the new target
/// (`IoApic::eoi_vector` completes the deferred retarget first). Then the
/// vector domain releases this CPU's vectors.
fn replay_latched_vectors() {
    let Ok(domain) = devices::vectors() else {
        return;
    };
    let cpu = percpu::current();
    let device_vectors = arch_x86::Vector::all().filter(|v| {
        (arch_x86::matrix::FIRST_EXTERNAL_VECTOR..arch_x86::matrix::FIRST_SYSTEM_VECTOR).contains(v)
    });
    for v in device_vectors {
        if !lapic::is_pending(v) {
            continue;
        }
        let Some(irq) = domain.irq_for_vector(cpu, v) else {
            continue;
        };
        REPLAYED_ON_DOWN.fetch_add(1, Ordering::Relaxed);
        if devices::is_level_irq(irq) {
            devices::ioapic_eoi(v);
        } else {
            let _ = CORE.inject_pending(irq);
        }
    }
    let _ = domain.cpu_offline(cpu);
}

/// Registers the kernel's hotplug callbacks (once, at boot).
pub fn init() -> Result<(), IrqError> {
    // The vector domain's bring-up work (`cpu_online` under the sparse lock,
    // and `cpu_offline` once a CPU is dead); its dying-CPU replay is the
    // kernel's own (`replay_latched_vectors`), which also handles level
    // IOAPIC lines.
    let domain = devices::vectors().map_err(|_| IrqError::InvalidArgument)?;
    let vectors: Arc<dyn HotplugCallback<KernelPlatform>> =
        Arc::new(arch_x86::VectorHotplug::from_domain(domain.clone()));
    CORE.register_hotplug(CpuPhase::BringUp, vectors)?;
    CORE.register_hotplug(CpuPhase::Starting, Arc::new(LocalApicHotplug))
}
