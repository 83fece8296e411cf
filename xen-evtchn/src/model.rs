//! A behavioural model of Xen's event channels (2-level ABI) for host
//! tests: domains with port tables, a real `shared_info` page per domain
//! (of either layout, [`Layout`]; `VCPUOP_register_vcpu_info` moves a
//! vCPU's `vcpu_info` as on Xen)
//! (the guest layer reads and writes it exactly as it would Xen's), and the
//! hypercalls with Xen's semantics and error codes (reference sections 1
//! and 3).
//!
//! Notification rule: raising a port sets its pending bit; only a 0 -> 1
//! change of pending, then (if the port is unmasked) a 0 -> 1 change of the
//! notify vCPU's selector bit, then a 0 -> 1 change of its
//! `evtchn_upcall_pending`, counts as a notification of that vCPU
//! ([`HypervisorModel::notifications`]). A masked port's raise touches
//! neither selector nor flag.
//!
//! FIFO ([`crate::fifo`]): the first `EVTCHNOP_init_control` switches a
//! domain to FIFO as Xen does (2-level pending bits carried into a saved
//! flag, replayed when the port's event-array page arrives; every priority
//! reset to 7). A raise sets P, and if M and L are clear links the event
//! at the tail of (notify vCPU, priority): LINK written into the tail word
//! by compare-and-swap only while that word is still L, with B set around
//! the write, else `head[q]` written and the ready bit set (a 0 -> 1 change
//! of `ready` then of `evtchn_upcall_pending` counts as a notification).
//! A vCPU without a control block drops the event (P stays set). An event
//! linked when its channel moves stays on its old queue. A port whose word
//! is still L is not handed out again. [`HypervisorModel::set_fifo_available`]
//! plays a Xen without FIFO (`-ENOSYS`).
//!
//! Each domain's shared page is leaked (`Box::leak`) so the guest can hold
//! a `&'static` to it as it would to the real mapped page; a model is test
//! infrastructure, and one page per domain is a bounded leak.

use crate::abi::fifo::{
    BUSY, ControlBlock, ControlPage, EventPage, LINK_BITS, LINK_MASK, LINKED, MASKED, MAX_PAGES,
    MAX_QUEUES, NR_CHANNELS, PENDING, PRIORITY_DEFAULT, PRIORITY_MIN, WORDS_PER_PAGE,
};
use crate::abi::{EVTCHN_2L_NR_CHANNELS, Layout, NR_VIRQS, SharedPage, VcpuEvents};
use crate::error::XenError;
use crate::ids::{DomId, Pirq, Port, VcpuId, Virq};
use crate::ops::{ChannelState, ChannelStatus, EventChannelOps};
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use spin::Mutex;

/// Most vCPUs a model domain may have.
pub const MODEL_MAX_VCPUS: u32 = 32;
/// Number of PIRQs each model domain has (`d->nr_pirqs`).
pub const MODEL_NR_PIRQS: u32 = 256;
/// Ports are allocated to a domain in buckets of this many: ports inside
/// the allocated range but free report "closed"; ports beyond it are
/// `-EINVAL` (Xen grows its port table in buckets too).
const BUCKET: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChanState {
    Free,
    Reserved,
    Unbound {
        remote_dom: DomId,
    },
    Interdomain {
        remote_dom: DomId,
        remote_port: Port,
    },
    Pirq(Pirq),
    Virq(Virq),
    Ipi,
}

#[derive(Clone, Copy, Debug)]
struct Channel {
    state: ChanState,
    notify_vcpu: u32,
    /// FIFO priority (queue index).
    priority: u8,
    /// FIFO: raised while the port's event-array page was missing.
    saved_pending: bool,
}

const FREE: Channel = Channel {
    state: ChanState::Free,
    notify_vcpu: 0,
    priority: PRIORITY_DEFAULT as u8,
    saved_pending: false,
};

/// A domain's FIFO state (after its first `EVTCHNOP_init_control`).
struct FifoDomain {
    controls: Vec<Option<&'static ControlBlock>>,
    pages: Vec<&'static EventPage>,
    /// Per vCPU and queue: the last port Xen appended (0: none).
    tails: Vec<[u32; MAX_QUEUES]>,
}

impl FifoDomain {
    fn word(&self, port: Port) -> Option<&'static core::sync::atomic::AtomicU32> {
        let page = self.pages.get((port.0 / WORDS_PER_PAGE) as usize)?;
        page.0.get((port.0 % WORDS_PER_PAGE) as usize)
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct PirqState {
    needs_eoi: bool,
    port: Option<Port>,
    /// Delivered, waiting for the guest's EOI (Xen keeps the physical line
    /// masked meanwhile).
    in_service: bool,
    /// The line fired again while in service: raise after the EOI.
    asserted_again: bool,
    eois: u64,
}

struct Domain {
    shared: SharedPage,
    /// Where each vCPU's event fields are: its legacy slot, a registered
    /// record, or (arm vCPUs >= 1 before registering) a dummy Xen writes
    /// and nobody reads.
    vcpu_info: Vec<&'static VcpuEvents>,
    registered: Vec<bool>,
    nr_vcpus: u32,
    vcpu_up: Vec<bool>,
    channels: Vec<Channel>,
    virq_to_port: Vec<[u32; NR_VIRQS as usize]>,
    pirqs: BTreeMap<u32, PirqState>,
    notifications: Vec<u64>,
    fifo: Option<FifoDomain>,
    fifo_available: bool,
    /// `max_evtchn_port` of the domain's configuration.
    max_evtchn_port: u32,
}

impl Domain {
    fn max_ports(&self) -> usize {
        let abi = if self.fifo.is_some() {
            NR_CHANNELS
        } else {
            EVTCHN_2L_NR_CHANNELS
        };
        abi.min(self.max_evtchn_port.saturating_add(1)) as usize
    }

    /// FIFO: a port whose event is still linked is busy (not reusable).
    fn is_busy(&self, port: usize) -> bool {
        self.fifo
            .as_ref()
            .and_then(|f| f.word(Port(port as u32)))
            .is_some_and(|w| w.load(Ordering::SeqCst) & LINKED != 0)
    }

    fn chan(&self, port: Port) -> Result<&Channel, XenError> {
        self.channels.get(port.index()).ok_or(XenError::Invalid)
    }

    /// The lowest free port (port 0 is reserved at creation).
    fn free_port(&self) -> Result<Port, XenError> {
        match self.channels.iter().enumerate().position(|(p, c)| {
            c.state == ChanState::Free && p < self.max_ports() && !self.is_busy(p)
        }) {
            Some(p) => Ok(Port(p as u32)),
            None if self.channels.len() < self.max_ports() => Ok(Port(self.channels.len() as u32)),
            None => Err(XenError::NoFreePort),
        }
    }

    fn allocate(&mut self, state: ChanState, notify_vcpu: u32) -> Result<Port, XenError> {
        let port = self.free_port()?;
        if port.index() >= self.channels.len() {
            let new_len = (port.index() / BUCKET + 1) * BUCKET;
            self.channels.resize(new_len.min(self.max_ports()), FREE);
        }
        self.channels[port.index()] = Channel {
            state,
            notify_vcpu,
            ..FREE
        };
        Ok(port)
    }

    fn check_vcpu(&self, vcpu: VcpuId) -> Result<(), XenError> {
        if vcpu.0 < self.nr_vcpus {
            Ok(())
        } else {
            Err(XenError::NoSuchVcpu)
        }
    }

    /// `vcpu_mark_events_pending`: notifies only on a 0 -> 1 change.
    fn mark_events_pending(&mut self, vcpu: u32) {
        let Some(vi) = self.vcpu_info.get(vcpu as usize) else {
            return;
        };
        if vi.evtchn_upcall_pending.swap(1, Ordering::SeqCst) == 0 {
            self.notifications[vcpu as usize] += 1;
        }
    }

    /// Raises `port` under the domain's ABI.
    fn set_pending(&mut self, port: Port) {
        if self.fifo.is_some() {
            self.fifo_set_pending(port);
        } else {
            self.set_pending_2l(port);
        }
    }

    /// `evtchn_fifo_set_pending`: P, then link at the tail of the notify
    /// vCPU's queue for the channel's priority if neither M nor L.
    fn fifo_set_pending(&mut self, port: Port) {
        let Some(ch) = self.channels.get_mut(port.index()) else {
            return;
        };
        if matches!(ch.state, ChanState::Free | ChanState::Reserved) {
            return;
        }
        let (v, q) = (ch.notify_vcpu as usize, ch.priority as usize);
        let Some(f) = self.fifo.as_mut() else { return };
        let Some(word) = f.word(port) else {
            ch.saved_pending = true;
            return;
        };
        word.fetch_or(PENDING, Ordering::SeqCst);
        if word.load(Ordering::SeqCst) & MASKED != 0 {
            return;
        }
        let Some(Some(cb)) = f.controls.get(v).copied() else {
            // No control block on that vCPU: the event is not queued.
            return;
        };
        if word.fetch_or(LINKED, Ordering::SeqCst) & LINKED != 0 {
            return;
        }
        // If this port is still some queue's tail, that queue is empty
        // (the guest unlinked it): forget the tail so the port is not
        // linked to itself (Xen invalidates the old queue's tail too).
        for t in f.tails.iter_mut().flat_map(|t| t.iter_mut()) {
            if *t == port.0 {
                *t = 0;
            }
        }
        let tail = f.tails[v][q];
        let mut linked = false;
        if let Some(tw) = (tail != 0).then(|| f.word(Port(tail))).flatten() {
            // BUSY keeps the guest from changing M while LINK is written.
            tw.fetch_or(BUSY, Ordering::SeqCst);
            let mut cur = tw.load(Ordering::SeqCst);
            while cur & LINKED != 0 {
                match tw.compare_exchange(
                    cur,
                    (cur & !LINK_MASK) | port.0,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                ) {
                    Ok(_) => {
                        linked = true;
                        break;
                    }
                    Err(now) => cur = now,
                }
            }
            tw.fetch_and(!BUSY, Ordering::SeqCst);
        }
        if !linked {
            cb.head[q].store(port.0, Ordering::SeqCst);
        }
        f.tails[v][q] = port.0;
        if !linked && cb.ready.fetch_or(1 << q, Ordering::SeqCst) & (1 << q) == 0 {
            self.mark_events_pending(v as u32);
        }
    }

    /// `evtchn_2l_set_pending` on the port's notify vCPU.
    fn set_pending_2l(&mut self, port: Port) {
        let Ok(ch) = self.chan(port) else { return };
        if matches!(ch.state, ChanState::Free | ChanState::Reserved) {
            return;
        }
        let v = ch.notify_vcpu;
        let (w, b) = (port.word(), 1u64 << port.bit());
        if self.shared.pending()[w].fetch_or(b, Ordering::SeqCst) & b != 0 {
            return;
        }
        if self.shared.mask()[w].load(Ordering::SeqCst) & b == 0 {
            self.notify_selector(v, w);
        }
    }

    fn notify_selector(&mut self, v: u32, w: usize) {
        let Some(vi) = self.vcpu_info.get(v as usize) else {
            return;
        };
        if vi.evtchn_pending_sel.fetch_or(1 << w, Ordering::SeqCst) & (1 << w) == 0 {
            self.mark_events_pending(v);
        }
    }

    /// `EVTCHNOP_unmask`: 2-level notifies only if the mask bit was set;
    /// FIFO clears M and links the event if it is pending.
    fn unmask(&mut self, port: Port) -> Result<(), XenError> {
        let v = self.chan(port)?.notify_vcpu;
        if let Some(f) = &self.fifo {
            let Some(word) = f.word(port) else {
                return Ok(());
            };
            word.fetch_and(!MASKED, Ordering::SeqCst);
            if word.load(Ordering::SeqCst) & PENDING != 0 {
                self.fifo_set_pending(port);
            }
            return Ok(());
        }
        let (w, b) = (port.word(), 1u64 << port.bit());
        if self.shared.mask()[w].fetch_and(!b, Ordering::SeqCst) & b != 0
            && self.shared.pending()[w].load(Ordering::SeqCst) & b != 0
        {
            self.notify_selector(v, w);
        }
        Ok(())
    }
}

/// The model hypervisor: a set of domains.
pub struct HypervisorModel {
    domains: Mutex<BTreeMap<u16, Domain>>,
}

impl core::fmt::Debug for HypervisorModel {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HypervisorModel").finish_non_exhaustive()
    }
}

/// One domain's view of the model: its hypercalls ([`EventChannelOps`])
/// and its shared page.
#[derive(Clone, Debug)]
pub struct DomainHandle {
    model: Arc<HypervisorModel>,
    dom: DomId,
    shared: SharedPage,
}

impl HypervisorModel {
    /// An empty model.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            domains: Mutex::new(BTreeMap::new()),
        })
    }

    /// Creates domain `dom` with `nr_vcpus` vCPUs (at most 32; all up) and
    /// the native `shared_info` layout ([`Layout::NATIVE`]); returns its
    /// handle, or `None` if it exists or the count is invalid.
    pub fn create_domain(self: &Arc<Self>, dom: DomId, nr_vcpus: u32) -> Option<DomainHandle> {
        self.create_domain_with_layout(dom, nr_vcpus, Layout::NATIVE)
    }

    /// Like [`HypervisorModel::create_domain`] with the `shared_info`
    /// layout of `layout`. vCPUs beyond the layout's legacy slots (arm:
    /// every vCPU but 0) get no notification anyone can see until they
    /// register a `vcpu_info` ([`DomainHandle::register_vcpu_info`]).
    pub fn create_domain_with_layout(
        self: &Arc<Self>,
        dom: DomId,
        nr_vcpus: u32,
        layout: Layout,
    ) -> Option<DomainHandle> {
        if nr_vcpus == 0 || nr_vcpus > MODEL_MAX_VCPUS || dom == DomId::SELF {
            return None;
        }
        let mut doms = self.domains.lock();
        if doms.contains_key(&dom.0) {
            return None;
        }
        let shared = SharedPage::leak_zeroed(layout);
        let vcpu_info = (0..nr_vcpus as usize)
            .map(|v| {
                shared.legacy_vcpu(v).unwrap_or_else(|| {
                    let dummy: &'static VcpuEvents = Box::leak(Box::default());
                    dummy
                })
            })
            .collect();
        let mut channels = alloc::vec![FREE; BUCKET];
        channels[0].state = ChanState::Reserved;
        doms.insert(
            dom.0,
            Domain {
                shared,
                vcpu_info,
                registered: alloc::vec![false; nr_vcpus as usize],
                nr_vcpus,
                vcpu_up: alloc::vec![true; nr_vcpus as usize],
                channels,
                virq_to_port: alloc::vec![[0; NR_VIRQS as usize]; nr_vcpus as usize],
                pirqs: BTreeMap::new(),
                notifications: alloc::vec![0; nr_vcpus as usize],
                fifo: None,
                fifo_available: true,
                max_evtchn_port: u32::MAX,
            },
        );
        Some(DomainHandle {
            model: self.clone(),
            dom,
            shared,
        })
    }

    fn with_dom<R>(
        &self,
        dom: DomId,
        f: impl FnOnce(&mut Domain) -> Result<R, XenError>,
    ) -> Result<R, XenError> {
        let mut doms = self.domains.lock();
        f(doms.get_mut(&dom.0).ok_or(XenError::NoSuchDomain)?)
    }

    /// Number of times `vcpu` of `dom` was notified (0 -> 1 changes of its
    /// `evtchn_upcall_pending`).
    pub fn notifications(&self, dom: DomId, vcpu: VcpuId) -> u64 {
        self.with_dom(dom, |d| {
            Ok(d.notifications.get(vcpu.index()).copied().unwrap_or(0))
        })
        .unwrap_or(0)
    }

    /// Whether `dom`'s Xen offers the FIFO ABI (default yes). `false`
    /// plays an older Xen: the FIFO hypercalls return `-ENOSYS`.
    pub fn set_fifo_available(&self, dom: DomId, available: bool) -> Result<(), XenError> {
        self.with_dom(dom, |d| {
            d.fifo_available = available;
            Ok(())
        })
    }

    /// The domain's `max_evtchn_port` (Xen's per-domain limit; default
    /// none): ports above it are never handed out (`-ENOSPC`).
    pub fn set_max_evtchn_port(&self, dom: DomId, port: u32) -> Result<(), XenError> {
        self.with_dom(dom, |d| {
            d.max_evtchn_port = port;
            Ok(())
        })
    }

    /// Marks a vCPU up or down (the model still sets flags for a down vCPU,
    /// as Xen does; nothing runs its upcall).
    pub fn set_vcpu_up(&self, dom: DomId, vcpu: VcpuId, up: bool) -> Result<(), XenError> {
        self.with_dom(dom, |d| {
            *d.vcpu_up
                .get_mut(vcpu.index())
                .ok_or(XenError::NoSuchVcpu)? = up;
            Ok(())
        })
    }

    /// Whether a vCPU is up.
    pub fn vcpu_up(&self, dom: DomId, vcpu: VcpuId) -> bool {
        self.with_dom(dom, |d| {
            Ok(d.vcpu_up.get(vcpu.index()).copied().unwrap_or(false))
        })
        .unwrap_or(false)
    }

    /// Raises `virq` as Xen would: per-vCPU VIRQs on `vcpu`, global ones on
    /// the port bound through vCPU 0. Returns whether a port was bound.
    pub fn raise_virq(&self, dom: DomId, virq: Virq, vcpu: VcpuId) -> bool {
        self.with_dom(dom, |d| {
            let slot = if virq.is_per_vcpu() { vcpu.index() } else { 0 };
            let port = d
                .virq_to_port
                .get(slot)
                .and_then(|t| t.get(virq.0 as usize))
                .copied()
                .unwrap_or(0);
            if port == 0 {
                return Ok(false);
            }
            d.set_pending(Port(port));
            Ok(true)
        })
        .unwrap_or(false)
    }

    /// Raises any usable port of `dom` directly (a peer's send, a device).
    pub fn raise_port(&self, dom: DomId, port: Port) {
        let _ = self.with_dom(dom, |d| {
            d.set_pending(port);
            Ok(())
        });
    }

    /// Gives `dom` access to `pirq`; `needs_eoi` is what
    /// `PHYSDEVOP_irq_status_query` will report.
    pub fn grant_pirq(&self, dom: DomId, pirq: Pirq, needs_eoi: bool) -> Result<(), XenError> {
        self.with_dom(dom, |d| {
            if pirq.0 >= MODEL_NR_PIRQS {
                return Err(XenError::Invalid);
            }
            d.pirqs.insert(
                pirq.0,
                PirqState {
                    needs_eoi,
                    ..Default::default()
                },
            );
            Ok(())
        })
    }

    /// The physical line of `pirq` fires. While a delivered event waits for
    /// its EOI, Xen holds the line masked: the firing is delivered after
    /// the EOI.
    pub fn fire_pirq(&self, dom: DomId, pirq: Pirq) {
        let _ = self.with_dom(dom, |d| {
            let Some(p) = d.pirqs.get_mut(&pirq.0) else {
                return Ok(());
            };
            let Some(port) = p.port else { return Ok(()) };
            if p.in_service {
                p.asserted_again = true;
                return Ok(());
            }
            p.in_service = p.needs_eoi;
            d.set_pending(port);
            Ok(())
        });
    }

    /// EOIs the guest sent for `pirq`.
    pub fn pirq_eois(&self, dom: DomId, pirq: Pirq) -> u64 {
        self.with_dom(dom, |d| Ok(d.pirqs.get(&pirq.0).map_or(0, |p| p.eois)))
            .unwrap_or(0)
    }

    /// `EVTCHNOP_status` of any domain's port (inspection).
    pub fn status_of(&self, dom: DomId, port: Port) -> Result<ChannelStatus, XenError> {
        self.with_dom(dom, |d| status(d, port))
    }

    fn resolve(dom: DomId, caller: DomId) -> DomId {
        if dom == DomId::SELF { caller } else { dom }
    }

    // ----- hypercalls, for domain `me` -----------------------------------

    fn alloc_unbound(&self, me: DomId, remote_dom: DomId) -> Result<Port, XenError> {
        let remote_dom = Self::resolve(remote_dom, me);
        let mut doms = self.domains.lock();
        if !doms.contains_key(&remote_dom.0) {
            return Err(XenError::NoSuchDomain);
        }
        let d = doms.get_mut(&me.0).ok_or(XenError::NoSuchDomain)?;
        d.allocate(ChanState::Unbound { remote_dom }, 0)
    }

    fn bind_interdomain(
        &self,
        me: DomId,
        remote_dom: DomId,
        remote_port: Port,
    ) -> Result<Port, XenError> {
        let rdom = Self::resolve(remote_dom, me);
        let mut doms = self.domains.lock();
        if !doms.contains_key(&rdom.0) {
            return Err(XenError::NoSuchDomain);
        }
        let ld = doms.get(&me.0).ok_or(XenError::NoSuchDomain)?;
        // No free local port is reported before a bad remote port.
        ld.free_port()?;
        let rd = doms.get(&rdom.0).ok_or(XenError::NoSuchDomain)?;
        match rd.channels.get(remote_port.index()) {
            Some(Channel {
                state:
                    ChanState::Unbound {
                        remote_dom: allowed,
                    },
                ..
            }) if *allowed == me => {}
            _ => return Err(XenError::Invalid),
        }
        let lport = {
            let ld = doms.get_mut(&me.0).ok_or(XenError::NoSuchDomain)?;
            ld.allocate(
                ChanState::Interdomain {
                    remote_dom: rdom,
                    remote_port,
                },
                0,
            )?
        };
        let rd = doms.get_mut(&rdom.0).ok_or(XenError::NoSuchDomain)?;
        rd.channels[remote_port.index()].state = ChanState::Interdomain {
            remote_dom: me,
            remote_port: lport,
        };
        // Events the peer sent while the port was unbound are covered by
        // always setting the new local port pending.
        doms.get_mut(&me.0)
            .ok_or(XenError::NoSuchDomain)?
            .set_pending(lport);
        Ok(lport)
    }

    fn bind_virq(&self, me: DomId, virq: Virq, vcpu: VcpuId) -> Result<Port, XenError> {
        self.with_dom(me, |d| {
            if virq.0 >= NR_VIRQS {
                return Err(XenError::Invalid);
            }
            if !virq.is_per_vcpu() && vcpu.0 != 0 {
                return Err(XenError::Invalid);
            }
            d.check_vcpu(vcpu)?;
            if d.virq_to_port[vcpu.index()][virq.0 as usize] != 0 {
                return Err(XenError::AlreadyBound);
            }
            let port = d.allocate(ChanState::Virq(virq), vcpu.0)?;
            d.virq_to_port[vcpu.index()][virq.0 as usize] = port.0;
            Ok(port)
        })
    }

    fn bind_ipi(&self, me: DomId, vcpu: VcpuId) -> Result<Port, XenError> {
        self.with_dom(me, |d| {
            d.check_vcpu(vcpu)?;
            d.allocate(ChanState::Ipi, vcpu.0)
        })
    }

    fn bind_pirq(&self, me: DomId, pirq: Pirq) -> Result<Port, XenError> {
        self.with_dom(me, |d| {
            if pirq.0 >= MODEL_NR_PIRQS {
                return Err(XenError::Invalid);
            }
            let Some(p) = d.pirqs.get(&pirq.0) else {
                return Err(XenError::NotPermitted);
            };
            if p.port.is_some() {
                return Err(XenError::AlreadyBound);
            }
            let port = d.allocate(ChanState::Pirq(pirq), 0)?;
            if let Some(p) = d.pirqs.get_mut(&pirq.0) {
                p.port = Some(port);
            }
            Ok(port)
        })
    }

    fn bind_vcpu(&self, me: DomId, port: Port, vcpu: VcpuId) -> Result<(), XenError> {
        self.with_dom(me, |d| {
            d.check_vcpu(vcpu)?;
            let ch = d.chan(port)?;
            let movable = match ch.state {
                ChanState::Unbound { .. } | ChanState::Interdomain { .. } | ChanState::Pirq(_) => {
                    true
                }
                ChanState::Virq(v) => !v.is_per_vcpu(),
                _ => false,
            };
            if !movable {
                return Err(XenError::Invalid);
            }
            // Xen does not re-notify a pending event on the new vCPU.
            d.channels[port.index()].notify_vcpu = vcpu.0;
            Ok(())
        })
    }

    fn send(&self, me: DomId, port: Port) -> Result<(), XenError> {
        let mut doms = self.domains.lock();
        let d = doms.get_mut(&me.0).ok_or(XenError::NoSuchDomain)?;
        match d.chan(port)?.state {
            ChanState::Interdomain {
                remote_dom,
                remote_port,
            } => {
                if let Some(rd) = doms.get_mut(&remote_dom.0) {
                    rd.set_pending(remote_port);
                }
                Ok(())
            }
            ChanState::Ipi => {
                d.set_pending(port);
                Ok(())
            }
            ChanState::Unbound { .. } => Ok(()),
            _ => Err(XenError::Invalid),
        }
    }

    fn close(&self, me: DomId, port: Port) -> Result<(), XenError> {
        let mut doms = self.domains.lock();
        let d = doms.get_mut(&me.0).ok_or(XenError::NoSuchDomain)?;
        let ch = *d.chan(port)?;
        let mut peer = None;
        match ch.state {
            ChanState::Free | ChanState::Reserved => return Err(XenError::Invalid),
            ChanState::Unbound { .. } | ChanState::Ipi => {}
            ChanState::Virq(v) => {
                let slot = if v.is_per_vcpu() {
                    ch.notify_vcpu as usize
                } else {
                    0
                };
                if let Some(t) = d.virq_to_port.get_mut(slot) {
                    t[v.0 as usize] = 0;
                }
            }
            ChanState::Pirq(p) => {
                if let Some(p) = d.pirqs.get_mut(&p.0) {
                    p.port = None;
                    p.in_service = false;
                    p.asserted_again = false;
                }
            }
            ChanState::Interdomain {
                remote_dom,
                remote_port,
            } => peer = Some((remote_dom, remote_port)),
        }
        // Clear pending to avoid unexpected behaviour on re-bind; the mask
        // bit is left alone.
        match &d.fifo {
            Some(f) => {
                if let Some(w) = f.word(port) {
                    w.fetch_and(!PENDING, Ordering::SeqCst);
                }
            }
            None => {
                d.shared.pending()[port.word()].fetch_and(!(1u64 << port.bit()), Ordering::SeqCst);
            }
        }
        d.channels[port.index()] = FREE;
        if let Some((rdom, rport)) = peer
            && let Some(rc) = doms
                .get_mut(&rdom.0)
                .and_then(|rd| rd.channels.get_mut(rport.index()))
        {
            rc.state = ChanState::Unbound { remote_dom: me };
        }
        Ok(())
    }

    fn unmask(&self, me: DomId, port: Port) -> Result<(), XenError> {
        self.with_dom(me, |d| d.unmask(port))
    }

    fn init_control(
        &self,
        me: DomId,
        vcpu: VcpuId,
        block: &'static ControlPage,
    ) -> Result<u8, XenError> {
        self.with_dom(me, |d| {
            if !d.fifo_available {
                return Err(XenError::NotImplemented);
            }
            if vcpu.0 >= d.nr_vcpus {
                return Err(XenError::NoSuchVcpu);
            }
            if d.fifo.is_none() {
                // The switch: 2-level pending bits are saved for replay,
                // every priority is reset.
                let pending = d.shared.pending();
                for (p, ch) in d.channels.iter_mut().enumerate() {
                    let port = Port(p as u32);
                    ch.priority = PRIORITY_DEFAULT as u8;
                    ch.saved_pending = !matches!(ch.state, ChanState::Free | ChanState::Reserved)
                        && pending[port.word()].load(Ordering::SeqCst) & (1 << port.bit()) != 0;
                }
                d.fifo = Some(FifoDomain {
                    controls: alloc::vec![None; d.nr_vcpus as usize],
                    pages: Vec::new(),
                    tails: alloc::vec![[0; MAX_QUEUES]; d.nr_vcpus as usize],
                });
            }
            let f = d.fifo.as_mut().ok_or(XenError::Invalid)?;
            if f.controls[vcpu.index()].is_some() {
                return Err(XenError::Invalid);
            }
            f.controls[vcpu.index()] = Some(&block.0);
            Ok(LINK_BITS as u8)
        })
    }

    fn expand_array(&self, me: DomId, page: &'static EventPage) -> Result<(), XenError> {
        self.with_dom(me, |d| {
            let f = d.fifo.as_mut().ok_or(XenError::NotImplemented)?;
            if f.pages.len() >= MAX_PAGES as usize {
                return Err(XenError::NoFreePort);
            }
            f.pages.push(page);
            let first = (f.pages.len() - 1) * WORDS_PER_PAGE as usize;
            let last = (first + WORDS_PER_PAGE as usize).min(d.channels.len());
            for p in first..last {
                if core::mem::take(&mut d.channels[p].saved_pending) {
                    d.fifo_set_pending(Port(p as u32));
                }
            }
            Ok(())
        })
    }

    fn set_priority(&self, me: DomId, port: Port, priority: u32) -> Result<(), XenError> {
        self.with_dom(me, |d| {
            if d.fifo.is_none() {
                return Err(XenError::NotImplemented);
            }
            if priority > PRIORITY_MIN {
                return Err(XenError::Invalid);
            }
            let ch = d.channels.get_mut(port.index()).ok_or(XenError::Invalid)?;
            if matches!(ch.state, ChanState::Free | ChanState::Reserved) {
                return Err(XenError::Invalid);
            }
            ch.priority = priority as u8;
            Ok(())
        })
    }

    fn pirq_needs_eoi(&self, me: DomId, pirq: Pirq) -> Result<bool, XenError> {
        self.with_dom(me, |d| {
            if pirq.0 >= MODEL_NR_PIRQS {
                return Err(XenError::Invalid);
            }
            Ok(d.pirqs.get(&pirq.0).is_some_and(|p| p.needs_eoi))
        })
    }

    fn pirq_eoi(&self, me: DomId, pirq: Pirq) -> Result<(), XenError> {
        self.with_dom(me, |d| {
            let p = d.pirqs.get_mut(&pirq.0).ok_or(XenError::Invalid)?;
            let port = p.port.ok_or(XenError::Invalid)?;
            p.eois += 1;
            p.in_service = false;
            if p.asserted_again {
                p.asserted_again = false;
                p.in_service = p.needs_eoi;
                d.set_pending(port);
            }
            Ok(())
        })
    }
}

fn status(d: &Domain, port: Port) -> Result<ChannelStatus, XenError> {
    let ch = d.chan(port)?;
    let state = match ch.state {
        ChanState::Free | ChanState::Reserved => ChannelState::Closed,
        ChanState::Unbound { remote_dom } => ChannelState::Unbound { remote_dom },
        ChanState::Interdomain {
            remote_dom,
            remote_port,
        } => ChannelState::Interdomain {
            remote_dom,
            remote_port,
        },
        ChanState::Pirq(p) => ChannelState::Pirq(p),
        ChanState::Virq(v) => ChannelState::Virq(v),
        ChanState::Ipi => ChannelState::Ipi,
    };
    Ok(ChannelStatus {
        state,
        vcpu: VcpuId(ch.notify_vcpu),
    })
}

impl DomainHandle {
    /// The domain id.
    pub fn dom(&self) -> DomId {
        self.dom
    }

    /// The domain's shared page.
    pub fn shared_info(&self) -> SharedPage {
        self.shared
    }

    /// `VCPUOP_register_vcpu_info`: vCPU `vcpu`'s event fields move to
    /// `info` (the start of a `vcpu_info` of the domain's layout). As Xen's
    /// `map_vcpu_info`, the old record's contents are copied, then every
    /// selector bit and the upcall flag are set so nothing is lost (the
    /// guest sees one spurious upcall; it carries no event, so
    /// [`DomainHandle::notifications`] does not count it). A second
    /// registration is `-EINVAL`, as on Xen 4.17.
    pub fn register_vcpu_info(
        &self,
        vcpu: VcpuId,
        info: &'static VcpuEvents,
    ) -> Result<(), XenError> {
        self.model.with_dom(self.dom, |d| {
            d.check_vcpu(vcpu)?;
            let v = vcpu.index();
            if d.registered[v] {
                return Err(XenError::Invalid);
            }
            let old = d.vcpu_info[v];
            info.evtchn_pending_sel.store(
                old.evtchn_pending_sel.load(Ordering::SeqCst),
                Ordering::SeqCst,
            );
            info.evtchn_upcall_mask.store(
                old.evtchn_upcall_mask.load(Ordering::SeqCst),
                Ordering::SeqCst,
            );
            info.evtchn_upcall_pending.store(
                old.evtchn_upcall_pending.load(Ordering::SeqCst),
                Ordering::SeqCst,
            );
            d.vcpu_info[v] = info;
            d.registered[v] = true;
            info.evtchn_pending_sel.store(u64::MAX, Ordering::SeqCst);
            info.evtchn_upcall_pending.store(1, Ordering::SeqCst);
            Ok(())
        })
    }

    /// The model.
    pub fn model(&self) -> &Arc<HypervisorModel> {
        &self.model
    }

    /// The FIFO event word of `port` (`None` under 2-level or before its
    /// page was added).
    pub fn fifo_word(&self, port: Port) -> Option<u32> {
        self.model
            .with_dom(self.dom, |d| {
                Ok(d.fifo
                    .as_ref()
                    .and_then(|f| f.word(port))
                    .map(|w| w.load(Ordering::SeqCst)))
            })
            .ok()
            .flatten()
    }

    /// Whether the domain switched to FIFO (`EVTCHNOP_init_control`).
    pub fn is_fifo(&self) -> bool {
        self.model
            .with_dom(self.dom, |d| Ok(d.fifo.is_some()))
            .unwrap_or(false)
    }

    /// Whether `vcpu` registered its FIFO control block.
    pub fn fifo_registered(&self, vcpu: VcpuId) -> bool {
        self.model
            .with_dom(self.dom, |d| {
                Ok(d.fifo
                    .as_ref()
                    .and_then(|f| f.controls.get(vcpu.index()).copied().flatten())
                    .is_some())
            })
            .unwrap_or(false)
    }

    /// Event-array pages the domain added (FIFO).
    pub fn fifo_pages(&self) -> usize {
        self.model
            .with_dom(self.dom, |d| {
                Ok(d.fifo.as_ref().map_or(0, |f| f.pages.len()))
            })
            .unwrap_or(0)
    }

    /// Whether `port` is pending (the 2-level bitmap, or the FIFO word).
    pub fn is_pending(&self, port: Port) -> bool {
        if self.is_fifo() {
            return self.fifo_word(port).is_some_and(|w| w & PENDING != 0);
        }
        port.0 < EVTCHN_2L_NR_CHANNELS
            && self.shared.pending()[port.word()].load(Ordering::SeqCst) & (1 << port.bit()) != 0
    }

    /// Whether `port` is masked (the 2-level bitmap, or the FIFO word).
    pub fn is_masked(&self, port: Port) -> bool {
        if self.is_fifo() {
            return self.fifo_word(port).is_some_and(|w| w & MASKED != 0);
        }
        port.0 < EVTCHN_2L_NR_CHANNELS
            && self.shared.mask()[port.word()].load(Ordering::SeqCst) & (1 << port.bit()) != 0
    }

    /// The event fields of `vcpu`'s current `vcpu_info`.
    fn events(&self, vcpu: VcpuId) -> Option<&'static VcpuEvents> {
        self.model
            .with_dom(self.dom, |d| Ok(d.vcpu_info.get(vcpu.index()).copied()))
            .ok()
            .flatten()
    }

    /// The selector word of `vcpu` (2-level), or under FIFO the `ready`
    /// bits of its control block (which queues may hold events): either
    /// way, non-zero means the guest has something to look at.
    pub fn selector(&self, vcpu: VcpuId) -> u64 {
        let ready = self.model.with_dom(self.dom, |d| {
            Ok(d.fifo.as_ref().map(|f| {
                f.controls
                    .get(vcpu.index())
                    .copied()
                    .flatten()
                    .map_or(0, |cb| u64::from(cb.ready.load(Ordering::SeqCst)))
            }))
        });
        if let Ok(Some(r)) = ready {
            return r;
        }
        self.events(vcpu)
            .map_or(0, |v| v.evtchn_pending_sel.load(Ordering::SeqCst))
    }

    /// Whether `vcpu`'s `evtchn_upcall_pending` is set.
    pub fn upcall_pending(&self, vcpu: VcpuId) -> bool {
        self.events(vcpu)
            .is_some_and(|v| v.evtchn_upcall_pending.load(Ordering::SeqCst) != 0)
    }

    /// Notifications of `vcpu` so far.
    pub fn notifications(&self, vcpu: VcpuId) -> u64 {
        self.model.notifications(self.dom, vcpu)
    }
}

impl EventChannelOps for DomainHandle {
    fn alloc_unbound(&self, remote_dom: DomId) -> Result<Port, XenError> {
        self.model.alloc_unbound(self.dom, remote_dom)
    }
    fn bind_interdomain(&self, remote_dom: DomId, remote_port: Port) -> Result<Port, XenError> {
        self.model
            .bind_interdomain(self.dom, remote_dom, remote_port)
    }
    fn bind_virq(&self, virq: Virq, vcpu: VcpuId) -> Result<Port, XenError> {
        self.model.bind_virq(self.dom, virq, vcpu)
    }
    fn bind_ipi(&self, vcpu: VcpuId) -> Result<Port, XenError> {
        self.model.bind_ipi(self.dom, vcpu)
    }
    fn bind_pirq(&self, pirq: Pirq, _will_share: bool) -> Result<Port, XenError> {
        self.model.bind_pirq(self.dom, pirq)
    }
    fn bind_vcpu(&self, port: Port, vcpu: VcpuId) -> Result<(), XenError> {
        self.model.bind_vcpu(self.dom, port, vcpu)
    }
    fn send(&self, port: Port) -> Result<(), XenError> {
        self.model.send(self.dom, port)
    }
    fn close(&self, port: Port) -> Result<(), XenError> {
        self.model.close(self.dom, port)
    }
    fn status(&self, port: Port) -> Result<ChannelStatus, XenError> {
        self.model.status_of(self.dom, port)
    }
    fn unmask(&self, port: Port) -> Result<(), XenError> {
        self.model.unmask(self.dom, port)
    }
    fn pirq_needs_eoi(&self, pirq: Pirq) -> Result<bool, XenError> {
        self.model.pirq_needs_eoi(self.dom, pirq)
    }
    fn pirq_eoi(&self, pirq: Pirq) -> Result<(), XenError> {
        self.model.pirq_eoi(self.dom, pirq)
    }
    fn init_control(&self, vcpu: VcpuId, block: &'static ControlPage) -> Result<u8, XenError> {
        self.model.init_control(self.dom, vcpu, block)
    }
    fn expand_array(&self, page: &'static EventPage) -> Result<(), XenError> {
        self.model.expand_array(self.dom, page)
    }
    fn set_priority(&self, port: Port, priority: u32) -> Result<(), XenError> {
        self.model.set_priority(self.dom, port, priority)
    }
}
