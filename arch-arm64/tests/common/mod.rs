//! Test harness: a modelled GIC, a driver on it, an IrqCore whose platform
//! follows the model's current CPU, and an INTID -> irq table.
#![allow(dead_code)]

use arch_arm64::model::{self, GicModel, ModelMmio, ModelSysRegs};
use arch_arm64::{Gic, GicOptions, GicV2, GicV3, IntId};
use irqcore::{
    CpuId, CpuMask, IrqCore, IrqFlags, IrqNumber, IrqRequest, IrqReturn, Platform, RequestFlags,
    TriggerType,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A platform whose current CPU is the model's (per thread).
#[derive(Default)]
pub struct ModelPlatform {
    pub resends: Mutex<Vec<IrqNumber>>,
}

impl Platform for ModelPlatform {
    fn current_cpu(&self) -> CpuId {
        model::current_cpu()
    }
    fn local_irq_save(&self) -> IrqFlags {
        IrqFlags(0)
    }
    fn local_irq_restore(&self, _flags: IrqFlags) {}
    fn local_irq_enabled(&self) -> bool {
        false
    }
    fn run_on_cpus(&self, cpus: &CpuMask, work: &(dyn Fn(CpuId) + Sync)) {
        // Threads play the CPUs (stop-machine needs them concurrently).
        std::thread::scope(|s| {
            for c in cpus.iter() {
                s.spawn(move || {
                    model::set_current_cpu(c);
                    work(c);
                });
            }
        });
    }
    fn schedule_resend(&self, irq: IrqNumber) {
        self.resends.lock().unwrap().push(irq);
    }
}

/// Which GIC to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V2,
    V3,
}

pub struct Rig {
    pub model: Arc<GicModel>,
    pub gic: Arc<dyn Gic>,
    pub core: IrqCore<ModelPlatform>,
    pub map: Mutex<HashMap<u32, IrqNumber>>,
    pub ncpus: usize,
}

pub const LINES: u32 = 128;

pub fn v2(ncpus: usize, split: bool) -> (Arc<GicModel>, Arc<GicV2<ModelMmio>>) {
    let m = GicModel::new_v2(ncpus, LINES);
    let opts = GicOptions {
        max_cpus: ncpus,
        split_eoi: split,
        ..GicOptions::default()
    };
    let g = GicV2::new(m.distributor(), m.cpu_interface(), opts).unwrap();
    (m, Arc::new(g))
}

pub fn v3(ncpus: usize, split: bool) -> (Arc<GicModel>, Arc<GicV3<ModelMmio, ModelSysRegs>>) {
    let m = GicModel::new_v3(ncpus, LINES);
    let opts = GicOptions {
        max_cpus: ncpus,
        split_eoi: split,
        ..GicOptions::default()
    };
    let g = GicV3::new(m.distributor(), vec![m.redistributors()], m.sysregs(), opts).unwrap();
    (m, Arc::new(g))
}

impl Rig {
    /// A booted system: distributor initialised on CPU 0, then every CPU
    /// started on itself and marked online in the core.
    pub fn boot(version: Version, ncpus: usize, split: bool) -> Rig {
        Self::boot_cpus(version, ncpus, ncpus, split)
    }

    /// Like [`Rig::boot`] but only the first `started` CPUs are started
    /// (the others are left for hotplug).
    pub fn boot_cpus(version: Version, ncpus: usize, started: usize, split: bool) -> Rig {
        let (model, gic): (Arc<GicModel>, Arc<dyn Gic>) = match version {
            Version::V2 => {
                let (m, g) = v2(ncpus, split);
                (m, g)
            }
            Version::V3 => {
                let (m, g) = v3(ncpus, split);
                (m, g)
            }
        };
        Self::start(model, gic, ncpus, started)
    }

    /// A GICv3 booted like [`Rig::boot`], its driver built with `opts`.
    pub fn boot_v3_with(ncpus: usize, opts: GicOptions) -> Rig {
        let model = GicModel::new_v3(ncpus, LINES);
        let gic = GicV3::new(
            model.distributor(),
            vec![model.redistributors()],
            model.sysregs(),
            opts,
        )
        .unwrap();
        Self::start(model, Arc::new(gic), ncpus, ncpus)
    }

    fn start(model: Arc<GicModel>, gic: Arc<dyn Gic>, ncpus: usize, started: usize) -> Rig {
        let core = IrqCore::new(ModelPlatform::default());
        model::set_current_cpu(CpuId::BOOT);
        gic.init_distributor().unwrap();
        for c in 0..started {
            let cpu = CpuId::new(c as u32).unwrap();
            model::set_current_cpu(cpu);
            gic.cpu_starting(cpu).unwrap();
            core.set_cpu_online(cpu, true).unwrap();
        }
        model::set_current_cpu(CpuId::BOOT);
        Rig {
            model,
            gic,
            core,
            map: Mutex::new(HashMap::new()),
            ncpus,
        }
    }

    /// Allocates a descriptor for `intid` and attaches it with its class's flow.
    pub fn attach(&self, intid: u32, trigger: TriggerType) -> IrqNumber {
        let irq = self.core.alloc_descs(IrqNumber(1), 1).unwrap();
        let id = IntId::new(intid).unwrap();
        let chip: Arc<dyn irqcore::IrqChip> = self.gic.clone();
        arch_arm64::attach(&self.core, irq, chip, id, trigger).unwrap();
        self.map.lock().unwrap().insert(intid, irq);
        irq
    }

    /// Attaches `intid` and installs a counting handler that runs `f` too.
    pub fn request(
        &self,
        intid: u32,
        trigger: TriggerType,
        f: impl Fn(IrqNumber) + Send + Sync + 'static,
    ) -> (IrqNumber, Arc<AtomicU64>) {
        let irq = self.attach(intid, trigger);
        let count = Arc::new(AtomicU64::new(0));
        let c = count.clone();
        let handler = Arc::new(move |irq: IrqNumber| {
            c.fetch_add(1, Ordering::SeqCst);
            f(irq);
            IrqReturn::HANDLED
        });
        let mut req = IrqRequest::new("test", handler)
            .trigger(trigger)
            .dev_id(irqcore::DevId(1));
        if intid < 32 {
            req = req.flags(RequestFlags::PERCPU);
        }
        self.core.request_irq_raw(irq, req).unwrap();
        (irq, count)
    }

    /// Runs `cpu`'s IRQ entry: the acknowledge loop dispatching to the core.
    pub fn irq_entry(&self, cpu: usize) -> usize {
        let me = model::current_cpu();
        model::set_current_cpu(CpuId::new(cpu as u32).unwrap());
        let n = self.gic.handle_pending_dyn(&mut |id| {
            let irq = self.map.lock().unwrap().get(&id.get()).copied();
            arch_arm64::dispatch(&self.core, |_| irq, id)
        });
        model::set_current_cpu(me);
        n
    }

    /// Runs `f` as CPU `cpu`.
    pub fn on<R>(&self, cpu: usize, f: impl FnOnce() -> R) -> R {
        let me = model::current_cpu();
        model::set_current_cpu(CpuId::new(cpu as u32).unwrap());
        let r = f();
        model::set_current_cpu(me);
        r
    }

    pub fn assert_clean(&self) {
        assert_eq!(self.model.violations(), Vec::<String>::new());
        for c in 0..self.ncpus {
            assert_eq!(
                self.model.running_priority(CpuId::new(c as u32).unwrap()),
                0xff,
                "cpu{c} left with a raised running priority"
            );
        }
    }
}

pub fn both() -> [(Version, bool); 4] {
    [
        (Version::V2, false),
        (Version::V2, true),
        (Version::V3, false),
        (Version::V3, true),
    ]
}
