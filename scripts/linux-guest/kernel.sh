#!/usr/bin/env bash
# Builds (once) a minimal x86_64 Linux >= 7.0 kernel with the rseq time-slice extension and
# prints the path of its bzImage on stdout (the version taken goes to stderr).
#
# The source is the newest `linux-source-N.M` (N >= 7) of Debian's unstable suite, fetched
# through a private sources list and state directory (see common.sh); the configuration is
# tinyconfig plus kernel.config from this directory. The result is cached outside the repository
# in $cache_root/linux-<package version>-<fragment hash>/bzImage; a lock file keeps two runs from
# building at once. Needs root for apt (build tools), gcc and make.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

exec 9>"$cache_root/kernel.lock"
flock 9

ensure_debs flex bison bc libelf-dev cpio xz-utils make gcc
sid_apt_setup
pkg=$(apt-cache "${SID_APT[@]}" search --names-only '^linux-source-[0-9]+\.[0-9]+$' | awk '{print $1}' \
    | sort -V | awk -F- '{split($3,v,"."); if (v[1] >= 7) print}' | tail -1)
[ -n "$pkg" ] || { log "no linux-source >= 7.0 in the unstable suite"; exit 1; }
ver=$(apt-cache "${SID_APT[@]}" show "$pkg" | awk '/^Version:/{print $2; exit}')
hash=$(sha256sum "$here/kernel.config" | cut -c1-12)
out="$cache_root/linux-$ver-$hash"
log "kernel: $pkg $ver (fragment $hash)"
if [ -f "$out/bzImage" ]; then
    log "kernel: cached $out/bzImage"
    echo "$out/bzImage"
    exit 0
fi
deb=$(sid_download "$pkg")
src="$out/src"
rm -rf "$src"
mkdir -p "$src"
dpkg-deb -x "$deb" "$src/deb"
tar -C "$src" -xf "$src"/deb/usr/src/"$pkg".tar.xz
rm -rf "$src/deb"
k=$(ls -d "$src"/linux-source-*/ | head -1)
make -C "$k" -s tinyconfig
"$k"/scripts/kconfig/merge_config.sh -m -O "$k" "$k/.config" "$here/kernel.config" >/dev/null
make -C "$k" -s olddefconfig
for opt in RSEQ_SLICE_EXTENSION RSEQ_STATS DEBUG_FS DEVTMPFS SECCOMP_FILTER; do
    grep -q "^CONFIG_$opt=y" "$k/.config" || { log "kernel: the configuration lost CONFIG_$opt"; exit 1; }
done
log "kernel: building (a few minutes)"
nice -n 10 make -C "$k" -s -j"$(nproc)" bzImage >"$out/build.log" 2>&1 \
    || { tail -30 "$out/build.log" >&2; log "kernel: build failed"; exit 1; }
cp "$k/arch/x86/boot/bzImage" "$out/bzImage.tmp"
# Keep the ABI documents and selftests the backend cites; drop the rest of the tree.
mkdir -p "$out/ref"
cp "$k/include/uapi/linux/rseq.h" "$k/Documentation/userspace-api/rseq.rst" \
    "$k/tools/testing/selftests/rseq/slice_test.c" "$out/ref/" 2>/dev/null || true
rm -rf "$src"
mv "$out/bzImage.tmp" "$out/bzImage"
log "kernel: built $out/bzImage"
echo "$out/bzImage"
