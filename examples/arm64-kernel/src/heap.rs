//! The kernel heap (irqcore allocates descriptors, actions and chip levels):
//! `linked_list_allocator`'s first-fit heap behind an IRQ-safe lock, over a
//! fixed region of RAM above the kernel image.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;

use linked_list_allocator::Heap;

use crate::sync::IrqLock;

struct KernelHeap(IrqLock<Heap>);

#[global_allocator]
static HEAP: KernelHeap = KernelHeap(IrqLock::new(Heap::empty()));

// SAFETY: allocation and deallocation are serialized by the lock, and the
// heap hands out disjoint blocks of the region given to `init`.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.0
            .lock()
            .allocate_first_fit(layout)
            .map_or(core::ptr::null_mut(), |p| p.as_ptr())
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(p) = NonNull::new(ptr) {
            // SAFETY: `ptr` came from `alloc` with this layout (GlobalAlloc contract).
            unsafe { self.0.lock().deallocate(p, layout) }
        }
    }
}

/// Hands `[start, start + size)` to the heap.
///
/// # Safety
/// The region must be RAM, identity-mapped as normal memory, unused by
/// anything else, and this must be called once.
pub unsafe fn init(start: usize, size: usize) {
    // SAFETY: forwarded from the caller.
    unsafe { HEAP.0.lock().init(start as *mut u8, size) }
}
