#!/usr/bin/env bash
# Issuer rollover: the default ACME profile switches certforged profile at
# switch_at (a few seconds after start) while clients issue
# (test_acme_rollover.py). Trust anchors published: the operator root.
. "$CF_SOURCE_DIR/tests/acme/acme_env.sh"
PY=/usr/bin/python3
$PY -c 'import cryptography, requests' 2>/dev/null || skip "python3-cryptography / python3-requests missing (python3-acme)"
# ROLLOVER=root (test_acme_root_rollover): the new intermediate is under a
# new root; trust anchors publish both roots and the link certificates
export ACME_ENV_ISSUER2=${ROLLOVER:-1}
ca_setup
engine_start
challtest_start
SWITCH_AT=$(( $(date +%s) + 12 ))
switch=$(date -u -d "@$SWITCH_AT" +%Y-%m-%dT%H:%M:%SZ)
export ACME_PROFILES_CONF="profiles = ( { name = \"default\"; certforged = \"dns\"; switch_to = \"dns-2\"; switch_at = \"$switch\"; } );"
ANCHORS=$ACME_ROOT
[ "${ROLLOVER:-}" = root ] && ANCHORS=$T/anchors.pem
acme_start "trust_anchors = \"$ANCHORS\";"
in_ns curl -sf --cacert "$ACME_ROOT" "https://$ACME_HOST:$ACME_PORT/acme/trust-anchors" >"$T/published.pem" || fail "no trust anchors"
export ACME_DIR ACME_ROOT T HTTP01_PORT CF SWITCH_AT ROLLOVER
in_ns env REQUESTS_CA_BUNDLE="$ACME_ROOT" PYTHONPATH="$CF_SOURCE_DIR/tests/acme" $PY "$CF_SOURCE_DIR/tests/acme/test_acme_rollover.py" ||
  { tail -n 20 "$T/acme.log"; fail "rollover"; }
