/* ledger.c — the backend-independent half of the ledger (ledger.h): backend
 * dispatch, serialization of calls, and the certificate fields the ledger
 * reads with engine/der. */
#include "engine/ledger/ledger.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/reason.h"
#include "engine/der/der.h"
#include "engine/ledger/ledger_backend.h"
#include "engine/oid.h"

static const char *const backend_names[LEDGER_BACKEND__MAX] = {"sqlite", "postgresql"};

const char *ledger_backend_name(ledger_backend b)
{
    return (unsigned)b < LEDGER_BACKEND__MAX ? backend_names[b] : "?";
}

static const ledger_ops *const backends[LEDGER_BACKEND__MAX] = {&ledger_sqlite_ops, &ledger_pg_ops};

struct ledger {
    const ledger_ops *ops;
    void *state;
    /* One call at a time: the pipeline's recorder thread (the only caller
     * of ledger_record_all), certforged's admin thread (REVOKE, CRL) and
     * its CRL publisher may call at once, and neither a SQLite connection
     * nor a libpq PGconn may be used by two threads at once (SQLite's WAL
     * allows one writer anyway). */
    pthread_mutex_t mu;
};

int ledger_open(const ledger_opts *o, ledger **out, char *err, size_t errlen)
{
    *out = NULL;
    if ((unsigned)o->backend >= LEDGER_BACKEND__MAX) {
        snprintf(err, errlen, "ledger: unknown backend %d", (int)o->backend);
        return -1;
    }
    if (o->backend == LEDGER_SQLITE && (!o->path || !o->path[0])) {
        snprintf(err, errlen, "ledger: no path");
        return -1;
    }
    if (o->backend == LEDGER_POSTGRESQL && !o->conninfo) {
        snprintf(err, errlen, "ledger: no conninfo");
        return -1;
    }
    ledger *l = calloc(1, sizeof(*l));
    if (!l) {
        snprintf(err, errlen, "ledger: out of memory");
        return -1;
    }
    l->ops = backends[o->backend];
    if (l->ops->open(o, &l->state, err, errlen) != 0) {
        free(l);
        return -1;
    }
    pthread_mutex_init(&l->mu, NULL);
    *out = l;
    return 0;
}

void ledger_close(ledger *l)
{
    if (!l)
        return;
    l->ops->close(l->state);
    pthread_mutex_destroy(&l->mu);
    free(l);
}

int ledger_record(ledger *l, const ledger_rec *recs, size_t n, char *err, size_t errlen)
{
    return ledger_record_all(l, recs, n, NULL, 0, err, errlen);
}

int ledger_record_all(ledger *l, const ledger_rec *recs, size_t n, const ledger_sign_rec *signs,
                      size_t m, char *err, size_t errlen)
{
    if (n == 0 && m == 0)
        return 0;
    pthread_mutex_lock(&l->mu);
    int rc = l->ops->record(l->state, recs, n, signs, m, err, errlen);
    pthread_mutex_unlock(&l->mu);
    return rc;
}

/* RFC 5280 §5.3.1 CRLReason; 7 is not used. */
int ledger_revoke(ledger *l, const char *serial_hex, int reason, int64_t at, int64_t *at_out,
                  int *reason_out, char *err, size_t errlen)
{
    char serial[CF_SERIAL_HEX_MAX + 1];
    if (cf_serial_norm(serial_hex, serial) != 0) {
        snprintf(err, errlen, "'%s' is not a serial number (hex, at most 20 octets)",
                 serial_hex);
        return -1;
    }
    if (!cf_reason_name(reason)) {
        snprintf(err, errlen, "%d is not an RFC 5280 revocation reason", reason);
        return -1;
    }
    pthread_mutex_lock(&l->mu);
    int rc = l->ops->revoke(l->state, serial, reason, at, at_out, reason_out, err, errlen);
    pthread_mutex_unlock(&l->mu);
    return rc;
}

int ledger_list_revoked(ledger *l, const char *issuer_key, int64_t not_after_min,
                        ledger_revoked_fn cb, void *arg, char *err, size_t errlen)
{
    pthread_mutex_lock(&l->mu);
    int rc = l->ops->list_revoked(l->state, issuer_key, not_after_min, cb, arg, err, errlen);
    pthread_mutex_unlock(&l->mu);
    return rc;
}

int ledger_crl_next_number(ledger *l, const char *issuer_key, uint64_t *number, char *err,
                           size_t errlen)
{
    pthread_mutex_lock(&l->mu);
    int rc = l->ops->crl_next_number(l->state, issuer_key, number, err, errlen);
    pthread_mutex_unlock(&l->mu);
    return rc;
}

int ledger_crl_store(ledger *l, const char *issuer_key, uint64_t number, int64_t this_update,
                     int64_t next_update, const uint8_t *der, size_t len, char *err,
                     size_t errlen)
{
    pthread_mutex_lock(&l->mu);
    int rc = l->ops->crl_store(l->state, issuer_key, number, this_update, next_update, der, len,
                               err, errlen);
    pthread_mutex_unlock(&l->mu);
    return rc;
}

int ledger_crl_latest(ledger *l, const char *issuer_key, ledger_crl_fn cb, void *arg, char *err,
                      size_t errlen)
{
    pthread_mutex_lock(&l->mu);
    int rc = l->ops->crl_latest(l->state, issuer_key, cb, arg, err, errlen);
    pthread_mutex_unlock(&l->mu);
    return rc;
}

int ledger_list_signs(ledger *l, const char *key, size_t limit, ledger_sign_row_fn cb, void *arg,
                      char *err, size_t errlen)
{
    pthread_mutex_lock(&l->mu);
    int rc = l->ops->list_signs(l->state, key, limit, cb, arg, err, errlen);
    pthread_mutex_unlock(&l->mu);
    return rc;
}

int ledger_list(ledger *l, const ledger_filter *f, ledger_row_fn cb, void *arg, char *err,
                size_t errlen)
{
    static const ledger_filter none;
    char serial[CF_SERIAL_HEX_MAX + 1];
    ledger_filter g = f ? *f : none;
    if (g.serial) {
        if (cf_serial_norm(g.serial, serial) != 0) {
            snprintf(err, errlen, "'%s' is not a serial number (hex, at most 20 octets)",
                     g.serial);
            return -1;
        }
        g.serial = serial;
    }
    pthread_mutex_lock(&l->mu);
    int rc = l->ops->list(l->state, &g, cb, arg, err, errlen);
    pthread_mutex_unlock(&l->mu);
    return rc;
}

typedef struct find_arg {
    ledger_row_fn cb;
    void *arg;
    int found;
} find_arg;

static int find_cb(const ledger_rec *r, void *arg)
{
    find_arg *a = arg;
    a->found = 1;
    return a->cb ? a->cb(r, a->arg) : 0;
}

int ledger_find(ledger *l, const char *serial_hex, ledger_row_fn cb, void *arg, char *err,
                size_t errlen)
{
    find_arg a = {cb, arg, 0};
    ledger_filter f = {.serial = serial_hex, .limit = 1};
    int rc = ledger_list(l, &f, find_cb, &a, err, errlen);
    if (rc < 0)
        return -1;
    return a.found;
}

int ledger_schema_version(ledger *l)
{
    pthread_mutex_lock(&l->mu);
    int v = l->ops->schema_version(l->state);
    pthread_mutex_unlock(&l->mu);
    return v;
}

/* ------------------------------------------------------------ certificate fields */

typedef struct sbuf {
    char *p;
    size_t cap, len;
    bool cut;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->cut)
        return;
    if (b->len + n + 4 > b->cap) { /* room for "..." and the NUL */
        memcpy(b->p + b->len, "...", 3);
        b->len += 3;
        b->cut = true;
    } else {
        memcpy(b->p + b->len, s, n);
        b->len += n;
    }
    b->p[b->len] = 0;
}

static void sb_str(sbuf *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

/* Dotted decimal of OID contents (X.690 §8.19), for attribute types this
 * file has no short name for. */
static void sb_oid(sbuf *b, const uint8_t *v, size_t len)
{
    char num[24];
    uint64_t acc = 0;
    bool first = true;
    sb_str(b, "OID.");
    for (size_t i = 0; i < len; i++) {
        if (acc > (UINT64_MAX >> 7))
            return;
        acc = (acc << 7) | (v[i] & 0x7Fu);
        if (v[i] & 0x80u)
            continue;
        if (first) {
            unsigned top = acc < 40 ? 0 : acc < 80 ? 1 : 2;
            snprintf(num, sizeof(num), "%u.%llu", top, (unsigned long long)(acc - 40u * top));
            first = false;
        } else {
            snprintf(num, sizeof(num), ".%llu", (unsigned long long)acc);
        }
        sb_str(b, num);
        acc = 0;
    }
}

static const struct {
    const uint8_t *oid;
    size_t len;
    const char *name;
} attr_names[] = {
    {OID_C, sizeof(OID_C), "C"},
    {OID_O, sizeof(OID_O), "O"},
    {(const uint8_t *)"\x55\x04\x03", 3, "CN"},
    {(const uint8_t *)"\x55\x04\x0B", 3, "OU"},
    {(const uint8_t *)"\x55\x04\x07", 3, "L"},
    {(const uint8_t *)"\x55\x04\x08", 3, "ST"},
    {(const uint8_t *)"\x55\x04\x05", 3, "serialNumber"},
};

/* RFC 4514 §2.4: escape the specials with a backslash; control octets
 * become '?' (the text is for people; the DER is in the record). */
static void sb_value(sbuf *b, const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = (char)s[i];
        if (strchr(",+\"\\<>;=", c) || (i == 0 && (c == '#' || c == ' ')) ||
            (i == n - 1 && c == ' '))
            sb_put(b, "\\", 1);
        if ((unsigned char)c < 0x20 || c == 0x7F)
            c = '?';
        sb_put(b, &c, 1);
    }
}

/* Name ::= SEQUENCE OF RelativeDistinguishedName (RFC 5280 §4.1.2.4),
 * written in certificate order as "C=FI,O=...". */
static der_err render_name(const der_tlv *name, sbuf *b)
{
    der_cur rdns, set, atv;
    der_tlv rdn, a, oid, val;
    der_err e = der_enter(name, &rdns);
    bool first = true;
    while (e == DER_OK && rdns.p < rdns.end) {
        if ((e = der_expect(&rdns, DER_SET, &rdn)) || (e = der_enter(&rdn, &set)))
            break;
        bool first_in_set = true;
        while (e == DER_OK && set.p < set.end) {
            const uint8_t *s;
            size_t sl;
            if ((e = der_expect(&set, DER_SEQUENCE, &a)) || (e = der_enter(&a, &atv)) ||
                (e = der_read_oid(&atv, &oid)) || (e = der_next(&atv, &val)))
                break;
            sb_str(b, first ? "" : first_in_set ? "," : "+");
            const char *nm = NULL;
            for (size_t i = 0; i < sizeof(attr_names) / sizeof(attr_names[0]); i++)
                if (der_oid_eq(&oid, attr_names[i].oid, attr_names[i].len))
                    nm = attr_names[i].name;
            if (nm)
                sb_str(b, nm);
            else
                sb_oid(b, oid.val, oid.len);
            sb_str(b, "=");
            if (der_get_string(&val, &s, &sl) == DER_OK)
                sb_value(b, s, sl);
            else
                sb_str(b, "#?"); /* not a string type: see the certificate */
            first = first_in_set = false;
        }
    }
    return e;
}

/* GeneralNames (RFC 5280 §4.2.1.6) as "DNS:x,URI:y,IP:a.b.c.d". */
static der_err render_sans(const uint8_t *p, size_t len, sbuf *b)
{
    der_cur c, names;
    der_tlv seq, gn;
    der_cur_init(&c, p, len);
    der_err e = der_expect(&c, DER_SEQUENCE, &seq);
    if (e == DER_OK)
        e = der_enter(&seq, &names);
    bool first = true;
    while (e == DER_OK && names.p < names.end) {
        if ((e = der_next(&names, &gn)))
            break;
        sb_str(b, first ? "" : ",");
        first = false;
        if (gn.tag == DER_CTX(2) || gn.tag == DER_CTX(6) || gn.tag == DER_CTX(1)) {
            sb_str(b, gn.tag == DER_CTX(2) ? "DNS:" : gn.tag == DER_CTX(6) ? "URI:" : "email:");
            sb_value(b, gn.val, gn.len);
        } else if (gn.tag == DER_CTX(7) && gn.len == 4) {
            char ip[20];
            snprintf(ip, sizeof(ip), "IP:%u.%u.%u.%u", gn.val[0], gn.val[1], gn.val[2], gn.val[3]);
            sb_str(b, ip);
        } else {
            char t[24];
            snprintf(t, sizeof(t), "tag%x:?", gn.tag);
            sb_str(b, t);
        }
    }
    return e;
}

int ledger_cert_fields_of(const uint8_t *der, size_t len, char *text, size_t cap,
                          ledger_cert_fields *f)
{
    der_cur c, cert, tbs, val, exts;
    der_tlv t, tbs_t, x;
    const uint8_t *mag;
    size_t mlen;
    bool present;
    f->serial[0] = 0;
    f->not_before = f->not_after = 0;
    f->subject = f->sans = "";
    if (cap < 16)
        return -1;
    sbuf sub = {text, cap / 2, 0, false};
    text[0] = 0;
    der_cur_init(&c, der, len);
    /* Certificate ::= SEQUENCE { tbsCertificate, ... } (RFC 5280 §4.1) */
    if (der_expect(&c, DER_SEQUENCE, &t) || der_enter(&t, &cert) ||
        der_expect(&cert, DER_SEQUENCE, &tbs_t) || der_enter(&tbs_t, &tbs) ||
        der_optional(&tbs, DER_CTX_CONS(0), &x, &present) || der_read_int_mag(&tbs, &mag, &mlen))
        return -1;
    if (mlen == 0 || mlen > CF_SERIAL_MAX)
        return -1;
    cf_hex_encode(mag, mlen, f->serial, sizeof(f->serial));
    /* signature, issuer, validity, subject, subjectPublicKeyInfo */
    if (der_expect(&tbs, DER_SEQUENCE, &x) || der_expect(&tbs, DER_SEQUENCE, &x) ||
        der_expect(&tbs, DER_SEQUENCE, &x) || der_enter(&x, &val) ||
        der_read_time(&val, &f->not_before) || der_read_time(&val, &f->not_after) ||
        der_expect(&tbs, DER_SEQUENCE, &x) || render_name(&x, &sub) ||
        der_expect(&tbs, DER_SEQUENCE, &x))
        return -1;
    f->subject = text;
    sbuf san = {text + sub.len + 1, cap - sub.len - 1, 0, false};
    san.p[0] = 0;
    f->sans = san.p;
    /* issuerUniqueID [1], subjectUniqueID [2], extensions [3] */
    if (der_optional(&tbs, DER_CTX(1), &x, &present) ||
        der_optional(&tbs, DER_CTX(2), &x, &present) ||
        der_optional(&tbs, DER_CTX_CONS(3), &x, &present))
        return -1;
    if (!present)
        return 0;
    der_tlv seq;
    if (der_enter(&x, &exts) || der_expect(&exts, DER_SEQUENCE, &seq) || der_enter(&seq, &exts))
        return -1;
    while (exts.p < exts.end) {
        der_tlv ext, oid, crit, oct;
        der_cur e;
        if (der_expect(&exts, DER_SEQUENCE, &ext) || der_enter(&ext, &e) ||
            der_read_oid(&e, &oid) || der_optional(&e, DER_BOOLEAN, &crit, &present) ||
            der_expect(&e, DER_OCTET_STRING, &oct))
            return -1;
        if (der_oid_eq(&oid, OID_SAN, sizeof(OID_SAN)) && render_sans(oct.val, oct.len, &san))
            return -1;
    }
    return 0;
}
