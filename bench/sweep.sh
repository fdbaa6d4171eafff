#!/usr/bin/env bash
# bench/sweep.sh — the benchmark's two sweeps, one certforge-bench run per
# point, every run's JSON object gathered into one array.
#
#   bench/sweep.sh hsm OUT.json   HSM latency x signer sessions (core mode,
#                                 2 workers, the PKCS#11 shim adding the
#                                 latency; each session count S gets S
#                                 signing threads), plus the plain 0-ms
#                                 baseline without shim or signing threads
#   bench/sweep.sh wcd OUT.json   ipc: workers x connections x depth
#
# Environment (defaults in brackets):
#   BENCH      the certforge-bench binary [build/certforge-bench]
#   LATENCIES  hsm: latencies in us ["0 500 1000 5000"]
#   SESSIONS   hsm: session counts ["1 8 32 64 128 256"]
#   DURATION   hsm: seconds per point [4]
#   MODE       hsm: core or ipc [core]
#   WORKERS CONNECTIONS DEPTHS   wcd: ["1 2 4"] ["1 4 16"] ["1 16 64"]
#   COUNT      wcd: certificates per point [3000]
#   EXTRA      more certforge-bench options for every run (e.g. --verify off)
# Progress: one line per point on stderr (point, rate, p99).
# Render with bench/plot.sh --hsm-sweep OUT.json DIR / --wcd-sweep OUT.json DIR.
# EXIT STATUS: 0 every point ran; 1 a run failed (the others are kept); 2 usage.
set -euo pipefail
[ $# -eq 2 ] && { [ "$1" = hsm ] || [ "$1" = wcd ]; } ||
  { echo "usage: bench/sweep.sh hsm|wcd OUT.json" >&2; exit 2; }
kind=$1 out=$2
bench=${BENCH:-build/certforge-bench}
[ -x "$bench" ] || { echo "sweep.sh: $bench not built (cmake -S . -B build && cmake --build build)" >&2; exit 1; }
command -v jq >/dev/null || { echo "sweep.sh: jq not installed (tools/deps.sh)" >&2; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cf-sweep-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
read -r -a extra <<<"${EXTRA:-}"
n=0 rc=0

point() { # label, then certforge-bench options
  local label=$1
  shift
  n=$((n + 1))
  local f
  f=$tmp/$(printf %04d "$n")
  if "$bench" --no-progress --rounds 1 --json "$f.json" "${extra[@]}" "$@" >"$f.out" 2>&1; then
    jq -r --arg l "$label" '(if type == "array" then .[] else . end) |
        "\($l): \(.certs_per_s) certs/s, p99 \(.latency_ms.p99) ms"' \
      "$f.json" >&2
  else
    echo "$label: failed (exit $?):" >&2
    tail -n 3 "$f.out" >&2
    rm -f "$f.json"
    rc=1
  fi
}

if [ "$kind" = hsm ]; then
  mode=${MODE:-core}
  dur=${DURATION:-4}
  common=(--modes "$mode" --threads 2 --duration "$dur" --warmup 200)
  point "0 us, no shim, no signing threads" "${common[@]}"
  for l in ${LATENCIES:-0 500 1000 5000}; do
    for s in ${SESSIONS:-1 8 32 64 128 256}; do
      point "$l us, $s sessions" "${common[@]}" --hsm-latency-us "$l" --sessions "$s"
    done
  done
else
  for w in ${WORKERS:-1 2 4}; do
    for c in ${CONNECTIONS:-1 4 16}; do
      for d in ${DEPTHS:-1 16 64}; do
        point "$w workers, $c x $d" --modes ipc --threads "$w" --connections "$c" \
          --depth "$d" --count "${COUNT:-3000}"
      done
    done
  done
fi
shopt -s nullglob
files=("$tmp"/*.json)
[ ${#files[@]} -gt 0 ] || { echo "sweep.sh: no run succeeded" >&2; exit 1; }
jq -s '[.[] | if type == "array" then .[] else . end]' "${files[@]}" >"$out"
echo "sweep.sh: $n points, $(jq length "$out") written to $out" >&2
exit $rc
