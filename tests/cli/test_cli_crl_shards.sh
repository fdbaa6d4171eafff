#!/usr/bin/env bash
# Sharded CRLs (docs/crl.md) against a real certforged on a throwaway
# SoftHSM2 token: an issuer with crl_shards = 4; 40 certificates, each with
# the CRL distribution point of shard (last 4 serial octets mod 4); some
# revoked; every shard fetched with `certforge crl --shard K` and checked
# with openssl (signature, critical issuingDistributionPoint naming the
# shard's URL, each revoked serial in exactly its shard, `verify
# -crl_check`); a revocation re-makes only its shard; a shard the issuer
# lacks is NOT_FOUND; a SIGHUP changing crl_shards is refused. Every wait is
# bounded; the daemon is stopped by its PID.
#
#   test_cli_crl_shards.sh /path/to/certforge /path/to/certforged
set -uo pipefail

CF=${1:?usage: test_cli_crl_shards.sh /path/to/certforge /path/to/certforged}
CFD=${2:?usage: test_cli_crl_shards.sh /path/to/certforge /path/to/certforged}
. "$(dirname "$0")/../support/cli_env.sh"
cli_env_init shards shard-test
mkdir crl

# --- CA in the token ---------------------------------------------------------------
"$CF" keys generate --type ec-p256 --label root >/dev/null || { echo "FAIL: keys generate root"; exit 1; }
"$CF" keys generate --type ec-p256 --label nf-ca >/dev/null || { echo "FAIL: keys generate nf-ca"; exit 1; }
"$CF" ca init-root --key "pkcs11:token=shard-test;object=root" \
  --subject "/C=FI/O=certforge test/CN=Test Root CA" --out root.pem >/dev/null || { echo "FAIL: init-root"; exit 1; }
"$CF" ca init-intermediate --key "pkcs11:token=shard-test;object=nf-ca" \
  --issuer-key "pkcs11:token=shard-test;object=root" --issuer-cert root.pem \
  --subject "/C=FI/O=5gc.mnc001.mcc001.3gppnetwork.org/CN=Test NF CA" --pathlen 0 \
  --out nf-ca.pem >/dev/null || { echo "FAIL: init-intermediate"; exit 1; }
cat root.pem nf-ca.pem > bundle.pem

# --- certforged: nf-ca in 4 shards ----------------------------------------------------
N=4
URL="http://crl.5gc.mnc001.mcc001.3gppnetwork.org/nf-ca/{shard}.crl"
SOCK=$D/cf.sock
write_conf() { # $1: crl_shards
  cat > certforged.conf <<CONF
tokens = ( { name = "ca"; uri = "$CERTFORGE_TOKEN"; } );
keys = ( { name = "nf-ca"; token = "ca"; uri = "pkcs11:object=nf-ca"; sessions = 2; } );
issuers = ( { name = "nf-ca"; key = "nf-ca"; certificate = "nf-ca.pem"; chain = "root.pem";
              crl_shards = $1; } );
profiles = (
  { name = "nf"; type = "nf"; issuer = "nf-ca";
    subject = { C = "FI"; O = "5gc.mnc001.mcc001.3gppnetwork.org"; };
    validity = { default = "90d"; max = "365d"; };
    eku = ["serverAuth", "clientAuth"];
    crl_dp = "$URL";
    require_nf_types = false; require_nf_instance_id = false; }
);
pipeline = { workers = 1; queue = 256; batch = 16; };
log = { level = "info"; };
server = { socket = "$SOCK"; socket_mode = "0600"; };
grants = ( { uid = $(id -u); profiles = ["nf"]; ops = ["issue", "revoke", "crl"]; } );
ledger = { backend = "sqlite"; path = "ledger.db"; };
crl = { dir = "crl"; interval = "1h"; validity = "1d"; revoke_delay = "1s"; };
metrics = { listen = "127.0.0.1:0"; };
CONF
}
write_conf $N
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

# every shard published at start-up, none as the unsharded name
for k in $(seq 0 $((N - 1))); do
  [ -s "crl/nf-ca-$k.crl" ] && ok || fail "no CRL published at start-up in crl/nf-ca-$k.crl"
done
[ ! -e crl/nf-ca.crl ] && ok || fail "crl/nf-ca.crl published for a sharded issuer"
[ "$(grep -c 'event=crl issuer=nf-ca shard=' certforged.log)" -eq $N ] && ok \
  || fail "start-up log: want $N 'event=crl issuer=nf-ca shard=' lines: $(grep event=crl certforged.log)"

# --- 40 certificates ----------------------------------------------------------------------
# shard of a serial: its last 4 octets (8 hex digits) as an integer, mod N
shard_of() { local h; h=$(printf '%08s' "$1" | tr ' ' 0); echo $(( 16#${h: -8} % N )); }
serial_of() { openssl x509 -in "$1" -noout -serial | cut -d= -f2; }
mkdir certs
for i in $(seq 1 40); do
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout /dev/null \
    -subj "/C=FI/O=5gc.mnc001.mcc001.3gppnetwork.org" \
    -addext "subjectAltName=DNS:nf$i.5gc.mnc001.mcc001.3gppnetwork.org" \
    -outform DER -out c.der 2>/dev/null || { fail "openssl req $i"; continue; }
  "$CF" issue --csr c.der --profile nf --dns "nf$i.5gc.mnc001.mcc001.3gppnetwork.org" \
    --out "certs/$i.pem" >/dev/null 2>"$D/err" || fail "issue $i: $(cat "$D/err")"
done
[ "$(ls certs | wc -l)" -eq 40 ] && ok || fail "$(ls certs | wc -l) certificates issued, want 40"
declare -A SH
used=""
for i in $(seq 1 40); do
  s=$(serial_of "certs/$i.pem"); k=$(shard_of "$s"); SH[$i]=$k
  want="URI:${URL/\{shard\}/$k}"
  cdp=$(openssl x509 -in "certs/$i.pem" -noout -ext crlDistributionPoints 2>&1)
  # exactly one URI: the shard's
  if grep -qF -- "$want" <<<"$cdp" && [ "$(grep -c 'URI:' <<<"$cdp")" -eq 1 ]; then ok
  else fail "certs/$i.pem (serial $s, shard $k): CDP is not $want: $cdp"; fi
  used="$used $k"
done
# 40 random serials spread over 4 shards (each misses all 40 with p = 0.75^40 ~ 1e-5)
nused=$(tr ' ' '\n' <<<"$used" | grep . | sort -u | wc -l)
[ "$nused" -eq $N ] && ok || fail "the 40 certificates use $nused shards, want $N"

# --- revoke 6: the first certificate of each shard, plus two more ------------------------
declare -A REV=()
first_of() { for i in $(seq 1 40); do [ "${SH[$i]}" = "$1" ] && { echo "$i"; return; }; done; }
for k in $(seq 0 $((N - 1))); do i=$(first_of "$k"); [ -n "$i" ] && REV[$i]=1; done
REV[39]=1; REV[40]=1
for i in "${!REV[@]}"; do
  "$CF" revoke --serial "$(serial_of "certs/$i.pem")" --reason keyCompromise >/dev/null 2>"$D/err" \
    || fail "revoke certs/$i.pem: $(cat "$D/err")"
done

crlnum() { openssl crl -inform DER -in "$1" -noout -crlnumber | cut -d= -f2; }
# the publisher re-makes the revoked certificates' shards within revoke_delay
# (1 s): bounded wait until every published shard lists its revoked serials
listed() { openssl crl -inform DER -in "$1" -noout -text 2>/dev/null | sed -n 's/.*Serial Number: *//p'; }
for _ in $(seq 1 100); do
  missing=0
  for i in "${!REV[@]}"; do
    listed "crl/nf-ca-${SH[$i]}.crl" | grep -qix "$(serial_of "certs/$i.pem")" || missing=$((missing + 1))
  done
  [ $missing -eq 0 ] && break
  sleep 0.1
done
[ $missing -eq 0 ] && ok || fail "$missing revoked serial(s) not in their published shard 10 s after revoking"

# --- every shard, made now, fetched by number ---------------------------------------------
for k in $(seq 0 $((N - 1))); do
  "$CF" crl --issuer nf-ca --shard "$k" --new --out "s$k.crl" --der >sum.txt 2>"$D/err" \
    || { fail "crl --shard $k --new: $(cat "$D/err")"; continue; }
  grep -q "^s$k.crl: CRL number [0-9]* of issuer nf-ca shard $k, [0-9]* revoked, next update 20" sum.txt \
    && ok || fail "crl --shard $k summary: $(cat sum.txt)"
  check "shard $k verifies with the issuer's certificate" \
    openssl crl -inform DER -in "s$k.crl" -CAfile nf-ca.pem -noout -verify
  txt=$(openssl crl -inform DER -in "s$k.crl" -noout -text 2>&1)
  grep -qF "X509v3 Issuing Distribution Point: critical" <<<"$txt" && ok \
    || fail "shard $k: no critical IDP: $txt"
  idp=$(awk '/Issuing Distribution Point/ {on = 1; next} on && /X509v3|Revoked|Signature/ {on = 0} on' <<<"$txt")
  want="URI:${URL/\{shard\}/$k}"
  grep -qF -- "$want" <<<"$idp" && [ "$(grep -c 'URI:' <<<"$idp")" -eq 1 ] && ok \
    || fail "shard $k: IDP does not name $want alone: $idp"
  # nothing but the distribution point (no onlyContains*, onlySomeReasons, indirectCRL)
  grep -qiE "Only|Reasons|Indirect" <<<"$idp" && fail "shard $k: IDP has more than its URL: $idp" || ok
  openssl crl -inform DER -in "s$k.crl" -out "s$k.pem"
  # the same CRL as the published file and as the latest answer
  cmp -s "s$k.crl" "crl/nf-ca-$k.crl" && ok || fail "shard $k: crl/nf-ca-$k.crl is not the CRL just made"
  "$CF" crl --issuer nf-ca --shard "$k" --out "l$k.crl" --der >/dev/null 2>"$D/err" \
    && cmp -s "s$k.crl" "l$k.crl" && ok || fail "crl --shard $k (latest) is not the CRL just made: $(cat "$D/err")"
done
# each revoked serial in exactly its shard, and nothing else listed
for k in $(seq 0 $((N - 1))); do
  openssl crl -inform DER -in "s$k.crl" -noout -text 2>/dev/null | sed -n 's/.*Serial Number: *//p' \
    | tr 'a-f' 'A-F' | sort >"listed$k.txt"
  : >"want$k.txt"
done
for i in "${!REV[@]}"; do serial_of "certs/$i.pem" | tr 'a-f' 'A-F' >>"want${SH[$i]}.txt"; done
for k in $(seq 0 $((N - 1))); do
  sort -o "want$k.txt" "want$k.txt"
  cmp -s "want$k.txt" "listed$k.txt" && ok \
    || fail "shard $k lists [$(tr '\n' ' ' <"listed$k.txt")], want [$(tr '\n' ' ' <"want$k.txt")]"
done
# openssl verify -crl_check with the certificate's own shard
for i in $(seq 1 40); do
  k=${SH[$i]}
  rc=0
  openssl verify -crl_check -CAfile bundle.pem -CRLfile "s$k.pem" "certs/$i.pem" >v.txt 2>&1 || rc=$?
  if [ -n "${REV[$i]:-}" ]; then
    [ $rc -ne 0 ] && grep -q "certificate revoked" v.txt && ok \
      || fail "verify -crl_check (shard $k) accepted revoked certs/$i.pem: $(cat v.txt)"
  else
    [ $rc -eq 0 ] && grep -q ": OK$" v.txt && ok \
      || fail "verify -crl_check (shard $k) refused unrevoked certs/$i.pem: $(cat v.txt)"
  fi
done
# another shard's CRL does not cover a certificate: its IDP names another URL
# than the certificate's CDP (RFC 5280 §6.3.3 (b)(2)), and OpenSSL says "different CRL scope"
for i in 1 2; do
  k=$(( (SH[$i] + 1) % N ))
  rc=0
  openssl verify -crl_check -CAfile bundle.pem -CRLfile "s$k.pem" "certs/$i.pem" >v.txt 2>&1 || rc=$?
  [ $rc -ne 0 ] && grep -q "different CRL scope" v.txt && ok \
    || fail "verify -crl_check of certs/$i.pem (shard ${SH[$i]}) with shard $k's CRL: $(cat v.txt)"
done
# cRLNumbers: one sequence for the issuer, increasing across shards
prev=0
for k in $(seq 0 $((N - 1))); do
  n=$(($(crlnum "s$k.crl")))
  [ "$n" -gt "$prev" ] && ok || fail "shard $k cRLNumber $n is not above $prev"
  prev=$n
done

# --- a revocation re-makes its shard only --------------------------------------------------
for k in $(seq 0 $((N - 1))); do before[$k]=$(crlnum "crl/nf-ca-$k.crl"); done
vi=""
for i in $(seq 1 38); do [ -z "${REV[$i]:-}" ] && { vi=$i; break; }; done
vk=${SH[$vi]}
"$CF" revoke --serial "$(serial_of "certs/$vi.pem")" --reason superseded >/dev/null 2>"$D/err" \
  || fail "revoke certs/$vi.pem: $(cat "$D/err")"
# bounded wait (revoke_delay = 1 s) for its shard's new CRL
for _ in $(seq 1 100); do
  [ "$(crlnum "crl/nf-ca-$vk.crl")" != "${before[$vk]}" ] && break
  sleep 0.1
done
[ "$(crlnum "crl/nf-ca-$vk.crl")" != "${before[$vk]}" ] && ok \
  || fail "shard $vk not re-made within 10 s of a revocation of its certificate"
openssl crl -inform DER -in "crl/nf-ca-$vk.crl" -noout -text | grep -qi "Serial Number: $(serial_of "certs/$vi.pem")" \
  && ok || fail "shard $vk's new CRL lacks the revoked serial"
# the daemon logs one CRL per shard it makes; the kick made one
grep -q "event=crl issuer=nf-ca shard=$vk " certforged.log && ok || fail "no log line for shard $vk"
for k in $(seq 0 $((N - 1))); do
  [ "$k" = "$vk" ] && continue
  [ "$(crlnum "crl/nf-ca-$k.crl")" = "${before[$k]}" ] && ok \
    || fail "shard $k was re-made after a revocation in shard $vk"
done

# --- metrics: crl_age_seconds{issuer} is the age of the least recently made shard -----------
# (a lower bound only: the scrape happens after t0, so age >= t0 - oldest thisUpdate)
port=$(sed -n 's/.*event=metrics_listen address=127\.0\.0\.1:\([0-9]*\).*/\1/p' certforged.log | head -1)
oldest=
for k in $(seq 0 $((N - 1))); do
  tu=$(date -u -d "$(openssl crl -inform DER -in "crl/nf-ca-$k.crl" -noout -lastupdate | cut -d= -f2)" +%s)
  [ -z "$oldest" ] || [ "$tu" -lt "$oldest" ] && oldest=$tu
done
t0=$(date +%s)
age=$(curl -s --max-time 10 "http://127.0.0.1:$port/metrics" | sed -n 's/^certforge_crl_age_seconds{issuer="nf-ca"} //p')
[ -n "$age" ] && [ "$age" -ge $((t0 - oldest)) ] && ok \
  || fail "crl_age_seconds{issuer=\"nf-ca\"} is '$age', want >= $((t0 - oldest)) (the oldest shard's age; port '$port')"

# --- shards the issuer lacks, bad --shard ---------------------------------------------------
expect 1 "issuer 'nf-ca' has 4 CRL shards (0-3): no shard 4" "$CF" crl --issuer nf-ca --shard 4
expect 1 "no shard 65535" "$CF" crl --issuer nf-ca --shard 65535 --new
expect 2 "crl: --shard must be a shard number 0-65535, not '65536'" "$CF" crl --issuer nf-ca --shard 65536
expect 2 "crl: --shard must be a shard number 0-65535, not 'x'" "$CF" crl --issuer nf-ca --shard x
"$CF" crl --issuer nf-ca --shard 2 --json >j.json 2>"$D/err" && jq -e '.shard == 2 and .issuer == "nf-ca"' j.json >/dev/null \
  && ok || fail "crl --shard 2 --json: $(cat j.json "$D/err")"

# --- a reload changing crl_shards is refused; the daemon keeps 4 shards ----------------------
write_conf 8
kill -HUP "$DPID"
for _ in $(seq 1 100); do grep -q "event=reload_refused" certforged.log && break; sleep 0.1; done
grep "event=reload_refused" certforged.log | grep -qF "issuer 'nf-ca' crl_shards (4 -> 8) changed: restart needed" \
  && ok || fail "reload changing crl_shards not refused: $(grep -i reload certforged.log)"
expect 1 "has 4 CRL shards (0-3): no shard 5" "$CF" crl --issuer nf-ca --shard 5

stop_daemon
echo "$checks checks, $fails failed"
[ "$fails" -eq 0 ]
