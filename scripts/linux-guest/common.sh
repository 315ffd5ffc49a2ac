# Sourced by the linux-guest scripts: the cache directory, the private apt setup for Debian's
# unstable suite (the system's apt configuration is never changed), and helpers.
# shellcheck shell=bash
cache_root=${ECS_LOCKS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ecs-locks}
mkdir -p "$cache_root"

log() { echo "linux-guest: $*" >&2; }

# Installs the Debian packages named when they are missing (apt of the system itself).
ensure_debs() {
    local missing=() p
    for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# Sets the array SID_APT: apt options for a private sources list naming the unstable suite on
# the mirror the system's own sources use, with a private state and cache directory.
sid_apt_setup() {
    local mirror
    mirror=$(grep -h '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' \
        | grep -E '/debian/?$' | head -1 || true)
    [ -n "$mirror" ] || mirror=$(grep -h '^deb ' /etc/apt/sources.list 2>/dev/null \
        | awk '{print $2}' | grep -E '/debian/?$' | head -1 || true)
    [ -n "$mirror" ] || { log "no Debian mirror in the system's apt sources"; return 1; }
    local d="$cache_root/apt-sid"
    mkdir -p "$d/lists/partial" "$d/cache/archives/partial"
    echo "deb $mirror sid main" >"$d/sources.list"
    SID_APT=(-o Dir::Etc::SourceList="$d/sources.list" -o Dir::Etc::SourceParts=/dev/null
        -o Dir::State::Lists="$d/lists" -o Dir::Cache="$d/cache")
    SID_DIR=$d
    # Refresh the package lists at most once an hour.
    if [ -z "$(find "$d/lists" -maxdepth 1 -name '*_Packages*' -mmin -60 2>/dev/null | head -1)" ]; then
        # One apt run at a time on the private state (kernel.sh and boot.sh hold different locks).
        if ! flock "$d/apt.lock" apt-get "${SID_APT[@]}" update -qq; then
            if [ -n "$(find "$d/lists" -maxdepth 1 -name '*_Packages*' 2>/dev/null | head -1)" ]; then
                log "apt-get update of the unstable suite failed: using the package lists from before"
            else
                log "apt-get update of the unstable suite failed"; return 1
            fi
        fi
    fi
}

# Downloads package $1 of the unstable suite into the private cache; prints the .deb's path.
sid_download() {
    local pkg=$1 ver
    ver=$(apt-cache "${SID_APT[@]}" show "$pkg" 2>/dev/null | awk '/^Version:/{print $2; exit}')
    [ -n "$ver" ] || { log "package $pkg not in the unstable suite"; return 1; }
    local deb
    deb=$(ls "$SID_DIR"/debs/"${pkg}"_"${ver//:/%3a}"_*.deb 2>/dev/null | head -1 || true)
    if [ -z "$deb" ]; then
        mkdir -p "$SID_DIR/debs"
        (cd "$SID_DIR/debs" && flock "$SID_DIR/apt.lock" apt-get "${SID_APT[@]}" download "$pkg" >/dev/null 2>&1) \
            || { log "download of $pkg failed"; return 1; }
        deb=$(ls "$SID_DIR"/debs/"${pkg}"_*.deb | sort -V | tail -1)
    fi
    echo "$deb"
}
