//! Deferred reclamation: dropping what a dispatcher may still read (freed
//! descriptors, replaced action lists and chip views) once a grace period
//! ([`crate::grace`]) has passed.

use crate::action::ActionList;
use crate::grace::{self};
use crate::instance::IrqCore;
use crate::platform::Platform;
use alloc::sync::Arc;

/// What a change of a descriptor's actions or chip stack replaced: dropped
/// once no CPU can still be reading it ([`IrqCore::retire`]).
pub(crate) struct Retired {
    pub(crate) _actions: ActionList,
    pub(crate) _view: Option<Arc<crate::desc::View>>,
}

impl<P: Platform> IrqCore<P> {
    /// Frees the memory of `descs` once no CPU can still be dispatching
    /// through them.
    pub(crate) fn reclaim(&self, descs: crate::store::Unpublished) {
        let me = self.cpu_index().ok();
        let self_in_section = me.is_some_and(|c| self.epochs[c].in_section());
        grace::synchronize_for(&self.platform, &self.epochs[..self.nr_cpus as usize], me);
        if self_in_section {
            // We may hold a reference up our own stack: park them.
            self.store.retire(descs);
        } else {
            // SAFETY: they were unpublished before the grace period above,
            // which covered every other CPU, and this CPU is outside any
            // read-side section, so no reference to them is left.
            unsafe { descs.free() };
            self.reclaim_retired();
        }
    }

    pub(crate) fn reclaim_retired(&self) {
        let me = self.cpu_index().ok();
        if me.is_some_and(|c| self.epochs[c].in_section()) {
            return;
        }
        let retired = self.store.take_retired();
        if !retired.is_empty() {
            grace::synchronize_for(&self.platform, &self.epochs[..self.nr_cpus as usize], me);
            // SAFETY: they were unpublished before they were retired, hence
            // before the grace period above, which covered every other CPU;
            // this CPU is outside any read-side section (checked above).
            unsafe { retired.free() };
        }
    }

    /// Drops a replaced action list once no CPU can still be iterating it:
    /// dispatchers read lists without the descriptor lock, inside their
    /// read-side section ([`crate::grace`]). Callers hold no section of
    /// their own; should the CPU still be inside one further up (an API
    /// called from a callback), the list is parked and dropped by a later
    /// call after a full grace period instead.
    pub(crate) fn retire(&self, old: Retired) {
        if old._view.is_none() && old._actions.is_empty() {
            // Nothing any CPU could be reading (a first chip on a fresh
            // descriptor): no grace period to wait for.
            return;
        }
        let me = self.cpu_index().ok();
        grace::synchronize_for(&self.platform, &self.epochs[..self.nr_cpus as usize], me);
        if me.is_some_and(|c| self.epochs[c].in_section()) {
            self.retired_actions.lock().push(old);
            return;
        }
        drop(old);
        let parked = core::mem::take(&mut *self.retired_actions.lock());
        if !parked.is_empty() {
            grace::synchronize_for(&self.platform, &self.epochs[..self.nr_cpus as usize], me);
            drop(parked);
        }
    }
}

#[cfg(test)]
mod tests {
    //! The parking paths, which only a CPU that frees from inside its own
    //! read-side section takes (an API called from a callback up its
    //! stack). No public API reaches them on its own, so the section is
    //! entered directly here.
    use crate::chip::{ChipLevel, IrqChip, IrqData};
    use crate::flow::FlowKind;
    use crate::ids::{CpuId, HwIrq, IrqNumber};
    use crate::instance::IrqCore;
    use crate::test_platform::BootCpuOnly as OneCpu;
    use alloc::sync::Arc;
    use alloc::vec;

    /// A chip whose reference count shows whether a descriptor or a view
    /// holding it was dropped.
    struct Canary;
    impl IrqChip for Canary {
        fn name(&self) -> &str {
            "CANARY"
        }
        fn mask(&self, _d: &IrqData<'_>) {}
        fn unmask(&self, _d: &IrqData<'_>) {}
    }

    fn core_with_canary(flow: FlowKind) -> (IrqCore<OneCpu>, IrqNumber, Arc<Canary>) {
        let core = IrqCore::new(OneCpu);
        core.set_cpu_online(CpuId::BOOT, true).unwrap();
        let chip = Arc::new(Canary);
        let irq = core.alloc_descs(IrqNumber(1), 1).unwrap();
        core.set_chip(irq, vec![ChipLevel::new(chip.clone(), HwIrq(1))], flow)
            .unwrap();
        // The descriptor and its published view share one chip stack.
        assert_eq!(Arc::strong_count(&chip), 2, "test + chip stack");
        (core, irq, chip)
    }

    #[test]
    fn descriptors_freed_inside_a_section_are_parked_then_reclaimed() {
        let (core, irq, chip) = core_with_canary(FlowKind::Edge);
        let s = core.section().unwrap();
        core.free_descs(irq, 1).unwrap();
        assert!(!core.is_allocated(irq), "unpublished at once");
        assert_eq!(
            Arc::strong_count(&chip),
            2,
            "freed while this CPU may still hold a reference up its stack"
        );
        // Still inside: a reclaim attempt must leave the parked ones alone.
        core.reclaim_retired();
        assert_eq!(Arc::strong_count(&chip), 2, "reclaimed inside a section");
        drop(s);
        // Outside any section, the next allocation reclaims them.
        let again = core.alloc_descs(IrqNumber(10), 1).unwrap();
        assert_eq!(Arc::strong_count(&chip), 1, "parked descriptor never freed");
        core.free_descs(again, 1).unwrap();
    }

    #[test]
    fn a_chip_stack_replaced_inside_a_section_is_parked_then_dropped() {
        let (core, irq, chip) = core_with_canary(FlowKind::PerCpu);
        let s = core.section().unwrap();
        core.set_chip(
            irq,
            vec![ChipLevel::new(Arc::new(Canary), HwIrq(1))],
            FlowKind::PerCpu,
        )
        .unwrap();
        assert_eq!(
            Arc::strong_count(&chip),
            2,
            "the replaced view dropped while this CPU may still read it"
        );
        drop(s);
        // The next replacement outside any section drops the parked one.
        core.set_chip(
            irq,
            vec![ChipLevel::new(Arc::new(Canary), HwIrq(1))],
            FlowKind::PerCpu,
        )
        .unwrap();
        assert_eq!(Arc::strong_count(&chip), 1, "parked view never dropped");
    }
}
