//! Mapping throughput of the domain layer, next to its floor: the bare
//! descriptor allocate + free the domain layer wraps. Prints the memory
//! cost per mapping.
// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]
use criterion::{Criterion, black_box, criterion_group, criterion_main};
use irqcore::domain::{AllocRequest, LevelAlloc, MappingRecord};
use irqcore::*;
use std::sync::Arc;

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

struct NopDomain(Arc<dyn IrqChip>);
impl DomainOps for NopDomain {
    fn alloc(&self, req: &AllocRequest) -> Result<LevelAlloc, IrqError> {
        let mut l = LevelAlloc::new(self.0.clone(), FlowKind::FastEoi);
        l.parent_hwirq = HwIrq(req.irq.0 as u64);
        Ok(l)
    }
}

fn domain(c: &mut Criterion) {
    println!(
        "bytes per mapping: MappingRecord {} B (+ BTreeMap node share) + one reverse-map slot per level \
         (linear: {} B, tree: BTreeMap entry of {} B + node share)",
        core::mem::size_of::<MappingRecord>(),
        core::mem::size_of::<Option<IrqNumber>>(),
        core::mem::size_of::<(u64, IrqNumber)>(),
    );
    let core = IrqCore::with_config(
        BenchPlatform,
        CoreConfig {
            capacity: 8192,
            nr_cpus: 4,
        },
    );
    core.set_cpu_online(CpuId::BOOT, true).unwrap();
    let reg = DomainRegistry::new(&core);
    let chip: Arc<dyn IrqChip> = Arc::new(NopChip);
    let ops = || Arc::new(NopDomain(chip.clone()));
    let lin = reg
        .add_domain(
            DomainConfig::new("lin", DomainKind::Linear { size: 1024 }),
            ops(),
        )
        .unwrap();
    let tree = reg
        .add_domain(DomainConfig::new("tree", DomainKind::Tree), ops())
        .unwrap();
    let root = reg
        .add_domain(DomainConfig::new("root", DomainKind::Tree), ops())
        .unwrap();
    let mid = reg
        .add_domain(
            DomainConfig::new("mid", DomainKind::Tree).with_parent(root),
            ops(),
        )
        .unwrap();
    let top = reg
        .add_domain(
            DomainConfig::new("top", DomainKind::Linear { size: 64 }).with_parent(mid),
            ops(),
        )
        .unwrap();
    // Background population so lookups are not in an empty map.
    let _bg: Vec<_> = (0..512u64)
        .flat_map(|h| {
            [
                reg.map(lin, HwIrq(h + 512)).unwrap(),
                reg.map(tree, HwIrq(h * 7919)).unwrap(),
            ]
        })
        .collect();

    let mut g = c.benchmark_group("domain");
    g.bench_function("baseline_alloc_free_desc", |b| {
        b.iter(|| {
            let irq = core.alloc_descs(IrqNumber(1), 1).unwrap();
            core.free_descs(black_box(irq), 1).unwrap();
        })
    });
    g.bench_function("map_unmap_new_linear", |b| {
        b.iter(|| drop(reg.map(lin, black_box(HwIrq(7))).unwrap()))
    });
    g.bench_function("map_unmap_new_tree", |b| {
        b.iter(|| drop(reg.map(tree, black_box(HwIrq(5))).unwrap()))
    });
    g.bench_function("map_unmap_new_3_level_hierarchy", |b| {
        b.iter(|| drop(reg.map(top, black_box(HwIrq(3))).unwrap()))
    });
    let held = reg.map(lin, HwIrq(9)).unwrap();
    g.bench_function("map_unmap_existing_ref", |b| {
        b.iter(|| drop(reg.map(lin, black_box(HwIrq(9))).unwrap()))
    });
    g.bench_function("find_mapping_linear", |b| {
        b.iter(|| reg.find_mapping(lin, black_box(HwIrq(600))))
    });
    g.bench_function("find_mapping_tree", |b| {
        b.iter(|| reg.find_mapping(tree, black_box(HwIrq(300 * 7919))))
    });
    g.finish();
    drop(held);
}

criterion_group!(benches, domain);
criterion_main!(benches);
