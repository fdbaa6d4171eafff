/* config.c — load and validate certforged's configuration (config.h,
 * docs/configuration.md). libconfig does the parsing; this file only walks
 * the tree it builds, refusing anything the schema does not name. */
#include "engine/config/config.h"

#include <arpa/inet.h>
#include <sys/socket.h>
#include <ctype.h>
#include <errno.h>
#include <libconfig.h>
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/duration.h"
#include "common/user.h"

/* ------------------------------------------------------------ names */

static const char *const profile_type_names[CFG_PROFILE__MAX] = {"nf", "sepp", "star"};
static const char *const hash_names[CFG_HASH__MAX] = {"sha256", "sha384", "sha512"};
static const char *const key_type_names[CFG_KT__MAX] = {"ec-p256",  "ec-p384",  "rsa-2048",
                                                        "rsa-3072", "rsa-4096", "ed25519"};

const char *cfg_profile_type_name(cfg_profile_type t)
{
    return (unsigned)t < CFG_PROFILE__MAX ? profile_type_names[t] : "?";
}
const char *cfg_hash_name(cfg_hash h)
{
    return (unsigned)h < CFG_HASH__MAX ? hash_names[h] : "?";
}
const char *cfg_key_type_name(cfg_key_type k)
{
    return (unsigned)k < CFG_KT__MAX ? key_type_names[k] : "?";
}

/* ------------------------------------------------------------ loader state */

typedef struct ld {
    char *err;
    size_t errlen;
    const char *file;     /* for messages when libconfig knows no file */
    const char *base_dir; /* relative paths are resolved against it */
} ld;

/* Dotted path of a setting: profiles[1].validity.max */
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

__attribute__((format(printf, 3, 4))) static int fail(ld *l, const config_setting_t *s,
                                                      const char *fmt, ...)
{
    char path[256], msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    spath(s, path, sizeof(path));
    const char *file = config_setting_source_file(s);
    unsigned line = config_setting_source_line(s);
    if (line) /* the root setting has no line */
        snprintf(l->err, l->errlen, "%s:%u: %s: %s", file ? file : l->file, line, path, msg);
    else
        snprintf(l->err, l->errlen, "%s: %s: %s", file ? file : l->file, path, msg);
    return -1;
}

static const char *type_name(int t)
{
    switch (t) {
    case CONFIG_TYPE_GROUP:
        return "a group { ... }";
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
        return "an integer";
    case CONFIG_TYPE_FLOAT:
        return "a float";
    case CONFIG_TYPE_STRING:
        return "a string";
    case CONFIG_TYPE_BOOL:
        return "a boolean";
    case CONFIG_TYPE_ARRAY:
        return "an array [ ... ]";
    case CONFIG_TYPE_LIST:
        return "a list ( ... )";
    default:
        return "an unknown type";
    }
}

static int want_type(ld *l, const config_setting_t *s, int t1, int t2, const char *what)
{
    int t = config_setting_type(s);
    if (t == t1 || t == t2)
        return 0;
    return fail(l, s, "expected %s, got %s", what, type_name(t));
}

/* Every child of group g must be named in allowed[] (NULL-terminated). */
static int only_known(ld *l, const config_setting_t *g, const char *const *allowed,
                      const char *where)
{
    int n = config_setting_length(g);
    for (int i = 0; i < n; i++) {
        const config_setting_t *c = config_setting_get_elem(g, (unsigned)i);
        const char *name = config_setting_name(c);
        bool ok = false;
        for (const char *const *a = allowed; name && *a; a++)
            if (strcmp(*a, name) == 0)
                ok = true;
        if (!ok)
            return fail(l, c, "unknown setting in %s", where);
    }
    return 0;
}

static int missing(ld *l, const config_setting_t *g, const char *name)
{
    return fail(l, g, "missing required setting '%s'", name);
}

/* String member; *out NULL when absent and optional. Empty strings refused. */
static int get_str(ld *l, const config_setting_t *g, const char *name, bool required,
                   const char **out, const config_setting_t **where)
{
    *out = NULL;
    config_setting_t *s = config_setting_get_member(g, name);
    if (where)
        *where = s;
    if (!s)
        return required ? missing(l, g, name) : 0;
    if (want_type(l, s, CONFIG_TYPE_STRING, CONFIG_TYPE_STRING, "a string"))
        return -1;
    const char *v = config_setting_get_string(s);
    if (!v || !v[0])
        return fail(l, s, "must not be empty");
    *out = v;
    return 0;
}

static int get_int(ld *l, const config_setting_t *g, const char *name, long long lo, long long hi,
                   long long dflt, long long *out)
{
    config_setting_t *s = config_setting_get_member(g, name);
    *out = dflt;
    if (!s)
        return 0;
    if (want_type(l, s, CONFIG_TYPE_INT, CONFIG_TYPE_INT64, "an integer"))
        return -1;
    long long v = config_setting_get_int64(s);
    if (v < lo || v > hi)
        return fail(l, s, "%lld is out of range %lld..%lld", v, lo, hi);
    *out = v;
    return 0;
}

static int get_bool(ld *l, const config_setting_t *g, const char *name, bool dflt, bool *out)
{
    config_setting_t *s = config_setting_get_member(g, name);
    *out = dflt;
    if (!s)
        return 0;
    if (want_type(l, s, CONFIG_TYPE_BOOL, CONFIG_TYPE_BOOL, "a boolean (true/false)"))
        return -1;
    *out = config_setting_get_bool(s) != 0;
    return 0;
}

/* List or array of strings; NULL when absent. */
static int get_strlist(ld *l, const config_setting_t *g, const char *name, config_setting_t **out)
{
    config_setting_t *s = config_setting_get_member(g, name);
    *out = s;
    if (!s)
        return 0;
    if (want_type(l, s, CONFIG_TYPE_ARRAY, CONFIG_TYPE_LIST, "an array of strings [\"...\"]"))
        return -1;
    int n = config_setting_length(s);
    if (n == 0)
        return fail(l, s, "must not be empty");
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        if (want_type(l, e, CONFIG_TYPE_STRING, CONFIG_TYPE_STRING, "a string"))
            return -1;
        const char *v = config_setting_get_string(e);
        if (!v || !v[0])
            return fail(l, e, "must not be empty");
    }
    return 0;
}

static char *dup_or_fail(ld *l, const char *s)
{
    char *d = strdup(s);
    if (!d)
        snprintf(l->err, l->errlen, "%s: out of memory", l->file);
    return d;
}

/* ------------------------------------------------------------ value checks */

static bool valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > CFG_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && c != '.' && c != '_' && c != '-')
            return false;
    }
    return true;
}

/* Printable ASCII only (no space): what a URI GeneralName may hold (IA5,
 * RFC 5280 §4.2.1.6) and what we want in a PKCS#11 URI. */
static bool printable_no_space(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7F)
            return false;
    return true;
}

/* RFC 5280 §4.2.1.13 (CRL DP) and §4.2.2.1 (caIssuers): http or ldap
 * URIs. https is refused: fetching it would need the very certificates it
 * is meant to help validate. */
static int check_url(ld *l, const config_setting_t *s, const char *v)
{
    if (strlen(v) > CFG_URL_MAX)
        return fail(l, s, "URL longer than %d characters", CFG_URL_MAX);
    if (!printable_no_space(v))
        return fail(l, s, "URL has a space, control or non-ASCII character");
    if (strncasecmp(v, "https://", 8) == 0)
        return fail(l, s, "'%s': use http:// or ldap://, not https:// (RFC 5280 §4.2.1.13)", v);
    size_t pre = 0;
    if (strncasecmp(v, "http://", 7) == 0)
        pre = 7;
    else if (strncasecmp(v, "ldap://", 7) == 0)
        pre = 7;
    else
        return fail(l, s, "'%s' must start with http:// or ldap:// (RFC 5280 §4.2.1.13)", v);
    if (!v[pre] || v[pre] == '/')
        return fail(l, s, "'%s' names no host", v);
    return 0;
}

/* Well-formed UTF-8 without control characters. */
static bool utf8_text(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p, n, cp;
        if (c < 0x20 || c == 0x7F)
            return false;
        if (c < 0x80) {
            p++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF)
            n = 1, cp = c & 0x1F;
        else if (c >= 0xE0 && c <= 0xEF)
            n = 2, cp = c & 0x0F;
        else if (c >= 0xF0 && c <= 0xF4)
            n = 3, cp = c & 0x07;
        else
            return false;
        for (unsigned i = 1; i <= n; i++) {
            if ((p[i] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i] & 0x3F);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        p += n + 1;
    }
    return true;
}

static int get_dur(ld *l, const config_setting_t *g, const char *name, uint64_t dflt, uint64_t *out,
                   const config_setting_t **where)
{
    const char *v;
    *out = dflt;
    if (get_str(l, g, name, false, &v, where))
        return -1;
    if (!v)
        return 0;
    char why[200];
    if (cf_parse_duration(v, out, why, sizeof(why)))
        return fail(l, *where, "%s", why);
    return 0;
}

/* Relative paths are taken from the config file's folder. */
static char *resolve_path(ld *l, const char *p)
{
    if (p[0] == '/' || !l->base_dir)
        return dup_or_fail(l, p);
    size_t n = strlen(l->base_dir) + strlen(p) + 2;
    char *r = malloc(n);
    if (!r) {
        snprintf(l->err, l->errlen, "%s: out of memory", l->file);
        return NULL;
    }
    snprintf(r, n, "%s/%s", l->base_dir, p);
    return r;
}

/* The list `name` at top level: a non-empty list of groups. */
static int top_list(ld *l, const config_setting_t *root, const char *name, config_setting_t **out,
                    int *n)
{
    config_setting_t *s = config_setting_get_member(root, name);
    *out = s;
    if (!s)
        return missing(l, root, name);
    if (want_type(l, s, CONFIG_TYPE_LIST, CONFIG_TYPE_LIST, "a list ( { ... }, ... )"))
        return -1;
    *n = config_setting_length(s);
    if (*n == 0)
        return fail(l, s, "must have at least one entry");
    if (*n > CFG_MAX_ENTRIES)
        return fail(l, s, "more than %d entries", CFG_MAX_ENTRIES);
    for (int i = 0; i < *n; i++)
        if (want_type(l, config_setting_get_elem(s, (unsigned)i), CONFIG_TYPE_GROUP,
                      CONFIG_TYPE_GROUP, "a group { ... }"))
            return -1;
    return 0;
}

/* Read `name` of entry e, check its syntax and that no earlier entry
 * (names[0..i)) has it. */
static int entry_name(ld *l, const config_setting_t *e, char **names, size_t stride, int i,
                      const char **out)
{
    const config_setting_t *w;
    if (get_str(l, e, "name", true, out, &w))
        return -1;
    if (!valid_name(*out))
        return fail(l, w, "'%s' is not a valid name (1..%d of A-Z a-z 0-9 . _ -)", *out,
                    CFG_NAME_MAX);
    for (int j = 0; j < i; j++) {
        const char *prev = *(char **)((char *)names + (size_t)j * stride);
        if (strcmp(prev, *out) == 0)
            return fail(l, w, "duplicate name '%s'", *out);
    }
    return 0;
}

/* ------------------------------------------------------------ sections */

static int load_pipeline(ld *l, const config_setting_t *root, cfg_pipeline *p)
{
    static const char *const known[] = {"workers",       "queue",         "batch",
                                        "verify_issued", "serial_prefix", NULL};
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (ncpu < 1)
        ncpu = 1;
    if (ncpu > CFG_MAX_WORKERS)
        ncpu = CFG_MAX_WORKERS;
    p->workers = (unsigned)ncpu;
    p->queue = 4096;
    p->batch = 32;
    p->verify = CFG_VERIFY_ALL;
    p->verify_n = 1;
    p->serial_prefix_len = 0;
    config_setting_t *g = config_setting_get_member(root, "pipeline");
    if (!g)
        return 0;
    if (want_type(l, g, CONFIG_TYPE_GROUP, CONFIG_TYPE_GROUP, "a group { ... }"))
        return -1;
    if (only_known(l, g, known, "pipeline"))
        return -1;
    long long v;
    if (get_int(l, g, "workers", 1, CFG_MAX_WORKERS, p->workers, &v))
        return -1;
    p->workers = (unsigned)v;
    if (get_int(l, g, "queue", 1, CFG_MAX_QUEUE, p->queue, &v))
        return -1;
    p->queue = (unsigned)v;
    /* the default batch never exceeds a small queue; an explicit one must not */
    if (get_int(l, g, "batch", 1, CFG_MAX_BATCH, p->batch < p->queue ? p->batch : p->queue, &v))
        return -1;
    p->batch = (unsigned)v;
    const config_setting_t *wb = config_setting_get_member(g, "batch");
    if (p->batch > p->queue && wb)
        return fail(l, wb, "batch %u exceeds queue %u", p->batch, p->queue);

    const char *vi;
    const config_setting_t *w;
    if (get_str(l, g, "verify_issued", false, &vi, &w))
        return -1;
    if (vi) {
        unsigned n = 0;
        char tail;
        if (strcmp(vi, "all") == 0) {
            p->verify = CFG_VERIFY_ALL;
        } else if (strcmp(vi, "off") == 0) {
            p->verify = CFG_VERIFY_OFF;
            p->verify_n = 0;
        } else if (strncmp(vi, "1-in-", 5) == 0 && isdigit((unsigned char)vi[5]) &&
                   sscanf(vi + 5, "%u%c", &n, &tail) == 1 && n >= 2 && n <= 65536 &&
                   strlen(vi + 5) <= 5) {
            p->verify = CFG_VERIFY_SAMPLE;
            p->verify_n = n;
        } else {
            return fail(l, w, "'%s': expected \"all\", \"off\" or \"1-in-N\" with N in 2..65536",
                        vi);
        }
    }

    config_setting_t *sp = config_setting_get_member(g, "serial_prefix");
    if (sp) {
        int t = config_setting_type(sp);
        if (t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64) {
            long long x = config_setting_get_int64(sp);
            if (x < 1 || x > 0x7FFFFFFF)
                return fail(l, sp, "%lld is out of range 0x01..0x7FFFFFFF", x);
            uint8_t b[4] = {(uint8_t)(x >> 24), (uint8_t)(x >> 16), (uint8_t)(x >> 8), (uint8_t)x};
            size_t skip = 0;
            while (b[skip] == 0)
                skip++;
            if (b[skip] & 0x80) /* keep the serial positive: 0x80 becomes 0x0080 */
                skip--;
            p->serial_prefix_len = 4 - skip;
            memcpy(p->serial_prefix, b + skip, p->serial_prefix_len);
        } else if (t == CONFIG_TYPE_STRING) {
            /* "0102": explicit octets, for prefixes whose width matters */
            const char *hx = config_setting_get_string(sp);
            size_t n = strlen(hx);
            if (n == 0 || n % 2 || n / 2 > CFG_SERIAL_PREFIX_MAX)
                return fail(l, sp, "'%s': expected 2, 4, 6 or 8 hex digits", hx);
            for (size_t i = 0; i < n / 2; i++) {
                unsigned o;
                if (!isxdigit((unsigned char)hx[2 * i]) ||
                    !isxdigit((unsigned char)hx[2 * i + 1]) || sscanf(hx + 2 * i, "%2x", &o) != 1)
                    return fail(l, sp, "'%s': expected hex digits", hx);
                p->serial_prefix[i] = (uint8_t)o;
            }
            /* The first octet must be 0x01..0x7F: a positive INTEGER whose
             * minimal encoding keeps every prefix octet (RFC 5280 §4.1.2.2). */
            if (p->serial_prefix[0] == 0 || p->serial_prefix[0] & 0x80)
                return fail(l, sp, "'%s': the first octet must be 01..7f", hx);
            p->serial_prefix_len = n / 2;
        } else {
            return fail(l, sp, "expected an integer or a hex string, got %s", type_name(t));
        }
    }
    return 0;
}

static int load_log(ld *l, const config_setting_t *root, cfg_log *lg)
{
    static const char *const known[] = {"level", NULL};
    lg->level = CF_LOG_INFO;
    config_setting_t *g = config_setting_get_member(root, "log");
    if (!g)
        return 0;
    if (want_type(l, g, CONFIG_TYPE_GROUP, CONFIG_TYPE_GROUP, "a group { ... }") ||
        only_known(l, g, known, "log"))
        return -1;
    const char *v;
    const config_setting_t *w;
    if (get_str(l, g, "level", false, &v, &w))
        return -1;
    if (!v)
        return 0;
    for (int i = 0; i < CF_LOG__MAX; i++)
        if (strcmp(v, cf_log_level_name((cf_log_level)i)) == 0) {
            lg->level = (cf_log_level)i;
            return 0;
        }
    if (strcmp(v, "warn") == 0) {
        lg->level = CF_LOG_WARNING;
        return 0;
    }
    return fail(l, w, "'%s': expected error, warning, info or debug", v);
}

static int load_tokens(ld *l, const config_setting_t *root, cfg_config *c)
{
    static const char *const known[] = {"name", "uri", NULL};
    config_setting_t *list;
    int n;
    if (top_list(l, root, "tokens", &list, &n))
        return -1;
    if (!(c->tokens = calloc((size_t)n, sizeof(*c->tokens))))
        return fail(l, list, "out of memory");
    for (int i = 0; i < n; i++) {
        config_setting_t *e = config_setting_get_elem(list, (unsigned)i);
        cfg_token *t = &c->tokens[i];
        const char *name, *uri;
        const config_setting_t *w;
        if (only_known(l, e, known, "a token") ||
            entry_name(l, e, &c->tokens[0].name, sizeof(*t), i, &name) ||
            get_str(l, e, "uri", true, &uri, &w))
            return -1;
        if (strncmp(uri, "pkcs11:", 7) != 0 || !printable_no_space(uri))
            return fail(l, w, "'%s' is not a PKCS#11 URI (RFC 7512: pkcs11:token=...)", uri);
        if (strstr(uri, "pin-value"))
            return fail(l, w, "PINs never go in the config: use pin-source=file:... or env:...");
        t->line = config_setting_source_line(e);
        if (!(t->name = dup_or_fail(l, name)) || !(t->uri = dup_or_fail(l, uri)))
            return -1;
        c->n_tokens++;
    }
    return 0;
}

static int load_keys(ld *l, const config_setting_t *root, cfg_config *c)
{
    static const char *const known[] = {"name", "token", "uri", "sessions", "sign_threads", NULL};
    config_setting_t *list;
    int n;
    if (top_list(l, root, "keys", &list, &n))
        return -1;
    if (!(c->keys = calloc((size_t)n, sizeof(*c->keys))))
        return fail(l, list, "out of memory");
    for (int i = 0; i < n; i++) {
        config_setting_t *e = config_setting_get_elem(list, (unsigned)i);
        cfg_key *k = &c->keys[i];
        const char *name, *tok, *uri;
        const config_setting_t *wt, *wu;
        long long sess, sthr;
        if (only_known(l, e, known, "a key") ||
            entry_name(l, e, &c->keys[0].name, sizeof(*k), i, &name) ||
            get_str(l, e, "token", true, &tok, &wt) || get_str(l, e, "uri", true, &uri, &wu) ||
            get_int(l, e, "sessions", 1, CFG_MAX_SESSIONS, c->pipeline.workers, &sess) ||
            get_int(l, e, "sign_threads", 0, CFG_MAX_SESSIONS, 0, &sthr))
            return -1;
        size_t ti;
        for (ti = 0; ti < c->n_tokens; ti++)
            if (strcmp(c->tokens[ti].name, tok) == 0)
                break;
        if (ti == c->n_tokens)
            return fail(l, wt, "no token named '%s'", tok);
        if (strncmp(uri, "pkcs11:", 7) != 0 || !printable_no_space(uri))
            return fail(l, wu, "'%s' is not a PKCS#11 URI (RFC 7512: pkcs11:object=...)", uri);
        if (!strstr(uri, "object=") && !strstr(uri, "id="))
            return fail(l, wu, "'%s' selects no key: give object= or id= (RFC 7512)", uri);
        if (strstr(uri, "pin-value"))
            return fail(l, wu, "PINs never go in the config: use pin-source=file:... or env:...");
        k->token_idx = ti;
        k->sessions = (unsigned)sess;
        k->sign_threads = (unsigned)sthr;
        k->line = config_setting_source_line(e);
        if (!(k->name = dup_or_fail(l, name)) || !(k->token = dup_or_fail(l, tok)) ||
            !(k->uri = dup_or_fail(l, uri)))
            return -1;
        c->n_keys++;
    }
    return 0;
}

static int load_issuers(ld *l, const config_setting_t *root, cfg_config *c)
{
    static const char *const known[] = {"name", "key", "certificate", "chain", "crl_shards", NULL};
    config_setting_t *list;
    int n;
    if (top_list(l, root, "issuers", &list, &n))
        return -1;
    if (!(c->issuers = calloc((size_t)n, sizeof(*c->issuers))))
        return fail(l, list, "out of memory");
    for (int i = 0; i < n; i++) {
        config_setting_t *e = config_setting_get_elem(list, (unsigned)i);
        cfg_issuer *is = &c->issuers[i];
        const char *name, *key, *cert, *chain;
        const config_setting_t *wk;
        if (only_known(l, e, known, "an issuer") ||
            entry_name(l, e, &c->issuers[0].name, sizeof(*is), i, &name) ||
            get_str(l, e, "key", true, &key, &wk) ||
            get_str(l, e, "certificate", true, &cert, NULL) ||
            get_str(l, e, "chain", false, &chain, NULL))
            return -1;
        long long shards;
        if (get_int(l, e, "crl_shards", 1, CFG_CRL_SHARDS_MAX, 1, &shards))
            return -1;
        is->crl_shards = (unsigned)shards;
        size_t ki;
        for (ki = 0; ki < c->n_keys; ki++)
            if (strcmp(c->keys[ki].name, key) == 0)
                break;
        if (ki == c->n_keys)
            return fail(l, wk, "no key named '%s'", key);
        is->key_idx = ki;
        is->line = config_setting_source_line(e);
        if (!(is->name = dup_or_fail(l, name)) || !(is->key = dup_or_fail(l, key)) ||
            !(is->certificate = resolve_path(l, cert)) ||
            (chain && !(is->chain = resolve_path(l, chain))))
            return -1;
        c->n_issuers++;
    }
    return 0;
}

/* RFC 9310: NFType ::= IA5String (SIZE (1..32)); we also refuse spaces
 * and control characters, which no 3GPP NF type name has (TS 29.510). */
static bool valid_nftype(const char *s)
{
    size_t n = strlen(s);
    return n >= 1 && n <= CFG_NFTYPE_MAX && printable_no_space(s);
}

static int load_subject(ld *l, const config_setting_t *e, cfg_profile *p)
{
    static const char *const known[] = {"C", "O", NULL};
    config_setting_t *g = config_setting_get_member(e, "subject");
    if (!g)
        return missing(l, e, "subject");
    if (want_type(l, g, CONFIG_TYPE_GROUP, CONFIG_TYPE_GROUP, "a group { C = ...; O = ...; }") ||
        only_known(l, g, known, "subject (TS 33.310 §6.1.3c: C and O)"))
        return -1;
    const char *cc, *o;
    const config_setting_t *wc, *wo;
    if (get_str(l, g, "C", true, &cc, &wc) || get_str(l, g, "O", true, &o, &wo))
        return -1;
    if (strlen(cc) != 2 || !isupper((unsigned char)cc[0]) || !isupper((unsigned char)cc[1]))
        return fail(l, wc, "'%s': country must be two upper-case letters (ISO 3166-1 alpha-2)", cc);
    /* X.520 ub-organization-name: 64 */
    if (strlen(o) > 64 || !utf8_text(o))
        return fail(l, wo, "organization must be 1..64 bytes of UTF-8 without control characters");
    memcpy(p->subject_c, cc, 3);
    if (!(p->subject_o = dup_or_fail(l, o)))
        return -1;
    return 0;
}

/* A profile's crl_dp against its issuer's crl_shards (docs/crl.md): with
 * one shard no "{shard}"; with more, "{shard}" exactly once, and the same
 * template in every profile of the issuer (each shard's CRL names one URL
 * in its issuingDistributionPoint). */
static int crl_dp_shards(ld *l, const config_setting_t *w, cfg_issuer *is, cfg_profile *p)
{
    static const char ph[] = "{shard}";
    p->crl_shards = is->crl_shards;
    if (!p->crl_dp)
        return 0; /* star: noRevAvail, no CRL */
    const char *at = strstr(p->crl_dp, ph);
    if (is->crl_shards == 1) {
        if (at)
            return fail(l, w,
                        "'%s' holds {shard}, but issuer '%s' has one CRL (set crl_shards in "
                        "the issuer, or remove {shard})",
                        p->crl_dp, is->name);
        return 0;
    }
    if (!at)
        return fail(l, w,
                    "issuer '%s' has crl_shards = %u: crl_dp must hold {shard} (the shard's "
                    "number), e.g. \"http://crl.example/%s/{shard}.crl\"",
                    is->name, is->crl_shards, is->name);
    if (strstr(at + 1, ph))
        return fail(l, w, "'%s' holds {shard} more than once", p->crl_dp);
    if (is->crl_dp && strcmp(is->crl_dp, p->crl_dp) != 0)
        return fail(l, w,
                    "'%s' differs from '%s' of another profile of issuer '%s': with "
                    "crl_shards, every profile of an issuer has the same crl_dp",
                    p->crl_dp, is->crl_dp, is->name);
    if (!is->crl_dp && !(is->crl_dp = dup_or_fail(l, p->crl_dp)))
        return -1;
    return 0;
}

static int load_profile(ld *l, config_setting_t *e, cfg_config *c, int i)
{
    /* Settings allowed in every profile, then per type. */
    static const char *const common[] = {"name",
                                         "type",
                                         "issuer",
                                         "subject",
                                         "validity",
                                         "backdate",
                                         "hash",
                                         "eku",
                                         "aia_ca_issuers",
                                         "key_types",
                                         "require_nf_instance_id",
                                         "require_fqdn",
                                         NULL};
    static const char *const by_type[CFG_PROFILE__MAX][4] = {
        [CFG_PROFILE_NF] = {"crl_dp", "nf_types", "require_nf_types", NULL},
        [CFG_PROFILE_SEPP] = {"crl_dp", "nf_types", NULL},
        [CFG_PROFILE_STAR] = {"nf_types", "require_nf_types", NULL},
    };
    cfg_profile *p = &c->profiles[i];
    const char *name, *type, *iss;
    const config_setting_t *wt, *wi, *w;
    if (entry_name(l, e, &c->profiles[0].name, sizeof(*p), i, &name) ||
        get_str(l, e, "type", true, &type, &wt))
        return -1;
    int ti;
    for (ti = 0; ti < CFG_PROFILE__MAX; ti++)
        if (strcmp(type, profile_type_names[ti]) == 0)
            break;
    if (ti == CFG_PROFILE__MAX)
        return fail(l, wt, "'%s': expected \"nf\", \"sepp\" or \"star\"", type);
    p->type = (cfg_profile_type)ti;
    p->line = config_setting_source_line(e);

    int n = config_setting_length(e);
    for (int k = 0; k < n; k++) {
        const config_setting_t *s = config_setting_get_elem(e, (unsigned)k);
        const char *sn = config_setting_name(s);
        bool ok = false;
        for (const char *const *a = common; !ok && *a; a++)
            ok = strcmp(*a, sn) == 0;
        for (const char *const *a = by_type[ti]; !ok && *a; a++)
            ok = strcmp(*a, sn) == 0;
        if (ok)
            continue;
        if (p->type == CFG_PROFILE_STAR && strcmp(sn, "crl_dp") == 0)
            return fail(l, s,
                        "a star profile carries noRevAvail (RFC 9608) instead of a CRL "
                        "distribution point: remove crl_dp");
        if (p->type == CFG_PROFILE_SEPP && strcmp(sn, "require_nf_types") == 0)
            return fail(l, s, "a sepp profile always carries NFTypes \"SEPP\" (RFC 9310)");
        for (int t2 = 0; t2 < CFG_PROFILE__MAX; t2++)
            for (const char *const *a = by_type[t2]; *a; a++)
                if (strcmp(*a, sn) == 0)
                    return fail(l, s, "not allowed in a %s profile", type);
        return fail(l, s, "unknown setting in a profile");
    }

    if (!(p->name = dup_or_fail(l, name)))
        return -1;
    if (get_str(l, e, "issuer", true, &iss, &wi))
        return -1;
    size_t ii;
    for (ii = 0; ii < c->n_issuers; ii++)
        if (strcmp(c->issuers[ii].name, iss) == 0)
            break;
    if (ii == c->n_issuers)
        return fail(l, wi, "no issuer named '%s'", iss);
    p->issuer_idx = ii;
    if (!(p->issuer = dup_or_fail(l, iss)) || !(p->issuer_key = dup_or_fail(l, c->issuers[ii].key)))
        return -1;

    if (load_subject(l, e, p))
        return -1;

    /* Validity: defaults per type; limits TS 33.310 §6.1.3c (nf, sepp) and
     * CFG_STAR_VALIDITY_MAX (star). */
    uint64_t vdef = p->type == CFG_PROFILE_STAR ? 86400 : 90ull * 86400;
    uint64_t vmax = p->type == CFG_PROFILE_STAR ? 7ull * 86400 : 365ull * 86400;
    uint64_t limit = p->type == CFG_PROFILE_STAR ? CFG_STAR_VALIDITY_MAX : CFG_NF_VALIDITY_MAX;
    const config_setting_t *wv = config_setting_get_member(e, "validity"), *wd = NULL, *wm = NULL;
    if (wv) {
        static const char *const vknown[] = {"default", "max", NULL};
        if (want_type(l, wv, CONFIG_TYPE_GROUP, CONFIG_TYPE_GROUP,
                      "a group { default = \"90d\"; max = \"365d\"; }") ||
            only_known(l, wv, vknown, "validity") || get_dur(l, wv, "max", vmax, &vmax, &wm) ||
            get_dur(l, wv, "default", vdef, &vdef, &wd))
            return -1;
        if (!wd && vdef > vmax)
            vdef = vmax;
    }
    uint64_t back;
    const config_setting_t *wb = NULL;
    if (get_dur(l, e, "backdate", 60, &back, &wb))
        return -1;
    if (back > CFG_BACKDATE_MAX)
        return fail(l, wb, "backdate is at most 1h");
    const config_setting_t *wvm = wm ? wm : (wv ? wv : e);
    if (vmax < 60)
        return fail(l, wvm, "validity max must be at least 60s");
    if (vmax + back > limit)
        return fail(l, wvm, "validity max plus backdate is %llus, over the %s limit of %llus (%s)",
                    (unsigned long long)(vmax + back), type, (unsigned long long)limit,
                    p->type == CFG_PROFILE_STAR ? "short-lived, RFC 8739/RFC 9608: 7d"
                                                : "TS 33.310 §6.1.3c: 3 years");
    if (vdef < 60)
        return fail(l, wd ? wd : wvm, "validity default must be at least 60s");
    if (vdef > vmax)
        return fail(l, wd ? wd : wvm, "validity default exceeds validity max");
    p->validity_default = (uint32_t)vdef;
    p->validity_max = (uint32_t)vmax;
    p->backdate = (uint32_t)back;

    const char *h;
    p->hash = CFG_HASH_SHA256;
    if (get_str(l, e, "hash", false, &h, &w))
        return -1;
    if (h) {
        int hi;
        for (hi = 0; hi < CFG_HASH__MAX; hi++)
            if (strcmp(h, hash_names[hi]) == 0)
                break;
        if (hi == CFG_HASH__MAX) {
            if (strcasecmp(h, "sha1") == 0 || strcasecmp(h, "md5") == 0)
                return fail(l, w, "'%s' is forbidden (TS 33.310 §6.1.1: no MD5 or SHA-1)", h);
            return fail(l, w, "'%s': expected sha256, sha384 or sha512", h);
        }
        p->hash = (cfg_hash)hi;
    }

    config_setting_t *lst;
    if (get_strlist(l, e, "eku", &lst))
        return -1;
    if (!lst)
        return missing(l, e, "eku");
    for (int k = 0; k < config_setting_length(lst); k++) {
        const config_setting_t *x = config_setting_get_elem(lst, (unsigned)k);
        const char *v = config_setting_get_string(x);
        unsigned bit = strcmp(v, "serverAuth") == 0   ? CFG_EKU_SERVER_AUTH
                       : strcmp(v, "clientAuth") == 0 ? CFG_EKU_CLIENT_AUTH
                                                      : 0;
        if (!bit)
            return fail(l, x, "'%s': expected serverAuth or clientAuth (TS 33.310 §6.1.3c)", v);
        if (p->eku & bit)
            return fail(l, x, "'%s' listed twice", v);
        p->eku |= bit;
    }

    if (get_strlist(l, e, "key_types", &lst))
        return -1;
    p->key_types = lst ? 0 : CFG_KT_ALL;
    for (int k = 0; lst && k < config_setting_length(lst); k++) {
        const config_setting_t *x = config_setting_get_elem(lst, (unsigned)k);
        const char *v = config_setting_get_string(x);
        int kt;
        for (kt = 0; kt < CFG_KT__MAX; kt++)
            if (strcmp(v, key_type_names[kt]) == 0)
                break;
        if (kt == CFG_KT__MAX)
            return fail(l, x,
                        "'%s': expected ec-p256, ec-p384, rsa-2048, rsa-3072, rsa-4096 or "
                        "ed25519",
                        v);
        if (p->key_types & (1u << kt))
            return fail(l, x, "'%s' listed twice", v);
        p->key_types |= 1u << kt;
    }

    const char *u;
    if (get_str(l, e, "crl_dp", p->type != CFG_PROFILE_STAR, &u, &w))
        return -1;
    if (u && (check_url(l, w, u) || !(p->crl_dp = dup_or_fail(l, u))))
        return -1;
    if (crl_dp_shards(l, w, &c->issuers[p->issuer_idx], p))
        return -1;
    if (get_str(l, e, "aia_ca_issuers", false, &u, &w))
        return -1;
    if (u && (check_url(l, w, u) || !(p->aia_ca_issuers = dup_or_fail(l, u))))
        return -1;

    if (get_bool(l, e, "require_nf_instance_id", p->type == CFG_PROFILE_NF,
                 &p->require_nf_instance_id) ||
        get_bool(l, e, "require_nf_types", p->type == CFG_PROFILE_NF, &p->require_nf_types) ||
        get_bool(l, e, "require_fqdn", p->type == CFG_PROFILE_SEPP, &p->require_fqdn))
        return -1;
    if (p->type == CFG_PROFILE_SEPP)
        p->require_nf_types = false; /* the profile supplies "SEPP" itself */

    if (get_strlist(l, e, "nf_types", &lst))
        return -1;
    if (lst) {
        int m = config_setting_length(lst);
        if (m > CFG_MAX_NF_TYPES)
            return fail(l, lst, "more than %d NF types", CFG_MAX_NF_TYPES);
        if (!(p->nf_types = calloc((size_t)m, sizeof(char *))))
            return fail(l, lst, "out of memory");
        for (int k = 0; k < m; k++) {
            const config_setting_t *x = config_setting_get_elem(lst, (unsigned)k);
            const char *v = config_setting_get_string(x);
            if (!valid_nftype(v))
                return fail(l, x, "'%s' is not an NFType (RFC 9310: 1..32 IA5 characters)", v);
            if (p->type == CFG_PROFILE_SEPP && strcmp(v, "SEPP") != 0)
                return fail(l, x, "a sepp profile issues NFTypes \"SEPP\" only");
            for (size_t j = 0; j < p->n_nf_types; j++)
                if (strcmp(p->nf_types[j], v) == 0)
                    return fail(l, x, "'%s' listed twice", v);
            if (!(p->nf_types[p->n_nf_types] = dup_or_fail(l, v)))
                return -1;
            p->n_nf_types++;
        }
    }
    return 0;
}

static int load_profiles(ld *l, const config_setting_t *root, cfg_config *c)
{
    config_setting_t *list;
    int n;
    if (top_list(l, root, "profiles", &list, &n))
        return -1;
    if (!(c->profiles = calloc((size_t)n, sizeof(*c->profiles))))
        return fail(l, list, "out of memory");
    for (int i = 0; i < n; i++) {
        /* n_profiles counts entries to free, including a half-loaded one */
        c->n_profiles++;
        if (load_profile(l, config_setting_get_elem(list, (unsigned)i), c, i))
            return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ server, grants */

static int get_ms(ld *l, const config_setting_t *g, const char *name, long long lo, long long hi,
                  unsigned dflt, unsigned *out)
{
    long long v;
    if (get_int(l, g, name, lo, hi, dflt, &v))
        return -1;
    *out = (unsigned)v;
    return 0;
}

static int load_server(ld *l, const config_setting_t *root, cfg_server *sv)
{
    static const char *const known[] = {"socket",
                                        "socket_mode",
                                        "max_frame",
                                        "max_inflight",
                                        "max_connections",
                                        "busy_deadline_ms",
                                        "idle_timeout_ms",
                                        "drain_timeout_ms",
                                        "io_threads",
                                        "peer_max_connections",
                                        "peer_reserve",
                                        "peer_max_inflight",
                                        NULL};
    const char *sock = "/run/certforge/certforged.sock";
    sv->socket_mode = 0660;
    sv->max_frame = 65536;
    sv->max_inflight = 256;
    sv->max_connections = 1024;
    sv->busy_deadline_ms = 50;
    sv->idle_timeout_ms = 30000;
    sv->drain_timeout_ms = 10000;
    sv->io_threads = 1;
    config_setting_t *g = config_setting_get_member(root, "server");
    const config_setting_t *ws = NULL, *wm = NULL;
    if (g) {
        if (want_type(l, g, CONFIG_TYPE_GROUP, CONFIG_TYPE_GROUP, "a group { ... }") ||
            only_known(l, g, known, "server"))
            return -1;
        sv->line = config_setting_source_line(g);
        const char *v;
        if (get_str(l, g, "socket", false, &v, &ws))
            return -1;
        if (v)
            sock = v;
        wm = config_setting_get_member(g, "socket_mode");
        if (wm) {
            if (config_setting_type(wm) != CONFIG_TYPE_STRING)
                return fail(l, wm, "expected the mode as an octal string such as \"0660\", got %s",
                            type_name(config_setting_type(wm)));
            const char *m = config_setting_get_string(wm);
            size_t n = strlen(m);
            unsigned mode = 0;
            if (n < 3 || n > 4 || strspn(m, "01234567") != n)
                return fail(l, wm, "'%s': expected 3 or 4 octal digits such as \"0660\"", m);
            for (size_t i = 0; i < n; i++)
                mode = mode * 8 + (unsigned)(m[i] - '0');
            if (mode > 0777)
                return fail(l, wm, "'%s': only permission bits (at most 0777)", m);
            if (mode & 0002)
                return fail(l, wm,
                            "'%s' makes the socket world-writable: any local user could "
                            "connect; grant access with the group bits instead",
                            m);
            if ((mode & 0600) != 0600)
                return fail(l, wm, "'%s': the owner needs read and write (0600)", m);
            sv->socket_mode = mode;
        }
        if (get_ms(l, g, "max_frame", CFG_MAX_FRAME_MIN, CFG_MAX_FRAME_MAX, sv->max_frame,
                   &sv->max_frame) ||
            get_ms(l, g, "max_inflight", 1, CFG_MAX_INFLIGHT, sv->max_inflight,
                   &sv->max_inflight) ||
            get_ms(l, g, "max_connections", 1, CFG_MAX_CONNECTIONS, sv->max_connections,
                   &sv->max_connections) ||
            get_ms(l, g, "busy_deadline_ms", 0, 60000, sv->busy_deadline_ms,
                   &sv->busy_deadline_ms) ||
            get_ms(l, g, "idle_timeout_ms", 100, 86400000, sv->idle_timeout_ms,
                   &sv->idle_timeout_ms) ||
            get_ms(l, g, "drain_timeout_ms", 100, 600000, sv->drain_timeout_ms,
                   &sv->drain_timeout_ms) ||
            get_ms(l, g, "io_threads", 1, CFG_MAX_IO_THREADS, sv->io_threads, &sv->io_threads))
            return -1;
        sv->peer_max_connections = sv->max_connections;
        sv->peer_reserve = sv->max_connections / 32 > 4 ? sv->max_connections / 32 : 4;
        if (get_ms(l, g, "peer_max_connections", 1, sv->max_connections, sv->peer_max_connections,
                   &sv->peer_max_connections) ||
            get_ms(l, g, "peer_reserve", 0, CFG_MAX_CONNECTIONS, sv->peer_reserve,
                   &sv->peer_reserve) ||
            get_ms(l, g, "peer_max_inflight", 0, CFG_MAX_INFLIGHT * 64u, sv->peer_max_inflight,
                   &sv->peer_max_inflight))
            return -1;
    } else {
        sv->peer_max_connections = sv->max_connections;
        sv->peer_reserve = 32;
    }
    if (!(sv->socket = resolve_path(l, sock)))
        return -1;
    if (strlen(sv->socket) > CFG_SOCKET_PATH_MAX) {
        if (ws)
            return fail(l, ws, "'%s' is longer than %d octets (the limit of a Unix socket path)",
                        sv->socket, CFG_SOCKET_PATH_MAX);
        snprintf(l->err, l->errlen, "%s: server.socket: '%s' is longer than %d octets", l->file,
                 sv->socket, CFG_SOCKET_PATH_MAX);
        return -1;
    }
    return 0;
}

static int get_id(ld *l, const config_setting_t *g, const char *name, bool *has, uint32_t *out)
{
    long long v;
    *has = config_setting_get_member(g, name) != NULL;
    if (get_int(l, g, name, 0, 4294967294LL, 0, &v)) /* (uid_t)-1 means "no change" */
        return -1;
    *out = (uint32_t)v;
    return 0;
}

static int load_grant(ld *l, const config_setting_t *e, cfg_config *c, cfg_grant *gr)
{
    static const char *const known[] = {"uid", "gid", "profiles", "ops", "keys", NULL};
    static const char *const op_names[] = {"issue", "status", "keys", "sign", "revoke", "crl"};
    if (only_known(l, e, known, "a grant"))
        return -1;
    gr->line = config_setting_source_line(e);
    if (get_id(l, e, "uid", &gr->has_uid, &gr->uid) || get_id(l, e, "gid", &gr->has_gid, &gr->gid))
        return -1;
    if (gr->has_uid && gr->has_gid)
        return fail(l, config_setting_get_member(e, "gid"),
                    "a grant matches one uid or one gid, not both: write two grants");
    if (!gr->has_uid && !gr->has_gid)
        return fail(l, e, "missing required setting 'uid' or 'gid'");

    config_setting_t *lst;
    if (get_strlist(l, e, "ops", &lst))
        return -1;
    if (!lst)
        return missing(l, e, "ops");
    for (int k = 0; k < config_setting_length(lst); k++) {
        const config_setting_t *x = config_setting_get_elem(lst, (unsigned)k);
        const char *v = config_setting_get_string(x);
        unsigned bit = 0;
        for (unsigned o = 0; o < 6; o++)
            if (strcmp(v, op_names[o]) == 0)
                bit = 1u << o;
        if (!bit)
            return fail(l, x, "'%s': expected issue, status, keys, sign, revoke or crl", v);
        if (gr->ops & bit)
            return fail(l, x, "'%s' listed twice", v);
        gr->ops |= bit;
    }

    /* sign: the keys, by name, each explicitly (raw signing is powerful) */
    if (get_strlist(l, e, "keys", &lst))
        return -1;
    if (!lst && (gr->ops & CFG_GRANT_SIGN))
        return fail(l, e, "'sign' needs a keys list (names of keys entries; there is no \"*\")");
    if (lst && !(gr->ops & CFG_GRANT_SIGN))
        return fail(l, lst, "keys are only used by the 'sign' operation, which is not in ops");
    if (lst) {
        int m = config_setting_length(lst);
        if (!(gr->key_idx = calloc((size_t)m, sizeof(size_t))))
            return fail(l, lst, "out of memory");
        for (int k = 0; k < m; k++) {
            const config_setting_t *x = config_setting_get_elem(lst, (unsigned)k);
            const char *v = config_setting_get_string(x);
            size_t ki;
            for (ki = 0; ki < c->n_keys; ki++)
                if (strcmp(c->keys[ki].name, v) == 0)
                    break;
            if (ki == c->n_keys)
                return fail(l, x, strcmp(v, "*") == 0
                                      ? "'%s': sign is granted key by key, name each one"
                                      : "no key named '%s'",
                            v);
            for (size_t j = 0; j < gr->n_keys; j++)
                if (gr->key_idx[j] == ki)
                    return fail(l, x, "'%s' listed twice", v);
            gr->key_idx[gr->n_keys++] = ki;
        }
    }

    if (get_strlist(l, e, "profiles", &lst))
        return -1;
    if (!lst && (gr->ops & CFG_GRANT_ISSUE))
        return fail(l, e, "'issue' needs a profiles list (names, or [\"*\"] for all)");
    if (lst && !(gr->ops & CFG_GRANT_ISSUE))
        return fail(l, lst, "profiles are only used by the 'issue' operation, which is not in ops");
    if (!lst)
        return 0;
    int m = config_setting_length(lst);
    if (!(gr->profile_idx = calloc((size_t)m, sizeof(size_t))))
        return fail(l, lst, "out of memory");
    for (int k = 0; k < m; k++) {
        const config_setting_t *x = config_setting_get_elem(lst, (unsigned)k);
        const char *v = config_setting_get_string(x);
        if (strcmp(v, "*") == 0) {
            if (m != 1)
                return fail(l, x, "\"*\" (all profiles) must be the only entry");
            gr->all_profiles = true;
            return 0;
        }
        size_t pi;
        for (pi = 0; pi < c->n_profiles; pi++)
            if (strcmp(c->profiles[pi].name, v) == 0)
                break;
        if (pi == c->n_profiles)
            return fail(l, x, "no profile named '%s'", v);
        for (size_t j = 0; j < gr->n_profiles; j++)
            if (gr->profile_idx[j] == pi)
                return fail(l, x, "'%s' listed twice", v);
        gr->profile_idx[gr->n_profiles++] = pi;
    }
    return 0;
}

static int load_grants(ld *l, const config_setting_t *root, cfg_config *c)
{
    config_setting_t *list = config_setting_get_member(root, "grants");
    if (!list)
        return 0;
    if (want_type(l, list, CONFIG_TYPE_LIST, CONFIG_TYPE_LIST, "a list ( { ... }, ... )"))
        return -1;
    int n = config_setting_length(list);
    if (n > CFG_MAX_GRANTS)
        return fail(l, list, "more than %d entries", CFG_MAX_GRANTS);
    if (n == 0)
        return 0;
    if (!(c->grants = calloc((size_t)n, sizeof(*c->grants))))
        return fail(l, list, "out of memory");
    for (int i = 0; i < n; i++) {
        config_setting_t *e = config_setting_get_elem(list, (unsigned)i);
        if (want_type(l, e, CONFIG_TYPE_GROUP, CONFIG_TYPE_GROUP, "a group { ... }"))
            return -1;
        c->n_grants++; /* counts entries to free, including a half-loaded one */
        if (load_grant(l, e, c, &c->grants[i]))
            return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ ledger */

static const char *const ledger_backend_names[CFG_LEDGER__MAX] = {"sqlite", "postgresql"};

const char *cfg_ledger_backend_name(cfg_ledger_backend b)
{
    return (unsigned)b < CFG_LEDGER__MAX ? ledger_backend_names[b] : "?";
}

/* ledger.conninfo: a libpq conninfo ("host=/run/postgresql dbname=x") or
 * URI ("postgresql:///x?host=/run/postgresql"), parsed by libpq itself so
 * what is accepted here is exactly what libpq will read. Secrets stay out
 * of the config (it is world-readable in many set-ups and gets pasted into
 * tickets): a password or an SSL key passphrase is refused. */
static int check_conninfo(ld *l, const config_setting_t *w, const char *v)
{
    char *e = NULL;
    PQconninfoOption *o = PQconninfoParse(v, &e);
    if (!o) {
        char m[256];
        snprintf(m, sizeof(m), "%s", e ? e : "out of memory");
        for (char *p = m; *p; p++)
            if (*p == '\n')
                *p = ' ';
        size_t n = strlen(m);
        while (n && m[n - 1] == ' ')
            m[--n] = 0;
        PQfreemem(e);
        return fail(l, w, "not a libpq conninfo: %s", m);
    }
    int rc = 0;
    for (PQconninfoOption *p = o; p->keyword && rc == 0; p++)
        if ((strcmp(p->keyword, "password") == 0 || strcmp(p->keyword, "sslpassword") == 0) &&
            p->val)
            rc = fail(l, w,
                      "holds a %s: keep it out of the config; use a password file (PGPASSFILE, "
                      "~/.pgpass, or passfile=PATH here) or peer authentication on a Unix socket "
                      "(docs/ledger.md)",
                      p->keyword);
    PQconninfoFree(o);
    return rc;
}

static int load_ledger(ld *l, const config_setting_t *root, cfg_ledger *lg)
{
    static const char *const known[] = {"backend",         "path",          "conninfo",
                                        "busy_timeout_ms", "pg_timeout_ms", NULL};
    lg->backend = CFG_LEDGER_SQLITE;
    lg->busy_timeout_ms = 1000;
    lg->pg_timeout_ms = 5000;
    config_setting_t *g = config_setting_get_member(root, "ledger");
    if (!g)
        return 0;
    if (want_type(l, g, CONFIG_TYPE_GROUP, CONFIG_TYPE_GROUP, "a group { ... }") ||
        only_known(l, g, known, "ledger"))
        return -1;
    lg->line = config_setting_source_line(g);
    const char *v;
    const config_setting_t *w;
    if (get_str(l, g, "backend", true, &v, &w))
        return -1;
    if (strcmp(v, "postgresql") == 0)
        lg->backend = CFG_LEDGER_POSTGRESQL;
    else if (strcmp(v, "sqlite") != 0)
        return fail(l, w, "'%s': expected \"sqlite\" or \"postgresql\"", v);
    if (get_ms(l, g, "busy_timeout_ms", 1, 60000, lg->busy_timeout_ms, &lg->busy_timeout_ms))
        return -1;
    /* each backend takes its own setting and refuses the other's */
    const char *mine = lg->backend == CFG_LEDGER_SQLITE ? "path" : "conninfo";
    const char *other = lg->backend == CFG_LEDGER_SQLITE ? "conninfo" : "path";
    if ((w = config_setting_get_member(g, other)) != NULL)
        return fail(l, w, "is for backend \"%s\", not \"%s\"; this backend takes '%s'",
                    lg->backend == CFG_LEDGER_SQLITE ? "postgresql" : "sqlite",
                    cfg_ledger_backend_name(lg->backend), mine);
    if (lg->backend == CFG_LEDGER_SQLITE &&
        (w = config_setting_get_member(g, "pg_timeout_ms")) != NULL)
        return fail(l, w, "is for backend \"postgresql\", not \"sqlite\"");
    if (get_str(l, g, mine, true, &v, &w))
        return -1;
    if (strlen(v) > 4000)
        return fail(l, w, "longer than 4000 characters");
    if (lg->backend == CFG_LEDGER_POSTGRESQL) {
        if (check_conninfo(l, w, v))
            return -1;
        /* The client-side bound on every exchange with the server (a
         * server that hangs must not stall the recorder forever): longer
         * than lock_timeout, so a lock wait ends with the server's own
         * error and the connection survives. */
        const config_setting_t *wt = config_setting_get_member(g, "pg_timeout_ms");
        if (get_ms(l, g, "pg_timeout_ms", 100, 600000, lg->pg_timeout_ms, &lg->pg_timeout_ms))
            return -1;
        if (wt && lg->pg_timeout_ms <= lg->busy_timeout_ms)
            return fail(l, wt,
                        "%u must be longer than busy_timeout_ms (%u): a lock wait would be "
                        "taken for a server that does not answer",
                        lg->pg_timeout_ms, lg->busy_timeout_ms);
        return (lg->conninfo = dup_or_fail(l, v)) ? 0 : -1;
    }
    if (strcmp(v, ":memory:") == 0 || strncmp(v, "file:", 5) == 0)
        return fail(l, w, "'%s': a file path is required (the ledger must be durable)", v);
    return (lg->path = resolve_path(l, v)) ? 0 : -1;
}

/* ------------------------------------------------------------ crl */

static int load_crl(ld *l, const config_setting_t *root, cfg_crl *cr)
{
    static const char *const known[] = {"dir", "interval", "validity", "revoke_delay", NULL};
    cr->interval_s = 3600;
    cr->validity_s = 86400;
    cr->revoke_delay_s = 10;
    config_setting_t *g = config_setting_get_member(root, "crl");
    if (!g)
        return 0;
    if (want_type(l, g, CONFIG_TYPE_GROUP, CONFIG_TYPE_GROUP, "a group { ... }") ||
        only_known(l, g, known, "crl"))
        return -1;
    cr->line = config_setting_source_line(g);
    const char *v;
    const config_setting_t *w, *wi = NULL, *wv = NULL, *wr = NULL;
    if (get_str(l, g, "dir", true, &v, &w))
        return -1;
    if (strlen(v) > 4000)
        return fail(l, w, "longer than 4000 characters");
    if (get_dur(l, g, "interval", cr->interval_s, &cr->interval_s, &wi) ||
        get_dur(l, g, "validity", cr->validity_s, &cr->validity_s, &wv) ||
        get_dur(l, g, "revoke_delay", cr->revoke_delay_s, &cr->revoke_delay_s, &wr))
        return -1;
    if (cr->interval_s < 60)
        return fail(l, wi, "at least 60s (revocations trigger their own CRL: revoke_delay)");
    if (cr->validity_s <= cr->interval_s)
        return fail(l, wv ? wv : g,
                    "validity (nextUpdate - thisUpdate) must be longer than interval, or "
                    "relying parties see an expired CRL before the next one");
    if (cr->revoke_delay_s > cr->interval_s)
        return fail(l, wr, "longer than interval: the scheduled CRL comes first anyway");
    return (cr->dir = resolve_path(l, v)) ? 0 : -1;
}

/* ------------------------------------------------------------ confine */

static int load_confine(ld *l, const config_setting_t *root, cfg_confine *cf)
{
    static const char *const known[] = {"enabled", "require_landlock", "writable", "user", NULL};
    cf->enabled = true;
    config_setting_t *g = config_setting_get_member(root, "confine");
    if (!g)
        return 0;
    if (want_type(l, g, CONFIG_TYPE_GROUP, CONFIG_TYPE_GROUP, "a group { ... }") ||
        only_known(l, g, known, "confine"))
        return -1;
    cf->line = config_setting_source_line(g);
    if (get_bool(l, g, "enabled", true, &cf->enabled) ||
        get_bool(l, g, "require_landlock", false, &cf->require_landlock))
        return -1;
    config_setting_t *u = config_setting_get_member(g, "user");
    if (u) {
        if (config_setting_type(u) != CONFIG_TYPE_STRING)
            return fail(l, u, "must be a user name (a string)");
        const char *name = config_setting_get_string(u);
        /* checked here so --check-config and a refused start name it; the
         * switch itself happens after start-up (engine/confine) */
        char why[200];
        if (cf_user_check(name, why, sizeof(why)) != 0)
            return fail(l, u, "%s", why);
        if (!(cf->user = strdup(name)))
            return fail(l, u, "out of memory");
    }
    config_setting_t *lst;
    if (get_strlist(l, g, "writable", &lst))
        return -1;
    if (!lst)
        return 0;
    int n = config_setting_length(lst);
    if (n > CFG_MAX_WRITABLE)
        return fail(l, lst, "more than %d folders", CFG_MAX_WRITABLE);
    if (!(cf->writable = calloc((size_t)n, sizeof(char *))))
        return fail(l, lst, "out of memory");
    for (int k = 0; k < n; k++) {
        const config_setting_t *x = config_setting_get_elem(lst, (unsigned)k);
        const char *v = config_setting_get_string(x);
        if (strlen(v) > 4000)
            return fail(l, x, "longer than 4000 characters");
        if (strcmp(v, "/") == 0)
            return fail(l, x, "\"/\" would leave everything writable: name the folders");
        if (!(cf->writable[cf->n_writable] = resolve_path(l, v)))
            return -1;
        cf->n_writable++;
    }
    return 0;
}

/* ------------------------------------------------------------ metrics */

/* listen = "127.0.0.1:9464" or "[::1]:9464": numeric, loopback only. The
 * endpoint has no authentication and no TLS; anything beyond the host
 * must come through a local agent or proxy (docs/security.md). */
static int load_metrics(ld *l, const config_setting_t *root, cfg_metrics *m)
{
    static const char *const known[] = {"listen", NULL};
    config_setting_t *g = config_setting_get_member(root, "metrics");
    if (!g)
        return 0;
    if (want_type(l, g, CONFIG_TYPE_GROUP, CONFIG_TYPE_GROUP, "a group { ... }") ||
        only_known(l, g, known, "metrics"))
        return -1;
    const char *v;
    const config_setting_t *w;
    if (get_str(l, g, "listen", true, &v, &w))
        return -1;
    char host[CFG_METRICS_HOST_MAX];
    const char *colon;
    size_t hl;
    if (v[0] == '[') {
        const char *rb = strchr(v, ']');
        if (!rb || rb[1] != ':')
            return fail(l, w, "'%s': expected [IPv6]:PORT, e.g. \"[::1]:9464\"", v);
        hl = (size_t)(rb - v - 1);
        colon = rb + 1;
        if (hl >= sizeof(host))
            return fail(l, w, "'%s': not an IPv6 address", v);
        memcpy(host, v + 1, hl);
    } else {
        colon = strrchr(v, ':');
        if (!colon)
            return fail(l, w, "'%s': expected ADDRESS:PORT, e.g. \"127.0.0.1:9464\"", v);
        hl = (size_t)(colon - v);
        if (hl >= sizeof(host))
            return fail(l, w, "'%s': not an IPv4 address", v);
        memcpy(host, v, hl);
    }
    host[hl] = 0;
    char *end = NULL;
    errno = 0;
    unsigned long port = 0;
    bool digits = colon[1] >= '0' && colon[1] <= '9';
    if (digits)
        port = strtoul(colon + 1, &end, 10);
    if (!digits || errno || *end || port > 65535)
        return fail(l, w, "'%s': the port must be a number from 0 to 65535 (0: any free port)", v);
    unsigned char a[16];
    bool loop;
    if (v[0] == '[') {
        if (inet_pton(AF_INET6, host, a) != 1)
            return fail(l, w, "'%s': '%s' is not a numeric IPv6 address", v, host);
        static const unsigned char lo6[16] = {[15] = 1};
        loop = memcmp(a, lo6, 16) == 0;
        m->family = AF_INET6;
    } else {
        if (inet_pton(AF_INET, host, a) != 1)
            return fail(l, w,
                        "'%s': '%s' is not a numeric IPv4 address (write 127.0.0.1, not a "
                        "host name)",
                        v, host);
        loop = a[0] == 127;
        m->family = AF_INET;
    }
    if (!loop)
        return fail(l, w,
                    "'%s': not a loopback address: the metrics endpoint has no authentication "
                    "and listens on 127.0.0.0/8 or [::1] only (scrape it through a local agent "
                    "or proxy)",
                    v);
    snprintf(m->host, sizeof(m->host), "%s", host);
    m->port = (unsigned)port;
    m->line = config_setting_source_line(w);
    return 0;
}

/* Sections of the file. */
/* A sharded issuer needs a crl_dp template (from its nf/sepp profiles):
 * each shard's CRL names its URL in its issuingDistributionPoint. */
static int check_shards(ld *l, const config_setting_t *root, const cfg_config *c)
{
    const config_setting_t *list = config_setting_get_member(root, "issuers");
    for (size_t i = 0; list && i < c->n_issuers; i++) {
        const cfg_issuer *is = &c->issuers[i];
        if (is->crl_shards > 1 && !is->crl_dp)
            return fail(l,
                        config_setting_get_member(
                            config_setting_get_elem(list, (unsigned)i), "crl_shards"),
                        "issuer '%s' has no nf or sepp profile with a crl_dp: its %u CRL shards "
                        "would name no URL (remove crl_shards)",
                        is->name, is->crl_shards);
        /* shard K is published as NAME-K.crl: no other issuer may be named so */
        size_t nl = strlen(is->name);
        for (size_t j = 0; is->crl_shards > 1 && j < c->n_issuers; j++) {
            const char *o = c->issuers[j].name;
            if (j == i || strncmp(o, is->name, nl) != 0 || o[nl] != '-' || !o[nl + 1] ||
                strspn(o + nl + 1, "0123456789") != strlen(o + nl + 1))
                continue;
            return fail(l, config_setting_get_elem(list, (unsigned)j),
                        "issuer name '%s' is a CRL file name of sharded issuer '%s' (%s-K.crl): "
                        "rename one of them",
                        o, is->name, is->name);
        }
    }
    return 0;
}

static int load_root(ld *l, config_t *cf, cfg_config *c)
{
    static const char *const known[] = {"tokens",  "keys",    "issuers", "profiles", "pipeline",
                                        "log",     "server",  "grants",  "ledger",   "crl",
                                        "confine", "metrics", NULL};
    const config_setting_t *root = config_root_setting(cf);
    if (only_known(l, root, known, "the top level"))
        return -1;
    /* pipeline first: keys default their sessions to the worker count;
     * grants last: they name profiles */
    if (load_pipeline(l, root, &c->pipeline) || load_log(l, root, &c->log) ||
        load_server(l, root, &c->server) || load_tokens(l, root, c) || load_keys(l, root, c) ||
        load_issuers(l, root, c) || load_profiles(l, root, c) || check_shards(l, root, c) ||
        load_grants(l, root, c) ||
        load_ledger(l, root, &c->ledger) || load_crl(l, root, &c->crl) ||
        load_confine(l, root, &c->confine) || load_metrics(l, root, &c->metrics))
        return -1;
    return 0;
}

void cfg_free(cfg_config *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n_tokens; i++) {
        free(c->tokens[i].name);
        free(c->tokens[i].uri);
    }
    for (size_t i = 0; i < c->n_keys; i++) {
        free(c->keys[i].name);
        free(c->keys[i].token);
        free(c->keys[i].uri);
    }
    for (size_t i = 0; i < c->n_issuers; i++) {
        free(c->issuers[i].name);
        free(c->issuers[i].key);
        free(c->issuers[i].certificate);
        free(c->issuers[i].chain);
        free(c->issuers[i].crl_dp);
    }
    for (size_t i = 0; i < c->n_profiles; i++) {
        cfg_profile *p = &c->profiles[i];
        free(p->name);
        free(p->issuer);
        free(p->issuer_key);
        free(p->subject_o);
        free(p->crl_dp);
        free(p->aia_ca_issuers);
        for (size_t j = 0; j < p->n_nf_types; j++)
            free(p->nf_types[j]);
        free(p->nf_types);
    }
    for (size_t i = 0; i < c->n_grants; i++) {
        free(c->grants[i].profile_idx);
        free(c->grants[i].key_idx);
    }
    free(c->crl.dir);
    for (size_t i = 0; i < c->confine.n_writable; i++)
        free(c->confine.writable[i]);
    free(c->confine.writable);
    free(c->confine.user);
    free(c->grants);
    free(c->server.socket);
    free(c->ledger.path);
    free(c->ledger.conninfo);
    free(c->tokens);
    free(c->keys);
    free(c->issuers);
    free(c->profiles);
    free(c->path);
    free(c);
}

/* Shared by both entry points: `text` NULL means read `name` as a file. */
static int load(const char *text, const char *name, const char *base_dir, cfg_config **out,
                char *err, size_t errlen)
{
    config_t cf;
    cfg_config *c = NULL;
    ld l = {.err = err, .errlen = errlen, .file = name, .base_dir = base_dir};
    int rc = -1;
    config_init(&cf);
    config_set_options(&cf, 0); /* no autoconversion: types are checked */
    if (base_dir)
        config_set_include_dir(&cf, base_dir);
    int ok = text ? config_read_string(&cf, text) : config_read_file(&cf, name);
    if (ok != CONFIG_TRUE) {
        if (config_error_type(&cf) == CONFIG_ERR_FILE_IO)
            snprintf(err, errlen, "%s: cannot read: %s", name, strerror(errno));
        else
            snprintf(err, errlen, "%s:%d: %s",
                     config_error_file(&cf) ? config_error_file(&cf) : name, config_error_line(&cf),
                     config_error_text(&cf));
        goto out;
    }
    if (!(c = calloc(1, sizeof(*c))) || !(c->path = strdup(name))) {
        snprintf(err, errlen, "%s: out of memory", name);
        goto out;
    }
    if (load_root(&l, &cf, c))
        goto out;
    *out = c;
    c = NULL;
    rc = 0;
out:
    cfg_free(c);
    config_destroy(&cf);
    return rc;
}

int cfg_load(const char *path, cfg_config **out, char *err, size_t errlen)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == path)
        snprintf(dir, sizeof(dir), "/");
    else
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
    return load(NULL, path, dir, out, err, errlen);
}

int cfg_load_string(const char *text, const char *name, const char *base_dir, cfg_config **out,
                    char *err, size_t errlen)
{
    /* libconfig honours @include at the start of a line; a string has no
     * folder to include from, and the fuzzer must not open files. */
    for (const char *p = text; p; p = strchr(p, '\n')) {
        if (*p == '\n')
            p++;
        while (*p == ' ' || *p == '\t')
            p++;
        if (strncmp(p, "@include", 8) == 0) {
            int line = 1;
            for (const char *q = text; q < p; q++)
                line += *q == '\n';
            snprintf(err, errlen, "%s:%d: @include is not allowed here", name, line);
            return -1;
        }
    }
    return load(text, name, base_dir, out, err, errlen);
}

const cfg_profile *cfg_find_profile(const cfg_config *c, const char *name, size_t len)
{
    for (size_t i = 0; i < c->n_profiles; i++)
        if (strlen(c->profiles[i].name) == len && memcmp(c->profiles[i].name, name, len) == 0)
            return &c->profiles[i];
    return NULL;
}

const cfg_issuer *cfg_find_issuer(const cfg_config *c, const char *name)
{
    for (size_t i = 0; i < c->n_issuers; i++)
        if (strcmp(c->issuers[i].name, name) == 0)
            return &c->issuers[i];
    return NULL;
}

const cfg_key *cfg_find_key(const cfg_config *c, const char *name)
{
    for (size_t i = 0; i < c->n_keys; i++)
        if (strcmp(c->keys[i].name, name) == 0)
            return &c->keys[i];
    return NULL;
}

/* ------------------------------------------------------------ reload */

static bool str_eq(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* One restart-only setting that differs: "FILE:LINE: NAME changed: restart
 * needed" (LINE: the setting's section in the new file, when known). */
static int restart_needed(const cfg_config *n, int line, const char *what, char *err, size_t errlen)
{
    if (line > 0)
        snprintf(err, errlen, "%s:%d: %s changed: restart needed", n->path, line, what);
    else
        snprintf(err, errlen, "%s: %s changed: restart needed", n->path, what);
    return -1;
}

static bool tokens_equal(const cfg_config *o, const cfg_config *n)
{
    if (o->n_tokens != n->n_tokens)
        return false;
    for (size_t i = 0; i < o->n_tokens; i++)
        if (!str_eq(o->tokens[i].name, n->tokens[i].name) ||
            !str_eq(o->tokens[i].uri, n->tokens[i].uri))
            return false;
    return true;
}

static bool keys_equal(const cfg_config *o, const cfg_config *n)
{
    if (o->n_keys != n->n_keys)
        return false;
    for (size_t i = 0; i < o->n_keys; i++) {
        const cfg_key *a = &o->keys[i], *b = &n->keys[i];
        if (!str_eq(a->name, b->name) || a->token_idx != b->token_idx || !str_eq(a->uri, b->uri) ||
            a->sessions != b->sessions || a->sign_threads != b->sign_threads)
            return false;
    }
    return true;
}

int cfg_restart_diff(const cfg_config *o, const cfg_config *n, char *err, size_t errlen)
{
    const cfg_server *a = &o->server, *b = &n->server;
    int sl = b->line;
    /* the socket and every limit the pools are sized from at start-up */
    if (!str_eq(a->socket, b->socket))
        return restart_needed(n, sl, "server.socket", err, errlen);
    static const struct {
        const char *name;
        size_t off;
    } sv[] = {
        {"server.socket_mode", offsetof(cfg_server, socket_mode)},
        {"server.max_frame", offsetof(cfg_server, max_frame)},
        {"server.max_inflight", offsetof(cfg_server, max_inflight)},
        {"server.max_connections", offsetof(cfg_server, max_connections)},
        {"server.busy_deadline_ms", offsetof(cfg_server, busy_deadline_ms)},
        {"server.idle_timeout_ms", offsetof(cfg_server, idle_timeout_ms)},
        {"server.drain_timeout_ms", offsetof(cfg_server, drain_timeout_ms)},
        {"server.io_threads", offsetof(cfg_server, io_threads)},
        {"server.peer_max_connections", offsetof(cfg_server, peer_max_connections)},
        {"server.peer_reserve", offsetof(cfg_server, peer_reserve)},
        {"server.peer_max_inflight", offsetof(cfg_server, peer_max_inflight)},
    };
    for (size_t i = 0; i < sizeof(sv) / sizeof(sv[0]); i++)
        if (*(const unsigned *)(const void *)((const char *)a + sv[i].off) !=
            *(const unsigned *)(const void *)((const char *)b + sv[i].off))
            return restart_needed(n, sl, sv[i].name, err, errlen);
    const cfg_pipeline *p = &o->pipeline, *q = &n->pipeline;
    if (p->workers != q->workers)
        return restart_needed(n, 0, "pipeline.workers", err, errlen);
    if (p->queue != q->queue)
        return restart_needed(n, 0, "pipeline.queue", err, errlen);
    if (p->batch != q->batch)
        return restart_needed(n, 0, "pipeline.batch", err, errlen);
    if (p->verify != q->verify || p->verify_n != q->verify_n)
        return restart_needed(n, 0, "pipeline.verify", err, errlen);
    if (p->serial_prefix_len != q->serial_prefix_len ||
        memcmp(p->serial_prefix, q->serial_prefix, p->serial_prefix_len) != 0)
        return restart_needed(n, 0, "pipeline.serial_prefix", err, errlen);
    /* the signer process opened these at start-up */
    if (!tokens_equal(o, n))
        return restart_needed(n, n->n_tokens ? n->tokens[0].line : 0, "tokens", err, errlen);
    if (!keys_equal(o, n))
        return restart_needed(n, n->n_keys ? n->keys[0].line : 0, "keys", err, errlen);
    /* a certificate's CRL shard is its serial modulo crl_shards: another
     * count re-maps every certificate issued (docs/crl.md). The rest of an
     * issuer (certificate, chain, crl_dp, which of the keys above) is
     * reloaded: the engine reads the issuers again (iss_reopen). */
    for (size_t i = 0; i < n->n_issuers; i++) {
        const cfg_issuer *b2 = &n->issuers[i], *a2 = cfg_find_issuer(o, b2->name);
        if (a2 && a2->crl_shards != b2->crl_shards) {
            char what[160];
            snprintf(what, sizeof(what), "issuer '%.64s' crl_shards (%u -> %u)", b2->name,
                     a2->crl_shards, b2->crl_shards);
            return restart_needed(n, b2->line, what, err, errlen);
        }
        /* a sharded CRL's issuingDistributionPoint must stay the URL the
         * certificates already issued carry */
        if (a2 && !str_eq(a2->crl_dp, b2->crl_dp)) {
            char what[160];
            snprintf(what, sizeof(what), "issuer '%.64s' crl_dp", b2->name);
            return restart_needed(n, b2->line, what, err, errlen);
        }
    }
    const cfg_ledger *l = &o->ledger, *m = &n->ledger;
    if ((l->line == 0) != (m->line == 0) || l->backend != m->backend || !str_eq(l->path, m->path) ||
        !str_eq(l->conninfo, m->conninfo) || l->busy_timeout_ms != m->busy_timeout_ms ||
        l->pg_timeout_ms != m->pg_timeout_ms)
        return restart_needed(n, m->line, "ledger", err, errlen);
    /* the metrics socket is bound before confinement, once */
    const cfg_metrics *ma = &o->metrics, *mb = &n->metrics;
    if ((ma->line == 0) != (mb->line == 0) || strcmp(ma->host, mb->host) != 0 ||
        ma->port != mb->port)
        return restart_needed(n, mb->line, "metrics.listen", err, errlen);
    /* CRLs on or off, and their folder (left writable by confinement) */
    if ((o->crl.line == 0) != (n->crl.line == 0))
        return restart_needed(n, n->crl.line, "crl (section added or removed)", err, errlen);
    if (o->crl.line && !str_eq(o->crl.dir, n->crl.dir))
        return restart_needed(n, n->crl.line, "crl.dir", err, errlen);
    const cfg_confine *c = &o->confine, *d = &n->confine;
    bool same = c->enabled == d->enabled && c->require_landlock == d->require_landlock &&
                str_eq(c->user, d->user) && c->n_writable == d->n_writable;
    for (size_t i = 0; same && i < c->n_writable; i++)
        same = str_eq(c->writable[i], d->writable[i]);
    if (!same)
        return restart_needed(n, d->line, "confine", err, errlen);
    return 0;
}
