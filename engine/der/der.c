/* der.c — see der.h and docs/der.md. Clause numbers are ITU-T X.690 (02/2021)
 * unless stated otherwise. */
#include "engine/der/der.h"

#include <string.h>

static const char *const der_err_names[DER_ERR__MAX] = {
    [DER_OK] = "ok",
    [DER_ERR_TRUNCATED] = "truncated",
    [DER_ERR_BAD_TAG] = "bad-tag",
    [DER_ERR_INDEFINITE_LEN] = "indefinite-length",
    [DER_ERR_NONMINIMAL_LEN] = "non-minimal-length",
    [DER_ERR_LEN_TOO_LONG] = "length-too-long",
    [DER_ERR_UNEXPECTED_TAG] = "unexpected-tag",
    [DER_ERR_TRAILING] = "trailing-bytes",
    [DER_ERR_BAD_INT] = "bad-integer",
    [DER_ERR_INT_RANGE] = "integer-out-of-range",
    [DER_ERR_BAD_BOOL] = "bad-boolean",
    [DER_ERR_BAD_NULL] = "bad-null",
    [DER_ERR_BAD_BITSTRING] = "bad-bit-string",
    [DER_ERR_BAD_OID] = "bad-oid",
    [DER_ERR_BAD_STRING] = "bad-string",
    [DER_ERR_BAD_TIME] = "bad-time",
    [DER_ERR_TOO_DEEP] = "too-deep",
    [DER_ERR_OVERFLOW] = "overflow",
    [DER_ERR_UNBALANCED] = "unbalanced",
    [DER_ERR_BAD_ARG] = "bad-argument",
};

const char *der_err_name(der_err e)
{
    if ((unsigned)e >= DER_ERR__MAX || !der_err_names[e])
        return "unknown";
    return der_err_names[e];
}

/* ================================================================ reader */

/* Parse one TLV header at p (p < end is not assumed) and bound its value by
 * end. Lengths: §8.1.3 with the DER restrictions of §10.1 (definite form,
 * minimal number of octets). Tags: §8.1.2; the high-tag-number form only for
 * numbers >= 31 and without a leading 0x80 subsequent octet (§8.1.2.4.2 c). */
static der_err parse_tlv(const uint8_t *p, const uint8_t *end, der_tlv *t)
{
    const uint8_t *start = p;
    if (p >= end)
        return DER_ERR_TRUNCATED;
    unsigned tag = *p++;
    if ((tag & 0x1Fu) == 0x1Fu) {
        uint32_t num = 0;
        for (int k = 0;; k++) {
            if (k == DER_MAX_TAG_OCTETS)
                return DER_ERR_BAD_TAG;
            if (p >= end)
                return DER_ERR_TRUNCATED;
            uint8_t b = *p++;
            if (k == 0 && b == 0x80)
                return DER_ERR_BAD_TAG;
            tag = (tag << 8) | b;
            num = (num << 7) | (b & 0x7Fu);
            if (!(b & 0x80))
                break;
        }
        if (num < 31)
            return DER_ERR_BAD_TAG;
    }
    if (p >= end)
        return DER_ERR_TRUNCATED;
    size_t len = *p++;
    if (len & 0x80) {
        size_t n = len & 0x7F;
        if (n == 0)
            return DER_ERR_INDEFINITE_LEN;
        if (n > 4)
            return DER_ERR_LEN_TOO_LONG;
        if ((size_t)(end - p) < n)
            return DER_ERR_TRUNCATED;
        if (p[0] == 0)
            return DER_ERR_NONMINIMAL_LEN;
        len = 0;
        for (size_t i = 0; i < n; i++)
            len = (len << 8) | *p++;
        if (len < 0x80)
            return DER_ERR_NONMINIMAL_LEN;
    }
    if (len > (size_t)(end - p))
        return DER_ERR_LEN_TOO_LONG;
    t->tag = tag;
    t->val = p;
    t->len = len;
    t->raw = start;
    t->rawlen = (size_t)(p - start) + len;
    return DER_OK;
}

der_err der_next(der_cur *c, der_tlv *t)
{
    der_tlv tmp;
    der_err e = parse_tlv(c->p, c->end, &tmp);
    if (e != DER_OK)
        return e;
    *t = tmp;
    c->p = tmp.raw + tmp.rawlen;
    return DER_OK;
}

der_err der_expect(der_cur *c, unsigned tag, der_tlv *t)
{
    der_tlv tmp;
    der_err e = parse_tlv(c->p, c->end, &tmp);
    if (e != DER_OK)
        return e;
    if (tmp.tag != tag)
        return DER_ERR_UNEXPECTED_TAG;
    *t = tmp;
    c->p = tmp.raw + tmp.rawlen;
    return DER_OK;
}

der_err der_peek_tag(const der_cur *c, unsigned *tag)
{
    der_tlv tmp;
    der_err e = parse_tlv(c->p, c->end, &tmp);
    if (e != DER_OK)
        return e;
    *tag = tmp.tag;
    return DER_OK;
}

der_err der_optional(der_cur *c, unsigned tag, der_tlv *t, bool *present)
{
    if (c->p >= c->end) {
        *present = false;
        return DER_OK;
    }
    der_tlv tmp;
    der_err e = parse_tlv(c->p, c->end, &tmp);
    if (e != DER_OK)
        return e;
    if (tmp.tag != tag) {
        *present = false;
        return DER_OK;
    }
    *t = tmp;
    c->p = tmp.raw + tmp.rawlen;
    *present = true;
    return DER_OK;
}

der_err der_enter(const der_tlv *t, der_cur *sub)
{
    if (!der_tag_constructed(t->tag))
        return DER_ERR_UNEXPECTED_TAG;
    sub->p = t->val;
    sub->end = t->val + t->len;
    return DER_OK;
}

der_err der_done(const der_cur *c)
{
    return c->p == c->end ? DER_OK : DER_ERR_TRAILING;
}

/* ---------------------------------------------------------- typed values */

/* §8.3.2: the first nine bits shall not be all ones or all zeros. */
der_err der_get_int(const der_tlv *t, bool *negative)
{
    const uint8_t *v = t->val;
    if (t->len == 0)
        return DER_ERR_BAD_INT;
    if (t->len > 1 && ((v[0] == 0x00 && !(v[1] & 0x80)) || (v[0] == 0xFF && (v[1] & 0x80))))
        return DER_ERR_BAD_INT;
    *negative = (v[0] & 0x80) != 0;
    return DER_OK;
}

der_err der_get_uint_mag(const der_tlv *t, const uint8_t **mag, size_t *len)
{
    bool neg;
    der_err e = der_get_int(t, &neg);
    if (e != DER_OK)
        return e;
    if (neg)
        return DER_ERR_INT_RANGE;
    /* Minimal: a leading 0x00 is there only as sign padding. */
    size_t skip = (t->len > 1 && t->val[0] == 0) ? 1 : 0;
    *mag = t->val + skip;
    *len = t->len - skip;
    return DER_OK;
}

der_err der_get_uint64(const der_tlv *t, uint64_t *v)
{
    const uint8_t *m;
    size_t n;
    der_err e = der_get_uint_mag(t, &m, &n);
    if (e != DER_OK)
        return e;
    if (n > 8)
        return DER_ERR_INT_RANGE;
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++)
        x = (x << 8) | m[i];
    *v = x;
    return DER_OK;
}

der_err der_get_int64(const der_tlv *t, int64_t *v)
{
    bool neg;
    der_err e = der_get_int(t, &neg);
    if (e != DER_OK)
        return e;
    if (t->len > 8)
        return DER_ERR_INT_RANGE;
    uint64_t x = neg ? UINT64_MAX : 0;
    for (size_t i = 0; i < t->len; i++)
        x = (x << 8) | t->val[i];
    /* Two's complement reinterpretation without implementation-defined casts. */
    *v = (x <= INT64_MAX) ? (int64_t)x : -(int64_t)(~x) - 1;
    return DER_OK;
}

/* §11.1: TRUE is 0xFF. */
der_err der_get_bool(const der_tlv *t, bool *v)
{
    if (t->len != 1 || (t->val[0] != 0x00 && t->val[0] != 0xFF))
        return DER_ERR_BAD_BOOL;
    *v = t->val[0] != 0;
    return DER_OK;
}

der_err der_get_null(const der_tlv *t)
{
    return t->len == 0 ? DER_OK : DER_ERR_BAD_NULL;
}

/* §8.19.2: each subidentifier as few octets as possible (no leading 0x80);
 * the last octet of the contents ends a subidentifier. */
der_err der_get_oid(const der_tlv *t)
{
    const uint8_t *v = t->val;
    size_t n = t->len;
    if (n == 0 || (v[n - 1] & 0x80))
        return DER_ERR_BAD_OID;
    bool start = true;
    for (size_t i = 0; i < n; i++) {
        if (start && v[i] == 0x80)
            return DER_ERR_BAD_OID;
        start = !(v[i] & 0x80);
    }
    return DER_OK;
}

bool der_oid_eq(const der_tlv *t, const uint8_t *oid, size_t len)
{
    return t->len == len && memcmp(t->val, oid, len) == 0;
}

/* §8.6.2.2-3 and §11.2.1: unused bits 0..7, 0 for an empty string, and the
 * unused bits themselves zero. */
der_err der_get_bits(const der_tlv *t, const uint8_t **bits, size_t *nbytes, unsigned *unused)
{
    if (t->len == 0)
        return DER_ERR_BAD_BITSTRING;
    unsigned u = t->val[0];
    if (u > 7 || (t->len == 1 && u != 0))
        return DER_ERR_BAD_BITSTRING;
    if (t->len > 1 && (t->val[t->len - 1] & ((1u << u) - 1u)))
        return DER_ERR_BAD_BITSTRING;
    *bits = t->val + 1;
    *nbytes = t->len - 1;
    *unused = u;
    return DER_OK;
}

/* RFC 3629 well-formed UTF-8: no overlong forms, no surrogates, <= U+10FFFF. */
static bool utf8_ok(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t k;
        uint32_t cp, min;
        if ((c & 0xE0) == 0xC0) {
            k = 1, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            k = 2, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            k = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (n - i - 1 < k)
            return false;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + j] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += k + 1;
    }
    return true;
}

/* X.680 §41.4 Table 10: PrintableString repertoire. */
static bool printable_char(uint8_t c)
{
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
        return true;
    switch (c) {
    case ' ':
    case '\'':
    case '(':
    case ')':
    case '+':
    case ',':
    case '-':
    case '.':
    case '/':
    case ':':
    case '=':
    case '?':
        return true;
    default:
        return false;
    }
}

/* DER_OK, DER_ERR_BAD_STRING, or DER_ERR_UNEXPECTED_TAG for a type this
 * module does not know. */
static der_err string_check(unsigned type, const uint8_t *s, size_t n)
{
    size_t i;
    switch (type) {
    case DER_UTF8_STRING:
        return utf8_ok(s, n) ? DER_OK : DER_ERR_BAD_STRING;
    case DER_NUMERIC_STRING:
        for (i = 0; i < n; i++)
            if (!((s[i] >= '0' && s[i] <= '9') || s[i] == ' '))
                return DER_ERR_BAD_STRING;
        return DER_OK;
    case DER_PRINTABLE_STRING:
        for (i = 0; i < n; i++)
            if (!printable_char(s[i]))
                return DER_ERR_BAD_STRING;
        return DER_OK;
    case DER_T61_STRING: /* Teletex: any octets; legacy, not interpreted */
        return DER_OK;
    case DER_IA5_STRING:
        for (i = 0; i < n; i++)
            if (s[i] & 0x80)
                return DER_ERR_BAD_STRING;
        return DER_OK;
    case DER_VISIBLE_STRING:
        for (i = 0; i < n; i++)
            if (s[i] < 0x20 || s[i] > 0x7E)
                return DER_ERR_BAD_STRING;
        return DER_OK;
    case DER_BMP_STRING: /* UCS-2 big-endian: no surrogate code units */
        if (n % 2)
            return DER_ERR_BAD_STRING;
        for (i = 0; i < n; i += 2)
            if (s[i] >= 0xD8 && s[i] <= 0xDF)
                return DER_ERR_BAD_STRING;
        return DER_OK;
    case DER_UNIVERSAL_STRING: /* UCS-4 big-endian */
        if (n % 4)
            return DER_ERR_BAD_STRING;
        for (i = 0; i < n; i += 4) {
            uint32_t cp = (uint32_t)s[i] << 24 | (uint32_t)s[i + 1] << 16 |
                          (uint32_t)s[i + 2] << 8 | s[i + 3];
            if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
                return DER_ERR_BAD_STRING;
        }
        return DER_OK;
    default:
        return DER_ERR_UNEXPECTED_TAG;
    }
}

der_err der_get_string_as(const der_tlv *t, unsigned type, const uint8_t **s, size_t *len)
{
    der_err e = string_check(type, t->val, t->len);
    if (e != DER_OK)
        return e;
    *s = t->val;
    *len = t->len;
    return DER_OK;
}

der_err der_get_string(const der_tlv *t, const uint8_t **s, size_t *len)
{
    return der_get_string_as(t, t->tag, s, len);
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
 * days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static bool is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned days_in_month(int64_t y, unsigned m)
{
    static const uint8_t dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return dim[m - 1] + (m == 2 && is_leap(y));
}

/* Two decimal digits at s, or -1. */
static int two_digits(const uint8_t *s)
{
    if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9')
        return -1;
    return (s[0] - '0') * 10 + (s[1] - '0');
}

/* §11.7 (GeneralizedTime) and §11.8 (UTCTime) with RFC 5280 §4.1.2.5.1/.2:
 * 'Z' always, seconds always, no fractional seconds. Leap seconds (60) are
 * rejected: RFC 5280 times are POSIX-style. */
der_err der_get_time(const der_tlv *t, int64_t *secs)
{
    const uint8_t *s = t->val;
    int64_t year;
    size_t i;
    if (t->tag == DER_UTC_TIME) {
        if (t->len != 13)
            return DER_ERR_BAD_TIME;
        int yy = two_digits(s);
        if (yy < 0)
            return DER_ERR_BAD_TIME;
        year = yy >= 50 ? 1900 + yy : 2000 + yy;
        i = 2;
    } else if (t->tag == DER_GENERALIZED_TIME) {
        if (t->len != 15)
            return DER_ERR_BAD_TIME;
        int hi = two_digits(s), lo = two_digits(s + 2);
        if (hi < 0 || lo < 0)
            return DER_ERR_BAD_TIME;
        year = hi * 100 + lo;
        i = 4;
    } else {
        return DER_ERR_UNEXPECTED_TAG;
    }
    int mo = two_digits(s + i), d = two_digits(s + i + 2), h = two_digits(s + i + 4),
        mi = two_digits(s + i + 6), se = two_digits(s + i + 8);
    if (s[i + 10] != 'Z')
        return DER_ERR_BAD_TIME;
    if (mo < 1 || mo > 12 || d < 1 || h < 0 || h > 23 || mi < 0 || mi > 59 || se < 0 || se > 59)
        return DER_ERR_BAD_TIME;
    if ((unsigned)d > days_in_month(year, (unsigned)mo))
        return DER_ERR_BAD_TIME;
    *secs = days_from_civil(year, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + se;
    return DER_OK;
}

/* -------------------------------------------------- cursor conveniences */

/* Read the next TLV with `tag` into *t without moving the cursor; the caller
 * commits with c->p = t->raw + t->rawlen once the contents check out. */
static der_err peek_expect(const der_cur *c, unsigned tag, der_tlv *t)
{
    der_err e = parse_tlv(c->p, c->end, t);
    if (e != DER_OK)
        return e;
    return t->tag == tag ? DER_OK : DER_ERR_UNEXPECTED_TAG;
}

static void commit(der_cur *c, const der_tlv *t)
{
    c->p = t->raw + t->rawlen;
}

der_err der_read_int_mag(der_cur *c, const uint8_t **mag, size_t *len)
{
    der_tlv t;
    der_err e = peek_expect(c, DER_INTEGER, &t);
    if (e == DER_OK && (e = der_get_uint_mag(&t, mag, len)) == DER_OK)
        commit(c, &t);
    return e;
}

der_err der_read_uint64(der_cur *c, uint64_t *v)
{
    der_tlv t;
    der_err e = peek_expect(c, DER_INTEGER, &t);
    if (e == DER_OK && (e = der_get_uint64(&t, v)) == DER_OK)
        commit(c, &t);
    return e;
}

der_err der_read_int64(der_cur *c, int64_t *v)
{
    der_tlv t;
    der_err e = peek_expect(c, DER_INTEGER, &t);
    if (e == DER_OK && (e = der_get_int64(&t, v)) == DER_OK)
        commit(c, &t);
    return e;
}

der_err der_read_bool(der_cur *c, bool *v)
{
    der_tlv t;
    der_err e = peek_expect(c, DER_BOOLEAN, &t);
    if (e == DER_OK && (e = der_get_bool(&t, v)) == DER_OK)
        commit(c, &t);
    return e;
}

der_err der_read_null(der_cur *c)
{
    der_tlv t;
    der_err e = peek_expect(c, DER_NULL, &t);
    if (e == DER_OK && (e = der_get_null(&t)) == DER_OK)
        commit(c, &t);
    return e;
}

der_err der_read_oid(der_cur *c, der_tlv *out)
{
    der_tlv t;
    der_err e = peek_expect(c, DER_OID, &t);
    if (e == DER_OK && (e = der_get_oid(&t)) == DER_OK) {
        commit(c, &t);
        *out = t;
    }
    return e;
}

der_err der_read_bits(der_cur *c, const uint8_t **bits, size_t *nbytes, unsigned *unused)
{
    der_tlv t;
    der_err e = peek_expect(c, DER_BIT_STRING, &t);
    if (e == DER_OK && (e = der_get_bits(&t, bits, nbytes, unused)) == DER_OK)
        commit(c, &t);
    return e;
}

der_err der_read_octets(der_cur *c, const uint8_t **p, size_t *len)
{
    der_tlv t;
    der_err e = peek_expect(c, DER_OCTET_STRING, &t);
    if (e == DER_OK) {
        commit(c, &t);
        *p = t.val;
        *len = t.len;
    }
    return e;
}

der_err der_read_string(der_cur *c, unsigned *tag, const uint8_t **s, size_t *len)
{
    der_tlv t;
    der_err e = parse_tlv(c->p, c->end, &t);
    if (e == DER_OK && (e = der_get_string(&t, s, len)) == DER_OK) {
        commit(c, &t);
        *tag = t.tag;
    }
    return e;
}

der_err der_read_time(der_cur *c, int64_t *secs)
{
    der_tlv t;
    der_err e = parse_tlv(c->p, c->end, &t);
    if (e == DER_OK && (e = der_get_time(&t, secs)) == DER_OK)
        commit(c, &t);
    return e;
}

/* ------------------------------------------------------------ validator */

/* Universal tag numbers whose DER encoding must be constructed (EXTERNAL,
 * EMBEDDED PDV, SEQUENCE, SET, CHARACTER STRING) and those that must be
 * primitive (§8, §10.2: no constructed strings in DER). */
#define U_CONSTRUCTED ((1u << 8) | (1u << 11) | (1u << 16) | (1u << 17) | (1u << 29))
#define U_PRIMITIVE (0x7FFFFFFEu & ~U_CONSTRUCTED & ~(1u << 15))

static der_err check_universal(const der_tlv *t)
{
    unsigned num = t->tag & 0x1F;
    bool cons = (t->tag & DER_CONSTRUCTED) != 0;
    if (num == 0x1F) /* universal high tag numbers: unknown types, any form */
        return DER_OK;
    if (num == 0 || num == 15) /* end-of-contents (BER only), reserved */
        return DER_ERR_BAD_TAG;
    if (cons ? !(U_CONSTRUCTED & (1u << num)) : !(U_PRIMITIVE & (1u << num)))
        return DER_ERR_BAD_TAG;
    if (cons)
        return DER_OK;
    bool b;
    int64_t s;
    const uint8_t *p;
    size_t n;
    unsigned u;
    switch (t->tag) {
    case DER_BOOLEAN:
        return der_get_bool(t, &b);
    case DER_INTEGER:
    case DER_ENUMERATED:
        return der_get_int(t, &b);
    case DER_BIT_STRING:
        return der_get_bits(t, &p, &n, &u);
    case DER_NULL:
        return der_get_null(t);
    case DER_OID:
        return der_get_oid(t);
    case DER_UTF8_STRING:
    case DER_NUMERIC_STRING:
    case DER_PRINTABLE_STRING:
    case DER_T61_STRING:
    case DER_IA5_STRING:
    case DER_VISIBLE_STRING:
    case DER_BMP_STRING:
    case DER_UNIVERSAL_STRING:
        return der_get_string(t, &p, &n);
    case DER_UTC_TIME:
    case DER_GENERALIZED_TIME:
        return der_get_time(t, &s);
    default:
        return DER_OK;
    }
}

der_err der_validate(const uint8_t *buf, size_t len, unsigned max_depth)
{
    const uint8_t *ends[DER_VALIDATE_MAX_DEPTH];
    const uint8_t *p = buf, *end = buf + len;
    unsigned depth = 0; /* constructed values open around p */
    if (max_depth > DER_VALIDATE_MAX_DEPTH)
        max_depth = DER_VALIDATE_MAX_DEPTH;
    for (;;) {
        while (depth > 0 && p == ends[depth - 1])
            depth--;
        if (depth == 0 && p != buf)
            return p == end ? DER_OK : DER_ERR_TRAILING;
        der_tlv t;
        der_err e = parse_tlv(p, depth ? ends[depth - 1] : end, &t);
        if (e != DER_OK)
            return e;
        if (depth + 1 > max_depth)
            return DER_ERR_TOO_DEEP;
        if (der_tag_class(t.tag) == DER_CLASS_UNIVERSAL && (e = check_universal(&t)) != DER_OK)
            return e;
        if (der_tag_constructed(t.tag) && t.len > 0) {
            ends[depth++] = t.val + t.len;
            p = t.val;
        } else {
            p = t.val + t.len;
        }
    }
}

/* ================================================================ writer */

size_t der_tag_size(unsigned tag)
{
    return 1 + (tag > 0xFF) + (tag > 0xFFFF) + (tag > 0xFFFFFF);
}

size_t der_len_size(size_t len)
{
    if (len < 0x80)
        return 1;
    size_t n = 1;
    while (len) {
        n++;
        len >>= 8;
    }
    return n;
}

size_t der_hdr_size(unsigned tag, size_t len)
{
    return der_tag_size(tag) + der_len_size(len);
}

void der_w_init(der_w *w, uint8_t *buf, size_t cap)
{
    w->buf = buf;
    w->cap = buf ? cap : 0;
    w->pos = 0;
    w->err = DER_OK;
    w->depth = 0;
}

/* A non-overflow error replaces an overflow, so DER_ERR_OVERFLOW from
 * der_w_finish() means the counted size is exact. */
static void w_fail(der_w *w, der_err e)
{
    if (w->err == DER_OK || w->err == DER_ERR_OVERFLOW)
        w->err = e;
}

/* The one place bytes are written. After an overflow nothing is written but
 * pos keeps counting. */
static inline void w_put(der_w *w, const void *p, size_t n)
{
    if (w->err == DER_OK) {
        if (n > w->cap - w->pos)
            w->err = DER_ERR_OVERFLOW;
        else if (n)
            memcpy(w->buf + w->pos, p, n);
    }
    w->pos += n;
}

/* Length octets of `len` into out[]; returns their count (1..5). */
static size_t enc_len(uint8_t *out, size_t len)
{
    if (len < 0x80) {
        out[0] = (uint8_t)len;
        return 1;
    }
    size_t n = der_len_size(len) - 1;
    out[0] = (uint8_t)(0x80 | n);
    for (size_t i = 0; i < n; i++)
        out[1 + i] = (uint8_t)(len >> (8 * (n - 1 - i)));
    return n + 1;
}

static size_t enc_tag(uint8_t *out, unsigned tag)
{
    size_t n = der_tag_size(tag);
    for (size_t i = 0; i < n; i++)
        out[i] = (uint8_t)(tag >> (8 * (n - 1 - i)));
    return n;
}

void der_w_hdr(der_w *w, unsigned tag, size_t len)
{
    uint8_t h[4 + 5];
    if (tag <= 0xFF && len < 0x80 && w->err == DER_OK && w->cap - w->pos >= 2) {
        /* Fast path: most headers in a certificate are two octets. */
        w->buf[w->pos] = (uint8_t)tag;
        w->buf[w->pos + 1] = (uint8_t)len;
        w->pos += 2;
        return;
    }
    if (len > 0xFFFFFFFFu) { /* beyond what any DER reader here accepts */
        w_fail(w, DER_ERR_BAD_ARG);
        return;
    }
    size_t n = enc_tag(h, tag);
    n += enc_len(h + n, len);
    w_put(w, h, n);
}

void der_w_raw(der_w *w, const void *p, size_t n)
{
    w_put(w, p, n);
}

void der_w_tlv(der_w *w, unsigned tag, const void *p, size_t n)
{
    der_w_hdr(w, tag, n);
    w_put(w, p, n);
}

/* Front to back: begin writes the tag and reserves ONE length octet; end
 * patches it in place when the contents are < 128 octets, and otherwise
 * moves the contents up by the 1..4 extra length octets. Small values (most
 * of a certificate) cost nothing extra; each large one costs one memmove of
 * its contents. */
void der_w_begin(der_w *w, unsigned tag)
{
    uint8_t h[5];
    if (w->depth >= DER_W_MAX_DEPTH) {
        w_fail(w, DER_ERR_TOO_DEEP);
        w->depth++; /* keep begin/end balanced for the caller */
        return;
    }
    if (tag <= 0xFF && w->err == DER_OK && w->cap - w->pos >= 2) {
        w->buf[w->pos] = (uint8_t)tag;
        w->buf[w->pos + 1] = 0; /* reserved length octet */
        w->pos += 2;
    } else {
        size_t n = enc_tag(h, tag);
        h[n++] = 0;
        w_put(w, h, n);
    }
    w->open[w->depth++] = w->pos - 1;
}

void der_w_end(der_w *w)
{
    if (w->depth == 0) {
        w_fail(w, DER_ERR_UNBALANCED);
        return;
    }
    if (--w->depth >= DER_W_MAX_DEPTH)
        return;
    if (w->err != DER_OK && w->err != DER_ERR_OVERFLOW)
        return;
    size_t lo = w->open[w->depth];
    size_t len = w->pos - lo - 1;
    if (len < 0x80) {
        if (w->err == DER_OK)
            w->buf[lo] = (uint8_t)len;
        return;
    }
    if (len > 0xFFFFFFFFu) {
        w_fail(w, DER_ERR_BAD_ARG);
        return;
    }
    size_t extra = der_len_size(len) - 1;
    if (w->err == DER_OK) {
        if (extra > w->cap - w->pos) {
            w->err = DER_ERR_OVERFLOW;
        } else {
            memmove(w->buf + lo + 1 + extra, w->buf + lo + 1, len);
            enc_len(w->buf + lo, len);
        }
    }
    w->pos += extra;
}

der_err der_w_finish(const der_w *w, size_t *len)
{
    *len = w->pos;
    if (w->err != DER_OK)
        return w->err;
    return w->depth ? DER_ERR_UNBALANCED : DER_OK;
}

void der_w_int_mag(der_w *w, const uint8_t *mag, size_t n)
{
    static const uint8_t zero = 0;
    while (n && mag[0] == 0) {
        mag++;
        n--;
    }
    if (n == 0) {
        der_w_tlv(w, DER_INTEGER, &zero, 1);
        return;
    }
    bool pad = (mag[0] & 0x80) != 0;
    der_w_hdr(w, DER_INTEGER, n + pad);
    if (pad)
        w_put(w, &zero, 1);
    w_put(w, mag, n);
}

void der_w_uint64(der_w *w, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (56 - 8 * i));
    der_w_int_mag(w, b, 8);
}

void der_w_int64(der_w *w, int64_t v)
{
    uint8_t b[8];
    uint64_t u = (uint64_t)v;
    size_t i = 0;
    for (int k = 0; k < 8; k++)
        b[k] = (uint8_t)(u >> (56 - 8 * k));
    /* Drop octets that only repeat the sign (§8.3.2). */
    while (i < 7 && ((b[i] == 0x00 && !(b[i + 1] & 0x80)) || (b[i] == 0xFF && (b[i + 1] & 0x80))))
        i++;
    der_w_tlv(w, DER_INTEGER, b + i, 8 - i);
}

void der_w_bool(der_w *w, bool v)
{
    uint8_t b[3] = {DER_BOOLEAN, 1, v ? 0xFF : 0x00};
    w_put(w, b, 3);
}

void der_w_null(der_w *w)
{
    static const uint8_t b[2] = {DER_NULL, 0};
    w_put(w, b, 2);
}

void der_w_oid(der_w *w, const uint8_t *oid, size_t n)
{
    der_w_tlv(w, DER_OID, oid, n);
}

void der_w_octets(der_w *w, const void *p, size_t n)
{
    der_w_tlv(w, DER_OCTET_STRING, p, n);
}

void der_w_bits_unused(der_w *w, const void *p, size_t n, unsigned unused)
{
    const uint8_t *b = p;
    if (unused > 7 || (n == 0 && unused) || (n && (b[n - 1] & ((1u << unused) - 1u)))) {
        w_fail(w, DER_ERR_BAD_ARG);
        return;
    }
    uint8_t u = (uint8_t)unused;
    der_w_hdr(w, DER_BIT_STRING, n + 1);
    w_put(w, &u, 1);
    w_put(w, p, n);
}

void der_w_bits(der_w *w, const void *p, size_t n)
{
    der_w_bits_unused(w, p, n, 0);
}

void der_w_named_bits(der_w *w, const uint8_t *p, size_t n)
{
    while (n && p[n - 1] == 0)
        n--;
    unsigned unused = 0;
    if (n)
        while (!(p[n - 1] & (1u << unused)))
            unused++;
    der_w_bits_unused(w, p, n, unused);
}

void der_w_string(der_w *w, unsigned tag, const void *s, size_t n)
{
    der_err e = string_check(tag, s, n);
    if (e != DER_OK) {
        w_fail(w, e == DER_ERR_UNEXPECTED_TAG ? DER_ERR_BAD_ARG : e);
        return;
    }
    der_w_tlv(w, tag, s, n);
}

/* Seconds since the epoch of 0000-01-01, 1950-01-01, 2050-01-01, 10000-01-01. */
#define T_Y0 (-62167219200LL)
#define T_Y1950 (-631152000LL)
#define T_Y2050 (2524608000LL)
#define T_Y10000 (253402300800LL)

static inline void put2(uint8_t *o, unsigned v)
{
    o[0] = (uint8_t)('0' + v / 10);
    o[1] = (uint8_t)('0' + v % 10);
}

/* YYYYMMDDHHMMSSZ into o[15]; t must lie in years 0..9999. */
static void fmt_time(uint8_t o[15], int64_t t)
{
    int64_t days = t / 86400, s = t % 86400, y;
    unsigned m, d;
    if (s < 0) {
        s += 86400;
        days--;
    }
    civil_from_days(days, &y, &m, &d);
    put2(o, (unsigned)(y / 100));
    put2(o + 2, (unsigned)(y % 100));
    put2(o + 4, m);
    put2(o + 6, d);
    put2(o + 8, (unsigned)(s / 3600));
    put2(o + 10, (unsigned)(s / 60 % 60));
    put2(o + 12, (unsigned)(s % 60));
    o[14] = 'Z';
}

void der_w_utctime(der_w *w, int64_t t)
{
    uint8_t o[15];
    if (t < T_Y1950 || t >= T_Y2050) {
        w_fail(w, DER_ERR_BAD_ARG);
        return;
    }
    fmt_time(o, t);
    der_w_tlv(w, DER_UTC_TIME, o + 2, 13);
}

void der_w_gentime(der_w *w, int64_t t)
{
    uint8_t o[15];
    if (t < T_Y0 || t >= T_Y10000) {
        w_fail(w, DER_ERR_BAD_ARG);
        return;
    }
    fmt_time(o, t);
    der_w_tlv(w, DER_GENERALIZED_TIME, o, 15);
}

/* RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050 (and,
 * necessarily, before 1950). */
void der_w_time(der_w *w, int64_t t)
{
    if (t >= T_Y1950 && t < T_Y2050)
        der_w_utctime(w, t);
    else
        der_w_gentime(w, t);
}
