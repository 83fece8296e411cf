//! The interrupt sources the kernel drives through irqcore:
//!
//! - the EL1 physical generic timer on every CPU: PPI 14 (INTID 30),
//!   level, percpu_devid flow, enabled per CPU in the `Starting` hotplug
//!   phase;
//! - the PL031 RTC at 0x0901_0000, SPI 2 (INTID 34), level, fasteoi flow:
//!   the device the kernel *causes* interrupts from and counts. Writing
//!   the match register with the current count raises its alarm interrupt
//!   at once (QEMU's pl031 `set_alarm`: zero ticks to go), the handler
//!   clears it (`RTCICR`). A generator in the boot CPU's timer tick keeps
//!   exactly one alarm in flight, so every one raised must be handled
//!   exactly once.

use alloc::sync::Arc;
use core::ops::Deref;
use core::sync::atomic::{AtomicU64, Ordering};

use irqcore::hotplug::HotplugCtx;
use irqcore::{
    CpuId, CpuMask, CpuPhase, DevId, HotplugCallback, IrqError, IrqNumber, IrqRequest, IrqReturn,
    RequestFlags, TriggerType,
};

use kernel_common::source::{Caused, Source, mask_bits};

use crate::cpu::{self, MAX_CPUS};
use crate::irq::{self, CORE, KernelPlatform};

/// Timer period: 1 ms.
const TICK_HZ: u64 = 1000;

// ----- generic timer -------------------------------------------------------

/// The EL1 physical timer.
pub static TIMER: Source = Source::new("arch_timer");

fn tick_period() -> u64 {
    (cpu::counter_hz() / TICK_HZ).max(1)
}

/// Maps the timer PPI (device tree `<1 14 4>`: PPI 14, level high) and
/// installs its per-CPU handler; registers its `Starting` hotplug callback
/// (after the GIC's, so the CPU interface is up before the PPI is enabled).
pub fn setup_timer() -> Result<(), &'static str> {
    // Physical timer PPI 14, or the virtual timer's PPI 11 (Xen guests).
    let ppi = if cpu::virtual_timer() { 11 } else { 14 };
    let irq = irq::map_fwspec(&[1, ppi, 4])?;
    let handler = Arc::new(|_irq: IrqNumber| {
        let me = cpu::current();
        TIMER.record(me);
        // Writing TVAL re-arms the timer and drops its level output.
        cpu::timer_arm(tick_period());
        if me == CpuId::BOOT {
            RTC.generator_tick();
            crate::msi::tick();
        }
        kernel_common::watchdog::tick();
        IrqReturn::HANDLED
    });
    CORE.request_irq_raw(
        irq,
        IrqRequest::new("arch_timer", handler)
            .flags(RequestFlags::PERCPU)
            .dev_id(DevId(0x2001)),
    )
    .map_err(|_| "request timer PPI")?;
    TIMER.set_irq(irq);
    CORE.register_hotplug(CpuPhase::Starting, Arc::new(LocalHotplug))
        .map_err(|_| "register timer hotplug")?;
    Ok(())
}

/// Enables the kernel's per-CPU interrupts on the calling CPU and starts
/// its timer.
pub fn start_local() -> Result<(), IrqError> {
    irq::enable_local_ipis()?;
    if let Some(irq) = TIMER.irq() {
        CORE.enable_percpu_irq(irq, TriggerType::LevelHigh)?;
        cpu::timer_arm(tick_period());
    }
    Ok(())
}

/// Stops the calling CPU's timer.
pub fn stop_local_timer() {
    cpu::timer_stop();
}

/// The per-CPU share of the `Starting` phase: up (on the new CPU, IRQs
/// masked) enables its SGIs and timer PPI and starts the timer; down
/// ("dying", inside stop-machine, after irqcore disabled the CPU's per-CPU
/// irqs) stops the timer so its output is low when the CPU powers off.
struct LocalHotplug;

impl HotplugCallback<KernelPlatform> for LocalHotplug {
    fn name(&self) -> &str {
        "arm64-local"
    }

    fn up(&self, _ctx: &HotplugCtx<'_, KernelPlatform>) -> Result<(), IrqError> {
        start_local()
    }

    fn down(&self, _ctx: &HotplugCtx<'_, KernelPlatform>) {
        stop_local_timer();
    }
}

// ----- PL031 RTC -------------------------------------------------------------

/// The PL031 (PrimeCell RTC TRM, 3.2): fixed `virt` address, SPI 2.
mod pl031 {
    pub const BASE: usize = 0x0901_0000;
    /// Match.
    pub const MR: usize = 0x04;
    /// Load (sets the counter).
    pub const LR: usize = 0x08;
    /// Control (bit 0 starts the counter).
    pub const CR: usize = 0x0C;
    /// Interrupt mask set/clear.
    pub const IMSC: usize = 0x10;
    /// Raw interrupt status.
    pub const RIS: usize = 0x14;
    /// Masked interrupt status.
    pub const MIS: usize = 0x18;
    /// Interrupt clear.
    pub const ICR: usize = 0x1C;
}

/// The count the alarm matches (see [`Rtc::raise`]).
const ALARM_AT: u32 = 0x1000;

fn rtc_read(off: usize) -> u32 {
    // SAFETY: PL031 registers in the identity-mapped device region; only
    // this driver touches the RTC.
    unsafe { core::ptr::read_volatile((pl031::BASE + off) as *const u32) }
}

fn rtc_write(off: usize, v: u32) {
    // SAFETY: as in `rtc_read`.
    unsafe { core::ptr::write_volatile((pl031::BASE + off) as *mut u32, v) }
}

/// The RTC alarm: a device the kernel causes and counts.
pub struct Rtc {
    dev: Caused,
    /// Handler calls so far (feature `drop-rtc-irqs` ignores every second).
    dropped: AtomicU64,
}

impl Deref for Rtc {
    type Target = Caused;
    fn deref(&self) -> &Caused {
        &self.dev
    }
}

/// The RTC.
pub static RTC: Rtc = Rtc {
    dev: Caused::new("pl031-rtc"),
    dropped: AtomicU64::new(0),
};

impl Rtc {
    /// Raises one alarm if none is in flight (boot CPU's timer tick),
    /// exactly once: with the match register at [`ALARM_AT`], loading the
    /// counter with 0 leaves the alarm an hour away, and loading it with
    /// `ALARM_AT` makes it match at once (QEMU's pl031 re-evaluates the
    /// alarm on every load, in the same register write, so no second
    /// boundary can make it miss or fire twice).
    fn generator_tick(&self) {
        if self.begin_raise() {
            rtc_write(pl031::LR, 0);
            rtc_write(pl031::LR, ALARM_AT);
        }
    }

    fn handle(&self) -> IrqReturn {
        if rtc_read(pl031::MIS) & 1 == 0 {
            self.unhandled.fetch_add(1, Ordering::Relaxed);
            return IrqReturn::NONE;
        }
        if cfg!(feature = "drop-rtc-irqs")
            && self
                .dropped
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(2)
        {
            // Broken on purpose: ignore the alarm. The level line stays up,
            // so it comes straight back and is handled then, but irqcore
            // counts two arrivals for one alarm: the checks must see that.
            return IrqReturn::NONE;
        }
        rtc_write(pl031::ICR, 1);
        self.src.record(cpu::current());
        self.done();
        IrqReturn::HANDLED
    }
}

/// Maps the RTC (device tree `<0 2 4>`: SPI 2, level high), installs its
/// handler and unmasks the device's alarm interrupt. The generator starts
/// paused.
pub fn setup_rtc() -> Result<(), &'static str> {
    rtc_write(pl031::IMSC, 0);
    rtc_write(pl031::ICR, 1);
    rtc_write(pl031::CR, 1);
    rtc_write(pl031::LR, 0);
    rtc_write(pl031::MR, ALARM_AT);
    rtc_write(pl031::ICR, 1);
    let irq = irq::map_fwspec(&[0, 2, 4])?;
    CORE.request_irq_raw(
        irq,
        IrqRequest::new("pl031-rtc", Arc::new(|_irq: IrqNumber| RTC.handle()))
            .trigger(TriggerType::LevelHigh)
            .dev_id(DevId(0x3001)),
    )
    .map_err(|_| "request RTC irq")?;
    RTC.src.set_irq(irq);
    rtc_write(pl031::IMSC, 1);
    Ok(())
}

/// Sets the RTC's affinity to `mask` with nothing in flight, then allows
/// exactly those CPUs (the effective target is a CPU of the mask).
pub fn move_rtc(mask: &CpuMask) -> Result<(), IrqError> {
    let irq = RTC.src.irq().ok_or(IrqError::InvalidArgument)?;
    let was_paused = RTC.paused.swap(true, Ordering::AcqRel);
    let t0 = crate::time::now_us();
    while !RTC.idle() && crate::time::now_us() - t0 < 5_000_000 {
        core::hint::spin_loop();
    }
    // Widen first: the last alarm may still be on its way to the old CPU.
    RTC.src.allowed.fetch_or(mask_bits(mask), Ordering::AcqRel);
    let r = CORE.set_affinity(irq, mask);
    if r.is_ok() {
        RTC.src.allowed.store(mask_bits(mask), Ordering::Release);
    }
    RTC.paused.store(was_paused, Ordering::Release);
    r
}

/// Prints the RTC's state and its descriptor (diagnostics of a lost alarm).
pub fn dump_rtc() {
    let per_cpu: alloc::vec::Vec<u64> = CpuId::all(MAX_CPUS).map(|c| RTC.src.on(c)).collect();
    let desc = RTC.src.irq().and_then(|i| CORE.snapshot(i).ok());
    crate::kprintln!(
        "rtc: raised {} handled {} unhandled {} RIS {:#x} MIS {:#x} allowed {:#x} per-cpu {per_cpu:?}; descriptor {:?}",
        RTC.raised.load(Ordering::Relaxed),
        RTC.handled.load(Ordering::Relaxed),
        RTC.unhandled.load(Ordering::Relaxed),
        rtc_read(pl031::RIS),
        rtc_read(pl031::MIS),
        RTC.src.allowed.load(Ordering::Relaxed),
        desc.map(|d| (d.line, d.delivery, d.effective_affinity)),
    );
}
