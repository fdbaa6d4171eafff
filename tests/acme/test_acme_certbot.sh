#!/usr/bin/env bash
# certbot (Debian) against certforge-acme on loopback: register, http-01 and
# dns-01 issuance, renewal, revocation by the account and by the
# certificate's key, account deactivation, and external account binding
# (required: refused without, refused with a used or revoked key, accepted
# with a fresh one). Every certificate passes the profile checks; every
# revocation is in a fresh CRL from certforged.
. "$CF_SOURCE_DIR/tests/acme/acme_env.sh"
command -v certbot >/dev/null || skip "certbot missing"

acme_env_start 'accounts = { contact_required = false; };'
W=$T/certbot
mkdir -p "$W"
cb() { # certbot with its own folders and the operator root as trust anchor
  REQUESTS_CA_BUNDLE=$ACME_ROOT in_ns timeout 120 certbot --non-interactive --server "$ACME_DIR" \
    --config-dir "$W/conf" --work-dir "$W/work" --logs-dir "$W/logs" "$@"
}
cat >"$T/dns-hook.sh" <<HOOK
#!/bin/sh
# certbot --manual hook: publish (or clear) the dns-01 TXT record
if [ "\$1" = clean ]; then
  curl -sf -X POST -d "{\"host\":\"_acme-challenge.\$CERTBOT_DOMAIN.\"}" http://127.0.0.1:$MGMT_PORT/clear-txt
else
  curl -sf -X POST -d "{\"host\":\"_acme-challenge.\$CERTBOT_DOMAIN.\", \"value\":\"\$CERTBOT_VALIDATION\"}" http://127.0.0.1:$MGMT_PORT/set-txt
fi
HOOK
chmod +x "$T/dns-hook.sh"
revoked_in_crl() { # SERIAL-HEX: is it on a CRL certforged makes now?
  "$CF" crl --socket "$T/cf.sock" --issuer nf-ca --new --out "$T/now.crl" --der --force >/dev/null || fail "certforge crl --new"
  openssl crl -inform DER -in "$T/now.crl" -noout -text | tr -d ' :' | grep -qi "SerialNumber$1"
}
serial_of() { openssl x509 -in "$1" -noout -serial | cut -d= -f2; }

echo "== register"
cb register --agree-tos -m ops@example.org >"$T/out" 2>&1 || { cat "$T/out"; fail "certbot register"; }
"$CF" acme accounts list --config "$T/acme.conf" --json | jq -e 'length == 1 and .[0].status == "valid" and .[0].contact == ["mailto:ops@example.org"]' >/dev/null ||
  fail "the account is not in certforge-acme's state"

echo "== http-01, two names"
cb certonly --standalone --http-01-address 127.0.0.1 --http-01-port "$HTTP01_PORT" --key-type ecdsa \
  --cert-name web -d web1.example.test -d web2.example.test >"$T/out" 2>&1 || { cat "$T/out"; tail -n 20 "$T/acme.log"; fail "http-01 issuance"; }
check_cert "$W/conf/live/web/cert.pem" web1.example.test web2.example.test
# certbot's chain is the issuer chain certforged returned
openssl verify -CAfile "$ACME_ROOT" -untrusted "$W/conf/live/web/chain.pem" "$W/conf/live/web/cert.pem" >/dev/null || fail "chain.pem"
s1=$(serial_of "$W/conf/live/web/cert.pem")

echo "== dns-01 (TXT published through the test DNS server), RSA key"
cb certonly --manual --preferred-challenges dns --manual-auth-hook "$T/dns-hook.sh" \
  --manual-cleanup-hook "$T/dns-hook.sh clean" --key-type rsa --rsa-key-size 2048 \
  --cert-name dnsname -d api.example.test >"$T/out" 2>&1 || { cat "$T/out"; tail -n 20 "$T/acme.log"; fail "dns-01 issuance"; }
check_cert "$W/conf/live/dnsname/cert.pem" api.example.test
openssl x509 -in "$W/conf/live/dnsname/cert.pem" -noout -text | grep -q "Public-Key: (2048 bit)" || fail "RSA key not carried"

echo "== renew"
cb renew --force-renewal --no-random-sleep-on-renew --cert-name web --http-01-address 127.0.0.1 --http-01-port "$HTTP01_PORT" >"$T/out" 2>&1 ||
  { cat "$T/out"; fail "renew"; }
s2=$(serial_of "$W/conf/live/web/cert.pem")
[ "$s1" != "$s2" ] || fail "renewal kept the serial $s1"
check_cert "$W/conf/live/web/cert.pem" web1.example.test web2.example.test

echo "== revoke by the account (keyCompromise)"
cb revoke --cert-path "$W/conf/live/web/cert.pem" --reason keycompromise --no-delete-after-revoke >"$T/out" 2>&1 ||
  { cat "$T/out"; fail "revoke"; }
revoked_in_crl "$s2" || fail "serial $s2 is not on certforged's CRL after revocation"
# revoking again: alreadyRevoked
if cb revoke --cert-path "$W/conf/live/web/cert.pem" --no-delete-after-revoke >"$T/out" 2>&1; then fail "second revocation accepted"; fi
[ "$(last_problem /acme/revoke-cert)" = alreadyRevoked ] || fail "second revocation: $(last_problem /acme/revoke-cert), not alreadyRevoked"

echo "== revoke with the certificate's own key"
sd=$(serial_of "$W/conf/live/dnsname/cert.pem")
cb revoke --cert-path "$W/conf/live/dnsname/cert.pem" --key-path "$W/conf/live/dnsname/privkey.pem" \
  --no-delete-after-revoke >"$T/out" 2>&1 || { cat "$T/out"; fail "revoke by certificate key"; }
revoked_in_crl "$sd" || fail "serial $sd is not on certforged's CRL"

echo "== deactivate the account"
cb unregister >"$T/out" 2>&1 || { cat "$T/out"; fail "unregister"; }
"$CF" acme accounts list --config "$T/acme.conf" --json | jq -e '.[0].status == "deactivated"' >/dev/null || fail "account not deactivated"

echo "== external account binding required"
acme_stop
acme_start 'accounts = { eab_required = true; };'
rm -rf "$W"; mkdir -p "$W"
if cb register --agree-tos --register-unsafely-without-email >"$T/out" 2>&1; then fail "registered without EAB"; fi
# certbot reads meta.externalAccountRequired from the directory and stops
# before asking (the server's own refusal is tested in test_acme_protocol)
grep -qi "external account binding" "$T/out" || { cat "$T/out"; fail "without EAB: certbot did not see EAB required"; }
eab=$("$CF" acme eab add --config "$T/acme.conf" --json)
kid=$(jq -r .kid <<<"$eab"); hmac=$(jq -r .hmac_key <<<"$eab")
# a wrong HMAC key is refused
bad=$(openssl rand 32 | basenc --base64url | tr -d '=')
if cb register --agree-tos --register-unsafely-without-email --eab-kid="$kid" --eab-hmac-key="$bad" >"$T/out" 2>&1; then
  fail "registered with a wrong EAB HMAC key"; fi
[ "$(last_problem /acme/new-account)" = unauthorized ] || fail "wrong EAB key: $(last_problem /acme/new-account)"
cb register --agree-tos --register-unsafely-without-email --eab-kid="$kid" --eab-hmac-key="$hmac" >"$T/out" 2>&1 ||
  { cat "$T/out"; fail "register with EAB"; }
"$CF" acme eab list --config "$T/acme.conf" --json | jq -e --arg k "$kid" '.[] | select(.kid == $k) | .account != null' >/dev/null ||
  fail "EAB key not bound to the account"
# the same key again, for another account: refused
mv "$W" "$W.1"; mkdir -p "$W"
if cb register --agree-tos --register-unsafely-without-email --eab-kid="$kid" --eab-hmac-key="$hmac" >"$T/out" 2>&1; then
  fail "an EAB key bound two accounts"; fi
[ "$(last_problem /acme/new-account)" = unauthorized ] || fail "reused EAB key: $(last_problem /acme/new-account)"
# a revoked key: refused
eab2=$("$CF" acme eab add --config "$T/acme.conf" --json)
"$CF" acme eab revoke --config "$T/acme.conf" "$(jq -r .kid <<<"$eab2")" >/dev/null
if cb register --agree-tos --register-unsafely-without-email --eab-kid="$(jq -r .kid <<<"$eab2")" \
   --eab-hmac-key="$(jq -r .hmac_key <<<"$eab2")" >"$T/out" 2>&1; then fail "a revoked EAB key registered"; fi
[ "$(last_problem /acme/new-account)" = unauthorized ] || fail "revoked EAB key: $(last_problem /acme/new-account)"
rm -rf "$W"; mv "$W.1" "$W"
cb certonly --standalone --http-01-address 127.0.0.1 --http-01-port "$HTTP01_PORT" --cert-name eab -d eab.example.test \
  >"$T/out" 2>&1 || { cat "$T/out"; fail "issuance on the EAB account"; }
check_cert "$W/conf/live/eab/cert.pem" eab.example.test
echo "certbot: all passed"
