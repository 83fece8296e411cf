//! `cargo qemu`: builds an irqcore reference kernel and boots it under QEMU.
//!
//! ```text
//! cargo qemu [--arch x86_64|aarch64] [--smp N] [--machine q35|pc]
//!            [--timeout SECONDS] [--features F]
//! cargo qemu --arch aarch64 [--gic 2|3] [--xen] ...
//! cargo qemu --setup [--no-qemu] [--xen]
//! ```
//!
//! Before it builds, the runner sets up what the boot needs on a fresh
//! machine (the bare-metal Rust target, QEMU): see [`setup`].
//!
//! The kernel reports its verdict twice: a last serial line
//! `RESULT: PASS <n> checks` / `RESULT: FAIL <what>`, and the exit status of
//! QEMU (through `isa-debug-exit` on x86). The runner exits 0 only when both
//! say "pass": QEMU also exits 0 after a triple fault with `-no-reboot`, so a
//! zero status alone proves nothing.

mod aarch64;
mod boot;
mod options;
mod setup;
mod xen;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use boot::{Boot, Verdict};
use options::{Arch, Options};

fn main() -> ExitCode {
    let args: Vec<String> = aarch64::strip_gic_option(std::env::args().skip(1).collect());
    let opts = match Options::parse(&args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{}", options::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("cargo qemu: {e}\n\n{}", options::USAGE);
            return ExitCode::from(2);
        }
    };
    let result = if opts.setup {
        setup_all(&opts)
    } else {
        run(&opts)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cargo qemu: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root, found from this crate's manifest directory
/// (`<root>/examples/runner`), so the runner works from any current directory.
pub(crate) fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest.to_path_buf())
}

/// `cargo qemu --setup`: what every architecture's boot needs.
fn setup_all(opts: &Options) -> Result<(), String> {
    // `--setup --xen`: also what Xen boots need (dtc, Xen's hypervisor).
    let xen = aarch64::Aarch64::from_args(std::env::args().skip(1)).wants_xen();
    let wants = setup::Wants {
        qemu: !opts.no_qemu,
        xen: xen && !opts.no_qemu,
    };
    let needs = setup::needs(&[Arch::X86_64, Arch::Aarch64], wants, &workspace_root());
    let missing = setup::ensure(&needs, &setup::Host::detect());
    if missing.is_empty() {
        eprintln!("cargo qemu: set-up complete: {}", what_list(&needs));
        return Ok(());
    }
    for (n, _) in &missing {
        if matches!(n.check, setup::Check::RustTarget(_)) {
            setup::loud(&format!(
                "{} is NOT installed: its bare-metal builds and QEMU boots will be SKIPPED",
                n.what
            ));
        }
    }
    Err(format!(
        "set-up incomplete:\n{}",
        setup::describe_missing(&missing)
    ))
}

fn what_list(needs: &[setup::Need]) -> String {
    needs
        .iter()
        .map(|n| n.what.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn run(opts: &Options) -> Result<(), String> {
    let boot: Box<dyn Boot> = match opts.arch {
        Arch::X86_64 if aarch64::Aarch64::from_args(std::env::args().skip(1)).wants_xen() => {
            return Err("--xen needs --arch aarch64".into());
        }
        Arch::X86_64 => Box::new(boot::X86_64),
        Arch::Aarch64 => Box::new(aarch64::Aarch64::from_args(std::env::args().skip(1))),
    };
    boot.check_options(opts)?;
    let root = workspace_root();

    let wants = setup::Wants {
        qemu: true,
        xen: boot.wants_xen(),
    };
    let missing = setup::ensure(
        &setup::needs(&[opts.arch], wants, &root),
        &setup::Host::detect(),
    );
    if !missing.is_empty() {
        return Err(format!(
            "cannot boot: set-up incomplete:\n{}",
            setup::describe_missing(&missing)
        ));
    }

    let t_build = Instant::now();
    let kernel = boot.build(&root, opts)?;
    let build_time = t_build.elapsed();

    let mut cmd = boot.qemu_command(&kernel, opts);
    eprintln!(
        "cargo qemu: built in {:.1}s; booting: {}",
        build_time.as_secs_f64(),
        render(&cmd)
    );
    let t_boot = Instant::now();
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "{} not found (set-up found it on PATH a moment ago)",
                boot.qemu_binary()
            ));
        }
        Err(e) => return Err(format!("cannot start {}: {e}", boot.qemu_binary())),
    };
    let outcome = supervise(child, Duration::from_secs(opts.timeout_secs))?;
    let boot_time = t_boot.elapsed();

    let verdict = boot.verdict(outcome.status, outcome.result_line.as_deref());
    let timing = format!("boot {:.2}s", boot_time.as_secs_f64());
    match verdict {
        _ if outcome.timed_out => Err(format!(
            "TIMEOUT: no exit after {}s (QEMU killed); last RESULT line: {}",
            opts.timeout_secs,
            outcome.result_line.as_deref().unwrap_or("none")
        )),
        Verdict::Pass => {
            eprintln!("cargo qemu: PASS ({timing})");
            Ok(())
        }
        Verdict::Fail(why) => Err(format!("FAIL ({timing}): {why}")),
    }
}

/// What happened to one QEMU run.
struct Outcome {
    /// QEMU's exit status (`None` if killed by a signal or by us).
    status: Option<i32>,
    /// The last line starting with `RESULT:` seen on the serial port.
    result_line: Option<String>,
    /// Whether the timeout expired and QEMU was killed.
    timed_out: bool,
}

/// Streams QEMU's serial output (its stdout) to our stdout while enforcing
/// the timeout.
fn supervise(mut child: Child, timeout: Duration) -> Result<Outcome, String> {
    let stdout = child.stdout.take().ok_or("QEMU stdout not captured")?;
    let (tx, rx) = mpsc::channel::<Option<String>>();
    let reader = std::thread::spawn(move || {
        let mut last = None;
        let mut r = BufReader::new(stdout);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf);
                    let line = line.trim_end_matches(['\n', '\r']);
                    println!("{line}");
                    if let Some(pos) = line.find("RESULT:") {
                        last = Some(line[pos..].to_string());
                    }
                }
            }
        }
        let _ = tx.send(last);
    });

    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st.code(),
            Ok(None) if Instant::now() >= deadline => {
                timed_out = true;
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("waiting for QEMU: {e}")),
        }
    };
    // QEMU is gone, so its stdout reaches EOF and the reader finishes.
    let result_line = rx.recv_timeout(Duration::from_secs(5)).ok().flatten();
    let _ = reader.join();
    Ok(Outcome {
        status,
        result_line,
        timed_out,
    })
}

fn render(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs a build command, failing with its status.
fn run_build(mut cmd: Command, what: &str) -> Result<(), String> {
    cmd.stdin(Stdio::null());
    let st = cmd
        .status()
        .map_err(|e| format!("cannot run cargo to build {what}: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("building {what} failed ({st})"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Child {
        Command::new("sh")
            .args(["-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("sh runs")
    }

    #[test]
    fn supervise_reports_status_and_last_result_line() {
        let o = supervise(
            sh("echo 'RESULT: FAIL early'; echo 'x RESULT: PASS 3 checks'; exit 33"),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(o.status, Some(33));
        assert_eq!(o.result_line.as_deref(), Some("RESULT: PASS 3 checks"));
        assert!(!o.timed_out);
    }

    #[test]
    fn supervise_kills_a_hung_guest_at_the_timeout() {
        let t = Instant::now();
        let o = supervise(
            sh("echo 'RESULT: PASS 1 checks'; exec sleep 30"),
            Duration::from_millis(300),
        )
        .unwrap();
        assert!(o.timed_out);
        assert_eq!(o.status, None);
        assert!(t.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn workspace_root_holds_the_kernel() {
        assert!(
            workspace_root()
                .join("examples/x86-kernel/Cargo.toml")
                .is_file()
        );
    }
}
