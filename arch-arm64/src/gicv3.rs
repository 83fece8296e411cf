//! GICv3: distributor with affinity routing, one redistributor per CPU
//! (found by its `GICR_TYPER` affinity), and the CPU interface through the
//! `ICC_*_EL1` system registers (IHI 0069H).
//!
//! All interrupts are non-secure group 1, acknowledged with `ICC_IAR1_EL1`.

use crate::common::{Bank, CpuTable, GicError, GicOptions, SgiTarget, poll, trigger_config};
use crate::intid::{IntId, translate_three_cell};
use crate::lpi::LpiTables;
use crate::regs::{
    GicSysRegs, GicdCtlr, GicrCtlr, GicrWaker, IccReg, MPIDR_AFFINITY_MASK, Mmio, TypedMmio,
    aff32_to_mpidr, gicd, gicr, icc, mpidr_to_aff32,
};
use alloc::vec::Vec;
use irqcore::{
    AffinitySet, ChipError, ChipFlags, CpuId, CpuMask, HwIrq, IrqChip, IrqData, IrqError,
    TriggerType,
};
use spin::Mutex;

/// One redistributor found in a redistributor region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Redistributor {
    /// Its packed affinity `Aff3.Aff2.Aff1.Aff0` (`GICR_TYPER[63:32]`).
    pub affinity: u32,
    /// Index of the region (as passed to [`GicV3::new`]) it lies in.
    pub region: usize,
    /// Offset of its `RD_base` frame within the region.
    pub offset: usize,
}

/// A GICv3 driver and its [`IrqChip`].
///
/// Setup order: [`GicV3::new`] (discovers the redistributors),
/// [`GicV3::init_distributor`] on the boot CPU, then [`GicV3::cpu_starting`]
/// on every CPU (the boot CPU included) as it comes up, and
/// [`GicV3::cpu_dying`] on a CPU going down.
#[derive(Debug)]
pub struct GicV3<M: Mmio, S: GicSysRegs> {
    dist: M,
    regions: Vec<M>,
    sysregs: S,
    num_lines: u32,
    opts: GicOptions,
    rdists: Vec<Redistributor>,
    cpus: CpuTable,
    /// Serialises read-modify-write of shared registers (`IPRIORITYR`,
    /// `ICFGR`, the disable/route/enable sequence of `set_affinity`) and the
    /// routing sweep of `cpu_dying`. Innermost lock: taken inside descriptor
    /// locks, never the other way round.
    lock: Mutex<()>,
}

impl<M: Mmio, S: GicSysRegs> GicV3<M, S> {
    /// A driver for the distributor `dist`, the redistributor regions
    /// `regions` (device tree `reg` entries after the distributor) and the
    /// calling CPU's system registers `sysregs`. Walks every region reading
    /// `GICR_TYPER` until a redistributor with `Last` set (or the region's
    /// end), stepping two frames (four with `VLPIS`).
    pub fn new(dist: M, regions: Vec<M>, sysregs: S, opts: GicOptions) -> Result<Self, GicError> {
        if dist.size() < gicd::FRAME_SIZE {
            return Err(GicError::BadLayout);
        }
        let mut rdists = Vec::new();
        for (r, region) in regions.iter().enumerate() {
            let mut off = 0;
            while off + gicr::STRIDE <= region.size() {
                let typer = region.read64(off + gicr::TYPER);
                rdists.push(Redistributor {
                    affinity: (typer >> 32) as u32,
                    region: r,
                    offset: off,
                });
                if typer & gicr::TYPER_LAST != 0 {
                    break;
                }
                off += if typer & gicr::TYPER_VLPIS != 0 {
                    gicr::STRIDE_VLPIS
                } else {
                    gicr::STRIDE
                };
            }
        }
        if rdists.is_empty() {
            return Err(GicError::BadLayout);
        }
        let lines = ((dist.read32(gicd::TYPER) & 0x1f) + 1) * 32;
        Ok(Self {
            dist,
            regions,
            sysregs,
            num_lines: lines.min(IntId::SPI_END),
            opts,
            rdists,
            cpus: CpuTable::new(opts.max_cpus),
            lock: Mutex::new(()),
        })
    }

    /// The redistributors found by [`GicV3::new`].
    pub fn redistributors(&self) -> &[Redistributor] {
        &self.rdists
    }

    /// Number of INTIDs the distributor implements.
    pub fn num_lines(&self) -> u32 {
        self.num_lines
    }

    /// Whether the driver runs in split EOI mode.
    pub fn split_eoi(&self) -> bool {
        self.opts.split_eoi
    }

    fn my_affinity(&self) -> u64 {
        self.sysregs.mpidr() & MPIDR_AFFINITY_MASK
    }

    /// The calling CPU, if it has been started on this GIC.
    pub fn current_cpu(&self) -> Option<CpuId> {
        self.cpus.cpu_of(self.my_affinity())
    }

    fn dist_bank(&self) -> Bank<'_, M> {
        Bank {
            mmio: &self.dist,
            base: 0,
        }
    }

    fn rd(&self, cpu: CpuId) -> Option<(&M, usize)> {
        let rd = self.rdists.get(self.cpus.rdist(cpu)?)?;
        Some((self.regions.get(rd.region)?, rd.offset))
    }

    /// The SGI/PPI bank of the calling CPU's redistributor.
    fn my_private_bank(&self) -> Option<Bank<'_, M>> {
        let (mmio, off) = self.rd(self.current_cpu()?)?;
        Some(Bank {
            mmio,
            base: off + gicr::SGI_BASE,
        })
    }

    /// The bank holding `id` as seen from the calling CPU (none for an LPI:
    /// its state lives in memory, see [`crate::lpi`]).
    fn bank_for(&self, id: IntId) -> Option<Bank<'_, M>> {
        if id.is_lpi() {
            None
        } else if id.is_private() {
            self.my_private_bank()
        } else {
            Some(self.dist_bank())
        }
    }

    fn wait_dist_rwp(&self) -> Result<(), GicError> {
        poll(self.opts.poll_limit, || {
            !self.dist.load(gicd::CTLR).contains(GicdCtlr::RWP)
        })
    }

    fn wait_rwp_for(&self, bank: &Bank<'_, M>) -> Result<(), GicError> {
        if bank.base == 0 {
            self.wait_dist_rwp()
        } else {
            let ctlr = gicr::CTLR.in_frame(bank.base - gicr::SGI_BASE);
            poll(self.opts.poll_limit, || {
                !bank.mmio.load(ctlr).contains(GicrCtlr::RWP)
            })
        }
    }

    fn spis(&self) -> impl Iterator<Item = IntId> {
        (IntId::SPI_BASE..self.num_lines).filter_map(IntId::new)
    }

    /// Initialises the distributor (on the boot CPU, once): every SPI group
    /// 1, disabled, inactive, not pending, level, default priority; affinity
    /// routing and group 1 enabled; every SPI routed to the calling CPU.
    pub fn init_distributor(&self) -> Result<(), GicError> {
        let _g = self.lock.lock();
        self.dist.store(gicd::CTLR, GicdCtlr::empty());
        self.wait_dist_rwp()?;
        let bank = self.dist_bank();
        for w in 1..(self.num_lines / 32) as usize {
            bank.write_word(gicd::IGROUPR, w, u32::MAX);
            bank.write_word(gicd::ICENABLER, w, u32::MAX);
            bank.write_word(gicd::ICPENDR, w, u32::MAX);
            bank.write_word(gicd::ICACTIVER, w, u32::MAX);
        }
        for w in 2..(self.num_lines / 16) as usize {
            bank.write_word(gicd::ICFGR, w, 0);
        }
        let prio = u32::from(self.opts.default_priority) * 0x0101_0101;
        for w in 8..(self.num_lines / 4) as usize {
            bank.write_word(gicd::IPRIORITYR, w, prio);
        }
        self.wait_dist_rwp()?;
        self.dist
            .store(gicd::CTLR, GicdCtlr::ARE | GicdCtlr::ENABLE_G1);
        self.wait_dist_rwp()?;
        // IROUTER is only meaningful once ARE is set (IHI 0069H 12.9.22).
        let me = self.my_affinity();
        for id in self.spis() {
            self.dist.write64(gicd::IROUTER.word(id), me);
        }
        Ok(())
    }

    /// Hotplug "starting" step, on the CPU `cpu` itself with interrupts off:
    /// finds its redistributor by affinity, **wakes it** (clears
    /// `ProcessorSleep`, waits for `ChildrenAsleep` to clear) **before**
    /// touching its SGI/PPI frame (SGIs are enabled for IPIs, PPIs stay
    /// disabled until their drivers enable them, which they can only do
    /// after this step), then sets up the CPU interface: system registers
    /// on, priority mask, EOI mode, group 1 enabled.
    pub fn cpu_starting(&self, cpu: CpuId) -> Result<(), GicError> {
        self.cpus.check(cpu)?;
        let aff = self.my_affinity();
        let idx = self
            .rdists
            .iter()
            .position(|r| r.affinity == mpidr_to_aff32(aff))
            .ok_or(GicError::NoRedistributor(cpu))?;
        self.cpus.claim(cpu, aff, idx)?;
        let (rd, off) = self.rd(cpu).ok_or(GicError::BadLayout)?;

        // 1. Wake the redistributor (IHI 0069H 12.11.42, "Power management").
        let waker = gicr::WAKER.in_frame(off);
        rd.modify(waker, |w| w - GicrWaker::PROCESSOR_SLEEP);
        poll(self.opts.poll_limit, || {
            !rd.load(waker).contains(GicrWaker::CHILDREN_ASLEEP)
        })?;

        // 2. Its SGIs and PPIs.
        {
            let _g = self.lock.lock();
            let bank = Bank {
                mmio: rd,
                base: off + gicr::SGI_BASE,
            };
            bank.write_word(gicd::IGROUPR, 0, u32::MAX);
            bank.write_word(gicd::ICACTIVER, 0, u32::MAX);
            bank.write_word(gicd::ICENABLER, 0, 0xffff_0000);
            self.wait_rwp_for(&bank)?;
            let prio = u32::from(self.opts.default_priority) * 0x0101_0101;
            for w in 0..8 {
                bank.write_word(gicd::IPRIORITYR, w, prio);
            }
            bank.write_word(gicd::ISENABLER, 0, 0x0000_ffff);
        }

        // 3. The CPU interface.
        self.sysregs.write(IccReg::Sre, icc::SRE_SRE);
        if self.sysregs.read(IccReg::Sre) & icc::SRE_SRE == 0 {
            // A hypervisor or firmware that forbids the system-register
            // interface: this driver cannot work on this CPU.
            return Err(GicError::BadLayout);
        }
        self.sysregs
            .write(IccReg::Pmr, u64::from(self.opts.priority_mask));
        self.sysregs.write(IccReg::Bpr1, 0);
        let mode = if self.opts.split_eoi {
            icc::CTLR_EOIMODE
        } else {
            0
        };
        self.sysregs.write(IccReg::Ctlr, mode);
        self.sysregs.write(IccReg::Igrpen1, icc::IGRPEN1_ENABLE);
        self.cpus.set_online(cpu, true);
        Ok(())
    }

    /// Hotplug "dying" step, on the CPU `cpu` itself with interrupts off
    /// (inside stop-machine): stops taking group 1 interrupts, re-routes
    /// every SPI aimed at it to the first other online CPU, and **puts its
    /// redistributor to sleep** (sets `ProcessorSleep`, waits for
    /// `ChildrenAsleep`). Returns how many SPIs were re-routed.
    ///
    /// With irqcore's hotplug, descriptors are migrated by the core (through
    /// [`IrqChip::set_affinity`]) before this runs; this sweep catches lines
    /// that have no descriptor.
    pub fn cpu_dying(&self, cpu: CpuId) -> Result<usize, GicError> {
        let aff = self.cpus.hw_id(cpu).ok_or(GicError::BadCpu(cpu))?;
        if aff != self.my_affinity() {
            return Err(GicError::WrongCpu(cpu));
        }
        let target = self
            .cpus
            .first_online_except(cpu)
            .and_then(|c| self.cpus.hw_id(c))
            .ok_or(GicError::NoTargetCpu)?;
        let (rd, off) = self.rd(cpu).ok_or(GicError::BadLayout)?;
        self.cpus.set_online(cpu, false);
        self.sysregs.write(IccReg::Igrpen1, 0);
        let mut moved = 0;
        {
            let _g = self.lock.lock();
            for id in self.spis() {
                let reg = gicd::IROUTER.word(id);
                let r = self.dist.read64(reg);
                if r & gicd::IROUTER_IRM == 0 && r & MPIDR_AFFINITY_MASK == aff {
                    self.dist.write64(reg, target);
                    moved += 1;
                }
            }
        }
        let waker = gicr::WAKER.in_frame(off);
        rd.modify(waker, |w| w | GicrWaker::PROCESSOR_SLEEP);
        // A redistributor without power management ignores the write
        // (Xen's vGICv3 reads GICR_WAKER as zero): it never reports
        // ChildrenAsleep, so there is nothing to wait for (polling would
        // only time out, each read a trap to the hypervisor).
        if rd.load(waker).contains(GicrWaker::PROCESSOR_SLEEP) {
            poll(self.opts.poll_limit, || {
                rd.load(waker).contains(GicrWaker::CHILDREN_ASLEEP)
            })?;
        }
        Ok(moved)
    }

    /// The acknowledge loop, for the IRQ exception entry of the calling CPU:
    /// acknowledges (`ICC_IAR1_EL1`) until nothing is pending and calls
    /// `dispatch` for each INTID. `dispatch` returns `true` if it ran a flow
    /// handler (which completes the interrupt through the chip's `eoi`); on
    /// `false` the loop completes it itself so the line is not left active.
    /// In split EOI mode the priority is dropped (`ICC_EOIR1_EL1`) here,
    /// right after the acknowledge, and `eoi` only deactivates.
    /// Returns the number of interrupts acknowledged.
    pub fn handle_pending(&self, mut dispatch: impl FnMut(IntId) -> bool) -> usize {
        let mut n = 0;
        loop {
            let iar = self.sysregs.read(IccReg::Iar1) & icc::IAR_INTID_MASK;
            let Some(id) = u32::try_from(iar).ok().and_then(IntId::new) else {
                break;
            };
            n += 1;
            if self.opts.split_eoi {
                self.sysregs.write(IccReg::Eoir1, iar);
            }
            if !dispatch(id) {
                self.complete(id);
            }
        }
        n
    }

    fn complete(&self, id: IntId) {
        let reg = if self.opts.split_eoi {
            IccReg::Dir
        } else {
            IccReg::Eoir1
        };
        self.sysregs.write(reg, u64::from(id.get()));
    }

    /// Sends SGI `sgi` (an IPI) through `ICC_SGI1R_EL1`: one write per
    /// group of targets sharing Aff3.Aff2.Aff1 and the same 16-CPU range of
    /// Aff0, or one write with `IRM` for [`SgiTarget::AllButSelf`].
    pub fn send_sgi(&self, sgi: IntId, target: SgiTarget<'_>) -> Result<(), GicError> {
        if sgi.get() >= 16 {
            return Err(GicError::NotSgi);
        }
        let intid = u64::from(sgi.get()) << icc::SGI1R_INTID_SHIFT;
        let sgi1r = |aff: u64, list: u64| {
            ((aff >> 32) & 0xff) << icc::SGI1R_AFF3_SHIFT
                | ((aff & 0xff) / 16) << icc::SGI1R_RS_SHIFT
                | ((aff >> 16) & 0xff) << icc::SGI1R_AFF2_SHIFT
                | ((aff >> 8) & 0xff) << icc::SGI1R_AFF1_SHIFT
                | intid
                | list
        };
        match target {
            SgiTarget::AllButSelf => {
                self.sysregs.write(IccReg::Sgi1r, icc::SGI1R_IRM | intid);
            }
            SgiTarget::ToSelf => {
                let me = self.my_affinity();
                self.sysregs.write(IccReg::Sgi1r, sgi1r(me, 1 << (me % 16)));
            }
            SgiTarget::Cpus(mask) => {
                let mut affs = Vec::with_capacity(mask.weight());
                for c in mask.iter() {
                    affs.push(self.cpus.hw_id(c).ok_or(GicError::BadCpu(c))?);
                }
                // Group key: everything but the low 4 bits of Aff0.
                let key = |a: u64| a & !0xf;
                let mut done = alloc::vec![false; affs.len()];
                for i in 0..affs.len() {
                    if done[i] {
                        continue;
                    }
                    let mut list = 0u64;
                    for j in i..affs.len() {
                        if !done[j] && key(affs[j]) == key(affs[i]) {
                            list |= 1 << (affs[j] & 0xf);
                            done[j] = true;
                        }
                    }
                    self.sysregs.write(IccReg::Sgi1r, sgi1r(affs[i], list));
                }
            }
        }
        Ok(())
    }

    /// Sets the priority of `id` (SGIs/PPIs: on the calling CPU).
    pub fn set_priority(&self, id: IntId, prio: u8) {
        if let Some(bank) = self.bank_for(id) {
            let _g = self.lock.lock();
            bank.set_priority(id, prio);
        }
    }

    /// Sets the calling CPU interface's priority mask.
    pub fn set_priority_mask(&self, mask: u8) {
        self.sysregs.write(IccReg::Pmr, u64::from(mask));
    }

    /// The calling CPU's running priority (`ICC_RPR_EL1`, 0xff when idle).
    pub fn running_priority(&self) -> u8 {
        self.sysregs.read(IccReg::Rpr) as u8
    }

    /// Translates a three-cell specifier and checks the INTID exists here.
    pub fn translate(&self, cells: &[u32]) -> Result<(HwIrq, TriggerType), IrqError> {
        let (hw, t) = translate_three_cell(cells)?;
        if hw.0 >= u64::from(self.num_lines) {
            return Err(IrqError::BadHwIrq(hw));
        }
        Ok((hw, t))
    }

    /// The `MPIDR_EL1` affinity a started CPU was found with.
    pub fn cpu_affinity(&self, cpu: CpuId) -> Option<u64> {
        self.cpus.hw_id(cpu)
    }

    fn intid(&self, d: &IrqData<'_>) -> Option<IntId> {
        IntId::from_hwirq(d.hwirq())
            .filter(|id| id.get() < self.num_lines || (id.is_lpi() && self.has_lpis()))
    }

    /// Whether the distributor supports LPIs (`GICD_TYPER.LPIS`).
    pub fn has_lpis(&self) -> bool {
        self.dist.read32(gicd::TYPER) & gicd::TYPER_LPIS != 0
    }

    /// INTID bits the distributor implements (`GICD_TYPER.IDbits` + 1).
    pub fn id_bits(&self) -> u32 {
        ((self.dist.read32(gicd::TYPER) >> gicd::TYPER_IDBITS_SHIFT) & 0x1f) + 1
    }

    /// `GICR_TYPER.Processor_Number` of `cpu`'s redistributor: the target
    /// an ITS with `GITS_TYPER.PTA` = 0 names in `MAPC` and `SYNC`.
    pub fn processor_number(&self, cpu: CpuId) -> Option<u64> {
        let (rd, off) = self.rd(cpu)?;
        Some((rd.read64(off + gicr::TYPER) >> gicr::TYPER_PROCESSOR_SHIFT) & 0xffff)
    }

    /// Enables LPIs on `cpu`'s redistributor with `tables` (IHI 0069H
    /// 5.1.1): `GICR_PROPBASER`, `GICR_PENDBASER`, then
    /// `GICR_CTLR.EnableLPIs`. The CPU must have been started
    /// ([`GicV3::cpu_starting`]); it may be called from any CPU. A
    /// redistributor whose LPIs are already on (a CPU coming back online:
    /// `EnableLPIs` may be impossible to clear) is left as is if it uses
    /// these tables, and refused otherwise.
    pub fn enable_lpis(&self, cpu: CpuId, tables: &LpiTables) -> Result<(), GicError> {
        if !self.has_lpis() || tables.id_bits() > self.id_bits() {
            return Err(GicError::Unsupported);
        }
        let (rd, off) = self.rd(cpu).ok_or(GicError::BadCpu(cpu))?;
        if rd.read64(off + gicr::TYPER) & gicr::TYPER_PLPIS == 0 {
            return Err(GicError::Unsupported);
        }
        let prop = tables.propbaser();
        let pend = tables.pendbaser(cpu)?;
        let ctlr = gicr::CTLR.in_frame(off);
        if rd.load(ctlr).contains(GicrCtlr::ENABLE_LPIS) {
            let cur = rd.read64(off + gicr::PROPBASER);
            return if cur & gicr::BASER_ADDR_MASK == prop & gicr::BASER_ADDR_MASK {
                Ok(())
            } else {
                Err(GicError::BadLayout)
            };
        }
        rd.write64(off + gicr::PROPBASER, prop);
        if rd.read64(off + gicr::PROPBASER) & gicr::BASER_SHAREABILITY_MASK == 0 {
            // The redistributor does not snoop (shareability reads back as
            // non-shareable): make its accesses non-cacheable so it reads
            // what `DmaRegion::publish` cleaned to memory.
            let nc = (prop & !(gicr::BASER_SHAREABILITY_MASK | gicr::BASER_INNER_WAWB)) | (1 << 7);
            rd.write64(off + gicr::PROPBASER, nc);
        }
        rd.write64(off + gicr::PENDBASER, pend);
        if rd.read64(off + gicr::PENDBASER) & gicr::BASER_SHAREABILITY_MASK == 0 {
            let nc = (pend & !(gicr::BASER_SHAREABILITY_MASK | gicr::BASER_INNER_WAWB)) | (1 << 7);
            rd.write64(off + gicr::PENDBASER, nc);
        }
        rd.modify(ctlr, |c| c | GicrCtlr::ENABLE_LPIS);
        poll(self.opts.poll_limit, || {
            !rd.load(ctlr).contains(GicrCtlr::RWP)
        })?;
        if !rd.load(ctlr).contains(GicrCtlr::ENABLE_LPIS) {
            return Err(GicError::Unsupported);
        }
        Ok(())
    }
}

impl<M: Mmio, S: GicSysRegs> IrqChip for GicV3<M, S> {
    fn name(&self) -> &str {
        "GICv3"
    }

    fn flags(&self) -> ChipFlags {
        self.opts.chip_flags()
    }

    fn mask(&self, d: &IrqData<'_>) {
        if let Some((id, bank)) = self.intid(d).and_then(|id| Some((id, self.bank_for(id)?))) {
            bank.disable(id);
            // The disable must have taken effect before the caller relies
            // on the line being quiet (IHI 0069H 12.9.4, RWP). A timeout
            // cannot be reported from here; the mask is still issued.
            let _ = self.wait_rwp_for(&bank);
        }
    }

    fn unmask(&self, d: &IrqData<'_>) {
        if let Some((id, bank)) = self.intid(d).and_then(|id| Some((id, self.bank_for(id)?))) {
            bank.enable(id);
        }
    }

    fn eoi(&self, d: &IrqData<'_>) {
        if let Some(id) = self.intid(d) {
            self.complete(id);
            if self.opts.verify_route && id.kind() == crate::IntKind::Spi {
                // Trap to the hypervisor now (any distributor read does),
                // so that it retires the EOIed list register before the
                // next instance can arrive (`GicOptions::for_xen_vgic`).
                let _ = self.dist.load(gicd::CTLR);
            }
        }
    }

    fn set_type(&self, d: &IrqData<'_>, trigger: TriggerType) -> Result<(), ChipError> {
        let id = self.intid(d).ok_or(ChipError::Invalid)?;
        if let Some(edge) = trigger_config(id, trigger)? {
            let bank = self.bank_for(id).ok_or(ChipError::Invalid)?;
            let _g = self.lock.lock();
            bank.set_edge(id, edge);
            self.wait_rwp_for(&bank)
                .map_err(|_| ChipError::Hardware(-110))?;
        }
        Ok(())
    }

    fn read_trigger(&self, d: &IrqData<'_>) -> TriggerType {
        // SGIs and PPIs from the calling CPU's redistributor.
        self.intid(d)
            .and_then(|id| Some(self.bank_for(id)?.trigger(id)))
            .unwrap_or(TriggerType::None)
    }

    fn set_affinity(
        &self,
        d: &IrqData<'_>,
        mask: &CpuMask,
        force: bool,
    ) -> Result<AffinitySet, ChipError> {
        let id = self.intid(d).ok_or(ChipError::Invalid)?;
        if id.is_private() || id.is_lpi() {
            // An LPI's route is its ITS collection: the ITS level moves it.
            return Err(ChipError::Unsupported);
        }
        let cpu = self.cpus.pick(mask, force).ok_or(ChipError::Invalid)?;
        let aff = self.cpus.hw_id(cpu).ok_or(ChipError::Invalid)?;
        let bank = self.dist_bank();
        let _g = self.lock.lock();
        // Re-route with the line disabled so that it is never delivered
        // under a half-written route (what Linux's driver does as well),
        // except on a virtual GIC where the disable itself can drop a
        // queued interrupt (`GicOptions::for_xen_vgic`).
        let enabled = !self.opts.route_enabled_spi_in_place && bank.is_enabled(id);
        if enabled {
            bank.disable(id);
            let _ = self.wait_dist_rwp();
        }
        self.dist.write64(gicd::IROUTER.word(id), aff);
        if enabled {
            bank.enable(id);
        }
        // Affinity fields only (Aff3, Aff2..Aff0; GIC spec 12.9.22): the
        // interrupt routing mode bit is not part of the route.
        const ROUTE_AFF: u64 = 0xff_00ff_ffff;
        if self.opts.verify_route
            && self.dist.read64(gicd::IROUTER.word(id)) & ROUTE_AFF != aff & ROUTE_AFF
        {
            return Err(ChipError::Busy);
        }
        Ok(AffinitySet::Applied {
            effective: CpuMask::of(cpu),
        })
    }

    fn retrigger(&self, d: &IrqData<'_>) -> bool {
        match self.intid(d).and_then(|id| Some((id, self.bank_for(id)?))) {
            Some((id, bank)) => {
                bank.set_pending(id);
                true
            }
            None => false,
        }
    }
}

// The packed/unpacked affinity helpers must agree for the redistributor
// lookup in `cpu_starting` to find anything.
const _: () = assert!(mpidr_to_aff32(aff32_to_mpidr(0x0102_0304)) == 0x0102_0304);
