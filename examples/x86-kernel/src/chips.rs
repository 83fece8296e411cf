//! What the kernel still adds to arch-x86's chips: [`PciMsi`], the PCI MSI
//! capability (config-space access is the kernel's) that `arch_x86::MsiChip`
//! programs. The LAPIC timer and IPIs use `arch_x86::LapicTimerChip` and
//! `LapicIpiChip`, the IOAPIC pins `arch_x86::IoApic`, and every device
//! hierarchy's root is `arch_x86::VectorDomain` (see `devices.rs`).

use irqcore::MsiMsg;

use crate::hw::pci;

/// The MSI capability of one PCI function (single vector, index 0), as
/// `arch_x86::MsiChip` programs it: the chip composes the message from the
/// vector level and writes it here; the function is enabled for MSI with
/// its first message.
pub struct PciMsi {
    /// The function.
    pub bdf: pci::Bdf,
    /// Offset of its MSI capability.
    pub cap: u8,
}

impl arch_x86::MsiDevice for PciMsi {
    fn write_msg(&self, _index: u32, msg: MsiMsg) {
        let addr = (u64::from(msg.address_hi) << 32) | u64::from(msg.address_lo);
        pci::msi_program(self.bdf, self.cap, addr, msg.data as u16, true);
    }

    // edu's MSI capability has no per-vector mask bit (PCI 3.0, 6.8.1.3):
    // masking is impossible, as in Linux for such functions; irqcore's lazy
    // disable still marks arrivals while disabled as pending and resends.
    fn set_masked(&self, _index: u32, _masked: bool) -> bool {
        false
    }
}
