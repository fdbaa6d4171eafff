/* acme.c — names and small helpers of acme.h. */
#include "acme/acme.h"
#include "acme/jws.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static const char *const problem_names[ACME_P__MAX] = {
    [ACME_P_NONE] = "",
    [ACME_P_ACCOUNT_DOES_NOT_EXIST] = "accountDoesNotExist",
    [ACME_P_ALREADY_REVOKED] = "alreadyRevoked",
    [ACME_P_BAD_CSR] = "badCSR",
    [ACME_P_BAD_NONCE] = "badNonce",
    [ACME_P_BAD_PUBLIC_KEY] = "badPublicKey",
    [ACME_P_BAD_REVOCATION_REASON] = "badRevocationReason",
    [ACME_P_BAD_SIGNATURE_ALGORITHM] = "badSignatureAlgorithm",
    [ACME_P_CAA] = "caa",
    [ACME_P_COMPOUND] = "compound",
    [ACME_P_CONNECTION] = "connection",
    [ACME_P_DNS] = "dns",
    [ACME_P_EXTERNAL_ACCOUNT_REQUIRED] = "externalAccountRequired",
    [ACME_P_INCORRECT_RESPONSE] = "incorrectResponse",
    [ACME_P_INVALID_CONTACT] = "invalidContact",
    [ACME_P_MALFORMED] = "malformed",
    [ACME_P_ORDER_NOT_READY] = "orderNotReady",
    [ACME_P_RATE_LIMITED] = "rateLimited",
    [ACME_P_REJECTED_IDENTIFIER] = "rejectedIdentifier",
    [ACME_P_SERVER_INTERNAL] = "serverInternal",
    [ACME_P_TLS] = "tls",
    [ACME_P_UNAUTHORIZED] = "unauthorized",
    [ACME_P_UNSUPPORTED_CONTACT] = "unsupportedContact",
    [ACME_P_UNSUPPORTED_IDENTIFIER] = "unsupportedIdentifier",
    [ACME_P_USER_ACTION_REQUIRED] = "userActionRequired",
    [ACME_P_ALREADY_REPLACED] = "alreadyReplaced",
    [ACME_P_INVALID_PROFILE] = "invalidProfile",
    [ACME_P_AUTO_RENEWAL_CANCELED] = "autoRenewalCanceled",
    [ACME_P_AUTO_RENEWAL_EXPIRED] = "autoRenewalExpired",
    [ACME_P_AUTO_RENEWAL_CANCELLATION_INVALID] = "autoRenewalCancellationInvalid",
    [ACME_P_AUTO_RENEWAL_REVOCATION_NOT_SUPPORTED] = "autoRenewalRevocationNotSupported",
};

const char *acme_problem_name(acme_problem p)
{
    return (unsigned)p < ACME_P__MAX ? problem_names[p] : "serverInternal";
}

int acme_problem_http_status(acme_problem p)
{
    switch (p) {
    case ACME_P_UNAUTHORIZED:
    case ACME_P_AUTO_RENEWAL_CANCELED:
    case ACME_P_AUTO_RENEWAL_EXPIRED:
    case ACME_P_AUTO_RENEWAL_CANCELLATION_INVALID:
    case ACME_P_AUTO_RENEWAL_REVOCATION_NOT_SUPPORTED:
    case ACME_P_EXTERNAL_ACCOUNT_REQUIRED:
    case ACME_P_USER_ACTION_REQUIRED:
    case ACME_P_ORDER_NOT_READY:
        return 403;
    case ACME_P_ACCOUNT_DOES_NOT_EXIST:
        return 400; /* RFC 8555 §7.3.1 examples use 400 */
    case ACME_P_RATE_LIMITED:
        return 429;
    case ACME_P_SERVER_INTERNAL:
        return 500;
    case ACME_P_ALREADY_REPLACED:
        return 409;
    default:
        return 400;
    }
}

static const char *const status_names[ACME_S__MAX] = {
    "pending", "ready", "processing", "valid", "invalid", "deactivated", "expired", "revoked", "canceled",
};

const char *acme_status_name(acme_status s)
{
    return (unsigned)s < ACME_S__MAX ? status_names[s] : "invalid";
}

int acme_status_from_name(const char *s)
{
    for (int i = 0; i < ACME_S__MAX; i++)
        if (s && strcmp(s, status_names[i]) == 0)
            return i;
    return -1;
}

static const char *const chall_names[ACME_CH__MAX] = {"http-01", "dns-01", "tls-alpn-01", "tkauth-01"};

const char *acme_chall_type_name(acme_chall_type t)
{
    return (unsigned)t < ACME_CH__MAX ? chall_names[t] : "?";
}

int acme_chall_type_from_name(const char *s)
{
    for (int i = 0; i < ACME_CH__MAX; i++)
        if (s && strcmp(s, chall_names[i]) == 0)
            return i;
    return -1;
}

static const char *const ident_names[ACME_ID__MAX] = {"dns", "NfInstanceId"};

const char *acme_ident_type_name(acme_ident_type t)
{
    return (unsigned)t < ACME_ID__MAX ? ident_names[t] : "?";
}

int acme_ident_type_from_name(const char *s)
{
    for (int i = 0; i < ACME_ID__MAX; i++)
        if (s && strcmp(s, ident_names[i]) == 0)
            return i;
    return -1;
}

int acme_random_id(char *out, size_t n_octets)
{
    uint8_t b[32];
    /* Never starting with '-' or '_': an id is also a command-line argument
     * (certforge acme orders show ID) and must not read as an option. */
    do {
        if (n_octets > sizeof(b) || RAND_bytes(b, (int)n_octets) != 1)
            return -1;
        if (acme_b64url_encode(b, n_octets, out, acme_b64url_len(n_octets) + 1) == 0)
            return -1;
    } while (out[0] == '-' || out[0] == '_');
    return 0;
}

int64_t acme_now(void)
{
    return (int64_t)time(NULL);
}

void acme_time_rfc3339(int64_t t, char *buf, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int acme_time_parse(const char *s, int64_t *out)
{
    int y, mo, d, h, mi, sec, n = 0;
    if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 || n != 19)
        return -1;
    const char *p = s + n;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            return -1;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    long off = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om, m2 = 0;
        if (sscanf(p + 1, "%2d:%2d%n", &oh, &om, &m2) != 2 || m2 != 5 || oh > 23 || om > 59)
            return -1;
        off = (oh * 3600L + om * 60L) * (*p == '-' ? -1 : 1);
        p += 6;
    } else {
        return -1;
    }
    if (*p || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return -1;
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi,
                    .tm_sec = sec};
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return -1;
    *out = (int64_t)t - off;
    return 0;
}
