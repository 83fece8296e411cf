//! Owning handles for event-channel bindings: a [`BoundIrq`] is a bound
//! port with its irq descriptor, and dropping it closes the port and frees
//! the descriptor ([`XenIrqs::unbind`]), as irqcore's `Registration` does
//! for a handler.
//!
//! The handle API is reached through [`XenIrqs::binder`]; its `bind_*`
//! calls mirror [`XenIrqs`]'s, which stay as the documented low-level layer
//! returning raw `(Port, IrqNumber)` pairs for kernels that keep them in
//! their own tables. A handle has three exits:
//!
//! * drop: unbinds, ignoring errors (there is nobody to tell; a refused
//!   unbind leaves the binding in place, see [`BoundIrq::unbind`]);
//! * [`BoundIrq::unbind`]: unbinds and reports an error, giving the handle
//!   back so the caller can retry (for example after freeing a handler);
//! * [`BoundIrq::leak`]: keeps the binding and returns the raw pair, which
//!   [`Binder::adopt`] turns back into a handle.
//!
//! **Order.** Free the irq's handlers before the handle goes: unbinding an
//! irq that still has handlers is refused (`HasHandlers`) and changes
//! nothing, so a handle dropped first leaves the port bound.

use crate::error::EvtchnError;
use crate::ids::{DomId, Pirq, Port, VcpuId, Virq};
use crate::irq::XenIrqs;
use irqcore::{IrqCore, IrqNumber, Platform};

/// [`XenIrqs`]'s bind calls for one [`IrqCore`], returning [`BoundIrq`]
/// handles.
pub struct Binder<'c, P: Platform> {
    xen: &'c XenIrqs,
    core: &'c IrqCore<P>,
}

impl XenIrqs {
    /// The handle-returning bind calls for `core`.
    pub fn binder<'c, P: Platform>(&'c self, core: &'c IrqCore<P>) -> Binder<'c, P> {
        Binder { xen: self, core }
    }
}

impl<'c, P: Platform> Binder<'c, P> {
    fn own(&self, (port, irq): (Port, IrqNumber)) -> BoundIrq<'c, P> {
        BoundIrq {
            xen: self.xen.clone(),
            core: self.core,
            port,
            irq,
            live: true,
        }
    }

    /// [`XenIrqs::bind_interdomain`], owned.
    pub fn bind_interdomain(
        &self,
        remote_dom: DomId,
        remote_port: Port,
        late_eoi: bool,
    ) -> Result<BoundIrq<'c, P>, EvtchnError> {
        self.xen
            .bind_interdomain(self.core, remote_dom, remote_port, late_eoi)
            .map(|b| self.own(b))
    }

    /// [`XenIrqs::alloc_unbound`], owned.
    pub fn alloc_unbound(&self, remote_dom: DomId) -> Result<BoundIrq<'c, P>, EvtchnError> {
        self.xen
            .alloc_unbound(self.core, remote_dom)
            .map(|b| self.own(b))
    }

    /// [`XenIrqs::bind_global_virq`], owned.
    pub fn bind_global_virq(
        &self,
        virq: Virq,
        vcpu: VcpuId,
    ) -> Result<BoundIrq<'c, P>, EvtchnError> {
        self.xen
            .bind_global_virq(self.core, virq, vcpu)
            .map(|b| self.own(b))
    }

    /// [`XenIrqs::bind_pirq`], owned.
    pub fn bind_pirq(
        &self,
        pirq: Pirq,
        will_share: bool,
        level: bool,
    ) -> Result<BoundIrq<'c, P>, EvtchnError> {
        self.xen
            .bind_pirq(self.core, pirq, will_share, level)
            .map(|b| self.own(b))
    }

    /// Takes ownership of a binding made through the low-level layer (or
    /// given up with [`BoundIrq::leak`]). Refused with
    /// [`EvtchnError::NotBound`] if `port` has no irq.
    pub fn adopt(&self, port: Port) -> Result<BoundIrq<'c, P>, EvtchnError> {
        let irq = self
            .xen
            .channels()
            .irq_of(port)
            .ok_or(EvtchnError::NotBound(port))?;
        Ok(self.own((port, irq)))
    }
}

/// A bound event channel and its irq; dropping it closes the port and frees
/// the descriptor.
#[must_use = "dropping the handle closes the port at once"]
pub struct BoundIrq<'c, P: Platform> {
    xen: XenIrqs,
    core: &'c IrqCore<P>,
    port: Port,
    irq: IrqNumber,
    live: bool,
}

impl<'c, P: Platform> BoundIrq<'c, P> {
    /// The local port.
    pub fn port(&self) -> Port {
        self.port
    }

    /// The irq delivering the port's events.
    pub fn irq(&self) -> IrqNumber {
        self.irq
    }

    /// Closes the port and frees the descriptor now. On a refusal (the irq
    /// still has handlers, or the caller holds the sparse lock) nothing
    /// changed and the handle comes back with the error.
    pub fn unbind(mut self) -> Result<(), (Self, EvtchnError)> {
        match self.xen.unbind(self.core, self.port) {
            Ok(()) => {
                self.live = false;
                Ok(())
            }
            Err(e) => Err((self, e)),
        }
    }

    /// Keeps the binding and returns the raw `(port, irq)`; unbind it later
    /// with [`XenIrqs::unbind`], or adopt it again with [`Binder::adopt`].
    pub fn leak(mut self) -> (Port, IrqNumber) {
        self.live = false;
        (self.port, self.irq)
    }
}

impl<P: Platform> Drop for BoundIrq<'_, P> {
    fn drop(&mut self) {
        if self.live {
            let _ = self.xen.unbind(self.core, self.port);
        }
    }
}

impl<P: Platform> core::fmt::Debug for BoundIrq<'_, P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BoundIrq")
            .field("port", &self.port)
            .field("irq", &self.irq)
            .field("live", &self.live)
            .finish()
    }
}
