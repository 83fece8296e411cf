//! The reverse map of one domain: hwirq -> irq.

use super::ops::DomainKind;
use crate::ids::{HwIrq, IrqNumber};
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

/// Storage of a domain's translations. Linear domains use a table indexed by
/// hwirq (O(1), 8 bytes per possible hwirq); tree and no-map domains an
/// ordered map (O(log n), memory only for mapped hwirqs).
pub(crate) enum Revmap {
    Linear(Vec<Option<IrqNumber>>),
    Tree(BTreeMap<u64, IrqNumber>),
}

impl Revmap {
    pub(crate) fn new(kind: DomainKind) -> Self {
        match kind {
            DomainKind::Linear { size } => Revmap::Linear(alloc::vec![None; size as usize]),
            DomainKind::Tree | DomainKind::NoMap => Revmap::Tree(BTreeMap::new()),
        }
    }

    /// Whether `hwirq` can be stored at all.
    pub(crate) fn in_range(&self, hwirq: HwIrq) -> bool {
        match self {
            Revmap::Linear(v) => hwirq.0 < v.len() as u64,
            Revmap::Tree(_) => true,
        }
    }

    pub(crate) fn get(&self, hwirq: HwIrq) -> Option<IrqNumber> {
        match self {
            Revmap::Linear(v) => usize::try_from(hwirq.0)
                .ok()
                .and_then(|i| v.get(i).copied().flatten()),
            Revmap::Tree(t) => t.get(&hwirq.0).copied(),
        }
    }

    /// Stores `hwirq -> irq`. The caller checked the range and that the
    /// slot is free.
    pub(crate) fn insert(&mut self, hwirq: HwIrq, irq: IrqNumber) {
        match self {
            Revmap::Linear(v) => {
                if let Some(s) = usize::try_from(hwirq.0).ok().and_then(|i| v.get_mut(i)) {
                    *s = Some(irq);
                }
            }
            Revmap::Tree(t) => {
                t.insert(hwirq.0, irq);
            }
        }
    }

    pub(crate) fn remove(&mut self, hwirq: HwIrq) {
        match self {
            Revmap::Linear(v) => {
                if let Some(s) = usize::try_from(hwirq.0).ok().and_then(|i| v.get_mut(i)) {
                    *s = None;
                }
            }
            Revmap::Tree(t) => {
                t.remove(&hwirq.0);
            }
        }
    }

    /// Every (hwirq, irq), in hwirq order.
    pub(crate) fn entries(&self) -> Vec<(HwIrq, IrqNumber)> {
        match self {
            Revmap::Linear(v) => v
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.map(|irq| (HwIrq(i as u64), irq)))
                .collect(),
            Revmap::Tree(t) => t.iter().map(|(&h, &irq)| (HwIrq(h), irq)).collect(),
        }
    }
}
