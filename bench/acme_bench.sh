#!/usr/bin/env bash
# bench/acme_bench.sh — certforge-acme against pebble under the same
# acme-load (issue 13): complete ACME issuances per second, per-step
# latency, CPU by thread, and certforge-acme's group commit under load.
#
#   bench/acme_bench.sh [--clients N] [--duration S] [--rounds R] [--threads T]
#                       [--servers certforge,pebble] [--out DIR] [--perf]
#
# Sets up what tests/acme/acme_env.sh sets up for the end-to-end tests (a
# throwaway SoftHSM token and CA, certforged, pebble-challtestsrv as DNS,
# certforge-acme on loopback; sourced, not copied) plus pebble (Debian
# package; PEBBLE_VA_NOSLEEP=1, PEBBLE_WFE_NONCEREJECT=0,
# PEBBLE_AUTHZREUSE=0, PEBBLE_VA_ALWAYS_VALID unset) with its own TLS
# certificate from a throwaway openssl CA, the same DNS server, and its
# http-01 port set to acme-load's responder (a fresh pebble process for
# every run: pebble 2.4.0 can deadlock, see pebble_restart). Then R rounds, alternating
# which server goes first, each acme-load run with the same clients,
# threads and duration; acme-load samples every thread of the server's
# processes (certforge-acme, certforged, challtestsrv / pebble,
# challtestsrv) and its own over the measured window. --perf records
# certforge-acme with `perf record --call-graph dwarf` (cpu-clock; the
# Debian libraries have no frame pointers) during one extra round
# and writes the report to OUT/perf-acme.txt.
#
# Prints one table: issuances/s per round and server, the median ratio
# certforge-acme / pebble, per-step p50/p99, CPU by thread, and store
# commits/changes (from `certforge acme status --json` before and after
# each certforge-acme run). Every process is started under `timeout` and
# stopped by its PID (acme_env_stop). Exit status: 0, or 1 if a run failed
# (any failed flow), 77 if something it needs is missing.
#
# Env: CF_BUILD_DIR (default ./build), CF_SOURCE_DIR (this checkout).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export CF_SOURCE_DIR=${CF_SOURCE_DIR:-$(dirname "$HERE")}
export CF_BUILD_DIR=${CF_BUILD_DIR:-$CF_SOURCE_DIR/build}

CLIENTS=64 DURATION=10 ROUNDS=2 THREADS=2 SERVERS=certforge,pebble OUT="" PERF=0
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }
while [ $# -gt 0 ]; do
  case $1 in
    --clients) CLIENTS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --servers) SERVERS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --perf) PERF=1; shift ;;
    -h|--help) usage 0 ;;
    *) echo "acme_bench.sh: unknown argument '$1'" >&2; usage 2 ;;
  esac
done
for v in CLIENTS ROUNDS THREADS; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "acme_bench.sh: --${v,,} must be a positive integer" >&2; exit 2; }
done
[[ $DURATION =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "acme_bench.sh: --duration must be seconds" >&2; exit 2; }
case ,$SERVERS, in
  *,certforge,*|*,pebble,*) ;;
  *) echo "acme_bench.sh: --servers: certforge and/or pebble" >&2; exit 2 ;;
esac
has() { case ,$SERVERS, in *,$1,*) return 0 ;; esac; return 1; }

LOAD=$CF_BUILD_DIR/acme-load
[ -x "$LOAD" ] || { echo "SKIPPED: $LOAD not built" >&2; exit 77; }
for tool in jq openssl curl; do
  command -v "$tool" >/dev/null || { echo "SKIPPED: $tool missing" >&2; exit 77; }
done
if has pebble && ! command -v pebble >/dev/null; then
  echo "SKIPPED: pebble (Debian package pebble) missing" >&2; exit 77
fi
if [ "$PERF" = 1 ] && ! command -v perf >/dev/null; then
  echo "acme_bench.sh: --perf needs perf (Debian package linux-perf)" >&2; exit 2
fi

# Every daemon lives at most this long (acme_env.sh starts them under timeout).
per_run=$(awk -v d="$DURATION" 'BEGIN { printf "%d", d + 90 }')
export ACME_ENV_TIMEOUT=$(( (ROUNDS * 2 + 1) * per_run + 300 ))
# shellcheck source=../tests/acme/acme_env.sh
. "$CF_SOURCE_DIR/tests/acme/acme_env.sh"

OUT=${OUT:-$CF_BUILD_DIR/acme-bench}
mkdir -p "$OUT"
rm -f "$OUT"/round*.json "$OUT"/round*.txt "$OUT"/status-*.json "$OUT"/warnings-*.txt

pebble_start() {
  PEBBLE_HOST=pebble.bench.test
  PEBBLE_PORT=$(free_port)
  local tls_port
  tls_port=$(free_port)
  # pebble's own HTTPS certificate, from a throwaway CA acme-load trusts
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/pebble-root.key" \
    -out "$T/pebble-root.pem" -subj "/CN=acme_bench pebble root" -days 2 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/pebble.key" -out "$T/pebble.csr" \
    -subj "/CN=$PEBBLE_HOST" 2>/dev/null
  printf 'subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth\nbasicConstraints=critical,CA:FALSE\n' \
    "$PEBBLE_HOST" >"$T/pebble.ext"
  openssl x509 -req -in "$T/pebble.csr" -CA "$T/pebble-root.pem" -CAkey "$T/pebble-root.key" -CAcreateserial \
    -days 2 -extfile "$T/pebble.ext" -out "$T/pebble.pem" 2>/dev/null
  cat >"$T/pebble.json" <<JSON
{ "pebble": { "listenAddress": "127.0.0.1:$PEBBLE_PORT", "managementListenAddress": "",
  "certificate": "$T/pebble.pem", "privateKey": "$T/pebble.key",
  "httpPort": $HTTP01_PORT, "tlsPort": $tls_port, "ocspResponderURL": "",
  "externalAccountBindingRequired": false } }
JSON
  pebble_run
}

pebble_run() {
  env -u PEBBLE_VA_ALWAYS_VALID PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 PEBBLE_AUTHZREUSE=0 \
    timeout -s KILL "$ENV_TIMEOUT" pebble -config "$T/pebble.json" -dnsserver "127.0.0.1:$DNS_PORT" \
    >"$T/pebble.log" 2>&1 &
  PEBBLE_PID=$!
  PIDS+=("$PEBBLE_PID")
  wait_for "$T/pebble.log" "Listening on" 30 "$PEBBLE_PID"
  PEBBLE_DIR=https://$PEBBLE_HOST:$PEBBLE_PORT/dir
  PEBBLE_WRAPPER=$PEBBLE_PID
  PEBBLE_PID=$(child "$PEBBLE_PID")
}

# A fresh pebble for every run: pebble 2.4.0 can deadlock under concurrent
# clients (its Authz handler holds an authorization's lock while it waits
# for the store's read lock, which a queued writer holds back, while
# newOrder's FindValidAuthorization holds the store's read lock waiting
# for that authorization), and its newOrder scans every authorization it
# ever made. A new process per run keeps one run's state out of the next.
pebble_restart() {
  kill -TERM "$PEBBLE_WRAPPER" 2>/dev/null || true
  local i
  for i in $(seq 1 50); do kill -0 "$PEBBLE_WRAPPER" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$PEBBLE_WRAPPER" "$PEBBLE_PID" 2>/dev/null || true
  mv "$T/pebble.log" "$T/pebble.log.prev" 2>/dev/null || true
  PEBBLE_PORT=$(free_port)
  sed -i "s/\"listenAddress\": \"127.0.0.1:[0-9]*\"/\"listenAddress\": \"127.0.0.1:$PEBBLE_PORT\"/" "$T/pebble.json"
  pebble_run
}

# The daemons run under timeout(1): sample the daemon, not the wrapper.
child() { local c; c=$(cat "/proc/$1/task/$1/children" 2>/dev/null | awk '{ print $1 }'); echo "${c:-$1}"; }
CHALLTEST_PID=""
if has certforge; then
  acme_env_start
  CHALLTEST_PID=${PIDS[1]}
else
  challtest_start
  CHALLTEST_PID=${PIDS[0]}
  HTTP01_PORT=$(free_port)
fi
has pebble && pebble_start
CHALLTEST_PID=$(child "$CHALLTEST_PID")
has certforge && { ACME_PID=$(child "$ACME_PID"); ENGINE_PID=$(child "$ENGINE_PID"); }

status_json() { "$CF" acme status --config "$T/acme.conf" --json; }

# run SERVER ROUND: one acme-load run; its JSON in OUT/roundR-SERVER.json
failed=0
run() {
  local srv=$1 r=$2 json=$OUT/round$2-$1.json rc=0
  if [ "$srv" = certforge ]; then
    sleep 1.2 # the status file is rewritten every second
    status_json >"$OUT/status-$r-before.json"
    local log0
    log0=$(wc -l <"$T/acme.log")
    timeout -s KILL "$per_run" "$LOAD" --directory "$ACME_DIR" --connect "127.0.0.1:$ACME_PORT" --ca "$ACME_ROOT" \
      --http01-port "$HTTP01_PORT" --clients "$CLIENTS" --threads "$THREADS" --duration "$DURATION" \
      --label certforge-acme --cpu "$ACME_PID,$ENGINE_PID,$CHALLTEST_PID" --json "$json" >"${json%.json}.txt" || rc=$?
    sleep 1.2
    status_json >"$OUT/status-$r-after.json"
    # warnings and errors certforge-acme logged (one line per request aside)
    tail -n +$((log0 + 1)) "$T/acme.log" | grep -v ' method=' | grep -E 'level=(warning|error)' | sed 's/^[^ ]* //' |
      sed -E 's/(order|challenge|account)=[^ ]*/\1=…/g' | sort | uniq -c >"$OUT/warnings-$r.txt" || true
  else
    [ "$r" = 1 ] || pebble_restart
    timeout -s KILL "$per_run" "$LOAD" --directory "$PEBBLE_DIR" --connect "127.0.0.1:$PEBBLE_PORT" \
      --ca "$T/pebble-root.pem" --http01-port "$HTTP01_PORT" --clients "$CLIENTS" --threads "$THREADS" \
      --duration "$DURATION" --label pebble --cpu "$PEBBLE_PID,$CHALLTEST_PID" --json "$json" >"${json%.json}.txt" || rc=$?
  fi
  if [ $rc -ne 0 ]; then
    failed=1
    echo "round $r $srv: acme-load exited $rc $( [ -s "$json" ] && jq -c .errors "$json")" >&2
    grep -h 'first:' "${json%.json}.txt" >&2 || true
  fi
}

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
DATE=$(date -u +%Y-%m-%dT%H:%MZ)
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) -eq 1 ]; then order="certforge pebble"; else order="pebble certforge"; fi
  for srv in $order; do
    has "$srv" || continue
    echo "round $r: $srv ..." >&2
    run "$srv" "$r"
  done
done
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

if [ "$PERF" = 1 ] && has certforge; then
  echo "perf: one more certforge-acme round under perf record --call-graph dwarf ..." >&2
  timeout -s INT "$per_run" perf record -e cpu-clock -F 199 --call-graph dwarf,16384 -p "$ACME_PID" -o "$OUT/perf-acme.data" \
    -- sleep "$(awk -v d="$DURATION" 'BEGIN { print d + 3 }')" >/dev/null 2>&1 &
  perf_pid=$!
  run certforge perf
  wait "$perf_pid" || true
  { echo "## by thread and library (self)"
    perf report -i "$OUT/perf-acme.data" --no-children --sort comm,dso --stdio -g none 2>/dev/null | grep '%' | head -n 40
    echo "## by function, callees included"
    perf report -i "$OUT/perf-acme.data" --children --sort symbol --stdio -g none 2>/dev/null | grep '%' | head -n 120
  } >"$OUT/perf-acme.txt" || true
  echo "perf report: $OUT/perf-acme.txt" >&2
fi

# ------------------------------------------------------------------ report
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo
echo "acme_bench: $(nproc) cores, $DATE, load average $LOAD0 → $LOAD1"
echo "acme-load: $CLIENTS clients, $THREADS threads, ${DURATION} s per run, $ROUNDS rounds alternating; polls: Retry-After, else 50 ms"
echo
echo "| round | server | issuances/s | failed | last issuance at s | requests/issuance | flow p50 ms | flow p99 ms |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
for r in $(seq 1 "$ROUNDS"); do
  for srv in certforge pebble; do
    j=$OUT/round$r-$srv.json
    [ -s "$j" ] || continue
    jq -r --arg r "$r" '"| \($r) | \(.label) | \(.rate | floor) | \(.failed) | \(.last_ok_s * 10 | round / 10) | \(.requests_per_issuance * 100 | round / 100) | \(.steps["whole flow"].p50_ms * 10 | round / 10) | \(.steps["whole flow"].p99_ms * 10 | round / 10) |"' "$j"
  done
done
rates() { local j; for j in "$OUT"/round[0-9]*-"$1".json; do if [ -s "$j" ]; then jq .rate "$j"; fi; done; }
cf_med=$(rates certforge | median)
pb_med=$(rates pebble | median)
echo
echo "median issuances/s: certforge-acme $cf_med, pebble $pb_med; ratio certforge-acme/pebble: $(awk -v a="$cf_med" -v b="$pb_med" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')"

for srv in certforge pebble; do
  j=$OUT/round$ROUNDS-$srv.json
  [ -s "$j" ] || continue
  echo
  echo "$(jq -r .label "$j"), round $ROUNDS: per step (ms)"
  echo "| step | n | p50 | p90 | p99 | max |"
  echo "|---|---:|---:|---:|---:|---:|"
  jq -r '.steps | to_entries[] | "| \(.key) | \(.value.n) | \(.value.p50_ms * 100 | round / 100) | \(.value.p90_ms * 100 | round / 100) | \(.value.p99_ms * 100 | round / 100) | \(.value.max_ms * 100 | round / 100) |"' "$j"
  echo
  echo "CPU per complete issuance (ms of CPU, all rounds): $(for jj in "$OUT"/round[0-9]*-$srv.json; do [ ! -s "$jj" ] || jq -r 'select(.rate > 0) | .rate as $r | [.cpu // [] | group_by(.process)[] | "\(.[0].process) \((map(.cores) | add) * 1000 / $r * 100 | round / 100)"] | join(", ")' "$jj"; done | paste -sd '|' | sed 's/|/ | /g')"
  echo
  echo "CPU by thread over the window (cores; $(nproc) available)"
  echo "| process | thread | cores |"
  echo "|---|---|---:|"
  jq -r '.cpu // [] | group_by(.process) | map({p: .[0].process, t: (map(.cores) | add), rows: .})
         | sort_by(-.t)[] | "| \(.p) | (all) | \(.t * 100 | round / 100) |", (.rows[] | select(.cores >= 0.01) | "| | \(.thread) | \(.cores * 100 | round / 100) |")' "$j"
done

if has certforge; then
  echo
  echo "certforge-acme store under load (group commit)"
  echo "| round | commits | changes | changes/commit | max group so far |"
  echo "|---|---:|---:|---:|---:|"
  for r in $(seq 1 "$ROUNDS"); do
    b=$OUT/status-$r-before.json a=$OUT/status-$r-after.json
    [ -s "$b" ] && [ -s "$a" ] || continue
    jq -rn --arg r "$r" --slurpfile b "$b" --slurpfile a "$a" '
      ($a[0].store.commits - $b[0].store.commits) as $c | ($a[0].store.changes - $b[0].store.changes) as $n |
      "| \($r) | \($c) | \($n) | \(if $c > 0 then ($n / $c * 100 | round / 100) else "-" end) | \($a[0].store.max_group) |"'
  done
fi
if has certforge; then
  for w in "$OUT"/warnings-*.txt; do
    [ -s "$w" ] || continue
    echo
    echo "certforge-acme warnings and errors, $(basename "$w" .txt):"
    head -n 20 "$w"
  done
fi
exit $failed
