#!/usr/bin/env bash
# bench/plot.sh — PNGs from certforge-bench --json output (gnuplot, jq).
#
#   bench/plot.sh RESULTS.json... OUTDIR
#
# Writes into OUTDIR:
#   throughput.png   certificates/s against worker threads, one line per
#                    mode (log scale: openssl-x509 is two orders below)
#   latency-cdf.png  latency CDF per mode and thread count (log ms), from
#                    each run's latency_cdf
#   soak.png         rate, p99 and daemon RSS against time, when a run has
#                    samples (--sample)
# A (mode, threads) pair found in several files: the last one wins.
# EXIT STATUS: 0 written; 1 a tool or input is missing; 2 usage.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: bench/plot.sh RESULTS.json... OUTDIR" >&2; exit 2; }
for t in gnuplot jq; do
  command -v "$t" >/dev/null || { echo "plot.sh: $t not installed (tools/deps.sh)" >&2; exit 1; }
done
out=${*: -1}
files=("${@:1:$#-1}")
mkdir -p "$out"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cf-plot-XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# One array of every run; later files override earlier (mode, threads).
jq -s 'add | reverse | unique_by([.mode, .config.threads]) ' "${files[@]}" >"$tmp/all.json"
modes=$(jq -r '[.[].mode] | unique | .[]' "$tmp/all.json")
[ -n "$modes" ] || { echo "plot.sh: no runs in ${files[*]}" >&2; exit 1; }
order="floor naive core ipc openssl-x509"
sorted=()
for m in $order; do grep -qx "$m" <<<"$modes" && sorted+=("$m"); done
for m in $modes; do [[ " $order " == *" $m "* ]] || sorted+=("$m"); done

term='set terminal pngcairo size 800,500 font "DejaVu Sans,10" noenhanced'
# one colour per mode (in $order's order), the same in every picture
colours=("#7b3294" "#d95f02" "#1b9e77" "#e7298a" "#666666" "#1f78b4" "#b2df8a")
colour() { local i=0 m; for m in "${sorted[@]}"; do [ "$m" = "$1" ] && { echo "${colours[$((i % 7))]}"; return; }; i=$((i + 1)); done; }

# throughput
plot=""
for m in "${sorted[@]}"; do
  jq -r --arg m "$m" '[.[] | select(.mode == $m)] | sort_by(.config.threads) | .[] |
      "\(.config.threads) \(.certs_per_s)"' "$tmp/all.json" >"$tmp/tp-$m.dat"
  plot+="${plot:+, }'$tmp/tp-$m.dat' using 1:2 with linespoints lw 2 pt 7 lc rgb '$(colour "$m")' title '$m'"
done
v=$(jq -r '.[0].config | "verify_issued=\(.verify_issued), ipc \(.connections)x\(.depth), \(.csr_key) CSRs, \(.ca_key) CA key"' "$tmp/all.json")
gnuplot <<EOF
$term
set output '$out/throughput.png'
set title 'certificates/s by mode ($v)'
set xlabel 'worker threads'
set ylabel 'certificates/s (log)'
set logscale y
set xtics 1
set grid
set key outside right
plot $plot
EOF

# latency CDF: colour by mode, solid for the most threads, dashed for fewer
plot=""
for m in "${sorted[@]}"; do
  ts=$(jq -r --arg m "$m" '.[] | select(.mode == $m) | .config.threads' "$tmp/all.json" | sort -n)
  tmax=$(tail -n1 <<<"$ts")
  for t in $ts; do
    jq -r --arg m "$m" --argjson t "$t" '.[] | select(.mode == $m and .config.threads == $t) |
        .latency_cdf[] | "\(.[0]) \(.[1])"' "$tmp/all.json" >"$tmp/cdf-$m-$t.dat"
    [ -s "$tmp/cdf-$m-$t.dat" ] || continue
    dt=1; [ "$t" = "$tmax" ] || dt=2
    plot+="${plot:+, }'$tmp/cdf-$m-$t.dat' using 1:2 with steps lw 2 dt $dt lc rgb '$(colour "$m")' title '$m, $t thr'"
  done
done
gnuplot <<EOF
$term
set output '$out/latency-cdf.png'
set title 'latency CDF per certificate ($v)'
set xlabel 'latency, ms (log)'
set ylabel 'fraction of certificates'
set logscale x
set yrange [0:1.02]
set grid
set key outside right
plot $plot
EOF

# soak: every run with samples
if jq -e 'any(.[]; (.samples // []) | length > 0)' "$tmp/all.json" >/dev/null; then
  jq -r '[.[] | select((.samples // []) | length > 0)][0] | .samples[] |
      "\(.t) \(.certs_per_s) \(.p99_ms) \(.rss_kib / 1024)"' "$tmp/all.json" >"$tmp/soak.dat"
  gnuplot <<EOF
$term
set output '$out/soak.png'
set multiplot layout 3,1 title 'soak: sampled every interval'
set grid
set lmargin 12
set ylabel 'certs/s'
plot '$tmp/soak.dat' using 1:2 with lines lw 2 notitle
set ylabel 'p99 ms'
plot '$tmp/soak.dat' using 1:3 with lines lw 2 notitle
set ylabel 'daemon RSS MiB'
set xlabel 'seconds'
plot '$tmp/soak.dat' using 1:4 with lines lw 2 notitle
unset multiplot
EOF
fi
ls -l "$out"/*.png >&2
