//! PCIe on QEMU `virt` through ECAM (PCI Express Base Specification 4.0,
//! 7.2.2 "Enhanced Configuration Access Mechanism"), found in the device
//! tree: the kernel maps the ECAM window, finds QEMU's `edu` device, gives
//! its BAR0 an address in the host bridge's 32-bit memory window (nothing
//! else does: the kernel is started without firmware), enables memory
//! decoding and bus mastering (MSI writes are bus-master writes), and
//! programs its MSI capability.

use core::sync::atomic::{AtomicU64, Ordering};

use irqcore::MsiMsg;

use crate::fdt::DtInfo;

/// A function's bus/device/function, also its requester ID (what the ITS
/// sees as DeviceID through the device tree's identity `msi-map`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bdf(pub u16);

impl Bdf {
    fn new(bus: u8, dev: u8, func: u8) -> Self {
        Bdf((u16::from(bus) << 8) | (u16::from(dev & 0x1f) << 3) | u16::from(func & 7))
    }
}

impl core::fmt::Display for Bdf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{:02x}:{:02x}.{}",
            self.0 >> 8,
            (self.0 >> 3) & 0x1f,
            self.0 & 7
        )
    }
}

/// The ECAM window's virtual (= physical) base, once mapped.
static ECAM: AtomicU64 = AtomicU64::new(0);
static ECAM_SIZE: AtomicU64 = AtomicU64::new(0);

/// Configuration-space offsets (PCI Local Bus 3.0, 6.1).
mod cfg {
    pub const VENDOR: u16 = 0x00;
    pub const COMMAND: u16 = 0x04;
    pub const STATUS: u16 = 0x06;
    pub const BAR0: u16 = 0x10;
    pub const CAP_PTR: u16 = 0x34;
    /// Command: memory space, bus master, INTx disable.
    pub const CMD_MEMORY: u16 = 1 << 1;
    pub const CMD_BUS_MASTER: u16 = 1 << 2;
    pub const CMD_INTX_DISABLE: u16 = 1 << 10;
    /// Status: capabilities list present.
    pub const STATUS_CAP_LIST: u16 = 1 << 4;
    /// MSI capability id.
    pub const CAP_MSI: u8 = 0x05;
}

/// Identity-maps the 1 GiB block holding the ECAM window as device memory
/// in the boot page table (the boot code maps only the first 2 GiB; QEMU
/// virt puts ECAM at 256 GiB).
fn map_ecam(base: u64, size: u64) -> Result<(), &'static str> {
    const GIB: u64 = 1 << 30;
    if size == 0 || base / GIB != (base + size - 1) / GIB || base >= 1 << 39 {
        return Err("pci: ECAM window not within one 1 GiB block below 512 GiB");
    }
    let index = (base / GIB) as usize;
    if index < 2 {
        return Ok(()); // already mapped by the boot page table
    }
    let ttbr0: u64;
    // SAFETY: reading TTBR0_EL1 has no side effect.
    unsafe { core::arch::asm!("mrs {}, ttbr0_el1", out(reg) ttbr0, options(nomem, nostack)) };
    let table = (ttbr0 & 0x0000_ffff_ffff_f000) as *mut u64;
    // Level 1 block, Device-nGnRE (AttrIndx 0), AF, UXN|PXN: the same
    // attributes as the boot code's device block for 0..1 GiB.
    let entry = (index as u64 * GIB) | 0x0060_0000_0000_0401;
    // SAFETY: the boot page table (identity-mapped RAM, 512 entries of a
    // level 1 table with a 39-bit VA) whose entry `index` is invalid (the
    // boot code fills entries 0 and 1 only); writing a valid block entry
    // where there was none needs no break-before-make (ARM ARM D5.10.1).
    // The DSB makes the store visible to the table walker and the ISB
    // orders it before the first ECAM access; every CPU shares the table.
    unsafe {
        let slot = table.add(index);
        if core::ptr::read_volatile(slot) & 1 == 0 {
            core::ptr::write_volatile(slot, entry);
        }
        core::arch::asm!("dsb ishst", "isb", options(nostack));
    }
    ECAM.store(base, Ordering::Release);
    ECAM_SIZE.store(size, Ordering::Release);
    Ok(())
}

fn cfg_addr(b: Bdf, off: u16) -> Option<usize> {
    let base = ECAM.load(Ordering::Acquire);
    let o = (u64::from(b.0) << 12) | u64::from(off & 0xfff);
    (base != 0 && o < ECAM_SIZE.load(Ordering::Acquire)).then_some((base + o) as usize)
}

/// Reads a 32-bit configuration register.
pub fn read32(b: Bdf, off: u16) -> u32 {
    match cfg_addr(b, off & !3) {
        // SAFETY: inside the ECAM window mapped as device memory by
        // `map_ecam`; configuration reads have no side effects.
        Some(a) => unsafe { core::ptr::read_volatile(a as *const u32) },
        None => u32::MAX,
    }
}

/// Writes a 32-bit configuration register.
pub fn write32(b: Bdf, off: u16, v: u32) {
    if let Some(a) = cfg_addr(b, off & !3) {
        // SAFETY: as in `read32`; only this kernel configures PCI.
        unsafe { core::ptr::write_volatile(a as *mut u32, v) }
    }
}

/// Reads a 16-bit configuration register.
pub fn read16(b: Bdf, off: u16) -> u16 {
    (read32(b, off & !3) >> (8 * (off & 2))) as u16
}

/// Writes a 16-bit configuration register.
pub fn write16(b: Bdf, off: u16, v: u16) {
    if let Some(a) = cfg_addr(b, off & !1) {
        // SAFETY: as in `write32`; ECAM allows 16-bit accesses.
        unsafe { core::ptr::write_volatile(a as *mut u16, v) }
    }
}

fn find_capability(b: Bdf, id: u8) -> Option<u16> {
    if read16(b, cfg::STATUS) & cfg::STATUS_CAP_LIST == 0 {
        return None;
    }
    let mut p = read32(b, cfg::CAP_PTR) as u8 & !3;
    for _ in 0..48 {
        if p < 0x40 {
            return None;
        }
        let hdr = read32(b, u16::from(p));
        if hdr as u8 == id {
            return Some(u16::from(p));
        }
        p = (hdr >> 8) as u8 & !3;
    }
    None
}

/// The `edu` function, set up.
#[derive(Clone, Copy, Debug)]
pub struct EduFunction {
    /// Where it is.
    pub bdf: Bdf,
    /// Its BAR0 (1 MiB of registers).
    pub bar0: u64,
    /// Its MSI capability.
    pub msi_cap: u16,
}

/// Maps ECAM from the device tree, finds the first `edu` (1234:11e8) on bus
/// 0, assigns BAR0 at the start of the 32-bit memory window and enables
/// memory decoding and bus mastering (INTx off: it uses MSI).
pub fn setup_edu(dt: &DtInfo) -> Result<EduFunction, &'static str> {
    let (ecam, size) = dt.pcie_ecam.ok_or("pci: no pcie node in the device tree")?;
    let (pci_base, cpu_base, win) = dt.pcie_mem32.ok_or("pci: no 32-bit memory window")?;
    map_ecam(ecam, size)?;
    let bdf = (0..32)
        .map(|d| Bdf::new(0, d, 0))
        .find(|&b| read32(b, cfg::VENDOR) == 0x11e8_1234)
        .ok_or("pci: no edu device (-device edu)")?;
    // BAR sizing (PCI 3.0, 6.2.5.1): all ones, read back the size mask.
    write32(bdf, cfg::BAR0, u32::MAX);
    let mask = read32(bdf, cfg::BAR0) & !0xf;
    let bar_size = u64::from(!mask) + 1;
    if mask == 0 || bar_size > win {
        return Err("pci: edu BAR0 does not fit the window");
    }
    // The window's first naturally aligned slot.
    let pci_addr = pci_base.div_ceil(bar_size) * bar_size;
    write32(bdf, cfg::BAR0, pci_addr as u32);
    let cmd = read16(bdf, cfg::COMMAND);
    write16(
        bdf,
        cfg::COMMAND,
        cmd | cfg::CMD_MEMORY | cfg::CMD_BUS_MASTER | cfg::CMD_INTX_DISABLE,
    );
    let msi_cap = find_capability(bdf, cfg::CAP_MSI).ok_or("pci: edu has no MSI capability")?;
    Ok(EduFunction {
        bdf,
        bar0: cpu_base + (pci_addr - pci_base),
        msi_cap,
    })
}

/// The MSI capability of one function (one vector), as the MSI device
/// level of the irq hierarchy programs it.
pub struct PciMsi {
    /// The function.
    pub bdf: Bdf,
    /// Offset of its MSI capability.
    pub cap: u16,
}

impl arch_arm64::msi::MsiDevice for PciMsi {
    fn write_msg(&self, _index: u32, msg: MsiMsg) {
        let (b, cap) = (self.bdf, self.cap);
        let ctrl = read16(b, cap + 2);
        let is64 = ctrl & (1 << 7) != 0;
        // Disabled while rewritten, so no half-written message is used.
        write16(b, cap + 2, ctrl & !1);
        write32(b, cap + 4, msg.address_lo);
        if is64 {
            write32(b, cap + 8, msg.address_hi);
            write16(b, cap + 12, msg.data as u16);
        } else {
            write16(b, cap + 8, msg.data as u16);
        }
        // One vector (Multiple Message Enable = 0), MSI enable.
        write16(b, cap + 2, (ctrl & !(0b111 << 4)) | 1);
    }

    fn set_masked(&self, _index: u32, _masked: bool) -> bool {
        // edu's MSI capability has no per-vector mask bit: the ITS / GIC
        // level below masks.
        false
    }
}
