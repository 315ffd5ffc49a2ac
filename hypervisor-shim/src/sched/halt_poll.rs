//! KVM's halt-polling (`halt_poll_ns`), which KVM applies to every VM: a vCPU that halts first
//! polls for a wake-up for up to its own `halt_poll_ns`, keeping its CPU, and only then
//! blocks. KVM polls only while nothing else is runnable on that CPU
//! (`single_task_running()`); here: while no vCPU waits for a pCPU. Each vCPU's window adapts
//! to its halts (KVM's `grow_halt_poll_ns`/`shrink_halt_poll_ns` with the x86 defaults).

/// KVM's `halt_poll_ns` on x86 (`KVM_HALT_POLL_NS_DEFAULT`): the largest window, ns.
pub const HALT_POLL_NS_MAX: u64 = 200_000;
/// `halt_poll_ns_grow`.
pub const GROW: u64 = 2;
/// `halt_poll_ns_grow_start`, ns.
pub const GROW_START: u64 = 10_000;
/// `halt_poll_ns_shrink` (halves).
pub const SHRINK: u64 = 2;

/// The vCPU's next window after a halt that lasted `halt_ns` (from the halt to the wake-up)
/// with window `cur`, as `kvm_vcpu_halt` adapts it: a wake-up inside the window keeps it, a
/// halt longer than the largest window shrinks it, a short one the window missed grows it.
pub fn next_window(cur: u64, halt_ns: u64) -> u64 {
    if halt_ns <= cur {
        cur
    } else if cur > 0 && halt_ns > HALT_POLL_NS_MAX {
        let v = cur / SHRINK;
        if v < GROW_START { 0 } else { v }
    } else if cur < HALT_POLL_NS_MAX && halt_ns < HALT_POLL_NS_MAX {
        cur.saturating_mul(GROW).clamp(GROW_START, HALT_POLL_NS_MAX)
    } else {
        cur
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_from_the_start_value_keeps_on_success_shrinks_on_long_halts() {
        assert_eq!(
            next_window(0, 5_000),
            10_000,
            "short halt, no window: grow start"
        );
        assert_eq!(next_window(10_000, 15_000), 20_000);
        assert_eq!(next_window(160_000, 190_000), 200_000, "capped");
        assert_eq!(
            next_window(20_000, 15_000),
            20_000,
            "woke while polling: kept"
        );
        assert_eq!(next_window(40_000, 1_000_000), 20_000, "long halt: halved");
        assert_eq!(
            next_window(15_000, 1_000_000),
            0,
            "below the start value: off"
        );
        assert_eq!(next_window(0, 1_000_000), 0);
        assert_eq!(next_window(200_000, 199_999), 200_000);
    }
}
