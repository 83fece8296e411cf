//! Interrupt domains: hwirq -> irq translation (being written).
