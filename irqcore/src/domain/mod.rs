//! Interrupt domains: translation of a controller's hardware irq numbers
//! (hwirqs) to irq numbers, with reference-counted mappings.
//!
//! # Domains
//!
//! A domain is one interrupt controller's numbering space, registered in a
//! [`DomainRegistry`] with a [`DomainConfig`] and the backend's
//! [`DomainOps`]:
//!
//! - [`DomainKind::Linear`]: hwirqs `0..size` in a table (IOAPIC pins, GIC
//!   SPIs);
//! - [`DomainKind::Tree`]: any hwirq, in an ordered map (MSI, LPIs, Xen
//!   ports);
//! - [`DomainKind::NoMap`]: the irq number *is* the hwirq;
//! - any linear or tree domain may have a **parent** ([`DomainConfig::with_parent`]):
//!   a hierarchy such as a device MSI domain over a PCI-MSI domain over the
//!   x86 vector domain. One mapping then owns one descriptor whose chip stack
//!   has one [`ChipLevel`](crate::ChipLevel) per domain (outermost first):
//!   each domain's [`DomainOps::alloc`] picks its level's chip, chip data and
//!   the hwirq to use at its parent; the chips forward to their parents with
//!   the `*_parent` helpers of [`IrqData`](crate::IrqData). Every level's
//!   domain lists the hwirq in its reverse map, so
//!   [`DomainRegistry::find_mapping`] works at every level.
//!
//! Firmware specifiers ([`FwSpec`]) are translated by the domain
//! ([`DomainOps::translate`], by default per [`SpecFormat`]); the trigger
//! type they carry is applied to the mapping.
//!
//! Activation is the second phase of setting up a hierarchy:
//! [`DomainRegistry::activate`] calls every level's [`DomainOps::activate`]
//! root first (a parent must be programmed before a child points at it),
//! and if a level fails deactivates what it had activated;
//! [`DomainRegistry::deactivate`] goes outermost first. The core does not
//! call domains, so the kernel activates before requesting handlers;
//! [`Mapping::request_irq`] does it for you.
//!
//! # Reference counting (DESIGN.md property 6)
//!
//! Mapping a (domain, hwirq) that is already mapped returns the same irq and
//! takes a reference; the mapping and its descriptor go away when the last
//! reference is dropped. This is what shared PCI INTx lines need: several
//! devices map the same pin, and hot-unplugging one must not tear the line
//! down under the others (`seeds/002-irq-mapping-refcount.txt`; Linux's
//! `irq_dispose_mapping` is unconditional and the generic fix never landed).
//!
//! References come in two kinds, counted separately so that neither API can
//! drop a reference the other holds:
//!
//! - a [`Mapping`] handle (from [`DomainRegistry::map`] and friends) holds
//!   one and releases it on drop;
//! - the raw pair [`DomainRegistry::create_mapping`] /
//!   [`DomainRegistry::dispose_mapping`] for C-style callers. It never
//!   underflows: disposing an irq that is not mapped, or one whose raw
//!   references are all disposed, is a typed error and changes nothing.
//!
//! **In a hierarchy the reference belongs to the top-level mapping, and the
//! whole stack is freed together.** Only the domain the mapping was made in
//! counts references; its parents' levels are part of that one mapping, not
//! mappings of their own. Mapping the parent domain's hwirq directly is
//! refused ([`DomainError::InnerLevel`]), and the last put frees every level
//! (each domain's [`DomainOps::free`], outermost first) and then the
//! descriptor, in one operation under the mapping lock. The reason is Marc
//! Zyngier's review of the Linux refcounting RFC (seed 002): if each level
//! held its own reference on the shared descriptor, the count could reach
//! zero only after every level had already been released, so "free the
//! hierarchy when the count drops to zero" would find nothing to free, or
//! would have to track references the hierarchy implies but nobody took.
//! One count at the top, and a teardown that walks the stack, has neither
//! problem.
//!
//! Linux keeps `irq_create_mapping` idempotent (no count) and
//! `irq_dispose_mapping` unconditional; a Linux-compatibility shim must
//! call `dispose_mapping` once per successful `create_mapping`. There is
//! deliberately no unconditional teardown: it would leave handles pointing
//! at an irq number that can be reused by the next mapping.
//!
//! # Mappings with handlers
//!
//! The last reference cannot be dropped while the irq has handlers: the
//! teardown removes the chip first, atomically with a check that no handler
//! is installed, and refuses with [`DomainError::HasHandlers`] otherwise
//! (nothing changes). Handlers requested through
//! [`Mapping::request_irq`] borrow the handle, so with the handle API the
//! situation cannot arise; a handle dropped while handlers requested by irq
//! number are installed turns its reference into a raw one (see
//! [`Mapping`]).
//!
//! # Locking
//!
//! The registry has two locks:
//!
//! - the **mapping lock** (the "domain lock"): serialises every change of
//!   domains and mappings, and is held across the backend callbacks and
//!   the [`IrqCore`](crate::IrqCore) calls a change makes (descriptor
//!   allocation and free, chip installation, trigger);
//! - the **tables lock**: a reader-writer lock on the reverse maps and
//!   records. Writers hold it only for short updates with local interrupts
//!   off and call nothing while holding it; readers
//!   ([`DomainRegistry::find_mapping`], diagnostics) take its read side.
//!
//! Lock order (take left before right, never the reverse):
//!
//! ```text
//! mapping lock -> backend locks (in DomainOps) -> sparse lock -> chip bus lock -> descriptor lock
//!                                   tables lock: a leaf, may be taken under any of them
//! ```
//!
//! Consequences: map, unmap, activate and domain changes are process-context
//! operations and must never be called from a chip callback, an interrupt
//! handler, a hotplug phase that holds the sparse lock (refused with
//! `SparseLockHeldByCaller` when a descriptor would be allocated or freed)
//! or a [`DomainOps`] callback. [`DomainRegistry::find_mapping`] may be
//! called anywhere, including chained handlers running inside the
//! dispatcher: it waits only for a tables writer, which never waits for
//! anything, so it cannot deadlock against a teardown that waits for a
//! grace period (which a single lock held across `free_descs` would).

mod error;
mod lifecycle;
mod mapping;
mod ops;
mod registration;
mod registry;
mod revmap;
mod spec;

pub use error::DomainError;
pub use mapping::Mapping;
pub use ops::{AllocRequest, DomainConfig, DomainId, DomainKind, DomainOps, LevelAlloc, LevelRef};
pub use registration::DomainRegistration;
pub use registry::{DomainRegistry, MappingInfo, MappingRecord};
pub use spec::{FwSpec, MAX_SPEC_CELLS, SpecError, SpecFormat, gic};
