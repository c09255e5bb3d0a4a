#!/bin/sh
# bench/run.sh - benchmark pigeond against a private Postfix, in one command.
#
#   sudo bench/run.sh                 # the full run: every row, 3 repetitions (~10 min)
#   sudo bench/run.sh --quick         # a smoke run: few messages, 1 repetition (~1 min)
#   sudo bench/run.sh --rows accept-1k-reuse-50,e2e --reps 5
#   bench/run.sh --list-rows          # the row keys --rows takes
#
# It installs what is missing (Debian's postfix package, unconfigured, for
# Postfix itself and its smtp-source load generator; strace; python3), builds
# pigeond, and hands over to bench.py, which runs the same load against
# pigeond and against a Postfix instance of its own on 127.0.0.1 and prints
# a table.  See bench/README.md for what the rows mean.
#
# Environment: PIGEOND=/path/to/pigeond skips the build; BENCH_WORKDIR
# moves the servers' directories (default /var/tmp/pigeon-bench).
set -eu

cd "$(dirname "$0")/.."
ROOT=$(pwd)

for arg in "$@"; do
    case $arg in
    --list-rows | -h | --help) exec /usr/bin/python3 "$ROOT/bench/bench.py" "$@" ;;
    esac
done

if [ "$(id -u)" -ne 0 ]; then
    echo "bench: run me as root: the servers bind, drop privileges and get a cgroup each" >&2
    exit 1
fi

# Packages.  Postfix is installed with "No configuration": the system
# instance stays unconfigured and stopped; the benchmark runs its own.
missing=""
for p in postfix strace python3; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
if [ -n "$missing" ]; then
    echo "bench: installing$missing"
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing
fi

# The build tools and the user pigeond runs as come from the project's own script.
if ! command -v meson >/dev/null 2>&1 || ! id pigeon >/dev/null 2>&1; then
    "$ROOT/scripts/deps.sh"
fi

if [ -z "${PIGEOND:-}" ]; then
    [ -f build/build.ninja ] || meson setup build
    meson compile -C build
    PIGEOND="$ROOT/build/src/pigeond"
fi
export PIGEOND

# The system Postfix must not run: it would compete for the CPUs.
if /usr/sbin/postfix status >/dev/null 2>&1; then
    echo "bench: warning: the system Postfix is running; stop it for honest figures" >&2
fi
if ss -Hltn 'sport = :25' 2>/dev/null | grep -q .; then
    echo "bench: warning: something listens on port 25 (the benchmark does not use it)" >&2
fi

exec /usr/bin/python3 "$ROOT/bench/bench.py" "$@"
