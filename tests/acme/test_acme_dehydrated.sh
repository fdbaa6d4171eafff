#!/usr/bin/env bash
# dehydrated (Debian, 0.7.0) against certforge-acme on loopback: register,
# http-01 (webroot), dns-01 (hook) and tls-alpn-01 (its --alpn certificates
# served by tests/acme/alpn_responder.py) issuance, forced renewal,
# revocation (on certforged's CRL), account deactivation, and external
# account binding. Trust: curl's --cacert through CURL_OPTS.
. "$CF_SOURCE_DIR/tests/acme/acme_env.sh"
command -v dehydrated >/dev/null || skip "dehydrated missing"

acme_env_start
D=$T/dehydrated
mkdir -p "$D" "$T/www/.well-known/acme-challenge" "$T/alpn"
timeout -s KILL "$ENV_TIMEOUT" python3 -m http.server --bind 127.0.0.1 --directory "$T/www" "$HTTP01_PORT" \
  >"$T/www.log" 2>&1 &
PIDS+=("$!")
timeout -s KILL "$ENV_TIMEOUT" python3 "$CF_SOURCE_DIR/tests/acme/alpn_responder.py" "$TLSALPN01_PORT" "$T/alpn" \
  >"$T/alpn.log" 2>&1 &
PIDS+=("$!")
for _ in $(seq 1 50); do curl -s -o /dev/null "http://127.0.0.1:$HTTP01_PORT/" && break; sleep 0.1; done

cat >"$T/dehydrated-hook.sh" <<HOOK
#!/bin/sh
# dehydrated hook: dns-01 records through the test DNS server
case "\$1" in
  deploy_challenge) curl -sf -X POST -d "{\"host\":\"_acme-challenge.\$2.\", \"value\":\"\$4\"}" http://127.0.0.1:$MGMT_PORT/set-txt ;;
  clean_challenge) curl -sf -X POST -d "{\"host\":\"_acme-challenge.\$2.\"}" http://127.0.0.1:$MGMT_PORT/clear-txt ;;
esac
exit 0
HOOK
chmod +x "$T/dehydrated-hook.sh"
write_conf() { # extra lines
  cat >"$D/config" <<CONF
CA="$ACME_DIR"
BASEDIR="$D"
WELLKNOWN="$T/www/.well-known/acme-challenge"
ALPNCERTDIR="$T/alpn"
CURL_OPTS="--cacert $ACME_ROOT"
CONTACT_EMAIL="ops@example.org"
HOOK="$T/dehydrated-hook.sh"
KEY_ALGO=prime256v1
RENEW_DAYS=1
${1:-}
CONF
}
dh() { in_ns timeout 120 dehydrated -f "$D/config" "$@"; }
serial_of() { openssl x509 -in "$1" -noout -serial | cut -d= -f2; }
revoked_in_crl() {
  "$CF" crl --socket "$T/cf.sock" --issuer nf-ca --new --out "$T/now.crl" --der --force >/dev/null || fail "certforge crl --new"
  openssl crl -inform DER -in "$T/now.crl" -noout -text | tr -d ' :' | grep -qi "SerialNumber$1"
}

write_conf
echo "== register"
dh --register --accept-terms >"$T/out" 2>&1 || { cat "$T/out"; tail -n 20 "$T/acme.log"; fail "dehydrated --register"; }

echo "== http-01, two names"
dh -c -d site.example.test -d www.site.example.test >"$T/out" 2>&1 || { cat "$T/out"; tail -n 20 "$T/acme.log"; fail "http-01"; }
check_cert "$D/certs/site.example.test/cert.pem" site.example.test www.site.example.test

echo "== dns-01"
dh -c -t dns-01 -d txt.example.test >"$T/out" 2>&1 || { cat "$T/out"; tail -n 20 "$T/acme.log"; fail "dns-01"; }
check_cert "$D/certs/txt.example.test/cert.pem" txt.example.test

echo "== tls-alpn-01"
dh -c -t tls-alpn-01 -d alpn.example.test >"$T/out" 2>&1 || { cat "$T/out"; tail -n 20 "$T/acme.log"; fail "tls-alpn-01"; }
check_cert "$D/certs/alpn.example.test/cert.pem" alpn.example.test

echo "== forced renewal"
s1=$(serial_of "$D/certs/site.example.test/cert.pem")
dh -c -x -d site.example.test -d www.site.example.test >"$T/out" 2>&1 || { cat "$T/out"; fail "renewal"; }
s2=$(serial_of "$D/certs/site.example.test/cert.pem")
[ "$s1" != "$s2" ] || fail "renewal kept serial $s1"
check_cert "$D/certs/site.example.test/cert.pem" site.example.test www.site.example.test

echo "== revoke"
dh -r "$D/certs/site.example.test/cert.pem" >"$T/out" 2>&1 || { cat "$T/out"; fail "revoke"; }
revoked_in_crl "$s2" || fail "serial $s2 not on certforged's CRL"

echo "== deactivate the account"
dh --deactivate >"$T/out" 2>&1 || { cat "$T/out"; fail "deactivate"; }
[ "$(sqlite3 "$T/acme.db" "SELECT status FROM accounts")" = deactivated ] || fail "account not deactivated"

echo "== external account binding"
acme_stop
acme_start 'accounts = { eab_required = true; };'
rm -rf "$D"; mkdir -p "$D"
write_conf
if dh --register --accept-terms >"$T/out" 2>&1; then fail "registered without EAB"; fi
grep -qi "external account" "$T/out" || { cat "$T/out"; fail "without EAB: not refused for EAB"; }
eab=$("$CF" acme eab add --config "$T/acme.conf" --json)
write_conf "EAB_KID=\"$(jq -r .kid <<<"$eab")\"
EAB_HMAC_KEY=\"$(jq -r .hmac_key <<<"$eab")\""
dh --register --accept-terms >"$T/out" 2>&1 || { cat "$T/out"; tail -n 20 "$T/acme.log"; fail "register with EAB"; }
dh -c -d eab.example.test >"$T/out" 2>&1 || { cat "$T/out"; fail "issuance on the EAB account"; }
check_cert "$D/certs/eab.example.test/cert.pem" eab.example.test
echo "dehydrated: all passed"
