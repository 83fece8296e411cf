//! Flow-handler properties that the edge-only tests left open (issue 17):
//! lazy disable on fasteoi and simple, the EOI on every path of the bad and
//! fasteoi flows, the in-progress-elsewhere decisions of `may_run_here`, and
//! the edge flow's unmask condition.
mod common;
mod watchdog;
use common::*;
use irqcore::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use watchdog::{DEADLINE, TimedBarrier, bounded, within};

fn no_events(chip: &RecordingChip) {
    assert_eq!(chip.take(), Vec::<&str>::new());
}

/// A fasteoi line disabled (lazily: nothing happens at the chip) that
/// fires is masked, EOIed (the controller must not be left with an active
/// interrupt), marked PENDING, and replayed once when enabled again.
fn fasteoi_lazy_disable(retrigger: bool) {
    set_cpu(0);
    let core = core_with_cpus(1);
    let chip = Arc::new(RecordingChip {
        can_retrigger: retrigger,
        ..Default::default()
    });
    let irq = irq_with(&core, chip.clone(), FlowKind::FastEoi);
    let (n, h) = counting();
    let _reg = core.request_irq(irq, IrqRequest::new("dev", h)).unwrap();
    chip.take();
    core.disable_irq(irq).unwrap();
    no_events(&chip);
    core.handle_irq(irq).unwrap();
    assert_eq!(chip.take(), vec!["mask", "eoi"], "masked on arrival, EOIed");
    let s = core.snapshot(irq).unwrap();
    assert!(
        s.delivery.contains(DeliveryFlags::PENDING),
        "a disabled fasteoi arrival must be remembered: {:?}",
        s.delivery
    );
    assert!(s.line.contains(LineState::MASKED));
    assert_eq!(n.load(Ordering::SeqCst), 0, "no handler while disabled");
    core.enable_irq(irq).unwrap();
    if retrigger {
        assert_eq!(chip.take(), vec!["unmask", "retrigger"]);
        assert!(core.platform().resends.lock().unwrap().is_empty());
        core.handle_irq(irq).unwrap();
    } else {
        assert_eq!(chip.take(), vec!["unmask"]);
        assert_eq!(*core.platform().resends.lock().unwrap(), vec![irq]);
        core.handle_sw_resend(irq).unwrap();
    }
    assert_eq!(n.load(Ordering::SeqCst), 1, "replayed exactly once");
    assert_eq!(chip.take(), vec!["eoi"]);
    let s = core.snapshot(irq).unwrap();
    assert!(
        !s.delivery
            .intersects(DeliveryFlags::PENDING | DeliveryFlags::REPLAY)
    );
}

#[test]
fn fasteoi_lazy_disable_masks_eois_marks_pending_and_replays_by_software_resend() {
    fasteoi_lazy_disable(false);
}

#[test]
fn fasteoi_lazy_disable_masks_eois_marks_pending_and_replays_by_retrigger() {
    fasteoi_lazy_disable(true);
}

/// The simple flow (demultiplexed children, no chip) remembers an arrival
/// while disabled and replays it on enable.
#[test]
fn simple_flow_lazy_disable_marks_pending_and_replays_once() {
    set_cpu(0);
    let core = core_with_cpus(1);
    let irq = core.alloc_descs(IrqNumber(1), 1).unwrap();
    core.set_chip(irq, vec![], FlowKind::Simple).unwrap();
    let (n, h) = counting();
    let _reg = core.request_irq(irq, IrqRequest::new("child", h)).unwrap();
    core.handle_irq(irq).unwrap();
    assert_eq!(n.load(Ordering::SeqCst), 1);
    core.disable_irq(irq).unwrap();
    core.handle_irq(irq).unwrap();
    assert_eq!(n.load(Ordering::SeqCst), 1, "no handler while disabled");
    assert!(
        core.snapshot(irq)
            .unwrap()
            .delivery
            .contains(DeliveryFlags::PENDING),
        "a disabled simple arrival must be remembered"
    );
    core.enable_irq(irq).unwrap();
    assert_eq!(*core.platform().resends.lock().unwrap(), vec![irq]);
    core.handle_sw_resend(irq).unwrap();
    assert_eq!(n.load(Ordering::SeqCst), 2, "replayed exactly once");
    assert!(
        !core
            .snapshot(irq)
            .unwrap()
            .delivery
            .intersects(DeliveryFlags::PENDING | DeliveryFlags::REPLAY)
    );
}

/// The bad flow completes the interrupt at the controller (a GIC would keep
/// the INTID active forever otherwise), counts it and reports it.
#[test]
fn bad_flow_acks_and_eois_the_chip() {
    set_cpu(0);
    let core = core_with_cpus(1);
    let chip = RecordingChip::new();
    let irq = core.alloc_descs(IrqNumber(1), 1).unwrap();
    core.set_chip(
        irq,
        vec![ChipLevel::new(chip.clone(), HwIrq(9))],
        FlowKind::Bad,
    )
    .unwrap();
    core.handle_irq(irq).unwrap();
    assert_eq!(chip.take(), vec!["ack", "eoi"]);
    assert_eq!(core.irq_count(irq, CpuId::BOOT), 1);
    assert_eq!(
        *core.platform().events.lock().unwrap(),
        vec![IrqEvent::BadIrq(irq)]
    );
}

/// A handler that blocks its first invocation between two barriers.
fn blocking_first(
    entered: &Arc<TimedBarrier>,
    release: &Arc<TimedBarrier>,
    calls: &Arc<AtomicU64>,
) -> Arc<dyn IrqHandler> {
    let (e, r, c) = (entered.clone(), release.clone(), calls.clone());
    Arc::new(move |_irq| {
        if c.fetch_add(1, Ordering::SeqCst) == 0 {
            e.wait();
            r.wait();
        }
        IrqReturn::HANDLED
    })
}

/// fasteoi, arrival on CPU 1 while CPU 0 runs the handlers: CPU 1 must
/// EOI (unless the chip wants EOIs only for handled interrupts) and return
/// at once, even when the line now targets CPU 1 alone (the wait for the
/// old CPU is the *edge* flow's live-lock avoidance, not fasteoi's).
fn fasteoi_busy_elsewhere(flags: ChipFlags) -> Vec<&'static str> {
    let core = core_with_cpus(2);
    set_cpu(0);
    let chip = Arc::new(RecordingChip {
        flags,
        ..Default::default()
    });
    let irq = irq_with(&core, chip.clone(), FlowKind::FastEoi);
    let entered = Arc::new(TimedBarrier::new(2, DEADLINE));
    let release = Arc::new(TimedBarrier::new(2, DEADLINE));
    let calls = Arc::new(AtomicU64::new(0));
    // Leaked: freeing it while unwinding from a failure would wait for the
    // stuck CPU's grace period.
    core.request_irq(
        irq,
        IrqRequest::new("dev", blocking_first(&entered, &release, &calls)),
    )
    .unwrap()
    .leak();
    chip.take();
    let c0 = core.clone();
    let t0 = std::thread::spawn(move || {
        set_cpu(0);
        c0.handle_irq(irq).unwrap();
    });
    let _guard = release.guard();
    entered.wait();
    core.set_affinity(irq, &CpuMask::of(CpuId::of::<1>()))
        .unwrap();
    assert_eq!(
        core.effective_affinity(irq).unwrap(),
        CpuMask::of(CpuId::of::<1>())
    );
    let c1 = core.clone();
    within(
        DEADLINE,
        "fasteoi arrival while busy elsewhere",
        move || {
            set_cpu(1);
            c1.handle_irq(irq).unwrap();
        },
    );
    let busy_path = chip.take();
    let s = core.snapshot(irq).unwrap();
    assert!(
        !s.delivery.contains(DeliveryFlags::PENDING),
        "without RESEND_WHEN_IN_PROGRESS nothing is remembered"
    );
    release.wait();
    t0.join().unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(chip.take(), vec!["eoi"], "CPU 0 EOIs its own interrupt");
    busy_path
}

#[test]
fn fasteoi_arrival_busy_elsewhere_is_eoied_and_does_not_wait() {
    let seq = bounded(
        "fasteoi busy",
        || fasteoi_busy_elsewhere(ChipFlags::empty()),
    );
    assert_eq!(seq, vec!["eoi"]);
}

#[test]
fn fasteoi_arrival_busy_elsewhere_is_not_eoied_with_eoi_if_handled() {
    let seq = bounded("fasteoi busy", || {
        fasteoi_busy_elsewhere(ChipFlags::EOI_IF_HANDLED)
    });
    assert_eq!(seq, Vec::<&str>::new());
}

/// A chip whose effective affinity is the whole requested mask.
struct MultiTargetChip(RecordingChip);
impl IrqChip for MultiTargetChip {
    fn name(&self) -> &str {
        "MULTI"
    }
    fn mask(&self, d: &IrqData<'_>) {
        self.0.mask(d)
    }
    fn unmask(&self, d: &IrqData<'_>) {
        self.0.unmask(d)
    }
    fn ack(&self, d: &IrqData<'_>) {
        self.0.ack(d)
    }
    fn mask_ack(&self, d: &IrqData<'_>) {
        self.0.mask_ack(d)
    }
    fn set_affinity(
        &self,
        _d: &IrqData<'_>,
        m: &CpuMask,
        _f: bool,
    ) -> Result<AffinitySet, ChipError> {
        Ok(AffinitySet::Applied { effective: *m })
    }
}

/// Edge flow, effective affinity {1, 2} (more than one target), arrival on
/// CPU 1 while CPU 0 runs the handlers: not the single-target live-lock
/// case, so CPU 1 records PENDING, mask-acks and returns at once; CPU 0 then
/// unmasks and runs the handlers again. The line ends unmasked.
#[test]
fn edge_arrival_on_one_of_several_targets_marks_pending_and_the_owner_unmasks_and_loops() {
    bounded("edge multi-target", edge_multi_target);
}

fn edge_multi_target() {
    let core = core_with_cpus(3);
    set_cpu(0);
    let chip = Arc::new(MultiTargetChip(RecordingChip::default()));
    let irq = irq_with(&core, chip.clone(), FlowKind::Edge);
    let entered = Arc::new(TimedBarrier::new(2, DEADLINE));
    let release = Arc::new(TimedBarrier::new(2, DEADLINE));
    let calls = Arc::new(AtomicU64::new(0));
    // Leaked: freeing it while unwinding from a failure would wait for the
    // stuck CPU's grace period.
    core.request_irq(
        irq,
        IrqRequest::new("dev", blocking_first(&entered, &release, &calls)),
    )
    .unwrap()
    .leak();
    chip.0.take();
    let c0 = core.clone();
    let t0 = std::thread::spawn(move || {
        set_cpu(0);
        c0.handle_irq(irq).unwrap();
    });
    let _guard = release.guard();
    entered.wait();
    core.set_affinity(
        irq,
        &CpuMask::from_cpus([CpuId::of::<1>(), CpuId::of::<2>()]),
    )
    .unwrap();
    let c1 = core.clone();
    within(DEADLINE, "edge arrival on one of two targets", move || {
        set_cpu(1);
        c1.handle_irq(irq).unwrap();
    });
    let s = core.snapshot(irq).unwrap();
    assert!(s.delivery.contains(DeliveryFlags::PENDING));
    assert!(s.line.contains(LineState::MASKED));
    release.wait();
    t0.join().unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2, "the owner ran it again");
    assert_eq!(chip.0.take(), vec!["ack", "mask_ack", "unmask"]);
    let s = core.snapshot(irq).unwrap();
    assert!(!s.line.contains(LineState::MASKED), "left masked");
    assert!(!s.delivery.contains(DeliveryFlags::PENDING));
}

/// A line masked for an unfinished oneshot thread stays masked when an
/// edge arrives (the edge flow unmasks only to replay a PENDING edge), and
/// is unmasked by the thread's completion. The line was level when the
/// thread was woken and is switched to the edge flow meanwhile (a trigger
/// change).
#[test]
fn edge_flow_leaves_a_line_masked_for_a_oneshot_thread_masked() {
    set_cpu(0);
    let core = core_with_cpus(1);
    let chip = RecordingChip::new();
    let irq = irq_with(&core, chip.clone(), FlowKind::Level);
    let ran = Arc::new(AtomicU64::new(0));
    let r = ran.clone();
    let _reg = core
        .request_irq(
            irq,
            IrqRequest::threaded("thr", move |_| {
                r.fetch_add(1, Ordering::SeqCst);
                IrqReturn::HANDLED
            })
            .flags(RequestFlags::ONESHOT),
        )
        .unwrap();
    chip.take();
    core.handle_irq(irq).unwrap();
    assert_eq!(chip.take(), vec!["mask_ack"], "masked until the thread ran");
    let wakes = core.platform().wakes.lock().unwrap().clone();
    assert_eq!(wakes.len(), 1);
    core.set_flow(irq, FlowKind::Edge).unwrap();
    core.handle_irq(irq).unwrap();
    assert_eq!(chip.take(), vec!["ack"], "no unmask without PENDING");
    assert!(core.snapshot(irq).unwrap().line.contains(LineState::MASKED));
    core.run_thread(irq, wakes[0].1).unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    assert_eq!(chip.take(), vec!["unmask"]);
}

/// Level flow: an arrival while disabled is mask-acked and dropped (the
/// source stays asserted), never resent; enable unmasks.
#[test]
fn level_flow_disabled_arrival_is_masked_not_resent() {
    set_cpu(0);
    let core = core_with_cpus(1);
    let chip = RecordingChip::new();
    let irq = irq_with(&core, chip.clone(), FlowKind::Level);
    core.set_trigger(irq, TriggerType::LevelHigh).unwrap();
    let (n, h) = counting();
    let _reg = core.request_irq(irq, IrqRequest::new("dev", h)).unwrap();
    chip.take();
    core.disable_irq(irq).unwrap();
    core.handle_irq(irq).unwrap();
    assert_eq!(chip.take(), vec!["mask_ack"]);
    assert_eq!(n.load(Ordering::SeqCst), 0);
    core.enable_irq(irq).unwrap();
    assert_eq!(chip.take(), vec!["unmask"]);
    assert!(core.platform().resends.lock().unwrap().is_empty());
    core.handle_irq(irq).unwrap();
    assert_eq!(n.load(Ordering::SeqCst), 1);
}

/// Every flow counts each handled arrival once, on the CPU it arrived on.
#[test]
fn per_cpu_counts_are_exact_for_every_flow() {
    set_cpu(0);
    let core = core_with_cpus(2);
    let flows = [
        FlowKind::Edge,
        FlowKind::Level,
        FlowKind::FastEoi,
        FlowKind::Simple,
        FlowKind::PerCpu,
    ];
    let seen = Arc::new(Mutex::new(Vec::new()));
    for flow in flows {
        let irq = irq_with(&core, RecordingChip::new(), flow);
        let mut req = IrqRequest::new("dev", handled());
        if flow == FlowKind::PerCpu {
            req = req.flags(RequestFlags::PERCPU);
        }
        core.request_irq(irq, req).unwrap().leak();
        for cpu in [0u32, 1, 1] {
            set_cpu(cpu);
            core.handle_irq(irq).unwrap();
        }
        set_cpu(0);
        seen.lock().unwrap().push((
            flow,
            core.irq_count(irq, CpuId::BOOT),
            core.irq_count(irq, CpuId::of::<1>()),
        ));
    }
    for (flow, c0, c1) in seen.lock().unwrap().iter() {
        assert_eq!((*c0, *c1), (1, 2), "{flow:?}");
    }
}

/// A dispatch on a CPU id the core was not configured for (`nr_cpus` is
/// 16 in these tests) is a typed error; the last valid CPU works.
#[test]
fn dispatch_on_a_cpu_beyond_nr_cpus_is_refused() {
    set_cpu(0);
    let core = core_with_cpus(1);
    let irq = irq_with(&core, RecordingChip::new(), FlowKind::Edge);
    let (n, h) = counting();
    let _reg = core.request_irq(irq, IrqRequest::new("dev", h)).unwrap();
    assert_eq!(core.nr_cpus(), 16);
    set_cpu(16);
    assert_eq!(
        core.handle_irq(irq),
        Err(IrqError::BadCpu(CpuId::of::<16>()))
    );
    set_cpu(15);
    assert_eq!(core.handle_irq(irq), Ok(()));
    set_cpu(0);
    assert_eq!(n.load(Ordering::SeqCst), 1);
    assert_eq!(core.irq_count(irq, CpuId::of::<15>()), 1);
}

/// Both per-CPU flows run the handler on the CPU that took the interrupt
/// (and report nothing): their chip sequence alone (ack, eoi) is also the
/// bad flow's.
#[test]
fn per_cpu_flows_run_their_handler_and_report_nothing() {
    for flow in [FlowKind::PerCpu, FlowKind::PerCpuDevId] {
        set_cpu(0);
        let core = core_with_cpus(2);
        let chip = RecordingChip::new();
        let irq = irq_with(&core, chip.clone(), flow);
        let (n, h) = counting();
        let _reg = core
            .request_irq(irq, IrqRequest::new("timer", h).flags(RequestFlags::PERCPU))
            .unwrap();
        for cpu in [0u32, 1] {
            set_cpu(cpu);
            core.enable_percpu_irq(irq, TriggerType::None).unwrap();
        }
        chip.take();
        core.handle_irq(irq).unwrap();
        set_cpu(0);
        core.handle_irq(irq).unwrap();
        assert_eq!(n.load(Ordering::SeqCst), 2, "{flow:?}");
        assert_eq!(chip.take(), vec!["ack", "eoi", "ack", "eoi"], "{flow:?}");
        assert_eq!(
            (
                core.irq_count(irq, CpuId::BOOT),
                core.irq_count(irq, CpuId::of::<1>())
            ),
            (1, 1)
        );
        assert!(
            core.platform().events.lock().unwrap().is_empty(),
            "{flow:?}: {:?}",
            core.platform().events.lock().unwrap()
        );
    }
}

/// The flows read the chip's flags once, when the chip is set: a chip
/// that declares `NO_ACK`/`NO_EOI` gets no ack/EOI calls on any flow, the
/// same chip without them gets every one (so the flags, not the flow, make
/// the difference).
#[test]
fn no_ack_and_no_eoi_flags_skip_the_calls() {
    set_cpu(0);
    let core = core_with_cpus(1);
    for (flow, calls) in [
        (FlowKind::Edge, vec!["ack"]),
        (FlowKind::FastEoi, vec!["eoi"]),
        (FlowKind::PerCpu, vec!["ack", "eoi"]),
    ] {
        for skip in [false, true] {
            let chip = Arc::new(RecordingChip {
                flags: if skip {
                    ChipFlags::NO_ACK | ChipFlags::NO_EOI
                } else {
                    ChipFlags::empty()
                },
                ..Default::default()
            });
            let irq = irq_with(&core, chip.clone(), flow);
            let (n, h) = counting();
            let mut req = IrqRequest::new("dev", h);
            if flow == FlowKind::PerCpu {
                req = req.flags(RequestFlags::PERCPU);
            }
            core.request_irq(irq, req).unwrap().leak();
            chip.take();
            core.handle_irq(irq).unwrap();
            assert_eq!(n.load(Ordering::SeqCst), 1, "{flow:?}");
            let expected: Vec<&str> = if skip { vec![] } else { calls.clone() };
            assert_eq!(chip.take(), expected, "{flow:?}, flags skip = {skip}");
        }
    }
}

/// The edge live-lock wait (an arrival on the single new target while the
/// old CPU still runs the handlers) ends by checking the line again: if it
/// was disabled meanwhile, the arrival is left PENDING, the handlers do not
/// run on a disabled line.
#[test]
fn an_edge_waiting_out_the_old_cpu_does_not_run_a_line_disabled_meanwhile() {
    bounded("live-lock wait then disabled", || {
        let core = core_with_cpus(3);
        set_cpu(0);
        let chip = RecordingChip::new();
        let irq = irq_with(&core, chip, FlowKind::Edge);
        core.set_affinity(irq, &CpuMask::of(CpuId::BOOT)).unwrap();
        let entered = Arc::new(TimedBarrier::new(2, DEADLINE));
        let release = Arc::new(TimedBarrier::new(2, DEADLINE));
        let calls = Arc::new(AtomicU64::new(0));
        core.request_irq(
            irq,
            IrqRequest::new("dev", blocking_first(&entered, &release, &calls)),
        )
        .unwrap()
        .leak();
        let _guard = release.guard();
        let c0 = core.clone();
        let old = std::thread::spawn(move || {
            set_cpu(0);
            c0.handle_irq(irq).unwrap();
        });
        entered.wait();
        set_cpu(2);
        core.set_affinity(irq, &CpuMask::of(CpuId::of::<1>()))
            .unwrap();
        let c1 = core.clone();
        let new = std::thread::spawn(move || {
            set_cpu(1);
            c1.handle_irq(irq).unwrap();
        });
        // Let CPU 1 start waiting for CPU 0, then disable the line.
        std::thread::sleep(std::time::Duration::from_millis(200));
        core.disable_irq_nosync(irq).unwrap();
        release.wait();
        old.join().unwrap();
        new.join().unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1, "ran on a disabled line");
        let s = core.snapshot(irq).unwrap();
        assert!(
            s.delivery.contains(DeliveryFlags::PENDING),
            "the edge was lost"
        );
    });
}

/// Linux's deferred spurious detection for threaded handlers: a primary
/// handler that only wakes its thread says nothing about the device, so
/// each such interrupt is judged by whether the thread handled something
/// since the previous one. A thread that never does is a stuck line, and
/// the detector disables it, on every flow that can wake a thread.
fn threads_that_never_handle_get_the_line_disabled(flow: FlowKind) {
    set_cpu(0);
    let core = core_with_cpus(1);
    let chip = Arc::new(RecordingChip {
        flags: ChipFlags::ONESHOT_SAFE,
        ..Default::default()
    });
    let irq = irq_with(&core, chip, flow);
    // Thread functions run in process context: the platform queued every
    // wake here, so none may run inside the dispatcher (not even when the
    // dispatcher has a spurious-disable report to make on its way out).
    let in_irq_runs = Arc::new(AtomicU64::new(0));
    let (weak, seen) = (Arc::downgrade(&core), in_irq_runs.clone());
    let _reg = core
        .request_irq(
            irq,
            IrqRequest::threaded("stuck", move |_irq: IrqNumber| {
                if weak.upgrade().is_some_and(|c| c.in_interrupt()) {
                    seen.fetch_add(1, Ordering::SeqCst);
                }
                IrqReturn::NONE
            }),
        )
        .unwrap();
    let mut disabled_after = None;
    for i in 0..250_000u32 {
        core.handle_irq(irq).unwrap();
        let woken: Vec<_> = core.platform().wakes.lock().unwrap().drain(..).collect();
        for (_, a) in woken {
            core.run_thread(irq, a).unwrap();
        }
        if core
            .snapshot(irq)
            .unwrap()
            .delivery
            .contains(DeliveryFlags::SPURIOUS_DISABLED)
        {
            disabled_after = Some(i + 1);
            break;
        }
    }
    assert_eq!(
        in_irq_runs.load(Ordering::SeqCst),
        0,
        "a queued thread ran in interrupt context"
    );
    let n = disabled_after.expect("a thread that never handles anything left the line enabled");
    assert!(n > 99_000, "disabled after only {n} interrupts");
    assert!(reported(&core, IrqEvent::SpuriousDisabled(irq)));
}

#[test]
fn edge_threads_that_never_handle_get_the_line_disabled() {
    threads_that_never_handle_get_the_line_disabled(FlowKind::Edge);
}

#[test]
fn simple_threads_that_never_handle_get_the_line_disabled() {
    threads_that_never_handle_get_the_line_disabled(FlowKind::Simple);
}
