# tests/agent/agent_env.sh — sourced by certforge-agent's end-to-end tests,
# on top of tests/acme/acme_env.sh (throwaway SoftHSM CA, certforged,
# certforge-acme on loopback, in_ns for name resolution):
#   - knotd (Debian's knot) serving the zone 5gc.certforge.test on loopback,
#     taking RFC 2136 updates signed with a TSIG key; certforge-acme's
#     dns-01 validation asks it
#   - the OAM's token authority: its key in its own SoftHSM token, tokens
#     from `certforge acme token issue` (as in test_acme_tkauth.sh)
#   - a vendor bootstrap CA (software) and the NFs' bootstrap certificates
#   - certforge-agent with its own EST certificate
# Every process has a time bound and is stopped by its PID.
#
#   agent_env_start               everything above, agent running
#                                 (AGENT_THREADS: EST threads, default 2;
#                                  AGENT_WORKERS: acme.workers, default 4;
#                                  AGENT_EXTRA: more top-level agent settings)
#   agent_start / agent_stop      (re)start the agent, stop it (exit 0 checked)
#   agent_kill9                   kill -9 the agent (the real process)
#   → $EST (base URL), $AGENT_PID, $AGENT_CONF, $T ...
. "$CF_SOURCE_DIR/tests/acme/acme_env.sh"
PY=/usr/bin/python3
$PY -c 'import cryptography, requests' 2>/dev/null || skip "python3-cryptography / python3-requests missing"
command -v knotd >/dev/null || skip "knotd (Debian package knot) missing"
[ -x "$CF_BUILD_DIR/certforge-agent" ] || skip "certforge-agent not built"
ZONE=5gc.certforge.test

knot_start() {
  KNOT_PORT=$(free_port)
  mkdir -p "$T/knot/zones" "$T/knot/db"
  TSIG_SECRET=$(openssl rand -base64 32)
  (umask 077; echo "$TSIG_SECRET" >"$T/tsig.secret")
  cat >"$T/knot/zones/$ZONE.zone" <<ZF
\$ORIGIN $ZONE.
\$TTL 60
@ SOA ns1 hostmaster 1 3600 600 86400 1
@ NS ns1
ns1 A 127.0.0.1
* A 127.0.0.1
ZF
  cat >"$T/knot/knot.conf" <<KC
server:
    listen: 127.0.0.1@$KNOT_PORT
    rundir: "$T/knot"
    background-workers: 1
    tcp-workers: 2
    udp-workers: 2
log:
  - target: stderr
    any: info
key:
  - id: agent-key
    algorithm: hmac-sha256
    secret: $TSIG_SECRET
acl:
  - id: agent-update
    key: agent-key
    action: update
database:
    storage: "$T/knot/db"
template:
  - id: default
    storage: "$T/knot/zones"
    file: "%s.zone"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
zone:
  - domain: $ZONE
    acl: agent-update
KC
  timeout -s KILL "$ENV_TIMEOUT" knotd -c "$T/knot/knot.conf" >"$T/knot.log" 2>&1 &
  KNOT_PID=$!
  PIDS+=("$KNOT_PID")
  local i
  for i in $(seq 1 100); do
    dig +short +time=1 +tries=1 -p "$KNOT_PORT" @127.0.0.1 SOA "$ZONE" 2>/dev/null | grep -q hostmaster && { DNS_PORT=$KNOT_PORT; return 0; }
    kill -0 "$KNOT_PID" 2>/dev/null || break
    sleep 0.1
  done
  fail "knotd did not start: $(tail -n 5 "$T/knot.log")"
}

oam_setup() {
  softhsm2-util --init-token --free --label oam --so-pin 12345678 --pin "$(cat "$T/pin")" >/dev/null
  OAM_TOKEN="pkcs11:token=oam?module-path=$MODULE&pin-source=file:$T/pin"
  openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/oam-root.key" -days 30 \
    -subj "/O=OAM/CN=OAM token authority root" -out "$T/oam-root.pem" 2>/dev/null
  "$CF" keys generate --token "$OAM_TOKEN" --type ec-p256 --label oam-ta >/dev/null
  "$CF" keys export-pub "pkcs11:token=oam;object=oam-ta" --token "$OAM_TOKEN" --out "$T/oam-ta.pub" >/dev/null
  openssl x509 -new -force_pubkey "$T/oam-ta.pub" -subj "/O=OAM/CN=OAM token authority" -CA "$T/oam-root.pem" \
    -CAkey "$T/oam-root.key" -days 10 -out "$T/oam-ta.pem" \
    -extfile <(printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nsubjectKeyIdentifier=hash\n') 2>/dev/null ||
    fail "cannot make the token authority's certificate"
  export OAM_TOKEN
}

# The vendor's bootstrap PKI (outside the operator: a software CA) and a
# rogue one that is not trusted; the agent's own EST server certificate.
pki_setup() {
  local n
  for n in vendor rogue est; do
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/$n-root.key" -days 30 \
      -subj "/O=$n/CN=$n root" -out "$T/$n-root.pem" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" 2>/dev/null
  done
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/est.key" -subj "/CN=est.certforge.test" \
    -out "$T/est.csr" 2>/dev/null
  openssl x509 -req -in "$T/est.csr" -CA "$T/est-root.pem" -CAkey "$T/est-root.key" -days 10 -out "$T/est.pem" \
    -extfile <(printf 'subjectAltName=DNS:est.certforge.test,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n') 2>/dev/null
}

. "$CF_SOURCE_DIR/tests/agent/agent_env_pki.sh" # bootstrap_cert

agent_write_conf() { # [extra settings]
  AGENT_PORT=${AGENT_PORT:-$(free_port)}
  AGENT_CONF=$T/agent.conf
  local profiles=${AGENT_PROFILES-'profile = "nf"; dns_profile = "default";'}
  cat >"$AGENT_CONF" <<CONF
listen = "127.0.0.1:$AGENT_PORT";
threads = ${AGENT_THREADS:-2};
tls = { certificate = "$T/est.pem"; key = "$T/est.key"; };
cacerts = "$T/ca-chain.pem";
est = { wait_ms = ${AGENT_WAIT_MS:-8000}; retry_after = "1s"; };
bootstrap = { trust_anchors = "$T/vendor-root.pem"; token_trust_anchors = "$T/oam-root.pem"; };
state = { path = "$T/agent.db"; };
acme = { directory = "${AGENT_DIRECTORY:-$ACME_DIR}"; ca_file = "${AGENT_ACME_CA:-$ACME_ROOT}";
         $profiles workers = ${AGENT_WORKERS:-4}; poll_ms = 100;
         retry_base = "1s"; retry_max = "2s"; max_retries = ${AGENT_MAX_RETRIES:-30}; ${AGENT_ACME_EXTRA:-} };
dns_update = { server = "127.0.0.1:$KNOT_PORT"; zones = ["$ZONE"];
               tsig = { name = "agent-key"; algorithm = "hmac-sha256"; secret_file = "$T/tsig.secret"; }; };
status_file = "$T/agent-status.json";
${1:-}
CONF
}

agent_start() {
  in_ns timeout -s KILL "$ENV_TIMEOUT" "$CF_BUILD_DIR/certforge-agent" --config "$AGENT_CONF" >>"$T/agent.log" 2>&1 &
  AGENT_WRAP=$!
  PIDS+=("$AGENT_WRAP")
  local n0; n0=$(grep -c "event=started" "$T/agent.log" 2>/dev/null || true)
  local i
  for i in $(seq 1 300); do
    [ "$(grep -c "event=started" "$T/agent.log" 2>/dev/null || true)" -gt "$n0" ] && break
    kill -0 "$AGENT_WRAP" 2>/dev/null || { tail -n 20 "$T/agent.log" >&2; fail "certforge-agent did not start"; }
    sleep 0.1
  done
  AGENT_PID=$(grep "event=started" "$T/agent.log" | tail -n 1 | sed -n 's/.* pid=\([0-9]*\) .*/\1/p')
  [ -n "$AGENT_PID" ] || fail "no pid in the agent's start line"
  EST=https://127.0.0.1:$AGENT_PORT/.well-known/est
}

# SIGTERM; the agent must exit 0 (and, under ASan, report nothing)
agent_stop() {
  kill -TERM "$AGENT_PID" 2>/dev/null || true
  local st=0
  wait "$AGENT_WRAP" 2>/dev/null || st=$?
  [ "$st" -eq 0 ] || { tail -n 30 "$T/agent.log" >&2; fail "certforge-agent exited $st on SIGTERM"; }
}

agent_kill9() {
  kill -KILL "$AGENT_PID"
  wait "$AGENT_WRAP" 2>/dev/null || true
}

agent_cli() { "$CF_BUILD_DIR/certforge-agent" --config "$AGENT_CONF" "$@"; }

# Stop the agent cleanly before the daemons it talks to (acme_env_stop)
agent_env_stop() {
  local st=0
  if [ -n "${AGENT_PID:-}" ] && kill -0 "$AGENT_PID" 2>/dev/null; then
    kill -TERM "$AGENT_PID" 2>/dev/null || true
    wait "$AGENT_WRAP" 2>/dev/null || st=$?
    if [ "$st" -ne 0 ]; then
      echo "FAIL: certforge-agent exited $st on SIGTERM:" >&2
      tail -n 30 "$T/agent.log" >&2
    fi
  fi
  acme_env_stop
  [ "$st" -eq 0 ] || exit 1
}
trap agent_env_stop EXIT

agent_env_start() {
  ca_setup
  oam_setup
  pki_setup
  engine_start
  knot_start
  export ACME_PROFILES_CONF=${ACME_PROFILES_CONF:-'profiles = ( { name = "default"; certforged = "dns"; max_validity = "30d"; },
    { name = "nf"; certforged = "nf"; identifiers = ["NfInstanceId", "dns"]; nf_types = ["AMF", "SMF"]; } );'}
  # valid authorizations are reused (a re-enrolment or renewal of an
  # NfInstanceId needs no new OAM token while the authorization lasts)
  local orders='orders = { authz_lifetime = "2d"; authz_reuse = "2d"; };'
  [ -z "${ACME_ORDERS+x}" ] || orders=$ACME_ORDERS
  acme_start "tkauth = { trust_anchors = \"$T/oam-root.pem\"; max_lifetime = \"1h\"; }; $orders ${ACME_EXTRA:-}"
  agent_write_conf "${AGENT_EXTRA:-}"
  agent_start
  export T CF OAM_TOKEN EST ACME_ROOT AGENT_CONF ZONE KNOT_PORT
  export CF_AGENT=$CF_BUILD_DIR/certforge-agent
}
