#!/usr/bin/env bash
# certforge issue / status / csr-gen / revoke / crl against a real certforged started here
# on a throwaway SoftHSM2 token (root + NF intermediate made with
# `certforge ca`): one CSR with every flag, checked with openssl; --chain; a
# batch of 200 with a broken CSR and an unauthorized SAN; status --json;
# the errors a user meets (daemon not running, unknown or ungranted
# profile, bad CSR file). Every wait is bounded; the daemon is stopped by
# its PID.
#
#   test_cli_issue.sh /path/to/certforge /path/to/certforged
set -uo pipefail

CF=${1:?usage: test_cli_issue.sh /path/to/certforge /path/to/certforged}
CFD=${2:?usage: test_cli_issue.sh /path/to/certforge /path/to/certforged}
. "$(dirname "$0")/../support/cli_env.sh"
cli_env_init issue issue-test

# --- CA: root and NF intermediate in the token --------------------------------
"$CF" keys generate --type ec-p256 --label root >/dev/null || { echo "FAIL: keys generate root"; exit 1; }
"$CF" keys generate --type ec-p256 --label nf-ca >/dev/null || { echo "FAIL: keys generate nf-ca"; exit 1; }
"$CF" ca init-root --key "pkcs11:token=issue-test;object=root" \
  --subject "/C=FI/O=certforge test/CN=Test Root CA" --out root.pem >/dev/null || { echo "FAIL: init-root"; exit 1; }
"$CF" ca init-intermediate --key "pkcs11:token=issue-test;object=nf-ca" \
  --issuer-key "pkcs11:token=issue-test;object=root" --issuer-cert root.pem \
  --subject "/C=FI/O=5gc.mnc001.mcc001.3gppnetwork.org/CN=Test NF CA" --pathlen 0 \
  --out nf-ca.pem >/dev/null || { echo "FAIL: init-intermediate"; exit 1; }

# --- certforged ---------------------------------------------------------------------
SOCK=$D/cf.sock
cat > certforged.conf <<CONF
tokens = ( { name = "ca"; uri = "$CERTFORGE_TOKEN"; } );
keys = ( { name = "nf-ca"; token = "ca"; uri = "pkcs11:object=nf-ca"; sessions = 2; } );
issuers = ( { name = "nf-ca"; key = "nf-ca"; certificate = "nf-ca.pem"; chain = "root.pem"; } );
profiles = (
  { name = "nf"; type = "nf"; issuer = "nf-ca";
    subject = { C = "FI"; O = "5gc.mnc001.mcc001.3gppnetwork.org"; };
    validity = { default = "90d"; max = "365d"; };
    eku = ["serverAuth", "clientAuth"];
    crl_dp = "http://crl.5gc.mnc001.mcc001.3gppnetwork.org/nf-ca.crl";
    nf_types = ["AMF", "SMF", "UPF"]; },
  { name = "nf-other"; type = "nf"; issuer = "nf-ca";
    subject = { C = "FI"; O = "5gc.mnc001.mcc001.3gppnetwork.org"; };
    eku = ["serverAuth"];
    crl_dp = "http://crl.5gc.mnc001.mcc001.3gppnetwork.org/nf-ca.crl"; }
);
pipeline = { workers = 2; queue = 1024; batch = 16; };
log = { level = "info"; };
server = { socket = "$SOCK"; socket_mode = "0600"; };
grants = ( { uid = $(id -u); profiles = ["nf"]; ops = ["issue", "status", "keys", "revoke", "crl"]; } );
ledger = { backend = "sqlite"; path = "ledger.db"; };
crl = { dir = "crl"; interval = "1h"; validity = "1d"; revoke_delay = "1s"; };
CONF
mkdir crl
"$CFD" --config certforged.conf >certforged.log 2>&1 &
DPID=$!
ready=0
for _ in $(seq 1 300); do
  if grep -q "certforged: ready socket=$SOCK" certforged.log; then ready=1; break; fi
  kill -0 "$DPID" 2>/dev/null || break
  sleep 0.1
done
if [ $ready -ne 1 ]; then
  echo "FAIL: certforged not ready within 30 s; its log:" >&2
  cat certforged.log >&2
  exit 1
fi
export CERTFORGE_SOCKET=$SOCK

# --- one CSR, every flag ------------------------------------------------------------
ID=6f1c2a6e-8c0e-4e0b-9a7e-2f1d3c4b5a69
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout amf1.key \
  -subj "/C=FI/O=5gc.mnc001.mcc001.3gppnetwork.org" \
  -addext "subjectAltName=URI:urn:uuid:$ID,DNS:amf1.5gc.mnc001.mcc001.3gppnetwork.org" \
  -outform DER -out amf1.csr.der 2>/dev/null || { echo "FAIL: openssl req"; exit 1; }
check "issue one DER CSR with every flag" \
  "$CF" issue --socket "$SOCK" --csr amf1.csr.der --profile nf --nf-instance-id "$ID" \
  --dns amf1.5gc.mnc001.mcc001.3gppnetwork.org --dns amf1-alt.5gc.mnc001.mcc001.3gppnetwork.org \
  --nf-type AMF --nf-type SMF --validity 30d --requester cli-test --out amf1.pem >issued.txt
# what was written, on standard output: the serial (the ledger's form) and notAfter
want="issued $(openssl x509 -in amf1.pem -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f'), not after $(date -u -d "$(openssl x509 -in amf1.pem -noout -enddate | cut -d= -f2)" +%Y-%m-%dT%H:%M:%SZ): amf1.pem"
[ "$(cat issued.txt)" = "$want" ] && ok || fail "issue --out printed '$(cat issued.txt)', want '$want'"
ext=$(openssl x509 -in amf1.pem -noout -ext subjectAltName,keyUsage,extendedKeyUsage 2>&1)
for want in "URI:urn:uuid:$ID" "DNS:amf1.5gc.mnc001.mcc001.3gppnetwork.org" \
            "DNS:amf1-alt.5gc.mnc001.mcc001.3gppnetwork.org" "Digital Signature" \
            "TLS Web Server Authentication" "TLS Web Client Authentication"; do
  grep -qF -- "$want" <<<"$ext" && ok || fail "amf1.pem lacks '$want': $ext"
done
grep -q "X509v3 Key Usage: critical" <<<"$ext" && ok || fail "keyUsage not critical: $ext"
check "amf1.pem verifies (x509_strict, sslserver)" \
  openssl verify -x509_strict -purpose sslserver -CAfile root.pem -untrusted nf-ca.pem amf1.pem
nb=$(date -d "$(openssl x509 -in amf1.pem -noout -startdate | cut -d= -f2)" +%s)
na=$(date -d "$(openssl x509 -in amf1.pem -noout -enddate | cut -d= -f2)" +%s)
span=$((na - nb))
# 30 days plus the profile's backdate (60 s by default)
[ "$span" -ge $((30 * 86400)) ] && [ "$span" -le $((30 * 86400 + 3600)) ] && ok \
  || fail "validity span $span s, want 30 days (+ backdate)"
[ "$(grep -c 'BEGIN CERTIFICATE' amf1.pem)" -eq 1 ] && ok || fail "amf1.pem: more than one certificate without --chain"
openssl x509 -in amf1.pem -noout -subject | grep -q "5gc.mnc001.mcc001.3gppnetwork.org" && ok \
  || fail "amf1.pem subject lacks the home network domain"

# --json: one object on stdout, checked against the certificate written
iso() { date -u -d "$1" +%Y-%m-%dT%H:%M:%SZ; }
serial_of() { openssl x509 -in "$1" -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f'; }
enddate_of() { iso "$(openssl x509 -in "$1" -noout -enddate | cut -d= -f2)"; }
if "$CF" issue --csr amf1.csr.der --profile nf --nf-instance-id "$ID" --dns amf1.5gc.mnc001.mcc001.3gppnetwork.org \
     --nf-type AMF --out amf1j.pem --json >issued.json 2>"$D/err"; then
  ok
  [ ! -s "$D/err" ] && jq -e --arg s "$(serial_of amf1j.pem)" --arg na "$(enddate_of amf1j.pem)" \
    --arg nb "$(iso "$(openssl x509 -in amf1j.pem -noout -startdate | cut -d= -f2)")" \
    '.serial == $s and .not_after == $na and .not_before == $nb and .profile == "nf" and .out == "amf1j.pem"
     and (.issuer | test("CN=Test NF CA")) and (.subject | test("O=5gc.mnc001")) and (has("certificate") | not)' \
    issued.json >/dev/null && ok || fail "issue --json --out: $(cat issued.json "$D/err")"
else
  fail "issue --json --out: $(cat "$D/err")"
fi
# without --out the PEM is in "certificate" (with --chain: the chain after it)
if "$CF" issue --csr amf1.csr.der --profile nf --nf-instance-id "$ID" --dns amf1.5gc.mnc001.mcc001.3gppnetwork.org --nf-type AMF --chain --json >issued2.json 2>"$D/err"; then
  ok
  jq -r .certificate issued2.json >amf1j2.pem
  [ "$(grep -c 'BEGIN CERTIFICATE' amf1j2.pem)" -ge 2 ] &&
    jq -e --arg s "$(serial_of amf1j2.pem)" --arg na "$(enddate_of amf1j2.pem)" \
      '.serial == $s and .not_after == $na and .out == null' issued2.json >/dev/null && ok \
    || fail "issue --json without --out: $(cat issued2.json)"
else
  fail "issue --json without --out: $(cat "$D/err")"
fi
expect 2 "issue: --json is for one CSR; a batch writes JSON lines with --results FILE" "$CF" issue --batch batch.jsonl --json
expect 2 "option '--json=yes' is unknown or needs an argument" "$CF" issue --csr amf1.csr.der --profile nf --json=yes
expect 1 "amf1j.pem exists; use --force to replace it" "$CF" issue --csr amf1.csr.der --profile nf --nf-instance-id "$ID" --nf-type AMF --out amf1j.pem --json
[ ! -s "$D/out" ] && ok || fail "a refused issue --json printed: $(cat "$D/out")"

# PEM input, default output on stdout, --chain
openssl req -in amf1.csr.der -inform DER -out amf1.csr.pem 2>/dev/null
if "$CF" issue --csr amf1.csr.pem --profile nf --nf-instance-id "$ID" \
     --dns amf1.5gc.mnc001.mcc001.3gppnetwork.org --nf-type AMF --chain >chain.pem 2>"$D/err"; then
  ok
  n=$(grep -c 'BEGIN CERTIFICATE' chain.pem)
  [ "$n" -ge 2 ] && ok || fail "--chain: $n certificate(s) in the PEM, want the chain too"
  issuer2=$(awk '/BEGIN CERT/{n++} n==2' chain.pem | openssl x509 -noout -subject 2>/dev/null)
  grep -q "Test NF CA" <<<"$issuer2" && ok || fail "--chain: second certificate is not the issuer: $issuer2"
  check "--chain PEM verifies with its own chain" \
    openssl verify -x509_strict -purpose sslserver -CAfile root.pem -untrusted chain.pem chain.pem
else
  fail "issue --chain to stdout: $(cat "$D/err")"
fi

# --- batch of 200: one broken CSR, one unauthorized SAN -----------------------------
check "csr-gen 200" "$CF" csr-gen --count 200 --out-dir csrs --batch-out batch.jsonl
[ "$(wc -l <batch.jsonl)" -eq 200 ] && ok || fail "batch.jsonl has $(wc -l <batch.jsonl) lines"
# line 57: the CSR's signature no longer matches (one octet of it flipped)
csr57=$(sed -n 57p batch.jsonl | jq -r .csr)
openssl req -in "$csr57" -outform DER -out broken.der 2>/dev/null
len=$(stat -c %s broken.der)
b=$(od -An -tu1 -j $((len - 3)) -N1 broken.der | tr -d ' ')
printf "$(printf '\\%03o' $((b ^ 1)))" | dd of=broken.der bs=1 seek=$((len - 3)) conv=notrunc 2>/dev/null
openssl req -inform DER -in broken.der -out broken.csr.pem 2>/dev/null
# line 123: the front end authorized another name than the CSR asks for
jq -c --arg b "$D/broken.csr.pem" 'if input_line_number == 57 then .csr = $b
  elif input_line_number == 123 then .dns = ["other.5gc.mnc001.mcc001.3gppnetwork.org"]
  else . end' batch.jsonl > batch2.jsonl
rc=0
"$CF" issue --batch batch2.jsonl --out-dir certs --requester batch-test >summary.txt 2>batch.err || rc=$?
[ $rc -eq 1 ] && ok || fail "batch with 2 bad lines: exit $rc, want 1; $(cat batch.err)"
[ "$(wc -l <batch.err)" -eq 2 ] && ok || fail "batch: want 2 lines on stderr: $(cat batch.err)"
grep -q "^certforge: issue: line 57: BAD_CSR: " batch.err && ok || fail "no BAD_CSR line for line 57: $(cat batch.err)"
grep -q "^certforge: issue: line 123: POLICY_DENIED: .*amf-" batch.err && ok \
  || fail "no POLICY_DENIED line naming the SAN for line 123: $(cat batch.err)"
grep -q "^issued 198 of 200 certificates in .* s: .* certificates/s$" summary.txt && ok \
  || fail "summary: $(cat summary.txt)"
grep -qx "failed 2: BAD_CSR 1, POLICY_DENIED 1" summary.txt && ok || fail "summary: $(cat summary.txt)"
n=$(ls certs | wc -l)
[ "$n" -eq 198 ] && ok || fail "certs/: $n files, want 198"
[ ! -e certs/nf-000057.pem ] && [ ! -e certs/nf-000123.pem ] && ok || fail "a failed line left a file"
verified=$(openssl verify -x509_strict -purpose sslserver -CAfile root.pem -untrusted nf-ca.pem certs/*.pem 2>&1 | grep -c ': OK$')
[ "$verified" -eq 198 ] && ok || fail "batch: $verified of 198 certificates verify"
# each certificate carries its own line's identifiers
id10=$(sed -n 10p batch.jsonl | jq -r .nf_instance_id)
openssl x509 -in certs/nf-000010.pem -noout -ext subjectAltName | grep -qF "URI:urn:uuid:$id10" && ok \
  || fail "certs/nf-000010.pem lacks its line's NF instance ID"
# a line that cannot become a request fails alone, with its line number
printf '%s\n' "$(sed -n 1p batch.jsonl)" '{"csr": "nope.pem", "profile": "nf"}' 'not json' \
  '{"csr": "x", "dsn": ["a"]}' > bad.jsonl
rc=0
"$CF" issue --batch bad.jsonl --out-dir certs-bad >/dev/null 2>bad.err || rc=$?
[ $rc -eq 1 ] && ok || fail "bad lines: exit $rc, want 1"
grep -q "line 2: INVALID_REQUEST: cannot read CSR .*nope.pem" bad.err && ok || fail "line 2: $(cat bad.err)"
grep -q "line 3: INVALID_REQUEST: not a JSON object" bad.err && ok || fail "line 3: $(cat bad.err)"
grep -q "line 4: INVALID_REQUEST: unknown key \"dsn\"" bad.err && ok || fail "line 4: $(cat bad.err)"
[ -s certs-bad/nf-000001.pem ] && ok || fail "the good line of bad.jsonl was not issued"

# --- issue --batch --results: one JSON line per request ------------------------------------
{ sed -n 1p batch.jsonl | jq -c '.id = "amf-one"'; sed -n 2p batch.jsonl | jq -c '.id = 42'
  echo; sed -n 3p batch.jsonl | jq -c '.csr = "nope.pem"'; sed -n 57p batch2.jsonl | jq -c '.id = "broken"'
  sed -n 5p batch.jsonl; } > res.jsonl
rc=0
"$CF" issue --batch res.jsonl --out-dir rcerts --results results.jsonl >rsum.txt 2>rerr.txt || rc=$?
[ $rc -eq 1 ] && [ "$(wc -l <results.jsonl)" -eq 5 ] && grep -q "^issued 3 of 5 " rsum.txt && ok \
  || fail "--results: exit $rc; $(cat rsum.txt rerr.txt results.jsonl)"
jq -e -s 'map(.line) | sort == [1,2,4,5,6]' results.jsonl >/dev/null && ok || fail "--results lines: $(jq -c .line results.jsonl | tr '\n' ' ')"
r1=$(jq -c 'select(.line == 1)' results.jsonl)
jq -e --arg s "$(serial_of rcerts/nf-000001.pem)" --arg na "$(enddate_of rcerts/nf-000001.pem)" \
  '.id == "amf-one" and .status == "issued" and .serial == $s and .not_after == $na and .path == "rcerts/nf-000001.pem" and .message == null' \
  <<<"$r1" >/dev/null && ok || fail "--results line 1: $r1"
jq -e -s '(map(select(.line == 2))[0] | .id == 42 and .status == "issued")
  and (map(select(.line == 4))[0] | .status == "INVALID_REQUEST" and .serial == null and (.message | test("nope.pem")) and (has("id") | not))
  and (map(select(.line == 5))[0] | .id == "broken" and .status == "BAD_CSR" and .not_after == null and .path == "rcerts/nf-000057.pem")
  and (map(select(.line == 6))[0] | .status == "issued" and (has("id") | not))' results.jsonl >/dev/null && ok \
  || fail "--results lines 2, 4, 5, 6: $(cat results.jsonl)"
# again into the same folder, results on stdout: every line FILE_EXISTS, nothing sent, summary on stderr
issued_before=$("$CF" status --json | jq -r .issued)
rc=0
"$CF" issue --batch res.jsonl --out-dir rcerts --results - >rout.jsonl 2>rerr.txt || rc=$?
[ $rc -eq 1 ] && [ "$(jq -s 'map(select(.status == "FILE_EXISTS")) | length' rout.jsonl)" -eq 3 ] &&
  jq -e -s 'length == 5' rout.jsonl >/dev/null && grep -q "^issued 0 of 5 " rerr.txt &&
  grep -qx "failed 5: BAD_CSR 1, INVALID_REQUEST 1, FILE_EXISTS 3" rerr.txt &&
  [ "$("$CF" status --json | jq -r .issued)" = "$issued_before" ] && ok || fail "--results - over existing files: exit $rc; $(cat rout.jsonl rerr.txt)"
jq -e -s 'map(select(.line == 1))[0] | .message == "rcerts/nf-000001.pem exists; use --force to replace it"' rout.jsonl >/dev/null && ok \
  || fail "--results FILE_EXISTS message: $(cat rout.jsonl)"
expect 2 "option '--force=x' is unknown" "$CF" issue --batch res.jsonl --out-dir rcerts --force=x
expect 1 "results.jsonl exists; use --force to replace it" "$CF" issue --batch res.jsonl --out-dir rcerts2 --results results.jsonl
[ ! -e rcerts2/nf-000001.pem ] && ok || fail "a refused --results still issued"
cp results.jsonl results.before
rc=0
"$CF" issue --batch res.jsonl --out-dir rcerts --results results.jsonl --force >/dev/null 2>rerr.txt || rc=$?
[ $rc -eq 1 ] && [ "$(jq -s 'map(select(.status == "issued")) | length' results.jsonl)" -eq 3 ] && ! cmp -s results.jsonl results.before && ok \
  || fail "--results --force: exit $rc; $(cat results.jsonl rerr.txt)"
expect 2 "option '--results' is unknown or needs an argument" "$CF" issue --batch res.jsonl --results
expect 2 "issue: --results needs a file name" "$CF" issue --batch res.jsonl --results ""
expect 2 "issue: --results is for --batch" "$CF" issue --csr amf1.csr.der --profile nf --results r.jsonl
printf '%s\n' "$(sed -n 1p batch.jsonl | jq -c '.id = [1]')" > badid.jsonl
rc=0
"$CF" issue --batch badid.jsonl --out-dir rcerts3 --results badid.res >/dev/null 2>rerr.txt || rc=$?
[ $rc -eq 1 ] && grep -q 'line 1: INVALID_REQUEST: "id" must be a non-empty string or an integer' rerr.txt &&
  jq -e '.status == "INVALID_REQUEST" and (has("id") | not)' badid.res >/dev/null && ok || fail "bad id: exit $rc; $(cat rerr.txt badid.res)"

# --- status -------------------------------------------------------------------------------
if "$CF" status --json >status.json 2>"$D/err"; then
  ok
  check "status --json: counters are numbers" jq -e >/dev/null '(.uptime_s|type=="number") and (.issued|type=="number")
     and (.rate_per_s|type=="number") and (.queue_depth|type=="number")
     and (.hsm_sessions_total|type=="number") and (.hsm_sessions_busy|type=="number")' status.json
  check "status --json: issued counts this test's certificates" jq -e >/dev/null '.issued >= 201' status.json
  check "status --json: errors by status" jq -e >/dev/null '.errors.BAD_CSR >= 1 and .errors.POLICY_DENIED >= 1' status.json
else
  fail "status --json: $(cat "$D/err")"
fi
"$CF" status >status.txt 2>"$D/err" && ok || fail "status: $(cat "$D/err")"
grep -q "^HSM sessions .* busy of " status.txt && grep -q "^errors .*BAD_CSR" status.txt && ok \
  || fail "status text: $(cat status.txt)"

# --- revoke, CRLs ------------------------------------------------------------------------------
[ -s crl/nf-ca.crl ] && ok || fail "no CRL published at start-up in crl/nf-ca.crl"
s10=$(openssl x509 -in certs/nf-000010.pem -noout -serial | cut -d= -f2)
s11=$(openssl x509 -in certs/nf-000011.pem -noout -serial | cut -d= -f2)
if "$CF" revoke --serial "$s10" --reason keyCompromise --requester cli-test >rev.txt 2>"$D/err"; then
  ok
  grep -qi "^revoked $s10 since 20.*Z reason keyCompromise$" rev.txt && ok || fail "revoke output: $(cat rev.txt)"
else
  fail "revoke: $(cat "$D/err")"
fi
check "revoke with ':' separators and another reason" "$CF" revoke --serial "$(sed 's/../&:/g; s/:$//' <<<"$s11")" --reason superseded
# a repeated revocation keeps the first one and says so
"$CF" revoke --serial "$s10" --reason superseded >rev2.txt 2>"$D/err" && ok || fail "repeat revoke: $(cat "$D/err")"
grep -q "reason keyCompromise" rev2.txt && grep -q "first revocation stands" "$D/err" && ok \
  || fail "repeat revoke: $(cat rev2.txt) / $(cat "$D/err")"
"$CF" crl --issuer nf-ca --new --out new.crl --der >crlsum.txt 2>"$D/err" && ok || fail "crl --new: $(cat "$D/err")"
grep -q "^new.crl: CRL number [0-9]* of issuer nf-ca, 2 revoked, next update 20" crlsum.txt && ok \
  || fail "crl --new summary: $(cat crlsum.txt)"
check "the CRL verifies with the issuer's certificate" openssl crl -inform DER -in new.crl -CAfile nf-ca.pem -noout -verify
crltext=$(openssl crl -inform DER -in new.crl -noout -text 2>&1)
for want in "Version 2" "CRL Number:" "Authority Key Identifier" "Key Compromise" "Superseded" \
            "Serial Number: $s10" "Serial Number: $s11"; do
  grep -qiF -- "$want" <<<"$crltext" && ok || fail "CRL text lacks '$want'"
done
# the published file follows within revoke_delay; PEM from the daemon on stdout
sleep 1.5
check "the published CRL verifies" openssl crl -inform DER -in crl/nf-ca.crl -CAfile nf-ca.pem -noout -verify
"$CF" crl --issuer nf-ca >latest.pem 2>"$D/err" && grep -q "BEGIN X509 CRL" latest.pem && ok || fail "crl to stdout: $(cat "$D/err")"
cat root.pem nf-ca.pem > bundle.pem
openssl crl -inform DER -in new.crl -out new.crl.pem
rc=0
openssl verify -crl_check -CAfile bundle.pem -CRLfile new.crl.pem certs/nf-000010.pem >v.txt 2>&1 || rc=$?
[ $rc -ne 0 ] && grep -q "certificate revoked" v.txt && ok || fail "verify -crl_check accepted a revoked certificate: $(cat v.txt)"
check "verify -crl_check accepts an unrevoked certificate" \
  openssl verify -crl_check -CAfile bundle.pem -CRLfile new.crl.pem certs/nf-000012.pem
nrev=$("$CF" ledger list --db ledger.db --revoked | wc -l)
[ "$nrev" -eq 2 ] && ok || fail "ledger list --revoked: $nrev lines, want 2"

# --- --json: revoke, crl, ledger show/list ------------------------------------------------
s13=$(serial_of certs/nf-000013.pem)
if "$CF" revoke --serial "$s13" --reason cessationOfOperation --json >rev.json 2>"$D/err"; then
  ok
  [ ! -s "$D/err" ] && jq -e --arg s "$s13" '.serial == $s and .reason == "cessationOfOperation"
     and (.revoked_at | test("^20[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$")) and .already_revoked == false' \
    rev.json >/dev/null && ok || fail "revoke --json: $(cat rev.json "$D/err")"
else
  fail "revoke --json: $(cat "$D/err")"
fi
"$CF" revoke --serial "$s13" --reason superseded --json >rev2.json 2>"$D/err" && [ ! -s "$D/err" ] &&
  jq -e --slurpfile a rev.json '.already_revoked == true and .reason == "cessationOfOperation" and .revoked_at == $a[0].revoked_at' rev2.json >/dev/null \
  && ok || fail "repeat revoke --json: $(cat rev2.json "$D/err")"
expect 2 "option '--json=1' is unknown" "$CF" revoke --serial "$s13" --json=1
if "$CF" crl --issuer nf-ca --new --out j.crl --der --json >crl.json 2>"$D/err"; then
  ok
  num=$(openssl crl -inform DER -in j.crl -noout -crlnumber | cut -d= -f2)
  jq -e --argjson n "$((16#$num))" --arg tu "$(iso "$(openssl crl -inform DER -in j.crl -noout -lastupdate | cut -d= -f2)")" \
    --arg nu "$(iso "$(openssl crl -inform DER -in j.crl -noout -nextupdate | cut -d= -f2)")" \
    '.issuer == "nf-ca" and (.issuer_dn | test("CN=Test NF CA")) and .number == $n and .this_update == $tu
     and .next_update == $nu and .entries == 3 and .out == "j.crl" and (has("crl") | not)' crl.json >/dev/null && ok \
    || fail "crl --json: $(cat crl.json)"
else
  fail "crl --json: $(cat "$D/err")"
fi
"$CF" crl --issuer nf-ca --json >crl2.json 2>"$D/err" && jq -r .crl crl2.json | openssl crl -noout 2>/dev/null &&
  jq -e '.out == null and .entries >= 0' crl2.json >/dev/null && ok || fail "crl --json to stdout: $(cat crl2.json "$D/err")"
expect 1 "j.crl exists; use --force to replace it" "$CF" crl --issuer nf-ca --new --out j.crl --der --json
if "$CF" ledger list --db ledger.db --revoked --json >list.json 2>"$D/err"; then
  ok
  jq -e --arg s "$s13" 'length == 3 and (map(.status) | unique) == ["revoked"] and any(.[]; .serial == $s)' list.json >/dev/null \
    && ok || fail "ledger list --json: $(cat list.json)"
  # the same fields as the export's JSON lines
  [ "$(jq -c '.[0] | keys_unsorted' list.json)" = "$("$CF" ledger export --db ledger.db --format jsonl --limit 1 | jq -c keys_unsorted)" ] \
    && ok || fail "ledger list --json fields differ from export jsonl: $(jq -c '.[0] | keys_unsorted' list.json)"
else
  fail "ledger list --json: $(cat "$D/err")"
fi
[ "$("$CF" ledger list --db ledger.db --profile nope --json 2>/dev/null)" = "[]" ] && ok || fail "ledger list --json with no match is not []"
"$CF" ledger show "$s13" --db ledger.db --json >show.json 2>"$D/err" &&
  jq -e --arg s "$s13" --arg na "$(enddate_of certs/nf-000013.pem)" '.serial == $s and .status == "revoked"
     and .revocation_reason == "cessationOfOperation" and .not_after == $na and .profile == "nf"' show.json >/dev/null \
  && ok || fail "ledger show --json: $(cat show.json "$D/err")"
expect 2 "ledger export: --json is for show and list (export has --format jsonl)" "$CF" ledger export --db ledger.db --format jsonl --json
expect 2 "ledger signs: --json is for show and list" "$CF" ledger signs --db ledger.db --json
expect 1 "ledger show: no certificate with serial 7f01" "$CF" ledger show 7f01 --db ledger.db --json
[ ! -s "$D/out" ] && ok || fail "ledger show --json of nothing printed: $(cat "$D/out")"
expect 1 "NOT_FOUND: no certificate with serial 7f00000000000001" "$CF" revoke --serial 7f00000000000001
expect 2 "--reason 'badReason' is not one of" "$CF" revoke --serial "$s10" --reason badReason
expect 2 "--reason 'removeFromCRL' is not one of" "$CF" revoke --serial "$s10" --reason removeFromCRL
expect 2 "--serial 'xyz' is not a serial number" "$CF" revoke --serial xyz
expect 2 "--serial is required" "$CF" revoke
expect 1 "NOT_FOUND: no issuer named 'nope'" "$CF" crl --issuer nope
expect 2 "--issuer is required" "$CF" crl
expect 2 "--der needs --out FILE" "$CF" crl --issuer nf-ca --der

# --- errors ----------------------------------------------------------------------------------
# a profile this peer may not use is refused the same whether it exists or not (issue 19)
expect 1 "UNAUTHORIZED" "$CF" issue --csr amf1.csr.pem --profile nope --nf-instance-id "$ID" --nf-type AMF --out x.pem
expect 1 "UNAUTHORIZED" "$CF" issue --csr amf1.csr.pem --profile nf-other --nf-instance-id "$ID" --nf-type AMF --out x.pem
echo "not a csr" > bad.csr
expect 1 "bad.csr: neither a PEM CERTIFICATE REQUEST nor DER" "$CF" issue --csr bad.csr --profile nf --out x.pem
expect 1 "BAD_CSR" "$CF" issue --csr broken.csr.pem --profile nf --nf-instance-id "$(sed -n 57p batch.jsonl | jq -r .nf_instance_id)" \
  --dns "$(sed -n 57p batch.jsonl | jq -r '.dns[0]')" --nf-type AMF --out x.pem
expect 1 "cannot read CSR missing.csr" "$CF" issue --csr missing.csr --profile nf
[ ! -e x.pem ] && ok || fail "a failed issue left x.pem"
expect 2 "--profile NAME is required" "$CF" issue --csr amf1.csr.pem
expect 2 "--validity" "$CF" issue --csr amf1.csr.pem --profile nf --validity 30
expect 2 "give --csr FILE (one CSR) or --batch FILE" "$CF" issue --profile nf

# --- ca ceremonies --json ----------------------------------------------------------------------
"$CF" keys generate --type ec-p256 --label jroot >/dev/null && "$CF" keys generate --type ec-p384 --label jint >/dev/null && ok \
  || fail "keys generate jroot/jint"
fp_of() { openssl x509 -in "$1" -noout -fingerprint -sha256 | cut -d= -f2; }
ca_json_ok() { # json-file pem-file: the object matches the certificate
  jq -e --arg s "$(serial_of "$2")" --arg na "$(enddate_of "$2")" --arg fp "$(fp_of "$2")" --arg out "$2" \
    --arg sub "$(openssl x509 -in "$2" -noout -subject -nameopt compat | sed 's/^subject=//')" \
    '.serial == $s and .not_after == $na and .sha256 == $fp and .out == $out and .subject == $sub' "$1" >/dev/null
}
"$CF" ca init-root --key "pkcs11:token=issue-test;object=jroot" --subject "/C=FI/O=json/CN=JSON Root" --out jroot.pem --json >jroot.json 2>"$D/err" &&
  ca_json_ok jroot.json jroot.pem && jq -e '.token == "issue-test" and .key == "jroot" and .issuer == .subject' jroot.json >/dev/null \
  && ok || fail "ca init-root --json: $(cat jroot.json "$D/err")"
"$CF" ca init-intermediate --key "pkcs11:token=issue-test;object=jint" --issuer-key "pkcs11:token=issue-test;object=jroot" \
  --issuer-cert jroot.pem --subject "/C=FI/O=json/CN=JSON Int" --out jint.pem --json >jint.json 2>"$D/err" &&
  ca_json_ok jint.json jint.pem && jq -e '.issuer == "/C=FI/O=json/CN=JSON Root" and .key == "jint"' jint.json >/dev/null \
  && ok || fail "ca init-intermediate --json: $(cat jint.json "$D/err")"
"$CF" ca cross-sign --issuer-key "pkcs11:token=issue-test;object=root" --issuer-cert root.pem --cert jroot.pem \
  --out jlink.pem --json >jlink.json 2>"$D/err" && ca_json_ok jlink.json jlink.pem &&
  jq -e '(has("token") | not) and (.issuer | test("CN=Test Root CA"))' jlink.json >/dev/null \
  && ok || fail "ca cross-sign --json: $(cat jlink.json "$D/err")"
expect 1 "jlink.pem exists; use --force to replace it" "$CF" ca cross-sign --issuer-key "pkcs11:token=issue-test;object=root" \
  --issuer-cert root.pem --cert jroot.pem --out jlink.pem --json
[ ! -s "$D/out" ] && ok || fail "a refused cross-sign --json printed: $(cat "$D/out")"
expect 2 "option '--json=1' is unknown" "$CF" ca init-root --key "pkcs11:token=issue-test;object=jroot" --subject /CN=x --out x.pem --json=1

stop_daemon
expect 1 "connect $SOCK" "$CF" issue --csr amf1.csr.pem --profile nf --out x.pem
expect 1 "connect $SOCK" "$CF" issue --batch res.jsonl --out-dir rcerts4 --results r4.jsonl
[ ! -e r4.jsonl ] && [ -z "$(find . -maxdepth 1 -name '.r4.jsonl*')" ] && ok || fail "an unreachable certforged left a --results file"
grep -q "certforged --config" "$D/err" && ok || fail "not-running message does not suggest starting certforged: $(cat "$D/err")"
expect 1 "connect $SOCK" "$CF" status
unset CERTFORGE_SOCKET
expect 1 "connect /run/certforge/certforged.sock" env -u CERTFORGE_SOCKET "$CF" status --socket ""

# --- certforge ledger: which ledger, and PostgreSQL errors (no server needed) ------------------
expect 2 "give the ledger with --db PATH, --conninfo STRING or --config FILE" "$CF" ledger list
expect 2 "give the ledger with --db PATH, --conninfo STRING or --config FILE" \
  "$CF" ledger list --db ledger.db --conninfo "dbname=x"
expect 1 "holds a password" "$CF" ledger list --conninfo "host=$D dbname=certforge password=s3cret"
grep -q s3cret "$D/err" && fail "the password was echoed: $(cat "$D/err")" || ok
expect 1 "ledger postgresql host=$D/none port=5432 dbname=certforge user=certforge: cannot connect" \
  "$CF" ledger list --conninfo "host=$D/none port=5432 dbname=certforge user=certforge"
expect 1 "invalid connection option" "$CF" ledger show 0a --conninfo "host=$D dbnme=x"

echo "test_cli_issue: $checks checks, $fails failed"
# A run that checked less than it should (a section skipped, a loop over
# nothing) must not pass: this many checks are made when all goes well.
min_checks=135
[ "$checks" -ge "$min_checks" ] || echo "FAIL: only $checks checks made, want at least $min_checks" >&2
[ "$fails" -eq 0 ] && [ "$checks" -ge "$min_checks" ]
