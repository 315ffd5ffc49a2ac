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
        &["compare", "--preset", "nope"],
        &["run", "--halt-poll", "maybe"],
        &["run", "--guest-hints", "1"],
        &["compare", "--halt-poll", "yes"],
        &["compare", "--rounds", "0"],
        &["compare", "--repeat", "0"],
        &["compare", "--seed", "x"],
        &["compare", "--quick", "--preset", "smoke"],
        &["compare", "--vcpus", "0"],
        &["compare", "--secs", "-1"],
        &["frobnicate"],
        // Bad VM specs: no VM, zero vCPUs, too many in total, an unknown workload, bad weights.
        &["run", "--vm", ""],
        &["run", "--vm", "0:spin"],
        &["run", "--vm", "200:spin", "--vm", "57:hog"],
        &["run", "--vm", "4:bogus"],
        &["run", "--vm", "4:spin:0"],
        &["run", "--vm", "4:spin:x"],
        &["run", "--vm", "4"],
        &["run", "--vm", "4:spin:1:evil"],
        &["run", "--vm", "4:spin", "--misbehave", "hang"],
        &["compare", "--vm-preset", "nope"],
        &["compare", "--vm", "0:spin"],
        &["compare", "--vm", "2:spin", "--preset", "smoke"],
    ] {
        let out = shim(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(!out.stderr.is_empty(), "{args:?}: an explanation on stderr");
    }
}

#[test]
fn bad_vm_specs_say_what_is_wrong() {
    for (args, says) in [
        (&["run", "--vm", ""][..], "no VM"),
        (
            &["run", "--vm", "0:spin"],
            "VCPUS must be between 1 and 256",
        ),
        (
            &["run", "--vm", "200:spin", "--vm", "57:hog"],
            "257 vCPUs in total",
        ),
        (&["run", "--vm", "4:bogus"], "unknown lock kind"),
        (&["run", "--vm", "4:spin:0"], "WEIGHT must be"),
    ] {
        let out = shim(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn run_with_several_vms_reports_each_and_the_total() {
    if !kvm_available("run_with_several_vms_reports_each_and_the_total") {
        return;
    }
    let out = shim(&[
        "run", "--vm", "2:spin", "--vm", "2:hog:3", "--pcpus", "2", "--secs", "0.2", "--json",
    ]);
    assert!(out.status.success(), "{out:?}");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let vms = r["vms"].as_array().expect("vms");
    assert_eq!(vms.len(), 2);
    assert_eq!(
        (vms[0]["spec"].as_str(), vms[1]["spec"].as_str()),
        (Some("2:spin"), Some("2:hog:3"))
    );
    assert_eq!(vms[1]["fair_share"].as_f64(), Some(0.75));
    assert_eq!(r["vcpus"], 4);
    // Each VM has the one-VM run's `total` fields, and they add up to the run's.
    let key = |v: &serde_json::Value, k: &str| v["total"][k].as_u64().expect(k);
    for k in ["ops", "writes", "run_ns", "preemptions"] {
        assert_eq!(key(&vms[0], k) + key(&vms[1], k), key(&r, k), "{k}");
    }
    assert_eq!(vms[0]["counter"], vms[0]["total"]["writes"]);
    assert_eq!(key(&vms[1], "writes"), 0, "the hog takes no lock");
    assert_eq!(r["per_vcpu"][3]["vm"], 1);
    assert_eq!(r["per_vcpu"][3]["vm_vcpu"], 1);
    // The table names each VM.
    let out = shim(&[
        "run", "--vm", "1:mcs", "--vm", "1:hog", "--pcpus", "1", "--secs", "0.1",
    ]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("2 VMs (1:mcs + 1:hog)") && text.contains("of fair"),
        "{text}"
    );
}

#[test]
fn compare_of_several_vms_pairs_each_vm_with_itself_under_baseline() {
    let out = shim(&["compare", "--vm-preset", "two-locks", "--dry-run"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("84 runs") && text.contains("spin alone at 16 ecs"),
        "{text}"
    );
    if !kvm_available("compare_of_several_vms_pairs_each_vm_with_itself_under_baseline") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("ecs-shim-vms-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let json = dir.join("vms.json");
    let out = shim(&[
        "compare",
        "--vm",
        "1:spin",
        "--vm",
        "1:hog:2",
        "--pcpus",
        "1",
        "--rounds",
        "2",
        "--secs",
        "0.1",
        "--json",
        json.to_str().expect("utf-8"),
        "--plot",
        dir.join("vms.svg").to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1:spin + 1:hog:2 on 1 pCPUs"), "{text}");
    let svg = std::fs::read_to_string(dir.join("vms.svg")).expect("chart written");
    assert!(svg.starts_with("<svg"), "{svg}");
    assert!(
        svg.contains("1:spin beside 1:hog:2") && svg.contains("1:hog:2 beside 1:spin"),
        "{svg}"
    );
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("written")).expect("JSON");
    assert_eq!(doc["kind"], "vms");
    let rows = doc["summary"].as_array().expect("summary");
    assert_eq!(rows.len(), 2 * 3, "two VMs under three policies");
    for r in rows.iter().filter(|r| r["policy"] == "baseline") {
        assert_eq!(r["work_x_base"]["median"], 1.0, "{r}");
    }
    assert_eq!(doc["runs"].as_array().map(Vec::len), Some(6));
    std::fs::remove_dir_all(&dir).ok();
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
    // Added fields (issue 8): the knobs, the host's truth, fairness, the PLE conversion.
    assert_eq!(
        (v["halt_poll"].as_bool(), v["guest_hints"].as_bool()),
        (Some(true), Some(true))
    );
    assert!(v["cycles_per_pause"].as_f64().unwrap() > 0.0);
    assert_eq!(v["ple_base_window"], 0, "ecs emulates no PLE");
    assert!(
        v["total"]["steal_ns"].as_u64().is_some()
            && v["total"]["host_deschedules"].as_u64().is_some()
    );
    assert!(v["jain"].as_f64().is_some_and(|j| j > 0.0 && j <= 1.0));
    assert!(v["ops_min"].as_u64().unwrap() <= v["ops_max"].as_u64().unwrap());
    let out = shim(&[
        "run",
        "--vcpus",
        "2",
        "--lock",
        "spin",
        "--policy",
        "ple",
        "--secs",
        "0.05",
        "--json",
        "--halt-poll",
        "off",
        "--guest-hints",
        "off",
    ]);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(
        (v["halt_poll"].as_bool(), v["guest_hints"].as_bool()),
        (Some(false), Some(false))
    );
    assert!(
        v["ple_base_window"].as_u64().unwrap() >= 1,
        "KVM's window in spins"
    );
}

#[test]
fn compare_runs_paired_rounds_and_writes_json_and_svg() {
    if !kvm_available("compare_runs_paired_rounds_and_writes_json_and_svg") {
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
        "--rounds",
        "1",
        "--seed",
        "7",
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
    // A header, per lock the ceiling and 3 policies, the method.
    assert_eq!(rows.lines().count(), 1 + 2 * 4 + 1, "{table}");
    assert!(
        rows.contains("ceiling") && rows.contains("1.00x [n/a]"),
        "{table}"
    );
    assert!(
        rows.contains("order statistics"),
        "the method is said: {table}"
    );
    assert!(
        summary.starts_with("ecs, medians") && summary.contains("mcs       3 on 2   (1.5x):"),
        "{summary}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("[8/8] round 1/1: ") && stderr.contains("--seed 7 repeats"),
        "progress: {stderr}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["summary"].as_array().unwrap().len(), 8);
    assert_eq!(v["runs"].as_array().unwrap().len(), 8);
    assert_eq!(
        v["rows"].as_array().unwrap().len(),
        6,
        "the older rows, kept"
    );
    assert_eq!(v["seed"], 7);
    assert!(v["host"]["cores"].as_u64().unwrap() >= 1);
    assert!(v["host"]["kernel"].as_str().is_some_and(|k| !k.is_empty()));
    assert!(v["runs"][0]["round"] == 0 && v["runs"][0]["position"] == 0);
    let picture = std::fs::read_to_string(&svg).unwrap();
    assert!(picture.starts_with("<svg") && picture.contains("share of the ceiling"));
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
fn dry_run_prints_the_plan_and_its_time_without_kvm() {
    // The README's time for the main command: 420 runs of 1 s plus the overhead.
    let out = shim(&["compare", "--dry-run", "--seed", "5"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("preset default: 7 groups, 70 runs per round, 6 rounds = 420 runs of 1.0 s: about 7:21 (seed 5)"),
        "{text}"
    );
    assert!(
        text.contains(
            "spin cs 100 think 400: ceiling 2 on 2, 2 baseline, 2 ple, 2 ecs, 8 baseline"
        )
    );
    let out = shim(&["compare", "--dry-run", "--preset", "ablations"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("8 ecs -hints") && text.contains("294 runs"),
        "{text}"
    );
    let out = shim(&["compare", "--dry-run", "--preset", "under-commit"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("condvar cs 100000 think 400000") && text.contains("288 runs"),
        "{text}"
    );
}

#[test]
fn plot_reads_the_older_compare_files() {
    let dir = std::env::temp_dir().join(format!("ecs-shim-plot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let docs = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs");
    for name in ["shim-compare", "shim-current", "shim-under-commit"] {
        let out_svg = dir.join(format!("{name}.svg"));
        let out = shim(&[
            "plot",
            "--json",
            &format!("{docs}/{name}.json"),
            "--out",
            out_svg.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{name}: {out:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("x-base"));
        let picture = std::fs::read_to_string(&out_svg).unwrap();
        assert!(
            picture.contains("throughput / baseline throughput"),
            "{name}"
        );
    }
    let bad = dir.join("bad.json");
    std::fs::write(&bad, "{\"neither\": 1}").unwrap();
    let out = shim(&[
        "plot",
        "--json",
        bad.to_str().unwrap(),
        "--out",
        "/dev/null",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a compare JSON file"));
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
