//! Boot and exception entry (assembly): the boot CPU's `_start`, the entry
//! PSCI `CPU_ON` starts secondary CPUs at, the identity-mapped page table
//! and MMU enable, and the EL1 exception vector table.
//!
//! QEMU `virt` without `virtualization=on`/`secure=on` enters the kernel at
//! EL1 with the MMU off; secondary CPUs start powered off and are started
//! with PSCI `CPU_ON` (conduit HVC). Xen enters a domU the same way (EL1,
//! MMU off, `x0` = device tree, virtual PSCI over HVC), through the `Image`
//! header's first instruction.
//!
//! Memory map (identity, 4 KiB granule, 39-bit VA, level 1 blocks of 1 GiB):
//! `0..1 GiB` device memory (nGnRE: GIC, PL011, PL031), `1..2 GiB` normal
//! write-back memory (RAM). Normal memory is what makes exclusive
//! load/store (atomics) and unaligned accesses well-defined (ARM ARM
//! B2.7.2, B2.9: exclusives to Device memory are IMPLEMENTATION DEFINED).

use core::arch::global_asm;

/// The registers an exception entry saved, as laid out on the stack.
#[repr(C)]
pub struct Frame {
    /// x0..x30.
    pub x: [u64; 31],
    /// ELR_EL1: where the exception was taken.
    pub elr: u64,
    /// SPSR_EL1.
    pub spsr: u64,
}

global_asm!(
    r#"
// ----- saving/restoring everything an interrupted context owns -----------
// General registers, ELR/SPSR (so a nested exception cannot lose them), and
// the FP/SIMD registers: Rust code on aarch64-unknown-none uses NEON (memcpy,
// formatting), so a handler may clobber any of them.
.macro SAVE_FRAME
    sub sp, sp, #800
    stp x0, x1, [sp, #0]
    stp x2, x3, [sp, #16]
    stp x4, x5, [sp, #32]
    stp x6, x7, [sp, #48]
    stp x8, x9, [sp, #64]
    stp x10, x11, [sp, #80]
    stp x12, x13, [sp, #96]
    stp x14, x15, [sp, #112]
    stp x16, x17, [sp, #128]
    stp x18, x19, [sp, #144]
    stp x20, x21, [sp, #160]
    stp x22, x23, [sp, #176]
    stp x24, x25, [sp, #192]
    stp x26, x27, [sp, #208]
    stp x28, x29, [sp, #224]
    mrs x9, elr_el1
    stp x30, x9, [sp, #240]
    mrs x10, spsr_el1
    mrs x11, fpsr
    stp x10, x11, [sp, #256]
    mrs x10, fpcr
    str x10, [sp, #272]
    add x9, sp, #288
    stp q0, q1, [x9, #0]
    stp q2, q3, [x9, #32]
    stp q4, q5, [x9, #64]
    stp q6, q7, [x9, #96]
    stp q8, q9, [x9, #128]
    stp q10, q11, [x9, #160]
    stp q12, q13, [x9, #192]
    stp q14, q15, [x9, #224]
    stp q16, q17, [x9, #256]
    stp q18, q19, [x9, #288]
    stp q20, q21, [x9, #320]
    stp q22, q23, [x9, #352]
    stp q24, q25, [x9, #384]
    stp q26, q27, [x9, #416]
    stp q28, q29, [x9, #448]
    stp q30, q31, [x9, #480]
.endm

.macro RESTORE_FRAME
    add x9, sp, #288
    ldp q0, q1, [x9, #0]
    ldp q2, q3, [x9, #32]
    ldp q4, q5, [x9, #64]
    ldp q6, q7, [x9, #96]
    ldp q8, q9, [x9, #128]
    ldp q10, q11, [x9, #160]
    ldp q12, q13, [x9, #192]
    ldp q14, q15, [x9, #224]
    ldp q16, q17, [x9, #256]
    ldp q18, q19, [x9, #288]
    ldp q20, q21, [x9, #320]
    ldp q22, q23, [x9, #352]
    ldp q24, q25, [x9, #384]
    ldp q26, q27, [x9, #416]
    ldp q28, q29, [x9, #448]
    ldp q30, q31, [x9, #480]
    ldr x10, [sp, #272]
    msr fpcr, x10
    ldp x10, x11, [sp, #256]
    msr spsr_el1, x10
    msr fpsr, x11
    ldp x30, x9, [sp, #240]
    msr elr_el1, x9
    ldp x0, x1, [sp, #0]
    ldp x2, x3, [sp, #16]
    ldp x4, x5, [sp, #32]
    ldp x6, x7, [sp, #48]
    ldp x8, x9, [sp, #64]
    ldp x10, x11, [sp, #80]
    ldp x12, x13, [sp, #96]
    ldp x14, x15, [sp, #112]
    ldp x16, x17, [sp, #128]
    ldp x18, x19, [sp, #144]
    ldp x20, x21, [sp, #160]
    ldp x22, x23, [sp, #176]
    ldp x24, x25, [sp, #192]
    ldp x26, x27, [sp, #208]
    ldp x28, x29, [sp, #224]
    add sp, sp, #800
.endm

// Common MMU setup, called with the MMU off (boot and secondary CPUs).
// Clobbers x0.
.macro ENABLE_MMU
    // MAIR_EL1: attr0 = Device-nGnRE (0x04), attr1 = Normal WB RW-allocate.
    mov x0, #0xff04
    msr mair_el1, x0
    // TCR_EL1: T0SZ=25 (39-bit VA, walk starts at level 1), IRGN0=ORGN0=WB
    // WA, SH0=inner, TG0=4K, EPD1=1 (no TTBR1 walks), IPS=40 bits.
    ldr x0, =0x200803519
    msr tcr_el1, x0
    adrp x0, boot_page_table
    msr ttbr0_el1, x0
    isb
    tlbi vmalle1
    dsb ish
    isb
    // SCTLR_EL1: M (MMU), C (data cache), I (instruction cache).
    mrs x0, sctlr_el1
    orr x0, x0, #1
    orr x0, x0, #(1 << 2)
    orr x0, x0, #(1 << 12)
    msr sctlr_el1, x0
    isb
.endm

// The arm64 Linux `Image` header (Documentation/arch/arm64/booting.rst),
// the first 64 bytes of the image: Xen loads a domU kernel only in this
// format (a raw binary, `llvm-objcopy -O binary`), at RAM base + text_offset
// (0x4000_0000 + 0x8_0000 = the link address) and enters at its first
// byte. QEMU boots the ELF at `_start` and never runs it.
.section .text.head, "ax"
.global _head
_head:
    b       _start                 // code0
    .long   0                      // code1
    .quad   0x80000                // text_offset
    .quad   __image_size           // image_size (incl. .bss; linker.ld)
    .quad   0xa                    // flags: LE, 4 KiB pages, anywhere
    .quad   0, 0, 0                // res2..res4
    .ascii  "ARM\x64"             // magic 0x644d5241
    .long   0                      // res5 (no PE/COFF header)

.section .text.boot, "ax"
.global _start
_start:
    // x0 = the device tree's address (QEMU and Xen both pass it): kept in
    // x21 until .bss is zeroed, then stored in BOOT_DTB.
    mov x21, x0
    // Only the boot CPU runs this (QEMU starts the others powered off);
    // park anything else that gets here.
    mrs x1, mpidr_el1
    and x1, x1, #0xffffff
    cbz x1, 1f
0:  wfe
    b 0b
1:  adrp x0, __boot_stack_top
    add x0, x0, :lo12:__boot_stack_top
    mov sp, x0
    // CPACR_EL1.FPEN = 0b11: FP/SIMD at EL1 without traps (core uses NEON).
    mov x0, #(3 << 20)
    msr cpacr_el1, x0
    isb
    // Zero .bss (the boot stack lives there: nothing is on it yet).
    adrp x0, __bss_start
    add x0, x0, :lo12:__bss_start
    adrp x1, __bss_end
    add x1, x1, :lo12:__bss_end
2:  cmp x0, x1
    b.hs 3f
    str xzr, [x0], #8
    b 2b
3:  adrp x0, BOOT_DTB
    str x21, [x0, :lo12:BOOT_DTB]
    // Level 1 table: entry 0 = 0..1 GiB device (AttrIndx 0, AF, UXN|PXN),
    // entry 1 = 1..2 GiB normal RAM (AttrIndx 1, AF, inner shareable).
    adrp x0, boot_page_table
    ldr x1, =0x0060000000000401
    str x1, [x0, #0]
    ldr x1, =0x0000000040000705
    str x1, [x0, #8]
    dsb ish
    ENABLE_MMU
    adrp x0, exception_vectors
    add x0, x0, :lo12:exception_vectors
    msr vbar_el1, x0
    msr tpidr_el1, xzr
    isb
    bl kmain
4:  wfe
    b 4b

// PSCI CPU_ON entry point: MMU off, EL1, x0 = context id = logical CPU.
.global secondary_entry
secondary_entry:
    mov x19, x0
    adrp x1, SECONDARY_STACK_TOP
    add x1, x1, :lo12:SECONDARY_STACK_TOP
    ldr x1, [x1, x19, lsl #3]
    mov sp, x1
    mov x0, #(3 << 20)
    msr cpacr_el1, x0
    isb
    ENABLE_MMU
    adrp x0, exception_vectors
    add x0, x0, :lo12:exception_vectors
    msr vbar_el1, x0
    msr tpidr_el1, x19
    isb
    mov x0, x19
    bl secondary_main
5:  wfe
    b 5b

// ----- EL1 exception vectors (ARM ARM D1.10.2: 16 entries of 0x80) -------
// Each entry only branches: saving the frame takes more than 0x80 bytes.
.section .text
.balign 2048
.global exception_vectors
exception_vectors:
.irp kind, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
    .balign 0x80
    b vector_\kind
.endr

// Current EL with SP_ELx, IRQ: the only exception the kernel expects.
vector_5:
    SAVE_FRAME
    bl irq_entry
    RESTORE_FRAME
    eret

// Everything else (SP_EL0 group: never used, we run with SPSel = 1; lower
// ELs: none runs; sync/FIQ/SError at EL1): report and exit.
.irp kind, 0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
vector_\kind:
    SAVE_FRAME
    mov x0, #\kind
    mov x1, sp
    bl exception_entry
    RESTORE_FRAME
    eret
.endr

.section .bss
.balign 4096
boot_page_table:
    .space 4096
.balign 16
__boot_stack_bottom:
    .space 0x10000
__boot_stack_top:
"#
);
