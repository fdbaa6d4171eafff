#!/usr/bin/env bash
# RFC 8555 conformance and refusals, request by request (test_acme_protocol.py,
# Debian's python3 with python3-cryptography and python3-requests), against
# certforge-acme with a short slow-client timeout and a small connection limit.
# ACME_BACKEND=postgresql runs it with the state in PostgreSQL
# (test_acme_protocol_pg).
. "$CF_SOURCE_DIR/tests/acme/acme_env.sh"
PY=/usr/bin/python3
$PY -c 'import cryptography, requests' 2>/dev/null || skip "python3-cryptography / python3-requests missing (python3-acme)"
acme_env_start 'limits = { request_timeout_s = 2; max_connections = 400; };'
export ACME_DIR ACME_ROOT T HTTP01_PORT CF ACME_PG_CONNINFO
in_ns env REQUESTS_CA_BUNDLE="$ACME_ROOT" PYTHONPATH="$CF_SOURCE_DIR/tests/acme" $PY "$CF_SOURCE_DIR/tests/acme/test_acme_protocol.py" "$@" ||
  { tail -n 30 "$T/acme.log"; fail "protocol tests"; }
grep -q "event=max_connections" "$T/acme.log" || fail "the connection flood never reached max_connections"
# the status view has counted it all (written every second)
sleep 1.2
"$CF" acme status --config "$T/acme.conf" --json >"$T/status.json" || fail "certforge acme status"
jq -e '.acme.issued >= 3 and .acme.orders >= 10 and .http.requests > 100 and .acme.bad_nonce >= 4 and
       .http.connection_limit_hits >= 1 and .store.commits > 0 and .certforged.answered >= 3 and .age_s <= 5' \
  "$T/status.json" >/dev/null || { cat "$T/status.json"; fail "status counters"; }
"$CF" acme status --config "$T/acme.conf" | grep -q "^acme .* issued=" || fail "certforge acme status (text)"
# phase 2: EAB required and a per-account order limit
acme_stop
acme_start 'accounts = { eab_required = true; }; rate_limits = { orders_per_account = 2; };'
in_ns env PHASE=2 REQUESTS_CA_BUNDLE="$ACME_ROOT" PYTHONPATH="$CF_SOURCE_DIR/tests/acme" $PY \
  "$CF_SOURCE_DIR/tests/acme/test_acme_protocol.py" eab_required_server_side rate_limits ||
  { tail -n 30 "$T/acme.log"; fail "protocol tests, phase 2"; }
