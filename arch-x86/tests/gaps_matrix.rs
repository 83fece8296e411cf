//! Vector-matrix behaviour that no other test pinned (issue 17, cargo-mutants
//! survivors of `matrix.rs`): a vector taken at a fixed place, the choice of
//! CPU for a managed allocation, and the global count of free vectors.

use arch_x86::matrix::{FIRST_EXTERNAL_VECTOR, FIRST_SYSTEM_VECTOR};
use arch_x86::{Vector, VectorError, VectorMatrix};
use irqcore::{CpuId, CpuMask};

fn v(n: u8) -> Vector {
    Vector::new(n).unwrap()
}

fn cpus(list: &[u32]) -> CpuMask {
    CpuMask::from_cpus(list.iter().map(|c| CpuId::new(*c).unwrap()))
}

const WINDOW: u32 = (FIRST_SYSTEM_VECTOR.get() - FIRST_EXTERNAL_VECTOR.get()) as u32;

#[test]
fn a_fixed_vector_is_taken_only_inside_the_window_and_only_if_free_on_that_cpu() {
    let mut m = VectorMatrix::with_default_window(2).unwrap();
    let one = CpuId::of::<1>();
    m.cpu_online(CpuId::BOOT).unwrap();
    m.cpu_online(one).unwrap();
    // A legacy ISA vector the firmware set up (IRQ 1 at 0x31).
    m.assign(CpuId::BOOT, v(0x31)).unwrap();
    assert!(m.is_allocated(CpuId::BOOT, v(0x31)));
    assert_eq!(m.allocated(CpuId::BOOT), 1);
    assert_eq!(m.available(CpuId::BOOT), WINDOW - 1);
    // Taken on that CPU only: twice is refused, another CPU may take the
    // same number.
    assert_eq!(
        m.assign(CpuId::BOOT, v(0x31)),
        Err(VectorError::InUse(0x31))
    );
    m.assign(one, v(0x31)).unwrap();
    // A vector of a managed reservation is not free either.
    m.reserve_managed(&cpus(&[0])).unwrap();
    assert_eq!(m.managed(CpuId::BOOT), (1, 0));
    assert_eq!(
        m.assign(CpuId::BOOT, v(0x20)),
        Err(VectorError::InUse(0x20)),
        "0x20 is the managed reservation"
    );
    // Nor is a vector allocated by first fit.
    let (c, got) = m.alloc(&cpus(&[0])).unwrap();
    assert_eq!((c, got.get()), (CpuId::BOOT, 0x21));
    assert_eq!(m.assign(CpuId::BOOT, got), Err(VectorError::InUse(0x21)));
    // Outside the window: the first system vector (the window's end) and
    // the top of the vector space (the spurious vector, by convention).
    for outside in [FIRST_SYSTEM_VECTOR.get(), 0xFE, 0xFF] {
        assert_eq!(
            m.assign(CpuId::BOOT, v(outside)),
            Err(VectorError::BadVector(outside))
        );
        assert!(!m.is_allocated(CpuId::BOOT, v(outside)));
    }
    // Below a window that starts higher.
    let mut high = VectorMatrix::new(1, 0x40, 0x50).unwrap();
    assert_eq!(
        high.assign(CpuId::BOOT, v(0x3F)),
        Err(VectorError::BadVector(0x3F))
    );
    high.assign(CpuId::BOOT, v(0x4F)).unwrap();
    assert_eq!(
        high.assign(CpuId::BOOT, v(0x50)),
        Err(VectorError::BadVector(0x50))
    );
    assert_eq!(high.allocated(CpuId::BOOT), 1);
}

#[test]
fn managed_allocations_go_to_the_cpu_with_the_fewest_in_use_lowest_first() {
    let mut m = VectorMatrix::new(3, 0x20, 0x30).unwrap();
    for c in 0..3 {
        m.cpu_online(CpuId::new(c).unwrap()).unwrap();
    }
    // Three managed irqs spread over CPUs 0-2: three reservations each.
    for _ in 0..3 {
        m.reserve_managed(&cpus(&[0, 1, 2])).unwrap();
    }
    let seq: Vec<u32> = (0..3)
        .map(|_| m.alloc_managed(&cpus(&[0, 1, 2])).unwrap().0.get())
        .collect();
    assert_eq!(seq, [0, 1, 2], "ties: the lowest CPU");
    // CPU 1 gets one more: the next goes to the lowest of the least loaded.
    assert_eq!(m.alloc_managed(&cpus(&[1])).unwrap().0, CpuId::of::<1>());
    assert_eq!(m.alloc_managed(&cpus(&[0, 1, 2])).unwrap().0, CpuId::BOOT);
    assert_eq!(
        m.alloc_managed(&cpus(&[0, 1, 2])).unwrap().0,
        CpuId::of::<2>()
    );
    // In use now: CPU 0 two, CPU 1 two, CPU 2 two; CPU 1 offline is skipped.
    m.cpu_offline(CpuId::of::<1>()).unwrap();
    assert_eq!(m.alloc_managed(&cpus(&[1, 2])).unwrap().0, CpuId::of::<2>());
    assert_eq!(
        [0u32, 1, 2].map(|c| m.managed(CpuId::new(c).unwrap())),
        [(3, 2), (3, 2), (3, 3)]
    );
}

#[test]
fn global_available_sums_the_free_vectors_of_the_online_cpus() {
    let mut m = VectorMatrix::with_default_window(3).unwrap();
    assert_eq!(m.global_available(), 0, "no CPU online");
    m.cpu_online(CpuId::BOOT).unwrap();
    m.cpu_online(CpuId::of::<1>()).unwrap();
    assert_eq!(m.global_available(), 2 * WINDOW);
    m.alloc(&cpus(&[0])).unwrap();
    m.assign_system(v(0x80)).unwrap();
    // One taken on CPU 0, one reserved for the system on every CPU.
    assert_eq!(m.global_available(), 2 * WINDOW - 3);
    // A managed reservation on the offline CPU 2 changes nothing online...
    m.reserve_managed(&cpus(&[2])).unwrap();
    assert_eq!(m.global_available(), 2 * WINDOW - 3);
    // ...and counts once CPU 2 is online.
    m.cpu_online(CpuId::of::<2>()).unwrap();
    assert_eq!(m.global_available(), 3 * WINDOW - 5);
    let sum: u32 = (0..3).map(|c| m.available(CpuId::new(c).unwrap())).sum();
    assert_eq!(m.global_available(), sum);
}
