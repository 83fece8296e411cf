//! The spurious detector's window boundary (issue 17), as Linux's
//! `note_interrupt` draws it: the 100,000th interrupt is the last of its
//! window, and the window is judged on that interrupt, even when that one
//! interrupt was handled.
mod common;
use common::*;
use irqcore::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

const WINDOW: u64 = 100_000;

/// Returns NONE for the first `WINDOW - 1` calls and HANDLED after.
fn unhandled_then_handled() -> Arc<dyn IrqHandler> {
    let calls = Arc::new(AtomicU64::new(0));
    Arc::new(move |_| {
        if calls.fetch_add(1, Ordering::Relaxed) + 1 < WINDOW {
            IrqReturn::NONE
        } else {
            IrqReturn::HANDLED
        }
    })
}

fn window_closed_by_a_handled_interrupt(flow: FlowKind, flags: RequestFlags) {
    set_cpu(0);
    let core = core_with_cpus(1);
    let irq = irq_with(&core, RecordingChip::new(), flow);
    let _r = core
        .request_irq(
            irq,
            IrqRequest::new("mostly-not-mine", unhandled_then_handled()).flags(flags),
        )
        .unwrap();
    for _ in 0..WINDOW - 1 {
        core.handle_irq(irq).unwrap();
    }
    assert_eq!(
        core.is_spurious_disabled(irq),
        Ok(false),
        "{flow:?}: window still open"
    );
    // The 100,000th, handled: 99,999 of the window were not, more than
    // 99,900, so the line is disabled now, not at some later interrupt.
    core.handle_irq(irq).unwrap();
    assert_eq!(
        core.is_spurious_disabled(irq),
        Ok(true),
        "{flow:?} {flags:?}: the window ended on its 100,000th interrupt"
    );
    assert!(reported(&core, IrqEvent::SpuriousDisabled(irq)));
}

#[test]
fn a_window_ended_by_a_handled_edge_is_judged_on_that_edge() {
    window_closed_by_a_handled_interrupt(FlowKind::Edge, RequestFlags::empty());
}

#[test]
fn a_window_ended_by_a_handled_oneshot_edge_is_judged_on_that_edge() {
    // A oneshot line takes the general flow, not the fast path.
    window_closed_by_a_handled_interrupt(FlowKind::Edge, RequestFlags::ONESHOT);
}

#[test]
fn a_window_ended_by_a_handled_fasteoi_interrupt_is_judged_on_it() {
    window_closed_by_a_handled_interrupt(FlowKind::FastEoi, RequestFlags::empty());
}
