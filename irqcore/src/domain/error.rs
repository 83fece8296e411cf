//! Errors of the domain layer.

use super::ops::DomainId;
use super::spec::SpecError;
use crate::chip::TriggerType;
use crate::error::IrqError;
use crate::ids::{HwIrq, IrqNumber};
use core::fmt;

/// Errors of the domain API. Every failing call leaves the registry, the
/// backends' reservations and the descriptor store as they were.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainError {
    /// No domain with this id is registered (never was, or was removed).
    UnknownDomain(DomainId),
    /// The hwirq is outside the domain's range (a linear domain's size, or
    /// for a no-map domain an irq number the store cannot hold).
    HwIrqOutOfRange {
        /// The domain.
        domain: DomainId,
        /// The refused hwirq.
        hwirq: HwIrq,
    },
    /// The specifier could not be translated.
    BadSpecifier(SpecError),
    /// The specifier asks for a trigger type other than the one the
    /// existing mapping of the same hwirq was made with.
    TriggerConflict {
        /// The existing mapping's irq.
        irq: IrqNumber,
        /// Its trigger type.
        existing: TriggerType,
        /// The trigger type asked for.
        requested: TriggerType,
    },
    /// The irq is not a mapping of this registry.
    NotMapped(IrqNumber),
    /// A raw dispose of a mapping that holds no raw reference (every raw
    /// reference was disposed already, or only handles hold it).
    NoRawReference(IrqNumber),
    /// The hwirq is an inner level of a hierarchical mapping made in a
    /// child domain: the reference belongs to that top-level mapping.
    InnerLevel {
        /// The domain asked.
        domain: DomainId,
        /// The hwirq asked.
        hwirq: HwIrq,
        /// The irq that holds it.
        irq: IrqNumber,
    },
    /// A parent domain's hwirq chosen by a child's `alloc` is already
    /// mapped in the parent (two mappings would share a parent level).
    HwIrqInUse {
        /// The parent domain.
        domain: DomainId,
        /// The hwirq.
        hwirq: HwIrq,
    },
    /// The mapping's irq still has handlers: free them first.
    HasHandlers(IrqNumber),
    /// The domain still has mappings (at any level of a hierarchy).
    DomainBusy {
        /// The domain.
        domain: DomainId,
        /// How many hwirqs it still maps.
        mappings: usize,
    },
    /// The domain is the parent of another registered domain.
    HasChildren(DomainId),
    /// The hierarchy would be deeper than an irq can hold
    /// ([`MAX_LEVELS`](crate::desc::MAX_LEVELS)).
    TooDeep,
    /// A reference count would overflow.
    TooManyReferences(IrqNumber),
    /// The domain configuration is malformed (a linear domain of size 0).
    InvalidConfig,
    /// A domain's callback refused.
    Backend {
        /// The domain whose callback failed.
        domain: DomainId,
        /// What it reported.
        error: IrqError,
    },
    /// The interrupt core refused (no free irq number, the caller holds the
    /// sparse lock, ...).
    Core(IrqError),
}

impl From<IrqError> for DomainError {
    fn from(e: IrqError) -> Self {
        DomainError::Core(e)
    }
}

impl From<SpecError> for DomainError {
    fn from(e: SpecError) -> Self {
        DomainError::BadSpecifier(e)
    }
}

impl fmt::Display for DomainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl core::error::Error for DomainError {}
