#!/usr/bin/env bash
# bench/agent_bench.sh — certforge-agent at scale (issue 15): N NFs enrol at
# once through one agent and certforge-acme, over EST with bootstrap
# certificates, as NFs would.
#
#   bench/agent_bench.sh [--nfs N] [--workers W] [--threads T] [--ramp S]
#                        [--wait-ms MS] [--perf] [--out DIR]
#
# Set-up: tests/agent/agent_env.sh, sourced (a throwaway SoftHSM CA,
# certforged, knotd taking RFC 2136 updates with TSIG, certforge-acme
# validating dns-01 against knotd, the vendor bootstrap CA, certforge-agent
# with acme.workers = W (default 16, the agent's default), T EST threads
# (default 2), est.wait_ms MS (default 8000) and limits.max_connections and
# max_connections_per_address above N (every NF comes from 127.0.0.1)). Then:
#   1. est-load --make-nfs N writes the NFs (one dns name each in the zone),
#      and `certforge-agent nf import` registers them (timed: it makes
#      every NF's ACME account key).
#   2. est-load enrols them all: each NF its own TLS connection with a
#      bootstrap certificate from the vendor CA (made by est-load, not by
#      `openssl` per NF), /simpleenroll with a fresh P-256 CSR, again after
#      Retry-After on 202/503. Bootstrap certificates instead of OAM tokens:
#      `certforge acme token issue` is one process and one HSM login per
#      token, and a bootstrap enrolment runs the same agent ACME path with
#      dns-01 (the tkauth-01 path is measured by test_agent_est).
#   3. CPU by process and thread (/proc) over the enrolment window for the
#      agent, certforge-acme, certforged and knotd; est-load's own CPU
#      (getrusage over the same window).
#   4. The agent's ACME side from its log (enrolment_started → issued per
#      enrolment, account_created) and certforge-acme's request log (server
#      time per ACME request kind, requests per enrolment).
# --perf records certforge-agent (perf, dwarf call graphs) for 20 s from
# the start of the enrolments (OUT/perf-agent.txt).
#
# Prints a report (OUT/report.txt); OUT/est-load.json has est-load's figures.
# Exit status: 0 every NF enrolled; 1 otherwise; 2 usage; 77 something it
# needs is missing. Env: CF_BUILD_DIR (default ./build), CF_SOURCE_DIR.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export CF_SOURCE_DIR=${CF_SOURCE_DIR:-$(dirname "$HERE")}
export CF_BUILD_DIR=${CF_BUILD_DIR:-$CF_SOURCE_DIR/build}

NFS=1000 WORKERS=16 THREADS=2 RAMP=0 WAIT_MS=8000 PERF=0 OUT=""
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }
while [ $# -gt 0 ]; do
  case $1 in
    --nfs) NFS=$2; shift 2 ;;
    --workers) WORKERS=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --ramp) RAMP=$2; shift 2 ;;
    --wait-ms) WAIT_MS=$2; shift 2 ;;
    --perf) PERF=1; shift ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "agent_bench.sh: unknown argument '$1'" >&2; usage 2 ;;
  esac
done
for v in NFS WORKERS THREADS; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "agent_bench.sh: --${v,,} must be a positive integer" >&2; exit 2; }
done
[[ $WAIT_MS =~ ^[0-9]+$ ]] || { echo "agent_bench.sh: --wait-ms must be a whole number" >&2; exit 2; }
[[ $RAMP =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "agent_bench.sh: --ramp must be seconds" >&2; exit 2; }
[ "$NFS" -le 100000 ] || { echo "agent_bench.sh: --nfs at most 100000" >&2; exit 2; }
ESTLOAD=$CF_BUILD_DIR/est-load
[ -x "$ESTLOAD" ] || { echo "SKIPPED: $ESTLOAD not built" >&2; exit 77; }
for tool in jq openssl dig; do
  command -v "$tool" >/dev/null || { echo "SKIPPED: $tool missing" >&2; exit 77; }
done
if [ "$PERF" = 1 ] && ! command -v perf >/dev/null; then
  echo "agent_bench.sh: --perf needs perf (Debian package linux-perf)" >&2; exit 2
fi
# one descriptor per NF connection in est-load and in the agent
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -gt $((NFS + 512)) ] ||
  { echo "agent_bench.sh: --nfs $NFS needs more file descriptors than ulimit -n $(ulimit -n)" >&2; exit 2; }

export ACME_ENV_TIMEOUT=${ACME_ENV_TIMEOUT:-3600}
export AGENT_WORKERS=$WORKERS AGENT_THREADS=$THREADS AGENT_WAIT_MS=$WAIT_MS
export AGENT_EXTRA="limits = { max_connections = $((NFS + 1024)); max_connections_per_address = $((NFS + 1024)); request_timeout_s = 120; };"
# shellcheck source=../tests/agent/agent_env.sh
. "$CF_SOURCE_DIR/tests/agent/agent_env.sh"
# shellcheck source=cpu_threads.sh
. "$HERE/cpu_threads.sh"

OUT=${OUT:-$CF_BUILD_DIR/agent-bench}
mkdir -p "$OUT"
rm -f "$OUT"/{est-load.json,est-load.txt,threads-*.txt,report.txt,perf-agent.*,import.txt,nfs.jsonl,status-*.json}

agent_env_start
child() { local c; c=$(cat "/proc/$1/task/$1/children" 2>/dev/null | awk '{ print $1 }'); echo "${c:-$1}"; }
ACME_REAL=$(child "$ACME_PID")
ENGINE_REAL=$(child "$ENGINE_PID")
KNOT_REAL=$(child "$KNOT_PID")

# 1. the NFs
"$ESTLOAD" --make-nfs "$NFS" --domain "$ZONE" >"$OUT/nfs.jsonl"
t_i0=$(date +%s.%N)
agent_cli nf import "$OUT/nfs.jsonl" >"$OUT/import.txt"
t_i1=$(date +%s.%N)
IMPORT_S=$(awk -v a="$t_i0" -v b="$t_i1" 'BEGIN { printf "%.1f", b - a }')
[ "$(wc -l <"$OUT/import.txt")" = "$NFS" ] || fail "nf import registered $(wc -l <"$OUT/import.txt") of $NFS NFs"

# 2. the enrolments
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
DATE=$(date -u +%Y-%m-%dT%H:%MZ)
acme_log0=$(wc -l <"$T/acme.log")
agent_log0=$(wc -l <"$T/agent.log")
rm -f "$OUT/ready"
"$ESTLOAD" --connect "127.0.0.1:$AGENT_PORT" --ca "$T/est-root.pem" --nfs "$OUT/nfs.jsonl" \
  --vendor-cert "$T/vendor-root.pem" --vendor-key "$T/vendor-root.key" --ramp "$RAMP" --timeout 1800 \
  --json "$OUT/est-load.json" --ready "$OUT/ready" >"$OUT/est-load.txt" 2>&1 &
EL_PID=$!
for _ in $(seq 1 6000); do [ -e "$OUT/ready" ] && break; kill -0 $EL_PID 2>/dev/null || break; sleep 0.05; done
[ -e "$OUT/ready" ] || { cat "$OUT/est-load.txt" >&2; fail "est-load did not start"; }
procs=("$AGENT_PID" "$ACME_REAL" "$ENGINE_REAL" "$KNOT_REAL")
threads_snap "$OUT/threads-start.txt" "${procs[@]}"
cp "$T/agent-status.json" "$OUT/status-agent-start.json" 2>/dev/null || true
perf_pid=""
if [ "$PERF" = 1 ]; then
  timeout -s INT 40 perf record -e cpu-clock -F 199 --call-graph dwarf,16384 -p "$AGENT_PID" -o "$OUT/perf-agent.data" \
    -- sleep 20 >/dev/null 2>&1 &
  perf_pid=$!
fi
# est-load exits when the last NF has its certificate (it reports its own CPU)
rc=0
wait $EL_PID || rc=$?
threads_snap "$OUT/threads-end.txt" "${procs[@]}"
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
sleep 1.2
cp "$T/agent-status.json" "$OUT/status-agent-end.json"
"$CF" acme status --config "$T/acme.conf" --json >"$OUT/status-acme-end.json" || true
if [ -n "$perf_pid" ]; then
  wait "$perf_pid" || true
  { echo "## by thread and library (self)"
    perf report -i "$OUT/perf-agent.data" --no-children --sort comm,dso --stdio -g none 2>/dev/null | grep '%' | head -n 40
    echo "## by function, callees included"
    perf report -i "$OUT/perf-agent.data" --children --sort symbol --stdio -g none 2>/dev/null | grep '%' | head -n 120
  } >"$OUT/perf-agent.txt" || true
  rm -f "$OUT/perf-agent.data"
fi

# 4. the ACME side, from the logs of this run
tail -n +$((agent_log0 + 1)) "$T/agent.log" >"$OUT/agent-run.log"
tail -n +$((acme_log0 + 1)) "$T/acme.log" >"$OUT/acme-run.log"
# enrolment_started → issued, seconds (log times are ms, UTC)
agent_acme=$(awk '
  function t(s) { split(substr(s, 12, 12), a, ":"); return a[1] * 3600 + a[2] * 60 + a[3] }
  / event=enrolment_started / { match($0, / enrolment=[^ ]*/); e = substr($0, RSTART + 12, RLENGTH - 12); st[e] = t($1) }
  / event=issued / { match($0, / enrolment=[^ ]*/); e = substr($0, RSTART + 12, RLENGTH - 12); if (e in st) print (t($1) - st[e]) * 1000 }
  ' "$OUT/agent-run.log" | sort -n | awk 'function q(p,  i) { i = int(NR * p); if (i < 1) i = 1; return v[i] }
  { v[NR] = $1 } END { if (NR) printf "n %d, p50 %.0f, p90 %.0f, p99 %.0f, max %.0f", NR, q(.5), q(.9), q(.99), v[NR]; else print "none" }')
n_accounts=$(grep -c ' event=account_created ' "$OUT/agent-run.log" || true)
n_retry=$(grep -c ' event=acme_retry ' "$OUT/agent-run.log" || true)
n_failed=$(grep -c ' event=enrolment_failed ' "$OUT/agent-run.log" || true)
# certforge-acme: server time per request kind
acme_steps=$(awk '
  / method=/ {
    match($0, / path=[^ ]*/); p = substr($0, RSTART + 6, RLENGTH - 6)
    match($0, / method=[^ ]*/); m = substr($0, RSTART + 8, RLENGTH - 8)
    match($0, / ms=[^ ]*/); v = substr($0, RSTART + 4, RLENGTH - 4)
    if (p ~ /^\/acme\/new-account/) k = "newAccount"; else if (p ~ /^\/acme\/new-order/) k = "newOrder"
    else if (p ~ /^\/acme\/new-nonce/) k = "newNonce"; else if (p ~ /^\/acme\/authz\//) k = "authorization"
    else if (p ~ /^\/acme\/chall\//) k = "challenge"; else if (p ~ /^\/acme\/finalize\//) k = "finalize"
    else if (p ~ /^\/acme\/order\//) k = "order (poll)"; else if (p ~ /^\/acme\/cert\//) k = "certificate"
    else if (p ~ /^\/acme\/renewal-info\//) k = "renewalInfo"; else if (p ~ /^\/directory/) k = "directory"; else k = p
    print k "\t" v }' "$OUT/acme-run.log" | sort -t"$(printf '\t')" -k1,1 -k2,2g | awk -F'\t' -v nfs="$NFS" '
  { if ($1 != k) { if (k != "") out(); k = $1; n = 0 } v[++n] = $2 }
  function q(p,  i) { i = int(n * p); if (i < 1) i = 1; return v[i] }
  function out() { printf "| %s | %d | %.2f | %.2f | %.2f | %.2f |\n", k, n, n / nfs, q(.5), q(.99), v[n] }
  END { if (k != "") out() }')

{
  echo "agent_bench: $(nproc) cores, $DATE, load average $LOAD0 (start) → $LOAD1 (end)"
  echo "NFs $NFS (bootstrap certificates, one dns name each, dns-01 via RFC 2136 to knotd), agent: $THREADS EST threads, $WORKERS ACME workers, est.wait_ms $WAIT_MS; ramp $RAMP s"
  echo "nf import of $NFS NFs: $IMPORT_S s"
  echo
  sed 's/^/    /' "$OUT/est-load.txt"
  echo
  echo "agent, enrolment_started → issued (ms): $agent_acme; accounts created $n_accounts, ACME retries $n_retry, enrolments failed $n_failed"
  echo "agent status: $(jq -c '{est, acme, store}' "$OUT/status-agent-end.json")"
  echo
  echo "certforge-acme, server time per request (ms), this run"
  echo "| request | n | per NF | p50 | p99 | max |"
  echo "|---|---:|---:|---:|---:|---:|"
  echo "$acme_steps"
  echo
  if [ -s "$OUT/threads-end.txt" ]; then
    echo "CPU by thread over the enrolments ($(threads_span "$OUT/threads-start.txt" "$OUT/threads-end.txt") s; cores)"
    echo "| process | thread | cores |"
    echo "|---|---|---:|"
    threads_cores "$OUT/threads-start.txt" "$OUT/threads-end.txt"
    jq -r '"| est-load | (all, its own getrusage) | \(.cpu_run_s / .seconds * 100 | round / 100) |"' "$OUT/est-load.json"
  fi
} | tee "$OUT/report.txt"
[ $rc -eq 0 ] && [ "$(jq -r .enrolled "$OUT/est-load.json")" = "$NFS" ] || exit 1
exit 0
