#!/usr/bin/env bash
# certforge-bench --modes floor,core,ipc on 200 certificates, then
# openssl-x509 on 20 with 2 threads, one round each: the runs succeed and their --json output
# is well formed, one entry per mode, each with certs_per_s > 0, an empty
# errors object, latency percentiles in order (p50 <= p90 <= p99 <= p99.9 <=
# max), a latency CDF ending at 1, the configuration and the run's date, host and version, and for ipc the
# daemon's CPU time and peak RSS. The certificate openssl-x509 issued
# verifies against the bench's CA. Then bench/sweep.sh hsm on a 3-point
# grid: one entry per point with its latency and sessions, and plot.sh
# --hsm-sweep renders it. A smoke test: no rate threshold.
#
#   test_bench_smoke.sh /path/to/certforge-bench
set -uo pipefail
BENCH=${1:?usage: test_bench_smoke.sh /path/to/certforge-bench}
MOD=${CF_SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
for tool in softhsm2-util jq openssl; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed"; exit 77; }
done
[ -r "$MOD" ] || { echo "SKIP: no SoftHSM module at $MOD"; exit 77; }

D=$(mktemp -d "${TMPDIR:-/tmp}/cf-bench-smoke-XXXXXX")
trap 'rm -rf "$D"' EXIT
fails=0 checks=0
ok()   { checks=$((checks + 1)); }
fail() { checks=$((checks + 1)); fails=$((fails + 1)); echo "FAIL: $*" >&2; }

# Every entry: the fields issue 5 asks for, whatever the mode.
common='(.certs_per_s | type == "number" and . > 0) and .errors == {} and .errors_total == 0 and
  (.latency_ms | .p50 > 0 and .p50 <= .p90 and .p90 <= .p99 and .p99 <= .p99_9 and
                 .p99_9 <= .max) and
  (.latency_cdf | length > 0 and length <= 200 and .[-1][1] == 1) and
  .config.threads == 1 and (.run | (.date | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z$")) and (.host | length > 0) and
          .cpus > 0 and (.version | length > 0)) and (.config | has("connections") and has("depth") and has("warmup") and has("hsm_latency_us") and has("sessions") and has("sign_threads"))'

rc=0
timeout 240 "$BENCH" --modes floor,core,ipc --threads 1 --count 200 --warmup 20 --rounds 1 \
  --csrs 200 --cache "$D/cache" --json "$D/out.json" --no-progress || rc=$?
[ $rc -eq 0 ] && ok || fail "certforge-bench exited $rc"
if ! jq -e . "$D/out.json" >/dev/null 2>&1; then
  fail "out.json is not well-formed JSON: $(head -c 2000 "$D/out.json" 2>/dev/null)"
else
  ok
  for m in floor core ipc; do
    jq -e --arg m "$m" "[.[] | select(.mode == \$m)] | length == 1 and
        (.[0] | $common and .config.count == 200 and .done == 200)" "$D/out.json" >/dev/null && ok \
      || fail "mode $m: $(jq -c --arg m "$m" '.[] | select(.mode == $m) | del(.latency_cdf)' "$D/out.json")"
  done
  jq -e '.[] | select(.mode == "ipc") | .daemon.cpu_s > 0 and .daemon.peak_rss_kib > 0 and
      .config.connections == 2 and .config.depth == 64' "$D/out.json" >/dev/null && ok \
    || fail "ipc: no daemon CPU time / peak RSS: $(jq -c '.[] | select(.mode == "ipc") | .daemon' "$D/out.json")"
fi

# --json -: the JSON alone on standard output, the table on standard error
rc=0
timeout 120 "$BENCH" --modes floor --threads 1 --count 50 --warmup 5 --rounds 1 --csrs 200 \
  --cache "$D/cache" --json - --no-progress >"$D/stdout.json" 2>"$D/stderr.txt" || rc=$?
[ $rc -eq 0 ] && ok || fail "certforge-bench --json - exited $rc"
jq -e 'length == 1 and .[0].mode == "floor" and .[0].done == 50' "$D/stdout.json" >/dev/null 2>&1 && ok \
  || fail "--json -: standard output is not the JSON alone: $(head -c 300 "$D/stdout.json")"
grep -q '^floor ' "$D/stderr.txt" && ok || fail "--json -: the table is not on standard error"

rc=0
# Two threads: each gets its own token copy (concurrent SoftHSM logins on one
# token folder failed some processes before).
timeout 120 "$BENCH" --modes openssl-x509 --threads 2 --x509-count 20 --warmup 1 --rounds 1 \
  --csrs 200 --cache "$D/cache" --json "$D/x509.json" --x509-keep "$D/keep" --no-progress || rc=$?
[ $rc -eq 0 ] && ok || fail "certforge-bench --modes openssl-x509 exited $rc"
x509_common=${common/.config.threads == 1 and /.config.threads == 2 and }
jq -e ".[0] | .mode == \"openssl-x509\" and $x509_common and .done == 20" "$D/x509.json" >/dev/null 2>&1 && ok \
  || fail "openssl-x509: $(head -c 2000 "$D/x509.json" 2>/dev/null)"
openssl verify -CAfile "$D/keep/ca.pem" "$D/keep/cert.pem" >/dev/null 2>&1 && ok \
  || fail "openssl-x509's certificate does not verify: $(openssl verify -CAfile "$D/keep/ca.pem" "$D/keep/cert.pem" 2>&1)"
openssl x509 -in "$D/keep/cert.pem" -noout -ext subjectAltName,keyUsage 2>/dev/null | grep -q 'URI:urn:uuid:' && ok \
  || fail "openssl-x509's certificate lacks the NF SAN"

# bench/sweep.sh hsm on a 3-point grid (one second each): one entry per
# point with the latency and sessions it ran with, and plot.sh renders it.
SRC=$(cd "$(dirname "$0")/../.." && pwd)
rc=0
BENCH="$BENCH" LATENCIES="0 2000" SESSIONS="4" DURATION=1 EXTRA="--csrs 200 --cache $D/cache" \
  timeout 120 "$SRC/bench/sweep.sh" hsm "$D/sweep.json" 2>"$D/sweep.log" || rc=$?
[ $rc -eq 0 ] && ok || fail "sweep.sh hsm exited $rc: $(tail -n 5 "$D/sweep.log")"
sweep_common=${common/.config.threads == 1 and /.config.threads == 2 and }
jq -e "length == 3 and all(.[]; $sweep_common) and
    ([.[] | [.config.hsm_latency_us, .config.sessions, .config.sign_threads]] ==
     [[0, 2, 0], [0, 4, 4], [2000, 4, 4]])" "$D/sweep.json" >/dev/null 2>&1 && ok \
  || fail "sweep.json: $(jq -c '[.[] | .config]' "$D/sweep.json" 2>&1 | head -c 2000)"
if command -v gnuplot >/dev/null; then
  "$SRC/bench/plot.sh" --hsm-sweep "$D/sweep.json" "$D/img" 2>/dev/null &&
    [ -s "$D/img/hsm-sweep.png" ] && ok || fail "plot.sh --hsm-sweep wrote no picture"
fi

echo "test_bench_smoke: $checks checks, $fails failed"
# A run that checked less than it should (a step skipped, a loop over
# nothing) must not pass: this many checks are made when all goes well
# (one fewer without gnuplot).
min_checks=13
command -v gnuplot >/dev/null || min_checks=12
[ "$checks" -ge "$min_checks" ] || echo "FAIL: only $checks checks made, want at least $min_checks" >&2
[ "$fails" -eq 0 ] && [ "$checks" -ge "$min_checks" ]
