//! Typed identifiers: ports, vCPUs, domains, VIRQs and PIRQs.
//!
//! Newtypes so a port can never be passed where a vCPU or a PIRQ is
//! expected.

use core::fmt;
use irqcore::CpuId;

/// An event-channel port of the calling domain. Port 0 is never handed out
/// by Xen, so it also serves as "no port" in tables.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Port(pub u32);

/// A Xen vCPU id.
///
/// Xen's vCPU numbering need not equal the kernel's CPU numbering (CPUID
/// leaf base+4 EBX gives the Xen id of the running CPU); this crate assumes
/// they are equal and converts with [`VcpuId::from_cpu`] / [`VcpuId::cpu`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct VcpuId(pub u32);

/// A domain id (`domid_t`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct DomId(pub u16);

/// A virtual IRQ number (`VIRQ_*`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Virq(pub u32);

/// A physical IRQ number as Xen names it (`pirq`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pirq(pub u32);

impl Port {
    /// The port as a `usize`, for indexing.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
    /// The bitmap word holding this port (2-level).
    pub const fn word(self) -> usize {
        (self.0 / crate::abi::BITS_PER_WORD) as usize
    }
    /// The bit of this port within its word (2-level).
    pub const fn bit(self) -> u32 {
        self.0 % crate::abi::BITS_PER_WORD
    }
}

impl VcpuId {
    /// The vCPU for a kernel CPU (identity; see the type docs).
    pub const fn from_cpu(cpu: CpuId) -> Self {
        VcpuId(cpu.get())
    }
    /// The kernel CPU of this vCPU (identity), or `None` if no [`CpuId`] can
    /// name it (at or above [`irqcore::MAX_CPUS`]).
    pub const fn cpu(self) -> Option<CpuId> {
        CpuId::new(self.0)
    }
    /// The id as a `usize`, for indexing per-vCPU tables.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl DomId {
    /// `DOMID_SELF`.
    pub const SELF: DomId = DomId(crate::abi::DOMID_SELF);
}

impl Virq {
    /// Per-vCPU timer.
    pub const TIMER: Virq = Virq(0);
    /// Per-vCPU debug request.
    pub const DEBUG: Virq = Virq(1);
    /// Global: console input.
    pub const CONSOLE: Virq = Virq(2);
    /// Global: a domain exited.
    pub const DOM_EXC: Virq = Virq(3);
    /// Global: trace buffer.
    pub const TBUF: Virq = Virq(4);
    /// Global: debugger.
    pub const DEBUGGER: Virq = Virq(6);
    /// Per-vCPU: profiling.
    pub const XENOPROF: Virq = Virq(7);
    /// Global: console ring.
    pub const CON_RING: Virq = Virq(8);
    /// Global: physical CPU state change.
    pub const PCPU_STATE: Virq = Virq(9);
    /// Global: memory event.
    pub const MEM_EVENT: Virq = Virq(10);
    /// Per-domain: Argo.
    pub const ARGO: Virq = Virq(11);
    /// Global: Xen is low on memory.
    pub const ENOMEM: Virq = Virq(12);
    /// Per-vCPU: performance monitoring.
    pub const XENPMU: Virq = Virq(13);

    /// Whether this VIRQ is per-vCPU (bound on every vCPU separately, never
    /// movable) rather than global or per-domain (bound on vCPU 0, movable
    /// with `bind_vcpu`).
    pub const fn is_per_vcpu(self) -> bool {
        matches!(self.0, 0 | 1 | 7 | 13)
    }
}

macro_rules! id_fmt {
    ($t:ty, $prefix:literal) => {
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}
id_fmt!(Port, "port");
id_fmt!(VcpuId, "vcpu");
id_fmt!(DomId, "dom");
id_fmt!(Virq, "virq");
id_fmt!(Pirq, "pirq");
