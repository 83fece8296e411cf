//! Loom model of `cpu_down`'s sparse-lock / stop-machine protocol: the
//! dying step takes the sparse lock with a try-lock inside stop-machine,
//! which never fails while every lock holder is a CPU, never deadlocks, and
//! walks a stable descriptor set; the old protocol (the control CPU holds
//! the lock across the rendezvous) deadlocks.
//!
//! Run with `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test
//! -p irqcore-loom-models --release --test loom_hotplug_sparse` (`-- --nocapture` shows
//! the number of explored executions of each model and how often the
//! interesting outcomes occurred). Preemption bounds: 4 with two CPUs, 1
//! with three (`LOOM_MAX_PREEMPTIONS` overrides them); about a minute in
//! all on two cores.
//!
//! # What is modelled
//!
//! The rendezvous is the real one: the control CPU calls
//! `irqcore::stop_machine::StopMachine::take_cpu_down`, whose state machine
//! runs on loom atomics under `cfg(loom)`. `hotplug/mod.rs` and `store.rs` do
//! not compile under `cfg(loom)`, so the rest is restated:
//!
//! | irqcore | here |
//! |---|---|
//! | `IrqCore::cpu_down` on the control CPU: no sparse lock, `take_cpu_down(.., dying, mark_offline)` | [`control_cpu`] with [`Protocol::New`] |
//! | the `dying` closure: `try_lock_sparse_dying` (`DescStore::try_lock_sparse`, `Busy` if held), `set_cpu_online(false)`, `migrate_irqs_off` (walks every descriptor) | [`dying_step`]: `try_lock` of [`Machine::sparse`], then the walk reads the descriptor count twice |
//! | the sparse lock (`DescStore::sparse`, a spin mutex) | [`Machine::sparse`], a loom mutex (a waiter blocks, so loom sees a deadlock as one) |
//! | an allocation (`alloc_descs`, `free_descs`: `lock_sparse`, change the set, unlock), on a CPU with interrupts off | one iteration of [`cpu_thread`]: save interrupts, lock, change [`Machine::descs`], unlock, restore |
//! | the per-CPU stopper that `Platform::run_on_cpus` wakes | a loom thread per CPU that must first get the CPU from its current task (see below) |
//! | the old protocol (before issue #16): `lock_sparse` before `take_cpu_down`, unlocked after; the dying walk relies on it | [`Protocol::Old`] |
//!
//! The stopper is not a CPU of its own: it runs on its CPU only where the
//! kernel can switch that CPU to it, i.e. where the CPU's current task has
//! interrupts enabled. Each CPU with an allocation loop has a token (a loom
//! mutex, [`CpuSlot`]): its task holds it while it runs. `run_on_cpus`
//! spawns one thread per other CPU for its share (as
//! `tests/loom_stop_machine.rs` does), runs the caller's own share inline
//! and joins them; a share for a CPU with a task first raises `wants` and
//! takes the token. The task gives the token up only at a
//! [`preemption_point`] with interrupts on and `wants` raised, and takes it
//! back (waiting for the share to finish) before it goes on. Its preemption
//! points are before each iteration (interrupts on, lock free) and inside
//! the locked section, where interrupts are off, so that one never yields
//! the CPU unless a variant breaks the rule. A CPU that went offline runs
//! nothing more. (A first version handed the shares to the CPUs' own
//! threads through mailboxes; the extra loom operations made the
//! three-CPU model about ten times slower with the same meaning.)
//!
//! The rule the new protocol relies on (hotplug/mod.rs, `cpu_down`'s docs) is
//! that a CPU holds the sparse lock only with interrupts off and never
//! waits for another CPU while holding it; the model's CPUs follow it
//! ([`Config::irqs_off_under_lock`]). Note that `IrqCore::lock_sparse`
//! itself does not disable interrupts: the rule is a precondition on its
//! callers, and [`two_cpus_lock_held_with_interrupts_on_breaks_the_try_lock`]
//! shows what breaking it costs (the dying try-lock fails, so `cpu_down`
//! returns `Busy`; there is no hang).
//!
//! Spinning in the rendezvous uses the stutter bound of
//! `tests/loom_stop_machine.rs` (see there): a CPU that spun once without
//! seeing a new state blocks until another CPU reports progress. Only
//! stutter steps are removed, and a CPU that spins for a state that never
//! comes ends up blocked, so loom's deadlock detection sees a hung
//! rendezvous.
//!
//! # Properties, checked in every explored interleaving
//!
//! * (a) It terminates: loom panics with "deadlock" if every thread blocks.
//! * (b) With every lock holder a CPU, the dying step's try-lock succeeds
//!   (so `cpu_down` never fails with `Busy` there) and the CPU goes offline.
//! * (c) The dying walk sees a stable set: the descriptor count is the same
//!   at its start and its end.
//! * With a lock holder that is not a CPU (a platform thread), `cpu_down`
//!   either succeeds or fails with `Busy`, the CPU still online; never a
//!   hang.
//! * The passing tests also assert that the interesting cases occurred in
//!   some execution (a task gave its CPU to the stopper between two
//!   iterations; with an outside holder, both `Ok` and `Busy`).
//! * The model can fail: the old protocol deadlocks (the allocating CPU
//!   spins for the lock with interrupts off and never lets its stopper in;
//!   the control CPU holds the lock and waits for that stopper in the
//!   rendezvous: with `LOOM_LOCATION=1` loom's "deadlock" message shows the
//!   control CPU (and the dying CPU) blocked in `cpu_relax`, the allocating
//!   CPU in `sparse.lock()` and its stopper waiting for the token);
//!   a CPU that holds the lock with interrupts on (so its stopper can run
//!   in the middle) makes the try-lock fail; a dying walk without the lock
//!   sees a non-CPU holder change the set.
#![cfg(loom)]

use irqcore_loom_models::stop_machine::{CpuDownError, StopMachine, StopState};
use irqcore_loom_models::{CpuId, CpuMask, IrqFlags, Platform};
use loom::sync::atomic::{AtomicBool, AtomicUsize};
use loom::sync::{Condvar, Mutex, MutexGuard};
use std::cell::Cell;
// `std`'s Arc, not loom's: a loom Arc dropped while a thread unwinds from
// loom's deadlock panic aborts the test binary (loom's runtime has no active
// thread then), and the old-protocol variants end in exactly that panic.
use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool as StdAtomicBool, AtomicU8, AtomicU64};

/// Spins without a state change after which a rendezvous CPU blocks until
/// another reports progress (see `tests/loom_stop_machine.rs`).
const MAX_STUTTER: u8 = 1;

/// The CPU that goes down.
const DYING: usize = 1;

loom::thread_local! {
    static CPU: Cell<u32> = Cell::new(u32::MAX);
}

/// Which cpu_down protocol the control CPU follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    /// Issue #16: the dying CPU try-locks the sparse lock inside
    /// stop-machine.
    New,
    /// The control CPU takes the sparse lock before stop-machine and holds
    /// it across `take_cpu_down` (the deadlock).
    Old,
    /// Broken: the dying walk takes no lock at all.
    NewWalkWithoutLock,
}

/// One model configuration.
#[derive(Clone, Copy, Debug)]
struct Config {
    /// Number of CPUs (2 or 3); CPU 0 is the control CPU, CPU 1 dies.
    ncpus: usize,
    /// Allocation iterations of each CPU (index = CPU; the control CPU's
    /// entry must be 0: it is busy in `cpu_down`).
    cpu_allocs: [usize; 3],
    /// Allocation iterations of a lock holder that is not a CPU.
    outsider_allocs: usize,
    /// Whether a CPU holds the sparse lock with interrupts off (the rule);
    /// `false` breaks it.
    irqs_off_under_lock: bool,
    protocol: Protocol,
    /// Loom's preemption bound.
    preemption_bound: usize,
}

/// A CPU that runs a process-context task (the allocation loop) besides
/// its stopper: whoever holds `token` is running on the CPU.
struct CpuSlot {
    /// Set by the stopper when it wants the CPU (`run_on_cpus` woke it);
    /// cleared when its share is done.
    wants: AtomicBool,
    token: Mutex<()>,
}

struct Machine {
    cfg: Config,
    /// The CPUs' local interrupt flags. Plain atomics, invisible to loom:
    /// a CPU reads and writes only its own (the dying step's check of the
    /// others' reads the state of the explored schedule; that interrupts
    /// are off everywhere in the Run state is `loom_stop_machine.rs`'s
    /// property), and every loom-visible access multiplies the schedules.
    irqs: Vec<StdAtomicBool>,
    /// Whether the kernel considers the CPU online (read after the
    /// threads joined and by a CPU about itself: plain atomics).
    online: Vec<StdAtomicBool>,
    /// Stutter bound state (plain atomics, as in `loom_stop_machine.rs`).
    stutter: Vec<AtomicU8>,
    progress: AtomicU64,
    progress_seen: Vec<AtomicU64>,
    waiters: AtomicU64,
    progress_lock: Mutex<()>,
    progress_cv: Condvar,
    /// `Some` for CPUs with an allocation loop.
    slots: Vec<Option<CpuSlot>>,
    /// The sparse lock.
    sparse: Mutex<()>,
    /// The descriptor set the sparse lock protects (its size).
    descs: AtomicUsize,
    cov: Arc<Coverage>,
}

/// How often the interesting outcomes occurred, over all executions (plain
/// atomics, outside the model): the passing tests assert that they were
/// reached, so they cannot pass vacuously.
#[derive(Default, Debug)]
struct Coverage {
    /// A task gave its CPU to the stopper at a preemption point.
    preempted: std::sync::atomic::AtomicUsize,
    /// `cpu_down` succeeded.
    ok: std::sync::atomic::AtomicUsize,
    /// `cpu_down` failed with `Busy`.
    busy: std::sync::atomic::AtomicUsize,
}

impl Coverage {
    fn hit(c: &std::sync::atomic::AtomicUsize) {
        c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn get(c: &std::sync::atomic::AtomicUsize) -> usize {
        c.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Machine {
    fn report_progress(&self) {
        if self.waiters.load(SeqCst) == 0 {
            self.progress.fetch_add(1, SeqCst);
        } else {
            let _g = self.progress_lock.lock().unwrap();
            self.progress.fetch_add(1, SeqCst);
            self.progress_cv.notify_all();
        }
    }

    fn others_irqs_off(&self, me: usize) -> bool {
        self.irqs
            .iter()
            .enumerate()
            .all(|(i, f)| i == me || !f.load(SeqCst))
    }
}

#[derive(Clone)]
struct LoomPlatform(Arc<Machine>);

impl Platform for LoomPlatform {
    fn current_cpu(&self) -> CpuId {
        CpuId::new(CPU.with(Cell::get)).unwrap()
    }

    fn local_irq_save(&self) -> IrqFlags {
        let me = self.current_cpu().index();
        IrqFlags(self.0.irqs[me].swap(false, SeqCst) as usize)
    }

    fn local_irq_restore(&self, flags: IrqFlags) {
        let me = self.current_cpu().index();
        self.0.irqs[me].store(flags.0 != 0, SeqCst);
    }

    fn local_irq_enabled(&self) -> bool {
        self.0.irqs[self.current_cpu().index()].load(SeqCst)
    }

    fn cpu_relax(&self) {
        // The stutter bound of `loom_stop_machine.rs`, unchanged.
        let m = &self.0;
        let me = self.current_cpu().index();
        let spins = m.stutter[me].fetch_add(1, SeqCst);
        if spins == 0 {
            m.report_progress();
            loom::thread::yield_now();
        } else if spins >= MAX_STUTTER {
            m.waiters.fetch_add(1, SeqCst);
            let mut g = m.progress_lock.lock().unwrap();
            while m.progress.load(SeqCst) == m.progress_seen[me].load(SeqCst) {
                g = m.progress_cv.wait(g).unwrap();
            }
            drop(g);
            m.waiters.fetch_sub(1, SeqCst);
        } else {
            loom::thread::yield_now();
        }
        m.progress_seen[me].store(m.progress.load(SeqCst), SeqCst);
    }

    fn run_on_cpus(&self, cpus: &CpuMask, work: &(dyn Fn(CpuId) + Sync)) {
        // SAFETY: only the lifetime is extended; every thread that gets the
        // reference is joined below before this function returns (loom
        // aborts the whole model on a panic, so there is no unwinding path
        // that skips the joins).
        let work: &'static (dyn Fn(CpuId) + Sync) = unsafe {
            std::mem::transmute::<&(dyn Fn(CpuId) + Sync), &'static (dyn Fn(CpuId) + Sync)>(work)
        };
        let me = self.current_cpu();
        let handles: Vec<_> = cpus
            .iter()
            .filter(|&c| c != me)
            .map(|c| {
                let m = self.0.clone();
                loom::thread::spawn(move || {
                    CPU.with(|x| x.set(c.get()));
                    // The stopper runs once the CPU's current task lets it.
                    let held = m.slots[c.index()].as_ref().map(|s| {
                        s.wants.store(true, SeqCst);
                        (s, s.token.lock().unwrap())
                    });
                    work(c);
                    if let Some((s, token)) = held {
                        s.wants.store(false, SeqCst);
                        drop(token);
                    }
                })
            })
            .collect();
        if cpus.contains(me) {
            work(me);
        }
        for h in handles {
            h.join().unwrap();
        }
    }
}

/// A point where the kernel may switch this CPU to its stopper: only with
/// interrupts on, and only if the stopper wants the CPU. Returns the token
/// back once the stopper is done.
fn preemption_point<'a>(
    p: &LoomPlatform,
    slot: &'a CpuSlot,
    token: MutexGuard<'a, ()>,
) -> MutexGuard<'a, ()> {
    if p.local_irq_enabled() && slot.wants.load(SeqCst) {
        Coverage::hit(&p.0.cov.preempted);
        drop(token);
        slot.token.lock().unwrap()
    } else {
        token
    }
}

/// One allocation or free under the sparse lock.
fn change_set(m: &Machine, i: usize) {
    if i.is_multiple_of(2) {
        m.descs.fetch_add(1, SeqCst);
    } else {
        m.descs.fetch_sub(1, SeqCst);
    }
}

/// The allocation loop of CPU `me` (process context): `allocs`
/// iterations, with a preemption point before each and one inside the
/// locked section (a no-op while the rule "interrupts off under the lock"
/// holds). A CPU that went offline runs nothing more.
fn cpu_thread(p: &LoomPlatform, me: usize, allocs: usize) {
    CPU.with(|c| c.set(me as u32));
    let m = &*p.0;
    let slot = m.slots[me].as_ref().unwrap();
    let mut token = slot.token.lock().unwrap();
    for i in 0..allocs {
        token = preemption_point(p, slot, token);
        if !m.online[me].load(SeqCst) {
            return;
        }
        let flags = m.cfg.irqs_off_under_lock.then(|| p.local_irq_save());
        let g = m.sparse.lock().unwrap();
        token = preemption_point(p, slot, token);
        change_set(m, i);
        drop(g);
        if let Some(f) = flags {
            p.local_irq_restore(f);
        }
    }
    drop(token);
}

/// A lock holder that is not a CPU (a platform thread): never in the
/// stopper.
fn outsider_thread(m: &Machine, allocs: usize) {
    for i in 0..allocs {
        let g = m.sparse.lock().unwrap();
        change_set(m, i);
        drop(g);
    }
}

/// Why the dying step refused.
#[derive(Debug, PartialEq, Eq)]
struct Busy;

/// The `dying` closure of `cpu_down`, on the dying CPU in the Run state.
fn dying_step(m: &Machine) -> Result<(), Busy> {
    assert!(
        m.others_irqs_off(DYING),
        "a CPU has interrupts on while the dying step runs"
    );
    let g = match m.cfg.protocol {
        Protocol::New => match m.sparse.try_lock() {
            Ok(g) => Some(g),
            Err(_) => {
                assert!(
                    m.cfg.outsider_allocs > 0,
                    "the dying step's try-lock failed although every lock holder is a CPU"
                );
                return Err(Busy);
            }
        },
        // Old: the control CPU holds it for us.
        Protocol::Old | Protocol::NewWalkWithoutLock => None,
    };
    // `set_cpu_online(cpu, false)`, then the walk: the set at its start and
    // at its end (loom may switch threads before each load).
    m.online[DYING].store(false, SeqCst);
    let before = m.descs.load(SeqCst);
    let after = m.descs.load(SeqCst);
    assert_eq!(
        before, after,
        "the descriptor set changed under the dying walk"
    );
    drop(g);
    Ok(())
}

/// The control CPU: `cpu_down(DYING)`.
fn control_cpu(p: &LoomPlatform) -> Result<(), CpuDownError<Busy>> {
    CPU.with(|c| c.set(0));
    let m = &p.0;
    let sm = StopMachine::new();
    let mm = m.clone();
    sm.set_trace_hook(Some(Arc::new(move |cpu: CpuId, _: StopState| {
        // Acted on a new state: the next relax reports progress.
        mm.stutter[cpu.index()].store(0, SeqCst);
    })));
    let online = CpuMask::first_n(m.cfg.ncpus);
    let old_guard = (m.cfg.protocol == Protocol::Old).then(|| m.sparse.lock().unwrap());
    let r = sm.take_cpu_down(
        p,
        &online,
        CpuId::new(DYING as u32).unwrap(),
        &|| dying_step(m),
        &|| m.online[DYING].store(false, SeqCst),
    );
    drop(old_guard);
    sm.set_trace_hook(None);
    r
}

fn model(cfg: Config) -> Arc<Coverage> {
    assert_eq!(cfg.cpu_allocs[0], 0, "the control CPU does not allocate");
    let started = std::time::Instant::now();
    let executions = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = executions.clone();
    let cov = Arc::new(Coverage::default());
    let cov2 = cov.clone();
    let mut b = loom::model::Builder::new();
    b.max_branches = 100_000;
    // LOOM_MAX_PREEMPTIONS overrides the configured bound.
    b.preemption_bound.get_or_insert(cfg.preemption_bound);
    b.check(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let n = cfg.ncpus;
        let m = Arc::new(Machine {
            cfg,
            irqs: (0..n).map(|_| StdAtomicBool::new(true)).collect(),
            online: (0..n).map(|_| StdAtomicBool::new(true)).collect(),
            stutter: (0..n).map(|_| AtomicU8::new(0)).collect(),
            progress: AtomicU64::new(0),
            progress_seen: (0..n).map(|_| AtomicU64::new(0)).collect(),
            waiters: AtomicU64::new(0),
            progress_lock: Mutex::new(()),
            progress_cv: Condvar::new(),
            slots: (0..n)
                .map(|c| {
                    (cfg.cpu_allocs[c] > 0).then(|| CpuSlot {
                        wants: AtomicBool::new(false),
                        token: Mutex::new(()),
                    })
                })
                .collect(),
            sparse: Mutex::new(()),
            descs: AtomicUsize::new(0),
            cov: cov2.clone(),
        });
        let p = LoomPlatform(m.clone());
        let cpus: Vec<_> = (1..n)
            .filter(|&c| cfg.cpu_allocs[c] > 0)
            .map(|c| {
                let p = p.clone();
                let allocs = cfg.cpu_allocs[c];
                loom::thread::spawn(move || cpu_thread(&p, c, allocs))
            })
            .collect();
        let outsider = (cfg.outsider_allocs > 0).then(|| {
            let m = m.clone();
            loom::thread::spawn(move || outsider_thread(&m, cfg.outsider_allocs))
        });

        let r = control_cpu(&p);

        for h in cpus {
            h.join().unwrap();
        }
        if let Some(h) = outsider {
            h.join().unwrap();
        }
        match r {
            Ok(()) => {
                Coverage::hit(&m.cov.ok);
                assert!(!m.online[DYING].load(SeqCst), "dying CPU still online");
            }
            Err(CpuDownError::Dying(Busy)) => {
                Coverage::hit(&m.cov.busy);
                assert!(cfg.outsider_allocs > 0, "Busy without an outside holder");
                assert!(m.online[DYING].load(SeqCst), "refused but marked offline");
            }
            Err(e) => panic!("cpu_down failed: {e:?}"),
        }
        for c in 0..n {
            assert!(m.irqs[c].load(SeqCst), "cpu{c} interrupts restored");
        }
    });
    println!(
        "loom_hotplug_sparse {cfg:?}: {} executions in {:.1?}; {cov:?}",
        executions.load(std::sync::atomic::Ordering::Relaxed),
        started.elapsed()
    );
    cov
}

const NEW_2: Config = Config {
    ncpus: 2,
    cpu_allocs: [0, 2, 0],
    outsider_allocs: 0,
    irqs_off_under_lock: true,
    protocol: Protocol::New,
    preemption_bound: 4,
};

/// Two CPUs: the dying CPU allocates and frees while CPU 0 takes it down.
#[test]
fn two_cpus_dying_cpu_allocates() {
    let cov = model(NEW_2);
    assert!(
        Coverage::get(&cov.preempted) > 0,
        "the stopper never ran between iterations"
    );
}

/// Three CPUs (the `seeds/000` situation: descriptors allocated and freed
/// on another CPU during CPU hotplug): CPU 2 allocates and frees while
/// CPU 0 takes CPU 1 down.
#[test]
fn three_cpus_bystander_allocates() {
    let cov = model(Config {
        ncpus: 3,
        cpu_allocs: [0, 0, 2],
        preemption_bound: 1,
        ..NEW_2
    });
    assert!(
        Coverage::get(&cov.preempted) > 0,
        "the stopper never ran between iterations"
    );
}

/// A lock holder that is not a CPU: cpu_down succeeds or fails with Busy
/// (CPU still online), never hangs, and the walk is stable.
#[test]
fn two_cpus_outside_holder_gets_busy_not_a_hang() {
    let cov = model(Config {
        cpu_allocs: [0, 0, 0],
        outsider_allocs: 2,
        ..NEW_2
    });
    assert!(Coverage::get(&cov.busy) > 0 && Coverage::get(&cov.ok) > 0);
}

/// The model can fail: the old protocol deadlocks.
#[test]
#[should_panic(expected = "deadlock")]
fn two_cpus_old_protocol_deadlocks() {
    model(Config {
        protocol: Protocol::Old,
        ..NEW_2
    });
}

/// The same with three CPUs.
#[test]
#[should_panic(expected = "deadlock")]
fn three_cpus_old_protocol_deadlocks() {
    model(Config {
        ncpus: 3,
        cpu_allocs: [0, 0, 2],
        protocol: Protocol::Old,
        preemption_bound: 1,
        ..NEW_2
    });
}

/// The model can fail (b): a CPU that holds the lock with interrupts on can
/// be in its stopper while holding it, and the try-lock fails.
#[test]
#[should_panic(expected = "try-lock failed although every lock holder is a CPU")]
fn two_cpus_lock_held_with_interrupts_on_breaks_the_try_lock() {
    model(Config {
        irqs_off_under_lock: false,
        ..NEW_2
    });
}

/// The model can fail (c): a walk without the lock sees an outside holder
/// change the set.
#[test]
#[should_panic(expected = "the descriptor set changed under the dying walk")]
fn two_cpus_walk_without_lock_sees_the_set_change() {
    model(Config {
        cpu_allocs: [0, 0, 0],
        outsider_allocs: 2,
        protocol: Protocol::NewWalkWithoutLock,
        ..NEW_2
    });
}
