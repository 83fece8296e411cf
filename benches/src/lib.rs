//! The pieces every benchmark of the irqcore suite shares: a [`Platform`]
//! whose current CPU is a thread-local (so threads can play CPUs), a no-op
//! interrupt chip, the two baselines (a static function-pointer table, the
//! floor, and a global `spin::Mutex<BTreeMap>` registry, the naive design)
//! and adapters for the two published peers (`irq-framework` and
//! `handler_table`), each used through its public API only.
//!
//! Every design dispatches to the same work: a relaxed increment of one of
//! [`NR_SLOTS`] cache-line-padded counters ([`hit`]), so the numbers compare
//! the dispatch machinery and not the handlers. The unit tests check that
//! each design really reaches the handler, so no benchmark measures a path
//! that silently does nothing.

use irqcore::{
    ChipLevel, CpuId, CpuMask, FlowKind, HwIrq, IrqChip, IrqCore, IrqData, IrqFlags, IrqHandler,
    IrqNumber, IrqRequest, IrqReturn, Platform, RequestFlags,
};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// How many distinct handler counters exist (one per concurrently
/// dispatching thread at most).
pub const NR_SLOTS: usize = 8;

/// Simulated CPUs of every benchmark core (threads 0..4 play CPUs 0..4).
pub const NR_CPUS: u32 = 4;

/// A counter alone on its cache lines, so threads hitting different slots
/// do not share a line (false sharing would swamp the dispatch cost).
#[repr(align(128))]
pub struct PaddedCounter(AtomicU64);

/// The handler work of every design: one counter per slot.
pub static COUNTERS: [PaddedCounter; NR_SLOTS] =
    [const { PaddedCounter(AtomicU64::new(0)) }; NR_SLOTS];

/// The work every benchmarked handler does.
#[inline]
pub fn hit(slot: usize) {
    COUNTERS[slot % NR_SLOTS].0.fetch_add(1, Ordering::Relaxed);
}

/// How many times slot `slot`'s handlers ran.
pub fn hits(slot: usize) -> u64 {
    COUNTERS[slot % NR_SLOTS].0.load(Ordering::Relaxed)
}

/// The context-free handler the function table and `handler_table` store.
fn slot_handler<const S: usize>() {
    hit(S);
}

/// One context-free handler per slot.
pub const SLOT_HANDLERS: [fn(); NR_SLOTS] = [
    slot_handler::<0>,
    slot_handler::<1>,
    slot_handler::<2>,
    slot_handler::<3>,
    slot_handler::<4>,
    slot_handler::<5>,
    slot_handler::<6>,
    slot_handler::<7>,
];

/// Size of the static function table (an x86 IDT's worth).
pub const FN_TABLE_LEN: usize = 256;

/// The floor: a static table of function pointers indexed by the interrupt
/// number; number `n` calls slot `n % NR_SLOTS`'s handler.
pub static FN_TABLE: [fn(); FN_TABLE_LEN] = {
    let mut t = [SLOT_HANDLERS[0]; FN_TABLE_LEN];
    let mut i = 0;
    while i < FN_TABLE_LEN {
        t[i] = SLOT_HANDLERS[i % NR_SLOTS];
        i += 1;
    }
    t
};

/// The floor for a shared line: every interrupt number has four handlers.
pub static FN_TABLE_SHARED4: [[fn(); 4]; FN_TABLE_LEN] = [[SLOT_HANDLERS[0]; 4]; FN_TABLE_LEN];

/// Dispatches through the floor table (`false` for a number out of range).
#[inline]
pub fn fn_table_dispatch(irq: u32) -> bool {
    match FN_TABLE.get(irq as usize) {
        Some(f) => {
            f();
            true
        }
        None => false,
    }
}

/// Dispatches a shared line through the floor table.
#[inline]
pub fn fn_table_dispatch_shared4(irq: u32) -> bool {
    match FN_TABLE_SHARED4.get(irq as usize) {
        Some(fs) => {
            for f in fs {
                f();
            }
            true
        }
        None => false,
    }
}

thread_local! {
    static CURRENT_CPU: Cell<CpuId> = const { Cell::new(CpuId::BOOT) };
}

/// Makes the calling thread play CPU `cpu` for [`BenchPlatform`] and
/// `IrqfOps`.
///
/// # Panics
///
/// If `cpu` is not below `irqcore::MAX_CPUS` (a benchmark set-up error).
pub fn set_current_cpu(cpu: u32) {
    let cpu = CpuId::new(cpu).expect("benchmark CPU below MAX_CPUS");
    CURRENT_CPU.with(|c| c.set(cpu));
}

/// The CPU the calling thread plays.
#[inline]
pub fn current_cpu() -> u32 {
    CURRENT_CPU.with(Cell::get).get()
}

/// irqcore's platform for the benchmarks: interrupts are "off" (the caller
/// is interrupt entry), the current CPU is the thread's
/// ([`set_current_cpu`]), cross-CPU work runs inline.
#[derive(Debug, Default, Clone, Copy)]
pub struct BenchPlatform;

impl Platform for BenchPlatform {
    #[inline]
    fn current_cpu(&self) -> CpuId {
        CURRENT_CPU.with(Cell::get)
    }
    fn local_irq_save(&self) -> IrqFlags {
        IrqFlags(0)
    }
    fn local_irq_restore(&self, _flags: IrqFlags) {}
    fn local_irq_enabled(&self) -> bool {
        false
    }
    fn run_on_cpus(&self, cpus: &CpuMask, work: &(dyn Fn(CpuId) + Sync)) {
        for cpu in cpus.iter() {
            work(cpu);
        }
    }
    fn schedule_resend(&self, _irq: IrqNumber) {}
    /// The dispatcher enters its read-side section with a plain store; the
    /// (rare) writers run the host's `membarrier`, as the simulator does.
    const SYNCHRONIZE_CPUS: bool = irqcore::sim::HOST_MEMBARRIER;
    fn synchronize_cpus(&self) {
        #[cfg(all(target_os = "linux", not(miri)))]
        irqcore::sim::host_membarrier();
    }
    /// Runs end with a plain store. There is no interrupt to send to a
    /// thread, so the kick does nothing and a run's after-work that a
    /// lock holder queued waits for the next `handle_irq` on any thread
    /// (as the reference kernels' resend IPI would make it happen at
    /// once). The benchmarks never meet it: each thread dispatches its
    /// own irqs.
    const KICK_CPU: bool = true;
}

/// A chip whose callbacks do nothing: dispatch cost without hardware.
#[derive(Debug, Default)]
pub struct NopChip;

impl IrqChip for NopChip {
    fn name(&self) -> &str {
        "nop"
    }
    /// No ack, no EOI: the flows skip those calls.
    fn flags(&self) -> irqcore::ChipFlags {
        irqcore::ChipFlags::NO_ACK | irqcore::ChipFlags::NO_EOI
    }
    fn mask(&self, _d: &IrqData<'_>) {}
    fn unmask(&self, _d: &IrqData<'_>) {}
}

/// An irqcore instance with `capacity` descriptor numbers and [`NR_CPUS`]
/// CPUs, all online.
pub fn new_core(capacity: u32) -> IrqCore<BenchPlatform> {
    let core = IrqCore::with_config(
        BenchPlatform,
        irqcore::CoreConfig {
            capacity,
            nr_cpus: NR_CPUS,
        },
    );
    for cpu in 0..NR_CPUS {
        core.set_cpu_online(CpuId::new(cpu).unwrap(), true)
            .expect("CPU in range");
    }
    core
}

/// The handler every irqcore benchmark registers: hits `slot`.
pub fn irqcore_handler(slot: usize) -> Arc<dyn IrqHandler> {
    Arc::new(move |_irq: IrqNumber| {
        hit(slot);
        IrqReturn::HANDLED
    })
}

/// Allocates one descriptor at or above `from`, gives it the no-op chip and
/// `flow`, and registers `handlers` handlers hitting `slot` (shared when
/// more than one; per-CPU for the per-CPU flows). The registrations are
/// leaked: they live as long as the core.
pub fn setup_irqcore_line(
    core: &IrqCore<BenchPlatform>,
    from: u32,
    flow: FlowKind,
    handlers: usize,
    slot: usize,
) -> IrqNumber {
    let irq = core
        .alloc_descs(IrqNumber(from), 1)
        .expect("a free descriptor");
    core.set_chip(
        irq,
        vec![ChipLevel::new(Arc::new(NopChip), HwIrq(u64::from(irq.0)))],
        flow,
    )
    .expect("chip and flow");
    let mut flags = RequestFlags::empty();
    if matches!(flow, FlowKind::PerCpu) {
        flags |= RequestFlags::PERCPU;
    }
    if handlers > 1 {
        flags |= RequestFlags::SHARED;
    }
    for i in 0..handlers {
        let req = IrqRequest::new("bench", irqcore_handler(slot))
            .flags(flags)
            .dev_id(irqcore::DevId(i + 1));
        core.request_irq(irq, req).expect("request").leak();
    }
    irq
}

/// A registered handler of the naive design.
pub type NaiveHandler = Box<dyn Fn(u32) + Send + Sync>;

/// The naive design: one global lock around an ordered map from the
/// interrupt number to its handlers, held while they run.
#[derive(Default)]
pub struct MutexRegistry {
    map: spin::Mutex<BTreeMap<u32, Vec<NaiveHandler>>>,
}

impl MutexRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a handler to `irq` (shared lines get several).
    pub fn register(&self, irq: u32, handler: NaiveHandler) {
        self.map.lock().entry(irq).or_default().push(handler);
    }

    /// Adds `n` numbers 0..n, each with one handler hitting slot 0 (built in
    /// one go: per-insert locking would only slow the setup down).
    pub fn with_numbers(n: u32) -> Self {
        let map = (0..n)
            .map(|i| (i, vec![Box::new(|_| hit(0)) as NaiveHandler]))
            .collect();
        Self {
            map: spin::Mutex::new(map),
        }
    }

    /// Calls every handler of `irq` under the lock; `false` if it has none.
    #[inline]
    pub fn dispatch(&self, irq: u32) -> bool {
        let map = self.map.lock();
        match map.get(&irq) {
            Some(handlers) => {
                for h in handlers {
                    h(irq);
                }
                true
            }
            None => false,
        }
    }

    /// Whether `irq` has handlers (the naive lookup).
    #[inline]
    pub fn contains(&self, irq: u32) -> bool {
        self.map.lock().contains_key(&irq)
    }

    /// Allocates the lowest free number (first fit, like irqcore's
    /// `alloc_descs`) with a placeholder handler set, then frees it.
    pub fn alloc_free(&self) -> u32 {
        let mut map = self.map.lock();
        let n = (0..).find(|k| !map.contains_key(k)).unwrap_or(u32::MAX);
        map.insert(n, Vec::new());
        map.remove(&n);
        n
    }
}

/// The `irq-framework` peer (rcore-os/tgoskits) through its public API.
#[cfg(feature = "irq-framework")]
pub mod irqf {
    use super::{current_cpu, hit};
    use irq_framework::{
        CpuId, HwIrq, IrqDomainId, IrqError, IrqHandle, IrqId, IrqOps, IrqOrigin, IrqRequest,
        IrqReturn, Registry, ShareMode,
    };

    /// The OS adapter: the current CPU is the thread's
    /// ([`super::set_current_cpu`]), every CPU is online, lines are always
    /// enabled and never pending; cross-CPU calls are unsupported (only
    /// per-CPU-scoped requests use them).
    #[derive(Debug, Default, Clone, Copy)]
    pub struct IrqfOps;

    impl IrqOps for IrqfOps {
        type LocalIrqState = ();
        fn current_cpu(&self) -> CpuId {
            CpuId(current_cpu() as usize)
        }
        fn cpu_online(&self, _cpu: CpuId) -> bool {
            true
        }
        fn in_irq_context(&self) -> bool {
            false
        }
        fn local_irq_save(&self) -> Self::LocalIrqState {}
        fn local_irq_restore(&self, _state: Self::LocalIrqState) {}
        fn run_on_cpu_sync(
            &self,
            _cpu: CpuId,
            _f: unsafe fn(*mut ()),
            _arg: *mut (),
        ) -> Result<(), IrqError> {
            // Only per-CPU-scoped requests need it, and the benchmarks make
            // none: refusing keeps this adapter free of `unsafe`.
            Err(IrqError::Unsupported)
        }
        fn set_enabled(
            &self,
            _irq: IrqId,
            _cpu: Option<CpuId>,
            _enabled: bool,
        ) -> Result<(), IrqError> {
            Ok(())
        }
        fn is_enabled(&self, _irq: IrqId, _cpu: Option<CpuId>) -> Result<bool, IrqError> {
            Ok(true)
        }
        fn is_pending(&self, _irq: IrqId, _cpu: Option<CpuId>) -> Result<bool, IrqError> {
            Ok(false)
        }
        fn is_in_service(&self, _irq: IrqId, _cpu: Option<CpuId>) -> Result<bool, IrqError> {
            Ok(false)
        }
        fn relax(&self) {
            core::hint::spin_loop();
        }
    }

    /// The registry type the benchmarks use.
    pub type IrqfRegistry = Registry<IrqfOps>;

    /// irq-framework's id for interrupt number `n` (domain 0, line `n`).
    pub const fn id(n: u32) -> IrqId {
        IrqId::new(IrqDomainId(0), HwIrq(n))
    }

    /// Registers `handlers` handlers hitting `slot` on line `n` (shared when
    /// more than one). Non-reentrant, irq-framework's default and the
    /// guarantee irqcore's flows give (a handler never runs concurrently
    /// with itself).
    pub fn register(reg: &IrqfRegistry, n: u32, handlers: usize, slot: usize) -> Vec<IrqHandle> {
        let share = if handlers > 1 {
            ShareMode::Shared
        } else {
            ShareMode::Exclusive
        };
        (0..handlers)
            .map(|_| {
                let req = IrqRequest::new(move |_ctx| {
                    hit(slot);
                    IrqReturn::Handled
                })
                .share_mode(share);
                reg.request(id(n), req).expect("irq-framework request")
            })
            .collect()
    }

    /// Dispatches line `n` on the calling thread's CPU; the number of
    /// handlers called.
    #[inline]
    pub fn dispatch(reg: &IrqfRegistry, n: u32) -> usize {
        reg.dispatch(id(n), CpuId(current_cpu() as usize), IrqOrigin::Kernel)
            .called
    }
}

/// The `handler_table` peer (ArceOS) through its public API.
#[cfg(feature = "handler_table")]
pub mod ht {
    use super::SLOT_HANDLERS;
    pub use handler_table::HandlerTable;

    /// Fills every entry of `table` with slot `i % NR_SLOTS`'s handler.
    pub fn fill<const N: usize>(table: &HandlerTable<N>) {
        for i in 0..N {
            assert!(table.register_handler(i, SLOT_HANDLERS[i % SLOT_HANDLERS.len()]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tests share the global counters: run them one at a time.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn delta(slot: usize, f: impl FnOnce()) -> u64 {
        let before = hits(slot);
        f();
        hits(slot) - before
    }

    #[test]
    fn every_irqcore_flow_reaches_its_handlers() {
        let _s = SERIAL.lock().unwrap();
        let core = new_core(1024);
        for (flow, handlers) in [
            (FlowKind::Edge, 1),
            (FlowKind::FastEoi, 1),
            (FlowKind::PerCpu, 1),
            (FlowKind::Level, 4),
        ] {
            let irq = setup_irqcore_line(&core, 32, flow, handlers, 3);
            assert_eq!(
                delta(3, || core.handle_irq(irq).unwrap()),
                handlers as u64,
                "{flow:?}"
            );
        }
    }

    #[test]
    fn baselines_reach_their_handlers() {
        let _s = SERIAL.lock().unwrap();
        assert_eq!(delta(33 % NR_SLOTS, || assert!(fn_table_dispatch(33))), 1);
        assert!(!fn_table_dispatch(FN_TABLE_LEN as u32));
        assert_eq!(delta(0, || assert!(fn_table_dispatch_shared4(40))), 4);
        let reg = MutexRegistry::new();
        for _ in 0..4 {
            reg.register(7, Box::new(|_| hit(2)));
        }
        assert_eq!(delta(2, || assert!(reg.dispatch(7))), 4);
        assert!(!reg.dispatch(8));
        let reg = MutexRegistry::with_numbers(16);
        assert!(reg.contains(15) && !reg.contains(16));
        assert_eq!(reg.alloc_free(), 16);
    }

    #[test]
    #[cfg(feature = "irq-framework")]
    fn irq_framework_reaches_its_handlers() {
        let _s = SERIAL.lock().unwrap();
        let reg = irqf::IrqfRegistry::new(irqf::IrqfOps);
        irqf::register(&reg, 5, 1, 4);
        irqf::register(&reg, 6, 4, 5);
        assert_eq!(delta(4, || assert_eq!(irqf::dispatch(&reg, 5), 1)), 1);
        assert_eq!(delta(5, || assert_eq!(irqf::dispatch(&reg, 6), 4)), 4);
        assert_eq!(irqf::dispatch(&reg, 7), 0);
    }

    #[test]
    #[cfg(feature = "handler_table")]
    fn handler_table_reaches_its_handlers() {
        let _s = SERIAL.lock().unwrap();
        let table = ht::HandlerTable::<16>::new();
        ht::fill(&table);
        assert_eq!(delta(6, || assert!(table.handle(6))), 1);
        assert!(!table.handle(16));
    }

    #[test]
    fn current_cpu_is_per_thread() {
        set_current_cpu(2);
        assert_eq!(BenchPlatform.current_cpu(), CpuId::of::<2>());
        std::thread::spawn(|| assert_eq!(BenchPlatform.current_cpu(), CpuId::BOOT))
            .join()
            .unwrap();
    }
}
