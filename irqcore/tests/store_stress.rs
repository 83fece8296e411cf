//! Stress: CPUs dispatch random interrupts while another CPU allocates and
//! frees descriptors under them. Nothing crashes, every dispatch of a live
//! irq is counted exactly once, and the churned descriptors never leak.
mod common;
use common::*;
use irqcore::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[test]
fn dispatch_races_alloc_and_free() {
    // Miri is slow: a few rounds, with the dispatchers aiming at the few
    // numbers those rounds churn and yielding after each dispatch (Miri's
    // threads are not CPUs), still race every free against dispatches.
    const ROUNDS: u32 = if cfg!(miri) { 3 } else { 400 };
    const CHURN_SPAN: u32 = if cfg!(miri) { 8 } else { 64 };
    set_cpu(0);
    let core = core_with_cpus(4);
    let chip = Arc::new(TargetChip::default());
    const STABLE: usize = 16;
    // Per-CPU flow for the stable irqs: every arrival runs the handler (an
    // edge flow would rightly coalesce arrivals that meet in progress).
    let stable: Vec<IrqNumber> = (0..STABLE)
        .map(|_| irq_with(&core, chip.clone(), FlowKind::PerCpu))
        .collect();
    let handled: Arc<Vec<AtomicU64>> = Arc::new((0..STABLE).map(|_| AtomicU64::new(0)).collect());
    let mut regs = Vec::new();
    for (i, &irq) in stable.iter().enumerate() {
        let h = handled.clone();
        let handler: Arc<dyn IrqHandler> = Arc::new(move |_| {
            h[i].fetch_add(1, Ordering::Relaxed);
            IrqReturn::HANDLED
        });
        regs.push(
            core.request_irq(
                irq,
                IrqRequest::new("stable", handler).flags(RequestFlags::PERCPU),
            )
            .unwrap(),
        );
    }
    let base = core.nr_descs();
    let stop = AtomicBool::new(false);
    let dispatched: Vec<AtomicU64> = (0..STABLE).map(|_| AtomicU64::new(0)).collect();
    let churn_hits = AtomicU64::new(0);
    let started = AtomicU64::new(0);
    std::thread::scope(|s| {
        for cpu in 0..3u32 {
            let (core, stable, dispatched, stop, churn_hits, started) =
                (&core, &stable, &dispatched, &stop, &churn_hits, &started);
            s.spawn(move || {
                set_cpu(cpu);
                started.fetch_add(1, Ordering::SeqCst);
                let mut x = 0x9e37_79b9u32 ^ cpu;
                while !stop.load(Ordering::Relaxed) {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    if x.is_multiple_of(2) {
                        let i = (x as usize / 2) % STABLE;
                        core.handle_irq(stable[i]).unwrap();
                        dispatched[i].fetch_add(1, Ordering::Relaxed);
                    } else {
                        // A churned number: live or not, never a crash.
                        match core.handle_irq(IrqNumber(200 + x % CHURN_SPAN)) {
                            Ok(()) => churn_hits.fetch_add(1, Ordering::Relaxed),
                            Err(IrqError::UnknownIrq(_)) => 0,
                            Err(e) => panic!("unexpected {e:?}"),
                        };
                    }
                    if cfg!(miri) {
                        std::thread::yield_now();
                    }
                }
            });
        }
        let (core, stop, chip, churn_hits, started) = (&core, &stop, &chip, &churn_hits, &started);
        s.spawn(move || {
            // A failure here must stop the dispatchers, or the scope waits
            // for them forever.
            let _stop = StopOnDrop(stop);
            set_cpu(3);
            // Churn only once every dispatcher runs, and until one of them
            // has hit a live churned descriptor (within a bound, so that a
            // core that never lets them is reported below, not hung on): on
            // a busy machine the dispatcher threads may be scheduled late.
            while started.load(Ordering::SeqCst) < 3 {
                std::thread::yield_now();
            }
            let mut round = 0;
            while round < ROUNDS
                || (churn_hits.load(Ordering::Relaxed) == 0 && round < 100 * ROUNDS)
            {
                let n = 1 + round % 8;
                let first = core.alloc_descs(IrqNumber(200 + round % 56), n).unwrap();
                for k in 0..n {
                    let irq = IrqNumber(first.0 + k);
                    core.set_chip(
                        irq,
                        vec![ChipLevel::new(chip.clone(), HwIrq(irq.0 as u64))],
                        FlowKind::Edge,
                    )
                    .unwrap();
                    core.request_irq(irq, IrqRequest::new("churn", common::handled()))
                        .unwrap()
                        .leak();
                }
                for k in 0..n {
                    let irq = IrqNumber(first.0 + k);
                    let dev = core.snapshot(irq).unwrap().handlers[0].1;
                    core.free_irq(irq, dev).unwrap();
                }
                core.free_descs(first, n).unwrap();
                round += 1;
            }
            stop.store(true, Ordering::Relaxed);
        });
    });
    for i in 0..STABLE {
        assert_eq!(
            handled[i].load(Ordering::Relaxed),
            dispatched[i].load(Ordering::Relaxed),
            "irq {i}"
        );
        let total: u64 = (0..4)
            .map(|c| core.irq_count(stable[i], CpuId::new(c).unwrap()))
            .sum();
        assert_eq!(total, dispatched[i].load(Ordering::Relaxed));
    }
    assert_eq!(core.nr_descs(), base, "churned descriptors leaked");
    assert!(
        churn_hits.load(Ordering::Relaxed) > 0,
        "the race was never exercised"
    );
}

/// Sets the flag when dropped, also while unwinding from a panic.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
