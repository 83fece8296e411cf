//! Upcall scan throughput of the 2-level layer with 1, 64 and 4096 pending
//! ports, next to a naive scan that tests every port's pending, mask and
//! binding bits one by one (the baseline a selector-less guest would pay).
//!
//! Run briefly: `cargo bench -p xen-evtchn --bench upcall -- --quick`.
#![allow(missing_docs)]

use criterion::{BenchmarkId, Criterion, Throughput, black_box, criterion_group, criterion_main};
use std::sync::atomic::Ordering;
use xen_evtchn::abi::{EVTCHN_2L_NR_CHANNELS, SharedInfo};
use xen_evtchn::{Port, PortLayer, TwoLevel, VcpuId};

const V0: VcpuId = VcpuId(0);

/// A layer whose vCPU 0 has every port bound and `pending` ports pending
/// and unmasked, spread evenly over the port space.
fn setup(pending: u32) -> (&'static SharedInfo, TwoLevel) {
    let shared: &'static SharedInfo = Box::leak(Box::new(SharedInfo::new_zeroed()));
    let layer = TwoLevel::new(shared, 1).expect("one vCPU");
    for p in 0..EVTCHN_2L_NR_CHANNELS {
        layer.bind_to_vcpu(Port(p), None, V0);
    }
    let stride = EVTCHN_2L_NR_CHANNELS / pending;
    for i in 0..pending {
        layer.set_pending(Port(i * stride));
    }
    (shared, layer)
}

/// Selector bits for every word that holds a pending port (what Xen would
/// have set); the scan consumes them.
fn raise_selector(shared: &SharedInfo) {
    let mut sel = 0u64;
    for (w, word) in shared.evtchn_pending.iter().enumerate() {
        if word.load(Ordering::Relaxed) != 0 {
            sel |= 1 << w;
        }
    }
    shared.vcpu_info[0]
        .events
        .evtchn_pending_sel
        .store(sel, Ordering::Relaxed);
}

/// Every port, one at a time.
fn naive_scan(shared: &SharedInfo, bound: &TwoLevel, handle: &mut dyn FnMut(Port)) {
    for p in 0..EVTCHN_2L_NR_CHANNELS {
        let port = Port(p);
        let (w, b) = (port.word(), 1u64 << port.bit());
        if shared.evtchn_pending[w].load(Ordering::Acquire) & b != 0
            && shared.evtchn_mask[w].load(Ordering::Acquire) & b == 0
            && bound.is_deliverable(port, V0)
        {
            handle(port);
        }
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("upcall_scan");
    for pending in [1u32, 64, 4096] {
        let (shared, layer) = setup(pending);
        group.throughput(Throughput::Elements(u64::from(pending)));
        group.bench_with_input(BenchmarkId::new("two_level", pending), &pending, |b, &n| {
            b.iter(|| {
                raise_selector(shared);
                let mut handled = 0u32;
                layer.scan(V0, &mut |p| {
                    black_box(p);
                    handled += 1;
                });
                assert_eq!(handled, n);
                handled
            })
        });
        group.bench_with_input(
            BenchmarkId::new("naive_every_port", pending),
            &pending,
            |b, &n| {
                b.iter(|| {
                    let mut handled = 0u32;
                    naive_scan(shared, &layer, &mut |p| {
                        black_box(p);
                        handled += 1;
                    });
                    assert_eq!(handled, n);
                    handled
                })
            },
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(std::time::Duration::from_millis(200))
        .measurement_time(std::time::Duration::from_millis(500));
    targets = bench
}
criterion_main!(benches);
