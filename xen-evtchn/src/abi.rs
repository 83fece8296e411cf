//! The Xen event-channel ABIs for 64-bit guests: the 2-level shared-memory
//! layouts (x86-64 in [`x86`], arm in [`arm`]; [`SharedPage`] is either),
//! the FIFO ABI's ([`fifo`]), hypercall numbers, commands, argument
//! structures and constants.
//!
//! Everything here is a fact from Xen's public headers (`xen.h`,
//! `arch-x86/xen.h`, `arch-arm.h`, `event_channel.h`, `vcpu.h`, `memory.h`, `physdev.h`, `errno.h`), which are
//! MIT-licensed. Layouts are checked at compile time with
//! `static_assertions` so a wrong field order cannot build.
//!
//! Memory Xen writes concurrently is declared with atomic types (same size
//! and alignment as the plain integers in the headers), so the guest never
//! forms a plain reference to memory another agent mutates.

use core::mem::{offset_of, size_of};
use core::sync::atomic::{AtomicI8, AtomicU8, AtomicU32, AtomicU64};

use static_assertions::const_assert_eq;

/// Bits in one `xen_ulong_t` word of the pending/mask bitmaps (64-bit guest).
pub const BITS_PER_WORD: u32 = 64;
/// Words in the pending and mask bitmaps (`sizeof(xen_ulong_t) * 8`).
pub const NR_WORDS: usize = 64;
/// Number of 2-level ports for a 64-bit guest (`EVTCHN_2L_NR_CHANNELS`).
pub const EVTCHN_2L_NR_CHANNELS: u32 = BITS_PER_WORD * NR_WORDS as u32;
/// Number of VIRQs (`NR_VIRQS`).
pub const NR_VIRQS: u32 = 24;
/// `DOMID_SELF`: "the calling domain".
pub const DOMID_SELF: u16 = 0x7FF0;

/// Hypercall numbers (`__HYPERVISOR_*`, the same on x86 and arm).
pub mod hypercall {
    /// `__HYPERVISOR_memory_op`.
    pub const MEMORY_OP: u32 = 12;
    /// `__HYPERVISOR_xen_version`.
    pub const XEN_VERSION: u32 = 17;
    /// `__HYPERVISOR_console_io`.
    pub const CONSOLE_IO: u32 = 18;
    /// `__HYPERVISOR_vcpu_op`.
    pub const VCPU_OP: u32 = 24;
    /// `__HYPERVISOR_event_channel_op`.
    pub const EVENT_CHANNEL_OP: u32 = 32;
    /// `__HYPERVISOR_physdev_op`.
    pub const PHYSDEV_OP: u32 = 33;
    /// Size of one stub in the hypercall page (x86).
    pub const STUB_SIZE: usize = 32;
    /// The immediate of arm's `hvc` for hypercalls (`XEN_HYPERCALL_TAG`).
    pub const ARM_HVC_TAG: u16 = 0xEA1;
}

/// `VCPUOP_*` commands of `vcpu_op`.
pub mod vcpuop {
    /// Moves a vCPU's `vcpu_info` to guest memory.
    pub const REGISTER_VCPU_INFO: u32 = 10;
}

/// `XENMEM_*` commands of `memory_op` and their constants.
pub mod xenmem {
    /// Maps a Xen-owned page into the guest physical map.
    pub const ADD_TO_PHYSMAP: u32 = 7;
    /// `XENMAPSPACE_shared_info`.
    pub const MAPSPACE_SHARED_INFO: u32 = 0;
}

/// Other commands: `XENVER_version` and `CONSOLEIO_write`.
pub mod misc {
    /// `XENVER_version`: returns `major << 16 | minor`.
    pub const XENVER_VERSION: u32 = 0;
    /// `CONSOLEIO_write`.
    pub const CONSOLEIO_WRITE: u32 = 0;
}

/// `EVTCHNOP_*` commands of `event_channel_op`.
pub mod evtchnop {
    /// Bind to a port another domain allocated for us.
    pub const BIND_INTERDOMAIN: u32 = 0;
    /// Bind a virtual IRQ on a vCPU.
    pub const BIND_VIRQ: u32 = 1;
    /// Bind a physical IRQ.
    pub const BIND_PIRQ: u32 = 2;
    /// Close a port.
    pub const CLOSE: u32 = 3;
    /// Notify the other end.
    pub const SEND: u32 = 4;
    /// Query a port.
    pub const STATUS: u32 = 5;
    /// Allocate a port another domain may bind.
    pub const ALLOC_UNBOUND: u32 = 6;
    /// Bind an inter-vCPU channel.
    pub const BIND_IPI: u32 = 7;
    /// Change the vCPU that is notified.
    pub const BIND_VCPU: u32 = 8;
    /// Unmask and re-notify if pending.
    pub const UNMASK: u32 = 9;
    /// FIFO: register one vCPU's control block (the first call switches
    /// the domain to the FIFO ABI).
    pub const INIT_CONTROL: u32 = 11;
    /// FIFO: add the next page of the event array.
    pub const EXPAND_ARRAY: u32 = 12;
    /// FIFO: set a port's priority.
    pub const SET_PRIORITY: u32 = 13;
}

/// `PHYSDEVOP_*` commands of `physdev_op`.
pub mod physdevop {
    /// Query whether a PIRQ needs an EOI.
    pub const IRQ_STATUS_QUERY: u32 = 5;
    /// End of interrupt for a PIRQ.
    pub const EOI: u32 = 12;
    /// `XENIRQSTAT_needs_eoi` flag of `irq_status_query`.
    pub const XENIRQSTAT_NEEDS_EOI: u32 = 1 << 0;
}

/// `EVTCHNSTAT_*` values returned by `EVTCHNOP_status`.
pub mod evtchnstat {
    /// Free.
    pub const CLOSED: u32 = 0;
    /// Allocated, waiting for the remote end.
    pub const UNBOUND: u32 = 1;
    /// Connected to a remote port.
    pub const INTERDOMAIN: u32 = 2;
    /// Bound to a physical IRQ.
    pub const PIRQ: u32 = 3;
    /// Bound to a virtual IRQ.
    pub const VIRQ: u32 = 4;
    /// Inter-vCPU channel.
    pub const IPI: u32 = 5;
}

/// `BIND_PIRQ__WILL_SHARE` flag of `EVTCHNOP_bind_pirq`.
pub const BIND_PIRQ_WILL_SHARE: u32 = 1;

/// Xen errno values (`xen/include/public/errno.h`), as positive numbers.
pub mod errno {
    /// Operation not permitted.
    pub const EPERM: i32 = 1;
    /// No such entry (vCPU).
    pub const ENOENT: i32 = 2;
    /// No such domain.
    pub const ESRCH: i32 = 3;
    /// Try again.
    pub const EAGAIN: i32 = 11;
    /// Out of memory.
    pub const ENOMEM: i32 = 12;
    /// Permission denied.
    pub const EACCES: i32 = 13;
    /// Bad guest address.
    pub const EFAULT: i32 = 14;
    /// Busy.
    pub const EBUSY: i32 = 16;
    /// Already exists.
    pub const EEXIST: i32 = 17;
    /// Invalid argument.
    pub const EINVAL: i32 = 22;
    /// No space (no free port).
    pub const ENOSPC: i32 = 28;
    /// Not implemented.
    pub const ENOSYS: i32 = 38;
}

/// `struct vcpu_time_info`: written by Xen under a version protocol (the
/// same on x86 and arm).
#[repr(C)]
#[derive(Debug, Default)]
pub struct VcpuTimeInfo {
    /// Odd while Xen updates the record.
    pub version: AtomicU32,
    /// Padding.
    pub pad0: AtomicU32,
    /// TSC (x86) or virtual counter (arm) at the last update.
    pub tsc_timestamp: AtomicU64,
    /// System time (ns) at the last update.
    pub system_time: AtomicU64,
    /// TSC-to-ns multiplier (32.32 fixed point).
    pub tsc_to_system_mul: AtomicU32,
    /// TSC shift applied before the multiplication.
    pub tsc_shift: AtomicI8,
    /// `XEN_PVCLOCK_*` flags.
    pub flags: AtomicU8,
    /// Padding.
    pub pad1: [AtomicU8; 2],
}

/// The first 16 bytes of `struct vcpu_info`, identical on every
/// architecture: the event fields the 2-level ABI uses. Each layout's
/// [`x86::VcpuInfo`] / [`arm::VcpuInfo`] starts with it, so the port layer
/// reads either through a `&VcpuEvents`.
#[repr(C)]
#[derive(Debug, Default)]
pub struct VcpuEvents {
    /// Set to 1 by Xen when an event is waiting; cleared by the guest
    /// before it scans.
    pub evtchn_upcall_pending: AtomicU8,
    /// Upcall mask: PV x86 only (HVM/PVH delivery and arm ignore it).
    pub evtchn_upcall_mask: AtomicU8,
    /// Padding to the selector.
    pub pad: [AtomicU8; 6],
    /// Selector: bit `w` means word `w` of the pending bitmap may hold
    /// pending, unmasked ports for this vCPU.
    pub evtchn_pending_sel: AtomicU64,
}

const_assert_eq!(size_of::<VcpuTimeInfo>(), 32);
const_assert_eq!(offset_of!(VcpuTimeInfo, tsc_timestamp), 8);
const_assert_eq!(offset_of!(VcpuTimeInfo, system_time), 16);
const_assert_eq!(offset_of!(VcpuTimeInfo, tsc_to_system_mul), 24);
const_assert_eq!(offset_of!(VcpuTimeInfo, tsc_shift), 28);
const_assert_eq!(offset_of!(VcpuTimeInfo, flags), 29);
const_assert_eq!(size_of::<VcpuEvents>(), 16);
const_assert_eq!(offset_of!(VcpuEvents, evtchn_upcall_pending), 0);
const_assert_eq!(offset_of!(VcpuEvents, evtchn_upcall_mask), 1);
const_assert_eq!(offset_of!(VcpuEvents, evtchn_pending_sel), 8);

/// The x86-64 layouts (`arch-x86/xen.h`, `arch-x86/xen-x86_64.h`).
pub mod x86 {
    use super::{NR_WORDS, VcpuEvents, VcpuTimeInfo};
    use core::mem::{offset_of, size_of};
    use core::sync::atomic::{AtomicU32, AtomicU64};
    use static_assertions::{const_assert, const_assert_eq};

    /// `XEN_LEGACY_MAX_VCPUS` on x86: vCPUs whose `vcpu_info` is in
    /// `shared_info`.
    pub const LEGACY_MAX_VCPUS: usize = 32;

    /// `struct arch_vcpu_info` (x86-64).
    #[repr(C)]
    #[derive(Debug, Default)]
    pub struct ArchVcpuInfo {
        /// Faulting address of the last page fault (PV).
        pub cr2: AtomicU64,
        /// Padding.
        pub pad: AtomicU64,
    }

    /// `struct vcpu_info` (x86-64): 64 bytes.
    #[repr(C)]
    #[derive(Debug, Default)]
    pub struct VcpuInfo {
        /// Upcall flag, mask and selector.
        pub events: VcpuEvents,
        /// Architecture-specific state.
        pub arch: ArchVcpuInfo,
        /// Time record.
        pub time: VcpuTimeInfo,
    }

    /// `struct arch_shared_info` (x86-64).
    #[repr(C)]
    #[derive(Debug, Default)]
    pub struct ArchSharedInfo {
        /// Highest guest frame (PV).
        pub max_pfn: AtomicU64,
        /// Frame list for the p2m (PV).
        pub pfn_to_mfn_frame_list_list: AtomicU64,
        /// NMI reason bits.
        pub nmi_reason: AtomicU64,
        /// p2m CR3 (PV).
        pub p2m_cr3: AtomicU64,
        /// p2m virtual address (PV).
        pub p2m_vaddr: AtomicU64,
        /// p2m generation count (PV).
        pub p2m_generation: AtomicU64,
    }

    /// `struct shared_info` (x86-64): the domain-wide page (only the prefix
    /// the guest uses; Xen says the structure may grow, never depend on its
    /// total size).
    #[repr(C)]
    #[derive(Debug)]
    pub struct SharedInfo {
        /// Per-vCPU records for vCPUs 0..32.
        pub vcpu_info: [VcpuInfo; LEGACY_MAX_VCPUS],
        /// Pending bitmap, one bit per port, shared by all vCPUs.
        pub evtchn_pending: [AtomicU64; NR_WORDS],
        /// Mask bitmap; Xen only reads it.
        pub evtchn_mask: [AtomicU64; NR_WORDS],
        /// Wall-clock version.
        pub wc_version: AtomicU32,
        /// Wall-clock seconds.
        pub wc_sec: AtomicU32,
        /// Wall-clock nanoseconds.
        pub wc_nsec: AtomicU32,
        /// Upper 32 bits of the wall-clock seconds.
        pub wc_sec_hi: AtomicU32,
        /// Architecture-specific state.
        pub arch: ArchSharedInfo,
    }

    impl SharedInfo {
        /// An all-zero page, as Xen hands it to a new domain (models and
        /// tests; a kernel maps the real page instead).
        pub fn new_zeroed() -> Self {
            Self {
                vcpu_info: core::array::from_fn(|_| VcpuInfo::default()),
                evtchn_pending: [const { AtomicU64::new(0) }; NR_WORDS],
                evtchn_mask: [const { AtomicU64::new(0) }; NR_WORDS],
                wc_version: AtomicU32::new(0),
                wc_sec: AtomicU32::new(0),
                wc_nsec: AtomicU32::new(0),
                wc_sec_hi: AtomicU32::new(0),
                arch: ArchSharedInfo::default(),
            }
        }
    }

    const_assert_eq!(size_of::<ArchVcpuInfo>(), 16);
    const_assert_eq!(size_of::<VcpuInfo>(), 64);
    const_assert_eq!(offset_of!(VcpuInfo, events), 0);
    const_assert_eq!(offset_of!(VcpuInfo, arch), 16);
    const_assert_eq!(offset_of!(VcpuInfo, time), 32);
    const_assert_eq!(offset_of!(SharedInfo, vcpu_info), 0);
    const_assert_eq!(offset_of!(SharedInfo, evtchn_pending), 2048);
    const_assert_eq!(offset_of!(SharedInfo, evtchn_mask), 2560);
    const_assert_eq!(offset_of!(SharedInfo, wc_version), 3072);
    const_assert_eq!(offset_of!(SharedInfo, wc_sec_hi), 3084);
    const_assert_eq!(offset_of!(SharedInfo, arch), 3088);
    const_assert_eq!(size_of::<ArchSharedInfo>(), 48);
    const_assert!(size_of::<SharedInfo>() <= 4096);
}

/// The arm (aarch64) layouts (`arch-arm.h`): `xen_ulong_t` is 64 bits,
/// `arch_vcpu_info` and `arch_shared_info` are empty, and only vCPU 0 has a
/// `vcpu_info` in `shared_info` (`XEN_LEGACY_MAX_VCPUS` = 1); every other
/// vCPU must register one with `VCPUOP_register_vcpu_info`.
pub mod arm {
    use super::{NR_WORDS, VcpuEvents, VcpuTimeInfo};
    use core::mem::{offset_of, size_of};
    use core::sync::atomic::{AtomicU32, AtomicU64};
    use static_assertions::{const_assert, const_assert_eq};

    /// `XEN_LEGACY_MAX_VCPUS` on arm.
    pub const LEGACY_MAX_VCPUS: usize = 1;

    /// `struct vcpu_info` (arm): 48 bytes, no architecture part.
    #[repr(C)]
    #[derive(Debug, Default)]
    pub struct VcpuInfo {
        /// Upcall flag, mask (unused on arm) and selector.
        pub events: VcpuEvents,
        /// Time record.
        pub time: VcpuTimeInfo,
    }

    /// `struct shared_info` (arm): the prefix the guest uses.
    #[repr(C)]
    #[derive(Debug)]
    pub struct SharedInfo {
        /// vCPU 0's record (until it registers another one).
        pub vcpu_info: [VcpuInfo; LEGACY_MAX_VCPUS],
        /// Pending bitmap, one bit per port, shared by all vCPUs.
        pub evtchn_pending: [AtomicU64; NR_WORDS],
        /// Mask bitmap; Xen only reads it.
        pub evtchn_mask: [AtomicU64; NR_WORDS],
        /// Wall-clock version.
        pub wc_version: AtomicU32,
        /// Wall-clock seconds.
        pub wc_sec: AtomicU32,
        /// Wall-clock nanoseconds.
        pub wc_nsec: AtomicU32,
        /// Upper 32 bits of the wall-clock seconds.
        pub wc_sec_hi: AtomicU32,
    }

    impl SharedInfo {
        /// An all-zero page (models and tests).
        pub fn new_zeroed() -> Self {
            Self {
                vcpu_info: core::array::from_fn(|_| VcpuInfo::default()),
                evtchn_pending: [const { AtomicU64::new(0) }; NR_WORDS],
                evtchn_mask: [const { AtomicU64::new(0) }; NR_WORDS],
                wc_version: AtomicU32::new(0),
                wc_sec: AtomicU32::new(0),
                wc_nsec: AtomicU32::new(0),
                wc_sec_hi: AtomicU32::new(0),
            }
        }
    }

    const_assert_eq!(size_of::<VcpuInfo>(), 48);
    const_assert_eq!(offset_of!(VcpuInfo, events), 0);
    const_assert_eq!(offset_of!(VcpuInfo, time), 16);
    const_assert_eq!(offset_of!(SharedInfo, vcpu_info), 0);
    const_assert_eq!(offset_of!(SharedInfo, evtchn_pending), 48);
    const_assert_eq!(offset_of!(SharedInfo, evtchn_mask), 560);
    const_assert_eq!(offset_of!(SharedInfo, wc_version), 1072);
    const_assert_eq!(offset_of!(SharedInfo, wc_sec_hi), 1084);
    const_assert!(size_of::<SharedInfo>() <= 4096);
}

/// The layouts of the architecture this crate is built for.
#[cfg(target_arch = "aarch64")]
pub use arm::{SharedInfo, VcpuInfo};
/// The layouts of the architecture this crate is built for.
#[cfg(not(target_arch = "aarch64"))]
pub use x86::{SharedInfo, VcpuInfo};

/// `XEN_LEGACY_MAX_VCPUS` of the architecture this crate is built for.
pub const XEN_LEGACY_MAX_VCPUS: usize = Layout::NATIVE.legacy_vcpus();

/// Which architecture's `shared_info`/`vcpu_info` layout a page has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// x86-64: 32 legacy 64-byte `vcpu_info`s, pending bits at 2048.
    X86,
    /// arm/aarch64: one legacy 48-byte `vcpu_info`, pending bits at 48.
    Arm,
}

impl Layout {
    /// The layout of the architecture this crate is built for.
    #[cfg(not(target_arch = "aarch64"))]
    pub const NATIVE: Layout = Layout::X86;
    /// The layout of the architecture this crate is built for.
    #[cfg(target_arch = "aarch64")]
    pub const NATIVE: Layout = Layout::Arm;

    /// vCPUs whose `vcpu_info` is in `shared_info`.
    pub const fn legacy_vcpus(self) -> usize {
        match self {
            Layout::X86 => x86::LEGACY_MAX_VCPUS,
            Layout::Arm => arm::LEGACY_MAX_VCPUS,
        }
    }

    /// Size of one `vcpu_info`.
    pub const fn vcpu_info_size(self) -> usize {
        match self {
            Layout::X86 => size_of::<x86::VcpuInfo>(),
            Layout::Arm => size_of::<arm::VcpuInfo>(),
        }
    }
}

/// A mapped `shared_info` page of either layout: what the port layer and
/// the model need from it.
#[derive(Clone, Copy, Debug)]
pub enum SharedPage {
    /// An x86-64 page.
    X86(&'static x86::SharedInfo),
    /// An arm page.
    Arm(&'static arm::SharedInfo),
}

impl SharedPage {
    /// A zeroed page of `layout`, leaked (models and tests).
    #[cfg(feature = "model")]
    pub fn leak_zeroed(layout: Layout) -> Self {
        use alloc::boxed::Box;
        match layout {
            Layout::X86 => SharedPage::X86(Box::leak(Box::new(x86::SharedInfo::new_zeroed()))),
            Layout::Arm => SharedPage::Arm(Box::leak(Box::new(arm::SharedInfo::new_zeroed()))),
        }
    }

    /// The page's layout.
    pub fn layout(self) -> Layout {
        match self {
            SharedPage::X86(_) => Layout::X86,
            SharedPage::Arm(_) => Layout::Arm,
        }
    }

    /// The pending bitmap.
    pub fn pending(self) -> &'static [AtomicU64; NR_WORDS] {
        match self {
            SharedPage::X86(s) => &s.evtchn_pending,
            SharedPage::Arm(s) => &s.evtchn_pending,
        }
    }

    /// The mask bitmap.
    pub fn mask(self) -> &'static [AtomicU64; NR_WORDS] {
        match self {
            SharedPage::X86(s) => &s.evtchn_mask,
            SharedPage::Arm(s) => &s.evtchn_mask,
        }
    }

    /// The event fields of legacy `vcpu_info[v]` (in the page), if `v` has one.
    pub fn legacy_vcpu(self, v: usize) -> Option<&'static VcpuEvents> {
        match self {
            SharedPage::X86(s) => s.vcpu_info.get(v).map(|i| &i.events),
            SharedPage::Arm(s) => s.vcpu_info.get(v).map(|i| &i.events),
        }
    }
}

impl From<&'static x86::SharedInfo> for SharedPage {
    fn from(s: &'static x86::SharedInfo) -> Self {
        SharedPage::X86(s)
    }
}

impl From<&'static arm::SharedInfo> for SharedPage {
    fn from(s: &'static arm::SharedInfo) -> Self {
        SharedPage::Arm(s)
    }
}

const_assert_eq!(EVTCHN_2L_NR_CHANNELS, 4096);

/// `struct evtchn_alloc_unbound`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnAllocUnbound {
    /// IN: the domain to allocate in (`DOMID_SELF`).
    pub dom: u16,
    /// IN: the domain allowed to bind.
    pub remote_dom: u16,
    /// OUT: the port.
    pub port: u32,
}

/// `struct evtchn_bind_interdomain`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnBindInterdomain {
    /// IN: the remote domain.
    pub remote_dom: u16,
    /// Padding.
    pub pad: u16,
    /// IN: the remote (unbound) port.
    pub remote_port: u32,
    /// OUT: the local port.
    pub local_port: u32,
}

/// `struct evtchn_bind_virq`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnBindVirq {
    /// IN: the VIRQ.
    pub virq: u32,
    /// IN: the vCPU.
    pub vcpu: u32,
    /// OUT: the port.
    pub port: u32,
}

/// `struct evtchn_bind_pirq`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnBindPirq {
    /// IN: the PIRQ.
    pub pirq: u32,
    /// IN: `BIND_PIRQ__WILL_SHARE`.
    pub flags: u32,
    /// OUT: the port.
    pub port: u32,
}

/// `struct evtchn_bind_ipi`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnBindIpi {
    /// IN: the vCPU.
    pub vcpu: u32,
    /// OUT: the port.
    pub port: u32,
}

/// `struct evtchn_close`, `evtchn_send` and `evtchn_unmask` (one port).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnPort {
    /// IN: the port.
    pub port: u32,
}

/// `struct evtchn_bind_vcpu`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnBindVcpu {
    /// IN: the port.
    pub port: u32,
    /// IN: the new notify vCPU.
    pub vcpu: u32,
}

/// `struct evtchn_status`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnStatus {
    /// IN: domain (`DOMID_SELF`).
    pub dom: u16,
    /// Padding.
    pub pad: u16,
    /// IN: port.
    pub port: u32,
    /// OUT: `EVTCHNSTAT_*`.
    pub status: u32,
    /// OUT: notify vCPU.
    pub vcpu: u32,
    /// OUT: the union: `unbound.dom` (low 16 bits of word 0),
    /// `interdomain.{dom, port}` (word 0 low 16, word 1), `pirq` or `virq`
    /// (word 0).
    pub u: [u32; 2],
}

/// `struct physdev_eoi` and the IN half of `physdev_irq_status_query`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PhysdevIrqStatusQuery {
    /// IN: the PIRQ.
    pub irq: u32,
    /// OUT: `XENIRQSTAT_*` flags.
    pub flags: u32,
}

const_assert_eq!(size_of::<EvtchnAllocUnbound>(), 8);
const_assert_eq!(size_of::<EvtchnBindInterdomain>(), 12);
const_assert_eq!(size_of::<EvtchnBindVirq>(), 12);
const_assert_eq!(size_of::<EvtchnBindPirq>(), 12);
const_assert_eq!(size_of::<EvtchnBindIpi>(), 8);
const_assert_eq!(size_of::<EvtchnPort>(), 4);
const_assert_eq!(size_of::<EvtchnBindVcpu>(), 8);
const_assert_eq!(size_of::<EvtchnStatus>(), 24);
const_assert_eq!(offset_of!(EvtchnStatus, u), 16);
const_assert_eq!(size_of::<PhysdevIrqStatusQuery>(), 8);

/// `struct vcpu_register_vcpu_info`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuRegisterVcpuInfo {
    /// IN: guest frame of the new `vcpu_info`.
    pub mfn: u64,
    /// IN: its offset in that frame (it must not cross the frame's end).
    pub offset: u32,
    /// Reserved, zero.
    pub rsvd: u32,
}

/// `struct xen_add_to_physmap`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenAddToPhysmap {
    /// IN: `DOMID_SELF`.
    pub domid: u16,
    /// IN: number of pages for `XENMAPSPACE_gmfn_range` (else 0).
    pub size: u16,
    /// IN: `XENMAPSPACE_*`.
    pub space: u32,
    /// IN: index in the space (0 for `shared_info`).
    pub idx: u64,
    /// IN: the guest frame to map it at.
    pub gpfn: u64,
}

const_assert_eq!(size_of::<VcpuRegisterVcpuInfo>(), 16);
const_assert_eq!(size_of::<XenAddToPhysmap>(), 24);
const_assert_eq!(offset_of!(XenAddToPhysmap, space), 4);
const_assert_eq!(offset_of!(XenAddToPhysmap, gpfn), 16);

/// The FIFO ABI (`event_channel.h`, "FIFO-based event channel ABI"): the
/// event word, the per-vCPU control block, an event-array page and the
/// three hypercall argument structures.
pub mod fifo {
    use super::*;

    /// `EVTCHN_FIFO_PRIORITY_MAX`: the highest priority (queue 0).
    pub const PRIORITY_MAX: u32 = 0;
    /// `EVTCHN_FIFO_PRIORITY_DEFAULT`.
    pub const PRIORITY_DEFAULT: u32 = 7;
    /// `EVTCHN_FIFO_PRIORITY_MIN`: the lowest priority (queue 15).
    pub const PRIORITY_MIN: u32 = 15;
    /// `EVTCHN_FIFO_MAX_QUEUES`: one queue per priority.
    pub const MAX_QUEUES: usize = 16;
    /// `EVTCHN_FIFO_LINK_BITS`.
    pub const LINK_BITS: u32 = 17;
    /// `EVTCHN_FIFO_LINK_MASK`: the LINK field of an event word.
    pub const LINK_MASK: u32 = (1 << LINK_BITS) - 1;
    /// `EVTCHN_FIFO_NR_CHANNELS`.
    pub const NR_CHANNELS: u32 = 1 << LINK_BITS;
    /// Bit `EVTCHN_FIFO_PENDING` (31) of an event word.
    pub const PENDING: u32 = 1 << 31;
    /// Bit `EVTCHN_FIFO_MASKED` (30).
    pub const MASKED: u32 = 1 << 30;
    /// Bit `EVTCHN_FIFO_LINKED` (29): the event is on a queue.
    pub const LINKED: u32 = 1 << 29;
    /// Bit `EVTCHN_FIFO_BUSY` (28): Xen is writing this word's LINK.
    pub const BUSY: u32 = 1 << 28;
    /// Event words per 4 KiB event-array page
    /// (`EVTCHN_FIFO_EVENT_WORDS_PER_PAGE`).
    pub const WORDS_PER_PAGE: u32 = 1024;
    /// Most event-array pages (`EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES`).
    pub const MAX_PAGES: u32 = NR_CHANNELS / WORDS_PER_PAGE;

    /// `struct evtchn_fifo_control_block`, one per vCPU. Xen writes
    /// `ready` and `head` concurrently with the guest.
    #[repr(C)]
    #[derive(Debug, Default)]
    pub struct ControlBlock {
        /// Bit `q` set: queue `q` may be non-empty.
        pub ready: AtomicU32,
        /// Reserved.
        pub rsvd: AtomicU32,
        /// Each queue's head port (0: empty, or take the LINK chain).
        pub head: [AtomicU32; MAX_QUEUES],
    }

    /// One page of the event array: 1024 event words (`event_word_t`).
    #[repr(C, align(4096))]
    #[derive(Debug)]
    pub struct EventPage(pub [AtomicU32; WORDS_PER_PAGE as usize]);

    /// A page that holds one vCPU's [`ControlBlock`] at offset 0 (the
    /// control block may not cross a page end, so a page of its own is the
    /// simplest placement).
    #[repr(C, align(4096))]
    #[derive(Debug, Default)]
    pub struct ControlPage(pub ControlBlock);

    /// `struct evtchn_init_control`.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct EvtchnInitControl {
        /// IN: guest frame of the control block.
        pub control_gfn: u64,
        /// IN: its offset in that frame (8-aligned).
        pub offset: u32,
        /// IN: the vCPU.
        pub vcpu: u32,
        /// OUT: `EVTCHN_FIFO_LINK_BITS`.
        pub link_bits: u8,
        /// Padding.
        pub pad: [u8; 7],
    }

    /// `struct evtchn_expand_array`.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct EvtchnExpandArray {
        /// IN: guest frame of the new event-array page.
        pub array_gfn: u64,
    }

    /// `struct evtchn_set_priority`.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct EvtchnSetPriority {
        /// IN: the port.
        pub port: u32,
        /// IN: 0 (highest) ..= 15.
        pub priority: u32,
    }

    const_assert_eq!(size_of::<ControlBlock>(), 72);
    const_assert_eq!(offset_of!(ControlBlock, head), 8);
    const_assert_eq!(size_of::<EventPage>(), 4096);
    const_assert_eq!(size_of::<ControlPage>(), 4096);
    const_assert_eq!(size_of::<EvtchnInitControl>(), 24);
    const_assert_eq!(offset_of!(EvtchnInitControl, offset), 8);
    const_assert_eq!(offset_of!(EvtchnInitControl, vcpu), 12);
    const_assert_eq!(offset_of!(EvtchnInitControl, link_bits), 16);
    const_assert_eq!(size_of::<EvtchnExpandArray>(), 8);
    const_assert_eq!(size_of::<EvtchnSetPriority>(), 8);
    const_assert_eq!(NR_CHANNELS, 131_072);
    const_assert_eq!(MAX_PAGES, 128);
}
