//! FIFO event-array pages under memory pressure: binding a port whose page
//! already exists allocates no page (so it cannot fail for want of one),
//! and a port that needs a page the allocator refuses is a typed error with
//! the port given back. A global allocator refuses page-aligned allocations
//! on the thread that asks it to.

mod common;

use common::{GUEST, PEER, layout, vcpu_infos};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use xen_evtchn::model::HypervisorModel;
use xen_evtchn::{
    ChannelState, Config, EventChannelOps, EventChannels, EvtchnError, Fifo, Port, PortLayer,
    VcpuId,
};

struct RefusingPages;

thread_local! {
    /// Whether this thread's page-aligned allocations fail. Const-initialised
    /// and without a destructor, so reading it never allocates.
    static REFUSE_PAGES: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: forwards to the system allocator unchanged, except that it
// returns null (allocation failure, allowed by the contract) for
// page-aligned requests while the calling thread asked for that.
unsafe impl GlobalAlloc for RefusingPages {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if l.align() >= 4096 && REFUSE_PAGES.try_with(Cell::get).unwrap_or(false) {
            return std::ptr::null_mut();
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: RefusingPages = RefusingPages;

/// Runs `f` with this thread's page allocations refused.
fn without_pages<T>(f: impl FnOnce() -> T) -> T {
    REFUSE_PAGES.with(|c| c.set(true));
    let r = f();
    REFUSE_PAGES.with(|c| c.set(false));
    r
}

#[test]
fn ports_on_existing_pages_bind_without_memory_and_a_new_page_refused_is_a_typed_error() {
    let model = HypervisorModel::new();
    let dom = model.create_domain_with_layout(GUEST, 1, layout()).unwrap();
    model.create_domain_with_layout(PEER, 1, layout()).unwrap();
    let fifo = Fifo::new(vcpu_infos(&dom, 1, layout())).unwrap();
    fifo.prepare_vcpu(VcpuId(0), &dom).unwrap();
    let ch = EventChannels::new(
        Arc::new(dom.clone()),
        Box::new(fifo),
        Config::default(),
        Box::new(|| VcpuId(0)),
    );
    let first = ch.alloc_unbound(PEER).unwrap();
    assert_eq!(dom.fifo_pages(), 1);

    // Every other port of page 0 binds with page allocations refused.
    without_pages(|| {
        for p in first.0 + 1..1024 {
            assert_eq!(ch.alloc_unbound(PEER), Ok(Port(p)));
        }
    });
    assert_eq!(dom.fifo_pages(), 1);

    // Port 1024 needs page 1: refused, the port goes back to Xen.
    assert_eq!(
        without_pages(|| ch.alloc_unbound(PEER)),
        Err(EvtchnError::OutOfMemory)
    );
    assert_eq!(dom.status(Port(1024)).unwrap().state, ChannelState::Closed);
    assert_eq!(ch.binding(Port(1024)), None);
    assert_eq!(dom.fifo_pages(), 1);

    // With memory back, the same port binds on a fresh page.
    assert_eq!(ch.alloc_unbound(PEER), Ok(Port(1024)));
    assert_eq!(dom.fifo_pages(), 2);
    assert!(ch.layer().is_masked(Port(1024)), "bound ports start masked");
}
