#!/usr/bin/env bash
# The NFs' ACME account keys in a PKCS#11 token (acme.account_key_token):
# `nf add` makes each NF's key in a real SoftHSM token (sensitive, not
# extractable; the state keeps only its URI), the agent signs the NF's
# ACME requests with it through hsm/, and certforge-acme accepts them: the
# OAM token is bound to that key's thumbprint, so the tkauth-01 enrolment
# succeeds only if the account JWS was the token key's. An NF registered
# before (key in the state) still enrols. A token that is not there:
# --check fails naming it.
. "$CF_SOURCE_DIR/tests/agent/agent_env.sh"
agent_env_start
cd "$CF_SOURCE_DIR/tests/agent"

# an NF registered while the keys were in the state
nf0=$(cat /proc/sys/kernel/random/uuid)
agent_cli nf add --nf-instance-id "$nf0" --dns "nf0-${nf0:0:8}.$ZONE" >/dev/null || fail "nf add (state key)"

agent_stop
softhsm2-util --init-token --free --label agent-keys --so-pin 12345678 --pin "$(cat "$T/pin")" >/dev/null ||
  fail "cannot make the agent's token"
KT="pkcs11:token=agent-keys?module-path=$MODULE&pin-source=file:$T/pin"

echo "== a token that is not there: refused with its name"
AGENT_ACME_EXTRA="account_key_token = \"pkcs11:token=no-such-token?module-path=$MODULE&pin-source=file:$T/pin\";" agent_write_conf
if agent_cli --check >"$T/check.out" 2>&1; then fail "--check accepted a missing token"; fi
grep -q "acme.account_key_token: .*no-such-token" "$T/check.out" || fail "--check: $(cat "$T/check.out")"

AGENT_ACME_EXTRA="account_key_token = \"$KT\";" agent_write_conf
agent_cli --check >"$T/check.out" 2>&1 || fail "--check with the token: $(cat "$T/check.out")"
agent_start

echo "== nf add makes the key in the token"
nf=$(cat /proc/sys/kernel/random/uuid)
dns=nf-${nf:0:8}.$ZONE
thumb=$(agent_cli nf add --nf-instance-id "$nf" --dns "$dns" | jq -r .account_key_thumbprint)
[ -n "$thumb" ] && [ "$thumb" != null ] || fail "nf add with the token"
"$CF" keys list --token "$KT" --json >"$T/keys.json" || fail "keys list"
jq -e --arg l "cf-agent-$nf" '[.. | objects | select(.label? == $l)] | length == 1' "$T/keys.json" >/dev/null ||
  fail "no key cf-agent-$nf in the token: $(cat "$T/keys.json")"
jq -e --arg l "cf-agent-$nf" '.. | objects | select(.label? == $l) | .sensitive == true and .extractable == false' \
  "$T/keys.json" >/dev/null || fail "the token key is extractable or not sensitive: $(cat "$T/keys.json")"
stored=$(sqlite3 "$T/agent.db" "SELECT CAST(account_key AS TEXT) FROM nfs WHERE id = '$nf'")
[[ "$stored" == "pkcs11:"*";token=agent-keys;"*";object=cf-agent-$nf;type=private" ]] || fail "the state holds '$stored', not the key's URI"
# nf add again: the same key (the OAM's tokens stay valid), no second key
[ "$(agent_cli nf add --nf-instance-id "$nf" --dns "$dns" | jq -r .account_key_thumbprint)" = "$thumb" ] ||
  fail "nf add again changed the thumbprint"
"$CF" keys list --token "$KT" --json >"$T/keys2.json"
[ "$(jq --arg l "cf-agent-$nf" '[.. | objects | select(.label? == $l)] | length' "$T/keys2.json")" = 1 ] ||
  fail "nf add again made another key"

# an NF whose key is in the state keeps it: nf add again leaves no key in the token
th0=$(sqlite3 "$T/agent.db" "SELECT thumbprint FROM nfs WHERE id = '$nf0'")
[ "$(agent_cli nf add --nf-instance-id "$nf0" --dns "nf0-${nf0:0:8}.$ZONE" | jq -r .account_key_thumbprint)" = "$th0" ] ||
  fail "nf add changed the state key's thumbprint"
"$CF" keys list --token "$KT" --json >"$T/keys3.json"
[ "$(jq --arg l "cf-agent-$nf0" '[.. | objects | select(.label? == $l)] | length' "$T/keys3.json")" = 0 ] ||
  fail "nf add left an unused key in the token for $nf0"

echo "== enrolment signed by the token key (tkauth-01 bound to its thumbprint)"
$PY - "$nf" "$dns" "$thumb" "$nf0" <<'PY' || fail "enrolments"
import subprocess, sys
import est_client as e
nf, dns, thumb, nf0 = sys.argv[1:5]
k = e.new_key()
r, _ = e.enroll("simpleenroll", e.csr_der(k, nf, [dns]), token=e.token(nf, thumb))
c = e.p7_certs(r)[0]
assert e.sans(c) == sorted(["URI:urn:uuid:" + nf, "DNS:" + dns]), e.sans(c)
assert e.same_key(c, k)
# the NF registered before the token: its key in the state still works
subprocess.run(["bash", "-c", ". $CF_SOURCE_DIR/tests/agent/agent_env_pki.sh; bootstrap_cert nf0 %s" % nf0], check=True)
k0 = e.new_key()
d0 = "nf0-%s.%s" % (nf0[:8], e.ZONE)
r, _ = e.enroll("simpleenroll", e.csr_der(k0, None, [d0]), cert=(e.T + "/nf0.pem", e.T + "/nf0.key"))
assert e.sans(e.p7_certs(r)[0]) == ["DNS:" + d0]
PY
# certforge-acme's account for the NF is the token key's
[ "$(sqlite3 "$T/acme.db" "SELECT COUNT(*) FROM accounts WHERE thumbprint = '$thumb'")" = 1 ] ||
  fail "no certforge-acme account with the token key's thumbprint"
grep -q "event=account_created nf=$nf " "$T/agent.log" || fail "no account_created for $nf"
grep -q "event=confined" "$T/agent.log" || fail "the agent did not confine itself"
agent_stop
echo "test_agent_token_keys: ok"
