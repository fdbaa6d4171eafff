/* CUnit suite for engine/der: every rejection rule with its exact error code,
 * writer output compared byte for byte with OpenSSL's i2d_* encodings,
 * writer overflow at every capacity, length fix-up across the 127/128,
 * 255/256 and 65535/65536 boundaries, time edge cases, and an
 * OpenSSL-made certificate and CSR walked with the reader. */
#include "engine/der/der.h"

#include "cf_test.h"
#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------- helpers */

/* Hex with optional spaces into out; returns the byte count. */
static size_t hx(const char *s, uint8_t *out)
{
    size_t n = 0;
    while (*s) {
        if (*s == ' ') {
            s++;
            continue;
        }
        unsigned v;
        if (sscanf(s, "%2x", &v) != 1)
            abort();
        out[n++] = (uint8_t)v;
        s += 2;
    }
    return n;
}

/* Error of der_next() on the hex input; also checks the cursor did not move
 * on error and that der_validate() agrees on pure header errors. */
static der_err next_err(const char *hex)
{
    uint8_t b[256];
    size_t n = hx(hex, b);
    der_cur c;
    der_tlv t;
    der_cur_init(&c, b, n);
    der_err e = der_next(&c, &t);
    if (e != DER_OK)
        CU_ASSERT_PTR_EQUAL(c.p, b);
    return e;
}

static der_err validate_hex(const char *hex, unsigned depth)
{
    uint8_t b[512];
    size_t n = hx(hex, b);
    return der_validate(b, n, depth);
}

/* Parse exactly one TLV from hex and return it (buffer kept static). */
static der_tlv one(const char *hex)
{
    static uint8_t b[8][512];
    static int slot;
    uint8_t *buf = b[slot++ % 8];
    size_t n = hx(hex, buf);
    der_cur c;
    der_tlv t = {0};
    der_cur_init(&c, buf, n);
    CU_ASSERT_EQUAL_FATAL(der_next(&c, &t), DER_OK);
    CU_ASSERT_EQUAL(der_done(&c), DER_OK);
    return t;
}

/* Writer into a fixed buffer; returns the length, asserts success. */
#define WBUF 4096
static uint8_t wout[WBUF];

static size_t w_done(der_w *w)
{
    size_t n = 0;
    CU_ASSERT_EQUAL(der_w_finish(w, &n), DER_OK);
    return n;
}

/* Re-encode a validated tree through the writer with begin/end (the same
 * property the fuzz target checks). Returns false if the writer refused. */
static bool reencode(der_w *w, der_cur *c, unsigned depth)
{
    while (c->p < c->end) {
        der_tlv t;
        if (der_next(c, &t) != DER_OK || depth > DER_W_MAX_DEPTH)
            return false;
        if (der_tag_constructed(t.tag)) {
            der_cur sub;
            if (der_enter(&t, &sub) != DER_OK)
                return false;
            der_w_begin(w, t.tag);
            if (!reencode(w, &sub, depth + 1))
                return false;
            der_w_end(w);
        } else {
            der_w_tlv(w, t.tag, t.val, t.len);
        }
    }
    return true;
}

static void check_i2d_eq(const uint8_t *ours, size_t n, unsigned char *theirs, int tn)
{
    CU_ASSERT_EQUAL_FATAL(tn, (int)n);
    CU_ASSERT(memcmp(ours, theirs, n) == 0);
    OPENSSL_free(theirs);
}

/* ------------------------------------------------------------- names */

static void test_err_names(void)
{
    for (int i = 0; i < DER_ERR__MAX; i++) {
        const char *a = der_err_name((der_err)i);
        CU_ASSERT_PTR_NOT_NULL_FATAL(a);
        CU_ASSERT_STRING_NOT_EQUAL(a, "unknown");
        for (int j = 0; j < i; j++)
            CU_ASSERT_STRING_NOT_EQUAL(a, der_err_name((der_err)j));
    }
    CU_ASSERT_STRING_EQUAL(der_err_name(DER_ERR__MAX), "unknown");
    CU_ASSERT_STRING_EQUAL(der_err_name(DER_ERR_INDEFINITE_LEN), "indefinite-length");
}

/* ------------------------------------------------------------ lengths */

static void test_lengths(void)
{
    CU_ASSERT_EQUAL(next_err("30 00"), DER_OK);
    CU_ASSERT_EQUAL(next_err(""), DER_ERR_TRUNCATED);
    CU_ASSERT_EQUAL(next_err("30"), DER_ERR_TRUNCATED);
    CU_ASSERT_EQUAL(next_err("30 80 00 00"), DER_ERR_INDEFINITE_LEN);
    CU_ASSERT_EQUAL(next_err("04 81 05 00 00 00 00 00"), DER_ERR_NONMINIMAL_LEN);
    CU_ASSERT_EQUAL(next_err("04 81 7F"), DER_ERR_NONMINIMAL_LEN);
    CU_ASSERT_EQUAL(next_err("04 82 00 80"), DER_ERR_NONMINIMAL_LEN);
    CU_ASSERT_EQUAL(next_err("04 82 00 05 00 00 00 00 00"), DER_ERR_NONMINIMAL_LEN);
    CU_ASSERT_EQUAL(next_err("04 85 00 00 00 00 01 00"), DER_ERR_LEN_TOO_LONG);
    CU_ASSERT_EQUAL(next_err("04 85 01 00 00 00 00"), DER_ERR_LEN_TOO_LONG);
    CU_ASSERT_EQUAL(next_err("04 FF"), DER_ERR_LEN_TOO_LONG);
    CU_ASSERT_EQUAL(next_err("04 05 01 02"), DER_ERR_LEN_TOO_LONG);
    CU_ASSERT_EQUAL(next_err("04 84 FF FF FF FF 00"), DER_ERR_LEN_TOO_LONG);
    CU_ASSERT_EQUAL(next_err("04 82 01"), DER_ERR_TRUNCATED);
    CU_ASSERT_EQUAL(next_err("04 81"), DER_ERR_TRUNCATED);

    /* Long forms at their minimum: 0x81 0x80, 0x82 0x01 0x00, and a real
     * four-octet length (16 MiB + 1). */
    uint8_t *b = calloc(1, (1u << 24) + 16);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    static const size_t lens[] = {0x80, 0xFF, 0x100, 0xFFFF, 0x10000, 0xFFFFFF};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        size_t L = lens[i], h = 0;
        b[h++] = 0x04;
        size_t ls = der_len_size(L);
        if (ls == 1) {
            b[h++] = (uint8_t)L;
        } else {
            b[h++] = (uint8_t)(0x80 | (ls - 1));
            for (size_t k = ls - 1; k > 0; k--)
                b[h++] = (uint8_t)(L >> (8 * (k - 1)));
        }
        der_cur c;
        der_tlv t;
        der_cur_init(&c, b, h + L);
        CU_ASSERT_EQUAL(der_next(&c, &t), DER_OK);
        CU_ASSERT_EQUAL(t.len, L);
        CU_ASSERT_EQUAL(t.rawlen, h + L);
        CU_ASSERT_EQUAL(der_done(&c), DER_OK);
        /* One octet short. */
        der_cur_init(&c, b, h + L - 1);
        CU_ASSERT_EQUAL(der_next(&c, &t), DER_ERR_LEN_TOO_LONG);
    }
    {
        /* 0x84 form: 04 84 01 00 00 00 needs 16 MiB of contents. */
        uint8_t *big = calloc(1, 6 + (1u << 24));
        CU_ASSERT_PTR_NOT_NULL_FATAL(big);
        memcpy(big, "\x04\x84\x01\x00\x00\x00", 6);
        der_cur c;
        der_tlv t;
        der_cur_init(&c, big, 6 + (1u << 24));
        CU_ASSERT_EQUAL(der_next(&c, &t), DER_OK);
        CU_ASSERT_EQUAL(t.len, 1u << 24);
        /* Non-minimal four-octet form of the same contents size. */
        memcpy(big, "\x04\x84\x00\xFF\xFF\xFF", 6);
        der_cur_init(&c, big, 6 + 0xFFFFFF);
        CU_ASSERT_EQUAL(der_next(&c, &t), DER_ERR_NONMINIMAL_LEN);
        free(big);
    }
    free(b);
}

/* --------------------------------------------------------------- tags */

static void test_tags(void)
{
    der_tlv t = one("9F 1F 00");
    CU_ASSERT_EQUAL(t.tag, 0x9F1Fu);
    t = one("9F 81 00 00");
    CU_ASSERT_EQUAL(t.tag, 0x9F8100u);
    CU_ASSERT_FALSE(der_tag_constructed(t.tag));
    CU_ASSERT_EQUAL(der_tag_class(t.tag), DER_CLASS_CONTEXT);
    t = one("BF 81 80 01 00");
    CU_ASSERT_EQUAL(t.tag, 0xBF818001u);
    CU_ASSERT_TRUE(der_tag_constructed(t.tag));
    t = one("7F 64 00"); /* APPLICATION 100 */
    CU_ASSERT_EQUAL(der_tag_class(t.tag), DER_CLASS_APPLICATION);

    CU_ASSERT_EQUAL(next_err("9F 1E 00"), DER_ERR_BAD_TAG);          /* 30 belongs in low form */
    CU_ASSERT_EQUAL(next_err("9F 00 00"), DER_ERR_BAD_TAG);          /* number 0 */
    CU_ASSERT_EQUAL(next_err("9F 80 1F 00"), DER_ERR_BAD_TAG);       /* leading 0x80 */
    CU_ASSERT_EQUAL(next_err("9F 81 80 80 01 00"), DER_ERR_BAD_TAG); /* > 3 octets */
    CU_ASSERT_EQUAL(next_err("9F"), DER_ERR_TRUNCATED);
    CU_ASSERT_EQUAL(next_err("9F 81"), DER_ERR_TRUNCATED);
    CU_ASSERT_EQUAL(next_err("9F 1F"), DER_ERR_TRUNCATED);

    /* Writer: high tags and their sizes. */
    CU_ASSERT_EQUAL(der_tag_size(0x30), 1);
    CU_ASSERT_EQUAL(der_tag_size(0x9F1F), 2);
    CU_ASSERT_EQUAL(der_tag_size(0x9F8100), 3);
    CU_ASSERT_EQUAL(der_tag_size(0xBF818001), 4);
    der_w w;
    der_w_init(&w, wout, WBUF);
    der_w_tlv(&w, 0x9F8148, "x", 1);
    der_w_begin(&w, 0xBF818001);
    der_w_null(&w);
    der_w_end(&w);
    size_t n = w_done(&w);
    uint8_t exp[32];
    size_t en = hx("9F 81 48 01 78 BF 81 80 01 02 05 00", exp);
    CU_ASSERT_EQUAL(n, en);
    CU_ASSERT(memcmp(wout, exp, en) == 0);
}

/* ------------------------------------------------------------- cursor */

static void test_cursor(void)
{
    uint8_t b[64];
    size_t n = hx("30 0B 02 01 05 A0 03 01 01 FF 04 01 AA 05 00", b);
    der_cur c, s;
    der_tlv t, u;
    bool present = true;
    unsigned tag = 0;
    der_cur_init(&c, b, n);

    /* Wrong tag: error, cursor unchanged. */
    CU_ASSERT_EQUAL(der_expect(&c, DER_SET, &t), DER_ERR_UNEXPECTED_TAG);
    CU_ASSERT_PTR_EQUAL(c.p, b);
    CU_ASSERT_EQUAL(der_peek_tag(&c, &tag), DER_OK);
    CU_ASSERT_EQUAL(tag, DER_SEQUENCE);
    CU_ASSERT_EQUAL(der_expect(&c, DER_SEQUENCE, &t), DER_OK);
    CU_ASSERT_PTR_EQUAL(t.raw, b);
    CU_ASSERT_EQUAL(t.rawlen, 13);
    CU_ASSERT_EQUAL(t.len, 11);
    CU_ASSERT_PTR_EQUAL(t.val, b + 2);
    /* Trailing NULL after the SEQUENCE. */
    CU_ASSERT_EQUAL(der_done(&c), DER_ERR_TRAILING);

    CU_ASSERT_EQUAL(der_enter(&t, &s), DER_OK);
    uint64_t v = 0;
    CU_ASSERT_EQUAL(der_read_uint64(&s, &v), DER_OK);
    CU_ASSERT_EQUAL(v, 5);
    /* Optional [1] absent, [0] present. */
    CU_ASSERT_EQUAL(der_optional(&s, DER_CTX_CONS(1), &u, &present), DER_OK);
    CU_ASSERT_FALSE(present);
    CU_ASSERT_EQUAL(der_optional(&s, DER_CTX_CONS(0), &u, &present), DER_OK);
    CU_ASSERT_TRUE(present);
    der_cur e;
    bool bv = false;
    CU_ASSERT_EQUAL(der_enter(&u, &e), DER_OK);
    CU_ASSERT_EQUAL(der_read_bool(&e, &bv), DER_OK);
    CU_ASSERT_TRUE(bv);
    CU_ASSERT_EQUAL(der_done(&e), DER_OK);
    /* Entering a primitive is refused. */
    der_tlv oct;
    CU_ASSERT_EQUAL(der_expect(&s, DER_OCTET_STRING, &oct), DER_OK);
    CU_ASSERT_EQUAL(der_enter(&oct, &e), DER_ERR_UNEXPECTED_TAG);
    CU_ASSERT_EQUAL(der_done(&s), DER_OK);
    /* At the end: optional is absent, peek and next are truncated. */
    CU_ASSERT_EQUAL(der_optional(&s, DER_NULL, &u, &present), DER_OK);
    CU_ASSERT_FALSE(present);
    CU_ASSERT_EQUAL(der_peek_tag(&s, &tag), DER_ERR_TRUNCATED);
    CU_ASSERT_EQUAL(der_next(&s, &u), DER_ERR_TRUNCATED);
    CU_ASSERT_EQUAL(der_read_null(&c), DER_OK);
    CU_ASSERT_EQUAL(der_done(&c), DER_OK);

    /* A malformed next element is an error, not "absent". */
    n = hx("04 81 01 00", b);
    der_cur_init(&c, b, n);
    CU_ASSERT_EQUAL(der_optional(&c, DER_NULL, &u, &present), DER_ERR_NONMINIMAL_LEN);
    CU_ASSERT_PTR_EQUAL(c.p, b);

    /* Typed reads leave the cursor alone when the contents are bad. */
    n = hx("02 02 00 01", b);
    der_cur_init(&c, b, n);
    CU_ASSERT_EQUAL(der_read_uint64(&c, &v), DER_ERR_BAD_INT);
    CU_ASSERT_PTR_EQUAL(c.p, b);
    CU_ASSERT_EQUAL(der_read_bool(&c, &bv), DER_ERR_UNEXPECTED_TAG);
    CU_ASSERT_PTR_EQUAL(c.p, b);
}

/* ------------------------------------------------------------ INTEGER */

static void test_int_reader(void)
{
    der_tlv t;
    bool neg;
    uint64_t u;
    int64_t s;
    const uint8_t *m;
    size_t ml;

    t = one("02 00");
    CU_ASSERT_EQUAL(der_get_int(&t, &neg), DER_ERR_BAD_INT);
    CU_ASSERT_EQUAL(der_get_uint64(&t, &u), DER_ERR_BAD_INT);
    t = one("02 02 00 7F");
    CU_ASSERT_EQUAL(der_get_int(&t, &neg), DER_ERR_BAD_INT);
    t = one("02 02 FF 80");
    CU_ASSERT_EQUAL(der_get_int(&t, &neg), DER_ERR_BAD_INT);
    t = one("02 03 00 00 80");
    CU_ASSERT_EQUAL(der_get_int(&t, &neg), DER_ERR_BAD_INT);
    t = one("02 02 FF 7F"); /* -129: the 0xFF is needed */
    CU_ASSERT_EQUAL(der_get_int64(&t, &s), DER_OK);
    CU_ASSERT_EQUAL(s, -129);
    t = one("02 02 00 80");
    CU_ASSERT_EQUAL(der_get_uint64(&t, &u), DER_OK);
    CU_ASSERT_EQUAL(u, 128);
    CU_ASSERT_EQUAL(der_get_uint_mag(&t, &m, &ml), DER_OK);
    CU_ASSERT_EQUAL(ml, 1);
    CU_ASSERT_EQUAL(m[0], 0x80);
    t = one("02 01 00");
    CU_ASSERT_EQUAL(der_get_uint_mag(&t, &m, &ml), DER_OK);
    CU_ASSERT_EQUAL(ml, 1);
    CU_ASSERT_EQUAL(m[0], 0);
    CU_ASSERT_EQUAL(der_get_uint64(&t, &u), DER_OK);
    CU_ASSERT_EQUAL(u, 0);
    t = one("02 01 80");
    CU_ASSERT_EQUAL(der_get_int(&t, &neg), DER_OK);
    CU_ASSERT_TRUE(neg);
    CU_ASSERT_EQUAL(der_get_uint64(&t, &u), DER_ERR_INT_RANGE);
    CU_ASSERT_EQUAL(der_get_uint_mag(&t, &m, &ml), DER_ERR_INT_RANGE);
    CU_ASSERT_EQUAL(der_get_int64(&t, &s), DER_OK);
    CU_ASSERT_EQUAL(s, -128);
    t = one("02 09 00 FF FF FF FF FF FF FF FF");
    CU_ASSERT_EQUAL(der_get_uint64(&t, &u), DER_OK);
    CU_ASSERT_EQUAL(u, UINT64_MAX);
    CU_ASSERT_EQUAL(der_get_int64(&t, &s), DER_ERR_INT_RANGE);
    t = one("02 09 01 00 00 00 00 00 00 00 00");
    CU_ASSERT_EQUAL(der_get_uint64(&t, &u), DER_ERR_INT_RANGE);
    t = one("02 08 80 00 00 00 00 00 00 00");
    CU_ASSERT_EQUAL(der_get_int64(&t, &s), DER_OK);
    CU_ASSERT_EQUAL(s, INT64_MIN);
    t = one("02 08 7F FF FF FF FF FF FF FF");
    CU_ASSERT_EQUAL(der_get_int64(&t, &s), DER_OK);
    CU_ASSERT_EQUAL(s, INT64_MAX);
    t = one("02 01 FF");
    CU_ASSERT_EQUAL(der_get_int64(&t, &s), DER_OK);
    CU_ASSERT_EQUAL(s, -1);
    /* A 20-octet serial with its sign octet: 21 contents octets. */
    t = one("02 15 00 80 01 02 03 04 05 06 07 08 09 0A 0B 0C 0D 0E 0F 10 11 12 13");
    CU_ASSERT_EQUAL(der_get_uint_mag(&t, &m, &ml), DER_OK);
    CU_ASSERT_EQUAL(ml, 20);
    CU_ASSERT_EQUAL(m[0], 0x80);
    /* The validator applies the same rule, ENUMERATED included. */
    CU_ASSERT_EQUAL(validate_hex("30 04 02 02 00 01", 4), DER_ERR_BAD_INT);
    CU_ASSERT_EQUAL(validate_hex("0A 02 FF FF", 4), DER_ERR_BAD_INT);
    CU_ASSERT_EQUAL(validate_hex("0A 01 FF", 4), DER_OK);
}

/* Our INTEGER encoding vs OpenSSL's for a magnitude. */
static void int_vs_openssl(const uint8_t *mag, size_t n)
{
    BIGNUM *bn = BN_bin2bn(mag, (int)n, NULL);
    ASN1_INTEGER *ai = BN_to_ASN1_INTEGER(bn, NULL);
    unsigned char *d = NULL;
    int dl = i2d_ASN1_INTEGER(ai, &d);
    der_w w;
    der_w_init(&w, wout, WBUF);
    der_w_int_mag(&w, mag, n);
    size_t len = w_done(&w);
    check_i2d_eq(wout, len, d, dl);
    /* Read back: magnitude without leading zeros. */
    der_cur c;
    const uint8_t *m;
    size_t ml;
    der_cur_init(&c, wout, len);
    CU_ASSERT_EQUAL(der_read_int_mag(&c, &m, &ml), DER_OK);
    size_t z = 0;
    while (z < n && mag[z] == 0)
        z++;
    if (z == n) {
        CU_ASSERT(ml == 1 && m[0] == 0);
    } else {
        CU_ASSERT_EQUAL(ml, n - z);
        CU_ASSERT(memcmp(m, mag + z, ml) == 0);
    }
    ASN1_INTEGER_free(ai);
    BN_free(bn);
}

static void test_int_writer(void)
{
    static const uint64_t u64s[] = {0,
                                    1,
                                    0x7F,
                                    0x80,
                                    0xFF,
                                    0x100,
                                    0x7FFF,
                                    0x8000,
                                    0xFFFFFFFF,
                                    0x80000000,
                                    1ull << 63,
                                    UINT64_MAX,
                                    0x00FF00FF00FF00FFull};
    for (size_t i = 0; i < sizeof(u64s) / sizeof(u64s[0]); i++) {
        ASN1_INTEGER *ai = ASN1_INTEGER_new();
        CU_ASSERT_EQUAL_FATAL(ASN1_INTEGER_set_uint64(ai, u64s[i]), 1);
        unsigned char *d = NULL;
        int dl = i2d_ASN1_INTEGER(ai, &d);
        der_w w;
        der_w_init(&w, wout, WBUF);
        der_w_uint64(&w, u64s[i]);
        size_t n = w_done(&w);
        check_i2d_eq(wout, n, d, dl);
        der_cur c;
        uint64_t back = 0;
        der_cur_init(&c, wout, n);
        CU_ASSERT_EQUAL(der_read_uint64(&c, &back), DER_OK);
        CU_ASSERT_EQUAL(back, u64s[i]);
        ASN1_INTEGER_free(ai);
    }
    static const int64_t i64s[] = {0,      -1,  -128, -129,      -255,      -256,     -32768,
                                   -32769, 127, 128,  INT64_MIN, INT64_MAX, -0x800000};
    for (size_t i = 0; i < sizeof(i64s) / sizeof(i64s[0]); i++) {
        ASN1_INTEGER *ai = ASN1_INTEGER_new();
        CU_ASSERT_EQUAL_FATAL(ASN1_INTEGER_set_int64(ai, i64s[i]), 1);
        unsigned char *d = NULL;
        int dl = i2d_ASN1_INTEGER(ai, &d);
        der_w w;
        der_w_init(&w, wout, WBUF);
        der_w_int64(&w, i64s[i]);
        size_t n = w_done(&w);
        check_i2d_eq(wout, n, d, dl);
        der_cur c;
        int64_t back = 1;
        der_cur_init(&c, wout, n);
        CU_ASSERT_EQUAL(der_read_int64(&c, &back), DER_OK);
        CU_ASSERT_EQUAL(back, i64s[i]);
        ASN1_INTEGER_free(ai);
    }
    /* Magnitudes: empty, zeros, top bit set/clear, leading zeros, 20-octet
     * serials, and random big ones. */
    uint8_t m[40] = {0};
    int_vs_openssl(m, 0);
    int_vs_openssl(m, 3);
    m[2] = 0x80;
    int_vs_openssl(m, 3);
    m[2] = 0x7F;
    int_vs_openssl(m, 3);
    for (int r = 0; r < 200; r++) {
        size_t n = 1 + (size_t)(r % 40);
        CU_ASSERT_EQUAL_FATAL(RAND_bytes(m, (int)n), 1);
        if (r % 3 == 0)
            m[0] |= 0x80;
        if (r % 5 == 0)
            m[0] = 0;
        int_vs_openssl(m, n);
    }
}

/* -------------------------------------------------- BOOLEAN, NULL, OID */

static void test_bool_null(void)
{
    der_tlv t;
    bool v;
    t = one("01 01 00");
    CU_ASSERT_EQUAL(der_get_bool(&t, &v), DER_OK);
    CU_ASSERT_FALSE(v);
    t = one("01 01 FF");
    CU_ASSERT_EQUAL(der_get_bool(&t, &v), DER_OK);
    CU_ASSERT_TRUE(v);
    t = one("01 01 01");
    CU_ASSERT_EQUAL(der_get_bool(&t, &v), DER_ERR_BAD_BOOL);
    t = one("01 01 7F");
    CU_ASSERT_EQUAL(der_get_bool(&t, &v), DER_ERR_BAD_BOOL);
    t = one("01 00");
    CU_ASSERT_EQUAL(der_get_bool(&t, &v), DER_ERR_BAD_BOOL);
    t = one("01 02 FF FF");
    CU_ASSERT_EQUAL(der_get_bool(&t, &v), DER_ERR_BAD_BOOL);
    t = one("05 00");
    CU_ASSERT_EQUAL(der_get_null(&t), DER_OK);
    t = one("05 01 00");
    CU_ASSERT_EQUAL(der_get_null(&t), DER_ERR_BAD_NULL);
    CU_ASSERT_EQUAL(validate_hex("30 03 01 01 01", 4), DER_ERR_BAD_BOOL);
    CU_ASSERT_EQUAL(validate_hex("30 03 05 01 00", 4), DER_ERR_BAD_NULL);

    der_w w;
    der_w_init(&w, wout, WBUF);
    der_w_bool(&w, true);
    der_w_bool(&w, false);
    der_w_null(&w);
    size_t n = w_done(&w);
    CU_ASSERT_EQUAL(n, 8);
    CU_ASSERT(memcmp(wout, "\x01\x01\xFF\x01\x01\x00\x05\x00", 8) == 0);
}

static void test_oid(void)
{
    der_tlv t;
    CU_ASSERT_EQUAL((t = one("06 00"), der_get_oid(&t)), DER_ERR_BAD_OID);
    CU_ASSERT_EQUAL((t = one("06 01 80"), der_get_oid(&t)), DER_ERR_BAD_OID);
    CU_ASSERT_EQUAL((t = one("06 03 2A 80 01"), der_get_oid(&t)), DER_ERR_BAD_OID);
    CU_ASSERT_EQUAL((t = one("06 02 80 01"), der_get_oid(&t)), DER_ERR_BAD_OID);
    CU_ASSERT_EQUAL((t = one("06 02 2A 86"), der_get_oid(&t)), DER_ERR_BAD_OID);
    CU_ASSERT_EQUAL(validate_hex("30 04 06 02 2A 86", 4), DER_ERR_BAD_OID);

    static const uint8_t ecdsa_sha256[] = {0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x02};
    t = one("06 08 2A 86 48 CE 3D 04 03 02");
    CU_ASSERT_EQUAL(der_get_oid(&t), DER_OK);
    CU_ASSERT_TRUE(der_oid_eq(&t, ecdsa_sha256, sizeof(ecdsa_sha256)));
    CU_ASSERT_FALSE(der_oid_eq(&t, ecdsa_sha256, sizeof(ecdsa_sha256) - 1));
    der_cur c;
    der_tlv o;
    der_cur_init(&c, t.raw, t.rawlen);
    CU_ASSERT_EQUAL(der_read_oid(&c, &o), DER_OK);
    CU_ASSERT_TRUE(der_oid_eq(&o, ecdsa_sha256, sizeof(ecdsa_sha256)));

    /* Writer vs OpenSSL for a handful of OIDs, including big arcs. */
    static const char *oids[] = {"1.2.840.10045.4.3.2",
                                 "1.3.6.1.5.5.7.1.34",
                                 "2.5.29.56",
                                 "2.999.1",
                                 "1.3.101.112",
                                 "2.5.4.3",
                                 "1.2.840.113549.1.9.14",
                                 "1.3.6.1.4.1.311.60.2.1.3",
                                 "2.25.329800735698586629295641978511506172918"};
    for (size_t i = 0; i < sizeof(oids) / sizeof(oids[0]); i++) {
        ASN1_OBJECT *obj = OBJ_txt2obj(oids[i], 1);
        CU_ASSERT_PTR_NOT_NULL_FATAL(obj);
        unsigned char *d = NULL;
        int dl = i2d_ASN1_OBJECT(obj, &d);
        CU_ASSERT_FATAL(dl > 2);
        /* OpenSSL's contents octets, re-encoded by us. */
        der_tlv ot;
        der_cur_init(&c, d, (size_t)dl);
        CU_ASSERT_EQUAL_FATAL(der_read_oid(&c, &ot), DER_OK);
        der_w w;
        der_w_init(&w, wout, WBUF);
        der_w_oid(&w, ot.val, ot.len);
        size_t n = w_done(&w);
        check_i2d_eq(wout, n, d, dl);
        ASN1_OBJECT_free(obj);
    }
}

/* --------------------------------------------------------- BIT STRING */

static void test_bits(void)
{
    der_tlv t;
    const uint8_t *b;
    size_t n;
    unsigned u;
    CU_ASSERT_EQUAL((t = one("03 00"), der_get_bits(&t, &b, &n, &u)), DER_ERR_BAD_BITSTRING);
    CU_ASSERT_EQUAL((t = one("03 01 01"), der_get_bits(&t, &b, &n, &u)), DER_ERR_BAD_BITSTRING);
    CU_ASSERT_EQUAL((t = one("03 02 08 00"), der_get_bits(&t, &b, &n, &u)), DER_ERR_BAD_BITSTRING);
    CU_ASSERT_EQUAL((t = one("03 02 01 01"), der_get_bits(&t, &b, &n, &u)), DER_ERR_BAD_BITSTRING);
    CU_ASSERT_EQUAL((t = one("03 02 07 C0"), der_get_bits(&t, &b, &n, &u)), DER_ERR_BAD_BITSTRING);
    CU_ASSERT_EQUAL(validate_hex("30 04 03 02 07 C0", 4), DER_ERR_BAD_BITSTRING);
    t = one("03 01 00");
    CU_ASSERT_EQUAL(der_get_bits(&t, &b, &n, &u), DER_OK);
    CU_ASSERT_EQUAL(n, 0);
    t = one("03 02 07 80");
    CU_ASSERT_EQUAL(der_get_bits(&t, &b, &n, &u), DER_OK);
    CU_ASSERT_EQUAL(n, 1);
    CU_ASSERT_EQUAL(u, 7);
    CU_ASSERT_EQUAL(b[0], 0x80);

    /* der_w_bits vs OpenSSL with explicit 0 unused bits. */
    uint8_t data[33];
    CU_ASSERT_EQUAL_FATAL(RAND_bytes(data, sizeof(data)), 1);
    data[32] = 0;
    for (size_t len = 0; len <= sizeof(data); len += 11) {
        ASN1_BIT_STRING *bs = ASN1_BIT_STRING_new();
        CU_ASSERT_FATAL(ASN1_BIT_STRING_set(bs, data, (int)len) == 1);
        bs->flags = (bs->flags & ~0x07L) | ASN1_STRING_FLAG_BITS_LEFT;
        unsigned char *d = NULL;
        int dl = i2d_ASN1_BIT_STRING(bs, &d);
        der_w w;
        der_w_init(&w, wout, WBUF);
        der_w_bits(&w, data, len);
        size_t wl = w_done(&w);
        check_i2d_eq(wout, wl, d, dl);
        ASN1_BIT_STRING_free(bs);
    }
    /* Named bits (X.690 §11.2.2) vs OpenSSL's default, which strips
     * trailing zero bits: KeyUsage-like values. */
    static const int bitsets[][4] = {{0, -1}, {5, 6, -1}, {0, 8, -1}, {7, -1}, {-1}};
    for (size_t i = 0; i < sizeof(bitsets) / sizeof(bitsets[0]); i++) {
        ASN1_BIT_STRING *bs = ASN1_BIT_STRING_new();
        uint8_t raw[3] = {0};
        for (int k = 0; bitsets[i][k] >= 0; k++) {
            CU_ASSERT(ASN1_BIT_STRING_set_bit(bs, bitsets[i][k], 1) == 1);
            raw[bitsets[i][k] / 8] |= (uint8_t)(0x80 >> (bitsets[i][k] % 8));
        }
        unsigned char *d = NULL;
        int dl = i2d_ASN1_BIT_STRING(bs, &d);
        der_w w;
        der_w_init(&w, wout, WBUF);
        der_w_named_bits(&w, raw, sizeof(raw));
        size_t wl = w_done(&w);
        check_i2d_eq(wout, wl, d, dl);
        ASN1_BIT_STRING_free(bs);
    }
    /* Unused bits must be zero and in range. */
    der_w w;
    size_t wl;
    der_w_init(&w, wout, WBUF);
    der_w_bits_unused(&w, "\x81", 1, 1);
    CU_ASSERT_EQUAL(der_w_finish(&w, &wl), DER_ERR_BAD_ARG);
    der_w_init(&w, wout, WBUF);
    der_w_bits_unused(&w, "", 0, 3);
    CU_ASSERT_EQUAL(der_w_finish(&w, &wl), DER_ERR_BAD_ARG);
    der_w_init(&w, wout, WBUF);
    der_w_bits_unused(&w, "\x80", 1, 8);
    CU_ASSERT_EQUAL(der_w_finish(&w, &wl), DER_ERR_BAD_ARG);
    der_w_init(&w, wout, WBUF);
    der_w_bits_unused(&w, "\x80", 1, 7);
    CU_ASSERT_EQUAL(der_w_finish(&w, &wl), DER_OK);
    CU_ASSERT(wl == 4 && memcmp(wout, "\x03\x02\x07\x80", 4) == 0);
}

/* ------------------------------------------------------------ strings */

static der_err str_err(unsigned tag, const char *s, size_t n)
{
    uint8_t b[300];
    const uint8_t *p;
    size_t len;
    b[0] = (uint8_t)tag;
    b[1] = (uint8_t)n;
    memcpy(b + 2, s, n);
    der_cur c;
    der_tlv t;
    der_cur_init(&c, b, n + 2);
    CU_ASSERT_EQUAL_FATAL(der_next(&c, &t), DER_OK);
    der_err e = der_get_string(&t, &p, &len);
    /* The validator and the writer agree with the reader. */
    der_err ve = der_validate(b, n + 2, 1);
    CU_ASSERT_EQUAL(ve, e == DER_ERR_UNEXPECTED_TAG ? DER_OK : e);
    der_w w;
    size_t wl;
    der_w_init(&w, wout, WBUF);
    der_w_string(&w, tag, s, n);
    der_err we = der_w_finish(&w, &wl);
    CU_ASSERT_EQUAL(we, e == DER_ERR_UNEXPECTED_TAG ? DER_ERR_BAD_ARG : e);
    if (e == DER_OK)
        CU_ASSERT(wl == n + 2 && memcmp(wout, b, wl) == 0);
    return e;
}
#define STR(tag, lit) str_err(tag, lit, sizeof(lit) - 1)

static void test_strings(void)
{
    CU_ASSERT_EQUAL(STR(DER_PRINTABLE_STRING, "Hello World'()+,-./:=?09az"), DER_OK);
    CU_ASSERT_EQUAL(STR(DER_PRINTABLE_STRING, "a@b"), DER_ERR_BAD_STRING);
    CU_ASSERT_EQUAL(STR(DER_PRINTABLE_STRING, "a*b"), DER_ERR_BAD_STRING);
    CU_ASSERT_EQUAL(STR(DER_PRINTABLE_STRING, "a&b"), DER_ERR_BAD_STRING);
    CU_ASSERT_EQUAL(STR(DER_PRINTABLE_STRING, "a_b"), DER_ERR_BAD_STRING);
    CU_ASSERT_EQUAL(STR(DER_PRINTABLE_STRING, "\x00"), DER_ERR_BAD_STRING);
    CU_ASSERT_EQUAL(STR(DER_PRINTABLE_STRING, ""), DER_OK);
    CU_ASSERT_EQUAL(STR(DER_IA5_STRING, "urn:uuid:0000@x_~\x7F\x01"), DER_OK);
    CU_ASSERT_EQUAL(STR(DER_IA5_STRING, "caf\xC3\xA9"), DER_ERR_BAD_STRING);
    CU_ASSERT_EQUAL(STR(DER_NUMERIC_STRING, "12 34"), DER_OK);
    CU_ASSERT_EQUAL(STR(DER_NUMERIC_STRING, "12a"), DER_ERR_BAD_STRING);
    CU_ASSERT_EQUAL(STR(DER_VISIBLE_STRING, "a b~"), DER_OK);
    CU_ASSERT_EQUAL(STR(DER_VISIBLE_STRING, "a\x7F"), DER_ERR_BAD_STRING);
    CU_ASSERT_EQUAL(STR(DER_VISIBLE_STRING, "a\tb"), DER_ERR_BAD_STRING);
    CU_ASSERT_EQUAL(STR(DER_T61_STRING, "\xFF\x00\x80"), DER_OK);
    CU_ASSERT_EQUAL(STR(DER_UTF8_STRING, "\xC3\xBC \xE2\x82\xAC \xF0\x90\x8D\x88"), DER_OK);
    CU_ASSERT_EQUAL(STR(DER_UTF8_STRING, "\xC0\x80"), DER_ERR_BAD_STRING);         /* overlong */
    CU_ASSERT_EQUAL(STR(DER_UTF8_STRING, "\xE0\x80\xAF"), DER_ERR_BAD_STRING);     /* overlong */
    CU_ASSERT_EQUAL(STR(DER_UTF8_STRING, "\xED\xA0\x80"), DER_ERR_BAD_STRING);     /* surrogate */
    CU_ASSERT_EQUAL(STR(DER_UTF8_STRING, "\xF4\x90\x80\x80"), DER_ERR_BAD_STRING); /* >10FFFF */
    CU_ASSERT_EQUAL(STR(DER_UTF8_STRING, "\xE2\x82"), DER_ERR_BAD_STRING);         /* cut short */
    CU_ASSERT_EQUAL(STR(DER_UTF8_STRING, "\x80"), DER_ERR_BAD_STRING);
    CU_ASSERT_EQUAL(STR(DER_UTF8_STRING, "\xF8\x88\x80\x80\x80"), DER_ERR_BAD_STRING);
    CU_ASSERT_EQUAL(STR(DER_BMP_STRING, "\x00\x41\x20\xAC"), DER_OK);
    CU_ASSERT_EQUAL(STR(DER_BMP_STRING, "\x00\x41\x00"), DER_ERR_BAD_STRING);
    CU_ASSERT_EQUAL(STR(DER_BMP_STRING, "\xD8\x00"), DER_ERR_BAD_STRING);
    CU_ASSERT_EQUAL(STR(DER_UNIVERSAL_STRING, "\x00\x01\xF6\x00"), DER_OK);
    CU_ASSERT_EQUAL(STR(DER_UNIVERSAL_STRING, "\x00\x11\x00\x00"), DER_ERR_BAD_STRING);
    CU_ASSERT_EQUAL(STR(DER_UNIVERSAL_STRING, "\x00\x00\x41"), DER_ERR_BAD_STRING);
    CU_ASSERT_EQUAL(STR(0x15 /* VideotexString */, "x"), DER_ERR_UNEXPECTED_TAG);

    /* IMPLICIT: a dNSName [2] checked as IA5String. */
    der_tlv t = one("82 03 61 C3 A9");
    const uint8_t *s;
    size_t n;
    CU_ASSERT_EQUAL(der_get_string_as(&t, DER_IA5_STRING, &s, &n), DER_ERR_BAD_STRING);
    CU_ASSERT_EQUAL(der_get_string_as(&t, DER_UTF8_STRING, &s, &n), DER_OK);
    CU_ASSERT_EQUAL(der_get_string(&t, &s, &n), DER_ERR_UNEXPECTED_TAG);

    /* Writer vs OpenSSL for each type it writes. */
    static const struct {
        unsigned tag;
        int type;
        const char *s;
    } v[] = {
        {DER_UTF8_STRING, V_ASN1_UTF8STRING, "5gc.mnc001.mcc001.3gppnetwork.org \xE2\x82\xAC"},
        {DER_PRINTABLE_STRING, V_ASN1_PRINTABLESTRING, "FI"},
        {DER_IA5_STRING, V_ASN1_IA5STRING, "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6"},
        {DER_NUMERIC_STRING, V_ASN1_NUMERICSTRING, "0123"},
        {DER_VISIBLE_STRING, V_ASN1_VISIBLESTRING, "Visible"},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        ASN1_STRING *as = ASN1_STRING_type_new(v[i].type);
        CU_ASSERT_FATAL(ASN1_STRING_set(as, v[i].s, (int)strlen(v[i].s)) == 1);
        ASN1_TYPE *at = ASN1_TYPE_new();
        ASN1_TYPE_set(at, v[i].type, as);
        unsigned char *d = NULL;
        int dl = i2d_ASN1_TYPE(at, &d);
        der_w w;
        der_w_init(&w, wout, WBUF);
        der_w_string(&w, v[i].tag, v[i].s, strlen(v[i].s));
        size_t wl = w_done(&w);
        check_i2d_eq(wout, wl, d, dl);
        ASN1_TYPE_free(at);
    }
}

/* --------------------------------------------------------------- time */

static int64_t gm(int y, int mo, int d, int h, int mi, int s)
{
    struct tm tm = {0};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = s;
    return (int64_t)timegm(&tm);
}

static der_err time_err(unsigned tag, const char *s, int64_t *out)
{
    uint8_t b[64];
    size_t n = strlen(s);
    b[0] = (uint8_t)tag;
    b[1] = (uint8_t)n;
    memcpy(b + 2, s, n);
    der_cur c;
    der_cur_init(&c, b, n + 2);
    int64_t v = 0;
    der_err e = der_read_time(&c, &v);
    CU_ASSERT_EQUAL(der_validate(b, n + 2, 1), e);
    if (out)
        *out = v;
    if (e == DER_OK) {
        /* Round trip through the matching writer. */
        der_w w;
        der_w_init(&w, wout, WBUF);
        if (tag == DER_UTC_TIME)
            der_w_utctime(&w, v);
        else
            der_w_gentime(&w, v);
        size_t wl = w_done(&w);
        CU_ASSERT(wl == n + 2 && memcmp(wout, b, wl) == 0);
    }
    return e;
}
#define UTC DER_UTC_TIME
#define GEN DER_GENERALIZED_TIME

static void test_time_reader(void)
{
    int64_t t;
    CU_ASSERT_EQUAL(time_err(UTC, "500101000000Z", &t), DER_OK);
    CU_ASSERT_EQUAL(t, gm(1950, 1, 1, 0, 0, 0));
    CU_ASSERT_EQUAL(t, -631152000);
    CU_ASSERT_EQUAL(time_err(UTC, "491231235959Z", &t), DER_OK);
    CU_ASSERT_EQUAL(t, gm(2049, 12, 31, 23, 59, 59));
    CU_ASSERT_EQUAL(time_err(UTC, "700101000000Z", &t), DER_OK);
    CU_ASSERT_EQUAL(t, 0);
    CU_ASSERT_EQUAL(time_err(UTC, "000229120000Z", &t), DER_OK); /* 2000 is a leap year */
    CU_ASSERT_EQUAL(t, gm(2000, 2, 29, 12, 0, 0));
    CU_ASSERT_EQUAL(time_err(UTC, "240229235959Z", &t), DER_OK);
    CU_ASSERT_EQUAL(t, gm(2024, 2, 29, 23, 59, 59));
    CU_ASSERT_EQUAL(time_err(UTC, "010229000000Z", NULL), DER_ERR_BAD_TIME);
    CU_ASSERT_EQUAL(time_err(UTC, "250230000000Z", NULL), DER_ERR_BAD_TIME);
    CU_ASSERT_EQUAL(time_err(GEN, "21000229000000Z", NULL), DER_ERR_BAD_TIME); /* not leap */
    CU_ASSERT_EQUAL(time_err(GEN, "19000229000000Z", NULL), DER_ERR_BAD_TIME);
    CU_ASSERT_EQUAL(time_err(GEN, "24000229000000Z", &t), DER_OK);
    CU_ASSERT_EQUAL(t, gm(2400, 2, 29, 0, 0, 0));
    CU_ASSERT_EQUAL(time_err(GEN, "20500101000000Z", &t), DER_OK);
    CU_ASSERT_EQUAL(t, gm(2050, 1, 1, 0, 0, 0));
    CU_ASSERT_EQUAL(time_err(GEN, "19491231235959Z", &t), DER_OK);
    CU_ASSERT_EQUAL(t, gm(1949, 12, 31, 23, 59, 59));
    CU_ASSERT_EQUAL(time_err(GEN, "00000101000000Z", &t), DER_OK);
    CU_ASSERT_EQUAL(t, gm(0, 1, 1, 0, 0, 0));
    CU_ASSERT_EQUAL(time_err(GEN, "99991231235959Z", &t), DER_OK);
    CU_ASSERT_EQUAL(t, gm(9999, 12, 31, 23, 59, 59));

    CU_ASSERT_EQUAL(time_err(UTC, "251301000000Z", NULL), DER_ERR_BAD_TIME); /* month 13 */
    CU_ASSERT_EQUAL(time_err(UTC, "250001000000Z", NULL), DER_ERR_BAD_TIME); /* month 0 */
    CU_ASSERT_EQUAL(time_err(UTC, "250100000000Z", NULL), DER_ERR_BAD_TIME); /* day 0 */
    CU_ASSERT_EQUAL(time_err(UTC, "250132000000Z", NULL), DER_ERR_BAD_TIME);
    CU_ASSERT_EQUAL(time_err(UTC, "250431000000Z", NULL), DER_ERR_BAD_TIME); /* 31 April */
    CU_ASSERT_EQUAL(time_err(UTC, "250101240000Z", NULL), DER_ERR_BAD_TIME);
    CU_ASSERT_EQUAL(time_err(UTC, "250101236000Z", NULL), DER_ERR_BAD_TIME);
    CU_ASSERT_EQUAL(time_err(UTC, "250101235960Z", NULL), DER_ERR_BAD_TIME); /* second 60 */
    CU_ASSERT_EQUAL(time_err(GEN, "20161231235960Z", NULL), DER_ERR_BAD_TIME);
    CU_ASSERT_EQUAL(time_err(UTC, "2501010000Z", NULL), DER_ERR_BAD_TIME); /* no seconds */
    CU_ASSERT_EQUAL(time_err(UTC, "250101000000", NULL), DER_ERR_BAD_TIME);
    CU_ASSERT_EQUAL(time_err(UTC, "2501010000000", NULL), DER_ERR_BAD_TIME);
    CU_ASSERT_EQUAL(time_err(UTC, "250101000000z", NULL), DER_ERR_BAD_TIME);
    CU_ASSERT_EQUAL(time_err(UTC, "250101000000+0000", NULL), DER_ERR_BAD_TIME);
    CU_ASSERT_EQUAL(time_err(UTC, "2a0101000000Z", NULL), DER_ERR_BAD_TIME);
    CU_ASSERT_EQUAL(time_err(UTC, "25010100000-Z", NULL), DER_ERR_BAD_TIME);
    CU_ASSERT_EQUAL(time_err(UTC, " 50101000000Z", NULL), DER_ERR_BAD_TIME);
    CU_ASSERT_EQUAL(time_err(GEN, "20250101000000.5Z", NULL), DER_ERR_BAD_TIME);
    CU_ASSERT_EQUAL(time_err(GEN, "20250101000000", NULL), DER_ERR_BAD_TIME);
    CU_ASSERT_EQUAL(time_err(GEN, "202501010000Z", NULL), DER_ERR_BAD_TIME);
    CU_ASSERT_EQUAL(time_err(GEN, "2025010100000Z0", NULL), DER_ERR_BAD_TIME);
    /* Not a time at all. */
    der_tlv x = one("04 01 00");
    CU_ASSERT_EQUAL(der_get_time(&x, &t), DER_ERR_UNEXPECTED_TAG);

    /* Every day of a leap and a common year, and random instants, against
     * timegm(). */
    char s[32];
    for (int y = 2023; y <= 2024; y++)
        for (int m = 1; m <= 12; m++)
            for (int d = 1; d <= 31; d++) {
                int64_t ref = gm(y, m, d, 13, 14, 15);
                time_t tt = (time_t)ref;
                struct tm back;
                gmtime_r(&tt, &back);
                bool valid = back.tm_mday == d; /* timegm normalises 31 April to 1 May */
                snprintf(s, sizeof(s), "%02d%02d%02d131415Z", y % 100, m, d);
                der_err e = time_err(UTC, s, &t);
                CU_ASSERT_EQUAL(e, valid ? DER_OK : DER_ERR_BAD_TIME);
                if (valid)
                    CU_ASSERT_EQUAL(t, ref);
            }
    uint32_t r[3];
    for (int i = 0; i < 500; i++) {
        CU_ASSERT_EQUAL_FATAL(RAND_bytes((unsigned char *)r, sizeof(r)), 1);
        int y = (int)(r[0] % 10000), mo = 1 + (int)(r[1] % 12), d = 1 + (int)(r[1] / 12 % 28);
        int h = (int)(r[2] % 24), mi = (int)(r[2] / 24 % 60), se = (int)(r[2] / 1440 % 60);
        snprintf(s, sizeof(s), "%04d%02d%02d%02d%02d%02dZ", y, mo, d, h, mi, se);
        CU_ASSERT_EQUAL(time_err(GEN, s, &t), DER_OK);
        CU_ASSERT_EQUAL(t, gm(y, mo, d, h, mi, se));
    }
}

static void time_vs_openssl(int64_t t)
{
    ASN1_TIME *at = ASN1_TIME_set(NULL, (time_t)t);
    CU_ASSERT_PTR_NOT_NULL_FATAL(at);
    unsigned char *d = NULL;
    int dl = i2d_ASN1_TIME(at, &d);
    der_w w;
    der_w_init(&w, wout, WBUF);
    der_w_time(&w, t);
    size_t n = w_done(&w);
    check_i2d_eq(wout, n, d, dl);
    der_cur c;
    int64_t back;
    der_cur_init(&c, wout, n);
    CU_ASSERT_EQUAL(der_read_time(&c, &back), DER_OK);
    CU_ASSERT_EQUAL(back, t);
    ASN1_TIME_free(at);
}

static void test_time_writer(void)
{
    time_vs_openssl(0);
    time_vs_openssl(gm(1950, 1, 1, 0, 0, 0));
    time_vs_openssl(gm(1949, 12, 31, 23, 59, 59));
    time_vs_openssl(gm(2049, 12, 31, 23, 59, 59));
    time_vs_openssl(gm(2050, 1, 1, 0, 0, 0));
    time_vs_openssl(gm(2024, 2, 29, 12, 34, 56));
    time_vs_openssl(gm(2000, 2, 29, 0, 0, 0));
    time_vs_openssl(gm(1969, 12, 31, 23, 59, 59));
    time_vs_openssl(gm(9999, 12, 31, 23, 59, 59));
    time_vs_openssl(gm(1900, 3, 1, 0, 0, 0));
    uint32_t r;
    for (int i = 0; i < 300; i++) {
        CU_ASSERT_EQUAL_FATAL(RAND_bytes((unsigned char *)&r, sizeof(r)), 1);
        /* Spread over 1901..2106 (and the 2049/2050 boundary inside). */
        time_vs_openssl((int64_t)r - 0x7FFFFFFFLL + (int64_t)(i % 3) * 0x7FFFFFFFLL / 2);
    }
    CU_ASSERT_EQUAL(gm(2050, 1, 1, 0, 0, 0), 2524608000LL);
    CU_ASSERT_EQUAL(gm(10000, 1, 1, 0, 0, 0), 253402300800LL);
    CU_ASSERT_EQUAL(gm(0, 1, 1, 0, 0, 0), -62167219200LL);

    /* Out of range for the type. */
    der_w w;
    size_t n;
    der_w_init(&w, wout, WBUF);
    der_w_utctime(&w, gm(2050, 1, 1, 0, 0, 0));
    CU_ASSERT_EQUAL(der_w_finish(&w, &n), DER_ERR_BAD_ARG);
    der_w_init(&w, wout, WBUF);
    der_w_utctime(&w, gm(1950, 1, 1, 0, 0, 0) - 1);
    CU_ASSERT_EQUAL(der_w_finish(&w, &n), DER_ERR_BAD_ARG);
    der_w_init(&w, wout, WBUF);
    der_w_gentime(&w, gm(10000, 1, 1, 0, 0, 0));
    CU_ASSERT_EQUAL(der_w_finish(&w, &n), DER_ERR_BAD_ARG);
    der_w_init(&w, wout, WBUF);
    der_w_time(&w, gm(0, 1, 1, 0, 0, 0) - 1);
    CU_ASSERT_EQUAL(der_w_finish(&w, &n), DER_ERR_BAD_ARG);
    der_w_init(&w, wout, WBUF);
    der_w_time(&w, INT64_MIN);
    der_w_time(&w, INT64_MAX);
    CU_ASSERT_EQUAL(der_w_finish(&w, &n), DER_ERR_BAD_ARG);
    /* Explicit GeneralizedTime inside the UTCTime range is allowed. */
    der_w_init(&w, wout, WBUF);
    der_w_gentime(&w, 0);
    n = w_done(&w);
    CU_ASSERT(n == 17 && memcmp(wout,
                                "\x18\x0F"
                                "19700101000000Z",
                                17) == 0);
}

/* ------------------------------------------------------ writer nesting */

static void test_sizes(void)
{
    CU_ASSERT_EQUAL(der_len_size(0), 1);
    CU_ASSERT_EQUAL(der_len_size(127), 1);
    CU_ASSERT_EQUAL(der_len_size(128), 2);
    CU_ASSERT_EQUAL(der_len_size(255), 2);
    CU_ASSERT_EQUAL(der_len_size(256), 3);
    CU_ASSERT_EQUAL(der_len_size(65535), 3);
    CU_ASSERT_EQUAL(der_len_size(65536), 4);
    CU_ASSERT_EQUAL(der_len_size(0xFFFFFF), 4);
    CU_ASSERT_EQUAL(der_len_size(0x1000000), 5);
    CU_ASSERT_EQUAL(der_len_size(0xFFFFFFFF), 5);
    CU_ASSERT_EQUAL(der_hdr_size(DER_SEQUENCE, 300), 4);
    CU_ASSERT_EQUAL(der_hdr_size(0x9F8100, 5), 4);
}

/* begin/end around `inner` bytes of contents, nested `levels` deep; the
 * result is checked by parsing it back level by level. */
static void nest_case(uint8_t *buf, size_t cap, size_t inner, int levels)
{
    static uint8_t *pattern;
    static size_t plen;
    if (plen < inner) {
        free(pattern);
        pattern = malloc(inner);
        CU_ASSERT_PTR_NOT_NULL_FATAL(pattern);
        for (size_t i = 0; i < inner; i++)
            pattern[i] = (uint8_t)(i * 31 + 7);
        plen = inner;
    }
    der_w w;
    der_w_init(&w, buf, cap);
    for (int l = 0; l < levels; l++)
        der_w_begin(&w, l % 2 ? DER_SET : DER_SEQUENCE);
    der_w_raw(&w, pattern, inner);
    for (int l = 0; l < levels; l++)
        der_w_end(&w);
    size_t n = 0;
    CU_ASSERT_EQUAL_FATAL(der_w_finish(&w, &n), DER_OK);
    /* Expected total size from der_hdr_size. */
    size_t exp = inner;
    for (int l = 0; l < levels; l++)
        exp += der_hdr_size(DER_SEQUENCE, exp);
    CU_ASSERT_EQUAL(n, exp);
    der_cur c;
    der_tlv t;
    der_cur_init(&c, buf, n);
    for (int l = 0; l < levels; l++) {
        CU_ASSERT_EQUAL_FATAL(der_expect(&c, l % 2 ? DER_SET : DER_SEQUENCE, &t), DER_OK);
        CU_ASSERT_EQUAL(der_done(&c), DER_OK);
        CU_ASSERT_EQUAL_FATAL(der_enter(&t, &c), DER_OK);
    }
    CU_ASSERT_EQUAL(c.end - c.p, (ptrdiff_t)inner);
    CU_ASSERT(memcmp(c.p, pattern, inner) == 0);
}

static void test_nesting_boundaries(void)
{
    size_t cap = (1u << 24) + 64;
    uint8_t *buf = malloc(cap);
    CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
    static const size_t edges[] = {127, 255, 65535, 0xFFFFFF};
    for (size_t e = 0; e < sizeof(edges) / sizeof(edges[0]); e++)
        for (size_t d = 0; d <= 12; d++) {
            /* Contents lengths just around the edge; with 3 levels each
             * outer level crosses it at a different inner size. */
            size_t inner = edges[e] + d - 6;
            if (edges[e] == 0xFFFFFF && d % 4)
                continue; /* 16 MiB cases are slow-ish; sample them */
            for (int levels = 1; levels <= 3; levels++)
                nest_case(buf, cap, inner, levels);
        }
    nest_case(buf, cap, 0, 1);
    nest_case(buf, cap, 0, DER_W_MAX_DEPTH);
    nest_case(buf, cap, 300, DER_W_MAX_DEPTH);
    /* Exact bytes at the boundaries. */
    der_w w;
    uint8_t z[300] = {0};
    der_w_init(&w, wout, WBUF);
    der_w_begin(&w, DER_SEQUENCE);
    der_w_raw(&w, z, 127);
    der_w_end(&w);
    size_t n = w_done(&w);
    CU_ASSERT(n == 129 && wout[0] == 0x30 && wout[1] == 0x7F);
    der_w_init(&w, wout, WBUF);
    der_w_begin(&w, DER_SEQUENCE);
    der_w_raw(&w, z, 128);
    der_w_end(&w);
    n = w_done(&w);
    CU_ASSERT(n == 131 && memcmp(wout, "\x30\x81\x80", 3) == 0);
    der_w_init(&w, wout, WBUF);
    der_w_begin(&w, DER_SEQUENCE);
    der_w_raw(&w, z, 256);
    der_w_end(&w);
    n = w_done(&w);
    CU_ASSERT(n == 260 && memcmp(wout, "\x30\x82\x01\x00", 4) == 0);
    free(buf);
}

static void test_writer_misuse(void)
{
    der_w w;
    size_t n;
    der_w_init(&w, wout, WBUF);
    der_w_end(&w);
    CU_ASSERT_EQUAL(der_w_finish(&w, &n), DER_ERR_UNBALANCED);
    der_w_init(&w, wout, WBUF);
    der_w_begin(&w, DER_SEQUENCE);
    CU_ASSERT_EQUAL(der_w_finish(&w, &n), DER_ERR_UNBALANCED);
    der_w_init(&w, wout, WBUF);
    for (int i = 0; i < DER_W_MAX_DEPTH + 2; i++)
        der_w_begin(&w, DER_SEQUENCE);
    for (int i = 0; i < DER_W_MAX_DEPTH + 2; i++)
        der_w_end(&w);
    CU_ASSERT_EQUAL(der_w_finish(&w, &n), DER_ERR_TOO_DEEP);
    /* A bad argument wins over an earlier overflow. */
    der_w_init(&w, wout, 1);
    der_w_null(&w);
    der_w_utctime(&w, INT64_MAX);
    CU_ASSERT_EQUAL(der_w_finish(&w, &n), DER_ERR_BAD_ARG);
    /* No buffer at all: counts the size. */
    der_w_init(&w, NULL, 100);
    der_w_begin(&w, DER_SEQUENCE);
    der_w_uint64(&w, 1);
    der_w_end(&w);
    CU_ASSERT_EQUAL(der_w_finish(&w, &n), DER_ERR_OVERFLOW);
    CU_ASSERT_EQUAL(n, 5);
}

/* ------------------------------------------------- overflow, canaries */

/* Something certificate-shaped: a Name, times, integers, and a value large
 * enough that fix-ups move data. */
static void build_sample(der_w *w)
{
    static const uint8_t oid_c[] = {0x55, 0x04, 0x06}, oid_o[] = {0x55, 0x04, 0x0A};
    static const uint8_t serial[20] = {0x80, 1,  2,  3,  4,  5,  6,  7,  8,  9,
                                       10,   11, 12, 13, 14, 15, 16, 17, 18, 19};
    static uint8_t blob[300];
    der_w_begin(w, DER_SEQUENCE);
    der_w_begin(w, DER_CTX_CONS(0));
    der_w_uint64(w, 2);
    der_w_end(w);
    der_w_int_mag(w, serial, sizeof(serial));
    der_w_begin(w, DER_SEQUENCE);
    der_w_begin(w, DER_SET);
    der_w_begin(w, DER_SEQUENCE);
    der_w_oid(w, oid_c, sizeof(oid_c));
    der_w_string(w, DER_PRINTABLE_STRING, "FI", 2);
    der_w_end(w);
    der_w_end(w);
    der_w_begin(w, DER_SET);
    der_w_begin(w, DER_SEQUENCE);
    der_w_oid(w, oid_o, sizeof(oid_o));
    der_w_string(w, DER_UTF8_STRING, "5gc.mnc001.mcc001.3gppnetwork.org", 33);
    der_w_end(w);
    der_w_end(w);
    der_w_end(w);
    der_w_begin(w, DER_SEQUENCE);
    der_w_time(w, 1700000000);
    der_w_time(w, 2600000000LL);
    der_w_end(w);
    der_w_begin(w, DER_CTX_CONS(3));
    der_w_begin(w, DER_SEQUENCE);
    der_w_octets(w, blob, sizeof(blob));
    der_w_bool(w, true);
    der_w_null(w);
    der_w_named_bits(w, (const uint8_t *)"\x80", 1);
    der_w_bits(w, blob, 70);
    der_w_end(w);
    der_w_end(w);
    der_w_int64(w, -12345);
    der_w_tlv(w, 0x9F8148, "hi", 2);
    der_w_end(w);
}

static void test_overflow_every_capacity(void)
{
    der_w w;
    der_w_init(&w, wout, WBUF);
    build_sample(&w);
    size_t full = w_done(&w);
    CU_ASSERT_FATAL(full > 400 && full < WBUF);
    CU_ASSERT_EQUAL(der_validate(wout, full, 16), DER_OK);
    uint8_t *ref = malloc(full);
    memcpy(ref, wout, full);
    enum { GUARD = 32 };
    uint8_t *buf = malloc(full + GUARD);
    CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
    for (size_t cap = 0; cap <= full; cap++) {
        memset(buf, 0xA5, full + GUARD);
        der_w_init(&w, buf, cap);
        build_sample(&w);
        size_t n = 0;
        der_err e = der_w_finish(&w, &n);
        CU_ASSERT_EQUAL(n, full);
        if (cap < full) {
            CU_ASSERT_EQUAL(e, DER_ERR_OVERFLOW);
        } else {
            CU_ASSERT_EQUAL(e, DER_OK);
            CU_ASSERT(memcmp(buf, ref, full) == 0);
        }
        bool intact = true;
        for (size_t i = cap; i < full + GUARD; i++)
            intact &= buf[i] == 0xA5;
        CU_ASSERT(intact);
    }
    free(buf);
    free(ref);
}

/* ------------------------------------------------------------ validator */

static void test_validate(void)
{
    uint8_t b[400];
    for (unsigned d = 1; d <= 70; d++) {
        /* d nested empty-ended SEQUENCEs, built inside out. */
        size_t start = sizeof(b), len = 0;
        for (unsigned i = 0; i < d; i++) {
            if (len < 0x80) {
                b[--start] = (uint8_t)len;
            } else {
                b[--start] = (uint8_t)len;
                b[--start] = 0x81;
            }
            b[--start] = 0x30;
            len = sizeof(b) - start;
        }
        const uint8_t *p = b + start;
        CU_ASSERT_EQUAL(der_validate(p, len, d),
                        d <= DER_VALIDATE_MAX_DEPTH ? DER_OK : DER_ERR_TOO_DEEP);
        CU_ASSERT_EQUAL(der_validate(p, len, d - 1), DER_ERR_TOO_DEEP);
        CU_ASSERT_EQUAL(der_validate(p, len, 1000),
                        d <= DER_VALIDATE_MAX_DEPTH ? DER_OK : DER_ERR_TOO_DEEP);
    }
    CU_ASSERT_EQUAL(validate_hex("30 00 00", 4), DER_ERR_TRAILING);
    CU_ASSERT_EQUAL(validate_hex("30 00 30 00", 4), DER_ERR_TRAILING);
    CU_ASSERT_EQUAL(validate_hex("", 4), DER_ERR_TRUNCATED);
    CU_ASSERT_EQUAL(validate_hex("30 03 04 05 00 00 00 00 00", 4), DER_ERR_LEN_TOO_LONG);
    CU_ASSERT_EQUAL(validate_hex("30 03 04 00 30", 4), DER_ERR_TRUNCATED);
    CU_ASSERT_EQUAL(validate_hex("30 02 30 80 00 00", 4), DER_ERR_INDEFINITE_LEN);
    CU_ASSERT_EQUAL(validate_hex("10 00", 4), DER_ERR_BAD_TAG); /* primitive SEQUENCE */
    CU_ASSERT_EQUAL(validate_hex("11 00", 4), DER_ERR_BAD_TAG); /* primitive SET */
    CU_ASSERT_EQUAL(validate_hex("24 00", 4), DER_ERR_BAD_TAG); /* constructed OCTET STRING */
    CU_ASSERT_EQUAL(validate_hex("23 03 03 01 00", 4),
                    DER_ERR_BAD_TAG);                                 /* constructed BIT STRING */
    CU_ASSERT_EQUAL(validate_hex("2C 00", 4), DER_ERR_BAD_TAG);       /* constructed UTF8String */
    CU_ASSERT_EQUAL(validate_hex("30 02 00 00", 4), DER_ERR_BAD_TAG); /* end-of-contents */
    CU_ASSERT_EQUAL(validate_hex("0F 00", 4), DER_ERR_BAD_TAG);
    CU_ASSERT_EQUAL(validate_hex("A0 03 01 01 05", 4), DER_ERR_BAD_BOOL); /* inside [0] */
    CU_ASSERT_EQUAL(validate_hex("80 01 05", 4), DER_OK); /* [0] IMPLICIT: not inspected */
    CU_ASSERT_EQUAL(validate_hex("1F 1F 00", 4), DER_OK); /* universal 31: unknown type */
    CU_ASSERT_EQUAL(validate_hex("30 05 13 03 61 2A 62", 4), DER_ERR_BAD_STRING);
    CU_ASSERT_EQUAL(validate_hex("30 0F 17 0D 32 35 31 33 30 31 30 30 30 30 30 30 5A", 4),
                    DER_ERR_BAD_TIME);
    CU_ASSERT_EQUAL(validate_hex("30 06 30 00 31 00 A0 00", 4), DER_OK);
    CU_ASSERT_EQUAL(validate_hex("30 04 30 02 05 00", 2), DER_ERR_TOO_DEEP);
    CU_ASSERT_EQUAL(validate_hex("30 04 30 02 05 00", 3), DER_OK);
    CU_ASSERT_EQUAL(validate_hex("30 04 30 02 05 00", 0), DER_ERR_TOO_DEEP);
}

/* --------------------------------------------- real certificate and CSR */

static const uint8_t OID_ECDSA_SHA256[] = {0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x02};
static const uint8_t OID_BASIC_CONSTRAINTS[] = {0x55, 0x1D, 0x13};
static const uint8_t OID_SAN[] = {0x55, 0x1D, 0x11};
static const uint8_t OID_EXT_REQ[] = {0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x0E};

static EVP_PKEY *p256_key(void)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    CU_ASSERT_PTR_NOT_NULL_FATAL(k);
    return k;
}

static X509_NAME *test_name(void)
{
    X509_NAME *nm = X509_NAME_new();
    CU_ASSERT_FATAL(X509_NAME_add_entry_by_NID(nm, NID_countryName, V_ASN1_PRINTABLESTRING,
                                               (const unsigned char *)"FI", -1, -1, 0) == 1);
    CU_ASSERT_FATAL(
        X509_NAME_add_entry_by_NID(nm, NID_organizationName, V_ASN1_UTF8STRING,
                                   (const unsigned char *)"5gc.mnc001.mcc001.3gppnetwork.org", -1,
                                   -1, 0) == 1);
    CU_ASSERT_FATAL(X509_NAME_add_entry_by_NID(nm, NID_commonName, V_ASN1_UTF8STRING,
                                               (const unsigned char *)"certforge test CA", -1, -1,
                                               0) == 1);
    return nm;
}

/* The same Name written by our writer. */
static size_t write_test_name(uint8_t *out, size_t cap)
{
    static const struct {
        uint8_t oid[3];
        unsigned tag;
        const char *v;
    } rdn[] = {{{0x55, 0x04, 0x06}, DER_PRINTABLE_STRING, "FI"},
               {{0x55, 0x04, 0x0A}, DER_UTF8_STRING, "5gc.mnc001.mcc001.3gppnetwork.org"},
               {{0x55, 0x04, 0x03}, DER_UTF8_STRING, "certforge test CA"}};
    der_w w;
    der_w_init(&w, out, cap);
    der_w_begin(&w, DER_SEQUENCE);
    for (size_t i = 0; i < 3; i++) {
        der_w_begin(&w, DER_SET);
        der_w_begin(&w, DER_SEQUENCE);
        der_w_oid(&w, rdn[i].oid, 3);
        der_w_string(&w, rdn[i].tag, rdn[i].v, strlen(rdn[i].v));
        der_w_end(&w);
        der_w_end(&w);
    }
    der_w_end(&w);
    return w_done(&w);
}

static void test_name_vs_openssl(void)
{
    X509_NAME *nm = test_name();
    unsigned char *d = NULL;
    int dl = i2d_X509_NAME(nm, &d);
    uint8_t buf[512];
    size_t n = write_test_name(buf, sizeof(buf));
    check_i2d_eq(buf, n, d, dl);
    X509_NAME_free(nm);
}

static void check_reencode(const uint8_t *der, size_t n)
{
    uint8_t *out = malloc(n + 8);
    der_w w;
    der_cur c;
    der_w_init(&w, out, n + 8);
    der_cur_init(&c, der, n);
    CU_ASSERT_TRUE(reencode(&w, &c, 1));
    size_t wl = w_done(&w);
    CU_ASSERT(wl == n && memcmp(out, der, n) == 0);
    free(out);
}

static void test_certificate_walk(void)
{
    EVP_PKEY *key = p256_key();
    X509 *x = X509_new();
    X509_NAME *nm = test_name();
    uint8_t serial[20];
    CU_ASSERT_EQUAL_FATAL(RAND_bytes(serial, sizeof(serial)), 1);
    serial[0] = (serial[0] & 0x7F) | 0x40;
    BIGNUM *sbn = BN_bin2bn(serial, sizeof(serial), NULL);
    CU_ASSERT_FATAL(X509_set_version(x, 2) == 1);
    CU_ASSERT_FATAL(BN_to_ASN1_INTEGER(sbn, X509_get_serialNumber(x)) != NULL);
    CU_ASSERT_FATAL(X509_set_issuer_name(x, nm) == 1);
    CU_ASSERT_FATAL(X509_set_subject_name(x, nm) == 1);
    int64_t nb = 1700000000, na = gm(2051, 6, 30, 12, 0, 0); /* UTCTime, GeneralizedTime */
    CU_ASSERT_FATAL(ASN1_TIME_set(X509_getm_notBefore(x), (time_t)nb) != NULL);
    CU_ASSERT_FATAL(ASN1_TIME_set(X509_getm_notAfter(x), (time_t)na) != NULL);
    CU_ASSERT_FATAL(X509_set_pubkey(x, key) == 1);
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext =
        X509V3_EXT_conf_nid(NULL, &ctx, NID_basic_constraints, "critical,CA:TRUE");
    CU_ASSERT_FATAL(ext && X509_add_ext(x, ext, -1) == 1);
    X509_EXTENSION_free(ext);
    ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name,
                              "DNS:amf1.5gc.mnc001.mcc001.3gppnetwork.org,"
                              "URI:urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6");
    CU_ASSERT_FATAL(ext && X509_add_ext(x, ext, -1) == 1);
    X509_EXTENSION_free(ext);
    CU_ASSERT_FATAL(X509_sign(x, key, EVP_sha256()) > 0);
    unsigned char *der = NULL;
    int dl = i2d_X509(x, &der);
    CU_ASSERT_FATAL(dl > 0);
    size_t n = (size_t)dl;

    CU_ASSERT_EQUAL(der_validate(der, n, 16), DER_OK);
    check_reencode(der, n);

    der_cur top, cert, tbs, c2;
    der_tlv t, tbst, v;
    der_cur_init(&top, der, n);
    CU_ASSERT_EQUAL_FATAL(der_expect(&top, DER_SEQUENCE, &t), DER_OK);
    CU_ASSERT_EQUAL(der_done(&top), DER_OK);
    CU_ASSERT_EQUAL_FATAL(der_enter(&t, &cert), DER_OK);
    CU_ASSERT_EQUAL_FATAL(der_expect(&cert, DER_SEQUENCE, &tbst), DER_OK);
    CU_ASSERT_EQUAL_FATAL(der_enter(&tbst, &tbs), DER_OK);
    /* version [0] EXPLICIT INTEGER 2 */
    bool present = false;
    uint64_t ver = 0;
    CU_ASSERT_EQUAL_FATAL(der_optional(&tbs, DER_CTX_CONS(0), &v, &present), DER_OK);
    CU_ASSERT_TRUE_FATAL(present);
    CU_ASSERT_EQUAL_FATAL(der_enter(&v, &c2), DER_OK);
    CU_ASSERT_EQUAL(der_read_uint64(&c2, &ver), DER_OK);
    CU_ASSERT_EQUAL(ver, 2);
    CU_ASSERT_EQUAL(der_done(&c2), DER_OK);
    /* serial */
    const uint8_t *m;
    size_t ml;
    CU_ASSERT_EQUAL_FATAL(der_read_int_mag(&tbs, &m, &ml), DER_OK);
    CU_ASSERT(ml == 20 && memcmp(m, serial, 20) == 0);
    /* signature AlgorithmIdentifier: ecdsa-with-SHA256, parameters absent */
    der_tlv alg, oid;
    CU_ASSERT_EQUAL_FATAL(der_expect(&tbs, DER_SEQUENCE, &alg), DER_OK);
    CU_ASSERT_EQUAL_FATAL(der_enter(&alg, &c2), DER_OK);
    CU_ASSERT_EQUAL(der_read_oid(&c2, &oid), DER_OK);
    CU_ASSERT_TRUE(der_oid_eq(&oid, OID_ECDSA_SHA256, sizeof(OID_ECDSA_SHA256)));
    CU_ASSERT_EQUAL(der_done(&c2), DER_OK);
    /* issuer, verbatim equal to OpenSSL's Name encoding and to ours */
    der_tlv issuer;
    unsigned char *nd = NULL;
    int ndl = i2d_X509_NAME(nm, &nd);
    uint8_t ours[512];
    size_t ol = write_test_name(ours, sizeof(ours));
    CU_ASSERT_EQUAL_FATAL(der_expect(&tbs, DER_SEQUENCE, &issuer), DER_OK);
    CU_ASSERT(issuer.rawlen == (size_t)ndl && memcmp(issuer.raw, nd, issuer.rawlen) == 0);
    CU_ASSERT(issuer.rawlen == ol && memcmp(issuer.raw, ours, ol) == 0);
    OPENSSL_free(nd);
    /* validity */
    der_tlv val;
    int64_t t1 = 0, t2 = 0;
    unsigned tag = 0;
    CU_ASSERT_EQUAL_FATAL(der_expect(&tbs, DER_SEQUENCE, &val), DER_OK);
    CU_ASSERT_EQUAL_FATAL(der_enter(&val, &c2), DER_OK);
    CU_ASSERT_EQUAL(der_peek_tag(&c2, &tag), DER_OK);
    CU_ASSERT_EQUAL(tag, DER_UTC_TIME);
    CU_ASSERT_EQUAL(der_read_time(&c2, &t1), DER_OK);
    CU_ASSERT_EQUAL(der_peek_tag(&c2, &tag), DER_OK);
    CU_ASSERT_EQUAL(tag, DER_GENERALIZED_TIME);
    CU_ASSERT_EQUAL(der_read_time(&c2, &t2), DER_OK);
    CU_ASSERT_EQUAL(t1, nb);
    CU_ASSERT_EQUAL(t2, na);
    CU_ASSERT_EQUAL(der_done(&c2), DER_OK);
    /* our writer's Validity equals OpenSSL's bytes */
    {
        der_w w;
        der_w_init(&w, wout, WBUF);
        der_w_begin(&w, DER_SEQUENCE);
        der_w_time(&w, nb);
        der_w_time(&w, na);
        der_w_end(&w);
        size_t wl = w_done(&w);
        CU_ASSERT(wl == val.rawlen && memcmp(wout, val.raw, wl) == 0);
    }
    /* subject */
    der_tlv subj;
    CU_ASSERT_EQUAL_FATAL(der_expect(&tbs, DER_SEQUENCE, &subj), DER_OK);
    /* SPKI: raw TLV equals i2d_PUBKEY */
    der_tlv spki;
    CU_ASSERT_EQUAL_FATAL(der_expect(&tbs, DER_SEQUENCE, &spki), DER_OK);
    unsigned char *pk = NULL;
    int pkl = i2d_PUBKEY(key, &pk);
    CU_ASSERT(spki.rawlen == (size_t)pkl && memcmp(spki.raw, pk, (size_t)pkl) == 0);
    OPENSSL_free(pk);
    {
        der_cur s;
        der_tlv a;
        const uint8_t *bits;
        size_t nb2;
        unsigned unused;
        CU_ASSERT_EQUAL_FATAL(der_enter(&spki, &s), DER_OK);
        CU_ASSERT_EQUAL(der_expect(&s, DER_SEQUENCE, &a), DER_OK);
        CU_ASSERT_EQUAL(der_read_bits(&s, &bits, &nb2, &unused), DER_OK);
        CU_ASSERT(nb2 == 65 && unused == 0 && bits[0] == 0x04);
        CU_ASSERT_EQUAL(der_done(&s), DER_OK);
    }
    /* no issuerUniqueID/subjectUniqueID; extensions [3] */
    CU_ASSERT_EQUAL(der_optional(&tbs, DER_CTX(1), &v, &present), DER_OK);
    CU_ASSERT_FALSE(present);
    CU_ASSERT_EQUAL(der_optional(&tbs, DER_CTX(2), &v, &present), DER_OK);
    CU_ASSERT_FALSE(present);
    CU_ASSERT_EQUAL_FATAL(der_optional(&tbs, DER_CTX_CONS(3), &v, &present), DER_OK);
    CU_ASSERT_TRUE_FATAL(present);
    CU_ASSERT_EQUAL(der_done(&tbs), DER_OK);
    der_cur exts_outer, exts;
    der_tlv exts_t;
    CU_ASSERT_EQUAL_FATAL(der_enter(&v, &exts_outer), DER_OK);
    CU_ASSERT_EQUAL_FATAL(der_expect(&exts_outer, DER_SEQUENCE, &exts_t), DER_OK);
    CU_ASSERT_EQUAL(der_done(&exts_outer), DER_OK);
    CU_ASSERT_EQUAL_FATAL(der_enter(&exts_t, &exts), DER_OK);
    int seen = 0;
    while (exts.p < exts.end) {
        der_tlv e, eo;
        der_cur ec, inner;
        bool crit = false, has_crit = false;
        const uint8_t *ev;
        size_t evl;
        CU_ASSERT_EQUAL_FATAL(der_expect(&exts, DER_SEQUENCE, &e), DER_OK);
        CU_ASSERT_EQUAL_FATAL(der_enter(&e, &ec), DER_OK);
        CU_ASSERT_EQUAL_FATAL(der_read_oid(&ec, &eo), DER_OK);
        der_tlv bt;
        CU_ASSERT_EQUAL(der_optional(&ec, DER_BOOLEAN, &bt, &has_crit), DER_OK);
        if (has_crit)
            CU_ASSERT_EQUAL(der_get_bool(&bt, &crit), DER_OK);
        CU_ASSERT_EQUAL_FATAL(der_read_octets(&ec, &ev, &evl), DER_OK);
        CU_ASSERT_EQUAL(der_done(&ec), DER_OK);
        CU_ASSERT_EQUAL(der_validate(ev, evl, 8), DER_OK);
        der_cur_init(&inner, ev, evl);
        if (der_oid_eq(&eo, OID_BASIC_CONSTRAINTS, sizeof(OID_BASIC_CONSTRAINTS))) {
            der_tlv bc;
            der_cur bcc;
            bool ca = false;
            CU_ASSERT_TRUE(has_crit && crit);
            CU_ASSERT_EQUAL(der_expect(&inner, DER_SEQUENCE, &bc), DER_OK);
            CU_ASSERT_EQUAL(der_enter(&bc, &bcc), DER_OK);
            CU_ASSERT_EQUAL(der_read_bool(&bcc, &ca), DER_OK);
            CU_ASSERT_TRUE(ca);
            seen |= 1;
        } else if (der_oid_eq(&eo, OID_SAN, sizeof(OID_SAN))) {
            der_tlv gn, san;
            der_cur sc;
            const uint8_t *s;
            size_t sl;
            CU_ASSERT_FALSE(has_crit);
            CU_ASSERT_EQUAL(der_expect(&inner, DER_SEQUENCE, &san), DER_OK);
            CU_ASSERT_EQUAL(der_enter(&san, &sc), DER_OK);
            CU_ASSERT_EQUAL(der_expect(&sc, DER_CTX(2), &gn), DER_OK); /* dNSName */
            CU_ASSERT_EQUAL(der_get_string_as(&gn, DER_IA5_STRING, &s, &sl), DER_OK);
            CU_ASSERT(sl == 38 && memcmp(s, "amf1.", 5) == 0);
            CU_ASSERT_EQUAL(der_expect(&sc, DER_CTX(6), &gn), DER_OK); /* URI */
            CU_ASSERT_EQUAL(der_get_string_as(&gn, DER_IA5_STRING, &s, &sl), DER_OK);
            CU_ASSERT(sl == 45 && memcmp(s, "urn:uuid:", 9) == 0);
            CU_ASSERT_EQUAL(der_done(&sc), DER_OK);
            seen |= 2;
        }
    }
    CU_ASSERT_EQUAL(seen, 3);
    /* signatureAlgorithm equals the inner one; signature is a BIT STRING
     * holding a DER Ecdsa-Sig-Value. */
    der_tlv alg2;
    CU_ASSERT_EQUAL_FATAL(der_expect(&cert, DER_SEQUENCE, &alg2), DER_OK);
    CU_ASSERT(alg2.rawlen == alg.rawlen && memcmp(alg2.raw, alg.raw, alg.rawlen) == 0);
    const uint8_t *sig;
    size_t sigl;
    unsigned unused = 9;
    CU_ASSERT_EQUAL_FATAL(der_read_bits(&cert, &sig, &sigl, &unused), DER_OK);
    CU_ASSERT_EQUAL(unused, 0);
    CU_ASSERT_EQUAL(der_validate(sig, sigl, 2), DER_OK);
    CU_ASSERT_EQUAL(der_done(&cert), DER_OK);

    /* Truncating the certificate anywhere is caught. */
    for (size_t cut = 0; cut < n; cut++)
        CU_ASSERT_NOT_EQUAL(der_validate(der, cut, 16), DER_OK);

    OPENSSL_free(der);
    BN_free(sbn);
    X509_NAME_free(nm);
    X509_free(x);
    EVP_PKEY_free(key);
}

static void test_csr_walk(void)
{
    EVP_PKEY *key = p256_key();
    X509_REQ *req = X509_REQ_new();
    X509_NAME *nm = test_name();
    CU_ASSERT_FATAL(X509_REQ_set_version(req, 0) == 1);
    CU_ASSERT_FATAL(X509_REQ_set_subject_name(req, nm) == 1);
    CU_ASSERT_FATAL(X509_REQ_set_pubkey(req, key) == 1);
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    X509_EXTENSION *ext =
        X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, "DNS:smf.example.org");
    CU_ASSERT_FATAL(ext != NULL);
    sk_X509_EXTENSION_push(exts, ext);
    CU_ASSERT_FATAL(X509_REQ_add_extensions(req, exts) == 1);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    CU_ASSERT_FATAL(X509_REQ_sign(req, key, EVP_sha256()) > 0);
    unsigned char *der = NULL;
    int dl = i2d_X509_REQ(req, &der);
    CU_ASSERT_FATAL(dl > 0);
    size_t n = (size_t)dl;
    CU_ASSERT_EQUAL(der_validate(der, n, 16), DER_OK);
    check_reencode(der, n);

    der_cur top, csr, cri, c2;
    der_tlv t, crit, v, oid;
    der_cur_init(&top, der, n);
    CU_ASSERT_EQUAL_FATAL(der_expect(&top, DER_SEQUENCE, &t), DER_OK);
    CU_ASSERT_EQUAL_FATAL(der_enter(&t, &csr), DER_OK);
    CU_ASSERT_EQUAL_FATAL(der_expect(&csr, DER_SEQUENCE, &crit), DER_OK);
    CU_ASSERT_EQUAL_FATAL(der_enter(&crit, &cri), DER_OK);
    uint64_t ver = 9;
    CU_ASSERT_EQUAL(der_read_uint64(&cri, &ver), DER_OK);
    CU_ASSERT_EQUAL(ver, 0);
    CU_ASSERT_EQUAL(der_expect(&cri, DER_SEQUENCE, &v), DER_OK); /* subject */
    der_tlv spki;
    CU_ASSERT_EQUAL(der_expect(&cri, DER_SEQUENCE, &spki), DER_OK);
    unsigned char *pk = NULL;
    int pkl = i2d_PUBKEY(key, &pk);
    CU_ASSERT(spki.rawlen == (size_t)pkl && memcmp(spki.raw, pk, (size_t)pkl) == 0);
    OPENSSL_free(pk);
    /* attributes [0] { SEQUENCE { extensionRequest, SET { Extensions } } } */
    CU_ASSERT_EQUAL_FATAL(der_expect(&cri, DER_CTX_CONS(0), &v), DER_OK);
    CU_ASSERT_EQUAL(der_done(&cri), DER_OK);
    CU_ASSERT_EQUAL_FATAL(der_enter(&v, &c2), DER_OK);
    CU_ASSERT_EQUAL_FATAL(der_expect(&c2, DER_SEQUENCE, &v), DER_OK);
    CU_ASSERT_EQUAL_FATAL(der_enter(&v, &c2), DER_OK);
    CU_ASSERT_EQUAL(der_read_oid(&c2, &oid), DER_OK);
    CU_ASSERT_TRUE(der_oid_eq(&oid, OID_EXT_REQ, sizeof(OID_EXT_REQ)));
    CU_ASSERT_EQUAL(der_expect(&c2, DER_SET, &v), DER_OK);
    CU_ASSERT_EQUAL(der_done(&c2), DER_OK);
    /* signatureAlgorithm, signature */
    CU_ASSERT_EQUAL(der_expect(&csr, DER_SEQUENCE, &v), DER_OK);
    const uint8_t *sig;
    size_t sigl;
    unsigned unused;
    CU_ASSERT_EQUAL(der_read_bits(&csr, &sig, &sigl, &unused), DER_OK);
    CU_ASSERT_EQUAL(der_done(&csr), DER_OK);

    OPENSSL_free(der);
    X509_NAME_free(nm);
    X509_REQ_free(req);
    EVP_PKEY_free(key);
}

/* The committed fuzz seeds: bad_* must be rejected with the code their
 * name says, crash-* (regression seeds) must only not crash, the rest are
 * valid DER. CF_SOURCE_DIR is set by CTest. */
static void test_seed_corpus(void)
{
    static const struct {
        const char *prefix;
        der_err e;
    } bad[] = {{"bad_bitstring", DER_ERR_BAD_BITSTRING},
               {"bad_indefinite", DER_ERR_INDEFINITE_LEN},
               {"bad_int", DER_ERR_BAD_INT},
               {"bad_nonminimal_len", DER_ERR_NONMINIMAL_LEN},
               {"bad_oid", DER_ERR_BAD_OID},
               {"bad_time_sec60", DER_ERR_BAD_TIME}};
    const char *src = getenv("CF_SOURCE_DIR");
    char path[1024];
    if (!src) {
        fprintf(stderr, "CF_SOURCE_DIR not set: seed corpus not checked\n");
        return;
    }
    snprintf(path, sizeof(path), "%s/tests/fuzz/corpus/der", src);
    DIR *d = opendir(path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    struct dirent *de;
    int files = 0;
    static uint8_t buf[1 << 16];
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/tests/fuzz/corpus/der/%s", src, de->d_name);
        FILE *f = fopen(path, "rb");
        CU_ASSERT_PTR_NOT_NULL_FATAL(f);
        size_t n = fread(buf, 1, sizeof(buf), f);
        fclose(f);
        files++;
        der_err e = der_validate(buf, n, 32);
        if (strncmp(de->d_name, "crash-", 6) == 0)
            continue;
        der_err want = DER_OK;
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
            if (strncmp(de->d_name, bad[i].prefix, strlen(bad[i].prefix)) == 0)
                want = bad[i].e;
        if (e != want)
            fprintf(stderr, "%s: %s, want %s\n", de->d_name, der_err_name(e), der_err_name(want));
        CU_ASSERT_EQUAL(e, want);
        if (e == DER_OK && der_validate(buf, n, DER_W_MAX_DEPTH) == DER_OK)
            check_reencode(buf, n);
    }
    closedir(d);
    CU_ASSERT(files >= 10);
}

/* ---------------------------------------------------------------- main */

int main(int argc, char **argv)
{
    static const cf_test tests[] = {
        {"error names", test_err_names},
        {"lengths", test_lengths},
        {"tags", test_tags},
        {"cursor", test_cursor},
        {"INTEGER reader", test_int_reader},
        {"INTEGER writer vs OpenSSL", test_int_writer},
        {"BOOLEAN and NULL", test_bool_null},
        {"OID", test_oid},
        {"BIT STRING", test_bits},
        {"strings", test_strings},
        {"time reader", test_time_reader},
        {"time writer vs OpenSSL", test_time_writer},
        {"length sizes", test_sizes},
        {"nesting across length boundaries", test_nesting_boundaries},
        {"writer misuse", test_writer_misuse},
        {"overflow at every capacity", test_overflow_every_capacity},
        {"validator", test_validate},
        {"Name vs OpenSSL", test_name_vs_openssl},
        {"certificate walk", test_certificate_walk},
        {"CSR walk", test_csr_walk},
        {"seed corpus", test_seed_corpus},
    };
    static const cf_suite suites[] = {CF_SUITE("der", NULL, NULL, tests)};
    return CF_TEST_MAIN(argc, argv, suites);
}
