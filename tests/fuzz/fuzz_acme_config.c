/* libFuzzer target for acme/config: any text must load or be refused with
 * a FILE:LINE message, never crash, leak or hang. Inputs with @include are
 * skipped (libconfig would open the named file). */
#include "acme/config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__lsan_default_suppressions(void);

/* libconfig 1.5 leaks its scanner's string buffer on an unterminated
 * string (see fuzz_config.c). */
const char *__lsan_default_suppressions(void)
{
    return "leak:libconfig.so\n";
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 64 * 1024)
        return 0;
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = 0;
    if (strstr(text, "include")) {
        free(text);
        return 0;
    }
    acme_cfg *c = NULL;
    char err[512];
    if (acme_cfg_load_string(text, "/nonexistent", &c, err, sizeof(err)) == 0) {
        /* what the loader promises of an accepted config */
        if (!c->base_url || strncmp(c->base_url, "https://", 8) != 0 || c->n_profiles == 0 ||
            c->default_profile >= c->n_profiles || c->threads == 0 || c->max_identifiers > 64 ||
            (!c->tls_cert_file && !c->tls_profile))
            abort();
        acme_cfg_free(c);
    } else if (strlen(err) == 0) {
        abort(); /* a refusal always says why */
    }
    free(text);
    return 0;
}
