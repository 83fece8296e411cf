//! Stop-machine latency against the number of simulated CPUs (2, 4, 8, 16),
//! next to a baseline in the same run: `run_on_cpus` with an empty function
//! (the simulator's cost of reaching every CPU thread and waiting for it),
//! so the protocol's own cost is the difference.
//!
//! Threads play CPUs: with more simulated CPUs than host cores, the spinning
//! participants yield to each other, so the figures measure the host
//! scheduler as much as the protocol. Run briefly:
//! `cargo bench -p irqcore --features sim --bench stop_machine -- --quick`.
#![allow(missing_docs)] // criterion's macros generate undocumented functions

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use irqcore::sim::SimMachine;
use irqcore::stop_machine::StopMachine;
use irqcore::{CpuId, CpuMask, Platform};
use std::hint::black_box;
use std::time::Duration;

fn stop_machine_latency(c: &mut Criterion) {
    let mut g = c.benchmark_group("stop_machine");
    g.warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    for n in [2usize, 4, 8, 16] {
        let machine = SimMachine::new(n);
        let p = machine.platform();
        let online = p.online_mask();
        let sm = StopMachine::new();
        let active = CpuMask::of(CpuId::new(n as u32 - 1).unwrap());
        g.bench_with_input(BenchmarkId::new("run_on_cpus_baseline", n), &n, |b, _| {
            b.iter(|| {
                p.run_on_cpus(&online, &|cpu| {
                    black_box(cpu);
                })
            })
        });
        g.bench_with_input(BenchmarkId::new("stop_machine", n), &n, |b, _| {
            b.iter(|| {
                sm.stop_machine(&p, &online, &active, &|cpu| black_box(cpu.get()))
                    .unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, stop_machine_latency);
criterion_main!(benches);
