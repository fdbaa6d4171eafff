#!/usr/bin/env bash
# tools/check-includes.sh [--fix] [ROOT] — fail when an #include runs back up the
# module graph (docs/architecture.md, "Modules and includes"):
#
#   tools, bench ──▶ client ──▶ proto ──▶ common
#   engine ──▶ {hsm, proto, common}      hsm ──▶ common
#   acme ──▶ {client, common, engine/csr, engine/der, engine/confine}   tests ──▶ anything
#   agent ──▶ {common, hsm, client, acme, engine/csr, engine/der, engine/confine}
#   (tools and bench are the top: they may use every module but tests/)
#
# Checked over every #include "…" in ROOT's C sources (default: this
# checkout):
#   - a project header is named by its path from the source root
#     ("hsm/hsm.h"), never by a bare name; only the headers of tests/support
#     (the test runner and helpers: cf_test.h, cf_testutil.h, ...) are
#     bare, in tests/ and bench/ (tests/support adds its folder);
#   - the header's module is one its includer's module may use (LAYERS);
#   - the public client/certforge.h includes common/ headers only;
#   - common/ includes no library header (OpenSSL, PKCS#11, SQLite, libpq,
#     libconfig, ...) and its CMakeLists.txt links nothing.
# Prints one line per violation (file:line: what) and exits 1 if any.
#
# --fix first rewrites each bare #include "x.h" of a project header to its
# path from the source root (a header of the includer's own module first
# when two share the name; tests/support's stay bare), e.g. after merging a
# branch written before the module paths; then checks as above.
set -euo pipefail
fix=0
if [ "${1:-}" = --fix ]; then fix=1; shift; fi
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$root"

# module -> modules its files may include (its own is always allowed)
declare -A LAYERS=(
  [common]=""
  [hsm]="common"
  [proto]="common"
  [pgwait]="common" # libpq with a deadline: engine/ledger and acme's store
  [client]="common proto"
  [engine]="common hsm proto pgwait"
  [acme]="common client pgwait engine/csr engine/der engine/confine" # the CSR and DER parsers (no keys, no state): finalize reads CSRs; confine: its own confinement
  [agent]="common hsm client acme engine/csr engine/der engine/confine" # hsm: NFs' account keys in a token; acme's JWS, token, store and anchors code; confine
  [tools]="common hsm proto client engine acme agent bench" # engine: `certforge ledger`; bench: csr_pool for csr-gen
  [bench]="common hsm proto client engine acme agent tools tests" # tests: throwaway tokens (cf_testutil.h)
  [tests]="*"
)
# library headers common/ must not include (it links nothing)
COMMON_DENY='openssl/|p11-kit/|pkcs11|sqlite3|libpq|libconfig|liburing|jansson|event2/|curl/|seccomp|CUnit/'

bad=0
say() { echo "$1"; bad=1; }

dirs=()
for d in "${!LAYERS[@]}"; do [ -d "$d" ] && dirs+=("$d"); done
files=$(find "${dirs[@]}" -type f \( -name '*.c' -o -name '*.h' \) | LC_ALL=C sort)

if [ $fix -eq 1 ]; then
  headers=$(echo "$files" | grep '\.h$' | grep -v '^tests/support/')
  fixed=0
  while IFS=: read -r f line hdr; do
    [ -n "$hdr" ] && [ ! -f "tests/support/$hdr" ] || continue
    cands=$(echo "$headers" | grep -E "(^|/)${hdr//./\\.}\$" || true)
    [ "$(echo "$cands" | grep -c .)" -gt 1 ] && cands=$(echo "$cands" | grep "^${f%%/*}/" || true)
    [ "$(echo "$cands" | grep -c .)" -eq 1 ] || continue # none, or ambiguous: left to the check
    sed -i "${line}s|\"$hdr\"|\"$cands\"|" "$f"
    fixed=$((fixed + 1))
  done < <(grep -n -H -E '^[[:space:]]*#[[:space:]]*include[[:space:]]*"[^"/]*"' $files /dev/null |
           sed -E 's/^([^:]*):([0-9]+):[^"]*"([^"]*)".*/\1:\2:\3/')
  echo "check-includes: --fix rewrote $fixed bare include(s) to module paths"
fi

# quoted includes of every file at once: file:line:header
while IFS=: read -r f line hdr; do
  [ -n "$hdr" ] || continue
  from=${f%%/*}
  allowed=${LAYERS[$from]}
  case $hdr in
    */*) ;;
    *) if [ -f "tests/support/$hdr" ]; then
         case $from in tests|bench) continue ;; esac
         say "$f:$line: includes \"$hdr\": the test runner's headers are for tests/ and bench/ only"
         continue
       fi
       say "$f:$line: includes \"$hdr\" by a bare name: name it by its path from the source root (e.g. \"$(find . -name "$hdr" -not -path './build*' | head -n1 | sed 's|^\./||')\")"; continue ;;
  esac
  case $hdr in
    ./*|../*|*/../*) say "$f:$line: includes \"$hdr\": a relative path; name it from the source root"; continue ;;
  esac
  to=${hdr%%/*}
  sub=$(echo "$hdr" | cut -d/ -f1-2) # module/part, for allowances of one part (engine/csr)
  if [ "$f" = client/certforge.h ] && [ "$to" != common ]; then
    say "$f:$line: includes \"$hdr\": the public client header includes common/ headers only"
    continue
  fi
  [ "$to" = "$from" ] && continue
  [ "$allowed" = "*" ] && continue
  case " $allowed " in *" $to "*|*" $sub "*) continue ;; esac
  say "$f:$line: includes \"$hdr\": $from/ may not include $to/ (it may use: ${allowed:-only itself})"
done < <(grep -n -H -E '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' $files /dev/null |
         sed -E 's/^([^:]*):([0-9]+):[^"]*"([^"]*)".*/\1:\2:\3/')

# library headers in common/
while IFS=: read -r f line hdr; do
  [ -n "$hdr" ] || continue
  say "$f:$line: common/ includes a library header ($hdr): common links nothing"
done < <(grep -n -H -E "^[[:space:]]*#[[:space:]]*include[[:space:]]*<($COMMON_DENY)" \
           $(echo "$files" | grep '^common/') /dev/null | sed -E 's/^([^:]*):([0-9]+):.*<([^>]*)>.*/\1:\2:<\3>/')

if [ -f common/CMakeLists.txt ] && grep -n -E '^[[:space:]]*target_link_libraries' common/CMakeLists.txt >/dev/null; then
  say "common/CMakeLists.txt:$(grep -n -E '^[[:space:]]*target_link_libraries' common/CMakeLists.txt | head -n1 | cut -d: -f1): cf_common links a library: common links nothing"
fi

if [ $bad -ne 0 ]; then
  echo "check-includes: the include graph runs back up (see above); docs/architecture.md shows the allowed directions" >&2
  exit 1
fi
echo "check-includes: $(echo "$files" | wc -w) files, every include runs down the module graph"
