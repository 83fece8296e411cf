//! Hotplug and lock-order gaps of issue 17: allocation from each phase of
//! a CPU going down (the dying CPU's own callback must get an error, never
//! deadlock), and the lock-order checker refusing two locks of one class.
mod common;
mod watchdog;
use common::*;
use irqcore::hotplug::HotplugCtx;
use irqcore::*;
use std::sync::{Arc, Mutex};
use watchdog::{DEADLINE, bounded, within};

/// A backend that allocates (and frees again) a descriptor from its `down`
/// callback, recording where it ran and what the allocation returned.
/// (phase, CPU it ran on, what the allocation returned).
type Seen = (CpuPhase, CpuId, Result<IrqNumber, IrqError>);

#[derive(Default)]
struct AllocOnDown {
    seen: Mutex<Vec<Seen>>,
}
impl HotplugCallback<TestPlatform> for AllocOnDown {
    fn name(&self) -> &str {
        "alloc-on-down"
    }
    fn up(&self, _ctx: &HotplugCtx<'_, TestPlatform>) -> Result<(), IrqError> {
        Ok(())
    }
    fn down(&self, ctx: &HotplugCtx<'_, TestPlatform>) {
        let r = ctx.core.alloc_descs(IrqNumber(500), 1);
        if let Ok(irq) = r {
            ctx.core.free_descs(irq, 1).unwrap();
        }
        let on = ctx.core.platform().current_cpu();
        self.seen.lock().unwrap().push((ctx.phase, on, r));
    }
}

#[test]
fn allocating_from_each_down_phase_fails_fast_where_the_sparse_lock_is_held() {
    bounded("cpu_down with allocating callbacks", || {
        set_cpu(0);
        let core = core_with_cpus(3);
        let cb = Arc::new(AllocOnDown::default());
        for phase in [
            CpuPhase::Prepare,
            CpuPhase::BringUp,
            CpuPhase::Starting,
            CpuPhase::Online,
        ] {
            core.register_hotplug(phase, cb.clone()).unwrap();
        }
        let before = core.nr_descs();
        let c = core.clone();
        within(DEADLINE, "cpu_down(1)", move || {
            set_cpu(0);
            c.cpu_down(CpuId::of::<1>(), &ThreadCpus(c.clone()))
        })
        .unwrap();
        assert!(!core.cpu_online(CpuId::of::<1>()));
        let seen = cb.seen.lock().unwrap().clone();
        let held = Err(IrqError::SparseLockHeldByCaller);
        assert_eq!(seen.len(), 4, "{seen:?}");
        // Down order: Online (pre-down), Starting (dying, on the dying CPU),
        // BringUp (dead), Prepare (post-dead).
        assert_eq!((seen[0].0, seen[0].1), (CpuPhase::Online, CpuId::BOOT));
        assert!(seen[0].2.is_ok(), "pre-down runs without the lock");
        assert_eq!(
            (seen[1].0, seen[1].1, seen[1].2),
            (CpuPhase::Starting, CpuId::of::<1>(), held),
            "the dying CPU's own allocation must fail at once"
        );
        assert_eq!(
            (seen[2].0, seen[2].1, seen[2].2),
            (CpuPhase::BringUp, CpuId::BOOT, held)
        );
        assert_eq!((seen[3].0, seen[3].1), (CpuPhase::Prepare, CpuId::BOOT));
        assert!(seen[3].2.is_ok(), "post-dead runs without the lock");
        assert_eq!(core.nr_descs(), before);
        // Nothing was left locked or marked.
        core.alloc_descs(IrqNumber(0), 1).unwrap();
        set_cpu(1);
        assert!(core.alloc_descs(IrqNumber(0), 1).is_ok());
        set_cpu(0);
        let c = core.clone();
        within(DEADLINE, "cpu_down(2)", move || {
            set_cpu(0);
            c.cpu_down(CpuId::of::<2>(), &ThreadCpus(c.clone()))
        })
        .unwrap();
    });
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "irqcore lock order violation")]
fn two_locks_of_one_class_are_refused() {
    let order = LockOrder::new();
    let _a = order.acquire(CpuId::of::<3>(), LockClass::Descriptor);
    let _b = order.acquire(CpuId::of::<3>(), LockClass::Descriptor);
}

#[test]
fn the_same_class_on_two_cpus_and_after_a_release_is_fine() {
    let order = LockOrder::new();
    let a = order.acquire(CpuId::BOOT, LockClass::Descriptor);
    let _b = order.acquire(CpuId::of::<1>(), LockClass::Descriptor);
    drop(a);
    let _c = order.acquire(CpuId::BOOT, LockClass::Descriptor);
    let _d = order.acquire(CpuId::BOOT, LockClass::Chip);
}

/// A chip whose `set_type` reconfigures another irq: two descriptor locks
/// nested on one CPU (the order between two descriptors is undefined, so
/// two CPUs doing this crosswise deadlock).
struct NestingChip {
    core: std::sync::OnceLock<Arc<Core>>,
    other: std::sync::OnceLock<IrqNumber>,
}
impl IrqChip for NestingChip {
    fn name(&self) -> &str {
        "NEST"
    }
    fn mask(&self, _d: &IrqData<'_>) {}
    fn unmask(&self, _d: &IrqData<'_>) {}
    fn set_type(&self, _d: &IrqData<'_>, _t: TriggerType) -> Result<(), ChipError> {
        let (core, other) = (self.core.get().unwrap(), *self.other.get().unwrap());
        let _ = core.set_irq_settings(other, LineState::DISABLE_UNLAZY, LineState::empty());
        Ok(())
    }
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "irqcore lock order violation")]
fn a_chip_callback_taking_another_descriptor_lock_is_refused() {
    set_cpu(0);
    let core = core_with_cpus(1);
    let chip = Arc::new(NestingChip {
        core: Default::default(),
        other: Default::default(),
    });
    let _ = chip.core.set(core.clone());
    let a = irq_with(&core, chip.clone(), FlowKind::Edge);
    let b = irq_with(&core, RecordingChip::new(), FlowKind::Edge);
    let _ = chip.other.set(b);
    let _ = core.set_trigger(a, TriggerType::EdgeRising);
}

/// What an allocation from a thread playing another CPU returned; `None`
/// if it had not answered within the bound (it waits for the sparse lock).
type Answer = Option<Result<IrqNumber, IrqError>>;

/// A `BringUp` ("dead") callback that, with the sparse lock held for the
/// CPU being taken down, has that CPU allocate (it must be refused at
/// once: the lock is held on its behalf) and starts a bystander CPU
/// allocating (it must wait for the lock, not be refused).
#[derive(Default)]
struct AskTheDeadCpu {
    core: std::sync::OnceLock<Arc<Core>>,
    bystander: u32,
    dead_answer: Mutex<Vec<Answer>>,
    bystander_thread: Mutex<Option<std::thread::JoinHandle<Result<IrqNumber, IrqError>>>>,
}
impl HotplugCallback<TestPlatform> for AskTheDeadCpu {
    fn name(&self) -> &str {
        "ask-the-dead-cpu"
    }
    fn up(&self, _ctx: &HotplugCtx<'_, TestPlatform>) -> Result<(), IrqError> {
        Ok(())
    }
    fn down(&self, ctx: &HotplugCtx<'_, TestPlatform>) {
        let alloc_on = |cpu: u32| {
            let core = self.core.get().unwrap().clone();
            std::thread::spawn(move || {
                set_cpu(cpu);
                core.alloc_descs(IrqNumber(600), 1)
            })
        };
        let bystander = alloc_on(self.bystander);
        *self.bystander_thread.lock().unwrap() = Some(bystander);
        let (tx, rx) = std::sync::mpsc::channel();
        let dead = ctx.cpu.get();
        let core = self.core.get().unwrap().clone();
        std::thread::spawn(move || {
            set_cpu(dead);
            let _ = tx.send(core.alloc_descs(IrqNumber(700), 1));
        });
        // Bounded: the wrong answer is a wait for the lock we hold.
        let answer = rx.recv_timeout(std::time::Duration::from_secs(2)).ok();
        self.dead_answer.lock().unwrap().push(answer);
    }
}

#[test]
fn the_cpu_being_taken_down_is_refused_the_sparse_lock_held_for_it_and_only_it() {
    // The dead phase walks descriptors with the sparse lock held on behalf
    // of the CPU going away: that CPU (still executing until the kernel
    // parks it) must get an error, not wait; any other CPU just waits.
    bounded("cpu_down with a dead-phase allocation", || {
        set_cpu(0);
        let core = core_with_cpus(3);
        let cb = Arc::new(AskTheDeadCpu {
            bystander: 1,
            ..AskTheDeadCpu::default()
        });
        let _ = cb.core.set(core.clone());
        core.register_hotplug(CpuPhase::BringUp, cb.clone())
            .unwrap();
        let c = core.clone();
        within(DEADLINE, "cpu_down(2)", move || {
            set_cpu(0);
            c.cpu_down(CpuId::of::<2>(), &ThreadCpus(c.clone()))
        })
        .unwrap();
        let answers = cb.dead_answer.lock().unwrap().clone();
        assert_eq!(
            answers,
            [Some(Err(IrqError::SparseLockHeldByCaller))],
            "CPU 2 (going down) was not refused at once"
        );
        let bystander = cb.bystander_thread.lock().unwrap().take().unwrap();
        let got = within(DEADLINE, "bystander allocation", move || {
            bystander.join().unwrap()
        });
        assert!(got.is_ok(), "bystander CPU 1 refused: {got:?}");
    });
}
