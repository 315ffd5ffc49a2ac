//! The checks, one per subcommand; each returns `Err(reason)` on failure.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;

use ecs_locks::{McsMutex, Rcu, SpinMutex, SpinRwLock, TicketMutex};
use ecs_sys::backend::linux::{self, Fallback, RseqArea, ThreadBackend};

use crate::kstats;
use crate::work::{now_ns, rounds_for_ns, scaled, scaled_ms, spin_work};

type Check = Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

const USAGE: &str = "linux-guest CHECK: expect own|libc|legacy|opt-out-env|prctl-524, opt-out-api, \
                     grants, nested, syscall, hog, fork, seccomp-prctl, seccomp-yield, bench, bench-one LOCK, bench-pairs, window [GRANT_NS], \
                     two-copies libc|own";

/// Runs the check `args[0]`.
pub fn dispatch(args: &[String]) -> Check {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    match a.as_slice() {
        ["expect", what] => expect(what),
        ["opt-out-api"] => opt_out_api(),
        ["grants"] => grants(),
        ["nested"] => nested(),
        ["syscall"] => syscall(),
        ["hog"] => hog(),
        ["fork"] => fork(),
        ["seccomp-prctl"] => seccomp_prctl(),
        ["seccomp-yield"] => seccomp_yield(),
        ["bench"] => crate::bench::run(),
        ["bench-one", lock] => crate::bench::one(lock),
        ["bench-pairs"] => crate::pairs::one(),
        ["two-copies", area] => crate::copies::run(area),
        ["window"] => crate::window::run(None),
        ["window", ns] => crate::window::run(Some(
            ns.parse()
                .map_err(|e| format!("window: grant {ns:?}: {e}"))?,
        )),
        ["help"] | [] => {
            println!("{USAGE}");
            Ok(())
        }
        _ => Err(format!("unknown check; {USAGE}")),
    }
}

fn matches(what: &str, got: ThreadBackend) -> bool {
    match (what, got) {
        ("own", ThreadBackend::RseqExtension(RseqArea::Own)) => true,
        ("libc", ThreadBackend::RseqExtension(RseqArea::Libc)) => true,
        ("legacy", ThreadBackend::RseqFallback(Fallback::LibcLegacy { size, .. })) => size < 33,
        ("opt-out-env", ThreadBackend::RseqFallback(Fallback::OptOutEnv)) => true,
        ("prctl-524", ThreadBackend::RseqFallback(Fallback::Prctl(524))) => true,
        _ => false,
    }
}

/// This thread and a new one get `what`; the message names the tunable for legacy.
fn expect(what: &str) -> Check {
    let main = ecs_sys::thread_backend();
    println!("linux-guest: main thread: {main}");
    ensure!(matches(what, main), "expected {what}, got {main}");
    let other = thread::spawn(ecs_sys::thread_backend)
        .join()
        .map_err(|_| "thread panicked")?;
    println!("linux-guest: second thread: {other}");
    ensure!(
        matches(what, other),
        "second thread: expected {what}, got {other}"
    );
    if what == "legacy" {
        ensure!(
            main.to_string()
                .contains("GLIBC_TUNABLES=glibc.pthread.rseq=0"),
            "the legacy reason must name the tunable: {main}"
        );
    }
    if what == "own" || what == "libc" {
        // A section requests (unless already granted), the outermost exit clears. The kernel
        // clears `request` itself when it preempts the thread inside (a revoked or refused
        // grant), so "requested inside" is judged over many sections, "clear after" on each.
        let l = SpinMutex::new(0u32);
        let mut seen = 0;
        for _ in 0..100 {
            {
                let _g = l.lock();
                let (req, granted) =
                    linux::slice_ctrl().ok_or("no slice_ctrl with the extension on")?;
                seen += u32::from(req || granted);
            }
            let (req, _) = linux::slice_ctrl().ok_or("slice_ctrl vanished")?;
            ensure!(!req, "request left set after the section");
        }
        ensure!(
            seen >= 90,
            "only {seen} of 100 sections showed a request inside"
        );
    }
    Ok(())
}

/// `opt_out()` before a thread's first lock makes it (and later threads) take the native path;
/// a thread that already decided keeps the extension.
fn opt_out_api() -> Check {
    let before = ecs_sys::thread_backend();
    ensure!(
        matches("own", before),
        "before the opt-out the main thread should use its own area, got {before}"
    );
    linux::opt_out();
    let after = thread::spawn(|| {
        let l = TicketMutex::new(());
        drop(l.lock());
        (ecs_sys::thread_backend(), linux::slice_ctrl())
    })
    .join()
    .map_err(|_| "thread panicked")?;
    println!("linux-guest: after opt_out(), a new thread: {}", after.0);
    ensure!(
        after.0 == ThreadBackend::RseqFallback(Fallback::OptOutApi) && after.1.is_none(),
        "a thread deciding after opt_out() must fall back, got {}",
        after.0
    );
    ensure!(
        ecs_sys::thread_backend() == before,
        "a decided thread keeps its decision"
    );
    Ok(())
}

/// 8 threads, each round-robin over the spin-family locks and RCU readers, ~1 µs sections, at
/// the longest grant (50 µs: under TCG the kernel's own exit path eats most of the default 5 µs,
/// and nearly every grant is revoked before the section can end; the benchmark keeps 5 µs).
/// The crate's successful yields equal the rise of `syield` (this program is the kernel's only
/// user of the extension), the grants it saw lie between `syield` and `sgrant`, and the
/// protected counters are exact.
fn grants() -> Check {
    let backend = ecs_sys::thread_backend();
    ensure!(
        matches!(backend, ThreadBackend::RseqExtension(_)),
        "the extension must be on for this check: {backend}"
    );
    let threads = 8;
    let dur = scaled_ms(3000);
    let rounds = rounds_for_ns(1000);
    let spin = Arc::new(SpinMutex::new(0u64));
    let ticket = Arc::new(TicketMutex::new(0u64));
    let mcs = Arc::new(McsMutex::new(0u64));
    let rw = Arc::new(SpinRwLock::new(0u64));
    let rcu = Arc::new(Rcu::new(7u64));
    let stop = Arc::new(AtomicBool::new(false));
    let old_nsec = kstats::set_slice_nsec(50_000)?;
    let before = kstats::read()?;
    let crate_before = linux::stats();
    let hs: Vec<_> = (0..threads)
        .map(|i| {
            let (spin, ticket, mcs, rw, rcu, stop) = (
                spin.clone(),
                ticket.clone(),
                mcs.clone(),
                rw.clone(),
                rcu.clone(),
                stop.clone(),
            );
            thread::spawn(move || {
                let mut ops = [0u64; 4];
                let mut bad_reads = 0u64;
                let mut k = i;
                while !stop.load(Ordering::Relaxed) {
                    match k % 5 {
                        0 => {
                            let mut g = spin.lock();
                            spin_work(rounds);
                            *g += 1;
                            ops[0] += 1;
                        }
                        1 => {
                            let mut g = ticket.lock();
                            spin_work(rounds);
                            *g += 1;
                            ops[1] += 1;
                        }
                        2 => {
                            let mut g = mcs.lock();
                            spin_work(rounds);
                            *g += 1;
                            ops[2] += 1;
                        }
                        3 => {
                            let mut g = rw.write();
                            spin_work(rounds);
                            *g += 1;
                            ops[3] += 1;
                        }
                        _ => {
                            let g = rcu.read();
                            spin_work(rounds);
                            if *g != 7 {
                                bad_reads += 1;
                            }
                        }
                    }
                    k += 1;
                    spin_work(rounds);
                }
                (ops, bad_reads)
            })
        })
        .collect();
    thread::sleep(dur);
    stop.store(true, Ordering::Relaxed);
    let mut total = [0u64; 4];
    let mut bad = 0;
    for h in hs {
        let (ops, b) = h.join().map_err(|_| "worker panicked")?;
        for (t, o) in total.iter_mut().zip(ops) {
            *t += o;
        }
        bad += b;
    }
    let k = kstats::read()?.since(&before);
    kstats::set_slice_nsec(old_nsec)?;
    let c = linux::stats();
    let (grants, yields) = (
        c.grants - crate_before.grants,
        c.yields - crate_before.yields,
    );
    println!(
        "linux-guest: ops spin/ticket/mcs/rw = {total:?}; crate: grants {grants} yields {yields}; \
         kernel: sgrant {} syield {} sexpir {} srevok {} sabort {}",
        k.sgrant, k.syield, k.sexpir, k.srevok, k.sabort
    );
    ensure!(*spin.lock() == total[0], "SpinMutex lost updates");
    ensure!(*ticket.lock() == total[1], "TicketMutex lost updates");
    ensure!(*mcs.lock() == total[2], "McsMutex lost updates");
    ensure!(*rw.read() == total[3], "SpinRwLock lost updates");
    ensure!(bad == 0, "RCU readers saw a wrong value {bad} times");
    ensure!(
        k.sgrant > 0,
        "the kernel granted no extension in {dur:?} of 8 threads on 2 vCPUs"
    );
    ensure!(
        yields == k.syield,
        "crate yields {yields} != kernel syield {}",
        k.syield
    );
    ensure!(
        yields > 0,
        "no section ended inside its grant: the yield path went untested"
    );
    ensure!(
        k.syield <= grants && grants <= k.sgrant,
        "grants seen {grants} not within [syield {}, sgrant {}]",
        k.syield,
        k.sgrant
    );
    Ok(())
}

/// Nested sections: `request` set once at the outermost entry, still set after an inner exit,
/// cleared at the outermost exit; the depth follows.
fn nested() -> Check {
    let a = SpinMutex::new(());
    let b = McsMutex::new(());
    let r = Rcu::new(1u8);
    let set = || linux::slice_ctrl().map(|(req, granted)| req || granted);
    let backend = ecs_sys::thread_backend();
    ensure!(
        linux::slice_ctrl().is_some(),
        "the extension must be on: {backend}"
    );
    // The kernel may grant and then revoke inside an iteration (a reschedule after the grant
    // leaves both bytes clear, as its ABI says): such an iteration proves nothing about the
    // crate and is left out, judged by the kernel's `sgrant` around it (read outside sections).
    let (mut judged, mut skipped) = (0u64, 0u64);
    for _ in 0..scaled(1000, 10) {
        let g0 = kstats::read()?.sgrant;
        let ga = a.lock();
        let outer = set();
        let depth3 = {
            let _gb = b.lock();
            let _gr = r.read();
            ecs_sys::cs_depth()
        };
        let depth1 = ecs_sys::cs_depth();
        let after_inner = set();
        drop(ga);
        let after_outer = linux::slice_ctrl().map(|c| c.0);
        ensure!(depth3 == 3 && depth1 == 1, "depths {depth3}, {depth1}");
        ensure!(
            after_outer == Some(false),
            "outermost exit left request set"
        );
        if kstats::read()?.sgrant != g0 {
            skipped += 1;
            continue;
        }
        judged += 1;
        ensure!(outer == Some(true), "outermost entry did not request");
        ensure!(
            after_inner == Some(true),
            "an inner exit cleared the request"
        );
    }
    println!(
        "linux-guest: nested: {judged} iterations judged, {skipped} with a kernel grant left out"
    );
    ensure!(
        judged > skipped,
        "too few iterations without a grant to judge"
    );
    Ok(())
}

/// Sections that make a syscall (which revokes a grant): counters exact, the kernel's yields
/// still the crate's, the thread neither killed nor left requesting.
fn syscall() -> Check {
    let l = Arc::new(SpinMutex::new(0u64));
    let before = kstats::read()?;
    let crate_before = linux::stats();
    let n = scaled(20_000, 200);
    let rounds = rounds_for_ns(2000);
    let hs: Vec<_> = (0..8)
        .map(|_| {
            let l = l.clone();
            thread::spawn(move || {
                for _ in 0..n {
                    let mut g = l.lock();
                    spin_work(rounds);
                    // SAFETY: getppid has no preconditions.
                    unsafe { libc::getppid() };
                    *g += 1;
                }
                linux::slice_ctrl().map(|c| c.0)
            })
        })
        .collect();
    for h in hs {
        let req = h.join().map_err(|_| "worker panicked")?;
        ensure!(req == Some(false), "a thread left its request set: {req:?}");
    }
    let k = kstats::read()?.since(&before);
    let c = linux::stats();
    let yields = c.yields - crate_before.yields;
    let grants = c.grants - crate_before.grants;
    println!(
        "linux-guest: syscall sections: crate grants {grants} yields {yields}; kernel sgrant {} syield {} sabort {} srevok {}",
        k.sgrant, k.syield, k.sabort, k.srevok
    );
    ensure!(*l.lock() == 8 * n, "lost updates");
    ensure!(
        yields == k.syield,
        "crate yields {yields} != syield {}",
        k.syield
    );
    ensure!(
        grants <= k.sgrant,
        "grants seen {grants} > sgrant {}",
        k.sgrant
    );
    Ok(())
}

/// A holder that never leaves its section (it requested once) cannot keep a vCPU beyond the
/// grant: threads on another lock and threads without a lock keep progressing, and the holder
/// itself sees itself descheduled.
fn hog() -> Check {
    static HOG: SpinMutex<()> = SpinMutex::new(());
    let other = Arc::new(SpinMutex::new(0u64));
    let stop = Arc::new(AtomicBool::new(false));
    let max_gap = Arc::new(AtomicU64::new(0));
    let entered = Arc::new(AtomicBool::new(false));
    let hog = {
        let (stop, max_gap, entered) = (stop.clone(), max_gap.clone(), entered.clone());
        thread::spawn(move || {
            let _g = HOG.lock();
            // On the extension, so its entry requested (the kernel may have cleared the byte
            // since, by granting or preempting: reading it here would race).
            let requested = Some(linux::slice_ctrl().is_some());
            entered.store(true, Ordering::SeqCst);
            let mut last = now_ns();
            while !stop.load(Ordering::Relaxed) {
                let t = now_ns();
                max_gap.fetch_max(t - last, Ordering::Relaxed);
                last = t;
            }
            requested
        })
    };
    while !entered.load(Ordering::SeqCst) {
        thread::yield_now();
    }
    let progress: Vec<Arc<AtomicU64>> = (0..6).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let hs: Vec<_> = progress
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (p, other, stop) = (p.clone(), other.clone(), stop.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if i < 3 {
                        *other.lock() += 1;
                    } else {
                        spin_work(100);
                    }
                    p.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let window = scaled_ms(1000);
    thread::sleep(window);
    let mid: Vec<u64> = progress.iter().map(|p| p.load(Ordering::Relaxed)).collect();
    thread::sleep(window);
    let end: Vec<u64> = progress.iter().map(|p| p.load(Ordering::Relaxed)).collect();
    stop.store(true, Ordering::Relaxed);
    let requested = hog.join().map_err(|_| "hog panicked")?;
    for h in hs {
        h.join().map_err(|_| "worker panicked")?;
    }
    let gap = max_gap.load(Ordering::Relaxed);
    println!(
        "linux-guest: hog requested {requested:?}, longest time off-CPU {} us; progress {mid:?} -> {end:?}",
        gap / 1000
    );
    ensure!(
        requested == Some(true),
        "the hog did not request an extension"
    );
    // The lock threads as a group (SpinMutex is unfair: one of them may lose every race for a
    // while), each thread without a lock on its own.
    ensure!(
        end[..3].iter().sum::<u64>() > mid[..3].iter().sum::<u64>(),
        "the threads on another lock made no progress while the hog held its section"
    );
    for (i, (m, e)) in mid.iter().zip(&end).enumerate().skip(3) {
        ensure!(
            e > m,
            "lock-free thread {i} made no progress while the hog held its section"
        );
    }
    ensure!(
        gap > 1_000_000,
        "the hog was never descheduled for 1 ms (longest {gap} ns)"
    );
    Ok(())
}

/// `fork` inside a process on the extension: the child continues as its parent thread (same
/// area, still enabled: a section requests); an `exec`ed child decides afresh.
fn fork() -> Check {
    let l = SpinMutex::new(0u32);
    drop(l.lock());
    let parent = ecs_sys::thread_backend();
    ensure!(
        matches("own", parent),
        "parent should use its own area: {parent}"
    );
    // SAFETY: the child only takes a lock, reads thread-local state and calls _exit (the
    // process is single-threaded here, so no lock is held by another thread).
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // As in `expect`: requests judged over many sections (the kernel may clear one).
        let mut seen = 0;
        let mut ok = ecs_sys::thread_backend() == parent;
        for _ in 0..100 {
            {
                let _g = l.lock();
                seen += u32::from(linux::slice_ctrl().is_some_and(|(r, g)| r || g));
            }
            ok &= linux::slice_ctrl().is_some_and(|(r, _)| !r);
        }
        let ok = ok && seen >= 90;
        // SAFETY: _exit ends the child without running the parent's atexit handlers.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    ensure!(pid > 0, "fork failed: {}", std::io::Error::last_os_error());
    let mut status = 0;
    // SAFETY: waits for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "forked child: not on its parent's extension (status {status:#x})"
    );
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let st = std::process::Command::new(exe)
        .args(["expect", "own"])
        .status()
        .map_err(|e| e.to_string())?;
    ensure!(
        st.success(),
        "an exec'ed child did not get its own registration"
    );
    Ok(())
}

/// A seccomp filter refusing `prctl` (EPERM) before the thread decides: fallback with errno 1.
fn seccomp_prctl() -> Check {
    let got = thread::spawn(|| {
        crate::seccomp::deny(libc::SYS_prctl as u32, libc::EPERM as u32)?;
        Ok::<_, String>(ecs_sys::thread_backend())
    })
    .join()
    .map_err(|_| "thread panicked")??;
    println!("linux-guest: prctl refused by seccomp: {got}");
    ensure!(
        got == ThreadBackend::RseqFallback(Fallback::Prctl(libc::EPERM)),
        "expected a prctl fallback with errno 1, got {got}"
    );
    Ok(())
}

/// A seccomp filter refusing `rseq_slice_yield` (ENOSYS) in threads on the extension: the
/// first grant's failing yield turns the extension off for the process (threads deciding later
/// fall back with errno 38), the kernel counts no successful yield, counters stay exact.
fn seccomp_yield() -> Check {
    let l = Arc::new(SpinMutex::new(0u64));
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = rounds_for_ns(1000);
    // The longest grant, as in `grants`: at 5 µs TCG revokes nearly every grant.
    let old_nsec = kstats::set_slice_nsec(50_000)?;
    let before = kstats::read()?;
    let hs: Vec<_> = (0..8)
        .map(|_| {
            let (l, stop) = (l.clone(), stop.clone());
            thread::spawn(move || {
                crate::seccomp::deny(471, libc::ENOSYS as u32)?;
                let first = ecs_sys::thread_backend();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let mut g = l.lock();
                    spin_work(rounds);
                    *g += 1;
                    drop(g);
                    n += 1;
                    spin_work(rounds);
                }
                Ok::<_, String>((first, ecs_sys::thread_backend(), n))
            })
        })
        .collect();
    let deadline = now_ns() + scaled_ms(10_000).as_nanos() as u64;
    while linux::stats().grants == 0 && now_ns() < deadline {
        thread::sleep(std::time::Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    let mut switched = 0;
    let mut started_on = 0;
    for h in hs {
        let (first, last, n) = h.join().map_err(|_| "worker panicked")??;
        // A worker deciding after the first failed yield already falls back.
        let disabled = ThreadBackend::RseqFallback(Fallback::Yield(libc::ENOSYS));
        ensure!(
            matches!(first, ThreadBackend::RseqExtension(_)) || first == disabled,
            "worker started on {first}"
        );
        started_on += u32::from(first != disabled);
        switched += u32::from(last == ThreadBackend::RseqFallback(Fallback::Yield(libc::ENOSYS)));
        total += n;
    }
    let k = kstats::read()?.since(&before);
    kstats::set_slice_nsec(old_nsec)?;
    let later = thread::spawn(ecs_sys::thread_backend)
        .join()
        .map_err(|_| "thread panicked")?;
    let c = linux::stats();
    println!(
        "linux-guest: 471 refused: grants {} yields {}, {switched} workers switched, a later thread: {later}; kernel sgrant {} syield {}",
        c.grants, c.yields, k.sgrant, k.syield
    );
    ensure!(c.grants > 0, "no grant seen: nothing to test");
    ensure!(started_on >= 1, "no worker started on the extension");
    // The kernel counts `syield` at syscall entry, before the seccomp filter refuses the
    // call, so it may rise; never beyond the crate's attempts (one per grant seen).
    ensure!(
        c.yields == 0 && k.syield <= c.grants,
        "refused yields: crate counted {} successes, kernel syield {} > attempts {}",
        c.yields,
        k.syield,
        c.grants
    );
    ensure!(
        switched >= 1,
        "the worker whose yield failed did not fall back"
    );
    ensure!(
        later == ThreadBackend::RseqFallback(Fallback::Yield(libc::ENOSYS)),
        "a thread deciding after the failure must fall back with errno 38, got {later}"
    );
    ensure!(*l.lock() == total, "lost updates");
    Ok(())
}
