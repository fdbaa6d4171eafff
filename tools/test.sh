#!/usr/bin/env bash
# tools/test.sh — install missing packages, build, run every test.
#
#   tools/test.sh            all stages
#   CF_TEST_STAGES="plain"   only some: plain asan tsan fuzz quickstart
#                            (space separated)
#
# Stages: plain (RelWithDebInfo, -Werror; every test), asan (ASan+UBSan,
# every test but those labelled "timing"), tsan (ThreadSanitizer, the
# suites labelled "concurrency", never "timing"), fuzz (each
# libFuzzer target for a few seconds under ASan+UBSan), quickstart (the
# README's tools/quickstart.sh end to end, 2000 certificates, in a
# throwaway state folder). The last line is the total over every stage.
# "timing" tests assert on elapsed time (a timeout firing, latency hidden
# by threads); a sanitizer slows everything down 5 to 20 times, so they
# run in the plain stage only (tests/support/cf_test.h).
#
# PostgreSQL: one throwaway cluster for the whole run (tools/pg-cluster.sh:
# initdb in a temporary folder, Unix socket only, stopped by its PID when
# this script exits), named to the tests by CF_TEST_PG_CONNINFO and
# CF_TEST_PG_DIR. If it cannot be started the PostgreSQL tests report
# themselves skipped.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
. tools/deps.sh
cf_install_deps

jobs=$(nproc 2>/dev/null || echo 2)
stages=${CF_TEST_STAGES:-plain asan tsan fuzz quickstart}
passed=0 failed=0 skipped=0
summary=()

build() { # dir cmake-args...
  local dir=$1; shift
  cmake -S . -B "$dir" -DCF_WERROR=ON "$@" >"$dir.configure.log" 2>&1 || { cat "$dir.configure.log"; return 1; }
  cmake --build "$dir" -j "$jobs" >"$dir.build.log" 2>&1 || { tail -n 60 "$dir.build.log"; return 1; }
}

run_ctest() { # stage dir ctest-args...
  local stage=$1 dir=$2; shift 2
  local log="$dir.ctest.log" rc=0
  (cd "$dir" && ctest --output-on-failure --no-tests=error "$@") >"$log" 2>&1 || rc=$?
  grep -E "^(.*Test +#|[0-9]+% tests passed|The following tests)|\*\*\*|Failed|SKIPPED" "$log" | sed "s/^/[$stage] /" || true
  if [ $rc -ne 0 ]; then
    echo "[$stage] ---- failure output ----"; sed -n '/Output from these tests/,$p;/\*\*\*Failed\|Exception/,+40p' "$log" | head -n 200 || true
  fi
  local total p s f
  total=$(grep -oE "out of [0-9]+" "$log" | tail -n1 | grep -oE "[0-9]+" || echo 0)
  f=$(grep -oE "[0-9]+ tests failed" "$log" | tail -n1 | grep -oE "^[0-9]+" || echo 0)
  s=$(grep -cE "\*\*\*Skipped|Not Run.*Skipped| Skipped " "$log" || true)
  p=$((total - f - s))
  passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
  summary+=("$stage: $p passed, $f failed, $s skipped")
  return 0
}

# Sanitizer runtime settings: fail on the first report. Slow (DWARF)
# unwinding on malloc: SoftHSM and libcrypto are built without frame
# pointers, and only full stacks let the suppressions below see that a
# leak was made inside SoftHSM.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1:fast_unwind_on_malloc=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}
# SoftHSM leaks a little on some paths (e.g. 37 bytes per Ed25519 sign) and
# keeps singletons until exit: suppress leaks allocated inside it. Modules
# are loaded RTLD_NODELETE so its frames can still be named at exit.
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$top/tests/lsan.supp:print_suppressions=0}

pg_dir=$(mktemp -d /tmp/cf-pg.XXXXXX)
cleanup_pg() {
  tools/pg-cluster.sh stop "$pg_dir" || true
  rm -rf "$pg_dir"
}
trap cleanup_pg EXIT
if pg_ci=$(tools/pg-cluster.sh start "$pg_dir" 2>"$pg_dir.log"); then
  export CF_TEST_PG_CONNINFO=$pg_ci CF_TEST_PG_DIR=$pg_dir
  echo "PostgreSQL: throwaway cluster at $pg_dir (pid $(head -n1 "$pg_dir/data/postmaster.pid"))"
else
  echo "PostgreSQL: no throwaway cluster, its tests will be skipped: $(tail -n1 "$pg_dir.log")"
fi
rm -f "$pg_dir.log"

for stage in $stages; do
  case $stage in
    plain)
      build build
      run_ctest plain build ;;
    asan)
      build build-asan -DCF_ASAN=ON -DCF_UBSAN=ON -DCMAKE_BUILD_TYPE=Debug
      run_ctest asan build-asan -LE timing ;;
    tsan)
      build build-tsan -DCF_TSAN=ON -DCMAKE_BUILD_TYPE=Debug
      # TSan (gcc 12) cannot map its shadow with the kernel's high mmap
      # randomisation; run it with ASLR off for this process tree only.
      if setarch "$(uname -m)" -R true 2>/dev/null; then
        setarch "$(uname -m)" -R bash -c "$(declare -f run_ctest); $(declare -p passed failed skipped summary); run_ctest tsan build-tsan -L concurrency -LE timing; declare -p passed failed skipped summary > build-tsan/.totals"
        . build-tsan/.totals
      else
        run_ctest tsan build-tsan -L concurrency -LE timing
      fi ;;
    fuzz)
      if command -v clang >/dev/null; then
        CC=clang build build-fuzz -DCF_FUZZ=ON -DCF_ASAN=ON -DCF_UBSAN=ON -DCMAKE_BUILD_TYPE=Debug -DBUILD_TESTING=OFF
        n=0 nf=0
        for f in build-fuzz/fuzz_*; do
          [ -x "$f" ] || continue
          name=$(basename "$f"); n=$((n + 1))
          if tools/fuzz.sh "$name" "${CF_FUZZ_SECONDS:-10}" --build build-fuzz >"build-fuzz/$name.log" 2>&1; then
            echo "[fuzz] $name: $(grep -oE 'Done [0-9]+ runs in [0-9]+ second' "build-fuzz/$name.log" | tail -n1)"
          else
            nf=$((nf + 1)); echo "[fuzz] $name FAILED"; tail -n 40 "build-fuzz/$name.log"
          fi
        done
        passed=$((passed + n - nf)); failed=$((failed + nf))
        summary+=("fuzz: $((n - nf)) passed, $nf failed, 0 skipped")
      fi ;;
    quickstart)
      qs=$(mktemp -d /tmp/cf-quickstart.XXXXXX)
      if CF_STATE=$qs CF_QUICKSTART_CERTS=2000 tools/quickstart.sh >"$qs.log" 2>&1; then
        echo "[quickstart] $(grep -E '^Done\.' "$qs.log" | head -n 1 || true)"
        passed=$((passed + 1)); summary+=("quickstart: 1 passed, 0 failed, 0 skipped")
      else
        echo "[quickstart] FAILED"; tail -n 40 "$qs.log"
        failed=$((failed + 1)); summary+=("quickstart: 0 passed, 1 failed, 0 skipped")
      fi
      rm -rf "$qs" "$qs.log" ;;
    *) echo "unknown stage $stage" >&2; exit 2 ;;
  esac
done

for l in "${summary[@]}"; do echo "  $l"; done
echo "certforge: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
