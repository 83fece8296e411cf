//! The IDT and the interrupt entry path.
//!
//! 256 `global_asm!` stubs (16-byte stride) push a dummy error code where the
//! CPU does not push one, push the vector, and jump to [`isr_common`], which
//! saves the registers and the FPU/SSE state and calls [`dispatch`].
//!
//! **Every gate has an IST index.** The precompiled `core` for this target
//! family may use the red zone below RSP; with an IST the CPU always switches
//! to a known stack, so an interrupt never clobbers it. The cost: handlers
//! must never re-enable interrupts (a nested interrupt would reuse the same
//! IST stack). Interrupt gates clear IF and irqcore's handlers run with it
//! clear, so that holds.

use core::arch::{global_asm, naked_asm};
use core::cell::UnsafeCell;

use irqcore::CpuId;

use super::gdt::{KERNEL_CS, ist};
use super::percpu::MAX_CPUS;

/// Registers saved by the entry path, lowest address first.
#[repr(C)]
#[derive(Debug)]
pub struct Frame {
    /// General-purpose registers.
    pub gprs: [u64; 15],
    /// Vector number pushed by the stub.
    pub vector: u64,
    /// Error code (0 when the CPU pushes none).
    pub error_code: u64,
    /// Interrupted RIP.
    pub rip: u64,
    /// Interrupted CS.
    pub cs: u64,
    /// Interrupted RFLAGS.
    pub rflags: u64,
    /// Interrupted RSP.
    pub rsp: u64,
    /// Interrupted SS.
    pub ss: u64,
}

global_asm!(
    r#"
    .section .text.isr_stubs, "ax"
    .balign 16
    .global isr_stubs
isr_stubs:
    .set vec, 0
    .rept 256
    .balign 16
    .if (vec == 8) || ((vec >= 10) && (vec <= 14)) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
    .else
    pushq $0
    .endif
    pushq $vec
    jmp {common}
    .set vec, vec + 1
    .endr
    "#,
    common = sym isr_common,
    options(att_syntax)
);

unsafe extern "C" {
    static isr_stubs: u8;
}

/// Common entry: 15 GPRs + 56 bytes of frame = 176 bytes, so the 512-byte
/// FXSAVE area below is 16-aligned (the CPU aligned RSP before pushing) and
/// the `call` sees an ABI-aligned stack. `cld`: the ABI wants DF=0 and the
/// interrupted code may be in a backwards `rep movs`.
#[unsafe(naked)]
unsafe extern "C" fn isr_common() {
    naked_asm!(
        "push rax", "push rbx", "push rcx", "push rdx", "push rsi", "push rdi", "push rbp",
        "push r8", "push r9", "push r10", "push r11", "push r12", "push r13", "push r14", "push r15",
        "cld",
        "sub rsp, 512",
        "fxsave64 [rsp]",
        "lea rdi, [rsp + 512]",
        "call {dispatch}",
        "fxrstor64 [rsp]",
        "add rsp, 512",
        "pop r15", "pop r14", "pop r13", "pop r12", "pop r11", "pop r10", "pop r9", "pop r8",
        "pop rbp", "pop rdi", "pop rsi", "pop rdx", "pop rcx", "pop rbx", "pop rax",
        "add rsp, 16",
        "iretq",
        dispatch = sym dispatch,
    )
}

extern "C" fn dispatch(frame: &mut Frame) {
    // Vectors 0-31 are exceptions: the Vector type refuses them.
    match arch_x86::Vector::new(frame.vector as u8) {
        Ok(vector) => crate::irq::entry(vector),
        Err(_) => crate::exceptions::handle(frame),
    }
}

#[repr(C, align(16))]
struct Idt(UnsafeCell<[u128; 256]>);
// SAFETY: each CPU's table is written only by that CPU in `load_for`
// before it loads it, and only read (by the CPU) afterwards.
unsafe impl Sync for Idt {}

/// One IDT per CPU (same gates today; per-CPU tables leave room for a
/// per-CPU vector space).
static IDTS: [Idt; MAX_CPUS] = [const { Idt(UnsafeCell::new([0; 256])) }; MAX_CPUS];

fn gate(handler: u64, ist: u8) -> u128 {
    let lo = (handler & 0xFFFF)
        | (u64::from(KERNEL_CS) << 16)
        | (u64::from(ist) << 32)
        | (0x8E << 40) // present, DPL 0, 64-bit interrupt gate
        | (((handler >> 16) & 0xFFFF) << 48);
    u128::from(lo) | (u128::from(handler >> 32) << 64)
}

/// Builds `cpu`'s IDT and loads it; called on `cpu` itself while starting.
pub fn load_for(cpu: CpuId) {
    let i = cpu.index();
    assert!(i < MAX_CPUS, "cpu index out of range");
    // SAFETY: isr_stubs is the stub table defined above.
    let base = unsafe { &isr_stubs as *const u8 as u64 };
    // SAFETY: slot i belongs to the calling CPU, which is not using it yet
    // (it runs with interrupts off until its IDT is loaded).
    let idt = unsafe { &mut *IDTS[i].0.get() };
    for (v, g) in idt.iter_mut().enumerate() {
        let slot = match v {
            2 => ist::NMI,
            8 => ist::DOUBLE_FAULT,
            18 => ist::MACHINE_CHECK,
            0..=31 => ist::EXCEPTION,
            _ => ist::IRQ,
        };
        *g = gate(base + 16 * v as u64, slot);
    }
    #[repr(C, packed)]
    struct Ptr {
        limit: u16,
        base: u64,
    }
    let ptr = Ptr {
        limit: (256 * 16 - 1) as u16,
        base: IDTS[i].0.get() as u64,
    };
    // SAFETY: the IDT was just built and is static.
    unsafe {
        core::arch::asm!("lidt [{}]", in(reg) &ptr, options(readonly, nostack, preserves_flags))
    }
}
