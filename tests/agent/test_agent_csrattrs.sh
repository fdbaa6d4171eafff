#!/usr/bin/env bash
# EST /csrattrs (RFC 7030 §4.5) with a real client (curl) and the NF's
# credentials: what the CSR should carry, decoded with openssl asn1parse:
# the extensionRequest with the subjectAltName this credential may ask for
# (bootstrap certificate: the NF's dNSNames; OAM token: the urn:uuid: too;
# the NF's current certificate: that certificate's names) and the key type
# of est.key_type. Unauthenticated: 401 like the other EST operations;
# serverkeygen and fullcmc: 501. Then est.key_type = "rsa-3072".
. "$CF_SOURCE_DIR/tests/agent/agent_env.sh"
agent_env_start
cd "$CF_SOURCE_DIR/tests/agent"

# csrattrs OUT [curl options...]: GET /csrattrs; headers to OUT.h, the
# body to OUT.b64, its DER to OUT.der; prints the HTTP status
csrattrs() {
  local out=$1; shift
  curl -s -o "$T/$out.b64" -D "$T/$out.h" -w '%{http_code}' --max-time 20 --cacert "$T/est-root.pem" "$@" \
    "$EST/csrattrs" || fail "curl $out"
  rm -f "$T/$out.der"
  if [ -s "$T/$out.b64" ]; then tr -d '\r\n' <"$T/$out.b64" | base64 -d >"$T/$out.der" 2>/dev/null || true; fi
}
# the OIDs in order as openssl asn1parse names them, ';'-separated
oids() { openssl asn1parse -inform DER -in "$T/$1.der" | sed -n 's/.*OBJECT *:\(.*\)$/\1/p' | tr '\n' ';'; }
# the subjectAltName's GeneralNames (the OCTET STRING of the extension in
# the extensionRequest): "TAG:TEXT" per name, TAG 2 dNSName, 6 URI
san() {
  local off
  off=$(openssl asn1parse -inform DER -in "$T/$1.der" | sed -nE 's/^ *([0-9]+):.*OCTET STRING.*/\1/p' | head -n 1)
  [ -n "$off" ] || { echo "-"; return; }
  openssl asn1parse -inform DER -in "$T/$1.der" -strparse "$off" -noout -out "$T/$1.san" >/dev/null ||
    fail "the subjectAltName of $1 does not parse"
  openssl asn1parse -inform DER -in "$T/$1.san" |
    sed -nE 's/^ *([0-9]+):d=[0-9]+ +hl=([0-9]+) +l= *([0-9]+) +prim: +cont \[ *([0-9]+) *\].*/\1 \2 \3 \4/p' |
    while read -r o h l t; do printf '%s:%s;' "$t" "$(dd if="$T/$1.san" bs=1 skip=$((o + h)) count="$l" status=none)"; done
}
refused_csrattrs() { # NAME STATUS REASON: the last csrattrs log line
  grep "op=$1 " "$T/agent.log" | tail -n 1 | grep -q "status=$2 .* reason=$3 " ||
    fail "$1: log $(grep "op=$1 " "$T/agent.log" | tail -n 1)"
}
EC256='Extension Request;X509v3 Subject Alternative Name;id-ecPublicKey;prime256v1;ecdsa-with-SHA256;'

nf=$(cat /proc/sys/kernel/random/uuid)
dns=nf-${nf:0:8}.$ZONE
thumb=$(agent_cli nf add --nf-instance-id "$nf" --dns "$dns" | jq -r .account_key_thumbprint)
bootstrap_cert nfc "$nf"

echo "== bootstrap certificate: the dNSNames"
st=$(csrattrs boot --cert "$T/nfc.pem" --key "$T/nfc.key")
[ "$st" = 200 ] || fail "csrattrs with a bootstrap certificate: HTTP $st $(cat "$T/boot.b64")"
grep -qi '^content-type: application/csrattrs' "$T/boot.h" || fail "content type: $(cat "$T/boot.h")"
grep -qi '^content-transfer-encoding: base64' "$T/boot.h" || fail "no Content-Transfer-Encoding: base64"
[ "$(oids boot)" = "$EC256" ] || fail "bootstrap OIDs: $(oids boot)"
[ "$(san boot)" = "2:$dns;" ] || fail "bootstrap SAN: $(san boot)"
refused_csrattrs csrattrs 200 csrattrs

echo "== OAM token: the instance ID and the dNSNames"
tok=$("$CF" acme token issue --token "$OAM_TOKEN" --key "pkcs11:token=oam;object=oam-ta" --cert "$T/oam-ta.pem" \
  --nf-instance-id "$nf" --account-key-thumbprint "$thumb" --ttl 10m --nf-type AMF) || fail "token issue"
st=$(csrattrs tok -H "Authorization: Bearer $tok")
[ "$st" = 200 ] || fail "csrattrs with a token: HTTP $st"
[ "$(oids tok)" = "$EC256" ] || fail "token OIDs: $(oids tok)"
[ "$(san tok)" = "6:urn:uuid:$nf;2:$dns;" ] || fail "token SAN: $(san tok)"

echo "== the NF's current certificate: its names"
$PY - "$nf" "$dns" <<'PY' || fail "enrolment"
import sys
import est_client as e
nf, dns = sys.argv[1], sys.argv[2]
k = e.new_key()
r, _ = e.enroll("simpleenroll", e.csr_der(k, None, [dns]), cert=(e.T + "/nfc.pem", e.T + "/nfc.key"))
e.write_cert(e.p7_certs(r)[0], e.T + "/nfc-op.pem"); e.write_key(k, e.T + "/nfc-op.key")
PY
st=$(csrattrs cur --cert "$T/nfc-op.pem" --key "$T/nfc-op.key")
[ "$st" = 200 ] || fail "csrattrs with the current certificate: HTTP $st"
[ "$(san cur)" = "2:$dns;" ] || fail "current certificate SAN: $(san cur)"
grep "op=csrattrs " "$T/agent.log" | tail -n 1 | grep -q " auth=certificate " || fail "not authenticated by its certificate"

echo "== refusals"
st=$(csrattrs none)
[ "$st" = 401 ] || fail "unauthenticated csrattrs: HTTP $st"
grep -qi '^www-authenticate: Bearer' "$T/none.h" || fail "no WWW-Authenticate"
grep -q "^no credential: present the NF's certificate" "$T/none.b64" || fail "body: $(cat "$T/none.b64")"
refused_csrattrs csrattrs 401 no_credential
# the same as simpleenroll answers without a credential
st2=$(curl -s -o "$T/none2" -w '%{http_code}' --max-time 20 --cacert "$T/est-root.pem" -H 'Content-Type: application/pkcs10' \
  --data-binary @/dev/null "$EST/simpleenroll")
[ "$st2" = 401 ] && cmp -s "$T/none.b64" "$T/none2" || fail "simpleenroll without credential: $st2 $(cat "$T/none2")"
bootstrap_cert rogue "$nf" rogue
st=$(csrattrs rogue --cert "$T/rogue.pem" --key "$T/rogue.key")
[ "$st" = 401 ] && grep -q "does not chain to a bootstrap trust anchor" "$T/rogue.b64" || fail "rogue: $st $(cat "$T/rogue.b64")"
nf2=$(cat /proc/sys/kernel/random/uuid)
bootstrap_cert unreg "$nf2"
st=$(csrattrs unreg --cert "$T/unreg.pem" --key "$T/unreg.key")
[ "$st" = 403 ] && grep -q "^NF $nf2 is not registered with this agent" "$T/unreg.b64" || fail "unregistered NF: $st"
st=$(csrattrs post --cert "$T/nfc.pem" --key "$T/nfc.key" -X POST)
[ "$st" = 405 ] && grep -qi '^allow: GET' "$T/post.h" || fail "POST csrattrs: $st"
for op in serverkeygen fullcmc; do
  st=$(curl -s -o "$T/$op" -w '%{http_code}' --max-time 20 --cacert "$T/est-root.pem" --cert "$T/nfc.pem" --key "$T/nfc.key" \
    -H 'Content-Type: application/pkcs10' --data-binary @/dev/null "$EST/$op")
  [ "$st" = 501 ] || fail "$op: HTTP $st"
  grep -q "^$op is not offered: the NF makes its own key and sends a CSR to simpleenroll (NF keys never leave the NF)" \
    "$T/$op" || fail "$op: $(cat "$T/$op")"
  refused_csrattrs "$op" 501 not_offered
done
agent_stop

echo "== est.key_type = rsa-3072"
agent_write_conf 'est = { key_type = "rsa-3072"; };'
sed -i 's/^est = { wait_ms.*$//' "$AGENT_CONF"
agent_start
st=$(csrattrs rsa --cert "$T/nfc.pem" --key "$T/nfc.key")
[ "$st" = 200 ] || fail "csrattrs (rsa-3072): HTTP $st"
[ "$(oids rsa)" = 'Extension Request;X509v3 Subject Alternative Name;rsaEncryption;sha256WithRSAEncryption;' ] ||
  fail "rsa-3072 OIDs: $(oids rsa)"
openssl asn1parse -inform DER -in "$T/rsa.der" | grep -A2 ':rsaEncryption' | grep -q 'INTEGER *:0C00$' ||
  fail "no INTEGER 3072 under rsaEncryption: $(openssl asn1parse -inform DER -in "$T/rsa.der")"
agent_stop
echo "test_agent_csrattrs: ok"
