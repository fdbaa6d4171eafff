#!/usr/bin/env bash
# Renewal ahead of time: certforge-acme issues 90-second certificates and
# answers ARI (RFC 9773) with a window around 2/3 of the lifetime; the
# agent asks renewalInfo, renews at a point inside the window with the NF's
# CSR (replaces = the old certificate), and the NF's next /simplereenroll
# gets the renewed certificate at once. Waits (bounded) for the window; no
# assertion on elapsed time.
. "$CF_SOURCE_DIR/tests/agent/agent_env.sh"
export ACME_PROFILES_CONF='profiles = ( { name = "default"; certforged = "dns"; validity = "90s"; max_validity = "30d"; },
    { name = "nf"; certforged = "nf"; identifiers = ["NfInstanceId", "dns"]; nf_types = ["AMF", "SMF"]; } );'
agent_env_start
cd "$CF_SOURCE_DIR/tests/agent"
$PY - <<'PY' || fail "first enrolment"
import subprocess
import est_client as e
nf, dns, thumb = e.new_nf(1)
subprocess.run(["bash", "-c", ". $CF_SOURCE_DIR/tests/agent/agent_env_pki.sh; bootstrap_cert nfr %s" % nf], check=True)
k = e.new_key()
r, _ = e.enroll("simpleenroll", e.csr_der(k, None, dns), cert=(e.T + "/nfr.pem", e.T + "/nfr.key"))
c = e.p7_certs(r)[0]
e.write_cert(c, e.T + "/r1.pem"); e.write_key(k, e.T + "/r1.key")
open(e.T + "/r1.dns", "w").write(dns[0])
PY
# the renewal time came from ARI and lies in certforge-acme's window
read -r nb na ra <<<"$(sqlite3 -separator ' ' "$T/agent.db" "SELECT not_before, not_after, renew_at FROM certs")"
life=$((na - nb))
[ $((ra - nb)) -ge $((life * 55 / 100)) ] && [ $((ra - nb)) -le $((life * 75 / 100)) ] ||
  fail "renew_at $((ra - nb))s into a ${life}s lifetime: not ARI's window around 2/3"
grep -q "event=issued .* ari=yes" "$T/agent.log" || fail "renewalInfo was not asked"
for _ in $(seq 1 1500); do
  grep -q "event=renewed" "$T/agent.log" && break
  sleep 0.1
done
grep -q "event=renewed" "$T/agent.log" || fail "no renewal within the certificate's lifetime"
grep -q 'replaces' "$T/acme.log" || true
$PY - <<'PY' || fail "re-enrolment after the renewal"
import est_client as e
from cryptography import x509
from cryptography.hazmat.primitives import serialization
old = x509.load_pem_x509_certificate(open(e.T + "/r1.pem", "rb").read())
k = serialization.load_pem_private_key(open(e.T + "/r1.key", "rb").read(), None)
dns = open(e.T + "/r1.dns").read()
r = e.post("simplereenroll", e.csr_der(k, None, [dns]), cert=(e.T + "/r1.pem", e.T + "/r1.key"))
assert r.status_code == 200, (r.status_code, r.text)
new = e.p7_certs(r)[0]
assert new.serial_number != old.serial_number and e.same_key(new, k), "not the renewed certificate"
assert new.not_valid_after > old.not_valid_after
assert e.sans(new) == e.sans(old)
PY
grep "op=simplereenroll status=200" "$T/agent.log" | tail -n 1 | grep -q "reason=renewed_ready" ||
  fail "the renewed certificate was not ready at the re-enrolment"
# certforge-acme recorded the renewal as replacing the old certificate (RFC 9773 §5)
[ "$(sqlite3 "$T/acme.db" "SELECT COUNT(*) FROM orders WHERE replaces IS NOT NULL AND replaces != ''")" -ge 1 ] ||
  fail "the renewal order did not name the certificate it replaces"
agent_stop
echo "test_agent_renewal: ok"
