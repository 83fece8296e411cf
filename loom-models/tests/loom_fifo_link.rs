//! Loom model of the Xen FIFO event-channel protocol between the guest and
//! the hypervisor: Xen linking events onto a vCPU's queue (with BUSY on the
//! tail word) while that vCPU consumes the queue and another vCPU unmasks a
//! port. No raised event may be lost, and none may be unmasked without
//! being queued.
//!
//! Run with `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test
//! -p irqcore-loom-models --release --test loom_fifo_link` (preemption
//! bound 5: about 5 s).
//!
//! # What is modelled
//!
//! `xen-evtchn/src/fifo.rs` (the guest) and Xen's `evtchn_fifo_set_pending`
//! / `evtchn_fifo_unmask` as `xen-evtchn/src/model.rs` restates them (the
//! hypervisor), step for step, for one vCPU's one queue (priority is only a
//! choice of queue: each queue runs this protocol on its own) and ports 1
//! and 2:
//!
//! | code | here |
//! |---|---|
//! | model `fifo_set_pending`: under the queue lock, set P; stop if M; stop if L was set; forget the tail if it is this port; link to the tail with BUSY set around a compare-and-swap that needs the tail still L, else write `head`; tail = port; set the ready bit and, if it was clear, the upcall flag | [`xen_raise`] |
//! | model `unmask` (`EVTCHNOP_unmask`): clear M; if P, `fifo_set_pending` | [`xen_unmask`] |
//! | `Fifo::unmask`: CAS clearing M only while P and BUSY are clear (spin on BUSY), else the hypercall | [`guest_unmask`] |
//! | `Fifo::consume` + `take_one`: read `ready` (exchange it when set, and always before giving up), take the cached head or `head`, clear L and LINK in one `fetch_and`, cache LINK, clear the ready bit at the queue's end, handle if P and not M; the edge flow's ack clears P before the handler | [`guest_scan`] |
//!
//! Each raise posts a sequence number first ("data in the ring"); a
//! handler run records the last number posted when it started.
//!
//! # Properties
//!
//! After the threads finish, the vCPU runs its upcall while its flag is set
//! (as the real upcall does): then every port's last raise was seen by a
//! handler run, and no word is left LINKED with nothing queued. The model
//! can fail: an unmask that clears M while P is set (the pre-XSA-332 order
//! without the hypercall) leaves a pending event unqueued, and a consume
//! loop that ends on a plain read of `ready` (the first version of
//! `fifo.rs`) misses an event queued as it ends.
#![cfg(loom)]

use loom::sync::atomic::{AtomicBool, AtomicU32};
use loom::sync::{Arc, Mutex};
use std::sync::atomic::Ordering::SeqCst;

const PENDING: u32 = 1 << 31;
const MASKED: u32 = 1 << 30;
const LINKED: u32 = 1 << 29;
const BUSY: u32 = 1 << 28;
const LINK_MASK: u32 = (1 << 17) - 1;

/// One domain, one vCPU, one queue, ports 1 and 2 (word 0 unused).
struct Dom {
    words: [AtomicU32; 3],
    /// The control block's `ready` (bit 0: this queue) and `head[q]`.
    ready: AtomicU32,
    head: AtomicU32,
    /// `evtchn_upcall_pending`.
    upcall: AtomicBool,
    /// Xen's queue lock and the queue's tail.
    tail: Mutex<u32>,
    /// Sequence numbers posted before each raise, and the last one a
    /// handler run saw, per port.
    posted: [AtomicU32; 3],
    seen: [AtomicU32; 3],
}

impl Dom {
    fn new(masked: [bool; 3]) -> Self {
        let w = |p: usize| AtomicU32::new(if masked[p] { MASKED } else { 0 });
        Dom {
            words: [w(0), w(1), w(2)],
            ready: AtomicU32::new(0),
            head: AtomicU32::new(0),
            upcall: AtomicBool::new(false),
            tail: Mutex::new(0),
            posted: Default::default(),
            seen: Default::default(),
        }
    }
}

/// Xen links `port` (its P already set or set here) if M and L are clear.
fn xen_link(d: &Dom, port: u32, tail: &mut u32) {
    let w = &d.words[port as usize];
    w.fetch_or(PENDING, SeqCst);
    if w.load(SeqCst) & MASKED != 0 {
        return;
    }
    if w.fetch_or(LINKED, SeqCst) & LINKED != 0 {
        return;
    }
    if *tail == port {
        *tail = 0;
    }
    let mut linked = false;
    if *tail != 0 {
        let tw = &d.words[*tail as usize];
        tw.fetch_or(BUSY, SeqCst);
        let mut cur = tw.load(SeqCst);
        while cur & LINKED != 0 {
            match tw.compare_exchange(cur, (cur & !LINK_MASK) | port, SeqCst, SeqCst) {
                Ok(_) => {
                    linked = true;
                    break;
                }
                Err(now) => cur = now,
            }
        }
        tw.fetch_and(!BUSY, SeqCst);
    }
    if !linked {
        d.head.store(port, SeqCst);
    }
    *tail = port;
    if !linked && d.ready.fetch_or(1, SeqCst) & 1 == 0 {
        d.upcall.store(true, SeqCst);
    }
}

/// A peer posts data for `port` and raises it.
fn xen_raise(d: &Dom, port: u32) {
    d.posted[port as usize].fetch_add(1, SeqCst);
    let mut tail = d.tail.lock().unwrap();
    xen_link(d, port, &mut tail);
}

/// `EVTCHNOP_unmask`.
fn xen_unmask(d: &Dom, port: u32) {
    let mut tail = d.tail.lock().unwrap();
    let w = &d.words[port as usize];
    w.fetch_and(!MASKED, SeqCst);
    if w.load(SeqCst) & PENDING != 0 {
        xen_link(d, port, &mut tail);
    }
}

/// The guest's unmask (`Variant::UnmaskWhilePending`: clears M even while P
/// is set and skips the hypercall).
fn guest_unmask(d: &Dom, port: u32, v: Variant) {
    let broken = v == Variant::UnmaskWhilePending;
    let word = &d.words[port as usize];
    let mut w = word.load(SeqCst);
    loop {
        if w & PENDING != 0 && !broken {
            xen_unmask(d, port);
            return;
        }
        if w & BUSY != 0 {
            loom::thread::yield_now();
            w = word.load(SeqCst);
            continue;
        }
        match word.compare_exchange(w, w & !MASKED, SeqCst, SeqCst) {
            Ok(_) => return,
            Err(now) => w = now,
        }
    }
}

/// One upcall pass of the vCPU: clear the flag, consume. `cached` is the
/// vCPU's cached head (only this vCPU touches it).
fn guest_scan(d: &Dom, cached: &mut u32, v: Variant) {
    d.upcall.store(false, SeqCst);
    let mut ready = 0u32;
    for _ in 0..8 {
        // `Fifo::consume`: a plain read while queues are known non-empty,
        // always the exchange before giving up (the broken variant decides
        // on a plain read).
        let exchange = if v == Variant::ExitOnPlainRead {
            d.ready.load(SeqCst) != 0
        } else {
            ready == 0 || d.ready.load(SeqCst) != 0
        };
        if exchange {
            ready |= d.ready.swap(0, SeqCst);
        }
        if ready == 0 {
            return;
        }
        let mut head = *cached;
        if head == 0 {
            head = d.head.load(SeqCst);
        }
        if head == 0 {
            ready = 0;
            continue;
        }
        let w = &d.words[head as usize];
        let old = w.fetch_and(!(LINKED | LINK_MASK), SeqCst);
        let next = old & LINK_MASK;
        *cached = next;
        if next == 0 {
            ready = 0;
        }
        if old & PENDING != 0 && old & MASKED == 0 {
            // The edge flow: ack (clear P), then the handler drains.
            w.fetch_and(!PENDING, SeqCst);
            let p = head as usize;
            d.seen[p].store(d.posted[p].load(SeqCst), SeqCst);
        }
    }
    panic!("a scan of two ports took more than 8 steps: the queue has a cycle");
}

/// The guest code under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    /// `fifo.rs` as it is.
    Fifo,
    /// An unmask that clears M while P is set, without the hypercall.
    UnmaskWhilePending,
    /// A consume loop that ends on a plain read of `ready` (an earlier
    /// version of `fifo.rs`).
    ExitOnPlainRead,
}

/// Xen raises port 1 twice and port 2 once while the vCPU takes an upcall
/// and another vCPU unmasks port 2 (masked at the start); then the vCPU
/// runs its upcall until the flag stays clear.
fn run(v: Variant) {
    let d = Arc::new(Dom::new([false, false, true]));
    let x = {
        let d = d.clone();
        loom::thread::spawn(move || {
            xen_raise(&d, 2);
            xen_raise(&d, 1);
            xen_raise(&d, 1);
        })
    };
    let u = {
        let d = d.clone();
        loom::thread::spawn(move || guest_unmask(&d, 2, v))
    };
    let mut cached = 0;
    guest_scan(&d, &mut cached, v);
    x.join().unwrap();
    u.join().unwrap();
    for _ in 0..4 {
        if !d.upcall.load(SeqCst) {
            break;
        }
        guest_scan(&d, &mut cached, v);
    }
    for p in 1..3 {
        assert_eq!(
            d.seen[p].load(SeqCst),
            d.posted[p].load(SeqCst),
            "port {p}: its last raise was never handled"
        );
    }
    for p in 1..3 {
        let w = d.words[p].load(SeqCst);
        assert_eq!(w & (PENDING | LINKED), 0, "port {p} left {w:#x}");
    }
}

/// Explores every interleaving with at most `PREEMPTIONS` preemptions
/// (three threads with a dozen atomic steps each: unbounded, the search
/// does not finish in minutes; 5 takes about 5 s and both broken variants
/// fail well within it).
const PREEMPTIONS: usize = 5;

fn model(v: Variant) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(PREEMPTIONS);
    b.check(move || run(v));
}

#[test]
fn fifo_link_consume_unmask_loses_nothing() {
    model(Variant::Fifo);
}

#[test]
#[should_panic(expected = "never handled")]
fn fifo_unmask_that_clears_m_while_pending_loses_the_event() {
    model(Variant::UnmaskWhilePending);
}

/// Loom treats SeqCst as acquire/release: with the guest's flag clear and
/// a plain read of `ready` against Xen's `ready` then flag, the read can
/// miss the bit while the clear lands after Xen's set. The exchange (a
/// read-modify-write sees the latest value) closes it without relying on
/// store-load ordering of the guest's and Xen's barriers.
#[test]
#[should_panic(expected = "never handled")]
fn fifo_scan_ending_on_a_plain_read_of_ready_loses_the_event() {
    model(Variant::ExitOnPlainRead);
}
