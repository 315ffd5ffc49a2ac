//! The host report's foreign CPU time is truthful: processes other than the shim that spin on
//! the host's CPUs are seen (never asserting on throughput), while the shim's own threads are
//! not counted as foreign.

mod common;

use common::kvm_available;
use hypervisor_shim::host::{FOREIGN_CPU_WARN_PCT, clock_ticks_per_sec, cpu_use, sample};
use hypervisor_shim::sched::os::{available_cpus, thread_cpu_ns};
use std::process::{Child, Command};
use std::time::Duration;

/// One spinning `sh` per CPU this process may use, killed when dropped.
struct Spinners(Vec<Child>);

impl Spinners {
    fn start() -> Self {
        let n = available_cpus().len().max(1);
        Spinners(
            (0..n)
                .map(|_| {
                    Command::new("sh")
                        .args(["-c", "while :; do :; done"])
                        .spawn()
                        .expect("sh starts")
                })
                .collect(),
        )
    }

    /// CPU time the spinners have used so far, ns (`/proc/PID/stat` utime + stime).
    fn cpu_ns(&self) -> u64 {
        let ticks: u64 = self
            .0
            .iter()
            .map(|c| {
                let stat = std::fs::read_to_string(format!("/proc/{}/stat", c.id()))
                    .expect("the spinner is alive");
                // Fields after the command's closing parenthesis start at field 3 (state);
                // utime and stime are fields 14 and 15.
                let rest = &stat[stat.rfind(')').expect("comm") + 1..];
                let f: Vec<&str> = rest.split_whitespace().collect();
                f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
            })
            .sum();
        ticks * 1_000_000_000 / clock_ticks_per_sec()
    }
}

impl Drop for Spinners {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn a_spinning_child_counts_as_foreign_and_this_process_does_not() {
    let a = sample().expect("/proc/stat");
    let spinners = Spinners::start();
    // This process spins too, on a thread of its own, for 300 ms of its CPU time: that time is
    // its own, not foreign.
    let spin = std::thread::spawn(|| {
        let start = thread_cpu_ns();
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while thread_cpu_ns() < start + 300_000_000 && t.elapsed() < Duration::from_secs(20) {
            x = core::hint::black_box(x.wrapping_add(1));
        }
        thread_cpu_ns() - start
    });
    std::thread::sleep(Duration::from_millis(500));
    let spun = spin.join().unwrap();
    let children = spinners.cpu_ns();
    let b = sample().unwrap();
    drop(spinners);
    let u = cpu_use(&a, &b).expect("time passed");
    let foreign_ns = u.foreign_pct / 100.0 * u.cpu_secs * 1e9;
    let own_ns = u.own_pct / 100.0 * u.cpu_secs * 1e9;
    // Other work on the host can only add to the foreign time; /proc/stat is sampled at the
    // tick, hence the 20 % of slack.
    assert!(
        foreign_ns >= 0.8 * children as f64,
        "foreign {foreign_ns:.0} ns < the spinners' {children} ns: {u:?}"
    );
    assert!(spun >= 300_000_000, "the spin got its CPU time");
    assert!(
        b.own_ns - a.own_ns >= spun && own_ns >= 0.9 * spun as f64,
        "this process's spin is its own: {u:?}"
    );
}

#[test]
fn compare_reports_and_warns_about_a_busy_foreign_process() {
    if !kvm_available("compare_reports_and_warns_about_a_busy_foreign_process") {
        return;
    }
    let json = std::env::temp_dir().join(format!("ecs-shim-foreign-{}.json", std::process::id()));
    let spinners = Spinners::start();
    let out = Command::new(env!("CARGO_BIN_EXE_ecs-shim"))
        .args([
            "compare",
            "--preset",
            "smoke",
            "--locks",
            "spin",
            "--rounds",
            "2",
            "--secs",
            "0.2",
            "--json",
            json.to_str().unwrap(),
        ])
        .output()
        .expect("ecs-shim runs");
    drop(spinners);
    // Exit 1 (a run failed its checks) is possible on a host this busy and not what this test
    // is about: the host report is written either way.
    assert!(matches!(out.status.code(), Some(0 | 1)), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for when in ["before the first run", "during round 1", "during round 2"] {
        assert!(
            stderr
                .lines()
                .any(|l| l.contains("warning: other processes used") && l.contains(when)),
            "{when}: {stderr}"
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("host: other processes used") && stdout.contains("warning above 5 %"),
        "{stdout}"
    );
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    std::fs::remove_file(&json).ok();
    let rounds = doc["host"]["rounds"].as_array().expect("per round");
    assert_eq!(rounds.len(), 2);
    for r in rounds {
        let f = r["foreign_pct"].as_f64().unwrap();
        assert!(f > FOREIGN_CPU_WARN_PCT, "{r}");
        assert!(r["own_pct"].as_f64().unwrap() > 0.0 && r["cpu_secs"].as_f64().unwrap() > 0.0);
    }
    assert_eq!(doc["host"]["foreign_cpu_warn_pct"], FOREIGN_CPU_WARN_PCT);
    assert!(
        doc["host"]["load_start"].is_array(),
        "the load averages stay"
    );
    assert_eq!(doc["warnings"].as_array().unwrap().len(), 3, "{doc}");
}
