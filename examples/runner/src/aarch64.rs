//! `cargo qemu --arch aarch64 [--gic 2|3] [--smp N]`: the aarch64 reference
//! kernel in `examples/arm64-kernel`, booted at EL1 on
//! `qemu-system-aarch64 -M virt,gic-version=N -semihosting`.
//!
//! The kernel leaves QEMU through semihosting `SYS_EXIT`, so QEMU's exit
//! status is the kernel's code ([`arm_exit`]). As on x86, only the pass code
//! together with a `RESULT: PASS` line is a pass.
//!
//! `--gic` and `--xen` are this architecture's own options:
//! [`strip_gic_option`] takes them out of the command line before the common
//! [`Options`] parser sees the rest, and [`Aarch64::from_args`] reads them.
//!
//! With `--xen` the kernel runs as a dom0less domU of real Xen 4.17 under
//! QEMU (see [`crate::xen`]): QEMU enters Xen at EL2
//! (`virtualization=on`), Xen starts the kernel at EL1.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::boot::{Boot, Verdict};
use crate::options::Options;

/// Usage line of the aarch64-only option (shown with a refused `--gic`;
/// `options::USAGE` may include it too).
pub const USAGE_GIC: &str =
    "  --gic       GIC version for --arch aarch64: 2 or 3 (default 3; GICv2 takes at most 8 CPUs)
  --xen       --arch aarch64 only: boot the kernel as a dom0less guest of real Xen 4.17
  --evtchn    with --xen: the event-channel ABI, fifo or 2l (default: FIFO when Xen
              offers it, else 2-level; the kernel's output names the one that ran)";

/// Which GIC QEMU's `virt` machine gets (`-M virt,gic-version=N`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicVersion {
    /// GICv2: memory-mapped CPU interface, at most 8 CPUs.
    V2,
    /// GICv3: redistributors and the system-register CPU interface.
    V3,
}

impl GicVersion {
    fn number(self) -> u32 {
        match self {
            GicVersion::V2 => 2,
            GicVersion::V3 => 3,
        }
    }
}

/// Exit codes of the aarch64 kernel (semihosting `SYS_EXIT` with
/// `ADP_Stopped_ApplicationExit`; QEMU exits with the code itself). Keep in
/// sync with `examples/arm64-kernel/src/exit.rs`. The same numbers as the
/// x86 kernel's statuses, so both read alike.
pub mod arm_exit {
    /// Every check passed.
    pub const PASS: i32 = 33;
    /// A check failed (`RESULT: FAIL ...`).
    pub const FAIL: i32 = 35;
    /// The kernel panicked.
    pub const PANIC: i32 = 37;
    /// An unexpected exception (synchronous abort, SError, FIQ ...).
    pub const EXCEPTION: i32 = 39;
    /// A CPU did not come up or power off in time.
    pub const CPU_TIMEOUT: i32 = 41;
}

const ARM_TARGET: &str = "aarch64-unknown-none";

/// The event-channel ABI `--evtchn` forces on the Xen guest (passed as
/// `evtchn=fifo|2l` in the domU's `bootargs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvtchnAbi {
    /// `--evtchn fifo`: FIFO, or the boot fails.
    Fifo,
    /// `--evtchn 2l`: 2-level even when Xen offers FIFO.
    TwoLevel,
}

impl EvtchnAbi {
    /// The kernel's `bootargs` word.
    pub fn bootarg(self) -> &'static str {
        match self {
            EvtchnAbi::Fifo => "evtchn=fifo",
            EvtchnAbi::TwoLevel => "evtchn=2l",
        }
    }
}

/// The aarch64 kernel's build/boot/judge recipe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Aarch64 {
    /// The GIC QEMU emulates, or why the `--gic` value was refused
    /// (reported by [`Boot::check_options`]).
    gic: Result<GicVersion, String>,
    /// `--xen`: under real Xen.
    xen: bool,
    /// `--evtchn`, or why its value was refused.
    evtchn: Result<Option<EvtchnAbi>, String>,
}

impl Default for Aarch64 {
    fn default() -> Self {
        Self::new(GicVersion::V3)
    }
}

impl Aarch64 {
    /// The recipe for `gic`.
    pub fn new(gic: GicVersion) -> Self {
        Self {
            gic: Ok(gic),
            xen: false,
            evtchn: Ok(None),
        }
    }

    /// The recipe for `gic` under Xen.
    #[cfg(test)]
    pub fn xen(gic: GicVersion) -> Self {
        Self {
            gic: Ok(gic),
            xen: true,
            evtchn: Ok(None),
        }
    }

    /// The recipe the command line `args` (after `cargo qemu`) selects:
    /// `--gic N` / `--gic=N`, GICv3 if absent. A bad value is reported by
    /// [`Boot::check_options`].
    pub fn from_args(args: impl IntoIterator<Item = String>) -> Self {
        let (_, gic, xen, evtchn) = split_gic(args);
        Self {
            gic: gic.map(|g| g.unwrap_or(GicVersion::V3)),
            xen,
            evtchn,
        }
    }

    /// The `--evtchn` ABI, or why it was refused.
    pub fn evtchn(&self) -> Result<Option<EvtchnAbi>, String> {
        self.evtchn.clone()
    }

    /// The GIC version, or why `--gic` was refused.
    pub fn gic(&self) -> Result<GicVersion, String> {
        self.gic.clone()
    }
}

/// `args` without `--gic N` / `--gic=N`, `--xen` and `--evtchn` (the common
/// [`Options`] parser does not know these aarch64-only options).
pub fn strip_gic_option(args: Vec<String>) -> Vec<String> {
    split_gic(args).0
}

/// What [`split_gic`] takes out: the other arguments, `--gic`, `--xen`,
/// `--evtchn`.
type Split = (
    Vec<String>,
    Result<Option<GicVersion>, String>,
    bool,
    Result<Option<EvtchnAbi>, String>,
);

/// Splits `--gic` (the last one wins), `--xen` and `--evtchn` (the last one
/// wins) from the other arguments.
fn split_gic(args: impl IntoIterator<Item = String>) -> Split {
    let mut rest = Vec::new();
    let mut gic = Ok(None);
    let mut xen = false;
    let mut evtchn = Ok(None);
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        if arg == "--xen" {
            xen = true;
            continue;
        }
        let abi = if arg == "--evtchn" {
            Some(it.next())
        } else {
            arg.strip_prefix("--evtchn=").map(|v| Some(v.to_string()))
        };
        if let Some(v) = abi {
            evtchn = match v.as_deref() {
                Some("fifo") => Ok(Some(EvtchnAbi::Fifo)),
                Some("2l" | "2-level") => Ok(Some(EvtchnAbi::TwoLevel)),
                Some(other) => Err(format!("--evtchn must be fifo or 2l, got {other:?}")),
                None => Err("--evtchn needs a value (fifo or 2l)".into()),
            };
            continue;
        }
        let value = if arg == "--gic" {
            it.next()
        } else if let Some(v) = arg.strip_prefix("--gic=") {
            Some(v.to_string())
        } else {
            rest.push(arg);
            continue;
        };
        gic = match value.as_deref() {
            Some("2" | "v2") => Ok(Some(GicVersion::V2)),
            Some("3" | "v3") => Ok(Some(GicVersion::V3)),
            Some(other) => Err(format!("--gic must be 2 or 3, got {other:?}")),
            None => Err("--gic needs a value (2 or 3)".into()),
        };
    }
    (rest, gic, xen, evtchn)
}

/// The machine's device tree for the bare-metal boot, beside the kernel.
pub fn virt_dtb_beside(kernel: &Path) -> PathBuf {
    kernel.with_file_name("virt.dtb")
}

/// Dumps QEMU's own device tree for the machine the kernel will boot on
/// (`-machine dumpdtb`, the same `-M`/`-smp`/`-m`/`-device`) and packs it,
/// so that `-dtb` puts it where the kernel finds it.
///
/// Why: QEMU hands an ELF kernel no tree pointer (`x0` = 0) and puts its
/// own tree at the start of RAM only if it fits below the image; its
/// generated tree is 1 MiB (mostly free space) and the kernel is linked
/// 512 KiB above RAM start, so without this the kernel gets no tree. The
/// packed copy (a few KiB) fits, and the kernel reads it at RAM start.
fn write_virt_dtb(qemu: &str, gic: u32, smp: u32, out: &Path) -> Result<(), String> {
    let raw = out.with_extension("raw.dtb");
    let status = Command::new(qemu)
        .args([
            "-M",
            &format!("virt,gic-version={gic}"),
            "-cpu",
            "cortex-a57",
        ])
        .args(["-smp", &smp.to_string(), "-m", "128M", "-nographic"])
        .args(["-device", "edu"])
        .arg("-machine")
        .arg(format!("dumpdtb={}", raw.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run {qemu}: {e}"))?;
    if !status.success() {
        return Err(format!("qemu -machine dumpdtb failed ({status})"));
    }
    let blob = std::fs::read(&raw).map_err(|e| format!("reading {}: {e}", raw.display()))?;
    let packed = pack_fdt(&blob).ok_or("qemu's dumped device tree is not a valid blob")?;
    std::fs::write(out, packed).map_err(|e| format!("writing {}: {e}", out.display()))
}

/// A flattened device tree cut to its used size (Devicetree Specification
/// v0.4, 5.2: `totalsize` covers the header, the memory reservation map,
/// the structure block and the strings block; QEMU's blob has free space
/// after them).
fn pack_fdt(blob: &[u8]) -> Option<Vec<u8>> {
    let be32 = |o: usize| -> Option<usize> {
        Some(u32::from_be_bytes(blob.get(o..o + 4)?.try_into().ok()?) as usize)
    };
    if be32(0)? != 0xd00d_feed {
        return None;
    }
    let end_struct = be32(8)?.checked_add(be32(36)?)?;
    let end_strings = be32(12)?.checked_add(be32(32)?)?;
    let used = end_struct.max(end_strings).max(be32(16)?);
    if used > blob.len() || used > be32(4)? {
        return None;
    }
    let mut out = blob[..used].to_vec();
    out[4..8].copy_from_slice(&(used as u32).to_be_bytes());
    Some(out)
}

impl Boot for Aarch64 {
    fn check_options(&self, opts: &Options) -> Result<(), String> {
        let gic = self.gic().map_err(|e| format!("{e}\n{USAGE_GIC}"))?;
        match self.evtchn() {
            Err(e) => return Err(format!("{e}\n{USAGE_GIC}")),
            Ok(Some(_)) if !self.xen => return Err("--evtchn goes with --xen".into()),
            Ok(_) => {}
        }
        // GICv2's target lists and GICD_ITARGETSR have 8 bits (IHI 0048B
        // 4.3.12); the kernel handles at most 8 CPUs with either GIC.
        if opts.smp > 8 {
            return Err(format!("--smp {} is more than 8 CPUs ({gic:?})", opts.smp));
        }
        match opts.machine.as_deref() {
            None | Some("virt") => {}
            Some(m) => return Err(format!("--machine must be virt for aarch64, got {m:?}")),
        }
        Ok(())
    }

    fn wants_xen(&self) -> bool {
        self.xen
    }

    fn build(&self, root: &Path, opts: &Options) -> Result<PathBuf, String> {
        let dir = root.join("examples/arm64-kernel");
        let target_dir = dir.join("target");
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        // A workspace of its own with a `.cargo/config.toml` (static
        // relocation model): build from its directory so cargo reads it,
        // and keep the runner's own target dir and flags out of it.
        cmd.current_dir(&dir)
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("CARGO_BUILD_TARGET")
            .env_remove("RUSTFLAGS")
            .args(["build", "--release", "--manifest-path"])
            .arg(dir.join("Cargo.toml"))
            .args(["--target", ARM_TARGET, "--target-dir"])
            .arg(&target_dir);
        if let Some(f) = &opts.features {
            cmd.args(["--features", f]);
        }
        crate::run_build(cmd, "the aarch64 kernel")?;
        let image = target_dir.join(ARM_TARGET).join("release/arm64-kernel");
        if image.is_file() && self.xen {
            let gic = self.gic().unwrap_or(GicVersion::V3).number();
            let bootarg = self.evtchn().ok().flatten().map(EvtchnAbi::bootarg);
            crate::xen::prepare(&image, self.qemu_binary(), gic, opts.smp, bootarg)
        } else if image.is_file() {
            let gic = self.gic().unwrap_or(GicVersion::V3).number();
            write_virt_dtb(self.qemu_binary(), gic, opts.smp, &virt_dtb_beside(&image))?;
            Ok(image)
        } else {
            Err(format!(
                "kernel image missing after build: {}",
                image.display()
            ))
        }
    }

    fn qemu_binary(&self) -> &'static str {
        crate::setup::qemu_program(crate::options::Arch::Aarch64).0
    }

    fn qemu_command(&self, kernel: &Path, opts: &Options) -> Command {
        let mut cmd = Command::new(self.qemu_binary());
        let gic = self.gic().unwrap_or(GicVersion::V3).number();
        if self.xen {
            // Xen at EL2 (`virtualization=on`), the kernel as a raw Image
            // where the dom0less tree's module says, the same -M/-cpu/-smp/-m
            // the tree was dumped with.
            let root = crate::workspace_root();
            cmd.args(["-accel", "tcg", "-M", &crate::xen::machine(gic)])
                .args(["-cpu", "cortex-a57"])
                .args(["-smp", &opts.smp.to_string(), "-m", crate::xen::HOST_MEM])
                .args(["-nographic", "-no-reboot", "-semihosting"])
                .arg("-kernel")
                .arg(crate::xen::hypervisor(&root))
                .arg("-dtb")
                .arg(crate::xen::dtb_beside(kernel))
                .arg("-device")
                .arg(format!(
                    "loader,file={},addr={:#x},force-raw=on",
                    kernel.display(),
                    crate::xen::IMAGE_ADDR
                ))
                .arg("-device")
                .arg(format!(
                    "loader,file={},addr={:#x},force-raw=on",
                    crate::xen::passthrough_beside(kernel).display(),
                    crate::xen::PASSTHROUGH_ADDR
                ))
                .stdin(Stdio::null())
                .stdout(Stdio::piped());
            return cmd;
        }
        // virt without virtualization=on/secure=on enters the kernel at EL1
        // with PSCI emulated through HVC; cortex-a57 is a plain ARMv8.0 CPU
        // (the kernel needs nothing newer).
        cmd.args(["-accel", "tcg"])
            .arg("-M")
            .arg(format!("virt,gic-version={gic}"))
            .args(["-cpu", "cortex-a57"])
            .args(["-smp", &opts.smp.to_string(), "-m", "128M"])
            .args(["-nographic", "-semihosting"])
            // QEMU's `edu` PCI device on the virt machine's PCIe host: the
            // kernel takes its MSIs through the ITS (GICv3) or the GICv2m
            // frame (GICv2).
            .args(["-device", "edu"])
            .arg("-dtb")
            .arg(virt_dtb_beside(kernel))
            .arg("-kernel")
            .arg(kernel)
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        cmd
    }

    fn verdict(&self, status: Option<i32>, result_line: Option<&str>) -> Verdict {
        let pass_line = result_line.is_some_and(|l| l.starts_with("RESULT: PASS"));
        let what = match status {
            Some(arm_exit::PASS) if pass_line => return Verdict::Pass,
            Some(arm_exit::PASS) => "exit status says pass but no `RESULT: PASS` line".into(),
            Some(arm_exit::FAIL) => "the kernel reported failed checks".into(),
            Some(arm_exit::PANIC) => "the kernel panicked".into(),
            Some(arm_exit::EXCEPTION) => "unexpected exception in the kernel".into(),
            Some(arm_exit::CPU_TIMEOUT) => "a CPU did not come up or power off in time".into(),
            Some(0) if self.xen => {
                "QEMU exited with 0: Xen panicked or rebooted (-no-reboot), or the guest never \
                 reached semihosting exit"
                    .into()
            }
            Some(0) => "QEMU exited with 0: the kernel never reached semihosting exit".into(),
            Some(1) => "QEMU exited with 1: bad command line or kernel image".into(),
            Some(s) => format!("QEMU exited with unexpected status {s}"),
            None => "QEMU was killed by a signal".into(),
        };
        Verdict::Fail(format!(
            "{what} (status {status:?}; last RESULT line: {})",
            result_line.unwrap_or("none")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn opts(smp: u32) -> Options {
        let mut o = Options::parse(&[]).unwrap().unwrap();
        o.smp = smp;
        o
    }

    #[test]
    fn gic_option_is_taken_out_and_the_rest_kept_in_order() {
        let args = strings(&["--arch", "aarch64", "--gic", "2", "--smp", "4"]);
        assert_eq!(
            strip_gic_option(args.clone()),
            strings(&["--arch", "aarch64", "--smp", "4"])
        );
        assert_eq!(Aarch64::from_args(args).gic(), Ok(GicVersion::V2));
        assert!(strip_gic_option(strings(&["--gic=3"])).is_empty());
        assert_eq!(
            Aarch64::from_args(strings(&["--gic=3"])).gic(),
            Ok(GicVersion::V3)
        );
        assert_eq!(
            Aarch64::from_args(strings(&["--smp", "2"])).gic(),
            Ok(GicVersion::V3),
            "GICv3 by default"
        );
    }

    #[test]
    fn xen_option_is_taken_out_and_selects_xen() {
        let args = strings(&["--arch", "aarch64", "--xen", "--smp", "2", "--gic=2"]);
        assert_eq!(
            strip_gic_option(args.clone()),
            strings(&["--arch", "aarch64", "--smp", "2"])
        );
        let b = Aarch64::from_args(args);
        assert!(b.wants_xen());
        assert_eq!(b.gic(), Ok(GicVersion::V2));
        assert!(!Aarch64::from_args(strings(&["--smp", "2"])).wants_xen());
        let args = strings(&["--xen", "--evtchn", "2l", "--smp", "2"]);
        assert_eq!(strip_gic_option(args.clone()), strings(&["--smp", "2"]));
        let b = Aarch64::from_args(args);
        assert_eq!(b.evtchn(), Ok(Some(EvtchnAbi::TwoLevel)));
        assert!(b.check_options(&opts(2)).is_ok());
        assert_eq!(
            Aarch64::from_args(strings(&["--xen", "--evtchn=fifo"])).evtchn(),
            Ok(Some(EvtchnAbi::Fifo))
        );
        assert_eq!(Aarch64::from_args(strings(&["--xen"])).evtchn(), Ok(None));
        for bad in [
            &["--xen", "--evtchn", "3l"][..],
            &["--xen", "--evtchn"],
            &["--evtchn", "fifo"],
        ] {
            assert!(
                Aarch64::from_args(strings(bad))
                    .check_options(&opts(2))
                    .is_err(),
                "{bad:?}"
            );
        }
        let cmd = Aarch64::xen(GicVersion::V3).qemu_command(Path::new("/t/Image"), &opts(2));
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let has = |pair: [&str; 2]| args.windows(2).any(|w| w[0] == pair[0] && w[1] == pair[1]);
        assert!(
            has(["-M", "virt,virtualization=on,gic-version=3"]),
            "{args:?}"
        );
        assert!(has(["-dtb", "/t/dom0less.dtb"]), "{args:?}");
        assert!(
            has([
                "-device",
                "loader,file=/t/Image,addr=0x50000000,force-raw=on"
            ]),
            "{args:?}"
        );
        assert!(
            has([
                "-device",
                "loader,file=/t/passthrough.dtb,addr=0x58000000,force-raw=on"
            ]),
            "{args:?}"
        );
        assert!(args.iter().any(|a| a == "-no-reboot"), "{args:?}");
        // A Xen panic exits QEMU with 0: never a pass.
        assert!(matches!(
            Aarch64::xen(GicVersion::V3).verdict(Some(0), Some("RESULT: PASS 3 checks")),
            Verdict::Fail(_)
        ));
    }

    #[test]
    fn bad_gic_values_are_refused_by_check_options() {
        for bad in [&["--gic"][..], &["--gic", "4"], &["--gic="]] {
            let b = Aarch64::from_args(strings(bad));
            assert!(b.gic().is_err(), "{bad:?}");
            assert!(b.check_options(&opts(2)).is_err(), "{bad:?}");
            assert!(strip_gic_option(strings(bad)).is_empty(), "{bad:?}");
        }
    }

    #[test]
    fn qemu_command_selects_the_gic_and_cpus() {
        let b = Aarch64::new(GicVersion::V2);
        let cmd = b.qemu_command(Path::new("/k"), &opts(4));
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let has = |pair: [&str; 2]| args.windows(2).any(|w| w[0] == pair[0] && w[1] == pair[1]);
        assert!(has(["-M", "virt,gic-version=2"]), "{args:?}");
        assert!(has(["-smp", "4"]), "{args:?}");
        assert!(has(["-kernel", "/k"]), "{args:?}");
        assert!(args.iter().any(|a| a == "-semihosting"), "{args:?}");
    }

    #[test]
    fn the_bare_boot_passes_edu_and_the_packed_tree() {
        let cmd = Aarch64::new(GicVersion::V2).qemu_command(Path::new("/t/arm64-kernel"), &opts(2));
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let has = |pair: [&str; 2]| args.windows(2).any(|w| w[0] == pair[0] && w[1] == pair[1]);
        assert!(has(["-device", "edu"]), "{args:?}");
        assert!(has(["-dtb", "/t/virt.dtb"]), "{args:?}");
    }

    #[test]
    fn pack_fdt_cuts_the_free_space_and_fixes_totalsize() {
        // Header (40 bytes), reservation map at 40 (16 bytes of zeros),
        // structure block at 56 (8 bytes), strings at 64 (4 bytes), then
        // free space up to a totalsize of 256.
        let mut blob = vec![0u8; 256];
        let put = |b: &mut Vec<u8>, off: usize, v: u32| {
            b[off..off + 4].copy_from_slice(&v.to_be_bytes());
        };
        put(&mut blob, 0, 0xd00d_feed);
        put(&mut blob, 4, 256);
        put(&mut blob, 8, 56); // off_dt_struct
        put(&mut blob, 12, 64); // off_dt_strings
        put(&mut blob, 16, 40); // off_mem_rsvmap
        put(&mut blob, 32, 4); // size_dt_strings
        put(&mut blob, 36, 8); // size_dt_struct
        let p = pack_fdt(&blob).unwrap();
        assert_eq!(p.len(), 68);
        assert_eq!(u32::from_be_bytes(p[4..8].try_into().unwrap()), 68);
        // Not a tree, or blocks beyond the blob: refused.
        assert!(pack_fdt(&blob[..40]).is_none());
        let mut bad = blob.clone();
        put(&mut bad, 0, 0);
        assert!(pack_fdt(&bad).is_none());
        put(&mut blob, 32, 1000);
        assert!(pack_fdt(&blob).is_none());
    }

    #[test]
    fn only_machine_virt_is_accepted() {
        let b = Aarch64::default();
        assert!(b.check_options(&opts(8)).is_ok());
        let mut o = opts(2);
        o.machine = Some("q35".into());
        assert!(b.check_options(&o).is_err());
        o.machine = Some("virt".into());
        assert!(b.check_options(&o).is_ok());
    }

    #[test]
    fn only_pass_status_and_pass_line_together_pass() {
        let b = Aarch64::default();
        assert_eq!(
            b.verdict(Some(33), Some("RESULT: PASS 87 checks")),
            Verdict::Pass
        );
        assert!(matches!(b.verdict(Some(33), None), Verdict::Fail(_)));
        assert!(matches!(
            b.verdict(Some(33), Some("RESULT: FAIL x")),
            Verdict::Fail(_)
        ));
        assert!(matches!(
            b.verdict(Some(0), Some("RESULT: PASS 1 checks")),
            Verdict::Fail(_)
        ));
        assert!(matches!(
            b.verdict(Some(35), Some("RESULT: FAIL rtc")),
            Verdict::Fail(_)
        ));
        assert!(matches!(b.verdict(None, None), Verdict::Fail(_)));
    }
}
