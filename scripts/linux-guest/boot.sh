#!/usr/bin/env bash
# Builds the Linux-guest test program and boots it on the test kernel under QEMU (TCG, 2
# vCPUs), turning the guest's verdict into the exit code.
#
# Usage: scripts/linux-guest/boot.sh [test|suites|copies|bench|window]     (default: test)
#   test   two boots: every check (plan `test`), then the checks with the extension disabled
#          on the kernel command line (`rseq_slice_ext=0`, plan `disabled`)
#   suites one boot: only the native test suite (every test binary of ecs-locks and ecs-sys),
#          on the extension and opted out
#   copies one boot: only the two-copies checks (part of `test`)
#   bench  one boot: the benchmark (extension off and on, alternating twice)
#   window one boot: diagnostics of where grants end (5 and 50 us grants; counts, no figures)
#
# Environment:
#   ECS_GUEST_SCALE  multiplies the guest's durations and counts (default 0.3 for the tests,
#                    1 for the benchmark)
#   QEMU_TIMEOUT     seconds before a boot is killed as hung (default 600)
#   ECS_GUEST_KERNEL a bzImage to boot instead of kernel.sh's
#   ECS_GUEST_SLICE_NS  bench only: the kernel's grant length (debugfs rseq/slice_ext_nsec,
#                    5000..50000; default the kernel's 5000)
#   ECS_GUEST_ACCEL  bench and window only: QEMU's accelerator (default tcg; kvm needs
#                    /dev/kvm). The tests always run under TCG.
#   ECS_GUEST_ICOUNT bench and window under TCG only: the guest's clocks (TSC, APIC timer).
#                    A shift N (default 0): `-icount shift=N,sleep=off`, they count emulated
#                    instructions, 2^N ns each, so host load and QEMU's own device emulation
#                    cost no guest time; `off`: host time, both vCPUs in parallel (MTTCG), where
#                    the kernel's path from a grant to arming its timer takes longer than a 5 us
#                    grant (docs/BENCHMARKS.md, "Linux guest"). The tests always run on host time.
# Exit codes: 0 pass, 1 a check failed, 2 the kernel, QEMU or libc could not be had.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
. "$here/common.sh"
mode=${1:-test}
case $mode in test | suites | copies | bench | window) ;; *) log "usage: boot.sh [test|suites|copies|bench|window]"; exit 2 ;; esac
accel=tcg
case $mode in bench | window) accel=${ECS_GUEST_ACCEL:-tcg} ;; esac
case $accel in
    tcg) ;;
    kvm) [ -w /dev/kvm ] || { log "ECS_GUEST_ACCEL=kvm needs a writable /dev/kvm"; exit 2; } ;;
    *) log "ECS_GUEST_ACCEL: tcg or kvm, not $accel"; exit 2 ;;
esac
icount=()
icount_shift=
if [ "$accel" = tcg ] && { [ "$mode" = bench ] || [ "$mode" = window ]; }; then
    icount_shift=${ECS_GUEST_ICOUNT:-0}
fi
if [ "$icount_shift" = off ]; then icount_shift=; fi
if [ -n "$icount_shift" ]; then
    case $icount_shift in [0-9]) ;; *) log "ECS_GUEST_ICOUNT: a shift 0..9 or off, not $icount_shift"; exit 2 ;; esac
    icount=(-icount "shift=$icount_shift,sleep=off")
fi

if [ -n "${ECS_GUEST_KERNEL:-}" ]; then
    kernel=$ECS_GUEST_KERNEL
else
    kernel=$("$here/kernel.sh") || { log "no test kernel"; exit 2; }
fi
command -v qemu-system-x86_64 >/dev/null 2>&1 || ensure_debs qemu-system-x86 \
    || { log "qemu-system-x86 could not be installed"; exit 2; }
command -v qemu-system-x86_64 >/dev/null 2>&1 || { log "no qemu-system-x86_64"; exit 2; }

# Debian unstable's glibc (>= 2.41 registers rseq in v2 mode) for the dynamically linked copy.
sysroot=$(
    exec 9>"$cache_root/sid-libc.lock"
    flock 9
    sid_apt_setup || exit 1
    libc_deb=$(sid_download libc6) || exit 1
    gcc_deb=$(sid_download libgcc-s1) || exit 1
    dir="$cache_root/sid-libc-$(basename "$libc_deb" .deb)"
    if [ ! -f "$dir/.done" ]; then
        rm -rf "$dir"
        mkdir -p "$dir"
        dpkg-deb -x "$libc_deb" "$dir"
        dpkg-deb -x "$gcc_deb" "$dir"
        touch "$dir/.done"
    fi
    echo "$dir"
) || { log "Debian unstable's libc6/libgcc-s1 could not be fetched"; exit 2; }
log "libc: $(basename "$(dirname "$sysroot/.")") ($(ls "$sysroot"/usr/lib/x86_64-linux-gnu/libc.so.6 2>/dev/null || ls "$sysroot"/lib/x86_64-linux-gnu/libc.so.6))"

# The test program: static (this machine's glibc, crt-static) and dynamic; the test suites
# statically. Separate target directories keep the two link modes from rebuilding each other.
target=x86_64-unknown-linux-gnu
cd "$repo"
static_dir="$repo/target/linux-guest/static"
dyn_dir="$repo/target/linux-guest/dynamic"
log "building the guest program (static and dynamic) and the test suites (static)"
RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR="$static_dir" \
    nice -n 10 cargo build --release --quiet -p linux-guest --target "$target"
CARGO_TARGET_DIR="$dyn_dir" nice -n 10 cargo build --release --quiet -p linux-guest --target "$target"
# Every test binary of ecs-locks (unit and every tests/*.rs) and ecs-sys's unit tests: the
# guest runs the whole native suite on the extension and opted out.
tests_json=$(RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR="$static_dir" \
    nice -n 10 cargo test --release --quiet --no-run -p ecs-locks -p ecs-sys --target "$target" \
    --lib --tests --message-format=json)
# "name path" per test executable (the unit tests' target names are the crates').
suite_exes() {
    echo "$tests_json" | python3 -c '
import json, sys
seen = {}
for line in sys.stdin:
    try: m = json.loads(line)
    except ValueError: continue
    if m.get("reason") == "compiler-artifact" and m.get("profile", {}).get("test") and m.get("executable"):
        name, exe = m["target"]["name"], m["executable"]
        if seen.get(name, exe) != exe:
            sys.exit("two test binaries named " + name + ": " + seen[name] + " and " + exe)
        seen[name] = exe
for name, exe in sorted(seen.items()):
    print(name, exe)'
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root="$work/root"
mkdir -p "$root"/{bin,dev,proc,sys,lib64,lib/x86_64-linux-gnu}
cp "$static_dir/$target/release/linux-guest" "$root/init"
cp "$dyn_dir/$target/release/linux-guest" "$root/bin/linux-guest-dyn"
mkdir -p "$root/bin/suites"
suites=$(suite_exes) || { log "the test binaries could not be listed"; exit 1; }
n_suites=0
while read -r name exe; do
    [ -n "$name" ] || continue
    cp "$exe" "$root/bin/suites/$name"
    n_suites=$((n_suites + 1))
done <<<"$suites"
[ "$n_suites" -gt 0 ] || { log "no test executables were built"; exit 1; }
log "$n_suites test binaries for the guest: $(ls "$root/bin/suites" | tr '\n' ' ')"
for d in "$sysroot/usr/lib/x86_64-linux-gnu" "$sysroot/lib/x86_64-linux-gnu"; do
    [ -d "$d" ] && cp -a "$d"/. "$root/lib/x86_64-linux-gnu/"
done
ld=$(find "$sysroot" -name 'ld-linux-x86-64.so.2' | head -1)
cp -L "$ld" "$root/lib64/ld-linux-x86-64.so.2"
(cd "$root" && find . | cpio -o -H newc 2>/dev/null | gzip -1 >"$work/initramfs.gz")

# Under TCG the guest's TSC counts at the host's TSC rate, but the minimal kernel has no
# reference timer (HPET/PM timer need ACPI) to calibrate it against and would fall back to a
# 4 ms jiffies clock: give it the host's rate.
tsc_khz=$(awk -F: '/^cpu MHz/ {printf "%d", $2 * 1000; exit}' /proc/cpuinfo)
# With -icount the guest's TSC counts virtual nanoseconds: 1 GHz whatever the shift.
[ ${#icount[@]} -eq 0 ] || tsc_khz=1000000
tsc_words=${tsc_khz:+tsc_early_khz=$tsc_khz}

# Boots once with plan $1 and extra kernel words; prints the console; fails without a pass.
boot() {
    local plan=$1 scale=$2
    shift 2
    log "booting plan $plan under $accel${icount_shift:+ with -icount shift=$icount_shift} ($*)"
    local out="$work/console-$plan.txt"
    # -cpu max: RDRAND (with random.trust_cpu=on the kernel's CRNG is ready at boot; without it
    # getrandom() blocks for a minute or more under TCG). tsc=reliable + tsc_early_khz: see above.
    timeout "${QEMU_TIMEOUT:-600}" qemu-system-x86_64 -accel "$accel" "${icount[@]}" -cpu max -smp 2 -m 1024 \
        -kernel "$kernel" -initrd "$work/initramfs.gz" \
        -append "console=ttyS0 quiet panic=-1 random.trust_cpu=on tsc=reliable $tsc_words ECS_GUEST_PLAN=$plan ECS_GUEST_SCALE=$scale $*" \
        -nographic -no-reboot </dev/null 2>&1 | tr -d '\r' \
        | sed -u -e 's/\x1b\[[0-9;?]*[a-zA-Z]//g' -e 's/\x1bc//g' | tee "$out" || true
    grep -q '^ECS-GUEST-VERDICT: pass' "$out"
}

rc=0
if [ "$mode" = test ]; then
    scale=${ECS_GUEST_SCALE:-0.3}
    boot test "$scale" || rc=1
    boot disabled "$scale" rseq_slice_ext=0 || rc=1
elif [ "$mode" = suites ] || [ "$mode" = copies ]; then
    boot "$mode" "${ECS_GUEST_SCALE:-0.3}" || rc=1
elif [ "$mode" = window ]; then
    boot window "${ECS_GUEST_SCALE:-1}" || rc=1
else
    boot bench "${ECS_GUEST_SCALE:-1}" ${ECS_GUEST_SLICE_NS:+ECS_GUEST_SLICE_NS=$ECS_GUEST_SLICE_NS} || rc=1
fi
[ $rc -eq 0 ] && log "verdict: pass" || log "verdict: FAIL"
exit $rc
