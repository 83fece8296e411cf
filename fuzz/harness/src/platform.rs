//! The platform every harness runs on: the calling thread says which CPU it
//! plays (a thread-local), software resends and thread wake-ups are queued
//! for the harness to deliver when the operation sequence says so, and
//! stop-machine and CPU bring-up run on one persistent worker thread per
//! CPU.
//!
//! The workers live for the whole process: spawning threads in every
//! execution is slow, and LeakSanitizer reports glibc's per-thread
//! destructor list of a thread that is just exiting as a leak (a false
//! positive that would hide real ones).

use irqcore::hotplug::CpuControl;
use irqcore::{
    ActionId, CpuId, CpuMask, IrqCore, IrqError, IrqEvent, IrqFlags, IrqNumber, Platform,
};
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

/// CPU ids the harnesses use (the core is sized for this many).
pub const NR_CPUS: u32 = 4;

thread_local! {
    static CPU: Cell<u32> = const { Cell::new(0) };
}

/// Makes the calling thread play `cpu`.
pub fn set_cpu(cpu: CpuId) {
    CPU.with(|c| c.set(cpu.get()));
}

/// The CPU the calling thread plays.
pub fn cpu() -> CpuId {
    CpuId::new(CPU.with(|c| c.get())).unwrap()
}

/// Runs `f` while the calling thread plays `cpu`, then restores the
/// previous CPU.
pub fn as_cpu<R>(cpu: CpuId, f: impl FnOnce() -> R) -> R {
    let old = self::cpu();
    set_cpu(cpu);
    let r = f();
    set_cpu(old);
    r
}

/// A platform whose side effects are queues the harness drains.
#[derive(Default)]
pub struct FuzzPlatform {
    irq_on: [AtomicBool; NR_CPUS as usize],
    /// Irqs passed to `schedule_resend`, oldest first.
    pub resends: Mutex<Vec<IrqNumber>>,
    /// Thread wake-ups, oldest first.
    pub wakes: Mutex<Vec<(IrqNumber, ActionId)>>,
    /// Reported events, oldest first.
    pub events: Mutex<Vec<IrqEvent>>,
}

impl FuzzPlatform {
    /// Takes the queued software resends.
    pub fn take_resends(&self) -> Vec<IrqNumber> {
        std::mem::take(&mut *self.resends.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Takes the reported events.
    pub fn take_events(&self) -> Vec<IrqEvent> {
        std::mem::take(&mut *self.events.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn slot(&self) -> &AtomicBool {
        // Harnesses only play CPUs below NR_CPUS; clamp so a stray id cannot
        // make the platform itself panic.
        let i = (cpu().get() as usize).min(NR_CPUS as usize - 1);
        &self.irq_on[i]
    }
}

impl Platform for FuzzPlatform {
    fn current_cpu(&self) -> CpuId {
        cpu()
    }
    fn local_irq_save(&self) -> IrqFlags {
        IrqFlags(self.slot().swap(false, Ordering::SeqCst) as usize)
    }
    fn local_irq_restore(&self, flags: IrqFlags) {
        self.slot().store(flags.0 != 0, Ordering::SeqCst);
    }
    fn local_irq_enabled(&self) -> bool {
        self.slot().load(Ordering::SeqCst)
    }
    fn run_on_cpus(&self, cpus: &CpuMask, work: &(dyn Fn(CpuId) + Sync)) {
        run_on(cpus, work);
    }
    fn cpu_relax(&self) {
        std::thread::yield_now();
    }
    fn schedule_resend(&self, irq: IrqNumber) {
        self.resends
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(irq);
    }
    fn wake_thread(&self, irq: IrqNumber, action: ActionId) -> irqcore::ThreadWake {
        self.wakes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((irq, action));
        irqcore::ThreadWake::Queued
    }
    fn report(&self, event: IrqEvent) {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(event);
    }
}

/// Boots a CPU by running [`IrqCore::cpu_starting`] on a thread that plays
/// it; killing is a no-op (the thread is gone already).
pub struct ThreadCpus<'a>(pub &'a IrqCore<FuzzPlatform>);

impl CpuControl for ThreadCpus<'_> {
    fn boot_cpu(&self, cpu: CpuId) -> Result<(), IrqError> {
        let core = self.0;
        let result = Mutex::new(Err(IrqError::BadCpu(cpu)));
        run_on(&CpuMask::of(cpu), &|_| {
            *result.lock().unwrap_or_else(|e| e.into_inner()) = core.cpu_starting();
        });
        result.into_inner().unwrap_or_else(|e| e.into_inner())
    }
    fn kill_cpu(&self, _cpu: CpuId) -> Result<(), IrqError> {
        Ok(())
    }
}

/// A mask of CPUs `0..NR_CPUS+1` from the low bits of `bits` (bit
/// `NR_CPUS` names a CPU that does not exist, to exercise refusals).
pub fn mask_from_bits(bits: u8) -> CpuMask {
    let mut m = CpuMask::new();
    for c in 0..=NR_CPUS {
        if bits & (1 << c) != 0 {
            m.set(CpuId::new(c).unwrap());
        }
    }
    m
}

type Job = Box<dyn FnOnce() + Send + 'static>;

thread_local! {
    /// The calling thread's CPU workers (each harness run, and each test
    /// thread replaying a corpus, gets its own, so stop-machine rendezvous
    /// of two concurrent runs can never wait on each other).
    static WORKERS: OnceLock<Vec<mpsc::Sender<Job>>> = const { OnceLock::new() };
}

/// Sends `job` to the worker playing `cpu`, starting the workers on first
/// use.
fn send_to(cpu: CpuId, job: Job) -> bool {
    WORKERS.with(|w| {
        let w = w.get_or_init(|| {
            (0..NR_CPUS)
                .map(|c| {
                    let (tx, rx) = mpsc::channel::<Job>();
                    std::thread::Builder::new()
                        .name(format!("fuzz-cpu{c}"))
                        .spawn(move || {
                            for job in rx {
                                set_cpu(CpuId::new(c).unwrap());
                                job();
                            }
                        })
                        .expect("spawn CPU worker");
                    tx
                })
                .collect()
        });
        w.get(cpu.index()).is_some_and(|tx| tx.send(job).is_ok())
    })
}

/// Runs `work(c)` on the worker of every CPU `c` of `cpus` concurrently and
/// returns when all have returned; a panic in one is re-raised here after
/// all have finished.
pub fn run_on(cpus: &CpuMask, work: &(dyn Fn(CpuId) + Sync)) {
    // SAFETY: the reference is only used by the jobs sent below, and this
    // function does not return (or unwind) before every one of them has
    // reported completion on `done`, so `work` outlives all its uses.
    let work: &'static (dyn Fn(CpuId) + Sync) = unsafe {
        std::mem::transmute::<&(dyn Fn(CpuId) + Sync), &'static (dyn Fn(CpuId) + Sync)>(work)
    };
    let (done_tx, done) = mpsc::channel::<std::thread::Result<()>>();
    let mut sent = 0;
    for c in cpus.iter() {
        let d = done_tx.clone();
        let job: Job = Box::new(move || {
            let _ = d.send(catch_unwind(AssertUnwindSafe(|| work(c))));
        });
        if send_to(c, job) {
            sent += 1;
        }
    }
    let mut panic = None;
    for _ in 0..sent {
        match done.recv() {
            Ok(Ok(())) => {}
            Ok(Err(p)) => panic = Some(p),
            Err(_) => break,
        }
    }
    if let Some(p) = panic {
        resume_unwind(p);
    }
}
