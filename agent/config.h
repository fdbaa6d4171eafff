/* config.h — certforge-agent's configuration (libconfig), validated into a
 * plain struct. Strict like certforge-acme's: unknown settings, wrong
 * types and out-of-range values are refused with FILE:LINE: PATH: PROBLEM
 * (docs/agent.md lists every setting). */
#ifndef CF_AGENT_CONFIG_H
#define CF_AGENT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "acme/config.h" /* acme_cfg_backend */

#define AGENT_WUR __attribute__((warn_unused_result))
#define AGENT_CFG_MAX_ZONES 32

typedef struct agent_cfg {
    /* EST over TLS */
    char *listen_host;
    uint16_t listen_port;
    unsigned threads;
    unsigned max_connections;
    unsigned max_connections_per_address; /* 0: no limit */
    unsigned max_body;
    unsigned max_headers;
    unsigned request_timeout_s;
    char *tls_cert_file, *tls_key_file; /* the agent's own EST server certificate */
    char *cacerts_file;                 /* served at /cacerts (the operator's CA certificates) */
    unsigned est_wait_ms;               /* how long an enrolment request waits before 202 */
    unsigned est_retry_after_s;         /* Retry-After of a 202 */
    int est_key_type;                   /* est_key_type: the key /csrattrs asks for */

    /* bootstrap credentials for a first enrolment */
    char *bootstrap_anchors;   /* PEM: vendor/bootstrap certificate roots; NULL: none accepted */
    char *token_anchors;       /* PEM: the OAM token authority's roots; NULL: no tokens */
    uint32_t token_max_lifetime_s;

    /* state */
    acme_cfg_backend backend;
    char *db_path;
    char *conninfo;

    /* the ACME server */
    char *directory_url;
    char *acme_ca_file; /* trust for the ACME server's TLS; NULL: the system store */
    char *profile;      /* newOrder "profile" of orders with an NfInstanceId; NULL: none sent */
    char *dns_profile;  /* newOrder "profile" of dns-only orders; NULL: none sent */
    char *star_profile; /* newOrder "profile" of STAR orders (nf add --star); NULL: profile/dns_profile */
    char *contact;      /* account contact ("mailto:..."), NULL: none */
    char *account_key_token; /* PKCS#11 URI of the token holding new NFs' account keys; NULL: the state */
    char *eab_kid;      /* acme.eab: the external account's key id; NULL: no EAB */
    uint8_t *eab_key;   /* its HMAC key, from eab.hmac_key_file; wiped on free */
    size_t eab_key_len;
    bool nf_instance_id; /* order the NfInstanceId identifier (tkauth-01) */
    unsigned workers;
    unsigned acme_timeout_ms;
    unsigned max_retries;
    uint32_t retry_base_s, retry_max_s;
    unsigned poll_ms;
    double renew_fraction; /* without ARI: renew at this fraction of the lifetime */
    bool ari;              /* ask renewalInfo when the directory has it */
    uint32_t renewal_scan_s;

    /* RFC 2136 dynamic update for dns-01 */
    char *dns_server_host;
    uint16_t dns_server_port;
    char *tsig_name;
    char *tsig_algorithm; /* "hmac-sha256" ... */
    char *tsig_secret;    /* base64, read from tsig.secret_file; wiped on free */
    char *zones[AGENT_CFG_MAX_ZONES];
    unsigned n_zones;
    uint32_t dns_ttl;
    unsigned dns_timeout_ms;

    int log_level; /* 0 error .. 3 debug */
    char *status_file;
    /* confine = { enabled; user; require_landlock; }: what the daemon gives
     * up once it serves (engine/confine: no_new_privs, Landlock with only
     * its state, TLS and status folders writable, seccomp, no capability;
     * started as root with a user: that user from then on) */
    bool confine;
    bool confine_require_landlock;
    char *confine_user;
} agent_cfg;

/* Load FILE: 0, or -1 with "FILE:LINE: PATH: PROBLEM" in err. */
AGENT_WUR int agent_cfg_load(const char *file, agent_cfg **out, char *err, size_t errlen);
/* Same from a string (tests, fuzzer); relative paths from base_dir. Files
 * named by the config (tsig secret) are read. */
AGENT_WUR int agent_cfg_load_string(const char *text, const char *base_dir, agent_cfg **out, char *err,
                                    size_t errlen);
void agent_cfg_free(agent_cfg *c);

/* An EAB HMAC key file (acme.eab.hmac_key_file, `nf add
 * --eab-hmac-key-file`): a regular file no one but its owner may read
 * (mode & 077 refused), base64url without padding on one line, at least 32
 * octets. 0 with *key (malloc'd; the caller wipes and frees it), or -1
 * with err (the file's name and the problem; never the key). */
AGENT_WUR int agent_eab_read_key(const char *path, uint8_t **key, size_t *key_len, char *err, size_t errlen);
/* An EAB key id: 1-256 printable ASCII characters, no space, quote or
 * backslash (it goes into a JWS header and the logs). */
#define AGENT_EAB_KID_MAX 256
#define AGENT_EAB_KID_RULE "an EAB key id is 1-256 printable characters without spaces or quotes"
bool agent_eab_kid_ok(const char *kid);

/* The configured zone a name falls in (longest suffix match), or NULL. */
const char *agent_cfg_zone_for(const agent_cfg *c, const char *name);

#endif
