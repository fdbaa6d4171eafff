/* proto.c — the wire codec (docs/protocol.md). No allocation; decoders
 * never read outside the frame they are given, encoders never write past
 * the capacity they are given. */
#include "proto/proto.h"

#include <string.h>

#include "common/reason.h"

/* ---------------------------------------------------------------- names */

static const char *const op_names[PROTO_OP__MAX] = {
    [PROTO_OP_NONE] = "NONE",     [PROTO_OP_ISSUE] = "ISSUE", [PROTO_OP_SIGN] = "SIGN",
    [PROTO_OP_REVOKE] = "REVOKE", [PROTO_OP_CRL] = "CRL",     [PROTO_OP_STATUS] = "STATUS",
    [PROTO_OP_KEYS] = "KEYS",
};

const char *proto_op_name(unsigned op)
{
    return op < PROTO_OP__MAX && op != PROTO_OP_NONE ? op_names[op] : "UNKNOWN_OP";
}

static const char *const err_names[PROTO_ERR__MAX] = {
    [PROTO_OK] = "ok",
    [PROTO_NEED_MORE] = "need-more",
    [PROTO_ERR_TOO_LARGE] = "too-large",
    [PROTO_ERR_BAD_VERSION] = "bad-version",
    [PROTO_ERR_MALFORMED] = "malformed",
    [PROTO_ERR_BAD_FLAGS] = "bad-flags",
    [PROTO_ERR_UNKNOWN_OP] = "unknown-op",
    [PROTO_ERR_RESERVED_OP] = "reserved-op",
    [PROTO_ERR_TRUNCATED] = "truncated",
    [PROTO_ERR_FIELD_OVERRUN] = "field-overrun",
    [PROTO_ERR_DUPLICATE] = "duplicate-field",
    [PROTO_ERR_TOO_MANY] = "too-many",
    [PROTO_ERR_MISSING] = "missing-field",
    [PROTO_ERR_UNKNOWN_FIELD] = "unknown-field",
    [PROTO_ERR_BAD_VALUE] = "bad-value",
};

const char *proto_err_name(proto_err e)
{
    return (unsigned)e < PROTO_ERR__MAX && err_names[e] ? err_names[e] : "unknown-error";
}

cf_status proto_err_status(proto_err e)
{
    switch (e) {
    case PROTO_OK:
        return CF_ST_OK;
    case PROTO_ERR_BAD_VERSION:
    case PROTO_ERR_UNKNOWN_OP:
    case PROTO_ERR_RESERVED_OP:
        return CF_ST_UNSUPPORTED;
    default:
        return CF_ST_BAD_FRAME;
    }
}

bool proto_err_closes(proto_err e)
{
    return e != PROTO_OK && e != PROTO_ERR_UNKNOWN_OP && e != PROTO_ERR_RESERVED_OP;
}

/* ---------------------------------------------------------- byte order */

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) << 32 | get32(p + 4);
}

/* ---------------------------------------------------------------- UTF-8 */

/* Length of the valid UTF-8 sequence (RFC 3629: no overlongs, no
 * surrogates, at most U+10FFFF) at p, or 0. NUL is not valid here. */
static size_t utf8_seq(const uint8_t *p, size_t n)
{
    uint8_t c = p[0];
    if (c == 0)
        return 0;
    if (c < 0x80)
        return 1;
    size_t len;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    if (p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (p[i] < 0x80 || p[i] > 0xBF)
            return 0;
    return len;
}

static bool utf8_ok(const void *v, size_t n)
{
    const uint8_t *p = v;
    while (n > 0) {
        size_t k = utf8_seq(p, n);
        if (k == 0)
            return false;
        p += k;
        n -= k;
    }
    return true;
}

static bool text_ok(cf_str s, bool nonempty)
{
    if (s.len > 0xFFFF || (nonempty && s.len == 0))
        return false;
    return s.len == 0 || (s.p && utf8_ok(s.p, s.len));
}

static bool blob_ok(const void *p, size_t len, bool nonempty)
{
    if (len > 0xFFFF || (nonempty && len == 0))
        return false;
    return len == 0 || p;
}

/* --------------------------------------------------------------- writer */

/* Counts every octet; stores only those that fit. */
typedef struct wr {
    uint8_t *buf;
    size_t cap;
    size_t n;
} wr;

static void w_bytes(wr *w, const void *p, size_t len)
{
    if (len && w->n <= w->cap && len <= w->cap - w->n)
        memcpy(w->buf + w->n, p, len);
    w->n += len;
}

static void w_u8(wr *w, unsigned v)
{
    uint8_t b = (uint8_t)v;
    w_bytes(w, &b, 1);
}

static void w_u16(wr *w, unsigned v)
{
    uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    w_bytes(w, b, 2);
}

static void w_u32(wr *w, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    w_bytes(w, b, 4);
}

static void w_u64(wr *w, uint64_t v)
{
    w_u32(w, (uint32_t)(v >> 32));
    w_u32(w, (uint32_t)v);
}

static void w_field(wr *w, unsigned tag, const void *p, size_t len)
{
    w_u16(w, tag);
    w_u16(w, (unsigned)len);
    w_bytes(w, p, len);
}

static void w_hdr(wr *w, uint8_t op, uint64_t id)
{
    w_u32(w, 0); /* patched by w_finish */
    w_u8(w, PROTO_VERSION);
    w_u8(w, op);
    w_u16(w, 0);
    w_u64(w, id);
}

static size_t w_finish(wr *w)
{
    if (w->n - 4 > UINT32_MAX)
        return 0;
    if (w->n <= w->cap) {
        uint32_t l = (uint32_t)(w->n - 4);
        w->buf[0] = (uint8_t)(l >> 24);
        w->buf[1] = (uint8_t)(l >> 16);
        w->buf[2] = (uint8_t)(l >> 8);
        w->buf[3] = (uint8_t)l;
    }
    return w->n;
}

/* ------------------------------------------------------------- framing */

static void read_hdr(const uint8_t *buf, size_t len, proto_hdr *h)
{
    memset(h, 0, sizeof(*h));
    if (len >= 4)
        h->len = get32(buf);
    if (len >= 5)
        h->version = buf[4];
    if (len >= PROTO_HDR_LEN) {
        h->op = buf[5];
        h->flags = get16(buf + 6);
        h->id = get64(buf + 8);
        h->complete = true;
    }
}

proto_err proto_frame_next(const uint8_t *buf, size_t len, size_t max_frame, proto_hdr *hdr,
                           size_t *frame_len)
{
    proto_hdr h;
    read_hdr(buf, len, &h);
    if (hdr)
        *hdr = h;
    if (frame_len)
        *frame_len = 0;
    if (len < 4)
        return PROTO_NEED_MORE;
    if (h.len < PROTO_HDR_LEN - 4)
        return PROTO_ERR_MALFORMED;
    if (max_frame < PROTO_MIN_FRAME_CAP)
        max_frame = PROTO_MIN_FRAME_CAP;
    if ((uint64_t)h.len + 4 > (uint64_t)max_frame)
        return PROTO_ERR_TOO_LARGE;
    if (len >= 5 && h.version != PROTO_VERSION)
        return PROTO_ERR_BAD_VERSION;
    if (len < (size_t)h.len + 4)
        return PROTO_NEED_MORE;
    if (frame_len)
        *frame_len = (size_t)h.len + 4;
    return PROTO_OK;
}

/* Common checks of a whole frame; on return hdr is filled as far as the
 * octets go. */
static proto_err frame_check(const uint8_t *frame, size_t len, proto_hdr *hdr)
{
    read_hdr(frame, len, hdr);
    if (len < PROTO_HDR_LEN || hdr->len < PROTO_HDR_LEN - 4 || (uint64_t)hdr->len + 4 != len)
        return PROTO_ERR_MALFORMED;
    if (hdr->version != PROTO_VERSION)
        return PROTO_ERR_BAD_VERSION;
    if (hdr->flags != 0)
        return PROTO_ERR_BAD_FLAGS;
    return PROTO_OK;
}

typedef struct field {
    unsigned tag;
    const uint8_t *v;
    size_t len;
} field;

/* Next field from [*p, end); *p advances past it. */
static proto_err next_field(const uint8_t **p, const uint8_t *end, field *f)
{
    size_t left = (size_t)(end - *p);
    if (left < 4)
        return PROTO_ERR_TRUNCATED;
    f->tag = get16(*p);
    f->len = get16(*p + 2);
    if (f->len > left - 4)
        return PROTO_ERR_FIELD_OVERRUN;
    f->v = *p + 4;
    *p += 4 + f->len;
    return PROTO_OK;
}

static cf_str fstr(const field *f)
{
    return (cf_str){(const char *)f->v, f->len};
}

/* ------------------------------------------------------------ requests */

static bool op_encodable_req(unsigned op)
{
    return op > PROTO_OP_NONE && op < PROTO_OP__MAX;
}

const char *proto_sign_mech_name(unsigned mech)
{
    cf_sig_alg a;
    return cf_sig_alg_from_wire(mech, &a) ? cf_sig_alg_name(a) : NULL;
}

size_t proto_sign_mech_digest_len(unsigned mech)
{
    cf_sig_alg a;
    return cf_sig_alg_from_wire(mech, &a) ? cf_sig_alg_digest_len(a) : 0;
}

/* An RFC 5280 CRLReason (0-10 except 7). */
static bool reason_ok(unsigned r)
{
    return r <= 10 && cf_reason_name((int)r) != NULL;
}

/* The fields of SIGN, REVOKE and CRL requests (ISSUE's are decoded
 * inline below). `seen` is shared: every one of these is single-valued. */
static proto_err decode_other(unsigned op, const field *f, proto_req *out)
{
    switch (op) {
    case PROTO_OP_SIGN:
        switch (f->tag) {
        case PROTO_F_KEY_NAME:
            if (!text_ok(fstr(f), true))
                return PROTO_ERR_BAD_VALUE;
            out->sign.key = fstr(f);
            return PROTO_OK;
        case PROTO_F_MECHANISM:
            if (f->len != 2 || !proto_sign_mech_name(get16(f->v)))
                return PROTO_ERR_BAD_VALUE;
            out->sign.mech = get16(f->v);
            return PROTO_OK;
        case PROTO_F_DATA:
            if (f->len == 0)
                return PROTO_ERR_BAD_VALUE;
            out->sign.data = f->v;
            out->sign.data_len = f->len;
            return PROTO_OK;
        case PROTO_F_REQUESTER:
            if (!text_ok(fstr(f), false))
                return PROTO_ERR_BAD_VALUE;
            out->sign.requester = fstr(f);
            return PROTO_OK;
        }
        break;
    case PROTO_OP_REVOKE:
        switch (f->tag) {
        case PROTO_F_REVOKE_SERIAL:
            if (f->len == 0 || f->len > 20)
                return PROTO_ERR_BAD_VALUE;
            out->revoke.serial = f->v;
            out->revoke.serial_len = f->len;
            return PROTO_OK;
        case PROTO_F_REASON:
            if (f->len != 1 || !reason_ok(f->v[0]))
                return PROTO_ERR_BAD_VALUE;
            out->revoke.reason = f->v[0];
            return PROTO_OK;
        case PROTO_F_REQUESTER:
            if (!text_ok(fstr(f), false))
                return PROTO_ERR_BAD_VALUE;
            out->revoke.requester = fstr(f);
            return PROTO_OK;
        }
        break;
    case PROTO_OP_CRL:
        if (f->tag == PROTO_F_ISSUER) {
            if (!text_ok(fstr(f), true))
                return PROTO_ERR_BAD_VALUE;
            out->crl.issuer = fstr(f);
            return PROTO_OK;
        }
        if (f->tag == PROTO_F_FRESH) {
            if (f->len != 1 || f->v[0] > 1)
                return PROTO_ERR_BAD_VALUE;
            out->crl.fresh = f->v[0] == 1;
            return PROTO_OK;
        }
        if (f->tag == PROTO_F_SHARD) {
            if (f->len != 2)
                return PROTO_ERR_BAD_VALUE;
            out->crl.shard = get16(f->v);
            return PROTO_OK;
        }
        break;
    }
    return PROTO_ERR_UNKNOWN_FIELD;
}

/* The fields of a frame whose header (out->hdr) is checked. */
static proto_err decode_fields(const uint8_t *frame, size_t len, proto_req *out)
{
    proto_err e;
    unsigned op = out->hdr.op;
    if (op == PROTO_OP_NONE || op >= PROTO_OP__MAX)
        return PROTO_ERR_UNKNOWN_OP;
    if (!op_encodable_req(op))
        return PROTO_ERR_RESERVED_OP;

    cf_issue_req *r = &out->issue;
    unsigned seen = 0; /* bit per single-valued tag */
    const uint8_t *p = frame + PROTO_HDR_LEN, *end = frame + len;
    while (p < end) {
        field f;
        if ((e = next_field(&p, end, &f)) != PROTO_OK)
            return e;
        if (f.tag >= PROTO_F_IGNORABLE_MIN)
            continue;
        if (op == PROTO_OP_SIGN || op == PROTO_OP_REVOKE || op == PROTO_OP_CRL) {
            if ((e = decode_other(op, &f, out)) != PROTO_OK)
                return e;
            if (seen & (1u << f.tag)) /* every tag of these ops is below 32 */
                return PROTO_ERR_DUPLICATE;
            seen |= 1u << f.tag;
            continue;
        }
        if (op != PROTO_OP_ISSUE)
            return PROTO_ERR_UNKNOWN_FIELD;
        switch (f.tag) {
        case PROTO_F_PROFILE:
        case PROTO_F_CSR:
        case PROTO_F_NF_INSTANCE_ID:
        case PROTO_F_VALIDITY:
        case PROTO_F_REQUESTER:
            if (seen & (1u << f.tag))
                return PROTO_ERR_DUPLICATE;
            seen |= 1u << f.tag;
            break;
        case PROTO_F_FQDN:
        case PROTO_F_NF_TYPE:
            break;
        default:
            return PROTO_ERR_UNKNOWN_FIELD;
        }
        switch (f.tag) {
        case PROTO_F_PROFILE:
            if (!text_ok(fstr(&f), true))
                return PROTO_ERR_BAD_VALUE;
            r->profile = fstr(&f);
            break;
        case PROTO_F_CSR:
            if (f.len == 0)
                return PROTO_ERR_BAD_VALUE;
            r->csr_der = f.v;
            r->csr_len = f.len;
            break;
        case PROTO_F_NF_INSTANCE_ID:
            if (!text_ok(fstr(&f), false))
                return PROTO_ERR_BAD_VALUE;
            r->nf_instance_id = fstr(&f);
            break;
        case PROTO_F_REQUESTER:
            if (!text_ok(fstr(&f), false))
                return PROTO_ERR_BAD_VALUE;
            r->requester = fstr(&f);
            break;
        case PROTO_F_VALIDITY:
            if (f.len != 4)
                return PROTO_ERR_BAD_VALUE;
            r->validity_s = get32(f.v);
            break;
        case PROTO_F_FQDN:
            if (r->n_fqdns >= CF_MAX_FQDNS)
                return PROTO_ERR_TOO_MANY;
            if (!text_ok(fstr(&f), true))
                return PROTO_ERR_BAD_VALUE;
            r->fqdns[r->n_fqdns++] = fstr(&f);
            break;
        case PROTO_F_NF_TYPE:
            if (r->n_nf_types >= CF_MAX_NF_TYPES)
                return PROTO_ERR_TOO_MANY;
            if (!text_ok(fstr(&f), true))
                return PROTO_ERR_BAD_VALUE;
            r->nf_types[r->n_nf_types++] = fstr(&f);
            break;
        }
    }
    if (op == PROTO_OP_ISSUE &&
        (!(seen & (1u << PROTO_F_PROFILE)) || !(seen & (1u << PROTO_F_CSR))))
        return PROTO_ERR_MISSING;
    if (op == PROTO_OP_SIGN) {
        if (!(seen & (1u << PROTO_F_KEY_NAME)) || !(seen & (1u << PROTO_F_MECHANISM)) ||
            !(seen & (1u << PROTO_F_DATA)))
            return PROTO_ERR_MISSING;
        size_t dl = proto_sign_mech_digest_len(out->sign.mech);
        if (dl && out->sign.data_len != dl)
            return PROTO_ERR_BAD_VALUE;
    }
    if (op == PROTO_OP_REVOKE && !(seen & (1u << PROTO_F_REVOKE_SERIAL)))
        return PROTO_ERR_MISSING;
    if (op == PROTO_OP_CRL && !(seen & (1u << PROTO_F_ISSUER)))
        return PROTO_ERR_MISSING;
    return PROTO_OK;
}

proto_err proto_req_decode(const uint8_t *frame, size_t len, proto_req *out)
{
    memset(out, 0, sizeof(*out));
    proto_err e = frame_check(frame, len, &out->hdr);
    if (e != PROTO_OK)
        return e;
    return decode_fields(frame, len, out);
}

proto_err proto_req_decode_framed(const proto_hdr *hdr, const uint8_t *frame, size_t len,
                                  proto_req *out)
{
    memset(out, 0, sizeof(*out));
    out->hdr = *hdr;
    /* frame_check's checks on the header proto_frame_next read */
    if (!hdr->complete || len < PROTO_HDR_LEN || (uint64_t)hdr->len + 4 != len)
        return PROTO_ERR_MALFORMED;
    if (hdr->version != PROTO_VERSION)
        return PROTO_ERR_BAD_VERSION;
    if (hdr->flags != 0)
        return PROTO_ERR_BAD_FLAGS;
    return decode_fields(frame, len, out);
}

/* p, if it points into [from, from + len], to the same offset from `to`. */
static const uint8_t *moved(const uint8_t *p, const uint8_t *from, const uint8_t *to, size_t len)
{
    uintptr_t a = (uintptr_t)p, f = (uintptr_t)from;
    if (!p || a < f || a - f > len)
        return p;
    return to + (a - f);
}

static void move_str(cf_str *s, const uint8_t *from, const uint8_t *to, size_t len)
{
    s->p = (const char *)moved((const uint8_t *)s->p, from, to, len);
}

void proto_req_rebase(proto_req *r, const uint8_t *from, const uint8_t *to, size_t len)
{
    cf_issue_req *q = &r->issue;
    move_str(&q->profile, from, to, len);
    q->csr_der = moved(q->csr_der, from, to, len);
    move_str(&q->nf_instance_id, from, to, len);
    for (unsigned i = 0; i < q->n_fqdns && i < CF_MAX_FQDNS; i++)
        move_str(&q->fqdns[i], from, to, len);
    for (unsigned i = 0; i < q->n_nf_types && i < CF_MAX_NF_TYPES; i++)
        move_str(&q->nf_types[i], from, to, len);
    move_str(&q->requester, from, to, len);
    move_str(&r->sign.key, from, to, len);
    r->sign.data = moved(r->sign.data, from, to, len);
    move_str(&r->sign.requester, from, to, len);
    r->revoke.serial = moved(r->revoke.serial, from, to, len);
    move_str(&r->revoke.requester, from, to, len);
    move_str(&r->crl.issuer, from, to, len);
}

static bool issue_ok(const cf_issue_req *r)
{
    if (!text_ok(r->profile, true) || !blob_ok(r->csr_der, r->csr_len, true) ||
        !text_ok(r->nf_instance_id, false) || !text_ok(r->requester, false) ||
        r->n_fqdns > CF_MAX_FQDNS || r->n_nf_types > CF_MAX_NF_TYPES)
        return false;
    for (unsigned i = 0; i < r->n_fqdns; i++)
        if (!text_ok(r->fqdns[i], true))
            return false;
    for (unsigned i = 0; i < r->n_nf_types; i++)
        if (!text_ok(r->nf_types[i], true))
            return false;
    return true;
}

size_t proto_req_encode(uint8_t *buf, size_t cap, const proto_req *r)
{
    unsigned op = r->hdr.op;
    if (!op_encodable_req(op))
        return 0;
    wr w = {buf, cap, 0};
    w_hdr(&w, (uint8_t)op, r->hdr.id);
    if (op == PROTO_OP_SIGN) {
        const proto_sign_req *q = &r->sign;
        size_t dl = proto_sign_mech_digest_len(q->mech);
        if (!text_ok(q->key, true) || !proto_sign_mech_name(q->mech) ||
            !blob_ok(q->data, q->data_len, true) || (dl && q->data_len != dl) ||
            !text_ok(q->requester, false))
            return 0;
        w_field(&w, PROTO_F_KEY_NAME, q->key.p, q->key.len);
        w_u16(&w, PROTO_F_MECHANISM);
        w_u16(&w, 2);
        w_u16(&w, q->mech);
        w_field(&w, PROTO_F_DATA, q->data, q->data_len);
        if (q->requester.len)
            w_field(&w, PROTO_F_REQUESTER, q->requester.p, q->requester.len);
    } else if (op == PROTO_OP_REVOKE) {
        const proto_revoke_req *q = &r->revoke;
        if (q->serial_len == 0 || q->serial_len > 20 || !q->serial || !reason_ok(q->reason) ||
            !text_ok(q->requester, false))
            return 0;
        w_field(&w, PROTO_F_REVOKE_SERIAL, q->serial, q->serial_len);
        uint8_t reason = (uint8_t)q->reason;
        w_field(&w, PROTO_F_REASON, &reason, 1);
        if (q->requester.len)
            w_field(&w, PROTO_F_REQUESTER, q->requester.p, q->requester.len);
    } else if (op == PROTO_OP_CRL) {
        if (!text_ok(r->crl.issuer, true))
            return 0;
        w_field(&w, PROTO_F_ISSUER, r->crl.issuer.p, r->crl.issuer.len);
        if (r->crl.fresh) {
            uint8_t one = 1;
            w_field(&w, PROTO_F_FRESH, &one, 1);
        }
        if (r->crl.shard > 0xFFFF)
            return 0;
        if (r->crl.shard) {
            uint8_t sh[2] = {(uint8_t)(r->crl.shard >> 8), (uint8_t)r->crl.shard};
            w_field(&w, PROTO_F_SHARD, sh, 2);
        }
    } else if (op == PROTO_OP_ISSUE) {
        const cf_issue_req *q = &r->issue;
        if (!issue_ok(q))
            return 0;
        w_field(&w, PROTO_F_PROFILE, q->profile.p, q->profile.len);
        w_field(&w, PROTO_F_CSR, q->csr_der, q->csr_len);
        if (q->nf_instance_id.len)
            w_field(&w, PROTO_F_NF_INSTANCE_ID, q->nf_instance_id.p, q->nf_instance_id.len);
        for (unsigned i = 0; i < q->n_fqdns; i++)
            w_field(&w, PROTO_F_FQDN, q->fqdns[i].p, q->fqdns[i].len);
        for (unsigned i = 0; i < q->n_nf_types; i++)
            w_field(&w, PROTO_F_NF_TYPE, q->nf_types[i].p, q->nf_types[i].len);
        if (q->validity_s) {
            w_u16(&w, PROTO_F_VALIDITY);
            w_u16(&w, 4);
            w_u32(&w, q->validity_s);
        }
        if (q->requester.len)
            w_field(&w, PROTO_F_REQUESTER, q->requester.p, q->requester.len);
    }
    return w_finish(&w);
}

size_t proto_enc_issue_req(uint8_t *buf, size_t cap, uint64_t id, const cf_issue_req *r)
{
    proto_req q;
    memset(&q.hdr, 0, sizeof(q.hdr));
    q.hdr.op = PROTO_OP_ISSUE;
    q.hdr.id = id;
    q.issue = *r;
    return proto_req_encode(buf, cap, &q);
}

static size_t enc_empty_req(uint8_t *buf, size_t cap, uint8_t op, uint64_t id)
{
    wr w = {buf, cap, 0};
    w_hdr(&w, op, id);
    return w_finish(&w);
}

size_t proto_enc_status_req(uint8_t *buf, size_t cap, uint64_t id)
{
    return enc_empty_req(buf, cap, PROTO_OP_STATUS, id);
}

size_t proto_enc_keys_req(uint8_t *buf, size_t cap, uint64_t id)
{
    return enc_empty_req(buf, cap, PROTO_OP_KEYS, id);
}

size_t proto_enc_sign_req(uint8_t *buf, size_t cap, uint64_t id, const proto_sign_req *r)
{
    proto_req q;
    memset(&q, 0, sizeof(q));
    q.hdr.op = PROTO_OP_SIGN;
    q.hdr.id = id;
    q.sign = *r;
    return proto_req_encode(buf, cap, &q);
}

size_t proto_enc_revoke_req(uint8_t *buf, size_t cap, uint64_t id, const proto_revoke_req *r)
{
    proto_req q;
    memset(&q, 0, sizeof(q));
    q.hdr.op = PROTO_OP_REVOKE;
    q.hdr.id = id;
    q.revoke = *r;
    return proto_req_encode(buf, cap, &q);
}

size_t proto_enc_crl_req(uint8_t *buf, size_t cap, uint64_t id, cf_str issuer, bool fresh)
{
    return proto_enc_crl_shard_req(buf, cap, id, issuer, 0, fresh);
}

size_t proto_enc_crl_shard_req(uint8_t *buf, size_t cap, uint64_t id, cf_str issuer, unsigned shard,
                               bool fresh)
{
    proto_req q;
    memset(&q, 0, sizeof(q));
    q.hdr.op = PROTO_OP_CRL;
    q.hdr.id = id;
    q.crl.issuer = issuer;
    q.crl.fresh = fresh;
    q.crl.shard = shard;
    return proto_req_encode(buf, cap, &q);
}

/* ----------------------------------------------------------- responses */

proto_err proto_resp_decode(const uint8_t *frame, size_t len, proto_resp *out)
{
    memset(out, 0, sizeof(*out));
    proto_hdr h;
    proto_err e = frame_check(frame, len, &h);
    out->op = h.op;
    out->id = h.id;
    if (e != PROTO_OK)
        return e;
    const uint8_t *p = frame + PROTO_HDR_LEN, *end = frame + len;
    if (end - p < 6)
        return PROTO_ERR_TRUNCATED;
    out->status = (cf_status)get16(p);
    out->detail = get32(p + 2);
    p += 6;

    bool have_msg = false, have_cert = false, have_serial = false, have_sig = false,
         have_at = false, have_reason = false, have_crl = false;
    while (p < end) {
        field f;
        if ((e = next_field(&p, end, &f)) != PROTO_OK)
            return e;
        if (f.tag >= PROTO_F_IGNORABLE_MIN)
            continue;
        switch (f.tag) {
        case PROTO_F_MESSAGE:
            if (have_msg)
                return PROTO_ERR_DUPLICATE;
            have_msg = true;
            out->message = fstr(&f);
            break;
        case PROTO_F_CERT:
            if (out->op != PROTO_OP_ISSUE)
                return PROTO_ERR_UNKNOWN_FIELD;
            if (have_cert)
                return PROTO_ERR_DUPLICATE;
            have_cert = true;
            if (f.len == 0)
                return PROTO_ERR_BAD_VALUE;
            out->cert = (proto_blob){f.v, f.len};
            break;
        case PROTO_F_CHAIN:
            if (out->op != PROTO_OP_ISSUE)
                return PROTO_ERR_UNKNOWN_FIELD;
            if (out->n_chain >= PROTO_MAX_CHAIN)
                return PROTO_ERR_TOO_MANY;
            if (f.len == 0)
                return PROTO_ERR_BAD_VALUE;
            out->chain[out->n_chain++] = (proto_blob){f.v, f.len};
            break;
        case PROTO_F_SERIAL:
            if (out->op != PROTO_OP_ISSUE)
                return PROTO_ERR_UNKNOWN_FIELD;
            if (have_serial)
                return PROTO_ERR_DUPLICATE;
            have_serial = true;
            if (f.len == 0 || f.len > 20)
                return PROTO_ERR_BAD_VALUE;
            out->serial = (proto_blob){f.v, f.len};
            break;
        case PROTO_F_KV: {
            if (out->op != PROTO_OP_STATUS)
                return PROTO_ERR_UNKNOWN_FIELD;
            if (out->n_kv >= PROTO_MAX_KV)
                return PROTO_ERR_TOO_MANY;
            if (f.len < 1 || f.v[0] == 0 || (size_t)f.v[0] + 1 > f.len)
                return PROTO_ERR_BAD_VALUE;
            size_t kl = f.v[0];
            proto_kv *kv = &out->kv[out->n_kv];
            kv->key = (cf_str){(const char *)f.v + 1, kl};
            kv->value = (cf_str){(const char *)f.v + 1 + kl, f.len - 1 - kl};
            if (!utf8_ok(kv->key.p, kv->key.len) || !utf8_ok(kv->value.p, kv->value.len))
                return PROTO_ERR_BAD_VALUE;
            out->n_kv++;
            break;
        }
        case PROTO_F_KEY: {
            if (out->op != PROTO_OP_KEYS)
                return PROTO_ERR_UNKNOWN_FIELD;
            if (out->n_keys >= PROTO_MAX_KEYS)
                return PROTO_ERR_TOO_MANY;
            const uint8_t *q = f.v, *qe = f.v + f.len;
            if (qe - q < 1 || q[0] == 0 || (size_t)(qe - q) < 1 + (size_t)q[0])
                return PROTO_ERR_BAD_VALUE;
            proto_key *k = &out->keys[out->n_keys];
            k->name = (cf_str){(const char *)q + 1, q[0]};
            q += 1 + q[0];
            if (qe - q < 1 || q[0] == 0 || (size_t)(qe - q) < 1 + (size_t)q[0])
                return PROTO_ERR_BAD_VALUE;
            k->type = (cf_str){(const char *)q + 1, q[0]};
            q += 1 + q[0];
            if (q == qe)
                return PROTO_ERR_BAD_VALUE;
            k->spki = (proto_blob){q, (size_t)(qe - q)};
            if (!utf8_ok(k->name.p, k->name.len) || !utf8_ok(k->type.p, k->type.len))
                return PROTO_ERR_BAD_VALUE;
            out->n_keys++;
            break;
        }
        case PROTO_F_SIGNATURE:
            if (out->op != PROTO_OP_SIGN)
                return PROTO_ERR_UNKNOWN_FIELD;
            if (have_sig)
                return PROTO_ERR_DUPLICATE;
            have_sig = true;
            if (f.len == 0)
                return PROTO_ERR_BAD_VALUE;
            out->sig = (proto_blob){f.v, f.len};
            break;
        case PROTO_F_REVOKED_AT:
            if (out->op != PROTO_OP_REVOKE)
                return PROTO_ERR_UNKNOWN_FIELD;
            if (have_at)
                return PROTO_ERR_DUPLICATE;
            have_at = true;
            if (f.len != 8 || get64(f.v) > (uint64_t)INT64_MAX)
                return PROTO_ERR_BAD_VALUE;
            out->revoked_at = (int64_t)get64(f.v);
            break;
        case PROTO_F_REVOKED_REASON:
            if (out->op != PROTO_OP_REVOKE)
                return PROTO_ERR_UNKNOWN_FIELD;
            if (have_reason)
                return PROTO_ERR_DUPLICATE;
            have_reason = true;
            if (f.len != 1 || !reason_ok(f.v[0]))
                return PROTO_ERR_BAD_VALUE;
            out->reason = f.v[0];
            break;
        case PROTO_F_CRL:
            if (out->op != PROTO_OP_CRL)
                return PROTO_ERR_UNKNOWN_FIELD;
            if (have_crl)
                return PROTO_ERR_DUPLICATE;
            have_crl = true;
            if (f.len == 0)
                return PROTO_ERR_BAD_VALUE;
            out->crl = (proto_blob){f.v, f.len};
            break;
        default:
            return PROTO_ERR_UNKNOWN_FIELD;
        }
    }
    if (have_at != have_reason)
        return PROTO_ERR_MISSING;
    out->has_revoked = have_at;
    if (out->status == CF_ST_OK &&
        ((out->op == PROTO_OP_ISSUE && !have_cert) || (out->op == PROTO_OP_SIGN && !have_sig) ||
         (out->op == PROTO_OP_REVOKE && !have_at) || (out->op == PROTO_OP_CRL && !have_crl)))
        return PROTO_ERR_MISSING;
    return PROTO_OK;
}

/* The message, with every octet outside valid UTF-8 (and NUL) as '?'. */
static void w_message(wr *w, cf_str m)
{
    const uint8_t *p = (const uint8_t *)m.p;
    size_t n = m.len;
    w_u16(w, PROTO_F_MESSAGE);
    w_u16(w, (unsigned)n);
    while (n > 0) {
        size_t k = utf8_seq(p, n);
        if (k == 0) {
            w_u8(w, '?');
            k = 1;
        } else {
            w_bytes(w, p, k);
        }
        p += k;
        n -= k;
    }
}

static bool resp_ok(const proto_resp *r)
{
    if ((unsigned)r->status > 0xFFFF || !blob_ok(r->message.p, r->message.len, false))
        return false;
    bool issue = r->op == PROTO_OP_ISSUE;
    if (!issue && (r->cert.len || r->n_chain || r->serial.len))
        return false;
    if (r->op != PROTO_OP_STATUS && r->n_kv)
        return false;
    if (r->op != PROTO_OP_KEYS && r->n_keys)
        return false;
    if ((r->op != PROTO_OP_SIGN && r->sig.len) || (r->op != PROTO_OP_REVOKE && r->has_revoked) ||
        (r->op != PROTO_OP_CRL && r->crl.len))
        return false;
    if (issue && r->status == CF_ST_OK && r->cert.len == 0)
        return false;
    if (r->status == CF_ST_OK &&
        ((r->op == PROTO_OP_SIGN && r->sig.len == 0) ||
         (r->op == PROTO_OP_REVOKE && !r->has_revoked) ||
         (r->op == PROTO_OP_CRL && r->crl.len == 0)))
        return false;
    if (!blob_ok(r->sig.p, r->sig.len, false) || !blob_ok(r->crl.p, r->crl.len, false) ||
        (r->has_revoked && (r->revoked_at < 0 || !reason_ok(r->reason))))
        return false;
    if (!blob_ok(r->cert.p, r->cert.len, false) || r->serial.len > 20 ||
        !blob_ok(r->serial.p, r->serial.len, false))
        return false;
    if (r->n_chain > PROTO_MAX_CHAIN || r->n_kv > PROTO_MAX_KV || r->n_keys > PROTO_MAX_KEYS)
        return false;
    for (unsigned i = 0; i < r->n_chain; i++)
        if (!blob_ok(r->chain[i].p, r->chain[i].len, true))
            return false;
    for (unsigned i = 0; i < r->n_kv; i++) {
        const proto_kv *kv = &r->kv[i];
        if (kv->key.len == 0 || kv->key.len > 255 || !text_ok(kv->key, true) ||
            !text_ok(kv->value, false) || 1 + kv->key.len + kv->value.len > 0xFFFF)
            return false;
    }
    for (unsigned i = 0; i < r->n_keys; i++) {
        const proto_key *k = &r->keys[i];
        if (k->name.len > 255 || k->type.len > 255 || !text_ok(k->name, true) ||
            !text_ok(k->type, true) || !blob_ok(k->spki.p, k->spki.len, true) ||
            2 + k->name.len + k->type.len + k->spki.len > 0xFFFF)
            return false;
    }
    return true;
}

size_t proto_resp_encode(uint8_t *buf, size_t cap, const proto_resp *r)
{
    if (!resp_ok(r))
        return 0;
    wr w = {buf, cap, 0};
    w_hdr(&w, r->op, r->id);
    w_u16(&w, (unsigned)r->status);
    w_u32(&w, r->detail);
    if (r->message.len)
        w_message(&w, r->message);
    if (r->cert.len)
        w_field(&w, PROTO_F_CERT, r->cert.p, r->cert.len);
    for (unsigned i = 0; i < r->n_chain; i++)
        w_field(&w, PROTO_F_CHAIN, r->chain[i].p, r->chain[i].len);
    if (r->serial.len)
        w_field(&w, PROTO_F_SERIAL, r->serial.p, r->serial.len);
    for (unsigned i = 0; i < r->n_kv; i++) {
        const proto_kv *kv = &r->kv[i];
        w_u16(&w, PROTO_F_KV);
        w_u16(&w, (unsigned)(1 + kv->key.len + kv->value.len));
        w_u8(&w, (unsigned)kv->key.len);
        w_bytes(&w, kv->key.p, kv->key.len);
        w_bytes(&w, kv->value.p, kv->value.len);
    }
    for (unsigned i = 0; i < r->n_keys; i++) {
        const proto_key *k = &r->keys[i];
        w_u16(&w, PROTO_F_KEY);
        w_u16(&w, (unsigned)(2 + k->name.len + k->type.len + k->spki.len));
        w_u8(&w, (unsigned)k->name.len);
        w_bytes(&w, k->name.p, k->name.len);
        w_u8(&w, (unsigned)k->type.len);
        w_bytes(&w, k->type.p, k->type.len);
        w_bytes(&w, k->spki.p, k->spki.len);
    }
    if (r->sig.len)
        w_field(&w, PROTO_F_SIGNATURE, r->sig.p, r->sig.len);
    if (r->has_revoked) {
        w_u16(&w, PROTO_F_REVOKED_AT);
        w_u16(&w, 8);
        w_u64(&w, (uint64_t)r->revoked_at);
        uint8_t reason = (uint8_t)r->reason;
        w_field(&w, PROTO_F_REVOKED_REASON, &reason, 1);
    }
    if (r->crl.len)
        w_field(&w, PROTO_F_CRL, r->crl.p, r->crl.len);
    return w_finish(&w);
}

/* The shorthands build a proto_resp on the stack: only the fixed part is
 * initialised, the arrays past their counts are never read. */
static void resp_init(proto_resp *r, uint8_t op, uint64_t id, cf_status st)
{
    r->op = op;
    r->id = id;
    r->status = st;
    r->detail = 0;
    r->message = (cf_str){NULL, 0};
    r->cert = (proto_blob){NULL, 0};
    r->serial = (proto_blob){NULL, 0};
    r->n_chain = r->n_kv = r->n_keys = 0;
    r->sig = r->crl = (proto_blob){NULL, 0};
    r->has_revoked = false;
    r->revoked_at = 0;
    r->reason = 0;
}

size_t proto_enc_error(uint8_t *buf, size_t cap, uint8_t op, uint64_t id, cf_status st,
                       uint32_t detail, const char *msg)
{
    proto_resp r;
    resp_init(&r, op, id, st);
    r.detail = detail;
    if (msg)
        r.message = (cf_str){msg, strlen(msg)};
    return proto_resp_encode(buf, cap, &r);
}

size_t proto_enc_issue_ok(uint8_t *buf, size_t cap, uint64_t id, const uint8_t *cert,
                          size_t cert_len, const proto_blob *chain, size_t n_chain,
                          const uint8_t *serial, size_t serial_len)
{
    if (n_chain > PROTO_MAX_CHAIN)
        return 0;
    proto_resp r;
    resp_init(&r, PROTO_OP_ISSUE, id, CF_ST_OK);
    r.cert = (proto_blob){cert, cert_len};
    for (size_t i = 0; i < n_chain; i++)
        r.chain[i] = chain[i];
    r.n_chain = (unsigned)n_chain;
    r.serial = (proto_blob){serial, serial_len};
    return proto_resp_encode(buf, cap, &r);
}

size_t proto_enc_status_ok(uint8_t *buf, size_t cap, uint64_t id, const proto_kv *kv, size_t n)
{
    if (n > PROTO_MAX_KV)
        return 0;
    proto_resp r;
    resp_init(&r, PROTO_OP_STATUS, id, CF_ST_OK);
    for (size_t i = 0; i < n; i++)
        r.kv[i] = kv[i];
    r.n_kv = (unsigned)n;
    return proto_resp_encode(buf, cap, &r);
}

size_t proto_enc_keys_ok(uint8_t *buf, size_t cap, uint64_t id, const proto_key *keys, size_t n)
{
    if (n > PROTO_MAX_KEYS)
        return 0;
    proto_resp r;
    resp_init(&r, PROTO_OP_KEYS, id, CF_ST_OK);
    for (size_t i = 0; i < n; i++)
        r.keys[i] = keys[i];
    r.n_keys = (unsigned)n;
    return proto_resp_encode(buf, cap, &r);
}

size_t proto_enc_sign_ok(uint8_t *buf, size_t cap, uint64_t id, const uint8_t *sig, size_t sig_len)
{
    proto_resp r;
    resp_init(&r, PROTO_OP_SIGN, id, CF_ST_OK);
    r.sig = (proto_blob){sig, sig_len};
    return proto_resp_encode(buf, cap, &r);
}

size_t proto_enc_revoke_ok(uint8_t *buf, size_t cap, uint64_t id, int64_t revoked_at,
                           unsigned reason)
{
    proto_resp r;
    resp_init(&r, PROTO_OP_REVOKE, id, CF_ST_OK);
    r.has_revoked = true;
    r.revoked_at = revoked_at;
    r.reason = reason;
    return proto_resp_encode(buf, cap, &r);
}

size_t proto_enc_crl_ok(uint8_t *buf, size_t cap, uint64_t id, const uint8_t *crl, size_t crl_len)
{
    proto_resp r;
    resp_init(&r, PROTO_OP_CRL, id, CF_ST_OK);
    r.crl = (proto_blob){crl, crl_len};
    return proto_resp_encode(buf, cap, &r);
}
