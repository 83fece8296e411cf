//! Acceptance tests of issue 9, against the behavioural model, through
//! irqcore's descriptors and flows. Each runs for GICv2 and GICv3, in normal
//! and split EOI mode, unless it is specific to one version.

mod common;

use arch_arm64::model::{Event, default_mpidr};
use arch_arm64::{GicError, IntId, SgiTarget};
use common::{Rig, Version, both};
use irqcore::{CpuId, CpuMask, TriggerType};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

const C0: CpuId = CpuId::BOOT;

#[test]
fn spi_acknowledge_eoi_cycle_with_fasteoi_flow() {
    for (v, split) in both() {
        let rig = Rig::boot(v, 2, split);
        let model = rig.model.clone();
        // The device clears its line from the handler, as a driver would.
        let (irq, count) = rig.request(40, TriggerType::LevelHigh, move |_| {
            model.set_line(C0, 40, false)
        });
        assert!(!rig.model.state(C0, 40).edge, "{v:?}: configured level");
        assert!(rig.model.state(C0, 40).enabled, "{v:?}: startup unmasked");
        rig.model.take_events();

        rig.model.set_line(C0, 40, true);
        assert_eq!(rig.irq_entry(0), 1, "{v:?} split={split}");
        assert_eq!(count.load(Ordering::SeqCst), 1);
        assert_eq!(rig.core.irq_count(irq, C0), 1);
        let s = rig.model.state(C0, 40);
        assert!(!s.active && !s.pending(), "{v:?} split={split}: {s:?}");
        rig.assert_clean();
        // The acknowledge came first, the deactivation last; in split mode
        // the priority drop precedes the handler's deactivation.
        let ev: Vec<Event> = rig
            .model
            .take_events()
            .into_iter()
            .filter(|e| !matches!(e, Event::SpiEnabled(_)))
            .collect();
        assert_eq!(
            ev,
            vec![
                Event::Acked(C0, 40),
                Event::PriorityDropped(C0, 40),
                Event::Deactivated(C0, 40)
            ],
            "{v:?} split={split}"
        );
        assert_eq!(rig.model.split_eoi(C0), split);
    }
}

#[test]
fn unmapped_spi_is_completed_by_the_loop() {
    for (v, split) in both() {
        let rig = Rig::boot(v, 1, split);
        // Enabled in hardware but no descriptor: the loop must not leave it active.
        rig.on(0, || {
            use arch_arm64::Mmio;
            use arch_arm64::regs::gicd;
            rig.model
                .distributor()
                .write32(gicd::ISENABLER.word_at(1), 1 << 3);
            rig.model
                .distributor()
                .write32(gicd::ISPENDR.word_at(1), 1 << 3);
        });
        assert!(rig.model.state(C0, 35).pending());
        assert_eq!(rig.irq_entry(0), 1);
        assert!(!rig.model.state(C0, 35).active, "{v:?} split={split}");
        rig.assert_clean();
    }
}

#[test]
fn level_spi_stays_pending_while_asserted() {
    for (v, split) in both() {
        let rig = Rig::boot(v, 1, split);
        let model = rig.model.clone();
        let calls = Arc::new(AtomicU32::new(0));
        let c = calls.clone();
        // The device keeps its line up for two handler runs.
        let (_irq, count) = rig.request(41, TriggerType::LevelHigh, move |_| {
            if c.fetch_add(1, Ordering::SeqCst) == 2 {
                model.set_line(C0, 41, false);
            }
        });
        rig.model.set_line(C0, 41, true);
        assert_eq!(rig.irq_entry(0), 3, "{v:?} split={split}");
        assert_eq!(count.load(Ordering::SeqCst), 3);
        rig.assert_clean();
        // A level glitch that is gone before anyone looks is not latched.
        rig.model.pulse(C0, 41);
        assert_eq!(rig.irq_entry(0), 0);
    }
}

#[test]
fn edge_spi_latches_and_is_not_lost_while_active() {
    for (v, split) in both() {
        let rig = Rig::boot(v, 1, split);
        let model = rig.model.clone();
        let calls = Arc::new(AtomicU32::new(0));
        let c = calls.clone();
        // A second edge arrives while the first is being handled.
        let (_irq, count) = rig.request(42, TriggerType::EdgeRising, move |_| {
            if c.fetch_add(1, Ordering::SeqCst) == 0 {
                model.pulse(C0, 42);
            }
        });
        assert!(rig.model.state(C0, 42).edge, "{v:?}: configured edge");
        rig.model.pulse(C0, 42);
        assert_eq!(rig.irq_entry(0), 2, "{v:?} split={split}");
        assert_eq!(count.load(Ordering::SeqCst), 2);
        rig.assert_clean();
    }
}

#[test]
fn trigger_changes_reach_icfgr_and_bad_types_are_refused() {
    for (v, _) in both() {
        let rig = Rig::boot(v, 1, false);
        let irq = rig.attach(50, TriggerType::LevelHigh);
        assert!(!rig.model.state(C0, 50).edge);
        rig.core.set_trigger(irq, TriggerType::EdgeRising).unwrap();
        assert!(rig.model.state(C0, 50).edge, "{v:?}");
        // The GIC has no inverters: falling/low SPIs are refused, state kept.
        assert!(rig.core.set_trigger(irq, TriggerType::LevelLow).is_err());
        assert!(rig.core.set_trigger(irq, TriggerType::EdgeFalling).is_err());
        assert!(rig.model.state(C0, 50).edge, "{v:?}: unchanged");
    }
}

#[test]
fn priority_mask_holds_back_lower_priority_interrupts() {
    for (v, split) in both() {
        let rig = Rig::boot(v, 1, split);
        let model = rig.model.clone();
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        for (intid, prio) in [(60u32, 0x80u8), (61, 0x40)] {
            let m = model.clone();
            let o = order.clone();
            rig.request(intid, TriggerType::LevelHigh, move |_| {
                o.lock().unwrap().push(intid);
                m.set_line(C0, intid, false);
            });
            rig.gic.set_priority(IntId::new(intid).unwrap(), prio);
        }
        rig.gic.set_priority_mask(0x60);
        rig.model.set_line(C0, 60, true);
        rig.model.set_line(C0, 61, true);
        // Only the 0x40 interrupt passes a 0x60 mask.
        assert_eq!(rig.irq_entry(0), 1, "{v:?} split={split}");
        assert_eq!(*order.lock().unwrap(), vec![61]);
        assert!(
            rig.model.state(C0, 60).pending(),
            "held back, still pending"
        );
        rig.gic.set_priority_mask(0xf0);
        assert_eq!(rig.irq_entry(0), 1);
        assert_eq!(*order.lock().unwrap(), vec![61, 60]);
        // Both pending at once: the higher priority (lower value) goes first.
        order.lock().unwrap().clear();
        rig.model.set_line(C0, 60, true);
        rig.model.set_line(C0, 61, true);
        assert_eq!(rig.irq_entry(0), 2);
        assert_eq!(*order.lock().unwrap(), vec![61, 60]);
        rig.assert_clean();
    }
}

#[test]
fn running_priority_blocks_equal_priority_until_priority_drop() {
    // Inside a handler (before its EOI in normal mode) the running priority
    // is the handler's; in split mode it is already back to idle.
    for (v, split) in both() {
        let rig = Rig::boot(v, 1, split);
        let model = rig.model.clone();
        let seen = Arc::new(AtomicU32::new(0));
        let s = seen.clone();
        rig.request(62, TriggerType::LevelHigh, move |_| {
            s.store(u32::from(model.running_priority(C0)), Ordering::SeqCst);
            model.set_line(C0, 62, false);
        });
        rig.model.set_line(C0, 62, true);
        rig.irq_entry(0);
        let expect = if split { 0xff } else { 0xa0 };
        assert_eq!(seen.load(Ordering::SeqCst), expect, "{v:?} split={split}");
        rig.assert_clean();
    }
}

#[test]
fn gicv2_spi_routing_follows_itargetsr() {
    let rig = Rig::boot(Version::V2, 4, false);
    let (irq, _count) = rig.request(70, TriggerType::EdgeRising, |_| {});
    assert_eq!(rig.model.spi_targets(70), 0b0001, "boot CPU by default");
    rig.core
        .set_affinity(irq, &CpuMask::of(CpuId::of::<2>()))
        .unwrap();
    assert_eq!(rig.model.spi_targets(70), 0b0100);
    assert_eq!(
        rig.core.effective_affinity(irq).unwrap(),
        CpuMask::of(CpuId::of::<2>())
    );
    rig.model.pulse(C0, 70);
    assert_eq!(rig.irq_entry(0), 0, "not routed to cpu0");
    assert_eq!(rig.irq_entry(2), 1, "taken by cpu2");
    assert_eq!(rig.core.irq_count(irq, CpuId::of::<2>()), 1);
    // A mask with several CPUs: one target, the first online one.
    rig.core
        .set_affinity(
            irq,
            &CpuMask::from_cpus([CpuId::of::<1>(), CpuId::of::<3>()]),
        )
        .unwrap();
    assert_eq!(rig.model.spi_targets(70), 0b0010);
    rig.assert_clean();
}

#[test]
fn gicv3_spi_routing_follows_irouter() {
    let rig = Rig::boot(Version::V3, 6, false);
    let (irq, _count) = rig.request(71, TriggerType::EdgeRising, |_| {});
    assert_eq!(rig.model.spi_router(71), default_mpidr(0));
    // cpu5 is Aff1 = 1, Aff0 = 1: a second cluster.
    rig.core
        .set_affinity(irq, &CpuMask::of(CpuId::of::<5>()))
        .unwrap();
    assert_eq!(rig.model.spi_router(71), default_mpidr(5));
    assert_eq!(rig.model.spi_router(71), 0x101);
    assert_eq!(rig.model.spi_route_cpus(71), vec![CpuId::of::<5>()]);
    assert!(
        rig.model.state(C0, 71).enabled,
        "re-enabled after the re-route"
    );
    rig.model.pulse(C0, 71);
    assert_eq!(rig.irq_entry(0), 0);
    assert_eq!(rig.irq_entry(4), 0);
    assert_eq!(rig.irq_entry(5), 1);
    rig.assert_clean();
}

#[test]
fn sgi_to_one_cpu_and_to_all_others() {
    for (v, split) in both() {
        let n = if v == Version::V2 { 4 } else { 6 };
        let rig = Rig::boot(v, n, split);
        let (irq, _count) = rig.request(1, TriggerType::EdgeRising, |_| {});
        for c in 0..n {
            rig.on(c, || {
                rig.core.enable_percpu_irq(irq, TriggerType::None).unwrap()
            });
        }
        let sgi = IntId::sgi(1).unwrap();
        let counts = |rig: &Rig| -> Vec<u64> {
            (0..n)
                .map(|c| rig.core.irq_count(irq, CpuId::new(c as u32).unwrap()))
                .collect()
        };

        // From cpu0 to cpu2 only.
        rig.gic
            .send_sgi(sgi, SgiTarget::Cpus(&CpuMask::of(CpuId::of::<2>())))
            .unwrap();
        for c in 0..n {
            rig.irq_entry(c);
        }
        let mut want = vec![0u64; n];
        want[2] = 1;
        assert_eq!(counts(&rig), want, "{v:?} split={split}");

        // From cpu1 to all but itself.
        rig.on(1, || rig.gic.send_sgi(sgi, SgiTarget::AllButSelf))
            .unwrap();
        for c in 0..n {
            rig.irq_entry(c);
        }
        for (c, w) in want.iter_mut().enumerate() {
            if c != 1 {
                *w += 1;
            }
        }
        assert_eq!(counts(&rig), want, "{v:?} split={split}");

        // To self, and to a set spanning clusters (GICv3: two SGI1R writes).
        rig.on(3, || rig.gic.send_sgi(sgi, SgiTarget::ToSelf))
            .unwrap();
        let set = if v == Version::V2 {
            CpuMask::from_cpus([CpuId::BOOT, CpuId::of::<1>()])
        } else {
            CpuMask::from_cpus([CpuId::of::<1>(), CpuId::of::<4>(), CpuId::of::<5>()])
        };
        rig.gic.send_sgi(sgi, SgiTarget::Cpus(&set)).unwrap();
        for c in 0..n {
            rig.irq_entry(c);
        }
        want[3] += 1;
        for c in set.iter() {
            want[c.index()] += 1;
        }
        assert_eq!(counts(&rig), want, "{v:?} split={split}");
        rig.assert_clean();

        // Bad input: not an SGI, or a CPU the GIC does not know.
        assert_eq!(
            rig.gic
                .send_sgi(IntId::new(16).unwrap(), SgiTarget::AllButSelf),
            Err(GicError::NotSgi)
        );
        assert_eq!(
            rig.gic
                .send_sgi(sgi, SgiTarget::Cpus(&CpuMask::of(CpuId::of::<7>()))),
            Err(GicError::BadCpu(CpuId::of::<7>()))
        );
    }
}

#[test]
fn ppi_is_enabled_per_cpu() {
    for (v, split) in both() {
        let rig = Rig::boot(v, 2, split);
        let model = rig.model.clone();
        // The virtual timer PPI (INTID 27), level, cleared by the handler.
        let (irq, _count) = rig.request(27, TriggerType::LevelHigh, move |_| {
            model.set_line(arch_arm64::model::current_cpu(), 27, false)
        });
        assert!(
            !rig.model.state(C0, 27).enabled,
            "percpu_devid: not auto-enabled"
        );
        rig.on(1, || {
            rig.core
                .enable_percpu_irq(irq, TriggerType::LevelHigh)
                .unwrap()
        });
        assert!(!rig.model.state(C0, 27).enabled, "{v:?}: cpu0 untouched");
        assert!(
            rig.model.state(CpuId::of::<1>(), 27).enabled,
            "{v:?}: cpu1 enabled"
        );
        rig.model.set_line(C0, 27, true);
        rig.model.set_line(CpuId::of::<1>(), 27, true);
        assert_eq!(rig.irq_entry(0), 0, "{v:?}: disabled on cpu0");
        assert_eq!(rig.irq_entry(1), 1, "{v:?}: enabled on cpu1");
        assert_eq!(rig.core.irq_count(irq, CpuId::of::<1>()), 1);
        assert_eq!(rig.core.irq_count(irq, C0), 0);
        assert!(
            rig.model.state(C0, 27).pending(),
            "cpu0's timer still waits"
        );
        rig.on(1, || rig.core.disable_percpu_irq(irq).unwrap());
        assert!(!rig.model.state(CpuId::of::<1>(), 27).enabled);
        rig.assert_clean();
    }
}

#[test]
fn cpu_start_wakes_the_redistributor_before_enabling_its_ppis() {
    let (model, gic) = common::v3(2, false);
    let core = irqcore::IrqCore::new(common::ModelPlatform::default());
    arch_arm64::model::set_current_cpu(C0);
    gic.init_distributor().unwrap();
    gic.cpu_starting(C0).unwrap();
    let irq = core.alloc_descs(irqcore::IrqNumber(1), 1).unwrap();
    arch_arm64::attach(
        &core,
        irq,
        gic.clone(),
        IntId::ppi(14).unwrap(),
        TriggerType::None,
    )
    .unwrap();
    core.request_irq_raw(
        irq,
        irqcore::IrqRequest::new("timer", Arc::new(|_| irqcore::IrqReturn::HANDLED))
            .flags(irqcore::RequestFlags::PERCPU)
            .dev_id(irqcore::DevId(1)),
    )
    .unwrap();

    let cpu1 = CpuId::of::<1>();
    assert!(model.redistributor_asleep(cpu1));
    model.take_events();
    // Bring cpu1 up: the GIC's starting step, then the timer driver's.
    arch_arm64::model::set_current_cpu(cpu1);
    gic.cpu_starting(cpu1).unwrap();
    core.enable_percpu_irq(irq, TriggerType::LevelHigh).unwrap();
    arch_arm64::model::set_current_cpu(C0);

    let ev = model.events();
    let woke = ev
        .iter()
        .position(|e| *e == Event::RedistributorAwake(cpu1))
        .expect("redistributor woken");
    let first_enable = ev
        .iter()
        .position(|e| matches!(e, Event::PrivateEnabled(c, _) if *c == cpu1))
        .expect("something enabled");
    assert!(woke < first_enable, "{ev:?}");
    assert!(ev.contains(&Event::PrivateEnabled(cpu1, 30)), "{ev:?}");
    assert!(!model.redistributor_asleep(cpu1));
    assert!(model.cpu_interface_enabled(cpu1));
    assert_eq!(model.violations(), Vec::<String>::new());
}

#[test]
fn the_model_flags_ppi_enables_on_a_sleeping_redistributor() {
    // The check above can fail: enabling a PPI of a redistributor that was
    // not woken is recorded as a violation.
    use arch_arm64::Mmio;
    use arch_arm64::regs::gicr;
    let (model, _gic) = common::v3(2, false);
    let rd = model.redistributors();
    rd.write32(gicr::STRIDE + gicr::ISENABLER0, 1 << 30);
    assert_eq!(model.violations().len(), 1, "{:?}", model.violations());
    assert!(
        model
            .events()
            .contains(&Event::PrivateEnabled(CpuId::of::<1>(), 30))
    );
    assert!(
        !model
            .events()
            .iter()
            .any(|e| matches!(e, Event::RedistributorAwake(_)))
    );
}

#[test]
fn cpu_death_moves_its_spis() {
    for (v, split) in both() {
        let rig = Rig::boot(v, 3, split);
        let mut irqs = Vec::new();
        for (intid, cpu) in [(80u32, 2u32), (81, 2), (82, 1)] {
            let (irq, count) = rig.request(intid, TriggerType::EdgeRising, |_| {});
            rig.core
                .set_affinity(irq, &CpuMask::of(CpuId::new(cpu).unwrap()))
                .unwrap();
            irqs.push((intid, irq, count));
        }
        // A line without a descriptor, routed to cpu2 by hand.
        rig.on(2, || {
            use arch_arm64::Mmio;
            use arch_arm64::regs::gicd;
            let d = rig.model.distributor();
            if v == Version::V2 {
                d.write32(
                    gicd::ITARGETSR.word(arch_arm64::IntId::new(84).unwrap()),
                    0b100,
                );
            } else {
                d.write64(
                    gicd::IROUTER.word(arch_arm64::IntId::new(84).unwrap()),
                    default_mpidr(2),
                );
            }
        });
        assert_eq!(rig.model.spi_route_cpus(80), vec![CpuId::of::<2>()]);

        let moved = rig.on(2, || rig.gic.cpu_dying(CpuId::of::<2>())).unwrap();
        assert_eq!(moved, 3, "{v:?} split={split}: 80, 81 and 84");
        for intid in [80, 81, 84] {
            assert_eq!(
                rig.model.spi_route_cpus(intid),
                vec![C0],
                "{v:?} INTID {intid}"
            );
        }
        assert_eq!(
            rig.model.spi_route_cpus(82),
            vec![CpuId::of::<1>()],
            "untouched"
        );
        assert!(!rig.model.cpu_interface_enabled(CpuId::of::<2>()));
        if v == Version::V3 {
            assert!(
                rig.model.redistributor_asleep(CpuId::of::<2>()),
                "put to sleep"
            );
        }
        // Interrupts keep coming, now on cpu0.
        rig.model.pulse(C0, 80);
        assert_eq!(rig.irq_entry(2), 0);
        assert_eq!(rig.irq_entry(0), 1);
        assert_eq!(irqs[0].2.load(Ordering::SeqCst), 1);
        // Bad input: a CPU that is gone, a call from the wrong CPU.
        assert_eq!(
            rig.on(2, || rig.gic.cpu_dying(CpuId::of::<1>())),
            Err(GicError::WrongCpu(CpuId::of::<1>()))
        );
        // And it can come back.
        rig.on(2, || rig.gic.cpu_starting(CpuId::of::<2>()))
            .unwrap();
        assert!(rig.model.cpu_interface_enabled(CpuId::of::<2>()));
        rig.assert_clean();
    }
}
