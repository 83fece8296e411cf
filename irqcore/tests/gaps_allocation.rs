//! Allocation edges the mutation run found unpinned (issue 17): the last
//! valid irq range, a range handle's numbers, and what a descriptor costs.
mod common;
use common::*;
use irqcore::*;

#[test]
fn a_range_ending_at_the_last_irq_number_is_a_valid_range() {
    set_cpu(0);
    let core = core_with_cpus(2);
    // Ends exactly at 2^32: a valid range (the store's capacity refuses
    // it, with its own error), not a range running past the last number.
    let last = core.alloc_descs(IrqNumber(u32::MAX), 1);
    assert!(last.is_err());
    assert_ne!(last, Err(IrqError::InvalidRange));
    let two = core.alloc_descs(IrqNumber(u32::MAX - 1), 2);
    assert!(two.is_err());
    assert_ne!(two, Err(IrqError::InvalidRange));
    // One past: the range itself is wrong.
    assert_eq!(
        core.alloc_descs(IrqNumber(u32::MAX), 2),
        Err(IrqError::InvalidRange)
    );
    assert_eq!(
        core.alloc_descs(IrqNumber(1), 0),
        Err(IrqError::InvalidRange)
    );
}

#[test]
fn a_range_handle_names_each_of_its_numbers() {
    set_cpu(0);
    let core = core_with_cpus(2);
    let range = core.alloc_desc_range(IrqNumber(1), 3).unwrap();
    let first = range.first();
    assert_eq!(range.get(0), Some(first));
    assert_eq!(range.get(2), Some(IrqNumber(first.0 + 2)));
    assert_eq!(range.get(3), None);
}

#[test]
fn a_descriptor_costs_its_line_plus_one_counter_per_cpu() {
    set_cpu(0);
    let sized = |nr_cpus| {
        IrqCore::with_config(
            TestPlatform::default(),
            CoreConfig {
                capacity: 4096,
                nr_cpus,
            },
        )
        .bytes_per_descriptor()
    };
    let (four, eight) = (sized(4), sized(8));
    // Per-CPU counters: 8 bytes per CPU (CPU masks stay inside the
    // descriptor up to 64 CPUs).
    assert_eq!(eight - four, 4 * 8);
    // At least the descriptor's hot cache line, and issue #21's budget.
    assert!((64..=256).contains(&four), "{four} B with 4 CPUs");
    // The descriptor is whole 64-byte lines (it is cache-line aligned) and
    // the store holds one pointer to it.
    assert_eq!(
        (four - 4 * 8) % 64,
        std::mem::size_of::<usize>(),
        "{four} B with 4 CPUs is not whole lines + counters + the store's pointer"
    );
    // Above 64 CPUs the four CPU masks move out of the descriptor.
    let (sixty_four, many) = (sized(64), sized(128));
    assert_eq!(
        many - sixty_four,
        64 * 8 + 4 * std::mem::size_of::<CpuMask>(),
        "64 more counters and the masks on the heap"
    );
}

#[test]
fn a_desc_range_debug_names_its_numbers() {
    set_cpu(0);
    let core = core_with_cpus(1);
    let range = core.alloc_desc_range(IrqNumber(40), 3).unwrap();
    let first = range.first();
    let shown = format!("{range:?}");
    assert!(
        shown.starts_with("DescRange")
            && shown.contains(&format!("{first:?}"))
            && shown.contains("count: 3"),
        "{shown}"
    );
}
