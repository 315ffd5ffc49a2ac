//! A panic in a host thread (a host bug) ends the run with a message naming the thread,
//! instead of hanging it. A test binary of its own: the fault-injection switch is process-wide.

mod common;

use common::{kvm_available, run_with_watchdog};
use hypervisor_shim::run::test_hooks::{PANIC_IN, TICK, VCPU0};
use hypervisor_shim::vcpu::VcpuState;
use hypervisor_shim::workload::{LockKind, Misbehave};
use hypervisor_shim::{PolicyKind, RunConfig};
use std::sync::atomic::Ordering;
use std::time::Duration;

#[test]
fn a_panicking_vcpu_or_tick_thread_ends_the_run_with_a_message() {
    if !kvm_available("a_panicking_vcpu_or_tick_thread_ends_the_run_with_a_message") {
        return;
    }
    // vCPU 0's thread dies before it ever runs, holding a slot: without the guard its state
    // stays `Running` and the run waits for it forever.
    PANIC_IN.store(VCPU0, Ordering::Relaxed);
    let mut c = RunConfig::new(3, 2, LockKind::Spin, PolicyKind::Ecs);
    c.duration = Duration::from_millis(100);
    let r = run_with_watchdog(&c, Duration::from_secs(30)).expect("run starts");
    assert!(!r.ok());
    assert_eq!(r.per_vcpu[0].state, VcpuState::Failed);
    assert!(
        r.failures
            .iter()
            .any(|f| f.starts_with("vCPU 0 thread panicked: injected panic")),
        "{:?}",
        r.failures
    );
    // The others were told to stop and exited.
    for v in &r.per_vcpu[1..] {
        assert!(
            matches!(v.state, VcpuState::Exited { .. }),
            "vCPU {}: {:?}",
            v.vcpu,
            v.state
        );
    }

    // The tick thread dies: without the guard nothing ever stops a guest that hangs (the run
    // is an hour long). With it, every vCPU is force-stopped at once.
    PANIC_IN.store(TICK, Ordering::Relaxed);
    let mut c = RunConfig::new(3, 2, LockKind::Spin, PolicyKind::Baseline);
    c.duration = Duration::from_secs(3600);
    c.misbehave = Misbehave::Hang;
    let r = run_with_watchdog(&c, Duration::from_secs(30)).expect("run starts");
    PANIC_IN.store(0, Ordering::Relaxed);
    assert!(!r.ok());
    assert!(
        r.failures
            .iter()
            .any(|f| f.starts_with("scheduler tick thread panicked: injected panic")),
        "{:?}",
        r.failures
    );
    for v in &r.per_vcpu {
        assert!(v.state.is_terminal(), "vCPU {}: {:?}", v.vcpu, v.state);
    }
    assert_eq!(r.per_vcpu[0].state, VcpuState::ForceStopped);
}
