//! The kernel as a Xen guest (a dom0less domU of real Xen, booted by
//! `cargo qemu --arch aarch64 --xen`): event channels through `xen-evtchn`
//! on top of irqcore and the GIC Xen emulates.
//!
//! Set-up: the device tree says it is a Xen guest and where the GIC, the
//! vpl011 and the vCPUs are ([`crate::fdt`]); `shared_info` is mapped with
//! `XENMEM_add_to_physmap` at a heap page; every vCPU registers its own
//! `vcpu_info` (arm has a legacy slot for vCPU 0 only) with
//! `VCPUOP_register_vcpu_info` in its `Starting` phase; the upcall PPI
//! (`/hypervisor`'s, else Xen's fixed INTID 31) is a percpu_devid irq on the
//! GIC whose handler runs `XenIrqs::upcall`; the generic timer is the
//! virtual one (INTID 27; Xen traps the physical one).
//!
//! Scenarios, each counted and checked:
//! - per-vCPU IPI event channels (bound by `XenIrqs`' `Prepare` hotplug
//!   step) on every vCPU, each send acknowledged before the next;
//! - an interdomain loopback channel (`alloc_unbound` + `bind_interdomain`
//!   to this domain) whose receiving end is moved to every vCPU in turn
//!   through irqcore affinity (`EVTCHNOP_bind_vcpu`); the boot vCPU sends,
//!   every send must be handled on the vCPU it is bound to before the next.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use irqcore::hotplug::HotplugCtx;
use irqcore::{
    CpuId, CpuMask, CpuPhase, DevId, HotplugCallback, IrqError, IrqNumber, IrqRequest, IrqReturn,
    RequestFlags, TriggerType,
};
use xen_evtchn::abi::{SharedPage, VcpuEvents, arm};
use xen_evtchn::hypercall_arm::XenHypercalls;
use xen_evtchn::{Config, DomId, EventChannels, TwoLevel, VcpuId, XenIrqs};

use crate::cpu::{self, MAX_CPUS};
use crate::devices::{self, Source, TIMER};
use crate::exit::{ExitCode, exit};
use crate::fdt::DtInfo;
use crate::irq::{self, CORE, GicFrames, KernelPlatform};
use crate::smp::{self, KernelCpuControl};
use crate::{check, checks, heap, kprintln, time};

unsafe extern "C" {
    static __kernel_end: u8;
}

const PATIENCE_US: u64 = 5_000_000;
/// Sends per vCPU for each per-vCPU IPI channel.
const IPI_SENDS: u64 = 32;
/// Sends per receiving vCPU on the loopback channel, per round.
const LOOP_SENDS: u64 = 32;
/// Rounds of moving the loopback receiver over every vCPU.
const LOOP_ROUNDS: u64 = 2;
/// First irq number of event-channel descriptors (the GIC's mappings are
/// allocated from 0 up).
const FIRST_EVTCHN_IRQ: u32 = 512;

/// The upcall PPI.
pub static UPCALL: Source = Source::new("xen-upcall");
/// The per-vCPU IPI channels (kind 0).
pub static IPI: Source = Source::new("xen-ipi");
/// The loopback channel's receiving end.
pub static LOOP: Source = Source::new("xen-loopback");
/// Events on the loopback channel's other end (nobody sends there).
pub static LOOP_PEER: AtomicU64 = AtomicU64::new(0);

static XEN: spin::Once<XenIrqs> = spin::Once::new();
static HYP: XenHypercalls = XenHypercalls::new();
static UPCALL_IRQ: spin::Once<IrqNumber> = spin::Once::new();

/// One page: Xen's `shared_info` replaces it once mapped.
#[repr(C, align(4096))]
struct SharedInfoPage(arm::SharedInfo);

/// Every vCPU's registered `vcpu_info`, in one page (8 x 48 bytes: none
/// crosses the page end, as Xen requires).
#[repr(C, align(4096))]
struct VcpuInfoPage([arm::VcpuInfo; MAX_CPUS]);

static VCPU_INFO: spin::Once<&'static VcpuInfoPage> = spin::Once::new();
static REGISTERED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

fn fail(what: &str) -> ! {
    kprintln!("RESULT: FAIL {what}");
    exit(ExitCode::Fail)
}

/// Waits with IRQs unmasked until `cond` holds or `timeout_us` passed.
/// It spins rather than sleeping in WFI: a WFI traps to Xen, which
/// deschedules the vCPU until its next interrupt (~15 ms per wait seen
/// under TCG).
fn wait_until(timeout_us: u64, mut cond: impl FnMut() -> bool) -> bool {
    let t0 = time::now_us();
    cpu::enable_irqs();
    loop {
        if cond() {
            return true;
        }
        if time::now_us() - t0 > timeout_us {
            return cond();
        }
        core::hint::spin_loop();
    }
}

fn xen() -> &'static XenIrqs {
    match XEN.get() {
        Some(x) => x,
        None => fail("xen-evtchn not set up"),
    }
}

/// `VCPUOP_register_vcpu_info` for the calling vCPU (once: Xen refuses a
/// second registration and keeps the first across PSCI off/on).
fn register_own_vcpu_info() -> Result<(), IrqError> {
    let me = cpu::current();
    let (Some(page), Some(flag)) = (VCPU_INFO.get(), REGISTERED.get(me.index())) else {
        return Err(IrqError::BadCpu(me));
    };
    if flag.load(Ordering::Acquire) {
        return Ok(());
    }
    let addr = &page.0[me.index()] as *const arm::VcpuInfo as u64;
    match HYP.register_vcpu_info(VcpuId(me.0), addr >> 12, (addr & 0xfff) as u32) {
        Ok(()) => {
            flag.store(true, Ordering::Release);
            Ok(())
        }
        Err(e) => {
            kprintln!("VCPUOP_register_vcpu_info(vcpu {}): {e:?}", me.0);
            Err(IrqError::BadCpu(me))
        }
    }
}

/// The calling vCPU's share of the `Starting` phase (after the GIC's): its
/// `vcpu_info`, then the upcall PPI.
fn start_local_xen() -> Result<(), IrqError> {
    register_own_vcpu_info()?;
    if let Some(&irq) = UPCALL_IRQ.get() {
        CORE.enable_percpu_irq(irq, TriggerType::None)?;
    }
    Ok(())
}

struct XenLocal;

impl HotplugCallback<KernelPlatform> for XenLocal {
    fn name(&self) -> &str {
        "xen-local"
    }
    fn up(&self, _ctx: &HotplugCtx<'_, KernelPlatform>) -> Result<(), IrqError> {
        start_local_xen()
    }
    fn down(&self, _ctx: &HotplugCtx<'_, KernelPlatform>) {}
}

/// Maps `shared_info`, builds the event channels for `n` vCPUs and the
/// upcall irq, and registers the hotplug steps.
fn setup_evtchn(dt: &DtInfo, n: u32) -> Result<(), &'static str> {
    let shared: &'static SharedInfoPage =
        Box::leak(Box::new(SharedInfoPage(arm::SharedInfo::new_zeroed())));
    let gfn = (shared as *const SharedInfoPage as u64) >> 12;
    HYP.map_shared_info(gfn)
        .map_err(|_| "XENMEM_add_to_physmap(shared_info)")?;
    let infos: &'static VcpuInfoPage =
        Box::leak(Box::new(VcpuInfoPage(core::array::from_fn(|_| {
            arm::VcpuInfo::default()
        }))));
    VCPU_INFO.call_once(|| infos);
    let events: Vec<&'static VcpuEvents> =
        infos.0[..n as usize].iter().map(|i| &i.events).collect();
    let layer = TwoLevel::with_vcpu_info(SharedPage::Arm(&shared.0), events);
    let config = Config {
        nr_ipis: 1,
        per_vcpu_virqs: Vec::new(),
        ..Config::default()
    };
    let ch = Arc::new(EventChannels::new(
        Arc::new(HYP),
        Box::new(layer),
        config,
        Box::new(|| VcpuId(cpu::current().0)),
    ));
    let x = XenIrqs::new(ch, IrqNumber(FIRST_EVTCHN_IRQ));
    x.register_hotplug(&CORE)
        .map_err(|_| "xen-evtchn hotplug callbacks")?;
    XEN.call_once(|| x);

    let intid = dt.evtchn_intid();
    if !(16..32).contains(&intid) {
        return Err("event-channel interrupt is not a PPI");
    }
    let upcall = irq::map_fwspec(&[1, intid - 16, 4])?;
    CORE.request_irq_raw(
        upcall,
        IrqRequest::new(
            "xen-upcall",
            Arc::new(|_irq: IrqNumber| {
                UPCALL.record(cpu::current());
                xen().upcall(&CORE, 16);
                IrqReturn::HANDLED
            }),
        )
        .flags(RequestFlags::PERCPU)
        .dev_id(DevId(0x3001)),
    )
    .map_err(|_| "request the upcall PPI")?;
    UPCALL_IRQ.call_once(|| upcall);
    CORE.register_hotplug(CpuPhase::Starting, Arc::new(XenLocal))
        .map_err(|_| "register xen-local hotplug")?;
    // The boot vCPU: what hotplug does for the others.
    xen()
        .prepare_cpu(&CORE, CpuId(0))
        .map_err(|_| "per-vCPU channels of vCPU 0")?;
    xen().channels().vcpu_online(VcpuId(0));
    start_local_xen().map_err(|_| "vcpu_info / upcall on vCPU 0")?;
    Ok(())
}

/// Runs the Xen guest scenario and exits QEMU.
pub fn run(dt: DtInfo) -> ! {
    let (major, minor) = HYP.version();
    kprintln!(
        "irqcore aarch64 reference kernel as a Xen guest (Xen {major}.{minor}, found by {:?})",
        dt.xen()
    );
    // SAFETY: only the address of the linker symbol is taken.
    let end = unsafe { &__kernel_end as *const u8 as usize };
    let heap_start = (end + (2 << 20) - 1) & !((2 << 20) - 1);
    // SAFETY: guest RAM above the image (the domU has 128 MiB from
    // 0x4000_0000; Xen's device tree sits near its top, far above
    // heap_start + 16 MiB) that nothing else uses.
    unsafe { heap::init(heap_start, 16 << 20) };
    let t_start = time::now_us();

    let n = smp::discover_up_to(dt.cpus.max(1));
    let v3 = cpu::has_gicv3_sysregs();
    let frames = GicFrames::from_reg(dt.gic_regs, v3);
    let version = match irq::init_gic_at(frames) {
        Ok(v) => v,
        Err(e) => fail(e),
    };
    kprintln!(
        "{version:?} at {frames:x?}; {n} vCPU(s) (device tree); event-channel INTID {}; counter {} Hz",
        dt.evtchn_intid(),
        cpu::counter_hz()
    );
    check!(n == dt.cpus, "vCPU count from the device tree ({n})");
    let _ = CORE.set_cpu_online(CpuId(0), true);
    cpu::use_virtual_timer();
    for r in [irq::setup_ipis(), devices::setup_timer()] {
        if let Err(e) = r {
            fail(e)
        }
    }
    if let Err(e) = setup_evtchn(&dt, n) {
        fail(e)
    }
    if let Err(e) = devices::start_local() {
        fail(&alloc::format!("boot vCPU per-CPU irqs: {e:?}"))
    }
    cpu::enable_irqs();
    let ticked = wait_until(PATIENCE_US, || TIMER.on(CpuId(0)) >= 3);
    check!(ticked, "virtual timer PPI ticks on vCPU 0 through irqcore");

    // ----- SMP ---------------------------------------------------------------
    let t = time::now_us();
    for c in 1..n {
        if let Err(e) = CORE.cpu_up(CpuId(c), &KernelCpuControl) {
            check!(false, "cpu_up(vCPU {c}): {e:?}");
        }
    }
    let all = CpuMask::first_n(n as usize);
    check!(
        CORE.online_cpus() == all,
        "all {n} vCPUs online: {:?}",
        CORE.online_cpus()
    );
    kprintln!(
        "smp: {n} vCPU(s) online (Xen PSCI CPU_ON + cpu_up) in {} us",
        time::now_us() - t
    );
    for c in 0..n {
        check!(
            REGISTERED[c as usize].load(Ordering::Acquire),
            "vCPU {c} registered its vcpu_info"
        );
        let ok = wait_until(PATIENCE_US, || TIMER.on(CpuId(c)) >= 3);
        check!(ok, "virtual timer PPI ticks on vCPU {c}");
    }

    ipis(n);
    loopback(n);

    // ----- final checks ---------------------------------------------------------
    smp::run_on_cpus(&CORE.online_cpus(), &|_| devices::stop_local_timer());
    for c in 0..n {
        let cpu = CpuId(c);
        check!(
            UPCALL.on(cpu) > 0,
            "upcalls on vCPU {c} ({})",
            UPCALL.on(cpu)
        );
    }
    for (name, v) in [
        (
            "irqs with no mapping",
            irq::UNMAPPED.load(Ordering::Relaxed),
        ),
        (
            "irqcore events reported",
            irq::REPORTED_EVENTS.load(Ordering::Relaxed),
        ),
        (
            "loopback peer-end events",
            LOOP_PEER.load(Ordering::Relaxed),
        ),
        (
            "loopback on a vCPU it was not bound to",
            LOOP.wrong_cpu.load(Ordering::Relaxed),
        ),
        (
            "IPIs on a wrong vCPU",
            IPI.wrong_cpu.load(Ordering::Relaxed),
        ),
    ] {
        check!(v == 0, "{name}: {v}");
    }
    let stats = xen().channels().stats();
    kprintln!();
    kprintln!("{}", CORE.interrupt_table());
    kprintln!(
        "total {} us; upcall stats {stats:?}",
        time::now_us() - t_start
    );
    match checks::verdict() {
        Ok(passed) => {
            kprintln!("RESULT: PASS {passed} checks");
            exit(ExitCode::Pass)
        }
        Err((failed, first)) => {
            kprintln!("RESULT: FAIL {first} ({failed} failed)");
            exit(ExitCode::Fail)
        }
    }
}

/// Per-vCPU IPI event channels: a handler on every vCPU's channel, enabled
/// on its vCPU; `IPI_SENDS` sends to each from the boot vCPU, each handled
/// before the next.
fn ipis(n: u32) {
    let x = xen();
    let mut irqs = Vec::new();
    for c in 0..n {
        let Some(irq) = x.ipi_irq(0, CpuId(c)) else {
            check!(false, "IPI channel bound for vCPU {c}");
            continue;
        };
        irqs.push(irq);
        let r = CORE.request_irq_raw(
            irq,
            IrqRequest::new(
                "xen-ipi",
                Arc::new(|_irq: IrqNumber| {
                    IPI.record(cpu::current());
                    IrqReturn::HANDLED
                }),
            )
            .flags(RequestFlags::PERCPU)
            .dev_id(DevId(0x3100 + c as usize)),
        );
        check!(r.is_ok(), "request the IPI channel of vCPU {c}: {r:?}");
    }
    let failed = AtomicU64::new(0);
    smp::run_on_cpus(&CORE.online_cpus(), &|c| {
        if let Some(irq) = x.ipi_irq(0, c)
            && CORE.enable_percpu_irq(irq, TriggerType::None).is_err()
        {
            failed.fetch_add(1, Ordering::Relaxed);
        }
    });
    check!(
        failed.load(Ordering::Relaxed) == 0,
        "IPI channels enabled on their vCPUs"
    );
    let t = time::now_us();
    for c in 0..n {
        let cpu = CpuId(c);
        let base = IPI.on(cpu);
        let mut ok = true;
        for i in 0..IPI_SENDS {
            if x.channels().send_ipi(0, VcpuId(c)).is_err()
                || !wait_until(PATIENCE_US, || IPI.on(cpu) > base + i)
            {
                ok = false;
                break;
            }
        }
        check!(
            ok && IPI.on(cpu) == base + IPI_SENDS,
            "{IPI_SENDS} IPI event-channel sends to vCPU {c}, each handled there ({})",
            IPI.on(cpu) - base
        );
    }
    kprintln!(
        "ipis: {IPI_SENDS} per vCPU on {n} vCPU(s) in {} us",
        time::now_us() - t
    );
}

/// The interdomain loopback channel, its receiver moved over every vCPU.
fn loopback(n: u32) {
    let x = xen();
    let (peer, peer_irq) = match x.alloc_unbound(&CORE, DomId::SELF) {
        Ok(v) => v,
        Err(e) => {
            check!(false, "EVTCHNOP_alloc_unbound(DOMID_SELF): {e:?}");
            return;
        }
    };
    let (local, irq) = match x.bind_interdomain(&CORE, DomId::SELF, peer, false) {
        Ok(v) => v,
        Err(e) => {
            check!(
                false,
                "EVTCHNOP_bind_interdomain(DOMID_SELF, {peer:?}): {e:?}"
            );
            return;
        }
    };
    kprintln!(
        "loopback: port {} (irq {}) <-> port {} (irq {})",
        local.0,
        irq.0,
        peer.0,
        peer_irq.0
    );
    let r1 = CORE.request_irq_raw(
        peer_irq,
        IrqRequest::new(
            "xen-loop-peer",
            Arc::new(|_irq: IrqNumber| {
                LOOP_PEER.fetch_add(1, Ordering::Relaxed);
                IrqReturn::HANDLED
            }),
        )
        .dev_id(DevId(0x3201)),
    );
    LOOP.allowed.store(1, Ordering::Release);
    let _ = CORE.set_affinity(irq, &CpuMask::of(CpuId(0)));
    let r2 = CORE.request_irq_raw(
        irq,
        IrqRequest::new(
            "xen-loopback",
            Arc::new(|_irq: IrqNumber| {
                LOOP.record(cpu::current());
                IrqReturn::HANDLED
            }),
        )
        .dev_id(DevId(0x3202)),
    );
    check!(
        r1.is_ok() && r2.is_ok(),
        "request the loopback ends: {r1:?} {r2:?}"
    );
    // Xen sets a freshly bound local port pending ("in case of lost
    // notifications"): that first event arrives now.
    let first = wait_until(PATIENCE_US, || LOOP.total() >= 1);
    check!(first, "the bind's initial loopback event is delivered");
    let t = time::now_us();
    let mut expected = LOOP.total();
    let mut vcpus_seen = 0u64;
    for _round in 0..LOOP_ROUNDS {
        for c in 0..n {
            let cpu = CpuId(c);
            if let Err(e) = CORE.set_affinity(irq, &CpuMask::of(cpu)) {
                check!(false, "loopback: set_affinity(vCPU {c}): {e:?}");
                continue;
            }
            LOOP.allowed.store(1 << c, Ordering::Release);
            let bound = x.channels().binding(local).map(|b| b.vcpu);
            check!(
                bound == Some(VcpuId(c)),
                "loopback port bound to vCPU {c} ({bound:?})"
            );
            let base = LOOP.on(cpu);
            let mut ok = true;
            for _ in 0..LOOP_SENDS {
                expected += 1;
                if x.channels().ops().send(peer).is_err()
                    || !wait_until(PATIENCE_US, || LOOP.total() >= expected)
                {
                    ok = false;
                    break;
                }
            }
            let got = LOOP.on(cpu) - base;
            check!(
                ok && got == LOOP_SENDS && LOOP.total() == expected,
                "loopback: {LOOP_SENDS} sends from vCPU 0 handled on vCPU {c} ({got}; total {} of {expected})",
                LOOP.total()
            );
            if got > 0 {
                vcpus_seen |= 1 << c;
            }
        }
    }
    check!(
        vcpus_seen.count_ones() == n,
        "loopback handled on all {n} vCPU(s)"
    );
    kprintln!(
        "loopback: {} sends over {n} vCPU(s), {LOOP_ROUNDS} rounds, in {} us",
        LOOP_SENDS * u64::from(n) * LOOP_ROUNDS,
        time::now_us() - t
    );
}
