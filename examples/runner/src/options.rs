//! Command-line options of `cargo qemu`.

/// Usage text printed by `--help` and after a bad option.
pub const USAGE: &str = "usage: cargo qemu [--arch x86_64|aarch64] [--smp N] [--machine q35|pc] \
[--timeout SECONDS] [--features F] [--pic]
       cargo qemu --arch aarch64 [--gic 2|3] [--xen [--evtchn fifo|2l]] [--smp N] [--features F]
       cargo qemu --setup [--no-qemu] [--xen]
  --arch      architecture to boot (default x86_64)
  --smp       number of CPUs, 1 to 8 (default 2)
  --machine   QEMU machine for x86_64: q35 (default) or pc
  --timeout   kill QEMU and fail after this many seconds (default 60)
  --features  cargo features for the kernel build (e.g. drop-edu-irqs, which must FAIL)
  --gic       GIC version for --arch aarch64: 2 or 3 (default 3)
  --xen       --arch aarch64 only: boot the kernel as a dom0less guest of real Xen 4.17
              (needs dtc and Xen's arm64 hypervisor: installed like QEMU, or the
              commands are printed)
  --evtchn    with --xen: the event-channel ABI, fifo or 2l (default: FIFO when Xen
              offers it, else 2-level; the kernel's output names the one that ran)
  --pic       x86_64 on `-M pc`, one CPU, the IOAPIC unused: every ISA interrupt
              goes through the 8259 (arch-x86's Pic8259Chip; kernel feature `pic`)
  --setup     boot nothing: set up what every architecture's boot needs (both
              bare-metal Rust targets and both QEMUs; --no-qemu: the targets only;
              --xen: also dtc and Xen's arm64 hypervisor)
A boot first sets up what it needs: a missing Rust target is added with
`rustup target add`, missing QEMU is installed with apt-get when run as root
(each command is printed first); otherwise the exact commands are printed and
cargo qemu fails. IRQCORE_NO_INSTALL=1 prints the commands instead of running
them.";

/// The architecture to build and boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// `x86_64-unknown-none`, booted by `qemu-system-x86_64 -kernel` (PVH).
    X86_64,
    /// `aarch64-unknown-none` on `qemu-system-aarch64 -M virt` (not yet).
    Aarch64,
}

/// Parsed options.
#[derive(Clone, Debug)]
pub struct Options {
    /// Architecture.
    pub arch: Arch,
    /// CPU count given to QEMU.
    pub smp: u32,
    /// QEMU machine type (`None`: the architecture's default).
    pub machine: Option<String>,
    /// Timeout for one boot.
    pub timeout_secs: u64,
    /// Features passed to the kernel build.
    pub features: Option<String>,
    /// `--setup`: set up every architecture's needs and boot nothing.
    pub setup: bool,
    /// `--no-qemu` (with `--setup`): only the Rust targets.
    pub no_qemu: bool,
    /// `--pic`: the 8259 boot (`-M pc`, one CPU, kernel feature `pic`).
    pub pic: bool,
}

impl Options {
    /// Parses the arguments after `cargo qemu`; `Ok(None)` means `--help`.
    pub fn parse(args: &[String]) -> Result<Option<Self>, String> {
        let mut o = Options {
            arch: Arch::X86_64,
            smp: 2,
            machine: None,
            timeout_secs: 60,
            features: None,
            setup: false,
            no_qemu: false,
            pic: false,
        };
        let mut smp_given = false;
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let (key, inline) = match arg.split_once('=') {
                Some((k, v)) if k.starts_with("--") => (k, Some(v.to_string())),
                _ => (arg.as_str(), None),
            };
            let mut value = || -> Result<String, String> {
                inline
                    .clone()
                    .or_else(|| it.next().cloned())
                    .ok_or_else(|| format!("{key} needs a value"))
            };
            match key {
                "-h" | "--help" => return Ok(None),
                "--arch" => {
                    o.arch = match value()?.as_str() {
                        "x86_64" | "x86-64" | "x86" => Arch::X86_64,
                        "aarch64" | "arm64" => Arch::Aarch64,
                        other => return Err(format!("unknown --arch {other:?}")),
                    }
                }
                "--smp" => {
                    let v = value()?;
                    o.smp = v
                        .parse()
                        .ok()
                        .filter(|n| (1..=8).contains(n))
                        .ok_or_else(|| format!("--smp must be 1..=8, got {v:?}"))?;
                    smp_given = true;
                }
                "--machine" | "-M" => o.machine = Some(value()?),
                "--timeout" => {
                    let v = value()?;
                    o.timeout_secs =
                        v.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                            format!("--timeout must be a positive number, got {v:?}")
                        })?;
                }
                "--features" => o.features = Some(value()?),
                "--setup" => o.setup = true,
                "--no-qemu" => o.no_qemu = true,
                "--pic" => o.pic = true,
                other => return Err(format!("unknown option {other:?}")),
            }
        }
        if o.no_qemu && !o.setup {
            return Err("--no-qemu goes with --setup".into());
        }
        if o.pic {
            if o.arch != Arch::X86_64 {
                return Err("--pic is for x86_64".into());
            }
            match o.machine.as_deref() {
                None | Some("pc") => o.machine = Some("pc".into()),
                Some(m) => return Err(format!("--pic needs --machine pc, got {m:?}")),
            }
            if smp_given && o.smp != 1 {
                return Err(format!("--pic runs on one CPU, got --smp {}", o.smp));
            }
            o.smp = 1;
            o.features = Some(match o.features.take() {
                Some(f) if !f.is_empty() => format!("{f},pic"),
                _ => "pic".into(),
            });
        }
        Ok(Some(o))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(a: &[&str]) -> Result<Option<Options>, String> {
        Options::parse(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn defaults_and_values() {
        let o = parse(&[]).unwrap().unwrap();
        assert_eq!((o.arch, o.smp, o.timeout_secs), (Arch::X86_64, 2, 60));
        let o = parse(&[
            "--smp",
            "4",
            "--machine=pc",
            "--timeout",
            "9",
            "--features",
            "x",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(o.smp, 4);
        assert_eq!(o.machine.as_deref(), Some("pc"));
        assert_eq!(o.timeout_secs, 9);
        assert_eq!(o.features.as_deref(), Some("x"));
        assert_eq!(
            parse(&["--arch", "aarch64"]).unwrap().unwrap().arch,
            Arch::Aarch64
        );
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(parse(&["--smp", "0"]).is_err());
        assert!(parse(&["--smp", "9"]).is_err());
        assert!(parse(&["--smp"]).is_err());
        assert!(parse(&["--pic", "--machine", "q35"]).is_err());
        assert!(parse(&["--pic", "--smp", "2"]).is_err());
        assert!(parse(&["--pic", "--arch", "aarch64"]).is_err());
        let o = parse(&["--pic", "--features", "x"]).unwrap().unwrap();
        assert_eq!((o.smp, o.machine.as_deref()), (1, Some("pc")));
        assert_eq!(o.features.as_deref(), Some("x,pic"));
        assert!(parse(&["--timeout", "0"]).is_err());
        assert!(parse(&["--arch", "riscv"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
        assert!(parse(&["--help"]).unwrap().is_none());
        assert!(parse(&["--no-qemu"]).is_err());
    }

    #[test]
    fn setup_options() {
        let o = parse(&["--setup"]).unwrap().unwrap();
        assert!(o.setup && !o.no_qemu);
        let o = parse(&["--setup", "--no-qemu"]).unwrap().unwrap();
        assert!(o.setup && o.no_qemu);
    }
}
