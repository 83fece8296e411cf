//! The simulated multi-CPU platform itself: delivery, local interrupt flags,
//! cross-calls, process context on a CPU, run_on_cpus, and clean shutdown.

use irqcore::sim::{CallPath, SimError, SimMachine};
use irqcore::{ActionId, CpuId, CpuMask, IrqEvent, IrqNumber, Platform};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

fn spin_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::yield_now();
    }
}

const IRQ: IrqNumber = IrqNumber(33);

#[test]
fn raised_interrupt_reaches_the_hook_on_its_cpu_with_interrupts_off() {
    let m = SimMachine::new(3);
    type Seen = (CpuId, IrqNumber, Option<CpuId>, bool);
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let (s, p) = (seen.clone(), m.platform());
    m.set_irq_entry_hook(Some(Arc::new(move |cpu, irq| {
        s.lock()
            .unwrap()
            .push((cpu, irq, p.try_current_cpu(), p.local_irq_enabled()));
    })));
    m.raise(CpuId::of::<2>(), IRQ).unwrap();
    spin_until("delivery", || !seen.lock().unwrap().is_empty());
    assert_eq!(
        *seen.lock().unwrap(),
        [(CpuId::of::<2>(), IRQ, Some(CpuId::of::<2>()), false)]
    );
    assert_eq!(m.delivered(CpuId::of::<2>()), 1);
    // Off inside the handler (checked above), back on after it returns.
    spin_until("interrupts restored after the handler", || {
        m.irqs_enabled(CpuId::of::<2>()) == Ok(true)
    });
    assert_eq!(
        m.raise(CpuId::of::<3>(), IRQ),
        Err(SimError::NoSuchCpu(CpuId::of::<3>()))
    );
}

#[test]
fn no_delivery_while_disabled_then_delivery_on_restore() {
    let m = SimMachine::new(2);
    let n = Arc::new(AtomicUsize::new(0));
    let nn = n.clone();
    m.set_irq_entry_hook(Some(Arc::new(move |_, _| {
        nn.fetch_add(1, Ordering::SeqCst);
    })));
    let p = m.platform();
    let r = m
        .on_cpu(CpuId::of::<1>(), || {
            let flags = p.local_irq_save();
            p.raise(CpuId::of::<1>(), IRQ).unwrap();
            for _ in 0..100 {
                p.cpu_relax();
            }
            let before = n.load(Ordering::SeqCst);
            p.local_irq_restore(flags);
            (before, n.load(Ordering::SeqCst))
        })
        .unwrap();
    assert_eq!(
        r,
        (0, 1),
        "held while off, taken as soon as the flag is back on"
    );
}

#[test]
fn cpu_spinning_with_interrupts_on_takes_interrupts() {
    let m = SimMachine::new(2);
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    m.set_irq_entry_hook(Some(Arc::new(move |_, _| f.store(true, Ordering::SeqCst))));
    let p = m.platform();
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            p.on_cpu(CpuId::BOOT, || {
                // Process context waiting for something only an interrupt
                // handler on this very CPU can do.
                while !flag.load(Ordering::SeqCst) {
                    p.cpu_relax();
                }
            })
        });
        m.raise(CpuId::BOOT, IRQ).unwrap();
        h.join().unwrap().unwrap();
    });
}

#[test]
fn cross_call_runs_on_target_and_is_recorded_offline_targets_refused() {
    let m = SimMachine::new(3);
    let ran_on = Arc::new(Mutex::new(None));
    let (r, p) = (ran_on.clone(), m.platform());
    let id = m
        .send_ipi(CpuId::BOOT, CpuId::of::<1>(), move || {
            *r.lock().unwrap() = Some((p.try_current_cpu(), p.local_irq_enabled()));
        })
        .unwrap();
    // The record is written after the call returns.
    spin_until("the call ran and was recorded", || {
        !m.cross_call_log().is_empty()
    });
    assert_eq!(
        *ran_on.lock().unwrap(),
        Some((Some(CpuId::of::<1>()), false))
    );
    let log = m.cross_call_log();
    assert_eq!(log.len(), 1);
    assert_eq!(
        (
            log[0].id,
            log[0].target,
            log[0].ran_on,
            log[0].ran_while_online
        ),
        (id, CpuId::of::<1>(), CpuId::of::<1>(), true)
    );
    assert_eq!(log[0].path, CallPath::Ipi);
    m.set_online(CpuId::of::<2>(), false).unwrap();
    assert_eq!(
        m.send_ipi(CpuId::BOOT, CpuId::of::<2>(), || {}),
        Err(SimError::CpuOffline(CpuId::of::<2>()))
    );
    assert_eq!(
        m.online_mask(),
        CpuMask::from_cpus([CpuId::BOOT, CpuId::of::<1>()])
    );
}

#[test]
fn flush_runs_queued_calls_on_the_calling_cpu() {
    let m = SimMachine::new(2);
    let p = m.platform();
    let r = m
        .on_cpu(CpuId::of::<1>(), || {
            let flags = p.local_irq_save();
            p.send_ipi(CpuId::BOOT, CpuId::of::<1>(), || {}).unwrap();
            let queued = p.pending_cross_calls(CpuId::of::<1>());
            p.flush_cross_calls();
            let after = p.pending_cross_calls(CpuId::of::<1>());
            p.local_irq_restore(flags);
            (queued, after)
        })
        .unwrap();
    assert_eq!(r, (1, 0));
    let log = m.cross_call_log();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].path, CallPath::Flush);
}

#[test]
fn run_on_cpus_runs_concurrently_on_each_cpu() {
    let m = SimMachine::new(4);
    let p = m.platform();
    let barrier = Barrier::new(4);
    let seen = Mutex::new(Vec::new());
    // From outside the machine: all four shares are remote and must meet at
    // the barrier, which proves they run at the same time.
    p.run_on_cpus(&CpuMask::first_n(4), &|cpu| {
        assert_eq!(p.try_current_cpu(), Some(cpu));
        assert!(p.local_irq_enabled(), "stopper context has interrupts on");
        barrier.wait();
        seen.lock().unwrap().push(cpu);
    });
    let mut seen = seen.into_inner().unwrap();
    seen.sort();
    assert_eq!(seen, CpuId::all(4).collect::<Vec<_>>());
    // From a CPU: its own share runs inline.
    let inline = m
        .on_cpu(CpuId::of::<2>(), || {
            let me = std::thread::current().id();
            let same = AtomicBool::new(false);
            p.run_on_cpus(&CpuMask::of(CpuId::of::<2>()), &|_| {
                same.store(std::thread::current().id() == me, Ordering::SeqCst)
            });
            same.load(Ordering::SeqCst)
        })
        .unwrap();
    assert!(inline);
}

#[test]
fn outside_threads_are_cpu0_with_their_own_irq_flag() {
    let m = SimMachine::new(2);
    let p = m.platform();
    assert_eq!(p.try_current_cpu(), None);
    assert_eq!(p.current_cpu(), CpuId::BOOT);
    let f = p.local_irq_save();
    assert!(!p.local_irq_enabled());
    assert_eq!(
        m.irqs_enabled(CpuId::BOOT),
        Ok(true),
        "CPU 0's own flag is untouched"
    );
    p.local_irq_restore(f);
    assert!(p.local_irq_enabled());
    assert_eq!(
        m.on_cpu(CpuId::of::<1>(), || p.current_cpu()),
        Ok(CpuId::of::<1>())
    );
}

#[test]
fn on_cpu_propagates_panics() {
    let m = SimMachine::new(2);
    let r = catch_unwind(AssertUnwindSafe(|| {
        m.on_cpu(CpuId::of::<1>(), || panic!("boom"))
    }));
    assert!(r.is_err());
    // The CPU survives.
    assert_eq!(m.on_cpu(CpuId::of::<1>(), || 5), Ok(5));
}

#[test]
fn resend_wake_and_report_go_to_hooks_or_logs() {
    let m = SimMachine::new(1);
    let p = m.platform();
    p.schedule_resend(IRQ);
    p.wake_thread(IRQ, ActionId(3));
    p.report(IrqEvent::BadIrq(IRQ));
    assert_eq!(m.resend_requests(), [IRQ]);
    assert_eq!(m.wake_requests(), [(IRQ, ActionId(3))]);
    assert_eq!(m.events(), [IrqEvent::BadIrq(IRQ)]);
    let n = Arc::new(AtomicUsize::new(0));
    let nn = n.clone();
    m.set_resend_hook(Some(Arc::new(move |_| {
        nn.fetch_add(1, Ordering::SeqCst);
    })));
    p.schedule_resend(IRQ);
    assert_eq!(n.load(Ordering::SeqCst), 1);
    assert_eq!(m.resend_requests().len(), 1);
}

fn thread_count() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn dropping_the_machine_joins_its_threads_even_with_hooks_holding_handles() {
    // Other tests of this binary run in parallel and start threads too: take
    // the minimum over a few tries instead of an exact before/after equality.
    let mut leaked = usize::MAX;
    for _ in 0..5 {
        let before = thread_count();
        for _ in 0..10 {
            let m = SimMachine::new(8);
            let p = m.platform();
            m.set_irq_entry_hook(Some(Arc::new(move |_, _| {
                let _ = p.ncpus(); // a cycle: hook -> platform -> machine state
            })));
            m.raise(CpuId::of::<3>(), IRQ).unwrap();
        }
        leaked = leaked.min(thread_count().saturating_sub(before));
        if leaked == 0 {
            break;
        }
    }
    assert_eq!(leaked, 0, "CPU threads outlived their machine");
}

#[test]
fn a_panic_in_a_hook_is_reported_when_the_machine_is_dropped() {
    let m = SimMachine::new(2);
    m.set_irq_entry_hook(Some(Arc::new(|_, _| panic!("handler bug"))));
    m.raise(CpuId::of::<1>(), IRQ).unwrap();
    spin_until("delivery", || m.delivered(CpuId::of::<1>()) == 1);
    // The CPU thread survived the panic.
    assert_eq!(m.on_cpu(CpuId::of::<1>(), || 1), Ok(1));
    let r = catch_unwind(AssertUnwindSafe(move || drop(m)));
    let msg = r.unwrap_err();
    let msg = msg.downcast_ref::<String>().unwrap();
    assert!(msg.contains("handler bug"), "{msg}");
}
