//! The test scenario the boot CPU runs, phase by phase, and the final checks.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use irqcore::{CpuId, CpuMask, IrqNumber, IrqState};

use crate::cpu::{self, MAX_CPUS};
use crate::devices::{self, RTC, Source, TIMER};
use crate::exit::{ExitCode, exit};
use crate::irq::{self, CORE};
use crate::smp::{self, CrossCall, KernelCpuControl};
use crate::{check, checks, heap, kprintln, time};

unsafe extern "C" {
    static __kernel_end: u8;
}

/// Generous bound for anything that should happen "soon": under TCG on a
/// shared host a vCPU may not run for a while. Waits return as soon as their
/// condition holds, so this only matters when something is really lost.
const PATIENCE_US: u64 = 5_000_000;

fn fail(what: &str) -> ! {
    kprintln!("RESULT: FAIL {what}");
    exit(ExitCode::Fail)
}

/// Waits (sleeping between interrupts) until `cond` holds or `timeout_us`
/// passed; returns whether it holds.
fn wait_until(timeout_us: u64, mut cond: impl FnMut() -> bool) -> bool {
    let t0 = time::now_us();
    loop {
        if cond() {
            return true;
        }
        if time::now_us() - t0 > timeout_us {
            return cond();
        }
        cpu::disable_irqs();
        cpu::wait_for_interrupt_masked();
    }
}

fn wait_ms(ms: u64) {
    let end = time::now_us() + ms * 1000;
    wait_until(ms * 1000 + 1000, || time::now_us() >= end);
}

// ----- test IPIs (cross-calls through the CALL_FUNCTION SGI) ----------------

struct IpiStats {
    sent: [AtomicU64; MAX_CPUS],
    handled: [AtomicU64; MAX_CPUS],
    wrong_cpu: AtomicU64,
}

static IPI: IpiStats = IpiStats {
    sent: [const { AtomicU64::new(0) }; MAX_CPUS],
    handled: [const { AtomicU64::new(0) }; MAX_CPUS],
    wrong_cpu: AtomicU64::new(0),
};

/// A test cross-call: `arg` holds the target CPU (low 32 bits) and how many
/// more hops to pass it on (high 32 bits). Forwarding happens before the
/// call counts itself, so `ipis_done` cannot see a quiet moment while a
/// ring is still travelling.
fn ipi_handler(arg: u64) {
    let me = cpu::current();
    let target = arg & 0xffff_ffff;
    let hops = (arg >> 32) as u32;
    if hops > 0 {
        let online = CORE.online_cpus();
        let next = online
            .iter()
            .find(|c| c.0 > me.0)
            .or_else(|| online.first())
            .unwrap_or(me);
        let _ = send_test_ipi(next, hops - 1);
    }
    if u64::from(me.0) != target {
        IPI.wrong_cpu.fetch_add(1, Ordering::Relaxed);
    }
    if let Some(h) = IPI.handled.get(target as usize) {
        h.fetch_add(1, Ordering::AcqRel);
    }
}

/// Queues a test cross-call for `cpu` (which passes it on `hops` times).
fn send_test_ipi(cpu: CpuId, hops: u32) -> bool {
    IPI.sent[cpu.index()].fetch_add(1, Ordering::AcqRel);
    let ok = smp::call_on(
        cpu,
        CrossCall {
            func: ipi_handler,
            arg: u64::from(cpu.0) | (u64::from(hops) << 32),
        },
    );
    if !ok {
        IPI.sent[cpu.index()].fetch_sub(1, Ordering::AcqRel);
    }
    ok
}

fn ipis_done() -> bool {
    (0..MAX_CPUS)
        .all(|c| IPI.sent[c].load(Ordering::Acquire) == IPI.handled[c].load(Ordering::Acquire))
}

// ----- the scenario -----------------------------------------------------------

/// Runs the whole scenario and exits QEMU.
pub fn run() -> ! {
    kprintln!("irqcore aarch64 reference kernel (QEMU virt, EL1)");
    // Heap: 16 MiB from the first 2 MiB boundary after the image.
    // SAFETY: only the address of the linker symbol is taken.
    let end = unsafe { &__kernel_end as *const u8 as usize };
    let heap_start = (end + (2 << 20) - 1) & !((2 << 20) - 1);
    // SAFETY: RAM above the image (QEMU -m 128M: RAM is 0x4000_0000 up to
    // 0x4800_0000) that nothing else uses.
    unsafe { heap::init(heap_start, 16 << 20) };
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
    let _ = CORE.set_cpu_online(CpuId(0), true);
    for r in [irq::setup_ipis(), devices::setup_timer()] {
        if let Err(e) = r {
            fail(e)
        }
    }
    if let Err(e) = devices::start_local() {
        fail(&alloc::format!("boot CPU per-CPU irqs: {e:?}"))
    }
    cpu::enable_irqs();
    let ticked = wait_until(PATIENCE_US, || TIMER.on(CpuId(0)) >= 3);
    check!(ticked, "generic timer PPI ticks on cpu0 through irqcore");

    // ----- SPI: the PL031 RTC alarm ---------------------------------------
    if let Err(e) = devices::setup_rtc() {
        fail(e)
    }
    RTC.paused.store(false, Ordering::Release);
    let ok = wait_until(PATIENCE_US, || RTC.handled.load(Ordering::Acquire) >= 3);
    check!(ok, "PL031 alarm SPI handled through irqcore");

    // ----- SMP --------------------------------------------------------------
    let t = time::now_us();
    for c in 1..n {
        if let Err(e) = CORE.cpu_up(CpuId(c), &KernelCpuControl) {
            check!(false, "cpu_up(cpu{c}): {e:?}");
        }
    }
    let all = CpuMask::first_n(n as usize);
    check!(
        CORE.online_cpus() == all,
        "all {n} CPUs online: {:?}",
        CORE.online_cpus()
    );
    kprintln!(
        "smp: {n} CPU(s) online (PSCI CPU_ON + cpu_up) in {} us",
        time::now_us() - t
    );
    for c in 0..n {
        let cpu = CpuId(c);
        let ok = wait_until(PATIENCE_US, || TIMER.on(cpu) >= 3);
        check!(ok, "timer PPI ticks on cpu{c}");
    }

    // ----- SGIs -------------------------------------------------------------
    for c in 0..n {
        for _ in 0..16 {
            let _ = send_test_ipi(CpuId(c), 0);
        }
    }
    let ok = wait_until(PATIENCE_US, ipis_done);
    check!(ok, "every test IPI (SGI cross-call) handled (burst)");
    if n > 1 {
        // A token passed around the ring of CPUs: every CPU sends SGIs.
        let before: Vec<u64> = (0..n as usize)
            .map(|c| IPI.handled[c].load(Ordering::Acquire))
            .collect();
        let _ = send_test_ipi(CpuId(1), 4 * n - 1);
        let ok = wait_until(PATIENCE_US, ipis_done);
        let each = (0..n as usize).all(|c| IPI.handled[c].load(Ordering::Acquire) >= before[c] + 4);
        check!(
            ok && each,
            "an IPI token went around all {n} CPUs 4 times (SGIs from every CPU)"
        );
    }

    // ----- lazy disable --------------------------------------------------------
    lazy_disable();

    // ----- affinity ---------------------------------------------------------
    let t = time::now_us();
    for c in 0..n {
        affinity_to(CpuId(c));
    }
    if devices::move_rtc(&all).is_err() {
        check!(false, "rtc: set_affinity(all)");
    }
    kprintln!(
        "affinity: the RTC moved to each of {n} CPU(s) in {} us",
        time::now_us() - t
    );

    // ----- hotplug ----------------------------------------------------------
    let t = time::now_us();
    for c in 1..n {
        hotplug_cycle(CpuId(c));
    }
    if n > 1 {
        kprintln!(
            "hotplug: {} CPU(s) offline (cpu_down + PSCI CPU_OFF) and online again in {} us",
            n - 1,
            time::now_us() - t
        );
    } else {
        kprintln!("hotplug: single CPU, no CPU to take offline");
    }

    // ----- quiesce and final checks -------------------------------------------
    RTC.paused.store(true, Ordering::Release);
    let quiet = wait_until(PATIENCE_US, || RTC.idle() && ipis_done());
    check!(quiet, "all caused interrupts completed");
    // Stop every local timer so tick counts are stable for the final checks.
    smp::run_on_cpus(&CORE.online_cpus(), &|_| devices::stop_local_timer());
    final_checks(n);

    kprintln!();
    kprintln!("{}", CORE.interrupt_table());
    kprintln!(
        "total {} us; resends {}",
        time::now_us() - t_start,
        irq::RESENDS.load(Ordering::Relaxed),
    );
    match checks::verdict() {
        Ok(passed) => {
            kprintln!("RESULT: PASS {passed} checks");
            exit(ExitCode::Pass)
        }
        Err((failed, first)) => {
            kprintln!("RESULT: FAIL {first} ({failed} failed)");
            exit(ExitCode::Fail)
        }
    }
}

/// Lazy disable (design property 2) on the level-triggered RTC line: while
/// it is disabled an alarm that arrives runs no handler (the flow masks the
/// line then); `enable_irq` unmasks it and, the line still being
/// asserted, the alarm is handled.
fn lazy_disable() {
    let Some(irq) = RTC.src.irq() else { return };
    RTC.paused.store(true, Ordering::Release);
    let idle = wait_until(PATIENCE_US, || RTC.idle());
    check!(idle, "rtc: quiet before disable_irq");
    if let Err(e) = CORE.disable_irq(irq) {
        check!(false, "rtc: disable_irq: {e:?}");
        return;
    }
    let h0 = RTC.handled.load(Ordering::Acquire);
    let masked = || {
        CORE.snapshot(irq)
            .is_ok_and(|d| d.state.contains(IrqState::MASKED))
    };
    check!(!masked(), "rtc: disable_irq is lazy (line still unmasked)");
    RTC.paused.store(false, Ordering::Release);
    let arrived = wait_until(PATIENCE_US, masked);
    wait_ms(3);
    RTC.paused.store(true, Ordering::Release);
    let h1 = RTC.handled.load(Ordering::Acquire);
    check!(arrived, "rtc: an alarm while disabled masks the line");
    check!(
        h1 == h0,
        "rtc: no handler runs while disabled ({h0} -> {h1})"
    );
    if let Err(e) = CORE.enable_irq(irq) {
        check!(false, "rtc: enable_irq: {e:?}");
    }
    let replayed = wait_until(PATIENCE_US, || RTC.handled.load(Ordering::Acquire) > h0);
    check!(
        replayed,
        "rtc: the alarm that arrived while disabled is handled after enable_irq"
    );
    RTC.paused.store(false, Ordering::Release);
}

/// Moves the RTC to `cpu` alone and checks that its interrupts then arrive
/// there (and only there: `Source::allowed` is narrowed).
fn affinity_to(cpu: CpuId) {
    let target = CpuMask::of(cpu);
    if let Err(e) = devices::move_rtc(&target) {
        check!(false, "rtc: set_affinity to cpu{}: {e:?}", cpu.0);
        return;
    }
    let base = RTC.src.on(cpu);
    let ok = wait_until(PATIENCE_US, || RTC.src.on(cpu) >= base + 3);
    let eff = RTC.src.irq().and_then(|i| CORE.effective_affinity(i).ok());
    check!(
        eff == Some(target),
        "rtc: effective affinity is cpu{} ({eff:?})",
        cpu.0
    );
    check!(ok, "affinity to cpu{}: the RTC is handled there", cpu.0);
    if !ok {
        devices::dump_rtc();
    }
}

fn all_irqs() -> Vec<IrqNumber> {
    let mut v = Vec::new();
    let _ = CORE.for_each_irq(|i| v.push(i));
    v
}

/// Offline then online `cpu` while the RTC keeps firing. Before going
/// down the RTC is pinned to `cpu` alone: its affinity must break (reported
/// by irqcore) and it must move to an online CPU.
fn hotplug_cycle(cpu: CpuId) {
    let others = CORE.online_cpus().and_not(&CpuMask::of(cpu));
    if devices::move_rtc(&CpuMask::of(cpu)).is_err() {
        check!(false, "rtc: pin to cpu{}", cpu.0);
    }
    // While irqcore migrates it inside stop-machine, any remaining CPU may
    // receive it.
    RTC.src
        .allowed
        .fetch_or(devices::mask_bits(&others), Ordering::AcqRel);
    // Cross-calls queued right before the CPU goes must run before it goes.
    for _ in 0..8 {
        let _ = send_test_ipi(cpu, 0);
    }
    let broken_before = irq::AFFINITY_BROKEN.load(Ordering::Relaxed);
    let irqs = all_irqs();
    let rtc_before = RTC.handled.load(Ordering::Relaxed);
    if let Err(e) = CORE.cpu_down(cpu, &KernelCpuControl) {
        check!(false, "cpu_down(cpu{}): {e:?}", cpu.0);
        return;
    }
    check!(!CORE.cpu_online(cpu), "cpu{} offline", cpu.0);
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
    let eff = RTC.src.irq().and_then(|i| CORE.effective_affinity(i).ok());
    check!(
        eff.is_some_and(|m| m.weight() == 1 && m.is_subset_of(&others)),
        "rtc pinned to cpu{} moved to an online CPU ({eff:?})",
        cpu.0
    );
    check!(
        irq::AFFINITY_BROKEN.load(Ordering::Relaxed) == broken_before + 1,
        "irqcore reported the RTC's broken affinity"
    );
    if let Some(m) = eff {
        RTC.src
            .allowed
            .store(devices::mask_bits(&m), Ordering::Release);
    }
    let at_down: Vec<u64> = irqs.iter().map(|&i| CORE.irq_count(i, cpu)).collect();
    let ticks_at_down = TIMER.on(cpu);
    wait_ms(15);
    check!(
        RTC.handled.load(Ordering::Relaxed) > rtc_before,
        "the RTC kept firing while cpu{} went offline",
        cpu.0
    );
    let now: Vec<u64> = irqs.iter().map(|&i| CORE.irq_count(i, cpu)).collect();
    check!(
        now == at_down,
        "no interrupt landed on offline cpu{}",
        cpu.0
    );
    check!(
        TIMER.on(cpu) == ticks_at_down,
        "offline cpu{} does not tick",
        cpu.0
    );

    if let Err(e) = CORE.cpu_up(cpu, &KernelCpuControl) {
        check!(false, "cpu_up(cpu{}) again: {e:?}", cpu.0);
        return;
    }
    check!(CORE.cpu_online(cpu), "cpu{} online again", cpu.0);
    let ticked = wait_until(PATIENCE_US, || TIMER.on(cpu) > ticks_at_down + 2);
    check!(ticked, "cpu{} ticks again after online", cpu.0);
    for _ in 0..4 {
        let _ = send_test_ipi(cpu, 0);
    }
    let ok = wait_until(PATIENCE_US, ipis_done);
    check!(ok, "cpu{} handles IPIs again after online", cpu.0);
    affinity_to(cpu);
    if devices::move_rtc(&CORE.online_cpus()).is_err() {
        check!(false, "rtc: set_affinity(all)");
    }
}

fn final_checks(n: u32) {
    let timer_irq = TIMER.irq();
    let call_irq = irq::ipis().map(|i| i.call);
    for c in 0..n {
        let cpu = CpuId(c);
        let ticks = TIMER.on(cpu);
        check!(ticks > 0, "timer ticked on cpu{c}");
        if let Some(t) = timer_irq {
            let counted = CORE.irq_count(t, cpu);
            check!(
                counted == ticks,
                "cpu{c}: every timer tick handled once ({counted} counted by irqcore, {ticks} handled)"
            );
        }
        if let Some(call) = call_irq {
            check!(
                CORE.irq_count(call, cpu) > 0,
                "cpu{c}: SGI cross-calls arrive through irqcore"
            );
        }
        check!(
            irq::IRQS_WHILE_OFFLINE[c as usize].load(Ordering::Relaxed) == 0,
            "cpu{c}: no interrupt taken while offline"
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
    let (r, h) = (
        RTC.raised.load(Ordering::Relaxed),
        RTC.handled.load(Ordering::Relaxed),
    );
    check!(r > 0 && r == h, "pl031-rtc: raised {r} == handled {h}");
    check!(
        RTC.unhandled.load(Ordering::Relaxed) == 0,
        "pl031-rtc: no spurious handler call"
    );
    if let Some(irq) = RTC.src.irq() {
        let counted: u64 = (0..n).map(|c| CORE.irq_count(irq, CpuId(c))).sum();
        check!(
            counted == h,
            "pl031-rtc: irqcore counted {counted} == handled {h}"
        );
    }
    for s in [&TIMER, &RTC.src] {
        check_source(s);
    }
    check!(
        irq::UNMAPPED.load(Ordering::Relaxed) == 0,
        "no interrupt without a mapping"
    );
    check!(
        irq::REPORTED_EVENTS.load(Ordering::Relaxed) == 0,
        "irqcore reported no bad/spurious event"
    );
    check!(
        irq::THREAD_WAKEUPS.load(Ordering::Relaxed) == 0,
        "no thread wake-up (no threaded handler)"
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
