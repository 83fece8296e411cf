//! The test scenario the BSP runs, phase by phase, and the final checks.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use irqcore::{CpuId, CpuMask, IrqError, IrqNumber, IrqState, IrqStatus};

use crate::cpu::percpu;
use crate::devices::{self, EDU_INTX, EDU_MSI, Edu, IPI, PIT, Source};
use crate::exit::{ExitCode, exit};
use crate::hw::{cpu, lapic, pic, pit};
use crate::irq::{self, CORE, vectors};
use crate::sync::IrqLock;
use crate::{acpi, check, checks, heap, hotplug, kprintln, smp, table, time, watchdog};

/// Scenario phase marker for diagnostics (1 boot, 2 steady, 3 affinity,
/// 4 IPI burst, 5+k taking cpu k down, 100+k bringing it back, 200
/// descriptor allocation during hotplug).
pub static PHASE: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(1);

/// PVH `hvm_start_info` magic (Xen `arch-x86/hvm/start_info.h`).
const PVH_MAGIC: u32 = 0x336e_c578;

unsafe extern "C" {
    static __kernel_end: u8;
}

fn fail(what: &str) -> ! {
    kprintln!("RESULT: FAIL {what}");
    exit(ExitCode::Fail)
}

/// Waits (halting between interrupts, running interrupt threads) until
/// `cond` holds or `timeout_us` passed; returns whether it holds.
fn wait_until(timeout_us: u64, mut cond: impl FnMut() -> bool) -> bool {
    let t0 = time::now_us();
    loop {
        if cond() {
            return true;
        }
        if time::now_us() - t0 > timeout_us {
            return cond();
        }
        irq::run_deferred();
        cpu::sti_hlt();
    }
}

fn wait_ms(ms: u64) {
    let end = time::now_us() + ms * 1000;
    wait_until(ms * 1000 + 1000, || time::now_us() >= end);
}

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
    // Heap: 16 MiB from the first 2 MiB boundary after the image.
    // SAFETY: only the address of the linker symbol is taken.
    let end = unsafe { &__kernel_end as *const u8 as usize };
    let heap_start = (end + (2 << 20) - 1) & !((2 << 20) - 1);
    // SAFETY: RAM above the image (QEMU -m 128M) that nothing else uses.
    unsafe { heap::init(heap_start, 16 << 20) };

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
    let _ = CORE.set_cpu_online(CpuId(0), true);
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
    let ticked = wait_until(PATIENCE_US, || {
        percpu::of(CpuId(0)).ticks.load(Ordering::Relaxed) >= 3
    });
    check!(ticked, "LAPIC timer ticks on the BSP");
    if cfg!(feature = "pic") {
        pic_boot(n, t_start);
    }

    // ----- SMP -------------------------------------------------------------
    let t = time::now_us();
    for c in 1..n {
        if let Err(e) = hotplug::cpu_up(CpuId(c)) {
            check!(false, "cpu_up(cpu{c}): {e:?}");
        }
    }
    let all = CpuMask::first_n(n as usize);
    check!(
        CORE.online_cpus() == all,
        "all {n} CPUs online: {:?}",
        CORE.online_cpus()
    );
    kprintln!("smp: {n} CPU(s) online in {} us", time::now_us() - t);

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
        if devices::move_source(s, &all).is_err() {
            fail("initial set_affinity")
        }
        devices::settle_source(s);
    }
    devices::start_pit();
    devices::GENERATOR_ON.store(true, Ordering::Release);
    EDU_INTX.paused.store(false, Ordering::Release);
    EDU_MSI.paused.store(false, Ordering::Release);
    wait_ms(30);
    check!(PIT.total() > 0, "PIT interrupts arrive through the IOAPIC");
    check!(
        EDU_INTX.handled.load(Ordering::Relaxed) > 0,
        "edu INTx interrupts handled"
    );
    check!(
        EDU_MSI.handled.load(Ordering::Relaxed) > 0,
        "edu MSI interrupts handled"
    );

    // ----- affinity --------------------------------------------------------
    PHASE.store(3, Ordering::Relaxed);
    let t = time::now_us();
    for c in 0..n {
        affinity_to(CpuId(c));
    }
    for s in devices::device_sources() {
        let _ = devices::move_source(s, &all);
    }
    kprintln!(
        "affinity: every source moved to each of {n} CPU(s) in {} us",
        time::now_us() - t
    );

    // ----- IPIs ------------------------------------------------------------
    for c in 0..n {
        for _ in 0..16 {
            let _ = devices::send_test_ipi(CpuId(c));
        }
    }
    let ok = wait_until(PATIENCE_US, ipis_done);
    check!(ok, "every test IPI handled (burst)");

    // ----- lazy disable ----------------------------------------------------
    PHASE.store(4, Ordering::Relaxed);
    lazy_disable(&EDU_MSI);
    lazy_disable(&EDU_INTX);

    // ----- hotplug ---------------------------------------------------------
    let t = time::now_us();
    for c in 1..n {
        hotplug_cycle(CpuId(c));
    }
    if n > 1 {
        kprintln!(
            "hotplug: {} AP(s) offline and online again in {} us",
            n - 1,
            time::now_us() - t
        );
    } else {
        kprintln!("hotplug: single CPU, no AP to take offline");
    }
    wait_ms(10);

    // ----- descriptor allocation during hotplug ------------------------------
    PHASE.store(200, Ordering::Relaxed);
    alloc_free_during_hotplug(n);

    // ----- quiesce and final checks ------------------------------------------
    devices::GENERATOR_ON.store(false, Ordering::Release);
    let quiet = wait_until(PATIENCE_US, || {
        EDU_INTX.idle() && EDU_MSI.idle() && ipis_done()
    });
    pit::stop();
    check!(quiet, "all caused interrupts completed");
    // Stop every local timer so tick counts are stable for the final checks.
    smp::run_on_cpus(&CORE.online_cpus(), &|_| devices::stop_local_timer());
    final_checks(n);

    kprintln!();
    table::print();
    kprintln!(
        "total {} us; resends {}, spurious {}",
        time::now_us() - t_start,
        irq::RESENDS.load(Ordering::Relaxed),
        irq::SPURIOUS.load(Ordering::Relaxed)
    );
    finish()
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
        PIT.total() >= 20 && EDU_INTX.handled.load(Ordering::Relaxed) >= 10
    });
    check!(ok, "PIT and edu INTx interrupts arrive through the 8259");
    devices::GENERATOR_ON.store(false, Ordering::Release);
    let quiet = wait_until(PATIENCE_US, || EDU_INTX.idle() && ipis_done());
    pit::stop();
    check!(quiet, "all caused interrupts completed");
    let raised = EDU_INTX.raised.load(Ordering::Relaxed);
    let handled = EDU_INTX.handled.load(Ordering::Relaxed);
    check!(
        raised == handled,
        "edu-intx: raised {raised} == handled {handled}"
    );
    check!(
        EDU_INTX.unhandled.load(Ordering::Relaxed) == 0,
        "edu-intx: no handler call found the device idle"
    );
    check!(
        devices::IOAPICS.get().is_none(),
        "the IOAPIC was never opened"
    );
    check_irq_health();
    let pic_spurious = devices::PIC.get().map_or((0, 0), |p| p.spurious_counts());
    devices::stop_local_timer();
    kprintln!();
    table::print();
    kprintln!(
        "total {} us; 8259 spurious IRQ 7/15: {:?}",
        time::now_us() - t_start,
        pic_spurious
    );
    finish()
}

/// Checks every boot ends with: no interrupt on a vector without an irq,
/// no event reported by irqcore.
fn check_irq_health() {
    check!(
        irq::UNMAPPED_VECTORS.load(Ordering::Relaxed) == 0,
        "no interrupt on an unmapped vector"
    );
    check!(
        irq::REPORTED_EVENTS.load(Ordering::Relaxed) == 0,
        "irqcore reported no bad/spurious event"
    );
}

/// Prints the `RESULT:` line and exits with the matching status.
fn finish() -> ! {
    if checks::CHECKS.print_result() {
        exit(ExitCode::Pass)
    } else {
        exit(ExitCode::Fail)
    }
}

fn ipis_done() -> bool {
    (0..percpu::MAX_CPUS)
        .all(|c| IPI.sent[c].load(Ordering::Acquire) == IPI.handled[c].load(Ordering::Acquire))
}

/// Generous bound for anything that should happen "soon": under TCG on a
/// shared host a vCPU may not run for a while. Waits return as soon as their
/// condition holds, so this only matters when something is really lost.
const PATIENCE_US: u64 = 5_000_000;

/// Pauses `edu`'s traffic and waits until nothing is in flight.
fn quiesce(edu: &Edu) {
    edu.paused.store(true, Ordering::Release);
    let ok = wait_until(PATIENCE_US, || edu.idle());
    check!(
        ok,
        "{}: last raise handled before an affinity change",
        edu.src.name
    );
}

/// Moves every device source to `cpu` alone and checks that interrupts then
/// arrive there (and only there: `Source::allowed` is narrowed).
fn affinity_to(cpu: CpuId) {
    let target = CpuMask::of(cpu);
    for edu in [&EDU_INTX, &EDU_MSI] {
        quiesce(edu);
        if let Err(e) = devices::move_source(&edu.src, &target) {
            check!(false, "{}: {e} to cpu{}", edu.src.name, cpu.0);
        }
        devices::settle_source(&edu.src);
        edu.paused.store(false, Ordering::Release);
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
        let eff = s.irq().and_then(|i| CORE.effective_affinity(i).ok());
        check!(
            eff == Some(target),
            "{}: effective affinity is cpu{} ({eff:?})",
            s.name,
            cpu.0
        );
    }
    check!(
        ok,
        "affinity to cpu{}: every device source handled there",
        cpu.0
    );
}

fn all_irqs() -> Vec<IrqNumber> {
    let mut v = Vec::new();
    let _ = CORE.for_each_irq(|i| v.push(i));
    v
}

/// Lazy disable (design property 2): while the irq is disabled an
/// interrupt that arrives runs no handler; enabling it replays that
/// interrupt (edge: irqcore's resend through the vector chip's retrigger;
/// level: the line is still asserted when unmasked).
fn lazy_disable(edu: &Edu) {
    let Some(irq) = edu.src.irq() else { return };
    quiesce(edu);
    if let Err(e) = CORE.disable_irq(irq) {
        check!(false, "{}: disable_irq: {e:?}", edu.src.name);
        return;
    }
    let h0 = edu.handled.load(Ordering::Acquire);
    let masked = || {
        CORE.snapshot(irq)
            .is_ok_and(|d| d.state.contains(IrqState::MASKED))
    };
    check!(
        !masked(),
        "{}: disable_irq is lazy (line still unmasked)",
        edu.src.name
    );
    edu.paused.store(false, Ordering::Release);
    // The generator raises one interrupt; when it arrives the flow masks
    // the line (and, for edge, records it as pending) without a handler.
    let arrived = wait_until(PATIENCE_US, masked);
    let pending = CORE
        .snapshot(irq)
        .is_ok_and(|d| d.status.contains(IrqStatus::PENDING));
    check!(
        arrived && (pending || edu.src.name == "edu-intx"),
        "{}: an arrival while disabled masks the line (edge: and is marked pending)",
        edu.src.name
    );
    wait_ms(3);
    edu.paused.store(true, Ordering::Release);
    let h1 = edu.handled.load(Ordering::Acquire);
    check!(
        arrived && h1 == h0,
        "{}: no handler runs while disabled ({h0} -> {h1})",
        edu.src.name
    );
    if let Err(e) = CORE.enable_irq(irq) {
        check!(false, "{}: enable_irq: {e:?}", edu.src.name);
    }
    let replayed = wait_until(PATIENCE_US, || edu.handled.load(Ordering::Acquire) > h0);
    check!(
        replayed,
        "{}: the interrupt that arrived while disabled is handled after enable",
        edu.src.name
    );
    edu.paused.store(false, Ordering::Release);
}

/// Pins `edu` to `mask` (quiesced move).
fn pin(edu: &Edu, mask: &CpuMask) {
    quiesce(edu);
    if let Err(e) = devices::move_source(&edu.src, mask) {
        check!(false, "{}: {e}", edu.src.name);
    }
    devices::settle_source(&edu.src);
    edu.paused.store(false, Ordering::Release);
}

/// Offline then online `cpu` while the devices keep firing. Before going
/// down, edu INTx is pinned to `cpu` alone (its affinity must break and it
/// must move to another online CPU) and edu MSI to `cpu` plus another CPU
/// (it must move within its mask).
fn hotplug_cycle(cpu: CpuId) {
    let others = CORE.online_cpus().and_not(&CpuMask::of(cpu));
    let other = others.iter().find(|c| c.0 != 0).unwrap_or(CpuId(0));
    pin(&EDU_INTX, &CpuMask::of(cpu));
    pin(&EDU_MSI, &CpuMask::from_cpus([cpu, other]));
    // The PIT keeps ticking (1 kHz) on the outgoing CPU until irqcore moves
    // it inside stop-machine: a tick latched in its IRR meanwhile must be
    // replayed on the new target (hotplug::replay_latched_vectors).
    if devices::move_source(&PIT, &CpuMask::of(cpu)).is_err() {
        check!(false, "pit: set_affinity to cpu{}", cpu.0);
    }
    // While irqcore migrates them inside stop-machine, any remaining CPU may
    // receive them.
    for s in devices::device_sources() {
        s.allowed
            .fetch_or(devices::mask_bits(&others), Ordering::AcqRel);
    }
    // Cross-calls queued right before the CPU goes must run before it goes.
    for _ in 0..8 {
        let _ = devices::send_test_ipi(cpu);
    }
    let broken_before = irq::AFFINITY_BROKEN.load(Ordering::Relaxed);
    let irqs = all_irqs();
    let edu_before =
        EDU_INTX.handled.load(Ordering::Relaxed) + EDU_MSI.handled.load(Ordering::Relaxed);
    PHASE.store(5 + cpu.0, Ordering::Relaxed);
    if let Err(e) = hotplug::cpu_down(cpu) {
        check!(false, "cpu_down(cpu{}): {e:?}", cpu.0);
        return;
    }
    check!(!CORE.cpu_online(cpu), "cpu{} offline", cpu.0);
    // Seeds/001: a call queued for the CPU before it went down ran before
    // it was marked offline (not stranded until it comes back).
    let (sent, handled) = (
        IPI.sent[cpu.index()].load(Ordering::Acquire),
        IPI.handled[cpu.index()].load(Ordering::Acquire),
    );
    check!(
        smp::queued_calls(cpu) == 0 && sent == handled,
        "no cross-call stranded on offline cpu{} (sent {sent}, handled {handled}, queued {})",
        cpu.0,
        smp::queued_calls(cpu)
    );
    let stray: Vec<IrqNumber> = irqs
        .iter()
        .copied()
        .filter(|&i| {
            CORE.snapshot(i).is_ok_and(|s| {
                !s.state.contains(IrqState::PER_CPU)
                    && s.effective_affinity.intersects(&CpuMask::of(cpu))
            })
        })
        .collect();
    check!(
        stray.is_empty(),
        "no irq targets offline cpu{} ({stray:?})",
        cpu.0
    );
    let intx_eff = EDU_INTX
        .src
        .irq()
        .and_then(|i| CORE.effective_affinity(i).ok());
    check!(
        intx_eff.is_some_and(|m| m.weight() == 1 && m.is_subset_of(&others)),
        "edu-intx pinned to cpu{} moved to an online CPU ({intx_eff:?})",
        cpu.0
    );
    check!(
        irq::AFFINITY_BROKEN.load(Ordering::Relaxed) == broken_before + 2,
        "irqcore reported the broken affinity of edu-intx and the PIT"
    );
    let msi_eff = EDU_MSI
        .src
        .irq()
        .and_then(|i| CORE.effective_affinity(i).ok());
    check!(
        msi_eff == Some(CpuMask::of(other)),
        "edu-msi moved within its mask to cpu{} ({msi_eff:?})",
        other.0
    );
    // Settle the bookkeeping once nothing is in flight: edu raises handled,
    // PIT ticks latched on any online CPU handled (see `move_pit`).
    wait_until(PATIENCE_US, || EDU_INTX.idle() && EDU_MSI.idle());
    smp::run_on_cpus(&CORE.online_cpus(), &|_| {});
    for s in devices::device_sources() {
        devices::settle_source(s);
    }
    let at_down: Vec<u64> = irqs.iter().map(|&i| CORE.irq_count(i, cpu)).collect();
    let ticks_at_down = percpu::of(cpu).ticks.load(Ordering::Relaxed);
    wait_ms(15);
    let edu_after =
        EDU_INTX.handled.load(Ordering::Relaxed) + EDU_MSI.handled.load(Ordering::Relaxed);
    check!(
        edu_after > edu_before,
        "devices kept firing while cpu{} went offline",
        cpu.0
    );
    let now: Vec<u64> = irqs.iter().map(|&i| CORE.irq_count(i, cpu)).collect();
    check!(
        now == at_down,
        "no interrupt landed on offline cpu{}",
        cpu.0
    );
    check!(
        percpu::of(cpu).ticks.load(Ordering::Relaxed) == ticks_at_down,
        "offline cpu{} does not tick",
        cpu.0
    );

    PHASE.store(100 + cpu.0, Ordering::Relaxed);
    if let Err(e) = hotplug::cpu_up(cpu) {
        check!(false, "cpu_up(cpu{}) again: {e:?}", cpu.0);
        return;
    }
    check!(CORE.cpu_online(cpu), "cpu{} online again", cpu.0);
    let ticked = wait_until(PATIENCE_US, || {
        percpu::of(cpu).ticks.load(Ordering::Relaxed) > ticks_at_down + 2
    });
    check!(ticked, "cpu{} ticks again after online", cpu.0);
    // Affinity to the returning CPU takes effect, for both edu functions.
    for edu in [&EDU_INTX, &EDU_MSI] {
        pin(edu, &CpuMask::of(cpu));
        let b = edu.src.on(cpu);
        let ok = wait_until(PATIENCE_US, || edu.src.on(cpu) >= b + 3);
        check!(
            ok,
            "{} handled on cpu{} after it came back",
            edu.src.name,
            cpu.0
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
    let old = PIT
        .irq()
        .and_then(|i| CORE.effective_affinity(i).ok())
        .unwrap_or_default();
    if devices::move_source(&PIT, mask).is_err() {
        check!(false, "pit: set_affinity({mask:?})");
        return;
    }
    smp::run_on_cpus(&old.and(&CORE.online_cpus()), &|_| {});
    let before = PIT.total();
    wait_until(PATIENCE_US, || PIT.total() > before);
    devices::settle_source(&PIT);
}

// ----- descriptor allocation during hotplug (issue #16 item 4) --------------

/// Allocation/free pairs the job on cpu1 completes at least.
const ALLOC_FREE_ITERATIONS: u64 = 500;
/// Rounds of taking cpus 2.. offline and online again.
const HOTPLUG_ROUNDS: u32 = 5;
/// Bound on the whole phase (the watchdog ends the run past it).
const ALLOC_HOTPLUG_BOUND_US: u64 = 20_000_000;
/// Where the job allocates (first fit at or above; the devices' irqs are
/// below).
const JOB_IRQ_FROM: IrqNumber = IrqNumber(256);
/// Descriptors per allocation.
const JOB_IRQ_COUNT: u32 = 4;

/// Alloc/free pairs the job completed.
static JOB_PAIRS: AtomicU64 = AtomicU64::new(0);
/// Stopper calls the job served between its pairs.
static JOB_STOPPERS: AtomicU64 = AtomicU64::new(0);
/// Set by the boot CPU once its hotplug rounds are over: the job stops
/// after its minimum number of pairs from then on.
static HOTPLUG_OVER: AtomicBool = AtomicBool::new(false);
/// The first error the job met (it stops there).
static JOB_ERROR: IrqLock<Option<(&str, IrqError)>> = IrqLock::new(None);

/// The background job on cpu1: allocates and frees `JOB_IRQ_COUNT`
/// descriptors over and over, at least `ALLOC_FREE_ITERATIONS` times and
/// until the boot CPU's hotplug is over, so that allocation really overlaps
/// every hot-unplug.
///
/// Between two pairs it serves pending stopper work (`smp::serve_stopper`):
/// this non-preemptive kernel has no other way into cpu1's stopper while
/// the job runs, so without it every `cpu_down` would simply wait for the
/// job to end. That is sound here because between two pairs the job holds
/// nothing (the sparse lock and irqcore's read-side section end inside
/// `alloc_descs`/`free_descs`) and runs in process context with interrupts
/// enabled, as the idle loop does between two work items. The interleaving
/// this gives is the one the issue is about: the boot CPU starts a
/// stop-machine while cpu1 is inside `alloc_descs`/`free_descs`, possibly
/// spinning for the sparse lock; cpu1 must get it, finish the pair and reach
/// the stopper. When `cpu_down` held that lock across the rendezvous (the
/// old deadlock) cpu1 spun forever and the machine hung.
fn alloc_free_job() {
    let me = percpu::current();
    let mut pairs = 0u64;
    while pairs < ALLOC_FREE_ITERATIONS || !HOTPLUG_OVER.load(Ordering::Acquire) {
        let irq = match CORE.alloc_descs(JOB_IRQ_FROM, JOB_IRQ_COUNT) {
            Ok(irq) => irq,
            Err(e) => {
                *JOB_ERROR.lock() = Some(("alloc_descs", e));
                return;
            }
        };
        if let Err(e) = CORE.free_descs(irq, JOB_IRQ_COUNT) {
            *JOB_ERROR.lock() = Some(("free_descs", e));
            return;
        }
        pairs += 1;
        JOB_PAIRS.store(pairs, Ordering::Release);
        if smp::serve_stopper() {
            JOB_STOPPERS.fetch_add(1, Ordering::Relaxed);
        }
        if !CORE.cpu_online(me) {
            *JOB_ERROR.lock() = Some(("cpu went offline", IrqError::BadCpu(me)));
            return;
        }
        irq::run_deferred();
    }
}

/// The scenario of issue #16 item 4: cpu1 loops `alloc_descs`/`free_descs`
/// (in process context, `alloc_free_job`) while the boot CPU takes every
/// other CPU offline and online again, several rounds. Everything must
/// complete (a deadlock ends as a watchdog FAIL), every hotplug call must
/// succeed and the descriptor count must be back where it was.
fn alloc_free_during_hotplug(n: u32) {
    if n < 3 {
        kprintln!("alloc/free during hotplug: skipped (needs 3 CPUs, {n} here)");
        return;
    }
    let job_cpu = CpuId(1);
    let descs_before = CORE.nr_descs();
    // The devices keep firing: irqcore may move any of them to any online
    // CPU of its affinity (all CPUs) when their CPU goes down, so all CPUs
    // stay allowed from here on.
    let all = CORE.online_cpus();
    for s in devices::device_sources() {
        s.allowed
            .fetch_or(devices::mask_bits(&all), Ordering::AcqRel);
    }
    watchdog::arm(
        ALLOC_HOTPLUG_BOUND_US,
        "alloc/free on cpu1 during hotplug of the other CPUs",
    );
    let t0 = time::now_us();
    if !smp::start_job(job_cpu, alloc_free_job) {
        check!(false, "alloc/free during hotplug: job started on cpu1");
        watchdog::disarm();
        return;
    }
    // Hotplug starts once the job is under way.
    wait_until(PATIENCE_US, || {
        JOB_PAIRS.load(Ordering::Acquire) > 0 || smp::job_done(job_cpu)
    });
    let (mut downs, mut ups) = (0u32, 0u32);
    let mut first_error = None;
    for _ in 0..HOTPLUG_ROUNDS {
        for c in 2..n {
            match hotplug::cpu_down(CpuId(c)) {
                Ok(()) => downs += 1,
                Err(e) => {
                    first_error.get_or_insert((c, "cpu_down", e));
                }
            }
        }
        for c in 2..n {
            if CORE.cpu_online(CpuId(c)) {
                continue;
            }
            match hotplug::cpu_up(CpuId(c)) {
                Ok(()) => ups += 1,
                Err(e) => {
                    first_error.get_or_insert((c, "cpu_up", e));
                }
            }
        }
    }
    HOTPLUG_OVER.store(true, Ordering::Release);
    let finished = wait_until(ALLOC_HOTPLUG_BOUND_US, || smp::job_done(job_cpu));
    let elapsed = time::now_us() - t0;
    watchdog::disarm();

    let planned = HOTPLUG_ROUNDS * (n - 2);
    let pairs = JOB_PAIRS.load(Ordering::Acquire);
    let stoppers = JOB_STOPPERS.load(Ordering::Relaxed);
    let job_error = *JOB_ERROR.lock();
    let hotplugged: alloc::string::String = if n == 3 {
        "cpu2".into()
    } else {
        alloc::format!("cpu2..cpu{}", n - 1)
    };
    kprintln!(
        "alloc/free during hotplug: cpu1 ran {pairs} alloc_descs/free_descs pairs ({stoppers} stop-machine calls served between them) while cpu0 took {hotplugged} offline and online {HOTPLUG_ROUNDS} times ({downs} cpu_down, {ups} cpu_up) in {elapsed} us"
    );
    check!(
        finished,
        "alloc/free during hotplug: the job on cpu1 finished"
    );
    check!(
        job_error.is_none() && pairs >= ALLOC_FREE_ITERATIONS,
        "alloc/free during hotplug: {pairs} pairs (at least {ALLOC_FREE_ITERATIONS}) without error ({job_error:?})"
    );
    check!(
        first_error.is_none() && downs == planned && ups == planned,
        "alloc/free during hotplug: {downs} cpu_down and {ups} cpu_up of {planned} each returned Ok (first error: {first_error:?})"
    );
    check!(
        stoppers >= u64::from(downs),
        "alloc/free during hotplug: cpu1 served stop-machine between pairs ({stoppers} calls for {downs} cpu_down)"
    );
    check!(
        CORE.online_cpus() == CpuMask::first_n(n as usize),
        "alloc/free during hotplug: all {n} CPUs online again ({:?})",
        CORE.online_cpus()
    );
    let descs_after = CORE.nr_descs();
    check!(
        descs_after == descs_before,
        "alloc/free during hotplug: descriptor count back to {descs_before} ({descs_after})"
    );
    check!(
        elapsed <= ALLOC_HOTPLUG_BOUND_US,
        "alloc/free during hotplug: finished in {elapsed} us (bound {ALLOC_HOTPLUG_BOUND_US} us)"
    );
}

fn final_checks(n: u32) {
    let p = devices::PERCPU_IRQS.get();
    for c in 0..n {
        let cpu = CpuId(c);
        let area = percpu::of(cpu);
        let ticks = area.ticks.load(Ordering::Relaxed);
        check!(ticks > 0, "LAPIC timer ticked on cpu{c}");
        if let Some(p) = p {
            check!(
                CORE.irq_count(p.call, cpu) > 0,
                "cpu{c}: cross-call IPIs arrive through irqcore"
            );
            let counted = CORE.irq_count(p.timer, cpu);
            check!(
                counted == ticks,
                "cpu{c}: every timer tick handled once ({counted} counted, {ticks} handled)"
            );
        }
        check!(
            area.irqs_while_offline.load(Ordering::Relaxed) == 0,
            "cpu{c}: no interrupt handled while offline"
        );
        let (s, h) = (
            IPI.sent[c as usize].load(Ordering::Relaxed),
            IPI.handled[c as usize].load(Ordering::Relaxed),
        );
        check!(s > 0 && s == h, "cpu{c}: IPIs sent {s} == handled {h}");
    }
    check!(
        IPI.wrong_cpu.load(Ordering::Relaxed) == 0,
        "every IPI handled on its target CPU"
    );
    for edu in [&EDU_INTX, &EDU_MSI] {
        let (r, h) = (
            edu.raised.load(Ordering::Relaxed),
            edu.handled.load(Ordering::Relaxed),
        );
        check!(
            r > 0 && r == h,
            "{}: raised {r} == handled {h}",
            edu.src.name
        );
        check!(
            edu.unhandled.load(Ordering::Relaxed) == 0,
            "{}: no spurious handler call",
            edu.src.name
        );
        if let Some(irq) = edu.src.irq() {
            let counted: u64 = (0..n).map(|c| CORE.irq_count(irq, CpuId(c))).sum();
            check!(
                counted == h,
                "{}: irqcore counted {counted} == handled {h}",
                edu.src.name
            );
        }
    }
    for s in devices::device_sources() {
        check_source(s);
    }
    check_irq_health();
    kprintln!(
        "hotplug: {} device vector(s) found latched on a dying CPU and replayed",
        hotplug::REPLAYED_ON_DOWN.load(Ordering::Relaxed)
    );
}

fn check_source(s: &Source) {
    check!(s.total() > 0, "{}: handled {} times", s.name, s.total());
    check!(
        s.wrong_cpu.load(Ordering::Relaxed) == 0,
        "{}: always handled on a CPU of its affinity",
        s.name
    );
}
