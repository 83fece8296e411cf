//! Loom model of the descriptor store's reclamation protocol: a CPU that
//! looked a descriptor up never sees it freed while it uses it, and a
//! hotplug walk under the sparse lock sees a stable set.
//!
//! Run: RUSTFLAGS="--cfg loom" cargo test -p irqcore-loom-models --release --test loom_store
#![cfg(loom)]

use irqcore_loom_models::grace::{CpuEpoch, synchronize};
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};

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
