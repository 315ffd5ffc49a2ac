//! The Linux-guest test program for ecs-locks' `linux-rseq` backend.
//!
//! Booted as `/init` of a Linux 7.x kernel under QEMU by `scripts/linux-guest/boot.sh`: as PID 1
//! it mounts `/dev`, `/proc` and debugfs, runs the plan named by `ECS_GUEST_PLAN` (a kernel
//! command-line word) as child processes of itself (and of the dynamically linked copy, and of
//! the crate's test binaries), prints one verdict line and powers off. Run by hand (not
//! PID 1) it runs one check: `linux-guest CHECK [ARGS]` (`linux-guest help` lists them).
//!
//! `ECS_GUEST_SCALE` (default 1.0) multiplies every duration and iteration count; boot.sh
//! lowers it under TCG. Assertions are on counts and exactness, never on speed.

#[cfg(target_os = "linux")]
mod bench;
#[cfg(target_os = "linux")]
mod checks;
#[cfg(target_os = "linux")]
mod copies;
#[cfg(target_os = "linux")]
mod init;
#[cfg(target_os = "linux")]
mod kstats;
#[cfg(target_os = "linux")]
mod pairs;
#[cfg(target_os = "linux")]
mod seccomp;
#[cfg(target_os = "linux")]
mod window;
#[cfg(target_os = "linux")]
mod work;

#[cfg(target_os = "linux")]
fn main() {
    // SAFETY: getpid has no preconditions.
    if unsafe { libc::getpid() } == 1 {
        init::run();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match checks::dispatch(&args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("linux-guest: {}: FAIL: {e}", args.join(" "));
            1
        }
    };
    std::process::exit(code);
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("linux-guest: Linux only");
    std::process::exit(2);
}
