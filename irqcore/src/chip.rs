//! The interrupt-controller abstraction: [`IrqChip`] and the per-irq data
//! handed to its callbacks.
//!
//! The defaults follow Linux's fallback rules, so a chip implements only what
//! its hardware has:
//!
//! | callback   | default                                   |
//! |------------|-------------------------------------------|
//! | `startup`  | `enable`                                  |
//! | `enable`   | `unmask`                                  |
//! | `shutdown` | `disable`, or `mask` if `disable` is absent |
//! | `disable`  | absent (returns `false`): lazy disable    |
//! | `mask_ack` | `mask` then `ack`                         |
//! | `ack`, `eoi`, `bus_lock`, `bus_sync_unlock` | nothing  |
//! | `set_type` | accepted without hardware change          |
//! | `read_trigger` | [`TriggerType::None`] (cannot tell)   |
//! | `set_affinity` | [`ChipError::Unsupported`]            |
//! | `retrigger` | absent (returns `false`): software resend |

use crate::cpumask::CpuMask;
use crate::error::{ChipError, IrqError};
use crate::ids::{HwIrq, IrqNumber};
use alloc::sync::Arc;
use bitflags::bitflags;

bitflags! {
    /// Properties of a chip the core must know about.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
    pub struct ChipFlags: u32 {
        /// Mask the line around `set_type`.
        const SET_TYPE_MASKED = 1 << 0;
        /// Do not EOI when the flow bails out without running a handler.
        const EOI_IF_HANDLED = 1 << 1;
        /// Mask the line when the system suspends.
        const MASK_ON_SUSPEND = 1 << 2;
        /// Only enable/disable while the target CPU is online.
        const ONOFFLINE_ENABLED = 1 << 3;
        /// `set_wake` is a no-op for this chip.
        const SKIP_SET_WAKE = 1 << 4;
        /// The chip is oneshot by nature (MSI): oneshot requests need no
        /// masking and threaded requests need not ask for oneshot.
        const ONESHOT_SAFE = 1 << 5;
        /// Defer the EOI of a oneshot irq until its thread has finished.
        const EOI_THREADED = 1 << 6;
        /// Program affinity before `startup` rather than after.
        const AFFINITY_PRE_STARTUP = 1 << 7;
        /// `ack` does nothing for this chip (it keeps the default, and so
        /// would its parents): the flows skip the call. Read once, when
        /// the chip is set ([`IrqCore::set_chip`](crate::IrqCore::set_chip)).
        const NO_ACK = 1 << 8;
        /// `eoi` does nothing for this chip: the flows skip the call. Read
        /// once, when the chip is set.
        const NO_EOI = 1 << 9;
        /// `eoi` completes the interrupt on the calling CPU's own interface
        /// (a GIC CPU interface's EOIR, the local APIC's EOI register) and
        /// touches no state shared with the other callbacks, so it may be
        /// called without the descriptor lock, concurrently with any
        /// callback on another CPU. The fasteoi flow then ends a run that
        /// needs nothing else under the lock without taking it, and calls
        /// `eoi` after the run has ended (Linux calls it under the lock;
        /// the lock serialises nothing such an `eoi` touches). Without it
        /// `eoi` stays under the lock. Read once, when the chip is set.
        const EOI_PER_CPU = 1 << 10;
        /// A deferred affinity change is applied without masking the line
        /// around `set_affinity`: the chip re-routes an unmasked line
        /// without losing what is pending (a virtual GIC, whose emulated
        /// disable drops an interrupt queued for the guest). Read once,
        /// when the chip is set.
        const MOVE_UNMASKED = 1 << 11;
    }
}

/// Trigger type of a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum TriggerType {
    /// Unspecified: keep what the hardware or firmware set up.
    #[default]
    None,
    /// Rising edge.
    EdgeRising,
    /// Falling edge.
    EdgeFalling,
    /// Both edges.
    EdgeBoth,
    /// Active-high level.
    LevelHigh,
    /// Active-low level.
    LevelLow,
}

impl TriggerType {
    /// Decodes Linux/device-tree sense bits (1 rising, 2 falling, 3 both,
    /// 4 level high, 8 level low, 0 none). Any other value is refused.
    pub const fn from_bits(bits: u32) -> Result<Self, IrqError> {
        Ok(match bits {
            0 => TriggerType::None,
            1 => TriggerType::EdgeRising,
            2 => TriggerType::EdgeFalling,
            3 => TriggerType::EdgeBoth,
            4 => TriggerType::LevelHigh,
            8 => TriggerType::LevelLow,
            _ => return Err(IrqError::InvalidTrigger),
        })
    }

    /// The sense bits of this type (inverse of [`TriggerType::from_bits`]).
    pub const fn bits(self) -> u32 {
        match self {
            TriggerType::None => 0,
            TriggerType::EdgeRising => 1,
            TriggerType::EdgeFalling => 2,
            TriggerType::EdgeBoth => 3,
            TriggerType::LevelHigh => 4,
            TriggerType::LevelLow => 8,
        }
    }

    /// Whether this is a level type.
    pub const fn is_level(self) -> bool {
        matches!(self, TriggerType::LevelHigh | TriggerType::LevelLow)
    }

    /// Whether this is an edge type.
    pub const fn is_edge(self) -> bool {
        matches!(
            self,
            TriggerType::EdgeRising | TriggerType::EdgeFalling | TriggerType::EdgeBoth
        )
    }
}

/// An MSI message: what a device writes, and where, to raise the interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MsiMsg {
    /// Low 32 bits of the address.
    pub address_lo: u32,
    /// High 32 bits of the address.
    pub address_hi: u32,
    /// The data word.
    pub data: u32,
}

/// What a successful [`IrqChip::set_affinity`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AffinitySet {
    /// The hardware now targets `effective` (a subset of the request); the
    /// core records the requested mask as the affinity.
    Applied {
        /// The CPUs the hardware actually targets.
        effective: CpuMask,
    },
    /// Like `Applied`, and parent levels of a hierarchy need not be asked.
    Done {
        /// The CPUs the hardware actually targets.
        effective: CpuMask,
    },
}

impl AffinitySet {
    /// The effective mask reported by the chip.
    pub fn effective(&self) -> CpuMask {
        match self {
            AffinitySet::Applied { effective } | AffinitySet::Done { effective } => *effective,
        }
    }
}

/// One level of an irq's chip stack: which chip handles it at that level and
/// under which hardware number.
///
/// A flat irq has one level; a hierarchical irq (MSI over a vector domain,
/// IOAPIC over a vector domain) has one per domain, outermost first.
#[derive(Clone)]
pub struct ChipLevel {
    /// The chip at this level.
    pub chip: Arc<dyn IrqChip>,
    /// The hardware irq number at this level.
    pub hwirq: HwIrq,
    /// Opaque per-irq data for the chip (an index into the chip's own
    /// tables, a port number, ...).
    pub chip_data: usize,
}

impl ChipLevel {
    /// A level with `chip` at `hwirq` and no chip data.
    pub fn new(chip: Arc<dyn IrqChip>, hwirq: HwIrq) -> Self {
        Self {
            chip,
            hwirq,
            chip_data: 0,
        }
    }
}

impl core::fmt::Debug for ChipLevel {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ChipLevel")
            .field("chip", &self.chip.name())
            .field("hwirq", &self.hwirq)
            .field("chip_data", &self.chip_data)
            .finish()
    }
}

/// The view of one irq that a chip callback receives: the irq number, this
/// level's hwirq and chip data, and the levels below it (its parents).
#[derive(Clone, Copy)]
pub struct IrqData<'a> {
    irq: IrqNumber,
    levels: &'a [ChipLevel],
}

impl<'a> IrqData<'a> {
    /// Data for the outermost level of `levels` (which must not be empty for
    /// the accessors to be meaningful; an empty stack has no chip).
    #[inline]
    pub fn new(irq: IrqNumber, levels: &'a [ChipLevel]) -> Self {
        Self { irq, levels }
    }

    /// The irq number.
    pub fn irq(&self) -> IrqNumber {
        self.irq
    }

    /// This level's hardware irq number.
    pub fn hwirq(&self) -> HwIrq {
        self.levels.first().map(|l| l.hwirq).unwrap_or_default()
    }

    /// This level's chip data.
    pub fn chip_data(&self) -> usize {
        self.levels.first().map(|l| l.chip_data).unwrap_or(0)
    }

    /// This level's chip, if any.
    #[inline]
    pub fn chip(&self) -> Option<&'a Arc<dyn IrqChip>> {
        self.levels.first().map(|l| &l.chip)
    }

    /// The next level down the hierarchy (towards the root controller).
    pub fn parent(&self) -> Option<IrqData<'a>> {
        match self.levels {
            [_, rest @ ..] if !rest.is_empty() => Some(IrqData {
                irq: self.irq,
                levels: rest,
            }),
            _ => None,
        }
    }

    /// Forwards `mask` to the parent level (no-op at the root).
    pub fn mask_parent(&self) {
        if let Some(p) = self.parent() {
            p.chip_or_none(|c, d| c.mask(d));
        }
    }

    /// Forwards `unmask` to the parent level.
    pub fn unmask_parent(&self) {
        if let Some(p) = self.parent() {
            p.chip_or_none(|c, d| c.unmask(d));
        }
    }

    /// Forwards `ack` to the parent level.
    pub fn ack_parent(&self) {
        if let Some(p) = self.parent() {
            p.chip_or_none(|c, d| c.ack(d));
        }
    }

    /// Forwards `eoi` to the parent level.
    pub fn eoi_parent(&self) {
        if let Some(p) = self.parent() {
            p.chip_or_none(|c, d| c.eoi(d));
        }
    }

    /// Forwards `set_type` to the parent level (`Ok` at the root).
    pub fn set_type_parent(&self, trigger: TriggerType) -> Result<(), ChipError> {
        match self.parent() {
            Some(p) => p
                .chip_or_none(|c, d| c.set_type(d, trigger))
                .unwrap_or(Ok(())),
            None => Ok(()),
        }
    }

    /// Forwards `set_affinity` to the parent level.
    pub fn set_affinity_parent(
        &self,
        mask: &CpuMask,
        force: bool,
    ) -> Result<AffinitySet, ChipError> {
        match self.parent() {
            Some(p) => p
                .chip_or_none(|c, d| c.set_affinity(d, mask, force))
                .unwrap_or(Err(ChipError::Unsupported)),
            None => Err(ChipError::Unsupported),
        }
    }

    /// Walks down from this level to the first chip that can retrigger in
    /// hardware; returns whether one did.
    pub fn retrigger_hierarchy(&self) -> bool {
        let mut cur = Some(*self);
        while let Some(d) = cur {
            if d.chip_or_none(|c, d| c.retrigger(d)).unwrap_or(false) {
                return true;
            }
            cur = d.parent();
        }
        false
    }

    /// Walks down from this level to the first chip that composes an MSI
    /// message.
    pub fn compose_msi_msg_hierarchy(&self) -> Option<MsiMsg> {
        let mut cur = Some(*self);
        while let Some(d) = cur {
            if let Some(m) = d.chip_or_none(|c, d| c.compose_msi_msg(d)).flatten() {
                return Some(m);
            }
            cur = d.parent();
        }
        None
    }

    fn chip_or_none<R>(&self, f: impl FnOnce(&dyn IrqChip, &IrqData<'a>) -> R) -> Option<R> {
        self.levels.first().map(|l| f(&*l.chip, self))
    }
}

impl core::fmt::Debug for IrqData<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IrqData")
            .field("irq", &self.irq)
            .field("levels", &self.levels)
            .finish()
    }
}

/// An interrupt controller, as the core drives it.
///
/// Callbacks are called with the descriptor lock held and local interrupts
/// disabled, except `bus_lock`/`bus_sync_unlock` (called around
/// configuration changes, outside the descriptor lock, so a chip behind a
/// slow bus can sleep or batch there), and `ack`/`eoi` of a line on a
/// per-CPU flow (`FlowKind::PerCpu`, `FlowKind::PerCpuDevId`), which the
/// dispatching CPU calls without the descriptor lock, as Linux's per-CPU
/// flows do: they act on that CPU's own instance of the line (a GIC
/// PPI/SGI, the local APIC, a per-vCPU event channel) and may run on
/// several CPUs at once. They must not call back into the core for the
/// same irq. Likewise `eoi` of a chip with [`ChipFlags::EOI_PER_CPU`] on
/// the fasteoi flow is called without the lock when the run needs nothing
/// else under it.
pub trait IrqChip: Send + Sync {
    /// Name shown in the interrupt table.
    fn name(&self) -> &str;

    /// Properties of this chip.
    fn flags(&self) -> ChipFlags {
        ChipFlags::empty()
    }

    /// Masks the line at this controller.
    fn mask(&self, d: &IrqData<'_>);

    /// Unmasks the line.
    fn unmask(&self, d: &IrqData<'_>);

    /// Acknowledges the interrupt (clears the latched edge).
    fn ack(&self, d: &IrqData<'_>) {
        let _ = d;
    }

    /// Signals end of interrupt (fasteoi controllers, x86 LAPIC).
    fn eoi(&self, d: &IrqData<'_>) {
        let _ = d;
    }

    /// Masks and acknowledges in one step.
    fn mask_ack(&self, d: &IrqData<'_>) {
        self.mask(d);
        self.ack(d);
    }

    /// Starts the line when the first handler is installed or the line is
    /// enabled again. Default: `enable`.
    fn startup(&self, d: &IrqData<'_>) {
        self.enable(d);
    }

    /// Shuts the line down when its last handler is freed. Default:
    /// `disable`, or `mask` if the chip has no `disable`.
    fn shutdown(&self, d: &IrqData<'_>) {
        if !self.disable(d) {
            self.mask(d);
        }
    }

    /// Enables the line. Default: `unmask`.
    fn enable(&self, d: &IrqData<'_>) {
        self.unmask(d);
    }

    /// Disables the line at once. Return `false` (the default) if the chip
    /// has no such operation: the core then disables lazily (the line stays
    /// unmasked until it fires).
    fn disable(&self, d: &IrqData<'_>) -> bool {
        let _ = d;
        false
    }

    /// Configures the trigger type.
    fn set_type(&self, d: &IrqData<'_>, trigger: TriggerType) -> Result<(), ChipError> {
        let _ = (d, trigger);
        Ok(())
    }

    /// The trigger type the hardware is programmed with, read back, for a
    /// line whose trigger was programmed without the core (for example an
    /// IOAPIC pin set up by `alloc_pin`); shown by
    /// [`IrqCore::snapshot`](crate::IrqCore::snapshot) and the interrupt
    /// table when the core was never told. Called with the descriptor lock
    /// held, like the other callbacks: read a cached copy, do not wait for a
    /// slow bus. The default, [`TriggerType::None`], means "cannot tell".
    fn read_trigger(&self, d: &IrqData<'_>) -> TriggerType {
        let _ = d;
        TriggerType::None
    }

    /// Routes the interrupt to (a subset of) `mask`. `force` allows offline
    /// CPUs (used while a CPU is being torn down).
    fn set_affinity(
        &self,
        d: &IrqData<'_>,
        mask: &CpuMask,
        force: bool,
    ) -> Result<AffinitySet, ChipError> {
        let _ = (d, mask, force);
        Err(ChipError::Unsupported)
    }

    /// Re-raises the interrupt in hardware. Return `true` if it did; `false`
    /// (the default) makes the core resend in software.
    fn retrigger(&self, d: &IrqData<'_>) -> bool {
        let _ = d;
        false
    }

    /// Begins a configuration change on a slow-bus chip (I2C/SPI expanders).
    fn bus_lock(&self, d: &IrqData<'_>) {
        let _ = d;
    }

    /// Ends a configuration change: flush the cached state to the device.
    fn bus_sync_unlock(&self, d: &IrqData<'_>) {
        let _ = d;
    }

    /// Composes the MSI message that raises this irq, if the chip is an MSI
    /// target.
    fn compose_msi_msg(&self, d: &IrqData<'_>) -> Option<MsiMsg> {
        let _ = d;
        None
    }
}
