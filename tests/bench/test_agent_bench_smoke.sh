#!/usr/bin/env bash
# est-load and bench/agent_bench.sh, briefly: bad arguments are refused
# with exit 2; --make-nfs writes importable NFs; then 20 NFs enrol at once
# through certforge-agent and certforge-acme with bootstrap certificates:
# every NF enrolled, none failed, every answer 200/202, the agent's log
# shows one account and one issued enrolment per NF, the report has the
# ACME request table and CPU rows. A smoke test: no rate threshold.
#
#   CF_BUILD_DIR=build CF_SOURCE_DIR=. test_agent_bench_smoke.sh
set -uo pipefail
: "${CF_BUILD_DIR:?}" "${CF_SOURCE_DIR:?}"
EL=$CF_BUILD_DIR/est-load
[ -x "$EL" ] || { echo "SKIP: $EL not built"; exit 77; }
command -v jq >/dev/null || { echo "SKIP: jq missing"; exit 77; }

D=$(mktemp -d "${TMPDIR:-/tmp}/cf-agent-bench-smoke-XXXXXX")
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
refuse "are required" "$EL" --connect 127.0.0.1:1
refuse "not an IPv4 address" "$EL" --connect localhost:1
refuse "needs --domain" "$EL" --make-nfs 3
refuse "--make-nfs" "$EL" --make-nfs 0 --domain x.test
refuse "--vendor-cert/--vendor-key" "$EL" --connect 127.0.0.1:1 --ca /etc/hostname --nfs /dev/null \
  --vendor-cert /etc/hostname --vendor-key /etc/hostname
refuse "positive integer" bash "$CF_SOURCE_DIR/bench/agent_bench.sh" --nfs 0
refuse "unknown argument" bash "$CF_SOURCE_DIR/bench/agent_bench.sh" --bogus

"$EL" --make-nfs 3 --domain z.test >"$D/nfs.jsonl"
[ "$(jq -s 'length == 3 and all(.[]; (.nf_instance_id | test("^[0-9a-f-]{36}$")) and (.dns[0] | endswith(".z.test")))' "$D/nfs.jsonl")" = true ] &&
  ok || fail "--make-nfs: $(cat "$D/nfs.jsonl")"

rc=0
timeout 300 bash "$CF_SOURCE_DIR/bench/agent_bench.sh" --nfs 20 --workers 4 --out "$D/out" >"$D/run.txt" 2>&1 || rc=$?
if [ $rc -eq 77 ]; then
  echo "SKIP: $(grep -h SKIP "$D/run.txt")"
  exit 77
fi
[ $rc -eq 0 ] || fail "agent_bench.sh exited $rc: $(tail -n 30 "$D/run.txt")"
jq -e '.nfs == 20 and .enrolled == 20 and .failed == 0 and .answers.other == 0 and .answers["200"] == 20 and
       .steps.certificate.n == 20 and .steps.certificate.p50_ms <= .steps.certificate.max_ms' "$D/out/est-load.json" >/dev/null 2>&1 &&
  ok || fail "est-load.json: $(cat "$D/out/est-load.json" 2>&1)"
[ "$(grep -c ' event=account_created ' "$D/out/agent-run.log")" = 20 ] && ok || fail "accounts created"
[ "$(grep -c ' event=issued ' "$D/out/agent-run.log")" = 20 ] && ok || fail "issued enrolments"
grep -q 'enrolment_started → issued (ms): n 20,' "$D/out/report.txt" && ok || fail "no agent ACME timing"
grep -q '^| newOrder | 20 |' "$D/out/report.txt" && ok || fail "no ACME request table"
grep -q '^| certforge-agent | (all) |' "$D/out/report.txt" && ok || fail "no CPU rows"

echo "$passed passed, $fails failed"
[ $fails -eq 0 ]
