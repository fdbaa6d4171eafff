/* config.h — certforged's configuration file, read with libconfig and
 * validated into plain structs that the other modules read.
 *
 * Knows the schema and its limits; nothing of PKCS#11, X.509 encoding or
 * sockets. The loader refuses, with "file:line: setting.path: what is
 * wrong", every unknown setting, every value of the wrong type, every
 * missing required setting, every value outside its limits and every
 * reference (key -> token, issuer -> key, profile -> issuer) that does not
 * resolve. docs/configuration.md documents each setting; an annotated
 * example is docs/examples/certforged.conf.
 *
 * The loader reads no file other than the config (and its @include files):
 * issuer certificates are read when profiles are compiled.
 */
#ifndef CF_CONFIG_H
#define CF_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/compiler.h"
#include "common/log.h"

/* Hard limits of the schema (also documented in docs/configuration.md). */
#define CFG_NAME_MAX 64     /* token/key/issuer/profile names: [A-Za-z0-9._-] */
#define CFG_MAX_ENTRIES 256 /* tokens, keys, issuers, profiles each */
#define CFG_MAX_WORKERS 256
#define CFG_MAX_QUEUE (1u << 20)
#define CFG_MAX_BATCH 1024
#define CFG_MAX_SESSIONS 1024
#define CFG_SERIAL_PREFIX_MAX 4 /* octets */
#define CFG_NFTYPE_MAX 32       /* RFC 9310: NFType ::= IA5String (SIZE (1..32)) */
#define CFG_MAX_NF_TYPES 64     /* entries in a profile's nf_types allow-list */
#define CFG_URL_MAX 1024
/* TS 33.310 §6.1.3c: NF certificates are valid at most 3 years. Taken as
 * 3 × 365 days (the shorter reading), backdating included. */
#define CFG_NF_VALIDITY_MAX (3u * 365u * 86400u)
/* RFC 8739 STAR certificates are short-term; the "star" profile carries
 * noRevAvail (RFC 9608) and no CRL pointer, which is only sound for
 * short-lived certificates: at most 7 days (the CA/Browser Forum's
 * short-lived bound). */
#define CFG_STAR_VALIDITY_MAX (7u * 86400u)
#define CFG_BACKDATE_MAX 3600u

typedef enum cfg_profile_type {
    CFG_PROFILE_NF,   /* TS 33.310 §6.1.3c NF TLS client/server certificate */
    CFG_PROFILE_SEPP, /* N32 SEPP certificate from the interconnection CA */
    CFG_PROFILE_STAR, /* RFC 8739 short-term certificate with RFC 9608 noRevAvail */
    CFG_PROFILE__MAX
} cfg_profile_type;
const char *cfg_profile_type_name(cfg_profile_type t); /* "nf", "sepp", "star" */

/* Signature hash (TS 33.310 §6.1.1: SHA-256 shall, SHA-384 should; never
 * MD5 or SHA-1). */
typedef enum cfg_hash { CFG_HASH_SHA256, CFG_HASH_SHA384, CFG_HASH_SHA512, CFG_HASH__MAX } cfg_hash;
const char *cfg_hash_name(cfg_hash h); /* "sha256", ... */

/* extendedKeyUsage purposes (TS 33.310 §6.1.3c: serverAuth and/or clientAuth). */
#define CFG_EKU_SERVER_AUTH 0x1u
#define CFG_EKU_CLIENT_AUTH 0x2u

/* Subject key types a profile accepts in CSRs. RSA sizes are exact modulus
 * lengths. */
typedef enum cfg_key_type {
    CFG_KT_EC_P256,
    CFG_KT_EC_P384,
    CFG_KT_RSA_2048,
    CFG_KT_RSA_3072,
    CFG_KT_RSA_4096,
    CFG_KT_ED25519,
    CFG_KT__MAX
} cfg_key_type;
#define CFG_KT_ALL ((1u << CFG_KT__MAX) - 1u)
const char *cfg_key_type_name(cfg_key_type k); /* "ec-p256", "rsa-2048", ... */

typedef enum cfg_verify_mode {
    CFG_VERIFY_ALL,    /* verify every issued certificate's signature */
    CFG_VERIFY_SAMPLE, /* one in verify_n */
    CFG_VERIFY_OFF
} cfg_verify_mode;

/* Every entry keeps the line it was defined on, for later messages. */
typedef struct cfg_token {
    char *name;
    char *uri; /* RFC 7512 PKCS#11 URI selecting the token; never pin-value */
    int line;
} cfg_token;

typedef struct cfg_key {
    char *name;
    char *token;      /* name of a cfg_token */
    size_t token_idx; /* index into cfg_config.tokens */
    char *uri;        /* RFC 7512 object URI (object= and/or id=) */
    unsigned sessions;
    unsigned sign_threads; /* 0: sign on the pipeline worker's thread */
    int line;
} cfg_key;

typedef struct cfg_issuer {
    char *name;
    char *key; /* name of a cfg_key */
    size_t key_idx;
    char *certificate; /* PEM/DER issuer certificate; relative paths resolved
                          against the config file's folder */
    char *chain;       /* optional: PEM chain sent with issued certificates, or NULL */
    /* Sharded CRLs (docs/crl.md): 1..CFG_CRL_SHARDS_MAX, default 1. With
     * more than 1, every nf/sepp profile of the issuer has the same crl_dp
     * holding "{shard}" once, kept here (NULL with 1 shard). Restart-only:
     * a certificate's shard is its serial modulo crl_shards. */
    unsigned crl_shards;
    char *crl_dp;
    int line;
} cfg_issuer;
#define CFG_CRL_SHARDS_MAX 1024

typedef struct cfg_profile {
    char *name;
    cfg_profile_type type;
    char *issuer; /* name of a cfg_issuer */
    size_t issuer_idx;
    char *issuer_key; /* name of that issuer's cfg_key (copied for profile users) */
    char subject_c[3];                                 /* ISO 3166 alpha-2, upper case */
    char *subject_o;                                   /* home network domain (nf) / organization */
    uint32_t validity_default, validity_max, backdate; /* seconds */
    cfg_hash hash;
    unsigned eku;         /* CFG_EKU_* */
    char *crl_dp;         /* nf, sepp: required; star: NULL; "{shard}" once when the
                             issuer has crl_shards > 1 */
    unsigned crl_shards;  /* the issuer's crl_shards (copied for profile_compile) */
    char *aia_ca_issuers; /* optional, or NULL */
    bool require_nf_instance_id;
    bool require_nf_types; /* nf: true; sepp: NFTypes is always "SEPP" */
    bool require_fqdn;     /* at least one dNSName; sepp: true */
    char **nf_types;       /* allow-list; empty: any valid NFType */
    size_t n_nf_types;
    unsigned key_types; /* bit (1 << cfg_key_type) per accepted type */
    int line;
} cfg_profile;

typedef struct cfg_pipeline {
    unsigned workers; /* resolved: never 0 */
    unsigned queue;
    unsigned batch;
    cfg_verify_mode verify;
    unsigned verify_n; /* CFG_VERIFY_SAMPLE: 1 in verify_n (>= 2) */
    uint8_t serial_prefix[CFG_SERIAL_PREFIX_MAX];
    size_t serial_prefix_len; /* 0: none */
} cfg_pipeline;

typedef struct cfg_log {
    cf_log_level level;
} cfg_log;

/* The daemon's socket and its limits (docs/configuration.md, `server`). */
#define CFG_SOCKET_PATH_MAX 107 /* sun_path holds 108 octets with the NUL */
#define CFG_MAX_FRAME_MIN 64    /* PROTO_MIN_FRAME_CAP */
#define CFG_MAX_FRAME_MAX (1u << 20)
#define CFG_MAX_INFLIGHT 65536
#define CFG_MAX_CONNECTIONS 65536
#define CFG_MAX_IO_THREADS 64
#define CFG_MAX_GRANTS 256

typedef struct cfg_server {
    char *socket;              /* absolute (relative: against the config folder) */
    unsigned socket_mode;      /* permission bits; never o+w */
    unsigned max_frame;        /* largest request frame, header included */
    unsigned max_inflight;     /* requests per connection not yet answered */
    unsigned max_connections;  /* open connections, all I/O threads together */
    unsigned busy_deadline_ms; /* how long a request may wait for queue room before BUSY */
    unsigned idle_timeout_ms;  /* a connection with nothing in flight and no bytes closes */
    unsigned drain_timeout_ms; /* SIGTERM: how long to wait for accepted requests */
    unsigned io_threads;       /* io_uring rings, one thread each */
    /* Fair share per peer (uid): connections one uid may hold (default
     * max_connections), slots beyond max_connections only a peer holding
     * none may take (default max(4, max_connections / 32)), requests one
     * uid may have in flight, i.e. jobs of the pool (0: three quarters of
     * the pool while another uid is connected, the server's default). */
    unsigned peer_max_connections;
    unsigned peer_reserve;
    unsigned peer_max_inflight;
    int line;                  /* 0 when the section is absent (defaults) */
} cfg_server;

/* Operations a grant may allow (bit per op). */
#define CFG_GRANT_ISSUE 0x1u
#define CFG_GRANT_STATUS 0x2u
#define CFG_GRANT_KEYS 0x4u
#define CFG_GRANT_SIGN 0x8u   /* raw signing, only with the keys listed */
#define CFG_GRANT_REVOKE 0x10u
#define CFG_GRANT_CRL 0x20u

/* Who may do what: a peer (SO_PEERCRED) matches a grant by its uid or by
 * its primary gid; it gets the union of the grants it matches. */
typedef struct cfg_grant {
    bool has_uid, has_gid; /* exactly one of them */
    uint32_t uid, gid;
    unsigned ops;        /* CFG_GRANT_* */
    bool all_profiles;   /* profiles = ["*"] */
    size_t *profile_idx; /* indices into cfg_config.profiles */
    size_t n_profiles;
    size_t *key_idx;     /* sign: indices into cfg_config.keys (never "all") */
    size_t n_keys;
    int line;
} cfg_grant;

/* CRLs (docs/crl.md): one per issuer, made by certforged on a schedule and
 * soon after each revocation, written to `dir`. Optional: without the
 * section no CRL is made (REVOKE still records revocations). */
typedef struct cfg_crl {
    char *dir;             /* publish folder (relative: against the config folder) */
    uint64_t interval_s;   /* a new CRL at least this often */
    uint64_t validity_s;   /* nextUpdate - thisUpdate; > interval_s */
    uint64_t revoke_delay_s; /* a new CRL at most this long after a revocation */
    int line;              /* 0 when the section is absent */
} cfg_crl;

/* The ledger (docs/ledger.md, docs/configuration.md `ledger`). Optional
 * for the loader; certforged refuses to start without it. */
typedef enum cfg_ledger_backend {
    CFG_LEDGER_SQLITE,
    CFG_LEDGER_POSTGRESQL,
    CFG_LEDGER__MAX
} cfg_ledger_backend;
const char *cfg_ledger_backend_name(cfg_ledger_backend b); /* "sqlite", "postgresql" */

typedef struct cfg_ledger {
    cfg_ledger_backend backend;
    char *path;               /* sqlite: database file (relative: against the config folder) */
    char *conninfo;           /* postgresql: libpq conninfo or URI (never a password) */
    unsigned busy_timeout_ms; /* how long a batch waits for another writer's lock */
    unsigned pg_timeout_ms;   /* postgresql: bound on each call's exchange with the server */
    int line;                 /* 0 when the section is absent (no ledger) */
} cfg_ledger;

/* What certforged gives up after start-up (docs/security.md). */
#define CFG_MAX_WRITABLE 16
typedef struct cfg_confine {
    bool enabled;          /* default true */
    bool require_landlock; /* refuse to start on a kernel without Landlock */
    char **writable;       /* more folders left writable (absolute) */
    size_t n_writable;
    char *user; /* started as root: switch to this user (NULL: stay root, warned) */
    int line;
} cfg_confine;

/* The Prometheus metrics endpoint (docs/certforged.md, METRICS): HTTP on
 * a loopback address only; the loader refuses any other. */
#define CFG_METRICS_HOST_MAX 46 /* INET6_ADDRSTRLEN */
typedef struct cfg_metrics {
    char host[CFG_METRICS_HOST_MAX]; /* numeric: "127.0.0.1", "::1" */
    int family;                      /* AF_INET or AF_INET6 */
    unsigned port;                   /* 0: any free port (logged) */
    int line;                        /* 0 when absent: no endpoint */
} cfg_metrics;

typedef struct cfg_config {
    char *path; /* the file loaded */
    cfg_token *tokens;
    size_t n_tokens;
    cfg_key *keys;
    size_t n_keys;
    cfg_issuer *issuers;
    size_t n_issuers;
    cfg_profile *profiles;
    size_t n_profiles;
    cfg_pipeline pipeline;
    cfg_log log;
    cfg_server server;
    cfg_grant *grants; /* may be empty: then every request is UNAUTHORIZED */
    size_t n_grants;
    cfg_ledger ledger;
    cfg_crl crl;
    cfg_confine confine;
    cfg_metrics metrics;
} cfg_config;

/* Load and validate `path`. On success *out is set (free with cfg_free)
 * and 0 returned; on failure -1 and err holds one line, usually
 * "path:line: setting: problem". */
CF_WUR int cfg_load(const char *path, cfg_config **out, char *err, size_t errlen);
/* Same from a string; `name` stands in for the file name in messages and
 * relative paths are resolved against `base_dir` (NULL: the current
 * folder). @include is refused here. For tests and the fuzzer. */
CF_WUR int cfg_load_string(const char *text, const char *name, const char *base_dir,
                           cfg_config **out, char *err, size_t errlen);
void cfg_free(cfg_config *c);

/* SIGHUP (docs/certforged.md, RELOAD): what a running certforged cannot
 * change. Returns 0 when `n` differs from `o` only in reloadable settings
 * (grants, profiles, issuers on the same keys, log.level,
 * crl.interval/validity/revoke_delay), else -1 with "FILE:LINE: SETTING
 * changed: restart needed" for the first restart-only setting that differs
 * (server.*, pipeline.*, tokens, keys, an issuer's crl_shards, ledger, crl
 * on/off and crl.dir, confine). */
CF_WUR int cfg_restart_diff(const cfg_config *o, const cfg_config *n, char *err, size_t errlen);

/* Lookups by name (NULL when absent). */
const cfg_profile *cfg_find_profile(const cfg_config *c, const char *name, size_t len);
const cfg_issuer *cfg_find_issuer(const cfg_config *c, const char *name);
const cfg_key *cfg_find_key(const cfg_config *c, const char *name);

#endif
