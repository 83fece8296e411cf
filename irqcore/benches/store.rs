//! Descriptor lookup cost as the number of allocated descriptors grows
//! (it should stay flat), and alloc/free throughput next to the naive
//! design: a global `spin::Mutex<BTreeMap>` registry.
#![allow(missing_docs)] // criterion's macros generate undocumented items
use criterion::{BatchSize, Criterion, black_box, criterion_group, criterion_main};
use irqcore::*;
use std::collections::BTreeMap;
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

fn core_with(n: u32) -> IrqCore<BenchPlatform> {
    let core = IrqCore::with_config(
        BenchPlatform,
        CoreConfig {
            capacity: store::MAX_CAPACITY,
            nr_cpus: 4,
        },
    );
    core.set_cpu_online(CpuId::BOOT, true).unwrap();
    // One range: the store allocates descriptors one by one anyway.
    core.alloc_descs(IrqNumber(0), n).unwrap();
    core
}

fn lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("lookup");
    for n in [16u32, 1_024, 65_536, 1_048_576] {
        let core = core_with(n);
        // The interrupts a machine actually takes are a small hot set spread
        // over the number space: 64 of them, evenly spaced.
        let hot: Vec<IrqNumber> = (0..64)
            .map(|i| IrqNumber(i * (n / 64).max(1) % n))
            .collect();
        let mut i = 0usize;
        g.bench_function(format!("irqcore_hot64/{n}"), |b| {
            b.iter(|| {
                i = (i + 1) & 63;
                core.is_allocated(black_box(hot[i]))
            })
        });
        // Uniformly random numbers: bounded by cache misses at large sizes.
        let mut x = 12345u32;
        g.bench_function(format!("irqcore_random/{n}"), |b| {
            b.iter(|| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                core.is_allocated(black_box(IrqNumber(x % n)))
            })
        });
        let map: spin::Mutex<BTreeMap<u32, Arc<u64>>> =
            spin::Mutex::new((0..n).map(|i| (i, Arc::new(i as u64))).collect());
        g.bench_function(format!("baseline_mutex_btreemap/{n}"), |b| {
            b.iter(|| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                map.lock().get(&black_box(x % n)).is_some()
            })
        });
        if n == 16 {
            println!(
                "bytes per descriptor (4 CPUs): {}",
                core.bytes_per_descriptor()
            );
        }
    }
    g.finish();
}

fn alloc_free(c: &mut Criterion) {
    let mut g = c.benchmark_group("alloc_free");
    let core = core_with(1_024);
    g.bench_function("irqcore", |b| {
        b.iter(|| {
            let irq = core.alloc_descs(IrqNumber(0), 1).unwrap();
            core.free_descs(irq, 1).unwrap();
        })
    });
    let map: spin::Mutex<BTreeMap<u32, Box<[u8; 256]>>> =
        spin::Mutex::new((0..1_024).map(|i| (i, Box::new([0u8; 256]))).collect());
    g.bench_function("baseline_mutex_btreemap", |b| {
        b.iter_batched(
            || (),
            |()| {
                let mut m = map.lock();
                let n = (0..).find(|k| !m.contains_key(k)).unwrap_or(0);
                m.insert(n, Box::new([0u8; 256]));
                m.remove(&n);
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, lookup, alloc_free);
criterion_main!(benches);
