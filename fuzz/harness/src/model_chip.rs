//! A behavioural interrupt controller for the harnesses: per-line mask and
//! target state, a switchable "busy" answer to affinity changes, optional
//! hardware retrigger (queued for the harness to deliver) and optional real
//! `disable`.

use irqcore::{AffinitySet, ChipError, ChipFlags, CpuId, CpuMask, IrqChip, IrqData, IrqNumber};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// The hardware state of one line (by hwirq).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Line {
    /// Masked at the controller (mask, mask_ack, disable, shutdown).
    pub masked: bool,
    /// The CPU the controller delivers to.
    pub target: Option<CpuId>,
    /// Between `startup` and `shutdown`. Only a started line can have a
    /// move in flight (shutdown completes it), so only started lines answer
    /// `Busy`.
    pub started: bool,
}

/// The model controller.
pub struct ModelChip {
    name: &'static str,
    has_disable: bool,
    can_retrigger: bool,
    flags: ChipFlags,
    busy: AtomicBool,
    lines: Mutex<BTreeMap<u64, Line>>,
    retriggered: Mutex<Vec<IrqNumber>>,
}

impl ModelChip {
    /// A chip named `name`; `has_disable` gives it a real disable (the core
    /// then masks at once instead of lazily); `can_retrigger` makes replays
    /// go through hardware instead of the platform's software resend.
    pub fn new(
        name: &'static str,
        has_disable: bool,
        can_retrigger: bool,
        flags: ChipFlags,
    ) -> Self {
        Self {
            name,
            has_disable,
            can_retrigger,
            flags,
            busy: AtomicBool::new(false),
            lines: Mutex::new(BTreeMap::new()),
            retriggered: Mutex::new(Vec::new()),
        }
    }

    /// Makes `set_affinity` answer `Busy` (a previous move not cleaned up).
    pub fn set_busy(&self, busy: bool) {
        self.busy.store(busy, Ordering::SeqCst);
    }

    /// Whether `set_affinity` answers `Busy` for line `hwirq` now.
    pub fn is_busy(&self, hwirq: u64) -> bool {
        self.busy.load(Ordering::SeqCst) && self.line(hwirq).started
    }

    /// The state of line `hwirq`.
    pub fn line(&self, hwirq: u64) -> Line {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&hwirq)
            .copied()
            .unwrap_or_default()
    }

    /// Takes the irqs re-raised by `retrigger`.
    pub fn take_retriggered(&self) -> Vec<IrqNumber> {
        std::mem::take(&mut *self.retriggered.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn with_line(&self, d: &IrqData<'_>, f: impl FnOnce(&mut Line)) {
        let mut l = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        f(l.entry(d.hwirq().0).or_default());
    }
}

impl IrqChip for ModelChip {
    fn name(&self) -> &str {
        self.name
    }
    fn flags(&self) -> ChipFlags {
        self.flags
    }
    fn mask(&self, d: &IrqData<'_>) {
        self.with_line(d, |l| l.masked = true);
    }
    fn unmask(&self, d: &IrqData<'_>) {
        self.with_line(d, |l| l.masked = false);
    }
    fn startup(&self, d: &IrqData<'_>) {
        self.with_line(d, |l| l.started = true);
        self.enable(d);
    }
    fn shutdown(&self, d: &IrqData<'_>) {
        self.with_line(d, |l| l.started = false);
        if !self.disable(d) {
            self.mask(d);
        }
    }
    fn disable(&self, d: &IrqData<'_>) -> bool {
        if self.has_disable {
            self.with_line(d, |l| l.masked = true);
        }
        self.has_disable
    }
    fn retrigger(&self, d: &IrqData<'_>) -> bool {
        if self.can_retrigger {
            self.retriggered
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(d.irq());
        }
        self.can_retrigger
    }
    fn set_affinity(
        &self,
        d: &IrqData<'_>,
        mask: &CpuMask,
        force: bool,
    ) -> Result<AffinitySet, ChipError> {
        // A forced move (CPU going down) completes the previous one first,
        // as x86's irq_force_complete_move does: never busy.
        if !force && self.is_busy(d.hwirq().0) {
            return Err(ChipError::Busy);
        }
        let first = mask.first().ok_or(ChipError::Invalid)?;
        self.with_line(d, |l| l.target = Some(first));
        Ok(AffinitySet::Applied {
            effective: CpuMask::of(first),
        })
    }
}
