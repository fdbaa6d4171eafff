#!/usr/bin/env bash
# certforged as a service manager runs it: --version (and the version in the
# start line and in STATUS), --check-config on a good and on broken configs
# (FILE:LINE, exit 1, nothing created: no socket, folder, lock or ledger),
# SIGHUP while serving (an unchanged file reloaded: generation 2, 3, 4 in the log and in STATUS; the daemon keeps serving the same clients
# and new ones, no exit 129), sd_notify (READY=1 once serving, STOPPING=1 at
# the stop, to a NOTIFY_SOCKET the test listens on) and during a clean stop afterwards (exit 0,
# socket and lock file gone). Every wait is bounded; the daemon is stopped
# by its PID.
#
#   test_certforged_service.sh /path/to/certforge /path/to/certforged
set -uo pipefail

CF=${1:?usage: test_certforged_service.sh /path/to/certforge /path/to/certforged}
CFD=${2:?usage: test_certforged_service.sh /path/to/certforge /path/to/certforged}
SUPPORT=$(cd "$(dirname "$0")/../support" && pwd)
MOD=${CF_SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
for tool in softhsm2-util openssl jq; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed"; exit 77; }
done
[ -r "$MOD" ] || { echo "SKIP: no SoftHSM module at $MOD"; exit 77; }

D=$(mktemp -d "${TMPDIR:-/tmp}/cf-svc-XXXXXX")
DPID=
stop_daemon() { # signal; sets STOP_RC
  STOP_RC=
  [ -n "$DPID" ] || return 0
  kill "-${1:-TERM}" "$DPID" 2>/dev/null
  for _ in $(seq 1 200); do kill -0 "$DPID" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$DPID" 2>/dev/null; then
    echo "FAIL: certforged (pid $DPID) still running 20 s after SIG${1:-TERM}; killing it" >&2
    kill -KILL "$DPID" 2>/dev/null
  fi
  wait "$DPID" 2>/dev/null
  STOP_RC=$?
  DPID=
}
trap 'stop_daemon; rm -rf "$D"' EXIT
cd "$D"

fails=0 checks=0
ok()   { checks=$((checks + 1)); }
fail() { checks=$((checks + 1)); fails=$((fails + 1)); echo "FAIL: $*" >&2; }

# --- --version ----------------------------------------------------------------------------
v=$("$CFD" --version) && [[ $v =~ ^certforged\ [0-9]+\.[0-9]+\.[0-9]+$ ]] && ok || fail "certforged --version: '$v'"
cv=$("$CF" --version) && [ "${cv#certforge }" = "${v#certforged }" ] && ok || fail "certforge --version '$cv' differs from '$v'"

# --- a token and a CA ----------------------------------------------------------------------
mkdir tokens pins ledger crl
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n' "$D" > softhsm2.conf
export SOFTHSM2_CONF=$D/softhsm2.conf
softhsm2-util --init-token --free --label svc --so-pin 12345678 --pin 1234 >/dev/null
(umask 077; printf '1234\n' > pins/user.pin)
unset CERTFORGE_PIN CERTFORGE_SOCKET
export CERTFORGE_TOKEN="pkcs11:token=svc?module-path=$MOD&pin-source=file:$D/pins/user.pin"
"$CF" keys generate --type ec-p256 --label ca >/dev/null &&
"$CF" ca init-root --key "pkcs11:token=svc;object=ca" --subject "/C=FI/O=5gc.mnc001.mcc001.3gppnetwork.org/CN=Svc CA" \
  --out ca.pem >/dev/null || { echo "FAIL: CA"; exit 1; }
SOCK=$D/run/cf.sock
cat > good.conf <<CONF
tokens = ( { name = "ca"; uri = "$CERTFORGE_TOKEN"; } );
keys = ( { name = "ca"; token = "ca"; uri = "pkcs11:object=ca"; } );
issuers = ( { name = "ca"; key = "ca"; certificate = "ca.pem"; } );
profiles = ( { name = "nf"; type = "nf"; issuer = "ca";
    subject = { C = "FI"; O = "5gc.mnc001.mcc001.3gppnetwork.org"; };
    eku = ["serverAuth"]; crl_dp = "http://crl.example/ca.crl";
    require_nf_instance_id = false; require_nf_types = false; } );
log = { level = "info"; };
server = { socket = "$SOCK"; socket_mode = "0600"; };
grants = ( { uid = $(id -u); profiles = ["nf"]; ops = ["issue", "status"]; } );
ledger = { backend = "sqlite"; path = "ledger/ledger.db"; };
crl = { dir = "crl"; interval = "1h"; validity = "1d"; };
CONF

# --- --check-config ------------------------------------------------------------------------------
out=$("$CFD" --check-config good.conf 2>&1) && grep -q "good.conf: configuration OK (1 token, 1 key, 1 issuer, 1 profile, 1 grant)" <<<"$out" && ok \
  || fail "--check-config good.conf: $out"
nothing_made() { [ ! -e run ] && [ ! -e ledger/ledger.db ] && [ -z "$(ls crl)" ]; }
nothing_made && ok || fail "--check-config created something: $(ls -R run ledger crl 2>&1)"
bad() { # name sed-expression needle
  sed "$2" good.conf > "$1.conf"
  local rc=0 out
  out=$("$CFD" --check-config "$1.conf" 2>&1) || rc=$?
  [ $rc -eq 1 ] && grep -qF -- "$3" <<<"$out" && [ "$(wc -l <<<"$out")" -eq 1 ] && ok \
    || fail "--check-config $1: exit $rc, want 1 and '$3': $out"
}
bad typo 's/log = { level = "info"; };/log = { levle = "info"; };/' "typo.conf:8: log.levle: unknown setting"
bad missing-cert 's/certificate = "ca.pem"/certificate = "nope.pem"/' "issuer 'ca': "
bad crl-dir 's/dir = "crl"/dir = "no-such-dir"/' "crl.dir: "
bad no-user 's/^log = /confine = { user = "no-such-user-cf"; };\nlog = /' "confine.user: no user 'no-such-user-cf'"
nothing_made && ok || fail "a refused --check-config created something"
rc=0; "$CFD" --check-config >/dev/null 2>&1 || rc=$?
[ $rc -eq 2 ] && ok || fail "--check-config without FILE: exit $rc, want 2"
rc=0; "$CFD" --check-config good.conf extra >/dev/null 2>&1 || rc=$?
[ $rc -eq 2 ] && ok || fail "--check-config with an extra argument: exit $rc, want 2"

# --- SIGHUP: reloads, not fatal; sd_notify READY=1 / STOPPING=1 (Type=notify) --------------------
: >d.log
timeout -s KILL 120 /usr/bin/python3 "$SUPPORT/notify_listen.py" "$D/notify.sock" 100 >notify.txt &
NPID=$!
for _ in $(seq 1 100); do [ -S "$D/notify.sock" ] && break; sleep 0.1; done
NOTIFY_SOCKET=$D/notify.sock "$CFD" --config good.conf >d.log 2>&1 &
DPID=$!
ready=0
for _ in $(seq 1 300); do
  grep -q "^READY=1$" notify.txt && { ready=1; break; }
  kill -0 "$DPID" 2>/dev/null || break
  sleep 0.1
done
[ $ready -eq 1 ] || { echo "FAIL: no READY=1 on NOTIFY_SOCKET within 30 s:" >&2; cat d.log notify.txt >&2; exit 1; }
# READY=1 came once the socket serves: the log line is there and STATUS answers
grep -q "certforged: ready socket=$SOCK" d.log && ok || fail "READY=1 before the ready line: $(cat d.log)"
grep -q "^STATUS=serving on $SOCK$" notify.txt && ok || fail "no STATUS= with the socket: $(cat notify.txt)"
grep -q "event=start version=${v#certforged } config=" d.log && ok || fail "no version in the start line: $(grep event=start d.log)"
"$CF" status --socket "$SOCK" --json > s1.json 2>&1 && jq -e --arg v "${v#certforged }" '.version == $v and .client_version == $v' s1.json >/dev/null && ok \
  || fail "status --json lacks the versions: $(cat s1.json)"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout a.key -subj "/CN=a" -out a.csr 2>/dev/null
for i in 1 2 3; do
  kill -HUP "$DPID"
  n=0
  for _ in $(seq 1 100); do
    n=$(grep -c "event=reloaded generation=$((i + 1)) " d.log)
    [ "$n" -ge 1 ] && break
    sleep 0.1
  done
  [ "$n" -ge 1 ] && ok || fail "SIGHUP $i: no reload to generation $((i + 1)) within 10 s: $(grep -E 'event=(signal|reload)' d.log)"
  kill -0 "$DPID" 2>/dev/null && ok || fail "certforged died of SIGHUP $i"
  "$CF" issue --socket "$SOCK" --csr a.csr --profile nf --dns a.example --out "a$i.pem" 2>err.txt && ok \
    || fail "issue after SIGHUP $i: $(cat err.txt)"
done
# the same file three times: generation 4, each reload in STATUS
"$CF" status --socket "$SOCK" --json > s3.json 2>&1
jq -e '.config_generation == 4 and .config_reload == "ok" and (.config_reload_at | test("^[0-9-]{10}T[0-9:]{8}Z$"))' s3.json >/dev/null && ok \
  || fail "status --json after 3 reloads: $(cat s3.json)"
"$CF" status --socket "$SOCK" > s3.txt 2>&1
grep -qE '^config +generation 4 \(last reload ok at [0-9-]{10}T[0-9:]{8}Z\)$' s3.txt && ok \
  || fail "status text after 3 reloads: $(cat s3.txt)"
# after three issues the rate is a fraction: printed as certforged sent it
# (no binary-float tail like 0.20000000000000001)
"$CF" status --socket "$SOCK" --json > s2.json 2>&1
raw=$("$CF" status --socket "$SOCK" 2>/dev/null | grep -i rate || true)
! grep -qE '[0-9]\.[0-9]{13,}' s2.json && jq -e '.rate_per_s | type == "number" and . > 0' s2.json >/dev/null && ok \
  || fail "status --json rate: $(grep rate_per_s s2.json) ($raw)"
stop_daemon TERM
[ "$STOP_RC" = 0 ] && ok || fail "stop after SIGHUPs: exit $STOP_RC, want 0"
wait "$NPID" 2>/dev/null
grep -q "^STOPPING=1$" notify.txt && ok || fail "no STOPPING=1 on NOTIFY_SOCKET: $(cat notify.txt)"
[ "$(grep -c '^READY=1$' notify.txt)" -eq 1 ] && ok || fail "READY=1 not sent exactly once: $(cat notify.txt)"
[ ! -e "$SOCK" ] && [ ! -e "$SOCK.lock" ] && ok || fail "socket or lock left after the stop: $(ls -a run)"
grep -q "event=stop issued=3 " d.log && ok || fail "stop line: $(grep event=stop d.log)"

echo "test_certforged_service: $checks checks, $fails failed"
min_checks=29
[ "$checks" -ge "$min_checks" ] || echo "FAIL: only $checks checks made, want at least $min_checks" >&2
[ "$fails" -eq 0 ] && [ "$checks" -ge "$min_checks" ]
