/* libFuzzer target for acme/jws: a request body (or, after '!', the
 * protected header's JSON, the payload and the signature in clear) through
 * acme_jws_parse, the RFC 8555 checks, acme_jwk_import and the verifiers.
 * What runs and what is checked on every input: tests/fuzz/jws_pipeline.h.
 * Bodies are capped at 64 KiB, as the server caps them. */
#include "tests/fuzz/jws_pipeline.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static jws_pipeline_keys keys;
    if (keys.kid_key == NULL && jws_pipeline_keys_init(&keys) != 0)
        abort();
    if (size > 64 * 1024)
        return 0;
    (void)jws_pipeline(data, size, &keys);
    return 0;
}
