/* reason.c — see reason.h. */
#include "common/reason.h"

#include <stddef.h>
#include <strings.h>

static const char *const reason_names[11] = {
    "unspecified",   "keyCompromise",        "cACompromise",    "affiliationChanged",
    "superseded",    "cessationOfOperation", "certificateHold", NULL,
    "removeFromCRL", "privilegeWithdrawn",   "aACompromise",
};

const char *cf_reason_name(int code)
{
    return code >= 0 && code < 11 ? reason_names[code] : NULL;
}

int cf_reason_code(const char *name)
{
    for (int i = 0; name && i < 11; i++)
        if (reason_names[i] && strcasecmp(reason_names[i], name) == 0)
            return i;
    return -1;
}
