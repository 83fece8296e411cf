//! Hotplug phases, the sparse lock (seed 000), migration off a dying CPU,
//! affinity convergence (seed 003) and the lock-order check.
mod common;
mod watchdog;
use common::*;
use irqcore::hotplug::HotplugCtx;
use irqcore::*;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Xen-like backend: binds a per-CPU descriptor in Prepare, frees it in
/// post-dead.
#[derive(Default)]
struct PerCpuBinder {
    irqs: Mutex<Vec<(CpuId, IrqNumber)>>,
}
impl HotplugCallback<TestPlatform> for PerCpuBinder {
    fn name(&self) -> &str {
        "xen-virq"
    }
    fn up(&self, ctx: &HotplugCtx<'_, TestPlatform>) -> Result<(), IrqError> {
        assert!(!ctx.core.sparse_lock_held());
        let irq = ctx.core.alloc_descs(IrqNumber(100), 1)?;
        self.irqs.lock().unwrap().push((ctx.cpu, irq));
        Ok(())
    }
    fn down(&self, ctx: &HotplugCtx<'_, TestPlatform>) {
        let mut v = self.irqs.lock().unwrap();
        if let Some(i) = v.iter().position(|(c, _)| *c == ctx.cpu) {
            let (_, irq) = v.remove(i);
            ctx.core.free_descs(irq, 1).unwrap();
        }
    }
}

/// x86-like backend: walks every descriptor in bring-up (vector space set-up)
/// and, misbehaving, also tries to allocate there.
#[derive(Default)]
struct VectorSpace {
    walked: AtomicU64,
    alloc_errors: Mutex<Vec<IrqError>>,
    lock_held_seen: AtomicU64,
}
impl HotplugCallback<TestPlatform> for VectorSpace {
    fn name(&self) -> &str {
        "x86-vectors"
    }
    fn up(&self, ctx: &HotplugCtx<'_, TestPlatform>) -> Result<(), IrqError> {
        if ctx.core.sparse_lock_held() {
            self.lock_held_seen.fetch_add(1, Ordering::SeqCst);
        }
        let mut n = 0;
        ctx.for_each_irq(&mut |_| n += 1)?;
        self.walked.store(n, Ordering::SeqCst);
        let e = ctx.core.alloc_descs(IrqNumber(0), 1).unwrap_err();
        self.alloc_errors.lock().unwrap().push(e);
        Ok(())
    }
    fn down(&self, ctx: &HotplugCtx<'_, TestPlatform>) {
        let mut n = 0;
        ctx.for_each_irq(&mut |_| n += 1).unwrap();
    }
}

/// Runs on the new CPU: allocation there must fail fast too.
#[derive(Default)]
struct StartingAlloc(Mutex<Vec<IrqError>>);
impl HotplugCallback<TestPlatform> for StartingAlloc {
    fn name(&self) -> &str {
        "starting"
    }
    fn up(&self, ctx: &HotplugCtx<'_, TestPlatform>) -> Result<(), IrqError> {
        self.0
            .lock()
            .unwrap()
            .push(ctx.core.alloc_descs(IrqNumber(0), 1).unwrap_err());
        Ok(())
    }
    fn down(&self, _ctx: &HotplugCtx<'_, TestPlatform>) {}
}

#[test]
fn seed_000_allocating_backend_and_walking_backend_coexist() {
    set_cpu(0);
    let core = core_with_cpus(1);
    for _ in 0..5 {
        core.alloc_descs(IrqNumber(1), 1).unwrap();
    }
    let xen = Arc::new(PerCpuBinder::default());
    let x86 = Arc::new(VectorSpace::default());
    let starting = Arc::new(StartingAlloc::default());
    core.register_hotplug(CpuPhase::Prepare, xen.clone())
        .unwrap();
    core.register_hotplug(CpuPhase::BringUp, x86.clone())
        .unwrap();
    core.register_hotplug(CpuPhase::Starting, starting.clone())
        .unwrap();
    let ctl = ThreadCpus(core.clone());
    core.cpu_up(CpuId::of::<1>(), &ctl).unwrap();
    assert!(core.cpu_online(CpuId::of::<1>()));
    assert_eq!(
        xen.irqs.lock().unwrap().len(),
        1,
        "prepare allocated the per-CPU irq"
    );
    assert_eq!(
        x86.walked.load(Ordering::SeqCst),
        6,
        "bring-up saw every descriptor"
    );
    assert_eq!(
        x86.lock_held_seen.load(Ordering::SeqCst),
        1,
        "bring-up ran under the sparse lock"
    );
    assert_eq!(
        *x86.alloc_errors.lock().unwrap(),
        vec![IrqError::SparseLockHeldByCaller]
    );
    assert_eq!(
        *starting.0.lock().unwrap(),
        vec![IrqError::SparseLockHeldByCaller]
    );
    assert_eq!(core.nr_descs(), 6);
    core.cpu_down(CpuId::of::<1>(), &ctl).unwrap();
    assert!(!core.cpu_online(CpuId::of::<1>()));
    assert!(xen.irqs.lock().unwrap().is_empty());
    assert_eq!(core.nr_descs(), 5);
    // And again: nothing was left locked.
    core.cpu_up(CpuId::of::<1>(), &ctl).unwrap();
    core.cpu_down(CpuId::of::<1>(), &ctl).unwrap();
    core.alloc_descs(IrqNumber(0), 1).unwrap();
}

/// A chip that models delivery: raising an irq queues it for the CPU the
/// chip currently targets; retrigger re-raises on the current target.
#[derive(Default)]
struct WireChip {
    target: Mutex<std::collections::HashMap<u64, CpuId>>,
    inbox: Mutex<std::collections::HashMap<u32, VecDeque<IrqNumber>>>,
}
impl WireChip {
    fn raise(&self, hw: u64, irq: IrqNumber) {
        let cpu = self.target.lock().unwrap()[&hw];
        self.inbox
            .lock()
            .unwrap()
            .entry(cpu.get())
            .or_default()
            .push_back(irq);
    }
    fn drain(&self, cpu: CpuId) -> Vec<IrqNumber> {
        self.inbox
            .lock()
            .unwrap()
            .remove(&cpu.get())
            .map(Vec::from)
            .unwrap_or_default()
    }
}
impl IrqChip for WireChip {
    fn name(&self) -> &str {
        "WIRE"
    }
    fn mask(&self, _d: &IrqData<'_>) {}
    fn unmask(&self, _d: &IrqData<'_>) {}
    fn set_affinity(
        &self,
        d: &IrqData<'_>,
        m: &CpuMask,
        _f: bool,
    ) -> Result<AffinitySet, ChipError> {
        let cpu = m.first().ok_or(ChipError::Invalid)?;
        self.target.lock().unwrap().insert(d.hwirq().0, cpu);
        Ok(AffinitySet::Applied {
            effective: CpuMask::of(cpu),
        })
    }
    fn retrigger(&self, d: &IrqData<'_>) -> bool {
        self.raise(d.hwirq().0, d.irq());
        true
    }
}

/// Arch-like dying callback: interrupts latched on the dying CPU (its
/// "IRR") are replayed on their new targets.
struct ReplayLatched(Arc<WireChip>);
impl HotplugCallback<TestPlatform> for ReplayLatched {
    fn name(&self) -> &str {
        "irr-replay"
    }
    fn up(&self, _ctx: &HotplugCtx<'_, TestPlatform>) -> Result<(), IrqError> {
        Ok(())
    }
    fn down(&self, ctx: &HotplugCtx<'_, TestPlatform>) {
        assert_eq!(
            ctx.core.platform().current_cpu(),
            ctx.cpu,
            "dying runs on the dying CPU"
        );
        for irq in self.0.drain(ctx.cpu) {
            ctx.core.inject_pending(irq).unwrap();
        }
    }
}

#[test]
fn cpu_down_moves_100_interrupts_and_loses_none() {
    set_cpu(0);
    let core = core_with_cpus(3);
    let chip = Arc::new(WireChip::default());
    core.register_hotplug(CpuPhase::Starting, Arc::new(ReplayLatched(chip.clone())))
        .unwrap();
    let counts: Arc<Mutex<std::collections::HashMap<u32, u64>>> = Default::default();
    let mut irqs = Vec::new();
    let mut regs = Vec::new();
    for i in 0..100u32 {
        let irq = core.alloc_descs(IrqNumber(1), 1).unwrap();
        core.set_chip(
            irq,
            vec![ChipLevel::new(chip.clone(), HwIrq(irq.0 as u64))],
            FlowKind::Edge,
        )
        .unwrap();
        // Half prefer CPU 2 only (their affinity breaks), half {1, 2}.
        let mask = if i % 2 == 0 {
            CpuMask::of(CpuId::of::<2>())
        } else {
            CpuMask::from_cpus([CpuId::of::<2>(), CpuId::of::<1>()])
        };
        core.set_affinity(irq, &mask).unwrap();
        let c = counts.clone();
        let h: Arc<dyn IrqHandler> = Arc::new(move |irq: IrqNumber| {
            *c.lock().unwrap().entry(irq.0).or_default() += 1;
            IrqReturn::HANDLED
        });
        regs.push(core.request_irq(irq, IrqRequest::new("dev", h)).unwrap());
        // The chip targets the first CPU of the mask.
        assert_eq!(
            core.effective_affinity(irq).unwrap(),
            CpuMask::of(mask.first().unwrap())
        );
        irqs.push(irq);
    }
    // Retarget all to CPU 2 and raise every one there: latched, undelivered.
    for &irq in &irqs {
        core.set_affinity(irq, &CpuMask::of(CpuId::of::<2>()))
            .unwrap();
        chip.raise(irq.0 as u64, irq);
    }
    core.cpu_down(CpuId::of::<2>(), &ThreadCpus(core.clone()))
        .unwrap();
    for &irq in &irqs {
        let eff = core.effective_affinity(irq).unwrap();
        assert!(
            eff.is_subset_of(&core.online_cpus()) && !eff.is_empty(),
            "{irq:?} on {eff:?}"
        );
    }
    assert!(chip.drain(CpuId::of::<2>()).is_empty());
    for cpu in [0u32, 1] {
        set_cpu(cpu);
        for irq in chip.drain(CpuId::new(cpu).unwrap()) {
            core.handle_irq(irq).unwrap();
        }
    }
    let counts = counts.lock().unwrap();
    for &irq in &irqs {
        assert_eq!(counts.get(&irq.0), Some(&1), "{irq:?} lost or duplicated");
    }
    assert_eq!(
        core.platform()
            .events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| matches!(e, IrqEvent::AffinityBroken(_)))
            .count(),
        100
    );
}

#[test]
fn managed_irq_shuts_down_and_restarts_with_its_cpu_keeping_disable_depth() {
    set_cpu(0);
    let core = core_with_cpus(2);
    let chip = RecordingChip::new();
    let irq = core.alloc_descs(IrqNumber(1), 1).unwrap();
    core.set_chip(
        irq,
        vec![ChipLevel::new(chip.clone(), HwIrq(1))],
        FlowKind::Edge,
    )
    .unwrap();
    core.set_managed_affinity(irq, &CpuMask::of(CpuId::of::<1>()))
        .unwrap();
    let _r = core
        .request_irq(irq, IrqRequest::new("nvme", handled()))
        .unwrap();
    let ctl = ThreadCpus(core.clone());
    assert_eq!(
        core.set_affinity(irq, &CpuMask::of(CpuId::BOOT)),
        Err(IrqError::Managed(irq))
    );
    core.cpu_down(CpuId::of::<1>(), &ctl).unwrap();
    assert!(
        core.snapshot(irq)
            .unwrap()
            .line
            .contains(LineState::MANAGED_SHUTDOWN)
    );
    core.cpu_up(CpuId::of::<1>(), &ctl).unwrap();
    let s = core.snapshot(irq).unwrap();
    assert!(s.line.contains(LineState::STARTED) && s.depth == 0);
    // A driver's disable survives offline/online.
    core.disable_irq(irq).unwrap();
    core.cpu_down(CpuId::of::<1>(), &ctl).unwrap();
    core.cpu_up(CpuId::of::<1>(), &ctl).unwrap();
    let s = core.snapshot(irq).unwrap();
    assert_eq!(s.depth, 1);
    assert!(s.line.contains(LineState::DISABLED));
    core.enable_irq(irq).unwrap();
    assert_eq!(core.snapshot(irq).unwrap().depth, 0);
}

#[test]
fn seed_003_concurrent_retargeting_converges_to_the_last_request() {
    for deferred in [false, true] {
        set_cpu(0);
        let core = core_with_cpus(4);
        let chip = Arc::new(TargetChip::default());
        let irq = irq_with(&core, chip.clone(), FlowKind::Edge);
        if deferred {
            core.set_irq_settings(irq, LineState::MOVE_DEFERRED, LineState::empty())
                .unwrap();
        }
        let _r = core
            .request_irq(irq, IrqRequest::new("dev", handled()))
            .unwrap();
        let stop = AtomicU64::new(0);
        let rounds = if deferred { 2_000 } else { 10_000 };
        // A failed assertion on one side must not leave the other side
        // waiting forever: the barrier gives up, and is broken at once when
        // either side panics; the device thread stops whenever the scope
        // body ends.
        let barrier = watchdog::TimedBarrier::new(2, watchdog::TEST_LIMIT);
        std::thread::scope(|s| {
            let _stop = watchdog::OnDrop(|| stop.store(1, Ordering::SeqCst));
            // A device that keeps firing on CPU 3.
            s.spawn(|| {
                set_cpu(3);
                while stop.load(Ordering::SeqCst) == 0 {
                    core.handle_irq(irq).unwrap();
                    std::thread::yield_now();
                }
            });
            let other = s.spawn(|| {
                set_cpu(2);
                let _broken_on_panic = barrier.guard();
                for r in 0..rounds {
                    core.set_affinity(irq, &CpuMask::of(CpuId::new((r % 3) as u32).unwrap()))
                        .unwrap();
                    barrier.wait();
                    barrier.wait();
                }
            });
            set_cpu(1);
            let _broken_on_panic = barrier.guard();
            for r in 0..rounds {
                core.set_affinity(irq, &CpuMask::of(CpuId::new(((r + 1) % 3) as u32).unwrap()))
                    .unwrap();
                barrier.wait();
                // Both racing requests are done; this one is the last.
                let last = CpuId::new(((r * 7) % 4) as u32).unwrap();
                core.set_affinity(irq, &CpuMask::of(last)).unwrap();
                // Quiescence: let the device fire until a deferred move has
                // reached its safe point (the CPU handling it may be another).
                let mut spins = 0;
                loop {
                    core.handle_irq(irq).unwrap();
                    let s = core.snapshot(irq).unwrap();
                    if !s
                        .line
                        .intersects(LineState::MOVE_PENDING | LineState::IN_PROGRESS)
                    {
                        break;
                    }
                    spins += 1;
                    assert!(spins < 1_000_000, "round {r}: the move never completed");
                    std::thread::yield_now();
                }
                let programmed = *chip.target.lock().unwrap();
                assert_eq!(
                    programmed,
                    Some(CpuMask::of(last)),
                    "round {r} deferred={deferred}"
                );
                assert_eq!(core.affinity(irq).unwrap(), CpuMask::of(last));
                barrier.wait();
            }
            other.join().unwrap();
            stop.store(1, Ordering::SeqCst);
        });
    }
}

/// A chip whose set_type allocates a descriptor: a lock inversion
/// (descriptor lock held, then the sparse lock).
struct InvertingChip(std::sync::OnceLock<Arc<Core>>);
impl IrqChip for InvertingChip {
    fn name(&self) -> &str {
        "BAD"
    }
    fn mask(&self, _d: &IrqData<'_>) {}
    fn unmask(&self, _d: &IrqData<'_>) {}
    fn set_type(&self, _d: &IrqData<'_>, _t: TriggerType) -> Result<(), ChipError> {
        let _ = self.0.get().unwrap().alloc_descs(IrqNumber(0), 1);
        Ok(())
    }
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "irqcore lock order violation")]
fn inverted_lock_acquisition_is_caught() {
    set_cpu(0);
    let core = core_with_cpus(1);
    let chip = Arc::new(InvertingChip(Default::default()));
    let _ = chip.0.set(core.clone());
    let irq = irq_with(&core, chip, FlowKind::Edge);
    let _ = core.set_trigger(irq, TriggerType::EdgeRising);
}
