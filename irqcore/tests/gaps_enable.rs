//! Start-up, shut-down and synchronize cases that had no test (issue 17's
//! mutation survivors in `enable.rs`), each what Linux's `irq_startup`,
//! `irq_shutdown` and `synchronize_irq` do.
mod common;
mod watchdog;
use common::*;
use irqcore::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;
use watchdog::{DEADLINE, TimedBarrier, bounded};

#[test]
fn synchronize_irq_waits_for_a_handler_running_on_another_cpu() {
    bounded("synchronize_irq during a handler", || {
        set_cpu(0);
        let core = core_with_cpus(3);
        let irq = irq_with(&core, RecordingChip::new(), FlowKind::Edge);
        let entered = Arc::new(TimedBarrier::new(2, DEADLINE));
        let release = Arc::new(TimedBarrier::new(2, DEADLINE));
        let (e, r) = (entered.clone(), release.clone());
        let _reg = core
            .request_irq(
                irq,
                IrqRequest::new(
                    "slow",
                    Arc::new(move |_irq: IrqNumber| {
                        e.wait();
                        r.wait();
                        IrqReturn::HANDLED
                    }),
                ),
            )
            .unwrap();
        let _guard = release.guard();
        let c1 = core.clone();
        let dispatcher = std::thread::spawn(move || {
            set_cpu(1);
            c1.handle_irq(irq)
        });
        entered.wait();
        let (tx, rx) = mpsc::channel();
        let c2 = core.clone();
        std::thread::spawn(move || {
            set_cpu(2);
            let _ = tx.send(c2.synchronize_irq(irq));
        });
        assert!(
            rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "synchronize_irq returned while the handler still ran on CPU 1"
        );
        release.wait();
        assert_eq!(rx.recv_timeout(DEADLINE), Ok(Ok(())));
        assert_eq!(dispatcher.join().unwrap(), Ok(()));
    });
}

#[test]
fn synchronize_irq_waits_for_a_woken_thread() {
    bounded("synchronize_irq with a thread woken", || {
        set_cpu(0);
        let core = core_with_cpus(3);
        let irq = irq_with(&core, RecordingChip::new(), FlowKind::Level);
        let runs = Arc::new(AtomicU64::new(0));
        let r = runs.clone();
        let _reg = core
            .request_irq(
                irq,
                IrqRequest::threaded("dev", move |_irq: IrqNumber| {
                    r.fetch_add(1, Ordering::SeqCst);
                    IrqReturn::HANDLED
                })
                .flags(RequestFlags::ONESHOT),
            )
            .unwrap();
        core.handle_irq(irq).unwrap();
        let (_, action) = core.platform().wakes.lock().unwrap()[0];
        // No hard handler runs now, but the woken thread has not run.
        let (tx, rx) = mpsc::channel();
        let c2 = core.clone();
        std::thread::spawn(move || {
            set_cpu(2);
            let _ = tx.send(c2.synchronize_irq(irq));
        });
        assert!(
            rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "synchronize_irq returned before the woken thread ran"
        );
        set_cpu(1);
        core.run_thread(irq, action).unwrap();
        assert_eq!(rx.recv_timeout(DEADLINE), Ok(Ok(())));
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn a_managed_irq_requested_while_its_cpus_are_offline_stays_shut_down() {
    set_cpu(0);
    let core = core_with_cpus(2);
    let chip = RecordingChip::new();
    let irq = irq_with(&core, chip.clone(), FlowKind::Edge);
    // CPU 3 exists (nr_cpus 16) but is offline.
    core.set_managed_affinity(irq, &CpuMask::of(CpuId::of::<3>()))
        .unwrap();
    chip.take();
    let (n, h) = counting();
    let _r = core.request_irq(irq, IrqRequest::new("queue", h)).unwrap();
    let snap = core.snapshot(irq).unwrap();
    assert!(
        snap.line
            .contains(LineState::MANAGED_SHUTDOWN | LineState::DISABLED),
        "started with no CPU of its managed mask online: {:?}",
        snap.line
    );
    assert_eq!(snap.depth, 1);
    assert!(!chip.take().contains(&"startup"));
    // Its driver cannot enable it: only a CPU of its mask coming up can.
    assert_eq!(core.enable_irq(irq), Err(IrqError::UnbalancedEnable(irq)));
    core.handle_irq(irq).unwrap();
    assert_eq!(n.load(Ordering::SeqCst), 0, "handled while shut down");
}

#[test]
fn the_last_free_shuts_the_line_down_and_the_next_request_starts_it_afresh() {
    set_cpu(0);
    let core = core_with_cpus(1);
    let chip = RecordingChip::new();
    let irq = irq_with(&core, chip.clone(), FlowKind::Edge);
    let r = core
        .request_irq(irq, IrqRequest::new("a", handled()))
        .unwrap();
    assert!(chip.take().contains(&"startup"));
    r.free().unwrap();
    assert_eq!(chip.take(), ["shutdown"]);
    let snap = core.snapshot(irq).unwrap();
    assert!(
        snap.line.contains(LineState::DISABLED | LineState::MASKED),
        "shut down but not disabled and masked: {:?}",
        snap.line
    );
    assert!(!snap.line.contains(LineState::STARTED));
    assert_eq!(snap.depth, 1);
    // A stray edge now finds the line masked: acked, not masked again.
    core.handle_irq(irq).unwrap();
    assert_eq!(chip.take(), ["ack"]);
    let _r = core
        .request_irq(irq, IrqRequest::new("b", handled()))
        .unwrap();
    assert!(
        chip.take().contains(&"startup"),
        "the next request must start the line, not just unmask it"
    );
}

#[test]
fn disable_percpu_irq_masks_only_the_calling_cpus_instance() {
    set_cpu(0);
    let core = core_with_cpus(2);
    let chip = RecordingChip::new();
    let irq = irq_with(&core, chip.clone(), FlowKind::PerCpuDevId);
    let (n, h) = counting();
    let _r = core
        .request_irq(irq, IrqRequest::new("timer", h).flags(RequestFlags::PERCPU))
        .unwrap();
    for cpu in [0, 1] {
        set_cpu(cpu);
        core.enable_percpu_irq(irq, TriggerType::None).unwrap();
    }
    set_cpu(1);
    chip.take();
    core.disable_percpu_irq(irq).unwrap();
    assert_eq!(chip.take(), ["mask"], "a chip without a disable is masked");
    let s = core.snapshot(irq).unwrap();
    assert!(!s.percpu_enabled.contains(CpuId::of::<1>()));
    assert!(
        s.percpu_enabled.contains(CpuId::BOOT),
        "CPU 0's instance untouched"
    );
    set_cpu(0);
    core.handle_irq(irq).unwrap();
    assert_eq!(n.load(Ordering::SeqCst), 1);
    // Not a per-CPU line: refused, nothing touched.
    let edge = irq_with(&core, RecordingChip::new(), FlowKind::Edge);
    assert_eq!(
        core.disable_percpu_irq(edge),
        Err(IrqError::NotPerCpu(edge))
    );
}
