//! Shared helpers: the size scale, busy work of a fixed length, the monotonic clock, and the
//! benchmarks' off/on child runs and their `key=value` result lines.

use std::hint::black_box;
use std::time::Duration;

/// `ECS_GUEST_SCALE` (default 1.0, clamped to [0.01, 100]): multiplies durations and counts.
pub fn scale() -> f64 {
    std::env::var("ECS_GUEST_SCALE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite())
        .unwrap_or(1.0)
        .clamp(0.01, 100.0)
}

/// `base` scaled, at least `min`.
pub fn scaled(base: u64, min: u64) -> u64 {
    ((base as f64 * scale()) as u64).max(min)
}

/// `base_ms` milliseconds, scaled.
pub fn scaled_ms(base_ms: u64) -> Duration {
    Duration::from_millis(scaled(base_ms, 20))
}

/// `n` rounds of dependent arithmetic the compiler cannot remove.
#[inline(never)]
pub fn spin_work(n: u32) -> u64 {
    let mut x = black_box(1u64);
    for i in 0..n {
        x = black_box(
            x.wrapping_mul(6364136223846793005)
                .wrapping_add(u64::from(i)),
        );
    }
    x
}

/// `CLOCK_MONOTONIC` in nanoseconds.
pub fn now_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec to write.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Calibrates `spin_work` rounds lasting about `ns` nanoseconds on this machine.
pub fn rounds_for_ns(ns: u64) -> u32 {
    let mut n = 1000u32;
    loop {
        let t0 = now_ns();
        black_box(spin_work(n));
        let dt = now_ns() - t0;
        if dt >= 2_000_000 || n >= 1 << 28 {
            return ((u64::from(n) * ns / dt.max(1)) as u32).max(1);
        }
        n *= 4;
    }
}

/// "off" when this process runs with the opt-out (`ECS_LOCKS_RSEQ=0`), else "on".
pub fn side() -> &'static str {
    if std::env::var_os("ECS_LOCKS_RSEQ").is_some_and(|v| v == "0") {
        "off"
    } else {
        "on"
    }
}

/// Runs this program with `args` as a child, opted out if `off`, and returns the first line
/// of its standard output that starts with `prefix` (the child's result).
pub fn child_result(args: &[&str], off: bool, prefix: &str) -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(args);
    if off {
        cmd.env("ECS_LOCKS_RSEQ", "0");
    } else {
        cmd.env_remove("ECS_LOCKS_RSEQ");
    }
    let out = cmd.output().map_err(|e| e.to_string())?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with(prefix))
        .map(str::to_string)
        .ok_or_else(|| {
            format!(
                "{} printed no result: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

/// The value of `key=value` in a result line, if present and parsable.
pub fn field<T: std::str::FromStr>(line: &str, key: &str) -> Option<T> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}
