//! Stop-machine: run a function on one CPU (or a few) while every other online
//! CPU spins with interrupts off.
//!
//! # Protocol
//!
//! [`StopMachine::stop_machine`] asks the platform to run a *participant* on
//! every online CPU ([`Platform::run_on_cpus`]: the per-CPU stopper, process
//! context, interrupts enabled on entry). The participants walk through the
//! [`StopState`]s together:
//!
//! | state | what each CPU does before acknowledging it |
//! |---|---|
//! | [`Prepare`](StopState::Prepare) | nothing: acknowledging it means "I am in the stopper" |
//! | [`DisableIrqInactive`](StopState::DisableIrqInactive) | CPUs that will **not** run `f` disable interrupts |
//! | [`DisableIrqActive`](StopState::DisableIrqActive) | CPUs that run `f` disable interrupts |
//! | [`Run`](StopState::Run) | CPUs that run `f` call it |
//! | [`Exit`](StopState::Exit) | every CPU restores the interrupt state it had on entry and leaves |
//!
//! A state is acknowledged by every participant before the next one is
//! published: a counter is reset to the number of participants when a state
//! is published, each CPU decrements it after acting on the state, and the CPU
//! that brings it to zero publishes the next state. So no CPU acts on state
//! N+1 before every CPU has finished acting on state N, and every CPU sees
//! every state, in order (model-checked with loom in
//! `loom-models/tests/loom_stop_machine.rs`).
//!
//! Until it disables its interrupts, a participant spins calling
//! [`Platform::cpu_relax`] with interrupts enabled, so it keeps taking device
//! interrupts and IPIs, like Linux's stopper.
//!
//! # Why two interrupt-disable states (`seeds/001`)
//!
//! With a single "disable interrupts" state, a CPU that is about to go
//! offline may disable its interrupts while another CPU, which has not yet
//! reached that state, is still handling a device interrupt whose handler
//! sends a cross-CPU call (IPI) to it. The IPI stays pending; the dying CPU
//! marks itself offline in the run state and notices the IPI only when it
//! re-enables interrupts on exit: a call run on (or stranded by) an offline
//! CPU. Here the CPUs that run `f` disable their interrupts only after every
//! other participant has disabled its own, so no other CPU can still be in an
//! interrupt handler when the dying CPU stops listening.
//!
//! Linux fixed the same bug differently (reference §7.3): the dying CPU runs
//! every cross-CPU call still queued for it before it is marked offline.
//! [`StopMachine::take_cpu_down`] does that too
//! ([`Platform::flush_cross_calls`]), so either defence alone suffices and an
//! IPI still in flight in the interconnect (which the two-phase disable
//! cannot see) is covered as well.
//!
//! # Concurrency contract
//!
//! One `StopMachine` serves one platform (an [`IrqCore`](crate::IrqCore)
//! embeds one). Calls on the same instance never wait for each other: a
//! second [`stop_machine`](StopMachine::stop_machine) while one is running
//! (from another CPU, or nested from `f`) returns
//! [`StopMachineError::Busy`], and so does [`stop_one_cpu`](StopMachine::stop_one_cpu)
//! from a CPU that is currently a participant (it would wait for a stopper
//! that is spinning in this very stop-machine). `f` must not panic.

use crate::cpumask::{CpuMask, MAX_CPUS};
use crate::ids::CpuId;
use crate::platform::{IrqFlags, Platform};
use alloc::sync::Arc;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The atomics of the rendezvous protocol: loom's under `cfg(irqcore_loom)`
/// (set only by the loom models in `loom-models/`) so the state machine can
/// be model-checked unchanged, `core`'s otherwise. (The instance-level busy
/// flag and participant mask are not part of the protocol under test and stay
/// on `core` atomics, which keeps [`StopMachine::new`] a `const fn` in every
/// configuration.)
mod sync {
    #[cfg(irqcore_loom)]
    pub(super) use loom::sync::atomic::{AtomicU8, AtomicUsize};

    #[cfg(not(irqcore_loom))]
    pub(super) use core::sync::atomic::{AtomicU8, AtomicUsize};
}

/// The states of one stop-machine call, in the order every participant
/// passes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum StopState {
    /// A participant's view before it has seen the first state.
    None = 0,
    /// Every participant is entering the stopper (interrupts still on).
    Prepare = 1,
    /// CPUs that do not run the function disable their interrupts.
    DisableIrqInactive = 2,
    /// CPUs that run the function disable their interrupts (after all others
    /// did).
    DisableIrqActive = 3,
    /// The function runs on the active CPUs; everyone else spins with
    /// interrupts off.
    Run = 4,
    /// Every participant restores its interrupt state and leaves.
    Exit = 5,
}

impl StopState {
    /// All states in protocol order.
    pub const ALL: [StopState; 6] = [
        StopState::None,
        StopState::Prepare,
        StopState::DisableIrqInactive,
        StopState::DisableIrqActive,
        StopState::Run,
        StopState::Exit,
    ];

    /// Decodes a stored state; unknown values (impossible by construction)
    /// read as `Exit` so a participant can never spin on garbage.
    const fn from_u8(v: u8) -> StopState {
        match v {
            0 => StopState::None,
            1 => StopState::Prepare,
            2 => StopState::DisableIrqInactive,
            3 => StopState::DisableIrqActive,
            4 => StopState::Run,
            _ => StopState::Exit,
        }
    }

    /// The state that follows this one (`Exit` stays `Exit`).
    pub const fn next(self) -> StopState {
        StopState::from_u8(self as u8 + 1)
    }
}

/// Why a stop-machine call did not run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopMachineError {
    /// Another stop-machine on this instance is running, or the caller is a
    /// CPU that is currently spinning in one (nested call).
    Busy,
    /// The set of CPUs that should run the function is empty.
    NoActiveCpu,
    /// A CPU that should run the function is not in the online mask.
    CpuOffline(CpuId),
    /// The online mask is empty or holds a CPU id out of range.
    BadOnlineMask,
    /// Taking down the last online CPU.
    LastOnlineCpu,
    /// The platform's `run_on_cpus` returned without every participant
    /// having run (a platform bug, or a simulator that is shutting down);
    /// the function may not have run.
    Incomplete,
}

impl fmt::Display for StopMachineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl core::error::Error for StopMachineError {}

/// Errors of [`StopMachine::take_cpu_down`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuDownError<E> {
    /// Stop-machine refused or failed; nothing ran on the dying CPU.
    Stop(StopMachineError),
    /// The dying callback failed; the CPU was neither flushed nor marked
    /// offline and stays online.
    Dying(E),
}

impl<E: fmt::Debug> fmt::Display for CpuDownError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl<E: fmt::Debug> core::error::Error for CpuDownError<E> {}

/// Called on each participating CPU after it has acted on a state and before
/// it acknowledges it (interrupt state as the state left it). For tracing
/// and tests; it must not block on other participants.
pub type TraceHook = Arc<dyn Fn(CpuId, StopState) + Send + Sync>;

/// How interrupts are disabled. `OnePhase` is the pre-2014 Linux behaviour
/// kept only so tests can show the `seeds/001` bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IrqDisableMode {
    /// Inactive CPUs first, then the active ones.
    TwoPhase,
    /// Everyone in `DisableIrqInactive` (`DisableIrqActive` does nothing).
    OnePhase,
}

const MASK_WORDS: usize = MAX_CPUS / 64;

/// The stop-machine instance: serialises calls and records which CPUs are
/// currently participating. The per-call rendezvous lives on the caller's
/// stack, as in Linux.
pub struct StopMachine {
    busy: AtomicBool,
    participants: [AtomicU64; MASK_WORDS],
    trace: spin::Mutex<Option<TraceHook>>,
    mode: IrqDisableMode,
}

impl Default for StopMachine {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for StopMachine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StopMachine")
            .field("busy", &self.busy.load(Ordering::Relaxed))
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// Clears the busy flag when a call ends, however it ends.
struct BusyGuard<'a>(&'a AtomicBool);

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl StopMachine {
    /// A stop-machine with the two-phase interrupt disable.
    pub const fn new() -> Self {
        Self::with_mode(IrqDisableMode::TwoPhase)
    }

    /// **Test only**: a stop-machine with the old single interrupt-disable
    /// phase (every CPU disables in `DisableIrqInactive`), which has the
    /// `seeds/001` race. Exists so a test can show that race and therefore
    /// that the test of the fix can fail.
    #[cfg(any(test, feature = "sim", irqcore_loom))]
    pub const fn with_one_phase_disable() -> Self {
        Self::with_mode(IrqDisableMode::OnePhase)
    }

    const fn with_mode(mode: IrqDisableMode) -> Self {
        Self {
            busy: AtomicBool::new(false),
            participants: [const { AtomicU64::new(0) }; MASK_WORDS],
            trace: spin::Mutex::new(None),
            mode,
        }
    }

    /// Whether this instance disables interrupts in two phases (always, except
    /// for the single-phase instance that tests build with
    /// `StopMachine::with_one_phase_disable`, which exists only with the `sim`
    /// feature).
    pub fn is_two_phase(&self) -> bool {
        self.mode == IrqDisableMode::TwoPhase
    }

    /// Installs (or removes) a hook called on every participant at every
    /// state; see [`TraceHook`]. Takes effect from the next call.
    pub fn set_trace_hook(&self, hook: Option<TraceHook>) {
        *self.trace.lock() = hook;
    }

    /// Whether a stop-machine call is running on this instance.
    pub fn is_busy(&self) -> bool {
        self.busy.load(Ordering::Acquire)
    }

    /// Whether `cpu` is currently inside this instance's stopper.
    pub fn is_participant(&self, cpu: CpuId) -> bool {
        let i = cpu.index();
        i < MAX_CPUS && self.participants[i / 64].load(Ordering::Acquire) & (1 << (i % 64)) != 0
    }

    /// Stops the machine and runs `f` on every CPU of `active`.
    ///
    /// Every CPU of `online` takes part (the caller's own CPU, if online, runs
    /// its share inside [`Platform::run_on_cpus`]); `active` must be a
    /// non-empty subset of `online`. `f(cpu)` runs on each active CPU in the
    /// [`Run`](StopState::Run) state, with its interrupts off and every other
    /// participant spinning with interrupts off. Returns `f`'s value; with
    /// several active CPUs, the value of the lowest-numbered one (the others'
    /// values are dropped: return a `Result` and keep errors in shared state
    /// if every CPU's outcome matters). Every participant's interrupt state
    /// is restored before this returns, whatever `f` returned.
    ///
    /// Call from process context (a kernel thread or the boot CPU), never from
    /// an interrupt handler or from `f`. Refused, with nothing run, when the
    /// masks are invalid or another call is in progress
    /// ([`StopMachineError::Busy`]).
    pub fn stop_machine<P: Platform, R: Send>(
        &self,
        platform: &P,
        online: &CpuMask,
        active: &CpuMask,
        f: &(dyn Fn(CpuId) -> R + Sync),
    ) -> Result<R, StopMachineError> {
        if online.is_empty() || online.iter().any(|c| c.index() >= MAX_CPUS) {
            return Err(StopMachineError::BadOnlineMask);
        }
        if active.is_empty() {
            return Err(StopMachineError::NoActiveCpu);
        }
        if let Some(cpu) = active.and_not(online).first() {
            return Err(StopMachineError::CpuOffline(cpu));
        }
        let _busy = self.try_lock()?;
        let trace = self.trace.lock().clone();

        // The lowest-numbered active CPU's result wins; written only in the
        // Run state, read after every participant has returned.
        let result: spin::Mutex<Option<(CpuId, R)>> = spin::Mutex::new(None);
        let run = |cpu: CpuId| {
            let r = f(cpu);
            let mut slot = result.lock();
            match &*slot {
                Some((kept, _)) if *kept < cpu => {}
                _ => *slot = Some((cpu, r)),
            }
        };
        let rendezvous = Rendezvous {
            state: sync::AtomicU8::new(StopState::Prepare as u8),
            acks: sync::AtomicUsize::new(online.weight()),
            threads: online.weight(),
            active,
            mode: self.mode,
            run: &run,
            trace: trace.as_deref(),
        };
        let finished = AtomicU64::new(0);
        platform.run_on_cpus(online, &|cpu: CpuId| {
            if !online.contains(cpu) {
                return; // a platform bug; never joins the rendezvous
            }
            self.mark_participant(cpu, true);
            rendezvous.participate(platform, cpu);
            self.mark_participant(cpu, false);
            finished.fetch_add(1, Ordering::AcqRel);
        });
        if finished.load(Ordering::Acquire) != online.weight() as u64 {
            return Err(StopMachineError::Incomplete);
        }
        result
            .into_inner()
            .map(|(_, r)| r)
            .ok_or(StopMachineError::Incomplete)
    }

    /// Runs `f` on `cpu` in its stopper context (process context, interrupts
    /// as the stopper has them: enabled) and returns its value; the other
    /// CPUs are not disturbed.
    ///
    /// Refused with [`StopMachineError::CpuOffline`] if `cpu` is not in
    /// `online`, and with [`StopMachineError::Busy`] when called from a CPU
    /// that is spinning in this instance's stop-machine. May run while a
    /// stop-machine is in progress elsewhere: the platform queues it behind
    /// it on `cpu`.
    pub fn stop_one_cpu<P: Platform, R: Send>(
        &self,
        platform: &P,
        online: &CpuMask,
        cpu: CpuId,
        f: &(dyn Fn() -> R + Sync),
    ) -> Result<R, StopMachineError> {
        if !online.contains(cpu) {
            return Err(StopMachineError::CpuOffline(cpu));
        }
        if self.is_participant(platform.current_cpu()) {
            return Err(StopMachineError::Busy);
        }
        let result: spin::Mutex<Option<R>> = spin::Mutex::new(None);
        platform.run_on_cpus(&CpuMask::of(cpu), &|c: CpuId| {
            if c == cpu {
                let r = f();
                *result.lock() = Some(r);
            }
        });
        result.into_inner().ok_or(StopMachineError::Incomplete)
    }

    /// The dying step of CPU hot-unplug: stops the machine with `cpu` as the
    /// only active CPU and, on `cpu`, with every online CPU spinning with
    /// interrupts off:
    ///
    /// 1. calls `dying()` (the hotplug "dying" phase: migrate interrupts away,
    ///    tear down per-CPU state). If it fails, nothing else happens: the
    ///    error is returned as [`CpuDownError::Dying`] and the CPU stays
    ///    online (the caller rolls back);
    /// 2. runs every cross-CPU call still queued for `cpu`
    ///    ([`Platform::flush_cross_calls`]);
    /// 3. calls `mark_offline()`, which must remove `cpu` from the kernel's
    ///    online mask (and must not fail).
    ///
    /// Steps 2 and 3 are safe together because no other CPU can queue a new
    /// call in between: they are all inside the stopper with interrupts off,
    /// and the kernel's senders are interrupt handlers or process context,
    /// which the stopper excludes. After this returns, senders see `cpu`
    /// offline and skip it. `online` is the online mask before the call and
    /// must contain `cpu` and at least one other CPU.
    pub fn take_cpu_down<P: Platform, E: Send>(
        &self,
        platform: &P,
        online: &CpuMask,
        cpu: CpuId,
        dying: &(dyn Fn() -> Result<(), E> + Sync),
        mark_offline: &(dyn Fn() + Sync),
    ) -> Result<(), CpuDownError<E>> {
        if !online.contains(cpu) {
            return Err(CpuDownError::Stop(StopMachineError::CpuOffline(cpu)));
        }
        if online.weight() < 2 {
            return Err(CpuDownError::Stop(StopMachineError::LastOnlineCpu));
        }
        let down = |_: CpuId| -> Result<(), E> {
            dying()?;
            platform.flush_cross_calls();
            mark_offline();
            Ok(())
        };
        match self.stop_machine(platform, online, &CpuMask::of(cpu), &down) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(CpuDownError::Dying(e)),
            Err(e) => Err(CpuDownError::Stop(e)),
        }
    }

    fn try_lock(&self) -> Result<BusyGuard<'_>, StopMachineError> {
        self.busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .map(|_| BusyGuard(&self.busy))
            .map_err(|_| StopMachineError::Busy)
    }

    fn mark_participant(&self, cpu: CpuId, on: bool) {
        let i = cpu.index();
        if i >= MAX_CPUS {
            return;
        }
        let bit = 1u64 << (i % 64);
        if on {
            self.participants[i / 64].fetch_or(bit, Ordering::AcqRel);
        } else {
            self.participants[i / 64].fetch_and(!bit, Ordering::AcqRel);
        }
    }
}

/// The shared data of one stop-machine call (Linux's `multi_stop_data`).
struct Rendezvous<'a> {
    /// The current [`StopState`], published with release ordering after
    /// `acks` was reset.
    state: sync::AtomicU8,
    /// Participants that have not yet acknowledged `state`.
    acks: sync::AtomicUsize,
    /// Number of participants.
    threads: usize,
    active: &'a CpuMask,
    mode: IrqDisableMode,
    run: &'a (dyn Fn(CpuId) + Sync),
    trace: Option<&'a (dyn Fn(CpuId, StopState) + Send + Sync)>,
}

impl Rendezvous<'_> {
    fn set_state(&self, state: StopState) {
        // The reset must be visible to whoever sees the new state: relaxed
        // store, then the release store of the state it is paired with.
        self.acks.store(self.threads, Ordering::Relaxed);
        self.state.store(state as u8, Ordering::Release);
    }

    fn ack(&self, state: StopState) {
        // AcqRel: the last acker has seen everything every participant did
        // in `state` (for example an IPI it sent) before it publishes the
        // next state with release ordering.
        if self.acks.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.set_state(state.next());
        }
    }

    /// One CPU's walk through the states (Linux's `multi_cpu_stop`).
    fn participate<P: Platform>(&self, platform: &P, cpu: CpuId) {
        let is_active = self.active.contains(cpu);
        let mut seen = StopState::None;
        let mut saved: Option<IrqFlags> = None;
        loop {
            // Relax first: with interrupts still on this is where pending
            // interrupts are taken (the platform delivers them here).
            platform.cpu_relax();
            let now = StopState::from_u8(self.state.load(Ordering::Acquire));
            if now == seen {
                continue;
            }
            seen = now;
            match now {
                StopState::DisableIrqInactive
                    if !is_active || self.mode == IrqDisableMode::OnePhase =>
                {
                    saved = Some(platform.local_irq_save());
                }
                StopState::DisableIrqActive
                    if is_active && self.mode == IrqDisableMode::TwoPhase =>
                {
                    saved = Some(platform.local_irq_save());
                }
                StopState::Run if is_active => (self.run)(cpu),
                _ => {}
            }
            if let Some(trace) = self.trace {
                trace(cpu, now);
            }
            if now == StopState::Exit {
                break;
            }
            self.ack(now);
        }
        if let Some(flags) = saved {
            platform.local_irq_restore(flags);
        }
    }
}
