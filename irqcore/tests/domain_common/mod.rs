//! Test backends for the domain tests: a domain whose callbacks log into a
//! shared journal and can be told to fail, and a chip that logs and
//! forwards to its parent level.
#![allow(dead_code)]

use irqcore::domain::{AllocRequest, LevelAlloc, LevelRef, SpecFormat};
use irqcore::*;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// A journal shared by every chip and domain of a test, so that the order
/// of calls across levels can be asserted.
#[derive(Clone, Default)]
pub struct Journal(Arc<Mutex<Vec<String>>>);

impl Journal {
    pub fn push(&self, s: String) {
        self.0.lock().unwrap().push(s);
    }
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// A chip that logs `name:op` and forwards mask/unmask/eoi/set_type to its
/// parent with the `*_parent` helpers.
pub struct LogChip {
    pub name: &'static str,
    pub journal: Journal,
}

impl LogChip {
    pub fn new(name: &'static str, journal: &Journal) -> Arc<Self> {
        Arc::new(Self {
            name,
            journal: journal.clone(),
        })
    }
    fn rec(&self, op: &str, d: &IrqData<'_>) {
        self.journal
            .push(format!("{}:{}:{}", self.name, op, d.hwirq().0));
    }
}

impl IrqChip for LogChip {
    fn name(&self) -> &str {
        self.name
    }
    fn mask(&self, d: &IrqData<'_>) {
        self.rec("mask", d);
        d.mask_parent();
    }
    fn unmask(&self, d: &IrqData<'_>) {
        self.rec("unmask", d);
        d.unmask_parent();
    }
    fn eoi(&self, d: &IrqData<'_>) {
        self.rec("eoi", d);
        d.eoi_parent();
    }
    fn set_type(&self, d: &IrqData<'_>, t: TriggerType) -> Result<(), ChipError> {
        self.rec("set_type", d);
        d.set_type_parent(t)
    }
}

/// How a [`TestDomain`] picks the hwirq of its parent level.
#[derive(Clone, Copy)]
pub enum ParentHwirq {
    /// The irq number (what a vector domain does).
    Irq,
    /// This level's hwirq plus an offset.
    Offset(u64),
}

/// A domain backend that logs `name:alloc|free|activate|deactivate:hwirq`.
pub struct TestDomain {
    pub name: &'static str,
    pub chip: Arc<dyn IrqChip>,
    pub flow: FlowKind,
    pub format: SpecFormat,
    pub parent_hwirq: ParentHwirq,
    pub journal: Journal,
    pub fail_alloc: AtomicBool,
    pub fail_activate: AtomicBool,
    pub live: AtomicU32,
}

impl TestDomain {
    pub fn new(name: &'static str, journal: &Journal) -> Arc<Self> {
        Self::with(
            name,
            journal,
            LogChip::new(name, journal),
            FlowKind::FastEoi,
            SpecFormat::TwoCell,
            ParentHwirq::Irq,
        )
    }

    pub fn with(
        name: &'static str,
        journal: &Journal,
        chip: Arc<dyn IrqChip>,
        flow: FlowKind,
        format: SpecFormat,
        parent_hwirq: ParentHwirq,
    ) -> Arc<Self> {
        Arc::new(Self {
            name,
            chip,
            flow,
            format,
            parent_hwirq,
            journal: journal.clone(),
            fail_alloc: AtomicBool::new(false),
            fail_activate: AtomicBool::new(false),
            live: AtomicU32::new(0),
        })
    }

    /// Levels currently allocated in this domain (alloc minus free).
    pub fn live(&self) -> u32 {
        self.live.load(Ordering::SeqCst)
    }
}

impl DomainOps for TestDomain {
    fn spec_format(&self) -> SpecFormat {
        self.format
    }
    fn alloc(&self, req: &AllocRequest) -> Result<LevelAlloc, IrqError> {
        if self.fail_alloc.load(Ordering::SeqCst) {
            self.journal
                .push(format!("{}:alloc-failed:{}", self.name, req.hwirq.0));
            return Err(IrqError::Chip(ChipError::NoSpace));
        }
        self.journal
            .push(format!("{}:alloc:{}", self.name, req.hwirq.0));
        self.live.fetch_add(1, Ordering::SeqCst);
        let parent_hwirq = match self.parent_hwirq {
            ParentHwirq::Irq => HwIrq(req.irq.0 as u64),
            ParentHwirq::Offset(o) => HwIrq(req.hwirq.0 + o),
        };
        Ok(LevelAlloc {
            chip: self.chip.clone(),
            chip_data: req.hwirq.0 as usize * 10 + req.depth,
            flow: self.flow,
            parent_hwirq,
        })
    }
    fn free(&self, level: &LevelRef) {
        self.journal
            .push(format!("{}:free:{}", self.name, level.hwirq.0));
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
    fn activate(&self, level: &LevelRef) -> Result<(), IrqError> {
        if self.fail_activate.load(Ordering::SeqCst) {
            self.journal
                .push(format!("{}:activate-failed:{}", self.name, level.hwirq.0));
            return Err(IrqError::Chip(ChipError::NoSpace));
        }
        self.journal
            .push(format!("{}:activate:{}", self.name, level.hwirq.0));
        Ok(())
    }
    fn deactivate(&self, level: &LevelRef) {
        self.journal
            .push(format!("{}:deactivate:{}", self.name, level.hwirq.0));
    }
}

/// A core with one online CPU, the test thread playing CPU 0.
pub fn one_cpu_core() -> IrqCore<super::common::TestPlatform> {
    super::common::set_cpu(0);
    let core = IrqCore::with_config(
        super::common::TestPlatform::default(),
        CoreConfig {
            capacity: 4096,
            nr_cpus: 4,
        },
    );
    core.set_cpu_online(CpuId::BOOT, true).unwrap();
    core
}
