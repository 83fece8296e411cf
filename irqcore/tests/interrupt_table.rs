//! The `/proc/interrupts`-style table: its exact format, the trigger of a
//! line the core was never told about, hex hwirqs and column alignment.

mod common;

use common::*;
use irqcore::*;
use std::sync::Arc;

/// A chip whose hardware was programmed without the core (as an IOAPIC pin
/// set up by `alloc_pin`): it reports that trigger through `read_trigger`.
struct Programmed {
    name: &'static str,
    trigger: TriggerType,
}

impl IrqChip for Programmed {
    fn name(&self) -> &str {
        self.name
    }
    fn mask(&self, _d: &IrqData<'_>) {}
    fn unmask(&self, _d: &IrqData<'_>) {}
    fn read_trigger(&self, _d: &IrqData<'_>) -> TriggerType {
        self.trigger
    }
}

fn chip(name: &'static str, trigger: TriggerType) -> Arc<dyn IrqChip> {
    Arc::new(Programmed { name, trigger })
}

fn line(core: &Core, irq: u32, c: Arc<dyn IrqChip>, hwirq: u64, flow: FlowKind) -> IrqNumber {
    let irq = core.alloc_descs(IrqNumber(irq), 1).unwrap();
    core.set_chip(irq, vec![ChipLevel::new(c, HwIrq(hwirq))], flow)
        .unwrap();
    irq
}

#[test]
fn table_format_is_pinned() {
    let core = core_with_cpus(2);
    set_cpu(0);
    // A pin programmed rising-edge by its driver, the core never told.
    let uart = line(
        &core,
        32,
        chip("IO-APIC", TriggerType::EdgeRising),
        0x1f,
        FlowKind::Edge,
    );
    let _u = core
        .request_irq(uart, IrqRequest::new("uart", handled()))
        .unwrap();
    // A per-CPU timer whose trigger the core programs on each CPU.
    let timer = line(
        &core,
        33,
        chip("GICv3", TriggerType::None),
        30,
        FlowKind::PerCpuDevId,
    );
    let _t = core
        .request_irq(
            timer,
            IrqRequest::new("timer", handled())
                .flags(RequestFlags::PERCPU)
                .dev_id(DevId(7)),
        )
        .unwrap();
    core.enable_percpu_irq(timer, TriggerType::LevelHigh)
        .unwrap();
    set_cpu(1);
    core.enable_percpu_irq(timer, TriggerType::LevelHigh)
        .unwrap();
    // A line nobody knows the trigger of, with two shared handlers.
    let disk = line(
        &core,
        34,
        chip("PIC", TriggerType::None),
        0x2a0,
        FlowKind::Level,
    );
    let _d1 = core
        .request_irq(
            disk,
            IrqRequest::new("ata0", handled())
                .flags(RequestFlags::SHARED)
                .dev_id(DevId(1)),
        )
        .unwrap();
    let _d2 = core
        .request_irq(
            disk,
            IrqRequest::new("ata1", handled())
                .flags(RequestFlags::SHARED)
                .dev_id(DevId(2)),
        )
        .unwrap();

    set_cpu(0);
    core.handle_irq(uart).unwrap();
    set_cpu(1);
    core.handle_irq(uart).unwrap();
    core.handle_irq(uart).unwrap();
    for _ in 0..17 {
        core.handle_irq(timer).unwrap();
    }

    let t = core.interrupt_table().to_string();
    let expected = [
        "             CPU0       CPU1",
        "   32:          1          2  IO-APIC   0x1f  edge          edge-r   uart",
        "   33:          0         17  GICv3     0x1e  percpu_devid  level-h  timer",
        "   34:          0          0  PIC      0x2a0  level         -        ata0, ata1",
    ];
    assert_eq!(t.lines().collect::<Vec<_>>(), expected, "\n{t}");
    assert!(t.ends_with('\n'));
}

#[test]
fn the_core_trigger_wins_over_the_chip_read_back() {
    let core = core_with_cpus(1);
    set_cpu(0);
    let irq = line(
        &core,
        40,
        chip("IO-APIC", TriggerType::EdgeRising),
        4,
        FlowKind::FastEoi,
    );
    assert_eq!(core.snapshot(irq).unwrap().trigger, TriggerType::EdgeRising);
    core.set_trigger(irq, TriggerType::LevelLow).unwrap();
    assert_eq!(core.snapshot(irq).unwrap().trigger, TriggerType::LevelLow);
    let _r = core
        .request_irq(irq, IrqRequest::new("nic", handled()))
        .unwrap();
    let t = core.interrupt_table().to_string();
    assert!(
        t.lines()
            .any(|l| l.ends_with("IO-APIC  0x4  fasteoi  level-l  nic")),
        "\n{t}"
    );
}
