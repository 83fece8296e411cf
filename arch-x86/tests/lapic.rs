//! LAPIC driver against the LAPIC model: IPIs (acceptance 1), priorities,
//! EOI, timer modes, LVTs, spurious and error vectors, in both modes.

/// Vector `n` (never below 32 here).
fn vec_(n: u8) -> arch_x86::Vector {
    arch_x86::Vector::new(n).unwrap()
}

use arch_x86::lapic::{DEFAULT_SPURIOUS_VECTOR, reg};
use arch_x86::model::{Machine, ModelMsr, ModelXApic};
use arch_x86::*;
use std::sync::Arc;

type ModelLapic = Lapic<ModelXApic, ModelMsr>;

fn machine_with(mode: ApicMode, ids: &[u32]) -> (Arc<Machine>, Vec<ModelLapic>) {
    let m = Machine::new(ids);
    let lapics = (0..ids.len())
        .map(|c| {
            let l = Lapic::init(mode, m.xapic(c), m.msr(c)).unwrap();
            l.enable(DEFAULT_SPURIOUS_VECTOR);
            l
        })
        .collect();
    (m, lapics)
}

const MODES: [ApicMode; 2] = [ApicMode::XApic, ApicMode::X2Apic];

#[test]
fn ipi_to_one_cpu_reaches_only_that_cpu() {
    for mode in MODES {
        let (m, l) = machine_with(mode, &[0, 1, 2, 3]);
        l[0].send_ipi(IpiKind::Fixed(vec_(0x40)), IpiDest::Apic(ApicId(2)))
            .unwrap();
        for cpu in 0..4 {
            assert_eq!(m.is_pending(cpu, 0x40), cpu == 2, "{mode:?} cpu {cpu}");
        }
        assert_eq!(m.gp_faults(0), 0);
    }
}

#[test]
fn ipi_all_but_self_and_all_including_self_and_self() {
    for mode in MODES {
        let (m, l) = machine_with(mode, &[0, 1, 2, 3]);
        l[1].send_ipi(IpiKind::Fixed(vec_(0x41)), IpiDest::AllExcludingSelf)
            .unwrap();
        assert_eq!(
            (0..4).map(|c| m.is_pending(c, 0x41)).collect::<Vec<_>>(),
            [true, false, true, true],
            "{mode:?}"
        );
        l[3].send_ipi(IpiKind::Fixed(vec_(0x42)), IpiDest::AllIncludingSelf)
            .unwrap();
        assert!((0..4).all(|c| m.is_pending(c, 0x42)));
        l[2].self_ipi(vec_(0x43)).unwrap();
        assert_eq!(
            (0..4).map(|c| m.is_pending(c, 0x43)).collect::<Vec<_>>(),
            [false, false, true, false]
        );
    }
}

#[test]
fn x2apic_reaches_32_bit_ids_and_xapic_refuses_them() {
    let (m, l) = machine_with(ApicMode::X2Apic, &[0, 0x1234]);
    l[0].send_ipi(IpiKind::Fixed(vec_(0x50)), IpiDest::Apic(ApicId(0x1234)))
        .unwrap();
    assert!(m.is_pending(1, 0x50));
    assert_eq!(l[1].id(), ApicId(0x1234));
    let (_m, l) = machine_with(ApicMode::XApic, &[0, 1]);
    assert_eq!(
        l[0].send_ipi(IpiKind::Fixed(vec_(0x50)), IpiDest::Apic(ApicId(0x100))),
        Err(LapicError::DestinationOutOfRange(ApicId(0x100)))
    );
    // An exception vector cannot even be named: the type refuses it.
    assert_eq!(Vector::new(3), Err(arch_x86::ExceptionVector(3)));
    assert_eq!(l[1].id(), ApicId(1));
}

#[test]
fn nmi_init_and_startup_ipis() {
    for mode in MODES {
        let (m, l) = machine_with(mode, &[0, 4]);
        l[0].send_ipi(IpiKind::Nmi, IpiDest::AllExcludingSelf)
            .unwrap();
        assert_eq!((m.nmi_count(0), m.nmi_count(1)), (0, 1));
        let mut delays = Vec::new();
        l[0].start_ap(ApicId(4), 0x08, |us| delays.push(us))
            .unwrap();
        assert_eq!(m.init_count(1), 1);
        assert_eq!(m.sipi_vectors(1), [0x08, 0x08]);
        assert_eq!(delays, [10_000, 200, 200]);
        assert_eq!(m.init_count(0), 0);
        assert!(l[0].send_ipi(IpiKind::Init, IpiDest::SelfOnly).is_err());
    }
}

#[test]
fn priority_tpr_isr_and_eoi() {
    for mode in MODES {
        let (m, l) = machine_with(mode, &[0]);
        l[0].set_tpr(0x50);
        l[0].self_ipi(vec_(0x45)).unwrap();
        // Class 4 <= TPR class 5: held off.
        assert_eq!(m.take_interrupt(0), None);
        l[0].set_tpr(0);
        assert_eq!(m.take_interrupt(0), Some(0x45));
        assert!(l[0].is_in_service(vec_(0x45)));
        // Same class as in service: blocked; higher class nests.
        l[0].self_ipi(vec_(0x44)).unwrap();
        l[0].self_ipi(vec_(0x90)).unwrap();
        assert_eq!(m.take_interrupt(0), Some(0x90));
        assert_eq!(m.take_interrupt(0), None);
        assert_eq!(l[0].ppr(), 0x90);
        l[0].eoi();
        assert!(!l[0].is_in_service(vec_(0x90)) && l[0].is_in_service(vec_(0x45)));
        assert_eq!(
            m.take_interrupt(0),
            None,
            "0x44 is still below the in-service 0x45"
        );
        l[0].eoi();
        assert_eq!(m.take_interrupt(0), Some(0x44));
        l[0].eoi();
        assert_eq!(m.gp_faults(0), 0, "x2APIC EOI must write 0");
    }
}

#[test]
fn timer_one_shot_periodic_and_tsc_deadline() {
    for mode in MODES {
        let (m, l) = machine_with(mode, &[0]);
        l[0].set_timer_divide(TimerDivide::By4);
        l[0].start_timer(TimerMode::OneShot, vec_(0xEC), 100)
            .unwrap();
        assert!(l[0].lvt(LvtSource::Timer).is_masked(), "starts masked");
        l[0].set_timer_masked(false);
        assert_eq!(l[0].lvt(LvtSource::Timer).vector(), 0xEC);
        m.advance_timer(0, 399);
        assert!(!m.is_pending(0, 0xEC));
        assert_eq!(l[0].timer_current_count(), 1);
        m.advance_timer(0, 1);
        assert!(m.is_pending(0, 0xEC));
        assert_eq!(m.take_interrupt(0), Some(0xEC));
        l[0].eoi();
        m.advance_timer(0, 10_000);
        assert!(!m.is_pending(0, 0xEC), "one-shot fires once");

        l[0].start_timer(TimerMode::Periodic, vec_(0xED), 10)
            .unwrap();
        l[0].set_timer_masked(false);
        for _ in 0..3 {
            m.advance_timer(0, 40);
            assert_eq!(m.take_interrupt(0), Some(0xED));
            l[0].eoi();
        }
        l[0].stop_timer();
        m.advance_timer(0, 1000);
        assert!(!m.is_pending(0, 0xED));

        assert_eq!(
            l[0].start_timer(TimerMode::TscDeadline, vec_(0xEE), 5),
            Err(LapicError::WrongMode)
        );
        m.set_tsc(1000);
        l[0].start_tsc_deadline(vec_(0xEE), 5000).unwrap();
        l[0].set_timer_masked(false);
        m.set_tsc(4999);
        assert!(!m.is_pending(0, 0xEE));
        m.set_tsc(5000);
        assert!(m.is_pending(0, 0xEE));
        assert_eq!(m.gp_faults(0), 0);
    }
}

#[test]
fn lvt_setup_spurious_and_error_interrupt() {
    for mode in MODES {
        let (m, l) = machine_with(mode, &[0, 1]);
        assert_eq!(m.svr(0) & 0x1FF, 0x1FF, "enabled with spurious vector 0xFF");
        l[0].set_spurious_vector(vec_(0xF7));
        assert_eq!(m.deliver_spurious(0), Some(0xF7));
        l[0].set_lvt(LvtSource::Lint0, LvtEntry::ext_int().masked());
        l[0].set_lvt(LvtSource::Lint1, LvtEntry::nmi());
        assert_eq!(m.lvt(0, reg::LVT_LINT0.offset()), Some(0x10700));
        assert_eq!(l[0].lvt(LvtSource::Lint1), LvtEntry::nmi());
        // An IPI with an illegal vector raised by hand through the ICR
        // latches a send error and raises the error interrupt.
        l[0].setup_error_interrupt(vec_(0xFE));
        l[0].write(reg::ICR_HIGH, 1 << 24);
        if mode == ApicMode::XApic {
            l[0].write(reg::ICR_LOW, 0x05);
        } else {
            // x2APIC ICR is a single 64-bit MSR.
            use arch_x86::Msr;
            m.msr(0).write_msr(
                arch_x86::lapic::x2apic_msr(reg::ICR_LOW),
                0x05 | (1u64 << 32),
            );
        }
        assert!(m.is_pending(0, 0xFE));
        assert_eq!(l[0].read_and_clear_errors(), 1 << 5);
        assert_eq!(l[0].read_and_clear_errors(), 0);
        // Software disable masks every LVT.
        l[0].disable();
        assert!(l[0].lvt(LvtSource::Error).is_masked());
    }
}

#[test]
fn mode_switch_rules() {
    let m = Machine::new(&[0]);
    let l = Lapic::init(ApicMode::X2Apic, m.xapic(0), m.msr(0)).unwrap();
    assert_eq!(l.mode(), ApicMode::X2Apic);
    assert!(m.apic_base(0) & (1 << 10) != 0);
    // Going back to xAPIC directly is refused by the driver (the hardware
    // would #GP).
    assert_eq!(
        Lapic::init(ApicMode::XApic, m.xapic(0), m.msr(0)).err(),
        Some(LapicError::InvalidModeTransition)
    );
    assert_eq!(m.gp_faults(0), 0);
    // In x2APIC mode the MMIO page is dead.
    use arch_x86::Mmio32;
    assert_eq!(m.xapic(0).read32(reg::ID), u32::MAX);
}
