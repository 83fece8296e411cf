//! `Pic8259Chip` against the 8259 model (issue #19, acceptance 4): the
//! cascade, spurious IRQ 7 and 15, masking, and the edge flow end to end
//! through irqcore.

mod common;

use arch_x86::model::{Machine, ModelPorts};
use arch_x86::pic8259::DEFAULT_OFFSETS;
use arch_x86::*;
use common::TestPlatform;
use irqcore::{CoreConfig, CpuId, FlowKind, IrqCore, IrqNumber, IrqRequest, IrqReturn};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

struct Rig {
    m: Arc<Machine>,
    core: IrqCore<TestPlatform>,
    pic: Arc<Pic8259Chip<ModelPorts>>,
    hits: Arc<AtomicU32>,
}

fn rig() -> Rig {
    let m = Machine::new(&[0]);
    let (master, slave) = DEFAULT_OFFSETS;
    let pic = Arc::new(Pic8259Chip::new(Pic8259::new(m.ports()), master, slave).unwrap());
    let core = IrqCore::with_config(
        TestPlatform {
            machine: m.clone(),
            resends: Mutex::new(Vec::new()),
        },
        CoreConfig {
            capacity: 64,
            nr_cpus: 1,
        },
    );
    core.set_cpu_online(CpuId::BOOT, true).unwrap();
    Rig {
        m,
        core,
        pic,
        hits: Arc::new(AtomicU32::new(0)),
    }
}

impl Rig {
    /// ISA line `line` as irq `line`, edge flow, with a counting handler.
    fn request(&self, line: u8) -> IrqNumber {
        let irq = self
            .core
            .alloc_descs(IrqNumber(u32::from(line)), 1)
            .unwrap();
        self.core
            .set_chip(irq, vec![self.pic.level(line).unwrap()], FlowKind::Edge)
            .unwrap();
        let hits = self.hits.clone();
        let h = move |_: IrqNumber| {
            hits.fetch_add(1, Ordering::SeqCst);
            IrqReturn::HANDLED
        };
        self.core
            .request_irq(irq, IrqRequest::new("isa", Arc::new(h)))
            .unwrap()
            .leak();
        irq
    }

    /// The CPU's interrupt entry: INTA, classify, dispatch. Returns what
    /// the vector was.
    fn entry(&self) -> PicVector {
        let vector = self.m.pic_acknowledge();
        let what = self.pic.classify(vector);
        if let PicVector::Line(line) = what {
            self.core.handle_irq(IrqNumber(u32::from(line))).unwrap();
        }
        what
    }
}

#[test]
fn init_masks_everything_but_the_cascade() {
    let r = rig();
    let [master, slave] = r.m.pics();
    assert_eq!((master.offset, slave.offset), (0x20, 0x28));
    assert_eq!((master.imr, slave.imr), (0xFB, 0xFF), "only IR2 open");
    assert_eq!(r.pic.masks(), 0xFFFB);
    assert_eq!(r.pic.vectors(), [0x20..0x28, 0x28..0x30]);
    assert_eq!(r.pic.vectors()[0].start, PIC8259_VECTORS.start);
    assert_eq!(r.pic.vectors()[1].end, PIC8259_VECTORS.end);
    assert_eq!(r.pic.vector_of(12), Ok(0x2C));
    assert_eq!(r.pic.vector_of(16), Err(PicError::BadLine(16)));
    assert_eq!(r.pic.level(2).err(), Some(PicError::Cascade));
    assert_eq!(r.pic.level(16).err(), Some(PicError::BadLine(16)));
    assert_eq!(r.pic.classify(0x30), PicVector::NotPic);
    assert_eq!(r.pic.classify(0x1F), PicVector::NotPic);
}

#[test]
fn master_line_masked_until_requested_then_acked_with_a_specific_eoi() {
    let r = rig();
    r.m.pic_raise(1);
    assert!(
        !r.m.pic_int(),
        "masked line latches in IRR but is not presented"
    );
    r.request(1);
    assert_eq!(r.m.pics()[0].imr & 0x02, 0, "startup unmasked line 1");
    assert!(r.m.pic_int(), "the latched edge is presented once unmasked");
    assert_eq!(r.entry(), PicVector::Line(1));
    assert_eq!(r.hits.load(Ordering::SeqCst), 1);
    let [master, slave] = r.m.pics();
    assert_eq!(master.isr, 0, "ack EOIed the line");
    assert_eq!((master.specific_eois, slave.eois), (1, 0));
    assert_eq!(master.stray_eois, 0);
    // Mask again through irqcore.
    r.core.disable_irq(IrqNumber(1)).unwrap();
    r.m.pic_raise(1);
    // Lazy disable: the line is masked at the next arrival at the latest.
    if r.m.pic_int() {
        assert_eq!(r.entry(), PicVector::Line(1));
    }
    assert_eq!(
        r.hits.load(Ordering::SeqCst),
        1,
        "no handler while disabled"
    );
    assert_ne!(r.m.pics()[0].imr & 0x02, 0, "masked");
}

#[test]
fn cascade_slave_line_gets_eoi_on_slave_and_master() {
    let r = rig();
    r.request(12);
    assert_eq!(r.m.pics()[1].imr, 0xEF, "slave line 4 unmasked");
    r.m.pic_raise(12);
    assert!(r.m.pic_int());
    assert_eq!(r.m.pic_acknowledge(), 0x2C);
    let [master, slave] = r.m.pics();
    assert_eq!(master.isr, 1 << 2, "cascade line in service on the master");
    assert_eq!(slave.isr, 1 << 4);
    assert_eq!(r.pic.classify(0x2C), PicVector::Line(12));
    r.core.handle_irq(IrqNumber(12)).unwrap();
    assert_eq!(r.hits.load(Ordering::SeqCst), 1);
    let [master, slave] = r.m.pics();
    assert_eq!((master.isr, slave.isr), (0, 0));
    assert_eq!((master.specific_eois, slave.specific_eois), (1, 1));
    assert_eq!((master.stray_eois, slave.stray_eois), (0, 0));
    // Priority: a slave line in service blocks lower-priority master lines
    // (3-7) but not a higher one (line 0/1).
    r.request(5);
    r.m.pic_raise(12);
    assert_eq!(r.m.pic_acknowledge(), 0x2C);
    r.m.pic_raise(5);
    assert!(!r.m.pic_int(), "line 5 waits behind the cascade in service");
    assert_eq!(r.pic.classify(0x2C), PicVector::Line(12));
    r.core.handle_irq(IrqNumber(12)).unwrap();
    assert!(r.m.pic_int());
    assert_eq!(r.entry(), PicVector::Line(5));
    assert_eq!(r.hits.load(Ordering::SeqCst), 3);
}

#[test]
fn spurious_irq7_gets_no_eoi() {
    let r = rig();
    r.request(3);
    r.m.pic_raise(3);
    assert!(r.m.pic_int());
    // The request goes away before the CPU's acknowledge cycle.
    r.m.pic_withdraw(3);
    let before = r.m.pics();
    assert_eq!(r.m.pic_acknowledge(), 0x27, "the master answers with IR7");
    assert_eq!(r.m.pics()[0].isr, 0, "no ISR bit for a spurious IR7");
    assert_eq!(r.pic.classify(0x27), PicVector::Spurious(7));
    let after = r.m.pics();
    assert_eq!(after[0].eois, before[0].eois, "no EOI to the master");
    assert_eq!(after[1].eois, before[1].eois, "no EOI to the slave");
    assert_eq!(r.pic.spurious_counts(), (1, 0));
    assert_eq!(r.hits.load(Ordering::SeqCst), 0);
    // A real IRQ 7 is dispatched and EOIed.
    r.request(7);
    r.m.pic_raise(7);
    assert_eq!(r.entry(), PicVector::Line(7));
    assert_eq!(r.hits.load(Ordering::SeqCst), 1);
    assert_eq!(r.m.pics()[0].isr, 0);
    assert_eq!(r.m.pics()[0].stray_eois, 0);
    assert_eq!(r.pic.spurious_counts(), (1, 0));
}

#[test]
fn spurious_irq15_gets_an_eoi_to_the_master_only() {
    let r = rig();
    r.request(15);
    r.m.pic_raise(15);
    assert!(r.m.pic_int());
    r.m.pic_withdraw(15);
    let before = r.m.pics();
    assert_eq!(
        r.m.pic_acknowledge(),
        0x2F,
        "the slave answers with its IR7"
    );
    assert_eq!(
        r.m.pics()[0].isr,
        1 << 2,
        "the master put the cascade in service"
    );
    assert_eq!(r.m.pics()[1].isr, 0);
    assert_eq!(r.pic.classify(0x2F), PicVector::Spurious(15));
    let after = r.m.pics();
    assert_eq!(after[0].isr, 0, "the master's cascade line was EOIed");
    assert_eq!(after[0].specific_eois, before[0].specific_eois + 1);
    assert_eq!(after[1].eois, before[1].eois, "no EOI to the slave");
    assert_eq!((after[0].stray_eois, after[1].stray_eois), (0, 0));
    assert_eq!(r.pic.spurious_counts(), (0, 1));
    assert_eq!(r.hits.load(Ordering::SeqCst), 0);
    // A real IRQ 15.
    r.m.pic_raise(15);
    assert_eq!(r.entry(), PicVector::Line(15));
    assert_eq!(r.hits.load(Ordering::SeqCst), 1);
    assert_eq!((r.m.pics()[0].isr, r.m.pics()[1].isr), (0, 0));
    assert_eq!(r.pic.spurious_counts(), (0, 1));
}

#[test]
fn status_reads_leave_the_irr_selected_and_level_triggers_are_refused() {
    let r = rig();
    let pic = Pic8259::new(r.m.ports());
    r.m.pic_raise(4);
    assert_eq!(pic.requests() & (1 << 4), 1 << 4);
    assert_eq!(pic.in_service(), 0);
    assert!(!r.m.pics()[0].read_isr, "read select back on the IRR");
    assert_eq!(pic.specific_eoi(16), Err(PicError::BadLine(16)));
    let irq = r.request(6);
    assert!(
        r.core
            .set_trigger(irq, irqcore::TriggerType::LevelHigh)
            .is_err()
    );
}
