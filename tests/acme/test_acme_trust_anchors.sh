#!/usr/bin/env bash
# The operator's trust anchors as certforge-acme publishes them: the URL in
# the directory's meta, the PEM bundle and the PKCS#7 certs-only form
# (EST /cacerts, RFC 7030 §4.1.3) with the same certificates, ETag and 304,
# a SIGHUP reload that adds a new root (a CA rollover), and a bad file on
# reload refused with the old bundle kept.
. "$CF_SOURCE_DIR/tests/acme/acme_env.sh"
ca_setup
cp "$ACME_ROOT" "$T/anchors.pem"
engine_start
challtest_start
acme_start "trust_anchors = \"$T/anchors.pem\";"
c() { in_ns curl -sf --cacert "$ACME_ROOT" "$@"; }
url=$(c "$ACME_DIR" | jq -r '.meta.trustAnchors')
[ "$url" = "https://$ACME_HOST:$ACME_PORT/acme/trust-anchors" ] || fail "meta.trustAnchors: $url"
c "$url" >"$T/got.pem" || fail "GET $url"
[ "$(openssl x509 -in "$T/got.pem" -noout -fingerprint -sha256)" = "$(openssl x509 -in "$ACME_ROOT" -noout -fingerprint -sha256)" ] ||
  fail "the PEM bundle is not the operator root"
# PKCS#7 certs-only, base64 (the EST /cacerts body)
c -D "$T/h7" "$url.p7" | base64 -d | openssl pkcs7 -inform DER -print_certs -noout >"$T/p7.txt" || fail "PKCS#7 unreadable"
grep -qi "content-type: application/pkcs7-mime; smime-type=certs-only" "$T/h7" || fail "PKCS#7 content type"
[ "$(grep -c '^subject=' "$T/p7.txt")" = 1 ] || fail "PKCS#7 holds $(grep -c '^subject=' "$T/p7.txt") certificates"
etag=$(c -D - -o /dev/null "$url" | tr -d '\r' | sed -n 's/^[Ee][Tt]ag: //p')
[ -n "$etag" ] || fail "no ETag"
code=$(in_ns curl -s --cacert "$ACME_ROOT" -o /dev/null -w '%{http_code}' -H "If-None-Match: $etag" "$url")
[ "$code" = 304 ] || fail "If-None-Match: $code, not 304"
# rollover: a new root joins the bundle; SIGHUP
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/root2.key" -days 30 \
  -subj "/C=FI/O=certforge test/CN=ACME test root 2" -addext "basicConstraints=critical,CA:TRUE" -out "$T/root2.pem" 2>/dev/null
cat "$ACME_ROOT" "$T/root2.pem" >"$T/anchors.pem"
kill -HUP "$(pgrep -P "$ACME_PID" -x certforge-acme)"
for _ in $(seq 1 50); do grep -q "event=reload trust_anchors=2" "$T/acme.log" && break; sleep 0.1; done
grep -q "event=reload trust_anchors=2" "$T/acme.log" || fail "no reload logged"
[ "$(c "$url" | grep -c 'BEGIN CERTIFICATE')" = 2 ] || fail "the bundle did not take the new root"
code=$(in_ns curl -s --cacert "$ACME_ROOT" -o /dev/null -w '%{http_code}' -H "If-None-Match: $etag" "$url")
[ "$code" = 200 ] || fail "the old ETag still matches after the change ($code)"
# a bad file on reload: refused, the previous bundle kept
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout /dev/null -days 1 -subj /CN=leaf \
  -addext "basicConstraints=critical,CA:FALSE" -out "$T/anchors.pem" 2>/dev/null
kill -HUP "$(pgrep -P "$ACME_PID" -x certforge-acme)"
for _ in $(seq 1 50); do grep -q "event=reload_failed" "$T/acme.log" && break; sleep 0.1; done
grep -q 'event=reload_failed error=".*is not a CA certificate" kept=previous' "$T/acme.log" || fail "bad reload not refused"
[ "$(c "$url" | grep -c 'BEGIN CERTIFICATE')" = 2 ] || fail "a refused reload changed the bundle"
echo "trust anchors: all passed"
