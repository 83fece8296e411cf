//! One error variant per fault (each refusal changes nothing), and a
//! `Display` that says what went wrong and what to do, not the `Debug` form.
mod common;
use common::*;
use irqcore::*;

#[test]
fn each_setup_fault_has_its_own_variant_and_changes_nothing() {
    set_cpu(0);
    let core = core_with_cpus(1);
    let irq = irq_with(&core, RecordingChip::new(), FlowKind::Edge);
    let before = core.snapshot(irq).unwrap();

    let five: Vec<_> = (0..5)
        .map(|i| ChipLevel::new(RecordingChip::new(), HwIrq(i)))
        .collect();
    assert_eq!(
        core.set_chip(irq, five, FlowKind::Edge),
        Err(IrqError::TooManyLevels)
    );
    assert_eq!(
        core.set_irq_settings(irq, LineState::MASKED, LineState::empty()),
        Err(IrqError::InvalidSettings)
    );
    assert_eq!(
        core.reenable_spurious(irq),
        Err(IrqError::NotSpuriousDisabled(irq))
    );
    assert_eq!(
        core.set_managed_affinity(irq, &CpuMask::new()),
        Err(IrqError::InvalidMask)
    );
    assert_eq!(core.snapshot(irq).unwrap(), before);

    core.set_irq_settings(irq, LineState::NO_REQUEST, LineState::empty())
        .unwrap();
    assert_eq!(
        core.request_irq(irq, IrqRequest::new("dev", handled()))
            .err(),
        Some(IrqError::NotRequestable(irq))
    );
    assert!(core.snapshot(irq).unwrap().handlers.is_empty());
}

#[test]
fn each_hotplug_fault_has_its_own_variant() {
    set_cpu(0);
    let core = core_with_cpus(1);
    let cpus = ThreadCpus(core.clone());
    assert_eq!(
        core.cpu_down(CpuId::BOOT, &cpus),
        Err(IrqError::CpuDownSelf(CpuId::BOOT))
    );
    assert_eq!(
        core.cpu_down(CpuId::of::<1>(), &cpus),
        Err(IrqError::CpuNotOnline(CpuId::of::<1>()))
    );
    assert_eq!(
        core.cpu_down(CpuId::of::<16>(), &cpus),
        Err(IrqError::BadCpu(CpuId::of::<16>()))
    );
    assert_eq!(
        core.cpu_up(CpuId::of::<16>(), &cpus),
        Err(IrqError::BadCpu(CpuId::of::<16>()))
    );
    assert_eq!(
        core.cpu_up(CpuId::BOOT, &cpus),
        Err(IrqError::CpuAlreadyOnline(CpuId::BOOT))
    );
    assert_eq!(
        core.cpu_starting(),
        Err(IrqError::UnexpectedCpuStarting(CpuId::BOOT))
    );
    // The last online CPU, taken down from a CPU that is not online (a
    // platform thread): refused as the last one.
    set_cpu(1);
    assert_eq!(
        core.cpu_down(CpuId::BOOT, &cpus),
        Err(IrqError::LastOnlineCpu(CpuId::BOOT))
    );
    set_cpu(0);
    assert!(core.cpu_online(CpuId::BOOT));
}

/// A `CpuControl` whose CPUs never run `cpu_starting`.
struct Silent;
impl CpuControl for Silent {
    fn boot_cpu(&self, _cpu: CpuId) -> Result<(), IrqError> {
        Ok(())
    }
    fn kill_cpu(&self, _cpu: CpuId) -> Result<(), IrqError> {
        Ok(())
    }
}

#[test]
fn a_cpu_that_never_starts_is_its_own_fault_and_is_rolled_back() {
    set_cpu(0);
    let core = core_with_cpus(1);
    assert_eq!(
        core.cpu_up(CpuId::of::<1>(), &Silent),
        Err(IrqError::CpuDidNotStart(CpuId::of::<1>()))
    );
    assert!(!core.cpu_online(CpuId::of::<1>()));
}

#[test]
fn display_says_what_went_wrong_and_names_the_irq() {
    let irq = IrqNumber(42);
    let all = [
        IrqError::UnknownIrq(irq),
        IrqError::HasHandlers(irq),
        IrqError::MissingDevId(irq),
        IrqError::DuplicateDevId(irq),
        IrqError::NotRequestable(irq),
        IrqError::NotShared(irq),
        IrqError::UnbalancedEnable(irq),
        IrqError::DisableDepthOverflow(irq),
        IrqError::NotSpuriousDisabled(irq),
        IrqError::InOwnThread(irq),
    ];
    for e in all {
        let text = e.to_string();
        assert!(text.contains("irq 42"), "{e:?}: {text}");
        assert_ne!(text, format!("{e:?}"), "Display is not Debug");
    }
    // Messages differ: a reader can tell the three request faults apart.
    let texts: std::collections::HashSet<_> = [
        IrqError::MissingDevId(irq),
        IrqError::DuplicateDevId(irq),
        IrqError::NotRequestable(irq),
    ]
    .iter()
    .map(|e| e.to_string())
    .collect();
    assert_eq!(texts.len(), 3);
    assert!(
        IrqError::InInterrupt
            .to_string()
            .contains("disable_irq_nosync")
    );
    assert!(
        IrqError::Chip(ChipError::Busy)
            .to_string()
            .starts_with("the chip refused: ")
    );
}
