//! Interrupt entry stubs for kernels that build their IDT with the
//! `x86_64` crate (or by hand), on **stable** Rust.
//!
//! The `x86-interrupt` ABI passes no vector number, so a kernel that wants
//! one dispatch function for every device vector would need one
//! `extern "x86-interrupt"` function per vector, and that ABI is unstable
//! (`#![feature(abi_x86_interrupt)]`, nightly only). This module is the
//! stable alternative: a table of [`NR_STUBS`] assembly stubs, one per
//! vector 32-255, 16 bytes apart. Stub `v` pushes `v` and jumps to a common
//! trampoline that saves the caller-saved registers, clears `DF`, calls the
//! function installed with [`set_dispatch`] with the vector, restores the
//! registers and returns with `iretq`.
//!
//! ```ignore
//! use x86_64::{VirtAddr, structures::idt::InterruptDescriptorTable};
//!
//! extern "C" fn dispatch(vector: u8) {
//!     // e.g. vectors.irq_for_vector(this_cpu(), vector) -> core.handle_irq(irq)
//! }
//!
//! arch_x86::entry::set_dispatch(dispatch);
//! let mut idt = InterruptDescriptorTable::new();
//! for v in arch_x86::entry::FIRST_STUB_VECTOR..=255 {
//!     let addr = arch_x86::entry::stub_address(v).expect("32-255 have stubs");
//!     // SAFETY: the stub is a valid interrupt handler (it ends in iretq and
//!     // preserves every register the interrupted code relies on).
//!     unsafe { idt[v].set_handler_addr(VirtAddr::new(addr)) };
//! }
//! ```
//!
//! (`Entry::set_handler_addr` is on stable; indexing the table with a `u8`
//! needs `x86_64` 0.15.)
//!
//! **What the dispatch function may do.** It runs on the interrupted stack
//! (or the gate's IST stack) with interrupts off. The trampoline saves only
//! the general-purpose registers the SysV ABI lets a callee clobber
//! (`rax`, `rcx`, `rdx`, `rsi`, `rdi`, `r8`-`r11`); it does **not** save the
//! x87/SSE state. That is enough for kernels built for a soft-float target
//! such as `x86_64-unknown-none` (no SSE in generated code, no red zone);
//! a kernel whose code uses SSE must save that state itself, or use its
//! own entry path. Vectors 0-31 (exceptions, some with an error code) have
//! no stubs: exceptions need their own handlers.

use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

/// First vector with a stub (0-31 are exceptions).
pub const FIRST_STUB_VECTOR: u8 = 32;
/// Number of stubs: vectors 32-255.
pub const NR_STUBS: usize = 256 - FIRST_STUB_VECTOR as usize;
/// Bytes between two stubs.
pub const STUB_STRIDE: usize = 16;

/// The dispatch function the stubs call with the vector number.
pub type DispatchFn = extern "C" fn(vector: u8);

/// The installed dispatch function (0 = none yet).
static DISPATCH: AtomicUsize = AtomicUsize::new(0);
/// Entries that found no dispatch function installed.
static UNDISPATCHED: AtomicU32 = AtomicU32::new(0);

/// Installs the function every stub calls, replacing the previous one.
pub fn set_dispatch(f: DispatchFn) {
    DISPATCH.store(f as usize, Ordering::Release);
}

/// Interrupts that arrived before any [`set_dispatch`]: counted, and
/// otherwise ignored (no device-specific EOI can be guessed here).
pub fn undispatched() -> u32 {
    UNDISPATCHED.load(Ordering::Relaxed)
}

/// Called by the trampoline.
extern "C" fn dispatch_entry(vector: u64) {
    // The stub pushed the vector with `push imm32`, which sign-extends
    // vectors >= 128: keep the low byte.
    let vector = vector as u8;
    let f = DISPATCH.load(Ordering::Acquire);
    if f == 0 {
        UNDISPATCHED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    // SAFETY: the only non-zero value ever stored is a `DispatchFn` cast to
    // `usize` by `set_dispatch`; function pointers and `usize` have the same
    // size on x86_64.
    let f: DispatchFn = unsafe { core::mem::transmute::<usize, DispatchFn>(f) };
    f(vector);
}

core::arch::global_asm!(
    r#"
    .pushsection .text.arch_x86_irq_stubs, "ax"
    .balign 16
    .global arch_x86_irq_stubs
arch_x86_irq_stubs:
    .set arch_x86_vec, 32
    .rept 224
    .balign 16
    pushq $arch_x86_vec
    jmp {trampoline}
    .set arch_x86_vec, arch_x86_vec + 1
    .endr
    .popsection
    "#,
    trampoline = sym irq_trampoline,
    options(att_syntax)
);

unsafe extern "C" {
    /// The first stub (vector 32); stub `v` is at `+ 16 * (v - 32)`.
    static arch_x86_irq_stubs: u8;
}

/// Common trampoline. Stack on entry (growing down): SS, RSP, RFLAGS, CS,
/// RIP (pushed by the CPU after aligning RSP to 16, SDM vol. 3A 6.14.2),
/// then the vector (pushed by the stub): 48 bytes. Ten pushes (80 bytes)
/// make 128, so RSP is 16-aligned at the `call`, as the SysV ABI requires.
/// `rbp` is pushed only for that alignment. `cld`: the ABI requires DF=0 at
/// calls and the interrupted code may be inside a backwards string copy.
#[unsafe(naked)]
unsafe extern "C" fn irq_trampoline() {
    core::arch::naked_asm!(
        "push rax",
        "push rcx",
        "push rdx",
        "push rsi",
        "push rdi",
        "push r8",
        "push r9",
        "push r10",
        "push r11",
        "push rbp",
        "cld",
        "mov rdi, [rsp + 80]",
        "call {dispatch}",
        "pop rbp",
        "pop r11",
        "pop r10",
        "pop r9",
        "pop r8",
        "pop rdi",
        "pop rsi",
        "pop rdx",
        "pop rcx",
        "pop rax",
        "add rsp, 8",
        "iretq",
        dispatch = sym dispatch_entry,
    )
}

/// The address of the stub for `vector`, for an IDT gate; `None` for the
/// exception vectors 0-31.
pub fn stub_address(vector: u8) -> Option<u64> {
    let index = vector.checked_sub(FIRST_STUB_VECTOR)? as usize;
    let base = core::ptr::addr_of!(arch_x86_irq_stubs) as u64;
    Some(base + (index * STUB_STRIDE) as u64)
}
