//! Shared test scaffolding: a tiny `Platform` whose "current CPU" is a
//! thread-local (threads play vCPUs), and a guest domain wired to the
//! hypervisor model and an `IrqCore`.
#![allow(dead_code)]

use irqcore::{
    CoreConfig, CpuControl, CpuId, CpuMask, DevId, IrqCore, IrqError, IrqFlags, IrqNumber,
    IrqRequest, IrqReturn, Platform, RequestFlags,
};
use std::cell::Cell;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use xen_evtchn::abi::{Layout, VcpuEvents, arm, x86};
use xen_evtchn::model::{DomainHandle, HypervisorModel};
use xen_evtchn::port_layer::select;
use xen_evtchn::{
    AbiChoice, Config, DomId, EventChannelOps, EventChannels, EvtchnAbi, Port, PortLayer, VcpuId,
    XenIrqs,
};

thread_local! {
    static CPU: Cell<u32> = const { Cell::new(0) };
    static IRQS_ON: Cell<bool> = const { Cell::new(true) };
}

/// Makes the calling thread play `cpu`.
pub fn set_cpu(cpu: u32) {
    CPU.with(|c| c.set(cpu));
}

/// The CPU the calling thread plays.
pub fn cpu() -> u32 {
    CPU.with(|c| c.get())
}

/// Thread-local current CPU; resends are recorded, not run; busy-waits
/// are counted per CPU (so a test can see a CPU spinning in a flow).
#[derive(Default)]
pub struct TestPlatform {
    pub resends: Mutex<Vec<IrqNumber>>,
    pub relaxes: [AtomicU32; 8],
}

impl Platform for TestPlatform {
    fn current_cpu(&self) -> CpuId {
        CpuId::new(cpu()).unwrap()
    }
    fn local_irq_save(&self) -> IrqFlags {
        IrqFlags(IRQS_ON.with(|c| c.replace(false)) as usize)
    }
    fn local_irq_restore(&self, flags: IrqFlags) {
        IRQS_ON.with(|c| c.set(flags.0 != 0));
    }
    fn local_irq_enabled(&self) -> bool {
        IRQS_ON.with(|c| c.get())
    }
    fn cpu_relax(&self) {
        if let Some(c) = self.relaxes.get(cpu() as usize) {
            c.fetch_add(1, Ordering::SeqCst);
        }
        std::thread::yield_now();
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
    fn schedule_resend(&self, irq: IrqNumber) {
        self.resends.lock().unwrap().push(irq);
    }
}

pub const GUEST: DomId = DomId(1);
pub const PEER: DomId = DomId(0);

/// A guest domain with `n` vCPUs (all prepared and online), a one-vCPU
/// peer domain (dom0), the guest's event channels and an `IrqCore`.
pub struct Guest {
    pub model: Arc<HypervisorModel>,
    pub dom: DomainHandle,
    pub peer: DomainHandle,
    pub ch: Arc<EventChannels>,
    pub xen: XenIrqs,
    pub core: IrqCore<TestPlatform>,
}

pub fn guest(n: u32) -> Guest {
    guest_with(n, Config::default())
}

pub fn guest_with(n: u32, config: Config) -> Guest {
    guest_partial(n, n, config)
}

/// The `shared_info` layout the suite runs with: `XEN_EVTCHN_LAYOUT=arm`
/// or `x86` (default: the host's, x86 on an x86-64 host), so the whole
/// suite can be run against either (`scripts/test-all` runs both).
pub fn layout() -> Layout {
    match std::env::var("XEN_EVTCHN_LAYOUT").as_deref() {
        Ok("arm") => Layout::Arm,
        Ok("x86") => Layout::X86,
        _ => Layout::NATIVE,
    }
}

/// The event-channel ABI the suite runs with. A test binary whose name
/// ends in `_fifo` (`tests/*_fifo.rs`, which include the 2-level suites
/// unchanged) runs FIFO; the others run 2-level unless
/// `XEN_EVTCHN_ABI=fifo`. So `cargo test -p xen-evtchn` runs every
/// scenario under both ABIs.
pub fn abi() -> EvtchnAbi {
    if env!("CARGO_CRATE_NAME").ends_with("_fifo") {
        return EvtchnAbi::Fifo;
    }
    match std::env::var("XEN_EVTCHN_ABI").as_deref() {
        Ok("fifo") => EvtchnAbi::Fifo,
        _ => EvtchnAbi::TwoLevel,
    }
}

/// The port layer for `dom`'s `n` vCPUs under `layout` and [`abi`].
pub fn layer_for(dom: &DomainHandle, n: u32, layout: Layout) -> Box<dyn PortLayer> {
    layer_with_abi(dom, n, layout, abi())
}

/// The port layer of `abi` for `dom`'s `n` vCPUs (FIFO: vCPU 0's control
/// block is registered here, the others' in their prepare step).
pub fn layer_with_abi(
    dom: &DomainHandle,
    n: u32,
    layout: Layout,
    abi: EvtchnAbi,
) -> Box<dyn PortLayer> {
    let choice = match abi {
        EvtchnAbi::Fifo => AbiChoice::Fifo,
        EvtchnAbi::TwoLevel => AbiChoice::TwoLevel,
    };
    let sel = select(
        choice,
        dom,
        dom.shared_info(),
        vcpu_infos(dom, n, layout),
        VcpuId(0),
    )
    .unwrap();
    assert_eq!(sel.abi, abi);
    sel.layer
}

/// Where `dom`'s `n` vCPUs have their `vcpu_info`: legacy slots where the
/// layout has them for every vCPU (x86), otherwise every vCPU registers
/// its own (arm; as a kernel does, vCPU 0 too).
pub fn vcpu_infos(dom: &DomainHandle, n: u32, layout: Layout) -> Vec<&'static VcpuEvents> {
    if n as usize <= layout.legacy_vcpus() {
        return (0..n as usize)
            .map(|v| dom.shared_info().legacy_vcpu(v).unwrap())
            .collect();
    }
    (0..n)
        .map(|v| {
            let info: &'static VcpuEvents = match layout {
                Layout::X86 => &Box::leak(Box::<x86::VcpuInfo>::default()).events,
                Layout::Arm => &Box::leak(Box::<arm::VcpuInfo>::default()).events,
            };
            dom.register_vcpu_info(VcpuId(v), info).unwrap();
            // Registration flags everything pending (one spurious upcall);
            // a fresh domain has nothing to deliver.
            info.evtchn_pending_sel.store(0, Ordering::SeqCst);
            info.evtchn_upcall_pending.store(0, Ordering::SeqCst);
            info
        })
        .collect()
}

/// Like [`guest_with`], with only vCPUs `0..up` prepared and online.
pub fn guest_partial(n: u32, up: u32, config: Config) -> Guest {
    guest_layout(n, up, config, layout())
}

/// Like [`guest_partial`] with an explicit `shared_info` layout.
pub fn guest_layout(n: u32, up: u32, config: Config, layout: Layout) -> Guest {
    guest_abi(n, up, config, layout, abi())
}

/// Like [`guest_layout`] with an explicit event-channel ABI.
pub fn guest_abi(n: u32, up: u32, config: Config, layout: Layout, abi: EvtchnAbi) -> Guest {
    guest_on_core(n, n, up, config, layout, abi)
}

/// Like [`guest_abi`], with an `IrqCore` for `nr_cpus` CPUs (a kernel may
/// know more CPUs than the domain has vCPUs).
pub fn guest_on_core(
    n: u32,
    nr_cpus: u32,
    up: u32,
    config: Config,
    layout: Layout,
    abi: EvtchnAbi,
) -> Guest {
    let model = HypervisorModel::new();
    let dom = model.create_domain_with_layout(GUEST, n, layout).unwrap();
    let peer = model.create_domain_with_layout(PEER, 1, layout).unwrap();
    let layer = layer_with_abi(&dom, n, layout, abi);
    let ch = Arc::new(EventChannels::new(
        Arc::new(dom.clone()),
        layer,
        config,
        Box::new(|| VcpuId(cpu())),
    ));
    let xen = XenIrqs::new(ch.clone(), IrqNumber(32));
    let core = IrqCore::with_config(
        TestPlatform::default(),
        CoreConfig {
            capacity: 1024,
            nr_cpus,
        },
    );
    let g = Guest {
        model,
        dom,
        peer,
        ch,
        xen,
        core,
    };
    for c in 0..up {
        set_cpu(c);
        g.xen.prepare_cpu(&g.core, CpuId::new(c).unwrap()).unwrap();
        g.core.set_cpu_online(CpuId::new(c).unwrap(), true).unwrap();
        g.ch.vcpu_online(VcpuId(c));
    }
    set_cpu(0);
    g
}

/// A handler that counts its calls per CPU.
#[derive(Default)]
pub struct Counter {
    pub per_cpu: [AtomicU32; 8],
}

impl Counter {
    pub fn total(&self) -> u32 {
        self.per_cpu.iter().map(|c| c.load(Ordering::SeqCst)).sum()
    }
    pub fn on(&self, cpu: u32) -> u32 {
        self.per_cpu[cpu as usize].load(Ordering::SeqCst)
    }
    pub fn hit(&self) {
        self.per_cpu[cpu() as usize].fetch_add(1, Ordering::SeqCst);
    }
}

impl Guest {
    /// Connects a fresh peer port to the guest (edge flow); returns
    /// (peer port, guest port, irq). Xen sets a new interdomain port
    /// pending; that first event is drained here.
    pub fn connect(&self, counter: &Arc<Counter>, late_eoi: bool) -> (Port, Port, IrqNumber) {
        let pp = self.peer.alloc_unbound(GUEST).unwrap();
        let (gp, irq) = self
            .xen
            .bind_interdomain(&self.core, PEER, pp, late_eoi)
            .unwrap();
        // Start it on vCPU 0 (the core applies the affinity at startup and
        // the least-loaded choice could be another vCPU).
        self.core
            .set_affinity(irq, &CpuMask::from_cpus([CpuId::BOOT]))
            .unwrap();
        self.request(irq, counter, false);
        self.upcall_on(0);
        (pp, gp, irq)
    }

    /// Installs a counting handler.
    pub fn request(&self, irq: IrqNumber, counter: &Arc<Counter>, percpu: bool) {
        let c = counter.clone();
        let mut req = IrqRequest::new(
            "test",
            Arc::new(move |_irq: IrqNumber| {
                c.hit();
                IrqReturn::HANDLED
            }),
        )
        .dev_id(DevId(irq.0 as usize));
        if percpu {
            req = req.flags(RequestFlags::PERCPU);
        }
        self.core.request_irq_raw(irq, req).unwrap();
    }

    /// Runs the upcall on vCPU `c` (from the calling thread).
    pub fn upcall_on(&self, c: u32) -> u32 {
        let prev = cpu();
        set_cpu(c);
        let n = self.xen.upcall(&self.core, 16);
        set_cpu(prev);
        n
    }

    /// Whether any vCPU has work flagged.
    pub fn any_upcall_pending(&self, n: u32) -> bool {
        (0..n).any(|v| self.dom.upcall_pending(VcpuId(v)) || self.dom.selector(VcpuId(v)) != 0)
    }
}

/// Starts a CPU by running `cpu_starting` on a thread playing it.
pub struct Control<'a> {
    pub core: &'a IrqCore<TestPlatform>,
}

impl CpuControl for Control<'_> {
    fn boot_cpu(&self, cpu: CpuId) -> Result<(), IrqError> {
        std::thread::scope(|s| {
            s.spawn(|| {
                set_cpu(cpu.get());
                self.core.cpu_starting()
            })
            .join()
            .unwrap()
        })
    }
    fn kill_cpu(&self, _cpu: CpuId) -> Result<(), IrqError> {
        Ok(())
    }
}
