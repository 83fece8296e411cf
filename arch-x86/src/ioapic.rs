//! The I/O APIC: register access, redirection entries, and the IOAPIC chip
//! level of an irq's hierarchy (its parent is the [vector
//! domain](crate::vector)).
//!
//! Registers (Intel 82093AA datasheet, section 3): an index register
//! (IOREGSEL, offset 0x00) selects a 32-bit indirect register visible in the
//! data window (IOWIN, offset 0x10). Indirect 0x00 is the id, 0x01 the
//! version (bits 0-7) and the highest redirection entry (bits 16-23), and
//! 0x10 + 2n / 0x11 + 2n the low / high halves of pin n's redirection entry.
//! Version 0x20 and later IOAPICs have an EOI register at offset 0x40: a
//! write of a vector clears the remote IRR of the entries with that vector
//! (directed EOI, used when the LAPIC suppresses EOI broadcasts).
//!
//! Level lines: when the IOAPIC delivers a level interrupt it sets the
//! entry's remote IRR and will not deliver that pin again until an EOI for
//! the vector clears it (the LAPIC's EOI broadcast, or the EOI register). The
//! chip's `eoi` (fasteoi flow) and `ack` (level flow, after masking) forward
//! to the vector level, whose LAPIC EOI does that.

use crate::ids::Vector;
use crate::irqsafe::{IrqControl, IrqSafeMutex};
use crate::regs::Mmio32;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};
use irqcore::{
    AffinitySet, ChipError, ChipFlags, ChipLevel, CpuMask, HwIrq, IrqChip, IrqData, IrqNumber,
    MsiMsg, TriggerType,
};

pub mod reg;

pub use reg::{IOAPIC_EOI, IOREGSEL, IOWIN, REG_ID, REG_REDTBL, REG_VERSION};

/// Errors of the IOAPIC driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoApicError {
    /// Nothing answers at the address (the version register reads all-ones).
    NoDevice,
    /// The pin does not exist on this IOAPIC.
    BadPin(u32),
    /// The GSI is not served by any IOAPIC.
    UnknownGsi(u32),
    /// The trigger type cannot be programmed (both edges).
    InvalidTrigger,
    /// The parent's message targets a destination an IOAPIC entry cannot
    /// express (an x2APIC id above 0x7FFF, or no message at all).
    Unreachable,
    /// The IOAPIC has no EOI register (version below 0x20).
    NoEoiRegister,
    /// The pin is already owned by a [`ClaimedPin`](crate::ClaimedPin).
    PinInUse(u32),
}

impl From<IoApicError> for ChipError {
    fn from(e: IoApicError) -> Self {
        match e {
            IoApicError::InvalidTrigger => ChipError::InvalidTrigger,
            _ => ChipError::Invalid,
        }
    }
}

/// A 64-bit redirection-table entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RedirectionEntry(pub u64);

impl RedirectionEntry {
    const MASK: u64 = 1 << 16;
    const LEVEL: u64 = 1 << 15;
    const REMOTE_IRR: u64 = 1 << 14;
    const ACTIVE_LOW: u64 = 1 << 13;
    const PENDING: u64 = 1 << 12;
    const LOGICAL: u64 = 1 << 11;

    /// A masked, edge, active-high, fixed entry with vector 0.
    pub const MASKED: RedirectionEntry = RedirectionEntry(Self::MASK);

    /// Vector (bits 0-7).
    pub const fn vector(self) -> u8 {
        self.0 as u8
    }
    /// Delivery mode (bits 8-10: 0 fixed, 1 lowest priority, 4 NMI, 7 ExtINT).
    pub const fn delivery_mode(self) -> u8 {
        ((self.0 >> 8) & 7) as u8
    }
    /// Destination mode logical (bit 11).
    pub const fn is_logical(self) -> bool {
        self.0 & Self::LOGICAL != 0
    }
    /// Delivery status: an interrupt is waiting to be sent (bit 12, RO).
    pub const fn is_pending(self) -> bool {
        self.0 & Self::PENDING != 0
    }
    /// Polarity active low (bit 13).
    pub const fn is_active_low(self) -> bool {
        self.0 & Self::ACTIVE_LOW != 0
    }
    /// Remote IRR: a level interrupt was accepted and not yet EOIed (bit 14,
    /// RO).
    pub const fn remote_irr(self) -> bool {
        self.0 & Self::REMOTE_IRR != 0
    }
    /// Level triggered (bit 15).
    pub const fn is_level(self) -> bool {
        self.0 & Self::LEVEL != 0
    }
    /// Masked (bit 16).
    pub const fn is_masked(self) -> bool {
        self.0 & Self::MASK != 0
    }
    /// Destination: APIC id bits 0-7 (bits 56-63) plus, for the extended
    /// destination id, bits 8-14 (bits 49-55).
    pub const fn destination(self) -> u32 {
        ((self.0 >> 56) as u32) | ((((self.0 >> 49) & 0x7F) as u32) << 8)
    }
    /// The trigger type the entry encodes.
    pub const fn trigger(self) -> TriggerType {
        match (self.is_level(), self.is_active_low()) {
            (false, false) => TriggerType::EdgeRising,
            (false, true) => TriggerType::EdgeFalling,
            (true, false) => TriggerType::LevelHigh,
            (true, true) => TriggerType::LevelLow,
        }
    }

    /// With bit `bit` set to `on`.
    const fn with(self, bit: u64, on: bool) -> Self {
        if on {
            RedirectionEntry(self.0 | bit)
        } else {
            RedirectionEntry(self.0 & !bit)
        }
    }
    /// With the mask bit set to `masked`.
    pub const fn with_mask(self, masked: bool) -> Self {
        self.with(Self::MASK, masked)
    }
    /// With trigger mode and polarity of `t` (`None`: unchanged; both edges
    /// is refused).
    pub const fn with_trigger(self, t: TriggerType) -> Result<Self, IoApicError> {
        let (level, low) = match t {
            TriggerType::None => return Ok(self),
            TriggerType::EdgeRising => (false, false),
            TriggerType::EdgeFalling => (false, true),
            TriggerType::LevelHigh => (true, false),
            TriggerType::LevelLow => (true, true),
            TriggerType::EdgeBoth => return Err(IoApicError::InvalidTrigger),
        };
        Ok(self.with(Self::LEVEL, level).with(Self::ACTIVE_LOW, low))
    }
    /// With fixed delivery, physical destination, vector and destination
    /// taken from an MSI message composed by the vector domain (the same
    /// translation Linux uses since the IOAPIC became an MSI-parent child).
    pub const fn with_target_from_msi(self, msg: &MsiMsg) -> Result<Self, IoApicError> {
        if msg.address_hi != 0 || msg.address_lo & 0xFFF0_0000 != 0xFEE0_0000 {
            return Err(IoApicError::Unreachable);
        }
        let dest_lo = ((msg.address_lo >> 12) & 0xFF) as u64;
        let dest_ext = ((msg.address_lo >> 5) & 0x7F) as u64;
        let keep = Self::MASK | Self::LEVEL | Self::ACTIVE_LOW;
        Ok(RedirectionEntry(
            (self.0 & keep) | (msg.data & 0xFF) as u64 | (dest_lo << 56) | (dest_ext << 49),
        ))
    }
}

/// Raw register access to one IOAPIC. Not synchronised: [`IoApic`] wraps it
/// in a lock because every access is an index-then-data pair.
#[derive(Debug)]
pub struct IoApicRegs<M> {
    mmio: M,
}

impl<M: Mmio32> IoApicRegs<M> {
    /// Registers reached through `mmio` (the IOAPIC's 4 KiB window).
    pub const fn new(mmio: M) -> Self {
        Self { mmio }
    }

    /// Reads indirect register `reg`.
    pub fn read(&self, reg: u32) -> u32 {
        self.mmio.write32(IOREGSEL, reg);
        self.mmio.read32(IOWIN)
    }

    /// Writes indirect register `reg`.
    pub fn write(&self, reg: u32, value: u32) {
        self.mmio.write32(IOREGSEL, reg);
        self.mmio.write32(IOWIN, value);
    }

    /// The IOAPIC id (bits 24-27 of the id register).
    pub fn id(&self) -> u8 {
        ((self.read(REG_ID) >> 24) & 0xF) as u8
    }

    /// (version, number of pins).
    pub fn version(&self) -> (u8, u32) {
        let v = self.read(REG_VERSION);
        (v as u8, ((v >> 16) & 0xFF) + 1)
    }

    /// Reads pin `pin`'s entry.
    pub fn read_entry(&self, pin: u32) -> RedirectionEntry {
        let lo = self.read(reg::redtbl_low(pin)) as u64;
        let hi = self.read(reg::redtbl_high(pin)) as u64;
        RedirectionEntry(hi << 32 | lo)
    }

    /// Writes pin `pin`'s entry so that it is never live half-written: an
    /// unmasked entry is written high half first (the low half, with the
    /// mask bit, last); a masked one low half first.
    pub fn write_entry(&self, pin: u32, e: RedirectionEntry) {
        let (lo, hi) = (e.0 as u32, (e.0 >> 32) as u32);
        if e.is_masked() {
            self.write(reg::redtbl_low(pin), lo);
            self.write(reg::redtbl_high(pin), hi);
        } else {
            self.write(reg::redtbl_high(pin), hi);
            self.write(reg::redtbl_low(pin), lo);
        }
    }

    /// Directed EOI for `vector` (version >= 0x20 only).
    pub fn eoi(&self, vector: u8) {
        self.mmio.write32(IOAPIC_EOI, vector as u32);
    }
}

struct Inner<M> {
    regs: IoApicRegs<M>,
    /// The writable bits of every entry, as last programmed.
    shadow: Vec<RedirectionEntry>,
    /// Pins whose new target waits for the EOI of the interrupt in flight
    /// (see `set_affinity`), with the message of that target.
    retarget: Vec<Option<MsiMsg>>,
    /// Pins owned by a [`ClaimedPin`](crate::ClaimedPin).
    claimed: Vec<bool>,
}

/// One IOAPIC, usable as the IOAPIC level of an irq's chip stack (hwirq =
/// pin). Use the fasteoi flow for level pins and the edge flow for edge
/// pins.
pub struct IoApic<M> {
    name: &'static str,
    id: u8,
    gsi_base: u32,
    nr_pins: u32,
    version: u8,
    directed_eoi: AtomicBool,
    inner: IrqSafeMutex<Inner<M>>,
}

impl<M: Mmio32> IoApic<M> {
    /// Probes the IOAPIC behind `mmio`, serving GSIs from `gsi_base`, and
    /// masks every pin.
    pub fn new(name: &'static str, mmio: M, gsi_base: u32) -> Result<Self, IoApicError> {
        let regs = IoApicRegs::new(mmio);
        if regs.read(REG_VERSION) == u32::MAX {
            return Err(IoApicError::NoDevice);
        }
        let (version, nr_pins) = regs.version();
        let id = regs.id();
        let shadow = (0..nr_pins).map(|_| RedirectionEntry::MASKED).collect();
        for pin in 0..nr_pins {
            regs.write_entry(pin, RedirectionEntry::MASKED);
        }
        Ok(Self {
            name,
            id,
            gsi_base,
            nr_pins,
            version,
            directed_eoi: AtomicBool::new(false),
            inner: IrqSafeMutex::new(Inner {
                regs,
                shadow,
                retarget: alloc::vec![None; nr_pins as usize],
                claimed: alloc::vec![false; nr_pins as usize],
            }),
        })
    }

    /// Sets how the chip disables local interrupts around its lock (which
    /// interrupt-context eois also take). Kernels pass
    /// `arch_x86::hw::IRQ_CONTROL`; the default is
    /// [`IrqControl::DEFAULT`] (`cli`/`sti` on bare-metal x86_64).
    pub fn with_irq_control(mut self, ctl: IrqControl) -> Self {
        self.inner.set_control(ctl);
        self
    }

    /// The IOAPIC id register's value.
    pub fn id(&self) -> u8 {
        self.id
    }

    /// Directed EOI for `vector` outside any flow: clears the remote IRR of
    /// every level entry with that vector, so the IOAPIC delivers a line
    /// still asserted again. A kernel uses it when a CPU goes offline with a
    /// level vector latched that it will never EOI.
    ///
    /// A pin whose move (`set_affinity`) was deferred until this EOI is
    /// masked across the EOI and then switched to its new target, so a
    /// line still asserted is delivered there and never again to the old
    /// (dying) CPU. Refused on IOAPICs older than version 0x20 (no EOI
    /// register).
    pub fn eoi_vector(&self, vector: Vector) -> Result<(), IoApicError> {
        let vector = vector.get();
        if self.version < 0x20 {
            return Err(IoApicError::NoEoiRegister);
        }
        let mut inner = self.inner.lock();
        let moving: Vec<u32> = (0..self.nr_pins)
            .filter(|p| {
                let i = *p as usize;
                inner.retarget[i].is_some() && inner.shadow[i].vector() == vector
            })
            .collect();
        for pin in &moving {
            let masked = inner.shadow[*pin as usize].with_mask(true);
            inner.regs.write_entry(*pin, masked);
        }
        inner.regs.eoi(vector);
        for pin in moving {
            let i = pin as usize;
            let old = inner.shadow[i];
            let new = match inner.retarget[i].take() {
                Some(msg) => old.with_target_from_msi(&msg).unwrap_or(old),
                None => old,
            };
            inner.shadow[i] = new;
            // Restores the mask bit the shadow had: delivered to the new
            // target if still asserted and unmasked.
            inner.regs.write_entry(pin, new);
        }
        Ok(())
    }
    /// First GSI served.
    pub fn gsi_base(&self) -> u32 {
        self.gsi_base
    }
    /// Number of pins.
    pub fn nr_pins(&self) -> u32 {
        self.nr_pins
    }
    /// The version register's version field.
    pub fn version(&self) -> u8 {
        self.version
    }
    /// The pin of `gsi`, if this IOAPIC serves it.
    pub fn pin_of_gsi(&self, gsi: u32) -> Option<u32> {
        gsi.checked_sub(self.gsi_base).filter(|p| *p < self.nr_pins)
    }

    /// Tells the chip that the LAPICs suppress EOI broadcasts, so level
    /// EOIs must also be written to this IOAPIC's EOI register.
    pub fn set_directed_eoi(&self, on: bool) {
        self.directed_eoi.store(on, Ordering::Relaxed);
    }

    /// The entry of `pin` as the hardware reports it (with the read-only
    /// remote-IRR and delivery-status bits).
    pub fn entry(&self, pin: u32) -> Result<RedirectionEntry, IoApicError> {
        self.check(pin)?;
        Ok(self.inner.lock().regs.read_entry(pin))
    }

    fn check(&self, pin: u32) -> Result<(), IoApicError> {
        if pin < self.nr_pins {
            Ok(())
        } else {
            Err(IoApicError::BadPin(pin))
        }
    }

    fn update(
        &self,
        pin: u32,
        f: impl FnOnce(RedirectionEntry) -> Result<RedirectionEntry, IoApicError>,
    ) -> Result<RedirectionEntry, IoApicError> {
        self.check(pin)?;
        let mut inner = self.inner.lock();
        let old = inner.shadow[pin as usize];
        let new = f(old)?;
        if new != old {
            inner.shadow[pin as usize] = new;
            inner.regs.write_entry(pin, new);
        }
        Ok(new)
    }

    /// Programs `pin` (masked) with `trigger` and the target of `parent`
    /// (the irq's vector level, from [`VectorDomain::alloc`](crate::vector::VectorDomain::alloc)),
    /// and returns the IOAPIC level for `IrqCore::set_chip`
    /// (`vec![ioapic_level, parent]`).
    pub fn alloc_pin(
        self: &Arc<Self>,
        irq: IrqNumber,
        pin: u32,
        trigger: TriggerType,
        parent: &ChipLevel,
    ) -> Result<ChipLevel, IoApicError>
    where
        M: 'static,
    {
        let msg = IrqData::new(irq, core::slice::from_ref(parent))
            .compose_msi_msg_hierarchy()
            .ok_or(IoApicError::Unreachable)?;
        self.update(pin, |e| {
            e.with_mask(true)
                .with_trigger(trigger)?
                .with_target_from_msi(&msg)
        })?;
        Ok(ChipLevel::new(
            self.clone() as Arc<dyn IrqChip>,
            HwIrq(pin as u64),
        ))
    }

    /// Points `pin` at the target of `msg` (composed by the vector domain),
    /// keeping its mask, trigger and polarity.
    pub fn program_target(&self, pin: u32, msg: &MsiMsg) -> Result<(), IoApicError> {
        self.update(pin, |e| e.with_target_from_msi(msg))
            .map(|_| ())
    }

    /// Masks or unmasks `pin`.
    pub fn set_masked(&self, pin: u32, masked: bool) -> Result<(), IoApicError> {
        self.update(pin, |e| Ok(e.with_mask(masked))).map(|_| ())
    }

    /// Masks `pin`, forgets its configuration and ends its ownership (a
    /// pin given up with [`ClaimedPin::leak`](crate::ClaimedPin::leak) can
    /// be claimed again afterwards).
    pub fn free_pin(&self, pin: u32) -> Result<(), IoApicError> {
        self.check(pin)?;
        let mut inner = self.inner.lock();
        inner.shadow[pin as usize] = RedirectionEntry::MASKED;
        inner.retarget[pin as usize] = None;
        inner.claimed[pin as usize] = false;
        inner.regs.write_entry(pin, RedirectionEntry::MASKED);
        Ok(())
    }

    /// Whether `pin` is owned by a [`ClaimedPin`](crate::ClaimedPin).
    pub fn is_claimed(&self, pin: u32) -> bool {
        self.check(pin).is_ok() && self.inner.lock().claimed[pin as usize]
    }

    /// Marks `pin` owned; refused if it already is.
    pub(crate) fn mark_claimed(&self, pin: u32) -> Result<(), IoApicError> {
        self.check(pin)?;
        let mut inner = self.inner.lock();
        let slot = &mut inner.claimed[pin as usize];
        if *slot {
            return Err(IoApicError::PinInUse(pin));
        }
        *slot = true;
        Ok(())
    }

    fn pin(d: &IrqData<'_>) -> u32 {
        u32::try_from(d.hwirq().0).unwrap_or(u32::MAX)
    }

    /// After the EOI: applies a target change deferred by `set_affinity`.
    fn finish_retarget(&self, d: &IrqData<'_>) {
        let pin = Self::pin(d);
        if self.check(pin).is_err() || self.inner.lock().retarget[pin as usize].is_none() {
            return;
        }
        if let Some(msg) = d.parent().and_then(|p| p.compose_msi_msg_hierarchy()) {
            let mut inner = self.inner.lock();
            inner.retarget[pin as usize] = None;
            drop(inner);
            let _ = self.update(pin, |e| e.with_target_from_msi(&msg));
        }
    }

    fn eoi_level(&self, d: &IrqData<'_>) {
        let pin = Self::pin(d);
        if self.check(pin).is_err() {
            return;
        }
        if self.directed_eoi.load(Ordering::Relaxed) {
            let inner = self.inner.lock();
            let e = inner.shadow[pin as usize];
            if self.version >= 0x20 {
                inner.regs.eoi(e.vector());
            } else {
                // Pre-0x20 IOAPICs have no EOI register: switching the entry
                // to edge and back clears remote IRR (82093AA behaviour).
                let masked_edge = e.with_mask(true).with(RedirectionEntry::LEVEL, false);
                inner.regs.write_entry(pin, masked_edge);
                inner.regs.write_entry(pin, e);
            }
        }
    }
}

impl<M: Mmio32 + 'static> IrqChip for IoApic<M> {
    fn name(&self) -> &str {
        self.name
    }

    fn flags(&self) -> ChipFlags {
        ChipFlags::SET_TYPE_MASKED
    }

    fn mask(&self, d: &IrqData<'_>) {
        let _ = self.update(Self::pin(d), |e| Ok(e.with_mask(true)));
    }

    fn unmask(&self, d: &IrqData<'_>) {
        let _ = self.update(Self::pin(d), |e| Ok(e.with_mask(false)));
    }

    fn startup(&self, d: &IrqData<'_>) {
        // The vector level may only now get its vector (managed irqs):
        // start it, take over its target, then unmask.
        if let Some(p) = d.parent()
            && let Some(c) = p.chip()
        {
            c.startup(&p);
            if let Some(msg) = p.compose_msi_msg_hierarchy() {
                let _ = self.update(Self::pin(d), |e| e.with_target_from_msi(&msg));
            }
        }
        self.unmask(d);
    }

    fn shutdown(&self, d: &IrqData<'_>) {
        self.mask(d);
        if let Some(p) = d.parent()
            && let Some(c) = p.chip()
        {
            c.shutdown(&p);
        }
    }

    fn ack(&self, d: &IrqData<'_>) {
        // Edge flow, or the level flow after masking: LAPIC EOI (whose
        // broadcast clears remote IRR of a level entry).
        d.ack_parent();
        self.finish_retarget(d);
    }

    fn eoi(&self, d: &IrqData<'_>) {
        // Fasteoi flow: LAPIC EOI first (broadcast clears remote IRR), then
        // the IOAPIC's own EOI if broadcasts are suppressed.
        d.eoi_parent();
        self.eoi_level(d);
        self.finish_retarget(d);
    }

    fn set_type(&self, d: &IrqData<'_>, trigger: TriggerType) -> Result<(), ChipError> {
        self.update(Self::pin(d), |e| e.with_trigger(trigger))?;
        Ok(())
    }

    fn read_trigger(&self, d: &IrqData<'_>) -> TriggerType {
        // The shadow holds what was last written (alloc_pin, set_type):
        // trigger mode and polarity are read-write bits the IOAPIC keeps.
        let pin = Self::pin(d);
        if self.check(pin).is_err() {
            return TriggerType::None;
        }
        self.inner.lock().shadow[pin as usize].trigger()
    }

    fn set_affinity(
        &self,
        d: &IrqData<'_>,
        mask: &CpuMask,
        force: bool,
    ) -> Result<AffinitySet, ChipError> {
        let res = d.set_affinity_parent(mask, force)?;
        let pin = Self::pin(d);
        self.check(pin)?;
        let msg = d
            .parent()
            .and_then(|p| p.compose_msi_msg_hierarchy())
            .ok_or(ChipError::Invalid)?;
        {
            // A level entry with remote IRR set is waiting for the EOI of
            // its *current* vector: the EOI broadcast matches entries by
            // vector, so changing it now would leave remote IRR set for
            // ever. Keep the old target until the EOI (the vector domain
            // keeps the old vector mapped until the first arrival on the new
            // one, so nothing is lost meanwhile).
            let mut inner = self.inner.lock();
            let shadow = inner.shadow[pin as usize];
            if shadow.is_level() && inner.regs.read_entry(pin).remote_irr() {
                inner.retarget[pin as usize] = Some(msg);
                return Ok(AffinitySet::Done {
                    effective: res.effective(),
                });
            }
            inner.retarget[pin as usize] = None;
        }
        self.update(pin, |e| e.with_target_from_msi(&msg))?;
        Ok(AffinitySet::Done {
            effective: res.effective(),
        })
    }

    fn retrigger(&self, d: &IrqData<'_>) -> bool {
        d.parent().is_some_and(|p| p.retrigger_hierarchy())
    }
}

/// Every IOAPIC of the system, found by GSI.
pub struct IoApicSet<M> {
    ioapics: Vec<Arc<IoApic<M>>>,
}

impl<M: Mmio32> IoApicSet<M> {
    /// An empty set.
    pub const fn new() -> Self {
        Self {
            ioapics: Vec::new(),
        }
    }
    /// Adds an IOAPIC.
    pub fn add(&mut self, ioapic: Arc<IoApic<M>>) {
        self.ioapics.push(ioapic);
    }
    /// The IOAPICs.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<IoApic<M>>> {
        self.ioapics.iter()
    }
    /// The IOAPIC and pin serving `gsi`.
    pub fn route(&self, gsi: u32) -> Result<(&Arc<IoApic<M>>, u32), IoApicError> {
        self.ioapics
            .iter()
            .find_map(|a| a.pin_of_gsi(gsi).map(|p| (a, p)))
            .ok_or(IoApicError::UnknownGsi(gsi))
    }
    /// Sets directed EOI on every IOAPIC.
    pub fn set_directed_eoi(&self, on: bool) {
        for a in &self.ioapics {
            a.set_directed_eoi(on);
        }
    }
}

impl<M: Mmio32> Default for IoApicSet<M> {
    fn default() -> Self {
        Self::new()
    }
}
