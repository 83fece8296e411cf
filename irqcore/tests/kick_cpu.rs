//! Runs that end with a plain store (`Platform::KICK_CPU`): a lock holder
//! on another CPU that changes a running irq queues the run's after-work
//! (`DeliveryFlags::RECHECK`) and kicks the running CPU; whoever drains
//! the queue once the run is over does the work. The protocol itself is
//! model-checked in `loom-models/tests/loom_edge_handoff.rs` (the kicked
//! variants); these tests pin the core's side of it on the host: who is
//! kicked, how often, and that no edge is lost or left pending.
mod common;
use common::*;
use irqcore::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};

/// [`TestPlatform`] with `KICK_CPU`: kicks are recorded, and a CPU thread
/// "takes" its kick by calling [`IrqCore::run_resends`] ([`take_kick`]).
#[derive(Default)]
struct KickPlatform {
    inner: TestPlatform,
    kicks: Mutex<Vec<CpuId>>,
    pending_kick: [AtomicBool; 16],
}

impl Platform for KickPlatform {
    fn current_cpu(&self) -> CpuId {
        self.inner.current_cpu()
    }
    fn local_irq_save(&self) -> IrqFlags {
        self.inner.local_irq_save()
    }
    fn local_irq_restore(&self, flags: IrqFlags) {
        self.inner.local_irq_restore(flags)
    }
    fn local_irq_enabled(&self) -> bool {
        self.inner.local_irq_enabled()
    }
    fn run_on_cpus(&self, cpus: &CpuMask, work: &(dyn Fn(CpuId) + Sync)) {
        self.inner.run_on_cpus(cpus, work)
    }
    fn cpu_relax(&self) {
        self.inner.cpu_relax()
    }
    const KICK_CPU: bool = true;
    fn kick_cpu(&self, cpu: CpuId) {
        self.kicks.lock().unwrap().push(cpu);
        self.pending_kick[cpu.index()].store(true, Ordering::SeqCst);
    }
    fn report(&self, event: IrqEvent) {
        self.inner.report(event)
    }
}

type KickCore = IrqCore<KickPlatform>;

fn core_with_cpus(n: u32) -> Arc<KickCore> {
    core_on(KickPlatform::default(), n)
}

fn edge_irq(core: &KickCore, flow: FlowKind) -> IrqNumber {
    let irq = core.alloc_descs(IrqNumber(1), 1).unwrap();
    let chip = RecordingChip::new();
    core.set_chip(irq, vec![ChipLevel::new(chip, HwIrq(7))], flow)
        .unwrap();
    irq
}

/// The calling CPU takes its kick, if one was sent: the kick's interrupt
/// would drain the resend queue on its way out of `handle_irq`.
fn take_kick(core: &KickCore, cpu: u32) -> bool {
    let kicked = core.platform().pending_kick[cpu as usize].swap(false, Ordering::SeqCst);
    if kicked {
        core.run_resends().unwrap();
    }
    kicked
}

fn kicks(core: &KickCore) -> Vec<u32> {
    core.platform()
        .kicks
        .lock()
        .unwrap()
        .iter()
        .map(|c| c.get())
        .collect()
}

fn recheck_left(core: &KickCore, irq: IrqNumber) -> bool {
    core.snapshot(irq)
        .unwrap()
        .delivery
        .contains(DeliveryFlags::RECHECK)
}

/// A handler that blocks its first run until the test releases it, and
/// counts its runs.
struct Gate {
    entered: Barrier,
    release: Barrier,
    runs: AtomicU64,
}

impl Gate {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            entered: Barrier::new(2),
            release: Barrier::new(2),
            runs: AtomicU64::new(0),
        })
    }
    fn handler(self: &Arc<Self>) -> Arc<dyn IrqHandler> {
        let g = self.clone();
        Arc::new(move |_| {
            if g.runs.fetch_add(1, Ordering::SeqCst) == 0 {
                g.entered.wait();
                g.release.wait();
            }
            IrqReturn::HANDLED
        })
    }
}

/// A core with CPUs 0 and 1 and one irq of `flow` (and `settings`) whose handler is
/// gated: CPU 0 takes the irq and holds its first run while `on_cpu1`
/// runs as CPU 1, then finishes it. Returns what `on_cpu1` returned (it
/// must not assert: a failed assertion would leave CPU 0 waiting) and the
/// gate, for the run count.
fn while_cpu0_runs<T>(
    flow: FlowKind,
    settings: LineState,
    on_cpu1: impl FnOnce(&KickCore, IrqNumber) -> T,
) -> (Arc<KickCore>, IrqNumber, Arc<Gate>, T) {
    set_cpu(0);
    let core = core_with_cpus(2);
    let irq = edge_irq(&core, flow);
    core.set_irq_settings(irq, settings, LineState::empty())
        .unwrap();
    let gate = Gate::new();
    core.request_irq_raw(
        irq,
        IrqRequest::new("gated", gate.handler()).dev_id(DevId(1)),
    )
    .unwrap();
    let seen = std::thread::scope(|s| {
        let runner = s.spawn(|| {
            set_cpu(0);
            core.handle_irq(irq).unwrap();
        });
        gate.entered.wait();
        set_cpu(1);
        let seen = on_cpu1(&core, irq);
        gate.release.wait();
        runner.join().unwrap();
        seen
    });
    set_cpu(0);
    (core, irq, gate, seen)
}

/// An edge that arrives on CPU 1 while CPU 0 runs the handlers is left
/// PENDING, and CPU 0 is kicked (once by the arrival, once more by CPU 1's
/// own drain, which finds the run still going); CPU 0 sees the arrival
/// when its run ends, runs the handler again, and the kick then finds
/// nothing left to do.
fn arrival_while_running(flow: FlowKind, settings: LineState) {
    let (core, irq, gate, seen) = while_cpu0_runs(flow, settings, |core, irq| {
        core.handle_irq(irq).unwrap();
        (
            core.snapshot(irq).unwrap().delivery,
            kicks(core),
            take_kick(core, 1),
        )
    });
    let (delivery, kicked, cpu1_kicked) = seen;
    assert!(!cpu1_kicked, "CPU 1 is never kicked");
    let leaves_nothing = flow == FlowKind::Level
        || (flow == FlowKind::FastEoi && !settings.contains(LineState::RESEND_WHEN_IN_PROGRESS));
    if leaves_nothing {
        // A level line (still asserted) and a fasteoi line leave an
        // arrival while busy elsewhere to the hardware: nothing for the
        // run, so nobody is kicked.
        assert!(kicked.is_empty() && !delivery.contains(DeliveryFlags::RECHECK));
        assert!(!take_kick(&core, 0));
        return;
    }
    assert!(
        delivery.contains(DeliveryFlags::PENDING),
        "{flow:?}: the arrival is left for the running CPU"
    );
    assert!(delivery.contains(DeliveryFlags::RECHECK), "{flow:?}");
    assert_eq!(
        kicked,
        [0, 0],
        "{flow:?}: the arrival kicks CPU 0, and so does CPU 1's drain"
    );
    assert!(take_kick(&core, 0));
    let runs = gate.runs.load(Ordering::SeqCst);
    let snap = core.snapshot(irq).unwrap();
    assert!(!snap.delivery.contains(DeliveryFlags::RECHECK));
    // The edge flow runs the pending edge itself; fasteoi resends it
    // (a software resend, replayed by CPU 0's drain).
    assert_eq!(runs, 2, "{flow:?}: the pending arrival ran once more");
    assert!(!snap.delivery.contains(DeliveryFlags::PENDING));
}

#[test]
fn edge_arrival_while_running_kicks_the_running_cpu() {
    arrival_while_running(FlowKind::Edge, LineState::empty());
}

#[test]
fn fasteoi_arrival_while_running_kicks_nobody() {
    arrival_while_running(FlowKind::FastEoi, LineState::empty());
}

/// A level line kicks nobody even with `RESEND_WHEN_IN_PROGRESS` set: the
/// level flow ignores that setting (the source stays asserted) and its
/// runs always end under the lock.
#[test]
fn level_arrival_while_running_kicks_nobody() {
    arrival_while_running(FlowKind::Level, LineState::RESEND_WHEN_IN_PROGRESS);
}

/// An MSI-style fasteoi line that resends what arrives while it is busy
/// (`RESEND_WHEN_IN_PROGRESS`) leaves PENDING for the run, and kicks.
#[test]
fn fasteoi_resend_when_in_progress_arrival_kicks_the_running_cpu() {
    arrival_while_running(FlowKind::FastEoi, LineState::RESEND_WHEN_IN_PROGRESS);
}

/// A handler that changes its own line (a disable and enable from inside
/// the run) kicks nobody: its own run's end reads RUN_ATTN in program
/// order.
#[test]
fn a_handler_changing_its_own_line_kicks_nobody() {
    set_cpu(0);
    let core = core_with_cpus(1);
    let irq = edge_irq(&core, FlowKind::Edge);
    let c2 = core.clone();
    let _r = core
        .request_irq(
            irq,
            IrqRequest::new(
                "self-disabling",
                Arc::new(move |irq| {
                    c2.disable_irq_nosync(irq).unwrap();
                    c2.enable_irq(irq).unwrap();
                    IrqReturn::HANDLED
                }),
            ),
        )
        .unwrap();
    core.handle_irq(irq).unwrap();
    assert!(kicks(&core).is_empty());
    assert!(!recheck_left(&core, irq));
}

/// Process context on another CPU that changes a running irq several
/// times kicks the running CPU once: the first change queues the after-work
/// and later ones find it queued.
#[test]
fn process_context_changes_kick_the_running_cpu_once() {
    let (core, irq, gate, seen) =
        while_cpu0_runs(FlowKind::Edge, LineState::empty(), |core, irq| {
            for _ in 0..3 {
                core.disable_irq_nosync(irq).unwrap();
                core.enable_irq(irq).unwrap();
            }
            (kicks(core), recheck_left(core, irq))
        });
    assert_eq!(seen, (vec![0], true), "one kick for six changes");
    take_kick(&core, 0);
    assert!(
        !recheck_left(&core, irq),
        "the run or the drain did the work"
    );
    assert_eq!(gate.runs.load(Ordering::SeqCst), 1, "nothing was pending");
}

/// Threads as CPUs, both raising the same edge as fast as they can, each
/// taking its kicks between interrupts: every edge is covered by a handler
/// run that started after it, nothing is left in progress, pending or
/// queued, and the handler never runs on two CPUs at once.
#[test]
fn stress_no_lost_edge_with_plain_run_ends() {
    // Miri runs it for its data-race and aliasing checks, not for volume.
    const ROUNDS: u64 = if cfg!(miri) { 100 } else { 20_000 };
    set_cpu(0);
    let core = core_with_cpus(2);
    let irq = edge_irq(&core, FlowKind::Edge);
    let raised = Arc::new(AtomicU64::new(0));
    let covered = Arc::new(AtomicU64::new(0));
    let running = Arc::new(AtomicU64::new(0));
    let (r2, c2, run2) = (raised.clone(), covered.clone(), running.clone());
    let _r = core
        .request_irq(
            irq,
            IrqRequest::new(
                "device",
                Arc::new(move |_| {
                    assert_eq!(run2.fetch_add(1, Ordering::SeqCst), 0, "double run");
                    c2.fetch_max(r2.load(Ordering::SeqCst), Ordering::SeqCst);
                    std::hint::spin_loop();
                    run2.fetch_sub(1, Ordering::SeqCst);
                    IrqReturn::HANDLED
                }),
            ),
        )
        .unwrap();
    std::thread::scope(|s| {
        for cpu in 0..2u32 {
            let (core, raised) = (&core, &raised);
            s.spawn(move || {
                set_cpu(cpu);
                for _ in 0..ROUNDS {
                    raised.fetch_add(1, Ordering::SeqCst);
                    core.handle_irq(irq).unwrap();
                    take_kick(core, cpu);
                }
            });
        }
    });
    for cpu in 0..2 {
        set_cpu(cpu);
        take_kick(&core, cpu);
    }
    let snap = core.snapshot(irq).unwrap();
    assert_eq!(
        covered.load(Ordering::SeqCst),
        raised.load(Ordering::SeqCst),
        "lost edge"
    );
    assert!(!snap.delivery.contains(DeliveryFlags::PENDING));
    assert!(!snap.delivery.contains(DeliveryFlags::RECHECK));
    assert!(!snap.line.contains(LineState::MASKED), "left masked");
}
