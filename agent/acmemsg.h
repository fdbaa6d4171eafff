/* acmemsg.h — the ACME (RFC 8555) answers certforge-agent reads, parsed
 * into fixed-size structs: the directory (§7.1.1), orders (§7.1.3),
 * authorizations and challenges (§7.1.4, §8), problem documents (§6.7)
 * and RFC 9773 renewalInfo. The server is trusted for what it decides but
 * not for well-formedness: sizes are bounded, types checked, URLs must be
 * https://. tests/fuzz/fuzz_agent_acme.c runs every parser. */
#ifndef CF_AGENT_ACMEMSG_H
#define CF_AGENT_ACMEMSG_H

#include <stddef.h>
#include <stdint.h>

#define AM_WUR __attribute__((warn_unused_result))
#define AM_URL 512
#define AM_MAX_AUTHZ 65
#define AM_MAX_CHALL 8

typedef struct am_directory {
    char new_nonce[AM_URL], new_account[AM_URL], new_order[AM_URL];
    char renewal_info[AM_URL]; /* "" when the server has no ARI */
    int has_profiles;          /* meta.profiles present */
    /* RFC 8739 §3.1.1 meta.auto-renewal: present (STAR offered), its
     * min-lifetime and max-duration in seconds (0: not given) */
    int has_star;
    int64_t star_min_lifetime, star_max_duration;
} am_directory;

/* acme_status values (acme/acme.h); -1 unknown. */
typedef struct am_order {
    int status;
    char finalize[AM_URL];
    char certificate[AM_URL]; /* "" until valid */
    char star_certificate[AM_URL]; /* RFC 8739 §3.1.4: a valid STAR order's; "" otherwise */
    char authz[AM_MAX_AUTHZ][AM_URL];
    unsigned n_authz;
    char error_type[96], error_detail[256]; /* "" when absent */
} am_order;

typedef struct am_chall {
    char type[24];
    char url[AM_URL];
    char token[128]; /* "" when absent (tkauth-01 has one too) */
    int status;
    char error_type[96], error_detail[256];
} am_chall;

typedef struct am_authz {
    char id_type[24];  /* "dns", "NfInstanceId" */
    char id_value[256];
    int status;
    int wildcard;
    am_chall ch[AM_MAX_CHALL];
    unsigned n_ch;
} am_authz;

AM_WUR int am_directory_parse(const char *body, size_t len, am_directory *out, char *why, size_t whylen);
AM_WUR int am_order_parse(const char *body, size_t len, am_order *out, char *why, size_t whylen);
AM_WUR int am_authz_parse(const char *body, size_t len, am_authz *out, char *why, size_t whylen);
/* type without the urn:ietf:params:acme:error: prefix ("badNonce"); 0 or -1. */
AM_WUR int am_problem_parse(const char *body, size_t len, char *type, size_t tlen, char *detail, size_t dlen);
/* RFC 9773 §4.2: suggestedWindow start and end (RFC 3339), start < end. */
AM_WUR int am_renewal_info_parse(const char *body, size_t len, int64_t *start, int64_t *end);

/* The challenge of type `type` in a, or NULL. */
const am_chall *am_authz_find(const am_authz *a, const char *type);

/* A header value "Retry-After: N" (seconds; HTTP-date not used by ACME
 * servers we know): N clamped to [0, max], or dflt when absent/bad. */
unsigned am_retry_after(const char *v, unsigned dflt, unsigned max);

#endif
