#!/usr/bin/env bash
# limits.max_connections_per_address: one client address cannot hold every
# connection of certforge-acme (issue 19 for the new daemons). Three
# keep-alive connections from 127.0.0.1 are served, the fourth's first
# request is answered 429 rateLimited with Retry-After and closed, a client
# from 127.0.0.2 is served meanwhile, a closed connection frees its slot;
# the status file counts the refusal (tests/support/addr_limit.py).
. "$CF_SOURCE_DIR/tests/acme/acme_env.sh"
acme_env_start 'limits = { max_connections_per_address = 3; };'
/usr/bin/python3 "$CF_SOURCE_DIR/tests/support/addr_limit.py" "$ACME_HOST" "$ACME_PORT" "$ACME_ROOT" /directory 3 429 ||
  fail "address limit"
for _ in $(seq 1 30); do
  hits=$(jq -r '.http.address_limit_hits' "$T/acme-status.json" 2>/dev/null || echo 0)
  [ "${hits:-0}" -ge 1 ] 2>/dev/null && break
  sleep 0.2
done
[ "${hits:-0}" -ge 1 ] 2>/dev/null || fail "status file: address_limit_hits = ${hits:-none}"
grep -q 'status=429 .*problem=rateLimited' "$T/acme.log" || fail "no 429 rateLimited line in the request log"
echo "acme address limit: passed"
