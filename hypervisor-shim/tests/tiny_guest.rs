//! The VMM and scheduler mechanics with hand-assembled guests (independent of the real guest
//! program). Source of `SPIN_UNTIL_STOP` (GNU as, Intel syntax):
//!
//! ```text
//!   mov dx, 0x0ec5 ; mov eax, 0x101 ; out dx, eax        # Register(ABI 1)
//!   mov rbx, qword ptr gs:[40]                           # header.config_addr
//!   xor ecx, ecx
//! 1: inc rcx ; mov eax, dword ptr [rbx+40] ; test eax, eax ; jz 1b   # until config.stop
//!   mov qword ptr fs:[32], rcx ; mov eax, 0x106 ; out dx, eax        # Report(OPS, rcx)
//!   mov qword ptr fs:[32], 0 ; mov eax, 0x206 ; out dx, eax          # Report(WRITES, 0)
//!   mov eax, 0x306 ; out dx, eax                                     # Report(COUNTER, 0)
//!   mov eax, 7 ; out dx, eax                                         # Exit(0)
//! 2: jmp 2b
//! ```
//!
//! `YIELD_TO_ZERO` inserts `test edi, edi ; jz 2f ; mov eax, 3 ; out dx, eax ; 2:` (vCPU n > 0:
//! `YieldTo(0)`) into the loop before the `stop` check.
//!
//! `TOKEN_RING`:
//!
//! ```text
//!   Register ; mov rbx, gs:[40] ; mov r8d, [rbx+12] (nr_vcpus) ; xor ecx, ecx
//!   test edi, edi ; jz 3f                                # vCPU 0 starts with the token
//! 1: mov eax, 4 ; out dx, eax                             # Wait
//!   mov eax, [rbx+40] ; test eax, eax ; jnz 9f           # stop?
//! 3: inc rcx ; eax = (edi + 1) % r8d ; shl eax, 8 ; or eax, 5 ; out dx, eax ; jmp 1b  # Kick(next)
//! 9: Report(OPS, rcx) ; Report(WRITES, 0) ; Report(COUNTER, 0) ; Exit(0)
//! ```

mod common;

use common::{SPIN_UNTIL_STOP, TOKEN_RING, YIELD_TO_ZERO, kvm_available, tiny_elf};
use hypervisor_shim::vcpu::VcpuState;
use hypervisor_shim::workload::LockKind;
use hypervisor_shim::{PolicyKind, RunConfig, run};
use std::time::Duration;

fn cfg(vcpus: u32, pcpus: u32, policy: PolicyKind, ms: u64) -> RunConfig {
    let mut c = RunConfig::new(vcpus, pcpus, LockKind::Spin, policy);
    c.duration = Duration::from_millis(ms);
    c
}

#[test]
fn one_vcpu_boots_and_exits() {
    if !kvm_available("one_vcpu_boots_and_exits") {
        return;
    }
    let r = run(
        &cfg(1, 1, PolicyKind::Baseline, 50),
        &tiny_elf(SPIN_UNTIL_STOP),
        Duration::from_secs(10),
        &mut |_| {},
    )
    .unwrap();
    assert!(r.ok(), "{:?}", r.failures);
    assert!(
        r.total.ops > 1000,
        "the guest ran natively: {} iterations",
        r.total.ops
    );
    assert!(r.per_vcpu[0].stats.registered);
    assert_eq!(r.per_vcpu[0].state, VcpuState::Exited { code: 0 });
}

#[test]
fn over_committed_vcpus_are_preempted_round_robin() {
    if !kvm_available("over_committed_vcpus_are_preempted_round_robin") {
        return;
    }
    let r = run(
        &cfg(4, 2, PolicyKind::Baseline, 200),
        &tiny_elf(SPIN_UNTIL_STOP),
        Duration::from_secs(10),
        &mut |_| {},
    )
    .unwrap();
    assert!(r.ok(), "{:?}", r.failures);
    for v in &r.per_vcpu {
        assert!(v.stats.ops > 0, "vCPU {} never ran", v.vcpu);
        assert!(v.stats.preemptions > 0, "vCPU {} never preempted", v.vcpu);
        assert_eq!(v.stats.preemptions_in_cs, 0);
    }
}

fn go(c: &RunConfig, code: &[u8]) -> hypervisor_shim::RunReport {
    run(c, &tiny_elf(code), Duration::from_secs(10), &mut |_| {}).unwrap()
}

#[test]
fn directed_yields_are_served_under_ecs_only() {
    if !kvm_available("directed_yields_are_served_under_ecs_only") {
        return;
    }
    let r = go(&cfg(4, 1, PolicyKind::Ecs, 150), YIELD_TO_ZERO);
    assert!(r.ok(), "{:?}", r.failures);
    let v0 = &r.per_vcpu[0];
    assert!(
        v0.stats.directed_yields > 0,
        "vCPU 0 never received a directed yield"
    );
    assert_eq!(
        v0.slot.nr_directed_yields as u64, v0.stats.directed_yields,
        "copied to the slot"
    );
    assert!(r.per_vcpu[1..].iter().all(|v| v.stats.directed_yields == 0));
    // vCPU 0 gets the slot back at once every time it is preempted: it runs most of the time.
    let others: u64 = r.per_vcpu[1..].iter().map(|v| v.stats.run_ns).sum();
    assert!(
        v0.stats.run_ns > others,
        "vCPU 0 ran {} ns, the others {others} ns",
        v0.stats.run_ns
    );

    for policy in [PolicyKind::Baseline, PolicyKind::Ple] {
        let r = go(&cfg(4, 1, policy, 100), YIELD_TO_ZERO);
        assert!(r.ok(), "{:?}", r.failures);
        assert_eq!(r.total.directed_yields, 0, "{policy} has no directed yield");
        assert!(
            r.total.yields > 0,
            "{policy} serves YieldTo as a plain yield"
        );
    }
}

#[test]
fn wait_and_kick_pass_a_token_without_losing_wakeups() {
    if !kvm_available("wait_and_kick_pass_a_token_without_losing_wakeups") {
        return;
    }
    for (vcpus, pcpus) in [(1, 1), (3, 2), (6, 2)] {
        let r = go(&cfg(vcpus, pcpus, PolicyKind::Ecs, 100), TOKEN_RING);
        assert!(r.ok(), "{vcpus}/{pcpus}: {:?}", r.failures);
        // Every vCPU took the token many times: a lost wake-up would stop the ring.
        for v in &r.per_vcpu {
            assert!(
                v.stats.ops >= 10,
                "{vcpus}/{pcpus}: vCPU {} passed the token {} times",
                v.vcpu,
                v.stats.ops
            );
        }
        if vcpus > 1 {
            assert!(r.total.halts > 0);
        }
    }
}

#[test]
fn hints_are_published_under_ecs_and_not_under_baseline() {
    if !kvm_available("hints_are_published_under_ecs_and_not_under_baseline") {
        return;
    }
    let elf = tiny_elf(SPIN_UNTIL_STOP);
    let mut seen = Vec::new();
    // Snapshots before the stop request only (after it, vCPUs exit and the queue drains).
    let r = run(
        &cfg(6, 2, PolicyKind::Ecs, 300),
        &elf,
        Duration::from_millis(30),
        &mut |p| {
            if p.elapsed < Duration::from_millis(250) {
                seen.push(p.slots)
            }
        },
    )
    .unwrap();
    assert!(r.ok(), "{:?}", r.failures);
    assert!(!seen.is_empty());
    let mut max_preempted = 0;
    for slots in &seen {
        // 6 vCPUs on 2 slots: at most 2 run at once, so at least 4 are descheduled and
        // flagged. A snapshot reads the slots one by one, so up to two hand-overs during the
        // scan can make it see up to 4 running: at least 2 flags in any snapshot.
        let preempted = slots.iter().filter(|s| s.preempted == 1).count();
        assert!(
            preempted >= 2,
            "only {preempted} preempted flags: {slots:?}"
        );
        max_preempted = max_preempted.max(preempted);
        assert!(slots.iter().all(|s| s.overloaded == 1), "{slots:?}");
    }
    assert!(max_preempted >= 4, "never saw 4 preempted flags: {seen:?}");
    for v in &r.per_vcpu {
        assert_eq!(v.slot.nr_preempted as u64, v.stats.preemptions);
    }

    let mut seen = Vec::new();
    let r = run(
        &cfg(6, 2, PolicyKind::Baseline, 200),
        &elf,
        Duration::from_millis(30),
        &mut |p| seen.push(p.slots),
    )
    .unwrap();
    assert!(r.ok(), "{:?}", r.failures);
    assert!(r.total.preemptions > 0);
    for slots in seen
        .iter()
        .chain([&r.per_vcpu.iter().map(|v| v.slot).collect()])
    {
        assert!(
            slots
                .iter()
                .all(|s| s.preempted == 0 && s.overloaded == 0 && s.ext_granted == 0),
            "baseline published a hint: {slots:?}"
        );
    }
}

#[test]
fn unserved_exits_end_the_run_naming_vcpu_and_rip() {
    if !kvm_available("unserved_exits_end_the_run_naming_vcpu_and_rip") {
        return;
    }
    // `mov dx, 0x60 ; in eax, dx ; jmp $`: port input the shim does not emulate.
    let r = go(
        &cfg(2, 1, PolicyKind::Ecs, 100),
        &[0x66, 0xba, 0x60, 0x00, 0xed, 0xeb, 0xfe],
    );
    assert!(!r.ok());
    assert!(
        r.failures
            .iter()
            .any(|f| f.contains("unexpected port input from 0x60 at rip=0x40007c")),
        "{:?}",
        r.failures
    );
    // `hlt` at CPL 3 is a #GP; with no IDT that is a triple fault (KVM_EXIT_SHUTDOWN).
    let r = go(&cfg(2, 2, PolicyKind::Baseline, 100), &[0xf4]);
    assert!(!r.ok());
    assert!(
        r.failures
            .iter()
            .any(|f| f.contains("shut down") && f.contains("rip=0x400078")),
        "{:?}",
        r.failures
    );
    assert!(r.per_vcpu.iter().all(|v| v.state == VcpuState::Failed));
}
