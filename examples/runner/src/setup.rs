//! Set-up of a fresh machine: finds what a boot needs and installs what is
//! missing, so that `cargo qemu` and `scripts/test-all` work on a machine
//! with nothing but Rust (rustup) and apt.
//!
//! Each [`Need`] says how to tell it is there ([`Check`]) and how to get it
//! ([`Install`]):
//!
//! | need | check | install |
//! |---|---|---|
//! | the bare-metal Rust target | its `core` in the sysroot | `rustup target add` (no root; keeps the installed toolchain version) |
//! | `qemu-system-x86_64`, `qemu-system-aarch64` | on `PATH` | apt: `qemu-system-x86`, `qemu-system-arm` |
//! | `dtc` (Xen boots) | on `PATH` | apt: `device-tree-compiler` |
//! | Xen's arm64 hypervisor (Xen boots) | the file under `target/xen` | `apt-get download` of the arm64 package, unpacked there |
//!
//! Apt and the other root commands run only as root (and not with
//! `IRQCORE_NO_INSTALL=1`); each is printed before it runs. Otherwise the
//! exact commands are printed and the caller fails. A target that rustup
//! cannot add (no network to its server) is reported loudly.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::options::Arch;

/// How to tell that a need is met.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// A Rust target whose `core` is in the active toolchain's sysroot.
    RustTarget(&'static str),
    /// A program on `PATH`.
    Program(&'static str),
    /// A file.
    File(PathBuf),
}

/// How to meet a need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Install {
    /// `rustup target add <target>` (no root needed).
    RustupTarget(&'static str),
    /// Debian packages, installed by one `apt-get install` with the others.
    Apt(&'static [&'static str]),
    /// Shell command lines run in order as root (after the apt installs).
    Root(Vec<String>),
}

/// One thing a boot needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Need {
    /// What it is, for messages.
    pub what: String,
    /// How to tell it is there.
    pub check: Check,
    /// How to get it.
    pub install: Install,
}

/// The Rust target of `arch`'s kernel.
pub fn rust_target(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "x86_64-unknown-none",
        Arch::Aarch64 => "aarch64-unknown-none",
    }
}

/// The QEMU program of `arch` and the Debian package that has it.
pub fn qemu_program(arch: Arch) -> (&'static str, &'static [&'static str]) {
    match arch {
        Arch::X86_64 => ("qemu-system-x86_64", &["qemu-system-x86"]),
        Arch::Aarch64 => ("qemu-system-aarch64", &["qemu-system-arm"]),
    }
}

/// The Debian Xen release whose arm64 hypervisor Xen boots use
/// (`/work/shared/xen-arm64-recipe.md`: Xen 4.17 from bookworm).
const XEN_PACKAGE: &str = "xen-hypervisor-4.17-arm64";

/// Where the unpacked Xen hypervisor lives (`<root>/target/xen`).
pub fn xen_dir(root: &Path) -> PathBuf {
    root.join("target/xen")
}

/// What to set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wants {
    /// The QEMU programs (not only the Rust targets).
    pub qemu: bool,
    /// What a boot under Xen needs (`dtc`, Xen's hypervisor image).
    pub xen: bool,
}

/// Everything booting `arches` needs, in the order it is checked.
pub fn needs(arches: &[Arch], wants: Wants, root: &Path) -> Vec<Need> {
    let mut v = Vec::new();
    for &arch in arches {
        let t = rust_target(arch);
        v.push(Need {
            what: format!("the Rust target {t}"),
            check: Check::RustTarget(t),
            install: Install::RustupTarget(t),
        });
    }
    if wants.qemu {
        for &arch in arches {
            let (prog, pkgs) = qemu_program(arch);
            v.push(Need {
                what: prog.to_string(),
                check: Check::Program(prog),
                install: Install::Apt(pkgs),
            });
        }
    }
    if wants.xen {
        v.push(Need {
            what: "dtc (device tree compiler)".into(),
            check: Check::Program("dtc"),
            install: Install::Apt(&["device-tree-compiler"]),
        });
        let dir = xen_dir(root);
        v.push(Need {
            what: format!(
                "the Xen hypervisor ({XEN_PACKAGE}, unpacked in {})",
                dir.display()
            ),
            check: Check::File(dir.join("boot/xen-4.17-arm64")),
            install: Install::Root(vec![
                "dpkg --add-architecture arm64".into(),
                "apt-get update".into(),
                format!(
                    "mkdir -p {d} && cd {d} && apt-get download {XEN_PACKAGE}:arm64 \
                     && dpkg -x {XEN_PACKAGE}_*_arm64.deb .",
                    d = dir.display()
                ),
            ]),
        });
    }
    v
}

/// What the machine offers for installing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    /// Running as root (apt and the root commands may run).
    pub root: bool,
    /// `apt-get` is on `PATH`.
    pub apt: bool,
    /// `rustup` is on `PATH`.
    pub rustup: bool,
    /// Installing is allowed (not `IRQCORE_NO_INSTALL=1`).
    pub allow_install: bool,
    /// The Debian release (`VERSION_CODENAME` of `/etc/os-release`).
    pub codename: Option<String>,
}

impl Host {
    /// Looks at this machine.
    pub fn detect() -> Self {
        let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
        Host {
            root: effective_uid() == Some(0),
            apt: on_path("apt-get"),
            rustup: on_path("rustup"),
            allow_install: std::env::var_os("IRQCORE_NO_INSTALL").is_none_or(|v| v != "1"),
            codename: os_release_codename(&os_release),
        }
    }
}

/// The effective uid of this process (from `/proc/self/status`).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// `VERSION_CODENAME` of an `/etc/os-release` text.
fn os_release_codename(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
}

/// Whether `prog` is an executable file in a `PATH` directory.
pub fn on_path(prog: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(prog))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// The sysroot of the toolchain cargo uses (rustup's proxy picks the same
/// one: the runner inherits `RUSTUP_TOOLCHAIN`).
fn sysroot() -> Option<PathBuf> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(rustc)
        .args(["--print", "sysroot"])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// Whether `target`'s precompiled `core` is installed in `sysroot`.
pub fn target_installed(sysroot: &Path, target: &str) -> bool {
    std::fs::read_dir(sysroot.join("lib/rustlib").join(target).join("lib")).is_ok_and(|dir| {
        dir.flatten().any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("libcore-") && name.ends_with(".rlib")
        })
    })
}

/// Whether `need` is met on this machine.
pub fn present(need: &Need) -> bool {
    match &need.check {
        Check::RustTarget(t) => sysroot().is_some_and(|s| target_installed(&s, t)),
        Check::Program(p) => on_path(p),
        Check::File(f) => f.is_file(),
    }
}

/// The apt command lines that install `packages` on `codename`.
///
/// On bookworm, QEMU's packages come with `qemu-utils/bookworm`: the
/// project's images ship a newer `qemu-utils` from backports whose Breaks
/// conflict with bookworm's `qemu-system-common`, and pinning it to the
/// bookworm release (a downgrade, hence `--allow-downgrades`) resolves it
/// (`/work/shared/bare-metal-recipes.md`). Elsewhere nothing is pinned.
pub fn apt_commands(packages: &[&str], codename: Option<&str>) -> Vec<String> {
    if packages.is_empty() {
        return Vec::new();
    }
    let mut install = String::from("apt-get install -y");
    let pin = codename == Some("bookworm") && packages.iter().any(|p| p.starts_with("qemu-"));
    if pin {
        install.push_str(" --allow-downgrades");
    }
    for p in packages {
        install.push(' ');
        install.push_str(p);
    }
    if pin {
        install.push_str(" qemu-utils/bookworm");
    }
    vec!["apt-get update".into(), install]
}

/// Runs one shell command line, saying so first.
fn run_shell(line: &str, why: &str) -> bool {
    eprintln!("cargo qemu: {why}: running `{line}`");
    Command::new("sh")
        .args(["-c", line])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .status()
        .is_ok_and(|s| s.success())
}

/// Prefixes a root command line for a user who is not root.
fn as_root(line: &str, host: &Host) -> String {
    if host.root {
        line.to_string()
    } else if line.contains("&&") || line.contains('*') {
        format!("sudo sh -c '{line}'")
    } else {
        format!("sudo {line}")
    }
}

/// Makes `needs` present as far as this machine allows (see the module
/// docs). Returns the needs still missing afterwards, each with the exact
/// commands that install it (for [`describe_missing`]).
pub fn ensure(needs: &[Need], host: &Host) -> Vec<(Need, Vec<String>)> {
    let missing: Vec<&Need> = needs.iter().filter(|n| !present(n)).collect();
    if missing.is_empty() {
        return Vec::new();
    }
    let names: Vec<&str> = missing.iter().map(|n| n.what.as_str()).collect();
    eprintln!("cargo qemu: missing: {}", names.join(", "));

    // Rust targets: rustup, no root.
    for n in &missing {
        if let Install::RustupTarget(t) = n.install {
            if !host.rustup {
                eprintln!(
                    "cargo qemu: no rustup to add {t}: install rust-std for {t} for this toolchain"
                );
            } else if host.allow_install
                && !run_shell(
                    &format!("rustup target add {t}"),
                    &format!("adding {}", n.what),
                )
            {
                loud(&format!(
                    "`rustup target add {t}` FAILED (no network to the rustup server?): \
                     the {t} kernel cannot be built"
                ));
            }
        }
    }

    // Apt packages, in one install, then the other root commands.
    let packages: Vec<&str> = missing
        .iter()
        .filter_map(|n| match n.install {
            Install::Apt(p) => Some(p),
            _ => None,
        })
        .flatten()
        .copied()
        .collect();
    let mut root_lines = apt_commands(&packages, host.codename.as_deref());
    for n in &missing {
        if let Install::Root(lines) = &n.install {
            root_lines.extend(lines.iter().cloned());
        }
    }
    if !root_lines.is_empty() {
        if host.root && host.apt && host.allow_install {
            for line in &root_lines {
                if !run_shell(line, "installing") {
                    eprintln!("cargo qemu: `{line}` failed");
                    break;
                }
            }
        } else {
            let why = if !host.apt {
                "no apt-get on this machine"
            } else if !host.root {
                "not root"
            } else {
                "IRQCORE_NO_INSTALL=1"
            };
            eprintln!("cargo qemu: not installing ({why})");
        }
    }

    // What is still missing, with the exact commands that would fix it.
    needs
        .iter()
        .filter(|n| !present(n))
        .map(|n| {
            let lines = match &n.install {
                Install::RustupTarget(t) => vec![format!("rustup target add {t}")],
                Install::Apt(p) => apt_commands(p, host.codename.as_deref())
                    .iter()
                    .map(|l| as_root(l, host))
                    .collect(),
                Install::Root(lines) => lines.iter().map(|l| as_root(l, host)).collect(),
            };
            (n.clone(), lines)
        })
        .collect()
}

/// Prints a message nobody can miss.
pub fn loud(msg: &str) {
    eprintln!("!!!!!!!! {msg}");
}

/// Describes what is still missing after [`ensure`], one need per
/// paragraph, with the commands to run.
pub fn describe_missing(missing: &[(Need, Vec<String>)]) -> String {
    let mut s = String::new();
    for (n, lines) in missing {
        s.push_str(&format!("missing {}; to install it, run:", n.what));
        for l in lines {
            s.push_str("\n    ");
            s.push_str(l);
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_is_pinned_on_bookworm_only() {
        assert_eq!(
            apt_commands(&["qemu-system-x86", "qemu-system-arm"], Some("bookworm")),
            [
                "apt-get update",
                "apt-get install -y --allow-downgrades qemu-system-x86 qemu-system-arm qemu-utils/bookworm"
            ]
        );
        assert_eq!(
            apt_commands(&["qemu-system-x86"], Some("trixie")),
            ["apt-get update", "apt-get install -y qemu-system-x86"]
        );
        assert_eq!(
            apt_commands(&["device-tree-compiler"], Some("bookworm")),
            ["apt-get update", "apt-get install -y device-tree-compiler"]
        );
        assert!(apt_commands(&[], Some("bookworm")).is_empty());
    }

    #[test]
    fn needs_cover_targets_qemu_and_xen() {
        let root = Path::new("/r");
        let n = needs(
            &[Arch::X86_64, Arch::Aarch64],
            Wants {
                qemu: false,
                xen: false,
            },
            root,
        );
        assert_eq!(
            n.iter().map(|n| n.check.clone()).collect::<Vec<_>>(),
            [
                Check::RustTarget("x86_64-unknown-none"),
                Check::RustTarget("aarch64-unknown-none")
            ]
        );
        let n = needs(
            &[Arch::Aarch64],
            Wants {
                qemu: true,
                xen: true,
            },
            root,
        );
        let checks: Vec<Check> = n.iter().map(|n| n.check.clone()).collect();
        assert_eq!(
            checks,
            [
                Check::RustTarget("aarch64-unknown-none"),
                Check::Program("qemu-system-aarch64"),
                Check::Program("dtc"),
                Check::File(PathBuf::from("/r/target/xen/boot/xen-4.17-arm64")),
            ]
        );
        assert_eq!(n[2].install, Install::Apt(&["device-tree-compiler"]));
        assert!(
            matches!(&n[3].install, Install::Root(l) if l.iter().any(|l| l.contains("apt-get download xen-hypervisor-4.17-arm64:arm64")))
        );
    }

    #[test]
    fn os_release_codename_is_read() {
        let text = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n";
        assert_eq!(os_release_codename(text).as_deref(), Some("bookworm"));
        assert_eq!(os_release_codename("ID=alpine\n"), None);
    }

    #[test]
    fn target_found_by_its_core_rlib() {
        let dir =
            std::env::temp_dir().join(format!("irqcore-runner-sysroot-{}", std::process::id()));
        let lib = dir.join("lib/rustlib/x86_64-unknown-none/lib");
        std::fs::create_dir_all(&lib).unwrap();
        assert!(
            !target_installed(&dir, "x86_64-unknown-none"),
            "empty lib dir"
        );
        std::fs::write(lib.join("libcore-0123abcd.rlib"), b"").unwrap();
        assert!(target_installed(&dir, "x86_64-unknown-none"));
        assert!(!target_installed(&dir, "aarch64-unknown-none"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn what_is_still_missing_comes_with_its_commands() {
        let host = Host {
            root: false,
            apt: true,
            rustup: true,
            allow_install: false,
            codename: Some("bookworm".into()),
        };
        let n = Need {
            what: "no-such-program-irqcore".into(),
            check: Check::Program("no-such-program-irqcore"),
            install: Install::Apt(&["qemu-system-x86"]),
        };
        let missing = ensure(std::slice::from_ref(&n), &host);
        assert_eq!(missing.len(), 1);
        let text = describe_missing(&missing);
        assert!(text.contains("missing no-such-program-irqcore"), "{text}");
        assert!(
            text.contains(
                "\n    sudo apt-get update\n    \
                 sudo apt-get install -y --allow-downgrades qemu-system-x86 qemu-utils/bookworm\n"
            ),
            "{text}"
        );
    }
}
