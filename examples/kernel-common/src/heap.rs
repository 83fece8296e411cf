//! The kernel heap (irqcore allocates descriptors, actions and chip levels):
//! `linked_list_allocator`'s first-fit heap behind an interrupt-safe lock,
//! over a fixed region of RAM above the kernel image.
//!
//! On bare metal ([`HEAP`] is the global allocator there) a kernel calls
//! [`init`] once at boot; host tests keep the system allocator.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;

use linked_list_allocator::Heap;

use crate::sync::{ArchIrq, IrqLock, LocalIrq};

/// The kernel heap (the global allocator on bare metal).
#[cfg_attr(target_os = "none", global_allocator)]
pub static HEAP: KernelHeap = KernelHeap::new();

/// Hands `[start, start + size)` to [`HEAP`].
///
/// # Safety
/// As for [`KernelHeap::init`].
pub unsafe fn init(start: usize, size: usize) {
    // SAFETY: forwarded from the caller.
    unsafe { HEAP.init(start, size) }
}

/// A first-fit heap usable as the global allocator; empty until
/// [`KernelHeap::init`].
pub struct KernelHeap<I = ArchIrq>(IrqLock<Heap, I>);

impl<I: LocalIrq> KernelHeap<I> {
    /// An empty heap (every allocation fails until `init`).
    pub const fn new() -> Self {
        Self(IrqLock::new(Heap::empty()))
    }

    /// Hands `[start, start + size)` to the heap.
    ///
    /// # Safety
    /// The region must be RAM, mapped as normal memory at these addresses,
    /// unused by anything else, and this must be called once.
    pub unsafe fn init(&self, start: usize, size: usize) {
        // SAFETY: forwarded from the caller.
        unsafe { self.0.lock().init(start as *mut u8, size) }
    }
}

impl<I: LocalIrq> Default for KernelHeap<I> {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: allocation and deallocation are serialized by the lock, and the
// heap hands out disjoint blocks of the region given to `init`.
unsafe impl<I: LocalIrq> GlobalAlloc for KernelHeap<I> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.0
            .lock()
            .allocate_first_fit(layout)
            .map_or(core::ptr::null_mut(), |p| p.as_ptr())
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(p) = NonNull::new(ptr) {
            // SAFETY: `ptr` came from `alloc` with this layout (GlobalAlloc
            // contract).
            unsafe { self.0.lock().deallocate(p, layout) }
        }
    }
}

#[cfg(target_os = "none")]
unsafe extern "C" {
    /// End of the kernel image (both kernels' linker scripts).
    static __kernel_end: u8;
}

/// Hands 16 MiB of RAM, from the first 2 MiB boundary after the kernel
/// image, to [`HEAP`]. Call once, at boot.
///
/// # Safety
/// That RAM must exist (QEMU `-m 128M`), be identity-mapped as normal
/// memory and be used by nothing else.
#[cfg(target_os = "none")]
pub unsafe fn init_after_image() {
    // Only the address of the linker symbol is taken.
    let end = &raw const __kernel_end as usize;
    let start = (end + (2 << 20) - 1) & !((2 << 20) - 1);
    // SAFETY: forwarded from the caller.
    unsafe { init(start, 16 << 20) }
}
