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

# A sanitizer build of the provider needs its runtime in the (uninstrumented)
# openssl binary that loads it: preload it there, and only there.
SANLIBS=$(ldd "$PDIR/certforge.so" 2>/dev/null | awk '/lib(asan|ubsan|tsan)\.so/ {print $3}' | tr '\n' ' ')
if [ -n "$SANLIBS" ]; then
  openssl() { LD_PRELOAD="$SANLIBS" command openssl "$@"; }
fi

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
with_env() { local kv=$1; shift; export "${kv?}"; "$@"; local rc=$?; export CERTFORGE_SOCKET=$SOCK; return $rc; }
# The order docs/provider.md recommends: OpenSSL 3.0 takes an algorithm
# from the first provider that has one, so with default first, key
# generation and software keys never reach certforge.
PD=(-provider-path "$PDIR" -provider default -provider certforge)

# only the entry point is exported
if command -v nm >/dev/null; then
  syms=$(nm -D --defined-only "$PDIR/certforge.so" | awk '$2 ~ /^[TDBRW]$/ {print $3}' | sort -u | tr '\n' ' ')
  [ "$syms" = "OSSL_provider_init " ] && ok || fail "certforge.so exports more than OSSL_provider_init: $syms"
fi

# --- keys and CA certificates (the CLI talks to the token; no daemon yet) -----
KEYS="p256:ec-p256 p384:ec-p384 rsa:rsa-2048 ed:ed25519"
"$CF" keys generate --type ec-p256 --label nogrant >/dev/null || { echo "FAIL: keys generate nogrant"; exit 1; }
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
  { name = "ed"; token = "ca"; uri = "pkcs11:object=ed"; sessions = 2; },
  { name = "nogrant"; token = "ca"; uri = "pkcs11:object=nogrant"; sessions = 1; }
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
write_conf "( { uid = $UID_; ops = [\"keys\", \"sign\"]; keys = [\"p256\", \"p384\", \"rsa\", \"ed\"]; } )"
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
check "socket= wins over CERTFORGE_SOCKET" with_env CERTFORGE_SOCKET=/nonexistent.sock \
  openssl pkey "${P[@]}" -in "certforge:key=p256;socket=$SOCK" -pubout -out sock.pub
check "pkey -text_pub" openssl pkey "${P[@]}" -in certforge:key=rsa -text_pub -noout
grep -q "Public-Key: (2048 bit)" "$D/last" && ok || fail "pkey -text_pub rsa: $(cat "$D/last")"

refuse "no key 'nope' on $SOCK (certforged serves: p256, p384, rsa, ed, nogrant)" \
  openssl pkey "${P[@]}" -in certforge:key=nope -pubout
refuse "unknown attribute 'colour'" openssl pkey "${P[@]}" -in "certforge:key=p256;colour=blue" -pubout
refuse "attribute 'key' given twice" openssl pkey "${P[@]}" -in "certforge:key=p256;key=rsa" -pubout
refuse "attribute 'key' is empty" openssl pkey "${P[@]}" -in "certforge:key=" -pubout
refuse "certforged is not reachable" openssl pkey "${P[@]}" -in "certforge:key=p256;socket=$D/nope.sock" -pubout
grep -qF "connect $D/nope.sock" "$D/err" && ok || fail "not-reachable message lacks the socket path: $(cat "$D/err")"


# --- signing with each key type -------------------------------------------------
# Subject keys and CSRs are made without the provider (plain software keys).
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout leaf.key \
  -subj "/CN=leaf.example" -out leaf.csr 2>/dev/null || { echo "FAIL: openssl req -new"; exit 1; }
printf 'certforge provider test data\n%.0s' $(seq 1 200) > data
sigalg() { openssl x509 -in "$1" -noout -text | grep -m1 'Signature Algorithm' | sed 's/.*: //'; }
cacnf() { # key: a minimal `openssl ca` setup in ca-KEY/
  mkdir -p "ca-$1/newcerts"; : > "ca-$1/index.txt"; echo 1000 > "ca-$1/crlnumber"
  cat > "ca-$1/ca.cnf" <<CNF
[ ca ]
default_ca = CA_default
[ CA_default ]
dir = $D/ca-$1
database = \$dir/index.txt
new_certs_dir = \$dir/newcerts
serial = \$dir/serial
crlnumber = \$dir/crlnumber
rand_serial = yes
default_md = default
default_days = 1
default_crl_days = 1
policy = policy_any
unique_subject = no
[ policy_any ]
commonName = supplied
CNF
}
declare -A WANT_ALG=([p256]=ecdsa-with-SHA256 [p384]=ecdsa-with-SHA384 [rsa]=sha256WithRSAEncryption [ed]=ED25519)
for kt in $KEYS; do
  IFS=: read -r k t <<<"$kt"
  U="certforge:key=$k"
  md=(-sha256); [ "$k" = p384 ] && md=(-sha384); [ "$k" = ed ] && md=()
  # x509 -req -CAkey: signs a CSR; the CA certificate and key must match
  check "x509 -req -CAkey $U" openssl x509 -req "${P[@]}" -in leaf.csr -CA "$k-ca.pem" -CAkey "$U" \
    -set_serial 0x1001 -days 1 "${md[@]}" -out "leaf-$k.pem"
  check "verify leaf-$k.pem" openssl verify -x509_strict -CAfile "$k-ca.pem" "leaf-$k.pem"
  [ "$(sigalg "leaf-$k.pem")" = "${WANT_ALG[$k]}" ] && ok || fail "leaf-$k.pem: $(sigalg "leaf-$k.pem"), want ${WANT_ALG[$k]}"
  # req -x509 -key: a self-signed certificate for the engine key
  check "req -x509 -key $U" openssl req -x509 -new "${P[@]}" -key "$U" -subj "/CN=self $k" -days 1 \
    "${md[@]}" -out "self-$k.pem"
  check "verify self-$k.pem" openssl verify -CAfile "self-$k.pem" "self-$k.pem"
  check "self-$k.pem carries the engine key" diff "$k.pub" <(openssl x509 -in "self-$k.pem" -noout -pubkey)
  # x509 -signkey: re-sign an existing certificate
  check "x509 -signkey $U" openssl x509 "${P[@]}" -in "self-$k.pem" -signkey "$U" "${md[@]}" -days 2 -out "resigned-$k.pem"
  check "verify resigned-$k.pem" openssl verify -CAfile "resigned-$k.pem" "resigned-$k.pem"
  # dgst -sign, then -verify with the public key exported by pkey -pubout
  if [ "$k" = ed ]; then # openssl 3.0's dgst refuses Ed25519 keys ("Key type not supported")
    check "pkeyutl -sign -rawin $U" openssl pkeyutl -sign "${P[@]}" -inkey "$U" -rawin -in data -out "data-$k.sig"
    check "pkeyutl -verify ed25519" openssl pkeyutl -verify -pubin -inkey "$k.pub" -rawin -in data -sigfile "data-$k.sig"
  else
    check "dgst -sign $U" openssl dgst "${md[@]}" "${P[@]}" -sign "$U" -out "data-$k.sig" data
    check "dgst -verify $k" openssl dgst "${md[@]}" -verify "$k.pub" -signature "data-$k.sig" data
  fi
  # ca -keyfile, ca -gencrl
  cacnf "$k"
  check "ca -keyfile $U" openssl ca -batch "${P[@]}" -config "ca-$k/ca.cnf" -cert "$k-ca.pem" \
    -keyfile "$U" -in leaf.csr -out "ca-leaf-$k.pem" -notext
  check "verify ca-leaf-$k.pem" openssl verify -CAfile "$k-ca.pem" "ca-leaf-$k.pem"
  check "ca -gencrl $U" openssl ca -gencrl "${P[@]}" -config "ca-$k/ca.cnf" -cert "$k-ca.pem" \
    -keyfile "$U" -out "crl-$k.pem"
  check "crl verifies with $k-ca.pem" openssl crl -in "crl-$k.pem" -CAfile "$k-ca.pem" -noout
  grep -q "verify OK" "$D/last" && ok || fail "openssl crl -CAfile: $(cat "$D/last")"
done

# --- RSA-PSS: salt length = digest length, MGF1 with the same hash --------------------
PSS=(-sigopt rsa_padding_mode:pss)
check "x509 -req RSA-PSS" openssl x509 -req "${P[@]}" -in leaf.csr -CA rsa-ca.pem -CAkey certforge:key=rsa \
  -set_serial 0x1002 -days 1 -sha256 "${PSS[@]}" -out leaf-pss.pem
check "verify leaf-pss.pem" openssl verify -CAfile rsa-ca.pem leaf-pss.pem
openssl x509 -in leaf-pss.pem -noout -text > pss.txt
grep -q "Signature Algorithm: rsassaPss" pss.txt && grep -q "Salt Length: 0x20" pss.txt \
  && grep -q "Mask Algorithm: mgf1 with sha256" pss.txt && ok || fail "leaf-pss.pem PSS parameters: $(grep -A8 -m1 rsassaPss pss.txt)"
check "req -x509 RSA-PSS SHA-384" openssl req -x509 -new "${P[@]}" -key certforge:key=rsa -subj "/CN=pss" -days 1 \
  -sha384 "${PSS[@]}" -out self-pss.pem
check "verify self-pss.pem" openssl verify -CAfile self-pss.pem self-pss.pem
check "dgst -sign RSA-PSS SHA-512" openssl dgst -sha512 "${P[@]}" -sign certforge:key=rsa "${PSS[@]}" -out data-pss.sig data
check "dgst -verify RSA-PSS" openssl dgst -sha512 -verify rsa.pub "${PSS[@]}" -sigopt rsa_pss_saltlen:64 -signature data-pss.sig data
refuse "PSS salt length 'max'" openssl dgst -sha256 "${P[@]}" -sign certforge:key=rsa "${PSS[@]}" \
  -sigopt rsa_pss_saltlen:max -out x.sig data
refuse "PSS salt length 20" openssl dgst -sha256 "${P[@]}" -sign certforge:key=rsa "${PSS[@]}" \
  -sigopt rsa_pss_saltlen:20 -out x.sig data
refuse "certforged signs SHA256, SHA384 or SHA512 digests only" \
  openssl dgst -sha1 "${P[@]}" -sign certforge:key=p256 -out x.sig data

# --- provider order ------------------------------------------------------------------
check "default first: x509 -req" openssl x509 -req "${PD[@]}" -in leaf.csr -CA p256-ca.pem \
  -CAkey certforge:key=p256 -set_serial 0x1003 -days 1 -out leaf-pd.pem
check "verify leaf-pd.pem" openssl verify -CAfile p256-ca.pem leaf-pd.pem
check "default first: genpkey still works" openssl genpkey "${PD[@]}" -algorithm EC \
  -pkeyopt ec_paramgen_curve:P-256 -out gen.key
refuse "operation not supported for this keytype" openssl genpkey "${P[@]}" -algorithm EC \
  -pkeyopt ec_paramgen_curve:P-256 -out gen2.key

# --- refusals ---------------------------------------------------------------------------
refuse "certforged refused: this peer is not granted sign on the key" \
  openssl dgst -sha256 "${P[@]}" -sign certforge:key=nogrant -out x.sig data
grep -qF "keys = [\"nogrant\"]" "$D/err" && ok || fail "the unauthorized message does not show the grant to add: $(cat "$D/err")"
refuse "no key 'nope'" openssl x509 -req "${P[@]}" -in leaf.csr -CA p256-ca.pem -CAkey certforge:key=nope -out x.pem
refuse "CA certificate and CA private key do not match" \
  openssl x509 -req "${P[@]}" -in leaf.csr -CA p256-ca.pem -CAkey certforge:key=p384 -out x.pem
stop_daemon
# every signature is in the ledger: the dgst digest of `data` among them
if command -v sqlite3 >/dev/null; then
  want=$(openssl dgst -sha256 -r data | cut -c1-64 | tr a-f A-F)
  n=$(sqlite3 ledger.db "SELECT count(*) FROM sign_records WHERE key = 'p256' AND hex(digest) = '$want' AND requester = 'openssl-provider' AND requester_uid = $UID_")
  [ "$n" -ge 1 ] && ok || fail "ledger: no sign_records row for p256 with the digest of data (got $n)"
  n=$(sqlite3 ledger.db "SELECT count(*) FROM sign_records WHERE key = 'nogrant'")
  [ "$n" -eq 0 ] && ok || fail "ledger: a refused SIGN was recorded"
  # the same through `certforge ledger signs`: one line per record, the
  # key's own only with --key, the digest of `data` with the requester
  total=$(sqlite3 ledger.db "SELECT count(*) FROM sign_records")
  np=$(sqlite3 ledger.db "SELECT count(*) FROM sign_records WHERE key = 'p256'")
  "$CF" ledger signs --db ledger.db >signs.txt 2>signs.err && ok || fail "ledger signs: $(cat signs.err)"
  [ "$(wc -l <signs.txt)" -eq "$total" ] && grep -q "^$total signatures$" signs.err && ok \
    || fail "ledger signs: $(wc -l <signs.txt) lines for $total records ($(cat signs.err))"
  "$CF" ledger signs --db ledger.db --key p256 >signs-p256.txt 2>/dev/null
  [ "$(wc -l <signs-p256.txt)" -eq "$np" ] && [ "$(awk '{print $2}' signs-p256.txt | sort -u)" = p256 ] && ok \
    || fail "ledger signs --key p256: $(wc -l <signs-p256.txt) lines, want $np"
  grep -qE "^[0-9T:.-]+Z p256 +ecdsa-sha256 +uid=$UID_/openssl-provider +$(tr A-F a-f <<<"$want")$" signs-p256.txt && ok \
    || fail "ledger signs: no line with data's digest: $(head -n 3 signs-p256.txt)"
  "$CF" ledger signs --db ledger.db --limit 2 >signs-2.txt 2>/dev/null
  [ "$(wc -l <signs-2.txt)" -eq 2 ] && ok || fail "ledger signs --limit 2: $(wc -l <signs-2.txt) lines"
  # ledger list --sign is ledger signs
  "$CF" ledger list --sign --db ledger.db --key p256 >signs-list.txt 2>/dev/null
  cmp -s signs-list.txt signs-p256.txt && ok || fail "ledger list --sign --key p256 differs from ledger signs --key p256"
  "$CF" ledger show 01 --sign --db ledger.db >/dev/null 2>signs-show.err; rc=$?
  [ $rc -eq 2 ] && grep -q "ledger show: --sign is for list" signs-show.err && ok \
    || fail "ledger show --sign: exit $rc: $(cat signs-show.err)"
  rc=0; "$CF" ledger signs --db ledger.db --revoked >/dev/null 2>signs.err || rc=$?
  [ $rc -eq 2 ] && grep -q "are for certificates" signs.err && ok || fail "ledger signs --revoked: exit $rc: $(cat signs.err)"
  rc=0; "$CF" ledger list --db ledger.db --key p256 >/dev/null 2>signs.err || rc=$?
  [ $rc -eq 2 ] && grep -q "\-\-key is for signs" signs.err && ok || fail "ledger list --key: exit $rc: $(cat signs.err)"
fi
refuse "certforged is not reachable" openssl dgst -sha256 "${P[@]}" -sign certforge:key=p256 -out x.sig data
grep -qF "connect $SOCK" "$D/err" && ok || fail "daemon-down message lacks the socket: $(cat "$D/err")"

[ -n "${CF_KEEP:-}" ] && { cat "$D/err"; }
echo "test_provider_cli: $checks checks, $fails failed"
# A run that checked less than it should (a section skipped, a loop over
# nothing) must not pass: this many checks are made when all goes well.
min_checks=108
command -v nm >/dev/null || min_checks=$((min_checks - 1))
command -v sqlite3 >/dev/null || min_checks=$((min_checks - 9))
[ "$checks" -ge "$min_checks" ] || echo "FAIL: only $checks checks made, want at least $min_checks" >&2
[ "$fails" -eq 0 ] && [ "$checks" -ge "$min_checks" ]
