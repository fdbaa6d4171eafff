/* CUnit suite for proto/: round trips of every message, every malformed
 * frame with its exact error, encoder capacity handling, frame extraction
 * across arbitrary splits of a stream, and the byte-exact hex examples of
 * docs/protocol.md (read from CF_SOURCE_DIR, so the doc cannot drift). */
#include "proto/proto.h"

#include "cf_test.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "common/sigalg.h"

#define S(lit) ((cf_str){(lit), sizeof(lit) - 1})

static bool str_eq(cf_str a, cf_str b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

static bool blob_eq(proto_blob a, proto_blob b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

/* ------------------------------------------------- raw frame builder */

typedef struct fb {
    uint8_t b[200000];
    size_t n;
} fb;

static fb F;

static void fb_u8(fb *f, unsigned v)
{
    f->b[f->n++] = (uint8_t)v;
}

static void fb_u16(fb *f, unsigned v)
{
    fb_u8(f, v >> 8);
    fb_u8(f, v);
}

static void fb_u32(fb *f, uint32_t v)
{
    fb_u16(f, v >> 16);
    fb_u16(f, v & 0xFFFF);
}

/* Header with a length fixed up by fb_end(). */
static void fb_begin(fb *f, unsigned version, unsigned op, unsigned flags, uint64_t id)
{
    f->n = 0;
    fb_u32(f, 0);
    fb_u8(f, version);
    fb_u8(f, op);
    fb_u16(f, flags);
    fb_u32(f, (uint32_t)(id >> 32));
    fb_u32(f, (uint32_t)id);
}

static void fb_field(fb *f, unsigned tag, const void *v, size_t len)
{
    fb_u16(f, tag);
    fb_u16(f, (unsigned)len);
    memcpy(f->b + f->n, v, len);
    f->n += len;
}

static void fb_str(fb *f, unsigned tag, const char *s)
{
    fb_field(f, tag, s, strlen(s));
}

static void fb_end(fb *f)
{
    uint32_t l = (uint32_t)(f->n - 4);
    f->b[0] = (uint8_t)(l >> 24);
    f->b[1] = (uint8_t)(l >> 16);
    f->b[2] = (uint8_t)(l >> 8);
    f->b[3] = (uint8_t)l;
}

static const uint8_t fake_csr[] = {0x30, 0x03, 0x02, 0x01, 0x00};

/* A valid ISSUE request body start: profile + csr. */
static void fb_issue(fb *f)
{
    fb_begin(f, 1, PROTO_OP_ISSUE, 0, 77);
    fb_str(f, PROTO_F_PROFILE, "nf");
    fb_field(f, PROTO_F_CSR, fake_csr, sizeof(fake_csr));
}

static proto_req RQ;
static proto_resp RS;

/* Decode F both ways: whole (proto_req_decode) and as the daemon does,
 * with the header proto_frame_next read (proto_req_decode_framed); the two
 * must agree on every frame. */
static proto_err req_err(void)
{
    fb_end(&F);
    proto_err e = proto_req_decode(F.b, F.n, &RQ);
    proto_hdr h;
    size_t fl;
    if (proto_frame_next(F.b, F.n, sizeof(F.b), &h, &fl) == PROTO_OK && fl == F.n) {
        static proto_req r2;
        CU_ASSERT_EQUAL(proto_req_decode_framed(&h, F.b, F.n, &r2), e);
        CU_ASSERT_EQUAL(r2.hdr.op, RQ.hdr.op);
        CU_ASSERT_EQUAL(r2.hdr.id, RQ.hdr.id);
    }
    return e;
}

static proto_err resp_err(void)
{
    fb_end(&F);
    return proto_resp_decode(F.b, F.n, &RS);
}

/* ------------------------------------------------------------- names */

static void test_names(void)
{
    CU_ASSERT_STRING_EQUAL(proto_op_name(PROTO_OP_ISSUE), "ISSUE");
    CU_ASSERT_STRING_EQUAL(proto_op_name(PROTO_OP_KEYS), "KEYS");
    CU_ASSERT_STRING_EQUAL(proto_op_name(0), "UNKNOWN_OP");
    CU_ASSERT_STRING_EQUAL(proto_op_name(200), "UNKNOWN_OP");
    for (int e = 0; e < PROTO_ERR__MAX; e++)
        CU_ASSERT(strcmp(proto_err_name((proto_err)e), "unknown-error") != 0);
    CU_ASSERT_STRING_EQUAL(proto_err_name(PROTO_ERR__MAX), "unknown-error");
    CU_ASSERT_STRING_EQUAL(proto_err_name(PROTO_ERR_TOO_LARGE), "too-large");
    CU_ASSERT_EQUAL(proto_err_status(PROTO_ERR_RESERVED_OP), CF_ST_UNSUPPORTED);
    CU_ASSERT_EQUAL(proto_err_status(PROTO_ERR_UNKNOWN_OP), CF_ST_UNSUPPORTED);
    CU_ASSERT_EQUAL(proto_err_status(PROTO_ERR_BAD_VERSION), CF_ST_UNSUPPORTED);
    CU_ASSERT_EQUAL(proto_err_status(PROTO_ERR_DUPLICATE), CF_ST_BAD_FRAME);
    CU_ASSERT_EQUAL(proto_err_status(PROTO_ERR_TOO_LARGE), CF_ST_BAD_FRAME);
    CU_ASSERT_FALSE(proto_err_closes(PROTO_ERR_RESERVED_OP));
    CU_ASSERT_FALSE(proto_err_closes(PROTO_ERR_UNKNOWN_OP));
    CU_ASSERT_TRUE(proto_err_closes(PROTO_ERR_UNKNOWN_FIELD));
    CU_ASSERT_TRUE(proto_err_closes(PROTO_ERR_BAD_VERSION));
}

/* ------------------------------------------------------- round trips */

static char fq[CF_MAX_FQDNS][32];
static char nt[CF_MAX_NF_TYPES][16];

static void full_req(cf_issue_req *r)
{
    memset(r, 0, sizeof(*r));
    r->profile = S("nf-amf");
    r->csr_der = fake_csr;
    r->csr_len = sizeof(fake_csr);
    r->nf_instance_id = S("3fa85f64-5717-4562-b3fc-2c963f66afa6");
    for (unsigned i = 0; i < CF_MAX_FQDNS; i++) {
        snprintf(fq[i], sizeof(fq[i]), "amf%u.5gc.example", i);
        r->fqdns[i] = (cf_str){fq[i], strlen(fq[i])};
    }
    r->n_fqdns = CF_MAX_FQDNS;
    for (unsigned i = 0; i < CF_MAX_NF_TYPES; i++) {
        snprintf(nt[i], sizeof(nt[i]), "T%u", i);
        r->nf_types[i] = (cf_str){nt[i], strlen(nt[i])};
    }
    r->n_nf_types = CF_MAX_NF_TYPES;
    r->validity_s = 0xFEDCBA98u;
    r->requester = S("ccnf-\xc3\xa9t\xc3\xa9"); /* UTF-8 */
}

static void check_req_eq(const cf_issue_req *a, const cf_issue_req *b)
{
    CU_ASSERT(str_eq(a->profile, b->profile));
    CU_ASSERT_EQUAL(a->csr_len, b->csr_len);
    CU_ASSERT(memcmp(a->csr_der, b->csr_der, a->csr_len) == 0);
    CU_ASSERT(str_eq(a->nf_instance_id, b->nf_instance_id));
    CU_ASSERT_EQUAL_FATAL(a->n_fqdns, b->n_fqdns);
    for (unsigned i = 0; i < a->n_fqdns; i++)
        CU_ASSERT(str_eq(a->fqdns[i], b->fqdns[i]));
    CU_ASSERT_EQUAL_FATAL(a->n_nf_types, b->n_nf_types);
    for (unsigned i = 0; i < a->n_nf_types; i++)
        CU_ASSERT(str_eq(a->nf_types[i], b->nf_types[i]));
    CU_ASSERT_EQUAL(a->validity_s, b->validity_s);
    CU_ASSERT(str_eq(a->requester, b->requester));
}

/* Every capacity below the size returns the size and writes nothing past
 * the capacity. */
static void check_caps(size_t (*enc)(uint8_t *, size_t, const void *), const void *arg, size_t n)
{
    static uint8_t b[70000];
    for (size_t cap = 0; cap < n; cap += (n > 2000 ? 97 : 1)) {
        memset(b, 0xA5, n + 1);
        CU_ASSERT_EQUAL(enc(b, cap, arg), n);
        size_t bad = 0;
        for (size_t i = cap; i <= n; i++)
            bad += b[i] != 0xA5;
        CU_ASSERT_EQUAL(bad, 0);
    }
    memset(b, 0xA5, n + 1);
    CU_ASSERT_EQUAL(enc(b, n, arg), n);
    CU_ASSERT_EQUAL(b[n], 0xA5);
}

static size_t enc_req_cb(uint8_t *b, size_t cap, const void *arg)
{
    return proto_enc_issue_req(b, cap, 0x0102030405060708ull, arg);
}

static size_t enc_resp_cb(uint8_t *b, size_t cap, const void *arg)
{
    return proto_resp_encode(b, cap, arg);
}

static void test_rt_issue_req(void)
{
    cf_issue_req r;
    full_req(&r);
    static uint8_t b[70000];
    size_t n = proto_enc_issue_req(b, sizeof(b), 0x0102030405060708ull, &r);
    CU_ASSERT_FATAL(n > PROTO_HDR_LEN && n < sizeof(b));
    proto_hdr h;
    size_t fl;
    CU_ASSERT_EQUAL_FATAL(proto_frame_next(b, n, sizeof(b), &h, &fl), PROTO_OK);
    CU_ASSERT_EQUAL(fl, n);
    CU_ASSERT_EQUAL(h.op, PROTO_OP_ISSUE);
    CU_ASSERT_EQUAL(h.id, 0x0102030405060708ull);
    CU_ASSERT_EQUAL_FATAL(proto_req_decode(b, n, &RQ), PROTO_OK);
    CU_ASSERT_EQUAL(RQ.hdr.id, 0x0102030405060708ull);
    CU_ASSERT_EQUAL(RQ.hdr.op, PROTO_OP_ISSUE);
    check_req_eq(&r, &RQ.issue);
    /* zero-copy: the strings point into the frame */
    CU_ASSERT((const uint8_t *)RQ.issue.profile.p > b &&
              (const uint8_t *)RQ.issue.profile.p < b + n);
    CU_ASSERT(RQ.issue.csr_der > b && RQ.issue.csr_der < b + n);
    /* re-encoding the decoded request gives the same octets */
    static uint8_t b2[70000];
    CU_ASSERT_EQUAL(proto_req_encode(b2, sizeof(b2), &RQ), n);
    CU_ASSERT(memcmp(b, b2, n) == 0);
    check_caps(enc_req_cb, &r, n);

    /* minimal request: optional fields absent, validity 0 omitted */
    cf_issue_req m = {.profile = S("p"), .csr_der = fake_csr, .csr_len = 1};
    n = proto_enc_issue_req(b, sizeof(b), 5, &m);
    CU_ASSERT_EQUAL(n, PROTO_HDR_LEN + 4 + 1 + 4 + 1);
    CU_ASSERT_EQUAL_FATAL(proto_req_decode(b, n, &RQ), PROTO_OK);
    check_req_eq(&m, &RQ.issue);
}

/* The daemon's way: the header read once by proto_frame_next, the body
 * decoded once (proto_req_decode_framed), the frame then copied into a job
 * and the decoded fields moved with it (proto_req_rebase), not decoded
 * again. */
static void test_decode_once(void)
{
    cf_issue_req r;
    full_req(&r);
    static uint8_t b[70000], copy[70000];
    size_t n = proto_enc_issue_req(b, sizeof(b), 77, &r);
    CU_ASSERT_FATAL(n > PROTO_HDR_LEN && n < sizeof(b));
    proto_hdr h;
    size_t fl;
    CU_ASSERT_EQUAL_FATAL(proto_frame_next(b, n, sizeof(b), &h, &fl), PROTO_OK);
    static proto_req q;
    CU_ASSERT_EQUAL_FATAL(proto_req_decode_framed(&h, b, fl, &q), PROTO_OK);
    CU_ASSERT_EQUAL(q.hdr.id, 77);
    check_req_eq(&r, &q.issue);
    /* a length that is not the header's, a header that was not complete */
    CU_ASSERT_EQUAL(proto_req_decode_framed(&h, b, fl - 1, &q), PROTO_ERR_MALFORMED);
    CU_ASSERT_EQUAL(proto_req_decode_framed(&h, b, fl + 1, &q), PROTO_ERR_MALFORMED);
    proto_hdr part = h;
    part.complete = false;
    CU_ASSERT_EQUAL(proto_req_decode_framed(&part, b, fl, &q), PROTO_ERR_MALFORMED);
    proto_hdr flags = h;
    flags.flags = 1;
    CU_ASSERT_EQUAL(proto_req_decode_framed(&flags, b, fl, &q), PROTO_ERR_BAD_FLAGS);

    /* rebase: every field points into the copy, with the same values */
    CU_ASSERT_EQUAL_FATAL(proto_req_decode_framed(&h, b, fl, &q), PROTO_OK);
    memcpy(copy, b, fl);
    memset(b, 0, fl); /* the original buffer is reused by the next frames */
    proto_req_rebase(&q, b, copy, fl);
    check_req_eq(&r, &q.issue);
    const uint8_t *lo = copy, *hi = copy + fl;
#define IN_COPY(p) ((const uint8_t *)(p) >= lo && (const uint8_t *)(p) < hi)
    CU_ASSERT(IN_COPY(q.issue.profile.p) && IN_COPY(q.issue.csr_der) &&
              IN_COPY(q.issue.nf_instance_id.p) && IN_COPY(q.issue.requester.p));
    for (unsigned i = 0; i < q.issue.n_fqdns; i++)
        CU_ASSERT(IN_COPY(q.issue.fqdns[i].p));
    for (unsigned i = 0; i < q.issue.n_nf_types; i++)
        CU_ASSERT(IN_COPY(q.issue.nf_types[i].p));

    /* SIGN, REVOKE, CRL fields move too; absent ones stay NULL */
    static const uint8_t dg[32] = {1, 2, 3};
    proto_sign_req sr = {
        .key = {"nf-ca", 5}, .mech = 1, .data = dg, .data_len = 32, .requester = {"openssl", 7}};
    n = proto_enc_sign_req(b, sizeof(b), 9, &sr);
    CU_ASSERT_EQUAL_FATAL(proto_frame_next(b, n, sizeof(b), &h, &fl), PROTO_OK);
    CU_ASSERT_EQUAL_FATAL(proto_req_decode_framed(&h, b, fl, &q), PROTO_OK);
    memcpy(copy, b, fl);
    proto_req_rebase(&q, b, copy, fl);
    hi = copy + fl;
    CU_ASSERT(IN_COPY(q.sign.key.p) && IN_COPY(q.sign.data) && IN_COPY(q.sign.requester.p));
    CU_ASSERT(memcmp(q.sign.data, dg, 32) == 0 && str_eq(q.sign.key, sr.key));
    CU_ASSERT_PTR_NULL(q.issue.profile.p);
    static const uint8_t serial[3] = {9, 8, 7};
    proto_revoke_req vr = {.serial = serial, .serial_len = 3, .reason = 1};
    n = proto_enc_revoke_req(b, sizeof(b), 10, &vr);
    CU_ASSERT_EQUAL_FATAL(proto_frame_next(b, n, sizeof(b), &h, &fl), PROTO_OK);
    CU_ASSERT_EQUAL_FATAL(proto_req_decode_framed(&h, b, fl, &q), PROTO_OK);
    memcpy(copy, b, fl);
    proto_req_rebase(&q, b, copy, fl);
    hi = copy + fl;
    CU_ASSERT(IN_COPY(q.revoke.serial) && q.revoke.serial_len == 3 &&
              memcmp(q.revoke.serial, serial, 3) == 0);
    CU_ASSERT_PTR_NULL(q.revoke.requester.p);
    n = proto_enc_crl_req(b, sizeof(b), 11, (cf_str){"nf-ica", 6}, true);
    CU_ASSERT_EQUAL_FATAL(proto_frame_next(b, n, sizeof(b), &h, &fl), PROTO_OK);
    CU_ASSERT_EQUAL_FATAL(proto_req_decode_framed(&h, b, fl, &q), PROTO_OK);
    memcpy(copy, b, fl);
    proto_req_rebase(&q, b, copy, fl);
    hi = copy + fl;
    CU_ASSERT(IN_COPY(q.crl.issuer.p) && str_eq(q.crl.issuer, (cf_str){"nf-ica", 6}));
#undef IN_COPY
}

static void test_rt_empty_reqs(void)
{
    uint8_t b[64];
    size_t n = proto_enc_status_req(b, sizeof(b), UINT64_MAX);
    CU_ASSERT_EQUAL_FATAL(n, PROTO_HDR_LEN);
    CU_ASSERT_EQUAL_FATAL(proto_req_decode(b, n, &RQ), PROTO_OK);
    CU_ASSERT_EQUAL(RQ.hdr.op, PROTO_OP_STATUS);
    CU_ASSERT_EQUAL(RQ.hdr.id, UINT64_MAX);
    n = proto_enc_keys_req(b, sizeof(b), 0);
    CU_ASSERT_EQUAL_FATAL(n, PROTO_HDR_LEN);
    CU_ASSERT_EQUAL_FATAL(proto_req_decode(b, n, &RQ), PROTO_OK);
    CU_ASSERT_EQUAL(RQ.hdr.op, PROTO_OP_KEYS);
    CU_ASSERT_EQUAL(proto_enc_keys_req(b, 3, 0), PROTO_HDR_LEN);
    /* proto_req_encode refuses unknown ops, and SIGN without its fields */
    proto_req q;
    memset(&q, 0, sizeof(q));
    q.hdr.op = PROTO_OP_SIGN;
    CU_ASSERT_EQUAL(proto_req_encode(b, sizeof(b), &q), 0);
    q.hdr.op = 99;
    CU_ASSERT_EQUAL(proto_req_encode(b, sizeof(b), &q), 0);
}

static void check_resp_eq(const proto_resp *a, const proto_resp *b)
{
    CU_ASSERT_EQUAL(a->op, b->op);
    CU_ASSERT_EQUAL(a->id, b->id);
    CU_ASSERT_EQUAL(a->status, b->status);
    CU_ASSERT_EQUAL(a->detail, b->detail);
    CU_ASSERT(str_eq(a->message, b->message));
    CU_ASSERT(blob_eq(a->cert, b->cert));
    CU_ASSERT(blob_eq(a->serial, b->serial));
    CU_ASSERT(blob_eq(a->sig, b->sig));
    CU_ASSERT(blob_eq(a->crl, b->crl));
    CU_ASSERT_EQUAL(a->has_revoked, b->has_revoked);
    CU_ASSERT_EQUAL(a->revoked_at, b->revoked_at);
    CU_ASSERT_EQUAL(a->reason, b->reason);
    CU_ASSERT_EQUAL_FATAL(a->n_chain, b->n_chain);
    for (unsigned i = 0; i < a->n_chain; i++)
        CU_ASSERT(blob_eq(a->chain[i], b->chain[i]));
    CU_ASSERT_EQUAL_FATAL(a->n_kv, b->n_kv);
    for (unsigned i = 0; i < a->n_kv; i++)
        CU_ASSERT(str_eq(a->kv[i].key, b->kv[i].key) && str_eq(a->kv[i].value, b->kv[i].value));
    CU_ASSERT_EQUAL_FATAL(a->n_keys, b->n_keys);
    for (unsigned i = 0; i < a->n_keys; i++)
        CU_ASSERT(str_eq(a->keys[i].name, b->keys[i].name) &&
                  str_eq(a->keys[i].type, b->keys[i].type) &&
                  blob_eq(a->keys[i].spki, b->keys[i].spki));
}

static void rt_resp(const proto_resp *r)
{
    static uint8_t b[70000], b2[70000];
    size_t n = proto_resp_encode(b, sizeof(b), r);
    CU_ASSERT_FATAL(n >= PROTO_HDR_LEN + 6 && n < sizeof(b));
    CU_ASSERT_EQUAL_FATAL(proto_resp_decode(b, n, &RS), PROTO_OK);
    check_resp_eq(r, &RS);
    CU_ASSERT_EQUAL(proto_resp_encode(b2, sizeof(b2), &RS), n);
    CU_ASSERT(memcmp(b, b2, n) == 0);
    check_caps(enc_resp_cb, r, n);
}

static uint8_t big_cert[8000];

static void test_rt_responses(void)
{
    static proto_resp r;
    /* generic error, on every op including reserved and unknown ones */
    unsigned ops[] = {PROTO_OP_ISSUE, PROTO_OP_SIGN, PROTO_OP_STATUS, PROTO_OP_KEYS, 0, 250};
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        memset(&r, 0, sizeof(r));
        r.op = (uint8_t)ops[i];
        r.id = 1000 + i;
        r.status = CF_ST_UNSUPPORTED;
        r.message = S("operation not supported");
        rt_resp(&r);
    }
    /* BAD_CSR with detail; HSM failure with a vendor CK_RV */
    memset(&r, 0, sizeof(r));
    r.op = PROTO_OP_ISSUE;
    r.id = 9;
    r.status = CF_ST_BAD_CSR;
    r.detail = 6;
    r.message = S("proof of possession failed");
    rt_resp(&r);
    r.status = CF_ST_HSM_FAILURE;
    r.detail = 0x80000001u;
    rt_resp(&r);
    r.status = (cf_status)0xFFFF; /* a newer daemon's status */
    rt_resp(&r);

    /* ISSUE OK with a full chain and a 20-octet serial */
    for (size_t i = 0; i < sizeof(big_cert); i++)
        big_cert[i] = (uint8_t)(i * 7);
    memset(&r, 0, sizeof(r));
    r.op = PROTO_OP_ISSUE;
    r.id = 42;
    r.cert = (proto_blob){big_cert, sizeof(big_cert)};
    for (unsigned i = 0; i < PROTO_MAX_CHAIN; i++)
        r.chain[i] = (proto_blob){big_cert + i, 1000 + i};
    r.n_chain = PROTO_MAX_CHAIN;
    static const uint8_t ser[20] = {0x7f, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    r.serial = (proto_blob){ser, 20};
    rt_resp(&r);

    /* the shorthand gives the same octets */
    static uint8_t b[70000], b2[70000];
    size_t n = proto_resp_encode(b, sizeof(b), &r);
    CU_ASSERT_EQUAL(proto_enc_issue_ok(b2, sizeof(b2), 42, big_cert, sizeof(big_cert), r.chain,
                                       PROTO_MAX_CHAIN, ser, 20),
                    n);
    CU_ASSERT(memcmp(b, b2, n) == 0);

    /* STATUS with the most kv pairs */
    static char keys[PROTO_MAX_KV][24], vals[PROTO_MAX_KV][24];
    memset(&r, 0, sizeof(r));
    r.op = PROTO_OP_STATUS;
    r.id = 3;
    for (unsigned i = 0; i < PROTO_MAX_KV; i++) {
        snprintf(keys[i], sizeof(keys[i]), "errors.K%u", i);
        snprintf(vals[i], sizeof(vals[i]), "%u", i * 1000);
        r.kv[i] = (proto_kv){{keys[i], strlen(keys[i])}, {vals[i], strlen(vals[i])}};
    }
    r.kv[1].value = S(""); /* an empty value is fine */
    r.n_kv = PROTO_MAX_KV;
    r.message = S("ok");
    rt_resp(&r);
    n = proto_resp_encode(b, sizeof(b), &r);
    r.message = S("");
    n = proto_resp_encode(b, sizeof(b), &r);
    CU_ASSERT_EQUAL(proto_enc_status_ok(b2, sizeof(b2), 3, r.kv, PROTO_MAX_KV), n);
    CU_ASSERT(memcmp(b, b2, n) == 0);

    /* KEYS */
    memset(&r, 0, sizeof(r));
    r.op = PROTO_OP_KEYS;
    r.id = 4;
    r.keys[0] = (proto_key){S("issuer-ec"), S("ec-p256"), {big_cert, 91}};
    r.keys[1] = (proto_key){S("issuer-rsa"), S("rsa-4096"), {big_cert, 550}};
    r.n_keys = 2;
    rt_resp(&r);
    n = proto_resp_encode(b, sizeof(b), &r);
    CU_ASSERT_EQUAL(proto_enc_keys_ok(b2, sizeof(b2), 4, r.keys, 2), n);
    CU_ASSERT(memcmp(b, b2, n) == 0);

    /* proto_enc_error */
    n = proto_enc_error(b, sizeof(b), PROTO_OP_ISSUE, 8, CF_ST_BUSY, 0, "queue full");
    CU_ASSERT_EQUAL_FATAL(proto_resp_decode(b, n, &RS), PROTO_OK);
    CU_ASSERT(str_eq(RS.message, S("queue full")));
    CU_ASSERT_EQUAL(RS.status, CF_ST_BUSY);
    n = proto_enc_error(b, sizeof(b), PROTO_OP_STATUS, 8, CF_ST_INTERNAL, 0, NULL);
    CU_ASSERT_EQUAL(n, PROTO_HDR_LEN + 6);
}

static void test_message_sanitised(void)
{
    uint8_t b[256];
    /* NUL, a lone continuation, an overlong, a surrogate, a truncated
     * 3-octet sequence: each offending octet becomes '?' */
    const char msg[] = "a\0b\x80"
                       "c\xc0\xaf"
                       "d\xed\xa0\x80"
                       "e\xe2\x82";
    size_t n = proto_enc_error(b, sizeof(b), 1, 1, CF_ST_POLICY_DENIED, 0, NULL);
    (void)n;
    proto_resp r;
    memset(&r, 0, sizeof(r));
    r.op = 1;
    r.status = CF_ST_POLICY_DENIED;
    r.message = (cf_str){msg, sizeof(msg) - 1};
    n = proto_resp_encode(b, sizeof(b), &r);
    CU_ASSERT_EQUAL_FATAL(proto_resp_decode(b, n, &RS), PROTO_OK);
    CU_ASSERT_EQUAL_FATAL(RS.message.len, sizeof(msg) - 1);
    CU_ASSERT(memcmp(RS.message.p, "a?b?c??d???e??", RS.message.len) == 0);
    /* valid multi-octet text passes unchanged */
    r.message = S("\xc3\xa9\xe2\x82\xac\xf0\x9f\x94\x92");
    n = proto_resp_encode(b, sizeof(b), &r);
    CU_ASSERT_EQUAL_FATAL(proto_resp_decode(b, n, &RS), PROTO_OK);
    CU_ASSERT(str_eq(RS.message, r.message));
}

static void test_encode_rejects(void)
{
    static uint8_t b[200000];
    static char big[70000];
    memset(big, 'a', sizeof(big));
    cf_issue_req r;
    full_req(&r);
    r.profile = S("");
    CU_ASSERT_EQUAL(proto_enc_issue_req(b, sizeof(b), 1, &r), 0);
    full_req(&r);
    r.csr_len = 0;
    CU_ASSERT_EQUAL(proto_enc_issue_req(b, sizeof(b), 1, &r), 0);
    full_req(&r);
    r.csr_len = 65536;
    r.csr_der = (const uint8_t *)big;
    CU_ASSERT_EQUAL(proto_enc_issue_req(b, sizeof(b), 1, &r), 0);
    r.csr_len = 65535;
    CU_ASSERT(proto_enc_issue_req(b, sizeof(b), 1, &r) > 65535);
    full_req(&r);
    r.n_fqdns = CF_MAX_FQDNS + 1;
    CU_ASSERT_EQUAL(proto_enc_issue_req(b, sizeof(b), 1, &r), 0);
    full_req(&r);
    r.n_nf_types = CF_MAX_NF_TYPES + 1;
    CU_ASSERT_EQUAL(proto_enc_issue_req(b, sizeof(b), 1, &r), 0);
    full_req(&r);
    r.fqdns[3] = S("");
    CU_ASSERT_EQUAL(proto_enc_issue_req(b, sizeof(b), 1, &r), 0);
    full_req(&r);
    r.fqdns[3] = S("a\xff.example");
    CU_ASSERT_EQUAL(proto_enc_issue_req(b, sizeof(b), 1, &r), 0);
    full_req(&r);
    r.requester = S("nul\0inside");
    CU_ASSERT_EQUAL(proto_enc_issue_req(b, sizeof(b), 1, &r), 0);

    proto_resp s;
    memset(&s, 0, sizeof(s));
    s.op = PROTO_OP_ISSUE;
    CU_ASSERT_EQUAL(proto_resp_encode(b, sizeof(b), &s), 0); /* OK without cert */
    s.status = CF_ST_BAD_CSR;
    CU_ASSERT(proto_resp_encode(b, sizeof(b), &s) > 0);
    s.op = PROTO_OP_STATUS;
    s.cert = (proto_blob){fake_csr, 5};
    CU_ASSERT_EQUAL(proto_resp_encode(b, sizeof(b), &s), 0); /* cert on STATUS */
    memset(&s, 0, sizeof(s));
    s.op = PROTO_OP_ISSUE;
    s.kv[0] = (proto_kv){S("a"), S("b")};
    s.n_kv = 1;
    s.status = CF_ST_INTERNAL;
    CU_ASSERT_EQUAL(proto_resp_encode(b, sizeof(b), &s), 0); /* kv on ISSUE */
    s.op = PROTO_OP_STATUS;
    CU_ASSERT(proto_resp_encode(b, sizeof(b), &s) > 0);
    s.kv[0].key = (cf_str){big, 256};
    CU_ASSERT_EQUAL(proto_resp_encode(b, sizeof(b), &s), 0); /* key > 255 */
    s.kv[0].key = S("");
    CU_ASSERT_EQUAL(proto_resp_encode(b, sizeof(b), &s), 0);
    memset(&s, 0, sizeof(s));
    s.op = PROTO_OP_ISSUE;
    s.cert = (proto_blob){fake_csr, 5};
    s.serial = (proto_blob){(const uint8_t *)big, 21};
    CU_ASSERT_EQUAL(proto_resp_encode(b, sizeof(b), &s), 0);
    s.serial.len = 20;
    s.n_chain = PROTO_MAX_CHAIN + 1;
    CU_ASSERT_EQUAL(proto_resp_encode(b, sizeof(b), &s), 0);
    s.n_chain = 1;
    s.chain[0] = (proto_blob){NULL, 0};
    CU_ASSERT_EQUAL(proto_resp_encode(b, sizeof(b), &s), 0); /* empty chain entry */
    s.n_chain = 0;
    s.message = (cf_str){big, 65536};
    CU_ASSERT_EQUAL(proto_resp_encode(b, sizeof(b), &s), 0);
    s.status = (cf_status)0x10000;
    s.message = S("");
    CU_ASSERT_EQUAL(proto_resp_encode(b, sizeof(b), &s), 0);
    memset(&s, 0, sizeof(s));
    s.op = PROTO_OP_KEYS;
    s.keys[0] = (proto_key){S("k"), S("ec-p256"), {NULL, 0}};
    s.n_keys = 1;
    CU_ASSERT_EQUAL(proto_resp_encode(b, sizeof(b), &s), 0); /* empty SPKI */
    s.keys[0].spki = (proto_blob){fake_csr, 5};
    s.keys[0].type = S("");
    CU_ASSERT_EQUAL(proto_resp_encode(b, sizeof(b), &s), 0);
    CU_ASSERT_EQUAL(proto_enc_keys_ok(b, sizeof(b), 1, s.keys, PROTO_MAX_KEYS + 1), 0);
    CU_ASSERT_EQUAL(proto_enc_status_ok(b, sizeof(b), 1, s.kv, PROTO_MAX_KV + 1), 0);
    CU_ASSERT_EQUAL(
        proto_enc_issue_ok(b, sizeof(b), 1, fake_csr, 5, s.chain, PROTO_MAX_CHAIN + 1, NULL, 0), 0);
}

/* ----------------------------------------------------- frame_next */

static void test_frame_next(void)
{
    uint8_t b[64] = {0};
    proto_hdr h;
    size_t fl = 99;
    for (size_t n = 0; n < 4; n++)
        CU_ASSERT_EQUAL(proto_frame_next(b, n, 65536, &h, &fl), PROTO_NEED_MORE);
    CU_ASSERT_EQUAL(fl, 0);
    /* length prefix below 12 → malformed, for every value, with 4 octets */
    for (unsigned l = 0; l < 12; l++) {
        b[3] = (uint8_t)l;
        CU_ASSERT_EQUAL(proto_frame_next(b, 4, 65536, &h, &fl), PROTO_ERR_MALFORMED);
        CU_ASSERT_EQUAL(h.len, l);
        CU_ASSERT_FALSE(h.complete);
    }
    /* above the cap: reported from the prefix alone, before the frame is there */
    b[0] = 0, b[1] = 1, b[2] = 0, b[3] = 0; /* 65536 + 4 */
    CU_ASSERT_EQUAL(proto_frame_next(b, 4, 65536, &h, &fl), PROTO_ERR_TOO_LARGE);
    b[3] = 0xFF;
    b[0] = b[1] = b[2] = 0xFF;
    CU_ASSERT_EQUAL(proto_frame_next(b, 4, SIZE_MAX, &h, &fl), PROTO_NEED_MORE);
    CU_ASSERT_EQUAL(proto_frame_next(b, 4, 65536, &h, &fl), PROTO_ERR_TOO_LARGE);
    /* exactly the cap is fine */
    b[0] = 0, b[1] = 0, b[2] = 0xFF, b[3] = 0xFC; /* 65532 + 4 = 65536 */
    b[4] = 1;
    CU_ASSERT_EQUAL(proto_frame_next(b, 16, 65536, &h, &fl), PROTO_NEED_MORE);
    CU_ASSERT_EQUAL(proto_frame_next(b, 16, 65535, &h, &fl), PROTO_ERR_TOO_LARGE);
    /* a tiny configured cap counts as PROTO_MIN_FRAME_CAP */
    b[2] = 0, b[3] = 60;
    CU_ASSERT_EQUAL(proto_frame_next(b, 16, 1, &h, &fl), PROTO_NEED_MORE);
    b[3] = 61;
    CU_ASSERT_EQUAL(proto_frame_next(b, 16, 1, &h, &fl), PROTO_ERR_TOO_LARGE);
    /* bad version, from the 5th octet on; the header is complete at 16 */
    b[3] = 12;
    b[4] = 2;
    CU_ASSERT_EQUAL(proto_frame_next(b, 4, 65536, &h, &fl), PROTO_NEED_MORE);
    CU_ASSERT_EQUAL(proto_frame_next(b, 5, 65536, &h, &fl), PROTO_ERR_BAD_VERSION);
    CU_ASSERT_FALSE(h.complete);
    b[5] = 1;
    b[15] = 0x2A;
    CU_ASSERT_EQUAL(proto_frame_next(b, 16, 65536, &h, &fl), PROTO_ERR_BAD_VERSION);
    CU_ASSERT_TRUE(h.complete);
    CU_ASSERT_EQUAL(h.id, 0x2A);
    CU_ASSERT_EQUAL(h.version, 2);
    b[4] = 0;
    CU_ASSERT_EQUAL(proto_frame_next(b, 16, 65536, &h, &fl), PROTO_ERR_BAD_VERSION);
    /* a good header-only frame; extra octets after it are the next frame's */
    b[4] = 1;
    for (size_t n = 5; n < 16; n++)
        CU_ASSERT_EQUAL(proto_frame_next(b, n, 65536, &h, &fl), PROTO_NEED_MORE);
    CU_ASSERT_EQUAL(proto_frame_next(b, 20, 65536, &h, &fl), PROTO_OK);
    CU_ASSERT_EQUAL(fl, 16);
    CU_ASSERT_EQUAL(h.op, 1);
    /* NULL out-pointers are allowed */
    CU_ASSERT_EQUAL(proto_frame_next(b, 20, 65536, NULL, NULL), PROTO_OK);
}

/* ------------------------------------------------- malformed frames */

static void test_bad_requests(void)
{
    /* frame length inconsistent with the buffer handed in */
    fb_issue(&F);
    fb_end(&F);
    CU_ASSERT_EQUAL(proto_req_decode(F.b, F.n - 1, &RQ), PROTO_ERR_MALFORMED);
    CU_ASSERT_EQUAL(proto_req_decode(F.b, F.n + 1, &RQ), PROTO_ERR_MALFORMED);
    CU_ASSERT_EQUAL(proto_req_decode(F.b, 15, &RQ), PROTO_ERR_MALFORMED);
    CU_ASSERT_EQUAL(proto_req_decode(F.b, F.n, &RQ), PROTO_OK);

    fb_begin(&F, 2, PROTO_OP_ISSUE, 0, 5);
    CU_ASSERT_EQUAL(req_err(), PROTO_ERR_BAD_VERSION);
    CU_ASSERT_EQUAL(RQ.hdr.id, 5); /* the header is there to answer */
    fb_begin(&F, 1, PROTO_OP_STATUS, 1, 5);
    CU_ASSERT_EQUAL(req_err(), PROTO_ERR_BAD_FLAGS);
    fb_begin(&F, 1, PROTO_OP_STATUS, 0x8000, 5);
    CU_ASSERT_EQUAL(req_err(), PROTO_ERR_BAD_FLAGS);
    unsigned unknown[] = {0, PROTO_OP__MAX, 100, 255};
    for (size_t i = 0; i < 4; i++) {
        fb_begin(&F, 1, unknown[i], 0, 6);
        CU_ASSERT_EQUAL(req_err(), PROTO_ERR_UNKNOWN_OP);
        CU_ASSERT_EQUAL(RQ.hdr.op, unknown[i]);
        CU_ASSERT_EQUAL(RQ.hdr.id, 6);
    }
    for (unsigned op = PROTO_OP_SIGN; op <= PROTO_OP_CRL; op++) {
        fb_begin(&F, 1, op, 0, 7); /* no fields: the required one is missing */
        CU_ASSERT_EQUAL(req_err(), PROTO_ERR_MISSING);
        CU_ASSERT_EQUAL(RQ.hdr.op, op);
    }

    /* truncated field header: 1, 2, 3 octets left */
    for (int k = 1; k <= 3; k++) {
        fb_issue(&F);
        for (int i = 0; i < k; i++)
            fb_u8(&F, 0);
        CU_ASSERT_EQUAL(req_err(), PROTO_ERR_TRUNCATED);
    }
    /* field overrunning the body */
    fb_issue(&F);
    fb_u16(&F, PROTO_F_FQDN);
    fb_u16(&F, 5);
    fb_u8(&F, 'a');
    CU_ASSERT_EQUAL(req_err(), PROTO_ERR_FIELD_OVERRUN);
    fb_issue(&F);
    fb_u16(&F, 0x8001); /* even an ignorable one */
    fb_u16(&F, 0xFFFF);
    CU_ASSERT_EQUAL(req_err(), PROTO_ERR_FIELD_OVERRUN);

    /* duplicate single-valued fields */
    unsigned single[] = {PROTO_F_PROFILE, PROTO_F_CSR, PROTO_F_NF_INSTANCE_ID, PROTO_F_REQUESTER};
    for (size_t i = 0; i < 4; i++) {
        fb_issue(&F);
        fb_str(&F, single[i], "x");
        if (single[i] != PROTO_F_PROFILE && single[i] != PROTO_F_CSR)
            fb_str(&F, single[i], "y");
        CU_ASSERT_EQUAL(req_err(), PROTO_ERR_DUPLICATE);
    }
    fb_issue(&F);
    fb_field(&F, PROTO_F_VALIDITY, "\0\0\0\1", 4);
    CU_ASSERT_EQUAL(req_err(), PROTO_OK);
    CU_ASSERT_EQUAL(RQ.issue.validity_s, 1);
    fb_field(&F, PROTO_F_VALIDITY, "\0\0\0\2", 4);
    CU_ASSERT_EQUAL(req_err(), PROTO_ERR_DUPLICATE);

    /* too many FQDNs / NF types */
    fb_issue(&F);
    for (int i = 0; i < CF_MAX_FQDNS; i++)
        fb_str(&F, PROTO_F_FQDN, "a.example");
    CU_ASSERT_EQUAL(req_err(), PROTO_OK);
    CU_ASSERT_EQUAL(RQ.issue.n_fqdns, CF_MAX_FQDNS);
    fb_str(&F, PROTO_F_FQDN, "b.example");
    CU_ASSERT_EQUAL(req_err(), PROTO_ERR_TOO_MANY);
    fb_issue(&F);
    for (int i = 0; i <= CF_MAX_NF_TYPES; i++)
        fb_str(&F, PROTO_F_NF_TYPE, "AMF");
    CU_ASSERT_EQUAL(req_err(), PROTO_ERR_TOO_MANY);

    /* missing required fields */
    fb_begin(&F, 1, PROTO_OP_ISSUE, 0, 1);
    CU_ASSERT_EQUAL(req_err(), PROTO_ERR_MISSING);
    fb_begin(&F, 1, PROTO_OP_ISSUE, 0, 1);
    fb_str(&F, PROTO_F_PROFILE, "nf");
    fb_str(&F, PROTO_F_FQDN, "a.example");
    CU_ASSERT_EQUAL(req_err(), PROTO_ERR_MISSING);
    fb_begin(&F, 1, PROTO_OP_ISSUE, 0, 1);
    fb_field(&F, PROTO_F_CSR, fake_csr, 5);
    CU_ASSERT_EQUAL(req_err(), PROTO_ERR_MISSING);

    /* unknown tags; the ignorable range is skipped */
    unsigned unk[] = {0x0000, 0x0008, 0x0101, 0x0105, 0x7FFF};
    for (size_t i = 0; i < 5; i++) {
        fb_issue(&F);
        fb_str(&F, unk[i], "x");
        CU_ASSERT_EQUAL(req_err(), PROTO_ERR_UNKNOWN_FIELD);
    }
    fb_issue(&F);
    fb_str(&F, 0x8000, "future");
    fb_field(&F, 0xFFFF, "", 0);
    CU_ASSERT_EQUAL(req_err(), PROTO_OK);
    fb_begin(&F, 1, PROTO_OP_STATUS, 0, 1);
    fb_str(&F, PROTO_F_PROFILE, "nf"); /* STATUS takes no fields */
    CU_ASSERT_EQUAL(req_err(), PROTO_ERR_UNKNOWN_FIELD);
    fb_begin(&F, 1, PROTO_OP_KEYS, 0, 1);
    fb_str(&F, 0x9000, "x");
    CU_ASSERT_EQUAL(req_err(), PROTO_OK);

    /* bad values */
    fb_begin(&F, 1, PROTO_OP_ISSUE, 0, 1);
    fb_str(&F, PROTO_F_PROFILE, "");
    fb_field(&F, PROTO_F_CSR, fake_csr, 5);
    CU_ASSERT_EQUAL(req_err(), PROTO_ERR_BAD_VALUE);
    fb_begin(&F, 1, PROTO_OP_ISSUE, 0, 1);
    fb_str(&F, PROTO_F_PROFILE, "nf");
    fb_field(&F, PROTO_F_CSR, fake_csr, 0);
    CU_ASSERT_EQUAL(req_err(), PROTO_ERR_BAD_VALUE);
    const char *badtext[] = {"\xff", "a\xc3", "\xc0\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80"};
    for (size_t i = 0; i < 5; i++) {
        fb_issue(&F);
        fb_str(&F, PROTO_F_FQDN, badtext[i]);
        CU_ASSERT_EQUAL(req_err(), PROTO_ERR_BAD_VALUE);
    }
    fb_issue(&F);
    fb_field(&F, PROTO_F_REQUESTER, "a\0b", 3);
    CU_ASSERT_EQUAL(req_err(), PROTO_ERR_BAD_VALUE);
    fb_issue(&F);
    fb_str(&F, PROTO_F_FQDN, "");
    CU_ASSERT_EQUAL(req_err(), PROTO_ERR_BAD_VALUE);
    fb_issue(&F);
    fb_field(&F, PROTO_F_VALIDITY, "\0\0\1", 3);
    CU_ASSERT_EQUAL(req_err(), PROTO_ERR_BAD_VALUE);
    fb_issue(&F);
    fb_field(&F, PROTO_F_VALIDITY, "\0\0\0\0\1", 5);
    CU_ASSERT_EQUAL(req_err(), PROTO_ERR_BAD_VALUE);
    /* an empty optional text is the same as absent */
    fb_issue(&F);
    fb_str(&F, PROTO_F_NF_INSTANCE_ID, "");
    CU_ASSERT_EQUAL(req_err(), PROTO_OK);
}

/* SIGN, REVOKE and CRL: round trips, every mechanism's digest length,
 * and each malformed field with its exact error. */
static void test_sign_revoke_crl(void)
{
    static uint8_t b[70000];
    uint8_t data[64];
    memset(data, 0x5a, sizeof(data));
    for (unsigned m = 1; m < CF_SIGN__MAX; m++) {
        size_t dl = proto_sign_mech_digest_len(m);
        CU_ASSERT_PTR_NOT_NULL(proto_sign_mech_name(m));
        proto_sign_req r = {.key = {"nf-ca", 5}, .mech = m, .data = data,
                            .data_len = dl ? dl : 17, .requester = {"openssl", 7}};
        size_t n = proto_enc_sign_req(b, sizeof(b), 42, &r);
        CU_ASSERT_FATAL(n > PROTO_HDR_LEN);
        CU_ASSERT_EQUAL_FATAL(proto_req_decode(b, n, &RQ), PROTO_OK);
        CU_ASSERT_EQUAL(RQ.hdr.op, PROTO_OP_SIGN);
        CU_ASSERT_EQUAL(RQ.hdr.id, 42);
        CU_ASSERT(str_eq(RQ.sign.key, r.key));
        CU_ASSERT(str_eq(RQ.sign.requester, r.requester));
        CU_ASSERT_EQUAL(RQ.sign.mech, m);
        CU_ASSERT_EQUAL(RQ.sign.data_len, r.data_len);
        CU_ASSERT(memcmp(RQ.sign.data, data, r.data_len) == 0);
        if (dl) { /* a digest of the wrong size is not encoded */
            r.data_len = dl - 1;
            CU_ASSERT_EQUAL(proto_enc_sign_req(b, sizeof(b), 1, &r), 0);
        }
    }
    CU_ASSERT_EQUAL(proto_sign_mech_digest_len(CF_SIGN_ECDSA_SHA384), 48);
    CU_ASSERT_EQUAL(proto_sign_mech_digest_len(CF_SIGN_RSA_PSS_SHA512), 64);
    CU_ASSERT_STRING_EQUAL(proto_sign_mech_name(CF_SIGN_RSA_PKCS1_SHA256),
                           "rsa-pkcs1-sha256");
    CU_ASSERT_PTR_NULL(proto_sign_mech_name(0));
    CU_ASSERT_PTR_NULL(proto_sign_mech_name(CF_SIGN__MAX));

    /* SIGN decode errors */
    uint8_t mech[2] = {0, 1};
    fb_begin(&F, 1, PROTO_OP_SIGN, 0, 3);
    fb_str(&F, PROTO_F_KEY_NAME, "k");
    fb_field(&F, PROTO_F_MECHANISM, mech, 2);
    CU_ASSERT_EQUAL(req_err(), PROTO_ERR_MISSING); /* no data */
    fb_begin(&F, 1, PROTO_OP_SIGN, 0, 3);
    fb_str(&F, PROTO_F_KEY_NAME, "k");
    fb_field(&F, PROTO_F_MECHANISM, mech, 2);
    fb_field(&F, PROTO_F_DATA, data, 31);
    CU_ASSERT_EQUAL(req_err(), PROTO_ERR_BAD_VALUE); /* SHA-256 digest of 31 octets */
    fb_begin(&F, 1, PROTO_OP_SIGN, 0, 3);
    fb_str(&F, PROTO_F_KEY_NAME, "k");
    fb_field(&F, PROTO_F_MECHANISM, mech, 1);
    CU_ASSERT_EQUAL(req_err(), PROTO_ERR_BAD_VALUE); /* mechanism of one octet */
    uint8_t bad_mech[2] = {0, 11};
    fb_begin(&F, 1, PROTO_OP_SIGN, 0, 3);
    fb_field(&F, PROTO_F_MECHANISM, bad_mech, 2);
    CU_ASSERT_EQUAL(req_err(), PROTO_ERR_BAD_VALUE);
    bad_mech[1] = 0;
    fb_begin(&F, 1, PROTO_OP_SIGN, 0, 3);
    fb_field(&F, PROTO_F_MECHANISM, bad_mech, 2);
    CU_ASSERT_EQUAL(req_err(), PROTO_ERR_BAD_VALUE);
    fb_begin(&F, 1, PROTO_OP_SIGN, 0, 3);
    fb_str(&F, PROTO_F_KEY_NAME, "k");
    fb_str(&F, PROTO_F_KEY_NAME, "k");
    CU_ASSERT_EQUAL(req_err(), PROTO_ERR_DUPLICATE);
    fb_begin(&F, 1, PROTO_OP_SIGN, 0, 3);
    fb_field(&F, PROTO_F_KEY_NAME, "", 0);
    CU_ASSERT_EQUAL(req_err(), PROTO_ERR_BAD_VALUE);
    fb_begin(&F, 1, PROTO_OP_SIGN, 0, 3);
    fb_field(&F, PROTO_F_DATA, "", 0);
    CU_ASSERT_EQUAL(req_err(), PROTO_ERR_BAD_VALUE);
    fb_begin(&F, 1, PROTO_OP_SIGN, 0, 3);
    fb_str(&F, PROTO_F_PROFILE, "nf"); /* an ISSUE field */
    CU_ASSERT_EQUAL(req_err(), PROTO_ERR_UNKNOWN_FIELD);
    fb_begin(&F, 1, PROTO_OP_ISSUE, 0, 3);
    fb_str(&F, PROTO_F_KEY_NAME, "k"); /* a SIGN field in ISSUE */
    CU_ASSERT_EQUAL(req_err(), PROTO_ERR_UNKNOWN_FIELD);

    /* REVOKE */
    uint8_t serial[20];
    memset(serial, 0x11, sizeof(serial));
    proto_revoke_req rv = {.serial = serial, .serial_len = 20, .reason = 10};
    size_t n = proto_enc_revoke_req(b, sizeof(b), 9, &rv);
    CU_ASSERT_EQUAL_FATAL(proto_req_decode(b, n, &RQ), PROTO_OK);
    CU_ASSERT_EQUAL(RQ.revoke.serial_len, 20);
    CU_ASSERT_EQUAL(RQ.revoke.reason, 10);
    CU_ASSERT_EQUAL(RQ.revoke.requester.len, 0);
    rv.reason = 7;
    CU_ASSERT_EQUAL(proto_enc_revoke_req(b, sizeof(b), 9, &rv), 0);
    rv.reason = 1;
    rv.serial_len = 21;
    CU_ASSERT_EQUAL(proto_enc_revoke_req(b, sizeof(b), 9, &rv), 0);
    fb_begin(&F, 1, PROTO_OP_REVOKE, 0, 3);
    fb_field(&F, PROTO_F_REVOKE_SERIAL, serial, 1);
    CU_ASSERT_EQUAL(req_err(), PROTO_OK);
    CU_ASSERT_EQUAL(RQ.revoke.reason, 0); /* absent: unspecified */
    fb_begin(&F, 1, PROTO_OP_REVOKE, 0, 3);
    fb_field(&F, PROTO_F_REVOKE_SERIAL, serial, 20);
    fb_field(&F, PROTO_F_REVOKE_SERIAL, serial, 20);
    CU_ASSERT_EQUAL(req_err(), PROTO_ERR_DUPLICATE);
    fb_begin(&F, 1, PROTO_OP_REVOKE, 0, 3);
    fb_field(&F, PROTO_F_REVOKE_SERIAL, big_cert, 21);
    CU_ASSERT_EQUAL(req_err(), PROTO_ERR_BAD_VALUE);
    unsigned bad_reasons[] = {7, 11, 255};
    for (int i = 0; i < 3; i++) {
        uint8_t r8 = (uint8_t)bad_reasons[i];
        fb_begin(&F, 1, PROTO_OP_REVOKE, 0, 3);
        fb_field(&F, PROTO_F_REVOKE_SERIAL, serial, 2);
        fb_field(&F, PROTO_F_REASON, &r8, 1);
        CU_ASSERT_EQUAL(req_err(), PROTO_ERR_BAD_VALUE);
    }
    fb_begin(&F, 1, PROTO_OP_REVOKE, 0, 3);
    fb_field(&F, PROTO_F_REVOKE_SERIAL, serial, 2);
    fb_field(&F, PROTO_F_REASON, serial, 2);
    CU_ASSERT_EQUAL(req_err(), PROTO_ERR_BAD_VALUE);
    fb_begin(&F, 1, PROTO_OP_REVOKE, 0, 3);
    uint8_t r1 = 1;
    fb_field(&F, PROTO_F_REASON, &r1, 1);
    CU_ASSERT_EQUAL(req_err(), PROTO_ERR_MISSING);

    /* CRL */
    n = proto_enc_crl_req(b, sizeof(b), 10, (cf_str){"nf-ica", 6}, false);
    CU_ASSERT_EQUAL_FATAL(proto_req_decode(b, n, &RQ), PROTO_OK);
    CU_ASSERT(str_eq(RQ.crl.issuer, (cf_str){"nf-ica", 6}));
    CU_ASSERT_FALSE(RQ.crl.fresh);
    n = proto_enc_crl_req(b, sizeof(b), 10, (cf_str){"nf-ica", 6}, true);
    CU_ASSERT_EQUAL_FATAL(proto_req_decode(b, n, &RQ), PROTO_OK);
    CU_ASSERT_TRUE(RQ.crl.fresh);
    CU_ASSERT_EQUAL(proto_enc_crl_req(b, sizeof(b), 10, (cf_str){"", 0}, false), 0);
    fb_begin(&F, 1, PROTO_OP_CRL, 0, 3);
    fb_str(&F, PROTO_F_ISSUER, "a");
    fb_field(&F, PROTO_F_FRESH, "\2", 1);
    CU_ASSERT_EQUAL(req_err(), PROTO_ERR_BAD_VALUE);
    fb_begin(&F, 1, PROTO_OP_CRL, 0, 3);
    fb_str(&F, PROTO_F_ISSUER, "a");
    fb_field(&F, PROTO_F_FRESH, "\1\1", 2);
    CU_ASSERT_EQUAL(req_err(), PROTO_ERR_BAD_VALUE);
    fb_begin(&F, 1, PROTO_OP_CRL, 0, 3);
    fb_field(&F, PROTO_F_FRESH, "\1", 1);
    CU_ASSERT_EQUAL(req_err(), PROTO_ERR_MISSING);
    fb_begin(&F, 1, PROTO_OP_CRL, 0, 3);
    fb_str(&F, PROTO_F_ISSUER, "a");
    fb_str(&F, PROTO_F_REQUESTER, "x");
    CU_ASSERT_EQUAL(req_err(), PROTO_ERR_UNKNOWN_FIELD);
    /* CRL shard: u16 BE, once; absent = 0, and shard 0 is written as absent */
    n = proto_enc_crl_shard_req(b, sizeof(b), 10, (cf_str){"nf-ica", 6}, 0x0102, true);
    CU_ASSERT_EQUAL_FATAL(proto_req_decode(b, n, &RQ), PROTO_OK);
    CU_ASSERT_EQUAL(RQ.crl.shard, 0x0102);
    CU_ASSERT_TRUE(RQ.crl.fresh);
    CU_ASSERT(str_eq(RQ.crl.issuer, (cf_str){"nf-ica", 6}));
    size_t n0 = proto_enc_crl_shard_req(b, sizeof(b), 10, (cf_str){"nf-ica", 6}, 0, false);
    CU_ASSERT_EQUAL(n0, proto_enc_crl_req(b, sizeof(b), 10, (cf_str){"nf-ica", 6}, false));
    CU_ASSERT_EQUAL_FATAL(proto_req_decode(b, n0, &RQ), PROTO_OK);
    CU_ASSERT_EQUAL(RQ.crl.shard, 0);
    CU_ASSERT_EQUAL(proto_enc_crl_shard_req(b, sizeof(b), 10, (cf_str){"a", 1}, 65535, false) > 0,
                    true);
    CU_ASSERT_EQUAL(proto_enc_crl_shard_req(b, sizeof(b), 10, (cf_str){"a", 1}, 65536, false), 0);
    fb_begin(&F, 1, PROTO_OP_CRL, 0, 3);
    fb_str(&F, PROTO_F_ISSUER, "a");
    fb_field(&F, PROTO_F_SHARD, "\0\7", 2);
    CU_ASSERT_EQUAL(req_err(), PROTO_OK);
    CU_ASSERT_EQUAL(RQ.crl.shard, 7);
    fb_begin(&F, 1, PROTO_OP_CRL, 0, 3);
    fb_str(&F, PROTO_F_ISSUER, "a");
    fb_field(&F, PROTO_F_SHARD, "\7", 1);
    CU_ASSERT_EQUAL(req_err(), PROTO_ERR_BAD_VALUE);
    fb_begin(&F, 1, PROTO_OP_CRL, 0, 3);
    fb_str(&F, PROTO_F_ISSUER, "a");
    fb_field(&F, PROTO_F_SHARD, "\0\0\7", 3);
    CU_ASSERT_EQUAL(req_err(), PROTO_ERR_BAD_VALUE);
    fb_begin(&F, 1, PROTO_OP_CRL, 0, 3);
    fb_str(&F, PROTO_F_ISSUER, "a");
    fb_field(&F, PROTO_F_SHARD, "", 0);
    CU_ASSERT_EQUAL(req_err(), PROTO_ERR_BAD_VALUE);
    fb_begin(&F, 1, PROTO_OP_CRL, 0, 3);
    fb_str(&F, PROTO_F_ISSUER, "a");
    fb_field(&F, PROTO_F_SHARD, "\0\1", 2);
    fb_field(&F, PROTO_F_SHARD, "\0\2", 2);
    CU_ASSERT_EQUAL(req_err(), PROTO_ERR_DUPLICATE);
    fb_begin(&F, 1, PROTO_OP_CRL, 0, 3);
    fb_field(&F, PROTO_F_SHARD, "\0\1", 2);
    CU_ASSERT_EQUAL(req_err(), PROTO_ERR_MISSING);
    fb_begin(&F, 1, PROTO_OP_REVOKE, 0, 3);
    fb_field(&F, PROTO_F_REVOKE_SERIAL, serial, 2);
    fb_field(&F, PROTO_F_SHARD, "\0\1", 2);
    CU_ASSERT_EQUAL(req_err(), PROTO_ERR_UNKNOWN_FIELD);

    /* responses */
    proto_resp r;
    memset(&r, 0, sizeof(r));
    r.op = PROTO_OP_SIGN;
    r.id = 5;
    r.sig = (proto_blob){data, 64};
    rt_resp(&r);
    memset(&r, 0, sizeof(r));
    r.op = PROTO_OP_REVOKE;
    r.has_revoked = true;
    r.revoked_at = 1800000000;
    r.reason = 4;
    rt_resp(&r);
    memset(&r, 0, sizeof(r));
    r.op = PROTO_OP_CRL;
    r.crl = (proto_blob){big_cert, sizeof(big_cert)};
    rt_resp(&r);
    /* OK without the op's field, or a field of another op: not encoded */
    memset(&r, 0, sizeof(r));
    r.op = PROTO_OP_SIGN;
    CU_ASSERT_EQUAL(proto_resp_encode(b, sizeof(b), &r), 0);
    r.op = PROTO_OP_REVOKE;
    CU_ASSERT_EQUAL(proto_resp_encode(b, sizeof(b), &r), 0);
    r.op = PROTO_OP_CRL;
    CU_ASSERT_EQUAL(proto_resp_encode(b, sizeof(b), &r), 0);
    r.op = PROTO_OP_ISSUE;
    r.status = CF_ST_NOT_FOUND;
    r.sig = (proto_blob){data, 4};
    CU_ASSERT_EQUAL(proto_resp_encode(b, sizeof(b), &r), 0);
    /* an error answer carries no field */
    r.op = PROTO_OP_SIGN;
    r.sig = (proto_blob){NULL, 0};
    CU_ASSERT(proto_resp_encode(b, sizeof(b), &r) > 0);
    CU_ASSERT(proto_enc_sign_ok(b, sizeof(b), 1, data, 64) > 0);
    CU_ASSERT(proto_enc_revoke_ok(b, sizeof(b), 1, 5, 1) > 0);
    CU_ASSERT_EQUAL(proto_enc_revoke_ok(b, sizeof(b), 1, -1, 1), 0);
    CU_ASSERT_EQUAL(proto_enc_revoke_ok(b, sizeof(b), 1, 5, 7), 0);
    CU_ASSERT(proto_enc_crl_ok(b, sizeof(b), 1, data, 3) > 0);
}

static void resp_begin(unsigned op, unsigned status, uint32_t detail)
{
    fb_begin(&F, 1, op, 0, 11);
    fb_u16(&F, status);
    fb_u32(&F, detail);
}

static void test_bad_responses(void)
{
    for (int k = 0; k < 6; k++) {
        fb_begin(&F, 1, PROTO_OP_STATUS, 0, 1);
        for (int i = 0; i < k; i++)
            fb_u8(&F, 0);
        CU_ASSERT_EQUAL(resp_err(), PROTO_ERR_TRUNCATED);
    }
    resp_begin(PROTO_OP_STATUS, 0, 0);
    CU_ASSERT_EQUAL(resp_err(), PROTO_OK);
    /* SIGN / REVOKE / CRL answers: required fields, sizes, wrong op */
    resp_begin(PROTO_OP_SIGN, 0, 0);
    CU_ASSERT_EQUAL(resp_err(), PROTO_ERR_MISSING);
    resp_begin(PROTO_OP_SIGN, CF_ST_UNAUTHORIZED, 0);
    CU_ASSERT_EQUAL(resp_err(), PROTO_OK);
    resp_begin(PROTO_OP_SIGN, 0, 0);
    fb_field(&F, PROTO_F_SIGNATURE, "", 0);
    CU_ASSERT_EQUAL(resp_err(), PROTO_ERR_BAD_VALUE);
    resp_begin(PROTO_OP_ISSUE, CF_ST_BUSY, 0);
    fb_field(&F, PROTO_F_SIGNATURE, "ab", 2);
    CU_ASSERT_EQUAL(resp_err(), PROTO_ERR_UNKNOWN_FIELD);
    resp_begin(PROTO_OP_REVOKE, 0, 0);
    fb_field(&F, PROTO_F_REVOKED_AT, "12345678", 8);
    CU_ASSERT_EQUAL(resp_err(), PROTO_ERR_MISSING); /* reason missing */
    resp_begin(PROTO_OP_REVOKE, 0, 0);
    fb_field(&F, PROTO_F_REVOKED_AT, "1234567", 7);
    CU_ASSERT_EQUAL(resp_err(), PROTO_ERR_BAD_VALUE);
    resp_begin(PROTO_OP_REVOKE, 0, 0);
    fb_field(&F, PROTO_F_REVOKED_AT, "\x80\0\0\0\0\0\0\0", 8);
    CU_ASSERT_EQUAL(resp_err(), PROTO_ERR_BAD_VALUE); /* beyond INT64_MAX */
    resp_begin(PROTO_OP_REVOKE, 0, 0);
    fb_field(&F, PROTO_F_REVOKED_AT, "\0\0\0\0\0\0\0\1", 8);
    fb_field(&F, PROTO_F_REVOKED_REASON, "\7", 1);
    CU_ASSERT_EQUAL(resp_err(), PROTO_ERR_BAD_VALUE);
    resp_begin(PROTO_OP_CRL, 0, 0);
    CU_ASSERT_EQUAL(resp_err(), PROTO_ERR_MISSING);
    resp_begin(PROTO_OP_CRL, 0, 0);
    fb_field(&F, PROTO_F_CRL, "0", 1);
    fb_field(&F, PROTO_F_CRL, "0", 1);
    CU_ASSERT_EQUAL(resp_err(), PROTO_ERR_DUPLICATE);
    fb_begin(&F, 1, PROTO_OP_STATUS, 4, 1);
    CU_ASSERT_EQUAL(resp_err(), PROTO_ERR_BAD_FLAGS);
    fb_begin(&F, 3, PROTO_OP_STATUS, 0, 1);
    CU_ASSERT_EQUAL(resp_err(), PROTO_ERR_BAD_VERSION);

    resp_begin(PROTO_OP_ISSUE, 0, 0);
    CU_ASSERT_EQUAL(resp_err(), PROTO_ERR_MISSING); /* OK without cert */
    resp_begin(PROTO_OP_ISSUE, 0, 0);
    fb_field(&F, PROTO_F_CERT, "c", 1);
    fb_field(&F, PROTO_F_CERT, "c", 1);
    CU_ASSERT_EQUAL(resp_err(), PROTO_ERR_DUPLICATE);
    resp_begin(PROTO_OP_ISSUE, 0, 0);
    fb_field(&F, PROTO_F_CERT, "", 0);
    CU_ASSERT_EQUAL(resp_err(), PROTO_ERR_BAD_VALUE);
    resp_begin(PROTO_OP_ISSUE, 2, 1);
    fb_str(&F, PROTO_F_MESSAGE, "m");
    fb_str(&F, PROTO_F_MESSAGE, "m");
    CU_ASSERT_EQUAL(resp_err(), PROTO_ERR_DUPLICATE);
    resp_begin(PROTO_OP_ISSUE, 0, 0);
    fb_field(&F, PROTO_F_CERT, "c", 1);
    fb_field(&F, PROTO_F_SERIAL, "012345678901234567890", 21);
    CU_ASSERT_EQUAL(resp_err(), PROTO_ERR_BAD_VALUE);
    resp_begin(PROTO_OP_ISSUE, 0, 0);
    fb_field(&F, PROTO_F_CERT, "c", 1);
    for (int i = 0; i <= PROTO_MAX_CHAIN; i++)
        fb_field(&F, PROTO_F_CHAIN, "c", 1);
    CU_ASSERT_EQUAL(resp_err(), PROTO_ERR_TOO_MANY);
    /* fields on the wrong op */
    resp_begin(PROTO_OP_STATUS, 0, 0);
    fb_field(&F, PROTO_F_CERT, "c", 1);
    CU_ASSERT_EQUAL(resp_err(), PROTO_ERR_UNKNOWN_FIELD);
    resp_begin(PROTO_OP_ISSUE, 6, 0);
    fb_field(&F, PROTO_F_KV, "\1ab", 3);
    CU_ASSERT_EQUAL(resp_err(), PROTO_ERR_UNKNOWN_FIELD);
    resp_begin(PROTO_OP_STATUS, 0, 0);
    fb_field(&F, PROTO_F_KEY, "\1a\1bc", 5);
    CU_ASSERT_EQUAL(resp_err(), PROTO_ERR_UNKNOWN_FIELD);
    resp_begin(PROTO_OP_STATUS, 0, 0);
    fb_field(&F, PROTO_F_FQDN, "a", 1); /* a request tag */
    CU_ASSERT_EQUAL(resp_err(), PROTO_ERR_UNKNOWN_FIELD);
    /* kv shapes */
    const struct {
        const char *v;
        size_t n;
        proto_err e;
    } kvs[] = {{"", 0, PROTO_ERR_BAD_VALUE},
               {"\0x", 2, PROTO_ERR_BAD_VALUE},
               {"\3ab", 3, PROTO_ERR_BAD_VALUE},
               {"\2ab", 3, PROTO_OK},
               {"\2a\xff", 3, PROTO_ERR_BAD_VALUE},
               {"\1a\xff", 3, PROTO_ERR_BAD_VALUE},
               {"\1a1", 3, PROTO_OK}};
    for (size_t i = 0; i < sizeof(kvs) / sizeof(kvs[0]); i++) {
        resp_begin(PROTO_OP_STATUS, 0, 0);
        fb_field(&F, PROTO_F_KV, kvs[i].v, kvs[i].n);
        CU_ASSERT_EQUAL(resp_err(), kvs[i].e);
    }
    resp_begin(PROTO_OP_STATUS, 0, 0);
    for (int i = 0; i <= PROTO_MAX_KV; i++)
        fb_field(&F, PROTO_F_KV, "\1a1", 3);
    CU_ASSERT_EQUAL(resp_err(), PROTO_ERR_TOO_MANY);
    /* key shapes */
    const struct {
        const char *v;
        size_t n;
        proto_err e;
    } ks[] = {{"", 0, PROTO_ERR_BAD_VALUE},
              {"\0", 1, PROTO_ERR_BAD_VALUE},
              {"\1a", 2, PROTO_ERR_BAD_VALUE},
              {"\1a\0s", 4, PROTO_ERR_BAD_VALUE},
              {"\1a\2b", 4, PROTO_ERR_BAD_VALUE},
              {"\1a\1b", 4, PROTO_ERR_BAD_VALUE},
              {"\1a\1bS", 5, PROTO_OK},
              {"\1\xff\1bS", 5, PROTO_ERR_BAD_VALUE},
              {"\1a\1\x80S", 5, PROTO_ERR_BAD_VALUE}};
    for (size_t i = 0; i < sizeof(ks) / sizeof(ks[0]); i++) {
        resp_begin(PROTO_OP_KEYS, 0, 0);
        fb_field(&F, PROTO_F_KEY, ks[i].v, ks[i].n);
        CU_ASSERT_EQUAL(resp_err(), ks[i].e);
    }
    /* message is not validated on decode; ignorable tags skipped */
    resp_begin(PROTO_OP_KEYS, 8, 0);
    fb_field(&F, PROTO_F_MESSAGE, "\xff\0", 2);
    fb_field(&F, 0xABCD, "zz", 2);
    CU_ASSERT_EQUAL(resp_err(), PROTO_OK);
    CU_ASSERT_EQUAL(RS.message.len, 2);
    /* truncated / overrunning fields in a response */
    resp_begin(PROTO_OP_KEYS, 8, 0);
    fb_u8(&F, 1);
    CU_ASSERT_EQUAL(resp_err(), PROTO_ERR_TRUNCATED);
    resp_begin(PROTO_OP_KEYS, 8, 0);
    fb_u16(&F, PROTO_F_MESSAGE);
    fb_u16(&F, 1);
    CU_ASSERT_EQUAL(resp_err(), PROTO_ERR_FIELD_OVERRUN);
}

/* ------------------------------------------------- stream splitting */

static uint8_t stream[4096];
static size_t stream_len, frame_off[3], frame_len[3];

static void make_stream(void)
{
    cf_issue_req r = {.profile = S("nf"), .csr_der = fake_csr, .csr_len = 5};
    r.fqdns[0] = S("amf.example");
    r.n_fqdns = 1;
    stream_len = 0;
    frame_off[0] = 0;
    frame_len[0] = proto_enc_issue_req(stream, sizeof(stream), 100, &r);
    stream_len += frame_len[0];
    frame_off[1] = stream_len;
    frame_len[1] = proto_enc_status_req(stream + stream_len, sizeof(stream) - stream_len, 101);
    stream_len += frame_len[1];
    frame_off[2] = stream_len;
    frame_len[2] = proto_enc_keys_req(stream + stream_len, sizeof(stream) - stream_len, 102);
    stream_len += frame_len[2];
}

/* Feed the stream in chunks given by next_chunk; extract frames as they
 * complete; check the three come out whole, in order. */
static void feed(size_t (*next_chunk)(size_t left))
{
    uint8_t acc[4096];
    size_t have = 0, fed = 0, got = 0;
    while (fed < stream_len || have > 0) {
        if (fed < stream_len) {
            size_t k = next_chunk(stream_len - fed);
            memcpy(acc + have, stream + fed, k);
            have += k;
            fed += k;
        }
        for (;;) {
            proto_hdr h;
            size_t fl;
            proto_err e = proto_frame_next(acc, have, 65536, &h, &fl);
            if (e == PROTO_NEED_MORE)
                break;
            CU_ASSERT_EQUAL_FATAL(e, PROTO_OK);
            CU_ASSERT_FATAL(got < 3);
            CU_ASSERT_EQUAL(fl, frame_len[got]);
            CU_ASSERT(memcmp(acc, stream + frame_off[got], fl) == 0);
            CU_ASSERT_EQUAL(h.id, 100 + got);
            CU_ASSERT_EQUAL(proto_req_decode(acc, fl, &RQ), PROTO_OK);
            memmove(acc, acc + fl, have - fl);
            have -= fl;
            got++;
        }
        if (fed == stream_len && have > 0) {
            CU_FAIL("octets left over");
            break;
        }
    }
    CU_ASSERT_EQUAL(got, 3);
}

static size_t chunk_one(size_t left)
{
    return 1;
}

static size_t chunk_random(size_t left)
{
    size_t k = 1 + (size_t)rand() % 40;
    return k < left ? k : left;
}

static void test_stream_splits(void)
{
    make_stream();
    feed(chunk_one);
    srand(12345);
    for (int i = 0; i < 2000; i++)
        feed(chunk_random);
    /* all at once */
    proto_hdr h;
    size_t fl, off = 0;
    for (int i = 0; i < 3; i++) {
        CU_ASSERT_EQUAL_FATAL(proto_frame_next(stream + off, stream_len - off, 65536, &h, &fl),
                              PROTO_OK);
        off += fl;
    }
    CU_ASSERT_EQUAL(off, stream_len);
}

/* ------------------------------------------------------ doc examples */

static char *doc;

/* The octets of the ```hex NAME block in docs/protocol.md ('#' starts a
 * comment); 0 if the block is missing. */
static size_t doc_block(const char *name, uint8_t *out, size_t cap)
{
    char fence[128];
    snprintf(fence, sizeof(fence), "```hex %s\n", name);
    const char *p = strstr(doc, fence);
    if (!p)
        return 0;
    p += strlen(fence);
    const char *end = strstr(p, "```");
    if (!end)
        return 0;
    size_t n = 0;
    while (p < end) {
        if (*p == '#') {
            while (p < end && *p != '\n')
                p++;
            continue;
        }
        if (*p == ' ' || *p == '\n') {
            p++;
            continue;
        }
        unsigned v;
        if (n >= cap || sscanf(p, "%2x", &v) != 1)
            return 0;
        out[n++] = (uint8_t)v;
        p += 2;
    }
    return n;
}

static int doc_init(void)
{
    const char *src = getenv("CF_SOURCE_DIR");
    char path[1024];
    snprintf(path, sizeof(path), "%s/docs/protocol.md", src ? src : CF_TEST_SOURCE_DIR);
    FILE *f = fopen(path, "rb");
    if (!f)
        return cf_test_setup_failed("cannot open %s (set CF_SOURCE_DIR)", path);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    doc = calloc(1, (size_t)sz + 1);
    if (doc && fread(doc, 1, (size_t)sz, f) != (size_t)sz) {
        free(doc);
        doc = NULL;
    }
    fclose(f);
    return 0;
}

static int doc_clean(void)
{
    free(doc);
    return 0;
}

static void test_doc_examples(void)
{
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    static uint8_t b[4096], e[4096];
    size_t n, m;
    proto_hdr h;
    size_t fl;

    n = doc_block("issue-request", b, sizeof(b));
    CU_ASSERT_FATAL(n > 0);
    CU_ASSERT_EQUAL(proto_frame_next(b, n, PROTO_MAX_FRAME_DEFAULT, &h, &fl), PROTO_OK);
    CU_ASSERT_EQUAL(fl, n);
    CU_ASSERT_EQUAL_FATAL(proto_req_decode(b, n, &RQ), PROTO_OK);
    CU_ASSERT_EQUAL(RQ.hdr.op, PROTO_OP_ISSUE);
    CU_ASSERT_EQUAL(RQ.hdr.id, 1);
    CU_ASSERT(str_eq(RQ.issue.profile, S("nf")));
    CU_ASSERT_EQUAL(RQ.issue.csr_len, 5);
    CU_ASSERT(memcmp(RQ.issue.csr_der, fake_csr, 5) == 0);
    CU_ASSERT_EQUAL_FATAL(RQ.issue.n_fqdns, 1);
    CU_ASSERT(str_eq(RQ.issue.fqdns[0], S("amf1.5gc.example")));
    CU_ASSERT_EQUAL_FATAL(RQ.issue.n_nf_types, 1);
    CU_ASSERT(str_eq(RQ.issue.nf_types[0], S("AMF")));
    CU_ASSERT_EQUAL(RQ.issue.validity_s, 86400);
    CU_ASSERT(str_eq(RQ.issue.requester, S("ccnf")));
    CU_ASSERT_EQUAL(RQ.issue.nf_instance_id.len, 0);
    m = proto_req_encode(e, sizeof(e), &RQ);
    CU_ASSERT(m == n && memcmp(b, e, n) == 0);

    n = doc_block("bad-csr-response", b, sizeof(b));
    CU_ASSERT_FATAL(n > 0);
    CU_ASSERT_EQUAL_FATAL(proto_resp_decode(b, n, &RS), PROTO_OK);
    CU_ASSERT_EQUAL(RS.op, PROTO_OP_ISSUE);
    CU_ASSERT_EQUAL(RS.id, 1);
    CU_ASSERT_EQUAL(RS.status, CF_ST_BAD_CSR);
    CU_ASSERT_EQUAL(RS.detail, 1); /* CSR_ERR_MALFORMED */
    CU_ASSERT(str_eq(RS.message, S("CSR is malformed")));
    m = proto_enc_error(e, sizeof(e), PROTO_OP_ISSUE, 1, CF_ST_BAD_CSR, 1, "CSR is malformed");
    CU_ASSERT(m == n && memcmp(b, e, n) == 0);

    n = doc_block("status-request", b, sizeof(b));
    CU_ASSERT_FATAL(n > 0);
    CU_ASSERT_EQUAL_FATAL(proto_req_decode(b, n, &RQ), PROTO_OK);
    CU_ASSERT_EQUAL(RQ.hdr.op, PROTO_OP_STATUS);
    CU_ASSERT_EQUAL(RQ.hdr.id, 2);
    m = proto_enc_status_req(e, sizeof(e), 2);
    CU_ASSERT(m == n && memcmp(b, e, n) == 0);

    n = doc_block("status-response", b, sizeof(b));
    CU_ASSERT_FATAL(n > 0);
    CU_ASSERT_EQUAL_FATAL(proto_resp_decode(b, n, &RS), PROTO_OK);
    CU_ASSERT_EQUAL(RS.op, PROTO_OP_STATUS);
    CU_ASSERT_EQUAL(RS.id, 2);
    CU_ASSERT_EQUAL(RS.status, CF_ST_OK);
    CU_ASSERT_EQUAL_FATAL(RS.n_kv, 3);
    CU_ASSERT(str_eq(RS.kv[0].key, S("uptime_s")) && str_eq(RS.kv[0].value, S("3600")));
    CU_ASSERT(str_eq(RS.kv[1].key, S("issued")) && str_eq(RS.kv[1].value, S("42")));
    CU_ASSERT(str_eq(RS.kv[2].key, S("queue_depth")) && str_eq(RS.kv[2].value, S("0")));
    m = proto_resp_encode(e, sizeof(e), &RS);
    CU_ASSERT(m == n && memcmp(b, e, n) == 0);

    /* the status table in the doc names every cf_status with its number */
    for (int s = 0; s < CF_ST__MAX; s++) {
        char row[64];
        snprintf(row, sizeof(row), "| %-6d | %-15s |", s, cf_status_name((cf_status)s));
        CU_ASSERT_PTR_NOT_NULL(strstr(doc, row));
        if (!strstr(doc, row))
            fprintf(stderr, "docs/protocol.md lacks the row \"%s\"\n", row);
    }
}

int main(int argc, char **argv)
{
    static const cf_test tests[] = {
        {"names and status mapping", test_names},
        {"ISSUE request round trip and capacities", test_rt_issue_req},
        {"decoded once: header from frame_next, fields moved with the frame", test_decode_once},
        {"STATUS and KEYS requests", test_rt_empty_reqs},
        {"SIGN, REVOKE, CRL: round trips and malformed fields", test_sign_revoke_crl},
        {"responses round trip and capacities", test_rt_responses},
        {"message sanitised to UTF-8", test_message_sanitised},
        {"encoders refuse what decoders reject", test_encode_rejects},
        {"frame extraction: length, cap, version", test_frame_next},
        {"malformed requests, exact errors", test_bad_requests},
        {"malformed responses, exact errors", test_bad_responses},
        {"three frames across arbitrary splits", test_stream_splits},
    };
    static const cf_test doc_tests[] = {
        {"hex examples decode and re-encode byte-exact", test_doc_examples},
    };
    static const cf_suite suites[] = {
        CF_SUITE("proto", NULL, NULL, tests),
        CF_SUITE("docs/protocol.md", doc_init, doc_clean, doc_tests),
    };
    return CF_TEST_MAIN(argc, argv, suites);
}
