#!/usr/bin/env bash
# tools/deps.sh — install the Debian packages certforge needs to build, test
# and run, if any is missing. Sourced or run by quickstart.sh and test.sh.
set -euo pipefail

CF_DEBS=(
  build-essential cmake pkg-config git
  libssl-dev openssl            # OpenSSL 3: all cryptography, provider API
  libp11-kit-dev                # PKCS#11 headers and RFC 7512 URI parser
  libp11-dev libengine-pkcs11-openssl  # libp11: naive baseline in bench/
  softhsm2 opensc               # SoftHSM2 token for tests; pkcs11-tool
  liburing-dev                  # io_uring server
  libcunit1-dev                 # unit tests
  libconfig-dev                 # config files
  libsqlite3-dev                # the ledger (engine/ledger)
  libseccomp-dev                # certforged confines itself after start-up (engine/confine)
  libpq-dev                     # the ledger's PostgreSQL backend (engine/ledger/ledger_pg.c)
  libjansson-dev                # JSON lines of 'certforge issue --batch', status --json
  jq                            # CLI tests read JSON output
  gnuplot-nox                   # bench/plot.sh renders the benchmark's PNGs
  clang libclang-rt-14-dev      # libFuzzer targets
  libevent-dev                  # certforge-acme: HTTPS (evhttp + OpenSSL bufferevents)
  libcurl4-openssl-dev          # certforge-acme: http-01 validation
  pebble                        # reference ACME server (bench) and pebble-challtestsrv (test DNS)
  certbot lego uacme dehydrated # real ACME clients the tests run against certforge-acme
  python3-acme                  # in-repo ACME protocol tests (ARI, negative cases)
  curl sqlite3                  # tests and hooks
  libldns-dev                   # certforge-agent: RFC 2136 updates with TSIG for dns-01 (agent/dnsupd.c)
  knot dnsutils                 # the agent's tests: knotd takes those updates, dig reads the zone
  scdoc                         # the man pages: dist/man/*.scd made into roff at build time
  groff-base                    # tests/install: the man pages render without warnings
  libsystemd-dev                # sd_notify: the daemons tell systemd when they serve (Type=notify)
)

# Wanted but not required: without them the PostgreSQL tests are reported
# skipped (tools/pg-cluster.sh exits 77), everything else runs.
CF_DEBS_OPTIONAL=(
  postgresql                    # throwaway clusters for the PostgreSQL ledger tests and bench
  systemd                       # tests/install: systemd-analyze verify of the units (else not verified)
)

cf_missing_debs() {
  local p missing=()
  for p in "${CF_DEBS[@]}" "${CF_DEBS_OPTIONAL[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  echo "${missing[@]:-}"
}

cf_install_deps() {
  local missing
  missing=$(cf_missing_debs)
  [ -z "$missing" ] && return 0
  echo "certforge: installing missing packages: $missing" >&2
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "certforge: need root (or sudo) to install: $missing" >&2; return 1; }
    sudo=sudo
  fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  local required=() p
  for p in $missing; do
    [[ " ${CF_DEBS_OPTIONAL[*]} " == *" $p "* ]] || required+=("$p")
  done
  if [ ${#required[@]} -gt 0 ]; then
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${required[@]}" >/dev/null
  fi
  for p in $missing; do
    [[ " ${CF_DEBS_OPTIONAL[*]} " == *" $p "* ]] || continue
    # Debian's postgresql package starts a system cluster; the tests use their
    # own (tools/pg-cluster.sh), so only the binaries matter here.
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$p" >/dev/null ||
      echo "certforge: could not install $p: its tests will be skipped" >&2
  done
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  cf_install_deps
fi
