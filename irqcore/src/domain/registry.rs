//! [`DomainRegistry`]: the domains of one kernel and their mappings.

use super::error::DomainError;
use super::mapping::Mapping;
use super::ops::{
    AllocRequest, DomainConfig, DomainId, DomainKind, DomainOps, LevelAlloc, LevelRef,
};
use super::revmap::Revmap;
use super::spec::FwSpec;
use crate::chip::{ChipLevel, TriggerType};
use crate::desc::MAX_LEVELS;
use crate::error::IrqError;
use crate::flow::FlowKind;
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
    levels: ArrayVec<LevelSlot, MAX_LEVELS>,
    handle_refs: u32,
    raw_refs: u32,
    trigger: TriggerType,
    activated: bool,
}

impl MappingRecord {
    fn top(&self) -> Option<&LevelSlot> {
        self.levels.first()
    }

    fn total_refs(&self) -> u64 {
        self.handle_refs as u64 + self.raw_refs as u64
    }

    fn level_ref(&self, irq: IrqNumber, i: usize) -> Option<LevelRef> {
        self.levels.get(i).map(|l| LevelRef {
            irq,
            hwirq: l.hwirq,
            chip_data: l.chip_data,
        })
    }
}

/// A domain and its ancestors (outermost first) with their callbacks.
type Chain = ArrayVec<(DomainId, Arc<dyn DomainOps>, DomainKind), MAX_LEVELS>;

/// Which kind of reference a get or put concerns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RefKind {
    /// Held by a [`Mapping`] handle.
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
    /// References held by [`Mapping`] handles.
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
struct DomainSlot {
    config: DomainConfig,
    ops: Arc<dyn DomainOps>,
    revmap: Revmap,
    /// hwirqs mapped at any level.
    mapped: usize,
    /// Registered domains whose parent this is.
    children: usize,
}

/// Everything `find_mapping` reads; changed only under the mapping lock,
/// and each change is a short critical section with interrupts off that
/// calls nothing.
struct Tables {
    domains: Vec<Option<DomainSlot>>,
    records: BTreeMap<IrqNumber, MappingRecord>,
}

impl Tables {
    fn domain(&self, id: DomainId) -> Result<&DomainSlot, DomainError> {
        self.domains
            .get(id.0 as usize)
            .and_then(|d| d.as_ref())
            .ok_or(DomainError::UnknownDomain(id))
    }

    fn domain_mut(&mut self, id: DomainId) -> Option<&mut DomainSlot> {
        self.domains.get_mut(id.0 as usize).and_then(|d| d.as_mut())
    }

    /// The domain and its ancestors, outermost first.
    fn chain(&self, id: DomainId) -> Result<Chain, DomainError> {
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
struct MappingLock<'a> {
    _guard: spin::MutexGuard<'a, ()>,
    _held: HeldLock<'a>,
}

/// Local interrupts off on the calling CPU until dropped.
struct IrqOff<'a, P: Platform> {
    platform: &'a P,
    flags: IrqFlags,
}

impl<'a, P: Platform> IrqOff<'a, P> {
    fn new(platform: &'a P) -> Self {
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
    core: &'c IrqCore<P>,
    /// Serialises every change of domains and mappings, across the backend
    /// callbacks and the core calls it makes (the "domain lock").
    mapping_lock: spin::Mutex<()>,
    /// What readers see (a leaf lock).
    tables: spin::RwLock<Tables>,
    /// Lowest irq number given to mappings of non-no-map domains.
    irq_base: u32,
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
    fn lock_mapping(&self) -> Result<MappingLock<'_>, DomainError> {
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
    fn write<R>(&self, f: impl FnOnce(&mut Tables) -> R) -> R {
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

    // ----- handle API -------------------------------------------------------

    /// Maps `hwirq` of `domain` (creating the mapping, at every level of
    /// its hierarchy, if it does not exist) and returns a handle holding a
    /// reference; dropping the handle releases it.
    pub fn map(&self, domain: DomainId, hwirq: HwIrq) -> Result<Mapping<'_, P>, DomainError> {
        let irq = self.get(domain, hwirq, TriggerType::None, RefKind::Handle)?;
        Ok(Mapping::new(self, irq))
    }

    /// Like [`DomainRegistry::map`], with the hwirq and trigger type read
    /// from a firmware specifier. The trigger is applied to a new mapping;
    /// an existing mapping without a trigger adopts it; an existing mapping
    /// with a different one is refused ([`DomainError::TriggerConflict`]).
    pub fn map_fwspec(
        &self,
        domain: DomainId,
        spec: &FwSpec,
    ) -> Result<Mapping<'_, P>, DomainError> {
        let (hwirq, trigger) = self.translate(domain, spec)?;
        let irq = self.get(domain, hwirq, trigger, RefKind::Handle)?;
        Ok(Mapping::new(self, irq))
    }

    /// Like [`DomainRegistry::map`] with an explicit trigger type (same
    /// rules as [`DomainRegistry::map_fwspec`]).
    pub fn map_with_trigger(
        &self,
        domain: DomainId,
        hwirq: HwIrq,
        trigger: TriggerType,
    ) -> Result<Mapping<'_, P>, DomainError> {
        let irq = self.get(domain, hwirq, trigger, RefKind::Handle)?;
        Ok(Mapping::new(self, irq))
    }

    /// Turns one raw reference on `irq` into a handle (a C caller handing a
    /// mapping over to Rust code).
    pub fn adopt_raw(&self, irq: IrqNumber) -> Result<Mapping<'_, P>, DomainError> {
        self.convert(irq, RefKind::Raw)?;
        Ok(Mapping::new(self, irq))
    }

    // ----- raw (C-style) API ------------------------------------------------

    /// Maps `hwirq` of `domain` and takes a raw reference: pair every
    /// successful call with one [`DomainRegistry::dispose_mapping`].
    pub fn create_mapping(&self, domain: DomainId, hwirq: HwIrq) -> Result<IrqNumber, DomainError> {
        self.get(domain, hwirq, TriggerType::None, RefKind::Raw)
    }

    /// Like [`DomainRegistry::create_mapping`] from a firmware specifier
    /// (trigger rules of [`DomainRegistry::map_fwspec`]).
    pub fn create_fwspec_mapping(
        &self,
        domain: DomainId,
        spec: &FwSpec,
    ) -> Result<IrqNumber, DomainError> {
        let (hwirq, trigger) = self.translate(domain, spec)?;
        self.get(domain, hwirq, trigger, RefKind::Raw)
    }

    /// Drops one raw reference on `irq`; the last reference (raw or handle)
    /// tears the mapping down at every level and frees the descriptor.
    /// Never underflows: an irq that is not mapped, or that holds no raw
    /// reference (all were disposed, or only handles hold it), is refused
    /// and nothing changes. The last reference is refused
    /// ([`DomainError::HasHandlers`]) while the irq has handlers.
    pub fn dispose_mapping(&self, irq: IrqNumber) -> Result<(), DomainError> {
        self.put(irq, RefKind::Raw)
    }

    // ----- activation -------------------------------------------------------

    /// Activates the mapping's hierarchy: every domain's
    /// [`DomainOps::activate`], root level first. If a level fails, the
    /// levels below it already activated are deactivated again (outermost
    /// first) and the error is returned. Activating an active mapping does
    /// nothing.
    pub fn activate(&self, irq: IrqNumber) -> Result<(), DomainError> {
        let _m = self.lock_mapping()?;
        let (rec, chain) = self.record_and_chain(irq)?;
        if rec.activated {
            return Ok(());
        }
        for i in (0..rec.levels.len()).rev() {
            let (dom, ops, _) = &chain[i];
            let Some(level) = rec.level_ref(irq, i) else {
                continue;
            };
            if let Err(error) = ops.activate(&level) {
                for j in i + 1..rec.levels.len() {
                    if let Some(l) = rec.level_ref(irq, j) {
                        chain[j].1.deactivate(&l);
                    }
                }
                return Err(DomainError::Backend {
                    domain: *dom,
                    error,
                });
            }
        }
        self.write(|t| {
            if let Some(r) = t.records.get_mut(&irq) {
                r.activated = true;
            }
        });
        Ok(())
    }

    /// Deactivates the mapping's hierarchy, outermost level first. Does
    /// nothing if it is not active.
    pub fn deactivate(&self, irq: IrqNumber) -> Result<(), DomainError> {
        let _m = self.lock_mapping()?;
        let (rec, chain) = self.record_and_chain(irq)?;
        if rec.activated {
            Self::deactivate_levels(irq, &rec, &chain);
            self.write(|t| {
                if let Some(r) = t.records.get_mut(&irq) {
                    r.activated = false;
                }
            });
        }
        Ok(())
    }

    fn deactivate_levels(
        irq: IrqNumber,
        rec: &MappingRecord,
        chain: &[(DomainId, Arc<dyn DomainOps>, DomainKind)],
    ) {
        for (i, (_, ops, _)) in chain.iter().enumerate().take(rec.levels.len()) {
            if let Some(l) = rec.level_ref(irq, i) {
                ops.deactivate(&l);
            }
        }
    }

    // ----- internals --------------------------------------------------------

    fn translate(
        &self,
        domain: DomainId,
        spec: &FwSpec,
    ) -> Result<(HwIrq, TriggerType), DomainError> {
        let ops = self.tables.read().domain(domain)?.ops.clone();
        Ok(ops.translate(spec)?)
    }

    fn record_and_chain(&self, irq: IrqNumber) -> Result<(MappingRecord, Chain), DomainError> {
        let t = self.tables.read();
        let rec = t
            .records
            .get(&irq)
            .ok_or(DomainError::NotMapped(irq))?
            .clone();
        let top = rec.top().ok_or(DomainError::NotMapped(irq))?.domain;
        let chain = t.chain(top)?;
        Ok((rec, chain))
    }

    /// Get-or-create under the mapping lock.
    fn get(
        &self,
        domain: DomainId,
        hwirq: HwIrq,
        trigger: TriggerType,
        kind: RefKind,
    ) -> Result<IrqNumber, DomainError> {
        let _m = self.lock_mapping()?;
        let existing = {
            let t = self.tables.read();
            let d = t.domain(domain)?;
            if !d.revmap.in_range(hwirq)
                || (d.config.kind == DomainKind::NoMap && hwirq.0 > u32::MAX as u64)
            {
                return Err(DomainError::HwIrqOutOfRange { domain, hwirq });
            }
            match d.revmap.get(hwirq) {
                None => None,
                Some(irq) => {
                    let rec = t.records.get(&irq).ok_or(DomainError::NotMapped(irq))?;
                    if rec.top().map(|l| l.domain) != Some(domain) {
                        return Err(DomainError::InnerLevel { domain, hwirq, irq });
                    }
                    Some((irq, rec.trigger, rec.total_refs()))
                }
            }
        };
        let Some((irq, existing, refs)) = existing else {
            return self.create(domain, hwirq, trigger, kind);
        };
        let adopt = match (existing, trigger) {
            (_, TriggerType::None) => false,
            (TriggerType::None, _) => true,
            (e, t) if e == t => false,
            (e, t) => {
                return Err(DomainError::TriggerConflict {
                    irq,
                    existing: e,
                    requested: t,
                });
            }
        };
        if refs >= u32::MAX as u64 {
            return Err(DomainError::TooManyReferences(irq));
        }
        if adopt {
            self.core.set_trigger(irq, trigger)?;
        }
        self.write(|t| {
            if let Some(r) = t.records.get_mut(&irq) {
                if adopt {
                    r.trigger = trigger;
                }
                match kind {
                    RefKind::Handle => r.handle_refs += 1,
                    RefKind::Raw => r.raw_refs += 1,
                }
            }
        });
        Ok(irq)
    }

    /// Creates a new mapping: one descriptor, one level per domain of the
    /// hierarchy, chip stack installed, trigger applied, then published.
    /// Everything is undone on failure.
    fn create(
        &self,
        domain: DomainId,
        hwirq: HwIrq,
        trigger: TriggerType,
        kind: RefKind,
    ) -> Result<IrqNumber, DomainError> {
        let chain = self.tables.read().chain(domain)?;
        let irq = match chain[0].2 {
            DomainKind::NoMap => {
                let irq = IrqNumber(
                    u32::try_from(hwirq.0)
                        .map_err(|_| DomainError::HwIrqOutOfRange { domain, hwirq })?,
                );
                self.core.alloc_desc_at(irq).map_err(|e| match e {
                    IrqError::OutOfRange(_) => DomainError::HwIrqOutOfRange { domain, hwirq },
                    e => DomainError::Core(e),
                })?;
                irq
            }
            _ => self.core.alloc_descs(IrqNumber(self.irq_base), 1)?,
        };
        let mut done: ArrayVec<(LevelSlot, LevelAlloc), MAX_LEVELS> = ArrayVec::new();
        let mut hw = hwirq;
        for (depth, (dom, ops, _)) in chain.iter().enumerate() {
            if depth > 0 {
                let t = self.tables.read();
                let d = t.domain(*dom)?;
                let err = if !d.revmap.in_range(hw) {
                    Some(DomainError::HwIrqOutOfRange {
                        domain: *dom,
                        hwirq: hw,
                    })
                } else if d.revmap.get(hw).is_some() {
                    Some(DomainError::HwIrqInUse {
                        domain: *dom,
                        hwirq: hw,
                    })
                } else {
                    None
                };
                if let Some(e) = err {
                    drop(t);
                    self.unwind(irq, &chain, &done, false);
                    return Err(e);
                }
            }
            let req = AllocRequest {
                irq,
                hwirq: hw,
                trigger,
                depth,
            };
            match ops.alloc(&req) {
                Ok(a) => {
                    hw = a.parent_hwirq;
                    done.push((
                        LevelSlot {
                            domain: *dom,
                            hwirq: req.hwirq,
                            chip_data: a.chip_data,
                        },
                        a,
                    ));
                }
                Err(error) => {
                    self.unwind(irq, &chain, &done, false);
                    return Err(DomainError::Backend {
                        domain: *dom,
                        error,
                    });
                }
            }
        }
        let levels: Vec<ChipLevel> = done
            .iter()
            .map(|(s, a)| ChipLevel {
                chip: a.chip.clone(),
                hwirq: s.hwirq,
                chip_data: s.chip_data,
            })
            .collect();
        let flow = done.first().map(|(_, a)| a.flow).unwrap_or(FlowKind::Bad);
        if let Err(e) = self.core.set_chip(irq, levels, flow) {
            self.unwind(irq, &chain, &done, false);
            return Err(DomainError::Core(e));
        }
        if trigger != TriggerType::None
            && let Err(e) = self.core.set_trigger(irq, trigger)
        {
            self.unwind(irq, &chain, &done, true);
            return Err(DomainError::Core(e));
        }
        let record = MappingRecord {
            levels: done.iter().map(|(s, _)| *s).collect(),
            handle_refs: (kind == RefKind::Handle) as u32,
            raw_refs: (kind == RefKind::Raw) as u32,
            trigger,
            activated: false,
        };
        self.write(|t| {
            for l in &record.levels {
                if let Some(d) = t.domain_mut(l.domain) {
                    d.revmap.insert(l.hwirq, irq);
                    d.mapped += 1;
                }
            }
            t.records.insert(irq, record);
        });
        Ok(irq)
    }

    /// Undoes a partial [`DomainRegistry::create`].
    fn unwind(
        &self,
        irq: IrqNumber,
        chain: &[(DomainId, Arc<dyn DomainOps>, DomainKind)],
        done: &[(LevelSlot, LevelAlloc)],
        chip_set: bool,
    ) {
        if chip_set {
            // No handler can be installed yet: the mapping is unpublished.
            let _ = self.core.set_chip(irq, Vec::new(), FlowKind::Bad);
        }
        for (i, (s, _)) in done.iter().enumerate() {
            chain[i].1.free(&LevelRef {
                irq,
                hwirq: s.hwirq,
                chip_data: s.chip_data,
            });
        }
        // Cannot fail: the descriptor exists, has no handler, and the
        // caller does not hold the sparse lock (checked before allocating).
        let _ = self.core.free_descs(irq, 1);
    }

    /// Moves one reference of `irq` from `from` to the other kind.
    pub(crate) fn convert(&self, irq: IrqNumber, from: RefKind) -> Result<(), DomainError> {
        let _m = self.lock_mapping()?;
        self.write(|t| {
            let r = t.records.get_mut(&irq).ok_or(DomainError::NotMapped(irq))?;
            match from {
                RefKind::Raw if r.raw_refs > 0 => {
                    r.raw_refs -= 1;
                    r.handle_refs += 1;
                    Ok(())
                }
                RefKind::Handle if r.handle_refs > 0 => {
                    r.handle_refs -= 1;
                    r.raw_refs += 1;
                    Ok(())
                }
                RefKind::Raw => Err(DomainError::NoRawReference(irq)),
                RefKind::Handle => Err(DomainError::NotMapped(irq)),
            }
        })
    }

    /// Turns one handle reference on `irq` into a raw one. Changes no total
    /// count, so the tables lock alone suffices (a concurrent teardown
    /// decides on the total): usable where the mapping lock cannot be
    /// taken, such as a handle dropped inside a hotplug phase.
    pub(crate) fn handle_to_raw(&self, irq: IrqNumber) {
        self.write(|t| {
            if let Some(r) = t.records.get_mut(&irq)
                && r.handle_refs > 0
            {
                r.handle_refs -= 1;
                r.raw_refs += 1;
            }
        });
    }

    /// Drops one reference of kind `kind`. If it is the last one, tears the
    /// mapping down: chip removed (refused while handlers are installed),
    /// unpublished, deactivated, every level freed (outermost first), the
    /// descriptor freed.
    pub(crate) fn put(&self, irq: IrqNumber, kind: RefKind) -> Result<(), DomainError> {
        let _m = self.lock_mapping()?;
        let rec = self
            .tables
            .read()
            .records
            .get(&irq)
            .cloned()
            .ok_or(DomainError::NotMapped(irq))?;
        match kind {
            RefKind::Raw if rec.raw_refs == 0 => return Err(DomainError::NoRawReference(irq)),
            RefKind::Handle if rec.handle_refs == 0 => return Err(DomainError::NotMapped(irq)),
            _ => {}
        }
        if rec.total_refs() > 1 {
            self.write(|t| {
                if let Some(r) = t.records.get_mut(&irq) {
                    match kind {
                        RefKind::Handle => r.handle_refs -= 1,
                        RefKind::Raw => r.raw_refs -= 1,
                    }
                }
            });
            return Ok(());
        }
        // The last reference.
        let (rec, chain) = self.record_and_chain(irq)?;
        // Removing the chip is the one step that can be refused (handlers
        // installed); it is atomic with the check under the descriptor
        // lock, and afterwards no handler can be requested (no chip).
        if let Err(e) = self.core.set_chip(irq, Vec::new(), FlowKind::Bad) {
            return Err(match e {
                IrqError::HasHandlers(i) => DomainError::HasHandlers(i),
                e => DomainError::Core(e),
            });
        }
        self.write(|t| {
            for l in &rec.levels {
                if let Some(d) = t.domain_mut(l.domain) {
                    d.revmap.remove(l.hwirq);
                    d.mapped -= 1;
                }
            }
            t.records.remove(&irq);
        });
        if rec.activated {
            Self::deactivate_levels(irq, &rec, &chain);
        }
        for (i, (_, ops, _)) in chain.iter().enumerate().take(rec.levels.len()) {
            if let Some(l) = rec.level_ref(irq, i) {
                ops.free(&l);
            }
        }
        // Waits for a grace period; cannot be refused (no handler, no chip,
        // sparse lock not held by us).
        self.core.free_descs(irq, 1)?;
        Ok(())
    }
}

fn info(
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
    use crate::cpumask::CpuMask;
    use crate::ids::CpuId;

    struct StaticPlatform;
    impl Platform for StaticPlatform {
        fn current_cpu(&self) -> CpuId {
            CpuId(0)
        }
        fn local_irq_save(&self) -> IrqFlags {
            IrqFlags(0)
        }
        fn local_irq_restore(&self, _f: IrqFlags) {}
        fn local_irq_enabled(&self) -> bool {
            false
        }
        fn run_on_cpus(&self, _c: &CpuMask, _w: &(dyn Fn(CpuId) + Sync)) {}
        fn schedule_resend(&self, _irq: IrqNumber) {}
    }

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
