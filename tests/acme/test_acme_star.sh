#!/usr/bin/env bash
# STAR (RFC 8739): renewal ahead of each period, a certforged outage and a
# kill -9 of certforge-acme during a renewal, cancellation, refusals
# (test_acme_star.py; about 45 s: one certificate period is 60 s).
. "$CF_SOURCE_DIR/tests/acme/acme_env.sh"
PY=/usr/bin/python3
$PY -c 'import cryptography, requests' 2>/dev/null || skip "python3-cryptography / python3-requests missing (python3-acme)"
export ACME_PROFILES_CONF='profiles = ( { name = "default"; certforged = "dns"; }, { name = "star"; certforged = "star"; } );'
STAR_CONF='star = { enabled = true; min_lifetime = "60s"; max_duration = "1d"; renew_ahead = "15s"; scan_interval_ms = 100; };'
acme_env_start "$STAR_CONF"
real_pid() { pgrep -P "$1" -x "$2"; }
ACME_PID_REAL=$(real_pid "$ACME_PID" certforge-acme)
ENGINE_PID_REAL=$(real_pid "$ENGINE_PID" certforged)
export ACME_DIR ACME_ROOT T HTTP01_PORT CF ACME_PID_REAL ENGINE_PID_REAL
in_ns env REQUESTS_CA_BUNDLE="$ACME_ROOT" PYTHONPATH="$CF_SOURCE_DIR/tests/acme" $PY "$CF_SOURCE_DIR/tests/acme/test_acme_star.py" &
py=$!
for _ in $(seq 1 900); do [ -e "$T/restart" ] && break; kill -0 $py 2>/dev/null || break; sleep 0.1; done
[ -e "$T/restart" ] || { wait $py; fail "the client never asked for the restart"; }
wait "$ACME_PID" 2>/dev/null || true
acme_start "$STAR_CONF"
touch "$T/restarted"
wait $py || { tail -n 30 "$T/acme.log"; fail "STAR"; }
sleep 1.2 # the status file is written every second
"$CF" acme status --config "$T/acme.conf" --json | jq -e '.star.issued >= 1' >/dev/null || fail "status: no STAR renewal counted"
