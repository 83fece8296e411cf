//! SMP machinery every kernel needs on top of its CPU start/stop: the
//! secondary CPUs' `Starting` handshake and idle loop, the stopper context
//! (irqcore's `Platform::run_on_cpus`), background jobs, and cross-CPU
//! function calls. Idle CPUs are woken with [`Ipi::CallFunction`].

use core::sync::atomic::{
    AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence,
};

use arrayvec::ArrayVec;
use irqcore::{CpuId, CpuMask, IrqError};

use crate::MAX_CPUS;
use crate::arch::{Ipi, arch, current_cpu, now_us};
use crate::irq::{self, CORE};
use crate::sync::IrqLock;

// ----- starting a secondary CPU ----------------------------------------------

/// Result of the `Starting` phase on a CPU being started: 0 pending, 1 ok,
/// 2 refused.
static STARTING_RESULT: [AtomicU8; MAX_CPUS] = [const { AtomicU8::new(0) }; MAX_CPUS];

/// Before the kernel starts `cpu`: forgets the result of its last start.
pub fn prepare_start(cpu: CpuId) {
    if let Some(r) = STARTING_RESULT.get(cpu.index()) {
        r.store(0, Ordering::Release);
    }
}

/// Waits up to `timeout_us` for `cpu` (started after [`prepare_start`]) to
/// run irqcore's `cpu_starting`; `None` if it has not yet, else that
/// call's result.
pub fn wait_started(cpu: CpuId, timeout_us: u64) -> Option<Result<(), IrqError>> {
    let r = STARTING_RESULT.get(cpu.index())?;
    let t0 = now_us();
    loop {
        match r.load(Ordering::Acquire) {
            0 if now_us() - t0 < timeout_us => {
                serve_barrier();
                core::hint::spin_loop()
            }
            0 => return None,
            1 => return Some(Ok(())),
            _ => return Some(Err(IrqError::BadCpu(cpu))),
        }
    }
}

/// A secondary CPU's life once the kernel set it up (own stack, per-CPU
/// state, interrupt controller), interrupts off: the "starting" hotplug
/// phase (irqcore runs the `Starting` callbacks and marks it online), its
/// result for [`wait_started`], then the idle loop.
pub fn secondary_main(me: CpuId) -> ! {
    mark_alive(me);
    let ok = CORE.cpu_starting().is_ok();
    if let Some(r) = STARTING_RESULT.get(me.index()) {
        r.store(if ok { 1 } else { 2 }, Ordering::Release);
    }
    if !ok {
        park(me)
    }
    idle_loop(me)
}

/// Parks this CPU for good ([`Arch::cpu_dead`](crate::Arch::cpu_dead)),
/// after its last irqcore call: [`synchronize_cpus`] stops waiting for it.
fn park(me: CpuId) -> ! {
    ALIVE.fetch_and(!(1usize << me.get()), Ordering::SeqCst);
    arch().cpu_dead()
}

/// Idle loop of a secondary CPU: runs stopper work, background jobs and
/// interrupt threads, sleeps otherwise, and parks for good
/// ([`Arch::cpu_dead`](crate::Arch::cpu_dead)) once stop-machine marked it
/// offline.
fn idle_loop(me: CpuId) -> ! {
    let a = arch();
    loop {
        a.disable_irqs();
        serve_barrier();
        if !CORE.cpu_online(me) {
            park(me);
        }
        if run_stopper_work(me) || run_job(me) {
            continue;
        }
        a.enable_irqs();
        irq::run_deferred();
        a.disable_irqs();
        if !has_work(me) {
            a.wait_for_interrupt();
        }
    }
}

fn has_work(me: CpuId) -> bool {
    STOPPER_PENDING.load(Ordering::Acquire) & (1 << me.get()) != 0
        || JOBS.get(me.index()).is_some_and(|j| j.lock().is_some())
        || !CORE.cpu_online(me)
}

// ----- stopper context (irqcore's `Platform::run_on_cpus`) ------------------

/// Serializes `run_on_cpus` callers.
static STOPPER_LOCK: spin::Mutex<()> = spin::Mutex::new(());
/// The work of the current `run_on_cpus`, as a raw fat pointer.
static STOPPER_WORK: IrqLock<Option<WorkPtr>> = IrqLock::new(None);
/// CPUs that still have to run the current work.
static STOPPER_PENDING: AtomicUsize = AtomicUsize::new(0);
/// CPUs that have not finished the current work.
static STOPPER_RUNNING: AtomicU32 = AtomicU32::new(0);

/// The current stopper work, lifetime erased.
#[derive(Clone, Copy)]
struct WorkPtr(*const (dyn Fn(CpuId) + Sync));
// SAFETY: the pointer is only dereferenced while `run_on_cpus` (which owns
// the referent) waits for every CPU to finish; the referent is Sync.
unsafe impl Send for WorkPtr {}

/// Runs this CPU's share of the current stopper work, if any (interrupts
/// off on entry and on return).
fn run_stopper_work(me: CpuId) -> bool {
    let bit = 1usize << me.get(); // me < MAX_CPUS
    if STOPPER_PENDING.load(Ordering::Acquire) & bit == 0 {
        return false;
    }
    let work = *STOPPER_WORK.lock();
    STOPPER_PENDING.fetch_and(!bit, Ordering::AcqRel);
    if let Some(WorkPtr(w)) = work {
        // Stopper context: process context with interrupts enabled.
        arch().enable_irqs();
        // SAFETY: `run_on_cpus` keeps the referent alive until
        // STOPPER_RUNNING drops to 0, which happens only after this call.
        unsafe { (*w)(me) };
    }
    arch().disable_irqs();
    STOPPER_RUNNING.fetch_sub(1, Ordering::AcqRel);
    true
}

/// Runs `work(cpu)` on every CPU of `cpus` in its stopper context and waits
/// for all of them; the calling CPU runs its share itself. The others are
/// woken with [`Ipi::CallFunction`].
pub fn run_on_cpus(cpus: &CpuMask, work: &(dyn Fn(CpuId) + Sync)) {
    let _serial = STOPPER_LOCK.lock();
    let me = current_cpu();
    let others = cpus.and_not(&CpuMask::of(me));
    let mut bits = 0usize;
    for c in others.iter() {
        bits |= 1 << c.get();
    }
    // SAFETY: erasing the lifetime is sound because we do not return before
    // every CPU has finished with the pointer (STOPPER_RUNNING == 0).
    let ptr: *const (dyn Fn(CpuId) + Sync) =
        unsafe { core::mem::transmute(work as *const (dyn Fn(CpuId) + Sync + '_)) };
    *STOPPER_WORK.lock() = Some(WorkPtr(ptr));
    STOPPER_RUNNING.store(others.weight() as u32, Ordering::Release);
    STOPPER_PENDING.store(bits, Ordering::Release);
    if !others.is_empty() {
        arch().send_ipi(Ipi::CallFunction, &others);
    }
    if cpus.contains(me) {
        work(me);
    }
    while STOPPER_RUNNING.load(Ordering::Acquire) != 0 {
        serve_barrier();
        core::hint::spin_loop();
    }
    *STOPPER_WORK.lock() = None;
}

/// Runs this CPU's share of the current stopper work, if any, from a
/// background job (see [`start_job`]) between two of its steps; returns
/// whether there was some. Lets stop-machine (CPU hotplug) proceed while a
/// long job runs instead of waiting for the job to end.
///
/// Sound only where the idle loop itself could run the stopper: in process
/// context with interrupts enabled (the stopper work enables them, which
/// an interrupt handler or an `IrqLock` holder must never see: both run
/// with interrupts off, so that case is refused here), with no lock held
/// and outside any irqcore call (a stopped CPU must hold nothing another
/// participant may need: the dying CPU try-locks irqcore's sparse lock and
/// fails the hot-unplug if it is held). A job between two of its steps is
/// in exactly the idle loop's situation between two work items. The
/// stopper is not re-entered: jobs start from the idle loop, never from
/// inside `run_stopper_work`. If the stopper work takes this CPU offline,
/// the job must return at once (check `CORE.cpu_online`): the idle loop
/// then parks the CPU.
pub fn serve_stopper() -> bool {
    let a = arch();
    if !a.irqs_enabled() || CORE.in_interrupt() {
        return false;
    }
    // Same entry and exit state as in the idle loop: interrupts off (the
    // stopper work runs with them enabled).
    a.disable_irqs();
    let ran = run_stopper_work(a.cpu_id());
    a.enable_irqs();
    ran
}

// ----- background jobs --------------------------------------------------------

/// A background job (see [`start_job`]).
pub type Job = fn();

/// The job posted for each CPU, taken by its idle loop.
static JOBS: [IrqLock<Option<Job>>; MAX_CPUS] = [const { IrqLock::new(None) }; MAX_CPUS];
/// Set while a job is posted for or running on a CPU.
static JOB_BUSY: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// Starts `job` on `cpu` without waiting for it: the CPU's idle loop runs
/// it in process context with interrupts enabled, like a kernel thread (so
/// it may call irqcore functions that refuse interrupt context). The CPU
/// does nothing else until it returns, except serving interrupts and, if
/// the job calls [`serve_stopper`], stopper work. Returns false (nothing
/// posted) if `cpu` is the caller, not an online secondary CPU, or still
/// busy with a job; [`job_done`] says when it has returned.
pub fn start_job(cpu: CpuId, job: Job) -> bool {
    if cpu.index() >= MAX_CPUS
        || cpu == current_cpu()
        || cpu == CpuId::BOOT
        || !CORE.cpu_online(cpu)
        || JOB_BUSY[cpu.index()].swap(true, Ordering::AcqRel)
    {
        return false;
    }
    *JOBS[cpu.index()].lock() = Some(job);
    // Wake it from its sleep: its idle loop then sees the job.
    arch().send_ipi(Ipi::CallFunction, &CpuMask::of(cpu));
    true
}

/// Whether the last job started on `cpu` has returned.
pub fn job_done(cpu: CpuId) -> bool {
    JOB_BUSY
        .get(cpu.index())
        .is_none_or(|b| !b.load(Ordering::Acquire))
}

/// Runs the job posted for this CPU, if any (interrupts off on entry and
/// on return, like `run_stopper_work`).
fn run_job(me: CpuId) -> bool {
    let Some(job) = JOBS.get(me.index()).and_then(|j| j.lock().take()) else {
        return false;
    };
    arch().enable_irqs();
    job();
    arch().disable_irqs();
    JOB_BUSY[me.index()].store(false, Ordering::Release);
    true
}

// ----- cross-CPU function calls ---------------------------------------------

/// A queued call: `func(arg)` on the target CPU.
#[derive(Clone, Copy)]
pub struct CrossCall {
    /// The function.
    pub func: fn(u64),
    /// Its argument.
    pub arg: u64,
}

static CALL_QUEUES: [IrqLock<ArrayVec<CrossCall, 128>>; MAX_CPUS] =
    [const { IrqLock::new(ArrayVec::new_const()) }; MAX_CPUS];

/// Queues `call` for `cpu` and sends it [`Ipi::CallFunction`]. Returns
/// false (nothing queued) if its queue is full or it is offline.
pub fn call_on(cpu: CpuId, call: CrossCall) -> bool {
    if cpu.index() >= MAX_CPUS || !CORE.cpu_online(cpu) {
        return false;
    }
    if CALL_QUEUES[cpu.index()].lock().try_push(call).is_err() {
        return false;
    }
    arch().send_ipi(Ipi::CallFunction, &CpuMask::of(cpu));
    true
}

/// Number of calls queued for `cpu` and not run yet.
pub fn queued_calls(cpu: CpuId) -> usize {
    CALL_QUEUES.get(cpu.index()).map_or(0, |q| q.lock().len())
}

/// Runs every call queued for this CPU (the [`Ipi::CallFunction`] handler,
/// and irqcore's `flush_cross_calls` on a dying CPU).
pub fn flush_cross_calls() {
    serve_barrier();
    let Some(queue) = CALL_QUEUES.get(current_cpu().index()) else {
        return;
    };
    loop {
        let next = {
            let mut q = queue.lock();
            if q.is_empty() {
                None
            } else {
                Some(q.remove(0))
            }
        };
        match next {
            Some(c) => (c.func)(c.arg),
            None => break,
        }
    }
}

// ----- the asymmetric barrier (irqcore's `Platform::synchronize_cpus`) -------

/// CPUs that may run irqcore code: the boot CPU, and each secondary CPU
/// from the start of [`secondary_main`] until it parks.
static ALIVE: AtomicUsize = AtomicUsize::new(1);
/// Generation of the latest barrier request.
static BARRIER_GEN: AtomicU64 = AtomicU64::new(0);
/// Per CPU: the latest generation it has served.
static BARRIER_SERVED: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// How often [`synchronize_cpus`] re-sends its IPI to a CPU that has not
/// answered (it may have been sleeping when it became alive).
const BARRIER_RESEND_US: u64 = 1000;

/// A secondary CPU's first step: from here on writers wait for its
/// barrier. The fence orders the bit before every irqcore access of this
/// CPU (a writer that did not see the bit unpublished before reading it,
/// and this CPU's later loads see that).
fn mark_alive(me: CpuId) {
    ALIVE.fetch_or(1usize << me.get(), Ordering::SeqCst);
    fence(Ordering::SeqCst);
    serve_barrier();
}

/// Serves a pending barrier request on this CPU: a full fence, then the
/// acknowledgement. Called from the [`Ipi::CallFunction`] handler (via
/// [`flush_cross_calls`]) and from every spin of the kernel with
/// interrupts possibly off (irqcore's spins call `Platform::cpu_relax`,
/// which serves it too), so that a CPU spinning with interrupts off still
/// answers and two CPUs synchronizing at once do not wait for each other.
pub fn serve_barrier() {
    let Some(served) = BARRIER_SERVED.get(current_cpu().index()) else {
        return;
    };
    let want = BARRIER_GEN.load(Ordering::SeqCst);
    if served.load(Ordering::Relaxed) < want {
        fence(Ordering::SeqCst);
        served.store(want, Ordering::Release);
    }
}

/// irqcore's `Platform::synchronize_cpus`: returns once every alive CPU has
/// executed a full fence after this call began (expedited-RCU style: an
/// IPI whose handler fences and acknowledges). Callable with interrupts
/// off: it serves its own CPU's requests while waiting.
pub fn synchronize_cpus() {
    let generation = BARRIER_GEN.fetch_add(1, Ordering::SeqCst) + 1;
    fence(Ordering::SeqCst);
    serve_barrier();
    let me = current_cpu();
    let mut last_ipi: Option<u64> = None;
    loop {
        let alive = ALIVE.load(Ordering::SeqCst);
        let mut late = CpuMask::new();
        for (c, served) in CpuId::all(BARRIER_SERVED.len()).zip(BARRIER_SERVED.iter()) {
            if c != me && alive & (1 << c.get()) != 0 && served.load(Ordering::Acquire) < generation
            {
                late.set(c);
            }
        }
        if late.is_empty() {
            break;
        }
        let now = now_us();
        if last_ipi.is_none_or(|t| now.wrapping_sub(t) >= BARRIER_RESEND_US) {
            arch().send_ipi(Ipi::CallFunction, &late);
            last_ipi = Some(now);
        }
        serve_barrier();
        core::hint::spin_loop();
    }
    fence(Ordering::SeqCst);
}
