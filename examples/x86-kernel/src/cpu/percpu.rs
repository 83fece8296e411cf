//! The per-CPU area: one [`PerCpu`] per logical CPU, found through GS
//! (IA32_GS_BASE points at it), plus the APIC-id <-> CPU-index maps.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use irqcore::CpuId;

use crate::hw::cpu;

pub use kernel_common::MAX_CPUS;

/// State of one CPU. `index` must stay the first field: `current()` reads it
/// at `gs:0`.
#[repr(C, align(64))]
pub struct PerCpu {
    /// Logical CPU index (read at gs:0).
    pub index: AtomicU64,
    /// APIC id.
    pub apic_id: AtomicU32,
}

impl PerCpu {
    const fn new() -> Self {
        Self {
            index: AtomicU64::new(0),
            apic_id: AtomicU32::new(0),
        }
    }
}

static AREAS: [PerCpu; MAX_CPUS] = [const { PerCpu::new() }; MAX_CPUS];

/// Number of CPUs found in the MADT.
static NR_CPUS: AtomicU32 = AtomicU32::new(1);

/// APIC id of each CPU index (u32::MAX: none).
static APIC_IDS: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(u32::MAX) }; MAX_CPUS];

/// Records the CPUs of the MADT (index = position, BSP first).
pub fn set_cpus(apic_ids: &[u32]) {
    for (i, id) in apic_ids.iter().take(MAX_CPUS).enumerate() {
        APIC_IDS[i].store(*id, Ordering::Relaxed);
        AREAS[i].index.store(i as u64, Ordering::Relaxed);
        AREAS[i].apic_id.store(*id, Ordering::Relaxed);
    }
    NR_CPUS.store(apic_ids.len().clamp(1, MAX_CPUS) as u32, Ordering::Release);
}

/// Number of CPUs.
pub fn nr_cpus() -> u32 {
    NR_CPUS.load(Ordering::Acquire)
}

/// APIC id of `cpu`.
pub fn apic_id_of(cpu: CpuId) -> u32 {
    APIC_IDS
        .get(cpu.index())
        .map_or(u32::MAX, |a| a.load(Ordering::Relaxed))
}

/// The per-CPU area of `cpu`.
pub fn of(cpu: CpuId) -> &'static PerCpu {
    &AREAS[cpu.index().min(MAX_CPUS - 1)]
}

/// Points GS at `cpu`'s area; called once on each CPU as it starts.
pub fn install(cpu: CpuId) {
    let area = of(cpu);
    // SAFETY: AREAS is a static: the area lives forever.
    unsafe { cpu::set_gs_base(area as *const PerCpu as u64) }
}

/// The calling CPU's index.
pub fn current() -> CpuId {
    // SAFETY: every CPU installs its area before any code that asks runs
    // (`install` is the first thing BSP and APs do after long mode); index
    // is at offset 0.
    let index = unsafe { cpu::gs_read_u64::<0>() };
    // `install` stored the index of a CpuId.
    CpuId::new(index as u32).expect("per-CPU index below MAX_CPUS")
}
