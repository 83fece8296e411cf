//! Line setup: the chip stack, the flow handler, the trigger type and the
//! line settings of a descriptor, before or between requests.

use crate::action::ActionList;
use crate::chip::{ChipFlags, ChipLevel, TriggerType};
use crate::desc::{LineState, MAX_LEVELS};
use crate::error::IrqError;
use crate::flow::FlowKind;
use crate::ids::IrqNumber;
use crate::instance::IrqCore;
use crate::platform::Platform;
use crate::reclaim::Retired;
use alloc::vec::Vec;

impl<P: Platform> IrqCore<P> {
    /// Installs the chip stack (outermost level first) and flow handler of
    /// `irq`. Refused while handlers are installed.
    pub fn set_chip(
        &self,
        irq: IrqNumber,
        levels: Vec<ChipLevel>,
        flow: FlowKind,
    ) -> Result<(), IrqError> {
        if levels.len() > MAX_LEVELS {
            return Err(IrqError::TooManyLevels);
        }
        if levels.is_empty() && !matches!(flow, FlowKind::Bad | FlowKind::Simple) {
            return Err(IrqError::NoChip(irq));
        }
        let s = self.section()?;
        let desc = self.desc(&s, irq)?;
        let mut g = self.lock_desc(desc);
        if !g.actions.is_empty() {
            return Err(IrqError::HasHandlers(irq));
        }
        g.chip_flags = levels.first().map(|l| l.chip.flags()).unwrap_or_default();
        g.levels = levels.into();
        let old_view = desc.publish_view(&g);
        desc.set_flow(&mut g, flow);
        g.line.remove(LineState::PER_CPU | LineState::PER_CPU_DEVID);
        match flow {
            FlowKind::PerCpu => g.line.insert(LineState::PER_CPU),
            FlowKind::PerCpuDevId => g
                .line
                .insert(LineState::PER_CPU | LineState::PER_CPU_DEVID | LineState::NO_AUTOEN),
            _ => {}
        }
        drop(g);
        drop(s);
        self.retire(Retired {
            _actions: ActionList::empty(),
            _view: old_view,
        });
        Ok(())
    }

    /// Changes only the flow handler of `irq` (for example edge vs level
    /// after a trigger change). Refused for per-CPU changes while handlers
    /// are installed.
    pub fn set_flow(&self, irq: IrqNumber, flow: FlowKind) -> Result<(), IrqError> {
        let s = self.section()?;
        let desc = self.desc(&s, irq)?;
        let mut g = self.lock_desc(desc);
        let percpu = |f: FlowKind| matches!(f, FlowKind::PerCpu | FlowKind::PerCpuDevId);
        if percpu(flow) != percpu(g.flow) && !g.actions.is_empty() {
            return Err(IrqError::HasHandlers(irq));
        }
        if g.levels.is_empty() && !matches!(flow, FlowKind::Bad | FlowKind::Simple) {
            return Err(IrqError::NoChip(irq));
        }
        desc.set_flow(&mut g, flow);
        Ok(())
    }

    /// Sets line properties (`DISABLE_UNLAZY`, `RESEND_WHEN_IN_PROGRESS`,
    /// `NO_REQUEST`, `NO_AUTOEN`, `AFFINITY_MANAGED`); other bits are
    /// refused.
    pub fn set_irq_settings(
        &self,
        irq: IrqNumber,
        set: LineState,
        clear: LineState,
    ) -> Result<(), IrqError> {
        let allowed = LineState::DISABLE_UNLAZY
            | LineState::RESEND_WHEN_IN_PROGRESS
            | LineState::NO_REQUEST
            | LineState::NO_AUTOEN
            | LineState::AFFINITY_MANAGED
            | LineState::MOVE_DEFERRED;
        if !allowed.contains(set | clear) {
            return Err(IrqError::InvalidSettings);
        }
        let s = self.section()?;
        let desc = self.desc(&s, irq)?;
        let mut g = self.lock_desc(desc);
        g.line.insert(set);
        g.line.remove(clear);
        Ok(())
    }

    /// Programs the trigger type of `irq` through its chip.
    pub fn set_trigger(&self, irq: IrqNumber, trigger: TriggerType) -> Result<(), IrqError> {
        let s = self.section()?;
        let desc = self.desc(&s, irq)?;
        self.with_bus_lock(desc, |g| {
            if !g.actions.is_empty()
                && g.trigger != TriggerType::None
                && trigger != g.trigger
                && g.actions.len() > 1
            {
                return Err(IrqError::TriggerMismatch(irq));
            }
            Self::apply_trigger(irq, g, trigger)
        })
    }

    /// Calls the chip's `set_type`, masking around it if the chip asks for it.
    pub(crate) fn apply_trigger(
        irq: IrqNumber,
        g: &mut crate::desc::DescInner,
        trigger: TriggerType,
    ) -> Result<(), IrqError> {
        if trigger == TriggerType::None {
            return Ok(());
        }
        let Some(d) = g.data(irq) else {
            return Err(IrqError::NoChip(irq));
        };
        let Some(chip) = d.chip() else {
            return Err(IrqError::NoChip(irq));
        };
        let masked_around = chip.flags().contains(ChipFlags::SET_TYPE_MASKED)
            && !g.line.contains(LineState::MASKED);
        if masked_around {
            chip.mask(&d);
        }
        let r = chip.set_type(&d, trigger);
        if masked_around {
            chip.unmask(&d);
        }
        r.map_err(|e| match e {
            crate::error::ChipError::InvalidTrigger => IrqError::InvalidTrigger,
            e => IrqError::Chip(e),
        })?;
        g.trigger = trigger;
        g.line.set(LineState::LEVEL, trigger.is_level());
        Ok(())
    }
}
