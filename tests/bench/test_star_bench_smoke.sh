#!/usr/bin/env bash
# bench/star_bench.sh and acme-load --star, briefly: bad arguments are
# refused with exit 2; then 20 STAR orders with a 60 s lifetime through
# certforge-acme, renewed for 80 s with certforged stopped (SIGSTOP) for
# 6 s across a renewal: every order valid, no failed flow, no gap between
# consecutive certificates, nothing missed or recorded twice, the report
# and timeline written. A smoke test: no rate threshold. About 90 s.
#
#   CF_BUILD_DIR=build CF_SOURCE_DIR=. test_star_bench_smoke.sh
set -uo pipefail
: "${CF_BUILD_DIR:?}" "${CF_SOURCE_DIR:?}"
LOAD=$CF_BUILD_DIR/acme-load
[ -x "$LOAD" ] || { echo "SKIP: $LOAD not built"; exit 77; }
for t in jq sqlite3; do command -v $t >/dev/null || { echo "SKIP: $t missing"; exit 77; }; done

D=$(mktemp -d "${TMPDIR:-/tmp}/cf-star-bench-smoke-XXXXXX")
trap 'rm -rf "$D"' EXIT
fails=0 passed=0
fail() { fails=$((fails + 1)); echo "FAIL: $*" >&2; }
ok() { passed=$((passed + 1)); }

refuse() { # WHAT-TO-FIND CMD...
  local want=$1 out rc=0
  shift
  out=$("$@" 2>&1) || rc=$?
  if [ $rc -ne 2 ] || ! grep -q -- "$want" <<<"$out"; then
    fail "$*: exit $rc, '$out' (wanted exit 2 and '$want')"
  else
    ok
  fi
}
base=(--directory https://a.test:1/dir --connect 127.0.0.1:1 --ca /etc/hostname --http01-port 5002)
refuse "go together" "$LOAD" "${base[@]}" --star 600
refuse "go together" "$LOAD" "${base[@]}" --star-end 600
refuse "--star-end" "$LOAD" "${base[@]}" --star 600 --star-end 10
refuse "--profile" "$LOAD" "${base[@]}" --profile ""
refuse "at least 60" bash "$CF_SOURCE_DIR/bench/star_bench.sh" --lifetime 30
refuse "positive integer" bash "$CF_SOURCE_DIR/bench/star_bench.sh" --orders 0
refuse "unknown argument" bash "$CF_SOURCE_DIR/bench/star_bench.sh" --bogus

rc=0
timeout 300 bash "$CF_SOURCE_DIR/bench/star_bench.sh" --orders 20 --clients 4 --lifetime 60 --adjust 25 --run 80 \
  --outage-at 62 --outage 6 --out "$D/out" >"$D/run.txt" 2>&1 || rc=$?
if [ $rc -eq 77 ]; then
  echo "SKIP: $(grep -h SKIP "$D/run.txt")"
  exit 77
fi
[ $rc -eq 0 ] || fail "star_bench.sh exited $rc: $(tail -n 30 "$D/run.txt")"
jq -e '.issuances == 20 and .failed == 0 and .errors == {} and .star.lifetime == 60' "$D/out/create.json" >/dev/null 2>&1 &&
  ok || fail "create.json: $(jq -c 'del(.cpu)' "$D/out/create.json" 2>&1)"
row() { grep -F "| $1 |" "$D/out/report.txt" | awk -F'|' '{ gsub(/^ +| +$/, "", $3); print $3 }'; }
[ "$(row 'STAR orders, valid')" = "20, 20" ] && ok || fail "orders: $(row 'STAR orders, valid')"
[ "$(row 'orders whose certificate count ≠ star_seq (recorded twice or lost)')" = 0 ] && ok || fail "certificate counts"
[ "$(row 'orders still due at the end (missed)')" = 0 ] && ok || fail "missed renewals"
# two renewals each (due 5 s and 65 s after the order): 40 pairs, none with a gap
[ "$(row 'consecutive pairs, gaps (next notBefore > previous notAfter)')" = "40, 0" ] && ok ||
  fail "pairs/gaps: $(row 'consecutive pairs, gaps (next notBefore > previous notAfter)')"
grep -q 'outage_start' "$D/out/events.txt" && grep -q 'outage_end' "$D/out/events.txt" && ok || fail "no outage recorded"
[ "$(awk 'END { print NR }' "$D/out/timeline.tsv")" -gt 10 ] && ok || fail "timeline too short"
grep -q '| certforge-acme | (all) |' "$D/out/report.txt" && ok || fail "no CPU rows"

echo "$passed passed, $fails failed"
[ $fails -eq 0 ]
