//! The legacy 8259A pair: [`Pic8259`] remaps its vectors away from the CPU
//! exceptions and masks it (what a kernel using the APICs does), and
//! [`Pic8259Chip`] drives it as an irqcore [`IrqChip`] (what a kernel that
//! takes its ISA interrupts from the 8259 does).
//!
//! Initialisation sequence (8259A datasheet, "Initialization Command
//! Words"): ICW1 on the command port starts it (0x11: edge, cascade, ICW4
//! follows), then ICW2 (vector offset, a multiple of 8), ICW3 (master: the
//! slave sits on IR2 → 0x04; slave: its cascade id 2) and ICW4 (0x01: 8086
//! mode) on the data port. Afterwards a data-port write is OCW1, the mask.

use crate::irqsafe::{IrqControl, IrqSafeMutex};
use crate::regs::PortIo;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU32, Ordering};
use irqcore::{ChipError, ChipLevel, HwIrq, IrqChip, IrqData, TriggerType};

/// Master command port.
pub const MASTER_CMD: u16 = 0x20;
/// Master data port.
pub const MASTER_DATA: u16 = 0x21;
/// Slave command port.
pub const SLAVE_CMD: u16 = 0xA0;
/// Slave data port.
pub const SLAVE_DATA: u16 = 0xA1;
/// The POST diagnostic port, written for a short I/O delay.
pub const DELAY_PORT: u16 = 0x80;

const ICW1_INIT_ICW4: u8 = 0x11;
const ICW4_8086: u8 = 0x01;
const OCW2_EOI: u8 = 0x20;
/// OCW2 specific EOI; the low three bits name the level.
const OCW2_SPECIFIC_EOI: u8 = 0x60;
/// OCW3: the next command-port read returns the IRR.
const OCW3_READ_IRR: u8 = 0x0A;
/// OCW3: the next command-port read returns the ISR.
const OCW3_READ_ISR: u8 = 0x0B;
/// The master line the slave's INT output is wired to (ICW3 0x04).
pub const CASCADE_LINE: u8 = 2;
/// The vector offsets of the usual remap: master 0x20-0x27, slave 0x28-0x2F.
pub const DEFAULT_OFFSETS: (u8, u8) = (0x20, 0x28);

/// Errors of the 8259 driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PicError {
    /// Offsets must be multiples of 8 outside the exception range (>= 0x20).
    BadOffset(u8),
    /// Lines are numbered 0-15.
    BadLine(u8),
    /// Line 2 is the cascade from the slave: it carries no device.
    Cascade,
}

impl core::fmt::Display for PicError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PicError::BadOffset(o) => write!(
                f,
                "8259 vector offset {o:#x} is not a multiple of 8 at or above 0x20"
            ),
            PicError::BadLine(l) => write!(f, "8259 line {l} does not exist (0-15)"),
            PicError::Cascade => write!(f, "8259 line 2 is the slave cascade, not a device"),
        }
    }
}

/// The cascaded master/slave 8259A pair.
#[derive(Debug)]
pub struct Pic8259<P> {
    ports: P,
}

impl<P: PortIo> Pic8259<P> {
    /// A driver over `ports`.
    pub const fn new(ports: P) -> Self {
        Self { ports }
    }

    fn delay(&self) {
        self.ports.outb(DELAY_PORT, 0);
    }

    /// Re-initialises both PICs with vector offsets `master` (lines 0-7) and
    /// `slave` (lines 8-15), keeping the current masks.
    pub fn remap(&self, master: u8, slave: u8) -> Result<(), PicError> {
        for off in [master, slave] {
            if off % 8 != 0 || off < 0x20 {
                return Err(PicError::BadOffset(off));
            }
        }
        let masks = self.masks();
        for (cmd, data, offset, icw3) in [
            (MASTER_CMD, MASTER_DATA, master, 0x04),
            (SLAVE_CMD, SLAVE_DATA, slave, 0x02),
        ] {
            self.ports.outb(cmd, ICW1_INIT_ICW4);
            self.delay();
            self.ports.outb(data, offset);
            self.delay();
            self.ports.outb(data, icw3);
            self.delay();
            self.ports.outb(data, ICW4_8086);
            self.delay();
        }
        self.set_masks(masks);
        Ok(())
    }

    /// Remaps to 0x20/0x28 and masks every line: what a kernel that uses the
    /// IOAPIC does at boot (a spurious 8259 interrupt then arrives on 0x27 or
    /// 0x2F, never on an exception vector).
    pub fn remap_and_mask(&self) -> Result<(), PicError> {
        // Mask first so nothing fires on the old offsets meanwhile; `remap`
        // restores the saved (all-ones) mask after ICW1 cleared it.
        self.set_masks(0xFFFF);
        self.remap(0x20, 0x28)
    }

    /// The 16-bit mask (bit n set = line n masked).
    pub fn masks(&self) -> u16 {
        self.ports.inb(MASTER_DATA) as u16 | (self.ports.inb(SLAVE_DATA) as u16) << 8
    }

    /// Sets the 16-bit mask.
    pub fn set_masks(&self, masks: u16) {
        self.ports.outb(MASTER_DATA, masks as u8);
        self.ports.outb(SLAVE_DATA, (masks >> 8) as u8);
    }

    /// Masks or unmasks one line.
    pub fn set_masked(&self, line: u8, masked: bool) -> Result<(), PicError> {
        if line > 15 {
            return Err(PicError::BadLine(line));
        }
        let m = self.masks();
        let bit = 1u16 << line;
        self.set_masks(if masked { m | bit } else { m & !bit });
        Ok(())
    }

    /// Both in-service registers (OCW3 read select, 8259A datasheet
    /// "Reading the 8259A status"): bit n set = line n in service. The read
    /// select is left on the IRR afterwards.
    pub fn in_service(&self) -> u16 {
        self.read_status(OCW3_READ_ISR)
    }

    /// Both interrupt request registers (OCW3 read select).
    pub fn requests(&self) -> u16 {
        self.read_status(OCW3_READ_IRR)
    }

    fn read_status(&self, ocw3: u8) -> u16 {
        self.ports.outb(MASTER_CMD, ocw3);
        self.ports.outb(SLAVE_CMD, ocw3);
        let v = self.ports.inb(MASTER_CMD) as u16 | (self.ports.inb(SLAVE_CMD) as u16) << 8;
        if ocw3 != OCW3_READ_IRR {
            self.ports.outb(MASTER_CMD, OCW3_READ_IRR);
            self.ports.outb(SLAVE_CMD, OCW3_READ_IRR);
        }
        v
    }

    /// Specific EOI for `line`: for a slave line, to the slave for that line
    /// and to the master for the cascade line; for a master line, to the
    /// master only.
    pub fn specific_eoi(&self, line: u8) -> Result<(), PicError> {
        if line > 15 {
            return Err(PicError::BadLine(line));
        }
        if line >= 8 {
            self.ports.outb(SLAVE_CMD, OCW2_SPECIFIC_EOI | (line - 8));
            self.ports
                .outb(MASTER_CMD, OCW2_SPECIFIC_EOI | CASCADE_LINE);
        } else {
            self.ports.outb(MASTER_CMD, OCW2_SPECIFIC_EOI | line);
        }
        Ok(())
    }

    /// Non-specific EOI for `line` (the slave and the master for 8-15).
    pub fn eoi(&self, line: u8) -> Result<(), PicError> {
        if line > 15 {
            return Err(PicError::BadLine(line));
        }
        if line >= 8 {
            self.ports.outb(SLAVE_CMD, OCW2_EOI);
        }
        self.ports.outb(MASTER_CMD, OCW2_EOI);
        Ok(())
    }
}

/// What a vector in the 8259's range turned out to be
/// ([`Pic8259Chip::classify`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PicVector {
    /// A real interrupt on this line (0-15, never the cascade line 2):
    /// dispatch the irq bound to it.
    Line(u8),
    /// A spurious IRQ 7 (no EOI was sent) or IRQ 15 (the master, which did
    /// put the cascade in service, got its EOI): dispatch nothing.
    Spurious(u8),
    /// The vector is not one of the pair's.
    NotPic,
}

struct ChipState<P> {
    pic: Pic8259<P>,
    /// Cached mask (bit n = line n masked), so mask/unmask need no read.
    masks: u16,
}

/// The cascaded 8259A pair as an irqcore [`IrqChip`], for the **edge** flow
/// (`FlowKind::Edge`); `HwIrq` is the ISA line, 0-15.
///
/// * `mask`/`unmask`: the line's bit in OCW1 (the cascade line 2 stays
///   unmasked so slave lines can reach the CPU);
/// * `ack`: specific EOI (OCW2) for the line: for a slave line to the slave
///   and then to the master for the cascade line. Acknowledging at the start
///   of the edge flow lets a new edge latch while the handlers run;
/// * spurious IRQ 7 and 15 are recognised *before* dispatch, by
///   [`Pic8259Chip::classify`] from the entry path: it reads the ISR (OCW3);
///   a spurious IRQ 7 gets no EOI, a spurious IRQ 15 an EOI to the master
///   only (the master did put the cascade line in service).
///
/// **Locking:** the chip's own lock serialises every port sequence (an OCW3
/// read select and its read must not be split). It is a leaf
/// (irqcore `LockClass::Chip`): taken inside chip callbacks under the
/// descriptor lock, with nothing acquired while it is held, and with local
/// interrupts off through the [`IrqControl`] (the default one on bare-metal
/// x86_64).
pub struct Pic8259Chip<P> {
    name: &'static str,
    master_offset: u8,
    slave_offset: u8,
    state: IrqSafeMutex<ChipState<P>>,
    spurious: [AtomicU32; 2],
}

impl<P: PortIo> Pic8259Chip<P> {
    /// Initialises the pair with vector offsets `master` and `slave` (see
    /// [`DEFAULT_OFFSETS`]), every line masked except the cascade, and
    /// returns the chip.
    pub fn new(pic: Pic8259<P>, master: u8, slave: u8) -> Result<Self, PicError> {
        pic.set_masks(0xFFFF);
        pic.remap(master, slave)?;
        let masks: u16 = !(1 << CASCADE_LINE);
        pic.set_masks(masks);
        Ok(Self {
            name: "XT-PIC",
            master_offset: master,
            slave_offset: slave,
            state: IrqSafeMutex::new(ChipState { pic, masks }),
            spurious: [AtomicU32::new(0), AtomicU32::new(0)],
        })
    }

    /// Sets how the chip disables local interrupts around its lock.
    pub fn with_irq_control(mut self, ctl: IrqControl) -> Self {
        self.state.set_control(ctl);
        self
    }

    /// The vector `line` arrives on.
    pub fn vector_of(&self, line: u8) -> Result<u8, PicError> {
        match line {
            0..=7 => Ok(self.master_offset + line),
            8..=15 => Ok(self.slave_offset + line - 8),
            _ => Err(PicError::BadLine(line)),
        }
    }

    /// The vectors the pair delivers on (both offsets, eight each), for
    /// keeping them out of the device window (`VectorMatrix::reserve_range`).
    pub fn vectors(&self) -> [core::ops::Range<u8>; 2] {
        [
            self.master_offset..self.master_offset + 8,
            self.slave_offset..self.slave_offset + 8,
        ]
    }

    /// The chip level of `line` for `IrqCore::set_chip` (with
    /// `FlowKind::Edge`). The line stays masked until the irq is started.
    pub fn level(self: &Arc<Self>, line: u8) -> Result<ChipLevel, PicError>
    where
        P: 'static,
    {
        if line > 15 {
            return Err(PicError::BadLine(line));
        }
        if line == CASCADE_LINE {
            return Err(PicError::Cascade);
        }
        Ok(ChipLevel::new(
            self.clone() as Arc<dyn IrqChip>,
            HwIrq(line as u64),
        ))
    }

    /// What `vector` is, to be called by the interrupt entry before it
    /// dispatches (interrupts off). For the IR7 vectors it reads the
    /// in-service register: a line 7 or 15 that is not in service is
    /// spurious. A spurious IRQ 15 gets an EOI to the master (whose cascade
    /// line is in service); a spurious IRQ 7 gets none.
    pub fn classify(&self, vector: u8) -> PicVector {
        let line = if (self.master_offset..self.master_offset + 8).contains(&vector) {
            vector - self.master_offset
        } else if (self.slave_offset..self.slave_offset + 8).contains(&vector) {
            vector - self.slave_offset + 8
        } else {
            return PicVector::NotPic;
        };
        if line != 7 && line != 15 {
            return PicVector::Line(line);
        }
        let st = self.state.lock();
        if st.pic.in_service() & (1 << line) != 0 {
            return PicVector::Line(line);
        }
        if line == 15 {
            st.pic
                .ports
                .outb(MASTER_CMD, OCW2_SPECIFIC_EOI | CASCADE_LINE);
        }
        drop(st);
        self.spurious[usize::from(line == 15)].fetch_add(1, Ordering::Relaxed);
        PicVector::Spurious(line)
    }

    /// Spurious interrupts seen by [`classify`](Self::classify): (IRQ 7,
    /// IRQ 15).
    pub fn spurious_counts(&self) -> (u32, u32) {
        (
            self.spurious[0].load(Ordering::Relaxed),
            self.spurious[1].load(Ordering::Relaxed),
        )
    }

    /// The cached mask (bit n set = line n masked).
    pub fn masks(&self) -> u16 {
        self.state.lock().masks
    }

    fn line(d: &IrqData<'_>) -> Option<u8> {
        u8::try_from(d.hwirq().0)
            .ok()
            .filter(|l| *l <= 15 && *l != CASCADE_LINE)
    }

    fn set_mask(&self, d: &IrqData<'_>, masked: bool) {
        let Some(line) = Self::line(d) else { return };
        let mut st = self.state.lock();
        let bit = 1u16 << line;
        let new = if masked {
            st.masks | bit
        } else {
            st.masks & !bit
        };
        if new != st.masks {
            st.masks = new;
            let port = if line < 8 { MASTER_DATA } else { SLAVE_DATA };
            let byte = if line < 8 {
                new as u8
            } else {
                (new >> 8) as u8
            };
            st.pic.ports.outb(port, byte);
        }
    }
}

impl<P: PortIo> IrqChip for Pic8259Chip<P> {
    fn name(&self) -> &str {
        self.name
    }

    fn mask(&self, d: &IrqData<'_>) {
        self.set_mask(d, true);
    }

    fn unmask(&self, d: &IrqData<'_>) {
        self.set_mask(d, false);
    }

    fn ack(&self, d: &IrqData<'_>) {
        if let Some(line) = Self::line(d) {
            // Cannot fail: `line` is at most 15.
            let _ = self.state.lock().pic.specific_eoi(line);
        }
    }

    fn set_type(&self, _d: &IrqData<'_>, trigger: TriggerType) -> Result<(), ChipError> {
        // The pair is programmed edge triggered (ICW1); level mode would need
        // the chipset's ELCR, which this driver does not touch.
        match trigger {
            TriggerType::None | TriggerType::EdgeRising => Ok(()),
            _ => Err(ChipError::InvalidTrigger),
        }
    }

    fn read_trigger(&self, _d: &IrqData<'_>) -> TriggerType {
        TriggerType::EdgeRising
    }
}
