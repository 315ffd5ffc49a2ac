//! The scheduler's own accounting, driven directly (no KVM: guest memory is a plain mapping and
//! the test thread plays the vCPUs' hypercalls).

use super::*;
use crate::hypercall::Request;
use crate::page::GuestMemory;
use crate::sched::{ecs::Ecs, ple::Ple};

const SLICE: Duration = Duration::from_millis(4);

fn with_sched(
    nr_vcpus: u32,
    nr_pcpus: u32,
    policy: Box<dyn Policy>,
    f: impl FnOnce(&Scheduler<'_>),
) {
    let mem = GuestMemory::new(crate::page::PAGE_2M).expect("mapped");
    let area = mem.hint_area(0x1000, nr_vcpus).expect("area");
    for (i, s) in area.slots().iter().enumerate() {
        s.reset(i as u32);
    }
    let config = mem.workload_config(0).expect("config");
    f(&Scheduler::new(area, config, policy, nr_pcpus, SLICE));
}

fn state(s: &Scheduler<'_>, id: u32) -> (VcpuState, u64, u32) {
    let st = s.lock();
    let v = &st.vcpus[id as usize];
    (v.state, v.slice_start, v.ple_window)
}

#[test]
fn the_ple_window_grows_per_exit_and_resets_on_schedule_in() {
    with_sched(3, 2, Box::new(Ple { window: 8 }), |s| {
        assert_eq!(state(s, 0).2, 8, "granted at the start: base window");
        assert_eq!(s.hint(0).ple_window.load(Ordering::Relaxed), 8);
        // vCPU 2 waits, but is it eligible? It never spun: yes. A first exit of 0 yields.
        assert_eq!(s.hypercall(0, Request::PauseExit), After::Descheduled);
        assert_eq!(state(s, 2).0, VcpuState::Running { pcpu: 0 });
        assert_eq!(state(s, 0).2, 16, "grown x2 by the exit");
        // vCPU 1 exits with nobody eligible (0 spun recently: skipped this time): it keeps
        // its pCPU and its window grows on.
        assert_eq!(s.hypercall(1, Request::PauseExit), After::Resume);
        assert_eq!(
            s.hypercall(1, Request::PauseExit),
            After::Descheduled,
            "0 eligible now"
        );
        assert_eq!(state(s, 0).0, VcpuState::Running { pcpu: 1 });
        assert_eq!(state(s, 1).2, 32);
        assert_eq!(state(s, 0).2, 8, "scheduled in again: reset");
        assert_eq!(s.hint(0).ple_window.load(Ordering::Relaxed), 8);
    });
}

#[test]
fn on_spin_boosts_round_robin_from_the_last_boosted_vcpu() {
    with_sched(5, 1, Box::new(Ple { window: 8 }), |s| {
        // 0 runs; 1..=4 queued. Scans start after last_boosted (0): 1 first.
        assert_eq!(s.hypercall(0, Request::PauseExit), After::Descheduled);
        assert_eq!(state(s, 1).0, VcpuState::Running { pcpu: 0 });
        // Next scan starts after 1: 2 (0, which spun, is skipped anyway).
        assert_eq!(s.hypercall(1, Request::PauseExit), After::Descheduled);
        assert_eq!(state(s, 2).0, VcpuState::Running { pcpu: 0 });
        assert_eq!(s.hypercall(2, Request::PauseExit), After::Descheduled);
        assert_eq!(state(s, 3).0, VcpuState::Running { pcpu: 0 });
    });
}

#[test]
fn a_yield_target_runs_on_the_rest_of_the_donors_slice() {
    // Two colluding vCPUs ping-pong YieldTo: each yield used to start a fresh slice, so they
    // kept the pCPU forever. The target now inherits the donor's slice, which ends on time.
    with_sched(
        3,
        1,
        Box::new(Ecs::new(200_000, SLICE.as_nanos() as u64)),
        |s| {
            let start = state(s, 0).1;
            std::thread::sleep(Duration::from_millis(1));
            assert_eq!(s.hypercall(0, Request::YieldTo(1)), After::Descheduled);
            assert_eq!(state(s, 1), (VcpuState::Running { pcpu: 0 }, start, 0));
            std::thread::sleep(Duration::from_millis(1));
            assert_eq!(s.hypercall(1, Request::YieldTo(0)), After::Descheduled);
            assert_eq!(state(s, 0).1, start, "still the first slice");
            // vCPU 2 has waited since the start: at the end of that one slice the holder goes.
            s.tick(start + SLICE.as_nanos() as u64);
            assert!(
                s.lock().vcpus[0].preempt_pending,
                "preempted at the donor's slice end"
            );
            // A plain Yield ends the donor's slice: the queue head starts a fresh one.
            let s1 = s.now();
            let mut st = s.lock();
            st.vcpus[0].preempt_pending = false;
            drop(st);
            assert_eq!(s.hypercall(0, Request::Yield), After::Descheduled);
            // (The directed yields kept the queue order: 1 is ahead of 2.)
            let (head, slice, _) = state(s, 1);
            assert_eq!(head, VcpuState::Running { pcpu: 0 });
            assert!(slice >= s1, "fresh slice");
        },
    );
}

#[test]
fn halt_polling_keeps_the_pcpu_for_a_kick_and_adapts_its_window() {
    with_sched(
        2,
        2,
        Box::new(Ecs::new(200_000, SLICE.as_nanos() as u64)),
        |s| {
            // The first halt does not poll (window 0); a short halt grows the window.
            assert_eq!(s.hypercall(0, Request::Wait), After::Descheduled);
            assert_eq!(s.hypercall(1, Request::Kick(0)), After::Resume);
            assert_eq!(
                state(s, 0).0,
                VcpuState::Running { pcpu: 0 },
                "nobody waited"
            );
            assert_eq!(s.lock().vcpus[0].poll_ns, super::halt_poll::GROW_START);
            // The next halt polls, keeping pCPU 0; a kick from another thread ends it.
            let until = match s.hypercall(0, Request::Wait) {
                After::Poll { until } => until,
                other => panic!("{other:?}"),
            };
            assert!(until > s.now() - 1 && until <= s.now() + super::halt_poll::GROW_START);
            std::thread::scope(|t| {
                t.spawn(|| {
                    assert_eq!(s.hypercall(1, Request::Kick(0)), After::Resume);
                });
                // Polls until the kick (or the window's end, if the kicker was late).
                let _ = s.poll(0, u64::MAX);
            });
            assert_eq!(state(s, 0).0, VcpuState::Running { pcpu: 0 });
            let st = s.lock();
            assert_eq!(
                (
                    st.vcpus[0].stats.halt_polls,
                    st.vcpus[0].stats.halt_poll_hits
                ),
                (1, 1)
            );
            assert_eq!(
                st.vcpus[0].stats.halts, 1,
                "only the first halt gave the pCPU up"
            );
        },
    );
}

#[test]
fn a_poll_without_a_kick_ends_in_a_real_halt() {
    with_sched(2, 2, Box::new(Ple { window: 8 }), |s| {
        s.lock().vcpus[0].poll_ns = 20_000;
        let After::Poll { until } = s.hypercall(0, Request::Wait) else {
            panic!("polls");
        };
        assert_eq!(s.poll(0, until), After::Descheduled);
        assert_eq!(state(s, 0).0, VcpuState::Halted);
        assert_eq!(s.lock().vcpus[0].stats.halt_poll_hits, 0);
    });
}

#[test]
fn tick_lateness_runs_from_the_slice_end_to_the_vcpu_leaving() {
    with_sched(
        3,
        1,
        Box::new(Ecs::new(200_000, SLICE.as_nanos() as u64)),
        |s| {
            let end = state(s, 0).1 + SLICE.as_nanos() as u64;
            while s.now() < end + 2_000_000 {
                std::thread::sleep(Duration::from_millis(1));
            }
            // The tick comes 2 ms late; the thread acknowledges 1 ms after it.
            s.tick(s.now());
            std::thread::sleep(Duration::from_millis(1));
            assert_eq!(s.on_eintr(0), After::Descheduled);
            let l = s.lateness_ns();
            assert_eq!(l.len(), 1);
            assert!(l[0] >= 3_000_000, "{l:?}");
            // vCPU 1 enters a section between the tick and its acknowledgement: the policy
            // decides again and extends it; the dropped request leaves no sample.
            let end = state(s, 1).1 + SLICE.as_nanos() as u64;
            while s.now() < end {
                std::thread::sleep(Duration::from_millis(1));
            }
            s.tick(s.now());
            s.hint(1).cs_depth.store(1, Ordering::Release);
            assert_eq!(s.on_eintr(1), After::Resume);
            assert_eq!(s.lateness_ns().len(), 1);
        },
    );
}

/// A kick that counts (the test plays the vCPU thread).
#[derive(Default)]
struct CountingKick(std::sync::Arc<core::sync::atomic::AtomicU32>);

impl Kick for CountingKick {
    fn kick(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    fn set_exit_request(&self, _: bool) {}
}

#[test]
fn a_tick_that_finds_the_lock_held_still_preempts_on_time() {
    with_sched(
        3,
        2,
        Box::new(Ecs::new(200_000, SLICE.as_nanos() as u64)),
        |s| {
            let kicks: Vec<_> = (0..3)
                .map(|id| {
                    let k = CountingKick::default();
                    let n = k.0.clone();
                    s.register_thread(id, Box::new(k));
                    n
                })
                .collect();
            // vCPU 1 is in a section: the policy will extend it, not preempt it.
            s.hint(1).cs_depth.store(1, Ordering::Release);
            let end = state(s, 0).1 + SLICE.as_nanos() as u64;
            while s.now() < end {
                std::thread::sleep(Duration::from_millis(1));
            }
            // Another thread holds the lock (a vCPU thread the host descheduled): the tick
            // does not wait for it, it kicks both holders whose slice is over.
            let held = s.lock();
            s.tick(s.now());
            drop(held);
            assert_eq!(s.lockfree_kicks(), 2);
            assert_eq!(kicks[0].load(Ordering::Relaxed), 1);
            assert_eq!(kicks[1].load(Ordering::Relaxed), 1);
            // A second lock-free tick does not kick again while the requests stand.
            let held = s.lock();
            s.tick(s.now());
            drop(held);
            assert_eq!(s.lockfree_kicks(), 2);
            // The vCPU threads bring the requests to the policy: 0 is preempted (2 gets the
            // pCPU), 1 is in its section and gets its extension instead.
            assert_eq!(s.on_eintr(0), After::Descheduled);
            assert_eq!(state(s, 2).0, VcpuState::Running { pcpu: 0 });
            assert_eq!(s.on_eintr(1), After::Resume);
            assert!(s.lock().vcpus[1].ext_until.is_some(), "extended");
            assert_eq!(s.lateness_ns().len(), 1, "0's lateness measured");
            // During the extension the lock-free path leaves 1 alone (its end is the
            // policy's to find); 2's fresh slice is not over.
            let held = s.lock();
            s.tick(s.now());
            drop(held);
            assert_eq!(s.lockfree_kicks(), 2);
        },
    );
}
