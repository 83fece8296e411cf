//! arch-x86: irqcore backend (being built; see DESIGN.md).
#![no_std]
