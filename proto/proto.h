/* proto.h — certforge's wire codec, shared by the daemon and libcertforge.
 * docs/protocol.md is the contract; this header is its C face.
 *
 * Frame = 16-octet header + body:
 *   u32 BE length (octets after these 4) | u8 version (1) | u8 op |
 *   u16 BE flags (0) | u64 BE request id | body
 * Request body:  fields {u16 BE tag, u16 BE length, value}.
 * Response body: u16 BE status (cf_status) | u32 BE detail | fields.
 *
 * Nothing here allocates. Decoders are zero-copy: every pointer they fill
 * points into the frame, which must outlive the decoded struct. Encoders
 * write into a caller buffer and return the frame size; a result larger
 * than the capacity is the size needed (the buffer holds nothing useful),
 * 0 means the message cannot be encoded (argument out of range: see each
 * field's limits in docs/protocol.md). Whatever an encoder accepts, the
 * matching decoder accepts.
 */
#ifndef CF_PROTO_H
#define CF_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/compiler.h"
#include "common/issue.h"
#include "common/sigalg.h"
#include "common/status.h"

#define PROTO_VERSION 1
#define PROTO_HDR_LEN 16              /* whole header, length prefix included */
#define PROTO_MAX_FRAME_DEFAULT 65536 /* whole frame, header included */
#define PROTO_MIN_FRAME_CAP 64        /* smallest max_frame a peer may configure */

/* Repeatable response fields: most a decoder accepts (and an encoder emits). */
#define PROTO_MAX_CHAIN 8
#define PROTO_MAX_KV 64
#define PROTO_MAX_KEYS 64

/* Operations. Numbers are on the wire: never renumber, append before
 * PROTO_OP__MAX. Names: proto_op_name(). */
typedef enum proto_op {
    PROTO_OP_NONE = 0, /* never valid on the wire */
    PROTO_OP_ISSUE = 1,
    PROTO_OP_SIGN = 2,
    PROTO_OP_REVOKE = 3,
    PROTO_OP_CRL = 4,
    PROTO_OP_STATUS = 5,
    PROTO_OP_KEYS = 6,
    PROTO_OP__MAX
} proto_op;

const char *proto_op_name(unsigned op); /* "ISSUE", ...; "UNKNOWN_OP" outside the enum */

/* Field tags. Tags 0x8000-0xFFFF are "ignorable": a decoder skips them, so a
 * newer peer may add optional fields there. Any other tag a decoder does not
 * know for the frame's op makes the frame BAD_FRAME. */
enum {
    /* ISSUE request */
    PROTO_F_PROFILE = 0x0001,        /* UTF-8, required, once */
    PROTO_F_CSR = 0x0002,            /* PKCS#10 DER, required, once */
    PROTO_F_NF_INSTANCE_ID = 0x0003, /* UTF-8, once */
    PROTO_F_FQDN = 0x0004,           /* UTF-8, up to CF_MAX_FQDNS times */
    PROTO_F_NF_TYPE = 0x0005,        /* UTF-8, up to CF_MAX_NF_TYPES times */
    PROTO_F_VALIDITY = 0x0006,       /* u32 BE seconds, exactly 4 octets, once */
    PROTO_F_REQUESTER = 0x0007,      /* UTF-8, once (ISSUE, SIGN, REVOKE) */
    /* SIGN request */
    PROTO_F_KEY_NAME = 0x0008,  /* UTF-8, required, once */
    PROTO_F_MECHANISM = 0x0009, /* u16 BE, exactly 2 octets, required, once */
    PROTO_F_DATA = 0x000A,      /* octets, required, once */
    /* REVOKE request */
    PROTO_F_REVOKE_SERIAL = 0x000B, /* octets 1-20, required, once */
    PROTO_F_REASON = 0x000C,        /* u8 CRLReason, exactly 1 octet, once */
    /* CRL request */
    PROTO_F_ISSUER = 0x000D, /* UTF-8, required, once */
    PROTO_F_FRESH = 0x000E,  /* u8 0 or 1, exactly 1 octet, once */
    PROTO_F_SHARD = 0x000F,  /* u16 BE CRL shard, exactly 2 octets, once (absent: 0) */
    /* responses */
    PROTO_F_MESSAGE = 0x0101, /* text for humans (any op), once */
    PROTO_F_CERT = 0x0102,    /* ISSUE: certificate DER, once */
    PROTO_F_CHAIN = 0x0103,   /* ISSUE: one issuer certificate DER, issuer first; repeatable */
    PROTO_F_SERIAL = 0x0104,  /* ISSUE: serial number octets (big-endian, 1-20), once */
    PROTO_F_KV = 0x0105,      /* STATUS: u8 klen | key | value (UTF-8 text); repeatable */
    PROTO_F_KEY = 0x0106,     /* KEYS: u8 nlen | name | u8 tlen | type | SPKI DER; repeatable */
    PROTO_F_SIGNATURE = 0x0107,  /* SIGN: the signature, once */
    PROTO_F_REVOKED_AT = 0x0108, /* REVOKE: u64 BE Unix seconds, once */
    PROTO_F_REVOKED_REASON = 0x0109, /* REVOKE: u8 CRLReason in force, once */
    PROTO_F_CRL = 0x010A,        /* CRL: CertificateList DER, once */
    PROTO_F_IGNORABLE_MIN = 0x8000,
};

/* Codec outcomes. Keep proto_err_name() parallel; append only. */
typedef enum proto_err {
    PROTO_OK = 0,
    PROTO_NEED_MORE,         /* frame_next: the buffer holds less than one frame */
    PROTO_ERR_TOO_LARGE,     /* length prefix beyond the receiver's max_frame */
    PROTO_ERR_BAD_VERSION,   /* version octet is not PROTO_VERSION */
    PROTO_ERR_MALFORMED,     /* length prefix below 12, or frame length inconsistent */
    PROTO_ERR_BAD_FLAGS,     /* flags not 0 */
    PROTO_ERR_UNKNOWN_OP,    /* op 0 or not in proto_op */
    PROTO_ERR_RESERVED_OP,   /* an op defined but not served (none at present) */
    PROTO_ERR_TRUNCATED,     /* body ends inside a field header or the status/detail */
    PROTO_ERR_FIELD_OVERRUN, /* a field's length runs past the body */
    PROTO_ERR_DUPLICATE,     /* a single-valued field twice */
    PROTO_ERR_TOO_MANY,      /* a repeatable field beyond its limit */
    PROTO_ERR_MISSING,       /* a required field absent */
    PROTO_ERR_UNKNOWN_FIELD, /* a non-ignorable tag not defined for this op */
    PROTO_ERR_BAD_VALUE,     /* a value of the wrong size or not valid UTF-8 / empty */
    PROTO_ERR__MAX
} proto_err;

const char *proto_err_name(proto_err e); /* "ok", "need-more", "too-large", ... */

/* The status a daemon answers a request that failed to decode with e:
 * UNSUPPORTED for BAD_VERSION, UNKNOWN_OP and RESERVED_OP, BAD_FRAME for
 * the rest. */
cf_status proto_err_status(proto_err e);
/* Whether the daemon must close the connection after answering: true for
 * every error except UNKNOWN_OP and RESERVED_OP (framing is intact). */
bool proto_err_closes(proto_err e);

typedef struct proto_hdr {
    uint32_t len; /* length prefix: octets after the first 4 */
    uint8_t version;
    uint8_t op; /* raw octet, may be outside proto_op */
    uint16_t flags;
    uint64_t id;
    bool complete; /* all 16 header octets were present: version/op/flags/id valid */
} proto_hdr;

/* Find the first frame in a stream buffer. Checks, in this order, as soon
 * as enough octets are there: length prefix < 12 → MALFORMED; 4 + prefix >
 * max_frame → TOO_LARGE (before the rest of the frame has arrived: nothing
 * is to be allocated for it); version → BAD_VERSION. On OK *frame_len is
 * 4 + prefix and buf[0 .. *frame_len) is the frame; the caller consumes it.
 * hdr is filled as far as the octets go (hdr->complete says whether the op
 * and id can be echoed in an answer). max_frame below PROTO_MIN_FRAME_CAP
 * counts as PROTO_MIN_FRAME_CAP. */
CF_WUR proto_err proto_frame_next(const uint8_t *buf, size_t len, size_t max_frame, proto_hdr *hdr,
                                  size_t *frame_len);

/* ------------------------------------------------------------ requests */

/* SIGN mechanisms: the wire numbers of common/sigalg.h (cf_sign_mech,
 * docs/protocol.md). "ecdsa-sha256", ...; NULL for a number not in the
 * table. */
const char *proto_sign_mech_name(unsigned mech);
/* The digest length the mechanism takes (32/48/64); 0 for Ed25519 (any
 * non-empty message) and outside the table. */
size_t proto_sign_mech_digest_len(unsigned mech);

typedef struct proto_sign_req {
    cf_str key;     /* non-empty */
    unsigned mech;  /* cf_sign_mech (the wire number) */
    const uint8_t *data;
    size_t data_len;
    cf_str requester;
} proto_sign_req;

typedef struct proto_revoke_req {
    const uint8_t *serial; /* 1-20 octets */
    size_t serial_len;
    unsigned reason; /* RFC 5280 CRLReason, 0-10 except 7 (absent: 0) */
    cf_str requester;
} proto_revoke_req;

typedef struct proto_crl_req {
    cf_str issuer; /* non-empty */
    bool fresh;    /* make a new CRL for this request */
    unsigned shard; /* the issuer's CRL shard, 0-65535 (0: the only CRL when unsharded) */
} proto_crl_req;

/* A decoded (or to-be-encoded) request: the member of its op holds the
 * fields (strings point into the frame, zero-copy); STATUS and KEYS carry
 * no fields. */
typedef struct proto_req {
    proto_hdr hdr; /* decode: filled; encode: only op and id are read */
    cf_issue_req issue;
    proto_sign_req sign;
    proto_revoke_req revoke;
    proto_crl_req crl;
} proto_req;

/* Decode one whole frame (as proto_frame_next delimited it) as a request.
 * On failure hdr is still filled when the header was readable, so the
 * caller can answer proto_err_status(e) echoing op and id. */
CF_WUR proto_err proto_req_decode(const uint8_t *frame, size_t len, proto_req *out);
/* The same for a frame proto_frame_next delimited (OK) with header hdr: the
 * header is not read again, only checked (flags, length). For a daemon that
 * reads each frame's header once. */
CF_WUR proto_err proto_req_decode_framed(const proto_hdr *hdr, const uint8_t *frame, size_t len,
                                         proto_req *out);
/* The frame r was decoded from (zero-copy: its fields point into it) was
 * copied from `from` to `to` (len octets): point every field into the
 * copy, without decoding it again. */
void proto_req_rebase(proto_req *r, const uint8_t *from, const uint8_t *to, size_t len);

CF_WUR size_t proto_req_encode(uint8_t *buf, size_t cap, const proto_req *r);
CF_WUR size_t proto_enc_issue_req(uint8_t *buf, size_t cap, uint64_t id, const cf_issue_req *r);
CF_WUR size_t proto_enc_status_req(uint8_t *buf, size_t cap, uint64_t id);
CF_WUR size_t proto_enc_keys_req(uint8_t *buf, size_t cap, uint64_t id);
CF_WUR size_t proto_enc_sign_req(uint8_t *buf, size_t cap, uint64_t id, const proto_sign_req *r);
CF_WUR size_t proto_enc_revoke_req(uint8_t *buf, size_t cap, uint64_t id,
                                   const proto_revoke_req *r);
CF_WUR size_t proto_enc_crl_req(uint8_t *buf, size_t cap, uint64_t id, cf_str issuer, bool fresh);
/* The same for one shard (shard 0 is written as no field, as above). */
CF_WUR size_t proto_enc_crl_shard_req(uint8_t *buf, size_t cap, uint64_t id, cf_str issuer,
                                      unsigned shard, bool fresh);

/* ----------------------------------------------------------- responses */

typedef struct proto_blob {
    const uint8_t *p;
    size_t len;
} proto_blob;

typedef struct proto_kv {
    cf_str key;   /* 1-255 octets UTF-8, e.g. "issued" */
    cf_str value; /* UTF-8 text, e.g. "12345" */
} proto_kv;

typedef struct proto_key {
    cf_str name;     /* 1-255 octets, the key's name in the config */
    cf_str type;     /* 1-255 octets, e.g. "ec-p256", "rsa-3072", "ed25519" */
    proto_blob spki; /* SubjectPublicKeyInfo DER, non-empty */
} proto_key;

/* A response. Fields not meaningful for op must be empty when encoding
 * (cert/chain/serial: ISSUE only; kv: STATUS only; keys: KEYS only; sig:
 * SIGN; revoked_at/reason: REVOKE; crl: CRL). An OK answer carries its op's
 * required field (cert, sig, revoked-at + reason, crl). */
typedef struct proto_resp {
    uint8_t op; /* echoes the request's op octet (any value) */
    uint64_t id;
    cf_status status; /* any u16 (a newer daemon may send statuses beyond CF_ST__MAX) */
    uint32_t detail;  /* BAD_CSR: the csr_err; HSM_FAILURE: the CK_RV; else 0 */
    cf_str message;   /* optional; not validated on decode (treat as untrusted text) */
    proto_blob cert;
    proto_blob chain[PROTO_MAX_CHAIN];
    unsigned n_chain;
    proto_blob serial;
    proto_kv kv[PROTO_MAX_KV];
    unsigned n_kv;
    proto_key keys[PROTO_MAX_KEYS];
    unsigned n_keys;
    proto_blob sig;     /* SIGN */
    bool has_revoked;   /* REVOKE: revoked_at and reason present (required when OK) */
    int64_t revoked_at; /* REVOKE: Unix seconds (0 .. 2^63-1) */
    unsigned reason;    /* REVOKE: CRLReason */
    proto_blob crl;     /* CRL */
} proto_resp;

/* Decode one whole frame as a response (zero-copy). */
CF_WUR proto_err proto_resp_decode(const uint8_t *frame, size_t len, proto_resp *out);

/* Encode any response. The message is copied with every octet that is not
 * part of valid UTF-8 (and every NUL) replaced by '?'. */
CF_WUR size_t proto_resp_encode(uint8_t *buf, size_t cap, const proto_resp *r);

/* Shorthands for the daemon. msg: NUL-terminated, may be NULL. */
CF_WUR size_t proto_enc_error(uint8_t *buf, size_t cap, uint8_t op, uint64_t id, cf_status st,
                              uint32_t detail, const char *msg);
CF_WUR size_t proto_enc_issue_ok(uint8_t *buf, size_t cap, uint64_t id, const uint8_t *cert,
                                 size_t cert_len, const proto_blob *chain, size_t n_chain,
                                 const uint8_t *serial, size_t serial_len);
CF_WUR size_t proto_enc_status_ok(uint8_t *buf, size_t cap, uint64_t id, const proto_kv *kv,
                                  size_t n);
CF_WUR size_t proto_enc_keys_ok(uint8_t *buf, size_t cap, uint64_t id, const proto_key *keys,
                                size_t n);
CF_WUR size_t proto_enc_sign_ok(uint8_t *buf, size_t cap, uint64_t id, const uint8_t *sig,
                                size_t sig_len);
CF_WUR size_t proto_enc_revoke_ok(uint8_t *buf, size_t cap, uint64_t id, int64_t revoked_at,
                                  unsigned reason);
CF_WUR size_t proto_enc_crl_ok(uint8_t *buf, size_t cap, uint64_t id, const uint8_t *crl,
                               size_t crl_len);

#endif
