//! The LAPIC timer and IPI chips, one LAPIC shared by every user, the
//! 8259's vectors kept out of the device window, and the entry stubs
//! (issue #19, acceptance 4).

mod common;

use arch_x86::lapic::{LvtSource, TimerMode};
use arch_x86::model::{Machine, ModelMsr, ModelXApic};
use arch_x86::*;
use common::vec_;
use common::{THIS_CPU, TestPlatform, as_cpu};
use irqcore::{
    CoreConfig, CpuId, CpuMask, FlowKind, IrqCore, IrqNumber, IrqRequest, IrqReturn, RequestFlags,
    TriggerType,
};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

const TIMER_VECTOR: Vector = Vector::of::<0xEC>();
const IPI_VECTOR: Vector = Vector::of::<0xFB>();

type Shared = Lapic<Arc<ModelXApic>, Arc<ModelMsr>>;

fn this_cpu() -> CpuId {
    CpuId::new(THIS_CPU.with(|c| c.get()).unwrap_or(0) as u32).unwrap()
}

fn setup(ids: &[u32]) -> (Arc<Machine>, IrqCore<TestPlatform>, Shared) {
    let m = Machine::new(ids);
    m.set_cpu_resolver(Some(Arc::new(|| THIS_CPU.with(|c| c.get()))));
    for cpu in 0..ids.len() {
        as_cpu(cpu, || {
            Lapic::init(ApicMode::XApic, m.local_xapic(), m.local_msr())
                .unwrap()
                .enable(arch_x86::lapic::DEFAULT_SPURIOUS_VECTOR)
        });
    }
    let core = IrqCore::with_config(
        TestPlatform {
            machine: m.clone(),
            resends: Mutex::new(Vec::new()),
        },
        CoreConfig {
            capacity: 256,
            nr_cpus: ids.len() as u32,
        },
    );
    for c in 0..ids.len() {
        core.set_cpu_online(CpuId::new(c as u32).unwrap(), true)
            .unwrap();
    }
    // One driver over "the executing CPU's" page, shared by every user.
    let lapic = Lapic::attach(ApicMode::XApic, m.local_xapic(), m.local_msr()).into_shared();
    (m, core, lapic)
}

fn counter() -> (Arc<AtomicU32>, Arc<dyn irqcore::IrqHandler>) {
    let n = Arc::new(AtomicU32::new(0));
    let n2 = n.clone();
    let h = move |_: IrqNumber| {
        n2.fetch_add(1, Ordering::SeqCst);
        IrqReturn::HANDLED
    };
    (n, Arc::new(h))
}

#[test]
fn timer_starts_masked_until_enable_percpu_irq() {
    let (m, core, lapic) = setup(&[0, 1]);
    let timer = Arc::new(LapicTimerChip::new(lapic.clone()));
    let irq = core.alloc_descs(IrqNumber(200), 1).unwrap();
    core.set_chip(irq, vec![timer.level(TIMER_VECTOR)], FlowKind::PerCpuDevId)
        .unwrap();
    let (n, h) = counter();
    as_cpu(0, || {
        core.request_irq(irq, IrqRequest::new("timer", h).flags(RequestFlags::PERCPU))
    })
    .unwrap()
    .leak();
    for cpu in 0..2 {
        as_cpu(cpu, || {
            lapic
                .start_timer(TimerMode::Periodic, TIMER_VECTOR, 10)
                .unwrap()
        });
        assert!(
            as_cpu(cpu, || lapic.lvt(LvtSource::Timer)).is_masked(),
            "cpu {cpu}: the timer starts masked"
        );
    }
    m.advance_timer(0, 1000);
    assert!(!m.is_pending(0, TIMER_VECTOR), "masked: no tick delivered");

    as_cpu(0, || core.enable_percpu_irq(irq, TriggerType::None)).unwrap();
    assert!(!as_cpu(0, || lapic.lvt(LvtSource::Timer)).is_masked());
    assert!(
        as_cpu(1, || lapic.lvt(LvtSource::Timer)).is_masked(),
        "enabling on CPU 0 leaves CPU 1's timer masked"
    );
    m.advance_timer(0, 40);
    m.advance_timer(1, 40);
    assert!(!m.is_pending(1, TIMER_VECTOR));
    assert_eq!(m.take_interrupt(0), Some(TIMER_VECTOR.get()));
    as_cpu(0, || core.handle_irq(irq)).unwrap();
    assert_eq!(n.load(Ordering::SeqCst), 1);
    assert!(!m.is_in_service(0, TIMER_VECTOR), "the flow EOIed the tick");
    let lvt = as_cpu(0, || lapic.lvt(LvtSource::Timer));
    assert_eq!(lvt.vector(), TIMER_VECTOR, "mode and vector kept");
    assert_eq!(lvt.0 & (3 << 17), 1 << 17, "still periodic");

    as_cpu(0, || core.disable_percpu_irq(irq)).unwrap();
    assert!(as_cpu(0, || lapic.lvt(LvtSource::Timer)).is_masked());
    m.advance_timer(0, 1000);
    assert!(!m.is_pending(0, TIMER_VECTOR));
    assert_eq!(m.gp_faults(0), 0);
}

#[test]
fn one_shared_lapic_serves_vector_domain_ipi_and_timer_chips() {
    let ids = [0u32, 1];
    let (m, core, lapic) = setup(&ids);
    // Three users of one LAPIC driver (one set of accessors, no second
    // driver over the same page).
    let apic_ids = ids.map(ApicId);
    let ops = LapicOps::new(lapic.clone(), this_cpu as fn() -> CpuId, &apic_ids, None);
    let vectors = Arc::new(VectorDomain::new(ops, &apic_ids, MsiDestFormat::XApic).unwrap());
    let ipi = Arc::new(LapicIpiChip::new(lapic.clone()));
    let _timer = LapicTimerChip::new(lapic.clone());
    vectors.assign_system_vector(IPI_VECTOR).unwrap();
    for c in 0..2 {
        vectors.cpu_online(CpuId::new(c).unwrap()).unwrap();
    }

    let irq = core.alloc_descs(IrqNumber(201), 1).unwrap();
    core.set_chip(irq, vec![ipi.level(IPI_VECTOR)], FlowKind::PerCpu)
        .unwrap();
    let (n, h) = counter();
    as_cpu(0, || {
        core.request_irq(irq, IrqRequest::new("ipi", h).flags(RequestFlags::PERCPU))
    })
    .unwrap()
    .leak();
    as_cpu(1, || core.enable_percpu_irq(irq, TriggerType::None)).unwrap();
    as_cpu(0, || ipi.send(ApicId(1), IPI_VECTOR)).unwrap();
    assert!(m.is_pending(1, IPI_VECTOR));
    assert!(!m.is_pending(0, IPI_VECTOR));
    assert_eq!(m.take_interrupt(1), Some(IPI_VECTOR.get()));
    as_cpu(1, || core.handle_irq(irq)).unwrap();
    assert_eq!(n.load(Ordering::SeqCst), 1);
    assert!(!m.is_in_service(1, IPI_VECTOR), "IPI EOIed");
    assert_eq!(
        as_cpu(1, || ipi.send(ApicId(0x100_0000), IPI_VECTOR)),
        Err(LapicError::DestinationOutOfRange(ApicId(0x100_0000)))
    );

    // The vector domain's EOI goes through the same LAPIC.
    let dev = core.alloc_descs(IrqNumber(40), 1).unwrap();
    let v = vectors
        .alloc(dev, &CpuMask::of(CpuId::BOOT), false)
        .unwrap();
    let t = vectors.target(dev).unwrap();
    assert_ne!(t.vector, IPI_VECTOR);
    as_cpu(0, || {
        vectors
            .ops()
            .lapic()
            .send_ipi(IpiKind::Fixed(t.vector), IpiDest::SelfOnly)
    })
    .unwrap();
    assert_eq!(m.take_interrupt(0), Some(t.vector.get()));
    as_cpu(0, || vectors.ops().eoi());
    assert!(!m.is_in_service(0, t.vector));
    drop(v);
}

#[test]
fn the_8259_vectors_stay_out_of_the_device_window() {
    let mut mx = VectorMatrix::with_default_window_and_8259(2).unwrap();
    mx.cpu_online(CpuId::BOOT).unwrap();
    for v in PIC8259_VECTORS {
        assert!(mx.is_system(vec_(v)), "{v:#x} reserved");
    }
    let window = u32::from(matrix::FIRST_SYSTEM_VECTOR.get() - matrix::FIRST_EXTERNAL_VECTOR.get());
    assert_eq!(mx.available(CpuId::BOOT), window - 16);
    let mut got = Vec::new();
    while let Ok((_, v)) = mx.alloc(&CpuMask::of(CpuId::BOOT)) {
        got.push(v.get());
    }
    assert_eq!(got.first(), Some(&0x30), "first fit starts above the 8259");
    assert_eq!(got.len() as u32, window - 16);
    assert!(got.iter().all(|v| !PIC8259_VECTORS.contains(v)));
    assert_eq!(
        mx.assign(CpuId::BOOT, vec_(0x27)),
        Err(VectorError::BadVector(0x27))
    );

    // Through the vector domain; all or nothing once something is taken.
    let m = Machine::new(&[0]);
    let vectors =
        Arc::new(VectorDomain::new(m.apic_ops(), &[ApicId(0)], MsiDestFormat::XApic).unwrap());
    vectors.cpu_online(CpuId::BOOT).unwrap();
    let first = vectors
        .alloc(IrqNumber(1), &CpuMask::of(CpuId::BOOT), false)
        .unwrap();
    assert_eq!(vectors.target(IrqNumber(1)).unwrap().vector, 0x20);
    assert_eq!(
        vectors.reserve_system_vectors(PIC8259_VECTORS),
        Err(VectorError::InUse(0x20))
    );
    assert!(
        vectors.with_matrix_ref(|mx| !mx.is_system(vec_(0x21))),
        "nothing reserved"
    );
    drop(first);
    let fresh =
        Arc::new(VectorDomain::new(m.apic_ops(), &[ApicId(0)], MsiDestFormat::XApic).unwrap());
    fresh.reserve_system_vectors(PIC8259_VECTORS).unwrap();
    fresh.cpu_online(CpuId::BOOT).unwrap();
    fresh
        .alloc(IrqNumber(2), &CpuMask::of(CpuId::BOOT), false)
        .unwrap();
    assert_eq!(fresh.target(IrqNumber(2)).unwrap().vector, 0x30);
}

#[test]
fn register_traits_work_through_arc() {
    let m = Machine::new(&[0]);
    let ports = Arc::new(m.ports());
    Pic8259::new(ports.clone()).remap_and_mask().unwrap();
    assert_eq!(Pic8259::new(ports).masks(), 0xFFFF);
}

#[test]
fn host_default_irq_control_is_the_no_op_and_says_so() {
    // On a hosted target there are no local interrupts; on bare-metal
    // x86_64 the default is `hw::IRQ_CONTROL` (cli/sti).
    let c = IrqControl::default();
    assert!(!(c.save)());
    (c.restore)(false);
}

#[cfg(target_arch = "x86_64")]
#[test]
fn entry_stubs_push_their_vector_at_a_16_byte_stride() {
    use arch_x86::entry::{FIRST_STUB_VECTOR, STUB_STRIDE, stub_address};
    assert_eq!(stub_address(31), None);
    assert_eq!(stub_address(0), None);
    let base = stub_address(FIRST_STUB_VECTOR).unwrap();
    assert_eq!(base % 16, 0);
    for v in FIRST_STUB_VECTOR..=255 {
        let a = stub_address(v).unwrap();
        assert_eq!(a, base + ((v - 32) as usize * STUB_STRIDE) as u64);
        // SAFETY: the stub's first bytes are code in this binary's text
        // section, which is mapped readable.
        let bytes = unsafe { core::slice::from_raw_parts(a as *const u8, 5) };
        // `push imm8` (0x6A, sign-extended) or `push imm32` (0x68).
        let pushed = match bytes[0] {
            0x6A => bytes[1] as i8 as i64,
            0x68 => i32::from_le_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as i64,
            b => panic!("vector {v}: stub starts with {b:#x}"),
        };
        assert_eq!(pushed as u8, v, "stub pushes its vector");
    }
    assert_eq!(arch_x86::entry::undispatched(), 0);
}
