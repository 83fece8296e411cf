//! Typed errors: Xen's hypercall errno values and the guest-side errors of
//! this crate.

use crate::abi::errno;
use crate::ids::{Port, VcpuId};
use core::fmt;
use irqcore::{ChipError, IrqError};

/// A failed hypercall, one variant per Xen errno an event-channel or
/// physdev operation returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XenError {
    /// `-EPERM`: not permitted (XSM, unprivileged, no PIRQ access).
    NotPermitted,
    /// `-ENOENT`: no such vCPU.
    NoSuchVcpu,
    /// `-ESRCH`: no such domain.
    NoSuchDomain,
    /// `-EAGAIN`: try again.
    Again,
    /// `-ENOMEM`: Xen is out of memory.
    NoMemory,
    /// `-EACCES`: the port is not usable by the guest.
    AccessDenied,
    /// `-EFAULT`: bad argument address.
    BadAddress,
    /// `-EBUSY`: busy.
    Busy,
    /// `-EEXIST`: already bound (VIRQ on this vCPU, PIRQ).
    AlreadyBound,
    /// `-EINVAL`: invalid port, wrong channel state, global VIRQ on a vCPU
    /// other than 0, VIRQ out of range...
    Invalid,
    /// `-ENOSPC`: no free port.
    NoFreePort,
    /// `-ENOSYS`: unknown command or ABI not active.
    NotImplemented,
    /// Any other negative value (the positive errno is kept).
    Other(i32),
}

impl XenError {
    /// Maps a hypercall's return value: `0` (and positive values) is
    /// success, a negative value is `-errno`.
    pub const fn check(ret: i64) -> Result<(), XenError> {
        if ret >= 0 {
            Ok(())
        } else {
            Err(Self::from_errno(if ret < i32::MIN as i64 {
                i32::MAX
            } else {
                -(ret as i32)
            }))
        }
    }

    /// The error for a positive Xen errno.
    pub const fn from_errno(e: i32) -> XenError {
        match e {
            errno::EPERM => XenError::NotPermitted,
            errno::ENOENT => XenError::NoSuchVcpu,
            errno::ESRCH => XenError::NoSuchDomain,
            errno::EAGAIN => XenError::Again,
            errno::ENOMEM => XenError::NoMemory,
            errno::EACCES => XenError::AccessDenied,
            errno::EFAULT => XenError::BadAddress,
            errno::EBUSY => XenError::Busy,
            errno::EEXIST => XenError::AlreadyBound,
            errno::EINVAL => XenError::Invalid,
            errno::ENOSPC => XenError::NoFreePort,
            errno::ENOSYS => XenError::NotImplemented,
            other => XenError::Other(other),
        }
    }

    /// The positive Xen errno of this error (inverse of
    /// [`XenError::from_errno`]).
    pub const fn errno(self) -> i32 {
        match self {
            XenError::NotPermitted => errno::EPERM,
            XenError::NoSuchVcpu => errno::ENOENT,
            XenError::NoSuchDomain => errno::ESRCH,
            XenError::Again => errno::EAGAIN,
            XenError::NoMemory => errno::ENOMEM,
            XenError::AccessDenied => errno::EACCES,
            XenError::BadAddress => errno::EFAULT,
            XenError::Busy => errno::EBUSY,
            XenError::AlreadyBound => errno::EEXIST,
            XenError::Invalid => errno::EINVAL,
            XenError::NoFreePort => errno::ENOSPC,
            XenError::NotImplemented => errno::ENOSYS,
            XenError::Other(e) => e,
        }
    }
}

/// Errors of the guest-side event-channel layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvtchnError {
    /// The hypervisor refused the operation.
    Xen(XenError),
    /// The port number is outside the ABI's range.
    PortOutOfRange(Port),
    /// The port is not bound by this guest (or was closed).
    NotBound(Port),
    /// The port is already connected to an irq.
    PortHasIrq(Port),
    /// The vCPU id is outside the configured range.
    BadVcpu(VcpuId),
    /// The vCPU is offline: its per-vCPU channels are not bound (before the
    /// prepare phase or after the dead phase).
    VcpuOffline(VcpuId),
    /// The IPI kind is outside the configured range.
    BadIpi(u32),
    /// The operation does not apply to this kind of channel (rebinding an
    /// IPI or per-vCPU VIRQ, late EOI on a channel without late EOI...).
    WrongChannelKind(Port),
    /// An irqcore operation failed.
    Irq(IrqError),
    /// The guest could not allocate memory for more ports (the port
    /// table or a FIFO event-array page); nothing changed.
    OutOfMemory,
    /// The operation needs the other event-channel ABI (priorities are
    /// FIFO only).
    WrongAbi,
}

impl From<XenError> for EvtchnError {
    fn from(e: XenError) -> Self {
        EvtchnError::Xen(e)
    }
}

impl From<IrqError> for EvtchnError {
    fn from(e: IrqError) -> Self {
        EvtchnError::Irq(e)
    }
}

impl From<XenError> for ChipError {
    fn from(e: XenError) -> Self {
        match e {
            XenError::NoFreePort => ChipError::NoSpace,
            XenError::Invalid => ChipError::Invalid,
            XenError::Busy | XenError::Again => ChipError::Busy,
            other => ChipError::Hardware(-other.errno()),
        }
    }
}

impl fmt::Display for XenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?} (-{})", self.errno())
    }
}

impl fmt::Display for EvtchnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl core::error::Error for XenError {}
impl core::error::Error for EvtchnError {}
