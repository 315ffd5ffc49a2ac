//! The vCPU thread: an explicit state machine driven by the scheduler.
//!
//! ```text
//!            grant                 preempt / yield              exit hypercall
//! Runnable ---------> Running ---------------------> Runnable   Running -----> Exited
//!    ^                   |  wait (no kick pending)               fault / bad exit -> Failed
//!    |      kick         v                                       grace expired   -> ForceStopped
//!    +-------------- Halted
//! ```
//!
//! The thread calls `KVM_RUN` only in `Running`. Every exit maps to one of handled (resume),
//! preempted (wait for a slot again), stopped, or an error naming the vCPU and its RIP.
//! Preemption is `immediate_exit` plus SIGUSR1, whose handler is installed without
//! `SA_RESTART` so that `KVM_RUN` returns `EINTR` (handled explicitly below).

use crate::hypercall::decode_io;
use crate::sched::{After, Scheduler};
use core::marker::PhantomData;
use core::sync::atomic::{AtomicU8, Ordering};
use kvm_ioctls::{VcpuExit, VcpuFd};
use std::sync::Once;
use std::time::Duration;

/// A vCPU's scheduling state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum VcpuState {
    /// Waiting in the run queue for a pCPU slot (preempted).
    Runnable,
    /// Holding pCPU slot `slot`; the thread may be inside `KVM_RUN`.
    Running {
        /// The slot.
        slot: u32,
    },
    /// Halted in `Wait` until kicked.
    Halted,
    /// The guest exited with `code`.
    Exited {
        /// Exit code.
        code: u32,
    },
    /// The vCPU faulted or exited in a way the shim does not serve.
    Failed,
    /// The host stopped it after the grace period.
    ForceStopped,
}

impl VcpuState {
    /// Whether the vCPU is done.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            VcpuState::Exited { .. } | VcpuState::Failed | VcpuState::ForceStopped
        )
    }
}

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

/// A handle on one vCPU's `kvm_run.immediate_exit` byte, usable from the scheduler thread.
#[derive(Debug)]
pub struct ImmediateExit<'a> {
    byte: *const AtomicU8,
    _vcpu: PhantomData<&'a VcpuFd>,
}

// SAFETY: the pointer targets a byte of the vCPU's kvm_run page, a shared mapping that lives as
// long as the VcpuFd (`'a`); it is only accessed atomically, from any thread (the kernel reads
// it on KVM_RUN entry, as it does for Firecracker's signal-handler write of the same byte).
unsafe impl Send for ImmediateExit<'_> {}
// SAFETY: as for Send.
unsafe impl Sync for ImmediateExit<'_> {}

impl<'a> ImmediateExit<'a> {
    /// The handle for `fd`'s kvm_run page.
    ///
    /// # Safety
    /// `fd` (and so its kvm_run mapping) must outlive the handle (`'a`): the handle keeps a raw
    /// pointer into the mapping, not a borrow, so that the vCPU thread can go on using `fd`.
    pub unsafe fn new(fd: &mut VcpuFd) -> Self {
        let run: *mut kvm_bindings::kvm_run = fd.get_kvm_run();
        // SAFETY: `run` points at the live, mapped kvm_run; `addr_of_mut!` forms no reference;
        // the caller keeps the mapping alive for `'a`.
        let byte = unsafe { core::ptr::addr_of_mut!((*run).immediate_exit) };
        ImmediateExit {
            byte: byte.cast::<AtomicU8>().cast_const(),
            _vcpu: PhantomData,
        }
    }

    fn atomic(&self) -> &AtomicU8 {
        // SAFETY: see the Send/Sync impls: the byte is mapped for `'a`, `AtomicU8` has the
        // alignment and size of `u8`, and every access to it goes through this atomic.
        unsafe { &*self.byte }
    }

    /// Makes the next (or current) `KVM_RUN` return `EINTR` before entering the guest.
    pub fn set(&self) {
        self.atomic().store(1, Ordering::SeqCst);
    }

    /// Clears the flag (by the vCPU thread, once the preemption is acknowledged).
    pub fn clear(&self) {
        self.atomic().store(0, Ordering::SeqCst);
    }
}

extern "C" fn on_sigusr1(_: libc::c_int) {
    // Nothing to do: the signal's only job is to make KVM_RUN return EINTR.
}

/// Installs the SIGUSR1 handler once per process, without `SA_RESTART`.
pub fn install_signal() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: a zeroed sigaction is a valid starting value; the handler is an
        // async-signal-safe no-op; sigaction is called with valid pointers.
        unsafe {
            let mut sa: libc::sigaction = core::mem::zeroed();
            sa.sa_sigaction = on_sigusr1 as *const () as usize;
            sa.sa_flags = 0; // no SA_RESTART: KVM_RUN must return EINTR
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(libc::SIGUSR1, &sa, core::ptr::null_mut());
        }
    });
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
            let slot = sched.area().hint_slot(id);
            match decode_io(port, &data[..len], sched.nr_vcpus(), || {
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

/// Pins the calling thread to `cpu`.
fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET writes inside it (cpu < CPU_SETSIZE is
    // checked by the caller's choice from sched_getaffinity); pid 0 is the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = core::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// The CPUs this process may run on (for pinning slot k to one of them).
pub fn available_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is a valid out-parameter for sched_getaffinity; CPU_ISSET
    // reads inside it.
    unsafe {
        let mut set: libc::cpu_set_t = core::mem::zeroed();
        if libc::sched_getaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// The body of vCPU `id`'s thread: take a slot, run, serve exits, until stopped.
///
/// `cpus` is the pinning map (empty = no pinning): the thread holding slot k runs on
/// `cpus[k % cpus.len()]`.
pub fn vcpu_thread(
    id: u32,
    fd: &mut VcpuFd,
    sched: &Scheduler<'_>,
    cpus: &[usize],
    grace: Duration,
) {
    sched.register_thread(id);
    let mut pinned: Option<usize> = None;
    let end = 'outer: loop {
        let slot = match sched.wait_for_slot(id) {
            Ok(slot) => slot,
            Err(after) => break 'outer after,
        };
        if !cpus.is_empty() {
            let cpu = cpus[slot as usize % cpus.len()];
            if pinned != Some(cpu) {
                pin_to(cpu);
                pinned = Some(cpu);
            }
        }
        loop {
            match run_once(id, fd, sched) {
                Ok(After::Resume) => continue,
                Ok(After::Descheduled) => continue 'outer,
                Ok(after) => break 'outer after,
                Err(e) => {
                    sched.fail(id, &e);
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

/// CPU time the calling thread has used, ns.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: CLOCK_THREAD_CPUTIME_ID is always valid for the calling thread; `ts` is a valid
    // out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
