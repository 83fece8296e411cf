//! Property 8: bad input gets a typed error and leaves the descriptor as it
//! was (compared by snapshot).
mod common;
use common::*;
use irqcore::*;
use std::sync::Arc;

#[test]
fn every_bad_call_is_a_typed_error_with_state_unchanged() {
    set_cpu(0);
    let core = core_with_cpus(2);
    let chip = Arc::new(RecordingChip {
        reject_level: true,
        ..Default::default()
    });
    let irq = irq_with(&core, chip, FlowKind::Edge);
    let reg = core
        .request_irq(
            irq,
            IrqRequest::new("dev", handled())
                .dev_id(DevId(7))
                .flags(RequestFlags::SHARED),
        )
        .unwrap();
    let before = core.snapshot(irq).unwrap();
    let unknown = IrqNumber(4000);

    let cases: Vec<(&str, Result<(), IrqError>, IrqError)> = vec![
        (
            "request unknown",
            core.request_irq_raw(unknown, IrqRequest::new("x", handled()).dev_id(DevId(1))),
            IrqError::UnknownIrq(unknown),
        ),
        (
            "free unknown",
            core.free_irq(unknown, DevId(1)),
            IrqError::UnknownIrq(unknown),
        ),
        (
            "enable unknown",
            core.enable_irq(unknown),
            IrqError::UnknownIrq(unknown),
        ),
        (
            "free wrong dev id",
            core.free_irq(irq, DevId(8)),
            IrqError::NoSuchHandler(irq),
        ),
        (
            "unbalanced enable",
            core.enable_irq(irq),
            IrqError::UnbalancedEnable(irq),
        ),
        (
            "invalid trigger bits",
            TriggerType::from_bits(5).map(|_| ()),
            IrqError::InvalidTrigger,
        ),
        (
            "trigger the chip refuses",
            core.set_trigger(irq, TriggerType::LevelHigh),
            IrqError::InvalidTrigger,
        ),
        (
            "percpu request on global irq",
            core.request_irq_raw(
                irq,
                IrqRequest::new("p", handled())
                    .dev_id(DevId(9))
                    .flags(RequestFlags::PERCPU | RequestFlags::SHARED),
            ),
            IrqError::NotPerCpu(irq),
        ),
        (
            "duplicate dev id",
            core.request_irq_raw(
                irq,
                IrqRequest::new("d", handled())
                    .dev_id(DevId(7))
                    .flags(RequestFlags::SHARED),
            ),
            IrqError::DuplicateDevId(irq),
        ),
        (
            "raw request without dev id",
            core.request_irq_raw(irq, IrqRequest::new("d", handled())),
            IrqError::MissingDevId(irq),
        ),
        (
            "affinity to offline cpu",
            core.set_affinity(irq, &CpuMask::of(CpuId::of::<5>())),
            IrqError::NoOnlineCpu,
        ),
        (
            "affinity to nonexistent cpu",
            core.set_affinity(irq, &CpuMask::of(CpuId::of::<200>())),
            IrqError::InvalidMask,
        ),
        (
            "empty affinity",
            core.set_affinity(irq, &CpuMask::new()),
            IrqError::InvalidMask,
        ),
        (
            "percpu enable on global",
            core.enable_percpu_irq(irq, TriggerType::None),
            IrqError::NotPerCpu(irq),
        ),
        (
            "free desc with handlers",
            core.free_descs(irq, 1),
            IrqError::HasHandlers(irq),
        ),
        (
            "set_chip with handlers",
            core.set_chip(
                irq,
                vec![ChipLevel::new(RecordingChip::new(), HwIrq(0))],
                FlowKind::Level,
            ),
            IrqError::HasHandlers(irq),
        ),
        (
            "alloc taken number",
            core.alloc_desc_at(irq),
            IrqError::AlreadyAllocated(irq),
        ),
        (
            "alloc zero",
            core.alloc_descs(IrqNumber(0), 0).map(|_| ()),
            IrqError::InvalidRange,
        ),
        (
            "alloc beyond capacity",
            core.alloc_desc_at(IrqNumber(5000)),
            IrqError::OutOfRange(IrqNumber(5000)),
        ),
        (
            "alloc too many",
            core.alloc_descs(IrqNumber(0), 5000).map(|_| ()),
            IrqError::NoSpace,
        ),
        (
            "free range with a hole",
            core.free_descs(irq, 2),
            IrqError::UnknownIrq(irq),
        ),
    ];
    for (what, got, want) in cases {
        assert_eq!(got, Err(want), "{what}");
        assert_eq!(
            core.snapshot(irq).unwrap(),
            before,
            "{what} changed the descriptor"
        );
    }
    assert_eq!(core.nr_descs(), 1);

    // Double free of a handler and of a descriptor.
    reg.free().unwrap();
    assert_eq!(
        core.free_irq(irq, DevId(7)),
        Err(IrqError::NoSuchHandler(irq))
    );
    core.free_descs(irq, 1).unwrap();
    assert_eq!(core.free_descs(irq, 1), Err(IrqError::UnknownIrq(irq)));
    assert_eq!(core.nr_descs(), 0);
}

#[test]
fn percpu_descriptor_refuses_global_calls() {
    set_cpu(0);
    let core = core_with_cpus(1);
    let irq = irq_with(&core, RecordingChip::new(), FlowKind::PerCpuDevId);
    let before = core.snapshot(irq).unwrap();
    assert_eq!(
        core.request_irq(irq, IrqRequest::new("t", handled())).err(),
        Some(IrqError::IsPerCpu(irq))
    );
    assert_eq!(core.disable_irq(irq), Err(IrqError::IsPerCpu(irq)));
    assert_eq!(
        core.set_affinity(irq, &CpuMask::of(CpuId::BOOT)),
        Err(IrqError::IsPerCpu(irq))
    );
    assert_eq!(core.snapshot(irq).unwrap(), before);
}

#[test]
fn nesting_disable_depth() {
    set_cpu(0);
    let core = core_with_cpus(1);
    let irq = irq_with(&core, RecordingChip::new(), FlowKind::Edge);
    let (n, h) = counting();
    let _r = core.request_irq(irq, IrqRequest::new("d", h)).unwrap();
    core.disable_irq(irq).unwrap();
    core.disable_irq_nosync(irq).unwrap();
    core.enable_irq(irq).unwrap();
    core.handle_irq(irq).unwrap();
    assert_eq!(
        n.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "still disabled at depth 1"
    );
    core.enable_irq(irq).unwrap();
    core.handle_sw_resend(irq).unwrap();
    assert_eq!(n.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(core.enable_irq(irq), Err(IrqError::UnbalancedEnable(irq)));
}
