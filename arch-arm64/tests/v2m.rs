//! GICv2m against the models: an MSI device's vectors as SPIs of the frame,
//! stacked on the GICv2 domain; messages raise the SPI at the distributor,
//! the GIC driver acknowledges it, irqcore runs it once on the CPU its
//! affinity names; refcounted mappings release the SPI with the last
//! reference; bad inputs are typed errors that change nothing.

mod common;

use arch_arm64::model;
use arch_arm64::msi::{MsiDevice, MsiDeviceChip, add_msi_device_domain};
use arch_arm64::v2m::{V2mError, V2mFrame, add_v2m_domain};
use arch_arm64::v2m_model::{V2mModel, V2mModelMmio};
use common::{Rig, Version};
use irqcore::domain::{DomainId, DomainRegistry};
use irqcore::{CpuId, CpuMask, DevId, HwIrq, IrqRequest, IrqReturn, MsiMsg};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

const FRAME: u64 = 0x0802_0000;

struct FakePci(Arc<Mutex<Vec<Option<MsiMsg>>>>);

impl MsiDevice for FakePci {
    fn write_msg(&self, index: u32, msg: MsiMsg) {
        if let Some(m) = self.0.lock().unwrap().get_mut(index as usize) {
            *m = Some(msg);
        }
    }
    fn set_masked(&self, _index: u32, _masked: bool) -> bool {
        false
    }
}

struct World {
    rig: Rig,
    vm: Arc<V2mModel>,
    frame: Arc<V2mFrame<V2mModelMmio>>,
    msgs: Arc<Mutex<Vec<Option<MsiMsg>>>>,
}

fn world(version: Version, first: u32, count: u32) -> World {
    let rig = Rig::boot(version, 4, false);
    let vm = V2mModel::new(rig.model.clone(), FRAME, first, count);
    let frame = Arc::new(V2mFrame::new(vm.mmio(), FRAME).unwrap());
    World {
        rig,
        vm,
        frame,
        msgs: Arc::new(Mutex::new(vec![None; 4])),
    }
}

fn domains(
    w: &World,
    reg: &DomainRegistry<'_, common::ModelPlatform>,
) -> (DomainId, DomainId, DomainId) {
    let gic_dom = arch_arm64::add_gic_domain(reg, w.rig.gic.clone()).unwrap();
    let v2m_dom = add_v2m_domain(reg, w.frame.clone(), gic_dom).unwrap();
    let chip = Arc::new(MsiDeviceChip::new("PCI-MSI", FakePci(w.msgs.clone())));
    let dev = add_msi_device_domain(reg, "edu", chip, w.frame.clone(), v2m_dom, 4).unwrap();
    (gic_dom, v2m_dom, dev)
}

fn fire(w: &World, index: usize) -> u32 {
    let m = w.msgs.lock().unwrap()[index].expect("programmed");
    let addr = (u64::from(m.address_hi) << 32) | u64::from(m.address_lo);
    w.vm.msi_write(addr, m.data).expect("a frame SPI")
}

fn entry(
    w: &World,
    reg: &DomainRegistry<'_, common::ModelPlatform>,
    gic_dom: DomainId,
    cpu: u32,
) -> usize {
    w.rig.on(cpu as usize, || {
        w.rig.gic.handle_pending_dyn(&mut |id| {
            arch_arm64::dispatch(&w.rig.core, |id| reg.find_mapping(gic_dom, id.hwirq()), id)
        })
    })
}

#[test]
fn msi_through_v2m_is_an_edge_spi_handled_once_where_its_affinity_says() {
    for v in [Version::V2, Version::V3] {
        let w = world(v, 64, 32);
        let reg = DomainRegistry::new(&w.rig.core);
        let (gic_dom, _v2m_dom, dev) = domains(&w, &reg);
        let m = reg.map(dev, HwIrq(0)).unwrap();
        let per_cpu: Arc<[AtomicU64; 4]> = Arc::new(Default::default());
        let pc = per_cpu.clone();
        w.rig
            .core
            .request_irq_raw(
                m.irq(),
                IrqRequest::new(
                    "edu-msi",
                    Arc::new(move |_| {
                        pc[model::current_cpu().index()].fetch_add(1, Ordering::SeqCst);
                        IrqReturn::HANDLED
                    }),
                )
                .dev_id(DevId(1)),
            )
            .unwrap();
        let msg = w.msgs.lock().unwrap()[0].unwrap();
        assert_eq!(
            u64::from(msg.address_lo),
            FRAME + 0x40,
            "{v:?}: MSI_SETSPI_NS"
        );
        assert_eq!(msg.data, 64, "{v:?}: the frame's first SPI");
        assert!(
            w.rig.model.state(CpuId::BOOT, 64).edge,
            "{v:?}: configured edge"
        );
        let mut raised = 0;
        for to in [2u32, 1, 3, 0] {
            w.rig
                .core
                .set_affinity(m.irq(), &CpuMask::of(CpuId::new(to).unwrap()))
                .unwrap();
            for _ in 0..2 {
                fire(&w, 0);
                raised += 1;
                for other in (0..4).filter(|&c| c != to) {
                    assert_eq!(entry(&w, &reg, gic_dom, other), 0, "{v:?} cpu{other}");
                }
                assert_eq!(entry(&w, &reg, gic_dom, to), 1, "{v:?} cpu{to}");
            }
            assert_eq!(per_cpu[to as usize].load(Ordering::SeqCst), 2, "{v:?}");
        }
        let total: u64 = per_cpu.iter().map(|c| c.load(Ordering::SeqCst)).sum();
        assert_eq!(total, raised);
        drop(m);
        w.rig.assert_clean();
    }
}

#[test]
fn v2m_mappings_are_refcounted_and_release_the_spi_with_the_last_reference() {
    let w = world(Version::V2, 64, 2);
    let reg = DomainRegistry::new(&w.rig.core);
    let (_gic, v2m_dom, dev) = domains(&w, &reg);
    let a = reg.map(dev, HwIrq(0)).unwrap();
    let b = reg.map(dev, HwIrq(0)).unwrap();
    assert_eq!(a.irq(), b.irq());
    assert!(w.frame.is_reserved(64));
    let c = reg.map(dev, HwIrq(1)).unwrap();
    assert!(w.frame.is_reserved(65));
    // The frame has 2 SPIs: a third vector is a typed error, nothing mapped.
    let n = reg.nr_mappings();
    assert!(reg.map(dev, HwIrq(2)).is_err());
    assert_eq!(reg.nr_mappings(), n);
    // An SPI of the frame already taken by a device vector cannot be
    // mapped directly at the v2m level too.
    assert!(reg.map(v2m_dom, HwIrq(65)).is_err());
    assert_eq!(reg.nr_mappings(), n);
    // Outside the frame: refused.
    assert!(reg.map(v2m_dom, HwIrq(40)).is_err());
    drop(a);
    assert!(w.frame.is_reserved(64), "one reference left");
    drop(b);
    assert!(
        !w.frame.is_reserved(64),
        "the last reference released the SPI"
    );
    drop(c);
    assert!(!w.frame.is_reserved(65));
    assert_eq!(reg.nr_mappings(), 0);
}

#[test]
fn a_frame_with_a_bad_typer_is_refused_and_reservation_errors_are_typed() {
    let rig = Rig::boot(Version::V2, 1, false);
    for (first, count) in [(64, 0), (16, 8), (1016, 8)] {
        let vm = V2mModel::new(rig.model.clone(), FRAME, first, count);
        assert!(
            matches!(V2mFrame::new(vm.mmio(), FRAME), Err(V2mError::BadTyper(_))),
            "{first}+{count}"
        );
    }
    let vm = V2mModel::new(rig.model.clone(), FRAME, 64, 1);
    let f = V2mFrame::new(vm.mmio(), FRAME).unwrap();
    assert_eq!(f.reserve(63), Err(V2mError::NotInFrame(63)));
    f.reserve(64).unwrap();
    assert_eq!(f.reserve(64), Err(V2mError::InUse(64)));
    assert_eq!(f.first_free(), Err(V2mError::NoneFree));
    assert_eq!(
        vm.msi_write(FRAME, 64),
        Err(arch_arm64::v2m_model::V2mWriteError::WrongAddress(FRAME))
    );
}
