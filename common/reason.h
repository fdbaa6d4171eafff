/* reason.h — RFC 5280 §5.3.1 CRLReason codes and their names, as the
 * ledger stores them, CRLs carry them and `certforge revoke --reason`
 * takes them. */
#ifndef CF_REASON_H
#define CF_REASON_H

/* The reason's RFC 5280 name ("unspecified", "keyCompromise", ...,
 * "aACompromise"), or NULL for 7 (unused in RFC 5280), negative values
 * and values above 10. */
const char *cf_reason_name(int code);
/* The code of a name (case-insensitive), or -1. */
int cf_reason_code(const char *name);

#endif
