//! The `ecs-shim` command line: argument errors, exit codes, `run --json`, `compare` with its
//! JSON and SVG outputs.

mod common;

use common::kvm_available;
use std::process::Command;

fn shim(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ecs-shim"))
        .args(args)
        .output()
        .expect("ecs-shim runs")
}

#[test]
fn bad_arguments_exit_2() {
    for args in [
        &["run", "--vcpus", "0"][..],
        &["run", "--lock", "nope"],
        &["run", "--policy", "cfs"],
        &["run", "--read-percent", "101"],
        &["run", "--secs", "-1"],
        &["run", "--slice-ms", "0.01"],
        // Bounded: one scheduler slot per pCPU; ns counts that fit a u64.
        &["run", "--pcpus", "4000000000"],
        &["run", "--grace-secs", "18446744073"],
        &["run", "--secs", "1e12"],
        &["compare", "--pcpus", "257"],
        &["compare", "--locks", "spin,bogus"],
        &["frobnicate"],
    ] {
        let out = shim(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(!out.stderr.is_empty(), "{args:?}: an explanation on stderr");
    }
}

#[test]
fn help_documents_the_exit_codes() {
    let out = shim(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("3  /dev/kvm is not available"), "{text}");
}

#[test]
fn run_json_reports_exact_counters() {
    if !kvm_available("run_json_reports_exact_counters") {
        return;
    }
    let out = shim(&[
        "run", "--vcpus", "3", "--pcpus", "2", "--lock", "ticket", "--policy", "ecs", "--secs",
        "0.1", "--json",
    ]);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(v["policy"], "ecs");
    assert_eq!(v["lock"], "ticket");
    assert_eq!(v["counter"], v["total"]["writes"]);
    assert_eq!(v["per_vcpu"].as_array().unwrap().len(), 3);
    assert!(v["failures"].as_array().unwrap().is_empty());
}

#[test]
fn compare_prints_ratios_and_writes_json_and_svg() {
    if !kvm_available("compare_prints_ratios_and_writes_json_and_svg") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("ecs-shim-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (json, svg) = (dir.join("c.json"), dir.join("c.svg"));
    let out = shim(&[
        "compare",
        "--vcpus",
        "3",
        "--pcpus",
        "2",
        "--locks",
        "spin,mcs",
        "--secs",
        "0.1",
        "--repeat",
        "1",
        "--json",
        json.to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let table = String::from_utf8_lossy(&out.stdout);
    let (rows, summary) = table
        .split_once("\n\n")
        .expect("table, blank line, summary");
    assert_eq!(rows.lines().count(), 1 + 2 * 3, "{table}");
    assert!(rows.contains("1.00x"), "baseline's own ratio: {table}");
    assert!(
        summary.starts_with("against baseline") && summary.contains("mcs       3 on 2   (1.5x):"),
        "{summary}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("[6/6] 3 vCPU/2 pCPU mcs ecs"),
        "progress: {stderr}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["rows"].as_array().unwrap().len(), 6);
    assert_eq!(v["runs"].as_array().unwrap().len(), 6);
    let picture = std::fs::read_to_string(&svg).unwrap();
    assert!(picture.starts_with("<svg") && picture.contains("throughput / baseline"));
    // `plot` redraws the same table and chart from the JSON file.
    let again = dir.join("again.svg");
    let out = shim(&[
        "plot",
        "--json",
        json.to_str().unwrap(),
        "--out",
        again.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), table);
    assert_eq!(std::fs::read_to_string(&again).unwrap(), picture);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_kvm_is_one_clear_line_and_exit_3() {
    // Hide /dev/kvm in a private mount namespace (needs root and unshare; skip otherwise).
    let script = format!(
        "mount -t tmpfs none /dev && exec {} run --secs 0.1",
        env!("CARGO_BIN_EXE_ecs-shim")
    );
    let out = match Command::new("unshare")
        .args(["--mount", "sh", "-c", &script])
        .output()
    {
        Ok(out) if !String::from_utf8_lossy(&out.stderr).contains("ecs-shim") => {
            eprintln!(
                "skipping missing_kvm_is_one_clear_line_and_exit_3: cannot hide /dev/kvm ({out:?})"
            );
            return;
        }
        Ok(out) => out,
        Err(e) => {
            eprintln!("skipping missing_kvm_is_one_clear_line_and_exit_3: no unshare ({e})");
            return;
        }
    };
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("ecs-shim: /dev/kvm is not available (")
            && err.contains("this command needs KVM"),
        "{err}"
    );
}
