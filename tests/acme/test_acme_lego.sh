#!/usr/bin/env bash
# lego (Debian) against certforge-acme on loopback: http-01, tls-alpn-01
# (RFC 8737) and dns-01 issuance, an external CSR, renewal with the
# authorizations deactivated afterwards, revocation (checked on certforged's
# CRL), and registration with external account binding when it is required.
. "$CF_SOURCE_DIR/tests/acme/acme_env.sh"
command -v lego >/dev/null || skip "lego missing"

acme_env_start
L=$T/lego
lg() { LEGO_CA_CERTIFICATES=$ACME_ROOT in_ns timeout 120 lego --server "$ACME_DIR" --path "$L" --accept-tos "$@"; }
serial_of() { openssl x509 -in "$1" -noout -serial | cut -d= -f2; }
revoked_in_crl() {
  "$CF" crl --socket "$T/cf.sock" --issuer nf-ca --new --out "$T/now.crl" --der --force >/dev/null || fail "certforge crl --new"
  openssl crl -inform DER -in "$T/now.crl" -noout -text | tr -d ' :' | grep -qi "SerialNumber$1"
}
cat >"$T/lego-exec.sh" <<HOOK
#!/bin/sh
# lego's exec DNS provider: \$1 present|cleanup, \$2 the record's FQDN, \$3 its value
case "\$1" in
  present) curl -sf -X POST -d "{\"host\":\"\$2\", \"value\":\"\$3\"}" http://127.0.0.1:$MGMT_PORT/set-txt ;;
  cleanup) curl -sf -X POST -d "{\"host\":\"\$2\"}" http://127.0.0.1:$MGMT_PORT/clear-txt ;;
esac
HOOK
chmod +x "$T/lego-exec.sh"

echo "== http-01, two names, P-256"
lg --email ops@example.org --http --http.port "127.0.0.1:$HTTP01_PORT" -d www.example.test -d www2.example.test \
  run >"$T/out" 2>&1 || { cat "$T/out"; tail -n 20 "$T/acme.log"; fail "lego http-01"; }
check_cert "$L/certificates/www.example.test.crt" www.example.test www2.example.test

echo "== tls-alpn-01, P-384"
lg --email ops@example.org --key-type ec384 --tls --tls.port "127.0.0.1:$TLSALPN01_PORT" -d alpn.example.test \
  run >"$T/out" 2>&1 || { cat "$T/out"; tail -n 20 "$T/acme.log"; fail "lego tls-alpn-01"; }
check_cert "$L/certificates/alpn.example.test.crt" alpn.example.test
"$CF" acme orders show --config "$T/acme.conf" --json \
  "$(sqlite3 "$T/acme.db" "SELECT id FROM orders WHERE identifiers LIKE '%alpn.example.test%'")" |
  jq -e '.authorizations[0].challenges[] | select(.type == "tls-alpn-01") | .status == "valid"' >/dev/null ||
  fail "the alpn order was not validated with tls-alpn-01"

echo "== dns-01 through the exec provider, RSA-2048"
EXEC_PATH=$T/lego-exec.sh lg --email ops@example.org --key-type rsa2048 --dns exec --dns.disable-cp \
  --dns.resolvers "127.0.0.1:$DNS_PORT" -d dns.example.test run >"$T/out" 2>&1 ||
  { cat "$T/out"; tail -n 20 "$T/acme.log"; fail "lego dns-01"; }
check_cert "$L/certificates/dns.example.test.crt" dns.example.test

echo "== an external CSR"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/ext.key" -subj "/CN=ext.example.test" \
  -addext "subjectAltName=DNS:ext.example.test" -out "$T/ext.csr" 2>/dev/null
lg --email ops@example.org --http --http.port "127.0.0.1:$HTTP01_PORT" --csr "$T/ext.csr" run >"$T/out" 2>&1 ||
  { cat "$T/out"; fail "lego --csr"; }
check_cert "$L/certificates/ext.example.test.crt" ext.example.test
[ "$(openssl x509 -in "$L/certificates/ext.example.test.crt" -noout -pubkey | openssl sha256)" = \
  "$(openssl pkey -in "$T/ext.key" -pubout | openssl sha256)" ] || fail "the certificate does not carry the CSR's key"

echo "== renew, authorizations deactivated afterwards"
s1=$(serial_of "$L/certificates/www.example.test.crt")
lg --email ops@example.org --http --http.port "127.0.0.1:$HTTP01_PORT" -d www.example.test -d www2.example.test \
  renew --days 999 --no-random-sleep --always-deactivate-authorizations true >"$T/out" 2>&1 || { cat "$T/out"; fail "lego renew"; }
s2=$(serial_of "$L/certificates/www.example.test.crt")
[ "$s1" != "$s2" ] || fail "renewal kept serial $s1"
check_cert "$L/certificates/www.example.test.crt" www.example.test www2.example.test
[ "$(sqlite3 "$T/acme.db" "SELECT COUNT(*) FROM authzs WHERE value LIKE 'www%' AND status = 'deactivated'")" -ge 2 ] ||
  fail "lego's authorizations were not deactivated"

echo "== revoke (keyCompromise)"
lg --email ops@example.org -d www.example.test -d www2.example.test revoke --reason 1 --keep >"$T/out" 2>&1 ||
  { cat "$T/out"; fail "lego revoke"; }
revoked_in_crl "$s2" || fail "serial $s2 not on certforged's CRL"
[ "$(crl_reason "$T/now.crl" "$s2")" = "Key Compromise" ] || fail "CRL reason of $s2: '$(crl_reason "$T/now.crl" "$s2")'"

echo "== external account binding"
acme_stop
acme_start 'accounts = { eab_required = true; };'
rm -rf "$L"
if lg --email eab@example.org --http --http.port "127.0.0.1:$HTTP01_PORT" -d e.example.test run >"$T/out" 2>&1; then
  fail "lego registered without EAB"; fi
# lego reads meta.externalAccountRequired and stops before asking
grep -qi "external account" "$T/out" || { cat "$T/out"; fail "without EAB: lego did not see EAB required"; }
eab=$("$CF" acme eab add --config "$T/acme.conf" --suffixes example.test --json)
lg --email eab@example.org --eab --kid "$(jq -r .kid <<<"$eab")" --hmac "$(jq -r .hmac_key <<<"$eab")" \
  --http --http.port "127.0.0.1:$HTTP01_PORT" -d e.example.test run >"$T/out" 2>&1 || { cat "$T/out"; fail "lego with EAB"; }
check_cert "$L/certificates/e.example.test.crt" e.example.test
# the EAB key allows *.example.test only
if lg --email eab@example.org --eab --kid "$(jq -r .kid <<<"$eab")" --hmac "$(jq -r .hmac_key <<<"$eab")" \
   --http --http.port "127.0.0.1:$HTTP01_PORT" -d other.example.org run >"$T/out" 2>&1; then
  fail "an order outside the EAB key's suffixes was accepted"; fi
[ "$(last_problem /acme/new-order)" = rejectedIdentifier ] || fail "outside suffixes: '$(last_problem /acme/new-order)'"
echo "lego: all passed"
