//! [`DomainRegistry`]: the registered domains of one kernel, the tables of
//! their mappings, and the queries on them (mappings are made and released
//! in `lifecycle.rs`).

use super::error::DomainError;
use super::ops::{DomainConfig, DomainId, DomainKind, DomainOps, LevelRef};
use super::revmap::Revmap;
use crate::chip::TriggerType;
use crate::desc::MAX_LEVELS;
use crate::error::IrqError;
use crate::ids::{HwIrq, IrqNumber};
use crate::instance::IrqCore;
use crate::lockdep::{HeldLock, LockClass};
use crate::platform::{IrqFlags, Platform};
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use arrayvec::ArrayVec;

/// One level of a mapping: the domain, its hwirq there, the chip data its
/// `alloc` chose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LevelSlot {
    pub(crate) domain: DomainId,
    pub(crate) hwirq: HwIrq,
    pub(crate) chip_data: usize,
}

/// The bookkeeping of one mapped irq: its levels (outermost first) and the
/// references held on it. This is the per-mapping memory cost of the domain
/// layer (plus one reverse-map slot per level).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MappingRecord {
    pub(super) levels: ArrayVec<LevelSlot, MAX_LEVELS>,
    pub(super) handle_refs: u32,
    pub(super) raw_refs: u32,
    pub(super) trigger: TriggerType,
    pub(super) activated: bool,
}

impl MappingRecord {
    pub(super) fn top(&self) -> Option<&LevelSlot> {
        self.levels.first()
    }

    pub(super) fn total_refs(&self) -> u64 {
        self.handle_refs as u64 + self.raw_refs as u64
    }

    pub(super) fn level_ref(&self, irq: IrqNumber, i: usize) -> Option<LevelRef> {
        self.levels.get(i).map(|l| LevelRef {
            irq,
            hwirq: l.hwirq,
            chip_data: l.chip_data,
        })
    }
}

/// A domain and its ancestors (outermost first) with their callbacks.
pub(super) type Chain = ArrayVec<(DomainId, Arc<dyn DomainOps>, DomainKind), MAX_LEVELS>;

/// Which kind of reference a get or put concerns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RefKind {
    /// Held by a [`Mapping`](super::Mapping) handle.
    Handle,
    /// Held by a C-style caller (create/dispose).
    Raw,
}

/// A mapping as seen by diagnostics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MappingInfo {
    /// The domain whose list this entry is in.
    pub domain: DomainId,
    /// The hwirq in that domain.
    pub hwirq: HwIrq,
    /// The irq number.
    pub irq: IrqNumber,
    /// The level of `domain` in the irq's stack: 0 for the top-level
    /// mapping (which holds the references), 1 for its parent, ...
    pub depth: usize,
    /// The domain the mapping was made in (its top level).
    pub top: DomainId,
    /// References held by [`Mapping`](super::Mapping) handles.
    pub handle_refs: u32,
    /// References held by raw (C-style) callers.
    pub raw_refs: u32,
    /// The trigger type recorded for the mapping.
    pub trigger: TriggerType,
    /// Whether the hierarchy is activated.
    pub activated: bool,
}

impl MappingInfo {
    /// All references (handles and raw).
    pub fn refs(&self) -> u64 {
        self.handle_refs as u64 + self.raw_refs as u64
    }
}

/// A registered domain.
pub(super) struct DomainSlot {
    pub(super) config: DomainConfig,
    pub(super) ops: Arc<dyn DomainOps>,
    pub(super) revmap: Revmap,
    /// hwirqs mapped at any level.
    pub(super) mapped: usize,
    /// Registered domains whose parent this is.
    pub(super) children: usize,
}

/// Everything `find_mapping` reads; changed only under the mapping lock,
/// and each change is a short critical section with interrupts off that
/// calls nothing.
pub(super) struct Tables {
    pub(super) domains: Vec<Option<DomainSlot>>,
    pub(super) records: BTreeMap<IrqNumber, MappingRecord>,
}

impl Tables {
    pub(super) fn domain(&self, id: DomainId) -> Result<&DomainSlot, DomainError> {
        self.domains
            .get(id.0 as usize)
            .and_then(|d| d.as_ref())
            .ok_or(DomainError::UnknownDomain(id))
    }

    pub(super) fn domain_mut(&mut self, id: DomainId) -> Option<&mut DomainSlot> {
        self.domains.get_mut(id.0 as usize).and_then(|d| d.as_mut())
    }

    /// The domain and its ancestors, outermost first.
    pub(super) fn chain(&self, id: DomainId) -> Result<Chain, DomainError> {
        let mut chain = ArrayVec::new();
        let mut cur = Some(id);
        while let Some(d) = cur {
            let slot = self.domain(d)?;
            chain
                .try_push((d, slot.ops.clone(), slot.config.kind))
                .map_err(|_| DomainError::TooDeep)?;
            cur = slot.config.parent;
        }
        Ok(chain)
    }
}

/// The mapping lock, held (and recorded in the lock-order checker).
pub(super) struct MappingLock<'a> {
    pub(super) _guard: spin::MutexGuard<'a, ()>,
    pub(super) _held: HeldLock<'a>,
}

/// Local interrupts off on the calling CPU until dropped.
struct IrqOff<'a, P: Platform> {
    pub(super) platform: &'a P,
    pub(super) flags: IrqFlags,
}

impl<'a, P: Platform> IrqOff<'a, P> {
    pub(super) fn new(platform: &'a P) -> Self {
        Self {
            platform,
            flags: platform.local_irq_save(),
        }
    }
}

impl<P: Platform> Drop for IrqOff<'_, P> {
    fn drop(&mut self) {
        self.platform.local_irq_restore(self.flags);
    }
}

/// The interrupt domains of one kernel and their refcounted mappings.
///
/// Holds a reference to the [`IrqCore`] whose descriptors it allocates; a
/// kernel places both in statics (the constructor is `const`). See the
/// [module documentation](super) for the reference-counting rules and the
/// lock order.
pub struct DomainRegistry<'c, P: Platform> {
    pub(super) core: &'c IrqCore<P>,
    /// Serialises every change of domains and mappings, across the backend
    /// callbacks and the core calls it makes (the "domain lock").
    pub(super) mapping_lock: spin::Mutex<()>,
    /// What readers see (a leaf lock).
    pub(super) tables: spin::RwLock<Tables>,
    /// Lowest irq number given to mappings of non-no-map domains.
    pub(super) irq_base: u32,
}

impl<'c, P: Platform> DomainRegistry<'c, P> {
    /// A registry allocating irq numbers from 1 upwards in `core` (0 is
    /// left unused, as Linux does, so it can mean "no irq" to C callers).
    pub const fn new(core: &'c IrqCore<P>) -> Self {
        Self::with_irq_base(core, 1)
    }

    /// A registry allocating irq numbers from `irq_base` upwards (no-map
    /// domains excepted: their irq is their hwirq).
    pub const fn with_irq_base(core: &'c IrqCore<P>, irq_base: u32) -> Self {
        Self {
            core,
            mapping_lock: spin::Mutex::new(()),
            tables: spin::RwLock::new(Tables {
                domains: Vec::new(),
                records: BTreeMap::new(),
            }),
            irq_base,
        }
    }

    /// The interrupt core.
    pub fn core(&self) -> &'c IrqCore<P> {
        self.core
    }

    /// Takes the mapping lock, recording it in the core's lock-order
    /// checker. Refused if the calling CPU holds the sparse lock (a hotplug
    /// phase): the mapping lock comes first in the lock order. Refused in
    /// interrupt context and inside stop-machine
    /// ([`IrqError::InInterrupt`]): the lock is held with interrupts on, so
    /// the interrupted code on this CPU may hold it, and every change
    /// allocates or frees descriptors.
    pub(super) fn lock_mapping(&self) -> Result<MappingLock<'_>, DomainError> {
        self.core.check_may_wait().map_err(DomainError::Core)?;
        if self.core.sparse_lock_held() {
            return Err(DomainError::Core(IrqError::SparseLockHeldByCaller));
        }
        let held = self
            .core
            .lock_order()
            .acquire(self.core.platform().current_cpu(), LockClass::Domain);
        Ok(MappingLock {
            _guard: self.mapping_lock.lock(),
            _held: held,
        })
    }

    /// Runs `f` on the tables with the write lock held and local
    /// interrupts off (a handler on this CPU may read them).
    pub(super) fn write<R>(&self, f: impl FnOnce(&mut Tables) -> R) -> R {
        let _off = IrqOff::new(self.core.platform());
        f(&mut self.tables.write())
    }

    // ----- domains ----------------------------------------------------------

    /// Registers a domain. A parent must be registered already and must not
    /// be a no-map domain; the hierarchy may have at most
    /// [`MAX_LEVELS`] levels.
    pub fn add_domain(
        &self,
        config: DomainConfig,
        ops: Arc<dyn DomainOps>,
    ) -> Result<DomainId, DomainError> {
        if let DomainKind::Linear { size: 0 } = config.kind {
            return Err(DomainError::InvalidConfig);
        }
        let _m = self.lock_mapping()?;
        if let Some(parent) = config.parent {
            let t = self.tables.read();
            let p = t.domain(parent)?;
            if p.config.kind == DomainKind::NoMap {
                return Err(DomainError::InvalidConfig);
            }
            if t.chain(parent)?.len() >= MAX_LEVELS {
                return Err(DomainError::TooDeep);
            }
        }
        self.write(|t| {
            let id = u32::try_from(t.domains.len()).map_err(|_| DomainError::InvalidConfig)?;
            t.domains.push(Some(DomainSlot {
                config,
                ops,
                revmap: Revmap::new(config.kind),
                mapped: 0,
                children: 0,
            }));
            if let Some(p) = config.parent.and_then(|p| t.domain_mut(p)) {
                p.children += 1;
            }
            Ok(DomainId(id))
        })
    }

    /// Unregisters a domain and returns its callbacks. Refused while it maps
    /// any hwirq (at any level of a hierarchy) or is the parent of another
    /// registered domain.
    pub fn remove_domain(&self, id: DomainId) -> Result<Arc<dyn DomainOps>, DomainError> {
        let _m = self.lock_mapping()?;
        {
            let t = self.tables.read();
            let d = t.domain(id)?;
            if d.mapped > 0 {
                return Err(DomainError::DomainBusy {
                    domain: id,
                    mappings: d.mapped,
                });
            }
            if d.children > 0 {
                return Err(DomainError::HasChildren(id));
            }
        }
        self.write(|t| {
            let slot = t
                .domains
                .get_mut(id.0 as usize)
                .and_then(|s| s.take())
                .ok_or(DomainError::UnknownDomain(id))?;
            if let Some(p) = slot.config.parent.and_then(|p| t.domain_mut(p)) {
                p.children -= 1;
            }
            Ok(slot.ops)
        })
    }

    /// The configuration of a registered domain.
    pub fn domain_config(&self, id: DomainId) -> Result<DomainConfig, DomainError> {
        Ok(self.tables.read().domain(id)?.config)
    }

    /// The registered domains.
    pub fn domains(&self) -> Vec<(DomainId, DomainConfig)> {
        let t = self.tables.read();
        t.domains
            .iter()
            .enumerate()
            .filter_map(|(i, d)| d.as_ref().map(|d| (DomainId(i as u32), d.config)))
            .collect()
    }

    // ----- lookups ----------------------------------------------------------

    /// The irq `hwirq` of `domain` is mapped to, at any level. Takes only
    /// the read side of a leaf lock whose writers never wait for anything,
    /// so it may be called from interrupt handlers and chip callbacks
    /// (chained demultiplexers).
    pub fn find_mapping(&self, domain: DomainId, hwirq: HwIrq) -> Option<IrqNumber> {
        self.tables.read().domain(domain).ok()?.revmap.get(hwirq)
    }

    /// The mapping `irq` belongs to, as seen from its top level.
    pub fn mapping_info(&self, irq: IrqNumber) -> Result<MappingInfo, DomainError> {
        let t = self.tables.read();
        let rec = t.records.get(&irq).ok_or(DomainError::NotMapped(irq))?;
        let top = rec.top().ok_or(DomainError::NotMapped(irq))?;
        Ok(info(irq, rec, top.domain, top.hwirq, 0))
    }

    /// Every hwirq `domain` maps (at any level), in hwirq order: for
    /// diagnostics.
    pub fn mappings(&self, domain: DomainId) -> Result<Vec<MappingInfo>, DomainError> {
        let t = self.tables.read();
        let d = t.domain(domain)?;
        Ok(d.revmap
            .entries()
            .into_iter()
            .filter_map(|(hwirq, irq)| {
                let rec = t.records.get(&irq)?;
                let depth = rec.levels.iter().position(|l| l.domain == domain)?;
                Some(info(irq, rec, domain, hwirq, depth))
            })
            .collect())
    }

    /// Number of mapped irqs (top-level mappings).
    pub fn nr_mappings(&self) -> usize {
        self.tables.read().records.len()
    }
}

pub(super) fn info(
    irq: IrqNumber,
    rec: &MappingRecord,
    domain: DomainId,
    hwirq: HwIrq,
    depth: usize,
) -> MappingInfo {
    MappingInfo {
        domain,
        hwirq,
        irq,
        depth,
        top: rec.top().map(|l| l.domain).unwrap_or(domain),
        handle_refs: rec.handle_refs,
        raw_refs: rec.raw_refs,
        trigger: rec.trigger,
        activated: rec.activated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_platform::BootCpuOnly as StaticPlatform;

    // A kernel keeps both in statics.
    static CORE: IrqCore<StaticPlatform> = IrqCore::new(StaticPlatform);
    static DOMAINS: DomainRegistry<'static, StaticPlatform> = DomainRegistry::new(&CORE);

    #[test]
    fn registry_lives_in_a_static_next_to_the_core() {
        assert_eq!(DOMAINS.nr_mappings(), 0);
        assert!(DOMAINS.domains().is_empty());
        assert!(core::ptr::eq(DOMAINS.core(), &CORE));
    }
}
