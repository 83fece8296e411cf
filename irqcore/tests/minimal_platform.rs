//! A one-CPU kernel without threads implements only `current_cpu` and the
//! three interrupt-flag methods (issue #18): everything else has a default
//! that is right there. And a kernel that does implement `schedule_resend`
//! naively, by calling straight back into the core, does not hang.
use irqcore::*;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The whole platform of a one-CPU kernel.
#[derive(Default)]
struct OneCpu {
    irqs_on: AtomicBool,
}

impl Platform for OneCpu {
    fn current_cpu(&self) -> CpuId {
        CpuId::BOOT
    }
    fn local_irq_save(&self) -> IrqFlags {
        IrqFlags(usize::from(self.irqs_on.swap(false, Ordering::SeqCst)))
    }
    fn local_irq_restore(&self, flags: IrqFlags) {
        self.irqs_on.store(flags.0 != 0, Ordering::SeqCst);
    }
    fn local_irq_enabled(&self) -> bool {
        self.irqs_on.load(Ordering::SeqCst)
    }
}

/// An 8259-like chip: mask bits, an EOI counter, no retrigger.
#[derive(Default)]
struct Pic {
    masked: AtomicU32,
    acks: AtomicU32,
    eois: AtomicU32,
}

impl IrqChip for Pic {
    fn name(&self) -> &str {
        "PIC"
    }
    fn mask(&self, d: &IrqData<'_>) {
        self.masked.fetch_or(1 << d.hwirq().0, Ordering::SeqCst);
    }
    fn unmask(&self, d: &IrqData<'_>) {
        self.masked.fetch_and(!(1 << d.hwirq().0), Ordering::SeqCst);
    }
    fn ack(&self, _d: &IrqData<'_>) {
        self.acks.fetch_add(1, Ordering::SeqCst);
    }
    fn eoi(&self, _d: &IrqData<'_>) {
        self.eois.fetch_add(1, Ordering::SeqCst);
    }
}

fn counter() -> (Arc<AtomicU64>, Arc<dyn IrqHandler>) {
    let n = Arc::new(AtomicU64::new(0));
    let n2 = n.clone();
    (
        n,
        Arc::new(move |_| {
            n2.fetch_add(1, Ordering::SeqCst);
            IrqReturn::HANDLED
        }),
    )
}

fn line(core: &IrqCore<OneCpu>, pic: &Arc<Pic>, pin: u32, flow: FlowKind) -> IrqNumber {
    let irq = core.alloc_descs(IrqNumber(32 + pin), 1).unwrap();
    core.set_chip(
        irq,
        vec![ChipLevel::new(pic.clone(), HwIrq(u64::from(pin)))],
        flow,
    )
    .unwrap();
    irq
}

#[test]
fn edge_level_and_fasteoi_lines_work_on_the_four_method_platform() {
    let core = IrqCore::new(OneCpu::default());
    core.set_cpu_online(CpuId::BOOT, true).unwrap();
    let pic = Arc::new(Pic::default());
    for (pin, flow) in [
        (0, FlowKind::Edge),
        (1, FlowKind::Level),
        (2, FlowKind::FastEoi),
    ] {
        let irq = line(&core, &pic, pin, flow);
        let (n, h) = counter();
        let _r = core
            .request_irq(irq, IrqRequest::new("dev", h))
            .unwrap()
            .leak();
        assert_eq!(pic.masked.load(Ordering::SeqCst) & (1 << pin), 0);
        for _ in 0..3 {
            core.handle_irq(irq).unwrap();
        }
        assert_eq!(n.load(Ordering::SeqCst), 3, "{flow:?}");
        assert_eq!(core.irq_count(irq, CpuId::BOOT), 3);
    }
    assert_eq!(pic.eois.load(Ordering::SeqCst), 3, "fasteoi EOIs each one");
}

#[test]
fn lazy_disable_replays_through_the_built_in_resend_queue() {
    let core = IrqCore::new(OneCpu::default());
    core.set_cpu_online(CpuId::BOOT, true).unwrap();
    let pic = Arc::new(Pic::default());
    let kbd = line(&core, &pic, 1, FlowKind::Edge);
    let timer = line(&core, &pic, 0, FlowKind::Edge);
    let (keys, h) = counter();
    let _k = core.request_irq(kbd, IrqRequest::new("kbd", h)).unwrap();
    let (ticks, t) = counter();
    let _t = core
        .request_irq(timer, IrqRequest::new("timer", t))
        .unwrap();

    core.disable_irq(kbd).unwrap();
    core.handle_irq(kbd).unwrap(); // a key while disabled: masked, pending
    assert_eq!(keys.load(Ordering::SeqCst), 0);
    assert_ne!(
        pic.masked.load(Ordering::SeqCst) & 2,
        0,
        "masked on arrival"
    );
    core.enable_irq(kbd).unwrap(); // replay queued (the 8259 cannot retrigger)
    assert_eq!(keys.load(Ordering::SeqCst), 0, "not run inside enable_irq");
    // The next interrupt, whatever it is, runs the replay on its way out.
    core.handle_irq(timer).unwrap();
    assert_eq!(ticks.load(Ordering::SeqCst), 1);
    assert_eq!(keys.load(Ordering::SeqCst), 1, "the key was replayed once");
    core.handle_irq(timer).unwrap();
    assert_eq!(keys.load(Ordering::SeqCst), 1, "and only once");
    assert_eq!(pic.masked.load(Ordering::SeqCst) & 2, 0, "unmasked again");
}

#[test]
fn threaded_handlers_run_inline_without_interrupt_threads() {
    let core = IrqCore::new(OneCpu::default());
    core.set_cpu_online(CpuId::BOOT, true).unwrap();
    let pic = Arc::new(Pic::default());
    let irq = line(&core, &pic, 3, FlowKind::Level);
    let order = Arc::new(Mutex::new(Vec::new()));
    let (o1, o2) = (order.clone(), order.clone());
    struct Split(Arc<Mutex<Vec<&'static str>>>, Arc<Mutex<Vec<&'static str>>>);
    impl IrqHandler for Split {
        fn handle(&self, _irq: IrqNumber) -> IrqReturn {
            self.0.lock().unwrap().push("hard");
            IrqReturn::WAKE_THREAD
        }
        fn thread(&self, _irq: IrqNumber) -> IrqReturn {
            self.1.lock().unwrap().push("thread");
            IrqReturn::HANDLED
        }
    }
    let req = IrqRequest::new("disk", Arc::new(Split(o1, o2)))
        .flags(RequestFlags::THREADED | RequestFlags::ONESHOT);
    let _r = core.request_irq(irq, req).unwrap();
    core.handle_irq(irq).unwrap();
    assert_eq!(*order.lock().unwrap(), vec!["hard", "thread"]);
    // Oneshot: masked while the thread ran, unmasked once it finished.
    assert_eq!(pic.masked.load(Ordering::SeqCst) & (1 << 3), 0);
    core.handle_irq(irq).unwrap();
    assert_eq!(order.lock().unwrap().len(), 4);
    // synchronize_irq has nothing to wait for.
    core.synchronize_irq(irq).unwrap();
}

#[test]
fn stop_machine_runs_on_the_only_cpu_with_the_default_run_on_cpus() {
    let core = IrqCore::new(OneCpu::default());
    core.set_cpu_online(CpuId::BOOT, true).unwrap();
    let one = CpuMask::of(CpuId::BOOT);
    let r = core
        .stop_machine()
        .stop_machine(core.platform(), &one, &one, &|cpu| cpu.get() + 41);
    assert_eq!(r, Ok(41));
    // Another CPU cannot be reached by the default: a typed error, no hang.
    let two = CpuMask::first_n(2);
    assert_eq!(
        core.stop_machine()
            .stop_machine(core.platform(), &two, &one, &|_| ()),
        Err(irqcore::stop_machine::StopMachineError::Incomplete)
    );
}

// ----- a naive schedule_resend ------------------------------------------------

/// A platform whose `schedule_resend` calls straight back into the core,
/// the obvious thing to write.
struct Reentrant {
    inner: OneCpu,
    resent: AtomicU32,
}

static CORE: IrqCore<Reentrant> = IrqCore::new(Reentrant {
    inner: OneCpu {
        irqs_on: AtomicBool::new(false),
    },
    resent: AtomicU32::new(0),
});

impl Platform for Reentrant {
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
    fn schedule_resend(&self, irq: IrqNumber) {
        self.resent.fetch_add(1, Ordering::SeqCst);
        CORE.handle_sw_resend(irq).unwrap();
    }
}

#[test]
fn a_schedule_resend_that_calls_back_into_the_core_does_not_hang() {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        CORE.set_cpu_online(CpuId::BOOT, true).unwrap();
        let pic = Arc::new(Pic::default());
        let irq = CORE.alloc_descs(IrqNumber(40), 1).unwrap();
        CORE.set_chip(irq, vec![ChipLevel::new(pic, HwIrq(4))], FlowKind::Edge)
            .unwrap();
        let (n, h) = counter();
        let _r = CORE.request_irq(irq, IrqRequest::new("uart", h)).unwrap();
        CORE.disable_irq(irq).unwrap();
        CORE.handle_irq(irq).unwrap();
        CORE.enable_irq(irq).unwrap(); // schedule_resend -> handle_sw_resend
        let _ = tx.send((
            n.load(Ordering::SeqCst),
            CORE.platform().resent.load(Ordering::SeqCst),
        ));
    });
    let (handled, resent) = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("enable_irq hung in a re-entrant schedule_resend");
    assert_eq!(resent, 1);
    assert_eq!(handled, 1, "replayed from inside schedule_resend");
}

// ----- a naive wake_thread ----------------------------------------------------

/// A platform whose `wake_thread` runs the thread at once by calling
/// `run_thread` from inside the flow that woke it.
struct EagerThreads {
    inner: OneCpu,
}

static EAGER: IrqCore<EagerThreads> = IrqCore::new(EagerThreads {
    inner: OneCpu {
        irqs_on: AtomicBool::new(false),
    },
});

impl Platform for EagerThreads {
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
    fn wake_thread(&self, irq: IrqNumber, action: ActionId) -> ThreadWake {
        EAGER.run_thread(irq, action).unwrap();
        ThreadWake::Queued
    }
}

#[test]
fn a_wake_thread_that_runs_the_thread_at_once_does_not_hang() {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        EAGER.set_cpu_online(CpuId::BOOT, true).unwrap();
        let pic = Arc::new(Pic::default());
        let irq = EAGER.alloc_descs(IrqNumber(40), 1).unwrap();
        EAGER
            .set_chip(
                irq,
                vec![ChipLevel::new(pic.clone(), HwIrq(5))],
                FlowKind::Level,
            )
            .unwrap();
        let runs = Arc::new(AtomicU64::new(0));
        let r2 = runs.clone();
        let _r = EAGER
            .request_irq(
                irq,
                IrqRequest::threaded("disk", move |_| {
                    r2.fetch_add(1, Ordering::SeqCst);
                    IrqReturn::HANDLED
                })
                .flags(RequestFlags::ONESHOT),
            )
            .unwrap();
        for _ in 0..3 {
            EAGER.handle_irq(irq).unwrap();
        }
        EAGER.synchronize_irq(irq).unwrap();
        let _ = tx.send((
            runs.load(Ordering::SeqCst),
            pic.masked.load(Ordering::SeqCst) & (1 << 5),
        ));
    });
    let (runs, masked) = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("handle_irq hung in a wake_thread that runs the thread");
    assert_eq!(runs, 3, "each interrupt ran the thread once");
    assert_eq!(masked, 0, "oneshot line unmasked after each thread");
}

// ----- inline threads and the exit work ---------------------------------------

/// The one-CPU platform, recording what the core reports (threads still
/// run inline: the default `wake_thread`).
#[derive(Default)]
struct Reporting {
    inner: OneCpu,
    events: Mutex<Vec<IrqEvent>>,
}

impl Platform for Reporting {
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
    fn report(&self, event: IrqEvent) {
        self.events.lock().unwrap().push(event);
    }
}

#[test]
fn an_inline_thread_run_after_the_flow_reports_nothing_spurious() {
    // The inline thread is deferred to the dispatcher's exit work; that
    // work must not mistake "threads to run" for "line disabled as
    // spurious" (two bits of the same word).
    let core = IrqCore::new(Reporting::default());
    core.set_cpu_online(CpuId::BOOT, true).unwrap();
    let pic = Arc::new(Pic::default());
    let irq = core.alloc_descs(IrqNumber(40), 1).unwrap();
    core.set_chip(
        irq,
        vec![ChipLevel::new(pic.clone(), HwIrq(5))],
        FlowKind::Level,
    )
    .unwrap();
    let threads = Arc::new(AtomicU32::new(0));
    struct Woken(Arc<AtomicU32>);
    impl IrqHandler for Woken {
        fn handle(&self, _irq: IrqNumber) -> IrqReturn {
            IrqReturn::WAKE_THREAD
        }
        fn thread(&self, _irq: IrqNumber) -> IrqReturn {
            self.0.fetch_add(1, Ordering::SeqCst);
            IrqReturn::HANDLED
        }
    }
    let req = IrqRequest::new("disk", Arc::new(Woken(threads.clone())))
        .flags(RequestFlags::THREADED | RequestFlags::ONESHOT);
    let _r = core.request_irq(irq, req).unwrap();
    for n in 1..=3 {
        core.handle_irq(irq).unwrap();
        assert_eq!(threads.load(Ordering::SeqCst), n);
    }
    assert_eq!(*core.platform().events.lock().unwrap(), vec![]);
    assert_eq!(pic.masked.load(Ordering::SeqCst) & (1 << 5), 0, "unmasked");
}
