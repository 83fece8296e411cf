//! The 2-level ABI: pending and mask bitmaps in `shared_info`, a per-vCPU
//! selector and upcall flag in `vcpu_info`, and the guest's fair scan.
//!
//! Scan (reference 1.3): the guest clears `evtchn_upcall_pending` before it
//! scans (done by the caller), swaps the selector to zero, and for each
//! selected word handles the bits that are pending, not masked and bound to
//! this vCPU in a guest-private per-vCPU bitmap (the pending array is
//! shared by all vCPUs, so a word can hold other vCPUs' ports). A per-vCPU
//! cursor remembers the position just after the last handled port; the
//! next scan starts there, so a port that is raised again and again is
//! visited once per scan and every other pending port gets its turn.

use crate::abi::{BITS_PER_WORD, EVTCHN_2L_NR_CHANNELS, NR_WORDS, SharedPage, VcpuEvents};
use crate::error::XenError;
use crate::ids::{Port, VcpuId};
use crate::ops::EventChannelOps;
use crate::port_layer::{EvtchnAbi, PortLayer};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Where the next scan of one vCPU starts.
#[derive(Debug, Default)]
struct Cursor {
    word: AtomicU32,
    bit: AtomicU32,
}

/// The 2-level port layer.
///
/// It works on either architecture's `shared_info` layout ([`SharedPage`]):
/// it keeps only the two bitmaps and, per vCPU, the event fields of its
/// `vcpu_info` ([`VcpuEvents`]), wherever that lives.
pub struct TwoLevel {
    pending: &'static [AtomicU64; NR_WORDS],
    mask: &'static [AtomicU64; NR_WORDS],
    vcpu_info: Vec<&'static VcpuEvents>,
    /// Guest-private: bit set = port delivered to this vCPU
    /// (Linux's `cpu_evtchn_mask`).
    bound: Vec<[AtomicU64; NR_WORDS]>,
    cursors: Vec<Cursor>,
}

impl core::fmt::Debug for TwoLevel {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TwoLevel")
            .field("nr_vcpus", &self.vcpu_info.len())
            .finish()
    }
}

impl TwoLevel {
    /// The layer for `nr_vcpus` vCPUs whose `vcpu_info` is in `shared`
    /// (at most 32 on x86, 1 on arm). Returns `None` for more vCPUs: those
    /// need [`TwoLevel::with_vcpu_info`] after `VCPUOP_register_vcpu_info`.
    pub fn new(shared: impl Into<SharedPage>, nr_vcpus: u32) -> Option<Self> {
        let shared = shared.into();
        let infos = (0..nr_vcpus as usize)
            .map(|v| shared.legacy_vcpu(v))
            .collect::<Option<Vec<_>>>()?;
        Some(Self::with_vcpu_info(shared, infos))
    }

    /// The layer with explicit per-vCPU `vcpu_info` locations (vCPU `i` is
    /// `vcpu_info[i]`, the event fields of the record each vCPU registered
    /// with `VCPUOP_register_vcpu_info`, or of its legacy slot).
    pub fn with_vcpu_info(
        shared: impl Into<SharedPage>,
        vcpu_info: Vec<&'static VcpuEvents>,
    ) -> Self {
        let shared = shared.into();
        let n = vcpu_info.len();
        Self {
            pending: shared.pending(),
            mask: shared.mask(),
            vcpu_info,
            bound: (0..n)
                .map(|_| [const { AtomicU64::new(0) }; NR_WORDS])
                .collect(),
            cursors: (0..n).map(|_| Cursor::default()).collect(),
        }
    }

    fn word_bit(port: Port) -> Option<(usize, u64)> {
        (port.0 < EVTCHN_2L_NR_CHANNELS).then(|| (port.word(), 1u64 << port.bit()))
    }

    /// Pending, unmasked ports of word `w` bound to vCPU `v`.
    fn active_bits(&self, v: usize, w: usize) -> u64 {
        self.pending[w].load(Ordering::Acquire)
            & self.bound[v][w].load(Ordering::Relaxed)
            & !self.mask[w].load(Ordering::Acquire)
    }

    /// Handles the ports of word `w` selected by `range`, moving the cursor.
    fn scan_word(&self, v: usize, w: usize, range: u64, handle: &mut dyn FnMut(Port)) {
        let mut active = self.active_bits(v, w) & range;
        while active != 0 {
            let bit = active.trailing_zeros();
            active &= active - 1;
            handle(Port(w as u32 * BITS_PER_WORD + bit));
            // "Last handled + 1", wrapping past the last port to port 0.
            let next = (w as u32 * BITS_PER_WORD + bit + 1) % EVTCHN_2L_NR_CHANNELS;
            self.cursors[v]
                .word
                .store(next / BITS_PER_WORD, Ordering::Relaxed);
            self.cursors[v]
                .bit
                .store(next % BITS_PER_WORD, Ordering::Relaxed);
        }
    }
}

impl PortLayer for TwoLevel {
    fn abi(&self) -> EvtchnAbi {
        EvtchnAbi::TwoLevel
    }

    fn max_ports(&self) -> u32 {
        EVTCHN_2L_NR_CHANNELS
    }

    fn nr_vcpus(&self) -> u32 {
        self.vcpu_info.len() as u32
    }

    fn is_pending(&self, port: Port) -> bool {
        Self::word_bit(port).is_some_and(|(w, b)| self.pending[w].load(Ordering::SeqCst) & b != 0)
    }

    fn set_pending(&self, port: Port) {
        if let Some((w, b)) = Self::word_bit(port) {
            self.pending[w].fetch_or(b, Ordering::SeqCst);
        }
    }

    fn clear_pending(&self, port: Port) {
        if let Some((w, b)) = Self::word_bit(port) {
            self.pending[w].fetch_and(!b, Ordering::SeqCst);
        }
    }

    fn is_masked(&self, port: Port) -> bool {
        Self::word_bit(port).is_some_and(|(w, b)| self.mask[w].load(Ordering::SeqCst) & b != 0)
    }

    fn mask(&self, port: Port) {
        if let Some((w, b)) = Self::word_bit(port) {
            self.mask[w].fetch_or(b, Ordering::SeqCst);
        }
    }

    /// HVM/PVH rule (reference 1.4): a port bound elsewhere is unmasked by
    /// `EVTCHNOP_unmask` alone (Xen clears the mask and notifies the
    /// port's vCPU). A local port is unmasked in memory, then its pending
    /// bit is read; if it is pending, Xen did not notify (it saw the mask),
    /// and setting the flags locally would not make an HVM vCPU take an
    /// upcall, so the mask is set again and the hypercall does the unmask,
    /// which notifies only because the mask bit is set when it runs.
    fn unmask(&self, port: Port, local: bool, ops: &dyn EventChannelOps) -> Result<(), XenError> {
        let Some((w, b)) = Self::word_bit(port) else {
            return Err(XenError::Invalid);
        };
        if !local {
            return ops.unmask(port);
        }
        // SeqCst read-modify-writes order the clear before the pending read
        // (Xen sets pending, then reads the mask: one of the two sides sees
        // the other's write).
        self.mask[w].fetch_and(!b, Ordering::SeqCst);
        if self.pending[w].load(Ordering::SeqCst) & b != 0 {
            self.mask[w].fetch_or(b, Ordering::SeqCst);
            return ops.unmask(port);
        }
        Ok(())
    }

    fn bind_to_vcpu(&self, port: Port, old: Option<VcpuId>, vcpu: VcpuId) {
        let Some((w, b)) = Self::word_bit(port) else {
            return;
        };
        if let Some(o) = old.and_then(|o| self.bound.get(o.index())) {
            o[w].fetch_and(!b, Ordering::SeqCst);
        }
        if let Some(n) = self.bound.get(vcpu.index()) {
            n[w].fetch_or(b, Ordering::SeqCst);
        }
    }

    fn remove(&self, port: Port, vcpu: VcpuId) {
        let Some((w, b)) = Self::word_bit(port) else {
            return;
        };
        // Clear it on every vCPU: a reused port number must never look bound
        // to a vCPU it was bound to before (reference 1.3, 2021 fix).
        let _ = vcpu;
        for v in &self.bound {
            v[w].fetch_and(!b, Ordering::SeqCst);
        }
    }

    fn is_deliverable(&self, port: Port, vcpu: VcpuId) -> bool {
        match (Self::word_bit(port), vcpu.index() < self.bound.len()) {
            (Some((w, b)), true) => self.active_bits(vcpu.index(), w) & b != 0,
            _ => false,
        }
    }

    fn clear_upcall_pending(&self, vcpu: VcpuId) {
        if let Some(vi) = self.vcpu_info.get(vcpu.index()) {
            vi.evtchn_upcall_pending.store(0, Ordering::SeqCst);
        }
    }

    fn upcall_pending(&self, vcpu: VcpuId) -> bool {
        self.vcpu_info
            .get(vcpu.index())
            .is_some_and(|vi| vi.evtchn_upcall_pending.load(Ordering::SeqCst) != 0)
    }

    fn scan(&self, vcpu: VcpuId, handle: &mut dyn FnMut(Port)) {
        let v = vcpu.index();
        let Some(vi) = self.vcpu_info.get(v) else {
            return;
        };
        let selected = vi.evtchn_pending_sel.swap(0, Ordering::SeqCst);
        if selected == 0 {
            return;
        }
        let start_word = self.cursors[v].word.load(Ordering::Relaxed) as usize % NR_WORDS;
        let start_bit = self.cursors[v].bit.load(Ordering::Relaxed) % BITS_PER_WORD;
        let from_start_bit = u64::MAX << start_bit;
        // Selected words in cyclic order from the cursor's word: bit i of
        // `order` is word (start_word + i) % 64.
        let mut order = selected.rotate_right(start_word as u32);
        while order != 0 {
            let i = order.trailing_zeros() as usize;
            order &= order - 1;
            let w = (start_word + i) % NR_WORDS;
            let range = if i == 0 { from_start_bit } else { u64::MAX };
            self.scan_word(v, w, range, handle);
        }
        // The start word's ports before the cursor come last.
        if selected & (1 << start_word) != 0 && start_bit != 0 {
            self.scan_word(v, start_word, !from_start_bit, handle);
        }
    }
}
