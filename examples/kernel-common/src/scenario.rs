//! The steps both kernels' test scenarios run, written once: waiting,
//! bringing every CPU up, IPI traffic, lazy disable, the checks around a
//! CPU going offline and coming back, descriptor allocation during hotplug
//! (issue #16 item 4), the final checks and the end of the run. Each
//! kernel's `scenario.rs` strings them together around its own devices.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use irqcore::{CpuControl, CpuId, CpuMask, DeliveryFlags, IrqError, IrqNumber, LineState};

use crate::arch::{arch, now_us};
use crate::irq::{self, CORE};
use crate::source::{Caused, Source, mask_bits};
use crate::sync::IrqLock;
use crate::{check, exit, ipi_test, kprintln, smp, watchdog};

/// Generous bound for anything that should happen "soon": under TCG on a
/// shared host a vCPU may not run for a while. Waits return as soon as their
/// condition holds, so this only matters when something is really lost.
pub const PATIENCE_US: u64 = 5_000_000;

/// Waits (sleeping between interrupts, running interrupt threads) until
/// `cond` holds or `timeout_us` passed; returns whether it holds. Process
/// context; returns with interrupts enabled.
pub fn wait_until(timeout_us: u64, mut cond: impl FnMut() -> bool) -> bool {
    let t0 = now_us();
    loop {
        if cond() {
            return true;
        }
        if now_us() - t0 > timeout_us {
            return cond();
        }
        irq::run_deferred();
        arch().disable_irqs();
        arch().wait_for_interrupt();
    }
}

/// Waits `ms` milliseconds (as [`wait_until`]).
pub fn wait_ms(ms: u64) {
    let end = now_us() + ms * 1000;
    wait_until(ms * 1000 + 1000, || now_us() >= end);
}

/// Brings CPUs `1..n` up through irqcore's hotplug phases and checks that
/// all `n` are online; `how` names the start method in the log line.
pub fn bring_up(n: u32, ctl: &dyn CpuControl, how: &str) {
    let t = now_us();
    for c in CpuId::all(n as usize).skip(1) {
        if let Err(e) = CORE.cpu_up(c, ctl) {
            check!(false, "cpu_up(cpu{c}): {e:?}");
        }
    }
    check!(
        CORE.online_cpus() == CpuMask::first_n(n as usize),
        "all {n} CPUs online: {:?}",
        CORE.online_cpus()
    );
    kprintln!("smp: {n} CPU(s) online ({how}) in {} us", now_us() - t);
}

/// A burst of test cross-calls to every CPU, then (with 2+ CPUs) a token
/// passed around the ring of CPUs, so that every CPU sends IPIs.
pub fn ipi_traffic(n: u32) {
    for c in CpuId::all(n as usize) {
        for _ in 0..16 {
            let _ = ipi_test::send(c, 0);
        }
    }
    let ok = wait_until(PATIENCE_US, ipi_test::done);
    check!(ok, "every test IPI handled (burst)");
    if n > 1 {
        let before: Vec<u64> = CpuId::all(n as usize)
            .map(|c| ipi_test::counts(c).1)
            .collect();
        let _ = ipi_test::send(CpuId::of::<1>(), 4 * n - 1);
        let ok = wait_until(PATIENCE_US, ipi_test::done);
        let each = CpuId::all(n as usize).all(|c| ipi_test::counts(c).1 >= before[c.index()] + 4);
        check!(
            ok && each,
            "an IPI token went around all {n} CPUs 4 times (IPIs from every CPU)"
        );
    }
}

/// Takes every CPU but the boot CPU offline and online again, one at a
/// time, with the kernel's `cycle` (`how` names the way down in the log).
pub fn hotplug_each(n: u32, how: &str, cycle: impl Fn(CpuId)) {
    let t = now_us();
    for c in CpuId::all(n as usize).skip(1) {
        cycle(c);
    }
    if n > 1 {
        let us = now_us() - t;
        kprintln!(
            "hotplug: {} CPU(s) offline ({how}) and online again in {us} us",
            n - 1
        );
    } else {
        kprintln!("hotplug: single CPU, no CPU to take offline");
    }
}

/// Pauses `dev`'s traffic and waits until nothing is in flight.
pub fn quiesce(dev: &Caused) {
    dev.paused.store(true, Ordering::Release);
    let ok = wait_until(PATIENCE_US, || dev.idle());
    check!(
        ok,
        "{}: last raise handled before it was paused",
        dev.src.name
    );
}

/// Lazy disable (design property 2): while the irq is disabled an
/// interrupt that arrives runs no handler (the flow masks the line, and for
/// an `edge` line marks it pending); enabling it replays that interrupt
/// (edge: irqcore's resend; level: the line is still asserted when
/// unmasked).
pub fn lazy_disable(dev: &Caused, edge: bool) {
    let name = dev.src.name;
    let Some(irq) = dev.src.irq() else { return };
    quiesce(dev);
    if let Err(e) = CORE.disable_irq(irq) {
        check!(false, "{name}: disable_irq: {e:?}");
        return;
    }
    let h0 = dev.handled();
    let snapshot = || CORE.snapshot(irq).ok();
    let masked = || snapshot().is_some_and(|d| d.line.contains(LineState::MASKED));
    check!(
        !masked(),
        "{name}: disable_irq is lazy (line still unmasked)"
    );
    dev.paused.store(false, Ordering::Release);
    // The generator raises one interrupt; when it arrives the flow masks
    // the line without running a handler.
    let arrived = wait_until(PATIENCE_US, masked);
    let pending = snapshot().is_some_and(|d| d.delivery.contains(DeliveryFlags::PENDING));
    check!(
        arrived && (pending || !edge),
        "{name}: an arrival while disabled masks the line (edge: and is marked pending)"
    );
    wait_ms(3);
    dev.paused.store(true, Ordering::Release);
    let h1 = dev.handled();
    check!(
        arrived && h1 == h0,
        "{name}: no handler runs while disabled ({h0} -> {h1})"
    );
    if let Err(e) = CORE.enable_irq(irq) {
        check!(false, "{name}: enable_irq: {e:?}");
    }
    let replayed = wait_until(PATIENCE_US, || dev.handled() > h0);
    check!(
        replayed,
        "{name}: the interrupt that arrived while disabled is handled after enable_irq"
    );
    dev.paused.store(false, Ordering::Release);
}

/// Every allocated irq.
pub fn all_irqs() -> Vec<IrqNumber> {
    let mut v = Vec::new();
    let _ = CORE.for_each_irq(|i| v.push(i));
    v
}

/// What [`unplug`] saw before the CPU went down.
pub struct Unplugged {
    /// The CPU taken offline.
    pub cpu: CpuId,
    /// The online CPUs other than it.
    pub others: CpuMask,
    /// [`irq::AFFINITY_BROKEN`] before `cpu_down`.
    pub broken_before: u64,
    irqs: Vec<IrqNumber>,
    handled_before: u64,
}

impl Unplugged {
    /// Broken affinities irqcore reported for this `cpu_down`.
    pub fn broken(&self) -> u64 {
        irq::AFFINITY_BROKEN.load(Ordering::Relaxed) - self.broken_before
    }
}

/// Takes `cpu` offline with `caused` devices firing (the kernel has pinned
/// some of them to it and widened their `allowed` masks to the other CPUs,
/// where irqcore may move them). Cross-calls queued right before must run
/// before it goes (seeds/001); afterwards no non-per-CPU irq may target
/// it. `None` if `cpu_down` failed.
pub fn unplug(cpu: CpuId, ctl: &dyn CpuControl, caused: &[&Caused]) -> Option<Unplugged> {
    for _ in 0..8 {
        let _ = ipi_test::send(cpu, 0);
    }
    let u = Unplugged {
        cpu,
        others: CORE.online_cpus().and_not(&CpuMask::of(cpu)),
        broken_before: irq::AFFINITY_BROKEN.load(Ordering::Relaxed),
        irqs: all_irqs(),
        handled_before: caused.iter().map(|d| d.handled()).sum(),
    };
    if let Err(e) = CORE.cpu_down(cpu, ctl) {
        check!(false, "cpu_down(cpu{}): {e:?}", cpu.get());
        return None;
    }
    check!(!CORE.cpu_online(cpu), "cpu{} offline", cpu.get());
    let (sent, handled) = ipi_test::counts(cpu);
    let queued = smp::queued_calls(cpu);
    check!(
        queued == 0 && sent == handled,
        "no cross-call stranded on offline cpu{} (sent {sent}, handled {handled}, queued {queued})",
        cpu.get()
    );
    let stray: Vec<IrqNumber> = u
        .irqs
        .iter()
        .copied()
        .filter(|&i| {
            CORE.snapshot(i).is_ok_and(|s| {
                !s.line.contains(LineState::PER_CPU)
                    && s.effective_affinity.intersects(&CpuMask::of(cpu))
            })
        })
        .collect();
    check!(
        stray.is_empty(),
        "no irq targets offline cpu{} ({stray:?})",
        cpu.get()
    );
    Some(u)
}

/// Checks that `src`, pinned to the unplugged CPU alone, moved to one
/// online CPU, and allows exactly that one from now on.
pub fn check_moved_off(u: &Unplugged, src: &Source) {
    let eff = src.effective();
    check!(
        eff.is_some_and(|m| m.weight() == 1 && m.is_subset_of(&u.others)),
        "{} pinned to cpu{} moved to an online CPU ({eff:?})",
        src.name,
        u.cpu.get()
    );
    if let Some(m) = eff {
        src.allowed.store(mask_bits(&m), Ordering::Release);
    }
}

/// With `cpu` offline for 15 ms: the `caused` devices keep firing, no irq
/// counts anything on it, its `timer` does not tick. Returns its tick
/// count, for [`replug`].
pub fn check_offline_quiet(u: &Unplugged, timer: &Source, caused: &[&Caused]) -> u64 {
    let cpu = u.cpu;
    let at_down: Vec<u64> = u.irqs.iter().map(|&i| CORE.irq_count(i, cpu)).collect();
    let ticks_at_down = timer.on(cpu);
    wait_ms(15);
    let handled: u64 = caused.iter().map(|d| d.handled()).sum();
    check!(
        handled > u.handled_before,
        "devices kept firing while cpu{} went offline",
        cpu.get()
    );
    let now: Vec<u64> = u.irqs.iter().map(|&i| CORE.irq_count(i, cpu)).collect();
    check!(
        now == at_down,
        "no interrupt landed on offline cpu{}",
        cpu.get()
    );
    check!(
        timer.on(cpu) == ticks_at_down,
        "offline cpu{} does not tick",
        cpu.get()
    );
    ticks_at_down
}

/// Brings `cpu` back: online again, its `timer` ticks, it handles IPIs.
/// Returns whether `cpu_up` succeeded.
pub fn replug(cpu: CpuId, ctl: &dyn CpuControl, timer: &Source, ticks_at_down: u64) -> bool {
    if let Err(e) = CORE.cpu_up(cpu, ctl) {
        check!(false, "cpu_up(cpu{}) again: {e:?}", cpu.get());
        return false;
    }
    check!(CORE.cpu_online(cpu), "cpu{} online again", cpu.get());
    let ticked = wait_until(PATIENCE_US, || timer.on(cpu) > ticks_at_down + 2);
    check!(ticked, "cpu{} ticks again after online", cpu.get());
    for _ in 0..4 {
        let _ = ipi_test::send(cpu, 0);
    }
    let ok = wait_until(PATIENCE_US, ipi_test::done);
    check!(ok, "cpu{} handles IPIs again after online", cpu.get());
    true
}

// ----- descriptor allocation during hotplug (issue #16 item 4) --------------

/// Allocation/free pairs the job on cpu1 completes at least.
const ALLOC_FREE_ITERATIONS: u64 = 500;
/// Rounds of taking cpus 2.. offline and online again.
const HOTPLUG_ROUNDS: u32 = 5;
/// Bound on the whole phase (the watchdog ends the run past it).
const ALLOC_HOTPLUG_BOUND_US: u64 = 20_000_000;
/// Where the job allocates (first fit at or above; the kernels' device and
/// IPI irqs are below).
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
/// these non-preemptive kernels have no other way into cpu1's stopper while
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
    let me = arch().cpu_id();
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
/// succeed and the descriptor count must be back where it was. The
/// `sources` keep firing: irqcore may move any of them to any online CPU of
/// its affinity (all CPUs) when their CPU goes down, so all CPUs stay
/// allowed from here on.
pub fn alloc_free_during_hotplug(n: u32, ctl: &dyn CpuControl, sources: &[&Source]) {
    if n < 3 {
        kprintln!("alloc/free during hotplug: skipped (needs 3 CPUs, {n} here)");
        return;
    }
    let job_cpu = CpuId::of::<1>();
    let descs_before = CORE.nr_descs();
    let all = CORE.online_cpus();
    for s in sources {
        s.allowed.fetch_or(mask_bits(&all), Ordering::AcqRel);
    }
    watchdog::arm(
        ALLOC_HOTPLUG_BOUND_US,
        "alloc/free on cpu1 during hotplug of the other CPUs",
    );
    let t0 = now_us();
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
        for cpu in CpuId::all(n as usize).skip(2) {
            let c = cpu.get();
            match CORE.cpu_down(cpu, ctl) {
                Ok(()) => downs += 1,
                Err(e) => {
                    first_error.get_or_insert((c, "cpu_down", e));
                }
            }
        }
        for cpu in CpuId::all(n as usize)
            .skip(2)
            .filter(|&c| !CORE.cpu_online(c))
        {
            let c = cpu.get();
            match CORE.cpu_up(cpu, ctl) {
                Ok(()) => ups += 1,
                Err(e) => {
                    first_error.get_or_insert((c, "cpu_up", e));
                }
            }
        }
    }
    HOTPLUG_OVER.store(true, Ordering::Release);
    let finished = wait_until(ALLOC_HOTPLUG_BOUND_US, || smp::job_done(job_cpu));
    let elapsed = now_us() - t0;
    watchdog::disarm();

    let planned = HOTPLUG_ROUNDS * (n - 2);
    let pairs = JOB_PAIRS.load(Ordering::Acquire);
    let stoppers = JOB_STOPPERS.load(Ordering::Relaxed);
    let job_error = *JOB_ERROR.lock();
    let hotplugged: String = if n == 3 {
        "cpu2".into()
    } else {
        alloc::format!("cpu2..cpu{}", n - 1)
    };
    let what = "alloc/free during hotplug";
    kprintln!(
        "{what}: cpu1 ran {pairs} alloc_descs/free_descs pairs ({stoppers} stop-machine calls served between them) while cpu0 took {hotplugged} offline and online {HOTPLUG_ROUNDS} times ({downs} cpu_down, {ups} cpu_up) in {elapsed} us"
    );
    check!(finished, "{what}: the job on cpu1 finished");
    check!(
        job_error.is_none() && pairs >= ALLOC_FREE_ITERATIONS,
        "{what}: {pairs} pairs (at least {ALLOC_FREE_ITERATIONS}) without error ({job_error:?})"
    );
    check!(
        first_error.is_none() && downs == planned && ups == planned,
        "{what}: {downs} cpu_down and {ups} cpu_up of {planned} each returned Ok (first error: {first_error:?})"
    );
    check!(
        stoppers >= u64::from(downs),
        "{what}: cpu1 served stop-machine between pairs ({stoppers} calls for {downs} cpu_down)"
    );
    check!(
        CORE.online_cpus() == CpuMask::first_n(n as usize),
        "{what}: all {n} CPUs online again ({:?})",
        CORE.online_cpus()
    );
    let descs_after = CORE.nr_descs();
    check!(
        descs_after == descs_before,
        "{what}: descriptor count back to {descs_before} ({descs_after})"
    );
    check!(
        elapsed <= ALLOC_HOTPLUG_BOUND_US,
        "{what}: finished in {elapsed} us (bound {ALLOC_HOTPLUG_BOUND_US} us)"
    );
}

// ----- the end ------------------------------------------------------------------

/// The final checks, with every source quiet and every local timer
/// stopped: on each CPU the `timer` ticked and irqcore counted each tick
/// once, cross-calls arrived through `call_irq`; every test IPI ran once on
/// its target; every `caused` device and every other source passes its
/// checks; the interrupt health checks.
pub fn final_checks(
    n: u32,
    timer: &Source,
    call_irq: Option<IrqNumber>,
    caused: &[&Caused],
    sources: &[&Source],
) {
    for cpu in CpuId::all(n as usize) {
        let c = cpu.get();
        let ticks = timer.on(cpu);
        check!(ticks > 0, "{} ticked on cpu{c}", timer.name);
        if let Some(t) = timer.irq() {
            let counted = CORE.irq_count(t, cpu);
            check!(
                counted == ticks,
                "cpu{c}: every timer tick handled once ({counted} counted by irqcore, {ticks} handled)"
            );
        }
        if let Some(call) = call_irq {
            check!(
                CORE.irq_count(call, cpu) > 0,
                "cpu{c}: cross-call IPIs arrive through irqcore"
            );
        }
    }
    timer.check();
    ipi_test::check_all(n);
    for d in caused {
        d.check(n);
    }
    for s in sources {
        s.check();
    }
    irq::check_health(n);
}

/// Prints irqcore's interrupt table and the closing statistics (plus
/// `extra`), then the `RESULT:` line, and exits.
pub fn end(t_start: u64, extra: fmt::Arguments<'_>) -> ! {
    kprintln!();
    kprintln!("{}", CORE.interrupt_table());
    kprintln!(
        "total {} us; resends {}, spurious {}{extra}",
        now_us() - t_start,
        irq::RESENDS.load(Ordering::Relaxed),
        irq::SPURIOUS.load(Ordering::Relaxed),
    );
    exit::finish()
}
