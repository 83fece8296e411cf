//! Handler management: requesting and freeing handlers, and the
//! [`Registration`] that frees one on drop (Linux's `request_irq` /
//! `free_irq` half of `manage.c`).

use crate::action::{Action, ActionList, DevId, IrqRequest, RequestFlags};
use crate::chip::{ChipFlags, TriggerType};
use crate::cpumask::CpuMask;
use crate::desc::{DeliveryFlags, LineState};
use crate::error::IrqError;
use crate::flow::FlowKind;
use crate::ids::IrqNumber;
use crate::instance::IrqCore;
use crate::platform::{ActionId, Platform};
use crate::reclaim::Retired;
use alloc::sync::Arc;
use core::sync::atomic::Ordering;

impl<P: Platform> IrqCore<P> {
    /// Installs a handler and returns a registration that frees it on drop.
    pub fn request_irq(
        &self,
        irq: IrqNumber,
        req: IrqRequest,
    ) -> Result<Registration<'_, P>, IrqError> {
        let dev_id = req
            .dev_id
            .unwrap_or_else(|| DevId(self.next_dev_id.fetch_add(1, Ordering::Relaxed)));
        self.request_irq_raw(irq, req.dev_id(dev_id))?;
        Ok(Registration {
            core: self,
            irq,
            dev_id,
            live: true,
        })
    }

    /// Installs a handler (C-style: free it with [`IrqCore::free_irq`] and
    /// the same device id, which is required).
    pub fn request_irq_raw(&self, irq: IrqNumber, mut req: IrqRequest) -> Result<(), IrqError> {
        let dev_id = req.dev_id.ok_or(IrqError::MissingDevId(irq))?;
        self.check_may_wait()?;
        let s = self.section()?;
        let desc = self.desc(&s, irq)?;
        let id = ActionId(self.next_action_id.fetch_add(1, Ordering::Relaxed));
        let old = self.with_bus_lock(desc, |g| {
            if g.line.contains(LineState::NO_REQUEST) {
                return Err(IrqError::NotRequestable(irq));
            }
            if g.levels.is_empty() && g.flow != FlowKind::Simple {
                return Err(IrqError::NoChip(irq));
            }
            let percpu = g.line.contains(LineState::PER_CPU);
            let wants_percpu = req.flags.contains(RequestFlags::PERCPU);
            if wants_percpu && !percpu {
                return Err(IrqError::NotPerCpu(irq));
            }
            if !wants_percpu && percpu {
                return Err(IrqError::IsPerCpu(irq));
            }
            let chip_flags = g.levels.first().map(|l| l.chip.flags()).unwrap_or_default();
            if chip_flags.contains(ChipFlags::ONESHOT_SAFE) {
                req.flags.remove(RequestFlags::ONESHOT);
            } else if req.no_primary && !req.flags.contains(RequestFlags::ONESHOT) {
                return Err(IrqError::OneshotRequired(irq));
            }
            if g.actions.iter().any(|a| a.dev_id == dev_id) {
                return Err(IrqError::DuplicateDevId(irq));
            }
            let first = g.actions.is_empty();
            if !first {
                let existing_shared = g
                    .actions
                    .iter()
                    .all(|a| a.flags.contains(RequestFlags::SHARED));
                if !existing_shared || !req.flags.contains(RequestFlags::SHARED) {
                    return Err(IrqError::NotShared(irq));
                }
                if req.trigger != TriggerType::None
                    && g.trigger != TriggerType::None
                    && req.trigger != g.trigger
                {
                    return Err(IrqError::TriggerMismatch(irq));
                }
                let oneshot = g.delivery.contains(DeliveryFlags::ONESHOT);
                if oneshot != req.flags.contains(RequestFlags::ONESHOT) {
                    return Err(IrqError::OneshotMismatch(irq));
                }
                if g.line.contains(LineState::PER_CPU_DEVID) {
                    return Err(IrqError::NotShared(irq));
                }
            }
            let mut thread_mask = 0;
            if req.flags.contains(RequestFlags::ONESHOT) {
                let used = g.actions.iter().fold(0u64, |m, a| m | a.thread_mask);
                if used == u64::MAX {
                    return Err(IrqError::TooManyActions(irq));
                }
                thread_mask = 1u64 << (!used).trailing_zeros();
            }
            if first && req.trigger != TriggerType::None {
                Self::apply_trigger(irq, g, req.trigger)?;
            }
            // Nothing can fail from here on.
            let action = Arc::new(Action::new(id, &req, dev_id, thread_mask));
            let old = core::mem::replace(&mut g.actions, ActionList::empty());
            g.actions = old.with(action);
            let old = Retired {
                _actions: old,
                _view: desc.publish_view(g),
            };
            if first {
                g.delivery.set(
                    DeliveryFlags::ONESHOT,
                    req.flags.contains(RequestFlags::ONESHOT),
                );
                g.irq_count = 0;
                g.irqs_unhandled = 0;
                g.delivery.remove(DeliveryFlags::SPURIOUS_DISABLED);
                if percpu {
                    // Per-CPU lines are enabled per CPU by enable_percpu_irq.
                    g.line.insert(LineState::STARTED);
                } else if req.flags.contains(RequestFlags::NO_AUTOEN)
                    || g.line.contains(LineState::NO_AUTOEN)
                {
                    g.depth = 1;
                    g.line.insert(LineState::DISABLED);
                } else {
                    self.startup(irq, g, true);
                }
            } else if g.delivery.contains(DeliveryFlags::SPURIOUS_DISABLED) {
                // A new handler on a line the detector gave up on: try again.
                g.delivery.remove(DeliveryFlags::SPURIOUS_DISABLED);
                g.irq_count = 0;
                g.irqs_unhandled = 0;
                if g.depth > 0 {
                    g.depth -= 1;
                    if g.depth == 0 {
                        self.startup(irq, g, true);
                    }
                }
            }
            Ok(old)
        });
        // Never wait for a grace period inside a section of our own.
        drop(s);
        let old = old?;
        self.retire(old);
        self.kick_resends();
        Ok(())
    }

    /// Frees the handler of `dev_id` on `irq`. Waits until no CPU and no
    /// interrupt thread is still running it: when this returns the handler
    /// is never called again. Called from that handler's own thread
    /// function, it returns without waiting for that one call to end.
    ///
    /// Refused with [`IrqError::InInterrupt`] from interrupt context (a
    /// handler of any irq on this CPU: the dispatcher up the stack may still
    /// be reading the list the handler is in) and inside stop-machine.
    pub fn free_irq(&self, irq: IrqNumber, dev_id: DevId) -> Result<(), IrqError> {
        self.check_may_wait()?;
        let (removed, old) = {
            let s = self.section()?;
            let desc = self.desc(&s, irq)?;
            self.with_bus_lock(desc, |g| {
                let Some(action) = g.actions.iter().find(|a| a.dev_id == dev_id).cloned() else {
                    return Err(IrqError::NoSuchHandler(irq));
                };
                let old = core::mem::replace(&mut g.actions, ActionList::empty());
                g.actions = old.without(action.id);
                let old = Retired {
                    _actions: old,
                    _view: desc.publish_view(g),
                };
                action.removed.store(true, crate::sync::Ordering::Release);
                g.threads_oneshot &= !action.thread_mask;
                if g.actions.is_empty() {
                    self.shutdown(irq, g);
                    g.delivery.remove(
                        DeliveryFlags::ONESHOT | DeliveryFlags::PENDING | DeliveryFlags::REPLAY,
                    );
                    g.masks
                        .set(crate::desc::MaskKind::PercpuEnabled, CpuMask::new());
                }
                Ok((action, old))
            })?
            // The section ends here: never wait for a grace period inside
            // one (two CPUs freeing at once would wait for each other).
        };
        // After the grace period no CPU iterates the old list any more.
        self.retire(old);
        // The remaining clones are held by interrupt threads running it;
        // if this is one of them, it is the caller and is not waited for.
        let me = self.platform.current_cpu().get().wrapping_add(1);
        let own_thread = removed.thread_cpu.load(crate::sync::Ordering::Acquire) == me;
        let others = if own_thread { 2 } else { 1 };
        while Arc::strong_count(&removed) > others {
            self.platform.cpu_relax();
        }
        Ok(())
    }
}

/// An installed handler; dropping it frees the handler (and waits until no
/// CPU still runs it).
#[must_use = "dropping the registration frees the handler at once"]
pub struct Registration<'a, P: Platform> {
    core: &'a IrqCore<P>,
    irq: IrqNumber,
    dev_id: DevId,
    live: bool,
}

impl<P: Platform> Registration<'_, P> {
    /// The irq.
    pub fn irq(&self) -> IrqNumber {
        self.irq
    }

    /// The device id the handler was installed with.
    pub fn dev_id(&self) -> DevId {
        self.dev_id
    }

    /// Frees the handler now, reporting errors (drop ignores them).
    pub fn free(mut self) -> Result<(), IrqError> {
        self.live = false;
        self.core.free_irq(self.irq, self.dev_id)
    }

    /// Gives up ownership: the handler stays installed until
    /// [`IrqCore::free_irq`] is called with [`Registration::dev_id`].
    pub fn leak(mut self) -> DevId {
        self.live = false;
        self.dev_id
    }
}

impl<P: Platform> Drop for Registration<'_, P> {
    fn drop(&mut self) {
        if self.live && self.core.free_irq(self.irq, self.dev_id) == Err(IrqError::InInterrupt) {
            // Freeing from a handler would free what the dispatcher up the
            // stack still reads: the handler stays, and the kernel hears.
            self.core
                .platform
                .report(crate::platform::IrqEvent::FreeRefused(self.irq));
        }
    }
}
