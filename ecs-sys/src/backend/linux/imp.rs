//! The Linux backend itself: the per-thread state, the once-per-process and once-per-thread
//! decisions, and the `Backend` implementation. See the module docs of `super`.

use core::cell::Cell;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering, compiler_fence};

use super::sys;
use super::{Fallback, RseqArea, RseqStats, ThreadBackend};
use crate::backend::Backend;

/// The Linux backend. See the module docs of [`super`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Linux;

/// `Thread::ctrl`: this thread has not decided yet.
const UNDECIDED: usize = 0;
/// `Thread::ctrl`: this thread takes the native path (`Thread::why` says why).
const NATIVE: usize = 1;

/// `Thread::depth` holds the depth minus this on threads that are undecided or use the
/// extension: their outermost entry is the increment to 0 and their outermost exit the
/// decrement to -1, so the flags of the increment/decrement themselves pick the path. A thread
/// on the native path holds its plain depth: its entries never reach 0, its exits go negative
/// only without an enter.
const EXT_BIAS: i32 = 1;

/// Per-thread state. Const-initialised and without `Drop`, so `thread_local!` compiles to a
/// plain `#[thread_local]` access: no lazy initialisation, no destructor registration.
struct Thread {
    /// Enlightened critical-section depth, minus [`EXT_BIAS`] unless the thread is on the native
    /// path. Entries branch when the incremented word is 0 (outermost on the extension, or not
    /// yet decided), exits when the decremented word is negative (outermost on the extension, or
    /// an exit without an enter): the increment and decrement set those flags themselves, so
    /// the native path costs one not-taken branch per entry and per exit.
    depth: Cell<i32>,
    /// [`UNDECIDED`], [`NATIVE`], or the address of this thread's `rseq.slice_ctrl`.
    ctrl: Cell<usize>,
    /// The decision, encoded ([`encode`]).
    why: Cell<u64>,
    /// The last outermost exit saw `granted`: the next `yield_now` is `rseq_slice_yield`.
    pending: Cell<bool>,
}

std::thread_local! {
    static THREAD: Thread = const {
        Thread {
            depth: Cell::new(-EXT_BIAS),
            ctrl: Cell::new(UNDECIDED),
            why: Cell::new(0),
            pending: Cell::new(false),
        }
    };
    /// The crate's own rseq area, used only when nobody else registered one. Static TLS of the
    /// main executable (checked before registering), no destructor: it stays valid until the
    /// thread has exited, after which the kernel no longer writes it.
    static OWN_AREA: sys::OwnArea = const { sys::OwnArea::new() };
}

// Process-wide state. `MODE`: 0 undecided, else one of the `MODE_*`; `DISABLED`: 0, or the
// encoded fallback that turned the extension off for the process.
const MODE_LIBC: u32 = 1;
const MODE_OWN: u32 = 2;
const MODE_NATIVE: u32 = 3;
static MODE: AtomicU32 = AtomicU32::new(0);
static MODE_WHY: AtomicU64 = AtomicU64::new(0);
static LIBC_OFFSET: AtomicI64 = AtomicI64::new(0);
static FEATURE_SIZE: AtomicU32 = AtomicU32::new(0);
static OPTED_OUT: AtomicBool = AtomicBool::new(false);
static DISABLED: AtomicU64 = AtomicU64::new(0);
static GRANTS: AtomicU64 = AtomicU64::new(0);
static YIELDS: AtomicU64 = AtomicU64::new(0);

pub(super) fn opt_out() {
    OPTED_OUT.store(true, Ordering::Relaxed);
}

pub(super) fn stats() -> RseqStats {
    RseqStats {
        grants: GRANTS.load(Ordering::Relaxed),
        yields: YIELDS.load(Ordering::Relaxed),
    }
}

pub(super) fn slice_ctrl() -> Option<(bool, bool)> {
    let c = THREAD.try_with(|t| t.ctrl.get()).ok()?;
    if c <= NATIVE {
        return None;
    }
    let p = c as *const u8;
    // SAFETY: this thread's registered `slice_ctrl`; reads only.
    unsafe {
        Some((
            ptr::read_volatile(p) != 0,
            ptr::read_volatile(p.add(1)) != 0,
        ))
    }
}

// The decision as one word: a tag in the low byte, then two values.
const TAG_ON_LIBC: u64 = 1;
const TAG_ON_OWN: u64 = 2;
const TAG_OPT_ENV: u64 = 3;
const TAG_OPT_API: u64 = 4;
const TAG_NO_EXT: u64 = 5;
const TAG_LEGACY: u64 = 6;
const TAG_SMALL: u64 = 7;
const TAG_SHARED: u64 = 8;
const TAG_REGISTER: u64 = 9;
const TAG_PRCTL: u64 = 10;
const TAG_YIELD: u64 = 11;

fn encode(f: Fallback) -> u64 {
    let (tag, a, b) = match f {
        Fallback::OptOutEnv => (TAG_OPT_ENV, 0, 0),
        Fallback::OptOutApi => (TAG_OPT_API, 0, 0),
        Fallback::NoSliceField { feature_size } => (TAG_NO_EXT, feature_size, 0),
        Fallback::LibcLegacy { size, feature_size } => (TAG_LEGACY, size, feature_size),
        Fallback::AreaTooSmall {
            feature_size,
            align,
        } => (TAG_SMALL, feature_size, align),
        Fallback::SharedObject => (TAG_SHARED, 0, 0),
        Fallback::Register(e) => (TAG_REGISTER, e as u32, 0),
        Fallback::Prctl(e) => (TAG_PRCTL, e as u32, 0),
        Fallback::Yield(e) => (TAG_YIELD, e as u32, 0),
    };
    tag | (u64::from(a) & 0xff_ffff) << 8 | u64::from(b) << 32
}

fn decode(w: u64) -> ThreadBackend {
    let a = (w >> 8 & 0xff_ffff) as u32;
    let b = (w >> 32) as u32;
    ThreadBackend::RseqFallback(match w & 0xff {
        TAG_ON_LIBC => return ThreadBackend::RseqExtension(RseqArea::Libc),
        TAG_ON_OWN => return ThreadBackend::RseqExtension(RseqArea::Own),
        TAG_OPT_ENV => Fallback::OptOutEnv,
        TAG_OPT_API => Fallback::OptOutApi,
        TAG_NO_EXT => Fallback::NoSliceField { feature_size: a },
        TAG_LEGACY => Fallback::LibcLegacy {
            size: a,
            feature_size: b,
        },
        TAG_SMALL => Fallback::AreaTooSmall {
            feature_size: a,
            align: b,
        },
        TAG_SHARED => Fallback::SharedObject,
        TAG_REGISTER => Fallback::Register(a as i32),
        TAG_PRCTL => Fallback::Prctl(a as i32),
        _ => Fallback::Yield(a as i32),
    })
}

/// The once-per-process part of the decision: which area threads use, or why none.
fn process_mode() -> Result<u32, Fallback> {
    let m = MODE.load(Ordering::Acquire);
    if m != 0 {
        return match m {
            MODE_NATIVE => match decode(MODE_WHY.load(Ordering::Relaxed)) {
                ThreadBackend::RseqFallback(f) => Err(f),
                _ => unreachable!("MODE_WHY holds a fallback"),
            },
            m => Ok(m),
        };
    }
    // Concurrent first deciders compute the same answer; the stores are idempotent.
    let r = decide_process();
    match r {
        Ok(m) => MODE.store(m, Ordering::Release),
        Err(f) => {
            MODE_WHY.store(encode(f), Ordering::Relaxed);
            MODE.store(MODE_NATIVE, Ordering::Release);
        }
    }
    r
}

fn decide_process() -> Result<u32, Fallback> {
    let (feature_size, align) = sys::feature_size_align();
    let r = classify(&Facts {
        env_off: sys::env_is_zero(b"ECS_LOCKS_RSEQ\0"),
        feature_size,
        align,
        libc: sys::libc_registration(),
        in_main: sys::in_main_executable,
    });
    if let Ok((_, offset)) = r {
        FEATURE_SIZE.store(feature_size, Ordering::Relaxed);
        LIBC_OFFSET.store(offset as i64, Ordering::Relaxed);
    }
    r.map(|(m, _)| m)
}

/// What the process decision looks at.
struct Facts {
    /// `ECS_LOCKS_RSEQ=0`.
    env_off: bool,
    /// `AT_RSEQ_FEATURE_SIZE`, `AT_RSEQ_ALIGN`.
    feature_size: u32,
    align: u32,
    /// glibc's `(__rseq_offset, __rseq_size)`, if exported.
    libc: Option<(isize, u32)>,
    /// Whether this code is in the main executable (asked only when it matters).
    in_main: fn() -> bool,
}

/// The process decision as a pure function: the mode and libc's offset, or the fallback.
fn classify(f: &Facts) -> Result<(u32, isize), Fallback> {
    if f.env_off {
        return Err(Fallback::OptOutEnv);
    }
    let feature_size = f.feature_size;
    if feature_size < sys::MIN_FEATURE_SIZE {
        return Err(Fallback::NoSliceField { feature_size });
    }
    match f.libc {
        Some((_, size)) if size != 0 && size < feature_size => {
            Err(Fallback::LibcLegacy { size, feature_size })
        }
        Some((offset, size)) if size != 0 => Ok((MODE_LIBC, offset)),
        _ if feature_size > sys::OWN_AREA_SIZE || f.align > sys::OWN_AREA_SIZE => {
            Err(Fallback::AreaTooSmall {
                feature_size,
                align: f.align,
            })
        }
        _ if !(f.in_main)() => Err(Fallback::SharedObject),
        _ => Ok((MODE_OWN, 0)),
    }
}

/// The once-per-thread decision. Returns the thread's `ctrl` value.
#[cold]
#[inline(never)]
fn decide_thread(t: &Thread) -> usize {
    let r = decide_thread_inner();
    let (ctrl, why) = match r {
        Ok((ctrl, area)) => (
            ctrl,
            match area {
                RseqArea::Libc => TAG_ON_LIBC,
                RseqArea::Own => TAG_ON_OWN,
            },
        ),
        Err(f) => (NATIVE, encode(f)),
    };
    t.why.set(why);
    set_ctrl(t, ctrl);
    ctrl
}

fn decide_thread_inner() -> Result<(usize, RseqArea), Fallback> {
    if OPTED_OUT.load(Ordering::Relaxed) {
        return Err(Fallback::OptOutApi);
    }
    let d = DISABLED.load(Ordering::Relaxed);
    if d != 0 {
        return Err(match decode(d) {
            ThreadBackend::RseqFallback(f) => f,
            _ => unreachable!("DISABLED holds a fallback"),
        });
    }
    let (base, area) = match process_mode()? {
        MODE_LIBC => (
            sys::thread_pointer().wrapping_add_signed(LIBC_OFFSET.load(Ordering::Relaxed) as isize),
            RseqArea::Libc,
        ),
        _ => {
            let base = OWN_AREA
                .try_with(|a| a.as_ptr() as usize)
                .map_err(|_| Fallback::Register(libc::EFAULT))?;
            // SAFETY: the area is this thread's static TLS of the main executable (checked by
            // `process_mode`), has no destructor and is used for nothing else: it stays valid
            // until the thread exits. A failing registration (someone else's exists) leaves
            // every registration as it was.
            unsafe { sys::register(base as *mut u8, FEATURE_SIZE.load(Ordering::Relaxed)) }
                .map_err(Fallback::Register)?;
            (base, RseqArea::Own)
        }
    };
    sys::enable_slice_extension().map_err(Fallback::Prctl)?;
    Ok((base + sys::SLICE_CTRL_OFFSET, area))
}

/// Sets `request` unless a grant is active (set by another user of this thread's area, whose
/// exit will yield): writing `request` then would make the control word inconsistent.
#[inline(always)]
fn request(ctrl: usize) {
    let p = ctrl as *mut u8;
    // SAFETY: `ctrl` is this thread's registered `slice_ctrl`, valid for the thread's life;
    // byte-sized volatile accesses, as the kernel ABI prescribes (CPU-local, no atomicity).
    unsafe {
        if ptr::read_volatile(p.add(1)) == 0 {
            ptr::write_volatile(p, 1);
        }
    }
    compiler_fence(Ordering::SeqCst);
}

/// Clears `request`; returns whether the kernel granted an extension meanwhile.
#[inline(always)]
fn release(ctrl: usize) -> bool {
    compiler_fence(Ordering::SeqCst);
    let p = ctrl as *mut u8;
    // SAFETY: as in `request`; `granted` is only read.
    unsafe {
        ptr::write_volatile(p, 0);
        ptr::read_volatile(p.add(1)) != 0
    }
}

/// Records the thread's `ctrl`; going native drops the depth's bias so sections skip every
/// check.
fn set_ctrl(t: &Thread, ctrl: usize) {
    let was = t.ctrl.replace(ctrl);
    if ctrl == NATIVE && was != NATIVE {
        t.depth.set(t.depth.get() + EXT_BIAS);
    }
}

/// The first section of an undecided thread: decide, then request.
#[cold]
#[inline(never)]
fn first_enter(t: &Thread) {
    debug_assert_eq!(t.ctrl.get(), UNDECIDED);
    let c = decide_thread(t);
    if c > NATIVE {
        request(c);
    }
}

/// An exit that took the depth word below 0: the outermost exit on the extension (-1 on a
/// thread using it) releases the request; an exit without an enter (a `force_unlock` of a lock
/// another thread took, issue 9) puts the word back, so the depth stays at 0.
#[inline(always)]
fn exit_slow(t: &Thread) -> bool {
    // Reads the word back instead of taking the decremented value along: the fast path's
    // decrement then needs no register copy (`dec` on the thread-local itself, then `js`).
    compiler_fence(Ordering::SeqCst);
    let d = t.depth.get();
    let c = t.ctrl.get();
    if d == -EXT_BIAS && c > NATIVE {
        if release(c) {
            t.pending.set(true);
            return true;
        }
        return false;
    }
    t.depth.set(d + 1);
    false
}

/// The yield after a grant: `rseq_slice_yield`, counted; a failure turns the extension off
/// for the process.
#[cold]
#[inline(never)]
fn yield_granted(t: &Thread) {
    GRANTS.fetch_add(1, Ordering::Relaxed);
    if DISABLED.load(Ordering::Relaxed) != 0 {
        t.why.set(DISABLED.load(Ordering::Relaxed));
        set_ctrl(t, NATIVE);
        std::thread::yield_now();
        return;
    }
    match sys::slice_yield() {
        Ok(1) => {
            YIELDS.fetch_add(1, Ordering::Relaxed);
        }
        Ok(_) => {}
        Err(e) => {
            let w = encode(Fallback::Yield(e));
            DISABLED.store(w, Ordering::Relaxed);
            t.why.set(w);
            set_ctrl(t, NATIVE);
            std::thread::yield_now();
        }
    }
}

impl Backend for Linux {
    const NAME: &'static str = "linux-rseq";
    const LIVE_HINTS: bool = false;

    #[inline]
    fn cs_enter() {
        let _ = THREAD.try_with(|t| {
            let d = t.depth.get().wrapping_add(1);
            t.depth.set(d);
            // Native threads never reach 0 here (unbiased depth).
            if d == 0 {
                let c = t.ctrl.get();
                if c > NATIVE {
                    request(c);
                } else {
                    first_enter(t);
                }
            }
        });
    }

    #[inline]
    fn cs_exit() -> bool {
        THREAD
            .try_with(|t| {
                let d = t.depth.get().wrapping_sub(1);
                t.depth.set(d);
                // Nested, or any exit of a native thread that entered.
                if d >= 0 {
                    return false;
                }
                exit_slow(t)
            })
            .unwrap_or(false)
    }

    #[inline]
    fn cs_depth() -> u32 {
        THREAD
            .try_with(|t| {
                let d = t.depth.get();
                let d = if t.ctrl.get() == NATIVE {
                    d
                } else {
                    d + EXT_BIAS
                };
                d.max(0) as u32
            })
            .unwrap_or(0)
    }

    // Constant hints; blocking sections never request an extension (see the module docs).
    crate::backend::native::no_hypervisor_hooks!();

    /// After a `cs_exit` that returned `true`: `rseq_slice_yield`. Otherwise (a waiter
    /// backing off) `sched_yield`.
    #[inline]
    fn yield_now() {
        let granted = THREAD
            .try_with(|t| {
                if t.pending.replace(false) {
                    yield_granted(t);
                    true
                } else {
                    false
                }
            })
            .unwrap_or(false);
        if !granted {
            std::thread::yield_now();
        }
    }

    #[inline]
    fn yield_to(_vcpu: u32) {
        std::thread::yield_now();
    }

    #[inline]
    fn wait() {
        std::thread::yield_now();
    }

    fn thread_backend() -> ThreadBackend {
        THREAD
            .try_with(|t| {
                if t.ctrl.get() == UNDECIDED {
                    decide_thread(t);
                }
                decode(t.why.get())
            })
            .unwrap_or(ThreadBackend::Fixed(Self::NAME))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_nests_and_exit_without_grant_is_false() {
        assert_eq!(Linux::cs_depth(), 0);
        Linux::cs_enter();
        Linux::cs_enter();
        assert_eq!(Linux::cs_depth(), 2);
        std::thread::spawn(|| assert_eq!(Linux::cs_depth(), 0, "depth is per thread"))
            .join()
            .unwrap();
        // A grant needs a preemption inside the section; nothing preempts this short one
        // reliably, so only the depth is exact here (the guest tests count grants).
        let _ = Linux::cs_exit();
        let _ = Linux::cs_exit();
        assert_eq!(Linux::cs_depth(), 0);
    }

    #[test]
    fn exit_without_enter_keeps_the_depth_at_zero() {
        // Undecided, then decided (on this host's path, whichever it is): an exit without an
        // enter (force_unlock of another thread's lock) never wraps the depth.
        std::thread::spawn(|| {
            assert!(!Linux::cs_exit());
            assert_eq!(Linux::cs_depth(), 0);
            let _ = Linux::thread_backend();
            assert!(!Linux::cs_exit());
            assert_eq!(Linux::cs_depth(), 0);
            Linux::cs_enter();
            assert_eq!(Linux::cs_depth(), 1);
            let _ = Linux::cs_exit();
            assert_eq!(Linux::cs_depth(), 0);
            assert!(!Linux::cs_exit());
            assert_eq!(Linux::cs_depth(), 0);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn decision_is_stable_and_request_clear_after_sections() {
        let first = Linux::thread_backend();
        Linux::cs_enter();
        let _ = Linux::cs_exit();
        assert_eq!(Linux::thread_backend(), first);
        assert_ne!(THREAD.with(|t| t.ctrl.get()), UNDECIDED);
        if let Some((request, _)) = slice_ctrl() {
            assert!(!request, "request cleared after the outermost exit");
        }
    }

    fn facts(feature_size: u32, libc: Option<(isize, u32)>) -> Facts {
        Facts {
            env_off: false,
            feature_size,
            align: 64,
            libc,
            in_main: || true,
        }
    }

    #[test]
    fn classify_covers_every_libc_situation() {
        // glibc >= 2.41: v2 registration of the feature size -> libc's area.
        assert_eq!(
            classify(&facts(33, Some((-192, 33)))),
            Ok((MODE_LIBC, -192))
        );
        // glibc 2.35-2.39 (32) and 2.40 (20): legacy -> fallback naming the sizes.
        for size in [20, 32] {
            assert_eq!(
                classify(&facts(33, Some((-192, size)))),
                Err(Fallback::LibcLegacy {
                    size,
                    feature_size: 33
                })
            );
        }
        // Tunable off (size 0), or no symbols (old glibc, musl): own registration.
        assert_eq!(classify(&facts(33, Some((0, 0)))), Ok((MODE_OWN, 0)));
        assert_eq!(classify(&facts(33, None)), Ok((MODE_OWN, 0)));
        // A kernel whose rseq ends before slice_ctrl's reserved byte (6.18: 28; < 6.3: 0)
        // comes first, whatever libc did: registering 28 bytes would fail with EINVAL.
        for fs in [0, 28, 32] {
            assert_eq!(
                classify(&facts(fs, None)),
                Err(Fallback::NoSliceField { feature_size: fs })
            );
        }
        // A kernel asking for more than our 64-byte area.
        assert_eq!(
            classify(&facts(80, None)),
            Err(Fallback::AreaTooSmall {
                feature_size: 80,
                align: 64
            })
        );
        // ...but libc's v2 area of that size is fine.
        assert_eq!(
            classify(&facts(80, Some((-256, 80)))),
            Ok((MODE_LIBC, -256))
        );
        // A shared object never registers its own area.
        let mut f = facts(33, None);
        f.in_main = || false;
        assert_eq!(classify(&f), Err(Fallback::SharedObject));
        // The opt-out wins over everything.
        let mut f = facts(33, Some((-192, 33)));
        f.env_off = true;
        assert_eq!(classify(&f), Err(Fallback::OptOutEnv));
    }

    #[test]
    fn this_code_is_in_the_main_executable() {
        // Test binaries link ecs-sys statically: own registration is allowed here.
        assert!(sys::in_main_executable());
    }

    #[test]
    fn fallbacks_round_trip_through_the_encoding() {
        for f in [
            Fallback::OptOutEnv,
            Fallback::OptOutApi,
            Fallback::NoSliceField { feature_size: 28 },
            Fallback::LibcLegacy {
                size: 32,
                feature_size: 33,
            },
            Fallback::AreaTooSmall {
                feature_size: 96,
                align: 128,
            },
            Fallback::SharedObject,
            Fallback::Register(22),
            Fallback::Prctl(524),
            Fallback::Yield(38),
        ] {
            assert_eq!(decode(encode(f)), ThreadBackend::RseqFallback(f));
        }
        assert_eq!(
            decode(TAG_ON_OWN),
            ThreadBackend::RseqExtension(RseqArea::Own)
        );
        assert_eq!(
            decode(TAG_ON_LIBC),
            ThreadBackend::RseqExtension(RseqArea::Libc)
        );
    }

    #[test]
    fn this_host_reports_a_reason() {
        // Whatever this machine's kernel and libc give, the call answers and says why.
        let s = std::format!("{}", Linux::thread_backend());
        assert!(s.starts_with("linux-rseq: "), "{s}");
    }
}
