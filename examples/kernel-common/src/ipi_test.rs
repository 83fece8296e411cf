//! Cross-call test traffic: calls sent to and handled on each CPU through
//! [`smp::call_on`] (the [`Ipi::CallFunction`](crate::Ipi::CallFunction)
//! IPI), so the checks can see that every one ran once, on its target.

use core::sync::atomic::{AtomicU64, Ordering};

use irqcore::CpuId;

use crate::arch::current_cpu;
use crate::irq::CORE;
use crate::smp::{self, CrossCall};
use crate::{MAX_CPUS, check};

/// The test traffic's counters.
pub struct IpiStats {
    /// Calls queued per target CPU.
    pub sent: [AtomicU64; MAX_CPUS],
    /// Calls run per target CPU.
    pub handled: [AtomicU64; MAX_CPUS],
    /// Calls run on a CPU other than their target.
    pub wrong_cpu: AtomicU64,
}

/// The test traffic's counters.
pub static IPI: IpiStats = IpiStats {
    sent: [const { AtomicU64::new(0) }; MAX_CPUS],
    handled: [const { AtomicU64::new(0) }; MAX_CPUS],
    wrong_cpu: AtomicU64::new(0),
};

/// Calls queued and not finished yet, all CPUs together. One counter, not
/// a scan of `sent`/`handled`: a scan in CPU order can miss a token that
/// wraps from the last CPU to the first behind it.
static IN_FLIGHT: AtomicU64 = AtomicU64::new(0);

/// A test cross-call: `arg` holds the target CPU (low 32 bits) and how many
/// more hops to pass it on (high 32 bits). Forwarding happens before the
/// call finishes, so [`done`] cannot see a quiet moment while a ring is
/// still travelling.
fn handler(arg: u64) {
    let me = current_cpu();
    let target = arg & 0xffff_ffff;
    let hops = (arg >> 32) as u32;
    if hops > 0 {
        let online = CORE.online_cpus();
        let next = online
            .iter()
            .find(|c| c.get() > me.get())
            .or_else(|| online.first())
            .unwrap_or(me);
        let _ = send(next, hops - 1);
    }
    if u64::from(me.get()) != target {
        IPI.wrong_cpu.fetch_add(1, Ordering::Relaxed);
    }
    if let Some(h) = IPI.handled.get(target as usize) {
        h.fetch_add(1, Ordering::AcqRel);
    }
    IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
}

/// Queues a test call for `cpu` (which passes it on `hops` times); false
/// if nothing was queued (queue full, or `cpu` offline).
pub fn send(cpu: CpuId, hops: u32) -> bool {
    let Some(sent) = IPI.sent.get(cpu.index()) else {
        return false;
    };
    sent.fetch_add(1, Ordering::AcqRel);
    IN_FLIGHT.fetch_add(1, Ordering::AcqRel);
    let call = CrossCall {
        func: handler,
        arg: u64::from(cpu.get()) | (u64::from(hops) << 32),
    };
    let ok = smp::call_on(cpu, call);
    if !ok {
        IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
        sent.fetch_sub(1, Ordering::AcqRel);
    }
    ok
}

/// Whether every call sent so far has run.
pub fn done() -> bool {
    IN_FLIGHT.load(Ordering::Acquire) == 0
}

/// Calls sent to and handled on `cpu`.
pub fn counts(cpu: CpuId) -> (u64, u64) {
    let i = cpu.index() % MAX_CPUS;
    (
        IPI.sent[i].load(Ordering::Acquire),
        IPI.handled[i].load(Ordering::Acquire),
    )
}

/// The final checks: on each of the first `nr_cpus` CPUs every call sent
/// ran, and each ran on its target.
pub fn check_all(nr_cpus: u32) {
    for c in CpuId::all(nr_cpus as usize) {
        let (s, h) = counts(c);
        check!(s > 0 && s == h, "cpu{c}: IPIs sent {s} == handled {h}");
    }
    check!(
        IPI.wrong_cpu.load(Ordering::Relaxed) == 0,
        "every IPI handled on its target CPU"
    );
}
