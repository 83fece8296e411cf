//! Links the kernel with our linker script at 1 MiB, as a static (non-PIE)
//! executable: the 32-bit PVH entry code uses absolute 32-bit addresses.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-link-arg-bins=-T{dir}/linker.ld");
    println!("cargo:rustc-link-arg-bins=--no-pie");
    println!("cargo:rustc-link-arg-bins=--build-id=none");
    println!("cargo:rerun-if-changed=linker.ld");
}
