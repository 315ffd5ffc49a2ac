//! PID 1 in the guest: mounts, the plan named by `ECS_GUEST_PLAN`, the verdict, power-off.
//!
//! The initramfs (built by `scripts/linux-guest/boot.sh`) holds this program statically linked
//! as `/init`, its dynamically linked copy as `/bin/linux-guest-dyn` with Debian unstable's
//! glibc under `/lib`, and the crate's stress-test binaries, statically linked, under `/bin`.

use std::ffi::CString;
use std::process::Command;

/// glibc's tunable that keeps it from registering rseq (the crate then registers its own).
const NO_LIBC_RSEQ: (&str, &str) = ("GLIBC_TUNABLES", "glibc.pthread.rseq=0");
const STATIC: &str = "/init";
const DYNAMIC: &str = "/bin/linux-guest-dyn";

/// One step of a plan: a program, its arguments, extra environment.
struct Step {
    name: &'static str,
    program: &'static str,
    args: Vec<&'static str>,
    env: Vec<(&'static str, &'static str)>,
}

fn step(
    name: &'static str,
    program: &'static str,
    args: &[&'static str],
    env: &[(&'static str, &'static str)],
) -> Step {
    Step {
        name,
        program,
        args: args.to_vec(),
        env: env.to_vec(),
    }
}

fn plan(name: &str) -> Option<Vec<Step>> {
    let own = &[NO_LIBC_RSEQ][..];
    let copies = || {
        vec![
            step(
                "two ecs-sys copies share libc's request byte",
                DYNAMIC,
                &["two-copies", "libc"],
                &[],
            ),
            step(
                "two ecs-sys copies: the second leaves the first's own area alone",
                STATIC,
                &["two-copies", "own"],
                own,
            ),
        ]
    };
    let suites = || {
        vec![
            step(
                "stress_spin on the extension",
                "/bin/stress_spin",
                &["--test-threads=1"],
                own,
            ),
            step(
                "rcu_stress on the extension",
                "/bin/rcu_stress",
                &["--test-threads=1"],
                own,
            ),
            step(
                "proptest_spin on the extension",
                "/bin/proptest_spin",
                &[],
                own,
            ),
            step(
                "rcu_proptest on the extension",
                "/bin/rcu_proptest",
                &[],
                own,
            ),
            step(
                "ecs-locks unit tests on the extension",
                "/bin/ecs_locks_unit",
                &[],
                own,
            ),
            step(
                "ecs-sys unit tests on the extension",
                "/bin/ecs_sys_unit",
                &[],
                own,
            ),
            step(
                "exits without an enter (force_unlock) on the extension",
                "/bin/issue_force_unlock_depth",
                &[],
                own,
            ),
        ]
    };
    Some(match name {
        "suites" => suites(),
        "test" => vec![
            step(
                "glibc 2.36 static + tunable: own registration",
                STATIC,
                &["expect", "own"],
                own,
            ),
            step(
                "glibc 2.36 static: legacy registration, fallback",
                STATIC,
                &["expect", "legacy"],
                &[],
            ),
            step(
                "glibc >= 2.41 dynamic: libc's v2 area",
                DYNAMIC,
                &["expect", "libc"],
                &[],
            ),
            step(
                "opt-out by environment",
                STATIC,
                &["expect", "opt-out-env"],
                &[NO_LIBC_RSEQ, ("ECS_LOCKS_RSEQ", "0")],
            ),
            step("opt-out by API", STATIC, &["opt-out-api"], own),
            step(
                "grants and yields match the kernel (own area)",
                STATIC,
                &["grants"],
                own,
            ),
            step(
                "grants and yields match the kernel (libc area)",
                DYNAMIC,
                &["grants"],
                &[],
            ),
            step("nested sections", STATIC, &["nested"], own),
            step("syscalls inside sections", STATIC, &["syscall"], own),
            step(
                "a holder that never leaves cannot keep a vCPU",
                STATIC,
                &["hog"],
                own,
            ),
            step("fork and exec", STATIC, &["fork"], own),
            step(
                "prctl refused by seccomp: fallback",
                STATIC,
                &["seccomp-prctl"],
                own,
            ),
            step(
                "rseq_slice_yield refused by seccomp: off for the process",
                STATIC,
                &["seccomp-yield"],
                own,
            ),
        ]
        .into_iter()
        .chain(copies())
        .chain(suites())
        .collect(),
        "copies" => copies(),
        "disabled" => vec![
            step(
                "rseq_slice_ext=0: own registration falls back",
                STATIC,
                &["expect", "prctl-524"],
                own,
            ),
            step(
                "rseq_slice_ext=0: libc's area falls back",
                DYNAMIC,
                &["expect", "prctl-524"],
                &[],
            ),
        ],
        "bench" => vec![step("benchmark", STATIC, &["bench"], own)],
        "window" => vec![
            step("where 5 us grants end", STATIC, &["window", "5000"], own),
            step("where 50 us grants end", STATIC, &["window", "50000"], own),
        ],
        _ => return None,
    })
}

fn mount(src: &str, target: &str, fstype: &str) {
    let c = |s: &str| CString::new(s).expect("no NUL");
    let (s, t, f) = (c(src), c(target), c(fstype));
    let _ = std::fs::create_dir_all(target);
    // SAFETY: valid NUL-terminated strings, no data argument.
    let r = unsafe { libc::mount(s.as_ptr(), t.as_ptr(), f.as_ptr(), 0, std::ptr::null()) };
    if r != 0 {
        println!(
            "linux-guest: mount {fstype} on {target}: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Runs the plan, prints `ECS-GUEST-VERDICT: pass|fail`, powers off. Never returns.
pub fn run() -> ! {
    mount("devtmpfs", "/dev", "devtmpfs");
    mount("proc", "/proc", "proc");
    mount("sysfs", "/sys", "sysfs");
    mount("debugfs", "/sys/kernel/debug", "debugfs");
    let name = std::env::var("ECS_GUEST_PLAN").unwrap_or_else(|_| "test".into());
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    println!(
        "linux-guest: plan {name}; kernel command line: {}",
        cmdline.trim()
    );
    let cs = |f: &str| {
        std::fs::read_to_string(format!("/sys/devices/system/clocksource/clocksource0/{f}"))
            .unwrap_or_default()
    };
    println!(
        "linux-guest: clocksource {} (available: {})",
        cs("current_clocksource").trim(),
        cs("available_clocksource").trim()
    );
    let mut failed = Vec::new();
    match plan(&name) {
        None => failed.push(format!(
            "unknown plan {name:?} (test, disabled, copies, suites, bench, window)"
        )),
        Some(steps) => {
            for s in steps {
                println!("linux-guest: --- {}", s.name);
                let mut cmd = Command::new(s.program);
                cmd.args(&s.args)
                    .env_remove("GLIBC_TUNABLES")
                    .env_remove("ECS_LOCKS_RSEQ");
                for (k, v) in &s.env {
                    cmd.env(k, v);
                }
                let t0 = std::time::Instant::now();
                let status = cmd.status();
                println!("linux-guest: ({:.1} s)", t0.elapsed().as_secs_f64());
                let ok = match status {
                    Ok(st) if st.success() => true,
                    Ok(st) => {
                        println!("linux-guest: {} exited with {st}", s.program);
                        false
                    }
                    Err(e) => {
                        println!("linux-guest: cannot run {}: {e}", s.program);
                        false
                    }
                };
                println!(
                    "linux-guest: --- {}: {}",
                    s.name,
                    if ok { "ok" } else { "FAILED" }
                );
                if !ok {
                    failed.push(s.name.to_string());
                }
            }
        }
    }
    for f in &failed {
        println!("linux-guest: failed: {f}");
    }
    println!(
        "ECS-GUEST-VERDICT: {}",
        if failed.is_empty() { "pass" } else { "fail" }
    );
    // SAFETY: sync and reboot have no memory preconditions; PID 1 powers the machine off
    // (QEMU runs with -no-reboot, so a reboot ends it).
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_AUTOBOOT);
    }
    loop {
        std::thread::park();
    }
}
