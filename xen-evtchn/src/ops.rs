//! The hypercalls the guest side needs, behind a trait so the same code
//! runs against Xen (see `hypercall_x86`) and against the hypervisor model
//! (`model`, host tests).

use crate::abi::{self, evtchnstat};
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
    /// `EVTCHNOP_init_control` (FIFO): registers `vcpu`'s control block;
    /// the first successful call switches the domain to the FIFO ABI.
    /// Returns Xen's `link_bits`. The default is what a Xen without FIFO
    /// says (`-ENOSYS`).
    fn init_control(
        &self,
        vcpu: VcpuId,
        block: &'static abi::fifo::ControlPage,
    ) -> Result<u8, XenError> {
        let _ = (vcpu, block);
        Err(XenError::NotImplemented)
    }
    /// `EVTCHNOP_expand_array` (FIFO): adds `page` as the next page of the
    /// event array (which must already be initialised: Xen replays events
    /// raised while the page was missing as soon as it is added).
    fn expand_array(&self, page: &'static abi::fifo::EventPage) -> Result<(), XenError> {
        let _ = page;
        Err(XenError::NotImplemented)
    }
    /// `EVTCHNOP_set_priority` (FIFO): 0 (highest) ..= 15.
    fn set_priority(&self, port: Port, priority: u32) -> Result<(), XenError> {
        let _ = (port, priority);
        Err(XenError::NotImplemented)
    }
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
            fn init_control(
                &self,
                vcpu: VcpuId,
                block: &'static abi::fifo::ControlPage,
            ) -> Result<u8, XenError> {
                (**self).init_control(vcpu, block)
            }
            fn expand_array(&self, page: &'static abi::fifo::EventPage) -> Result<(), XenError> {
                (**self).expand_array(page)
            }
            fn set_priority(&self, port: Port, priority: u32) -> Result<(), XenError> {
                (**self).set_priority(port, priority)
            }
        }
    };
}
forward_ops!(Arc<T>);
forward_ops!(&'static T);

/// Implements [`EventChannelOps`] for `$t`, a real hypercall accessor with
/// two methods that take one of the `abi` argument structures:
/// `evtchn_op(&self, cmd, &mut T)` and `physdev_op(&self, cmd, &mut T)`
/// (x86's hypercall page, arm's `hvc`). The marshalling is the same on every
/// architecture; only the trap differs.
///
/// The FIFO pages are passed as guest frame numbers computed from their
/// addresses: the accessor assumes the guest maps its RAM 1:1 (virtual =
/// guest-physical), as both reference kernels do.
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(unused_macros)
)]
macro_rules! marshal_event_channel_ops {
    ($t:ty) => {
        impl $crate::ops::EventChannelOps for $t {
            fn alloc_unbound(
                &self,
                remote_dom: $crate::ids::DomId,
            ) -> Result<$crate::ids::Port, $crate::error::XenError> {
                let mut a = $crate::abi::EvtchnAllocUnbound {
                    dom: $crate::abi::DOMID_SELF,
                    remote_dom: remote_dom.0,
                    port: 0,
                };
                self.evtchn_op($crate::abi::evtchnop::ALLOC_UNBOUND, &mut a)?;
                Ok($crate::ids::Port(a.port))
            }
            fn bind_interdomain(
                &self,
                remote_dom: $crate::ids::DomId,
                remote_port: $crate::ids::Port,
            ) -> Result<$crate::ids::Port, $crate::error::XenError> {
                let mut a = $crate::abi::EvtchnBindInterdomain {
                    remote_dom: remote_dom.0,
                    pad: 0,
                    remote_port: remote_port.0,
                    local_port: 0,
                };
                self.evtchn_op($crate::abi::evtchnop::BIND_INTERDOMAIN, &mut a)?;
                Ok($crate::ids::Port(a.local_port))
            }
            fn bind_virq(
                &self,
                virq: $crate::ids::Virq,
                vcpu: $crate::ids::VcpuId,
            ) -> Result<$crate::ids::Port, $crate::error::XenError> {
                let mut a = $crate::abi::EvtchnBindVirq {
                    virq: virq.0,
                    vcpu: vcpu.0,
                    port: 0,
                };
                self.evtchn_op($crate::abi::evtchnop::BIND_VIRQ, &mut a)?;
                Ok($crate::ids::Port(a.port))
            }
            fn bind_ipi(
                &self,
                vcpu: $crate::ids::VcpuId,
            ) -> Result<$crate::ids::Port, $crate::error::XenError> {
                let mut a = $crate::abi::EvtchnBindIpi {
                    vcpu: vcpu.0,
                    port: 0,
                };
                self.evtchn_op($crate::abi::evtchnop::BIND_IPI, &mut a)?;
                Ok($crate::ids::Port(a.port))
            }
            fn bind_pirq(
                &self,
                pirq: $crate::ids::Pirq,
                will_share: bool,
            ) -> Result<$crate::ids::Port, $crate::error::XenError> {
                let flags = if will_share {
                    $crate::abi::BIND_PIRQ_WILL_SHARE
                } else {
                    0
                };
                let mut a = $crate::abi::EvtchnBindPirq {
                    pirq: pirq.0,
                    flags,
                    port: 0,
                };
                self.evtchn_op($crate::abi::evtchnop::BIND_PIRQ, &mut a)?;
                Ok($crate::ids::Port(a.port))
            }
            fn bind_vcpu(
                &self,
                port: $crate::ids::Port,
                vcpu: $crate::ids::VcpuId,
            ) -> Result<(), $crate::error::XenError> {
                let mut a = $crate::abi::EvtchnBindVcpu {
                    port: port.0,
                    vcpu: vcpu.0,
                };
                self.evtchn_op($crate::abi::evtchnop::BIND_VCPU, &mut a)
            }
            fn send(&self, port: $crate::ids::Port) -> Result<(), $crate::error::XenError> {
                self.evtchn_op(
                    $crate::abi::evtchnop::SEND,
                    &mut $crate::abi::EvtchnPort { port: port.0 },
                )
            }
            fn close(&self, port: $crate::ids::Port) -> Result<(), $crate::error::XenError> {
                self.evtchn_op(
                    $crate::abi::evtchnop::CLOSE,
                    &mut $crate::abi::EvtchnPort { port: port.0 },
                )
            }
            fn status(
                &self,
                port: $crate::ids::Port,
            ) -> Result<$crate::ops::ChannelStatus, $crate::error::XenError> {
                let mut a = $crate::abi::EvtchnStatus {
                    dom: $crate::abi::DOMID_SELF,
                    port: port.0,
                    ..Default::default()
                };
                self.evtchn_op($crate::abi::evtchnop::STATUS, &mut a)?;
                $crate::ops::decode_status(&a)
            }
            fn unmask(&self, port: $crate::ids::Port) -> Result<(), $crate::error::XenError> {
                self.evtchn_op(
                    $crate::abi::evtchnop::UNMASK,
                    &mut $crate::abi::EvtchnPort { port: port.0 },
                )
            }
            fn pirq_needs_eoi(
                &self,
                pirq: $crate::ids::Pirq,
            ) -> Result<bool, $crate::error::XenError> {
                let mut a = $crate::abi::PhysdevIrqStatusQuery {
                    irq: pirq.0,
                    flags: 0,
                };
                self.physdev_op($crate::abi::physdevop::IRQ_STATUS_QUERY, &mut a)?;
                Ok(a.flags & $crate::abi::physdevop::XENIRQSTAT_NEEDS_EOI != 0)
            }
            fn pirq_eoi(&self, pirq: $crate::ids::Pirq) -> Result<(), $crate::error::XenError> {
                let mut a = $crate::abi::PhysdevIrqStatusQuery {
                    irq: pirq.0,
                    flags: 0,
                };
                self.physdev_op($crate::abi::physdevop::EOI, &mut a)
            }
            fn init_control(
                &self,
                vcpu: $crate::ids::VcpuId,
                block: &'static $crate::abi::fifo::ControlPage,
            ) -> Result<u8, $crate::error::XenError> {
                let addr = block as *const $crate::abi::fifo::ControlPage as u64;
                let mut a = $crate::abi::fifo::EvtchnInitControl {
                    control_gfn: addr >> 12,
                    offset: (addr & 0xfff) as u32,
                    vcpu: vcpu.0,
                    ..Default::default()
                };
                self.evtchn_op($crate::abi::evtchnop::INIT_CONTROL, &mut a)?;
                Ok(a.link_bits)
            }
            fn expand_array(
                &self,
                page: &'static $crate::abi::fifo::EventPage,
            ) -> Result<(), $crate::error::XenError> {
                let addr = page as *const $crate::abi::fifo::EventPage as u64;
                let mut a = $crate::abi::fifo::EvtchnExpandArray {
                    array_gfn: addr >> 12,
                };
                self.evtchn_op($crate::abi::evtchnop::EXPAND_ARRAY, &mut a)
            }
            fn set_priority(
                &self,
                port: $crate::ids::Port,
                priority: u32,
            ) -> Result<(), $crate::error::XenError> {
                let mut a = $crate::abi::fifo::EvtchnSetPriority {
                    port: port.0,
                    priority,
                };
                self.evtchn_op($crate::abi::evtchnop::SET_PRIORITY, &mut a)
            }
        }
    };
}
#[allow(unused_imports)]
pub(crate) use marshal_event_channel_ops;

/// Decodes the OUT half of `evtchn_status`.
pub(crate) fn decode_status(a: &abi::EvtchnStatus) -> Result<ChannelStatus, XenError> {
    let state = match a.status {
        evtchnstat::CLOSED => ChannelState::Closed,
        evtchnstat::UNBOUND => ChannelState::Unbound {
            remote_dom: DomId(a.u[0] as u16),
        },
        evtchnstat::INTERDOMAIN => ChannelState::Interdomain {
            remote_dom: DomId(a.u[0] as u16),
            remote_port: Port(a.u[1]),
        },
        evtchnstat::PIRQ => ChannelState::Pirq(Pirq(a.u[0])),
        evtchnstat::VIRQ => ChannelState::Virq(Virq(a.u[0])),
        evtchnstat::IPI => ChannelState::Ipi,
        _ => return Err(XenError::Invalid),
    };
    Ok(ChannelStatus {
        state,
        vcpu: VcpuId(a.vcpu),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_union_is_decoded_per_state() {
        let mut a = abi::EvtchnStatus {
            status: evtchnstat::INTERDOMAIN,
            vcpu: 3,
            u: [7, 42],
            ..Default::default()
        };
        assert_eq!(
            decode_status(&a),
            Ok(ChannelStatus {
                state: ChannelState::Interdomain {
                    remote_dom: DomId(7),
                    remote_port: Port(42)
                },
                vcpu: VcpuId(3)
            })
        );
        a.status = evtchnstat::VIRQ;
        assert_eq!(
            decode_status(&a).map(|s| s.state),
            Ok(ChannelState::Virq(Virq(7)))
        );
        a.status = 99;
        assert_eq!(decode_status(&a), Err(XenError::Invalid));
    }
}
