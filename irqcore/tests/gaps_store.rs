//! The store's real free path (issue 17): `free_descs` must not reclaim a
//! descriptor while a CPU is still dispatching through it. The canary is
//! the chip: a descriptor holds a reference to its chip, so the chip's
//! reference count shows when the descriptor's memory is dropped.
mod common;
mod watchdog;
use common::*;
use irqcore::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;
use watchdog::{DEADLINE, TimedBarrier, bounded};

/// The common test platform, except that `report` can be made to block
/// (between two barriers) while a CPU reports a bad irq: that CPU is then
/// inside `handle_irq`, holding the descriptor it looked up.
struct GatePlatform {
    inner: TestPlatform,
    armed: AtomicBool,
    entered: TimedBarrier,
    release: TimedBarrier,
}

impl Platform for GatePlatform {
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
    fn schedule_resend(&self, irq: IrqNumber) {
        self.inner.schedule_resend(irq)
    }
    fn wake_thread(&self, irq: IrqNumber, action: ActionId) -> ThreadWake {
        self.inner.wake_thread(irq, action)
    }
    fn report(&self, event: IrqEvent) {
        if matches!(event, IrqEvent::BadIrq(_)) && self.armed.swap(false, Ordering::SeqCst) {
            self.entered.wait();
            self.release.wait();
        }
        self.inner.report(event)
    }
}

#[test]
fn a_freed_descriptor_outlives_the_dispatch_that_still_uses_it() {
    bounded("free during dispatch", || {
        set_cpu(0);
        let core = Arc::new(IrqCore::with_config(
            GatePlatform {
                inner: TestPlatform::default(),
                armed: AtomicBool::new(false),
                entered: TimedBarrier::new(2, DEADLINE),
                release: TimedBarrier::new(2, DEADLINE),
            },
            CoreConfig {
                capacity: 4096,
                nr_cpus: 16,
            },
        ));
        for c in 0..3 {
            core.set_cpu_online(CpuId::new(c).unwrap(), true).unwrap();
        }
        let chip = RecordingChip::new();
        let irq = core.alloc_descs(IrqNumber(1), 1).unwrap();
        core.set_chip(
            irq,
            vec![ChipLevel::new(chip.clone(), HwIrq(1))],
            FlowKind::Bad,
        )
        .unwrap();
        assert_eq!(Arc::strong_count(&chip), 2, "test + descriptor");
        core.platform().armed.store(true, Ordering::SeqCst);
        let _guard = core.platform().release.guard();
        let c1 = core.clone();
        let dispatcher = std::thread::spawn(move || {
            set_cpu(1);
            c1.handle_irq(irq)
        });
        core.platform().entered.wait();
        // CPU 1 is inside handle_irq (reporting). CPU 0 frees the irq.
        let (tx, rx) = mpsc::channel();
        let c0 = core.clone();
        std::thread::spawn(move || {
            set_cpu(0);
            let _ = tx.send(c0.free_descs(irq, 1));
        });
        // Observe as CPU 2 (CPU 0's read-side slot belongs to the freer).
        set_cpu(2);
        let early = rx.recv_timeout(Duration::from_millis(300));
        assert!(
            early.is_err(),
            "free_descs returned while CPU 1 still dispatched through the descriptor"
        );
        assert_eq!(
            Arc::strong_count(&chip),
            2,
            "descriptor reclaimed during a dispatch through it"
        );
        assert!(!core.is_allocated(irq), "unpublished at once");
        core.platform().release.wait();
        assert_eq!(dispatcher.join().unwrap(), Ok(()));
        assert_eq!(rx.recv_timeout(DEADLINE), Ok(Ok(())));
        assert_eq!(Arc::strong_count(&chip), 1, "reclaimed after the dispatch");
    });
}
