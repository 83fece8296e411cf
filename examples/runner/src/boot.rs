//! How each architecture's reference kernel is built, booted and judged.
//!
//! One [`Boot`] implementation per architecture; adding aarch64 means adding
//! an implementation (build for `aarch64-unknown-none`, boot
//! `qemu-system-aarch64 -M virt -semihosting`, judge the semihosting exit
//! status) and selecting it in `main.rs`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::options::Options;

/// The runner's judgement of one boot.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The kernel passed: pass status and a `RESULT: PASS` line.
    Pass,
    /// Anything else, with a human-readable reason.
    Fail(String),
}

/// One architecture's build/boot/judge recipe.
pub trait Boot {
    /// Rejects options this architecture cannot honour.
    fn check_options(&self, opts: &Options) -> Result<(), String>;
    /// Builds the kernel and returns the path of the image to boot.
    fn build(&self, root: &Path, opts: &Options) -> Result<PathBuf, String>;
    /// The QEMU binary name.
    fn qemu_binary(&self) -> &'static str;
    /// The QEMU command line (stdout piped: it carries the serial port).
    fn qemu_command(&self, kernel: &Path, opts: &Options) -> Command;
    /// Judges QEMU's exit status together with the last `RESULT:` line.
    fn verdict(&self, status: Option<i32>, result_line: Option<&str>) -> Verdict;
    /// Whether the boot runs under Xen (set-up then also needs `dtc` and
    /// Xen's hypervisor).
    fn wants_xen(&self) -> bool {
        false
    }
}

/// The x86_64 kernel in `examples/x86-kernel`.
pub struct X86_64;

/// Values the x86 kernel writes to `isa-debug-exit` (port 0xf4); QEMU exits
/// with `(value << 1) | 1`. Keep in sync with `examples/x86-kernel/src/exit.rs`.
pub mod x86_exit {
    /// Every check passed.
    pub const PASS: i32 = (0x10 << 1) | 1; // 33
    /// A check failed (`RESULT: FAIL ...`).
    pub const FAIL: i32 = (0x11 << 1) | 1; // 35
    /// The kernel panicked.
    pub const PANIC: i32 = (0x12 << 1) | 1; // 37
    /// An unexpected CPU exception.
    pub const EXCEPTION: i32 = (0x13 << 1) | 1; // 39
    /// An application processor did not come up (or go down) in time.
    pub const CPU_TIMEOUT: i32 = (0x14 << 1) | 1; // 41
}

const X86_TARGET: &str = "x86_64-unknown-none";

impl Boot for X86_64 {
    fn check_options(&self, opts: &Options) -> Result<(), String> {
        match opts.machine.as_deref() {
            None | Some("q35") | Some("pc") => Ok(()),
            Some(m) => Err(format!("--machine must be q35 or pc for x86_64, got {m:?}")),
        }
    }

    fn build(&self, root: &Path, opts: &Options) -> Result<PathBuf, String> {
        let dir = root.join("examples/x86-kernel");
        let target_dir = dir.join("target");
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        // The kernel is a workspace of its own with a `.cargo/config.toml`
        // (rustflags for the bare-metal link): cargo reads config from the
        // current directory, so build from there. An inherited
        // CARGO_TARGET_DIR (the runner's) must not redirect the kernel.
        cmd.current_dir(&dir)
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUSTFLAGS")
            .args(["build", "--release", "--manifest-path"])
            .arg(dir.join("Cargo.toml"))
            .args(["--target", X86_TARGET, "--target-dir"])
            .arg(&target_dir);
        if let Some(f) = &opts.features {
            cmd.args(["--features", f]);
        }
        crate::run_build(cmd, "the x86_64 kernel")?;
        let image = target_dir.join(X86_TARGET).join("release/x86-kernel");
        if image.is_file() {
            Ok(image)
        } else {
            Err(format!(
                "kernel image missing after build: {}",
                image.display()
            ))
        }
    }

    fn qemu_binary(&self) -> &'static str {
        crate::setup::qemu_program(crate::options::Arch::X86_64).0
    }

    fn qemu_command(&self, kernel: &Path, opts: &Options) -> Command {
        let mut cmd = Command::new(self.qemu_binary());
        cmd.args([
            "-accel",
            "tcg",
            "-M",
            opts.machine.as_deref().unwrap_or("q35"),
        ])
        .args(["-smp", &opts.smp.to_string(), "-m", "128M"])
        .args([
            "-nodefaults",
            "-display",
            "none",
            "-serial",
            "stdio",
            "-no-reboot",
        ])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        // Two edu devices: the first raises level-triggered INTx, the
        // second MSI (one edu function uses one or the other), so both
        // kinds keep firing together while CPUs go offline and online.
        .args(["-device", "edu", "-device", "edu"])
        .arg("-kernel")
        .arg(kernel)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
        cmd
    }

    fn verdict(&self, status: Option<i32>, result_line: Option<&str>) -> Verdict {
        let pass_line = result_line.is_some_and(|l| l.starts_with("RESULT: PASS"));
        let what = match status {
            Some(x86_exit::PASS) if pass_line => return Verdict::Pass,
            Some(x86_exit::PASS) => "exit status says pass but no `RESULT: PASS` line".into(),
            Some(x86_exit::FAIL) => "the kernel reported failed checks".into(),
            Some(x86_exit::PANIC) => "the kernel panicked".into(),
            Some(x86_exit::EXCEPTION) => "unexpected CPU exception in the kernel".into(),
            Some(x86_exit::CPU_TIMEOUT) => "a CPU did not come up or go down in time".into(),
            Some(0) => "QEMU exited with 0 without the exit device: triple fault or reset".into(),
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

    #[test]
    fn only_pass_status_and_pass_line_together_pass() {
        let b = X86_64;
        assert_eq!(
            b.verdict(Some(33), Some("RESULT: PASS 12 checks")),
            Verdict::Pass
        );
        assert!(matches!(b.verdict(Some(33), None), Verdict::Fail(_)));
        assert!(matches!(
            b.verdict(Some(33), Some("RESULT: FAIL x")),
            Verdict::Fail(_)
        ));
        // A triple fault with -no-reboot exits 0: never a pass.
        assert!(matches!(
            b.verdict(Some(0), Some("RESULT: PASS 1 checks")),
            Verdict::Fail(_)
        ));
        assert!(matches!(
            b.verdict(Some(35), Some("RESULT: FAIL edu")),
            Verdict::Fail(_)
        ));
        assert!(matches!(b.verdict(None, None), Verdict::Fail(_)));
    }
}
