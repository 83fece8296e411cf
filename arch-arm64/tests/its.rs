//! The GICv3 ITS and LPIs against the models: command sequences (MAPD,
//! MAPC, MAPTI, MOVI, DISCARD, INV, SYNC), translation of device writes
//! into LPIs acknowledged through the GIC driver and run by irqcore,
//! refcounted mappings (seed 002) in the PCI-MSI -> ITS -> LPI hierarchy,
//! affinity and hotplug, and every bad input as a typed error with the
//! state unchanged.

mod common;

use arch_arm64::dma::DmaError;
use arch_arm64::its::{
    ItsDomain, ItsError, ItsHotplug, ItsOptions, NoLocalIrqs, add_its_domain, its_hwirq,
};
use arch_arm64::its_cmd::{Decoded, DeviceId, EventId};
use arch_arm64::its_model::{ItsModel, ItsModelConfig, LoggedCommand, TranslationError};
use arch_arm64::lpi::{LpiError, LpiTables, add_lpi_domain};
use arch_arm64::mem_model::{Misbehave, ModelMemory};
use arch_arm64::model::{self};
use arch_arm64::msi::{ItsDeviceParent, MsiDevice, MsiDeviceChip, add_msi_device_domain};
use arch_arm64::regs::{GitsCtlr, TypedMmio, gits};
use arch_arm64::{IntId, Mmio};
use common::{Rig, Version};
use irqcore::domain::{DomainId, DomainRegistry};
use irqcore::hotplug::{CpuControl, CpuPhase};
use irqcore::{CpuId, CpuMask, DevId, IrqCore, IrqError, IrqRequest, IrqReturn, MsiMsg};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

type ItsDrv = arch_arm64::its::Its<arch_arm64::its_model::ItsModelMmio>;

const ITS_BASE: u64 = 0x0808_0000;
const DEV: DeviceId = DeviceId(0x08);

struct World {
    rig: Rig,
    mem: ModelMemory,
    itsm: Arc<ItsModel>,
    lpis: Arc<LpiTables>,
    its: Arc<ItsDrv>,
}

fn its_opts(ncpus: usize) -> ItsOptions {
    ItsOptions {
        device_id_bits: 8,
        queue_pages: 1,
        max_cpus: ncpus,
        poll_limit: 64,
    }
}

/// A GICv3 with `ncpus` CPUs (the first `started` started), LPI tables and
/// an ITS whose collections are up on the started CPUs.
fn world(ncpus: usize, started: usize) -> World {
    let rig = Rig::boot_cpus(Version::V3, ncpus, started, false);
    let mem = ModelMemory::new();
    let itsm = ItsModel::new(
        rig.model.clone(),
        mem.clone(),
        ITS_BASE,
        ItsModelConfig::default(),
    );
    let lpis = Arc::new(LpiTables::new(&mem, 14, ncpus, 0xa0).unwrap());
    let its = Arc::new(
        ItsDrv::new(
            itsm.mmio(),
            itsm.translater(),
            rig.gic.clone(),
            lpis.clone(),
            Arc::new(mem.clone()),
            Arc::new(NoLocalIrqs),
            its_opts(ncpus),
        )
        .unwrap(),
    );
    for c in 0..started {
        its.cpu_up(CpuId::new(c as u32).unwrap()).unwrap();
    }
    World {
        rig,
        mem,
        itsm,
        lpis,
        its,
    }
}

fn ops(log: &[LoggedCommand]) -> Vec<Decoded> {
    log.iter().map(|c| c.cmd).collect()
}

/// The commands executed since `from`.
fn since(w: &World, from: usize) -> Vec<Decoded> {
    ops(&w.itsm.commands()[from..])
}

fn is_sync(d: &Decoded) -> bool {
    matches!(d, Decoded::Sync { .. })
}

#[test]
fn lpis_are_enabled_on_every_redistributor_and_collections_mapped() {
    let w = world(4, 4);
    for c in 0..4 {
        let cpu = CpuId::new(c).unwrap();
        assert!(w.rig.model.lpis_enabled(cpu), "cpu{c}");
        assert!(w.its.cpu_ready(cpu));
    }
    let log = ops(&w.itsm.commands());
    let mapcs: Vec<_> = log
        .iter()
        .filter_map(|d| match d {
            Decoded::Mapc { icid, rd, valid } => Some((icid.0, rd.0, *valid)),
            _ => None,
        })
        .collect();
    assert_eq!(
        mapcs,
        [(0, 0, true), (1, 1, true), (2, 2, true), (3, 3, true)],
        "one collection per CPU, targeting its processor number"
    );
    assert!(w.itsm.command_errors().is_empty());
    // Tables sized from GITS_TYPER/BASER: 2^8 devices asked for, but a
    // 64 KiB page of 8-byte entries is the smallest table.
    assert_eq!(w.its.device_limit(), 8192);
    // Bringing a CPU up again (it came back online) is harmless: LPIs stay
    // enabled with the same tables.
    w.its.cpu_up(CpuId::of::<1>()).unwrap();
    w.rig.assert_clean();
}

#[test]
fn mapd_mapti_movi_discard_with_sync_after_every_move() {
    let w = world(4, 4);
    w.its.map_device(DEV, 4).unwrap();
    assert!(w.itsm.device_mapped(DEV));
    let lpi = w.its.map_event(DEV, EventId(1), CpuId::BOOT).unwrap();
    assert!(lpi.is_lpi());
    assert_eq!(
        w.itsm.lookup(DEV, EventId(1)).unwrap().cpu,
        CpuId::BOOT,
        "MAPTI into cpu0's collection"
    );
    for to in [2u32, 1, 3, 0] {
        let mark = w.itsm.commands().len();
        w.its
            .move_event(DEV, EventId(1), CpuId::new(to).unwrap())
            .unwrap();
        let cmds = since(&w, mark);
        assert!(
            matches!(cmds.first(), Some(Decoded::Movi { icid, .. }) if icid.0 as u32 == to),
            "{cmds:?}"
        );
        assert!(
            cmds.len() >= 2 && cmds[1..].iter().all(is_sync),
            "SYNC after the MOVI: {cmds:?}"
        );
        let d = w.itsm.lookup(DEV, EventId(1)).unwrap();
        assert_eq!((d.lpi, d.cpu), (lpi.get(), CpuId::new(to).unwrap()));
        assert_eq!(
            w.its.event(DEV, EventId(1)).unwrap().cpu,
            CpuId::new(to).unwrap()
        );
    }
    // A pending LPI moves with its event.
    w.its.move_event(DEV, EventId(1), CpuId::of::<2>()).unwrap();
    w.itsm
        .msi_write(DEV, w.its.translater(), 1)
        .expect("translated");
    assert_eq!(w.rig.model.lpis_pending(CpuId::of::<2>()), [lpi.get()]);
    w.its.move_event(DEV, EventId(1), CpuId::of::<3>()).unwrap();
    assert!(w.rig.model.lpis_pending(CpuId::of::<2>()).is_empty());
    assert_eq!(w.rig.model.lpis_pending(CpuId::of::<3>()), [lpi.get()]);
    // DISCARD unmaps it and drops the pending LPI; the LPI number is free.
    let mark = w.itsm.commands().len();
    w.its.unmap_event(DEV, EventId(1)).unwrap();
    let cmds = since(&w, mark);
    assert!(matches!(cmds[0], Decoded::Discard { .. }) && is_sync(&cmds[1]));
    assert!(w.rig.model.lpis_pending(CpuId::of::<3>()).is_empty());
    assert_eq!(
        w.itsm.lookup(DEV, EventId(1)),
        Err(TranslationError::EventNotMapped(DEV, EventId(1)))
    );
    assert!(!w.lpis.is_allocated(lpi));
    w.its.unmap_device(DEV).unwrap();
    assert!(!w.itsm.device_mapped(DEV));
    assert!(w.itsm.command_errors().is_empty());
    w.rig.assert_clean();
}

/// Snapshot of everything a refused call must leave alone.
#[derive(Debug, PartialEq)]
struct State {
    commands: usize,
    creadr: u64,
    cwriter: u64,
    live_regions: usize,
    events: Option<usize>,
    lpi0_allocated: bool,
}

fn state(w: &World) -> State {
    let m = w.itsm.mmio();
    State {
        commands: w.itsm.commands().len(),
        creadr: m.read64(gits::CREADR),
        cwriter: m.read64(gits::CWRITER),
        live_regions: w.mem.live_regions(),
        events: w.its.nr_events(DEV),
        lpi0_allocated: w.lpis.is_allocated(IntId::lpi(0).unwrap()),
    }
}

#[test]
fn bad_inputs_are_typed_errors_and_change_nothing() {
    let w = world(2, 1);
    let before = state(&w);
    // An unmapped device.
    assert_eq!(
        w.its.map_event(DEV, EventId(0), CpuId::BOOT),
        Err(ItsError::DeviceNotMapped(DEV))
    );
    assert_eq!(
        w.its.unmap_event(DEV, EventId(0)),
        Err(ItsError::DeviceNotMapped(DEV))
    );
    assert_eq!(w.its.unmap_device(DEV), Err(ItsError::DeviceNotMapped(DEV)));
    // A DeviceID beyond the device table.
    let far = DeviceId(w.its.device_limit() as u32);
    assert_eq!(
        w.its.map_device(far, 4),
        Err(ItsError::DeviceOutOfRange(far))
    );
    // More events than the ITS has EventID bits for.
    assert_eq!(
        w.its.map_device(DEV, u32::MAX),
        Err(ItsError::TooManyEvents(u32::MAX))
    );
    assert_eq!(state(&w), before);

    w.its.map_device(DEV, 4).unwrap();
    let before = state(&w);
    // An EventID beyond the ITT (4 events: 0..4).
    assert_eq!(
        w.its.map_event(DEV, EventId(4), CpuId::BOOT),
        Err(ItsError::EventOutOfRange(DEV, EventId(4)))
    );
    // An event not mapped.
    assert_eq!(
        w.its.move_event(DEV, EventId(2), CpuId::BOOT),
        Err(ItsError::EventNotMapped(DEV, EventId(2)))
    );
    assert_eq!(
        w.its.set_event_enabled(DEV, EventId(2), true),
        Err(ItsError::EventNotMapped(DEV, EventId(2)))
    );
    // A CPU whose collection is not up (cpu1 was never started) / unknown.
    assert_eq!(
        w.its.map_event(DEV, EventId(0), CpuId::of::<1>()),
        Err(ItsError::BadCpu(CpuId::of::<1>()))
    );
    assert_eq!(
        w.its.map_event(DEV, EventId(0), CpuId::of::<9>()),
        Err(ItsError::BadCpu(CpuId::of::<9>()))
    );
    assert_eq!(state(&w), before);

    // A device already mapped; an event mapped twice at the ITS level.
    assert_eq!(w.its.map_device(DEV, 4), Err(ItsError::DeviceMapped(DEV)));
    w.its.map_event(DEV, EventId(0), CpuId::BOOT).unwrap();
    let before = state(&w);
    assert_eq!(
        w.its.map_event(DEV, EventId(0), CpuId::BOOT),
        Err(ItsError::EventMapped(DEV, EventId(0)))
    );
    // A device with events cannot be unmapped.
    assert_eq!(w.its.unmap_device(DEV), Err(ItsError::DeviceBusy(DEV)));
    assert_eq!(state(&w), before);

    // Table memory too small or misaligned for an ITT: refused before MAPD.
    let other = DeviceId(9);
    for (m, check) in [
        (
            Misbehave::TooSmall,
            (|e| matches!(e, ItsError::Dma(DmaError::TooSmall { .. }))) as fn(ItsError) -> bool,
        ),
        (Misbehave::Misaligned, |e| {
            matches!(e, ItsError::Dma(DmaError::Misaligned { .. }))
        }),
        (Misbehave::OutOfMemory, |e| {
            matches!(e, ItsError::Dma(DmaError::OutOfMemory { .. }))
        }),
    ] {
        let before = state(&w);
        w.mem.set_misbehave(Some(m));
        let e = w.its.map_device(other, 8).unwrap_err();
        w.mem.set_misbehave(None);
        assert!(check(e), "{m:?}: {e:?}");
        assert!(!w.itsm.device_mapped(other));
        assert_eq!(w.its.nr_events(other), None);
        assert_eq!(state(&w), before, "{m:?}");
    }
    assert!(
        w.itsm.command_errors().is_empty(),
        "the driver refused, not the ITS"
    );
    w.rig.assert_clean();
}

#[test]
fn tables_too_small_or_misaligned_refuse_setup_before_touching_the_its() {
    let rig = Rig::boot(Version::V3, 2, false);
    let mem = ModelMemory::new();
    let itsm = ItsModel::new(
        rig.model.clone(),
        mem.clone(),
        ITS_BASE,
        ItsModelConfig::default(),
    );
    // LPI tables.
    mem.set_misbehave(Some(Misbehave::TooSmall));
    assert!(matches!(
        LpiTables::new(&mem, 14, 2, 0xa0),
        Err(LpiError::Dma(DmaError::TooSmall { .. }))
    ));
    mem.set_misbehave(None);
    assert_eq!(
        LpiTables::new(&mem, 13, 2, 0xa0).err(),
        Some(LpiError::IdBits(13))
    );
    let lpis = Arc::new(LpiTables::new(&mem, 14, 2, 0xa0).unwrap());
    // ITS tables and queue.
    for m in [Misbehave::TooSmall, Misbehave::Misaligned] {
        mem.set_misbehave(Some(m));
        let r = ItsDrv::new(
            itsm.mmio(),
            itsm.translater(),
            rig.gic.clone(),
            lpis.clone(),
            Arc::new(mem.clone()),
            Arc::new(NoLocalIrqs),
            its_opts(2),
        );
        mem.set_misbehave(None);
        assert!(matches!(r, Err(ItsError::Dma(_))), "{m:?}");
        let mm = itsm.mmio();
        assert_eq!(mm.read64(gits::CBASER), 0, "{m:?}: queue not programmed");
        assert!(!mm.load(gits::CTLR).contains(GitsCtlr::ENABLED));
        assert_eq!(mm.read64(gits::BASER) & gits::BASER_VALID, 0);
    }
    // A PTA = 1 ITS or one without physical LPIs is refused.
    for cfg in [
        ItsModelConfig {
            pta: true,
            ..ItsModelConfig::default()
        },
        ItsModelConfig {
            physical: false,
            ..ItsModelConfig::default()
        },
    ] {
        let m2 = ItsModel::new(rig.model.clone(), mem.clone(), ITS_BASE, cfg);
        let r = ItsDrv::new(
            m2.mmio(),
            m2.translater(),
            rig.gic.clone(),
            lpis.clone(),
            Arc::new(mem.clone()),
            Arc::new(NoLocalIrqs),
            its_opts(2),
        );
        assert!(matches!(
            r,
            Err(ItsError::Unsupported | ItsError::NotPhysical)
        ));
    }
}

#[test]
fn a_full_command_queue_is_a_typed_error_and_writes_nothing() {
    let w = world(2, 2);
    w.its.map_device(DEV, 4).unwrap();
    w.its.map_event(DEV, EventId(0), CpuId::BOOT).unwrap();
    // The ITS stops reading its queue.
    w.itsm.set_hold(true);
    let mut timeouts = 0;
    let full = loop {
        let before = state(&w);
        match w.its.set_event_enabled(DEV, EventId(0), true) {
            Err(ItsError::Timeout) => timeouts += 1,
            Err(ItsError::QueueFull) => {
                // Nothing written: CWRITER and the driver's state as before.
                assert_eq!(state(&w), before);
                break true;
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(timeouts < 200, "the queue never filled");
    };
    assert!(full);
    // 128 slots, 2 per call, one slot always empty.
    assert_eq!(timeouts, 63);
    // Affinity while the queue is full: irqcore is told Busy and keeps the
    // request; the driver's mapping is unchanged.
    assert_eq!(
        w.its.move_event(DEV, EventId(0), CpuId::of::<1>()),
        Err(ItsError::QueueFull)
    );
    assert_eq!(w.its.event(DEV, EventId(0)).unwrap().cpu, CpuId::BOOT);
    // The ITS reads again: everything queued runs, in order, without error.
    w.itsm.set_hold(false);
    assert!(w.itsm.command_errors().is_empty());
    w.its.move_event(DEV, EventId(0), CpuId::of::<1>()).unwrap();
    assert_eq!(
        w.itsm.lookup(DEV, EventId(0)).unwrap().cpu,
        CpuId::of::<1>()
    );
}

// ----- the irqcore hierarchy: PCI-MSI -> ITS -> GIC LPI -------------------------

/// A modelled PCI function with one MSI capability (no per-vector mask,
/// like QEMU's edu): remembers the programmed message and "fires" it at the
/// ITS model.
struct FakePci {
    msg: Mutex<Vec<Option<MsiMsg>>>,
}

struct PciHandle(Arc<FakePci>);

impl MsiDevice for PciHandle {
    fn write_msg(&self, index: u32, msg: MsiMsg) {
        if let Some(m) = self.0.msg.lock().unwrap().get_mut(index as usize) {
            *m = Some(msg);
        }
    }
    fn set_masked(&self, _index: u32, _masked: bool) -> bool {
        false
    }
}

struct Stack {
    w: World,
    pci: Arc<FakePci>,
}

#[derive(Clone, Copy)]
struct Doms {
    lpi: DomainId,
    its: DomainId,
    dev: DomainId,
}

fn stack(ncpus: usize, started: usize) -> Stack {
    let w = world(ncpus, started);
    let pci = Arc::new(FakePci {
        msg: Mutex::new(vec![None; 4]),
    });
    Stack { w, pci }
}

fn domains(s: &Stack, reg: &DomainRegistry<'_, common::ModelPlatform>) -> Doms {
    let lpi = add_lpi_domain(reg, s.w.rig.gic.clone()).unwrap();
    let its = add_its_domain(reg, s.w.its.clone(), lpi, CpuMask::first_n(s.w.rig.ncpus)).unwrap();
    s.w.its.map_device(DEV, 4).unwrap();
    let chip = Arc::new(MsiDeviceChip::new("PCI-MSI", PciHandle(s.pci.clone())));
    let dev =
        add_msi_device_domain(reg, "edu", chip, Arc::new(ItsDeviceParent(DEV)), its, 4).unwrap();
    Doms { lpi, its, dev }
}

/// `cpu`'s IRQ entry: acknowledge through the GIC driver, look the LPI up
/// in the LPI domain, run its flow.
fn entry(s: &Stack, reg: &DomainRegistry<'_, common::ModelPlatform>, d: Doms, cpu: u32) -> usize {
    s.w.rig.on(cpu as usize, || {
        s.w.rig.gic.handle_pending_dyn(&mut |id| {
            arch_arm64::dispatch(&s.w.rig.core, |id| reg.find_mapping(d.lpi, id.hwirq()), id)
        })
    })
}

fn fire(s: &Stack, index: usize) {
    let msg = s.pci.msg.lock().unwrap()[index].expect("programmed");
    let addr = (u64::from(msg.address_hi) << 32) | u64::from(msg.address_lo);
    s.w.itsm.msi_write(DEV, addr, msg.data).expect("translated");
}

#[test]
fn msi_through_the_its_is_handled_once_on_an_allowed_cpu_while_affinity_moves() {
    let s = stack(4, 4);
    let reg = DomainRegistry::new(&s.w.rig.core);
    let d = domains(&s, &reg);
    let dev_dom = d.dev;
    let m = reg.map(dev_dom, irqcore::HwIrq(0)).unwrap();
    let irq = m.irq();
    let per_cpu: Arc<[AtomicU64; 4]> = Arc::new(Default::default());
    let pc = per_cpu.clone();
    s.w.rig
        .core
        .request_irq_raw(
            irq,
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
    // Startup programmed the device with the ITS doorbell and EventID 0.
    let msg = s.pci.msg.lock().unwrap()[0].unwrap();
    assert_eq!(
        (u64::from(msg.address_hi) << 32) | u64::from(msg.address_lo),
        ITS_BASE + 0x1_0040
    );
    assert_eq!(msg.data, 0);
    let total = |p: &[AtomicU64; 4]| p.iter().map(|c| c.load(Ordering::SeqCst)).sum::<u64>();

    let mut raised = 0;
    for to in [1u32, 3, 0, 2] {
        let mark = s.w.itsm.commands().len();
        s.w.rig
            .core
            .set_affinity(irq, &CpuMask::of(CpuId::new(to).unwrap()))
            .unwrap();
        assert_eq!(
            s.w.rig.core.effective_affinity(irq).unwrap(),
            CpuMask::of(CpuId::new(to).unwrap())
        );
        let cmds = since(&s.w, mark);
        assert!(
            matches!(cmds.first(), Some(Decoded::Movi { .. }))
                && cmds.len() >= 2
                && cmds[1..].iter().all(is_sync),
            "{cmds:?}"
        );
        for _ in 0..3 {
            fire(&s, 0);
            raised += 1;
            // Only the target CPU has anything to acknowledge.
            for other in (0..4).filter(|&c| c != to) {
                assert_eq!(entry(&s, &reg, d, other), 0, "cpu{other}");
            }
            assert_eq!(entry(&s, &reg, d, to), 1);
        }
        assert_eq!(per_cpu[to as usize].load(Ordering::SeqCst), 3, "cpu{to}");
    }
    assert_eq!(total(&per_cpu), raised);
    assert_eq!(
        (0..4)
            .map(|c| s.w.rig.core.irq_count(irq, CpuId::new(c).unwrap()))
            .sum::<u64>(),
        raised
    );

    // disable_irq is lazy; an MSI while disabled masks the LPI (config byte
    // + INV); it is replayed on enable (INT through the ITS, or resend).
    s.w.rig.core.disable_irq(irq).unwrap();
    fire(&s, 0);
    assert_eq!(entry(&s, &reg, d, 2), 1, "arrives, masked by the flow");
    let lpi = s.w.its.event(DEV, EventId(0)).unwrap().lpi;
    assert_eq!(
        s.w.lpis.config(lpi).unwrap() & 1,
        0,
        "LPI disabled in memory"
    );
    fire(&s, 0);
    assert_eq!(entry(&s, &reg, d, 2), 0, "a masked LPI is not signalled");
    s.w.rig.core.enable_irq(irq).unwrap();
    let resends: Vec<_> = std::mem::take(&mut *s.w.rig.core.platform().resends.lock().unwrap());
    for r in resends {
        s.w.rig.on(2, || s.w.rig.core.handle_sw_resend(r)).ok();
    }
    let n = entry(&s, &reg, d, 2);
    assert!(n >= 1);
    assert_eq!(
        total(&per_cpu),
        raised + 1,
        "the disabled-time MSI handled once"
    );
    drop(m);
    s.w.rig.assert_clean();
}

#[test]
fn mapping_an_event_twice_or_sharing_it_is_refcounted_and_the_last_unmap_discards() {
    let s = stack(2, 2);
    let reg = DomainRegistry::new(&s.w.rig.core);
    let d = domains(&s, &reg);
    let dev_dom = d.dev;
    let discards = |s: &Stack| {
        s.w.itsm
            .commands()
            .iter()
            .filter(|c| matches!(c.cmd, Decoded::Discard { .. }))
            .count()
    };

    // At the ITS domain itself: (DeviceID, EventID) mapped twice.
    let hw = its_hwirq(DEV, EventId(2));
    let a = reg.map(d.its, hw).unwrap();
    let b = reg.map(d.its, hw).unwrap();
    assert_eq!(a.irq(), b.irq(), "same irq");
    assert_eq!(reg.mapping_info(a.irq()).unwrap().refs(), 2);
    let shared = b.try_clone().unwrap();
    assert_eq!(reg.mapping_info(a.irq()).unwrap().refs(), 3);
    let mapti =
        s.w.itsm
            .commands()
            .iter()
            .filter(|c| matches!(c.cmd, Decoded::Mapti { event, .. } if event == EventId(2)))
            .count();
    assert_eq!(mapti, 1, "one MAPTI for three references");
    let lpi = s.w.its.event(DEV, EventId(2)).unwrap().lpi;
    a.release().ok().unwrap();
    b.release().ok().unwrap();
    assert!(s.w.itsm.lookup(DEV, EventId(2)).is_ok(), "still mapped");
    assert_eq!(discards(&s), 0);
    shared.release().ok().unwrap();
    assert_eq!(discards(&s), 1, "the last unmap DISCARDs");
    assert_eq!(
        s.w.itsm.lookup(DEV, EventId(2)),
        Err(TranslationError::EventNotMapped(DEV, EventId(2)))
    );
    assert!(!s.w.lpis.is_allocated(lpi), "its LPI is free again");

    // Through the device domain (the reference is the top-level mapping's):
    // the whole stack goes with the last reference.
    let x = reg.map(dev_dom, irqcore::HwIrq(1)).unwrap();
    let y = reg.map(dev_dom, irqcore::HwIrq(1)).unwrap();
    assert_eq!(x.irq(), y.irq());
    assert!(s.w.its.event(DEV, EventId(1)).is_some());
    let n = reg.nr_mappings();
    drop(x);
    assert_eq!(reg.nr_mappings(), n);
    assert!(s.w.its.event(DEV, EventId(1)).is_some());
    drop(y);
    assert_eq!(discards(&s), 2);
    assert!(s.w.its.event(DEV, EventId(1)).is_none());
    assert_eq!(s.w.its.nr_events(DEV), Some(0));
    // Bad vector index at the device domain: typed, nothing mapped.
    assert!(reg.map(dev_dom, irqcore::HwIrq(4)).is_err());
    assert_eq!(s.w.its.nr_events(DEV), Some(0));
    s.w.rig.assert_clean();
}

#[test]
fn masking_needs_inv_and_the_model_shows_it() {
    let w = world(1, 1);
    w.its.map_device(DEV, 2).unwrap();
    let lpi = w.its.map_event(DEV, EventId(0), CpuId::BOOT).unwrap();
    w.its.set_event_enabled(DEV, EventId(0), true).unwrap();
    // Disable in memory only, without INV: the redistributor still uses
    // the configuration it loaded, so the LPI is still signalled.
    w.lpis.set_enabled(lpi, false).unwrap();
    w.itsm.msi_write(DEV, w.its.translater(), 0).unwrap();
    assert_eq!(w.rig.model.highest_pending(CpuId::BOOT), Some(lpi.get()));
    // With INV (the driver's mask), it is not.
    w.its.set_event_enabled(DEV, EventId(0), false).unwrap();
    assert_eq!(w.rig.model.highest_pending(CpuId::BOOT), None);
    w.its.set_event_enabled(DEV, EventId(0), true).unwrap();
    assert_eq!(w.rig.model.highest_pending(CpuId::BOOT), Some(lpi.get()));
}

// ----- hotplug -------------------------------------------------------------------

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

#[test]
fn cpu_hotplug_maps_collections_and_moves_lpis_off_a_dying_cpu() {
    let s = stack(4, 1);
    let core = &s.w.rig.core;
    arch_arm64::register_hotplug(core, s.w.rig.gic.clone()).unwrap();
    core.register_hotplug(
        CpuPhase::Starting,
        Arc::new(ItsHotplug::new(s.w.its.clone())),
    )
    .unwrap();
    for c in 1..4 {
        core.cpu_up(CpuId::new(c).unwrap(), &ThreadCpus(core))
            .unwrap();
        assert!(
            s.w.its.cpu_ready(CpuId::new(c).unwrap()),
            "cpu{c} collection mapped"
        );
        assert!(s.w.rig.model.lpis_enabled(CpuId::new(c).unwrap()));
    }
    let reg = DomainRegistry::new(&s.w.rig.core);
    let d = domains(&s, &reg);
    let dev_dom = d.dev;
    let m = reg.map(dev_dom, irqcore::HwIrq(0)).unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let c2 = count.clone();
    s.w.rig
        .core
        .request_irq_raw(
            m.irq(),
            IrqRequest::new(
                "edu-msi",
                Arc::new(move |_| {
                    c2.fetch_add(1, Ordering::SeqCst);
                    IrqReturn::HANDLED
                }),
            )
            .dev_id(DevId(1)),
        )
        .unwrap();
    // An event with a descriptor (moved by irqcore's migration through the
    // ITS chip) and one without (moved by the ITS's own sweep).
    s.w.rig
        .core
        .set_affinity(m.irq(), &CpuMask::of(CpuId::of::<2>()))
        .unwrap();
    s.w.its
        .map_event(DEV, EventId(3), CpuId::of::<2>())
        .unwrap();
    s.w.rig
        .core
        .cpu_down(CpuId::of::<2>(), &ThreadCpus(&s.w.rig.core))
        .unwrap();
    assert!(!s.w.its.cpu_ready(CpuId::of::<2>()));
    for ev in [0, 3] {
        let d = s.w.itsm.lookup(DEV, EventId(ev)).unwrap();
        assert_ne!(d.cpu, CpuId::of::<2>(), "event {ev} left the dying CPU");
        assert_eq!(s.w.its.event(DEV, EventId(ev)).unwrap().cpu, d.cpu);
    }
    let eff = s.w.rig.core.effective_affinity(m.irq()).unwrap();
    assert!(!eff.contains(CpuId::of::<2>()));
    let target = s.w.itsm.lookup(DEV, EventId(0)).unwrap().cpu;
    assert!(eff.contains(target), "{eff:?} vs {target:?}");
    fire(&s, 0);
    assert_eq!(entry(&s, &reg, d, target.get()), 1);
    assert_eq!(count.load(Ordering::SeqCst), 1);
    // Back online: the collection is mapped again and takes LPIs.
    s.w.rig
        .core
        .cpu_up(CpuId::of::<2>(), &ThreadCpus(&s.w.rig.core))
        .unwrap();
    assert!(s.w.its.cpu_ready(CpuId::of::<2>()));
    s.w.rig
        .core
        .set_affinity(m.irq(), &CpuMask::of(CpuId::of::<2>()))
        .unwrap();
    fire(&s, 0);
    assert_eq!(entry(&s, &reg, d, 2), 1);
    assert_eq!(count.load(Ordering::SeqCst), 2);
    assert!(s.w.itsm.command_errors().is_empty());
    drop(m);
    let _ = ItsDomain::<arch_arm64::its_model::ItsModelMmio>::new;
}

#[test]
fn a_move_while_the_queue_is_stuck_is_deferred_and_the_last_request_wins() {
    let s = stack(4, 4);
    let reg = DomainRegistry::new(&s.w.rig.core);
    let d = domains(&s, &reg);
    let m = reg.map(d.dev, irqcore::HwIrq(0)).unwrap();
    let irq = m.irq();
    let per_cpu: Arc<[AtomicU64; 4]> = Arc::new(Default::default());
    let pc = per_cpu.clone();
    s.w.rig
        .core
        .request_irq_raw(
            irq,
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
    s.w.rig
        .core
        .set_affinity(irq, &CpuMask::of(CpuId::BOOT))
        .unwrap();
    // The ITS stops reading: every request is accepted by irqcore (the
    // chip said Busy) and kept; nothing has moved yet. The last one goes
    // back where the driver believes the event is, so a driver that skipped
    // a move "to where it already is" would leave it at cpu2 for good.
    s.w.itsm.set_hold(true);
    for to in [1, 2, 0] {
        let mask = CpuMask::of(CpuId::new(to).unwrap());
        s.w.rig.core.set_affinity(irq, &mask).unwrap();
    }
    assert_eq!(
        s.w.rig.core.effective_affinity(irq).unwrap(),
        CpuMask::of(CpuId::BOOT)
    );
    assert_eq!(s.w.its.event(DEV, EventId(0)).unwrap().cpu, CpuId::BOOT);
    // It reads again; the next interrupt is the safe point where irqcore
    // applies the pending move: the last request, cpu0.
    s.w.itsm.set_hold(false);
    fire(&s, 0);
    let handled: usize = (0..4).map(|c| entry(&s, &reg, d, c)).sum();
    assert_eq!(handled, 1);
    assert_eq!(
        s.w.rig.core.effective_affinity(irq).unwrap(),
        CpuMask::of(CpuId::BOOT)
    );
    assert_eq!(s.w.its.event(DEV, EventId(0)).unwrap().cpu, CpuId::BOOT);
    assert_eq!(s.w.itsm.lookup(DEV, EventId(0)).unwrap().cpu, CpuId::BOOT);
    fire(&s, 0);
    assert_eq!(
        entry(&s, &reg, d, 0),
        1,
        "delivered at the last requested CPU"
    );
    // Both on cpu0: the commands queued while stuck ran in order, so the
    // hardware was already at the last request when the first MSI came.
    let counts: Vec<u64> = per_cpu.iter().map(|c| c.load(Ordering::SeqCst)).collect();
    assert_eq!(counts, [2, 0, 0, 0]);
    assert!(s.w.itsm.command_errors().is_empty());
    drop(m);
}

#[test]
fn threads_mapping_moving_and_unmapping_events_concurrently_keep_the_its_consistent() {
    let w = world(4, 4);
    let devs: Vec<DeviceId> = (0..4).map(|i| DeviceId(0x20 + i)).collect();
    for &d in &devs {
        w.its.map_device(d, 8).unwrap();
    }
    std::thread::scope(|sc| {
        for (t, &d) in devs.iter().enumerate() {
            let its = &w.its;
            let itsm = &w.itsm;
            sc.spawn(move || {
                for round in 0..40u32 {
                    let ev = EventId(round % 8);
                    let cpu = CpuId::new((round + t as u32) % 4).unwrap();
                    let lpi = its.map_event(d, ev, cpu).unwrap();
                    let to = CpuId::new((round * 3 + 1) % 4).unwrap();
                    its.move_event(d, ev, to).unwrap();
                    its.set_event_enabled(d, ev, round % 2 == 0).unwrap();
                    let got = itsm.lookup(d, ev).unwrap();
                    assert_eq!((got.lpi, got.cpu), (lpi.get(), to));
                    its.unmap_event(d, ev).unwrap();
                }
            });
        }
    });
    for &d in &devs {
        assert_eq!(w.its.nr_events(d), Some(0));
        w.its.unmap_device(d).unwrap();
    }
    assert!(w.itsm.command_errors().is_empty());
    assert!(
        (0..w.lpis.nr_lpis()).all(|n| !w.lpis.is_allocated(IntId::lpi(n).unwrap())),
        "every LPI given back"
    );
}
