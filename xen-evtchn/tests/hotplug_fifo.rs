//! The `hotplug` suite (tests/hotplug.rs, unchanged) under the FIFO ABI: the
//! shared scaffolding picks FIFO for test binaries named `*_fifo`.

#[path = "hotplug.rs"]
mod suite;
