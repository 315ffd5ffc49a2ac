#!/usr/bin/env bash
# Runs every test of the workspace: unit, integration, proptest, stress, doc tests, the examples,
# the benchmarks in test mode (each once, so they cannot rot), the guest program's lints, and
# the loom models. This is the README's test command; .ci/run runs exactly this after fmt/clippy.
#
# Environment:
#   LOOM_MAX_PREEMPTIONS  bound of the loom models (default 2: minutes, not hours)
#   SKIP_LOOM=1           leave the loom models out (local iteration only; CI never sets it)
set -euo pipefail
cd "$(dirname "$0")/.."

passed=0
failed=0
failures=()
step() {
    local name=$1
    shift
    echo
    echo "=== test-all: $name"
    local t0=$SECONDS
    if "$@"; then
        passed=$((passed + 1))
        echo "=== test-all: $name ok ($((SECONDS - t0)) s)"
    else
        failed=$((failed + 1))
        failures+=("$name")
        echo "=== test-all: $name FAILED ($((SECONDS - t0)) s)"
    fi
}

if [ -e /dev/kvm ]; then
    echo "test-all: /dev/kvm present: the shim's VM tests boot real guests"
else
    echo "test-all: /dev/kvm absent: the shim's VM tests will skip with a printed reason"
fi

step "unit, integration, proptest, stress, benches in test mode" \
    cargo test --workspace --all-targets
# ecs-sys-copy compiles ecs-sys/src/lib.rs again under another crate name, so the doc tests
# (which name `ecs_sys`) are ecs-sys's; `--doc` ignores its `doctest = false`.
step "doc tests" cargo test --workspace --doc --exclude ecs-sys-copy
# Every Cargo feature at once must be sound on an ordinary host (no feature selects a backend).
step "all features" cargo test --workspace --all-features
# The two cfgs a final binary may set (never a dependency); each in its own target dir so the
# main build's artifacts stay valid.
step "blocking locks on the no_std/guest wait queue (--cfg ecs_portable_park)" \
    env RUSTFLAGS="--cfg ecs_portable_park" CARGO_TARGET_DIR=target/portable-park \
    cargo test -p ecs-locks --test stress_blocking --test proptest_blocking
# The blocking-section mark is a no-op natively: this build counts it, so the tests can see
# which thread a lock marks (with and without `send_guard`, whose guards may be released on
# another thread).
step "blocking marks counted (--cfg ecs_count_hints), with and without send_guard" \
    env RUSTFLAGS="--cfg ecs_count_hints" CARGO_TARGET_DIR=target/count-hints ECS_EXPECT_COUNTED_HINTS=1 \
    sh -c 'cargo test -p ecs-locks --test parking_lot_features &&
        cargo test -p ecs-locks --features send_guard --test parking_lot_features'
step "no_std build (no backend)" cargo build -p ecs-locks --no-default-features
# A freestanding no_std binary (no libc, its own workspace and link arguments) that uses every
# lock of the no-backend build and exits 0 only if they all behaved.
step "no_std freestanding binary links and runs (no-std-link/)" \
    cargo run --quiet --release --locked --manifest-path no-std-link/Cargo.toml
# Publishability: package ecs-sys, then ecs-locks resolved against that package (cargo >= 1.90
# packages a workspace's path dependencies together), each verified by a build of the unpacked
# crate. --allow-dirty: the check is about the package contents, not the VCS state (local runs
# have uncommitted work).
step "cargo package (ecs-sys, then ecs-locks)" \
    cargo package --quiet --allow-dirty --locked -p ecs-sys -p ecs-locks
step "no_std build (guest backend, --cfg ecs_guest)" \
    env RUSTFLAGS="--cfg ecs_guest" CARGO_TARGET_DIR=target/guest-cfg \
    cargo build -p ecs-locks --no-default-features
# The README's main command in miniature (every lock kind, 8 on 2, 2 paired rounds of 0.2 s runs:
# well under 2 minutes); it fails if a run fails its checks. Needs /dev/kvm, like the VM tests.
if [ -e /dev/kvm ]; then
    step "shim smoke compare (2 rounds, short runs)" \
        cargo run --quiet -p hypervisor-shim --bin ecs-shim -- compare --preset smoke
    step "shim smoke compare of two VMs on one host (2 rounds, short runs)" \
        cargo run --quiet -p hypervisor-shim --bin ecs-shim -- compare --vm-preset vm-smoke
elif [ "${CI:-}" = true ]; then
    step "shim smoke compare: /dev/kvm is required under CI=true" false
else
    echo "test-all: skipping the shim smoke compare: /dev/kvm is not available"
fi
for ex in $(ls examples/*.rs 2>/dev/null | xargs -rn1 basename | sed 's/\.rs$//'); do
    step "example $ex" cargo run --quiet --example "$ex"
done
step "linux-rseq backend on a Linux 7.x kernel under QEMU (scripts/linux-guest/test.sh)" \
    scripts/linux-guest/test.sh
if [ "${SKIP_LOOM:-0}" != 1 ]; then
    step "loom models (LOOM_MAX_PREEMPTIONS=${LOOM_MAX_PREEMPTIONS:-2})" \
        env RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
        LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-2}" \
        cargo test -p loom-tests --release
fi

echo
if [ "$failed" -ne 0 ]; then
    printf 'test-all: failed step: %s\n' "${failures[@]}"
fi
echo "summary: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
