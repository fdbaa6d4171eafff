/* signer_wire.h — the fixed-layout messages between certforged and its
 * signer process (signer_proc.c), one request and one answer per batch on
 * a stream socketpair. Both ends are the same build on the same machine:
 * native byte order, no versioning. The signer parses nothing else, and
 * checks every count, offset and length here against the limits below
 * before it uses or allocates anything.
 *
 *   request:  sgn_wire_hdr (magic SGN_WIRE_REQ), n × sgn_wire_req, payload
 *             (each request's input at payload + off, len octets)
 *   answer:   sgn_wire_hdr (magic SGN_WIRE_RES, same seq and n),
 *             n × sgn_wire_res, data (each signature at data + off, its
 *             message right after it)
 *   hello:    sgn_wire_hdr (magic SGN_WIRE_HELLO, n keys or 0 and a
 *             refusal), n × sgn_wire_key, the SPKIs (or the message)
 */
#ifndef CF_SIGNER_WIRE_H
#define CF_SIGNER_WIRE_H

#include <stdint.h>

#define SGN_WIRE_REQ 0x71726663u   /* "cfrq" */
#define SGN_WIRE_RES 0x73726663u   /* "cfrs" */
#define SGN_WIRE_HELLO 0x6f6c6866u /* "fhlo" */

/* Largest input of one request: a digest, an Ed25519 TBS (PIPE_TBS_MAX)
 * or an Ed25519 SIGN message (a wire field: at most 65,535 octets). */
#define SGN_WIRE_IN_MAX 65535u
/* Requests in one batch (pipeline.batch is at most 1,024). */
#define SGN_WIRE_N_MAX 1024u
/* Every message body, and the hello. */
#define SGN_WIRE_LEN_MAX (SGN_WIRE_N_MAX * (16u + 1024u) + 4u * SGN_WIRE_IN_MAX)
#define SGN_WIRE_MSG_MAX 160u

typedef struct sgn_wire_hdr {
    uint32_t magic;
    uint32_t seq; /* the answer echoes it */
    uint32_t n;   /* entries after the header */
    uint32_t len; /* octets after the header: entries and payload */
} sgn_wire_hdr;

typedef struct sgn_wire_req {
    uint32_t key;  /* index into cfg->keys */
    uint32_t mech; /* cf_sig_alg */
    uint32_t off;  /* into the payload */
    uint32_t len;
} sgn_wire_req;

typedef struct sgn_wire_res {
    uint32_t rv;     /* CK_RV: 0 signed */
    uint32_t off;    /* into the data: the signature, then the message */
    uint16_t siglen; /* at most CF_SIG_MAX */
    uint16_t msglen; /* at most SGN_WIRE_MSG_MAX, not NUL-terminated */
} sgn_wire_res;

typedef struct sgn_wire_key {
    uint32_t type; /* cf_key_type */
    uint32_t bits;
    uint32_t sessions;
    uint32_t threads;
    uint32_t spki_off; /* into the data after the entries */
    uint32_t spki_len;
} sgn_wire_key;

#endif
