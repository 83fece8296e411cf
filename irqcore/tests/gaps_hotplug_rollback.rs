//! A CPU bring-up that fails part-way is rolled back (Linux's cpuhp
//! rollback): the `down` of every callback whose `up` succeeded runs, in
//! reverse order, with a context that says the CPU is going down, and the
//! CPU stays offline.
mod common;
use common::*;
use irqcore::hotplug::{Direction, HotplugCtx};
use irqcore::*;
use std::sync::{Arc, Mutex};

/// What a callback saw: its name, the hook, the CPU, the phase and the
/// direction the context reported.
type Seen = Arc<Mutex<Vec<(&'static str, &'static str, CpuId, CpuPhase, Direction)>>>;

struct Recorder {
    name: &'static str,
    fail_up: bool,
    seen: Seen,
}

impl HotplugCallback<TestPlatform> for Recorder {
    fn name(&self) -> &str {
        self.name
    }
    fn up(&self, ctx: &HotplugCtx<'_, TestPlatform>) -> Result<(), IrqError> {
        self.seen
            .lock()
            .unwrap()
            .push((self.name, "up", ctx.cpu, ctx.phase, ctx.direction));
        if self.fail_up {
            Err(IrqError::Busy)
        } else {
            Ok(())
        }
    }
    fn down(&self, ctx: &HotplugCtx<'_, TestPlatform>) {
        self.seen
            .lock()
            .unwrap()
            .push((self.name, "down", ctx.cpu, ctx.phase, ctx.direction));
    }
}

#[test]
fn a_failed_bring_up_runs_the_down_of_what_came_up_in_reverse_going_down() {
    set_cpu(0);
    let core = core_with_cpus(1);
    let seen: Seen = Arc::default();
    for (name, fail_up) in [("a", false), ("b", false), ("c", true), ("d", false)] {
        core.register_hotplug(
            CpuPhase::Prepare,
            Arc::new(Recorder {
                name,
                fail_up,
                seen: seen.clone(),
            }),
        )
        .unwrap();
    }
    let cpu = CpuId::of::<1>();
    let ctl = ThreadCpus(core.clone());
    assert_eq!(core.cpu_up(cpu, &ctl), Err(IrqError::Busy));
    assert!(
        !core.cpu_online(cpu),
        "a failed bring-up left the CPU online"
    );
    let p = CpuPhase::Prepare;
    let (up, down) = (Direction::Up, Direction::Down);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            ("a", "up", cpu, p, up),
            ("b", "up", cpu, p, up),
            ("c", "up", cpu, p, up),
            ("b", "down", cpu, p, down),
            ("a", "down", cpu, p, down),
        ],
        "d never ran, c's down never ran, a and b were undone in reverse"
    );
}
