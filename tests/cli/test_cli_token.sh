#!/usr/bin/env bash
# The HSM administrator's commands added for issue 17, on throwaway SoftHSM
# tokens: token init and change-pin (PIN files only, 0600), the warning a
# wrong PIN brings when the token reports few tries left, SOFTHSM2_CONF
# named when it is unset or wrong; keys csr (verified with openssl), a
# certificate object put there by another tool listed with subject, expiry
# and SHA-256 fingerprint (and its label blocking keys generate); keys show
# and ca show with fingerprints equal to openssl's, ca show exit 1 on a key
# mismatch; ca cross-sign both ways (a chain under the new root verifies
# with only the old root trusted, and the other way round); keys delete of
# a key a running certforged uses refused naming it and its certificate,
# --force, then the daemon's answer saying the key is gone. Every wait is
# bounded; the daemon is stopped by its PID.
#
#   test_cli_token.sh /path/to/certforge /path/to/certforged
set -uo pipefail

CF=${1:?usage: test_cli_token.sh /path/to/certforge /path/to/certforged}
CFD=${2:?usage: test_cli_token.sh /path/to/certforge /path/to/certforged}
MOD=${CF_SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
for tool in softhsm2-util jq openssl pkcs11-tool; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed"; exit 77; }
done
[ -r "$MOD" ] || { echo "SKIP: no SoftHSM module at $MOD"; exit 77; }

D=$(mktemp -d "${TMPDIR:-/tmp}/cf-token-XXXXXX")
DPID=
stop_daemon() {
  [ -n "$DPID" ] || return 0
  kill -TERM "$DPID" 2>/dev/null
  for _ in $(seq 1 200); do kill -0 "$DPID" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$DPID" 2>/dev/null && { echo "FAIL: certforged still running 20 s after SIGTERM" >&2; kill -KILL "$DPID"; }
  wait "$DPID" 2>/dev/null
  DPID=
}
trap 'stop_daemon; rm -rf "$D"' EXIT
cd "$D"
mkdir tokens
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n' "$D" > softhsm2.conf
export SOFTHSM2_CONF=$D/softhsm2.conf
unset CERTFORGE_PIN CERTFORGE_SOCKET CERTFORGE_TOKEN

fails=0 checks=0
ok()   { checks=$((checks + 1)); }
fail() { checks=$((checks + 1)); fails=$((fails + 1)); echo "FAIL: $*" >&2; }
check() { local what=$1; shift; if "$@" >/dev/null 2>&1; then ok; else fail "$what"; fi; }
# expect STATUS NEEDLE cmd...: exit status, stderr holding NEEDLE
expect() {
  local want=$1 needle=$2; shift 2
  local rc=0
  "$@" >"$D/out" 2>"$D/err" || rc=$?
  if [ "$rc" -ne "$want" ]; then fail "'$*': exit $rc, want $want; $(cat "$D/err")"
  elif ! grep -qF -- "$needle" "$D/err"; then fail "'$*': stderr lacks '$needle': $(cat "$D/err")"
  else ok; fi
}
fp_of() { openssl x509 -in "$1" -noout -fingerprint -sha256 | cut -d= -f2; }

# --- token init / change-pin ---------------------------------------------------------------
(umask 077; echo 87654321 > so.pin; echo 1234 > user.pin; echo 567890 > new.pin; echo 1111 > wrong.pin)
printf '4321\n' > loose.pin; chmod 644 loose.pin
expect 2 "--so-pin-file and --pin-file are required" "$CF" token init --label CA
expect 2 "unknown or needs an argument" "$CF" token init --label CA --user-pin 1234
expect 1 "can be read by others (mode 644): chmod 600 it" "$CF" token init --label CA --so-pin-file so.pin --pin-file loose.pin
expect 2 "longer than 32" "$CF" token init --label "$(printf 'x%.0s' $(seq 1 33))" --so-pin-file so.pin --pin-file user.pin
uri=$("$CF" token init --label CA --so-pin-file so.pin --pin-file user.pin 2>"$D/err") && ok || fail "token init: $(cat "$D/err")"
[[ $uri == "pkcs11:token=CA;serial="*"?module-path=$MOD&pin-source=file:$D/user.pin" ]] && ok || fail "token init printed '$uri'"
expect 1 "already has a token labelled 'CA'" "$CF" token init --label CA --so-pin-file so.pin --pin-file user.pin
softhsm2-util --show-slots | grep -q "Label:.*CA" && ok || fail "softhsm2-util does not see token CA"
export CERTFORGE_TOKEN="pkcs11:token=CA?module-path=$MOD&pin-source=file:$D/user.pin"
check "keys list with the initial PIN" "$CF" keys list
check "token change-pin" "$CF" token change-pin --new-pin-file new.pin
expect 1 "rejected the PIN" "$CF" keys list
cp new.pin user.pin
check "keys list with the new PIN" "$CF" keys list
expect 2 "--new-pin-file is required" "$CF" token change-pin

# --- wrong PIN, SOFTHSM2_CONF ---------------------------------------------------------------
expect 1 "few tries left (user-pin-count-low)" env CERTFORGE_TOKEN="pkcs11:token=CA?module-path=$MOD&pin-source=file:$D/wrong.pin" "$CF" keys list
check "the right PIN still works after one wrong one" "$CF" keys list
expect 1 "SOFTHSM2_CONF is not set" env -u SOFTHSM2_CONF "$CF" keys show "pkcs11:object=nothing"
expect 1 "SOFTHSM2_CONF=$D/nope.conf cannot be read" env SOFTHSM2_CONF=$D/nope.conf "$CF" keys show "pkcs11:object=nothing"
expect 1 "no token matches" env CERTFORGE_TOKEN="pkcs11:token=NOPE?module-path=$MOD&pin-source=file:$D/user.pin" "$CF" keys list
grep -qF "SoftHSM tokens as configured in SOFTHSM2_CONF=$D/softhsm2.conf" "$D/err" && ok || fail "no-token message lacks the configuration: $(cat "$D/err")"

# --- keys csr ---------------------------------------------------------------------------------
for k in old-root:ec-p384 new-root:ec-p256 old-int:ec-p256 new-int:ec-p256 ed:ed25519 rsa:rsa-2048; do
  "$CF" keys generate --type "${k#*:}" --label "${k%%:*}" >/dev/null || fail "keys generate ${k%%:*}"
done
for k in new-int ed rsa; do
  "$CF" keys csr "pkcs11:object=$k" --subject "/C=FI/O=Example/CN=$k CSR" --out "$k.csr" 2>"$D/err" && ok \
    || fail "keys csr $k: $(cat "$D/err")"
  openssl req -in "$k.csr" -verify -noout 2>&1 | grep -q "verify OK" && ok || fail "$k.csr does not verify"
  [ "$(openssl req -in "$k.csr" -noout -subject)" = "subject=C = FI, O = Example, CN = $k CSR" ] && ok \
    || fail "$k.csr subject: $(openssl req -in "$k.csr" -noout -subject)"
  diff <(openssl req -in "$k.csr" -noout -pubkey) <("$CF" keys export-pub "pkcs11:object=$k") >/dev/null && ok \
    || fail "$k.csr does not carry the HSM key"
done
"$CF" keys csr "pkcs11:object=ed" --subject "/CN=stdout" | openssl req -noout -verify 2>&1 | grep -q "verify OK" && ok \
  || fail "keys csr to standard output"
ln -s "$D/victim" csr.link
expect 1 "symbolic link" "$CF" keys csr "pkcs11:object=ed" --subject "/CN=x" --out csr.link
expect 2 "--subject is required" "$CF" keys csr "pkcs11:object=ed"
expect 2 "unknown or needs an argument" "$CF" keys csr "pkcs11:object=ed" --subject "/CN=x" --yes
expect 1 "key not found" "$CF" keys csr "pkcs11:object=nosuch" --subject "/CN=x"

# --- a certificate object stored by another tool -------------------------------------------------
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout foreign.key -days 30 \
  -subj "/CN=Foreign Cert" -out foreign.pem 2>/dev/null
openssl x509 -in foreign.pem -outform DER -out foreign.der
pkcs11-tool --module "$MOD" --token-label CA --login --pin "$(cat user.pin)" --write-object foreign.der \
  --type cert --label foreign --id 99 >/dev/null 2>&1 || fail "pkcs11-tool --write-object"
"$CF" keys list --json > list.json 2>"$D/err" || fail "keys list --json: $(cat "$D/err")"
jq -e --arg fp "$(fp_of foreign.pem)" '.certificates[] | select(.label == "foreign") |
  .subject == "/CN=Foreign Cert" and .sha256 == $fp and .private_key == false and .id == "99" and (.not_after | test("^20[0-9-]+T"))' \
  list.json >/dev/null && ok || fail "the foreign certificate is not listed right: $(jq -c .certificates list.json)"
"$CF" keys list | grep -E "^foreign +99 +no +20.*/CN=Foreign Cert +$(fp_of foreign.pem)$" >/dev/null && ok \
  || fail "keys list (text) lacks the foreign certificate: $("$CF" keys list | tail -n 4)"
expect 1 "already has an object labelled 'foreign'" "$CF" keys generate --type ec-p256 --label foreign

# --- CA ceremony, show, fingerprints -----------------------------------------------------------
"$CF" ca init-root --key pkcs11:object=old-root --subject "/C=FI/O=Example/CN=Root 2025" --out old-root.pem >/dev/null &&
"$CF" ca init-root --key pkcs11:object=new-root --subject "/C=FI/O=Example/CN=Root 2030" --out new-root.pem >/dev/null &&
"$CF" ca init-intermediate --key pkcs11:object=old-int --issuer-key pkcs11:object=old-root --issuer-cert old-root.pem \
  --subject "/C=FI/O=Example/CN=Issuing 2025" --out old-int.pem >/dev/null &&
"$CF" ca init-intermediate --key pkcs11:object=new-int --issuer-key pkcs11:object=new-root --issuer-cert new-root.pem \
  --subject "/C=FI/O=Example/CN=Issuing 2030" --out new-int.pem >/dev/null && ok || fail "CA ceremony"
"$CF" keys show pkcs11:object=new-int --json | jq -e --arg fp "$(fp_of new-int.pem)" \
  '.certificate_subject == "/C=FI/O=Example/CN=Issuing 2030" and .certificate_sha256 == $fp' >/dev/null && ok \
  || fail "keys show --json lacks the certificate: $("$CF" keys show pkcs11:object=new-int --json)"
"$CF" keys show pkcs11:object=new-int | grep -q "^  sha256: *$(fp_of new-int.pem)$" && ok || fail "keys show (text) lacks the fingerprint"
"$CF" ca show --key pkcs11:object=old-root | grep -q "^sha256 fingerprint: *$(fp_of old-root.pem)$" && ok || fail "ca show fingerprint"
expect 1 "is not the key" "$CF" ca show --cert new-int.pem --key pkcs11:object=old-int
grep -q "^matches key: *NO" "$D/out" && ok || fail "ca show mismatch output: $(cat "$D/out")"
check "ca show match exits 0" "$CF" ca show --cert new-int.pem --key pkcs11:object=new-int

# --- ca cross-sign --------------------------------------------------------------------------------
expect 1 "have the same key" "$CF" ca cross-sign --issuer-key pkcs11:object=old-root --issuer-cert old-root.pem --cert old-root.pem --out same.pem
expect 1 "does not belong to --issuer-key" "$CF" ca cross-sign --issuer-key pkcs11:object=new-root --issuer-cert old-root.pem --cert new-root.pem --out x.pem
expect 2 "are required" "$CF" ca cross-sign --issuer-key pkcs11:object=old-root --cert new-root.pem --out x.pem
check "cross-sign new by old" "$CF" ca cross-sign --issuer-key pkcs11:object=old-root --issuer-cert old-root.pem --cert new-root.pem --out new-by-old.pem
check "cross-sign old by new" "$CF" ca cross-sign --issuer-key pkcs11:object=new-root --issuer-cert new-root.pem --cert old-root.pem --out old-by-new.pem
expect 1 "new-by-old.pem exists; use --force to replace it" "$CF" ca cross-sign --issuer-key pkcs11:object=old-root --issuer-cert old-root.pem --cert new-root.pem --out new-by-old.pem
cp new-by-old.pem new-by-old.before
check "cross-sign --force replaces the link file" "$CF" ca cross-sign --issuer-key pkcs11:object=old-root --issuer-cert old-root.pem --cert new-root.pem --out new-by-old.pem --force
check "the replaced link is a new certificate" bash -c '! cmp -s new-by-old.pem new-by-old.before' 
[ "$(openssl x509 -in new-by-old.pem -noout -subject)" = "$(openssl x509 -in new-root.pem -noout -subject)" ] &&
  [ "$(openssl x509 -in new-by-old.pem -noout -issuer | sed 's/^issuer/subject/')" = "$(openssl x509 -in old-root.pem -noout -subject)" ] && ok \
  || fail "link subject/issuer wrong"
ski() { openssl x509 -in "$1" -noout -ext subjectKeyIdentifier | tail -n 1 | tr -d ' '; }
aki() { openssl x509 -in "$1" -noout -ext authorityKeyIdentifier | tail -n 1 | tr -d ' ' | sed 's/^keyid://'; }
[ "$(ski new-by-old.pem)" = "$(ski new-root.pem)" ] && [ "$(aki new-by-old.pem)" = "$(ski old-root.pem)" ] && ok \
  || fail "link SKI/AKI: $(ski new-by-old.pem) $(aki new-by-old.pem)"
# a client that trusts only the old root accepts the new chain through the link, not without it
openssl verify -x509_strict -CAfile old-root.pem -untrusted new-by-old.pem new-int.pem >/dev/null 2>&1 && ok \
  || fail "new-int.pem does not verify under the old root through the link"
! openssl verify -CAfile old-root.pem new-int.pem >/dev/null 2>&1 && ok || fail "new-int.pem verifies without the link?"
openssl verify -x509_strict -CAfile new-root.pem -untrusted old-by-new.pem old-int.pem >/dev/null 2>&1 && ok \
  || fail "old-int.pem does not verify under the new root through the link"

# --- keys delete while certforged uses the key -------------------------------------------------------
SOCK=$D/run/cf.sock
daemon_conf() { # ops
  cat > certforged.conf <<CONF
tokens = ( { name = "ca"; uri = "$CERTFORGE_TOKEN"; } );
keys = ( { name = "issuing"; token = "ca"; uri = "pkcs11:object=new-int"; } );
issuers = ( { name = "issuing"; key = "issuing"; certificate = "new-int.pem"; chain = "new-root.pem"; } );
profiles = ( { name = "nf"; type = "nf"; issuer = "issuing"; subject = { C = "FI"; O = "Example"; };
    eku = ["serverAuth"]; crl_dp = "http://crl.example/i.crl"; require_nf_instance_id = false; require_nf_types = false; } );
server = { socket = "$SOCK"; socket_mode = "0600"; };
grants = ( { uid = $(id -u); profiles = ["nf"]; ops = [$1]; } );
ledger = { backend = "sqlite"; path = "ledger.db"; };
CONF
  : > d.log
  "$CFD" --config certforged.conf > d.log 2>&1 &
  DPID=$!
  for _ in $(seq 1 300); do
    grep -q "certforged: ready" d.log && return 0
    kill -0 "$DPID" 2>/dev/null || break
    sleep 0.1
  done
  echo "FAIL: certforged not ready:" >&2; cat d.log >&2; exit 1
}
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout leaf.key -subj "/CN=leaf" -out leaf.csr 2>/dev/null
daemon_conf '"issue", "keys"'
export CERTFORGE_SOCKET=$SOCK
check "issue before" "$CF" issue --csr leaf.csr --profile nf --dns leaf.example --out leaf.pem
expect 1 "uses this key as 'issuing' (certificate /C=FI/O=Example/CN=Issuing 2030)" "$CF" keys delete pkcs11:object=new-int --yes
"$CF" keys show pkcs11:object=new-int >/dev/null 2>&1 && ok || fail "a refused delete destroyed the key"
check "a key the daemon does not use can go" "$CF" keys delete pkcs11:object=rsa --yes
stop_daemon
daemon_conf '"issue"'
expect 1 "cannot tell whether certforged uses this key" "$CF" keys delete pkcs11:object=new-int --yes
"$CF" keys delete pkcs11:object=new-int --yes --force >del.out 2>"$D/err" && ok || fail "delete --force: $(cat "$D/err")"
grep -q "^destroying on token 'CA': private key 'new-int' .*certificate /C=FI/O=Example/CN=Issuing 2030 (not after " del.out && ok \
  || fail "delete did not show what goes: $(cat del.out)"
expect 1 "the key is no longer on the token 'CA'" "$CF" issue --csr leaf.csr --profile nf --dns leaf.example --out leaf2.pem
grep -q "HSM_FAILURE" "$D/err" && ok || fail "not an HSM_FAILURE: $(cat "$D/err")"
stop_daemon

echo "test_cli_token: $checks checks, $fails failed"
min_checks=68
[ "$checks" -ge "$min_checks" ] || echo "FAIL: only $checks checks made, want at least $min_checks" >&2
[ "$fails" -eq 0 ] && [ "$checks" -ge "$min_checks" ]
