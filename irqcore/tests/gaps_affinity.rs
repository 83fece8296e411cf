//! The deferred half of "last affinity request wins" (issue 17): a chip
//! that answers `Busy` (its previous move is unfinished, like the x86
//! vector domain) makes the core defer a request to the next safe point.
//! A later direct change must cancel the deferred one, a safe point that
//! finds the chip still busy must keep the move for the next one, and a
//! move still pending when CPUs go down must not target them.
mod common;
mod watchdog;
use common::*;
use irqcore::*;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use watchdog::{DEADLINE, within};

/// Refuses the next `busy` set_affinity calls with `Busy`, then targets
/// the first CPU of the mask it is given.
#[derive(Default)]
struct BusyChip {
    busy: AtomicU32,
    target: Mutex<Option<CpuId>>,
    asked: Mutex<Vec<CpuMask>>,
    /// Declares `ChipFlags::MOVE_UNMASKED`.
    move_unmasked: bool,
    /// `mask`, `unmask` and `set_affinity` calls, in order.
    calls: Mutex<Vec<&'static str>>,
}

impl BusyChip {
    fn refuse_next(&self, n: u32) {
        self.busy.store(n, Ordering::SeqCst);
    }
    fn target(&self) -> Option<CpuId> {
        *self.target.lock().unwrap()
    }
}

impl IrqChip for BusyChip {
    fn name(&self) -> &str {
        "BUSY"
    }
    fn flags(&self) -> ChipFlags {
        if self.move_unmasked {
            ChipFlags::MOVE_UNMASKED
        } else {
            ChipFlags::empty()
        }
    }
    fn mask(&self, _d: &IrqData<'_>) {
        self.calls.lock().unwrap().push("mask");
    }
    fn unmask(&self, _d: &IrqData<'_>) {
        self.calls.lock().unwrap().push("unmask");
    }
    fn set_affinity(
        &self,
        _d: &IrqData<'_>,
        mask: &CpuMask,
        _force: bool,
    ) -> Result<AffinitySet, ChipError> {
        self.calls.lock().unwrap().push("set_affinity");
        self.asked.lock().unwrap().push(*mask);
        if self
            .busy
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| b.checked_sub(1))
            .is_ok()
        {
            return Err(ChipError::Busy);
        }
        let first = mask.first().ok_or(ChipError::Invalid)?;
        *self.target.lock().unwrap() = Some(first);
        Ok(AffinitySet::Applied {
            effective: CpuMask::of(first),
        })
    }
}

fn setup(ncpus: u32) -> (Arc<Core>, Arc<BusyChip>, IrqNumber) {
    setup_with(ncpus, BusyChip::default())
}

fn setup_with(ncpus: u32, chip: BusyChip) -> (Arc<Core>, Arc<BusyChip>, IrqNumber) {
    set_cpu(0);
    let core = core_with_cpus(ncpus);
    let chip = Arc::new(chip);
    let irq = irq_with(&core, chip.clone(), FlowKind::Edge);
    core.request_irq(irq, IrqRequest::new("dev", handled()))
        .unwrap()
        .leak();
    assert_eq!(chip.target(), Some(CpuId::BOOT), "started on CPU 0");
    (core, chip, irq)
}

fn move_pending(core: &Core, irq: IrqNumber) -> bool {
    core.snapshot(irq)
        .unwrap()
        .line
        .contains(LineState::MOVE_PENDING)
}

#[test]
fn a_busy_chip_defers_the_request_to_the_next_safe_point() {
    let (core, chip, irq) = setup(4);
    chip.refuse_next(1);
    core.set_affinity(irq, &CpuMask::of(CpuId::of::<2>()))
        .unwrap();
    assert!(move_pending(&core, irq));
    assert_eq!(chip.target(), Some(CpuId::BOOT), "not applied yet");
    core.handle_irq(irq).unwrap();
    assert_eq!(
        chip.target(),
        Some(CpuId::of::<2>()),
        "applied at the safe point"
    );
    assert!(!move_pending(&core, irq));
    assert_eq!(core.affinity(irq).unwrap(), CpuMask::of(CpuId::of::<2>()));
    assert_eq!(
        core.effective_affinity(irq).unwrap(),
        CpuMask::of(CpuId::of::<2>())
    );
}

/// The chip calls around a deferred move applied at the next interrupt.
fn calls_of_a_deferred_move(move_unmasked: bool) -> Vec<&'static str> {
    let (core, chip, irq) = setup_with(
        4,
        BusyChip {
            move_unmasked,
            ..BusyChip::default()
        },
    );
    chip.refuse_next(1);
    core.set_affinity(irq, &CpuMask::of(CpuId::of::<2>()))
        .unwrap();
    chip.calls.lock().unwrap().clear();
    core.handle_irq(irq).unwrap();
    assert_eq!(chip.target(), Some(CpuId::of::<2>()));
    chip.calls.lock().unwrap().clone()
}

#[test]
fn a_deferred_move_is_applied_with_the_line_masked() {
    // Linux's irq_move_masked_irq: the route changes while the line is
    // masked, so the chip never delivers under a half-written route.
    assert_eq!(
        calls_of_a_deferred_move(false),
        ["mask", "set_affinity", "unmask"]
    );
}

#[test]
fn a_move_unmasked_chip_is_moved_without_the_mask_bracket() {
    // A virtual GIC whose emulated disable drops what it queued
    // (`ChipFlags::MOVE_UNMASKED`, arch-arm64 on Xen).
    assert_eq!(calls_of_a_deferred_move(true), ["set_affinity"]);
}

#[test]
fn a_direct_change_cancels_an_older_deferred_one() {
    let (core, chip, irq) = setup(4);
    chip.refuse_next(1);
    core.set_affinity(irq, &CpuMask::of(CpuId::of::<1>()))
        .unwrap();
    assert!(move_pending(&core, irq));
    // The chip is free again: this one is applied at once and is the last.
    core.set_affinity(irq, &CpuMask::of(CpuId::of::<2>()))
        .unwrap();
    assert_eq!(chip.target(), Some(CpuId::of::<2>()));
    assert!(
        !move_pending(&core, irq),
        "the older deferred move survived"
    );
    core.handle_irq(irq).unwrap();
    assert_eq!(
        chip.target(),
        Some(CpuId::of::<2>()),
        "the older request won"
    );
    assert_eq!(core.affinity(irq).unwrap(), CpuMask::of(CpuId::of::<2>()));
}

#[test]
fn a_later_deferred_request_replaces_an_earlier_one() {
    let (core, chip, irq) = setup(4);
    chip.refuse_next(2);
    core.set_affinity(irq, &CpuMask::of(CpuId::of::<1>()))
        .unwrap();
    core.set_affinity(irq, &CpuMask::of(CpuId::of::<3>()))
        .unwrap();
    core.handle_irq(irq).unwrap();
    assert_eq!(chip.target(), Some(CpuId::of::<3>()));
    assert!(
        !chip
            .asked
            .lock()
            .unwrap()
            .iter()
            .skip(3)
            .any(|m| m.contains(CpuId::of::<1>())),
        "the intermediate CPU was programmed"
    );
}

#[test]
fn a_safe_point_that_finds_the_chip_busy_keeps_the_move_for_the_next_one() {
    let (core, chip, irq) = setup(4);
    // Refused at the request and at the first safe point.
    chip.refuse_next(2);
    core.set_affinity(irq, &CpuMask::of(CpuId::of::<3>()))
        .unwrap();
    core.handle_irq(irq).unwrap();
    assert_eq!(chip.target(), Some(CpuId::BOOT));
    assert!(move_pending(&core, irq), "the retry was dropped");
    core.handle_irq(irq).unwrap();
    assert_eq!(
        chip.target(),
        Some(CpuId::of::<3>()),
        "applied at the next one"
    );
    assert!(!move_pending(&core, irq));
    assert_eq!(core.affinity(irq).unwrap(), CpuMask::of(CpuId::of::<3>()));
}

fn cpu_down(core: &Arc<Core>, cpu: u32) {
    let c = core.clone();
    within(DEADLINE, "cpu_down", move || {
        set_cpu(0);
        c.cpu_down(CpuId::new(cpu).unwrap(), &ThreadCpus(c.clone()))
    })
    .unwrap();
}

fn broken_affinity_reports(core: &Core) -> usize {
    core.platform()
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, IrqEvent::AffinityBroken(_)))
        .count()
}

/// The irq runs on CPU 2 with a move to CPU 3 pending; CPU 2 goes down:
/// the migration honours the pending request (no broken affinity).
#[test]
fn a_pending_move_is_where_migration_takes_the_irq_when_its_cpu_goes_down() {
    let (core, chip, irq) = setup(4);
    core.set_affinity(irq, &CpuMask::of(CpuId::of::<2>()))
        .unwrap();
    chip.refuse_next(1);
    core.set_affinity(irq, &CpuMask::of(CpuId::of::<3>()))
        .unwrap();
    assert!(move_pending(&core, irq));
    cpu_down(&core, 2);
    assert_eq!(chip.target(), Some(CpuId::of::<3>()));
    assert_eq!(
        core.effective_affinity(irq).unwrap(),
        CpuMask::of(CpuId::of::<3>())
    );
    assert_eq!(core.affinity(irq).unwrap(), CpuMask::of(CpuId::of::<3>()));
    assert!(!move_pending(&core, irq));
    assert_eq!(broken_affinity_reports(&core), 0);
    core.handle_irq(irq).unwrap();
    assert_eq!(chip.target(), Some(CpuId::of::<3>()));
}

/// A move pending to a CPU that goes down (the irq runs elsewhere) is
/// dropped: nothing is ever programmed to target the offline CPU.
#[test]
fn a_pending_move_to_a_cpu_that_goes_down_is_dropped() {
    let (core, chip, irq) = setup(4);
    chip.refuse_next(1);
    core.set_affinity(irq, &CpuMask::of(CpuId::of::<2>()))
        .unwrap();
    assert!(move_pending(&core, irq));
    cpu_down(&core, 2);
    assert!(!move_pending(&core, irq), "stale move kept");
    core.handle_irq(irq).unwrap();
    let t = chip.target().unwrap();
    assert!(core.cpu_online(t), "programmed to offline {t:?}");
    assert_eq!(t, CpuId::BOOT, "moved although nothing asked for it");
}

/// A move pending to {1, 3} when CPU 1 goes down: the safe point applies
/// it to the CPUs of the mask still online, never to CPU 1.
#[test]
fn a_pending_move_applies_only_to_its_online_cpus() {
    let (core, chip, irq) = setup(4);
    chip.refuse_next(1);
    core.set_affinity(
        irq,
        &CpuMask::from_cpus([CpuId::of::<1>(), CpuId::of::<3>()]),
    )
    .unwrap();
    cpu_down(&core, 1);
    core.handle_irq(irq).unwrap();
    assert_eq!(chip.target(), Some(CpuId::of::<3>()));
    assert!(
        chip.asked
            .lock()
            .unwrap()
            .iter()
            .skip(2)
            .all(|m| !m.contains(CpuId::of::<1>())),
        "offline CPU 1 offered to the chip: {:?}",
        chip.asked.lock().unwrap()
    );
}
