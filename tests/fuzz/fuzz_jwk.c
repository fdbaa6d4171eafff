/* libFuzzer target for acme/jws: acme_jwk_import on any JSON text; an
 * accepted key must round-trip through acme_jwk_from_pkey with the same
 * RFC 7638 thumbprint. What is checked: tests/fuzz/jws_pipeline.h. */
#include "tests/fuzz/jws_pipeline.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 64 * 1024)
        return 0;
    (void)jwk_pipeline(data, size);
    return 0;
}
