//! A minimal test platform: the test thread says which CPU it plays.
#![allow(dead_code)]

use irqcore::*;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

thread_local! {
    static CPU: Cell<u32> = const { Cell::new(0) };
}

/// Makes the calling thread play `cpu`.
pub fn set_cpu(cpu: u32) {
    CPU.with(|c| c.set(cpu));
}

#[derive(Default)]
pub struct TestPlatform {
    pub irq_on: [AtomicBool; 16],
    pub resends: Mutex<Vec<IrqNumber>>,
    pub wakes: Mutex<Vec<(IrqNumber, ActionId)>>,
    pub events: Mutex<Vec<IrqEvent>>,
}

impl Platform for TestPlatform {
    fn current_cpu(&self) -> CpuId {
        CpuId::new(CPU.with(|c| c.get())).unwrap()
    }
    fn local_irq_save(&self) -> IrqFlags {
        let c = CPU.with(|c| c.get()) as usize;
        IrqFlags(self.irq_on[c].swap(false, Ordering::SeqCst) as usize)
    }
    fn local_irq_restore(&self, flags: IrqFlags) {
        let c = CPU.with(|c| c.get()) as usize;
        self.irq_on[c].store(flags.0 != 0, Ordering::SeqCst);
    }
    fn local_irq_enabled(&self) -> bool {
        self.irq_on[CPU.with(|c| c.get()) as usize].load(Ordering::SeqCst)
    }
    fn run_on_cpus(&self, cpus: &CpuMask, work: &(dyn Fn(CpuId) + Sync)) {
        std::thread::scope(|s| {
            for c in cpus.iter() {
                s.spawn(move || {
                    set_cpu(c.get());
                    work(c)
                });
            }
        });
    }
    fn cpu_relax(&self) {
        // Threads are not CPUs: let the one we wait for run.
        std::thread::yield_now();
    }
    // With the simulator's `membarrier` (feature "sim", Linux, not Miri)
    // the tests run the dispatcher's light read side; otherwise (and under
    // Miri) the read-modify-write one.
    #[cfg(feature = "sim")]
    const SYNCHRONIZE_CPUS: bool = irqcore::sim::HOST_MEMBARRIER;
    #[cfg(feature = "sim")]
    fn synchronize_cpus(&self) {
        #[cfg(all(target_os = "linux", not(miri)))]
        irqcore::sim::host_membarrier();
    }
    fn schedule_resend(&self, irq: IrqNumber) {
        self.resends.lock().unwrap().push(irq);
    }
    fn wake_thread(&self, irq: IrqNumber, action: ActionId) -> ThreadWake {
        self.wakes.lock().unwrap().push((irq, action));
        ThreadWake::Queued
    }
    fn report(&self, event: IrqEvent) {
        self.events.lock().unwrap().push(event);
    }
}

/// A chip that records every callback, for exact-sequence assertions.
#[derive(Default)]
pub struct RecordingChip {
    pub log: Mutex<Vec<&'static str>>,
    pub can_retrigger: bool,
    pub has_disable: bool,
    pub flags: ChipFlags,
    pub retriggered: Mutex<Vec<IrqNumber>>,
    pub target: Mutex<Option<CpuMask>>,
    pub reject_level: bool,
}

impl RecordingChip {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
    pub fn take(&self) -> Vec<&'static str> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }
    fn rec(&self, s: &'static str) {
        self.log.lock().unwrap().push(s);
    }
}

impl IrqChip for RecordingChip {
    fn name(&self) -> &str {
        "REC"
    }
    fn flags(&self) -> ChipFlags {
        self.flags
    }
    fn mask(&self, _d: &IrqData<'_>) {
        self.rec("mask")
    }
    fn unmask(&self, _d: &IrqData<'_>) {
        self.rec("unmask")
    }
    fn ack(&self, _d: &IrqData<'_>) {
        self.rec("ack")
    }
    fn eoi(&self, _d: &IrqData<'_>) {
        self.rec("eoi")
    }
    fn mask_ack(&self, _d: &IrqData<'_>) {
        self.rec("mask_ack")
    }
    fn startup(&self, _d: &IrqData<'_>) {
        self.rec("startup")
    }
    fn shutdown(&self, _d: &IrqData<'_>) {
        self.rec("shutdown")
    }
    fn disable(&self, _d: &IrqData<'_>) -> bool {
        if self.has_disable {
            self.rec("disable");
        }
        self.has_disable
    }
    fn set_type(&self, _d: &IrqData<'_>, t: TriggerType) -> Result<(), ChipError> {
        if self.reject_level && t.is_level() {
            return Err(ChipError::InvalidTrigger);
        }
        self.rec("set_type");
        Ok(())
    }
    fn retrigger(&self, d: &IrqData<'_>) -> bool {
        if self.can_retrigger {
            self.rec("retrigger");
            self.retriggered.lock().unwrap().push(d.irq());
        }
        self.can_retrigger
    }
    fn set_affinity(
        &self,
        _d: &IrqData<'_>,
        mask: &CpuMask,
        _force: bool,
    ) -> Result<AffinitySet, ChipError> {
        let first = mask.first().ok_or(ChipError::Invalid)?;
        *self.target.lock().unwrap() = Some(CpuMask::of(first));
        Ok(AffinitySet::Applied {
            effective: CpuMask::of(first),
        })
    }
}

pub type Core = IrqCore<TestPlatform>;

/// A core with CPUs 0..n online.
pub fn core_with_cpus(n: u32) -> Arc<Core> {
    core_on(TestPlatform::default(), n)
}

/// A core on `platform` with CPUs 0..n online.
pub fn core_on<P: Platform>(platform: P, n: u32) -> Arc<IrqCore<P>> {
    let core = Arc::new(IrqCore::with_config(
        platform,
        CoreConfig {
            capacity: 4096,
            nr_cpus: 16,
        },
    ));
    for c in 0..n {
        core.set_cpu_online(CpuId::new(c).unwrap(), true).unwrap();
    }
    core
}

/// Allocates one irq with `chip` and `flow`.
pub fn irq_with(core: &Core, chip: Arc<dyn IrqChip>, flow: FlowKind) -> IrqNumber {
    let irq = core.alloc_descs(IrqNumber(1), 1).unwrap();
    core.set_chip(irq, vec![ChipLevel::new(chip, HwIrq(irq.0 as u64))], flow)
        .unwrap();
    irq
}

pub fn handled() -> Arc<dyn IrqHandler> {
    Arc::new(|_irq: IrqNumber| IrqReturn::HANDLED)
}

/// A handler that counts its calls.
pub fn counting() -> (Arc<std::sync::atomic::AtomicU64>, Arc<dyn IrqHandler>) {
    let n = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let n2 = n.clone();
    (
        n,
        Arc::new(move |_irq: IrqNumber| {
            n2.fetch_add(1, Ordering::SeqCst);
            IrqReturn::HANDLED
        }),
    )
}

/// A chip that only remembers its target (no call log, so tests that fire
/// millions of interrupts do not grow memory).
#[derive(Default)]
pub struct TargetChip {
    pub target: Mutex<Option<CpuMask>>,
}

impl IrqChip for TargetChip {
    fn name(&self) -> &str {
        "TGT"
    }
    fn mask(&self, _d: &IrqData<'_>) {}
    fn unmask(&self, _d: &IrqData<'_>) {}
    fn set_affinity(
        &self,
        _d: &IrqData<'_>,
        mask: &CpuMask,
        _force: bool,
    ) -> Result<AffinitySet, ChipError> {
        let first = mask.first().ok_or(ChipError::Invalid)?;
        *self.target.lock().unwrap() = Some(CpuMask::of(first));
        Ok(AffinitySet::Applied {
            effective: CpuMask::of(first),
        })
    }
}

/// Boots a CPU by running `cpu_starting` on a thread that plays it; kills
/// nothing (a thread-CPU simply stops being used).
pub struct ThreadCpus(pub Arc<Core>);

impl CpuControl for ThreadCpus {
    fn boot_cpu(&self, cpu: CpuId) -> Result<(), IrqError> {
        let core = self.0.clone();
        std::thread::spawn(move || {
            set_cpu(cpu.get());
            core.cpu_starting()
        })
        .join()
        .unwrap()
    }
    fn kill_cpu(&self, _cpu: CpuId) -> Result<(), IrqError> {
        Ok(())
    }
}

/// The threads woken since the last call, in wake order.
pub fn take_woken(core: &Core) -> Vec<ActionId> {
    let mut wakes = core.platform().wakes.lock().unwrap();
    wakes.drain(..).map(|(_, a)| a).collect()
}

/// A handler with a thread function whose primary part decides, per
/// interrupt, whether the thread is needed.
#[derive(Default)]
pub struct Split {
    pub wake: AtomicBool,
    pub primaries: std::sync::atomic::AtomicU64,
    pub threads: std::sync::atomic::AtomicU64,
}

impl IrqHandler for Split {
    fn handle(&self, _irq: IrqNumber) -> IrqReturn {
        self.primaries.fetch_add(1, Ordering::SeqCst);
        if self.wake.load(Ordering::SeqCst) {
            IrqReturn::WAKE_THREAD
        } else {
            IrqReturn::HANDLED
        }
    }
    fn thread(&self, _irq: IrqNumber) -> IrqReturn {
        self.threads.fetch_add(1, Ordering::SeqCst);
        IrqReturn::HANDLED
    }
}

/// Whether the core reported `event` through the test platform.
pub fn reported(core: &Core, event: IrqEvent) -> bool {
    core.platform().events.lock().unwrap().contains(&event)
}
