//! The interrupt entry: the vector layout, the vector -> irq table, and
//! the dispatch into kernel-common's irqcore instance.

use core::sync::atomic::{AtomicU32, Ordering};

use arch_x86::Vector;
use irqcore::IrqNumber;
use kernel_common::irq::{self as common, SPURIOUS, UNMAPPED};

use crate::cpu::percpu;
use crate::hw::lapic;

/// Vector layout (Intel SDM vol. 3, 10.8.3.1: the upper 4 bits are the
/// priority class; system vectors sit in the top class). Device vectors come
/// from arch-x86's vector domain (`devices::VECTORS`), per CPU, below
/// `arch_x86::matrix::FIRST_SYSTEM_VECTOR` (0xEC) and above the 8259's.
pub mod vectors {
    use arch_x86::Vector;

    /// LAPIC timer (per CPU).
    pub const TIMER: Vector = Vector::of::<0xEF>();
    /// Cross-CPU function call IPI.
    pub const CALL_FUNCTION: Vector = Vector::of::<0xF1>();
    /// Self-IPI that replays interrupts irqcore asked to resend.
    pub const RESEND: Vector = Vector::of::<0xF2>();
    /// Spurious vector (no EOI; SDM 10.9).
    pub const SPURIOUS: Vector = arch_x86::lapic::DEFAULT_SPURIOUS_VECTOR;
}

/// irq number of each system vector (timer, IPIs; the same on every CPU),
/// `u32::MAX` for none.
static VECTOR_IRQ: [AtomicU32; 256] = [const { AtomicU32::new(u32::MAX) }; 256];

/// Maps system vector `vector` to `irq` for the entry path.
pub fn map_vector(vector: Vector, irq: IrqNumber) {
    VECTOR_IRQ[vector.index()].store(irq.0, Ordering::Release);
}

/// The irq `vector` is mapped to on the executing CPU: a system vector's,
/// else the vector domain's (lock-free).
pub fn vector_irq(vector: Vector) -> Option<IrqNumber> {
    match VECTOR_IRQ[vector.index()].load(Ordering::Acquire) {
        u32::MAX => crate::devices::VECTORS
            .get()
            .and_then(|v| v.irq_for_vector(percpu::current(), vector)),
        n => Some(IrqNumber(n)),
    }
}

/// Called by the IDT dispatcher for vectors 32..=255, interrupts off.
pub fn entry(vector: Vector) {
    if vector == vectors::SPURIOUS {
        SPURIOUS.fetch_add(1, Ordering::Relaxed);
        return; // no EOI for the spurious vector
    }
    // Exception to "nothing arrives while offline": a local timer tick
    // latched before the dying phase stopped the timer, taken when
    // stop-machine restores the interrupt flag on the way out.
    if vector != vectors::TIMER {
        common::note_arrival(percpu::current());
    }
    // The 8259 (`--pic` boot): its vectors arrive through LINT0 in ExtINT
    // mode, with no LAPIC EOI. A spurious IRQ 7/15 is recognised (and
    // EOIed as the 8259 needs) by the chip, and dispatches nothing.
    if let Some(pic) = crate::devices::PIC.get() {
        match pic.classify(vector.get()) {
            arch_x86::PicVector::Line(line) => {
                common::dispatch(IrqNumber(u32::from(line)));
                return;
            }
            arch_x86::PicVector::Spurious(_) => {
                SPURIOUS.fetch_add(1, Ordering::Relaxed);
                return;
            }
            arch_x86::PicVector::NotPic => {}
        }
    }
    // The chips (LAPIC, vector domain) send the EOI from the flow.
    let ran = match vector_irq(vector) {
        Some(irq) => common::dispatch(irq),
        None => {
            UNMAPPED.fetch_add(1, Ordering::Relaxed);
            false
        }
    };
    if !ran {
        lapic::eoi();
    }
}
