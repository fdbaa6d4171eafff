/* certforged — the certforge daemon (docs/certforged.md).
 *
 *   certforged --config FILE
 *
 * Runs in the foreground; one key=value line per event on stderr. main is
 * daemon_open → daemon_run → daemon_close. Start-up: config (refused
 * naming file:line and setting), socket (a live daemon's is refused, a
 * stale one replaced), ledger, the metrics socket, the engine (keys,
 * issuers, profiles, pipeline), CRLs, confinement (then the metrics
 * thread), then "certforged: ready socket=PATH".
 * SIGTERM/SIGINT: stop accepting, answer every request already received,
 * exit 0. SIGHUP: reload (do_reload).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <pwd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/signalfd.h>
#include <systemd/sd-daemon.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/reason.h"
#include "common/serial.h"
#include "engine/config/config.h"
#include "engine/confine/confine.h"
#include "engine/core/engine.h"
#include "engine/crl/crl.h"
#include "engine/profile/profile.h"
#include "engine/ledger/ledger.h"
#include "engine/ledger/ledger_pipe.h"
#include "engine/metrics/metrics.h"
#include "engine/server/server.h"
#include "proto/proto.h"

#include <openssl/x509.h>

#define EXIT_CONFIG 1 /* config or start-up refused */
#define EXIT_USAGE 2

#ifndef CF_VERSION
#define CF_VERSION "unknown"
#endif

static void usage(FILE *f)
{
    fprintf(f, "usage: certforged --config FILE\n"
               "       certforged --check-config FILE\n"
               "       certforged --version\n"
               "\n"
               "Serve certificate issuance on the Unix socket named in FILE (server.socket).\n"
               "Runs in the foreground and logs one key=value line per event to stderr.\n"
               "SIGTERM/SIGINT: stop accepting, answer accepted requests, exit 0.\n"
               "SIGHUP: reload grants, profiles, issuers (on the keys already held: their\n"
               "        certificate and chain files read again), log.level and the CRL\n"
               "        schedule from FILE; a broken file or a changed restart-only setting\n"
               "        is refused (logged) and the running config kept.\n"
               "Every certificate is recorded in the ledger (FILE's `ledger` section,\n"
               "required) before it is released.\n"
               "\n"
               "  --config FILE        run with this configuration\n"
               "  --check-config FILE  load FILE and the certificates, chains and folders it\n"
               "                       names, report the first problem (FILE:LINE), exit 0 or 1;\n"
               "                       touches no socket, ledger or token\n"
               "  --version            print the version\n"
               "  --help               this text\n"
               "\n"
               "See certforged(8), docs/certforged.md and docs/configuration.md.\n");
}

/* --check-config: what start-up would refuse without a socket, ledger or
 * HSM login: the config itself, then every file and folder it names. */
static int check_config(const char *path)
{
    cfg_config *cfg = NULL;
    char err[1024];
    int rc = EXIT_CONFIG;
    if (cfg_load(path, &cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "certforged: %s\n", err);
        return EXIT_CONFIG;
    }
    for (size_t i = 0; i < cfg->n_issuers; i++) {
        const cfg_issuer *is = &cfg->issuers[i];
        uint8_t *der = NULL;
        size_t len = 0;
        char why[256];
        if (profile_read_cert(is->certificate, &der, &len, why, sizeof(why)) != 0) {
            fprintf(stderr, "certforged: %s:%d: issuer '%s': %s\n", cfg->path, is->line, is->name,
                    why);
            goto out;
        }
        free(der);
        if (is->chain && access(is->chain, R_OK) != 0) {
            fprintf(stderr, "certforged: %s:%d: issuer '%s': chain %s: %s\n", cfg->path, is->line,
                    is->name, is->chain, strerror(errno));
            goto out;
        }
    }
    struct stat st;
    if (cfg->crl.line && (stat(cfg->crl.dir, &st) != 0 || !S_ISDIR(st.st_mode))) {
        fprintf(stderr,
                "certforged: %s:%d: crl.dir: %s is not a folder (create it: CRLs are "
                "published there)\n",
                cfg->path, cfg->crl.line, cfg->crl.dir);
        goto out;
    }
    if (!cfg->ledger.line) {
        fprintf(stderr, "certforged: %s: ledger: missing required section (docs/ledger.md)\n",
                cfg->path);
        goto out;
    }
    printf("certforged: %s: configuration OK (%zu token%s, %zu key%s, %zu issuer%s, %zu "
           "profile%s, %zu grant%s)\n",
           cfg->path, cfg->n_tokens, cfg->n_tokens == 1 ? "" : "s", cfg->n_keys,
           cfg->n_keys == 1 ? "" : "s", cfg->n_issuers, cfg->n_issuers == 1 ? "" : "s",
           cfg->n_profiles, cfg->n_profiles == 1 ? "" : "s", cfg->n_grants,
           cfg->n_grants == 1 ? "" : "s");
    rc = 0;
out:
    cfg_free(cfg);
    return rc;
}

/* Every failed batch is logged: each one is requests answered
 * LEDGER_FAILURE, which an operator must see. */
static void on_ledger_fail(const char *err, size_t n_jobs, void *arg)
{
    met_ledger_failed(arg, n_jobs); /* arg: the metrics endpoint, or NULL */
    char q[600];
    cf_log(CF_LOG_ERROR, "ledger_failure", "jobs=%zu err=%s", n_jobs,
           cf_log_quote(err, q, sizeof(q)));
}

static void on_ledger_recover(unsigned long long failed_batches, void *arg)
{
    (void)arg;
    cf_log(CF_LOG_WARNING, "ledger_recovered", "failed_batches=%llu", failed_batches);
}

/* Open the config's ledger; certforged never runs without one, except for
 * certforge-bench's ledger-off comparison (--unsafe-no-ledger). */
static int open_ledger(const cfg_config *cfg, bool no_ledger, ledger **out, char *err,
                       size_t errlen)
{
    *out = NULL;
    if (no_ledger) {
        cf_log(CF_LOG_WARNING, "ledger_disabled",
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
        .pg_timeout_ms = cfg->ledger.pg_timeout_ms,
    };
    char why[768];
    if (ledger_open(&lo, out, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "%s:%d: ledger.%s: %s", cfg->path, cfg->ledger.line,
                 pg ? "conninfo" : "path", why);
        return -1;
    }
    /* the conninfo holds no password: the config refuses one */
    if (pg)
        cf_log(CF_LOG_INFO, "ledger_open", "backend=postgresql conninfo=\"%s\" schema_version=%d",
               cfg->ledger.conninfo, ledger_schema_version(*out));
    else
        cf_log(CF_LOG_INFO, "ledger_open", "backend=%s path=%s schema_version=%d",
               cfg_ledger_backend_name(cfg->ledger.backend), cfg->ledger.path,
               ledger_schema_version(*out));
    return 0;
}

static void on_ready(void *arg, const char *path)
{
    (void)arg;
    fprintf(stderr, "certforged: ready socket=%s\n", path);
    fflush(stderr);
    /* systemd (Type=notify): serving from now on; nothing without
     * NOTIFY_SOCKET */
    (void)sd_notifyf(0, "READY=1\nSTATUS=serving on %s", path);
}

/* ------------------------------------------------------------ stopping */

/* Start-up (HSM login, ledger, first CRLs) can hang on a dead HSM or
 * database. The signals stay blocked for the rings' signalfd; until the
 * rings read it, this thread does: SIGTERM/SIGINT during start-up ends
 * the process at once (nothing was served, nothing is in flight). */
typedef struct startup_watch {
    int sfd;
    atomic_bool done;
    pthread_t th;
    bool started;
} startup_watch;

static void *startup_watch_main(void *arg)
{
    startup_watch *w = arg;
    while (!atomic_load(&w->done)) {
        struct pollfd p = {.fd = w->sfd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0 || atomic_load(&w->done))
            continue;
        struct signalfd_siginfo si;
        if (read(w->sfd, &si, sizeof(si)) != (ssize_t)sizeof(si))
            continue;
        if (si.ssi_signo == SIGHUP) { /* nothing to reload yet: keep starting */
            cf_log(CF_LOG_WARNING, "signal",
                   "sig=HUP action=none phase=start-up effect=\"send SIGHUP again once ready\"");
            continue;
        }
        cf_log(CF_LOG_WARNING, "signal", "sig=%s action=exit phase=start-up",
               si.ssi_signo == SIGINT ? "INT" : "TERM");
        fprintf(stderr, "certforged: stopped by a signal during start-up\n");
        _exit(0);
    }
    return NULL;
}

static void startup_watch_stop(startup_watch *w)
{
    if (!w->started)
        return;
    atomic_store(&w->done, true);
    pthread_join(w->th, NULL);
    w->started = false;
}

/* The stop after the drain waits for jobs a worker already holds; a hung
 * HSM call would hold it for ever. Past the bound the process ends with
 * exit status 4 (what was recorded is durable; nothing unrecorded was
 * released). */
static unsigned stop_bound_ms;

static void *stop_watchdog(void *arg)
{
    (void)arg;
    struct timespec ts = {.tv_sec = stop_bound_ms / 1000,
                          .tv_nsec = (long)(stop_bound_ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
    cf_log(CF_LOG_ERROR, "stop_forced",
           "reason=\"jobs still in the HSM %u ms after the drain\" exit=4", stop_bound_ms);
    _exit(4);
}

/* The thisUpdate of one (issuer, shard)'s latest CRL. */
typedef struct crl_tu {
    char issuer[CFG_NAME_MAX + 1];
    unsigned shard;
    int64_t this_update;
} crl_tu;

/* Everything the running daemon holds; made by daemon_open, served by
 * daemon_run, freed by daemon_close. */
typedef struct certforged {
    cfg_config *cfg;
    bool no_ledger;
    int sfd; /* signalfd: SIGTERM, SIGINT, SIGHUP */
    srv *server;
    sgn_service *sgn; /* the signer process: the only one that loads PKCS#11 */
    ledger *led;
    ledger_pipe lp;
    cf_engine *eng;
    crl_pub *pub; /* NULL without a crl section */
    met *metrics; /* NULL without a metrics section */
    startup_watch watch;
    /* what a reload changes outside the engine's config generations */
    cf_log_level log_level;
    _Atomic uint64_t crl_validity_s; /* CRL --new (admin thread) */
    /* thisUpdate of every issuer's every shard's latest CRL, by issuer
     * name and shard (a reload may add or remove issuers): the metric
     * crl_age_seconds{issuer} is the oldest shard's age */
    pthread_mutex_t crl_mu;
    crl_tu *crl_tu;
    size_t n_crl_tu, cap_crl_tu;
} certforged;

static int find_key(const ledger_rec *r, void *arg)
{
    snprintf(arg, 256, "%s", r->issuer_key ? r->issuer_key : "");
    return 0;
}

/* A certificate was revoked: its shard's CRL of every issuer signing with
 * its key is remade within revoke_delay (docs/crl.md). */
static void kick_shard(certforged *a, const char *hex, const uint8_t *serial, size_t serial_len)
{
    if (!a->pub)
        return;
    char key[256] = "", err[512];
    if (ledger_find(a->led, hex, find_key, key, err, sizeof(err)) != 1)
        key[0] = 0; /* unknown: every issuer's shard of that serial */
    iss_set *iss = cf_engine_issuers_get(a->eng); /* the current generation's */
    for (size_t i = 0; i < iss_nissuers(iss); i++) {
        const iss_issuer *is = iss_issuer_at(iss, i);
        if (!key[0] || strcmp(is->key->name, key) == 0)
            crl_pub_kick(a->pub, is->name, profile_crl_shard(serial, serial_len, is->crl_shards));
    }
    iss_close(iss);
}

/* REVOKE (admin thread): record it, then have the CRLs remade soon. */
static cf_status do_revoke(void *arg, const proto_revoke_req *r, uint32_t peer_uid,
                           int64_t *revoked_at, unsigned *reason, char *msg, size_t msglen)
{
    certforged *a = arg;
    char hex[CF_SERIAL_HEX_MAX + 1], err[600];
    cf_hex_encode(r->serial, r->serial_len, hex, sizeof(hex));
    if (r->reason == 8) {
        snprintf(msg, msglen,
                 "removeFromCRL is for delta CRLs; certforge makes full CRLs (a revocation is "
                 "final)");
        return CF_ST_POLICY_DENIED;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t at = 0;
    int rs = 0;
    int rc =
        ledger_revoke(a->led, hex, (int)r->reason, (int64_t)ts.tv_sec, &at, &rs, err, sizeof(err));
    char rq[96] = "-";
    if (r->requester.len) {
        char t[64];
        snprintf(t, sizeof(t), "%.*s", (int)(r->requester.len < 60 ? r->requester.len : 60),
                 r->requester.p);
        cf_log_quote(t, rq, sizeof(rq));
    }
    switch (rc) {
    case 0:
    case 1:
        *revoked_at = at;
        *reason = (unsigned)rs;
        cf_log(CF_LOG_INFO, rc == 0 ? "revoked" : "revoke_repeated",
               "serial=%s reason=%s peer_uid=%u requester=%s", hex, cf_reason_name(rs), peer_uid,
               rq);
        if (rc == 0)
            kick_shard(a, hex, r->serial, r->serial_len);
        return CF_ST_OK;
    case 2:
        snprintf(msg, msglen, "no certificate with serial %s in the ledger", hex);
        return CF_ST_NOT_FOUND;
    default:
        cf_log(CF_LOG_ERROR, "ledger_failure", "op=REVOKE serial=%s err=\"%s\"", hex, err);
        snprintf(msg, msglen, "the revocation could not be recorded: %s", err);
        return CF_ST_LEDGER_FAILURE;
    }
}

static void on_crl(const iss_issuer *is, const crl_made *m, const char *err, void *arg);

typedef struct crl_copy {
    uint8_t *der;
    size_t len;
    bool big;
} crl_copy;

static int copy_crl(uint64_t number, int64_t tu, int64_t nu, const uint8_t *der, size_t len,
                    void *arg)
{
    (void)number;
    (void)tu;
    (void)nu;
    crl_copy *c = arg;
    if (len == 0) { /* larger than CRL_LEDGER_MAX: only its metadata is kept */
        c->big = true;
        return 0;
    }
    if ((c->der = malloc(len)) != NULL) {
        memcpy(c->der, der, len);
        c->len = len;
    }
    return 0;
}

static cf_status crl_of(certforged *a, const iss_set *iss, cf_str issuer, unsigned shard,
                        bool fresh, uint8_t **der, size_t *len, char *msg, size_t msglen);

/* CRL (admin thread): the latest CRL of the issuer, from the ledger (so
 * several engines sharing a ledger answer the same one). The issuers of
 * the current generation, referenced while the CRL is made. */
static cf_status do_crl(void *arg, cf_str issuer, unsigned shard, bool fresh, uint8_t **der,
                        size_t *len, char *msg, size_t msglen)
{
    certforged *a = arg;
    iss_set *iss = cf_engine_issuers_get(a->eng);
    cf_status st = crl_of(a, iss, issuer, shard, fresh, der, len, msg, msglen);
    iss_close(iss);
    return st;
}

static cf_status crl_of(certforged *a, const iss_set *iss, cf_str issuer, unsigned shard,
                        bool fresh, uint8_t **der, size_t *len, char *msg, size_t msglen)
{
    const iss_issuer *is = iss_find_issuer(iss, issuer);
    if (!is) {
        snprintf(msg, msglen, "no issuer named '%.*s'", (int)(issuer.len < 64 ? issuer.len : 64),
                 issuer.p);
        return CF_ST_NOT_FOUND;
    }
    if (shard >= is->crl_shards) {
        snprintf(msg, msglen, "issuer '%s' has %u CRL shard%s (0-%u): no shard %u", is->name,
                 is->crl_shards, is->crl_shards == 1 ? "" : "s", is->crl_shards - 1, shard);
        return CF_ST_NOT_FOUND;
    }
    crl_copy c = {0};
    char err[800], lname[300];
    if (fresh) { /* certforge crl --new: made now, for this request */
        crl_made m;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        if (crl_make(is, shard, iss_signer(iss), a->led, a->cfg->crl.dir, (int64_t)ts.tv_sec,
                     atomic_load(&a->crl_validity_s), der, &m, err, sizeof(err)) != 0) {
            on_crl(is, NULL, err, a);
            snprintf(msg, msglen, "no CRL made: %s", err);
            return CF_ST_INTERNAL;
        }
        on_crl(is, &m, NULL, a);
        *len = m.len;
        return CF_ST_OK;
    }
    if (crl_ledger_name(is, shard, lname, sizeof(lname)) != 0) {
        snprintf(msg, msglen, "issuer '%s': key name too long", is->name);
        return CF_ST_INTERNAL;
    }
    int rc = ledger_crl_latest(a->led, lname, copy_crl, &c, err, sizeof(err));
    if (rc < 0) {
        snprintf(msg, msglen, "the ledger could not be read: %s", err);
        return CF_ST_LEDGER_FAILURE;
    }
    if (rc == 0) {
        snprintf(msg, msglen, "no CRL made for issuer '%s' shard %u yet", is->name, shard);
        return CF_ST_NOT_FOUND;
    }
    if (c.big) {
        snprintf(msg, msglen,
                 "issuer '%s' shard %u: the CRL is larger than a frame (the ledger keeps only "
                 "its number): fetch it from the publish folder (crl.dir), or give the issuer "
                 "more crl_shards",
                 is->name, shard);
        return CF_ST_POLICY_DENIED;
    }
    if (!c.der) {
        snprintf(msg, msglen, "out of memory");
        return CF_ST_INTERNAL;
    }
    *der = c.der;
    *len = c.len;
    return CF_ST_OK;
}

static void on_crl(const iss_issuer *is, const crl_made *m, const char *err, void *arg)
{
    certforged *d = arg;
    char q[800], sh[32] = "";
    if (is->crl_shards > 1)
        snprintf(sh, sizeof(sh), " shard=%u", m ? m->shard : 0);
    if (m && d) {
        pthread_mutex_lock(&d->crl_mu);
        size_t i = 0;
        while (i < d->n_crl_tu &&
               (d->crl_tu[i].shard != m->shard || strcmp(d->crl_tu[i].issuer, is->name) != 0))
            i++;
        if (i == d->n_crl_tu) { /* a new (issuer, shard): appended, never removed */
            if (d->n_crl_tu == d->cap_crl_tu) {
                size_t cap = d->cap_crl_tu ? d->cap_crl_tu * 2 : 16;
                crl_tu *t = realloc(d->crl_tu, cap * sizeof(*t));
                if (t) {
                    d->crl_tu = t;
                    d->cap_crl_tu = cap;
                }
            }
            if (d->n_crl_tu < d->cap_crl_tu) {
                snprintf(d->crl_tu[i].issuer, sizeof(d->crl_tu[i].issuer), "%s", is->name);
                d->crl_tu[i].shard = m->shard;
                d->n_crl_tu++;
            }
        }
        if (i < d->n_crl_tu)
            d->crl_tu[i].this_update = m->this_update;
        int64_t oldest = m->this_update;
        for (size_t k = 0; k < d->n_crl_tu; k++)
            if (d->crl_tu[k].shard < is->crl_shards && strcmp(d->crl_tu[k].issuer, is->name) == 0 &&
                d->crl_tu[k].this_update < oldest)
                oldest = d->crl_tu[k].this_update;
        met_crl_made(d->metrics, is->name, oldest);
        pthread_mutex_unlock(&d->crl_mu);
    }
    if (m) {
        /* ISO 8601 UTC, as every other time in the log */
        char nu[32] = "-";
        time_t t = (time_t)m->next_update;
        struct tm tm;
        if (gmtime_r(&t, &tm))
            strftime(nu, sizeof(nu), "%Y-%m-%dT%H:%M:%SZ", &tm);
        cf_log(CF_LOG_INFO, "crl", "issuer=%s%s number=%llu entries=%zu bytes=%zu next_update=%s",
               is->name, sh, (unsigned long long)m->number, m->entries, m->len, nu);
    }
    else
        cf_log(CF_LOG_ERROR, "crl_failed", "issuer=%s err=%s", is->name,
               cf_log_quote(err, q, sizeof(q)));
}

static bool der_eq(const iss_der *a, const iss_der *b)
{
    return a->len == b->len && memcmp(a->p, b->p, a->len) == 0;
}

/* One line per issuer a reload added, removed or changed (its certificate
 * renewed, its chain or key changed); how many changed. */
static size_t log_issuer_changes(const iss_set *o, const iss_set *n)
{
    size_t changed = 0;
    for (size_t i = 0; i < iss_nissuers(n); i++) {
        const iss_issuer *b = iss_issuer_at(n, i);
        const iss_issuer *a = iss_find_issuer(o, (cf_str){b->name, strlen(b->name)});
        const char *what = NULL;
        if (!a)
            what = "added";
        else if (a->key != b->key)
            what = "key";
        else if (!der_eq(&a->cert, &b->cert))
            what = "certificate";
        else {
            bool same = a->n_chain == b->n_chain;
            for (unsigned k = 0; same && k < a->n_chain; k++)
                same = der_eq(&a->chain[k], &b->chain[k]);
            if (!same)
                what = "chain";
        }
        if (what) {
            char serial[80] = "-";
            const unsigned char *p = b->cert.p;
            X509 *x = d2i_X509(NULL, &p, (long)b->cert.len);
            const ASN1_INTEGER *sn = x ? X509_get0_serialNumber(x) : NULL;
            if (sn && sn->length > 0)
                cf_hex_encode(sn->data, (size_t)sn->length < 32 ? (size_t)sn->length : 32, serial,
                              sizeof(serial));
            X509_free(x);
            cf_log(CF_LOG_INFO, "issuer_reloaded",
                   "issuer=%s change=%s key=%s certificate_serial=%s chain=%u", b->name, what,
                   b->key->name, serial, b->n_chain);
            changed++;
        }
    }
    for (size_t i = 0; i < iss_nissuers(o); i++) {
        const iss_issuer *a = iss_issuer_at(o, i);
        if (!iss_find_issuer(n, (cf_str){a->name, strlen(a->name)})) {
            cf_log(CF_LOG_INFO, "issuer_reloaded", "issuer=%s change=removed key=%s", a->name,
                   a->key->name);
            changed++;
        }
    }
    return changed;
}

/* SIGHUP, on ring 0's thread (docs/certforged.md, RELOAD): the file is
 * loaded again exactly as at start-up (cfg_load: every setting checked),
 * compared with the running config (a restart-only setting that changed
 * refuses the whole reload), its issuers read again (certificates checked
 * against the keys certforged holds, chains) and its profiles compiled
 * against them; only then is it published as the engine's next config
 * generation, the CRL publisher moved to its issuers, and the log level
 * and CRL schedule applied. A refused reload changes nothing. Requests in
 * flight finish with the generation (and issuers) they started in;
 * connections stay open. */
static void do_reload(void *arg)
{
    certforged *d = arg;
    char err[1024], msg[1400], q[1500];
    cfg_config *n = NULL;
    uint64_t gen = 0;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    iss_set *old_iss = cf_engine_issuers_get(d->eng);
    if (cfg_load(d->cfg->path, &n, err, sizeof(err)) != 0 ||
        cf_engine_reload(d->eng, n, &gen, err, sizeof(err)) != 0) {
        iss_close(old_iss);
        cfg_free(n);
        unsigned long long g = (unsigned long long)cf_engine_gen_number(d->eng);
        snprintf(msg, sizeof(msg), "config reload refused: %s; keeping generation %llu", err, g);
        cf_log(CF_LOG_ERROR, "reload_refused", "generation=%llu msg=%s", g,
               cf_log_quote(msg, q, sizeof(q)));
        srv_note_reload(d->server, false, (int64_t)ts.tv_sec);
        return;
    }
    /* n belongs to the engine now, and stays valid while generation gen is
     * current: this thread is the only one that publishes another */
    /* the new generation's issuers: the CRL publisher moves to them when
     * any changed (its CRLs are remade at once) */
    iss_set *new_iss = cf_engine_issuers_get(d->eng);
    size_t iss_changed = log_issuer_changes(old_iss, new_iss);
    if (iss_changed && d->pub && crl_pub_set_issuers(d->pub, new_iss) != 0)
        cf_log(CF_LOG_ERROR, "crl_failed",
               "err=\"out of memory: the CRL publisher keeps the previous issuers\"");
    size_t n_iss = iss_nissuers(new_iss);
    iss_close(new_iss);
    iss_close(old_iss);
    atomic_store(&d->crl_validity_s, n->crl.validity_s);
    if (d->pub)
        crl_pub_set_times(d->pub, n->crl.interval_s, n->crl.validity_s, n->crl.revoke_delay_s);
    char crl[96] = "crl=none";
    if (n->crl.line)
        snprintf(crl, sizeof(crl), "crl.interval=%llus crl.validity=%llus crl.revoke_delay=%llus",
                 (unsigned long long)n->crl.interval_s, (unsigned long long)n->crl.validity_s,
                 (unsigned long long)n->crl.revoke_delay_s);
    snprintf(msg, sizeof(msg),
             "config reloaded from %s: %zu grants, %zu profiles, %zu issuers (%zu changed), "
             "log.level=%s, %s; generation %llu",
             n->path, n->n_grants, n->n_profiles, n_iss, iss_changed,
             cf_log_level_name(n->log.level), crl, (unsigned long long)gen);
    /* logged at the level that lets it through: the old one or the new one */
    bool before = d->log_level >= CF_LOG_INFO;
    if (before)
        cf_log(CF_LOG_INFO, "reloaded",
               "generation=%llu grants=%zu profiles=%zu issuers=%zu issuers_changed=%zu msg=%s",
               (unsigned long long)gen, n->n_grants, n->n_profiles, n_iss, iss_changed,
               cf_log_quote(msg, q, sizeof(q)));
    d->log_level = n->log.level;
    cf_log_set_level(n->log.level);
    if (!before)
        cf_log(CF_LOG_INFO, "reloaded",
               "generation=%llu grants=%zu profiles=%zu issuers=%zu issuers_changed=%zu msg=%s",
               (unsigned long long)gen, n->n_grants, n->n_profiles, n_iss, iss_changed,
               cf_log_quote(msg, q, sizeof(q)));
    if (n->n_grants == 0)
        cf_log(CF_LOG_WARNING, "no_grants", "effect=\"every request is UNAUTHORIZED\"");
    srv_note_reload(d->server, true, (int64_t)ts.tv_sec);
}

/* The CRL publisher: a first CRL of every issuer, then the schedule. */
static int start_crls(certforged *d, char *err, size_t errlen)
{
    const cfg_config *cfg = d->cfg;
    struct stat dst;
    if (stat(cfg->crl.dir, &dst) != 0 || !S_ISDIR(dst.st_mode)) {
        snprintf(err, errlen,
                 "%s:%d: crl.dir: %s is not a folder (create it: CRLs are published there)",
                 cfg->path, cfg->crl.line, cfg->crl.dir);
        return -1;
    }
    const iss_set *iss = cf_engine_issuers(d->eng); /* generation 1's */
    crl_pub_opts po = {.l = d->led,
                       .iss = iss,
                       .dir = cfg->crl.dir,
                       .interval_s = cfg->crl.interval_s,
                       .validity_s = cfg->crl.validity_s,
                       .revoke_delay_s = cfg->crl.revoke_delay_s,
                       .log = on_crl,
                       .log_arg = d};
    char why[800];
    if (crl_pub_start(&po, &d->pub, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "%s:%d: crl: %s", cfg->path, cfg->crl.line, why);
        return -1;
    }
    return 0;
}

/* Started as root with confine.user: the socket (and its lock file) belong
 * to that user and its group, as if it had bound them itself, so that
 * socket_mode's group bits reach the user's group and the user can remove
 * them at the stop. */
static void socket_to_user(const cfg_config *cfg)
{
    if (!cfg->confine.enabled || !cfg->confine.user || geteuid() != 0)
        return;
    struct passwd *pw = getpwnam(cfg->confine.user);
    char lock[CFG_SOCKET_PATH_MAX + 8];
    snprintf(lock, sizeof(lock), "%s.lock", cfg->server.socket);
    if (!pw || lchown(cfg->server.socket, pw->pw_uid, pw->pw_gid) != 0 ||
        lchown(lock, pw->pw_uid, pw->pw_gid) != 0)
        cf_log(CF_LOG_WARNING, "socket_owner", "socket=%s user=%s err=\"%s\"", cfg->server.socket,
               cfg->confine.user, strerror(errno));
}

/* After start-up: give up what serving does not need (docs/security.md). */
static int confine_daemon(const cfg_config *cfg, bool ledger_on, char *err, size_t errlen)
{
    if (!cfg->confine.enabled) {
        cf_log(CF_LOG_WARNING, "unconfined", "reason=\"confine.enabled = false\"");
        return 0;
    }
    const char *w[CFG_MAX_WRITABLE + 3];
    char ledger_dir[4200], sock_dir[4200];
    size_t n = 0;
    if (ledger_on)
        w[n++] = confine_folder_of(cfg->ledger.path, ledger_dir, sizeof(ledger_dir));
    if (cfg->crl.line)
        w[n++] = cfg->crl.dir;
    w[n++] = confine_folder_of(cfg->server.socket, sock_dir, sizeof(sock_dir));
    for (size_t i = 0; i < cfg->confine.n_writable; i++)
        w[n++] = cfg->confine.writable[i];
    confine_result r;
    char why[600];
    if (confine_apply(w, n, cfg->confine.require_landlock, cfg->confine.user, &r, why,
                      sizeof(why)) != 0) {
        snprintf(err, errlen, "%s: confine: %s", cfg->path, why);
        return -1;
    }
    char d[3000];
    confine_describe(&r, w, n, d, sizeof(d));
    cf_log(r.landlock_abi ? CF_LOG_INFO : CF_LOG_WARNING, "confined", "%s%s", d,
           r.landlock_abi ? "" : " effect=\"no Landlock in this kernel: files not restricted\"");
    if (r.root)
        cf_log(CF_LOG_WARNING, "running_as_root",
               "effect=\"uid 0 without capabilities; set confine.user to run as an unprivileged "
               "user\"");
    return 0;
}

/* Start-up, in the order docs/certforged.md gives. Returns 0, or the exit
 * status (a refusal is on stderr and logged as event=refused). */
static int daemon_open(certforged *d, const char *config, bool no_ledger)
{
    char err[1024];
    struct timespec t0;
    clock_gettime(CLOCK_REALTIME, &t0);
    double start_time = (double)t0.tv_sec + (double)t0.tv_nsec / 1e9;
    memset(d, 0, sizeof(*d));
    d->sfd = -1;
    d->no_ledger = no_ledger;
    d->watch.sfd = -1;
    atomic_init(&d->watch.done, false);
    /* Signals: blocked in every thread (the pipeline's workers inherit the
     * mask), read through a signalfd by the ring. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP); /* reload (docs/certforged.md, RELOAD) */
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (cfg_load(config, &d->cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "certforged: %s\n", err);
        return EXIT_CONFIG;
    }
    const cfg_config *cfg = d->cfg;
    d->log_level = cfg->log.level;
    atomic_init(&d->crl_validity_s, cfg->crl.validity_s);
    pthread_mutex_init(&d->crl_mu, NULL);
    cf_log_set_level(cfg->log.level);
    cf_log(CF_LOG_INFO, "start", "version=%s config=%s pid=%d", CF_VERSION, cfg->path,
           (int)getpid());
    /* The signer's keeper first, while this process has one thread and no
     * descriptor but the standard ones: it forks the signer process, which
     * alone loads the PKCS#11 module and logs in, once told to below. */
    if (sgn_proc_fork(cfg, &d->sgn, err, sizeof(err)) != 0) {
        fprintf(stderr, "certforged: %s\n", err);
        return EXIT_CONFIG;
    }
    d->sfd = signalfd(-1, &set, SFD_CLOEXEC);
    if (d->sfd < 0) {
        fprintf(stderr, "certforged: signalfd: %s\n", strerror(errno));
        return EXIT_CONFIG;
    }
    d->watch.sfd = d->sfd;
    d->watch.started = pthread_create(&d->watch.th, NULL, startup_watch_main, &d->watch) == 0;
    /* The socket first: a second daemon must not log in to the HSM token a
     * live one is using. */
    srv_opts so = {.cfg = cfg, .signal_fd = d->sfd};
    if (srv_new(&so, &d->server, err, sizeof(err)) != 0) {
        fprintf(stderr, "certforged: %s: %s\n", cfg->path, err);
        cf_log(CF_LOG_ERROR, "refused", "reason=socket");
        return EXIT_CONFIG;
    }
    socket_to_user(cfg);
    /* The ledger after the socket (a second daemon is refused before it
     * touches the ledger), before the engine (no HSM login without it). */
    if (open_ledger(cfg, d->no_ledger, &d->led, err, sizeof(err)) != 0) {
        fprintf(stderr, "certforged: %s\n", err);
        cf_log(CF_LOG_ERROR, "refused", "reason=ledger");
        return EXIT_CONFIG;
    }
    /* The metrics endpoint's socket before the HSM login (a port in use
     * refuses the start first), confinement and the user switch; its
     * thread starts once confined. Before the first CRLs: it keeps their
     * age. */
    if (cfg->metrics.line && met_new(&cfg->metrics, &d->metrics, err, sizeof(err)) != 0) {
        fprintf(stderr, "certforged: %s:%d: %s\n", cfg->path, cfg->metrics.line, err);
        cf_log(CF_LOG_ERROR, "refused", "reason=metrics");
        return EXIT_CONFIG;
    }
    d->lp = (ledger_pipe){.l = d->led,
                          .on_fail = on_ledger_fail,
                          .on_recover = on_ledger_recover,
                          .cb_arg = d->metrics};
    cf_engine_hooks hooks = {.done = srv_pipe_done,
                             .done_arg = d->server,
                             .record = d->led ? ledger_pipe_record : NULL,
                             .record_arg = &d->lp};
    if (sgn_proc_start(d->sgn, err, sizeof(err)) != 0 ||
        cf_engine_open(cfg, d->sgn, &hooks, &d->eng, err, sizeof(err)) != 0) {
        fprintf(stderr, "certforged: %s\n", err);
        cf_log(CF_LOG_ERROR, "refused", "reason=engine");
        return EXIT_CONFIG;
    }
    if (d->led && cfg->crl.line && start_crls(d, err, sizeof(err)) != 0) {
        fprintf(stderr, "certforged: %s\n", err);
        cf_log(CF_LOG_ERROR, "refused", "reason=crl");
        return EXIT_CONFIG;
    }
    if (confine_daemon(cfg, d->led != NULL, err, sizeof(err)) != 0) {
        fprintf(stderr, "certforged: %s\n", err);
        cf_log(CF_LOG_ERROR, "refused", "reason=confine");
        return EXIT_CONFIG;
    }
    if (d->metrics && met_start(d->metrics, d->server, d->eng, start_time, err, sizeof(err)) != 0) {
        fprintf(stderr, "certforged: %s\n", err);
        cf_log(CF_LOG_ERROR, "refused", "reason=metrics");
        return EXIT_CONFIG;
    }
    if (cfg->n_grants == 0)
        cf_log(CF_LOG_WARNING, "no_grants", "effect=\"every request is UNAUTHORIZED\"");
    return 0;
}

/* Serve until SIGTERM/SIGINT and the drain; then cancel what is still
 * queued and let the workers finish, within a bound. Returns the exit
 * status. */
static int daemon_run(certforged *d)
{
    char err[1024];
    int rc;
    srv_runtime rt = {
        .eng = d->eng,
        .revoke = d->led ? do_revoke : NULL,
        .crl = d->led && d->pub ? do_crl : NULL,
        .admin_arg = d,
        .on_ready = on_ready,
        .reload = do_reload,
    };
    startup_watch_stop(&d->watch); /* the ring reads the signalfd from here on */
    int run_rc = srv_run(d->server, &rt, err, sizeof(err));
    (void)sd_notify(0, "STOPPING=1\nSTATUS=stopping");
    if (run_rc != 0) {
        fprintf(stderr, "certforged: %s\n", err);
        cf_log(CF_LOG_ERROR, "failed", "err=\"%s\"", err);
        rc = 3;
    } else {
        rc = 0;
    }
    /* queued jobs have nobody left to answer: not signed (their answers,
     * BUSY, complete into the server's pool); jobs a worker holds finish,
     * within a bound */
    size_t cancelled =
        pipe_cancel_queued(cf_engine_pipe(d->eng), CF_ST_BUSY, "certforged is stopping");
    if (cancelled)
        cf_log(CF_LOG_INFO, "cancelled", "queued_jobs=%zu", cancelled);
    stop_bound_ms = d->cfg->server.drain_timeout_ms < 2000 ? 2000 : d->cfg->server.drain_timeout_ms;
    pthread_t wd;
    if (pthread_create(&wd, NULL, stop_watchdog, NULL) == 0)
        pthread_detach(wd);
    pipe_stats ps;
    pipe_get_stats(cf_engine_pipe(d->eng), &ps);
    met_stop(d->metrics); /* it reads the engine: before the engine closes */
    crl_pub_stop(d->pub); /* it signs: before the engine closes */
    d->pub = NULL;
    cf_engine_close(d->eng);
    d->eng = NULL;
    sgn_close(d->sgn); /* its signer exits once the pipeline's channels closed */
    d->sgn = NULL;
    srv_summary sum;
    srv_get_summary(d->server, &sum);
    cf_log(CF_LOG_INFO, "stop",
           "issued=%llu connections=%llu requests=%llu answered=%llu unanswered=%llu "
           "refused=%llu exit=%d",
           (unsigned long long)ps.by_status[CF_ST_OK], (unsigned long long)sum.connections,
           (unsigned long long)sum.requests, (unsigned long long)sum.answered,
           (unsigned long long)sum.unanswered, (unsigned long long)sum.refused, rc);
    return rc;
}

/* Whatever daemon_open got, in reverse. */
static void daemon_close(certforged *d)
{
    startup_watch_stop(&d->watch);
    met_free(d->metrics);
    crl_pub_stop(d->pub);
    cf_engine_close(d->eng); /* the workers are joined: nothing records any more */
    sgn_close(d->sgn);
    ledger_close(d->led);
    srv_free(d->server);
    if (d->sfd >= 0)
        close(d->sfd);
    free(d->crl_tu);
    cfg_free(d->cfg);
}

int main(int argc, char **argv)
{
    /* --unsafe-no-ledger: undocumented in --help on purpose; certforge-bench
     * uses it to measure the ledger's cost (docs/certforged.md). */
    static const struct option longopts[] = {{"config", required_argument, NULL, 'c'},
                                             {"check-config", required_argument, NULL, 'C'},
                                             {"version", no_argument, NULL, 'V'},
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
        case 'V':
            printf("certforged %s\n", CF_VERSION);
            return 0;
        case 'C':
            if (optind != argc) {
                usage(stderr);
                return EXIT_USAGE;
            }
            return check_config(optarg);
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
    static certforged d;
    int rc = daemon_open(&d, config, no_ledger);
    if (rc == 0)
        rc = daemon_run(&d);
    daemon_close(&d);
    return rc;
}
