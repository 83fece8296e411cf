//! Driver behaviour below the irqcore layer: discovery, bad input, the
//! GICv2 SGI source protocol, and the model's own checks.

mod common;

use arch_arm64::model::{self, GicModel, default_mpidr};
use arch_arm64::regs::{GicdCtlr, IccReg, TypedMmio, gicc, gicd, gicr};
use arch_arm64::{GicError, GicOptions, GicSysRegs, GicV2, GicV3, IntId, Mmio, SgiTarget};
use irqcore::{CpuId, CpuMask, HwIrq, IrqError, TriggerType};

const C0: CpuId = CpuId::BOOT;

#[test]
fn gicv3_discovers_one_redistributor_per_cpu_by_affinity() {
    let (_m, gic) = common::v3(6, false);
    let rd = gic.redistributors();
    assert_eq!(rd.len(), 6);
    for (i, r) in rd.iter().enumerate() {
        assert_eq!(r.offset, i * gicr::STRIDE);
        assert_eq!(
            u64::from(r.affinity),
            default_mpidr(i),
            "packed = MPIDR for Aff3 = 0"
        );
    }
    assert_eq!(gic.num_lines(), common::LINES);
}

#[test]
fn gicv3_discovery_stops_at_the_last_bit_and_region_end() {
    // A region with room for more frames than redistributors: the Last bit
    // ends the walk, so nothing is read past it.
    struct Bigger(arch_arm64::model::ModelMmio);
    impl Mmio for Bigger {
        fn size(&self) -> usize {
            self.0.size() * 2
        }
        fn read32(&self, off: usize) -> u32 {
            assert!(
                off < self.0.size(),
                "read past the last redistributor: {off:#x}"
            );
            self.0.read32(off)
        }
        fn write32(&self, off: usize, v: u32) {
            self.0.write32(off, v)
        }
    }
    let m = GicModel::new_v3(2, 64);
    let dist = m.distributor();
    let g = GicV3::new(
        Bigger(dist),
        vec![Bigger(m.redistributors())],
        m.sysregs(),
        GicOptions::default(),
    )
    .unwrap();
    assert_eq!(g.redistributors().len(), 2);
}

#[test]
fn cpu_starting_refuses_bad_cpus_and_double_claims() {
    let (m, gic) = common::v3(2, false);
    model::set_current_cpu(C0);
    gic.init_distributor().unwrap();
    assert_eq!(
        gic.cpu_starting(CpuId::of::<9>()),
        Err(GicError::BadCpu(CpuId::of::<9>()))
    );
    gic.cpu_starting(C0).unwrap();
    // CPU 1 claiming CPU 0's redistributor (called on the wrong CPU).
    assert_eq!(
        gic.cpu_starting(CpuId::of::<1>()),
        Err(GicError::AlreadyClaimed(CpuId::of::<1>()))
    );
    assert!(m.redistributor_asleep(CpuId::of::<1>()), "state unchanged");
    // A dying CPU that never started.
    model::set_current_cpu(CpuId::of::<1>());
    assert_eq!(
        gic.cpu_dying(CpuId::of::<1>()),
        Err(GicError::BadCpu(CpuId::of::<1>()))
    );
    // The only online CPU cannot die: nowhere to move its SPIs.
    model::set_current_cpu(C0);
    assert_eq!(gic.cpu_dying(C0), Err(GicError::NoTargetCpu));
    assert!(!m.redistributor_asleep(C0), "state unchanged");
    assert!(m.cpu_interface_enabled(C0));
    assert_eq!(IrqError::from(GicError::NoTargetCpu), IrqError::NoOnlineCpu);
}

#[test]
fn gicv3_cpu_interface_setup() {
    for split in [false, true] {
        let (m, gic) = common::v3(1, split);
        model::set_current_cpu(C0);
        gic.init_distributor().unwrap();
        gic.cpu_starting(C0).unwrap();
        let regs = m.sysregs();
        assert_eq!(regs.read(IccReg::Sre) & 1, 1);
        assert_eq!(regs.read(IccReg::Pmr), 0xf0);
        assert_eq!(regs.read(IccReg::Igrpen1), 1);
        assert_eq!(regs.read(IccReg::Ctlr) & 2 != 0, split);
        // Everything is group 1, routed with affinity routing on.
        let d = m.distributor();
        assert_eq!(
            d.load(gicd::CTLR) & (GicdCtlr::ARE | GicdCtlr::ENABLE_G1),
            GicdCtlr::ARE | GicdCtlr::ENABLE_G1
        );
        assert!(m.state(C0, 40).group1 && m.state(C0, 20).group1);
        assert_eq!(m.spi_router(40), default_mpidr(0));
        assert_eq!(m.violations(), Vec::<String>::new());
    }
}

#[test]
fn gicv2_split_eoi_needs_the_dir_page() {
    struct Small(arch_arm64::model::ModelMmio);
    impl Mmio for Small {
        fn size(&self) -> usize {
            0x1000
        }
        fn read32(&self, off: usize) -> u32 {
            self.0.read32(off)
        }
        fn write32(&self, off: usize, v: u32) {
            self.0.write32(off, v)
        }
    }
    let m = GicModel::new_v2(1, 64);
    let opts = GicOptions {
        split_eoi: true,
        ..GicOptions::default()
    };
    let r = GicV2::new(Small(m.distributor()), Small(m.cpu_interface()), opts);
    assert_eq!(r.err(), Some(GicError::BadLayout));
}

#[test]
fn gicv2_sgi_eoi_carries_the_source_cpu() {
    // IAR reports the sender in bits 12:10 and the EOI must echo it; the
    // loop completes SGIs itself, the flow's eoi does nothing for them.
    for split in [false, true] {
        let (m, gic) = common::v2(4, split);
        for c in 0..4 {
            model::set_current_cpu(CpuId::new(c).unwrap());
            if c == 0 {
                gic.init_distributor().unwrap();
            }
            gic.cpu_starting(CpuId::new(c).unwrap()).unwrap();
        }
        model::set_current_cpu(CpuId::of::<3>());
        gic.send_sgi(
            IntId::sgi(5).unwrap(),
            SgiTarget::Cpus(&CpuMask::of(CpuId::of::<1>())),
        )
        .unwrap();
        model::set_current_cpu(CpuId::of::<1>());
        let mut seen = Vec::new();
        let n = gic.handle_pending(|id| {
            seen.push(id.get());
            true // the flow "ran"; its eoi is a no-op for SGIs
        });
        assert_eq!((n, seen), (1, vec![5]));
        assert!(!m.state(CpuId::of::<1>(), 5).active, "split={split}");
        assert_eq!(m.running_priority(CpuId::of::<1>()), 0xff);
        assert_eq!(m.violations(), Vec::<String>::new());
        model::set_current_cpu(C0);
    }
}

#[test]
fn translate_checks_the_gic_size() {
    let (_m, gic) = common::v2(1, false);
    assert_eq!(
        gic.translate(&[0, 10, 4]),
        Ok((HwIrq(42), TriggerType::LevelHigh))
    );
    assert_eq!(
        gic.translate(&[0, 96, 4]),
        Err(IrqError::BadHwIrq(HwIrq(128)))
    );
    let (_m, gic) = common::v3(1, false);
    assert_eq!(
        gic.translate(&[1, 11, 4]),
        Ok((HwIrq(27), TriggerType::LevelHigh))
    );
}

#[test]
fn model_flags_out_of_order_eoi_and_dir_without_split_mode() {
    let (m, gic) = common::v2(1, false);
    model::set_current_cpu(C0);
    gic.init_distributor().unwrap();
    gic.cpu_starting(C0).unwrap();
    let d = m.distributor();
    let c = m.cpu_interface();
    gic.set_priority(IntId::new(40).unwrap(), 0x80);
    gic.set_priority(IntId::new(41).unwrap(), 0x40);
    d.write32(gicd::ISENABLER.word_at(1), 0b11 << 8);
    d.write32(gicd::ISPENDR.word_at(1), 1 << 8);
    assert_eq!(c.read32(gicc::IAR), 40);
    // 41 preempts 40 (higher priority than the running 0x80).
    d.write32(gicd::ISPENDR.word_at(1), 1 << 9);
    assert_eq!(c.read32(gicc::RPR), 0x80);
    assert_eq!(c.read32(gicc::IAR), 41);
    assert_eq!(c.read32(gicc::IAR), 1023, "nothing else");
    c.write32(gicc::EOIR, 40); // wrong order
    assert_eq!(m.violations().len(), 1);
    c.write32(gicc::DIR, 41); // EOImode is 0
    assert_eq!(m.violations().len(), 2);
    c.write32(gicc::EOIR, 41);
    c.write32(gicc::EOIR, 1023); // spurious: ignored
    assert_eq!(m.violations().len(), 2);
    assert_eq!(c.read32(gicc::RPR), 0xff);
}

#[test]
fn model_requires_sre_before_icc_access() {
    let m = GicModel::new_v3(1, 64);
    model::set_current_cpu(C0);
    let regs = m.sysregs();
    let _ = regs.read(IccReg::Iar1);
    assert_eq!(m.violations().len(), 1);
    regs.write(IccReg::Sre, 1);
    assert_eq!(regs.read(IccReg::Iar1), 1023);
    assert_eq!(m.violations().len(), 1);
}

#[test]
fn v3_mpidr_reads_ignore_res1_bit() {
    let (_m, gic) = common::v3(5, false);
    model::set_current_cpu(CpuId::of::<4>());
    gic.cpu_starting(CpuId::of::<4>()).unwrap();
    assert_eq!(gic.cpu_affinity(CpuId::of::<4>()), Some(0x100));
    assert_eq!(gic.current_cpu(), Some(CpuId::of::<4>()));
    model::set_current_cpu(C0);
}

#[test]
fn uniprocessor_gicv2_has_no_cpu_targets() {
    // QEMU virt with one CPU: ITARGETSR is RAZ/WI, the interface is CPU 0.
    let rig = common::Rig::boot(common::Version::V2, 1, false);
    let (irq, count) = rig.request(45, TriggerType::EdgeRising, |_| {});
    assert_eq!(rig.model.spi_targets(45), 0);
    rig.core.set_affinity(irq, &CpuMask::of(C0)).unwrap();
    rig.model.pulse(C0, 45);
    assert_eq!(rig.irq_entry(0), 1);
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1);
    rig.gic
        .send_sgi(IntId::sgi(2).unwrap(), SgiTarget::Cpus(&CpuMask::of(C0)))
        .unwrap();
    assert_eq!(rig.irq_entry(0), 1, "SGI to itself");
    rig.assert_clean();
}
