//! Deferred reclamation (`reclaim.rs`, issue 17's mutation survivors): what
//! a change replaces is dropped after a grace period, not before (a CPU may
//! still be reading it) and not never (a leak). The canaries are reference
//! counts: a descriptor holds its chip, an action holds its handler.
mod common;
mod watchdog;
use common::*;
use irqcore::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;
use watchdog::{DEADLINE, TimedBarrier, bounded};

/// A chip whose `ack` can be made to block between two barriers: the CPU
/// acking is then inside `handle_irq`, reading the descriptor's published
/// chip stack without the lock (the per-CPU flows do).
struct GateChip {
    armed: AtomicBool,
    entered: TimedBarrier,
    release: TimedBarrier,
}

impl GateChip {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            armed: AtomicBool::new(false),
            entered: TimedBarrier::new(2, DEADLINE),
            release: TimedBarrier::new(2, DEADLINE),
        })
    }
}

impl IrqChip for GateChip {
    fn name(&self) -> &str {
        "GATE"
    }
    fn mask(&self, _d: &IrqData<'_>) {}
    fn unmask(&self, _d: &IrqData<'_>) {}
    fn ack(&self, _d: &IrqData<'_>) {
        if self.armed.swap(false, Ordering::SeqCst) {
            self.entered.wait();
            self.release.wait();
        }
    }
}

#[test]
fn a_freed_handler_is_dropped_before_free_irq_returns() {
    let core = core_with_cpus(2);
    let irq = irq_with(&core, RecordingChip::new(), FlowKind::Edge);
    let canary = Arc::new(());
    let held = canary.clone();
    let handler: Arc<dyn IrqHandler> = Arc::new(move |_irq: IrqNumber| {
        let _ = &held;
        IrqReturn::HANDLED
    });
    core.request_irq_raw(irq, IrqRequest::new("dev", handler).dev_id(DevId(7)))
        .unwrap();
    core.handle_irq(irq).unwrap();
    assert_eq!(Arc::strong_count(&canary), 2, "test + handler");
    core.free_irq(irq, DevId(7)).unwrap();
    // No CPU is in a read-side section: after the grace period free_irq
    // waited for, nothing can reach the old action list, and Linux's
    // free_irq returns the device to its driver only then.
    assert_eq!(
        Arc::strong_count(&canary),
        1,
        "the freed handler is still alive after free_irq returned"
    );
}

#[test]
fn a_replaced_chip_outlives_the_dispatch_still_using_it() {
    bounded("set_chip during a per-CPU dispatch", || {
        set_cpu(0);
        let core = core_with_cpus(3);
        let old = GateChip::new();
        let irq = core.alloc_descs(IrqNumber(1), 1).unwrap();
        core.set_chip(
            irq,
            vec![ChipLevel::new(old.clone(), HwIrq(1))],
            FlowKind::PerCpu,
        )
        .unwrap();
        assert_eq!(Arc::strong_count(&old), 2, "test + descriptor");
        old.armed.store(true, Ordering::SeqCst);
        let _guard = old.release.guard();
        let c1 = core.clone();
        let dispatcher = std::thread::spawn(move || {
            set_cpu(1);
            c1.handle_irq(irq)
        });
        // CPU 1 is inside the old chip's ack, through the published view.
        old.entered.wait();
        let (tx, rx) = mpsc::channel();
        let c0 = core.clone();
        let new = RecordingChip::new();
        std::thread::spawn(move || {
            set_cpu(0);
            let _ =
                tx.send(c0.set_chip(irq, vec![ChipLevel::new(new, HwIrq(1))], FlowKind::PerCpu));
        });
        set_cpu(2);
        assert!(
            rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "set_chip returned (and dropped the old chip stack) while CPU 1 still used it"
        );
        assert_eq!(
            Arc::strong_count(&old),
            2,
            "old chip stack dropped too early"
        );
        old.release.wait();
        assert_eq!(dispatcher.join().unwrap(), Ok(()));
        assert_eq!(rx.recv_timeout(DEADLINE), Ok(Ok(())));
        assert_eq!(
            Arc::strong_count(&old),
            1,
            "the replaced chip stack is dropped after the grace period"
        );
    });
}

// Descriptors freed, and chip stacks replaced, while the freeing CPU is
// itself inside a read-side section are parked: `reclaim.rs`'s unit tests
// (no public API enters a section and then frees on its own).
