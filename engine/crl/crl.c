/* crl.c — RFC 5280 CRLs signed in the HSM, and their publisher. See crl.h.
 *
 *   CertificateList ::= SEQUENCE { tbsCertList, signatureAlgorithm,
 *                                  signatureValue BIT STRING }
 *   TBSCertList ::= SEQUENCE {
 *     version v2(1), signature AlgorithmIdentifier, issuer Name,
 *     thisUpdate Time, nextUpdate Time,
 *     revokedCertificates SEQUENCE OF SEQUENCE {
 *         userCertificate INTEGER, revocationDate Time,
 *         crlEntryExtensions { reasonCode } OPTIONAL } OPTIONAL,
 *     crlExtensions [0] EXPLICIT { authorityKeyIdentifier, cRLNumber } }
 *
 * Encoded with engine/der (an encoding, not cryptography); the digest and
 * the signature check are OpenSSL's, the signature the HSM's.
 */
#include "engine/crl/crl.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "common/serial.h"
#include "engine/der/der.h"
#include "engine/oid.h"
#include "engine/profile/profile.h"

static const uint8_t OID_CRL_NUMBER[] = {0x55, 0x1D, 0x14}; /* 2.5.29.20 */
static const uint8_t OID_REASON_CODE[] = {0x55, 0x1D, 0x15}; /* 2.5.29.21 */
static const uint8_t OID_IDP[] = {0x55, 0x1D, 0x1C};         /* 2.5.29.28 */

/* ------------------------------------------------------------ building */

typedef struct entry {
    uint8_t serial[CF_SERIAL_MAX];
    size_t len;
    int64_t at;
    int reason;
} entry;

typedef struct entries {
    entry *v;
    size_t n, cap;
    int bad;
    unsigned shard, n_shards; /* keep the serials of this shard only */
} entries;

static int collect(const char *serial_hex, int64_t at, int reason, void *arg)
{
    entries *e = arg;
    if (e->n_shards > 1) { /* another shard's serial: not in this CRL */
        uint8_t sn[CF_SERIAL_MAX];
        size_t sl;
        if (cf_hex_decode(serial_hex, sn, sizeof(sn), &sl) != 0) {
            e->bad = 1;
            return 1;
        }
        if (profile_crl_shard(sn, sl, e->n_shards) != e->shard)
            return 0;
    }
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 64;
        entry *v = realloc(e->v, cap * sizeof(*v));
        if (!v) {
            e->bad = 2;
            return 1;
        }
        e->v = v;
        e->cap = cap;
    }
    entry *x = &e->v[e->n];
    if (cf_hex_decode(serial_hex, x->serial, sizeof(x->serial), &x->len) != 0) {
        e->bad = 1;
        return 1;
    }
    x->at = at;
    x->reason = reason;
    e->n++;
    return 0;
}

static void w_ext_begin(der_w *w, const uint8_t *oid, size_t n, bool critical)
{
    der_w_begin(w, DER_SEQUENCE);
    der_w_oid(w, oid, n);
    if (critical)
        der_w_bool(w, true);
    der_w_begin(w, DER_OCTET_STRING);
}

static void w_ext_end(der_w *w)
{
    der_w_end(w);
    der_w_end(w);
}

/* One revokedCertificates entry. */
static void w_entry(der_w *w, const uint8_t *serial, size_t len, int64_t at, int reason)
{
    der_w_begin(w, DER_SEQUENCE);
    der_w_int_mag(w, serial, len);
    der_w_time(w, at);
    /* §5.3.1: reasonCode unspecified SHOULD be absent */
    if (reason != 0) {
        der_w_begin(w, DER_SEQUENCE);
        w_ext_begin(w, OID_REASON_CODE, sizeof(OID_REASON_CODE), false);
        uint8_t r = (uint8_t)reason;
        der_w_tlv(w, DER_ENUMERATED, &r, 1);
        w_ext_end(w);
        der_w_end(w);
    }
    der_w_end(w);
}

/* version .. nextUpdate: the TBSCertList's contents before revokedCertificates. */
static void w_tbs_head(der_w *w, const iss_issuer *is, const uint8_t *sigalg, size_t sigalg_len,
                       int64_t this_update, int64_t next_update)
{
    der_w_uint64(w, 1); /* v2 */
    der_w_raw(w, sigalg, sigalg_len);
    der_w_raw(w, is->dn.p, is->dn.len);
    der_w_time(w, this_update);
    der_w_time(w, next_update);
}

/* crlExtensions: the TBSCertList's contents after revokedCertificates. */
static void w_tbs_exts(der_w *w, const iss_issuer *is, uint64_t number, const char *idp)
{
    der_w_begin(w, DER_CTX_CONS(0));
    der_w_begin(w, DER_SEQUENCE);
    /* §5.2.1 authorityKeyIdentifier (keyIdentifier), non-critical */
    w_ext_begin(w, OID_AKI, sizeof(OID_AKI), false);
    der_w_begin(w, DER_SEQUENCE);
    der_w_tlv(w, DER_CTX(0), is->kid, is->kid_len);
    der_w_end(w);
    w_ext_end(w);
    /* §5.2.3 cRLNumber, non-critical */
    w_ext_begin(w, OID_CRL_NUMBER, sizeof(OID_CRL_NUMBER), false);
    der_w_uint64(w, number);
    w_ext_end(w);
    if (idp) {
        /* §5.2.5 issuingDistributionPoint, critical: a shard names its URL
         * (distributionPoint [0] { fullName [0] { URI [6] } }), nothing
         * else: it covers end-entity certificates of every reason. */
        w_ext_begin(w, OID_IDP, sizeof(OID_IDP), true);
        der_w_begin(w, DER_SEQUENCE);
        der_w_begin(w, DER_CTX_CONS(0));
        der_w_begin(w, DER_CTX_CONS(0));
        der_w_tlv(w, DER_CTX(6), idp, strlen(idp));
        der_w_end(w);
        der_w_end(w);
        der_w_end(w);
        w_ext_end(w);
    }
    der_w_end(w);
    der_w_end(w);
}

static void w_tbs(der_w *w, const iss_issuer *is, const uint8_t *sigalg, size_t sigalg_len,
                  const entries *e, uint64_t number, int64_t this_update, int64_t next_update,
                  const char *idp)
{
    der_w_begin(w, DER_SEQUENCE);
    w_tbs_head(w, is, sigalg, sigalg_len, this_update, next_update);
    if (e->n) { /* RFC 5280 §5.1.2.6: absent when empty */
        der_w_begin(w, DER_SEQUENCE);
        for (size_t i = 0; i < e->n; i++)
            w_entry(w, e->v[i].serial, e->v[i].len, e->v[i].at, e->v[i].reason);
        der_w_end(w);
    }
    w_tbs_exts(w, is, number, idp);
    der_w_end(w);
}

/* The whole buffer, across short writes and EINTR; -1 with errno. */
static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Write dir/NAME.crl (NAME: ISSUER, or ISSUER-K for shard K) atomically: a
 * reader sees the old file or the new one, never a part; after a crash, one
 * of the two. */
static int publish(const char *dir, const char *name, const uint8_t *der, size_t len, char *err,
                   size_t errlen)
{
    char tmp[4200], dst[4200];
    snprintf(dst, sizeof(dst), "%s/%s.crl", dir, name);
    snprintf(tmp, sizeof(tmp), "%s/.%s.crl.tmp", dir, name);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "cannot write %.300s: %s", tmp, strerror(errno));
        return -1;
    }
    if (write_all(fd, der, len) != 0) {
        snprintf(err, errlen, "cannot write %.300s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        return -1;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        snprintf(err, errlen, "cannot sync %.300s: %s", tmp, strerror(errno));
        unlink(tmp);
        return -1;
    }
    if (rename(tmp, dst) != 0) {
        snprintf(err, errlen, "cannot rename %.200s to %.200s: %s", tmp, dst, strerror(errno));
        unlink(tmp);
        return -1;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    return 0;
}

static const EVP_MD *mech_md(cf_sig_alg m)
{
    switch (m) {
    case CF_SIG_ECDSA_SHA256:
    case CF_SIG_RSA_PKCS1_SHA256:
    case CF_SIG_RSA_PSS_SHA256:
        return EVP_sha256();
    case CF_SIG_ECDSA_SHA384:
    case CF_SIG_RSA_PKCS1_SHA384:
    case CF_SIG_RSA_PSS_SHA384:
        return EVP_sha384();
    case CF_SIG_ECDSA_SHA512:
    case CF_SIG_RSA_PKCS1_SHA512:
    case CF_SIG_RSA_PSS_SHA512:
        return EVP_sha512();
    default:
        return NULL; /* Ed25519 signs the TBS itself */
    }
}

/* Does sig verify over the exact TBSCertList bytes with the issuer key?
 * Checked on the bytes about to be published, without parsing the CRL
 * into OpenSSL objects: d2i_X509_CRL of a million entries takes ~450 MiB
 * and seconds, a signature check over the TBS a few milliseconds of hashing.
 * (The encoder's structure is what tests check with `openssl crl`.) */
static bool sig_ok(EVP_PKEY *pub, cf_sig_alg m, const uint8_t *tbs, size_t tbs_len,
                   const uint8_t *sig, size_t siglen)
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pc = NULL;
    const EVP_MD *md = mech_md(m);
    bool ok = c && EVP_DigestVerifyInit(c, &pc, md, NULL, pub) == 1;
    if (ok && m >= CF_SIG_RSA_PSS_SHA256 && m <= CF_SIG_RSA_PSS_SHA512)
        ok = EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING) > 0 &&
             EVP_PKEY_CTX_set_rsa_mgf1_md(pc, md) > 0 &&
             EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, RSA_PSS_SALTLEN_DIGEST) > 0;
    ok = ok && EVP_DigestVerify(c, sig, siglen, tbs, tbs_len) == 1;
    EVP_MD_CTX_free(c);
    return ok;
}

/* Does the HSM's signature verify over the digest computed while the TBS
 * was streamed out (EVP_PKEY_verify: the digest is not recomputed)? */
static bool sig_ok_digest(EVP_PKEY *pub, cf_sig_alg m, const uint8_t *md, size_t mdlen,
                          const uint8_t *sig, size_t siglen)
{
    const EVP_MD *h = mech_md(m);
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new(pub, NULL);
    bool ok = h && pc && EVP_PKEY_verify_init(pc) == 1;
    if (ok && m >= CF_SIG_RSA_PSS_SHA256 && m <= CF_SIG_RSA_PSS_SHA512)
        ok = EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING) > 0 &&
             EVP_PKEY_CTX_set_rsa_mgf1_md(pc, h) > 0 &&
             EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, RSA_PSS_SALTLEN_DIGEST) > 0;
    else if (ok && m >= CF_SIG_RSA_PKCS1_SHA256 && m <= CF_SIG_RSA_PKCS1_SHA512)
        ok = EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PADDING) > 0;
    ok = ok && EVP_PKEY_CTX_set_signature_md(pc, h) > 0 &&
         EVP_PKEY_verify(pc, sig, siglen, md, mdlen) == 1;
    EVP_PKEY_CTX_free(pc);
    return ok;
}

/* ----------------------------------------------- the streamed writer
 *
 * Pass 1 walks the revoked list computing the count and the encoded length
 * of revokedCertificates; pass 2 walks it again encoding each entry into a
 * fixed buffer that is fed to the digest and written to the temporary
 * file, behind the definite lengths from pass 1. Memory: the buffer, not
 * the list. The ledger holds its lock per walk, not across both, so pass 2
 * checks that it produced exactly pass 1's octets (entries revoked or
 * expired in between) and the build starts again if not (CRL_STREAM_TRIES). */

#define CRL_STREAM_BUF 65536
#define CRL_STREAM_TRIES 3

typedef struct sink {
    unsigned shard, n_shards;
    int bad; /* 1 a serial is not hex, 2 I/O or digest failed (errno_) */
    int errno_;
    bool changed; /* pass 2: more octets than pass 1 counted */
    size_t n;     /* entries */
    uint64_t len; /* revokedCertificates contents octets */
    /* pass 2 only (fd >= 0) */
    uint64_t len_expect;
    int fd;
    EVP_MD_CTX *md;
    size_t used;
    uint8_t *buf; /* CRL_STREAM_BUF octets */
} sink;

static int sink_flush(sink *s)
{
    if (s->used &&
        (EVP_DigestUpdate(s->md, s->buf, s->used) != 1 || write_all(s->fd, s->buf, s->used) != 0)) {
        s->bad = 2;
        s->errno_ = errno;
        return -1;
    }
    s->used = 0;
    return 0;
}

static int sink_put(sink *s, const uint8_t *p, size_t n)
{
    while (n) {
        if (s->used == CRL_STREAM_BUF && sink_flush(s) != 0)
            return -1;
        size_t k = CRL_STREAM_BUF - s->used < n ? CRL_STREAM_BUF - s->used : n;
        memcpy(s->buf + s->used, p, k);
        s->used += k;
        p += k;
        n -= k;
    }
    return 0;
}

static int stream_cb(const char *serial_hex, int64_t at, int reason, void *arg)
{
    sink *s = arg;
    uint8_t sn[CF_SERIAL_MAX], enc[128];
    size_t sl, elen;
    if (cf_hex_decode(serial_hex, sn, sizeof(sn), &sl) != 0) {
        s->bad = 1;
        return 1;
    }
    if (s->n_shards > 1 && profile_crl_shard(sn, sl, s->n_shards) != s->shard)
        return 0; /* another shard's serial: not in this CRL */
    der_w w;
    der_w_init(&w, enc, sizeof(enc));
    w_entry(&w, sn, sl, at, reason);
    if (der_w_finish(&w, &elen) != DER_OK) {
        s->bad = 1;
        return 1;
    }
    if (s->fd >= 0) {
        if (s->len + elen > s->len_expect) {
            s->changed = true;
            return 1;
        }
        if (sink_put(s, enc, elen) != 0)
            return 1;
    }
    s->n++;
    s->len += elen;
    return 0;
}

/* Move len octets of fd from offset `from` down to `to` (< from), in chunks. */
static int shift_down(int fd, off_t from, off_t to, uint64_t len, uint8_t *buf, size_t cap)
{
    uint64_t done = 0;
    while (done < len) {
        size_t k = len - done < cap ? (size_t)(len - done) : cap;
        ssize_t r = pread(fd, buf, k, from + (off_t)done);
        if (r <= 0 || pwrite(fd, buf, (size_t)r, to + (off_t)done) != r)
            return -1;
        done += (uint64_t)r;
    }
    return 0;
}

static int pwrite_all(int fd, const uint8_t *p, size_t n, off_t off)
{
    while (n) {
        ssize_t w = pwrite(fd, p, n, off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
        off += w;
    }
    return 0;
}

/* Store the CRL's ledger row: the whole DER up to CRL_LEDGER_MAX (read
 * back from the file), else its metadata with an empty der (docs/ledger.md). */
static int store_from_file(ledger *l, const char *lname, uint64_t number, int64_t tu, int64_t nu,
                           int fd, uint64_t total, char *why, size_t whylen)
{
    static const uint8_t none[1];
    if (total > CRL_LEDGER_MAX)
        return ledger_crl_store(l, lname, number, tu, nu, none, 0, why, whylen);
    uint8_t *b = malloc(total ? (size_t)total : 1);
    if (!b) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    size_t got = 0;
    while (got < total) {
        ssize_t r = pread(fd, b + got, (size_t)total - got, (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            snprintf(why, whylen, "cannot read the CRL back: %s", r ? strerror(errno) : "short");
            free(b);
            return -1;
        }
        got += (size_t)r;
    }
    int rc = ledger_crl_store(l, lname, number, tu, nu, b, (size_t)total, why, whylen);
    free(b);
    return rc;
}

static int make_streamed(const iss_issuer *is, unsigned shard, sgn_service *sgn, ledger *l,
                         const char *dir, const char *fname, const char *lname, const char *idp,
                         int64_t now, uint64_t validity_s, const uint8_t *sigalg, size_t sigalg_len,
                         const char *who, crl_made *out, char *err, size_t errlen)
{
    const EVP_MD *h = mech_md(is->crl_mech);
    char tmp[4200], dst[4200], why[512];
    snprintf(dst, sizeof(dst), "%s/%s.crl", dir, fname);
    snprintf(tmp, sizeof(tmp), "%s/.%s.crl.tmp", dir, fname);
    int64_t next = now + (int64_t)validity_s;
    uint64_t number = 0;
    bool numbered = false;
    int fd = -1, rc = -1;
    EVP_MD_CTX *mdc = EVP_MD_CTX_new();
    sink *s2 = calloc(1, sizeof(*s2));
    uint8_t *sbuf = malloc(CRL_STREAM_BUF);
    size_t head_cap = 64 + is->dn.len + sigalg_len, exts_cap = 512 + CFG_URL_MAX + 16;
    uint8_t *head = malloc(head_cap), *exts = malloc(exts_cap);
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    uint64_t tbs_total = 0;
    off_t reserve = 0;
    size_t nentries = 0;
    if (!mdc || !s2 || !sbuf || !head || !exts) {
        snprintf(err, errlen, "%s: out of memory", who);
        goto out;
    }
    for (int attempt = 0;; attempt++) {
        if (attempt == CRL_STREAM_TRIES) {
            snprintf(err, errlen,
                     "%s: the revoked list changed between the two passes %d times; not "
                     "published",
                     who, CRL_STREAM_TRIES);
            goto out;
        }
        sink s1 = {.shard = shard, .n_shards = is->crl_shards, .fd = -1};
        if (ledger_list_revoked(l, is->key->name, now, stream_cb, &s1, why, sizeof(why)) != 0 ||
            s1.bad) {
            snprintf(err, errlen, "%s: cannot list revocations: %s", who,
                     s1.bad ? "a serial in the ledger is not hex" : why);
            goto out;
        }
        if (!numbered) {
            if (ledger_crl_next_number(l, is->key->name, &number, why, sizeof(why)) != 0) {
                snprintf(err, errlen, "%s: no cRLNumber: %s", who, why);
                goto out;
            }
            numbered = true;
        }
        size_t head_len = 0, exts_len = 0;
        der_w w;
        der_w_init(&w, head, head_cap);
        w_tbs_head(&w, is, sigalg, sigalg_len, now, next);
        der_err e1 = der_w_finish(&w, &head_len);
        der_w_init(&w, exts, exts_cap);
        w_tbs_exts(&w, is, number, idp);
        if (e1 != DER_OK || der_w_finish(&w, &exts_len) != DER_OK) {
            snprintf(err, errlen, "%s: cannot encode the CRL", who);
            goto out;
        }
        uint64_t content =
            head_len + exts_len + (s1.n ? der_hdr_size(DER_SEQUENCE, (size_t)s1.len) + s1.len : 0);
        tbs_total = der_hdr_size(DER_SEQUENCE, (size_t)content) + content;
        /* room for the CertificateList header with the longest signature;
         * moved down once the signature's length is known */
        reserve = (off_t)der_hdr_size(
            DER_SEQUENCE, (size_t)(tbs_total + sigalg_len +
                                   der_hdr_size(DER_BIT_STRING, CF_SIG_MAX + 1) + CF_SIG_MAX + 1));
        fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0 || lseek(fd, reserve, SEEK_SET) != reserve) {
            snprintf(err, errlen, "%s: cannot write %.300s: %s", who, tmp, strerror(errno));
            goto out;
        }
        memset(s2, 0, sizeof(*s2));
        s2->buf = sbuf;
        s2->shard = shard;
        s2->n_shards = is->crl_shards;
        s2->fd = fd;
        s2->md = mdc;
        s2->len_expect = s1.len;
        uint8_t hdr[16];
        der_w_init(&w, hdr, sizeof(hdr));
        der_w_hdr(&w, DER_SEQUENCE, (size_t)content);
        size_t hl = 0;
        if (EVP_DigestInit_ex(mdc, h, NULL) != 1 || der_w_finish(&w, &hl) != DER_OK) {
            snprintf(err, errlen, "%s: digest failed", who);
            goto out;
        }
        (void)sink_put(s2, hdr, hl);
        (void)sink_put(s2, head, head_len);
        if (s1.n) {
            der_w_init(&w, hdr, sizeof(hdr));
            der_w_hdr(&w, DER_SEQUENCE, (size_t)s1.len);
            if (der_w_finish(&w, &hl) != DER_OK) {
                snprintf(err, errlen, "%s: cannot encode the CRL", who);
                goto out;
            }
            (void)sink_put(s2, hdr, hl);
        }
        if (!s2->bad &&
            ledger_list_revoked(l, is->key->name, now, stream_cb, s2, why, sizeof(why)) != 0) {
            snprintf(err, errlen, "%s: cannot list revocations: %s", who, why);
            goto out;
        }
        if (!s2->bad && !s2->changed && s2->len == s1.len && (s2->n == 0) == (s1.n == 0)) {
            (void)sink_put(s2, exts, exts_len);
            (void)sink_flush(s2);
        }
        if (s2->bad) {
            snprintf(err, errlen, "%s: %s", who,
                     s2->bad == 1 ? "a serial in the ledger is not hex"
                                  : "cannot write the CRL file or digest it");
            goto out;
        }
        if (s2->changed || s2->len != s1.len || (s2->n == 0) != (s1.n == 0)) {
            close(fd); /* a revocation or an expiry between the passes: again */
            fd = -1;
            unlink(tmp);
            continue;
        }
        if (EVP_DigestFinal_ex(mdc, md, &mdlen) != 1) {
            snprintf(err, errlen, "%s: digest failed", who);
            goto out;
        }
        nentries = s2->n;
        break;
    }
    uint8_t sig[CF_SIG_MAX];
    size_t siglen = 0;
    unsigned long rv = 0;
    if (sgn_sign(sgn, is->key->idx, is->crl_mech, md, mdlen, sig, &siglen, &rv, why, sizeof(why)) !=
        0) {
        snprintf(err, errlen, "%s: HSM: %s", who, why);
        goto out;
    }
    /* Never publish a CRL whose signature does not verify (an HSM fault):
     * checked over the digest of the octets written to the file. */
    if (!sig_ok_digest(is->key->pub, is->crl_mech, md, mdlen, sig, siglen)) {
        snprintf(err, errlen,
                 "%s: the CRL's signature does not verify with the issuer key (HSM "
                 "fault?); not published",
                 who);
        goto out;
    }
    /* the tail (signatureAlgorithm, signatureValue) and the header */
    uint8_t tail[128 + CF_SIG_MAX + 16], hdr[16];
    size_t tail_len = 0, hl = 0;
    der_w w;
    der_w_init(&w, tail, sizeof(tail));
    der_w_raw(&w, sigalg, sigalg_len);
    der_w_bits(&w, sig, siglen);
    der_err e1 = der_w_finish(&w, &tail_len);
    uint64_t content = tbs_total + tail_len;
    der_w_init(&w, hdr, sizeof(hdr));
    der_w_hdr(&w, DER_SEQUENCE, (size_t)content);
    if (e1 != DER_OK || der_w_finish(&w, &hl) != DER_OK || (off_t)hl > reserve) {
        snprintf(err, errlen, "%s: cannot assemble the CRL", who);
        goto out;
    }
    uint64_t total = hl + content;
    if (((off_t)hl < reserve &&
         shift_down(fd, reserve, (off_t)hl, tbs_total, sbuf, CRL_STREAM_BUF) != 0) ||
        pwrite_all(fd, hdr, hl, 0) != 0 ||
        pwrite_all(fd, tail, tail_len, (off_t)(hl + tbs_total)) != 0 ||
        ftruncate(fd, (off_t)total) != 0) {
        snprintf(err, errlen, "%s: cannot write %.300s: %s", who, tmp, strerror(errno));
        goto out;
    }
    if (store_from_file(l, lname, number, now, next, fd, total, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "%s: cannot store CRL %llu: %s", who, (unsigned long long)number,
                 why);
        goto out;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        fd = -1;
        snprintf(err, errlen, "%s: cannot sync %.300s: %s", who, tmp, strerror(errno));
        goto out;
    }
    fd = -1;
    if (rename(tmp, dst) != 0) {
        snprintf(err, errlen, "%s: cannot rename %.200s to %.200s: %s", who, tmp, dst,
                 strerror(errno));
        goto out;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    out->number = number;
    out->shard = shard;
    out->this_update = now;
    out->next_update = next;
    out->entries = nentries;
    out->len = (size_t)total;
    rc = 0;
out:
    if (rc != 0) {
        if (fd >= 0)
            close(fd);
        unlink(tmp);
    }
    EVP_MD_CTX_free(mdc);
    free(s2);
    free(sbuf);
    free(head);
    free(exts);
    return rc;
}

int crl_ledger_name(const iss_issuer *is, unsigned shard, char *out, size_t cap)
{
    /* the issuer's name too: two issuers on one key (a renewed CA
     * certificate next to the old one) make different CRLs */
    int n = is->crl_shards > 1 ? snprintf(out, cap, "%s@%s#%u", is->key->name, is->name, shard)
                               : snprintf(out, cap, "%s@%s", is->key->name, is->name);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

int crl_make(const iss_issuer *is, unsigned shard, sgn_service *sgn, ledger *l, const char *dir,
             int64_t now, uint64_t validity_s, uint8_t **der_out, crl_made *out, char *err,
             size_t errlen)
{
    entries e = {.shard = shard, .n_shards = is->crl_shards};
    uint8_t *tbs = NULL, *crl = NULL;
    int rc = -1;
    char why[512];
    uint8_t sigalg[128];
    size_t sigalg_len = profile_sigalg_der(is->crl_mech, sigalg, sizeof(sigalg));
    char who[200]; /* for messages: issuer 'nf-ca' [shard 3] */
    if (is->crl_shards > 1)
        snprintf(who, sizeof(who), "issuer '%.64s' shard %u", is->name, shard);
    else
        snprintf(who, sizeof(who), "issuer '%.64s'", is->name);
    if (der_out)
        *der_out = NULL;
    memset(out, 0, sizeof(*out));
    out->shard = shard;
    if (!sigalg_len) {
        snprintf(err, errlen, "%s: no AlgorithmIdentifier for %s", who,
                 cf_sig_alg_name(is->crl_mech));
        goto out;
    }
    char lname[256], fname[256], idp[CFG_URL_MAX + 16];
    bool sharded = is->crl_shards > 1;
    if (shard >= is->crl_shards || crl_ledger_name(is, shard, lname, sizeof(lname)) != 0 ||
        (sharded ? snprintf(fname, sizeof(fname), "%s-%u", is->name, shard)
                 : snprintf(fname, sizeof(fname), "%s", is->name)) >= (int)sizeof(fname) ||
        (sharded &&
         (!is->crl_dp || profile_crl_dp_uri(is->crl_dp, shard, idp, sizeof(idp)) != 0))) {
        snprintf(err, errlen, "issuer '%.64s': no CRL shard %u (it has %u)", is->name, shard,
                 is->crl_shards);
        goto out;
    }
    /* A CRL published to a folder and signed over a digest is streamed
     * (bounded memory); Ed25519 (PureEdDSA signs the whole TBS) and a CRL
     * wanted in memory (der_out, no folder) are built in memory. */
    if (dir && !der_out && mech_md(is->crl_mech))
        return make_streamed(is, shard, sgn, l, dir, fname, lname, sharded ? idp : NULL, now,
                             validity_s, sigalg, sigalg_len, who, out, err, errlen);
    if (ledger_list_revoked(l, is->key->name, now, collect, &e, why, sizeof(why)) != 0 || e.bad) {
        snprintf(err, errlen, "%s: cannot list revocations: %s", who,
                 e.bad == 2 ? "out of memory"
                 : e.bad    ? "a serial in the ledger is not hex"
                            : why);
        goto out;
    }
    uint64_t number = 0;
    if (ledger_crl_next_number(l, is->key->name, &number, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "%s: no cRLNumber: %s", who, why);
        goto out;
    }
    int64_t next = now + (int64_t)validity_s;
    size_t cap = 512 + sizeof(idp) + is->dn.len + sigalg_len + e.n * 64, tbs_len = 0;
    der_w w;
    if (!(tbs = malloc(cap)))
        goto oom;
    der_w_init(&w, tbs, cap);
    w_tbs(&w, is, sigalg, sigalg_len, &e, number, now, next, sharded ? idp : NULL);
    size_t nentries = e.n;
    free(e.v); /* encoded: the list is no longer needed (peak memory) */
    e.v = NULL;
    if (der_w_finish(&w, &tbs_len) != DER_OK) {
        snprintf(err, errlen, "%s: cannot encode the CRL (%s)", who,
                 der_err_name(der_w_finish(&w, &tbs_len)));
        goto out;
    }
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    const uint8_t *in = tbs;
    size_t inlen = tbs_len;
    const EVP_MD *h = mech_md(is->crl_mech);
    if (h) {
        if (EVP_Digest(tbs, tbs_len, md, &mdlen, h, NULL) != 1) {
            snprintf(err, errlen, "%s: digest failed", who);
            goto out;
        }
        in = md;
        inlen = mdlen;
    }
    uint8_t sig[CF_SIG_MAX];
    size_t siglen = 0;
    unsigned long rv = 0;
    if (sgn_sign(sgn, is->key->idx, is->crl_mech, in, inlen, sig, &siglen, &rv, why, sizeof(why)) !=
        0) {
        snprintf(err, errlen, "%s: HSM: %s", who, why);
        goto out;
    }
    size_t crl_cap = tbs_len + sigalg_len + siglen + 32, crl_len = 0;
    if (!(crl = malloc(crl_cap)))
        goto oom;
    der_w_init(&w, crl, crl_cap);
    der_w_begin(&w, DER_SEQUENCE);
    der_w_raw(&w, tbs, tbs_len);
    der_w_raw(&w, sigalg, sigalg_len);
    der_w_bits(&w, sig, siglen);
    der_w_end(&w);
    if (der_w_finish(&w, &crl_len) != DER_OK) {
        snprintf(err, errlen, "%s: cannot assemble the CRL", who);
        goto out;
    }
    free(tbs); /* copied into the CRL */
    tbs = NULL;
    /* Never publish a CRL whose signature does not verify: checked over the
     * TBS bytes inside the assembled CRL, the ones a relying party hashes. */
    der_cur cur, in_crl;
    der_tlv whole, tbs_tlv, alg_tlv;
    const uint8_t *bits = NULL;
    size_t nbits = 0;
    unsigned unused = 0;
    der_cur_init(&cur, crl, crl_len);
    bool parsed = der_expect(&cur, DER_SEQUENCE, &whole) == DER_OK && der_done(&cur) == DER_OK &&
                  der_enter(&whole, &in_crl) == DER_OK &&
                  der_expect(&in_crl, DER_SEQUENCE, &tbs_tlv) == DER_OK &&
                  der_expect(&in_crl, DER_SEQUENCE, &alg_tlv) == DER_OK &&
                  der_read_bits(&in_crl, &bits, &nbits, &unused) == DER_OK &&
                  der_done(&in_crl) == DER_OK && unused == 0;
    if (!parsed || !sig_ok(is->key->pub, is->crl_mech, tbs_tlv.raw, tbs_tlv.rawlen, bits, nbits)) {
        snprintf(err, errlen,
                 "%s: the CRL's signature does not verify with the issuer key (HSM "
                 "fault?); not published",
                 who);
        goto out;
    }
    /* the ledger keeps the DER up to CRL_LEDGER_MAX, else the metadata */
    if (ledger_crl_store(l, lname, number, now, next, crl, crl_len > CRL_LEDGER_MAX ? 0 : crl_len,
                         why, sizeof(why)) != 0) {
        snprintf(err, errlen, "%s: cannot store CRL %llu: %s", who, (unsigned long long)number,
                 why);
        goto out;
    }
    if (dir && publish(dir, fname, crl, crl_len, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "%s: %s", who, why);
        goto out;
    }
    out->number = number;
    out->shard = shard;
    out->this_update = now;
    out->next_update = next;
    out->entries = nentries;
    out->len = crl_len;
    if (der_out) {
        *der_out = crl;
        crl = NULL;
    }
    rc = 0;
    goto out;
oom:
    snprintf(err, errlen, "%s: out of memory", who);
out:
    free(e.v);
    free(tbs);
    free(crl);
    return rc;
}

/* ------------------------------------------------------------ publisher */

struct crl_pub {
    crl_pub_opts o; /* o.iss: unused after crl_pub_start (iss below) */
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop, kicked, retimed;
    struct timespec kick_deadline;
    /* guarded by mu; replaced together by crl_pub_set_issuers */
    iss_set *iss;  /* the issuers (a reference of the publisher's own) */
    size_t *base;  /* per issuer: its first slot in pending[] */
    bool *pending; /* per (issuer, shard): a revocation awaits a new CRL */
    size_t nslots;
};

static void make_one(crl_pub *p, const iss_set *iss, const iss_issuer *is, unsigned shard,
                     uint64_t validity_s)
{
    crl_made m;
    char err[768];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int rc = crl_make(is, shard, iss_signer(iss), p->o.l, p->o.dir, (int64_t)ts.tv_sec, validity_s,
                      NULL, &m, err, sizeof(err));
    if (p->o.log)
        p->o.log(is, rc == 0 ? &m : NULL, rc == 0 ? NULL : err, p->o.log_arg);
}

/* Called without mu, on the issuers `iss` (referenced by the caller) and
 * what it took under mu (a reload may change p's issuers and times
 * meanwhile). todo NULL: every shard of every issuer (the schedule), else
 * the slots set in it (revocations, a reload's issuers). */
static void make_some(crl_pub *p, const iss_set *iss, const size_t *base, uint64_t validity_s,
                      const bool *todo)
{
    for (size_t i = 0; i < iss_nissuers(iss); i++) {
        const iss_issuer *is = iss_issuer_at(iss, i);
        for (unsigned k = 0; k < is->crl_shards; k++)
            if (!todo || todo[base[i] + k])
                make_one(p, iss, is, k, validity_s);
    }
}

static bool ts_before(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/* The slots of every shard of every issuer of s: base[] (per issuer) and
 * their count. NULL when out of memory. */
static size_t *slots_of(const iss_set *s, size_t *nslots)
{
    size_t *base = calloc(iss_nissuers(s) + 1, sizeof(*base));
    *nslots = 0;
    for (size_t i = 0; base && i < iss_nissuers(s); i++) {
        base[i] = *nslots;
        *nslots += iss_issuer_at(s, i)->crl_shards;
    }
    return base;
}

static void *pub_main(void *arg)
{
    crl_pub *p = arg;
    pthread_setname_np(pthread_self(), "cf-crl");
    struct timespec last, next;
    clock_gettime(CLOCK_MONOTONIC, &last);
    next = last;
    next.tv_sec += (time_t)p->o.interval_s;
    pthread_mutex_lock(&p->mu);
    while (!p->stop) {
        if (p->retimed) { /* a reload: the new interval counts from the last CRL */
            p->retimed = false;
            next = last;
            next.tv_sec += (time_t)p->o.interval_s;
        }
        struct timespec dl = next;
        if (p->kicked && ts_before(&p->kick_deadline, &dl))
            dl = p->kick_deadline;
        int r = pthread_cond_timedwait(&p->cv, &p->mu, &dl);
        if (p->stop)
            break;
        if (r != ETIMEDOUT)
            continue; /* a kick moved the deadline, or a spurious wake-up */
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        bool all = !ts_before(&now, &next); /* the schedule: every shard */
        if (!all && !p->kicked)
            continue;
        p->kicked = false;
        /* what this round works on, taken under mu: the issuers (a
         * reference, so a reload may replace them meanwhile), their slots
         * and the pending ones */
        iss_set *iss = p->iss;
        iss_ref(iss);
        size_t nslots = p->nslots;
        size_t *base = malloc((iss_nissuers(iss) + 1) * sizeof(*base));
        bool *todo = malloc((nslots + 1) * sizeof(*todo));
        if (!base || !todo) {
            all = true; /* out of memory: the whole schedule instead */
        } else {
            memcpy(base, p->base, (iss_nissuers(iss) + 1) * sizeof(*base));
            memcpy(todo, p->pending, nslots * sizeof(*todo));
        }
        memset(p->pending, 0, p->nslots * sizeof(*p->pending));
        uint64_t validity_s = p->o.validity_s;
        pthread_mutex_unlock(&p->mu);
        if (all || base)
            make_some(p, iss, base, validity_s, all ? NULL : todo);
        free(base);
        free(todo);
        iss_close(iss);
        pthread_mutex_lock(&p->mu);
        if (all) { /* a revocation's shard alone does not move the schedule */
            clock_gettime(CLOCK_MONOTONIC, &last);
            next = last;
            next.tv_sec += (time_t)p->o.interval_s;
        }
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int crl_pub_start(const crl_pub_opts *o, crl_pub **out, char *err, size_t errlen)
{
    *out = NULL;
    /* the first CRLs before serving: a failure here is a start-up error */
    for (size_t i = 0; i < iss_nissuers(o->iss); i++) {
        const iss_issuer *is = iss_issuer_at(o->iss, i);
        for (unsigned k = 0; k < is->crl_shards; k++) {
            crl_made m;
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            if (crl_make(is, k, iss_signer(o->iss), o->l, o->dir, (int64_t)ts.tv_sec, o->validity_s,
                         NULL, &m, err, errlen) != 0)
                return -1;
            if (o->log)
                o->log(is, &m, NULL, o->log_arg);
        }
    }
    crl_pub *p = calloc(1, sizeof(*p));
    if (!p || !(p->base = slots_of(o->iss, &p->nslots))) {
        free(p);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (!(p->pending = calloc(p->nslots + 1, sizeof(*p->pending)))) {
        free(p->base);
        free(p);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    p->o = *o;
    p->iss = (iss_set *)o->iss; /* referenced below: the set is only read */
    iss_ref(p->iss);
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&p->th, NULL, pub_main, p) != 0) {
        snprintf(err, errlen, "cannot start the CRL thread");
        pthread_cond_destroy(&p->cv);
        pthread_mutex_destroy(&p->mu);
        iss_close(p->iss);
        free(p->pending);
        free(p->base);
        free(p);
        return -1;
    }
    *out = p;
    return 0;
}

/* Under mu: the schedule thread wakes at `delay_s` from now (unless an
 * earlier kick already set a sooner deadline). */
static void kick_locked(crl_pub *p, uint64_t delay_s)
{
    if (!p->kicked) { /* the first revocation sets the deadline; later ones ride along */
        p->kicked = true;
        clock_gettime(CLOCK_MONOTONIC, &p->kick_deadline);
        p->kick_deadline.tv_sec += (time_t)delay_s;
        pthread_cond_signal(&p->cv);
    }
}

void crl_pub_kick(crl_pub *p, const char *issuer, unsigned shard)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < iss_nissuers(p->iss); i++) {
        const iss_issuer *is = iss_issuer_at(p->iss, i);
        if (strcmp(is->name, issuer) == 0 && shard < is->crl_shards) {
            p->pending[p->base[i] + shard] = true;
            kick_locked(p, p->o.revoke_delay_s);
            break;
        }
    }
    pthread_mutex_unlock(&p->mu);
}

int crl_pub_set_issuers(crl_pub *p, iss_set *iss)
{
    if (!p)
        return 0;
    size_t nslots = 0;
    size_t *base = slots_of(iss, &nslots);
    bool *pending = base ? malloc((nslots + 1) * sizeof(*pending)) : NULL;
    if (!pending) {
        free(base);
        return -1;
    }
    /* every shard of every issuer at once: a renewed certificate's CRLs
     * carry its name and key identifier, an added issuer has none yet */
    for (size_t i = 0; i < nslots; i++)
        pending[i] = true;
    iss_ref(iss);
    pthread_mutex_lock(&p->mu);
    iss_set *old = p->iss;
    free(p->base);
    free(p->pending);
    p->iss = iss;
    p->base = base;
    p->pending = pending;
    p->nslots = nslots;
    p->kicked = false; /* the new deadline: now */
    kick_locked(p, 0);
    pthread_mutex_unlock(&p->mu);
    iss_close(old); /* freed here or by the round that still uses it */
    return 0;
}

void crl_pub_set_times(crl_pub *p, uint64_t interval_s, uint64_t validity_s,
                       uint64_t revoke_delay_s)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->o.interval_s = interval_s;
    p->o.validity_s = validity_s;
    p->o.revoke_delay_s = revoke_delay_s;
    p->retimed = true;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

void crl_pub_stop(crl_pub *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->th, NULL);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    iss_close(p->iss);
    free(p->pending);
    free(p->base);
    free(p);
}
