#!/usr/bin/env bash
# certforge keys / ca against a throwaway SoftHSM2 token: every key type,
# JSON inventory, two CA ceremonies checked with openssl, every bad-input
# case with its message and exit status, nothing half-created.
#
#   test_cli_admin.sh /path/to/certforge
set -uo pipefail

CF=${1:?usage: test_cli_admin.sh /path/to/certforge}
MOD=${CF_SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
for tool in softhsm2-util pkcs11-tool jq openssl; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed"; exit 77; }
done
[ -r "$MOD" ] || { echo "SKIP: no SoftHSM module at $MOD"; exit 77; }

D=$(mktemp -d "${TMPDIR:-/tmp}/cf-cli-XXXXXX")
trap 'rm -rf "$D"' EXIT
cd "$D"
mkdir tokens
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n' "$D" > softhsm2.conf
export SOFTHSM2_CONF=$D/softhsm2.conf
softhsm2-util --init-token --free --label cli-test --so-pin 12345678 --pin 1234 >/dev/null
softhsm2-util --init-token --free --label other --so-pin 12345678 --pin 5678 >/dev/null
(umask 077; printf '1234\n' > pin; printf '9999\n' > wrong-pin)
unset CERTFORGE_PIN CERTFORGE_TOKEN
TOK="pkcs11:token=cli-test?module-path=$MOD&pin-source=file:$D/pin"

fails=0 checks=0
ok()   { checks=$((checks + 1)); }
fail() { checks=$((checks + 1)); fails=$((fails + 1)); echo "FAIL: $*" >&2; }
check() { # description, then a command that must succeed
  local what=$1; shift
  if "$@"; then ok; else fail "$what"; fi
}

# expect STATUS SUBSTRING cmd... : exit status, one stderr line containing
# SUBSTRING, prefixed "certforge: ".
expect() {
  local want=$1 needle=$2; shift 2
  local rc=0
  "$@" >"$D/out" 2>"$D/err" || rc=$?
  local lines
  lines=$(wc -l <"$D/err")
  if [ "$rc" -ne "$want" ]; then
    fail "'$*': exit $rc, want $want; stderr: $(cat "$D/err")"
  elif ! grep -qF -- "$needle" "$D/err"; then
    fail "'$*': stderr lacks '$needle': $(cat "$D/err")"
  elif [ "$lines" -ne 1 ] || ! grep -q '^certforge: ' "$D/err"; then
    fail "'$*': stderr is not one 'certforge: ' line: $(cat "$D/err")"
  else
    ok
  fi
}

keys_json() { "$CF" keys list --token "$TOK" --json; }
key_snapshot() { keys_json | jq -S '[.keys[] | {label: .label, id: .id, type: .type, bits: .bits}] | sort_by(.label)'; }

# --- generate every key type ------------------------------------------------
declare -A URI
gen() { # label type [id]
  local out
  if out=$("$CF" keys generate --token "$TOK" --type "$2" --label "$1" ${3:+--id "$3"}); then
    URI[$1]=$out
    [[ $out == pkcs11:*";object="*";type=private" ]] && ok || fail "generate $1: odd URI $out"
  else
    fail "generate $1 ($2)"
  fi
}
gen root256 ec-p256
gen int384 ec-p384
gen rootrsa rsa-2048 0a01
gen rsa3072 rsa-3072
gen rsa4096 rsa-4096
gen inted ed25519
gen rooted ed25519
gen root384 ec-p384
gen 'odd "label" \ here' ec-p256

# --- inventory --------------------------------------------------------------
J=$(keys_json) || fail "keys list --json"
check "keys list --json parses" jq -e . >/dev/null <<<"$J"
check "token listed" jq -e '.tokens[] | select(.label=="cli-test") | .initialized and (.flags | index("token-initialized")) and (.serial | length > 0)' >/dev/null <<<"$J"
check "other token listed" jq -e '[.tokens[].label] | index("other")' >/dev/null <<<"$J"
check "keys listed for cli-test" jq -e '.token == "cli-test" and (.keys | length == 9)' >/dev/null <<<"$J"
for spec in root256:ec-p256:256 int384:ec-p384:384 rootrsa:rsa-2048:2048 rsa3072:rsa-3072:3072 \
            rsa4096:rsa-4096:4096 inted:ed25519:256 rooted:ed25519:256 root384:ec-p384:384; do
  IFS=: read -r l ty bits <<<"$spec"
  check "key $l attributes" jq -e --arg l "$l" --arg t "$ty" --argjson b "$bits" --arg u "${URI[$l]}" '
    .keys[] | select(.label == $l)
    | .type == $t and .bits == $b and .sensitive == true and .extractable == false
      and .always_sensitive == true and .never_extractable == true and .local == true
      and .sign == true and .decrypt == false and .unwrap == false and .derive == false
      and .public_key == true and .certificate == false and .uri == $u
      and (.id | test("^[0-9a-f]+$"))' >/dev/null <<<"$J"
done
check "random ids are 8 bytes" jq -e '[.keys[] | select(.label != "rootrsa") | .id | length == 16] | all' >/dev/null <<<"$J"
check "--id honoured" jq -e '.keys[] | select(.label == "rootrsa") | .id == "0a01"' >/dev/null <<<"$J"
check "JSON escaping round-trips" jq -e '.keys[] | select(.label == "odd \"label\" \\ here")' >/dev/null <<<"$J"
check "human list shows keys" bash -c '"$0" keys list --token "$1" | grep -E "^rsa4096 +[0-9a-f]+ +rsa-4096 +yes +no +sign"' "$CF" "$TOK"
check "keys list without PIN lists tokens only" bash -c '"$0" keys list --token "pkcs11:token=cli-test?module-path=$1" --json 2>/dev/null | jq -e ".keys == null and (.tokens | length >= 2)" >/dev/null' "$CF" "$MOD"
check "keys show --json" bash -c '"$0" keys show --token "$1" "pkcs11:object=inted" --json | jq -e ".label == \"inted\" and .type == \"ed25519\" and .sensitive and (.extractable | not)" >/dev/null' "$CF" "$TOK"
# CERTFORGE_TOKEN is the default for --token; a printed key URI works as is
check "CERTFORGE_TOKEN + printed URI" env CERTFORGE_TOKEN="$TOK" "$CF" keys show "${URI[root384]}" >/dev/null

# --- ceremonies -------------------------------------------------------------
export CERTFORGE_TOKEN=$TOK
ceremony() { # root-label int-label tag [extra root args]
  local r=$1 i=$2 tag=$3; shift 3
  "$CF" ca init-root --key "pkcs11:object=$r" --subject "/C=FI/O=Example/CN=$tag Root" "$@" \
    --out "$tag-root.pem" >/dev/null &&
  "$CF" ca init-intermediate --key "pkcs11:object=$i" --issuer-key "pkcs11:object=$r" \
    --issuer-cert "$tag-root.pem" --subject "/C=FI/O=Example/CN=$tag Issuing" --out "$tag-int.pem" >/dev/null
}
check "ceremony P-256 root + P-384 intermediate" ceremony root256 int384 ec
check "ceremony RSA root + Ed25519 intermediate" ceremony rootrsa inted rsa --pathlen 1
check "openssl verify ec chain" openssl verify -x509_strict -CAfile ec-root.pem ec-int.pem
check "openssl verify rsa chain" openssl verify -x509_strict -CAfile rsa-root.pem rsa-int.pem
check "ed25519 root (HSM signs with EdDSA)" "$CF" ca init-root --key pkcs11:object=rooted --subject "/CN=Ed Root" --out ed-root.pem
check "openssl verify ed25519 root" openssl verify -x509_strict -CAfile ed-root.pem ed-root.pem
check "p-384 root" "$CF" ca init-root --key pkcs11:object=root384 --subject "/CN=P384 Root" --days 30 --out p384-root.pem
check "openssl verify p-384 root" openssl verify -x509_strict -CAfile p384-root.pem p384-root.pem

sigalg() { openssl x509 -in "$1" -noout -text | grep -m1 'Signature Algorithm' | sed 's/.*: //'; }
check "P-256 root signs ecdsa-with-SHA256" test "$(sigalg ec-root.pem)" = ecdsa-with-SHA256
check "P-256 root signs the intermediate with SHA-256" test "$(sigalg ec-int.pem)" = ecdsa-with-SHA256
check "P-384 key signs ecdsa-with-SHA384" test "$(sigalg p384-root.pem)" = ecdsa-with-SHA384
check "RSA signs sha256WithRSAEncryption" test "$(sigalg rsa-int.pem)" = sha256WithRSAEncryption
check "Ed25519 signs ED25519" test "$(sigalg ed-root.pem)" = ED25519

ext() { openssl x509 -in "$1" -noout -ext "$2" 2>/dev/null; }
ski() { ext "$1" subjectKeyIdentifier | tail -n1 | tr -d ' '; }
aki() { ext "$1" authorityKeyIdentifier | tail -n1 | tr -d ' ' | sed 's/^keyid://'; }
for c in ec-root ec-int rsa-root rsa-int ed-root p384-root; do
  check "$c basicConstraints critical CA" bash -c 'openssl x509 -in "$0" -noout -ext basicConstraints | grep -q "Basic Constraints: critical" && openssl x509 -in "$0" -noout -ext basicConstraints | grep -q "CA:TRUE"' "$c.pem"
  check "$c keyUsage critical keyCertSign+cRLSign" bash -c 'e=$(openssl x509 -in "$0" -noout -ext keyUsage); grep -q "Key Usage: critical" <<<"$e" && grep -qx " *Certificate Sign, CRL Sign" <<<"$e"' "$c.pem"
  check "$c version 3, positive 16-byte serial" bash -c 'openssl x509 -in "$0" -noout -text | grep -q "Version: 3" && s=$(openssl x509 -in "$0" -noout -serial | cut -d= -f2) && [ ${#s} -le 32 ] && { [ ${#s} -lt 32 ] || [ $((16#${s:0:1})) -lt 8 ]; }' "$c.pem"
done
check "root pathlen absent by default" bash -c '! openssl x509 -in ec-root.pem -noout -ext basicConstraints | grep -q pathlen'
check "root --pathlen 1" bash -c 'openssl x509 -in rsa-root.pem -noout -ext basicConstraints | grep -q "CA:TRUE, pathlen:1"'
check "intermediate pathlen 0" bash -c 'openssl x509 -in ec-int.pem -noout -ext basicConstraints | grep -q "CA:TRUE, pathlen:0"'
for tag in ec rsa; do
  check "$tag root AKI = SKI" test "$(aki $tag-root.pem)" = "$(ski $tag-root.pem)"
  check "$tag intermediate AKI = root SKI" test "$(aki $tag-int.pem)" = "$(ski $tag-root.pem)"
  check "$tag SKI non-empty" test -n "$(ski $tag-int.pem)"
done
check "SKI is method 1 (SHA-1 of the subjectPublicKey)" bash -c '
  # P-384: the BIT STRING value is the last 97 octets of the SPKI (uncompressed point)
  want=$(openssl x509 -in ec-int.pem -noout -pubkey | openssl pkey -pubin -outform DER | tail -c 97 | openssl dgst -sha1 -r | cut -c1-40 | tr a-f A-F | sed "s/../&:/g; s/:$//")
  got=$(openssl x509 -in ec-int.pem -noout -ext subjectKeyIdentifier | tail -n1 | tr -d " ")
  [ -n "$want" ] && [ "$want" = "$got" ]'
for pair in ec-root:root256 ec-int:int384 rsa-root:rootrsa rsa-int:inted; do
  IFS=: read -r c k <<<"$pair"
  check "$c public key = keys export-pub $k" bash -c 'diff <(openssl x509 -in "$0.pem" -noout -pubkey) <("$2" keys export-pub "pkcs11:object=$1")' "$c" "$k" "$CF"
done
check "export-pub --out" bash -c '"$0" keys export-pub pkcs11:object=rsa4096 --out rsa4096.pub && openssl pkey -pubin -in rsa4096.pub -noout -text | grep -q "4096 bit"' "$CF"
check "issuer/subject names" bash -c 'openssl x509 -in rsa-int.pem -noout -issuer -subject | tr -d " " | grep -qx "issuer=C=FI,O=Example,CN=rsaRoot" '
check "validity 3650 / 1825 days" bash -c '
  d() { echo $(( ($(date -d "$(openssl x509 -in "$1" -noout -enddate | cut -d= -f2)" +%s) - $(date -d "$(openssl x509 -in "$1" -noout -startdate | cut -d= -f2)" +%s)) / 86400 )); }
  [ "$(d ec-root.pem)" = 3650 ] && [ "$(d ec-int.pem)" = 1825 ] && [ "$(d p384-root.pem)" = 30 ]'

# certificates are stored on the token next to their keys
J=$(keys_json)
check "certificate objects stored" jq -e '[.keys[] | select(.label | test("^(root256|int384|rootrsa|inted|rooted|root384)$")) | .certificate] | length == 6 and all' >/dev/null <<<"$J"
check "others have none" jq -e '[.keys[] | select(.label == "rsa4096" or .label == "rsa3072") | .certificate] | all | not' >/dev/null <<<"$J"
check "ca show --key reads the token's certificate" bash -c '"$0" ca show --key pkcs11:object=int384 --json | jq -e ".subject == \"/C=FI/O=Example/CN=ec Issuing\" and .issuer == \"/C=FI/O=Example/CN=ec Root\" and .ca and .pathlen == 0 and .matches_key == true and .key_type == \"ec-p384\" and (.key_usage == [\"keyCertSign\",\"cRLSign\"])" >/dev/null' "$CF"
# sequentially: two processes logging in to one SoftHSM token at once race
check "ca show: token copy equals the file" bash -c 'a=$("$0" ca show --key pkcs11:object=rootrsa --json) && b=$("$0" ca show --key pkcs11:object=rootrsa --cert rsa-root.pem --json) && [ "$a" = "$b" ]' "$CF"
check "ca show detects a mismatch" bash -c '"$0" ca show --cert ec-int.pem --key pkcs11:object=root256 --json | jq -e ".matches_key == false" >/dev/null' "$CF"
check "ca show --cert alone" bash -c '"$0" ca show --cert ec-root.pem | grep -q "^matches key: *(no --key given)"' "$CF"
check "ca show SKI/AKI match openssl" bash -c 's=$("$0" ca show --cert ec-int.pem --json | jq -r .authority_key_identifier); r=$(openssl x509 -in ec-root.pem -noout -ext subjectKeyIdentifier | tail -n1 | tr -d " :" | tr A-F a-f); [ "$s" = "$r" ]' "$CF"

# intermediate validity is clamped to the issuer's
gen int-clamp ec-p256
expect 0 "validity clamped to the issuer's notAfter" "$CF" ca init-intermediate \
  --key pkcs11:object=int-clamp --issuer-key pkcs11:object=root384 --issuer-cert p384-root.pem \
  --subject "/CN=Clamped" --days 400 --out clamp.pem
check "clamped notAfter = issuer notAfter" test "$(openssl x509 -in clamp.pem -noout -enddate)" = "$(openssl x509 -in p384-root.pem -noout -enddate)"
check "clamped chain verifies" openssl verify -x509_strict -CAfile p384-root.pem clamp.pem

# --- bad input ------------------------------------------------------------------
BEFORE=$(key_snapshot)
expect 1 "token 'cli-test' rejected the PIN" "$CF" keys list --token "pkcs11:token=cli-test?module-path=$MOD&pin-source=file:$D/wrong-pin"
expect 1 "token 'cli-test' rejected the PIN" "$CF" keys generate --token "pkcs11:token=cli-test?module-path=$MOD&pin-source=file:$D/wrong-pin" --type ec-p256 --label nope
expect 1 "cannot load PKCS#11 module /nonexistent/libnope.so" "$CF" keys list --token "pkcs11:token=cli-test?module-path=/nonexistent/libnope.so&pin-source=file:$D/pin"
expect 1 "cannot load PKCS#11 module /nonexistent/libnope.so" "$CF" keys generate --token "pkcs11:token=cli-test?module-path=/nonexistent/libnope.so&pin-source=file:$D/pin" --type ec-p256 --label nope
expect 2 "no token given: use --token URI or set CERTFORGE_TOKEN" env -u CERTFORGE_TOKEN "$CF" keys generate --type ec-p256 --label nope
expect 1 "tokens present: " "$CF" keys list --token "pkcs11:token=nosuch?module-path=$MOD&pin-source=file:$D/pin"
check "unknown token: the message lists cli-test" grep -qF "'cli-test'" "$D/err"
check "unknown token: the message lists other" grep -qF "'other'" "$D/err"
expect 1 "no token matches pkcs11:token=nosuch" "$CF" keys generate --token "pkcs11:token=nosuch?module-path=$MOD&pin-source=file:$D/pin" --type ec-p256 --label nope
expect 1 "key not found: pkcs11:object=nosuch" "$CF" keys show pkcs11:object=nosuch
expect 1 "key not found: pkcs11:object=nosuch" "$CF" keys export-pub pkcs11:object=nosuch
expect 1 "key not found: pkcs11:object=nosuch" "$CF" keys delete pkcs11:object=nosuch --yes
# --key URI, the spelling ca uses; the lone argument stays accepted
expect 1 "key not found: pkcs11:object=nosuch" "$CF" keys show --key pkcs11:object=nosuch
expect 1 "key not found: pkcs11:object=nosuch" "$CF" keys csr --key pkcs11:object=nosuch --subject /CN=x
expect 2 "the key is given twice (--key and 'pkcs11:object=b'); give it once" "$CF" keys show --key pkcs11:object=a pkcs11:object=b
expect 2 "which key? --key URI" "$CF" keys export-pub
expect 2 "option '--key' is unknown or needs an argument" "$CF" keys delete --yes --key
# one after the other: two logins at once on one SoftHSM token folder can
# read each other's half-written token files
"$CF" keys show --key "pkcs11:object=inted" --json >show-key.json 2>&1
"$CF" keys show "pkcs11:object=inted" --json >show-uri.json 2>&1
check "keys show --key = keys show URI" cmp show-key.json show-uri.json
expect 1 "key not found: pkcs11:object=nosuch" "$CF" ca init-root --key pkcs11:object=nosuch --subject /CN=x --out nosuch.pem
expect 1 "PKCS#11 URI attribute 'bogus=1' is not recognised" "$CF" keys list --token "pkcs11:token=cli-test;bogus=1?module-path=$MOD"
expect 1 "malformed PKCS#11 URI at attribute 'id=%zz'" "$CF" keys show "pkcs11:object=x;id=%zz"
expect 1 "query attribute 'colour=blue'" "$CF" keys generate --token "pkcs11:token=cli-test?colour=blue" --type ec-p256 --label nope
expect 1 "pin-value" "$CF" keys list --token "pkcs11:token=cli-test?module-path=$MOD&pin-value=1234"
expect 2 "unsupported key type 'ec-p521' (valid: ec-p256, ec-p384, rsa-2048, rsa-3072, rsa-4096, ed25519)" "$CF" keys generate --type ec-p521 --label nope
expect 2 "--type is required" "$CF" keys generate --label nope
expect 2 "is not 1 to 32 bytes of hex" "$CF" keys generate --type ec-p256 --label nope --id xyz
expect 1 "already has an object labelled 'root256'" "$CF" keys generate --type ec-p256 --label root256
expect 1 "already has an object with id 0a01" "$CF" keys generate --type ec-p256 --label fresh --id 0a01
expect 1 "already has a certificate object" "$CF" ca init-root --key pkcs11:object=root256 --subject /CN=again --out again.pem
check "no --out written on refusal" test ! -e again.pem
expect 1 "ec-root.pem exists; use --force to replace it" "$CF" ca init-root --key pkcs11:object=rsa3072 --subject /CN=x --out ec-root.pem
check "the refusal is the whole message" test "$(cat "$D/err")" = "certforge: ec-root.pem exists; use --force to replace it"
expect 2 "option '--force=1' is unknown or needs an argument" "$CF" ca init-root --key pkcs11:object=rsa3072 --subject /CN=x --out x.pem --force=1
expect 2 "subject part 'CN' is not TYPE=value" "$CF" ca init-root --key pkcs11:object=rsa3072 --subject /CN --out x.pem
expect 2 "subject attribute type 'XX' is unknown" "$CF" ca init-root --key pkcs11:object=rsa3072 --subject /XX=1 --out x.pem
expect 2 "--days 'lots' is not a number" "$CF" ca init-root --key pkcs11:object=rsa3072 --subject /CN=x --days lots --out x.pem
expect 1 "does not belong to --issuer-key" "$CF" ca init-intermediate --key pkcs11:object=rsa3072 --issuer-key pkcs11:object=root256 --issuer-cert rsa-root.pem --subject /CN=x --out x.pem
expect 1 "pathLenConstraint 0: it may not certify another CA" "$CF" ca init-intermediate --key pkcs11:object=rsa3072 --issuer-key pkcs11:object=int384 --issuer-cert ec-int.pem --subject /CN=x --out x.pem
check "no x.pem after refusals" test ! -e x.pem
expect 2 "option '--frobnicate' is unknown" "$CF" keys list --frobnicate
expect 2 "unknown subcommand 'frob'" "$CF" keys frob
expect 2 "unknown command 'frob'" "$CF" frob
check "token unchanged by refused commands" test "$(key_snapshot)" = "$BEFORE"
check "ca init-root on rsa3072 left no certificate" bash -c '"$0" keys show pkcs11:object=rsa3072 --json | jq -e ".certificate == false" >/dev/null' "$CF"

# --- delete -------------------------------------------------------------------------
expect 2 "refusing to destroy pkcs11:object=rootrsa without --yes" "$CF" keys delete pkcs11:object=rootrsa
check "refused delete left the key" test "$(key_snapshot)" = "$BEFORE"
objs() { pkcs11-tool --module "$MOD" --token-label cli-test --login --pin 1234 --list-objects 2>/dev/null; }
check "rootrsa has private, public and certificate objects" bash -c '[ "$(grep -c "ID: *0a01" <<<"$0")" = 3 ]' "$(objs)"
check "delete --yes" bash -c '"$0" keys delete pkcs11:object=rootrsa --yes | grep -q "1 public key object, 1 certificate object"' "$CF"
check "no object with id 0a01 left" bash -c '! grep -q "ID: *0a01" <<<"$0"' "$(objs)"
check "the other keys remain" test "$(key_snapshot)" = "$(jq -S 'map(select(.label != "rootrsa"))' <<<"$BEFORE")"
expect 1 "key not found" "$CF" keys show pkcs11:object=rootrsa

# --- help ---------------------------------------------------------------------------
for c in "" keys ca "keys list" "keys generate" "keys show" "keys export-pub" "keys delete" \
         "ca init-root" "ca init-intermediate" "ca show"; do
  # shellcheck disable=SC2086
  check "certforge $c --help" bash -c 'h=$("$0" $1 --help) && grep -q "EXAMPLES" <<<"$h" && grep -q "EXIT STATUS" <<<"$h"' "$CF" "$c"
done

echo "$checks checks, $fails failed"
# A run that checked less than it should (a section skipped, a loop over
# nothing) must not pass: this many checks are made when all goes well.
min_checks=143
[ "$checks" -ge "$min_checks" ] || echo "FAIL: only $checks checks made, want at least $min_checks" >&2
[ "$fails" -eq 0 ] && [ "$checks" -ge "$min_checks" ]
