/* CK_RV names for logs and messages. */
#include "hsm/hsm_internal.h"

#include <stdio.h>

const char *hsm_rv_name(CK_RV rv)
{
    switch (rv) {
#define R(x)                                                                                       \
    case x:                                                                                        \
        return #x;
        R(CKR_OK)
        R(CKR_CANCEL)
        R(CKR_HOST_MEMORY)
        R(CKR_SLOT_ID_INVALID)
        R(CKR_GENERAL_ERROR)
        R(CKR_FUNCTION_FAILED)
        R(CKR_ARGUMENTS_BAD)
        R(CKR_ATTRIBUTE_READ_ONLY)
        R(CKR_ATTRIBUTE_SENSITIVE)
        R(CKR_ATTRIBUTE_TYPE_INVALID)
        R(CKR_ATTRIBUTE_VALUE_INVALID)
        R(CKR_DATA_INVALID)
        R(CKR_DATA_LEN_RANGE)
        R(CKR_DEVICE_ERROR)
        R(CKR_DEVICE_MEMORY)
        R(CKR_DEVICE_REMOVED)
        R(CKR_FUNCTION_CANCELED)
        R(CKR_FUNCTION_NOT_SUPPORTED)
        R(CKR_KEY_HANDLE_INVALID)
        R(CKR_KEY_SIZE_RANGE)
        R(CKR_KEY_TYPE_INCONSISTENT)
        R(CKR_KEY_FUNCTION_NOT_PERMITTED)
        R(CKR_MECHANISM_INVALID)
        R(CKR_MECHANISM_PARAM_INVALID)
        R(CKR_OBJECT_HANDLE_INVALID)
        R(CKR_OPERATION_ACTIVE)
        R(CKR_OPERATION_NOT_INITIALIZED)
        R(CKR_PIN_INCORRECT)
        R(CKR_PIN_INVALID)
        R(CKR_PIN_LEN_RANGE)
        R(CKR_PIN_EXPIRED)
        R(CKR_PIN_LOCKED)
        R(CKR_SESSION_CLOSED)
        R(CKR_SESSION_COUNT)
        R(CKR_SESSION_HANDLE_INVALID)
        R(CKR_SESSION_READ_ONLY)
        R(CKR_SIGNATURE_INVALID)
        R(CKR_SIGNATURE_LEN_RANGE)
        R(CKR_TEMPLATE_INCOMPLETE)
        R(CKR_TEMPLATE_INCONSISTENT)
        R(CKR_TOKEN_NOT_PRESENT)
        R(CKR_TOKEN_NOT_RECOGNIZED)
        R(CKR_TOKEN_WRITE_PROTECTED)
        R(CKR_USER_ALREADY_LOGGED_IN)
        R(CKR_USER_NOT_LOGGED_IN)
        R(CKR_USER_PIN_NOT_INITIALIZED)
        R(CKR_USER_TYPE_INVALID)
        R(CKR_BUFFER_TOO_SMALL)
        R(CKR_CRYPTOKI_NOT_INITIALIZED)
        R(CKR_CRYPTOKI_ALREADY_INITIALIZED)
#undef R
    default: {
        static _Thread_local char buf[32];
        snprintf(buf, sizeof(buf), "CKR_0x%lx", (unsigned long)rv);
        return buf;
    }
    }
}
