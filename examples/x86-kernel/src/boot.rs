//! Entry code: the PVH note QEMU's `-kernel` loader looks for, the 32-bit
//! entry that builds identity page tables and enters long mode, and the
//! 16-bit application-processor trampoline copied to [`AP_TRAMPOLINE`].
//!
//! PVH entry state (Xen `arch-x86/hvm/start_info.h`, MIT): 32-bit protected
//! mode, flat segments, paging off, IF=0, `ebx` = physical address of the
//! `hvm_start_info` structure.

use core::arch::global_asm;

/// Physical address the AP trampoline is copied to; the SIPI vector is this
/// divided by 4 KiB (Intel SDM vol. 3, 10.4.4.1: the AP starts in real mode
/// at `vector << 12`).
pub const AP_TRAMPOLINE: usize = 0x8000;

unsafe extern "C" {
    /// Start of the AP trampoline code inside the kernel image.
    pub static ap_tramp_start: u8;
    /// End of the AP trampoline code.
    pub static ap_tramp_end: u8;
}

global_asm!(
    r#"
    .set AP_BASE, 0x8000

    /* XEN_ELFNOTE_PHYS32_ENTRY (18): the 32-bit entry point. QEMU 7.2 reads
       8 bytes of descriptor, hence .quad; the note stays 4-aligned. */
    .section .note.Xen, "a", @note
    .balign 4
    .long 4, 8, 18
    .asciz "Xen"
    .balign 4
    .quad _start32
    .balign 4

    .section .text.boot, "ax"
    .code32
    .global _start32
_start32:
    cli
    cld
    mov %ebx, %esi                  /* hvm_start_info, kept for kmain */

    /* Zero .bss: page tables and stacks live there. */
    mov $__bss_start, %edi
    mov $__bss_end, %ecx
    sub %edi, %ecx
    xor %eax, %eax
    rep stosb

    /* PML4[0] -> PDPT; PDPT[0..4] -> 4 page directories of 2 MiB pages
       identity-mapping the first 4 GiB (LAPIC, IOAPIC and PCI BARs are in
       the last GiB, mapped uncached: PCD|PWT). */
    mov $boot_pdpt, %eax
    or $3, %eax
    mov %eax, boot_pml4
    mov $boot_pd, %eax
    or $3, %eax
    mov $boot_pdpt, %edi
    mov $4, %ecx
2:  mov %eax, (%edi)
    add $4096, %eax
    add $8, %edi
    dec %ecx
    jnz 2b
    mov $boot_pd, %edi
    xor %ecx, %ecx
3:  mov %ecx, %eax
    shl $21, %eax
    or $0x83, %eax
    cmp $1536, %ecx
    jb 4f
    or $0x18, %eax
4:  mov %eax, (%edi,%ecx,8)
    inc %ecx
    cmp $2048, %ecx
    jb 3b

    /* CR4: PAE | OSFXSR | OSXMMEXCPT. CR3, EFER.LME, then CR0: PG|PE|MP,
       EM and TS clear (core uses SSE). */
    mov %cr4, %eax
    or $0x620, %eax
    mov %eax, %cr4
    mov $boot_pml4, %eax
    mov %eax, %cr3
    mov $0xC0000080, %ecx
    rdmsr
    or $0x100, %eax
    wrmsr
    mov %cr0, %eax
    and $0xFFFFFFF3, %eax
    or $0x80000003, %eax
    mov %eax, %cr0
    lgdt boot_gdt_ptr
    ljmp $0x08, $long_mode_entry

    .code64
long_mode_entry:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %ax, %ax
    mov %ax, %fs
    mov %ax, %gs
    lea boot_stack_top(%rip), %rsp
    mov %esi, %edi
    call kmain
5:  cli
    hlt
    jmp 5b

    /* AP entry in long mode, reached from the trampoline below. The BSP
       starts one AP at a time and publishes its index and stack first. */
ap_long_mode_entry:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %ax, %ax
    mov %ax, %fs
    mov %ax, %gs
    mov AP_BOOT_STACK(%rip), %rsp
    mov AP_BOOT_INDEX(%rip), %edi
    call ap_main
6:  cli
    hlt
    jmp 6b

    /* The trampoline: position-dependent on AP_BASE, copied there by the
       BSP. Real mode -> protected mode -> long mode on the BSP's tables. */
    .code16
    .global ap_tramp_start
ap_tramp_start:
    cli
    cld
    xor %ax, %ax
    mov %ax, %ds
    lgdtl AP_BASE + (ap_gdt_ptr - ap_tramp_start)
    mov %cr0, %eax
    or $1, %eax
    mov %eax, %cr0
    ljmpl $0x18, $(AP_BASE + (ap_pm32 - ap_tramp_start))
    .code32
ap_pm32:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov %cr4, %eax
    or $0x620, %eax
    mov %eax, %cr4
    mov $boot_pml4, %eax
    mov %eax, %cr3
    mov $0xC0000080, %ecx
    rdmsr
    or $0x100, %eax
    wrmsr
    mov %cr0, %eax
    and $0xFFFFFFF3, %eax
    or $0x80000003, %eax
    mov %eax, %cr0
    ljmp $0x08, $ap_long_mode_entry
    .balign 8
ap_gdt:
    .quad 0, 0x00af9b000000ffff, 0x00cf93000000ffff, 0x00cf9b000000ffff
ap_gdt_ptr:
    .word 31
    .long AP_BASE + (ap_gdt - ap_tramp_start)
    .global ap_tramp_end
ap_tramp_end:
    .code64

    .section .data.boot, "aw"
    .balign 8
boot_gdt:
    .quad 0, 0x00af9b000000ffff, 0x00cf93000000ffff
boot_gdt_ptr:
    .word 23
    .long boot_gdt

    .section .bss.boot, "aw", @nobits
    .balign 4096
    .global boot_pml4
boot_pml4:
    .skip 4096
boot_pdpt:
    .skip 4096
boot_pd:
    .skip 16384
    .balign 16
boot_stack:
    .skip 65536
boot_stack_top:
    "#,
    options(att_syntax)
);
