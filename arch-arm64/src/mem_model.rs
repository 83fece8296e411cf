//! Simulated physical memory for the GIC models (feature `model`): the
//! [`DmaAllocator`] host tests hand the LPI and ITS drivers, and the memory
//! the GIC and ITS models read the tables from, the same bytes.
//!
//! The allocator can be told to misbehave ([`Misbehave`]) so tests can show
//! that the drivers refuse memory that is too small or misaligned.

use crate::dma::{DmaAllocator, DmaError, DmaRegion};
use std::boxed::Box;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::vec;
use std::vec::Vec;

/// How the allocator misbehaves on its next allocations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Misbehave {
    /// Hands out half the size asked for.
    TooSmall,
    /// Hands out an address 8 bytes past the alignment asked for.
    Misaligned,
    /// Refuses.
    OutOfMemory,
}

#[derive(Debug, Default)]
struct Inner {
    /// Live regions by base address.
    regions: BTreeMap<u64, Vec<u8>>,
    next: u64,
    misbehave: Option<Misbehave>,
    /// Bytes still allowed; `None` = unlimited.
    budget: Option<usize>,
}

/// Simulated physical memory with an allocator.
#[derive(Clone, Debug)]
pub struct ModelMemory {
    inner: Arc<Mutex<Inner>>,
}

impl Default for ModelMemory {
    fn default() -> Self {
        Self::new()
    }
}

impl ModelMemory {
    /// Empty memory; allocations start at physical 0x4000_0000.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                next: 0x4000_0000,
                ..Inner::default()
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes every following allocation misbehave (`None`: behave again).
    pub fn set_misbehave(&self, m: Option<Misbehave>) {
        self.lock().misbehave = m;
    }

    /// Limits the bytes that may still be allocated (`None`: unlimited).
    pub fn set_budget(&self, bytes: Option<usize>) {
        self.lock().budget = bytes;
    }

    /// Number of live regions.
    pub fn live_regions(&self) -> usize {
        self.lock().regions.len()
    }

    /// Reads `buf.len()` bytes at physical `addr` (zeros where no region).
    pub fn read(&self, addr: u64, buf: &mut [u8]) {
        let g = self.lock();
        for (i, b) in buf.iter_mut().enumerate() {
            *b = byte_at(&g, addr + i as u64).unwrap_or(0);
        }
    }

    /// Writes `buf` at physical `addr`; returns false if any byte is
    /// outside every region (nothing is written then).
    pub fn write(&self, addr: u64, buf: &[u8]) -> bool {
        let mut g = self.lock();
        let inside = (0..buf.len()).all(|i| byte_at(&g, addr + i as u64).is_some());
        if !inside {
            return false;
        }
        for (i, &b) in buf.iter().enumerate() {
            if let Some(p) = byte_mut(&mut g, addr + i as u64) {
                *p = b;
            }
        }
        true
    }

    /// The byte at physical `addr`, if it is in a region.
    pub fn read_u8(&self, addr: u64) -> Option<u8> {
        byte_at(&self.lock(), addr)
    }

    /// The doubleword at physical `addr` (little-endian).
    pub fn read_u64(&self, addr: u64) -> u64 {
        let mut b = [0u8; 8];
        self.read(addr, &mut b);
        u64::from_le_bytes(b)
    }

    /// Whether `addr..addr + len` lies inside one live region.
    pub fn contains(&self, addr: u64, len: usize) -> bool {
        let g = self.lock();
        g.regions
            .range(..=addr)
            .next_back()
            .is_some_and(|(&base, v)| addr + len as u64 <= base + v.len() as u64)
    }
}

fn byte_at(g: &Inner, addr: u64) -> Option<u8> {
    let (&base, v) = g.regions.range(..=addr).next_back()?;
    v.get((addr - base) as usize).copied()
}

fn byte_mut(g: &mut Inner, addr: u64) -> Option<&mut u8> {
    let (&base, v) = g.regions.range_mut(..=addr).next_back()?;
    v.get_mut((addr - base) as usize)
}

/// A region of [`ModelMemory`]; dropping it frees it.
#[derive(Debug)]
pub struct ModelRegion {
    mem: ModelMemory,
    base: u64,
    len: usize,
}

impl Drop for ModelRegion {
    fn drop(&mut self) {
        self.mem.lock().regions.remove(&self.base);
    }
}

impl DmaRegion for ModelRegion {
    fn phys(&self) -> u64 {
        self.base
    }
    fn len(&self) -> usize {
        self.len
    }
    fn read_u8(&self, offset: usize) -> u8 {
        if offset < self.len {
            self.mem.read_u8(self.base + offset as u64).unwrap_or(0)
        } else {
            0
        }
    }
    fn write_u8(&self, offset: usize, value: u8) {
        if offset < self.len {
            self.mem.write(self.base + offset as u64, &[value]);
        }
    }
    fn read_u64(&self, offset: usize) -> u64 {
        if offset + 8 <= self.len {
            self.mem.read_u64(self.base + offset as u64)
        } else {
            0
        }
    }
    fn write_u64(&self, offset: usize, value: u64) {
        if offset + 8 <= self.len {
            self.mem
                .write(self.base + offset as u64, &value.to_le_bytes());
        }
    }
    fn publish(&self, _offset: usize, _len: usize) {
        // The models read memory directly: always coherent.
    }
}

impl DmaAllocator for ModelMemory {
    fn alloc_zeroed(&self, size: usize, align: usize) -> Result<Box<dyn DmaRegion>, DmaError> {
        let mut g = self.lock();
        let align = align.max(8) as u64;
        if g.misbehave == Some(Misbehave::OutOfMemory) || g.budget.is_some_and(|b| b < size) {
            return Err(DmaError::OutOfMemory {
                size,
                align: align as usize,
            });
        }
        if let Some(b) = g.budget.as_mut() {
            *b -= size;
        }
        let mut base = g.next.div_ceil(align) * align;
        let mut len = size.max(1);
        match g.misbehave {
            Some(Misbehave::TooSmall) => len = (size / 2).max(1),
            Some(Misbehave::Misaligned) => base += 8,
            _ => {}
        }
        g.next = base + len as u64 + 64;
        g.regions.insert(base, vec![0; len]);
        drop(g);
        Ok(Box::new(ModelRegion {
            mem: self.clone(),
            base,
            len,
        }))
    }
}
