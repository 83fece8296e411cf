//! The test scenario the boot CPU runs, phase by phase: the GIC, the timer
//! PPI, the PL031 RTC's SPI and PSCI around kernel-common's shared steps
//! (`kernel_common::scenario`).

use core::sync::atomic::Ordering;

use irqcore::{CpuId, CpuMask};
use kernel_common::exit::fail;
use kernel_common::scenario::{self as common, PATIENCE_US, wait_until};
use kernel_common::source::mask_bits;

use crate::devices::{self, RTC, TIMER};
use crate::irq::{self, CORE};
use crate::smp::{self, KernelCpuControl};
use crate::{check, cpu, kprintln, time};

/// Runs the whole scenario and exits QEMU.
pub fn run() -> ! {
    kprintln!("irqcore aarch64 reference kernel (QEMU virt, EL1)");
    // SAFETY: QEMU -m 128M: RAM is 0x4000_0000 up to 0x4800_0000, the image
    // at its start; nothing else uses the RAM after it.
    unsafe { kernel_common::heap::init_after_image() };
    let t_start = time::now_us();

    // ----- discovery and the boot CPU ------------------------------------
    let n = smp::discover();
    let version = match irq::init_gic() {
        Ok(v) => v,
        Err(e) => fail(e),
    };
    kprintln!(
        "{version:?} at the virt layout; {n} CPU(s) (PSCI AFFINITY_INFO); counter {} Hz",
        cpu::counter_hz()
    );
    if version == irq::GicVersion::V3 {
        let r = irq::REDISTRIBUTORS.load(Ordering::Relaxed);
        check!(
            r == n,
            "GICv3: one redistributor per CPU PSCI knows ({r} for {n})"
        );
    }
    let _ = CORE.set_cpu_online(CpuId::BOOT, true);
    for r in [irq::setup_ipis(), devices::setup_timer()] {
        if let Err(e) = r {
            fail(e)
        }
    }
    if let Err(e) = devices::start_local() {
        fail(&alloc::format!("boot CPU per-CPU irqs: {e:?}"))
    }
    cpu::enable_irqs();
    let ticked = wait_until(PATIENCE_US, || TIMER.on(CpuId::BOOT) >= 3);
    check!(ticked, "generic timer PPI ticks on cpu0 through irqcore");

    // ----- SPI: the PL031 RTC alarm ---------------------------------------
    if let Err(e) = devices::setup_rtc() {
        fail(e)
    }
    RTC.paused.store(false, Ordering::Release);
    let ok = wait_until(PATIENCE_US, || RTC.handled() >= 3);
    check!(ok, "PL031 alarm SPI handled through irqcore");

    // ----- MSI: edu on PCIe through the ITS (GICv3) or GICv2m (GICv2) ------
    if let Err(e) = crate::msi::setup() {
        fail(e)
    }

    // ----- SMP, SGIs, lazy disable -----------------------------------------
    common::bring_up(n, &KernelCpuControl, "PSCI CPU_ON + cpu_up");
    for c in CpuId::all(n as usize) {
        let ok = wait_until(PATIENCE_US, || TIMER.on(c) >= 3);
        check!(ok, "timer PPI ticks on cpu{c}");
    }
    common::ipi_traffic(n);
    common::lazy_disable(&RTC, false);

    // ----- affinity ---------------------------------------------------------
    let t = time::now_us();
    for c in CpuId::all(n as usize) {
        affinity_to(c);
    }
    if devices::move_rtc(&CpuMask::first_n(n as usize)).is_err() {
        check!(false, "rtc: set_affinity(all)");
    }
    kprintln!(
        "affinity: the RTC moved to each of {n} CPU(s) in {} us",
        time::now_us() - t
    );

    // ----- hotplug ----------------------------------------------------------
    common::hotplug_each(n, "cpu_down + PSCI CPU_OFF", hotplug_cycle);

    // ----- MSI affinity and hotplug ----------------------------------------------
    crate::msi::run_phase(n);

    common::alloc_free_during_hotplug(n, &KernelCpuControl, &[&RTC.src]);

    // ----- quiesce and final checks -------------------------------------------
    RTC.paused.store(true, Ordering::Release);
    let msi_quiet = crate::msi::quiesce();
    check!(msi_quiet, "edu-msi: the last MSI completed");
    let quiet = wait_until(PATIENCE_US, || {
        RTC.idle() && kernel_common::ipi_test::done()
    });
    check!(quiet, "all caused interrupts completed");
    // Stop every local timer so tick counts are stable for the final checks.
    smp::run_on_cpus(&CORE.online_cpus(), &|_| devices::stop_local_timer());
    let call_irq = irq::ipis().map(|i| i.call);
    crate::msi::final_checks(n);
    common::final_checks(n, &TIMER, call_irq, &[&RTC], &[]);
    common::end(t_start, format_args!(""))
}

/// Moves the RTC to `cpu` alone and checks that its interrupts then arrive
/// there (and only there: `Source::allowed` is narrowed).
fn affinity_to(cpu: CpuId) {
    let target = CpuMask::of(cpu);
    if let Err(e) = devices::move_rtc(&target) {
        check!(false, "rtc: set_affinity to cpu{}: {e:?}", cpu.get());
        return;
    }
    let base = RTC.src.on(cpu);
    let ok = wait_until(PATIENCE_US, || RTC.src.on(cpu) >= base + 3);
    let eff = RTC.src.effective();
    check!(
        eff == Some(target),
        "rtc: effective affinity is cpu{} ({eff:?})",
        cpu.get()
    );
    check!(ok, "affinity to cpu{}: the RTC is handled there", cpu.get());
    if !ok {
        devices::dump_rtc();
    }
}

/// Offline then online `cpu` while the RTC keeps firing. Before going
/// down the RTC is pinned to `cpu` alone: its affinity must break (reported
/// by irqcore) and it must move to an online CPU.
fn hotplug_cycle(cpu: CpuId) {
    if devices::move_rtc(&CpuMask::of(cpu)).is_err() {
        check!(false, "rtc: pin to cpu{}", cpu.get());
    }
    // While irqcore migrates it inside stop-machine, any remaining CPU may
    // receive it.
    let others = CORE.online_cpus().and_not(&CpuMask::of(cpu));
    RTC.src
        .allowed
        .fetch_or(mask_bits(&others), Ordering::AcqRel);
    let Some(u) = common::unplug(cpu, &KernelCpuControl, &[&RTC]) else {
        return;
    };
    common::check_moved_off(&u, &RTC.src);
    check!(
        u.broken() == 1,
        "irqcore reported the RTC's broken affinity"
    );
    let ticks = common::check_offline_quiet(&u, &TIMER, &[&RTC]);
    if !common::replug(cpu, &KernelCpuControl, &TIMER, ticks) {
        return;
    }
    affinity_to(cpu);
    if devices::move_rtc(&CORE.online_cpus()).is_err() {
        check!(false, "rtc: set_affinity(all)");
    }
}
