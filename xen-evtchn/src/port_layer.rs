//! The port-operations layer: how pending and mask state of a port is read
//! and written, and how one vCPU finds its pending ports.
//!
//! Two implementations: the 2-level ABI ([`crate::two_level::TwoLevel`],
//! bitmaps in `shared_info`, 4096 ports) and the FIFO ABI
//! ([`crate::fifo::Fifo`], per-vCPU priority queues, 131072 ports). The
//! channel bookkeeping and the chips do not know which one runs;
//! [`select`] picks one at boot.

use crate::abi::{SharedPage, VcpuEvents};
use crate::error::{EvtchnError, XenError};
use crate::fifo::Fifo;
use crate::ids::{Port, VcpuId};
use crate::ops::EventChannelOps;
use crate::two_level::TwoLevel;
use alloc::boxed::Box;
use alloc::vec::Vec;

/// The event-channel ABI a [`PortLayer`] implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EvtchnAbi {
    /// The 2-level ABI: 4096 ports (64-bit guest), no priorities.
    TwoLevel,
    /// The FIFO ABI: 131072 ports, 16 priorities, per-vCPU queues.
    Fifo,
}

impl EvtchnAbi {
    /// A short name for logs: `"2-level"` or `"FIFO"`.
    pub const fn name(self) -> &'static str {
        match self {
            EvtchnAbi::TwoLevel => "2-level",
            EvtchnAbi::Fifo => "FIFO",
        }
    }
}

/// Which ABI [`select`] should use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AbiChoice {
    /// FIFO when Xen offers it, else 2-level (what Linux does).
    #[default]
    Auto,
    /// FIFO or an error.
    Fifo,
    /// 2-level, even when Xen offers FIFO.
    TwoLevel,
}

/// The layer [`select`] built, and why.
pub struct Selected {
    /// The port layer, ready for [`crate::EventChannels::new`].
    pub layer: Box<dyn PortLayer>,
    /// Its ABI.
    pub abi: EvtchnAbi,
    /// What Xen said to `EVTCHNOP_init_control` when [`AbiChoice::Auto`]
    /// fell back to 2-level (`None` otherwise).
    pub fifo_refused: Option<XenError>,
}

impl core::fmt::Debug for Selected {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Selected")
            .field("abi", &self.abi)
            .field("fifo_refused", &self.fifo_refused)
            .finish()
    }
}

/// Picks the event-channel ABI at boot, before any port is bound.
///
/// FIFO is tried by registering `boot_vcpu`'s control block
/// (`EVTCHNOP_init_control`, which switches the domain to FIFO); the
/// other vCPUs register theirs in their hotplug prepare step
/// ([`PortLayer::prepare_vcpu`]). Under [`AbiChoice::Auto`] a refusal
/// (`-ENOSYS` from a Xen without FIFO, or any other error) falls back to
/// 2-level and is reported in [`Selected::fifo_refused`]; under
/// [`AbiChoice::Fifo`] it is the error. `vcpu_info[i]` is vCPU `i`'s
/// event fields (both ABIs use its upcall flag).
pub fn select(
    choice: AbiChoice,
    ops: &dyn EventChannelOps,
    shared: impl Into<SharedPage>,
    vcpu_info: Vec<&'static VcpuEvents>,
    boot_vcpu: VcpuId,
) -> Result<Selected, EvtchnError> {
    let shared = shared.into();
    let two_level = |vcpu_info, fifo_refused| Selected {
        layer: Box::new(TwoLevel::with_vcpu_info(shared, vcpu_info)),
        abi: EvtchnAbi::TwoLevel,
        fifo_refused,
    };
    if choice == AbiChoice::TwoLevel {
        return Ok(two_level(vcpu_info, None));
    }
    let fifo = Fifo::new(vcpu_info.clone())?;
    match fifo.prepare_vcpu(boot_vcpu, ops) {
        Ok(()) => Ok(Selected {
            layer: Box::new(fifo),
            abi: EvtchnAbi::Fifo,
            fifo_refused: None,
        }),
        Err(e) if choice == AbiChoice::Auto => Ok(two_level(vcpu_info, Some(e))),
        Err(e) => Err(e.into()),
    }
}

/// Pending/mask state and the upcall scan of one event-channel ABI.
///
/// Every method takes ports below [`PortLayer::max_ports`] and vCPUs below
/// the layer's vCPU count; out-of-range arguments are ignored (queries
/// return `false`), never a panic.
pub trait PortLayer: Send + Sync {
    /// The ABI this layer implements.
    fn abi(&self) -> EvtchnAbi;
    /// Number of ports the ABI offers (4096 for 2-level, 64-bit; 131072
    /// for FIFO, whose event array grows on demand: see
    /// [`PortLayer::setup_port`]).
    fn max_ports(&self) -> u32;
    /// Number of vCPUs the layer has state for.
    fn nr_vcpus(&self) -> u32;
    /// Whether the port's pending bit is set.
    fn is_pending(&self, port: Port) -> bool;
    /// Sets the pending bit (guest-side retrigger; does not notify).
    fn set_pending(&self, port: Port);
    /// Clears the pending bit (the "ack" of an event).
    fn clear_pending(&self, port: Port);
    /// Whether the port's mask bit is set.
    fn is_masked(&self, port: Port) -> bool;
    /// Sets the mask bit.
    fn mask(&self, port: Port);
    /// The unmask protocol: clears the mask and makes sure an event that is
    /// already pending is notified. `local` says whether the port is bound
    /// to the calling vCPU.
    fn unmask(&self, port: Port, local: bool, ops: &dyn EventChannelOps) -> Result<(), XenError>;
    /// Records that `port` is now delivered to `vcpu` (guest-private
    /// filter), removing it from `old` if given.
    fn bind_to_vcpu(&self, port: Port, old: Option<VcpuId>, vcpu: VcpuId);
    /// Forgets `port` (closed): no vCPU handles it any more.
    fn remove(&self, port: Port, vcpu: VcpuId);
    /// Whether `port` is pending, unmasked and bound to `vcpu`.
    fn is_deliverable(&self, port: Port, vcpu: VcpuId) -> bool;
    /// Clears the vCPU's "upcall pending" flag (first step of an upcall).
    fn clear_upcall_pending(&self, vcpu: VcpuId);
    /// Whether the vCPU's "upcall pending" flag is set again.
    fn upcall_pending(&self, vcpu: VcpuId) -> bool;
    /// One scan for `vcpu`: takes the vCPU's notification state and calls
    /// `handle` for each pending, unmasked port bound to it, fairly (a
    /// port that is always pending cannot starve others).
    fn scan(&self, vcpu: VcpuId, handle: &mut dyn FnMut(Port));
    /// Makes `port` (just handed out by Xen) usable: FIFO adds event-array
    /// pages until the port's page exists (this allocates, so it is called
    /// outside every lock the upcall or irqcore takes). New ports are
    /// masked. The default accepts ports below [`PortLayer::max_ports`].
    fn setup_port(&self, port: Port, ops: &dyn EventChannelOps) -> Result<(), EvtchnError> {
        let _ = ops;
        if port.0 < self.max_ports() {
            Ok(())
        } else {
            Err(EvtchnError::PortOutOfRange(port))
        }
    }
    /// CPU bring-up (prepare step, before anything is bound to `vcpu`):
    /// FIFO registers the vCPU's control block (once; Xen keeps it across
    /// offline/online). The default has nothing to do.
    fn prepare_vcpu(&self, vcpu: VcpuId, ops: &dyn EventChannelOps) -> Result<(), XenError> {
        let _ = (vcpu, ops);
        Ok(())
    }
    /// CPU tear-down (dead step: `vcpu` no longer runs and its movable
    /// channels were moved): FIFO drains the vCPU's queues so no event
    /// stays linked where nobody consumes it, and re-raises the pending,
    /// unmasked ones on their current vCPU. The default does nothing.
    fn vcpu_dead(&self, vcpu: VcpuId, ops: &dyn EventChannelOps) {
        let _ = (vcpu, ops);
    }
}
