//! The kernel's interrupt chips, implementing `irqcore::IrqChip` over the
//! minimal drivers in `hw` (the LAPIC timer and IPIs already use
//! `arch-x86`'s `LapicTimerChip` and `LapicIpiChip`, see `devices.rs`):
//!
//! - [`VectorChip`]: the root of every device hierarchy: a vector on the
//!   CPUs, affinity = which CPU's APIC receives it; `ack`/`eoi` = LAPIC EOI.
//! - [`IoApicChip`]: an IOAPIC pin above the vector chip.
//! - [`MsiChip`]: a PCI function's MSI capability above the vector chip.

use core::sync::atomic::{AtomicU32, Ordering};

use irqcore::{
    AffinitySet, ChipError, ChipFlags, CpuId, CpuMask, IrqChip, IrqData, MsiMsg, TriggerType,
};

use crate::cpu::percpu;
use crate::hw::ioapic::{IoApic, rte};
use crate::hw::{lapic, pci};

/// The vector domain's chip: one vector (the hwirq), valid on every CPU,
/// delivered to one CPU at a time.
pub struct VectorChip {
    /// Target CPU of each vector.
    target: [AtomicU32; 256],
}

impl VectorChip {
    /// A vector chip with every vector targeting CPU 0.
    pub const fn new() -> Self {
        Self {
            target: [const { AtomicU32::new(0) }; 256],
        }
    }

    fn vector(d: &IrqData<'_>) -> usize {
        (d.hwirq().0 & 0xFF) as usize
    }
}

impl IrqChip for VectorChip {
    fn name(&self) -> &str {
        "APIC-vector"
    }
    fn mask(&self, _d: &IrqData<'_>) {}
    fn unmask(&self, _d: &IrqData<'_>) {}
    fn ack(&self, _d: &IrqData<'_>) {
        lapic::eoi();
    }
    fn eoi(&self, _d: &IrqData<'_>) {
        lapic::eoi();
    }
    fn set_affinity(
        &self,
        d: &IrqData<'_>,
        mask: &CpuMask,
        force: bool,
    ) -> Result<AffinitySet, ChipError> {
        // irqcore passes the request already narrowed to online CPUs (or
        // anything with `force`); pick the first, as physical fixed delivery
        // targets one APIC.
        let online = crate::irq::CORE.online_cpus();
        let usable = if force { *mask } else { mask.and(&online) };
        let cpu = usable.first().ok_or(ChipError::Invalid)?;
        if cpu.index() >= percpu::nr_cpus() as usize {
            return Err(ChipError::Invalid);
        }
        self.target[Self::vector(d)].store(cpu.0, Ordering::Release);
        Ok(AffinitySet::Applied {
            effective: CpuMask::of(cpu),
        })
    }
    /// Hardware retrigger, as Linux's `apic_retrigger_irq`: send the vector
    /// as an IPI to the CPU it targets now.
    fn retrigger(&self, d: &IrqData<'_>) -> bool {
        let v = Self::vector(d);
        let cpu = CpuId(self.target[v].load(Ordering::Acquire));
        lapic::send_ipi(percpu::apic_id_of(cpu), v as u8);
        true
    }
    fn compose_msi_msg(&self, d: &IrqData<'_>) -> Option<MsiMsg> {
        let v = Self::vector(d);
        let apic = percpu::apic_id_of(CpuId(self.target[v].load(Ordering::Acquire)));
        // Intel SDM vol. 3, 10.11.1/2: address 0xFEE, destination id in
        // bits 19:12, physical mode; data: fixed delivery, edge, vector.
        Some(MsiMsg {
            address_lo: 0xFEE0_0000 | (apic << 12),
            address_hi: 0,
            data: v as u32,
        })
    }
}

/// One IOAPIC's pins; hwirq is the pin number.
pub struct IoApicChip {
    /// The IOAPIC.
    pub io: IoApic,
}

impl IoApicChip {
    fn pin(d: &IrqData<'_>) -> u32 {
        d.hwirq().0 as u32
    }

    /// Writes the full entry for `pin`: `vector`, destination CPU, trigger,
    /// masked. Called while setting up an irq, before the chip is used.
    pub fn route(&self, pin: u32, vector: u8, cpu: CpuId, trigger: TriggerType) {
        let mut v = u64::from(vector) | rte::MASKED | (u64::from(percpu::apic_id_of(cpu)) << 56);
        if trigger.is_level() {
            v |= rte::LEVEL;
        }
        if matches!(trigger, TriggerType::LevelLow | TriggerType::EdgeFalling) {
            v |= rte::ACTIVE_LOW;
        }
        self.io.write_rte(pin, v);
    }
}

impl IrqChip for IoApicChip {
    fn name(&self) -> &str {
        "IO-APIC"
    }
    fn flags(&self) -> ChipFlags {
        ChipFlags::SET_TYPE_MASKED
    }
    fn mask(&self, d: &IrqData<'_>) {
        let pin = Self::pin(d);
        self.io.write_rte(pin, self.io.read_rte(pin) | rte::MASKED);
    }
    fn unmask(&self, d: &IrqData<'_>) {
        let pin = Self::pin(d);
        self.io.write_rte(pin, self.io.read_rte(pin) & !rte::MASKED);
    }
    fn ack(&self, d: &IrqData<'_>) {
        d.ack_parent();
    }
    fn eoi(&self, d: &IrqData<'_>) {
        // The LAPIC broadcasts the EOI of a level vector to the IOAPICs,
        // which clears Remote IRR (82093AA 3.2.4; SDM 10.8.5).
        d.eoi_parent();
    }
    fn set_type(&self, d: &IrqData<'_>, trigger: TriggerType) -> Result<(), ChipError> {
        let pin = Self::pin(d);
        let mut v = self.io.read_rte(pin) & !(rte::LEVEL | rte::ACTIVE_LOW);
        match trigger {
            TriggerType::None | TriggerType::EdgeRising => {}
            TriggerType::EdgeFalling => v |= rte::ACTIVE_LOW,
            TriggerType::LevelHigh => v |= rte::LEVEL,
            TriggerType::LevelLow => v |= rte::LEVEL | rte::ACTIVE_LOW,
            TriggerType::EdgeBoth => return Err(ChipError::InvalidTrigger),
        }
        self.io.write_rte(pin, v);
        Ok(())
    }
    fn set_affinity(
        &self,
        d: &IrqData<'_>,
        mask: &CpuMask,
        force: bool,
    ) -> Result<AffinitySet, ChipError> {
        let r = d.set_affinity_parent(mask, force)?;
        let cpu = r.effective().first().ok_or(ChipError::Invalid)?;
        let pin = Self::pin(d);
        let v = self.io.read_rte(pin) & !(0xFFu64 << 56);
        self.io
            .write_rte(pin, v | (u64::from(percpu::apic_id_of(cpu)) << 56));
        Ok(AffinitySet::Done {
            effective: r.effective(),
        })
    }
}

/// MSI of one PCI function (single vector); hwirq is unused (0).
pub struct MsiChip {
    /// The function.
    pub bdf: pci::Bdf,
    /// Offset of its MSI capability.
    pub cap: u8,
}

impl MsiChip {
    fn write_msg(&self, d: &IrqData<'_>, enable: bool) -> Result<(), ChipError> {
        let msg = d.compose_msi_msg_hierarchy().ok_or(ChipError::Invalid)?;
        let addr = (u64::from(msg.address_hi) << 32) | u64::from(msg.address_lo);
        pci::msi_program(self.bdf, self.cap, addr, msg.data as u16, enable);
        Ok(())
    }
}

impl IrqChip for MsiChip {
    fn name(&self) -> &str {
        "PCI-MSI"
    }
    fn flags(&self) -> ChipFlags {
        ChipFlags::ONESHOT_SAFE
    }
    // edu's MSI capability has no per-vector mask bit (PCI 3.0, 6.8.1.3):
    // masking is a no-op, as in Linux for such functions; irqcore's lazy
    // disable still marks arrivals while disabled as pending and resends.
    fn mask(&self, _d: &IrqData<'_>) {}
    fn unmask(&self, _d: &IrqData<'_>) {}
    fn startup(&self, d: &IrqData<'_>) {
        let _ = self.write_msg(d, true);
    }
    fn shutdown(&self, d: &IrqData<'_>) {
        let _ = self.write_msg(d, false);
    }
    fn ack(&self, d: &IrqData<'_>) {
        d.ack_parent();
    }
    fn eoi(&self, d: &IrqData<'_>) {
        d.eoi_parent();
    }
    fn set_affinity(
        &self,
        d: &IrqData<'_>,
        mask: &CpuMask,
        force: bool,
    ) -> Result<AffinitySet, ChipError> {
        let r = d.set_affinity_parent(mask, force)?;
        self.write_msg(d, true)?;
        Ok(AffinitySet::Done {
            effective: r.effective(),
        })
    }
}
