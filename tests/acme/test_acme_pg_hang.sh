#!/usr/bin/env bash
# A hung PostgreSQL server under certforge-acme (state.pg_timeout_ms = 1000):
# every process of the throwaway cluster stopped with SIGSTOP. newNonce
# still answers (no store); newAccount and newOrder answer 500
# urn:ietf:params:acme:error:serverInternal once the store's call gives up
# (the client's own timeout, 20 s, only keeps a broken server from hanging
# the test); the log names the setting; the server stays up. After SIGCONT
# the same process serves newAccount and newOrder again (its connections
# reconnect), and the account refused during the outage was not kept.
# Needs $CF_TEST_PG_CONNINFO and $CF_TEST_PG_DIR (tools/pg-cluster.sh);
# skipped without them. The cluster is resumed on every way out: the EXIT
# trap, and a guard that sends SIGCONT after 120 s whatever happens.
ACME_BACKEND=postgresql
ACME_STATE_EXTRA='pg_timeout_ms = 1000;'
[ -n "${CF_TEST_PG_CONNINFO:-}" ] || { echo "SKIPPED: CF_TEST_PG_CONNINFO is not set" >&2; exit 77; }
[ -n "${CF_TEST_PG_DIR:-}" ] || { echo "SKIPPED: CF_TEST_PG_DIR is not set (the cluster to stop)" >&2; exit 77; }
. "$CF_SOURCE_DIR/tests/acme/acme_env.sh"
PY=/usr/bin/python3
$PY -c 'import cryptography, requests' 2>/dev/null || skip "python3-cryptography / python3-requests missing (python3-acme)"

FROZEN=()
GUARD_PID=
pg_thaw() {
  local p
  for p in "${FROZEN[@]:-}"; do
    [ -n "$p" ] && kill -CONT "$p" 2>/dev/null || true
  done
  FROZEN=()
  # the guard's sleep ends early; its SIGCONT then finds nothing stopped
  if [ -n "$GUARD_PID" ]; then pkill -P "$GUARD_PID" 2>/dev/null || true; wait "$GUARD_PID" 2>/dev/null || true; GUARD_PID=; fi
}
trap 'pg_thaw; acme_env_stop' EXIT

# SIGSTOP the postmaster first (it forks no new backend), then each of its
# children; each waited for until stopped.
pg_freeze() {
  local pm p i
  pm=$(head -n 1 "$CF_TEST_PG_DIR/data/postmaster.pid") || fail "no $CF_TEST_PG_DIR/data/postmaster.pid"
  local all=("$pm" $(pgrep -P "$pm"))
  [ "${#all[@]}" -ge 2 ] || fail "no child processes of the postmaster $pm"
  # the guard learns the PIDs before they are stopped
  ( exec 2>/dev/null; sleep 120; kill -CONT "${all[@]}" ) &
  GUARD_PID=$!
  for p in "${all[@]}"; do
    FROZEN+=("$p")
    kill -STOP "$p" || fail "cannot stop process $p of the cluster"
    for i in $(seq 1 100); do
      [ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" = T ] && break
      sleep 0.05
    done
    [ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" = T ] || fail "process $p of the cluster did not stop"
  done
}

acme_env_start
export ACME_DIR ACME_ROOT T HTTP01_PORT
run_py() {
  in_ns env REQUESTS_CA_BUNDLE="$ACME_ROOT" PYTHONPATH="$CF_SOURCE_DIR/tests/acme" $PY \
    "$CF_SOURCE_DIR/tests/acme/test_acme_pg_hang.py" "$1"
}
run_py before || { tail -n 30 "$T/acme.log"; fail "before the outage"; }
pg_freeze
run_py frozen || { tail -n 30 "$T/acme.log"; fail "during the outage"; }
kill -0 "$ACME_PID" 2>/dev/null || fail "certforge-acme did not survive the outage"
grep -q 'event=internal_error .*no answer from the server within 1000 ms (state.pg_timeout_ms)' "$T/acme.log" ||
  { tail -n 30 "$T/acme.log"; fail "the log does not name state.pg_timeout_ms"; }
pg_thaw
run_py after || { tail -n 30 "$T/acme.log"; fail "after the outage"; }
kill -0 "$ACME_PID" 2>/dev/null || fail "certforge-acme exited"
[ "$(grep -c 'event=started' "$T/acme.log")" -eq 1 ] || fail "certforge-acme restarted"
echo "PASS"
