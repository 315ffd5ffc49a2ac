//! Builds the guest program (`guest/`, a separate `no_std` workspace with its own link arguments
//! and `panic = "abort"`) with a nested `cargo build --release --locked`, and hands its ELF to
//! the crate as `ECS_GUEST_ELF` (see `src/guest_image.rs`).
//!
//! The nested build gets a clean environment: nothing the outer build was asked to do
//! (`RUSTFLAGS="--cfg loom"`, a wrapper such as clippy-driver, a target dir, a jobserver, the
//! outer package's features and cfgs) may reach the guest, which is always built the same way.
//! The guest's own flags live in `guest/.cargo/config.toml` (`--cfg ecs_guest`, which selects
//! the guest backend of ecs-sys and ecs-locks): cargo reads it because the nested cargo runs in
//! `guest/`, and the guest refuses to compile without the cfg.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The guest is x86_64 code (port I/O, `%fs`/`%gs`), built for the host target installed here.
const GUEST_TARGET: &str = "x86_64-unknown-linux-gnu";

/// The guest binary's name (`[[bin]]` in guest/Cargo.toml).
const GUEST_BIN: &str = "ecs-guest";

/// Variables removed outright from the nested build's environment.
const CLEARED: &[&str] = &[
    // Flags and wrappers meant for the outer build.
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "RUSTDOCFLAGS",
    "CARGO_ENCODED_RUSTDOCFLAGS",
    "CARGO_BUILD_RUSTDOCFLAGS",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_BUILD_RUSTC_WRAPPER",
    "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
    "CLIPPY_ARGS",
    "CLIPPY_CONF_DIR",
    // Where and for what the outer build builds.
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    // The outer jobserver (the nested cargo runs its own).
    "CARGO_MAKEFLAGS",
    "MAKEFLAGS",
    "MFLAGS",
    // What cargo tells this build script about the outer package.
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_MANIFEST_LINKS",
    "CARGO_CRATE_NAME",
    "OUT_DIR",
    "TARGET",
    "HOST",
    "NUM_JOBS",
    "OPT_LEVEL",
    "DEBUG",
    "PROFILE",
    "RUSTC_LINKER",
];

/// Prefixes of variables removed from the nested build's environment: the outer package's
/// metadata, features, cfgs and `links` metadata, and profile or per-target overrides.
const CLEARED_PREFIXES: &[&str] = &[
    "CARGO_PKG_",
    "CARGO_FEATURE_",
    "CARGO_CFG_",
    "DEP_",
    "CARGO_PROFILE_",
];

/// Whether a `CARGO_TARGET_<triple>_<KEY>` variable changes how code is compiled.
fn is_target_flag(name: &str) -> bool {
    name.starts_with("CARGO_TARGET_")
        && (name.ends_with("_RUSTFLAGS") || name.ends_with("_RUSTDOCFLAGS"))
}

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let guest_dir = manifest_dir.join("guest");
    let guest_manifest = guest_dir.join("Cargo.toml");
    let target_dir = out_dir.join("guest-target");

    // The guest's sources, and everything it compiles from outside its directory.
    let root = manifest_dir
        .parent()
        .expect("hypervisor-shim sits in the workspace root");
    for path in [
        guest_dir.join("Cargo.toml"),
        guest_dir.join("Cargo.lock"),
        guest_dir.join("build.rs"),
        // `--cfg ecs_guest`: read by the nested cargo because it runs in `guest_dir`.
        guest_dir.join(".cargo/config.toml"),
        guest_dir.join("src"),
        manifest_dir.join("src/workload.rs"),
        root.join("ecs-sys/Cargo.toml"),
        root.join("ecs-sys/src"),
        root.join("Cargo.toml"),
        root.join("src"),
    ] {
        println!("cargo:rerun-if-changed={}", path.display());
    }

    let mut cmd = Command::new(&cargo);
    cmd.current_dir(&guest_dir)
        .args(["build", "--release", "--locked", "--target", GUEST_TARGET])
        .arg("--manifest-path")
        .arg(&guest_manifest)
        .arg("--target-dir")
        .arg(&target_dir);
    for name in CLEARED {
        cmd.env_remove(name);
    }
    for (name, _) in env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if CLEARED_PREFIXES.iter().any(|p| name.starts_with(p)) || is_target_flag(name) {
            cmd.env_remove(name);
        }
    }

    // Output is captured: the nested cargo must not print `cargo:` lines on our stdout.
    let output = cmd.output().unwrap_or_else(|e| {
        panic!(
            "could not run `{}` to build the guest program: {e}",
            Path::new(&cargo).display()
        )
    });
    if !output.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&output.stdout));
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
        eprintln!(
            "error: building the guest program failed ({}): see its cargo output above. To reproduce:\n  \
             cargo build --release --locked --target {GUEST_TARGET} --manifest-path {}\n\
             If cargo says the lock file needs updating (a dependency of ecs-locks or ecs-sys \
             changed), build it once without --locked, which updates guest/Cargo.lock \
             minimally, and commit that file:\n  \
             cargo build --release --manifest-path {}",
            output.status,
            guest_manifest.display(),
            guest_manifest.display(),
        );
        std::process::exit(1);
    }

    let elf = target_dir
        .join(GUEST_TARGET)
        .join("release")
        .join(GUEST_BIN);
    assert!(
        elf.is_file(),
        "the guest build succeeded but {} is missing",
        elf.display()
    );
    println!("cargo:rustc-env=ECS_GUEST_ELF={}", elf.display());
}
