//! Enable and disable: the nesting disable depth, starting and shutting
//! down a line, per-CPU enable, and waiting for running handlers.

use crate::chip::TriggerType;
use crate::desc::{DeliveryFlags, LineState};
use crate::error::IrqError;
use crate::ids::IrqNumber;
use crate::instance::IrqCore;
use crate::platform::Platform;

impl<P: Platform> IrqCore<P> {
    /// Starts the line: depth 0, chip startup (or enable if started), and
    /// replay of an event that arrived while it was off.
    pub(crate) fn startup(&self, irq: IrqNumber, g: &mut crate::desc::DescInner, resend: bool) {
        if !g.line.contains(LineState::STARTED) {
            let online = self.online_cpus();
            if g.line.contains(LineState::AFFINITY_MANAGED) && !g.affinity().intersects(&online) {
                // No CPU of a managed irq's mask is online: stay shut down
                // until one comes up (hotplug restarts it).
                g.line
                    .insert(LineState::MANAGED_SHUTDOWN | LineState::DISABLED);
                g.depth = 1;
                return;
            }
            self.setup_affinity(irq, g, &online);
        }
        g.depth = 0;
        if let Some(d) = g.data(irq) {
            let chip = &g.levels[0].chip;
            if g.line.contains(LineState::STARTED) {
                if g.line.contains(LineState::DISABLED) {
                    chip.enable(&d);
                } else {
                    chip.unmask(&d);
                }
            } else {
                chip.startup(&d);
            }
        }
        g.line.remove(LineState::DISABLED | LineState::MASKED);
        g.line.insert(LineState::STARTED);
        if resend {
            self.check_irq_resend(irq, g, false);
        }
    }

    /// Shuts the line down (last handler freed).
    pub(crate) fn shutdown(&self, irq: IrqNumber, g: &mut crate::desc::DescInner) {
        if g.line.contains(LineState::STARTED)
            && let Some(d) = g.data(irq)
        {
            g.levels[0].chip.shutdown(&d);
        }
        g.depth = 1;
        g.line.insert(LineState::DISABLED | LineState::MASKED);
        // A replay queued for the handler being freed must not reach the
        // next owner of the line.
        self.cancel_sw_resend(irq, g);
        // A managed shutdown ends with the last handler: the next request
        // starts afresh (otherwise a CPU coming back would start a line a
        // NO_AUTOEN requester has not enabled yet).
        g.line
            .remove(LineState::STARTED | LineState::MANAGED_SHUTDOWN);
    }

    /// The lazy disable: mark DISABLED; mask only if the chip has a real
    /// disable or the line asked not to be lazy.
    pub(crate) fn irq_disable(irq: IrqNumber, g: &mut crate::desc::DescInner) {
        g.line.insert(LineState::DISABLED);
        if let Some(d) = g.data(irq) {
            let chip = &g.levels[0].chip;
            if chip.disable(&d) {
                g.line.insert(LineState::MASKED);
            } else if g.line.contains(LineState::DISABLE_UNLAZY)
                && !g.line.contains(LineState::MASKED)
            {
                chip.mask(&d);
                g.line.insert(LineState::MASKED);
            }
        }
    }

    /// Disables `irq` (nesting) without waiting for a running handler.
    pub fn disable_irq_nosync(&self, irq: IrqNumber) -> Result<(), IrqError> {
        let s = self.section()?;
        let desc = self.desc(&s, irq)?;
        self.with_bus_lock(desc, |g| {
            if g.line.contains(LineState::PER_CPU) {
                return Err(IrqError::IsPerCpu(irq));
            }
            if g.depth == u32::MAX {
                return Err(IrqError::DisableDepthOverflow(irq));
            }
            if g.depth == 0 {
                Self::irq_disable(irq, g);
            }
            g.depth += 1;
            Ok(())
        })
    }

    /// Disables `irq` and waits for a handler running on another CPU.
    ///
    /// Refused with [`IrqError::InInterrupt`] from a handler and with
    /// [`IrqError::InOwnThread`] from the irq's own thread function (it
    /// would wait for itself): use [`IrqCore::disable_irq_nosync`] there.
    pub fn disable_irq(&self, irq: IrqNumber) -> Result<(), IrqError> {
        self.check_may_wait()?;
        self.check_not_own_thread(irq)?;
        self.disable_irq_nosync(irq)?;
        self.wait_for_handlers(irq)
    }

    /// Refuses a wait for the threads of `irq` from one of those threads.
    pub(crate) fn check_not_own_thread(&self, irq: IrqNumber) -> Result<(), IrqError> {
        let me = self.platform.current_cpu().get().wrapping_add(1);
        let s = self.section()?;
        let desc = self.desc(&s, irq)?;
        let g = self.lock_desc(desc);
        if g.actions
            .iter()
            .any(|a| a.thread_cpu.load(crate::sync::Ordering::Acquire) == me)
        {
            return Err(IrqError::InOwnThread(irq));
        }
        Ok(())
    }

    /// Undoes one [`IrqCore::disable_irq`]; at depth zero the line is
    /// started again and an event that arrived meanwhile is replayed.
    pub fn enable_irq(&self, irq: IrqNumber) -> Result<(), IrqError> {
        let s = self.section()?;
        let desc = self.desc(&s, irq)?;
        let r = self.with_bus_lock(desc, |g| {
            if g.line.contains(LineState::PER_CPU) {
                return Err(IrqError::IsPerCpu(irq));
            }
            // The depth counts the drivers' disables plus one for each
            // disable the core made on its own: a managed shutdown and the
            // spurious detector. Those are undone by a CPU coming back and
            // by `reenable_spurious`, never by a driver's enable.
            let reserved = u32::from(g.line.contains(LineState::MANAGED_SHUTDOWN))
                + u32::from(g.delivery.contains(DeliveryFlags::SPURIOUS_DISABLED));
            if g.depth <= reserved {
                return Err(IrqError::UnbalancedEnable(irq));
            }
            if g.depth > 1 {
                g.depth -= 1;
                return Ok(());
            }
            if g.actions.is_empty() {
                // Nothing to start: Linux warns; we refuse.
                return Err(IrqError::NoSuchHandler(irq));
            }
            self.startup(irq, g, true);
            Ok(())
        });
        drop(s);
        self.kick_resends();
        r
    }

    /// Waits until no CPU runs the handlers of `irq` and no thread of it is
    /// active.
    ///
    /// Refused with [`IrqError::InInterrupt`] from a handler and with
    /// [`IrqError::InOwnThread`] from the irq's own thread function. No
    /// read-side section is held while waiting (a CPU waiting for a grace
    /// period may be the one the awaited thread needs).
    pub fn synchronize_irq(&self, irq: IrqNumber) -> Result<(), IrqError> {
        self.check_may_wait()?;
        self.check_not_own_thread(irq)?;
        self.wait_for_handlers(irq)
    }

    /// The wait of [`IrqCore::synchronize_irq`], for callers that made its
    /// context checks already.
    pub(crate) fn wait_for_handlers(&self, irq: IrqNumber) -> Result<(), IrqError> {
        loop {
            {
                let s = self.section()?;
                let Ok(desc) = self.desc(&s, irq) else {
                    // Freed while we waited: nothing of it runs any more.
                    return Ok(());
                };
                let g = self.lock_desc(desc);
                let threads_busy = g
                    .actions
                    .iter()
                    .any(|a| a.threads_pending.load(crate::sync::Ordering::Acquire) != 0);
                if !desc.in_progress() && !threads_busy {
                    return Ok(());
                }
            }
            self.platform.cpu_relax();
        }
    }

    /// Enables a per-CPU irq on the calling CPU (optionally setting its
    /// trigger type).
    pub fn enable_percpu_irq(&self, irq: IrqNumber, trigger: TriggerType) -> Result<(), IrqError> {
        let cpu = self.platform.current_cpu();
        let s = self.section()?;
        let desc = self.desc(&s, irq)?;
        let mut g = self.lock_desc(desc);
        if !g.line.contains(LineState::PER_CPU) {
            return Err(IrqError::NotPerCpu(irq));
        }
        if trigger != TriggerType::None {
            Self::apply_trigger(irq, &mut g, trigger)?;
        }
        if let Some(d) = g.data(irq) {
            g.levels[0].chip.enable(&d);
        }
        g.masks.update(crate::desc::MaskKind::PercpuEnabled, |m| {
            m.set(cpu);
        });
        Ok(())
    }

    /// Disables a per-CPU irq on the calling CPU.
    pub fn disable_percpu_irq(&self, irq: IrqNumber) -> Result<(), IrqError> {
        let cpu = self.platform.current_cpu();
        let s = self.section()?;
        let desc = self.desc(&s, irq)?;
        let mut g = self.lock_desc(desc);
        if !g.line.contains(LineState::PER_CPU) {
            return Err(IrqError::NotPerCpu(irq));
        }
        if let Some(d) = g.data(irq) {
            let chip = &g.levels[0].chip;
            if !chip.disable(&d) {
                chip.mask(&d);
            }
        }
        g.masks.update(crate::desc::MaskKind::PercpuEnabled, |m| {
            m.clear(cpu);
        });
        Ok(())
    }
}
