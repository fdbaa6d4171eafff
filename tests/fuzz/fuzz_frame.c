/* libFuzzer target for proto/: extract frames from the input as a stream
 * (with a small cap so TOO_LARGE is reachable), decode each as a request and
 * as a response, re-encode what decoded, decode that again and check that
 * the second encoding is byte-identical to the first (encoders emit a
 * canonical form: tag order, ignorable fields dropped) and that the
 * decoded values survived. The first input octet picks the frame cap. */
#include "proto/proto.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint8_t e1[1 << 17], e2[1 << 17];
static proto_req q1, q2;
static proto_resp r1, r2;

static int str_eq(cf_str a, cf_str b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

static void check_req(const uint8_t *f, size_t n)
{
    proto_err e = proto_req_decode(f, n, &q1);
    if (e != PROTO_OK)
        return;
    size_t m = proto_req_encode(e1, sizeof(e1), &q1);
    if (m == 0 || m > sizeof(e1))
        abort(); /* whatever decodes must encode */
    if (proto_req_decode(e1, m, &q2) != PROTO_OK)
        abort();
    if (q2.hdr.id != q1.hdr.id || q2.hdr.op != q1.hdr.op)
        abort();
    const cf_issue_req *a = &q1.issue, *b = &q2.issue;
    if (!str_eq(a->profile, b->profile) || a->csr_len != b->csr_len ||
        (a->csr_len && memcmp(a->csr_der, b->csr_der, a->csr_len)) ||
        !str_eq(a->nf_instance_id, b->nf_instance_id) || a->n_fqdns != b->n_fqdns ||
        a->n_nf_types != b->n_nf_types || a->validity_s != b->validity_s ||
        !str_eq(a->requester, b->requester))
        abort();
    for (unsigned i = 0; i < a->n_fqdns; i++)
        if (!str_eq(a->fqdns[i], b->fqdns[i]))
            abort();
    for (unsigned i = 0; i < a->n_nf_types; i++)
        if (!str_eq(a->nf_types[i], b->nf_types[i]))
            abort();
    const proto_sign_req *sa = &q1.sign, *sb = &q2.sign;
    if (!str_eq(sa->key, sb->key) || sa->mech != sb->mech || sa->data_len != sb->data_len ||
        (sa->data_len && memcmp(sa->data, sb->data, sa->data_len)) ||
        !str_eq(sa->requester, sb->requester))
        abort();
    const proto_revoke_req *va = &q1.revoke, *vb = &q2.revoke;
    if (va->serial_len != vb->serial_len ||
        (va->serial_len && memcmp(va->serial, vb->serial, va->serial_len)) ||
        va->reason != vb->reason || !str_eq(va->requester, vb->requester))
        abort();
    if (!str_eq(q1.crl.issuer, q2.crl.issuer) || q1.crl.fresh != q2.crl.fresh ||
        q1.crl.shard != q2.crl.shard)
        abort();
    size_t m2 = proto_req_encode(e2, sizeof(e2), &q2);
    if (m2 != m || memcmp(e1, e2, m))
        abort();
    /* a smaller capacity reports the same size */
    if (m > 1 && proto_req_encode(e2, m - 1, &q1) != m)
        abort();
}

/* The daemon's way (decoded once with the header frame_next read, then
 * moved into a copy of the frame) must agree with proto_req_decode, and
 * the moved fields must read the same octets from the copy. */
static proto_req q3;
static void check_framed(const proto_hdr *h, const uint8_t *f, size_t n)
{
    proto_err e = proto_req_decode(f, n, &q1);
    if (proto_req_decode_framed(h, f, n, &q3) != e)
        abort();
    if (e != PROTO_OK)
        return;
    uint8_t *copy = malloc(n);
    if (!copy)
        return;
    memcpy(copy, f, n);
    proto_req_rebase(&q3, f, copy, n);
    size_t m1 = proto_req_encode(e1, sizeof(e1), &q1), m3 = proto_req_encode(e2, sizeof(e2), &q3);
    if (m1 != m3 || m1 > sizeof(e1) || memcmp(e1, e2, m1) != 0)
        abort();
    free(copy);
}

static void check_resp(const uint8_t *f, size_t n)
{
    proto_err e = proto_resp_decode(f, n, &r1);
    if (e != PROTO_OK)
        return;
    size_t m = proto_resp_encode(e1, sizeof(e1), &r1);
    if (m == 0 || m > sizeof(e1))
        abort();
    if (proto_resp_decode(e1, m, &r2) != PROTO_OK)
        abort();
    if (r2.id != r1.id || r2.op != r1.op || r2.status != r1.status || r2.detail != r1.detail ||
        r2.message.len != r1.message.len || r2.cert.len != r1.cert.len ||
        r2.n_chain != r1.n_chain || r2.serial.len != r1.serial.len || r2.n_kv != r1.n_kv ||
        r2.n_keys != r1.n_keys || r2.sig.len != r1.sig.len || r2.crl.len != r1.crl.len ||
        r2.has_revoked != r1.has_revoked || r2.revoked_at != r1.revoked_at ||
        r2.reason != r1.reason)
        abort();
    for (unsigned i = 0; i < r1.n_kv; i++)
        if (!str_eq(r1.kv[i].key, r2.kv[i].key) || !str_eq(r1.kv[i].value, r2.kv[i].value))
            abort();
    for (unsigned i = 0; i < r1.n_keys; i++)
        if (!str_eq(r1.keys[i].name, r2.keys[i].name) ||
            !str_eq(r1.keys[i].type, r2.keys[i].type) || r1.keys[i].spki.len != r2.keys[i].spki.len)
            abort();
    size_t m2 = proto_resp_encode(e2, sizeof(e2), &r2);
    if (m2 != m || memcmp(e1, e2, m))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The first octet picks the cap: small caps reach TOO_LARGE. */
    size_t cap = size ? (size_t)data[0] * 64 : 0;
    const uint8_t *p = size ? data + 1 : data;
    size_t left = size ? size - 1 : 0;
    while (left > 0) {
        proto_hdr h;
        size_t fl;
        proto_err e = proto_frame_next(p, left, cap, &h, &fl);
        if (e != PROTO_OK)
            break;
        if (fl < PROTO_HDR_LEN || fl > left)
            abort();
        /* decode from a copy of exactly the frame, so ASan sees overreads */
        uint8_t *f = malloc(fl);
        memcpy(f, p, fl);
        check_req(f, fl);
        check_framed(&h, f, fl);
        check_resp(f, fl);
        free(f);
        p += fl;
        left -= fl;
    }
    return 0;
}
