//! Typed errors. Every fallible public operation returns one of these and
//! leaves the state it was asked to change untouched.

use crate::ids::{CpuId, HwIrq, IrqNumber};
use core::fmt;

/// Errors a chip callback can report to the core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChipError {
    /// The chip does not implement this operation.
    Unsupported,
    /// The chip cannot apply the trigger type.
    InvalidTrigger,
    /// A previous reconfiguration has not completed (x86: vector move not
    /// cleaned up yet); the core falls back to a deferred move.
    Busy,
    /// The hardware ran out of a resource (vectors, routing slots).
    NoSpace,
    /// The request is malformed for this chip.
    Invalid,
    /// The hardware (or hypervisor) reported an error.
    Hardware(i32),
}

/// Errors of the irqcore public API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqError {
    /// No descriptor exists for this irq number.
    UnknownIrq(IrqNumber),
    /// The irq number is outside the store's capacity.
    OutOfRange(IrqNumber),
    /// A fixed irq number was requested but is already allocated.
    AlreadyAllocated(IrqNumber),
    /// No free range of the requested size.
    NoSpace,
    /// A count or size of zero, or a range overflowing the number space.
    InvalidRange,
    /// The calling CPU holds the sparse lock (it is inside the bring-up or
    /// dying hotplug phase): allocating or freeing now would deadlock.
    SparseLockHeldByCaller,
    /// The descriptor still has handlers installed.
    HasHandlers(IrqNumber),
    /// No handler with this device id is installed on the irq.
    NoSuchHandler(IrqNumber),
    /// The line is not shared (or a non-shared request met an existing
    /// handler).
    NotShared(IrqNumber),
    /// A shared request whose trigger type differs from the installed one.
    TriggerMismatch(IrqNumber),
    /// Shared handlers disagree on the oneshot flag.
    OneshotMismatch(IrqNumber),
    /// The trigger value is not a valid trigger type.
    InvalidTrigger,
    /// `enable` without a matching `disable`.
    UnbalancedEnable(IrqNumber),
    /// A per-CPU operation on a global irq.
    NotPerCpu(IrqNumber),
    /// A global operation on a per-CPU irq.
    IsPerCpu(IrqNumber),
    /// The irq has no chip that can do this.
    NoChip(IrqNumber),
    /// No online CPU in the requested mask, or the mask is empty.
    NoOnlineCpu,
    /// The CPU id is out of range or the CPU is not in the required state.
    BadCpu(CpuId),
    /// A threaded request without a primary handler must be oneshot.
    OneshotRequired(IrqNumber),
    /// Too many oneshot threads on one line.
    TooManyActions(IrqNumber),
    /// The operation is not allowed for managed-affinity irqs.
    Managed(IrqNumber),
    /// The operation is not allowed in the current state (for example a
    /// hotplug transition is already running).
    Busy,
    /// The request is malformed.
    InvalidArgument,
    /// A domain could not translate a hardware irq.
    BadHwIrq(HwIrq),
    /// The chip refused the operation.
    Chip(ChipError),
    /// Stop-machine refused or could not complete (CPU down).
    StopMachine(crate::stop_machine::StopMachineError),
    /// The call may wait (for other CPUs, an interrupt thread, a grace
    /// period or stop-machine) or allocate, and was made where that could
    /// deadlock: in interrupt context (a handler, on this CPU, inside
    /// [`IrqCore::handle_irq`](crate::IrqCore::handle_irq)) or inside
    /// stop-machine (a `Starting`-phase hotplug callback going down).
    /// Nothing was changed. Use the non-waiting variant
    /// ([`IrqCore::disable_irq_nosync`](crate::IrqCore::disable_irq_nosync))
    /// or defer the work to process context; `docs/porting.md` lists what
    /// each call may do from interrupt context.
    InInterrupt,
    /// The call would wait for the thread function of this irq that is
    /// making it (`synchronize_irq` or `disable_irq` from the irq's own
    /// thread function). Nothing was changed; use
    /// [`IrqCore::disable_irq_nosync`](crate::IrqCore::disable_irq_nosync).
    InOwnThread(IrqNumber),
    /// No hotplug callback is registered under this id (never was, or it
    /// was unregistered already).
    UnknownHotplugCallback,
}

impl From<ChipError> for IrqError {
    fn from(e: ChipError) -> Self {
        IrqError::Chip(e)
    }
}

impl fmt::Display for ChipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl fmt::Display for IrqError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl core::error::Error for IrqError {}
impl core::error::Error for ChipError {}
