//! Owning handles for what this crate hands out: an irq's vectors
//! ([`AllocatedVector`], from [`VectorDomain::alloc_vector`]) and an IOAPIC
//! pin ([`ClaimedPin`], from [`IoApic::claim_pin`]). Dropping a handle
//! gives the resource back, as irqcore's `Registration` does for a handler.
//!
//! Each handle has the same three exits:
//!
//! * drop: releases, ignoring errors (there is nobody to tell);
//! * `free()`: releases and reports an error;
//! * `leak()`: keeps the resource and returns the raw [`ChipLevel`]; the
//!   kernel then releases it through the low-level calls
//!   ([`VectorDomain::free`], [`IoApic::free_pin`]) or never (boot-time
//!   devices that live as long as the kernel).
//!
//! **Order.** A handle's [`ChipLevel`] usually sits in an irq's chip stack
//! (`IrqCore::set_chip`). Free the irq's handlers (and its descriptor)
//! before dropping the handles, outermost level first (the pin, then the
//! vector): a chip level whose resource is gone is inert (the vector
//! domain no longer maps the irq, the IOAPIC entry is masked), never
//! unsound, but an interrupt arriving meanwhile is lost.

use crate::ids::Vector;
use crate::ioapic::{IoApic, IoApicError};
use crate::matrix::VectorError;
use crate::regs::Mmio32;
use crate::vector::{ApicOps, VectorDomain, VectorTarget};
use alloc::sync::Arc;
use irqcore::{ChipLevel, CpuMask, IrqNumber, TriggerType};

/// The vectors of one irq in a [`VectorDomain`]; dropping it frees them
/// (and a managed irq's reservations).
#[must_use = "dropping the handle frees the vectors at once"]
pub struct AllocatedVector<O: ApicOps> {
    domain: Arc<VectorDomain<O>>,
    irq: IrqNumber,
    level: ChipLevel,
    live: bool,
}

impl<O: ApicOps + 'static> VectorDomain<O> {
    /// Like [`VectorDomain::alloc`], returning an owning handle.
    pub fn alloc_vector(
        self: &Arc<Self>,
        irq: IrqNumber,
        mask: &CpuMask,
        managed: bool,
    ) -> Result<AllocatedVector<O>, VectorError> {
        let level = self.alloc(irq, mask, managed)?;
        Ok(AllocatedVector {
            domain: self.clone(),
            irq,
            level,
            live: true,
        })
    }
}

impl<O: ApicOps> AllocatedVector<O> {
    /// The irq the vectors belong to.
    pub fn irq(&self) -> IrqNumber {
        self.irq
    }

    /// The vector level of the irq's chip stack (for `IrqCore::set_chip`,
    /// and as the parent of [`IoApic::claim_pin`]).
    pub fn level(&self) -> ChipLevel {
        self.level.clone()
    }

    /// Where the irq is delivered now.
    pub fn target(&self) -> Option<VectorTarget> {
        self.domain.target(self.irq)
    }

    /// The current vector, if the irq has one.
    pub fn vector(&self) -> Option<Vector> {
        self.target().map(|t| t.vector)
    }

    /// Frees the vectors now, reporting errors.
    pub fn free(mut self) -> Result<(), VectorError> {
        self.live = false;
        self.domain.free(self.irq)
    }

    /// Keeps the vectors allocated and returns the raw level; free them
    /// later with [`VectorDomain::free`] on [`AllocatedVector::irq`].
    pub fn leak(mut self) -> ChipLevel {
        self.live = false;
        self.level.clone()
    }
}

impl<O: ApicOps> Drop for AllocatedVector<O> {
    fn drop(&mut self) {
        if self.live {
            let _ = self.domain.free(self.irq);
        }
    }
}

impl<O: ApicOps> core::fmt::Debug for AllocatedVector<O> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AllocatedVector")
            .field("irq", &self.irq)
            .field("live", &self.live)
            .finish()
    }
}

/// One IOAPIC pin, programmed for an irq; dropping it masks the entry,
/// forgets its configuration and lets the pin be claimed again.
#[must_use = "dropping the handle masks and frees the pin at once"]
pub struct ClaimedPin<M: Mmio32 + 'static> {
    ioapic: Arc<IoApic<M>>,
    pin: u32,
    level: ChipLevel,
    live: bool,
}

impl<M: Mmio32 + 'static> IoApic<M> {
    /// Like [`IoApic::alloc_pin`], returning an owning handle; refused with
    /// [`IoApicError::PinInUse`] while another handle owns `pin`. On any
    /// error nothing changed.
    pub fn claim_pin(
        self: &Arc<Self>,
        irq: IrqNumber,
        pin: u32,
        trigger: TriggerType,
        parent: &ChipLevel,
    ) -> Result<ClaimedPin<M>, IoApicError> {
        self.mark_claimed(pin)?;
        match self.alloc_pin(irq, pin, trigger, parent) {
            Ok(level) => Ok(ClaimedPin {
                ioapic: self.clone(),
                pin,
                level,
                live: true,
            }),
            Err(e) => {
                // alloc_pin changes nothing on error: only the mark to undo
                // (the pin was masked and unowned before the claim).
                let _ = self.free_pin(pin);
                Err(e)
            }
        }
    }
}

impl<M: Mmio32 + 'static> ClaimedPin<M> {
    /// The pin.
    pub fn pin(&self) -> u32 {
        self.pin
    }

    /// The IOAPIC level of the irq's chip stack (for `IrqCore::set_chip`).
    pub fn level(&self) -> ChipLevel {
        self.level.clone()
    }

    /// Masks and frees the pin now, reporting errors.
    pub fn free(mut self) -> Result<(), IoApicError> {
        self.live = false;
        self.ioapic.free_pin(self.pin)
    }

    /// Keeps the pin programmed (and owned: it cannot be claimed again) and
    /// returns the raw level; [`IoApic::free_pin`] later masks it and ends
    /// the ownership.
    pub fn leak(mut self) -> ChipLevel {
        self.live = false;
        self.level.clone()
    }
}

impl<M: Mmio32 + 'static> Drop for ClaimedPin<M> {
    fn drop(&mut self) {
        if self.live {
            let _ = self.ioapic.free_pin(self.pin);
        }
    }
}

impl<M: Mmio32 + 'static> core::fmt::Debug for ClaimedPin<M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ClaimedPin")
            .field("pin", &self.pin)
            .field("live", &self.live)
            .finish()
    }
}
