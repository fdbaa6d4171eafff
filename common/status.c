#include "common/status.h"

static const char *const names[CF_ST__MAX] = {
    [CF_ST_OK] = "OK",
    [CF_ST_BAD_FRAME] = "BAD_FRAME",
    [CF_ST_BAD_CSR] = "BAD_CSR",
    [CF_ST_POLICY_DENIED] = "POLICY_DENIED",
    [CF_ST_UNKNOWN_PROFILE] = "UNKNOWN_PROFILE",
    [CF_ST_UNAUTHORIZED] = "UNAUTHORIZED",
    [CF_ST_BUSY] = "BUSY",
    [CF_ST_HSM_FAILURE] = "HSM_FAILURE",
    [CF_ST_INTERNAL] = "INTERNAL",
    [CF_ST_LEDGER_FAILURE] = "LEDGER_FAILURE",
    [CF_ST_NOT_FOUND] = "NOT_FOUND",
    [CF_ST_UNSUPPORTED] = "UNSUPPORTED",
};

const char *cf_status_name(cf_status s)
{
    return (unsigned)s < CF_ST__MAX && names[s] ? names[s] : "UNKNOWN_STATUS";
}
