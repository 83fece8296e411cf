//! The irqcore benchmark suite: one criterion run covering dispatch,
//! descriptor lookup, alloc/free, map/unmap, stop-machine, the Xen upcall
//! scan and concurrent dispatch, each next to the baselines (a static
//! function table, the floor; a global `spin::Mutex<BTreeMap>` registry, the
//! naive design) and the peers (`irq-framework`, `handler_table`) where they
//! can do the workload.
//!
//! Benchmark ids are `<group>/<design>[/<parameter>]`; `scripts/bench-report`
//! parses them, so keep the naming when adding benchmarks.
//!
//! Run: `cargo bench -p irqcore-benches` (add `-- --warm-up-time 1
//! --measurement-time 2` for a quick run).
// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use criterion::{BenchmarkId, Criterion, Throughput, black_box, criterion_group, criterion_main};
use irqcore::domain::{AllocRequest, LevelAlloc, MappingRecord};
use irqcore::sim::SimMachine;
use irqcore::stop_machine::StopMachine;
use irqcore::{
    CpuId, CpuMask, DomainConfig, DomainKind, DomainOps, DomainRegistry, FlowKind, HwIrq, IrqChip,
    IrqError, IrqNumber, Platform,
};
#[cfg(feature = "handler_table")]
use irqcore_benches::ht;
#[cfg(feature = "irq-framework")]
use irqcore_benches::irqf;
use irqcore_benches::*;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use xen_evtchn::abi::fifo::{LINKED, PENDING, PRIORITY_DEFAULT};
use xen_evtchn::abi::{EVTCHN_2L_NR_CHANNELS, SharedInfo};
use xen_evtchn::model::HypervisorModel;
use xen_evtchn::{DomId, Fifo, Port, PortLayer, TwoLevel, VcpuId};

/// An LCG step: cheap pseudo-random interrupt numbers, the same sequence
/// for every design.
#[inline]
fn lcg(x: &mut u32) -> u32 {
    *x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
    *x
}

/// Dispatch of one interrupt through each design (one thread, CPU 0).
fn dispatch(c: &mut Criterion) {
    set_current_cpu(0);
    let mut g = c.benchmark_group("dispatch");
    let core = new_core(1024);
    let edge = setup_irqcore_line(&core, 32, FlowKind::Edge, 1, 0);
    let fasteoi = setup_irqcore_line(&core, 32, FlowKind::FastEoi, 1, 0);
    let percpu = setup_irqcore_line(&core, 32, FlowKind::PerCpu, 1, 0);
    let shared = setup_irqcore_line(&core, 32, FlowKind::Level, 4, 0);
    for (name, irq) in [
        ("edge", edge),
        ("fasteoi", fasteoi),
        ("percpu", percpu),
        ("shared4", shared),
    ] {
        g.bench_function(format!("irqcore/{name}"), |b| {
            b.iter(|| core.handle_irq(black_box(irq)))
        });
    }

    // The floor: one (or four) indirect calls through a static table.
    g.bench_function("fn_table/single", |b| {
        b.iter(|| fn_table_dispatch(black_box(32)))
    });
    g.bench_function("fn_table/shared4", |b| {
        b.iter(|| fn_table_dispatch_shared4(black_box(33)))
    });

    // The naive design: a global lock held around lookup and handlers.
    let naive = MutexRegistry::new();
    naive.register(32, Box::new(|_| hit(0)));
    for _ in 0..4 {
        naive.register(33, Box::new(|_| hit(0)));
    }
    g.bench_function("mutex_btreemap/single", |b| {
        b.iter(|| naive.dispatch(black_box(32)))
    });
    g.bench_function("mutex_btreemap/shared4", |b| {
        b.iter(|| naive.dispatch(black_box(33)))
    });

    // irq-framework: no flow types (controller handling is the OS's), so
    // its exclusive dispatch stands against edge/fasteoi/percpu.
    #[cfg(feature = "irq-framework")]
    {
        let reg = irqf::IrqfRegistry::new(irqf::IrqfOps);
        irqf::register(&reg, 32, 1, 0);
        irqf::register(&reg, 33, 4, 0);
        g.bench_function("irq_framework/single", |b| {
            b.iter(|| irqf::dispatch(&reg, black_box(32)))
        });
        g.bench_function("irq_framework/shared4", |b| {
            b.iter(|| irqf::dispatch(&reg, black_box(33)))
        });
    }

    // handler_table: one `fn()` per slot, so no shared lines.
    #[cfg(feature = "handler_table")]
    {
        static TABLE: ht::HandlerTable<256> = ht::HandlerTable::new();
        ht::fill(&TABLE);
        g.bench_function("handler_table/single", |b| {
            b.iter(|| TABLE.handle(black_box(32)))
        });
    }
    g.finish();
}

/// Descriptor lookup by number at growing descriptor counts.
fn lookup(c: &mut Criterion) {
    set_current_cpu(0);
    #[cfg(feature = "handler_table")]
    static HT16: ht::HandlerTable<16> = ht::HandlerTable::new();
    #[cfg(feature = "handler_table")]
    static HT1K: ht::HandlerTable<1_024> = ht::HandlerTable::new();
    #[cfg(feature = "handler_table")]
    static HT64K: ht::HandlerTable<65_536> = ht::HandlerTable::new();
    #[cfg(feature = "handler_table")]
    static HT1M: ht::HandlerTable<1_048_576> = ht::HandlerTable::new();
    #[cfg(feature = "handler_table")]
    {
        ht::fill(&HT16);
        ht::fill(&HT1K);
        ht::fill(&HT64K);
        ht::fill(&HT1M);
    }
    let mut g = c.benchmark_group("lookup");
    for n in [16u32, 1_024, 65_536, 1_048_576] {
        let core = new_core(irqcore::store::MAX_CAPACITY);
        core.alloc_descs(IrqNumber(0), n).expect("descriptors");
        if n == 16 {
            println!(
                "BYTES irqcore_descriptor {} ({} CPUs)",
                core.bytes_per_descriptor(),
                NR_CPUS
            );
        }
        // The interrupts a machine actually takes: a hot set of 64 numbers
        // spread evenly over the space.
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
        // Uniformly random numbers: bounded by cache and TLB misses when
        // the table outgrows the caches.
        let mut x = 12345u32;
        g.bench_function(format!("irqcore_random/{n}"), |b| {
            b.iter(|| core.is_allocated(black_box(IrqNumber(lcg(&mut x) % n))))
        });
        drop(core);

        let naive = MutexRegistry::with_numbers(n);
        g.bench_function(format!("mutex_btreemap_random/{n}"), |b| {
            b.iter(|| naive.contains(black_box(lcg(&mut x) % n)))
        });
        drop(naive);

        // Neither peer has a lookup-only call: their number -> handler path
        // is dispatch, so these include a call to the no-op handler.
        // irq-framework keeps its descriptors in a Vec searched linearly:
        // registering n lines costs O(n^2), so 1,048,576 is left out.
        #[cfg(feature = "irq-framework")]
        if n <= 65_536 {
            let reg = irqf::IrqfRegistry::new(irqf::IrqfOps);
            for k in 0..n {
                irqf::register(&reg, k, 1, 0);
            }
            g.bench_function(format!("irq_framework_random/{n}"), |b| {
                b.iter(|| irqf::dispatch(&reg, black_box(lcg(&mut x) % n)))
            });
        }
        #[cfg(feature = "handler_table")]
        {
            let handle = |k: u32| match n {
                16 => HT16.handle(k as usize),
                1_024 => HT1K.handle(k as usize),
                65_536 => HT64K.handle(k as usize),
                _ => HT1M.handle(k as usize),
            };
            g.bench_function(format!("handler_table_random/{n}"), |b| {
                b.iter(|| handle(black_box(lcg(&mut x) % n)))
            });
        }
    }
    g.finish();
}

/// Allocating and freeing one interrupt number among 1,024 in use.
fn alloc_free(c: &mut Criterion) {
    set_current_cpu(0);
    let mut g = c.benchmark_group("alloc_free");
    let core = new_core(65_536);
    core.alloc_descs(IrqNumber(0), 1_024).expect("descriptors");
    g.bench_function("irqcore", |b| {
        b.iter(|| {
            let irq = core.alloc_descs(IrqNumber(0), 1).expect("alloc");
            core.free_descs(black_box(irq), 1).expect("free");
        })
    });
    let naive = MutexRegistry::with_numbers(1_024);
    g.bench_function("mutex_btreemap", |b| b.iter(|| naive.alloc_free()));
    // irq-framework allocates its descriptor state at request time: the
    // closest equivalent is requesting and freeing a handler on a new line.
    #[cfg(feature = "irq-framework")]
    {
        let reg = irqf::IrqfRegistry::new(irqf::IrqfOps);
        for k in 0..1_024 {
            irqf::register(&reg, k, 1, 0);
        }
        g.bench_function("irq_framework", |b| {
            b.iter(|| {
                let h = irqf::register(&reg, black_box(5_000), 1, 0);
                reg.free(h[0]).expect("free");
            })
        });
    }
    // handler_table has a fixed table: registering and unregistering a slot.
    #[cfg(feature = "handler_table")]
    {
        static TABLE: ht::HandlerTable<2_048> = ht::HandlerTable::new();
        for k in 0..1_024 {
            TABLE.register_handler(k, SLOT_HANDLERS[0]);
        }
        g.bench_function("handler_table", |b| {
            b.iter(|| {
                TABLE.register_handler(black_box(1_500), SLOT_HANDLERS[0]);
                TABLE.unregister_handler(black_box(1_500))
            })
        });
    }
    g.finish();
}

struct NopDomain(Arc<dyn IrqChip>);
impl DomainOps for NopDomain {
    fn alloc(&self, req: &AllocRequest) -> Result<LevelAlloc, IrqError> {
        let mut l = LevelAlloc::new(self.0.clone(), FlowKind::FastEoi);
        l.parent_hwirq = HwIrq(u64::from(req.irq.0));
        Ok(l)
    }
}

/// Creating and dropping a hwirq -> irq mapping (domain layer).
fn map_unmap(c: &mut Criterion) {
    set_current_cpu(0);
    println!(
        "BYTES mapping_record {}",
        core::mem::size_of::<MappingRecord>()
    );
    println!(
        "BYTES linear_revmap_slot {}",
        core::mem::size_of::<Option<IrqNumber>>()
    );
    println!(
        "BYTES tree_revmap_entry {}",
        core::mem::size_of::<(u64, IrqNumber)>()
    );
    let core = new_core(8_192);
    let reg = DomainRegistry::new(&core);
    let chip: Arc<dyn IrqChip> = Arc::new(NopChip);
    let ops = || Arc::new(NopDomain(chip.clone()));
    let lin = reg
        .add_domain(
            DomainConfig::new("lin", DomainKind::Linear { size: 1024 }),
            ops(),
        )
        .expect("domain");
    let tree = reg
        .add_domain(DomainConfig::new("tree", DomainKind::Tree), ops())
        .expect("domain");
    let root = reg
        .add_domain(DomainConfig::new("root", DomainKind::Tree), ops())
        .expect("domain");
    let mid = reg
        .add_domain(
            DomainConfig::new("mid", DomainKind::Tree).with_parent(root),
            ops(),
        )
        .expect("domain");
    let top = reg
        .add_domain(
            DomainConfig::new("top", DomainKind::Linear { size: 64 }).with_parent(mid),
            ops(),
        )
        .expect("domain");
    // Background population so lookups are not in an empty map.
    let _bg: Vec<_> = (0..512u64)
        .flat_map(|h| {
            [
                reg.map(lin, HwIrq(h + 512)).expect("map"),
                reg.map(tree, HwIrq(h * 7919)).expect("map"),
            ]
        })
        .collect();
    let mut g = c.benchmark_group("map_unmap");
    g.bench_function("baseline_alloc_free_desc", |b| {
        b.iter(|| {
            let irq = core.alloc_descs(IrqNumber(1), 1).expect("alloc");
            core.free_descs(black_box(irq), 1).expect("free");
        })
    });
    g.bench_function("irqcore_linear", |b| {
        b.iter(|| drop(reg.map(lin, black_box(HwIrq(7))).expect("map")))
    });
    g.bench_function("irqcore_tree", |b| {
        b.iter(|| drop(reg.map(tree, black_box(HwIrq(5))).expect("map")))
    });
    g.bench_function("irqcore_hierarchy3", |b| {
        b.iter(|| drop(reg.map(top, black_box(HwIrq(3))).expect("map")))
    });
    let held = reg.map(lin, HwIrq(9)).expect("map");
    g.bench_function("irqcore_existing_ref", |b| {
        b.iter(|| drop(reg.map(lin, black_box(HwIrq(9))).expect("map")))
    });
    g.finish();
    drop(held);
}

/// Stop-machine latency on the simulator (threads play CPUs): from the
/// call until every CPU has left, with a no-op function on CPU 0. Next to
/// it, the simulator's own cost of running empty work on every CPU.
fn stop_machine(c: &mut Criterion) {
    let mut g = c.benchmark_group("stop_machine");
    for n in [2usize, 4, 8, 16] {
        let machine = SimMachine::new(n);
        let p = machine.platform();
        let sm = StopMachine::new();
        let online = p.online_mask();
        let active = CpuMask::of(CpuId::BOOT);
        g.bench_with_input(BenchmarkId::new("irqcore", n), &n, |b, _| {
            b.iter(|| {
                sm.stop_machine(&p, &online, &active, &|cpu| black_box(cpu))
                    .expect("stop_machine")
            })
        });
        g.bench_with_input(BenchmarkId::new("baseline_run_on_cpus", n), &n, |b, _| {
            b.iter(|| {
                p.run_on_cpus(&online, &|cpu| {
                    black_box(cpu);
                })
            })
        });
        drop(machine);
    }
    g.finish();
}

/// A 2-level layer whose vCPU 0 has every port bound and `pending` ports
/// pending and unmasked, spread evenly over the port space.
fn upcall_setup(pending: u32) -> (&'static SharedInfo, TwoLevel) {
    let shared: &'static SharedInfo = Box::leak(Box::new(SharedInfo::new_zeroed()));
    let layer = TwoLevel::new(shared, 1).expect("one vCPU");
    for p in 0..EVTCHN_2L_NR_CHANNELS {
        layer.bind_to_vcpu(Port(p), None, VcpuId(0));
    }
    let stride = EVTCHN_2L_NR_CHANNELS / pending;
    for i in 0..pending {
        layer.set_pending(Port(i * stride));
    }
    (shared, layer)
}

/// Sets the selector bit of every word holding a pending port (what Xen
/// does before the upcall); the scan consumes them.
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

/// Xen upcall scan: the 2-level selector scan against testing every port.
fn upcall(c: &mut Criterion) {
    let mut g = c.benchmark_group("upcall_scan");
    for pending in [1u32, 64, 4096] {
        let (shared, layer) = upcall_setup(pending);
        g.throughput(Throughput::Elements(u64::from(pending)));
        g.bench_with_input(
            BenchmarkId::new("xen_evtchn", pending),
            &pending,
            |b, &n| {
                b.iter(|| {
                    raise_selector(shared);
                    let mut handled = 0u32;
                    layer.scan(VcpuId(0), &mut |p| {
                        black_box(p);
                        handled += 1;
                    });
                    assert_eq!(handled, n);
                })
            },
        );
        g.bench_with_input(
            BenchmarkId::new("baseline_every_port", pending),
            &pending,
            |b, &n| {
                b.iter(|| {
                    let mut handled = 0u32;
                    for p in 0..EVTCHN_2L_NR_CHANNELS {
                        let port = Port(p);
                        let (w, bit) = (port.word(), 1u64 << port.bit());
                        if shared.evtchn_pending[w].load(Ordering::Acquire) & bit != 0
                            && shared.evtchn_mask[w].load(Ordering::Acquire) & bit == 0
                            && layer.is_deliverable(port, VcpuId(0))
                        {
                            black_box(port);
                            handled += 1;
                        }
                    }
                    assert_eq!(handled, n);
                })
            },
        );
    }
    g.finish();
}

/// A FIFO layer whose vCPU 0 control block is registered (with the
/// hypervisor model) and whose event array covers ports 1..=4096, and the
/// `pending` ports (spread evenly over 1..=4096) an upcall will find.
fn upcall_fifo_setup(pending: u32) -> (Fifo, Vec<Port>) {
    let model = HypervisorModel::new();
    let dom = model.create_domain(DomId(1), 1).expect("a domain");
    let info = dom.shared_info().legacy_vcpu(0).expect("vcpu_info 0");
    let fifo = Fifo::new(vec![info]).expect("control page");
    fifo.prepare_vcpu(VcpuId(0), &dom).expect("init_control");
    fifo.setup_port(Port(EVTCHN_2L_NR_CHANNELS), &dom)
        .expect("expand_array");
    let stride = EVTCHN_2L_NR_CHANNELS / pending;
    let ports = (0..pending).map(|i| Port(1 + i * stride)).collect();
    (fifo, ports)
}

/// Links `ports` into vCPU 0's default-priority queue, pending and
/// unmasked, and sets the queue's ready bit: what Xen leaves for an upcall.
fn fifo_raise(fifo: &Fifo, ports: &[Port]) {
    for (i, p) in ports.iter().enumerate() {
        let next = ports.get(i + 1).map_or(0, |n| n.0);
        if let Some(w) = fifo.word(*p) {
            w.store(PENDING | LINKED | next, Ordering::Relaxed);
        }
    }
    let cb = fifo.control_block(VcpuId(0)).expect("control block");
    let q = PRIORITY_DEFAULT as usize;
    cb.head[q].store(ports[0].0, Ordering::Relaxed);
    cb.ready.store(1 << q, Ordering::Release);
}

/// Xen upcall, FIFO ABI: consuming `n` queued events, next to the 2-level
/// scan of as many pending ports (rows `xen_evtchn_fifo/n`).
fn upcall_fifo(c: &mut Criterion) {
    let mut g = c.benchmark_group("upcall_scan");
    for pending in [1u32, 64, 4096] {
        let (fifo, ports) = upcall_fifo_setup(pending);
        g.throughput(Throughput::Elements(u64::from(pending)));
        g.bench_with_input(
            BenchmarkId::new("xen_evtchn_fifo", pending),
            &pending,
            |b, &n| {
                // Each run needs Xen's queue rebuilt first (consuming
                // unlinks it): only the consume is timed, one clock read
                // pair per run (a few tens of ns included in the 1-event
                // row).
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        fifo_raise(&fifo, &ports);
                        let t = Instant::now();
                        let mut handled = 0u32;
                        // A scan takes at most SCAN_BUDGET events and
                        // asks for another upcall pass for the rest.
                        while handled < n {
                            fifo.scan(VcpuId(0), &mut |p| {
                                black_box(p);
                                handled += 1;
                            });
                        }
                        total += t.elapsed();
                        assert_eq!(handled, n);
                    }
                    total
                })
            },
        );
    }
    g.finish();
}

/// Runs `per_thread(thread)` on `threads` threads, each playing CPU
/// `thread`, started together; returns the wall time of the slowest.
/// Each thread does `iters` dispatches, so perfect scaling keeps the time
/// per iteration flat as threads are added.
fn run_threads(threads: usize, iters: u64, per_thread: &(dyn Fn(usize, u64) + Sync)) -> Duration {
    let start = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let start = &start;
                s.spawn(move || {
                    set_current_cpu(t as u32);
                    start.wait();
                    per_thread(t, iters);
                })
            })
            .collect();
        start.wait();
        let t0 = Instant::now();
        for h in hs {
            h.join().expect("bench thread");
        }
        t0.elapsed()
    })
}

/// Concurrent dispatch of different interrupts, one per thread (thread t
/// dispatches number 32 + t on CPU t): how each design scales.
fn concurrent(c: &mut Criterion) {
    let mut g = c.benchmark_group("concurrent");
    let core = new_core(1024);
    let lines: Vec<IrqNumber> = (0..4)
        .map(|t| setup_irqcore_line(&core, 32, FlowKind::Edge, 1, t))
        .collect();
    let naive = MutexRegistry::new();
    for t in 0..4u32 {
        naive.register(32 + t, Box::new(move |_| hit(t as usize)));
    }
    #[cfg(feature = "irq-framework")]
    let reg = irqf::IrqfRegistry::new(irqf::IrqfOps);
    #[cfg(feature = "irq-framework")]
    for t in 0..4u32 {
        irqf::register(&reg, 32 + t, 1, t as usize);
    }
    #[cfg(feature = "handler_table")]
    static TABLE: ht::HandlerTable<256> = ht::HandlerTable::new();
    #[cfg(feature = "handler_table")]
    ht::fill(&TABLE);
    for threads in [1usize, 2, 4] {
        g.throughput(Throughput::Elements(threads as u64));
        g.bench_with_input(BenchmarkId::new("irqcore", threads), &threads, |b, &n| {
            b.iter_custom(|iters| {
                run_threads(n, iters, &|t, k| {
                    for _ in 0..k {
                        let _ = core.handle_irq(black_box(lines[t]));
                    }
                })
            })
        });
        g.bench_with_input(BenchmarkId::new("fn_table", threads), &threads, |b, &n| {
            b.iter_custom(|iters| {
                run_threads(n, iters, &|t, k| {
                    for _ in 0..k {
                        fn_table_dispatch(black_box(32 + t as u32));
                    }
                })
            })
        });
        g.bench_with_input(
            BenchmarkId::new("mutex_btreemap", threads),
            &threads,
            |b, &n| {
                b.iter_custom(|iters| {
                    run_threads(n, iters, &|t, k| {
                        for _ in 0..k {
                            naive.dispatch(black_box(32 + t as u32));
                        }
                    })
                })
            },
        );
        #[cfg(feature = "irq-framework")]
        g.bench_with_input(
            BenchmarkId::new("irq_framework", threads),
            &threads,
            |b, &n| {
                b.iter_custom(|iters| {
                    run_threads(n, iters, &|t, k| {
                        for _ in 0..k {
                            irqf::dispatch(&reg, black_box(32 + t as u32));
                        }
                    })
                })
            },
        );
        #[cfg(feature = "handler_table")]
        g.bench_with_input(
            BenchmarkId::new("handler_table", threads),
            &threads,
            |b, &n| {
                b.iter_custom(|iters| {
                    run_threads(n, iters, &|t, k| {
                        for _ in 0..k {
                            TABLE.handle(black_box(32 + t));
                        }
                    })
                })
            },
        );
    }
    g.finish();
}

/// Prints the environment facts the report needs.
fn facts(_c: &mut Criterion) {
    println!(
        "PEER irq-framework {}",
        if cfg!(feature = "irq-framework") {
            "built"
        } else {
            "disabled"
        }
    );
    println!(
        "PEER handler_table {}",
        if cfg!(feature = "handler_table") {
            "built"
        } else {
            "disabled"
        }
    );
}

criterion_group!(
    benches,
    facts,
    dispatch,
    lookup,
    alloc_free,
    map_unmap,
    stop_machine,
    upcall,
    upcall_fifo,
    concurrent
);
criterion_main!(benches);
