//! The kernel heap: `kernel_common`'s first-fit heap as the global allocator.

use kernel_common::heap::KernelHeap;

use crate::sync::Irq;

#[global_allocator]
static HEAP: KernelHeap<Irq> = KernelHeap::new();

/// Hands `[start, start + size)` to the heap.
///
/// # Safety
/// The region must be RAM, identity-mapped as normal memory, unused by
/// anything else, and this must be called once.
pub unsafe fn init(start: usize, size: usize) {
    // SAFETY: forwarded from the caller.
    unsafe { HEAP.init(start, size) }
}
