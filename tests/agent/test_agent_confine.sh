#!/usr/bin/env bash
# certforge-agent confined (engine/confine, docs/security.md): started as
# root it holds no capability in any thread (running_as_root warned), runs
# with no_new_privs and a seccomp filter, and its own check found chmod,
# fchmod, fchown, lchown, setxattr and setuid refused inside the filter;
# it serves EST (/cacerts). (test_agent_est.sh enrols through the same
# confined agent.) Restarted as root with confine.user = "nobody" it runs
# as nobody, without capabilities, writes its status file as nobody and
# still serves /cacerts; SIGTERM stops it with exit 0.
. "$CF_SOURCE_DIR/tests/agent/agent_env.sh"
[ "$(id -u)" -eq 0 ] || skip "not root"
getent passwd nobody >/dev/null || skip "no user 'nobody'"
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
cacerts() { curl -sf --cacert "$T/est-root.pem" "$EST/cacerts" | base64 -d | openssl pkcs7 -inform DER -print_certs -noout | grep -c '^subject='; }

agent_env_start
P=$AGENT_PID
caps_empty "$P" && ok || fail "capabilities left in certforge-agent"
[ "$(field "$P" NoNewPrivs)" = 1 ] && [ "$(field "$P" Seccomp)" = 2 ] && ok || fail "NoNewPrivs/Seccomp"
grep -q 'event=confined .*caps=none bounding=empty checks="chmod=EPERM fchmod=EPERM fchown=EPERM lchown=EPERM setxattr=EPERM setuid=EPERM caps=none"' "$T/agent.log" && ok \
  || fail "no confined line with the self-check: $(grep event=confined "$T/agent.log")"
grep -q "event=running_as_root" "$T/agent.log" && ok || fail "no running_as_root warning"
[ "$(cacerts)" -ge 1 ] && ok || fail "/cacerts through the confined agent"
agent_stop
ok

# as nobody: its own state and status folder
chmod 711 "$T"
mkdir "$T/agent-run"
chown nobody: "$T/agent-run"
sed -i -e "s|state = { path = \"$T/agent.db\"; };|state = { path = \"$T/agent-run/agent.db\"; }; confine = { user = \"nobody\"; };|" \
  -e "s|status_file = \"$T/agent-status.json\";|status_file = \"$T/agent-run/status.json\";|" "$AGENT_CONF"
grep -q 'user = "nobody"' "$AGENT_CONF" || fail "could not write the nobody config"
agent_start
P=$AGENT_PID
nb=$(id -u nobody)
[ "$(field "$P" Uid)" = "$nb $nb $nb $nb" ] && ok || fail "Uid $(field "$P" Uid), want $nb"
caps_empty "$P" && ok || fail "capabilities left in certforge-agent as nobody"
grep -q "event=confined .*uid=$nb .*checks=\"chmod=EPERM .*setuid=EPERM caps=none\"" "$T/agent.log" && ok \
  || fail "as nobody: $(grep event=confined "$T/agent.log" | tail -n 1)"
[ "$(cacerts)" -ge 1 ] && ok || fail "/cacerts as nobody"
for _ in $(seq 1 50); do [ -s "$T/agent-run/status.json" ] && break; sleep 0.1; done
[ "$(stat -c %U "$T/agent-run/status.json" 2>/dev/null)" = nobody ] && ok || fail "status file not written by nobody"
agent_stop
ok
[ "$checks" -ge 12 ] || fail "only $checks checks made, want 12"
echo "test_agent_confine: $checks checks, 0 failed"
