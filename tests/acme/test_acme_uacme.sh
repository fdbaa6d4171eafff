#!/usr/bin/env bash
# uacme (Debian, 1.7.4) against certforge-acme on loopback: register, http-01
# (files served from a webroot) and dns-01 issuance, forced renewal,
# account key rollover (RFC 8555 §7.3.5, `uacme newkey`), revocation by the
# account and by the certificate's key (checked on certforged's CRL),
# deactivation, and external account binding. uacme has no option for a
# trust anchor: it runs in a private mount namespace whose system trust
# store is the operator root.
. "$CF_SOURCE_DIR/tests/acme/acme_env.sh"
command -v uacme >/dev/null || skip "uacme missing"

acme_env_start
U=$T/uacme
mkdir -p "$U" "$T/www/.well-known/acme-challenge"
timeout -s KILL "$ENV_TIMEOUT" python3 -m http.server --bind 127.0.0.1 --directory "$T/www" "$HTTP01_PORT" \
  >"$T/www.log" 2>&1 &
PIDS+=("$!")
for _ in $(seq 1 50); do curl -s -o /dev/null "http://127.0.0.1:$HTTP01_PORT/" && break; sleep 0.1; done

cat >"$T/uacme-hook.sh" <<HOOK
#!/bin/sh
# uacme hook: METHOD TYPE IDENT TOKEN KEY_AUTH; exit 0 to take the
# challenge, 1 to decline it. UACME_CHALLENGE picks the type.
method=\$1 type=\$2 ident=\$3 token=\$4 auth=\$5
[ "\$type" = "\${UACME_CHALLENGE:-http-01}" ] || exit 1
case "\$type:\$method" in
  http-01:begin) printf '%s' "\$auth" >"$T/www/.well-known/acme-challenge/\$token" ;;
  http-01:*) rm -f "$T/www/.well-known/acme-challenge/\$token" ;;
  dns-01:begin) curl -sf -X POST -d "{\"host\":\"_acme-challenge.\$ident.\", \"value\":\"\$auth\"}" http://127.0.0.1:$MGMT_PORT/set-txt ;;
  dns-01:*) curl -sf -X POST -d "{\"host\":\"_acme-challenge.\$ident.\"}" http://127.0.0.1:$MGMT_PORT/clear-txt ;;
esac
HOOK
chmod +x "$T/uacme-hook.sh"
ua() { NS_CA_STORE=$ACME_ROOT in_ns timeout 120 uacme -v -y -c "$U" -h "$T/uacme-hook.sh" -a "$ACME_DIR" "$@"; }
serial_of() { openssl x509 -in "$1" -noout -serial | cut -d= -f2; }
revoked_in_crl() {
  "$CF" crl --socket "$T/cf.sock" --issuer nf-ca --new --out "$T/now.crl" --der --force >/dev/null || fail "certforge crl --new"
  openssl crl -inform DER -in "$T/now.crl" -noout -text | tr -d ' :' | grep -qi "SerialNumber$1"
}
thumb() { sqlite3 "$T/acme.db" "SELECT thumbprint FROM accounts WHERE status = 'valid'"; }
# uacme 1.7.4 keeps the certificate it replaces as cert-<time(NULL)>.pem and
# fails ("File exists") when two renewals of one name fall in the same
# second, which certforge-acme is fast enough for: wait for the next one.
next_second() { local s; s=$(date +%s); while [ "$(date +%s)" = "$s" ]; do sleep 0.05; done; }

echo "== register"
ua new ops@example.org >"$T/out" 2>&1 || { cat "$T/out"; tail -n 20 "$T/acme.log"; fail "uacme new"; }

echo "== http-01, two names"
ua issue one.example.test two.example.test >"$T/out" 2>&1 || { cat "$T/out"; tail -n 20 "$T/acme.log"; fail "uacme issue http-01"; }
check_cert "$U/one.example.test/cert.pem" one.example.test two.example.test

echo "== dns-01"
UACME_CHALLENGE=dns-01 ua issue txt.example.test >"$T/out" 2>&1 || { cat "$T/out"; tail -n 20 "$T/acme.log"; fail "uacme issue dns-01"; }
check_cert "$U/txt.example.test/cert.pem" txt.example.test

echo "== forced renewal"
s1=$(serial_of "$U/one.example.test/cert.pem")
next_second
ua -f issue one.example.test two.example.test >"$T/out" 2>&1 || { cat "$T/out"; fail "uacme renew"; }
s2=$(serial_of "$U/one.example.test/cert.pem")
[ "$s1" != "$s2" ] || fail "renewal kept serial $s1"

echo "== account key rollover"
t1=$(thumb)
ua newkey >"$T/out" 2>&1 || { cat "$T/out"; tail -n 20 "$T/acme.log"; fail "uacme newkey"; }
t2=$(thumb)
[ -n "$t2" ] && [ "$t1" != "$t2" ] || fail "the account's key did not change ($t1 → $t2)"
[ "$(sqlite3 "$T/acme.db" "SELECT COUNT(*) FROM accounts")" = 1 ] || fail "key change made a second account"
next_second
ua -f issue one.example.test two.example.test >"$T/out" 2>&1 || { cat "$T/out"; fail "issue after key rollover"; }
s3=$(serial_of "$U/one.example.test/cert.pem")
check_cert "$U/one.example.test/cert.pem" one.example.test two.example.test

echo "== revoke by the account, then by the certificate's key"
ua -r 4 revoke "$U/one.example.test/cert.pem" >"$T/out" 2>&1 || { cat "$T/out"; fail "uacme revoke"; }
revoked_in_crl "$s3" || fail "serial $s3 not on certforged's CRL"
[ "$(crl_reason "$T/now.crl" "$s3")" = "Superseded" ] || fail "CRL reason of $s3: '$(crl_reason "$T/now.crl" "$s3")'"
st=$(serial_of "$U/txt.example.test/cert.pem")
ua revoke "$U/txt.example.test/cert.pem" "$U/private/txt.example.test/key.pem" >"$T/out" 2>&1 ||
  { cat "$T/out"; fail "uacme revoke with the certificate key"; }
revoked_in_crl "$st" || fail "serial $st not on certforged's CRL"

echo "== deactivate"
ua deactivate >"$T/out" 2>&1 || { cat "$T/out"; fail "uacme deactivate"; }
[ "$(sqlite3 "$T/acme.db" "SELECT status FROM accounts")" = deactivated ] || fail "account not deactivated"
if ua issue late.example.test >"$T/out" 2>&1; then fail "a deactivated account issued"; fi

echo "== external account binding"
acme_stop
acme_start 'accounts = { eab_required = true; };'
rm -rf "$U"; mkdir -p "$U"
if ua new >"$T/out" 2>&1; then fail "registered without EAB"; fi
eab=$("$CF" acme eab add --config "$T/acme.conf" --json)
ua -e "$(jq -r .kid <<<"$eab"):$(jq -r .hmac_key <<<"$eab")" new >"$T/out" 2>&1 || { cat "$T/out"; fail "uacme new with EAB"; }
ua issue eab.example.test >"$T/out" 2>&1 || { cat "$T/out"; fail "issuance on the EAB account"; }
check_cert "$U/eab.example.test/cert.pem" eab.example.test
echo "uacme: all passed"
