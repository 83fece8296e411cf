//! A behavioural model of a GICv2 or GICv3 (feature `model`): distributor,
//! redistributors and CPU interfaces, reached through the same [`Mmio`] and
//! [`GicSysRegs`] traits as the hardware, so the real drivers run against it
//! on the host.
//!
//! What it models (per INTID, per CPU for SGIs/PPIs): enable, pending
//! (latched by an edge or `ISPENDR`, or following an asserted level line),
//! active, priority, group, edge/level configuration, SPI routing
//! (`ITARGETSR` or `IROUTER`), GICv2 SGI sources, redistributor sleep, and
//! each CPU interface's priority mask, running priority (a stack of active
//! priorities) and EOI mode; GICv3 LPIs (`GICR_CTLR.EnableLPIs`,
//! `GICR_PROPBASER`/`GICR_PENDBASER`, pending LPIs per redistributor without
//! an active state, enable and priority from the configuration table in
//! [`crate::mem_model::ModelMemory`], cached until an ITS `INV`/`INVALL`,
//! see [`crate::its_model`]). A one-CPU GICv2 is uniprocessor:
//! `ITARGETSR` reads as zero and ignores writes, as the specification says. An acknowledge returns the highest-priority
//! (lowest value, then lowest INTID) interrupt that is pending, enabled, not
//! active, routed to the reading CPU, of an enabled group, and of a priority
//! strictly higher than both the priority mask and the running priority.
//!
//! Simplifications (documented so tests do not rely on them): no security
//! states (as QEMU `virt` without `secure=on`), binary point ignored (every
//! priority bit preempts), no extended ranges, GICv2 SGI active
//! state is per (CPU, SGI) rather than per source, `RWP` always reads 0.
//!
//! Misuse that real hardware would punish with UNPREDICTABLE behaviour or
//! silence (EOI out of order, deactivating an inactive interrupt, `DIR`
//! with `EOImode` clear, touching a sleeping redistributor's SGI/PPI
//! enables, system registers before `ICC_SRE_EL1.SRE`) is recorded in
//! [`GicModel::violations`], which tests assert to be empty.
//!
//! Banked registers (GICv2 `GICD` private words, every `GICC` register, the
//! GICv3 `ICC_*` registers) answer for the *current* CPU, set per thread
//! with [`set_current_cpu`].

use crate::regs::{
    GicSysRegs, GiccCtlr, GicdCtlr, GicrCtlr, GicrWaker, INTID_SPURIOUS, IccReg, IdBank,
    MPIDR_AFFINITY_MASK, Mmio, aff32_to_mpidr, gicc, gicd, gicr, icc, mpidr_to_aff32,
};
use core::cell::Cell;
use irqcore::CpuId;
use std::format;
use std::string::String;
use std::sync::{Arc, Mutex, MutexGuard};
use std::vec;
use std::vec::Vec;

std::thread_local! {
    static CURRENT_CPU: Cell<CpuId> = const { Cell::new(CpuId::BOOT) };
}

/// Makes `cpu` the CPU that this thread's banked register accesses hit.
pub fn set_current_cpu(cpu: CpuId) {
    CURRENT_CPU.with(|c| c.set(cpu));
}

/// The id of model CPU `index`. The model's CPU indices come from
/// [`CpuId::index`] (the banked accesses of [`current_cpu`], the routes and
/// targets the drivers program), so this is always an id; an index none can
/// hold reads as CPU 0 rather than panic in the model.
fn model_cpu(index: usize) -> CpuId {
    CpuId::from_index(index).unwrap_or(CpuId::BOOT)
}

/// The CPU this thread's banked register accesses hit.
pub fn current_cpu() -> CpuId {
    CURRENT_CPU.with(Cell::get)
}

/// Which architecture version the model implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicVersion {
    /// GICv2: memory-mapped CPU interface, `ITARGETSR` routing, `GICD_SGIR`.
    V2,
    /// GICv3: affinity routing, redistributors, `ICC_*` system registers.
    V3,
}

/// The state of one INTID (for SGIs/PPIs: on one CPU).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IntState {
    /// Forwarding enabled (`ISENABLER`).
    pub enabled: bool,
    /// Latched pending state (an edge, `ISPENDR`, an SGI).
    pub latched: bool,
    /// Active (acknowledged, not yet deactivated).
    pub active: bool,
    /// The input line is asserted (level interrupts stay pending meanwhile).
    pub line: bool,
    /// Edge-triggered (`ICFGR` bit set).
    pub edge: bool,
    /// Priority (lower value = higher priority).
    pub priority: u8,
    /// Group 1 (`IGROUPR` bit set).
    pub group1: bool,
}

impl IntState {
    /// Whether the interrupt is pending: latched, or a level line held high.
    pub fn pending(&self) -> bool {
        self.latched || (!self.edge && self.line)
    }
}

/// Something the model saw happen, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A CPU's redistributor finished waking (`ChildrenAsleep` cleared).
    RedistributorAwake(CpuId),
    /// A CPU's redistributor was put to sleep (`ProcessorSleep` set).
    RedistributorAsleep(CpuId),
    /// An SGI/PPI was enabled on a CPU.
    PrivateEnabled(CpuId, u32),
    /// An SPI was enabled.
    SpiEnabled(u32),
    /// A CPU acknowledged an INTID.
    Acked(CpuId, u32),
    /// A CPU dropped the running priority of an INTID (`EOIR`).
    PriorityDropped(CpuId, u32),
    /// An INTID was deactivated on behalf of a CPU.
    Deactivated(CpuId, u32),
    /// An SGI was made pending: (sender, target, INTID).
    SgiSent(CpuId, CpuId, u32),
}

#[derive(Clone, Debug)]
struct CpuState {
    private: [IntState; 32],
    /// GICv2: per SGI, the bitmap of source CPUs with a pending request.
    sgi_sources: [u8; 16],
    mpidr: u64,
    processor_sleep: bool,
    children_asleep: bool,
    /// `GICR_WAKER` reads left before `ChildrenAsleep` follows `ProcessorSleep`.
    wake_countdown: u32,
    sre: bool,
    pmr: u8,
    bpr: u8,
    eoimode: bool,
    grp0_enabled: bool,
    grp1_enabled: bool,
    /// (INTID, priority) of every acknowledged interrupt whose priority has
    /// not been dropped yet, most recent last.
    active_priorities: Vec<(u32, u8)>,
    /// `GICR_CTLR.EnableLPIs` (once set, stays set: IMPLEMENTATION DEFINED,
    /// the choice QEMU makes).
    lpis_enabled: bool,
    /// `GICR_PROPBASER`.
    propbaser: u64,
    /// `GICR_PENDBASER`.
    pendbaser: u64,
    /// Pending LPIs (INTIDs); LPIs have no active state.
    lpi_pending: std::collections::BTreeSet<u32>,
}

#[derive(Debug)]
struct Inner {
    ctlr: GicdCtlr,
    spis: Vec<IntState>,
    targets: Vec<u8>,
    router: Vec<u64>,
    cpus: Vec<CpuState>,
    events: Vec<Event>,
    violations: Vec<String>,
    /// Physical memory the LPI configuration tables are read from.
    memory: Option<crate::mem_model::ModelMemory>,
    /// LPI configuration bytes as last loaded (by `INV`, `INVALL`,
    /// `MAPTI`): what the redistributors use, as a GIC may cache them.
    lpi_cache: std::collections::BTreeMap<u32, u8>,
    /// See [`GicModel::set_xen_vgic_disable_drops_queued`].
    xen_vgic_disable_drops_queued: bool,
    /// See [`GicModel::set_xen_vgic_refuses_second_move`].
    xen_vgic_refuses_second_move: bool,
    /// SPIs moved while active, until their deactivation (Xen's
    /// `GIC_IRQ_GUEST_MIGRATING`).
    migrating: std::collections::BTreeSet<u32>,
}

/// The model: one distributor, one redistributor and CPU interface per CPU.
#[derive(Debug)]
pub struct GicModel {
    version: GicVersion,
    num_lines: u32,
    wake_delay: u32,
    inner: Mutex<Inner>,
}

/// The MPIDR the model gives `cpu` in [`GicModel::new_v3`]: clusters of
/// four (Aff1 = cpu / 4, Aff0 = cpu % 4), so that SGI affinity routing
/// with more than one cluster is exercised.
pub fn default_mpidr(cpu: usize) -> u64 {
    (((cpu / 4) as u64) << 8) | (cpu % 4) as u64
}

impl GicModel {
    /// A GICv2 with `num_cpus` CPU interfaces (at most 8) and `num_lines`
    /// INTIDs (a multiple of 32, at least 64, at most 1020 rounded up).
    pub fn new_v2(num_cpus: usize, num_lines: u32) -> Arc<Self> {
        Self::new(GicVersion::V2, num_cpus.min(8), num_lines, |c| c as u64)
    }

    /// A GICv3 with `num_cpus` redistributors whose CPUs have
    /// [`default_mpidr`] affinities.
    pub fn new_v3(num_cpus: usize, num_lines: u32) -> Arc<Self> {
        Self::new(GicVersion::V3, num_cpus, num_lines, default_mpidr)
    }

    fn new(
        version: GicVersion,
        num_cpus: usize,
        num_lines: u32,
        mpidr: impl Fn(usize) -> u64,
    ) -> Arc<Self> {
        let num_lines = num_lines.clamp(64, 1024).div_ceil(32) * 32;
        let num_spis = (num_lines - 32) as usize;
        let mut private = [IntState::default(); 32];
        for s in &mut private[..16] {
            s.edge = true; // SGIs are always edge (GICD_ICFGR0 read-only)
        }
        let cpus = (0..num_cpus)
            .map(|c| CpuState {
                private,
                sgi_sources: [0; 16],
                mpidr: mpidr(c),
                processor_sleep: true,
                children_asleep: true,
                wake_countdown: 0,
                sre: version == GicVersion::V2,
                pmr: 0,
                bpr: 0,
                eoimode: false,
                grp0_enabled: false,
                grp1_enabled: false,
                active_priorities: Vec::new(),
                lpis_enabled: false,
                propbaser: 0,
                pendbaser: 0,
                lpi_pending: std::collections::BTreeSet::new(),
            })
            .collect();
        Arc::new(Self {
            version,
            num_lines,
            wake_delay: 2,
            inner: Mutex::new(Inner {
                ctlr: GicdCtlr::empty(),
                spis: vec![IntState::default(); num_spis],
                targets: vec![0; num_spis],
                router: vec![0; num_spis],
                cpus,
                events: Vec::new(),
                violations: Vec::new(),
                memory: None,
                lpi_cache: std::collections::BTreeMap::new(),
                xen_vgic_disable_drops_queued: false,
                xen_vgic_refuses_second_move: false,
                migrating: std::collections::BTreeSet::new(),
            }),
        })
    }

    /// Makes the model behave like Xen 4.17's virtual GIC in the one way
    /// a driver has to work around (`GicOptions::for_xen_vgic`): an SPI
    /// that is disabled (`ICENABLER`) while it is active with a new edge
    /// latched behind it loses that edge. Xen keeps such an edge queued
    /// behind the instance in the vCPU's list register and discards it if
    /// the enable is clear when that list register retires (the vCPU's
    /// first trap after the EOI); the model collapses that window onto the
    /// disable itself. Off by default: the architecture keeps a disabled
    /// interrupt pending.
    pub fn set_xen_vgic_disable_drops_queued(&self, on: bool) {
        self.lock().xen_vgic_disable_drops_queued = on;
    }

    /// Makes the model refuse a route change the way Xen 4.17's vGIC does
    /// for an SPI passed through to a guest: the first route write while
    /// the SPI is active is taken (Xen moves the physical interrupt once
    /// that instance is deactivated); any further write before then is
    /// dropped, and the routing register keeps the earlier route. Off by
    /// default: hardware takes every write.
    pub fn set_xen_vgic_refuses_second_move(&self, on: bool) {
        self.lock().xen_vgic_refuses_second_move = on;
    }

    /// The architecture version modelled.
    pub fn version(&self) -> GicVersion {
        self.version
    }

    /// Number of INTIDs the distributor implements (SGIs + PPIs + SPIs).
    pub fn num_lines(&self) -> u32 {
        self.num_lines
    }

    /// Number of CPUs.
    pub fn num_cpus(&self) -> usize {
        self.lock().cpus.len()
    }

    /// The `MPIDR_EL1` value of `cpu`.
    pub fn mpidr_of(&self, cpu: CpuId) -> u64 {
        self.lock().cpus.get(cpu.index()).map_or(0, |c| c.mpidr)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking test thread must not hide the state from the others.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The distributor frame.
    pub fn distributor(self: &Arc<Self>) -> ModelMmio {
        ModelMmio {
            model: self.clone(),
            frame: Frame::Distributor,
        }
    }

    /// The GICv2 CPU interface frame (banked per current CPU).
    pub fn cpu_interface(self: &Arc<Self>) -> ModelMmio {
        ModelMmio {
            model: self.clone(),
            frame: Frame::CpuInterface,
        }
    }

    /// The GICv3 redistributor region: one `RD_base` + `SGI_base` pair per CPU.
    pub fn redistributors(self: &Arc<Self>) -> ModelMmio {
        ModelMmio {
            model: self.clone(),
            frame: Frame::Redistributors,
        }
    }

    /// The GICv3 CPU interface system registers (of the current CPU).
    pub fn sysregs(self: &Arc<Self>) -> ModelSysRegs {
        ModelSysRegs {
            model: self.clone(),
        }
    }

    // ----- device side -----

    /// Drives the input line of SPI `intid` (or of PPI `intid` on `cpu`).
    /// A rising edge latches an edge-triggered interrupt; a level interrupt
    /// is pending exactly while the line is high (or latched).
    pub fn set_line(&self, cpu: CpuId, intid: u32, high: bool) {
        let mut g = self.lock();
        if let Some(s) = g.state_mut(cpu, intid) {
            if s.edge && high && !s.line {
                s.latched = true;
            }
            s.line = high;
        }
    }

    /// A pulse (assert then deassert) on an SPI/PPI line.
    pub fn pulse(&self, cpu: CpuId, intid: u32) {
        self.set_line(cpu, intid, true);
        self.set_line(cpu, intid, false);
    }

    // ----- observation -----

    /// The state of `intid` (SPIs ignore `cpu`).
    pub fn state(&self, cpu: CpuId, intid: u32) -> IntState {
        self.lock()
            .state_mut(cpu, intid)
            .map(|s| *s)
            .unwrap_or_default()
    }

    /// GICv2 `ITARGETSR` byte of an SPI.
    pub fn spi_targets(&self, intid: u32) -> u8 {
        let g = self.lock();
        spi_index(intid, g.spis.len()).map_or(0, |i| g.targets[i])
    }

    /// GICv3 `IROUTER` of an SPI.
    pub fn spi_router(&self, intid: u32) -> u64 {
        let g = self.lock();
        spi_index(intid, g.spis.len()).map_or(0, |i| g.router[i])
    }

    /// The CPUs an SPI would be delivered to now.
    pub fn spi_route_cpus(&self, intid: u32) -> Vec<CpuId> {
        let g = self.lock();
        CpuId::all(g.cpus.len())
            .filter(|c| g.routes_to(self.version, intid, c.index()))
            .collect()
    }

    /// Whether `cpu`'s redistributor is asleep (`ChildrenAsleep`).
    pub fn redistributor_asleep(&self, cpu: CpuId) -> bool {
        self.lock()
            .cpus
            .get(cpu.index())
            .is_none_or(|c| c.children_asleep)
    }

    /// `cpu`'s priority mask.
    pub fn priority_mask(&self, cpu: CpuId) -> u8 {
        self.lock().cpus.get(cpu.index()).map_or(0, |c| c.pmr)
    }

    /// `cpu`'s running priority (0xff when idle).
    pub fn running_priority(&self, cpu: CpuId) -> u8 {
        self.lock()
            .cpus
            .get(cpu.index())
            .map_or(0xff, CpuState::running_priority)
    }

    /// Whether `cpu`'s interface is in split EOI mode.
    pub fn split_eoi(&self, cpu: CpuId) -> bool {
        self.lock().cpus.get(cpu.index()).is_some_and(|c| c.eoimode)
    }

    /// Whether `cpu`'s interface signals group 1 (v3) / any group (v2).
    pub fn cpu_interface_enabled(&self, cpu: CpuId) -> bool {
        self.lock()
            .cpus
            .get(cpu.index())
            .is_some_and(|c| c.grp0_enabled || c.grp1_enabled)
    }

    /// Gives the model the physical memory LPI configuration tables live in
    /// (done by the ITS model).
    pub fn attach_memory(&self, mem: crate::mem_model::ModelMemory) {
        self.lock().memory = Some(mem);
    }

    /// An LPI arrives at `cpu`'s redistributor (from an ITS). Dropped, and
    /// recorded as a violation, if LPIs are not enabled there.
    pub fn set_lpi_pending(&self, cpu: CpuId, intid: u32) {
        let mut g = self.lock();
        let g = &mut *g;
        match g.cpus.get_mut(cpu.index()) {
            Some(c) if c.lpis_enabled => {
                c.lpi_pending.insert(intid);
            }
            _ => g.violations.push(format!(
                "LPI {intid} sent to cpu{} whose redistributor has LPIs off",
                cpu.get()
            )),
        }
    }

    /// Clears a pending LPI at `cpu` (ITS `DISCARD`/`CLEAR`/`MOVI`).
    pub fn clear_lpi_pending(&self, cpu: CpuId, intid: u32) -> bool {
        self.lock()
            .cpus
            .get_mut(cpu.index())
            .is_some_and(|c| c.lpi_pending.remove(&intid))
    }

    /// The LPIs pending at `cpu`.
    pub fn lpis_pending(&self, cpu: CpuId) -> Vec<u32> {
        self.lock()
            .cpus
            .get(cpu.index())
            .map(|c| c.lpi_pending.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Whether `cpu`'s redistributor has LPIs enabled.
    pub fn lpis_enabled(&self, cpu: CpuId) -> bool {
        self.lock()
            .cpus
            .get(cpu.index())
            .is_some_and(|c| c.lpis_enabled)
    }

    /// The configuration byte of LPI `intid` as `cpu`'s redistributor sees it.
    pub fn lpi_config(&self, cpu: CpuId, intid: u32) -> Option<u8> {
        self.lock().lpi_config(cpu.index(), intid)
    }

    /// Reloads cached LPI configuration from memory: one LPI, or (`None`)
    /// every cached one.
    pub(crate) fn lpi_cache_reload(&self, intid: Option<u32>) {
        let mut g = self.lock();
        let g = &mut *g;
        let Some(cpu) = g.cpus.iter().position(|c| c.propbaser != 0) else {
            return;
        };
        let ids: Vec<u32> = match intid {
            Some(i) => vec![i],
            None => g.lpi_cache.keys().copied().collect(),
        };
        for i in ids {
            g.lpi_cache.remove(&i);
            if let Some(b) = g.lpi_config(cpu, i) {
                g.lpi_cache.insert(i, b);
            }
        }
    }

    /// Records a misuse seen by a companion model (ITS, v2m).
    pub fn record_violation(&self, what: String) {
        self.lock().violations.push(what);
    }

    /// Everything that happened so far, in order.
    pub fn events(&self) -> Vec<Event> {
        self.lock().events.clone()
    }

    /// Returns and forgets the events so far.
    pub fn take_events(&self) -> Vec<Event> {
        core::mem::take(&mut self.lock().events)
    }

    /// Protocol violations the drivers committed (should be empty).
    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    /// The INTID `cpu` would acknowledge now, without acknowledging it.
    pub fn highest_pending(&self, cpu: CpuId) -> Option<u32> {
        self.lock()
            .best_candidate(self.version, cpu.index())
            .map(|(i, _)| i)
    }
}

fn spi_index(intid: u32, num_spis: usize) -> Option<usize> {
    let i = (intid as usize).checked_sub(32)?;
    (i < num_spis).then_some(i)
}

impl CpuState {
    fn running_priority(&self) -> u8 {
        self.active_priorities
            .iter()
            .map(|&(_, p)| p)
            .min()
            .unwrap_or(0xff)
    }

    fn awake(&self) -> bool {
        !self.processor_sleep && !self.children_asleep
    }
}

impl Inner {
    fn state_mut(&mut self, cpu: CpuId, intid: u32) -> Option<&mut IntState> {
        if intid < 32 {
            self.cpus
                .get_mut(cpu.index())
                .map(|c| &mut c.private[intid as usize])
        } else {
            let n = self.spis.len();
            spi_index(intid, n).map(|i| &mut self.spis[i])
        }
    }

    fn routes_to(&self, v: GicVersion, intid: u32, cpu: usize) -> bool {
        let Some(i) = spi_index(intid, self.spis.len()) else {
            return false;
        };
        match v {
            // A uniprocessor GICv2 has no targets: everything goes to CPU 0.
            GicVersion::V2 if self.cpus.len() == 1 => cpu == 0,
            GicVersion::V2 => self.targets[i] & (1u8 << (cpu & 7)) != 0 && cpu < 8,
            GicVersion::V3 => {
                let r = self.router[i];
                if r & gicd::IROUTER_IRM != 0 {
                    self.cpus[cpu].grp1_enabled
                } else {
                    r & MPIDR_AFFINITY_MASK == self.cpus[cpu].mpidr & MPIDR_AFFINITY_MASK
                }
            }
        }
    }

    fn group_enabled(&self, v: GicVersion, cpu: usize, group1: bool) -> bool {
        let c = &self.cpus[cpu];
        match (v, group1) {
            (GicVersion::V2, false) => self.ctlr.contains(GicdCtlr::ENABLE_G0) && c.grp0_enabled,
            (GicVersion::V2, true) => self.ctlr.contains(GicdCtlr::ENABLE_G1) && c.grp1_enabled,
            // IAR1 acknowledges group 1 only.
            (GicVersion::V3, false) => false,
            (GicVersion::V3, true) => {
                self.ctlr.contains(GicdCtlr::ENABLE_G1 | GicdCtlr::ARE) && c.grp1_enabled && c.sre
            }
        }
    }

    fn best_candidate(&self, v: GicVersion, cpu: usize) -> Option<(u32, u8)> {
        let c = self.cpus.get(cpu)?;
        let limit = c.pmr.min(c.running_priority());
        let mut best: Option<(u32, u8)> = None;
        let mut consider = |intid: u32, s: &IntState, pending: bool| {
            if pending
                && s.enabled
                && !s.active
                && s.priority < limit
                && self.group_enabled(v, cpu, s.group1)
                && best.is_none_or(|(_, p)| s.priority < p)
            {
                best = Some((intid, s.priority));
            }
        };
        if v == GicVersion::V2 || c.awake() {
            for (i, s) in c.private.iter().enumerate() {
                let pending = if v == GicVersion::V2 && i < 16 {
                    c.sgi_sources[i] != 0
                } else {
                    s.pending()
                };
                consider(i as u32, s, pending);
            }
        }
        for (i, s) in self.spis.iter().enumerate() {
            let intid = i as u32 + 32;
            if self.routes_to(v, intid, cpu) && (v == GicVersion::V2 || c.awake()) {
                consider(intid, s, s.pending());
            }
        }
        if v == GicVersion::V3 && c.lpis_enabled && c.awake() {
            for &intid in &c.lpi_pending {
                let Some(cfg) = self.lpi_config(cpu, intid) else {
                    continue;
                };
                let s = IntState {
                    enabled: cfg & 1 != 0,
                    priority: cfg & 0xfc,
                    group1: true,
                    ..IntState::default()
                };
                consider(intid, &s, true);
            }
        }
        best
    }

    /// The configuration byte of LPI `intid` as `cpu`'s redistributor reads
    /// it (its `GICR_PROPBASER`, from memory).
    fn lpi_config(&self, cpu: usize, intid: u32) -> Option<u8> {
        let c = self.cpus.get(cpu)?;
        let bits = (c.propbaser & 0x1f) as u32 + 1;
        if intid < 8192 || bits > 31 || intid >= 1 << bits {
            return None;
        }
        if let Some(&b) = self.lpi_cache.get(&intid) {
            return Some(b);
        }
        let base = c.propbaser & gicr::BASER_ADDR_MASK;
        self.memory
            .as_ref()?
            .read_u8(base + u64::from(intid - 8192))
    }

    fn acknowledge(&mut self, v: GicVersion, cpu: usize) -> u32 {
        let Some((intid, prio)) = self.best_candidate(v, cpu) else {
            return INTID_SPURIOUS;
        };
        if intid >= 8192 {
            let c = &mut self.cpus[cpu];
            c.lpi_pending.remove(&intid);
            c.active_priorities.push((intid, prio));
            self.events.push(Event::Acked(model_cpu(cpu), intid));
            return intid;
        }
        let mut value = intid;
        let c = &mut self.cpus[cpu];
        if v == GicVersion::V2 && intid < 16 {
            let src = c.sgi_sources[intid as usize].trailing_zeros();
            c.sgi_sources[intid as usize] &= !(1 << src);
            value |= src << gicc::IAR_CPUID_SHIFT;
        }
        let s = if intid < 32 {
            &mut c.private[intid as usize]
        } else {
            &mut self.spis[intid as usize - 32]
        };
        s.latched = false;
        s.active = true;
        self.cpus[cpu].active_priorities.push((intid, prio));
        self.events.push(Event::Acked(model_cpu(cpu), intid));
        value
    }

    fn end_of_interrupt(&mut self, cpu: usize, intid: u32) {
        if (crate::regs::INTID_SPECIAL_FIRST..8192).contains(&intid) {
            return;
        }
        let c = &mut self.cpus[cpu];
        match c.active_priorities.iter().rposition(|&(i, _)| i == intid) {
            Some(pos) => {
                if pos + 1 != c.active_priorities.len() {
                    self.violations.push(format!(
                        "cpu{cpu}: EOI of INTID {intid} is not for the most recent acknowledge"
                    ));
                }
                c.active_priorities.remove(pos);
            }
            None => {
                self.violations.push(format!(
                    "cpu{cpu}: EOI of INTID {intid} that it did not acknowledge"
                ));
                return;
            }
        }
        self.events
            .push(Event::PriorityDropped(model_cpu(cpu), intid));
        // LPIs have no active state: the priority drop is all.
        if !self.cpus[cpu].eoimode && intid < 8192 {
            self.deactivate(cpu, intid);
        }
    }

    fn deactivate_request(&mut self, cpu: usize, intid: u32) {
        // Special INTIDs, and LPIs (no active state: DIR has no effect).
        if intid >= crate::regs::INTID_SPECIAL_FIRST {
            return;
        }
        if !self.cpus[cpu].eoimode {
            self.violations
                .push(format!("cpu{cpu}: DIR of INTID {intid} with EOImode clear"));
            return;
        }
        self.deactivate(cpu, intid);
    }

    /// Xen's rule for moving an active passed-through SPI (see
    /// [`GicModel::set_xen_vgic_refuses_second_move`]): whether this
    /// route write is dropped; an accepted move of an active SPI is marked
    /// in progress.
    fn route_change_refused(&mut self, cpu: usize, intid: u32) -> bool {
        if !self.xen_vgic_refuses_second_move {
            return false;
        }
        if self.migrating.contains(&intid) {
            return true;
        }
        let active = self
            .state_mut(model_cpu(cpu), intid)
            .is_some_and(|s| s.active);
        if active {
            self.migrating.insert(intid);
        }
        false
    }

    fn deactivate(&mut self, cpu: usize, intid: u32) {
        match self.state_mut(model_cpu(cpu), intid) {
            Some(s) if s.active => {
                s.active = false;
                self.migrating.remove(&intid);
                self.events.push(Event::Deactivated(model_cpu(cpu), intid));
            }
            _ => self
                .violations
                .push(format!("cpu{cpu}: deactivate of inactive INTID {intid}")),
        }
    }

    /// Applies a bitmap register write (`set`/`clear` semantics) for 32
    /// INTIDs starting at `first`, banked to `cpu` for INTIDs below 32.
    fn bitmap_write(&mut self, cpu: usize, base: IdBank, first: u32, value: u32, redist: bool) {
        let drops_queued = self.xen_vgic_disable_drops_queued;
        for bit in 0..32 {
            if value & (1 << bit) == 0 && base != gicd::IGROUPR {
                continue;
            }
            let intid = first + bit;
            let cpu_id = model_cpu(cpu);
            let asleep = redist && self.cpus.get(cpu).is_some_and(|c| !c.awake());
            let Some(s) = self.state_mut(cpu_id, intid) else {
                continue;
            };
            let mut event = None;
            match base {
                gicd::IGROUPR => s.group1 = value & (1 << bit) != 0,
                gicd::ISENABLER => {
                    if !s.enabled {
                        event = Some(if intid < 32 {
                            Event::PrivateEnabled(cpu_id, intid)
                        } else {
                            Event::SpiEnabled(intid)
                        });
                    }
                    s.enabled = true;
                }
                gicd::ICENABLER => {
                    if drops_queued && intid >= 32 && s.active {
                        s.latched = false;
                    }
                    s.enabled = false;
                }
                gicd::ISPENDR => s.latched = true,
                gicd::ICPENDR => s.latched = false,
                gicd::ISACTIVER => s.active = true,
                gicd::ICACTIVER => s.active = false,
                _ => {}
            }
            if base == gicd::ISENABLER && asleep {
                self.violations.push(format!(
                    "cpu{cpu}: INTID {intid} enabled while the redistributor is asleep"
                ));
            }
            if let Some(e) = event {
                self.events.push(e);
            }
        }
    }

    fn bitmap_read(&mut self, cpu: usize, base: IdBank, first: u32) -> u32 {
        let mut v = 0;
        for bit in 0..32 {
            let intid = first + bit;
            let Some(s) = self.state_mut(model_cpu(cpu), intid) else {
                continue;
            };
            let on = match base {
                gicd::IGROUPR => s.group1,
                gicd::ISENABLER | gicd::ICENABLER => s.enabled,
                gicd::ISPENDR | gicd::ICPENDR => s.pending(),
                gicd::ISACTIVER | gicd::ICACTIVER => s.active,
                _ => false,
            };
            v |= u32::from(on) << bit;
        }
        v
    }

    fn bytes_read(&mut self, cpu: usize, first: u32, f: impl Fn(&IntState) -> u8) -> u32 {
        (0..4).fold(0, |acc, k| {
            let b = self
                .state_mut(model_cpu(cpu), first + k)
                .map_or(0, |s| f(s));
            acc | (u32::from(b) << (8 * k))
        })
    }

    fn priority_write(&mut self, cpu: usize, first: u32, value: u32) {
        for k in 0..4 {
            if let Some(s) = self.state_mut(model_cpu(cpu), first + k) {
                s.priority = (value >> (8 * k)) as u8;
            }
        }
    }

    fn cfg_read(&mut self, cpu: usize, first: u32) -> u32 {
        (0..16).fold(0, |acc, k| {
            let e = self
                .state_mut(model_cpu(cpu), first + k)
                .is_some_and(|s| s.edge);
            acc | (u32::from(e) << (2 * k + 1))
        })
    }

    fn cfg_write(&mut self, cpu: usize, first: u32, value: u32) {
        for k in 0..16 {
            let intid = first + k;
            if intid < 16 {
                continue; // SGI configuration is read-only
            }
            if let Some(s) = self.state_mut(model_cpu(cpu), intid) {
                s.edge = value & (1 << (2 * k + 1)) != 0;
            }
        }
    }

    fn send_sgi(&mut self, v: GicVersion, from: usize, to: usize, intid: u32) {
        let Some(c) = self.cpus.get_mut(to) else {
            return;
        };
        match v {
            GicVersion::V2 => c.sgi_sources[intid as usize] |= 1 << from,
            GicVersion::V3 => c.private[intid as usize].latched = true,
        }
        self.events
            .push(Event::SgiSent(model_cpu(from), model_cpu(to), intid));
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Frame {
    Distributor,
    CpuInterface,
    Redistributors,
}

/// A register frame of the model, implementing [`Mmio`].
#[derive(Clone, Debug)]
pub struct ModelMmio {
    model: Arc<GicModel>,
    frame: Frame,
}

// The typed control registers' offsets, for the decoders' `match`es.
const GICD_CTLR: usize = gicd::CTLR.offset();
const GICC_CTLR: usize = gicc::CTLR.offset();
const GICR_CTLR: usize = gicr::CTLR.offset();
const GICR_WAKER: usize = gicr::WAKER.offset();

const BITMAP_REGS: [IdBank; 7] = [
    gicd::IGROUPR,
    gicd::ISENABLER,
    gicd::ICENABLER,
    gicd::ISPENDR,
    gicd::ICPENDR,
    gicd::ISACTIVER,
    gicd::ICACTIVER,
];

impl ModelMmio {
    fn dist_read(&self, g: &mut Inner, cpu: usize, off: usize) -> u32 {
        let v = self.model.version;
        // With affinity routing the distributor's private words are RAZ/WI.
        let private_raz = v == GicVersion::V3;
        match off {
            GICD_CTLR => g.ctlr.bits(),
            gicd::TYPER => {
                let lines = self.model.num_lines / 32 - 1;
                let cpus = (g.cpus.len().clamp(1, 8) - 1) as u32;
                let lpis = match v {
                    // 16 INTID bits with LPIs, as QEMU's GICv3.
                    GicVersion::V3 => gicd::TYPER_LPIS | (15 << gicd::TYPER_IDBITS_SHIFT),
                    GicVersion::V2 => 0,
                };
                lines | (cpus << 5) | lpis
            }
            gicd::PIDR2 => match v {
                GicVersion::V2 => 0x20,
                GicVersion::V3 => 0x30,
            },
            _ => {
                for bank in BITMAP_REGS {
                    if let Some(first) = bank.decode(off) {
                        if first < 32 && private_raz {
                            return 0;
                        }
                        return g.bitmap_read(cpu, bank, first);
                    }
                }
                if let Some(first) = gicd::IPRIORITYR.decode(off) {
                    if first < 32 && private_raz {
                        return 0;
                    }
                    return g.bytes_read(cpu, first, |s| s.priority);
                }
                if let (GicVersion::V2, Some(first)) = (v, gicd::ITARGETSR.decode(off)) {
                    if g.cpus.len() == 1 {
                        // Uniprocessor: RAZ/WI (IHI 0048B 4.3.12).
                        return 0;
                    }
                    if first < 32 {
                        // Private INTIDs read as "this CPU" (IHI 0048B 4.3.12).
                        let me = 1u32 << (cpu & 7);
                        return me * 0x0101_0101;
                    }
                    return (0..4).fold(0, |acc, k| {
                        let t = spi_index(first + k, g.spis.len()).map_or(0, |i| g.targets[i]);
                        acc | (u32::from(t) << (8 * k))
                    });
                }
                if let Some(first) = gicd::ICFGR.decode(off) {
                    if first < 32 && private_raz {
                        return 0;
                    }
                    return g.cfg_read(cpu, first);
                }
                if let (GicVersion::V3, Some(intid)) = (v, gicd::IROUTER.decode(off)) {
                    let r = spi_index(intid, g.spis.len()).map_or(0, |i| g.router[i]);
                    return if off.is_multiple_of(8) {
                        r as u32
                    } else {
                        (r >> 32) as u32
                    };
                }
                0
            }
        }
    }

    fn dist_write(&self, g: &mut Inner, cpu: usize, off: usize, value: u32) {
        let v = self.model.version;
        let private_wi = v == GicVersion::V3;
        match off {
            GICD_CTLR => {
                let mask = match v {
                    GicVersion::V2 => GicdCtlr::ENABLE_G0 | GicdCtlr::ENABLE_G1,
                    GicVersion::V3 => GicdCtlr::ENABLE_G0 | GicdCtlr::ENABLE_G1 | GicdCtlr::ARE,
                };
                g.ctlr = GicdCtlr::from_bits_retain(value) & mask;
            }
            gicd::SGIR if v == GicVersion::V2 => {
                let intid = value & 0xf;
                let targets: Vec<usize> = match value & (3 << 24) {
                    gicd::SGIR_FILTER_LIST => (0..g.cpus.len())
                        .filter(|&t| (value >> gicd::SGIR_TARGETS_SHIFT) & (1 << t) != 0)
                        .collect(),
                    gicd::SGIR_FILTER_OTHERS => (0..g.cpus.len()).filter(|&t| t != cpu).collect(),
                    gicd::SGIR_FILTER_SELF => vec![cpu],
                    _ => Vec::new(),
                };
                for t in targets {
                    g.send_sgi(v, cpu, t, intid);
                }
            }
            _ => {
                for bank in BITMAP_REGS {
                    if let Some(first) = bank.decode(off) {
                        if !(first < 32 && private_wi) {
                            g.bitmap_write(cpu, bank, first, value, false);
                        }
                        return;
                    }
                }
                if let Some(first) = gicd::IPRIORITYR.decode(off) {
                    if !(first < 32 && private_wi) {
                        g.priority_write(cpu, first, value);
                    }
                    return;
                }
                if let (GicVersion::V2, Some(first)) = (v, gicd::ITARGETSR.decode(off)) {
                    if g.cpus.len() == 1 {
                        return; // uniprocessor: RAZ/WI
                    }
                    for k in 0..4 {
                        if let Some(i) = spi_index(first + k, g.spis.len()) {
                            let new = (value >> (8 * k)) as u8;
                            if new != g.targets[i] && g.route_change_refused(cpu, first + k) {
                                continue;
                            }
                            g.targets[i] = new;
                        }
                    }
                    return;
                }
                if let Some(first) = gicd::ICFGR.decode(off) {
                    if !(first < 32 && private_wi) {
                        g.cfg_write(cpu, first, value);
                    }
                    return;
                }
                if let (GicVersion::V3, Some(intid)) = (v, gicd::IROUTER.decode(off))
                    && let Some(i) = spi_index(intid, g.spis.len())
                {
                    let old = g.router[i];
                    let new = if off.is_multiple_of(8) {
                        (old & !0xffff_ffff) | u64::from(value)
                    } else {
                        (old & 0xffff_ffff) | (u64::from(value) << 32)
                    };
                    // A 64-bit write arrives as two halves; only a half
                    // that changes the route is a move.
                    if new != old && g.route_change_refused(cpu, intid) {
                        return;
                    }
                    g.router[i] = new;
                }
            }
        }
    }

    fn redist_read(&self, g: &mut Inner, off: usize) -> u32 {
        let cpu = off / gicr::STRIDE;
        let reg = off % gicr::STRIDE;
        let n = g.cpus.len();
        let Some(c) = g.cpus.get_mut(cpu) else {
            return 0;
        };
        match reg {
            GICR_CTLR => u32::from(c.lpis_enabled),
            gicr::PROPBASER => c.propbaser as u32,
            0x74 => (c.propbaser >> 32) as u32,
            gicr::PENDBASER => c.pendbaser as u32,
            0x7C => (c.pendbaser >> 32) as u32,
            gicr::TYPER | 0xC => {
                let typer = (u64::from(mpidr_to_aff32(c.mpidr)) << 32)
                    | ((cpu as u64) << 8)
                    | gicr::TYPER_PLPIS
                    | if cpu + 1 == n { gicr::TYPER_LAST } else { 0 };
                if reg == gicr::TYPER {
                    typer as u32
                } else {
                    (typer >> 32) as u32
                }
            }
            GICR_WAKER => {
                if c.children_asleep != c.processor_sleep {
                    if c.wake_countdown == 0 {
                        c.children_asleep = c.processor_sleep;
                        let e = if c.children_asleep {
                            Event::RedistributorAsleep(model_cpu(cpu))
                        } else {
                            Event::RedistributorAwake(model_cpu(cpu))
                        };
                        g.events.push(e);
                    } else {
                        c.wake_countdown -= 1;
                    }
                }
                let c = &g.cpus[cpu];
                let mut waker = GicrWaker::empty();
                waker.set(GicrWaker::PROCESSOR_SLEEP, c.processor_sleep);
                waker.set(GicrWaker::CHILDREN_ASLEEP, c.children_asleep);
                waker.bits()
            }
            gicr::ICFGR0 => 0xAAAA_AAAA,
            gicr::ICFGR1 => g.cfg_read(cpu, 16),
            _ if reg >= gicr::SGI_BASE => {
                let sgi = reg - gicr::SGI_BASE;
                if let Some(bank) = BITMAP_REGS.into_iter().find(|b| b.offset() == sgi) {
                    return g.bitmap_read(cpu, bank, 0);
                }
                match gicd::IPRIORITYR.decode(sgi) {
                    Some(first) if first < 32 => g.bytes_read(cpu, first, |s| s.priority),
                    _ => 0,
                }
            }
            _ => 0,
        }
    }

    fn redist_write(&self, g: &mut Inner, off: usize, value: u32) {
        let cpu = off / gicr::STRIDE;
        let reg = off % gicr::STRIDE;
        let delay = self.model.wake_delay;
        let Some(c) = g.cpus.get_mut(cpu) else {
            return;
        };
        let set_half = |r: &mut u64, high: bool| {
            *r = if high {
                (*r & 0xffff_ffff) | (u64::from(value) << 32)
            } else {
                (*r & !0xffff_ffff) | u64::from(value)
            };
        };
        match reg {
            GICR_CTLR
                if GicrCtlr::from_bits_retain(value).contains(GicrCtlr::ENABLE_LPIS)
                    && !c.lpis_enabled =>
            {
                if c.propbaser & gicr::BASER_ADDR_MASK == 0
                    || c.pendbaser & gicr::BASER_ADDR_MASK == 0
                {
                    g.violations
                        .push(format!("cpu{cpu}: EnableLPIs without PROPBASER/PENDBASER"));
                    return;
                }
                c.lpis_enabled = true;
            }
            gicr::PROPBASER | 0x74 | gicr::PENDBASER | 0x7C => {
                if c.lpis_enabled {
                    // UNPREDICTABLE once LPIs are on (IHI 0069H 12.11.29).
                    g.violations.push(format!(
                        "cpu{cpu}: GICR_PROPBASER/PENDBASER written with LPIs enabled"
                    ));
                    return;
                }
                let high = reg & 4 != 0;
                if reg < gicr::PENDBASER {
                    set_half(&mut c.propbaser, high);
                } else {
                    set_half(&mut c.pendbaser, high);
                }
            }
            GICR_WAKER => {
                let sleep = GicrWaker::from_bits_retain(value).contains(GicrWaker::PROCESSOR_SLEEP);
                if sleep != c.processor_sleep {
                    c.processor_sleep = sleep;
                    c.wake_countdown = delay;
                }
            }
            gicr::ICFGR1 => g.cfg_write(cpu, 16, value),
            _ if reg >= gicr::SGI_BASE => {
                let sgi = reg - gicr::SGI_BASE;
                if let Some(bank) = BITMAP_REGS.into_iter().find(|b| b.offset() == sgi) {
                    g.bitmap_write(cpu, bank, 0, value, true);
                } else if let Some(first) = gicd::IPRIORITYR.decode(sgi).filter(|f| *f < 32) {
                    g.priority_write(cpu, first, value);
                }
            }
            _ => {}
        }
    }

    fn cpuif_read(&self, g: &mut Inner, cpu: usize, off: usize) -> u32 {
        let v = self.model.version;
        let Some(c) = g.cpus.get(cpu) else {
            return 0;
        };
        match off {
            GICC_CTLR => {
                let mut ctlr = GiccCtlr::empty();
                ctlr.set(GiccCtlr::ENABLE_G0, c.grp0_enabled);
                ctlr.set(GiccCtlr::ENABLE_G1, c.grp1_enabled);
                ctlr.set(GiccCtlr::EOIMODE, c.eoimode);
                ctlr.bits()
            }
            gicc::PMR => u32::from(c.pmr),
            gicc::BPR => u32::from(c.bpr),
            gicc::RPR => u32::from(c.running_priority()),
            gicc::IAR => g.acknowledge(v, cpu),
            _ => 0,
        }
    }

    fn cpuif_write(&self, g: &mut Inner, cpu: usize, off: usize, value: u32) {
        let Some(c) = g.cpus.get_mut(cpu) else {
            return;
        };
        match off {
            GICC_CTLR => {
                let ctlr = GiccCtlr::from_bits_retain(value);
                c.grp0_enabled = ctlr.contains(GiccCtlr::ENABLE_G0);
                c.grp1_enabled = ctlr.contains(GiccCtlr::ENABLE_G1);
                c.eoimode = ctlr.contains(GiccCtlr::EOIMODE);
            }
            gicc::PMR => c.pmr = value as u8,
            gicc::BPR => c.bpr = (value & 7) as u8,
            gicc::EOIR => g.end_of_interrupt(cpu, value & gicc::IAR_INTID_MASK),
            gicc::DIR => g.deactivate_request(cpu, value & gicc::IAR_INTID_MASK),
            _ => {}
        }
    }
}

impl Mmio for ModelMmio {
    fn size(&self) -> usize {
        match self.frame {
            Frame::Distributor => gicd::FRAME_SIZE,
            Frame::CpuInterface => gicc::FRAME_SIZE,
            Frame::Redistributors => self.model.num_cpus() * gicr::STRIDE,
        }
    }

    fn read32(&self, offset: usize) -> u32 {
        let cpu = current_cpu().index();
        let mut g = self.model.lock();
        match self.frame {
            Frame::Distributor => self.dist_read(&mut g, cpu, offset),
            Frame::CpuInterface => self.cpuif_read(&mut g, cpu, offset),
            Frame::Redistributors => self.redist_read(&mut g, offset),
        }
    }

    fn write32(&self, offset: usize, value: u32) {
        let cpu = current_cpu().index();
        let mut g = self.model.lock();
        match self.frame {
            Frame::Distributor => self.dist_write(&mut g, cpu, offset, value),
            Frame::CpuInterface => self.cpuif_write(&mut g, cpu, offset, value),
            Frame::Redistributors => self.redist_write(&mut g, offset, value),
        }
    }
}

/// The GICv3 CPU interface of the current CPU, implementing [`GicSysRegs`].
#[derive(Clone, Debug)]
pub struct ModelSysRegs {
    model: Arc<GicModel>,
}

impl GicSysRegs for ModelSysRegs {
    fn read(&self, reg: IccReg) -> u64 {
        let cpu = current_cpu().index();
        let mut guard = self.model.lock();
        let g = &mut *guard;
        let Some(c) = g.cpus.get(cpu) else {
            return 0;
        };
        if reg != IccReg::Sre && !c.sre {
            g.violations.push(format!(
                "cpu{cpu}: {reg:?} read before ICC_SRE_EL1.SRE was set"
            ));
            return 0;
        }
        match reg {
            IccReg::Iar1 => u64::from(g.acknowledge(GicVersion::V3, cpu)),
            IccReg::Pmr => u64::from(c.pmr),
            IccReg::Rpr => u64::from(c.running_priority()),
            IccReg::Bpr1 => u64::from(c.bpr),
            IccReg::Ctlr => {
                if c.eoimode {
                    icc::CTLR_EOIMODE
                } else {
                    0
                }
            }
            IccReg::Igrpen1 => u64::from(c.grp1_enabled),
            IccReg::Sre => u64::from(c.sre),
            IccReg::Eoir1 | IccReg::Dir | IccReg::Sgi1r => 0,
        }
    }

    fn write(&self, reg: IccReg, value: u64) {
        let cpu = current_cpu().index();
        let mut guard = self.model.lock();
        let g = &mut *guard;
        let Some(c) = g.cpus.get_mut(cpu) else {
            return;
        };
        if reg != IccReg::Sre && !c.sre {
            g.violations.push(format!(
                "cpu{cpu}: {reg:?} written before ICC_SRE_EL1.SRE was set"
            ));
            return;
        }
        match reg {
            IccReg::Sre => c.sre = value & icc::SRE_SRE != 0,
            IccReg::Pmr => c.pmr = value as u8,
            IccReg::Bpr1 => c.bpr = (value & 7) as u8,
            IccReg::Ctlr => c.eoimode = value & icc::CTLR_EOIMODE != 0,
            IccReg::Igrpen1 => c.grp1_enabled = value & icc::IGRPEN1_ENABLE != 0,
            IccReg::Eoir1 => g.end_of_interrupt(cpu, (value & icc::IAR_INTID_MASK) as u32),
            IccReg::Dir => g.deactivate_request(cpu, (value & icc::IAR_INTID_MASK) as u32),
            IccReg::Sgi1r => {
                let intid = ((value >> icc::SGI1R_INTID_SHIFT) & 0xf) as u32;
                let targets: Vec<usize> = if value & icc::SGI1R_IRM != 0 {
                    (0..g.cpus.len()).filter(|&t| t != cpu).collect()
                } else {
                    let aff3 = (value >> icc::SGI1R_AFF3_SHIFT) & 0xff;
                    let aff2 = (value >> icc::SGI1R_AFF2_SHIFT) & 0xff;
                    let aff1 = (value >> icc::SGI1R_AFF1_SHIFT) & 0xff;
                    let rs = (value >> icc::SGI1R_RS_SHIFT) & 0xf;
                    let list = value & 0xffff;
                    (0..g.cpus.len())
                        .filter(|&t| {
                            let m = g.cpus[t].mpidr;
                            let aff0 = m & 0xff;
                            (m >> 32) & 0xff == aff3
                                && (m >> 16) & 0xff == aff2
                                && (m >> 8) & 0xff == aff1
                                && aff0 / 16 == rs
                                && list & (1 << (aff0 % 16)) != 0
                        })
                        .collect()
                };
                for t in targets {
                    g.send_sgi(GicVersion::V3, cpu, t, intid);
                }
            }
            IccReg::Iar1 | IccReg::Rpr => {}
        }
    }

    fn mpidr(&self) -> u64 {
        let cpu = current_cpu();
        // Bit 31 is RES1 in MPIDR_EL1; drivers must mask it off.
        self.model.mpidr_of(cpu) | (1 << 31)
    }
}

// Keep `aff32_to_mpidr` exercised from the model's point of view: the
// driver converts GICR_TYPER affinity back with it.
const _: () = assert!(aff32_to_mpidr(mpidr_to_aff32(0x01_0002_0304)) == 0x01_0002_0304);
