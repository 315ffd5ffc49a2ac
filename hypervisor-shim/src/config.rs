//! What one run is: vCPUs, pCPUs, lock kind, policy, duration, scheduler and workload
//! parameters, with documented defaults and validation.

use crate::workload::{LockKind, Misbehave};
use core::fmt;
use core::str::FromStr;
use std::time::Duration;

/// Errors of run configuration.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The vCPU count is 0 or above the ABI's maximum.
    #[error("--vcpus must be between 1 and {max}, got {got}")]
    Vcpus {
        /// Value given.
        got: u32,
        /// Largest allowed.
        max: u32,
    },
    /// The pCPU count is 0 or above the ABI's maximum vCPU count (more pCPUs than vCPUs
    /// stay idle, and every tick walks them all).
    #[error("--pcpus must be between 1 and {max}, got {got}")]
    Pcpus {
        /// Value given.
        got: u32,
        /// Largest allowed.
        max: u32,
    },
    /// A duration is longer than [`MAX_DURATION`] (the scheduler counts ns in a `u64`).
    #[error("{what} must be at most {max:?}, got {got:?}")]
    TooLong {
        /// Which setting.
        what: &'static str,
        /// Value given.
        got: Duration,
        /// Largest allowed.
        max: Duration,
    },
    /// The time slice is shorter than the scheduler tick.
    #[error("--slice-ms ({slice:?}) must be at least the scheduler tick ({tick:?})")]
    Slice {
        /// Slice.
        slice: Duration,
        /// Tick.
        tick: Duration,
    },
    /// The scheduler tick is 0.
    #[error("the scheduler tick must be non-zero")]
    Tick,
    /// `read_percent` above 100.
    #[error("--read-percent must be 0..=100, got {0}")]
    ReadPercent(u32),
    /// An unknown lock name.
    #[error(
        "unknown lock kind {0:?} (spin, ticket, mcs, spin-rw, mutex, rwlock, rcu, fair-mutex, condvar, hog)"
    )]
    LockName(String),
    /// An unknown policy name.
    #[error("unknown policy {0:?} (baseline, ple, ecs, ecs-ple)")]
    PolicyName(String),
    /// A `--vm` spec that does not parse.
    #[error(
        "bad --vm {spec:?}: {why} (expected VCPUS:WORKLOAD[:WEIGHT[:MISBEHAVE]], e.g. 8:spin or 8:hog:2)"
    )]
    VmSpec {
        /// The spec given.
        spec: String,
        /// What is wrong with it.
        why: String,
    },
    /// A run without any VM.
    #[error("no VM: give --vm VCPUS:WORKLOAD at least once")]
    NoVm,
    /// The VMs' vCPUs together exceed the ABI's maximum (one scheduler serves them all).
    #[error("the VMs have {got} vCPUs in total, more than the {max} one host serves")]
    TotalVcpus {
        /// vCPUs over every VM.
        got: u32,
        /// Largest allowed.
        max: u32,
    },
}

/// The largest VM weight (`--vm V:W:WEIGHT`).
pub const MAX_WEIGHT: u32 = 1000;

/// One VM of a run: its vCPUs, its workload, its weight in the host's fair shares and its
/// misbehaviour (tests and the hostile-tenant presets).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmConfig {
    /// vCPUs in this VM.
    pub vcpus: u32,
    /// Its workload: a lock kind, or `hog`.
    pub workload: Lock,
    /// Its weight: over the fairness window it gets pCPU time in proportion (1..=1000).
    pub weight: u32,
    /// Deliberate guest misbehaviour in this VM.
    pub misbehave: Misbehave,
}

impl VmConfig {
    /// A well-behaved VM of weight 1.
    pub fn new(vcpus: u32, workload: LockKind) -> Self {
        VmConfig {
            vcpus,
            workload: Lock(workload),
            weight: 1,
            misbehave: Misbehave::None,
        }
    }

    /// The command-line spec (`VCPUS:WORKLOAD[:WEIGHT[:MISBEHAVE]]`) of this VM.
    pub fn spec(&self) -> String {
        let mut s = format!("{}:{}", self.vcpus, self.workload);
        if self.weight != 1 || self.misbehave != Misbehave::None {
            s += &format!(":{}", self.weight);
        }
        if self.misbehave != Misbehave::None {
            s += &format!(":{}", misbehave_name(self.misbehave));
        }
        s
    }
}

/// The command-line name of a misbehaviour.
pub fn misbehave_name(m: Misbehave) -> &'static str {
    match m {
        Misbehave::None => "none",
        Misbehave::NeverLeaveCs => "never-leave-cs",
        Misbehave::GarbageHypercalls => "garbage-hypercalls",
        Misbehave::Fault => "fault",
        Misbehave::Hang => "hang",
        Misbehave::FloodHypercalls => "flood-hypercalls",
        Misbehave::YieldPingPong => "yield-ping-pong",
        Misbehave::ScribbleSiblings => "scribble-siblings",
    }
}

/// Every misbehaviour.
pub const MISBEHAVE_ALL: [Misbehave; 8] = [
    Misbehave::None,
    Misbehave::NeverLeaveCs,
    Misbehave::GarbageHypercalls,
    Misbehave::Fault,
    Misbehave::Hang,
    Misbehave::FloodHypercalls,
    Misbehave::YieldPingPong,
    Misbehave::ScribbleSiblings,
];

/// A misbehaviour by its command-line name.
pub fn parse_misbehave(s: &str) -> Option<Misbehave> {
    MISBEHAVE_ALL.into_iter().find(|&m| misbehave_name(m) == s)
}

impl FromStr for VmConfig {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        let bad = |why: String| ConfigError::VmSpec {
            spec: s.to_owned(),
            why,
        };
        let parts: Vec<&str> = s.split(':').collect();
        if !(2..=4).contains(&parts.len()) {
            return Err(bad("expected two to four fields separated by ':'".into()));
        }
        let vcpus: u32 = parts[0]
            .parse()
            .map_err(|_| bad(format!("VCPUS {:?} is not a number", parts[0])))?;
        let max = ecs_sys::abi::MAX_VCPUS;
        if vcpus == 0 || vcpus > max {
            return Err(bad(format!(
                "VCPUS must be between 1 and {max}, got {vcpus}"
            )));
        }
        let workload: Lock = parts[1]
            .parse()
            .map_err(|e: ConfigError| bad(e.to_string()))?;
        let weight = match parts.get(2) {
            None => 1,
            Some(w) => match w.parse::<u32>() {
                Ok(w) if (1..=MAX_WEIGHT).contains(&w) => w,
                _ => {
                    return Err(bad(format!(
                        "WEIGHT must be a whole number between 1 and {MAX_WEIGHT}, got {w:?}"
                    )));
                }
            },
        };
        let misbehave = match parts.get(3) {
            None => Misbehave::None,
            Some(m) => parse_misbehave(m).ok_or_else(|| {
                bad(format!(
                    "unknown MISBEHAVE {m:?} ({})",
                    MISBEHAVE_ALL.map(misbehave_name).join(", ")
                ))
            })?,
        };
        Ok(VmConfig {
            vcpus,
            workload,
            weight,
            misbehave,
        })
    }
}

/// The scheduling policy of a run (see [`crate::sched`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyKind {
    /// Oblivious round robin.
    Baseline,
    /// Round robin plus pause-loop exiting.
    Ple,
    /// eCS: bounded deferral in critical sections, hints, directed yield.
    Ecs,
    /// eCS on a host that also has pause-loop exiting (as a production KVM host would).
    #[serde(rename = "ecs-ple")]
    EcsPle,
}

impl PolicyKind {
    /// Every policy, baseline first.
    pub const ALL: [PolicyKind; 4] = [
        PolicyKind::Baseline,
        PolicyKind::Ple,
        PolicyKind::Ecs,
        PolicyKind::EcsPle,
    ];

    /// Whether the policy publishes eCS hints and serves directed yields.
    pub fn hints(self) -> bool {
        matches!(self, PolicyKind::Ecs | PolicyKind::EcsPle)
    }

    /// Whether the policy emulates pause-loop exiting.
    pub fn ple(self) -> bool {
        matches!(self, PolicyKind::Ple | PolicyKind::EcsPle)
    }

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::Baseline => "baseline",
            PolicyKind::Ple => "ple",
            PolicyKind::Ecs => "ecs",
            PolicyKind::EcsPle => "ecs-ple",
        }
    }
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for PolicyKind {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        PolicyKind::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| ConfigError::PolicyName(s.to_owned()))
    }
}

/// A lock kind with its command-line name (a newtype so the contract file stays `core`-only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Lock(pub LockKind);

impl Lock {
    /// The command-line name of a lock kind.
    pub fn name(self) -> &'static str {
        match self.0 {
            LockKind::Spin => "spin",
            LockKind::Ticket => "ticket",
            LockKind::Mcs => "mcs",
            LockKind::SpinRw => "spin-rw",
            LockKind::Mutex => "mutex",
            LockKind::RwLock => "rwlock",
            LockKind::Rcu => "rcu",
            LockKind::FairMutex => "fair-mutex",
            LockKind::Condvar => "condvar",
            LockKind::Hog => "hog",
        }
    }
}

impl fmt::Display for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl serde::Serialize for Lock {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Lock {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

impl FromStr for Lock {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        LockKind::ALL
            .into_iter()
            .map(Lock)
            .find(|l| l.name() == s)
            .ok_or_else(|| ConfigError::LockName(s.to_owned()))
    }
}

/// Default time slice: a few ms, like a busy host's CFS slice.
pub const DEFAULT_SLICE: Duration = Duration::from_millis(4);
/// Default scheduler tick: the granularity of preemption and of extension deadlines.
pub const DEFAULT_TICK: Duration = Duration::from_micros(100);
/// Default eCS extension: short (DESIGN.md pitfalls: short grants plus yield at exit beat
/// whole extra slices); in practice one or two ticks. Bounded by a quarter slice.
pub const DEFAULT_EXTENSION: Duration = Duration::from_micros(200);
/// Default base pause-loop window in guest `Backoff` spins: 0, which means KVM's 4096 cycles
/// converted with the cost of a PAUSE measured when the shim starts
/// ([`crate::sched::pause`]). Each vCPU's window then grows x2 per pause-loop exit and is
/// reset when it is scheduled in, as KVM's.
pub const DEFAULT_PLE_WINDOW: u32 = 0;
/// Default critical-section work, in guest loop iterations (well under a microsecond).
pub const DEFAULT_CS_ITERS: u32 = 100;
/// Default think time between acquisitions: a few times the critical section.
pub const DEFAULT_THINK_ITERS: u32 = 400;
/// Default grace period a vCPU gets to exit after `stop` before it is force-stopped.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(2);

/// The longest duration a run accepts for any setting (about 31.7 years): nanoseconds since
/// the start of a run are `u64`s, and sums of a few such durations must not overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(1_000_000_000);

/// One run's configuration.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// vCPUs in the VM.
    pub vcpus: u32,
    /// pCPUs the vCPUs share.
    pub pcpus: u32,
    /// The lock the workload contends on.
    pub lock: Lock,
    /// The scheduling policy.
    pub policy: PolicyKind,
    /// How long the workload runs before the host sets `stop`.
    pub duration: Duration,
    /// Time slice.
    pub slice: Duration,
    /// Scheduler tick.
    pub tick: Duration,
    /// eCS extension length (clamped to a quarter slice).
    pub extension: Duration,
    /// Base pause-loop window in spins advertised under `ple` and `ecs-ple` (0 = KVM's 4096
    /// cycles in spins measured on this machine; see [`RunConfig::ple_base_window`]).
    pub ple_window: u32,
    /// Critical-section work per operation.
    pub cs_iters: u32,
    /// Think time per operation.
    pub think_iters: u32,
    /// Share of read operations for reader-writer kinds.
    pub read_percent: u32,
    /// Deliberate guest misbehaviour (tests).
    pub misbehave: Misbehave,
    /// Operations per vCPU after which the guest stops by itself (0 = until `stop`).
    pub max_ops: u64,
    /// Time a vCPU gets to exit after `stop`.
    pub grace: Duration,
    /// Pin the thread holding pCPU k to host CPU k (mod the CPUs available).
    pub pin: bool,
    /// KVM's halt-polling (on by default, as KVM applies it to every VM; see
    /// [`crate::sched::halt_poll`]).
    pub halt_poll: bool,
    /// Whether the host publishes `preempted`/`overloaded` (and advertises `FEATURE_HINTS`)
    /// under a policy that does; off, the same guest binary and lock code run as under a host
    /// without hints (default on; `ecs` means on).
    pub guest_hints: bool,
    /// The VMs sharing the pCPUs (`--vm`), in order. Empty: one VM of `vcpus` vCPUs running
    /// `lock` with `misbehave` (the one-VM form); see [`RunConfig::vm_list`]. When set, `vcpus`
    /// is their total and `lock` the first VM's workload ([`RunConfig::with_vms`]).
    pub vms: Vec<VmConfig>,
}

impl RunConfig {
    /// A configuration with the documented defaults.
    pub fn new(vcpus: u32, pcpus: u32, lock: LockKind, policy: PolicyKind) -> Self {
        RunConfig {
            vcpus,
            pcpus,
            lock: Lock(lock),
            policy,
            duration: Duration::from_secs(1),
            slice: DEFAULT_SLICE,
            tick: DEFAULT_TICK,
            extension: DEFAULT_EXTENSION,
            ple_window: DEFAULT_PLE_WINDOW,
            cs_iters: DEFAULT_CS_ITERS,
            think_iters: DEFAULT_THINK_ITERS,
            read_percent: 80,
            misbehave: Misbehave::None,
            max_ops: 0,
            grace: DEFAULT_GRACE,
            pin: true,
            halt_poll: true,
            guest_hints: true,
            vms: Vec::new(),
        }
    }

    /// This configuration with `vms` sharing the pCPUs: `vcpus` becomes their total and `lock`
    /// the first VM's workload (what a one-VM report's fields show).
    pub fn with_vms(mut self, vms: Vec<VmConfig>) -> Self {
        self.vcpus = vms.iter().map(|v| v.vcpus).fold(0, u32::saturating_add);
        if let Some(v) = vms.first() {
            self.lock = v.workload;
        }
        self.vms = vms;
        self
    }

    /// The VMs of the run: `vms`, or the one VM of the one-VM form.
    pub fn vm_list(&self) -> Vec<VmConfig> {
        if self.vms.is_empty() {
            vec![VmConfig {
                vcpus: self.vcpus,
                workload: self.lock,
                weight: 1,
                misbehave: self.misbehave,
            }]
        } else {
            self.vms.clone()
        }
    }

    /// Whether more than one VM shares the pCPUs.
    pub fn multi_vm(&self) -> bool {
        self.vms.len() > 1
    }

    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let max = ecs_sys::abi::MAX_VCPUS;
        if !self.vms.is_empty() {
            let total = self
                .vms
                .iter()
                .map(|v| v.vcpus)
                .fold(0, u32::saturating_add);
            if total > max {
                return Err(ConfigError::TotalVcpus { got: total, max });
            }
            for v in &self.vms {
                if v.vcpus == 0 || v.vcpus > max || !(1..=MAX_WEIGHT).contains(&v.weight) {
                    return Err(ConfigError::VmSpec {
                        spec: v.spec(),
                        why: format!("VCPUS must be 1..={max} and WEIGHT 1..={MAX_WEIGHT}"),
                    });
                }
            }
        }
        if self.vcpus == 0 || self.vcpus > max {
            return Err(ConfigError::Vcpus {
                got: self.vcpus,
                max,
            });
        }
        if self.pcpus == 0 || self.pcpus > max {
            return Err(ConfigError::Pcpus {
                got: self.pcpus,
                max,
            });
        }
        for (what, got) in [
            ("--secs", self.duration),
            ("--slice-ms", self.slice),
            ("--tick-us", self.tick),
            ("--ext-us", self.extension),
            ("--grace-secs", self.grace),
        ] {
            if got > MAX_DURATION {
                return Err(ConfigError::TooLong {
                    what,
                    got,
                    max: MAX_DURATION,
                });
            }
        }
        if self.tick.is_zero() {
            return Err(ConfigError::Tick);
        }
        if self.slice < self.tick {
            return Err(ConfigError::Slice {
                slice: self.slice,
                tick: self.tick,
            });
        }
        if self.read_percent > 100 {
            return Err(ConfigError::ReadPercent(self.read_percent));
        }
        Ok(())
    }

    /// The base pause-loop window in spins: the configured one, or KVM's default converted
    /// with this machine's cycles per PAUSE.
    pub fn ple_base_window(&self) -> u32 {
        match self.ple_window {
            0 => crate::sched::pause::base_window_spins(),
            w => w,
        }
    }

    /// The extension actually granted: the configured one, at most a quarter slice.
    pub fn effective_extension(&self) -> Duration {
        self.extension.min(self.slice / 4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in LockKind::ALL {
            assert_eq!(Lock::from_str(Lock(k).name()), Ok(Lock(k)));
        }
        for p in PolicyKind::ALL {
            assert_eq!(PolicyKind::from_str(p.name()), Ok(p));
        }
        assert!(Lock::from_str("nope").is_err());
        assert!(PolicyKind::from_str("cfs").is_err());
    }

    #[test]
    fn vm_specs_parse_and_bad_ones_say_why() {
        let v: VmConfig = "8:spin".parse().unwrap();
        assert_eq!(v, VmConfig::new(8, LockKind::Spin));
        let v: VmConfig = "2:hog:3".parse().unwrap();
        assert_eq!((v.vcpus, v.workload, v.weight), (2, Lock(LockKind::Hog), 3));
        let v: VmConfig = "2:mcs:1:yield-ping-pong".parse().unwrap();
        assert_eq!(v.misbehave, Misbehave::YieldPingPong);
        assert_eq!(v.spec(), "2:mcs:1:yield-ping-pong");
        for (bad, says) in [
            ("8", "two to four fields"),
            ("0:spin", "between 1 and 256"),
            ("x:spin", "not a number"),
            ("2:nope", "unknown lock kind"),
            ("2:spin:0", "WEIGHT"),
            ("2:spin:1001", "WEIGHT"),
            ("2:spin:1.5", "WEIGHT"),
            ("2:spin:1:evil", "unknown MISBEHAVE"),
            ("2:spin:1:hang:x", "two to four"),
        ] {
            let e = bad.parse::<VmConfig>().unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
        for m in MISBEHAVE_ALL {
            assert_eq!(parse_misbehave(misbehave_name(m)), Some(m));
        }
    }

    #[test]
    fn several_vms_share_one_vcpu_budget() {
        let c = RunConfig::new(1, 2, LockKind::Spin, PolicyKind::Ecs).with_vms(vec![
            VmConfig::new(8, LockKind::Spin),
            VmConfig::new(8, LockKind::Hog),
        ]);
        assert_eq!(
            (c.vcpus, c.lock, c.multi_vm()),
            (16, Lock(LockKind::Spin), true)
        );
        assert_eq!(c.validate(), Ok(()));
        let c = c.with_vms(vec![
            VmConfig::new(200, LockKind::Spin),
            VmConfig::new(57, LockKind::Hog),
        ]);
        assert_eq!(
            c.validate(),
            Err(ConfigError::TotalVcpus { got: 257, max: 256 })
        );
        let one = RunConfig::new(4, 2, LockKind::Mcs, PolicyKind::Ecs);
        assert_eq!(one.vm_list(), vec![VmConfig::new(4, LockKind::Mcs)]);
        assert!(!one.multi_vm());
    }

    #[test]
    fn validation() {
        let ok = RunConfig::new(8, 2, LockKind::Spin, PolicyKind::Ecs);
        assert_eq!(ok.validate(), Ok(()));
        assert!(
            RunConfig {
                vcpus: 0,
                ..ok.clone()
            }
            .validate()
            .is_err()
        );
        assert!(
            RunConfig {
                vcpus: 257,
                ..ok.clone()
            }
            .validate()
            .is_err()
        );
        assert!(
            RunConfig {
                pcpus: 0,
                ..ok.clone()
            }
            .validate()
            .is_err()
        );
        assert_eq!(
            RunConfig {
                pcpus: 4_000_000_000,
                ..ok.clone()
            }
            .validate(),
            Err(ConfigError::Pcpus {
                got: 4_000_000_000,
                max: 256
            })
        );
        assert_eq!(
            RunConfig {
                pcpus: 256,
                ..ok.clone()
            }
            .validate(),
            Ok(())
        );
        // 2^64 ns is about 584 years: one of these would overflow the scheduler's clock.
        let huge = Duration::from_secs(18_446_744_073);
        for c in [
            RunConfig {
                grace: huge,
                ..ok.clone()
            },
            RunConfig {
                duration: huge,
                ..ok.clone()
            },
            RunConfig {
                slice: huge,
                ..ok.clone()
            },
            RunConfig {
                extension: huge,
                ..ok.clone()
            },
        ] {
            assert!(
                matches!(c.validate(), Err(ConfigError::TooLong { got, .. }) if got == huge),
                "{c:?}"
            );
        }
        assert_eq!(
            RunConfig {
                grace: MAX_DURATION,
                ..ok.clone()
            }
            .validate(),
            Ok(())
        );
        assert!(
            RunConfig {
                read_percent: 101,
                ..ok.clone()
            }
            .validate()
            .is_err()
        );
        let c = RunConfig {
            slice: Duration::from_micros(50),
            ..ok.clone()
        };
        assert!(c.validate().is_err());
        let c = RunConfig {
            extension: Duration::from_secs(1),
            ..ok
        };
        assert_eq!(c.effective_extension(), DEFAULT_SLICE / 4);
    }
}
