//! Every resource the core hands out has an owning handle whose drop
//! releases it: descriptor ranges ([`DescRange`]), handlers
//! ([`Registration`]), hotplug callbacks ([`HotplugRegistration`]),
//! domains ([`DomainRegistration`]) and domain mappings ([`Mapping`]; the
//! shared-INTx case is in `domain_refcount.rs`).
mod common;
mod domain_common;
use common::*;
use domain_common::*;
use irqcore::*;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::Ordering;

fn allocated(core: &Core, first: u32, count: u32) -> Vec<bool> {
    (first..first + count)
        .map(|n| core.is_allocated(IrqNumber(n)))
        .collect()
}

#[test]
fn dropping_a_desc_range_frees_every_descriptor() {
    let core = core_with_cpus(1);
    let before = core.nr_descs();
    let range = core.alloc_desc_range(IrqNumber(40), 3).unwrap();
    assert_eq!(range.first(), IrqNumber(40));
    assert_eq!(range.count(), 3);
    assert_eq!(
        range.iter().collect::<Vec<_>>(),
        [IrqNumber(40), IrqNumber(41), IrqNumber(42)]
    );
    assert_eq!(range.get(3), None);
    assert!(range.contains(IrqNumber(42)) && !range.contains(IrqNumber(43)));
    assert_eq!(allocated(&core, 40, 3), [true; 3]);
    assert_eq!(core.nr_descs(), before + 3);

    drop(range);
    assert_eq!(allocated(&core, 40, 3), [false; 3]);
    assert_eq!(core.nr_descs(), before);
    assert!(core.platform().events.lock().unwrap().is_empty());
}

#[test]
fn a_desc_range_with_a_handler_left_is_not_freed_and_the_drop_is_reported() {
    let core = core_with_cpus(1);
    let range = core.alloc_desc_range(IrqNumber(40), 2).unwrap();
    let irq = range.first();
    core.set_chip(
        irq,
        vec![ChipLevel::new(RecordingChip::new(), HwIrq(0))],
        FlowKind::Edge,
    )
    .unwrap();
    let reg = core
        .request_irq(irq, IrqRequest::new("dev", handled()))
        .unwrap();

    // free() hands the range back with the error, nothing freed.
    let (range, e) = range.free().unwrap_err();
    assert_eq!(e, IrqError::HasHandlers(irq));
    assert_eq!(allocated(&core, 40, 2), [true; 2]);

    // A drop cannot return the error: it reports it, and frees nothing.
    let (first, count) = range.into_raw();
    let range = DescRange::from_raw(&core, first, count).unwrap();
    drop(range);
    assert_eq!(allocated(&core, 40, 2), [true; 2]);
    assert_eq!(
        core.platform().events.lock().unwrap().as_slice(),
        [IrqEvent::DescsNotFreed {
            first: irq,
            count: 2,
            error: IrqError::HasHandlers(irq)
        }]
    );

    // Handler first, then the range: the order `let`s give by themselves.
    let range = DescRange::from_raw(&core, first, count).unwrap();
    drop(reg);
    range.free().map_err(|(_, e)| e).unwrap();
    assert_eq!(allocated(&core, 40, 2), [false; 2]);
}

#[test]
fn leak_into_raw_and_from_raw_pass_ownership_on() {
    let core = core_with_cpus(1);
    // leak: stays allocated; only the low-level call frees it.
    let first = core.alloc_desc_range(IrqNumber(40), 2).unwrap().leak();
    assert_eq!(allocated(&core, 40, 2), [true; 2]);
    core.free_descs(first, 2).unwrap();
    assert_eq!(allocated(&core, 40, 2), [false; 2]);

    // into_raw / from_raw: the adopted range frees on drop.
    let (first, count) = core.alloc_desc_range(IrqNumber(40), 2).unwrap().into_raw();
    assert_eq!(allocated(&core, 40, 2), [true; 2]);
    drop(DescRange::from_raw(&core, first, count).unwrap());
    assert_eq!(allocated(&core, 40, 2), [false; 2]);

    // A number from the low-level layer can be adopted too.
    core.alloc_desc_at(IrqNumber(50)).unwrap();
    drop(DescRange::from_raw(&core, IrqNumber(50), 1).unwrap());
    assert!(!core.is_allocated(IrqNumber(50)));
}

#[test]
fn from_raw_refuses_numbers_that_are_not_allocated() {
    let core = core_with_cpus(1);
    let (first, _) = core.alloc_desc_range(IrqNumber(40), 2).unwrap().into_raw();
    assert_eq!(
        DescRange::from_raw(&core, first, 3).err(),
        Some(IrqError::UnknownIrq(IrqNumber(42)))
    );
    assert_eq!(
        DescRange::from_raw(&core, first, 0).err(),
        Some(IrqError::InvalidRange)
    );
    assert_eq!(
        DescRange::from_raw(&core, IrqNumber(u32::MAX), 2).err(),
        Some(IrqError::InvalidRange)
    );
    // Nothing was taken over: the two are still allocated, unowned.
    assert_eq!(allocated(&core, 40, 2), [true; 2]);
}

#[test]
fn dropping_a_registration_frees_the_handler_and_shuts_the_line_down() {
    let core = core_with_cpus(1);
    let chip = RecordingChip::new();
    let irq = irq_with(&core, chip.clone(), FlowKind::Edge);
    let (calls, h) = counting();
    let reg = core.request_irq(irq, IrqRequest::new("dev", h)).unwrap();
    core.handle_irq(irq).unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    chip.take();

    let dev_id = reg.dev_id();
    drop(reg);
    assert_eq!(chip.take(), ["shutdown"]);
    core.handle_irq(irq).unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "a freed handler never runs"
    );
    assert_eq!(
        core.free_irq(irq, dev_id),
        Err(IrqError::NoSuchHandler(irq))
    );
    // The line is free for the next owner.
    let _again = core
        .request_irq(irq, IrqRequest::new("next", handled()))
        .unwrap();
}

/// Records which CPUs its `Online` phase saw come up.
#[derive(Default)]
struct SeenUp(Mutex<Vec<CpuId>>);

impl HotplugCallback<TestPlatform> for SeenUp {
    fn name(&self) -> &str {
        "seen-up"
    }
    fn up(&self, ctx: &irqcore::hotplug::HotplugCtx<'_, TestPlatform>) -> Result<(), IrqError> {
        self.0.lock().unwrap().push(ctx.cpu);
        Ok(())
    }
    fn down(&self, _ctx: &irqcore::hotplug::HotplugCtx<'_, TestPlatform>) {}
}

#[test]
fn dropping_a_hotplug_registration_unregisters_the_callback() {
    let core = core_with_cpus(1);
    let kept = Arc::new(SeenUp::default());
    let dropped = Arc::new(SeenUp::default());
    let _kept = core
        .hotplug_callback(CpuPhase::Online, kept.clone())
        .unwrap();
    let reg = core
        .hotplug_callback(CpuPhase::Online, dropped.clone())
        .unwrap();
    let cpus = ThreadCpus(core.clone());
    core.cpu_up(CpuId::of::<1>(), &cpus).unwrap();
    assert_eq!(*dropped.0.lock().unwrap(), [CpuId::of::<1>()]);

    let id = reg.id();
    drop(reg);
    core.cpu_up(CpuId::of::<2>(), &cpus).unwrap();
    assert_eq!(
        *dropped.0.lock().unwrap(),
        [CpuId::of::<1>()],
        "an unregistered callback is not called again"
    );
    assert_eq!(
        *kept.0.lock().unwrap(),
        [CpuId::of::<1>(), CpuId::of::<2>()]
    );
    assert_eq!(
        core.unregister_hotplug(id).err(),
        Some(IrqError::UnknownHotplugCallback)
    );
    // Only the core's own Arc went: the test's clone is the last one.
    assert_eq!(Arc::strong_count(&dropped), 1);
}

#[test]
fn hotplug_registration_leak_and_unregister() {
    let core = core_with_cpus(1);
    let cb = Arc::new(SeenUp::default());
    let id = core
        .hotplug_callback(CpuPhase::Online, cb.clone())
        .unwrap()
        .leak();
    core.cpu_up(CpuId::of::<1>(), &ThreadCpus(core.clone()))
        .unwrap();
    assert_eq!(
        *cb.0.lock().unwrap(),
        [CpuId::of::<1>()],
        "a leaked callback stays"
    );
    core.unregister_hotplug(id).unwrap();

    let reg = core.hotplug_callback(CpuPhase::Online, cb.clone()).unwrap();
    let back = reg.unregister().map_err(|(_, e)| e).unwrap();
    assert!(Arc::ptr_eq(
        &back,
        &(cb.clone() as Arc<dyn HotplugCallback<TestPlatform>>)
    ));
}

#[test]
fn dropping_a_domain_registration_unregisters_the_domain_after_its_mappings() {
    let core = one_cpu_core();
    let reg = DomainRegistry::new(&core);
    let j = Journal::default();
    let dom = reg
        .register_domain(
            DomainConfig::new("d", DomainKind::Linear { size: 8 }),
            TestDomain::new("d", &j),
        )
        .unwrap();
    let id = dom.id();
    assert_eq!(reg.domains().len(), 1);
    {
        let m = reg.map(id, HwIrq(3)).unwrap();
        let irq = m.irq();
        assert_eq!(reg.find_mapping(id, HwIrq(3)), Some(irq));
        assert!(core.is_allocated(irq));
        drop(m); // the last reference: unmapped, descriptor freed
        assert_eq!(reg.find_mapping(id, HwIrq(3)), None);
        assert!(!core.is_allocated(irq));
    }
    drop(dom);
    assert!(reg.domains().is_empty());
    assert_eq!(
        reg.domain_config(id).err(),
        Some(DomainError::UnknownDomain(id))
    );
    assert!(core.platform().events.lock().unwrap().is_empty());
}

#[test]
fn a_domain_that_still_maps_is_kept_and_the_drop_is_reported() {
    let core = one_cpu_core();
    let reg = DomainRegistry::new(&core);
    let j = Journal::default();
    let dom = reg
        .register_domain(
            DomainConfig::new("d", DomainKind::Linear { size: 8 }),
            TestDomain::new("d", &j),
        )
        .unwrap();
    let id = dom.id();
    let irq = reg.create_mapping(id, HwIrq(1)).unwrap(); // a raw reference
    let Err((dom, e)) = dom.remove() else {
        panic!("removed a domain that still maps hwirq 1");
    };
    assert!(matches!(e, DomainError::DomainBusy { .. }), "{e:?}");
    drop(dom);
    assert_eq!(reg.domains().len(), 1, "kept");
    assert_eq!(
        core.platform().events.lock().unwrap().as_slice(),
        [IrqEvent::DomainKept(id)]
    );
    reg.dispose_mapping(irq).unwrap();
    reg.remove_domain(id).unwrap();
}
