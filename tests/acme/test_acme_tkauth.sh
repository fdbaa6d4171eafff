#!/usr/bin/env bash
# NfInstanceId + tkauth-01 (RFC 9447, TS 33.310): the OAM's token authority
# is a second SoftHSM token ("oam") with a root and a token-signing key; a
# rogue authority outside the trust anchors signs the refused tokens.
. "$CF_SOURCE_DIR/tests/acme/acme_env.sh"
PY=/usr/bin/python3
$PY -c 'import cryptography, requests' 2>/dev/null || skip "python3-cryptography / python3-requests missing (python3-acme)"
ca_setup
# The OAM's token authority: its signing key in its own HSM token ("oam"),
# its certificate (an end-entity, keyUsage digitalSignature) from the OAM's
# own PKI (a software root here: outside certforge); a rogue authority
# outside the trust anchors signs the refused tokens.
softhsm2-util --init-token --free --label oam --so-pin 12345678 --pin "$(cat "$T/pin")" >/dev/null
OAM_TOKEN="pkcs11:token=oam?module-path=$MODULE&pin-source=file:$T/pin"
signer_cert() { # LABEL SUBJECT CA-CERT CA-KEY OUT
  "$CF" keys generate --token "$OAM_TOKEN" --type ec-p256 --label "$1" >/dev/null
  "$CF" keys export-pub "pkcs11:token=oam;object=$1" --token "$OAM_TOKEN" --out "$T/$1.pub" >/dev/null
  openssl x509 -new -force_pubkey "$T/$1.pub" -subj "$2" -CA "$3" -CAkey "$4" -days 10 -out "$5" \
    -extfile <(printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nsubjectKeyIdentifier=hash\n') 2>/dev/null ||
    fail "cannot make the certificate of $1"
}
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/oam-root.key" -days 30 \
  -subj "/O=OAM/CN=OAM token authority root" -out "$T/oam-root.pem" 2>/dev/null
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/rogue-root.key" -days 30 \
  -subj "/O=Rogue/CN=rogue root" -out "$T/rogue-root.pem" 2>/dev/null
signer_cert oam-ta "/O=OAM/CN=OAM token authority" "$T/oam-root.pem" "$T/oam-root.key" "$T/oam-ta.pem"
signer_cert rogue "/O=Rogue/CN=rogue authority" "$T/rogue-root.pem" "$T/rogue-root.key" "$T/rogue.pem"
engine_start
challtest_start
export ACME_PROFILES_CONF='profiles = ( { name = "default"; certforged = "dns"; },
  { name = "nf"; certforged = "nf"; identifiers = ["NfInstanceId", "dns"]; nf_types = ["AMF", "SMF"]; } );'
acme_start "tkauth = { trust_anchors = \"$T/oam-root.pem\"; token_authority = \"https://oam.5gc.example/token\"; max_lifetime = \"1h\"; };"
export ACME_DIR ACME_ROOT T HTTP01_PORT CF OAM_TOKEN
in_ns env REQUESTS_CA_BUNDLE="$ACME_ROOT" PYTHONPATH="$CF_SOURCE_DIR/tests/acme" $PY "$CF_SOURCE_DIR/tests/acme/test_acme_tkauth.py" ||
  { tail -n 30 "$T/acme.log"; fail "tkauth tests"; }
# the enrolled NF's certificate, checked with OpenSSL against the operator root
openssl verify -x509_strict -purpose sslserver -CAfile "$ACME_ROOT" -untrusted "$T/nf-ca.pem" "$T/nf-cert.pem" >/dev/null ||
  fail "the NF certificate does not verify"
