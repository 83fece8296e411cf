//! PCI configuration space through the legacy mechanism #1 (ports 0xCF8 /
//! 0xCFC, PCI Local Bus spec 3.0, 3.2.2.3.2), and the MSI capability.

use irqcore::MsiMsg;

use super::port::{inl, outl};
use kernel_common::sync::IrqLock;

/// One function's address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bdf {
    /// Bus.
    pub bus: u8,
    /// Device.
    pub dev: u8,
    /// Function.
    pub func: u8,
}

static CONFIG_LOCK: IrqLock<()> = IrqLock::new(());

fn address(b: Bdf, offset: u8) -> u32 {
    0x8000_0000
        | (u32::from(b.bus) << 16)
        | (u32::from(b.dev) << 11)
        | (u32::from(b.func) << 8)
        | u32::from(offset & 0xFC)
}

/// Reads the dword at `offset` (rounded down to 4).
pub fn read32(b: Bdf, offset: u8) -> u32 {
    let _g = CONFIG_LOCK.lock();
    // SAFETY: 0xCF8/0xCFC are the PCI configuration ports of the host bridge;
    // the lock keeps the address/data pair atomic.
    unsafe {
        outl(0xCF8, address(b, offset));
        inl(0xCFC)
    }
}

/// Writes the dword at `offset`.
pub fn write32(b: Bdf, offset: u8, v: u32) {
    let _g = CONFIG_LOCK.lock();
    // SAFETY: as in `read32`.
    unsafe {
        outl(0xCF8, address(b, offset));
        outl(0xCFC, v);
    }
}

/// Reads the u16 at `offset` (2-aligned).
pub fn read16(b: Bdf, offset: u8) -> u16 {
    (read32(b, offset) >> ((offset & 2) * 8)) as u16
}

/// Writes the u16 at `offset` (read-modify-write of its dword).
pub fn write16(b: Bdf, offset: u8, v: u16) {
    let shift = (offset & 2) * 8;
    let old = read32(b, offset);
    let new = (old & !(0xFFFF << shift)) | (u32::from(v) << shift);
    write32(b, offset, new);
}

/// Every function on bus 0 with the given vendor/device id.
pub fn find_all(vendor: u16, device: u16) -> impl Iterator<Item = Bdf> {
    (0..32u8)
        .flat_map(|dev| (0..8u8).map(move |func| Bdf { bus: 0, dev, func }))
        .filter(move |&b| {
            let id = read32(b, 0);
            id != 0xFFFF_FFFF && id as u16 == vendor && (id >> 16) as u16 == device
        })
}

/// Command register bits.
pub mod command {
    /// Memory space decoding.
    pub const MEMORY: u16 = 1 << 1;
    /// Bus master (needed for MSI writes).
    pub const BUS_MASTER: u16 = 1 << 2;
    /// INTx disable.
    pub const INTX_DISABLE: u16 = 1 << 10;
}

/// Finds capability `id` in the capability list.
pub fn find_capability(b: Bdf, id: u8) -> Option<u8> {
    if read16(b, 0x06) & (1 << 4) == 0 {
        return None;
    }
    let mut ptr = (read32(b, 0x34) & 0xFC) as u8;
    for _ in 0..48 {
        if ptr == 0 {
            return None;
        }
        let hdr = read32(b, ptr);
        if hdr as u8 == id {
            return Some(ptr);
        }
        ptr = ((hdr >> 8) & 0xFC) as u8;
    }
    None
}

/// MSI capability id.
pub const CAP_MSI: u8 = 0x05;

/// Programs the MSI capability at `cap` with `addr`/`data` (64-bit layout if
/// the function supports it) and enables or disables MSI with one vector.
pub fn msi_program(b: Bdf, cap: u8, addr: u64, data: u16, enable: bool) {
    let ctrl = read16(b, cap + 2);
    let is64 = ctrl & (1 << 7) != 0;
    write32(b, cap + 4, addr as u32);
    if is64 {
        write32(b, cap + 8, (addr >> 32) as u32);
        write16(b, cap + 12, data);
    } else {
        write16(b, cap + 8, data);
    }
    // Multiple Message Enable = 0 (one vector); bit 0 = MSI enable.
    let ctrl = (ctrl & !(0b111 << 4) & !1) | u16::from(enable);
    write16(b, cap + 2, ctrl);
}

/// The MSI capability of one PCI function (single vector, index 0), as
/// `arch_x86::MsiChip` programs it: the chip composes the message from the
/// vector level and writes it here; the function is enabled for MSI with
/// its first message.
pub struct PciMsi {
    /// The function.
    pub bdf: Bdf,
    /// Offset of its MSI capability.
    pub cap: u8,
}

impl arch_x86::MsiDevice for PciMsi {
    fn write_msg(&self, _index: u32, msg: MsiMsg) {
        let addr = (u64::from(msg.address_hi) << 32) | u64::from(msg.address_lo);
        msi_program(self.bdf, self.cap, addr, msg.data as u16, true);
    }

    // edu's MSI capability has no per-vector mask bit (PCI 3.0, 6.8.1.3):
    // masking is impossible, as in Linux for such functions; irqcore's lazy
    // disable still marks arrivals while disabled as pending and resends.
    fn set_masked(&self, _index: u32, _masked: bool) -> bool {
        false
    }
}
