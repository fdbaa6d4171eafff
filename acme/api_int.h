/* api_int.h — what the handler files (api.c, api_order.c) share. */
#ifndef CF_ACME_API_INT_H
#define CF_ACME_API_INT_H

#include <jansson.h>

#include "acme/issuer.h"
#include "acme/ratelimit.h"
#include "acme/server.h"
#include "acme/validate.h"

/* How a POST must be signed (RFC 8555 §6.2). */
typedef enum auth_mode { AUTH_KID, AUTH_JWK, AUTH_EITHER } auth_mode;

/* Verify the JWS of a POST: content type, parse, §6.2 header rules, url,
 * nonce, key (kid → valid account, or jwk), signature; parse the payload.
 * 0: rq is authenticated; -1: rq has been answered (problem). */
int api_authenticate(acme_rq *rq, auth_mode mode);

/* URLs: base_url + "/acme/<kind>/<id>" */
void api_url(const acme_rq *rq, char *buf, size_t len, const char *kind, const char *id);
#define API_URL_MAX 320

/* The account row of the authenticated request's kid. */
typedef struct api_acct {
    char id[ACME_ID_LEN + 1];
    char thumb[ACME_THUMB_LEN + 1];
    acme_status status;
    char *jwk;     /* JSON text, malloc'd */
    char *contact; /* JSON array text or NULL, malloc'd */
    char *eab_kid;
    int64_t created;
} api_acct;
/* 1 found, 0 not found, -1 db error */
int api_account_load(acme_db *db, const char *id, api_acct *a);
int api_account_by_thumb(acme_db *db, const char *thumb, api_acct *a);
void api_account_clear(api_acct *a);
json_t *api_account_json(const acme_rq *rq, const api_acct *a);

/* Handlers */
void api_new_account(acme_rq *rq);
void api_account(acme_rq *rq, const char *id, bool orders_list);
void api_key_change(acme_rq *rq);
void api_new_order(acme_rq *rq);
void api_order(acme_rq *rq, const char *id);
void api_finalize(acme_rq *rq, const char *id);
void api_authz(acme_rq *rq, const char *id);
void api_challenge(acme_rq *rq, const char *id);
void api_cert(acme_rq *rq, const char *id);
void api_revoke(acme_rq *rq);
void api_renewal_info(acme_rq *rq, const char *certid);

/* The answer for a database failure. */
void api_internal(acme_rq *rq, const char *what);

/* Insert the certificate an ISSUE job got (facts read from its DER, the
 * chain as PEM): 0 with its id (serial hex) in cert_id, or -1. */
int api_record_issued(acme_db *tx, const char *order, const char *account, const acme_job *j, char cert_id[65]);
/* (the certforged profile it was issued under is j->req.profile) */

/* The NF types granted by the authority token of an order's NfInstanceId
 * authorization (JSON array text, malloc'd), or NULL. */
char *api_order_nf_types(acme_db *db, const char *order);

/* GET (where allowed) or POST-as-GET of a STAR order's current certificate
 * (RFC 8739 §3.3). */
void api_star_cert(acme_rq *rq, const char *order);

/* A problem document as JSON text (malloc'd), for storing. */
char *api_problem_text(acme_problem p, const char *detail);

/* Start-up: take up validations and finalizations a previous run left
 * (count resubmitted, or -1). */
int api_resume(acme_srv *srv, acme_db *db);
/* A store transaction deleting expired objects; arg: int64_t count. */
int api_prune(acme_db *tx, void *arg);

#endif
