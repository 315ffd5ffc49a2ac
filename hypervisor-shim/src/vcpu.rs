//! The vCPU thread: runs the guest while the scheduler gives it a pCPU, maps every exit to
//! what happens next, and implements the scheduler's [`Kick`] with a signal.
//!
//! The vCPU states and the transitions between them belong to the scheduler
//! ([`crate::sched::state`]); this thread calls `KVM_RUN` only in `Running`. Every exit maps to
//! one of handled (resume), preempted (wait for a pCPU again), stopped, or an error naming the
//! vCPU and its RIP. Preemption is a signal ([`kick_signal`]) whose handler, installed without
//! `SA_RESTART`, sets the vCPU thread's own `immediate_exit`, so that `KVM_RUN` returns `EINTR`
//! (handled explicitly below) whether the signal lands inside or between two `KVM_RUN`s.

use crate::hypercall::decode_io;
use crate::sched::os::{pin_to, thread_cpu_ns};
use crate::sched::{After, Kick, Scheduler};
use core::cell::Cell;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicU8, Ordering};
use kvm_ioctls::{VcpuExit, VcpuFd};
use std::time::Duration;
use vmm_sys_util::signal::{Killable, register_signal_handler};

pub use crate::sched::VcpuState;

/// Errors of a vCPU: each names the vCPU and, where readable, its RIP.
#[derive(Debug, thiserror::Error)]
pub enum VcpuError {
    /// Triple fault: a guest fault with no IDT.
    #[error("vCPU {vcpu} shut down (triple fault: a guest exception with no IDT) at rip={rip:#x}")]
    Shutdown {
        /// vCPU.
        vcpu: u32,
        /// RIP.
        rip: u64,
    },
    /// VM entry failed.
    #[error("vCPU {vcpu}: VM entry failed (hardware reason {reason:#x}) at rip={rip:#x}")]
    FailEntry {
        /// vCPU.
        vcpu: u32,
        /// RIP.
        rip: u64,
        /// `hardware_entry_failure_reason`.
        reason: u64,
    },
    /// KVM internal error (e.g. an instruction it cannot emulate).
    #[error("vCPU {vcpu}: KVM internal error (suberror {suberror}) at rip={rip:#x}")]
    InternalError {
        /// vCPU.
        vcpu: u32,
        /// RIP.
        rip: u64,
        /// `internal.suberror`.
        suberror: u32,
    },
    /// An access to guest-physical memory outside RAM.
    #[error("vCPU {vcpu}: MMIO {kind} at {gpa:#x} (no device there) at rip={rip:#x}")]
    Mmio {
        /// vCPU.
        vcpu: u32,
        /// RIP.
        rip: u64,
        /// Address.
        gpa: u64,
        /// "read" or "write".
        kind: &'static str,
    },
    /// An `in` instruction from a port other than the hypercall port.
    #[error("vCPU {vcpu}: unexpected port input from {port:#x} at rip={rip:#x}")]
    UnexpectedIo {
        /// vCPU.
        vcpu: u32,
        /// RIP.
        rip: u64,
        /// Port.
        port: u16,
    },
    /// Any other exit reason.
    #[error("vCPU {vcpu}: unexpected exit {exit} at rip={rip:#x}")]
    UnexpectedExit {
        /// vCPU.
        vcpu: u32,
        /// RIP.
        rip: u64,
        /// The exit, formatted.
        exit: String,
    },
    /// `KVM_RUN` itself failed (other than `EINTR`).
    #[error("vCPU {vcpu}: KVM_RUN failed: {source}")]
    Run {
        /// vCPU.
        vcpu: u32,
        /// The error.
        source: kvm_ioctls::Error,
    },
}

thread_local! {
    /// The calling vCPU thread's `kvm_run.immediate_exit` byte, registered by [`vcpu_thread`]
    /// for the kick signal's handler (null on every other thread). Const-initialised and
    /// without a destructor, so reading it is a plain TLS load, safe in a signal handler.
    static IMMEDIATE_EXIT: Cell<*mut u8> = const { Cell::new(core::ptr::null_mut()) };
}

/// Sets (`true`) or clears the calling vCPU thread's `immediate_exit` byte; a no-op on a thread
/// that runs no vCPU. Called by the vCPU thread itself (the scheduler calls it from
/// `on_eintr` and `wait_for_pcpu` through [`SignalKick`], which only vCPU threads call) and by the kick signal's
/// handler, which runs on that same thread: no other thread touches the byte.
pub(crate) fn set_immediate_exit(on: bool) {
    let _ = IMMEDIATE_EXIT.try_with(|p| {
        let p = p.get();
        if !p.is_null() {
            // SAFETY: a non-null pointer was registered by this thread (`ImmediateExitReg`) and
            // points at its vCPU's `immediate_exit`, mapped for as long as the registration
            // lives. Only this thread accesses the byte from Rust (its own code or its signal
            // handler), always through this atomic, so there is no data race; the kernel reads
            // it on KVM_RUN entry. kvm-ioctls' `run`/`get_kvm_run` form `&mut kvm_run`s that
            // cover the byte, but never read or write it through them (only the exit reason,
            // the exit union and the I/O data), so no value the compiler could assume for it
            // exists; the kernel writes that shared page behind Rust's back in any case. This is
            // Firecracker's pattern (its handler writes the byte the same way); the remaining
            // formal gap, those wider `&mut`s, is kvm-ioctls' API and is accepted here.
            unsafe { AtomicU8::from_ptr(p) }.store(u8::from(on), Ordering::SeqCst);
        }
    });
}

/// While alive, the calling thread's `immediate_exit` byte is registered for the kick signal's
/// handler; dropping it (also on unwinding) unregisters it.
struct ImmediateExitReg(PhantomData<*mut u8>);

impl ImmediateExitReg {
    /// Registers `byte` as the calling thread's `immediate_exit` and clears it.
    ///
    /// # Safety
    /// `byte` must stay valid for reads and writes, and be accessed by Rust code only through
    /// [`set_immediate_exit`], for as long as the returned value lives.
    unsafe fn new(byte: *mut u8) -> Self {
        IMMEDIATE_EXIT.with(|p| p.set(byte));
        set_immediate_exit(false);
        ImmediateExitReg(PhantomData)
    }
}

impl Drop for ImmediateExitReg {
    fn drop(&mut self) {
        let _ = IMMEDIATE_EXIT.try_with(|p| p.set(core::ptr::null_mut()));
    }
}

/// The signal the scheduler sends a vCPU thread to preempt it (`SIGRTMIN`, as Firecracker's
/// vCPU kick: real-time signals are rarely used by other code, unlike SIGUSR1).
pub fn kick_signal() -> libc::c_int {
    vmm_sys_util::signal::SIGRTMIN()
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // Runs on the vCPU thread the scheduler signalled: make its next (or current) KVM_RUN
    // return EINTR. The signal's other job, taking a vCPU out of guest mode, needs no code.
    set_immediate_exit(true);
}

/// The scheduler's [`Kick`] of one vCPU thread: the kick signal sent to it.
#[derive(Debug)]
struct SignalKick(libc::pthread_t);

// SAFETY: the handle is the live thread of a vCPU (made by that thread itself in
// `vcpu_thread`), which the scheduler kicks only while the run lasts: vCPU threads are joined
// after the scheduler's last use.
unsafe impl Killable for SignalKick {
    fn pthread_handle(&self) -> libc::pthread_t {
        self.0
    }
}

impl Kick for SignalKick {
    fn kick(&self) {
        // The only error is an invalid signal number, which kick_signal() is not; the kick
        // signal's handler is installed (`install_signal`, before any vCPU thread starts).
        let _ = self.kill(kick_signal());
    }

    fn set_exit_request(&self, on: bool) {
        set_immediate_exit(on);
    }
}

/// Why the kick signal's handler could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    /// `sigaction` failed.
    #[error("cannot install the handler of signal {signal} (the vCPU kick): {source}")]
    Install {
        /// The signal.
        signal: libc::c_int,
        /// The OS error.
        source: std::io::Error,
    },
    /// Other code in the process already handles the signal; replacing its handler would break
    /// it, and leaving it would break preemption.
    #[error(
        "signal {signal} (SIGRTMIN, the vCPU kick) already has another handler in this process"
    )]
    InUse {
        /// The signal.
        signal: libc::c_int,
    },
}

/// Installs the kick signal's handler (vmm-sys-util's `register_signal_handler`: no
/// `SA_RESTART`, every signal blocked while it runs); idempotent. Refuses to replace another
/// handler of the signal.
pub fn install_signal() -> Result<(), SignalError> {
    let signal = kick_signal();
    let ours = on_kick as *const () as libc::sighandler_t;
    // SAFETY: a zeroed sigaction is a valid out-parameter; a null `act` only queries.
    let mut old: libc::sigaction = unsafe { core::mem::zeroed() };
    // SAFETY: valid signal number and pointers.
    if unsafe { libc::sigaction(signal, core::ptr::null(), &mut old) } != 0 {
        let source = std::io::Error::last_os_error();
        return Err(SignalError::Install { signal, source });
    }
    if old.sa_sigaction == ours {
        return Ok(());
    }
    if old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != libc::SIG_IGN {
        return Err(SignalError::InUse { signal });
    }
    // The handler is async-signal-safe: a TLS load and an atomic byte store.
    register_signal_handler(signal, on_kick).map_err(|e| SignalError::Install {
        signal,
        source: std::io::Error::from_raw_os_error(e.errno()),
    })
}

/// Exit data copied out of the kvm_run page (so the fd is free to read registers).
enum Exit {
    Out {
        port: u16,
        data: [u8; 8],
        len: usize,
    },
    In {
        port: u16,
    },
    Intr,
    Shutdown,
    FailEntry(u64),
    Internal,
    Mmio {
        gpa: u64,
        write: bool,
    },
    Other(String),
    RunError(kvm_ioctls::Error),
}

fn rip(fd: &VcpuFd) -> Option<u64> {
    fd.get_regs().ok().map(|r| r.rip)
}

/// Runs the guest once and maps the exit.
fn run_once(id: u32, fd: &mut VcpuFd, sched: &Scheduler<'_>) -> Result<After, VcpuError> {
    let exit = match fd.run() {
        Ok(VcpuExit::IoOut(port, bytes)) => {
            let mut data = [0u8; 8];
            let len = bytes.len().min(8);
            data[..len].copy_from_slice(&bytes[..len]);
            // Anything but 4 bytes is answered BadAccess; 8 stands for "8 or more".
            Exit::Out { port, data, len }
        }
        Ok(VcpuExit::IoIn(port, bytes)) => {
            bytes.fill(0xff);
            Exit::In { port }
        }
        Ok(VcpuExit::Shutdown) => Exit::Shutdown,
        Ok(VcpuExit::FailEntry(reason, _cpu)) => Exit::FailEntry(reason),
        Ok(VcpuExit::InternalError) => Exit::Internal,
        Ok(VcpuExit::MmioRead(gpa, _)) => Exit::Mmio { gpa, write: false },
        Ok(VcpuExit::MmioWrite(gpa, _)) => Exit::Mmio { gpa, write: true },
        Ok(other) => Exit::Other(format!("{other:?}")),
        // EINTR: the scheduler's signal or immediate_exit (or a stray signal).
        Err(e) if e.errno() == libc::EINTR => Exit::Intr,
        Err(e) => Exit::RunError(e),
    };
    let rip = |fd: &VcpuFd| rip(fd).unwrap_or(u64::MAX);
    match exit {
        Exit::Out { port, data, len } => {
            let slot = sched.hint_slot(id);
            // vCPU arguments name a vCPU of this VM: bounded by its size.
            match decode_io(port, &data[..len], sched.vm_nr_vcpus(id), || {
                slot.hc_arg.load(Ordering::Acquire)
            }) {
                Ok(req) => Ok(sched.hypercall(id, req)),
                Err(status) => {
                    sched.bad_hypercall(id, status);
                    Ok(After::Resume)
                }
            }
        }
        Exit::Intr => Ok(sched.on_eintr(id)),
        // An `in` from the hypercall port is a malformed hypercall (the guest reads all-ones and
        // a BadAccess status); from any other port it is I/O the shim does not emulate.
        Exit::In { port } if port == ecs_sys::hypercall::PORT => {
            sched.bad_hypercall(id, ecs_sys::hypercall::Status::BadAccess);
            Ok(After::Resume)
        }
        Exit::In { port } => Err(VcpuError::UnexpectedIo {
            vcpu: id,
            rip: rip(fd),
            port,
        }),
        Exit::Shutdown => Err(VcpuError::Shutdown {
            vcpu: id,
            rip: rip(fd),
        }),
        Exit::FailEntry(reason) => Err(VcpuError::FailEntry {
            vcpu: id,
            rip: rip(fd),
            reason,
        }),
        Exit::Internal => {
            let run = fd.get_kvm_run();
            // SAFETY: the exit reason was KVM_EXIT_INTERNAL_ERROR, for which the kernel fills the
            // `internal` member of the union; it is plain integers.
            let suberror = unsafe { run.__bindgen_anon_1.internal.suberror };
            Err(VcpuError::InternalError {
                vcpu: id,
                rip: rip(fd),
                suberror,
            })
        }
        Exit::Mmio { gpa, write } => Err(VcpuError::Mmio {
            vcpu: id,
            rip: rip(fd),
            gpa,
            kind: if write { "write" } else { "read" },
        }),
        Exit::Other(exit) => Err(VcpuError::UnexpectedExit {
            vcpu: id,
            rip: rip(fd),
            exit,
        }),
        Exit::RunError(source) => Err(VcpuError::Run { vcpu: id, source }),
    }
}

/// The body of vCPU `id`'s thread: take a pCPU, run, serve exits, until stopped.
///
/// `cpus` is the pinning map (empty = no pinning): the thread holding pCPU k runs on
/// `cpus[k % cpus.len()]`.
pub fn vcpu_thread(
    id: u32,
    fd: &mut VcpuFd,
    sched: &Scheduler<'_>,
    cpus: &[usize],
    grace: Duration,
) {
    let run: *mut kvm_bindings::kvm_run = fd.get_kvm_run();
    // SAFETY: `run` points at the live, mapped kvm_run; `addr_of_mut!` forms no reference.
    let byte = unsafe { core::ptr::addr_of_mut!((*run).immediate_exit) };
    // SAFETY: the mapping lives as long as `fd`, which outlives this function and so the
    // registration; nothing else in the shim names `immediate_exit`.
    let _imm = unsafe { ImmediateExitReg::new(byte) };
    // SAFETY: pthread_self has no preconditions.
    sched.register_thread(id, Box::new(SignalKick(unsafe { libc::pthread_self() })));
    let mut pinned: Option<usize> = None;
    let end = 'outer: loop {
        let pcpu = match sched.wait_for_pcpu(id) {
            Ok(pcpu) => pcpu,
            Err(after) => break 'outer after,
        };
        if !cpus.is_empty() {
            let cpu = cpus[pcpu as usize % cpus.len()];
            if pinned != Some(cpu) {
                pin_to(cpu);
                pinned = Some(cpu);
            }
        }
        loop {
            let after = match run_once(id, fd, sched) {
                Ok(After::Poll { until }) => Ok(sched.poll(id, until)),
                other => other,
            };
            match after {
                Ok(After::Resume) => continue,
                Ok(After::Descheduled) => continue 'outer,
                Ok(after) => break 'outer after,
                Err(e) => {
                    sched.fail(id, &e.to_string());
                    break 'outer After::Stopped;
                }
            }
        }
    };
    if end == After::ForceStop {
        sched.force_stopped(id, rip(fd), grace);
    }
    sched.record_cpu(id, thread_cpu_ns());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raise_kick() {
        // SAFETY: pthread_self is the calling thread; the kick handler is installed.
        let rc = unsafe { libc::pthread_kill(libc::pthread_self(), kick_signal()) };
        assert_eq!(rc, 0);
    }

    // One test, so that no other test of this binary sees the signal's disposition change.
    #[test]
    fn the_kick_handler_sets_only_the_registered_byte_and_a_foreign_handler_is_refused() {
        install_signal().expect("installed");
        install_signal().expect("idempotent");
        // An unregistered thread: the handler does nothing.
        raise_kick();
        let mut byte = 7u8;
        {
            // SAFETY: `byte` outlives the registration and is read below only after it ends.
            let _reg = unsafe { ImmediateExitReg::new(&mut byte) };
            raise_kick(); // delivered before pthread_kill returns (a signal to oneself)
        }
        assert_eq!(byte, 1, "the handler set immediate_exit");
        byte = 0;
        raise_kick();
        assert_eq!(byte, 0, "unregistered when the registration ended");

        extern "C" fn foreign(_: libc::c_int) {}
        let set = |h: libc::sighandler_t| {
            // SAFETY: a zeroed sigaction with a valid handler (a no-op or SIG_DFL).
            unsafe {
                let mut sa: libc::sigaction = core::mem::zeroed();
                sa.sa_sigaction = h;
                libc::sigemptyset(&mut sa.sa_mask);
                assert_eq!(
                    libc::sigaction(kick_signal(), &sa, core::ptr::null_mut()),
                    0
                );
            }
        };
        set(foreign as *const () as libc::sighandler_t);
        let err = install_signal().expect_err("another handler is not replaced");
        assert!(matches!(err, SignalError::InUse { .. }), "{err}");
        assert!(err.to_string().contains("already has another handler"));
        set(libc::SIG_DFL);
        install_signal().expect("installed over the default action");
    }
}
