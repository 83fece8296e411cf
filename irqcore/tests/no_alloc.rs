//! The dispatch path never allocates (a counting global allocator).
//!
//! Only allocations of the dispatching thread count: the test harness's
//! own threads (its main thread waits for results with a timeout, and
//! allocates doing so) may allocate at any time.
mod common;
use common::*;
use irqcore::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Whether this thread's allocations are counted. Const-initialised
    /// and without a destructor, so reading it never allocates.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn counting_here() -> bool {
    COUNTING.try_with(Cell::get).unwrap_or(false)
}

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if counting_here() {
            ALLOCS.fetch_add(1, Ordering::SeqCst);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn ten_thousand_dispatches_allocate_nothing() {
    set_cpu(0);
    let core = core_with_cpus(1);
    let mut irqs = Vec::new();
    let mut regs = Vec::new();
    for flow in [
        FlowKind::Edge,
        FlowKind::Level,
        FlowKind::FastEoi,
        FlowKind::PerCpu,
    ] {
        let irq = core.alloc_descs(IrqNumber(1), 1).unwrap();
        core.set_chip(
            irq,
            vec![ChipLevel::new(std::sync::Arc::new(Nop), HwIrq(1))],
            flow,
        )
        .unwrap();
        let mut req = IrqRequest::new("nop", handled());
        if flow == FlowKind::PerCpu {
            req = req.flags(RequestFlags::PERCPU);
        }
        regs.push(core.request_irq(irq, req).unwrap());
        irqs.push(irq);
    }
    COUNTING.with(|c| c.set(true));
    for i in 0..10_000 {
        core.handle_irq(irqs[i % irqs.len()]).unwrap();
    }
    COUNTING.with(|c| c.set(false));
    assert_eq!(ALLOCS.load(Ordering::SeqCst), 0);
    assert_eq!(core.irq_count(irqs[0], CpuId::BOOT), 2500);
}

struct Nop;
impl IrqChip for Nop {
    fn name(&self) -> &str {
        "nop"
    }
    fn mask(&self, _d: &IrqData<'_>) {}
    fn unmask(&self, _d: &IrqData<'_>) {}
}
