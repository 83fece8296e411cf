//! Flow-handler semantics: exact chip sequences, lost edges, live-lock
//! avoidance, lazy disable.
mod common;
use common::*;
use irqcore::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};

fn sequence(flow: FlowKind) -> (Vec<&'static str>, Vec<&'static str>) {
    set_cpu(0);
    let core = core_with_cpus(1);
    let chip = RecordingChip::new();
    let irq = irq_with(&core, chip.clone(), flow);
    let percpu = matches!(flow, FlowKind::PerCpu | FlowKind::PerCpuDevId);
    let mut req = IrqRequest::new("dev", handled());
    if percpu {
        req = req.flags(RequestFlags::PERCPU);
    }
    let reg = core.request_irq(irq, req).unwrap();
    if percpu {
        core.enable_percpu_irq(irq, TriggerType::None).unwrap();
    }
    let setup = chip.take();
    core.handle_irq(irq).unwrap();
    let seq = chip.take();
    drop(reg);
    (setup, seq)
}

#[test]
fn chip_sequence_of_every_flow() {
    assert_eq!(sequence(FlowKind::Edge), (vec!["startup"], vec!["ack"]));
    assert_eq!(
        sequence(FlowKind::Level),
        (vec!["startup"], vec!["mask_ack", "unmask"])
    );
    assert_eq!(sequence(FlowKind::FastEoi), (vec!["startup"], vec!["eoi"]));
    assert_eq!(
        sequence(FlowKind::PerCpu),
        (vec!["unmask"], vec!["ack", "eoi"])
    );
    assert_eq!(
        sequence(FlowKind::PerCpuDevId),
        (vec!["unmask"], vec!["ack", "eoi"])
    );
    assert_eq!(sequence(FlowKind::Simple).1, Vec::<&str>::new());
}

#[test]
fn bad_flow_counts_and_reports() {
    set_cpu(0);
    let core = core_with_cpus(1);
    let irq = core.alloc_descs(IrqNumber(0), 1).unwrap();
    core.handle_irq(irq).unwrap();
    assert_eq!(core.irq_count(irq, CpuId::BOOT), 1);
    assert_eq!(
        *core.platform().events.lock().unwrap(),
        vec![IrqEvent::BadIrq(irq)]
    );
    assert_eq!(
        core.handle_irq(IrqNumber(999)),
        Err(IrqError::UnknownIrq(IrqNumber(999)))
    );
}

/// A chip whose effective affinity is the whole requested mask (logical or
/// cluster destination mode), so no single-target wait applies.
struct MultiTargetChip(RecordingChip);
impl IrqChip for MultiTargetChip {
    fn name(&self) -> &str {
        "MULTI"
    }
    fn mask(&self, d: &IrqData<'_>) {
        self.0.mask(d)
    }
    fn unmask(&self, d: &IrqData<'_>) {
        self.0.unmask(d)
    }
    fn ack(&self, d: &IrqData<'_>) {
        self.0.ack(d)
    }
    fn mask_ack(&self, d: &IrqData<'_>) {
        self.0.mask_ack(d)
    }
    fn set_affinity(
        &self,
        _d: &IrqData<'_>,
        m: &CpuMask,
        _f: bool,
    ) -> Result<AffinitySet, ChipError> {
        Ok(AffinitySet::Applied { effective: *m })
    }
}

/// Seed 004: handler in progress on CPU 0, affinity moves, the same event
/// arrives on CPU 1. Returns how many times the handler ran.
fn lost_edge_scenario(flow: FlowKind) -> (u64, bool) {
    let core = core_with_cpus(2);
    set_cpu(0);
    let chip = Arc::new(MultiTargetChip(RecordingChip::default()));
    let irq = irq_with(&core, chip, flow);
    let entered = Arc::new(Barrier::new(2));
    let release = Arc::new(Barrier::new(2));
    let calls = Arc::new(AtomicU64::new(0));
    let (e, r, c) = (entered.clone(), release.clone(), calls.clone());
    let handler: Arc<dyn IrqHandler> = Arc::new(move |_irq| {
        if c.fetch_add(1, Ordering::SeqCst) == 0 {
            e.wait();
            r.wait();
        }
        IrqReturn::HANDLED
    });
    let _reg = core
        .request_irq(irq, IrqRequest::new("blkfront", handler))
        .unwrap();
    let pending_seen = std::thread::scope(|s| {
        let c0 = core.clone();
        let t0 = s.spawn(move || {
            set_cpu(0);
            c0.handle_irq(irq).unwrap();
        });
        entered.wait();
        // The handler runs on CPU 0; move the irq so CPU 1 may take it.
        set_cpu(1);
        core.set_affinity(irq, &CpuMask::from_cpus([CpuId::BOOT, CpuId::of::<1>()]))
            .unwrap();
        core.handle_irq(irq).unwrap();
        let pending = core
            .snapshot(irq)
            .unwrap()
            .delivery
            .contains(DeliveryFlags::PENDING);
        release.wait();
        t0.join().unwrap();
        pending
    });
    (calls.load(Ordering::SeqCst), pending_seen)
}

#[test]
fn edge_flow_does_not_lose_an_event_arriving_during_a_move() {
    let (calls, pending) = lost_edge_scenario(FlowKind::Edge);
    assert!(pending, "the second event must be recorded as pending");
    assert_eq!(calls, 2, "the handler must run again for the second event");
}

#[test]
fn level_flow_loses_the_same_event() {
    // This is why Xen event channels (logically edges) must never use the
    // level flow: the second event was acked and dropped.
    let (calls, _) = lost_edge_scenario(FlowKind::Level);
    assert_eq!(calls, 1);
}

#[test]
fn no_live_lock_after_a_single_target_move() {
    let core = core_with_cpus(2);
    set_cpu(0);
    let chip = RecordingChip::new();
    let irq = irq_with(&core, chip, FlowKind::Edge);
    core.set_affinity(irq, &CpuMask::of(CpuId::BOOT)).unwrap();
    let entered = Arc::new(Barrier::new(2));
    let moved = Arc::new(AtomicBool::new(false));
    let on_cpu = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let (e, m, oc) = (entered.clone(), moved.clone(), on_cpu.clone());
    let first = Arc::new(AtomicBool::new(true));
    let handler: Arc<dyn IrqHandler> = Arc::new(move |_irq| {
        let cpu = common_cpu();
        oc[cpu].fetch_add(1, Ordering::SeqCst);
        if first.swap(false, Ordering::SeqCst) {
            e.wait();
            // Keep running until the move happened and CPU 1 started firing.
            while !m.load(Ordering::SeqCst) {
                std::hint::spin_loop();
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        IrqReturn::HANDLED
    });
    let _reg = core
        .request_irq(irq, IrqRequest::new("hot", handler))
        .unwrap();
    const ARRIVALS: u64 = if cfg!(miri) { 50 } else { 2000 };
    std::thread::scope(|s| {
        let c0 = core.clone();
        let t0 = s.spawn(move || {
            set_cpu(0);
            c0.handle_irq(irq).unwrap();
        });
        entered.wait();
        set_cpu(1);
        core.set_affinity(irq, &CpuMask::of(CpuId::of::<1>()))
            .unwrap();
        moved.store(true, Ordering::SeqCst);
        for _ in 0..ARRIVALS {
            core.handle_irq(irq).unwrap();
        }
        t0.join().unwrap();
    });
    let (c0, c1) = (
        on_cpu[0].load(Ordering::SeqCst),
        on_cpu[1].load(Ordering::SeqCst),
    );
    // CPU 0 finished its one invocation instead of looping on CPU 1's
    // arrivals, and CPU 1 handled every arrival itself.
    assert_eq!(c0, 1, "old CPU kept looping");
    assert_eq!(c1, ARRIVALS, "new CPU lost or deferred arrivals");
    assert!(!core.snapshot(irq).unwrap().line.contains(LineState::MASKED));
}

fn common_cpu() -> usize {
    TestPlatform::default().current_cpu().index()
}

fn lazy_disable(retrigger: bool) {
    set_cpu(0);
    let core = core_with_cpus(1);
    let chip = Arc::new(RecordingChip {
        can_retrigger: retrigger,
        ..Default::default()
    });
    let irq = irq_with(&core, chip.clone(), FlowKind::Edge);
    let (n, h) = counting();
    let _reg = core.request_irq(irq, IrqRequest::new("dev", h)).unwrap();
    chip.take();
    core.disable_irq(irq).unwrap();
    assert_eq!(chip.take(), Vec::<&str>::new(), "disable must be lazy");
    core.handle_irq(irq).unwrap();
    assert_eq!(chip.take(), vec!["mask_ack"]);
    let snap = core.snapshot(irq).unwrap();
    assert!(
        snap.delivery.contains(DeliveryFlags::PENDING) && snap.line.contains(LineState::MASKED)
    );
    assert_eq!(n.load(Ordering::SeqCst), 0);
    core.enable_irq(irq).unwrap();
    if retrigger {
        assert_eq!(chip.take(), vec!["unmask", "retrigger"]);
        assert!(core.platform().resends.lock().unwrap().is_empty());
        // The hardware re-raises it.
        core.handle_irq(irq).unwrap();
    } else {
        assert_eq!(chip.take(), vec!["unmask"]);
        assert_eq!(*core.platform().resends.lock().unwrap(), vec![irq]);
        core.handle_sw_resend(irq).unwrap();
    }
    assert_eq!(n.load(Ordering::SeqCst), 1);
    // Nothing is left to replay.
    let snap = core.snapshot(irq).unwrap();
    assert!(
        !snap
            .delivery
            .intersects(DeliveryFlags::PENDING | DeliveryFlags::REPLAY)
    );
}

#[test]
fn lazy_disable_replays_with_hardware_retrigger() {
    lazy_disable(true);
}

#[test]
fn lazy_disable_replays_with_software_resend() {
    lazy_disable(false);
}

#[test]
fn unlazy_line_masks_at_disable() {
    set_cpu(0);
    let core = core_with_cpus(1);
    let chip = RecordingChip::new();
    let irq = irq_with(&core, chip.clone(), FlowKind::Edge);
    core.set_irq_settings(irq, LineState::DISABLE_UNLAZY, LineState::empty())
        .unwrap();
    let _reg = core
        .request_irq(irq, IrqRequest::new("dev", handled()))
        .unwrap();
    chip.take();
    core.disable_irq(irq).unwrap();
    assert_eq!(chip.take(), vec!["mask"]);
}

/// A fasteoi chip that records, at each `eoi`, whether the descriptor lock
/// was held and whether the handler had run.
#[cfg(feature = "sim")]
struct EoiProbe {
    flags: ChipFlags,
    core: std::sync::OnceLock<std::sync::Weak<Core>>,
    handler_ran: AtomicBool,
    /// (lock held, handler had run) at each `eoi`.
    eois: std::sync::Mutex<Vec<(bool, bool)>>,
}

#[cfg(feature = "sim")]
impl IrqChip for EoiProbe {
    fn name(&self) -> &str {
        "eoi-probe"
    }
    fn flags(&self) -> ChipFlags {
        self.flags
    }
    fn mask(&self, _d: &IrqData<'_>) {}
    fn unmask(&self, _d: &IrqData<'_>) {}
    fn eoi(&self, d: &IrqData<'_>) {
        let core = self.core.get().and_then(std::sync::Weak::upgrade).unwrap();
        let locked = core.test_hook_desc_locked(d.irq()).unwrap();
        let ran = self.handler_ran.swap(false, Ordering::SeqCst);
        self.eois.lock().unwrap().push((locked, ran));
    }
}

/// (lock held, handler had run) at each EOI of two fasteoi interrupts on a
/// chip with `flags`.
#[cfg(feature = "sim")]
fn fasteoi_eoi_context(flags: ChipFlags) -> Vec<(bool, bool)> {
    set_cpu(0);
    let core = core_with_cpus(1);
    let chip = Arc::new(EoiProbe {
        flags,
        core: std::sync::OnceLock::new(),
        handler_ran: AtomicBool::new(false),
        eois: std::sync::Mutex::new(Vec::new()),
    });
    chip.core.set(Arc::downgrade(&core)).ok().unwrap();
    let irq = irq_with(&core, chip.clone(), FlowKind::FastEoi);
    let c = chip.clone();
    let handler: Arc<dyn IrqHandler> = Arc::new(move |_| {
        c.handler_ran.store(true, Ordering::SeqCst);
        IrqReturn::HANDLED
    });
    let _reg = core
        .request_irq(irq, IrqRequest::new("dev", handler))
        .unwrap();
    core.handle_irq(irq).unwrap();
    core.handle_irq(irq).unwrap();
    chip.eois.lock().unwrap().clone()
}

#[cfg(feature = "sim")]
#[test]
fn fasteoi_eoi_of_a_per_cpu_eoi_chip_comes_after_the_handler_without_the_lock() {
    assert_eq!(
        fasteoi_eoi_context(ChipFlags::EOI_PER_CPU),
        vec![(false, true), (false, true)],
        "one EOI per interrupt, after the handler, without the descriptor lock"
    );
}

#[cfg(feature = "sim")]
#[test]
fn fasteoi_eoi_of_other_chips_stays_under_the_lock() {
    assert_eq!(
        fasteoi_eoi_context(ChipFlags::empty()),
        vec![(true, true), (true, true)],
        "one EOI per interrupt, after the handler, under the descriptor lock"
    );
}

#[test]
fn fasteoi_resends_arrival_during_move_when_asked() {
    fasteoi_resends_arrival_during_move(ChipFlags::empty());
}

/// The same with the EOI outside the lock: the arrival on the other CPU
/// flags the run (`RUN_ATTN`), which then ends under the lock and resends.
#[test]
fn fasteoi_resends_arrival_during_move_with_per_cpu_eoi() {
    fasteoi_resends_arrival_during_move(ChipFlags::EOI_PER_CPU);
}

fn fasteoi_resends_arrival_during_move(flags: ChipFlags) {
    let core = core_with_cpus(2);
    set_cpu(0);
    let chip = Arc::new(RecordingChip {
        flags,
        ..RecordingChip::default()
    });
    let irq = irq_with(&core, chip.clone(), FlowKind::FastEoi);
    core.set_irq_settings(irq, LineState::RESEND_WHEN_IN_PROGRESS, LineState::empty())
        .unwrap();
    let entered = Arc::new(Barrier::new(2));
    let release = Arc::new(Barrier::new(2));
    let (e, r) = (entered.clone(), release.clone());
    let first = Arc::new(AtomicBool::new(true));
    let handler: Arc<dyn IrqHandler> = Arc::new(move |_| {
        if first.swap(false, Ordering::SeqCst) {
            e.wait();
            r.wait();
        }
        IrqReturn::HANDLED
    });
    let _reg = core
        .request_irq(irq, IrqRequest::new("msi", handler))
        .unwrap();
    std::thread::scope(|s| {
        let c0 = core.clone();
        let t = s.spawn(move || {
            set_cpu(0);
            c0.handle_irq(irq).unwrap();
        });
        entered.wait();
        set_cpu(1);
        core.handle_irq(irq).unwrap();
        release.wait();
        t.join().unwrap();
    });
    // The arrival on CPU 1 found the line in progress on CPU 0: recorded
    // and replayed in software (the chip cannot retrigger) by the
    // dispatcher itself before CPU 0's handle_irq returned.
    assert_eq!(
        core.irq_count(irq, CpuId::BOOT) + core.irq_count(irq, CpuId::of::<1>()),
        2,
        "the arrival during the move was handled once more"
    );
    assert_eq!(
        core.snapshot(irq).unwrap().delivery & (DeliveryFlags::PENDING | DeliveryFlags::SW_RESEND),
        DeliveryFlags::empty()
    );
    // Each of the two hardware arrivals and the replay completes once.
    let eois = chip.take().iter().filter(|c| **c == "eoi").count();
    assert_eq!(eois, 3, "one EOI per arrival and per replay");
}

#[test]
fn interrupt_table_lists_counts_chip_flow_and_name() {
    let core = core_with_cpus(2);
    set_cpu(0);
    let irq = irq_with(&core, RecordingChip::new(), FlowKind::Edge);
    let _r = core
        .request_irq(irq, IrqRequest::new("uart", common::handled()))
        .unwrap();
    core.handle_irq(irq).unwrap();
    set_cpu(1);
    core.handle_irq(irq).unwrap();
    core.handle_irq(irq).unwrap();
    let t = core.interrupt_table().to_string();
    let line = t.lines().find(|l| l.contains("uart")).expect(&t);
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        fields[..3],
        [format!("{}:", irq.0).as_str(), "1", "2"],
        "{t}"
    );
    assert!(line.contains("REC") && line.contains("edge"), "{t}");
    assert!(t.lines().next().unwrap().contains("CPU1"));
}
