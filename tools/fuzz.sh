#!/usr/bin/env bash
# tools/fuzz.sh TARGET SECONDS [--build DIR] — run one libFuzzer target over
# its committed seed corpus (tests/fuzz/corpus/NAME, NAME = TARGET without
# the fuzz_ prefix) for SECONDS. New inputs go to a scratch copy, never into
# the committed corpus; crashes are written to DIR/crashes/.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
[ $# -ge 2 ] || { echo "usage: tools/fuzz.sh TARGET SECONDS [--build DIR]" >&2; exit 2; }
target=$1 secs=$2; shift 2
dir=$top/build-fuzz
if [ "${1:-}" = "--build" ]; then dir=$2; shift 2; fi
case $dir in /*) ;; *) dir=$top/$dir ;; esac
if [ ! -x "$dir/$target" ]; then
  CC=clang cmake -S "$top" -B "$dir" -DCF_FUZZ=ON -DCF_ASAN=ON -DCF_UBSAN=ON \
    -DCMAKE_BUILD_TYPE=Debug -DBUILD_TESTING=OFF >/dev/null
  cmake --build "$dir" --target "$target" -j "$(nproc)" >/dev/null
fi
seeds=$top/tests/fuzz/corpus/${target#fuzz_}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$dir/crashes"
[ -d "$seeds" ] && cp -r "$seeds/." "$work/" 2>/dev/null || true
exec_args=(-max_total_time="$secs" -artifact_prefix="$dir/crashes/$target-" -print_final_stats=1)
[ -f "$top/tests/fuzz/$target.dict" ] && exec_args+=(-dict="$top/tests/fuzz/$target.dict")
"$dir/$target" "${exec_args[@]}" "$work"
