//! The kernel's rseq statistics (`/sys/kernel/debug/rseq/stats`, `CONFIG_RSEQ_STATS`).

/// The time-slice extension counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Slice {
    /// Extensions granted.
    pub sgrant: u64,
    /// Grants ended by `rseq_slice_yield` within the grant.
    pub syield: u64,
    /// Grants that expired (the timer forced the preemption).
    pub sexpir: u64,
    /// Grants revoked (rescheduled before the thread left).
    pub srevok: u64,
    /// Grants ended by a syscall other than `rseq_slice_yield`.
    pub sabort: u64,
}

/// Reads the counters, or says why not.
pub fn read() -> Result<Slice, String> {
    let path = "/sys/kernel/debug/rseq/stats";
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let mut s = Slice::default();
    for line in text.lines() {
        let mut it = line.split(':');
        let (Some(k), Some(v)) = (it.next(), it.next()) else {
            continue;
        };
        let v: u64 = v.trim().parse().unwrap_or(0);
        match k.trim() {
            "sgrant" => s.sgrant = v,
            "syield" => s.syield = v,
            "sexpir" => s.sexpir = v,
            "srevok" => s.srevok = v,
            "sabort" => s.sabort = v,
            _ => {}
        }
    }
    Ok(s)
}

impl Slice {
    /// `self - before`, field by field.
    pub fn since(&self, before: &Slice) -> Slice {
        Slice {
            sgrant: self.sgrant - before.sgrant,
            syield: self.syield - before.syield,
            sexpir: self.sexpir - before.sexpir,
            srevok: self.srevok - before.srevok,
            sabort: self.sabort - before.sabort,
        }
    }
}

/// The grant length, debugfs `rseq/slice_ext_nsec` (5000 by default, 50000 at most).
const SLICE_NSEC: &str = "/sys/kernel/debug/rseq/slice_ext_nsec";

/// Sets the grant length for the rest of the boot; returns the previous one.
pub fn set_slice_nsec(ns: u64) -> Result<u64, String> {
    let old = std::fs::read_to_string(SLICE_NSEC)
        .map_err(|e| format!("{SLICE_NSEC}: {e}"))?
        .trim()
        .parse()
        .map_err(|e| format!("{SLICE_NSEC}: {e}"))?;
    std::fs::write(SLICE_NSEC, format!("{ns}\n")).map_err(|e| format!("{SLICE_NSEC}: {e}"))?;
    Ok(old)
}
