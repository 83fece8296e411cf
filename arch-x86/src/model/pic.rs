//! Model of one 8259A: the ICW1-ICW4 initialisation sequence, the interrupt
//! mask (OCW1) and EOIs (OCW2).

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
    /// Completed initialisation sequences.
    pub inits: u32,
    /// EOI commands received.
    pub eois: u32,
    /// Next expected ICW (2-4), or 0 when initialised.
    step: u8,
    needs_icw4: bool,
}

impl PicModel {
    pub(crate) fn command(&mut self, value: u8) {
        if value & 0x10 != 0 {
            // ICW1: starts initialisation and clears the mask.
            self.step = 2;
            self.needs_icw4 = value & 1 != 0;
            self.imr = 0;
        } else if value & 0x18 == 0 && value & 0x20 != 0 {
            self.eois += 1;
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
}
