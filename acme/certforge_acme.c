/* certforge-acme — the RFC 8555 ACME server in front of certforged
 * (docs/acme.md, certforge-acme(8)). */
#include <errno.h>
#include <getopt.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <systemd/sd-daemon.h>

#include "acme/anchors.h"
#include "acme/api_int.h"
#include "acme/config.h"
#include "acme/frontcert.h"
#include "acme/issuer.h"
#include "acme/nonce.h"
#include "acme/ratelimit.h"
#include "acme/server.h"
#include "acme/star.h"
#include "acme/store.h"
#include "acme/tkauth.h"
#include "acme/validate.h"
#include "common/outfile.h"
#include "engine/confine/confine.h"

#ifndef CF_VERSION
#define CF_VERSION "0.1.0"
#endif

static volatile sig_atomic_t stop_sig, reload_sig;

static void on_signal(int s)
{
    if (s == SIGHUP)
        reload_sig = 1;
    else
        stop_sig = s;
}

/* The status view: counters as one JSON object, written atomically every
 * second to status_file (certforge acme status reads it). */
static void write_status(const acme_srv *srv, int64_t started, const acme_frontcert *fc)
{
    const acme_cfg *cfg = srv->cfg;
    acme_store_stats st;
    acme_issuer_stats is;
    acme_store_get_stats(srv->store, &st);
    acme_issuer_get_stats(srv->issuer, &is);
    const acme_counters *c = &srv->ctr;
    json_t *j = json_pack(
        "{s:s, s:I, s:I, s:I, s:s, s:{s:I, s:I, s:I, s:I, s:I}, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}, "
        "s:{s:I, s:I, s:I, s:I}, s:{s:I, s:I, s:I, s:I, s:I, s:I}}",
        "version", CF_VERSION, "pid", (json_int_t)getpid(), "started", (json_int_t)started, "now", (json_int_t)acme_now(),
        "base_url", cfg->base_url,
        "http", "requests", (json_int_t)c->requests, "problems", (json_int_t)c->problems, "connections",
        (json_int_t)c->connections, "connection_limit_hits", (json_int_t)c->connections_refused,
        "address_limit_hits", (json_int_t)c->address_limit_hits,
        "acme", "accounts", (json_int_t)c->accounts, "orders", (json_int_t)c->orders, "finalized", (json_int_t)c->finalized,
        "issued", (json_int_t)c->issued, "revoked", (json_int_t)c->revoked, "validations_ok", (json_int_t)c->validations_ok,
        "validations_failed", (json_int_t)c->validations_failed, "bad_nonce", (json_int_t)c->bad_nonce,
        "store", "commits", (json_int_t)st.commits, "changes", (json_int_t)st.changes, "failed_commits",
        (json_int_t)st.failed_commits, "max_group", (json_int_t)st.max_group,
        "certforged", "submitted", (json_int_t)is.submitted, "answered", (json_int_t)is.answered, "busy_retries",
        (json_int_t)is.busy_retries, "reconnects", (json_int_t)is.reconnects, "busy", (json_int_t)c->engine_busy, "errors",
        (json_int_t)c->engine_errors);
    if (!j)
        return;
    if (cfg->tls_profile)
        json_object_set_new(j, "tls", json_pack("{s:I, s:I}", "not_after", (json_int_t)fc->not_after, "renew_at",
                                                (json_int_t)fc->renew_at));
    if (srv->star) {
        acme_star_stats ss;
        acme_star_get_stats(srv->star, &ss);
        json_object_set_new(
            j, "star",
            json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "issued", (json_int_t)ss.issued,
                      "failures", (json_int_t)ss.failures, "stale", (json_int_t)ss.stale, "scans",
                      (json_int_t)ss.scans, "inflight", (json_int_t)ss.inflight, "lag_p50_ms",
                      (json_int_t)ss.lag_p50_ms, "lag_p99_ms", (json_int_t)ss.lag_p99_ms,
                      "lag_max_ms", (json_int_t)ss.lag_max_ms));
    }
    /* through the safe writer (common/outfile.h); a status file is
     * rewritten often and is not worth an fsync each time */
    char *txt = json_dumps(j, JSON_COMPACT), err[600];
    if (txt && cf_write_file(cfg->status_file, txt, strlen(txt), 0644,
                             CF_OUT_NOSYNC | CF_OUT_NOSTDOUT, err, sizeof(err)) != 0)
        fprintf(stderr, "status file: %s\n", err);
    free(txt);
    json_decref(j);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: certforge-acme --config FILE [--check]\n"
               "       certforge-acme --version\n\n"
               "The ACME (RFC 8555) server in front of certforged. Runs in the foreground and logs\n"
               "one line per request to standard error. --check loads the configuration, reports\n"
               "the first error with FILE:LINE and exits. docs/acme.md has every setting.\n\n"
               "Exit status: 0 stopped by SIGTERM/SIGINT, 1 start-up failed, 2 usage.\n");
}

/* Once listening (its threads started, its TLS files written): give up
 * what serving does not need (engine/confine, docs/security.md). Writable:
 * the SQLite state's folder, the TLS state folder, the status file's. */
static int confine(acme_srv *srv, char *err, size_t errlen)
{
    const acme_cfg *cfg = srv->cfg;
    if (!cfg->confine) {
        acme_log(srv, ACME_LOG_WARNING, "event=unconfined reason=\"confine.enabled = false\"");
        return 0;
    }
    char a[4200], b[4200];
    const char *w[3];
    size_t n = 0;
    if (cfg->db_path)
        w[n++] = confine_folder_of(cfg->db_path, a, sizeof(a));
    if (cfg->tls_profile && cfg->tls_state_dir)
        w[n++] = cfg->tls_state_dir;
    if (cfg->status_file)
        w[n++] = confine_folder_of(cfg->status_file, b, sizeof(b));
    confine_result r;
    if (confine_apply(w, n, cfg->confine_require_landlock, cfg->confine_user, &r, err, errlen) != 0)
        return -1;
    char d[3000];
    confine_describe(&r, w, n, d, sizeof(d));
    acme_log(srv, r.landlock_abi ? ACME_LOG_INFO : ACME_LOG_WARNING, "event=confined %s", d);
    if (r.root)
        acme_log(srv, ACME_LOG_WARNING,
                 "event=running_as_root effect=\"uid 0 without capabilities; set confine.user\"");
    return 0;
}

int main(int argc, char **argv)
{
    const char *cfg_file = NULL;
    int check = 0;
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"check", no_argument, NULL, 'k'},
                                         {"version", no_argument, NULL, 'V'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (o) {
        case 'c':
            cfg_file = optarg;
            break;
        case 'k':
            check = 1;
            break;
        case 'V':
            printf("certforge-acme %s\n", CF_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!cfg_file || optind != argc) {
        usage(stderr);
        return 2;
    }
    char err[1024] = "";
    acme_cfg *cfg = NULL;
    if (acme_cfg_load(cfg_file, &cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "certforge-acme: %s\n", err);
        return 1;
    }
    if (check) {
        printf("%s: OK\n", cfg_file);
        acme_cfg_free(cfg);
        return 0;
    }
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = 1;
    acme_srv srv = {.cfg = cfg, .log_level = cfg->log_level};
    acme_frontcert fc = {0};
    SSL_CTX *ctx = NULL;
    acme_db *mdb = NULL;
    unsigned limits[ACME_RL__MAX] = {
        [ACME_RL_ORDERS_ACCOUNT] = cfg->rl_orders_per_account,
        [ACME_RL_ORDERS_ADDRESS] = cfg->rl_orders_per_address,
        [ACME_RL_ORDERS_GLOBAL] = cfg->rl_orders_global,
        [ACME_RL_FAILED_VALIDATIONS] = cfg->rl_failed_validations_per_account,
        [ACME_RL_ACCOUNTS_ADDRESS] = cfg->rl_accounts_per_address,
    };
    if (acme_store_open(cfg, &srv.store, err, sizeof(err)) != 0 || acme_nonces_new(cfg->instance, &srv.nonces) != 0 ||
        acme_ratelimit_new(limits, &srv.limits) != 0 || acme_issuer_new(cfg, &srv.issuer, err, sizeof(err)) != 0 ||
        acme_validator_new(&srv, &srv.validator, err, sizeof(err)) != 0) {
        fprintf(stderr, "certforge-acme: %s\n", err[0] ? err : "out of memory");
        goto out;
    }
    if (cfg->tkauth_anchors &&
        acme_tkauth_new(cfg->tkauth_anchors, cfg->tkauth_max_lifetime_s, (const char *const *)cfg->tkauth_x5u,
                        cfg->n_tkauth_x5u, &srv.tkauth, err, sizeof(err)) != 0) {
        fprintf(stderr, "certforge-acme: %s\n", err);
        goto out;
    }
    pthread_mutex_init(&srv.anchors_mu, NULL);
    if (cfg->trust_anchors_file && acme_anchors_load(cfg->trust_anchors_file, &srv.anchors, err, sizeof(err)) != 0) {
        fprintf(stderr, "certforge-acme: %s\n", err);
        goto out;
    }
    if (cfg->tls_cert_file) {
        ctx = acme_server_ssl_ctx(cfg->tls_cert_file, cfg->tls_key_file, err, sizeof(err));
    } else if (acme_frontcert_load_or_issue(cfg, srv.issuer, &fc, &ctx, err, sizeof(err)) != 0) {
        ctx = NULL;
    }
    if (!ctx) {
        fprintf(stderr, "certforge-acme: %s\n", err);
        goto out;
    }
    srv.ssl_ctx = ctx;
    if (acme_server_new(&srv, err, sizeof(err)) != 0) {
        fprintf(stderr, "certforge-acme: %s\n", err);
        goto out;
    }
    if (!(mdb = acme_db_open_reader(srv.store, err, sizeof(err)))) {
        fprintf(stderr, "certforge-acme: %s\n", err);
        goto out;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    if (acme_server_start(&srv, err, sizeof(err)) != 0) {
        fprintf(stderr, "certforge-acme: %s\n", err);
        goto out;
    }
    if (confine(&srv, err, sizeof(err)) != 0) {
        fprintf(stderr, "certforge-acme: %s: confine: %s\n", cfg_file, err);
        goto out;
    }
    int resumed = api_resume(&srv, mdb);
    if (cfg->star_enabled && acme_star_start(&srv, &srv.star, err, sizeof(err)) != 0) {
        fprintf(stderr, "certforge-acme: %s\n", err);
        goto out;
    }
    acme_log(&srv, ACME_LOG_INFO,
             "event=started version=%s pid=%ld listen=%s:%u base_url=%s threads=%u state=%s engine=%s resumed=%d%s", CF_VERSION,
             (long)getpid(), cfg->listen_host, cfg->listen_port, cfg->base_url, cfg->threads,
             cfg->db_path ? cfg->db_path : "postgresql", cfg->engine_socket, resumed,
             cfg->tls_profile ? "" : " tls=files");
    (void)sd_notify(0, "READY=1\nSTATUS=serving"); /* systemd Type=notify; nothing without NOTIFY_SOCKET */
    if (cfg->tls_profile) {
        char nb[32], ra[32];
        acme_time_rfc3339(fc.not_after, nb, sizeof(nb));
        acme_time_rfc3339(fc.renew_at, ra, sizeof(ra));
        acme_log(&srv, ACME_LOG_INFO, "event=tls_certificate chain=%s not_after=%s renew_at=%s", fc.chain_path, nb, ra);
    }
    int64_t started = acme_now(), next_prune = started + cfg->prune_interval_s, next_status = 0;
    while (!stop_sig) {
        struct timespec ts = {0, 200 * 1000000};
        nanosleep(&ts, NULL);
        int64_t now = acme_now();
        if (cfg->tls_profile && now >= fc.renew_at) {
            SSL_CTX *n = NULL;
            if (acme_frontcert_issue(cfg, srv.issuer, &fc, &n, err, sizeof(err)) == 0) {
                acme_server_set_ssl_ctx(&srv, n);
                char na[32];
                acme_time_rfc3339(fc.not_after, na, sizeof(na));
                acme_log(&srv, ACME_LOG_INFO, "event=tls_renewed not_after=%s", na);
            } else {
                fc.renew_at = now + 60; /* retry in a minute */
                acme_log(&srv, ACME_LOG_ERROR, "event=tls_renewal_failed error=\"%s\"", err);
            }
        }
        if (reload_sig) {
            /* SIGHUP: the trust anchors file again (a CA rollover adds a root
             * and link certificates); a bad file keeps the old ones */
            reload_sig = 0;
            acme_anchors *a = NULL;
            if (!cfg->trust_anchors_file) {
                acme_log(&srv, ACME_LOG_INFO, "event=reload trust_anchors=none");
            } else if (acme_anchors_load(cfg->trust_anchors_file, &a, err, sizeof(err)) == 0) {
                acme_log(&srv, ACME_LOG_INFO, "event=reload trust_anchors=%u etag=%s", a->n_certs, a->etag);
                acme_server_anchors_set(&srv, a);
            } else {
                acme_log(&srv, ACME_LOG_ERROR, "event=reload_failed error=\"%s\" kept=previous", err);
            }
        }
        if (now >= next_status) {
            write_status(&srv, started, &fc);
            next_status = now + 1;
        }
        if (now >= next_prune) {
            int64_t deleted = 0;
            if (acme_store_run(srv.store, api_prune, &deleted) == 0 && deleted)
                acme_log(&srv, ACME_LOG_INFO, "event=pruned objects=%lld", (long long)deleted);
            next_prune = now + cfg->prune_interval_s;
        }
    }
    acme_log(&srv, ACME_LOG_INFO, "event=stopping signal=%d", (int)stop_sig);
    (void)sd_notify(0, "STOPPING=1\nSTATUS=stopping");
    rc = 0;
out:
    /* Order matters: the loops stop taking requests; validations and
     * certforged requests in flight end (their results are written); the
     * store commits what is queued; only then are the loops' posted
     * completions run and the loops freed. */
    acme_server_stop(&srv);
    acme_star_stop(srv.star);
    acme_validator_free(srv.validator);
    acme_issuer_free(srv.issuer);
    acme_db_close(mdb);
    if (srv.store) {
        acme_store_stats st;
        acme_store_get_stats(srv.store, &st);
        acme_store_close(srv.store);
        if (rc == 0)
            acme_log(&srv, ACME_LOG_INFO,
                     "event=stopped requests=%llu problems=%llu accounts=%llu orders=%llu issued=%llu revoked=%llu "
                     "validations_ok=%llu validations_failed=%llu commits=%llu changes=%llu max_group=%llu",
                     (unsigned long long)srv.ctr.requests, (unsigned long long)srv.ctr.problems,
                     (unsigned long long)srv.ctr.accounts, (unsigned long long)srv.ctr.orders,
                     (unsigned long long)srv.ctr.issued, (unsigned long long)srv.ctr.revoked,
                     (unsigned long long)srv.ctr.validations_ok, (unsigned long long)srv.ctr.validations_failed,
                     (unsigned long long)st.commits, (unsigned long long)st.changes, (unsigned long long)st.max_group);
    }
    acme_star_free(srv.star);
    acme_server_free(&srv);
    acme_server_anchors_set(&srv, NULL);
    acme_ratelimit_free(srv.limits);
    acme_tkauth_free(srv.tkauth);
    acme_nonces_free(srv.nonces);
    acme_cfg_free(cfg);
    curl_global_cleanup();
    return rc;
}
