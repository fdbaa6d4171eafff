#!/usr/bin/env bash
# kill -9 of certforge-acme under load, then a restart on the same state:
# every order and certificate a client was told of is still there, and
# orders left processing (certforged stopped meanwhile) complete after the
# restart (test_acme_crash.py); the state database passes its integrity
# check after each kill.
. "$CF_SOURCE_DIR/tests/acme/acme_env.sh"
PY=/usr/bin/python3
$PY -c 'import cryptography, requests' 2>/dev/null || skip "python3-cryptography / python3-requests missing (python3-acme)"
acme_env_start
real_pid() { pgrep -P "$1" -x "$2"; } # the daemon under its timeout wrapper
ACME_PID_REAL=$(real_pid "$ACME_PID" certforge-acme)
ENGINE_PID_REAL=$(real_pid "$ENGINE_PID" certforged)
[ -n "$ACME_PID_REAL" ] && [ -n "$ENGINE_PID_REAL" ] || fail "daemons not found"
export ACME_DIR ACME_ROOT T HTTP01_PORT CF ACME_PID_REAL ENGINE_PID_REAL
in_ns env REQUESTS_CA_BUNDLE="$ACME_ROOT" PYTHONPATH="$CF_SOURCE_DIR/tests/acme" $PY \
  "$CF_SOURCE_DIR/tests/acme/test_acme_crash.py" &
py=$!
for n in 1 2; do
  for _ in $(seq 1 900); do [ -e "$T/restart$n" ] && break; kill -0 $py 2>/dev/null || break; sleep 0.1; done
  [ -e "$T/restart$n" ] || { wait $py; fail "the client never asked for restart $n"; }
  wait "$ACME_PID" 2>/dev/null || true
  [ "$(sqlite3 "$T/acme.db" 'PRAGMA integrity_check')" = ok ] || fail "state database corrupt after kill -9 ($n)"
  acme_start
  grep -E "event=started" "$T/acme.log" | tail -n 1 | grep -o "resumed=[0-9]*"
  # written whole, then renamed: the client polls for the file and must
  # never read it empty (pid 0 would make its kill hit its own group)
  real_pid "$ACME_PID" certforge-acme >"$T/restarted$n.tmp" && mv "$T/restarted$n.tmp" "$T/restarted$n"
done
wait $py || { tail -n 20 "$T/acme.log"; fail "orders or certificates lost"; }
