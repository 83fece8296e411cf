//! MSI messages targeting the local APICs: composition, decoding, and the
//! MSI chip level that sits above the [vector domain](crate::vector).
//!
//! Message layout (SDM vol. 3A 11.11, figures 11-24/11-25):
//!
//! * address low: `0xFEE` in bits 20-31, destination id bits 0-7 in bits
//!   12-19, bits 5-11 "extended destination id" (destination bits 8-14 where
//!   the hypervisor advertises it, e.g. KVM/Hyper-V/QEMU), bit 3 redirection
//!   hint, bit 2 destination mode (1 = logical).
//! * address high: 0, except for 32-bit x2APIC destinations, whose bits
//!   8-31 go to address-high bits 8-31.
//!
//! Which destination format a platform decodes is a platform fact, not a
//! choice ([`MsiDestFormat`]): bare-metal xAPIC and x2APIC systems decode
//! only 8 bits, so APIC ids above 255 are reachable from devices only
//! through interrupt remapping (an IOMMU, not modelled here); hypervisors
//! that advertise the "extended destination id" (KVM, Hyper-V, QEMU's
//! x2APIC without remapping) decode 15 bits using address bits 5-11; the
//! address-high form is what the VT-d remapping unit's own interrupts and
//! emulators that support it decode. Linux makes the same distinction when
//! it composes messages. IOAPIC entries follow the same rule (bits 49-55
//! hold destination bits 8-14 with the extended destination id).
//! * data: vector in bits 0-7, delivery mode in bits 8-10, bit 14 level
//!   (assert), bit 15 trigger (1 = level).

use crate::ids::{ApicId, Vector};
use irqcore::{ChipError, ChipFlags, IrqChip, IrqData, MsiMsg};

/// The fixed top of every MSI address: the APIC window at 0xFEEx_xxxx.
pub const MSI_ADDRESS_BASE: u32 = 0xFEE0_0000;
const MSI_ADDRESS_MASK: u32 = 0xFFF0_0000;

/// How a destination APIC id is encoded in the address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsiDestFormat {
    /// 8-bit destination in address bits 12-19 (xAPIC, and x2APIC ids below
    /// 256).
    XApic,
    /// 15-bit destination: bits 0-7 in address bits 12-19, bits 8-14 in
    /// address bits 5-11 (the paravirtual "extended destination id").
    ExtendedDestId,
    /// 32-bit destination: bits 0-7 in address bits 12-19, bits 8-31 in
    /// address-high bits 8-31 (x2APIC).
    X2ApicAddressHigh,
}

/// Errors composing or decoding a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsiError {
    /// The APIC id does not fit the destination format.
    DestinationOutOfRange(ApicId),
    /// The address is not in the APIC window (or has bits the format does
    /// not define).
    NotApicAddress,
    /// The message carries an exception vector (0-31): 0-15 cannot be
    /// delivered at all, 16-31 would look like an exception to the CPU.
    IllegalVector(u8),
}

/// Where and how an MSI is delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsiTarget {
    /// Destination APIC id (physical mode) or logical id.
    pub apic_id: ApicId,
    /// Vector.
    pub vector: Vector,
    /// Destination mode logical.
    pub logical: bool,
    /// Delivery mode field (0 fixed, 1 lowest priority, 4 NMI, ...).
    pub delivery_mode: u8,
    /// Level-triggered message.
    pub level: bool,
}

/// Composes a fixed, edge, physical-destination message for `vector` on the
/// CPU with `apic_id`.
pub fn compose_msi(
    apic_id: ApicId,
    vector: Vector,
    format: MsiDestFormat,
) -> Result<MsiMsg, MsiError> {
    let apic_id = apic_id.get();
    let low8 = (apic_id & 0xFF) << 12;
    let (address_lo, address_hi) = match format {
        MsiDestFormat::XApic if apic_id > 0xFF => {
            return Err(MsiError::DestinationOutOfRange(ApicId(apic_id)));
        }
        MsiDestFormat::XApic => (MSI_ADDRESS_BASE | low8, 0),
        MsiDestFormat::ExtendedDestId if apic_id > 0x7FFF => {
            return Err(MsiError::DestinationOutOfRange(ApicId(apic_id)));
        }
        MsiDestFormat::ExtendedDestId => (MSI_ADDRESS_BASE | low8 | ((apic_id >> 8) << 5), 0),
        MsiDestFormat::X2ApicAddressHigh => (MSI_ADDRESS_BASE | low8, apic_id & 0xFFFF_FF00),
    };
    Ok(MsiMsg {
        address_lo,
        address_hi,
        data: u32::from(vector.get()),
    })
}

/// Decodes a message as the APIC bus would under `format`.
pub fn decode_msi(msg: &MsiMsg, format: MsiDestFormat) -> Result<MsiTarget, MsiError> {
    if msg.address_lo & MSI_ADDRESS_MASK != MSI_ADDRESS_BASE {
        return Err(MsiError::NotApicAddress);
    }
    let low8 = (msg.address_lo >> 12) & 0xFF;
    let ext = (msg.address_lo >> 5) & 0x7F;
    let apic_id = match format {
        MsiDestFormat::XApic if msg.address_hi != 0 || ext != 0 => {
            return Err(MsiError::NotApicAddress);
        }
        MsiDestFormat::XApic => low8,
        MsiDestFormat::ExtendedDestId if msg.address_hi != 0 => {
            return Err(MsiError::NotApicAddress);
        }
        MsiDestFormat::ExtendedDestId => low8 | (ext << 8),
        MsiDestFormat::X2ApicAddressHigh if msg.address_hi & 0xFF != 0 || ext != 0 => {
            return Err(MsiError::NotApicAddress);
        }
        MsiDestFormat::X2ApicAddressHigh => low8 | msg.address_hi,
    };
    let vector = Vector::new(msg.data as u8).map_err(|e| MsiError::IllegalVector(e.0))?;
    Ok(MsiTarget {
        apic_id: ApicId(apic_id),
        vector,
        logical: msg.address_lo & (1 << 2) != 0,
        delivery_mode: ((msg.data >> 8) & 7) as u8,
        level: msg.data & (1 << 15) != 0,
    })
}

/// A device that raises MSIs: PCI MSI/MSI-X capability registers, an HPET
/// comparator, a model. Index `n` is the device's n-th vector (the hwirq of
/// the [`MsiChip`] level).
pub trait MsiDevice: Send + Sync {
    /// Programs vector `index` with `msg`.
    fn write_msg(&self, index: u32, msg: MsiMsg);
    /// Masks or unmasks vector `index`. Return `false` if the device cannot
    /// mask (plain MSI without per-vector masking).
    fn set_masked(&self, index: u32, masked: bool) -> bool;
}

/// The MSI level of an irq's hierarchy: programs the device with the message
/// the vector domain below composes.
///
/// Use with the edge flow. Mask/unmask use the device's mask bits; `ack`
/// forwards to the vector level (APIC EOI and move completion).
pub struct MsiChip<D> {
    name: &'static str,
    device: D,
}

impl<D: MsiDevice> MsiChip<D> {
    /// A chip for `device`.
    pub fn new(name: &'static str, device: D) -> Self {
        Self { name, device }
    }

    /// The device.
    pub fn device(&self) -> &D {
        &self.device
    }

    fn program(&self, d: &IrqData<'_>) -> Result<(), ChipError> {
        let msg = d
            .parent()
            .and_then(|p| p.compose_msi_msg_hierarchy())
            .ok_or(ChipError::Invalid)?;
        self.device.write_msg(index_of(d)?, msg);
        Ok(())
    }
}

fn index_of(d: &IrqData<'_>) -> Result<u32, ChipError> {
    u32::try_from(d.hwirq().0).map_err(|_| ChipError::Invalid)
}

impl<D: MsiDevice> IrqChip for MsiChip<D> {
    fn name(&self) -> &str {
        self.name
    }

    fn flags(&self) -> ChipFlags {
        ChipFlags::ONESHOT_SAFE
    }

    fn mask(&self, d: &IrqData<'_>) {
        if let Ok(i) = index_of(d) {
            self.device.set_masked(i, true);
        }
    }

    fn unmask(&self, d: &IrqData<'_>) {
        if let Ok(i) = index_of(d) {
            self.device.set_masked(i, false);
        }
    }

    fn ack(&self, d: &IrqData<'_>) {
        d.ack_parent();
    }

    fn eoi(&self, d: &IrqData<'_>) {
        d.eoi_parent();
    }

    fn startup(&self, d: &IrqData<'_>) {
        // Start the vector level first (managed irqs get their vector now);
        // the message must be in place before the vector can fire.
        if let Some(p) = d.parent()
            && let Some(c) = p.chip()
        {
            c.startup(&p);
        }
        if self.program(d).is_ok() {
            self.unmask(d);
        }
    }

    fn shutdown(&self, d: &IrqData<'_>) {
        self.mask(d);
        if let Some(p) = d.parent()
            && let Some(c) = p.chip()
        {
            c.shutdown(&p);
        }
    }

    fn set_type(&self, _d: &IrqData<'_>, trigger: irqcore::TriggerType) -> Result<(), ChipError> {
        // MSIs are edge messages.
        if trigger.is_level() {
            Err(ChipError::InvalidTrigger)
        } else {
            Ok(())
        }
    }

    fn set_affinity(
        &self,
        d: &IrqData<'_>,
        mask: &irqcore::CpuMask,
        force: bool,
    ) -> Result<irqcore::AffinitySet, ChipError> {
        let res = d.set_affinity_parent(mask, force)?;
        // The old vector stays mapped until the first interrupt arrives on
        // the new one, so a message the device sends with the old contents
        // while we rewrite them is still handled.
        self.program(d)?;
        Ok(irqcore::AffinitySet::Done {
            effective: res.effective(),
        })
    }

    fn retrigger(&self, d: &IrqData<'_>) -> bool {
        d.parent().is_some_and(|p| p.retrigger_hierarchy())
    }
}
