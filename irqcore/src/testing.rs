//! Test hooks (feature `sim`, hidden from the docs): descriptor state that
//! no public operation reaches within a test's time budget. Not part of the
//! API; tests of this workspace only.

use crate::error::IrqError;
use crate::ids::IrqNumber;
use crate::instance::IrqCore;
use crate::platform::Platform;

impl<P: Platform> IrqCore<P> {
    /// Sets the disable depth of `irq` as if `depth` nested disables had
    /// been made (reaching `u32::MAX` through `disable_irq` takes four
    /// billion calls).
    #[doc(hidden)]
    pub fn test_hook_set_disable_depth(&self, irq: IrqNumber, depth: u32) -> Result<(), IrqError> {
        let s = self.section()?;
        let desc = self.desc(&s, irq)?;
        let mut g = self.lock_desc(desc);
        if depth > 0 && g.depth == 0 {
            g.line.insert(crate::desc::LineState::DISABLED);
        }
        g.depth = depth;
        Ok(())
    }

    /// The descriptor's total of handled arrivals (`tot_count`, which no
    /// public query reports).
    #[doc(hidden)]
    pub fn test_hook_total_count(&self, irq: IrqNumber) -> Result<u64, IrqError> {
        let s = self.section()?;
        let desc = self.desc(&s, irq)?;
        Ok(self.lock_desc(desc).tot_count)
    }

    /// Whether some CPU holds the descriptor lock of `irq` right now
    /// (without taking it): lets a test chip tell whether the core called
    /// it under the lock.
    #[doc(hidden)]
    pub fn test_hook_desc_locked(&self, irq: IrqNumber) -> Result<bool, IrqError> {
        let s = self.section()?;
        let desc = self.desc(&s, irq)?;
        Ok(desc.inner.is_locked())
    }
}
