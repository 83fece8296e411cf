#![no_main]
//! cargo-fuzz entry point; the harness lives in `irqcore-fuzz-harness`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| irqcore_fuzz_harness::flow_handlers(data));
