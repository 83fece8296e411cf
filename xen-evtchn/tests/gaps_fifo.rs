//! The FIFO layer's own interface (`Fifo`: registration, control blocks,
//! `Debug`) and its consumer where the plain order is not enough: a
//! higher-priority event raised during a scan, and `ready` bits that name
//! no queued event.

mod common;

use common::{GUEST, PEER, layout, vcpu_infos};
use irqcore::IrqNumber;
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::time::Duration;
use xen_evtchn::abi::fifo::{BUSY, ControlBlock, MASKED};
use xen_evtchn::model::{DomainHandle, HypervisorModel};
use xen_evtchn::{Config, DomId, EventChannels, Fifo, MaskReasons, Port, PortLayer, VcpuId};

/// Xen's default FIFO priority (`EVTCHN_FIFO_PRIORITY_DEFAULT`).
const DEFAULT_PRIORITY: usize = 7;

struct FifoGuest {
    model: Arc<HypervisorModel>,
    cb: &'static ControlBlock,
    ch: EventChannels,
}

/// A one-vCPU guest on a `Fifo` built here (vCPU 0 registered), with vCPU
/// 0's control block.
fn fifo_guest() -> FifoGuest {
    let model = HypervisorModel::new();
    let dom: DomainHandle = model.create_domain_with_layout(GUEST, 1, layout()).unwrap();
    model.create_domain_with_layout(PEER, 1, layout()).unwrap();
    let fifo = Fifo::new(vcpu_infos(&dom, 1, layout())).unwrap();
    fifo.prepare_vcpu(VcpuId(0), &dom).unwrap();
    let cb = fifo.control_block(VcpuId(0)).unwrap();
    let ch = EventChannels::new(
        Arc::new(dom),
        Box::new(fifo),
        Config::default(),
        Box::new(|| VcpuId(0)),
    );
    FifoGuest { model, cb, ch }
}

/// A bound, unmasked port with irq number = port number.
fn live_port(ch: &EventChannels, remote: DomId) -> Port {
    let p = ch.alloc_unbound(remote).unwrap();
    ch.set_irq(p, IrqNumber(p.0)).unwrap();
    ch.unmask(p, MaskReasons::EXPLICIT).unwrap();
    p
}

/// A loopback pair inside the guest: sending on `.0` raises `.1`.
fn loopback(ch: &EventChannels) -> (Port, Port) {
    let a = ch.alloc_unbound(DomId::SELF).unwrap();
    let b = ch.bind_interdomain(DomId::SELF, a, false).unwrap();
    for p in [a, b] {
        ch.set_irq(p, IrqNumber(p.0)).unwrap();
        ch.unmask(p, MaskReasons::EXPLICIT).unwrap();
    }
    (a, b)
}

/// Upcalls on vCPU 0 (at most `passes`), acking each port; returns the
/// ports dispatched in order and the passes run.
fn drain(ch: &EventChannels, passes: u32) -> (Vec<u32>, u32) {
    let mut seen = Vec::new();
    let n = ch.upcall(VcpuId(0), passes, &mut |irq| {
        seen.push(irq.0);
        ch.ack(Port(irq.0));
        Ok(())
    });
    (seen, n)
}

#[test]
fn registration_and_control_blocks_are_visible() {
    let model = HypervisorModel::new();
    let dom = model.create_domain_with_layout(GUEST, 2, layout()).unwrap();
    let fifo = Fifo::new(vcpu_infos(&dom, 2, layout())).unwrap();
    assert!(!fifo.is_registered(VcpuId(0)));
    assert!(
        fifo.control_block(VcpuId(1)).is_some(),
        "allocated up front"
    );
    assert!(fifo.control_block(VcpuId(2)).is_none(), "no vCPU 2");
    fifo.prepare_vcpu(VcpuId(0), &dom).unwrap();
    assert!(fifo.is_registered(VcpuId(0)));
    assert!(dom.fifo_registered(VcpuId(0)));
    assert!(!fifo.is_registered(VcpuId(1)));
    assert!(!fifo.is_registered(VcpuId(2)));
}

/// `{:?}` says what the layer is and how big (kernels log it).
#[test]
fn debug_output_names_the_layer_its_vcpus_and_pages() {
    let model = HypervisorModel::new();
    let dom = model.create_domain_with_layout(GUEST, 2, layout()).unwrap();
    let fifo = Fifo::new(vcpu_infos(&dom, 2, layout())).unwrap();
    let s = format!("{fifo:?}");
    assert!(s.starts_with("Fifo"), "{s}");
    assert!(s.contains("nr_vcpus: 2"), "{s}");
    assert!(s.contains("nr_pages: 0"), "{s}");
}

/// The control block `control_block` returns is the one Xen queues on.
#[test]
fn xen_queues_events_on_the_control_block_it_returns() {
    let g = fifo_guest();
    let p = live_port(&g.ch, PEER);
    assert_eq!(g.cb.ready.load(Ordering::SeqCst), 0);
    g.model.raise_port(GUEST, p);
    assert_eq!(g.cb.ready.load(Ordering::SeqCst), 1 << DEFAULT_PRIORITY);
    assert_eq!(g.cb.head[DEFAULT_PRIORITY].load(Ordering::SeqCst), p.0);
    assert_eq!(drain(&g.ch, 4).0, vec![p.0]);
}

/// A higher-priority event raised while a scan works through a long
/// lower-priority queue is taken next, not after that queue.
#[test]
fn a_higher_priority_event_raised_during_a_scan_preempts_the_low_queue() {
    let g = fifo_guest();
    let flood: Vec<(Port, Port)> = (0..5).map(|_| loopback(&g.ch)).collect();
    let (ha, hb) = loopback(&g.ch);
    drain(&g.ch, 8);
    g.ch.set_priority(hb, 0).unwrap();
    for &(_, b) in &flood {
        g.ch.set_priority(b, 15).unwrap();
    }
    for &(a, _) in &flood {
        g.ch.notify(a).unwrap();
    }
    let mut order = Vec::new();
    g.ch.upcall(VcpuId(0), 8, &mut |irq| {
        if order.is_empty() {
            // The first low-priority handler raises the urgent one.
            g.ch.notify(ha).unwrap();
        }
        order.push(irq.0);
        g.ch.ack(Port(irq.0));
        Ok(())
    });
    let lows: Vec<u32> = flood.iter().map(|&(_, b)| b.0).collect();
    let mut want = vec![lows[0], hb.0];
    want.extend_from_slice(&lows[1..]);
    assert_eq!(order, want);
}

/// `ready` bits that name no queued event (a queue whose head is 0, a
/// queue number FIFO does not have) are dropped: one pass, nothing
/// dispatched, no panic, and events queued afterwards still arrive.
#[test]
fn ready_bits_without_a_queued_event_are_dropped() {
    let g = fifo_guest();
    let p = live_port(&g.ch, PEER);
    g.cb.ready
        .store(1 << 5 | 1 << 20 | 1 << 31, Ordering::SeqCst);
    let (seen, passes) = drain(&g.ch, 4);
    assert_eq!(seen, Vec::<u32>::new());
    assert_eq!(passes, 1);
    assert_eq!(g.cb.ready.load(Ordering::SeqCst), 0);

    g.model.raise_port(GUEST, p);
    assert_eq!(drain(&g.ch, 4).0, vec![p.0]);
}

/// A word Xen keeps BUSY (a stalled or very slow hypervisor) does not hang
/// the guest's unmask: after a bounded spin it leaves the unmask to
/// `EVTCHNOP_unmask`, which clears M.
#[test]
fn unmask_of_a_word_xen_keeps_busy_falls_back_to_the_hypercall() {
    let model = HypervisorModel::new();
    let dom = model.create_domain_with_layout(GUEST, 1, layout()).unwrap();
    model.create_domain_with_layout(PEER, 1, layout()).unwrap();
    let fifo = Fifo::new(vcpu_infos(&dom, 1, layout())).unwrap();
    fifo.prepare_vcpu(VcpuId(0), &dom).unwrap();
    let port = xen_evtchn::EventChannelOps::alloc_unbound(&dom, PEER).unwrap();
    fifo.setup_port(port, &dom).unwrap();
    let word = fifo.word(port).unwrap();
    assert_eq!(word.load(Ordering::SeqCst), MASKED, "a new page is masked");
    word.fetch_or(BUSY, Ordering::SeqCst);

    // Watchdog: a hang fails the test instead of stalling the run.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(fifo.unmask(port, true, &dom));
    });
    let r = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the unmask still spins on the BUSY word");
    assert_eq!(r, Ok(()));
    assert_eq!(word.load(Ordering::SeqCst) & MASKED, 0, "Xen cleared M");
}
