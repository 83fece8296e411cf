//! GICv2: a distributor and a memory-mapped, per-CPU-banked CPU interface
//! (IHI 0048B).
//!
//! All interrupts stay in group 0 and are signalled as IRQs (no security
//! extensions, as on QEMU `virt` without `secure=on`).

use crate::common::{Bank, CpuTable, GicError, GicOptions, SgiTarget, trigger_config};
use crate::intid::{IntId, IntKind, translate_three_cell};
use crate::regs::{GiccCtlr, GicdCtlr, INTID_SPECIAL_FIRST, Mmio, TypedMmio, gicc, gicd};
use core::sync::atomic::{Ordering, fence};
use irqcore::{
    AffinitySet, ChipError, ChipFlags, CpuId, CpuMask, HwIrq, IrqChip, IrqData, IrqError,
    TriggerType,
};
use spin::Mutex;

/// A GICv2 driver and its [`IrqChip`].
///
/// Setup order: [`GicV2::new`], [`GicV2::init_distributor`] on the boot
/// CPU, then [`GicV2::cpu_starting`] on every CPU (the boot CPU included) as
/// it comes up, and [`GicV2::cpu_dying`] on a CPU going down.
#[derive(Debug)]
pub struct GicV2<M: Mmio> {
    dist: M,
    cpuif: M,
    num_lines: u32,
    opts: GicOptions,
    cpus: CpuTable,
    /// `GICD_TYPER.CPUNumber` is 0: `ITARGETSR` is RAZ/WI and every
    /// interrupt goes to the one CPU interface (IHI 0048B 4.3.12).
    uniprocessor: bool,
    /// Serialises read-modify-write of shared distributor words
    /// (`IPRIORITYR`, `ITARGETSR`, `ICFGR`) and the routing sweep of
    /// `cpu_dying`. Innermost lock: taken inside descriptor locks, never
    /// the other way round.
    lock: Mutex<()>,
}

impl<M: Mmio> GicV2<M> {
    /// A driver for the distributor frame `dist` and CPU interface frame
    /// `cpuif`. Split EOI needs the 8 KiB CPU interface (for `GICC_DIR`).
    pub fn new(dist: M, cpuif: M, opts: GicOptions) -> Result<Self, GicError> {
        if dist.size() < 0x1000 || cpuif.size() < 0x1000 {
            return Err(GicError::BadLayout);
        }
        if opts.split_eoi && cpuif.size() < gicc::FRAME_SIZE {
            return Err(GicError::BadLayout);
        }
        let typer = dist.read32(gicd::TYPER);
        let lines = ((typer & 0x1f) + 1) * 32;
        Ok(Self {
            dist,
            cpuif,
            num_lines: lines.min(IntId::SPI_END),
            opts,
            cpus: CpuTable::new(opts.max_cpus.min(8)),
            uniprocessor: (typer >> 5) & 7 == 0,
            lock: Mutex::new(()),
        })
    }

    /// Number of INTIDs the distributor implements.
    pub fn num_lines(&self) -> u32 {
        self.num_lines
    }

    /// Whether the driver runs in split EOI mode.
    pub fn split_eoi(&self) -> bool {
        self.opts.split_eoi
    }

    fn bank(&self) -> Bank<'_, M> {
        Bank {
            mmio: &self.dist,
            base: 0,
        }
    }

    fn spis(&self) -> impl Iterator<Item = IntId> {
        (IntId::SPI_BASE..self.num_lines).filter_map(IntId::new)
    }

    /// The calling CPU's interface mask: the private `ITARGETSR` bytes read
    /// as "this CPU" (IHI 0048B 4.3.12).
    fn my_iface_mask(&self) -> u8 {
        match self.dist.read32(gicd::ITARGETSR.offset()) as u8 {
            // Uniprocessor GICs read as zero here: the one interface is 0.
            0 if self.uniprocessor => 1,
            m => m,
        }
    }

    /// Initialises the distributor (on the boot CPU, once): every SPI
    /// disabled, inactive, not pending, level, group 0, default priority,
    /// routed to the calling CPU; then forwarding enabled.
    pub fn init_distributor(&self) -> Result<(), GicError> {
        let _g = self.lock.lock();
        self.dist.store(gicd::CTLR, GicdCtlr::empty());
        let me = u32::from(self.my_iface_mask());
        let bank = self.bank();
        for w in 1..(self.num_lines / 32) as usize {
            bank.write_word(gicd::ICENABLER, w, u32::MAX);
            bank.write_word(gicd::ICPENDR, w, u32::MAX);
            bank.write_word(gicd::ICACTIVER, w, u32::MAX);
            bank.write_word(gicd::IGROUPR, w, 0);
        }
        for w in 2..(self.num_lines / 16) as usize {
            bank.write_word(gicd::ICFGR, w, 0);
        }
        let prio = u32::from(self.opts.default_priority) * 0x0101_0101;
        for w in 8..(self.num_lines / 4) as usize {
            bank.write_word(gicd::IPRIORITYR, w, prio);
            bank.write_word(gicd::ITARGETSR, w, me * 0x0101_0101);
        }
        self.dist.store(gicd::CTLR, GicdCtlr::ENABLE_G0);
        Ok(())
    }

    /// Hotplug "starting" step, on the CPU `cpu` itself with interrupts off:
    /// learns its CPU interface number, configures its banked SGIs/PPIs
    /// (SGIs enabled for IPIs, PPIs disabled until their drivers enable
    /// them), and enables its CPU interface.
    pub fn cpu_starting(&self, cpu: CpuId) -> Result<(), GicError> {
        self.cpus.check(cpu)?;
        let mask = self.my_iface_mask();
        if mask.count_ones() != 1 {
            return Err(GicError::NoRedistributor(cpu));
        }
        self.cpus.claim(cpu, u64::from(mask.trailing_zeros()), 0)?;
        {
            let _g = self.lock.lock();
            let bank = self.bank();
            bank.write_word(gicd::ICACTIVER, 0, u32::MAX);
            bank.write_word(gicd::ICPENDR, 0, 0xffff_0000);
            bank.write_word(gicd::IGROUPR, 0, 0);
            bank.write_word(gicd::ICENABLER, 0, 0xffff_0000);
            bank.write_word(gicd::ISENABLER, 0, 0x0000_ffff);
            let prio = u32::from(self.opts.default_priority) * 0x0101_0101;
            for w in 0..8 {
                bank.write_word(gicd::IPRIORITYR, w, prio);
            }
        }
        self.cpuif
            .write32(gicc::PMR, u32::from(self.opts.priority_mask));
        self.cpuif.write32(gicc::BPR, 0);
        let mut ctlr = GiccCtlr::ENABLE_G0;
        ctlr.set(GiccCtlr::EOIMODE, self.opts.split_eoi);
        self.cpuif.store(gicc::CTLR, ctlr);
        self.cpus.set_online(cpu, true);
        Ok(())
    }

    /// Hotplug "dying" step, on the CPU `cpu` itself with interrupts off
    /// (inside stop-machine): the CPU stops taking SPIs and SGIs, every SPI
    /// whose targets become empty is re-routed to the first other online
    /// CPU, and its CPU interface is disabled. Returns how many SPIs were
    /// re-routed.
    ///
    /// With irqcore's hotplug, descriptors are migrated by the core (through
    /// [`IrqChip::set_affinity`]) before this runs; this sweep catches lines
    /// that have no descriptor.
    pub fn cpu_dying(&self, cpu: CpuId) -> Result<usize, GicError> {
        let bit = self.cpus.hw_id(cpu).ok_or(GicError::BadCpu(cpu))?;
        if u64::from(self.my_iface_mask().trailing_zeros()) != bit {
            return Err(GicError::WrongCpu(cpu));
        }
        let dying = 1u8 << bit;
        let target = self
            .cpus
            .first_online_except(cpu)
            .and_then(|c| self.cpus.hw_id(c))
            .map(|b| 1u8 << b)
            .ok_or(GicError::NoTargetCpu)?;
        self.cpus.set_online(cpu, false);
        let mut moved = 0;
        {
            let _g = self.lock.lock();
            for id in self.spis() {
                let t = self.bank().read_field(gicd::ITARGETSR, id) as u8;
                if t & dying != 0 {
                    let new = match t & !dying {
                        0 => target,
                        rest => rest,
                    };
                    self.bank().write_byte(gicd::ITARGETSR, id, new);
                    moved += 1;
                }
            }
        }
        self.cpuif.store(gicc::CTLR, GiccCtlr::empty());
        Ok(moved)
    }

    /// The acknowledge loop, for the IRQ exception entry of the calling CPU:
    /// acknowledges interrupts until none is pending and calls `dispatch`
    /// for each. `dispatch` returns `true` if it ran a flow handler (which
    /// then completes the interrupt through the chip's `eoi`); on `false`
    /// the loop completes it itself so the line is not left active.
    /// Returns the number of interrupts acknowledged.
    ///
    /// SGIs are completed (EOI, and deactivated in split mode) before
    /// `dispatch`: `GICC_EOIR` must be written with the source CPU bits of
    /// the acknowledge (IHI 0048B 4.4.5), which the flow's `eoi` cannot see;
    /// an IPI sent meanwhile becomes pending again, so none is lost.
    pub fn handle_pending(&self, mut dispatch: impl FnMut(IntId) -> bool) -> usize {
        let mut n = 0;
        loop {
            let iar = self.cpuif.read32(gicc::IAR);
            let Some(id) = IntId::new(iar & gicc::IAR_INTID_MASK) else {
                break;
            };
            n += 1;
            if id.kind() == IntKind::Sgi {
                self.cpuif.write32(gicc::EOIR, iar);
                if self.opts.split_eoi {
                    self.cpuif.write32(gicc::DIR, iar);
                }
                // Pairs with the sender's fence before GICD_SGIR: the IPI's
                // payload is visible once we handle it.
                fence(Ordering::SeqCst);
                dispatch(id);
                continue;
            }
            if self.opts.split_eoi {
                self.cpuif.write32(gicc::EOIR, iar);
            }
            if !dispatch(id) {
                self.complete(id);
            }
        }
        n
    }

    fn complete(&self, id: IntId) {
        if self.opts.split_eoi {
            self.cpuif.write32(gicc::DIR, id.get());
        } else {
            self.cpuif.write32(gicc::EOIR, id.get());
        }
    }

    /// Sends SGI `sgi` (an IPI) through `GICD_SGIR`.
    pub fn send_sgi(&self, sgi: IntId, target: SgiTarget<'_>) -> Result<(), GicError> {
        if sgi.kind() != IntKind::Sgi {
            return Err(GicError::NotSgi);
        }
        let value = match target {
            SgiTarget::Cpus(mask) => {
                let mut list = 0u32;
                for c in mask.iter() {
                    let b = self.cpus.hw_id(c).ok_or(GicError::BadCpu(c))?;
                    list |= 1 << b;
                }
                if self.uniprocessor {
                    // No target list to speak of: the only CPU is the sender.
                    gicd::SGIR_FILTER_SELF
                } else {
                    gicd::SGIR_FILTER_LIST | (list << gicd::SGIR_TARGETS_SHIFT)
                }
            }
            SgiTarget::AllButSelf => gicd::SGIR_FILTER_OTHERS,
            SgiTarget::ToSelf => gicd::SGIR_FILTER_SELF,
        };
        // Memory written before the IPI must be visible to its handler.
        fence(Ordering::SeqCst);
        self.dist.write32(gicd::SGIR, value | sgi.get());
        Ok(())
    }

    /// Sets the priority of `id` (banked SGIs/PPIs: on the calling CPU).
    pub fn set_priority(&self, id: IntId, prio: u8) {
        let _g = self.lock.lock();
        self.bank().set_priority(id, prio);
    }

    /// Sets the calling CPU interface's priority mask.
    pub fn set_priority_mask(&self, mask: u8) {
        self.cpuif.write32(gicc::PMR, u32::from(mask));
    }

    /// The calling CPU's running priority (`GICC_RPR`, 0xff when idle).
    pub fn running_priority(&self) -> u8 {
        self.cpuif.read32(gicc::RPR) as u8
    }

    /// Translates a three-cell specifier and checks the INTID exists here.
    pub fn translate(&self, cells: &[u32]) -> Result<(HwIrq, TriggerType), IrqError> {
        let (hw, t) = translate_three_cell(cells)?;
        if hw.0 >= u64::from(self.num_lines) {
            return Err(IrqError::BadHwIrq(hw));
        }
        Ok((hw, t))
    }

    fn intid(&self, d: &IrqData<'_>) -> Option<IntId> {
        IntId::from_hwirq(d.hwirq()).filter(|id| id.get() < self.num_lines)
    }
}

impl<M: Mmio> GicV2<M> {
    /// GICv2 has no LPIs: always [`GicError::Unsupported`].
    pub fn enable_lpis(
        &self,
        _cpu: CpuId,
        _tables: &crate::lpi::LpiTables,
    ) -> Result<(), GicError> {
        Err(GicError::Unsupported)
    }

    /// GICv2 has no redistributors for an ITS to target: always `None`.
    pub fn processor_number(&self, _cpu: CpuId) -> Option<u64> {
        None
    }
}

impl<M: Mmio> IrqChip for GicV2<M> {
    fn name(&self) -> &str {
        "GICv2"
    }

    fn flags(&self) -> ChipFlags {
        self.opts.chip_flags()
    }

    fn mask(&self, d: &IrqData<'_>) {
        if let Some(id) = self.intid(d) {
            self.bank().disable(id);
        }
    }

    fn unmask(&self, d: &IrqData<'_>) {
        if let Some(id) = self.intid(d) {
            self.bank().enable(id);
        }
    }

    fn eoi(&self, d: &IrqData<'_>) {
        match self.intid(d) {
            // Completed by the acknowledge loop (see `handle_pending`).
            Some(id) if id.kind() == IntKind::Sgi => {}
            Some(id) => {
                self.complete(id);
                if self.opts.verify_route && id.kind() == IntKind::Spi {
                    // As in the GICv3 driver: trap now so that the
                    // hypervisor retires the EOIed list register.
                    let _ = self.bank().read_field(gicd::ITARGETSR, id) as u8;
                }
            }
            None => {}
        }
    }

    fn set_type(&self, d: &IrqData<'_>, trigger: TriggerType) -> Result<(), ChipError> {
        let id = self.intid(d).ok_or(ChipError::Invalid)?;
        if let Some(edge) = trigger_config(id, trigger)? {
            let _g = self.lock.lock();
            self.bank().set_edge(id, edge);
        }
        Ok(())
    }

    fn read_trigger(&self, d: &IrqData<'_>) -> TriggerType {
        // SGIs and PPIs: the calling CPU's banked copy.
        self.intid(d)
            .map_or(TriggerType::None, |id| self.bank().trigger(id))
    }

    fn set_affinity(
        &self,
        d: &IrqData<'_>,
        mask: &CpuMask,
        force: bool,
    ) -> Result<AffinitySet, ChipError> {
        let id = self.intid(d).ok_or(ChipError::Invalid)?;
        if id.is_private() {
            return Err(ChipError::Unsupported);
        }
        let cpu = self.cpus.pick(mask, force).ok_or(ChipError::Invalid)?;
        let bit = self.cpus.hw_id(cpu).ok_or(ChipError::Invalid)?;
        let _g = self.lock.lock();
        self.bank().write_byte(gicd::ITARGETSR, id, 1 << bit);
        if self.opts.verify_route && self.bank().read_field(gicd::ITARGETSR, id) as u8 != 1 << bit {
            return Err(ChipError::Busy);
        }
        Ok(AffinitySet::Applied {
            effective: CpuMask::of(cpu),
        })
    }

    fn retrigger(&self, d: &IrqData<'_>) -> bool {
        match self.intid(d) {
            // GICv2 SGIs are made pending only through GICD_SPENDSGIR with a
            // source CPU; let the core resend in software.
            Some(id) if id.kind() != IntKind::Sgi => {
                self.bank().set_pending(id);
                true
            }
            _ => false,
        }
    }
}

// The special INTIDs must never reach `dispatch`.
const _: () = assert!(IntId::SPI_END == INTID_SPECIAL_FIRST);
