//! The real hypercall path on x86-64 HVM/PVH guests: finding Xen through
//! CPUID, installing the hypercall page, and [`XenHypercalls`], the
//! [`EventChannelOps`](crate::EventChannelOps) that marshals each operation into Xen's argument
//! structure and calls the page's stub.
//!
//! All `unsafe` of the crate that touches the CPU lives here.

use crate::abi::hypercall;
use crate::error::XenError;
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

/// [`EventChannelOps`](crate::EventChannelOps) through the hypercall page.
#[derive(Clone, Copy, Debug)]
pub struct XenHypercalls {
    page: HypercallPage,
}

impl XenHypercalls {
    /// Event-channel operations through `page`.
    pub const fn new(page: HypercallPage) -> Self {
        Self { page }
    }

    fn evtchn_op<T>(&self, cmd: u32, arg: &mut T) -> Result<(), XenError> {
        self.page.evtchn_op(cmd, arg)
    }

    fn physdev_op<T>(&self, cmd: u32, arg: &mut T) -> Result<(), XenError> {
        self.page.physdev_op(cmd, arg)
    }
}

crate::ops::marshal_event_channel_ops!(XenHypercalls);
