/* libFuzzer target for engine/der (docs/der.md).
 *
 * Properties checked on every input:
 *  - der_validate() never reads outside the input (ASan) at any depth limit;
 *  - walking the input with der_next()/der_enter() never does either, and
 *    every typed reader is tried on every primitive met;
 *  - a primitive a typed reader accepts re-encodes through the matching
 *    writer call to exactly its original bytes;
 *  - an input der_validate() accepts (depth <= DER_W_MAX_DEPTH) re-encodes
 *    through der_w_begin/der_w_end to exactly the input, and into any
 *    smaller buffer reports DER_ERR_OVERFLOW with the full size and writes
 *    nothing past the capacity;
 *  - the reader agrees with der_validate(): a validated input walks with no
 *    error from a typed reader on a universal type.
 */
#include "engine/der/der.h"

#include <stdlib.h>
#include <string.h>

#define FUZZ_DEPTH 32

static uint8_t out[1 << 16];

static void same(const der_w *w, const der_tlv *t)
{
    size_t n = 0;
    if (der_w_finish(w, &n) != DER_OK || n != t->rawlen || memcmp(out, t->raw, n) != 0)
        abort();
}

/* Typed readers on one primitive; returns false when one that applies to a
 * universal tag rejected it. */
static bool typed(const der_tlv *t)
{
    der_w w;
    bool neg, b;
    uint64_t u;
    int64_t s;
    const uint8_t *p;
    size_t n;
    unsigned unused;
    bool univ = der_tag_class(t->tag) == DER_CLASS_UNIVERSAL;
    bool ok = true;
    der_w_init(&w, out, sizeof(out));

    /* Contents checks are tag-independent: run all of them on everything. */
    if (der_get_int(t, &neg) == DER_OK) {
        if (!neg) {
            if (der_get_uint_mag(t, &p, &n) != DER_OK)
                abort();
            if (t->tag == DER_INTEGER && t->rawlen < sizeof(out)) {
                der_w_int_mag(&w, p, n);
                same(&w, t);
            }
        }
        if (der_get_uint64(t, &u) == DER_OK && t->tag == DER_INTEGER) {
            der_w_init(&w, out, sizeof(out));
            der_w_uint64(&w, u);
            same(&w, t);
        }
        if (der_get_int64(t, &s) == DER_OK && t->tag == DER_INTEGER) {
            der_w_init(&w, out, sizeof(out));
            der_w_int64(&w, s);
            same(&w, t);
        }
    } else if (univ && (t->tag == DER_INTEGER || t->tag == DER_ENUMERATED)) {
        ok = false;
    }
    if (der_get_bool(t, &b) == DER_OK) {
        if (t->tag == DER_BOOLEAN) {
            der_w_init(&w, out, sizeof(out));
            der_w_bool(&w, b);
            same(&w, t);
        }
    } else if (t->tag == DER_BOOLEAN) {
        ok = false;
    }
    if (der_get_null(t) == DER_OK) {
        if (t->tag == DER_NULL) {
            der_w_init(&w, out, sizeof(out));
            der_w_null(&w);
            same(&w, t);
        }
    } else if (t->tag == DER_NULL) {
        ok = false;
    }
    if (der_get_oid(t) == DER_OK) {
        if (t->tag == DER_OID && t->rawlen < sizeof(out)) {
            der_w_init(&w, out, sizeof(out));
            der_w_oid(&w, t->val, t->len);
            same(&w, t);
            if (!der_oid_eq(t, t->val, t->len))
                abort();
        }
    } else if (t->tag == DER_OID) {
        ok = false;
    }
    if (der_get_bits(t, &p, &n, &unused) == DER_OK) {
        if (t->tag == DER_BIT_STRING && t->rawlen < sizeof(out)) {
            der_w_init(&w, out, sizeof(out));
            der_w_bits_unused(&w, p, n, unused);
            same(&w, t);
        }
    } else if (t->tag == DER_BIT_STRING) {
        ok = false;
    }
    if (t->tag == DER_OCTET_STRING && t->rawlen < sizeof(out)) {
        der_w_init(&w, out, sizeof(out));
        der_w_octets(&w, t->val, t->len);
        same(&w, t);
    }
    static const unsigned strs[] = {DER_UTF8_STRING, DER_NUMERIC_STRING,  DER_PRINTABLE_STRING,
                                    DER_T61_STRING,  DER_IA5_STRING,      DER_VISIBLE_STRING,
                                    DER_BMP_STRING,  DER_UNIVERSAL_STRING};
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
        der_err e = der_get_string_as(t, strs[i], &p, &n);
        if (e == DER_OK && t->tag == strs[i] && t->rawlen < sizeof(out)) {
            der_w_init(&w, out, sizeof(out));
            der_w_string(&w, t->tag, p, n);
            same(&w, t);
        } else if (e != DER_OK && t->tag == strs[i]) {
            ok = false;
        }
    }
    if (t->tag == DER_UTC_TIME || t->tag == DER_GENERALIZED_TIME) {
        if (der_get_time(t, &s) == DER_OK) {
            der_w_init(&w, out, sizeof(out));
            if (t->tag == DER_UTC_TIME)
                der_w_utctime(&w, s);
            else
                der_w_gentime(&w, s);
            same(&w, t);
        } else {
            ok = false;
        }
    }
    return ok;
}

/* Walk everything reachable with the cursor API. Returns false if a typed
 * reader rejected a universal primitive. Depth-bounded by the caller. */
static bool walk(der_cur *c, unsigned depth)
{
    bool ok = true;
    while (c->p < c->end) {
        der_tlv t;
        unsigned tag;
        if (der_peek_tag(c, &tag) != DER_OK)
            return ok;
        if (der_next(c, &t) != DER_OK || t.tag != tag)
            abort(); /* peek and next must agree */
        if (t.raw + t.rawlen > c->end || t.val + t.len != t.raw + t.rawlen)
            abort();
        if (der_tag_constructed(t.tag)) {
            der_cur sub;
            if (der_enter(&t, &sub) != DER_OK)
                abort();
            if (depth < FUZZ_DEPTH && !walk(&sub, depth + 1))
                ok = false;
        } else {
            if (!typed(&t))
                ok = false;
            /* Many fields carry DER inside an OCTET STRING or BIT STRING. */
            if (depth < FUZZ_DEPTH && t.len > 0) {
                der_cur sub;
                der_cur_init(&sub, t.val, t.len);
                (void)walk(&sub, depth + 1);
            }
        }
    }
    return ok;
}

/* Whole-tree rewrite through begin/end. */
static void rewrite(der_w *w, der_cur *c)
{
    while (c->p < c->end) {
        der_tlv t;
        if (der_next(c, &t) != DER_OK)
            abort();
        if (der_tag_constructed(t.tag)) {
            der_cur sub;
            if (der_enter(&t, &sub) != DER_OK)
                abort();
            der_w_begin(w, t.tag);
            rewrite(w, &sub);
            der_w_end(w);
        } else {
            der_w_tlv(w, t.tag, t.val, t.len);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size heap copy so ASan catches any read past the end. */
    uint8_t *in = malloc(size ? size : 1);
    if (!in)
        return 0;
    memcpy(in, data, size);

    der_err v = der_validate(in, size, FUZZ_DEPTH);
    der_err vw = der_validate(in, size, DER_W_MAX_DEPTH);
    (void)der_validate(in, size, DER_VALIDATE_MAX_DEPTH + 100);
    (void)der_err_name(v);

    der_cur c;
    der_cur_init(&c, in, size);
    bool typed_ok = walk(&c, 1);
    if (v == DER_OK && !typed_ok)
        abort(); /* the validator accepted what a typed reader rejects */

    if (vw == DER_OK && size <= sizeof(out)) {
        der_w w;
        size_t n = 0;
        der_w_init(&w, out, sizeof(out));
        der_cur_init(&c, in, size);
        rewrite(&w, &c);
        if (der_w_finish(&w, &n) != DER_OK || n != size || memcmp(out, in, size) != 0)
            abort();
        /* Too small by a data-chosen amount: overflow, exact size, canary. */
        size_t cap = size ? (size_t)in[0] * size / 256 : 0;
        uint8_t *small = malloc(cap + 1);
        if (small) {
            small[cap] = 0x5A;
            der_w_init(&w, small, cap);
            der_cur_init(&c, in, size);
            rewrite(&w, &c);
            if (der_w_finish(&w, &n) != DER_ERR_OVERFLOW || n != size || small[cap] != 0x5A)
                abort();
            free(small);
        }
    }
    free(in);
    return 0;
}
