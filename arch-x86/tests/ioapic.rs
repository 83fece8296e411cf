//! IOAPIC chip through IrqCore against the models (acceptance 1): edge and
//! level pins, remote IRR and EOI, masking while in progress, affinity,
//! several IOAPICs, ISA overrides.

mod common;

use arch_x86::model::ModelIoApicMmio;
use arch_x86::*;
use common::rig;
use common::vec_;
use irqcore::{CpuId, CpuMask, FlowKind, IrqNumber, IrqRequest, IrqReturn, TriggerType};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

fn counter() -> (Arc<AtomicU32>, IrqRequest) {
    let n = Arc::new(AtomicU32::new(0));
    let n2 = n.clone();
    let h = move |_irq: IrqNumber| {
        n2.fetch_add(1, Ordering::SeqCst);
        IrqReturn::HANDLED
    };
    (n, IrqRequest::new("dev", Arc::new(h)))
}

fn ioapic(
    r: &common::Rig,
    id: u8,
    pins: u32,
    gsi_base: u32,
) -> (usize, Arc<IoApic<ModelIoApicMmio>>) {
    let idx = r.machine.add_ioapic(id, pins, 0x20);
    (
        idx,
        Arc::new(IoApic::new("IO-APIC", r.machine.ioapic_mmio(idx), gsi_base).unwrap()),
    )
}

#[test]
fn edge_pin_is_delivered_handled_and_acked() {
    let r = rig(&[0, 1]);
    let (idx, io) = ioapic(&r, 0, 24, 0);
    assert_eq!(io.nr_pins(), 24);
    let irq = r.core.alloc_descs(IrqNumber(32), 1).unwrap();
    let v = r
        .vectors
        .alloc(irq, &CpuMask::of(CpuId::of::<1>()), false)
        .unwrap();
    let pin = io.alloc_pin(irq, 3, TriggerType::EdgeRising, &v).unwrap();
    r.core.set_chip(irq, vec![pin, v], FlowKind::Edge).unwrap();
    // Masked until a handler is installed: an edge now is lost.
    r.machine.set_ioapic_line(idx, 3, true);
    r.machine.set_ioapic_line(idx, 3, false);
    assert!(r.run_cpu(1).is_empty());

    let (n, req) = counter();
    let _reg = r.core.request_irq(irq, req).unwrap();
    let e = io.entry(3).unwrap();
    assert!(!e.is_masked() && !e.is_level());
    assert_eq!(e.destination(), 1);
    let t = r.vectors.target(irq).unwrap();
    assert_eq!((t.cpu, e.vector()), (CpuId::of::<1>(), t.vector.get()));

    r.machine.set_ioapic_line(idx, 3, true);
    assert!(r.machine.is_pending(1, t.vector) && !r.machine.is_pending(0, t.vector));
    assert_eq!(r.run_cpu(1), [irq]);
    assert_eq!(n.load(Ordering::SeqCst), 1);
    // The ack was the LAPIC EOI: nothing left in service, no broadcast for an
    // edge vector.
    assert!(!r.machine.is_in_service(1, t.vector));
    assert!(r.machine.eoi_broadcasts().is_empty());
    // Holding the line high is not a new edge.
    r.machine.set_ioapic_line(idx, 3, true);
    assert!(r.run_cpu(1).is_empty());
    r.machine.set_ioapic_line(idx, 3, false);
    r.machine.set_ioapic_line(idx, 3, true);
    assert_eq!(r.run_cpu(1), [irq]);
    assert_eq!(n.load(Ordering::SeqCst), 2);
}

/// Entries the handler observed while running.
type Observed = Arc<std::sync::Mutex<Vec<RedirectionEntry>>>;

/// A level device whose line stays asserted until the handler clears it:
/// (model index, chip, irq, vector, handler count, entries seen in handler).
fn level_setup(
    r: &common::Rig,
    flow: FlowKind,
) -> (
    usize,
    Arc<IoApic<ModelIoApicMmio>>,
    IrqNumber,
    Vector,
    Arc<AtomicU32>,
    Observed,
) {
    let (idx, io) = ioapic(r, 0, 24, 0);
    let irq = r.core.alloc_descs(IrqNumber(32), 1).unwrap();
    let v = r
        .vectors
        .alloc(irq, &CpuMask::of(CpuId::BOOT), false)
        .unwrap();
    let pin = io.alloc_pin(irq, 9, TriggerType::LevelLow, &v).unwrap();
    r.core.set_chip(irq, vec![pin, v], flow).unwrap();
    let vector = r.vectors.target(irq).unwrap().vector;
    let n = Arc::new(AtomicU32::new(0));
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (n2, seen2, m, io2) = (n.clone(), seen.clone(), r.machine.clone(), io.clone());
    let h = move |_irq: IrqNumber| {
        n2.fetch_add(1, Ordering::SeqCst);
        // What the hardware looks like while the handler runs.
        seen2.lock().unwrap().push(io2.entry(9).unwrap());
        // The device keeps the line asserted while we look: no second
        // delivery may happen while in progress.
        assert!(!m.is_pending(0, vector), "re-delivered while in progress");
        // Then the driver clears the device (active low: line goes high).
        m.set_ioapic_line(idx, 9, true);
        IrqReturn::HANDLED
    };
    let reg = r
        .core
        .request_irq(irq, IrqRequest::new("lvl", Arc::new(h)))
        .unwrap();
    reg.leak();
    (idx, io, irq, vector, n, seen)
}

#[test]
fn level_pin_fasteoi_remote_irr_blocks_until_eoi_broadcast() {
    let r = rig(&[0]);
    let (idx, io, irq, vector, n, seen) = level_setup(&r, FlowKind::FastEoi);
    let e = io.entry(9).unwrap();
    assert!(e.is_level() && e.is_active_low() && !e.is_masked());
    // Active low: the device pulls the line low.
    r.machine.set_ioapic_line(idx, 9, false);
    assert!(
        io.entry(9).unwrap().remote_irr(),
        "remote IRR set on level delivery"
    );
    assert!(r.machine.is_level(0, vector), "accepted as level (TMR)");
    assert_eq!(r.run_cpu(0), [irq]);
    assert_eq!(n.load(Ordering::SeqCst), 1);
    // While in progress the entry had remote IRR set: the IOAPIC is blocked.
    assert!(seen.lock().unwrap()[0].remote_irr());
    // The eoi went to the LAPIC, whose broadcast cleared remote IRR.
    assert_eq!(r.machine.eoi_broadcasts(), [vector]);
    assert!(!io.entry(9).unwrap().remote_irr());
    assert_eq!(r.machine.ioapic_deliveries(idx).len(), 1);
    // Asserted again: delivered again.
    r.machine.set_ioapic_line(idx, 9, false);
    assert_eq!(r.run_cpu(0), [irq]);
    assert_eq!(n.load(Ordering::SeqCst), 2);
}

#[test]
fn level_pin_level_flow_stays_masked_while_in_progress() {
    let r = rig(&[0]);
    let (idx, io, irq, vector, n, seen) = level_setup(&r, FlowKind::Level);
    r.machine.set_ioapic_line(idx, 9, false);
    assert_eq!(r.run_cpu(0), [irq]);
    assert_eq!(n.load(Ordering::SeqCst), 1);
    let during = seen.lock().unwrap()[0];
    assert!(during.is_masked(), "masked while the handler runs");
    // The ack (LAPIC EOI) already cleared remote IRR; the mask kept the still
    // asserted line from re-firing.
    assert!(!during.remote_irr());
    assert_eq!(r.machine.eoi_broadcasts(), [vector]);
    let after = io.entry(9).unwrap();
    assert!(!after.is_masked() && !after.remote_irr());
}

#[test]
fn level_pin_still_asserted_after_eoi_fires_again() {
    let r = rig(&[0]);
    let (idx, io) = ioapic(&r, 0, 24, 0);
    let irq = r.core.alloc_descs(IrqNumber(32), 1).unwrap();
    let v = r
        .vectors
        .alloc(irq, &CpuMask::of(CpuId::BOOT), false)
        .unwrap();
    let pin = io.alloc_pin(irq, 5, TriggerType::LevelHigh, &v).unwrap();
    r.core
        .set_chip(irq, vec![pin, v], FlowKind::FastEoi)
        .unwrap();
    let (n, req) = counter(); // never clears the device
    let _reg = r.core.request_irq(irq, req).unwrap();
    r.machine.set_ioapic_line(idx, 5, true);
    // One handled, then redelivered by the EOI because the line is still up.
    let vector = r.vectors.target(irq).unwrap().vector;
    r.machine.set_current_cpu(0);
    assert_eq!(r.machine.take_interrupt(0), Some(vector.get()));
    r.core.handle_irq(irq).unwrap();
    assert_eq!(n.load(Ordering::SeqCst), 1);
    assert!(
        r.machine.is_pending(0, vector),
        "re-delivered after EOI while asserted"
    );
    assert!(io.entry(5).unwrap().remote_irr());
}

#[test]
fn directed_eoi_uses_the_ioapic_eoi_register() {
    let r = rig(&[0]);
    let l = Lapic::attach(ApicMode::XApic, r.machine.xapic(0), r.machine.msr(0));
    l.set_suppress_eoi_broadcast(true);
    let (idx, io) = ioapic(&r, 0, 24, 0);
    io.set_directed_eoi(true);
    let irq = r.core.alloc_descs(IrqNumber(32), 1).unwrap();
    let v = r
        .vectors
        .alloc(irq, &CpuMask::of(CpuId::BOOT), false)
        .unwrap();
    let pin = io.alloc_pin(irq, 2, TriggerType::LevelHigh, &v).unwrap();
    r.core
        .set_chip(irq, vec![pin, v], FlowKind::FastEoi)
        .unwrap();
    let m = r.machine.clone();
    let h = move |_: IrqNumber| {
        m.set_ioapic_line(idx, 2, false);
        IrqReturn::HANDLED
    };
    let _reg = r
        .core
        .request_irq(irq, IrqRequest::new("d", Arc::new(h)))
        .unwrap();
    r.machine.set_ioapic_line(idx, 2, true);
    assert_eq!(r.run_cpu(0).len(), 1);
    assert!(
        r.machine.eoi_broadcasts().is_empty(),
        "broadcast suppressed"
    );
    assert!(
        !io.entry(2).unwrap().remote_irr(),
        "cleared by the IOAPIC EOI register"
    );
}

#[test]
fn set_affinity_moves_the_destination_and_vector() {
    let r = rig(&[0, 1, 2]);
    let (idx, io) = ioapic(&r, 0, 24, 0);
    let irq = r.core.alloc_descs(IrqNumber(32), 1).unwrap();
    let v = r
        .vectors
        .alloc(irq, &CpuMask::of(CpuId::BOOT), false)
        .unwrap();
    let pin = io.alloc_pin(irq, 1, TriggerType::EdgeRising, &v).unwrap();
    r.core.set_chip(irq, vec![pin, v], FlowKind::Edge).unwrap();
    let (n, req) = counter();
    let _reg = r.core.request_irq(irq, req).unwrap();
    r.core
        .set_affinity(irq, &CpuMask::of(CpuId::of::<2>()))
        .unwrap();
    assert_eq!(
        r.core.effective_affinity(irq).unwrap(),
        CpuMask::of(CpuId::of::<2>())
    );
    let t = r.vectors.target(irq).unwrap();
    let e = io.entry(1).unwrap();
    assert_eq!(
        (e.destination(), e.vector(), e.is_masked()),
        (2, t.vector.get(), false)
    );
    r.machine.set_ioapic_line(idx, 1, true);
    assert!(r.run_cpu(0).is_empty());
    assert_eq!(r.run_cpu(2), [irq]);
    assert_eq!(n.load(Ordering::SeqCst), 1);
}

#[test]
fn several_ioapics_with_gsi_bases_and_isa_overrides() {
    let r = rig(&[0]);
    let (i0, a) = ioapic(&r, 1, 24, 0);
    let (i1, b) = ioapic(&r, 2, 32, 24);
    let desc = PlatformDescription {
        lapic_base: 0xFEE0_0000,
        ioapics: vec![
            IoApicInfo {
                id: 1,
                address: 0xFEC0_0000,
                gsi_base: 0,
            },
            IoApicInfo {
                id: 2,
                address: 0xFEC0_1000,
                gsi_base: 24,
            },
        ],
        // QEMU's usual overrides: IRQ0 -> GSI2, IRQ9 level active-high.
        isa_overrides: vec![
            IsaOverride::from_inti_flags(0, 2, 0),
            IsaOverride::from_inti_flags(9, 9, 0b1101),
        ],
        cpus: vec![CpuInfo {
            apic_id: ApicId(0),
            enabled: true,
        }],
        has_8259: true,
    };
    assert_eq!(
        desc.isa_route(0),
        IsaRoute {
            gsi: 2,
            trigger: TriggerType::EdgeRising
        }
    );
    assert_eq!(
        desc.isa_route(9),
        IsaRoute {
            gsi: 9,
            trigger: TriggerType::LevelHigh
        }
    );
    assert_eq!(
        desc.isa_route(4),
        IsaRoute {
            gsi: 4,
            trigger: TriggerType::EdgeRising
        }
    );
    assert_eq!(desc.apic_ids(), [ApicId(0)]);

    let mut set = IoApicSet::new();
    set.add(a.clone());
    set.add(b.clone());
    assert_eq!(a.id(), 1);
    assert_eq!(b.id(), 2);
    let (chip, pin) = set.route(30).unwrap();
    assert!(Arc::ptr_eq(chip, &b) && pin == 6);
    assert_eq!(set.route(56).err(), Some(IoApicError::UnknownGsi(56)));
    assert_eq!(
        desc.ioapic_for_gsi(30, |io| if io.id == 1 { 24 } else { 32 })
            .map(|(io, p)| (io.id, p)),
        Some((2, 6))
    );

    // The timer (ISA 0) on GSI 2 of the first IOAPIC, GSI 30 on the second.
    let mut counts = Vec::new();
    for (gsi, model_idx) in [(desc.isa_route(0).gsi, i0), (30, i1)] {
        let (chip, pin) = set.route(gsi).unwrap();
        let irq = r.core.alloc_descs(IrqNumber(32), 1).unwrap();
        let v = r
            .vectors
            .alloc(irq, &CpuMask::of(CpuId::BOOT), false)
            .unwrap();
        let level = chip
            .alloc_pin(irq, pin, TriggerType::EdgeRising, &v)
            .unwrap();
        r.core
            .set_chip(irq, vec![level, v], FlowKind::Edge)
            .unwrap();
        let (n, req) = counter();
        r.core.request_irq(irq, req).unwrap().leak();
        r.machine.set_ioapic_line(model_idx, pin, true);
        assert_eq!(r.run_cpu(0), [irq]);
        counts.push(n);
    }
    assert!(counts.iter().all(|n| n.load(Ordering::SeqCst) == 1));
    assert_eq!(a.entry(24).err(), Some(IoApicError::BadPin(24)));
}

#[test]
fn set_type_changes_trigger_and_refuses_both_edges() {
    let r = rig(&[0]);
    let (_, io) = ioapic(&r, 0, 24, 0);
    let irq = r.core.alloc_descs(IrqNumber(32), 1).unwrap();
    let v = r
        .vectors
        .alloc(irq, &CpuMask::of(CpuId::BOOT), false)
        .unwrap();
    let pin = io.alloc_pin(irq, 7, TriggerType::EdgeRising, &v).unwrap();
    r.core.set_chip(irq, vec![pin, v], FlowKind::Edge).unwrap();
    r.core.set_trigger(irq, TriggerType::LevelLow).unwrap();
    let e = io.entry(7).unwrap();
    assert!(e.is_level() && e.is_active_low());
    assert!(r.core.set_trigger(irq, TriggerType::EdgeBoth).is_err());
    assert_eq!(
        io.entry(7).unwrap().trigger(),
        TriggerType::LevelLow,
        "unchanged after refusal"
    );
}

#[test]
fn retrigger_resends_through_a_self_ipi_to_the_target() {
    let r = rig(&[0, 1]);
    let (_, io) = ioapic(&r, 0, 24, 0);
    let irq = r.core.alloc_descs(IrqNumber(32), 1).unwrap();
    let v = r
        .vectors
        .alloc(irq, &CpuMask::of(CpuId::of::<1>()), false)
        .unwrap();
    let pin = io.alloc_pin(irq, 4, TriggerType::EdgeRising, &v).unwrap();
    let levels = vec![pin, v];
    let d = irqcore::IrqData::new(irq, &levels);
    assert!(d.retrigger_hierarchy());
    let t = r.vectors.target(irq).unwrap();
    assert!(r.machine.is_pending(1, t.vector));
}

#[test]
fn moving_a_level_pin_with_remote_irr_set_waits_for_its_eoi() {
    let r = rig(&[0, 1]);
    let (idx, io) = ioapic(&r, 0, 24, 0);
    let irq = r.core.alloc_descs(IrqNumber(32), 1).unwrap();
    let v = r
        .vectors
        .alloc(irq, &CpuMask::of(CpuId::BOOT), false)
        .unwrap();
    let pin = io.alloc_pin(irq, 11, TriggerType::LevelHigh, &v).unwrap();
    r.core
        .set_chip(irq, vec![pin, v], FlowKind::FastEoi)
        .unwrap();
    let m = r.machine.clone();
    let n = Arc::new(AtomicU32::new(0));
    let n2 = n.clone();
    let h = move |_: IrqNumber| {
        n2.fetch_add(1, Ordering::SeqCst);
        m.set_ioapic_line(idx, 11, false);
        IrqReturn::HANDLED
    };
    let _reg = r
        .core
        .request_irq(irq, IrqRequest::new("lvl", Arc::new(h)))
        .unwrap();
    // Occupy CPU 1's lowest vector so the move changes the vector number
    // (the EOI broadcast matches entries by vector).
    r.vectors
        .alloc(IrqNumber(999), &CpuMask::of(CpuId::of::<1>()), false)
        .unwrap();
    let old = r.vectors.target(irq).unwrap();
    // Delivered to CPU 0 (remote IRR set), not yet handled...
    r.machine.set_ioapic_line(idx, 11, true);
    assert!(io.entry(11).unwrap().remote_irr());
    // ...when the affinity changes.
    r.core
        .set_affinity(irq, &CpuMask::of(CpuId::of::<1>()))
        .unwrap();
    let new = r.vectors.target(irq).unwrap();
    assert_eq!(new.cpu, CpuId::of::<1>());
    assert_ne!(new.vector, old.vector);
    assert_eq!(
        io.entry(11).unwrap().vector(),
        old.vector,
        "entry keeps the vector being serviced"
    );
    // The in-flight interrupt is handled on CPU 0; its EOI clears remote
    // IRR, and only then the entry moves.
    assert_eq!(r.run_cpu(0), [irq]);
    let e = io.entry(11).unwrap();
    assert!(!e.remote_irr(), "remote IRR not stuck");
    assert_eq!(
        (e.vector(), e.destination()),
        (new.vector.get(), new.apic_id.get())
    );
    // The line works on the new CPU.
    r.machine.set_ioapic_line(idx, 11, true);
    assert_eq!(r.run_cpu(1), [irq]);
    assert_eq!(n.load(Ordering::SeqCst), 2);
    assert!(!io.entry(11).unwrap().remote_irr());
}

#[test]
fn bad_input_to_the_chips_is_refused_without_panic_or_change() {
    use irqcore::{ChipLevel, HwIrq, IrqChip, IrqData};
    let r = rig(&[0]);
    let (_, io) = ioapic(&r, 0, 24, 0);
    let before: Vec<_> = (0..24).map(|p| io.entry(p).unwrap()).collect();
    // A pin the IOAPIC does not have, over a vector level for an irq the
    // vector domain does not know.
    let levels = vec![
        ChipLevel::new(io.clone(), HwIrq(u64::MAX)),
        ChipLevel::new(r.vectors.clone(), HwIrq(5)),
    ];
    let d = IrqData::new(IrqNumber(5), &levels);
    io.mask(&d);
    io.unmask(&d);
    io.ack(&d);
    io.eoi(&d);
    io.startup(&d);
    io.shutdown(&d);
    assert!(io.set_type(&d, TriggerType::LevelHigh).is_err());
    assert!(
        io.set_affinity(&d, &CpuMask::of(CpuId::BOOT), false)
            .is_err()
    );
    assert!(!io.retrigger(&d));
    assert_eq!(d.compose_msi_msg_hierarchy(), None);
    let after: Vec<_> = (0..24).map(|p| io.entry(p).unwrap()).collect();
    assert_eq!(before, after);
    assert_eq!(io.entry(24).err(), Some(IoApicError::BadPin(24)));
    assert_eq!(io.free_pin(99).err(), Some(IoApicError::BadPin(99)));
    assert_eq!(
        r.vectors.free(IrqNumber(5)).err(),
        Some(VectorError::UnknownIrq(IrqNumber(5)))
    );
    assert_eq!(
        r.vectors.irq_for_vector(CpuId::of::<77>(), vec_(0x30)),
        None
    );
    // An unknown irq on a valid pin: alloc_pin refuses (no target to
    // program), the entry stays masked.
    let v = ChipLevel::new(r.vectors.clone(), HwIrq(6));
    assert_eq!(
        io.alloc_pin(IrqNumber(6), 3, TriggerType::EdgeRising, &v)
            .err(),
        Some(IoApicError::Unreachable)
    );
    assert!(io.entry(3).unwrap().is_masked());
    // No IOAPIC behind the window.
    assert_eq!(
        IoApic::new("none", arch_x86::NoMmio, 0).err(),
        Some(IoApicError::NoDevice)
    );
}

#[test]
fn a_pin_allocated_edge_rising_shows_its_trigger_in_the_table() {
    let r = rig(&[0, 1]);
    let (_idx, io) = ioapic(&r, 0, 24, 0);
    let irq = r.core.alloc_descs(IrqNumber(32), 1).unwrap();
    let v = r
        .vectors
        .alloc(irq, &CpuMask::of(CpuId::BOOT), false)
        .unwrap();
    // The trigger goes to the hardware only: the core is never told.
    let pin = io
        .alloc_pin(irq, 0x13, TriggerType::EdgeRising, &v)
        .unwrap();
    r.core.set_chip(irq, vec![pin, v], FlowKind::Edge).unwrap();
    let (_n, req) = counter();
    let _reg = r.core.request_irq(irq, req).unwrap();
    assert_eq!(
        r.core.snapshot(irq).unwrap().trigger,
        TriggerType::EdgeRising,
        "read back from the redirection entry"
    );
    let t = r.core.interrupt_table().to_string();
    assert!(
        t.lines()
            .any(|l| l.starts_with("   32:") && l.ends_with("IO-APIC  0x13  edge  edge-r  dev")),
        "\n{t}"
    );
}

#[test]
fn eoi_vector_clears_remote_irr_outside_the_flow() {
    let r = rig(&[0]);
    let (idx, io, _irq, vector, _n, _seen) = level_setup(&r, FlowKind::FastEoi);
    // Delivered but never taken (a CPU going offline with it latched).
    r.machine.set_ioapic_line(idx, 9, false);
    assert!(io.entry(9).unwrap().remote_irr());
    // Still asserted: the EOI clears remote IRR and the line is delivered
    // again (setting remote IRR anew).
    io.eoi_vector(vector).unwrap();
    assert_eq!(r.machine.ioapic_deliveries(idx).len(), 2);
    // Deasserted (active low: high), the EOI leaves remote IRR clear.
    r.machine.set_ioapic_line(idx, 9, true);
    io.eoi_vector(vector).unwrap();
    assert!(!io.entry(9).unwrap().remote_irr(), "remote IRR cleared");
    assert_eq!(r.machine.ioapic_deliveries(idx).len(), 2);
    // An old IOAPIC has no EOI register.
    let old_idx = r.machine.add_ioapic(1, 24, 0x11);
    let old = IoApic::new("old", r.machine.ioapic_mmio(old_idx), 24).unwrap();
    assert_eq!(old.eoi_vector(vector), Err(IoApicError::NoEoiRegister));
}

#[test]
fn eoi_vector_completes_a_move_deferred_by_remote_irr() {
    let r = rig(&[0, 1]);
    let (idx, io, irq, old_vector, n, _seen) = level_setup(&r, FlowKind::FastEoi);
    // CPU 0 has the level interrupt latched (remote IRR set) when the irq
    // is moved to CPU 1: the IOAPIC keeps the old target until the EOI.
    r.machine.set_ioapic_line(idx, 9, false);
    assert!(r.machine.is_pending(0, old_vector));
    r.core
        .set_affinity(irq, &CpuMask::of(CpuId::of::<1>()))
        .unwrap();
    let new = r.vectors.target(irq).unwrap();
    assert_eq!(new.cpu, CpuId::of::<1>());
    assert_eq!(io.entry(9).unwrap().vector(), old_vector, "move deferred");
    // CPU 0 goes away without taking it: the kernel EOIs the old vector at
    // the IOAPIC. The line is still asserted, so it is delivered again, to
    // the new target only.
    io.eoi_vector(old_vector).unwrap();
    let e = io.entry(9).unwrap();
    assert_eq!(e.vector(), new.vector, "move completed");
    assert!(!e.is_masked());
    assert!(e.remote_irr(), "re-delivered");
    assert_eq!(
        r.machine.ioapic_deliveries(idx).last(),
        Some(&(9, new.vector.get()))
    );
    assert!(r.machine.is_pending(1, new.vector));
    // (The dying CPU's stale IRR bit is dropped with its APIC; the
    // handler below checks that CPU 0 has nothing pending.)
    assert_eq!(r.machine.take_interrupt(0), Some(old_vector.get()));
    assert_eq!(r.run_cpu(1), [irq]);
    assert_eq!(n.load(Ordering::SeqCst), 1);
}
