//! Simulated multi-CPU platform (feature `sim`): threads play CPUs.
