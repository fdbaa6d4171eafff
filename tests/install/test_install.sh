#!/usr/bin/env bash
# `cmake --install` into a throwaway prefix, then only what was installed is
# used: every program's --version, the man pages (they render without
# warnings, have FILES, EXIT STATUS and EXAMPLES, and describe every long
# option the program's --help lists; certforge(1) names exactly the options
# of each 'certforge COMMAND [SUBCOMMAND] --help'; certforged.conf(5)
# exactly the settings engine/config/config.c accepts, each reloaded or
# restart only), the systemd units (systemd-analyze
# verify), the bash completion, libcertforge (soname, only the public API
# exported) and the example program compiled with `pkg-config --cflags
# --libs certforge` against the installed headers, run against the
# installed certforged on a token the installed certforge made: STATUS and
# an ISSUE whose certificate verifies. The daemon is stopped by its PID.
#
#   test_install.sh BUILD_DIR SOURCE_DIR
set -uo pipefail
B=${1:?usage: test_install.sh BUILD_DIR SOURCE_DIR}
SRC=${2:?usage: test_install.sh BUILD_DIR SOURCE_DIR}
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
         share/man/man1/certforge.1 share/man/man1/certforge-bench.1 share/man/man8/certforged.8 share/man/man5/certforged.conf.5 \
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
# every long option --help names is described on the page (as --opt in the
# roff scdoc makes from dist/man/*.scd; a whole option, --out does not stand
# for --out-dir) (the options of other programs in its EXAMPLES — curl,
# certforge acme — aside)
has_opt() { grep -qE -- "(^|[^a-z0-9-])$1([^a-z0-9-]|\$)" "$2"; }
opts_of() { "$@" --help 2>&1 | grep -v "curl \|certforge acme\|https://" | grep -oE -- '--[a-z][a-z0-9-]+' | sort -u; }
for pair in certforged:man8/certforged.8 certforge-acme:man8/certforge-acme.8 \
            certforge-agent:man8/certforge-agent.8 certforge-bench:man1/certforge-bench.1; do
  prog=${pair%%:*} page=$P/share/man/${pair#*:}
  bin=$P/sbin/$prog; [ -x "$bin" ] || bin=$P/bin/$prog
  missing=""
  for o in $(opts_of "$bin"); do
    has_opt "$o" "$page" || missing="$missing $o"
  done
  [ -z "$missing" ] && ok || fail "$prog(${page##*.}) lacks options from --help:$missing"
done
# certforge(1), COMMANDS: one entry per subcommand, each naming exactly the
# options of 'certforge COMMAND [SUBCOMMAND] --help'. The subcommands are
# the ones --help lists (token, keys, ca: "Subcommands:"; acme: its usage
# lines, which are its option lists); ledger has one --help for all its
# subcommands, so its entries are taken together. An option --help defines
# (a line "  --opt") that the entry lacks fails, and so does an option the
# entry names that --help never mentions. --help itself is a common option.
man_cmd_opts() { # certforge(1) roff -> "KEY<TAB>--opt" per option of each entry
  awk '/^\.SH /{insec = ($0 ~ /^\.SH COMMANDS/); key=""; next}
       !insec {next}
       /^\.RS/{depth++; next}
       /^\.RE/{depth--; next}
       /^\.(P|br)$/ {next}
       depth==0 { key=""; if ($0 ~ /^\\fB[a-z]/) { key=$0; sub(/^\\fB/,"",key); sub(/\\fR.*/,"",key) } }
       key=="" {next}
       { l=$0; while (match(l, /--[a-z][a-z0-9-]+/)) { print key "\t" substr(l,RSTART,RLENGTH); l=substr(l,RSTART+RLENGTH) } }' "$1" | sort -u
}
acme_usage_opts() { # certforge acme --help -> "acme SUB...<TAB>--opt"
  awk '/^(usage:)? *certforge acme [a-z]/ { s=$0; sub(/^(usage:)? *certforge acme /,"",s); n=split(s,w," ");
          key="acme"; for (i=1; i<=n && w[i] ~ /^[a-z]/; i++) key=key " " w[i] }
       /^(usage:)? *certforge acme [a-z]/ || (key != "" && /^             +--/) {
          l=$0; while (match(l, /--[a-z][a-z0-9-]+/)) { print key "\t" substr(l,RSTART,RLENGTH); l=substr(l,RSTART+RLENGTH) }; next }
       { key="" }'
}
CFI=$P/bin/certforge MAN1=$P/share/man/man1/certforge.1
man_cmd_opts "$MAN1" > "$D/man.opts"
[ -s "$D/man.opts" ] && ok || fail "certforge(1): no COMMANDS entries with options found"
"$CFI" acme --help 2>&1 | acme_usage_opts | sort -u > "$D/acme.opts"
[ -s "$D/acme.opts" ] && ok || fail "certforge acme --help: no usage lines with options found"
cmds=$("$CFI" --help | sed -n '/^Commands:/,/^$/p' | awk 'NR > 1 && NF { print $1 }')
[ -n "$cmds" ] && ok || fail "certforge --help lists no commands"
keys=""
for c in $cmds; do
  subs=$("$CFI" "$c" --help 2>&1 | sed -n '/^Subcommands:/,/^$/p' | awk 'NR > 1 && /^  [a-z]/ { print $1 }')
  if [ "$c" = acme ]; then
    keys="$keys $(cut -f1 "$D/acme.opts" | sort -u | tr ' ' ':')"
  elif [ -n "$subs" ]; then
    for s in $subs; do keys="$keys $c:$s"; done
  else
    keys="$keys $c"
  fi
done
for k in $keys; do
  k=${k//:/ }
  src="certforge $k --help"
  if [[ $k == acme\ * ]]; then
    src="the usage line of certforge $k in certforge acme --help"
    want=$(awk -F'\t' -v k="$k" '$1 == k { print $2 }' "$D/acme.opts")
    mentioned=$want
  else
    help=$("$CFI" $k --help 2>&1)
    want=$(grep -oE -- '^  --[a-z][a-z0-9-]+' <<<"$help" | sed 's/^ *//' | grep -vx -- --help | sort -u)
    mentioned=$(grep -oE -- '--[a-z][a-z0-9-]+' <<<"$help" | sort -u)
  fi
  if [[ $k == ledger* ]]; then   # one --help for every ledger subcommand
    have=$(awk -F'\t' '$1 ~ /^ledger( |$)/ { print $2 }' "$D/man.opts" | sort -u)
    grep -q "^ledger" "$D/man.opts" && ok || fail "certforge(1) has no entry for 'ledger'"
  else
    have=$(awk -F'\t' -v k="$k" '$1 == k { print $2 }' "$D/man.opts")
    grep -qE "^\\\\fB$k( |\\\\)" "$MAN1" && ok || fail "certforge(1) has no entry for '$k'"
  fi
  lacks=$(comm -23 <(sort -u <<<"$want") <(sort -u <<<"$have") | tr '\n' ' ')
  extra=$(comm -13 <(sort -u <<<"$mentioned") <(sort -u <<<"$have") | tr '\n' ' ')
  [ -z "${lacks// }" ] && ok || fail "certforge(1) '$k' lacks options of '$src': $lacks"
  [ -z "${extra// }" ] && ok || fail "certforge(1) '$k' names options '$src' does not: $extra"
done

# certforged.conf(5), SETTINGS: one "SECTION.KEY ..." entry per setting;
# exactly the settings the loader accepts, read from its tables in
# engine/config/config.c (the 'known', 'common', 'by_type' and 'vknown'
# arrays of each load_SECTION function, only_known() refusing the rest).
# Each entry also says whether SIGHUP reloads it or a restart is needed.
conf_loader_keys() { # config.c -> one accepted setting path a line
  awk 'BEGIN { pre["root"]=""; pre["pipeline"]="pipeline."; pre["log"]="log."; pre["tokens"]="tokens.";
               pre["keys"]="keys."; pre["issuers"]="issuers."; pre["subject"]="profiles.subject.";
               pre["profile"]="profiles."; pre["server"]="server."; pre["grant"]="grants.";
               pre["ledger"]="ledger."; pre["crl"]="crl."; pre["confine"]="confine."; pre["metrics"]="metrics." }
       /^static int load_[a-z_]+\(/ { fn=$3; sub(/\(.*/,"",fn); sub(/^load_/,"",fn) }
       /(known|common|by_type)(\[[^]]*\])+ = \{/ { intab=1; p=(fn in pre) ? pre[fn] : "UNMAPPED(load_" fn ")." }
       /vknown\[\] = \{/ { p="profiles.validity." }
       intab { l=$0; while (match(l, /"[A-Za-z_]+"/)) { print p substr(l,RSTART+1,RLENGTH-2); l=substr(l,RSTART+RLENGTH) } }
       intab && /NULL\};|^ *\};/ { intab=0 }' "$1" | sort -u
}
MAN5=$P/share/man/man5/certforged.conf.5
CONFC=$SRC/engine/config/config.c
conf_loader_keys "$CONFC" > "$D/conf.loader"
# (an entry: a line "\fBKEY\fR ..." followed by its indented description)
awk '/^\.SH /{insec = ($0 ~ /^\.SH SETTINGS/)}
     insec && /^\.RS/ && prev ~ /^\\fB[A-Za-z_.\\&]+\\fR / { print prev } { prev=$0 }' "$MAN5" > "$D/conf.entries"
sed 's/^\\fB//; s/\\fR .*//; s/\\&//g' "$D/conf.entries" | sort -u > "$D/conf.man"
[ "$(wc -l < "$D/conf.loader")" -ge 60 ] && ! grep -q UNMAPPED "$D/conf.loader" && ok \
  || fail "engine/config/config.c: could not read the loader's tables: $(grep UNMAPPED "$D/conf.loader" | head -3 | tr '\n' ' ')($(wc -l < "$D/conf.loader") settings)"
[ "$(wc -l < "$D/conf.man")" -ge 60 ] && ok || fail "certforged.conf(5): only $(wc -l < "$D/conf.man") settings found under SETTINGS"
# a group documented by its members (profiles.validity.max) counts as documented
{ cat "$D/conf.man"; sed -n 's/^\(.*\)\.[^.]*$/\1/p' "$D/conf.man"; } | sort -u > "$D/conf.man+"
unknown=$(comm -13 "$D/conf.loader" "$D/conf.man" | tr '\n' ' ')
undoc=$(comm -23 "$D/conf.loader" "$D/conf.man+" | tr '\n' ' ')
[ -z "$unknown" ] && ok || fail "certforged.conf(5) documents settings the loader does not accept: $unknown"
[ -z "$undoc" ] && ok || fail "certforged.conf(5) lacks settings the loader accepts: $undoc"
noreload=$(grep -vE '(reloaded|restart only)$' "$D/conf.entries" | sed 's/^\\fB//; s/\\fR.*//; s/\\&//g' | tr '\n' ' ')
[ -z "$noreload" ] && ok || fail "certforged.conf(5): settings that say neither 'reloaded' nor 'restart only': $noreload"

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
# Every option certforge COMMAND [SUB] --help defines is offered by the
# completion for that command (the completion function run as bash would).
COMP=$P/share/bash-completion/completions/certforge
comp_opts() { bash -c ". '$COMP'; _certforge_opts \"\$1\" \"\$2\"" _ "$1" "$2"; }
for cs in "token init" "token change-pin" "keys list" "keys generate" "keys show" "keys export-pub" \
          "keys csr" "keys delete" "ca init-root" "ca init-intermediate" "ca cross-sign" "ca show" \
          "issue " "status " "csr-gen " "revoke " "crl " "ledger " "acme eab"; do
  read -r c1 c2 <<<"$cs"
  offered=" $(comp_opts "$c1" "${c2:-}") "
  # acme has one --help for its subcommands: its options against the union
  [ "$c1" = acme ] && offered=" $(comp_opts acme eab) $(comp_opts acme token) $(comp_opts acme status) "
  missing=""
  for o in $("$P/bin/certforge" $c1 ${c2:+$c2 ${c1:+}} --help 2>&1 | grep -oE -- '^ +--[a-z][a-z0-9-]+' | tr -d ' ' | sort -u); do
    [[ $offered == *" $o "* ]] || missing="$missing $o"
  done
  [ -z "$missing" ] && ok || fail "completion for 'certforge $cs' lacks:$missing"
done

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
min_checks=150
[ "$checks" -ge "$min_checks" ] || echo "FAIL: only $checks checks made, want at least $min_checks" >&2
[ "$fails" -eq 0 ] && [ "$checks" -ge "$min_checks" ]
