//! SMP: starting application processors (INIT-SIPI-SIPI), their idle loop,
//! the stopper context (`run_on_cpus`), cross-CPU function calls, and
//! parking a CPU that went offline.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

use arrayvec::ArrayVec;
use irqcore::{CpuId, CpuMask, IrqError};

use crate::boot::{AP_TRAMPOLINE, ap_tramp_end, ap_tramp_start};
use crate::cpu::{gdt, idt, percpu};
use crate::exit::{ExitCode, exit};
use crate::hw::{cpu, lapic};
use crate::irq::{self, vectors};
use crate::sync::IrqLock;
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
    let area = percpu::of(cpu);
    area.alive.store(false, Ordering::Release);
    area.starting_result.store(0, Ordering::Release);
    DEAD[cpu.index()].store(false, Ordering::Release);
    // SAFETY: only the address of this CPU's stack is taken; the stack is
    // used only by that CPU (the BSP starts one AP at a time).
    let top = unsafe { (&raw mut AP_STACKS.0[cpu.index()]) as usize + STACK_SIZE };
    AP_BOOT_STACK.store(top as u64, Ordering::Release);
    AP_BOOT_INDEX.store(cpu.0, Ordering::Release);
    let apic = percpu::apic_id_of(cpu);
    // INIT, then up to two SIPIs (SDM vol. 3, 8.4.4.1). QEMU needs no real
    // 10 ms INIT delay; 1 ms keeps the boot fast.
    lapic::send_init(apic);
    time::delay_us(1000);
    let page = (AP_TRAMPOLINE >> 12) as u8;
    for _ in 0..2 {
        lapic::send_sipi(apic, page);
        let t0 = time::now_us();
        while time::now_us() - t0 < 200_000 {
            match area.starting_result.load(Ordering::Acquire) {
                0 => core::hint::spin_loop(),
                1 => {
                    while !area.alive.load(Ordering::Acquire) {
                        core::hint::spin_loop();
                    }
                    return Ok(());
                }
                _ => return Err(IrqError::BadCpu(cpu)),
            }
        }
    }
    kprintln!("cpu{} (APIC id {}) did not start", cpu.0, apic);
    crate::serial::print(format_args!("RESULT: FAIL cpu{} did not start\n", cpu.0));
    exit(ExitCode::CpuTimeout)
}

/// Rust entry of an AP, on its own stack, interrupts off.
#[unsafe(no_mangle)]
extern "C" fn ap_main(index: u32) -> ! {
    let cpu = CpuId(index);
    percpu::install(cpu);
    gdt::load_for(cpu);
    idt::load_for(cpu);
    lapic::init_this_cpu(vectors::SPURIOUS);
    // The "starting" phase: irqcore runs the Starting callbacks (LAPIC
    // timer) and marks this CPU online, with interrupts still off.
    let ok = irq::CORE.cpu_starting().is_ok();
    percpu::this()
        .starting_result
        .store(if ok { 1 } else { 2 }, Ordering::Release);
    if !ok {
        die(cpu);
    }
    percpu::this().alive.store(true, Ordering::Release);
    idle_loop()
}

/// Idle loop of an AP: runs stopper work and interrupt threads, halts
/// otherwise, and parks for good once stop-machine marked it offline.
fn idle_loop() -> ! {
    let me = percpu::current();
    loop {
        cpu::cli();
        if !irq::CORE.cpu_online(me) {
            die(me);
        }
        if run_stopper_work(me) {
            continue;
        }
        if run_job(me) {
            continue;
        }
        cpu::sti();
        irq::run_deferred();
        cpu::cli();
        if !has_work(me) {
            cpu::sti_hlt();
        }
    }
}

fn has_work(me: CpuId) -> bool {
    STOPPER_PENDING.load(Ordering::Acquire) & (1 << me.0) != 0
        || JOBS[me.index()].lock().is_some()
        || !irq::CORE.cpu_online(me)
}

/// Parks this CPU: LAPIC off, interrupts off; the BSP then sends INIT so
/// that a later SIPI restarts it cleanly (`kill_cpu`).
fn die(me: CpuId) -> ! {
    lapic::disable_this_cpu();
    percpu::this().alive.store(false, Ordering::Release);
    DEAD[me.index()].store(true, Ordering::Release);
    cpu::halt_forever()
}

/// Waits until `cpu` is parked, then puts it into wait-for-SIPI.
pub fn wait_dead_and_reset(cpu: CpuId) {
    let t0 = time::now_us();
    while !DEAD[cpu.index()].load(Ordering::Acquire) {
        if time::now_us() - t0 > 2_000_000 {
            crate::serial::print(format_args!("RESULT: FAIL cpu{} did not die\n", cpu.0));
            exit(ExitCode::CpuTimeout);
        }
        core::hint::spin_loop();
    }
    lapic::send_init(percpu::apic_id_of(cpu));
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

fn run_stopper_work(me: CpuId) -> bool {
    let bit = 1usize << me.0;
    if STOPPER_PENDING.load(Ordering::Acquire) & bit == 0 {
        return false;
    }
    let work = *STOPPER_WORK.lock();
    STOPPER_PENDING.fetch_and(!bit, Ordering::AcqRel);
    if let Some(WorkPtr(w)) = work {
        // Stopper context: process context with interrupts enabled.
        cpu::sti();
        // SAFETY: `run_on_cpus` keeps the referent alive until
        // STOPPER_RUNNING drops to 0, which happens only after this call.
        unsafe { (*w)(me) };
    }
    cpu::cli();
    STOPPER_RUNNING.fetch_sub(1, Ordering::AcqRel);
    true
}

/// Runs `work(cpu)` on every CPU of `cpus` in its stopper context and waits
/// for all of them; the calling CPU runs its share itself.
pub fn run_on_cpus(cpus: &CpuMask, work: &(dyn Fn(CpuId) + Sync)) {
    let _serial = STOPPER_LOCK.lock();
    let me = percpu::current();
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
    for c in others.iter() {
        // Wake it from `hlt`: its idle loop then sees the pending work.
        lapic::send_ipi(percpu::apic_id_of(c), vectors::CALL_FUNCTION);
    }
    if cpus.intersects(&CpuMask::of(me)) {
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
/// context with interrupts enabled (the stopper work enables them, which
/// an interrupt handler on its IST stack or an `IrqLock` holder must never
/// see: both run with interrupts off, so that case is refused here), with
/// no lock held and outside any irqcore call (a stopped CPU must hold
/// nothing another participant may need: the dying CPU try-locks irqcore's
/// sparse lock and fails the hot-unplug if it is held). A job between two
/// of its steps is in exactly the idle loop's situation between two work
/// items. The stopper is not re-entered: jobs start from the idle loop,
/// never from inside `run_stopper_work`. If the stopper work takes this CPU
/// offline, the job must return at once (check `CORE.cpu_online`): the idle
/// loop then parks the CPU.
pub fn serve_stopper() -> bool {
    if !cpu::interrupts_enabled() || irq::CORE.in_interrupt() {
        return false;
    }
    // Same entry and exit state as in the idle loop: interrupts off (the
    // stopper work runs with them enabled).
    cpu::cli();
    let ran = run_stopper_work(percpu::current());
    cpu::sti();
    ran
}

// ----- background jobs --------------------------------------------------------

/// A background job (see [`start_job`]).
pub type Job = fn();

/// The job posted for each CPU, taken by its idle loop.
static JOBS: [IrqLock<Option<Job>>; percpu::MAX_CPUS] =
    [const { IrqLock::new(None) }; percpu::MAX_CPUS];
/// Set while a job is posted for or running on a CPU.
static JOB_BUSY: [AtomicBool; percpu::MAX_CPUS] =
    [const { AtomicBool::new(false) }; percpu::MAX_CPUS];

/// Starts `job` on `cpu` without waiting for it: the CPU's idle loop runs
/// it in process context with interrupts enabled, like a kernel thread (so
/// it may call irqcore functions that refuse interrupt context). The CPU
/// does nothing else until it returns, except serving interrupts and, if
/// the job calls [`serve_stopper`], stopper work. Returns false (nothing
/// posted) if `cpu` is the caller, not an online AP, or still busy with a
/// job; [`job_done`] says when it has returned.
pub fn start_job(cpu: CpuId, job: Job) -> bool {
    if cpu.index() >= percpu::MAX_CPUS
        || cpu == percpu::current()
        || cpu == CpuId(0)
        || !irq::CORE.cpu_online(cpu)
        || JOB_BUSY[cpu.index()].swap(true, Ordering::AcqRel)
    {
        return false;
    }
    *JOBS[cpu.index()].lock() = Some(job);
    // Wake it from `hlt`: its idle loop then sees the job.
    lapic::send_ipi(percpu::apic_id_of(cpu), vectors::CALL_FUNCTION);
    true
}

/// Whether the last job started on `cpu` has returned.
pub fn job_done(cpu: CpuId) -> bool {
    JOB_BUSY
        .get(cpu.index())
        .is_none_or(|b| !b.load(Ordering::Acquire))
}

/// Runs the job posted for this CPU, if any (interrupts off on entry and on
/// return, like `run_stopper_work`).
fn run_job(me: CpuId) -> bool {
    let Some(job) = JOBS[me.index()].lock().take() else {
        return false;
    };
    cpu::sti();
    job();
    cpu::cli();
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

static CALL_QUEUES: [IrqLock<ArrayVec<CrossCall, 128>>; percpu::MAX_CPUS] =
    [const { IrqLock::new(ArrayVec::new_const()) }; percpu::MAX_CPUS];

/// Queues `call` for `cpu` and sends it the CALL_FUNCTION IPI. Returns false
/// if its queue is full (nothing queued).
pub fn call_on(cpu: CpuId, call: CrossCall) -> bool {
    if CALL_QUEUES[cpu.index()].lock().try_push(call).is_err() {
        return false;
    }
    lapic::send_ipi(percpu::apic_id_of(cpu), vectors::CALL_FUNCTION);
    true
}

/// Number of calls queued for `cpu` and not run yet.
pub fn queued_calls(cpu: CpuId) -> usize {
    CALL_QUEUES[cpu.index()].lock().len()
}

/// Runs every call queued for this CPU (the CALL_FUNCTION handler, and
/// irqcore's `flush_cross_calls` on a dying CPU).
pub fn flush_cross_calls() {
    let me = percpu::current();
    loop {
        let next = {
            let mut q = CALL_QUEUES[me.index()].lock();
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
