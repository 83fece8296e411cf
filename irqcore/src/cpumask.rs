//! Fixed-capacity CPU bitmaps.

use crate::ids::CpuId;
use core::fmt;

/// Maximum number of CPUs a [`CpuMask`] can describe.
pub const MAX_CPUS: usize = 256;
const WORDS: usize = MAX_CPUS / 64;

/// A set of CPUs, stored inline as a bitmap of [`MAX_CPUS`] bits (32 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CpuMask {
    bits: [u64; WORDS],
}

impl CpuMask {
    /// The empty mask.
    pub const fn new() -> Self {
        Self { bits: [0; WORDS] }
    }

    /// A mask holding exactly `cpu` (empty if `cpu` is out of range).
    pub const fn of(cpu: CpuId) -> Self {
        let mut m = Self::new();
        let i = cpu.index();
        if i < MAX_CPUS {
            m.bits[i / 64] = 1 << (i % 64);
        }
        m
    }

    /// A mask holding CPUs `0..n` (clamped to [`MAX_CPUS`]).
    pub const fn first_n(n: usize) -> Self {
        let mut m = Self::new();
        let mut i = 0;
        while i < n && i < MAX_CPUS {
            m.bits[i / 64] |= 1 << (i % 64);
            i += 1;
        }
        m
    }

    /// The mask of CPUs `0..64` whose bits are `w`.
    #[inline]
    pub(crate) const fn from_word0(w: u64) -> Self {
        let mut m = Self::new();
        m.bits[0] = w;
        m
    }

    /// CPUs `0..64` of the mask, as bits.
    #[inline]
    pub(crate) const fn word0(&self) -> u64 {
        self.bits[0]
    }

    /// A mask from the CPUs yielded by `cpus` (out-of-range ids are ignored).
    pub fn from_cpus(cpus: impl IntoIterator<Item = CpuId>) -> Self {
        let mut m = Self::new();
        for c in cpus {
            m.set(c);
        }
        m
    }

    /// Adds `cpu`; returns false (and changes nothing) if it is out of range.
    pub fn set(&mut self, cpu: CpuId) -> bool {
        let i = cpu.index();
        if i >= MAX_CPUS {
            return false;
        }
        self.bits[i / 64] |= 1 << (i % 64);
        true
    }

    /// Removes `cpu`.
    pub fn clear(&mut self, cpu: CpuId) {
        let i = cpu.index();
        if i < MAX_CPUS {
            self.bits[i / 64] &= !(1 << (i % 64));
        }
    }

    /// Whether `cpu` is in the mask.
    pub const fn contains(&self, cpu: CpuId) -> bool {
        let i = cpu.index();
        i < MAX_CPUS && self.bits[i / 64] & (1 << (i % 64)) != 0
    }

    /// Whether the mask is empty.
    pub fn is_empty(&self) -> bool {
        self.bits.iter().all(|w| *w == 0)
    }

    /// Number of CPUs in the mask.
    pub fn weight(&self) -> usize {
        self.bits.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Lowest-numbered CPU in the mask.
    pub fn first(&self) -> Option<CpuId> {
        self.iter().next()
    }

    /// Intersection.
    pub fn and(&self, other: &CpuMask) -> CpuMask {
        let mut m = *self;
        for (a, b) in m.bits.iter_mut().zip(other.bits.iter()) {
            *a &= *b;
        }
        m
    }

    /// Union.
    pub fn or(&self, other: &CpuMask) -> CpuMask {
        let mut m = *self;
        for (a, b) in m.bits.iter_mut().zip(other.bits.iter()) {
            *a |= *b;
        }
        m
    }

    /// CPUs in `self` but not in `other`.
    pub fn and_not(&self, other: &CpuMask) -> CpuMask {
        let mut m = *self;
        for (a, b) in m.bits.iter_mut().zip(other.bits.iter()) {
            *a &= !*b;
        }
        m
    }

    /// Whether the two masks share a CPU.
    pub fn intersects(&self, other: &CpuMask) -> bool {
        self.bits
            .iter()
            .zip(other.bits.iter())
            .any(|(a, b)| a & b != 0)
    }

    /// Whether every CPU of `self` is in `other`.
    pub fn is_subset_of(&self, other: &CpuMask) -> bool {
        self.bits
            .iter()
            .zip(other.bits.iter())
            .all(|(a, b)| a & !b == 0)
    }

    /// Iterates the CPUs in ascending order.
    pub fn iter(&self) -> CpuMaskIter {
        CpuMaskIter {
            mask: *self,
            word: 0,
        }
    }

    /// The raw bitmap words (bit `n % 64` of word `n / 64` is CPU `n`).
    pub const fn words(&self) -> &[u64; WORDS] {
        &self.bits
    }
}

/// Iterator over the CPUs of a [`CpuMask`].
pub struct CpuMaskIter {
    mask: CpuMask,
    word: usize,
}

impl Iterator for CpuMaskIter {
    type Item = CpuId;
    fn next(&mut self) -> Option<CpuId> {
        while self.word < WORDS {
            let w = self.mask.bits[self.word];
            if w != 0 {
                let bit = w.trailing_zeros() as usize;
                self.mask.bits[self.word] &= w - 1;
                // Bits only exist below MAX_CPUS, so this is always `Some`.
                return CpuId::from_index(self.word * 64 + bit);
            }
            self.word += 1;
        }
        None
    }
}

impl FromIterator<CpuId> for CpuMask {
    fn from_iter<I: IntoIterator<Item = CpuId>>(iter: I) -> Self {
        Self::from_cpus(iter)
    }
}

impl fmt::Debug for CpuMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter().map(CpuId::get)).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_ops_and_iteration() {
        let mut m = CpuMask::new();
        assert!(m.set(CpuId::BOOT) && m.set(CpuId::of::<65>()) && m.set(CpuId::of::<255>()));
        // 256 cannot be a CpuId at all, so no mask can be asked to hold it.
        assert_eq!(CpuId::new(256), None);
        assert_eq!(
            m.iter().map(CpuId::get).collect::<std::vec::Vec<_>>(),
            [0, 65, 255]
        );
        assert_eq!(m.weight(), 3);
        let n = CpuMask::first_n(66);
        assert_eq!(m.and(&n).weight(), 2);
        assert_eq!(m.and_not(&n).first(), Some(CpuId::of::<255>()));
        assert!(CpuMask::of(CpuId::of::<3>()).is_subset_of(&n));
        assert!(!m.is_subset_of(&n));
    }
}
