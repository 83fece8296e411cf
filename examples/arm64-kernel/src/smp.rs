//! SMP: discovering and starting CPUs with PSCI, their idle loop, the
//! stopper context (`run_on_cpus`), cross-CPU function calls, and powering
//! a CPU off once irqcore took it offline; [`KernelCpuControl`] gives these
//! to irqcore's hotplug.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use arrayvec::ArrayVec;
use irqcore::{CpuControl, CpuId, CpuMask, IrqError};

use crate::cpu::{self, MAX_CPUS};
use crate::exit::{ExitCode, exit};
use crate::irq::{self, CORE, sgi};
use crate::psci::{self, AffinityState};
use crate::sync::IrqLock;
use crate::{SECONDARY_STACK_TOP, kprintln, time};

const STACK_SIZE: usize = 64 * 1024;

#[repr(C, align(16))]
struct Stacks([[u8; STACK_SIZE]; MAX_CPUS]);
static mut STACKS: Stacks = Stacks([[0; STACK_SIZE]; MAX_CPUS]);

/// Result of the `Starting` phase on a CPU being started: 0 pending,
/// 1 ok, 2 failed.
static STARTING_RESULT: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];

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
    STARTING_RESULT[i].store(0, Ordering::Release);
    if let Err(e) = psci::cpu_on(
        mpidr_of(cpu),
        secondary_entry as *const () as u64,
        cpu.0.into(),
    ) {
        kprintln!("PSCI CPU_ON cpu{}: {e:?}", cpu.0);
        return Err(IrqError::BadCpu(cpu));
    }
    let t0 = time::now_us();
    loop {
        match STARTING_RESULT[i].load(Ordering::Acquire) {
            0 if time::now_us() - t0 < CPU_TIMEOUT_US => core::hint::spin_loop(),
            0 => {
                kprintln!("RESULT: FAIL cpu{} did not start", cpu.0);
                exit(ExitCode::CpuTimeout)
            }
            1 => return Ok(()),
            _ => return Err(IrqError::BadCpu(cpu)),
        }
    }
}

/// Rust entry of a secondary CPU, on its own stack, MMU on, IRQs masked.
#[unsafe(no_mangle)]
extern "C" fn secondary_main(index: u64) -> ! {
    let me = CpuId(index as u32);
    // The "starting" phase: irqcore runs the Starting callbacks (GIC CPU
    // interface and redistributor, SGIs, timer) and marks this CPU online,
    // with IRQs still masked.
    let ok = CORE.cpu_starting().is_ok();
    STARTING_RESULT[me.index()].store(if ok { 1 } else { 2 }, Ordering::Release);
    if !ok {
        power_off()
    }
    idle_loop(me)
}

/// Idle loop of a secondary CPU: runs stopper work and background jobs,
/// sleeps otherwise, and powers off once stop-machine marked it offline.
fn idle_loop(me: CpuId) -> ! {
    loop {
        cpu::disable_irqs();
        if !CORE.cpu_online(me) {
            power_off();
        }
        if run_stopper_work(me) {
            continue;
        }
        if run_job(me) {
            continue;
        }
        cpu::wait_for_interrupt_masked();
    }
}

/// PSCI `CPU_OFF` (IRQs masked; the dying phase already quiesced the GIC
/// CPU interface and the timer).
fn power_off() -> ! {
    cpu::disable_irqs();
    let e = psci::cpu_off();
    kprintln!("PSCI CPU_OFF failed on cpu{}: {e:?}", cpu::current().0);
    cpu::halt_forever()
}

/// Waits until `cpu` is powered off (PSCI `AFFINITY_INFO`).
fn wait_off(cpu: CpuId) -> Result<(), IrqError> {
    let t0 = time::now_us();
    loop {
        match psci::affinity_info(mpidr_of(cpu)) {
            Ok(AffinityState::Off) => return Ok(()),
            Ok(_) if time::now_us() - t0 < CPU_TIMEOUT_US => core::hint::spin_loop(),
            Ok(_) => {
                kprintln!("RESULT: FAIL cpu{} did not power off", cpu.0);
                exit(ExitCode::CpuTimeout)
            }
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

/// Runs this CPU's share of the current stopper work, if any (IRQs masked
/// on entry and on return).
fn run_stopper_work(me: CpuId) -> bool {
    let bit = 1usize << me.0;
    if STOPPER_PENDING.load(Ordering::Acquire) & bit == 0 {
        return false;
    }
    let work = *STOPPER_WORK.lock();
    STOPPER_PENDING.fetch_and(!bit, Ordering::AcqRel);
    if let Some(WorkPtr(w)) = work {
        // Stopper context: process context with IRQs unmasked.
        cpu::enable_irqs();
        // SAFETY: `run_on_cpus` keeps the referent alive until
        // STOPPER_RUNNING drops to 0, which happens only after this call.
        unsafe { (*w)(me) };
    }
    cpu::disable_irqs();
    STOPPER_RUNNING.fetch_sub(1, Ordering::AcqRel);
    true
}

/// Runs `work(cpu)` on every CPU of `cpus` in its stopper context and waits
/// for all of them; the calling CPU runs its share itself. The others are
/// woken with the CALL_FUNCTION SGI.
pub fn run_on_cpus(cpus: &CpuMask, work: &(dyn Fn(CpuId) + Sync)) {
    let _serial = STOPPER_LOCK.lock();
    let me = cpu::current();
    let others = cpus.and_not(&CpuMask::of(me));
    let mut bits = 0usize;
    for c in others.iter() {
        bits |= 1 << c.0;
    }
    // SAFETY: erasing the lifetime is sound because we do not return before
    // every CPU has finished with the pointer (STOPPER_RUNNING == 0).
    let ptr: *const (dyn Fn(CpuId) + Sync) =
        unsafe { core::mem::transmute(work as *const (dyn Fn(CpuId) + Sync + '_)) };
    *STOPPER_WORK.lock() = Some(WorkPtr(ptr));
    STOPPER_RUNNING.store(others.weight() as u32, Ordering::Release);
    STOPPER_PENDING.store(bits, Ordering::Release);
    if !others.is_empty() {
        irq::send_sgi(sgi::CALL_FUNCTION, &others);
    }
    if cpus.contains(me) {
        work(me);
    }
    while STOPPER_RUNNING.load(Ordering::Acquire) != 0 {
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
/// context with IRQs unmasked (the stopper work unmasks them, which an
/// interrupt handler or an `IrqLock` holder must never see: both run with
/// IRQs masked, so that case is refused here), with no lock held and
/// outside any irqcore call (a stopped CPU must hold nothing another
/// participant may need: the dying CPU try-locks irqcore's sparse lock and
/// fails the hot-unplug if it is held). A job between two of its steps is
/// in exactly the idle loop's situation between two work items. The
/// stopper is not re-entered: jobs start from the idle loop, never from
/// inside `run_stopper_work`. If the stopper work takes this CPU offline,
/// the job must return at once (check `CORE.cpu_online`): the idle loop
/// then powers the CPU off.
pub fn serve_stopper() -> bool {
    if !cpu::irqs_enabled() || CORE.in_interrupt() {
        return false;
    }
    // Same entry and exit state as in the idle loop: IRQs masked (the
    // stopper work runs with them unmasked).
    cpu::disable_irqs();
    let ran = run_stopper_work(cpu::current());
    cpu::enable_irqs();
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
/// it in process context with IRQs unmasked, like a kernel thread (so it
/// may call irqcore functions that refuse interrupt context). The CPU does
/// nothing else until it returns, except serving interrupts and, if the job
/// calls [`serve_stopper`], stopper work. Returns false (nothing posted) if
/// `cpu` is the caller, not an online secondary CPU, or still busy with a
/// job; [`job_done`] says when it has returned.
pub fn start_job(cpu: CpuId, job: Job) -> bool {
    if cpu.index() >= MAX_CPUS
        || cpu == cpu::current()
        || cpu == CpuId(0)
        || !CORE.cpu_online(cpu)
        || JOB_BUSY[cpu.index()].swap(true, Ordering::AcqRel)
    {
        return false;
    }
    *JOBS[cpu.index()].lock() = Some(job);
    // Wake it from WFI: its idle loop then sees the job.
    irq::send_sgi(sgi::CALL_FUNCTION, &CpuMask::of(cpu));
    true
}

/// Whether the last job started on `cpu` has returned.
pub fn job_done(cpu: CpuId) -> bool {
    JOB_BUSY
        .get(cpu.index())
        .is_none_or(|b| !b.load(Ordering::Acquire))
}

/// Runs the job posted for this CPU, if any (IRQs masked on entry and on
/// return, like `run_stopper_work`).
fn run_job(me: CpuId) -> bool {
    let Some(job) = JOBS[me.index()].lock().take() else {
        return false;
    };
    cpu::enable_irqs();
    job();
    cpu::disable_irqs();
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

static CALL_QUEUES: [IrqLock<ArrayVec<CrossCall, 64>>; MAX_CPUS] =
    [const { IrqLock::new(ArrayVec::new_const()) }; MAX_CPUS];

/// Queues `call` for `cpu` and sends it the CALL_FUNCTION SGI. Returns false
/// (nothing queued) if its queue is full or it is offline.
pub fn call_on(cpu: CpuId, call: CrossCall) -> bool {
    if cpu.index() >= MAX_CPUS || !CORE.cpu_online(cpu) {
        return false;
    }
    if CALL_QUEUES[cpu.index()].lock().try_push(call).is_err() {
        return false;
    }
    irq::send_sgi(sgi::CALL_FUNCTION, &CpuMask::of(cpu));
    true
}

/// Number of calls queued for `cpu` and not run yet.
pub fn queued_calls(cpu: CpuId) -> usize {
    CALL_QUEUES.get(cpu.index()).map_or(0, |q| q.lock().len())
}

/// Runs every call queued for this CPU (the CALL_FUNCTION handler, and
/// irqcore's `flush_cross_calls` on a dying CPU).
pub fn flush_cross_calls() {
    let me = cpu::current();
    let Some(queue) = CALL_QUEUES.get(me.index()) else {
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
