//! The x86 interrupt topology as a plain struct: what a kernel reads from the
//! ACPI MADT (or the MP tables) and hands to this crate.
//!
//! MADT entry types that feed it (ACPI 6.5, 5.2.12): Processor Local APIC
//! (type 0) and Local x2APIC (type 9) → [`CpuInfo`]; I/O APIC (type 1) →
//! [`IoApicInfo`]; Interrupt Source Override (type 2) → [`IsaOverride`]; the
//! table header's Local Interrupt Controller Address, possibly replaced by a
//! Local APIC Address Override (type 5) → `lapic_base`; the PCAT_COMPAT flag
//! → `has_8259`.

use crate::ids::ApicId;
use alloc::vec::Vec;
use irqcore::TriggerType;

/// One I/O APIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoApicInfo {
    /// IOAPIC id.
    pub id: u8,
    /// Physical address of its register window.
    pub address: u64,
    /// First global system interrupt it serves.
    pub gsi_base: u32,
}

/// Polarity field of MPS INTI flags (bits 0-1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Polarity {
    /// Conforms to the bus (ISA: active high).
    #[default]
    Conforms,
    /// Active high.
    ActiveHigh,
    /// Active low.
    ActiveLow,
}

/// Trigger field of MPS INTI flags (bits 2-3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TriggerMode {
    /// Conforms to the bus (ISA: edge).
    #[default]
    Conforms,
    /// Edge.
    Edge,
    /// Level.
    Level,
}

/// An interrupt source override: ISA irq `bus_irq` is wired to `gsi`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IsaOverride {
    /// ISA irq (0-15).
    pub bus_irq: u8,
    /// The GSI it arrives on.
    pub gsi: u32,
    /// Polarity.
    pub polarity: Polarity,
    /// Trigger mode.
    pub trigger: TriggerMode,
}

impl IsaOverride {
    /// Decodes the MADT's MPS INTI flags. Reserved encodings (binary 10)
    /// are treated as "conforms".
    pub const fn from_inti_flags(bus_irq: u8, gsi: u32, flags: u16) -> Self {
        let polarity = match flags & 3 {
            1 => Polarity::ActiveHigh,
            3 => Polarity::ActiveLow,
            _ => Polarity::Conforms,
        };
        let trigger = match (flags >> 2) & 3 {
            1 => TriggerMode::Edge,
            3 => TriggerMode::Level,
            _ => TriggerMode::Conforms,
        };
        Self {
            bus_irq,
            gsi,
            polarity,
            trigger,
        }
    }
}

/// One CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuInfo {
    /// Its (x2)APIC id.
    pub apic_id: ApicId,
    /// Usable (MADT "Enabled" or "Online Capable").
    pub enabled: bool,
}

/// The routing of an ISA irq.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IsaRoute {
    /// GSI.
    pub gsi: u32,
    /// Trigger and polarity to program.
    pub trigger: TriggerType,
}

/// The whole description. Logical CPU `n` is `cpus[n]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlatformDescription {
    /// Physical address of the xAPIC page.
    pub lapic_base: u64,
    /// The IOAPICs.
    pub ioapics: Vec<IoApicInfo>,
    /// The interrupt source overrides.
    pub isa_overrides: Vec<IsaOverride>,
    /// The CPUs.
    pub cpus: Vec<CpuInfo>,
    /// Whether a legacy 8259 pair is present (it must then be masked).
    pub has_8259: bool,
}

impl PlatformDescription {
    /// The APIC ids of the usable CPUs, in logical-CPU order.
    pub fn apic_ids(&self) -> Vec<ApicId> {
        self.cpus
            .iter()
            .filter(|c| c.enabled)
            .map(|c| c.apic_id)
            .collect()
    }

    /// Where ISA irq `irq` arrives, and how it must be programmed: identity
    /// mapped, edge, active high, unless an override says otherwise.
    pub fn isa_route(&self, irq: u8) -> IsaRoute {
        match self.isa_overrides.iter().find(|o| o.bus_irq == irq) {
            None => IsaRoute {
                gsi: irq as u32,
                trigger: TriggerType::EdgeRising,
            },
            Some(o) => {
                let low = o.polarity == Polarity::ActiveLow;
                let level = o.trigger == TriggerMode::Level;
                IsaRoute {
                    gsi: o.gsi,
                    trigger: match (level, low) {
                        (false, false) => TriggerType::EdgeRising,
                        (false, true) => TriggerType::EdgeFalling,
                        (true, false) => TriggerType::LevelHigh,
                        (true, true) => TriggerType::LevelLow,
                    },
                }
            }
        }
    }

    /// The IOAPIC serving `gsi` and the pin on it, given each IOAPIC's pin
    /// count (`pins(io)`, read from its version register).
    pub fn ioapic_for_gsi(
        &self,
        gsi: u32,
        mut pins: impl FnMut(&IoApicInfo) -> u32,
    ) -> Option<(&IoApicInfo, u32)> {
        self.ioapics.iter().find_map(|io| {
            let pin = gsi.checked_sub(io.gsi_base)?;
            (pin < pins(io)).then_some((io, pin))
        })
    }
}
