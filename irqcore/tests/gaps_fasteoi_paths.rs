//! fasteoi and per-CPU cases off the common path (issue 17's mutation
//! survivors in `flow.rs`), each Linux's `handle_fasteoi_irq` /
//! `handle_percpu_irq` / `handle_percpu_devid_irq` behaviour: the oneshot
//! mask and the EOI, a replay on a chip that EOIs per CPU, shared per-CPU
//! lines, and threads woken only on request.
mod common;
use common::*;
use irqcore::*;
use std::sync::Arc;
use std::sync::atomic::Ordering;

fn chip_with(flags: ChipFlags) -> Arc<RecordingChip> {
    Arc::new(RecordingChip {
        flags,
        can_retrigger: true,
        ..Default::default()
    })
}

/// A oneshot fasteoi line is masked for the run; when the primary handler
/// handles it without waking the thread, the flow EOIs and unmasks at once.
fn oneshot_handled_by_the_primary_is_unmasked(flags: ChipFlags) {
    set_cpu(0);
    let core = core_with_cpus(1);
    let chip = chip_with(flags);
    let irq = irq_with(&core, chip.clone(), FlowKind::FastEoi);
    let split = Arc::new(Split::default());
    let _r = core
        .request_irq(
            irq,
            IrqRequest::new("dev", split.clone())
                .flags(RequestFlags::THREADED | RequestFlags::ONESHOT),
        )
        .unwrap();
    chip.take();
    core.handle_irq(irq).unwrap();
    assert_eq!(split.primaries.load(Ordering::SeqCst), 1);
    assert!(take_woken(&core).is_empty());
    assert_eq!(
        chip.take(),
        ["mask", "eoi", "unmask"],
        "{flags:?}: handled by the primary, the oneshot line must not stay masked"
    );
}

#[test]
fn a_oneshot_fasteoi_line_handled_by_the_primary_is_unmasked() {
    oneshot_handled_by_the_primary_is_unmasked(ChipFlags::empty());
}

#[test]
fn a_oneshot_fasteoi_line_of_a_per_cpu_eoi_chip_handled_by_the_primary_is_unmasked() {
    oneshot_handled_by_the_primary_is_unmasked(ChipFlags::EOI_PER_CPU);
}

#[test]
fn a_oneshot_fasteoi_line_is_eoied_before_its_thread_and_unmasked_after() {
    set_cpu(0);
    let core = core_with_cpus(1);
    let chip = chip_with(ChipFlags::empty());
    let irq = irq_with(&core, chip.clone(), FlowKind::FastEoi);
    let split = Arc::new(Split::default());
    split.wake.store(true, Ordering::SeqCst);
    let _r = core
        .request_irq(
            irq,
            IrqRequest::new("dev", split.clone())
                .flags(RequestFlags::THREADED | RequestFlags::ONESHOT),
        )
        .unwrap();
    chip.take();
    core.handle_irq(irq).unwrap();
    assert_eq!(
        chip.take(),
        ["mask", "eoi"],
        "EOI at the end of the flow (the chip is not EOI_THREADED)"
    );
    let wakes = take_woken(&core);
    assert_eq!(wakes.len(), 1);
    core.run_thread(irq, wakes[0]).unwrap();
    assert_eq!(split.threads.load(Ordering::SeqCst), 1);
    assert_eq!(chip.take(), ["unmask"], "unmasked when the thread is done");
}

#[test]
fn a_replay_on_a_per_cpu_eoi_chip_clears_replay_so_the_next_one_is_replayed_too() {
    set_cpu(0);
    let core = core_with_cpus(1);
    let chip = chip_with(ChipFlags::EOI_PER_CPU);
    let irq = irq_with(&core, chip.clone(), FlowKind::FastEoi);
    let (n, h) = counting();
    let _r = core.request_irq(irq, IrqRequest::new("dev", h)).unwrap();
    for round in 1..=2u64 {
        core.disable_irq(irq).unwrap();
        core.handle_irq(irq).unwrap();
        chip.take();
        core.enable_irq(irq).unwrap();
        assert!(
            chip.take().contains(&"retrigger"),
            "round {round}: the interrupt that arrived while disabled is not replayed"
        );
        core.handle_irq(irq).unwrap();
        assert_eq!(n.load(Ordering::SeqCst), round);
        let s = core.snapshot(irq).unwrap();
        assert!(
            !s.delivery
                .intersects(DeliveryFlags::REPLAY | DeliveryFlags::PENDING),
            "round {round}: {:?} left after the replay ran",
            s.delivery
        );
    }
}

#[test]
fn every_handler_of_a_shared_per_cpu_line_runs() {
    set_cpu(0);
    let core = core_with_cpus(1);
    let irq = irq_with(&core, RecordingChip::new(), FlowKind::PerCpu);
    let f = RequestFlags::PERCPU | RequestFlags::SHARED;
    let (a, ha) = counting();
    let (b, hb) = counting();
    let _a = core
        .request_irq(irq, IrqRequest::new("a", ha).flags(f))
        .unwrap();
    let _b = core
        .request_irq(irq, IrqRequest::new("b", hb).flags(f))
        .unwrap();
    core.enable_percpu_irq(irq, TriggerType::None).unwrap();
    core.handle_irq(irq).unwrap();
    assert_eq!((a.load(Ordering::SeqCst), b.load(Ordering::SeqCst)), (1, 1));
}

#[test]
fn a_per_cpu_devid_thread_is_woken_only_when_its_primary_asks() {
    set_cpu(0);
    let core = core_with_cpus(1);
    let irq = irq_with(&core, RecordingChip::new(), FlowKind::PerCpuDevId);
    let split = Arc::new(Split::default());
    let _r = core
        .request_irq(
            irq,
            IrqRequest::new("timer", split.clone())
                .flags(RequestFlags::PERCPU | RequestFlags::THREADED),
        )
        .unwrap();
    core.enable_percpu_irq(irq, TriggerType::None).unwrap();
    core.handle_irq(irq).unwrap();
    assert_eq!(split.primaries.load(Ordering::SeqCst), 1);
    assert!(take_woken(&core).is_empty(), "woken although handled");
    split.wake.store(true, Ordering::SeqCst);
    core.handle_irq(irq).unwrap();
    assert_eq!(take_woken(&core).len(), 1);
}

#[test]
fn a_per_cpu_devid_arrival_without_a_handler_disables_it_on_that_cpu_once() {
    set_cpu(0);
    let core = core_with_cpus(2);
    let chip = RecordingChip::new();
    let irq = irq_with(&core, chip.clone(), FlowKind::PerCpuDevId);
    // Enabled on CPUs 0 and 1 with no handler installed.
    for cpu in [0, 1] {
        set_cpu(cpu);
        core.enable_percpu_irq(irq, TriggerType::None).unwrap();
    }
    set_cpu(0);
    chip.take();
    core.handle_irq(irq).unwrap();
    assert!(chip.take().contains(&"mask"), "left enabled on CPU 0");
    let s = core.snapshot(irq).unwrap();
    assert!(!s.percpu_enabled.contains(CpuId::BOOT));
    assert!(
        s.percpu_enabled.contains(CpuId::of::<1>()),
        "only CPU 0's instance"
    );
    let spurious = |core: &Core| {
        core.platform()
            .events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| matches!(e, IrqEvent::SpuriousPerCpu(..)))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        spurious(&core),
        [IrqEvent::SpuriousPerCpu(irq, CpuId::BOOT)]
    );
    // Already disabled there: a second arrival reports nothing new.
    core.handle_irq(irq).unwrap();
    assert_eq!(spurious(&core).len(), 1);
}
