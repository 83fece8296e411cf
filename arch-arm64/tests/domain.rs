//! The GIC domain: device-tree specifiers to irqs, flows per INTID class,
//! and dispatch through the domain's reverse map.

mod common;

use arch_arm64::model::{self, default_mpidr};
use common::{Rig, Version};
use irqcore::domain::{DomainError, DomainRegistry, FwSpec, SpecError};
use irqcore::{CpuId, FlowKind, HwIrq, IrqRequest, IrqReturn, TriggerType};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

#[test]
fn device_tree_specifiers_map_to_gic_irqs() {
    for v in [Version::V2, Version::V3] {
        let rig = Rig::boot(v, 2, false);
        let reg = DomainRegistry::new(&rig.core);
        let dom = arch_arm64::add_gic_domain(&reg, rig.gic.clone()).unwrap();

        // PL011 UART on QEMU virt: <0 1 4> = SPI 1, level high = INTID 33.
        let uart = reg
            .map_fwspec(dom, &FwSpec::new(&[0, 1, 4]).unwrap())
            .unwrap();
        assert_eq!(reg.find_mapping(dom, HwIrq(33)), Some(uart.irq()));
        let snap = rig.core.snapshot(uart.irq()).unwrap();
        assert_eq!(snap.flow, FlowKind::FastEoi, "{v:?}");
        assert!(
            !rig.model.state(CpuId::BOOT, 33).edge,
            "{v:?}: level programmed"
        );

        // Edge SPI: the ICFGR bit follows the specifier.
        let rtc = reg
            .map_fwspec(dom, &FwSpec::new(&[0, 2, 1]).unwrap())
            .unwrap();
        assert!(rig.model.state(CpuId::BOOT, 34).edge, "{v:?}");

        // Virtual timer PPI: <1 11 0xf04> (GICv2 style CPU mask) = INTID 27.
        let timer = reg
            .map_fwspec(dom, &FwSpec::new(&[1, 11, 0xf04]).unwrap())
            .unwrap();
        assert_eq!(
            rig.core.snapshot(timer.irq()).unwrap().flow,
            FlowKind::PerCpuDevId
        );

        // Mapping the same line again is the same irq (refcounted).
        let uart2 = reg
            .map_fwspec(dom, &FwSpec::new(&[0, 1, 4]).unwrap())
            .unwrap();
        assert_eq!(uart2.irq(), uart.irq());

        // Bad specifiers are typed errors and change nothing.
        let n = reg.nr_mappings();
        let bad = |c: &[u32]| reg.map_fwspec(dom, &FwSpec::new(c).unwrap()).err();
        assert_eq!(
            bad(&[2, 0, 4]),
            Some(DomainError::BadSpecifier(SpecError::BadType(2)))
        );
        // INTID 128 is beyond this GIC's 128 lines.
        assert_eq!(
            bad(&[0, 96, 4]),
            Some(DomainError::BadSpecifier(SpecError::NumberOutOfRange(96)))
        );
        assert_eq!(
            bad(&[0, 3, 8]),
            Some(DomainError::BadSpecifier(SpecError::BadFlags(8)))
        );
        assert_eq!(
            bad(&[0, 3]),
            Some(DomainError::BadSpecifier(SpecError::CellCount {
                expected: 3,
                got: 2
            }))
        );
        assert_eq!(reg.nr_mappings(), n);
        drop((uart, uart2, rtc, timer));
    }
}

#[test]
fn dispatch_through_the_domain_reverse_map() {
    let rig = Rig::boot(Version::V3, 2, true);
    let reg = DomainRegistry::new(&rig.core);
    let dom = arch_arm64::add_gic_domain(&reg, rig.gic.clone()).unwrap();
    let m = reg
        .map_fwspec(dom, &FwSpec::new(&[0, 8, 1]).unwrap())
        .unwrap();
    let hits = Arc::new(AtomicU32::new(0));
    let h = hits.clone();
    let _r = m
        .request_irq(
            IrqRequest::new(
                "dev",
                Arc::new(move |_| {
                    h.fetch_add(1, Ordering::SeqCst);
                    IrqReturn::HANDLED
                }),
            )
            .dev_id(irqcore::DevId(7)),
        )
        .unwrap();
    rig.core
        .set_affinity(m.irq(), &irqcore::CpuMask::of(CpuId::of::<1>()))
        .unwrap();
    assert_eq!(rig.model.spi_router(40), default_mpidr(1));
    rig.model.pulse(CpuId::BOOT, 40);
    model::set_current_cpu(CpuId::of::<1>());
    let n = rig.gic.handle_pending_dyn(&mut |id| {
        arch_arm64::dispatch(&rig.core, |id| reg.find_mapping(dom, id.hwirq()), id)
    });
    model::set_current_cpu(CpuId::BOOT);
    assert_eq!((n, hits.load(Ordering::SeqCst)), (1, 1));
    assert_eq!(rig.core.irq_count(m.irq(), CpuId::of::<1>()), 1);
    rig.assert_clean();
}

#[test]
fn triggers_the_core_was_not_told_are_read_back_from_the_gic() {
    for v in [Version::V2, Version::V3] {
        let rig = Rig::boot(v, 2, false);
        let reg = DomainRegistry::new(&rig.core);
        let dom = arch_arm64::add_gic_domain(&reg, rig.gic.clone()).unwrap();
        // An SGI mapped without a trigger (as the kernels map their IPIs):
        // SGIs are always edge.
        let ipi = reg.map(dom, HwIrq(1)).unwrap();
        assert_eq!(
            rig.core.snapshot(ipi.irq()).unwrap().trigger,
            TriggerType::EdgeRising,
            "{v:?}"
        );
        // An SPI left as the distributor initialised it (level).
        let spi = reg.map(dom, HwIrq(40)).unwrap();
        assert_eq!(
            rig.core.snapshot(spi.irq()).unwrap().trigger,
            TriggerType::LevelHigh,
            "{v:?}"
        );
        // A trigger the core programmed is the one reported.
        let rtc = reg
            .map_fwspec(dom, &FwSpec::new(&[0, 2, 1]).unwrap())
            .unwrap();
        assert_eq!(
            rig.core.snapshot(rtc.irq()).unwrap().trigger,
            TriggerType::EdgeRising,
            "{v:?}"
        );
        drop((ipi, spi, rtc));
    }
}
