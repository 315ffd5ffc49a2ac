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

mod common;

use common::{SPIN_UNTIL_STOP, kvm_available, tiny_elf};
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
