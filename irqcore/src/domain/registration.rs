//! [`DomainRegistration`]: the owning handle of a registered domain.

use super::error::DomainError;
use super::ops::{DomainConfig, DomainId, DomainOps};
use super::registry::DomainRegistry;
use crate::platform::{IrqEvent, Platform};
use alloc::sync::Arc;

impl<'c, P: Platform> DomainRegistry<'c, P> {
    /// Registers a domain, as [`DomainRegistry::add_domain`] does, and
    /// returns a handle that unregisters it on drop.
    ///
    /// [`DomainRegistry::add_domain`] / [`DomainRegistry::remove_domain`]
    /// are the low-level layer, for domains registered for the life of the
    /// kernel.
    pub fn register_domain(
        &self,
        config: DomainConfig,
        ops: Arc<dyn DomainOps>,
    ) -> Result<DomainRegistration<'_, 'c, P>, DomainError> {
        let id = self.add_domain(config, ops)?;
        Ok(DomainRegistration {
            registry: self,
            id,
            live: true,
        })
    }
}

/// A registered domain ([`DomainRegistry::register_domain`]); dropping it
/// unregisters the domain.
///
/// A domain cannot go while it maps a hwirq or is the parent of another
/// domain: drop the [`Mapping`](super::Mapping)s and child registrations
/// first (declared after this handle, they are). A drop that cannot
/// unregister leaves the domain registered and reports
/// [`IrqEvent::DomainKept`]; [`DomainRegistration::remove`] returns the
/// error instead.
#[must_use = "dropping the registration unregisters the domain at once"]
pub struct DomainRegistration<'r, 'c, P: Platform> {
    registry: &'r DomainRegistry<'c, P>,
    id: DomainId,
    live: bool,
}

impl<P: Platform> DomainRegistration<'_, '_, P> {
    /// The domain's id (to map through it, or as a parent).
    pub fn id(&self) -> DomainId {
        self.id
    }

    /// Unregisters the domain now and returns its callbacks; on error the
    /// domain stays registered and the handle is handed back.
    #[allow(clippy::type_complexity)]
    pub fn remove(mut self) -> Result<Arc<dyn DomainOps>, (Self, DomainError)> {
        match self.registry.remove_domain(self.id) {
            Ok(ops) => {
                self.live = false;
                Ok(ops)
            }
            Err(e) => Err((self, e)),
        }
    }

    /// Gives up ownership: the domain stays registered until
    /// [`DomainRegistry::remove_domain`] is called with the returned id.
    pub fn leak(mut self) -> DomainId {
        self.live = false;
        self.id
    }
}

impl<P: Platform> Drop for DomainRegistration<'_, '_, P> {
    fn drop(&mut self) {
        if self.live && self.registry.remove_domain(self.id).is_err() {
            self.registry
                .core()
                .platform()
                .report(IrqEvent::DomainKept(self.id));
        }
    }
}
