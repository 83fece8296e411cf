//! Memory the GIC reads and writes by itself: the LPI property and pending
//! tables, the ITS command queue, device, collection and ITT tables.
//!
//! The GIC finds these tables by physical address, so they must be
//! physically contiguous and aligned (IHI 0069H 5.1.1: pending tables on
//! 64 KiB; the command queue and ITS tables on 4 KiB or the table's page
//! size; ITTs on 256 bytes). The kernel owns physical memory, so it provides
//! it through [`DmaAllocator`]: an identity-mapped heap or a static pool on
//! bare metal (see `crate::hw::IdentityRegion`), the simulated physical
//! memory of the model in host tests.
//!
//! The drivers check what they are given ([`check_region`]): a region
//! smaller than asked for or not aligned is a typed [`DmaError`], never
//! handed to the GIC.

use alloc::boxed::Box;

/// Physically contiguous memory shared with the GIC.
///
/// Offsets are bytes from the start of the region; accesses outside it are
/// ignored (reads give zero), so a driver bug cannot corrupt other memory.
pub trait DmaRegion: Send + Sync {
    /// Physical address of the first byte (what the GIC is told).
    fn phys(&self) -> u64;
    /// Length in bytes.
    fn len(&self) -> usize;
    /// Whether the region is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Reads the byte at `offset`.
    fn read_u8(&self, offset: usize) -> u8;
    /// Writes the byte at `offset`.
    fn write_u8(&self, offset: usize, value: u8);
    /// Reads the little-endian doubleword at `offset` (8-byte aligned).
    fn read_u64(&self, offset: usize) -> u64;
    /// Writes the little-endian doubleword at `offset` (8-byte aligned).
    fn write_u64(&self, offset: usize, value: u64);
    /// Makes the CPU's writes to `offset..offset + len` visible to the GIC
    /// before any later register write: a clean to the point of coherency
    /// when the GIC does not snoop the CPU's caches, then a barrier
    /// (IHI 0069H 5.1.1, "the ITS and Redistributors access memory as
    /// configured by the Shareability and Cacheability fields").
    fn publish(&self, offset: usize, len: usize);
}

/// Why memory for a GIC table could not be had or used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaError {
    /// The allocator has no such block.
    OutOfMemory {
        /// Bytes asked for.
        size: usize,
        /// Alignment asked for.
        align: usize,
    },
    /// The region is smaller than the table needs.
    TooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes given.
        got: usize,
    },
    /// The region's physical address is not aligned as the table needs.
    Misaligned {
        /// Its physical address.
        phys: u64,
        /// The alignment needed.
        align: usize,
    },
    /// The region lies beyond the 52-bit physical addresses the GIC can name.
    AddressTooHigh(u64),
}

/// Provides zeroed, physically contiguous memory for GIC tables.
pub trait DmaAllocator: Send + Sync {
    /// A zeroed region of at least `size` bytes whose physical address is a
    /// multiple of `align` (a power of two). Dropping the region gives the
    /// memory back; the drivers drop a region only once the GIC no longer
    /// uses it.
    fn alloc_zeroed(&self, size: usize, align: usize) -> Result<Box<dyn DmaRegion>, DmaError>;
}

/// Allocates `size` bytes aligned on `align` and checks what came back.
pub fn alloc_checked(
    alloc: &dyn DmaAllocator,
    size: usize,
    align: usize,
) -> Result<Box<dyn DmaRegion>, DmaError> {
    let r = alloc.alloc_zeroed(size, align)?;
    check_region(r.as_ref(), size, align)?;
    Ok(r)
}

/// Checks that `r` can hold a table of `size` bytes aligned on `align`.
pub fn check_region(r: &dyn DmaRegion, size: usize, align: usize) -> Result<(), DmaError> {
    if r.len() < size {
        return Err(DmaError::TooSmall {
            needed: size,
            got: r.len(),
        });
    }
    if align == 0 || !r.phys().is_multiple_of(align as u64) {
        return Err(DmaError::Misaligned {
            phys: r.phys(),
            align,
        });
    }
    let end = r.phys().checked_add(r.len() as u64);
    if end.is_none_or(|e| e > 1 << 52) {
        return Err(DmaError::AddressTooHigh(r.phys()));
    }
    Ok(())
}
