//! What the hint layer sees, and what changes inside a VM.
//!
//! Run with `cargo run --example hints`. On bare metal (the default `native` backend) the
//! critical-section depth is tracked per thread and the host's hints are constants: nobody is
//! ever preempted or overloaded. Inside an `ecs-shim` VM (the guest backend, `--cfg ecs_guest`)
//! the same calls read the vCPU's shared slot, which the host keeps current. On Linux x86_64 the
//! `linux-rseq` backend says whether this thread gets the kernel's rseq time-slice extension, and
//! if not why (try `ECS_LOCKS_RSEQ=0` or `GLIBC_TUNABLES=glibc.pthread.rseq=0`).

use ecs_locks::{McsMutex, SpinMutex, ecs_sys};

fn show(when: &str) {
    println!(
        "  {when:<38} cs_depth={} vcpu={} preempted(vcpu 0)={} overloaded={}",
        ecs_sys::cs_depth(),
        ecs_sys::vcpu_id(),
        ecs_sys::vcpu_preempted(0),
        ecs_sys::pcpu_overloaded(),
    );
}

fn main() {
    println!(
        "backend: {} (live hints: {})",
        ecs_sys::BACKEND,
        ecs_sys::LIVE_HINTS
    );
    // On Linux x86_64: whether this thread's spin-family sections request rseq time-slice
    // extensions from the kernel, or why not (kernel, libc registration, opt-out).
    println!("this thread: {}", ecs_sys::thread_backend());
    let grants = ecs_sys::backend::linux::stats();
    println!(
        "rseq extensions so far: {} granted, {} yielded",
        grants.grants, grants.yields
    );
    let a = SpinMutex::new(1);
    let b = McsMutex::new(2);
    show("outside any lock");
    {
        let _ga = a.lock();
        show("holding a SpinMutex");
        {
            let _gb = b.lock();
            show("holding a SpinMutex and an McsMutex");
        }
        show("after releasing the McsMutex");
    }
    show("after releasing both");
    assert_eq!(ecs_sys::cs_depth(), 0, "every section entered must be left");

    println!();
    println!(
        "Inside an ecs-shim VM (`--cfg ecs_guest`), the same calls read this vCPU's hint slot:"
    );
    println!(
        "  - cs_depth is the slot's counter, which the host reads when a time slice ends: while it"
    );
    println!(
        "    is non-zero the `ecs` policy defers the preemption (bounded) and sets ext_granted, and"
    );
    println!("    leaving the outermost section then yields the pCPU back at once;");
    println!(
        "  - preempted(n) is 1 while vCPU n is descheduled: a waiter whose lock holder is not running"
    );
    println!("    stops spinning and yields its pCPU to the holder (directed yield);");
    println!(
        "  - overloaded is 1 while runnable vCPUs wait for a pCPU: blocking locks park instead of"
    );
    println!("    spinning then.");
    println!("See `ecs-shim compare` for what that does to throughput.");
}
