#!/usr/bin/env bash
# certforge-acme's own TLS certificate: issued by certforged at start-up,
# renewed by the front end itself at tls.renew_at of its lifetime (here a
# 60 s certificate renewed at 10 %), with a new key, served to new
# connections without a restart; a restart before the renewal time reuses
# the kept certificate.
. "$CF_SOURCE_DIR/tests/acme/acme_env.sh"
export ACME_TLS_PROFILE=acme-tls-short ACME_TLS_EXTRA='renew_at = 0.1;'
acme_env_start
served() { # the serial of the certificate a new connection gets
  in_ns sh -c "openssl s_client -connect 127.0.0.1:$ACME_PORT -servername $ACME_HOST -CAfile $ACME_ROOT </dev/null 2>/dev/null |
    openssl x509 -noout -serial" | cut -d= -f2
}
s1=$(served)
[ -n "$s1" ] || fail "no certificate served"
[ "$s1" = "$(openssl x509 -in "$T/acme-tls/acme-tls.pem" -noout -serial | cut -d= -f2)" ] || fail "served is not the kept one"
k1=$(openssl pkey -in "$T/acme-tls/acme-tls.key" -pubout | sha256sum)
[ "$(stat -c %a "$T/acme-tls/acme-tls.key")" = 600 ] || fail "the key file is not mode 0600"
# renewal is due 6 s after notBefore; wait for it (bounded)
for _ in $(seq 1 150); do grep -q "event=tls_renewed" "$T/acme.log" && break; sleep 0.1; done
grep -q "event=tls_renewed" "$T/acme.log" || fail "no renewal within 15 s"
s2=$(served)
[ -n "$s2" ] && [ "$s2" != "$s1" ] || fail "new connections still get $s1"
[ "$(openssl pkey -in "$T/acme-tls/acme-tls.key" -pubout | sha256sum)" != "$k1" ] || fail "renewal kept the key"
in_ns curl -sf --cacert "$ACME_ROOT" "$ACME_DIR" >/dev/null || fail "directory not served after renewal"
# certforged's ledger has both, requested by the front end
n=$("$CF" ledger export --format jsonl --db "$T/ledger.db" | grep -c '"requester":"certforge-acme:tls"' || true)
[ "$n" -ge 2 ] || fail "certforged's ledger has $n front-end certificates"
# a restart before the next renewal reuses the kept certificate
acme_stop
export ACME_TLS_EXTRA='renew_at = 0.9;'
acme_start
[ "$(served)" = "$(openssl x509 -in "$T/acme-tls/acme-tls.pem" -noout -serial | cut -d= -f2)" ] || fail "restart: not the kept certificate"
echo "tls renewal: all passed"
