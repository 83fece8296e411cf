//! The `gaps_bindings` suite (tests/gaps_bindings.rs, unchanged) under the FIFO ABI: the
//! shared scaffolding picks FIFO for test binaries named `*_fifo`.

#[path = "gaps_bindings.rs"]
mod suite;
