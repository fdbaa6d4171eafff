/* serial.h — certificate serial numbers as octets and as hex text. The
 * wire and the CRL carry octets; the ledger stores, logs show and people
 * type hex. */
#ifndef CF_SERIAL_H
#define CF_SERIAL_H

#include <stddef.h>
#include <stdint.h>

#include "common/compiler.h"

/* RFC 5280 §4.1.2.2: at most 20 octets, so 40 hex digits. */
#define CF_SERIAL_MAX 20
#define CF_SERIAL_HEX_MAX (2 * CF_SERIAL_MAX)

/* Octets as lower-case hex (the ledger's form), NUL-terminated; as many
 * octets as fit in cap - 1 characters. */
void cf_hex_encode(const uint8_t *v, size_t n, char *out, size_t cap);

/* Hex digits (either case, an even number, no separators) as octets:
 * 0 and *len set, or -1 when the text is empty, not hex, odd or longer
 * than cap octets. */
CF_WUR int cf_hex_decode(const char *hex, uint8_t *out, size_t cap, size_t *len);

/* Normalize a serial given by a user ("0A:1b", "0x0a1b") to the ledger's
 * form (lower-case hex, no separators, no "0x"). Returns 0, or -1 when it
 * is empty, not hex or longer than CF_SERIAL_HEX_MAX digits. */
CF_WUR int cf_serial_norm(const char *in, char out[CF_SERIAL_HEX_MAX + 1]);

#endif
