/*
 * shim.h — the non-PKCS#11 entry points of libcertforge-shim.so.
 *
 * The shim is a PKCS#11 module (see shim.c and docs/shim.md). Besides
 * C_GetFunctionList it exports cf_shim_control() so that an in-process test
 * can change the injected latency and faults of a running module, and
 * cf_shim_counters() so that it can count what the module was asked to do
 * instead of timing it:
 *
 *   void *h = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
 *   cf_shim_control_fn *ctl = (cf_shim_control_fn *)dlsym(h, CF_SHIM_CONTROL_SYM);
 *   ctl("FAIL_EVERY_N", "5");
 */
#ifndef CF_SHIM_H
#define CF_SHIM_H

#define CF_SHIM_CONTROL_SYM "cf_shim_control"
#define CF_SHIM_COUNTERS_SYM "cf_shim_counters"

/* Set one control key (the CF_SHIM_* names without the prefix, e.g.
 * "SIGN_LATENCY_US", "INVALIDATE_NOW", "REMOVE_NOW_MS", "RESET"). Returns
 * 0, or -1 for an unknown key, an environment-only key (MODULE, CONTROL)
 * or a malformed value. Takes effect immediately. Settings made here
 * outlive C_Finalize and win over the environment and the control file at
 * the next C_Initialize, until ("RESET", "1") drops them. */
typedef int cf_shim_control_fn(const char *key, const char *value);
int cf_shim_control(const char *key, const char *value);

/* What the module has done, counted in C_Sign calls that ask for a
 * signature (a buffer, not a length query) on a valid session, whatever
 * they return. Since C_Initialize or the last RESET_COUNTERS action, except
 * thread_signs, which only grows. */
typedef struct cf_shim_counts {
    unsigned long signs;        /* such calls that have returned */
    unsigned long waits;        /* of those, the ones that slept out SIGN_LATENCY_US */
    unsigned long signing;      /* such calls inside the module now (signing or waiting) */
    unsigned long signing_max;  /* the most of them at once */
    unsigned long thread_signs; /* `signs` made by the calling thread */
} cf_shim_counts;
typedef void cf_shim_counters_fn(cf_shim_counts *out);
void cf_shim_counters(cf_shim_counts *out);

#endif
