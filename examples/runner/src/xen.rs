//! `cargo qemu --arch aarch64 --xen`: the aarch64 kernel as a dom0less domU
//! of real Xen 4.17 under QEMU TCG (`/work/shared/xen-arm64-recipe.md`).
//!
//! 1. The kernel ELF becomes an arm64 `Image` ([`elf_to_image`]: its loadable
//!    segments as one raw blob from the link address; the kernel's first
//!    64 bytes are the `Image` header, `boot.rs`).
//! 2. QEMU's own device tree for the same machine (`-machine dumpdtb`) is
//!    decompiled with `dtc`, Xen's command line and a `xen,domain` node for
//!    the kernel are appended to `/chosen` ([`dom0less_dts`]), and the
//!    result compiled back.
//! 3. QEMU boots Xen (`-kernel`) with that tree; `-device loader` puts the
//!    Image at [`IMAGE_ADDR`], where the domain node's module says it is.
//! 4. The PL031 RTC is passed through to the domain ([`passthrough_dts`]):
//!    the host tree marks it `xen,passthrough`, and a partial device tree
//!    (a second module, at [`PASSTHROUGH_ADDR`]) maps its registers 1:1
//!    and routes its SPI to the domain. Its interrupt is then a physical
//!    SPI Xen forwards to the guest, the only kind Xen 4.17's vGIC
//!    migrates when the guest retargets it (seed 003).
//!
//! Xen's console (and the guest's vpl011 lines, `(XEN) DOM1: ...`) is
//! QEMU's serial port, streamed as usual. The guest exits QEMU through
//! semihosting with its code; a Xen panic ends QEMU with status 0
//! (`-no-reboot`), which is never a pass.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Host-physical address the Image is loaded at (inside QEMU's RAM, away
/// from where Xen relocates itself and the device tree).
pub const IMAGE_ADDR: u64 = 0x5000_0000;
/// Host-physical address of the partial device tree that passes the PL031
/// through to the domain (after the Image, below where Xen relocates).
pub const PASSTHROUGH_ADDR: u64 = 0x5800_0000;
/// The host device tree's path of the device passed through.
pub const PASSTHROUGH_PATH: &str = "/pl031@9010000";
/// QEMU's RAM for Xen and the domain.
pub const HOST_MEM: &str = "1G";
/// The domain's RAM in KiB (128 MiB at guest-physical 0x4000_0000).
pub const DOMU_MEM_KIB: u64 = 128 * 1024;
/// Xen's command line: its console on the device tree's UART, no scrubbing
/// (speed), and every guest message shown (the default shows none).
pub const XEN_BOOTARGS: &str = "console=dtuart bootscrub=0 guest_loglvl=all vwfi=native";

/// The hypervisor binary inside the unpacked package.
pub fn hypervisor(root: &Path) -> PathBuf {
    crate::setup::xen_dir(root).join("boot/xen-4.17-arm64")
}

/// The `-M` value of a Xen boot (EL2 for Xen: `virtualization=on`).
pub fn machine(gic: u32) -> String {
    format!("virt,virtualization=on,gic-version={gic}")
}

fn le16(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from(u16::from_le_bytes(
        b.get(o..o + 2)?.try_into().ok()?,
    )))
}
fn le32(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from(u32::from_le_bytes(
        b.get(o..o + 4)?.try_into().ok()?,
    )))
}
fn le64(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

/// The raw image of a little-endian ELF64 (`objcopy -O binary`): the file
/// bytes of every `PT_LOAD` segment with file contents, placed at its
/// physical address relative to the lowest one, gaps zero. Returns the
/// image and its load address. `.bss` (no file contents) is not included:
/// the kernel zeroes it.
pub fn elf_to_image(elf: &[u8]) -> Result<(Vec<u8>, u64), String> {
    if elf.get(..4) != Some(b"\x7fELF") || elf.get(4) != Some(&2) || elf.get(5) != Some(&1) {
        return Err("not a little-endian ELF64 file".into());
    }
    let bad = || "truncated ELF header".to_string();
    let phoff = le64(elf, 0x20).ok_or_else(bad)? as usize;
    let phentsize = le16(elf, 0x36).ok_or_else(bad)? as usize;
    let phnum = le16(elf, 0x38).ok_or_else(bad)? as usize;
    let mut segs = Vec::new();
    for i in 0..phnum {
        let p = phoff + i * phentsize;
        let bad = || format!("truncated program header {i}");
        if le32(elf, p).ok_or_else(bad)? != 1 {
            continue; // not PT_LOAD
        }
        let offset = le64(elf, p + 8).ok_or_else(bad)? as usize;
        let paddr = le64(elf, p + 24).ok_or_else(bad)?;
        let filesz = le64(elf, p + 32).ok_or_else(bad)? as usize;
        if filesz > 0 {
            let bytes = elf
                .get(offset..offset + filesz)
                .ok_or_else(|| format!("segment {i} beyond the file"))?;
            segs.push((paddr, bytes));
        }
    }
    let base = segs
        .iter()
        .map(|s| s.0)
        .min()
        .ok_or("no loadable segment")?;
    let end = segs
        .iter()
        .map(|s| s.0 + s.1.len() as u64)
        .max()
        .unwrap_or(base);
    let mut image = vec![0u8; (end - base) as usize];
    for (paddr, bytes) in segs {
        let at = (paddr - base) as usize;
        image[at..at + bytes.len()].copy_from_slice(bytes);
    }
    Ok((image, base))
}

/// The `/chosen` additions for a dom0less domU with `vcpus` vCPUs whose
/// Image of `image_size` bytes is at [`IMAGE_ADDR`] (dtc merges this second
/// root block into the machine's tree), with the passthrough tree of
/// `passthrough_size` bytes at [`PASSTHROUGH_ADDR`]. `bootarg` is added to
/// the kernel's `bootargs` (`evtchn=fifo|2l` from `--evtchn`).
pub fn dom0less_dts(
    vcpus: u32,
    image_size: u64,
    passthrough_size: u64,
    bootarg: Option<&str>,
) -> String {
    format!(
        r#"
&{{{PASSTHROUGH_PATH}}} {{
	xen,passthrough;
}};

/ {{
	chosen {{
		#address-cells = <0x2>;
		#size-cells = <0x2>;
		xen,xen-bootargs = "{XEN_BOOTARGS}";

		domU1 {{
			compatible = "xen,domain";
			#address-cells = <0x2>;
			#size-cells = <0x2>;
			memory = <0x0 {mem:#x}>;
			cpus = <{vcpus:#x}>;
			vpl011;

			module@{addr:x} {{
				compatible = "multiboot,kernel", "multiboot,module";
				reg = <0x0 {addr:#x} 0x0 {image_size:#x}>;
				bootargs = "{bootargs}";
			}};

			module@{pt:x} {{
				compatible = "multiboot,device-tree", "multiboot,module";
				reg = <0x0 {pt:#x} 0x0 {passthrough_size:#x}>;
			}};
		}};
	}};
}};
"#,
        mem = DOMU_MEM_KIB,
        addr = IMAGE_ADDR,
        bootargs = match bootarg {
            Some(a) => format!("irqcore {a}"),
            None => "irqcore".to_string(),
        },
        pt = PASSTHROUGH_ADDR,
    )
}

/// The partial device tree (Xen's `docs/misc/arm/passthrough.txt`, the
/// dom0less form) that gives the domain QEMU virt's PL031 RTC: registers
/// mapped at the same guest-physical address (`xen,reg`), its SPI routed
/// 1:1 (taken from the host node `xen,path` names), no IOMMU (the RTC does
/// no DMA). `interrupt-parent` 65000 is Xen's `GUEST_PHANDLE_GIC`.
pub fn passthrough_dts() -> String {
    format!(
        r#"/dts-v1/;

/ {{
	#address-cells = <0x2>;
	#size-cells = <0x2>;

	passthrough {{
		compatible = "simple-bus";
		ranges;
		#address-cells = <0x2>;
		#size-cells = <0x2>;

		pl031@9010000 {{
			compatible = "arm,pl031", "arm,primecell";
			reg = <0x0 0x9010000 0x0 0x1000>;
			interrupt-parent = <65000>;
			interrupts = <0x0 0x2 0x4>;
			xen,reg = <0x0 0x9010000 0x0 0x1000 0x0 0x9010000>;
			xen,path = "{PASSTHROUGH_PATH}";
			xen,force-assign-without-iommu;
		}};
	}};
}};
"#
    )
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Writes `Image` and `dom0less.dtb` beside the kernel ELF and returns the
/// Image's path (the tree is [`dtb_beside`] it). Regenerated on every
/// boot: Xen copies exactly the module size the tree gives.
pub fn prepare(
    elf: &Path,
    qemu: &str,
    gic: u32,
    smp: u32,
    bootarg: Option<&str>,
) -> Result<PathBuf, String> {
    let dir = elf.parent().ok_or("kernel path has no directory")?;
    let bytes = std::fs::read(elf).map_err(|e| format!("reading {}: {e}", elf.display()))?;
    let (image, base) = elf_to_image(&bytes)?;
    if base != 0x4008_0000 || image.get(0x38..0x3c) != Some(b"ARM\x64") {
        return Err(format!(
            "the kernel is not an arm64 Image linked at 0x40080000 (load address {base:#x})"
        ));
    }
    let image_path = dir.join("Image");
    std::fs::write(&image_path, &image).map_err(|e| format!("writing the Image: {e}"))?;

    let virt_dtb = dir.join("virt.dtb");
    run(
        Command::new(qemu)
            .args(["-M", &machine(gic), "-cpu", "cortex-a57"])
            .args(["-smp", &smp.to_string(), "-m", HOST_MEM, "-nographic"])
            .arg("-machine")
            .arg(format!("dumpdtb={}", virt_dtb.display())),
        "qemu -machine dumpdtb",
    )?;
    let out = Command::new("dtc")
        .args(["-q", "-I", "dtb", "-O", "dts"])
        .arg(&virt_dtb)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run dtc: {e}"))?;
    if !out.status.success() {
        return Err(format!("dtc (decompile) failed ({})", out.status));
    }
    let pt_dts = dir.join("passthrough.dts");
    std::fs::write(&pt_dts, passthrough_dts()).map_err(|e| format!("writing {e}"))?;
    let pt_dtb = passthrough_beside(&image_path);
    run(
        Command::new("dtc")
            .args(["-q", "-I", "dts", "-O", "dtb", "-o"])
            .arg(&pt_dtb)
            .arg(&pt_dts),
        "dtc (compile the passthrough tree)",
    )?;
    let pt_size = std::fs::metadata(&pt_dtb)
        .map_err(|e| format!("{}: {e}", pt_dtb.display()))?
        .len();
    let mut dts = String::from_utf8_lossy(&out.stdout).into_owned();
    dts.push_str(&dom0less_dts(smp, image.len() as u64, pt_size, bootarg));
    let dts_path = dir.join("dom0less.dts");
    std::fs::write(&dts_path, dts).map_err(|e| format!("writing the dts: {e}"))?;
    run(
        Command::new("dtc")
            .args(["-q", "-I", "dts", "-O", "dtb", "-o"])
            .arg(dtb_beside(&image_path))
            .arg(&dts_path),
        "dtc (compile)",
    )?;
    Ok(image_path)
}

/// The partial device tree [`prepare`] wrote for `image`.
pub fn passthrough_beside(image: &Path) -> PathBuf {
    image.with_file_name("passthrough.dtb")
}

/// The device tree [`prepare`] wrote for `image`.
pub fn dtb_beside(image: &Path) -> PathBuf {
    image.with_file_name("dom0less.dtb")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A two-segment ELF64: 8 bytes at 0x1000, 4 at 0x1010, one segment
    /// without file contents (.bss) that must not extend the image.
    fn elf() -> Vec<u8> {
        let mut e = vec![0u8; 0x200];
        e[..4].copy_from_slice(b"\x7fELF");
        e[4] = 2;
        e[5] = 1;
        e[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        e[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        e[0x38..0x3a].copy_from_slice(&3u16.to_le_bytes());
        let ph = |e: &mut Vec<u8>, i: usize, off: u64, paddr: u64, filesz: u64| {
            let p = 0x40 + i * 56;
            e[p..p + 4].copy_from_slice(&1u32.to_le_bytes());
            e[p + 8..p + 16].copy_from_slice(&off.to_le_bytes());
            e[p + 24..p + 32].copy_from_slice(&paddr.to_le_bytes());
            e[p + 32..p + 40].copy_from_slice(&filesz.to_le_bytes());
        };
        ph(&mut e, 0, 0x100, 0x1000, 8);
        ph(&mut e, 1, 0x180, 0x1010, 4);
        ph(&mut e, 2, 0x1c0, 0x2000, 0);
        e[0x100..0x108].copy_from_slice(b"ARMimage");
        e[0x180..0x184].copy_from_slice(b"data");
        e
    }

    #[test]
    fn elf_becomes_the_raw_image_of_its_loaded_bytes() {
        let (img, base) = elf_to_image(&elf()).unwrap();
        assert_eq!(base, 0x1000);
        assert_eq!(img.len(), 0x14);
        assert_eq!(&img[..8], b"ARMimage");
        assert_eq!(&img[8..16], &[0; 8]);
        assert_eq!(&img[16..], b"data");
        assert!(elf_to_image(b"not an elf").is_err());
    }

    #[test]
    fn domain_node_names_the_image_and_the_vcpus() {
        let d = dom0less_dts(4, 0x1234, 0x200, None);
        assert!(d.contains("bootargs = \"irqcore\";"), "{d}");
        let d2 = dom0less_dts(4, 0x1234, 0x200, Some("evtchn=2l"));
        assert!(d2.contains("bootargs = \"irqcore evtchn=2l\";"), "{d2}");
        assert!(d.contains("compatible = \"xen,domain\""), "{d}");
        assert!(d.contains("cpus = <0x4>"), "{d}");
        assert!(d.contains("reg = <0x0 0x50000000 0x0 0x1234>"), "{d}");
        assert!(d.contains("guest_loglvl=all"), "{d}");
        assert!(d.contains("vpl011;"), "{d}");
        assert!(d.contains("memory = <0x0 0x20000>"), "{d}");
        assert!(d.contains("\"multiboot,device-tree\""), "{d}");
        assert!(d.contains("reg = <0x0 0x58000000 0x0 0x200>"), "{d}");
        assert!(d.contains("&{/pl031@9010000} {\n\txen,passthrough;"), "{d}");
    }

    #[test]
    fn passthrough_tree_maps_the_rtc_one_to_one() {
        let d = passthrough_dts();
        assert!(d.contains("xen,path = \"/pl031@9010000\""), "{d}");
        assert!(
            d.contains("xen,reg = <0x0 0x9010000 0x0 0x1000 0x0 0x9010000>"),
            "{d}"
        );
        assert!(d.contains("interrupts = <0x0 0x2 0x4>"), "{d}");
        assert!(d.contains("xen,force-assign-without-iommu;"), "{d}");
    }
}
