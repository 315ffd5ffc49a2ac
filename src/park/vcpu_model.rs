//! A loom model of the guest's WAIT/KICK hypercalls, so that loom checks the queue the
//! guest runs: each loom thread is a vCPU whose pending-kick flag is a loom `Notify` that
//! outlives any park (an unparker kicks after its last access to the waiter's record).
//! KICK is `notify` (sets the pending flag); WAIT is `wait`, which returns at once and
//! clears the flag when a kick is pending (a kick that arrived before the halt is not lost,
//! a stale one makes WAIT return early), else blocks until a kick. loom's `Notify` may also
//! return spuriously, which models WAIT returning for an interrupt. A lost wake-up leaves a
//! parker blocked forever, which loom reports as a deadlock. Not modelled: the host-side
//! halt/wake machinery.

use loom::sync::{Arc, Notify};

/// A vCPU's pending-kick flag.
pub(crate) type Vcpu = Arc<Notify>;

loom::thread_local! {
    static KICK_PENDING: Vcpu = Arc::new(Notify::new());
}

/// The calling thread's vCPU (`ecs_sys::vcpu_id`).
pub(crate) fn current() -> Vcpu {
    KICK_PENDING.with(Arc::clone)
}

/// `ecs_sys::wait()` on the calling thread's vCPU.
pub(crate) fn wait() {
    KICK_PENDING.with(|k| k.wait());
}

/// `ecs_sys::kick(vcpu)`.
pub(crate) fn kick(vcpu: &Vcpu) {
    vcpu.notify();
}
