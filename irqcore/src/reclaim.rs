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
