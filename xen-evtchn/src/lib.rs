//! xen-evtchn: irqcore backend (being built; see DESIGN.md).
#![no_std]
