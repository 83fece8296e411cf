//! irqcore in 150 lines: four threads play CPUs, a simulated interrupt
//! controller routes lines to them, and the kernel side is the real library.
//!
//! Run: `cargo run -p irqcore --example hosted --features sim`
use irqcore::sim::{SimMachine, SimPlatform};
use irqcore::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A toy interrupt controller: each line targets one CPU; `fire` raises the
/// line on that CPU, unless it is masked (then the event is dropped, so the
/// oneshot disk line loses the events that arrive while its thread runs). It has no hardware retrigger, so replays go through the
/// platform's software resend.
struct DemoChip {
    machine: SimPlatform,
    target: Mutex<HashMap<u64, CpuId>>,
    masked: Mutex<HashMap<u64, bool>>,
}

impl DemoChip {
    fn fire(&self, hwirq: u64, irq: IrqNumber) {
        let cpu = *self
            .target
            .lock()
            .unwrap()
            .get(&hwirq)
            .unwrap_or(&CpuId::BOOT);
        if !self
            .masked
            .lock()
            .unwrap()
            .get(&hwirq)
            .copied()
            .unwrap_or(true)
        {
            self.machine.raise(cpu, irq).expect("raise");
        }
    }
}

impl IrqChip for DemoChip {
    fn name(&self) -> &str {
        "DEMO"
    }
    fn mask(&self, d: &IrqData<'_>) {
        self.masked.lock().unwrap().insert(d.hwirq().0, true);
    }
    fn unmask(&self, d: &IrqData<'_>) {
        self.masked.lock().unwrap().insert(d.hwirq().0, false);
    }
    fn set_affinity(
        &self,
        d: &IrqData<'_>,
        mask: &CpuMask,
        _force: bool,
    ) -> Result<AffinitySet, ChipError> {
        let cpu = mask.first().ok_or(ChipError::Invalid)?;
        self.target.lock().unwrap().insert(d.hwirq().0, cpu);
        Ok(AffinitySet::Applied {
            effective: CpuMask::of(cpu),
        })
    }
}

/// Starts and stops simulated CPUs for the hotplug phases.
struct SimCpus(Arc<SimMachine>, Arc<IrqCore<SimPlatform>>);
impl CpuControl for SimCpus {
    fn boot_cpu(&self, cpu: CpuId) -> Result<(), IrqError> {
        self.0
            .set_online(cpu, true)
            .map_err(|_| IrqError::BadCpu(cpu))?;
        let core = self.1.clone();
        self.0
            .on_cpu(cpu, move || core.cpu_starting())
            .map_err(|_| IrqError::BadCpu(cpu))?
    }
    fn kill_cpu(&self, cpu: CpuId) -> Result<(), IrqError> {
        self.0
            .set_online(cpu, false)
            .map_err(|_| IrqError::BadCpu(cpu))
    }
}

fn main() -> Result<(), IrqError> {
    let machine = SimMachine::new(4);
    let core = Arc::new(IrqCore::with_config(
        machine.platform(),
        CoreConfig {
            capacity: 256,
            nr_cpus: 4,
        },
    ));
    for c in 0..4 {
        core.set_cpu_online(CpuId::new(c).unwrap(), true)?;
    }
    // The kernel's interrupt entry, resend softirq and interrupt threads.
    let c = core.clone();
    machine.set_irq_entry_hook(Some(Arc::new(move |_cpu, irq| {
        let _ = c.handle_irq(irq);
    })));
    let m = machine.platform();
    machine.set_resend_hook(Some(Arc::new(move |irq| {
        let _ = m.raise(CpuId::BOOT, irq); // replay as a fresh arrival on CPU 0
    })));
    let c = core.clone();
    machine.set_wake_thread_hook(Some(Arc::new(move |irq, action| {
        let c = c.clone();
        std::thread::spawn(move || c.run_thread(irq, action));
    })));

    let chip = Arc::new(DemoChip {
        machine: machine.platform(),
        target: Default::default(),
        masked: Default::default(),
    });
    let line = |hw: u64, flow: FlowKind| -> Result<IrqNumber, IrqError> {
        let irq = core.alloc_descs(IrqNumber(32), 1)?;
        core.set_chip(irq, vec![ChipLevel::new(chip.clone(), HwIrq(hw))], flow)?;
        Ok(irq)
    };

    // A shared level line with two devices, and a threaded oneshot disk.
    let shared = line(5, FlowKind::Level)?;
    let disk = line(9, FlowKind::FastEoi)?;
    let counts: Arc<[AtomicU64; 3]> = Arc::new(Default::default());
    let handler = |i: usize, mine: bool| -> Arc<dyn IrqHandler> {
        let counts = counts.clone();
        Arc::new(move |_irq: IrqNumber| {
            counts[i].fetch_add(1, Ordering::Relaxed);
            if mine {
                IrqReturn::HANDLED
            } else {
                IrqReturn::NONE
            }
        })
    };
    let _nic = core.request_irq(
        shared,
        IrqRequest::new("nic", handler(0, true)).flags(RequestFlags::SHARED),
    )?;
    let _usb = core.request_irq(
        shared,
        IrqRequest::new("usb", handler(1, false)).flags(RequestFlags::SHARED),
    )?;
    let k = counts.clone();
    let _disk = core.request_irq(
        disk,
        IrqRequest::threaded("disk", move |_irq| {
            k[2].fetch_add(1, Ordering::Relaxed); // may sleep: process context
            IrqReturn::HANDLED
        })
        .flags(RequestFlags::ONESHOT),
    )?;
    core.set_affinity(disk, &CpuMask::of(CpuId::of::<3>()))?;

    let fire_all = |n: usize| {
        for _ in 0..n {
            chip.fire(5, shared);
            chip.fire(9, disk);
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    };
    fire_all(50);
    println!("disk targets {:?}", core.effective_affinity(disk)?);

    // Take CPU 3 down (from CPU 0, as a kernel's hotplug thread would): the
    // disk interrupt moves to an online CPU inside stop-machine.
    let ctl = SimCpus(machine.clone(), core.clone());
    let c = core.clone();
    machine
        .on_cpu(CpuId::BOOT, move || c.cpu_down(CpuId::of::<3>(), &ctl))
        .expect("cpu 0")?;
    println!(
        "after cpu_down(3): disk targets {:?}, online {:?}",
        core.effective_affinity(disk)?,
        core.online_cpus()
    );
    fire_all(50);
    std::thread::sleep(std::time::Duration::from_millis(50));

    println!(
        "nic {} usb {} disk-thread {}",
        counts[0].load(Ordering::Relaxed),
        counts[1].load(Ordering::Relaxed),
        counts[2].load(Ordering::Relaxed)
    );
    print!("{}", core.interrupt_table());
    Ok(())
}
