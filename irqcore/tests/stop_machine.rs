//! Stop-machine on the simulated machine: the `seeds/001` scenario (an IPI
//! sent to the dying CPU from another CPU's interrupt handler during
//! stop-machine) against each defence, error propagation with interrupt
//! state restored, and the refusals.

use irqcore::sim::{CallPath, CrossCallRecord, SimMachine, SimPlatform};
use irqcore::stop_machine::{CpuDownError, StopMachine, StopMachineError, StopState};
use irqcore::{CpuId, CpuMask, IrqNumber, Platform};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Spins (yielding) until `cond` holds; a hang becomes a test failure.
fn spin_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        thread::yield_now();
    }
}

/// A one-shot gate: `wait` blocks until `open`.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    cv: Condvar,
}

impl Gate {
    fn wait(&self) {
        let mut g = self.open.lock().unwrap();
        while !*g {
            g = self.cv.wait(g).unwrap();
        }
    }
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.cv.notify_all();
    }
}

/// Per-CPU view of the stop-machine state, fed by the trace hook.
fn install_views(sm: &StopMachine, n: usize) -> Arc<Vec<AtomicU8>> {
    let views: Arc<Vec<AtomicU8>> = Arc::new((0..n).map(|_| AtomicU8::new(0)).collect());
    let v = views.clone();
    sm.set_trace_hook(Some(Arc::new(move |cpu: CpuId, st: StopState| {
        v[cpu.index()].store(st as u8, Ordering::SeqCst);
    })));
    views
}

const DEVICE_IRQ: IrqNumber = IrqNumber(40);
const CONTROL: CpuId = CpuId::BOOT;
const HANDLER_CPU: CpuId = CpuId::of::<1>();
const DYING: CpuId = CpuId::of::<2>();

#[derive(Clone, Copy, Debug)]
struct Defences {
    /// The two-phase interrupt disable (`StopMachine::new`), else one phase.
    two_phase: bool,
    /// The dying CPU flushes its cross-calls (`take_cpu_down`), else a bare
    /// stop-machine that only marks the CPU offline.
    flush: bool,
}

struct Outcome {
    calls: Vec<CrossCallRecord>,
    all_irqs_off_in_run: bool,
}

/// `seeds/001` on four CPUs. CPU 0 (control) takes CPU 2 down. CPUs 0, 2 and
/// 3 are held at the stopper entrance until CPU 1 has acknowledged Prepare;
/// then a device interrupt is raised on CPU 1, which takes it while it
/// spins in Prepare with interrupts on. Its handler waits until every other
/// CPU has acted on the first interrupt-disable state (with one phase, CPU 2
/// has its interrupts off by then) and sends a cross-call to CPU 2.
fn scenario_001(def: Defences) -> Outcome {
    let machine = SimMachine::new(4);
    let p: SimPlatform = machine.platform();
    let sm = if def.two_phase {
        StopMachine::new()
    } else {
        StopMachine::with_one_phase_disable()
    };
    let views = install_views(&sm, 4);
    let view = |c: CpuId| views[c.index()].load(Ordering::SeqCst);

    let gate = Arc::new(Gate::default());
    let g = gate.clone();
    p.set_stopper_entry_hook(Some(Arc::new(move |cpu| {
        if cpu != HANDLER_CPU {
            g.wait();
        }
    })));

    let handled = Arc::new(AtomicBool::new(false));
    let (h, pp, vv) = (handled.clone(), p.clone(), views.clone());
    p.set_irq_entry_hook(Some(Arc::new(move |cpu, irq| {
        assert_eq!((cpu, irq), (HANDLER_CPU, DEVICE_IRQ));
        let v = |c: usize| vv[c].load(Ordering::SeqCst);
        assert_eq!(
            v(1),
            StopState::Prepare as u8,
            "CPU 1 takes the interrupt while still in Prepare"
        );
        spin_until("CPUs 0, 2, 3 acted on DisableIrqInactive", || {
            [0, 2, 3]
                .iter()
                .all(|&c| v(c) >= StopState::DisableIrqInactive as u8)
        });
        pp.send_ipi(HANDLER_CPU, DYING, || {})
            .expect("CPU 2 is still online when the IPI is sent");
        h.store(true, Ordering::SeqCst);
    })));

    let online = p.online_mask();
    let irqs_off_in_run = AtomicBool::new(false);
    let result = thread::scope(|s| {
        let down = s.spawn(|| {
            p.on_cpu(CONTROL, || {
                let check_irqs = || {
                    let all_off = (0..4).all(|c| !p.irqs_enabled(CpuId::new(c).unwrap()).unwrap());
                    irqs_off_in_run.store(all_off, Ordering::SeqCst);
                };
                let mark_offline = || p.set_online(DYING, false).unwrap();
                if def.flush {
                    sm.take_cpu_down(
                        &p,
                        &online,
                        DYING,
                        &|| {
                            check_irqs();
                            Ok::<(), ()>(())
                        },
                        &mark_offline,
                    )
                } else {
                    sm.stop_machine(&p, &online, &CpuMask::of(DYING), &|cpu| {
                        assert_eq!(cpu, DYING);
                        check_irqs();
                        mark_offline();
                    })
                    .map_err(CpuDownError::Stop)
                }
            })
        });
        spin_until("CPU 1 acted on Prepare", || {
            view(HANDLER_CPU) == StopState::Prepare as u8
        });
        assert_eq!(view(CONTROL), 0, "CPU 0 is held at the stopper entrance");
        p.raise(HANDLER_CPU, DEVICE_IRQ).unwrap();
        gate.open();
        down.join().unwrap()
    });
    result.unwrap().unwrap();
    assert!(
        handled.load(Ordering::SeqCst),
        "the device interrupt was handled"
    );
    assert!(!p.is_online(DYING));
    assert_eq!(p.take_panics(), Vec::<String>::new());
    Outcome {
        calls: p.cross_call_log(),
        all_irqs_off_in_run: irqs_off_in_run.load(Ordering::SeqCst),
    }
}

fn the_call(o: &Outcome) -> CrossCallRecord {
    assert_eq!(
        o.calls.len(),
        1,
        "exactly one cross-call ran: {:?}",
        o.calls
    );
    let c = o.calls[0];
    assert_eq!((c.from, c.target, c.ran_on), (HANDLER_CPU, DYING, DYING));
    c
}

#[test]
fn seed_001_both_defences_handle_the_ipi_before_offline() {
    let o = scenario_001(Defences {
        two_phase: true,
        flush: true,
    });
    let c = the_call(&o);
    assert!(c.ran_while_online, "{c:?}");
    // The two-phase disable alone already got it in, through the IPI.
    assert_eq!(c.path, CallPath::Ipi);
    assert!(o.all_irqs_off_in_run);
}

#[test]
fn seed_001_two_phase_disable_alone_handles_the_ipi_before_offline() {
    let o = scenario_001(Defences {
        two_phase: true,
        flush: false,
    });
    let c = the_call(&o);
    assert!(c.ran_while_online, "{c:?}");
    assert_eq!(c.path, CallPath::Ipi);
    assert!(o.all_irqs_off_in_run);
}

#[test]
fn seed_001_flush_alone_handles_the_call_before_offline() {
    let o = scenario_001(Defences {
        two_phase: false,
        flush: true,
    });
    let c = the_call(&o);
    assert!(c.ran_while_online, "{c:?}");
    // The IPI was pending on CPU 2 with interrupts off: the flush ran it.
    assert_eq!(c.path, CallPath::Flush);
    assert!(o.all_irqs_off_in_run);
}

#[test]
fn seed_001_without_either_defence_the_ipi_is_handled_after_offline() {
    // The bug of seeds/001, reproduced: this is what the tests above would
    // see if their defence were missing.
    let o = scenario_001(Defences {
        two_phase: false,
        flush: false,
    });
    let c = the_call(&o);
    assert!(
        !c.ran_while_online,
        "the IPI ran on CPU 2 after it was marked offline: {c:?}"
    );
    assert_eq!(c.path, CallPath::Ipi);
}

#[derive(Debug, PartialEq, Eq)]
struct Boom(u32);

#[test]
fn error_from_f_propagates_and_every_cpu_irq_state_is_restored() {
    let machine = SimMachine::new(4);
    let p = machine.platform();
    let sm = StopMachine::new();
    let views = install_views(&sm, 4);
    let online = p.online_mask();
    let r = p
        .on_cpu(CONTROL, || {
            // The control CPU calls with its interrupts off; it must get them
            // back off, the others (on in their stopper) back on.
            let flags = p.local_irq_save();
            let r = sm.stop_machine(&p, &online, &CpuMask::of(CpuId::of::<3>()), &|cpu| {
                assert!((0..4).all(|c| !p.irqs_enabled(CpuId::new(c).unwrap()).unwrap()));
                Err::<(), Boom>(Boom(cpu.get()))
            });
            let still_off = !p.local_irq_enabled();
            p.local_irq_restore(flags);
            (r, still_off)
        })
        .unwrap();
    assert_eq!(r.0, Ok(Err(Boom(3))));
    assert!(
        r.1,
        "CPU 0 entered with interrupts off and left with them off"
    );
    for c in 1..4 {
        assert!(
            p.irqs_enabled(CpuId::new(c).unwrap()).unwrap(),
            "CPU {c} interrupts restored"
        );
    }
    assert!(p.irqs_enabled(CONTROL).unwrap());
    for v in views.iter() {
        assert_eq!(v.load(Ordering::SeqCst), StopState::Exit as u8);
    }
    assert!(!sm.is_busy());
    // And the machine still takes interrupts afterwards.
    let n = Arc::new(AtomicUsize::new(0));
    let nn = n.clone();
    p.set_irq_entry_hook(Some(Arc::new(move |_, _| {
        nn.fetch_add(1, Ordering::SeqCst);
    })));
    for c in 0..4 {
        p.raise(CpuId::new(c).unwrap(), DEVICE_IRQ).unwrap();
    }
    spin_until("every CPU took its interrupt", || {
        n.load(Ordering::SeqCst) == 4
    });
}

#[test]
fn dying_failure_keeps_the_cpu_online_and_unflushed() {
    let machine = SimMachine::new(3);
    let p = machine.platform();
    let sm = StopMachine::new();
    let online = p.online_mask();
    let r = p
        .on_cpu(CONTROL, || {
            sm.take_cpu_down(
                &p,
                &online,
                CpuId::of::<1>(),
                &|| Err::<(), Boom>(Boom(7)),
                &|| p.set_online(CpuId::of::<1>(), false).unwrap(),
            )
        })
        .unwrap();
    assert_eq!(r, Err(CpuDownError::Dying(Boom(7))));
    assert!(p.is_online(CpuId::of::<1>()));
    assert!((0..3).all(|c| p.irqs_enabled(CpuId::new(c).unwrap()).unwrap()));
}

#[test]
fn every_cpu_passes_every_state_in_order_and_f_runs_on_the_active_cpus() {
    let machine = SimMachine::new(6);
    let p = machine.platform();
    let sm = StopMachine::new();
    let log: Arc<Mutex<Vec<(CpuId, StopState, bool)>>> = Arc::default();
    let (l, pp) = (log.clone(), p.clone());
    sm.set_trace_hook(Some(Arc::new(move |cpu, st| {
        l.lock().unwrap().push((cpu, st, pp.local_irq_enabled()));
    })));
    let ran_on = Mutex::new(Vec::new());
    let active = CpuMask::from_cpus([CpuId::of::<1>(), CpuId::of::<4>()]);
    // Called from outside the machine: every CPU is a remote participant.
    let r = sm.stop_machine(&p, &p.online_mask(), &active, &|cpu| {
        assert_eq!(p.try_current_cpu(), Some(cpu));
        ran_on.lock().unwrap().push(cpu);
        cpu.get() * 10
    });
    assert_eq!(r, Ok(10), "the lowest-numbered active CPU's value");
    let mut ran = ran_on.into_inner().unwrap();
    ran.sort();
    assert_eq!(ran, [CpuId::of::<1>(), CpuId::of::<4>()]);
    let log = log.lock().unwrap().clone();
    for c in 0..6 {
        let mine: Vec<StopState> = log
            .iter()
            .filter(|e| e.0 == CpuId::new(c).unwrap())
            .map(|e| e.1)
            .collect();
        assert_eq!(mine, &StopState::ALL[1..], "CPU {c}");
    }
    // A state is acted on by everyone before anyone acts on the next one.
    let order: Vec<u8> = log.iter().map(|e| e.1 as u8).collect();
    assert!(order.windows(2).all(|w| w[0] <= w[1]), "{order:?}");
    // Interrupts: on until the CPU's disable state, off from Run on.
    for &(cpu, st, on) in &log {
        let is_active = active.contains(cpu);
        let expect_on = match st {
            StopState::Prepare => true,
            StopState::DisableIrqInactive => is_active,
            _ => false,
        };
        assert_eq!(on, expect_on, "{cpu:?} in {st:?}");
    }
}

#[test]
fn concurrent_and_nested_calls_are_refused_not_deadlocked() {
    let machine = SimMachine::new(3);
    let p = machine.platform();
    let sm = StopMachine::new();
    let online = p.online_mask();
    let r = sm.stop_machine(&p, &online, &CpuMask::of(CpuId::BOOT), &|_| {
        let nested = sm.stop_machine(&p, &online, &CpuMask::of(CpuId::of::<1>()), &|_| ());
        let nested_one = sm.stop_one_cpu(&p, &online, CpuId::of::<1>(), &|| ());
        let concurrent = thread::scope(|s| {
            s.spawn(|| sm.stop_machine(&p, &online, &CpuMask::of(CpuId::of::<1>()), &|_| ()))
                .join()
                .unwrap()
        });
        (nested, nested_one, concurrent)
    });
    let (nested, nested_one, concurrent) = r.unwrap();
    assert_eq!(nested, Err(StopMachineError::Busy));
    assert_eq!(nested_one, Err(StopMachineError::Busy));
    assert_eq!(concurrent, Err(StopMachineError::Busy));
    // The instance is usable again afterwards.
    assert_eq!(
        sm.stop_machine(&p, &online, &CpuMask::of(CpuId::of::<2>()), &|c| c),
        Ok(CpuId::of::<2>())
    );
}

#[test]
fn bad_masks_are_refused_with_typed_errors() {
    let machine = SimMachine::new(3);
    let p = machine.platform();
    let sm = StopMachine::new();
    let online = CpuMask::from_cpus([CpuId::BOOT, CpuId::of::<1>()]);
    let ran = AtomicBool::new(false);
    let f = |_: CpuId| ran.store(true, Ordering::SeqCst);
    assert_eq!(
        sm.stop_machine(&p, &online, &CpuMask::new(), &f),
        Err(StopMachineError::NoActiveCpu)
    );
    assert_eq!(
        sm.stop_machine(&p, &online, &CpuMask::of(CpuId::of::<2>()), &f),
        Err(StopMachineError::CpuOffline(CpuId::of::<2>()))
    );
    assert_eq!(
        sm.stop_machine(&p, &CpuMask::new(), &CpuMask::of(CpuId::BOOT), &f),
        Err(StopMachineError::BadOnlineMask)
    );
    assert_eq!(
        sm.stop_one_cpu(&p, &online, CpuId::of::<2>(), &|| ()),
        Err(StopMachineError::CpuOffline(CpuId::of::<2>()))
    );
    let single = CpuMask::of(CpuId::BOOT);
    assert_eq!(
        sm.take_cpu_down(&p, &single, CpuId::BOOT, &|| Ok::<(), ()>(()), &|| ()),
        Err(CpuDownError::Stop(StopMachineError::LastOnlineCpu))
    );
    assert!(!ran.load(Ordering::SeqCst));
    assert!(!sm.is_busy());
}

#[test]
fn stop_one_cpu_runs_on_that_cpu_with_interrupts_on() {
    let machine = SimMachine::new(4);
    let p = machine.platform();
    let sm = StopMachine::new();
    let online = p.online_mask();
    let r = p.on_cpu(CpuId::of::<1>(), || {
        sm.stop_one_cpu(&p, &online, CpuId::of::<3>(), &|| {
            (p.try_current_cpu(), p.local_irq_enabled())
        })
    });
    assert_eq!(r, Ok(Ok((Some(CpuId::of::<3>()), true))));
}

#[test]
fn stop_machine_from_a_cpu_while_another_cpu_handles_interrupts_in_prepare() {
    // Interrupts raised to CPUs waiting in Prepare are taken there (they spin
    // with interrupts on), not after stop-machine.
    let machine = SimMachine::new(3);
    let p = machine.platform();
    let sm = StopMachine::new();
    let views = install_views(&sm, 3);
    let gate = Arc::new(Gate::default());
    let g = gate.clone();
    p.set_stopper_entry_hook(Some(Arc::new(move |cpu| {
        if cpu == CpuId::of::<2>() {
            g.wait();
        }
    })));
    let taken_in: Arc<Mutex<Vec<(CpuId, u8)>>> = Arc::default();
    let (t, vv) = (taken_in.clone(), views.clone());
    p.set_irq_entry_hook(Some(Arc::new(move |cpu, _| {
        t.lock()
            .unwrap()
            .push((cpu, vv[cpu.index()].load(Ordering::SeqCst)));
    })));
    let online = p.online_mask();
    thread::scope(|s| {
        let h = s.spawn(|| {
            p.on_cpu(CpuId::BOOT, || {
                sm.stop_machine(&p, &online, &CpuMask::of(CpuId::BOOT), &|_| ())
            })
        });
        spin_until("CPU 1 in Prepare", || {
            views[1].load(Ordering::SeqCst) == StopState::Prepare as u8
        });
        p.raise(CpuId::of::<1>(), DEVICE_IRQ).unwrap();
        spin_until("CPU 1 took the interrupt", || {
            !taken_in.lock().unwrap().is_empty()
        });
        gate.open();
        h.join().unwrap().unwrap().unwrap();
    });
    assert_eq!(
        *taken_in.lock().unwrap(),
        [(CpuId::of::<1>(), StopState::Prepare as u8)]
    );
}

#[test]
fn while_a_call_runs_each_participant_and_only_it_is_marked() {
    // `is_participant` is what lets the core refuse a waiting API called
    // from inside the stopper (see context.rs): it must name exactly the
    // CPUs that are spinning in this call, and no CPU once it is over.
    let machine = SimMachine::new(6);
    let p = machine.platform();
    let sm = StopMachine::new();
    let online = CpuMask::from_cpus((0..5).map(|c| CpuId::new(c).unwrap()));
    assert!(!sm.is_busy());
    let seen = sm
        .stop_machine(&p, &online, &CpuMask::of(CpuId::of::<3>()), &|_| {
            let marked: Vec<u32> = (0..6)
                .filter(|&c| sm.is_participant(CpuId::new(c).unwrap()))
                .collect();
            (sm.is_busy(), marked)
        })
        .unwrap();
    assert_eq!(seen, (true, vec![0, 1, 2, 3, 4]), "CPU 5 is not online");
    assert!(!sm.is_busy());
    for c in 0..6 {
        assert!(
            !sm.is_participant(CpuId::new(c).unwrap()),
            "CPU {c} after the call"
        );
    }
    assert!(!sm.is_participant(CpuId::new(200).unwrap()));
    // A call on one CPU: leaving clears that CPU's own mark.
    let one = CpuMask::of(CpuId::of::<2>());
    assert_eq!(
        sm.stop_machine(&p, &one, &one, &|cpu| sm.is_participant(cpu)),
        Ok(true)
    );
    assert!(!sm.is_participant(CpuId::of::<2>()));
}

/// Runs `f` on CPUs 1 and 4 with the one named by `last` returning only
/// after the other has returned; returns stop_machine's value.
fn value_when_last_to_finish_is(last: u32) -> u32 {
    let machine = SimMachine::new(5);
    let p = machine.platform();
    let sm = StopMachine::new();
    let first_done = AtomicBool::new(false);
    let r = sm.stop_machine(
        &p,
        &p.online_mask(),
        &CpuMask::from_cpus([CpuId::of::<1>(), CpuId::of::<4>()]),
        &|cpu| {
            if cpu.get() == last {
                spin_until("the other active CPU", || first_done.load(Ordering::SeqCst));
                // Let the other CPU store its value first.
                thread::sleep(Duration::from_millis(20));
            } else {
                first_done.store(true, Ordering::SeqCst);
            }
            cpu.get() * 10
        },
    );
    r.unwrap()
}

#[test]
fn the_lowest_numbered_active_cpus_value_wins_whichever_finishes_last() {
    assert_eq!(value_when_last_to_finish_is(1), 10);
    assert_eq!(value_when_last_to_finish_is(4), 10);
}

#[test]
fn the_default_instance_disables_interrupts_in_two_phases() {
    assert!(StopMachine::new().is_two_phase());
    assert!(StopMachine::default().is_two_phase());
    assert!(!StopMachine::with_one_phase_disable().is_two_phase());
}

#[test]
fn errors_and_the_instance_print_what_they_are() {
    assert_eq!(StopMachineError::Busy.to_string(), "Busy");
    assert_eq!(
        StopMachineError::CpuOffline(CpuId::of::<2>()).to_string(),
        format!("CpuOffline({:?})", CpuId::of::<2>())
    );
    assert_eq!(
        CpuDownError::<u8>::Stop(StopMachineError::LastOnlineCpu).to_string(),
        "Stop(LastOnlineCpu)"
    );
    assert_eq!(CpuDownError::Dying(7u8).to_string(), "Dying(7)");
    let shown = format!("{:?}", StopMachine::new());
    assert!(shown.starts_with("StopMachine {"), "{shown}");
    assert!(shown.contains("busy: false"), "{shown}");
    assert!(shown.contains("TwoPhase"), "{shown}");
}
