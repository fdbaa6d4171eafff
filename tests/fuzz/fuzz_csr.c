/* libFuzzer target for engine/csr (docs/csr.md).
 *
 * Properties checked on every input:
 *  - csr_parse() never reads outside the input (ASan) and returns only the
 *    codes it documents (never BAD_SIGNATURE or INTERNAL);
 *  - on CSR_OK every pointer of the csr lies inside the input;
 *  - csr_next_san() on a parsed CSR never fails (csr_parse validated the
 *    SAN), yields values inside the input and ends within size/2 steps;
 *  - csr_verify() never returns CSR_ERR_INTERNAL for a parsed CSR: only
 *    the input's own faults (INVALID_POINT, BAD_SIGNATURE) or OK.
 * The verifier is created once, as a worker thread would.
 */
#include "engine/csr/csr.h"

#include <stdlib.h>

static const uint8_t *lo, *hi;

static void inside(const void *p, size_t n)
{
    const uint8_t *b = p;
    if (n > 0 && (b < lo || b > hi || n > (size_t)(hi - b)))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static csr_verifier *v;
    csr c;
    if (v == NULL && (v = csr_verifier_new()) == NULL)
        abort();
    csr_err e = csr_parse(data, size, &c);
    if (e == CSR_ERR_BAD_SIGNATURE || e == CSR_ERR_INTERNAL || e >= CSR_ERR__MAX)
        abort();
    if (e != CSR_OK)
        return 0;
    lo = data, hi = data + size;
    inside(c.info.raw, c.info.rawlen);
    inside(c.subject.raw, c.subject.rawlen);
    inside(c.spki.raw, c.spki.rawlen);
    inside(c.pub, c.pub_len);
    inside(c.sig, c.sig_len);
    if (c.key == CSR_KEY_RSA) {
        inside(c.rsa_n, c.rsa_n_len);
        inside(c.rsa_e, c.rsa_e_len);
    }
    if (c.has_ext_req)
        inside(c.ext_req.raw, c.ext_req.rawlen);

    csr_san_iter it = {0};
    for (size_t n = 0;; n++) {
        csr_san_type t;
        const uint8_t *val;
        size_t len;
        bool done;
        if (csr_next_san(&c, &it, &t, &val, &len, &done) != CSR_OK || n > size / 2)
            abort();
        if (done)
            break;
        inside(val, len);
    }

    e = csr_verify(v, &c);
    if (e != CSR_OK && e != CSR_ERR_INVALID_POINT && e != CSR_ERR_BAD_SIGNATURE)
        abort();
    return 0;
}
