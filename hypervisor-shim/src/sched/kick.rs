//! How the scheduler reaches a running vCPU: a small interface the vCPU side implements (as
//! Firecracker's vCPU handle kicks its thread with a signal), so the scheduler knows nothing of
//! signals or of the `kvm_run` page.

/// The vCPU side of a preemption request. `vcpu.rs` implements it with a real-time signal
/// whose handler sets the vCPU thread's `immediate_exit`.
pub trait Kick: Send + Sync {
    /// Called from any thread (the tick thread, the run's main thread): make the vCPU leave
    /// guest mode; its current or next `KVM_RUN` returns `EINTR`.
    fn kick(&self);
    /// Called only from the vCPU's own thread, with the scheduler lock held: set (`true`) or
    /// clear the exit request its next `KVM_RUN` sees. Under the lock, a kick made before is
    /// visible to the caller and a kick made after sets the request again, so none is lost.
    fn set_exit_request(&self, on: bool);
}
