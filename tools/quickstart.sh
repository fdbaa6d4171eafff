#!/usr/bin/env bash
# tools/quickstart.sh — from a fresh Debian machine to a working certforge:
# install missing packages, build, create a SoftHSM token with a root and an
# intermediate CA (through `certforge ca`) in a local state folder, verify
# the chain, and measure the HSM sign rate through certforge's PKCS#11
# layer. Re-runnable: an existing state folder is reused.
#
#   tools/quickstart.sh              state in ./state
#   CF_STATE=/var/tmp/cf tools/quickstart.sh
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

cat <<MSG

Done. State: $state (token files, PIN files mode 0600, root.pem, nf-ca.pem).
  export SOFTHSM2_CONF=$state/softhsm2.conf
  export CERTFORGE_TOKEN='$CERTFORGE_TOKEN'
  $cf keys list
Issuing NF certificates through certforged arrives with the daemon (issue 4);
this script will then start it, issue a batch, verify it and print the rate.
MSG
