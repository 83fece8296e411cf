//! The dispatcher's read-side section: the guard under which it reads
//! what lock holders publish for lock-free readers (a descriptor's action
//! list and its published [`View`]), and the only `unsafe` of the dispatch
//! path. The protocol is [`crate::grace`]'s.

use crate::action::Action;
use crate::desc::{DescInner, IrqDesc, View};
use crate::grace::CpuEpoch;
use crate::platform::Platform;
use alloc::sync::Arc;

/// The dispatcher's read-side section ([`crate::grace`]) on the calling
/// CPU: entered by [`IrqSection::enter`], ended when dropped. It is the one
/// way the dispatcher reads what lock holders publish for lock-free
/// readers, and holds the dispatcher's only `unsafe`: the action list of a
/// descriptor and its published [`View`] are borrowed for as long as the
/// section lives, because a replaced list or view is dropped only after a
/// grace period (`IrqCore::retire`), which this section holds off.
pub(crate) struct IrqSection<'a> {
    epoch: &'a CpuEpoch,
}

impl<'a> IrqSection<'a> {
    /// Enters an interrupt-context section on `epoch`, the calling CPU's
    /// slot: with the light store if `P` provides
    /// [`Platform::synchronize_cpus`], with the read-modify-write otherwise.
    #[inline]
    pub(crate) fn enter<P: Platform>(epoch: &'a CpuEpoch) -> Self {
        epoch.enter_irq_for::<P>();
        Self { epoch }
    }

    /// Whether this section is nested in another dispatcher section on this
    /// CPU (a chained handler's dispatch).
    #[inline]
    pub(crate) fn nested(&self) -> bool {
        self.epoch.in_nested_irq()
    }

    /// The action list that `g`, a descriptor's locked state, holds now,
    /// borrowed for the rest of the section: the flows iterate it after
    /// dropping the descriptor lock.
    #[inline]
    pub(crate) fn actions<'s>(&'s self, g: &DescInner) -> &'s [Arc<Action>] {
        // SAFETY: `g.actions` is the list published in a descriptor (every
        // `DescInner` lives in one); whoever replaces it under the lock
        // hands the old list to `IrqCore::retire`, which drops it only
        // after a grace period, i.e. after every section that was open
        // when it was replaced has ended, this one included (it was open
        // when the caller read `g`, under the lock, before any such
        // replacement). The borrow of `self` keeps the section open.
        unsafe { &*g.actions.raw() }
    }

    /// The [`View`] published in `desc` (`None` until a chip or an action
    /// was set), borrowed for the rest of the section.
    #[inline]
    pub(crate) fn view<'s>(&'s self, desc: &'s IrqDesc) -> Option<&'s View> {
        let p = desc.view.load(core::sync::atomic::Ordering::Acquire);
        // SAFETY: a non-null pointer came from `Arc::into_raw` in
        // `publish_view`; a view that is swapped out is dropped only after a
        // grace period (`IrqCore::retire`) that this section holds off, and
        // the current one lives as long as the descriptor (`'s`).
        unsafe { p.as_ref() }
    }
}

impl Drop for IrqSection<'_> {
    #[inline]
    fn drop(&mut self) {
        self.epoch.exit_irq_entered();
    }
}
