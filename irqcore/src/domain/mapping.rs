//! [`Mapping`]: the owning handle of one reference on a mapping.

use super::error::DomainError;
use super::registry::{DomainRegistry, MappingInfo, RefKind};
use crate::action::IrqRequest;
use crate::ids::IrqNumber;
use crate::manage::Registration;
use crate::platform::Platform;

/// One reference on a mapping (domain, hwirq) -> irq. Dropping it releases
/// the reference; the last reference tears the mapping down at every level
/// of its hierarchy and frees the descriptor.
///
/// Handlers requested through [`Mapping::request_irq`] borrow the handle,
/// so the compiler guarantees they are freed before the reference is
/// released. If handlers requested by irq number (through
/// [`IrqCore::request_irq`](crate::IrqCore::request_irq)) are still
/// installed when the last handle is dropped, the teardown is refused and
/// the reference becomes a raw one: the mapping stays valid and is listed
/// with `raw_refs == 1` until [`DomainRegistry::dispose_mapping`] is called
/// after those handlers are freed. Use [`Mapping::release`] to see the
/// error instead. The same happens if the handle is dropped where the
/// mapping lock cannot be taken (a CPU holding the sparse lock).
#[must_use = "dropping the mapping releases its reference at once"]
pub struct Mapping<'r, P: Platform> {
    registry: &'r DomainRegistry<'r, P>,
    irq: IrqNumber,
}

impl<'r, P: Platform> Mapping<'r, P> {
    pub(crate) fn new(registry: &'r DomainRegistry<'r, P>, irq: IrqNumber) -> Self {
        Self { registry, irq }
    }

    /// The irq number.
    pub fn irq(&self) -> IrqNumber {
        self.irq
    }

    /// The mapping's current state (domain, hwirq, references, trigger).
    pub fn info(&self) -> Result<MappingInfo, DomainError> {
        self.registry.mapping_info(self.irq)
    }

    /// Activates the hierarchy (see [`DomainRegistry::activate`]).
    pub fn activate(&self) -> Result<(), DomainError> {
        self.registry.activate(self.irq)
    }

    /// Activates the hierarchy if needed and installs a handler. The
    /// registration borrows this handle: it must be dropped (freeing the
    /// handler) before the handle can be.
    pub fn request_irq(&self, req: IrqRequest) -> Result<Registration<'_, P>, DomainError> {
        self.registry.activate(self.irq)?;
        Ok(self.registry.core().request_irq(self.irq, req)?)
    }

    /// Takes another reference on the same mapping.
    pub fn try_clone(&self) -> Result<Self, DomainError> {
        let info = self.info()?;
        let m = self.registry.map(info.domain, info.hwirq)?;
        debug_assert_eq!(m.irq, self.irq);
        Ok(m)
    }

    /// Releases the reference now, reporting a refused teardown (handlers
    /// still installed) by giving the handle back.
    pub fn release(self) -> Result<(), (Self, DomainError)> {
        let me = core::mem::ManuallyDrop::new(self);
        match me.registry.put(me.irq, RefKind::Handle) {
            Ok(()) => Ok(()),
            Err(e) => Err((core::mem::ManuallyDrop::into_inner(me), e)),
        }
    }

    /// Turns the handle's reference into a raw one and returns the irq: the
    /// caller now owes one [`DomainRegistry::dispose_mapping`].
    pub fn into_raw(self) -> IrqNumber {
        let me = core::mem::ManuallyDrop::new(self);
        me.registry.handle_to_raw(me.irq);
        me.irq
    }
}

impl<P: Platform> Drop for Mapping<'_, P> {
    fn drop(&mut self) {
        if self.registry.put(self.irq, RefKind::Handle).is_err() {
            // Not released (handlers still installed, or dropped in
            // interrupt context, where the mapping lock is refused): keep
            // the mapping valid under a raw reference rather than leave a
            // count nobody owns. In interrupt context not even that: the
            // tables' write lock could be held by the code this interrupt
            // interrupted; the reference is leaked and the mapping stays.
            if !self.registry.core().in_interrupt() {
                self.registry.handle_to_raw(self.irq);
            }
        }
    }
}

impl<P: Platform> core::fmt::Debug for Mapping<'_, P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Mapping").field("irq", &self.irq).finish()
    }
}
