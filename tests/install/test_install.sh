#!/usr/bin/env bash
# `cmake --install` into a throwaway prefix, then only what was installed is
# used: every program's --version, the man pages (they render without
# warnings, have FILES, EXIT STATUS and EXAMPLES, and describe every long
# option the program's --help lists), the systemd units (systemd-analyze
# verify), the bash completion, libcertforge (soname, only the public API
# exported) and the example program compiled with `pkg-config --cflags
# --libs certforge` against the installed headers, run against the
# installed certforged on a token the installed certforge made: STATUS and
# an ISSUE whose certificate verifies. The daemon is stopped by its PID.
#
#   test_install.sh BUILD_DIR
set -uo pipefail
B=${1:?usage: test_install.sh BUILD_DIR}
MOD=${CF_SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
for tool in cmake pkg-config cc groff softhsm2-util openssl readelf nm; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed"; exit 77; }
done
[ -r "$MOD" ] || { echo "SKIP: no SoftHSM module at $MOD"; exit 77; }

D=$(mktemp -d "${TMPDIR:-/tmp}/cf-install-XXXXXX")
P=$D/prefix
DPID=
stop_daemon() {
  [ -n "$DPID" ] || return 0
  kill -TERM "$DPID" 2>/dev/null
  for _ in $(seq 1 200); do kill -0 "$DPID" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$DPID" 2>/dev/null && { echo "FAIL: certforged still running 20 s after SIGTERM" >&2; kill -KILL "$DPID"; }
  wait "$DPID" 2>/dev/null
  DPID=
}
trap 'stop_daemon; rm -rf "$D"' EXIT
fails=0 checks=0
ok()   { checks=$((checks + 1)); }
fail() { checks=$((checks + 1)); fails=$((fails + 1)); echo "FAIL: $*" >&2; }

cmake --install "$B" --prefix "$P" >"$D/install.log" 2>&1 || { cat "$D/install.log"; echo "FAIL: cmake --install"; exit 1; }
ok
version=$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$B/CMakeCache.txt")
[ -n "$version" ] || version=$("$B/certforged" --version | cut -d' ' -f2)
for f in sbin/certforged sbin/certforge-acme sbin/certforge-agent bin/certforge bin/certforge-bench \
         include/certforge/certforge.h include/certforge/common/status.h include/certforge/common/issue.h \
         include/certforge/common/sigalg.h lib/pkgconfig/certforge.pc lib/ossl-modules/certforge.so \
         share/man/man1/certforge.1 share/man/man1/certforge-bench.1 share/man/man8/certforged.8 \
         share/man/man8/certforge-acme.8 share/man/man8/certforge-agent.8 \
         lib/systemd/system/certforged.service lib/systemd/system/certforge-acme.service \
         lib/systemd/system/certforge-agent.service lib/sysusers.d/certforge.conf \
         share/bash-completion/completions/certforge share/doc/certforge/examples/certforged.conf \
         share/doc/certforge/examples/certforge-client.c; do
  [ -e "$P/$f" ] && ok || fail "not installed: $f"
done

# --- every program: --version -------------------------------------------------------------
for p in sbin/certforged sbin/certforge-acme sbin/certforge-agent bin/certforge bin/certforge-bench; do
  out=$("$P/$p" --version 2>&1)
  [ "$out" = "${p#*/} $version" ] && ok || fail "$p --version: '$out', want '${p#*/} $version'"
done

# --- man pages ------------------------------------------------------------------------------
for m in "$P"/share/man/man*/*; do
  w=$(groff -man -ww -z -Tutf8 "$m" 2>&1)
  [ -z "$w" ] && ok || fail "$(basename "$m"): groff warnings: $w"
  for sec in NAME SYNOPSIS DESCRIPTION FILES "EXIT STATUS" EXAMPLES "SEE ALSO"; do
    grep -q "^\.SH $sec\$" "$m" || grep -q "^\.SH \"$sec\"\$" "$m" || { fail "$(basename "$m") has no $sec"; continue; }
  done
  ok
  ! grep -q "@[A-Z_]*@" "$m" && ok || fail "$(basename "$m"): unexpanded @VARIABLE@"
done
# every long option --help names is described on the page (\-\-opt in roff)
# (the options of other programs in its EXAMPLES — curl, certforge acme — aside)
opts_of() { "$@" --help 2>&1 | grep -v "curl \|certforge acme\|https://" | grep -oE -- '--[a-z][a-z0-9-]+' | sort -u; }
for pair in certforged:man8/certforged.8 certforge-acme:man8/certforge-acme.8 \
            certforge-agent:man8/certforge-agent.8 certforge-bench:man1/certforge-bench.1; do
  prog=${pair%%:*} page=$P/share/man/${pair#*:}
  bin=$P/sbin/$prog; [ -x "$bin" ] || bin=$P/bin/$prog
  missing=""
  for o in $(opts_of "$bin"); do
    grep -qF -- "$(sed 's/-/\\-/g' <<<"$o")" "$page" || missing="$missing $o"
  done
  [ -z "$missing" ] && ok || fail "$prog(${page##*.}) lacks options from --help:$missing"
done
missing=""
for c in $("$P/bin/certforge" --help | sed -n '/^Commands:/,/^$/p' | awk 'NR > 1 && NF { print $1 }'); do
  grep -qE "^\.B $(sed 's/-/\\\\-/g' <<<"$c")( |$)" "$P/share/man/man1/certforge.1" || missing="$missing $c"
done
[ -z "$missing" ] && ok || fail "certforge(1) lacks commands:$missing"
for c in keys:"list generate show export-pub csr delete" ca:"init-root init-intermediate cross-sign show" token:"init change-pin"; do
  for s in ${c#*:}; do
    grep -qE "^\.B ${c%%:*} $(sed 's/-/\\\\-/g' <<<"$s")( |$)" "$P/share/man/man1/certforge.1" || missing="$missing ${c%%:*}-$s"
  done
done
[ -z "$missing" ] && ok || fail "certforge(1) lacks subcommands:$missing"

# --- systemd units ---------------------------------------------------------------------------
if command -v systemd-analyze >/dev/null; then
  out=$(systemd-analyze verify --man=no "$P"/lib/systemd/system/*.service 2>&1) && [ -z "$out" ] && ok \
    || fail "systemd-analyze verify: $out"
else
  echo "(no systemd-analyze: units not verified)"
fi
for u in certforged certforge-acme certforge-agent; do
  f=$P/lib/systemd/system/$u.service
  grep -q "^ExecStart=$P/sbin/$u --config " "$f" && grep -q "^User=$u\$\|^User=certforge\$" "$f" &&
    grep -q "^NoNewPrivileges=yes" "$f" && grep -q "^ProtectSystem=strict" "$f" && ok || fail "$u.service: $(grep -E '^(ExecStart|User)=' "$f")"
done

# --- bash completion -------------------------------------------------------------------------
out=$(bash -c ". /usr/share/bash-completion/bash_completion 2>/dev/null; . '$P/share/bash-completion/completions/certforge'; complete -p certforge certforged" 2>&1)
grep -q "_certforge certforge" <<<"$out" && grep -q "_certforge_daemon certforged" <<<"$out" && ok || fail "completion: $out"

# --- libcertforge ------------------------------------------------------------------------------
lib=$(readlink -f "$P/lib/libcertforge.so")
readelf -d "$lib" | grep -q "SONAME.*\[libcertforge\.so\.0\]" && ok || fail "soname: $(readelf -d "$lib" | grep SONAME)"
[ "$(readlink "$P/lib/libcertforge.so.0")" = "$(basename "$lib")" ] && ok || fail "libcertforge.so.0 link"
leaked=$(nm -D --defined-only "$lib" | awk '$2 ~ /[TDB]/ { print $3 }' | sed 's/@.*//' | grep -v '^cf_\|^CERTFORGE_' || true)
[ -z "$leaked" ] && ok || fail "libcertforge exports more than cf_*: $leaked"
nm -D --defined-only "$lib" | grep -q " cf_status_name@@CERTFORGE_0" && ok || fail "cf_status_name not exported"
# added later: a version node of its own, so a program linked against it needs a new enough library
for f in cf_crl_shard_one cf_client_submit_crl_shard; do
  nm -D --defined-only "$lib" | grep -q " $f@@CERTFORGE_0.1$" && ok || fail "$f not exported as CERTFORGE_0.1"
done
export PKG_CONFIG_PATH=$P/lib/pkgconfig
[ "$(pkg-config --modversion certforge)" = "$version" ] && ok || fail "pkg-config --modversion"
# the example, built only against the installed tree (no source-tree include
# path); a sanitizer build of the library wants its runtime in the program
sanflags=""
grep -q '^CF_ASAN:BOOL=ON' "$B/CMakeCache.txt" && sanflags="$sanflags -fsanitize=address"
grep -q '^CF_UBSAN:BOOL=ON' "$B/CMakeCache.txt" && sanflags="$sanflags -fsanitize=undefined"
grep -q '^CF_TSAN:BOOL=ON' "$B/CMakeCache.txt" && sanflags="$sanflags -fsanitize=thread"
cc -std=c11 -Wall -Wextra -Werror $sanflags -o "$D/certforge-client" "$P/share/doc/certforge/examples/certforge-client.c" \
   $(pkg-config --cflags --libs certforge) 2>"$D/cc.err" && ok || fail "the example does not build: $(cat "$D/cc.err")"
export LD_LIBRARY_PATH=$P/lib
# (ldd's output kept first: grep -q may stop reading early, and pipefail
# would count ldd's SIGPIPE as a failure)
lddout=$(ldd "$D/certforge-client" 2>&1)
grep -q "libcertforge.so.0 => $P/lib/libcertforge.so.0" <<<"$lddout" && ok || fail "ldd: $lddout"

# --- the installed programs at work ----------------------------------------------------------------
cd "$D"
mkdir tokens ledger
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n' "$D" > softhsm2.conf
export SOFTHSM2_CONF=$D/softhsm2.conf
(umask 077; echo 87654321 > so.pin; echo 2468 > user.pin)
unset CERTFORGE_PIN CERTFORGE_SOCKET CERTFORGE_TOKEN
CF=$P/bin/certforge
"$CF" token init --label inst --so-pin-file so.pin --pin-file user.pin >/dev/null && ok || fail "installed certforge token init"
export CERTFORGE_TOKEN="pkcs11:token=inst?module-path=$MOD&pin-source=file:$D/user.pin"
"$CF" keys generate --type ec-p256 --label ca >/dev/null &&
"$CF" ca init-root --key pkcs11:object=ca --subject "/C=FI/O=5gc.mnc001.mcc001.3gppnetwork.org/CN=Installed CA" --out ca.pem >/dev/null && ok \
  || fail "installed certforge: CA ceremony"
SOCK=$D/run/cf.sock
cat > certforged.conf <<CONF
tokens = ( { name = "ca"; uri = "$CERTFORGE_TOKEN"; } );
keys = ( { name = "ca"; token = "ca"; uri = "pkcs11:object=ca"; } );
issuers = ( { name = "ca"; key = "ca"; certificate = "ca.pem"; } );
profiles = ( { name = "nf"; type = "nf"; issuer = "ca"; subject = { C = "FI"; O = "5gc.mnc001.mcc001.3gppnetwork.org"; };
    eku = ["serverAuth"]; crl_dp = "http://crl.example/ca.crl"; require_nf_instance_id = false; require_nf_types = false; } );
server = { socket = "$SOCK"; socket_mode = "0600"; };
grants = ( { uid = $(id -u); profiles = ["nf"]; ops = ["issue", "status"]; } );
ledger = { backend = "sqlite"; path = "ledger/ledger.db"; };
CONF
"$P/sbin/certforged" --check-config certforged.conf >/dev/null && ok || fail "installed certforged --check-config"
: > d.log
"$P/sbin/certforged" --config certforged.conf > d.log 2>&1 &
DPID=$!
for _ in $(seq 1 300); do
  grep -q "certforged: ready" d.log && break
  kill -0 "$DPID" 2>/dev/null || break
  sleep 0.1
done
grep -q "certforged: ready" d.log || { cat d.log >&2; echo "FAIL: installed certforged not ready"; exit 1; }
out=$("$D/certforge-client" "$SOCK" 2>&1) && grep -qx "version=$version" <<<"$out" && ok || fail "example STATUS: $out"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout amf.key -subj "/CN=amf" -outform DER -out amf.csr 2>/dev/null
out=$("$D/certforge-client" "$SOCK" amf.csr nf amf.5gc.example amf.der 2>&1) && grep -q "^issued: " <<<"$out" && ok \
  || fail "example ISSUE: $out"
openssl verify -CAfile ca.pem <(openssl x509 -inform DER -in amf.der) >/dev/null 2>&1 && ok || fail "the example's certificate does not verify"
openssl x509 -inform DER -in amf.der -noout -ext subjectAltName | grep -q "DNS:amf.5gc.example" && ok || fail "the example's certificate lacks its name"
out=$("$D/certforge-client" "$SOCK" amf.csr nf-none amf.5gc.example x.der 2>&1); rc=$?
[ $rc -eq 1 ] && grep -q "UNKNOWN_PROFILE\|UNAUTHORIZED" <<<"$out" && ok || fail "example with a bad profile: exit $rc: $out"
# the provider module loads from where it was installed (a sanitizer build
# of it needs its runtime preloaded into the uninstrumented openssl)
SANLIBS=$(ldd "$P/lib/ossl-modules/certforge.so" 2>/dev/null | awk '/lib(asan|ubsan|tsan)\.so/ {print $3}' | tr '\n' ' ')
LD_PRELOAD="$SANLIBS" openssl list -providers -provider-path "$P/lib/ossl-modules" -provider certforge 2>&1 | grep -qi "certforge" && ok \
  || fail "openssl cannot load the installed provider"
stop_daemon

echo "test_install: $checks checks, $fails failed"
min_checks=71
[ "$checks" -ge "$min_checks" ] || echo "FAIL: only $checks checks made, want at least $min_checks" >&2
[ "$fails" -eq 0 ] && [ "$checks" -ge "$min_checks" ]
