//! A behavioural model of a GICv2m MSI frame (feature `model`): `MSI_TYPER`
//! and `MSI_IIDR` through [`Mmio`], and a device's write to
//! `MSI_SETSPI_NS` ([`V2mModel::msi_write`]) pulsing the SPI at a
//! [`GicModel`]'s distributor, as QEMU's `arm_gicv2m` does. A pulse only
//! latches an SPI configured edge-triggered: a driver that leaves the SPI
//! level loses the message, in the model as on QEMU.

use crate::model::GicModel;
use crate::regs::{Mmio, v2m};
use irqcore::CpuId;
use std::sync::Arc;

/// Why a write to the frame raised nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum V2mWriteError {
    /// Not `MSI_SETSPI_NS`.
    WrongAddress(u64),
    /// The data is not an SPI of the frame's range.
    NotInFrame(u32),
}

/// The model.
#[derive(Debug)]
pub struct V2mModel {
    gic: Arc<GicModel>,
    phys: u64,
    first: u32,
    count: u32,
}

impl V2mModel {
    /// A frame at physical `phys` owning SPIs `first..first + count`
    /// (QEMU `virt`: 0x0802_0000, 64 SPIs from INTID 80).
    pub fn new(gic: Arc<GicModel>, phys: u64, first: u32, count: u32) -> Arc<Self> {
        Arc::new(Self {
            gic,
            phys,
            first,
            count,
        })
    }

    /// The frame as [`Mmio`].
    pub fn mmio(self: &Arc<Self>) -> V2mModelMmio {
        V2mModelMmio {
            model: self.clone(),
        }
    }

    /// A device writes `data` to physical `addr`.
    pub fn msi_write(&self, addr: u64, data: u32) -> Result<u32, V2mWriteError> {
        if addr != self.phys + v2m::MSI_SETSPI_NS as u64 {
            return Err(V2mWriteError::WrongAddress(addr));
        }
        if !(self.first..self.first + self.count).contains(&data) {
            return Err(V2mWriteError::NotInFrame(data));
        }
        self.gic.pulse(CpuId::BOOT, data);
        Ok(data)
    }
}

/// The frame's registers.
#[derive(Clone, Debug)]
pub struct V2mModelMmio {
    model: Arc<V2mModel>,
}

impl Mmio for V2mModelMmio {
    fn size(&self) -> usize {
        v2m::FRAME_SIZE
    }

    fn read32(&self, offset: usize) -> u32 {
        match offset {
            v2m::MSI_TYPER => (self.model.first << v2m::TYPER_BASE_SHIFT) | self.model.count,
            // Arm as implementer, product 'M' (what QEMU reports).
            v2m::MSI_IIDR => 0x53 << 20 | 0x43b,
            _ => 0,
        }
    }

    fn write32(&self, offset: usize, value: u32) {
        if offset == v2m::MSI_SETSPI_NS {
            let _ = self.model.msi_write(self.model.phys + offset as u64, value);
        }
    }
}
