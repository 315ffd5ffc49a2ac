#!/usr/bin/env bash
# The Linux-guest tests as a test-all step: boot.sh test, where a missing kernel, QEMU or
# libc (boot.sh's exit code 2) is a skip with the printed reason, except under CI=true, where
# a skip fails.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
"$here/boot.sh" test
rc=$?
if [ $rc -eq 2 ]; then
    if [ "${CI:-}" = true ]; then
        echo "linux-guest: SKIP is a failure under CI=true (see the reason above)"
        exit 1
    fi
    echo "linux-guest: skipped: the test kernel, QEMU or Debian unstable's libc could not be had (reason above)"
    exit 0
fi
exit $rc
