//! The spurious-interrupt detector: lines whose interrupts nobody handles
//! are disabled, and re-enabled on request.

use crate::desc::IrqStatus;
use crate::error::IrqError;
use crate::ids::IrqNumber;
use crate::instance::IrqCore;
use crate::platform::Platform;

impl<P: Platform> IrqCore<P> {
    /// Re-enables a line the spurious detector disabled (after the cause,
    /// typically a missing or misbehaving handler, has been fixed).
    pub fn reenable_spurious(&self, irq: IrqNumber) -> Result<(), IrqError> {
        let s = self.section()?;
        let desc = self.desc(&s, irq)?;
        let r = self.with_bus_lock(desc, |g| {
            if !g.status.contains(IrqStatus::SPURIOUS_DISABLED) {
                return Err(IrqError::InvalidArgument);
            }
            g.status.remove(IrqStatus::SPURIOUS_DISABLED);
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
            .status
            .contains(IrqStatus::SPURIOUS_DISABLED))
    }
}
