//! Model of one IOAPIC: index/window registers, redirection entries with
//! their read-only delivery-status and remote-IRR bits, pin lines with
//! polarity, edge and level semantics, and EOI (broadcast or register).

use crate::ioapic::{
    IOAPIC_EOI, IOREGSEL, IOWIN, REG_ID, REG_VERSION, RedirectionEntry, reg::decode_redtbl,
};
use alloc::vec::Vec;

const RO_BITS: u64 = (1 << 12) | (1 << 14);
const REMOTE_IRR: u64 = 1 << 14;

/// An interrupt message the IOAPIC sends to the APIC bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IoApicMessage {
    pub(crate) entry: RedirectionEntry,
}

#[derive(Clone, Copy, Debug, Default)]
struct Pin {
    entry: u64,
    /// Electrical level of the line (true = high).
    line_high: bool,
}

/// Register-level state of one IOAPIC.
#[derive(Clone, Debug)]
pub struct IoApicModel {
    pub(crate) id: u8,
    pub(crate) version: u8,
    ioregsel: u32,
    pins: Vec<Pin>,
    /// Deliveries sent (pin, vector), for tests.
    pub(crate) delivered: Vec<(u32, u8)>,
}

impl IoApicModel {
    pub(crate) fn new(id: u8, nr_pins: u32, version: u8) -> Self {
        let pins = (0..nr_pins)
            .map(|_| Pin {
                entry: 1 << 16,
                line_high: false,
            })
            .collect();
        Self {
            id,
            version,
            ioregsel: 0,
            pins,
            delivered: Vec::new(),
        }
    }

    pub(crate) fn nr_pins(&self) -> u32 {
        self.pins.len() as u32
    }

    pub(crate) fn entry(&self, pin: u32) -> Option<RedirectionEntry> {
        self.pins
            .get(pin as usize)
            .map(|p| RedirectionEntry(p.entry))
    }

    fn active(p: &Pin) -> bool {
        let e = RedirectionEntry(p.entry);
        p.line_high != e.is_active_low()
    }

    /// Level pins: deliver if active, unmasked and not awaiting EOI.
    fn evaluate_level(&mut self, pin: usize, out: &mut Vec<IoApicMessage>) {
        let p = &mut self.pins[pin];
        let e = RedirectionEntry(p.entry);
        if e.is_level() && !e.is_masked() && !e.remote_irr() && Self::active(p) {
            p.entry |= REMOTE_IRR;
            self.delivered.push((pin as u32, e.vector()));
            out.push(IoApicMessage { entry: e });
        }
    }

    /// Drives pin `pin`'s line to `high`. Returns the messages to deliver.
    pub(crate) fn set_line(&mut self, pin: u32, high: bool, out: &mut Vec<IoApicMessage>) -> bool {
        let Some(p) = self.pins.get_mut(pin as usize) else {
            return false;
        };
        let was_active = Self::active(p);
        p.line_high = high;
        let now_active = Self::active(p);
        let e = RedirectionEntry(p.entry);
        if e.is_level() {
            self.evaluate_level(pin as usize, out);
        } else if !was_active && now_active && !e.is_masked() {
            // An edge on a masked pin is lost (82093AA: masked edge
            // interrupts are ignored).
            self.delivered.push((pin, e.vector()));
            out.push(IoApicMessage { entry: e });
        }
        true
    }

    /// EOI for `vector`: clears remote IRR of the level entries with that
    /// vector and re-delivers lines that are still active.
    pub(crate) fn eoi(&mut self, vector: u8, out: &mut Vec<IoApicMessage>) {
        for pin in 0..self.pins.len() {
            let e = RedirectionEntry(self.pins[pin].entry);
            if e.is_level() && e.remote_irr() && e.vector() == vector {
                self.pins[pin].entry &= !REMOTE_IRR;
                self.evaluate_level(pin, out);
            }
        }
    }

    pub(crate) fn mmio_read(&self, offset: usize) -> u32 {
        match offset {
            IOREGSEL => self.ioregsel,
            IOWIN => self.read_indirect(self.ioregsel),
            _ => u32::MAX,
        }
    }

    pub(crate) fn mmio_write(&mut self, offset: usize, value: u32, out: &mut Vec<IoApicMessage>) {
        match offset {
            IOREGSEL => self.ioregsel = value & 0xFF,
            IOWIN => self.write_indirect(self.ioregsel, value, out),
            IOAPIC_EOI if self.version >= 0x20 => self.eoi(value as u8, out),
            _ => {}
        }
    }

    fn read_indirect(&self, reg: u32) -> u32 {
        match reg {
            REG_ID => (self.id as u32) << 24,
            REG_VERSION => self.version as u32 | ((self.nr_pins() - 1) << 16),
            r => match decode_redtbl(r) {
                Some((pin, high)) => match self.pins.get(pin as usize) {
                    Some(p) if !high => p.entry as u32,
                    Some(p) => (p.entry >> 32) as u32,
                    None => u32::MAX,
                },
                None => 0,
            },
        }
    }

    fn write_indirect(&mut self, reg: u32, value: u32, out: &mut Vec<IoApicMessage>) {
        match reg {
            REG_ID => self.id = ((value >> 24) & 0xF) as u8,
            r => {
                let Some((pin, high)) = decode_redtbl(r) else {
                    return;
                };
                let Some(p) = self.pins.get_mut(pin as usize) else {
                    return;
                };
                let was_level = RedirectionEntry(p.entry).is_level();
                if !high {
                    let ro = p.entry & RO_BITS;
                    p.entry = (p.entry & !0xFFFF_FFFF) | (value as u64 & !RO_BITS) | ro;
                } else {
                    p.entry = (p.entry & 0xFFFF_FFFF) | ((value as u64) << 32);
                }
                if was_level && !RedirectionEntry(p.entry).is_level() {
                    // Switching to edge drops a stale remote IRR (the legacy
                    // way to EOI a pre-0x20 IOAPIC).
                    p.entry &= !REMOTE_IRR;
                }
                self.evaluate_level(pin as usize, out);
            }
        }
    }
}
