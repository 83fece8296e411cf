//! Links the kernel with our linker script at 0x4008_0000 (QEMU virt's RAM
//! starts at 0x4000_0000; the first 512 KiB are left for the device tree
//! QEMU places at the start of RAM).
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-link-arg-bins=-T{dir}/linker.ld");
    println!("cargo:rustc-link-arg-bins=--build-id=none");
    println!("cargo:rerun-if-changed=linker.ld");
}
