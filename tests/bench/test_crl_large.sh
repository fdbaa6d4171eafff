#!/usr/bin/env bash
# A 50 000-entry CRL made by the streamed writer (engine/crl, docs/crl.md
# "Memory"): ledger-scale revokes 50 000 certificates of its CA and makes
# one CRL into its folder. Checks that the published file verifies with
# `openssl crl -verify` against the CA, that it lists exactly the ledger's
# revoked serials (each once, none missing, none extra), and that the
# ledger's crls row, the CRL being larger than CRL_LEDGER_MAX, holds its
# number with an empty der (the file is the copy that is served). Then a
# CRL whose header needed moving, and RSA-2048 and Ed25519 CAs.
#
#   test_crl_large.sh /path/to/ledger-scale
set -uo pipefail
BIN=${1:?usage: test_crl_large.sh /path/to/ledger-scale}
MOD=${CF_SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
N=50000
for tool in softhsm2-util openssl sqlite3; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed"; exit 77; }
done
[ -r "$MOD" ] || { echo "SKIP: no SoftHSM module at $MOD"; exit 77; }
fails=0 checks=0 dir=
trap '[ -n "$dir" ] && rm -rf "$dir"' EXIT
ok()   { checks=$((checks + 1)); }
fail() { checks=$((checks + 1)); fails=$((fails + 1)); echo "FAIL: $*" >&2; }

rc=0
out=$(timeout 300 "$BIN" --rows 0 --crl $N --seconds 0.2 --keep 2>&1) || rc=$?
echo "$out"
[ $rc -eq 0 ] && ok || { echo "FAIL: ledger-scale exited $rc"; exit 1; }
dir=$(sed -n 's/^kept: //p' <<<"$out")
[ -n "$dir" ] && [ -d "$dir" ] || { echo "FAIL: no kept folder"; exit 1; }
crl=$dir/crl/ca.crl
v=$(openssl crl -inform DER -in "$crl" -CAfile "$dir/ca.pem" -noout -verify 2>&1)
grep -q 'verify OK' <<<"$v" && ok || fail "the CRL does not verify: $(head -3 <<<"$v")"
# the CRL's serials (openssl prints them in upper-case hex) against the ledger's
openssl crl -inform DER -in "$crl" -noout -text 2>/dev/null |
  sed -n 's/^ *Serial Number: *//p' | tr 'a-f' 'A-F' | sed 's/^0*//' | sort >"$dir/crl.serials"
sqlite3 "$dir/ledger.db" "SELECT serial FROM certificates WHERE status = 'revoked'" 2>/dev/null |
  tr 'a-f' 'A-F' | sed 's/^0*//' | sort >"$dir/ledger.serials"
n=$(wc -l <"$dir/crl.serials")
[ "$n" = $N ] && ok || fail "the CRL lists $n serials, not $N"
u=$(sort -u "$dir/crl.serials" | wc -l)
[ "$u" = $N ] && ok || fail "the CRL lists $u distinct serials, not $N"
l=$(wc -l <"$dir/ledger.serials")
[ "$l" = $N ] && ok || fail "the ledger has $l revoked certificates, not $N (status column?)"
cmp -s "$dir/crl.serials" "$dir/ledger.serials" && ok \
  || fail "the CRL's serials are not the ledger's revoked ones: $(diff "$dir/crl.serials" "$dir/ledger.serials" | head -4)"
row=$(sqlite3 "$dir/ledger.db" "SELECT number, length(der) FROM crls" 2>&1)
[ "$row" = "1|0" ] && ok || fail "the ledger's crls row is '$row', not '1|0' (number 1, no DER above CRL_LEDGER_MAX)"
rm -rf "$dir"
dir=

# 1 330 entries: a CRL of ~65 450 octets, whose CertificateList header
# (4 octets) is shorter than the one reserved before signing for the
# longest signature (5): the streamed writer moves the TBS down in the file.
# Verifies, lists 1 330 serials, and the ledger keeps the whole DER (below
# CRL_LEDGER_MAX), identical to the file.
rc=0
out=$(timeout 300 "$BIN" --rows 0 --crl 1330 --seconds 0.2 --keep 2>&1) || rc=$?
echo "$out"
[ $rc -eq 0 ] && ok || { echo "FAIL: ledger-scale --crl 1330 exited $rc"; exit 1; }
dir=$(sed -n 's/^kept: //p' <<<"$out")
crl=$dir/crl/ca.crl
v=$(openssl crl -inform DER -in "$crl" -CAfile "$dir/ca.pem" -noout -verify 2>&1)
grep -q 'verify OK' <<<"$v" && ok || fail "the 1330-entry CRL does not verify: $(head -3 <<<"$v")"
n=$(openssl crl -inform DER -in "$crl" -noout -text 2>/dev/null | grep -c 'Serial Number:')
[ "$n" = 1330 ] && ok || fail "the CRL lists $n serials, not 1330"
size=$(stat -c %s "$crl")
[ "$size" -gt 65535 ] || [ "$size" -lt 65000 ] && echo "note: CRL of $size octets, not near the 65 536 boundary"
sqlite3 "$dir/ledger.db" "SELECT writefile('$dir/ledger.crl', der) FROM crls WHERE number = 1" >/dev/null 2>&1
cmp -s "$crl" "$dir/ledger.crl" && ok || fail "the ledger's DER is not the published file"
rm -rf "$dir"
dir=

# Other CA keys: RSA-2048 (streamed, RSA signature over the digest, checked
# with EVP_PKEY_verify) and Ed25519 (built in memory: PureEdDSA signs the
# whole TBS). 3 000 entries each: verifies and lists 3 000 serials.
for key in rsa-2048 ed25519; do
  rc=0
  out=$(timeout 300 "$BIN" --rows 0 --crl 3000 --seconds 0.2 --keep --ca-key $key 2>&1) || rc=$?
  echo "$out"
  [ $rc -eq 0 ] && ok || { fail "ledger-scale --ca-key $key exited $rc"; continue; }
  dir=$(sed -n 's/^kept: //p' <<<"$out")
  crl=$dir/crl/ca.crl
  v=$(openssl crl -inform DER -in "$crl" -CAfile "$dir/ca.pem" -noout -verify 2>&1)
  grep -q 'verify OK' <<<"$v" && ok || fail "$key: the CRL does not verify: $(head -3 <<<"$v")"
  n=$(openssl crl -inform DER -in "$crl" -noout -text 2>/dev/null | grep -c 'Serial Number:')
  [ "$n" = 3000 ] && ok || fail "$key: the CRL lists $n serials, not 3000"
  rm -rf "$dir"
  dir=
done
echo "test_crl_large: $checks checks, $fails failed"
[ $fails -eq 0 ]
