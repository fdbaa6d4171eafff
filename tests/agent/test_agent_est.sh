#!/usr/bin/env bash
# certforge-agent over EST against the real daemons: enrolment with the
# OAM's token (NfInstanceId via tkauth-01 + dns-01 via RFC 2136) and with a
# bootstrap certificate (dns names), re-enrolment and re-key, and every
# refusal of the issue's "bad input" list with nothing issued
# (test_agent_est.py). Then the agent stops cleanly (exit 0).
. "$CF_SOURCE_DIR/tests/agent/agent_env.sh"
agent_env_start
cd "$CF_SOURCE_DIR/tests/agent"
$PY test_agent_est.py || { tail -n 40 "$T/agent.log"; fail "EST tests"; }
# the DNS records of the challenges are gone again (cleanup after validation)
left=$(dig +short -p "$KNOT_PORT" @127.0.0.1 AXFR "$ZONE" 2>/dev/null | grep -c TXT || true)
[ "$left" -eq 0 ] || fail "$left TXT records left in $ZONE"
# status view
# (written once a second: the last refusals may not be in it yet)
for _ in $(seq 1 50); do
  jq -e '.acme.enrolled >= 4 and .est.refused_key_reuse >= 1 and .est.refused_token >= 1' "$T/agent-status.json" >/dev/null && break
  sleep 0.1
done
jq -e '.acme.enrolled >= 4 and .est.refused_key_reuse >= 1 and .est.refused_token >= 1' "$T/agent-status.json" >/dev/null ||
  fail "status file: $(cat "$T/agent-status.json")"
agent_stop
grep -q "event=stopped" "$T/agent.log" || fail "no event=stopped"
echo "test_agent_est: ok"
