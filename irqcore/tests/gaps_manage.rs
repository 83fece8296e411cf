//! `request_irq` cases that had no test (issue 17's mutation survivors in
//! `manage.rs`), each Linux's `__setup_irq` behaviour: shared oneshot
//! threads hold the line masked each on its own bit, a later request's
//! absent trigger leaves the line's trigger alone, `NO_AUTOEN` on the
//! request leaves the line disabled, and a new handler on a line the
//! spurious detector disabled enables it again.
mod common;
mod watchdog;
use common::*;
use irqcore::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;
use watchdog::{DEADLINE, TimedBarrier, bounded};

/// A threaded request whose primary handler wakes the thread.
fn waking(name: &'static str, runs: &Arc<AtomicU64>) -> IrqRequest {
    let runs = runs.clone();
    let mut r = IrqRequest::threaded(name, move |_irq: IrqNumber| {
        runs.fetch_add(1, Ordering::SeqCst);
        IrqReturn::HANDLED
    });
    r = r.flags(RequestFlags::SHARED | RequestFlags::ONESHOT);
    r
}

#[test]
fn shared_oneshot_threads_keep_the_line_masked_until_the_last_one_is_done() {
    set_cpu(0);
    let core = core_with_cpus(1);
    let chip = RecordingChip::new();
    let irq = irq_with(&core, chip.clone(), FlowKind::Level);
    let runs: Vec<_> = (0..3).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let names = ["a", "b", "c"];
    let regs: Vec<_> = (0..3)
        .map(|i| core.request_irq(irq, waking(names[i], &runs[i])).unwrap())
        .collect();
    chip.take();
    core.handle_irq(irq).unwrap();
    let woken = take_woken(&core);
    assert_eq!(woken.len(), 3, "every thread woken");
    assert_eq!(chip.take(), ["mask_ack"], "masked while the threads run");
    // The line stays masked until the last oneshot thread is done: each
    // thread owns one bit of the line's oneshot mask.
    for (i, a) in woken.iter().enumerate() {
        core.run_thread(irq, *a).unwrap();
        let log = chip.take();
        if i + 1 < woken.len() {
            assert!(
                log.is_empty(),
                "unmasked after {} of {} oneshot threads: {log:?}",
                i + 1,
                woken.len()
            );
        } else {
            assert_eq!(log, ["unmask"], "unmasked when the last thread is done");
        }
    }
    for r in &runs {
        assert_eq!(r.load(Ordering::SeqCst), 1);
    }
    drop(regs);
}

#[test]
fn a_later_request_without_a_trigger_leaves_the_line_trigger_alone() {
    set_cpu(0);
    let core = core_with_cpus(1);
    let chip = RecordingChip::new();
    let irq = irq_with(&core, chip.clone(), FlowKind::Level);
    let sh = RequestFlags::SHARED;
    let _a = core
        .request_irq(
            irq,
            IrqRequest::new("a", handled())
                .flags(sh)
                .trigger(TriggerType::LevelLow),
        )
        .unwrap();
    assert!(
        chip.take().contains(&"set_type"),
        "the first request programs it"
    );
    let _b = core
        .request_irq(irq, IrqRequest::new("b", handled()).flags(sh))
        .unwrap();
    assert!(
        !chip.take().contains(&"set_type"),
        "a request with no trigger must not reprogram the line"
    );
    // Nor one that names the same trigger: only the first request of a
    // shared line programs it (Linux's __setup_irq).
    let _c = core
        .request_irq(
            irq,
            IrqRequest::new("c", handled())
                .flags(sh)
                .trigger(TriggerType::LevelLow),
        )
        .unwrap();
    assert!(
        !chip.take().contains(&"set_type"),
        "a later request reprogrammed the shared line's trigger"
    );
    assert_eq!(core.snapshot(irq).unwrap().trigger, TriggerType::LevelLow);
}

#[test]
fn no_autoen_on_the_request_leaves_the_line_disabled_until_enable_irq() {
    set_cpu(0);
    let core = core_with_cpus(1);
    let chip = RecordingChip::new();
    let irq = irq_with(&core, chip.clone(), FlowKind::Edge);
    chip.take();
    let (n, h) = counting();
    let _r = core
        .request_irq(
            irq,
            IrqRequest::new("dev", h).flags(RequestFlags::NO_AUTOEN),
        )
        .unwrap();
    assert!(
        !chip.take().contains(&"startup"),
        "started despite NO_AUTOEN"
    );
    let snap = core.snapshot(irq).unwrap();
    assert!(snap.line.contains(LineState::DISABLED));
    assert_eq!(snap.depth, 1);
    core.enable_irq(irq).unwrap();
    assert!(chip.take().contains(&"startup"), "enable_irq starts it");
    core.handle_irq(irq).unwrap();
    assert_eq!(n.load(Ordering::SeqCst), 1);
}

#[test]
fn a_new_handler_enables_a_line_the_spurious_detector_disabled() {
    set_cpu(0);
    let core = core_with_cpus(1);
    let chip = RecordingChip::new();
    let irq = irq_with(&core, chip.clone(), FlowKind::Level);
    let sh = RequestFlags::SHARED;
    let _quiet = core
        .request_irq(
            irq,
            IrqRequest::new("quiet", Arc::new(|_irq: IrqNumber| IrqReturn::NONE)).flags(sh),
        )
        .unwrap();
    // Linux's window: 100,000 interrupts, nearly all unhandled.
    let mut disabled = false;
    for _ in 0..200_000 {
        core.handle_irq(irq).unwrap();
        if core
            .snapshot(irq)
            .unwrap()
            .delivery
            .contains(DeliveryFlags::SPURIOUS_DISABLED)
        {
            disabled = true;
            break;
        }
    }
    assert!(disabled, "the detector never disabled the line");
    let snap = core.snapshot(irq).unwrap();
    assert!(snap.line.contains(LineState::DISABLED));
    assert_eq!(snap.depth, 1);
    chip.take();
    let (n, h) = counting();
    let _new = core
        .request_irq(irq, IrqRequest::new("new", h).flags(sh))
        .unwrap();
    let snap = core.snapshot(irq).unwrap();
    assert!(
        !snap.delivery.contains(DeliveryFlags::SPURIOUS_DISABLED),
        "the new handler gets a fresh chance"
    );
    assert!(!snap.line.contains(LineState::DISABLED), "still disabled");
    assert_eq!(snap.depth, 0);
    // Re-enabled at the chip (a started line's enable: the unmask).
    assert_eq!(
        chip.take(),
        ["unmask"],
        "the line is enabled again at the chip"
    );
    core.handle_irq(irq).unwrap();
    assert_eq!(n.load(Ordering::SeqCst), 1, "the new handler runs");
}

#[test]
fn freeing_a_woken_oneshot_handler_does_not_leave_the_line_masked() {
    set_cpu(0);
    let core = core_with_cpus(1);
    let chip = RecordingChip::new();
    let irq = irq_with(&core, chip.clone(), FlowKind::Level);
    let runs: Vec<_> = (0..2).map(|_| Arc::new(AtomicU64::new(0))).collect();
    core.request_irq_raw(irq, waking("a", &runs[0]).dev_id(DevId(1)))
        .unwrap();
    core.request_irq_raw(irq, waking("b", &runs[1]).dev_id(DevId(2)))
        .unwrap();
    chip.take();
    core.handle_irq(irq).unwrap();
    let woken = take_woken(&core);
    assert_eq!(woken.len(), 2);
    assert_eq!(chip.take(), ["mask_ack"]);
    // a's thread never runs: it is freed while woken. Its bit must not
    // hold the line masked once b's thread is done.
    core.free_irq(irq, DevId(1)).unwrap();
    core.run_thread(irq, woken[1]).unwrap();
    assert_eq!(
        chip.take(),
        ["unmask"],
        "the freed handler's oneshot bit kept the line masked"
    );
    assert_eq!(runs[0].load(Ordering::SeqCst), 0);
    assert_eq!(runs[1].load(Ordering::SeqCst), 1);
    core.free_irq(irq, DevId(2)).unwrap();
}

#[test]
fn an_edge_left_pending_is_not_replayed_to_the_next_driver() {
    set_cpu(0);
    let core = core_with_cpus(1);
    let chip = Arc::new(RecordingChip {
        can_retrigger: true,
        ..Default::default()
    });
    let irq = irq_with(&core, chip.clone(), FlowKind::Edge);
    let (old, h) = counting();
    core.request_irq_raw(irq, IrqRequest::new("old", h).dev_id(DevId(1)))
        .unwrap();
    // Lazy disable: the edge that arrives while disabled is left PENDING.
    core.disable_irq(irq).unwrap();
    core.handle_irq(irq).unwrap();
    assert!(
        core.snapshot(irq)
            .unwrap()
            .delivery
            .contains(DeliveryFlags::PENDING)
    );
    core.free_irq(irq, DevId(1)).unwrap();
    let snap = core.snapshot(irq).unwrap();
    assert!(
        !snap
            .delivery
            .intersects(DeliveryFlags::PENDING | DeliveryFlags::REPLAY | DeliveryFlags::ONESHOT),
        "the last free must forget the line's delivery state: {:?}",
        snap.delivery
    );
    chip.take();
    let (new, h) = counting();
    let _r = core.request_irq(irq, IrqRequest::new("new", h)).unwrap();
    assert!(
        !chip.take().contains(&"retrigger") && core.platform().resends.lock().unwrap().is_empty(),
        "the old driver's edge was replayed to the new one"
    );
    assert_eq!(new.load(Ordering::SeqCst), 0);
    assert_eq!(old.load(Ordering::SeqCst), 0);
}

#[test]
fn free_irq_waits_for_the_thread_function_still_running() {
    bounded("free_irq during the thread function", || {
        set_cpu(0);
        let core = core_with_cpus(3);
        let chip = RecordingChip::new();
        let irq = irq_with(&core, chip, FlowKind::Level);
        let entered = Arc::new(TimedBarrier::new(2, DEADLINE));
        let release = Arc::new(TimedBarrier::new(2, DEADLINE));
        let (e, r) = (entered.clone(), release.clone());
        let req = IrqRequest::threaded("slow", move |_irq: IrqNumber| {
            e.wait();
            r.wait();
            IrqReturn::HANDLED
        })
        .flags(RequestFlags::ONESHOT)
        .dev_id(DevId(9));
        core.request_irq_raw(irq, req).unwrap();
        let _guard = release.guard();
        core.handle_irq(irq).unwrap();
        let (_, action) = core.platform().wakes.lock().unwrap()[0];
        let c1 = core.clone();
        let thread = std::thread::spawn(move || {
            set_cpu(1);
            c1.run_thread(irq, action)
        });
        entered.wait();
        let (tx, rx) = mpsc::channel();
        let c2 = core.clone();
        std::thread::spawn(move || {
            set_cpu(2);
            let _ = tx.send(c2.free_irq(irq, DevId(9)));
        });
        assert!(
            rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "free_irq returned while the thread function still ran"
        );
        release.wait();
        assert_eq!(rx.recv_timeout(DEADLINE), Ok(Ok(())));
        assert_eq!(thread.join().unwrap(), Ok(()));
    });
}

#[test]
fn a_registration_names_its_irq_and_reports_a_failed_free() {
    set_cpu(0);
    let core = core_with_cpus(1);
    let irq = irq_with(&core, RecordingChip::new(), FlowKind::Edge);
    let reg = core
        .request_irq(irq, IrqRequest::new("dev", handled()))
        .unwrap();
    assert_eq!(reg.irq(), irq);
    // Freed behind the registration's back: its own free reports it.
    core.free_irq(irq, reg.dev_id()).unwrap();
    assert_eq!(reg.free(), Err(IrqError::NoSuchHandler(irq)));
}
