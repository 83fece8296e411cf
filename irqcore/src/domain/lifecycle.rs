//! Mapping lifecycle: creating a mapping through every level of a domain
//! hierarchy, taking and dropping its references (handle and raw),
//! activating it, and tearing it down with the last reference.

use super::error::DomainError;
use super::mapping::Mapping;
use super::ops::{AllocRequest, DomainId, DomainKind, DomainOps, LevelAlloc, LevelRef};
use super::registry::{Chain, DomainRegistry, LevelSlot, MappingRecord, RefKind};
use super::spec::FwSpec;
use crate::chip::{ChipLevel, TriggerType};
use crate::desc::MAX_LEVELS;
use crate::error::IrqError;
use crate::flow::FlowKind;
use crate::ids::{HwIrq, IrqNumber};
use crate::platform::Platform;
use alloc::sync::Arc;
use alloc::vec::Vec;
use arrayvec::ArrayVec;

impl<'c, P: Platform> DomainRegistry<'c, P> {
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
