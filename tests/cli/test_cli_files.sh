#!/usr/bin/env bash
# Every certforge command that writes a file goes through one safe writer
# (common/outfile.c): a temporary file beside the target, renamed over it.
# Here each command is pointed at what must never be written through or
# replaced — a symlink to a victim file, a FIFO, a device node (a copy of
# /dev/null's, where this user may make one, and /dev/null itself), a
# folder — and must refuse with one line, leaving the victim, the planted
# thing and the token as they were; a regular file is replaced, with the
# documented mode. Also: a name planted where the old writers put their
# temporary files is left alone; and certforged at server.max_connections
# (a holder keeps both connections) makes `certforge issue` report BUSY and
# connect again, for one CSR and for a batch. Every wait is bounded; the
# daemon and the holder are stopped by their PIDs.
#
#   test_cli_files.sh /path/to/certforge /path/to/certforged
set -uo pipefail

CF=${1:?usage: test_cli_files.sh /path/to/certforge /path/to/certforged}
CFD=${2:?usage: test_cli_files.sh /path/to/certforge /path/to/certforged}
MOD=${CF_SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
for tool in softhsm2-util jq openssl python3; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed"; exit 77; }
done
[ -r "$MOD" ] || { echo "SKIP: no SoftHSM module at $MOD"; exit 77; }

D=$(mktemp -d "${TMPDIR:-/tmp}/cf-files-XXXXXX")
DPID= HPID=
stop_pid() { # pid: TERM, wait up to 20 s, then KILL
  local p=$1
  [ -n "$p" ] || return 0
  kill -TERM "$p" 2>/dev/null
  for _ in $(seq 1 200); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$p" 2>/dev/null && { echo "FAIL: pid $p still running 20 s after SIGTERM" >&2; kill -KILL "$p" 2>/dev/null; }
  wait "$p" 2>/dev/null
}
trap 'stop_pid "$HPID"; stop_pid "$DPID"; rm -rf "$D"' EXIT
cd "$D"
mkdir tokens
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n' "$D" > softhsm2.conf
export SOFTHSM2_CONF=$D/softhsm2.conf
softhsm2-util --init-token --free --label files-test --so-pin 12345678 --pin 1234 >/dev/null
(umask 077; printf '1234\n' > pin)
unset CERTFORGE_PIN CERTFORGE_SOCKET
export CERTFORGE_TOKEN="pkcs11:token=files-test?module-path=$MOD&pin-source=file:$D/pin"

fails=0 checks=0
ok()   { checks=$((checks + 1)); }
fail() { checks=$((checks + 1)); fails=$((fails + 1)); echo "FAIL: $*" >&2; }
check() { local what=$1; shift; if "$@"; then ok; else fail "$what"; fi; }
# refused WHAT NEEDLE cmd...: exit 1, one 'certforge: ' line containing NEEDLE
refused() {
  local what=$1 needle=$2; shift 2
  local rc=0
  "$@" >"$D/out" 2>"$D/err" </dev/null || rc=$?
  if [ "$rc" -ne 1 ]; then
    fail "$what: exit $rc, want 1; stderr: $(cat "$D/err")"
  elif ! grep -qF -- "$needle" "$D/err"; then
    fail "$what: stderr lacks '$needle': $(cat "$D/err")"
  elif [ "$(wc -l <"$D/err")" -ne 1 ]; then
    fail "$what: want one line on stderr: $(cat "$D/err")"
  else
    ok
  fi
}
# the planted things: a victim file, a symlink to it, a FIFO, a folder, a device node
printf 'precious\n' > victim
plant() { # prefix: PREFIX.link PREFIX.fifo PREFIX.dir [PREFIX.dev]
  ln -s "$D/victim" "$1.link"
  mkfifo "$1.fifo"
  mkdir "$1.dir"
  mknod "$1.dev" c 1 3 2>/dev/null || true
}
intact() { # prefix
  [ "$(cat victim)" = precious ] && [ -L "$1.link" ] && [ -p "$1.fifo" ] && [ -d "$1.dir" ] &&
    { [ ! -e "$1.dev" ] || [ -c "$1.dev" ]; } && [ -c /dev/null ]
}
# every refusal a command must make, one target kind at a time
refuses_all() { # name prefix cmd-with-@OUT@...
  local name=$1 p=$2; shift 2
  local kind t args a
  for kind in link fifo dir dev null; do
    case $kind in
      dev) [ -c "$p.dev" ] || continue; t=$p.dev; want="character device" ;;
      null) t=/dev/null; want="character device" ;;
      link) t=$p.link; want="symbolic link" ;;
      fifo) t=$p.fifo; want="a FIFO" ;;
      dir) t=$p.dir; want="a folder" ;;
    esac
    args=()
    for a in "$@"; do args+=("${a//@OUT@/$t}"); done
    refused "$name into $kind" "$want" "${args[@]}"
  done
  intact "$p" && ok || fail "$name: a planted target or the victim changed"
}

# --- CA through the safe writer ----------------------------------------------------------
"$CF" keys generate --type ec-p256 --label root >/dev/null || { echo "FAIL: keys generate root"; exit 1; }
"$CF" keys generate --type ec-p256 --label nf-ca >/dev/null || { echo "FAIL: keys generate nf-ca"; exit 1; }
plant ca
refuses_all "ca init-root --out" ca "$CF" ca init-root --key "pkcs11:token=files-test;object=root" \
  --subject "/CN=Files Root" --out @OUT@
# refused before the HSM signed: no certificate object stored on the token
"$CF" keys show "pkcs11:token=files-test;object=root" --json | jq -e '.certificate == false' >/dev/null && ok \
  || fail "a refused init-root left a certificate object on the token"
check "ca init-root" "$CF" ca init-root --key "pkcs11:token=files-test;object=root" \
  --subject "/C=FI/O=certforge test/CN=Files Root" --out root.pem
[ "$(stat -c %a root.pem)" = "$(printf '%o' $((0644 & ~0$(umask))))" ] && ok || fail "root.pem mode $(stat -c %a root.pem)"
check "ca init-intermediate" "$CF" ca init-intermediate --key "pkcs11:token=files-test;object=nf-ca" \
  --issuer-key "pkcs11:token=files-test;object=root" --issuer-cert root.pem \
  --subject "/C=FI/O=5gc.mnc001.mcc001.3gppnetwork.org/CN=Files NF CA" --out nf-ca.pem
# refused WHAT cmd...: exit 1, stderr exactly 'certforge: FILE exists; use --force to replace it'
exists() {
  local what=$1 file=$2; shift 2
  local rc=0
  "$@" >"$D/out" 2>"$D/err" </dev/null || rc=$?
  [ "$rc" -eq 1 ] && [ "$(cat "$D/err")" = "certforge: $file exists; use --force to replace it" ] && ok \
    || fail "$what: exit $rc, want 1 and '$file exists; use --force': $(cat "$D/err")"
}
cp root.pem root.before
exists "ca init-intermediate over an existing file" root.pem \
  "$CF" ca init-intermediate --key "pkcs11:token=files-test;object=nf-ca" --replace-cert \
  --issuer-key "pkcs11:token=files-test;object=root" --issuer-cert root.pem --subject "/CN=x" --out root.pem
cmp -s root.pem root.before && ok || fail "a refused init-intermediate changed root.pem"
# --force replaces the file (and --replace-cert the token object)
cp nf-ca.pem nf-ca.before
exists "ca init-intermediate (no --force)" nf-ca.pem "$CF" ca init-intermediate --key "pkcs11:token=files-test;object=nf-ca" \
  --replace-cert --issuer-key "pkcs11:token=files-test;object=root" --issuer-cert root.pem \
  --subject "/C=FI/O=5gc.mnc001.mcc001.3gppnetwork.org/CN=Files NF CA" --out nf-ca.pem
check "ca init-intermediate --force" "$CF" ca init-intermediate --key "pkcs11:token=files-test;object=nf-ca" \
  --replace-cert --force --issuer-key "pkcs11:token=files-test;object=root" --issuer-cert root.pem \
  --subject "/C=FI/O=5gc.mnc001.mcc001.3gppnetwork.org/CN=Files NF CA" --out nf-ca.pem
! cmp -s nf-ca.pem nf-ca.before && openssl verify -CAfile root.pem nf-ca.pem >/dev/null && ok \
  || fail "ca init-intermediate --force did not replace nf-ca.pem with a valid certificate"

# --- keys export-pub ---------------------------------------------------------------------------
plant pub
refuses_all "keys export-pub --out" pub "$CF" keys export-pub "pkcs11:token=files-test;object=root" --out @OUT@
printf 'old\n' > pub.pem
exists "keys export-pub over a regular file" pub.pem "$CF" keys export-pub "pkcs11:token=files-test;object=root" --out pub.pem
[ "$(cat pub.pem)" = old ] && ok || fail "a refused export-pub changed pub.pem"
check "keys export-pub --force replaces a regular file" "$CF" keys export-pub "pkcs11:token=files-test;object=root" --out pub.pem --force
grep -q "BEGIN PUBLIC KEY" pub.pem && ok || fail "pub.pem: $(head -c 100 pub.pem)"
exists "keys csr over a regular file" pub.pem "$CF" keys csr "pkcs11:token=files-test;object=root" --subject /CN=x --out pub.pem
check "keys csr --force" "$CF" keys csr "pkcs11:token=files-test;object=root" --subject /CN=x --out pub.pem --force
openssl req -in pub.pem -noout -verify 2>/dev/null && ok || fail "keys csr --force: pub.pem is not a CSR"
expect_usage() { # what needle cmd...: exit 2, one line with needle
  local what=$1 needle=$2; shift 2
  local rc=0
  "$@" >"$D/out" 2>"$D/err" </dev/null || rc=$?
  [ "$rc" -eq 2 ] && grep -qF -- "$needle" "$D/err" && [ "$(wc -l <"$D/err")" -eq 1 ] && ok \
    || fail "$what: exit $rc, want 2 and '$needle': $(cat "$D/err")"
}
expect_usage "keys show --force" "option '--force' is unknown" "$CF" keys show "pkcs11:token=files-test;object=root" --force

# --- csr-gen: the batch file and each CSR file ------------------------------------------------
plant gen
refuses_all "csr-gen --batch-out" gen "$CF" csr-gen --count 2 --out-dir gen-csrs --batch-out @OUT@
mkdir csrs2 && ln -s "$D/victim" csrs2/nf-000002.csr.pem
refused "csr-gen over a symlinked CSR name" "symbolic link" "$CF" csr-gen --count 3 --out-dir csrs2 --batch-out b2.jsonl
[ "$(cat victim)" = precious ] && [ -L csrs2/nf-000002.csr.pem ] && [ ! -e b2.jsonl ] && ok \
  || fail "csr-gen wrote through a symlinked CSR name, or left its batch file"
# the name the old csr-gen wrote first (BATCH.tmp), planted as a symlink
ln -s "$D/victim" batch.jsonl.tmp
check "csr-gen 6" "$CF" csr-gen --count 6 --out-dir csrs --batch-out batch.jsonl
[ "$(cat victim)" = precious ] && [ -L batch.jsonl.tmp ] && [ "$(wc -l <batch.jsonl)" -eq 6 ] && ok \
  || fail "csr-gen: planted batch.jsonl.tmp followed, or batch.jsonl wrong"
[ -z "$(find csrs -name '.*')" ] && ok || fail "csr-gen left temporary files: $(ls -a csrs)"
cp batch.jsonl batch.before
exists "csr-gen over an existing batch" batch.jsonl "$CF" csr-gen --count 6 --out-dir csrs --batch-out batch.jsonl
cmp -s batch.jsonl batch.before && ok || fail "a refused csr-gen changed batch.jsonl"
exists "csr-gen over an existing CSR file" "$D/csrs/nf-000001.csr.pem" "$CF" csr-gen --count 6 --out-dir csrs --batch-out batch-new.jsonl
[ ! -e batch-new.jsonl ] && ok || fail "a refused csr-gen wrote its batch"
check "csr-gen --force" "$CF" csr-gen --count 6 --out-dir csrs --batch-out batch.jsonl --force
! cmp -s batch.jsonl batch.before && [ "$(wc -l <batch.jsonl)" -eq 6 ] && ok || fail "csr-gen --force did not replace batch.jsonl"
# the key type is --type, as for keys generate; --key is the old spelling, with a note
rc=0; "$CF" csr-gen --count 1 --type ec-p384 --out-dir t384 --batch-out t384.jsonl >t.out 2>t.err || rc=$?
[ $rc -eq 0 ] && [ ! -s t.err ] && openssl req -in t384/nf-000001.csr.pem -noout -text | grep -q "NIST CURVE: P-384" && ok \
  || fail "csr-gen --type ec-p384: exit $rc; $(cat t.err)"
rc=0; "$CF" csr-gen --count 1 --key ed25519 --out-dir ted --batch-out ted.jsonl >t.out 2>t.err || rc=$?
[ $rc -eq 0 ] && [ "$(cat t.err)" = "certforge: note: csr-gen --key is deprecated, use --type" ] &&
  openssl req -in ted/nf-000001.csr.pem -noout -text | grep -q "ED25519" && ok \
  || fail "csr-gen --key (deprecated): exit $rc; $(cat t.err)"
expect_usage "csr-gen --type bogus" "csr-gen: --type must be ec-p256, ec-p384, rsa-2048, rsa-3072 or ed25519, not 'bogus'" \
  "$CF" csr-gen --count 1 --type bogus --out-dir tb --batch-out tb.jsonl
expect_usage "csr-gen --type (no value)" "option '--type' is unknown or needs an argument" "$CF" csr-gen --count 1 --out-dir tb --batch-out tb.jsonl --type
expect_usage "csr-gen --count x" "csr-gen: --count must be 1-1000000, not 'x'" "$CF" csr-gen --count x --type ec-p256 --out-dir tb --batch-out tb.jsonl
[ ! -e tb.jsonl ] && ok || fail "a refused csr-gen wrote tb.jsonl"

# --- certforged (max_connections 2, for the BUSY cases below) --------------------------------
SOCK=$D/cf.sock
cat > certforged.conf <<CONF
tokens = ( { name = "ca"; uri = "$CERTFORGE_TOKEN"; } );
keys = ( { name = "nf-ca"; token = "ca"; uri = "pkcs11:object=nf-ca"; } );
issuers = ( { name = "nf-ca"; key = "nf-ca"; certificate = "nf-ca.pem"; chain = "root.pem"; } );
profiles = ( { name = "nf"; type = "nf"; issuer = "nf-ca";
    subject = { C = "FI"; O = "5gc.mnc001.mcc001.3gppnetwork.org"; };
    validity = { default = "90d"; max = "365d"; }; eku = ["serverAuth", "clientAuth"];
    crl_dp = "http://crl.5gc.mnc001.mcc001.3gppnetwork.org/nf-ca.crl"; } );
pipeline = { workers = 1; queue = 256; batch = 16; };
log = { level = "info"; };
server = { socket = "$SOCK"; socket_mode = "0600"; max_connections = 2; };
grants = ( { uid = $(id -u); profiles = ["nf"]; ops = ["issue", "status", "revoke", "crl"]; } );
ledger = { backend = "sqlite"; path = "ledger.db"; };
crl = { dir = "crl"; interval = "1h"; validity = "1d"; revoke_delay = "1s"; };
CONF
mkdir crl
: >certforged.log
"$CFD" --config certforged.conf >certforged.log 2>&1 &
DPID=$!
ready=0
for _ in $(seq 1 300); do
  grep -q "certforged: ready socket=$SOCK" certforged.log && { ready=1; break; }
  kill -0 "$DPID" 2>/dev/null || break
  sleep 0.1
done
[ $ready -eq 1 ] || { echo "FAIL: certforged not ready within 30 s:" >&2; cat certforged.log >&2; exit 1; }
export CERTFORGE_SOCKET=$SOCK

line1=$(sed -n 1p batch.jsonl)
csr1=$(jq -r .csr <<<"$line1") id1=$(jq -r .nf_instance_id <<<"$line1") dns1=$(jq -r '.dns[0]' <<<"$line1")
issue1() { "$CF" issue --csr "$csr1" --profile nf --nf-instance-id "$id1" --dns "$dns1" --nf-type AMF "$@"; }

# --- issue --out ---------------------------------------------------------------------------------
plant iss
issued_before=$("$CF" status --json | jq -r '.issued')
refuses_all "issue --out" iss issue1 --out @OUT@
issued_after=$("$CF" status --json | jq -r '.issued')
[ -n "$issued_before" ] && [ "$issued_before" = "$issued_after" ] && ok \
  || fail "a refused --out still asked for a certificate ($issued_before -> $issued_after)"
printf 'old\n' > amf.pem
exists "issue --out over a regular file" amf.pem issue1 --out amf.pem
[ "$(cat amf.pem)" = old ] && [ "$("$CF" status --json | jq -r '.issued')" = "$issued_after" ] && ok \
  || fail "a refused issue --out changed amf.pem or asked for a certificate"
check "issue --out --force replaces a regular file" issue1 --out amf.pem --force
openssl x509 -in amf.pem -noout 2>/dev/null && ok || fail "amf.pem is not a certificate"
[ "$(stat -c %a amf.pem)" = "$(printf '%o' $((0644 & ~0$(umask))))" ] && ok || fail "amf.pem mode $(stat -c %a amf.pem)"
# the old writer's temporary name (PATH.tmpPID) for the next PIDs, planted
last=$(cat /proc/sys/kernel/ns_last_pid 2>/dev/null || echo 1000)
for i in $(seq 1 40); do ln -s "$D/victim" "amf2.pem.tmp$((last + i))"; done
check "issue --out with planted temporary names" issue1 --out amf2.pem
[ "$(cat victim)" = precious ] && openssl x509 -in amf2.pem -noout 2>/dev/null && ok \
  || fail "issue --out followed a planted temporary name"
[ "$(find . -maxdepth 1 -name 'amf2.pem.tmp*' -type l | wc -l)" -eq 40 ] && ok || fail "planted names removed or replaced"
# a batch line whose "out" is a symlink: that line fails as OUTPUT_ERROR, the others are written
mkdir bcerts && ln -s "$D/victim" bcerts/nf-000003.pem
rc=0
"$CF" issue --batch batch.jsonl --out-dir bcerts --profile nf >bsum.txt 2>berr.txt || rc=$?
[ $rc -eq 1 ] && grep -q "line 3: OUTPUT_ERROR: .*symbolic link" berr.txt && grep -qx "failed 1: OUTPUT_ERROR 1" bsum.txt && ok \
  || fail "batch into a symlinked name: exit $rc; $(cat berr.txt bsum.txt)"
[ "$(cat victim)" = precious ] && [ -L bcerts/nf-000003.pem ] && [ "$(ls bcerts | wc -l)" -eq 6 ] && ok \
  || fail "batch: the symlink was followed or replaced: $(ls -la bcerts)"
# the batch again into the same folder: each existing file is its line's
# failure (FILE_EXISTS, not sent), counted in the summary
cp bcerts/nf-000001.pem b1.before
issued_before=$("$CF" status --json | jq -r '.issued')
rc=0
"$CF" issue --batch batch.jsonl --out-dir bcerts --profile nf >bsum.txt 2>berr.txt || rc=$?
[ $rc -eq 1 ] && grep -qx "certforge: issue: line 1: FILE_EXISTS: bcerts/nf-000001.pem exists; use --force to replace it" berr.txt &&
  [ "$(grep -c FILE_EXISTS berr.txt)" -eq 5 ] && grep -qx "failed 6: OUTPUT_ERROR 1, FILE_EXISTS 5" bsum.txt &&
  grep -q "^issued 0 of 6 " bsum.txt && ok || fail "batch over existing files: exit $rc; $(cat berr.txt bsum.txt)"
cmp -s bcerts/nf-000001.pem b1.before && [ "$("$CF" status --json | jq -r '.issued')" = "$issued_before" ] && ok \
  || fail "batch over existing files replaced one, or asked certforged"
rc=0
"$CF" issue --batch batch.jsonl --out-dir bcerts --profile nf --force >bsum.txt 2>berr.txt || rc=$?
[ $rc -eq 1 ] && grep -q "^issued 5 of 6 " bsum.txt && grep -qx "failed 1: OUTPUT_ERROR 1" bsum.txt && ok \
  || fail "batch --force: exit $rc; $(cat berr.txt bsum.txt)"
! cmp -s bcerts/nf-000001.pem b1.before && [ "$(cat victim)" = precious ] && ok || fail "batch --force did not replace nf-000001.pem"

# --- crl --out --------------------------------------------------------------------------------
plant crl
refuses_all "crl --out" crl "$CF" crl --issuer nf-ca --new --out @OUT@ --der
check "crl --out FILE" "$CF" crl --issuer nf-ca --new --out nf-ca.crl --der
openssl crl -inform DER -in nf-ca.crl -noout 2>/dev/null && ok || fail "nf-ca.crl is not a CRL"
exists "crl --out over a regular file" nf-ca.crl "$CF" crl --issuer nf-ca --new --out nf-ca.crl --der
check "crl --out --force" "$CF" crl --issuer nf-ca --new --out nf-ca.crl --der --force
openssl crl -inform DER -in nf-ca.crl -noout 2>/dev/null && ok || fail "nf-ca.crl (--force) is not a CRL"

# --- ledger export --out ------------------------------------------------------------------------
plant led
refuses_all "ledger export --out" led "$CF" ledger export --format jsonl --config certforged.conf --out @OUT@
check "ledger export --out FILE" "$CF" ledger export --format jsonl --config certforged.conf --out export.jsonl
[ "$(wc -l <export.jsonl)" -ge 7 ] && [ "$(stat -c %a export.jsonl)" = 600 ] && ok \
  || fail "export.jsonl: $(wc -l <export.jsonl) lines, mode $(stat -c %a export.jsonl)"
exists "ledger export --out over a regular file" export.jsonl "$CF" ledger export --format jsonl --config certforged.conf --out export.jsonl
check "ledger export --out --force" "$CF" ledger export --format jsonl --config certforged.conf --out export.jsonl --force
expect_usage "ledger list --force" "ledger list: --force is for export --out" "$CF" ledger list --config certforged.conf --force

# --- BUSY: certforged at max_connections --------------------------------------------------------
# a holder takes both connections for 3 s; issue is refused (BUSY frame),
# says so, and connects again until it is served
hold() {
  local opened
  opened=$(grep -c "event=conn_open " certforged.log)
  timeout -s KILL 30 python3 - "$SOCK" <<'PY' &
import socket, sys, time
s = [socket.socket(socket.AF_UNIX), socket.socket(socket.AF_UNIX)]
for c in s:
    c.connect(sys.argv[1])
time.sleep(3)
PY
  HPID=$!
  local n=0
  for _ in $(seq 1 100); do
    n=$(($(grep -c "event=conn_open " certforged.log) - opened))
    [ "$n" -ge 2 ] && return 0
    sleep 0.1
  done
  fail "the holder's two connections were not seen within 10 s ($n)"
}
hold
rc=0
issue1 --out busy.pem >/dev/null 2>busy.err || rc=$?
[ $rc -eq 0 ] && openssl x509 -in busy.pem -noout 2>/dev/null && ok || fail "issue at max_connections: exit $rc; $(cat busy.err)"
grep -q "^certforge: note: issue: certforged at $SOCK answered BUSY (too many connections" busy.err && ok \
  || fail "issue did not report the refusal as BUSY: $(cat busy.err)"
! grep -q "ignoring an answer\|NO_ANSWER" busy.err && ok || fail "the refusal was misreported: $(cat busy.err)"
# (one uid holds them all: with the fair share it is refused as over its own share)
grep -qE "event=conn_refused .*reason=(peer-)?max-connections" certforged.log && ok || fail "certforged logged no conn_refused"
wait "$HPID" 2>/dev/null; HPID=
hold
rc=0
"$CF" issue --batch batch.jsonl --out-dir busy-certs --profile nf --no-progress >busy-sum.txt 2>busy-b.err || rc=$?
[ $rc -eq 0 ] && grep -q "^issued 6 of 6 " busy-sum.txt && ok || fail "batch at max_connections: exit $rc; $(cat busy-sum.txt busy-b.err)"
grep -q "answered BUSY (too many connections" busy-b.err && ok || fail "batch did not report the refusal: $(cat busy-b.err)"
wait "$HPID" 2>/dev/null; HPID=

stop_pid "$DPID"; DPID=
echo "test_cli_files: $checks checks, $fails failed"
# A run that skipped a section must not pass: this many checks are made
# when all goes well (a device node adds 6 where mknod is allowed).
min_checks=95
[ "$checks" -ge "$min_checks" ] || echo "FAIL: only $checks checks made, want at least $min_checks" >&2
[ "$fails" -eq 0 ] && [ "$checks" -ge "$min_checks" ]
