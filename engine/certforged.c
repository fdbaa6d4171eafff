/* certforged — the certforge daemon (docs/certforged.md).
 *
 *   certforged --config FILE
 *
 * Runs in the foreground; one key=value line per event on stderr. Start-up:
 * config (refused naming file:line and setting), socket (a live daemon's is
 * refused, a stale one replaced), tokens and keys (HSM login), profiles,
 * pipeline, then "certforged: ready socket=PATH". SIGTERM/SIGINT: stop
 * accepting, answer every request already received, exit 0.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "config.h"
#include "engine.h"
#include "hsm.h"
#include "ledger.h"
#include "ledger_pipe.h"
#include "profile.h"
#include "proto.h"
#include "server.h"

#define EXIT_CONFIG 1 /* config or start-up refused */
#define EXIT_USAGE 2

static void usage(FILE *f)
{
    fprintf(f, "usage: certforged --config FILE\n"
               "\n"
               "Serve certificate issuance on the Unix socket named in FILE (server.socket).\n"
               "Runs in the foreground and logs one key=value line per event to stderr.\n"
               "SIGTERM/SIGINT: stop accepting, answer accepted requests, exit 0.\n"
               "Every certificate is recorded in the ledger (FILE's `ledger` section,\n"
               "required) before it is released.\n"
               "See docs/certforged.md and docs/configuration.md.\n");
}

typedef struct daemon_keys {
    proto_key keys[PROTO_MAX_KEYS];
    uint8_t *spki[PROTO_MAX_KEYS];
    char type[PROTO_MAX_KEYS][16];
    size_t n;
} daemon_keys;

typedef struct daemon_chains {
    srv_chain *chains; /* per profile */
    uint8_t **ders;    /* every certificate read, to free */
    size_t nders, cap;
} daemon_chains;

typedef struct sess_arg {
    cf_engine *eng;
    size_t nkeys;
} sess_arg;

static void sessions_of(void *arg, unsigned *busy, unsigned *total)
{
    const sess_arg *a = arg;
    *busy = *total = 0;
    for (size_t i = 0; i < a->nkeys; i++) {
        hsm_signer *s = cf_engine_signer(a->eng, i);
        if (!s)
            continue;
        *busy += hsm_signer_sessions_busy(s);
        *total += hsm_signer_sessions(s);
    }
}

/* Every failed batch is logged: each one is requests answered
 * LEDGER_FAILURE, which an operator must see. */
static void on_ledger_fail(const char *err, size_t n_jobs, void *arg)
{
    (void)arg;
    char q[600];
    srv_log(CFG_LOG_ERROR, "ledger_failure", "jobs=%zu err=%s", n_jobs,
            srv_log_quote(err, q, sizeof(q)));
}

static void on_ledger_recover(unsigned long long failed_batches, void *arg)
{
    (void)arg;
    srv_log(CFG_LOG_WARNING, "ledger_recovered", "failed_batches=%llu", failed_batches);
}

/* Open the config's ledger; certforged never runs without one, except for
 * certforge-bench's ledger-off comparison (--unsafe-no-ledger). */
static int open_ledger(const cfg_config *cfg, bool no_ledger, ledger **out, char *err,
                       size_t errlen)
{
    *out = NULL;
    if (no_ledger) {
        srv_log(CFG_LOG_WARNING, "ledger_disabled",
                "reason=--unsafe-no-ledger effect=\"certificates are NOT recorded; for "
                "certforge-bench only\"");
        return 0;
    }
    if (!cfg->ledger.line) {
        snprintf(err, errlen,
                 "%s: ledger: missing required section: certforged records every certificate "
                 "before releasing it; add ledger = { backend = \"sqlite\"; path = "
                 "\"state/ledger.db\"; }; (docs/ledger.md)",
                 cfg->path);
        return -1;
    }
    bool pg = cfg->ledger.backend == CFG_LEDGER_POSTGRESQL;
    ledger_opts lo = {
        .backend = pg ? LEDGER_POSTGRESQL : LEDGER_SQLITE,
        .path = cfg->ledger.path,
        .conninfo = cfg->ledger.conninfo,
        .busy_timeout_ms = cfg->ledger.busy_timeout_ms,
    };
    char why[768];
    if (ledger_open(&lo, out, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "%s:%d: ledger.%s: %s", cfg->path, cfg->ledger.line,
                 pg ? "conninfo" : "path", why);
        return -1;
    }
    /* the conninfo holds no password: the config refuses one */
    if (pg)
        srv_log(CFG_LOG_INFO, "ledger_open", "backend=postgresql conninfo=\"%s\" schema_version=%d",
                cfg->ledger.conninfo, ledger_schema_version(*out));
    else
        srv_log(CFG_LOG_INFO, "ledger_open", "backend=%s path=%s schema_version=%d",
                cfg_ledger_backend_name(cfg->ledger.backend), cfg->ledger.path,
                ledger_schema_version(*out));
    return 0;
}

static void on_ready(void *arg, const char *path)
{
    (void)arg;
    fprintf(stderr, "certforged: ready socket=%s\n", path);
    fflush(stderr);
}

/* The KEYS answer: name, type and SPKI DER of each configured key, read
 * once at start-up. */
static int load_keys(const cfg_config *cfg, cf_engine *eng, daemon_keys *dk, char *err,
                     size_t errlen)
{
    for (size_t i = 0; i < cfg->n_keys && dk->n < PROTO_MAX_KEYS; i++) {
        hsm_signer *s = cf_engine_signer(eng, i);
        hsm_err he = {0};
        EVP_PKEY *pub = s ? hsm_signer_public_key(s, &he) : NULL;
        if (!pub) {
            snprintf(err, errlen, "%s:%d: key '%s': %s", cfg->path, cfg->keys[i].line,
                     cfg->keys[i].name, s ? he.msg : "no signer");
            return -1;
        }
        uint8_t *der = NULL;
        int len = i2d_PUBKEY(pub, &der);
        EVP_PKEY_free(pub);
        if (len <= 0) {
            snprintf(err, errlen, "key '%s': cannot encode its public key", cfg->keys[i].name);
            return -1;
        }
        size_t k = dk->n++;
        dk->spki[k] = der;
        switch (hsm_signer_key_type(s)) {
        case HSM_KEY_EC_P256:
            snprintf(dk->type[k], sizeof(dk->type[k]), "ec-p256");
            break;
        case HSM_KEY_EC_P384:
            snprintf(dk->type[k], sizeof(dk->type[k]), "ec-p384");
            break;
        case HSM_KEY_RSA:
            snprintf(dk->type[k], sizeof(dk->type[k]), "rsa-%u", hsm_signer_key_bits(s));
            break;
        case HSM_KEY_ED25519:
            snprintf(dk->type[k], sizeof(dk->type[k]), "ed25519");
            break;
        default:
            snprintf(dk->type[k], sizeof(dk->type[k]), "unknown");
        }
        dk->keys[k].name = (cf_str){cfg->keys[i].name, strlen(cfg->keys[i].name)};
        dk->keys[k].type = (cf_str){dk->type[k], strlen(dk->type[k])};
        dk->keys[k].spki = (proto_blob){der, (size_t)len};
    }
    if (cfg->n_keys > PROTO_MAX_KEYS)
        srv_log(CFG_LOG_WARNING, "keys_truncated", "configured=%zu sent=%d", cfg->n_keys,
                PROTO_MAX_KEYS);
    return 0;
}

static int keep_der(daemon_chains *dc, uint8_t *der)
{
    if (dc->nders == dc->cap) {
        size_t cap = dc->cap ? dc->cap * 2 : 16;
        uint8_t **n = realloc(dc->ders, cap * sizeof(*n));
        if (!n)
            return -1;
        dc->ders = n;
        dc->cap = cap;
    }
    dc->ders[dc->nders++] = der;
    return 0;
}

/* The chain sent with each profile's certificates: its issuer's
 * certificate, then the issuer's `chain` file (PEM), issuer first. */
static int load_chains(const cfg_config *cfg, daemon_chains *dc, char *err, size_t errlen)
{
    dc->chains = calloc(cfg->n_profiles, sizeof(*dc->chains));
    if (!dc->chains)
        return -1;
    for (size_t i = 0; i < cfg->n_profiles; i++) {
        const cfg_issuer *is = &cfg->issuers[cfg->profiles[i].issuer_idx];
        srv_chain *ch = &dc->chains[i];
        uint8_t *der = NULL;
        size_t len = 0;
        char why[256];
        if (profile_read_cert(is->certificate, &der, &len, why, sizeof(why)) != 0) {
            snprintf(err, errlen, "%s:%d: issuer '%s': %s", cfg->path, is->line, is->name, why);
            return -1;
        }
        if (keep_der(dc, der) != 0) {
            free(der);
            return -1;
        }
        ch->certs[ch->n++] = (proto_blob){der, len};
        if (!is->chain)
            continue;
        FILE *f = fopen(is->chain, "r");
        if (!f) {
            snprintf(err, errlen, "%s:%d: issuer '%s': chain %s: %s", cfg->path, is->line, is->name,
                     is->chain, strerror(errno));
            return -1;
        }
        X509 *x;
        while ((x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL) {
            uint8_t *d = NULL;
            int l = i2d_X509(x, &d);
            X509_free(x);
            if (l <= 0)
                continue;
            /* the issuer itself may head the chain file: send it once */
            if ((size_t)l == len && memcmp(d, der, len) == 0) {
                OPENSSL_free(d);
                continue;
            }
            uint8_t *copy = malloc((size_t)l);
            if (copy)
                memcpy(copy, d, (size_t)l);
            OPENSSL_free(d);
            if (!copy || keep_der(dc, copy) != 0) {
                free(copy);
                fclose(f);
                return -1;
            }
            if (ch->n < PROTO_MAX_CHAIN)
                ch->certs[ch->n++] = (proto_blob){copy, (size_t)l};
        }
        fclose(f);
    }
    return 0;
}

int main(int argc, char **argv)
{
    /* --unsafe-no-ledger: undocumented in --help on purpose; certforge-bench
     * uses it to measure the ledger's cost (docs/certforged.md). */
    static const struct option longopts[] = {{"config", required_argument, NULL, 'c'},
                                             {"help", no_argument, NULL, 'h'},
                                             {"unsafe-no-ledger", no_argument, NULL, 'N'},
                                             {NULL, 0, NULL, 0}};
    const char *config = NULL;
    bool no_ledger = false;
    int opt;
    while ((opt = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            config = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'N':
            no_ledger = true;
            break;
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (!config || optind != argc) {
        usage(stderr);
        return EXIT_USAGE;
    }

    int rc = EXIT_CONFIG;
    char err[1024];
    cfg_config *cfg = NULL;
    srv *server = NULL;
    cf_engine *eng = NULL;
    ledger *led = NULL;
    ledger_pipe lp;
    int sfd = -1;
    daemon_keys dk;
    daemon_chains dc;
    memset(&dk, 0, sizeof(dk));
    memset(&dc, 0, sizeof(dc));

    /* Signals: blocked in every thread (the pipeline's workers inherit the
     * mask), read through a signalfd by the ring. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (cfg_load(config, &cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "certforged: %s\n", err);
        goto out;
    }
    srv_log_set_level(cfg->log.level);
    srv_log(CFG_LOG_INFO, "start", "config=%s pid=%d", cfg->path, (int)getpid());
    sfd = signalfd(-1, &set, SFD_CLOEXEC);
    if (sfd < 0) {
        fprintf(stderr, "certforged: signalfd: %s\n", strerror(errno));
        goto out;
    }
    /* The socket first: a second daemon must not log in to the HSM token a
     * live one is using. */
    srv_opts so = {.cfg = cfg, .signal_fd = sfd};
    if (srv_new(&so, &server, err, sizeof(err)) != 0) {
        fprintf(stderr, "certforged: %s: %s\n", cfg->path, err);
        srv_log(CFG_LOG_ERROR, "refused", "reason=socket");
        goto out;
    }
    /* The ledger after the socket (a second daemon is refused before it
     * touches the ledger), before the engine (no HSM login without it). */
    if (open_ledger(cfg, no_ledger, &led, err, sizeof(err)) != 0) {
        fprintf(stderr, "certforged: %s\n", err);
        srv_log(CFG_LOG_ERROR, "refused", "reason=ledger");
        goto out;
    }
    lp = (ledger_pipe){.l = led, .on_fail = on_ledger_fail, .on_recover = on_ledger_recover};
    cf_engine_hooks hooks = {.done = srv_pipe_done,
                             .done_arg = server,
                             .record = led ? ledger_pipe_record : NULL,
                             .record_arg = &lp};
    if (cf_engine_open(cfg, &hooks, &eng, err, sizeof(err)) != 0) {
        fprintf(stderr, "certforged: %s\n", err);
        srv_log(CFG_LOG_ERROR, "refused", "reason=engine");
        goto out;
    }
    if (load_keys(cfg, eng, &dk, err, sizeof(err)) != 0 ||
        load_chains(cfg, &dc, err, sizeof(err)) != 0) {
        fprintf(stderr, "certforged: %s\n", err[0] ? err : "out of memory");
        goto out;
    }
    if (cfg->n_grants == 0)
        srv_log(CFG_LOG_WARNING, "no_grants", "effect=\"every request is UNAUTHORIZED\"");
    sess_arg sa = {eng, cfg->n_keys};
    srv_runtime rt = {
        .pipe = cf_engine_pipe(eng),
        .keys = dk.keys,
        .n_keys = dk.n,
        .chains = dc.chains,
        .sessions = sessions_of,
        .sessions_arg = &sa,
        .on_ready = on_ready,
    };
    if (srv_run(server, &rt, err, sizeof(err)) != 0) {
        fprintf(stderr, "certforged: %s\n", err);
        srv_log(CFG_LOG_ERROR, "failed", "err=\"%s\"", err);
        rc = 3;
    } else {
        rc = 0;
    }
    pipe_stats ps;
    pipe_get_stats(cf_engine_pipe(eng), &ps);
    /* every job still in the pipeline completes into the server's pool */
    cf_engine_close(eng);
    eng = NULL;
    srv_summary sum;
    srv_get_summary(server, &sum);
    srv_log(CFG_LOG_INFO, "stop",
            "issued=%llu connections=%llu requests=%llu answered=%llu unanswered=%llu "
            "refused=%llu exit=%d",
            (unsigned long long)ps.by_status[CF_ST_OK], (unsigned long long)sum.connections,
            (unsigned long long)sum.requests, (unsigned long long)sum.answered,
            (unsigned long long)sum.unanswered, (unsigned long long)sum.refused, rc);
out:
    cf_engine_close(eng); /* the workers are joined: nothing records any more */
    ledger_close(led);
    srv_free(server);
    if (sfd >= 0)
        close(sfd);
    for (size_t i = 0; i < dk.n; i++)
        OPENSSL_free(dk.spki[i]);
    for (size_t i = 0; i < dc.nders; i++)
        free(dc.ders[i]);
    free(dc.ders);
    free(dc.chains);
    cfg_free(cfg);
    return rc;
}
