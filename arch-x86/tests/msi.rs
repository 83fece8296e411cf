//! MSI message composition/decoding (acceptance 1) and the MSI chip level
//! through IrqCore against the modelled MSI target.

mod common;

use arch_x86::model::ModelMsiDevice;
use arch_x86::*;
use common::rig;
use common::vec_;
use irqcore::{
    ChipLevel, CpuId, CpuMask, FlowKind, HwIrq, IrqNumber, IrqRequest, IrqReturn, MsiMsg,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

#[test]
fn xapic_physical_destination_bits() {
    let m = compose_msi(ApicId(0x12), vec_(0x41), MsiDestFormat::XApic).unwrap();
    assert_eq!(
        m,
        MsiMsg {
            address_lo: 0xFEE1_2000,
            address_hi: 0,
            data: 0x41
        }
    );
    // Fixed delivery (bits 8-10 = 0), edge (bit 15 = 0), physical (bit 2 = 0),
    // no redirection hint (bit 3 = 0).
    assert_eq!(m.data & 0xFF00, 0);
    assert_eq!(m.address_lo & 0b1100, 0);
    assert_eq!(
        compose_msi(ApicId(0xFF), vec_(0x30), MsiDestFormat::XApic)
            .unwrap()
            .address_lo,
        0xFEEF_F000
    );
    assert_eq!(
        compose_msi(ApicId(0x100), vec_(0x30), MsiDestFormat::XApic),
        Err(MsiError::DestinationOutOfRange(ApicId(0x100)))
    );
    // Exception vectors cannot be composed (the type refuses them) nor
    // decoded.
    let bad = MsiMsg { data: 0x1F, ..m };
    assert_eq!(
        decode_msi(&bad, MsiDestFormat::XApic),
        Err(MsiError::IllegalVector(0x1F))
    );
    let t = decode_msi(&m, MsiDestFormat::XApic).unwrap();
    assert_eq!(
        (t.apic_id, t.vector, t.logical, t.delivery_mode, t.level),
        (ApicId(0x12), vec_(0x41), false, 0, false)
    );
}

#[test]
fn x2apic_destination_bits() {
    // 32-bit destination: low 8 bits in address bits 12-19, bits 8-31 in
    // address-high bits 8-31.
    let m = compose_msi(
        ApicId(0x0012_3456),
        vec_(0x80),
        MsiDestFormat::X2ApicAddressHigh,
    )
    .unwrap();
    assert_eq!(
        m,
        MsiMsg {
            address_lo: 0xFEE5_6000,
            address_hi: 0x0012_3400,
            data: 0x80
        }
    );
    assert_eq!(
        decode_msi(&m, MsiDestFormat::X2ApicAddressHigh)
            .unwrap()
            .apic_id,
        ApicId(0x0012_3456)
    );
    // An id below 256 needs no high bits.
    assert_eq!(
        compose_msi(ApicId(0x7F), vec_(0x80), MsiDestFormat::X2ApicAddressHigh)
            .unwrap()
            .address_hi,
        0
    );
    // 15-bit extended destination id: bits 8-14 in address bits 5-11.
    let e = compose_msi(ApicId(0x1234), vec_(0x81), MsiDestFormat::ExtendedDestId).unwrap();
    assert_eq!(
        e,
        MsiMsg {
            address_lo: 0xFEE3_4000 | (0x12 << 5),
            address_hi: 0,
            data: 0x81
        }
    );
    assert_eq!(
        decode_msi(&e, MsiDestFormat::ExtendedDestId)
            .unwrap()
            .apic_id,
        ApicId(0x1234)
    );
    assert_eq!(
        compose_msi(ApicId(0x8000), vec_(0x81), MsiDestFormat::ExtendedDestId),
        Err(MsiError::DestinationOutOfRange(ApicId(0x8000)))
    );
    // An xAPIC bus refuses messages with bits it does not define.
    assert_eq!(
        decode_msi(&m, MsiDestFormat::XApic),
        Err(MsiError::NotApicAddress)
    );
    assert_eq!(
        decode_msi(
            &MsiMsg {
                address_lo: 0xFED0_0000,
                address_hi: 0,
                data: 0x40
            },
            MsiDestFormat::XApic
        ),
        Err(MsiError::NotApicAddress)
    );
}

#[test]
fn x2apic_msi_reaches_a_cpu_with_a_large_apic_id() {
    let m = model_machine_x2(&[0, 0x300]);
    m.set_msi_format(MsiDestFormat::X2ApicAddressHigh);
    let msg = compose_msi(ApicId(0x300), vec_(0x55), MsiDestFormat::X2ApicAddressHigh).unwrap();
    m.msi_write(&msg).unwrap();
    assert!(m.is_pending(1, 0x55) && !m.is_pending(0, 0x55));
}

fn model_machine_x2(ids: &[u32]) -> Arc<arch_x86::model::Machine> {
    let m = arch_x86::model::Machine::new(ids);
    for c in 0..ids.len() {
        Lapic::init(ApicMode::X2Apic, m.xapic(c), m.msr(c))
            .unwrap()
            .enable(arch_x86::lapic::DEFAULT_SPURIOUS_VECTOR);
    }
    m
}

#[test]
fn msi_chip_programs_the_device_and_dispatches() {
    let r = rig(&[0, 1]);
    let dev = ModelMsiDevice::new(&r.machine, 4);
    let chip = Arc::new(MsiChip::new("PCI-MSIX", dev));
    let irq = r.core.alloc_descs(IrqNumber(64), 1).unwrap();
    let v = r
        .vectors
        .alloc(
            irq,
            &CpuMask::from_cpus([CpuId::BOOT, CpuId::of::<1>()]),
            false,
        )
        .unwrap();
    r.core
        .set_chip(
            irq,
            vec![ChipLevel::new(chip.clone(), HwIrq(2)), v],
            FlowKind::Edge,
        )
        .unwrap();
    let n = Arc::new(AtomicU32::new(0));
    let n2 = n.clone();
    let h = move |_: IrqNumber| {
        n2.fetch_add(1, Ordering::SeqCst);
        IrqReturn::HANDLED
    };
    let _reg = r
        .core
        .request_irq(irq, IrqRequest::new("nvme", Arc::new(h)))
        .unwrap();
    let t = r.vectors.target(irq).unwrap();
    assert_eq!(
        chip.device().message(2),
        Some(compose_msi(t.apic_id, t.vector, MsiDestFormat::XApic).unwrap())
    );
    assert!(!chip.device().is_masked(2));
    chip.device().fire(2).unwrap();
    assert_eq!(r.run_cpu(t.cpu.index()), [irq]);
    assert_eq!(n.load(Ordering::SeqCst), 1);

    // Move to the other CPU: the device gets the new message.
    let other = CpuId::new(1 - t.cpu.get()).unwrap();
    r.core.set_affinity(irq, &CpuMask::of(other)).unwrap();
    let t2 = r.vectors.target(irq).unwrap();
    assert_eq!(t2.cpu, other);
    assert_eq!(
        chip.device().message(2),
        Some(compose_msi(t2.apic_id, t2.vector, MsiDestFormat::XApic).unwrap())
    );
    chip.device().fire(2).unwrap();
    assert_eq!(r.run_cpu(other.index()), [irq]);
    assert_eq!(n.load(Ordering::SeqCst), 2);
}
