#!/usr/bin/env bash
# certforge-agent against another RFC 8555 server: Debian's pebble (dns
# names only: pebble has no NfInstanceId), dns-01 validated by pebble
# against knotd, the NF enrolling with a bootstrap certificate and then
# re-enrolling with the certificate pebble issued.
. "$CF_SOURCE_DIR/tests/agent/agent_env.sh"
command -v pebble >/dev/null || skip "pebble missing"
agent_env_start
agent_stop
PEBBLE_PORT=$(free_port)
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/pebble.key" -subj "/CN=localhost" \
  -out "$T/pebble.csr" 2>/dev/null
openssl x509 -req -in "$T/pebble.csr" -CA "$T/est-root.pem" -CAkey "$T/est-root.key" -days 10 -out "$T/pebble.pem" \
  -extfile <(printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n') 2>/dev/null
cat >"$T/pebble.json" <<J
{"pebble": {"listenAddress": "127.0.0.1:$PEBBLE_PORT", "managementListenAddress": "127.0.0.1:$(free_port)",
  "certificate": "$T/pebble.pem", "privateKey": "$T/pebble.key", "httpPort": $(free_port), "tlsPort": $(free_port),
  "ocspResponderURL": "", "externalAccountBindingRequired": false}}
J
PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 timeout -s KILL "$ENV_TIMEOUT" pebble -config "$T/pebble.json" \
  -dnsserver "127.0.0.1:$KNOT_PORT" >"$T/pebble.log" 2>&1 &
PIDS+=("$!")
for _ in $(seq 1 100); do
  curl -sf --cacert "$T/est-root.pem" "https://127.0.0.1:$PEBBLE_PORT/dir" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -sf --cacert "$T/est-root.pem" "https://127.0.0.1:$PEBBLE_PORT/dir" >/dev/null || fail "pebble did not start: $(tail -n 5 "$T/pebble.log")"
AGENT_DIRECTORY=https://127.0.0.1:$PEBBLE_PORT/dir AGENT_ACME_CA=$T/est-root.pem AGENT_PROFILES='' \
  AGENT_ACME_EXTRA='nf_instance_id = false;' agent_write_conf
agent_start
cd "$CF_SOURCE_DIR/tests/agent"
$PY - <<'PY' || { tail -n 20 "$T/agent.log"; tail -n 20 "$T/pebble.log"; fail "enrolment through pebble"; }
import subprocess
import est_client as e
nf, dns, thumb = e.new_nf(2)
subprocess.run(["bash", "-c", ". $CF_SOURCE_DIR/tests/agent/agent_env_pki.sh; bootstrap_cert nfp %s" % nf], check=True)
k = e.new_key()
r, _ = e.enroll("simpleenroll", e.csr_der(k, None, dns), cert=(e.T + "/nfp.pem", e.T + "/nfp.key"))
c = e.p7_certs(r)[0]
assert e.same_key(c, k) and e.sans(c) == sorted("DNS:" + d for d in dns), e.sans(c)
e.write_cert(c, e.T + "/p1.pem"); e.write_key(k, e.T + "/p1.key")
# the instance ID is not for this server
r = e.post("simpleenroll", e.csr_der(e.new_key(), nf, dns), cert=(e.T + "/nfp.pem", e.T + "/nfp.key"))
assert r.status_code == 403, (r.status_code, r.text)
r, _ = e.enroll("simplereenroll", e.csr_der(k, None, dns), cert=(e.T + "/p1.pem", e.T + "/p1.key"))
c2 = e.p7_certs(r)[0]
assert c2.serial_number != c.serial_number and e.same_key(c2, k)
PY
agent_stop
echo "test_agent_pebble: ok"
