//! Properties that need descriptor state no public operation reaches in a
//! test's time (the `sim` feature's test hooks): disable depth overflow and
//! the total count (issue 17).
#![cfg(feature = "sim")]
mod common;
use common::*;
use irqcore::*;

#[test]
fn disable_at_depth_u32_max_is_refused_and_changes_nothing() {
    set_cpu(0);
    let core = core_with_cpus(1);
    let chip = RecordingChip::new();
    let irq = irq_with(&core, chip.clone(), FlowKind::Edge);
    let _r = core
        .request_irq(irq, IrqRequest::new("dev", handled()))
        .unwrap();
    core.test_hook_set_disable_depth(irq, u32::MAX - 1).unwrap();
    core.disable_irq(irq).unwrap();
    assert_eq!(core.snapshot(irq).unwrap().depth, u32::MAX);
    chip.take();
    assert_eq!(
        core.disable_irq(irq),
        Err(IrqError::DisableDepthOverflow(irq))
    );
    assert_eq!(
        core.disable_irq_nosync(irq),
        Err(IrqError::DisableDepthOverflow(irq))
    );
    let s = core.snapshot(irq).unwrap();
    assert_eq!(s.depth, u32::MAX, "unchanged");
    assert!(s.line.contains(LineState::DISABLED));
    assert_eq!(chip.take(), Vec::<&str>::new());
    // Still balanced from there.
    core.enable_irq(irq).unwrap();
    assert_eq!(core.snapshot(irq).unwrap().depth, u32::MAX - 1);
    core.test_hook_set_disable_depth(irq, 1).unwrap();
    core.enable_irq(irq).unwrap();
    let s = core.snapshot(irq).unwrap();
    assert_eq!(s.depth, 0);
    assert!(!s.line.contains(LineState::DISABLED));
}

#[test]
fn total_count_is_the_number_of_handled_arrivals() {
    set_cpu(0);
    let core = core_with_cpus(2);
    for flow in [
        FlowKind::Edge,
        FlowKind::Level,
        FlowKind::FastEoi,
        FlowKind::Simple,
    ] {
        let irq = irq_with(&core, RecordingChip::new(), flow);
        let _r = core
            .request_irq(irq, IrqRequest::new("dev", handled()))
            .unwrap();
        for cpu in [0u32, 1, 1, 0, 1] {
            set_cpu(cpu);
            core.handle_irq(irq).unwrap();
        }
        set_cpu(0);
        assert_eq!(core.test_hook_total_count(irq), Ok(5), "{flow:?}");
        // An arrival while disabled is not handled and not counted.
        core.disable_irq(irq).unwrap();
        core.handle_irq(irq).unwrap();
        assert_eq!(core.test_hook_total_count(irq), Ok(5), "{flow:?}");
        let per_cpu: u64 = (0..2)
            .map(|c| core.irq_count(irq, CpuId::new(c).unwrap()))
            .sum();
        assert_eq!(per_cpu, 5, "{flow:?}");
    }
}
