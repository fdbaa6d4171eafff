/* der.h — certforge's minimal DER reader and writer (ITU-T X.690 §8, §10, §11).
 *
 * Knows DER and nothing of certificates. No function allocates; the reader
 * never touches a byte outside the buffer it was given, the writer never
 * writes past the capacity it was given. See docs/der.md.
 *
 * Reader: a zero-copy cursor over a caller buffer. der_next() and friends
 * return a der_tlv whose pointers point into that buffer. On any error the
 * cursor is left unchanged.
 *
 * Writer: encodes front to back into a caller buffer. Constructed values are
 * opened with der_w_begin() and closed with der_w_end(); errors are sticky
 * and reported once by der_w_finish().
 */
#ifndef CF_DER_H
#define CF_DER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/compiler.h"

/* Error codes. DER_OK is 0; keep der_err_name()'s table parallel. */
typedef enum der_err {
    DER_OK = 0,
    DER_ERR_TRUNCATED,      /* input ends inside an identifier or length, or is empty */
    DER_ERR_BAD_TAG,        /* malformed/oversized high tag number, or wrong form for a
                               universal type (e.g. constructed INTEGER, primitive SEQUENCE) */
    DER_ERR_INDEFINITE_LEN, /* length octet 0x80: BER only (X.690 §10.1) */
    DER_ERR_NONMINIMAL_LEN, /* long form where short would do, or leading 0x00 (§10.1) */
    DER_ERR_LEN_TOO_LONG,   /* more than 4 length octets, or value beyond the buffer */
    DER_ERR_UNEXPECTED_TAG, /* tag differs from the one the caller expects */
    DER_ERR_TRAILING,       /* bytes left after the last expected element */
    DER_ERR_BAD_INT,        /* empty INTEGER, or redundant leading 0x00/0xFF (§8.3.2) */
    DER_ERR_INT_RANGE,      /* INTEGER valid but negative / too large for the target */
    DER_ERR_BAD_BOOL,       /* BOOLEAN not one octet 0x00 or 0xFF (§11.1) */
    DER_ERR_BAD_NULL,       /* NULL with content (§8.8.2) */
    DER_ERR_BAD_BITSTRING,  /* unused-bits octet > 7, != 0 when empty, or unused bits set
                               (§8.6.2, §11.2.1) */
    DER_ERR_BAD_OID,        /* empty, subidentifier with leading 0x80, or cut short (§8.19) */
    DER_ERR_BAD_STRING,     /* character outside the string type's repertoire */
    DER_ERR_BAD_TIME,       /* not YYMMDDHHMMSSZ / YYYYMMDDHHMMSSZ or a field out of range
                               (§11.7, §11.8, RFC 5280 §4.1.2.5) */
    DER_ERR_TOO_DEEP,       /* nesting beyond the caller's limit (reader) or DER_W_MAX_DEPTH */
    DER_ERR_OVERFLOW,       /* writer: output does not fit the capacity */
    DER_ERR_UNBALANCED,     /* writer: der_w_end() without begin, or finish with open values */
    DER_ERR_BAD_ARG,        /* writer: argument not encodable (e.g. time out of range) */
    DER_ERR__MAX
} der_err;

/* Short stable name for logs ("truncated", "indefinite-length", ...). */
const char *der_err_name(der_err e);

/* Identifier octets. A tag is the identifier octet(s) packed big-endian into
 * an unsigned: SEQUENCE = 0x30, [0] constructed = 0xA0, and a high tag
 * number such as [200] primitive context = 0x9F8148. High tag numbers take
 * at most DER_MAX_TAG_OCTETS subsequent octets (tag numbers < 2^21). */
#define DER_MAX_TAG_OCTETS 3

#define DER_CLASS_UNIVERSAL 0x00u
#define DER_CLASS_APPLICATION 0x40u
#define DER_CLASS_CONTEXT 0x80u
#define DER_CLASS_PRIVATE 0xC0u
#define DER_CONSTRUCTED 0x20u

#define DER_BOOLEAN 0x01u
#define DER_INTEGER 0x02u
#define DER_BIT_STRING 0x03u
#define DER_OCTET_STRING 0x04u
#define DER_NULL 0x05u
#define DER_OID 0x06u
#define DER_ENUMERATED 0x0Au
#define DER_UTF8_STRING 0x0Cu
#define DER_NUMERIC_STRING 0x12u
#define DER_PRINTABLE_STRING 0x13u
#define DER_T61_STRING 0x14u
#define DER_IA5_STRING 0x16u
#define DER_UTC_TIME 0x17u
#define DER_GENERALIZED_TIME 0x18u
#define DER_VISIBLE_STRING 0x1Au
#define DER_UNIVERSAL_STRING 0x1Cu
#define DER_BMP_STRING 0x1Eu
#define DER_SEQUENCE 0x30u
#define DER_SET 0x31u
/* Context-specific tags, n < 31: [n] IMPLICIT primitive, [n] constructed. */
#define DER_CTX(n) (DER_CLASS_CONTEXT | (unsigned)(n))
#define DER_CTX_CONS(n) (DER_CLASS_CONTEXT | DER_CONSTRUCTED | (unsigned)(n))

/* First identifier octet of a packed tag (class and constructed bits). */
static inline unsigned der_tag_first(unsigned tag)
{
    while (tag > 0xFFu)
        tag >>= 8;
    return tag;
}
static inline bool der_tag_constructed(unsigned tag)
{
    return (der_tag_first(tag) & DER_CONSTRUCTED) != 0;
}
static inline unsigned der_tag_class(unsigned tag)
{
    return der_tag_first(tag) & 0xC0u;
}

/* ---------------------------------------------------------------- reader */

typedef struct der_cur {
    const uint8_t *p, *end;
} der_cur;

typedef struct der_tlv {
    unsigned tag;       /* identifier octet(s), packed as above */
    const uint8_t *val; /* contents octets */
    size_t len;
    const uint8_t *raw; /* the whole TLV, header included: copy verbatim (e.g. an SPKI) */
    size_t rawlen;
} der_tlv;

static inline void der_cur_init(der_cur *c, const void *buf, size_t len)
{
    c->p = (const uint8_t *)buf;
    c->end = c->p + len;
}

/* Read the next TLV of any tag. */
CF_WUR der_err der_next(der_cur *c, der_tlv *t);
/* Read the next TLV; DER_ERR_UNEXPECTED_TAG unless its tag is `tag`. */
CF_WUR der_err der_expect(der_cur *c, unsigned tag, der_tlv *t);
/* Tag of the next TLV without consuming it (DER_ERR_TRUNCATED at the end). */
CF_WUR der_err der_peek_tag(const der_cur *c, unsigned *tag);
/* If the next TLV has tag `tag`, read it and set *present; at the end of the
 * cursor or on another tag, *present = false and nothing is consumed. */
CF_WUR der_err der_optional(der_cur *c, unsigned tag, der_tlv *t, bool *present);
/* Cursor over the contents of a constructed TLV (DER_ERR_UNEXPECTED_TAG if it
 * is primitive). For DER wrapped in an OCTET STRING use der_cur_init(). */
CF_WUR der_err der_enter(const der_tlv *t, der_cur *sub);
/* DER_OK when the cursor is exhausted, DER_ERR_TRAILING otherwise. */
CF_WUR der_err der_done(const der_cur *c);

/* Walk the one TLV that must fill buf[0..len) and everything inside it:
 * every length and tag is checked, every universal primitive type this
 * module knows (BOOLEAN, INTEGER, ENUMERATED, BIT STRING, NULL, OID, the
 * string types, UTCTime, GeneralizedTime) is checked by its typed reader,
 * and universal types must have their DER form (SEQUENCE/SET constructed,
 * all others primitive: X.690 §10.2). The outermost TLV is at depth 1;
 * deeper than max_depth (clamped to DER_VALIDATE_MAX_DEPTH) is
 * DER_ERR_TOO_DEEP. Iterative, no recursion. */
#define DER_VALIDATE_MAX_DEPTH 64
CF_WUR der_err der_validate(const uint8_t *buf, size_t len, unsigned max_depth);

/* Typed contents readers. der_get_* check the contents of a TLV already read
 * (ignoring its tag, so they serve IMPLICIT tags too); der_read_* read the
 * next TLV, require the universal tag, and check it. */

/* INTEGER: minimal two's complement (X.690 §8.3.2). */
CF_WUR der_err der_get_int(const der_tlv *t, bool *negative);
/* Non-negative INTEGER as big-endian magnitude: the contents without the
 * sign padding 0x00 (zero is the single octet 0x00). Points into the input. */
CF_WUR der_err der_get_uint_mag(const der_tlv *t, const uint8_t **mag, size_t *len);
CF_WUR der_err der_get_uint64(const der_tlv *t, uint64_t *v);
CF_WUR der_err der_get_int64(const der_tlv *t, int64_t *v);
CF_WUR der_err der_get_bool(const der_tlv *t, bool *v);
CF_WUR der_err der_get_null(const der_tlv *t);
/* OBJECT IDENTIFIER contents: non-empty, every subidentifier minimal. */
CF_WUR der_err der_get_oid(const der_tlv *t);
/* BIT STRING: bits[0..nbytes) are the octets after the unused-bits octet. */
CF_WUR der_err der_get_bits(const der_tlv *t, const uint8_t **bits, size_t *nbytes,
                            unsigned *unused);
/* Character string of type t->tag (UTF8, Numeric, Printable, T61, IA5,
 * Visible, BMP, Universal); its repertoire is checked. Other tags:
 * DER_ERR_UNEXPECTED_TAG. */
CF_WUR der_err der_get_string(const der_tlv *t, const uint8_t **s, size_t *len);
/* Same, but checks the contents against string type `type` (for IMPLICIT tags). */
CF_WUR der_err der_get_string_as(const der_tlv *t, unsigned type, const uint8_t **s, size_t *len);
/* UTCTime or GeneralizedTime (by t->tag) → seconds since 1970-01-01T00:00:00Z.
 * UTCTime years 50..99 are 19YY, 00..49 are 20YY (RFC 5280 §4.1.2.5.1). */
CF_WUR der_err der_get_time(const der_tlv *t, int64_t *secs);

CF_WUR der_err der_read_int_mag(der_cur *c, const uint8_t **mag, size_t *len);
CF_WUR der_err der_read_uint64(der_cur *c, uint64_t *v);
CF_WUR der_err der_read_int64(der_cur *c, int64_t *v);
CF_WUR der_err der_read_bool(der_cur *c, bool *v);
CF_WUR der_err der_read_null(der_cur *c);
CF_WUR der_err der_read_oid(der_cur *c, der_tlv *t);
CF_WUR der_err der_read_bits(der_cur *c, const uint8_t **bits, size_t *nbytes, unsigned *unused);
CF_WUR der_err der_read_octets(der_cur *c, const uint8_t **p, size_t *len);
/* Any of the string types; *tag receives which one. */
CF_WUR der_err der_read_string(der_cur *c, unsigned *tag, const uint8_t **s, size_t *len);
/* UTCTime or GeneralizedTime. */
CF_WUR der_err der_read_time(der_cur *c, int64_t *secs);

/* OID contents equal to oid[0..len) (the encoded contents, no tag/length). */
bool der_oid_eq(const der_tlv *t, const uint8_t *oid, size_t len);

/* ---------------------------------------------------------------- writer */

/* Identifier octets for a packed tag, length octets for a length, both. */
size_t der_tag_size(unsigned tag);
size_t der_len_size(size_t len);
size_t der_hdr_size(unsigned tag, size_t len);

#define DER_W_MAX_DEPTH 16

/* Fields are private; a der_w lives on the caller's stack. */
typedef struct der_w {
    uint8_t *buf;
    size_t cap;
    size_t pos; /* logical size so far: keeps counting after an overflow */
    der_err err;
    unsigned depth;
    size_t open[DER_W_MAX_DEPTH]; /* offset of each open value's reserved length octet */
} der_w;

void der_w_init(der_w *w, uint8_t *buf, size_t cap);
/* DER_OK and *len = bytes written; or the first error. After DER_ERR_OVERFLOW
 * *len is the size the whole encoding needs (when nothing else failed). */
CF_WUR der_err der_w_finish(const der_w *w, size_t *len);

/* Open a constructed value (tag should have DER_CONSTRUCTED set); close it. */
void der_w_begin(der_w *w, unsigned tag);
void der_w_end(der_w *w);

/* Pre-encoded bytes, copied verbatim (e.g. an SPKI TLV from a CSR). */
void der_w_raw(der_w *w, const void *p, size_t n);
/* Header for `len` contents octets the caller writes next (with der_w_raw). */
void der_w_hdr(der_w *w, unsigned tag, size_t len);
/* A primitive TLV with any tag and contents (no checks). */
void der_w_tlv(der_w *w, unsigned tag, const void *p, size_t n);

/* INTEGER from a big-endian magnitude: leading zeros stripped, 0x00 prepended
 * when the top bit is set; empty or all-zero magnitude encodes 0. */
void der_w_int_mag(der_w *w, const uint8_t *mag, size_t n);
void der_w_uint64(der_w *w, uint64_t v);
void der_w_int64(der_w *w, int64_t v);
void der_w_bool(der_w *w, bool v);
void der_w_null(der_w *w);
/* OID from its encoded contents (e.g. {0x2A,0x86,0x48,0xCE,0x3D,0x04,0x03,0x02}). */
void der_w_oid(der_w *w, const uint8_t *oid, size_t n);
void der_w_octets(der_w *w, const void *p, size_t n);
/* BIT STRING with 0 unused bits. */
void der_w_bits(der_w *w, const void *p, size_t n);
/* BIT STRING with `unused` unused bits, which must be zero (DER_ERR_BAD_ARG). */
void der_w_bits_unused(der_w *w, const void *p, size_t n, unsigned unused);
/* Named bit list BIT STRING (e.g. KeyUsage): trailing zero bits removed as
 * X.690 §11.2.2 requires; p[0] bit 7 is bit 0. */
void der_w_named_bits(der_w *w, const uint8_t *p, size_t n);
/* String of type `tag`; its repertoire is checked (DER_ERR_BAD_STRING). */
void der_w_string(der_w *w, unsigned tag, const void *s, size_t n);
/* Times in seconds since the epoch. der_w_time picks UTCTime for 1950..2049
 * and GeneralizedTime otherwise (RFC 5280 §4.1.2.5). DER_ERR_BAD_ARG when the
 * time does not fit the type (UTCTime 1950..2049, GeneralizedTime 0..9999). */
void der_w_utctime(der_w *w, int64_t t);
void der_w_gentime(der_w *w, int64_t t);
void der_w_time(der_w *w, int64_t t);

#endif
