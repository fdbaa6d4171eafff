#!/usr/bin/env bash
# acme-load and bench/acme_bench.sh, briefly: bad arguments are refused
# with exit 2 and a message; then a 3 s run of 4 clients against
# certforge-acme and (when the Debian package is installed) one of 2
# clients against pebble. Each run completes issuances with no failed flow
# and no error, its --json has every step with p50 <= p90 <= p99 <= max,
# about 6-8 requests per issuance, CPU rows for the server's process, and
# (certforge-acme) store commits in the status view. A smoke test: no rate
# threshold. Pebble gets 2 clients because pebble 2.4.0 can deadlock with
# three requests in flight at once (bench/acme_bench.sh says how).
#
#   CF_BUILD_DIR=build CF_SOURCE_DIR=. test_acme_load_smoke.sh
set -uo pipefail
: "${CF_BUILD_DIR:?}" "${CF_SOURCE_DIR:?}"
LOAD=$CF_BUILD_DIR/acme-load
[ -x "$LOAD" ] || { echo "SKIP: $LOAD not built"; exit 77; }
command -v jq >/dev/null || { echo "SKIP: jq missing"; exit 77; }

D=$(mktemp -d "${TMPDIR:-/tmp}/cf-acme-load-smoke-XXXXXX")
trap 'rm -rf "$D"' EXIT
fails=0 passed=0
fail() { fails=$((fails + 1)); echo "FAIL: $*" >&2; }
ok() { passed=$((passed + 1)); }

# --- refused arguments: exit 2, one line naming the problem
refuse() { # WHAT-TO-FIND ARGS...
  local want=$1 out rc=0
  shift
  out=$("$LOAD" "$@" 2>&1) || rc=$?
  if [ $rc -ne 2 ] || ! grep -q -- "$want" <<<"$out"; then
    fail "acme-load $*: exit $rc, '$out' (wanted exit 2 and '$want')"
  else
    ok
  fi
}
base=(--directory https://a.test:1/dir --connect 127.0.0.1:1 --ca /etc/hostname --http01-port 5002)
refuse "are required" --directory https://a.test:1/dir
refuse "not an https:// URL" --directory http://a.test/dir --connect 127.0.0.1:1 --ca x --http01-port 1
refuse "no host or no path" --directory https://a.test --connect 127.0.0.1:1 --ca x --http01-port 1
refuse "not an IPv4 address" --directory https://a.test/d --connect localhost:1 --ca x --http01-port 1
refuse "--clients" "${base[@]}" --clients 0
refuse "--http01-port" "${base[@]/5002/70000}"
refuse "exclude each other" "${base[@]}" --duration 1 --issuances 5
refuse "not a readable PEM" "${base[@]}"
refuse "--cpu: no process" "${base[@]}" --cpu 999999999

# --- runs
# check JSON LABEL
check() {
  local j=$1 label=$2
  if ! jq -e . "$j" >/dev/null 2>&1; then
    fail "$label: no JSON report"
    return
  fi
  jq -e --arg l "$label" '.label == $l and .issuances > 0 and .failed == 0 and .errors == {} and
      .requests_per_issuance >= 6 and .requests_per_issuance < 12 and
      (.steps | length == 8 and all(.[]; .p50_ms <= .p90_ms and .p90_ms <= .p99_ms and .p99_ms <= .max_ms)) and
      .steps["whole flow"].n >= .issuances and .http01.answered >= .issuances and
      (.cpu | length > 0 and any(.[]; .process == "acme-load"))' "$j" >/dev/null ||
    { fail "$label: $(jq -c 'del(.cpu)' "$j")"; return; }
  ok
}

rc=0
timeout 300 bash "$CF_SOURCE_DIR/bench/acme_bench.sh" --clients 4 --duration 3 --rounds 1 --servers certforge \
  --out "$D/cf" >"$D/cf.txt" 2>&1 || rc=$?
if [ $rc -eq 77 ]; then
  echo "SKIP: $(grep -h SKIP "$D/cf.txt")"
  exit 77
fi
[ $rc -eq 0 ] || fail "acme_bench.sh (certforge-acme) exited $rc: $(tail -n 20 "$D/cf.txt")"
check "$D/cf/round1-certforge.json" certforge-acme
jq -e '.cpu | any(.[]; .process == "certforge-acme")' "$D/cf/round1-certforge.json" >/dev/null 2>&1 ||
  fail "no CPU rows for certforge-acme"
jq -en --slurpfile b "$D/cf/status-1-before.json" --slurpfile a "$D/cf/status-1-after.json" \
  '$a[0].store.commits > $b[0].store.commits and $a[0].store.changes > $b[0].store.changes' >/dev/null 2>&1 &&
  ok || fail "store commits did not move in the status view"
grep -q 'ratio certforge-acme/pebble' "$D/cf.txt" && ok || fail "no summary table: $(tail -n 5 "$D/cf.txt")"

if command -v pebble >/dev/null; then
  rc=0
  timeout 300 bash "$CF_SOURCE_DIR/bench/acme_bench.sh" --clients 2 --duration 3 --rounds 1 --servers pebble \
    --out "$D/pb" >"$D/pb.txt" 2>&1 || rc=$?
  [ $rc -eq 0 ] || fail "acme_bench.sh (pebble) exited $rc: $(tail -n 20 "$D/pb.txt")"
  check "$D/pb/round1-pebble.json" pebble
else
  echo "pebble not installed: certforge-acme only"
fi

echo "$passed passed, $fails failed"
[ $fails -eq 0 ]
