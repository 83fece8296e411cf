//! Just enough ACPI to find the interrupt hardware: RSDP -> RSDT/XSDT ->
//! MADT ("APIC"), parsed into local APICs (CPUs), IOAPICs and ISA interrupt
//! source overrides (ACPI 6.5, sections 5.2.5 to 5.2.12).
//!
//! A small parser rather than the `acpi` crate: we need one table, read from
//! identity-mapped memory, with no AML; the parser is short enough to audit.

use arch_x86::{IsaOverride, IsaRoute, PlatformDescription};
use arrayvec::ArrayVec;

/// Most CPUs / IOAPICs / overrides the kernel records.
pub const MAX_CPUS: usize = 8;

/// One IOAPIC from the MADT.
#[derive(Clone, Copy, Debug)]
pub struct IoApicInfo {
    /// IOAPIC id.
    pub id: u8,
    /// MMIO base.
    pub addr: u32,
    /// First GSI.
    pub gsi_base: u32,
}

/// What the MADT says about the interrupt hardware.
#[derive(Clone, Debug, Default)]
pub struct Madt {
    /// LAPIC MMIO base.
    pub lapic_addr: u64,
    /// Whether 8259s are present (PCAT_COMPAT).
    pub pcat_compat: bool,
    /// APIC ids of the enabled CPUs, in MADT order (the BSP first on QEMU).
    pub cpus: ArrayVec<u32, MAX_CPUS>,
    /// IOAPICs.
    pub ioapics: ArrayVec<IoApicInfo, 4>,
    /// ISA overrides (decoded by arch-x86).
    pub overrides: ArrayVec<IsaOverride, 16>,
}

impl Madt {
    /// Where ISA irq `irq` arrives (GSI, trigger and polarity), MADT
    /// overrides applied: arch-x86's `PlatformDescription::isa_route`.
    pub fn isa_route(&self, irq: u8) -> IsaRoute {
        PlatformDescription {
            isa_overrides: self.overrides.to_vec(),
            ..PlatformDescription::default()
        }
        .isa_route(irq)
    }
}

/// Why ACPI discovery failed.
#[derive(Debug)]
pub enum AcpiError {
    /// No RSDP found.
    NoRsdp,
    /// A table had a bad checksum or signature.
    BadTable(&'static str),
    /// No MADT.
    NoMadt,
}

impl AcpiError {
    /// A short description.
    pub fn describe(&self) -> &'static str {
        match self {
            AcpiError::NoRsdp => "no RSDP",
            AcpiError::BadTable(what) => what,
            AcpiError::NoMadt => "no MADT",
        }
    }
}

fn bytes(addr: u64, len: usize) -> &'static [u8] {
    // SAFETY: ACPI tables are in RAM/ROM below 4 GiB, identity-mapped by the
    // boot page tables, and never written while the kernel runs.
    unsafe { core::slice::from_raw_parts(addr as usize as *const u8, len) }
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from(u32_at(b, o)) | (u64::from(u32_at(b, o + 4)) << 32)
}

fn checksum_ok(b: &[u8]) -> bool {
    b.iter().fold(0u8, |s, x| s.wrapping_add(*x)) == 0
}

/// Looks for "RSD PTR " on 16-byte boundaries in the BIOS area (ACPI 5.2.5.1).
fn scan_rsdp() -> Option<u64> {
    (0xE0000u64..0x100000).step_by(16).find(|&a| {
        let b = bytes(a, 20);
        &b[..8] == b"RSD PTR " && checksum_ok(b)
    })
}

/// Table header length.
const HDR: usize = 36;

fn table(addr: u64) -> Result<&'static [u8], AcpiError> {
    let len = u32_at(bytes(addr, HDR), 4) as usize;
    if !(HDR..=1 << 20).contains(&len) {
        return Err(AcpiError::BadTable("length"));
    }
    let t = bytes(addr, len);
    if !checksum_ok(t) {
        return Err(AcpiError::BadTable("checksum"));
    }
    Ok(t)
}

/// Finds and parses the MADT. `rsdp_hint` is the PVH start info's
/// `rsdp_paddr` (0 if absent).
pub fn discover(rsdp_hint: u64) -> Result<Madt, AcpiError> {
    let rsdp = if rsdp_hint != 0 {
        rsdp_hint
    } else {
        scan_rsdp().ok_or(AcpiError::NoRsdp)?
    };
    let r = bytes(rsdp, 36);
    if &r[..8] != b"RSD PTR " || !checksum_ok(&r[..20]) {
        return Err(AcpiError::NoRsdp);
    }
    let (root, entry_size) = if r[15] >= 2 && u64_at(r, 24) != 0 {
        (u64_at(r, 24), 8)
    } else {
        (u64::from(u32_at(r, 16)), 4)
    };
    let root = table(root)?;
    let madt = root[HDR..]
        .chunks_exact(entry_size)
        .map(|e| {
            if entry_size == 8 {
                u64_at(e, 0)
            } else {
                u64::from(u32_at(e, 0))
            }
        })
        .filter_map(|a| table(a).ok())
        .find(|t| &t[..4] == b"APIC")
        .ok_or(AcpiError::NoMadt)?;
    Ok(parse_madt(madt))
}

fn parse_madt(t: &[u8]) -> Madt {
    let mut m = Madt {
        lapic_addr: u64::from(u32_at(t, HDR)),
        pcat_compat: u32_at(t, HDR + 4) & 1 != 0,
        ..Madt::default()
    };
    let mut o = HDR + 8;
    while o + 2 <= t.len() {
        let (kind, len) = (t[o], t[o + 1] as usize);
        if len < 2 || o + len > t.len() {
            break;
        }
        let e = &t[o..o + len];
        match (kind, len) {
            // Processor Local APIC: enabled (bit 0) CPUs only; "online
            // capable" (bit 1) ones would be hot-added, which QEMU -smp N
            // without maxcpus does not use.
            (0, 8..) if u32_at(e, 4) & 1 != 0 => {
                let _ = m.cpus.try_push(u32::from(e[3]));
            }
            (1, 12..) => {
                let _ = m.ioapics.try_push(IoApicInfo {
                    id: e[2],
                    addr: u32_at(e, 4),
                    gsi_base: u32_at(e, 8),
                });
            }
            (2, 10..) => {
                let _ = m.overrides.try_push(IsaOverride::from_inti_flags(
                    e[3],
                    u32_at(e, 4),
                    u16_at(e, 8),
                ));
            }
            (5, 12..) => m.lapic_addr = u64_at(e, 4),
            // Processor Local x2APIC.
            (9, 16..) if u32_at(e, 8) & 1 != 0 => {
                let _ = m.cpus.try_push(u32_at(e, 4));
            }
            _ => {}
        }
        o += len;
    }
    m
}
