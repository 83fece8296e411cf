//! The real hypercall path on arm64 guests: `hvc #0xEA1` with the
//! hypercall number in x16 and up to five arguments in x0..x4 (Xen public
//! `arch-arm.h`, "Hypercall ABI"), and [`XenHypercalls`], the
//! [`EventChannelOps`](crate::EventChannelOps) that marshals each operation
//! into Xen's argument structure. Also the few non-event hypercalls a guest
//! needs to set event channels up: mapping `shared_info`, registering a
//! `vcpu_info`, the version and Xen's console.
//!
//! Pointer arguments are guest *virtual* addresses (Xen walks the guest's
//! stage-1 tables), and the memory they point to must be Normal
//! write-back, inner shareable: call these only with the MMU on.
//!
//! All `unsafe` of the crate that touches the CPU on arm lives here.

use crate::abi::{self, hypercall, misc, vcpuop, xenmem};
use crate::error::XenError;
use crate::ids::VcpuId;

/// Hypercall `nr` with three arguments; returns x0 (a value or -errno).
///
/// # Safety
///
/// Every pointer argument must point to the structure or buffer the
/// hypercall `nr` expects for its command, valid (and mapped Normal WB) for
/// the reads and writes Xen makes during the call.
unsafe fn hvc3(nr: u32, a0: u64, a1: u64, a2: u64) -> i64 {
    let ret: u64;
    // SAFETY: arm hypercall ABI (`arch-arm.h`): `hvc` with the immediate
    // XEN_HYPERCALL_TAG (0xEA1), number in x16, arguments in x0..x4, result
    // in x0. Xen may clobber x16 and the argument registers x0..x4, so all
    // of them are declared clobbered, and memory is not `nomem` (Xen writes
    // OUT fields). The hypercall does not use the guest's stack. The caller
    // guarantees the pointer arguments.
    unsafe {
        core::arch::asm!(
            "hvc #0xEA1",
            inout("x0") a0 => ret,
            inout("x1") a1 => _,
            inout("x2") a2 => _,
            out("x3") _,
            out("x4") _,
            inout("x16") u64::from(nr) => _,
            options(nostack),
        );
    }
    ret as i64
}

const _: () = assert!(hypercall::ARM_HVC_TAG == 0xEA1);

/// [`EventChannelOps`](crate::EventChannelOps) through `hvc`.
#[derive(Clone, Copy, Debug, Default)]
pub struct XenHypercalls;

impl XenHypercalls {
    /// The hypercalls of the calling domain.
    pub const fn new() -> Self {
        Self
    }

    fn op<T>(nr: u32, cmd: u32, arg: &mut T) -> Result<(), XenError> {
        // SAFETY: `arg` is one of the `abi` structures, whose layout is
        // checked against Xen's at compile time, and the mutable borrow
        // keeps it valid for the call.
        XenError::check(unsafe { hvc3(nr, u64::from(cmd), (arg as *mut T) as u64, 0) })
    }

    fn evtchn_op<T>(&self, cmd: u32, arg: &mut T) -> Result<(), XenError> {
        Self::op(hypercall::EVENT_CHANNEL_OP, cmd, arg)
    }

    fn physdev_op<T>(&self, cmd: u32, arg: &mut T) -> Result<(), XenError> {
        Self::op(hypercall::PHYSDEV_OP, cmd, arg)
    }

    /// `XENVER_version`: `(major, minor)`.
    pub fn version(&self) -> (u16, u16) {
        // SAFETY: XENVER_version takes no buffer (the pointer is NULL).
        let v = unsafe {
            hvc3(
                hypercall::XEN_VERSION,
                u64::from(misc::XENVER_VERSION),
                0,
                0,
            )
        };
        ((v >> 16) as u16, v as u16)
    }

    /// `CONSOLEIO_write`: the bytes appear on Xen's console (a domU's only
    /// with `guest_loglvl=all`).
    pub fn console_write(&self, bytes: &[u8]) -> Result<(), XenError> {
        // SAFETY: Xen reads `len` bytes from the buffer, which the borrow
        // keeps valid.
        let r = unsafe {
            hvc3(
                hypercall::CONSOLE_IO,
                u64::from(misc::CONSOLEIO_WRITE),
                bytes.len() as u64,
                bytes.as_ptr() as u64,
            )
        };
        XenError::check(r)
    }

    /// `XENMEM_add_to_physmap(XENMAPSPACE_shared_info)`: maps the domain's
    /// `shared_info` page at guest frame `gfn` (whose old contents are
    /// replaced).
    pub fn map_shared_info(&self, gfn: u64) -> Result<(), XenError> {
        let mut a = abi::XenAddToPhysmap {
            domid: abi::DOMID_SELF,
            size: 0,
            space: xenmem::MAPSPACE_SHARED_INFO,
            idx: 0,
            gpfn: gfn,
        };
        Self::op(hypercall::MEMORY_OP, xenmem::ADD_TO_PHYSMAP, &mut a)
    }

    /// `VCPUOP_register_vcpu_info`: `vcpu`'s `vcpu_info` moves to byte
    /// `offset` of guest frame `gfn`. Xen accepts it for the calling vCPU
    /// or a vCPU that is down, once per vCPU; the record must not cross the
    /// frame's end. Xen then marks every selector bit and the upcall
    /// pending, so the vCPU takes one (possibly spurious) upcall.
    pub fn register_vcpu_info(&self, vcpu: VcpuId, gfn: u64, offset: u32) -> Result<(), XenError> {
        let mut a = abi::VcpuRegisterVcpuInfo {
            mfn: gfn,
            offset,
            rsvd: 0,
        };
        // SAFETY: `a` is `struct vcpu_register_vcpu_info` (layout checked
        // in `abi`), valid for the call.
        let r = unsafe {
            hvc3(
                hypercall::VCPU_OP,
                u64::from(vcpuop::REGISTER_VCPU_INFO),
                u64::from(vcpu.0),
                (&mut a as *mut abi::VcpuRegisterVcpuInfo) as u64,
            )
        };
        XenError::check(r)
    }
}

crate::ops::marshal_event_channel_ops!(XenHypercalls);
