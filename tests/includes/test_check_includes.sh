#!/usr/bin/env bash
# tools/check-includes.sh must pass on this tree and fail, naming the file,
# on each kind of include that runs back up the graph: every case plants
# one bad file (or line) in a fresh temporary copy of the sources. Last,
# --fix must turn bare names into module paths and then pass.
set -euo pipefail
src=$1
check=$src/tools/check-includes.sh
tmp=$(mktemp -d /tmp/cf-check-includes.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fails=0

fresh() { # a clean copy of what the check reads: the C sources, common/CMakeLists.txt
  rm -rf "$tmp/t"
  mkdir -p "$tmp/t"
  (cd "$src" && find common hsm proto client engine acme tools bench tests -type f \
     \( -name '*.[ch]' -o -path common/CMakeLists.txt \) -print0 2>/dev/null |
     xargs -0 cp --parents -t "$tmp/t")
}

# expect_fail NAME FILE WHAT: the check exits 1 and its output names FILE.
expect_fail() {
  local name=$1 file=$2 out rc=0
  out=$("$check" "$tmp/t" 2>&1) || rc=$?
  if [ $rc -eq 1 ] && grep -q -F "$file:" <<<"$out"; then
    echo "ok   $name: $(grep -F "$file:" <<<"$out" | head -n1)"
  else
    echo "FAIL $name: exit $rc, expected 1 naming $file; output:"; echo "$out" | head -n 20
    fails=$((fails + 1))
  fi
}

fresh
if out=$("$check" "$tmp/t" 2>&1); then
  echo "ok   clean tree: $out"
else
  echo "FAIL clean tree: $out"; fails=$((fails + 1))
fi

fresh
sed -i '0,/#include "common\/compiler.h"/s//#include "common\/compiler.h"\n#include "engine\/core\/engine.h"/' "$tmp/t/proto/proto.h"
expect_fail "proto includes engine" proto/proto.h

fresh
printf '#include "hsm/hsm.h"\n' >"$tmp/t/common/planted.c"
expect_fail "common includes hsm" common/planted.c

fresh
printf '#include "common/status.h"\n#include <openssl/evp.h>\n' >"$tmp/t/common/planted.h"
expect_fail "common includes OpenSSL" common/planted.h

fresh
printf 'target_link_libraries(cf_common PRIVATE OpenSSL::Crypto)\n' >>"$tmp/t/common/CMakeLists.txt"
expect_fail "common links a library" common/CMakeLists.txt

fresh
printf '#include "engine/der/der.h"\n' >"$tmp/t/hsm/planted.c"
expect_fail "hsm includes engine" hsm/planted.c

fresh
printf '#include "client/certforge.h"\n' >"$tmp/t/proto/planted.c"
expect_fail "proto includes client" proto/planted.c

fresh
printf '#include "engine/profile/profile.h"\n' >"$tmp/t/client/planted.c"
expect_fail "client includes engine" client/planted.c

fresh
printf '#include "tools/certforge/cli.h"\n' >"$tmp/t/engine/planted.c"
expect_fail "engine includes tools" engine/planted.c

fresh
printf '#include "engine/pipeline/pipeline.h"\n' >"$tmp/t/acme/planted.c"
expect_fail "acme includes engine" acme/planted.c

fresh
sed -i 's|#include "common/status.h" |#include "proto/proto.h"\n#include "common/status.h" |' "$tmp/t/client/certforge.h"
expect_fail "public header includes proto" client/certforge.h

fresh
printf '#include "der.h"\n' >"$tmp/t/engine/planted.c"
expect_fail "bare header name" engine/planted.c

fresh
printf '#include "../der/der.h"\n' >"$tmp/t/engine/planted.c"
expect_fail "relative path" engine/planted.c

fresh
printf '#include "cf_testutil.h"\n' >"$tmp/t/engine/planted.c"
expect_fail "test runner outside tests" engine/planted.c

# --fix names a bare project header by its module path, then passes
fresh
printf '#include "der.h"\n' >"$tmp/t/engine/planted.c"
printf '#include "cf_test.h"\n#include "proto.h"\n' >"$tmp/t/tests/planted.c"
if out=$("$check" --fix "$tmp/t" 2>&1) && grep -q '^#include "engine/der/der.h"$' "$tmp/t/engine/planted.c" &&
   grep -q '^#include "cf_test.h"$' "$tmp/t/tests/planted.c" &&
   grep -q '^#include "proto/proto.h"$' "$tmp/t/tests/planted.c"; then
  echo "ok   --fix: $(head -n1 <<<"$out")"
else
  echo "FAIL --fix: $out"; cat "$tmp/t/engine/planted.c" "$tmp/t/tests/planted.c"; fails=$((fails + 1))
fi

[ $fails -eq 0 ] || { echo "$fails case(s) failed"; exit 1; }
