#!/bin/bash
# A/B test of two or more builds of the paired benchmark (benches/paired.rs), for a change
# that one binary cannot compare with itself.
#
# Usage: scripts/bench-ab.sh ROUNDS FILTER BIN...
#   Build each variant with `cargo bench --bench paired --no-run` and copy the executable it
#   names (target/release/deps/paired-*) away, e.g. to /tmp/before and /tmp/after. Then ROUNDS
#   times, in a freshly shuffled order, each BIN runs `PAIRED_FILTER=FILTER PAIRED_ROUNDS=2 BIN
#   --bench` (two paired rounds against parking_lot inside one invocation). Prints, per binary,
#   lock and scenario, the ratio to parking_lot of every invocation (that invocation's median),
#   sorted, then the load average. Run it on a quiet machine.
#
# Example: scripts/bench-ab.sh 6 Ticket /tmp/before /tmp/after
set -euo pipefail
if [ $# -lt 3 ] || ! [[ $1 =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: scripts/bench-ab.sh ROUNDS FILTER BIN..." >&2
    exit 2
fi
rounds=$1 filter=$2
shift 2
for b in "$@"; do
    [ -x "$b" ] || { echo "bench-ab: $b is not an executable" >&2; exit 2; }
done
for _ in $(seq "$rounds"); do
    for b in $(printf '%s\n' "$@" | shuf); do
        PAIRED_FILTER=$filter PAIRED_ROUNDS=2 "$b" --bench 2>/dev/null |
            awk -v b="$(basename "$b")" '$2 ~ /^(uncontended|2-threads|8-threads)$/ && $1 !~ /^parking_lot/ {print b, $1, $2, $(NF-1)}'
    done
done | sort -k1,3 -k4,4n | awk '{k = $1 " " $2 " " $3; v[k] = v[k] " " $4} END {for (k in v) print k, v[k]}' | sort
uptime
