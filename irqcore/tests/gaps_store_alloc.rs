//! The store's allocator (issue 17): first fit over the free ranges, the
//! largest capacity, and allocation never waiting for a running handler.
mod common;
mod watchdog;
use common::*;
use irqcore::store::MAX_CAPACITY;
use irqcore::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;
use watchdog::bounded;

fn core_with_capacity(capacity: u32) -> IrqCore<TestPlatform> {
    let core = IrqCore::with_config(
        TestPlatform::default(),
        CoreConfig {
            capacity,
            nr_cpus: 2,
        },
    );
    core.set_cpu_online(CpuId::BOOT, true).unwrap();
    core
}

#[test]
fn first_fit_skips_a_hole_at_the_start_that_is_too_small() {
    set_cpu(0);
    let core = core_with_capacity(64);
    assert_eq!(core.alloc_descs(IrqNumber(0), 3), Ok(IrqNumber(0)));
    assert_eq!(core.alloc_descs(IrqNumber(0), 1), Ok(IrqNumber(3)));
    core.free_descs(IrqNumber(0), 3).unwrap();
    // Free: [0, 3) and [4, 64). Five numbers fit only in the second.
    assert_eq!(core.alloc_descs(IrqNumber(0), 5), Ok(IrqNumber(4)));
    assert!(core.is_allocated(IrqNumber(3)));
    assert!(!core.is_allocated(IrqNumber(0)));
    // The hole is still there, whole, for what fits in it.
    assert_eq!(core.alloc_descs(IrqNumber(0), 3), Ok(IrqNumber(0)));
    assert_eq!(core.alloc_descs(IrqNumber(0), 1), Ok(IrqNumber(9)));
}

#[test]
fn the_largest_capacity_reaches_its_last_number_and_no_further() {
    set_cpu(0);
    // The documented largest capacity: 1,048,576 irq numbers.
    assert_eq!(MAX_CAPACITY, 1_048_576);
    // Asking for more gets the largest capacity, not an error.
    for capacity in [1_048_576, 1_048_576 + 5, u32::MAX] {
        let core = core_with_capacity(capacity);
        let last = IrqNumber(1_048_575);
        core.alloc_desc_at(last).unwrap();
        assert!(core.is_allocated(last));
        assert!(core.alloc_desc_at(IrqNumber(MAX_CAPACITY)).is_err());
        assert!(core.alloc_descs(last, 2).is_err(), "past the end");
        core.free_descs(last, 1).unwrap();
        assert_eq!(
            core.alloc_descs(IrqNumber(MAX_CAPACITY - 8), 8),
            Ok(IrqNumber(MAX_CAPACITY - 8))
        );
    }
}

#[test]
fn allocating_does_not_wait_for_a_handler_running_on_another_cpu() {
    // Linux's irq_alloc_descs does not synchronise with handlers: only
    // freeing waits for a grace period. A handler still running elsewhere
    // (here: until it sees the allocation) must not hold up an allocation
    // with nothing to reclaim.
    bounded("alloc beside a running handler", || {
        set_cpu(0);
        let core = core_with_cpus(2);
        let irq = core.alloc_descs(IrqNumber(1), 1).unwrap();
        core.set_chip(
            irq,
            vec![ChipLevel::new(RecordingChip::new(), HwIrq(1))],
            FlowKind::Edge,
        )
        .unwrap();
        let allocated = Arc::new(AtomicBool::new(false));
        let (entered_tx, entered_rx) = mpsc::channel();
        let saw = Arc::new(AtomicBool::new(false));
        let (a, seen) = (allocated.clone(), saw.clone());
        let entered_tx = std::sync::Mutex::new(entered_tx);
        let _r = core
            .request_irq(
                irq,
                IrqRequest::new(
                    "waits",
                    Arc::new(move |_| {
                        entered_tx.lock().unwrap().send(()).unwrap();
                        let deadline = std::time::Instant::now() + Duration::from_secs(5);
                        while !a.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
                            std::thread::yield_now();
                        }
                        seen.store(a.load(Ordering::SeqCst), Ordering::SeqCst);
                        IrqReturn::HANDLED
                    }),
                ),
            )
            .unwrap();
        let c = core.clone();
        let cpu1 = std::thread::spawn(move || {
            set_cpu(1);
            c.handle_irq(irq).unwrap();
        });
        entered_rx.recv().unwrap();
        // CPU 1 is inside its handler, in its read-side section.
        let other = core.alloc_descs(IrqNumber(100), 1);
        allocated.store(true, Ordering::SeqCst);
        cpu1.join().unwrap();
        assert!(other.is_ok());
        assert!(
            saw.load(Ordering::SeqCst),
            "the allocation waited for the handler to leave"
        );
    });
}

#[test]
fn freed_ranges_merge_with_free_neighbours_on_both_sides() {
    set_cpu(0);
    // Freed in either order, two neighbouring blocks and the free space
    // after them make one range again: a block as large as all of it fits
    // at the start.
    for a_first in [true, false] {
        let core = core_with_capacity(64);
        let a = core.alloc_descs(IrqNumber(0), 4).unwrap();
        let b = core.alloc_descs(IrqNumber(0), 4).unwrap();
        assert_eq!((a, b), (IrqNumber(0), IrqNumber(4)));
        let (first, second) = if a_first { (a, b) } else { (b, a) };
        core.free_descs(first, 4).unwrap();
        core.free_descs(second, 4).unwrap();
        assert_eq!(
            core.alloc_descs(IrqNumber(0), 64),
            Ok(IrqNumber(0)),
            "a_first: {a_first}"
        );
    }
    // A block freed between two free ranges joins both.
    let core = core_with_capacity(64);
    let a = core.alloc_descs(IrqNumber(0), 4).unwrap();
    let b = core.alloc_descs(IrqNumber(0), 4).unwrap();
    let c = core.alloc_descs(IrqNumber(0), 4).unwrap();
    core.free_descs(a, 4).unwrap();
    core.free_descs(c, 4).unwrap();
    core.free_descs(b, 4).unwrap();
    assert_eq!(core.alloc_descs(IrqNumber(0), 64), Ok(IrqNumber(0)));
}

#[test]
fn numbers_on_both_sides_of_every_table_boundary_are_distinct_descriptors() {
    // The store keeps numbers below 1,024 in an inline chunk and the rest
    // in chunks of 1,024 under a top-level table; counters live in groups
    // per chunk. Each number must reach its own descriptor, handler and
    // counters, whichever chunk and group it falls in.
    set_cpu(0);
    let core = core_with_capacity(1 << 20);
    let irqs = [
        0u32, 1, 1023, 1024, 1025, 2047, 2048, 3071, 3072, 65_541, 1_048_575,
    ];
    let mut regs = Vec::new();
    let mut counters = Vec::new();
    for (k, &n) in irqs.iter().enumerate() {
        let irq = IrqNumber(n);
        core.alloc_desc_at(irq).unwrap();
        core.set_chip(
            irq,
            vec![ChipLevel::new(RecordingChip::new(), HwIrq(u64::from(n)))],
            FlowKind::Edge,
        )
        .unwrap();
        let (count, h) = counting();
        regs.push(core.request_irq(irq, IrqRequest::new("n", h)).unwrap());
        counters.push(count);
        for _ in 0..=k {
            core.handle_irq(irq).unwrap();
        }
    }
    for (k, &n) in irqs.iter().enumerate() {
        let want = k as u64 + 1;
        assert_eq!(counters[k].load(Ordering::SeqCst), want, "handler of {n}");
        assert_eq!(
            core.irq_count(IrqNumber(n), CpuId::BOOT),
            want,
            "count of {n}"
        );
    }
    for &n in &[4095u32, 4096, 1_048_574] {
        assert!(!core.is_allocated(IrqNumber(n)));
        assert!(
            core.handle_irq(IrqNumber(n)).is_err(),
            "{n} has no descriptor"
        );
    }
    drop(regs);
    for &n in &irqs {
        core.free_descs(IrqNumber(n), 1).unwrap();
        assert!(!core.is_allocated(IrqNumber(n)));
    }
}

#[test]
fn freeing_past_the_end_is_out_of_range() {
    set_cpu(0);
    let core = core_with_capacity(4096);
    assert_eq!(
        core.free_descs(IrqNumber(1), 4096),
        Err(IrqError::OutOfRange(IrqNumber(1)))
    );
    assert_eq!(
        core.free_descs(IrqNumber(4000), 200),
        Err(IrqError::OutOfRange(IrqNumber(4000)))
    );
    // Inside the store but never allocated: a different error.
    assert_eq!(
        core.free_descs(IrqNumber(10), 2),
        Err(IrqError::UnknownIrq(IrqNumber(10)))
    );
}

/// Records every irq a hotplug phase walks.
#[derive(Default)]
struct Walker(std::sync::Mutex<Vec<IrqNumber>>);
impl HotplugCallback<TestPlatform> for Walker {
    fn name(&self) -> &str {
        "walker"
    }
    fn up(&self, ctx: &hotplug::HotplugCtx<'_, TestPlatform>) -> Result<(), IrqError> {
        let mut seen = self.0.lock().unwrap();
        ctx.for_each_irq(&mut |irq| seen.push(irq))
    }
    fn down(&self, _ctx: &hotplug::HotplugCtx<'_, TestPlatform>) {}
}

#[test]
fn a_hotplug_walk_visits_every_allocated_number_once_in_order() {
    bounded("walk", || {
        set_cpu(0);
        let core = core_with_cpus(2);
        let numbers = [3u32, 1023, 1024, 2500, 4095];
        for &n in &numbers {
            core.alloc_desc_at(IrqNumber(n)).unwrap();
        }
        let walker = Arc::new(Walker::default());
        core.register_hotplug(CpuPhase::BringUp, walker.clone())
            .unwrap();
        let c = core.clone();
        core.cpu_up(CpuId::of::<2>(), &ThreadCpus(c)).unwrap();
        let seen = walker.0.lock().unwrap().clone();
        assert_eq!(seen, numbers.map(IrqNumber).to_vec());
    });
}

#[test]
fn dropping_the_core_drops_every_descriptor_and_what_it_holds() {
    set_cpu(0);
    let chip = RecordingChip::new();
    {
        let core = core_with_capacity(1 << 20);
        for n in [5u32, 1500, 70_000] {
            core.alloc_desc_at(IrqNumber(n)).unwrap();
            core.set_chip(
                IrqNumber(n),
                vec![ChipLevel::new(chip.clone(), HwIrq(u64::from(n)))],
                FlowKind::Level,
            )
            .unwrap();
        }
        assert_eq!(Arc::strong_count(&chip), 4);
    }
    assert_eq!(
        Arc::strong_count(&chip),
        1,
        "a descriptor outlived its core"
    );
}
