#!/usr/bin/env bash
# Per-NF external account binding (RFC 8555 §7.3.4) against a real
# certforge-acme with accounts.eab_required, which binds an EAB key to one
# account only: each NF registered with its own credential (`nf add
# --eab-kid --eab-hmac-key-file`, `nf import`) enrols with it, even though
# the shared acme.eab holds a wrong key (the NF's own wins); an NF with a
# wrong own key is refused by the server (EST 403 acme_refused, the
# problem in the agent's log) and the others are not affected; an NF
# without its own credential falls back to acme.eab. The command's
# operand errors (exit 2) and bad key files (exit 1), and the state
# file's mode (0600, refused when others may read it).
. "$CF_SOURCE_DIR/tests/agent/agent_env.sh"
export ACME_EXTRA='accounts = { eab_required = true; };'
agent_env_start
cd "$CF_SOURCE_DIR/tests/agent"

uuid() { cat /proc/sys/kernel/random/uuid; }
# eab_key NAME: a credential from certforge-acme's operator: $T/NAME.kid,
# $T/NAME.hmac (mode 0600)
eab_key() {
  local j
  j=$("$CF" acme eab add --config "$T/acme.conf" --json) || fail "certforge acme eab add"
  jq -r .kid <<<"$j" >"$T/$1.kid"
  (umask 077; jq -r .hmac_key <<<"$j" >"$T/$1.hmac")
}
# enrol NAME UUID DNS EXPECTED-STATUS: the NF with a bootstrap certificate
# asks /simpleenroll for DNS (again after 202/503, bounded); the body goes
# to $T/NAME.body, a certificate to $T/NAME.crt
enrol() {
  $PY - "$@" <<'PY'
import subprocess, sys
import est_client as e
name, nf, dns, want = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
subprocess.run(["bash", "-c", ". $CF_SOURCE_DIR/tests/agent/agent_env_pki.sh; bootstrap_cert %s %s" % (name, nf)],
               check=True)
k = e.new_key()
r, _ = e.enroll("simpleenroll", e.csr_der(k, None, [dns]), cert=(e.T + "/%s.pem" % name, e.T + "/%s.key" % name),
                expect=want)
open(e.T + "/%s.body" % name, "w").write(r.text)
if want == 200:
    c = e.p7_certs(r)[0]
    assert e.same_key(c, k)
    e.write_cert(c, e.T + "/%s.crt" % name)
PY
}
# cli_fails STATUS MESSAGE ARGS...: the command exits STATUS with MESSAGE on stderr
cli_fails() {
  local want=$1 msg=$2 st=0
  shift 2
  agent_cli "$@" >"$T/cli.out" 2>"$T/cli.err" || st=$?
  [ "$st" -eq "$want" ] || fail "'$*' exited $st, want $want: $(cat "$T/cli.err")"
  grep -qF -- "$msg" "$T/cli.err" || fail "'$*': stderr $(cat "$T/cli.err"), want '$msg'"
  [ ! -s "$T/cli.out" ] || fail "'$*' printed $(cat "$T/cli.out")"
}
not_registered() { ! agent_cli nf show "$1" >/dev/null 2>&1 || fail "NF $1 was registered by a refused 'nf add'"; }

# acme.eab: a real key id whose HMAC key is wrong, so an NF using it is refused
eab_key shared
agent_stop
(umask 077; openssl rand 32 | basenc --base64url | tr -d '=' >"$T/shared.hmac")
AGENT_ACME_EXTRA="eab = { kid = \"$(cat "$T/shared.kid")\"; hmac_key_file = \"$T/shared.hmac\"; };" agent_write_conf
agent_start

echo "== nf add: operand errors (2), bad key files and key ids (1)"
eab_key nf1
id=$(uuid)
cli_fails 2 "--eab-kid and --eab-hmac-key-file go together" nf add --nf-instance-id "$id" --eab-kid "$(cat "$T/nf1.kid")"
cli_fails 2 "--eab-kid and --eab-hmac-key-file go together" nf add --nf-instance-id "$id" --eab-hmac-key-file "$T/nf1.hmac"
cli_fails 2 "usage:" nf add --nf-instance-id "$id" --eab-kid
cp -p "$T/nf1.hmac" "$T/loose.hmac" && chmod 640 "$T/loose.hmac"
cli_fails 1 "--eab-hmac-key-file: $T/loose.hmac is readable by others (mode 0640): it holds the EAB HMAC key; chmod 600 it" \
  nf add --nf-instance-id "$id" --eab-kid "$(cat "$T/nf1.kid")" --eab-hmac-key-file "$T/loose.hmac"
(umask 077; echo 'not*base64url!' >"$T/bad.hmac"; openssl rand 16 | basenc --base64url | tr -d '=' >"$T/short.hmac")
cli_fails 1 "--eab-hmac-key-file: $T/bad.hmac does not hold a base64url EAB HMAC key (no padding) on one line" \
  nf add --nf-instance-id "$id" --eab-kid "$(cat "$T/nf1.kid")" --eab-hmac-key-file "$T/bad.hmac"
cli_fails 1 "--eab-hmac-key-file: the EAB HMAC key in $T/short.hmac has 16 octets; HS256 needs at least 32" \
  nf add --nf-instance-id "$id" --eab-kid "$(cat "$T/nf1.kid")" --eab-hmac-key-file "$T/short.hmac"
cli_fails 1 "--eab-hmac-key-file: cannot read $T/absent.hmac: No such file or directory" \
  nf add --nf-instance-id "$id" --eab-kid "$(cat "$T/nf1.kid")" --eab-hmac-key-file "$T/absent.hmac"
cli_fails 1 "--eab-kid: an EAB key id is 1-256 printable characters without spaces or quotes" \
  nf add --nf-instance-id "$id" --eab-kid 'a "quoted" id' --eab-hmac-key-file "$T/nf1.hmac"
not_registered "$id"
printf '{"nf_instance_id": "%s", "dns": ["x.%s"], "eab_kid": "%s"}\n' "$id" "$ZONE" "$(cat "$T/nf1.kid")" >"$T/half.jsonl"
cli_fails 1 "$T/half.jsonl:1: \"eab_kid\" and \"eab_hmac_key_file\" go together, as strings" nf import "$T/half.jsonl"
not_registered "$id"

echo "== three NFs, each with its own EAB credential (nf add, nf add, nf import)"
eab_key nf2
eab_key nf3
for n in 1 2 3; do
  echo "$(uuid)" >"$T/nf$n.id"
  echo "nf$n-$(head -c 4 "$T/nf$n.id").$ZONE" >"$T/nf$n.dns"
done
for n in 1 2; do
  agent_cli nf add --nf-instance-id "$(cat "$T/nf$n.id")" --dns "$(cat "$T/nf$n.dns")" --eab-kid "$(cat "$T/nf$n.kid")" \
    --eab-hmac-key-file "$T/nf$n.hmac" >"$T/nf$n.add" || fail "nf add nf$n"
  [ "$(jq -r .eab_kid "$T/nf$n.add")" = "$(cat "$T/nf$n.kid")" ] || fail "nf add nf$n printed $(cat "$T/nf$n.add")"
done
printf '{"nf_instance_id": "%s", "dns": ["%s"], "eab_kid": "%s", "eab_hmac_key_file": "%s"}\n' "$(cat "$T/nf3.id")" \
  "$(cat "$T/nf3.dns")" "$(cat "$T/nf3.kid")" "$T/nf3.hmac" >"$T/nf3.jsonl"
agent_cli nf import "$T/nf3.jsonl" >"$T/nf3.add" || fail "nf import nf3"
[ "$(jq -r .eab_kid "$T/nf3.add")" = "$(cat "$T/nf3.kid")" ] || fail "nf import printed $(cat "$T/nf3.add")"
[ "$(agent_cli nf show "$(cat "$T/nf3.id")" | jq -r .eab_kid)" = "$(cat "$T/nf3.kid")" ] || fail "nf show: no eab_kid"
# the state holds the HMAC keys: 0600 (its WAL too), and the key is never printed
[ "$(stat -c %a "$T/agent.db")" = 600 ] || fail "agent.db mode $(stat -c %a "$T/agent.db")"
[ ! -e "$T/agent.db-wal" ] || [ "$(stat -c %a "$T/agent.db-wal")" = 600 ] || fail "agent.db-wal mode"
grep -qF "$(cat "$T/nf1.hmac")" "$T"/nf*.add && fail "an HMAC key was printed"

echo "== an NF with a wrong own key: refused by the server, the others enrol"
eab_key bad
(umask 077; openssl rand 32 | basenc --base64url | tr -d '=' >"$T/bad.hmac")
uuid >"$T/bad.id"
agent_cli nf add --nf-instance-id "$(cat "$T/bad.id")" --dns "bad-nf.$ZONE" --eab-kid "$(cat "$T/bad.kid")" \
  --eab-hmac-key-file "$T/bad.hmac" >/dev/null || fail "nf add bad"
enrol nf1 "$(cat "$T/nf1.id")" "$(cat "$T/nf1.dns")" 200 || fail "nf1 did not enrol"
enrol bad "$(cat "$T/bad.id")" "bad-nf.$ZONE" 403 || fail "the NF with a wrong EAB key was not refused"
grep -q "^the ACME server refused the enrolment: newAccount: HTTP 403 unauthorized: externalAccountBinding: the MAC does not verify" \
  "$T/bad.body" || fail "EST answer with a wrong EAB key: $(cat "$T/bad.body")"
grep "event=enrolment_failed nf=$(cat "$T/bad.id") " "$T/agent.log" |
  grep -q 'error="newAccount: HTTP 403 unauthorized: externalAccountBinding: the MAC does not verify' ||
  fail "no unauthorized for the bad NF in the agent's log"
grep "op=simpleenroll status=403" "$T/agent.log" | tail -n 1 | grep -q "reason=acme_refused" || fail "EST log reason"
[ "$(last_problem /acme/new-account)" = unauthorized ] || fail "server: $(last_problem /acme/new-account)"
enrol nf2 "$(cat "$T/nf2.id")" "$(cat "$T/nf2.dns")" 200 || fail "nf2 did not enrol"
enrol nf3 "$(cat "$T/nf3.id")" "$(cat "$T/nf3.dns")" 200 || fail "nf3 did not enrol"
for n in 1 2 3; do
  openssl x509 -in "$T/nf$n.crt" -noout -ext subjectAltName | grep -q "DNS:$(cat "$T/nf$n.dns")$" ||
    fail "nf$n's certificate: $(openssl x509 -in "$T/nf$n.crt" -noout -ext subjectAltName)"
  acct=$(sqlite3 "$T/agent.db" "SELECT account_url FROM nfs WHERE id = '$(cat "$T/nf$n.id")'")
  bound=$(sqlite3 "$T/acme.db" "SELECT account FROM eab_keys WHERE kid = '$(cat "$T/nf$n.kid")'")
  [ -n "$acct" ] && [ "${acct##*/}" = "$bound" ] || fail "nf$n: its EAB key is bound to '$bound', its account is '$acct'"
done
[ "$(sqlite3 "$T/acme.db" "SELECT COUNT(DISTINCT account) FROM eab_keys WHERE account IS NOT NULL")" -eq 3 ] ||
  fail "not three accounts bound"
[ -z "$(sqlite3 "$T/acme.db" "SELECT account FROM eab_keys WHERE kid = '$(cat "$T/shared.kid")'")" ] ||
  fail "acme.eab's key was used"
for f in nf1 nf2 nf3 bad shared; do
  grep -qF "$(cat "$T/$f.hmac")" "$T/agent.log" && fail "an EAB HMAC key ($f) is in the log"
done

echo "== an NF without its own credential: acme.eab (here a wrong key)"
uuid >"$T/plain.id"
agent_cli nf add --nf-instance-id "$(cat "$T/plain.id")" --dns "plain-nf.$ZONE" >"$T/plain.add" || fail "nf add plain"
[ "$(jq -r '.eab_kid // "none"' "$T/plain.add")" = none ] || fail "nf add without EAB printed $(cat "$T/plain.add")"
enrol plain "$(cat "$T/plain.id")" "plain-nf.$ZONE" 403 || fail "the NF on acme.eab was not refused"
grep -q "^the ACME server refused the enrolment: newAccount: HTTP 403 unauthorized: externalAccountBinding: the MAC does not verify" \
  "$T/plain.body" || fail "EST answer on acme.eab: $(cat "$T/plain.body")"
# the same NF given its own credential afterwards enrols
eab_key plain
agent_cli nf add --nf-instance-id "$(cat "$T/plain.id")" --dns "plain-nf.$ZONE" --eab-kid "$(cat "$T/plain.kid")" \
  --eab-hmac-key-file "$T/plain.hmac" >/dev/null || fail "nf add plain with EAB"
enrol plain2 "$(cat "$T/plain.id")" "plain-nf.$ZONE" 200 || fail "plain with its own key did not enrol"
agent_stop

echo "== the state file: refused when others may read it"
chmod 644 "$T/agent.db"
cli_fails 1 "state.path: $T/agent.db is readable by others (mode 0644): it holds the NFs' account and EAB keys; chmod 600 it" nf list
chmod 600 "$T/agent.db"
agent_cli nf list >/dev/null || fail "nf list with a 0600 state"
echo "test_agent_eab_nf: ok"
