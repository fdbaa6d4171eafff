#!/usr/bin/env bash
# limits.max_connections_per_address on certforge-agent's EST side: three
# connections from 127.0.0.1 are served /cacerts, the fourth's first
# request is answered 503 with Retry-After and closed, an NF from 127.0.0.2
# is served meanwhile, a closed connection frees its slot; the status file
# counts the refusal (tests/support/addr_limit.py).
. "$CF_SOURCE_DIR/tests/agent/agent_env.sh"
export AGENT_EXTRA='limits = { max_connections_per_address = 3; };'
agent_env_start
/usr/bin/python3 "$CF_SOURCE_DIR/tests/support/addr_limit.py" est.certforge.test "$AGENT_PORT" "$T/est-root.pem" \
  /.well-known/est/cacerts 3 503 || fail "address limit"
for _ in $(seq 1 30); do
  hits=$(jq -r '.est.refused_address_limit' "$T/agent-status.json" 2>/dev/null || echo 0)
  [ "${hits:-0}" -ge 1 ] 2>/dev/null && break
  sleep 0.2
done
[ "${hits:-0}" -ge 1 ] 2>/dev/null || fail "status file: refused_address_limit = ${hits:-none}"
grep -q 'status=503 .*reason=address_limit\|reason=address_limit.*status=503\|503.*address_limit' "$T/agent.log" ||
  fail "no 503 address_limit line in the request log: $(grep -m3 'op=' "$T/agent.log")"
echo "agent address limit: passed"
