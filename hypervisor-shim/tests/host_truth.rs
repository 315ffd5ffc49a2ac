//! Issue 8 item 2 on real KVM: a vCPU thread that the host deschedules while it holds a pCPU is
//! seen (its CPU clock stalls across a tick), counted apart from the shim's own preemptions,
//! and published as `preempted`; slot time, CPU time and steal are reported per vCPU.

mod common;

use common::kvm_available;
use hypervisor_shim::guest_image::guest_elf;
use hypervisor_shim::sched::os::{available_cpus, pin_to};
use hypervisor_shim::workload::LockKind;
use hypervisor_shim::{PolicyKind, RunConfig, run};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Makes the calling thread SCHED_FIFO (priority 2, above the shim's tick thread).
fn realtime() -> bool {
    let param = libc::sched_param { sched_priority: 2 };
    // SAFETY: pthread_self is the calling thread; `param` is a valid sched_param.
    unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) == 0 }
}

#[test]
fn a_descheduled_slot_holder_is_seen_counted_and_flagged_preempted() {
    let test = "a_descheduled_slot_holder_is_seen_counted_and_flagged_preempted";
    if !kvm_available(test) {
        return;
    }
    let cpus = available_cpus();
    if cpus.len() < 2 {
        let why = format!("skipping {test}: needs 2 host CPUs, has {}", cpus.len());
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
        eprintln!("{why}");
        return;
    }
    // 2 vCPUs on 2 pCPUs, pinned: vCPU 0 holds pCPU 0 on host CPU cpus[0] all the run. A
    // real-time thread on that CPU takes it from the vCPU thread for 60 ms: the host, not the
    // shim, deschedules the slot holder.
    let mut c = RunConfig::new(2, 2, LockKind::Spin, PolicyKind::Ecs);
    c.duration = Duration::from_millis(500);
    let started = AtomicBool::new(false);
    let refused = AtomicBool::new(false);
    let mut seen_flag = false;
    let r = std::thread::scope(|s| {
        s.spawn(|| {
            pin_to(cpus[0]);
            while !started.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(Duration::from_millis(150));
            if !realtime() {
                refused.store(true, Ordering::Release);
                return;
            }
            let t = Instant::now();
            while t.elapsed() < Duration::from_millis(60) {
                std::hint::spin_loop();
            }
        });
        run(&c, guest_elf(), Duration::from_millis(5), &mut |p| {
            started.store(true, Ordering::Release);
            seen_flag |= p.slots[0].preempted == 1;
        })
        .expect("run starts")
    });
    if refused.load(Ordering::Acquire) {
        let why = format!("skipping {test}: SCHED_FIFO is not permitted here");
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
        eprintln!("{why}");
        return;
    }
    assert!(r.ok(), "{:?}", r.failures);
    let v0 = &r.per_vcpu[0].stats;
    assert!(v0.host_deschedules >= 1, "{v0:?}");
    assert_eq!(
        v0.preemptions, 0,
        "under-commit: the shim itself never preempts"
    );
    assert!(
        v0.steal_ns >= 30_000_000,
        "60 ms without a CPU while holding the pCPU: steal {} ns",
        v0.steal_ns
    );
    assert_eq!(v0.steal_ns, v0.run_ns.saturating_sub(v0.cpu_ns));
    assert!(
        seen_flag,
        "`preempted` published while the host held the thread off"
    );
    assert_eq!(
        r.total.host_deschedules,
        r.per_vcpu
            .iter()
            .map(|v| v.stats.host_deschedules)
            .sum::<u64>()
    );
}

#[test]
fn guest_hints_off_publishes_no_hint_under_the_same_host_policy() {
    if !kvm_available("guest_hints_off_publishes_no_hint_under_the_same_host_policy") {
        return;
    }
    let mut c = RunConfig::new(6, 2, LockKind::Spin, PolicyKind::Ecs);
    c.duration = Duration::from_millis(300);
    c.guest_hints = false;
    let mut seen = Vec::new();
    let r = run(&c, guest_elf(), Duration::from_millis(10), &mut |p| {
        seen.push(p.slots)
    })
    .expect("run starts");
    assert!(r.ok(), "{:?}", r.failures);
    assert!(!r.guest_hints);
    assert!(!seen.is_empty());
    for slots in seen
        .iter()
        .chain([&r.per_vcpu.iter().map(|v| v.slot).collect()])
    {
        assert!(
            slots.iter().all(|s| s.preempted == 0 && s.overloaded == 0),
            "a hint was published: {slots:?}"
        );
    }
    // The host policy is still eCS: it defers preemptions in critical sections.
    assert!(r.total.extensions > 0, "{:?}", r.total);
    // With hints on, the same run publishes them.
    c.guest_hints = true;
    let mut flagged = false;
    let r = run(&c, guest_elf(), Duration::from_millis(10), &mut |p| {
        flagged |= p
            .slots
            .iter()
            .any(|s| s.preempted == 1 && s.overloaded == 1);
    })
    .expect("run starts");
    assert!(r.ok() && r.guest_hints && flagged, "{:?}", r.failures);
}
