//! The hypercalls the guest side needs, behind a trait so the same code
//! runs against Xen (see `hypercall_x86`) and against the hypervisor model
//! (`model`, host tests).

use crate::error::XenError;
use crate::ids::{DomId, Pirq, Port, VcpuId, Virq};
use alloc::sync::Arc;

/// What `EVTCHNOP_status` reports about a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelState {
    /// Free (`EVTCHNSTAT_closed`).
    Closed,
    /// Allocated for `remote_dom` to bind.
    Unbound {
        /// The domain allowed to bind.
        remote_dom: DomId,
    },
    /// Connected to `remote_port` of `remote_dom`.
    Interdomain {
        /// The peer domain.
        remote_dom: DomId,
        /// The peer port.
        remote_port: Port,
    },
    /// Bound to a physical IRQ.
    Pirq(Pirq),
    /// Bound to a virtual IRQ.
    Virq(Virq),
    /// Inter-vCPU channel.
    Ipi,
}

/// `EVTCHNOP_status` result: the state and the vCPU notified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelStatus {
    /// The channel's state.
    pub state: ChannelState,
    /// The notify vCPU.
    pub vcpu: VcpuId,
}

/// The event-channel (and PIRQ EOI) hypercalls, for the calling domain.
///
/// Each method is one hypercall; errors are Xen's errno values mapped to
/// [`XenError`]. Implementations must be callable with interrupts disabled
/// and from any vCPU.
pub trait EventChannelOps: Send + Sync {
    /// `EVTCHNOP_alloc_unbound`: a port in this domain that `remote_dom`
    /// may bind.
    fn alloc_unbound(&self, remote_dom: DomId) -> Result<Port, XenError>;
    /// `EVTCHNOP_bind_interdomain`: connects to `remote_port` of
    /// `remote_dom`. Xen sets the new local port pending.
    fn bind_interdomain(&self, remote_dom: DomId, remote_port: Port) -> Result<Port, XenError>;
    /// `EVTCHNOP_bind_virq`.
    fn bind_virq(&self, virq: Virq, vcpu: VcpuId) -> Result<Port, XenError>;
    /// `EVTCHNOP_bind_ipi`.
    fn bind_ipi(&self, vcpu: VcpuId) -> Result<Port, XenError>;
    /// `EVTCHNOP_bind_pirq` (`will_share` = `BIND_PIRQ__WILL_SHARE`).
    fn bind_pirq(&self, pirq: Pirq, will_share: bool) -> Result<Port, XenError>;
    /// `EVTCHNOP_bind_vcpu`: changes the notify vCPU.
    fn bind_vcpu(&self, port: Port, vcpu: VcpuId) -> Result<(), XenError>;
    /// `EVTCHNOP_send`.
    fn send(&self, port: Port) -> Result<(), XenError>;
    /// `EVTCHNOP_close`.
    fn close(&self, port: Port) -> Result<(), XenError>;
    /// `EVTCHNOP_status` for a port of this domain.
    fn status(&self, port: Port) -> Result<ChannelStatus, XenError>;
    /// `EVTCHNOP_unmask`.
    fn unmask(&self, port: Port) -> Result<(), XenError>;
    /// `PHYSDEVOP_irq_status_query`: whether the PIRQ needs an EOI.
    fn pirq_needs_eoi(&self, pirq: Pirq) -> Result<bool, XenError>;
    /// `PHYSDEVOP_eoi`.
    fn pirq_eoi(&self, pirq: Pirq) -> Result<(), XenError>;
}

macro_rules! forward_ops {
    ($($t:tt)*) => {
        impl<T: EventChannelOps + ?Sized> EventChannelOps for $($t)* {
            fn alloc_unbound(&self, remote_dom: DomId) -> Result<Port, XenError> {
                (**self).alloc_unbound(remote_dom)
            }
            fn bind_interdomain(&self, remote_dom: DomId, remote_port: Port) -> Result<Port, XenError> {
                (**self).bind_interdomain(remote_dom, remote_port)
            }
            fn bind_virq(&self, virq: Virq, vcpu: VcpuId) -> Result<Port, XenError> {
                (**self).bind_virq(virq, vcpu)
            }
            fn bind_ipi(&self, vcpu: VcpuId) -> Result<Port, XenError> {
                (**self).bind_ipi(vcpu)
            }
            fn bind_pirq(&self, pirq: Pirq, will_share: bool) -> Result<Port, XenError> {
                (**self).bind_pirq(pirq, will_share)
            }
            fn bind_vcpu(&self, port: Port, vcpu: VcpuId) -> Result<(), XenError> {
                (**self).bind_vcpu(port, vcpu)
            }
            fn send(&self, port: Port) -> Result<(), XenError> {
                (**self).send(port)
            }
            fn close(&self, port: Port) -> Result<(), XenError> {
                (**self).close(port)
            }
            fn status(&self, port: Port) -> Result<ChannelStatus, XenError> {
                (**self).status(port)
            }
            fn unmask(&self, port: Port) -> Result<(), XenError> {
                (**self).unmask(port)
            }
            fn pirq_needs_eoi(&self, pirq: Pirq) -> Result<bool, XenError> {
                (**self).pirq_needs_eoi(pirq)
            }
            fn pirq_eoi(&self, pirq: Pirq) -> Result<(), XenError> {
                (**self).pirq_eoi(pirq)
            }
        }
    };
}
forward_ops!(Arc<T>);
forward_ops!(&'static T);
