//! The port-operations layer: how pending and mask state of a port is read
//! and written, and how one vCPU finds its pending ports.
//!
//! The 2-level ABI ([`crate::two_level::TwoLevel`]) implements it today; the
//! FIFO ABI (per-vCPU queues, 131072 ports) can be added later as a second
//! implementation without touching the channel bookkeeping or the chips.

use crate::error::XenError;
use crate::ids::{Port, VcpuId};
use crate::ops::EventChannelOps;

/// Pending/mask state and the upcall scan of one event-channel ABI.
///
/// Every method takes ports below [`PortLayer::max_ports`] and vCPUs below
/// the layer's vCPU count; out-of-range arguments are ignored (queries
/// return `false`), never a panic.
pub trait PortLayer: Send + Sync {
    /// Number of ports the ABI offers (4096 for 2-level, 64-bit).
    fn max_ports(&self) -> u32;
    /// Number of vCPUs the layer has state for.
    fn nr_vcpus(&self) -> u32;
    /// Whether the port's pending bit is set.
    fn is_pending(&self, port: Port) -> bool;
    /// Sets the pending bit (guest-side retrigger; does not notify).
    fn set_pending(&self, port: Port);
    /// Clears the pending bit (the "ack" of an event).
    fn clear_pending(&self, port: Port);
    /// Whether the port's mask bit is set.
    fn is_masked(&self, port: Port) -> bool;
    /// Sets the mask bit.
    fn mask(&self, port: Port);
    /// The unmask protocol: clears the mask and makes sure an event that is
    /// already pending is notified. `local` says whether the port is bound
    /// to the calling vCPU.
    fn unmask(&self, port: Port, local: bool, ops: &dyn EventChannelOps) -> Result<(), XenError>;
    /// Records that `port` is now delivered to `vcpu` (guest-private
    /// filter), removing it from `old` if given.
    fn bind_to_vcpu(&self, port: Port, old: Option<VcpuId>, vcpu: VcpuId);
    /// Forgets `port` (closed): no vCPU handles it any more.
    fn remove(&self, port: Port, vcpu: VcpuId);
    /// Whether `port` is pending, unmasked and bound to `vcpu`.
    fn is_deliverable(&self, port: Port, vcpu: VcpuId) -> bool;
    /// Clears the vCPU's "upcall pending" flag (first step of an upcall).
    fn clear_upcall_pending(&self, vcpu: VcpuId);
    /// Whether the vCPU's "upcall pending" flag is set again.
    fn upcall_pending(&self, vcpu: VcpuId) -> bool;
    /// One scan for `vcpu`: takes the vCPU's notification state and calls
    /// `handle` for each pending, unmasked port bound to it, fairly (a
    /// port that is always pending cannot starve others).
    fn scan(&self, vcpu: VcpuId, handle: &mut dyn FnMut(Port));
}
