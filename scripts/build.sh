#!/bin/sh
# scripts/build.sh [DIR] - configure (once) and compile into DIR (default: build).
set -eu
cd "$(dirname "$0")/.."
dir="${1:-build}"
[ -f "$dir/build.ninja" ] || meson setup "$dir"
meson compile -C "$dir"
