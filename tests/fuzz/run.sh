#!/usr/bin/env bash
# tests/fuzz/run.sh [SECONDS] [BUILD_DIR] - build the libFuzzer harnesses and
# run each for SECONDS (default 60), two at a time.
#
# For each harness: first the saved crashers in tests/fuzz/regressions/<h>/
# are replayed (each must now pass), then the fuzzer runs on a copy of its
# seed corpus, tests/fuzz/corpus/<h>/, in tests/fuzz/corpus-work/<h>/ (not
# committed; copy inputs worth keeping into the corpus by hand).  A crash,
# leak, timeout or failed invariant makes the script exit 1, and the input
# that caused it is copied to tests/fuzz/regressions/<h>/<sha1>.<kind>, ready
# to be committed with the fix.  The build directory (default build-fuzz) is
# set up with clang and the sanitizers if it does not exist yet.
#
# To add a harness, add "<name> <max_len>" to HARNESSES and see meson.build.
set -euo pipefail

seconds=${1:-60}
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${2:-$top/build-fuzz}
case $build in /*) ;; *) build=$PWD/$build ;; esac
fuzz=$top/tests/fuzz
work=$fuzz/corpus-work
jobs=2

# name and -max_len: room for a whole session, a config file, a segment;
# a path or a parameter list is far shorter.
HARNESSES=(
    "smtp_server 8192"
    "smtp_client 8192"
    "address 600"
    "esmtp 1200"
    "config 8192"
    "envelope 4096"
    "journal 8192"
    "mime 8192"
)

if [ ! -f "$build/build.ninja" ]; then
    CC=clang meson setup "$build" "$top" -Dfuzz=true -Dtests=false \
        -Db_sanitize=address,undefined -Db_lundef=false \
        -Dc_args='-fsanitize=fuzzer-no-link -fno-sanitize-recover=all'
fi
targets=()
for entry in "${HARNESSES[@]}"; do
    targets+=("tests/fuzz/fuzz_${entry%% *}")
done
ninja -C "$build" "${targets[@]}"

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

# save_artifacts NAME DIR - copy what libFuzzer left in DIR to regressions/NAME
save_artifacts() {
    local name=$1 dir=$2 f base kind sum
    mkdir -p "$fuzz/regressions/$name"
    for f in "$dir"/*; do
        [ -f "$f" ] || continue
        base=$(basename "$f")
        kind=${base%%-*}
        case $kind in crash | leak | timeout | oom) ;; *) continue ;; esac
        sum=$(sha1sum "$f" | cut -c1-40)
        # Not crash-<sha1>: .gitignore keeps those out of the repository.
        cp "$f" "$fuzz/regressions/$name/$sum.$kind"
        echo "$name: saved tests/fuzz/regressions/$name/$sum.$kind"
    done
}

# run_one NAME MAX_LEN - replay, then fuzz; the outcome goes to $work/NAME.result
run_one() {
    local name=$1 max_len=$2
    local bin=$build/tests/fuzz/fuzz_$name
    local corpus=$work/$name artifacts=$work/$name.artifacts
    local log=$work/$name.log result=$work/$name.result
    rm -rf "$corpus" "$artifacts" "$log" "$result" "$work/$name.saved" "$work/$name.replay.log"
    mkdir -p "$corpus" "$artifacts"
    cp "$fuzz/corpus/$name"/* "$corpus/"

    local regressions=("$fuzz/regressions/$name"/*)
    if [ -e "${regressions[0]}" ]; then
        if ! "$bin" -artifact_prefix="$artifacts/" "${regressions[@]}" \
            >"$work/$name.replay.log" 2>&1 </dev/null; then
            echo "FAIL replay (see tests/fuzz/corpus-work/$name.replay.log)" >"$result"
            return
        fi
    fi

    local rc=0
    "$bin" -max_total_time="$seconds" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus" \
        >"$log" 2>&1 </dev/null || rc=$?
    local runs
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    [ -n "$runs" ] || runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -n 1)
    if [ "$rc" -ne 0 ]; then
        save_artifacts "$name" "$artifacts" >"$work/$name.saved"
        echo "FAIL after ${runs:-?} runs (exit $rc; see tests/fuzz/corpus-work/$name.log)" >"$result"
    else
        echo "ok   ${runs:-?} runs, corpus $(find "$corpus" -type f | wc -l) inputs" >"$result"
    fi
}

mkdir -p "$work"
running=0
for entry in "${HARNESSES[@]}"; do
    name=${entry%% *}
    echo "fuzzing $name for ${seconds}s"
    run_one "$name" "${entry##* }" &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then
        wait -n || true
        running=$((running - 1))
    fi
done
wait

status=0
echo
for entry in "${HARNESSES[@]}"; do
    name=${entry%% *}
    result=$(cat "$work/$name.result" 2>/dev/null || echo "FAIL (no result)")
    printf '%-12s %s\n' "$name" "$result"
    [ -s "$work/$name.saved" ] && sed 's/^/             /' "$work/$name.saved"
    case $result in FAIL*) status=1 ;; esac
done
exit $status
