//! The software resend queue beyond its slots: more resends in flight at
//! once than `RESEND_SLOTS` fall back to a walk of every descriptor, and
//! each still runs exactly once.
mod common;
use common::*;
use irqcore::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Lines whose edge arrived while they were (lazily) disabled are resent
/// when enabled again; with more of them than the queue has slots, the
/// ones that did not fit are found by the walk of the next drain.
#[test]
fn more_resends_than_slots_each_run_once() {
    const LINES: usize = irqcore::resend::RESEND_SLOTS + 8;
    set_cpu(0);
    let core = core_with_cpus(1);
    let mut lines = Vec::new();
    for _ in 0..LINES {
        let irq = irq_with(&core, RecordingChip::new(), FlowKind::Edge);
        let runs = Arc::new(AtomicU64::new(0));
        let r = runs.clone();
        core.request_irq_raw(
            irq,
            IrqRequest::new(
                "dev",
                Arc::new(move |_| {
                    r.fetch_add(1, Ordering::SeqCst);
                    IrqReturn::HANDLED
                }),
            )
            .dev_id(DevId(irq.0 as usize)),
        )
        .unwrap();
        lines.push((irq, runs));
    }
    // Every line disabled, an edge on each (left PENDING, masked), then
    // every line enabled: a software resend each (the chip cannot
    // retrigger), none drained yet.
    for (irq, _) in &lines {
        core.disable_irq(*irq).unwrap();
        core.handle_irq(*irq).unwrap();
    }
    for (irq, _) in &lines {
        core.enable_irq(*irq).unwrap();
    }
    for (irq, runs) in &lines {
        assert_eq!(
            runs.load(Ordering::SeqCst),
            0,
            "irq {irq:?} ran while disabled"
        );
    }
    core.run_resends().unwrap();
    for (irq, runs) in &lines {
        assert_eq!(
            runs.load(Ordering::SeqCst),
            1,
            "irq {irq:?}: its resend ran exactly once"
        );
        let snap = core.snapshot(*irq).unwrap();
        assert!(!snap.delivery.contains(DeliveryFlags::SW_RESEND));
    }
    // Nothing is left to replay.
    core.run_resends().unwrap();
    assert!(lines.iter().all(|(_, r)| r.load(Ordering::SeqCst) == 1));
}

/// A resend the kernel ran itself (`handle_sw_resend`, from the softirq
/// it raised) leaves the queue: the platform is not told about it again
/// when the next resend is announced.
#[test]
fn a_resend_run_by_the_kernel_is_not_announced_again() {
    set_cpu(0);
    let core = core_with_cpus(1);
    let (a, b) = (
        irq_with(&core, RecordingChip::new(), FlowKind::Edge),
        irq_with(&core, RecordingChip::new(), FlowKind::Edge),
    );
    let (runs_a, ha) = counting();
    let (_runs_b, hb) = counting();
    core.request_irq_raw(a, IrqRequest::new("a", ha).dev_id(DevId(1)))
        .unwrap();
    core.request_irq_raw(b, IrqRequest::new("b", hb).dev_id(DevId(2)))
        .unwrap();
    // Both edges arrive while their lines are disabled (no dispatch
    // after this one drains the queue before the end of the test).
    for irq in [a, b] {
        core.disable_irq(irq).unwrap();
        core.handle_irq(irq).unwrap();
    }
    core.enable_irq(a).unwrap();
    assert_eq!(*core.platform().resends.lock().unwrap(), [a]);
    core.handle_sw_resend(a).unwrap();
    assert_eq!(runs_a.load(Ordering::SeqCst), 1);
    core.enable_irq(b).unwrap();
    assert_eq!(
        *core.platform().resends.lock().unwrap(),
        [a, b],
        "a's resend ran: only b is announced"
    );
}
