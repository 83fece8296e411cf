//! The x86 hierarchy through irqcore's domain registry: IOAPIC and MSI
//! domains over the vector domain, with refcounted mappings.

mod common;

use arch_x86::domains::{IoApicDomainOps, MsiDomainOps, VectorDomainOps};
use arch_x86::model::ModelMsiDevice;
use arch_x86::*;
use common::{as_cpu, rig};
use irqcore::domain::{DomainConfig, DomainKind, DomainRegistry};
use irqcore::{CpuId, CpuMask, HwIrq, IrqNumber, IrqRequest, IrqReturn, TriggerType};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

fn counting(n: &Arc<AtomicU32>) -> IrqRequest {
    let n = n.clone();
    IrqRequest::new(
        "dev",
        Arc::new(move |_: IrqNumber| {
            n.fetch_add(1, Ordering::SeqCst);
            IrqReturn::HANDLED
        }),
    )
}

#[test]
fn ioapic_and_msi_domains_over_the_vector_domain() {
    let r = rig(&[0, 1]);
    as_cpu(0, || {
        let reg = DomainRegistry::new(&r.core);
        let vec_id = reg
            .add_domain(
                DomainConfig::new("VECTOR", DomainKind::Tree),
                Arc::new(VectorDomainOps::new(r.vectors.clone(), CpuMask::first_n(2))),
            )
            .unwrap();
        let idx = r.machine.add_ioapic(0, 24, 0x20);
        let io = Arc::new(IoApic::new("IO-APIC", r.machine.ioapic_mmio(idx), 0).unwrap());
        let io_id = reg
            .add_domain(
                DomainConfig::new("IO-APIC-0", DomainKind::Linear { size: io.nr_pins() })
                    .with_parent(vec_id),
                Arc::new(IoApicDomainOps::new(io.clone(), r.vectors.clone())),
            )
            .unwrap();
        let msi = Arc::new(MsiChip::new("PCI-MSI", ModelMsiDevice::new(&r.machine, 8)));
        let msi_id = reg
            .add_domain(
                DomainConfig::new("PCI-MSI-0", DomainKind::Tree).with_parent(vec_id),
                Arc::new(MsiDomainOps::new(msi.clone(), r.vectors.clone())),
            )
            .unwrap();

        // A shared level line mapped by two drivers: one irq, one vector.
        let a = reg
            .map_with_trigger(io_id, HwIrq(10), TriggerType::LevelLow)
            .unwrap();
        let b = reg
            .map_with_trigger(io_id, HwIrq(10), TriggerType::LevelLow)
            .unwrap();
        assert_eq!(a.irq(), b.irq());
        let irq = a.irq();
        let t = r.vectors.target(irq).unwrap();
        let m = r.machine.clone();
        let n = Arc::new(AtomicU32::new(0));
        let n2 = n.clone();
        let h = move |_: IrqNumber| {
            n2.fetch_add(1, Ordering::SeqCst);
            m.set_ioapic_line(idx, 10, true); // device deasserts (active low)
            IrqReturn::HANDLED
        };
        let handler = a.request_irq(IrqRequest::new("ahci", Arc::new(h))).unwrap();
        let e = io.entry(10).unwrap();
        assert_eq!(
            (
                e.vector(),
                e.destination(),
                e.is_level(),
                e.is_active_low(),
                e.is_masked()
            ),
            (t.vector.get(), t.apic_id.get(), true, true, false)
        );
        r.machine.set_ioapic_line(idx, 10, false);
        assert_eq!(r.run_cpu(t.cpu.index()), [irq]);
        assert_eq!(n.load(Ordering::SeqCst), 1);
        assert!(!io.entry(10).unwrap().remote_irr());
        let snap = r.core.snapshot(irq).unwrap();
        assert_eq!(
            snap.flow,
            irqcore::FlowKind::FastEoi,
            "fasteoi flow for the level pin"
        );
        assert_eq!(snap.trigger, TriggerType::LevelLow);
        assert_eq!(snap.chips.len(), 2, "IOAPIC over vector");

        // MSI vector 3 of the device.
        let mm = reg.map(msi_id, HwIrq(3)).unwrap();
        let nm = Arc::new(AtomicU32::new(0));
        let msi_handler = mm.request_irq(counting(&nm)).unwrap();
        let tm = r.vectors.target(mm.irq()).unwrap();
        assert_ne!((tm.cpu, tm.vector), (t.cpu, t.vector));
        // Least loaded: the second vector went to the other CPU.
        assert_ne!(tm.cpu, t.cpu);
        msi.device().fire(3).unwrap();
        assert_eq!(r.run_cpu(tm.cpu.index()), [mm.irq()]);
        assert_eq!(nm.load(Ordering::SeqCst), 1);
        assert_eq!(
            r.core.snapshot(mm.irq()).unwrap().flow,
            irqcore::FlowKind::Edge
        );

        // Tear down: the last reference frees the pin and the vector.
        drop(handler);
        drop(b);
        assert!(r.vectors.target(irq).is_some(), "still referenced by `a`");
        drop(a);
        assert_eq!(r.vectors.target(irq), None);
        assert!(
            !r.vectors
                .with_matrix_ref(|m| m.is_allocated(t.cpu, t.vector))
        );
        assert!(io.entry(10).unwrap().is_masked());
        drop(msi_handler);
        drop(mm);
        let total: u32 = (0..2)
            .map(|c| {
                r.vectors
                    .with_matrix_ref(|m| m.allocated(CpuId::new(c).unwrap()))
            })
            .sum();
        assert_eq!(total, 0, "every vector released");
        // A pin the IOAPIC does not have is refused.
        assert!(reg.map(io_id, HwIrq(24)).is_err());
    });
}
