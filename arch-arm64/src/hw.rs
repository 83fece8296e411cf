//! Real register access: volatile MMIO (any architecture), identity-mapped
//! table memory for the LPI/ITS tables, and the GICv3 system registers
//! through `asm!` (aarch64 only).
//!
//! This is the only module of the crate with `unsafe` code.

use crate::regs::Mmio;

/// A device-memory register frame accessed with volatile loads and stores.
#[derive(Debug)]
pub struct VolatileMmio {
    base: usize,
    size: usize,
}

impl VolatileMmio {
    /// A frame of `size` bytes at virtual address `base`.
    ///
    /// # Safety
    ///
    /// `base..base + size` must be mapped as device memory (nGnRE or
    /// stricter) for as long as the value lives, hold the GIC frame the
    /// driver is given it as, and not be written by anyone else in a way that
    /// races with the driver (the GIC drivers serialise read-modify-write
    /// sequences themselves). `base` must be 8-byte aligned.
    pub const unsafe fn new(base: usize, size: usize) -> Self {
        Self { base, size }
    }

    fn addr(&self, offset: usize, width: usize) -> Option<usize> {
        // Out-of-frame or misaligned offsets are driver bugs; refusing them
        // (reads return all-ones like an absent device) keeps `unsafe`
        // below sound even then.
        if offset.checked_add(width)? > self.size || !offset.is_multiple_of(width) {
            return None;
        }
        self.base.checked_add(offset)
    }
}

impl Mmio for VolatileMmio {
    fn size(&self) -> usize {
        self.size
    }

    fn read32(&self, offset: usize) -> u32 {
        match self.addr(offset, 4) {
            // SAFETY: `addr` checked that the 4 aligned bytes lie inside the
            // frame that `new`'s contract says is mapped device memory; GIC
            // registers are 32-bit accessible (IHI 0069H 12.1.3, IHI 0048B 4.1.4).
            Some(a) => unsafe { core::ptr::read_volatile(a as *const u32) },
            None => u32::MAX,
        }
    }

    fn write32(&self, offset: usize, value: u32) {
        if let Some(a) = self.addr(offset, 4) {
            // SAFETY: as in `read32`.
            unsafe { core::ptr::write_volatile(a as *mut u32, value) }
        }
    }

    fn read64(&self, offset: usize) -> u64 {
        match self.addr(offset, 8) {
            // SAFETY: as in `read32`; the GICv3 registers read this way
            // (GICR_TYPER, GICD_IROUTER<n>) allow 64-bit single-copy atomic
            // access (IHI 0069H 12.1.3).
            Some(a) => unsafe { core::ptr::read_volatile(a as *const u64) },
            None => u64::MAX,
        }
    }

    fn write64(&self, offset: usize, value: u64) {
        if let Some(a) = self.addr(offset, 8) {
            // SAFETY: as in `read64`.
            unsafe { core::ptr::write_volatile(a as *mut u64, value) }
        }
    }
}

/// A block of identity-mapped (virtual = physical) normal memory handed to
/// the GIC as a table ([`crate::dma::DmaRegion`]). It does not own the
/// memory: the kernel's allocator wraps it and frees the block on drop.
#[derive(Debug)]
pub struct IdentityRegion {
    base: usize,
    len: usize,
}

impl IdentityRegion {
    /// The `len` bytes at `base`, which is both the virtual and the physical
    /// address.
    ///
    /// # Safety
    ///
    /// `base..base + len` must be normal memory, mapped at the same virtual
    /// and physical address, owned by the caller for as long as the value
    /// (and the GIC's use of the table) lives, and accessed by nothing else
    /// but the GIC. `base` must be 8-byte aligned.
    pub const unsafe fn new(base: usize, len: usize) -> Self {
        Self { base, len }
    }

    fn addr(&self, offset: usize, width: usize) -> Option<usize> {
        if offset.checked_add(width)? > self.len || !offset.is_multiple_of(width) {
            return None;
        }
        self.base.checked_add(offset)
    }
}

impl crate::dma::DmaRegion for IdentityRegion {
    fn phys(&self) -> u64 {
        self.base as u64
    }

    fn len(&self) -> usize {
        self.len
    }

    fn read_u8(&self, offset: usize) -> u8 {
        match self.addr(offset, 1) {
            // SAFETY: inside the region `new`'s contract gives us; volatile
            // because the GIC writes it too (pending tables, IHI 0069H 5.1.1).
            Some(a) => unsafe { core::ptr::read_volatile(a as *const u8) },
            None => 0,
        }
    }

    fn write_u8(&self, offset: usize, value: u8) {
        if let Some(a) = self.addr(offset, 1) {
            // SAFETY: as in `read_u8`.
            unsafe { core::ptr::write_volatile(a as *mut u8, value) }
        }
    }

    fn read_u64(&self, offset: usize) -> u64 {
        match self.addr(offset, 8) {
            // SAFETY: as in `read_u8`; `addr` checked the 8-byte alignment.
            Some(a) => u64::from_le(unsafe { core::ptr::read_volatile(a as *const u64) }),
            None => 0,
        }
    }

    fn write_u64(&self, offset: usize, value: u64) {
        if let Some(a) = self.addr(offset, 8) {
            // SAFETY: as in `read_u64`.
            unsafe { core::ptr::write_volatile(a as *mut u64, value.to_le()) }
        }
    }

    fn publish(&self, offset: usize, len: usize) {
        #[cfg(target_arch = "aarch64")]
        {
            // Clean every data cache line of the range to the point of
            // coherency, then a DSB so the clean completes before the MMIO
            // write that tells the GIC to look (ARM ARM D7.5.9; IHI 0069H
            // 5.1.1 for a GIC whose table accesses are non-shareable or
            // non-cacheable). The line size is CTR_EL0.DminLine (bits
            // 19:16, log2 of the number of words).
            let ctr: u64;
            // SAFETY: reading CTR_EL0 (cache type, read-only) at EL1.
            unsafe { core::arch::asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack)) };
            let line_size = 4usize << ((ctr >> 16) & 0xf);
            let start = self.base.saturating_add(offset.min(self.len)) & !(line_size - 1);
            let end = self
                .base
                .saturating_add(offset.saturating_add(len).min(self.len));
            let mut line = start;
            while line < end {
                // SAFETY: a cache maintenance instruction on an address of
                // the region (mapped, per `new`); it changes no data.
                unsafe { core::arch::asm!("dc cvac, {}", in(reg) line, options(nostack)) };
                line += line_size;
            }
            // SAFETY: a barrier only.
            unsafe { core::arch::asm!("dsb ish", options(nostack)) };
        }
        #[cfg(not(target_arch = "aarch64"))]
        {
            let _ = (offset, len);
            core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        }
    }
}

#[cfg(target_arch = "aarch64")]
pub use sysreg::SysRegAccess;

#[cfg(target_arch = "aarch64")]
mod sysreg {
    use crate::regs::{GicSysRegs, IccReg};
    use core::arch::asm;

    /// The calling CPU's GICv3 CPU interface through `ICC_*_EL1`.
    ///
    /// Register names are spelled as `S3_<op1>_C<n>_C<m>_<op2>` so that the
    /// assembler needs no GIC extension flag; encodings from IHI 0069H
    /// 12.2 ("AArch64 System register descriptions").
    #[derive(Clone, Copy, Debug, Default)]
    pub struct SysRegAccess;

    macro_rules! rd {
        ($name:literal) => {{
            let v: u64;
            // SAFETY: reading a GIC CPU interface register at EL1 has no
            // side effect on memory; the caller (the driver) enabled the
            // system-register interface (ICC_SRE_EL1.SRE, IHI 0069H
            // 12.2.24) before using any other ICC register. IAR1 reads
            // acknowledge an interrupt, which is the intended effect.
            unsafe { asm!(concat!("mrs {}, ", $name), out(reg) v, options(nostack)) };
            v
        }};
    }

    macro_rules! wr {
        ($name:literal, $v:expr) => {{
            let v: u64 = $v;
            // SAFETY: writing a GIC CPU interface register at EL1 affects
            // only interrupt delivery to this PE; the ISB makes the change
            // visible to following instructions as IHI 0069H 12.1.6
            // ("Synchronization of changes to System registers") requires.
            unsafe { asm!(concat!("msr ", $name, ", {}"), "isb", in(reg) v, options(nostack)) };
        }};
    }

    impl GicSysRegs for SysRegAccess {
        fn read(&self, reg: IccReg) -> u64 {
            match reg {
                IccReg::Iar1 => {
                    let v = rd!("S3_0_C12_C12_0");
                    // SAFETY: a barrier only; it orders the acknowledge
                    // before the handler's device accesses (the GIC
                    // guarantees ordering only for accesses after a DSB,
                    // IHI 0069H 12.1.6).
                    unsafe { asm!("dsb sy", options(nostack)) };
                    v
                }
                IccReg::Pmr => rd!("S3_0_C4_C6_0"),
                IccReg::Rpr => rd!("S3_0_C12_C11_3"),
                IccReg::Bpr1 => rd!("S3_0_C12_C12_3"),
                IccReg::Ctlr => rd!("S3_0_C12_C12_4"),
                IccReg::Igrpen1 => rd!("S3_0_C12_C12_7"),
                IccReg::Sre => rd!("S3_0_C12_C12_5"),
                // Write-only registers read as zero here rather than
                // trapping (reading them is UNDEFINED).
                IccReg::Eoir1 | IccReg::Dir | IccReg::Sgi1r => 0,
            }
        }

        fn write(&self, reg: IccReg, value: u64) {
            match reg {
                IccReg::Eoir1 => wr!("S3_0_C12_C12_1", value),
                IccReg::Dir => wr!("S3_0_C12_C11_1", value),
                IccReg::Pmr => wr!("S3_0_C4_C6_0", value),
                IccReg::Bpr1 => wr!("S3_0_C12_C12_3", value),
                IccReg::Ctlr => wr!("S3_0_C12_C12_4", value),
                IccReg::Igrpen1 => wr!("S3_0_C12_C12_7", value),
                IccReg::Sre => wr!("S3_0_C12_C12_5", value),
                IccReg::Sgi1r => {
                    // SAFETY: a barrier only: memory written before the IPI
                    // must be visible to its target (IHI 0069H 12.1.6:
                    // SGI generation is not ordered by itself).
                    unsafe { asm!("dsb ishst", options(nostack)) };
                    wr!("S3_0_C12_C11_5", value)
                }
                // Read-only registers: writes are ignored.
                IccReg::Iar1 | IccReg::Rpr => {}
            }
        }

        fn mpidr(&self) -> u64 {
            let v: u64;
            // SAFETY: MPIDR_EL1 is a read-only identification register.
            unsafe { asm!("mrs {}, mpidr_el1", out(reg) v, options(nomem, nostack)) };
            v
        }
    }
}
