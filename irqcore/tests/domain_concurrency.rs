//! Concurrency: lookups from interrupt handlers while another CPU tears
//! mappings down (which waits for a grace period), and get-or-create /
//! release races on one hwirq from several CPUs.
mod common;
mod domain_common;
use common::*;
use domain_common::*;
use irqcore::domain::SpecFormat;
use irqcore::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

type Reg = DomainRegistry<'static, TestPlatform>;

fn leaked(ncpus: u32) -> (&'static Core, &'static Reg, DomainId, Arc<TestDomain>) {
    let core: &'static Core = Box::leak(Box::new(
        Arc::try_unwrap(core_with_cpus(ncpus)).ok().unwrap(),
    ));
    let reg: &'static Reg = Box::leak(Box::new(DomainRegistry::new(core)));
    let j = Journal::default();
    let ops = TestDomain::with(
        "d",
        &j,
        RecordingChip::new(),
        FlowKind::Edge,
        SpecFormat::TwoCell,
        ParentHwirq::Irq,
    );
    let d = reg
        .add_domain(DomainConfig::new("d", DomainKind::Tree), ops.clone())
        .unwrap();
    (core, reg, d, ops)
}

/// Runs `f` on another thread and fails the test if it has not finished
/// after `secs` (a deadlock would otherwise hang the test run).
fn within(secs: u64, f: impl FnOnce() + Send + 'static) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .expect("deadlock: did not finish in time");
}

/// A chained handler on CPU 1 translates hwirqs with `find_mapping` inside
/// the dispatcher's read-side section, while CPU 0 keeps creating and
/// destroying mappings, each teardown waiting for a grace period that
/// needs CPU 1 to leave that section. A registry that held its lock across
/// the teardown would deadlock here.
#[test]
fn find_mapping_from_a_handler_never_blocks_a_teardown() {
    let (core, reg, d, _ops) = leaked(2);
    within(60, move || {
        set_cpu(0);
        let parent = reg.map(d, HwIrq(1)).unwrap();
        let parent_irq = parent.irq();
        let child = reg.map(d, HwIrq(2)).unwrap();
        let child_irq = child.irq();
        let lookups = Arc::new(AtomicU64::new(0));
        let l2 = lookups.clone();
        let h: Arc<dyn IrqHandler> = Arc::new(move |_| {
            // The demultiplexer: translate, as a GPIO or MSI parent would.
            assert_eq!(reg.find_mapping(d, HwIrq(2)), Some(child_irq));
            l2.fetch_add(1, Ordering::SeqCst);
            IrqReturn::HANDLED
        });
        let _r = parent.request_irq(IrqRequest::new("chained", h)).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let cpu1 = std::thread::spawn(move || {
            set_cpu(1);
            while !s2.load(Ordering::SeqCst) {
                core.handle_irq(parent_irq).unwrap();
            }
        });
        set_cpu(0);
        // Handshake: tear down only once CPU 1 is dispatching (it has done a
        // lookup), or on a busy machine the whole loop can run before that
        // thread is first scheduled and nothing is tested. A CPU 1 that
        // died (a failed lookup) ends the wait too: join reports it.
        while lookups.load(Ordering::SeqCst) == 0 && !cpu1.is_finished() {
            std::thread::yield_now();
        }
        for i in 0..2000u64 {
            let m = reg.map(d, HwIrq(100 + i % 7)).unwrap();
            drop(m);
        }
        stop.store(true, Ordering::SeqCst);
        cpu1.join().unwrap();
        assert!(lookups.load(Ordering::SeqCst) > 0);
        drop(_r);
        drop(child);
    });
}

/// Four CPUs map and release the same hwirq (handles and raw pairs) in a
/// loop: every map of a live mapping returns its irq, and when all are
/// done nothing is left.
#[test]
fn racing_get_or_create_and_release_on_one_hwirq_balance() {
    let (core, reg, d, ops) = leaked(4);
    within(60, move || {
        let threads: Vec<_> = (0..4u32)
            .map(|cpu| {
                std::thread::spawn(move || {
                    set_cpu(cpu);
                    for i in 0..500 {
                        if (i + cpu) % 2 == 0 {
                            let a = reg.map(d, HwIrq(5)).unwrap();
                            let b = reg.map(d, HwIrq(5)).unwrap();
                            assert_eq!(a.irq(), b.irq(), "two live references, two irqs");
                            assert!(core.is_allocated(a.irq()));
                        } else {
                            let irq = reg.create_mapping(d, HwIrq(5)).unwrap();
                            assert_eq!(reg.find_mapping(d, HwIrq(5)), Some(irq));
                            reg.dispose_mapping(irq).unwrap();
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        set_cpu(0);
        assert_eq!(reg.nr_mappings(), 0);
        assert_eq!(core.nr_descs(), 0);
        assert_eq!(ops.live(), 0);
    });
}
