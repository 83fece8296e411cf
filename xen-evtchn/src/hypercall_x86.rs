//! The real hypercall path on x86-64 HVM/PVH guests: finding Xen through
//! CPUID, installing the hypercall page, and [`XenHypercalls`], the
//! [`EventChannelOps`] that marshals each operation into Xen's argument
//! structure and calls the page's stub.
//!
//! All `unsafe` of the crate that touches the CPU lives here.

use crate::abi::{self, evtchnop, evtchnstat, hypercall, physdevop};
use crate::error::XenError;
use crate::ids::{DomId, Pirq, Port, VcpuId, Virq};
use crate::ops::{ChannelState, ChannelStatus, EventChannelOps};
use core::arch::x86_64::{__cpuid, CpuidResult};
use core::ptr::NonNull;

/// The CPUID leaf of Xen's signature, if the CPU runs under Xen (or an
/// emulation of it, such as KVM's Xen mode).
///
/// Xen's leaves start at `0x4000_0000` or, when a Viridian (Hyper-V)
/// interface is offered first, at a later multiple of `0x100`; the
/// signature is "XenVMMXenVMM" in EBX, ECX, EDX (`arch-x86/cpuid.h`).
pub fn xen_cpuid_base() -> Option<u32> {
    (0x4000_0000u32..0x4001_0000).step_by(0x100).find(|&leaf| {
        let CpuidResult { eax, ebx, ecx, edx } = cpuid(leaf);
        ebx == u32::from_le_bytes(*b"XenV")
            && ecx == u32::from_le_bytes(*b"MMXe")
            && edx == u32::from_le_bytes(*b"nVMM")
            && eax >= leaf + 2
    })
}

/// CPUID is always available on x86-64 and has no side effects; leaves a
/// CPU does not implement return data the caller only compares.
fn cpuid(leaf: u32) -> CpuidResult {
    __cpuid(leaf)
}

/// Writes the guest-physical address of a free, page-aligned page to the MSR
/// Xen names in CPUID leaf `base + 2` EBX; Xen fills it with one 32-byte
/// call stub per hypercall.
///
/// # Safety
///
/// `base` must come from [`xen_cpuid_base`], `page_phys` must be the
/// physical address of a 4 KiB page that the kernel reserves for this
/// purpose for the lifetime of the domain and maps executable.
pub unsafe fn install_hypercall_page(base: u32, page_phys: u64) {
    let msr = cpuid(base + 2).ebx;
    let lo = page_phys as u32;
    let hi = (page_phys >> 32) as u32;
    // SAFETY: Xen documents this MSR (CPUID base+2 EBX) as "write the
    // physical address of the hypercall page"; the caller guarantees the
    // page is reserved. WRMSR has no other effect.
    unsafe {
        core::arch::asm!("wrmsr", in("ecx") msr, in("eax") lo, in("edx") hi,
            options(nostack, preserves_flags));
    }
}

/// A hypercall page Xen has filled in.
#[derive(Clone, Copy, Debug)]
pub struct HypercallPage {
    base: NonNull<u8>,
}

// SAFETY: the page holds read-only code stubs; calling them from several
// CPUs at once is how Xen intends them to be used.
unsafe impl Send for HypercallPage {}
// SAFETY: as above.
unsafe impl Sync for HypercallPage {}

impl HypercallPage {
    /// Wraps the page at virtual address `base`.
    ///
    /// # Safety
    ///
    /// `base` must be the (executable) mapping of a page passed to
    /// [`install_hypercall_page`], valid for the rest of the program.
    pub const unsafe fn new(base: NonNull<u8>) -> Self {
        Self { base }
    }

    /// Calls hypercall `nr` with two arguments; returns RAX (0 or -errno).
    ///
    /// # Safety
    ///
    /// `arg` must point to an argument structure of the layout the command
    /// `cmd` expects, valid for reads and writes during the call.
    unsafe fn call2(&self, nr: u32, cmd: u32, arg: *mut u8) -> i64 {
        let stub = self
            .base
            .as_ptr()
            .wrapping_add(nr as usize * hypercall::STUB_SIZE);
        let ret: i64;
        // SAFETY: x86-64 hypercall ABI (Xen public `arch-x86/xen-x86_64.h`,
        // reference 3): number in the stub, arguments in RDI and RSI, result
        // in RAX; Xen may clobber the argument registers, so every one of
        // them is declared clobbered, as is memory (Xen writes OUT fields
        // through `arg`). The stub ends in `ret`, so a `call` is needed and
        // the stack is not `nostack`. The page is valid per `new`.
        unsafe {
            core::arch::asm!(
                "call {stub}",
                stub = in(reg) stub,
                lateout("rax") ret,
                inout("rdi") cmd as u64 => _,
                inout("rsi") arg => _,
                out("rdx") _, out("r10") _, out("r8") _,
                out("rcx") _, out("r11") _,
            );
        }
        ret
    }

    fn evtchn_op<T>(&self, cmd: u32, arg: &mut T) -> Result<(), XenError> {
        // SAFETY: `arg` is one of the `abi` structures, whose layout is
        // checked against Xen's at compile time, and the mutable borrow
        // keeps it valid for the call.
        XenError::check(unsafe {
            self.call2(hypercall::EVENT_CHANNEL_OP, cmd, (arg as *mut T).cast())
        })
    }

    fn physdev_op<T>(&self, cmd: u32, arg: &mut T) -> Result<(), XenError> {
        // SAFETY: as in `evtchn_op`.
        XenError::check(unsafe { self.call2(hypercall::PHYSDEV_OP, cmd, (arg as *mut T).cast()) })
    }
}

/// [`EventChannelOps`] through the hypercall page.
#[derive(Clone, Copy, Debug)]
pub struct XenHypercalls {
    page: HypercallPage,
}

impl XenHypercalls {
    /// Event-channel operations through `page`.
    pub const fn new(page: HypercallPage) -> Self {
        Self { page }
    }
}

impl EventChannelOps for XenHypercalls {
    fn alloc_unbound(&self, remote_dom: DomId) -> Result<Port, XenError> {
        let mut a = abi::EvtchnAllocUnbound {
            dom: abi::DOMID_SELF,
            remote_dom: remote_dom.0,
            port: 0,
        };
        self.page.evtchn_op(evtchnop::ALLOC_UNBOUND, &mut a)?;
        Ok(Port(a.port))
    }
    fn bind_interdomain(&self, remote_dom: DomId, remote_port: Port) -> Result<Port, XenError> {
        let mut a = abi::EvtchnBindInterdomain {
            remote_dom: remote_dom.0,
            pad: 0,
            remote_port: remote_port.0,
            local_port: 0,
        };
        self.page.evtchn_op(evtchnop::BIND_INTERDOMAIN, &mut a)?;
        Ok(Port(a.local_port))
    }
    fn bind_virq(&self, virq: Virq, vcpu: VcpuId) -> Result<Port, XenError> {
        let mut a = abi::EvtchnBindVirq {
            virq: virq.0,
            vcpu: vcpu.0,
            port: 0,
        };
        self.page.evtchn_op(evtchnop::BIND_VIRQ, &mut a)?;
        Ok(Port(a.port))
    }
    fn bind_ipi(&self, vcpu: VcpuId) -> Result<Port, XenError> {
        let mut a = abi::EvtchnBindIpi {
            vcpu: vcpu.0,
            port: 0,
        };
        self.page.evtchn_op(evtchnop::BIND_IPI, &mut a)?;
        Ok(Port(a.port))
    }
    fn bind_pirq(&self, pirq: Pirq, will_share: bool) -> Result<Port, XenError> {
        let flags = if will_share {
            abi::BIND_PIRQ_WILL_SHARE
        } else {
            0
        };
        let mut a = abi::EvtchnBindPirq {
            pirq: pirq.0,
            flags,
            port: 0,
        };
        self.page.evtchn_op(evtchnop::BIND_PIRQ, &mut a)?;
        Ok(Port(a.port))
    }
    fn bind_vcpu(&self, port: Port, vcpu: VcpuId) -> Result<(), XenError> {
        let mut a = abi::EvtchnBindVcpu {
            port: port.0,
            vcpu: vcpu.0,
        };
        self.page.evtchn_op(evtchnop::BIND_VCPU, &mut a)
    }
    fn send(&self, port: Port) -> Result<(), XenError> {
        self.page
            .evtchn_op(evtchnop::SEND, &mut abi::EvtchnPort { port: port.0 })
    }
    fn close(&self, port: Port) -> Result<(), XenError> {
        self.page
            .evtchn_op(evtchnop::CLOSE, &mut abi::EvtchnPort { port: port.0 })
    }
    fn status(&self, port: Port) -> Result<ChannelStatus, XenError> {
        let mut a = abi::EvtchnStatus {
            dom: abi::DOMID_SELF,
            port: port.0,
            ..Default::default()
        };
        self.page.evtchn_op(evtchnop::STATUS, &mut a)?;
        decode_status(&a)
    }
    fn unmask(&self, port: Port) -> Result<(), XenError> {
        self.page
            .evtchn_op(evtchnop::UNMASK, &mut abi::EvtchnPort { port: port.0 })
    }
    fn pirq_needs_eoi(&self, pirq: Pirq) -> Result<bool, XenError> {
        let mut a = abi::PhysdevIrqStatusQuery {
            irq: pirq.0,
            flags: 0,
        };
        self.page.physdev_op(physdevop::IRQ_STATUS_QUERY, &mut a)?;
        Ok(a.flags & physdevop::XENIRQSTAT_NEEDS_EOI != 0)
    }
    fn pirq_eoi(&self, pirq: Pirq) -> Result<(), XenError> {
        let mut a = abi::PhysdevIrqStatusQuery {
            irq: pirq.0,
            flags: 0,
        };
        self.page.physdev_op(physdevop::EOI, &mut a)
    }
}

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
