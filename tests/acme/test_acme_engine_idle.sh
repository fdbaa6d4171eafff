#!/usr/bin/env bash
# certforge-acme's connections to certforged outlive certforged's idle
# timeout. certforged (here server.idle_timeout_ms = 1500) closes a
# connection that sent no request that long (reason=idle); after a pause
# of 2.5 s the next finalizes must still issue — the idle connection is
# replaced before use — instead of failing with serverInternal ("certforged
# closed the connection (Broken pipe)"), which they did. acme-load drives
# complete http-01 flows before and after the pause.
set -euo pipefail
: "${CF_BUILD_DIR:?}" "${CF_SOURCE_DIR:?}"
[ -x "$CF_BUILD_DIR/acme-load" ] || { echo "SKIPPED: $CF_BUILD_DIR/acme-load not built"; exit 77; }
command -v jq >/dev/null || { echo "SKIPPED: jq missing"; exit 77; }
export CERTFORGED_SERVER_EXTRA='idle_timeout_ms = 1500;'
# shellcheck source=acme_env.sh
. "$CF_SOURCE_DIR/tests/acme/acme_env.sh"
acme_env_start

load() { # WHAT
  local rc=0
  "$CF_BUILD_DIR/acme-load" --directory "$ACME_DIR" --connect "127.0.0.1:$ACME_PORT" --ca "$ACME_ROOT" \
    --http01-port "$HTTP01_PORT" --clients 2 --threads 1 --issuances 4 --json "$T/load.json" >"$T/load.txt" 2>&1 ||
    rc=$?
  [ $rc -eq 0 ] || { cat "$T/load.txt"; fail "$1: acme-load exited $rc"; }
  jq -e '.failed == 0 and .errors == {} and .issuances == 4' "$T/load.json" >/dev/null ||
    fail "$1: $(jq -c '{issuances, failed, errors}' "$T/load.json")"
}

load "before the pause"
idle0=$(grep -c 'reason=idle' "$T/certforged.log" || true)
sleep 2.5
idle1=$(grep -c 'reason=idle' "$T/certforged.log" || true)
[ "$idle1" -gt "$idle0" ] || fail "certforged closed no idle connection during the pause: $(tail -n 5 "$T/certforged.log")"
load "after certforged closed its idle connections"
echo "1 passed, 0 failed"
