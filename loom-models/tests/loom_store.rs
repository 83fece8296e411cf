//! Loom model of the descriptor store's reclamation protocol: a CPU that
//! looked a descriptor up never sees it freed while it uses it, and a
//! hotplug walk under the sparse lock sees a stable set.
//!
//! The light read side (`CpuEpoch::enter_irq_light`: a plain store, no
//! locked instruction) is sound only with the platform's asymmetric barrier
//! (`Platform::synchronize_cpus`, run by `grace::synchronize_for`). Loom
//! cannot make another thread execute a fence, so the barrier is modelled
//! as the IPI handshake a kernel implements ([`IpiBarrier`]): the writer
//! raises a request and waits for the reader's acknowledgement; the reader
//! serves it (a `SeqCst` fence, then a release acknowledgement) between any
//! two of its steps, as an interrupt arriving there would, and keeps
//! serving after its last step (an idle CPU takes the IPI). What is
//! model-checked: every placement of that barrier point relative to the
//! reader's entering store, pointer load, use and exit. Not modelled: a
//! barrier point *inside* `CpuEpoch::begin` (between its depth and counter
//! stores it is equivalent to before the counter store, after it to
//! after), and the compiler fence that keeps the pointer load after the
//! entering store (loom executes the program order as written).
//!
//! Run: RUSTFLAGS="--cfg loom" cargo test -p irqcore-loom-models --release --test loom_store
#![cfg(loom)]

use irqcore_loom_models::grace::{CpuEpoch, synchronize, synchronize_for};
use irqcore_loom_models::{CpuId, IrqFlags, Platform};
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicUsize, Ordering, fence};

/// `Platform::synchronize_cpus` as a kernel implements it for one other
/// CPU: a request (an IPI) and the acknowledgement of its handler.
struct IpiBarrier {
    requested: AtomicU32,
    served: AtomicU32,
    /// The writer is done: the reader may stop serving.
    done: AtomicBool,
}

impl IpiBarrier {
    fn new() -> Self {
        Self {
            requested: AtomicU32::new(0),
            served: AtomicU32::new(0),
            done: AtomicBool::new(false),
        }
    }

    /// The reader CPU takes a pending barrier IPI, if any: a full fence,
    /// then the acknowledgement.
    fn serve(&self) {
        let want = self.requested.load(Ordering::Acquire);
        if self.served.load(Ordering::Relaxed) < want {
            fence(Ordering::SeqCst);
            self.served.store(want, Ordering::Release);
        }
    }

    /// The reader CPU after its last step: idle, it takes IPIs until the
    /// writer is done.
    fn idle(&self) {
        while !self.done.load(Ordering::Acquire) {
            self.serve();
            loom::thread::yield_now();
        }
    }
}

/// The writer CPU's platform: `synchronize_cpus` is the handshake.
struct BarrierPlatform(Arc<IpiBarrier>);

impl Platform for BarrierPlatform {
    const SYNCHRONIZE_CPUS: bool = true;
    fn synchronize_cpus(&self) {
        let generation = self.0.requested.fetch_add(1, Ordering::AcqRel) + 1;
        while self.0.served.load(Ordering::Acquire) < generation {
            loom::thread::yield_now();
        }
    }
    fn current_cpu(&self) -> CpuId {
        CpuId::of::<1>()
    }
    fn local_irq_save(&self) -> IrqFlags {
        IrqFlags(0)
    }
    fn local_irq_restore(&self, _flags: IrqFlags) {}
    fn local_irq_enabled(&self) -> bool {
        false
    }
    fn cpu_relax(&self) {
        loom::thread::yield_now();
    }
}

/// The dispatcher on CPU 0 with the light entry, the barrier IPI taken
/// between any two steps: looks up `slot` and checks the object is alive.
fn light_reader(e: &[CpuEpoch; 2], s: &AtomicPtr<Desc>, b: &IpiBarrier) {
    b.serve();
    e[0].enter_irq_light();
    b.serve();
    let p = s.load(Ordering::SeqCst);
    b.serve();
    if !p.is_null() {
        // SAFETY: the model keeps the object alive (an Arc); `freed` stands
        // for reclamation, which must not have happened.
        assert!(
            !unsafe { &*p }.freed.load(Ordering::SeqCst),
            "read freed memory"
        );
    }
    b.serve();
    e[0].exit_irq();
    b.idle();
}

/// Lookup with the light read side concurrent with a free that waits with
/// `synchronize_for` (barrier, then the grace period): never a use after
/// free.
#[test]
fn light_lookup_concurrent_with_free_never_reads_freed_memory() {
    loom::model(|| {
        let epochs = Arc::new([CpuEpoch::new(), CpuEpoch::new()]);
        let barrier = Arc::new(IpiBarrier::new());
        let desc = Arc::new(Desc {
            freed: AtomicBool::new(false),
        });
        let slot = Arc::new(AtomicPtr::new(Arc::as_ptr(&desc) as *mut Desc));
        let (e, s, b) = (epochs.clone(), slot.clone(), barrier.clone());
        let reader = loom::thread::spawn(move || light_reader(&e, &s, &b));
        slot.store(std::ptr::null_mut(), Ordering::SeqCst);
        synchronize_for(&BarrierPlatform(barrier.clone()), &epochs[..], Some(1));
        desc.freed.store(true, Ordering::SeqCst);
        barrier.done.store(true, Ordering::Release);
        reader.join().unwrap();
    });
}

/// The same with a view swap (`publish_view` then `retire`): the swapped
/// out view is never dropped while the light reader uses it.
#[test]
fn light_view_swap_never_drops_a_view_in_use() {
    loom::model(|| {
        let epochs = Arc::new([CpuEpoch::new(), CpuEpoch::new()]);
        let barrier = Arc::new(IpiBarrier::new());
        let old = Arc::new(Desc {
            freed: AtomicBool::new(false),
        });
        let new = Arc::new(Desc {
            freed: AtomicBool::new(false),
        });
        let view = Arc::new(AtomicPtr::new(Arc::as_ptr(&old) as *mut Desc));
        let (e, v, b) = (epochs.clone(), view.clone(), barrier.clone());
        let reader = loom::thread::spawn(move || light_reader(&e, &v, &b));
        let replaced = view.swap(Arc::as_ptr(&new) as *mut Desc, Ordering::AcqRel);
        synchronize_for(&BarrierPlatform(barrier.clone()), &epochs[..], Some(1));
        // SAFETY: the model keeps both views alive (the Arcs).
        unsafe { &*replaced }.freed.store(true, Ordering::SeqCst);
        barrier.done.store(true, Ordering::Release);
        reader.join().unwrap();
    });
}

/// The light entry without the barrier (a writer that waits with plain
/// `synchronize`) is unsound, and the model sees it: the reader's plain
/// store can still be invisible when the writer snapshots the slots. This
/// shows the tests above can fail.
#[test]
#[should_panic(expected = "read freed memory")]
fn light_entry_without_the_barrier_is_caught() {
    loom::model(|| {
        let epochs = Arc::new([CpuEpoch::new(), CpuEpoch::new()]);
        let barrier = Arc::new(IpiBarrier::new());
        let desc = Arc::new(Desc {
            freed: AtomicBool::new(false),
        });
        let slot = Arc::new(AtomicPtr::new(Arc::as_ptr(&desc) as *mut Desc));
        let (e, s, b) = (epochs.clone(), slot.clone(), barrier.clone());
        let reader = loom::thread::spawn(move || light_reader(&e, &s, &b));
        slot.store(std::ptr::null_mut(), Ordering::SeqCst);
        synchronize(&epochs[..], Some(1), &|| loom::thread::yield_now());
        desc.freed.store(true, Ordering::SeqCst);
        barrier.done.store(true, Ordering::Release);
        reader.join().unwrap();
    });
}

/// A descriptor stand-in: `freed` models the memory being reclaimed.
struct Desc {
    freed: AtomicBool,
}

#[test]
fn lookup_concurrent_with_free_never_reads_freed_memory() {
    loom::model(|| {
        let epochs = Arc::new([CpuEpoch::new(), CpuEpoch::new()]);
        let desc = Arc::new(Desc {
            freed: AtomicBool::new(false),
        });
        let slot = Arc::new(AtomicPtr::new(Arc::as_ptr(&desc) as *mut Desc));

        // CPU 0 dispatches: enter a section, look up, use, leave.
        let (e, s) = (epochs.clone(), slot.clone());
        let reader = loom::thread::spawn(move || {
            e[0].enter();
            let p = s.load(Ordering::SeqCst);
            if !p.is_null() {
                // SAFETY: the model keeps `desc` alive (the Arc); `freed`
                // stands for reclamation, which must not have happened.
                let d = unsafe { &*p };
                assert!(!d.freed.load(Ordering::SeqCst), "read freed descriptor");
            }
            e[0].exit();
        });

        // CPU 1 frees: unpublish, wait for a grace period, reclaim.
        slot.store(std::ptr::null_mut(), Ordering::SeqCst);
        synchronize(&epochs[..], Some(1), &|| loom::thread::yield_now());
        desc.freed.store(true, Ordering::SeqCst);
        reader.join().unwrap();
    });
}

/// The published view of a descriptor (`IrqDesc::view`, read by the
/// per-CPU flows without the lock): a writer swaps in a new view and drops
/// the old one after a grace period; a reader that loaded either never
/// sees it dropped while it uses it.
#[test]
fn view_swap_never_drops_a_view_in_use() {
    loom::model(|| {
        let epochs = Arc::new([CpuEpoch::new(), CpuEpoch::new()]);
        let old = Arc::new(Desc {
            freed: AtomicBool::new(false),
        });
        let new = Arc::new(Desc {
            freed: AtomicBool::new(false),
        });
        let view = Arc::new(AtomicPtr::new(Arc::as_ptr(&old) as *mut Desc));
        let (e, v) = (epochs.clone(), view.clone());
        let reader = loom::thread::spawn(move || {
            e[0].enter_irq();
            let p = v.load(Ordering::Acquire);
            // SAFETY: the model keeps both views alive (the Arcs); `freed`
            // stands for the drop, which must not have happened.
            assert!(
                !unsafe { &*p }.freed.load(Ordering::SeqCst),
                "read a dropped view"
            );
            e[0].exit_irq();
        });
        // `publish_view` (under the descriptor lock), then `retire`.
        let replaced = view.swap(Arc::as_ptr(&new) as *mut Desc, Ordering::AcqRel);
        synchronize(&epochs[..], Some(1), &|| loom::thread::yield_now());
        // SAFETY: as above.
        unsafe { &*replaced }.freed.store(true, Ordering::SeqCst);
        reader.join().unwrap();
    });
}

#[test]
fn nested_sections_keep_the_grace_period_open() {
    loom::model(|| {
        let epochs = Arc::new([CpuEpoch::new(), CpuEpoch::new()]);
        let desc = Arc::new(Desc {
            freed: AtomicBool::new(false),
        });
        let slot = Arc::new(AtomicPtr::new(Arc::as_ptr(&desc) as *mut Desc));
        let (e, s) = (epochs.clone(), slot.clone());
        let reader = loom::thread::spawn(move || {
            // Process context section with an interrupt nesting inside it.
            e[0].enter();
            e[0].enter();
            e[0].exit();
            let p = s.load(Ordering::SeqCst);
            if !p.is_null() {
                // SAFETY: as above.
                assert!(!unsafe { &*p }.freed.load(Ordering::SeqCst));
            }
            e[0].exit();
        });
        slot.store(std::ptr::null_mut(), Ordering::SeqCst);
        synchronize(&epochs[..], Some(1), &|| loom::thread::yield_now());
        desc.freed.store(true, Ordering::SeqCst);
        reader.join().unwrap();
    });
}

#[test]
fn walk_under_sparse_lock_sees_a_stable_set() {
    loom::model(|| {
        let sparse = Arc::new(loom::sync::Mutex::new(()));
        let present = Arc::new([AtomicBool::new(true), AtomicBool::new(false)]);
        let allocated = Arc::new(AtomicUsize::new(1));
        // An allocator adds one descriptor under the sparse lock.
        let (l, p, a) = (sparse.clone(), present.clone(), allocated.clone());
        let alloc = loom::thread::spawn(move || {
            let _g = l.lock().unwrap();
            p[1].store(true, Ordering::SeqCst);
            a.fetch_add(1, Ordering::SeqCst);
        });
        // Hotplug walks twice under the lock: both walks agree.
        {
            let _g = sparse.lock().unwrap();
            let walk = || present.iter().filter(|x| x.load(Ordering::SeqCst)).count();
            let first = walk();
            let second = walk();
            assert_eq!(first, second);
            assert_eq!(first, allocated.load(Ordering::SeqCst));
        }
        alloc.join().unwrap();
    });
}
