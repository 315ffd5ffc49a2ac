//! Links the check as a freestanding static ELF on the host target: no libc, no start files
//! (the same arguments as hypervisor-shim/guest/build.rs, without its fixed image base).

fn main() {
    for arg in ["-nostartfiles", "-nostdlib", "-static", "-no-pie"] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
