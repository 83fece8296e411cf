//! Stop-machine: run a function on one CPU while every online CPU spins with
//! interrupts off.

/// Placeholder until the stop-machine implementation lands.
pub struct StopMachine {}
impl StopMachine {
    /// New, idle.
    pub const fn new() -> Self {
        Self {}
    }
}
