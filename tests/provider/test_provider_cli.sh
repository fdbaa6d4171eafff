#!/usr/bin/env bash
# The certforge OpenSSL provider driven by the openssl command line against
# a real certforged on a throwaway SoftHSM2 token (CA keys of every type
# made with `certforge keys generate` / `certforge ca init-root`): x509
# -req, req -x509, dgst -sign/-verify, ca, ca -gencrl, each key type, and
# the refusals a user meets (no grant, unknown key, bad URI, daemon down).
# Every wait is bounded; the daemon is stopped by its PID.
#
#   test_provider_cli.sh /path/to/certforge /path/to/certforged /path/to/providers-dir
set -uo pipefail

CF=${1:?usage: test_provider_cli.sh CERTFORGE CERTFORGED PROVIDER_DIR}
CFD=${2:?usage: test_provider_cli.sh CERTFORGE CERTFORGED PROVIDER_DIR}
PDIR=${3:?usage: test_provider_cli.sh CERTFORGE CERTFORGED PROVIDER_DIR}
MOD=${CF_SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
for tool in softhsm2-util openssl; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed"; exit 77; }
done
[ -r "$MOD" ] || { echo "SKIP: no SoftHSM module at $MOD"; exit 77; }
[ -x "$CFD" ] || { echo "SKIP: no certforged at $CFD"; exit 77; }
[ -r "$PDIR/certforge.so" ] || { echo "FAIL: no provider at $PDIR/certforge.so"; exit 1; }

D=$(mktemp -d "${TMPDIR:-/tmp}/cf-prov-XXXXXX")
DPID=
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
trap 'stop_daemon; rm -rf "$D"' EXIT
cd "$D"
mkdir tokens
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n' "$D" > softhsm2.conf
export SOFTHSM2_CONF=$D/softhsm2.conf
softhsm2-util --init-token --free --label prov-test --so-pin 12345678 --pin 1234 >/dev/null
(umask 077; printf '1234\n' > pin)
unset CERTFORGE_PIN CERTFORGE_SOCKET OPENSSL_CONF
export CERTFORGE_TOKEN="pkcs11:token=prov-test?module-path=$MOD&pin-source=file:$D/pin"

fails=0 checks=0
ok()   { checks=$((checks + 1)); }
fail() { checks=$((checks + 1)); fails=$((fails + 1)); echo "FAIL: $*" >&2; }
check() { # description, then a command that must succeed (its output in $D/last)
  local what=$1; shift
  if "$@" >"$D/last" 2>&1; then ok; else fail "$what: $(tail -n 20 "$D/last")"; fi
}
# refuse SUBSTRING cmd... : non-zero exit, SUBSTRING on stderr
refuse() {
  local needle=$1; shift
  local rc=0
  "$@" >"$D/out" 2>"$D/err" || rc=$?
  if [ "$rc" -eq 0 ]; then
    fail "'$*' succeeded; want a refusal with '$needle'"
  elif ! grep -qF -- "$needle" "$D/err"; then
    fail "'$*': stderr lacks '$needle': $(cat "$D/err")"
  else
    ok
  fi
}
P=(-provider-path "$PDIR" -provider certforge -provider default)

# --- keys and CA certificates (the CLI talks to the token; no daemon yet) -----
KEYS="p256:ec-p256 p384:ec-p384 rsa:rsa-2048 ed:ed25519"
for kt in $KEYS; do
  IFS=: read -r k t <<<"$kt"
  "$CF" keys generate --type "$t" --label "$k" >/dev/null || { echo "FAIL: keys generate $k"; exit 1; }
  "$CF" ca init-root --key "pkcs11:token=prov-test;object=$k" \
    --subject "/C=FI/O=certforge test/CN=Provider $k CA" --out "$k-ca.pem" >/dev/null \
    || { echo "FAIL: ca init-root $k"; exit 1; }
done

# --- certforged -------------------------------------------------------------
SOCK=$D/cf.sock
write_conf() { # grants
  cat > certforged.conf <<CONF
tokens = ( { name = "ca"; uri = "$CERTFORGE_TOKEN"; } );
keys = (
  { name = "p256"; token = "ca"; uri = "pkcs11:object=p256"; sessions = 2; },
  { name = "p384"; token = "ca"; uri = "pkcs11:object=p384"; sessions = 2; },
  { name = "rsa"; token = "ca"; uri = "pkcs11:object=rsa"; sessions = 2; },
  { name = "ed"; token = "ca"; uri = "pkcs11:object=ed"; sessions = 2; }
);
issuers = ( { name = "p256"; key = "p256"; certificate = "p256-ca.pem"; } );
profiles = (
  { name = "nf"; type = "nf"; issuer = "p256";
    subject = { C = "FI"; O = "5gc.mnc001.mcc001.3gppnetwork.org"; };
    eku = ["serverAuth"]; crl_dp = "http://crl.example.org/nf.crl"; }
);
pipeline = { workers = 2; queue = 256; batch = 8; };
server = { socket = "$SOCK"; socket_mode = "0600"; };
grants = $1;
ledger = { backend = "sqlite"; path = "ledger.db"; };
CONF
}
start_daemon() {
  : > certforged.log
  "$CFD" --config certforged.conf >certforged.log 2>&1 &
  DPID=$!
  for _ in $(seq 1 300); do
    grep -q "certforged: ready socket=$SOCK" certforged.log && return 0
    kill -0 "$DPID" 2>/dev/null || break
    sleep 0.1
  done
  echo "FAIL: certforged not ready within 30 s; its log:" >&2
  cat certforged.log >&2
  exit 1
}
UID_=$(id -u)
write_conf "( { uid = $UID_; ops = [\"keys\"]; } )"
start_daemon
export CERTFORGE_SOCKET=$SOCK

# --- STORE + KEYMGMT: public keys through KEYS ----------------------------------
for kt in $KEYS; do
  IFS=: read -r k t <<<"$kt"
  check "pkey -pubout $k" openssl pkey "${P[@]}" -in "certforge:key=$k" -pubout -out "$k.pub"
  check "$k public key = its CA certificate's" \
    diff "$k.pub" <(openssl x509 -in "$k-ca.pem" -noout -pubkey)
done
check "socket= in the URI" openssl pkey "${P[@]}" -in "certforge:key=p256;socket=$SOCK" -pubout -out sock.pub
check "socket= wins over CERTFORGE_SOCKET" env CERTFORGE_SOCKET=/nonexistent.sock \
  openssl pkey "${P[@]}" -in "certforge:key=p256;socket=$SOCK" -pubout -out sock.pub
check "pkey -text_pub" openssl pkey "${P[@]}" -in certforge:key=rsa -text_pub -noout
grep -q "Public-Key: (2048 bit)" "$D/last" && ok || fail "pkey -text_pub rsa: $(cat "$D/last")"

refuse "no key 'nope' on $SOCK (certforged serves: p256, p384, rsa, ed)" \
  openssl pkey "${P[@]}" -in certforge:key=nope -pubout
refuse "unknown attribute 'colour'" openssl pkey "${P[@]}" -in "certforge:key=p256;colour=blue" -pubout
refuse "attribute 'key' given twice" openssl pkey "${P[@]}" -in "certforge:key=p256;key=rsa" -pubout
refuse "attribute 'key' is empty" openssl pkey "${P[@]}" -in "certforge:key=" -pubout
refuse "certforged is not reachable" openssl pkey "${P[@]}" -in "certforge:key=p256;socket=$D/nope.sock" -pubout
grep -qF "connect $D/nope.sock" "$D/err" && ok || fail "not-reachable message lacks the socket path: $(cat "$D/err")"

[ -n "${CF_KEEP:-}" ] && { cat "$D/err"; }
echo "test_provider_cli: $checks checks, $fails failed"
[ $fails -eq 0 ]
