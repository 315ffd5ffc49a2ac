//! The host an experiment runs on, and what else ran on it: cores, kernel, the PLE conversion,
//! the load averages, and the CPU time *other* processes used during each round.
//!
//! The 1-minute load average is no measure of interference: after one `compare` it still
//! holds that run's own threads for minutes. What disturbs a timing is CPU time that another
//! process (or the kernel on its behalf) took on the CPUs this process runs on, while it ran.
//! That is measured directly: the busy time of those CPUs from `/proc/stat` across a round,
//! minus this process's own CPU time (every thread, from `CLOCK_PROCESS_CPUTIME_ID`) across
//! the same round ([`cpu_use`], a pure function of two [`CpuSample`]s).

/// A warning is printed when other processes used more than this percentage of the watched
/// CPUs' time during a round (or before the first run).
///
/// Why 5 %: every preset runs as many pCPUs as the host has cores and keeps them all busy, so
/// whatever another process gets is taken from a pCPU holder. The issues' tightest targets
/// leave about 5 % of margin (`ecs` >= 0.95 of the ceiling; a hog VM >= 95 % of its baseline
/// work), and foreign work of that size that lands on one policy's runs of a round moves that
/// round's paired ratio by as much. An idle host's own background (kernel threads, and the
/// tick-sampled `/proc/stat` against the exact process clock) stays well below 1 % at the
/// 1-10 s of a round.
pub const FOREIGN_CPU_WARN_PCT: f64 = 5.0;

/// Cumulative CPU-time counters at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuSample {
    /// Busy time of the watched host CPUs (user, nice, system, irq, softirq; guest time is
    /// inside user), ns.
    pub busy_ns: u64,
    /// Time a hypervisor under this host ran something else on them (steal), ns.
    pub steal_ns: u64,
    /// All their time (busy, idle, iowait, steal), ns.
    pub total_ns: u64,
    /// CPU time of this process, every thread (live or ended), ns.
    pub own_ns: u64,
}

/// How the watched CPUs' time was used between two samples.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CpuUse {
    /// CPU time of the watched CPUs in the interval (wall time times CPUs), s.
    pub cpu_secs: f64,
    /// Percent of it that was busy.
    pub busy_pct: f64,
    /// Percent used by this process.
    pub own_pct: f64,
    /// Percent used by every other process (busy minus own; 0 where the counters' granularity
    /// puts own above busy).
    pub foreign_pct: f64,
    /// Percent stolen by a hypervisor under this host.
    pub steal_pct: f64,
}

/// The use of the watched CPUs between `before` and `after` (`None` if no time passed, as
/// the kernel counts it). Counters that went backwards count as no change.
pub fn cpu_use(before: &CpuSample, after: &CpuSample) -> Option<CpuUse> {
    let total = after.total_ns.saturating_sub(before.total_ns);
    if total == 0 {
        return None;
    }
    let busy = after.busy_ns.saturating_sub(before.busy_ns);
    let own = after.own_ns.saturating_sub(before.own_ns);
    let steal = after.steal_ns.saturating_sub(before.steal_ns);
    let pct = |ns: u64| 100.0 * ns as f64 / total as f64;
    Some(CpuUse {
        cpu_secs: total as f64 / 1e9,
        busy_pct: pct(busy),
        own_pct: pct(own),
        foreign_pct: pct(busy.saturating_sub(own)),
        steal_pct: pct(steal),
    })
}

/// The sum of several intervals' use, weighted by their CPU time (`None` if empty).
pub fn combined(parts: &[CpuUse]) -> Option<CpuUse> {
    let secs: f64 = parts.iter().map(|p| p.cpu_secs).sum();
    if parts.is_empty() || secs <= 0.0 {
        return None;
    }
    let mean = |f: fn(&CpuUse) -> f64| parts.iter().map(|p| f(p) * p.cpu_secs).sum::<f64>() / secs;
    Some(CpuUse {
        cpu_secs: secs,
        busy_pct: mean(|p| p.busy_pct),
        own_pct: mean(|p| p.own_pct),
        foreign_pct: mean(|p| p.foreign_pct),
        steal_pct: mean(|p| p.steal_pct),
    })
}

/// The `/proc/stat` counters of one CPU line, in clock ticks (`USER_HZ`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatTicks {
    /// user + nice + system + irq + softirq.
    pub busy: u64,
    /// steal.
    pub steal: u64,
    /// busy + idle + iowait + steal.
    pub total: u64,
}

/// The sum of the `cpuN` lines of `/proc/stat` text for the CPUs in `cpus` (`None` if the
/// text has none of them, or a line of theirs is malformed).
pub fn parse_proc_stat(text: &str, cpus: &[usize]) -> Option<StatTicks> {
    let mut sum = StatTicks::default();
    let mut found = false;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let Some(cpu) = words
            .next()
            .and_then(|w| w.strip_prefix("cpu"))
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        if !cpus.contains(&cpu) {
            continue;
        }
        // user nice system idle iowait irq softirq steal [guest guest_nice]: guest time is
        // already inside user and nice.
        let v: Vec<u64> = words
            .take(8)
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        let [user, nice, system, idle, iowait, irq, softirq] = v.get(..7)?.try_into().ok()?;
        let steal = v.get(7).copied().unwrap_or(0);
        let busy = user + nice + system + irq + softirq;
        sum.busy += busy;
        sum.steal += steal;
        sum.total += busy + idle + iowait + steal;
        found = true;
    }
    found.then_some(sum)
}

/// The counters now, for the CPUs this process may run on (`None` without `/proc/stat`).
pub fn sample() -> Option<CpuSample> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks = parse_proc_stat(&text, &crate::sched::os::available_cpus())?;
    let ns = |t: u64| ticks_to_ns(t, clock_ticks_per_sec());
    Some(CpuSample {
        busy_ns: ns(ticks.busy),
        steal_ns: ns(ticks.steal),
        total_ns: ns(ticks.total),
        own_ns: crate::sched::os::process_cpu_ns(),
    })
}

/// `ticks` of `hz` per second in ns (in u128: a many-core host's tick sums since boot times 1e9
/// overflow a u64 within weeks).
fn ticks_to_ns(ticks: u64, hz: u64) -> u64 {
    u64::try_from(u128::from(ticks) * 1_000_000_000 / u128::from(hz.max(1))).unwrap_or(u64::MAX)
}

/// `USER_HZ`, the unit of `/proc/stat` (100 where `sysconf` cannot say).
pub fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(hz).ok().filter(|&h| h > 0).unwrap_or(100)
}

/// One round's use of the watched CPUs.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RoundCpu {
    /// Round (0-based).
    pub round: u32,
    /// Its use of the CPUs.
    #[serde(flatten)]
    pub cpu: CpuUse,
}

/// The host a `compare` ran on.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Host {
    /// CPUs this process may use (the watched CPUs of the foreign-CPU figures).
    pub cores: usize,
    /// The kernel release (`uname -r`).
    pub kernel: String,
    /// TSC cycles per PAUSE, measured at startup (the PLE window's conversion).
    pub cycles_per_pause: f64,
    /// KVM's 4096-cycle base pause-loop window in guest spins on this host.
    pub ple_base_window: u32,
    /// The 1, 5 and 15 minute load averages when the experiment started (they include this
    /// process's own earlier runs for minutes: no warning is based on them).
    pub load_start: Option<[f64; 3]>,
    /// The same when it ended.
    pub load_end: Option<[f64; 3]>,
    /// The warning threshold of the foreign CPU time, percent ([`FOREIGN_CPU_WARN_PCT`]).
    #[serde(default)]
    pub foreign_cpu_warn_pct: f64,
    /// The CPUs' use during a short idle look before the first run.
    #[serde(default)]
    pub before: Option<CpuUse>,
    /// Each round's use of the CPUs.
    #[serde(default)]
    pub rounds: Vec<RoundCpu>,
    /// Every round together.
    #[serde(default)]
    pub measurement: Option<CpuUse>,
}

/// How long [`Host::look_before`] watches the idle host.
pub const LOOK_BEFORE: std::time::Duration = std::time::Duration::from_millis(300);

impl Host {
    /// This host, now.
    pub fn probe() -> Self {
        Host {
            cores: crate::sched::os::available_cpus().len(),
            kernel: kernel_release(),
            cycles_per_pause: crate::sched::pause::cycles_per_pause(),
            ple_base_window: crate::sched::pause::base_window_spins(),
            load_start: load_average(),
            load_end: None,
            foreign_cpu_warn_pct: FOREIGN_CPU_WARN_PCT,
            before: None,
            rounds: Vec::new(),
            measurement: None,
        }
    }

    /// Watches the CPUs for [`LOOK_BEFORE`] while this process idles, records it, and returns
    /// a warning if other processes used more than the threshold meanwhile.
    pub fn look_before(&mut self) -> Option<String> {
        let a = sample()?;
        std::thread::sleep(LOOK_BEFORE);
        self.before = cpu_use(&a, &sample()?);
        foreign_warning(self.before?, "before the first run")
    }

    /// Records round `round`'s use of the CPUs; returns a warning if other processes used more
    /// than the threshold.
    pub fn record_round(&mut self, round: u32, cpu: Option<CpuUse>) -> Option<String> {
        let cpu = cpu?;
        self.rounds.push(RoundCpu { round, cpu });
        let parts: Vec<CpuUse> = self.rounds.iter().map(|r| r.cpu).collect();
        self.measurement = combined(&parts);
        foreign_warning(cpu, &format!("during round {}", round + 1))
    }

    /// The host in one line for the summary: other processes' share of the CPUs during the
    /// measurement and per round, the threshold, the load averages (`None` without rounds).
    pub fn summary_line(&self) -> Option<String> {
        let m = self.measurement?;
        let per: Vec<String> = self
            .rounds
            .iter()
            .map(|r| format!("{:.1}", r.cpu.foreign_pct))
            .collect();
        let load =
            |l: Option<[f64; 3]>| l.map_or_else(|| "n/a".to_owned(), |l| format!("{:.2}", l[0]));
        Some(format!(
            "host: other processes used {:.1} % of the {} CPUs' time during the measurement \
             (per round: {}; warning above {} %), this process {:.1} %, steal {:.1} %; load \
             average {} at the start, {} at the end (it includes this process's own runs)\n",
            m.foreign_pct,
            self.cores,
            per.join(" "),
            self.foreign_cpu_warn_pct,
            m.own_pct,
            m.steal_pct,
            load(self.load_start),
            load(self.load_end),
        ))
    }
}

/// The warning for `cpu` (measured `when`), if other processes used more than the threshold.
pub fn foreign_warning(cpu: CpuUse, when: &str) -> Option<String> {
    (cpu.foreign_pct > FOREIGN_CPU_WARN_PCT).then(|| {
        format!(
            "other processes used {:.1} % of the CPUs' time {when} (more than {} %): runs \
             that share the CPUs with other work do not time a quiet host",
            cpu.foreign_pct, FOREIGN_CPU_WARN_PCT
        )
    })
}

/// The three load averages (`/proc/loadavg`).
pub fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = text.split_whitespace().map(|w| w.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  900 10 300 5000 20 5 5 7 100 0\n\
        cpu0 400 5 100 2500 10 2 3 4 50 0\n\
        cpu1 500 5 200 2500 10 3 2 3 50 0\n\
        intr 12345 0 0\n\
        ctxt 999\n";

    #[test]
    fn proc_stat_sums_the_watched_cpus_and_leaves_guest_time_in_user() {
        let both = parse_proc_stat(STAT, &[0, 1]).unwrap();
        // busy = user + nice + system + irq + softirq (guest 50 is inside user 400).
        assert_eq!(both.busy, (400 + 5 + 100 + 2 + 3) + (500 + 5 + 200 + 3 + 2));
        assert_eq!(both.steal, 7);
        assert_eq!(both.total, both.busy + 2500 + 10 + 2500 + 10 + 7);
        let one = parse_proc_stat(STAT, &[1]).unwrap();
        assert_eq!((one.busy, one.steal), (710, 3));
        assert_eq!(parse_proc_stat(STAT, &[5]), None, "no such CPU");
        assert_eq!(parse_proc_stat("cpu0 1 2 x 4 5 6 7 8\n", &[0]), None);
        assert_eq!(parse_proc_stat("cpu0 1 2 3\n", &[0]), None, "too short");
        // An old kernel without the steal column.
        let old = parse_proc_stat("cpu0 1 1 1 10 0 0 0\n", &[0]).unwrap();
        assert_eq!((old.busy, old.steal, old.total), (3, 0, 13));
    }

    fn at(busy: u64, own: u64, total: u64) -> CpuSample {
        CpuSample {
            busy_ns: busy,
            steal_ns: 0,
            total_ns: total,
            own_ns: own,
        }
    }

    #[test]
    fn foreign_time_is_busy_time_minus_this_process() {
        // 2 CPUs for 1 s: 2e9 ns; 1.5 s busy of which this process 1.2 s.
        let u = cpu_use(
            &at(10, 5, 100),
            &at(10 + 1_500_000_000, 5 + 1_200_000_000, 100 + 2_000_000_000),
        )
        .unwrap();
        assert!((u.cpu_secs - 2.0).abs() < 1e-12);
        assert!((u.busy_pct - 75.0).abs() < 1e-9);
        assert!((u.own_pct - 60.0).abs() < 1e-9);
        assert!((u.foreign_pct - 15.0).abs() < 1e-9);
        // The exact process clock above the tick-sampled busy time: no negative share.
        let u = cpu_use(&at(0, 0, 0), &at(90, 100, 1000)).unwrap();
        assert_eq!(u.foreign_pct, 0.0);
        // No time passed, or counters that went backwards.
        assert_eq!(cpu_use(&at(5, 5, 100), &at(5, 5, 100)), None);
        let u = cpu_use(&at(50, 0, 100), &at(10, 0, 200)).unwrap();
        assert_eq!(u.busy_pct, 0.0);
        assert!(foreign_warning(cpu_use(&at(0, 0, 0), &at(60, 0, 1000)).unwrap(), "x").is_some());
        assert!(foreign_warning(cpu_use(&at(0, 0, 0), &at(40, 0, 1000)).unwrap(), "x").is_none());
    }

    #[test]
    fn rounds_combine_weighted_by_their_cpu_time_and_warn_alone() {
        let short = CpuUse {
            cpu_secs: 1.0,
            busy_pct: 100.0,
            own_pct: 70.0,
            foreign_pct: 30.0,
            steal_pct: 0.0,
        };
        let long = CpuUse {
            cpu_secs: 3.0,
            foreign_pct: 2.0,
            own_pct: 98.0,
            ..short
        };
        let all = combined(&[short, long]).unwrap();
        assert!((all.foreign_pct - 9.0).abs() < 1e-9 && all.cpu_secs == 4.0);
        assert_eq!(combined(&[]), None);
        let mut h = Host::probe();
        assert!(h.summary_line().is_none(), "no rounds yet");
        let w = h.record_round(0, Some(short)).expect("30 % is over 5 %");
        assert!(w.contains("30.0 %") && w.contains("during round 1"), "{w}");
        assert!(h.record_round(1, Some(long)).is_none());
        assert!(h.record_round(2, None).is_none());
        assert_eq!(h.rounds.len(), 2);
        let line = h.summary_line().unwrap();
        assert!(
            line.contains("used 9.0 %") && line.contains("per round: 30.0 2.0"),
            "{line}"
        );
    }

    #[test]
    fn tick_sums_convert_without_overflow() {
        assert_eq!(ticks_to_ns(250, 100), 2_500_000_000);
        // 256 CPUs up for a year at 100 Hz: beyond u64 once multiplied by 1e9.
        let year = 256 * 365 * 86_400 * 100;
        assert_eq!(ticks_to_ns(year, 100), year * 10_000_000);
        assert_eq!(
            ticks_to_ns(7, 0),
            7_000_000_000,
            "a zero rate is taken as 1"
        );
    }

    #[test]
    fn this_hosts_counters_move() {
        let a = sample().expect("Linux has /proc/stat");
        let start = crate::sched::os::thread_cpu_ns();
        let t = std::time::Instant::now();
        let mut x = 0u64;
        // 50 ms of this thread's CPU time (a wall-clock spin gets less on a busy host).
        while crate::sched::os::thread_cpu_ns() < start + 50_000_000
            && t.elapsed() < std::time::Duration::from_secs(20)
        {
            x = core::hint::black_box(x.wrapping_add(1));
        }
        let spun = crate::sched::os::thread_cpu_ns() - start;
        let b = sample().unwrap();
        assert!(spun >= 50_000_000, "the spin got its CPU time");
        assert!(
            b.own_ns >= a.own_ns + spun,
            "this thread's spin is this process's"
        );
        assert!(b.total_ns > a.total_ns);
    }
}
