//! The per-CPU vector allocator ("vector matrix"), after the design of
//! Linux's `irq_matrix` (see the crate docs and `linux-genirq.md` 9.1).
//!
//! Every CPU has 256 vectors; an *allocation window* (by default
//! [`FIRST_EXTERNAL_VECTOR`]..[`FIRST_SYSTEM_VECTOR`]) is handed out to device
//! interrupts. Per CPU the matrix tracks:
//!
//! * `alloc`: vectors given to unmanaged interrupts;
//! * `managed`: vectors *reserved* for managed interrupts (one per CPU of the
//!   interrupt's mask, online or not), and `managed_alloc`, the subset in use.
//!   Reservations stay across offline/online and across free, so a managed
//!   interrupt can always be started again on any CPU of its mask;
//! * system vectors (one map shared by all CPUs), never handed out.
//!
//! The matrix has no lock of its own: the [vector domain](crate::vector)
//! calls it under its lock. All operations are O(CPUs + 256/64) and never
//! allocate after construction.

use crate::ids::Vector;
use alloc::vec::Vec;
use irqcore::{CpuId, CpuMask};

/// First vector available to devices (0-31 are exceptions).
pub const FIRST_EXTERNAL_VECTOR: Vector = Vector::FIRST;
/// First vector of the system range (timer, IPIs, error, spurious by
/// convention): the default allocation window ends here.
pub const FIRST_SYSTEM_VECTOR: Vector = Vector::of::<0xEC>();

/// The vectors of the legacy 8259 pair after the usual remap
/// ([`pic8259::DEFAULT_OFFSETS`](crate::pic8259::DEFAULT_OFFSETS)): IRQ 0-15
/// on 0x20-0x2F, including the spurious IRQ 7 (0x27) and IRQ 15 (0x2F) an
/// 8259 can deliver even while fully masked.
pub const PIC8259_VECTORS: core::ops::Range<u8> = 0x20..0x30;

/// Errors of the vector allocator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VectorError {
    /// No free vector on any eligible CPU (or no reservation left).
    Exhausted,
    /// No CPU of the mask is online.
    NoOnlineCpu,
    /// The CPU id is outside the matrix.
    BadCpu(CpuId),
    /// The vector is outside the allocation window or reserved for the
    /// system.
    BadVector(u8),
    /// The vector is not allocated on that CPU.
    NotAllocated(CpuId, u8),
    /// The vector is already in use on some CPU (system assignment).
    InUse(u8),
    /// The window is empty or invalid.
    BadWindow,
    /// The irq already has vectors in this domain.
    IrqExists(irqcore::IrqNumber),
    /// The irq has no vectors in this domain.
    UnknownIrq(irqcore::IrqNumber),
    /// The matrix and the APIC id list disagree on the number of CPUs.
    CpuCountMismatch,
}

impl From<VectorError> for irqcore::ChipError {
    fn from(e: VectorError) -> Self {
        match e {
            VectorError::Exhausted => irqcore::ChipError::NoSpace,
            _ => irqcore::ChipError::Invalid,
        }
    }
}

/// A 256-bit vector set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct VecSet([u64; 4]);

impl VecSet {
    fn get(&self, v: u8) -> bool {
        self.0[v as usize / 64] & (1 << (v % 64)) != 0
    }
    fn set(&mut self, v: u8) {
        self.0[v as usize / 64] |= 1 << (v % 64);
    }
    fn clear(&mut self, v: u8) {
        self.0[v as usize / 64] &= !(1 << (v % 64));
    }
    fn or(&self, o: &VecSet) -> VecSet {
        VecSet(core::array::from_fn(|i| self.0[i] | o.0[i]))
    }
    fn and_not(&self, o: &VecSet) -> VecSet {
        VecSet(core::array::from_fn(|i| self.0[i] & !o.0[i]))
    }
    /// First vector in `[start, end)` that is *not* in the set.
    fn first_clear_in(&self, start: u8, end: u16) -> Option<u8> {
        (start as u16..end).map(|v| v as u8).find(|v| !self.get(*v))
    }
    /// First vector in `[start, end)` that is in the set.
    fn first_set_in(&self, start: u8, end: u16) -> Option<u8> {
        (start as u16..end).map(|v| v as u8).find(|v| self.get(*v))
    }
    fn count_in(&self, start: u8, end: u16) -> u32 {
        (start as u16..end).filter(|v| self.get(*v as u8)).count() as u32
    }
}

#[derive(Clone, Debug, Default)]
struct CpuVectors {
    online: bool,
    alloc: VecSet,
    managed: VecSet,
    managed_alloc: VecSet,
}

/// The per-CPU vector matrix.
#[derive(Clone, Debug)]
pub struct VectorMatrix {
    start: u8,
    end: u16,
    system: VecSet,
    cpus: Vec<CpuVectors>,
}

impl VectorMatrix {
    /// A matrix for `nr_cpus` CPUs (all offline) handing out vectors
    /// `start..end` (`end` exclusive, at most 256, `start >= 32`: the
    /// exception vectors are never handed out).
    pub fn new(nr_cpus: usize, start: u8, end: u16) -> Result<Self, VectorError> {
        if Vector::new(start).is_err()
            || end > 256
            || start as u16 >= end
            || nr_cpus > irqcore::MAX_CPUS
        {
            return Err(VectorError::BadWindow);
        }
        Ok(Self {
            start,
            end,
            system: VecSet::default(),
            cpus: alloc::vec![CpuVectors::default(); nr_cpus],
        })
    }

    /// The default x86 window ([`FIRST_EXTERNAL_VECTOR`]..[`FIRST_SYSTEM_VECTOR`]).
    pub fn with_default_window(nr_cpus: usize) -> Result<Self, VectorError> {
        Self::new(
            nr_cpus,
            FIRST_EXTERNAL_VECTOR.get(),
            u16::from(FIRST_SYSTEM_VECTOR.get()),
        )
    }

    /// Number of CPUs the matrix covers.
    pub fn nr_cpus(&self) -> usize {
        self.cpus.len()
    }

    fn cpu(&self, cpu: CpuId) -> Result<&CpuVectors, VectorError> {
        self.cpus.get(cpu.index()).ok_or(VectorError::BadCpu(cpu))
    }

    fn cpu_mut(&mut self, cpu: CpuId) -> Result<&mut CpuVectors, VectorError> {
        self.cpus
            .get_mut(cpu.index())
            .ok_or(VectorError::BadCpu(cpu))
    }

    /// A vector the matrix found in its window (which starts at 32 or
    /// above, so this cannot fail; the error keeps it panic-free).
    fn vector(v: u8) -> Result<Vector, VectorError> {
        Vector::new(v).map_err(|_| VectorError::BadVector(v))
    }

    fn in_window(&self, v: u8) -> bool {
        v >= self.start && (v as u16) < self.end
    }

    /// Reserves `vector` for the system on every CPU (a kernel's timer, IPI
    /// or error vector inside the window). Vectors outside the window are
    /// never handed out anyway and are accepted as a no-op.
    pub fn assign_system(&mut self, vector: Vector) -> Result<(), VectorError> {
        let vector = vector.get();
        if !self.in_window(vector) {
            return Ok(());
        }
        if self
            .cpus
            .iter()
            .any(|c| c.alloc.get(vector) || c.managed.get(vector))
        {
            return Err(VectorError::InUse(vector));
        }
        self.system.set(vector);
        Ok(())
    }

    /// Reserves every vector of `range` for the system (see
    /// [`assign_system`](Self::assign_system)). All or nothing: if one of
    /// them is in use on some CPU, nothing is reserved.
    pub fn reserve_range(&mut self, range: core::ops::Range<u8>) -> Result<(), VectorError> {
        if let Some(v) = range.clone().find(|v| {
            self.in_window(*v)
                && self
                    .cpus
                    .iter()
                    .any(|c| c.alloc.get(*v) || c.managed.get(*v))
        }) {
            return Err(VectorError::InUse(v));
        }
        for v in range {
            if self.in_window(v) {
                self.system.set(v);
            }
        }
        Ok(())
    }

    /// The default window with the 8259's vectors ([`PIC8259_VECTORS`])
    /// reserved: what a machine with an 8259 needs, whether the pair is used
    /// ([`Pic8259Chip`](crate::Pic8259Chip)) or only remapped and masked (a
    /// masked 8259 can still deliver its spurious IRQ 7 and 15, and LINT0 in
    /// ExtINT mode passes its vectors through).
    pub fn with_default_window_and_8259(nr_cpus: usize) -> Result<Self, VectorError> {
        let mut m = Self::with_default_window(nr_cpus)?;
        m.reserve_range(PIC8259_VECTORS)?;
        Ok(m)
    }

    /// Whether `vector` is reserved for the system.
    pub fn is_system(&self, vector: Vector) -> bool {
        self.system.get(vector.get())
    }

    /// Marks `cpu` online: it becomes eligible for allocations. Its maps
    /// (including managed reservations) are kept from before.
    pub fn cpu_online(&mut self, cpu: CpuId) -> Result<(), VectorError> {
        self.cpu_mut(cpu)?.online = true;
        Ok(())
    }

    /// Marks `cpu` offline: no new allocation goes there. Existing
    /// allocations and managed reservations stay (the vector domain moves
    /// interrupts away before, and frees what the cleanup releases).
    pub fn cpu_offline(&mut self, cpu: CpuId) -> Result<(), VectorError> {
        self.cpu_mut(cpu)?.online = false;
        Ok(())
    }

    /// Whether `cpu` is online in the matrix.
    pub fn is_online(&self, cpu: CpuId) -> bool {
        self.cpu(cpu).is_ok_and(|c| c.online)
    }

    /// The online CPUs.
    pub fn online_mask(&self) -> CpuMask {
        CpuId::all(self.cpus.len())
            .filter(|c| self.cpus[c.index()].online)
            .collect()
    }

    fn window_size(&self) -> u32 {
        self.end as u32 - self.start as u32
    }

    /// Vectors still available for unmanaged allocation on `cpu` (window
    /// minus system vectors, managed reservations and unmanaged allocations).
    pub fn available(&self, cpu: CpuId) -> u32 {
        let Ok(c) = self.cpu(cpu) else { return 0 };
        let used = self.system.or(&c.managed).or(&c.alloc);
        self.window_size() - used.count_in(self.start, self.end)
    }

    /// Unmanaged vectors allocated on `cpu`.
    pub fn allocated(&self, cpu: CpuId) -> u32 {
        self.cpu(cpu).map_or(0, |c| c.alloc.count_in(0, 256))
    }

    /// Managed vectors reserved on `cpu`, and how many of them are in use.
    pub fn managed(&self, cpu: CpuId) -> (u32, u32) {
        self.cpu(cpu).map_or((0, 0), |c| {
            (c.managed.count_in(0, 256), c.managed_alloc.count_in(0, 256))
        })
    }

    /// Whether `vector` is in use (allocated, unmanaged or managed) on `cpu`.
    pub fn is_allocated(&self, cpu: CpuId, vector: Vector) -> bool {
        let v = vector.get();
        self.cpu(cpu)
            .is_ok_and(|c| c.alloc.get(v) || c.managed_alloc.get(v))
    }

    /// Sum of [`available`](Self::available) over the online CPUs.
    pub fn global_available(&self) -> u32 {
        CpuId::all(self.cpus.len())
            .filter(|c| self.cpus[c.index()].online)
            .map(|c| self.available(c))
            .sum()
    }

    /// Allocates an unmanaged vector on the online CPU of `mask` with the
    /// most available vectors (ties: the lowest CPU number), taking the
    /// lowest free vector there.
    pub fn alloc(&mut self, mask: &CpuMask) -> Result<(CpuId, Vector), VectorError> {
        let mut best: Option<(CpuId, u32)> = None;
        for cpu in mask.iter() {
            if !self.is_online(cpu) {
                continue;
            }
            let avail = self.available(cpu);
            if best.is_none_or(|(_, b)| avail > b) {
                best = Some((cpu, avail));
            }
        }
        let (cpu, avail) = best.ok_or(VectorError::NoOnlineCpu)?;
        if avail == 0 {
            return Err(VectorError::Exhausted);
        }
        let (start, end, system) = (self.start, self.end, self.system);
        let c = self.cpu_mut(cpu)?;
        let used = system.or(&c.managed).or(&c.alloc);
        let v = used
            .first_clear_in(start, end)
            .ok_or(VectorError::Exhausted)?;
        c.alloc.set(v);
        Ok((cpu, Self::vector(v)?))
    }

    /// Takes `vector` on `cpu` for an unmanaged interrupt at a fixed place
    /// (legacy ISA vectors the firmware set up).
    pub fn assign(&mut self, cpu: CpuId, vector: Vector) -> Result<(), VectorError> {
        let vector = vector.get();
        if !self.in_window(vector) || self.system.get(vector) {
            return Err(VectorError::BadVector(vector));
        }
        let c = self.cpu_mut(cpu)?;
        if c.alloc.get(vector) || c.managed.get(vector) {
            return Err(VectorError::InUse(vector));
        }
        c.alloc.set(vector);
        Ok(())
    }

    /// Releases `vector` on `cpu`. A managed vector returns to its
    /// reservation (it is not available to others); an unmanaged one becomes
    /// free.
    pub fn free(&mut self, cpu: CpuId, vector: Vector) -> Result<(), VectorError> {
        let c = self.cpu_mut(cpu)?;
        let vector = vector.get();
        if c.managed_alloc.get(vector) {
            c.managed_alloc.clear(vector);
        } else if c.alloc.get(vector) {
            c.alloc.clear(vector);
        } else {
            return Err(VectorError::NotAllocated(cpu, vector));
        }
        Ok(())
    }

    /// Reserves one managed vector on every CPU of `mask`, online or not.
    /// All or nothing: on failure nothing stays reserved.
    pub fn reserve_managed(&mut self, mask: &CpuMask) -> Result<(), VectorError> {
        if let Some(bad) = mask.iter().find(|c| c.index() >= self.cpus.len()) {
            return Err(VectorError::BadCpu(bad));
        }
        let (start, end, system) = (self.start, self.end, self.system);
        let mut done: Vec<(CpuId, u8)> = Vec::new();
        for cpu in mask.iter() {
            let c = &mut self.cpus[cpu.index()];
            let used = system.or(&c.managed).or(&c.alloc);
            match used.first_clear_in(start, end) {
                Some(v) => {
                    c.managed.set(v);
                    done.push((cpu, v));
                }
                None => {
                    for (cpu, v) in done {
                        self.cpus[cpu.index()].managed.clear(v);
                    }
                    return Err(VectorError::Exhausted);
                }
            }
        }
        Ok(())
    }

    /// Allocates a reserved managed vector on the online CPU of `mask` with
    /// the fewest managed vectors in use (ties: the lowest CPU number).
    pub fn alloc_managed(&mut self, mask: &CpuMask) -> Result<(CpuId, Vector), VectorError> {
        let mut best: Option<(CpuId, u32)> = None;
        for cpu in mask.iter() {
            if !self.is_online(cpu) {
                continue;
            }
            let in_use = self.managed(cpu).1;
            if best.is_none_or(|(_, b)| in_use < b) {
                best = Some((cpu, in_use));
            }
        }
        let (cpu, _) = best.ok_or(VectorError::NoOnlineCpu)?;
        let c = self.cpu_mut(cpu)?;
        let v = c
            .managed
            .and_not(&c.managed_alloc)
            .first_set_in(0, 256)
            .ok_or(VectorError::Exhausted)?;
        c.managed_alloc.set(v);
        Ok((cpu, Self::vector(v)?))
    }

    /// Drops one managed reservation on every CPU of `mask` (the managed
    /// interrupt is being destroyed). A reservation whose vector is still in
    /// use is kept if another one is free on that CPU; otherwise the
    /// in-use vector stays reserved and is reported.
    pub fn remove_managed(&mut self, mask: &CpuMask) -> Result<(), VectorError> {
        if let Some(bad) = mask.iter().find(|c| c.index() >= self.cpus.len()) {
            return Err(VectorError::BadCpu(bad));
        }
        for cpu in mask.iter() {
            let c = &mut self.cpus[cpu.index()];
            if let Some(v) = c.managed.and_not(&c.managed_alloc).first_set_in(0, 256) {
                c.managed.clear(v);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_accounting_counts_system_vectors() {
        let mut m = VectorMatrix::new(2, 0x20, 0x30).unwrap();
        m.cpu_online(CpuId::BOOT).unwrap();
        assert_eq!(m.available(CpuId::BOOT), 16);
        m.assign_system(Vector::new(0x25).unwrap()).unwrap();
        assert_eq!(m.available(CpuId::BOOT), 15);
        // A system vector is never handed out.
        let got: Vec<u8> = (0..15)
            .map(|_| m.alloc(&CpuMask::of(CpuId::BOOT)).unwrap().1.get())
            .collect();
        assert!(!got.contains(&0x25));
        assert_eq!(
            m.alloc(&CpuMask::of(CpuId::BOOT)),
            Err(VectorError::Exhausted)
        );
    }

    #[test]
    fn bad_input_is_refused_without_change() {
        let mut m = VectorMatrix::new(2, 0x20, 0x30).unwrap();
        assert_eq!(
            VectorMatrix::new(1, 0x30, 0x20).err(),
            Some(VectorError::BadWindow)
        );
        assert_eq!(
            m.cpu_online(CpuId::of::<7>()),
            Err(VectorError::BadCpu(CpuId::of::<7>()))
        );
        assert_eq!(
            m.free(CpuId::BOOT, Vector::new(0x21).unwrap()),
            Err(VectorError::NotAllocated(CpuId::BOOT, 0x21))
        );
        assert_eq!(
            m.reserve_managed(&CpuMask::of(CpuId::of::<9>())),
            Err(VectorError::BadCpu(CpuId::of::<9>()))
        );
        assert_eq!(
            m.alloc(&CpuMask::of(CpuId::BOOT)),
            Err(VectorError::NoOnlineCpu)
        );
        m.cpu_online(CpuId::BOOT).unwrap();
        let (c, v) = m.alloc(&CpuMask::of(CpuId::BOOT)).unwrap();
        assert_eq!(m.assign_system(v), Err(VectorError::InUse(v.get())));
        m.free(c, v).unwrap();
        assert_eq!(m.free(c, v), Err(VectorError::NotAllocated(c, v.get())));
    }

    #[test]
    fn managed_reservation_is_all_or_nothing() {
        let mut m = VectorMatrix::new(2, 0x20, 0x22).unwrap();
        m.cpu_online(CpuId::BOOT).unwrap();
        m.cpu_online(CpuId::of::<1>()).unwrap();
        m.alloc(&CpuMask::of(CpuId::of::<1>())).unwrap();
        m.alloc(&CpuMask::of(CpuId::of::<1>())).unwrap();
        // CPU 1 is full: the reservation on CPU 0 must be rolled back.
        assert_eq!(
            m.reserve_managed(&CpuMask::first_n(2)),
            Err(VectorError::Exhausted)
        );
        assert_eq!(m.managed(CpuId::BOOT), (0, 0));
        assert_eq!(m.available(CpuId::BOOT), 2);
    }
}
