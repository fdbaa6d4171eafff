/* acmemsg.c — ACME answers (acmemsg.h). */
#include "agent/acmemsg.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acme/acme.h"

#define MAX_BODY (1 << 20)

static json_t *load(const char *body, size_t len, char *why, size_t whylen)
{
    if (len > MAX_BODY) {
        snprintf(why, whylen, "answer of %zu octets", len);
        return NULL;
    }
    json_error_t je;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!j || !json_is_object(j)) {
        snprintf(why, whylen, "not a JSON object%s%s", j ? "" : ": ", j ? "" : je.text);
        json_decref(j);
        return NULL;
    }
    return j;
}

/* A string member into out (cap); absent: "" when !req. Too long, wrong
 * type, control characters: -1. */
static int str(const json_t *o, const char *name, char *out, size_t cap, int req, char *why, size_t whylen)
{
    const json_t *v = json_object_get(o, name);
    out[0] = '\0';
    if (!v) {
        if (req)
            snprintf(why, whylen, "no \"%s\"", name);
        return req ? -1 : 0;
    }
    const char *s = json_string_value(v);
    if (!s || strlen(s) >= cap) {
        snprintf(why, whylen, "\"%s\" is not a string of at most %zu characters", name, cap - 1);
        return -1;
    }
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            snprintf(why, whylen, "\"%s\" holds control characters", name);
            return -1;
        }
    memcpy(out, s, strlen(s) + 1);
    return 0;
}

static int url(const json_t *o, const char *name, char *out, int req, char *why, size_t whylen)
{
    if (str(o, name, out, AM_URL, req, why, whylen))
        return -1;
    if (out[0] && (strncmp(out, "https://", 8) != 0 || strpbrk(out, " \"<>\\"))) {
        snprintf(why, whylen, "\"%s\" is not an https:// URL", name);
        return -1;
    }
    return 0;
}

static int status(const json_t *o, int *out, char *why, size_t whylen)
{
    const char *s = json_string_value(json_object_get(o, "status"));
    *out = s ? acme_status_from_name(s) : -1;
    if (*out < 0) {
        snprintf(why, whylen, "no known \"status\"");
        return -1;
    }
    return 0;
}

static void error_of(const json_t *o, char *type, size_t tl, char *detail, size_t dl)
{
    const json_t *e = json_object_get(o, "error");
    type[0] = detail[0] = '\0';
    if (!json_is_object(e))
        return;
    const char *t = json_string_value(json_object_get(e, "type"));
    const char *d = json_string_value(json_object_get(e, "detail"));
    const char *pre = "urn:ietf:params:acme:error:";
    if (t)
        snprintf(type, tl, "%s", strncmp(t, pre, strlen(pre)) == 0 ? t + strlen(pre) : t);
    if (d)
        snprintf(detail, dl, "%s", d);
    for (char *p = detail; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == '"')
            *p = ' ';
    for (char *p = type; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == '"')
            *p = '_';
}

int am_directory_parse(const char *body, size_t len, am_directory *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof(*out));
    json_t *j = load(body, len, why, whylen);
    if (!j)
        return -1;
    int rc = url(j, "newNonce", out->new_nonce, 1, why, whylen) || url(j, "newAccount", out->new_account, 1, why, whylen) ||
             url(j, "newOrder", out->new_order, 1, why, whylen) ||
             url(j, "renewalInfo", out->renewal_info, 0, why, whylen)
                 ? -1
                 : 0;
    const json_t *meta = json_object_get(j, "meta");
    out->has_profiles = json_is_object(json_object_get(meta, "profiles"));
    const json_t *ar = json_object_get(meta, "auto-renewal");
    if (rc == 0 && ar) {
        const json_t *ml = json_object_get(ar, "min-lifetime"), *md = json_object_get(ar, "max-duration");
        if (!json_is_object(ar) || (ml && (!json_is_integer(ml) || json_integer_value(ml) < 0)) ||
            (md && (!json_is_integer(md) || json_integer_value(md) < 0))) {
            snprintf(why, whylen, "\"meta.auto-renewal\" is not {\"min-lifetime\", \"max-duration\": seconds}");
            rc = -1;
        } else {
            out->has_star = 1;
            out->star_min_lifetime = ml ? (int64_t)json_integer_value(ml) : 0;
            out->star_max_duration = md ? (int64_t)json_integer_value(md) : 0;
        }
    }
    json_decref(j);
    return rc;
}

int am_order_parse(const char *body, size_t len, am_order *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof(*out));
    json_t *j = load(body, len, why, whylen);
    if (!j)
        return -1;
    int rc = -1;
    if (status(j, &out->status, why, whylen) || url(j, "finalize", out->finalize, 1, why, whylen) ||
        url(j, "certificate", out->certificate, 0, why, whylen) ||
        url(j, "star-certificate", out->star_certificate, 0, why, whylen))
        goto out;
    const json_t *az = json_object_get(j, "authorizations");
    if (!json_is_array(az) || json_array_size(az) == 0 || json_array_size(az) > AM_MAX_AUTHZ) {
        snprintf(why, whylen, "\"authorizations\" is not an array of 1-%d URLs", AM_MAX_AUTHZ);
        goto out;
    }
    for (size_t i = 0; i < json_array_size(az); i++) {
        const char *u = json_string_value(json_array_get(az, i));
        if (!u || strlen(u) >= AM_URL || strncmp(u, "https://", 8) != 0) {
            snprintf(why, whylen, "authorizations[%zu] is not an https:// URL", i);
            goto out;
        }
        memcpy(out->authz[out->n_authz++], u, strlen(u) + 1);
    }
    error_of(j, out->error_type, sizeof(out->error_type), out->error_detail, sizeof(out->error_detail));
    rc = 0;
out:
    json_decref(j);
    return rc;
}

int am_authz_parse(const char *body, size_t len, am_authz *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof(*out));
    json_t *j = load(body, len, why, whylen);
    if (!j)
        return -1;
    int rc = -1;
    const json_t *id = json_object_get(j, "identifier");
    if (status(j, &out->status, why, whylen) || !json_is_object(id) ||
        str(id, "type", out->id_type, sizeof(out->id_type), 1, why, whylen) ||
        str(id, "value", out->id_value, sizeof(out->id_value), 1, why, whylen))
        goto out;
    out->wildcard = json_is_true(json_object_get(j, "wildcard"));
    const json_t *chs = json_object_get(j, "challenges");
    if (!json_is_array(chs)) {
        snprintf(why, whylen, "\"challenges\" is not an array");
        goto out;
    }
    for (size_t i = 0; i < json_array_size(chs) && out->n_ch < AM_MAX_CHALL; i++) {
        const json_t *c = json_array_get(chs, i);
        am_chall *ch = &out->ch[out->n_ch];
        if (!json_is_object(c) || str(c, "type", ch->type, sizeof(ch->type), 1, why, whylen) ||
            url(c, "url", ch->url, 1, why, whylen) || str(c, "token", ch->token, sizeof(ch->token), 0, why, whylen) ||
            status(c, &ch->status, why, whylen))
            goto out;
        /* RFC 8555 §8.1: the token is base64url; it goes into a key authorization */
        if (strspn(ch->token, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != strlen(ch->token)) {
            snprintf(why, whylen, "challenge token is not base64url");
            goto out;
        }
        error_of(c, ch->error_type, sizeof(ch->error_type), ch->error_detail, sizeof(ch->error_detail));
        out->n_ch++;
    }
    rc = 0;
out:
    json_decref(j);
    return rc;
}

const am_chall *am_authz_find(const am_authz *a, const char *type)
{
    for (unsigned i = 0; i < a->n_ch; i++)
        if (strcmp(a->ch[i].type, type) == 0)
            return &a->ch[i];
    return NULL;
}

int am_problem_parse(const char *body, size_t len, char *type, size_t tlen, char *detail, size_t dlen)
{
    char why[64];
    type[0] = detail[0] = '\0';
    json_t *j = load(body, len, why, sizeof(why));
    if (!j)
        return -1;
    json_t *wrap = json_pack("{s:O}", "error", j);
    error_of(wrap, type, tlen, detail, dlen);
    json_decref(wrap);
    json_decref(j);
    return type[0] ? 0 : -1;
}

int am_renewal_info_parse(const char *body, size_t len, int64_t *start, int64_t *end)
{
    char why[64];
    json_t *j = load(body, len, why, sizeof(why));
    if (!j)
        return -1;
    const json_t *w = json_object_get(j, "suggestedWindow");
    const char *s = json_string_value(json_object_get(w, "start"));
    const char *e = json_string_value(json_object_get(w, "end"));
    int rc = s && e && acme_time_parse(s, start) == 0 && acme_time_parse(e, end) == 0 && *start < *end ? 0 : -1;
    json_decref(j);
    return rc;
}

unsigned am_retry_after(const char *v, unsigned dflt, unsigned max)
{
    if (!v || !*v)
        return dflt;
    char *end;
    unsigned long n = strtoul(v, &end, 10);
    if (end == v || *end)
        return dflt;
    return n > max ? max : (unsigned)n;
}
