//! The read-side section API of `irqcore::grace` as a kernel or a model
//! uses it directly (issue 17): interrupt-context sections are counted
//! apart from process-context ones, and a grace period waits for every
//! section that began before it.
use irqcore::grace::{CpuEpoch, synchronize};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[test]
fn interrupt_sections_are_sections_and_say_so() {
    for light in [false, true] {
        let e = CpuEpoch::new();
        assert!(!e.in_section() && !e.in_irq());
        if light {
            e.enter_irq_light();
        } else {
            e.enter_irq();
        }
        assert!(
            e.in_section() && e.in_irq() && !e.in_nested_irq(),
            "light: {light}"
        );
        e.enter(); // a process-context section inside (an API called from a handler)
        e.enter();
        assert!(
            e.in_irq() && !e.in_nested_irq(),
            "two API sections are no nested dispatch"
        );
        e.exit();
        e.exit();
        e.enter_irq(); // a nested dispatch
        assert!(e.in_nested_irq());
        e.exit_irq();
        assert!(e.in_irq() && !e.in_nested_irq());
        e.exit_irq();
        assert!(!e.in_section() && !e.in_irq(), "light: {light}");
        // A process-context section is not interrupt context.
        e.enter();
        assert!(e.in_section() && !e.in_irq());
        e.exit();
        assert!(!e.in_section());
    }
}

#[test]
fn a_grace_period_waits_for_an_interrupt_section_that_began_before_it() {
    for light in [false, true] {
        let slots: Arc<[CpuEpoch; 2]> = Arc::new([CpuEpoch::new(), CpuEpoch::new()]);
        if light {
            slots[1].enter_irq_light();
        } else {
            slots[1].enter_irq();
        }
        let done = Arc::new(AtomicBool::new(false));
        let (s, d) = (slots.clone(), done.clone());
        let (ended_tx, ended) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            synchronize(&s[..], Some(0), &std::thread::yield_now);
            d.store(true, Ordering::SeqCst);
            let _ = ended_tx.send(());
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!done.load(Ordering::SeqCst), "ended while CPU 1 was inside");
        slots[1].exit_irq();
        // Fail, not hang, if leaving the section is not seen.
        ended
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the grace period did not end after CPU 1 left");
        // With no section open, a grace period does not wait.
        synchronize(&slots[..], None, &std::thread::yield_now);
    }
}
