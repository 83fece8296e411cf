//! The `gaps_channels` suite (tests/gaps_channels.rs, unchanged) under the
//! FIFO ABI: the shared scaffolding picks FIFO for test binaries named
//! `*_fifo`.

#[path = "gaps_channels.rs"]
mod suite;
