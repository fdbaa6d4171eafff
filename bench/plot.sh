#!/usr/bin/env bash
# bench/plot.sh — PNGs from certforge-bench --json output (gnuplot, jq).
#
#   bench/plot.sh RESULTS.json... OUTDIR
#
# Writes into OUTDIR:
#   throughput.png   certificates/s against worker threads, one line per
#                    mode (log scale: openssl-x509 is two orders below)
#   latency-cdf.png  latency CDF per mode and thread count (log ms), from
#                    each run's latency_cdf: one panel per latency definition
#                    (certforge-bench --help, COLUMNS), never one shared axis
# A run with errors is ringed in red on throughput.png. Quiet on success.
#   soak.png         rate, p99 and daemon RSS against time, when a run has
#                    samples (--sample)
# A (mode, threads) pair found in several files: the last one wins.
# EXIT STATUS: 0 written; 1 a tool or input is missing; 2 usage.
#
#   bench/plot.sh --hsm-sweep SWEEP.json OUTDIR   (from bench/sweep.sh hsm)
#   hsm-sweep.png    top: certificates/s against signer sessions, one line
#                    per HSM latency L, with S/L dotted; bottom: the rate as
#                    a share of min(rate at 0 ms with the same sessions, S/L),
#                    with the 90 % target
#   bench/plot.sh --wcd-sweep SWEEP.json OUTDIR   (from bench/sweep.sh wcd)
#   wcd-sweep.png    ipc certificates/s and p99 against requests in flight
#                    (connections x depth), one colour per worker count
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: bench/plot.sh RESULTS.json... OUTDIR" >&2; exit 2; }
for t in gnuplot jq; do
  command -v "$t" >/dev/null || { echo "plot.sh: $t not installed (tools/deps.sh)" >&2; exit 1; }
done
term='set terminal pngcairo size 800,500 font "DejaVu Sans,10" noenhanced'
colours=("#7b3294" "#d95f02" "#1b9e77" "#e7298a" "#666666" "#1f78b4" "#b2df8a")

# hsm sweep: "S rate S/L share" per latency L (us) into $tmp/lL.dat
hsm_sweep_dat() {
  jq -r --argjson l "$1" '
      [.[] | select(.config.sign_threads > 0)] as $all |
      $all[] | select(.config.hsm_latency_us == $l) | .config.sessions as $s |
      ([$all[] | select(.config.hsm_latency_us == 0 and .config.sessions == $s)
          | .certs_per_s][0] // null) as $r0 |
      (if $l == 0 then null else 1e6 * $s / $l end) as $sl |
      ([$r0, $sl] | map(select(. != null)) | min) as $b |
      "\($s) \(.certs_per_s) \($sl // "NaN") \(if $b and $l > 0 then .certs_per_s / $b * 100 else "NaN" end)"' \
      "$2" | sort -n
}

if [ "$1" = --hsm-sweep ] || [ "$1" = --wcd-sweep ]; then
  [ $# -eq 3 ] || { echo "usage: bench/plot.sh $1 SWEEP.json OUTDIR" >&2; exit 2; }
  kind=$1 in=$2 out=$3
  mkdir -p "$out"
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/cf-plot-XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  if [ "$kind" = --hsm-sweep ]; then
    lats=$(jq -r '[.[] | select(.config.sign_threads > 0) | .config.hsm_latency_us] | unique | .[]' "$in")
    [ -n "$lats" ] || { echo "plot.sh: no sweep points with signing threads in $in" >&2; exit 1; }
    top="" bottom="" i=0
    for l in $lats; do
      hsm_sweep_dat "$l" "$in" >"$tmp/l$l.dat"
      c=${colours[$((i % 7))]}
      name=$(awk -v l="$l" 'BEGIN { printf "%g ms", l / 1000 }')
      top+="${top:+, }'$tmp/l$l.dat' using 1:2 with linespoints lw 2 pt 7 lc rgb '$c' title '$name'"
      if [ "$l" != 0 ]; then
        top+=", '$tmp/l$l.dat' using 1:3 with lines dt 3 lc rgb '$c' notitle"
        bottom+="${bottom:+, }'$tmp/l$l.dat' using 1:4 with linespoints lw 2 pt 7 lc rgb '$c' title '$name'"
      fi
      i=$((i + 1))
    done
    base=$(jq -r '[.[] | select(.config.sign_threads == 0)][0].certs_per_s // empty' "$in")
    v=$(jq -r '.[0] | "\(.mode), \(.config.threads) workers, verify_issued=\(.config.verify_issued), \(.config.ca_key) CA key"' "$in")
    ymax=$(jq -r '[.[].certs_per_s] | max * 1.15' "$in")
    {
      echo 'set terminal pngcairo size 800,800 font "DejaVu Sans,10" noenhanced'
      echo "set output '$out/hsm-sweep.png'"
      echo "set multiplot layout 2,1 title 'hiding HSM latency with signer sessions ($v)'"
      echo 'set grid'
      echo 'set logscale x 2'
      echo 'set key outside right'
      echo 'set lmargin 12'
      echo "set ylabel 'certificates/s (dotted: S/L)'"
      echo "set yrange [0:$ymax]"
      if [ -n "$base" ]; then
        echo "set arrow from graph 0, first $base to graph 1, first $base nohead dt 2 lc rgb '#999999'"
        echo "set label 'no shim, no signing threads' at graph 0.02, first $base offset 0,0.7 tc rgb '#666666'"
      fi
      echo "plot $top"
      echo 'unset arrow'
      echo 'unset label'
      echo "set ylabel '% of min(rate at 0 ms, S/L)'"
      echo "set xlabel 'signer sessions = signing threads (S)'"
      echo 'set yrange [40:105]'
      echo "set arrow from graph 0, first 90 to graph 1, first 90 nohead dt 2 lc rgb '#cc0000'"
      echo "plot $bottom"
      echo 'unset multiplot'
    } | gnuplot
  else
    top="" bottom="" i=0
    for w in $(jq -r '[.[].config.threads] | unique | .[]' "$in"); do
      jq -r --argjson w "$w" '.[] | select(.config.threads == $w) |
          "\(.config.connections * .config.depth) \(.certs_per_s) \(.latency_ms.p99)"' \
          "$in" | sort -n >"$tmp/w$w.dat"
      c=${colours[$((i % 7))]}
      top+="${top:+, }'$tmp/w$w.dat' using 1:2 with points pt 7 ps 1.2 lc rgb '$c' title '$w workers'"
      bottom+="${bottom:+, }'$tmp/w$w.dat' using 1:3 with points pt 7 ps 1.2 lc rgb '$c' title '$w workers'"
      i=$((i + 1))
    done
    v=$(jq -r '.[0].config | "verify_issued=\(.verify_issued), \(.ca_key) CA key, \(.csr_key) CSRs"' "$in")
    {
      echo 'set terminal pngcairo size 800,800 font "DejaVu Sans,10" noenhanced'
      echo "set output '$out/wcd-sweep.png'"
      echo "set multiplot layout 2,1 title 'ipc: workers x connections x depth ($v)'"
      echo 'set grid'
      echo 'set logscale x 2'
      echo 'set key outside right'
      echo 'set lmargin 12'
      echo "set ylabel 'certificates/s'"
      echo 'set yrange [0:*]'
      echo "plot $top"
      echo "set ylabel 'p99 ms (log)'"
      echo 'set logscale y'
      echo "set xlabel 'requests in flight (connections x depth)'"
      echo "plot $bottom"
      echo 'unset multiplot'
    } | gnuplot
  fi
  exit 0
fi
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

# one colour per mode (in $order's order), the same in every picture
# What each mode's latency times (certforge-bench --help, COLUMNS): the CDF
# legend says it, since the modes do not time the same thing.
timed() {
  case $1 in
    ipc) echo "submit to answer" ;;
    core) echo "submit to completion" ;;
    openssl-x509) echo "process start to exit" ;;
    *) echo "one item, its work" ;;
  esac
}
colour() { local i=0 m; for m in "${sorted[@]}"; do [ "$m" = "$1" ] && { echo "${colours[$((i % 7))]}"; return; }; i=$((i + 1)); done; }

# throughput
plot=""
for m in "${sorted[@]}"; do
  jq -r --arg m "$m" '[.[] | select(.mode == $m)] | sort_by(.config.threads) | .[] |
      "\(.config.threads) \(.certs_per_s)"' "$tmp/all.json" >"$tmp/tp-$m.dat"
  plot+="${plot:+, }'$tmp/tp-$m.dat' using 1:2 with linespoints lw 2 pt 7 lc rgb '$(colour "$m")' title '$m'"
done
# A run with errors keeps its point, ringed in red: its rate counts only the
# certificates that were issued.
jq -r '.[] | select(.errors_total > 0) | "\(.config.threads) \(.certs_per_s)"' "$tmp/all.json" >"$tmp/tp-err.dat"
[ -s "$tmp/tp-err.dat" ] &&
  plot+=", '$tmp/tp-err.dat' using 1:2 with points pt 6 ps 3 lw 2 lc rgb 'red' title 'run with errors'" 
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

# latency CDF: one panel per latency definition (the modes do not time the
# same span, so they never share an axis); colour by mode, solid for the
# most threads, dashed for fewer.
panels=()
for kind in "submit to answer" "submit to completion" "one item, its work" "process start to exit"; do
  plot=""
  for m in "${sorted[@]}"; do
    [ "$(timed "$m")" = "$kind" ] || continue
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
  [ -n "$plot" ] && panels+=("set title 'latency: $kind'"$'\n'"plot $plot")
done
gnuplot <<EOF
set terminal pngcairo size 800,$((80 + 260 * ${#panels[@]})) font "DejaVu Sans,10" noenhanced
set output '$out/latency-cdf.png'
set multiplot layout ${#panels[@]},1 title "latency CDF per certificate ($v)"
set xlabel 'latency, ms (log)'
set ylabel 'fraction of certificates'
set logscale x
set yrange [0:1.02]
set grid
set key outside right
$(printf '%s\n' "${panels[@]}")
unset multiplot
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
set yrange [0:*]
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
