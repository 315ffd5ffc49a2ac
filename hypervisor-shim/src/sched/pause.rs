//! KVM's pause-loop exiting, in the guest's unit: spins of its `Backoff` (one PAUSE each).
//!
//! KVM (x86, VMX) traps a PAUSE loop after `ple_window` cycles (default 4096) of PAUSEs no more
//! than `ple_gap` cycles (default 128) apart; each exit grows the vCPU's window x2
//! (`ple_window_grow`), and scheduling the vCPU in resets it (`ple_window_shrink` 0). The guest
//! counts spins, not cycles, so the window is converted with the cost of one PAUSE measured on
//! this machine when the shim starts ([`cycles_per_pause`]): the conversion cannot be tuned
//! weak. The guest's spin loop issues its PAUSEs back to back (a counter between two), well
//! inside `ple_gap`, so every spin counts.
//!
//! Real Intel PLE ignores spinning at CPL > 0 (only a guest kernel's PAUSE loops exit); the
//! shim's guest runs at CPL 3, so its `ple` stands for a guest kernel's lock under stock KVM.

use super::os::rdtsc;
use std::sync::OnceLock;

/// KVM's `ple_gap`, cycles.
pub const PLE_GAP_CYCLES: u32 = 128;
/// KVM's default `ple_window`, cycles.
pub const PLE_WINDOW_CYCLES: u32 = 4096;
/// KVM's `ple_window_grow`.
pub const PLE_WINDOW_GROW: u32 = 2;

/// TSC cycles one PAUSE takes on this machine: the fastest of 31 timed loops of 2 000 PAUSEs
/// (the fastest, because a loop the host interrupted only looks slower; short loops, so that
/// some run uninterrupted on a busy host). Measured once, in about 5 ms.
pub fn cycles_per_pause() -> f64 {
    static CPP: OnceLock<f64> = OnceLock::new();
    *CPP.get_or_init(|| {
        const N: u32 = 2_000;
        (0..31)
            .map(|_| {
                let t0 = rdtsc();
                for _ in 0..N {
                    core::hint::spin_loop();
                }
                rdtsc().wrapping_sub(t0) as f64 / f64::from(N)
            })
            .fold(f64::INFINITY, f64::min)
            .max(1.0)
    })
}

/// KVM's base window in guest spins on this machine: 4096 cycles over [`cycles_per_pause`],
/// rounded up, at least 1.
pub fn base_window_spins() -> u32 {
    spins_for(PLE_WINDOW_CYCLES, cycles_per_pause())
}

/// `cycles` of PAUSE loop in spins of `cycles_per_pause` each (rounded up, at least 1).
pub fn spins_for(cycles: u32, cycles_per_pause: f64) -> u32 {
    ((f64::from(cycles) / cycles_per_pause.max(1.0)).ceil() as u32).max(1)
}

/// The window after one more pause-loop exit: x2, saturating (KVM clamps at `ple_window_max`,
/// by default the largest `u32`; the shim keeps it below `u32::MAX / 2`).
pub fn grow(window: u32) -> u32 {
    window.saturating_mul(PLE_WINDOW_GROW).min(u32::MAX / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_in_spins_grows_and_the_measurement_is_sane() {
        assert_eq!(spins_for(4096, 170.0), 25);
        assert_eq!(spins_for(4096, 4096.0), 1);
        assert_eq!(
            spins_for(4096, 0.0),
            4096,
            "a clock that did not move: 1 cycle"
        );
        assert_eq!(grow(25), 50);
        assert_eq!(grow(u32::MAX / 2), u32::MAX / 2);
        let cpp = cycles_per_pause();
        assert!((1.0..100_000.0).contains(&cpp), "{cpp}");
        assert_eq!(base_window_spins(), spins_for(PLE_WINDOW_CYCLES, cpp));
    }
}
