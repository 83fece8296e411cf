//! Linux semantics and soundness: one named test per defect of issue #16.
//! Each scenario is written from genirq's documented behaviour and drives
//! irqcore through its public API only.
mod common;
use common::*;
use irqcore::hotplug::HotplugCtx;
use irqcore::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

/// Runs `f` on its own thread and fails the test if it has not finished
/// within `secs` (a deadlock must fail, not hang the suite). On a timeout
/// the stuck thread is leaked.
fn within<R: Send + 'static>(secs: u64, what: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(Ok(r)) => r,
        Ok(Err(p)) => std::panic::resume_unwind(p),
        Err(_) => panic!("{what}: no progress in {secs} s (deadlock)"),
    }
}

/// A chip whose bus lock can be made to wait: the slow-bus lock is where a
/// configuration call may sleep, between computing its inputs and taking
/// the descriptor lock.
#[derive(Default)]
struct SlowBusChip {
    inner: TargetChip,
    hold: Mutex<Option<(Arc<Barrier>, Arc<Barrier>)>>,
}

impl IrqChip for SlowBusChip {
    fn name(&self) -> &str {
        "SLOWBUS"
    }
    fn mask(&self, _d: &IrqData<'_>) {}
    fn unmask(&self, _d: &IrqData<'_>) {}
    fn bus_lock(&self, _d: &IrqData<'_>) {
        let hold = self.hold.lock().unwrap().take();
        if let Some((entered, release)) = hold {
            entered.wait();
            release.wait();
        }
    }
    fn set_affinity(
        &self,
        d: &IrqData<'_>,
        mask: &CpuMask,
        force: bool,
    ) -> Result<AffinitySet, ChipError> {
        self.inner.set_affinity(d, mask, force)
    }
}

// ----- 1. set_affinity vs cpu_down -------------------------------------------

#[test]
fn set_affinity_racing_cpu_down_never_targets_an_offline_cpu() {
    let core = core_with_cpus(3);
    set_cpu(0);
    let chip = Arc::new(SlowBusChip::default());
    let irq = irq_with(&core, chip.clone(), FlowKind::Edge);
    let _r = core
        .request_irq(irq, IrqRequest::new("dev", handled()))
        .unwrap();
    let entered = Arc::new(Barrier::new(2));
    let release = Arc::new(Barrier::new(2));
    *chip.hold.lock().unwrap() = Some((entered.clone(), release.clone()));
    let c = core.clone();
    // CPU 0 asks for CPU 1 and stalls on the slow bus ...
    let t = std::thread::spawn(move || {
        set_cpu(0);
        c.set_affinity(irq, &CpuMask::of(CpuId::of::<1>()))
    });
    entered.wait();
    // ... while CPU 2 takes CPU 1 down.
    set_cpu(2);
    core.cpu_down(CpuId::of::<1>(), &ThreadCpus(core.clone()))
        .unwrap();
    release.wait();
    let r = t.join().unwrap();
    let programmed = chip.inner.target.lock().unwrap().unwrap();
    assert!(
        !programmed.contains(CpuId::of::<1>()),
        "the chip targets offline CPU 1 (call returned {r:?})"
    );
    assert_eq!(
        r,
        Err(IrqError::NoOnlineCpu),
        "no CPU of the mask is online"
    );
    assert!(
        !core
            .effective_affinity(irq)
            .unwrap()
            .contains(CpuId::of::<1>())
    );
}

// ----- 2. stale software resend -----------------------------------------------

#[test]
fn stale_software_resend_never_reaches_the_next_owner() {
    let core = core_with_cpus(1);
    set_cpu(0);
    // No hardware retrigger: the replay goes through the software resend.
    let irq = irq_with(&core, RecordingChip::new(), FlowKind::Edge);
    let first = core
        .request_irq(irq, IrqRequest::new("old", handled()))
        .unwrap();
    core.disable_irq(irq).unwrap();
    core.handle_irq(irq).unwrap(); // arrives while disabled: PENDING
    core.enable_irq(irq).unwrap(); // replay queued, platform told
    assert_eq!(*core.platform().resends.lock().unwrap(), vec![irq]);
    drop(first); // freed before the kernel got to the resend
    let (calls, next) = counting();
    let _second = core.request_irq(irq, IrqRequest::new("new", next)).unwrap();
    // The kernel's softirq now delivers the resend it was told about.
    core.handle_sw_resend(irq).unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "the new owner got an interrupt meant for the freed handler"
    );
    assert_eq!(core.dropped_resends(), 1, "the cancelled resend is counted");
}

#[test]
fn queued_software_resend_runs_exactly_once() {
    let core = core_with_cpus(1);
    set_cpu(0);
    let irq = irq_with(&core, RecordingChip::new(), FlowKind::Edge);
    let (calls, h) = counting();
    let _r = core.request_irq(irq, IrqRequest::new("dev", h)).unwrap();
    core.disable_irq(irq).unwrap();
    core.handle_irq(irq).unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    core.enable_irq(irq).unwrap();
    core.handle_sw_resend(irq).unwrap();
    core.handle_sw_resend(irq).unwrap(); // a second path to the same resend
    core.run_resends().unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1, "replayed exactly once");
    assert_eq!(core.dropped_resends(), 0);
}

// ----- 3. unbalanced enable on managed shutdown -------------------------------

#[test]
fn unbalanced_enable_on_a_managed_shutdown_line_is_refused() {
    let core = core_with_cpus(2);
    set_cpu(0);
    let irq = irq_with(&core, Arc::new(TargetChip::default()), FlowKind::Edge);
    core.set_managed_affinity(irq, &CpuMask::of(CpuId::of::<1>()))
        .unwrap();
    let _r = core
        .request_irq(irq, IrqRequest::new("queue1", handled()))
        .unwrap();
    let ctl = ThreadCpus(core.clone());
    core.cpu_down(CpuId::of::<1>(), &ctl).unwrap();
    let before = core.snapshot(irq).unwrap();
    assert!(before.line.contains(LineState::MANAGED_SHUTDOWN));
    assert_eq!(before.depth, 1);
    // The driver never disabled it: every enable is unbalanced.
    for _ in 0..2 {
        assert_eq!(core.enable_irq(irq), Err(IrqError::UnbalancedEnable(irq)));
        assert_eq!(core.snapshot(irq).unwrap(), before, "state unchanged");
    }
    core.cpu_up(CpuId::of::<1>(), &ctl).unwrap();
    let after = core.snapshot(irq).unwrap();
    assert_eq!(after.depth, 0);
    assert!(after.line.contains(LineState::STARTED));
    assert!(!after.line.contains(LineState::DISABLED));
}

#[test]
fn a_driver_disable_survives_managed_shutdown_and_balances_exactly() {
    let core = core_with_cpus(2);
    set_cpu(0);
    let irq = irq_with(&core, Arc::new(TargetChip::default()), FlowKind::Edge);
    core.set_managed_affinity(irq, &CpuMask::of(CpuId::of::<1>()))
        .unwrap();
    let _r = core
        .request_irq(irq, IrqRequest::new("queue1", handled()))
        .unwrap();
    let ctl = ThreadCpus(core.clone());
    core.disable_irq(irq).unwrap();
    core.cpu_down(CpuId::of::<1>(), &ctl).unwrap();
    assert_eq!(core.snapshot(irq).unwrap().depth, 2);
    core.enable_irq(irq).unwrap(); // the driver's own disable
    assert_eq!(core.enable_irq(irq), Err(IrqError::UnbalancedEnable(irq)));
    assert_eq!(core.snapshot(irq).unwrap().depth, 1);
    core.cpu_up(CpuId::of::<1>(), &ctl).unwrap();
    assert_eq!(core.snapshot(irq).unwrap().depth, 0);
    assert_eq!(core.enable_irq(irq), Err(IrqError::UnbalancedEnable(irq)));
}

#[test]
fn enable_does_not_undo_the_spurious_detectors_disable() {
    let core = core_with_cpus(1);
    set_cpu(0);
    let irq = irq_with(&core, RecordingChip::new(), FlowKind::Level);
    let _r = core
        .request_irq(irq, IrqRequest::new("stuck", Arc::new(|_| IrqReturn::NONE)))
        .unwrap();
    for _ in 0..100_000 {
        core.handle_irq(irq).unwrap();
    }
    assert!(core.is_spurious_disabled(irq).unwrap());
    let before = core.snapshot(irq).unwrap();
    assert_eq!(core.enable_irq(irq), Err(IrqError::UnbalancedEnable(irq)));
    assert_eq!(core.snapshot(irq).unwrap(), before);
    core.reenable_spurious(irq).unwrap();
    assert_eq!(core.snapshot(irq).unwrap().depth, 0);
}

// ----- 4. cpu_down vs a CPU waiting for the sparse lock -----------------------

/// Boots and kills simulated CPUs: the new CPU runs `cpu_starting` on its
/// own simulator thread.
struct SimCpus {
    core: Arc<IrqCore<irqcore::sim::SimPlatform>>,
}
impl CpuControl for SimCpus {
    fn boot_cpu(&self, cpu: CpuId) -> Result<(), IrqError> {
        let core = self.core.clone();
        self.core
            .platform()
            .on_cpu(cpu, move || core.cpu_starting())
            .map_err(|_| IrqError::BadCpu(cpu))?
    }
    fn kill_cpu(&self, _cpu: CpuId) -> Result<(), IrqError> {
        Ok(())
    }
}

#[test]
fn cpu_hotplug_completes_while_another_cpu_loops_alloc_and_free() {
    within(120, "hotplug vs allocation", || {
        use irqcore::sim::SimMachine;
        let machine = SimMachine::new(4);
        let p = machine.platform();
        let core = Arc::new(IrqCore::with_config(
            p.clone(),
            CoreConfig {
                capacity: 4096,
                nr_cpus: 4,
            },
        ));
        for c in 0..4 {
            core.set_cpu_online(CpuId::new(c).unwrap(), true).unwrap();
        }
        let allocs = AtomicU64::new(0);
        let hotplugs = AtomicU64::new(0);
        let started = Barrier::new(2);
        std::thread::scope(|s| {
            s.spawn(|| {
                p.on_cpu(CpuId::of::<1>(), || {
                    started.wait();
                    for _ in 0..3_000 {
                        let irq = core.alloc_descs(IrqNumber(64), 4).unwrap();
                        core.free_descs(irq, 4).unwrap();
                        allocs.fetch_add(1, Ordering::Relaxed);
                    }
                })
                .unwrap()
            });
            s.spawn(|| {
                let ctl = SimCpus { core: core.clone() };
                p.on_cpu(CpuId::BOOT, || {
                    started.wait();
                    for _ in 0..20 {
                        for c in [2, 3] {
                            core.cpu_down(CpuId::new(c).unwrap(), &ctl).unwrap();
                            core.cpu_up(CpuId::new(c).unwrap(), &ctl).unwrap();
                            hotplugs.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
                .unwrap()
            });
        });
        assert_eq!(allocs.load(Ordering::Relaxed), 3_000);
        assert_eq!(hotplugs.load(Ordering::Relaxed), 40);
        assert_eq!(core.online_cpus().weight(), 4);
        assert_eq!(core.nr_descs(), 0);
        drop(core);
        drop(machine);
    });
}

#[test]
fn the_dying_cpu_holds_the_sparse_lock_for_its_callbacks() {
    // Seed 000 on the way down: a `Starting` ("dying") callback that
    // allocates gets a typed error at once, and the CPU still goes down.
    #[derive(Default)]
    struct Dying(Mutex<Vec<(bool, Option<IrqError>)>>);
    impl HotplugCallback<TestPlatform> for Dying {
        fn name(&self) -> &str {
            "dying"
        }
        fn up(&self, _ctx: &HotplugCtx<'_, TestPlatform>) -> Result<(), IrqError> {
            Ok(())
        }
        fn down(&self, ctx: &HotplugCtx<'_, TestPlatform>) {
            let held = ctx.core.sparse_lock_held();
            let e = ctx.core.alloc_descs(IrqNumber(0), 1).err();
            self.0.lock().unwrap().push((held, e));
        }
    }
    let core = core_with_cpus(2);
    set_cpu(0);
    let cb = Arc::new(Dying::default());
    core.register_hotplug(CpuPhase::Starting, cb.clone())
        .unwrap();
    let n = core.nr_descs();
    within(30, "dying callback allocating", {
        let core = core.clone();
        move || {
            set_cpu(0);
            core.cpu_down(CpuId::of::<1>(), &ThreadCpus(core.clone()))
                .unwrap()
        }
    });
    let seen = cb.0.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].0, "sparse lock held in the dying phase");
    assert_eq!(
        seen[0].1,
        Some(IrqError::SparseLockHeldByCaller),
        "{seen:?}"
    );
    assert_eq!(core.nr_descs(), n);
    assert!(!core.cpu_online(CpuId::of::<1>()));
}

// ----- 5. calls from a handler ------------------------------------------------

#[test]
fn free_irq_from_its_own_handler_is_refused_and_frees_nothing() {
    let core = core_with_cpus(1);
    set_cpu(0);
    let irq = irq_with(&core, RecordingChip::new(), FlowKind::Edge);
    let dev = DevId(7);
    let result: Arc<Mutex<Vec<Result<(), IrqError>>>> = Arc::default();
    let (c, res) = (Arc::downgrade(&core), result.clone());
    core.request_irq_raw(
        irq,
        IrqRequest::new(
            "self-freeing",
            Arc::new(move |irq| {
                let core = c.upgrade().unwrap();
                res.lock().unwrap().push(core.free_irq(irq, DevId(7)));
                IrqReturn::HANDLED
            }),
        )
        .dev_id(dev),
    )
    .unwrap();
    within(30, "free_irq from its own handler", {
        let core = core.clone();
        move || {
            set_cpu(0);
            core.handle_irq(irq).unwrap();
            core.handle_irq(irq).unwrap();
        }
    });
    assert_eq!(
        *result.lock().unwrap(),
        vec![Err(IrqError::InInterrupt), Err(IrqError::InInterrupt)],
        "the handler was still installed for the second interrupt"
    );
    assert_eq!(core.snapshot(irq).unwrap().handlers.len(), 1);
    core.free_irq(irq, dev).unwrap(); // process context: fine
}

#[test]
fn freeing_any_handler_from_interrupt_context_is_refused() {
    // A handler of irq A frees the handler of irq B: the dispatcher is not
    // reading B's list, but the interrupted code on this CPU may be inside
    // B's API calls, and freeing waits for other CPUs: refused as well.
    let core = core_with_cpus(1);
    set_cpu(0);
    let a = irq_with(&core, RecordingChip::new(), FlowKind::Edge);
    let b = irq_with(&core, RecordingChip::new(), FlowKind::Edge);
    let dev_b = core
        .request_irq(b, IrqRequest::new("b", handled()))
        .unwrap()
        .leak();
    let out = Arc::new(Mutex::new(None));
    let (c, o) = (Arc::downgrade(&core), out.clone());
    let _ra = core
        .request_irq(
            a,
            IrqRequest::new(
                "a",
                Arc::new(move |_| {
                    let core = c.upgrade().unwrap();
                    *o.lock().unwrap() = Some((
                        core.free_irq(b, dev_b),
                        core.synchronize_irq(b),
                        core.disable_irq(b),
                        core.alloc_descs(IrqNumber(100), 1),
                        core.in_interrupt(),
                    ));
                    IrqReturn::HANDLED
                }),
            ),
        )
        .unwrap();
    within(30, "calls from another irq's handler", {
        let core = core.clone();
        move || {
            set_cpu(0);
            core.handle_irq(a).unwrap()
        }
    });
    let got = out.lock().unwrap().take().unwrap();
    assert_eq!(got.0, Err(IrqError::InInterrupt));
    assert_eq!(got.1, Err(IrqError::InInterrupt));
    assert_eq!(got.2, Err(IrqError::InInterrupt));
    assert_eq!(got.3, Err(IrqError::InInterrupt));
    assert!(got.4);
    assert!(!core.in_interrupt());
    let snap = core.snapshot(b).unwrap();
    assert_eq!(snap.handlers.len(), 1);
    assert_eq!(snap.depth, 0, "the refused disable_irq changed nothing");
}

#[test]
fn dropping_a_registration_in_its_handler_keeps_it_and_reports() {
    let core = core_with_cpus(1);
    set_cpu(0);
    let irq = irq_with(&core, RecordingChip::new(), FlowKind::Edge);
    let slot: Arc<Mutex<Option<Registration<'static, TestPlatform>>>> = Arc::default();
    // A registration borrows its core: leak this test's core so the
    // handler can own the registration.
    let core: &'static Core = Box::leak(Box::new(core));
    let s2 = slot.clone();
    let reg = core
        .request_irq(
            irq,
            IrqRequest::new(
                "drops-itself",
                Arc::new(move |_| {
                    drop(s2.lock().unwrap().take());
                    IrqReturn::HANDLED
                }),
            ),
        )
        .unwrap();
    *slot.lock().unwrap() = Some(reg);
    core.handle_irq(irq).unwrap();
    assert_eq!(core.snapshot(irq).unwrap().handlers.len(), 1);
    assert!(
        core.platform()
            .events
            .lock()
            .unwrap()
            .contains(&IrqEvent::FreeRefused(irq))
    );
}

#[test]
fn disable_irq_from_its_own_handler_fails_instead_of_deadlocking() {
    let core = core_with_cpus(1);
    set_cpu(0);
    let irq = irq_with(&core, RecordingChip::new(), FlowKind::Edge);
    let out = Arc::new(Mutex::new(Vec::new()));
    let (c, o) = (Arc::downgrade(&core), out.clone());
    let _r = core
        .request_irq(
            irq,
            IrqRequest::new(
                "dev",
                Arc::new(move |irq| {
                    let core = c.upgrade().unwrap();
                    o.lock().unwrap().push(core.disable_irq(irq));
                    o.lock().unwrap().push(core.disable_irq_nosync(irq));
                    IrqReturn::HANDLED
                }),
            ),
        )
        .unwrap();
    within(30, "disable_irq from its handler", {
        let core = core.clone();
        move || {
            set_cpu(0);
            core.handle_irq(irq).unwrap()
        }
    });
    assert_eq!(
        *out.lock().unwrap(),
        vec![Err(IrqError::InInterrupt), Ok(())]
    );
    assert_eq!(core.snapshot(irq).unwrap().depth, 1);
}

#[test]
fn an_irq_thread_may_free_its_own_handler_but_not_wait_for_itself() {
    let core = core_with_cpus(1);
    set_cpu(0);
    let irq = irq_with(&core, RecordingChip::new(), FlowKind::Edge);
    let out = Arc::new(Mutex::new(Vec::new()));
    let (c, o) = (Arc::downgrade(&core), out.clone());
    core.request_irq_raw(
        irq,
        IrqRequest::threaded("th", move |irq| {
            let core = c.upgrade().unwrap();
            o.lock().unwrap().push(core.synchronize_irq(irq));
            o.lock().unwrap().push(core.disable_irq(irq));
            o.lock().unwrap().push(core.free_irq(irq, DevId(9)));
            IrqReturn::HANDLED
        })
        .flags(RequestFlags::ONESHOT)
        .dev_id(DevId(9)),
    )
    .unwrap();
    core.handle_irq(irq).unwrap();
    let wakes = core.platform().wakes.lock().unwrap().clone();
    assert_eq!(wakes.len(), 1);
    within(30, "free_irq from its own thread", {
        let core = core.clone();
        move || {
            set_cpu(0);
            core.run_thread(wakes[0].0, wakes[0].1).unwrap()
        }
    });
    assert_eq!(
        *out.lock().unwrap(),
        vec![
            Err(IrqError::InOwnThread(irq)),
            Err(IrqError::InOwnThread(irq)),
            Ok(())
        ]
    );
    assert!(core.snapshot(irq).unwrap().handlers.is_empty());
}

#[test]
fn concurrent_request_and_free_on_two_cpus_do_not_deadlock() {
    // Each request/free waits for a grace period; a CPU must not wait for
    // one from inside a read-side section of its own, or two CPUs doing it
    // at once wait for each other forever.
    let core = core_with_cpus(2);
    set_cpu(0);
    let irq = irq_with(&core, RecordingChip::new(), FlowKind::Level);
    within(60, "two CPUs requesting and freeing", move || {
        std::thread::scope(|s| {
            for cpu in 0..2u32 {
                let core = &core;
                s.spawn(move || {
                    set_cpu(cpu);
                    for _ in 0..2_000 {
                        let r = core
                            .request_irq(
                                irq,
                                IrqRequest::new("shared", handled()).flags(RequestFlags::SHARED),
                            )
                            .unwrap();
                        r.free().unwrap();
                    }
                });
            }
        });
    });
}

// ----- 6. threaded handlers and the spurious detector -------------------------

fn thread_storm(thread_result: IrqReturn) -> (Arc<Core>, IrqNumber) {
    let core = core_with_cpus(1);
    set_cpu(0);
    let irq = irq_with(&core, RecordingChip::new(), FlowKind::Level);
    let _r = core
        .request_irq(
            irq,
            IrqRequest::threaded("th", move |_| thread_result).flags(RequestFlags::ONESHOT),
        )
        .unwrap()
        .leak();
    for _ in 0..100_002 {
        core.handle_irq(irq).unwrap();
        let wakes = std::mem::take(&mut *core.platform().wakes.lock().unwrap());
        for (i, a) in wakes {
            core.run_thread(i, a).unwrap();
        }
    }
    (core, irq)
}

#[test]
fn a_threaded_handler_that_never_handles_is_caught_by_the_spurious_detector() {
    let (core, irq) = thread_storm(IrqReturn::NONE);
    assert!(core.is_spurious_disabled(irq).unwrap());
    assert!(reported(&core, IrqEvent::SpuriousDisabled(irq)));
}

#[test]
fn a_threaded_handler_that_handles_is_never_disabled() {
    let (core, irq) = thread_storm(IrqReturn::HANDLED);
    assert!(!core.is_spurious_disabled(irq).unwrap());
}

// ----- 7. spurious threshold and the time gap ---------------------------------

/// Drives `unhandled` unhandled then `handled` handled interrupts, in
/// that order, through a level line.
fn window(unhandled: u32, handled: u32) -> (Arc<Core>, IrqNumber) {
    let core = core_with_cpus(1);
    set_cpu(0);
    let irq = irq_with(&core, RecordingChip::new(), FlowKind::Level);
    let answer = Arc::new(AtomicBool::new(false));
    let a = answer.clone();
    let _r = core
        .request_irq(
            irq,
            IrqRequest::new(
                "dev",
                Arc::new(move |_| {
                    if a.load(Ordering::Relaxed) {
                        IrqReturn::HANDLED
                    } else {
                        IrqReturn::NONE
                    }
                }),
            ),
        )
        .unwrap()
        .leak();
    for _ in 0..unhandled {
        core.handle_irq(irq).unwrap();
    }
    answer.store(true, Ordering::Relaxed);
    for _ in 0..handled {
        core.handle_irq(irq).unwrap();
    }
    (core, irq)
}

#[test]
fn exactly_99_900_unhandled_in_100_000_keeps_the_line() {
    let (core, irq) = window(99_900, 100);
    assert!(!core.is_spurious_disabled(irq).unwrap());
    let (core, irq) = window(99_901, 99);
    assert!(core.is_spurious_disabled(irq).unwrap());
}

/// A platform with a clock that advances 200 ms per reading.
struct SlowClock {
    inner: TestPlatform,
    now: AtomicU64,
}
impl Platform for SlowClock {
    fn current_cpu(&self) -> CpuId {
        self.inner.current_cpu()
    }
    fn local_irq_save(&self) -> IrqFlags {
        self.inner.local_irq_save()
    }
    fn local_irq_restore(&self, f: IrqFlags) {
        self.inner.local_irq_restore(f)
    }
    fn local_irq_enabled(&self) -> bool {
        self.inner.local_irq_enabled()
    }
    fn now_ns(&self) -> Option<u64> {
        Some(self.now.fetch_add(200_000_000, Ordering::Relaxed))
    }
}

#[test]
fn with_a_clock_a_slow_mostly_unhandled_line_survives() {
    set_cpu(0);
    let core = IrqCore::new(SlowClock {
        inner: TestPlatform::default(),
        now: AtomicU64::new(0),
    });
    core.set_cpu_online(CpuId::BOOT, true).unwrap();
    let irq = core.alloc_descs(IrqNumber(1), 1).unwrap();
    core.set_chip(
        irq,
        vec![ChipLevel::new(RecordingChip::new(), HwIrq(1))],
        FlowKind::Level,
    )
    .unwrap();
    let _r = core
        .request_irq(irq, IrqRequest::new("slow", Arc::new(|_| IrqReturn::NONE)))
        .unwrap();
    for _ in 0..200_000 {
        core.handle_irq(irq).unwrap();
    }
    assert!(
        !core.is_spurious_disabled(irq).unwrap(),
        "one unhandled interrupt every 200 ms is not a storm"
    );
    // Without a clock the same line is disabled (today's rule).
    let (core, irq) = window(100_000, 0);
    assert!(core.is_spurious_disabled(irq).unwrap());
}

// ----- smaller inconsistencies ------------------------------------------------

#[test]
fn nested_hotplug_from_a_callback_is_busy_in_every_build() {
    struct Nested(Mutex<Vec<Result<(), IrqError>>>);
    impl HotplugCallback<TestPlatform> for Nested {
        fn name(&self) -> &str {
            "nested"
        }
        fn up(&self, ctx: &HotplugCtx<'_, TestPlatform>) -> Result<(), IrqError> {
            let ctl = ThreadCpus(Arc::new(IrqCore::with_config(
                TestPlatform::default(),
                CoreConfig::DEFAULT,
            )));
            let mut v = self.0.lock().unwrap();
            v.push(ctx.core.cpu_up(CpuId::of::<3>(), &ctl));
            v.push(ctx.core.cpu_down(CpuId::of::<1>(), &ctl));
            Ok(())
        }
        fn down(&self, _ctx: &HotplugCtx<'_, TestPlatform>) {}
    }
    let core = core_with_cpus(2);
    set_cpu(0);
    let cb = Arc::new(Nested(Mutex::new(Vec::new())));
    core.register_hotplug(CpuPhase::BringUp, cb.clone())
        .unwrap();
    core.register_hotplug(CpuPhase::Prepare, cb.clone())
        .unwrap();
    core.cpu_up(CpuId::of::<2>(), &ThreadCpus(core.clone()))
        .unwrap();
    assert_eq!(
        *cb.0.lock().unwrap(),
        vec![Err(IrqError::Busy); 4],
        "refused, not a lock-order panic"
    );
}

#[test]
fn a_range_past_the_last_irq_number_is_an_invalid_range() {
    let core = core_with_cpus(1);
    set_cpu(0);
    assert_eq!(
        core.alloc_descs(IrqNumber(u32::MAX), 2),
        Err(IrqError::InvalidRange)
    );
    assert_eq!(
        core.free_descs(IrqNumber(u32::MAX - 1), 3),
        Err(IrqError::InvalidRange)
    );
    assert_eq!(
        core.alloc_descs(IrqNumber(5), 0),
        Err(IrqError::InvalidRange)
    );
    assert_eq!(core.nr_descs(), 0);
}
