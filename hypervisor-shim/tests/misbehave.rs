//! Guests that misbehave on purpose (`workload::Misbehave`): the host never panics or hangs,
//! reports what happened with the vCPU and its RIP, and keeps the other vCPUs running.

mod common;

use common::{kvm_available, run_with_watchdog};
use hypervisor_shim::vcpu::VcpuState;
use hypervisor_shim::workload::{LockKind, Misbehave};
use hypervisor_shim::{PolicyKind, RunConfig, RunReport};
use std::time::Duration;

fn go(vcpus: u32, pcpus: u32, policy: PolicyKind, mode: Misbehave) -> RunReport {
    let mut c = RunConfig::new(vcpus, pcpus, LockKind::Spin, policy);
    c.duration = Duration::from_millis(200);
    c.grace = Duration::from_millis(200);
    c.misbehave = mode;
    // The run must end by itself (it needs well under a second): a hang fails the test.
    run_with_watchdog(&c, Duration::from_secs(30)).expect("run starts")
}

#[test]
fn never_leave_cs_is_preempted_at_the_bound_and_the_others_run() {
    if !kvm_available("never_leave_cs_is_preempted_at_the_bound_and_the_others_run") {
        return;
    }
    let r = go(4, 1, PolicyKind::Ecs, Misbehave::NeverLeaveCs);
    let v0 = &r.per_vcpu[0];
    // vCPU 0 sits in its section forever: each slice it gets at most one extension and is
    // then preempted inside the section anyway.
    assert!(v0.stats.preemptions_in_cs > 0, "{:?}", v0.stats);
    assert!(v0.stats.extensions > 0, "{:?}", v0.stats);
    assert!(
        v0.stats.extensions <= v0.stats.preemptions + 1,
        "more than one extension per slice: {:?}",
        v0.stats
    );
    // The bound is what ends its turns: it is preempted with an extension running out, and
    // the others get the single pCPU. (Counters, not wall-clock time: how long a turn takes
    // depends on when the host runs the tick thread, which a loaded host delays.)
    assert!(v0.stats.preemptions_at_bound > 0, "{:?}", v0.stats);
    let others: u64 = r.per_vcpu[1..]
        .iter()
        .map(|v| v.stats.run_ns_before_stop)
        .sum();
    assert!(others > 0, "the others never ran");
    for v in &r.per_vcpu[1..] {
        assert_eq!(v.state, VcpuState::Exited { code: 0 }, "vCPU {}", v.vcpu);
        assert!(v.stats.ops > 0, "vCPU {} starved", v.vcpu);
    }
    // It never stops, so it is force-stopped and the run fails naming it.
    assert_eq!(v0.state, VcpuState::ForceStopped);
    assert!(!r.ok());
    assert!(
        r.failures
            .iter()
            .any(|f| f.starts_with("vCPU 0 did not stop") && f.contains("rip=0x")),
        "{:?}",
        r.failures
    );
}

#[test]
fn a_hanging_vcpu_is_force_stopped_with_its_rip() {
    if !kvm_available("a_hanging_vcpu_is_force_stopped_with_its_rip") {
        return;
    }
    let r = go(3, 2, PolicyKind::Baseline, Misbehave::Hang);
    assert!(!r.ok());
    assert_eq!(r.per_vcpu[0].state, VcpuState::ForceStopped);
    let f = r
        .failures
        .iter()
        .find(|f| f.starts_with("vCPU 0 did not stop"))
        .expect("named");
    let rip = u64::from_str_radix(f.rsplit("rip=0x").next().unwrap(), 16).unwrap();
    assert!(
        (0x40_0000..0x80_0000).contains(&rip),
        "rip {rip:#x} is in the guest image"
    );
    for v in &r.per_vcpu[1..] {
        assert_eq!(v.state, VcpuState::Exited { code: 0 }, "vCPU {}", v.vcpu);
    }
}

#[test]
fn a_faulting_guest_ends_the_run_with_vcpu_and_rip() {
    if !kvm_available("a_faulting_guest_ends_the_run_with_vcpu_and_rip") {
        return;
    }
    let r = go(3, 2, PolicyKind::Ecs, Misbehave::Fault);
    assert!(!r.ok());
    assert_eq!(r.per_vcpu[0].state, VcpuState::Failed);
    assert!(
        r.failures
            .iter()
            .any(|f| f.starts_with("vCPU 0 shut down") && f.contains("rip=0x4")),
        "{:?}",
        r.failures
    );
    // The fault ended the run early: the others were told to stop and exited.
    assert!(r.secs < 0.2, "the run went on for {} s", r.secs);
    for v in &r.per_vcpu[1..] {
        assert!(
            matches!(v.state, VcpuState::Exited { .. }),
            "vCPU {}: {:?}",
            v.vcpu,
            v.state
        );
    }
}

#[test]
fn garbage_hypercalls_get_error_statuses() {
    if !kvm_available("garbage_hypercalls_get_error_statuses") {
        return;
    }
    for policy in PolicyKind::ALL {
        let r = go(3, 2, policy, Misbehave::GarbageHypercalls);
        assert!(r.ok(), "{policy}: {:?}", r.failures);
        for v in &r.per_vcpu {
            assert_eq!(v.stats.garbage_rejected, 10, "vCPU {}", v.vcpu);
            assert_eq!(v.stats.bad_hypercalls, 10, "vCPU {}", v.vcpu);
        }
    }
}

/// Every vCPU sets its slot's `progress` to `u64::MAX`, reports `u64::MAX` as OPS, WRITES,
/// COUNTER and VIOLATIONS, waits for `stop` and exits 0 (GNU as, Intel syntax):
///
/// ```text
///   mov dx, 0x0ec5 ; mov eax, 0x101 ; out dx, eax        # Register(ABI 1)
///   mov rbx, qword ptr gs:[40]                           # header.config_addr
///   mov qword ptr fs:[56], -1                            # slot.progress
///   mov qword ptr fs:[32], -1                            # slot.hc_arg
///   mov eax, 0x106 ; out dx, eax ; mov eax, 0x206 ; out dx, eax   # Report(OPS), (WRITES)
///   mov eax, 0x306 ; out dx, eax ; mov eax, 0x406 ; out dx, eax   # (COUNTER), (VIOLATIONS)
/// 1: mov eax, dword ptr [rbx+40] ; test eax, eax ; jz 1b  # until config.stop
///   mov eax, 7 ; out dx, eax                             # Exit(0)
/// 2: jmp 2b
/// ```
const HUGE_REPORTS: &[u8] = &[
    0x66, 0xba, 0xc5, 0x0e, 0xb8, 0x01, 0x01, 0x00, 0x00, 0xef, 0x65, 0x48, 0x8b, 0x1c, 0x25, 0x28,
    0x00, 0x00, 0x00, 0x64, 0x48, 0xc7, 0x04, 0x25, 0x38, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff,
    0x64, 0x48, 0xc7, 0x04, 0x25, 0x20, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xb8, 0x06, 0x01,
    0x00, 0x00, 0xef, 0xb8, 0x06, 0x02, 0x00, 0x00, 0xef, 0xb8, 0x06, 0x03, 0x00, 0x00, 0xef, 0xb8,
    0x06, 0x04, 0x00, 0x00, 0xef, 0x8b, 0x43, 0x28, 0x85, 0xc0, 0x74, 0xf9, 0xb8, 0x07, 0x00, 0x00,
    0x00, 0xef, 0xeb, 0xfe,
];

#[test]
fn huge_guest_reports_saturate_instead_of_overflowing() {
    if !kvm_available("huge_guest_reports_saturate_instead_of_overflowing") {
        return;
    }
    assert_eq!(
        ecs_sys::abi::slot_offset::PROGRESS,
        56,
        "the hand-assembled guest writes progress at fs:[56]"
    );
    let mut c = RunConfig::new(2, 1, LockKind::Spin, PolicyKind::Baseline);
    c.duration = Duration::from_millis(100);
    let mut seen = 0;
    let elf = common::tiny_elf(HUGE_REPORTS);
    let r = hypervisor_shim::run(&c, &elf, Duration::from_millis(10), &mut |p| {
        seen = seen.max(p.ops)
    })
    .expect("run starts");
    assert_eq!(seen, u64::MAX, "the live progress sum saturates");
    for v in &r.per_vcpu {
        assert_eq!(v.state, VcpuState::Exited { code: 0 }, "vCPU {}", v.vcpu);
        assert_eq!(v.stats.ops, u64::MAX, "vCPU {}", v.vcpu);
    }
    assert_eq!(
        (r.total.ops, r.total.writes, r.total.violations),
        (u64::MAX, u64::MAX, u64::MAX)
    );
    assert!(
        r.failures
            .iter()
            .any(|f| f.contains("invariant violations")),
        "{:?}",
        r.failures
    );
}
