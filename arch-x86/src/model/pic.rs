//! Model of one 8259A (8259A datasheet): the ICW1-ICW4 initialisation
//! sequence, the interrupt request, in-service and mask registers (IRR, ISR,
//! IMR), fully nested priority (IR0 highest), non-specific and specific EOIs
//! (OCW2), the register read select (OCW3), and the interrupt acknowledge
//! cycle, including the spurious IR7 the datasheet describes for a request
//! that goes away before the acknowledge.
//!
//! The cascade (a slave on the master's IR2) is wired up by
//! [`Machine`](super::Machine): see `Machine::pic_raise` and
//! `Machine::pic_acknowledge`.

/// State of one 8259A.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PicModel {
    /// Vector offset from ICW2.
    pub offset: u8,
    /// ICW3 (master: slave lines; slave: cascade id).
    pub icw3: u8,
    /// ICW4.
    pub icw4: u8,
    /// Interrupt mask register.
    pub imr: u8,
    /// Interrupt request register (edge latched).
    pub irr: u8,
    /// In-service register.
    pub isr: u8,
    /// Completed initialisation sequences.
    pub inits: u32,
    /// EOI commands received (non-specific and specific).
    pub eois: u32,
    /// Specific EOI commands received.
    pub specific_eois: u32,
    /// EOIs that found no in-service bit to clear (a driver bug: an EOI for
    /// a spurious IR7, or a second EOI).
    pub stray_eois: u32,
    /// OCW2 commands the model does not implement (rotation, set priority).
    pub unsupported_commands: u32,
    /// OCW3 read select: `true` = a command-port read returns the ISR.
    pub read_isr: bool,
    /// Next expected ICW (2-4), or 0 when initialised.
    step: u8,
    needs_icw4: bool,
}

impl PicModel {
    pub(crate) fn command(&mut self, value: u8) {
        if value & 0x10 != 0 {
            // ICW1: starts initialisation, clears the mask and the ISR,
            // selects IRR for reads.
            self.step = 2;
            self.needs_icw4 = value & 1 != 0;
            self.imr = 0;
            self.isr = 0;
            self.read_isr = false;
        } else if value & 0x18 == 0x08 {
            // OCW3: bit 1 = act on the read select, bit 0 = ISR.
            if value & 0x02 != 0 {
                self.read_isr = value & 0x01 != 0;
            }
        } else {
            // OCW2.
            match value >> 5 {
                0b001 => {
                    self.eois += 1;
                    match self.highest_in_service() {
                        Some(l) => self.isr &= !(1 << l),
                        None => self.stray_eois += 1,
                    }
                }
                0b011 => {
                    self.eois += 1;
                    self.specific_eois += 1;
                    let bit = 1 << (value & 7);
                    if self.isr & bit == 0 {
                        self.stray_eois += 1;
                    }
                    self.isr &= !bit;
                }
                _ => self.unsupported_commands += 1,
            }
        }
    }

    pub(crate) fn data(&mut self, value: u8) {
        match self.step {
            2 => {
                self.offset = value & 0xF8;
                self.step = 3;
            }
            3 => {
                self.icw3 = value;
                if self.needs_icw4 {
                    self.step = 4;
                } else {
                    self.step = 0;
                    self.inits += 1;
                }
            }
            4 => {
                self.icw4 = value;
                self.step = 0;
                self.inits += 1;
            }
            _ => self.imr = value,
        }
    }

    /// What a command-port read returns (IRR or ISR, per OCW3).
    pub(crate) fn read_command(&self) -> u8 {
        if self.read_isr { self.isr } else { self.irr }
    }

    fn highest_in_service(&self) -> Option<u8> {
        (0..8).find(|l| self.isr & (1 << l) != 0)
    }

    /// The line the priority resolver would present, given the extra
    /// request bits `extra` (the slave's output on the master's IR2): the
    /// highest-priority unmasked request not blocked by an equal or higher
    /// priority line in service.
    pub(crate) fn resolve(&self, extra: u8) -> Option<u8> {
        let req = (self.irr | extra) & !self.imr;
        let line = (0..8).find(|l| req & (1 << l) != 0)?;
        let blocked = self.isr & ((2u16 << line) - 1) as u8 != 0;
        (!blocked).then_some(line)
    }

    /// The interrupt acknowledge cycle: the resolved line moves from IRR to
    /// ISR and its vector is returned; with no request left, the vector of
    /// IR7 is returned and no ISR bit is set (a spurious interrupt).
    pub(crate) fn acknowledge(&mut self, extra: u8) -> (u8, Option<u8>) {
        match self.resolve(extra) {
            Some(line) => {
                self.irr &= !(1 << line);
                self.isr |= 1 << line;
                (self.offset | line, Some(line))
            }
            None => (self.offset | 7, None),
        }
    }
}
