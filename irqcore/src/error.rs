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

/// Errors of the irqcore public API: one variant per fault, each naming
/// what it concerns. A call that returns one changed nothing.
///
/// `Display` says what went wrong and what to do about it.
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
    /// A count of zero, or a range running past the last irq number.
    InvalidRange,
    /// The calling CPU holds the sparse lock (it is inside the bring-up or
    /// dying hotplug phase): allocating or freeing now would deadlock.
    SparseLockHeldByCaller,
    /// A walk that needs the sparse lock held for the hotplug transition
    /// ([`HotplugCtx::for_each_irq`](crate::hotplug::HotplugCtx::for_each_irq))
    /// outside the `BringUp` and `Starting` phases.
    SparseLockNotHeld,
    /// The descriptor still has handlers installed.
    HasHandlers(IrqNumber),
    /// No handler with this device id is installed on the irq.
    NoSuchHandler(IrqNumber),
    /// A raw request ([`IrqCore::request_irq_raw`](crate::IrqCore::request_irq_raw))
    /// without a device id: `free_irq` could not name the handler.
    MissingDevId(IrqNumber),
    /// A handler with this device id is already installed on the irq.
    DuplicateDevId(IrqNumber),
    /// The line cannot be requested (`NO_REQUEST`: a chained parent line,
    /// whose flow demultiplexes to child irqs).
    NotRequestable(IrqNumber),
    /// The line is not shared (or a non-shared request met an existing
    /// handler).
    NotShared(IrqNumber),
    /// A shared request whose trigger type differs from the installed one.
    TriggerMismatch(IrqNumber),
    /// Shared handlers disagree on the oneshot flag.
    OneshotMismatch(IrqNumber),
    /// The chip cannot apply this trigger type.
    InvalidTrigger,
    /// `enable` without a matching `disable`.
    UnbalancedEnable(IrqNumber),
    /// The line is disabled `u32::MAX` times: one more would overflow the
    /// disable depth.
    DisableDepthOverflow(IrqNumber),
    /// A per-CPU operation on a global irq.
    NotPerCpu(IrqNumber),
    /// A global operation on a per-CPU irq.
    IsPerCpu(IrqNumber),
    /// The irq has no chip that can do this.
    NoChip(IrqNumber),
    /// More chip levels than [`MAX_LEVELS`](crate::desc::MAX_LEVELS).
    TooManyLevels,
    /// Bits other than the line settings (see
    /// [`IrqCore::set_irq_settings`](crate::IrqCore::set_irq_settings)).
    InvalidSettings,
    /// An empty CPU mask, or one naming a CPU at or above the core's
    /// `nr_cpus`.
    InvalidMask,
    /// No CPU of the requested mask is online.
    NoOnlineCpu,
    /// The CPU id is at or above the core's `nr_cpus` (or the platform
    /// reported such an id for the calling CPU).
    BadCpu(CpuId),
    /// `cpu_up` of a CPU that is online already.
    CpuAlreadyOnline(CpuId),
    /// `cpu_down` of a CPU that is not online.
    CpuNotOnline(CpuId),
    /// `cpu_down` of the last online CPU.
    LastOnlineCpu(CpuId),
    /// `cpu_down` called on the CPU it would take down.
    CpuDownSelf(CpuId),
    /// [`CpuControl::boot_cpu`](crate::CpuControl::boot_cpu) returned `Ok`
    /// but the CPU never called
    /// [`IrqCore::cpu_starting`](crate::IrqCore::cpu_starting); the
    /// bring-up was rolled back.
    CpuDidNotStart(CpuId),
    /// `cpu_starting` on a CPU that no `cpu_up` is bringing up.
    UnexpectedCpuStarting(CpuId),
    /// A threaded request without a primary handler must be oneshot.
    OneshotRequired(IrqNumber),
    /// Too many oneshot threads on one line (64).
    TooManyActions(IrqNumber),
    /// The operation is not allowed for managed-affinity irqs.
    Managed(IrqNumber),
    /// A CPU hotplug transition is running (or the sparse lock is taken
    /// where the dying CPU needs it): hotplug calls and callback
    /// (un)registration are refused until it ends.
    Busy,
    /// The line was not disabled by the spurious detector.
    NotSpuriousDisabled(IrqNumber),
    /// No hotplug callback is registered under this id (never was, or it
    /// was unregistered already).
    UnknownHotplugCallback,
    /// A malformed request. irqcore itself returns a specific variant for
    /// each fault; this one is for backends and kernels that report their
    /// own faults through the core's error type.
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
}

impl From<ChipError> for IrqError {
    fn from(e: ChipError) -> Self {
        IrqError::Chip(e)
    }
}

impl fmt::Display for ChipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChipError::Unsupported => f.write_str("the chip does not implement this operation"),
            ChipError::InvalidTrigger => f.write_str("the chip cannot apply this trigger type"),
            ChipError::Busy => f.write_str(
                "the chip is still completing a previous reconfiguration; retry later \
                 (an affinity change is deferred to the next interrupt by itself)",
            ),
            ChipError::NoSpace => {
                f.write_str("the controller is out of a resource (vectors, routing slots)")
            }
            ChipError::Invalid => f.write_str("the request is malformed for this chip"),
            ChipError::Hardware(code) => {
                write!(f, "the hardware or hypervisor reported error {code}")
            }
        }
    }
}

impl fmt::Display for IrqError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use IrqError::*;
        match *self {
            UnknownIrq(irq) => write!(
                f,
                "irq {irq} has no descriptor: allocate it first (alloc_desc_range, alloc_descs)"
            ),
            OutOfRange(irq) => write!(
                f,
                "irq {irq} is beyond the store's capacity: raise CoreConfig::capacity or use a lower number"
            ),
            AlreadyAllocated(irq) => write!(
                f,
                "irq {irq} is already allocated: free it first or let alloc_descs choose a number"
            ),
            NoSpace => f.write_str("no free range of irq numbers that large: free some or raise CoreConfig::capacity"),
            InvalidRange => f.write_str("the count is zero or the range runs past the last irq number"),
            SparseLockHeldByCaller => f.write_str(
                "this CPU holds the sparse lock (a BringUp or Starting hotplug phase): allocate or free \
                 descriptors in the Prepare or Online phase instead",
            ),
            SparseLockNotHeld => f.write_str(
                "the sparse lock is not held for this hotplug phase: walk the irqs from a BringUp \
                 or Starting callback, or with IrqCore::for_each_irq elsewhere",
            ),
            HasHandlers(irq) => write!(f, "irq {irq} still has handlers: free them first"),
            NoSuchHandler(irq) => write!(
                f,
                "irq {irq} has no handler with this device id (or none at all)"
            ),
            MissingDevId(irq) => write!(
                f,
                "request_irq_raw on irq {irq} without a device id: set IrqRequest::dev_id, which free_irq needs"
            ),
            DuplicateDevId(irq) => write!(
                f,
                "irq {irq} already has a handler with this device id: use a distinct DevId per handler"
            ),
            NotRequestable(irq) => write!(
                f,
                "irq {irq} is marked NO_REQUEST (a chained parent line): request its child irqs instead"
            ),
            NotShared(irq) => write!(
                f,
                "irq {irq} already has a handler and the line is not shared: every handler on it must set RequestFlags::SHARED"
            ),
            TriggerMismatch(irq) => write!(
                f,
                "irq {irq} is set up with another trigger type than requested: shared handlers must agree"
            ),
            OneshotMismatch(irq) => write!(
                f,
                "irq {irq}: shared handlers must agree on RequestFlags::ONESHOT"
            ),
            InvalidTrigger => f.write_str("the chip cannot apply this trigger type"),
            UnbalancedEnable(irq) => write!(
                f,
                "enable of irq {irq} without a matching disable (the core's own disables, managed shutdown and the spurious detector, are not undone by enable_irq)"
            ),
            DisableDepthOverflow(irq) => write!(
                f,
                "irq {irq} is disabled u32::MAX times: a disable/enable pair is unbalanced"
            ),
            NotPerCpu(irq) => write!(
                f,
                "irq {irq} is not per-CPU: use the global call (enable_irq, request without PERCPU)"
            ),
            IsPerCpu(irq) => write!(
                f,
                "irq {irq} is per-CPU: use the per-CPU call (enable_percpu_irq, RequestFlags::PERCPU)"
            ),
            NoChip(irq) => write!(
                f,
                "irq {irq} has no chip that can do this: set one with set_chip (or through a domain)"
            ),
            TooManyLevels => f.write_str("a chip stack deeper than MAX_LEVELS"),
            InvalidSettings => f.write_str(
                "only line settings may be set or cleared (DISABLE_UNLAZY, RESEND_WHEN_IN_PROGRESS, \
                 NO_REQUEST, NO_AUTOEN, AFFINITY_MANAGED, MOVE_DEFERRED)",
            ),
            InvalidMask => f.write_str(
                "the CPU mask is empty or names a CPU at or above the core's nr_cpus",
            ),
            NoOnlineCpu => f.write_str("no CPU of the mask is online: include an online CPU"),
            BadCpu(cpu) => write!(
                f,
                "cpu {cpu} is at or above the core's nr_cpus: raise CoreConfig::nr_cpus or check the CPU numbering"
            ),
            CpuAlreadyOnline(cpu) => write!(f, "cpu {cpu} is online already"),
            CpuNotOnline(cpu) => write!(f, "cpu {cpu} is not online"),
            LastOnlineCpu(cpu) => write!(f, "cpu {cpu} is the last online CPU and cannot go down"),
            CpuDownSelf(cpu) => write!(
                f,
                "cpu {cpu} cannot take itself down: call cpu_down from another online CPU"
            ),
            CpuDidNotStart(cpu) => write!(
                f,
                "cpu {cpu} was booted but never called cpu_starting: the bring-up was rolled back; \
                 the secondary entry must call IrqCore::cpu_starting"
            ),
            UnexpectedCpuStarting(cpu) => write!(
                f,
                "cpu_starting on cpu {cpu}, which no cpu_up is bringing up"
            ),
            OneshotRequired(irq) => write!(
                f,
                "irq {irq}: a threaded request without a primary handler must set RequestFlags::ONESHOT"
            ),
            TooManyActions(irq) => write!(f, "irq {irq} has 64 oneshot handlers, the most a line can"),
            Managed(irq) => write!(
                f,
                "irq {irq} has managed affinity: the kernel, not the caller, sets it"
            ),
            Busy => f.write_str("a CPU hotplug transition is running: retry once it has ended"),
            NotSpuriousDisabled(irq) => write!(
                f,
                "irq {irq} was not disabled by the spurious detector: use enable_irq"
            ),
            UnknownHotplugCallback => f.write_str("no hotplug callback is registered under this id"),
            InvalidArgument => f.write_str("invalid argument"),
            BadHwIrq(hwirq) => write!(f, "hardware irq {hwirq} cannot be translated by this domain"),
            Chip(e) => write!(f, "the chip refused: {e}"),
            StopMachine(e) => write!(f, "stop-machine failed: {e}"),
            InInterrupt => f.write_str(
                "this call may wait or allocate and was made in interrupt context or inside \
                 stop-machine: use the non-waiting variant (disable_irq_nosync) or defer to \
                 process context",
            ),
            InOwnThread(irq) => write!(
                f,
                "this call would wait for irq {irq}'s own thread function, which is making it: \
                 use disable_irq_nosync"
            ),
        }
    }
}

impl core::error::Error for IrqError {}
impl core::error::Error for ChipError {}
