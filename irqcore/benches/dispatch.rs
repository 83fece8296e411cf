//! Dispatch cost of one edge interrupt (no-op chip, one handler) next to the
//! floor: an indirect call through a static table of function pointers.
#![allow(missing_docs)] // criterion's macros generate undocumented items
use criterion::{Criterion, black_box, criterion_group, criterion_main};
use irqcore::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

struct BenchPlatform;
impl Platform for BenchPlatform {
    fn current_cpu(&self) -> CpuId {
        CpuId::BOOT
    }
    fn local_irq_save(&self) -> IrqFlags {
        IrqFlags(0)
    }
    fn local_irq_restore(&self, _f: IrqFlags) {}
    fn local_irq_enabled(&self) -> bool {
        false
    }
    fn run_on_cpus(&self, _c: &CpuMask, _w: &(dyn Fn(CpuId) + Sync)) {}
    fn schedule_resend(&self, _irq: IrqNumber) {}
}

struct NopChip;
impl IrqChip for NopChip {
    fn name(&self) -> &str {
        "nop"
    }
    fn mask(&self, _d: &IrqData<'_>) {}
    fn unmask(&self, _d: &IrqData<'_>) {}
}

static HITS: AtomicU64 = AtomicU64::new(0);
fn table_handler() {
    HITS.fetch_add(1, Ordering::Relaxed);
}
static TABLE: [fn(); 256] = [table_handler; 256];

fn dispatch(c: &mut Criterion) {
    let mut g = c.benchmark_group("dispatch");
    g.bench_function("baseline_fn_table", |b| {
        b.iter(|| TABLE[black_box(33usize)]())
    });
    let core = IrqCore::with_config(
        BenchPlatform,
        CoreConfig {
            capacity: 1024,
            nr_cpus: 4,
        },
    );
    core.set_cpu_online(CpuId::BOOT, true).unwrap();
    for (name, flow, flags) in [
        ("irqcore_edge", FlowKind::Edge, RequestFlags::empty()),
        ("irqcore_fasteoi", FlowKind::FastEoi, RequestFlags::empty()),
        ("irqcore_percpu", FlowKind::PerCpu, RequestFlags::PERCPU),
    ] {
        let irq = core.alloc_descs(IrqNumber(32), 1).unwrap();
        core.set_chip(irq, vec![ChipLevel::new(Arc::new(NopChip), HwIrq(0))], flow)
            .unwrap();
        let h: Arc<dyn IrqHandler> = Arc::new(|_| {
            HITS.fetch_add(1, Ordering::Relaxed);
            IrqReturn::HANDLED
        });
        let reg = core
            .request_irq(irq, IrqRequest::new("bench", h).flags(flags))
            .unwrap();
        g.bench_function(name, |b| b.iter(|| core.handle_irq(black_box(irq))));
        reg.leak();
    }
    let irq = core.alloc_descs(IrqNumber(32), 1).unwrap();
    core.set_chip(
        irq,
        vec![ChipLevel::new(Arc::new(NopChip), HwIrq(0))],
        FlowKind::Level,
    )
    .unwrap();
    for _ in 0..4 {
        let h: Arc<dyn IrqHandler> = Arc::new(|_| {
            HITS.fetch_add(1, Ordering::Relaxed);
            IrqReturn::HANDLED
        });
        core.request_irq(
            irq,
            IrqRequest::new("shared", h).flags(RequestFlags::SHARED),
        )
        .unwrap()
        .leak();
    }
    g.bench_function("irqcore_level_shared4", |b| {
        b.iter(|| core.handle_irq(black_box(irq)))
    });
    g.finish();
}

criterion_group!(benches, dispatch);
criterion_main!(benches);
