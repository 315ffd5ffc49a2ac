//! A freestanding `no_std` Linux binary (no libc) that uses every lock `ecs-locks` offers with
//! `default-features = false` and no backend cfg, then exits through the `exit` system call with
//! status 0, or 1 when a check fails. `scripts/test-all.sh` builds and runs it: the crate must
//! keep linking without `std`, and the locks must keep working there (the blocking ones spin in
//! the portable wait queue: nothing to sleep on without an OS interface).
#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

#[cfg(ecs_guest)]
compile_error!("this check is for the build without a backend cfg");

// The C memory functions the compiler may call (the guest program's, shared).
#[allow(dead_code)]
#[path = "../../hypervisor-shim/guest/src/mem.rs"]
mod mem;

use core::arch::asm;
use ecs_locks::{
    Condvar, FairMutex, Mutex, Once, RecursiveRwLock, RwLock, RwLockUpgradableReadGuard, SpinMutex,
    SpinRwLock, TicketMutex,
};

static MUTEX: Mutex<u32> = Mutex::new(0);
static FAIR: FairMutex<u32> = FairMutex::new(0);
static RW: RwLock<u32> = RwLock::new(0);
static RECURSIVE: RecursiveRwLock<u32> = RecursiveRwLock::new(0);
static SPIN: SpinMutex<u32> = SpinMutex::new(0);
static TICKET: TicketMutex<u32> = TicketMutex::new(0);
static SPIN_RW: SpinRwLock<u32> = SpinRwLock::new(0);
static ONCE: Once = Once::new();
static CONDVAR: Condvar = Condvar::new();

/// Every lock once, single-threaded (there is no thread API here): `true` if all behaved.
fn exercise() -> bool {
    *MUTEX.lock() += 1;
    let ok_mutex = MUTEX.try_lock().is_some_and(|g| *g == 1);
    *FAIR.lock() += 2;
    {
        let up = RW.upgradable_read();
        let r = RW.read();
        drop(r);
        *RwLockUpgradableReadGuard::upgrade(up) += 3;
    }
    let ok_rw = *RW.read() == 3 && RW.try_write().is_some();
    let ok_recursive = {
        let a = RECURSIVE.read();
        let b = RECURSIVE.read();
        *a == *b && RECURSIVE.try_write().is_none()
    };
    *SPIN.lock() += 4;
    *TICKET.lock() += 5;
    *SPIN_RW.write() += 6;
    let mut runs = 0;
    ONCE.call_once(|| runs += 1);
    ONCE.call_once(|| runs += 1);
    // Nobody waits: notify wakes no one.
    let ok_condvar = !CONDVAR.notify_one() && CONDVAR.notify_all() == 0;
    ok_mutex
        && *FAIR.lock() == 2
        && ok_rw
        && ok_recursive
        && *SPIN.lock() == 4
        && *TICKET.lock() == 5
        && *SPIN_RW.read() == 6
        && runs == 1
        && ok_condvar
}

/// Ends the process with `status` (Linux x86_64 `exit_group`).
fn exit(status: i32) -> ! {
    // SAFETY: `exit_group` (231) takes one argument and does not return.
    unsafe {
        asm!("syscall", in("rax") 231, in("rdi") status, options(noreturn, nostack));
    }
}

/// The ELF entry point (no start files). The kernel enters with `rsp` 16-byte aligned, not
/// as after a `call`: align it and call into Rust.
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub extern "C" fn _start() -> ! {
    core::arch::naked_asm!("and rsp, -16", "call {main}", "ud2", main = sym main);
}

/// Runs the checks and exits with their verdict.
extern "C" fn main() -> ! {
    exit(if exercise() { 0 } else { 1 })
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    exit(2)
}
