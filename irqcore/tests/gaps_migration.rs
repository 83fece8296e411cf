//! Migration off a dying CPU, line by line (issue 17): what the core does
//! to each kind of line when a CPU goes down, checked against Linux's
//! `migrate_one_irq` / `irq_migrate_all_off_this_cpu` and the per-CPU
//! `irq_percpu_disable`:
//!
//! - a per-CPU irq enabled on the dying CPU is disabled there (the chip's
//!   `disable`, or `mask` when it has none);
//! - a line that is not started, or does not target the dying CPU, is not
//!   touched;
//! - a moved line is masked around the re-route unless it already was
//!   masked, and a disabled line stays masked;
//! - a deferred move whose only CPU is the dying one is dropped, and the
//!   irq goes where its affinity says;
//! - a chip out of room on the wanted CPUs is retried once with every
//!   online CPU (affinity broken, reported);
//! - a managed irq left without a CPU is shut down disabled and masked, and
//!   restarted only by a CPU of its own mask.
mod common;
mod watchdog;
use common::*;
use irqcore::*;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use watchdog::{DEADLINE, within};

/// One chip callback as seen by [`MoveChip`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Call {
    Mask,
    Unmask,
    SetAffinity(CpuMask),
    Shutdown,
}

/// A chip that logs its calls, tracks its mask bit, answers `Busy` to the
/// next `busy` moves and `NoSpace` when no CPU of the offered mask has room
/// (CPUs in `full` have none), and otherwise targets the first CPU with
/// room.
#[derive(Default)]
struct MoveChip {
    calls: Mutex<Vec<Call>>,
    masked: AtomicBool,
    busy: AtomicU32,
    full: Mutex<CpuMask>,
}

impl MoveChip {
    fn take(&self) -> Vec<Call> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
    fn rec(&self, c: Call) {
        self.calls.lock().unwrap().push(c);
    }
    fn fill(&self, cpus: impl IntoIterator<Item = u32>) {
        *self.full.lock().unwrap() = CpuMask::from_cpus(cpus.into_iter().map(cpu));
    }
}

impl IrqChip for MoveChip {
    fn name(&self) -> &str {
        "MOVE"
    }
    fn mask(&self, _d: &IrqData<'_>) {
        self.masked.store(true, Ordering::SeqCst);
        self.rec(Call::Mask);
    }
    fn unmask(&self, _d: &IrqData<'_>) {
        self.masked.store(false, Ordering::SeqCst);
        self.rec(Call::Unmask);
    }
    fn shutdown(&self, _d: &IrqData<'_>) {
        self.masked.store(true, Ordering::SeqCst);
        self.rec(Call::Shutdown);
    }
    fn set_affinity(
        &self,
        _d: &IrqData<'_>,
        mask: &CpuMask,
        _force: bool,
    ) -> Result<AffinitySet, ChipError> {
        self.rec(Call::SetAffinity(*mask));
        if self
            .busy
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| b.checked_sub(1))
            .is_ok()
        {
            return Err(ChipError::Busy);
        }
        let room = mask.and_not(&self.full.lock().unwrap());
        let first = room.first().ok_or(ChipError::NoSpace)?;
        Ok(AffinitySet::Applied {
            effective: CpuMask::of(first),
        })
    }
}

fn cpu(n: u32) -> CpuId {
    CpuId::new(n).unwrap()
}

fn cpus(list: &[u32]) -> CpuMask {
    CpuMask::from_cpus(list.iter().map(|&n| cpu(n)))
}

fn cpu_down(core: &Arc<Core>, n: u32) {
    let c = core.clone();
    within(DEADLINE, "cpu_down", move || {
        set_cpu(0);
        c.cpu_down(cpu(n), &ThreadCpus(c.clone()))
    })
    .unwrap();
}

fn cpu_up(core: &Arc<Core>, n: u32) {
    let c = core.clone();
    within(DEADLINE, "cpu_up", move || {
        set_cpu(0);
        c.cpu_up(cpu(n), &ThreadCpus(c.clone()))
    })
    .unwrap();
}

fn broken_reports(core: &Core) -> Vec<IrqNumber> {
    core.platform()
        .events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            IrqEvent::AffinityBroken(irq) => Some(*irq),
            _ => None,
        })
        .collect()
}

/// A started edge line on `MoveChip` with affinity `aff`; the chip's log
/// is cleared.
fn started_on(core: &Core, aff: &[u32]) -> (Arc<MoveChip>, IrqNumber) {
    let chip = Arc::new(MoveChip::default());
    let irq = irq_with(core, chip.clone(), FlowKind::Edge);
    core.request_irq(irq, IrqRequest::new("dev", handled()))
        .unwrap()
        .leak();
    core.set_affinity(irq, &cpus(aff)).unwrap();
    chip.take();
    (chip, irq)
}

/// What the chip of a per-CPU irq enabled on CPUs 0 and 1 sees when CPU 1
/// goes down, and the CPUs it is left enabled on.
fn per_cpu_irq_on_a_dying_cpu(has_disable: bool) -> (Vec<&'static str>, CpuMask) {
    set_cpu(0);
    let core = core_with_cpus(2);
    let chip = Arc::new(RecordingChip {
        has_disable,
        ..RecordingChip::default()
    });
    let irq = irq_with(&core, chip.clone(), FlowKind::PerCpuDevId);
    let _r = core
        .request_irq(
            irq,
            IrqRequest::new("timer", handled()).flags(RequestFlags::PERCPU),
        )
        .unwrap();
    for c in [0, 1] {
        set_cpu(c);
        core.enable_percpu_irq(irq, TriggerType::None).unwrap();
    }
    set_cpu(0);
    chip.take();
    cpu_down(&core, 1);
    (chip.take(), core.snapshot(irq).unwrap().percpu_enabled)
}

#[test]
fn a_per_cpu_irq_is_disabled_on_the_dying_cpu_with_the_chips_disable() {
    // irq_percpu_disable: the chip's disable when it has one, not a mask
    // on top of it.
    let (calls, enabled) = per_cpu_irq_on_a_dying_cpu(true);
    assert_eq!(calls, ["disable"]);
    assert_eq!(enabled, cpus(&[0]), "still enabled on the dying CPU");
}

#[test]
fn a_per_cpu_irq_is_masked_on_the_dying_cpu_when_its_chip_has_no_disable() {
    let (calls, enabled) = per_cpu_irq_on_a_dying_cpu(false);
    assert_eq!(calls, ["mask"], "left enabled on the dying CPU");
    assert_eq!(enabled, cpus(&[0]));
}

#[test]
fn a_line_that_is_not_started_is_left_alone_by_migration() {
    // Linux's migrate_one_irq: "no move required if the interrupt is not
    // started". Its affinity is applied when a handler starts it.
    set_cpu(0);
    let core = core_with_cpus(3);
    let chip = Arc::new(MoveChip::default());
    let irq = irq_with(&core, chip.clone(), FlowKind::Edge);
    core.set_affinity(irq, &cpus(&[1])).unwrap();
    assert_eq!(core.effective_affinity(irq).unwrap(), cpus(&[1]));
    chip.take();
    cpu_down(&core, 1);
    assert_eq!(chip.take(), [], "an unstarted line was re-routed");
    assert_eq!(broken_reports(&core), [], "an unstarted line reported");
    assert_eq!(core.affinity(irq).unwrap(), cpus(&[1]));
}

#[test]
fn a_line_that_does_not_target_the_dying_cpu_is_left_alone() {
    set_cpu(0);
    let core = core_with_cpus(3);
    let (chip, irq) = started_on(&core, &[0, 2]);
    assert_eq!(core.effective_affinity(irq).unwrap(), cpus(&[0]));
    cpu_down(&core, 1);
    assert_eq!(chip.take(), [], "a line on CPU 0 was touched");
    assert_eq!(core.affinity(irq).unwrap(), cpus(&[0, 2]));
    assert_eq!(broken_reports(&core), []);
}

#[test]
fn a_migrated_line_is_masked_around_its_re_route() {
    set_cpu(0);
    let core = core_with_cpus(3);
    let (chip, irq) = started_on(&core, &[1, 2]);
    assert_eq!(core.effective_affinity(irq).unwrap(), cpus(&[1]));
    cpu_down(&core, 1);
    assert_eq!(
        chip.take(),
        [Call::Mask, Call::SetAffinity(cpus(&[2])), Call::Unmask]
    );
    assert!(!chip.masked.load(Ordering::SeqCst));
    assert_eq!(core.effective_affinity(irq).unwrap(), cpus(&[2]));
    assert_eq!(broken_reports(&core), []);
}

#[test]
fn a_disabled_line_stays_masked_through_migration() {
    set_cpu(0);
    let core = core_with_cpus(3);
    let (chip, irq) = started_on(&core, &[1, 2]);
    // Masked at once by the disable (no lazy disable).
    core.set_irq_settings(irq, LineState::DISABLE_UNLAZY, LineState::empty())
        .unwrap();
    core.disable_irq(irq).unwrap();
    assert!(chip.masked.load(Ordering::SeqCst));
    chip.take();
    cpu_down(&core, 1);
    assert_eq!(
        chip.take(),
        [Call::SetAffinity(cpus(&[2]))],
        "a masked line needs no mask bracket"
    );
    assert!(
        chip.masked.load(Ordering::SeqCst),
        "migration unmasked a disabled line"
    );
    assert!(core.snapshot(irq).unwrap().line.contains(LineState::MASKED));
    assert_eq!(core.effective_affinity(irq).unwrap(), cpus(&[2]));
    // It comes back unmasked when the driver enables it.
    core.enable_irq(irq).unwrap();
    assert!(!chip.masked.load(Ordering::SeqCst));
}

#[test]
fn a_deferred_move_only_to_the_dying_cpu_is_dropped_and_the_affinity_used() {
    // irq_fixup_move_pending: a pending mask without an online CPU left is
    // cleared and the irq moves within its affinity mask, unbroken.
    set_cpu(0);
    let core = core_with_cpus(4);
    let (chip, irq) = started_on(&core, &[1, 3]);
    assert_eq!(core.effective_affinity(irq).unwrap(), cpus(&[1]));
    chip.busy.store(1, Ordering::SeqCst);
    core.set_affinity(irq, &cpus(&[1])).unwrap();
    assert!(
        core.snapshot(irq)
            .unwrap()
            .line
            .contains(LineState::MOVE_PENDING)
    );
    chip.take();
    cpu_down(&core, 1);
    assert_eq!(
        chip.take(),
        [Call::Mask, Call::SetAffinity(cpus(&[3])), Call::Unmask]
    );
    assert_eq!(core.effective_affinity(irq).unwrap(), cpus(&[3]));
    assert_eq!(core.affinity(irq).unwrap(), cpus(&[1, 3]));
    assert_eq!(broken_reports(&core), [], "its affinity still had CPU 3");
    assert!(
        !core
            .snapshot(irq)
            .unwrap()
            .line
            .contains(LineState::MOVE_PENDING)
    );
}

#[test]
fn a_chip_out_of_room_on_the_wanted_cpus_is_retried_with_every_online_cpu() {
    // Linux: -ENOSPC on the affinity's online CPUs breaks the affinity and
    // retries with the whole online mask.
    set_cpu(0);
    let core = core_with_cpus(4);
    let (chip, irq) = started_on(&core, &[1, 2]);
    chip.fill([2]);
    cpu_down(&core, 1);
    let online = cpus(&[0, 2, 3]);
    assert_eq!(
        chip.take(),
        [
            Call::Mask,
            Call::SetAffinity(cpus(&[2])),
            Call::SetAffinity(online),
            Call::Unmask
        ]
    );
    assert_eq!(core.effective_affinity(irq).unwrap(), cpus(&[0]));
    assert_eq!(core.affinity(irq).unwrap(), online);
    assert_eq!(broken_reports(&core), [irq], "the affinity was broken");
}

#[test]
fn a_chip_out_of_room_on_every_online_cpu_is_asked_once() {
    // Already broken to the whole online mask: there is nothing wider to
    // retry with.
    set_cpu(0);
    let core = core_with_cpus(3);
    let (chip, irq) = started_on(&core, &[1]);
    chip.fill([0, 2]);
    cpu_down(&core, 1);
    assert_eq!(
        chip.take(),
        [Call::Mask, Call::SetAffinity(cpus(&[0, 2])), Call::Unmask]
    );
    // The chip refused: the descriptor still says what the hardware does.
    assert_eq!(core.effective_affinity(irq).unwrap(), cpus(&[1]));
    assert_eq!(broken_reports(&core), [irq]);
}

/// A managed irq whose only CPU is 1, started, with a counting handler.
fn managed_on_cpu_1(core: &Core) -> (Arc<MoveChip>, IrqNumber, Arc<std::sync::atomic::AtomicU64>) {
    let chip = Arc::new(MoveChip::default());
    let irq = irq_with(core, chip.clone(), FlowKind::Edge);
    core.set_managed_affinity(irq, &cpus(&[1])).unwrap();
    let (n, h) = counting();
    core.request_irq(irq, IrqRequest::new("nvme", h))
        .unwrap()
        .leak();
    assert!(
        core.snapshot(irq)
            .unwrap()
            .line
            .contains(LineState::STARTED)
    );
    chip.take();
    (chip, irq, n)
}

#[test]
fn a_managed_irq_shut_down_with_its_last_cpu_is_disabled_and_masked() {
    // irq_shutdown: the line is marked disabled and masked, so an event
    // that still arrives (from another CPU) does not run the handler.
    set_cpu(0);
    let core = core_with_cpus(3);
    let (chip, irq, n) = managed_on_cpu_1(&core);
    cpu_down(&core, 1);
    assert_eq!(chip.take(), [Call::Shutdown]);
    let s = core.snapshot(irq).unwrap();
    assert!(
        s.line
            .contains(LineState::MANAGED_SHUTDOWN | LineState::DISABLED | LineState::MASKED),
        "{:?}",
        s.line
    );
    assert!(!s.line.contains(LineState::STARTED));
    core.handle_irq(irq).unwrap();
    assert_eq!(n.load(Ordering::SeqCst), 0, "handler ran while shut down");
    assert!(chip.masked.load(Ordering::SeqCst));
    assert!(
        !chip.take().contains(&Call::Unmask),
        "the arrival unmasked a shut-down line"
    );
    cpu_up(&core, 1);
    let s = core.snapshot(irq).unwrap();
    assert!(s.line.contains(LineState::STARTED) && s.depth == 0);
    assert!(!s.line.contains(LineState::DISABLED | LineState::MASKED));
    core.handle_irq(irq).unwrap();
    assert!(n.load(Ordering::SeqCst) >= 1, "not restarted");
}

#[test]
fn a_managed_irq_is_restarted_only_by_a_cpu_of_its_own_mask() {
    set_cpu(0);
    let core = core_with_cpus(3);
    let (_chip, irq, _n) = managed_on_cpu_1(&core);
    cpu_down(&core, 1);
    // The driver disables it too while it is shut down: two disables
    // outstanding, the shutdown's and the driver's.
    core.disable_irq(irq).unwrap();
    assert_eq!(core.snapshot(irq).unwrap().depth, 2);
    cpu_down(&core, 2);
    cpu_up(&core, 2);
    let s = core.snapshot(irq).unwrap();
    assert!(
        s.line.contains(LineState::MANAGED_SHUTDOWN) && !s.line.contains(LineState::STARTED),
        "CPU 2, outside its mask, undid the shutdown: {:?}",
        s.line
    );
    assert_eq!(s.depth, 2, "CPU 2 took back a disable");
    // Its own CPU undoes the shutdown's disable, not the driver's.
    cpu_up(&core, 1);
    let s = core.snapshot(irq).unwrap();
    assert!(!s.line.contains(LineState::MANAGED_SHUTDOWN));
    assert!(!s.line.contains(LineState::STARTED) && s.depth == 1);
    core.enable_irq(irq).unwrap();
    let s = core.snapshot(irq).unwrap();
    assert!(s.line.contains(LineState::STARTED) && s.depth == 0);
}

#[test]
fn a_cpu_coming_up_does_not_undo_a_drivers_disable_of_an_ordinary_irq() {
    set_cpu(0);
    let core = core_with_cpus(3);
    let (_chip, irq) = started_on(&core, &[1, 2]);
    core.disable_irq(irq).unwrap();
    cpu_down(&core, 1);
    cpu_up(&core, 1);
    let s = core.snapshot(irq).unwrap();
    assert_eq!(s.depth, 1, "the driver's disable was undone");
    assert!(s.line.contains(LineState::DISABLED));
    core.enable_irq(irq).unwrap();
    assert_eq!(core.snapshot(irq).unwrap().depth, 0);
}
