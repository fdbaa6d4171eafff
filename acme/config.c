/* config.c — load and validate certforge-acme's configuration (config.h,
 * docs/acme.md). libconfig parses; this file walks the tree and refuses
 * anything the schema does not name. */
#include "acme/config.h"

#include <ctype.h>
#include <libconfig.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/duration.h"
#include "common/user.h"

typedef struct ld {
    char *err;
    size_t errlen;
    const char *file;
    const char *base_dir;
    acme_cfg *c;
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

__attribute__((format(printf, 3, 4))) static int fail(ld *l, const config_setting_t *s, const char *fmt,
                                                      ...)
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

/* Refuse every member of group g not in names[] (NULL-terminated). */
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

static char *dupstr(ld *l, const char *s)
{
    char *r = strdup(s);
    if (!r)
        snprintf(l->err, l->errlen, "%s: out of memory", l->file);
    return r;
}

/* A string member: *out = copy, or dflt (copied) when absent and dflt set;
 * required when !dflt && req. */
static int get_str(ld *l, const config_setting_t *g, const char *name, const char *dflt, int req,
                   char **out)
{
    const config_setting_t *s = member(g, name);
    if (!s) {
        if (req && !dflt)
            return g ? fail(l, g, "missing required setting '%s'", name)
                     : fail(l, NULL, "missing required setting '%s'", name);
        *out = dflt ? dupstr(l, dflt) : NULL;
        return dflt && !*out ? -1 : 0;
    }
    if (config_setting_type(s) != CONFIG_TYPE_STRING)
        return fail(l, s, "expected a string, got %s", type_name(config_setting_type(s)));
    const char *v = config_setting_get_string(s);
    for (const char *p = v; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return fail(l, s, "control characters are not allowed");
    *out = dupstr(l, v);
    return *out ? 0 : -1;
}

static int get_int(ld *l, const config_setting_t *g, const char *name, long long dflt, long long min,
                   long long max, long long *out)
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
        return fail(l, s, "%lld is out of range %lld-%lld", v, min, max);
    *out = v;
    return 0;
}

static int get_uint(ld *l, const config_setting_t *g, const char *name, unsigned dflt, unsigned min,
                    unsigned max, unsigned *out)
{
    long long v = 0;
    if (get_int(l, g, name, dflt, min, max, &v))
        return -1;
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

static int get_frac(ld *l, const config_setting_t *g, const char *name, double dflt, double min,
                    double max, double *out)
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

static int get_dur(ld *l, const config_setting_t *g, const char *name, uint32_t dflt, uint32_t min,
                   uint32_t max, uint32_t *out)
{
    const config_setting_t *s = member(g, name);
    if (!s) {
        *out = dflt;
        return 0;
    }
    if (config_setting_type(s) != CONFIG_TYPE_STRING)
        return fail(l, s, "expected a duration string such as \"1h\", got %s",
                    type_name(config_setting_type(s)));
    char why[200];
    uint64_t v;
    if (cf_parse_duration(config_setting_get_string(s), &v, why, sizeof(why)))
        return fail(l, s, "%s", why);
    if (v < min || v > max)
        return fail(l, s, "%llus is out of range %us-%us", (unsigned long long)v, min, max);
    *out = (uint32_t)v;
    return 0;
}

static char *resolve_path(ld *l, const char *p)
{
    if (p[0] == '/' || !l->base_dir)
        return dupstr(l, p);
    size_t n = strlen(l->base_dir) + strlen(p) + 2;
    char *r = malloc(n);
    if (!r) {
        snprintf(l->err, l->errlen, "%s: out of memory", l->file);
        return NULL;
    }
    snprintf(r, n, "%s/%s", l->base_dir, p);
    return r;
}

static int get_path(ld *l, const config_setting_t *g, const char *name, const char *dflt, int req,
                    char **out)
{
    char *v = NULL;
    if (get_str(l, g, name, dflt, req, &v))
        return -1;
    if (!v) {
        *out = NULL;
        return 0;
    }
    if (!v[0]) {
        free(v);
        return fail(l, member(g, name), "empty path");
    }
    *out = resolve_path(l, v);
    free(v);
    return *out ? 0 : -1;
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

/* host:port or [v6]:port */
static int parse_hostport(ld *l, const config_setting_t *s, const char *v, char **host, uint16_t *port)
{
    const char *colon = strrchr(v, ':');
    if (!colon || colon == v || !colon[1])
        return fail(l, s, "'%s' is not HOST:PORT (e.g. \"127.0.0.1:14000\")", v);
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end || p < 1 || p > 65535)
        return fail(l, s, "port '%s' is not 1-65535", colon + 1);
    const char *h = v;
    size_t hl = (size_t)(colon - v);
    if (h[0] == '[') {
        if (hl < 3 || h[hl - 1] != ']')
            return fail(l, s, "'%s': an IPv6 address goes in brackets, [::1]:14000", v);
        h++;
        hl -= 2;
    }
    *host = strndup(h, hl);
    if (!*host)
        return fail(l, s, "out of memory");
    *port = (uint16_t)p;
    return 0;
}

static int valid_name(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return 0;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.')
            return 0;
    return 1;
}

static int valid_dns(const char *s)
{
    size_t n = strlen(s), lab = 0;
    if (n == 0 || n > ACME_MAX_DNS_NAME)
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

static const char *const top_keys[] = {
    "listen", "base_url",    "instance", "threads",  "limits",        "tls",     "certforged",
    "state",  "accounts",    "orders",   "profiles", "validation",    "ari",     "rate_limits",
    "log",    "status_file", "tkauth",   "star",     "trust_anchors", "confine", NULL};

static int load_root(ld *l, const config_setting_t *root)
{
    acme_cfg *c = l->c;
    if (only(l, root, top_keys))
        return -1;
    char *v = NULL;
    const config_setting_t *s, *g;

    if (get_str(l, root, "listen", "127.0.0.1:14000", 0, &v))
        return -1;
    int rc = parse_hostport(l, member(root, "listen"), v, &c->listen_host, &c->listen_port);
    free(v);
    if (rc)
        return -1;
    if (get_str(l, root, "base_url", NULL, 0, &c->base_url))
        return -1;
    if (!c->base_url) {
        size_t n = strlen(c->listen_host) + 32;
        c->base_url = malloc(n);
        if (!c->base_url)
            return fail(l, NULL, "out of memory");
        snprintf(c->base_url, n, strchr(c->listen_host, ':') ? "https://[%s]:%u" : "https://%s:%u",
                 c->listen_host, c->listen_port);
    } else {
        s = member(root, "base_url");
        size_t n = strlen(c->base_url);
        if (strncmp(c->base_url, "https://", 8) != 0 || n <= 8 || n > 200)
            return fail(l, s, "must be an https:// URL of at most 200 characters (RFC 8555 §6.1)");
        if (c->base_url[n - 1] == '/')
            c->base_url[n - 1] = '\0';
        if (strpbrk(c->base_url + 8, "?#/ "))
            return fail(l, s, "only scheme, host and port: no path, query or fragment");
    }
    if (get_path(l, root, "status_file", "acme-status.json", 0, &c->status_file) ||
        get_path(l, root, "trust_anchors", NULL, 0, &c->trust_anchors_file))
        return -1;
    if (get_str(l, root, "instance", "a", 0, &c->instance))
        return -1;
    s = member(root, "instance");
    if (strlen(c->instance) > 8 || !c->instance[0] || strspn(c->instance,
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") != strlen(c->instance))
        return fail(l, s, "1-8 letters or digits (the prefix of this front end's nonces)");
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (get_uint(l, root, "threads", ncpu > 0 && ncpu < 64 ? (unsigned)ncpu : 2, 1, 64, &c->threads))
        return -1;

    /* limits */
    if (group(l, root, "limits", &g) ||
        (g && only(l, g, (const char *const[]){"max_connections", "max_connections_per_address",
                                               "max_body", "max_headers", "request_timeout_s",
                                               NULL})) ||
        get_uint(l, g, "max_connections", 4096, 1, 1000000, &c->max_connections) ||
        get_uint(l, g, "max_connections_per_address",
                 c->max_connections / 4 ? c->max_connections / 4 : 1, 0, 1000000,
                 &c->max_connections_per_address) ||
        get_uint(l, g, "max_body", 65536, 1024, 16 << 20, &c->max_body) ||
        get_uint(l, g, "max_headers", 16384, 1024, 1 << 20, &c->max_headers) ||
        get_uint(l, g, "request_timeout_s", 30, 1, 3600, &c->request_timeout_s))
        return -1;

    /* tls */
    if (group(l, root, "tls", &g))
        return -1;
    if (!g)
        return fail(l, NULL, "missing required setting 'tls' (certificate and key files, or a profile "
                             "for certforged to issue the front end's certificate)");
    if (only(l, g, (const char *const[]){"certificate", "key", "profile", "dns", "state_dir",
                                         "renew_at", NULL}) ||
        get_path(l, g, "certificate", NULL, 0, &c->tls_cert_file) ||
        get_path(l, g, "key", NULL, 0, &c->tls_key_file) ||
        get_str(l, g, "profile", NULL, 0, &c->tls_profile) ||
        get_path(l, g, "state_dir", NULL, 0, &c->tls_state_dir) ||
        get_frac(l, g, "renew_at", 2.0 / 3.0, 0.1, 0.95, &c->tls_renew_fraction))
        return -1;
    if (!!c->tls_cert_file != !!c->tls_key_file)
        return fail(l, g, "'certificate' and 'key' go together");
    if (c->tls_cert_file && c->tls_profile)
        return fail(l, member(g, "profile"),
                    "either certificate and key files, or a profile for certforged to issue, not both");
    if (!c->tls_cert_file && !c->tls_profile)
        return fail(l, g, "set 'certificate' and 'key', or 'profile' (and 'dns') to have certforged "
                          "issue the front end's certificate");
    s = member(g, "dns");
    if (s) {
        if (config_setting_type(s) != CONFIG_TYPE_ARRAY || config_setting_length(s) < 1 ||
            config_setting_length(s) > ACME_CFG_MAX_DNS)
            return fail(l, s, "expected an array of 1-%d DNS names", ACME_CFG_MAX_DNS);
        for (int i = 0; i < config_setting_length(s); i++) {
            config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
            if (config_setting_type(e) != CONFIG_TYPE_STRING || !valid_dns(config_setting_get_string(e)))
                return fail(l, e, "not a DNS name");
            c->tls_dns[c->n_tls_dns] = dupstr(l, config_setting_get_string(e));
            if (!c->tls_dns[c->n_tls_dns++])
                return -1;
        }
    }
    if (c->tls_profile && c->n_tls_dns == 0)
        return fail(l, g, "'profile' needs 'dns': the names the front end's certificate carries");
    if (!c->tls_profile && s)
        return fail(l, s, "'dns' only goes with 'profile'");
    if (c->tls_profile && !c->tls_state_dir)
        return fail(l, g, "'profile' needs 'state_dir': the folder for the front end's key and chain");

    /* certforged */
    if (group(l, root, "certforged", &g) ||
        (g && only(l, g, (const char *const[]){"socket", "connections", "timeout_ms", "requester", NULL})) ||
        get_path(l, g, "socket", "/run/certforge/certforged.sock", 0, &c->engine_socket) ||
        get_uint(l, g, "connections", 2, 1, 64, &c->engine_connections) ||
        get_uint(l, g, "timeout_ms", 10000, 100, 600000, &c->engine_timeout_ms) ||
        get_str(l, g, "requester", "certforge-acme", 0, &c->requester))
        return -1;
    if (strlen(c->engine_socket) > 107)
        return fail(l, member(g, "socket"), "longer than a Unix socket path may be (107 octets)");

    /* state */
    if (group(l, root, "state", &g))
        return -1;
    if (!g)
        return fail(l, NULL, "missing required setting 'state' (e.g. state = { path = \"acme.db\"; })");
    char *backend = NULL;
    if (only(l, g, (const char *const[]){"backend", "path", "conninfo", "pg_timeout_ms", NULL}) ||
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
    if (c->backend == ACME_BACKEND_SQLITE && member(g, "pg_timeout_ms"))
        return fail(l, member(g, "pg_timeout_ms"), "only with backend = \"postgresql\"");
    if (get_uint(l, g, "pg_timeout_ms", ACME_PG_TIMEOUT_MS_DEFAULT, 100, 600000, &c->pg_timeout_ms))
        return -1;

    /* accounts */
    if (group(l, root, "accounts", &g) ||
        (g && only(l, g, (const char *const[]){"eab_required", "terms_of_service", "website",
                                               "contact_required", NULL})) ||
        get_bool(l, g, "eab_required", false, &c->eab_required) ||
        get_str(l, g, "terms_of_service", NULL, 0, &c->terms_of_service) ||
        get_str(l, g, "website", NULL, 0, &c->website) ||
        get_bool(l, g, "contact_required", false, &c->contact_required))
        return -1;

    /* orders */
    if (group(l, root, "orders", &g) ||
        (g && only(l, g, (const char *const[]){"lifetime", "authz_lifetime", "authz_reuse",
                                               "finalize_wait_ms", "max_identifiers",
                                               "default_profile", "prune_interval", NULL})) ||
        get_dur(l, g, "lifetime", 3600, 60, 30 * 86400, &c->order_lifetime_s) ||
        get_dur(l, g, "authz_lifetime", 3600, 60, 30 * 86400, &c->authz_lifetime_s) ||
        get_dur(l, g, "authz_reuse", 0, 0, 90 * 86400, &c->authz_reuse_s) ||
        get_uint(l, g, "finalize_wait_ms", 250, 0, 30000, &c->finalize_wait_ms) ||
        get_uint(l, g, "max_identifiers", 64, 1, 1000, &c->max_identifiers) ||
        get_dur(l, g, "prune_interval", 600, 10, 86400, &c->prune_interval_s))
        return -1;
    if (c->max_identifiers > 64) /* certforged's CF_MAX_FQDNS */
        return fail(l, member(g, "max_identifiers"), "at most 64 (certforged's limit of names per certificate)");

    /* profiles */
    s = member(root, "profiles");
    if (!s)
        return fail(l, NULL, "missing required setting 'profiles' (which certforged profiles ACME "
                             "orders use, e.g. profiles = ( { name = \"default\"; certforged = \"dns\"; } );)");
    if (config_setting_type(s) != CONFIG_TYPE_LIST || config_setting_length(s) < 1 ||
        config_setting_length(s) > ACME_CFG_MAX_PROFILES)
        return fail(l, s, "expected a list ( { ... }, ... ) of 1-%d profiles", ACME_CFG_MAX_PROFILES);
    char *dflt = NULL;
    if (get_str(l, member(root, "orders"), "default_profile", NULL, 0, &dflt))
        return -1;
    int dflt_found = dflt == NULL;
    for (int i = 0; i < config_setting_length(s); i++) {
        config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        acme_cfg_profile *p = &c->profiles[c->n_profiles++];
        if (config_setting_type(e) != CONFIG_TYPE_GROUP) {
            free(dflt);
            return fail(l, e, "expected a group { name = ...; certforged = ...; }");
        }
        if (only(l, e, (const char *const[]){"name", "certforged", "description", "validity",
                                             "max_validity", "identifiers", "nf_types", "switch_to", "switch_at", NULL}) ||
            get_str(l, e, "name", NULL, 1, &p->name) || get_str(l, e, "certforged", NULL, 1, &p->engine) ||
            get_str(l, e, "description", "", 0, &p->description) ||
            get_dur(l, e, "validity", 0, 0, 3 * 365 * 86400, &p->validity_s) ||
            get_dur(l, e, "max_validity", 0, 0, 3 * 365 * 86400, &p->max_validity_s)) {
            free(dflt);
            return -1;
        }
        if (!valid_name(p->name, 64) || !valid_name(p->engine, 64)) {
            free(dflt);
            return fail(l, e, "names are 1-64 characters of A-Z a-z 0-9 . _ -");
        }
        for (unsigned j = 0; j + 1 < c->n_profiles; j++)
            if (strcmp(c->profiles[j].name, p->name) == 0) {
                free(dflt);
                return fail(l, e, "profile '%s' is defined twice", p->name);
            }
        if (p->max_validity_s && p->validity_s > p->max_validity_s) {
            free(dflt);
            return fail(l, e, "validity is longer than max_validity");
        }
        const config_setting_t *ids = member(e, "identifiers");
        if (!ids) {
            p->identifiers[ACME_ID_DNS] = true;
        } else {
            if (config_setting_type(ids) != CONFIG_TYPE_ARRAY || config_setting_length(ids) < 1) {
                free(dflt);
                return fail(l, ids, "expected a non-empty array of \"dns\", \"NfInstanceId\"");
            }
            for (int k = 0; k < config_setting_length(ids); k++) {
                config_setting_t *iv = config_setting_get_elem(ids, (unsigned)k);
                int t = config_setting_type(iv) == CONFIG_TYPE_STRING ? acme_ident_type_from_name(config_setting_get_string(iv)) : -1;
                if (t < 0 || p->identifiers[t]) {
                    free(dflt);
                    return fail(l, iv, t < 0 ? "expected \"dns\" or \"NfInstanceId\"" : "listed twice");
                }
                p->identifiers[t] = true;
            }
        }
        const config_setting_t *nft = member(e, "nf_types");
        if (nft) {
            if (config_setting_type(nft) != CONFIG_TYPE_ARRAY || config_setting_length(nft) < 1 ||
                config_setting_length(nft) > 64) {
                free(dflt);
                return fail(l, nft, "expected an array of 1-64 NF types (RFC 9310), e.g. [\"AMF\", \"SMF\"]");
            }
            for (int k = 0; k < config_setting_length(nft); k++) {
                config_setting_t *nv = config_setting_get_elem(nft, (unsigned)k);
                const char *sv = config_setting_type(nv) == CONFIG_TYPE_STRING ? config_setting_get_string(nv) : NULL;
                bool okv = sv && strlen(sv) >= 1 && strlen(sv) <= 32;
                for (const char *q = sv; okv && *q; q++)
                    okv = *q > 0x20 && *q < 0x7f;
                if (!okv) {
                    free(dflt);
                    return fail(l, nv, "an NF type is 1-32 printable characters without space (RFC 9310)");
                }
                if (!(p->nf_types[p->n_nf_types++] = dupstr(l, sv))) {
                    free(dflt);
                    return -1;
                }
            }
            if (!p->identifiers[ACME_ID_NF_INSTANCE_ID]) {
                free(dflt);
                return fail(l, nft, "nf_types only goes with identifiers that include \"NfInstanceId\"");
            }
        }
        char *sat = NULL;
        if (get_str(l, e, "switch_to", NULL, 0, &p->switch_to) || get_str(l, e, "switch_at", NULL, 0, &sat)) {
            free(dflt);
            return -1;
        }
        if (!!p->switch_to != !!sat) {
            free(sat);
            free(dflt);
            return fail(l, e, "switch_to (a certforged profile) and switch_at (an RFC 3339 time) go together");
        }
        if (sat) {
            int bad = acme_time_parse(sat, &p->switch_at) != 0 || !valid_name(p->switch_to, 64);
            free(sat);
            if (bad) {
                free(dflt);
                return fail(l, member(e, "switch_at"), "switch_at is an RFC 3339 time (\"2027-01-01T00:00:00Z\") and "
                                                        "switch_to a certforged profile name");
            }
        }
        if (dflt && strcmp(dflt, p->name) == 0) {
            c->default_profile = c->n_profiles - 1;
            dflt_found = 1;
        }
    }
    if (!dflt_found) {
        int r = fail(l, member(member(root, "orders"), "default_profile"), "no profile named '%s'", dflt);
        free(dflt);
        return r;
    }
    free(dflt);

    /* validation */
    if (group(l, root, "validation", &g) ||
        (g && only(l, g, (const char *const[]){"threads", "timeout_ms", "queue", "http01_port",
                                               "tlsalpn01_port", "resolver", "challenges", NULL})))
        return -1;
    unsigned p80, p443;
    if (get_uint(l, g, "threads", 16, 1, 1024, &c->validation_threads) ||
        get_uint(l, g, "timeout_ms", 10000, 100, 120000, &c->validation_timeout_ms) ||
        get_uint(l, g, "queue", 10000, 1, 1000000, &c->validation_queue) ||
        get_uint(l, g, "http01_port", 80, 1, 65535, &p80) ||
        get_uint(l, g, "tlsalpn01_port", 443, 1, 65535, &p443))
        return -1;
    c->http01_port = (uint16_t)p80;
    c->tlsalpn01_port = (uint16_t)p443;
    if (get_str(l, g, "resolver", NULL, 0, &v))
        return -1;
    if (v) {
        rc = parse_hostport(l, member(g, "resolver"), v, &c->resolver_host, &c->resolver_port);
        free(v);
        if (rc)
            return -1;
    }
    s = member(g, "challenges");
    if (!s) {
        for (int i = 0; i < ACME_CH__MAX; i++)
            c->challenges[i] = i != ACME_CH_TKAUTH01;
    } else {
        if (config_setting_type(s) != CONFIG_TYPE_ARRAY || config_setting_length(s) < 1)
            return fail(l, s, "expected a non-empty array of \"http-01\", \"dns-01\", \"tls-alpn-01\"");
        for (int i = 0; i < config_setting_length(s); i++) {
            config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
            int t = config_setting_type(e) == CONFIG_TYPE_STRING
                        ? acme_chall_type_from_name(config_setting_get_string(e))
                        : -1;
            if (t < 0 || t == ACME_CH_TKAUTH01)
                return fail(l, e, "expected \"http-01\", \"dns-01\" or \"tls-alpn-01\"");
            if (c->challenges[t])
                return fail(l, e, "listed twice");
            c->challenges[t] = true;
        }
    }

    /* ari */
    if (group(l, root, "ari", &g) ||
        (g && only(l, g, (const char *const[]){"renew_at", "window", "retry_after", NULL})) ||
        get_frac(l, g, "renew_at", 2.0 / 3.0, 0.1, 0.95, &c->ari_renew_fraction) ||
        get_frac(l, g, "window", 0.1, 0.0, 0.5, &c->ari_window_fraction) ||
        get_dur(l, g, "retry_after", 6 * 3600, 60, 7 * 86400, &c->ari_retry_after_s))
        return -1;
    if (c->ari_renew_fraction - c->ari_window_fraction / 2 < 0 ||
        c->ari_renew_fraction + c->ari_window_fraction / 2 > 1)
        return fail(l, g, "the renewal window renew_at ± window/2 must lie within the lifetime");

    /* STAR */
    if (group(l, root, "star", &g) ||
        (g && only(l, g, (const char *const[]){"enabled", "min_lifetime", "max_duration", "renew_ahead",
                                               "allow_certificate_get", "batch", "scan_interval_ms", NULL})) ||
        get_bool(l, g, "enabled", g != NULL, &c->star_enabled) ||
        get_dur(l, g, "min_lifetime", 3600, 60, 365 * 86400, &c->star_min_lifetime_s) ||
        get_dur(l, g, "max_duration", 365 * 86400, 60, 3 * 365 * 86400, &c->star_max_duration_s) ||
        get_dur(l, g, "renew_ahead", 0, 0, 86400, &c->star_renew_ahead_s) ||
        get_bool(l, g, "allow_certificate_get", true, &c->star_allow_get) ||
        get_uint(l, g, "batch", 4096, 1, 100000, &c->star_batch) ||
        get_uint(l, g, "scan_interval_ms", 200, 10, 60000, &c->star_scan_ms))
        return -1;

    /* tkauth-01 */
    if (group(l, root, "tkauth", &g) ||
        (g && only(l, g, (const char *const[]){"trust_anchors", "token_authority", "max_lifetime", "x5u_allow", NULL})) ||
        get_path(l, g, "trust_anchors", NULL, g != NULL, &c->tkauth_anchors) ||
        get_str(l, g, "token_authority", NULL, 0, &c->tkauth_authority) ||
        get_dur(l, g, "max_lifetime", 3600, 60, 7 * 86400, &c->tkauth_max_lifetime_s))
        return -1;
    s = member(g, "x5u_allow");
    if (s) {
        if (config_setting_type(s) != CONFIG_TYPE_ARRAY || config_setting_length(s) > 8)
            return fail(l, s, "expected an array of at most 8 https:// URL prefixes");
        for (int i = 0; i < config_setting_length(s); i++) {
            config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
            const char *xv = config_setting_type(e) == CONFIG_TYPE_STRING ? config_setting_get_string(e) : NULL;
            if (!xv || strncmp(xv, "https://", 8) != 0 || strlen(xv) < 10)
                return fail(l, e, "an x5u prefix is an https:// URL such as \"https://oam.example/tokens/\"");
            if (!(c->tkauth_x5u[c->n_tkauth_x5u++] = dupstr(l, xv)))
                return -1;
        }
    }
    for (unsigned i = 0; i < c->n_profiles; i++)
        if (c->profiles[i].identifiers[ACME_ID_NF_INSTANCE_ID] && !c->tkauth_anchors)
            return fail(l, member(root, "profiles"),
                        "profile '%s' takes NfInstanceId identifiers: set tkauth = { trust_anchors = \"...\"; } "
                        "(the token authority that vouches for them)",
                        c->profiles[i].name);

    /* rate limits */
    if (group(l, root, "rate_limits", &g) ||
        (g && only(l, g, (const char *const[]){"orders_per_account", "orders_per_address", "orders",
                                               "pending_authorizations", "failed_validations",
                                               "accounts_per_address", NULL})) ||
        get_uint(l, g, "orders_per_account", 0, 0, 100000000, &c->rl_orders_per_account) ||
        get_uint(l, g, "orders_per_address", 0, 0, 100000000, &c->rl_orders_per_address) ||
        get_uint(l, g, "orders", 0, 0, 1000000000, &c->rl_orders_global) ||
        get_uint(l, g, "pending_authorizations", 0, 0, 100000000, &c->rl_pending_authz_per_account) ||
        get_uint(l, g, "failed_validations", 0, 0, 100000000, &c->rl_failed_validations_per_account) ||
        get_uint(l, g, "accounts_per_address", 0, 0, 100000000, &c->rl_accounts_per_address))
        return -1;

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
    /* log */
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

static int load(config_t *cf, ld *l, acme_cfg **out)
{
    acme_cfg *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(l->err, l->errlen, "%s: out of memory", l->file);
        return -1;
    }
    l->c = c;
    if (load_root(l, config_root_setting(cf)) != 0) {
        acme_cfg_free(c);
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

int acme_cfg_load(const char *file, acme_cfg **out, char *err, size_t errlen)
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

int acme_cfg_load_string(const char *text, const char *base_dir, acme_cfg **out, char *err,
                         size_t errlen)
{
    *out = NULL;
    ld l = {.err = err, .errlen = errlen, .file = "(string)", .base_dir = base_dir};
    config_t cf;
    config_init(&cf);
    int rc = config_read_string(&cf, text) == CONFIG_TRUE ? load(&cf, &l, out) : parse_error(&cf, &l);
    config_destroy(&cf);
    return rc;
}

void acme_cfg_free(acme_cfg *c)
{
    if (!c)
        return;
    free(c->listen_host);
    free(c->base_url);
    free(c->instance);
    free(c->status_file);
    free(c->confine_user);
    free(c->trust_anchors_file);
    free(c->tls_cert_file);
    free(c->tls_key_file);
    free(c->tls_profile);
    for (unsigned i = 0; i < c->n_tls_dns; i++)
        free(c->tls_dns[i]);
    free(c->tls_state_dir);
    free(c->engine_socket);
    free(c->requester);
    free(c->db_path);
    free(c->conninfo);
    free(c->terms_of_service);
    free(c->website);
    free(c->tkauth_anchors);
    free(c->tkauth_authority);
    for (unsigned i = 0; i < c->n_tkauth_x5u; i++)
        free(c->tkauth_x5u[i]);
    for (unsigned i = 0; i < c->n_profiles; i++) {
        for (unsigned k = 0; k < c->profiles[i].n_nf_types; k++)
            free(c->profiles[i].nf_types[k]);
        free(c->profiles[i].switch_to);
        free(c->profiles[i].name);
        free(c->profiles[i].engine);
        free(c->profiles[i].description);
    }
    free(c->resolver_host);
    free(c);
}

const char *acme_cfg_profile_engine(const acme_cfg_profile *p, int64_t now)
{
    return p->switch_to && now >= p->switch_at ? p->switch_to : p->engine;
}

const acme_cfg_profile *acme_cfg_profile_find(const acme_cfg *c, const char *name)
{
    if (!name)
        return &c->profiles[c->default_profile];
    for (unsigned i = 0; i < c->n_profiles; i++)
        if (strcmp(c->profiles[i].name, name) == 0)
            return &c->profiles[i];
    return NULL;
}
