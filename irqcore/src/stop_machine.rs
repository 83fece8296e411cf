//! Stop-machine: run a function on one CPU while every online CPU spins with
//! interrupts off.
