//! The dispatcher's own duties (issue 17's mutation survivors in
//! `dispatch.rs`): an irq number without a descriptor is reported, and the
//! software-resend queue is replayed by the outermost dispatch only, never
//! inside a chained handler's nested dispatch (the interrupted flow may be
//! the very line queued).
mod common;
use common::*;
use irqcore::*;
use std::sync::{Arc, Mutex, Weak};

#[test]
fn an_irq_without_a_descriptor_is_reported_as_bad() {
    set_cpu(0);
    let core = core_with_cpus(1);
    let irq = IrqNumber(77);
    assert_eq!(core.handle_irq(irq), Err(IrqError::UnknownIrq(irq)));
    assert_eq!(
        *core.platform().events.lock().unwrap(),
        [IrqEvent::BadIrq(irq)]
    );
}

fn logging(log: &Arc<Mutex<Vec<&'static str>>>, what: &'static str) -> Arc<dyn IrqHandler> {
    let log = log.clone();
    Arc::new(move |_irq: IrqNumber| {
        log.lock().unwrap().push(what);
        IrqReturn::HANDLED
    })
}

#[test]
fn queued_resends_are_replayed_after_the_outermost_flow_not_inside_a_nested_one() {
    set_cpu(0);
    let core = core_with_cpus(1);
    let log: Arc<Mutex<Vec<&'static str>>> = Arc::default();
    // R: an edge that arrives while disabled; its chip cannot retrigger, so
    // enabling it queues a software resend.
    let r = irq_with(&core, RecordingChip::new(), FlowKind::Edge);
    let _r = core
        .request_irq(r, IrqRequest::new("r", logging(&log, "R")))
        .unwrap();
    core.disable_irq(r).unwrap();
    core.handle_irq(r).unwrap();
    core.enable_irq(r).unwrap();
    assert_eq!(
        *core.platform().resends.lock().unwrap(),
        [r],
        "resend queued"
    );
    assert!(log.lock().unwrap().is_empty());
    // C: a child demultiplexed by P's handler (a nested dispatch).
    let c = irq_with(&core, RecordingChip::new(), FlowKind::Simple);
    let _c = core
        .request_irq(c, IrqRequest::new("c", logging(&log, "C")))
        .unwrap();
    let p = irq_with(&core, RecordingChip::new(), FlowKind::Edge);
    let weak: Weak<Core> = Arc::downgrade(&core);
    let plog = log.clone();
    let parent: Arc<dyn IrqHandler> = Arc::new(move |_irq: IrqNumber| {
        plog.lock().unwrap().push("P start");
        if let Some(core) = weak.upgrade() {
            core.handle_irq(c).unwrap();
        }
        plog.lock().unwrap().push("P end");
        IrqReturn::HANDLED
    });
    let _p = core.request_irq(p, IrqRequest::new("p", parent)).unwrap();
    core.handle_irq(p).unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        ["P start", "C", "P end", "R"],
        "the queued resend must run after the outermost flow"
    );
}
