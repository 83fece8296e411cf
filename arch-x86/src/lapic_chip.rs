//! The local APIC's own interrupts as irqcore chips: the timer
//! ([`LapicTimerChip`], flow `PerCpuDevId`) and IPIs ([`LapicIpiChip`], flow
//! `PerCpu`).
//!
//! Both act on the *executing* CPU's APIC (the xAPIC page and the x2APIC
//! MSRs are CPU-local), so one chip serves every CPU; per-CPU enable and
//! disable (`IrqCore::enable_percpu_irq`) run on the CPU concerned. They
//! take no lock: each callback is one register access, or one
//! read-modify-write of a CPU-local LVT made with interrupts off by the
//! core. Give each chip a clone of one shared [`Lapic`]
//! ([`Lapic::into_shared`]).
//!
//! Typical use (the timer on `TIMER_VECTOR`):
//!
//! ```ignore
//! let lapic = Lapic::init(mode, mmio, msrs)?.into_shared();
//! let timer = Arc::new(LapicTimerChip::new(lapic.clone()));
//! core.set_chip(irq, vec![timer.level(TIMER_VECTOR)], FlowKind::PerCpuDevId)?;
//! core.request_irq(irq, IrqRequest::new("timer", handler).flags(RequestFlags::PERCPU))?.leak();
//! // on every CPU:
//! lapic.start_timer(TimerMode::Periodic, TIMER_VECTOR, count)?; // masked
//! core.enable_percpu_irq(irq, TriggerType::None)?;              // unmasks
//! ```

use crate::ids::{ApicId, Vector};
use crate::lapic::Lapic;
use crate::regs::{Mmio32, Msr};
use alloc::sync::Arc;
use irqcore::{ChipLevel, HwIrq, IrqChip, IrqData};

/// The APIC timer of every CPU as one per-CPU (`PerCpuDevId`) irq. `mask`
/// and `unmask` set the timer LVT's mask bit on the executing CPU, keeping
/// mode and vector; `eoi` signals the APIC's EOI after the handler. The
/// hwirq is the timer's vector (informational).
#[derive(Debug)]
pub struct LapicTimerChip<M, R> {
    lapic: Lapic<M, R>,
}

impl<M: Mmio32 + 'static, R: Msr + 'static> LapicTimerChip<M, R> {
    /// A timer chip over `lapic`.
    pub fn new(lapic: Lapic<M, R>) -> Self {
        Self { lapic }
    }

    /// The chip level for `IrqCore::set_chip` (flow `PerCpuDevId`).
    pub fn level(self: &Arc<Self>, vector: Vector) -> ChipLevel {
        ChipLevel::new(
            self.clone() as Arc<dyn IrqChip>,
            HwIrq(u64::from(vector.get())),
        )
    }

    /// The LAPIC driver.
    pub fn lapic(&self) -> &Lapic<M, R> {
        &self.lapic
    }
}

impl<M: Mmio32, R: Msr> IrqChip for LapicTimerChip<M, R> {
    fn name(&self) -> &str {
        "LAPIC-timer"
    }
    fn mask(&self, _d: &IrqData<'_>) {
        self.lapic.set_timer_masked(true);
    }
    fn unmask(&self, _d: &IrqData<'_>) {
        self.lapic.set_timer_masked(false);
    }
    fn eoi(&self, _d: &IrqData<'_>) {
        self.lapic.eoi();
    }
}

/// Inter-processor interrupts as per-CPU (`PerCpu`) irqs, one per vector
/// (the hwirq). An IPI cannot be masked at the receiver, so `mask` and
/// `unmask` do nothing (irqcore still tracks per-CPU enablement); `eoi`
/// signals the APIC's EOI after the handlers. [`LapicIpiChip::send`] raises
/// one.
#[derive(Debug)]
pub struct LapicIpiChip<M, R> {
    lapic: Lapic<M, R>,
}

impl<M: Mmio32 + 'static, R: Msr + 'static> LapicIpiChip<M, R> {
    /// An IPI chip over `lapic`.
    pub fn new(lapic: Lapic<M, R>) -> Self {
        Self { lapic }
    }

    /// The chip level of the IPI on `vector` (flow `PerCpu`).
    pub fn level(self: &Arc<Self>, vector: Vector) -> ChipLevel {
        ChipLevel::new(
            self.clone() as Arc<dyn IrqChip>,
            HwIrq(u64::from(vector.get())),
        )
    }

    /// Sends the IPI on `vector` to the CPU with `apic_id`.
    pub fn send(&self, apic_id: ApicId, vector: Vector) -> Result<(), crate::LapicError> {
        use crate::lapic::{IpiDest, IpiKind};
        self.lapic
            .send_ipi(IpiKind::Fixed(vector), IpiDest::Apic(apic_id))
    }

    /// The LAPIC driver.
    pub fn lapic(&self) -> &Lapic<M, R> {
        &self.lapic
    }
}

impl<M: Mmio32, R: Msr> IrqChip for LapicIpiChip<M, R> {
    fn name(&self) -> &str {
        "LAPIC-IPI"
    }
    fn mask(&self, _d: &IrqData<'_>) {}
    fn unmask(&self, _d: &IrqData<'_>) {}
    fn eoi(&self, _d: &IrqData<'_>) {
        self.lapic.eoi();
    }
}
