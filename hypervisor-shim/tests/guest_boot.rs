//! The embedded guest program on real KVM: boot, every lock kind, every policy, exact counters.
#![allow(clippy::disallowed_types)]

mod common;

use common::kvm_available;
use hypervisor_shim::guest_image::guest_elf;
use hypervisor_shim::vcpu::VcpuState;
use hypervisor_shim::workload::LockKind;
use hypervisor_shim::{PolicyKind, RunConfig, RunReport, run};
use std::time::Duration;

fn go(vcpus: u32, pcpus: u32, lock: LockKind, policy: PolicyKind, ms: u64) -> RunReport {
    let mut c = RunConfig::new(vcpus, pcpus, lock, policy);
    c.duration = Duration::from_millis(ms);
    run(&c, guest_elf(), Duration::from_secs(10), &mut |_| {}).expect("run starts")
}

#[test]
fn one_vcpu_runs_the_guest_and_exits_cleanly() {
    if !kvm_available("one_vcpu_runs_the_guest_and_exits_cleanly") {
        return;
    }
    let r = go(1, 1, LockKind::Spin, PolicyKind::Baseline, 100);
    assert!(r.ok(), "{:?}", r.failures);
    assert_eq!(r.per_vcpu[0].state, VcpuState::Exited { code: 0 });
    assert!(r.total.ops > 0);
    assert_eq!(r.counter, Some(r.total.writes));
    eprintln!("{:?}", r.total);
}

/// Every lock kind the embedded guest runs: all of `LockKind::ALL`, so a new kind is tested
/// here without anyone adding it.
fn kinds() -> impl Iterator<Item = LockKind> {
    LockKind::ALL.into_iter()
}

fn check_exact(r: &RunReport, what: &str) {
    assert!(r.ok(), "{what}: {:?}", r.failures);
    assert_eq!(r.counter, Some(r.total.writes), "{what}: counter");
    assert_eq!(r.total.violations, 0, "{what}");
    for v in &r.per_vcpu {
        assert_eq!(
            v.state,
            VcpuState::Exited { code: 0 },
            "{what}: vCPU {}",
            v.vcpu
        );
        assert!(v.stats.registered, "{what}: vCPU {} registered", v.vcpu);
        assert!(v.stats.ops > 0, "{what}: vCPU {} made no progress", v.vcpu);
    }
}

#[test]
fn every_lock_kind_on_one_vcpu() {
    if !kvm_available("every_lock_kind_on_one_vcpu") {
        return;
    }
    for lock in kinds() {
        let r = go(1, 1, lock, PolicyKind::Ecs, 40);
        check_exact(&r, &format!("{lock:?} 1/1"));
    }
}

#[test]
fn every_lock_kind_and_policy_over_committed() {
    if !kvm_available("every_lock_kind_and_policy_over_committed") {
        return;
    }
    for lock in kinds() {
        for policy in PolicyKind::ALL {
            let r = go(4, 2, lock, policy, 120);
            let what = format!("{lock:?} 4/2 {policy}");
            check_exact(&r, &what);
            // 4 vCPUs on 2 slots all made progress (checked above): the slots changed hands,
            // by preemption at slice end, yield or halt.
            let t = &r.total;
            assert!(t.preemptions + t.yields + t.halts > 0, "{what}: {t:?}");
            if !policy.hints() {
                assert_eq!(r.total.extensions, 0, "{what}");
                assert_eq!(
                    r.total.directed_yields, 0,
                    "{what}: no hints, no directed yield"
                );
            }
            if !policy.ple() {
                assert_eq!(r.total.ple_exits, 0, "{what}: PLE is not advertised");
            }
            if lock == LockKind::Mcs && policy == PolicyKind::Ple {
                // A queue over 4 vCPUs on 2 slots makes waiters wait for preempted queue
                // neighbours: ple waiters trap after the pause-loop window. (Under ecs the
                // host reports the pCPUs overloaded and MCS waiters do not queue at all.)
                assert!(r.total.ple_exits > 0, "{what}: {:?}", r.total);
            }
            for v in &r.per_vcpu {
                if policy == PolicyKind::Baseline {
                    assert_eq!(
                        (v.slot.preempted, v.slot.overloaded, v.slot.ext_granted),
                        (0, 0, 0),
                        "{what}"
                    );
                }
            }
        }
    }
}

#[test]
fn ecs_defers_preemption_in_critical_sections() {
    if !kvm_available("ecs_defers_preemption_in_critical_sections") {
        return;
    }
    // Long critical sections, so that many slices end inside one.
    let mut c = RunConfig::new(6, 2, LockKind::Spin, PolicyKind::Ecs);
    c.duration = Duration::from_millis(300);
    c.slice = Duration::from_millis(1);
    c.cs_iters = 2000;
    c.think_iters = 2000;
    let r = run(&c, guest_elf(), Duration::from_secs(10), &mut |_| {}).unwrap();
    check_exact(&r, "ecs long CS");
    assert!(
        r.total.extensions > 0,
        "no extension granted: {:?}",
        r.total
    );
    // Bounded: at most one extension per slice, and a slice ends in a preemption, a yield or
    // a halt (or renews when nobody waits, which cannot happen with 6 vCPUs on 2 slots).
    for v in &r.per_vcpu {
        let st = &v.stats;
        assert!(
            st.extensions <= st.preemptions + st.yields + st.halts + 1,
            "vCPU {}: {st:?}",
            v.vcpu
        );
        assert_eq!(v.slot.nr_extensions as u64, st.extensions);
    }
}
