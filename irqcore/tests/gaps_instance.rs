//! Building an `IrqCore` (issue 17): the CPU count a configuration asks
//! for, and handles without a device id of their own.
mod common;
use common::*;
use irqcore::cpumask::MAX_CPUS;
use irqcore::*;

fn nr_cpus_of(nr_cpus: u32) -> u32 {
    IrqCore::with_config(
        TestPlatform::default(),
        CoreConfig {
            capacity: 64,
            nr_cpus,
        },
    )
    .nr_cpus()
}

#[test]
fn the_cpu_count_is_what_was_asked_within_max_cpus() {
    let max = MAX_CPUS as u32;
    assert_eq!(nr_cpus_of(1), 1);
    assert_eq!(nr_cpus_of(64), 64);
    assert_eq!(nr_cpus_of(max), max);
    assert_eq!(nr_cpus_of(0), max, "0 means every CPU id");
    assert_eq!(nr_cpus_of(max + 1), max, "clamped");
    assert_eq!(nr_cpus_of(u32::MAX), max, "clamped");
    assert_eq!(IrqCore::new(TestPlatform::default()).nr_cpus(), 64);
}

#[test]
fn handlers_without_a_device_id_never_take_a_drivers_id() {
    // `request_irq` without `dev_id` invents one; a driver's own small ids
    // on the same shared line must stay its own.
    set_cpu(0);
    let core = core_with_cpus(1);
    let irq = irq_with(&core, RecordingChip::new(), FlowKind::Level);
    let shared = |name| IrqRequest::new(name, handled()).flags(RequestFlags::SHARED);
    let auto: Vec<_> = (0..3)
        .map(|_| core.request_irq(irq, shared("auto")).unwrap())
        .collect();
    for id in 0..4 {
        core.request_irq_raw(irq, shared("driver").dev_id(DevId(id)))
            .unwrap_or_else(|e| panic!("DevId({id}) taken: {e:?}"));
    }
    for id in 0..4 {
        core.free_irq(irq, DevId(id)).unwrap();
    }
    for r in auto {
        r.free().unwrap();
    }
}
