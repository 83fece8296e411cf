//! What a backend implements per domain ([`DomainOps`]) and the values that
//! describe a domain ([`DomainConfig`], [`DomainKind`]).

use super::spec::{FwSpec, SpecError, SpecFormat};
use crate::chip::{IrqChip, TriggerType};
use crate::error::IrqError;
use crate::flow::FlowKind;
use crate::ids::{HwIrq, IrqNumber};
use alloc::sync::Arc;
use core::fmt;

pub use crate::ids::DomainId;

/// How a domain stores its hwirq -> irq translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainKind {
    /// A fixed-size table indexed by hwirq: hwirqs `0..size`. For dense
    /// controllers (an IOAPIC's pins, a GIC's SPIs).
    Linear {
        /// Number of hwirqs (at least 1).
        size: u32,
    },
    /// An ordered map: any hwirq. For sparse hwirq spaces (MSI, GICv3 LPIs,
    /// Xen ports).
    Tree,
    /// hwirq equals the irq number (legacy controllers whose numbers are
    /// fixed by the platform): mapping hwirq `n` allocates irq `n` exactly.
    NoMap,
}

/// A domain to register.
#[derive(Clone, Copy, Debug)]
pub struct DomainConfig {
    /// Name shown in diagnostics.
    pub name: &'static str,
    /// Translation storage.
    pub kind: DomainKind,
    /// The parent domain, for a level of a hierarchy (MSI over a vector
    /// domain). `None` for a flat domain or the root of a hierarchy.
    pub parent: Option<DomainId>,
}

impl DomainConfig {
    /// A flat domain.
    pub const fn new(name: &'static str, kind: DomainKind) -> Self {
        Self {
            name,
            kind,
            parent: None,
        }
    }

    /// The same domain stacked on `parent`.
    pub const fn with_parent(mut self, parent: DomainId) -> Self {
        self.parent = Some(parent);
        self
    }
}

/// What a domain's [`DomainOps::alloc`] is asked to set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllocRequest {
    /// The irq number the mapping got.
    pub irq: IrqNumber,
    /// The hwirq at this domain's level.
    pub hwirq: HwIrq,
    /// The trigger the specifier asked for ([`TriggerType::None`] if none),
    /// so the outermost level can pick a level or edge flow.
    pub trigger: TriggerType,
    /// 0 for the outermost level (the domain the mapping was made in), 1
    /// for its parent, and so on.
    pub depth: usize,
}

/// What a domain's [`DomainOps::alloc`] chose for its level.
#[derive(Clone)]
pub struct LevelAlloc {
    /// The chip at this level.
    pub chip: Arc<dyn IrqChip>,
    /// Opaque per-irq data for that chip.
    pub chip_data: usize,
    /// The flow handler; only the outermost level's is installed.
    pub flow: FlowKind,
    /// The hwirq to allocate at the parent level (ignored at the root). A
    /// vector domain typically uses the irq number here.
    pub parent_hwirq: HwIrq,
}

impl LevelAlloc {
    /// A level with `chip`, no chip data, `flow`, and parent hwirq 0.
    pub fn new(chip: Arc<dyn IrqChip>, flow: FlowKind) -> Self {
        Self {
            chip,
            chip_data: 0,
            flow,
            parent_hwirq: HwIrq(0),
        }
    }
}

impl fmt::Debug for LevelAlloc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LevelAlloc")
            .field("chip", &self.chip.name())
            .field("chip_data", &self.chip_data)
            .field("flow", &self.flow)
            .field("parent_hwirq", &self.parent_hwirq)
            .finish()
    }
}

/// One allocated level of a mapping, as handed back to the domain that
/// allocated it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LevelRef {
    /// The irq number.
    pub irq: IrqNumber,
    /// The hwirq at this level.
    pub hwirq: HwIrq,
    /// The chip data [`DomainOps::alloc`] returned.
    pub chip_data: usize,
}

/// The callbacks of one domain, implemented by a backend (the IOAPIC pin
/// domain, the x86 vector domain, the GIC, an MSI domain...).
///
/// Every method is called with the registry's mapping lock held, in process
/// context. It may take the backend's own locks (they come after the mapping
/// lock in the lock order, see [the module docs](super)) and may call
/// [`IrqCore`] configuration functions, but must never call back into the
/// registry: that would deadlock on the mapping lock.
///
/// [`IrqCore`]: crate::IrqCore
pub trait DomainOps: Send + Sync {
    /// The specifier layout of this domain.
    fn spec_format(&self) -> SpecFormat {
        SpecFormat::TwoCell
    }

    /// Translates a firmware specifier into this domain's hwirq and the
    /// requested trigger type. The default reads [`DomainOps::spec_format`].
    fn translate(&self, spec: &FwSpec) -> Result<(HwIrq, TriggerType), SpecError> {
        self.spec_format().translate(spec)
    }

    /// Sets up this domain's level of a new mapping: chooses the chip, its
    /// data and the flow, may reserve hardware resources (a vector, a
    /// routing entry), and says which hwirq to allocate at the parent.
    /// Called outermost level first. An error unwinds the whole allocation
    /// (levels already allocated get [`DomainOps::free`]).
    fn alloc(&self, req: &AllocRequest) -> Result<LevelAlloc, IrqError>;

    /// Releases what [`DomainOps::alloc`] reserved. Called outermost level
    /// first, after the irq was deactivated and its chip removed.
    fn free(&self, level: &LevelRef) {
        let _ = level;
    }

    /// Programs the hardware for this level (a vector into an IOAPIC entry,
    /// an MSI message into a device). Called parent level first; if a level
    /// fails the levels below it that were activated are deactivated again.
    fn activate(&self, level: &LevelRef) -> Result<(), IrqError> {
        let _ = level;
        Ok(())
    }

    /// Undoes [`DomainOps::activate`]. Called outermost level first.
    fn deactivate(&self, level: &LevelRef) {
        let _ = level;
    }
}
