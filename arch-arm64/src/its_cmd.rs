//! ITS commands: typed builders for the 32-byte queue entries, and their
//! decoding (used by the model, and by tests that read the queue).
//!
//! Encodings from IHI 0069H 5.3 ("ITS commands"): four little-endian
//! doublewords; DW0 bits 7:0 the command number and, where there is one,
//! bits 63:32 the DeviceID; DW1 bits 31:0 the EventID; DW2 the collection
//! (ICID, bits 15:0), the target redistributor (`RDbase`, bits 51:16) or
//! the ITT address (bits 51:8); bit 63 of DW2 `V`, valid, for the mapping
//! commands.

/// A device's identifier at the ITS (for PCI: its requester ID, mapped by
/// the device tree's `msi-map`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceId(pub u32);

/// One of a device's interrupt messages: what the device writes to
/// `GITS_TRANSLATER`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId(pub u32);

/// An interrupt collection: the unit an ITS routes by (this driver keeps
/// one per CPU, ICID = the CPU's index).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CollectionId(pub u16);

/// Where a collection's interrupts go: `GITS_TYPER.PTA` = 0, the
/// redistributor's processor number; = 1, its physical address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RdBase(pub u64);

impl RdBase {
    /// The `RDbase` field (bits 51:16 of the doubleword it goes in): the
    /// processor number shifted there, or the 64 KiB aligned address.
    fn field(self, pta: bool) -> u64 {
        if pta {
            self.0 & 0x000f_ffff_ffff_0000
        } else {
            (self.0 << 16) & 0x000f_ffff_ffff_0000
        }
    }

    fn from_field(dw: u64, pta: bool) -> Self {
        let f = dw & 0x000f_ffff_ffff_0000;
        RdBase(if pta { f } else { f >> 16 })
    }
}

/// Command numbers (IHI 0069H Table 5-4).
pub mod opcode {
    /// `MOVI`: move an event to another collection.
    pub const MOVI: u8 = 0x01;
    /// `INT`: make an event's LPI pending (as if the device wrote it).
    pub const INT: u8 = 0x03;
    /// `CLEAR`: clear an event's pending LPI.
    pub const CLEAR: u8 = 0x04;
    /// `SYNC`: wait until earlier commands' effects reached a redistributor.
    pub const SYNC: u8 = 0x05;
    /// `MAPD`: map a device to its ITT (or unmap it).
    pub const MAPD: u8 = 0x08;
    /// `MAPC`: map a collection to a redistributor (or unmap it).
    pub const MAPC: u8 = 0x09;
    /// `MAPTI`: map an event to an LPI and a collection.
    pub const MAPTI: u8 = 0x0A;
    /// `MAPI`: `MAPTI` with the LPI equal to the EventID.
    pub const MAPI: u8 = 0x0B;
    /// `INV`: re-read an event's LPI configuration.
    pub const INV: u8 = 0x0C;
    /// `INVALL`: re-read the configuration of a collection's LPIs.
    pub const INVALL: u8 = 0x0D;
    /// `MOVALL`: move every LPI of one redistributor to another.
    pub const MOVALL: u8 = 0x0E;
    /// `DISCARD`: unmap an event and clear its pending LPI.
    pub const DISCARD: u8 = 0x0F;
}

/// One command, as it goes into the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ItsCommand {
    words: [u64; 4],
}

/// A decoded command (what an ITS reads from its queue).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// `MAPD`.
    Mapd {
        /// Device.
        device: DeviceId,
        /// Physical address of its ITT (256-byte aligned).
        itt: u64,
        /// EventID bits the ITT covers (the `Size` field plus one).
        event_bits: u8,
        /// Map (true) or unmap.
        valid: bool,
    },
    /// `MAPC`.
    Mapc {
        /// Collection.
        icid: CollectionId,
        /// Target redistributor.
        rd: RdBase,
        /// Map (true) or unmap.
        valid: bool,
    },
    /// `MAPTI` (and `MAPI`, with `lpi` = the EventID).
    Mapti {
        /// Device.
        device: DeviceId,
        /// Event.
        event: EventId,
        /// Physical LPI INTID.
        lpi: u32,
        /// Collection.
        icid: CollectionId,
    },
    /// `MOVI`.
    Movi {
        /// Device.
        device: DeviceId,
        /// Event.
        event: EventId,
        /// New collection.
        icid: CollectionId,
    },
    /// `DISCARD`.
    Discard {
        /// Device.
        device: DeviceId,
        /// Event.
        event: EventId,
    },
    /// `INV`.
    Inv {
        /// Device.
        device: DeviceId,
        /// Event.
        event: EventId,
    },
    /// `INT`.
    Int {
        /// Device.
        device: DeviceId,
        /// Event.
        event: EventId,
    },
    /// `CLEAR`.
    Clear {
        /// Device.
        device: DeviceId,
        /// Event.
        event: EventId,
    },
    /// `SYNC`.
    Sync {
        /// Redistributor.
        rd: RdBase,
    },
    /// `INVALL`.
    Invall {
        /// Collection.
        icid: CollectionId,
    },
    /// `MOVALL`.
    Movall {
        /// From.
        from: RdBase,
        /// To.
        to: RdBase,
    },
    /// A command number this crate does not know (or a GICv4 one).
    Unknown(u8),
}

const V: u64 = 1 << 63;

impl ItsCommand {
    /// Size of one command in the queue.
    pub const SIZE: usize = 32;

    /// The byte offset of doubleword `i` (0..4) of a command inside its
    /// 32-byte queue slot (IHI 0069H 5.3: four little-endian doublewords).
    pub const fn word_offset(i: usize) -> usize {
        i * core::mem::size_of::<u64>()
    }

    fn dev_event(op: u8, device: DeviceId, event: EventId) -> Self {
        Self {
            words: [
                u64::from(op) | (u64::from(device.0) << 32),
                u64::from(event.0),
                0,
                0,
            ],
        }
    }

    /// `MAPD`: `device` uses the ITT at `itt` (256-byte aligned) for
    /// EventIDs below 2^`event_bits` (1..=32), or is unmapped (`valid` false).
    pub fn mapd(device: DeviceId, itt: u64, event_bits: u8, valid: bool) -> Self {
        Self {
            words: [
                u64::from(opcode::MAPD) | (u64::from(device.0) << 32),
                u64::from(event_bits.clamp(1, 32) - 1) & 0x1f,
                (itt & 0x000f_ffff_ffff_ff00) | if valid { V } else { 0 },
                0,
            ],
        }
    }

    /// `MAPC`: collection `icid` targets `rd` (`pta` as in `GITS_TYPER`).
    pub fn mapc(icid: CollectionId, rd: RdBase, pta: bool, valid: bool) -> Self {
        Self {
            words: [
                u64::from(opcode::MAPC),
                0,
                u64::from(icid.0) | rd.field(pta) | if valid { V } else { 0 },
                0,
            ],
        }
    }

    /// `MAPTI`: `device`'s `event` raises LPI INTID `lpi` in collection `icid`.
    pub fn mapti(device: DeviceId, event: EventId, lpi: u32, icid: CollectionId) -> Self {
        let mut c = Self::dev_event(opcode::MAPTI, device, event);
        c.words[1] |= u64::from(lpi) << 32;
        c.words[2] = u64::from(icid.0);
        c
    }

    /// `MOVI`: `device`'s `event` moves to collection `icid`.
    pub fn movi(device: DeviceId, event: EventId, icid: CollectionId) -> Self {
        let mut c = Self::dev_event(opcode::MOVI, device, event);
        c.words[2] = u64::from(icid.0);
        c
    }

    /// `DISCARD`: `device`'s `event` is unmapped, its pending LPI cleared.
    pub fn discard(device: DeviceId, event: EventId) -> Self {
        Self::dev_event(opcode::DISCARD, device, event)
    }

    /// `INV`: the redistributor re-reads the configuration of the LPI
    /// `device`'s `event` maps to.
    pub fn inv(device: DeviceId, event: EventId) -> Self {
        Self::dev_event(opcode::INV, device, event)
    }

    /// `INT`: `device`'s `event` is made pending as if the device wrote it.
    pub fn int(device: DeviceId, event: EventId) -> Self {
        Self::dev_event(opcode::INT, device, event)
    }

    /// `CLEAR`: `device`'s `event`'s pending LPI is cleared.
    pub fn clear(device: DeviceId, event: EventId) -> Self {
        Self::dev_event(opcode::CLEAR, device, event)
    }

    /// `SYNC`: completes once every earlier command's effect on `rd` is
    /// visible.
    pub fn sync(rd: RdBase, pta: bool) -> Self {
        Self {
            words: [u64::from(opcode::SYNC), 0, rd.field(pta), 0],
        }
    }

    /// `INVALL`: the configuration of every LPI in `icid` is re-read.
    pub fn invall(icid: CollectionId) -> Self {
        Self {
            words: [u64::from(opcode::INVALL), 0, u64::from(icid.0), 0],
        }
    }

    /// The four doublewords.
    pub fn words(&self) -> [u64; 4] {
        self.words
    }

    /// The command number.
    pub fn opcode(&self) -> u8 {
        self.words[0] as u8
    }

    /// Decodes four doublewords read from a queue (`pta` as in `GITS_TYPER`).
    pub fn decode(words: [u64; 4], pta: bool) -> Decoded {
        let device = DeviceId((words[0] >> 32) as u32);
        let event = EventId(words[1] as u32);
        let icid = CollectionId(words[2] as u16);
        match words[0] as u8 {
            opcode::MAPD => Decoded::Mapd {
                device,
                itt: words[2] & 0x000f_ffff_ffff_ff00,
                event_bits: (words[1] & 0x1f) as u8 + 1,
                valid: words[2] & V != 0,
            },
            opcode::MAPC => Decoded::Mapc {
                icid,
                rd: RdBase::from_field(words[2], pta),
                valid: words[2] & V != 0,
            },
            opcode::MAPTI => Decoded::Mapti {
                device,
                event,
                lpi: (words[1] >> 32) as u32,
                icid,
            },
            opcode::MAPI => Decoded::Mapti {
                device,
                event,
                lpi: event.0,
                icid,
            },
            opcode::MOVI => Decoded::Movi {
                device,
                event,
                icid,
            },
            opcode::DISCARD => Decoded::Discard { device, event },
            opcode::INV => Decoded::Inv { device, event },
            opcode::INT => Decoded::Int { device, event },
            opcode::CLEAR => Decoded::Clear { device, event },
            opcode::SYNC => Decoded::Sync {
                rd: RdBase::from_field(words[2], pta),
            },
            opcode::INVALL => Decoded::Invall { icid },
            opcode::MOVALL => Decoded::Movall {
                from: RdBase::from_field(words[2], pta),
                to: RdBase::from_field(words[3], pta),
            },
            other => Decoded::Unknown(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_round_trip_through_decode() {
        let d = DeviceId(0x10);
        let e = EventId(3);
        let cases = [
            (
                ItsCommand::mapd(d, 0x4012_3400, 5, true),
                Decoded::Mapd {
                    device: d,
                    itt: 0x4012_3400,
                    event_bits: 5,
                    valid: true,
                },
            ),
            (
                ItsCommand::mapc(CollectionId(2), RdBase(7), false, true),
                Decoded::Mapc {
                    icid: CollectionId(2),
                    rd: RdBase(7),
                    valid: true,
                },
            ),
            (
                ItsCommand::mapti(d, e, 8200, CollectionId(1)),
                Decoded::Mapti {
                    device: d,
                    event: e,
                    lpi: 8200,
                    icid: CollectionId(1),
                },
            ),
            (
                ItsCommand::movi(d, e, CollectionId(3)),
                Decoded::Movi {
                    device: d,
                    event: e,
                    icid: CollectionId(3),
                },
            ),
            (
                ItsCommand::discard(d, e),
                Decoded::Discard {
                    device: d,
                    event: e,
                },
            ),
            (
                ItsCommand::sync(RdBase(3), false),
                Decoded::Sync { rd: RdBase(3) },
            ),
            (
                ItsCommand::invall(CollectionId(9)),
                Decoded::Invall {
                    icid: CollectionId(9),
                },
            ),
        ];
        for (cmd, want) in cases {
            assert_eq!(ItsCommand::decode(cmd.words(), false), want);
        }
        // Spec layout spot checks (IHI 0069H 5.3): MAPTI's pINTID in DW1
        // 63:32, SYNC's RDbase in DW2 51:16, MAPD's V in DW2 bit 63.
        assert_eq!(
            ItsCommand::mapti(d, e, 8200, CollectionId(1)).words()[1],
            (8200 << 32) | 3
        );
        assert_eq!(ItsCommand::sync(RdBase(3), false).words()[2], 3 << 16);
        assert_eq!(
            ItsCommand::mapd(d, 0x1000, 1, true).words()[2] >> 63,
            1,
            "V bit"
        );
    }
}
