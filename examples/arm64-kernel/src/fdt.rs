//! A minimal flattened-device-tree reader (Devicetree Specification v0.4,
//! chapter 5): the kernel reads only what tells it whether it runs as a Xen
//! guest and where Xen put the guest's devices.
//!
//! QEMU (bare `virt`) and Xen both enter the kernel with `x0` = the
//! guest-physical address of the blob; the boot code stores it in
//! [`BOOT_DTB`]. RAM is identity-mapped, so the address is also the
//! pointer.

use core::sync::atomic::{AtomicU64, Ordering};

/// The device tree address the kernel was entered with (`x0`), stored by
/// `_start` after `.bss` is zeroed.
#[unsafe(no_mangle)]
pub static BOOT_DTB: AtomicU64 = AtomicU64::new(0);

const FDT_MAGIC: u32 = 0xd00d_feed;
/// QEMU `virt`'s RAM base.
const RAM_START: usize = 0x4000_0000;
const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;

/// Xen's fixed guest GIC distributor base (`GUEST_GICD_BASE`, public
/// `arch-arm.h`); QEMU `virt`'s is 0x0800_0000.
const XEN_GUEST_GICD_BASE: u64 = 0x0300_1000;
/// Xen's fixed event-channel PPI for guests (`GUEST_EVTCHN_PPI`), used when
/// the tree has no `/hypervisor` node (a dom0less domU without
/// `xen,enhanced`).
pub const XEN_GUEST_EVTCHN_PPI: u32 = 31;

/// How the kernel knows it runs under Xen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XenEvidence {
    /// `/hypervisor` with `compatible = "xen,xen..."`.
    HypervisorNode,
    /// The root's `compatible` names a Xen VM (`xen,xenvm`).
    RootCompatible,
    /// No `/hypervisor` node (Xen adds it to a dom0less domU only with
    /// `xen,enhanced`), but the GIC sits at Xen's fixed guest address.
    GuestGicAddress,
}

/// What the kernel reads from the tree.
#[derive(Clone, Copy, Debug, Default)]
pub struct DtInfo {
    /// A valid blob was found.
    pub valid: bool,
    /// `/hypervisor` is `xen,xen*`.
    pub hypervisor_node: bool,
    /// The root's `compatible` contains `xen,xenvm`.
    pub root_xenvm: bool,
    /// `/hypervisor/interrupts` as an INTID (PPI n = 16 + n).
    pub hypervisor_intid: Option<u32>,
    /// The interrupt controller's first two `reg` ranges (distributor and
    /// redistributor / CPU interface).
    pub gic_regs: [(u64, u64); 2],
    /// `/cpus/cpu@*` nodes.
    pub cpus: u32,
    /// `/chosen/bootargs` (Xen passes a dom0less module's `bootargs`).
    pub bootargs: &'static str,
    /// The `sbsa-uart@...` node's base (Xen's vpl011).
    pub sbsa_uart: Option<u64>,
    /// Its interrupt as an INTID (an SPI: 32 + n).
    pub sbsa_uart_intid: Option<u32>,
    /// A PL031 RTC (`pl031@...`, at the root or, as Xen places a device
    /// passed through from a partial tree, one level down): base.
    pub pl031: Option<u64>,
    /// Its interrupt as an INTID (an SPI: 32 + n).
    pub pl031_intid: Option<u32>,
    /// The PCIe host's ECAM window (`pcie@...` `reg`: base, size).
    pub pcie_ecam: Option<(u64, u64)>,
    /// Its first 32-bit memory window (`ranges` entry with space code
    /// 0b10): (PCI address, CPU address, size).
    pub pcie_mem32: Option<(u64, u64, u64)>,
    /// The GICv3 ITS (`arm,gic-v3-its` under the GIC node): base.
    pub gic_its: Option<u64>,
    /// The GICv2m MSI frame (`arm,gic-v2m-frame` under the GIC node): base.
    pub gic_v2m: Option<u64>,
}

impl DtInfo {
    /// Whether this is a Xen guest, and how the kernel can tell.
    pub fn xen(&self) -> Option<XenEvidence> {
        if self.hypervisor_node {
            Some(XenEvidence::HypervisorNode)
        } else if self.root_xenvm {
            Some(XenEvidence::RootCompatible)
        } else if self.gic_regs[0].0 == XEN_GUEST_GICD_BASE {
            Some(XenEvidence::GuestGicAddress)
        } else {
            None
        }
    }

    /// The event-channel upcall INTID: `/hypervisor`'s, else Xen's fixed
    /// guest PPI.
    pub fn evtchn_intid(&self) -> u32 {
        self.hypervisor_intid.unwrap_or(XEN_GUEST_EVTCHN_PPI)
    }
}

struct Blob {
    base: usize,
    size: usize,
}

impl Blob {
    fn be32(&self, off: usize) -> Option<u32> {
        if off + 4 > self.size {
            return None;
        }
        // SAFETY: inside the blob (checked against its total size), which
        // lives in identity-mapped RAM nobody writes while the kernel runs.
        Some(u32::from_be(unsafe {
            core::ptr::read_unaligned((self.base + off) as *const u32)
        }))
    }

    fn bytes(&self, off: usize, len: usize) -> &'static [u8] {
        if off + len > self.size {
            return &[];
        }
        // SAFETY: as in `be32`.
        unsafe { core::slice::from_raw_parts((self.base + off) as *const u8, len) }
    }

    fn cstr(&self, off: usize) -> &'static str {
        let mut n = 0;
        while off + n < self.size && self.bytes(off + n, 1)[0] != 0 {
            n += 1;
        }
        core::str::from_utf8(self.bytes(off, n)).unwrap_or("")
    }
}

fn cells(v: &[u8], i: usize) -> u64 {
    v.get(i * 4..i * 4 + 4).map_or(0, |c| {
        u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    })
}

/// Reads the tree at [`BOOT_DTB`] (an invalid or absent blob gives
/// `valid: false`).
pub fn read() -> DtInfo {
    let mut info = DtInfo::default();
    let mut base = BOOT_DTB.load(Ordering::Relaxed) as usize;
    if base == 0 {
        // QEMU boots an ELF kernel with x0 = 0 but still places the tree
        // at the start of RAM (hw/arm/boot.c: `dtb_start` = the loader
        // start when the image leaves room there, as ours does at +512K).
        base = RAM_START;
    }
    // RAM is 1..2 GiB (identity-mapped Normal memory); refuse anything else.
    if !(0x4000_0000..0x8000_0000).contains(&base) {
        return info;
    }
    let hdr = Blob { base, size: 40 };
    if hdr.be32(0) != Some(FDT_MAGIC) {
        return info;
    }
    let size = hdr.be32(4).unwrap_or(0) as usize;
    let blob = Blob { base, size };
    let (Some(off_struct), Some(off_strings)) = (blob.be32(8), blob.be32(12)) else {
        return info;
    };
    info.valid = true;
    let mut p = off_struct as usize;
    let mut depth = 0usize;
    // The name of the node at depth 1 (below the root) on the current path.
    let mut top = "";
    // The name of the node at depth 2 (a child of `top`).
    let mut sub = "";
    while let Some(tok) = blob.be32(p) {
        p += 4;
        match tok {
            FDT_BEGIN_NODE => {
                let name = blob.cstr(p);
                p += (name.len() + 1 + 3) & !3;
                depth += 1;
                match depth {
                    2 => top = name,
                    3 => {
                        sub = name;
                        if top == "cpus" && name.starts_with("cpu@") {
                            info.cpus += 1;
                        }
                    }
                    _ => {}
                }
            }
            FDT_END_NODE => depth = depth.saturating_sub(1),
            FDT_PROP => {
                let (Some(len), Some(nameoff)) = (blob.be32(p), blob.be32(p + 4)) else {
                    break;
                };
                let name = blob.cstr(off_strings as usize + nameoff as usize);
                let v = blob.bytes(p + 8, len as usize);
                p += 8 + ((len as usize + 3) & !3);
                let text = core::str::from_utf8(v).unwrap_or("");
                match (depth, name) {
                    (1, "compatible") => info.root_xenvm = text.contains("xen,xenvm"),
                    (2, "bootargs") if top == "chosen" => {
                        info.bootargs = text.trim_end_matches('\0');
                    }
                    (2, "compatible") if top == "hypervisor" => {
                        info.hypervisor_node = text.starts_with("xen,xen");
                    }
                    (2, "interrupts") if top == "hypervisor" && v.len() >= 12 => {
                        let (kind, n) = (cells(v, 0), cells(v, 1));
                        info.hypervisor_intid = Some(n as u32 + if kind == 1 { 16 } else { 32 });
                    }
                    (2, "reg")
                        if top.starts_with("interrupt-controller") || top.starts_with("intc") =>
                    {
                        info.gic_regs = [
                            (
                                (cells(v, 0) << 32) | cells(v, 1),
                                (cells(v, 2) << 32) | cells(v, 3),
                            ),
                            (
                                (cells(v, 4) << 32) | cells(v, 5),
                                (cells(v, 6) << 32) | cells(v, 7),
                            ),
                        ];
                    }
                    (2, "interrupts") if top.starts_with("sbsa-uart") && v.len() >= 12 => {
                        let (kind, n) = (cells(v, 0), cells(v, 1));
                        info.sbsa_uart_intid = Some(n as u32 + if kind == 1 { 16 } else { 32 });
                    }
                    (2, "reg") if top.starts_with("pcie@") && v.len() >= 16 => {
                        info.pcie_ecam = Some((
                            (cells(v, 0) << 32) | cells(v, 1),
                            (cells(v, 2) << 32) | cells(v, 3),
                        ));
                    }
                    (2, "ranges") if top.starts_with("pcie@") => {
                        // Entries of 7 cells: phys.hi phys.mid phys.lo,
                        // CPU address (2), size (2) (#address-cells 3,
                        // parent 2, #size-cells 2: QEMU virt).
                        for e in 0..v.len() / 28 {
                            let hi = cells(v, 7 * e);
                            if (hi >> 24) & 3 == 2 && info.pcie_mem32.is_none() {
                                let pci = (cells(v, 7 * e + 1) << 32) | cells(v, 7 * e + 2);
                                let cpu = (cells(v, 7 * e + 3) << 32) | cells(v, 7 * e + 4);
                                let size = (cells(v, 7 * e + 5) << 32) | cells(v, 7 * e + 6);
                                info.pcie_mem32 = Some((pci, cpu, size));
                            }
                        }
                    }
                    (3, "reg")
                        if (top.starts_with("intc") || top.starts_with("interrupt-controller"))
                            && (sub.starts_with("its@") || sub.starts_with("v2m@")) =>
                    {
                        let base = (cells(v, 0) << 32) | cells(v, 1);
                        if sub.starts_with("its@") {
                            info.gic_its = Some(base);
                        } else {
                            info.gic_v2m = Some(base);
                        }
                    }
                    (2, "reg") if top.starts_with("pl031@") => {
                        info.pl031 = Some((cells(v, 0) << 32) | cells(v, 1));
                    }
                    (3, "reg") if sub.starts_with("pl031@") => {
                        info.pl031 = Some((cells(v, 0) << 32) | cells(v, 1));
                    }
                    (2 | 3, "interrupts")
                        if v.len() >= 12
                            && (if depth == 2 { top } else { sub }).starts_with("pl031@") =>
                    {
                        let (kind, n) = (cells(v, 0), cells(v, 1));
                        info.pl031_intid = Some(n as u32 + if kind == 1 { 16 } else { 32 });
                    }
                    (2, "reg") if top.starts_with("sbsa-uart") => {
                        info.sbsa_uart = Some((cells(v, 0) << 32) | cells(v, 1));
                    }
                    _ => {}
                }
            }
            FDT_NOP => {}
            _ => break,
        }
    }
    info
}
