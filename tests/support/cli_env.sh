# tests/support/cli_env.sh — the fixture of the CLI suites that run a real
# certforged on a throwaway SoftHSM2 token (test_cli_issue.sh,
# test_cli_crl_shards.sh). Sourced; then:
#
#   cli_env_init NAME LABEL   skip (77) without softhsm2-util, openssl, jq,
#                             the module or $CFD; a private folder $D (cd'd
#                             into, removed at exit with the daemon $DPID
#                             stopped), a token LABEL with user PIN 1234 in
#                             $D/pin, CERTFORGE_TOKEN naming it
#   ok / fail MSG             count a check ($checks, $fails)
#   check WHAT CMD...         CMD must succeed (its stdout passed on, its
#                             stderr shown if it fails)
#   expect STATUS TEXT CMD... exit STATUS and one 'certforge: ' line on
#                             stderr containing TEXT
#   stop_daemon               SIGTERM $DPID, bounded (20 s, then SIGKILL)
#
# The caller sets CF and CFD (certforge, certforged) first.

MOD=${CF_SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
DPID=
fails=0 checks=0

stop_daemon() {
  [ -n "$DPID" ] || return 0
  kill -TERM "$DPID" 2>/dev/null
  for _ in $(seq 1 200); do kill -0 "$DPID" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$DPID" 2>/dev/null; then
    echo "FAIL: certforged (pid $DPID) still running 20 s after SIGTERM; killing it" >&2
    kill -KILL "$DPID" 2>/dev/null
  fi
  wait "$DPID" 2>/dev/null
  DPID=
}

cli_env_init() { # NAME LABEL
  local name=$1 label=$2 tool
  for tool in softhsm2-util openssl jq; do
    command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed"; exit 77; }
  done
  [ -r "$MOD" ] || { echo "SKIP: no SoftHSM module at $MOD"; exit 77; }
  [ -x "$CFD" ] || { echo "SKIP: no certforged at $CFD"; exit 77; }
  D=$(mktemp -d "${TMPDIR:-/tmp}/cf-$name-XXXXXX") || exit 1
  trap 'stop_daemon; rm -rf "$D"' EXIT
  cd "$D" || exit 1
  mkdir tokens
  printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n' "$D" > softhsm2.conf
  export SOFTHSM2_CONF=$D/softhsm2.conf
  softhsm2-util --init-token --free --label "$label" --so-pin 12345678 --pin 1234 >/dev/null \
    || { echo "FAIL: softhsm2-util --init-token"; exit 1; }
  (umask 077; printf '1234\n' > pin)
  unset CERTFORGE_PIN CERTFORGE_SOCKET
  export CERTFORGE_TOKEN="pkcs11:token=$label?module-path=$MOD&pin-source=file:$D/pin"
}

ok()   { checks=$((checks + 1)); }
fail() { checks=$((checks + 1)); fails=$((fails + 1)); echo "FAIL: $*" >&2; }
check() { # description, then a command that must succeed
  local what=$1; shift
  if "$@" 2>"$D/cerr"; then ok; else fail "$what: $(cat "$D/cerr")"; fi
}
expect() {
  local want=$1 needle=$2; shift 2
  local rc=0
  "$@" >"$D/out" 2>"$D/err" || rc=$?
  if [ "$rc" -ne "$want" ]; then
    fail "'$*': exit $rc, want $want; stderr: $(cat "$D/err")"
  elif ! grep -qF -- "$needle" "$D/err"; then
    fail "'$*': stderr lacks '$needle': $(cat "$D/err")"
  elif [ "$(wc -l <"$D/err")" -ne 1 ] || ! grep -q '^certforge: ' "$D/err"; then
    fail "'$*': stderr is not one 'certforge: ' line: $(cat "$D/err")"
  else
    ok
  fi
}
