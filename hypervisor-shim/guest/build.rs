//! Links the guest as a freestanding static ELF at 0x400000 with the stable toolchain and the host
//! target (no custom target, no rust-src): the link arguments measured in `shared/kvm-probe`.

/// Where the VMM expects the image: the ELF's lowest address. `hypervisor_shim::guest_image`
/// checks the built image against it.
const IMAGE_BASE: &str = "0x400000";

fn main() {
    for arg in [
        "-nostartfiles",
        "-nostdlib",
        "-static",
        "-no-pie",
        &format!("-Wl,--image-base={IMAGE_BASE}"),
        "-Wl,--build-id=none",
    ] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
