#!/usr/bin/env bash
# certforge-agent when things break: the ACME server down (the NF is told
# 503 + Retry-After, the agent retries with backoff and finishes once the
# server is back; with the retries used up the NF is told so and its next
# request starts over), and kill -9 of the agent, with enrolments pending
# and under a burst of NFs: after the restart every enrolment completes,
# each NF's certificate is for its key, no NF got two, the state passes
# SQLite's integrity check.
. "$CF_SOURCE_DIR/tests/agent/agent_env.sh"
agent_env_start
cd "$CF_SOURCE_DIR/tests/agent"

# 1. certforge-acme down: 503 + Retry-After, then the certificate
acme_stop
$PY - <<'PY' || fail "ACME down: 503 expected"
import est_client as e
nf, dns, thumb = e.new_nf(1)
k = e.new_key(); e.write_key(k, e.T + "/down.key")
open(e.T + "/down.req", "w").write("%s %s %s" % (nf, dns[0], e.token(nf, thumb)))
r = e.post("simpleenroll", e.csr_der(k, nf, dns), token=open(e.T + "/down.req").read().split()[2])
assert r.status_code == 503 and int(r.headers["Retry-After"]) >= 1, (r.status_code, r.headers, r.text)
assert "unavailable" in r.text, r.text
PY
grep -q "event=acme_retry" "$T/agent.log" || fail "no retry logged"
acme_start "tkauth = { trust_anchors = \"$T/oam-root.pem\"; max_lifetime = \"1h\"; };"
$PY - <<'PY' || fail "after the ACME server came back"
import est_client as e
from cryptography.hazmat.primitives import serialization
nf, dns, tok = open(e.T + "/down.req").read().split()
k = serialization.load_pem_private_key(open(e.T + "/down.key", "rb").read(), None)
r, seen = e.enroll("simpleenroll", e.csr_der(k, nf, [dns]), token=tok)
assert e.same_key(e.p7_certs(r)[0], k)
PY

# 2. kill -9 with an enrolment pending (certforge-acme down), then back
acme_stop
$PY - <<'PY' || fail "pending enrolment"
import est_client as e
nf, dns, thumb = e.new_nf(1)
k = e.new_key(); e.write_key(k, e.T + "/k9.key")
tok = e.token(nf, thumb)
open(e.T + "/k9.req", "w").write("%s %s %s" % (nf, dns[0], tok))
r = e.post("simpleenroll", e.csr_der(k, nf, dns), token=tok)
assert r.status_code == 503, r.status_code
PY
agent_kill9
acme_start "tkauth = { trust_anchors = \"$T/oam-root.pem\"; max_lifetime = \"1h\"; };"
agent_start
grep "event=started" "$T/agent.log" | tail -n 1 | grep -q "resumed=1" || fail "the pending enrolment was not resumed"
$PY - <<'PY' || fail "resumed enrolment"
import est_client as e
from cryptography.hazmat.primitives import serialization
nf, dns, tok = open(e.T + "/k9.req").read().split()
k = serialization.load_pem_private_key(open(e.T + "/k9.key", "rb").read(), None)
r, seen = e.enroll("simpleenroll", e.csr_der(k, nf, [dns]), token=tok)
assert e.same_key(e.p7_certs(r)[0], k)
PY

# 3. kill -9 under a burst of 24 NFs, as soon as the first is issued
$PY nf_burst.py 24 >"$T/burst.out" 2>"$T/burst.err" &
BURST=$!
for _ in $(seq 1 600); do
  [ "$(grep -c 'event=issued' "$T/agent.log")" -ge 4 ] && break
  kill -0 "$BURST" 2>/dev/null || break
  sleep 0.1
done
before=$(grep -c "event=issued" "$T/agent.log")
agent_kill9
agent_start
wait "$BURST" || { cat "$T/burst.err"; fail "burst across kill -9"; }
[ "$(wc -l <"$T/burst.out")" -eq 24 ] || fail "burst: $(wc -l <"$T/burst.out") of 24 NFs enrolled"
echo "burst: kill -9 after $before issued; resumed=$(grep 'event=started' "$T/agent.log" | tail -n 1 | sed 's/.*resumed=\([0-9]*\).*/\1/')"
dup=$(sqlite3 "$T/agent.db" "SELECT COUNT(*) FROM (SELECT nf, spki FROM certs GROUP BY nf, spki HAVING COUNT(*) > 1)")
[ "$dup" -eq 0 ] || fail "$dup NF keys got more than one certificate"
[ "$(sqlite3 "$T/agent.db" "PRAGMA integrity_check")" = ok ] || fail "agent.db integrity"
[ "$(sqlite3 "$T/agent.db" "SELECT COUNT(*) FROM enrolments WHERE status = 'pending'")" -eq 0 ] || fail "enrolments left pending"

# 4. bounded retries: with max_retries = 1 and the ACME server down, the
# enrolment ends failed (transient) and the NF is told 503
agent_stop
acme_stop
AGENT_MAX_RETRIES=1 agent_write_conf
agent_start
$PY - <<'PY' || fail "bounded retries"
import time
import est_client as e
nf, dns, thumb = e.new_nf(1)
k = e.new_key()
der, tok = e.csr_der(k, nf, dns), e.token(nf, thumb)
seen = []
for _ in range(30):
    r = e.post("simpleenroll", der, token=tok)
    seen.append(r.status_code)
    assert r.status_code == 503 and "Retry-After" in r.headers, (r.status_code, r.text)
    if "after 1 retries" in r.text:
        break
    time.sleep(1)
assert "after 1 retries" in r.text, seen
PY
grep -q "event=enrolment_failed .*transient=1" "$T/agent.log" || fail "no transient failure logged"
agent_stop
echo "test_agent_outage: ok"
