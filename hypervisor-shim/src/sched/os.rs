//! The OS plumbing of the scheduler's threads: thread CPU-time clocks, pinning a thread to a
//! host CPU, and a real-time priority for the tick thread.

/// A thread's CPU-time clock (`pthread_getcpuclockid`), readable from any thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadClock(libc::clockid_t);

impl ThreadClock {
    /// The calling thread's CPU-time clock, if the OS provides one.
    pub fn current() -> Option<Self> {
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() };
        let mut clock: libc::clockid_t = 0;
        // SAFETY: `me` is the calling (live) thread; `clock` is a valid out-pointer.
        let ok = unsafe { libc::pthread_getcpuclockid(me, &mut clock) } == 0;
        ok.then_some(ThreadClock(clock))
    }

    /// CPU time the thread has used, ns; `None` if the clock cannot be read (the thread has
    /// ended: `clock_gettime` then fails with `EINVAL`, it does not misbehave).
    pub fn cpu_ns(self) -> Option<u64> {
        read_clock(self.0)
    }
}

fn read_clock(clock: libc::clockid_t) -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; an invalid clock id is reported as an error.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return None;
    }
    Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

/// The time-stamp counter (the clock of guest cycle reports and of wake-up latencies).
pub fn rdtsc() -> u64 {
    // SAFETY: `rdtsc` has no memory effect and needs no CPU feature beyond x86_64.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// CPU time the calling thread has used, ns.
pub fn thread_cpu_ns() -> u64 {
    read_clock(libc::CLOCK_THREAD_CPUTIME_ID).unwrap_or(0)
}

/// CPU time this process has used, every thread (live or ended), ns.
pub fn process_cpu_ns() -> u64 {
    read_clock(libc::CLOCK_PROCESS_CPUTIME_ID).unwrap_or(0)
}

/// Pins the calling thread to host CPU `cpu` (best effort: a failure leaves it unpinned).
pub fn pin_to(cpu: usize) {
    if cpu >= libc::CPU_SETSIZE as usize {
        return;
    }
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET writes inside it (`cpu < CPU_SETSIZE` is
    // checked above); pid 0 is the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = core::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// The host CPUs this process may run on (for pinning pCPU k to one of them).
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

/// Makes the calling (tick) thread SCHED_FIFO, if permitted, so that its timer fires on time
/// while vCPU threads and other work keep the host CPUs busy (it is a hypervisor's timer
/// interrupt). It sleeps between ticks, so it cannot monopolise a CPU. Without the privilege
/// it stays a normal thread; returns whether it worked.
pub fn realtime_priority() -> bool {
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: pthread_self is the calling thread; `param` is a valid sched_param.
    unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thread_clock_advances_with_work() {
        let clock = ThreadClock::current().expect("Linux has thread CPU clocks");
        let a = clock.cpu_ns().expect("readable");
        let mut x = 0u64;
        while clock.cpu_ns().unwrap() < a + 1_000_000 {
            x = core::hint::black_box(x.wrapping_add(1));
        }
        assert!(thread_cpu_ns() >= a + 1_000_000);
        assert!(process_cpu_ns() >= thread_cpu_ns());
        assert!(!available_cpus().is_empty());
    }
}
