#!/usr/bin/env bash
# ledger-scale smoke test: a 3 000-row ledger, CRLs of 100 and 1 000
# entries, on SQLite and (when tools/test.sh started a cluster) PostgreSQL.
# Checks what the figures rest on: every growth and CRL row is printed, each
# CRL has exactly the entries asked for, and the last CRL it published
# verifies with openssl against the bench's CA and lists 1 000 serials.
# No rate threshold (figures go to bench/RESULTS.md).
#
#   test_ledger_scale_smoke.sh /path/to/ledger-scale
set -uo pipefail
BIN=${1:?usage: test_ledger_scale_smoke.sh /path/to/ledger-scale}
MOD=${CF_SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
for tool in softhsm2-util openssl; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed"; exit 77; }
done
[ -r "$MOD" ] || { echo "SKIP: no SoftHSM module at $MOD"; exit 77; }
fails=0 checks=0 kept=()
trap 'for d in "${kept[@]}"; do rm -rf "$d"; done' EXIT
ok()   { checks=$((checks + 1)); }
fail() { checks=$((checks + 1)); fails=$((fails + 1)); echo "FAIL: $*" >&2; }

run() { # label extra-args...
  local label=$1; shift
  local out rc=0
  out=$(timeout 300 "$BIN" --rows 0,3000 --crl 100,1000 --seconds 0.2 --keep "$@" 2>&1) || rc=$?
  echo "$out"
  [ $rc -eq 0 ] && ok || { fail "$label: ledger-scale exited $rc"; return; }
  local dir
  dir=$(sed -n 's/^kept: //p' <<<"$out")
  [ -n "$dir" ] && [ -d "$dir" ] && kept+=("$dir") && ok || { fail "$label: no kept folder"; return; }
  [ "$(grep -c '^growth  *[0-9]' <<<"$out")" = 2 ] && ok || fail "$label: not two growth rows"
  awk '$1 == "crl" && $2 ~ /^[0-9]+$/ { print $3 }' <<<"$out" | tr '\n' ' ' | grep -qx '100 1000 ' && ok \
    || fail "$label: CRL entries are not 100 then 1000"
  local crl=$dir/crl/ca.crl
  openssl crl -inform DER -in "$crl" -CAfile "$dir/ca.pem" -noout -verify 2>&1 | grep -q 'verify OK' && ok \
    || fail "$label: the published CRL does not verify: $(openssl crl -inform DER -in "$crl" -CAfile "$dir/ca.pem" -noout -verify 2>&1 | head -3)"
  local n
  n=$(openssl crl -inform DER -in "$crl" -noout -text 2>/dev/null | grep -c 'Serial Number:')
  [ "$n" = 1000 ] && ok || fail "$label: the CRL lists $n serials, not 1000"
}

run sqlite
if [ -n "${CF_TEST_PG_CONNINFO:-}" ]; then
  run postgresql --ledger-conninfo "$CF_TEST_PG_CONNINFO"
else
  echo "PostgreSQL: CF_TEST_PG_CONNINFO not set, that half skipped"
fi
echo "test_ledger_scale_smoke: $checks checks, $fails failed"
[ $fails -eq 0 ]
