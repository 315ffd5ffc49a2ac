//! `two-copies libc|own`: two copies of ecs-sys in one process (`ecs_sys` and `ecs_sys_copy`,
//! the same sources built as two crates, like two semver-incompatible versions in one
//! dependency graph) share this thread's `rseq.slice_ctrl`.
//!
//! The property (the issue's "at worst an extension is lost, never left requested after every
//! section ended"), checked after every step of randomly interleaved, independently nested
//! sections of both copies on each of 8 threads (2 vCPUs, 50 µs grants, so the kernel grants
//! inside them):
//! - whenever neither copy is inside a section, `slice_ctrl` reads `request = 0, granted = 0`
//!   as both copies see it: no request left set, and no grant left unyielded (a grant made
//!   while either copy was inside is seen by the last outermost exit, which yields);
//! - the kernel's `syield` rose by exactly the two copies' yields, and the grants the copies
//!   saw lie within [`syield`, `sgrant`]: every yield the kernel counted was one of theirs.
//!
//! `libc`: both copies use glibc's v2 area (glibc >= 2.41), the case where the byte is shared;
//! a copy inside a section must be visible to the other (checked). The same run also feeds
//! the detector a broken third user of the byte (one that restores the byte's old value at its
//! exit instead of clearing it) and requires it to be caught, so the check cannot pass
//! vacuously. `own`: the first copy registers its own area; the second must then fall back
//! with EINVAL (it never touches another registration) while the first keeps working.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use ecs_sys::backend::linux::{RseqArea, ThreadBackend};
use ecs_sys_copy::backend::linux as copy;

use crate::kstats;
use crate::work::{rounds_for_ns, scaled, scaled_ms, spin_work};

type Check = Result<(), String>;

/// One copy's hooks.
struct Copy {
    enter: fn(),
    exit: fn() -> bool,
    yield_now: fn(),
    depth: fn() -> u32,
    ctrl: fn() -> Option<(bool, bool)>,
}

const A: Copy = Copy {
    enter: ecs_sys::cs_enter,
    exit: ecs_sys::cs_exit,
    yield_now: ecs_sys::yield_now,
    depth: ecs_sys::cs_depth,
    ctrl: ecs_sys::backend::linux::slice_ctrl,
};

const B: Copy = Copy {
    enter: ecs_sys_copy::cs_enter,
    exit: ecs_sys_copy::cs_exit,
    yield_now: ecs_sys_copy::yield_now,
    depth: ecs_sys_copy::cs_depth,
    ctrl: ecs_sys_copy::backend::linux::slice_ctrl,
};

/// What one thread saw.
#[derive(Default)]
struct Seen {
    steps: u64,
    idle_checks: u64,
    /// Idle points where `slice_ctrl` was not (0, 0), with the first one described.
    violations: u64,
    first: Option<String>,
    /// Points where only one copy had entered since the last idle point and was inside, and
    /// how often the other copy's view showed its request (or the grant that replaced it).
    only_one_inside: u64,
    shared_seen: u64,
}

/// xorshift64: the interleavings, reproducible per thread.
fn next(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

/// One thread: rounds of random interleavings of both copies' nested sections.
fn worker(seed: u64, stop: &AtomicBool, rounds: u32, b_on: bool) -> Seen {
    let copies = [&A, &B];
    let mut seen = Seen::default();
    // Both copies decide for this thread first (an undecided copy's view is `None`); a copy on
    // the native path (`own`: B) sees nothing.
    let _ = (ecs_sys::thread_backend(), ecs_sys_copy::thread_backend());
    let idle = [Some((false, false)), b_on.then_some((false, false))];
    let mut rng = seed | 1;
    while !stop.load(Ordering::Relaxed) {
        // Each copy enters 1-3 times and exits as often, in an order random across copies
        // (not nested across copies: A may end while B is still inside, and the reverse).
        let mut left = [1 + next(&mut rng) % 3, 1 + next(&mut rng) % 3];
        let mut depth = [0u64; 2];
        // Which copies entered since the last point where neither was inside.
        let mut touched = [false; 2];
        while left != [0, 0] || depth != [0, 0] {
            let c = (next(&mut rng) % 2) as usize;
            let enter = left[c] > 0 && (depth[c] == 0 || next(&mut rng).is_multiple_of(2));
            if enter {
                (copies[c].enter)();
                touched[c] = true;
                left[c] -= 1;
                depth[c] += 1;
            } else if depth[c] > 0 {
                if (copies[c].exit)() {
                    (copies[c].yield_now)();
                }
                depth[c] -= 1;
            } else {
                continue;
            }
            seen.steps += 1;
            for (i, copy) in copies.iter().enumerate() {
                let d = u64::from((copy.depth)());
                if d != depth[i] && seen.first.is_none() {
                    seen.violations += 1;
                    seen.first = Some(format!("copy {i}: depth {d}, expected {}", depth[i]));
                }
            }
            let views = [(A.ctrl)(), (B.ctrl)()];
            if depth == [0, 0] {
                touched = [false; 2];
                seen.idle_checks += 1;
                if views != idle {
                    seen.violations += 1;
                    seen.first.get_or_insert_with(|| {
                        format!("no section open, slice_ctrl (request, granted) = {views:?}")
                    });
                }
            } else if (depth[0] == 0) != (depth[1] == 0) && touched.contains(&false) {
                // Only one copy entered since the last idle point (so nobody cleared its
                // request) and it is inside: the other copy's view of the byte shows the
                // request, or the kernel's grant that replaced it.
                let other = usize::from(depth[0] != 0);
                seen.only_one_inside += 1;
                if views[other].is_some_and(|(r, g)| r || g) {
                    seen.shared_seen += 1;
                }
            }
            spin_work(rounds);
        }
    }
    seen
}

/// The byte a libc-area user writes: thread pointer + `__rseq_offset` + 28.
fn libc_request_byte() -> *mut u8 {
    unsafe extern "C" {
        static __rseq_offset: isize;
    }
    let tp: usize;
    // SAFETY: on x86_64 Linux `%fs:0` is the thread pointer; a load, nothing else.
    unsafe {
        core::arch::asm!("mov {}, qword ptr fs:0", out(reg) tp, options(nostack, readonly, preserves_flags));
    }
    // SAFETY: glibc's constant, set before user code runs.
    let off = unsafe { __rseq_offset };
    tp.wrapping_add_signed(off).wrapping_add(28) as *mut u8
}

/// The detector against a broken user: copy A enters, a "restoring" user enters (saves the
/// byte, sets it), A exits, the restoring user exits by writing back what it saved, i.e. the
/// request A had set. Returns (rounds judged, rounds the detector flagged).
fn detector_self_test() -> (u64, u64) {
    let p = libc_request_byte();
    let (mut judged, mut flagged) = (0, 0);
    for _ in 0..scaled(2000, 50) {
        let g0 = kstats::read().map(|k| k.sgrant).unwrap_or(0);
        (A.enter)();
        // SAFETY: this thread's registered rseq area (glibc's, checked by the caller); byte
        // accesses to `request`, `granted` only read, as the ABI allows.
        let saved = unsafe {
            let saved = p.read_volatile();
            if p.add(1).read_volatile() == 0 {
                p.write_volatile(1);
            }
            saved
        };
        if (A.exit)() {
            (A.yield_now)();
        }
        // SAFETY: as above.
        unsafe { p.write_volatile(saved) };
        let bad = (A.ctrl)() != Some((false, false));
        // Clean up after the broken user: clear the request; a grant it drew is given back.
        // SAFETY: as above.
        let granted = unsafe {
            p.write_volatile(0);
            p.add(1).read_volatile() != 0
        };
        if granted {
            // SAFETY: rseq_slice_yield takes no arguments.
            unsafe { libc::syscall(471) };
        }
        // A kernel grant inside the round changes what the broken user saved: leave it out.
        if kstats::read().map(|k| k.sgrant).unwrap_or(0) != g0 {
            continue;
        }
        judged += 1;
        flagged += u64::from(bad);
    }
    (judged, flagged)
}

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

/// `two-copies AREA`: see the module docs.
pub fn run(area: &str) -> Check {
    let (a, b) = (ecs_sys::thread_backend(), ecs_sys_copy::thread_backend());
    println!("linux-guest: copy A: {a}; copy B: {b}");
    match area {
        "libc" => {
            ensure!(
                a == ThreadBackend::RseqExtension(RseqArea::Libc),
                "copy A must use libc's area: {a}"
            );
            ensure!(
                b == copy::ThreadBackend::RseqExtension(copy::RseqArea::Libc),
                "copy B must use libc's area: {b}"
            );
        }
        "own" => {
            ensure!(
                a == ThreadBackend::RseqExtension(RseqArea::Own),
                "copy A must register its own area: {a}"
            );
            ensure!(
                b == copy::ThreadBackend::RseqFallback(copy::Fallback::Register(22)),
                "copy B must fall back with EINVAL (A's registration exists): {b}"
            );
        }
        _ => return Err(format!("two-copies: libc or own, not {area:?}")),
    }
    let old_nsec = kstats::set_slice_nsec(50_000)?;
    let before = kstats::read()?;
    let (sa, sb) = (
        ecs_sys::backend::linux::stats(),
        ecs_sys_copy::backend::linux::stats(),
    );
    let rounds = rounds_for_ns(300);
    let b_on = area == "libc";
    let stop = Arc::new(AtomicBool::new(false));
    let hs: Vec<_> = (0..8u64)
        .map(|i| {
            let stop = stop.clone();
            thread::spawn(move || {
                worker(0x9e37_79b9_7f4a_7c15 ^ (i << 32 | i), &stop, rounds, b_on)
            })
        })
        .collect();
    thread::sleep(scaled_ms(3000));
    stop.store(true, Ordering::Relaxed);
    let mut all = Seen::default();
    for h in hs {
        let s = h.join().map_err(|_| "worker panicked")?;
        all.steps += s.steps;
        all.idle_checks += s.idle_checks;
        all.violations += s.violations;
        all.only_one_inside += s.only_one_inside;
        all.shared_seen += s.shared_seen;
        if all.first.is_none() {
            all.first = s.first;
        }
    }
    let k = kstats::read()?.since(&before);
    kstats::set_slice_nsec(old_nsec)?;
    let (ea, eb) = (
        ecs_sys::backend::linux::stats(),
        ecs_sys_copy::backend::linux::stats(),
    );
    let (ga, ya) = (ea.grants - sa.grants, ea.yields - sa.yields);
    let (gb, yb) = (eb.grants - sb.grants, eb.yields - sb.yields);
    println!(
        "linux-guest: two copies: {} steps, {} idle checks, {} violations; one copy inside {} \
         times, the other saw its request {} times; A grants {ga} yields {ya}, B grants {gb} \
         yields {yb}; kernel sgrant {} syield {} sexpir {} srevok {} sabort {}",
        all.steps,
        all.idle_checks,
        all.violations,
        all.only_one_inside,
        all.shared_seen,
        k.sgrant,
        k.syield,
        k.sexpir,
        k.srevok,
        k.sabort
    );
    ensure!(
        all.violations == 0,
        "{} violations; first: {}",
        all.violations,
        all.first.unwrap_or_default()
    );
    ensure!(all.idle_checks > 100, "too few idle points judged");
    ensure!(
        ya + yb == k.syield,
        "the copies' yields {ya} + {yb} != kernel syield {}",
        k.syield
    );
    ensure!(
        k.syield <= ga + gb && ga + gb <= k.sgrant,
        "grants seen {ga} + {gb} not within [syield {}, sgrant {}]",
        k.syield,
        k.sgrant
    );
    ensure!(
        ya > 0,
        "copy A never yielded a grant: its exit path went untested"
    );
    if area == "libc" {
        ensure!(
            yb > 0,
            "copy B never yielded a grant: its exit path went untested"
        );
        // A grant replaces `request` by `granted`; only a revocation clears both.
        ensure!(
            all.shared_seen * 10 >= all.only_one_inside * 9,
            "the copies do not share the byte: only {} of {} looks showed the other's request",
            all.shared_seen,
            all.only_one_inside
        );
        let (judged, flagged) = detector_self_test();
        println!(
            "linux-guest: detector self-test: a restoring user left the request set in {flagged} of {judged} rounds"
        );
        ensure!(
            judged > 0 && flagged * 10 >= judged * 9,
            "the detector missed a broken user ({flagged} of {judged} rounds flagged)"
        );
    } else {
        ensure!(
            yb == 0 && gb == 0,
            "copy B fell back but counted grants {gb} / yields {yb}"
        );
    }
    Ok(())
}
