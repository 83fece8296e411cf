//! Request-time checks that had no test (issue 17): a percpu_devid line
//! cannot be shared, shared handlers must agree on oneshot.
mod common;
use common::*;
use irqcore::*;
use std::sync::Arc;

#[test]
fn a_percpu_devid_line_cannot_be_shared() {
    set_cpu(0);
    let core = core_with_cpus(2);
    let irq = irq_with(&core, RecordingChip::new(), FlowKind::PerCpuDevId);
    let f = RequestFlags::PERCPU | RequestFlags::SHARED;
    let _a = core
        .request_irq(irq, IrqRequest::new("timer", handled()).flags(f))
        .unwrap();
    assert_eq!(
        core.request_irq(irq, IrqRequest::new("other", handled()).flags(f))
            .err(),
        Some(IrqError::NotShared(irq))
    );
    assert_eq!(core.snapshot(irq).unwrap().handlers.len(), 1, "unchanged");
    // A plain per-CPU line can be shared.
    let pc = irq_with(&core, RecordingChip::new(), FlowKind::PerCpu);
    let _b = core
        .request_irq(pc, IrqRequest::new("ipi-a", handled()).flags(f))
        .unwrap();
    let _c = core
        .request_irq(pc, IrqRequest::new("ipi-b", handled()).flags(f))
        .unwrap();
    assert_eq!(core.snapshot(pc).unwrap().handlers.len(), 2);
}

fn shared_oneshot(chip_flags: ChipFlags, first: bool, second: bool) -> Result<usize, IrqError> {
    set_cpu(0);
    let core = core_with_cpus(1);
    let chip = Arc::new(RecordingChip {
        flags: chip_flags,
        ..Default::default()
    });
    let irq = irq_with(&core, chip, FlowKind::Level);
    let flags = |oneshot: bool| {
        if oneshot {
            RequestFlags::SHARED | RequestFlags::ONESHOT
        } else {
            RequestFlags::SHARED
        }
    };
    let _a = core
        .request_irq(irq, IrqRequest::new("a", handled()).flags(flags(first)))
        .unwrap();
    let b = core.request_irq(irq, IrqRequest::new("b", handled()).flags(flags(second)));
    let n = core.snapshot(irq).unwrap().handlers.len();
    b.map(|b| {
        drop(b);
        n
    })
}

#[test]
fn shared_handlers_must_agree_on_oneshot() {
    let irq = IrqNumber(1);
    assert_eq!(
        shared_oneshot(ChipFlags::empty(), true, false),
        Err(IrqError::OneshotMismatch(irq))
    );
    assert_eq!(
        shared_oneshot(ChipFlags::empty(), false, true),
        Err(IrqError::OneshotMismatch(irq))
    );
    assert_eq!(shared_oneshot(ChipFlags::empty(), true, true), Ok(2));
    assert_eq!(shared_oneshot(ChipFlags::empty(), false, false), Ok(2));
    // A oneshot-safe chip (MSI) ignores ONESHOT: no mismatch possible.
    assert_eq!(shared_oneshot(ChipFlags::ONESHOT_SAFE, true, false), Ok(2));
    assert_eq!(shared_oneshot(ChipFlags::ONESHOT_SAFE, false, true), Ok(2));
}

#[test]
fn a_refused_oneshot_mismatch_changes_nothing() {
    set_cpu(0);
    let core = core_with_cpus(1);
    let chip = RecordingChip::new();
    let irq = irq_with(&core, chip.clone(), FlowKind::Level);
    let (n, h) = counting();
    let _a = core
        .request_irq(
            irq,
            IrqRequest::new("a", h).flags(RequestFlags::SHARED | RequestFlags::ONESHOT),
        )
        .unwrap();
    let before = core.snapshot(irq).unwrap();
    chip.take();
    assert!(
        core.request_irq(
            irq,
            IrqRequest::new("b", handled()).flags(RequestFlags::SHARED)
        )
        .is_err()
    );
    let after = core.snapshot(irq).unwrap();
    assert_eq!(before.handlers, after.handlers);
    assert_eq!(before.delivery, after.delivery);
    assert_eq!(before.line, after.line);
    assert_eq!(chip.take(), Vec::<&str>::new(), "no chip call");
    core.handle_irq(irq).unwrap();
    assert_eq!(n.load(std::sync::atomic::Ordering::SeqCst), 1);
}
