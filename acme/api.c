/* api.c — RFC 8555 resources: routing, request authentication (§6.2-6.5),
 * directory (§7.1.1), nonces (§7.2), accounts (§7.3) with external
 * account binding (§7.3.4) and key change (§7.3.5). Orders and what
 * hangs off them are in api_order.c. */
#include "acme/api_int.h"
#include "acme/anchors.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------ helpers */

void api_url(const acme_rq *rq, char *buf, size_t len, const char *kind, const char *id)
{
    if (id)
        snprintf(buf, len, "%s/acme/%s/%s", rq->srv->cfg->base_url, kind, id);
    else
        snprintf(buf, len, "%s/acme/%s", rq->srv->cfg->base_url, kind);
}

void api_internal(acme_rq *rq, const char *what)
{
    acme_log(rq->srv, ACME_LOG_ERROR, "event=internal_error path=%s what=\"%s\" db=\"%s\"", rq->path, what,
             rq->db ? acme_db_error(rq->db) : "");
    acme_rq_problem(rq, ACME_P_SERVER_INTERNAL, "internal error; the operator's log has the details", NULL);
}

char *api_problem_text(acme_problem p, const char *detail)
{
    char t[128];
    snprintf(t, sizeof(t), "urn:ietf:params:acme:error:%s", acme_problem_name(p));
    json_t *e = json_pack("{s:s, s:s, s:i}", "type", t, "detail", detail ? detail : "", "status",
                          acme_problem_http_status(p));
    char *s = e ? json_dumps(e, JSON_COMPACT) : NULL;
    json_decref(e);
    return s;
}

static acme_problem jws_problem(acme_jws_err e)
{
    switch (e) {
    case ACME_JWS_E_BAD_ALG:
        return ACME_P_BAD_SIGNATURE_ALGORITHM;
    case ACME_JWS_E_BAD_KEY:
        return ACME_P_BAD_PUBLIC_KEY;
    case ACME_JWS_E_INTERNAL:
        return ACME_P_SERVER_INTERNAL;
    default:
        return ACME_P_MALFORMED;
    }
}

/* ------------------------------------------------------------ accounts */

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static int account_row(acme_q *q, api_acct *a)
{
    int rc = acme_q_next(q);
    if (rc == 1) {
        snprintf(a->id, sizeof(a->id), "%s", acme_q_text(q, 0));
        snprintf(a->thumb, sizeof(a->thumb), "%s", acme_q_text(q, 1));
        a->jwk = dup_or_null(acme_q_text(q, 2));
        int st = acme_status_from_name(acme_q_text(q, 3));
        a->status = st < 0 ? ACME_S_INVALID : (acme_status)st;
        a->contact = dup_or_null(acme_q_text(q, 4));
        a->eab_kid = dup_or_null(acme_q_text(q, 5));
        a->created = acme_q_int(q, 6);
        if (!a->jwk)
            rc = -1;
    }
    acme_q_end(q);
    return rc;
}

int api_account_load(acme_db *db, const char *id, api_acct *a)
{
    memset(a, 0, sizeof(*a));
    acme_q q;
    if (acme_db_query(db, &q, "SELECT id, thumbprint, jwk, status, contact, eab_kid, created FROM accounts WHERE id = ?",
                      "s", id) != 0)
        return -1;
    return account_row(&q, a);
}

int api_account_by_thumb(acme_db *db, const char *thumb, api_acct *a)
{
    memset(a, 0, sizeof(*a));
    acme_q q;
    if (acme_db_query(db, &q,
                      "SELECT id, thumbprint, jwk, status, contact, eab_kid, created FROM accounts WHERE thumbprint = ?",
                      "s", thumb) != 0)
        return -1;
    return account_row(&q, a);
}

void api_account_clear(api_acct *a)
{
    free(a->jwk);
    free(a->contact);
    free(a->eab_kid);
    memset(a, 0, sizeof(*a));
}

json_t *api_account_json(const acme_rq *rq, const api_acct *a)
{
    char orders[API_URL_MAX];
    snprintf(orders, sizeof(orders), "%s/acme/acct/%s/orders", rq->srv->cfg->base_url, a->id);
    json_t *j = json_pack("{s:s, s:s}", "status", acme_status_name(a->status), "orders", orders);
    if (!j)
        return NULL;
    json_t *c = a->contact ? json_loads(a->contact, 0, NULL) : NULL;
    json_object_set_new(j, "contact", c ? c : json_array());
    if (rq->srv->cfg->terms_of_service)
        json_object_set_new(j, "termsOfServiceAgreed", json_true());
    if (a->eab_kid) {
        json_t *eab = json_pack("{s:s}", "kid", a->eab_kid);
        if (eab)
            json_object_set_new(j, "externalAccountBinding", eab);
    }
    char created[32];
    acme_time_rfc3339(a->created, created, sizeof(created));
    json_object_set_new(j, "createdAt", json_string(created));
    return j;
}

/* ------------------------------------------------------------ authentication */

int api_authenticate(acme_rq *rq, auth_mode mode)
{
    char msg[256] = "";
    acme_jws_err je = ACME_JWS_OK;
    struct evkeyvalq *h = evhttp_request_get_input_headers(rq->req);
    const char *ct = evhttp_find_header(h, "Content-Type");
    /* RFC 8555 §6.2: application/jose+json; parameters are tolerated */
    if (!ct || strncasecmp(ct, "application/jose+json", 21) != 0 || (ct[21] && ct[21] != ';' && ct[21] != ' ')) {
        rq->http_status = 415;
        acme_rq_problem(rq, ACME_P_MALFORMED, "Content-Type must be application/jose+json (RFC 8555 §6.2)", NULL);
        return -1;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(rq->req);
    size_t len = evbuffer_get_length(in);
    const char *body = (const char *)evbuffer_pullup(in, -1);
    if (len == 0 || !body) {
        acme_rq_problem(rq, ACME_P_MALFORMED, "empty body: a JWS is required", NULL);
        return -1;
    }
    if (acme_jws_parse(body, len, &rq->jws, &je, msg, sizeof(msg)) != 0) {
        acme_rq_problem(rq, jws_problem(je), msg, NULL);
        return -1;
    }
    rq->have_jws = true;
    /* §6.5: a missing, unknown, used or expired nonce is badNonce, checked
     * before anything else so that the client's retry (with the nonce of
     * this answer) is the only round trip lost */
    if (!rq->jws.nonce || acme_nonce_redeem(rq->srv->nonces, rq->jws.nonce) != 0) {
        acme_rq_problem(rq, ACME_P_BAD_NONCE,
                        rq->jws.nonce ? "the nonce is unknown, used before or expired: retry with the one in this answer"
                                      : "the protected header has no nonce (RFC 8555 §6.5)",
                        NULL);
        return -1;
    }
    if (acme_jws_check_acme(&rq->jws, 1, &je, msg, sizeof(msg)) != 0) {
        acme_rq_problem(rq, jws_problem(je), msg, NULL);
        return -1;
    }
    /* §6.4: the url header equals the request URL */
    char url[API_URL_MAX * 2];
    snprintf(url, sizeof(url), "%s%s", rq->srv->cfg->base_url, evhttp_request_get_uri(rq->req));
    if (strcmp(rq->jws.url, url) != 0) {
        acme_rq_problemf(rq, ACME_P_UNAUTHORIZED, "the JWS url header '%.200s' is not the request URL '%.200s' (RFC 8555 §6.4)",
                         rq->jws.url, url);
        return -1;
    }
    api_acct acct = {0};
    if (rq->jws.kid) {
        if (mode == AUTH_JWK) {
            acme_rq_problem(rq, ACME_P_MALFORMED, "this resource needs a jwk header, not kid (RFC 8555 §6.2)", NULL);
            return -1;
        }
        size_t pl = strlen(rq->srv->cfg->base_url) + strlen("/acme/acct/");
        if (strncmp(rq->jws.kid, rq->srv->cfg->base_url, strlen(rq->srv->cfg->base_url)) != 0 ||
            strncmp(rq->jws.kid + strlen(rq->srv->cfg->base_url), "/acme/acct/", 11) != 0 ||
            strlen(rq->jws.kid + pl) != ACME_ID_LEN) {
            acme_rq_problem(rq, ACME_P_ACCOUNT_DOES_NOT_EXIST, "kid is not an account URL of this server", NULL);
            return -1;
        }
        int rc = api_account_load(rq->db, rq->jws.kid + pl, &acct);
        if (rc < 0) {
            api_internal(rq, "account lookup");
            return -1;
        }
        if (rc == 0) {
            acme_rq_problem(rq, ACME_P_ACCOUNT_DOES_NOT_EXIST, "no such account", NULL);
            return -1;
        }
        if (acct.status != ACME_S_VALID) {
            acme_rq_problemf(rq, ACME_P_UNAUTHORIZED, "the account is %s", acme_status_name(acct.status));
            api_account_clear(&acct);
            return -1;
        }
        snprintf(rq->account, sizeof(rq->account), "%s", acct.id);
        snprintf(rq->thumb, sizeof(rq->thumb), "%s", acct.thumb);
        snprintf(rq->eab_kid, sizeof(rq->eab_kid), "%s", acct.eab_kid ? acct.eab_kid : "");
        json_t *jwk = json_loads(acct.jwk, 0, NULL);
        api_account_clear(&acct);
        if (!jwk) {
            api_internal(rq, "stored JWK unreadable");
            return -1;
        }
        rq->key = acme_thread_key(rq->t, jwk, rq->thumb, &je, msg, sizeof(msg));
        json_decref(jwk);
    } else {
        if (mode == AUTH_KID) {
            acme_rq_problem(rq, ACME_P_MALFORMED, "this resource needs a kid header (an account URL), not jwk (RFC 8555 §6.2)",
                            NULL);
            return -1;
        }
        if (acme_jwk_thumbprint(rq->jws.jwk, rq->thumb) != 0) {
            acme_rq_problem(rq, ACME_P_BAD_PUBLIC_KEY, "the jwk is not a key this server accepts", NULL);
            return -1;
        }
        rq->jwk = rq->jws.jwk;
        rq->key = acme_thread_key(rq->t, rq->jws.jwk, rq->thumb, &je, msg, sizeof(msg));
    }
    if (!rq->key) {
        acme_rq_problem(rq, jws_problem(je), msg, NULL);
        return -1;
    }
    EVP_PKEY_up_ref(rq->key);
    if (acme_jws_verify(&rq->jws, rq->key, &je, msg, sizeof(msg)) != 0) {
        acme_rq_problem(rq, jws_problem(je), msg, NULL);
        return -1;
    }
    if (rq->jws.payload_len > 0) {
        json_error_t jerr;
        rq->payload = json_loadb((const char *)rq->jws.payload, rq->jws.payload_len, JSON_REJECT_DUPLICATES, &jerr);
        if (!rq->payload || !json_is_object(rq->payload)) {
            acme_rq_problemf(rq, ACME_P_MALFORMED, "the payload is not a JSON object%s%s", rq->payload ? "" : ": ",
                             rq->payload ? "" : jerr.text);
            return -1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------ directory, nonce */

json_t *acme_api_directory(const acme_srv *srv)
{
    const acme_cfg *c = srv->cfg;
    char u[6][API_URL_MAX];
    const char *names[] = {"new-nonce", "new-account", "new-order", "revoke-cert", "key-change", "renewal-info"};
    for (int i = 0; i < 6; i++)
        snprintf(u[i], sizeof(u[i]), "%s/acme/%s", c->base_url, names[i]);
    json_t *meta = json_pack("{s:b}", "externalAccountRequired", c->eab_required);
    json_t *profiles = json_object();
    for (unsigned i = 0; i < c->n_profiles; i++)
        json_object_set_new(profiles, c->profiles[i].name, json_string(c->profiles[i].description));
    json_object_set_new(meta, "profiles", profiles);
    if (c->terms_of_service)
        json_object_set_new(meta, "termsOfService", json_string(c->terms_of_service));
    if (c->website)
        json_object_set_new(meta, "website", json_string(c->website));
    if (c->trust_anchors_file) { /* certforge's: where the operator's roots are published */
        char ta[API_URL_MAX];
        snprintf(ta, sizeof(ta), "%s/acme/trust-anchors", c->base_url);
        json_object_set_new(meta, "trustAnchors", json_string(ta));
    }
    if (c->star_enabled) /* RFC 8739 §3.1.4 */
        json_object_set_new(meta, "auto-renewal",
                            json_pack("{s:I, s:I, s:b}", "min-lifetime", (json_int_t)c->star_min_lifetime_s, "max-duration",
                                      (json_int_t)c->star_max_duration_s, "allow-certificate-get", c->star_allow_get));
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:o}", "newNonce", u[0], "newAccount", u[1], "newOrder", u[2],
                     "revokeCert", u[3], "keyChange", u[4], "renewalInfo", u[5], "meta", meta);
}

static void api_directory(acme_rq *rq)
{
    acme_rq_json(rq, 200, acme_api_directory(rq->srv), NULL);
}

/* The operator's trust anchors (docs/acme.md): PEM, or PKCS#7 certs-only
 * base64 as EST's /cacerts (RFC 7030 §4.1.3); ETag / If-None-Match. */
static void api_trust_anchors(acme_rq *rq, bool p7)
{
    acme_srv *srv = rq->srv; /* rq is gone once answered */
    acme_anchors *a = acme_server_anchors_get(srv);
    if (!a) {
        rq->http_status = 404;
        acme_rq_problem(rq, ACME_P_MALFORMED, "this server publishes no trust anchors (trust_anchors is not set)", NULL);
        return;
    }
    const char *inm = evhttp_find_header(evhttp_request_get_input_headers(rq->req), "If-None-Match");
    acme_rq_header(rq, "ETag", a->etag);
    if (inm && (strcmp(inm, a->etag) == 0 || strcmp(inm, "*") == 0)) {
        acme_rq_raw(rq, 304, NULL, "", 0);
    } else if (p7) {
        acme_rq_header(rq, "Content-Transfer-Encoding", "base64");
        acme_rq_raw(rq, 200, "application/pkcs7-mime; smime-type=certs-only", a->p7_b64, a->p7_len);
    } else {
        acme_rq_raw(rq, 200, "application/pem-certificate-chain", a->pem, a->pem_len);
    }
    acme_server_anchors_put(srv, a);
}

static void api_new_nonce(acme_rq *rq)
{
    /* §7.2: HEAD answers 200, GET 204; Replay-Nonce comes with every answer */
    acme_rq_raw(rq, rq->method == ACME_HEAD ? 200 : 204, NULL, "", 0);
}

/* ------------------------------------------------------------ newAccount */

typedef struct new_acct {
    char id[ACME_ID_LEN + 1];
    char thumb[ACME_THUMB_LEN + 1];
    char *jwk;
    char *contact;
    char eab_kid[128];
    bool has_eab;
    int64_t created;
    char addr[64];
    char existing[ACME_ID_LEN + 1]; /* set when another request created it first */
} new_acct;

static void new_acct_free(new_acct *n)
{
    free(n->jwk);
    free(n->contact);
    free(n);
}

static int tx_new_account(acme_db *tx, void *arg)
{
    new_acct *n = arg;
    acme_q q;
    if (acme_db_query(tx, &q, "SELECT id FROM accounts WHERE thumbprint = ?", "s", n->thumb) != 0)
        return -1;
    int rc = acme_q_next(&q);
    if (rc == 1)
        snprintf(n->existing, sizeof(n->existing), "%s", acme_q_text(&q, 0));
    acme_q_end(&q);
    if (rc < 0)
        return -1;
    if (rc == 1)
        return 0;
    if (n->has_eab) {
        int c = acme_db_exec(tx, "UPDATE eab_keys SET account = ? WHERE kid = ? AND account IS NULL AND revoked = 0", "ss",
                             n->id, n->eab_kid);
        if (c < 0)
            return -1;
        if (c == 0)
            return ACME_P_UNAUTHORIZED; /* bound to another account meanwhile, or revoked */
    }
    return acme_db_exec(tx,
                        "INSERT INTO accounts(id, thumbprint, jwk, status, contact, eab_kid, created, address) "
                        "VALUES(?, ?, ?, 'valid', ?, ?, ?, ?)",
                        "sssssis", n->id, n->thumb, n->jwk, n->contact, n->has_eab ? n->eab_kid : NULL, n->created,
                        n->addr) == 1
               ? 0
               : -1;
}

static void account_answer(acme_rq *rq, const char *id, int status)
{
    api_acct a;
    int rc = api_account_load(rq->db, id, &a);
    if (rc <= 0) {
        api_internal(rq, "account reload");
        return;
    }
    char loc[API_URL_MAX];
    api_url(rq, loc, sizeof(loc), "acct", id);
    snprintf(rq->account, sizeof(rq->account), "%s", id);
    json_t *j = api_account_json(rq, &a);
    api_account_clear(&a);
    acme_rq_json(rq, status, j, loc);
}

static void new_account_done(acme_rq *rq, void *arg, int rc)
{
    new_acct *n = arg;
    if (rc == 0) {
        if (n->existing[0]) {
            account_answer(rq, n->existing, 200);
        } else {
            atomic_fetch_add_explicit(&rq->srv->ctr.accounts, 1, memory_order_relaxed);
            acme_log(rq->srv, ACME_LOG_INFO, "event=account_created account=%s eab=%s", n->id,
                     n->has_eab ? n->eab_kid : "-");
            account_answer(rq, n->id, 201);
        }
    } else if (rc == ACME_P_UNAUTHORIZED) {
        acme_rq_problem(rq, ACME_P_UNAUTHORIZED, "the external account binding key is revoked or bound to another account",
                        NULL);
    } else if (rc > 0) {
        acme_rq_problem(rq, (acme_problem)rc, "", NULL);
    } else {
        api_internal(rq, "account insert");
    }
    new_acct_free(n);
}

/* RFC 8555 §7.3: contact URLs. mailto: with exactly one address and no
 * header fields (Boulder's rule); other schemes are unsupported. */
static int check_contacts(acme_rq *rq, const json_t *contact, char **out)
{
    *out = NULL;
    if (!contact)
        return 0;
    if (!json_is_array(contact)) {
        acme_rq_problem(rq, ACME_P_MALFORMED, "contact must be an array of URLs", NULL);
        return -1;
    }
    if (json_array_size(contact) > ACME_MAX_CONTACTS) {
        acme_rq_problemf(rq, ACME_P_INVALID_CONTACT, "at most %d contacts", ACME_MAX_CONTACTS);
        return -1;
    }
    size_t i;
    json_t *v;
    json_array_foreach(contact, i, v)
    {
        const char *s = json_string_value(v);
        if (!s) {
            acme_rq_problem(rq, ACME_P_MALFORMED, "contact entries must be strings", NULL);
            return -1;
        }
        if (strncmp(s, "mailto:", 7) != 0) {
            acme_rq_problemf(rq, ACME_P_UNSUPPORTED_CONTACT, "only mailto: contacts are supported, not '%.100s'", s);
            return -1;
        }
        const char *addr = s + 7, *at = strchr(addr, '@');
        size_t n = strlen(s);
        if (n > ACME_MAX_CONTACT_LEN || !at || at == addr || !at[1] || strchr(at + 1, '@') || strpbrk(addr, "?,;<> \"\t\r\n")) {
            acme_rq_problemf(rq, ACME_P_INVALID_CONTACT, "'%.100s' is not one e-mail address without header fields", s);
            return -1;
        }
    }
    *out = json_dumps(contact, JSON_COMPACT);
    if (!*out) {
        api_internal(rq, "out of memory");
        return -1;
    }
    return 0;
}

/* §7.3.4: the binding is a JWS by the EAB key (HS256/384/512) over the
 * account's JWK, with kid = the EAB key id and url = the newAccount URL. */
static int check_eab(acme_rq *rq, const json_t *eab, char *kid_out, size_t kid_len)
{
    char msg[256] = "";
    acme_jws_err je;
    acme_jws inner;
    char *txt = json_dumps(eab, JSON_COMPACT);
    if (!txt) {
        acme_rq_problem(rq, ACME_P_MALFORMED, "externalAccountBinding is not a JWS object", NULL);
        return -1;
    }
    int rc = acme_jws_parse(txt, strlen(txt), &inner, &je, msg, sizeof(msg));
    free(txt);
    if (rc != 0) {
        acme_rq_problemf(rq, ACME_P_MALFORMED, "externalAccountBinding: %s", msg);
        return -1;
    }
    rc = -1;
    uint8_t key[256];
    size_t keylen = 0;
    if (acme_jws_check_eab(&inner, &je, msg, sizeof(msg)) != 0) {
        acme_rq_problemf(rq, jws_problem(je), "externalAccountBinding: %s", msg);
        goto out;
    }
    if (strcmp(inner.url, rq->jws.url) != 0) {
        acme_rq_problem(rq, ACME_P_MALFORMED, "externalAccountBinding: url is not the newAccount URL (RFC 8555 §7.3.4)", NULL);
        goto out;
    }
    json_t *bound = json_loadb((const char *)inner.payload, inner.payload_len, 0, NULL);
    int same = bound && json_equal(bound, rq->jws.jwk);
    json_decref(bound);
    if (!same) {
        acme_rq_problem(rq, ACME_P_MALFORMED, "externalAccountBinding: the payload is not this request's jwk", NULL);
        goto out;
    }
    acme_q q;
    if (acme_db_query(rq->db, &q, "SELECT hmac, account, revoked FROM eab_keys WHERE kid = ?", "s", inner.kid) != 0) {
        api_internal(rq, "eab lookup");
        goto out;
    }
    int found = acme_q_next(&q), bad = 0;
    if (found == 1) {
        size_t n;
        const void *p = acme_q_blob(&q, 0, &n);
        if (n <= sizeof(key)) {
            memcpy(key, p, n);
            keylen = n;
        }
        bad = !acme_q_null(&q, 1) || acme_q_int(&q, 2) != 0;
    }
    acme_q_end(&q);
    if (found < 0) {
        api_internal(rq, "eab lookup");
        goto out;
    }
    if (found == 0 || bad || keylen == 0) {
        acme_rq_problem(rq, ACME_P_UNAUTHORIZED, "externalAccountBinding: unknown, revoked or already used key id", NULL);
        goto out;
    }
    if (acme_jws_verify_hmac(&inner, key, keylen, &je, msg, sizeof(msg)) != 0) {
        acme_rq_problem(rq, ACME_P_UNAUTHORIZED, "externalAccountBinding: the MAC does not verify", NULL);
        goto out;
    }
    snprintf(kid_out, kid_len, "%s", inner.kid);
    rc = 0;
out:
    OPENSSL_cleanse(key, sizeof(key));
    acme_jws_free(&inner);
    return rc;
}

void api_new_account(acme_rq *rq)
{
    if (api_authenticate(rq, AUTH_JWK) != 0)
        return;
    const json_t *p = rq->payload;
    if (!p) {
        acme_rq_problem(rq, ACME_P_MALFORMED, "newAccount needs a payload", NULL);
        return;
    }
    static const char *const known[] = {"contact", "termsOfServiceAgreed", "onlyReturnExisting",
                                        "externalAccountBinding", NULL};
    (void)known; /* unknown members are ignored (RFC 8555 §7.3: clients may send more) */
    const json_t *only = json_object_get(p, "onlyReturnExisting");
    const json_t *tos = json_object_get(p, "termsOfServiceAgreed");
    if ((only && !json_is_boolean(only)) || (tos && !json_is_boolean(tos))) {
        acme_rq_problem(rq, ACME_P_MALFORMED, "onlyReturnExisting and termsOfServiceAgreed are booleans", NULL);
        return;
    }
    api_acct a;
    int rc = api_account_by_thumb(rq->db, rq->thumb, &a);
    if (rc < 0) {
        api_internal(rq, "account lookup");
        return;
    }
    if (rc == 1) {
        /* §7.3.1: an existing account for this key: 200 with its URL */
        acme_status st = a.status;
        char id[ACME_ID_LEN + 1];
        snprintf(id, sizeof(id), "%s", a.id);
        api_account_clear(&a);
        if (st != ACME_S_VALID) {
            acme_rq_problemf(rq, ACME_P_UNAUTHORIZED, "the account of this key is %s", acme_status_name(st));
            return;
        }
        account_answer(rq, id, 200);
        return;
    }
    if (only && json_is_true(only)) {
        acme_rq_problem(rq, ACME_P_ACCOUNT_DOES_NOT_EXIST, "no account for this key", NULL);
        return;
    }
    if (rq->srv->cfg->terms_of_service && !(tos && json_is_true(tos))) {
        acme_rq_problem(rq, ACME_P_MALFORMED, "the terms of service must be agreed to (termsOfServiceAgreed)", NULL);
        return;
    }
    const json_t *contact = json_object_get(p, "contact");
    if (rq->srv->cfg->contact_required && (!contact || json_array_size(contact) == 0)) {
        acme_rq_problem(rq, ACME_P_INVALID_CONTACT, "this server requires a contact", NULL);
        return;
    }
    new_acct *n = calloc(1, sizeof(*n));
    if (!n) {
        api_internal(rq, "out of memory");
        return;
    }
    if (check_contacts(rq, contact, &n->contact) != 0) {
        new_acct_free(n);
        return;
    }
    const json_t *eab = json_object_get(p, "externalAccountBinding");
    if (eab) {
        if (check_eab(rq, eab, n->eab_kid, sizeof(n->eab_kid)) != 0) {
            new_acct_free(n);
            return;
        }
        n->has_eab = true;
    } else if (rq->srv->cfg->eab_required) {
        acme_rq_problem(rq, ACME_P_EXTERNAL_ACCOUNT_REQUIRED,
                        "this server requires an external account binding (RFC 8555 §7.3.4); ask the operator for a key id and "
                        "HMAC key",
                        NULL);
        new_acct_free(n);
        return;
    }
    int64_t wait = acme_ratelimit_take(rq->srv->limits, ACME_RL_ACCOUNTS_ADDRESS, rq->addr);
    if (wait > 0) {
        char ra[32];
        snprintf(ra, sizeof(ra), "%lld", (long long)wait);
        acme_rq_header(rq, "Retry-After", ra);
        acme_rq_problem(rq, ACME_P_RATE_LIMITED, "too many new accounts from this address in the last hour", NULL);
        new_acct_free(n);
        return;
    }
    n->jwk = json_dumps(rq->jws.jwk, JSON_COMPACT | JSON_SORT_KEYS);
    if (!n->jwk || acme_random_id(n->id, 16) != 0) {
        new_acct_free(n);
        api_internal(rq, "out of memory");
        return;
    }
    snprintf(n->thumb, sizeof(n->thumb), "%s", rq->thumb);
    snprintf(n->addr, sizeof(n->addr), "%s", rq->addr);
    n->created = acme_now();
    acme_rq_submit(rq, tx_new_account, n, new_account_done);
}

/* ------------------------------------------------------------ account update */

typedef struct upd_acct {
    char id[ACME_ID_LEN + 1];
    char *contact;
    bool deactivate;
} upd_acct;

static int tx_update_account(acme_db *tx, void *arg)
{
    upd_acct *u = arg;
    if (u->deactivate) {
        if (acme_db_exec(tx, "UPDATE accounts SET status = 'deactivated' WHERE id = ? AND status = 'valid'", "s", u->id) < 0)
            return -1;
        /* §7.3.6: pending operations of the account end with it */
        if (acme_db_exec(tx, "UPDATE authzs SET status = 'deactivated' WHERE account = ? AND status = 'pending'", "s",
                         u->id) < 0)
            return -1;
        return acme_db_exec(tx,
                            "UPDATE orders SET status = 'invalid' WHERE account = ? AND status IN ('pending', 'ready')",
                            "s", u->id) < 0
                   ? -1
                   : 0;
    }
    return acme_db_exec(tx, "UPDATE accounts SET contact = ? WHERE id = ?", "ss", u->contact, u->id) < 0 ? -1 : 0;
}

static void update_account_done(acme_rq *rq, void *arg, int rc)
{
    upd_acct *u = arg;
    if (rc != 0) {
        api_internal(rq, "account update");
    } else {
        if (u->deactivate)
            acme_log(rq->srv, ACME_LOG_INFO, "event=account_deactivated account=%s", u->id);
        account_answer(rq, u->id, 200);
    }
    free(u->contact);
    free(u);
}

static void orders_list(acme_rq *rq, const char *id)
{
    acme_q q;
    if (acme_db_query(rq->db, &q,
                      "SELECT id FROM orders WHERE account = ? AND status IN ('pending', 'ready', 'processing', 'valid') "
                      "AND expires > ? ORDER BY created DESC LIMIT 1000",
                      "si", id, acme_now()) != 0) {
        api_internal(rq, "orders list");
        return;
    }
    json_t *arr = json_array();
    int rc;
    while ((rc = acme_q_next(&q)) == 1) {
        char u[API_URL_MAX];
        api_url(rq, u, sizeof(u), "order", acme_q_text(&q, 0));
        json_array_append_new(arr, json_string(u));
    }
    acme_q_end(&q);
    if (rc < 0) {
        json_decref(arr);
        api_internal(rq, "orders list");
        return;
    }
    acme_rq_json(rq, 200, json_pack("{s:o}", "orders", arr), NULL);
}

void api_account(acme_rq *rq, const char *id, bool list)
{
    if (api_authenticate(rq, AUTH_KID) != 0)
        return;
    if (strcmp(id, rq->account) != 0) {
        acme_rq_problem(rq, ACME_P_UNAUTHORIZED, "the account URL is not the one of the signing key", NULL);
        return;
    }
    if (list) {
        orders_list(rq, id);
        return;
    }
    if (!rq->payload) { /* POST-as-GET */
        account_answer(rq, id, 200);
        return;
    }
    const json_t *st = json_object_get(rq->payload, "status");
    const json_t *contact = json_object_get(rq->payload, "contact");
    upd_acct *u = calloc(1, sizeof(*u));
    if (!u) {
        api_internal(rq, "out of memory");
        return;
    }
    snprintf(u->id, sizeof(u->id), "%s", id);
    if (st) {
        if (!json_is_string(st) || strcmp(json_string_value(st), "deactivated") != 0) {
            free(u);
            acme_rq_problem(rq, ACME_P_MALFORMED, "status may only be set to \"deactivated\" (RFC 8555 §7.3.6)", NULL);
            return;
        }
        u->deactivate = true;
    } else if (contact) {
        if (check_contacts(rq, contact, &u->contact) != 0) {
            free(u);
            return;
        }
    } else {
        free(u);
        account_answer(rq, id, 200); /* nothing we change: the account as it is */
        return;
    }
    acme_rq_submit(rq, tx_update_account, u, update_account_done);
}

/* ------------------------------------------------------------ keyChange */

typedef struct key_change {
    char id[ACME_ID_LEN + 1];
    char old_thumb[ACME_THUMB_LEN + 1];
    char new_thumb[ACME_THUMB_LEN + 1];
    char *jwk;
    char conflict[ACME_ID_LEN + 1];
} key_change;

static int tx_key_change(acme_db *tx, void *arg)
{
    key_change *k = arg;
    acme_q q;
    if (acme_db_query(tx, &q, "SELECT id FROM accounts WHERE thumbprint = ?", "s", k->new_thumb) != 0)
        return -1;
    int rc = acme_q_next(&q);
    if (rc == 1)
        snprintf(k->conflict, sizeof(k->conflict), "%s", acme_q_text(&q, 0));
    acme_q_end(&q);
    if (rc != 0)
        return rc < 0 ? -1 : ACME_P_MALFORMED;
    int n = acme_db_exec(tx, "UPDATE accounts SET jwk = ?, thumbprint = ? WHERE id = ? AND thumbprint = ? AND status = 'valid'",
                         "ssss", k->jwk, k->new_thumb, k->id, k->old_thumb);
    return n < 0 ? -1 : n == 0 ? ACME_P_UNAUTHORIZED : 0;
}

static void key_change_done(acme_rq *rq, void *arg, int rc)
{
    key_change *k = arg;
    if (rc == 0) {
        acme_log(rq->srv, ACME_LOG_INFO, "event=key_change account=%s old=%s new=%s", k->id, k->old_thumb, k->new_thumb);
        account_answer(rq, k->id, 200);
    } else if (rc == ACME_P_MALFORMED && k->conflict[0]) {
        /* §7.3.5: the new key is another account's: 409 with its URL */
        char loc[API_URL_MAX];
        api_url(rq, loc, sizeof(loc), "acct", k->conflict);
        acme_rq_header(rq, "Location", loc);
        rq->http_status = 409;
        char t[] = "urn:ietf:params:acme:error:malformed";
        json_t *p = json_pack("{s:s, s:s, s:i}", "type", t, "detail", "the new key is already in use by another account",
                              "status", 409);
        rq->problem = ACME_P_MALFORMED;
        char *txt = p ? json_dumps(p, JSON_COMPACT) : NULL;
        json_decref(p);
        acme_rq_raw(rq, 409, "application/problem+json", txt ? txt : "", txt ? strlen(txt) : 0);
        free(txt);
    } else if (rc == ACME_P_UNAUTHORIZED) {
        acme_rq_problem(rq, ACME_P_UNAUTHORIZED, "the account's key changed meanwhile or it is no longer valid", NULL);
    } else {
        api_internal(rq, "key change");
    }
    free(k->jwk);
    free(k);
}

void api_key_change(acme_rq *rq)
{
    if (api_authenticate(rq, AUTH_KID) != 0)
        return;
    if (!rq->payload) {
        acme_rq_problem(rq, ACME_P_MALFORMED, "keyChange needs the inner JWS as payload (RFC 8555 §7.3.5)", NULL);
        return;
    }
    char msg[256] = "", nthumb[ACME_THUMB_LEN + 1], othumb[ACME_THUMB_LEN + 1];
    acme_jws_err je;
    acme_jws inner;
    if (acme_jws_parse((const char *)rq->jws.payload, rq->jws.payload_len, &inner, &je, msg, sizeof(msg)) != 0) {
        acme_rq_problemf(rq, jws_problem(je), "inner JWS: %s", msg);
        return;
    }
    EVP_PKEY *nk = NULL;
    acme_jws_alg fam;
    json_t *ip = NULL;
    /* §7.3.5: jwk (the new key), the same url; a nonce may be omitted */
    if (inner.kid || !inner.jwk || !inner.url || strcmp(inner.url, rq->jws.url) != 0) {
        acme_rq_problem(rq, ACME_P_MALFORMED, "inner JWS: needs a jwk (the new key), no kid, and the keyChange url", NULL);
        goto out;
    }
    if (inner.alg == ACME_JWS_ALG_NONE || inner.alg >= ACME_JWS_ALG_HS256) {
        acme_rq_problem(rq, ACME_P_BAD_SIGNATURE_ALGORITHM, "inner JWS: unsupported alg", NULL);
        goto out;
    }
    if (acme_jwk_import(inner.jwk, &nk, &fam, &je, msg, sizeof(msg)) != 0) {
        acme_rq_problemf(rq, jws_problem(je), "inner JWS: %s", msg);
        goto out;
    }
    if (acme_jws_verify(&inner, nk, &je, msg, sizeof(msg)) != 0) {
        acme_rq_problemf(rq, jws_problem(je), "inner JWS: %s", msg);
        goto out;
    }
    ip = json_loadb((const char *)inner.payload, inner.payload_len, 0, NULL);
    const char *acct = json_string_value(json_object_get(ip, "account"));
    const json_t *old = json_object_get(ip, "oldKey");
    char want[API_URL_MAX];
    api_url(rq, want, sizeof(want), "acct", rq->account);
    if (!acct || !old || strcmp(acct, rq->jws.kid) != 0 || strcmp(acct, want) != 0) {
        acme_rq_problem(rq, ACME_P_MALFORMED, "inner payload: account must be the signer's account URL, oldKey its key", NULL);
        goto out;
    }
    if (acme_jwk_thumbprint(old, othumb) != 0 || strcmp(othumb, rq->thumb) != 0) {
        acme_rq_problem(rq, ACME_P_MALFORMED, "inner payload: oldKey is not the account's current key", NULL);
        goto out;
    }
    if (acme_jwk_thumbprint(inner.jwk, nthumb) != 0) {
        acme_rq_problem(rq, ACME_P_BAD_PUBLIC_KEY, "inner JWS: unusable jwk", NULL);
        goto out;
    }
    key_change *k = calloc(1, sizeof(*k));
    if (!k || !(k->jwk = json_dumps(inner.jwk, JSON_COMPACT | JSON_SORT_KEYS))) {
        free(k);
        api_internal(rq, "out of memory");
        goto out;
    }
    snprintf(k->id, sizeof(k->id), "%s", rq->account);
    snprintf(k->old_thumb, sizeof(k->old_thumb), "%s", othumb);
    snprintf(k->new_thumb, sizeof(k->new_thumb), "%s", nthumb);
    acme_rq_submit(rq, tx_key_change, k, key_change_done);
out:
    json_decref(ip);
    EVP_PKEY_free(nk);
    acme_jws_free(&inner);
}

/* ------------------------------------------------------------ dispatch */

/* "/acme/<kind>/<id>[/<sub>]": id into idbuf when it has the id shape. */
static int route(const char *path, const char *kind, char *idbuf, const char **sub)
{
    size_t kl = strlen(kind);
    if (strncmp(path, "/acme/", 6) != 0 || strncmp(path + 6, kind, kl) != 0 || path[6 + kl] != '/')
        return 0;
    const char *id = path + 7 + kl;
    size_t n = strcspn(id, "/");
    if (n == 0 || n > 200)
        return 0;
    memcpy(idbuf, id, n);
    idbuf[n] = '\0';
    *sub = id[n] ? id + n : NULL;
    return 1;
}

static int id_shape(const char *id)
{
    if (strlen(id) != ACME_ID_LEN)
        return 0;
    for (const char *p = id; *p; p++)
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
            return 0;
    return 1;
}

void acme_api_handle(acme_rq *rq)
{
    const char *p = rq->path;
    char id[256];
    const char *sub = NULL;
    if (strcmp(p, "/directory") == 0) {
        if (rq->method == ACME_GET || rq->method == ACME_HEAD)
            api_directory(rq);
        else
            goto method;
        return;
    }
    if (strcmp(p, "/acme/new-nonce") == 0) {
        if (rq->method == ACME_GET || rq->method == ACME_HEAD)
            api_new_nonce(rq);
        else
            goto method;
        return;
    }
    if (strcmp(p, "/acme/trust-anchors") == 0 || strcmp(p, "/acme/trust-anchors.p7") == 0) {
        if (rq->method == ACME_GET || rq->method == ACME_HEAD)
            api_trust_anchors(rq, p[strlen(p) - 1] == '7');
        else
            goto method;
        return;
    }
    if (route(p, "star-cert", id, &sub) && !sub && id_shape(id)) {
        if (rq->method == ACME_GET || rq->method == ACME_POST)
            api_star_cert(rq, id);
        else
            goto method;
        return;
    }
    if (route(p, "renewal-info", id, &sub) && !sub) {
        if (rq->method == ACME_GET)
            api_renewal_info(rq, id);
        else
            goto method;
        return;
    }
    if (rq->method != ACME_POST) {
        /* §6.3: every other resource is fetched with POST-as-GET */
        if (strncmp(p, "/acme/", 6) == 0)
            goto method;
        goto notfound;
    }
    if (strcmp(p, "/acme/new-account") == 0)
        api_new_account(rq);
    else if (strcmp(p, "/acme/new-order") == 0)
        api_new_order(rq);
    else if (strcmp(p, "/acme/revoke-cert") == 0)
        api_revoke(rq);
    else if (strcmp(p, "/acme/key-change") == 0)
        api_key_change(rq);
    else if (route(p, "acct", id, &sub) && id_shape(id) && (!sub || strcmp(sub, "/orders") == 0))
        api_account(rq, id, sub != NULL);
    else if (route(p, "order", id, &sub) && id_shape(id) && !sub)
        api_order(rq, id);
    else if (route(p, "finalize", id, &sub) && id_shape(id) && !sub)
        api_finalize(rq, id);
    else if (route(p, "authz", id, &sub) && id_shape(id) && !sub)
        api_authz(rq, id);
    else if (route(p, "chall", id, &sub) && id_shape(id) && !sub)
        api_challenge(rq, id);
    else if (route(p, "cert", id, &sub) && !sub && strlen(id) <= 64)
        api_cert(rq, id);
    else
        goto notfound;
    return;
method:
    rq->http_status = 405;
    acme_rq_header(rq, "Allow", strcmp(p, "/directory") == 0 || strcmp(p, "/acme/new-nonce") == 0 ? "GET, HEAD"
                                : strncmp(p, "/acme/renewal-info/", 19) == 0                        ? "GET"
                                                                                                    : "POST");
    acme_rq_problem(rq, ACME_P_MALFORMED, "method not allowed for this resource (RFC 8555 §6.3: use POST-as-GET)", NULL);
    return;
notfound:
    rq->http_status = 404;
    static const char nf[] = "{\"type\":\"urn:ietf:params:acme:error:malformed\",\"detail\":\"no such resource\",\"status\":404}";
    rq->problem = ACME_P_MALFORMED;
    acme_rq_raw(rq, 404, "application/problem+json", nf, sizeof(nf) - 1);
}
