/* config.c — load and validate certforge-agent's configuration (config.h,
 * docs/agent.md). libconfig parses; this file walks the tree and refuses
 * anything the schema does not name.
 *
 * The small strict-loader helpers (fail/only/get_*) follow acme/config.c's;
 * they are static there, and factoring them out would change certforge-acme
 * in a feature commit of the agent, so the agent carries its own. */
#include "agent/config.h"

#include <ctype.h>
#include <errno.h>
#include <libconfig.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "acme/jws.h"
#include "agent/estmsg.h"

#include "common/duration.h"
#include "common/user.h"

typedef struct ld {
    char *err;
    size_t errlen;
    const char *file;
    const char *base_dir;
} ld;

static void spath(const config_setting_t *s, char *buf, size_t len)
{
    const config_setting_t *parent = config_setting_parent(s);
    if (!parent) {
        snprintf(buf, len, "(top level)");
        return;
    }
    char up[256] = "";
    if (config_setting_parent(parent))
        spath(parent, up, sizeof(up));
    const char *name = config_setting_name(s);
    if (name)
        snprintf(buf, len, "%s%s%s", up, up[0] ? "." : "", name);
    else
        snprintf(buf, len, "%s[%d]", up, config_setting_index(s));
}

__attribute__((format(printf, 3, 4))) static int fail(ld *l, const config_setting_t *s, const char *fmt, ...)
{
    char msg[400], path[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (!s) {
        snprintf(l->err, l->errlen, "%s: %s", l->file, msg);
        return -1;
    }
    spath(s, path, sizeof(path));
    const char *f = config_setting_source_file(s);
    unsigned line = config_setting_source_line(s);
    if (line)
        snprintf(l->err, l->errlen, "%s:%u: %s: %s", f ? f : l->file, line, path, msg);
    else
        snprintf(l->err, l->errlen, "%s: %s: %s", f ? f : l->file, path, msg);
    return -1;
}

static int only(ld *l, const config_setting_t *g, const char *const *names)
{
    int n = config_setting_length(g);
    for (int i = 0; i < n; i++) {
        config_setting_t *m = config_setting_get_elem(g, (unsigned)i);
        const char *nm = config_setting_name(m);
        int ok = 0;
        for (const char *const *p = names; *p; p++)
            if (nm && strcmp(nm, *p) == 0)
                ok = 1;
        if (!ok) {
            char where[300];
            spath(g, where, sizeof(where));
            return fail(l, m, "unknown setting in %s", config_setting_parent(g) ? where : "the top level");
        }
    }
    return 0;
}

static const char *type_name(int t)
{
    switch (t) {
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
        return "an integer";
    case CONFIG_TYPE_FLOAT:
        return "a number";
    case CONFIG_TYPE_STRING:
        return "a string";
    case CONFIG_TYPE_BOOL:
        return "a boolean";
    case CONFIG_TYPE_ARRAY:
        return "an array";
    case CONFIG_TYPE_LIST:
        return "a list";
    case CONFIG_TYPE_GROUP:
        return "a group";
    default:
        return "something else";
    }
}

static const config_setting_t *member(const config_setting_t *g, const char *name)
{
    return g ? config_setting_get_member(g, name) : NULL;
}

static int get_str(ld *l, const config_setting_t *g, const char *name, const char *dflt, int req, char **out)
{
    const config_setting_t *s = member(g, name);
    *out = NULL;
    if (!s) {
        if (req && !dflt)
            return fail(l, g, "missing required setting '%s'", name);
        if (dflt && !(*out = strdup(dflt)))
            return fail(l, NULL, "out of memory");
        return 0;
    }
    if (config_setting_type(s) != CONFIG_TYPE_STRING)
        return fail(l, s, "expected a string, got %s", type_name(config_setting_type(s)));
    const char *v = config_setting_get_string(s);
    for (const char *p = v; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return fail(l, s, "control characters are not allowed");
    if (!(*out = strdup(v)))
        return fail(l, NULL, "out of memory");
    return 0;
}

static int get_uint(ld *l, const config_setting_t *g, const char *name, unsigned dflt, unsigned min, unsigned max,
                    unsigned *out)
{
    const config_setting_t *s = member(g, name);
    if (!s) {
        *out = dflt;
        return 0;
    }
    int t = config_setting_type(s);
    if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64)
        return fail(l, s, "expected an integer, got %s", type_name(t));
    long long v = config_setting_get_int64(s);
    if (v < min || v > max)
        return fail(l, s, "%lld is out of range %u-%u", v, min, max);
    *out = (unsigned)v;
    return 0;
}

static int get_bool(ld *l, const config_setting_t *g, const char *name, bool dflt, bool *out)
{
    const config_setting_t *s = member(g, name);
    if (!s) {
        *out = dflt;
        return 0;
    }
    if (config_setting_type(s) != CONFIG_TYPE_BOOL)
        return fail(l, s, "expected a boolean, got %s", type_name(config_setting_type(s)));
    *out = config_setting_get_bool(s) != 0;
    return 0;
}

static int get_frac(ld *l, const config_setting_t *g, const char *name, double dflt, double min, double max,
                    double *out)
{
    const config_setting_t *s = member(g, name);
    if (!s) {
        *out = dflt;
        return 0;
    }
    if (config_setting_type(s) != CONFIG_TYPE_FLOAT)
        return fail(l, s, "expected a number such as 0.667, got %s", type_name(config_setting_type(s)));
    double v = config_setting_get_float(s);
    if (!(v >= min && v <= max))
        return fail(l, s, "%g is out of range %g-%g", v, min, max);
    *out = v;
    return 0;
}

static int get_dur(ld *l, const config_setting_t *g, const char *name, uint32_t dflt, uint32_t min, uint32_t max,
                   uint32_t *out)
{
    const config_setting_t *s = member(g, name);
    if (!s) {
        *out = dflt;
        return 0;
    }
    if (config_setting_type(s) != CONFIG_TYPE_STRING)
        return fail(l, s, "expected a duration string such as \"1h\", got %s", type_name(config_setting_type(s)));
    char why[200];
    uint64_t v;
    if (cf_parse_duration(config_setting_get_string(s), &v, why, sizeof(why)))
        return fail(l, s, "%s", why);
    if (v < min || v > max)
        return fail(l, s, "%llus is out of range %us-%us", (unsigned long long)v, min, max);
    *out = (uint32_t)v;
    return 0;
}

static int get_path(ld *l, const config_setting_t *g, const char *name, const char *dflt, int req, char **out)
{
    char *v = NULL;
    *out = NULL;
    if (get_str(l, g, name, dflt, req, &v))
        return -1;
    if (!v)
        return 0;
    if (!v[0]) {
        free(v);
        return fail(l, member(g, name), "empty path");
    }
    if (v[0] == '/' || !l->base_dir) {
        *out = v;
        return 0;
    }
    size_t n = strlen(l->base_dir) + strlen(v) + 2;
    if (!(*out = malloc(n))) {
        free(v);
        return fail(l, NULL, "out of memory");
    }
    snprintf(*out, n, "%s/%s", l->base_dir, v);
    free(v);
    return 0;
}

static int group(ld *l, const config_setting_t *parent, const char *name, const config_setting_t **out)
{
    const config_setting_t *s = member(parent, name);
    *out = NULL;
    if (!s)
        return 0;
    if (config_setting_type(s) != CONFIG_TYPE_GROUP)
        return fail(l, s, "expected a group { ... }, got %s", type_name(config_setting_type(s)));
    *out = s;
    return 0;
}

static int parse_hostport(ld *l, const config_setting_t *s, const char *v, char **host, uint16_t *port)
{
    const char *colon = strrchr(v, ':');
    if (!colon || colon == v || !colon[1])
        return fail(l, s, "'%s' is not HOST:PORT (e.g. \"127.0.0.1:8443\")", v);
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end || p < 1 || p > 65535)
        return fail(l, s, "port '%s' is not 1-65535", colon + 1);
    const char *h = v;
    size_t hl = (size_t)(colon - v);
    if (h[0] == '[') {
        if (hl < 3 || h[hl - 1] != ']')
            return fail(l, s, "'%s': an IPv6 address goes in brackets, [::1]:8443", v);
        h++;
        hl -= 2;
    }
    if (!(*host = strndup(h, hl)))
        return fail(l, s, "out of memory");
    *port = (uint16_t)p;
    return 0;
}

static int valid_dns(const char *s)
{
    size_t n = strlen(s), lab = 0;
    if (n == 0 || n > 253)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == '.') {
            if (lab == 0)
                return 0;
            lab = 0;
            continue;
        }
        if (!(isalnum((unsigned char)ch) || ch == '-') || ++lab > 63)
            return 0;
    }
    return lab > 0;
}

/* The TSIG secret: base64 in a file of its own (mode 0600 advised), never
 * in the config itself, so the config can be shown and kept in git. */
static int read_secret(ld *l, const config_setting_t *s, const char *path, char **out)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return fail(l, s, "cannot read %s: %m", path);
    char buf[512];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    while (n && isspace((unsigned char)buf[n - 1]))
        buf[--n] = '\0';
    size_t start = 0;
    while (buf[start] && isspace((unsigned char)buf[start]))
        start++;
    int ok = n > start && n - start < sizeof(buf) - 1;
    for (size_t i = start; ok && i < n; i++)
        ok = isalnum((unsigned char)buf[i]) || buf[i] == '+' || buf[i] == '/' || buf[i] == '=';
    if (!ok) {
        OPENSSL_cleanse(buf, sizeof(buf));
        return fail(l, s, "%s does not hold a base64 TSIG secret on one line", path);
    }
    *out = strdup(buf + start);
    OPENSSL_cleanse(buf, sizeof(buf));
    return *out ? 0 : fail(l, NULL, "out of memory");
}

/* The EAB HMAC key (RFC 8555 §7.3.4): base64url on one line, as
 * `certforge acme eab add` prints it, in a file only its owner can read:
 * the key binds accounts to the operator's external account, so a file
 * readable by others is refused rather than warned about. Shared by
 * acme.eab and `nf add --eab-hmac-key-file` (config.h). */
int agent_eab_read_key(const char *path, uint8_t **out, size_t *out_len, char *err, size_t errlen)
{
    char buf[512];
    int rc = -1;
    *out = NULL;
    *out_len = 0;
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        snprintf(err, errlen, "%s is not a regular file", path);
        return -1;
    }
    if (st.st_mode & 077) {
        fclose(f);
        snprintf(err, errlen, "%s is readable by others (mode %04o): it holds the EAB HMAC key; chmod 600 it", path,
                 (unsigned)(st.st_mode & 07777));
        return -1;
    }
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    while (n && isspace((unsigned char)buf[n - 1]))
        buf[--n] = '\0';
    uint8_t key[sizeof(buf)];
    long kl = n && n < sizeof(buf) - 1 ? acme_b64url_decode(buf, n, key, sizeof(key)) : -1;
    if (kl < 0)
        snprintf(err, errlen, "%s does not hold a base64url EAB HMAC key (no padding) on one line", path);
    else if (kl < 32)
        snprintf(err, errlen, "the EAB HMAC key in %s has %ld octets; HS256 needs at least 32 (RFC 7518 §3.2)", path,
                 kl);
    else if (!(*out = malloc((size_t)kl)))
        snprintf(err, errlen, "out of memory");
    else {
        memcpy(*out, key, (size_t)kl);
        *out_len = (size_t)kl;
        rc = 0;
    }
    OPENSSL_cleanse(buf, sizeof(buf));
    OPENSSL_cleanse(key, sizeof(key));
    return rc;
}

/* the kid goes into a JWS header and the logs: printable, no quotes */
bool agent_eab_kid_ok(const char *kid)
{
    size_t kl = kid ? strlen(kid) : 0;
    bool ok = kl >= 1 && kl <= AGENT_EAB_KID_MAX;
    for (const char *p = kid; ok && *p; p++)
        ok = *p > 0x20 && *p < 0x7f && *p != '"' && *p != '\\';
    return ok;
}

static int read_eab_key(ld *l, const config_setting_t *s, const char *path, agent_cfg *c)
{
    char err[700];
    if (agent_eab_read_key(path, &c->eab_key, &c->eab_key_len, err, sizeof(err)) != 0)
        return fail(l, s, "%s", err);
    return 0;
}

static const char *const top_keys[] = {"listen", "threads",     "limits",  "tls",  "cacerts",
                                       "est",    "bootstrap",   "state",   "acme", "dns_update",
                                       "log",    "status_file", "confine", NULL};

static int load_root(ld *l, const config_setting_t *root, agent_cfg *c)
{
    if (only(l, root, top_keys))
        return -1;
    char *v = NULL;
    const config_setting_t *g, *s;

    if (get_str(l, root, "listen", "127.0.0.1:8443", 0, &v))
        return -1;
    int rc = parse_hostport(l, member(root, "listen"), v, &c->listen_host, &c->listen_port);
    free(v);
    if (rc)
        return -1;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (get_uint(l, root, "threads", ncpu > 0 && ncpu < 64 ? (unsigned)ncpu : 2, 1, 64, &c->threads) ||
        get_path(l, root, "status_file", "agent-status.json", 0, &c->status_file) ||
        get_path(l, root, "cacerts", NULL, 1, &c->cacerts_file))
        return -1;

    if (group(l, root, "limits", &g) ||
        (g && only(l, g, (const char *const[]){"max_connections", "max_connections_per_address", "max_body",
                                               "max_headers", "request_timeout_s", NULL})) ||
        get_uint(l, g, "max_connections", 4096, 1, 1000000, &c->max_connections) ||
        get_uint(l, g, "max_connections_per_address", c->max_connections / 4 ? c->max_connections / 4 : 1, 0,
                 1000000, &c->max_connections_per_address) ||
        get_uint(l, g, "max_body", 16384, 1024, 1 << 20, &c->max_body) ||
        get_uint(l, g, "max_headers", 16384, 1024, 1 << 20, &c->max_headers) ||
        get_uint(l, g, "request_timeout_s", 30, 1, 3600, &c->request_timeout_s))
        return -1;

    if (group(l, root, "tls", &g))
        return -1;
    if (!g)
        return fail(l, NULL, "missing required setting 'tls' (tls = { certificate = \"est.pem\"; key = \"est.key\"; }: "
                             "the agent's EST server certificate)");
    if (only(l, g, (const char *const[]){"certificate", "key", NULL}) ||
        get_path(l, g, "certificate", NULL, 1, &c->tls_cert_file) || get_path(l, g, "key", NULL, 1, &c->tls_key_file))
        return -1;

    if (group(l, root, "est", &g) ||
        (g && only(l, g, (const char *const[]){"wait_ms", "retry_after", "key_type", NULL})) ||
        get_uint(l, g, "wait_ms", 5000, 0, 60000, &c->est_wait_ms) ||
        get_dur(l, g, "retry_after", 5, 1, 3600, &c->est_retry_after_s) ||
        get_str(l, g, "key_type", "ec-p256", 0, &v))
        return -1;
    c->est_key_type = est_key_type_from_name(v);
    free(v);
    v = NULL;
    if (c->est_key_type < 0)
        return fail(l, member(g, "key_type"),
                    "expected ec-p256, ec-p384, rsa-2048, rsa-3072, rsa-4096, ed25519 or any");

    if (group(l, root, "bootstrap", &g) ||
        (g && only(l, g, (const char *const[]){"trust_anchors", "token_trust_anchors", "token_max_lifetime", NULL})) ||
        get_path(l, g, "trust_anchors", NULL, 0, &c->bootstrap_anchors) ||
        get_path(l, g, "token_trust_anchors", NULL, 0, &c->token_anchors) ||
        get_dur(l, g, "token_max_lifetime", 3600, 60, 7 * 86400, &c->token_max_lifetime_s))
        return -1;
    if (!c->bootstrap_anchors && !c->token_anchors)
        return fail(l, g ? g : NULL, "bootstrap: set trust_anchors (vendor/bootstrap certificate roots) and/or "
                                     "token_trust_anchors (the OAM token authority's roots): without either no NF "
                                     "could make its first enrolment");

    if (group(l, root, "state", &g))
        return -1;
    if (!g)
        return fail(l, NULL, "missing required setting 'state' (e.g. state = { path = \"agent.db\"; })");
    char *backend = NULL;
    if (only(l, g, (const char *const[]){"backend", "path", "conninfo", NULL}) ||
        get_str(l, g, "backend", "sqlite", 0, &backend))
        return -1;
    if (strcmp(backend, "sqlite") == 0) {
        c->backend = ACME_BACKEND_SQLITE;
    } else if (strcmp(backend, "postgresql") == 0) {
        c->backend = ACME_BACKEND_POSTGRESQL;
    } else {
        free(backend);
        return fail(l, member(g, "backend"), "expected \"sqlite\" or \"postgresql\"");
    }
    free(backend);
    if (get_path(l, g, "path", NULL, c->backend == ACME_BACKEND_SQLITE, &c->db_path) ||
        get_str(l, g, "conninfo", NULL, c->backend == ACME_BACKEND_POSTGRESQL, &c->conninfo))
        return -1;
    if (c->backend == ACME_BACKEND_SQLITE && c->conninfo)
        return fail(l, member(g, "conninfo"), "only with backend = \"postgresql\"");
    if (c->backend == ACME_BACKEND_POSTGRESQL && c->db_path)
        return fail(l, member(g, "path"), "only with backend = \"sqlite\"");

    if (group(l, root, "acme", &g))
        return -1;
    if (!g)
        return fail(l, NULL, "missing required setting 'acme' (acme = { directory = \"https://.../directory\"; })");
    if (only(l, g, (const char *const[]){"directory", "ca_file", "profile", "dns_profile", "star_profile", "contact", "nf_instance_id", "workers",
                                         "timeout_ms", "max_retries", "retry_base", "retry_max", "poll_ms", "renew_at",
                                         "ari", "renewal_scan", "eab", "account_key_token", NULL}) ||
        get_str(l, g, "directory", NULL, 1, &c->directory_url) || get_path(l, g, "ca_file", NULL, 0, &c->acme_ca_file) ||
        get_str(l, g, "profile", NULL, 0, &c->profile) || get_str(l, g, "dns_profile", NULL, 0, &c->dns_profile) ||
        get_str(l, g, "star_profile", NULL, 0, &c->star_profile) ||
        get_str(l, g, "contact", NULL, 0, &c->contact) ||
        get_str(l, g, "account_key_token", NULL, 0, &c->account_key_token) ||
        get_bool(l, g, "nf_instance_id", true, &c->nf_instance_id) ||
        get_uint(l, g, "workers", 16, 1, 1024, &c->workers) ||
        get_uint(l, g, "timeout_ms", 10000, 100, 120000, &c->acme_timeout_ms) ||
        get_uint(l, g, "max_retries", 6, 0, 100, &c->max_retries) ||
        get_dur(l, g, "retry_base", 2, 1, 3600, &c->retry_base_s) ||
        get_dur(l, g, "retry_max", 300, 1, 86400, &c->retry_max_s) ||
        get_uint(l, g, "poll_ms", 500, 10, 60000, &c->poll_ms) ||
        get_frac(l, g, "renew_at", 2.0 / 3.0, 0.1, 0.95, &c->renew_fraction) ||
        get_bool(l, g, "ari", true, &c->ari) || get_dur(l, g, "renewal_scan", 1, 1, 3600, &c->renewal_scan_s))
        return -1;
    if (strncmp(c->directory_url, "https://", 8) != 0 || strlen(c->directory_url) < 10)
        return fail(l, member(g, "directory"), "the ACME directory is an https:// URL (RFC 8555 §6.1)");
    if (c->retry_max_s < c->retry_base_s)
        return fail(l, member(g, "retry_max"), "shorter than retry_base");
    if (c->contact && strncmp(c->contact, "mailto:", 7) != 0)
        return fail(l, member(g, "contact"), "a contact is a mailto: URL");
    if (c->account_key_token && strncmp(c->account_key_token, "pkcs11:", 7) != 0)
        return fail(l, member(g, "account_key_token"),
                    "a PKCS#11 URI (RFC 7512) of the token, e.g. \"pkcs11:token=agent?module-path=...&pin-source=file:...\"");
    const config_setting_t *eg;
    if (group(l, g, "eab", &eg))
        return -1;
    if (eg) {
        char *key_file = NULL;
        if (only(l, eg, (const char *const[]){"kid", "hmac_key_file", NULL}) ||
            get_str(l, eg, "kid", NULL, 1, &c->eab_kid) || get_path(l, eg, "hmac_key_file", NULL, 1, &key_file))
            return -1;
        rc = read_eab_key(l, member(eg, "hmac_key_file"), key_file, c);
        free(key_file);
        if (rc)
            return -1;
        if (!agent_eab_kid_ok(c->eab_kid))
            return fail(l, member(eg, "kid"), "%s", AGENT_EAB_KID_RULE);
    }
    if (c->nf_instance_id && !c->token_anchors)
        return fail(l, member(g, "nf_instance_id"),
                    "NfInstanceId orders are validated with the OAM's authority token (tkauth-01): set "
                    "bootstrap.token_trust_anchors, or nf_instance_id = false");

    if (group(l, root, "dns_update", &g))
        return -1;
    if (!g)
        return fail(l, NULL, "missing required setting 'dns_update' (the RFC 2136 server, TSIG key and zones "
                             "that dns-01 challenges are answered in)");
    if (only(l, g, (const char *const[]){"server", "tsig", "zones", "ttl", "timeout_ms", NULL}) ||
        get_str(l, g, "server", NULL, 1, &v))
        return -1;
    rc = parse_hostport(l, member(g, "server"), v, &c->dns_server_host, &c->dns_server_port);
    free(v);
    if (rc || get_dur(l, g, "ttl", 60, 0, 86400, &c->dns_ttl) ||
        get_uint(l, g, "timeout_ms", 3000, 100, 60000, &c->dns_timeout_ms))
        return -1;
    const config_setting_t *tg;
    if (group(l, g, "tsig", &tg))
        return -1;
    if (tg) {
        char *secret_file = NULL;
        if (only(l, tg, (const char *const[]){"name", "algorithm", "secret_file", NULL}) ||
            get_str(l, tg, "name", NULL, 1, &c->tsig_name) ||
            get_str(l, tg, "algorithm", "hmac-sha256", 0, &c->tsig_algorithm) ||
            get_path(l, tg, "secret_file", NULL, 1, &secret_file))
            return -1;
        rc = read_secret(l, member(tg, "secret_file"), secret_file, &c->tsig_secret);
        free(secret_file);
        if (rc)
            return -1;
        static const char *const algs[] = {"hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha1", NULL};
        int ok = 0;
        for (const char *const *a = algs; *a; a++)
            ok |= strcmp(*a, c->tsig_algorithm) == 0;
        if (!ok)
            return fail(l, member(tg, "algorithm"), "expected hmac-sha256, hmac-sha384, hmac-sha512 or hmac-sha1");
        if (!valid_dns(c->tsig_name))
            return fail(l, member(tg, "name"), "a TSIG key name is a DNS name");
    }
    s = member(g, "zones");
    if (!s || config_setting_type(s) != CONFIG_TYPE_ARRAY || config_setting_length(s) < 1 ||
        config_setting_length(s) > AGENT_CFG_MAX_ZONES)
        return fail(l, s ? s : g, "zones: expected an array of 1-%d zone names the agent may update", AGENT_CFG_MAX_ZONES);
    for (int i = 0; i < config_setting_length(s); i++) {
        config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        const char *z = config_setting_type(e) == CONFIG_TYPE_STRING ? config_setting_get_string(e) : NULL;
        char zz[256];
        snprintf(zz, sizeof(zz), "%s", z ? z : "");
        size_t zl = strlen(zz);
        if (zl && zz[zl - 1] == '.')
            zz[--zl] = '\0';
        if (!z || !valid_dns(zz))
            return fail(l, e, "not a zone name");
        for (char *p = zz; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        if (!(c->zones[c->n_zones++] = strdup(zz)))
            return fail(l, NULL, "out of memory");
    }

    /* confine */
    c->confine = true;
    if (group(l, root, "confine", &g) ||
        (g && only(l, g, (const char *const[]){"enabled", "user", "require_landlock", NULL})) ||
        (g && get_bool(l, g, "enabled", true, &c->confine)) ||
        (g && get_bool(l, g, "require_landlock", false, &c->confine_require_landlock)) ||
        (g && get_str(l, g, "user", NULL, 0, &c->confine_user)))
        return -1;
    char why[200];
    if (c->confine_user && cf_user_check(c->confine_user, why, sizeof(why)) != 0)
        return fail(l, member(g, "user"), "%s", why);

    char *lvl = NULL;
    if (group(l, root, "log", &g) || (g && only(l, g, (const char *const[]){"level", NULL})) ||
        get_str(l, g, "level", "info", 0, &lvl))
        return -1;
    static const char *const levels[] = {"error", "warning", "info", "debug"};
    c->log_level = -1;
    for (int i = 0; i < 4; i++)
        if (strcmp(lvl, levels[i]) == 0)
            c->log_level = i;
    free(lvl);
    if (c->log_level < 0)
        return fail(l, member(g, "level"), "expected \"error\", \"warning\", \"info\" or \"debug\"");
    return 0;
}

static int load(config_t *cf, ld *l, agent_cfg **out)
{
    agent_cfg *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(l->err, l->errlen, "%s: out of memory", l->file);
        return -1;
    }
    if (load_root(l, config_root_setting(cf), c) != 0) {
        agent_cfg_free(c);
        return -1;
    }
    *out = c;
    return 0;
}

static int parse_error(config_t *cf, ld *l)
{
    const char *f = config_error_file(cf);
    snprintf(l->err, l->errlen, "%s:%d: %s", f ? f : l->file, config_error_line(cf), config_error_text(cf));
    return -1;
}

int agent_cfg_load(const char *file, agent_cfg **out, char *err, size_t errlen)
{
    *out = NULL;
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", file);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof(dir), ".");
    ld l = {.err = err, .errlen = errlen, .file = file, .base_dir = dir};
    config_t cf;
    config_init(&cf);
    config_set_include_dir(&cf, dir);
    int rc;
    FILE *fp = fopen(file, "r");
    if (!fp) {
        snprintf(err, errlen, "%s: cannot open: %m", file);
        rc = -1;
    } else {
        fclose(fp);
        rc = config_read_file(&cf, file) == CONFIG_TRUE ? load(&cf, &l, out) : parse_error(&cf, &l);
    }
    config_destroy(&cf);
    return rc;
}

int agent_cfg_load_string(const char *text, const char *base_dir, agent_cfg **out, char *err, size_t errlen)
{
    *out = NULL;
    ld l = {.err = err, .errlen = errlen, .file = "(string)", .base_dir = base_dir};
    config_t cf;
    config_init(&cf);
    int rc = config_read_string(&cf, text) == CONFIG_TRUE ? load(&cf, &l, out) : parse_error(&cf, &l);
    config_destroy(&cf);
    return rc;
}

void agent_cfg_free(agent_cfg *c)
{
    if (!c)
        return;
    free(c->listen_host);
    free(c->tls_cert_file);
    free(c->tls_key_file);
    free(c->cacerts_file);
    free(c->bootstrap_anchors);
    free(c->token_anchors);
    free(c->db_path);
    free(c->conninfo);
    free(c->directory_url);
    free(c->acme_ca_file);
    free(c->profile);
    free(c->dns_profile);
    free(c->star_profile);
    free(c->contact);
    free(c->dns_server_host);
    free(c->tsig_name);
    free(c->tsig_algorithm);
    if (c->tsig_secret) {
        OPENSSL_cleanse(c->tsig_secret, strlen(c->tsig_secret));
        free(c->tsig_secret);
    }
    free(c->eab_kid);
    free(c->account_key_token);
    if (c->eab_key) {
        OPENSSL_cleanse(c->eab_key, c->eab_key_len);
        free(c->eab_key);
    }
    for (unsigned i = 0; i < c->n_zones; i++)
        free(c->zones[i]);
    free(c->status_file);
    free(c->confine_user);
    free(c);
}

const char *agent_cfg_zone_for(const agent_cfg *c, const char *name)
{
    const char *best = NULL;
    size_t nl = strlen(name), bl = 0;
    for (unsigned i = 0; i < c->n_zones; i++) {
        size_t zl = strlen(c->zones[i]);
        if (zl > nl || zl < bl)
            continue;
        if (strcasecmp(name + nl - zl, c->zones[i]) != 0)
            continue;
        if (zl < nl && name[nl - zl - 1] != '.')
            continue;
        best = c->zones[i];
        bl = zl;
    }
    return best;
}
