//! The `races` suite (tests/races.rs, unchanged) under the FIFO ABI: the
//! shared scaffolding picks FIFO for test binaries named `*_fifo`.

#[path = "races.rs"]
mod suite;
