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

# An existing build folder keeps its build type and options: one set up for
# debugging or a sanitizer is never reconfigured behind its owner's back.
# The quickstart then builds in its own folder (or, with CF_BUILD given,
# uses that one as it is and says so: the rates reflect its type).
build_type=RelWithDebInfo
if [ -f "$build/CMakeCache.txt" ]; then
  have=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$build/CMakeCache.txt")
  have=${have:-RelWithDebInfo} # CMakeLists.txt's default when none is set
  san=$(grep -cE '^CF_(ASAN|UBSAN|TSAN|FUZZ):BOOL=ON' "$build/CMakeCache.txt" || true)
  if [ "$have" != RelWithDebInfo ] || [ "$san" -gt 0 ]; then
    what="a $have build"
    [ "$san" -eq 0 ] || what="$what with sanitizer or fuzz options"
    if [ -n "${CF_BUILD:-}" ]; then
      echo "quickstart: note: $build is $what; left as it is (the rates below reflect it)"
      build_type=
    else
      echo "quickstart: note: $build is $what; left as it is: the quickstart builds in $top/build-quickstart"
      build=$top/build-quickstart
    fi
  fi
fi

step "build ($build)"
cmake -S . -B "$build" ${build_type:+-DCMAKE_BUILD_TYPE=$build_type} >/dev/null
cmake --build "$build" -j "$(nproc)" >"$build.quickstart.log" 2>&1 || { tail -n 40 "$build.quickstart.log"; exit 1; }
cf=$build/certforge

step "SoftHSM token in $state"
# Separate places (docs/security.md, "Layout"): the token and the PINs are
# never below a folder certforged may write to; Landlock leaves only run/
# (the socket), ledger/ and crl/ writable.
mkdir -p "$state/tokens" "$state/pins" "$state/ca" "$state/run" "$state/ledger" "$state/crl"
state=$(cd "$state" && pwd)   # absolute: the daemon's config names files in it
chmod 700 "$state" "$state/tokens" "$state/pins"
# a state folder from an earlier quickstart (everything in one place): moved
for f in pin so-pin; do
  [ -f "$state/$f" ] && [ ! -e "$state/pins/$f" ] && mv "$state/$f" "$state/pins/$f"
done
for f in root.pem nf-ca.pem; do
  [ -f "$state/$f" ] && [ ! -e "$state/ca/$f" ] && mv "$state/$f" "$state/ca/$f"
done
for f in ledger.db ledger.db-wal ledger.db-shm; do
  [ -f "$state/$f" ] && [ ! -e "$state/ledger/$f" ] && mv "$state/$f" "$state/ledger/$f"
done
rm -f "$state/certforged.sock" "$state/certforged.sock.lock"
cat >"$state/softhsm2.conf" <<CONF
directories.tokendir = $state/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
CONF
export SOFTHSM2_CONF=$state/softhsm2.conf
if [ ! -s "$state/pins/pin" ]; then
  (umask 077; od -An -N8 -tx1 /dev/urandom | tr -d ' \n' >"$state/pins/pin")
  (umask 077; od -An -N8 -tx1 /dev/urandom | tr -d ' \n' >"$state/pins/so-pin")
fi
module=${CF_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
export CERTFORGE_TOKEN="pkcs11:token=certforge-ca?module-path=$module&pin-source=file:$state/pins/pin"
if ! softhsm2-util --show-slots 2>/dev/null | grep -q "Label:.*certforge-ca"; then
  softhsm2-util --init-token --free --label certforge-ca \
    --so-pin "$(cat "$state/pins/so-pin")" --pin "$(cat "$state/pins/pin")" >/dev/null
  echo "token 'certforge-ca' created"
else
  echo "token 'certforge-ca' reused"
fi

step "CA keys (generated inside the token: sensitive, non-extractable)"
for k in root:ec-p384 nf-ca:ec-p256; do
  label=${k%%:*} type=${k#*:}
  if "$cf" keys show --key "pkcs11:token=certforge-ca;object=$label" >/dev/null 2>&1; then
    echo "key '$label' reused"
  else
    "$cf" keys generate --type "$type" --label "$label"
  fi
done

step "CA ceremony: root and NF intermediate, signed in the HSM"
if [ ! -s "$state/ca/root.pem" ]; then
  "$cf" ca init-root --key "pkcs11:token=certforge-ca;object=root" \
    --subject "/C=FI/O=certforge quickstart/CN=certforge Root CA" --days 3650 --out "$state/ca/root.pem"
fi
if [ ! -s "$state/ca/nf-ca.pem" ]; then
  "$cf" ca init-intermediate --key "pkcs11:token=certforge-ca;object=nf-ca" \
    --issuer-key "pkcs11:token=certforge-ca;object=root" --issuer-cert "$state/ca/root.pem" \
    --subject "/C=FI/O=5gc.mnc001.mcc001.3gppnetwork.org/CN=certforge NF CA" --days 1825 \
    --pathlen 0 --out "$state/ca/nf-ca.pem"
fi
openssl verify -x509_strict -CAfile "$state/ca/root.pem" "$state/ca/nf-ca.pem"
"$cf" keys list

step "HSM sign rate through certforge's PKCS#11 layer (P-256, throwaway token)"
"$build/bench/hsm_bench" --seconds 1 --rounds 1 --threads "1 2"

step "certforged on the NF CA ($state/certforged.conf)"
sock=$state/run/certforged.sock
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
issuers = ( { name = "nf-ca"; key = "nf-ca"; certificate = "$state/ca/nf-ca.pem"; chain = "$state/ca/root.pem"; } );
profiles = ( {
  name = "nf"; type = "nf"; issuer = "nf-ca";
  subject = { C = "FI"; O = "5gc.mnc001.mcc001.3gppnetwork.org"; };
  validity = { default = "90d"; max = "365d"; };
  eku = ["serverAuth", "clientAuth"];
  crl_dp = "http://crl.5gc.mnc001.mcc001.3gppnetwork.org/nf-ca.crl";
}, {
  # ACME orders for DNS names (certforge-acme's "default" profile)
  name = "dns"; type = "nf"; issuer = "nf-ca";
  subject = { C = "FI"; O = "5gc.mnc001.mcc001.3gppnetwork.org"; };
  validity = { default = "30d"; max = "90d"; };
  eku = ["serverAuth", "clientAuth"];
  crl_dp = "http://crl.5gc.mnc001.mcc001.3gppnetwork.org/nf-ca.crl";
  require_nf_instance_id = false; require_nf_types = false; require_fqdn = true;
}, {
  # certforge-acme's own TLS certificate
  name = "acme-tls"; type = "nf"; issuer = "nf-ca";
  subject = { C = "FI"; O = "5gc.mnc001.mcc001.3gppnetwork.org"; };
  validity = { default = "7d"; max = "30d"; };
  eku = ["serverAuth"];
  crl_dp = "http://crl.5gc.mnc001.mcc001.3gppnetwork.org/nf-ca.crl";
  require_nf_instance_id = false; require_nf_types = false; require_fqdn = true;
} );
pipeline = { workers = $(nproc); };
log = { level = "info"; };
server = { socket = "$sock"; socket_mode = "0600"; };
grants = ( { uid = $(id -u); profiles = ["nf", "dns", "acme-tls"]; ops = ["issue", "status", "keys", "revoke", "crl"]; } );
ledger = { backend = "sqlite"; path = "ledger/ledger.db"; };   # $state/ledger/ledger.db (docs/ledger.md)
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
# what certforged may write: neither the token nor the PIN files
writable=$(sed -n 's/.* event=confined .* writable=\([^ ]*\) .*/\1/p' "$log" | tr -d '"')
[ -n "$writable" ] || { echo "quickstart: certforged logged no event=confined" >&2; exit 1; }
for w in ${writable//,/ }; do
  for secret in "$state/tokens" "$state/pins"; do
    case "$secret/" in "${w%/}"/*)
      echo "quickstart: certforged may write $w, which holds $secret" >&2; exit 1 ;;
    esac
  done
done
echo "certforged may write only: $writable (not tokens/ or pins/)"

n=${CF_QUICKSTART_CERTS:-2000}
step "$n NF CSRs (certforge csr-gen: a new P-256 key, NF instance ID and FQDN each)"
rm -rf "$state/csrs" "$state/certs"
# --force: a re-run replaces the batch of the run before (csrs/ was removed above)
"$cf" csr-gen --count "$n" --out-dir "$state/csrs" --batch-out "$state/batch.jsonl" --force

step "issue them through certforged (certforge issue --batch, pipelined)"
issue_t0=$(date -u +%Y-%m-%dT%H:%M:%S.000Z)
"$cf" issue --socket "$sock" --batch "$state/batch.jsonl" --out-dir "$state/certs" | tee "$state/issue-summary.txt"
"$cf" status --socket "$sock"

step "verify every certificate (openssl verify -x509_strict, root + NF CA)"
cat "$state/ca/nf-ca.pem" "$state/ca/root.pem" >"$state/ca-chain.pem"
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
echo "all $n are in the ledger ($state/ledger/ledger.db; certforge ledger list --config $state/certforged.conf)"
rate=$(sed -n 's/^issued .* s: \(.*\) certificates\/s$/\1/p' "$state/issue-summary.txt")

step "revoke one certificate and check the CRL (certforge revoke, certforge crl --new)"
first=$(find "$state/certs" -name '*.pem' | sort | sed -n 1p) # sed reads it all: no SIGPIPE under pipefail
serial=$(openssl x509 -in "$first" -noout -serial | cut -d= -f2)
"$cf" revoke --socket "$sock" --serial "$serial" --reason keyCompromise
"$cf" crl --socket "$sock" --issuer nf-ca --new --out "$state/crl/nf-ca-now.crl" --der --force
openssl crl -inform DER -in "$state/crl/nf-ca-now.crl" -CAfile "$state/ca/nf-ca.pem" -noout -verify
openssl crl -inform DER -in "$state/crl/nf-ca-now.crl" -out "$state/crl/nf-ca-now.pem"
if openssl verify -crl_check -CAfile "$state/ca-chain.pem" -CRLfile "$state/crl/nf-ca-now.pem" \
     "$first" >/dev/null 2>&1; then
  echo "quickstart: openssl verify -crl_check accepted the revoked $first" >&2
  exit 1
fi
echo "openssl verify -crl_check rejects the revoked certificate ($serial)"

step "certforge-acme in front of certforged, and a certificate through a real ACME client (lego, http-01)"
acme_ok=skipped
if [ ! -x "$build/certforge-acme" ]; then
  echo "certforge-acme is not built: skipped"
elif ! unshare -m --propagation private true 2>/dev/null; then
  # The ACME host name must resolve to this machine for the client; the
  # quickstart maps it in a private mount namespace (its own /etc/hosts),
  # which needs root. Nothing of the machine's own configuration changes.
  echo "not root: the ACME step needs a private mount namespace (unshare -m); skipped"
else
  acme_host=acme.quickstart.test
  free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
  acme_port=$(free_port); http_port=$(free_port); dns_port=$(free_port); mgmt_port=$(free_port)
  mkdir -p "$state/acme"
  { cat /etc/hosts; echo "127.0.0.1 $acme_host"; } >"$state/acme/hosts"
  in_ns() { unshare -m --propagation private sh -c 'mount --bind "$0" /etc/hosts && exec "$@"' "$state/acme/hosts" "$@"; }
  # a DNS server that answers 127.0.0.1 for every name (the validations ask it)
  timeout -s KILL 600 pebble-challtestsrv -dns01 "127.0.0.1:$dns_port" -management "127.0.0.1:$mgmt_port" \
    -http01 "" -https01 "" -tlsalpn01 "" -defaultIPv6 "" >"$state/acme/challtestsrv.log" 2>&1 &
  dns_pid=$!
  cat >"$state/acme/acme.conf" <<CONF
listen = "127.0.0.1:$acme_port";
base_url = "https://$acme_host:$acme_port";
tls = { profile = "acme-tls"; dns = ["$acme_host"]; state_dir = "tls"; };
certforged = { socket = "$sock"; };
state = { path = "acme.db"; };
profiles = ( { name = "default"; certforged = "dns"; description = "NF TLS certificate for DNS names"; max_validity = "90d"; } );
validation = { resolver = "127.0.0.1:$dns_port"; http01_port = $http_port; };
CONF
  timeout -s KILL 600 "$build/certforge-acme" --config "$state/acme/acme.conf" >"$state/acme/acme.log" 2>&1 &
  acme_pid=$!
  for _ in $(seq 1 100); do grep -q "event=started" "$state/acme/acme.log" && break; kill -0 $acme_pid 2>/dev/null || break; sleep 0.1; done
  grep "event=started" "$state/acme/acme.log" || { tail -n 20 "$state/acme/acme.log"; exit 1; }
  rm -rf "$state/acme/lego"
  if in_ns env LEGO_CA_CERTIFICATES="$state/ca/root.pem" timeout 120 lego --server "https://$acme_host:$acme_port/directory" \
       --path "$state/acme/lego" --accept-tos --email ops@example.org --http --http.port "127.0.0.1:$http_port" \
       -d amf1.quickstart.test -d amf1-sbi.quickstart.test run >"$state/acme/lego.log" 2>&1 &&
     openssl verify -x509_strict -purpose sslserver -CAfile "$state/ca-chain.pem" "$state/acme/lego/certificates/amf1.quickstart.test.crt"; then
    openssl x509 -in "$state/acme/lego/certificates/amf1.quickstart.test.crt" -noout -subject -ext subjectAltName
    acme_ok=yes
  else
    tail -n 20 "$state/acme/lego.log"; tail -n 20 "$state/acme/acme.log"
    kill -TERM $acme_pid $dns_pid 2>/dev/null || true
    exit 1
  fi
  kill -TERM $acme_pid $dns_pid 2>/dev/null || true
  wait $acme_pid 2>/dev/null || true
  echo "lego got a certificate for amf1.quickstart.test through certforge-acme (https://$acme_host:$acme_port/directory)"
fi

step "stop certforged"
stop_daemon
trap - EXIT
echo "stopped"

cat <<MSG

Done. certforged issued $n NF certificates at $rate certificates/s; all $verified verify
against the quickstart root. ACME (lego through certforge-acme): $acme_ok. State: $state, laid out so that
certforged may write only run/, ledger/ and crl/: tokens/ (SoftHSM token files), pins/ (PIN files, mode 0600),
ca/ (root.pem, nf-ca.pem), run/ (the socket), ledger/ (ledger.db), crl/ (published CRLs), certforged.conf,
certforged.log, csrs/, certs/.
Run it again yourself:
  export SOFTHSM2_CONF=$state/softhsm2.conf
  export CERTFORGE_TOKEN='$CERTFORGE_TOKEN'
  $build/certforged --config $state/certforged.conf &
  export CERTFORGE_SOCKET=$sock
  $cf issue --batch $state/batch.jsonl --out-dir /tmp/certs
  $cf status
  $cf ledger list --config $state/certforged.conf --limit 5
MSG
