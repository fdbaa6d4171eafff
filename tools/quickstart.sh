#!/usr/bin/env bash
# tools/quickstart.sh — from a fresh Debian machine to a working certforge:
# install missing packages, build, create a SoftHSM token with a root and an
# intermediate CA (through `certforge ca`) in a local state folder, verify
# the chain, measure the HSM sign rate through certforge's PKCS#11 layer,
# then run certforged on that CA, issue a batch of NF certificates through
# it (`certforge issue --batch`), verify every one with openssl and print
# the issuance rate. Re-runnable: an existing state folder is reused.
#
#   tools/quickstart.sh                       state in ./state, 2000 certificates
#   CF_STATE=/var/tmp/cf tools/quickstart.sh
#   CF_QUICKSTART_CERTS=10000 tools/quickstart.sh
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
. tools/deps.sh
cf_install_deps

state=${CF_STATE:-$top/state}
build=${CF_BUILD:-$top/build}
step() { printf '\n== %s\n' "$*"; }

step "build ($build)"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc)" >"$build.quickstart.log" 2>&1 || { tail -n 40 "$build.quickstart.log"; exit 1; }
cf=$build/certforge

step "SoftHSM token in $state"
mkdir -p "$state/tokens"
state=$(cd "$state" && pwd)   # absolute: the daemon's config names files in it
chmod 700 "$state"
cat >"$state/softhsm2.conf" <<CONF
directories.tokendir = $state/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
CONF
export SOFTHSM2_CONF=$state/softhsm2.conf
if [ ! -s "$state/pin" ]; then
  (umask 077; od -An -N8 -tx1 /dev/urandom | tr -d ' \n' >"$state/pin")
  (umask 077; od -An -N8 -tx1 /dev/urandom | tr -d ' \n' >"$state/so-pin")
fi
module=${CF_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
export CERTFORGE_TOKEN="pkcs11:token=certforge-ca?module-path=$module&pin-source=file:$state/pin"
if ! softhsm2-util --show-slots 2>/dev/null | grep -q "Label:.*certforge-ca"; then
  softhsm2-util --init-token --free --label certforge-ca \
    --so-pin "$(cat "$state/so-pin")" --pin "$(cat "$state/pin")" >/dev/null
  echo "token 'certforge-ca' created"
else
  echo "token 'certforge-ca' reused"
fi

step "CA keys (generated inside the token: sensitive, non-extractable)"
for k in root:ec-p384 nf-ca:ec-p256; do
  label=${k%%:*} type=${k#*:}
  if "$cf" keys show "pkcs11:token=certforge-ca;object=$label" >/dev/null 2>&1; then
    echo "key '$label' reused"
  else
    "$cf" keys generate --type "$type" --label "$label"
  fi
done

step "CA ceremony: root and NF intermediate, signed in the HSM"
if [ ! -s "$state/root.pem" ]; then
  "$cf" ca init-root --key "pkcs11:token=certforge-ca;object=root" \
    --subject "/C=FI/O=certforge quickstart/CN=certforge Root CA" --days 3650 --out "$state/root.pem"
fi
if [ ! -s "$state/nf-ca.pem" ]; then
  "$cf" ca init-intermediate --key "pkcs11:token=certforge-ca;object=nf-ca" \
    --issuer-key "pkcs11:token=certforge-ca;object=root" --issuer-cert "$state/root.pem" \
    --subject "/C=FI/O=5gc.mnc001.mcc001.3gppnetwork.org/CN=certforge NF CA" --days 1825 \
    --pathlen 0 --out "$state/nf-ca.pem"
fi
openssl verify -x509_strict -CAfile "$state/root.pem" "$state/nf-ca.pem"
"$cf" keys list

step "HSM sign rate through certforge's PKCS#11 layer (P-256, throwaway token)"
"$build/bench/hsm_bench" --seconds 1 --rounds 1 --threads "1 2"

step "certforged on the NF CA ($state/certforged.conf)"
sock=$state/certforged.sock
pidfile=$state/certforged.pid
log=$state/certforged.log
[ ${#sock} -le 100 ] || { echo "quickstart: socket path $sock is too long for a Unix socket; use a shorter CF_STATE" >&2; exit 1; }
# A daemon left by an earlier run holds the token: stop it first.
stop_daemon() {
  local pid
  pid=$(cat "$pidfile" 2>/dev/null) || return 0
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -qa certforged "/proc/$pid/cmdline" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "certforged (pid $pid) still running 30 s after SIGTERM; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$pidfile"
}
stop_daemon
trap stop_daemon EXIT
cat >"$state/certforged.conf" <<CONF
# Written by tools/quickstart.sh (rewritten on every run); docs/configuration.md.
tokens = ( { name = "ca"; uri = "$CERTFORGE_TOKEN"; } );
keys = ( { name = "nf-ca"; token = "ca"; uri = "pkcs11:object=nf-ca"; } );
issuers = ( { name = "nf-ca"; key = "nf-ca"; certificate = "$state/nf-ca.pem"; chain = "$state/root.pem"; } );
profiles = ( {
  name = "nf"; type = "nf"; issuer = "nf-ca";
  subject = { C = "FI"; O = "5gc.mnc001.mcc001.3gppnetwork.org"; };
  validity = { default = "90d"; max = "365d"; };
  eku = ["serverAuth", "clientAuth"];
  crl_dp = "http://crl.5gc.mnc001.mcc001.3gppnetwork.org/nf-ca.crl";
} );
pipeline = { workers = $(nproc); };
log = { level = "info"; };
server = { socket = "$sock"; socket_mode = "0600"; };
grants = ( { uid = $(id -u); profiles = ["nf"]; ops = ["issue", "status", "keys", "revoke", "crl"]; } );
ledger = { backend = "sqlite"; path = "ledger.db"; };   # $state/ledger.db (docs/ledger.md)
crl = { dir = "crl"; interval = "1h"; validity = "1d"; revoke_delay = "10s"; };  # docs/crl.md
CONF
mkdir -p "$state/crl"
: >"$log"
"$build/certforged" --config "$state/certforged.conf" >>"$log" 2>&1 &
echo $! >"$pidfile"
ready=0
for _ in $(seq 1 300); do   # 30 s
  if grep -q "certforged: ready socket=" "$log"; then ready=1; break; fi
  kill -0 "$(cat "$pidfile")" 2>/dev/null || break
  sleep 0.1
done
if [ $ready -ne 1 ]; then
  echo "quickstart: certforged did not get ready within 30 s; $log says:" >&2
  tail -n 20 "$log" >&2
  exit 1
fi
grep "certforged: ready socket=" "$log"

n=${CF_QUICKSTART_CERTS:-2000}
step "$n NF CSRs (certforge csr-gen: a new P-256 key, NF instance ID and FQDN each)"
rm -rf "$state/csrs" "$state/certs"
"$cf" csr-gen --count "$n" --out-dir "$state/csrs" --batch-out "$state/batch.jsonl"

step "issue them through certforged (certforge issue --batch, pipelined)"
issue_t0=$(date -u +%Y-%m-%dT%H:%M:%S.000Z)
"$cf" issue --socket "$sock" --batch "$state/batch.jsonl" --out-dir "$state/certs" | tee "$state/issue-summary.txt"
"$cf" status --socket "$sock"

step "verify every certificate (openssl verify -x509_strict, root + NF CA)"
cat "$state/nf-ca.pem" "$state/root.pem" >"$state/ca-chain.pem"
verified=$(cd "$state/certs" && find . -name '*.pem' -print0 | xargs -0 openssl verify -x509_strict -purpose sslserver \
  -CAfile "$state/ca-chain.pem" 2>&1 | grep -c ': OK$' || true)
if [ "$verified" -ne "$n" ]; then
  echo "quickstart: only $verified of $n certificates verify" >&2
  exit 1
fi
echo "$verified of $n certificates verify"
# every certificate was recorded before it was released (records of this run)
recorded=$("$cf" ledger export --format jsonl --config "$state/certforged.conf" \
  | jq -r --arg t0 "$issue_t0" 'select(.issued_at >= $t0) | .serial' | wc -l)
if [ "$recorded" -ne "$n" ]; then
  echo "quickstart: $recorded certificates of this run are in the ledger, not $n" >&2
  exit 1
fi
echo "all $n are in the ledger ($state/ledger.db; certforge ledger list --config $state/certforged.conf)"
rate=$(sed -n 's/^issued .* s: \(.*\) certificates\/s$/\1/p' "$state/issue-summary.txt")

step "revoke one certificate and check the CRL (certforge revoke, certforge crl --new)"
first=$(find "$state/certs" -name '*.pem' | sort | sed -n 1p) # sed reads it all: no SIGPIPE under pipefail
serial=$(openssl x509 -in "$first" -noout -serial | cut -d= -f2)
"$cf" revoke --socket "$sock" --serial "$serial" --reason keyCompromise
"$cf" crl --socket "$sock" --issuer nf-ca --new --out "$state/crl/nf-ca-now.crl" --der
openssl crl -inform DER -in "$state/crl/nf-ca-now.crl" -CAfile "$state/nf-ca.pem" -noout -verify
openssl crl -inform DER -in "$state/crl/nf-ca-now.crl" -out "$state/crl/nf-ca-now.pem"
if openssl verify -crl_check -CAfile "$state/ca-chain.pem" -CRLfile "$state/crl/nf-ca-now.pem" \
     "$first" >/dev/null 2>&1; then
  echo "quickstart: openssl verify -crl_check accepted the revoked $first" >&2
  exit 1
fi
echo "openssl verify -crl_check rejects the revoked certificate ($serial)"

step "stop certforged"
stop_daemon
trap - EXIT
echo "stopped"

cat <<MSG

Done. certforged issued $n NF certificates at $rate certificates/s; all $verified verify
against the quickstart root. State: $state (token files, PIN files mode 0600, root.pem,
nf-ca.pem, certforged.conf, certforged.log, ledger.db, crl/ (published CRLs), csrs/, certs/).
Run it again yourself:
  export SOFTHSM2_CONF=$state/softhsm2.conf
  export CERTFORGE_TOKEN='$CERTFORGE_TOKEN'
  $build/certforged --config $state/certforged.conf &
  export CERTFORGE_SOCKET=$sock
  $cf issue --batch $state/batch.jsonl --out-dir /tmp/certs
  $cf status
  $cf ledger list --config $state/certforged.conf --limit 5
MSG
