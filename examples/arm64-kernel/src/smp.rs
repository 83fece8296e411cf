//! SMP, the PSCI part: discovering and starting CPUs with PSCI `CPU_ON`,
//! powering one off with `CPU_OFF` once irqcore took it offline;
//! [`KernelCpuControl`] gives these to irqcore's hotplug. The idle loop,
//! the stopper context, jobs and cross-calls are kernel-common's
//! (re-exported here for the Xen scenario).

use core::sync::atomic::{AtomicU64, Ordering};

use irqcore::{CpuControl, CpuId, IrqError};
use kernel_common::exit::cpu_timeout;
pub use kernel_common::smp::{job_done, run_on_cpus, start_job};

use crate::cpu::{self, MAX_CPUS};
use crate::psci::{self, AffinityState};
use crate::{SECONDARY_STACK_TOP, kprintln, time};

const STACK_SIZE: usize = 64 * 1024;

#[repr(C, align(16))]
struct Stacks([[u8; STACK_SIZE]; MAX_CPUS]);
static mut STACKS: Stacks = Stacks([[0; STACK_SIZE]; MAX_CPUS]);

/// MPIDR affinity of each logical CPU.
static MPIDR: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(u64::MAX) }; MAX_CPUS];

/// How long a CPU may take to start or stop under TCG on a busy host.
const CPU_TIMEOUT_US: u64 = 5_000_000;

unsafe extern "C" {
    /// The PSCI entry point in boot.rs.
    fn secondary_entry();
}

/// Finds the CPUs QEMU gives: logical CPU `n` is the one with MPIDR
/// affinity `Aff0 = n` (QEMU virt numbers CPUs 0..8 this way within the
/// first cluster), and PSCI `AFFINITY_INFO` says whether it exists (it
/// returns INVALID_PARAMETERS for an affinity no CPU has). The boot CPU is
/// CPU 0. Returns the number of CPUs.
pub fn discover() -> u32 {
    discover_up_to(MAX_CPUS as u32)
}

/// [`discover`] for at most `max` CPUs: a Xen guest's count comes from its
/// device tree, because Xen's virtual PSCI answers `AFFINITY_INFO` with OFF
/// (not INVALID_PARAMETERS) for a vCPU that does not exist.
pub fn discover_up_to(max: u32) -> u32 {
    MPIDR[0].store(cpu::mpidr_affinity(), Ordering::Relaxed);
    let mut n = 1;
    for c in 1..(max as usize).clamp(1, MAX_CPUS) as u64 {
        match psci::affinity_info(c) {
            Ok(_) => {
                MPIDR[n].store(c, Ordering::Relaxed);
                n += 1;
            }
            Err(_) => break,
        }
    }
    n as u32
}

/// The MPIDR affinity of logical CPU `cpu` (as discovered).
pub fn mpidr_of_cpu(cpu: CpuId) -> u64 {
    mpidr_of(cpu)
}

fn mpidr_of(cpu: CpuId) -> u64 {
    MPIDR[cpu.index()].load(Ordering::Relaxed)
}

/// Starts `cpu` with PSCI `CPU_ON` and waits until it has run irqcore's
/// `cpu_starting` on itself; returns that call's result.
fn start_cpu(cpu: CpuId) -> Result<(), IrqError> {
    let i = cpu.index();
    if i >= MAX_CPUS || mpidr_of(cpu) == u64::MAX {
        return Err(IrqError::BadCpu(cpu));
    }
    // SAFETY: only the address of this CPU's stack is taken; the stack is
    // used by that CPU alone (a previous incarnation is powered off).
    let top = unsafe { (&raw mut STACKS.0[i]) as usize + STACK_SIZE };
    SECONDARY_STACK_TOP[i].store(top as u64, Ordering::Release);
    kernel_common::smp::prepare_start(cpu);
    if let Err(e) = psci::cpu_on(
        mpidr_of(cpu),
        secondary_entry as *const () as u64,
        cpu.get().into(),
    ) {
        kprintln!("PSCI CPU_ON cpu{}: {e:?}", cpu.get());
        return Err(IrqError::BadCpu(cpu));
    }
    kernel_common::smp::wait_started(cpu, CPU_TIMEOUT_US)
        .unwrap_or_else(|| cpu_timeout(cpu, "did not start"))
}

/// Rust entry of a secondary CPU, on its own stack, MMU on, IRQs masked:
/// the `Starting` phase (GIC CPU interface and redistributor, SGIs, timer)
/// and the idle loop are kernel-common's.
#[unsafe(no_mangle)]
extern "C" fn secondary_main(index: u64) -> ! {
    // The boot CPU hands each secondary the index of a CpuId it started.
    let cpu = CpuId::new(index as u32).expect("secondary index below MAX_CPUS");
    kernel_common::smp::secondary_main(cpu)
}

/// PSCI `CPU_OFF` (IRQs masked; the dying phase already quiesced the GIC
/// CPU interface and the timer).
pub fn power_off() -> ! {
    cpu::disable_irqs();
    let e = psci::cpu_off();
    kprintln!("PSCI CPU_OFF failed on cpu{}: {e:?}", cpu::current().get());
    cpu::halt_forever()
}

/// Waits until `cpu` is powered off (PSCI `AFFINITY_INFO`).
fn wait_off(cpu: CpuId) -> Result<(), IrqError> {
    let t0 = time::now_us();
    loop {
        match psci::affinity_info(mpidr_of(cpu)) {
            Ok(AffinityState::Off) => return Ok(()),
            Ok(_) if time::now_us() - t0 < CPU_TIMEOUT_US => core::hint::spin_loop(),
            Ok(_) => cpu_timeout(cpu, "did not power off"),
            Err(_) => return Err(IrqError::BadCpu(cpu)),
        }
    }
}

/// How the kernel starts and stops CPUs for irqcore's hotplug.
pub struct KernelCpuControl;

impl CpuControl for KernelCpuControl {
    fn boot_cpu(&self, cpu: CpuId) -> Result<(), IrqError> {
        start_cpu(cpu)
    }

    fn kill_cpu(&self, cpu: CpuId) -> Result<(), IrqError> {
        wait_off(cpu)
    }
}
