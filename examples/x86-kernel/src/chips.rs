//! The kernel's interrupt chips, implementing `irqcore::IrqChip` over the
//! minimal drivers in `hw` (the LAPIC timer and IPIs already use
//! `arch-x86`'s `LapicTimerChip` and `LapicIpiChip`, see `devices.rs`):
//!
//! - [`VectorChip`]: the root of every device hierarchy: a vector on the
//!   CPUs, affinity = which CPU's APIC receives it; `ack`/`eoi` = LAPIC EOI.
//! - [`PciMsi`]: a PCI function's MSI capability, the device under
//!   `arch_x86::MsiChip` (above the vector chip).

use core::sync::atomic::{AtomicU32, Ordering};

use irqcore::{AffinitySet, ChipError, CpuId, CpuMask, IrqChip, IrqData, MsiMsg};

use crate::cpu::percpu;
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

/// The MSI capability of one PCI function (single vector, index 0), as
/// `arch_x86::MsiChip` programs it: the chip composes the message from the
/// vector level and writes it here; the function is enabled for MSI with
/// its first message.
pub struct PciMsi {
    /// The function.
    pub bdf: pci::Bdf,
    /// Offset of its MSI capability.
    pub cap: u8,
}

impl arch_x86::MsiDevice for PciMsi {
    fn write_msg(&self, _index: u32, msg: MsiMsg) {
        let addr = (u64::from(msg.address_hi) << 32) | u64::from(msg.address_lo);
        pci::msi_program(self.bdf, self.cap, addr, msg.data as u16, true);
    }

    // edu's MSI capability has no per-vector mask bit (PCI 3.0, 6.8.1.3):
    // masking is impossible, as in Linux for such functions; irqcore's lazy
    // disable still marks arrivals while disabled as pending and resends.
    fn set_masked(&self, _index: u32, _masked: bool) -> bool {
        false
    }
}
