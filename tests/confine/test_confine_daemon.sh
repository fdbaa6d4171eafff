#!/usr/bin/env bash
# The running certforged's confinement, read from outside (/proc) and
# from inside (the self-check it logs): started as root with
# confine.user = "nobody" it runs as nobody (real, effective, saved uid and
# gid), every thread with no capability and an empty bounding set, no
# ambient set, no_new_privs, a seccomp filter; its own check found chmod,
# fchmod, fchown, lchown, setxattr and setuid refused inside the filter;
# and it still serves: a certificate, a revocation, a fresh CRL written
# into crl.dir as nobody; SIGTERM stops it, exit 0. Started as root without
# a user it stays uid 0 but holds no capability in any thread (warned as
# running_as_root). A user that does not exist is refused at start-up with
# FILE:LINE, leaving neither the socket's folder nor its lock file.
#
# Needs root (to start as root) and the user 'nobody'; exits 77 otherwise.
#
#   test_confine_daemon.sh /path/to/certforge /path/to/certforged
set -uo pipefail

CF=${1:?usage: test_confine_daemon.sh /path/to/certforge /path/to/certforged}
CFD=${2:?usage: test_confine_daemon.sh /path/to/certforge /path/to/certforged}
MOD=${CF_SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
for tool in softhsm2-util openssl; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed"; exit 77; }
done
[ -r "$MOD" ] || { echo "SKIP: no SoftHSM module at $MOD"; exit 77; }
[ "$(id -u)" -eq 0 ] || { echo "SKIP: not root: cannot start certforged as root here"; exit 77; }
getent passwd nobody >/dev/null || { echo "SKIP: no user 'nobody'"; exit 77; }
NOBODY_UID=$(id -u nobody) NOBODY_GID=$(id -g nobody)

D=$(mktemp -d "${TMPDIR:-/tmp}/cf-confd-XXXXXX")
chmod 711 "$D"
DPID=
stop_daemon() { # sets STOP_RC
  STOP_RC=
  [ -n "$DPID" ] || return 0
  kill -TERM "$DPID" 2>/dev/null
  for _ in $(seq 1 200); do kill -0 "$DPID" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$DPID" 2>/dev/null; then
    echo "FAIL: certforged (pid $DPID) still running 20 s after SIGTERM; killing it" >&2
    kill -KILL "$DPID" 2>/dev/null
  fi
  wait "$DPID" 2>/dev/null
  STOP_RC=$?
  DPID=
}
trap 'stop_daemon; [ -n "${CF_KEEP:-}" ] || rm -rf "$D"' EXIT

fails=0 checks=0
ok()   { checks=$((checks + 1)); }
fail() { checks=$((checks + 1)); fails=$((fails + 1)); echo "FAIL: $*" >&2; }

# The layout the daemon is meant to run with: the token and the PIN apart
# from what it writes (run/ for the socket, ledger/, crl/).
S=$D/state
mkdir -p "$S/tokens" "$S/pins" "$S/run" "$S/ledger" "$S/crl"
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n' "$S" > "$S/softhsm2.conf"
export SOFTHSM2_CONF=$S/softhsm2.conf
softhsm2-util --init-token --free --label confd --so-pin 12345678 --pin 1234 >/dev/null
(umask 077; printf '1234\n' > "$S/pins/user.pin")
unset CERTFORGE_PIN CERTFORGE_SOCKET
export CERTFORGE_TOKEN="pkcs11:token=confd?module-path=$MOD&pin-source=file:$S/pins/user.pin"
"$CF" keys generate --type ec-p256 --label root >/dev/null || { echo "FAIL: keys generate"; exit 1; }
"$CF" keys generate --type ec-p256 --label nf-ca >/dev/null || { echo "FAIL: keys generate"; exit 1; }
"$CF" ca init-root --key "pkcs11:token=confd;object=root" --subject "/CN=Confd Root" --out "$S/root.pem" >/dev/null &&
"$CF" ca init-intermediate --key "pkcs11:token=confd;object=nf-ca" --issuer-key "pkcs11:token=confd;object=root" \
  --issuer-cert "$S/root.pem" --subject "/C=FI/O=5gc.mnc001.mcc001.3gppnetwork.org/CN=Confd NF CA" \
  --out "$S/nf-ca.pem" >/dev/null || { echo "FAIL: CA ceremony"; exit 1; }
# the service user owns what it reads again (token, PIN) and writes
chown -R nobody: "$S"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$D/amf.key" \
  -subj "/C=FI/O=5gc.mnc001.mcc001.3gppnetwork.org" -out "$D/amf.csr" 2>/dev/null

SOCK=$S/run/cf.sock
conf() { # file user-line
  cat > "$1" <<CONF
tokens = ( { name = "ca"; uri = "$CERTFORGE_TOKEN"; } );
keys = ( { name = "nf-ca"; token = "ca"; uri = "pkcs11:object=nf-ca"; } );
issuers = ( { name = "nf-ca"; key = "nf-ca"; certificate = "$S/nf-ca.pem"; chain = "$S/root.pem"; } );
profiles = ( { name = "nf"; type = "nf"; issuer = "nf-ca";
    subject = { C = "FI"; O = "5gc.mnc001.mcc001.3gppnetwork.org"; };
    eku = ["serverAuth"]; crl_dp = "http://crl.example/nf-ca.crl";
    require_nf_instance_id = false; require_nf_types = false; } );
pipeline = { workers = 2; };
log = { level = "info"; };
server = { socket = "$SOCK"; socket_mode = "0600"; };
grants = ( { uid = 0; profiles = ["nf"]; ops = ["issue", "status", "revoke", "crl"]; } );
ledger = { backend = "sqlite"; path = "$S/ledger/ledger.db"; };
crl = { dir = "$S/crl"; interval = "1h"; validity = "1d"; revoke_delay = "1s"; };
$2
CONF
}
start() { # config log: starts, waits for ready (30 s)
  : >"$2"
  "$CFD" --config "$1" >"$2" 2>&1 &
  DPID=$!
  for _ in $(seq 1 300); do
    grep -q "certforged: ready socket=" "$2" && return 0
    kill -0 "$DPID" 2>/dev/null || break
    sleep 0.1
  done
  echo "FAIL: certforged not ready within 30 s:" >&2; cat "$2" >&2
  stop_daemon
  return 1
}
status_field() { awk -v k="$2:" '$1 == k { $1 = ""; sub(/^ /, ""); print; exit }' "/proc/$1/status"; }
children() { cat /proc/"$1"/task/*/children 2>/dev/null; }
signer_pid() { # the daemon's signer process (cf-signer, below its keeper)
  local c g
  for c in $(children "$1"); do
    [ "$(cat /proc/$c/comm 2>/dev/null)" = cf-signer ] && { echo $c; return; }
    for g in $(children "$c"); do
      [ "$(cat /proc/$g/comm 2>/dev/null)" = cf-signer ] && { echo $g; return; }
    done
  done
}
signer_checks() { # pid-of-certforged label: the signer holds no capability, is filtered
  local SP f
  SP=$(signer_pid "$1")
  [ -n "$SP" ] && ok || { fail "$2: no cf-signer process below certforged $1"; return; }
  for f in CapEff CapPrm CapInh CapAmb CapBnd; do
    all_threads "$SP" $f 0000000000000000 && ok || fail "$2: signer $f not empty in every thread"
  done
  [ "$(status_field "$SP" NoNewPrivs)" = 1 ] && ok || fail "$2: signer NoNewPrivs: $(status_field "$SP" NoNewPrivs)"
  [ "$(status_field "$SP" Seccomp)" = 2 ] && ok || fail "$2: signer Seccomp: $(status_field "$SP" Seccomp)"
}
all_threads() { # pid field value: every thread's FIELD is VALUE
  local t v
  for t in /proc/"$1"/task/*; do
    v=$(awk -v k="$2:" '$1 == k { print $2; exit }' "$t/status")
    [ "$v" = "$3" ] || { echo "thread ${t##*/}: $2 $v" >&2; return 1; }
  done
}

# --- 1. as root, with confine.user = "nobody" -----------------------------------------------
conf "$D/user.conf" 'confine = { user = "nobody"; };'
if start "$D/user.conf" "$D/user.log"; then
  P=$DPID
  [ "$(status_field $P Uid)" = "$NOBODY_UID $NOBODY_UID $NOBODY_UID $NOBODY_UID" ] && ok \
    || fail "Uid: $(status_field $P Uid), want $NOBODY_UID x4"
  [ "$(status_field $P Gid)" = "$NOBODY_GID $NOBODY_GID $NOBODY_GID $NOBODY_GID" ] && ok \
    || fail "Gid: $(status_field $P Gid)"
  for f in CapEff CapPrm CapInh CapAmb CapBnd; do
    all_threads $P $f 0000000000000000 && ok || fail "$f not empty in every thread of the daemon"
  done
  [ "$(status_field $P NoNewPrivs)" = 1 ] && ok || fail "NoNewPrivs: $(status_field $P NoNewPrivs)"
  [ "$(status_field $P Seccomp)" = 2 ] && ok || fail "Seccomp: $(status_field $P Seccomp)"
  [ "$(ls /proc/$P/task | wc -l)" -ge 4 ] && ok || fail "expected the daemon's threads (workers, recorder, ...)"
  signer_checks $P "as nobody"
  grep -q "event=confined .*uid=$NOBODY_UID gid=$NOBODY_GID caps=none bounding=empty checks=\"chmod=EPERM fchmod=EPERM fchown=EPERM lchown=EPERM setxattr=EPERM setuid=EPERM caps=none\"" "$D/user.log" && ok \
    || fail "no confined line with the self-check: $(grep event=confined "$D/user.log")"
  ! grep -q "event=running_as_root" "$D/user.log" && ok || fail "warned running_as_root although switched"
  [ "$(stat -c %U:%G "$SOCK")" = "$(id -un nobody):$(id -gn nobody)" ] && ok || fail "socket owned by $(stat -c %U:%G "$SOCK"), want nobody's"
  # it still serves, and writes where it must, as nobody
  if "$CF" issue --socket "$SOCK" --csr "$D/amf.csr" --profile nf --dns amf.example --out "$D/amf.pem" 2>"$D/err"; then
    ok
    serial=$(openssl x509 -in "$D/amf.pem" -noout -serial | cut -d= -f2)
    "$CF" revoke --socket "$SOCK" --serial "$serial" --reason keyCompromise >/dev/null 2>>"$D/err" && ok \
      || fail "revoke as nobody: $(cat "$D/err")"
    "$CF" crl --socket "$SOCK" --issuer nf-ca --new --out "$D/now.crl" --der >/dev/null 2>>"$D/err" && ok \
      || fail "crl --new as nobody: $(cat "$D/err")"
    [ "$(stat -c %U "$S/crl/nf-ca.crl" 2>/dev/null)" = nobody ] && ok || fail "crl.dir/nf-ca.crl not written by nobody"
  else
    fail "issue through the confined daemon: $(cat "$D/err")"
  fi
  stop_daemon
  [ "$STOP_RC" = 0 ] && ok || fail "stop as nobody: exit $STOP_RC"
  [ ! -e "$SOCK" ] && [ ! -e "$SOCK.lock" ] && ok || fail "socket or lock file left after the stop: $(ls -a "$S/run")"
fi

# --- 2. as root, no user: uid 0, but no capability in any thread ---------------------------------
# (without CAP_DAC_OVERRIDE root writes only what root owns)
chown -R root: "$S"
conf "$D/root.conf" ''
if start "$D/root.conf" "$D/root.log"; then
  P=$DPID
  [ "$(status_field $P Uid | cut -d' ' -f1)" = 0 ] && ok || fail "Uid: $(status_field $P Uid)"
  for f in CapEff CapPrm CapInh CapAmb CapBnd; do
    all_threads $P $f 0000000000000000 && ok || fail "as root: $f not empty in every thread"
  done
  grep -q "event=running_as_root" "$D/root.log" && ok || fail "no running_as_root warning"
  signer_checks $P "as root"
  grep -q 'event=confined .*uid=0 .*checks="chmod=EPERM .*setuid=EPERM caps=none"' "$D/root.log" && ok \
    || fail "root: no self-check line: $(grep event=confined "$D/root.log")"
  "$CF" issue --socket "$SOCK" --csr "$D/amf.csr" --profile nf --dns amf.example --out "$D/amf2.pem" 2>"$D/err" && ok \
    || fail "issue as capability-less root: $(cat "$D/err")"
  stop_daemon
  [ "$STOP_RC" = 0 ] && ok || fail "stop as root: exit $STOP_RC"
fi

# --- 3. an unknown user: refused at start-up, nothing left behind -------------------------------
rm -rf "$S/run"
conf "$D/bad.conf" 'confine = { user = "no-such-user-cf"; };'
rc=0
timeout -s KILL 60 "$CFD" --config "$D/bad.conf" >"$D/bad.log" 2>&1 || rc=$?
[ $rc -eq 1 ] && ok || fail "unknown user: exit $rc, want 1"
grep -q "bad.conf:[0-9]*: confine.user: no user 'no-such-user-cf'" "$D/bad.log" && ok \
  || fail "unknown user not named with FILE:LINE: $(cat "$D/bad.log")"
[ ! -e "$S/run" ] && ok || fail "a refused start left the socket's folder: $(ls -la "$S/run")"
# refused after the socket was made (the ledger's folder is missing): the
# socket, its lock file and the folder made for them are removed again
conf "$D/noledger.conf" ''
sed -i "s|$S/ledger/ledger.db|$D/missing/ledger.db|" "$D/noledger.conf"
rc=0
timeout -s KILL 60 "$CFD" --config "$D/noledger.conf" >"$D/noledger.log" 2>&1 || rc=$?
[ $rc -eq 1 ] && grep -q "ledger.path" "$D/noledger.log" && ok || fail "missing ledger folder: exit $rc: $(cat "$D/noledger.log")"
[ ! -e "$S/run" ] && ok || fail "a start refused at the ledger left $(ls -a "$S/run")"
# and where the folder existed before, only the socket and the lock go
mkdir "$S/run" && chown nobody: "$S/run"
timeout -s KILL 60 "$CFD" --config "$D/noledger.conf" >"$D/noledger2.log" 2>&1
[ -d "$S/run" ] && [ -z "$(ls -A "$S/run")" ] && ok || fail "refused start: $S/run holds $(ls -A "$S/run")"

echo "test_confine_daemon: $checks checks, $fails failed"
min_checks=30
[ "$checks" -ge "$min_checks" ] || echo "FAIL: only $checks checks made, want at least $min_checks" >&2
[ "$fails" -eq 0 ] && [ "$checks" -ge "$min_checks" ]
