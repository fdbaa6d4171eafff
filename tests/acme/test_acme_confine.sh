#!/usr/bin/env bash
# certforge-acme confined (engine/confine, docs/security.md): started as root
# it holds no capability in any thread (running_as_root warned), runs with
# no_new_privs and a seccomp filter, and its own check found chmod, fchmod,
# fchown, lchown, setxattr and setuid refused inside the filter — while a
# real ACME client (lego, http-01) still gets a certificate through it.
# Restarted as root with confine.user = "nobody" it runs as nobody (every
# uid and gid), still without capabilities, and serves its directory.
. "$CF_SOURCE_DIR/tests/acme/acme_env.sh"
[ "$(id -u)" -eq 0 ] || skip "not root"
getent passwd nobody >/dev/null || skip "no user 'nobody'"
command -v lego >/dev/null || skip "lego missing"
checks=0
ok() { checks=$((checks + 1)); }
caps_empty() { # pid: every thread's capability sets empty
  local t f v
  for t in /proc/"$1"/task/*; do
    for f in CapEff CapPrm CapInh CapAmb CapBnd; do
      v=$(awk -v k="$f:" '$1 == k { print $2 }' "$t/status")
      [ "$v" = 0000000000000000 ] || { echo "thread ${t##*/}: $f $v" >&2; return 1; }
    done
  done
}
field() { awk -v k="$2:" '$1 == k { $1 = ""; sub(/^ /, ""); print; exit }' "/proc/$1/status"; }

ca_setup
engine_start
challtest_start
# sd_notify through the confinement (Type=notify): READY=1 once listening,
# STOPPING=1 at the stop, on a NOTIFY_SOCKET this test listens on
timeout -s KILL 300 /usr/bin/python3 "$CF_SOURCE_DIR/tests/support/notify_listen.py" "$T/notify.sock" 280 >"$T/notify.txt" &
NPID=$!
for _ in $(seq 1 100); do [ -S "$T/notify.sock" ] && break; sleep 0.1; done
NOTIFY_SOCKET=$T/notify.sock acme_start
P=$(pgrep -P "$ACME_PID" -x certforge-acme) || fail "no certforge-acme under $ACME_PID"
for _ in $(seq 1 50); do grep -q "^READY=1$" "$T/notify.txt" && break; sleep 0.1; done
grep -q "^READY=1$" "$T/notify.txt" && ok || fail "no READY=1 from the confined certforge-acme: $(cat "$T/notify.txt")"
caps_empty "$P" && ok || fail "capabilities left in certforge-acme"
[ "$(field "$P" NoNewPrivs)" = 1 ] && [ "$(field "$P" Seccomp)" = 2 ] && ok || fail "NoNewPrivs/Seccomp: $(field "$P" NoNewPrivs)/$(field "$P" Seccomp)"
[ "$(field "$P" Uid | cut -d' ' -f1)" = 0 ] && ok || fail "uid $(field "$P" Uid)"
grep -q 'event=confined .*caps=none bounding=empty checks="chmod=EPERM fchmod=EPERM fchown=EPERM lchown=EPERM setxattr=EPERM setuid=EPERM caps=none"' "$T/acme.log" && ok \
  || fail "no confined line with the self-check: $(grep event=confined "$T/acme.log")"
grep -q "event=running_as_root" "$T/acme.log" && ok || fail "no running_as_root warning"
# a real client through the confined front end
in_ns env LEGO_CA_CERTIFICATES="$ACME_ROOT" timeout 120 lego --server "$ACME_DIR" --path "$T/lego" --accept-tos \
  --email ops@example.org --http --http.port "127.0.0.1:$HTTP01_PORT" -d confined.certforge.test run >"$T/lego.log" 2>&1 &&
  openssl verify -CAfile "$T/ca-chain.pem" "$T/lego/certificates/confined.certforge.test.crt" >/dev/null && ok \
  || fail "lego through the confined certforge-acme: $(tail -n 5 "$T/lego.log")"
acme_stop
ok
wait "$NPID" 2>/dev/null
grep -q "^STOPPING=1$" "$T/notify.txt" && ok || fail "no STOPPING=1 from certforge-acme: $(cat "$T/notify.txt")"

# again as nobody: its own state, status and TLS folders
chmod 711 "$T"
mkdir "$T/acme-run"
chown -R nobody: "$T/acme-run" "$T/acme-tls"
sed -e "s|state = { path = \"$T/acme.db\"; };|state = { path = \"$T/acme-run/acme.db\"; }; status_file = \"$T/acme-run/status.json\"; confine = { user = \"nobody\"; };|" \
  "$T/acme.conf" >"$T/acme-nobody.conf"
grep -q 'user = "nobody"' "$T/acme-nobody.conf" || fail "could not write the nobody config"
timeout -s KILL "$ENV_TIMEOUT" "$CF_BUILD_DIR/certforge-acme" --config "$T/acme-nobody.conf" >"$T/acme2.log" 2>&1 &
ACME_PID=$!
PIDS+=("$ACME_PID")
wait_for "$T/acme2.log" "event=started" 30 "$ACME_PID" || fail "certforge-acme as nobody did not start"
P=$(pgrep -P "$ACME_PID" -x certforge-acme) || fail "no certforge-acme under $ACME_PID"
nb=$(id -u nobody)
[ "$(field "$P" Uid)" = "$nb $nb $nb $nb" ] && ok || fail "Uid $(field "$P" Uid), want $nb"
caps_empty "$P" && ok || fail "capabilities left in certforge-acme as nobody"
grep -q "event=confined .*uid=$nb .*checks=\"chmod=EPERM .*setuid=EPERM caps=none\"" "$T/acme2.log" && ok \
  || fail "as nobody: $(grep event=confined "$T/acme2.log")"
in_ns curl -sf --cacert "$ACME_ROOT" "$ACME_DIR" | jq -e .newOrder >/dev/null && ok || fail "directory not served as nobody"
for _ in $(seq 1 50); do [ -s "$T/acme-run/status.json" ] && break; sleep 0.1; done
[ "$(stat -c %U "$T/acme-run/status.json" 2>/dev/null)" = nobody ] && ok || fail "status file not written by nobody"
acme_stop
ok
[ "$checks" -ge 15 ] || fail "only $checks checks made, want 15"
echo "test_acme_confine: $checks checks, 0 failed"
