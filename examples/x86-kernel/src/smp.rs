//! SMP, the x86 part: starting application processors (INIT-SIPI-SIPI)
//! and parking one that went offline. The idle loop, the stopper context,
//! jobs and cross-calls are kernel-common's.

use core::sync::atomic::{AtomicBool, Ordering};

use irqcore::{CpuId, IrqError};
use kernel_common::exit::cpu_timeout;

use crate::boot::{AP_TRAMPOLINE, ap_tramp_end, ap_tramp_start};
use crate::cpu::{gdt, idt, percpu};
use crate::hw::{cpu, lapic};
use crate::irq::vectors;
use crate::{AP_BOOT_INDEX, AP_BOOT_STACK, kprintln, time};

const STACK_SIZE: usize = 64 * 1024;

#[repr(C, align(16))]
struct Stacks([[u8; STACK_SIZE]; percpu::MAX_CPUS]);
static mut AP_STACKS: Stacks = Stacks([[0; STACK_SIZE]; percpu::MAX_CPUS]);

/// Set by a CPU that finished dying (parked, interrupts off).
static DEAD: [AtomicBool; percpu::MAX_CPUS] = [const { AtomicBool::new(false) }; percpu::MAX_CPUS];

/// Copies the trampoline to low memory (once).
fn install_trampoline() {
    // SAFETY: the trampoline symbols delimit code inside the kernel image.
    let (start, end) = unsafe { (&ap_tramp_start as *const u8, &ap_tramp_end as *const u8) };
    let len = end as usize - start as usize;
    assert!(len <= 4096, "AP trampoline larger than a page");
    // SAFETY: 0x8000..0x9000 is conventional memory below the EBDA that
    // neither QEMU's PVH start info (0x21e0) nor the kernel uses; the APs
    // are not running yet.
    unsafe { core::ptr::copy_nonoverlapping(start, AP_TRAMPOLINE as *mut u8, len) }
}

/// Starts `cpu` (first boot or online again) and waits until it has run
/// irqcore's `cpu_starting` (the "starting" hotplug phase) on itself;
/// returns that call's result. Used by `hotplug::KernelCpuControl::boot_cpu`.
pub fn start_ap(cpu: CpuId) -> Result<(), IrqError> {
    static ONCE: spin::Once<()> = spin::Once::new();
    ONCE.call_once(install_trampoline);
    kernel_common::smp::prepare_start(cpu);
    DEAD[cpu.index()].store(false, Ordering::Release);
    // SAFETY: only the address of this CPU's stack is taken; the stack is
    // used only by that CPU (the BSP starts one AP at a time).
    let top = unsafe { (&raw mut AP_STACKS.0[cpu.index()]) as usize + STACK_SIZE };
    AP_BOOT_STACK.store(top as u64, Ordering::Release);
    AP_BOOT_INDEX.store(cpu.get(), Ordering::Release);
    let apic = percpu::apic_id_of(cpu);
    // INIT, then up to two SIPIs (SDM vol. 3, 8.4.4.1). QEMU needs no real
    // 10 ms INIT delay; 1 ms keeps the boot fast.
    lapic::send_init(apic);
    time::delay_us(1000);
    let page = (AP_TRAMPOLINE >> 12) as u8;
    for _ in 0..2 {
        lapic::send_sipi(apic, page);
        if let Some(r) = kernel_common::smp::wait_started(cpu, 200_000) {
            return r;
        }
    }
    kprintln!("cpu{} (APIC id {}) did not start", cpu.get(), apic);
    cpu_timeout(cpu, "did not start")
}

/// Rust entry of an AP, on its own stack, interrupts off: its descriptor
/// tables and LAPIC, then kernel-common's `Starting` phase (irqcore runs
/// the Starting callbacks: the LAPIC timer) and idle loop.
#[unsafe(no_mangle)]
extern "C" fn ap_main(index: u32) -> ! {
    // The BSP hands each AP the index of a CpuId it started.
    let cpu = CpuId::new(index).expect("AP index below MAX_CPUS");
    percpu::install(cpu);
    gdt::load_for(cpu);
    idt::load_for(cpu);
    lapic::init_this_cpu(vectors::SPURIOUS);
    kernel_common::smp::secondary_main(cpu)
}

/// Parks this CPU (`Arch::cpu_dead`): LAPIC off, interrupts off; the BSP
/// then sends INIT so that a later SIPI restarts it cleanly (`kill_cpu`).
pub fn die() -> ! {
    lapic::disable_this_cpu();
    DEAD[percpu::current().index()].store(true, Ordering::Release);
    cpu::halt_forever()
}

/// Waits until `cpu` is parked, then puts it into wait-for-SIPI.
pub fn wait_dead_and_reset(cpu: CpuId) {
    let t0 = time::now_us();
    while !DEAD[cpu.index()].load(Ordering::Acquire) {
        if time::now_us() - t0 > 2_000_000 {
            cpu_timeout(cpu, "did not die");
        }
        core::hint::spin_loop();
    }
    lapic::send_init(percpu::apic_id_of(cpu));
}
