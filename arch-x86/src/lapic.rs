//! The local APIC driver, in xAPIC (MMIO) or x2APIC (MSR) mode, chosen at run
//! time.
//!
//! Register layout and semantics: Intel SDM vol. 3A chapter 11 ("Advanced
//! Programmable Interrupt Controller"). In x2APIC mode register `offset` of
//! the xAPIC page is MSR `0x800 + offset / 16` (SDM 11.12.1), the ICR is one
//! 64-bit MSR with a 32-bit destination, EOI must be written with 0, and the
//! self-IPI register exists.
//!
//! One [`Lapic`] value serves every CPU: both the xAPIC page and the x2APIC
//! MSRs address the *executing* CPU's APIC.

use crate::ids::{ApicId, Vector};
use crate::regs::{Mmio32, Msr, Reg32, RegValue};

/// IA32_APIC_BASE (SDM 11.4.4).
pub const MSR_APIC_BASE: u32 = 0x1B;
/// IA32_APIC_BASE bit: the APIC is globally enabled.
pub const APIC_BASE_ENABLE: u64 = 1 << 11;
/// IA32_APIC_BASE bit: x2APIC mode (EXTD).
pub const APIC_BASE_X2APIC: u64 = 1 << 10;
/// IA32_APIC_BASE bit: this is the bootstrap processor.
pub const APIC_BASE_BSP: u64 = 1 << 8;
/// IA32_TSC_DEADLINE (SDM 11.5.4.1).
pub const MSR_TSC_DEADLINE: u32 = 0x6E0;
/// The default physical address of the xAPIC page.
pub const DEFAULT_XAPIC_BASE: u64 = 0xFEE0_0000;

pub mod reg;

pub use reg::{ICR_DELIVERY_PENDING, MSR_X2APIC_BASE, Svr, x2apic_msr};

/// LVT bit: masked.
pub const LVT_MASKED: u32 = 1 << 16;
/// Vector conventionally used for the spurious interrupt (low nibble all ones
/// is required on P6-era parts; 0xFF satisfies every generation).
pub const DEFAULT_SPURIOUS_VECTOR: Vector = Vector::LAST;

/// How the APIC is addressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApicMode {
    /// Memory-mapped registers, 8-bit APIC ids.
    XApic,
    /// MSR registers, 32-bit APIC ids.
    X2Apic,
}

/// Errors of the LAPIC driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LapicError {
    /// The destination APIC id does not fit the mode (xAPIC: 8 bits).
    DestinationOutOfRange(ApicId),
    /// The previous IPI was still pending after the bounded wait (xAPIC).
    IcrBusy,
    /// The requested mode is not reachable from the current one (x2APIC ->
    /// xAPIC requires disabling the APIC first, SDM 11.12.5).
    InvalidModeTransition,
    /// The operation needs the other mode (self-IPI register: x2APIC).
    WrongMode,
}

/// What an IPI delivers (SDM 11.6.1, ICR delivery mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpiKind {
    /// A fixed interrupt on `vector`.
    Fixed(Vector),
    /// A non-maskable interrupt.
    Nmi,
    /// INIT (level assert): puts the target in wait-for-SIPI.
    Init,
    /// Start-up IPI: the target starts in real mode at `page << 12`.
    Startup(u8),
}

/// Who receives an IPI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpiDest {
    /// The CPU with this APIC id (physical destination mode).
    Apic(ApicId),
    /// Shorthand: the sender itself.
    SelfOnly,
    /// Shorthand: every CPU including the sender.
    AllIncludingSelf,
    /// Shorthand: every CPU except the sender.
    AllExcludingSelf,
}

impl IpiKind {
    fn icr_low(self) -> u32 {
        match self {
            IpiKind::Fixed(v) => u32::from(v.get()),
            IpiKind::Nmi => 0b100 << 8,
            // INIT is sent with level = assert; trigger edge.
            IpiKind::Init => (0b101 << 8) | (1 << 14),
            IpiKind::Startup(page) => (0b110 << 8) | (1 << 14) | page as u32,
        }
    }
}

/// The local vector table entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LvtSource {
    /// The APIC timer (mode bits 17-18 besides vector and mask; program it
    /// with [`Lapic::start_timer`] and unmask it with
    /// [`Lapic::set_timer_masked`] or the [`LapicTimerChip`](crate::LapicTimerChip)).
    Timer,
    /// LINT0 pin (8259 ExtINT in virtual-wire mode).
    Lint0,
    /// LINT1 pin (NMI by convention).
    Lint1,
    /// APIC internal errors.
    Error,
    /// Thermal sensor.
    Thermal,
    /// Performance-monitoring counters.
    PerfCounters,
    /// Corrected machine-check errors.
    Cmci,
}

impl LvtSource {
    const fn register(self) -> Reg32<LvtEntry> {
        match self {
            LvtSource::Timer => reg::LVT_TIMER,
            LvtSource::Lint0 => reg::LVT_LINT0,
            LvtSource::Lint1 => reg::LVT_LINT1,
            LvtSource::Error => reg::LVT_ERROR,
            LvtSource::Thermal => reg::LVT_THERMAL,
            LvtSource::PerfCounters => reg::LVT_PMC,
            LvtSource::Cmci => reg::LVT_CMCI,
        }
    }
}

/// One LVT entry (SDM figure 11-8), built with the constructors below.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LvtEntry(pub u32);

impl LvtEntry {
    /// A masked entry.
    pub const MASKED: LvtEntry = LvtEntry(LVT_MASKED);

    /// Fixed delivery on `vector`, unmasked, edge, active high.
    pub const fn fixed(vector: Vector) -> Self {
        LvtEntry(vector.get() as u32)
    }
    /// NMI delivery.
    pub const fn nmi() -> Self {
        LvtEntry(0b100 << 8)
    }
    /// ExtINT delivery (the 8259 supplies the vector).
    pub const fn ext_int() -> Self {
        LvtEntry(0b111 << 8)
    }
    /// The timer entry for `mode` on `vector` (unmasked).
    pub const fn timer(mode: TimerMode, vector: Vector) -> Self {
        LvtEntry(mode.lvt_bits() | vector.get() as u32)
    }
    /// The same entry, masked.
    pub const fn masked(self) -> Self {
        LvtEntry(self.0 | LVT_MASKED)
    }
    /// The same entry with the mask bit set to `masked`.
    pub const fn with_mask(self, masked: bool) -> Self {
        if masked {
            LvtEntry(self.0 | LVT_MASKED)
        } else {
            LvtEntry(self.0 & !LVT_MASKED)
        }
    }
    /// The timer mode field (bits 17-18) of a timer entry; `None` for the
    /// reserved encoding.
    pub const fn timer_mode(self) -> Option<TimerMode> {
        match (self.0 >> 17) & 3 {
            0 => Some(TimerMode::OneShot),
            1 => Some(TimerMode::Periodic),
            2 => Some(TimerMode::TscDeadline),
            _ => None,
        }
    }
    /// The same entry, level triggered (LINT pins only).
    pub const fn level(self) -> Self {
        LvtEntry(self.0 | (1 << 15))
    }
    /// The same entry, active low (LINT pins only).
    pub const fn active_low(self) -> Self {
        LvtEntry(self.0 | (1 << 13))
    }
    /// Whether the entry is masked.
    pub const fn is_masked(self) -> bool {
        self.0 & LVT_MASKED != 0
    }
    /// The vector field.
    pub const fn vector(self) -> u8 {
        self.0 as u8
    }
}

/// Timer divide configuration (SDM figure 11-10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerDivide {
    /// ÷1.
    By1,
    /// ÷2.
    By2,
    /// ÷4.
    By4,
    /// ÷8.
    By8,
    /// ÷16.
    By16,
    /// ÷32.
    By32,
    /// ÷64.
    By64,
    /// ÷128.
    By128,
}

impl TimerDivide {
    /// The register encoding (bits 0, 1 and 3).
    pub const fn bits(self) -> u32 {
        match self {
            TimerDivide::By2 => 0b0000,
            TimerDivide::By4 => 0b0001,
            TimerDivide::By8 => 0b0010,
            TimerDivide::By16 => 0b0011,
            TimerDivide::By32 => 0b1000,
            TimerDivide::By64 => 0b1001,
            TimerDivide::By128 => 0b1010,
            TimerDivide::By1 => 0b1011,
        }
    }
    /// The divisor for a register encoding (its unused bits ignored).
    pub const fn divisor_of_bits(bits: u32) -> u32 {
        let code = (bits & 0b11) | ((bits & 0b1000) >> 1);
        if code == 0b111 { 1 } else { 2 << code }
    }
}

/// Timer modes (LVT timer bits 17-18).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerMode {
    /// Count down once from the initial count.
    OneShot,
    /// Count down and reload.
    Periodic,
    /// Fire when the TSC reaches IA32_TSC_DEADLINE.
    TscDeadline,
}

impl TimerMode {
    const fn lvt_bits(self) -> u32 {
        match self {
            TimerMode::OneShot => 0,
            TimerMode::Periodic => 1 << 17,
            TimerMode::TscDeadline => 2 << 17,
        }
    }
}

/// Bound on the xAPIC ICR delivery-status poll (iterations). Real hardware
/// clears it within a few hundred cycles; a stuck bit is reported instead of
/// hanging the CPU.
const ICR_POLL_LIMIT: u32 = 1_000_000;

/// The local APIC of the executing CPU.
///
/// `M` reaches the xAPIC page (unused in x2APIC mode: pass
/// [`NoMmio`](crate::regs::NoMmio) if the page is not mapped), `R` the MSRs
/// (always needed: IA32_APIC_BASE, and TSC deadline in both modes).
///
/// **Sharing one LAPIC.** The vector domain's [`LapicOps`](crate::LapicOps),
/// the timer chip and the IPI chip each own a `Lapic`. Build the accessors
/// once (one `unsafe` constructor each), then call [`Lapic::into_shared`]:
/// the result holds them in `Arc`s and is `Clone`, every clone addressing the
/// same registers. The register traits are implemented for `Arc<T>`.
#[derive(Clone, Debug)]
pub struct Lapic<M, R> {
    mode: ApicMode,
    mmio: M,
    msr: R,
}

impl<M: Mmio32, R: Msr> Lapic<M, R> {
    /// Enables the APIC of the executing CPU in `mode` (IA32_APIC_BASE EN,
    /// plus EXTD for x2APIC) and returns its driver. The software-enable bit
    /// is set separately by [`Lapic::enable`].
    ///
    /// Call on every CPU (the MSR is per CPU). The kernel chooses the mode,
    /// typically x2APIC when CPUID.01H:ECX\[21\] is set.
    pub fn init(mode: ApicMode, mmio: M, msr: R) -> Result<Self, LapicError> {
        let base = msr.read_msr(MSR_APIC_BASE);
        let in_x2 =
            base & (APIC_BASE_ENABLE | APIC_BASE_X2APIC) == APIC_BASE_ENABLE | APIC_BASE_X2APIC;
        let new = match mode {
            // Leaving x2APIC for xAPIC directly is an invalid transition.
            ApicMode::XApic if in_x2 => return Err(LapicError::InvalidModeTransition),
            ApicMode::XApic => base | APIC_BASE_ENABLE,
            // xAPIC -> x2APIC (or disabled -> enabled x2APIC) is allowed by
            // setting EN and EXTD together.
            ApicMode::X2Apic => base | APIC_BASE_ENABLE | APIC_BASE_X2APIC,
        };
        if new != base {
            msr.write_msr(MSR_APIC_BASE, new);
        }
        Ok(Self { mode, mmio, msr })
    }

    /// A driver for an APIC the caller already enabled in `mode` (no MSR
    /// write).
    pub fn attach(mode: ApicMode, mmio: M, msr: R) -> Self {
        Self { mode, mmio, msr }
    }

    /// The same driver with its accessors behind `Arc`s, so that it can be
    /// cloned for every user of this LAPIC (see the type's documentation).
    pub fn into_shared(self) -> Lapic<alloc::sync::Arc<M>, alloc::sync::Arc<R>> {
        Lapic {
            mode: self.mode,
            mmio: alloc::sync::Arc::new(self.mmio),
            msr: alloc::sync::Arc::new(self.msr),
        }
    }

    /// The mode in use.
    pub fn mode(&self) -> ApicMode {
        self.mode
    }

    /// Reads the typed register `reg` (from [`reg`]).
    pub fn load<T: RegValue>(&self, reg: Reg32<T>) -> T {
        T::from_raw(self.read(reg.offset()))
    }

    /// Writes the typed register `reg` (from [`reg`]).
    pub fn store<T: RegValue>(&self, reg: Reg32<T>, value: T) {
        self.write(reg.offset(), value.to_raw());
    }

    /// Reads register `offset` (an xAPIC offset from [`reg`]): the raw,
    /// untyped layer under [`Lapic::load`].
    pub fn read(&self, offset: usize) -> u32 {
        match self.mode {
            ApicMode::XApic => self.mmio.read32(offset),
            ApicMode::X2Apic => self.msr.read_msr(x2apic_msr(offset)) as u32,
        }
    }

    /// Writes register `offset` (an xAPIC offset from [`reg`]): the raw,
    /// untyped layer under [`Lapic::store`].
    pub fn write(&self, offset: usize, value: u32) {
        match self.mode {
            ApicMode::XApic => self.mmio.write32(offset, value),
            ApicMode::X2Apic => self.msr.write_msr(x2apic_msr(offset), value as u64),
        }
    }

    /// This CPU's APIC id (xAPIC: bits 24-31 of the ID register; x2APIC: all
    /// 32 bits).
    pub fn id(&self) -> ApicId {
        match self.mode {
            ApicMode::XApic => ApicId(self.read(reg::ID) >> 24),
            ApicMode::X2Apic => ApicId(self.read(reg::ID)),
        }
    }

    /// The version register's version field.
    pub fn version(&self) -> u8 {
        self.read(reg::VERSION) as u8
    }

    /// Software-enables the APIC with `spurious_vector`, accepts every
    /// priority (TPR 0) and clears stale errors. The LVTs keep their values
    /// (masked after reset); program them with [`Lapic::set_lvt`].
    pub fn enable(&self, spurious_vector: Vector) {
        self.write(reg::TPR, 0);
        let keep = self.load(reg::SVR) & Svr::SUPPRESS_EOI_BROADCAST;
        self.store(reg::SVR, (keep | Svr::ENABLE).with_vector(spurious_vector));
        self.clear_errors();
    }

    /// Software-disables the APIC (all LVTs become masked).
    pub fn disable(&self) {
        let svr = self.load(reg::SVR);
        self.store(reg::SVR, svr - Svr::ENABLE);
    }

    /// Sets the spurious-interrupt vector, keeping the other SVR bits.
    pub fn set_spurious_vector(&self, vector: Vector) {
        let svr = self.load(reg::SVR);
        self.store(reg::SVR, svr.with_vector(vector));
    }

    /// Turns EOI broadcast suppression on or off (directed EOI: the IOAPIC
    /// driver then writes the IOAPIC's EOI register itself). Only valid if
    /// the version register's bit 24 says the APIC supports it.
    pub fn set_suppress_eoi_broadcast(&self, on: bool) {
        let mut svr = self.load(reg::SVR);
        svr.set(Svr::SUPPRESS_EOI_BROADCAST, on);
        self.store(reg::SVR, svr);
    }

    /// Whether the APIC can suppress EOI broadcasts (version bit 24).
    pub fn supports_directed_eoi(&self) -> bool {
        self.read(reg::VERSION) & (1 << 24) != 0
    }

    /// Signals end of interrupt for the highest-priority in-service vector.
    pub fn eoi(&self) {
        // x2APIC requires the value 0 (SDM 11.12.1: non-zero -> #GP).
        self.write(reg::EOI, 0);
    }

    /// Sets the task priority (interrupts of priority class `<= tpr >> 4` are
    /// held off).
    pub fn set_tpr(&self, tpr: u8) {
        self.write(reg::TPR, tpr as u32);
    }

    /// The task priority.
    pub fn tpr(&self) -> u8 {
        self.read(reg::TPR) as u8
    }

    /// The processor priority (max of TPR and the in-service class).
    pub fn ppr(&self) -> u8 {
        self.read(reg::PPR) as u8
    }

    fn vector_bit(&self, bank: reg::VectorBank, vector: Vector) -> bool {
        self.read(bank.word(vector)) & bank.bit(vector) != 0
    }

    /// Whether `vector` is requested (IRR) on this CPU.
    pub fn is_pending(&self, vector: Vector) -> bool {
        self.vector_bit(reg::IRR, vector)
    }

    /// Whether `vector` is in service (ISR) on this CPU.
    pub fn is_in_service(&self, vector: Vector) -> bool {
        self.vector_bit(reg::ISR, vector)
    }

    /// Whether `vector` was accepted as level triggered (TMR).
    pub fn is_level(&self, vector: Vector) -> bool {
        self.vector_bit(reg::TMR, vector)
    }

    /// Sends an IPI.
    pub fn send_ipi(&self, kind: IpiKind, dest: IpiDest) -> Result<(), LapicError> {
        let mut low = kind.icr_low();
        let dest_id = match dest {
            IpiDest::Apic(id) => {
                if self.mode == ApicMode::XApic && id.get() > 0xFF {
                    return Err(LapicError::DestinationOutOfRange(id));
                }
                id.get()
            }
            IpiDest::SelfOnly => {
                // SDM table 11-3: INIT/SIPI/NMI with the self shorthand are
                // invalid.
                if !matches!(kind, IpiKind::Fixed(_)) {
                    return Err(LapicError::WrongMode);
                }
                low |= 0b01 << 18;
                0
            }
            IpiDest::AllIncludingSelf => {
                low |= 0b10 << 18;
                0
            }
            IpiDest::AllExcludingSelf => {
                low |= 0b11 << 18;
                0
            }
        };
        match self.mode {
            ApicMode::XApic => {
                self.wait_icr_idle()?;
                self.mmio.write32(reg::ICR_HIGH, dest_id << 24);
                // Writing the low word sends the IPI.
                self.mmio.write32(reg::ICR_LOW, low);
                Ok(())
            }
            ApicMode::X2Apic => {
                // One 64-bit write, no delivery-status bit (SDM 11.12.9).
                self.msr.write_msr(
                    x2apic_msr(reg::ICR_LOW),
                    ((dest_id as u64) << 32) | low as u64,
                );
                Ok(())
            }
        }
    }

    fn wait_icr_idle(&self) -> Result<(), LapicError> {
        for _ in 0..ICR_POLL_LIMIT {
            if self.mmio.read32(reg::ICR_LOW) & ICR_DELIVERY_PENDING == 0 {
                return Ok(());
            }
            core::hint::spin_loop();
        }
        Err(LapicError::IcrBusy)
    }

    /// Sends a fixed interrupt on `vector` to this CPU: the x2APIC self-IPI
    /// register when available, else the ICR self shorthand.
    pub fn self_ipi(&self, vector: Vector) -> Result<(), LapicError> {
        match self.mode {
            ApicMode::X2Apic => {
                self.msr
                    .write_msr(x2apic_msr(reg::SELF_IPI), u64::from(vector.get()));
                Ok(())
            }
            ApicMode::XApic => self.send_ipi(IpiKind::Fixed(vector), IpiDest::SelfOnly),
        }
    }

    /// Sends the INIT-SIPI-SIPI sequence that starts an application
    /// processor at `trampoline_page << 12`. `delay_us` is called for the
    /// waits the MP specification prescribes (10 ms after INIT, 200 µs after
    /// each SIPI).
    pub fn start_ap(
        &self,
        apic_id: ApicId,
        trampoline_page: u8,
        mut delay_us: impl FnMut(u32),
    ) -> Result<(), LapicError> {
        self.send_ipi(IpiKind::Init, IpiDest::Apic(apic_id))?;
        delay_us(10_000);
        for _ in 0..2 {
            self.send_ipi(IpiKind::Startup(trampoline_page), IpiDest::Apic(apic_id))?;
            delay_us(200);
        }
        Ok(())
    }

    /// Programs an LVT entry.
    pub fn set_lvt(&self, source: LvtSource, entry: LvtEntry) {
        self.store(source.register(), entry);
    }

    /// Reads an LVT entry.
    pub fn lvt(&self, source: LvtSource) -> LvtEntry {
        self.load(source.register())
    }

    /// Routes APIC internal errors to `vector`.
    pub fn setup_error_interrupt(&self, vector: Vector) {
        self.clear_errors();
        self.set_lvt(LvtSource::Error, LvtEntry::fixed(vector));
        self.clear_errors();
    }

    /// Reads and clears the error status (ESR bits: 2 send-accept, 3
    /// receive-accept, 5 send-illegal-vector, 6 receive-illegal-vector, 7
    /// illegal register address).
    pub fn read_and_clear_errors(&self) -> u32 {
        // The ESR latches on a write (SDM 11.5.3): write, then read.
        self.write(reg::ESR, 0);
        self.read(reg::ESR)
    }

    fn clear_errors(&self) {
        self.write(reg::ESR, 0);
        self.write(reg::ESR, 0);
    }

    /// Sets the timer's divide configuration.
    pub fn set_timer_divide(&self, divide: TimerDivide) {
        self.write(reg::TIMER_DIVIDE, divide.bits());
    }

    /// Starts a one-shot or periodic count-down of `initial_count` (divided)
    /// bus clocks, to interrupt on `vector`. The timer LVT is written
    /// **masked**: the count runs, but nothing is delivered until the timer
    /// is unmasked ([`Lapic::set_timer_masked`], or `enable_percpu_irq` on
    /// an irq whose chip is a [`LapicTimerChip`](crate::LapicTimerChip)), so
    /// a tick can never arrive before its handler is installed. For
    /// [`TimerMode::TscDeadline`] use [`Lapic::start_tsc_deadline`] (refused
    /// here with [`LapicError::WrongMode`]).
    pub fn start_timer(
        &self,
        mode: TimerMode,
        vector: Vector,
        initial_count: u32,
    ) -> Result<(), LapicError> {
        if mode == TimerMode::TscDeadline {
            return Err(LapicError::WrongMode);
        }
        self.store(reg::LVT_TIMER, LvtEntry::timer(mode, vector).masked());
        // Writing the initial count starts the timer.
        self.write(reg::TIMER_INITIAL, initial_count);
        Ok(())
    }

    /// Arms the TSC-deadline timer: interrupt on `vector` once the TSC
    /// reaches `deadline` (0 disarms). Like [`Lapic::start_timer`] the LVT is
    /// written masked. The kernel must have checked CPUID.01H:ECX\[24\].
    pub fn start_tsc_deadline(&self, vector: Vector, deadline: u64) -> Result<(), LapicError> {
        self.store(
            reg::LVT_TIMER,
            LvtEntry::timer(TimerMode::TscDeadline, vector).masked(),
        );
        // SDM 11.5.4.1: the LVT write must be ordered before the MSR write;
        // in xAPIC mode an MMIO write is not serialised against wrmsr.
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        self.msr.write_msr(MSR_TSC_DEADLINE, deadline);
        Ok(())
    }

    /// Masks or unmasks the timer's LVT entry on this CPU, keeping its mode
    /// and vector (the count keeps running either way).
    pub fn set_timer_masked(&self, masked: bool) {
        let lvt = self.load(reg::LVT_TIMER);
        let new = lvt.with_mask(masked);
        if new != lvt {
            self.store(reg::LVT_TIMER, new);
        }
    }

    /// Stops the timer (masks it and clears the count / deadline).
    pub fn stop_timer(&self) {
        let lvt = self.load(reg::LVT_TIMER);
        self.store(reg::LVT_TIMER, lvt.masked());
        if lvt.timer_mode() == Some(TimerMode::TscDeadline) {
            self.msr.write_msr(MSR_TSC_DEADLINE, 0);
        } else {
            self.write(reg::TIMER_INITIAL, 0);
        }
    }

    /// The timer's current count.
    pub fn timer_current_count(&self) -> u32 {
        self.read(reg::TIMER_CURRENT)
    }
}
