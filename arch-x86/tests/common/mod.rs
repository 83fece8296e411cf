//! Shared test fixture: a modelled machine plus an irqcore platform whose
//! "current CPU" is the machine's.
#![allow(dead_code)]

use arch_x86::model::{Machine, ModelApicOps};
use arch_x86::{ApicId, MsiDestFormat, Vector, VectorDomain};
use irqcore::{CoreConfig, CpuId, CpuMask, IrqCore, IrqFlags, IrqNumber, Platform};
use std::cell::Cell;
use std::sync::{Arc, Mutex};

/// Vector `n` (tests name vectors by number; `n` is never below 32).
pub fn vec_(n: u8) -> Vector {
    Vector::new(n).unwrap()
}

thread_local! {
    /// The CPU the current thread plays, if it plays one.
    pub static THIS_CPU: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Runs `f` as CPU `cpu` on the current thread.
pub fn as_cpu<R>(cpu: usize, f: impl FnOnce() -> R) -> R {
    let old = THIS_CPU.with(|c| c.replace(Some(cpu)));
    let r = f();
    THIS_CPU.with(|c| c.set(old));
    r
}

/// An irqcore platform for single-threaded tests: the executing CPU is the
/// machine's current CPU; cross-CPU work runs inline, switching the current
/// CPU.
pub struct TestPlatform {
    pub machine: Arc<Machine>,
    pub resends: Mutex<Vec<IrqNumber>>,
}

impl Platform for TestPlatform {
    fn current_cpu(&self) -> CpuId {
        CpuId::new(self.machine.current_cpu() as u32).unwrap()
    }
    fn local_irq_save(&self) -> IrqFlags {
        IrqFlags(0)
    }
    fn local_irq_restore(&self, _flags: IrqFlags) {}
    fn local_irq_enabled(&self) -> bool {
        true
    }
    fn run_on_cpus(&self, cpus: &CpuMask, work: &(dyn Fn(CpuId) + Sync)) {
        // Threads play the other CPUs, concurrently, as stop-machine needs.
        let me = self.current_cpu();
        std::thread::scope(|s| {
            for c in cpus.iter().filter(|c| *c != me) {
                s.spawn(move || as_cpu(c.index(), || work(c)));
            }
            if cpus.contains(me) {
                work(me);
            }
        });
    }
    fn schedule_resend(&self, irq: IrqNumber) {
        self.resends.lock().unwrap().push(irq);
    }
}

pub struct Rig {
    pub machine: Arc<Machine>,
    pub core: IrqCore<TestPlatform>,
    pub vectors: Arc<VectorDomain<ModelApicOps>>,
}

/// A machine with CPUs of `apic_ids`, all online in irqcore and in the
/// vector domain, every LAPIC enabled in xAPIC mode.
pub fn rig(apic_ids: &[u32]) -> Rig {
    rig_online(apic_ids, apic_ids.len())
}

/// Like [`rig`], with only the first `online` CPUs online (the others'
/// LAPICs are enabled but the CPUs are down in irqcore and the vector
/// domain).
pub fn rig_online(apic_ids: &[u32], online: usize) -> Rig {
    let machine = Machine::new(apic_ids);
    machine.set_cpu_resolver(Some(Arc::new(|| THIS_CPU.with(|c| c.get()))));
    for cpu in 0..apic_ids.len() {
        let lapic = arch_x86::Lapic::init(
            arch_x86::ApicMode::XApic,
            machine.xapic(cpu),
            machine.msr(cpu),
        )
        .unwrap();
        lapic.enable(arch_x86::lapic::DEFAULT_SPURIOUS_VECTOR);
    }
    let core = IrqCore::with_config(
        TestPlatform {
            machine: machine.clone(),
            resends: Mutex::new(Vec::new()),
        },
        CoreConfig {
            capacity: 1024,
            nr_cpus: apic_ids.len() as u32,
        },
    );
    let ids: Vec<ApicId> = apic_ids.iter().map(|&a| ApicId(a)).collect();
    let vectors =
        Arc::new(VectorDomain::new(machine.apic_ops(), &ids, MsiDestFormat::XApic).unwrap());
    for cpu in 0..online {
        core.set_cpu_online(CpuId::new(cpu as u32).unwrap(), true)
            .unwrap();
        vectors.cpu_online(CpuId::new(cpu as u32).unwrap()).unwrap();
    }
    Rig {
        machine,
        core,
        vectors,
    }
}

impl Rig {
    /// CPU `cpu` takes its pending interrupts and dispatches each through
    /// the vector table and `IrqCore::handle_irq`, like an interrupt entry.
    /// Returns the irqs dispatched.
    pub fn run_cpu(&self, cpu: usize) -> Vec<IrqNumber> {
        as_cpu(cpu, || self.run_cpu_here(cpu))
    }

    fn run_cpu_here(&self, cpu: usize) -> Vec<IrqNumber> {
        let mut out = Vec::new();
        while let Some(v) = self.machine.take_interrupt(cpu) {
            match self
                .vectors
                .irq_for_vector(CpuId::new(cpu as u32).unwrap(), vec_(v))
            {
                Some(irq) => {
                    self.core.handle_irq(irq).unwrap();
                    out.push(irq);
                }
                None => panic!("vector {v:#x} on cpu {cpu} has no irq"),
            }
            assert!(out.len() < 100, "interrupt storm");
        }
        out
    }
}

/// Boots and kills CPUs for irqcore's hotplug: a thread plays the new CPU
/// and runs its `cpu_starting`.
pub struct TestControl<'a> {
    pub core: &'a IrqCore<TestPlatform>,
}

impl irqcore::CpuControl for TestControl<'_> {
    fn boot_cpu(&self, cpu: CpuId) -> Result<(), irqcore::IrqError> {
        std::thread::scope(|s| {
            s.spawn(|| as_cpu(cpu.index(), || self.core.cpu_starting()))
                .join()
                .unwrap()
        })
    }
    fn kill_cpu(&self, _cpu: CpuId) -> Result<(), irqcore::IrqError> {
        Ok(())
    }
}
