#!/usr/bin/env bash
# The hardening flags of an optimised build, read back from the ELF files
# (issue 17): every program and shared object has full RELRO (a GNU_RELRO
# segment and immediate binding: BIND_NOW), programs are position
# independent (ELF type DYN with a PT_INTERP), and each calls the stack
# protector's and the fortified libc's checks (__stack_chk_fail, some
# __*_chk function), so -fstack-protector-strong and -D_FORTIFY_SOURCE
# reached the compiler. Needs readelf (binutils).
#
#   test_hardening.sh FILE...
set -uo pipefail
command -v readelf >/dev/null || { echo "SKIPPED: readelf missing (binutils)"; exit 77; }
[ $# -gt 0 ] || { echo "usage: test_hardening.sh FILE..." >&2; exit 2; }
checks=0 fails=0
ok() { checks=$((checks + 1)); }
fail() { checks=$((checks + 1)); fails=$((fails + 1)); echo "FAIL: $*" >&2; }
for f in "$@"; do
  n=$(basename "$f")
  [ -f "$f" ] || { fail "$n: no such file ($f)"; continue; }
  hdr=$(readelf -h "$f" 2>&1)
  seg=$(readelf -lW "$f" 2>&1)
  dyn=$(readelf -dW "$f" 2>&1)
  syms=$(readelf --dyn-syms -W "$f" 2>&1)
  grep -q "Type:[[:space:]]*DYN" <<<"$hdr" && ok || fail "$n: not position independent ($(grep Type: <<<"$hdr"))"
  grep -q "GNU_RELRO" <<<"$seg" && ok || fail "$n: no GNU_RELRO segment"
  grep -Eq "BIND_NOW|Flags:.*NOW" <<<"$dyn" && ok || fail "$n: no immediate binding (-z now)"
  grep -q "__stack_chk_fail" <<<"$syms" && ok || fail "$n: no stack protector (__stack_chk_fail not called)"
  grep -Eq "__[a-z_]+_chk(@|[[:space:]]|$)" <<<"$(grep -v __stack_chk_fail <<<"$syms")" && ok \
    || fail "$n: no fortified libc call (no __*_chk symbol)"
  if [[ $n != *.so* ]]; then
    grep -q "INTERP" <<<"$seg" && ok || fail "$n: a program without an interpreter (not a PIE executable)"
  fi
done
echo "test_hardening: $# files, $checks checks, $fails failed"
[ $fails -eq 0 ] && [ $checks -ge $(($# * 5)) ]
