//! The path a kernel takes with real accessors, on the models: one `Lapic`
//! over "the executing CPU's" xAPIC page, `LapicOps` for the vector domain,
//! a cleanup IPI that the old CPU answers with `run_cleanup`.

mod common;

use arch_x86::model::{Machine, ModelMsr, ModelXApic};
use arch_x86::*;
use common::{THIS_CPU, TestPlatform, as_cpu, vec_};
use irqcore::{
    CoreConfig, CpuId, CpuMask, FlowKind, IrqCore, IrqNumber, IrqRequest, IrqReturn, TriggerType,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

const CLEANUP_VECTOR: arch_x86::Vector = arch_x86::Vector::of::<0xEF>();

type Ops = LapicOps<ModelXApic, ModelMsr, fn() -> CpuId>;

fn this_cpu() -> CpuId {
    CpuId::new(THIS_CPU.with(|c| c.get()).unwrap_or(0) as u32).unwrap()
}

#[test]
fn migration_cleanup_through_a_cleanup_ipi_with_lapic_ops() {
    let ids = [0u32, 1];
    let machine = Machine::new(&ids);
    machine.set_cpu_resolver(Some(Arc::new(|| THIS_CPU.with(|c| c.get()))));
    // Each CPU enables its own APIC through the shared, CPU-local page.
    for cpu in 0..2 {
        as_cpu(cpu, || {
            let l =
                Lapic::init(ApicMode::XApic, machine.local_xapic(), machine.local_msr()).unwrap();
            l.enable(arch_x86::lapic::DEFAULT_SPURIOUS_VECTOR);
        });
    }
    let core = IrqCore::with_config(
        TestPlatform {
            machine: machine.clone(),
            resends: Default::default(),
        },
        CoreConfig {
            capacity: 256,
            nr_cpus: 2,
        },
    );
    let lapic = Lapic::attach(ApicMode::XApic, machine.local_xapic(), machine.local_msr());
    let apic_ids = ids.map(ApicId);
    let ops: Ops = LapicOps::new(
        lapic,
        this_cpu as fn() -> CpuId,
        &apic_ids,
        Some(CLEANUP_VECTOR),
    );
    let vectors = Arc::new(VectorDomain::new(ops, &apic_ids, MsiDestFormat::XApic).unwrap());
    vectors.assign_system_vector(CLEANUP_VECTOR).unwrap();
    for c in 0..2 {
        core.set_cpu_online(CpuId::new(c).unwrap(), true).unwrap();
        vectors.cpu_online(CpuId::new(c).unwrap()).unwrap();
    }
    let idx = machine.add_ioapic(0, 24, 0x20);
    let io = Arc::new(IoApic::new("IO-APIC", machine.ioapic_mmio(idx), 0).unwrap());
    let irq = core.alloc_descs(IrqNumber(32), 1).unwrap();
    let v = vectors
        .alloc(irq, &CpuMask::of(CpuId::BOOT), false)
        .unwrap();
    let pin = io.alloc_pin(irq, 4, TriggerType::EdgeRising, &v).unwrap();
    core.set_chip(irq, vec![pin, v], FlowKind::Edge).unwrap();
    let n = Arc::new(AtomicU32::new(0));
    let n2 = n.clone();
    let h = move |_: IrqNumber| {
        n2.fetch_add(1, Ordering::SeqCst);
        IrqReturn::HANDLED
    };
    as_cpu(0, || {
        core.request_irq(irq, IrqRequest::new("com1", Arc::new(h)))
    })
    .unwrap()
    .leak();

    // The kernel's interrupt entry: vector -> irq -> handle_irq, or the
    // cleanup vector -> run_cleanup (then EOI, as for any system vector).
    let entry = |cpu: usize| {
        as_cpu(cpu, || {
            while let Some(vec) = machine.take_interrupt(cpu) {
                if vec == CLEANUP_VECTOR {
                    vectors.run_cleanup(CpuId::new(cpu as u32).unwrap());
                    vectors.ops().lapic().eoi();
                } else {
                    let irq = vectors
                        .irq_for_vector(CpuId::new(cpu as u32).unwrap(), vec_(vec))
                        .expect("mapped vector");
                    core.handle_irq(irq).unwrap();
                }
            }
        })
    };

    let old = vectors.target(irq).unwrap();
    as_cpu(0, || core.set_affinity(irq, &CpuMask::of(CpuId::of::<1>()))).unwrap();
    let new = vectors.target(irq).unwrap();
    assert_eq!(new.cpu, CpuId::of::<1>());
    assert_ne!(new.vector, CLEANUP_VECTOR, "system vector never handed out");
    machine.set_ioapic_line(idx, 4, true);
    entry(1);
    assert_eq!(n.load(Ordering::SeqCst), 1);
    // The first arrival on CPU 1 sent the cleanup IPI to CPU 0...
    assert!(machine.is_pending(0, CLEANUP_VECTOR));
    assert!(vectors.with_matrix_ref(|m| m.is_allocated(CpuId::BOOT, old.vector)));
    // ...whose handler released the old vector.
    entry(0);
    assert!(!vectors.with_matrix_ref(|m| m.is_allocated(CpuId::BOOT, old.vector)));
    assert!(!machine.is_in_service(0, CLEANUP_VECTOR));
    assert!(
        !machine.is_in_service(1, new.vector),
        "the flow EOIed the device vector"
    );
}
