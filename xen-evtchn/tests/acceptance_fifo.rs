//! The `acceptance` suite (tests/acceptance.rs, unchanged) under the FIFO ABI: the
//! shared scaffolding picks FIFO for test binaries named `*_fifo`.

#[path = "acceptance.rs"]
mod suite;
