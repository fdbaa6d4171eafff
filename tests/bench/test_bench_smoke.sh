#!/usr/bin/env bash
# certforge-bench --modes floor,core,ipc on 200 certificates, one round:
# the run succeeds and its --json output is well formed, one entry per mode,
# each with certs_per_s > 0 and no errors. A smoke test: no rate threshold.
#
#   test_bench_smoke.sh /path/to/certforge-bench
set -uo pipefail
BENCH=${1:?usage: test_bench_smoke.sh /path/to/certforge-bench}
MOD=${CF_SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
for tool in softhsm2-util jq; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed"; exit 77; }
done
[ -r "$MOD" ] || { echo "SKIP: no SoftHSM module at $MOD"; exit 77; }

D=$(mktemp -d "${TMPDIR:-/tmp}/cf-bench-smoke-XXXXXX")
trap 'rm -rf "$D"' EXIT
rc=0
timeout 240 "$BENCH" --modes floor,core,ipc --threads 1 --count 200 --rounds 1 --csrs 200 \
  --cache "$D/cache" --json "$D/out.json" || rc=$?
fails=0
fail() { fails=$((fails + 1)); echo "FAIL: $*" >&2; }
[ $rc -eq 0 ] || fail "certforge-bench exited $rc"
if ! jq -e . "$D/out.json" >/dev/null 2>&1; then
  fail "out.json is not well-formed JSON: $(head -c 2000 "$D/out.json" 2>/dev/null)"
else
  for m in floor core ipc; do
    jq -e --arg m "$m" '[.[] | select(.mode == $m)] | length == 1 and
        (.[0].certs_per_s | type == "number" and . > 0) and .[0].errors == 0 and
        .[0].config.threads == 1 and .[0].config.count == 200' "$D/out.json" >/dev/null \
      || fail "mode $m: $(jq -c --arg m "$m" '.[] | select(.mode == $m)' "$D/out.json")"
  done
fi
echo "test_bench_smoke: $fails failed"
[ $fails -eq 0 ]
