/* config.h — certforge-acme's configuration (libconfig), validated into
 * plain structs. Unknown settings are refused with FILE:LINE: PATH:
 * PROBLEM, like certforged's (docs/acme.md lists every setting). */
#ifndef CF_ACME_CONFIG_H
#define CF_ACME_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "acme/acme.h"

#define ACME_CFG_MAX_PROFILES 32
#define ACME_CFG_MAX_DNS 16

/* An ACME profile (draft-aaron-acme-profiles) and the certforged profile it
 * maps to. */
typedef struct acme_cfg_profile {
    char *name;        /* the name clients send in newOrder "profile" */
    char *engine;      /* certforged profile name */
    char *description; /* shown in the directory's meta.profiles */
    uint32_t validity_s; /* 0: the engine profile's default */
    uint32_t max_validity_s; /* notAfter - notBefore a client may ask (0: only the default) */
    bool identifiers[ACME_ID__MAX]; /* identifier types orders may carry */
    char *nf_types[64];              /* NF types an authority token may grant (none listed: any) */
    unsigned n_nf_types;
    /* CA rollover: from switch_at on, issue with the certforged profile
     * switch_to (the new issuer's), and tell holders of certificates issued
     * before it to renew now (ARI) */
    char *switch_to;
    int64_t switch_at;
} acme_cfg_profile;

/* state.pg_timeout_ms's default: the longest one PostgreSQL call of the
 * store waits for a server that does not answer (store_pg.c). */
#define ACME_PG_TIMEOUT_MS_DEFAULT 5000

typedef enum acme_cfg_backend { ACME_BACKEND_SQLITE, ACME_BACKEND_POSTGRESQL } acme_cfg_backend;

typedef struct acme_cfg {
    /* listen */
    char *listen_host;
    uint16_t listen_port;
    char *base_url; /* https://host:port, no trailing slash */
    char *instance; /* nonce prefix naming this front end (1-8 chars of A-Za-z0-9) */
    unsigned threads;
    unsigned max_connections;
    unsigned max_connections_per_address; /* 0: no limit */
    unsigned max_body;          /* octets of a request body */
    unsigned max_headers;       /* octets of the request headers */
    unsigned request_timeout_s; /* slow client: whole request, and idle keep-alive */

    /* tls: either files, or a certificate issued by certforged at start-up */
    char *tls_cert_file, *tls_key_file;
    char *tls_profile;                 /* certforged profile for our own certificate */
    char *tls_dns[ACME_CFG_MAX_DNS];   /* its dNSNames */
    unsigned n_tls_dns;
    char *tls_state_dir;               /* where the issued key and chain are kept */
    double tls_renew_fraction;         /* renew at this fraction of the lifetime (2/3) */

    /* certforged */
    char *engine_socket;
    unsigned engine_connections;
    unsigned engine_timeout_ms;
    char *requester;

    /* state */
    acme_cfg_backend backend;
    char *db_path;  /* sqlite */
    char *conninfo;         /* postgresql */
    unsigned pg_timeout_ms; /* postgresql: bound of every call (store_pg.c) */

    /* accounts */
    bool eab_required;
    char *terms_of_service;
    char *website;
    bool contact_required;

    /* orders and authorizations */
    uint32_t order_lifetime_s;
    uint32_t authz_lifetime_s;
    uint32_t authz_reuse_s; /* valid authorizations reused for this long (0: never) */
    unsigned finalize_wait_ms;
    unsigned max_identifiers;
    acme_cfg_profile profiles[ACME_CFG_MAX_PROFILES];
    unsigned n_profiles;
    unsigned default_profile;

    /* validation */
    unsigned validation_threads;
    unsigned validation_timeout_ms;
    unsigned validation_queue;
    uint16_t http01_port;
    uint16_t tlsalpn01_port;
    char *resolver_host; /* NULL: the system resolver */
    uint16_t resolver_port;
    bool challenges[ACME_CH__MAX]; /* which types are offered */

    /* tkauth-01 (RFC 9447) for NfInstanceId identifiers; NULL anchors: off */
    char *tkauth_anchors;   /* PEM file of token-authority trust anchors */
    char *tkauth_authority; /* "token-authority" shown in the challenge (a URL), or NULL */
    uint32_t tkauth_max_lifetime_s;
    char *tkauth_x5u[8];
    unsigned n_tkauth_x5u;

    /* the operator's trust anchors, published for clients and NFs */
    char *trust_anchors_file; /* PEM bundle: every active root (and link certificates) */

    /* STAR (RFC 8739) */
    bool star_enabled;
    uint32_t star_min_lifetime_s, star_max_duration_s;
    uint32_t star_renew_ahead_s; /* 0: a tenth of the lifetime, at least 30 s */
    bool star_allow_get;         /* meta.auto-renewal.allow-certificate-get */
    unsigned star_batch;         /* due renewals taken per scan */
    unsigned star_scan_ms;

    /* ARI (RFC 9773) */
    double ari_renew_fraction;  /* window centre, fraction of lifetime (2/3) */
    double ari_window_fraction; /* window width, fraction of lifetime */
    uint32_t ari_retry_after_s;

    /* rate limits (per hour; 0: none) */
    unsigned rl_orders_per_account;
    unsigned rl_orders_per_address;
    unsigned rl_orders_global;
    unsigned rl_pending_authz_per_account; /* pending at once */
    unsigned rl_failed_validations_per_account;
    unsigned rl_accounts_per_address;

    /* log */
    int log_level; /* 0 error, 1 warning, 2 info, 3 debug */
    /* the status view: counters written here every second (certforge acme status) */
    char *status_file;
    /* confine = { enabled; user; require_landlock; }: what the daemon gives
     * up once it serves (engine/confine: no_new_privs, Landlock with only
     * its state, TLS and status folders writable, seccomp, no capability;
     * started as root with a user: that user from then on) */
    bool confine;
    bool confine_require_landlock;
    char *confine_user;
    /* pruning of expired pending objects */
    uint32_t prune_interval_s;
} acme_cfg;

/* Load FILE: 0, or -1 with "FILE:LINE: PATH: PROBLEM" in err. */
CF_WUR int acme_cfg_load(const char *file, acme_cfg **out, char *err, size_t errlen);
/* Same from a string (tests, fuzzer); relative paths from base_dir. */
CF_WUR int acme_cfg_load_string(const char *text, const char *base_dir, acme_cfg **out, char *err,
                                  size_t errlen);
void acme_cfg_free(acme_cfg *c);

/* The certforged profile p issues with at time now (rollover switch). */
const char *acme_cfg_profile_engine(const acme_cfg_profile *p, int64_t now);

/* The profile a newOrder names (NULL: the default); NULL if unknown. */
const acme_cfg_profile *acme_cfg_profile_find(const acme_cfg *c, const char *name);

#endif
