/* api_order.c — RFC 8555 §7.4 orders, §7.5 authorizations and challenges,
 * §7.4.2 certificate download, §7.6 revocation, and RFC 9773 renewal
 * information. */
#include "acme/api_int.h"

#include <ctype.h>
#include <event2/event.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acme/ident.h"

/* ------------------------------------------------------------ identifiers */

typedef struct ident {
    acme_ident_type type;
    char value[ACME_MAX_DNS_NAME + 1]; /* lower case; "*." kept for wildcards */
    bool wildcard;
} ident;

static json_t *idents_json(const ident *ids, unsigned n)
{
    json_t *a = json_array();
    for (unsigned i = 0; i < n; i++)
        json_array_append_new(a, json_pack("{s:s, s:s}", "type", acme_ident_type_name(ids[i].type), "value", ids[i].value));
    return a;
}

/* ------------------------------------------------------------ order JSON */

typedef struct order_row {
    char id[ACME_ID_LEN + 1];
    char account[ACME_ID_LEN + 1];
    acme_status status;
    int64_t expires, not_before, not_after;
    char *identifiers; /* JSON text */
    char profile[65];
    char *error;
    char cert[65];
    char replaces[200];
    char authz[ACME_MAX_IDENTIFIERS][ACME_ID_LEN + 1];
    unsigned n_authz;
} order_row;

static void order_row_clear(order_row *o)
{
    free(o->identifiers);
    free(o->error);
    o->identifiers = o->error = NULL;
}

/* 1 found, 0 not, -1 error */
static int order_load(acme_db *db, const char *id, order_row *o)
{
    memset(o, 0, sizeof(*o));
    acme_q q;
    if (acme_db_query(db, &q,
                      "SELECT id, account, status, expires, identifiers, profile, not_before, not_after, error, cert, "
                      "replaces FROM orders WHERE id = ?",
                      "s", id) != 0)
        return -1;
    int rc = acme_q_next(&q);
    if (rc == 1) {
        snprintf(o->id, sizeof(o->id), "%s", acme_q_text(&q, 0));
        snprintf(o->account, sizeof(o->account), "%s", acme_q_text(&q, 1));
        int st = acme_status_from_name(acme_q_text(&q, 2));
        o->status = st < 0 ? ACME_S_INVALID : (acme_status)st;
        o->expires = acme_q_int(&q, 3);
        o->identifiers = strdup(acme_q_text(&q, 4) ? acme_q_text(&q, 4) : "[]");
        snprintf(o->profile, sizeof(o->profile), "%s", acme_q_text(&q, 5) ? acme_q_text(&q, 5) : "");
        o->not_before = acme_q_null(&q, 6) ? 0 : acme_q_int(&q, 6);
        o->not_after = acme_q_null(&q, 7) ? 0 : acme_q_int(&q, 7);
        o->error = acme_q_text(&q, 8) ? strdup(acme_q_text(&q, 8)) : NULL;
        snprintf(o->cert, sizeof(o->cert), "%s", acme_q_text(&q, 9) ? acme_q_text(&q, 9) : "");
        snprintf(o->replaces, sizeof(o->replaces), "%s", acme_q_text(&q, 10) ? acme_q_text(&q, 10) : "");
    }
    acme_q_end(&q);
    if (rc != 1)
        return rc;
    if (acme_db_query(db, &q, "SELECT authz FROM order_authzs WHERE order_id = ? ORDER BY pos", "s", id) != 0) {
        order_row_clear(o);
        return -1;
    }
    while ((rc = acme_q_next(&q)) == 1 && o->n_authz < ACME_MAX_IDENTIFIERS)
        snprintf(o->authz[o->n_authz++], ACME_ID_LEN + 1, "%s", acme_q_text(&q, 0));
    acme_q_end(&q);
    if (rc < 0) {
        order_row_clear(o);
        return -1;
    }
    return 1;
}

/* The status shown: pending/ready past expiry is invalid (§7.1.6). */
static acme_status order_shown(const order_row *o)
{
    if ((o->status == ACME_S_PENDING || o->status == ACME_S_READY) && o->expires <= acme_now())
        return ACME_S_INVALID;
    return o->status;
}

static json_t *order_json(const acme_rq *rq, const order_row *o)
{
    char t[32], u[API_URL_MAX];
    acme_time_rfc3339(o->expires, t, sizeof(t));
    json_t *ids = json_loads(o->identifiers, 0, NULL);
    json_t *j = json_pack("{s:s, s:s, s:o}", "status", acme_status_name(order_shown(o)), "expires", t, "identifiers",
                          ids ? ids : json_array());
    if (!j)
        return NULL;
    if (o->not_before) {
        acme_time_rfc3339(o->not_before, t, sizeof(t));
        json_object_set_new(j, "notBefore", json_string(t));
    }
    if (o->not_after) {
        acme_time_rfc3339(o->not_after, t, sizeof(t));
        json_object_set_new(j, "notAfter", json_string(t));
    }
    json_t *az = json_array();
    for (unsigned i = 0; i < o->n_authz; i++) {
        api_url(rq, u, sizeof(u), "authz", o->authz[i]);
        json_array_append_new(az, json_string(u));
    }
    json_object_set_new(j, "authorizations", az);
    api_url(rq, u, sizeof(u), "finalize", o->id);
    json_object_set_new(j, "finalize", json_string(u));
    if (o->cert[0] && o->status == ACME_S_VALID) {
        api_url(rq, u, sizeof(u), "cert", o->cert);
        json_object_set_new(j, "certificate", json_string(u));
    }
    if (o->error) {
        json_t *e = json_loads(o->error, 0, NULL);
        if (e)
            json_object_set_new(j, "error", e);
    }
    if (o->profile[0])
        json_object_set_new(j, "profile", json_string(o->profile));
    if (o->replaces[0])
        json_object_set_new(j, "replaces", json_string(o->replaces));
    return j;
}

static void order_answer(acme_rq *rq, const char *id, int http_status, bool location)
{
    order_row o;
    int rc = order_load(rq->db, id, &o);
    if (rc <= 0) {
        api_internal(rq, "order reload");
        return;
    }
    char loc[API_URL_MAX];
    api_url(rq, loc, sizeof(loc), "order", id);
    snprintf(rq->order, sizeof(rq->order), "%s", id);
    if (o.status == ACME_S_PROCESSING)
        acme_rq_header(rq, "Retry-After", "1");
    json_t *j = order_json(rq, &o);
    order_row_clear(&o);
    acme_rq_json(rq, http_status, j, location ? loc : NULL);
}

/* ------------------------------------------------------------ newOrder */

#define MAX_CHALL ACME_CH__MAX

typedef struct new_order {
    char id[ACME_ID_LEN + 1];
    char account[ACME_ID_LEN + 1];
    char addr[64];
    ident ids[ACME_MAX_IDENTIFIERS];
    unsigned n;
    char *ids_json;
    const acme_cfg_profile *profile;
    int64_t not_before, not_after, expires, authz_expires, now;
    char replaces[200];
    uint32_t reuse_s;
    bool offer[ACME_CH__MAX];
    unsigned pending_limit;
    /* filled by the transaction */
    char authz[ACME_MAX_IDENTIFIERS][ACME_ID_LEN + 1];
    char detail[256];
} new_order;

static int tx_new_order(acme_db *tx, void *arg)
{
    new_order *n = arg;
    if (n->replaces[0]) {
        /* RFC 9773 §5: the replaced certificate is this account's, and not
         * replaced by another order already */
        acme_q q;
        if (acme_db_query(tx, &q, "SELECT account FROM certs WHERE ari_id = ?", "s", n->replaces) != 0)
            return -1;
        int rc = acme_q_next(&q);
        int mine = rc == 1 && strcmp(acme_q_text(&q, 0), n->account) == 0;
        acme_q_end(&q);
        if (rc < 0)
            return -1;
        if (!mine) {
            snprintf(n->detail, sizeof(n->detail), "replaces names no certificate of this account");
            return ACME_P_MALFORMED;
        }
        if (acme_db_query(tx, &q, "SELECT 1 FROM orders WHERE replaces = ? AND status != 'invalid' AND account = ?", "ss",
                          n->replaces, n->account) != 0)
            return -1;
        rc = acme_q_next(&q);
        acme_q_end(&q);
        if (rc < 0)
            return -1;
        if (rc == 1) {
            snprintf(n->detail, sizeof(n->detail), "that certificate is already being replaced by another order");
            return ACME_P_ALREADY_REPLACED;
        }
    }
    if (n->pending_limit) {
        acme_q q;
        if (acme_db_query(tx, &q, "SELECT COUNT(*) FROM authzs WHERE account = ? AND status = 'pending' AND expires > ?",
                          "si", n->account, n->now) != 0)
            return -1;
        int rc = acme_q_next(&q);
        int64_t cnt = rc == 1 ? acme_q_int(&q, 0) : 0;
        acme_q_end(&q);
        if (rc < 0)
            return -1;
        if (cnt + n->n > n->pending_limit) {
            snprintf(n->detail, sizeof(n->detail), "too many pending authorizations (%lld, limit %u)", (long long)cnt,
                     n->pending_limit);
            return ACME_P_RATE_LIMITED;
        }
    }
    bool all_valid = true;
    for (unsigned i = 0; i < n->n; i++) {
        const ident *d = &n->ids[i];
        const char *value = d->wildcard ? d->value + 2 : d->value;
        n->authz[i][0] = '\0';
        if (n->reuse_s) {
            acme_q q;
            if (acme_db_query(tx, &q,
                              "SELECT id FROM authzs WHERE account = ? AND type = ? AND value = ? AND wildcard = ? "
                              "AND status = 'valid' AND expires > ? ORDER BY expires DESC LIMIT 1",
                              "sssii", n->account, acme_ident_type_name(d->type), value, (int64_t)d->wildcard,
                              n->now + 300) != 0)
                return -1;
            int rc = acme_q_next(&q);
            if (rc == 1)
                snprintf(n->authz[i], ACME_ID_LEN + 1, "%s", acme_q_text(&q, 0));
            acme_q_end(&q);
            if (rc < 0)
                return -1;
        }
        if (!n->authz[i][0]) {
            all_valid = false;
            if (acme_random_id(n->authz[i], 16) != 0)
                return -1;
            if (acme_db_exec(tx,
                             "INSERT INTO authzs(id, account, type, value, status, expires, wildcard, created) "
                             "VALUES(?, ?, ?, ?, 'pending', ?, ?, ?)",
                             "ssssiii", n->authz[i], n->account, acme_ident_type_name(d->type), value, n->authz_expires,
                             (int64_t)d->wildcard, n->now) != 1)
                return -1;
            for (int c = 0; c < ACME_CH__MAX; c++) {
                /* a wildcard is proven with dns-01 only (RFC 8555 §7.1.3) */
                if (!n->offer[c] || (d->wildcard && c != ACME_CH_DNS01))
                    continue;
                char cid[ACME_ID_LEN + 1], tok[ACME_TOKEN_LEN + 1];
                if (acme_random_id(cid, 16) != 0 || acme_random_id(tok, 32) != 0)
                    return -1;
                if (acme_db_exec(tx,
                                 "INSERT INTO challenges(id, authz, type, token, status) VALUES(?, ?, ?, ?, 'pending')",
                                 "ssss", cid, n->authz[i], acme_chall_type_name((acme_chall_type)c), tok) != 1)
                    return -1;
            }
        }
        if (acme_db_exec(tx, "INSERT INTO order_authzs(order_id, authz, pos) VALUES(?, ?, ?) ON CONFLICT DO NOTHING",
                         "ssi", n->id, n->authz[i], (int64_t)i) < 0)
            return -1;
    }
    return acme_db_exec(tx,
                        "INSERT INTO orders(id, account, status, expires, identifiers, profile, not_before, not_after, "
                        "replaces, created, address) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        "sssississis", n->id, n->account, all_valid ? "ready" : "pending", n->expires, n->ids_json,
                        n->profile->name, n->not_before, n->not_after, n->replaces[0] ? n->replaces : NULL, n->now,
                        n->addr) == 1
               ? 0
               : -1;
}

static void new_order_done(acme_rq *rq, void *arg, int rc)
{
    new_order *n = arg;
    if (rc == 0) {
        atomic_fetch_add_explicit(&rq->srv->ctr.orders, 1, memory_order_relaxed);
        order_answer(rq, n->id, 201, true);
    } else if (rc == ACME_P_RATE_LIMITED) {
        acme_rq_header(rq, "Retry-After", "60");
        acme_rq_problem(rq, ACME_P_RATE_LIMITED, n->detail[0] ? n->detail : "the store is busy, retry", NULL);
    } else if (rc > 0) {
        acme_rq_problem(rq, (acme_problem)rc, n->detail, NULL);
    } else {
        api_internal(rq, "order insert");
    }
    free(n->ids_json);
    free(n);
}

/* The limits of the EAB key the account was bound with (docs/acme.md):
 * the profiles it may use and the DNS suffixes it may name. 0 allowed;
 * -1 answered. */
static int eab_limits(acme_rq *rq, const new_order *n)
{
    if (!rq->eab_kid[0])
        return 0;
    acme_q q;
    if (acme_db_query(rq->db, &q, "SELECT profiles, suffixes FROM eab_keys WHERE kid = ?", "s", rq->eab_kid) != 0) {
        api_internal(rq, "eab limits");
        return -1;
    }
    int rc = acme_q_next(&q);
    json_t *prof = rc == 1 && acme_q_text(&q, 0) ? json_loads(acme_q_text(&q, 0), 0, NULL) : NULL;
    json_t *suf = rc == 1 && acme_q_text(&q, 1) ? json_loads(acme_q_text(&q, 1), 0, NULL) : NULL;
    acme_q_end(&q);
    int out = 0;
    size_t i;
    json_t *v;
    if (prof) {
        bool ok = false;
        json_array_foreach(prof, i, v) ok |= strcmp(json_string_value(v), n->profile->name) == 0;
        if (!ok) {
            acme_rq_problemf(rq, ACME_P_UNAUTHORIZED, "this account's external account binding does not allow profile %s",
                             n->profile->name);
            out = -1;
        }
    }
    for (unsigned k = 0; out == 0 && suf && k < n->n; k++) {
        const char *name = n->ids[k].wildcard ? n->ids[k].value + 2 : n->ids[k].value;
        size_t nl = strlen(name);
        bool ok = false;
        json_array_foreach(suf, i, v)
        {
            const char *s = json_string_value(v);
            size_t sl = strlen(s);
            ok |= (nl == sl && strcmp(name, s) == 0) || (nl > sl && name[nl - sl - 1] == '.' && strcmp(name + nl - sl, s) == 0);
        }
        if (!ok) {
            json_t *sub = json_pack("[{s:s, s:s, s:{s:s, s:s}}]", "type", "urn:ietf:params:acme:error:rejectedIdentifier", "detail",
                                    "outside the DNS suffixes of this account's external account binding", "identifier", "type",
                                    "dns", "value", n->ids[k].value);
            acme_rq_problem(rq, ACME_P_REJECTED_IDENTIFIER, "an identifier outside this account's allowed DNS suffixes", sub);
            out = -1;
        }
    }
    json_decref(prof);
    json_decref(suf);
    return out;
}

static int rate_limited(acme_rq *rq, acme_rl_kind kind, const char *key, const char *what)
{
    int64_t wait = acme_ratelimit_take(rq->srv->limits, kind, key);
    if (wait <= 0)
        return 0;
    char ra[32];
    snprintf(ra, sizeof(ra), "%lld", (long long)wait);
    acme_rq_header(rq, "Retry-After", ra);
    acme_rq_problemf(rq, ACME_P_RATE_LIMITED, "too many new orders %s in the last hour", what);
    return 1;
}

void api_new_order(acme_rq *rq)
{
    if (api_authenticate(rq, AUTH_KID) != 0)
        return;
    const acme_cfg *cfg = rq->srv->cfg;
    const json_t *p = rq->payload;
    const json_t *ids = p ? json_object_get(p, "identifiers") : NULL;
    if (!ids || !json_is_array(ids) || json_array_size(ids) == 0) {
        acme_rq_problem(rq, ACME_P_MALFORMED, "identifiers: a non-empty array is required (RFC 8555 §7.4)", NULL);
        return;
    }
    if (json_array_size(ids) > cfg->max_identifiers) {
        acme_rq_problemf(rq, ACME_P_REJECTED_IDENTIFIER, "at most %u identifiers per order", cfg->max_identifiers);
        return;
    }
    new_order *n = calloc(1, sizeof(*n));
    if (!n) {
        api_internal(rq, "out of memory");
        return;
    }
    json_t *sub = NULL;
    size_t i;
    json_t *v;
    json_array_foreach(ids, i, v)
    {
        const char *type = json_string_value(json_object_get(v, "type"));
        const char *value = json_string_value(json_object_get(v, "value"));
        if (!json_is_object(v) || !type || !value) {
            acme_rq_problem(rq, ACME_P_MALFORMED, "each identifier is an object with string type and value", NULL);
            goto fail;
        }
        int t = acme_ident_type_from_name(type);
        json_t *ij = json_pack("{s:s, s:s}", "type", type, "value", value);
        if (t < 0) {
            if (!sub)
                sub = json_array();
            json_array_append_new(sub, json_pack("{s:s, s:s, s:o}", "type", "urn:ietf:params:acme:error:unsupportedIdentifier",
                                                 "detail", "only dns identifiers are supported", "identifier", ij));
            continue;
        }
        ident d = {.type = (acme_ident_type)t};
        bool bad = strlen(value) > ACME_MAX_DNS_NAME;
        if (!bad) {
            snprintf(d.value, sizeof(d.value), "%s", value);
            bad = !acme_dns_name_ok(d.value, &d.wildcard) || (d.wildcard && !cfg->challenges[ACME_CH_DNS01]);
        }
        if (bad) {
            if (!sub)
                sub = json_array();
            json_array_append_new(sub, json_pack("{s:s, s:s, s:o}", "type", "urn:ietf:params:acme:error:rejectedIdentifier",
                                                 "detail", "not a DNS name this server issues for", "identifier", ij));
            continue;
        }
        json_decref(ij);
        bool dup = false;
        for (unsigned k = 0; k < n->n; k++)
            if (strcmp(n->ids[k].value, d.value) == 0)
                dup = true;
        if (!dup)
            n->ids[n->n++] = d;
    }
    if (sub) {
        /* §6.7.1: one problem per identifier */
        acme_problem top = json_array_size(sub) == 1 && strstr(json_string_value(json_object_get(json_array_get(sub, 0), "type")),
                                                               "unsupported")
                               ? ACME_P_UNSUPPORTED_IDENTIFIER
                               : ACME_P_REJECTED_IDENTIFIER;
        acme_rq_problem(rq, top, "identifiers this server does not issue for (see subproblems)", sub);
        sub = NULL;
        goto fail;
    }
    const char *prof = json_string_value(json_object_get(p, "profile"));
    if (json_object_get(p, "profile") && !prof) {
        acme_rq_problem(rq, ACME_P_MALFORMED, "profile is a string", NULL);
        goto fail;
    }
    n->profile = acme_cfg_profile_find(cfg, prof);
    if (!n->profile) {
        acme_rq_problemf(rq, ACME_P_INVALID_PROFILE, "no profile '%.64s' (the directory's meta.profiles lists them)", prof);
        goto fail;
    }
    n->now = acme_now();
    const char *nb = json_string_value(json_object_get(p, "notBefore"));
    const char *na = json_string_value(json_object_get(p, "notAfter"));
    if ((json_object_get(p, "notBefore") && (!nb || acme_time_parse(nb, &n->not_before) != 0)) ||
        (json_object_get(p, "notAfter") && (!na || acme_time_parse(na, &n->not_after) != 0))) {
        acme_rq_problem(rq, ACME_P_MALFORMED, "notBefore/notAfter must be RFC 3339 date-times", NULL);
        goto fail;
    }
    /* certforged starts every certificate now (minus the profile's
     * backdate): a notBefore in the future cannot be honoured */
    if (n->not_before && n->not_before > n->now + 60) {
        acme_rq_problem(rq, ACME_P_MALFORMED, "notBefore in the future is not supported: certificates start at issuance", NULL);
        goto fail;
    }
    if (n->not_after) {
        uint32_t maxv = n->profile->max_validity_s;
        if (n->not_after <= n->now + 60 || !maxv || n->not_after - n->now > (int64_t)maxv) {
            acme_rq_problemf(rq, ACME_P_MALFORMED, "notAfter must lie within %us from now for profile %s", maxv,
                             n->profile->name);
            goto fail;
        }
    }
    if (eab_limits(rq, n) != 0)
        goto fail;
    const char *rep = json_string_value(json_object_get(p, "replaces"));
    if (json_object_get(p, "replaces")) {
        if (!rep || !acme_ari_id_ok(rep)) {
            acme_rq_problem(rq, ACME_P_MALFORMED, "replaces must be an ARI certificate identifier (RFC 9773 §4.1)", NULL);
            goto fail;
        }
        snprintf(n->replaces, sizeof(n->replaces), "%s", rep);
    }
    if (rate_limited(rq, ACME_RL_ORDERS_ACCOUNT, rq->account, "for this account") ||
        rate_limited(rq, ACME_RL_ORDERS_ADDRESS, rq->addr, "from this address") ||
        rate_limited(rq, ACME_RL_ORDERS_GLOBAL, "*", "on this server"))
        goto fail;
    json_t *ij = idents_json(n->ids, n->n);
    n->ids_json = ij ? json_dumps(ij, JSON_COMPACT) : NULL;
    json_decref(ij);
    if (!n->ids_json || acme_random_id(n->id, 16) != 0) {
        api_internal(rq, "out of memory");
        goto fail;
    }
    snprintf(n->account, sizeof(n->account), "%s", rq->account);
    snprintf(n->addr, sizeof(n->addr), "%s", rq->addr);
    n->expires = n->now + cfg->order_lifetime_s;
    n->authz_expires = n->now + cfg->authz_lifetime_s;
    n->reuse_s = cfg->authz_reuse_s;
    n->pending_limit = cfg->rl_pending_authz_per_account;
    for (int c = 0; c < ACME_CH__MAX; c++)
        n->offer[c] = cfg->challenges[c];
    acme_rq_submit(rq, tx_new_order, n, new_order_done);
    return;
fail:
    json_decref(sub);
    free(n->ids_json);
    free(n);
}

/* ------------------------------------------------------------ order */

void api_order(acme_rq *rq, const char *id)
{
    if (api_authenticate(rq, AUTH_KID) != 0)
        return;
    order_row o;
    int rc = order_load(rq->db, id, &o);
    if (rc < 0) {
        api_internal(rq, "order lookup");
        return;
    }
    if (rc == 0 || strcmp(o.account, rq->account) != 0) {
        if (rc == 1)
            order_row_clear(&o);
        rq->http_status = 404;
        acme_rq_problem(rq, ACME_P_MALFORMED, "no such order for this account", NULL);
        return;
    }
    order_row_clear(&o);
    order_answer(rq, id, 200, false);
}

/* ------------------------------------------------------------ authorizations */

typedef struct authz_row {
    char id[ACME_ID_LEN + 1];
    char account[ACME_ID_LEN + 1];
    char type[16];
    char value[ACME_MAX_DNS_NAME + 1];
    acme_status status;
    int64_t expires;
    bool wildcard;
} authz_row;

static int authz_load(acme_db *db, const char *id, authz_row *a)
{
    memset(a, 0, sizeof(*a));
    acme_q q;
    if (acme_db_query(db, &q, "SELECT id, account, type, value, status, expires, wildcard FROM authzs WHERE id = ?", "s",
                      id) != 0)
        return -1;
    int rc = acme_q_next(&q);
    if (rc == 1) {
        snprintf(a->id, sizeof(a->id), "%s", acme_q_text(&q, 0));
        snprintf(a->account, sizeof(a->account), "%s", acme_q_text(&q, 1));
        snprintf(a->type, sizeof(a->type), "%s", acme_q_text(&q, 2));
        snprintf(a->value, sizeof(a->value), "%s", acme_q_text(&q, 3));
        int st = acme_status_from_name(acme_q_text(&q, 4));
        a->status = st < 0 ? ACME_S_INVALID : (acme_status)st;
        a->expires = acme_q_int(&q, 5);
        a->wildcard = acme_q_int(&q, 6) != 0;
    }
    acme_q_end(&q);
    return rc;
}

static acme_status authz_shown(const authz_row *a)
{
    if ((a->status == ACME_S_PENDING || a->status == ACME_S_VALID) && a->expires <= acme_now())
        return ACME_S_EXPIRED;
    return a->status;
}

static json_t *chall_json(const acme_rq *rq, const char *id, const char *type, const char *token, const char *status,
                          int64_t validated, const char *error)
{
    char u[API_URL_MAX];
    api_url(rq, u, sizeof(u), "chall", id);
    json_t *c = json_pack("{s:s, s:s, s:s, s:s}", "type", type, "url", u, "status", status, "token", token);
    if (c && validated > 0) {
        char t[32];
        acme_time_rfc3339(validated, t, sizeof(t));
        json_object_set_new(c, "validated", json_string(t));
    }
    if (c && error) {
        json_t *e = json_loads(error, 0, NULL);
        if (e)
            json_object_set_new(c, "error", e);
    }
    return c;
}

static json_t *authz_json(acme_rq *rq, const authz_row *a)
{
    char t[32];
    acme_time_rfc3339(a->expires, t, sizeof(t));
    json_t *j = json_pack("{s:{s:s, s:s}, s:s, s:s}", "identifier", "type", a->type, "value", a->value, "status",
                          acme_status_name(authz_shown(a)), "expires", t);
    if (!j)
        return NULL;
    if (a->wildcard)
        json_object_set_new(j, "wildcard", json_true());
    json_t *cs = json_array();
    acme_q q;
    if (acme_db_query(rq->db, &q, "SELECT id, type, token, status, validated, error FROM challenges WHERE authz = ? ORDER BY type",
                      "s", a->id) != 0) {
        json_decref(j);
        json_decref(cs);
        return NULL;
    }
    int rc;
    while ((rc = acme_q_next(&q)) == 1) {
        /* §7.1.4: a valid authorization lists the challenge that validated it */
        if (a->status == ACME_S_VALID && strcmp(acme_q_text(&q, 3), "valid") != 0)
            continue;
        json_array_append_new(cs, chall_json(rq, acme_q_text(&q, 0), acme_q_text(&q, 1), acme_q_text(&q, 2),
                                             acme_q_text(&q, 3), acme_q_null(&q, 4) ? 0 : acme_q_int(&q, 4),
                                             acme_q_text(&q, 5)));
    }
    acme_q_end(&q);
    if (rc < 0) {
        json_decref(j);
        json_decref(cs);
        return NULL;
    }
    json_object_set_new(j, "challenges", cs);
    return j;
}

static void authz_answer(acme_rq *rq, const char *id)
{
    authz_row a;
    int rc = authz_load(rq->db, id, &a);
    json_t *j = rc == 1 ? authz_json(rq, &a) : NULL;
    if (!j) {
        api_internal(rq, "authorization reload");
        return;
    }
    acme_rq_json(rq, 200, j, NULL);
}

typedef struct deact {
    char id[ACME_ID_LEN + 1];
} deact;

static int tx_deactivate_authz(acme_db *tx, void *arg)
{
    deact *d = arg;
    int n = acme_db_exec(tx, "UPDATE authzs SET status = 'deactivated' WHERE id = ? AND status IN ('pending', 'valid')", "s",
                         d->id);
    if (n <= 0)
        return n < 0 ? -1 : ACME_P_MALFORMED;
    /* orders waiting on it can no longer become ready */
    return acme_db_exec(tx,
                        "UPDATE orders SET status = 'invalid' WHERE status IN ('pending', 'ready') AND id IN "
                        "(SELECT order_id FROM order_authzs WHERE authz = ?)",
                        "s", d->id) < 0
               ? -1
               : 0;
}

static void deactivate_done(acme_rq *rq, void *arg, int rc)
{
    deact *d = arg;
    if (rc == 0)
        authz_answer(rq, d->id);
    else if (rc > 0)
        acme_rq_problem(rq, ACME_P_MALFORMED, "only a pending or valid authorization can be deactivated", NULL);
    else
        api_internal(rq, "authorization deactivation");
    free(d);
}

void api_authz(acme_rq *rq, const char *id)
{
    if (api_authenticate(rq, AUTH_KID) != 0)
        return;
    authz_row a;
    int rc = authz_load(rq->db, id, &a);
    if (rc < 0) {
        api_internal(rq, "authorization lookup");
        return;
    }
    if (rc == 0 || strcmp(a.account, rq->account) != 0) {
        rq->http_status = 404;
        acme_rq_problem(rq, ACME_P_MALFORMED, "no such authorization for this account", NULL);
        return;
    }
    if (!rq->payload) {
        authz_answer(rq, id);
        return;
    }
    const char *st = json_string_value(json_object_get(rq->payload, "status"));
    if (!st || strcmp(st, "deactivated") != 0) {
        acme_rq_problem(rq, ACME_P_MALFORMED, "an authorization may only be updated to status \"deactivated\" (RFC 8555 §7.5.2)",
                        NULL);
        return;
    }
    deact *d = calloc(1, sizeof(*d));
    if (!d) {
        api_internal(rq, "out of memory");
        return;
    }
    snprintf(d->id, sizeof(d->id), "%s", id);
    acme_rq_submit(rq, tx_deactivate_authz, d, deactivate_done);
}

/* ------------------------------------------------------------ challenges */

typedef struct chall_row {
    char id[ACME_ID_LEN + 1];
    char authz[ACME_ID_LEN + 1];
    char type[16];
    char token[ACME_TOKEN_LEN + 1];
    char status[16];
    int64_t validated;
    char *error;
} chall_row;

static int chall_load(acme_db *db, const char *id, chall_row *c, authz_row *a)
{
    memset(c, 0, sizeof(*c));
    acme_q q;
    if (acme_db_query(db, &q, "SELECT id, authz, type, token, status, validated, error FROM challenges WHERE id = ?", "s", id) !=
        0)
        return -1;
    int rc = acme_q_next(&q);
    if (rc == 1) {
        snprintf(c->id, sizeof(c->id), "%s", acme_q_text(&q, 0));
        snprintf(c->authz, sizeof(c->authz), "%s", acme_q_text(&q, 1));
        snprintf(c->type, sizeof(c->type), "%s", acme_q_text(&q, 2));
        snprintf(c->token, sizeof(c->token), "%s", acme_q_text(&q, 3));
        snprintf(c->status, sizeof(c->status), "%s", acme_q_text(&q, 4));
        c->validated = acme_q_null(&q, 5) ? 0 : acme_q_int(&q, 5);
        c->error = acme_q_text(&q, 6) ? strdup(acme_q_text(&q, 6)) : NULL;
    }
    acme_q_end(&q);
    if (rc != 1)
        return rc;
    rc = authz_load(db, c->authz, a);
    if (rc != 1) {
        free(c->error);
        c->error = NULL;
    }
    return rc;
}

static void chall_answer(acme_rq *rq, const char *id)
{
    chall_row c;
    authz_row a;
    int rc = chall_load(rq->db, id, &c, &a);
    if (rc != 1) {
        api_internal(rq, "challenge reload");
        return;
    }
    char up[API_URL_MAX];
    api_url(rq, up, sizeof(up), "authz", c.authz);
    acme_rq_link(rq, up, "up");
    json_t *j = chall_json(rq, c.id, c.type, c.token, c.status, c.validated, c.error);
    free(c.error);
    acme_rq_json(rq, 200, j, NULL);
}

typedef struct start_chall {
    acme_vjob job;
    int64_t now;
    bool started;
} start_chall;

static int tx_start_challenge(acme_db *tx, void *arg)
{
    start_chall *s = arg;
    /* one challenge per authorization is attempted (§7.5.1); only while
     * the authorization is pending and unexpired */
    int n = acme_db_exec(tx,
                         "UPDATE challenges SET status = 'processing' WHERE id = ? AND status = 'pending' "
                         "AND NOT EXISTS (SELECT 1 FROM challenges c2 WHERE c2.authz = challenges.authz AND c2.status != 'pending') "
                         "AND EXISTS (SELECT 1 FROM authzs a WHERE a.id = challenges.authz AND a.status = 'pending' AND a.expires > ?)",
                         "si", s->job.chall, s->now);
    if (n < 0)
        return -1;
    s->started = n == 1;
    return 0;
}

static void start_challenge_done(acme_rq *rq, void *arg, int rc)
{
    start_chall *s = arg;
    if (rc != 0) {
        api_internal(rq, "challenge start");
        free(s);
        return;
    }
    if (s->started && acme_validator_submit(rq->srv->validator, &s->job) != 0) {
        /* queue full: the challenge stays processing; the start-up scan
         * (acme_resume) or a later restart picks it up */
        acme_log(rq->srv, ACME_LOG_WARNING, "event=validation_queue_full challenge=%s", s->job.chall);
    }
    free(s);
    chall_answer(rq, rq->path + strlen("/acme/chall/"));
}

void api_challenge(acme_rq *rq, const char *id)
{
    if (api_authenticate(rq, AUTH_KID) != 0)
        return;
    chall_row c;
    authz_row a;
    int rc = chall_load(rq->db, id, &c, &a);
    if (rc < 0) {
        api_internal(rq, "challenge lookup");
        return;
    }
    if (rc == 0 || strcmp(a.account, rq->account) != 0) {
        if (rc == 1)
            free(c.error);
        rq->http_status = 404;
        acme_rq_problem(rq, ACME_P_MALFORMED, "no such challenge for this account", NULL);
        return;
    }
    free(c.error);
    /* §7.5.1: the client's response is an empty JSON object; POST-as-GET
     * (empty payload) only reads */
    if (!rq->payload || strcmp(c.status, "pending") != 0 || a.status != ACME_S_PENDING) {
        chall_answer(rq, id);
        return;
    }
    if (acme_ratelimit_check(rq->srv->limits, ACME_RL_FAILED_VALIDATIONS, rq->account) > 0) {
        acme_rq_header(rq, "Retry-After", "3600");
        acme_rq_problem(rq, ACME_P_RATE_LIMITED, "too many failed validations for this account in the last hour", NULL);
        return;
    }
    start_chall *s = calloc(1, sizeof(*s));
    if (!s) {
        api_internal(rq, "out of memory");
        return;
    }
    int t = acme_chall_type_from_name(c.type);
    s->job.type = t < 0 ? ACME_CH_HTTP01 : (acme_chall_type)t;
    snprintf(s->job.chall, sizeof(s->job.chall), "%s", c.id);
    snprintf(s->job.authz, sizeof(s->job.authz), "%s", a.id);
    snprintf(s->job.account, sizeof(s->job.account), "%s", rq->account);
    snprintf(s->job.ident, sizeof(s->job.ident), "%s", a.value);
    snprintf(s->job.token, sizeof(s->job.token), "%s", c.token);
    snprintf(s->job.thumb, sizeof(s->job.thumb), "%s", rq->thumb);
    s->now = acme_now();
    acme_rq_submit(rq, tx_start_challenge, s, start_challenge_done);
}

/* ------------------------------------------------------------ certificates */

static void hex(const uint8_t *p, size_t n, char *out)
{
    static const char h[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = h[p[i] >> 4];
        out[2 * i + 1] = h[p[i] & 15];
    }
    out[2 * n] = '\0';
}

/* PEM of DER blobs, concatenated */
static char *pem_chain(const uint8_t *const *ders, const size_t *lens, unsigned n)
{
    size_t total = 1;
    for (unsigned i = 0; i < n; i++)
        total += (lens[i] + 2) / 3 * 4 + lens[i] / 48 + 64;
    char *out = malloc(total), *p = out;
    if (!out)
        return NULL;
    for (unsigned i = 0; i < n; i++) {
        p += sprintf(p, "-----BEGIN CERTIFICATE-----\n");
        size_t off = 0;
        while (off < lens[i]) {
            size_t take = lens[i] - off > 48 ? 48 : lens[i] - off;
            p += EVP_EncodeBlock((unsigned char *)p, ders[i] + off, (int)take);
            *p++ = '\n';
            off += take;
        }
        p += sprintf(p, "-----END CERTIFICATE-----\n");
    }
    *p = '\0';
    return out;
}

/* ------------------------------------------------------------ finalize */

typedef struct fin {
    acme_rq *rq; /* NULL once answered */
    acme_thread *t;
    acme_srv *srv;
    struct event *timer;
    int refs; /* the timer/answer side and the engine side; loop thread only */
    char order[ACME_ID_LEN + 1];
    char account[ACME_ID_LEN + 1];
    char replaces[200];
    uint8_t *csr;
    size_t csr_len;
    char names[ACME_MAX_IDENTIFIERS][ACME_MAX_DNS_NAME + 1];
    unsigned n_names;
    char profile[65];
    char requester[96];
    uint32_t validity_s;
    acme_job job;
    /* result, set on the store thread before the post */
    acme_problem problem;
    char detail[300];
    char cert_id[65];
} fin;

static void fin_unref(fin *f)
{
    if (--f->refs > 0)
        return;
    if (f->timer)
        event_free(f->timer);
    acme_job_clear(&f->job);
    free(f->csr);
    free(f);
}

static void fin_answer(fin *f)
{
    acme_rq *rq = f->rq;
    f->rq = NULL;
    /* A timer that will not fire now is the timer side's reference: drop
     * it here (fin_timeout would have). Without this every finalize that
     * certforged answered within finalize_wait_ms leaked its fin, CSR
     * and certificate (~28 KiB; LeakSanitizer under acme-load). */
    if (f->timer && evtimer_pending(f->timer, NULL)) {
        evtimer_del(f->timer);
        f->refs--;
    }
    order_answer(rq, f->order, 200, false);
}

static void fin_timeout(evutil_socket_t fd, short what, void *arg)
{
    fin *f = arg;
    if (f->rq)
        fin_answer(f); /* still processing: status processing + Retry-After */
    fin_unref(f);
}

static void fin_resume(void *arg)
{
    fin *f = arg;
    if (f->rq)
        fin_answer(f);
    fin_unref(f);
}

static acme_problem engine_problem(cf_status st)
{
    switch (st) {
    case CF_ST_BAD_CSR:
        return ACME_P_BAD_CSR;
    case CF_ST_POLICY_DENIED:
        return ACME_P_REJECTED_IDENTIFIER;
    default:
        return ACME_P_SERVER_INTERNAL;
    }
}

static int tx_record_cert(acme_db *tx, void *arg)
{
    fin *f = arg;
    acme_job *j = &f->job;
    if (j->status != CF_ST_OK) {
        char *e = api_problem_text(f->problem, f->detail);
        int n = acme_db_exec(tx, "UPDATE orders SET status = 'invalid', error = ? WHERE id = ? AND status = 'processing'", "ss",
                             e, f->order);
        free(e);
        return n < 0 ? -1 : 0;
    }
    acme_cert_facts cf;
    char ari[200];
    if (acme_cert_facts_read(j->cert, j->cert_len, &cf) != 0 || acme_ari_id_of(&cf, ari, sizeof(ari)) != 0 || cf.serial_len > 32)
        return -1;
    hex(cf.serial, cf.serial_len, f->cert_id);
    const uint8_t *ders[ACME_ISSUE_MAX_CHAIN];
    for (unsigned i = 0; i < j->n_chain; i++)
        ders[i] = j->chain[i];
    char *chain = pem_chain(ders, j->chain_len, j->n_chain);
    if (!chain)
        return -1;
    int n = acme_db_exec(tx,
                         "INSERT INTO certs(id, order_id, account, der, chain, not_before, not_after, ari_id) "
                         "VALUES(?, ?, ?, ?, ?, ?, ?, ?)",
                         "sssbsiis", f->cert_id, f->order, f->account, j->cert, j->cert_len, chain, cf.not_before,
                         cf.not_after, ari);
    free(chain);
    if (n != 1)
        return -1;
    if (acme_db_exec(tx, "UPDATE orders SET status = 'valid', cert = ? WHERE id = ? AND status = 'processing'", "ss",
                     f->cert_id, f->order) < 0)
        return -1;
    if (f->replaces[0] &&
        acme_db_exec(tx, "UPDATE certs SET replaced_by = ? WHERE ari_id = ?", "ss", f->cert_id, f->replaces) < 0)
        return -1;
    return 0;
}

static void fin_recorded(void *arg, int rc)
{
    fin *f = arg;
    if (rc != 0)
        acme_log(f->srv, ACME_LOG_ERROR, "event=certificate_not_recorded order=%s rc=%d", f->order, rc);
    else if (f->job.status == CF_ST_OK)
        atomic_fetch_add_explicit(&f->srv->ctr.issued, 1, memory_order_relaxed);
    acme_thread_post(f->t, fin_resume, f);
}

/* acme-engine thread: certforged answered */
static void fin_engine_done(acme_job *j)
{
    fin *f = j->arg;
    if (j->status != CF_ST_OK) {
        f->problem = engine_problem(j->status);
        snprintf(f->detail, sizeof(f->detail), "certforged: %s%s%s", cf_status_name(j->status), j->message[0] ? ": " : "",
                 j->message);
        if (j->status == CF_ST_BUSY)
            atomic_fetch_add_explicit(&f->srv->ctr.engine_busy, 1, memory_order_relaxed);
        else if (f->problem == ACME_P_SERVER_INTERNAL)
            atomic_fetch_add_explicit(&f->srv->ctr.engine_errors, 1, memory_order_relaxed);
        acme_log(f->srv, ACME_LOG_WARNING, "event=issue_refused order=%s status=%s detail=\"%s\"", f->order,
                 cf_status_name(j->status), j->message);
    }
    if (acme_store_submit(f->srv->store, tx_record_cert, fin_recorded, f) != 0)
        fin_recorded(f, -1);
}

typedef struct fin_start {
    fin *f;
} fin_start;

static int tx_finalize_start(acme_db *tx, void *arg)
{
    fin *f = arg;
    int n = acme_db_exec(tx, "UPDATE orders SET status = 'processing', csr = ? WHERE id = ? AND status = 'ready' AND expires > ?",
                         "bsi", f->csr, f->csr_len, f->order, acme_now());
    return n < 0 ? -1 : n == 0 ? ACME_P_ORDER_NOT_READY : 0;
}

static void finalize_started(acme_rq *rq, void *arg, int rc)
{
    fin *f = arg;
    if (rc != 0) {
        if (rc == ACME_P_ORDER_NOT_READY)
            acme_rq_problem(rq, ACME_P_ORDER_NOT_READY, "the order is no longer ready (finalized already?)", NULL);
        else
            api_internal(rq, "finalize");
        free(f->csr);
        free(f);
        return;
    }
    atomic_fetch_add_explicit(&rq->srv->ctr.finalized, 1, memory_order_relaxed);
    cf_issue_req *r = &f->job.req;
    r->profile = (cf_str){f->profile, strlen(f->profile)};
    r->csr_der = f->csr;
    r->csr_len = f->csr_len;
    for (unsigned i = 0; i < f->n_names && i < CF_MAX_FQDNS; i++)
        r->fqdns[r->n_fqdns++] = (cf_str){f->names[i], strlen(f->names[i])};
    r->validity_s = f->validity_s;
    r->requester = (cf_str){f->requester, strlen(f->requester)};
    f->job.kind = ACME_JOB_ISSUE;
    f->job.done = fin_engine_done;
    f->job.arg = f;
    f->rq = rq;
    f->t = rq->t;
    f->srv = rq->srv;
    f->refs = 2;
    unsigned wait = rq->srv->cfg->finalize_wait_ms;
    f->timer = evtimer_new(acme_thread_base(rq->t), fin_timeout, f);
    if (acme_issuer_submit(rq->srv->issuer, &f->job) != 0) {
        f->job.status = CF_ST_BUSY;
        snprintf(f->job.message, sizeof(f->job.message), "certforge-acme's queue to certforged is full");
        fin_engine_done(&f->job);
    }
    if (!f->timer) {
        fin_answer(f);
        fin_unref(f);
        return;
    }
    struct timeval tv = {.tv_sec = wait / 1000, .tv_usec = (wait % 1000) * 1000};
    evtimer_add(f->timer, &tv);
}

void api_finalize(acme_rq *rq, const char *id)
{
    if (api_authenticate(rq, AUTH_KID) != 0)
        return;
    order_row o;
    int rc = order_load(rq->db, id, &o);
    if (rc < 0) {
        api_internal(rq, "order lookup");
        return;
    }
    if (rc == 0 || strcmp(o.account, rq->account) != 0) {
        if (rc == 1)
            order_row_clear(&o);
        rq->http_status = 404;
        acme_rq_problem(rq, ACME_P_MALFORMED, "no such order for this account", NULL);
        return;
    }
    snprintf(rq->order, sizeof(rq->order), "%s", id);
    fin *f = NULL;
    if (order_shown(&o) != ACME_S_READY) {
        acme_rq_problemf(rq, ACME_P_ORDER_NOT_READY, "the order is %s, not ready (RFC 8555 §7.4)",
                         acme_status_name(order_shown(&o)));
        goto out;
    }
    const char *csr_b64 = rq->payload ? json_string_value(json_object_get(rq->payload, "csr")) : NULL;
    if (!csr_b64) {
        acme_rq_problem(rq, ACME_P_MALFORMED, "finalize needs {\"csr\": base64url DER}", NULL);
        goto out;
    }
    f = calloc(1, sizeof(*f));
    size_t cap = strlen(csr_b64);
    if (!f || !(f->csr = malloc(cap + 1))) {
        api_internal(rq, "out of memory");
        goto out;
    }
    long dl = acme_b64url_decode(csr_b64, strlen(csr_b64), f->csr, cap + 1);
    if (dl <= 0) {
        acme_rq_problem(rq, ACME_P_MALFORMED, "csr is not base64url", NULL);
        goto out;
    }
    f->csr_len = (size_t)dl;
    char names[ACME_CSR_MAX_NAMES][ACME_MAX_DNS_NAME + 1], why[200];
    unsigned nn = 0;
    if (acme_csr_names(f->csr, f->csr_len, names, ACME_CSR_MAX_NAMES, &nn, why, sizeof(why)) != ACME_P_NONE) {
        acme_rq_problem(rq, ACME_P_BAD_CSR, why, NULL);
        goto out;
    }
    /* the CSR names exactly the order's identifiers (§7.4) */
    json_t *ids = json_loads(o.identifiers, 0, NULL);
    const char *want[ACME_MAX_IDENTIFIERS];
    size_t i;
    json_t *v;
    json_array_foreach(ids, i, v)
    {
        const char *val = json_string_value(json_object_get(v, "value"));
        if (val && f->n_names < ACME_MAX_IDENTIFIERS) {
            snprintf(f->names[f->n_names], ACME_MAX_DNS_NAME + 1, "%s", val);
            want[f->n_names] = f->names[f->n_names];
            f->n_names++;
        }
    }
    json_decref(ids);
    if (!acme_names_match(names, nn, want, f->n_names)) {
        acme_rq_problem(rq, ACME_P_BAD_CSR, "the CSR must name exactly the order's identifiers (RFC 8555 §7.4)", NULL);
        goto out;
    }
    const acme_cfg_profile *p = acme_cfg_profile_find(rq->srv->cfg, o.profile);
    if (!p) {
        acme_rq_problemf(rq, ACME_P_INVALID_PROFILE, "the order's profile %s is no longer configured", o.profile);
        goto out;
    }
    snprintf(f->profile, sizeof(f->profile), "%s", p->engine);
    f->validity_s = p->validity_s;
    if (o.not_after) {
        int64_t left = o.not_after - acme_now();
        f->validity_s = left > 60 ? (uint32_t)left : 60;
    }
    snprintf(f->order, sizeof(f->order), "%s", id);
    snprintf(f->account, sizeof(f->account), "%s", rq->account);
    snprintf(f->replaces, sizeof(f->replaces), "%s", o.replaces);
    snprintf(f->requester, sizeof(f->requester), "acme:%s:%s", rq->account, id);
    order_row_clear(&o);
    acme_rq_submit(rq, tx_finalize_start, f, finalize_started);
    return;
out:
    order_row_clear(&o);
    if (f)
        free(f->csr);
    free(f);
}

/* ------------------------------------------------------------ download */

void api_cert(acme_rq *rq, const char *id)
{
    if (api_authenticate(rq, AUTH_KID) != 0)
        return;
    if (rq->payload) {
        acme_rq_problem(rq, ACME_P_MALFORMED, "a certificate is fetched with POST-as-GET (empty payload)", NULL);
        return;
    }
    acme_q q;
    if (acme_db_query(rq->db, &q, "SELECT account, der, chain FROM certs WHERE id = ?", "s", id) != 0) {
        api_internal(rq, "certificate lookup");
        return;
    }
    int rc = acme_q_next(&q);
    if (rc != 1 || strcmp(acme_q_text(&q, 0), rq->account) != 0) {
        acme_q_end(&q);
        if (rc < 0) {
            api_internal(rq, "certificate lookup");
            return;
        }
        rq->http_status = 404;
        acme_rq_problem(rq, ACME_P_MALFORMED, "no such certificate for this account", NULL);
        return;
    }
    size_t dl;
    const uint8_t *der = acme_q_blob(&q, 1, &dl);
    const char *chain = acme_q_text(&q, 2);
    char *leaf = pem_chain(&der, &dl, 1);
    size_t ll = leaf ? strlen(leaf) : 0, cl = chain ? strlen(chain) : 0;
    char *all = leaf ? malloc(ll + cl + 1) : NULL;
    if (all) {
        memcpy(all, leaf, ll);
        memcpy(all + ll, chain ? chain : "", cl);
        all[ll + cl] = '\0';
    }
    acme_q_end(&q);
    free(leaf);
    if (!all) {
        api_internal(rq, "out of memory");
        return;
    }
    acme_rq_raw(rq, 200, "application/pem-certificate-chain", all, ll + cl);
    free(all);
}

/* ------------------------------------------------------------ revocation */

typedef struct revoke {
    char cert_id[65];
    uint8_t serial[20];
    size_t serial_len;
    unsigned reason;
    acme_rq *rq;
    acme_thread *t;
    acme_job job;
    int64_t revoked_at;
} revoke;

static int tx_record_revocation(acme_db *tx, void *arg)
{
    revoke *r = arg;
    return acme_db_exec(tx, "UPDATE certs SET revoked_at = ?, reason = ? WHERE id = ? AND revoked_at IS NULL", "iis",
                        r->job.revoked_at ? r->job.revoked_at : acme_now(), (int64_t)r->reason, r->cert_id) < 0
               ? -1
               : 0;
}

static void revoke_recorded(acme_rq *rq, void *arg, int rc)
{
    revoke *r = arg;
    if (rc != 0) {
        api_internal(rq, "revocation record");
    } else {
        atomic_fetch_add_explicit(&rq->srv->ctr.revoked, 1, memory_order_relaxed);
        acme_log(rq->srv, ACME_LOG_INFO, "event=revoked cert=%s reason=%u account=%s", r->cert_id, r->reason,
                 rq->account[0] ? rq->account : "(certificate key)");
        acme_rq_raw(rq, 200, NULL, "", 0);
    }
    free(r);
}

static void revoke_resume(void *arg)
{
    revoke *r = arg;
    acme_rq *rq = r->rq;
    if (r->job.status != CF_ST_OK) {
        acme_rq_problemf(rq, ACME_P_SERVER_INTERNAL, "certforged refused the revocation: %s %s", cf_status_name(r->job.status),
                         r->job.message);
        free(r);
        return;
    }
    acme_rq_submit(rq, tx_record_revocation, r, revoke_recorded);
}

static void revoke_engine_done(acme_job *j)
{
    revoke *r = j->arg;
    acme_thread_post(r->t, revoke_resume, r);
}

void api_revoke(acme_rq *rq)
{
    if (api_authenticate(rq, AUTH_EITHER) != 0)
        return;
    const char *b64 = rq->payload ? json_string_value(json_object_get(rq->payload, "certificate")) : NULL;
    if (!b64) {
        acme_rq_problem(rq, ACME_P_MALFORMED, "revokeCert needs {\"certificate\": base64url DER} (RFC 8555 §7.6)", NULL);
        return;
    }
    const json_t *jr = json_object_get(rq->payload, "reason");
    unsigned reason = 0;
    if (jr) {
        if (!json_is_integer(jr)) {
            acme_rq_problem(rq, ACME_P_BAD_REVOCATION_REASON, "reason is an RFC 5280 CRLReason code", NULL);
            return;
        }
        json_int_t v = json_integer_value(jr);
        /* unspecified, keyCompromise, affiliationChanged, superseded,
         * cessationOfOperation, privilegeWithdrawn: what a subscriber may
         * claim (CA-side reasons are the operator's, certforge revoke) */
        if (v != 0 && v != 1 && v != 3 && v != 4 && v != 5 && v != 9) {
            acme_rq_problem(rq, ACME_P_BAD_REVOCATION_REASON, "allowed reasons: 0, 1, 3, 4, 5, 9 (RFC 5280 §5.3.1)", NULL);
            return;
        }
        reason = (unsigned)v;
    }
    size_t cap = strlen(b64);
    uint8_t *der = malloc(cap + 1);
    long dl = der ? acme_b64url_decode(b64, cap, der, cap + 1) : -1;
    acme_cert_facts cf;
    if (dl <= 0 || acme_cert_facts_read(der, (size_t)dl, &cf) != 0 || cf.serial_len > 20) {
        free(der);
        acme_rq_problem(rq, ACME_P_MALFORMED, "certificate is not a base64url DER certificate of this CA", NULL);
        return;
    }
    char id[65];
    hex(cf.serial, cf.serial_len, id);
    uint8_t serial[20];
    size_t serial_len = cf.serial_len;
    memcpy(serial, cf.serial, serial_len); /* cf points into der, freed below */
    acme_q q;
    if (acme_db_query(rq->db, &q, "SELECT account, der, revoked_at FROM certs WHERE id = ?", "s", id) != 0) {
        free(der);
        api_internal(rq, "certificate lookup");
        return;
    }
    int rc = acme_q_next(&q);
    bool same = false, mine = false, revoked = false;
    if (rc == 1) {
        size_t sl;
        const void *stored = acme_q_blob(&q, 1, &sl);
        same = sl == (size_t)dl && memcmp(stored, der, sl) == 0;
        mine = rq->account[0] && strcmp(acme_q_text(&q, 0), rq->account) == 0;
        revoked = !acme_q_null(&q, 2);
    }
    acme_q_end(&q);
    if (rc < 0) {
        free(der);
        api_internal(rq, "certificate lookup");
        return;
    }
    if (rc == 0 || !same) {
        free(der);
        rq->http_status = 404;
        acme_rq_problem(rq, ACME_P_MALFORMED, "not a certificate issued by this server", NULL);
        return;
    }
    /* §7.6: the account that holds the certificate, or the certificate's
     * own key (a jwk request signed by it) */
    if (!rq->account[0]) {
        const unsigned char *pp = der;
        X509 *x = d2i_X509(NULL, &pp, dl);
        json_t *jwk = x ? acme_jwk_from_pkey(X509_get0_pubkey(x)) : NULL;
        char th[ACME_THUMB_LEN + 1];
        mine = jwk && acme_jwk_thumbprint(jwk, th) == 0 && strcmp(th, rq->thumb) == 0;
        json_decref(jwk);
        X509_free(x);
    }
    free(der);
    if (!mine) {
        acme_rq_problem(rq, ACME_P_UNAUTHORIZED, "neither the account that holds this certificate nor its key signed this request",
                        NULL);
        return;
    }
    if (revoked) {
        acme_rq_problem(rq, ACME_P_ALREADY_REVOKED, "the certificate is already revoked", NULL);
        return;
    }
    revoke *r = calloc(1, sizeof(*r));
    if (!r) {
        api_internal(rq, "out of memory");
        return;
    }
    snprintf(r->cert_id, sizeof(r->cert_id), "%s", id);
    memcpy(r->job.serial, serial, serial_len);
    r->job.serial_len = serial_len;
    r->job.reason = reason;
    r->reason = reason;
    r->job.kind = ACME_JOB_REVOKE;
    r->job.done = revoke_engine_done;
    r->job.arg = r;
    r->rq = rq;
    r->t = rq->t;
    if (acme_issuer_submit(rq->srv->issuer, &r->job) != 0) {
        free(r);
        acme_rq_header(rq, "Retry-After", "1");
        acme_rq_problem(rq, ACME_P_RATE_LIMITED, "certforge-acme's queue to certforged is full", NULL);
    }
}

/* ------------------------------------------------------------ ARI */

void api_renewal_info(acme_rq *rq, const char *certid)
{
    if (!acme_ari_id_ok(certid)) {
        acme_rq_problem(rq, ACME_P_MALFORMED, "not an ARI certificate identifier (RFC 9773 §4.1)", NULL);
        return;
    }
    acme_q q;
    if (acme_db_query(rq->db, &q, "SELECT not_before, not_after, revoked_at FROM certs WHERE ari_id = ?", "s", certid) != 0) {
        api_internal(rq, "renewal info");
        return;
    }
    int rc = acme_q_next(&q);
    int64_t nb = 0, na = 0;
    bool revoked = false;
    if (rc == 1) {
        nb = acme_q_int(&q, 0);
        na = acme_q_int(&q, 1);
        revoked = !acme_q_null(&q, 2);
    }
    acme_q_end(&q);
    if (rc < 0) {
        api_internal(rq, "renewal info");
        return;
    }
    if (rc == 0) {
        rq->http_status = 404;
        acme_rq_problem(rq, ACME_P_MALFORMED, "no certificate with this identifier", NULL);
        return;
    }
    const acme_cfg *cfg = rq->srv->cfg;
    int64_t start, end, now = acme_now();
    if (revoked) {
        /* RFC 9773 §4.2: renew now: a window entirely in the past */
        start = now - 2 * 86400;
        end = now - 86400;
    } else {
        double life = (double)(na - nb);
        start = nb + (int64_t)(life * (cfg->ari_renew_fraction - cfg->ari_window_fraction / 2));
        end = nb + (int64_t)(life * (cfg->ari_renew_fraction + cfg->ari_window_fraction / 2));
        if (end <= start)
            end = start + 1;
    }
    char s[32], e[32], ra[32];
    acme_time_rfc3339(start, s, sizeof(s));
    acme_time_rfc3339(end, e, sizeof(e));
    snprintf(ra, sizeof(ra), "%u", cfg->ari_retry_after_s);
    acme_rq_header(rq, "Retry-After", ra);
    acme_rq_json(rq, 200, json_pack("{s:{s:s, s:s}}", "suggestedWindow", "start", s, "end", e), NULL);
}

/* ------------------------------------------------------------ start-up and pruning */

/* Work a previous run accepted and did not finish: challenges being
 * validated and orders being finalized are taken up again (a finalize is
 * sent to certforged once more: if the first went through, certforged's
 * ledger holds two certificates for the order, the second one is the
 * order's). */
int api_resume(acme_srv *srv, acme_db *db)
{
    acme_q q;
    int rc, n = 0;
    if (acme_db_query(db, &q,
                      "SELECT c.id, c.authz, c.type, c.token, a.value, a.account, acc.thumbprint FROM challenges c "
                      "JOIN authzs a ON a.id = c.authz JOIN accounts acc ON acc.id = a.account "
                      "WHERE c.status = 'processing' AND a.status = 'pending'",
                      "") != 0)
        return -1;
    while ((rc = acme_q_next(&q)) == 1) {
        acme_vjob j = {0};
        snprintf(j.chall, sizeof(j.chall), "%s", acme_q_text(&q, 0));
        snprintf(j.authz, sizeof(j.authz), "%s", acme_q_text(&q, 1));
        int t = acme_chall_type_from_name(acme_q_text(&q, 2));
        j.type = t < 0 ? ACME_CH_HTTP01 : (acme_chall_type)t;
        snprintf(j.token, sizeof(j.token), "%s", acme_q_text(&q, 3));
        snprintf(j.ident, sizeof(j.ident), "%s", acme_q_text(&q, 4));
        snprintf(j.account, sizeof(j.account), "%s", acme_q_text(&q, 5));
        snprintf(j.thumb, sizeof(j.thumb), "%s", acme_q_text(&q, 6));
        if (acme_validator_submit(srv->validator, &j) == 0)
            n++;
    }
    acme_q_end(&q);
    if (rc < 0)
        return -1;
    if (acme_db_query(db, &q,
                      "SELECT o.id, o.account, o.identifiers, o.profile, o.csr, o.not_after, o.replaces FROM orders o "
                      "WHERE o.status = 'processing' AND o.csr IS NOT NULL",
                      "") != 0)
        return -1;
    while ((rc = acme_q_next(&q)) == 1) {
        const acme_cfg_profile *p = acme_cfg_profile_find(srv->cfg, acme_q_text(&q, 3));
        fin *f = calloc(1, sizeof(*f));
        size_t cl;
        const void *csr_p = acme_q_blob(&q, 4, &cl);
        if (!f || !p || !(f->csr = malloc(cl ? cl : 1))) {
            free(f);
            continue;
        }
        memcpy(f->csr, csr_p, cl);
        f->csr_len = cl;
        snprintf(f->order, sizeof(f->order), "%s", acme_q_text(&q, 0));
        snprintf(f->account, sizeof(f->account), "%s", acme_q_text(&q, 1));
        snprintf(f->replaces, sizeof(f->replaces), "%s", acme_q_text(&q, 6) ? acme_q_text(&q, 6) : "");
        json_t *ids = json_loads(acme_q_text(&q, 2), 0, NULL);
        size_t i;
        json_t *v;
        json_array_foreach(ids, i, v)
        {
            const char *val = json_string_value(json_object_get(v, "value"));
            if (val && f->n_names < ACME_MAX_IDENTIFIERS)
                snprintf(f->names[f->n_names++], ACME_MAX_DNS_NAME + 1, "%s", val);
        }
        json_decref(ids);
        snprintf(f->profile, sizeof(f->profile), "%s", p->engine);
        f->validity_s = p->validity_s;
        if (!acme_q_null(&q, 5)) {
            int64_t left = acme_q_int(&q, 5) - acme_now();
            f->validity_s = left > 60 ? (uint32_t)left : 60;
        }
        snprintf(f->requester, sizeof(f->requester), "acme:%s:%s", f->account, f->order);
        cf_issue_req *r = &f->job.req;
        r->profile = (cf_str){f->profile, strlen(f->profile)};
        r->csr_der = f->csr;
        r->csr_len = f->csr_len;
        for (unsigned k = 0; k < f->n_names && k < CF_MAX_FQDNS; k++)
            r->fqdns[r->n_fqdns++] = (cf_str){f->names[k], strlen(f->names[k])};
        r->validity_s = f->validity_s;
        r->requester = (cf_str){f->requester, strlen(f->requester)};
        f->job.kind = ACME_JOB_ISSUE;
        f->job.done = fin_engine_done;
        f->job.arg = f;
        f->t = srv->threads[0];
        f->srv = srv;
        f->refs = 1;
        if (acme_issuer_submit(srv->issuer, &f->job) != 0) {
            free(f->csr);
            free(f);
            continue;
        }
        n++;
    }
    acme_q_end(&q);
    return rc < 0 ? -1 : n;
}

/* Expired pending objects (RFC 8555 §7.1.6: they end as invalid/expired;
 * nobody can use them) are deleted a day after they expired, with what
 * hangs off them. Valid authorizations past their expiry go too. */
int api_prune(acme_db *tx, void *arg)
{
    int64_t cutoff = acme_now() - 86400;
    int64_t *deleted = arg;
    int n, total = 0;
    if ((n = acme_db_exec(tx,
                          "DELETE FROM order_authzs WHERE order_id IN (SELECT id FROM orders WHERE status IN "
                          "('pending', 'ready', 'invalid') AND expires < ?)",
                          "i", cutoff)) < 0)
        return -1;
    if ((n = acme_db_exec(tx, "DELETE FROM orders WHERE status IN ('pending', 'ready', 'invalid') AND expires < ?", "i",
                          cutoff)) < 0)
        return -1;
    total += n;
    if ((n = acme_db_exec(tx,
                          "DELETE FROM challenges WHERE authz IN (SELECT id FROM authzs WHERE expires < ? AND "
                          "id NOT IN (SELECT authz FROM order_authzs))",
                          "i", cutoff)) < 0)
        return -1;
    if ((n = acme_db_exec(tx, "DELETE FROM authzs WHERE expires < ? AND id NOT IN (SELECT authz FROM order_authzs)", "i",
                          cutoff)) < 0)
        return -1;
    total += n;
    if ((n = acme_db_exec(tx, "DELETE FROM used_jti WHERE expires < ?", "i", acme_now())) < 0)
        return -1;
    *deleted = total;
    return 0;
}
