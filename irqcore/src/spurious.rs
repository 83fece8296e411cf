//! The spurious-interrupt detector: lines whose interrupts nobody handles
//! are disabled, and re-enabled on request.

use crate::action::IrqReturn;
use crate::desc::DeliveryFlags;
use crate::desc::{DescInner, IrqDesc, LineState};
use crate::dispatch::EXIT_REPORT_SPURIOUS;
use crate::error::IrqError;
use crate::ids::IrqNumber;
use crate::instance::IrqCore;
use crate::platform::Platform;
use core::sync::atomic::Ordering;

/// Spurious detector window and threshold (Linux's values: a line is
/// disabled when *more than* the threshold were unhandled).
pub(crate) const SPURIOUS_WINDOW: u32 = 100_000;
pub(crate) const SPURIOUS_THRESHOLD: u32 = 99_900;
/// With a clock, an unhandled interrupt this long after the previous one
/// restarts the count (Linux: HZ/10).
pub(crate) const SPURIOUS_GAP_NS: u64 = 100_000_000;

impl<P: Platform> IrqCore<P> {
    /// Re-enables a line the spurious detector disabled (after the cause,
    /// typically a missing or misbehaving handler, has been fixed).
    pub fn reenable_spurious(&self, irq: IrqNumber) -> Result<(), IrqError> {
        let s = self.section()?;
        let desc = self.desc(&s, irq)?;
        let r = self.with_bus_lock(desc, |g| {
            if !g.delivery.contains(DeliveryFlags::SPURIOUS_DISABLED) {
                return Err(IrqError::NotSpuriousDisabled(irq));
            }
            g.delivery.remove(DeliveryFlags::SPURIOUS_DISABLED);
            g.irq_count = 0;
            g.irqs_unhandled = 0;
            g.depth = g.depth.saturating_sub(1);
            if g.depth == 0 && !g.actions.is_empty() {
                self.startup(irq, g, false);
            }
            Ok(())
        });
        drop(s);
        self.kick_resends();
        r
    }

    /// Whether the spurious detector disabled `irq`.
    pub fn is_spurious_disabled(&self, irq: IrqNumber) -> Result<bool, IrqError> {
        Ok(self
            .snapshot(irq)?
            .delivery
            .contains(DeliveryFlags::SPURIOUS_DISABLED))
    }
}

impl<P: Platform> IrqCore<P> {
    /// The unhandled-interrupt detector (Linux's `note_interrupt`): over
    /// every window of 100,000 interrupts, if more than 99,900 were
    /// unhandled the line is stuck ("nobody cared"): disable it and report
    /// (the report is made by `handle_irq` once the lock is dropped).
    ///
    /// An interrupt whose handlers only woke threads is judged by the
    /// threads instead, one interrupt late (the threads have not run yet):
    /// it counts as handled if some thread function returned handled since
    /// the previous such interrupt. With a platform clock, an unhandled
    /// interrupt more than 100 ms after the previous one restarts the
    /// unhandled count, so a slow line that is mostly unhandled survives.
    pub(crate) fn note_interrupt(&self, desc: &IrqDesc, g: &mut DescInner, mut ret: IrqReturn) {
        if g.line.contains(LineState::PER_CPU) {
            return;
        }
        if ret == IrqReturn::WAKE_THREAD {
            let now = desc.threads_handled.load(crate::sync::Ordering::Acquire);
            if !g.delivery.contains(DeliveryFlags::SPURIOUS_DEFERRED) {
                // First threaded-only interrupt: arm, judge from the next
                // (and leave it out of the window, which
                // `count_for_spurious` counted it in).
                g.delivery.insert(DeliveryFlags::SPURIOUS_DEFERRED);
                g.threads_handled_last = now;
                g.irq_count = g.irq_count.saturating_sub(1);
                return;
            }
            if now == g.threads_handled_last {
                ret = IrqReturn::NONE;
            } else {
                g.threads_handled_last = now;
                ret = IrqReturn::HANDLED;
            }
        }
        if !ret.handled() {
            let now = self.platform.now_ns();
            let fresh = match (now, g.last_unhandled_ns) {
                (Some(now), Some(last)) => now.wrapping_sub(last) > SPURIOUS_GAP_NS,
                _ => false,
            };
            g.irqs_unhandled = if fresh { 1 } else { g.irqs_unhandled + 1 };
            g.last_unhandled_ns = now;
        }
        // `irq_count` was counted before the run (`count_for_spurious`).
        if g.irq_count < SPURIOUS_WINDOW {
            return;
        }
        if g.irqs_unhandled > SPURIOUS_THRESHOLD {
            g.delivery.insert(DeliveryFlags::SPURIOUS_DISABLED);
            g.depth = g.depth.saturating_add(1);
            Self::irq_disable_masked(desc.irq, g);
            desc.exit_work
                .fetch_or(EXIT_REPORT_SPURIOUS, Ordering::AcqRel);
        }
        g.irq_count = 0;
        g.irqs_unhandled = 0;
    }

    fn irq_disable_masked(irq: IrqNumber, g: &mut DescInner) {
        g.line.insert(LineState::DISABLED);
        Self::mask(irq, g);
    }
}
