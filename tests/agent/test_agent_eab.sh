#!/usr/bin/env bash
# External account binding (RFC 8555 §7.3.4) for the NFs' ACME accounts,
# against a real certforge-acme with accounts.eab_required: the agent
# without acme.eab is told externalAccountRequired; with a wrong HMAC key
# the server's unauthorized; with the key `certforge acme eab add` made the
# NF enrols and the key is bound to the NF's account. Each refusal reaches
# the NF as EST 403 acme_refused naming the ACME problem type, and nothing
# is issued.
. "$CF_SOURCE_DIR/tests/agent/agent_env.sh"
export ACME_EXTRA='accounts = { eab_required = true; };'
agent_env_start
cd "$CF_SOURCE_DIR/tests/agent"

# enrol NAME EXPECTED-STATUS: a new NF with a bootstrap certificate and one
# dns name asks /simpleenroll (again after 202/503, bounded); the answer's
# body goes to $T/NAME.body
enrol() {
  $PY - "$1" "$2" <<'PY'
import subprocess, sys
import est_client as e
name, want = sys.argv[1], int(sys.argv[2])
nf, dns, thumb = e.new_nf(1)
subprocess.run(["bash", "-c", ". $CF_SOURCE_DIR/tests/agent/agent_env_pki.sh; bootstrap_cert %s %s" % (name, nf)],
               check=True)
k = e.new_key()
r, _ = e.enroll("simpleenroll", e.csr_der(k, None, dns), cert=(e.T + "/%s.pem" % name, e.T + "/%s.key" % name),
                expect=want)
open(e.T + "/%s.body" % name, "w").write(r.text)
open(e.T + "/%s.nf" % name, "w").write(nf)
if want == 200:
    c = e.p7_certs(r)[0]
    assert e.sans(c) == ["DNS:" + dns[0]] and e.same_key(c, k), e.sans(c)
PY
}
certs() { sqlite3 "$T/agent.db" "SELECT COUNT(*) FROM certs"; }

echo "== no acme.eab: externalAccountRequired"
enrol eab0 403 || fail "enrolment without EAB"
grep -q "^the ACME server refused the enrolment: newAccount: HTTP 403 externalAccountRequired: " "$T/eab0.body" ||
  fail "EST answer without EAB: $(cat "$T/eab0.body")"
grep "event=enrolment_failed nf=$(cat "$T/eab0.nf") " "$T/agent.log" | grep -q \
  'error="newAccount: HTTP 403 externalAccountRequired: .*(set acme.eab, or the NF.s own with nf add --eab-kid --eab-hmac-key-file: ' || fail "no externalAccountRequired in the agent's log"
grep "op=simpleenroll status=403" "$T/agent.log" | tail -n 1 | grep -q "reason=acme_refused" || fail "EST log reason"
[ "$(last_problem /acme/new-account)" = externalAccountRequired ] || fail "server: $(last_problem /acme/new-account)"
[ "$(certs)" -eq 0 ] || fail "a certificate was issued without EAB"

eab=$("$CF" acme eab add --config "$T/acme.conf" --json) || fail "certforge acme eab add"
kid=$(jq -r .kid <<<"$eab")
echo "== a wrong HMAC key: unauthorized"
agent_stop
(umask 077; openssl rand 32 | basenc --base64url | tr -d '=' >"$T/eab.key")
AGENT_ACME_EXTRA="eab = { kid = \"$kid\"; hmac_key_file = \"$T/eab.key\"; };" agent_write_conf
agent_start
enrol eab1 403 || fail "enrolment with a wrong EAB key"
grep -q "^the ACME server refused the enrolment: newAccount: HTTP 403 unauthorized: externalAccountBinding: the MAC does not verify" \
  "$T/eab1.body" || fail "EST answer with a wrong EAB key: $(cat "$T/eab1.body")"
grep "event=enrolment_failed nf=$(cat "$T/eab1.nf") " "$T/agent.log" | grep -q 'error="newAccount: HTTP 403 unauthorized: ' ||
  fail "no unauthorized in the agent's log"
[ "$(last_problem /acme/new-account)" = unauthorized ] || fail "server: $(last_problem /acme/new-account)"
[ "$(certs)" -eq 0 ] || fail "a certificate was issued with a wrong EAB key"
# the key (and its id) stays out of the log
grep -qF "$(cat "$T/eab.key")" "$T/agent.log" && fail "the EAB key is in the log"

echo "== a key file others may read: refused at start"
chmod 644 "$T/eab.key"
if agent_cli --check >"$T/check.out" 2>&1; then fail "--check accepted a 0644 EAB key file"; fi
grep -q "acme.eab.hmac_key_file: $T/eab.key is readable by others (mode 0644): it holds the EAB HMAC key; chmod 600 it" \
  "$T/check.out" || fail "--check: $(cat "$T/check.out")"

echo "== the right key: the NF enrols, the key is bound to its account"
agent_stop
(umask 077; jq -r .hmac_key <<<"$eab" >"$T/eab.key"; chmod 600 "$T/eab.key")
agent_start
enrol eab2 200 || fail "enrolment with EAB"
acct=$(sqlite3 "$T/agent.db" "SELECT account_url FROM nfs WHERE id = '$(cat "$T/eab2.nf")'")
[ -n "$acct" ] || fail "no account URL for the NF"
bound=$(sqlite3 "$T/acme.db" "SELECT account FROM eab_keys WHERE kid = '$kid'")
[ -n "$bound" ] && [ "${acct##*/}" = "$bound" ] || fail "EAB key bound to '$bound', the NF's account is $acct"
[ "$(sqlite3 "$T/acme.db" "SELECT eab_kid FROM accounts WHERE id = '$bound'")" = "$kid" ] || fail "account without eab_kid"
grep -q "event=account_created nf=$(cat "$T/eab2.nf") " "$T/agent.log" || fail "no account_created"
agent_stop
echo "test_agent_eab: ok"
