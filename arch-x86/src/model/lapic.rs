//! Model of one local APIC: registers, IRR/ISR/TMR with priorities, EOI,
//! TPR/PPR, error status, LVTs and the timer in its three modes.
//!
//! Message delivery between APICs (IPIs, IOAPIC and MSI messages) is done by
//! the [`Machine`](super::Machine), which owns every APIC.

use crate::lapic::{Svr, TimerDivide, reg};
use alloc::vec::Vec;

/// LVT indices in [`LapicModel::lvt`].
pub(crate) const LVT_TIMER: usize = 0;
pub(crate) const LVT_ERROR: usize = 5;
const LVT_OFFSETS: [usize; 7] = [
    reg::LVT_TIMER.offset(),
    reg::LVT_THERMAL.offset(),
    reg::LVT_PMC.offset(),
    reg::LVT_LINT0.offset(),
    reg::LVT_LINT1.offset(),
    reg::LVT_ERROR.offset(),
    reg::LVT_CMCI.offset(),
];
/// The SVR's offset, for the decoders' `match`es.
const SVR: usize = reg::SVR.offset();
const LVT_MASK: u32 = 1 << 16;

/// ESR bit: a fixed interrupt with an illegal vector (0-15) was received.
pub const ESR_RECEIVE_ILLEGAL_VECTOR: u32 = 1 << 6;
/// ESR bit: an IPI with an illegal vector was sent.
pub const ESR_SEND_ILLEGAL_VECTOR: u32 = 1 << 5;
/// ESR bit: an access to an illegal register.
pub const ESR_ILLEGAL_REGISTER: u32 = 1 << 7;

/// Register-level state of one LAPIC.
#[derive(Clone, Debug)]
pub struct LapicModel {
    pub(crate) apic_id: u32,
    pub(crate) apic_base: u64,
    pub(crate) svr: u32,
    pub(crate) tpr: u32,
    pub(crate) ldr: u32,
    pub(crate) dfr: u32,
    pub(crate) irr: [u32; 8],
    pub(crate) isr: [u32; 8],
    pub(crate) tmr: [u32; 8],
    pub(crate) esr: u32,
    pub(crate) esr_pending: u32,
    pub(crate) lvt: [u32; 7],
    pub(crate) icr_low: u32,
    pub(crate) icr_high: u32,
    pub(crate) timer_initial: u32,
    pub(crate) timer_current: u32,
    pub(crate) timer_divide: u32,
    pub(crate) prescaler: u64,
    pub(crate) tsc_deadline: u64,
    pub(crate) nmi_count: u32,
    pub(crate) init_count: u32,
    pub(crate) sipi_vectors: Vec<u8>,
    pub(crate) gp_faults: u32,
    pub(crate) spurious_delivered: u32,
}

fn get(bits: &[u32; 8], v: u8) -> bool {
    bits[v as usize / 32] & (1 << (v % 32)) != 0
}
fn put(bits: &mut [u32; 8], v: u8, on: bool) {
    if on {
        bits[v as usize / 32] |= 1 << (v % 32);
    } else {
        bits[v as usize / 32] &= !(1 << (v % 32));
    }
}
fn highest(bits: &[u32; 8]) -> Option<u8> {
    (0..=255u8).rev().find(|v| get(bits, *v))
}

impl LapicModel {
    /// The state after reset: globally enabled in xAPIC mode, software
    /// disabled (SVR 0xFF), every LVT masked.
    pub(crate) fn reset(apic_id: u32, bsp: bool) -> Self {
        Self {
            apic_id,
            apic_base: crate::lapic::DEFAULT_XAPIC_BASE
                | crate::lapic::APIC_BASE_ENABLE
                | if bsp { crate::lapic::APIC_BASE_BSP } else { 0 },
            svr: 0xFF,
            tpr: 0,
            ldr: 0,
            dfr: u32::MAX,
            irr: [0; 8],
            isr: [0; 8],
            tmr: [0; 8],
            esr: 0,
            esr_pending: 0,
            lvt: [LVT_MASK; 7],
            icr_low: 0,
            icr_high: 0,
            timer_initial: 0,
            timer_current: 0,
            timer_divide: 0,
            prescaler: 0,
            tsc_deadline: 0,
            nmi_count: 0,
            init_count: 0,
            sipi_vectors: Vec::new(),
            gp_faults: 0,
            spurious_delivered: 0,
        }
    }

    /// Globally enabled (IA32_APIC_BASE.EN).
    pub(crate) fn hw_enabled(&self) -> bool {
        self.apic_base & crate::lapic::APIC_BASE_ENABLE != 0
    }
    /// In x2APIC mode.
    pub(crate) fn x2apic(&self) -> bool {
        self.hw_enabled() && self.apic_base & crate::lapic::APIC_BASE_X2APIC != 0
    }
    /// Software enabled (SVR bit 8).
    pub(crate) fn sw_enabled(&self) -> bool {
        Svr::from_bits_retain(self.svr).contains(Svr::ENABLE)
    }
    pub(crate) fn suppress_eoi_broadcast(&self) -> bool {
        Svr::from_bits_retain(self.svr).contains(Svr::SUPPRESS_EOI_BROADCAST)
    }
    /// The logical destination: xAPIC LDR bits 24-31; x2APIC derived from
    /// the id (cluster in bits 16-31, one bit of 16 in bits 0-15).
    pub(crate) fn logical_id(&self) -> u32 {
        if self.x2apic() {
            ((self.apic_id >> 4) << 16) | (1 << (self.apic_id & 0xF))
        } else {
            self.ldr
        }
    }

    pub(crate) fn irr(&self, v: u8) -> bool {
        get(&self.irr, v)
    }
    pub(crate) fn isr(&self, v: u8) -> bool {
        get(&self.isr, v)
    }
    pub(crate) fn tmr(&self, v: u8) -> bool {
        get(&self.tmr, v)
    }

    /// PPR = the higher of TPR and the in-service class (SDM 11.8.3.1).
    pub(crate) fn ppr(&self) -> u32 {
        let isrv = highest(&self.isr).map_or(0, |v| v as u32);
        if (self.tpr & 0xF0) >= (isrv & 0xF0) {
            self.tpr & 0xFF
        } else {
            isrv & 0xF0
        }
    }

    /// Accepts a fixed interrupt into the IRR. Returns false if it was
    /// refused (illegal vector: ESR bit set, error LVT raised by the caller).
    pub(crate) fn accept_fixed(&mut self, vector: u8, level: bool) -> bool {
        if vector < 16 {
            self.esr_pending |= ESR_RECEIVE_ILLEGAL_VECTOR;
            return false;
        }
        put(&mut self.irr, vector, true);
        put(&mut self.tmr, vector, level);
        true
    }

    /// The CPU takes the highest-priority deliverable interrupt: IRR → ISR.
    pub(crate) fn take(&mut self) -> Option<u8> {
        if !self.hw_enabled() || !self.sw_enabled() {
            return None;
        }
        let v = highest(&self.irr)?;
        if (v as u32 & 0xF0) <= (self.ppr() & 0xF0) {
            return None;
        }
        put(&mut self.irr, v, false);
        put(&mut self.isr, v, true);
        Some(v)
    }

    /// EOI: retires the highest in-service vector. Returns it and whether it
    /// was level triggered with broadcasts enabled (the machine then
    /// broadcasts the EOI to the IOAPICs).
    pub(crate) fn eoi(&mut self) -> Option<(u8, bool)> {
        let v = highest(&self.isr)?;
        put(&mut self.isr, v, false);
        Some((v, self.tmr(v) && !self.suppress_eoi_broadcast()))
    }

    fn divisor(&self) -> u64 {
        TimerDivide::divisor_of_bits(self.timer_divide) as u64
    }

    pub(crate) fn timer_mode(&self) -> u32 {
        (self.lvt[LVT_TIMER] >> 17) & 3
    }

    /// Advances the count-down timer by `clocks` bus clocks; returns how
    /// many times it expired.
    pub(crate) fn advance(&mut self, clocks: u64) -> u32 {
        let mode = self.timer_mode();
        if mode > 1 || self.timer_current == 0 {
            return 0;
        }
        self.prescaler += clocks;
        let mut ticks = self.prescaler / self.divisor();
        self.prescaler %= self.divisor();
        let mut fired = 0;
        while ticks > 0 && self.timer_current > 0 {
            let step = ticks.min(self.timer_current as u64);
            ticks -= step;
            self.timer_current -= step as u32;
            if self.timer_current == 0 {
                fired += 1;
                if mode == 1 {
                    self.timer_current = self.timer_initial;
                }
            }
        }
        fired
    }

    /// Reads register `offset`. `None` for an illegal register.
    pub(crate) fn read(&mut self, offset: usize) -> Option<u32> {
        let x2 = self.x2apic();
        Some(match offset {
            reg::ID => {
                if x2 {
                    self.apic_id
                } else {
                    self.apic_id << 24
                }
            }
            // Version 0x14, 7 LVT entries, directed EOI supported (bit 24).
            reg::VERSION => 0x14 | (6 << 16) | (1 << 24),
            reg::TPR => self.tpr,
            reg::PPR => self.ppr(),
            reg::LDR => self.logical_id(),
            reg::DFR if !x2 => self.dfr,
            SVR => self.svr,
            o if reg::ISR.decode(o).is_some() => self.isr[reg::ISR.decode(o).unwrap_or(0)],
            o if reg::TMR.decode(o).is_some() => self.tmr[reg::TMR.decode(o).unwrap_or(0)],
            o if reg::IRR.decode(o).is_some() => self.irr[reg::IRR.decode(o).unwrap_or(0)],
            reg::ESR => self.esr,
            reg::ICR_LOW => self.icr_low,
            reg::ICR_HIGH if !x2 => self.icr_high,
            reg::TIMER_INITIAL => self.timer_initial,
            reg::TIMER_CURRENT => self.timer_current,
            reg::TIMER_DIVIDE => self.timer_divide,
            o => match LVT_OFFSETS.iter().position(|l| *l == o) {
                Some(i) => self.lvt[i],
                None => return None,
            },
        })
    }

    /// Writes a plain register (ICR, EOI and self-IPI are handled by the
    /// machine). Returns false for an illegal or read-only register.
    pub(crate) fn write(&mut self, offset: usize, value: u32) -> bool {
        let x2 = self.x2apic();
        match offset {
            reg::ID if !x2 => {}
            reg::TPR => self.tpr = value & 0xFF,
            reg::LDR if !x2 => self.ldr = value & 0xFF00_0000,
            reg::DFR if !x2 => self.dfr = value | 0x0FFF_FFFF,
            SVR => {
                self.svr = value & 0x13FF;
                if !self.sw_enabled() {
                    // SDM 11.4.7.2: software disable masks every LVT.
                    for l in self.lvt.iter_mut() {
                        *l |= LVT_MASK;
                    }
                }
            }
            reg::ESR => {
                // A write latches the accumulated errors (SDM 11.5.3).
                self.esr = self.esr_pending;
                self.esr_pending = 0;
            }
            reg::ICR_HIGH if !x2 => self.icr_high = value,
            reg::TIMER_INITIAL => {
                if self.timer_mode() != 2 {
                    self.timer_initial = value;
                    self.timer_current = value;
                    self.prescaler = 0;
                }
            }
            reg::TIMER_DIVIDE => self.timer_divide = value & 0b1011,
            o => match LVT_OFFSETS.iter().position(|l| *l == o) {
                Some(i) => {
                    let v = if self.sw_enabled() {
                        value
                    } else {
                        value | LVT_MASK
                    };
                    let old_mode = self.timer_mode();
                    self.lvt[i] = v;
                    if i == LVT_TIMER && old_mode != self.timer_mode() {
                        // Switching modes disarms the timer (SDM 11.5.4.1).
                        self.timer_current = 0;
                        self.timer_initial = 0;
                        self.tsc_deadline = 0;
                    }
                }
                None => return false,
            },
        }
        true
    }

    /// The error vector to raise, if errors are pending and the error LVT
    /// is unmasked.
    pub(crate) fn error_vector(&self) -> Option<u8> {
        let lvt = self.lvt[LVT_ERROR];
        (self.esr_pending != 0 && lvt & LVT_MASK == 0).then_some(lvt as u8)
    }
}
