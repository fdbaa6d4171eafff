#include "bench/bench_common.h"

#include <libpq-fe.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cf_testutil.h"

double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int mkdir_p(const char *path)
{
    char buf[PATH_MAX];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(buf, 0700);
            *p = '/';
        }
    return mkdir(buf, 0700) == 0 || errno == EEXIST ? 0 : -1;
}

int bench_setup_ca(bench_setup *su, const char *argv0)
{
    cf_softhsm h;
    if (cf_softhsm_init(&h, "bench", "24681357") != 0)
        return -1;
    snprintf(su->dir, sizeof(su->dir), "%s", h.dir);
    snprintf(su->module, sizeof(su->module), "%s", h.module);
    snprintf(su->pin_file, sizeof(su->pin_file), "%s", h.pin_file);
    snprintf(su->pin, sizeof(su->pin), "%s", h.pin);
    cf_softhsm_uri(&h, NULL, su->token_uri, sizeof(su->token_uri));
    snprintf(su->key_uri, sizeof(su->key_uri), "pkcs11:token=bench;object=ca");
    snprintf(su->ca_pem, sizeof(su->ca_pem), "%s/ca.pem", su->dir);

    /* The certforge CLI sits next to this binary. */
    char self[PATH_MAX], cli[PATH_MAX + 16];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0)
        snprintf(self, sizeof(self), "%s", argv0);
    else
        self[n] = 0;
    char *sl = strrchr(self, '/');
    if (sl)
        *sl = 0;
    snprintf(cli, sizeof(cli), "%s/certforge", self);
    if (access(cli, X_OK) != 0) {
        fprintf(stderr, "certforge-bench: %s not found (build the certforge target)\n", cli);
        return -1;
    }
    if (cf_sh("'%s' keys generate --token '%s' --type '%s' --label ca >/dev/null", cli,
              su->token_uri, su->ca_key) != 0 ||
        cf_sh("'%s' ca init-root --token '%s' --key '%s' --subject "
              "'/C=FI/O=5gc.mnc001.mcc001.3gppnetwork.org/CN=certforge-bench NF CA' "
              "--days 3650 --out '%s' >/dev/null",
              cli, su->token_uri, su->key_uri, su->ca_pem) != 0) {
        fprintf(stderr, "certforge-bench: CA set-up with %s failed\n", cli);
        return -1;
    }
    if (su->hsm_latency_us > 0) {
#ifdef CF_BENCH_SHIM_PATH
        const char *shim = CF_BENCH_SHIM_PATH;
        if (access(shim, R_OK) != 0) {
            fprintf(stderr, "certforge-bench: %s not found (build the cf_shim target)\n", shim);
            return -1;
        }
        char lat[16];
        snprintf(lat, sizeof(lat), "%u", su->hsm_latency_us);
        setenv("CF_SHIM_MODULE", su->module, 1);
        setenv("CF_SHIM_SIGN_LATENCY_US", lat, 1);
        snprintf(su->token_uri, sizeof(su->token_uri),
                 "pkcs11:token=bench?module-path=%s&pin-source=file:%s", shim, su->pin_file);
#else
        fprintf(stderr, "certforge-bench: built without the PKCS#11 shim: no --hsm-latency-us\n");
        return -1;
#endif
    }
    return 0;
}

void bench_setup_cleanup(bench_setup *su)
{
    if (su->dir[0] && strstr(su->dir, "cf-softhsm-"))
        cf_sh("rm -rf '%s'", su->dir);
    csr_pool_free(&su->pool);
}

int bench_write_config(const bench_setup *su, unsigned threads, unsigned queue, const char *name,
                       const char *extra, char *path, size_t len)
{
    snprintf(path, len, "%s/%s", su->dir, name);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f,
            "tokens = ( { name = \"bench\"; uri = \"%s\"; } );\n"
            "keys = ( { name = \"ca\"; token = \"bench\"; uri = \"pkcs11:object=ca\"; "
            "sessions = %u; sign_threads = %u; } );\n"
            "issuers = ( { name = \"ca\"; key = \"ca\"; certificate = \"%s\"; } );\n"
            "profiles = ( {\n"
            "  name = \"nf\"; type = \"nf\"; issuer = \"ca\";\n"
            "  subject = { C = \"FI\"; O = \"5gc.mnc001.mcc001.3gppnetwork.org\"; };\n"
            "  validity = { default = \"90d\"; max = \"365d\"; };\n"
            "  eku = [\"serverAuth\", \"clientAuth\"];\n"
            "  crl_dp = \"http://crl.5gc.mnc001.mcc001.3gppnetwork.org/nf.crl\";\n"
            "} );\n"
            "pipeline = { workers = %u; queue = %u; batch = %u; verify_issued = \"%s\"; };\n"
            "%s",
            su->token_uri, su->sessions ? su->sessions : threads, su->sessions, su->ca_pem, threads,
            queue, su->batch > queue ? queue : su->batch, su->verify ? "all" : "off",
            extra ? extra : "");
    /* certforged records every certificate (docs/ledger.md): a fresh
     * ledger per run, in the bench's folder (the core mode ignores it), or
     * with --ledger-conninfo a fresh schema certforge_bench in that
     * PostgreSQL database */
    if (!su->no_ledger && su->ledger_conninfo) {
        PGconn *c = PQconnectdb(su->ledger_conninfo);
        PGresult *r = NULL;
        if (PQstatus(c) == CONNECTION_OK)
            r = PQexec(c, "SET client_min_messages = warning; DROP SCHEMA IF EXISTS "
                          "certforge_bench CASCADE; CREATE SCHEMA certforge_bench");
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            fprintf(stderr, "certforge-bench: --ledger-conninfo: %s",
                    r ? PQresultErrorMessage(r) : PQerrorMessage(c));
            PQclear(r);
            PQfinish(c);
            fclose(f);
            return -1;
        }
        PQclear(r);
        PQfinish(c);
        fprintf(f,
                "ledger = { backend = \"postgresql\"; conninfo = \"%s "
                "options=-csearch_path=certforge_bench\"; };\n",
                su->ledger_conninfo);
    } else if (!su->no_ledger) {
        fprintf(f, "ledger = { backend = \"sqlite\"; path = \"ledger.db\"; };\n");
        static const char *const sfx[] = {"", "-wal", "-shm"};
        for (size_t i = 0; i < 3; i++) {
            char db[400];
            snprintf(db, sizeof(db), "%s/ledger.db%s", su->dir, sfx[i]);
            unlink(db);
        }
    }
    return fclose(f);
}
