//! Handlers ("actions"): what a request installs on a line and how it runs.

use crate::chip::TriggerType;
use crate::ids::IrqNumber;
use crate::platform::ActionId;
use crate::sync::{AtomicBool, AtomicU32, Ordering};
use alloc::sync::Arc;
use alloc::vec::Vec;
use bitflags::bitflags;
use core::ops::BitOr;

/// What a handler reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct IrqReturn(u8);

impl IrqReturn {
    /// The interrupt was not from this handler's device.
    pub const NONE: IrqReturn = IrqReturn(0);
    /// The interrupt was handled.
    pub const HANDLED: IrqReturn = IrqReturn(1);
    /// Handled in part: wake the handler's thread for the rest.
    ///
    /// `HANDLED | WAKE_THREAD` wakes the thread too. Linux wakes it only
    /// for exactly `IRQ_WAKE_THREAD` and silently drops the wake of the
    /// combined value; irqcore does not drop a wake the handler asked
    /// for. Spurious-interrupt accounting still tells the two apart: a
    /// plain `WAKE_THREAD` leaves the verdict to the thread (deferred
    /// detection, as in Linux), the combined value counts as handled at
    /// once.
    pub const WAKE_THREAD: IrqReturn = IrqReturn(2);

    /// Whether any handler handled the interrupt (or woke a thread).
    #[inline]
    pub const fn handled(self) -> bool {
        self.0 != 0
    }

    /// Whether every bit of `other` is set.
    #[inline]
    pub const fn contains(self, other: IrqReturn) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for IrqReturn {
    type Output = IrqReturn;
    #[inline]
    fn bitor(self, rhs: IrqReturn) -> IrqReturn {
        IrqReturn(self.0 | rhs.0)
    }
}

/// An interrupt handler.
///
/// `handle` runs in interrupt context with local interrupts disabled and
/// must not block. `thread` runs in the interrupt thread (process context)
/// after `handle` returned [`IrqReturn::WAKE_THREAD`].
pub trait IrqHandler: Send + Sync {
    /// The primary (hard-irq) handler.
    fn handle(&self, irq: IrqNumber) -> IrqReturn;

    /// The threaded part. The default does nothing.
    fn thread(&self, irq: IrqNumber) -> IrqReturn {
        let _ = irq;
        IrqReturn::NONE
    }
}

impl<F: Fn(IrqNumber) -> IrqReturn + Send + Sync> IrqHandler for F {
    fn handle(&self, irq: IrqNumber) -> IrqReturn {
        self(irq)
    }
}

/// Wraps a thread function as a handler whose primary part only wakes it.
struct ThreadOnly<F>(F);

impl<F: Fn(IrqNumber) -> IrqReturn + Send + Sync> IrqHandler for ThreadOnly<F> {
    fn handle(&self, _irq: IrqNumber) -> IrqReturn {
        IrqReturn::WAKE_THREAD
    }
    fn thread(&self, irq: IrqNumber) -> IrqReturn {
        (self.0)(irq)
    }
}

/// Identifies the device a handler belongs to, so that one handler of a
/// shared line can be freed (Linux's `dev_id`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DevId(pub usize);

bitflags! {
    /// Request flags (Linux's IRQF_*).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
    pub struct RequestFlags: u32 {
        /// The line may be shared with other handlers that also say so.
        const SHARED = 1 << 0;
        /// Per-CPU interrupt (required for, and only for, per-CPU irqs).
        const PERCPU = 1 << 1;
        /// Keep the line masked until the thread function finished.
        const ONESHOT = 1 << 2;
        /// Do not enable the line on request; `enable_irq` starts it.
        const NO_AUTOEN = 1 << 3;
        /// The handler has a thread part ([`IrqHandler::thread`]).
        const THREADED = 1 << 4;
    }
}

/// A request for a handler on an irq.
#[derive(Clone)]
pub struct IrqRequest {
    pub(crate) name: &'static str,
    pub(crate) handler: Arc<dyn IrqHandler>,
    pub(crate) flags: RequestFlags,
    pub(crate) trigger: TriggerType,
    pub(crate) dev_id: Option<DevId>,
    pub(crate) no_primary: bool,
}

impl IrqRequest {
    /// A request for `handler`, shown as `name` in the interrupt table.
    pub fn new(name: &'static str, handler: Arc<dyn IrqHandler>) -> Self {
        Self {
            name,
            handler,
            flags: RequestFlags::empty(),
            trigger: TriggerType::None,
            dev_id: None,
            no_primary: false,
        }
    }

    /// A threaded request without a primary handler: `thread` runs in the
    /// interrupt thread. Such a request must be oneshot unless the chip is
    /// oneshot-safe, or a level line would storm while the thread runs.
    pub fn threaded<F: Fn(IrqNumber) -> IrqReturn + Send + Sync + 'static>(
        name: &'static str,
        thread: F,
    ) -> Self {
        let mut r = Self::new(name, Arc::new(ThreadOnly(thread)));
        r.flags |= RequestFlags::THREADED;
        r.no_primary = true;
        r
    }

    /// Adds flags.
    pub fn flags(mut self, flags: RequestFlags) -> Self {
        self.flags |= flags;
        self
    }

    /// Sets the trigger type to program on the first request.
    pub fn trigger(mut self, trigger: TriggerType) -> Self {
        self.trigger = trigger;
        self
    }

    /// Sets the device id (needed for [`IrqCore::free_irq`](crate::IrqCore::free_irq)).
    pub fn dev_id(mut self, dev_id: DevId) -> Self {
        self.dev_id = Some(dev_id);
        self
    }
}

/// An installed handler.
pub(crate) struct Action {
    pub(crate) id: ActionId,
    pub(crate) name: &'static str,
    pub(crate) dev_id: DevId,
    pub(crate) handler: Arc<dyn IrqHandler>,
    pub(crate) flags: RequestFlags,
    /// This action's bit in the descriptor's `threads_oneshot` mask.
    pub(crate) thread_mask: u64,
    /// The thread has been woken and has not run yet.
    pub(crate) run_thread: AtomicBool,
    /// Wakes counted by a flow and not yet finalised by the thread
    /// (`IrqCore::run_thread`): while non-zero, `synchronize_irq` waits.
    pub(crate) threads_pending: AtomicU32,
    /// CPU index + 1 of the CPU running this action's thread function, 0
    /// when it is not running. Lets `free_irq` called from that very thread
    /// function return instead of waiting for itself.
    pub(crate) thread_cpu: AtomicU32,
    /// Set by `free_irq` once the action is unlinked: a thread still
    /// looping in `run_thread` stops calling the thread function.
    pub(crate) removed: AtomicBool,
}

impl Action {
    /// A fresh action (thread not woken, not running, linked).
    pub(crate) fn new(id: ActionId, req: &IrqRequest, dev_id: DevId, thread_mask: u64) -> Self {
        Self {
            id,
            name: req.name,
            dev_id,
            handler: req.handler.clone(),
            flags: req.flags,
            thread_mask,
            run_thread: AtomicBool::new(false),
            threads_pending: AtomicU32::new(0),
            thread_cpu: AtomicU32::new(0),
            removed: AtomicBool::new(false),
        }
    }

    #[inline]
    pub(crate) fn threaded(&self) -> bool {
        self.flags.contains(RequestFlags::THREADED)
    }

    /// Marks the thread as woken; returns false if it already was.
    #[inline]
    pub(crate) fn mark_run_thread(&self) -> bool {
        !self.run_thread.swap(true, Ordering::AcqRel)
    }
}

/// An immutable list of actions, replaced as a whole (copy on write) by
/// request and free. A dispatching CPU holds a clone of the list while it
/// runs handlers with the descriptor lock dropped, and each action is its own
/// `Arc`, so `free` knows no CPU or thread still runs a freed handler when
/// the action's strong count is back to one. It is `None` when it holds no
/// action, never an empty slice.
#[derive(Clone)]
pub(crate) struct ActionList(Option<Arc<[Arc<Action>]>>);

impl ActionList {
    pub(crate) const fn empty() -> Self {
        ActionList(None)
    }

    /// One test: a list is `None` exactly when it has no action (`with`
    /// adds one, `without` gives `None` for the last one, and nothing
    /// else makes a list).
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    pub(crate) fn iter(&self) -> core::slice::Iter<'_, Arc<Action>> {
        match &self.0 {
            Some(l) => l.iter(),
            None => [].iter(),
        }
    }

    /// The list as a raw slice, for the dispatcher, which iterates it after
    /// dropping the descriptor lock. Valid while the list value (or the
    /// grace period that delays its drop, see `IrqCore::retire`)
    /// lives.
    #[inline]
    pub(crate) fn raw(&self) -> *const [Arc<Action>] {
        match &self.0 {
            Some(l) => Arc::as_ptr(l),
            None => &[],
        }
    }

    /// The list as a slice.
    #[inline]
    pub(crate) fn as_slice(&self) -> &[Arc<Action>] {
        match &self.0 {
            Some(l) => l,
            None => &[],
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |l| l.len())
    }

    pub(crate) fn with(&self, a: Arc<Action>) -> Self {
        let mut v: Vec<Arc<Action>> = self.iter().cloned().collect();
        v.push(a);
        ActionList(Some(v.into()))
    }

    pub(crate) fn without(&self, id: ActionId) -> Self {
        let v: Vec<Arc<Action>> = self.iter().filter(|a| a.id != id).cloned().collect();
        if v.is_empty() {
            ActionList(None)
        } else {
            ActionList(Some(v.into()))
        }
    }
}
