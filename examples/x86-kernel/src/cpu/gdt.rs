//! Per-CPU GDT and TSS. Every IDT gate uses an IST stack (see `idt`), so the
//! TSS of each CPU carries five of them.

use core::arch::asm;
use core::cell::UnsafeCell;

use irqcore::CpuId;

use super::percpu::MAX_CPUS;

/// Kernel code selector.
pub const KERNEL_CS: u16 = 0x08;
const KERNEL_DS: u16 = 0x10;
const TSS_SEL: u16 = 0x18;

/// IST slots (1-based, as in the gate descriptor).
pub mod ist {
    /// Device interrupts and IPIs (vectors 32..255).
    pub const IRQ: u8 = 1;
    /// Exceptions.
    pub const EXCEPTION: u8 = 2;
    /// NMI.
    pub const NMI: u8 = 3;
    /// Double fault.
    pub const DOUBLE_FAULT: u8 = 4;
    /// Machine check.
    pub const MACHINE_CHECK: u8 = 5;
}

const IST_SIZE: usize = 16 * 1024;
const NR_IST: usize = 5;

/// The 64-bit TSS (Intel SDM vol. 3, 8.7): packed to 4 so the u64 fields
/// sit at their architectural offsets.
#[repr(C, packed(4))]
struct Tss {
    reserved0: u32,
    rsp: [u64; 3],
    reserved1: u64,
    ist: [u64; 7],
    reserved2: u64,
    reserved3: u16,
    iomap_base: u16,
}
const _: () = assert!(core::mem::size_of::<Tss>() == 104);

#[repr(C, align(16))]
struct CpuTables {
    gdt: [u64; 5],
    tss: Tss,
}

#[repr(C, align(16))]
struct IstStacks([[u8; IST_SIZE]; NR_IST]);

/// Per-CPU tables; each CPU writes only its own slot, once, while starting.
struct PerCpuCell<T>([UnsafeCell<T>; MAX_CPUS]);
// SAFETY: slot i is touched only by CPU i (during its own start-up).
unsafe impl<T> Sync for PerCpuCell<T> {}

static TABLES: PerCpuCell<CpuTables> = PerCpuCell(
    [const {
        UnsafeCell::new(CpuTables {
            gdt: [0; 5],
            tss: Tss {
                reserved0: 0,
                rsp: [0; 3],
                reserved1: 0,
                ist: [0; 7],
                reserved2: 0,
                reserved3: 0,
                iomap_base: 104,
            },
        })
    }; MAX_CPUS],
);
static IST: PerCpuCell<IstStacks> =
    PerCpuCell([const { UnsafeCell::new(IstStacks([[0; IST_SIZE]; NR_IST])) }; MAX_CPUS]);

/// Builds and loads `cpu`'s GDT and TSS, reloads the segment registers and
/// the task register. Call on `cpu` itself, before loading the IDT.
pub fn load_for(cpu: CpuId) {
    let i = cpu.index();
    assert!(i < MAX_CPUS, "cpu index out of range");
    // SAFETY: slot i belongs to the calling CPU (see PerCpuCell); nothing
    // else references it while it is (re)built here.
    let t = unsafe { &mut *TABLES.0[i].get() };
    // SAFETY: as above, for the IST stacks.
    let stacks = unsafe { &mut *IST.0[i].get() };
    for (n, s) in stacks.0.iter_mut().enumerate() {
        // Stack tops are 16-aligned: the CPU aligns RSP on IST entry anyway.
        t.tss.ist[n] = (s.as_mut_ptr() as u64 + IST_SIZE as u64) & !0xF;
    }
    let tss = &t.tss as *const Tss as u64;
    t.gdt = [
        0,
        0x00af_9b00_0000_ffff, // 64-bit code, DPL 0
        0x00cf_9300_0000_ffff, // data
        // Available 64-bit TSS (type 0x9), present, limit 103.
        103 | ((tss & 0xFF_FFFF) << 16) | (0x89 << 40) | (((tss >> 24) & 0xFF) << 56),
        tss >> 32,
    ];
    #[repr(C, packed)]
    struct Ptr {
        limit: u16,
        base: u64,
    }
    let ptr = Ptr {
        limit: (core::mem::size_of::<[u64; 5]>() - 1) as u16,
        base: t.gdt.as_ptr() as u64,
    };
    // SAFETY: the GDT built above is valid and lives forever; CS is reloaded
    // with a far return, the data segments and TR with their selectors
    // (Intel SDM vol. 3, 3.4 and 7.2.4).
    unsafe {
        asm!(
            "lgdt [{ptr}]",
            "push {cs}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            "mov ds, {ds:x}",
            "mov es, {ds:x}",
            "mov ss, {ds:x}",
            "ltr {tss:x}",
            ptr = in(reg) &ptr,
            cs = const KERNEL_CS as u64,
            tmp = out(reg) _,
            ds = in(reg) KERNEL_DS,
            tss = in(reg) TSS_SEL,
        );
    }
    let _ = KERNEL_DS;
}
