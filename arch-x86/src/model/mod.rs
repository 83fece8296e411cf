//! Behavioural models of the x86 interrupt hardware, for host tests of this
//! crate and of kernels built on it (feature `model`).
//!
//! A [`Machine`] owns several CPUs' local APICs, any number of IOAPICs, the
//! 8259 pair and the MSI target (the APIC bus decoding MSI writes). Drivers
//! reach it through handles implementing this crate's register traits:
//!
//! | handle | trait | what |
//! |---|---|---|
//! | [`Machine::xapic`] | [`Mmio32`] | CPU n's xAPIC page |
//! | [`Machine::msr`] | [`Msr`] | CPU n's MSRs (APIC base, x2APIC, TSC deadline) |
//! | [`Machine::ioapic_mmio`] | [`Mmio32`] | an IOAPIC window |
//! | [`Machine::ports`] | [`PortIo`] | the 8259 ports |
//! | [`Machine::apic_ops`] | [`ApicOps`] | "the executing CPU" for the vector domain |
//!
//! Test-side controls: drive IOAPIC lines, write MSIs, let a CPU take its
//! highest-priority interrupt, advance timers and the TSC, and inspect
//! everything. The "executing CPU" used by [`ModelApicOps`] is set with
//! [`Machine::set_current_cpu`].
//!
//! The model is deliberately strict where drivers go wrong in practice: an
//! illegal x2APIC access is counted as a `#GP`, edges on masked IOAPIC pins
//! are lost, a level pin is not re-delivered until its remote IRR is cleared
//! by an EOI for its vector, and the IRR coalesces repeated interrupts.

mod ioapic;
mod lapic;
mod pic;

pub use lapic::{ESR_ILLEGAL_REGISTER, ESR_RECEIVE_ILLEGAL_VECTOR, ESR_SEND_ILLEGAL_VECTOR};
pub use pic::PicModel;

use crate::ids::{ApicId, Vector};
use crate::ioapic::RedirectionEntry;
use crate::lapic::{MSR_APIC_BASE, MSR_TSC_DEADLINE, reg};
use crate::msi::{MsiDestFormat, MsiDevice, MsiError, decode_msi};
use crate::regs::{Mmio32, Msr, PortIo};
use crate::vector::ApicOps;
use alloc::sync::Arc;
use alloc::vec::Vec;
use ioapic::{IoApicMessage, IoApicModel};
use irqcore::{CpuId, MsiMsg};
use lapic::LapicModel;
use spin::Mutex;

/// ICR / message delivery modes.
const DM_FIXED: u8 = 0;
const DM_LOWEST: u8 = 1;
const DM_NMI: u8 = 4;
const DM_INIT: u8 = 5;
const DM_STARTUP: u8 = 6;

/// A message on the APIC bus.
#[derive(Clone, Copy, Debug)]
struct BusMessage {
    dest: u32,
    logical: bool,
    /// 0 none, 1 self, 2 all including self, 3 all excluding self.
    shorthand: u8,
    mode: u8,
    vector: u8,
    level: bool,
    from: Option<usize>,
}

struct State {
    cpus: Vec<LapicModel>,
    ioapics: Vec<IoApicModel>,
    pics: [PicModel; 2],
    msi_format: MsiDestFormat,
    tsc: u64,
    current: usize,
    eoi_broadcasts: Vec<u8>,
    cleanup_requests: Vec<CpuId>,
    lost_messages: u32,
}

/// A modelled machine. Create with [`Machine::new`]; clone the `Arc` freely.
pub struct Machine {
    st: Mutex<State>,
    resolver: Mutex<Option<CpuResolver>>,
}

/// Tells the model which CPU is executing (for tests where threads play
/// CPUs). Must not call back into the machine.
pub type CpuResolver = Arc<dyn Fn() -> Option<usize> + Send + Sync>;

impl State {
    fn targets(&self, m: &BusMessage) -> Vec<usize> {
        let all = 0..self.cpus.len();
        let enabled = |i: &usize| self.cpus[*i].hw_enabled();
        match (m.shorthand, m.from) {
            (1, Some(f)) => return alloc::vec![f],
            (2, _) => return all.filter(enabled).collect(),
            (3, Some(f)) => return all.filter(|i| *i != f).filter(enabled).collect(),
            _ => {}
        }
        all.filter(enabled)
            .filter(|&i| {
                let c = &self.cpus[i];
                if m.logical {
                    if c.x2apic() {
                        let l = c.logical_id();
                        (m.dest >> 16) == (l >> 16) && (m.dest & l & 0xFFFF) != 0
                    } else {
                        (c.logical_id() >> 24) & (m.dest & 0xFF) != 0
                    }
                } else if c.x2apic() {
                    m.dest == u32::MAX || m.dest == c.apic_id
                } else {
                    m.dest == 0xFF || m.dest == c.apic_id
                }
            })
            .collect()
    }

    fn deliver(&mut self, m: BusMessage) {
        let mut targets = self.targets(&m);
        if targets.is_empty() {
            self.lost_messages += 1;
            return;
        }
        if m.mode == DM_LOWEST {
            targets.truncate(1);
        }
        for t in targets {
            match m.mode {
                DM_FIXED | DM_LOWEST => self.accept(t, m.vector, m.level),
                DM_NMI => self.cpus[t].nmi_count += 1,
                DM_INIT => self.cpus[t].init_count += 1,
                DM_STARTUP => self.cpus[t].sipi_vectors.push(m.vector),
                _ => self.lost_messages += 1,
            }
        }
    }

    fn accept(&mut self, cpu: usize, vector: u8, level: bool) {
        let c = &mut self.cpus[cpu];
        if !c.accept_fixed(vector, level)
            && let Some(ev) = c.error_vector()
        {
            c.accept_fixed(ev, false);
        }
    }

    fn deliver_ioapic(&mut self, msgs: Vec<IoApicMessage>) {
        for msg in msgs {
            let e = msg.entry;
            self.deliver(BusMessage {
                dest: e.destination(),
                logical: e.is_logical(),
                shorthand: 0,
                mode: e.delivery_mode(),
                vector: e.vector(),
                level: e.is_level(),
                from: None,
            });
        }
    }

    fn ioapic_eoi(&mut self, vector: u8) {
        self.eoi_broadcasts.push(vector);
        let mut out = Vec::new();
        for io in self.ioapics.iter_mut() {
            io.eoi(vector, &mut out);
        }
        self.deliver_ioapic(out);
    }

    fn send_icr(&mut self, cpu: usize, low: u32, dest: u32) {
        let mode = ((low >> 8) & 7) as u8;
        let vector = low as u8;
        if matches!(mode, DM_FIXED | DM_LOWEST) && vector < 16 {
            let c = &mut self.cpus[cpu];
            c.esr_pending |= ESR_SEND_ILLEGAL_VECTOR;
            if let Some(ev) = c.error_vector() {
                c.accept_fixed(ev, false);
            }
            return;
        }
        self.deliver(BusMessage {
            dest,
            logical: low & (1 << 11) != 0,
            shorthand: ((low >> 18) & 3) as u8,
            mode,
            vector,
            level: false,
            from: Some(cpu),
        });
    }

    fn eoi(&mut self, cpu: usize) {
        if let Some((v, broadcast)) = self.cpus[cpu].eoi()
            && broadcast
        {
            self.ioapic_eoi(v);
        }
    }

    fn fire_timer(&mut self, cpu: usize, times: u32) {
        let lvt = self.cpus[cpu].lvt[lapic::LVT_TIMER];
        if times > 0 && lvt & (1 << 16) == 0 {
            self.accept(cpu, lvt as u8, false);
        }
    }

    /// A register write through MMIO (xAPIC) or MSR (x2APIC).
    fn lapic_write(&mut self, cpu: usize, offset: usize, value: u64) {
        let x2 = self.cpus[cpu].x2apic();
        match offset {
            reg::EOI => {
                if x2 && value != 0 {
                    self.cpus[cpu].gp_faults += 1;
                    return;
                }
                self.eoi(cpu);
            }
            reg::ICR_LOW => {
                self.cpus[cpu].icr_low = value as u32 & !(1 << 12);
                let dest = if x2 {
                    (value >> 32) as u32
                } else {
                    self.cpus[cpu].icr_high >> 24
                };
                self.send_icr(cpu, value as u32, dest);
            }
            reg::SELF_IPI if x2 => {
                let v = value as u8;
                self.accept(cpu, v, false);
            }
            _ => {
                if !self.cpus[cpu].write(offset, value as u32) {
                    if x2 {
                        self.cpus[cpu].gp_faults += 1;
                    } else {
                        self.cpus[cpu].esr_pending |= ESR_ILLEGAL_REGISTER;
                    }
                }
            }
        }
    }
}

impl Machine {
    /// A machine whose CPU n has APIC id `apic_ids[n]` (CPU 0 is the BSP),
    /// every APIC in its reset state, no IOAPIC, MSIs decoded as xAPIC.
    pub fn new(apic_ids: &[u32]) -> Arc<Self> {
        Arc::new(Self {
            st: Mutex::new(State {
                cpus: apic_ids
                    .iter()
                    .enumerate()
                    .map(|(i, id)| LapicModel::reset(*id, i == 0))
                    .collect(),
                ioapics: Vec::new(),
                pics: [PicModel::default(); 2],
                msi_format: MsiDestFormat::XApic,
                tsc: 0,
                current: 0,
                eoi_broadcasts: Vec::new(),
                cleanup_requests: Vec::new(),
                lost_messages: 0,
            }),
            resolver: Mutex::new(None),
        })
    }

    /// Adds an IOAPIC with `nr_pins` pins (version 0x20: has an EOI
    /// register; use 0x11 for an older part). Returns its index.
    pub fn add_ioapic(&self, id: u8, nr_pins: u32, version: u8) -> usize {
        let mut st = self.st.lock();
        st.ioapics
            .push(IoApicModel::new(id, nr_pins.clamp(1, 240), version));
        st.ioapics.len() - 1
    }

    /// How the APIC bus decodes MSI destinations.
    pub fn set_msi_format(&self, f: MsiDestFormat) {
        self.st.lock().msi_format = f;
    }

    /// Number of CPUs.
    pub fn nr_cpus(&self) -> usize {
        self.st.lock().cpus.len()
    }

    /// Sets the CPU that [`ModelApicOps`] acts as.
    pub fn set_current_cpu(&self, cpu: usize) {
        self.st.lock().current = cpu;
    }

    /// The CPU that [`ModelApicOps`] acts as: the resolver's answer if one
    /// is installed and answers, else the one set with
    /// [`Machine::set_current_cpu`].
    pub fn current_cpu(&self) -> usize {
        let r = self.resolver.lock().clone();
        r.and_then(|f| f())
            .unwrap_or_else(|| self.st.lock().current)
    }

    /// Installs a resolver for the executing CPU (e.g. a thread-local set by
    /// a test platform whose threads play CPUs).
    pub fn set_cpu_resolver(&self, resolver: Option<CpuResolver>) {
        *self.resolver.lock() = resolver;
    }

    /// CPU `cpu`'s xAPIC page.
    pub fn xapic(self: &Arc<Self>, cpu: usize) -> ModelXApic {
        ModelXApic {
            m: self.clone(),
            cpu: Some(cpu),
        }
    }

    /// CPU `cpu`'s MSRs.
    pub fn msr(self: &Arc<Self>, cpu: usize) -> ModelMsr {
        ModelMsr {
            m: self.clone(),
            cpu: Some(cpu),
        }
    }

    /// The xAPIC page as real hardware has it: every access goes to the
    /// executing CPU's APIC ([`Machine::current_cpu`]).
    pub fn local_xapic(self: &Arc<Self>) -> ModelXApic {
        ModelXApic {
            m: self.clone(),
            cpu: None,
        }
    }

    /// The executing CPU's MSRs ([`Machine::current_cpu`]).
    pub fn local_msr(self: &Arc<Self>) -> ModelMsr {
        ModelMsr {
            m: self.clone(),
            cpu: None,
        }
    }

    /// IOAPIC `index`'s register window.
    pub fn ioapic_mmio(self: &Arc<Self>, index: usize) -> ModelIoApicMmio {
        ModelIoApicMmio {
            m: self.clone(),
            index,
        }
    }

    /// The I/O port space (8259 pair).
    pub fn ports(self: &Arc<Self>) -> ModelPorts {
        ModelPorts { m: self.clone() }
    }

    /// APIC operations of "the executing CPU" ([`Machine::set_current_cpu`]).
    pub fn apic_ops(self: &Arc<Self>) -> ModelApicOps {
        ModelApicOps { m: self.clone() }
    }

    /// Drives IOAPIC `index`'s pin `pin` line high or low. Returns false if
    /// there is no such pin.
    pub fn set_ioapic_line(&self, index: usize, pin: u32, high: bool) -> bool {
        let mut st = self.st.lock();
        let mut out = Vec::new();
        let ok = match st.ioapics.get_mut(index) {
            Some(io) => io.set_line(pin, high, &mut out),
            None => false,
        };
        st.deliver_ioapic(out);
        ok
    }

    /// The redirection entry of IOAPIC `index` pin `pin`, with its read-only
    /// bits.
    pub fn ioapic_entry(&self, index: usize, pin: u32) -> Option<RedirectionEntry> {
        self.st.lock().ioapics.get(index)?.entry(pin)
    }

    /// Every (pin, vector) IOAPIC `index` has sent.
    pub fn ioapic_deliveries(&self, index: usize) -> Vec<(u32, u8)> {
        self.st
            .lock()
            .ioapics
            .get(index)
            .map(|io| io.delivered.clone())
            .unwrap_or_default()
    }

    /// A device writes `msg` to the APIC window (an MSI).
    pub fn msi_write(&self, msg: &MsiMsg) -> Result<(), MsiError> {
        let mut st = self.st.lock();
        let t = decode_msi(msg, st.msi_format)?;
        st.deliver(BusMessage {
            dest: t.apic_id.get(),
            logical: t.logical,
            shorthand: 0,
            mode: t.delivery_mode,
            vector: t.vector.get(),
            level: t.level,
            from: None,
        });
        Ok(())
    }

    /// CPU `cpu` (interrupts enabled) takes its highest-priority deliverable
    /// interrupt: the vector moves from IRR to ISR and is returned.
    pub fn take_interrupt(&self, cpu: usize) -> Option<u8> {
        self.st.lock().cpus.get_mut(cpu)?.take()
    }

    /// The spurious vector CPU `cpu` would deliver (SVR bits 0-7), counting
    /// one spurious delivery (no ISR bit is set, no EOI is expected).
    pub fn deliver_spurious(&self, cpu: usize) -> Option<u8> {
        let mut st = self.st.lock();
        let c = st.cpus.get_mut(cpu)?;
        c.spurious_delivered += 1;
        Some(c.svr as u8)
    }

    fn with_cpu<R>(&self, cpu: usize, f: impl FnOnce(&LapicModel) -> R) -> Option<R> {
        self.st.lock().cpus.get(cpu).map(f)
    }

    /// Whether `vector` is requested (IRR) on `cpu`.
    pub fn is_pending(&self, cpu: usize, vector: impl Into<u8>) -> bool {
        let vector = vector.into();
        self.with_cpu(cpu, |c| c.irr(vector)).unwrap_or(false)
    }
    /// Whether `vector` is in service (ISR) on `cpu`.
    pub fn is_in_service(&self, cpu: usize, vector: impl Into<u8>) -> bool {
        let vector = vector.into();
        self.with_cpu(cpu, |c| c.isr(vector)).unwrap_or(false)
    }
    /// Whether `vector` was accepted level-triggered (TMR) on `cpu`.
    pub fn is_level(&self, cpu: usize, vector: impl Into<u8>) -> bool {
        let vector = vector.into();
        self.with_cpu(cpu, |c| c.tmr(vector)).unwrap_or(false)
    }
    /// All vectors pending on `cpu`, ascending.
    pub fn pending_vectors(&self, cpu: usize) -> Vec<u8> {
        self.with_cpu(cpu, |c| (0..=255u8).filter(|v| c.irr(*v)).collect())
            .unwrap_or_default()
    }
    /// NMIs received by `cpu`.
    pub fn nmi_count(&self, cpu: usize) -> u32 {
        self.with_cpu(cpu, |c| c.nmi_count).unwrap_or(0)
    }
    /// INITs received by `cpu`.
    pub fn init_count(&self, cpu: usize) -> u32 {
        self.with_cpu(cpu, |c| c.init_count).unwrap_or(0)
    }
    /// Start-up vectors (pages) received by `cpu`, in order.
    pub fn sipi_vectors(&self, cpu: usize) -> Vec<u8> {
        self.with_cpu(cpu, |c| c.sipi_vectors.clone())
            .unwrap_or_default()
    }
    /// Illegal accesses (#GP) made on `cpu`.
    pub fn gp_faults(&self, cpu: usize) -> u32 {
        self.with_cpu(cpu, |c| c.gp_faults).unwrap_or(0)
    }
    /// `cpu`'s SVR.
    pub fn svr(&self, cpu: usize) -> u32 {
        self.with_cpu(cpu, |c| c.svr).unwrap_or(0)
    }
    /// `cpu`'s IA32_APIC_BASE.
    pub fn apic_base(&self, cpu: usize) -> u64 {
        self.with_cpu(cpu, |c| c.apic_base).unwrap_or(0)
    }
    /// `cpu`'s LVT register at xAPIC `offset`.
    pub fn lvt(&self, cpu: usize, offset: usize) -> Option<u32> {
        self.st.lock().cpus.get_mut(cpu)?.read(offset)
    }
    /// Vectors whose EOI was broadcast to the IOAPICs, in order.
    pub fn eoi_broadcasts(&self) -> Vec<u8> {
        self.st.lock().eoi_broadcasts.clone()
    }
    /// Messages nobody accepted.
    pub fn lost_messages(&self) -> u32 {
        self.st.lock().lost_messages
    }
    /// CPUs asked to run their vector cleanup (via [`ModelApicOps`]), in
    /// order; drains the list.
    pub fn take_cleanup_requests(&self) -> Vec<CpuId> {
        core::mem::take(&mut self.st.lock().cleanup_requests)
    }
    /// The 8259 pair (master, slave).
    pub fn pics(&self) -> [PicModel; 2] {
        self.st.lock().pics
    }

    /// An edge on ISA line `line` (0-15) of the 8259 pair: the line's IRR
    /// bit latches (masked or not, as on the 8259A); a slave line whose
    /// request the slave presents also latches the master's IR2. Returns
    /// false for a line above 15.
    pub fn pic_raise(&self, line: u8) -> bool {
        if line > 15 {
            return false;
        }
        let mut st = self.st.lock();
        if line < 8 {
            st.pics[0].irr |= 1 << line;
        } else {
            st.pics[1].irr |= 1 << (line - 8);
            if st.pics[1].resolve(0).is_some() {
                st.pics[0].irr |= 1 << 2;
            }
        }
        true
    }

    /// The request on `line` goes away before the CPU acknowledges it (a
    /// glitch, or a level source deasserted): its IRR bit clears. What the
    /// master already latched on IR2 for a slave line stays, which is how a
    /// spurious IRQ 15 arises.
    pub fn pic_withdraw(&self, line: u8) {
        let mut st = self.st.lock();
        match line {
            0..=7 => st.pics[0].irr &= !(1 << line),
            8..=15 => st.pics[1].irr &= !(1 << (line - 8)),
            _ => {}
        }
    }

    /// Whether the master's INT output is asserted (a request it would
    /// present to the CPU now).
    pub fn pic_int(&self) -> bool {
        let st = self.st.lock();
        st.pics[0].resolve(Self::slave_output(&st)).is_some()
    }

    fn slave_output(st: &State) -> u8 {
        if st.pics[1].resolve(0).is_some() {
            1 << 2
        } else {
            0
        }
    }

    /// The CPU's interrupt acknowledge cycle on the 8259 pair: returns the
    /// vector delivered. With nothing to present, the master delivers its
    /// IR7 vector without setting an ISR bit; when the master selected the
    /// cascade (IR2, now in service) but the slave has nothing, the slave
    /// delivers its IR7 vector (a spurious IRQ 15).
    pub fn pic_acknowledge(&self) -> u8 {
        let mut st = self.st.lock();
        let extra = Self::slave_output(&st);
        let (vector, line) = st.pics[0].acknowledge(extra);
        if line == Some(2) {
            st.pics[1].acknowledge(0).0
        } else {
            vector
        }
    }

    /// Advances `cpu`'s APIC timer by `bus_clocks` (before the divider).
    pub fn advance_timer(&self, cpu: usize, bus_clocks: u64) {
        let mut st = self.st.lock();
        let Some(c) = st.cpus.get_mut(cpu) else {
            return;
        };
        let n = c.advance(bus_clocks);
        st.fire_timer(cpu, n);
    }

    /// Sets the TSC of every CPU; TSC-deadline timers that are due fire.
    pub fn set_tsc(&self, tsc: u64) {
        let mut st = self.st.lock();
        st.tsc = tsc;
        for cpu in 0..st.cpus.len() {
            let c = &mut st.cpus[cpu];
            if c.timer_mode() == 2 && c.tsc_deadline != 0 && tsc >= c.tsc_deadline {
                c.tsc_deadline = 0;
                st.fire_timer(cpu, 1);
            }
        }
    }
}

/// CPU n's (or the executing CPU's) xAPIC page. Accesses while the APIC is
/// in x2APIC mode or disabled read all-ones and are dropped, as on hardware.
pub struct ModelXApic {
    m: Arc<Machine>,
    cpu: Option<usize>,
}

impl ModelXApic {
    fn cpu(&self) -> usize {
        self.cpu.unwrap_or_else(|| self.m.current_cpu())
    }
}

impl Mmio32 for ModelXApic {
    fn read32(&self, offset: usize) -> u32 {
        let cpu = self.cpu();
        let mut st = self.m.st.lock();
        let Some(c) = st.cpus.get_mut(cpu) else {
            return u32::MAX;
        };
        if c.x2apic() || !c.hw_enabled() {
            return u32::MAX;
        }
        match c.read(offset) {
            Some(v) => v,
            None => {
                c.esr_pending |= ESR_ILLEGAL_REGISTER;
                0
            }
        }
    }

    fn write32(&self, offset: usize, value: u32) {
        let cpu = self.cpu();
        let mut st = self.m.st.lock();
        match st.cpus.get(cpu) {
            Some(c) if !c.x2apic() && c.hw_enabled() => {}
            _ => return,
        }
        st.lapic_write(cpu, offset, value as u64);
    }
}

/// CPU n's (or the executing CPU's) MSRs.
pub struct ModelMsr {
    m: Arc<Machine>,
    cpu: Option<usize>,
}

impl ModelMsr {
    fn cpu(&self) -> usize {
        self.cpu.unwrap_or_else(|| self.m.current_cpu())
    }
}

impl Msr for ModelMsr {
    fn read_msr(&self, msr: u32) -> u64 {
        let cpu = self.cpu();
        let mut st = self.m.st.lock();
        let Some(c) = st.cpus.get_mut(cpu) else {
            return 0;
        };
        match msr {
            MSR_APIC_BASE => c.apic_base,
            MSR_TSC_DEADLINE => c.tsc_deadline,
            m if reg::x2apic_offset(m).is_some() && c.x2apic() => {
                let offset = reg::x2apic_offset(m).unwrap_or(0);
                if offset == reg::ICR_LOW {
                    return c.icr_low as u64 | (c.icr_high as u64) << 32;
                }
                match c.read(offset) {
                    Some(v) => v as u64,
                    None => {
                        c.gp_faults += 1;
                        0
                    }
                }
            }
            _ => {
                c.gp_faults += 1;
                0
            }
        }
    }

    fn write_msr(&self, msr: u32, value: u64) {
        let cpu = self.cpu();
        let mut st = self.m.st.lock();
        let Some(c) = st.cpus.get_mut(cpu) else {
            return;
        };
        match msr {
            MSR_APIC_BASE => {
                use crate::lapic::{APIC_BASE_ENABLE as EN, APIC_BASE_X2APIC as EXTD};
                let (old, new) = (c.apic_base & (EN | EXTD), value & (EN | EXTD));
                // SDM 11.12.5: x2APIC -> xAPIC and "EXTD without EN" are
                // invalid transitions.
                if new == EXTD || (old == EN | EXTD && new == EN) {
                    c.gp_faults += 1;
                    return;
                }
                if new & EN == 0 {
                    // Disabling resets the APIC's state (keeps the id).
                    let id = c.apic_id;
                    *c = LapicModel::reset(id, c.apic_base & crate::lapic::APIC_BASE_BSP != 0);
                }
                c.apic_base = value;
            }
            MSR_TSC_DEADLINE => {
                if c.timer_mode() == 2 {
                    c.tsc_deadline = value;
                    let due = value != 0 && st.tsc >= value;
                    if due {
                        st.cpus[cpu].tsc_deadline = 0;
                        st.fire_timer(cpu, 1);
                    }
                }
            }
            m if reg::x2apic_offset(m).is_some() && c.x2apic() => {
                let offset = reg::x2apic_offset(m).unwrap_or(0);
                st.lapic_write(cpu, offset, value);
            }
            _ => c.gp_faults += 1,
        }
    }
}

/// IOAPIC n's register window.
pub struct ModelIoApicMmio {
    m: Arc<Machine>,
    index: usize,
}

impl Mmio32 for ModelIoApicMmio {
    fn read32(&self, offset: usize) -> u32 {
        self.m
            .st
            .lock()
            .ioapics
            .get(self.index)
            .map_or(u32::MAX, |io| io.mmio_read(offset))
    }

    fn write32(&self, offset: usize, value: u32) {
        let mut st = self.m.st.lock();
        let mut out = Vec::new();
        if let Some(io) = st.ioapics.get_mut(self.index) {
            io.mmio_write(offset, value, &mut out);
        }
        st.deliver_ioapic(out);
    }
}

/// The 8259 ports.
pub struct ModelPorts {
    m: Arc<Machine>,
}

impl PortIo for ModelPorts {
    fn inb(&self, port: u16) -> u8 {
        let st = self.m.st.lock();
        match port {
            0x20 => st.pics[0].read_command(),
            0x21 => st.pics[0].imr,
            0xA0 => st.pics[1].read_command(),
            0xA1 => st.pics[1].imr,
            _ => 0xFF,
        }
    }

    fn outb(&self, port: u16, value: u8) {
        let mut st = self.m.st.lock();
        match port {
            0x20 => st.pics[0].command(value),
            0x21 => st.pics[0].data(value),
            0xA0 => st.pics[1].command(value),
            0xA1 => st.pics[1].data(value),
            _ => {}
        }
    }
}

/// [`ApicOps`] acting as the machine's current CPU.
#[derive(Clone)]
pub struct ModelApicOps {
    m: Arc<Machine>,
}

impl ModelApicOps {
    /// The machine.
    pub fn machine(&self) -> &Arc<Machine> {
        &self.m
    }
}

impl ApicOps for ModelApicOps {
    fn current_cpu(&self) -> CpuId {
        // The model's CPU indices come from its APIC id list; one no `CpuId`
        // can hold (at or above MAX_CPUS) reads as the boot CPU.
        CpuId::from_index(self.m.current_cpu()).unwrap_or(CpuId::BOOT)
    }

    fn eoi(&self) {
        let cpu = self.m.current_cpu();
        let mut st = self.m.st.lock();
        if cpu < st.cpus.len() {
            st.eoi(cpu);
        }
    }

    fn send_ipi(&self, apic_id: ApicId, vector: Vector) {
        let from = self.m.current_cpu();
        let mut st = self.m.st.lock();
        st.deliver(BusMessage {
            dest: apic_id.get(),
            logical: false,
            shorthand: 0,
            mode: DM_FIXED,
            vector: vector.get(),
            level: false,
            from: Some(from),
        });
    }

    fn vector_pending(&self, vector: Vector) -> bool {
        let cpu = self.m.current_cpu();
        let st = self.m.st.lock();
        st.cpus.get(cpu).is_some_and(|c| c.irr(vector.get()))
    }

    fn request_cleanup(&self, cpu: CpuId) {
        self.m.st.lock().cleanup_requests.push(cpu);
    }
}

/// A modelled MSI-capable device with per-vector mask bits: it writes its
/// programmed message to the machine when it fires, or latches a pending
/// bit while masked (sent on unmask, as PCI MSI-X does).
pub struct ModelMsiDevice {
    m: Arc<Machine>,
    slots: Mutex<Vec<(MsiMsg, bool, bool)>>,
}

impl ModelMsiDevice {
    /// A device with `vectors` vectors, all masked and unprogrammed.
    pub fn new(m: &Arc<Machine>, vectors: u32) -> Self {
        Self {
            m: m.clone(),
            slots: Mutex::new(
                (0..vectors)
                    .map(|_| (MsiMsg::default(), true, false))
                    .collect(),
            ),
        }
    }

    /// The message programmed for vector `index`.
    pub fn message(&self, index: u32) -> Option<MsiMsg> {
        self.slots.lock().get(index as usize).map(|s| s.0)
    }

    /// Whether vector `index` is masked.
    pub fn is_masked(&self, index: u32) -> bool {
        self.slots.lock().get(index as usize).is_none_or(|s| s.1)
    }

    /// The device raises vector `index`.
    pub fn fire(&self, index: u32) -> Result<(), MsiError> {
        let msg = {
            let mut s = self.slots.lock();
            let Some(slot) = s.get_mut(index as usize) else {
                return Ok(());
            };
            if slot.1 {
                slot.2 = true;
                return Ok(());
            }
            slot.0
        };
        self.m.msi_write(&msg)
    }
}

impl MsiDevice for ModelMsiDevice {
    fn write_msg(&self, index: u32, msg: MsiMsg) {
        if let Some(s) = self.slots.lock().get_mut(index as usize) {
            s.0 = msg;
        }
    }

    fn set_masked(&self, index: u32, masked: bool) -> bool {
        let send = {
            let mut s = self.slots.lock();
            let Some(slot) = s.get_mut(index as usize) else {
                return false;
            };
            slot.1 = masked;
            let send = !masked && slot.2;
            if send {
                slot.2 = false;
            }
            send.then_some(slot.0)
        };
        if let Some(msg) = send {
            let _ = self.m.msi_write(&msg);
        }
        true
    }
}
