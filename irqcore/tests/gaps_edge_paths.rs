//! Edge-flow cases off the common path (issue 17's mutation survivors in
//! `flow.rs` after the dispatcher grew a fast path), each Linux's
//! `handle_edge_irq` behaviour: a replayed edge clears PENDING, only a threaded action that
//! asks for its thread gets it woken, and every handled arrival counts.
mod common;
use common::*;
use irqcore::*;
use std::sync::Arc;
use std::sync::atomic::Ordering;

#[test]
fn a_replayed_edge_is_handled_once_and_clears_pending() {
    set_cpu(0);
    let core = core_with_cpus(1);
    let chip = Arc::new(RecordingChip {
        can_retrigger: true,
        ..Default::default()
    });
    let irq = irq_with(&core, chip.clone(), FlowKind::Edge);
    let (n, h) = counting();
    let _r = core.request_irq(irq, IrqRequest::new("dev", h)).unwrap();
    core.disable_irq(irq).unwrap();
    core.handle_irq(irq).unwrap();
    assert!(
        core.snapshot(irq)
            .unwrap()
            .delivery
            .contains(DeliveryFlags::PENDING)
    );
    chip.take();
    core.enable_irq(irq).unwrap();
    assert!(
        chip.take().contains(&"retrigger"),
        "the pending edge is replayed"
    );
    // The controller raises it again.
    core.handle_irq(irq).unwrap();
    assert_eq!(n.load(Ordering::SeqCst), 1);
    let s = core.snapshot(irq).unwrap();
    assert!(
        !s.delivery.contains(DeliveryFlags::PENDING),
        "PENDING outlived the replay"
    );
    assert!(!s.line.contains(LineState::MASKED));
    assert_eq!(core.test_hook_total_count(irq), Ok(1));
    // A later edge is handled once, with nothing left over to replay.
    core.handle_irq(irq).unwrap();
    assert_eq!(n.load(Ordering::SeqCst), 2);
    assert_eq!(core.test_hook_total_count(irq), Ok(2));
    assert!(
        !core
            .snapshot(irq)
            .unwrap()
            .delivery
            .contains(DeliveryFlags::PENDING)
    );
}

#[test]
fn a_thread_is_woken_only_when_its_primary_handler_asks() {
    set_cpu(0);
    let core = core_with_cpus(1);
    let chip = Arc::new(RecordingChip {
        flags: ChipFlags::ONESHOT_SAFE,
        ..Default::default()
    });
    let irq = irq_with(&core, chip, FlowKind::Edge);
    let split = Arc::new(Split::default());
    let _r = core
        .request_irq(
            irq,
            IrqRequest::new("split", split.clone()).flags(RequestFlags::THREADED),
        )
        .unwrap();
    core.handle_irq(irq).unwrap();
    assert!(
        core.platform().wakes.lock().unwrap().is_empty(),
        "woken although the primary handler handled it"
    );
    split.wake.store(true, Ordering::SeqCst);
    core.handle_irq(irq).unwrap();
    let wakes = take_woken(&core);
    assert_eq!(wakes.len(), 1);
    core.run_thread(irq, wakes[0]).unwrap();
    assert_eq!(split.threads.load(Ordering::SeqCst), 1);
}

#[test]
fn a_handler_without_a_thread_asking_for_one_wakes_nothing() {
    set_cpu(0);
    let core = core_with_cpus(1);
    let irq = irq_with(&core, RecordingChip::new(), FlowKind::Edge);
    let _r = core
        .request_irq(
            irq,
            IrqRequest::new(
                "confused",
                Arc::new(|_irq: IrqNumber| IrqReturn::WAKE_THREAD),
            ),
        )
        .unwrap();
    core.handle_irq(irq).unwrap();
    assert!(
        core.platform().wakes.lock().unwrap().is_empty(),
        "a thread was woken for an action that has none"
    );
}

#[test]
fn every_handled_edge_counts_also_off_the_common_path() {
    set_cpu(0);
    let core = core_with_cpus(1);
    let irq = irq_with(&core, RecordingChip::new(), FlowKind::Edge);
    // A oneshot edge line takes the general path.
    let _r = core
        .request_irq(
            irq,
            IrqRequest::threaded("dev", |_irq: IrqNumber| IrqReturn::HANDLED)
                .flags(RequestFlags::ONESHOT),
        )
        .unwrap();
    for n in 1..=3 {
        core.handle_irq(irq).unwrap();
        for a in take_woken(&core) {
            core.run_thread(irq, a).unwrap();
        }
        assert_eq!(core.test_hook_total_count(irq), Ok(n));
    }
    assert_eq!(core.irq_count(irq, CpuId::BOOT), 3);
}

/// A primary handler that reports its own work done and asks for its
/// thread too (`HANDLED | WAKE_THREAD`), or only wakes the thread.
struct Both {
    both: std::sync::atomic::AtomicBool,
}

impl IrqHandler for Both {
    fn handle(&self, _irq: IrqNumber) -> IrqReturn {
        if self.both.load(Ordering::SeqCst) {
            IrqReturn::HANDLED | IrqReturn::WAKE_THREAD
        } else {
            IrqReturn::WAKE_THREAD
        }
    }
    fn thread(&self, _irq: IrqNumber) -> IrqReturn {
        IrqReturn::HANDLED
    }
}

/// A line masked for unfinished oneshot threads stays masked until the
/// last of them is done, also when a thread is woken again by an edge
/// whose handlers also reported work done (the run must record that
/// thread's oneshot bit, even though it could end without the lock).
#[test]
fn a_thread_woken_again_on_an_edge_keeps_the_oneshot_line_masked() {
    set_cpu(0);
    let core = core_with_cpus(1);
    let chip = RecordingChip::new();
    let irq = irq_with(&core, chip.clone(), FlowKind::Level);
    let x = Arc::new(Both { both: false.into() });
    let y = Arc::new(Both { both: false.into() });
    let f = RequestFlags::THREADED | RequestFlags::ONESHOT | RequestFlags::SHARED;
    let _x = core
        .request_irq(irq, IrqRequest::new("x", x.clone()).flags(f))
        .unwrap();
    let _y = core
        .request_irq(irq, IrqRequest::new("y", y.clone()).flags(f))
        .unwrap();
    chip.take();
    core.handle_irq(irq).unwrap();
    let woken = take_woken(&core);
    assert_eq!(woken.len(), 2);
    assert_eq!(chip.take(), ["mask_ack"]);
    let (xa, ya) = (woken[0], woken[1]);
    // x's thread is done; y's holds the line masked.
    core.run_thread(irq, xa).unwrap();
    assert!(chip.take().is_empty());
    // The trigger changes to edge; an edge wakes x again, and x also
    // reports work done.
    core.set_flow(irq, FlowKind::Edge).unwrap();
    x.both.store(true, Ordering::SeqCst);
    y.both.store(true, Ordering::SeqCst);
    core.handle_irq(irq).unwrap();
    assert_eq!(take_woken(&core), [xa], "x woken again");
    chip.take();
    core.run_thread(irq, ya).unwrap();
    assert!(
        !chip.take().contains(&"unmask"),
        "unmasked while x's thread, woken again, has not run"
    );
    core.run_thread(irq, xa).unwrap();
    assert_eq!(
        chip.take(),
        ["unmask"],
        "unmasked when the last thread is done"
    );
}
