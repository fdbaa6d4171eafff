#!/usr/bin/env bash
# bench/star_bench.sh — STAR (RFC 8739) at fleet scale (issue 14): many
# STAR orders with short lifetimes, renewed by certforge-acme's scheduler
# for a while, optionally with certforged stopped (SIGSTOP) for a time in
# the middle; then every order's certificates are checked for gaps.
#
#   bench/star_bench.sh [--orders N] [--lifetime S] [--adjust S] [--run S]
#                       [--clients C] [--outage-at S] [--outage S]
#                       [--perf-at S] [--out DIR]
#
# Set-up: tests/acme/acme_env.sh, sourced as bench/acme_bench.sh does (a
# throwaway SoftHSM token and CA, certforged with its "star" profile and
# SQLite ledger, pebble-challtestsrv as DNS, certforge-acme with a "star"
# profile and `star = { min_lifetime = "60s"; }`, defaults otherwise:
# renew_ahead a tenth of the lifetime (≥ 30 s), batch 4096, scan 200 ms).
#
# 1. Creation: acme-load --star makes N STAR orders through the whole ACME
#    flow (newOrder with auto-renewal, http-01, finalize, first certificate
#    from star-certificate) with C clients; end-date = the run's end plus a
#    lifetime, so every period that starts during the run is due.
# 2. Renewal: until S seconds after creation began (--run), the status file
#    is sampled every 2 s (star.issued, failures, in flight, lag p50/p99/max,
#    certforged submitted/answered) with each process's CPU; every thread's
#    CPU (/proc/PID/task/*/stat) is taken at creation start, creation end,
#    outage start/end and the end. --outage-at S stops certforged with
#    SIGSTOP S seconds after creation began and continues it --outage s
#    later (default 60). --perf-at S records certforge-acme with perf for
#    20 s from then (OUT/perf-acme.txt).
# 3. Check, with certforge-acme and certforged stopped: from certforge-acme's
#    state (sqlite3) — every STAR order valid; certificates per order equal
#    to its star_seq (nothing recorded twice); consecutive certificates of an
#    order overlap (next notBefore ≤ previous notAfter: a gap is a
#    certificate missed or late beyond its overlap); no order still due at
#    the end (missed); from certforged's ledger (requester
#    acme-star:ORDER:SEQ, issued_at_ms) — each renewal's issuance against its
#    due time and against the end of the previous certificate, and renewals
#    issued twice by certforged (requests that timed out while it was stopped).
#
# Prints a report (OUT/report.txt) and writes OUT/timeline.tsv, OUT/create.json.
# Exit status: 0 no error, no gap, nothing missed or recorded twice; 1
# otherwise; 2 usage; 77 something it needs is missing.
# Env: CF_BUILD_DIR (default ./build), CF_SOURCE_DIR (this checkout).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export CF_SOURCE_DIR=${CF_SOURCE_DIR:-$(dirname "$HERE")}
export CF_BUILD_DIR=${CF_BUILD_DIR:-$CF_SOURCE_DIR/build}

ORDERS=1000 LIFETIME=600 ADJUST=60 RUN=1800 CLIENTS=200 OUTAGE_AT=0 OUTAGE=60 PERF_AT=0 OUT=""
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }
while [ $# -gt 0 ]; do
  case $1 in
    --orders) ORDERS=$2; shift 2 ;;
    --lifetime) LIFETIME=$2; shift 2 ;;
    --adjust) ADJUST=$2; shift 2 ;;
    --run) RUN=$2; shift 2 ;;
    --clients) CLIENTS=$2; shift 2 ;;
    --outage-at) OUTAGE_AT=$2; shift 2 ;;
    --outage) OUTAGE=$2; shift 2 ;;
    --perf-at) PERF_AT=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "star_bench.sh: unknown argument '$1'" >&2; usage 2 ;;
  esac
done
for v in ORDERS LIFETIME RUN CLIENTS; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "star_bench.sh: --${v,,} must be a positive integer" >&2; exit 2; }
done
for v in ADJUST OUTAGE_AT OUTAGE PERF_AT; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "star_bench.sh: --${v,,} must be a whole number of seconds" >&2; exit 2; }
done
[ "$LIFETIME" -ge 60 ] || { echo "star_bench.sh: --lifetime must be at least 60 s" >&2; exit 2; }
[ "$ADJUST" -le "$LIFETIME" ] || { echo "star_bench.sh: --adjust must not exceed --lifetime" >&2; exit 2; }

LOAD=$CF_BUILD_DIR/acme-load
[ -x "$LOAD" ] || { echo "SKIPPED: $LOAD not built" >&2; exit 77; }
for tool in jq sqlite3 openssl curl; do
  command -v "$tool" >/dev/null || { echo "SKIPPED: $tool missing" >&2; exit 77; }
done
if [ "$PERF_AT" -gt 0 ] && ! command -v perf >/dev/null; then
  echo "star_bench.sh: --perf-at needs perf (Debian package linux-perf)" >&2; exit 2
fi

export ACME_ENV_TIMEOUT=$((RUN + 1200))
export ACME_PROFILES_CONF='profiles = ( { name = "default"; certforged = "dns"; }, { name = "star"; certforged = "star"; } );'
# shellcheck source=../tests/acme/acme_env.sh
. "$CF_SOURCE_DIR/tests/acme/acme_env.sh"

OUT=${OUT:-$CF_BUILD_DIR/star-bench}
mkdir -p "$OUT"
rm -f "$OUT"/{create.json,create.txt,timeline.tsv,threads-*.txt,report.txt,perf-acme.*,events.txt,overlap.txt,late.txt,slack.txt}

MAX_DURATION=$((RUN + LIFETIME + 86400))
acme_env_start "star = { enabled = true; min_lifetime = \"60s\"; max_duration = \"${MAX_DURATION}s\"; };"
child() { local c; c=$(cat "/proc/$1/task/$1/children" 2>/dev/null | awk '{ print $1 }'); echo "${c:-$1}"; }
ACME_REAL=$(child "$ACME_PID")
ENGINE_REAL=$(child "$ENGINE_PID")
STATUS=$T/acme-status.json
AHEAD=$(( LIFETIME / 10 > 30 ? LIFETIME / 10 : 30 ))

# shellcheck source=cpu_threads.sh
. "$HERE/cpu_threads.sh"
snap() { threads_snap "$OUT/threads-$1.txt" "$ACME_REAL" "$ENGINE_REAL"; }
proc_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
event() { echo "$(date +%s.%N) $*" >>"$OUT/events.txt"; }

# ---------------------------------------------------------------- 1. creation
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
DATE=$(date -u +%Y-%m-%dT%H:%MZ)
T0=$(date +%s.%N)
END_S=$((RUN + LIFETIME + 120))
snap create0
event create_start
"$LOAD" --directory "$ACME_DIR" --connect "127.0.0.1:$ACME_PORT" --ca "$ACME_ROOT" --http01-port "$HTTP01_PORT" \
  --clients "$CLIENTS" --threads 2 --issuances "$ORDERS" --profile star --star "$LIFETIME" --star-adjust "$ADJUST" \
  --star-end "$END_S" --label certforge-acme --domain star.test --json "$OUT/create.json" >"$OUT/create.txt" 2>&1 &
LOAD_PID=$!
wait "$LOAD_PID" || { tail -n 20 "$OUT/create.txt" >&2; fail "acme-load --star exited non-zero"; }
LOAD_PID=""
T1=$(date +%s.%N)
event create_end
snap create1
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- 2. renewals
since() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
outage_done=0 perf_pid="" stopped=0
echo -e "t_s\tissued\tfailures\tinflight\tlag_p50_ms\tlag_p99_ms\tlag_max_ms\tsubmitted\tanswered\tacme_ticks\tengine_ticks\tload1" >"$OUT/timeline.tsv"
while :; do
  t=$(since)
  awk -v t="$t" -v r="$RUN" 'BEGIN { exit !(t >= r) }' && break
  if [ "$OUTAGE_AT" -gt 0 ] && [ $outage_done = 0 ]; then
    if [ $stopped = 0 ] && awk -v t="$t" -v a="$OUTAGE_AT" 'BEGIN { exit !(t >= a) }'; then
      snap outage0
      kill -STOP "$ENGINE_REAL"; stopped=1; event outage_start
    elif [ $stopped = 1 ] && awk -v t="$t" -v a="$((OUTAGE_AT + OUTAGE))" 'BEGIN { exit !(t >= a) }'; then
      kill -CONT "$ENGINE_REAL"; stopped=0; outage_done=1; event outage_end
      snap outage1
    fi
  fi
  if [ "$PERF_AT" -gt 0 ] && [ -z "$perf_pid" ] && awk -v t="$t" -v a="$PERF_AT" 'BEGIN { exit !(t >= a) }'; then
    timeout -s INT 40 perf record -e cpu-clock -F 199 --call-graph dwarf,16384 -p "$ACME_REAL" -o "$OUT/perf-acme.data" \
      -- sleep 20 >/dev/null 2>&1 &
    perf_pid=$!
    event perf_start
  fi
  if [ -s "$STATUS" ]; then
    jq -r --arg t "$t" --arg a "$(proc_ticks "$ACME_REAL")" --arg e "$(proc_ticks "$ENGINE_REAL")" --arg l "$(cut -d' ' -f1 /proc/loadavg)" \
      '[$t, .star.issued, .star.failures, .star.inflight, .star.lag_p50_ms, .star.lag_p99_ms, .star.lag_max_ms,
        .certforged.submitted, .certforged.answered, $a, $e, $l] | @tsv' "$STATUS" >>"$OUT/timeline.tsv" 2>/dev/null || true
  fi
  sleep 2
done
[ $stopped = 0 ] || { kill -CONT "$ENGINE_REAL"; event outage_end; }
snap end
T_END=$(date +%s)
LOAD2=$(cut -d' ' -f1-3 /proc/loadavg)
event run_end
# renewals sent before the end finish (at most 60 s)
for _ in $(seq 1 60); do
  [ "$(jq -r '.star.inflight' "$STATUS" 2>/dev/null || echo 1)" = 0 ] && break
  sleep 1
done
sleep 1.2
cp "$STATUS" "$OUT/status-end.json"
if [ -n "$perf_pid" ]; then
  wait "$perf_pid" || true
  { echo "## by thread and library (self)"
    perf report -i "$OUT/perf-acme.data" --no-children --sort comm,dso --stdio -g none 2>/dev/null | grep '%' | head -n 40
    echo "## by function, callees included"
    perf report -i "$OUT/perf-acme.data" --children --sort symbol --stdio -g none 2>/dev/null | grep '%' | head -n 120
  } >"$OUT/perf-acme.txt" || true
  rm -f "$OUT/perf-acme.data"
fi

# stop both daemons so the state and the ledger are final
for p in "$ACME_REAL" "$ENGINE_REAL"; do
  kill -TERM "$p" 2>/dev/null || true
  for _ in $(seq 1 300); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
done

# ---------------------------------------------------------------- 3. check
DB=$T/acme.db LEDGER=$T/ledger.db
q() { sqlite3 -batch -noheader -separator ' ' "$DB" "$@"; }
read -r n_orders n_valid seq_min seq_max seq_sum <<<"$(q "SELECT count(*), sum(status = 'valid'), min(star_seq), max(star_seq), sum(star_seq)
  FROM orders WHERE star_lifetime IS NOT NULL")"
# still due at the end (star_next passed well before T_END): missed
grace=$((AHEAD / 2))
n_missed=$(q "SELECT count(*) FROM orders WHERE star_lifetime IS NOT NULL AND star_next >= 0 AND star_next < $T_END - $grace")
n_certs=$(q "SELECT count(*) FROM certs c JOIN orders o ON o.id = c.order_id WHERE o.star_lifetime IS NOT NULL")
n_count_bad=$(q "SELECT count(*) FROM orders o LEFT JOIN (SELECT order_id, count(*) n FROM certs GROUP BY order_id) c
  ON c.order_id = o.id WHERE o.star_lifetime IS NOT NULL AND coalesce(c.n, 0) != o.star_seq")
# overlap of consecutive certificates of each order (s): previous notAfter − next notBefore
q "SELECT prev_na - not_before FROM (SELECT c.not_before, LAG(c.not_after) OVER (PARTITION BY c.order_id ORDER BY c.not_before) prev_na
   FROM certs c JOIN orders o ON o.id = c.order_id WHERE o.star_lifetime IS NOT NULL) WHERE prev_na IS NOT NULL" | sort -n >"$OUT/overlap.txt"
n_pairs=$(wc -l <"$OUT/overlap.txt")
n_gaps=$(awk '$1 < 0' "$OUT/overlap.txt" | wc -l)
# from the ledger: renewal issued − due (ms) and the previous certificate's end − issued (slack, ms)
sqlite3 -batch -noheader -separator ' ' "$DB" "ATTACH '$LEDGER' AS l;
  WITH r AS (SELECT substr(requester, 11) rest, issued_at_ms FROM l.certificates WHERE requester LIKE 'acme-star:%'),
       s AS (SELECT substr(rest, 1, instr(rest, ':') - 1) oid, CAST(substr(rest, instr(rest, ':') + 1) AS INTEGER) seq, issued_at_ms FROM r)
  SELECT s.issued_at_ms - 1000 * (o.star_start + s.seq * o.star_lifetime - o.star_adjust - $AHEAD),
         1000 * (o.star_start + s.seq * o.star_lifetime) - s.issued_at_ms
  FROM s JOIN orders o ON o.id = s.oid" >"$OUT/late_slack.txt"
cut -d' ' -f1 "$OUT/late_slack.txt" | sort -n >"$OUT/late.txt"
cut -d' ' -f2 "$OUT/late_slack.txt" | sort -n >"$OUT/slack.txt"
rm -f "$OUT/late_slack.txt"
n_ledger=$(wc -l <"$OUT/late.txt")
n_ledger_dup=$(sqlite3 -batch -noheader "$LEDGER" "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) n FROM certificates WHERE requester LIKE 'acme-star:%' GROUP BY requester HAVING n > 1)")
n_late=$(awk '$1 < 0' "$OUT/slack.txt" | wc -l)
pct() { awk -v p="$2" '{ v[NR] = $1 } END { if (NR == 0) { print "-"; exit } i = int(NR * p); if (i < 1) i = 1; if (i > NR) i = NR; print v[i] }' "$1"; }

# renewals per second: the largest rise of star.issued over ≥ 10 s of the timeline
peak=$(awk -F'\t' 'NR > 1 { t[++n] = $1; v[n] = $2 } END {
  best = 0; for (i = 1; i <= n; i++) for (k = i + 1; k <= n; k++) if (t[k] - t[i] >= 10) {
    r = (v[k] - v[i]) / (t[k] - t[i]); if (r > best) { best = r; at = t[i] } break }
  printf "%.0f at t=%.0f s", best, at }' "$OUT/timeline.tsv")
lag_p99_max=$(awk -F'\t' 'NR > 1 && $6 > m { m = $6 } END { print m + 0 }' "$OUT/timeline.tsv")
lag_max=$(awk -F'\t' 'NR > 1 && $7 > m { m = $7 } END { print m + 0 }' "$OUT/timeline.tsv")

cores() { threads_cores "$OUT/threads-$1.txt" "$OUT/threads-$2.txt"; }
span() { threads_span "$OUT/threads-$1.txt" "$OUT/threads-$2.txt"; }

{
  echo "star_bench: $(nproc) cores, $DATE, load average $LOAD0 (start) → $LOAD1 (after creation) → $LOAD2 (end)"
  echo "orders $ORDERS, lifetime $LIFETIME s, lifetime-adjust $ADJUST s, renew_ahead $AHEAD s, run $RUN s from creation start$( [ "$OUTAGE_AT" -gt 0 ] && echo ", certforged stopped (SIGSTOP) at $OUTAGE_AT s for $OUTAGE s")"
  echo
  echo "creation: $(jq -r '"\(.issuances) orders in \(.seconds * 10 | round / 10) s = \(.rate | floor)/s after \(.accounts_s * 10 | round / 10) s of account registration (\(.clients) clients), failed \(.failed), errors \(.errors | tojson); acme-load CPU \(.cpu_self_s * 10 | round / 10) s; whole flow p50 \(.steps["whole flow"].p50_ms | floor) ms, p99 \(.steps["whole flow"].p99_ms | floor) ms"' "$OUT/create.json")"
  echo
  echo "| check | result |"
  echo "|---|---|"
  echo "| STAR orders, valid | $n_orders, $n_valid |"
  echo "| certificates (first + renewals), star_seq min/max | $n_certs, $seq_min/$seq_max |"
  echo "| orders whose certificate count ≠ star_seq (recorded twice or lost) | $n_count_bad |"
  echo "| orders still due at the end (missed) | $n_missed |"
  echo "| consecutive pairs, gaps (next notBefore > previous notAfter) | $n_pairs, $n_gaps |"
  echo "| overlap of consecutive certificates, s (min / p1 / p50 / max) | $(pct "$OUT/overlap.txt" 0) / $(pct "$OUT/overlap.txt" 0.01) / $(pct "$OUT/overlap.txt" 0.5) / $(pct "$OUT/overlap.txt" 1) |"
  echo "| renewals in certforged's ledger, issued twice | $n_ledger, $n_ledger_dup |"
  echo "| renewal issued − due, ms (p50 / p99 / max) | $(pct "$OUT/late.txt" 0.5) / $(pct "$OUT/late.txt" 0.99) / $(pct "$OUT/late.txt" 1) |"
  echo "| previous certificate's end − renewal issued, s (min / p50); issued after it (late) | $(awk -v v="$(pct "$OUT/slack.txt" 0)" 'BEGIN { printf "%.1f", v / 1000 }') / $(awk -v v="$(pct "$OUT/slack.txt" 0.5)" 'BEGIN { printf "%.1f", v / 1000 }'); $n_late |"
  echo "| scheduler lag (status file): largest p99 sampled, largest max, ms | $lag_p99_max, $lag_max |"
  echo "| status at the end: issued, failures | $(jq -r '"\(.star.issued), \(.star.failures)"' "$OUT/status-end.json") |"
  echo "| renewals/s at the peak (≥ 10 s) | $peak |"
  echo
  echo "CPU by thread, creation ($(span create0 create1) s; cores)"
  echo "| process | thread | cores |"
  echo "|---|---|---:|"
  cores create0 create1
  echo
  echo "CPU by thread, renewals: creation end → end ($(span create1 end) s; cores)"
  echo "| process | thread | cores |"
  echo "|---|---|---:|"
  cores create1 end
  if [ -s "$OUT/threads-outage1.txt" ]; then
    echo
    echo "CPU by thread, the outage ($(span outage0 outage1) s)"
    echo "| process | thread | cores |"
    echo "|---|---|---:|"
    cores outage0 outage1
  fi
  if [ -s "$OUT/threads-outage1.txt" ]; then
    echo
    echo "after the outage: renewals/s by 10 s from its end"
    awk -F'\t' -v e="$(awk '$2 == "outage_end" { print $1 }' "$OUT/events.txt")" -v t0="$T0" '
      NR > 1 { t = $1 + t0; if (t >= e && t <= e + 120) { if (!have || t - lt >= 10) { if (have) printf "  +%.0f s: %.0f/s, in flight %d, lag p99 %d ms\n", lt - e, ($2 - lv) / (t - lt), $4, $6; lt = t; lv = $2; have = 1 } } }' "$OUT/timeline.tsv"
  fi
} | tee "$OUT/report.txt"

bad=0
[ "$(jq -r .failed "$OUT/create.json")" = 0 ] || bad=1
[ "$n_valid" = "$n_orders" ] && [ "$n_orders" = "$ORDERS" ] || bad=1
[ "$n_count_bad" = 0 ] && [ "$n_missed" = 0 ] && [ "$n_gaps" = 0 ] && [ "$n_late" = 0 ] || bad=1
exit $bad
