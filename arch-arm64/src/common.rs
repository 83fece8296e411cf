//! What GICv2 and GICv3 drivers share: options, errors, the per-CPU table,
//! and the one-bit/one-byte/two-bit register banks that the distributor and
//! the GICv3 SGI/PPI frame lay out identically.

use crate::intid::IntId;
use crate::regs::{IdBank, Mmio, gicd};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use irqcore::{ChipError, CpuId, CpuMask, IrqError, TriggerType};

/// Driver options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GicOptions {
    /// Number of logical CPUs the kernel may bring up (size of the per-CPU table).
    pub max_cpus: usize,
    /// Split EOI mode (`EOImode` = 1): the acknowledge loop drops the
    /// running priority right after `IAR`, and the flow's `eoi` callback
    /// deactivates (`DIR`). See the crate docs for when this helps.
    pub split_eoi: bool,
    /// Priority given to every interrupt at initialisation (lower = more urgent).
    pub default_priority: u8,
    /// Priority mask programmed into each CPU interface: interrupts with a
    /// numerically lower priority are signalled.
    pub priority_mask: u8,
    /// How many times to poll a status bit (`RWP`, `ChildrenAsleep`) before
    /// giving up with [`GicError::Timeout`].
    pub poll_limit: u32,
    /// GICv3: re-route an enabled SPI by writing `GICD_IROUTER` alone,
    /// without disabling it around the write. Off by default (hardware):
    /// see [`GicOptions::for_xen_vgic`] for when to turn it on.
    pub route_enabled_spi_in_place: bool,
    /// Read an SPI's routing register back after writing it and answer
    /// [`ChipError::Busy`](irqcore::ChipError::Busy) when it does not hold
    /// the new route, so that irqcore keeps the move pending and retries
    /// it at the interrupt's next safe point (the last request wins). Off
    /// by default (hardware keeps every write): see
    /// [`GicOptions::for_xen_vgic`].
    pub verify_route: bool,
}

impl GicOptions {
    /// The [`ChipFlags`](irqcore::ChipFlags) of a GICv2/v3 driver built with
    /// these options. `EOI_PER_CPU`: `eoi` is one write to the calling
    /// CPU's interface (EOIR, or DIR with split EOI), which the GIC
    /// serialises against the distributor itself, so the fasteoi flow may
    /// call it without the descriptor lock; except with `verify_route`
    /// (Xen's vGIC), where the EOI stays under the lock (a move from
    /// another vCPU must not land between the end of a run and its EOI
    /// while Xen still holds the instance: Xen drops one queued behind it
    /// then), and `MOVE_UNMASKED`: a refused route is retried from the flow
    /// without the mask bracket, whose disable drops what Xen queued.
    pub fn chip_flags(&self) -> irqcore::ChipFlags {
        use irqcore::ChipFlags;
        let flags = ChipFlags::SET_TYPE_MASKED
            | ChipFlags::SKIP_SET_WAKE
            | ChipFlags::MASK_ON_SUSPEND
            | ChipFlags::EOI_PER_CPU;
        if self.verify_route {
            (flags - ChipFlags::EOI_PER_CPU) | ChipFlags::MOVE_UNMASKED
        } else {
            flags
        }
    }

    /// These options adjusted for Xen's virtual GIC (Xen 4.17's vGIC, the
    /// one a domU sees): [`GicOptions::route_enabled_spi_in_place`] and
    /// [`GicOptions::verify_route`] are set.
    ///
    /// Why: on hardware the GICv3 driver disables an enabled SPI around its
    /// `GICD_IROUTER` write, as Linux does, so that the distributor never
    /// forwards it under a half-applied route (some distributors need it,
    /// e.g. the GIC-600 erratum 1494863 workaround). Xen emulates the
    /// register write atomically under its own lock, so there is nothing
    /// to protect; but its `GICD_ICENABLER` emulation clears the virtual
    /// interrupt's enable, and an edge that Xen queued behind an instance
    /// still in the old vCPU's list register is discarded when that list
    /// register retires (the vCPU's next trap after the EOI) while the
    /// enable is clear; the `ISENABLER` write that follows does not raise
    /// it again, as it is no longer in flight. The GIC architecture keeps
    /// a disabled interrupt pending; Xen's vGIC does not, so the
    /// disable/route/enable bracket loses interrupts there (seen with the
    /// vpl011's SPI: one raise in a few hundred under two retargeting
    /// vCPUs, never with the bracket left out). The pending and active
    /// bits read as zero through Xen's `GICD_ISPENDR`/`ISACTIVER`, so the
    /// driver cannot check for that window instead.
    ///
    /// Why `verify_route`: Xen refuses to retarget a physical SPI passed
    /// through to the guest while an earlier retarget of it still waits
    /// for the instance in flight to be EOIed ("migration failed:
    /// requested while in progress" in Xen's log), and the refused write
    /// is dropped: `GICD_IROUTER`/`ITARGETSR` read back the old route. A
    /// driver that trusted the write would leave the interrupt where an
    /// older request put it (seed 003's lost "last request wins").
    pub fn for_xen_vgic(self) -> Self {
        Self {
            route_enabled_spi_in_place: true,
            verify_route: true,
            ..self
        }
    }
}

impl Default for GicOptions {
    fn default() -> Self {
        // The same defaults as Linux's GIC drivers use (0xa0 for every
        // interrupt, mask 0xf0) so that the priority space above and below
        // stays free for pseudo-NMIs and "lowest" work.
        Self {
            max_cpus: 8,
            split_eoi: false,
            default_priority: 0xa0,
            priority_mask: 0xf0,
            poll_limit: 1_000_000,
            route_enabled_spi_in_place: false,
            verify_route: false,
        }
    }
}

/// Errors of the GIC drivers' setup, hotplug and IPI operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicError {
    /// The CPU id is beyond [`GicOptions::max_cpus`], or the CPU has not
    /// been started on this GIC ([`crate::GicV2::cpu_starting`]).
    BadCpu(CpuId),
    /// No redistributor has the affinity of the calling CPU (GICv3), or the
    /// CPU interface number is not a single bit (GICv2).
    NoRedistributor(CpuId),
    /// A second CPU claims the same redistributor / CPU interface.
    AlreadyClaimed(CpuId),
    /// `cpu_starting`/`cpu_dying` was called on a CPU other than the one it names.
    WrongCpu(CpuId),
    /// A status bit (`RWP`, `ChildrenAsleep`) did not settle in time.
    Timeout,
    /// The frames are too small or the hardware reports an unexpected layout.
    BadLayout,
    /// Not an SGI INTID.
    NotSgi,
    /// No online CPU can take the interrupts of a dying CPU.
    NoTargetCpu,
    /// The GIC does not implement what was asked (LPIs on a GICv2 or a
    /// distributor without `GICD_TYPER.LPIS`).
    Unsupported,
}

impl From<GicError> for IrqError {
    fn from(e: GicError) -> Self {
        match e {
            GicError::BadCpu(c)
            | GicError::NoRedistributor(c)
            | GicError::AlreadyClaimed(c)
            | GicError::WrongCpu(c) => IrqError::BadCpu(c),
            GicError::Timeout => IrqError::Chip(ChipError::Hardware(-110)),
            GicError::BadLayout => IrqError::Chip(ChipError::Invalid),
            GicError::NotSgi => IrqError::InvalidArgument,
            GicError::NoTargetCpu => IrqError::NoOnlineCpu,
            GicError::Unsupported => IrqError::Chip(ChipError::Unsupported),
        }
    }
}

/// Which CPUs an SGI goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SgiTarget<'a> {
    /// The CPUs in the mask (each must have been started on this GIC).
    Cpus(&'a CpuMask),
    /// Every CPU but the sender (GICv2 filter 1, GICv3 `IRM`).
    AllButSelf,
    /// The sender only.
    ToSelf,
}

const UNKNOWN: u64 = u64::MAX;

/// One CPU as the GIC knows it.
#[derive(Debug)]
struct CpuSlot {
    /// GICv2: CPU interface number; GICv3: MPIDR affinity. `UNKNOWN` until started.
    hw_id: AtomicU64,
    /// GICv3: index of its redistributor.
    rdist: AtomicUsize,
    /// Started and not dying: takes SPIs and SGIs.
    online: AtomicBool,
}

/// The per-CPU table: filled in by `cpu_starting` on each CPU, read
/// lock-free by chip callbacks (they run with a descriptor lock held and
/// interrupts off, and must not take a GIC-wide lock just to learn which
/// CPU they are on).
#[derive(Debug)]
pub(crate) struct CpuTable {
    slots: Vec<CpuSlot>,
}

impl CpuTable {
    pub(crate) fn new(n: usize) -> Self {
        Self {
            slots: (0..n)
                .map(|_| CpuSlot {
                    hw_id: AtomicU64::new(UNKNOWN),
                    rdist: AtomicUsize::new(usize::MAX),
                    online: AtomicBool::new(false),
                })
                .collect(),
        }
    }

    pub(crate) fn check(&self, cpu: CpuId) -> Result<(), GicError> {
        if cpu.index() < self.slots.len() {
            Ok(())
        } else {
            Err(GicError::BadCpu(cpu))
        }
    }

    /// Records `cpu`'s hardware id; refuses if another CPU already has it.
    pub(crate) fn claim(&self, cpu: CpuId, hw_id: u64, rdist: usize) -> Result<(), GicError> {
        self.check(cpu)?;
        if let Some(other) = self.cpu_of(hw_id)
            && other != cpu
        {
            return Err(GicError::AlreadyClaimed(cpu));
        }
        let s = &self.slots[cpu.index()];
        s.hw_id.store(hw_id, Ordering::Release);
        s.rdist.store(rdist, Ordering::Release);
        Ok(())
    }

    pub(crate) fn set_online(&self, cpu: CpuId, online: bool) {
        if let Some(s) = self.slots.get(cpu.index()) {
            s.online.store(online, Ordering::Release);
        }
    }

    pub(crate) fn online(&self, cpu: CpuId) -> bool {
        self.slots
            .get(cpu.index())
            .is_some_and(|s| s.online.load(Ordering::Acquire))
    }

    pub(crate) fn hw_id(&self, cpu: CpuId) -> Option<u64> {
        let v = self.slots.get(cpu.index())?.hw_id.load(Ordering::Acquire);
        (v != UNKNOWN).then_some(v)
    }

    pub(crate) fn rdist(&self, cpu: CpuId) -> Option<usize> {
        let v = self.slots.get(cpu.index())?.rdist.load(Ordering::Acquire);
        (v != usize::MAX).then_some(v)
    }

    pub(crate) fn cpu_of(&self, hw_id: u64) -> Option<CpuId> {
        self.slots
            .iter()
            .position(|s| s.hw_id.load(Ordering::Acquire) == hw_id)
            .and_then(CpuId::from_index)
    }

    /// The CPU an interrupt asked to go to `mask` is routed to: the first
    /// online CPU of the mask, or with `force` the first known one (a CPU
    /// being torn down may be named while it is no longer online).
    pub(crate) fn pick(&self, mask: &CpuMask, force: bool) -> Option<CpuId> {
        mask.iter().find(|&c| {
            if force {
                self.hw_id(c).is_some()
            } else {
                self.online(c)
            }
        })
    }

    /// The first online CPU other than `not`.
    pub(crate) fn first_online_except(&self, not: CpuId) -> Option<CpuId> {
        CpuId::all(self.slots.len()).find(|&c| c != not && self.online(c))
    }
}

/// A bank of per-INTID registers laid out as in the distributor
/// (`GICD_ISENABLER<n>` ... `GICD_ICFGR<n>`), at `base` in `mmio`: the
/// distributor itself (base 0) or a GICv3 `SGI_base` frame.
pub(crate) struct Bank<'a, M: Mmio> {
    pub(crate) mmio: &'a M,
    pub(crate) base: usize,
}

impl<M: Mmio> Bank<'_, M> {
    fn set_bit(&self, reg: IdBank, id: IntId) {
        let (word, bit) = reg.bit(id);
        // Set/clear registers: writing zeros has no effect, so no
        // read-modify-write (and no lock) is needed.
        self.mmio.write32(self.base + word, bit);
    }

    pub(crate) fn bit_is_set(&self, reg: IdBank, id: IntId) -> bool {
        let (word, bit) = reg.bit(id);
        self.mmio.read32(self.base + word) & bit != 0
    }

    pub(crate) fn enable(&self, id: IntId) {
        self.set_bit(gicd::ISENABLER, id);
    }

    pub(crate) fn disable(&self, id: IntId) {
        self.set_bit(gicd::ICENABLER, id);
    }

    pub(crate) fn set_pending(&self, id: IntId) {
        self.set_bit(gicd::ISPENDR, id);
    }

    pub(crate) fn is_enabled(&self, id: IntId) -> bool {
        self.bit_is_set(gicd::ISENABLER, id)
    }

    /// Read-modify-write of `id`'s field in `reg`; the caller holds the GIC
    /// lock.
    fn write_field(&self, reg: IdBank, id: IntId, value: u32) {
        let off = self.base + reg.word(id);
        let shift = reg.shift(id);
        let field = field_mask(reg) << shift;
        let old = self.mmio.read32(off);
        self.mmio
            .write32(off, (old & !field) | ((value << shift) & field));
    }

    /// `id`'s field in `reg`.
    pub(crate) fn read_field(&self, reg: IdBank, id: IntId) -> u32 {
        let word = self.mmio.read32(self.base + reg.word(id));
        (word >> reg.shift(id)) & field_mask(reg)
    }

    /// Read-modify-write of one byte lane; the caller holds the GIC lock.
    pub(crate) fn write_byte(&self, reg: IdBank, id: IntId, value: u8) {
        self.write_field(reg, id, u32::from(value));
    }

    /// Sets the priority; the caller holds the GIC lock.
    pub(crate) fn set_priority(&self, id: IntId, prio: u8) {
        self.write_byte(gicd::IPRIORITYR, id, prio);
    }

    /// Programs edge (`true`) or level; the caller holds the GIC lock.
    /// Only the upper bit of the two-bit `ICFGR` field is written (the
    /// lower one is reserved or implementation defined).
    pub(crate) fn set_edge(&self, id: IntId, edge: bool) {
        let field = self.read_field(gicd::ICFGR, id);
        let field = if edge { field | 0b10 } else { field & !0b10 };
        self.write_field(gicd::ICFGR, id, field);
    }

    /// Whether `id` is configured edge-triggered (its `ICFGR` bit).
    pub(crate) fn is_edge(&self, id: IntId) -> bool {
        self.read_field(gicd::ICFGR, id) & 0b10 != 0
    }

    /// The trigger `id` is configured with, as `IrqChip::read_trigger`
    /// reports it: the GIC has no polarity, so edge reads as rising and
    /// level as high (the types `set_type` programs for SPIs; SGIs always
    /// read edge).
    pub(crate) fn trigger(&self, id: IntId) -> TriggerType {
        if self.is_edge(id) {
            TriggerType::EdgeRising
        } else {
            TriggerType::LevelHigh
        }
    }

    /// Writes word `index` of a per-INTID bank (initialisation).
    pub(crate) fn write_word(&self, reg: IdBank, index: usize, value: u32) {
        self.mmio.write32(self.base + reg.word_at(index), value);
    }
}

/// The mask of one INTID's field in a bank of 32-bit words.
const fn field_mask(reg: IdBank) -> u32 {
    match reg.bits_per_id() {
        n @ 1..32 => (1 << n) - 1,
        _ => u32::MAX,
    }
}

/// Whether `trigger` can be programmed for an INTID of this class, and as
/// edge (`Some(true)`), level (`Some(false)`) or unchanged (`None`).
///
/// SGIs are always edge. SPIs accept rising edge or high level only (the
/// GIC has no inverters). PPIs also accept falling edge / low level from
/// firmware that describes an external inverter: the GIC sees edge/level.
pub(crate) fn trigger_config(id: IntId, trigger: TriggerType) -> Result<Option<bool>, ChipError> {
    use crate::intid::IntKind;
    use TriggerType as T;
    match (id.kind(), trigger) {
        (_, T::None) => Ok(None),
        (IntKind::Sgi | IntKind::Lpi, T::EdgeRising) => Ok(None),
        (IntKind::Sgi | IntKind::Lpi, _) => Err(ChipError::InvalidTrigger),
        (IntKind::Spi, T::EdgeRising) | (IntKind::Ppi, T::EdgeRising | T::EdgeFalling) => {
            Ok(Some(true))
        }
        (IntKind::Spi, T::LevelHigh) | (IntKind::Ppi, T::LevelHigh | T::LevelLow) => {
            Ok(Some(false))
        }
        _ => Err(ChipError::InvalidTrigger),
    }
}

/// Polls `done` up to `limit` times.
pub(crate) fn poll(limit: u32, mut done: impl FnMut() -> bool) -> Result<(), GicError> {
    for _ in 0..limit.max(1) {
        if done() {
            return Ok(());
        }
        core::hint::spin_loop();
    }
    Err(GicError::Timeout)
}
