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
#include <poll.h>
#include <pwd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "common/log.h"
#include "common/reason.h"
#include "common/serial.h"
#include "engine/config/config.h"
#include "engine/confine/confine.h"
#include "engine/core/engine.h"
#include "engine/crl/crl.h"
#include "engine/ledger/ledger.h"
#include "engine/ledger/ledger_pipe.h"
#include "engine/profile/profile.h"
#include "engine/server/server.h"
#include "hsm/hsm.h"
#include "proto/proto.h"

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
               "SIGHUP: logged, nothing reloaded (restart to apply a changed config).\n"
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

typedef struct daemon_keys {
    proto_key keys[PROTO_MAX_KEYS];
    uint8_t *spki[PROTO_MAX_KEYS];
    char type[PROTO_MAX_KEYS][16];
    size_t n;
    srv_sign_key *sign; /* per cfg->keys entry: for SIGN and CRLs */
    size_t nsign;
} daemon_keys;

/* What REVOKE and CRL need (srv_runtime.admin_arg). */
typedef struct daemon_admin {
    const cfg_config *cfg;
    ledger *l;
    crl_pub *pub;      /* NULL without a crl section */
    crl_issuer **cis;  /* per cfg->issuers entry */
} daemon_admin;

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
}

/* The KEYS answer: name, type and SPKI DER of each configured key, read
 * once at start-up. */
static int load_keys(const cfg_config *cfg, cf_engine *eng, daemon_keys *dk, char *err,
                     size_t errlen)
{
    if (!(dk->sign = calloc(cfg->n_keys ? cfg->n_keys : 1, sizeof(*dk->sign)))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < cfg->n_keys; i++) {
        hsm_signer *s = cf_engine_signer(eng, i);
        hsm_err he = {0};
        EVP_PKEY *pub = s ? hsm_signer_public_key(s, &he) : NULL;
        if (!pub) {
            snprintf(err, errlen, "%s:%d: key '%s': %s", cfg->path, cfg->keys[i].line,
                     cfg->keys[i].name, s ? he.msg : "no signer");
            return -1;
        }
        dk->sign[i] = (srv_sign_key){.signer = s, .pub = pub, .type = hsm_signer_key_type(s)};
        dk->nsign = i + 1;
        if (dk->n >= PROTO_MAX_KEYS)
            continue;
        uint8_t *der = NULL;
        int len = i2d_PUBKEY(pub, &der);
        if (len <= 0) {
            snprintf(err, errlen, "key '%s': cannot encode its public key", cfg->keys[i].name);
            return -1;
        }
        size_t k = dk->n++;
        dk->spki[k] = der;
        switch (hsm_signer_key_type(s)) {
        case CF_KEY_EC_P256:
            snprintf(dk->type[k], sizeof(dk->type[k]), "ec-p256");
            break;
        case CF_KEY_EC_P384:
            snprintf(dk->type[k], sizeof(dk->type[k]), "ec-p384");
            break;
        case CF_KEY_RSA:
            snprintf(dk->type[k], sizeof(dk->type[k]), "rsa-%u", hsm_signer_key_bits(s));
            break;
        case CF_KEY_ED25519:
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
        cf_log(CF_LOG_WARNING, "keys_truncated", "configured=%zu sent=%d", cfg->n_keys,
               PROTO_MAX_KEYS);
    return 0;
}

/* REVOKE (admin thread): record it, then have the CRLs remade soon. */
static cf_status do_revoke(void *arg, const proto_revoke_req *r, uint32_t peer_uid,
                           int64_t *revoked_at, unsigned *reason, char *msg, size_t msglen)
{
    daemon_admin *a = arg;
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
    int rc = ledger_revoke(a->l, hex, (int)r->reason, (int64_t)ts.tv_sec, &at, &rs, err,
                           sizeof(err));
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
            crl_pub_kick(a->pub);
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

static void on_crl(const crl_issuer *ci, const crl_made *m, const char *err, void *arg);

typedef struct crl_copy {
    uint8_t *der;
    size_t len;
} crl_copy;

static int copy_crl(uint64_t number, int64_t tu, int64_t nu, const uint8_t *der, size_t len,
                    void *arg)
{
    (void)number;
    (void)tu;
    (void)nu;
    crl_copy *c = arg;
    if ((c->der = malloc(len)) != NULL) {
        memcpy(c->der, der, len);
        c->len = len;
    }
    return 0;
}

/* CRL (admin thread): the latest CRL of the issuer, from the ledger (so
 * several engines sharing a ledger answer the same one). */
static cf_status do_crl(void *arg, cf_str issuer, bool fresh, uint8_t **der, size_t *len,
                        char *msg, size_t msglen)
{
    daemon_admin *a = arg;
    const cfg_issuer *is = NULL;
    for (size_t i = 0; i < a->cfg->n_issuers && !is; i++)
        if (strlen(a->cfg->issuers[i].name) == issuer.len &&
            memcmp(a->cfg->issuers[i].name, issuer.p, issuer.len) == 0)
            is = &a->cfg->issuers[i];
    if (!is) {
        snprintf(msg, msglen, "no issuer named '%.*s'", (int)(issuer.len < 64 ? issuer.len : 64),
                 issuer.p);
        return CF_ST_NOT_FOUND;
    }
    crl_copy c = {0};
    char err[800];
    if (fresh) { /* certforge crl --new: made now, for this request */
        crl_issuer *ci = a->cis[is - a->cfg->issuers];
        crl_made m;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        if (crl_make(ci, a->l, a->cfg->crl.dir, (int64_t)ts.tv_sec, a->cfg->crl.validity_s, der,
                     &m, err, sizeof(err)) != 0) {
            on_crl(ci, NULL, err, NULL);
            snprintf(msg, msglen, "no CRL made: %s", err);
            return CF_ST_INTERNAL;
        }
        on_crl(ci, &m, NULL, NULL);
        *len = m.len;
        return CF_ST_OK;
    }
    int rc = ledger_crl_latest(a->l, is->key, copy_crl, &c, err, sizeof(err));
    if (rc < 0) {
        snprintf(msg, msglen, "the ledger could not be read: %s", err);
        return CF_ST_LEDGER_FAILURE;
    }
    if (rc == 0) {
        snprintf(msg, msglen, "no CRL made for issuer '%s' yet", is->name);
        return CF_ST_NOT_FOUND;
    }
    if (!c.der) {
        snprintf(msg, msglen, "out of memory");
        return CF_ST_INTERNAL;
    }
    *der = c.der;
    *len = c.len;
    return CF_ST_OK;
}

static void on_crl(const crl_issuer *ci, const crl_made *m, const char *err, void *arg)
{
    (void)arg;
    char q[800];
    if (m)
        cf_log(CF_LOG_INFO, "crl", "issuer=%s number=%llu entries=%zu bytes=%zu next_update=%lld",
               crl_issuer_name(ci), (unsigned long long)m->number, m->entries, m->len,
               (long long)m->next_update);
    else
        cf_log(CF_LOG_ERROR, "crl_failed", "issuer=%s err=%s", crl_issuer_name(ci),
               cf_log_quote(err, q, sizeof(q)));
}

/* One crl_issuer per configured issuer, and the publisher. */
static int start_crls(const cfg_config *cfg, ledger *l, const daemon_keys *dk,
                      const daemon_chains *dc, crl_issuer ***cis_out, crl_pub **pub, char *err,
                      size_t errlen)
{
    crl_issuer **cis = calloc(cfg->n_issuers ? cfg->n_issuers : 1, sizeof(*cis));
    *cis_out = cis;
    if (!cis) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < cfg->n_issuers; i++) {
        const cfg_issuer *is = &cfg->issuers[i];
        size_t ki;
        for (ki = 0; ki < cfg->n_keys; ki++)
            if (strcmp(cfg->keys[ki].name, is->key) == 0)
                break;
        /* the issuer's certificate was read for the chains: find it */
        const proto_blob *cert = NULL;
        for (size_t p = 0; p < cfg->n_profiles && !cert; p++)
            if (cfg->profiles[p].issuer_idx == i)
                cert = &dc->chains[p].certs[0];
        uint8_t *der = NULL;
        size_t len = 0;
        char why[256];
        if (!cert) {
            if (profile_read_cert(is->certificate, &der, &len, why, sizeof(why)) != 0) {
                snprintf(err, errlen, "%s:%d: issuer '%s': %s", cfg->path, is->line, is->name, why);
                return -1;
            }
        }
        int rc = ki < dk->nsign
                     ? crl_issuer_new(is->name, is->key, cert ? cert->p : der,
                                      cert ? cert->len : len, dk->sign[ki].signer,
                                      dk->sign[ki].pub, &cis[i], why, sizeof(why))
                     : -1;
        free(der);
        if (rc != 0) {
            snprintf(err, errlen, "%s:%d: issuer '%s': %s", cfg->path, is->line, is->name,
                     ki < dk->nsign ? why : "no key");
            return -1;
        }
    }
    crl_pub_opts po = {.l = l,
                       .issuers = cis,
                       .n = cfg->n_issuers,
                       .dir = cfg->crl.dir,
                       .interval_s = cfg->crl.interval_s,
                       .validity_s = cfg->crl.validity_s,
                       .revoke_delay_s = cfg->crl.revoke_delay_s,
                       .log = on_crl};
    char why[800];
    if (crl_pub_start(&po, pub, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "%s:%d: crl: %s", cfg->path, cfg->crl.line, why);
        return -1;
    }
    return 0;
}

/* The folder of a file path (into buf). */
static const char *folder_of(const char *path, char *buf, size_t len)
{
    snprintf(buf, len, "%s", path);
    char *slash = strrchr(buf, '/');
    if (!slash)
        snprintf(buf, len, ".");
    else if (slash == buf)
        buf[1] = 0;
    else
        *slash = 0;
    return buf;
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
    char ledger_dir[4200], sock_dir[4200], list[2048] = "";
    size_t n = 0;
    if (ledger_on)
        w[n++] = folder_of(cfg->ledger.path, ledger_dir, sizeof(ledger_dir));
    if (cfg->crl.line)
        w[n++] = cfg->crl.dir;
    w[n++] = folder_of(cfg->server.socket, sock_dir, sizeof(sock_dir));
    for (size_t i = 0; i < cfg->confine.n_writable; i++)
        w[n++] = cfg->confine.writable[i];
    confine_result r;
    char why[600];
    if (confine_apply(w, n, cfg->confine.require_landlock, cfg->confine.user, &r, why,
                      sizeof(why)) != 0) {
        snprintf(err, errlen, "%s: confine: %s", cfg->path, why);
        return -1;
    }
    size_t o = 0;
    for (size_t i = 0; i < n && o < sizeof(list) - 2; i++)
        o += (size_t)snprintf(list + o, sizeof(list) - o, "%s%s", i ? "," : "", w[i]);
    char q[2100], qc[300];
    cf_log(r.landlock_abi ? CF_LOG_INFO : CF_LOG_WARNING, "confined",
           "no_new_privs=yes landlock_abi=%d seccomp=%s writable=%s uid=%u gid=%u caps=none "
           "bounding=%s checks=%s%s",
           r.landlock_abi, r.seccomp ? "yes" : "no", cf_log_quote(list, q, sizeof(q)), r.uid, r.gid,
           r.bounding_cleared ? "empty" : "kept", cf_log_quote(r.checks, qc, sizeof(qc)),
           r.landlock_abi ? "" : " effect=\"no Landlock in this kernel: files not restricted\"");
    if (r.root)
        cf_log(CF_LOG_WARNING, "running_as_root",
               "effect=\"uid 0 without capabilities; set confine.user to run as an unprivileged "
               "user\"");
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
            cf_log(CF_LOG_WARNING, "signal", "sig=HUP action=none phase=start-up");
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
    crl_issuer **cis = NULL;
    crl_pub *pub = NULL;
    startup_watch watch = {.sfd = -1};
    atomic_init(&watch.done, false);
    memset(&dk, 0, sizeof(dk));
    memset(&dc, 0, sizeof(dc));

    /* Signals: blocked in every thread (the pipeline's workers inherit the
     * mask), read through a signalfd by the ring. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP); /* logged, not fatal (docs/certforged.md, SIGNALS) */
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (cfg_load(config, &cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "certforged: %s\n", err);
        goto out;
    }
    cf_log_set_level(cfg->log.level);
    cf_log(CF_LOG_INFO, "start", "version=%s config=%s pid=%d", CF_VERSION, cfg->path,
           (int)getpid());
    sfd = signalfd(-1, &set, SFD_CLOEXEC);
    if (sfd < 0) {
        fprintf(stderr, "certforged: signalfd: %s\n", strerror(errno));
        goto out;
    }
    watch.sfd = sfd;
    watch.started = pthread_create(&watch.th, NULL, startup_watch_main, &watch) == 0;
    /* The socket first: a second daemon must not log in to the HSM token a
     * live one is using. */
    srv_opts so = {.cfg = cfg, .signal_fd = sfd};
    if (srv_new(&so, &server, err, sizeof(err)) != 0) {
        fprintf(stderr, "certforged: %s: %s\n", cfg->path, err);
        cf_log(CF_LOG_ERROR, "refused", "reason=socket");
        goto out;
    }
    socket_to_user(cfg);
    /* The ledger after the socket (a second daemon is refused before it
     * touches the ledger), before the engine (no HSM login without it). */
    if (open_ledger(cfg, no_ledger, &led, err, sizeof(err)) != 0) {
        fprintf(stderr, "certforged: %s\n", err);
        cf_log(CF_LOG_ERROR, "refused", "reason=ledger");
        goto out;
    }
    lp = (ledger_pipe){.l = led, .on_fail = on_ledger_fail, .on_recover = on_ledger_recover};
    cf_engine_hooks hooks = {.done = srv_pipe_done,
                             .done_arg = server,
                             .record = led ? ledger_pipe_record : NULL,
                             .record_arg = &lp};
    if (cf_engine_open(cfg, &hooks, &eng, err, sizeof(err)) != 0) {
        fprintf(stderr, "certforged: %s\n", err);
        cf_log(CF_LOG_ERROR, "refused", "reason=engine");
        goto out;
    }
    if (load_keys(cfg, eng, &dk, err, sizeof(err)) != 0 ||
        load_chains(cfg, &dc, err, sizeof(err)) != 0) {
        fprintf(stderr, "certforged: %s\n", err[0] ? err : "out of memory");
        goto out;
    }
    if (led && cfg->crl.line) {
        struct stat dst;
        if (stat(cfg->crl.dir, &dst) != 0 || !S_ISDIR(dst.st_mode)) {
            fprintf(stderr, "certforged: %s:%d: crl.dir: %s is not a folder (create it: CRLs are "
                            "published there)\n",
                    cfg->path, cfg->crl.line, cfg->crl.dir);
            goto out;
        }
        if (start_crls(cfg, led, &dk, &dc, &cis, &pub, err, sizeof(err)) != 0) {
            fprintf(stderr, "certforged: %s\n", err);
            cf_log(CF_LOG_ERROR, "refused", "reason=crl");
            goto out;
        }
    }
    if (confine_daemon(cfg, led != NULL, err, sizeof(err)) != 0) {
        fprintf(stderr, "certforged: %s\n", err);
        cf_log(CF_LOG_ERROR, "refused", "reason=confine");
        goto out;
    }
    if (cfg->n_grants == 0)
        cf_log(CF_LOG_WARNING, "no_grants", "effect=\"every request is UNAUTHORIZED\"");
    sess_arg sa = {eng, cfg->n_keys};
    daemon_admin adm = {.cfg = cfg, .l = led, .pub = pub, .cis = cis};
    srv_runtime rt = {
        .pipe = cf_engine_pipe(eng),
        .sign_keys = dk.sign,
        .revoke = led ? do_revoke : NULL,
        .crl = led && pub ? do_crl : NULL,
        .admin_arg = &adm,
        .keys = dk.keys,
        .n_keys = dk.n,
        .chains = dc.chains,
        .sessions = sessions_of,
        .sessions_arg = &sa,
        .on_ready = on_ready,
    };
    startup_watch_stop(&watch); /* the ring reads the signalfd from here on */
    if (srv_run(server, &rt, err, sizeof(err)) != 0) {
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
        pipe_cancel_queued(cf_engine_pipe(eng), CF_ST_BUSY, "certforged is stopping");
    if (cancelled)
        cf_log(CF_LOG_INFO, "cancelled", "queued_jobs=%zu", cancelled);
    stop_bound_ms = cfg->server.drain_timeout_ms < 2000 ? 2000 : cfg->server.drain_timeout_ms;
    pthread_t wd;
    if (pthread_create(&wd, NULL, stop_watchdog, NULL) == 0)
        pthread_detach(wd);
    pipe_stats ps;
    pipe_get_stats(cf_engine_pipe(eng), &ps);
    cf_engine_close(eng);
    eng = NULL;
    srv_summary sum;
    srv_get_summary(server, &sum);
    cf_log(CF_LOG_INFO, "stop",
           "issued=%llu connections=%llu requests=%llu answered=%llu unanswered=%llu "
           "refused=%llu exit=%d",
           (unsigned long long)ps.by_status[CF_ST_OK], (unsigned long long)sum.connections,
           (unsigned long long)sum.requests, (unsigned long long)sum.answered,
           (unsigned long long)sum.unanswered, (unsigned long long)sum.refused, rc);
out:
    startup_watch_stop(&watch);
    crl_pub_stop(pub);
    for (size_t i = 0; cis && i < cfg->n_issuers; i++)
        crl_issuer_free(cis[i]);
    free(cis);
    cf_engine_close(eng); /* the workers are joined: nothing records any more */
    ledger_close(led);
    srv_free(server);
    if (sfd >= 0)
        close(sfd);
    for (size_t i = 0; i < dk.n; i++)
        OPENSSL_free(dk.spki[i]);
    for (size_t i = 0; i < dk.nsign; i++)
        EVP_PKEY_free(dk.sign[i].pub);
    free(dk.sign);
    for (size_t i = 0; i < dc.nders; i++)
        free(dc.ders[i]);
    free(dc.ders);
    free(dc.chains);
    cfg_free(cfg);
    return rc;
}
