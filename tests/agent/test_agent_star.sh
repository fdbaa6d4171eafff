#!/usr/bin/env bash
# STAR certificates (RFC 8739) for an NF, against a real certforge-acme
# with STAR (60 s certificates, the next one made 35 s ahead): `nf add
# --star` makes the enrolment a STAR order; the agent fetches each new
# short-term certificate from the order's star-certificate URL before the
# current one passes half its life; /simplereenroll answers the latest
# (a CSR with another key: 403 star_key); `nf remove` cancels the order.
# About 40 s (one certificate period).
. "$CF_SOURCE_DIR/tests/agent/agent_env.sh"
export ACME_PROFILES_CONF='profiles = ( { name = "default"; certforged = "dns"; max_validity = "30d"; },
  { name = "nf"; certforged = "nf"; identifiers = ["NfInstanceId", "dns"]; nf_types = ["AMF", "SMF"]; },
  { name = "star"; certforged = "star"; } );'
export ACME_EXTRA='star = { enabled = true; min_lifetime = "60s"; max_duration = "1d"; renew_ahead = "35s"; scan_interval_ms = 100; };'
export AGENT_ACME_EXTRA='star_profile = "star";'
agent_env_start
cd "$CF_SOURCE_DIR/tests/agent"

# cli_fails STATUS MESSAGE ARGS...: the command exits STATUS with MESSAGE on stderr
cli_fails() {
  local want=$1 msg=$2 st=0
  shift 2
  agent_cli "$@" >"$T/cli.out" 2>"$T/cli.err" || st=$?
  [ "$st" -eq "$want" ] || fail "'$*' exited $st, want $want: $(cat "$T/cli.err")"
  grep -qF -- "$msg" "$T/cli.err" || fail "'$*': stderr $(cat "$T/cli.err"), want '$msg'"
}
nf=$(cat /proc/sys/kernel/random/uuid)
dns="star-$(head -c 8 <<<"$nf").$ZONE"

echo "== nf add --star: bad lifetimes refused"
cli_fails 1 "--star '10s': a STAR certificate lifetime is a duration from 60s to 365d" nf add --nf-instance-id "$nf" --star 10s
cli_fails 1 "--star 'soon': a STAR certificate lifetime is a duration" nf add --nf-instance-id "$nf" --star soon
printf '{"nf_instance_id": "%s", "dns": ["%s"], "star": 60}\n' "$nf" "$dns" >"$T/star.jsonl"
cli_fails 1 "$T/star.jsonl:1: \"star\" is a lifetime string" nf import "$T/star.jsonl"
cli_fails 2 "usage:" nf add --nf-instance-id "$nf" --star
! agent_cli nf show "$nf" >/dev/null 2>&1 || fail "a refused nf add registered the NF"
agent_cli nf add --nf-instance-id "$nf" --dns "$dns" --star 60s >"$T/add.out" || fail "nf add --star"
[ "$(jq -r .star_lifetime "$T/add.out")" = 60 ] || fail "nf add printed $(cat "$T/add.out")"

echo "== enrolment: a STAR order, its first certificate"
$PY - "$nf" "$dns" <<'PY' || fail "STAR enrolment"
import subprocess, sys
import est_client as e
nf, dns = sys.argv[1], sys.argv[2]
subprocess.run(["bash", "-c", ". $CF_SOURCE_DIR/tests/agent/agent_env_pki.sh; bootstrap_cert star-boot %s" % nf], check=True)
k = e.new_key()
e.write_key(k, e.T + "/star.key")
r, _ = e.enroll("simpleenroll", e.csr_der(k, None, [dns]), cert=(e.T + "/star-boot.pem", e.T + "/star-boot.key"))
c = e.p7_certs(r)[0]
assert e.same_key(c, k) and e.sans(c) == ["DNS:" + dns], e.sans(c)
e.write_cert(c, e.T + "/star1.pem")
PY
order=$(agent_cli nf show "$nf" | jq -r .star.order)
[ -n "$order" ] && [ "$order" != null ] || fail "no STAR order recorded: $(agent_cli nf show "$nf")"
[ "$(sqlite3 "$T/acme.db" "SELECT star_lifetime FROM orders WHERE id = '${order##*/}'")" = 60 ] ||
  fail "the order is not a STAR order of 60 s"
lifetime() { echo $(( $(date -d "$(openssl x509 -in "$1" -noout -enddate | cut -d= -f2)" +%s) -
                      $(date -d "$(openssl x509 -in "$1" -noout -startdate | cut -d= -f2)" +%s) )); }
[ "$(lifetime "$T/star1.pem")" -le 120 ] || fail "not a short-term certificate: $(lifetime "$T/star1.pem") s"

echo "== the next certificate, fetched from star-certificate"
for _ in $(seq 1 900); do
  grep -q "event=renewed nf=$nf .* star=yes" "$T/agent.log" && break
  sleep 0.1
done
grep -q "event=renewed nf=$nf .* star=yes" "$T/agent.log" || fail "no second STAR certificate fetched in 90 s"
[ "$(sqlite3 "$T/agent.db" "SELECT COUNT(*) FROM certs WHERE nf = '$nf'")" -ge 2 ] || fail "one certificate in the state"
# each certificate's next one is fetched from 40 % of its life on (before half)
[ "$(sqlite3 "$T/agent.db" "SELECT COUNT(*) FROM certs WHERE nf = '$nf' AND
     renew_at != not_before + CAST((not_after - not_before) * 0.4 AS INTEGER)")" -eq 0 ] ||
  fail "STAR fetch times: $(sqlite3 "$T/agent.db" "SELECT not_before, renew_at, not_after FROM certs WHERE nf = '$nf'")"
grep -q "event=acme_retry nf=$nf .*no certificate newer than the current one yet" "$T/agent.log" ||
  echo "(the next certificate was there at the first fetch)"

echo "== /simplereenroll answers the latest; another key: 403 star_key"
$PY - "$dns" <<'PY' || fail "re-enrolment"
import sqlite3, sys, time
import est_client as e
from cryptography import x509
from cryptography.hazmat.primitives import serialization
dns = sys.argv[1]
k = serialization.load_pem_private_key(open(e.T + "/star.key", "rb").read(), None)
c1 = x509.load_pem_x509_certificate(open(e.T + "/star1.pem", "rb").read())
tls = (e.T + "/star1.pem", e.T + "/star.key")
r, _ = e.enroll("simplereenroll", e.csr_der(k, None, [dns]), cert=tls)
c2 = e.p7_certs(r)[0]
e.write_cert(c2, e.T + "/star2.pem")
db = sqlite3.connect(e.T + "/agent.db")
latest = db.execute("SELECT der FROM certs ORDER BY not_after DESC LIMIT 1").fetchone()[0]
assert c2.public_bytes(serialization.Encoding.DER) == latest, "not the latest certificate"
assert c2.serial_number != c1.serial_number
assert e.same_key(c2, k) and e.sans(c2) == ["DNS:" + dns]
assert c1.not_valid_before < c2.not_valid_before <= c1.not_valid_after < c2.not_valid_after, \
    (c1.not_valid_before, c1.not_valid_after, c2.not_valid_before, c2.not_valid_after)
r = e.post("simplereenroll", e.csr_der(e.new_key(), None, [dns]), cert=tls)
assert r.status_code == 403 and "holds a STAR order (RFC 8739) for another public key" in r.text, (r.status_code, r.text)
time.sleep(0.3)
last = [l for l in open(e.T + "/agent.log") if " op=simplereenroll" in l][-1]
assert " reason=star_key " in last, last
PY
for n in 1 2; do openssl verify -CAfile "$T/root.pem" -untrusted "$T/nf-ca.pem" "$T/star$n.pem" >/dev/null ||
  fail "star$n.pem does not verify"; done

echo "== nf remove cancels the order"
agent_stop
cp -p "$T/agent.db" "$T/agent.db.before-remove"
# (in_ns: the ACME server's name resolves there, as for the daemon)
nf_remove() { in_ns timeout -s KILL 60 "$CF_BUILD_DIR/certforge-agent" --config "$AGENT_CONF" nf remove "$nf"; }
nf_remove >"$T/rm.out" 2>"$T/rm.err" || fail "nf remove: $(cat "$T/rm.err")"
[ "$(jq -r .star_order_canceled "$T/rm.out")" = "$order" ] || fail "nf remove printed $(cat "$T/rm.out")"
grep -q "event=star_canceled nf=$nf order=$order" "$T/rm.err" || fail "no star_canceled line: $(cat "$T/rm.err")"
[ "$(sqlite3 "$T/acme.db" "SELECT status FROM orders WHERE id = '${order##*/}'")" = canceled ] || fail "order not canceled"
grep "path=/acme/order/${order##*/} " "$T/acme.log" | tail -n 1 | grep -q "status=200" || fail "the cancellation's answer"
! agent_cli nf show "$nf" >/dev/null 2>&1 || fail "the NF is still registered"
cli_fails 1 "NF $nf is not registered" nf remove "$nf"
# an earlier nf remove that canceled the order but did not reach the state:
# the server refuses the second cancellation (autoRenewalCancellationInvalid),
# the order reads canceled, the NF is removed
mv "$T/agent.db.before-remove" "$T/agent.db"
nf_remove >"$T/rm2.out" 2>"$T/rm2.err" || fail "nf remove of an already canceled order: $(cat "$T/rm2.err")"
[ "$(jq -r .star_order_canceled "$T/rm2.out")" = "$order" ] || fail "second nf remove printed $(cat "$T/rm2.out")"
grep "path=/acme/order/${order##*/} " "$T/acme.log" | tail -n 2 | head -n 1 |
  grep -q "status=403 .*problem=autoRenewalCancellationInvalid " ||
  fail "server: $(grep "path=/acme/order/${order##*/} " "$T/acme.log" | tail -n 2)"
! agent_cli nf show "$nf" >/dev/null 2>&1 || fail "the NF is still registered after the second nf remove"
echo "test_agent_star: ok"
