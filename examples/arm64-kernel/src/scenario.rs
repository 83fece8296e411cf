//! The test scenario the boot CPU runs, phase by phase, and the final checks.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use irqcore::{CpuId, CpuMask, IrqError, IrqNumber, IrqState};

use crate::cpu::{self, MAX_CPUS};
use crate::devices::{self, RTC, Source, TIMER};
use crate::exit::{ExitCode, exit};
use crate::irq::{self, CORE};
use crate::smp::{self, CrossCall, KernelCpuControl};
use crate::sync::IrqLock;
use crate::{check, checks, heap, kprintln, time, watchdog};

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

    // ----- MSI: edu on PCIe through the ITS (GICv3) or GICv2m (GICv2) ------
    if let Err(e) = crate::msi::setup() {
        fail(e)
    }

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

    // ----- MSI affinity and hotplug ----------------------------------------------
    crate::msi::run_phase(n);

    // ----- descriptor allocation during hotplug --------------------------------
    alloc_free_during_hotplug(n);

    // ----- quiesce and final checks -------------------------------------------
    RTC.paused.store(true, Ordering::Release);
    let msi_quiet = crate::msi::quiesce();
    check!(msi_quiet, "edu-msi: the last MSI completed");
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
    if checks::CHECKS.print_result() {
        exit(ExitCode::Pass)
    } else {
        exit(ExitCode::Fail)
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

// ----- descriptor allocation during hotplug (issue #16 item 4) --------------

/// Allocation/free pairs the job on cpu1 completes at least.
const ALLOC_FREE_ITERATIONS: u64 = 500;
/// Rounds of taking cpus 2.. offline and online again.
const HOTPLUG_ROUNDS: u32 = 5;
/// Bound on the whole phase (the watchdog ends the run past it).
const ALLOC_HOTPLUG_BOUND_US: u64 = 20_000_000;
/// Where the job allocates (first fit at or above; the GIC's irqs are
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
/// `alloc_descs`/`free_descs`) and runs in process context with IRQs
/// unmasked, as the idle loop does between two work items. The interleaving
/// this gives is the one the issue is about: the boot CPU starts a
/// stop-machine while cpu1 is inside `alloc_descs`/`free_descs`, possibly
/// spinning for the sparse lock; cpu1 must get it, finish the pair and reach
/// the stopper. When `cpu_down` held that lock across the rendezvous (the
/// old deadlock) cpu1 spun forever and the machine hung.
fn alloc_free_job() {
    let me = cpu::current();
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
    }
}

/// The scenario of issue #16 item 4: cpu1 loops `alloc_descs`/`free_descs`
/// (in process context, `alloc_free_job`) while the boot CPU takes every
/// other CPU offline and online again, several rounds. Everything must
/// complete (a deadlock ends as a watchdog FAIL), every hotplug call must
/// succeed and the descriptor count must be back where it was. The RTC
/// keeps firing; its affinity (and allowed mask) is every CPU by now, so
/// irqcore may move it to any online CPU.
fn alloc_free_during_hotplug(n: u32) {
    if n < 3 {
        kprintln!("alloc/free during hotplug: skipped (needs 3 CPUs, {n} here)");
        return;
    }
    let job_cpu = CpuId(1);
    let descs_before = CORE.nr_descs();
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
            match CORE.cpu_down(CpuId(c), &KernelCpuControl) {
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
            match CORE.cpu_up(CpuId(c), &KernelCpuControl) {
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
    crate::msi::final_checks(n);
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
