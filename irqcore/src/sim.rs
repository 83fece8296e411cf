//! Simulated multi-CPU platform (feature `sim`): threads play CPUs.
//!
//! [`SimMachine::new`] starts one persistent thread per simulated CPU. Each
//! CPU has a local interrupt flag, a queue of incoming interrupts, a queue of
//! cross-CPU calls and a queue of process-context work (its stopper). A
//! [`SimPlatform`] (a cheap handle, also reachable from the machine through
//! `Deref`) implements [`Platform`] for code running on those threads and
//! offers the test-side controls: raise an interrupt, send an IPI, run a
//! closure on a CPU, take a CPU offline, install hooks.
//!
//! # Interrupt delivery model
//!
//! An interrupt raised with [`SimPlatform::raise`] (or the IPI of
//! [`SimPlatform::send_ipi`]) is queued on its CPU and taken, in the order
//! raised, at that CPU's next *delivery point* while its interrupts are
//! enabled: when the CPU is idle, in [`Platform::cpu_relax`], in
//! [`Platform::local_irq_save`] (before the flag goes off) and in
//! [`Platform::local_irq_restore`] (after it comes on), and while the CPU
//! waits in [`Platform::run_on_cpus`] or [`SimPlatform::on_cpu`]. Delivery
//! runs with the CPU's interrupts off and restores them afterwards, so
//! handlers never nest. This is real hardware's "taken at the next
//! instruction boundary" with an interconnect of zero latency: anything
//! raised before (in the happens-before sense) a CPU disables its interrupts
//! is taken before the disable. Real IPIs have a flight time, which is one
//! reason stop-machine also flushes queued cross-calls on a dying CPU.
//!
//! Device interrupts are handed to the interrupt-entry hook
//! ([`SimPlatform::set_irq_entry_hook`]), typically
//! `move |_, irq| { let _ = core.handle_irq(irq); }`. The IPI is handled by
//! the simulator itself: it runs the CPU's queued cross-calls and records each
//! in [`SimPlatform::cross_call_log`] with the CPU it ran on and whether that
//! CPU was online at that moment.
//!
//! # Threads that are not simulated CPUs
//!
//! The test's own thread (or any other thread) is *outside* the machine. On
//! such a thread [`Platform::current_cpu`] returns CPU 0 (documented choice,
//! so code written for CPU context does not panic; use
//! [`SimPlatform::try_current_cpu`] to tell), the local interrupt flag is a
//! thread-local of that thread (it never touches CPU 0's flag), no
//! interrupts are delivered to it, and [`Platform::run_on_cpus`] posts work to
//! every CPU of the mask. To act *as* a CPU, use [`SimPlatform::on_cpu`].
//!
//! # Lifetime
//!
//! Dropping the last `Arc<SimMachine>` stops and joins every CPU thread (after
//! they drained their work queues) and removes the hooks, which breaks the
//! reference cycle a hook capturing a [`SimPlatform`] (or an `IrqCore` that
//! owns one) would form. Hooks must therefore capture a [`SimPlatform`], never
//! the `Arc<SimMachine>` itself (that cycle would keep the threads alive).
//! Handles used after the machine is gone find no CPU thread: `run_on_cpus`
//! runs nothing and `on_cpu` returns [`SimError::ShutDown`].

use crate::cpumask::{CpuMask, MAX_CPUS};
use crate::ids::{CpuId, IrqNumber};
use crate::platform::{ActionId, IrqEvent, IrqFlags, Platform};
use core::ops::Deref;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::any::Any;
use std::boxed::Box;
use std::cell::Cell;
use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::string::String;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock};
use std::thread::{self, JoinHandle};
use std::vec::Vec;

/// Called on a CPU thread, interrupts off, for every device interrupt
/// delivered to that CPU.
pub type IrqEntryHook = Arc<dyn Fn(CpuId, IrqNumber) + Send + Sync>;
/// Called for [`Platform::schedule_resend`].
pub type ResendHook = Arc<dyn Fn(IrqNumber) + Send + Sync>;
/// Called for [`Platform::wake_thread`].
pub type WakeThreadHook = Arc<dyn Fn(IrqNumber, ActionId) + Send + Sync>;
/// Called on a CPU thread in its stopper context just before it runs its share
/// of [`Platform::run_on_cpus`] (interrupts enabled): lets a test stagger the
/// CPUs' arrival in stop-machine.
pub type StopperEntryHook = Arc<dyn Fn(CpuId) + Send + Sync>;

/// Errors of the simulator's controls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimError {
    /// The machine has no such CPU.
    NoSuchCpu(CpuId),
    /// The target CPU is offline (cross-calls are refused, as Linux's
    /// `smp_call_function_single` does).
    CpuOffline(CpuId),
    /// The machine has been dropped.
    ShutDown,
}

impl core::fmt::Display for SimError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(self, f)
    }
}

impl std::error::Error for SimError {}

/// How a cross-CPU call came to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallPath {
    /// From the IPI handler.
    Ipi,
    /// From [`Platform::flush_cross_calls`] (a dying CPU flushing its queue).
    Flush,
}

/// One cross-CPU call that has run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrossCallRecord {
    /// The id [`SimPlatform::send_ipi`] returned.
    pub id: u64,
    /// The sender, as given to `send_ipi`.
    pub from: CpuId,
    /// The CPU the call was sent to.
    pub target: CpuId,
    /// The CPU it ran on.
    pub ran_on: CpuId,
    /// Whether `ran_on` was online when the call ran.
    pub ran_while_online: bool,
    /// Whether an IPI or a flush ran it.
    pub path: CallPath,
}

type Work = Box<dyn FnOnce() + Send>;

struct CrossCall {
    id: u64,
    from: CpuId,
    f: Box<dyn FnOnce() + Send>,
}

#[derive(Clone, Copy)]
enum Incoming {
    Irq(IrqNumber),
    Ipi,
}

#[derive(Default)]
struct Queues {
    work: VecDeque<Work>,
    incoming: VecDeque<Incoming>,
    ipi_queued: bool,
    calls: VecDeque<CrossCall>,
}

struct SimCpu {
    /// This CPU's id (its index in `Shared::cpus`).
    id: CpuId,
    online: AtomicBool,
    irqs_enabled: AtomicBool,
    /// `queues.incoming` is non-empty (a hint read without the lock; written
    /// under it).
    pending: AtomicBool,
    delivered: AtomicU64,
    queues: Mutex<Queues>,
    /// Signalled when work or an interrupt arrives for this CPU, or when
    /// something it waits for completes.
    wake: Condvar,
}

#[derive(Default)]
struct Hooks {
    irq_entry: Option<IrqEntryHook>,
    resend: Option<ResendHook>,
    wake_thread: Option<WakeThreadHook>,
    stopper_entry: Option<StopperEntryHook>,
}

#[derive(Default)]
struct Logs {
    calls: Vec<CrossCallRecord>,
    unhandled: Vec<(CpuId, IrqNumber)>,
    resends: Vec<IrqNumber>,
    wakes: Vec<(IrqNumber, ActionId)>,
    events: Vec<IrqEvent>,
    panics: Vec<String>,
}

struct Shared {
    id: usize,
    cpus: Box<[SimCpu]>,
    shutdown: AtomicBool,
    hooks: RwLock<Hooks>,
    logs: Mutex<Logs>,
    next_call_id: AtomicU64,
}

static NEXT_MACHINE_ID: AtomicUsize = AtomicUsize::new(1);

std::thread_local! {
    /// (machine id, CPU index) of the simulated CPU this thread plays.
    static CURRENT: Cell<Option<(usize, usize)>> = const { Cell::new(None) };
    /// The local interrupt flag of a thread outside the machine.
    static OUTSIDE_IRQS_ENABLED: Cell<bool> = const { Cell::new(true) };
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

const IRQS_ON: IrqFlags = IrqFlags(1);
const IRQS_OFF: IrqFlags = IrqFlags(0);

/// A simulated machine: owns the CPU threads. Dereferences to its
/// [`SimPlatform`] handle, where every operation lives.
pub struct SimMachine {
    platform: SimPlatform,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// A handle to a [`SimMachine`]: the [`Platform`] implementation and the
/// test controls. Cheap to clone; does not keep the CPU threads alive.
#[derive(Clone)]
pub struct SimPlatform {
    shared: Arc<Shared>,
}

impl SimMachine {
    /// Starts a machine with `ncpus` CPUs (clamped to `1..=MAX_CPUS`), all
    /// online, interrupts enabled, idle.
    pub fn new(ncpus: usize) -> Arc<SimMachine> {
        let n = ncpus.clamp(1, MAX_CPUS);
        let cpus = CpuId::all(n)
            .map(|id| SimCpu {
                id,
                online: AtomicBool::new(true),
                irqs_enabled: AtomicBool::new(true),
                pending: AtomicBool::new(false),
                delivered: AtomicU64::new(0),
                queues: Mutex::new(Queues::default()),
                wake: Condvar::new(),
            })
            .collect();
        let shared = Arc::new(Shared {
            id: NEXT_MACHINE_ID.fetch_add(1, Ordering::Relaxed),
            cpus,
            shutdown: AtomicBool::new(false),
            hooks: RwLock::new(Hooks::default()),
            logs: Mutex::new(Logs::default()),
            next_call_id: AtomicU64::new(1),
        });
        let threads = (0..n)
            .map(|i| {
                let s = shared.clone();
                thread::Builder::new()
                    .name(std::format!("sim-cpu{i}"))
                    .spawn(move || s.cpu_main(i))
                    .unwrap_or_else(|e| panic!("cannot start simulated CPU thread: {e}"))
            })
            .collect();
        Arc::new(SimMachine {
            platform: SimPlatform { shared },
            threads: Mutex::new(threads),
        })
    }

    /// A handle implementing [`Platform`] (same as `(*machine).clone()`).
    pub fn platform(&self) -> SimPlatform {
        self.platform.clone()
    }
}

impl Deref for SimMachine {
    type Target = SimPlatform;
    fn deref(&self) -> &SimPlatform {
        &self.platform
    }
}

impl Drop for SimMachine {
    fn drop(&mut self) {
        let shared = &self.platform.shared;
        shared.shutdown.store(true, Ordering::SeqCst);
        // Break cycles through hooks that own platform handles.
        *shared.hooks.write().unwrap_or_else(PoisonError::into_inner) = Hooks::default();
        for cpu in shared.cpus.iter() {
            let _q = lock(&cpu.queues);
            cpu.wake.notify_all();
        }
        let me = shared.current_index();
        for (i, t) in lock(&self.threads).drain(..).enumerate() {
            if Some(i) != me {
                let _ = t.join();
            }
        }
        let panics = core::mem::take(&mut lock(&shared.logs).panics);
        if !panics.is_empty() && !thread::panicking() {
            panic!("simulated CPUs caught panics in hooks or cross-calls: {panics:?}");
        }
    }
}

impl core::fmt::Debug for SimMachine {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SimMachine")
            .field("ncpus", &self.ncpus())
            .finish_non_exhaustive()
    }
}

impl core::fmt::Debug for SimPlatform {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SimPlatform")
            .field("ncpus", &self.ncpus())
            .finish_non_exhaustive()
    }
}

/// Counts finished shares of a [`Shared::run_scoped`] call and wakes its
/// waiter.
struct Completion {
    remaining: AtomicUsize,
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    /// The CPU index of the waiter, if it is a simulated CPU (woken through
    /// that CPU's condvar so it keeps taking interrupts while it waits).
    waiter_cpu: Option<usize>,
    lock: Mutex<()>,
    done: Condvar,
}

impl Completion {
    fn finish_one(&self, shared: &Shared, outcome: Result<(), Box<dyn Any + Send>>) {
        if let Err(p) = outcome {
            lock(&self.panic).get_or_insert(p);
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            match self.waiter_cpu {
                Some(c) => {
                    let _q = lock(&shared.cpus[c].queues);
                    shared.cpus[c].wake.notify_all();
                }
                None => {
                    let _g = lock(&self.lock);
                    self.done.notify_all();
                }
            }
        }
    }

    fn is_done(&self) -> bool {
        self.remaining.load(Ordering::Acquire) == 0
    }
}

impl Shared {
    fn current_index(&self) -> Option<usize> {
        CURRENT.with(|c| match c.get() {
            Some((m, i)) if m == self.id => Some(i),
            _ => None,
        })
    }

    fn cpu_index(&self, cpu: CpuId) -> Result<usize, SimError> {
        let i = cpu.index();
        if i < self.cpus.len() {
            Ok(i)
        } else {
            Err(SimError::NoSuchCpu(cpu))
        }
    }

    fn hooks(&self) -> std::sync::RwLockReadGuard<'_, Hooks> {
        self.hooks.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The CPU thread: runs work, takes interrupts while idle, exits on
    /// shutdown once its work queue is empty.
    fn cpu_main(self: Arc<Self>, i: usize) {
        CURRENT.with(|c| c.set(Some((self.id, i))));
        let cpu = &self.cpus[i];
        loop {
            self.deliver_pending(i);
            let work = {
                let mut q = lock(&cpu.queues);
                loop {
                    if let Some(w) = q.work.pop_front() {
                        break Some(w);
                    }
                    if cpu.irqs_enabled.load(Ordering::SeqCst) && !q.incoming.is_empty() {
                        break None;
                    }
                    if self.shutdown.load(Ordering::SeqCst) {
                        return;
                    }
                    q = cpu.wake.wait(q).unwrap_or_else(PoisonError::into_inner);
                }
            };
            if let Some(w) = work {
                w();
            }
        }
    }

    /// Takes every pending interrupt of CPU `i` while its interrupts are
    /// enabled. Must run on CPU `i`'s thread.
    fn deliver_pending(&self, i: usize) {
        let cpu = &self.cpus[i];
        while cpu.irqs_enabled.load(Ordering::SeqCst) && cpu.pending.load(Ordering::SeqCst) {
            let next = {
                let mut q = lock(&cpu.queues);
                let next = q.incoming.pop_front();
                if matches!(next, Some(Incoming::Ipi)) {
                    q.ipi_queued = false;
                }
                cpu.pending.store(!q.incoming.is_empty(), Ordering::SeqCst);
                next
            };
            let Some(next) = next else { return };
            // Interrupt entry: the flag goes off for the handler and comes
            // back on after it (it was on, or we would not be here).
            cpu.irqs_enabled.store(false, Ordering::SeqCst);
            cpu.delivered.fetch_add(1, Ordering::Relaxed);
            match next {
                Incoming::Irq(irq) => {
                    let hook = self.hooks().irq_entry.clone();
                    match hook {
                        Some(h) => self.guarded(|| h(cpu.id, irq)),
                        None => lock(&self.logs).unhandled.push((cpu.id, irq)),
                    }
                }
                Incoming::Ipi => self.run_cross_calls(i, CallPath::Ipi),
            }
            cpu.irqs_enabled.store(true, Ordering::SeqCst);
        }
    }

    /// Runs (and records) every cross-call queued on CPU `i`, on its thread.
    fn run_cross_calls(&self, i: usize, path: CallPath) {
        let cpu = &self.cpus[i];
        loop {
            let Some(call) = lock(&cpu.queues).calls.pop_front() else {
                return;
            };
            let ran_while_online = cpu.online.load(Ordering::SeqCst);
            self.guarded(call.f);
            lock(&self.logs).calls.push(CrossCallRecord {
                id: call.id,
                from: call.from,
                target: cpu.id,
                ran_on: cpu.id,
                ran_while_online,
                path,
            });
        }
    }

    /// Queues `incoming` on CPU `i` and wakes it; delivers at once if that is
    /// the calling CPU and its interrupts are on (a self-interrupt).
    fn queue_incoming(&self, i: usize, incoming: Incoming) {
        let cpu = &self.cpus[i];
        {
            let mut q = lock(&cpu.queues);
            match incoming {
                Incoming::Ipi if q.ipi_queued => {}
                Incoming::Ipi => {
                    q.ipi_queued = true;
                    q.incoming.push_back(incoming);
                }
                Incoming::Irq(_) => q.incoming.push_back(incoming),
            }
            cpu.pending.store(true, Ordering::SeqCst);
            cpu.wake.notify_all();
        }
        if self.current_index() == Some(i) {
            self.deliver_pending(i);
        }
    }

    /// Waits on CPU `i`'s own thread until `done()`, taking interrupts (when
    /// enabled) and running queued work meanwhile: a waiting CPU is preempted
    /// by its stopper, as a sleeping task would be.
    fn cpu_wait(&self, i: usize, done: &dyn Fn() -> bool) {
        let cpu = &self.cpus[i];
        loop {
            self.deliver_pending(i);
            let work = {
                let mut q = lock(&cpu.queues);
                loop {
                    if done() {
                        return;
                    }
                    if let Some(w) = q.work.pop_front() {
                        break Some(w);
                    }
                    if cpu.irqs_enabled.load(Ordering::SeqCst) && !q.incoming.is_empty() {
                        break None;
                    }
                    q = cpu.wake.wait(q).unwrap_or_else(PoisonError::into_inner);
                }
            };
            if let Some(w) = work {
                w();
            }
        }
    }

    fn post_work(&self, i: usize, w: Work) -> Result<(), SimError> {
        let cpu = &self.cpus[i];
        let mut q = lock(&cpu.queues);
        if self.shutdown.load(Ordering::SeqCst) {
            return Err(SimError::ShutDown);
        }
        q.work.push_back(w);
        cpu.wake.notify_all();
        Ok(())
    }

    /// Runs `work(i)` on every CPU index of `targets` (the caller's own CPU
    /// inline) and returns when all have finished; re-raises the first panic
    /// of any share after all have finished. `stopper` calls the stopper
    /// entry hook first on each CPU.
    fn run_scoped(
        self: &Arc<Self>,
        targets: &[usize],
        stopper: bool,
        work: &(dyn Fn(usize) + Sync),
    ) {
        let me = self.current_index();
        let remote: Vec<usize> = targets.iter().copied().filter(|t| Some(*t) != me).collect();
        let completion = Arc::new(Completion {
            remaining: AtomicUsize::new(remote.len()),
            panic: Mutex::new(None),
            waiter_cpu: me,
            lock: Mutex::new(()),
            done: Condvar::new(),
        });
        // SAFETY: only the lifetime is extended. Every share that received
        // this reference calls `finish_one` after its last use of it (its
        // panics are caught first), and this function does not return before
        // `completion` reports that every posted share has finished (shares
        // that could not be posted are counted as finished at once and never
        // see the reference). Nothing between here and the end of the wait
        // unwinds: the own share runs under `catch_unwind`, and the wait only
        // takes interrupts and runs work items, both of which catch panics
        // (`guarded`, the shares' own `catch_unwind`). So the reference never
        // outlives `work`.
        let work: &'static (dyn Fn(usize) + Sync) = unsafe {
            core::mem::transmute::<&(dyn Fn(usize) + Sync), &'static (dyn Fn(usize) + Sync)>(work)
        };
        for &t in &remote {
            let c = completion.clone();
            let s = self.clone();
            let share: Work = Box::new(move || {
                let outcome = catch_unwind(AssertUnwindSafe(|| {
                    if stopper {
                        s.call_stopper_entry(t);
                    }
                    work(t)
                }));
                c.finish_one(&s, outcome);
            });
            if self.post_work(t, share).is_err() {
                completion.finish_one(self, Ok(()));
            }
        }
        let own = match me {
            Some(m) if targets.contains(&m) => catch_unwind(AssertUnwindSafe(|| {
                if stopper {
                    self.call_stopper_entry(m);
                }
                work(m)
            })),
            _ => Ok(()),
        };
        match me {
            Some(m) => self.cpu_wait(m, &|| completion.is_done()),
            None => {
                let mut g = lock(&completion.lock);
                while !completion.is_done() {
                    g = completion
                        .done
                        .wait(g)
                        .unwrap_or_else(PoisonError::into_inner);
                }
            }
        }
        if let Err(p) = own {
            resume_unwind(p);
        }
        if let Some(p) = lock(&completion.panic).take() {
            resume_unwind(p);
        }
    }

    /// Runs `f`, which the simulator calls on behalf of a test (a hook or
    /// a cross-call), catching a panic so the CPU thread survives; the panic
    /// message is kept and re-raised when the machine is dropped.
    fn guarded(&self, f: impl FnOnce()) {
        if let Err(p) = catch_unwind(AssertUnwindSafe(f)) {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| String::from(*s))
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| String::from("non-string panic payload"));
            lock(&self.logs).panics.push(msg);
        }
    }

    fn call_stopper_entry(&self, i: usize) {
        let hook = self.hooks().stopper_entry.clone();
        if let Some(h) = hook {
            h(self.cpus[i].id);
        }
    }
}

impl SimPlatform {
    /// Number of simulated CPUs.
    pub fn ncpus(&self) -> usize {
        self.shared.cpus.len()
    }

    /// All CPUs of the machine.
    pub fn all_cpus(&self) -> CpuMask {
        CpuMask::first_n(self.ncpus())
    }

    /// The CPUs currently marked online.
    pub fn online_mask(&self) -> CpuMask {
        self.shared
            .cpus
            .iter()
            .filter(|c| c.online.load(Ordering::SeqCst))
            .map(|c| c.id)
            .collect()
    }

    /// Whether `cpu` exists and is online.
    pub fn is_online(&self, cpu: CpuId) -> bool {
        self.shared
            .cpu_index(cpu)
            .is_ok_and(|i| self.shared.cpus[i].online.load(Ordering::SeqCst))
    }

    /// Marks `cpu` online or offline (the simulator's `set_cpu_online`). The
    /// thread keeps running; offline only changes what is recorded and that
    /// [`SimPlatform::send_ipi`] refuses it.
    pub fn set_online(&self, cpu: CpuId, online: bool) -> Result<(), SimError> {
        let i = self.shared.cpu_index(cpu)?;
        self.shared.cpus[i].online.store(online, Ordering::SeqCst);
        Ok(())
    }

    /// The simulated CPU the calling thread plays, or `None` outside the
    /// machine.
    pub fn try_current_cpu(&self) -> Option<CpuId> {
        self.shared.current_index().map(|i| self.shared.cpus[i].id)
    }

    /// Whether `cpu` currently has its interrupts enabled.
    pub fn irqs_enabled(&self, cpu: CpuId) -> Result<bool, SimError> {
        let i = self.shared.cpu_index(cpu)?;
        Ok(self.shared.cpus[i].irqs_enabled.load(Ordering::SeqCst))
    }

    /// Interrupts (device and IPI) delivered to `cpu` so far.
    pub fn delivered(&self, cpu: CpuId) -> u64 {
        self.shared
            .cpu_index(cpu)
            .map_or(0, |i| self.shared.cpus[i].delivered.load(Ordering::Relaxed))
    }

    /// Raises device interrupt `irq` on `cpu`: it is handed to the
    /// interrupt-entry hook at the CPU's next delivery point with interrupts
    /// enabled (see the module docs).
    pub fn raise(&self, cpu: CpuId, irq: IrqNumber) -> Result<(), SimError> {
        let i = self.shared.cpu_index(cpu)?;
        self.shared.queue_incoming(i, Incoming::Irq(irq));
        Ok(())
    }

    /// Queues the cross-CPU call `f` on `to` and raises its IPI (Linux's
    /// `smp_call_function_single` without waiting). `from` is recorded only.
    /// Refused if `to` is offline. Returns the call's id, as found in
    /// [`SimPlatform::cross_call_log`] once it has run.
    pub fn send_ipi<F: FnOnce() + Send + 'static>(
        &self,
        from: CpuId,
        to: CpuId,
        f: F,
    ) -> Result<u64, SimError> {
        let i = self.shared.cpu_index(to)?;
        let cpu = &self.shared.cpus[i];
        let id = self.shared.next_call_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut q = lock(&cpu.queues);
            if !cpu.online.load(Ordering::SeqCst) {
                return Err(SimError::CpuOffline(to));
            }
            q.calls.push_back(CrossCall {
                id,
                from,
                f: Box::new(f),
            });
        }
        self.shared.queue_incoming(i, Incoming::Ipi);
        Ok(id)
    }

    /// Cross-calls queued on `cpu` that have not run yet.
    pub fn pending_cross_calls(&self, cpu: CpuId) -> usize {
        self.shared
            .cpu_index(cpu)
            .map_or(0, |i| lock(&self.shared.cpus[i].queues).calls.len())
    }

    /// Every cross-call that has run, in the order they ran.
    pub fn cross_call_log(&self) -> Vec<CrossCallRecord> {
        lock(&self.shared.logs).calls.clone()
    }

    /// Device interrupts delivered while no interrupt-entry hook was
    /// installed.
    pub fn unhandled_interrupts(&self) -> Vec<(CpuId, IrqNumber)> {
        lock(&self.shared.logs).unhandled.clone()
    }

    /// [`Platform::schedule_resend`] requests made while no resend hook was
    /// installed.
    pub fn resend_requests(&self) -> Vec<IrqNumber> {
        lock(&self.shared.logs).resends.clone()
    }

    /// [`Platform::wake_thread`] requests made while no wake hook was
    /// installed.
    pub fn wake_requests(&self) -> Vec<(IrqNumber, ActionId)> {
        lock(&self.shared.logs).wakes.clone()
    }

    /// Events received through [`Platform::report`].
    pub fn events(&self) -> Vec<IrqEvent> {
        lock(&self.shared.logs).events.clone()
    }

    /// Panics caught in hooks and cross-calls so far (they are also re-raised
    /// when the machine is dropped); taking them clears the list.
    pub fn take_panics(&self) -> Vec<String> {
        core::mem::take(&mut lock(&self.shared.logs).panics)
    }

    /// Installs (or removes) the interrupt-entry hook.
    pub fn set_irq_entry_hook(&self, hook: Option<IrqEntryHook>) {
        self.shared
            .hooks
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .irq_entry = hook;
    }

    /// Installs (or removes) the hook behind [`Platform::schedule_resend`].
    pub fn set_resend_hook(&self, hook: Option<ResendHook>) {
        self.shared
            .hooks
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .resend = hook;
    }

    /// Installs (or removes) the hook behind [`Platform::wake_thread`].
    pub fn set_wake_thread_hook(&self, hook: Option<WakeThreadHook>) {
        self.shared
            .hooks
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .wake_thread = hook;
    }

    /// Installs (or removes) the stopper-entry hook (see [`StopperEntryHook`]).
    pub fn set_stopper_entry_hook(&self, hook: Option<StopperEntryHook>) {
        self.shared
            .hooks
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .stopper_entry = hook;
    }

    /// Runs `f` in process context on `cpu`'s thread (interrupts as that CPU
    /// has them) and returns its value; inline if the caller already is that
    /// CPU. While waiting, a calling CPU keeps taking interrupts and running
    /// its own queued work. A panic in `f` is re-raised here.
    pub fn on_cpu<R: Send, F: FnOnce() -> R + Send>(
        &self,
        cpu: CpuId,
        f: F,
    ) -> Result<R, SimError> {
        let i = self.shared.cpu_index(cpu)?;
        if self.shared.shutdown.load(Ordering::SeqCst) {
            return Err(SimError::ShutDown);
        }
        let f = Mutex::new(Some(f));
        let out: Mutex<Option<R>> = Mutex::new(None);
        self.shared.run_scoped(&[i], false, &|_| {
            if let Some(f) = lock(&f).take() {
                let r = f();
                *lock(&out) = Some(r);
            }
        });
        out.into_inner()
            .unwrap_or_else(PoisonError::into_inner)
            .ok_or(SimError::ShutDown)
    }

    /// Names the thread for diagnostics: `"cpuN"` on a simulated CPU,
    /// `"outside"` elsewhere.
    pub fn context_name(&self) -> String {
        match self.try_current_cpu() {
            Some(c) => std::format!("cpu{}", c.get()),
            None => String::from("outside"),
        }
    }
}

/// `membarrier(2)` commands (Linux uapi `linux/membarrier.h`).
#[cfg(all(target_os = "linux", not(miri)))]
const MEMBARRIER_CMD_GLOBAL: libc::c_int = 1 << 0;
#[cfg(all(target_os = "linux", not(miri)))]
const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_int = 1 << 3;
#[cfg(all(target_os = "linux", not(miri)))]
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_int = 1 << 4;

/// Whether the simulator provides [`Platform::synchronize_cpus`]: on Linux
/// (the `membarrier` syscall), outside Miri (which cannot run it, and so
/// checks the read-modify-write read side instead).
pub const HOST_MEMBARRIER: bool = cfg!(all(target_os = "linux", not(miri)));

/// An asymmetric full barrier over every thread of this process (so over
/// every simulated CPU): Linux's `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`,
/// which IPIs the host CPUs running the process's threads, or, where the
/// expedited command cannot be registered, `MEMBARRIER_CMD_GLOBAL` (slower:
/// it waits for a scheduler grace period, but gives the same guarantee).
/// Implements [`SimPlatform`]'s [`Platform::synchronize_cpus`]; public so
/// that other host platforms (the benchmarks') can use it too.
///
/// # Panics
///
/// If the host kernel supports neither command (the simulator then cannot
/// provide the barrier its dispatcher relies on).
#[cfg(all(target_os = "linux", not(miri)))]
pub fn host_membarrier() {
    static EXPEDITED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let membarrier = |cmd: libc::c_int| -> libc::c_long {
        // SAFETY: `membarrier(cmd, flags = 0, cpu_id = 0)` takes no
        // pointers and only orders memory (membarrier(2)).
        unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0, 0) }
    };
    let expedited =
        *EXPEDITED.get_or_init(|| membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0);
    if expedited && membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0 {
        return;
    }
    assert!(
        membarrier(MEMBARRIER_CMD_GLOBAL) == 0,
        "the host kernel has no membarrier(2): the simulator cannot synchronize CPUs"
    );
}

impl Platform for SimPlatform {
    const SYNCHRONIZE_CPUS: bool = HOST_MEMBARRIER;

    /// [`host_membarrier`].
    fn synchronize_cpus(&self) {
        #[cfg(all(target_os = "linux", not(miri)))]
        host_membarrier();
    }

    /// The simulated CPU this thread plays; CPU 0 on a thread outside the
    /// machine (see the module docs).
    fn current_cpu(&self) -> CpuId {
        self.try_current_cpu().unwrap_or(CpuId::BOOT)
    }

    fn local_irq_save(&self) -> IrqFlags {
        match self.shared.current_index() {
            Some(i) => {
                let cpu = &self.shared.cpus[i];
                // A delivery point: what is pending is taken before the flag
                // goes off.
                self.shared.deliver_pending(i);
                if cpu.irqs_enabled.swap(false, Ordering::SeqCst) {
                    IRQS_ON
                } else {
                    IRQS_OFF
                }
            }
            None => {
                if OUTSIDE_IRQS_ENABLED.with(|f| f.replace(false)) {
                    IRQS_ON
                } else {
                    IRQS_OFF
                }
            }
        }
    }

    fn local_irq_restore(&self, flags: IrqFlags) {
        let on = flags != IRQS_OFF;
        match self.shared.current_index() {
            Some(i) => {
                self.shared.cpus[i].irqs_enabled.store(on, Ordering::SeqCst);
                if on {
                    self.shared.deliver_pending(i);
                }
            }
            None => OUTSIDE_IRQS_ENABLED.with(|f| f.set(on)),
        }
    }

    fn local_irq_enabled(&self) -> bool {
        match self.shared.current_index() {
            Some(i) => self.shared.cpus[i].irqs_enabled.load(Ordering::SeqCst),
            None => OUTSIDE_IRQS_ENABLED.with(Cell::get),
        }
    }

    /// Takes pending interrupts when enabled, then yields the host thread
    /// (more simulated CPUs than host cores spin here).
    fn cpu_relax(&self) {
        if let Some(i) = self.shared.current_index() {
            self.shared.deliver_pending(i);
        }
        core::hint::spin_loop();
        thread::yield_now();
    }

    /// Posts `work` to the stopper queue of every CPU of `cpus` that exists
    /// (ids beyond the machine are ignored), runs the caller's own share
    /// inline, and waits for all. Runs nothing once the machine is dropped.
    fn run_on_cpus(&self, cpus: &CpuMask, work: &(dyn Fn(CpuId) + Sync)) {
        if self.shared.shutdown.load(Ordering::SeqCst) {
            return;
        }
        let targets: Vec<usize> = cpus
            .iter()
            .map(CpuId::index)
            .filter(|&i| i < self.ncpus())
            .collect();
        self.shared
            .run_scoped(&targets, true, &|i| work(self.shared.cpus[i].id));
    }

    /// Runs the calling CPU's queued cross-calls (recorded with
    /// [`CallPath::Flush`]); nothing outside the machine.
    fn flush_cross_calls(&self) {
        if let Some(i) = self.shared.current_index() {
            self.shared.run_cross_calls(i, CallPath::Flush);
        }
    }

    fn schedule_resend(&self, irq: IrqNumber) {
        let hook = self.shared.hooks().resend.clone();
        match hook {
            Some(h) => h(irq),
            None => lock(&self.shared.logs).resends.push(irq),
        }
    }

    fn wake_thread(&self, irq: IrqNumber, action: ActionId) -> crate::platform::ThreadWake {
        let hook = self.shared.hooks().wake_thread.clone();
        match hook {
            Some(h) => h(irq, action),
            None => lock(&self.shared.logs).wakes.push((irq, action)),
        }
        crate::platform::ThreadWake::Queued
    }

    fn report(&self, event: IrqEvent) {
        lock(&self.shared.logs).events.push(event);
    }
}
