//! Handler registration: shared lines, free semantics, threaded oneshot,
//! the spurious detector.
mod common;
use common::*;
use irqcore::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};

fn returning(r: IrqReturn, n: &Arc<AtomicU64>) -> Arc<dyn IrqHandler> {
    let n = n.clone();
    Arc::new(move |_| {
        n.fetch_add(1, Ordering::SeqCst);
        r
    })
}

#[test]
fn shared_line_calls_every_handler_and_one_handled_counts() {
    set_cpu(0);
    let core = core_with_cpus(1);
    let chip = RecordingChip::new();
    let irq = irq_with(&core, chip, FlowKind::Level);
    let counts: Vec<_> = (0..3).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let sh = RequestFlags::SHARED;
    let _a = core
        .request_irq(
            irq,
            IrqRequest::new("a", returning(IrqReturn::NONE, &counts[0])).flags(sh),
        )
        .unwrap();
    let _b = core
        .request_irq(
            irq,
            IrqRequest::new("b", returning(IrqReturn::HANDLED, &counts[1])).flags(sh),
        )
        .unwrap();
    let _c = core
        .request_irq(
            irq,
            IrqRequest::new("c", returning(IrqReturn::NONE, &counts[2])).flags(sh),
        )
        .unwrap();
    // Twice the spurious window natively; Miri is too slow for that.
    const N: u64 = if cfg!(miri) { 200 } else { 200_000 };
    for _ in 0..N {
        core.handle_irq(irq).unwrap();
    }
    for c in &counts {
        assert_eq!(c.load(Ordering::SeqCst), N);
    }
    // One HANDLED among NONE counts as handled: never spurious-disabled.
    assert!(!core.is_spurious_disabled(irq).unwrap());
}

#[test]
fn shared_line_refuses_non_shared_and_trigger_mismatch() {
    set_cpu(0);
    let core = core_with_cpus(1);
    let irq = irq_with(&core, RecordingChip::new(), FlowKind::Level);
    let sh = RequestFlags::SHARED;
    let _a = core
        .request_irq(
            irq,
            IrqRequest::new("a", handled())
                .flags(sh)
                .trigger(TriggerType::LevelLow),
        )
        .unwrap();
    let before = core.snapshot(irq).unwrap();
    assert_eq!(
        core.request_irq(irq, IrqRequest::new("b", handled())).err(),
        Some(IrqError::NotShared(irq))
    );
    assert_eq!(
        core.request_irq(
            irq,
            IrqRequest::new("c", handled())
                .flags(sh)
                .trigger(TriggerType::EdgeRising)
        )
        .err(),
        Some(IrqError::TriggerMismatch(irq))
    );
    assert_eq!(core.snapshot(irq).unwrap(), before);
    // A non-shared line refuses a shared newcomer too.
    let irq2 = irq_with(&core, RecordingChip::new(), FlowKind::Edge);
    let _x = core
        .request_irq(irq2, IrqRequest::new("x", handled()))
        .unwrap();
    assert_eq!(
        core.request_irq(irq2, IrqRequest::new("y", handled()).flags(sh))
            .err(),
        Some(IrqError::NotShared(irq2))
    );
}

#[test]
fn free_waits_for_a_running_handler_and_it_is_never_called_after() {
    let core = core_with_cpus(2);
    set_cpu(0);
    let irq = irq_with(&core, RecordingChip::new(), FlowKind::Edge);
    let entered = Arc::new(Barrier::new(2));
    let finished = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let (e, f, c) = (entered.clone(), finished.clone(), calls.clone());
    let h: Arc<dyn IrqHandler> = Arc::new(move |_| {
        if c.fetch_add(1, Ordering::SeqCst) == 0 {
            e.wait();
            std::thread::sleep(std::time::Duration::from_millis(50));
            f.store(true, Ordering::SeqCst);
        }
        IrqReturn::HANDLED
    });
    let reg = core.request_irq(irq, IrqRequest::new("dev", h)).unwrap();
    std::thread::scope(|s| {
        let c1 = core.clone();
        let t = s.spawn(move || {
            set_cpu(1);
            c1.handle_irq(irq).unwrap();
        });
        entered.wait();
        set_cpu(0);
        reg.free().unwrap();
        assert!(
            finished.load(Ordering::SeqCst),
            "free returned while the handler still ran"
        );
        t.join().unwrap();
    });
    core.handle_irq(irq).unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1, "handler called after free");
}

#[test]
fn registration_drop_frees_and_last_free_shuts_down() {
    set_cpu(0);
    let core = core_with_cpus(1);
    let chip = RecordingChip::new();
    let irq = irq_with(&core, chip.clone(), FlowKind::Edge);
    {
        let _r = core
            .request_irq(irq, IrqRequest::new("dev", handled()))
            .unwrap();
        assert_eq!(chip.take(), vec!["startup"]);
    }
    assert_eq!(chip.take(), vec!["shutdown"]);
    assert!(core.snapshot(irq).unwrap().handlers.is_empty());
    // The descriptor can now be freed; with a handler it could not.
    let _r = core
        .request_irq(irq, IrqRequest::new("dev", handled()))
        .unwrap();
    assert_eq!(core.free_descs(irq, 1), Err(IrqError::HasHandlers(irq)));
    drop(_r);
    core.free_descs(irq, 1).unwrap();
}

fn oneshot(flow: FlowKind) {
    set_cpu(0);
    let core = core_with_cpus(1);
    let chip = RecordingChip::new();
    let irq = irq_with(&core, chip.clone(), flow);
    let ran = Arc::new(AtomicU64::new(0));
    let r2 = ran.clone();
    let _reg = core
        .request_irq(
            irq,
            IrqRequest::threaded("threaded", move |_| {
                r2.fetch_add(1, Ordering::SeqCst);
                IrqReturn::HANDLED
            })
            .flags(RequestFlags::ONESHOT),
        )
        .unwrap();
    chip.take();
    core.handle_irq(irq).unwrap();
    // The hard part only woke the thread: the line stays masked.
    assert!(core.snapshot(irq).unwrap().line.contains(LineState::MASKED));
    assert!(!chip.take().contains(&"unmask"));
    let wakes = std::mem::take(&mut *core.platform().wakes.lock().unwrap());
    assert_eq!(wakes.len(), 1);
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    // Run the thread; it unmasks when done.
    core.run_thread(wakes[0].0, wakes[0].1).unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    assert_eq!(chip.take(), vec!["unmask"]);
    assert!(!core.snapshot(irq).unwrap().line.contains(LineState::MASKED));
}

#[test]
fn threaded_oneshot_keeps_line_masked_until_thread_completes_level() {
    oneshot(FlowKind::Level);
}

#[test]
fn threaded_oneshot_keeps_line_masked_until_thread_completes_fasteoi() {
    oneshot(FlowKind::FastEoi);
}

#[test]
fn threaded_without_primary_must_be_oneshot() {
    set_cpu(0);
    let core = core_with_cpus(1);
    let irq = irq_with(&core, RecordingChip::new(), FlowKind::Level);
    let r = core.request_irq(irq, IrqRequest::threaded("t", |_| IrqReturn::HANDLED));
    assert_eq!(r.err(), Some(IrqError::OneshotRequired(irq)));
    // Oneshot-safe chips (MSI) need no oneshot.
    let safe = Arc::new(RecordingChip {
        flags: ChipFlags::ONESHOT_SAFE,
        ..Default::default()
    });
    let irq2 = irq_with(&core, safe, FlowKind::Edge);
    assert!(
        core.request_irq(irq2, IrqRequest::threaded("t", |_| IrqReturn::HANDLED))
            .is_ok()
    );
}

#[test]
#[cfg_attr(
    miri,
    ignore = "needs the 100,000-interrupt spurious window: hours under Miri"
)]
fn spurious_storm_disables_the_line_and_reports() {
    set_cpu(0);
    let core = core_with_cpus(1);
    let irq = irq_with(&core, RecordingChip::new(), FlowKind::Level);
    let n = Arc::new(AtomicU64::new(0));
    let _r = core
        .request_irq(irq, IrqRequest::new("deaf", returning(IrqReturn::NONE, &n)))
        .unwrap();
    for _ in 0..99_999 {
        core.handle_irq(irq).unwrap();
    }
    assert!(!core.is_spurious_disabled(irq).unwrap());
    core.handle_irq(irq).unwrap();
    assert!(core.is_spurious_disabled(irq).unwrap());
    assert!(
        core.platform()
            .events
            .lock()
            .unwrap()
            .contains(&IrqEvent::SpuriousDisabled(irq))
    );
    let snap = core.snapshot(irq).unwrap();
    assert!(snap.line.contains(LineState::DISABLED | LineState::MASKED));
    // Disabled: further arrivals do not reach the handler.
    let before = n.load(Ordering::SeqCst);
    core.handle_irq(irq).unwrap();
    assert_eq!(n.load(Ordering::SeqCst), before);
    // Documented recovery.
    core.reenable_spurious(irq).unwrap();
    assert!(!core.is_spurious_disabled(irq).unwrap());
    core.handle_irq(irq).unwrap();
    assert_eq!(n.load(Ordering::SeqCst), before + 1);
}

#[test]
#[cfg_attr(
    miri,
    ignore = "needs three 100,000-interrupt spurious windows: hours under Miri"
)]
fn handled_interrupts_keep_the_line_alive() {
    set_cpu(0);
    let core = core_with_cpus(1);
    let irq = irq_with(&core, RecordingChip::new(), FlowKind::Level);
    let i = Arc::new(AtomicU64::new(0));
    let i2 = i.clone();
    // 101 of every 100,000 handled: just under the 99,900 threshold.
    let h: Arc<dyn IrqHandler> = Arc::new(move |_| {
        if i2.fetch_add(1, Ordering::SeqCst) % 100_000 < 101 {
            IrqReturn::HANDLED
        } else {
            IrqReturn::NONE
        }
    });
    let _r = core
        .request_irq(irq, IrqRequest::new("mostly-deaf", h))
        .unwrap();
    for _ in 0..300_000 {
        core.handle_irq(irq).unwrap();
    }
    assert!(!core.is_spurious_disabled(irq).unwrap());
}

#[test]
fn freeing_a_threaded_handler_whose_thread_never_ran_does_not_hang_synchronize() {
    set_cpu(0);
    let core = core_with_cpus(1);
    let irq = irq_with(&core, RecordingChip::new(), FlowKind::Level);
    let t = core
        .request_irq(
            irq,
            IrqRequest::threaded("t", |_| IrqReturn::HANDLED)
                .flags(RequestFlags::ONESHOT)
                .dev_id(DevId(1)),
        )
        .unwrap();
    let _other = core.request_irq(
        irq,
        IrqRequest::new("o", handled()).flags(RequestFlags::SHARED | RequestFlags::ONESHOT),
    );
    core.handle_irq(irq).unwrap();
    assert_eq!(core.platform().wakes.lock().unwrap().len(), 1);
    t.free().unwrap();
    // The woken thread never ran; synchronize must still return.
    core.synchronize_irq(irq).unwrap();
}

#[test]
fn a_thread_woken_twice_is_accounted_once_per_wake() {
    set_cpu(0);
    let core = core_with_cpus(1);
    let irq = irq_with(&core, RecordingChip::new(), FlowKind::FastEoi);
    let _t = core
        .request_irq(
            irq,
            IrqRequest::threaded("t", |_| IrqReturn::HANDLED).flags(RequestFlags::ONESHOT),
        )
        .unwrap();
    core.handle_irq(irq).unwrap();
    let (i, a) = core.platform().wakes.lock().unwrap()[0];
    core.run_thread(i, a).unwrap();
    core.handle_irq(irq).unwrap();
    core.run_thread(i, a).unwrap();
    core.synchronize_irq(irq).unwrap();
    assert!(!core.snapshot(irq).unwrap().line.contains(LineState::MASKED));
}
