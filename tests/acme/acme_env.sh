# tests/acme/acme_env.sh — sourced by the ACME end-to-end tests: a
# throwaway SoftHSM token and CA, certforged with the profiles ACME uses,
# pebble-challtestsrv as the DNS server the validations ask (every name is
# 127.0.0.1; TXT records set through its management API), and
# certforge-acme on loopback with its own certificate from certforged.
# Every process is started with a time bound and stopped by its PID on exit.
#
#   . tests/acme/acme_env.sh       (needs CF_BUILD_DIR, CF_SOURCE_DIR;
#                                   CERTFORGED_SERVER_EXTRA: more settings
#                                   in certforged's server group)
#   acme_env_start [extra certforge-acme settings]
#   → $ACME_DIR (directory URL), $ACME_ROOT (operator root PEM), $T (the
#     folder), $HTTP01_PORT, $TLSALPN01_PORT, $DNS_PORT, $MGMT_PORT
#   challtest_txt NAME VALUE / challtest_txt_clear NAME
#   acme_env_stop (also on EXIT)
set -euo pipefail

: "${CF_BUILD_DIR:?}" "${CF_SOURCE_DIR:?}"
CF=$CF_BUILD_DIR/certforge
MODULE=${CF_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
ENV_TIMEOUT=${ACME_ENV_TIMEOUT:-600}   # longest any daemon of a test lives, s

skip() { echo "SKIPPED: $*" >&2; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
[ -r "$MODULE" ] || skip "SoftHSM2 module $MODULE missing"
command -v pebble-challtestsrv >/dev/null || skip "pebble-challtestsrv (Debian package pebble) missing"

T=$(mktemp -d /tmp/cf-acme.XXXXXX)
PIDS=()

# The front end's name: certforged issues only fully qualified names, so
# clients reach it as acme.certforge.test, which a private mount namespace
# per client maps to 127.0.0.1 (a bind-mounted /etc/hosts; needs root or
# CAP_SYS_ADMIN, else the test is skipped). The machine's own /etc/hosts
# is never touched.
ACME_HOST=acme.certforge.test
{ cat /etc/hosts; echo "127.0.0.1 $ACME_HOST"; } >"$T/hosts"
# in_ns CMD...: run CMD where $ACME_HOST resolves (and, with NS_CA_STORE
# set to a PEM file, where it is the system trust store).
in_ns() {
  unshare -m --propagation private sh -c '
    mount --bind "$0" /etc/hosts || exit 125
    if [ -n "${NS_CA_STORE:-}" ]; then
      mount --bind "$NS_CA_STORE" /etc/ssl/certs/ca-certificates.crt || exit 125
    fi
    exec "$@"' "$T/hosts" "$@"
}
in_ns true 2>/dev/null || { rm -rf "$T"; skip "cannot make a private mount namespace (unshare -m needs root)"; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

acme_env_stop() {
  local p st bad=0
  # certforge-acme and certforged stop cleanly on SIGTERM: exit 0, and
  # under the sanitizers no leak or error report at exit
  for p in ${ACME_PID:-} ${ENGINE_PID:-}; do
    kill -0 "$p" 2>/dev/null || continue
    kill -TERM "$p" 2>/dev/null || true
    st=0; wait "$p" 2>/dev/null || st=$?
    # 127: not this shell's child (started from a subshell): nothing to check
    if [ "$st" -ne 0 ] && [ "$st" -ne 127 ]; then
      echo "FAIL: $( [ "$p" = "${ACME_PID:-}" ] && echo certforge-acme || echo certforged) exited $st on SIGTERM:" >&2
      tail -n 30 "$( [ "$p" = "${ACME_PID:-}" ] && echo "$T/acme.log" || echo "$T/certforged.log")" >&2
      bad=1
    fi
  done
  for p in "${PIDS[@]:-}"; do
    [ -n "$p" ] || continue
    kill -TERM "$p" 2>/dev/null || true
  done
  for p in "${PIDS[@]:-}"; do
    [ -n "$p" ] || continue
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  PIDS=()
  if [ -n "${PG_DROP_DB:-}" ]; then
    psql "$CF_TEST_PG_CONNINFO" -qc "DROP DATABASE IF EXISTS $PG_DROP_DB" >/dev/null 2>&1 || true
  fi
  if [ -n "${KEEP_ACME_ENV:-}" ]; then echo "kept $T" >&2; else rm -rf "$T"; fi
  [ $bad -eq 0 ] || exit 1
}
trap acme_env_stop EXIT

# wait_for FILE PATTERN SECONDS PID
wait_for() {
  local i
  for i in $(seq 1 $(( $3 * 10 ))); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    kill -0 "$4" 2>/dev/null || { echo "process $4 exited; $1:" >&2; tail -n 30 "$1" >&2; return 1; }
    sleep 0.1
  done
  echo "timed out waiting for '$2' in $1:" >&2; tail -n 30 "$1" >&2
  return 1
}

ca_setup() {
  mkdir -p "$T/tokens"
  cat >"$T/softhsm2.conf" <<CONF
directories.tokendir = $T/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
CONF
  export SOFTHSM2_CONF=$T/softhsm2.conf
  (umask 077; echo 1234567890 >"$T/pin")
  softhsm2-util --init-token --free --label acme-ca --so-pin 12345678 --pin "$(cat "$T/pin")" >/dev/null
  export CERTFORGE_TOKEN="pkcs11:token=acme-ca?module-path=$MODULE&pin-source=file:$T/pin"
  "$CF" keys generate --type ec-p256 --label root >/dev/null
  "$CF" keys generate --type ec-p256 --label nf-ca >/dev/null
  "$CF" ca init-root --key "pkcs11:token=acme-ca;object=root" --subject "/C=FI/O=certforge test/CN=ACME test root" \
    --days 30 --out "$T/root.pem" >/dev/null
  "$CF" ca init-intermediate --key "pkcs11:token=acme-ca;object=nf-ca" --issuer-key "pkcs11:token=acme-ca;object=root" \
    --issuer-cert "$T/root.pem" --subject "/C=FI/O=5gc.mnc001.mcc001.3gppnetwork.org/CN=ACME test NF CA" \
    --days 20 --pathlen 0 --out "$T/nf-ca.pem" >/dev/null
  cat "$T/nf-ca.pem" "$T/root.pem" >"$T/ca-chain.pem"
  ACME_ROOT=$T/root.pem
  ISSUER2_CHAIN=$T/root.pem
  if [ "${ACME_ENV_ISSUER2:-}" = root ]; then
    # a root rollover: a new root, link certificates both ways (made in the
    # HSM by certforge ca cross-sign), the second intermediate under the new
    # root, its chain the new root as the old one signed it (clients that
    # know only the old root reach the new one through it)
    "$CF" keys generate --type ec-p256 --label root-2 >/dev/null
    "$CF" ca init-root --key "pkcs11:token=acme-ca;object=root-2" --subject "/C=FI/O=certforge test/CN=ACME test root 2" \
      --days 30 --out "$T/root-2.pem" >/dev/null
    "$CF" ca cross-sign --issuer-key "pkcs11:token=acme-ca;object=root" --issuer-cert "$T/root.pem" \
      --cert "$T/root-2.pem" --out "$T/root-2-by-root.pem" >/dev/null
    "$CF" ca cross-sign --issuer-key "pkcs11:token=acme-ca;object=root-2" --issuer-cert "$T/root-2.pem" \
      --cert "$T/root.pem" --out "$T/root-by-root-2.pem" >/dev/null
    cat "$T/root.pem" "$T/root-2.pem" "$T/root-2-by-root.pem" "$T/root-by-root-2.pem" >"$T/anchors.pem"
    ISSUER2_ROOT=root-2 ISSUER2_ROOT_CERT=$T/root-2.pem ISSUER2_CHAIN=$T/root-2-by-root.pem
  fi
  if [ -n "${ACME_ENV_ISSUER2:-}" ]; then # a second intermediate, for rollover tests
    "$CF" keys generate --type ec-p256 --label nf-ca-2 >/dev/null
    "$CF" ca init-intermediate --key "pkcs11:token=acme-ca;object=nf-ca-2" --issuer-key "pkcs11:token=acme-ca;object=${ISSUER2_ROOT:-root}" \
      --issuer-cert "${ISSUER2_ROOT_CERT:-$T/root.pem}" --subject "/C=FI/O=5gc.mnc001.mcc001.3gppnetwork.org/CN=ACME test NF CA 2" \
      --days 20 --pathlen 0 --out "$T/nf-ca-2.pem" >/dev/null
  fi
}

engine_start() {
  local keys2="" issuers2="" profiles2=""
  if [ -n "${ACME_ENV_ISSUER2:-}" ]; then
    keys2=', { name = "nf-ca-2"; token = "ca"; uri = "pkcs11:object=nf-ca-2"; }'
    issuers2=", { name = \"nf-ca-2\"; key = \"nf-ca-2\"; certificate = \"$T/nf-ca-2.pem\"; chain = \"$ISSUER2_CHAIN\"; }"
    profiles2='{ name = "dns-2"; type = "nf"; issuer = "nf-ca-2";
    subject = { C = "FI"; O = "5gc.mnc001.mcc001.3gppnetwork.org"; };
    validity = { default = "3d"; max = "30d"; }; eku = ["serverAuth", "clientAuth"];
    crl_dp = "http://crl.example/nf-ca-2.crl";
    require_nf_instance_id = false; require_nf_types = false; require_fqdn = true; },'
  fi
  cat >"$T/certforged.conf" <<CONF
tokens = ( { name = "ca"; uri = "$CERTFORGE_TOKEN"; } );
keys = ( { name = "nf-ca"; token = "ca"; uri = "pkcs11:object=nf-ca"; }$keys2 );
issuers = ( { name = "nf-ca"; key = "nf-ca"; certificate = "$T/nf-ca.pem"; chain = "$T/root.pem"; }$issuers2 );
profiles = ( $profiles2
  { name = "nf"; type = "nf"; issuer = "nf-ca";
    subject = { C = "FI"; O = "5gc.mnc001.mcc001.3gppnetwork.org"; };
    validity = { default = "1d"; max = "30d"; }; eku = ["serverAuth", "clientAuth"];
    crl_dp = "http://crl.example/nf-ca.crl"; },
  { name = "dns"; type = "nf"; issuer = "nf-ca";
    subject = { C = "FI"; O = "5gc.mnc001.mcc001.3gppnetwork.org"; };
    validity = { default = "3d"; max = "30d"; }; eku = ["serverAuth", "clientAuth"];
    crl_dp = "http://crl.example/nf-ca.crl";
    require_nf_instance_id = false; require_nf_types = false; require_fqdn = true; },
  { name = "acme-tls"; type = "nf"; issuer = "nf-ca";
    subject = { C = "FI"; O = "5gc.mnc001.mcc001.3gppnetwork.org"; };
    validity = { default = "3d"; max = "30d"; }; eku = ["serverAuth"];
    crl_dp = "http://crl.example/nf-ca.crl";
    require_nf_instance_id = false; require_nf_types = false; require_fqdn = true; },
  { name = "star"; type = "star"; issuer = "nf-ca";
    subject = { C = "FI"; O = "5gc.mnc001.mcc001.3gppnetwork.org"; };
    validity = { default = "1h"; max = "2d"; }; eku = ["serverAuth", "clientAuth"]; },
  { name = "acme-tls-short"; type = "nf"; issuer = "nf-ca";
    subject = { C = "FI"; O = "5gc.mnc001.mcc001.3gppnetwork.org"; };
    validity = { default = "60s"; max = "60s"; }; backdate = "0s"; eku = ["serverAuth"];
    crl_dp = "http://crl.example/nf-ca.crl";
    require_nf_instance_id = false; require_nf_types = false; require_fqdn = true; }
);
pipeline = { workers = 2; };
server = { socket = "$T/cf.sock"; socket_mode = "0600"; ${CERTFORGED_SERVER_EXTRA:-} };
grants = ( { uid = $(id -u); profiles = ["*"]; ops = ["issue", "status", "revoke", "crl"]; } );
ledger = { backend = "sqlite"; path = "$T/ledger.db"; };
crl = { dir = "$T/crl"; interval = "1h"; validity = "1d"; revoke_delay = "10s"; };
confine = { enabled = false; };
CONF
  mkdir -p "$T/crl"
  # emptied here, not by the background job's redirection: wait_for must
  # not find the previous instance's line before the new one starts
  : >"$T/certforged.log"
  timeout -s KILL "$ENV_TIMEOUT" "$CF_BUILD_DIR/certforged" --config "$T/certforged.conf" >>"$T/certforged.log" 2>&1 &
  ENGINE_PID=$!
  PIDS+=("$ENGINE_PID")
  wait_for "$T/certforged.log" "certforged: ready socket=" 30 "$ENGINE_PID"
}

challtest_start() {
  DNS_PORT=$(free_port)
  MGMT_PORT=$(free_port)
  timeout -s KILL "$ENV_TIMEOUT" pebble-challtestsrv -dns01 "127.0.0.1:$DNS_PORT" -management "127.0.0.1:$MGMT_PORT" \
    -http01 "" -https01 "" -tlsalpn01 "" -defaultIPv4 127.0.0.1 -defaultIPv6 "" >"$T/challtest.log" 2>&1 &
  PIDS+=("$!")
  local i
  for i in $(seq 1 100); do
    curl -s -o /dev/null "http://127.0.0.1:$MGMT_PORT/" 2>/dev/null && return 0
    sleep 0.1
  done
  fail "pebble-challtestsrv did not start: $(tail -n 5 "$T/challtest.log")"
}

challtest_txt() { # NAME VALUE
  curl -sf -X POST -d "{\"host\":\"$1.\", \"value\":\"$2\"}" "http://127.0.0.1:$MGMT_PORT/set-txt" >/dev/null
}
challtest_txt_clear() { # NAME
  curl -sf -X POST -d "{\"host\":\"$1.\"}" "http://127.0.0.1:$MGMT_PORT/clear-txt" >/dev/null
}

# The state backend: SQLite in $T (default), or with ACME_BACKEND=postgresql
# a fresh database in the throwaway cluster tools/test.sh starts
# (CF_TEST_PG_CONNINFO; skipped without one). ACME_STATE_EXTRA: more
# settings in the state group (e.g. pg_timeout_ms = 1000;).
acme_state_setup() {
  if [ "${ACME_BACKEND:-sqlite}" = postgresql ]; then
    if [ -z "${ACME_PG_CONNINFO:-}" ]; then
      [ -n "${CF_TEST_PG_CONNINFO:-}" ] || skip "CF_TEST_PG_CONNINFO is not set (tools/test.sh starts a throwaway PostgreSQL cluster)"
      command -v psql >/dev/null || skip "psql missing"
      local db=acme_e2e_$$
      psql "$CF_TEST_PG_CONNINFO" -qc "CREATE DATABASE $db" >/dev/null 2>&1 || skip "no PostgreSQL server at CF_TEST_PG_CONNINFO"
      ACME_PG_CONNINFO="$CF_TEST_PG_CONNINFO dbname=$db"
      PG_DROP_DB=$db
      export ACME_PG_CONNINFO
    fi
    ACME_STATE_CONF="state = { backend = \"postgresql\"; conninfo = \"$ACME_PG_CONNINFO\"; ${ACME_STATE_EXTRA:-} };"
  else
    ACME_STATE_CONF="state = { path = \"$T/acme.db\"; };"
  fi
}

# acme_start [extra config text appended to certforge-acme.conf]
acme_start() {
  # a restart keeps the ports (clients and responders are set up on them)
  ACME_PORT=${ACME_PORT:-$(free_port)}
  HTTP01_PORT=${HTTP01_PORT:-$(free_port)}
  TLSALPN01_PORT=${TLSALPN01_PORT:-$(free_port)}
  acme_state_setup
  local profiles_conf=${ACME_PROFILES_CONF:-'profiles = ( { name = "default"; certforged = "dns"; description = "DNS names"; max_validity = "30d"; } );'}
  cat >"$T/acme.conf" <<CONF
listen = "127.0.0.1:$ACME_PORT";
base_url = "https://$ACME_HOST:$ACME_PORT";
threads = 2;
tls = { profile = "${ACME_TLS_PROFILE:-acme-tls}"; dns = ["$ACME_HOST"]; state_dir = "$T/acme-tls"; ${ACME_TLS_EXTRA:-} };
certforged = { socket = "$T/cf.sock"; connections = 2; };
$ACME_STATE_CONF
$profiles_conf
validation = { resolver = "127.0.0.1:$DNS_PORT"; http01_port = $HTTP01_PORT; tlsalpn01_port = $TLSALPN01_PORT;
               timeout_ms = 5000; threads = 4; };
${1:-}
CONF
  # emptied here, not by the background job's redirection: on a restart
  # wait_for would otherwise find the previous instance's event=started
  : >"$T/acme.log"
  timeout -s KILL "$ENV_TIMEOUT" "$CF_BUILD_DIR/certforge-acme" --config "$T/acme.conf" >>"$T/acme.log" 2>&1 &
  ACME_PID=$!
  PIDS+=("$ACME_PID")
  wait_for "$T/acme.log" "event=started" 30 "$ACME_PID"
  ACME_DIR=https://$ACME_HOST:$ACME_PORT/directory
  in_ns curl -sf --cacert "$ACME_ROOT" "$ACME_DIR" >/dev/null || fail "directory not served: $(tail -n 5 "$T/acme.log")"
}

# acme_stop: SIGTERM certforge-acme and check that it exited 0 (a restart
# within a test: acme_stop; acme_start ...)
acme_stop() {
  kill -TERM "$ACME_PID" 2>/dev/null || true
  local st=0
  wait "$ACME_PID" 2>/dev/null || st=$?
  [ "$st" -eq 0 ] || { tail -n 30 "$T/acme.log" >&2; fail "certforge-acme exited $st on SIGTERM"; }
}

acme_env_start() {
  ca_setup
  engine_start
  challtest_start
  acme_start "${1:-}"
}

# last_problem PATH: the problem type of certforge-acme's latest answer on
# PATH (from its log: one line per request), "-" when none. Tests assert
# exact problem types this way; some clients (certbot 2.1 on Python 3.11)
# crash while printing certain errors.
last_problem() {
  grep "path=$1 " "$T/acme.log" | tail -n 1 | sed -n 's/.* problem=\([^ ]*\) .*/\1/p'
}

# crl_reason CRL-DER SERIAL-HEX: the reason text of that entry ("" if
# absent or none)
crl_reason() {
  openssl crl -inform DER -in "$1" -noout -text | awk -v s="$(echo "$2" | tr a-f A-F)" '
    /Serial Number:/ { cur = toupper($3); next }
    /CRL Reason Code/ { getline; sub(/^ +/, ""); if (cur == s) print }'
}

# check_cert PEM NAME...: the certificate chains to the root, is a TLS
# server certificate, and carries exactly these dNSNames with the NF
# profile's fields (TS 33.310 §6.1.3c).
check_cert() {
  local pem=$1; shift
  openssl verify -x509_strict -purpose sslserver -CAfile "$ACME_ROOT" -untrusted "$T/nf-ca.pem" "$pem" >/dev/null ||
    fail "$pem does not verify against the operator root"
  local text sans want n
  text=$(openssl x509 -in "$pem" -noout -text)
  sans=$(openssl x509 -in "$pem" -noout -ext subjectAltName | tail -n +2 | tr ',' '\n' | sed 's/^ *//' | grep -v '^$' | sort)
  want=$(for n in "$@"; do echo "DNS:$n"; done | sort)
  [ "$sans" = "$want" ] || fail "$pem: SANs '$sans', expected '$want'"
  grep -q "X509v3 Subject Alternative Name: critical" <<<"$text" || fail "$pem: subjectAltName not critical"
  grep -A1 "X509v3 Key Usage: critical" <<<"$text" | grep -q "Digital Signature" || fail "$pem: keyUsage"
  grep -A1 "X509v3 Extended Key Usage" <<<"$text" | grep -q "TLS Web Server Authentication" || fail "$pem: EKU"
  grep -q "X509v3 Authority Key Identifier" <<<"$text" || fail "$pem: no AKI"
  grep -q "X509v3 CRL Distribution Points" <<<"$text" || fail "$pem: no CRL DP"
  openssl x509 -in "$pem" -noout -subject | grep -q "C = FI, O = 5gc.mnc001.mcc001.3gppnetwork.org" ||
    fail "$pem: subject $(openssl x509 -in "$pem" -noout -subject)"
}
