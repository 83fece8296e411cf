//! The `gaps_hotplug` suite (tests/gaps_hotplug.rs, unchanged) under the
//! FIFO ABI: the shared scaffolding picks FIFO for test binaries named
//! `*_fifo`.

#[path = "gaps_hotplug.rs"]
mod suite;
