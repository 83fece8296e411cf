//! Threads play CPUs: every CPU sends IPIs (SGIs) to the others while taking
//! its own interrupts, and CPU 0 keeps moving an edge SPI that a device
//! thread keeps raising. Both use the mailbox protocol kernels use (post
//! work, then raise the interrupt; the handler drains the mailbox), so
//! coalesced interrupts are fine but a lost one leaves work behind.

mod common;

use arch_arm64::model;
use arch_arm64::{IntId, SgiTarget};
use common::{Rig, Version, both};
use irqcore::{CpuId, CpuMask, TriggerType};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const NCPUS: usize = 4;
const ROUNDS: u64 = 150;

#[test]
fn ipis_and_a_moving_spi_are_never_lost() {
    for (v, split) in both() {
        run(v, split);
    }
}

fn run(v: Version, split: bool) {
    let rig = Arc::new(Rig::boot(v, NCPUS, split));
    let mailbox: Arc<Vec<AtomicU64>> = Arc::new((0..NCPUS).map(|_| AtomicU64::new(0)).collect());
    let received = Arc::new(AtomicU64::new(0));
    let dev_posted = Arc::new(AtomicU64::new(0));
    let dev_seen = Arc::new(AtomicU64::new(0));

    let (ipi, _) = {
        let (mb, rx) = (mailbox.clone(), received.clone());
        rig.request(3, TriggerType::EdgeRising, move |_| {
            let me = model::current_cpu().index();
            rx.fetch_add(mb[me].swap(0, Ordering::AcqRel), Ordering::AcqRel);
        })
    };
    for c in 0..NCPUS {
        rig.on(c, || {
            rig.core.enable_percpu_irq(ipi, TriggerType::None).unwrap()
        });
    }
    let (spi, _) = {
        let (posted, seen) = (dev_posted.clone(), dev_seen.clone());
        rig.request(100, TriggerType::EdgeRising, move |_| {
            // Drain: everything posted so far is handled by this run.
            seen.store(posted.load(Ordering::Acquire), Ordering::Release);
        })
    };

    let sent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    std::thread::scope(|s| {
        // The device.
        {
            let (rig, posted, stop) = (rig.clone(), dev_posted.clone(), stop.clone());
            s.spawn(move || {
                model::set_current_cpu(CpuId::new(NCPUS as u32).unwrap()); // not a CPU: no banked access
                while !stop.load(Ordering::Acquire) {
                    posted.fetch_add(1, Ordering::AcqRel);
                    rig.model.pulse(CpuId::BOOT, 100);
                    std::thread::yield_now();
                }
            });
        }
        let cpus: Vec<_> = (0..NCPUS)
            .map(|c| {
                let (rig, mb, sent) = (rig.clone(), mailbox.clone(), sent.clone());
                s.spawn(move || {
                    model::set_current_cpu(CpuId::new(c as u32).unwrap());
                    let sgi = IntId::sgi(3).unwrap();
                    for i in 0..ROUNDS {
                        let to = (c + 1 + (i as usize % (NCPUS - 1))) % NCPUS;
                        mb[to].fetch_add(1, Ordering::AcqRel);
                        sent.fetch_add(1, Ordering::AcqRel);
                        let mask = CpuMask::of(CpuId::new(to as u32).unwrap());
                        rig.gic.send_sgi(sgi, SgiTarget::Cpus(&mask)).unwrap();
                        if c == 0 && i % 10 == 0 {
                            let target = CpuId::new(((i / 10) % NCPUS as u64) as u32).unwrap();
                            rig.core.set_affinity(spi, &CpuMask::of(target)).unwrap();
                        }
                        rig.irq_entry(c);
                    }
                })
            })
            .collect();
        for t in cpus {
            t.join().unwrap();
        }
        stop.store(true, Ordering::Release);
    });

    // Quiesce: every CPU takes what is still pending for it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for c in 0..NCPUS {
            rig.irq_entry(c);
        }
        let done = received.load(Ordering::Acquire) == sent.load(Ordering::Acquire)
            && dev_seen.load(Ordering::Acquire) == dev_posted.load(Ordering::Acquire);
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{v:?} split={split}: ipis {}/{}, device {}/{}",
            received.load(Ordering::Acquire),
            sent.load(Ordering::Acquire),
            dev_seen.load(Ordering::Acquire),
            dev_posted.load(Ordering::Acquire)
        );
    }
    assert_eq!(sent.load(Ordering::Acquire), NCPUS as u64 * ROUNDS);
    rig.assert_clean();
}
