//! Accounting of interrupt sources: where each was handled and where it was
//! allowed to be ([`Source`]), and for devices the kernel itself raises,
//! raised against handled ([`Caused`]). The final checks compare "caused"
//! with "handled" and "handled on" with "allowed by affinity".

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use irqcore::{CpuId, CpuMask, IrqNumber};

use crate::irq::CORE;
use crate::{MAX_CPUS, check, kprintln};

/// Counts of one interrupt source, per CPU, with the CPUs it may arrive on.
pub struct Source {
    /// Name (as in the interrupt table).
    pub name: &'static str,
    irq: spin::Once<IrqNumber>,
    handled: [AtomicU64; MAX_CPUS],
    /// CPUs the source may arrive on (bit per CPU): its effective affinity,
    /// or the union of old and new while a move is in flight.
    pub allowed: AtomicU64,
    /// Arrivals on a CPU outside `allowed`.
    pub wrong_cpu: AtomicU64,
}

impl Source {
    /// A source named `name`, allowed on every CPU.
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            irq: spin::Once::new(),
            handled: [const { AtomicU64::new(0) }; MAX_CPUS],
            allowed: AtomicU64::new(u64::MAX),
            wrong_cpu: AtomicU64::new(0),
        }
    }

    /// Its irq, once set up.
    pub fn irq(&self) -> Option<IrqNumber> {
        self.irq.get().copied()
    }

    /// Records its irq (once, at set-up).
    pub fn set_irq(&self, irq: IrqNumber) {
        self.irq.call_once(|| irq);
    }

    /// Handled on `cpu`.
    pub fn on(&self, cpu: CpuId) -> u64 {
        self.handled
            .get(cpu.index())
            .map_or(0, |c| c.load(Ordering::Acquire))
    }

    /// Handled on every CPU.
    pub fn total(&self) -> u64 {
        self.handled.iter().map(|c| c.load(Ordering::Acquire)).sum()
    }

    /// Counts one arrival on `cpu` (the executing CPU, from the handler).
    pub fn record(&self, cpu: CpuId) {
        if let Some(c) = self.handled.get(cpu.index()) {
            c.fetch_add(1, Ordering::AcqRel);
        }
        let bit = 1u64.checked_shl(cpu.get()).unwrap_or(0);
        if self.allowed.load(Ordering::Acquire) & bit == 0 {
            self.wrong_cpu.fetch_add(1, Ordering::Relaxed);
            kprintln!(
                "{}: handled on cpu{} outside its affinity",
                self.name,
                cpu.get()
            );
        }
    }

    /// Its effective affinity, per irqcore.
    pub fn effective(&self) -> Option<CpuMask> {
        self.irq().and_then(|i| CORE.effective_affinity(i).ok())
    }

    /// Changes its affinity to `mask`, keeping `allowed` correct across the
    /// move: old | new while it is in flight ([`Source::settle`] narrows it
    /// once the move took effect).
    pub fn move_to(&self, mask: &CpuMask) -> Result<(), irqcore::IrqError> {
        let irq = self.irq().ok_or(irqcore::IrqError::InvalidArgument)?;
        self.allowed.fetch_or(mask_bits(mask), Ordering::AcqRel);
        CORE.set_affinity(irq, mask)
    }

    /// Narrows `allowed` to the effective affinity (after a move settled).
    pub fn settle(&self) {
        if let Some(eff) = self.effective() {
            self.allowed.store(mask_bits(&eff), Ordering::Release);
        }
    }

    /// The checks every source ends with: it fired, always on an allowed CPU.
    pub fn check(&self) {
        check!(
            self.total() > 0,
            "{}: handled {} times",
            self.name,
            self.total()
        );
        check!(
            self.wrong_cpu.load(Ordering::Relaxed) == 0,
            "{}: always handled on a CPU of its affinity",
            self.name
        );
    }
}

/// Bits of `mask` as used by [`Source::allowed`].
pub fn mask_bits(mask: &CpuMask) -> u64 {
    mask.words()[0]
}

/// A device the kernel raises interrupts from itself, one at a time, so
/// that every one raised must be handled exactly once.
pub struct Caused {
    /// Per-CPU accounting.
    pub src: Source,
    /// Interrupts raised.
    pub raised: AtomicU64,
    /// Interrupts the driver handled.
    pub handled: AtomicU64,
    /// Handler calls that found nothing to do (`IrqReturn::NONE`).
    pub unhandled: AtomicU64,
    /// Stops the generator (affinity changes wait for quiescence).
    pub paused: AtomicBool,
    in_flight: AtomicBool,
}

impl Caused {
    /// A paused device named `name`.
    pub const fn new(name: &'static str) -> Self {
        Self {
            src: Source::new(name),
            raised: AtomicU64::new(0),
            handled: AtomicU64::new(0),
            unhandled: AtomicU64::new(0),
            paused: AtomicBool::new(true),
            in_flight: AtomicBool::new(false),
        }
    }

    /// Claims the next raise: false if paused or the previous one is still
    /// in flight (nothing is ever re-raised: a lost interrupt leaves the
    /// device in flight for good, and "raised == handled" fails). On true
    /// the caller raises the device's interrupt.
    pub fn begin_raise(&self) -> bool {
        if self.paused.load(Ordering::Acquire)
            || self
                .in_flight
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return false;
        }
        self.raised.fetch_add(1, Ordering::AcqRel);
        true
    }

    /// The driver serviced the raised interrupt.
    pub fn done(&self) {
        self.handled.fetch_add(1, Ordering::AcqRel);
        self.in_flight.store(false, Ordering::Release);
    }

    /// The driver lost it (deliberately broken builds): the device may be
    /// raised again, and "raised == handled" fails.
    pub fn lost(&self) {
        self.in_flight.store(false, Ordering::Release);
    }

    /// Whether the last raise was serviced (or lost).
    pub fn idle(&self) -> bool {
        !self.in_flight.load(Ordering::Acquire)
    }

    /// Handled so far.
    pub fn handled(&self) -> u64 {
        self.handled.load(Ordering::Acquire)
    }

    /// The final checks of a caused device: every raise handled once, no
    /// spurious handler call, irqcore's counts agree.
    pub fn check(&self, nr_cpus: u32) {
        let name = self.src.name;
        let (r, h) = (self.raised.load(Ordering::Relaxed), self.handled());
        check!(r > 0 && r == h, "{name}: raised {r} == handled {h}");
        check!(
            self.unhandled.load(Ordering::Relaxed) == 0,
            "{name}: no spurious handler call"
        );
        if let Some(irq) = self.src.irq() {
            let counted: u64 = CpuId::all(nr_cpus as usize)
                .map(|c| CORE.irq_count(irq, c))
                .sum();
            check!(
                counted == h,
                "{name}: irqcore counted {counted} == handled {h}"
            );
        }
        self.src.check();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_raise_in_flight_at_a_time() {
        let d = Caused::new("dev");
        assert!(!d.begin_raise(), "starts paused");
        d.paused.store(false, Ordering::Release);
        assert!(d.begin_raise());
        assert!(
            !d.begin_raise(),
            "second raise while the first is in flight"
        );
        assert!(!d.idle());
        d.done();
        assert!(d.idle());
        assert!(d.begin_raise());
        d.lost();
        assert!(d.idle() && d.begin_raise(), "a lost raise frees the device");
        assert_eq!(d.raised.load(Ordering::Relaxed), 3);
        assert_eq!(d.handled(), 1, "lost raises are not handled");
    }

    #[test]
    fn arrivals_outside_allowed_are_counted() {
        let s = Source::new("src");
        s.allowed
            .store(mask_bits(&CpuMask::of(CpuId::of::<1>())), Ordering::Release);
        s.record(CpuId::of::<1>());
        assert_eq!(s.wrong_cpu.load(Ordering::Relaxed), 0);
        s.record(CpuId::of::<2>());
        s.record(CpuId::of::<{ MAX_CPUS as u32 }>()); // beyond the per-CPU slots: not counted per CPU
        assert_eq!(s.wrong_cpu.load(Ordering::Relaxed), 2);
        assert_eq!(
            (s.on(CpuId::of::<1>()), s.on(CpuId::of::<2>()), s.total()),
            (1, 1, 2)
        );
    }
}
