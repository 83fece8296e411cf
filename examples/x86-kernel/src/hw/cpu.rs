//! CPU control: interrupt flag, halt, MSRs, TSC, GS base.

use core::arch::asm;

/// Whether RFLAGS.IF is set on this CPU.
pub fn interrupts_enabled() -> bool {
    let rflags: u64;
    // SAFETY: reading RFLAGS has no side effect.
    unsafe { asm!("pushfq", "pop {}", out(reg) rflags, options(preserves_flags)) }
    rflags & (1 << 9) != 0
}

/// Disables interrupts and returns whether they were enabled.
pub fn irq_save() -> bool {
    let was = interrupts_enabled();
    // SAFETY: clearing IF only delays interrupts.
    unsafe { asm!("cli", options(nomem, nostack)) }
    was
}

/// Re-enables interrupts if `was_enabled`.
pub fn irq_restore(was_enabled: bool) {
    if was_enabled {
        // SAFETY: restores the state saved by irq_save.
        unsafe { asm!("sti", options(nomem, nostack)) }
    }
}

/// Disables interrupts.
pub fn cli() {
    // SAFETY: clearing IF only delays interrupts.
    unsafe { asm!("cli", options(nomem, nostack)) }
}

/// Enables interrupts. Never called from an interrupt handler: the IST
/// design forbids nesting (see `cpu::idt`).
pub fn sti() {
    // SAFETY: process context; handlers run on IST stacks.
    unsafe { asm!("sti", options(nomem, nostack)) }
}

/// Enables interrupts and halts until the next one, atomically: `sti` delays
/// interrupt recognition by one instruction, so no wake-up is lost between a
/// check done with interrupts off and the `hlt` (Intel SDM vol. 2, STI).
pub fn sti_hlt() {
    // SAFETY: see above; returns with IF=1.
    unsafe { asm!("sti; hlt", options(nomem, nostack)) }
}

/// Halts forever with interrupts off (only NMI/INIT/SMI can wake it).
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: stopping this CPU is the intent.
        unsafe { asm!("cli; hlt", options(nomem, nostack)) }
    }
}

/// Writes a model-specific register.
///
/// # Safety
/// The MSR must exist and the value must be valid for it.
pub unsafe fn wrmsr(msr: u32, v: u64) {
    // SAFETY: the caller guarantees the write is valid.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") v as u32, in("edx") (v >> 32) as u32, options(nostack, preserves_flags))
    }
}

/// The time-stamp counter.
pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: RDTSC is allowed at CPL 0.
    unsafe { asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags)) }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// IA32_GS_BASE.
const MSR_GS_BASE: u32 = 0xC000_0101;

/// Points GS at this CPU's per-CPU area.
///
/// # Safety
/// `base` must point to a per-CPU area that lives forever.
pub unsafe fn set_gs_base(base: u64) {
    // SAFETY: IA32_GS_BASE exists on every x86-64 CPU (Intel SDM vol. 4).
    unsafe { wrmsr(MSR_GS_BASE, base) }
}

/// Reads the u64 at `gs:offset`.
///
/// # Safety
/// GS must have been set by [`set_gs_base`] and `offset` must be in range.
pub unsafe fn gs_read_u64<const OFFSET: usize>() -> u64 {
    let v: u64;
    // SAFETY: GS points at a live per-CPU area (caller).
    unsafe {
        asm!("mov {}, gs:[{off}]", out(reg) v, off = const OFFSET, options(nostack, preserves_flags, readonly))
    }
    v
}

/// `cpuid` leaf 1 EBX\[31:24\]: the initial APIC id of this CPU.
pub fn initial_apic_id() -> u32 {
    #[allow(unused_unsafe)]
    // SAFETY: CPUID is available on every x86-64 CPU.
    let r = unsafe { core::arch::x86_64::__cpuid(1) };
    r.ebx >> 24
}

/// `cpuid` leaf 1 ECX\[21\]: the CPU has an x2APIC.
pub fn has_x2apic() -> bool {
    #[allow(unused_unsafe)]
    // SAFETY: CPUID is available on every x86-64 CPU.
    let r = unsafe { core::arch::x86_64::__cpuid(1) };
    r.ecx & (1 << 21) != 0
}
