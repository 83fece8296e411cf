//! Interrupt threads: running a thread function for the platform's thread
//! and finalising oneshot lines once the last thread is done.

use crate::chip::ChipFlags;
use crate::desc::LineState;
use crate::dispatch::EXIT_INLINE_THREADS;
use crate::error::IrqError;
use crate::ids::IrqNumber;
use crate::instance::IrqCore;
use crate::platform::{ActionId, Platform};
use alloc::sync::Arc;
use core::sync::atomic::Ordering;

impl<P: Platform> IrqCore<P> {
    /// Runs the thread function of `action` on `irq` (called by the
    /// platform's interrupt thread after [`Platform::wake_thread`]), then
    /// finalises oneshot: the line is unmasked once the last oneshot thread
    /// is done.
    ///
    /// No read-side section is held while the thread function runs, so it
    /// may sleep and may call any process-context API, `free_irq` of its own
    /// handler included (which then returns without waiting for this very
    /// call to end). The interrupt thread must not migrate to another CPU
    /// while inside this call.
    pub fn run_thread(&self, irq: IrqNumber, action: ActionId) -> Result<(), IrqError> {
        let me = self.platform.current_cpu();
        let a = {
            let s = self.section()?;
            let desc = self.desc(&s, irq)?;
            let g = self.lock_desc(desc);
            if desc.in_progress() && g.in_progress_cpu == me && self.in_interrupt() {
                // Called from inside this irq's own flow on this CPU (a
                // `wake_thread` that runs the thread at once): finishing
                // here would wait for that very flow. Run it when the flow
                // is done, before `handle_irq` returns.
                desc.exit_work
                    .fetch_or(EXIT_INLINE_THREADS, Ordering::AcqRel);
                return Ok(());
            }
            g.actions.iter().find(|a| a.id == action).cloned()
        };
        let Some(a) = a else {
            return Err(IrqError::NoSuchHandler(irq));
        };
        // Each wake that set the flag was counted in `threads_pending` once;
        // count the ones this call consumes so exactly those are undone.
        let mut consumed = 0u32;
        let mut handled = 0u32;
        a.thread_cpu
            .store(me.get().wrapping_add(1), crate::sync::Ordering::Release);
        while !a.removed.load(crate::sync::Ordering::Acquire)
            && a.run_thread.swap(false, crate::sync::Ordering::AcqRel)
        {
            consumed += 1;
            if a.handler.thread(irq).handled() {
                handled += 1;
            }
        }
        a.thread_cpu.store(0, crate::sync::Ordering::Release);
        // Finalise. The descriptor is looked up again: it may have gone
        // while the thread function ran (freed after `free_irq` unlinked
        // this action), and then there is nothing left to finalise.
        loop {
            let s = self.section()?;
            let Ok(desc) = self.desc(&s, irq) else {
                return Ok(());
            };
            if handled != 0 {
                desc.threads_handled
                    .fetch_add(handled, crate::sync::Ordering::AcqRel);
                handled = 0;
            }
            let mut g = self.lock_desc(desc);
            // Never finalise while a hard handler runs on some CPU: it may
            // be about to record this wake's oneshot bit.
            if desc.in_progress() {
                drop(g);
                drop(s);
                self.platform.cpu_relax();
                continue;
            }
            if !g.actions.iter().any(|x| Arc::ptr_eq(x, &a)) {
                // Unlinked by free_irq, which cleared its oneshot bit.
                return Ok(());
            }
            a.threads_pending
                .fetch_sub(consumed, crate::sync::Ordering::AcqRel);
            if a.run_thread.load(crate::sync::Ordering::Acquire) {
                // Woken again meanwhile: that wake's own run finalises.
                break;
            }
            if g.threads_oneshot & a.thread_mask != 0 {
                g.threads_oneshot &= !a.thread_mask;
                if g.threads_oneshot == 0
                    && g.line.contains(LineState::MASKED)
                    && !g.line.contains(LineState::DISABLED)
                {
                    let flags = g.chip_flags;
                    if flags.contains(ChipFlags::EOI_THREADED) {
                        Self::eoi(irq, &g);
                    }
                    Self::unmask(irq, &mut g);
                }
            }
            break;
        }
        Ok(())
    }
}
