//! PID 1 in the guest: mounts, the plan named by `ECS_GUEST_PLAN`, the verdict, power-off.
//!
//! The initramfs (built by `scripts/linux-guest/boot.sh`) holds this program statically linked
//! as `/init`, its dynamically linked copy as `/bin/linux-guest-dyn` with Debian unstable's
//! glibc under `/lib`, and every test binary of ecs-locks and ecs-sys, statically linked, under
//! `/bin/suites`.

use std::ffi::CString;
use std::process::Command;

/// glibc's tunable that keeps it from registering rseq (the crate then registers its own).
const NO_LIBC_RSEQ: (&str, &str) = ("GLIBC_TUNABLES", "glibc.pthread.rseq=0");
const STATIC: &str = "/init";
const DYNAMIC: &str = "/bin/linux-guest-dyn";

/// What a step's run must have done to the kernel's grant counter (`sgrant` in
/// `/sys/kernel/debug/rseq/stats`; the step's process is the only user while it runs).
#[derive(Clone, Copy, PartialEq)]
enum Grants {
    /// Not checked.
    Any,
    /// None: the process opted out, so nothing in it may request an extension.
    None,
    /// Counted into the plan's total on the extension, which must end above 0.
    Counted,
}

/// One step of a plan: a program, its arguments, extra environment.
struct Step {
    name: String,
    program: String,
    args: Vec<&'static str>,
    env: Vec<(&'static str, &'static str)>,
    grants: Grants,
}

fn step(
    name: &str,
    program: &str,
    args: &[&'static str],
    env: &[(&'static str, &'static str)],
) -> Step {
    Step {
        name: name.to_string(),
        program: program.to_string(),
        args: args.to_vec(),
        env: env.to_vec(),
        grants: Grants::Any,
    }
}

/// The directory where boot.sh puts every test binary of ecs-locks and ecs-sys.
const SUITES: &str = "/bin/suites";

/// The native test suite, each binary twice: on the extension (the crate's own area) and opted
/// out (`ECS_LOCKS_RSEQ=0`, which must leave the kernel's grant counter where it was). One
/// test thread (`RUST_TEST_THREADS`, which the `harness = false` binaries ignore): the stress
/// tests bring their own threads, 8 and more on the 2 vCPUs.
fn suites() -> Vec<Step> {
    let mut names: Vec<String> = std::fs::read_dir(SUITES)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    if names.is_empty() {
        // A step that fails with the reason: the plan never passes without its suites.
        return vec![step(
            &format!("the native test suite ({SUITES} is empty or missing)"),
            &format!("{SUITES}/missing"),
            &[],
            &[],
        )];
    }
    let mut steps = Vec::new();
    for n in &names {
        let program = format!("{SUITES}/{n}");
        let mut on = step(
            &format!("{n} on the extension"),
            &program,
            &[],
            &[NO_LIBC_RSEQ, ("RUST_TEST_THREADS", "1")],
        );
        on.grants = Grants::Counted;
        let mut off = step(
            &format!("{n} opted out (ECS_LOCKS_RSEQ=0)"),
            &program,
            &[],
            &[
                NO_LIBC_RSEQ,
                ("RUST_TEST_THREADS", "1"),
                ("ECS_LOCKS_RSEQ", "0"),
            ],
        );
        off.grants = Grants::None;
        steps.push(on);
        steps.push(off);
    }
    steps
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

/// The rise of the kernel's grant counter since `before` was read.
fn grants_since(before: Result<crate::kstats::Slice, String>) -> Result<u64, String> {
    let before = before?;
    Ok(crate::kstats::read()?.since(&before).sgrant)
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
            let mut counted: Option<u64> = None;
            // The last run on the extension's grants: an opted-out run that follows a granted
            // one is evidence that the opt-out works (an ungranted pair would pass anyway).
            let mut last_on = 0;
            let mut evidence = Vec::new();
            for s in steps {
                println!("linux-guest: --- {}", s.name);
                let before = (s.grants != Grants::Any).then(crate::kstats::read);
                let mut cmd = Command::new(&s.program);
                cmd.args(&s.args)
                    .env_remove("GLIBC_TUNABLES")
                    .env_remove("ECS_LOCKS_RSEQ");
                for (k, v) in &s.env {
                    cmd.env(k, v);
                }
                let t0 = std::time::Instant::now();
                let status = cmd.status();
                println!("linux-guest: ({:.1} s)", t0.elapsed().as_secs_f64());
                let mut ok = match status {
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
                if let Some(before) = before {
                    match grants_since(before) {
                        Err(e) => {
                            println!("linux-guest: kernel rseq stats: {e}");
                            ok = false;
                        }
                        Ok(g) => {
                            println!("linux-guest: grants during the step: {g}");
                            if s.grants == Grants::None && g != 0 {
                                println!(
                                    "linux-guest: an opted-out process was granted {g} extensions"
                                );
                                ok = false;
                            }
                            if s.grants == Grants::None && g == 0 && last_on > 0 {
                                evidence.push(s.name.clone());
                            }
                            if s.grants == Grants::Counted {
                                *counted.get_or_insert(0) += g;
                                last_on = g;
                            }
                        }
                    }
                }
                println!(
                    "linux-guest: --- {}: {}",
                    s.name,
                    if ok { "ok" } else { "FAILED" }
                );
                if !ok {
                    failed.push(s.name);
                }
            }
            if let Some(total) = counted {
                println!("linux-guest: grants over the suites on the extension: {total}");
                if total == 0 {
                    failed
                        .push("the suites on the extension were never granted an extension".into());
                }
                println!(
                    "linux-guest: opted-out runs whose run on the extension was granted (the \
                     opt-out's evidence): {}",
                    evidence.join(", ")
                );
                if evidence.is_empty() {
                    failed.push(
                        "no opted-out run follows a granted one: the opt-out is untested".into(),
                    );
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
