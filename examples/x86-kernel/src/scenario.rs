//! The test scenario the BSP runs, phase by phase: ACPI, the LAPIC, the
//! IOAPIC, the PIT and the edu devices (or the 8259) around kernel-common's
//! shared steps (`kernel_common::scenario`).

use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use irqcore::{CpuId, CpuMask};
use kernel_common::exit::fail;
use kernel_common::irq::CORE;
use kernel_common::scenario::{self as common, PATIENCE_US, wait_ms, wait_until};
use kernel_common::source::mask_bits;
use kernel_common::{ipi_test, smp};

use crate::cpu::percpu;
use crate::devices::{self, EDU_INTX, EDU_MSI, Edu, PIT, TIMER};
use crate::hotplug::{self, KernelCpuControl};
use crate::hw::{cpu, lapic, pic, pit};
use crate::irq::vectors;
use crate::{acpi, check, kprintln, time};

/// PVH `hvm_start_info` magic (Xen `arch-x86/hvm/start_info.h`).
const PVH_MAGIC: u32 = 0x336e_c578;

fn rsdp_from(start_info: u32) -> u64 {
    if start_info == 0 {
        return 0;
    }
    // SAFETY: PVH passes the physical address of hvm_start_info in ebx; it
    // is in low RAM, identity-mapped; fields per start_info.h (magic at 0,
    // version at 4, rsdp_paddr at 0x20 since version 1).
    unsafe {
        let p = start_info as usize as *const u32;
        if p.read_volatile() != PVH_MAGIC || p.add(1).read_volatile() < 1 {
            return 0;
        }
        (start_info as usize as *const u8)
            .add(0x20)
            .cast::<u64>()
            .read_unaligned()
    }
}

/// Runs the whole scenario and exits QEMU.
pub fn run(start_info: u32) -> ! {
    kprintln!("irqcore x86_64 reference kernel");
    // SAFETY: RAM above the image (QEMU -m 128M, identity-mapped) that
    // nothing else uses.
    unsafe { kernel_common::heap::init_after_image() };

    // ----- discovery -------------------------------------------------------
    let madt = match acpi::discover(rsdp_from(start_info)) {
        Ok(m) => m,
        Err(e) => fail(&alloc::format!("ACPI: {}", e.describe())),
    };
    let bsp_apic = cpu::initial_apic_id();
    let mut cpus: Vec<u32> = madt
        .cpus
        .iter()
        .copied()
        .filter(|&a| a != bsp_apic)
        .collect();
    cpus.insert(0, bsp_apic);
    kprintln!(
        "MADT: LAPIC {:#x}, {} CPUs (APIC ids {:?}), {} IOAPIC(s), ISA overrides {:?}",
        madt.lapic_addr,
        cpus.len(),
        cpus,
        madt.ioapics.len(),
        madt.overrides
            .iter()
            .map(|o| (o.bus_irq, o.gsi))
            .collect::<Vec<_>>()
    );
    check!(
        madt.cpus.contains(&bsp_apic),
        "the BSP (APIC id {bsp_apic}) is in the MADT"
    );
    check!(!madt.ioapics.is_empty(), "the MADT lists an IOAPIC");
    percpu::set_cpus(&cpus);
    let n = percpu::nr_cpus();

    // ----- BSP interrupt setup ---------------------------------------------
    // PCAT_COMPAT: 8259s are present and may have been left live by the
    // firmware (SeaBIOS leaves the master at vector 8).
    if madt.pcat_compat {
        pic::remap_and_mask();
    }
    lapic::set_base(madt.lapic_addr as usize);
    lapic::init_this_cpu(vectors::SPURIOUS);
    check!(lapic::id() == bsp_apic, "LAPIC id matches CPUID");
    time::calibrate();
    let t_start = time::now_us();
    let _ = CORE.set_cpu_online(CpuId::BOOT, true);
    if let Err(e) = devices::setup_percpu() {
        fail(e)
    }
    if let Err(e) = devices::start_local_timer() {
        fail(e)
    }
    if hotplug::init().is_err() {
        fail("register_hotplug")
    }
    cpu::sti();
    let ticked = wait_until(PATIENCE_US, || TIMER.on(CpuId::BOOT) >= 3);
    check!(ticked, "LAPIC timer ticks on the BSP");
    if cfg!(feature = "pic") {
        pic_boot(n, t_start);
    }

    // ----- SMP -------------------------------------------------------------
    common::bring_up(n, &KernelCpuControl, "INIT-SIPI-SIPI + cpu_up");
    let all = CpuMask::first_n(n as usize);

    // ----- devices ---------------------------------------------------------
    for r in [
        devices::setup_ioapics(&madt),
        devices::setup_pit(&madt),
        devices::setup_edu(&madt),
    ] {
        if let Err(e) = r {
            fail(e)
        }
    }
    for s in devices::device_sources() {
        if s.move_to(&all).is_err() {
            fail("initial set_affinity")
        }
        s.settle();
    }
    devices::start_pit();
    devices::GENERATOR_ON.store(true, Ordering::Release);
    EDU_INTX.paused.store(false, Ordering::Release);
    EDU_MSI.paused.store(false, Ordering::Release);
    wait_ms(30);
    check!(PIT.total() > 0, "PIT interrupts arrive through the IOAPIC");
    check!(EDU_INTX.handled() > 0, "edu INTx interrupts handled");
    check!(EDU_MSI.handled() > 0, "edu MSI interrupts handled");

    // ----- affinity --------------------------------------------------------
    let t = time::now_us();
    for c in CpuId::all(n as usize) {
        affinity_to(c);
    }
    for s in devices::device_sources() {
        let _ = s.move_to(&all);
    }
    kprintln!(
        "affinity: every source moved to each of {n} CPU(s) in {} us",
        time::now_us() - t
    );

    // ----- IPIs, lazy disable ------------------------------------------------
    common::ipi_traffic(n);
    common::lazy_disable(&EDU_MSI, true);
    common::lazy_disable(&EDU_INTX, false);

    // ----- hotplug ---------------------------------------------------------
    common::hotplug_each(n, "cpu_down + INIT", hotplug_cycle);
    wait_ms(10);
    common::alloc_free_during_hotplug(n, &KernelCpuControl, &devices::device_sources());

    // ----- quiesce and final checks ------------------------------------------
    devices::GENERATOR_ON.store(false, Ordering::Release);
    let quiet = wait_until(PATIENCE_US, || {
        EDU_INTX.idle() && EDU_MSI.idle() && ipi_test::done()
    });
    pit::stop();
    check!(quiet, "all caused interrupts completed");
    // Stop every local timer so tick counts are stable for the final checks.
    smp::run_on_cpus(&CORE.online_cpus(), &|_| devices::stop_local_timer());
    let call_irq = devices::CALL_IRQ.get().copied();
    common::final_checks(n, &TIMER, call_irq, &[&EDU_INTX, &EDU_MSI], &[&PIT]);
    kprintln!(
        "hotplug: {} device vector(s) found latched on a dying CPU and replayed",
        hotplug::REPLAYED_ON_DOWN.load(Ordering::Relaxed)
    );
    common::end(t_start, format_args!(""))
}

/// The `--pic` boot (`-M pc`, one CPU): the IOAPIC is never opened; the PIT
/// and the edu INTx line go through arch-x86's `Pic8259Chip`.
fn pic_boot(n: u32, t_start: u64) -> ! {
    check!(n == 1, "the 8259 boot runs on one CPU ({n} here)");
    if let Err(e) = devices::setup_pic() {
        fail(e)
    }
    devices::start_pit();
    devices::GENERATOR_ON.store(true, Ordering::Release);
    EDU_INTX.paused.store(false, Ordering::Release);
    wait_ms(30);
    let ok = wait_until(PATIENCE_US, || {
        PIT.total() >= 20 && EDU_INTX.handled() >= 10
    });
    check!(ok, "PIT and edu INTx interrupts arrive through the 8259");
    devices::GENERATOR_ON.store(false, Ordering::Release);
    let quiet = wait_until(PATIENCE_US, || EDU_INTX.idle() && ipi_test::done());
    pit::stop();
    check!(quiet, "all caused interrupts completed");
    EDU_INTX.check(n);
    check!(
        devices::IOAPICS.get().is_none(),
        "the IOAPIC was never opened"
    );
    kernel_common::irq::check_health(n);
    let pic_spurious = devices::PIC.get().map_or((0, 0), |p| p.spurious_counts());
    devices::stop_local_timer();
    common::end(
        t_start,
        format_args!("; 8259 spurious IRQ 7/15: {pic_spurious:?}"),
    )
}

/// Moves every device source to `cpu` alone and checks that interrupts then
/// arrive there (and only there: `Source::allowed` is narrowed).
fn affinity_to(cpu: CpuId) {
    let target = CpuMask::of(cpu);
    for edu in [&EDU_INTX, &EDU_MSI] {
        pin(edu, &target);
    }
    move_pit(&target);
    let base: Vec<u64> = devices::device_sources()
        .iter()
        .map(|s| s.on(cpu))
        .collect();
    let ok = wait_until(PATIENCE_US, || {
        devices::device_sources()
            .iter()
            .zip(&base)
            .all(|(s, b)| s.on(cpu) >= b + 3)
    });
    for s in devices::device_sources() {
        let eff = s.effective();
        check!(
            eff == Some(target),
            "{}: effective affinity is cpu{} ({eff:?})",
            s.name,
            cpu.get()
        );
    }
    check!(
        ok,
        "affinity to cpu{}: every device source handled there",
        cpu.get()
    );
}

/// Pins `edu` to `mask` (quiesced move).
fn pin(edu: &Edu, mask: &CpuMask) {
    common::quiesce(edu);
    if let Err(e) = edu.src.move_to(mask) {
        check!(false, "{}: set_affinity({mask:?}): {e:?}", edu.src.name);
    }
    edu.src.settle();
    edu.paused.store(false, Ordering::Release);
}

/// Offline then online `cpu` while the devices keep firing. Before going
/// down, edu INTx is pinned to `cpu` alone (its affinity must break and it
/// must move to another online CPU) and edu MSI to `cpu` plus another CPU
/// (it must move within its mask).
fn hotplug_cycle(cpu: CpuId) {
    let others = CORE.online_cpus().and_not(&CpuMask::of(cpu));
    let other = others.iter().find(|c| c.get() != 0).unwrap_or(CpuId::BOOT);
    pin(&EDU_INTX, &CpuMask::of(cpu));
    pin(&EDU_MSI, &CpuMask::from_cpus([cpu, other]));
    // The PIT keeps ticking (1 kHz) on the outgoing CPU until irqcore moves
    // it inside stop-machine: a tick latched in its IRR meanwhile must be
    // replayed on the new target (hotplug::replay_latched_vectors).
    if PIT.move_to(&CpuMask::of(cpu)).is_err() {
        check!(false, "pit: set_affinity to cpu{}", cpu.get());
    }
    // While irqcore migrates them inside stop-machine, any remaining CPU may
    // receive them.
    for s in devices::device_sources() {
        s.allowed.fetch_or(mask_bits(&others), Ordering::AcqRel);
    }
    let Some(u) = common::unplug(cpu, &KernelCpuControl, &[&EDU_INTX, &EDU_MSI]) else {
        return;
    };
    common::check_moved_off(&u, &EDU_INTX.src);
    check!(
        u.broken() == 2,
        "irqcore reported the broken affinity of edu-intx and the PIT"
    );
    let msi_eff = EDU_MSI.src.effective();
    check!(
        msi_eff == Some(CpuMask::of(other)),
        "edu-msi moved within its mask to cpu{} ({msi_eff:?})",
        other.get()
    );
    // Settle the bookkeeping once nothing is in flight: edu raises handled,
    // PIT ticks latched on any online CPU handled (see `move_pit`).
    wait_until(PATIENCE_US, || EDU_INTX.idle() && EDU_MSI.idle());
    smp::run_on_cpus(&CORE.online_cpus(), &|_| {});
    for s in devices::device_sources() {
        s.settle();
    }
    let ticks = common::check_offline_quiet(&u, &TIMER, &[&EDU_INTX, &EDU_MSI]);
    if !common::replug(cpu, &KernelCpuControl, &TIMER, ticks) {
        return;
    }
    // Affinity to the returning CPU takes effect, for both edu functions.
    for edu in [&EDU_INTX, &EDU_MSI] {
        pin(edu, &CpuMask::of(cpu));
        let b = edu.src.on(cpu);
        let ok = wait_until(PATIENCE_US, || edu.src.on(cpu) >= b + 3);
        check!(
            ok,
            "{} handled on cpu{} after it came back",
            edu.src.name,
            cpu.get()
        );
    }
    let all = CORE.online_cpus();
    pin(&EDU_INTX, &all);
    pin(&EDU_MSI, &all);
    move_pit(&all);
}

/// Moves the PIT (which cannot be paused) and narrows its allowed CPUs only
/// once a tick that was already latched on the old target has been handled
/// there: running a no-op in the old CPU's stopper context does that, since
/// it re-enables interrupts first (a vCPU may lag far behind under TCG).
fn move_pit(mask: &CpuMask) {
    let old = PIT.effective().unwrap_or_default();
    if PIT.move_to(mask).is_err() {
        check!(false, "pit: set_affinity({mask:?})");
        return;
    }
    smp::run_on_cpus(&old.and(&CORE.online_cpus()), &|_| {});
    let before = PIT.total();
    wait_until(PATIENCE_US, || PIT.total() > before);
    PIT.settle();
}
