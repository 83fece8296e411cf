//! The GIC driven by irqcore's CPU hotplug phases: a CPU coming up wakes its
//! redistributor before a timer driver's Starting callback enables its PPI;
//! a CPU going down has its SPIs moved (by the core for descriptors, by the
//! GIC's sweep for lines without one) and its redistributor put to sleep.

mod common;

use arch_arm64::model::{self, Event, default_mpidr};
use arch_arm64::{Mmio, regs::gicd};
use common::{Rig, Version};
use irqcore::hotplug::{CpuControl, CpuPhase, HotplugCallback, HotplugCtx};
use irqcore::{CpuId, CpuMask, IrqCore, IrqError, IrqNumber, TriggerType};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Starts a CPU as a thread that runs `IrqCore::cpu_starting` on itself.
struct ThreadCpus<'a>(&'a IrqCore<common::ModelPlatform>);

impl CpuControl for ThreadCpus<'_> {
    fn boot_cpu(&self, cpu: CpuId) -> Result<(), IrqError> {
        std::thread::scope(|s| {
            s.spawn(|| {
                model::set_current_cpu(cpu);
                self.0.cpu_starting()
            })
            .join()
            .unwrap()
        })
    }
    fn kill_cpu(&self, _cpu: CpuId) -> Result<(), IrqError> {
        Ok(())
    }
}

/// A timer driver: enables its PPI on each CPU as it starts.
struct Timer(IrqNumber);

impl HotplugCallback<common::ModelPlatform> for Timer {
    fn name(&self) -> &str {
        "timer"
    }
    fn up(&self, ctx: &HotplugCtx<'_, common::ModelPlatform>) -> Result<(), IrqError> {
        ctx.core.enable_percpu_irq(self.0, TriggerType::LevelHigh)
    }
    fn down(&self, ctx: &HotplugCtx<'_, common::ModelPlatform>) {
        let _ = ctx.core.disable_percpu_irq(self.0);
    }
}

/// Boots only CPU 0 (distributor + its own starting step), registers the
/// GIC's hotplug callback and then a timer's; the rest come up via cpu_up.
fn boot_cpu0(v: Version, ncpus: usize) -> (Rig, IrqNumber) {
    let rig = Rig::boot_cpus(v, ncpus, 1, false);
    arch_arm64::register_hotplug(&rig.core, rig.gic.clone()).unwrap();
    let (timer, _count) = rig.request(27, TriggerType::LevelHigh, |_| {});
    rig.core
        .enable_percpu_irq(timer, TriggerType::LevelHigh)
        .unwrap();
    rig.core
        .register_hotplug(CpuPhase::Starting, Arc::new(Timer(timer)))
        .unwrap();
    (rig, timer)
}

#[test]
fn cpu_up_wakes_the_redistributor_before_the_timer_ppi_is_enabled() {
    let (rig, _timer) = boot_cpu0(Version::V3, 4);
    for c in 1..4 {
        let cpu = CpuId::new(c).unwrap();
        assert!(rig.model.redistributor_asleep(cpu));
        rig.model.take_events();
        rig.core.cpu_up(cpu, &ThreadCpus(&rig.core)).unwrap();
        let ev = rig.model.events();
        let woke = ev.iter().position(|e| *e == Event::RedistributorAwake(cpu));
        let timer = ev.iter().position(|e| *e == Event::PrivateEnabled(cpu, 27));
        assert!(
            matches!((woke, timer), (Some(w), Some(t)) if w < t),
            "cpu{c}: {ev:?}"
        );
        assert!(rig.core.cpu_online(cpu));
        assert!(rig.model.state(cpu, 27).enabled);
    }
    rig.assert_clean();
}

#[test]
fn cpu_down_moves_spis_and_sleeps_the_redistributor() {
    for v in [Version::V2, Version::V3] {
        let (rig, _timer) = boot_cpu0(v, 3);
        for c in 1..3 {
            rig.core
                .cpu_up(CpuId::new(c).unwrap(), &ThreadCpus(&rig.core))
                .unwrap();
        }
        let (irq, count) = rig.request(90, TriggerType::EdgeRising, |_| {});
        rig.core
            .set_affinity(irq, &CpuMask::of(CpuId::of::<2>()))
            .unwrap();
        assert_eq!(
            rig.model.spi_route_cpus(90),
            vec![CpuId::of::<2>()],
            "{v:?}"
        );
        // A line without a descriptor routed to cpu2 by hand.
        rig.on(2, || {
            let d = rig.model.distributor();
            match v {
                Version::V2 => {
                    let id = arch_arm64::IntId::new(91).unwrap();
                    d.write32(gicd::ITARGETSR.word(id), 0b100 << gicd::ITARGETSR.shift(id))
                }
                Version::V3 => d.write64(
                    gicd::IROUTER.word(arch_arm64::IntId::new(91).unwrap()),
                    default_mpidr(2),
                ),
            }
        });

        rig.core
            .cpu_down(CpuId::of::<2>(), &ThreadCpus(&rig.core))
            .unwrap();
        assert!(!rig.core.cpu_online(CpuId::of::<2>()));
        let moved_to = rig.model.spi_route_cpus(90);
        assert!(
            moved_to.len() == 1 && moved_to[0] != CpuId::of::<2>(),
            "{v:?}: SPI 90 now routed to {moved_to:?}"
        );
        assert!(
            !rig.core
                .effective_affinity(irq)
                .unwrap()
                .contains(CpuId::of::<2>())
        );
        assert_eq!(
            rig.model.spi_route_cpus(91),
            vec![CpuId::BOOT],
            "{v:?}: swept"
        );
        assert!(
            !rig.model.state(CpuId::of::<2>(), 27).enabled,
            "{v:?}: timer off"
        );
        assert!(!rig.model.cpu_interface_enabled(CpuId::of::<2>()));
        if v == Version::V3 {
            assert!(rig.model.redistributor_asleep(CpuId::of::<2>()));
        }
        // The moved SPI still works.
        rig.model.pulse(CpuId::BOOT, 90);
        let target = moved_to[0].index();
        assert_eq!(rig.irq_entry(target), 1, "{v:?}");
        assert_eq!(count.load(Ordering::SeqCst), 1);

        // And the CPU comes back, redistributor awake, timer on.
        rig.core
            .cpu_up(CpuId::of::<2>(), &ThreadCpus(&rig.core))
            .unwrap();
        assert!(rig.model.state(CpuId::of::<2>(), 27).enabled, "{v:?}");
        if v == Version::V3 {
            assert!(!rig.model.redistributor_asleep(CpuId::of::<2>()));
        }
        rig.assert_clean();
    }
}
