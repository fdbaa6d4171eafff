# bench/cpu_threads.sh — sourced by the bench scripts: CPU by process and
# thread from /proc/PID/task/*/stat (utime + stime), between snapshots.
#
#   threads_snap FILE PID...    every thread of those processes, with the time
#   threads_cores FROM TO       markdown rows "| process | thread | cores |"
#                               (threads ≥ 0.005 cores, and "(all)" per process)
#   threads_span FROM TO        seconds between two snapshots

threads_snap() {
  local out=$1 p f name
  shift
  {
    echo "# $(date +%s.%N)"
    for p in "$@"; do
      [ -n "$p" ] && [ -d "/proc/$p" ] || continue
      for f in /proc/"$p"/task/*; do
        name=$(cat "$f/comm" 2>/dev/null) || continue
        awk -v p="$(cat "/proc/$p/comm" 2>/dev/null)" -v n="$name" -v tid="${f##*/}" \
          '{ sub(/^.*\) /, ""); print p "\t" n "\t" tid "\t" $12 + $13 }' "$f/stat" 2>/dev/null || true
      done
    done
  } >"$out"
}

threads_cores() {
  awk -F'\t' -v hz="$(getconf CLK_TCK)" '
    FNR == 1 { t[++f] = substr($0, 3); next }
    f == 1 { a[$1 "\t" $2 "\t" $3] = $4; next }
    { k = $1 "\t" $2; d[k] += $4 - a[$1 "\t" $2 "\t" $3]; tot[$1] += $4 - a[$1 "\t" $2 "\t" $3] }
    END { w = t[2] - t[1]; if (w <= 0) exit
          for (k in d) { split(k, x, "\t"); if (d[k] / hz / w >= 0.005) printf "| %s | %s | %.2f |\n", x[1], x[2], d[k] / hz / w }
          for (p in tot) printf "| %s | (all) | %.2f |\n", p, tot[p] / hz / w }' "$1" "$2" | sort -t'|' -k2,2 -k4,4nr
}

threads_span() {
  awk -v a="$(head -n1 "$1" | cut -c3-)" -v b="$(head -n1 "$2" | cut -c3-)" 'BEGIN { printf "%.0f", b - a }'
}
