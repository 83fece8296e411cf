//! PSCI (Arm DEN 0022D) through the HVC conduit: QEMU `virt` started at EL1
//! (no EL2/EL3 firmware) emulates PSCI 0.2+ and advertises
//! `method = "hvc"` in its device tree.

use core::arch::asm;

/// `CPU_OFF` (SMC32 function id).
const CPU_OFF: u32 = 0x8400_0002;
/// `CPU_ON` (SMC64 function id).
const CPU_ON: u32 = 0xC400_0003;
/// `AFFINITY_INFO` (SMC64 function id).
const AFFINITY_INFO: u32 = 0xC400_0004;

/// PSCI return codes (DEN 0022D 5.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsciError {
    /// -1
    NotSupported,
    /// -2
    InvalidParameters,
    /// -3
    Denied,
    /// -4
    AlreadyOn,
    /// -5
    OnPending,
    /// Any other negative value.
    Other(i64),
}

fn call(func: u32, a1: u64, a2: u64, a3: u64) -> i64 {
    let mut x0 = u64::from(func);
    // SAFETY: HVC #0 with a PSCI function id is handled by QEMU's PSCI
    // emulation (no EL2 code runs); per SMCCC it returns in x0 and may
    // clobber x1..x17, which `clobber_abi("C")` covers. CPU_OFF does not
    // return on success.
    unsafe {
        asm!(
            "hvc #0",
            inout("x0") x0,
            inout("x1") a1 => _,
            inout("x2") a2 => _,
            inout("x3") a3 => _,
            clobber_abi("C"),
            options(nostack)
        )
    };
    x0 as i64
}

fn result(r: i64) -> Result<i64, PsciError> {
    match r {
        r if r >= 0 => Ok(r),
        -1 => Err(PsciError::NotSupported),
        -2 => Err(PsciError::InvalidParameters),
        -3 => Err(PsciError::Denied),
        -4 => Err(PsciError::AlreadyOn),
        -5 => Err(PsciError::OnPending),
        r => Err(PsciError::Other(r)),
    }
}

/// Starts the CPU with MPIDR affinity `target` at physical address `entry`
/// (MMU off, EL1) with `context` in x0.
pub fn cpu_on(target: u64, entry: u64, context: u64) -> Result<(), PsciError> {
    result(call(CPU_ON, target, entry, context)).map(|_| ())
}

/// Powers the calling CPU off; returns only on failure.
pub fn cpu_off() -> PsciError {
    match result(call(CPU_OFF, 0, 0, 0)) {
        Ok(_) => PsciError::Other(0),
        Err(e) => e,
    }
}

/// State of a CPU as `AFFINITY_INFO` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AffinityState {
    /// Running.
    On,
    /// Powered off.
    Off,
    /// Being started.
    OnPending,
}

/// The power state of the CPU with MPIDR affinity `target` (level 0);
/// `Err(InvalidParameters)` if no such CPU exists.
pub fn affinity_info(target: u64) -> Result<AffinityState, PsciError> {
    match result(call(AFFINITY_INFO, target, 0, 0))? {
        0 => Ok(AffinityState::On),
        1 => Ok(AffinityState::Off),
        2 => Ok(AffinityState::OnPending),
        r => Err(PsciError::Other(r)),
    }
}
